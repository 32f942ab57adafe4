//! Body of the cargo-fuzz target `chat_message` (also replayed over `fuzz/corpus/chat_message/`
//! by `cargo test -p hush-chat --test fuzz_corpus`): a message body or connection info as a
//! contact sends it (any bytes: JSON, `[` batch, `X` compressed batch, `=` binary batch).
//!
//! Checks: decoding never panics and never decompresses past the cap; every message that
//! decodes re-encodes to bytes that decode to the same message (a stable round trip).
//! Returns how many messages decoded.

use hush_chat::parse_chat_messages;

pub fn chat_message(data: &[u8]) -> usize {
    let mut ok = 0;
    for m in parse_chat_messages(data).into_iter().flatten() {
        let bytes = m.encode();
        let again = parse_chat_messages(&bytes);
        assert_eq!(again.len(), 1, "one message re-encodes to one message");
        match &again[0] {
            Ok(m2) => assert_eq!(m2, &m, "round trip changed the message"),
            Err(e) => panic!("re-encoded message does not decode: {e}"),
        }
        ok += 1;
    }
    ok
}
