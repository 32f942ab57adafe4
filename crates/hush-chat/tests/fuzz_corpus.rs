//! Corpus replay for the cargo-fuzz target `chat_message` (`fuzz/fuzz_targets/bodies/chat.rs`,
//! included below): every file of `fuzz/corpus/chat_message/` runs through the body the fuzzer
//! runs (decode, re-encode, decode again). A missing or empty corpus fails the test.
//!
//! `seed-<name>-ok<k>` files must decode to exactly `k` messages (the name records the outcome
//! when the seed was written); other files (inputs kept from fuzzing runs) must not panic.
//! Seeds: the reference's ProtocolTests.hs literals used in `reference_vectors.rs`, a `[` batch,
//! an `X` compressed batch and malformed shapes. Regenerate with
//! `cargo test -p hush-chat --test fuzz_corpus -- --ignored write_seed_corpus`.

#[path = "../../../fuzz/fuzz_targets/bodies/chat.rs"]
mod bodies;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/chat_message")
}

#[test]
fn replay_chat_message() {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {} missing: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus directory {} is empty",
        dir.display()
    );
    let mut failures = Vec::new();
    let mut decoded_somewhere = 0;
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        match catch_unwind(AssertUnwindSafe(|| bodies::chat_message(&data))) {
            Err(_) => failures.push(format!("{name}: panicked")),
            Ok(n) => {
                decoded_somewhere += usize::from(n > 0);
                if let Some(k) = name
                    .strip_prefix("seed-")
                    .and_then(|r| r.rsplit_once("-ok"))
                    .and_then(|(_, k)| k.parse::<usize>().ok())
                    && k != n
                {
                    failures.push(format!("{name}: {n} messages decoded, expected {k}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "chat_message corpus: {failures:#?}");
    assert!(
        decoded_somewhere > 0,
        "no corpus input decodes: seeds missing?"
    );
}

#[test]
#[ignore = "writes fuzz/corpus/chat_message seed files; run on purpose after the format changes"]
fn write_seed_corpus() {
    use hush_chat::{ChatMessage, Profile, batch_messages, compress_body};
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let text = ChatMessage::text("hello").encode();
    let info = ChatMessage::info(Profile::named("alice")).encode();
    let mut seeds: Vec<(&str, Vec<u8>)> = vec![
        ("msg-new", br#"{"v":"1","event":"x.msg.new","params":{"content":{"text":"hello","type":"text"}}}"#.to_vec()),
        ("msg-new-quote", br#"{"v":"1","msgId":"AQIDBA==","event":"x.msg.new","params":{"content":{"text":"hello to you too","type":"text"},"quote":{"content":{"text":"hello there!","type":"text"},"msgRef":{"msgId":"BQYHCA==","sent":true,"sentAt":"1970-01-01T00:00:01.000000001Z"}}}}"#.to_vec()),
        ("info", br#"{"v":"1","event":"x.info","params":{"profile":{"displayName":"alice","fullName":"Alice"}}}"#.to_vec()),
        ("unknown-event", br#"{"v":"1","event":"x.grp.mem.new","params":{"memberInfo":{}}}"#.to_vec()),
        ("ours-text", text.clone()),
        ("ours-info", info.clone()),
        ("not-json", b"{not json".to_vec()),
        ("empty-batch", b"[]".to_vec()),
        ("bad-compressed", b"X\x01\x00".to_vec()),
    ];
    for b in batch_messages(&[text.clone(), info.clone()], 15_000) {
        seeds.push(("batch", b.unwrap()));
    }
    let batch = [b"[".as_slice(), &text, b",", &info, b"]"].concat();
    seeds.push(("compressed-batch", compress_body(&batch).unwrap()));
    for (name, data) in seeds {
        let n = bodies::chat_message(&data);
        std::fs::write(dir.join(format!("seed-{name}-ok{n}")), data).unwrap();
    }
}
