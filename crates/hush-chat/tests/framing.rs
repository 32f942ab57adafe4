//! Batches, compressed batches, binary batches, size rules and version ranges.
//!
//! No reference test literal exists for compressed (`X`) or binary (`=`) batches; the expected
//! bytes here are written by hand from the reference source (`Simplex.Messaging.Compression`
//! `Compressed` encoding: `'0'` ‖ ByteString (1-byte length) or `'1'` ‖ Large (2-byte length);
//! a `NonEmpty` list is a 1-byte count then the items; `compressedBatchMsgBody_` prefixes `X`),
//! and the zstd frame below was made by the `zstd` 1.5.4 command line tool, not by this crate.

use hush_chat::version::{self, ChatVersionRange};
use hush_chat::{
    ChatError, ChatMessage, ChatMsgEvent, DecodeLimits, MAX_COMPRESSED_INFO_LENGTH,
    MAX_COMPRESSED_MSG_LENGTH, MAX_DECOMPRESSED_MSG_LENGTH, MAX_ENCODED_MSG_LENGTH, Profile,
    batch_messages, compress_body, conn_info_body, message_body, parse_chat_messages,
    parse_chat_messages_with,
};

const MSG1: &str = r#"{"v":"1","msgId":"AQIDBA==","event":"x.msg.new","params":{"content":{"text":"hello","type":"text"}}}"#;
const MSG2: &str = r#"{"v":"1","event":"x.msg.del","params":{"msgId":"AQIDBA=="}}"#;

fn texts(r: &[Result<ChatMessage, ChatError>]) -> Vec<String> {
    r.iter()
        .map(|m| match m {
            Ok(m) => m.msg_text().unwrap_or(m.event.name()).to_string(),
            Err(e) => format!("ERR {e}"),
        })
        .collect()
}

#[test]
fn json_array_batch() {
    let body = format!("[{MSG1},{MSG2}]");
    let r = parse_chat_messages(body.as_bytes());
    assert_eq!(texts(&r), ["hello", "x.msg.del"]);
}

#[test]
fn json_array_batch_bad_item_is_an_error_in_its_place() {
    let body = format!("[{MSG1},42,{{\"event\":\"x.ok\"}},{MSG2}]");
    let r = parse_chat_messages(body.as_bytes());
    assert_eq!(r.len(), 4);
    assert!(r[0].is_ok() && r[3].is_ok());
    assert!(matches!(r[1], Err(ChatError::Json(_))));
    assert!(matches!(r[2], Err(ChatError::Json(_))), "params missing");
}

#[test]
fn compressed_passthrough_bytes_by_hand() {
    // a body under 181 bytes: X, count 1, '0', 1-byte length, the body itself
    let body = MSG2.as_bytes();
    assert!(body.len() < 181);
    let mut expected = vec![b'X', 1, b'0', body.len() as u8];
    expected.extend_from_slice(body);
    assert_eq!(compress_body(body).unwrap(), expected);
    let r = parse_chat_messages(&expected);
    assert_eq!(texts(&r), ["x.msg.del"]);
}

/// `zstd -3 -c` (CLI 1.5.4) of a 316-byte JSON batch of three `x.msg.new` ("hello 0..2").
const CLI_FRAME_HEX: &str = "28b52ffd643c00550300e245151c608b330684f59706fb19c556c2dcb1091028a66c023cc981180481798981c2f75eaecf63c70500a7699411e9ee96398a5dded6d2589e7187b2c4b495a2f3650ae938822405837248ce170ad3d63821a0cea11d220600c09302e915364c62e7aca5428571a933fd5575e6";

#[test]
fn compressed_zstd_block_from_the_cli() {
    let frame = hex_decode(CLI_FRAME_HEX);
    assert_eq!(frame.len(), 120);
    let mut body = vec![b'X', 1, b'1', 0, 120];
    body.extend_from_slice(&frame);
    let r = parse_chat_messages(&body);
    assert_eq!(texts(&r), ["hello 0", "hello 1", "hello 2"]);
    for m in &r {
        assert_eq!(
            m.as_ref().unwrap().chat_vrange,
            ChatVersionRange::new(1, 9).unwrap()
        );
    }
}

