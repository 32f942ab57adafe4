//! Corpus replay for the cargo-fuzz targets in `fuzz/` (transmission, smp_command, ntf_command,
//! handshake, address): every file of `fuzz/corpus/<target>/` runs through the same body the
//! fuzzer runs (`fuzz/fuzz_targets/bodies/proto.rs`, included below), so crashes found by
//! fuzzing stay fixed. A missing or empty corpus directory fails the test.
//!
//! The `seed-*` files are made from /work/shared/vectors by [`seeds`]; `seed_corpus_matches_vectors`
//! checks the committed files are exactly those bytes and that each valid vector really reaches
//! the round-trip checks. Regenerate them with
//! `cargo test -p hush-proto --test fuzz_corpus -- --ignored write_seed_corpus`.
//! (The `block` target replays in `crates/hush-transport/tests/fuzz_corpus.rs`.)

#[path = "../../../fuzz/fuzz_targets/bodies/proto.rs"]
mod bodies;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use hush_proto::Encode;
use hush_proto::encoding::{Large, ShortString};
use hush_proto::handshake::{
    CertChain, CertChainPubKey, ClientHelloService, HandshakeErrorKind, HelloTransportError,
    NtfClientHello, NtfServerHello, ServiceRole, SmpClientHello, SmpServerHandshakeResponse,
    SmpServerHello,
};
use hush_proto::smp::{BROKER_TAGS, COMMAND_TAGS};
use hush_proto::version::{VersionRange, ntf_version, smp_version};
use serde_json::Value;

mod common;
use common::load;

type Body = fn(&[u8]) -> bool;

const TARGETS: [(&str, Body); 5] = [
    ("transmission", bodies::transmission),
    ("smp_command", bodies::smp_command),
    ("ntf_command", bodies::ntf_command),
    ("handshake", bodies::handshake),
    ("address", bodies::address),
];

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../fuzz/corpus/{target}"))
}

/// Runs every corpus file of `target`; returns (files, files the decoder accepted).
fn replay(target: &str, body: Body) -> (usize, usize) {
    let dir = corpus_dir(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {} missing: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut failures = Vec::new();
    let mut accepted = 0;
    for f in &files {
        let data = std::fs::read(f).unwrap();
        match catch_unwind(AssertUnwindSafe(|| body(&data))) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(_) => failures.push(f.display().to_string()),
        }
    }
    assert!(
        !files.is_empty(),
        "corpus directory {} is empty",
        dir.display()
    );
    assert!(
        failures.is_empty(),
        "{target}: corpus inputs panicked: {failures:#?}"
    );
    (files.len(), accepted)
}

#[test]
fn replay_transmission() {
    let (n, ok) = replay("transmission", bodies::transmission);
    assert!(ok > 0 && n >= ok, "{ok}/{n}");
}

#[test]
fn replay_smp_command() {
    let (n, ok) = replay("smp_command", bodies::smp_command);
    assert!(ok > 0 && n >= ok, "{ok}/{n}");
}

#[test]
fn replay_ntf_command() {
    let (n, ok) = replay("ntf_command", bodies::ntf_command);
    assert!(ok > 0 && n >= ok, "{ok}/{n}");
}

#[test]
fn replay_handshake() {
    let (n, ok) = replay("handshake", bodies::handshake);
    assert!(ok > 0 && n >= ok, "{ok}/{n}");
}

#[test]
fn replay_address() {
    let (n, ok) = replay("address", bodies::address);
    assert!(ok > 0 && n >= ok, "{ok}/{n}");
}

// ---------------------------------------------------------------------------------------------
// seeds from the vectors

fn by_name(file: &str) -> BTreeMap<String, Value> {
    load(file)
        .into_iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v))
        .collect()
}

fn hexv(v: &Value) -> Vec<u8> {
    hex::decode(
        v.as_str()
            .unwrap_or_else(|| panic!("hex string expected, got {v}")),
    )
    .unwrap()
}

