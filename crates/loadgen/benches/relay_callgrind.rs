//! Instruction counts (valgrind callgrind) of the relay's hot path per `SEND → MSG → ACK`: a
//! regression benchmark that does not depend on a shared, noisy machine (issue 12).
//! Run: `cargo bench -p loadgen --bench relay_callgrind` (valgrind must be installed).
//!
//! The binary re-runs itself under `valgrind --tool=callgrind --collect-atstart=no
//! --toggle-collect=<the relay's connection task, smp_server::server::connection::serve>`: an
//! in-process relay (memory store, loopback
//! TLS) and hush-client connections on one current-thread tokio runtime, so only instructions
//! executed while the relay's connection tasks are polled are counted (TLS record work, block
//! open/seal, parsing, authorization, delivery, the MSG encryption, the memory store) — not the
//! clients, not the kernel. Each scenario runs twice, with `N_SHORT` and `N_LONG` messages after
//! the same setup; Ir per message = (Ir(long) − Ir(short)) ÷ (N_LONG − N_SHORT), which removes
//! connection and queue setup. The same difference of callgrind's call counts gives the
//! operations per message (blocks opened / sealed, signature verifies, MSG encryptions, chain
//! steps, TLS writes and reads, allocations, memcpy calls).
//!
//! Scenarios: `unloaded` (1 pair, 1 message in flight: the 1 × 1 pattern of `loadgen
//! throughput`), `loaded` (1 pair, 16 in flight: SENDs and OKs share blocks), both with unsigned
//! SENDs to an unsecured queue (what `loadgen throughput` does) and 256 B payloads; `x25519`:
//! unloaded, the queue secured with an X25519 sender key and every SEND carrying a crypto_box
//! authenticator (what SimpleX clients send); `4k`: unloaded with 4096 B payloads.