#[test]
fn compress_body_long_uses_zstd_and_round_trips() {
    let msgs: Vec<Vec<u8>> = (0..40)
        .map(|i| ChatMessage::text(format!("message number {i}")).encode())
        .collect();
    let batch = batch_messages(&msgs, MAX_ENCODED_MSG_LENGTH);
    assert_eq!(batch.len(), 1);
    let batch = batch[0].as_ref().unwrap();
    let c = compress_body(batch).unwrap();
    assert_eq!(&c[..3], b"X\x011");
    let zlen = u16::from_be_bytes([c[3], c[4]]) as usize;
    assert_eq!(c.len(), 5 + zlen);
    assert_eq!(&c[5..9], &[0x28, 0xb5, 0x2f, 0xfd], "zstd frame magic");
    assert!(c.len() < batch.len() / 3, "{} -> {}", batch.len(), c.len());
    let r = parse_chat_messages(&c);
    assert_eq!(r.len(), 40);
    assert_eq!(
        r[39].as_ref().unwrap().msg_text(),
        Some("message number 39")
    );
}

#[test]
fn compressed_block_at_the_cap_decodes_and_one_byte_more_does_not() {
    // a valid chat message padded with spaces to exactly the cap, then the cap + 1
    let pad = |n: usize| {
        let mut b = MSG1.as_bytes().to_vec();
        b.resize(n, b' ');
        b
    };
    let ok = compress_body(&pad(MAX_DECOMPRESSED_MSG_LENGTH)).unwrap();
    assert_eq!(texts(&parse_chat_messages(&ok)), ["hello"]);
    let over = compress_body(&pad(MAX_DECOMPRESSED_MSG_LENGTH + 1)).unwrap();
    assert_eq!(
        parse_chat_messages(&over),
        vec![Err(ChatError::DecompressedTooLarge { limit: 65536 })]
    );
}

#[test]
fn total_cap_across_blocks() {
    let mut big = MSG1.as_bytes().to_vec();
    big.resize(40_000, b' ');
    let block = &compress_body(&big).unwrap()[2..];
    let mut body = vec![b'X', 2];
    body.extend_from_slice(block);
    body.extend_from_slice(block);
    let r = parse_chat_messages(&body);
    assert_eq!(r.len(), 2);
    assert!(r[0].is_ok());
    assert_eq!(
        r[1],
        Err(ChatError::DecompressedTooLarge {
            limit: 65536 - 40_000
        })
    );
    // with the reference's limits (per block only) both decode
    let loose = DecodeLimits {
        max_block: 65536,
        max_total: usize::MAX,
    };
    assert!(
        parse_chat_messages_with(&body, &loose)
            .iter()
            .all(|m| m.is_ok())
    );
}

#[test]
fn compressed_inside_compressed_is_refused() {
    let inner = compress_body(MSG1.as_bytes()).unwrap();
    let outer = compress_body(&inner).unwrap();
    assert_eq!(
        parse_chat_messages(&outer),
        vec![Err(ChatError::BadPrefix(b'X'))]
    );
}

#[test]
fn compressed_framing_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"X", "compressed batch without count"),
        (b"X\x00", "compressed batch with no blocks"),
        (b"X\x01", "compressed block cut short"),
        (b"X\x012\x00", "unknown compressed block tag"),
        (b"X\x010", "passthrough length cut short"),
        (b"X\x010\x05abc", "compressed block cut short"),
        (b"X\x011\x00", "compressed length cut short"),
        (
            b"X\x010\x02{}extra",
            "trailing bytes after compressed batch",
        ),
        (b"X\x020\x02{}", "compressed block cut short"),
    ];
    for (body, why) in cases {
        assert_eq!(
            parse_chat_messages(body),
            vec![Err(ChatError::Framing(why))],
            "{body:?}"
        );
    }
    // a block that is not a zstd frame
    let r = parse_chat_messages(b"X\x011\x00\x04abcd");
    assert!(matches!(r[..], [Err(ChatError::Zstd(_))]), "{r:?}");
    // an empty passthrough block
    assert_eq!(
        parse_chat_messages(b"X\x010\x00"),
        vec![Err(ChatError::Empty)]
    );
}

