//! Corpus replay for the cargo-fuzz target `block` (`fuzz/fuzz_targets/bodies/block.rs`,
//! included below): every file of `fuzz/corpus/block/` runs through the body the fuzzer runs.
//! A missing or empty corpus directory fails the test.
//!
//! The `seed-*` files come from /work/shared/vectors ([`seeds`]): the encrypted PING block of
//! `sbchain.encrypted_block.PING` (opens with the fuzz chain key) and the block contents of the
//! `transmission.*` / `smp_syntax.*` vectors, padded. Regenerate with
//! `cargo test -p hush-transport --test fuzz_corpus -- --ignored write_seed_corpus`.
//!
//! The NTF targets `ntf_transmission` and `ntf_handshake` (`fuzz/fuzz_targets/bodies/ntf.rs`)
//! replay here too (they use hush-crypto): every corpus file has a known outcome, either from
//! its seed ([`ntf_seeds`], vectors and hush-proto encoders) or from [`NTF_EXPECTED`] (the
//! `regress-*` inputs and the seeds kept from fuzzing runs), and the replay asserts it.
//! Regenerate the seeds with
//! `cargo test -p hush-transport --test fuzz_corpus -- --ignored write_ntf_seed_corpus`.

#[path = "../../../fuzz/fuzz_targets/bodies/block.rs"]
mod bodies;

#[path = "../../../fuzz/fuzz_targets/bodies/ntf.rs"]
mod ntf_bodies;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use hush_proto::encoding::pad;
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/block")
}

#[test]
fn replay_block() {
    let dir = corpus_dir();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {} missing: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus directory {} is empty",
        dir.display()
    );
    let mut failures = Vec::new();
    let mut accepted = 0;
    for f in &files {
        let data = std::fs::read(f).unwrap();
        match catch_unwind(AssertUnwindSafe(|| bodies::block(&data))) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(_) => failures.push(f.display().to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "block: corpus inputs panicked: {failures:#?}"
    );
    assert!(
        accepted > 0,
        "no corpus block decoded ({} files)",
        files.len()
    );
}

fn load(file: &str) -> Vec<Value> {
    let path = format!(
        "{}/../../../shared/vectors/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("vector file {path} missing: {e}"));
    serde_json::from_str(&text).expect("vector file is a JSON array")
}

fn hexv(v: &Value) -> Vec<u8> {
    hex::decode(
        v.as_str()
            .unwrap_or_else(|| panic!("hex string expected, got {v}")),
    )
    .unwrap()
}

/// Block seeds: (file name, bytes). All of them hold a valid batch.
fn seeds() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let crypto = load("crypto.json");
    let ping = crypto
        .iter()
        .find(|v| v["name"] == "sbchain.encrypted_block.PING")
        .expect("sbchain.encrypted_block.PING vector");
    let key = bodies::fuzz_block_key();
    assert_eq!(
        hexv(&ping["inputs"]["sb_key_hex"]),
        key.0,
        "fuzz chain key ≠ vector key"
    );
    assert_eq!(
        hexv(&ping["inputs"]["nonce_hex"]),
        key.1,
        "fuzz chain nonce ≠ vector nonce"
    );
    out.insert(
        "seed-sbchain.encrypted_block.PING".to_string(),
        hexv(&ping["expected"]["block_hex"]),
    );
    for v in load("commands.json") {
        let name = v["name"].as_str().unwrap();
        let content = if name.starts_with("transmission.v18") {
            v["expected"].get("block_content_hex").map(hexv)
        } else if name.starts_with("smp_syntax.") {
            Some(hexv(&v["inputs"]["block_content_hex"]))
        } else {
            None
        };
        if let Some(c) = content {
            // Padded to a small length: the plain-block path does not need 16 KB.
            let padded = pad(&c, c.len() + 2 + 8).unwrap();
            let clean: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._-".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            out.insert(format!("seed-{clean}"), padded);
        }
    }
    out
}