use std::process::{Command as Proc, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hush_client::{
    AuthAlgorithm, AuthKey, ClientConfig, NewQueueParams, RcvMsgBody, ServerEvent, TlsConnector,
};
use hush_proto::address::ServerWithAuth;
use smp_server::server::RelayOptions;
use smp_server::testing::{TestRelay, init_dirs, loopback_config};

const ENV: &str = "HUSH_RELAY_CALLGRIND";
const N_SHORT: usize = 20;
const N_LONG: usize = 220;
/// What is counted: every poll of a relay connection task (after its handshake).
const TOGGLE: &str = "smp_server::server::connection::serve::*";

/// (name, payload bytes, messages in flight, X25519-authorized SENDs, what it is).
const SCENARIOS: [(&str, usize, usize, bool, &str); 4] = [
    (
        "unloaded",
        256,
        1,
        false,
        "1 pair × 1 in flight, 256 B, unsigned SEND",
    ),
    (
        "loaded",
        256,
        16,
        false,
        "1 pair × 16 in flight, 256 B, unsigned SEND",
    ),
    (
        "x25519",
        256,
        1,
        true,
        "1 × 1, 256 B, SEND with X25519 authenticator",
    ),
    ("4k", 4096, 1, false, "1 × 1, 4096 B, unsigned SEND"),
];

/// Functions whose call counts per message are reported (callgrind names, prefix match), with
/// the label printed.
const CALLS: [(&str, &str); 14] = [
    (
        // sb_open_in_place or sb_open_prefix_in_place (the relay's block reader)
        "hush_crypto::secretbox::sb_open_",
        "block opened (tag 16 KB, decrypt content)",
    ),
    (
        "hush_crypto::secretbox::sb_encrypt_into",
        "secretbox seal (MSG body; blocks before 83338ac)",
    ),
    (
        "hush_crypto::secretbox::sb_seal_in_place",
        "block sealed in place (16 KB)",
    ),
    (
        "hush_crypto::cryptobox::encrypt_rcv_msg_body",
        "MSG body crypto_box (16 106 B)",
    ),
    (
        "hush_crypto::sbchain::SbChainKey::next",
        "chain step (HKDF-SHA512)",
    ),
    (
        "hush_crypto::keys::Ed25519Verifier::verify_parts",
        "Ed25519 verify",
    ),
    (
        "curve25519_dalek::edwards::CompressedEdwardsY::decompress",
        "Ed25519 point decompression",
    ),
    ("hush_crypto::x25519::X25519Secret::dh", "X25519 DH"),
    (
        "hush_proto::transmission::decode_transmission_with",
        "transmission parsed",
    ),
    ("SSL_write", "SSL_write"),
    ("SSL_read", "SSL_read"),
    ("malloc", "malloc"),
    ("__memcpy_avx_unaligned_erms", "memcpy (avx, unaligned)"),
    ("calloc", "calloc"),
];

fn main() -> ExitCode {
    if let Ok(spec) = std::env::var(ENV) {
        let mut it = spec.split(',');
        let name = it.next().unwrap_or("");
        let n: usize = it.next().and_then(|s| s.parse().ok()).unwrap_or(N_SHORT);
        let Some(s) = SCENARIOS.iter().find(|s| s.0 == name) else {
            eprintln!("unknown scenario {name}");
            return ExitCode::FAILURE;
        };
        child(s.1, s.2, s.3, n);
        return ExitCode::SUCCESS;
    }
    // `cargo bench` passes `--bench`; a scenario name may be given to run only that one.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if Proc::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        eprintln!("valgrind not found: install it to run this benchmark");
        return ExitCode::FAILURE;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("current_exe: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("tempdir: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "relay Ir per SEND→MSG→ACK (callgrind, relay connection tasks only; ({N_LONG} − {N_SHORT}) messages)"
    );
    let mut failed = false;
    for (name, _, _, _, what) in SCENARIOS {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let mut runs = Vec::new();
        for n in [N_SHORT, N_LONG] {
            let out = dir.path().join(format!("cg.{name}.{n}"));
            let status = Proc::new("valgrind")
                .arg("--tool=callgrind")
                .arg("--collect-atstart=no")
                .arg(format!("--toggle-collect={TOGGLE}"))
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(&exe)
                .env(ENV, format!("{name},{n}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            match status {
                Ok(s) if s.success() => {}
                other => {
                    eprintln!("{name} ({n} messages): valgrind run failed: {other:?}");
                    failed = true;
                    break;
                }
            }
            match std::fs::read_to_string(&out).map(|t| parse(&t)) {
                Ok(p) => runs.push(p),
                Err(e) => {
                    eprintln!("{name}: reading {}: {e}", out.display());
                    failed = true;
                    break;
                }
            }
        }
        let [short, long] = runs.as_slice() else {
            continue;
        };
        let per = |a: u64, b: u64| (b as f64 - a as f64) / (N_LONG - N_SHORT) as f64;
        println!("\n{name}: {what}");
        println!("  Ir/message {:>12.0}", per(short.total, long.total));
        for (f, label) in CALLS {
            let c = |p: &Parsed, ir: bool| {
                p.calls
                    .iter()
                    .filter(|(n, _)| n.starts_with(f))
                    .map(|(_, (c, i))| if ir { *i } else { *c })
                    .sum::<u64>()
            };
            println!(
                "  {:<44} {:>8.2} /message {:>10.0} Ir/message inclusive",
                label,
                per(c(short, false), c(long, false)),
                per(c(short, true), c(long, true))
            );
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Totals, and call counts with their inclusive Ir (by callee name), of one callgrind file.
struct Parsed {
    total: u64,
    calls: Vec<(String, (u64, u64))>,
}

/// Reads `summary:`/`totals:` and sums `calls=` lines per callee (`cfn=`) with the inclusive
/// cost on the line after each, resolving callgrind's name compression (`(id) name` defines,
/// `(id)` refers).
fn parse(text: &str) -> Parsed {
    let mut names: std::collections::HashMap<String, String> = Default::default();
    let mut calls: std::collections::HashMap<String, (u64, u64)> = Default::default();
    let mut inclusive_next = false;
    let mut total = 0u64;
    let mut callee = String::new();
    let mut resolve = |spec: &str| -> String {
        let spec = spec.trim();
        if let Some(rest) = spec.strip_prefix('(')
            && let Some((id, name)) = rest.split_once(')')
        {
            let name = name.trim();
            if name.is_empty() {
                return names.get(id).cloned().unwrap_or_default();
            }
            names.insert(id.to_string(), name.to_string());
            return name.to_string();
        }
        spec.to_string()
    };
    for line in text.lines() {
        if inclusive_next {
            inclusive_next = false;
            let ir: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            calls.entry(callee.clone()).or_default().1 += ir;
            continue;
        }
        if let Some(v) = line
            .strip_prefix("summary:")
            .or_else(|| line.strip_prefix("totals:"))
        {
            total = total.max(
                v.split_whitespace()
                    .next()
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(0),
            );
        } else if let Some(v) = line.strip_prefix("cfn=") {
            callee = resolve(v);
        } else if let Some(v) = line.strip_prefix("fn=") {
            resolve(v);
        } else if let Some(v) = line.strip_prefix("calls=") {
            let n: u64 = v
                .split_whitespace()
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            calls.entry(callee.clone()).or_default().0 += n;
            inclusive_next = true;
        }
    }
    Parsed {
        total,
        calls: calls.into_iter().collect(),
    }
}

/// One run: relay + clients in this process, setup, then `n` messages.
fn child(size: usize, window: usize, x25519: bool, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = init_dirs(dir.path()).expect("init");
        let mut config = loopback_config(&paths, 0).expect("config");
        config.store.enable = false;
        let mut relay = TestRelay::start(config, RelayOptions::default())
            .await
            .expect("relay");
        let server = ServerWithAuth::parse(&relay.address()).expect("address");
        let connector = TlsConnector::new().expect("tls");
        let cc = ClientConfig {
            command_timeout: Duration::from_secs(600),
            event_buffer: 1024,
            send_buffer: 256,
        };
        let (rcv, mut events) = connector
            .connect_to(&server.server, &cc)
            .await
            .expect("rcv");
        let q = rcv
            .create_queue(NewQueueParams::default())
            .await
            .expect("NEW");
        let (snd, _snd_events) = connector
            .connect_to(&server.server, &cc)
            .await
            .expect("snd");
        let snd_key = if x25519 {
            let k = AuthKey::generate(AuthAlgorithm::X25519).expect("key");
            rcv.secure_queue(&q.rcv_id, &q.rcv_key, &k.public_der().expect("der"))
                .await
                .expect("KEY");
            Some(k)
        } else {
            None
        };
        let snd = Arc::new(snd);
        let snd_key = Arc::new(snd_key);
        let window_sem = Arc::new(tokio::sync::Semaphore::new(window));
        // Senders: `n` SENDs in total, at most `window` not yet received.
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut senders = Vec::new();
        for _ in 0..window {
            let (snd, snd_key, sem, sent, snd_id) = (
                snd.clone(),
                snd_key.clone(),
                window_sem.clone(),
                sent.clone(),
                q.snd_id.clone(),
            );
            senders.push(tokio::spawn(async move {
                loop {
                    let p = sem.acquire().await.expect("sem");
                    p.forget();
                    if sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= n {
                        return;
                    }
                    snd.send(&snd_id, (*snd_key).as_ref(), false, &vec![7u8; size])
                        .await
                        .expect("SEND");
                }
            }));
        }
        let mut received = 0;
        while received < n {
            let Some(ev) = events.recv().await else {
                panic!("recipient connection closed");
            };
            let ServerEvent::Message { rcv_id, msg } = ev else {
                continue;
            };
            let mut next = Some(msg);
            while let Some(m) = next {
                let d = m.decrypt(&q.rcv_dh_secret).expect("decrypt");
                assert!(matches!(d.body, RcvMsgBody::Message { .. }));
                received += 1;
                window_sem.add_permits(1);
                next = rcv.ack(&rcv_id, &q.rcv_key, &d.msg_id).await.expect("ACK");
            }
        }
        window_sem.add_permits(window);
        for s in senders {
            let _ = s.await;
        }
        relay.stop().await.expect("stop");
    });
}
