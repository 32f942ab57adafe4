//! Instruction counts (valgrind callgrind) of the SMP `SEND` hot path and its primitives:
//! a regression signal that does not depend on a shared, noisy machine (design §4, rustls).
//! Run: `cargo bench -p hush-bench --bench send_callgrind`. Figures: BENCHMARKS.md.
//!
//! The binary re-runs itself under `valgrind --tool=callgrind --toggle-collect=<fn>` once per
//! scenario; only instructions executed inside that `#[inline(never)]` function (and its
//! callees) are counted, over `ITERS` calls, after one uncounted warm-up call. It prints
//! instructions per call (Ir). If valgrind is missing it says so and exits non-zero.

use std::hint::black_box;
use std::process::{Command as Proc, ExitCode, Stdio};

use hush_bench::{SEND_AUTHORIZED_LEN, SendFixture, open_send, seal_send};
use hush_crypto::secretbox::{TAG_LEN, sb_encrypt_into, sb_open_in_place, sb_open_prefix_in_place};
use hush_crypto::{Ed25519Secret, PublicKey, SbChainKey};
use hush_proto::version::SMP_BLOCK_SIZE;

const ITERS: u64 = 10;
const ENV: &str = "HUSH_CALLGRIND_SCENARIO";

/// (scenario, function counted, what it measures).
const SCENARIOS: [(&str, &str, &str); 16] = [
    (
        "seal_send",
        "cg_seal_send",
        "(a) seal one SEND (build, sign, batch, pad, encrypt)",
    ),
    (
        "open_send",
        "cg_open_send",
        "(b) open one SEND (decrypt, unpad, parse, verify)",
    ),
    ("send_total", "cg_send_total", "(a)+(b) one SEND end to end"),
    ("sign_100", "cg_ed25519_sign", "Ed25519 sign, 100 B"),
    (
        "sign_auth",
        "cg_ed25519_sign",
        "Ed25519 sign, SEND authorized bytes (16138 B)",
    ),
    ("verify_100", "cg_ed25519_verify", "Ed25519 verify, 100 B"),
    (
        "verify_auth",
        "cg_ed25519_verify",
        "Ed25519 verify, SEND authorized bytes (16138 B)",
    ),
    (
        "sha512_auth",
        "cg_sha512",
        "SHA-512, SEND authorized bytes (16138 B)",
    ),
    (
        "sbchain_step",
        "cg_sbchain_step",
        "secretbox chain step (HKDF-SHA512, 88 B)",
    ),
    (
        "secretbox_seal",
        "cg_secretbox_seal_16k",
        "secretbox seal, 16384-byte block",
    ),
    (
        "secretbox_open",
        "cg_secretbox_open_16k",
        "secretbox open, 16384-byte block",
    ),
    (
        "secretbox_open_prefix",
        "cg_secretbox_open_prefix_16k",
        "secretbox open of a 16384-byte block carrying 300 B (tag over all, decrypt 302 B)",
    ),
    (
        "old_secretbox_seal",
        "cg_old_secretbox_seal_16k",
        "before issue 12: xsalsa20poly1305 seal, 16384-byte block",
    ),
    (
        "old_verify_auth",
        "cg_old_ed25519_verify",
        "before issue 12: dalek decode + verify (sha2), 16138 B",
    ),
    (
        "old_sign_auth",
        "cg_old_ed25519_sign",
        "before issue 12: dalek sign (sha2), 16138 B",
    ),
    (
        "old_sha512_auth",
        "cg_old_sha512",
        "before issue 12: sha2 SHA-512, 16138 B",
    ),
];

#[inline(never)]
fn cg_seal_send(fx: &SendFixture, out: &mut Vec<u8>) {
    seal_send(fx, &mut fx.chain(), out);
}

#[inline(never)]
fn cg_open_send(fx: &SendFixture, block: &mut [u8]) {
    let r = open_send(&fx.sender_verifier, &fx.session_id, &mut fx.chain(), block);
    assert!(r.is_ok());
}

#[inline(never)]
fn cg_send_total(
    fx: &SendFixture,
    client: &mut SbChainKey,
    server: &mut SbChainKey,
    buf: &mut Vec<u8>,
) {
    seal_send(fx, client, buf);
    let r = open_send(&fx.sender_verifier, &fx.session_id, server, buf);
    assert!(r.is_ok());
}

#[inline(never)]
fn cg_ed25519_sign(sk: &Ed25519Secret, msg: &[u8]) -> [u8; 64] {
    sk.sign(msg)
}

#[inline(never)]
fn cg_ed25519_verify(pk: &PublicKey, msg: &[u8], sig: &[u8]) -> bool {
    pk.verify(msg, sig).is_ok()
}

#[inline(never)]
fn cg_sha512(msg: &[u8]) -> [u8; 64] {
    hush_crypto::sha512(msg)
}

#[inline(never)]
fn cg_sbchain_step(ck: &mut SbChainKey) -> ([u8; 32], [u8; 24]) {
    ck.next()
}