#[test]
fn seed_corpus_matches_vectors() {
    let seeds = seeds();
    assert!(seeds.len() >= 1 + 31 + 3, "{} seeds", seeds.len());
    for (name, bytes) in &seeds {
        let path = corpus_dir().join(name);
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "seed {} missing ({e}); run write_seed_corpus",
                path.display()
            )
        });
        assert_eq!(
            &on_disk,
            bytes,
            "seed {} differs from the vectors",
            path.display()
        );
        assert!(bodies::block(bytes), "seed {name} does not decode");
    }
}

#[test]
#[ignore = "writes fuzz/corpus/block seed files; run on purpose after the vectors change"]
fn write_seed_corpus() {
    std::fs::create_dir_all(corpus_dir()).unwrap();
    for (name, bytes) in seeds() {
        std::fs::write(corpus_dir().join(name), bytes).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// NTF targets: ntf_transmission, ntf_handshake

use hush_proto::Encode;
use hush_proto::encoding::{Large, ShortString};
use hush_proto::handshake::{NtfClientHello, NtfServerHello};
use hush_proto::ntf::{NtfResponse, encode_ntf_transmission, ntf_block_content};
use hush_proto::transmission::{Transmission, batch_one};
use hush_proto::version::{NTF_BLOCK_SIZE, VersionRange, ntf_version};
use ntf_bodies::HelloOutcome;

/// What the body makes of a corpus file.
#[derive(Clone, Debug, PartialEq, Eq)]
enum NtfOutcome {
    /// `ntf_transmission`: the server's responses.
    Replies(Vec<NtfResponse>),
    /// `ntf_handshake`.
    Hello(Option<HelloOutcome>),
}

fn ntf_outcome(target: &str, data: &[u8]) -> NtfOutcome {
    match target {
        "ntf_transmission" => {
            let (decoded, replies) = ntf_bodies::ntf_transmission_replies(data);
            assert_eq!(decoded, ntf_bodies::ntf_transmission(data));
            NtfOutcome::Replies(replies)
        }
        "ntf_handshake" => NtfOutcome::Hello(ntf_bodies::ntf_handshake_outcome(data)),
        _ => unreachable!("{target}"),
    }
}

fn r(ascii: &str) -> NtfResponse {
    NtfResponse::parse(ascii.as_bytes(), ntf_version::CURRENT)
        .unwrap_or_else(|e| panic!("response {ascii}: {e:?}"))
}

fn replies(ascii: &[&str]) -> NtfOutcome {
    NtfOutcome::Replies(ascii.iter().map(|a| r(a)).collect())
}

/// The corpus files that are not seeds, with their outcome: inputs that once failed a check
/// (`regress-*`) and inputs kept from fuzzing runs (`fuzz-*`).
const NTF_EXPECTED: &[(&str, &str, NtfExpect)] = &[
    (
        "ntf_transmission",
        "regress-reply-too-large-for-block",
        NtfExpect::Replies(&["ERR CMD NO_AUTH"]),
    ),
    (
        "ntf_transmission",
        "fuzz-80d89f6a954a",
        NtfExpect::Replies(&["ERR AUTH"]),
    ),
    (
        "ntf_transmission",
        "fuzz-9a14244ef715",
        NtfExpect::Replies(&["PONG", "ERR AUTH", "ERR CMD SYNTAX"]),
    ),
    (
        "ntf_transmission",
        "fuzz-de2e67ab1db7",
        NtfExpect::Replies(&["ERR CMD SYNTAX"]),
    ),
    (
        "ntf_transmission",
        "fuzz-5b1aa1f04e63",
        NtfExpect::Replies(&["ERR CMD SYNTAX"]),
    ),
    (
        "ntf_handshake",
        "fuzz-3bb62c42deec",
        NtfExpect::Hello(Some(HelloOutcome::BadAuth)),
    ),
    (
        "ntf_handshake",
        "fuzz-c36de2c825dc",
        NtfExpect::Hello(Some(HelloOutcome::Version0)),
    ),
];

/// `regress-reply-too-large-for-block`: a v3 block whose one `TCHK` has a 255-byte corrId
/// and a 245-byte entity id (the block is full) gets `ERR CMD NO_AUTH`, and that reply does
/// not fit a block (the block writer skips it, reference `TELargeMsg`); the body once
/// asserted that every reply fits.
#[test]
fn regress_ntf_reply_too_large() {
    let d =
        std::fs::read(ntf_corpus_dir("ntf_transmission").join("regress-reply-too-large-for-block"))
            .unwrap();
    assert_eq!(d.len(), 1 + NTF_BLOCK_SIZE, "a whole block");
    let content = hush_proto::encoding::unpad(&d[1..]).unwrap();
    let items = hush_proto::ntf::decode_ntf_block_content(content, 3).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(ntf_bodies::reply_fits_block(items[0], 3), Some(false));
    assert_eq!(
        ntf_bodies::ntf_transmission_replies(&d),
        (true, vec![r("ERR CMD NO_AUTH")])
    );
}

/// An expected outcome in [`NTF_EXPECTED`] (constant form of [`NtfOutcome`]).
#[allow(dead_code)] // a variant is unused while no file of its target is listed
#[derive(Clone, Copy, Debug)]
enum NtfExpect {
    Replies(&'static [&'static str]),
    Hello(Option<HelloOutcome>),
}

impl NtfExpect {
    fn outcome(self) -> NtfOutcome {
        match self {
            NtfExpect::Replies(a) => replies(a),
            NtfExpect::Hello(h) => NtfOutcome::Hello(h),
        }
    }
}

fn ntf_corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../fuzz/corpus/{target}"))
}