fn text(v: &Value) -> Vec<u8> {
    v.as_str()
        .unwrap_or_else(|| panic!("string expected, got {v}"))
        .as_bytes()
        .to_vec()
}

fn with_sel(sel: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![sel];
    v.extend_from_slice(body);
    v
}

/// One seed file: target, file name, bytes, and whether the decoder must accept it.
struct Seed {
    target: &'static str,
    name: String,
    bytes: Vec<u8>,
    valid: bool,
}

fn file_name(vector: &str, suffix: &str) -> String {
    let clean: String = vector
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(72)
        .collect();
    format!("seed-{clean}{suffix}")
}

fn transmission_sel(version: u16, smp: bool) -> u8 {
    bodies::TRANSMISSION_LAYOUTS
        .iter()
        .position(|&(_, s, v)| s == smp && v == version)
        .unwrap_or_else(|| panic!("no layout for v{version} smp={smp}")) as u8
}

fn smp_sel(version: u16, broker: bool) -> u8 {
    let i = bodies::SMP_VERSIONS
        .iter()
        .position(|&v| v == version)
        .unwrap_or_else(|| panic!("no SMP version {version}")) as u8;
    if broker { i | 0x80 } else { i }
}

fn ntf_sel(mode: u8, version: u16) -> u8 {
    mode + 5 * (version as u8 - 1)
}

/// `ERR CMD SYNTAX` / `ERR CMD UNKNOWN` replies mean the command does not parse.
fn command_parses(expected: &Value) -> bool {
    let r = expected["response_ascii"].as_str().unwrap();
    !(r.contains("CMD SYNTAX") || r.contains("CMD UNKNOWN"))
}

fn first_word(b: &[u8]) -> &str {
    let n = b.iter().position(|&c| c == b' ').unwrap_or(b.len());
    std::str::from_utf8(&b[..n]).unwrap()
}

