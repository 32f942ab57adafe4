//! Corpus replay for the cargo-fuzz target `block` (`fuzz/fuzz_targets/bodies/block.rs`,
//! included below): every file of `fuzz/corpus/block/` runs through the body the fuzzer runs.
//! A missing or empty corpus directory fails the test.
//!
//! The `seed-*` files come from /work/shared/vectors ([`seeds`]): the encrypted PING block of
//! `sbchain.encrypted_block.PING` (opens with the fuzz chain key) and the block contents of the
//! `transmission.*` / `smp_syntax.*` vectors, padded. Regenerate with
//! `cargo test -p hush-transport --test fuzz_corpus -- --ignored write_seed_corpus`.

#[path = "../../../fuzz/fuzz_targets/bodies/block.rs"]
mod bodies;

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
