//! Chat messages from the reference's own tests: simplex-chat `tests/ProtocolTests.hs`
//! (`decodeChatMessageTest`). Each literal below is copied from there (Haskell string escapes
//! undone). Where the reference asserts both directions (`#==#`, `##==##`) we assert both:
//! our decode gives the typed value, and our encoding of that value is the same JSON *value*
//! as the literal (the reference compares `J.eitherDecodeStrict'` of both sides, i.e. parsed
//! JSON, not bytes; key order is free). Where it asserts decoding only (`==#`) we decode only.

use hush_chat::version::ChatVersionRange;
use hush_chat::{ChatMessage, ChatMsgEvent, MsgContent, Profile, SharedMsgId, parse_chat_messages};
use serde_json::{Value, json};

const IMG: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgAAAAIAQMAAAD+wSzIAAAABlBMVEX///+/v7+jQ3Y5AAAADklEQVQI12P4AIX8EAgALgAD/aNpbtEAAAAASUVORK5CYII=";

fn decode_one(s: &str) -> ChatMessage {
    let mut v = parse_chat_messages(s.as_bytes());
    assert_eq!(v.len(), 1, "exactly one message expected from {s}");
    v.remove(0).unwrap_or_else(|e| panic!("decode {s}: {e}"))
}

/// `##==`: encoding `m` gives the literal's JSON value.
fn assert_encodes_to(m: &ChatMessage, s: &str) {
    let ours: Value = serde_json::from_slice(&m.encode()).unwrap();
    let theirs: Value = serde_json::from_str(s).unwrap();
    assert_eq!(ours, theirs, "encoding differs from the reference literal");
}

/// `#==#` / `##==##`: decodes to `expected`, and `expected` encodes to the literal.
fn both_ways(s: &str, expected: &ChatMessage) {
    assert_eq!(&decode_one(s), expected);
    assert_encodes_to(expected, s);
}

fn initial(event: ChatMsgEvent) -> ChatMessage {
    ChatMessage {
        chat_vrange: ChatVersionRange::INITIAL,
        msg_id: None,
        event,
    }
}

fn id1234() -> SharedMsgId {
    SharedMsgId(vec![1, 2, 3, 4])
}

/// `testProfile` of the reference test.
fn test_profile() -> Profile {
    Profile {
        display_name: "alice".into(),
        full_name: "Alice".into(),
        image: Some(IMG.into()),
        preferences: Some(json!({"reactions":{"allow":"yes"},"voice":{"allow":"yes"}})),
        ..Profile::default()
    }
}

fn text_new(m: &ChatMessage) -> (&str, &hush_chat::MsgContainer) {
    match &m.event {
        ChatMsgEvent::MsgNew(c) => (c.content.text(), c),
        e => panic!("expected x.msg.new, got {e:?}"),
    }
}

#[test]
fn x_msg_new_simple_text() {
    let s = r#"{"v":"1","event":"x.msg.new","params":{"content":{"text":"hello","type":"text"}}}"#;
    let m = initial(ChatMsgEvent::MsgNew(hush_chat::MsgContainer::simple(
        MsgContent::Text("hello".into()),
    )));
    both_ways(s, &m);
}

#[test]
fn x_msg_new_timed_and_live() {
    let s = r#"{"v":"1","event":"x.msg.new","params":{"content":{"text":"hello","type":"text"},"ttl":3600}}"#;
    let m = decode_one(s);
    let (text, c) = text_new(&m);
    assert_eq!((text, c.ttl, c.live), ("hello", Some(3600), None));
    assert_encodes_to(&m, s);

    let s = r#"{"v":"1","event":"x.msg.new","params":{"content":{"text":"hello","type":"text"},"live":true}}"#;
    let m = decode_one(s);
    assert_eq!(text_new(&m).1.live, Some(true));
    assert_encodes_to(&m, s);
}