#[test]
fn binary_batch() {
    let mut body = vec![b'=', 3];
    for e in [MSG1.as_bytes(), MSG2.as_bytes(), b"F\x00\x01abc".as_slice()] {
        body.extend_from_slice(&(e.len() as u16).to_be_bytes());
        body.extend_from_slice(e);
    }
    let r = parse_chat_messages(&body);
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].as_ref().unwrap().msg_text(), Some("hello"));
    assert_eq!(r[1].as_ref().unwrap().event.name(), "x.msg.del");
    assert_eq!(r[2], Err(ChatError::Unsupported("binary file chunk")));
    // inside a compressed batch too
    let r = parse_chat_messages(&compress_body(&body).unwrap());
    assert_eq!(r.len(), 3);
    // framing errors
    assert_eq!(
        parse_chat_messages(b"=\x01\x00\x05{}"),
        vec![Err(ChatError::Framing("binary batch element cut short"))]
    );
    assert_eq!(
        parse_chat_messages(b"=\x01\x00\x02{}!"),
        vec![Err(ChatError::Framing("trailing bytes after binary batch"))]
    );
    assert_eq!(
        parse_chat_messages(b"="),
        vec![Err(ChatError::Framing("binary batch without count"))]
    );
    let signed = b"=\x01\x00\x03/ab";
    assert_eq!(
        parse_chat_messages(signed),
        vec![Err(ChatError::Unsupported("signed element (relay groups)"))]
    );
}

#[test]
fn batch_messages_packs_in_order_within_the_limit() {
    let m: Vec<Vec<u8>> = (0..5).map(|i| vec![b'a' + i; 10]).collect();
    // one alone: as is
    assert_eq!(batch_messages(&m[..1], 100), vec![Ok(m[0].clone())]);
    // [10,10,10] = 30 + 2 brackets + 2 commas = 34 ≤ 34; the 4th would make 45
    let b = batch_messages(&m, 34);
    assert_eq!(b.len(), 2);
    let first = b[0].as_ref().unwrap();
    assert_eq!(first.len(), 34);
    assert_eq!(&first[..12], b"[aaaaaaaaaa,");
    assert_eq!(b[1].as_ref().unwrap().len(), 10 + 10 + 3);
    // a message over the limit on its own is an error in its place; the others still go
    let mut m2 = m.clone();
    m2.insert(1, vec![b'x'; 40]);
    let b = batch_messages(&m2, 34);
    assert_eq!(b.len(), 4);
    assert_eq!(b[0], Ok(m[0].clone()));
    assert_eq!(b[1], Err(ChatError::TooLarge { len: 40, limit: 34 }));
    // real messages: what comes out parses back to the same messages
    let msgs: Vec<ChatMessage> = (0..300)
        .map(|i| ChatMessage::text(format!("m{i}")))
        .collect();
    let enc: Vec<Vec<u8>> = msgs.iter().map(|m| m.encode()).collect();
    let bodies = batch_messages(&enc, MAX_ENCODED_MSG_LENGTH);
    assert!(bodies.len() > 1);
    let back: Vec<ChatMessage> = bodies
        .iter()
        .flat_map(|b| {
            let b = b.as_ref().unwrap();
            assert!(b.len() <= MAX_ENCODED_MSG_LENGTH);
            parse_chat_messages(b)
        })
        .map(|m| m.unwrap())
        .collect();
    assert_eq!(back, msgs);
}