/// Every file of the corpus runs without panicking and gives its known outcome.
fn replay_ntf(target: &str) {
    let dir = ntf_corpus_dir(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {} missing: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus directory {} is empty",
        dir.display()
    );
    let mut known: BTreeMap<String, NtfOutcome> = ntf_seeds()
        .into_iter()
        .filter(|s| s.target == target)
        .map(|s| (s.name, s.expect))
        .collect();
    for (t, name, e) in NTF_EXPECTED {
        if *t == target {
            known.insert(name.to_string(), e.outcome());
        }
    }
    let mut failures = Vec::new();
    let mut accepted = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let data = std::fs::read(f).unwrap();
        let expect = known
            .get(&name)
            .unwrap_or_else(|| panic!("{target}: no expected outcome for corpus file {name}"));
        match catch_unwind(AssertUnwindSafe(|| ntf_outcome(target, &data))) {
            Ok(got) => {
                assert_eq!(&got, expect, "{target}: corpus file {name}");
                let ok = match target {
                    "ntf_transmission" => ntf_bodies::ntf_transmission(&data),
                    _ => ntf_bodies::ntf_handshake(&data),
                };
                accepted += usize::from(ok);
            }
            Err(_) => failures.push(name),
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: corpus inputs panicked: {failures:#?}"
    );
    assert!(accepted > 0, "{target}: no corpus input decoded");
}

#[test]
fn replay_ntf_transmission() {
    replay_ntf("ntf_transmission");
}

#[test]
fn replay_ntf_handshake() {
    replay_ntf("ntf_handshake");
}

struct NtfSeed {
    target: &'static str,
    name: String,
    bytes: Vec<u8>,
    expect: NtfOutcome,
}

fn with_sel(sel: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![sel];
    v.extend_from_slice(body);
    v
}

/// `ntf_transmission` selector: version `v`, block (`pad(content)`) or one transmission.
fn tsel(version: u16, block: bool) -> u8 {
    let sel = (version - 1) as u8 + if block { 0 } else { 3 };
    assert_eq!(ntf_bodies::ntf_version_of(sel), version);
    sel
}

fn padded(content: &[u8]) -> Vec<u8> {
    pad(content, NTF_BLOCK_SIZE).unwrap()
}

fn transmission(t: &Transmission<'_>, version: u16) -> Vec<u8> {
    let mut out = Vec::new();
    encode_ntf_transmission(&mut out, t, version).unwrap();
    out
}

fn ntf_seeds() -> Vec<NtfSeed> {
    let mut out = Vec::new();
    let mut add = |target, name: &str, bytes: Vec<u8>, expect| {
        out.push(NtfSeed {
            target,
            name: format!("seed-{name}"),
            bytes,
            expect,
        })
    };
    let ntf: BTreeMap<String, Value> = load("ntf.json")
        .into_iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v))
        .collect();
    let v3 = ntf_version::CURRENT;

    // ntf_transmission: the ntf_syntax vectors (block and single transmission, v3).
    for (name, v) in ntf.range("ntf_syntax.".to_string().."ntf_syntax/".to_string()) {
        let (i, e) = (&v["inputs"], &v["expected"]);
        let expect = replies(&[e["response_ascii"].as_str().unwrap()]);
        add(
            "ntf_transmission",
            &format!("{name}.block"),
            with_sel(tsel(v3, true), &padded(&hexv(&i["v3_block_content_hex"]))),
            expect.clone(),
        );
        add(
            "ntf_transmission",
            name,
            with_sel(tsel(v3, false), &hexv(&i["v3_transmission_hex"])),
            expect,
        );
    }
    // The signed TNEW: its signature (session id 97..b6 = the bodies' session) verifies.
    let signed = &ntf["transmission.v3.TNEW.signed"];
    let (i, e) = (&signed["inputs"], &signed["expected"]);
    let tknid = NtfOutcome::Replies(vec![NtfResponse::TknId {
        token_id: ntf_bodies::FUZZ_TOKEN_ID.to_vec(),
        server_dh_key: hush_proto::ntf::PublicKeyDer::new(
            hush_crypto::X25519Secret::from_bytes(ntf_bodies::FUZZ_SESSION_KEY)
                .public()
                .to_spki_der(),
        )
        .unwrap(),
    }]);
    assert_eq!(hexv(&i["session_id_hex"]), ntf_bodies::FUZZ_SESSION_ID);
    add(
        "ntf_transmission",
        "transmission.v3.TNEW.signed.block",
        with_sel(tsel(v3, true), &hexv(&e["padded_block_hex"])),
        tknid.clone(),
    );
    add(
        "ntf_transmission",
        "transmission.v3.TNEW.signed",
        with_sel(tsel(v3, false), &hexv(&e["transmission_hex"])),
        tknid.clone(),
    );
    let (sig, corr, cmd) = (
        hexv(&e["signature_hex"]),
        hexv(&i["corr_id_hex"]),
        hexv(&i["command_hex"]),
    );
    // The same signed TNEW at v1 (session id on the wire) and v2 (batched).
    let mut t = Transmission::new(&corr, &[], &cmd);
    t.authorization = &sig;
    t.session_id = ntf_bodies::FUZZ_SESSION_ID;
    let t1 = transmission(&t, 1);
    add(
        "ntf_transmission",
        "TNEW.signed.v1",
        with_sel(tsel(1, false), &t1),
        tknid.clone(),
    );
    add(
        "ntf_transmission",
        "TNEW.signed.v1.block",
        with_sel(tsel(1, true), &padded(&ntf_block_content(&t1, 1).unwrap())),
        tknid.clone(),
    );
    let t2 = transmission(&t, 2);
    add(
        "ntf_transmission",
        "TNEW.signed.v2.block",
        with_sel(tsel(2, true), &padded(&ntf_block_content(&t2, 2).unwrap())),
        tknid,
    );
    // v1 with another connection's session id.
    let mut other = t;
    other.session_id = b"another session";
    add(
        "ntf_transmission",
        "TNEW.signed.v1.other_session",
        with_sel(tsel(1, false), &transmission(&other, 1)),
        replies(&["ERR SESSION"]),
    );
    // Every command of the encode.* vectors with an entity where it needs one and an
    // authenticator that does not verify (PING: none): the store is empty, so AUTH (PONG).
    let authenticator = [0x5a; 80];
    let mut batch: Vec<Vec<u8>> = Vec::new();
    for (name, v) in ntf.range("encode.".to_string().."encode/".to_string()) {
        let bytes = hexv(&v["expected"]["bytes_hex"]);
        let tag = bytes
            .get(..4)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("");
        let (entity, expect): (&[u8], &str) = match tag {
            "PING" => (b"", "PONG"),
            "TNEW" | "SNEW" => (b"", "ERR AUTH"),
            "TVFY" | "TCHK" | "TRPL" | "TDEL" | "TCRN" | "SCHK" | "SDEL" => {
                (b"entity-id", "ERR AUTH")
            }
            _ => continue,
        };
        let mut t = Transmission::new(b"corr-id-0123456789abcdef", entity, &bytes);
        if tag != "PING" {
            t.authorization = &authenticator;
        }
        let t3 = transmission(&t, v3);
        add(
            "ntf_transmission",
            &format!("{name}.authenticator"),
            with_sel(tsel(v3, false), &t3),
            replies(&[expect]),
        );
        if matches!(tag, "PING" | "TCHK" | "SDEL") {
            batch.push(t3);
        }
    }
    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
    add(
        "ntf_transmission",
        "batch.PING_TCHK_SDEL",
        with_sel(
            tsel(v3, true),
            &padded(&batch_one(&refs, NTF_BLOCK_SIZE).unwrap()),
        ),
        replies(&["PONG", "ERR AUTH", "ERR AUTH"]),
    );
    add(
        "ntf_transmission",
        "batch.count_too_big",
        with_sel(tsel(v3, true), &padded(&[2, 0, 1, b'x'])),
        replies(&["ERR BLOCK"]),
    );
    add(
        "ntf_transmission",
        "authorization.bad_length",
        with_sel(tsel(v3, false), &{
            let mut t = Transmission::new(b"c", b"e", b"TCHK");
            t.authorization = &[1; 63];
            transmission(&t, v3)
        }),
        replies(&["ERR BLOCK"]),
    );

    // ntf_handshake: hellos from the encoders.
    let session = ShortString::new(ntf_bodies::FUZZ_SESSION_ID.to_vec()).unwrap();
    let crypto: BTreeMap<String, Value> = load("crypto.json")
        .into_iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v))
        .collect();
    let signed_key = hexv(&crypto["signed_x25519_key.ed25519"]["expected"]["signed_exact_der_hex"]);
    let server_hello = |versions, session: &ShortString, key: Option<Vec<u8>>| {
        with_sel(
            0,
            &padded(
                &NtfServerHello {
                    versions,
                    session_id: session.clone(),
                    signed_key: key.map(|k| Large::new(k).unwrap()),
                }
                .to_bytes(),
            ),
        )
    };
    let hello = |h: HelloOutcome| NtfOutcome::Hello(Some(h));
    add(
        "ntf_handshake",
        "server_hello.v1-3",
        server_hello(
            ntf_version::SERVER_RANGE,
            &session,
            Some(signed_key.clone()),
        ),
        hello(HelloOutcome::Version(3)),
    );
    add(
        "ntf_handshake",
        "server_hello.v1-2",
        server_hello(
            VersionRange::new(1, 2).unwrap(),
            &session,
            Some(signed_key.clone()),
        ),
        hello(HelloOutcome::Version(2)),
    );
    add(
        "ntf_handshake",
        "server_hello.v1-1",
        server_hello(VersionRange::single(1), &session, None),
        hello(HelloOutcome::Version(1)),
    );
    let mut forged = signed_key.clone();
    *forged.last_mut().unwrap() ^= 1;
    add(
        "ntf_handshake",
        "server_hello.bad_signature",
        server_hello(ntf_version::SERVER_RANGE, &session, Some(forged)),
        hello(HelloOutcome::BadAuth),
    );
    add(
        "ntf_handshake",
        "server_hello.other_session",
        server_hello(
            ntf_version::SERVER_RANGE,
            &ShortString::new(b"another session".to_vec()).unwrap(),
            Some(signed_key.clone()),
        ),
        hello(HelloOutcome::Session),
    );
    add(
        "ntf_handshake",
        "server_hello.v4-5",
        server_hello(VersionRange::new(4, 5).unwrap(), &session, Some(signed_key)),
        hello(HelloOutcome::Version0),
    );
    let key_hash = ShortString::new(ntf_bodies::fuzz_key_hash().to_vec()).unwrap();
    let client_hello = |version, key_hash: &ShortString| {
        with_sel(
            1,
            &padded(
                &NtfClientHello {
                    version,
                    key_hash: key_hash.clone(),
                }
                .to_bytes(),
            ),
        )
    };
    add(
        "ntf_handshake",
        "client_hello.v3",
        client_hello(3, &key_hash),
        hello(HelloOutcome::Version(3)),
    );
    add(
        "ntf_handshake",
        "client_hello.v1",
        client_hello(1, &key_hash),
        hello(HelloOutcome::Version(1)),
    );
    add(
        "ntf_handshake",
        "client_hello.v4",
        client_hello(4, &key_hash),
        hello(HelloOutcome::Version0),
    );
    add(
        "ntf_handshake",
        "client_hello.other_key_hash",
        client_hello(3, &ShortString::new(vec![0; 32]).unwrap()),
        hello(HelloOutcome::Identity),
    );
    add(
        "ntf_handshake",
        "client_hello.truncated",
        with_sel(1, &padded(&[0, 3, 32, 1, 2])),
        hello(HelloOutcome::Parse),
    );
    add(
        "ntf_handshake",
        "server_hello.bad_pad",
        with_sel(0, &[1, 255, 0, 1]),
        hello(HelloOutcome::Block),
    );
    out
}