#[test]
fn x_msg_new_link_and_image_kept_whole() {
    let s = r#"{"v":"1","event":"x.msg.new","params":{"content":{"text":"https://simplex.chat","type":"link","preview":{"description":"SimpleX Chat","image":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgA","title":"SimpleX Chat","uri":"https://simplex.chat"}}}}"#;
    let m = decode_one(s);
    let (text, c) = text_new(&m);
    assert_eq!((text, c.content.tag()), ("https://simplex.chat", "link"));
    assert_encodes_to(&m, s);

    let s = format!(
        r#"{{"v":"1","event":"x.msg.new","params":{{"content":{{"text":"here's an image","type":"image","image":"{IMG}"}}}}}}"#
    );
    let m = decode_one(&s);
    assert_eq!(text_new(&m).0, "here's an image");
    assert_eq!(text_new(&m).1.content.tag(), "image");
    assert_encodes_to(&m, &s);
}

#[test]
fn x_msg_new_with_msg_id() {
    let s = r#"{"v":"1","msgId":"AQIDBA==","event":"x.msg.new","params":{"content":{"text":"hello","type":"text"}}}"#;
    let m = ChatMessage {
        chat_vrange: ChatVersionRange::INITIAL,
        msg_id: Some(id1234()),
        event: ChatMsgEvent::MsgNew(hush_chat::MsgContainer::simple(MsgContent::Text(
            "hello".into(),
        ))),
    };
    both_ways(s, &m);
}

#[test]
fn x_msg_new_with_chat_version_range() {
    // the reference's supportedChatVRange was 1-5 when this literal was written
    let s = r#"{"v":"1-5","msgId":"AQIDBA==","event":"x.msg.new","params":{"content":{"text":"hello","type":"text"}}}"#;
    let m = decode_one(s);
    assert_eq!(m.chat_vrange, ChatVersionRange::new(1, 5).unwrap());
    assert_eq!(m.msg_id, Some(id1234()));
    assert_encodes_to(&m, s);
}

#[test]
fn x_msg_new_quote_kept_not_rejected() {
    let s = r#"{"v":"1","msgId":"AQIDBA==","event":"x.msg.new","params":{"content":{"text":"hello to you too","type":"text"},"quote":{"content":{"text":"hello there!","type":"text"},"msgRef":{"msgId":"BQYHCA==","sent":true,"sentAt":"1970-01-01T00:00:01.000000001Z"}}}}"#;
    let m = decode_one(s);
    let (text, c) = text_new(&m);
    assert_eq!(text, "hello to you too");
    assert_eq!(
        c.quote.as_ref().unwrap()["msgRef"]["msgId"],
        json!("BQYHCA==")
    );
    assert_encodes_to(&m, s);

    let s = r#"{"v":"1","msgId":"AQIDBA==","event":"x.msg.new","params":{"content":{"text":"hello to you too","type":"text"},"quote":{"content":{"text":"hello there!","type":"text"},"msgRef":{"msgId":"BQYHCA==","sent":true,"sentAt":"1970-01-01T00:00:01.000000001Z"}},"ttl":3600}}"#;
    let m = decode_one(s);
    assert_eq!(text_new(&m).1.ttl, Some(3600));
    assert_encodes_to(&m, s);
}

#[test]
fn x_msg_new_forward() {
    for (s, ttl, live) in [
        (
            r#"{"v":"1","msgId":"AQIDBA==","event":"x.msg.new","params":{"content":{"text":"hello","type":"text"},"forward":true}}"#,
            None,
            None,
        ),
        (
            r#"{"v":"1","msgId":"AQIDBA==","event":"x.msg.new","params":{"content":{"text":"hello","type":"text"},"forward":true,"ttl":3600}}"#,
            Some(3600),
            None,
        ),
        (
            r#"{"v":"1","msgId":"AQIDBA==","event":"x.msg.new","params":{"content":{"text":"hello","type":"text"},"forward":true,"live":true}}"#,
            None,
            Some(true),
        ),
    ] {
        let m = decode_one(s);
        let (text, c) = text_new(&m);
        assert_eq!((text, c.forward, c.ttl, c.live), ("hello", true, ttl, live));
        assert_encodes_to(&m, s);
    }
}

#[test]
fn x_msg_new_with_file_kept() {
    let s = r#"{"v":"1","event":"x.msg.new","params":{"content":{"text":"hello","type":"text"},"file":{"fileSize":12345,"fileName":"photo.jpg"}}}"#;
    let m = decode_one(s);
    assert_eq!(text_new(&m).1.other["file"]["fileName"], json!("photo.jpg"));
    assert_encodes_to(&m, s);

    let s = r#"{"v":"1","msgId":"AQIDBA==","event":"x.msg.new","params":{"content":{"text":"hello","type":"text"},"forward":true,"file":{"fileSize":12345,"fileName":"photo.jpg"}}}"#;
    let m = decode_one(s);
    assert!(text_new(&m).1.forward);
    assert_encodes_to(&m, s);
}