#[test]
fn size_rules_for_messages_and_conn_info() {
    let small = ChatMessage::text("hi").encode();
    assert_eq!(message_body(small.clone(), true).unwrap(), small);
    // over the compression threshold: compressed when allowed, plain (≤ 15602) when not
    let long = ChatMessage::text("lorem ipsum ".repeat(1200)).encode();
    assert!(long.len() > MAX_COMPRESSED_MSG_LENGTH && long.len() <= MAX_ENCODED_MSG_LENGTH);
    let c = message_body(long.clone(), true).unwrap();
    assert_eq!(c[0], b'X');
    assert!(c.len() <= MAX_COMPRESSED_MSG_LENGTH);
    assert_eq!(message_body(long.clone(), false).unwrap(), long);
    // over the plain limit without compression
    let huge = ChatMessage::text("x".repeat(20_000)).encode();
    assert!(matches!(
        message_body(huge.clone(), false),
        Err(ChatError::TooLarge { limit: 15602, .. })
    ));
    // incompressible over the compressed limit: error, as the reference
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: String = (0..20_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect();
    let noisy = ChatMessage::text(noise).encode();
    assert!(matches!(
        message_body(noisy, true),
        Err(ChatError::TooLarge { limit: 13380, .. })
    ));
    // conn info
    let p = Profile {
        image: Some(format!("data:image/jpg;base64,{}", "QUJD".repeat(3000))),
        ..Profile::named("alice")
    };
    let info = ChatMessage::info(p);
    let plain = conn_info_body(&info, false).unwrap();
    assert!(plain.len() > MAX_COMPRESSED_INFO_LENGTH);
    let c = conn_info_body(&info, true).unwrap();
    assert_eq!(c[0], b'X');
    assert!(c.len() <= MAX_COMPRESSED_INFO_LENGTH);
    assert_eq!(
        parse_chat_messages(&c)[0]
            .as_ref()
            .unwrap()
            .profile()
            .unwrap()
            .display_name,
        "alice"
    );
}

#[test]
fn conn_info_shapes() {
    let info = ChatMessage::info(Profile::named("bob"));
    let v: serde_json::Value = serde_json::from_slice(&info.encode()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"v":"1-9","event":"x.info","params":{"profile":{"displayName":"bob","fullName":""}}})
    );
    let req = ChatMessage::contact_request(Profile::named("bob"));
    let v: serde_json::Value = serde_json::from_slice(&req.encode()).unwrap();
    assert_eq!(v["event"], "x.contact");
    assert!(v.get("msgId").is_none());
    // 16 random bytes -> 24 base64url characters with padding
    assert_eq!(v["params"]["contactReqId"].as_str().unwrap().len(), 24);
    // messages carry a msgId shaped like the app's: base64 text of 12 random bytes
    let m = ChatMessage::text("x");
    let id = &m.msg_id.as_ref().unwrap().0;
    assert_eq!(id.len(), 16);
    assert!(
        id.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
    );
    let v: serde_json::Value = serde_json::from_slice(&m.encode()).unwrap();
    assert_eq!(v["msgId"].as_str().unwrap().len(), 24);
    assert!(m.event.has_notification() && m.event.has_delivery_receipt());
    assert!(!ChatMsgEvent::Ok.has_delivery_receipt());
}

#[test]
fn version_ranges() {
    let r = |s: &str| s.parse::<ChatVersionRange>();
    assert_eq!(r("1").unwrap(), ChatVersionRange::INITIAL);
    assert_eq!(r("1-16").unwrap().to_string(), "1-16");
    assert_eq!(r("7-7").unwrap().to_string(), "7");
    for bad in [
        "", "-", "1-", "-2", "5-1", "1-2-3", "a", "1.5", "65536", " 1", "+1", "1-65536",
    ] {
        assert_eq!(
            r(bad),
            Err(ChatError::BadVersionRange(bad.into())),
            "{bad:?}"
        );
    }
    let hush = version::HUSH_CHAT_VRANGE;
    assert_eq!(hush.to_string(), "1-9");
    // app 1-16: common max 9; old app 1-5: 5; incompatible ranges: the reference's rule
    assert_eq!(hush.peer_conn_version(&r("1-16").unwrap()), 9);
    assert_eq!(hush.peer_conn_version(&r("1-5").unwrap()), 5);
    assert_eq!(hush.peer_conn_version(&r("12-16").unwrap()), 12);
    assert_eq!(r("10-12").unwrap().peer_conn_version(&r("1-5").unwrap()), 5);
    assert_eq!(version::agent_to_chat_version(4), 1);
    assert_eq!(version::agent_to_chat_version(7), 8);
    // a message without "v" is version 1
    let m = ChatMessage::from_json_bytes(br#"{"event":"x.ok","params":{}}"#).unwrap();
    assert_eq!(m.chat_vrange, ChatVersionRange::INITIAL);
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