#[test]
fn ntf_seed_corpus_matches() {
    let seeds = ntf_seeds();
    for target in ["ntf_transmission", "ntf_handshake"] {
        assert!(
            seeds.iter().filter(|s| s.target == target).count() >= 10,
            "{target}"
        );
    }
    let mut names = std::collections::BTreeSet::new();
    for s in &seeds {
        assert!(
            names.insert((s.target, s.name.clone())),
            "duplicate seed {}",
            s.name
        );
        let path = ntf_corpus_dir(s.target).join(&s.name);
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "seed {} missing ({e}); run write_ntf_seed_corpus",
                path.display()
            )
        });
        assert_eq!(
            on_disk,
            s.bytes,
            "seed {} differs from its source",
            path.display()
        );
        assert_eq!(ntf_outcome(s.target, &s.bytes), s.expect, "seed {}", s.name);
    }
}

#[test]
#[ignore = "writes fuzz/corpus/ntf_* seed files; run on purpose after the vectors change"]
fn write_ntf_seed_corpus() {
    for s in ntf_seeds() {
        let dir = ntf_corpus_dir(s.target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(&s.name), &s.bytes).unwrap();
    }
}

/// `block` inputs kept from fuzzing runs (`fuzz-*`, see fuzz/README.md "Fuzzing (issue 10)"),
/// with whether the body decodes them.
const KEPT_BLOCK: &[(&str, bool)] = &[
    ("fuzz-1dc920f3dd7d", true),
    ("fuzz-cc6273326f78", true),
    ("fuzz-de39de81f033", true),
];

#[test]
fn kept_block_inputs_give_their_result() {
    let mut wrong = Vec::new();
    for e in std::fs::read_dir(corpus_dir()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        if !name.starts_with("fuzz-") {
            continue;
        }
        let got = bodies::block(&std::fs::read(corpus_dir().join(&name)).unwrap());
        if !KEPT_BLOCK.contains(&(name.as_str(), got)) {
            wrong.push(format!("(\"{name}\", {got}),"));
        }
    }
    assert!(
        wrong.is_empty(),
        "kept block inputs without their result in KEPT_BLOCK:\n{}",
        wrong.join("\n")
    );
}