fn seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    let mut add = |target, name: String, bytes: Vec<u8>, valid| {
        out.push(Seed {
            target,
            name,
            bytes,
            valid,
        })
    };
    let commands = by_name("commands.json");
    let ntf = by_name("ntf.json");
    let addresses = by_name("addresses.json");
    let crypto = by_name("crypto.json");

    // transmission + smp_command from commands.json
    for (name, v) in &commands {
        let (i, e) = (&v["inputs"], &v["expected"]);
        if name.starts_with("transmission.") {
            let version = i["smp_version"].as_u64().unwrap_or(18) as u16;
            let sel = transmission_sel(version, true);
            add(
                "transmission",
                file_name(name, ""),
                with_sel(sel, &hexv(&e["transmission_hex"])),
                true,
            );
            if let Some(r) = e.get("response_transmission_hex") {
                add(
                    "transmission",
                    file_name(name, "-response"),
                    with_sel(sel, &hexv(r)),
                    true,
                );
            }
        } else if name.starts_with("smp_syntax.") {
            let version = i["smp_version"].as_u64().unwrap() as u16;
            let sel = transmission_sel(version, true);
            add(
                "transmission",
                file_name(name, ""),
                with_sel(sel, &hexv(&i["transmission_hex"])),
                true,
            );
            add(
                "transmission",
                file_name(name, "-response"),
                with_sel(sel, &hexv(&e["transmission_hex"])),
                true,
            );
            let cmd = hexv(&i["command_hex"]);
            add(
                "smp_command",
                file_name(name, ""),
                with_sel(smp_sel(version, false), &cmd),
                command_parses(e),
            );
            add(
                "smp_command",
                file_name(name, "-response"),
                with_sel(smp_sel(version, true), &hexv(&e["response_hex"])),
                true,
            );
        } else if name.starts_with("encode.") {
            let version = i["smp_version"].as_u64().unwrap() as u16;
            let bytes = if let Some(b) = e.get("bytes_hex") {
                hexv(b)
            } else {
                let mut b = hexv(&e["prefix_hex"]);
                if name == "encode.MSG" {
                    b.extend_from_slice(&hexv(
                        &crypto["msg_body.encrypt"]["expected"]["enc_body_hex"],
                    ));
                    assert_eq!(b.len() as u64, e["total_len"].as_u64().unwrap());
                } else {
                    b.extend_from_slice(b"tail: encrypted transmission");
                }
                b
            };
            let tag = first_word(&bytes);
            let broker = if COMMAND_TAGS.contains(&tag) {
                false
            } else {
                assert!(BROKER_TAGS.contains(&tag), "{name}: tag {tag}");
                true
            };
            add(
                "smp_command",
                file_name(name, ""),
                with_sel(smp_sel(version, broker), &bytes),
                true,
            );
        }
    }

    // ntf_command (+ NTF transmissions) from ntf.json
    let v3 = ntf_version::CURRENT;
    for (name, v) in &ntf {
        let (i, e) = (&v["inputs"], &v["expected"]);
        if name.starts_with("ntf_syntax.") {
            let t = hexv(&i["v3_transmission_hex"]);
            add(
                "transmission",
                file_name(name, ""),
                with_sel(transmission_sel(v3, false), &t),
                true,
            );
            let r = hexv(&e["v3_response_transmission_hex"]);
            add(
                "transmission",
                file_name(name, "-response"),
                with_sel(transmission_sel(v3, false), &r),
                true,
            );
            add(
                "ntf_command",
                file_name(name, ""),
                with_sel(ntf_sel(0, v3), &hexv(&i["command_hex"])),
                command_parses(e),
            );
            add(
                "ntf_command",
                file_name(name, "-block"),
                with_sel(ntf_sel(2, v3), &hexv(&i["v3_block_content_hex"])),
                true,
            );
            // Response: the ascii form.
            add(
                "ntf_command",
                file_name(name, "-response"),
                with_sel(ntf_sel(1, v3), &text(&e["response_ascii"])),
                true,
            );
        } else if name.starts_with("encode.") {
            let version = i["ntf_version"].as_u64().unwrap() as u16;
            let bytes = hexv(&e["bytes_hex"]);
            let tag = first_word(&bytes);
            let response = ["IDTKN", "IDSUB", "OK", "ERR", "TKN", "SUB", "PONG"].contains(&tag);
            add(
                "ntf_command",
                file_name(name, ""),
                with_sel(ntf_sel(u8::from(response), version), &bytes),
                true,
            );
            if tag == "TKN" || tag == "SUB" {
                // The status alone, as text.
                add(
                    "ntf_command",
                    file_name(name, "-status"),
                    with_sel(ntf_sel(4, version), &bytes[tag.len() + 1..]),
                    true,
                );
            }
        } else if name.starts_with("transmission.") {
            let version = i["ntf_version"].as_u64().unwrap() as u16;
            add(
                "transmission",
                file_name(name, ""),
                with_sel(
                    transmission_sel(version, false),
                    &hexv(&e["transmission_hex"]),
                ),
                true,
            );
            add(
                "ntf_command",
                file_name(name, "-block"),
                with_sel(ntf_sel(2, version), &hexv(&e["block_content_hex"])),
                true,
            );
        } else if name.starts_with("pn_messages.") {
            add(
                "ntf_command",
                file_name(name, ""),
                with_sel(ntf_sel(3, v3), &text(&e["text"])),
                true,
            );
        } else if name.starts_with("device_token.") {
            add(
                "ntf_command",
                file_name(name, ""),
                with_sel(ntf_sel(4, v3), &text(&e["text"])),
                true,
            );
        }
    }

    // address from addresses.json
    for (name, v) in &addresses {
        let (i, e) = (&v["inputs"], &v["expected"]);
        let family = name.split('.').next().unwrap();
        match family {
            "server_address" => {
                let auth = e.get("basic_auth_ascii").is_some();
                add(
                    "address",
                    file_name(name, ""),
                    with_sel(u8::from(auth), &text(&i["text"])),
                    true,
                );
                if let Some(b) = e.get("smpEncode_hex") {
                    add(
                        "address",
                        file_name(name, "-binary"),
                        with_sel(7, &hexv(b)),
                        true,
                    );
                }
            }
            "xftp_address" => add(
                "address",
                file_name(name, ""),
                with_sel(0, &text(&i["text"])),
                true,
            ),
            "transport_host" => add(
                "address",
                file_name(name, ""),
                with_sel(5, &text(&i["text"])),
                e.get("error").is_none(),
            ),
            "queue" => add(
                "address",
                file_name(name, ""),
                with_sel(2, &text(&e["text"])),
                true,
            ),
            "connection_link" => add(
                "address",
                file_name(name, ""),
                with_sel(3, &text(&e["text"])),
                true,
            ),
            "short_link" if name == "short_link.shorten_restore_preset" => {
                for k in ["full_contact_link", "full_invitation_link"] {
                    add(
                        "address",
                        file_name(name, &format!("-{k}")),
                        with_sel(4, &text(&i[k])),
                        true,
                    );
                }
                for k in ["shortened_contact_link", "shortened_invitation_link"] {
                    add(
                        "address",
                        file_name(name, &format!("-{k}")),
                        with_sel(4, &text(&e[k])),
                        true,
                    );
                }
            }
            "short_link" => add(
                "address",
                file_name(name, ""),
                with_sel(4, &text(&e["text"])),
                true,
            ),
            "e2e_ratchet_params" => {
                add(
                    "address",
                    file_name(name, ""),
                    with_sel(6, &text(&e["unescaped"])),
                    true,
                );
                add(
                    "address",
                    file_name(name, "-escaped"),
                    with_sel(6, &text(&e["text"])),
                    false,
                );
            }
            _ => {}
        }
    }

    // handshake: hellos built with our encoders from vector material (no upstream hello
    // vectors exist, see vectors/README.md).
    let session_id = hexv(&commands["transmission.v18.SUB.ed25519"]["inputs"]["session_id_hex"]);
    let ntf_session_id = hexv(&ntf["transmission.v3.TNEW.signed"]["inputs"]["session_id_hex"]);
    let ca_cert =
        hexv(&addresses["server_identity.fixture_ca_ed25519"]["inputs"]["ca_cert_der_hex"]);
    let chain_hex: Vec<Vec<u8>> =
        addresses["cert_chain.fingerprint_3_certs"]["inputs"]["chain_hex"]
            .as_array()
            .unwrap()
            .iter()
            .map(hexv)
            .collect();
    let signed_key = hexv(&crypto["signed_x25519_key.ed25519"]["expected"]["signed_exact_der_hex"]);
    let key_hash = hexv(&addresses["server_identity.fixture_ca_ed25519"]["expected"]["sha256_hex"]);
    let dh_pub: [u8; 32] =
        hexv(&crypto["x25519.pub_from_priv_1..32"]["expected"]["public_key_hex"])
            .try_into()
            .unwrap();
    let cert_key = |certs: Vec<Vec<u8>>| CertChainPubKey {
        cert_chain: CertChain::new(certs).unwrap(),
        signed_key: Large::new(signed_key.clone()).unwrap(),
    };
    let hs = |mode: u8, v: &dyn Encode| with_sel(mode, &v.to_bytes());
    let srv = |versions, auth| SmpServerHello {
        versions,
        session_id: ShortString::new(session_id.clone()).unwrap(),
        auth,
    };
    let hellos: Vec<(&str, Vec<u8>)> = vec![
        (
            "smp_server_hello.v6-18",
            hs(
                0,
                &srv(
                    smp_version::SERVER_RANGE,
                    Some(cert_key(vec![ca_cert.clone()])),
                ),
            ),
        ),
        (
            "smp_server_hello.v6-18.3_certs",
            hs(
                0,
                &srv(smp_version::SERVER_RANGE, Some(cert_key(chain_hex.clone()))),
            ),
        ),
        (
            "smp_server_hello.v6-6",
            hs(0, &srv(smp_version::LEGACY_SERVER_RANGE, None)),
        ),
        (
            "smp_client_hello.v18",
            hs(
                1,
                &SmpClientHello {
                    version: 18,
                    key_hash: ShortString::new(key_hash.clone()).unwrap(),
                    dh_key: Some(dh_pub),
                    proxy_server: false,
                    service: None,
                },
            ),
        ),
        (
            "smp_client_hello.v18.service",
            hs(
                1,
                &SmpClientHello {
                    version: 18,
                    key_hash: ShortString::new(key_hash.clone()).unwrap(),
                    dh_key: Some(dh_pub),
                    proxy_server: true,
                    service: Some(ClientHelloService {
                        role: ServiceRole::Notifier,
                        cert_key: cert_key(vec![ca_cert.clone()]),
                    }),
                },
            ),
        ),
        (
            "smp_client_hello.v6",
            hs(
                1,
                &SmpClientHello {
                    version: 6,
                    key_hash: ShortString::new(key_hash.clone()).unwrap(),
                    dh_key: None,
                    proxy_server: false,
                    service: None,
                },
            ),
        ),
        (
            "smp_server_handshake.service_id",
            hs(
                2,
                &SmpServerHandshakeResponse::ServiceId(
                    ShortString::new(session_id[..24].to_vec()).unwrap(),
                ),
            ),
        ),
        (
            "smp_server_handshake.error",
            hs(
                2,
                &SmpServerHandshakeResponse::Error(HelloTransportError::Handshake(
                    HandshakeErrorKind::Identity,
                )),
            ),
        ),
        (
            "ntf_server_hello.v1-3",
            hs(
                3,
                &NtfServerHello {
                    versions: ntf_version::SERVER_RANGE,
                    session_id: ShortString::new(ntf_session_id.clone()).unwrap(),
                    signed_key: Some(Large::new(signed_key.clone()).unwrap()),
                },
            ),
        ),
        (
            "ntf_server_hello.v1-1",
            hs(
                3,
                &NtfServerHello {
                    versions: VersionRange::single(1),
                    session_id: ShortString::new(ntf_session_id.clone()).unwrap(),
                    signed_key: None,
                },
            ),
        ),
        (
            "ntf_client_hello.v3",
            hs(
                4,
                &NtfClientHello {
                    version: 3,
                    key_hash: ShortString::new(key_hash.clone()).unwrap(),
                },
            ),
        ),
    ];
    for (name, bytes) in hellos {
        add("handshake", file_name(name, ""), bytes, true);
    }
    // Names that differ only in characters replaced by `_` get a counter.
    let mut seen = std::collections::BTreeSet::new();
    for s in &mut out {
        let base = s.name.clone();
        let mut k = 1;
        while !seen.insert((s.target, s.name.clone())) {
            k += 1;
            s.name = format!("{base}-{k}");
        }
    }
    out
}