#[test]
fn x_msg_update() {
    // the literal has a space after the comma, as in the reference
    let s = r#"{"v":"1","event":"x.msg.update","params":{"msgId":"AQIDBA==", "content":{"text":"hello","type":"text"}}}"#;
    let m = initial(ChatMsgEvent::MsgUpdate {
        msg_id: id1234(),
        content: MsgContent::Text("hello".into()),
        other: Default::default(),
    });
    both_ways(s, &m);
}

#[test]
fn x_msg_del() {
    let s = r#"{"v":"1","event":"x.msg.del","params":{"msgId":"AQIDBA=="}}"#;
    let m = initial(ChatMsgEvent::MsgDel {
        msg_id: id1234(),
        other: Default::default(),
    });
    both_ways(s, &m);
}

#[test]
fn x_info() {
    let s = format!(
        r#"{{"v":"1","event":"x.info","params":{{"profile":{{"fullName":"Alice","displayName":"alice","image":"{IMG}","preferences":{{"reactions":{{"allow":"yes"}},"voice":{{"allow":"yes"}}}}}}}}}}"#
    );
    both_ways(&s, &initial(ChatMsgEvent::Info(test_profile())));
}

#[test]
fn x_info_empty_full_name() {
    let s = r#"{"v":"1","event":"x.info","params":{"profile":{"fullName":"","displayName":"alice","preferences":{"reactions":{"allow":"yes"},"voice":{"allow":"yes"}}}}}"#;
    let p = Profile {
        image: None,
        full_name: String::new(),
        ..test_profile()
    };
    both_ways(s, &initial(ChatMsgEvent::Info(p)));
}

#[test]
fn x_contact_with_and_without_request_id() {
    let s = format!(
        r#"{{"v":"1","event":"x.contact","params":{{"contactReqId":"AQIDBA==","profile":{{"fullName":"Alice","displayName":"alice","image":"{IMG}","preferences":{{"reactions":{{"allow":"yes"}},"voice":{{"allow":"yes"}}}}}}}}}}"#
    );
    let m = initial(ChatMsgEvent::Contact {
        profile: test_profile(),
        contact_req_id: Some(vec![1, 2, 3, 4]),
        welcome_msg_id: None,
        request_msg: None,
    });
    both_ways(&s, &m);

    let s = format!(
        r#"{{"v":"1","event":"x.contact","params":{{"profile":{{"fullName":"Alice","displayName":"alice","image":"{IMG}","preferences":{{"reactions":{{"allow":"yes"}},"voice":{{"allow":"yes"}}}}}}}}}}"#
    );
    let m = initial(ChatMsgEvent::Contact {
        profile: test_profile(),
        contact_req_id: None,
        welcome_msg_id: None,
        request_msg: None,
    });
    both_ways(&s, &m);
}

#[test]
fn x_contact_content_without_msg_id_is_ignored() {
    // reference: `==#` (decode only) — content null, and content without msgId, both give
    // XContact testProfile Nothing (no request message)
    for content in ["null", r#"{"text":"hello","type":"text"}"#] {
        let s = format!(
            r#"{{"v":"1","event":"x.contact","params":{{"content":{content},"profile":{{"fullName":"Alice","displayName":"alice","image":"{IMG}","preferences":{{"reactions":{{"allow":"yes"}},"voice":{{"allow":"yes"}}}}}}}}}}"#
        );
        let m = decode_one(&s);
        assert_eq!(
            m.event,
            ChatMsgEvent::Contact {
                profile: test_profile(),
                contact_req_id: None,
                welcome_msg_id: None,
                request_msg: None,
            }
        );
    }
}

#[test]
fn x_ok_decodes() {
    let s = r#"{"v":"1","event":"x.ok","params":{}}"#;
    assert_eq!(decode_one(s), initial(ChatMsgEvent::Ok));
    assert_encodes_to(&initial(ChatMsgEvent::Ok), s);
}

