//! Malformed input: every decoder gives a typed error, never a panic.

use hush_chat::{ChatError, parse_chat_messages};
use proptest::prelude::*;

fn one(body: &[u8]) -> Result<hush_chat::ChatMessage, ChatError> {
    let mut r = parse_chat_messages(body);
    assert_eq!(r.len(), 1, "{:?}", String::from_utf8_lossy(body));
    r.remove(0)
}

fn bad_params(body: &str) -> String {
    match one(body.as_bytes()) {
        Err(ChatError::BadParams { reason, .. }) => reason,
        r => panic!("{body}: expected BadParams, got {r:?}"),
    }
}

#[test]
fn known_bad_shapes() {
    assert_eq!(one(b""), Err(ChatError::Empty));
    assert_eq!(one(b"hello"), Err(ChatError::BadPrefix(b'h')));
    assert_eq!(one(b"\x00"), Err(ChatError::BadPrefix(0)));
    assert!(matches!(one(b"{"), Err(ChatError::Json(_))));
    assert!(matches!(one(b"{}"), Err(ChatError::Json(_))));
    assert!(matches!(one(b"["), Err(ChatError::Json(_))));
    assert!(matches!(
        one(b"{\"event\":1,\"params\":{}}"),
        Err(ChatError::Json(_))
    ));
    assert!(matches!(
        one(b"{\"event\":\"x.ok\",\"params\":[]}"),
        Err(ChatError::Json(_))
    ));
    assert_eq!(
        one(br#"{"v":"5-1","event":"x.ok","params":{}}"#),
        Err(ChatError::BadVersionRange("5-1".into()))
    );
    assert_eq!(
        one(br#"{"v":3,"event":"x.ok","params":{}}"#),
        Err(ChatError::BadVersionRange("3".into()))
    );
    assert_eq!(
        one(br#"{"msgId":"!!","event":"x.ok","params":{}}"#),
        Err(ChatError::BadBase64 { field: "msgId" })
    );
    // standard-alphabet base64 is not what the reference writes or reads
    assert_eq!(
        one(br#"{"msgId":"+/+/","event":"x.ok","params":{}}"#),
        Err(ChatError::BadBase64 { field: "msgId" })
    );
    // unpadded base64url is accepted
    assert_eq!(
        one(br#"{"msgId":"AQIDBA","event":"x.ok","params":{}}"#)
            .unwrap()
            .msg_id
            .unwrap()
            .0,
        [1, 2, 3, 4]
    );
    assert_eq!(
        bad_params(r#"{"event":"x.info","params":{}}"#),
        "profile missing"
    );
    assert_eq!(
        bad_params(r#"{"event":"x.info","params":{"profile":{"fullName":"A"}}}"#),
        "profile.displayName missing or not a string"
    );
    assert_eq!(
        bad_params(r#"{"event":"x.info","params":{"profile":{"displayName":"a","image":5}}}"#),
        "profile.image is not a string"
    );
    assert_eq!(
        bad_params(r#"{"event":"x.msg.new","params":{}}"#),
        "content missing"
    );
    assert_eq!(
        bad_params(r#"{"event":"x.msg.new","params":{"content":{"type":"text"}}}"#),
        "text content without text"
    );
    assert_eq!(
        bad_params(r#"{"event":"x.msg.new","params":{"content":{"text":"a"}}}"#),
        "content.type missing or not a string"
    );
    assert_eq!(
        bad_params(
            r#"{"event":"x.msg.new","params":{"content":{"type":"text","text":"a"},"forward":1}}"#
        ),
        "invalid forward field"
    );
    assert_eq!(
        bad_params(
            r#"{"event":"x.msg.new","params":{"content":{"type":"text","text":"a"},"ttl":"1h"}}"#
        ),
        "ttl is not an integer"
    );
    assert_eq!(
        bad_params(r#"{"event":"x.msg.del","params":{}}"#),
        "msgId missing"
    );
    assert!(matches!(
        one(br#"{"event":"x.msg.update","params":{"msgId":"%%","content":{"type":"text","text":"a"}}}"#),
        Err(ChatError::BadBase64 { field: "msgId" })
    ));
    assert!(matches!(
        one(
            br#"{"event":"x.contact","params":{"profile":{"displayName":"a"},"contactReqId":"@"}}"#
        ),
        Err(ChatError::BadBase64 {
            field: "contactReqId"
        })
    ));
    // deep nesting stops at serde_json's recursion limit with an error
    let deep = format!(
        "{{\"event\":\"x.y\",\"params\":{{\"a\":{}1{}}}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(matches!(one(deep.as_bytes()), Err(ChatError::Json(_))));
    // unknown events are never an error, whatever their name
    for e in ["x.future.thing", "y", "F", ""] {
        let body = format!(r#"{{"event":"{e}","params":{{"a":1}}}}"#);
        assert_eq!(one(body.as_bytes()).unwrap().event.name(), e);
    }
}

fn prefixed() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just(b"".to_vec()),
            Just(b"X".to_vec()),
            Just(b"X\x01".to_vec()),
            Just(b"X\x011".to_vec()),
            Just(b"X\x010".to_vec()),
            Just(b"=".to_vec()),
            Just(b"=\x01".to_vec()),
            Just(b"[".to_vec()),
            Just(b"{".to_vec()),
            Just(br#"{"event":"x.msg.new","params":"#.to_vec()),
            Just(b"X\x011\x00\x40\x28\xb5\x2f\xfd".to_vec()),
        ],
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(mut p, tail)| {
            p.extend(tail);
            p
        })
}

/// JSON-ish chat messages with random field values.
fn jsonish() -> impl Strategy<Value = String> {
    let val = prop_oneof![
        Just("null".to_string()),
        Just("1".to_string()),
        Just("true".to_string()),
        Just("\"AQIDBA==\"".to_string()),
        Just("\"1-9\"".to_string()),
        Just("{}".to_string()),
        Just("[]".to_string()),
        Just(r#"{"type":"text","text":"t"}"#.to_string()),
        Just(r#"{"displayName":"d","fullName":"f"}"#.to_string()),
        "\"[a-z.]{0,12}\"",
    ];
    let key = prop_oneof![
        Just("content"),
        Just("profile"),
        Just("msgId"),
        Just("forward"),
        Just("quote"),
        Just("ttl"),
        Just("live"),
        Just("contactReqId"),
        Just("welcomeMsgId"),
        Just("displayName"),
    ];
    let event = prop_oneof![
        Just("x.msg.new"),
        Just("x.msg.update"),
        Just("x.msg.del"),
        Just("x.info"),
        Just("x.contact"),
        Just("x.ok"),
        Just("x.grp.inv"),
    ];
    (
        event,
        proptest::collection::vec((key, val.clone()), 0..5),
        val.clone(),
        val,
    )
        .prop_map(|(e, params, v, id)| {
            let ps: Vec<String> = params.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!(
                "{{\"v\":{v},\"msgId\":{id},\"event\":\"{e}\",\"params\":{{{}}}}}",
                ps.join(",")
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        let r = parse_chat_messages(&b);
        prop_assert!(!r.is_empty() || b.first() == Some(&b'[') || b.first() == Some(&b'=') || b.first() == Some(&b'X'));
    }

    #[test]
    fn random_tails_after_known_prefixes_never_panic(b in prefixed()) {
        // an Ok from random bytes must still be a whole message that re-encodes and decodes
        for m in parse_chat_messages(&b).into_iter().flatten() {
            let again = parse_chat_messages(&m.encode());
            prop_assert_eq!(again, vec![Ok(m)]);
        }
    }

    #[test]
    fn jsonish_messages_decode_or_give_typed_errors(s in jsonish()) {
        for m in parse_chat_messages(s.as_bytes()) {
            match m {
                Ok(m) => {
                    let again = parse_chat_messages(&m.encode());
                    prop_assert_eq!(again, vec![Ok(m)]);
                }
                Err(ChatError::Json(_) | ChatError::BadParams { .. } | ChatError::BadBase64 { .. }
                    | ChatError::BadVersionRange(_)) => {}
                Err(e) => prop_assert!(false, "unexpected error kind {e:?} for {s}"),
            }
        }
    }
}