#[test]
fn seed_corpus_matches_vectors() {
    let seeds = seeds();
    let mut per_target = BTreeMap::<&str, usize>::new();
    for s in &seeds {
        let path = corpus_dir(s.target).join(&s.name);
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "seed {} missing ({e}); run write_seed_corpus",
                path.display()
            )
        });
        assert_eq!(
            on_disk,
            s.bytes,
            "seed {} differs from the vectors",
            path.display()
        );
        let body = TARGETS.iter().find(|(t, _)| *t == s.target).unwrap().1;
        if s.valid {
            assert!(
                body(&s.bytes),
                "valid vector seed {} was not accepted",
                s.name
            );
        }
        *per_target.entry(s.target).or_default() += 1;
    }
    // Every target has seeds, and the families are all there.
    assert_eq!(per_target.len(), TARGETS.len(), "{per_target:?}");
    // transmission.* (5 + PING reply), smp_syntax.* (31 requests + 31 replies),
    // ntf_syntax.* (5 + 5 replies), transmission.v3.TNEW.signed
    assert_eq!(
        per_target["transmission"],
        6 + 62 + 10 + 1,
        "{per_target:?}"
    );
    // encode.* (80), smp_syntax.* (31 commands + 31 replies)
    assert_eq!(per_target["smp_command"], 80 + 62, "{per_target:?}");
    // ntf_syntax.* (3 each), encode.* (36, + 19 TKN/SUB statuses as text), block of the
    // signed TNEW, pn_messages, device_token.*
    assert_eq!(
        per_target["ntf_command"],
        15 + 36 + 19 + 1 + 1 + 2,
        "{per_target:?}"
    );
    // server_address (7 + 6 binary), xftp, transport_host (15), queue (17), connection_link
    // (20), short_link (10 + 4 from shorten/restore), e2e params (2)
    assert_eq!(
        per_target["address"],
        13 + 1 + 15 + 17 + 20 + 14 + 2,
        "{per_target:?}"
    );
    assert_eq!(per_target["handshake"], 11);
}