#[inline(never)]
fn cg_secretbox_seal_16k(msg: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let r = sb_encrypt_into(&[5; 32], &[4; 24], msg, SMP_BLOCK_SIZE - TAG_LEN, out);
    assert!(r.is_ok());
}

#[inline(never)]
fn cg_secretbox_open_prefix_16k(ct: &mut [u8]) -> usize {
    sb_open_prefix_in_place(&[5; 32], &[4; 24], ct, |h| {
        2 + usize::from(u16::from_be_bytes([h[0], h[1]]))
    })
    .map(|b| b.len())
    .unwrap_or(0)
}

#[inline(never)]
fn cg_secretbox_open_16k(ct: &mut [u8]) -> usize {
    sb_open_in_place(&[5; 32], &[4; 24], ct)
        .map(|p| p.len())
        .unwrap_or(0)
}

#[inline(never)]
fn cg_old_secretbox_seal_16k(body: &mut [u8]) -> [u8; 16] {
    use salsa20::cipher::consts::U10;
    use xsalsa20poly1305::aead::{AeadInPlace, KeyInit};
    let k1 = salsa20::hsalsa::<U10>(&[5u8; 32].into(), &[0u8; 16].into());
    xsalsa20poly1305::XSalsa20Poly1305::new(&k1)
        .encrypt_in_place_detached(&[4u8; 24].into(), b"", body)
        .expect("short message")
        .into()
}

#[inline(never)]
fn cg_old_ed25519_verify(pk: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    use ed25519_dalek::Verifier;
    ed25519_dalek::VerifyingKey::from_bytes(pk)
        .and_then(|vk| vk.verify(msg, &ed25519_dalek::Signature::from_bytes(sig)))
        .is_ok()
}

#[inline(never)]
fn cg_old_ed25519_sign(sk: &ed25519_dalek::SigningKey, msg: &[u8]) -> [u8; 64] {
    use ed25519_dalek::Signer;
    sk.sign(msg).to_bytes()
}

#[inline(never)]
fn cg_old_sha512(msg: &[u8]) -> [u8; 64] {
    use sha2::Digest;
    sha2::Sha512::digest(msg).into()
}