/// Group, file and probe events from the same test file: hush does not model them; they must
/// decode to `Unknown` with their params (never an error) and re-encode to the same JSON.
#[test]
fn group_and_other_events_are_unknown_not_errors() {
    let cr = "simplex:/invitation#/?v=1&smp=smp%3A%2F%2F1234-w%3D%3D%40smp.simplex.im%3A5223%2F3456-w%3D%3D%23%2F%3Fv%3D1-2%26dh%3DMCowBQYDK2VuAyEAjiswwI3O_NlS8Fk3HJUW870EY2bAwmttMBsvRB9eV3o%253D&e2e=v%3D1-2%26x3dh%3DMEIwBQYDK2VvAzkAmKuSYeQ_m0SixPDS8Wq8VBaTS1cW-Lp0n0h4Diu-kUpR-qXx4SDJ32YGEFoGFGSbGPry5Ychr6U%3D%2CMEIwBQYDK2VvAzkAmKuSYeQ_m0SixPDS8Wq8VBaTS1cW-Lp0n0h4Diu-kUpR-qXx4SDJ32YGEFoGFGSbGPry5Ychr6U%3D";
    let literals = [
        format!(
            r#"{{"v":"1","event":"x.grp.inv","params":{{"groupInvitation":{{"connRequest":"{cr}","invitedMember":{{"memberRole":"member","memberId":"BQYHCA=="}},"groupProfile":{{"fullName":"Team","displayName":"team","groupPreferences":{{"reactions":{{"enable":"on"}},"voice":{{"enable":"on"}}}}}},"fromMember":{{"memberRole":"admin","memberId":"AQIDBA=="}}}}}}}}"#
        ),
        r#"{"v":"1","event":"x.grp.acpt","params":{"memberId":"AQIDBA=="}}"#.to_string(),
        format!(
            r#"{{"v":"1","event":"x.grp.mem.new","params":{{"memberInfo":{{"memberRole":"admin","memberId":"AQIDBA==","v":"1-5","profile":{{"fullName":"Alice","displayName":"alice","image":"{IMG}","preferences":{{"reactions":{{"allow":"yes"}},"voice":{{"allow":"yes"}}}}}}}}}}}}"#
        ),
        r#"{"v":"1","event":"x.grp.mem.con","params":{"memberId":"AQIDBA=="}}"#.to_string(),
        r#"{"v":"1","event":"x.grp.mem.del","params":{"memberId":"AQIDBA=="}}"#.to_string(),
        r#"{"v":"1","event":"x.grp.leave","params":{}}"#.to_string(),
        r#"{"v":"1","event":"x.grp.del","params":{}}"#.to_string(),
        format!(
            r#"{{"v":"1","event":"x.grp.direct.inv","params":{{"connReq":"{cr}", "content":{{"text":"hello","type":"text"}}}}}}"#
        ),
        r#"{"v":"1","event":"x.file","params":{"file":{"fileSize":12345,"fileName":"photo.jpg"}}}"#
            .to_string(),
        r#"{"v":"1","event":"x.file.acpt","params":{"fileName":"photo.jpg"}}"#.to_string(),
        r#"{"v":"1","event":"x.file.cancel","params":{"msgId":"AQIDBA=="}}"#.to_string(),
        r#"{"v":"1","event":"x.msg.deleted","params":{}}"#.to_string(),
        r#"{"v":"1","event":"x.info.probe","params":{"probe":"AQIDBA=="}}"#.to_string(),
        r#"{"v":"1","event":"x.info.probe.check","params":{"probeHash":"AQIDBA=="}}"#.to_string(),
        r#"{"v":"1","event":"x.info.probe.ok","params":{"probe":"AQIDBA=="}}"#.to_string(),
    ];
    for s in &literals {
        let m = decode_one(s);
        let lit: Value = serde_json::from_str(s).unwrap();
        match &m.event {
            ChatMsgEvent::Unknown { event, params } => {
                assert_eq!(event, lit["event"].as_str().unwrap());
                assert_eq!(&Value::Object(params.clone()), &lit["params"]);
            }
            e => panic!("{s}: expected Unknown, got {e:?}"),
        }
        assert_encodes_to(&m, s);
    }
}