#[test]
#[ignore = "writes fuzz/corpus seed files; run on purpose after the vectors change"]
fn write_seed_corpus() {
    let mut names = std::collections::BTreeSet::new();
    for s in seeds() {
        let dir = corpus_dir(s.target);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(
            names.insert((s.target, s.name.clone())),
            "duplicate seed name {}",
            s.name
        );
        std::fs::write(dir.join(&s.name), &s.bytes).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// regress inputs

/// Every `regress-*` file of these targets' corpora, with the check below that pins its decoder
/// result (the replay above only runs them).
const REGRESS: [(&str, &str); 10] = [
    ("address", "regress-binary-host-ipv4-leading-zeros"),
    ("address", "regress-ipv6-dotted-tail"),
    ("ntf_command", "regress-pn-messages-ipv6-dotted-tail"),
    ("smp_command", "regress-send-reserved-flag-bytes"),
    ("smp_command", "regress-prxy-host-ipv4-leading-zeros"),
    ("smp_command", "regress-prxy-host-ipv6-dotted-tail"),
    ("address", "regress-binary-host-ipv6-dotted-tail"),
    ("smp_command", "regress-err-cmd-no-queue-alias"),
    ("ntf_command", "regress-err-cmd-no-queue-alias"),
    ("smp_command", "regress-msg-body-with-no-queue-text"),
];

#[test]
fn regress_inputs_give_their_result() {
    use hush_proto::address::{ProtocolServer, ProtocolType, TransportHost};
    use hush_proto::encoding::Parser;
    use hush_proto::smp::Command;

    for (target, _) in TARGETS {
        for e in std::fs::read_dir(corpus_dir(target)).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            if name.starts_with("regress-") {
                assert!(
                    REGRESS.contains(&(target, name.as_str())),
                    "{target}/{name} has no result check in REGRESS"
                );
            }
        }
    }
    let read = |(target, name): (&str, &str)| {
        let d = std::fs::read(corpus_dir(target).join(name)).unwrap();
        let body = TARGETS.iter().find(|(t, _)| *t == target).unwrap().1;
        assert!(body(&d), "{target}/{name} is accepted by its body");
        d
    };

    // A binary server address whose IPv4 host has leading zeros (hosts are text inside) is
    // accepted; it re-encodes shorter, so only the value round trip holds.
    let d = read(REGRESS[0]);
    assert_eq!(d[0] % 8, 7, "binary server address selector");
    let mut p = Parser::new(&d[1..]);
    let srv = ProtocolServer::decode_binary(&mut p, ProtocolType::Smp).unwrap();
    let mut enc = Vec::new();
    srv.encode_binary(&mut enc);
    assert!(enc.len() < d.len() - 1 - p.remaining().len());

    // A bare IPv6 host prints with a dotted IPv4 tail, which a bare host does not parse back
    // (same in the reference).
    let d = read(REGRESS[1]);
    let host = TransportHost::parse_bytes(&d[1..]).unwrap();
    let text = host.to_text();
    assert!(text.starts_with("::") && text.contains('.'), "{text}");
    assert!(TransportHost::parse_bytes(text.as_bytes()).is_err());

    // The same host inside PNMessages text.
    let d = read(REGRESS[2]);
    assert_eq!(d[0] % 5, 3, "PNMessages selector");

    // SEND with reserved flag bytes after `T`: accepted, re-encoded without them.
    let d = read(REGRESS[3]);
    let version = bodies::SMP_VERSIONS[(d[0] & 0x7f) as usize % bodies::SMP_VERSIONS.len()];
    let cmd = Command::decode(&d[1..], version).unwrap();
    assert!(matches!(cmd, Command::Send { .. }));
    assert_ne!(cmd.encode(version), &d[1..]);

    // Issue 10 fuzzing: `PRXY` carries a binary server address, whose hosts are text. An IPv4
    // host with leading zeros (`00.0.0.0`) is accepted and re-encodes shorter (`0.0.0.0`):
    // the value round trips, the bytes are not canonical.
    let prxy = |d: &[u8]| {
        let version = bodies::SMP_VERSIONS[(d[0] & 0x7f) as usize % bodies::SMP_VERSIONS.len()];
        let cmd = Command::decode(&d[1..], version).unwrap();
        let Command::Prxy { server, .. } = &cmd else {
            panic!("PRXY expected, got {}", cmd.tag());
        };
        let host = server.hosts()[0].to_text();
        (version, cmd.clone(), host)
    };
    let d = read(REGRESS[4]);
    let (version, cmd, host) = prxy(&d);
    assert_eq!(host, "0.0.0.0");
    let enc = cmd.encode(version);
    assert_eq!(enc.len(), d.len() - 2);
    assert_eq!(Command::decode(&enc, version), Ok(cmd));

    // An IPv6 host `::9:9` prints as `::0.9.0.9` (as the reference), which the host parser
    // does not read back, also inside the binary form: the re-encoded `PRXY` does not decode
    // (`ERR CMD SYNTAX`, no panic).
    let d = read(REGRESS[5]);
    let (version, cmd, host) = prxy(&d);
    assert_eq!(host, "::0.9.0.9");
    assert_eq!(
        Command::decode(&cmd.encode(version), version),
        Err(hush_proto::error::CommandError::Syntax)
    );

    // The same host in a binary server address.
    let d = read(REGRESS[6]);
    assert_eq!(d[0] % 8, 7, "binary server address selector");
    let srv = ProtocolServer::decode_binary(&mut Parser::new(&d[1..]), ProtocolType::Smp).unwrap();
    assert_eq!(srv.hosts()[0].to_text(), "::0.9.0.9");
    let mut enc = Vec::new();
    srv.encode_binary(&mut enc);
    assert!(ProtocolServer::decode_binary(&mut Parser::new(&enc), ProtocolType::Smp).is_err());

    // `ERR CMD NO_QUEUE`, the legacy name, reads as `NO_ENTITY` and is written as such (SMP
    // broker message and NTF response).
    use hush_proto::error::{CommandError, ErrorType};
    use hush_proto::ntf::NtfResponse;
    use hush_proto::smp::BrokerMsg;
    let no_entity = ErrorType::Cmd(CommandError::NoEntity);
    let d = read(REGRESS[7]);
    assert_eq!(&d[1..], b"ERR CMD NO_QUEUE");
    assert_eq!(d[0] & 0x80, 0x80, "broker message selector");
    let version = bodies::SMP_VERSIONS[(d[0] & 0x7f) as usize % bodies::SMP_VERSIONS.len()];
    let msg = BrokerMsg::decode(&d[1..], version).unwrap();
    assert_eq!(msg, BrokerMsg::Err(no_entity.clone()));
    assert_eq!(msg.encode(version), b"ERR CMD NO_ENTITY");
    let d = read(REGRESS[8]);
    assert_eq!(d[0] % 5, 1, "NTF response selector");
    let resp = NtfResponse::parse(&d[1..], ntf_version::CURRENT).unwrap();
    assert_eq!(resp, NtfResponse::Err(no_entity));
    assert_eq!(
        resp.encode_checked(ntf_version::CURRENT).unwrap(),
        b"ERR CMD NO_ENTITY"
    );

    // The same text inside a `MSG` body is opaque: kept byte for byte (the body once renamed
    // it in the input before comparing).
    let d = read(REGRESS[9]);
    let version = bodies::SMP_VERSIONS[(d[0] & 0x7f) as usize % bodies::SMP_VERSIONS.len()];
    let msg = BrokerMsg::decode(&d[1..], version).unwrap();
    assert!(matches!(msg, BrokerMsg::Msg { .. }), "{}", msg.tag());
    assert_eq!(msg.encode(version), &d[1..]);
    assert!(d.windows(12).any(|w| w == b"CMD NO_QUEUE"));
}

/// Inputs kept from fuzzing runs (`fuzz-*`: a handful of the inputs that added the most
/// coverage, see fuzz/README.md "Fuzzing (issue 10)"), with whether their body accepts them.
const KEPT: &[(&str, &str, bool)] = &[
    ("address", "fuzz-65eee9aebc3d", true),
    ("address", "fuzz-6a0306625931", true),
    ("address", "fuzz-785fbb01212c", true),
    ("address", "fuzz-e8b2cc765c2e", true),
    ("address", "fuzz-eb28603b25cb", true),
    ("handshake", "fuzz-0b667da4aff3", true),
    ("handshake", "fuzz-279aaa786e67", true),
    ("handshake", "fuzz-51520e26881f", true),
    ("handshake", "fuzz-c4b346acf65d", true),
    ("handshake", "fuzz-ff7319d5da35", true),
    ("ntf_command", "fuzz-1b5850b862bb", true),
    ("ntf_command", "fuzz-5653bf1fe683", true),
    ("ntf_command", "fuzz-cef6f4347bc8", true),
    ("ntf_command", "fuzz-ee4266a93d5b", true),
    ("ntf_command", "fuzz-f638b5cad24a", true),
    ("smp_command", "fuzz-4357466e2609", true),
    ("smp_command", "fuzz-6b155758fa0b", true),
    ("smp_command", "fuzz-ff38c649ddab", true),
    ("transmission", "fuzz-00a00524ab1a", true),
    ("transmission", "fuzz-0a268f7658f3", true),
    ("transmission", "fuzz-0e663167be80", true),
    ("transmission", "fuzz-a9bb02325d43", true),
    ("transmission", "fuzz-ef6a381446fb", true),
];

#[test]
fn kept_inputs_give_their_result() {
    let mut wrong = Vec::new();
    for (target, body) in TARGETS {
        for e in std::fs::read_dir(corpus_dir(target)).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            if !name.starts_with("fuzz-") {
                continue;
            }
            let data = std::fs::read(corpus_dir(target).join(&name)).unwrap();
            let got = body(&data);
            match KEPT.iter().find(|(t, n, _)| *t == target && *n == name) {
                Some(&(_, _, accepted)) if accepted == got => {}
                _ => wrong.push(format!("(\"{target}\", \"{name}\", {got}),")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "kept inputs without their result in KEPT:\n{}",
        wrong.join("\n")
    );
}