/// Runs one scenario: a warm-up call through the same code path outside the counted function,
/// then `ITERS` counted calls.
fn child(scenario: &str) {
    if scenario == "features" {
        println!("{}", cpu_features());
        return;
    }
    let fx = SendFixture::default();
    let sk = Ed25519Secret::from_seed(&[7; 32]);
    let pk = PublicKey::Ed25519(sk.public());
    let short = vec![1u8; 100];
    let long = vec![1u8; SEND_AUTHORIZED_LEN];
    let mut sealed = Vec::with_capacity(SMP_BLOCK_SIZE);
    seal_send(&fx, &mut fx.chain(), &mut sealed);
    let mut out = Vec::with_capacity(SMP_BLOCK_SIZE);
    let n = ITERS as usize;
    match scenario {
        "seal_send" => {
            seal_send(&fx, &mut fx.chain(), &mut out);
            for _ in 0..n {
                cg_seal_send(black_box(&fx), &mut out);
            }
        }
        "open_send" => {
            let mut blocks = vec![sealed.clone(); n + 1];
            let _ = open_send(
                &fx.sender_verifier,
                &fx.session_id,
                &mut fx.chain(),
                &mut blocks[n],
            );
            for b in blocks.iter_mut().take(n) {
                cg_open_send(black_box(&fx), b);
            }
        }
        "send_total" => {
            let (mut client, mut server) = (fx.chain(), fx.chain());
            seal_send(&fx, &mut client, &mut out);
            let _ = open_send(&fx.sender_verifier, &fx.session_id, &mut server, &mut out);
            for _ in 0..n {
                cg_send_total(black_box(&fx), &mut client, &mut server, &mut out);
            }
        }
        "sign_100" | "sign_auth" => {
            let msg = if scenario == "sign_100" {
                &short
            } else {
                &long
            };
            black_box(sk.sign(msg));
            for _ in 0..n {
                black_box(cg_ed25519_sign(black_box(&sk), black_box(msg)));
            }
        }
        "verify_100" | "verify_auth" => {
            let msg = if scenario == "verify_100" {
                &short
            } else {
                &long
            };
            let sig = sk.sign(msg);
            assert!(pk.verify(msg, &sig).is_ok());
            for _ in 0..n {
                assert!(cg_ed25519_verify(
                    black_box(&pk),
                    black_box(msg),
                    black_box(&sig)
                ));
            }
        }
        "sha512_auth" => {
            black_box(hush_crypto::sha512(&long));
            for _ in 0..n {
                black_box(cg_sha512(black_box(&long)));
            }
        }
        "sbchain_step" => {
            let mut ck = fx.chain();
            black_box(ck.next());
            for _ in 0..n {
                black_box(cg_sbchain_step(&mut ck));
            }
        }
        "secretbox_seal" => {
            let msg = vec![3u8; 16_200];
            seal_16k_uncounted(&msg, &mut out);
            for _ in 0..n {
                cg_secretbox_seal_16k(black_box(&msg), &mut out);
            }
        }
        "secretbox_open" => {
            let mut ct = Vec::new();
            seal_16k_uncounted(&[3u8; 16_200], &mut ct);
            let mut cts = vec![ct; n + 1];
            let _ = sb_open_in_place(&[5; 32], &[4; 24], &mut cts[n]);
            for c in cts.iter_mut().take(n) {
                assert_eq!(
                    cg_secretbox_open_16k(black_box(c)),
                    SMP_BLOCK_SIZE - TAG_LEN
                );
            }
        }
        "secretbox_open_prefix" => {
            let mut ct = Vec::new();
            seal_16k_uncounted(&[3u8; 300], &mut ct);
            let mut cts = vec![ct; n + 1];
            assert_eq!(cg_secretbox_open_prefix_16k(&mut cts[n]), 302);
            for c in cts.iter_mut().take(n) {
                assert_eq!(cg_secretbox_open_prefix_16k(black_box(c)), 302);
            }
        }
        "old_secretbox_seal" => {
            let mut body = vec![3u8; SMP_BLOCK_SIZE - TAG_LEN];
            black_box(cg_old_secretbox_seal_16k(&mut body));
            for _ in 0..n {
                black_box(cg_old_secretbox_seal_16k(black_box(&mut body)));
            }
        }
        "old_verify_auth" => {
            let sig = sk.sign(&long);
            let pk = sk.public().0;
            assert!(cg_old_ed25519_verify(&pk, &long, &sig));
            for _ in 0..n {
                assert!(cg_old_ed25519_verify(
                    black_box(&pk),
                    black_box(&long),
                    black_box(&sig)
                ));
            }
        }
        "old_sign_auth" => {
            let dsk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
            black_box(cg_old_ed25519_sign(&dsk, &long));
            for _ in 0..n {
                black_box(cg_old_ed25519_sign(black_box(&dsk), black_box(&long)));
            }
        }
        "old_sha512_auth" => {
            black_box(cg_old_sha512(&long));
            for _ in 0..n {
                black_box(cg_old_sha512(black_box(&long)));
            }
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn seal_16k_uncounted(msg: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let r = sb_encrypt_into(&[5; 32], &[4; 24], msg, SMP_BLOCK_SIZE - TAG_LEN, out);
    assert!(r.is_ok());
}

/// The SIMD features runtime dispatch (sha2, curve25519-dalek) can pick.
fn cpu_features() -> String {
    format!(
        "avx2={} avx512f={} avx512ifma={}",
        std::arch::is_x86_feature_detected!("avx2"),
        std::arch::is_x86_feature_detected!("avx512f"),
        std::arch::is_x86_feature_detected!("avx512ifma"),
    )
}

/// Total `Ir` from a callgrind output file (`summary:` or `totals:` line).
fn total_ir(path: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .next_back()
}

fn main() -> ExitCode {
    if let Ok(s) = std::env::var(ENV) {
        child(&s);
        return ExitCode::SUCCESS;
    }
    // `cargo bench` passes `--bench`; under `cargo test --benches` (debug build) skip the
    // minutes of valgrind and say so.
    if !std::env::args().any(|a| a == "--bench") {
        println!("send_callgrind: instruction counts only run under `cargo bench`");
        return ExitCode::SUCCESS;
    }
    let Ok(exe) = std::env::current_exe() else {
        eprintln!("cannot find own executable");
        return ExitCode::FAILURE;
    };
    let dir = std::env::temp_dir().join(format!("hush-callgrind-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let under_valgrind = Proc::new("valgrind")
        .args(["--tool=none", "-q"])
        .arg(&exe)
        .env(ENV, "features")
        .stderr(Stdio::null())
        .output();
    match under_valgrind {
        Ok(o) if o.status.success() => println!(
            "CPU features: native {}; under valgrind {}",
            cpu_features(),
            String::from_utf8_lossy(&o.stdout).trim()
        ),
        Ok(o) => {
            eprintln!("valgrind failed: {}", o.status);
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("valgrind not runnable ({e}): no instruction counts");
            return ExitCode::FAILURE;
        }
    }
    println!("callgrind instruction counts, Ir per call (mean of {ITERS} calls)");
    println!("{:<16} {:>12}  what", "scenario", "Ir/call");
    let mut ok = true;
    for (scenario, f, what) in SCENARIOS {
        let out = dir.join(format!("{scenario}.out"));
        let status = Proc::new("valgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(format!("--toggle-collect=*::{f}"))
            .arg(&exe)
            .env(ENV, scenario)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => match total_ir(&out) {
                Some(ir) if ir > 0 => println!("{scenario:<16} {:>12}  {what}", ir / ITERS),
                _ => {
                    println!(
                        "{scenario:<16} {:>12}  {what} (no count: {f} not found?)",
                        "-"
                    );
                    ok = false;
                }
            },
            Ok(s) => {
                eprintln!("valgrind failed for {scenario}: {s}");
                ok = false;
            }
            Err(e) => {
                eprintln!("valgrind not runnable ({e}): no instruction counts");
                return ExitCode::FAILURE;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
