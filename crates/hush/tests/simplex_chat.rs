//! The CLI speaks the SimpleX Chat protocol (hush-chat), over a real relay (`hush up`):
//!
//! * hush ↔ hush: both sides send `x.info` profiles (names shown), `x.msg.new` texts, and
//!   delivery receipts (`[delivered to …]` shown, `(delivered)` in the history);
//! * an "app": a bare hush-agent in this test sends the byte shapes of the SimpleX Chat app
//!   (the literals of hush-chat's tests, from the reference's `ProtocolTests.hs`): `x.info`
//!   conn info, `x.msg.new`, a `[` batch, an `X` compressed batch (zstd frame made by the zstd
//!   CLI), `x.msg.update`, an unknown `x.grp.mem.new`; checks what `hush chat` displays, that the
//!   CLI's receipts arrive, and what the CLI sends back (an `x.msg.new` with a `msgId`);
//! * an old hush peer (`{"name":…}` conn info, `{"t":"msg"}` bodies) still displays and is
//!   answered in its own format.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Proc, chat, connect, hush, profile, start_up};
use hush_agent::{Agent, AgentConfig, AgentEvent, AgentEvents};
use hush_chat::{ChatMsgEvent, parse_chat_messages};
use hush_proto::address::ProtocolServer;

struct App {
    rt: tokio::runtime::Runtime,
    agent: Agent,
    events: AgentEvents,
}

impl App {
    fn open(dir: &Path, name: &str, relay: &str) -> App {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let relay = ProtocolServer::parse(relay).unwrap();
        let mut cfg = AgentConfig::new(relay);
        cfg.retry_interval = Duration::from_millis(300);
        let (agent, events) = rt
            .block_on(Agent::open(dir.join(format!("{name}.db")), cfg))
            .unwrap();
        App { rt, agent, events }
    }

    /// The next event matching `pred` (others are dropped), or panics after 20 s.
    fn wait(&mut self, what: &str, pred: impl Fn(&AgentEvent) -> bool) -> AgentEvent {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let events = &mut self.events;
            let ev = self
                .rt
                .block_on(async { tokio::time::timeout(left, events.recv()).await });
            match ev {
                Ok(Some(ev)) => {
                    if pred(&ev) {
                        return ev;
                    }
                    seen.push(format!("{ev:?}"));
                }
                _ => panic!("app: timed out waiting for {what}; events: {seen:#?}"),
            }
        }
    }

    fn join(&mut self, link: &str, info: &[u8]) -> i64 {
        self.rt.block_on(self.agent.join(link, info)).unwrap()
    }

    fn send(&self, conn: i64, body: &[u8]) -> i64 {
        self.agent.send(conn, body).unwrap()
    }

    /// Waits for the next message; acknowledges it with a receipt; returns its body.
    fn recv_with_receipt(&mut self) -> Vec<u8> {
        let AgentEvent::Message {
            conn, msg_id, body, ..
        } = self.wait("a message", |e| matches!(e, AgentEvent::Message { .. }))
        else {
            unreachable!()
        };
        self.rt
            .block_on(self.agent.ack_with_receipt(conn, msg_id, b""))
            .unwrap();
        body
    }

    fn wait_receipt(&mut self, msg_id: i64) {
        let ev = self.wait(
            &format!("receipt for {msg_id}"),
            |e| matches!(e, AgentEvent::Receipt { msg_id: m, .. } if *m == msg_id),
        );
        assert!(
            matches!(ev, AgentEvent::Receipt { hash_ok: true, .. }),
            "{ev:?}"
        );
    }
}

fn invitation(a: &mut Proc) -> String {
    a.send("/invite");
    let l = a.wait_line("invitation: ");
    l.trim_start_matches("invitation: ").to_string()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn hush_to_hush_profiles_texts_and_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, relay) = start_up(dir.path());
    let pa = profile(dir.path(), "alice", &relay);
    let pb = profile(dir.path(), "bob", &relay);
    let mut a = chat(&pa, "alice", &[]);
    let mut b = chat(&pb, "bob", &[]);
    // names come from the x.info profiles in the conn info
    connect(&mut a, &mut b, "alice", "bob");

    a.send("@bob hello bob");
    b.wait_line("alice: hello bob");
    a.wait_line("[sent to bob] hello bob");
    a.wait_line("[delivered to bob] hello bob");
    b.send("@alice hi alice");
    a.wait_line("bob: hi alice");
    b.wait_line("[delivered to alice] hi alice");

    let (code, _) = a.finish(Duration::from_secs(20));
    assert_eq!(code, 0);
    let (code, _) = b.finish(Duration::from_secs(20));
    assert_eq!(code, 0);
    assert_eq!(
        hush(&pa, &["history", "bob"]),
        vec!["me: hello bob (delivered)", "bob: hi alice"]
    );
    let h = hush(&pa, &["--json", "history", "bob"]);
    let v: serde_json::Value = serde_json::from_str(&h[0]).unwrap();
    assert_eq!(v["items"][0]["status"], "delivered", "{v}");
    assert_eq!(v["items"][1]["status"], serde_json::Value::Null, "{v}");
    // both peers announced chat versions 1-9: the connection runs at 9 (batches allowed)
    let st = hush(&pa, &["status"]);
    assert!(
        st.iter()
            .any(|l| l.trim_start().starts_with("bob") && l.ends_with("chat v9")),
        "{st:?}"
    );
}

/// What the SimpleX Chat app sends, byte for byte (hush-chat's test literals).
const APP_INFO: &str = r#"{"v":"1-18","event":"x.info","params":{"profile":{"fullName":"","displayName":"sam","preferences":{"reactions":{"allow":"yes"},"voice":{"allow":"yes"}}}}}"#;
const APP_MSG: &str = r#"{"v":"1","msgId":"CQIDBA==","event":"x.msg.new","params":{"content":{"text":"hello","type":"text"}}}"#;
const APP_UPDATE: &str = r#"{"v":"1","event":"x.msg.update","params":{"msgId":"CQIDBA==","content":{"text":"hello, edited","type":"text"}}}"#;
const APP_GRP_EVENT: &str = r#"{"v":"1","event":"x.grp.mem.new","params":{"memberInfo":{"memberRole":"admin","memberId":"AQIDBA==","v":"1-5","profile":{"fullName":"Alice","displayName":"alice"}}}}"#;
/// `zstd -3 -c` (CLI 1.5.4) of a JSON batch of three `x.msg.new` ("hello 0..2"), as in
/// hush-chat's tests/framing.rs.
const CLI_FRAME_HEX: &str = "28b52ffd643c00550300e245151c608b330684f59706fb19c556c2dcb1091028a66c023cc981180481798981c2f75eaecf63c70500a7699411e9ee96398a5dded6d2589e7187b2c4b495a2f3650ae938822405837248ce170ad3d63821a0cea11d220600c09302e915364c62e7aca5428571a933fd5575e6";

#[test]
fn app_shaped_payloads_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, relay) = start_up(dir.path());
    let pa = profile(dir.path(), "alice", &relay);
    let mut a = chat(&pa, "alice", &[]);
    let mut app = App::open(dir.path(), "sam", &relay);

    // the app joins alice's one-time invitation with its x.info
    let link = invitation(&mut a);
    let conn = app.join(&link, APP_INFO.as_bytes());
    a.wait_line("connected: sam");
    let AgentEvent::Connected { peer_info, .. } =
        app.wait("connected", |e| matches!(e, AgentEvent::Connected { .. }))
    else {
        unreachable!()
    };
    // alice's conn info is an x.info the app reads
    let m = parse_chat_messages(&peer_info).remove(0).unwrap();
    assert_eq!(m.profile().unwrap().display_name, "alice");
    assert_eq!(m.chat_vrange.to_string(), "1-9");
    assert!(m.msg_id.is_none(), "conn info has no msgId");

    // one x.msg.new: shown, and the CLI's delivery receipt arrives
    let id = app.send(conn, APP_MSG.as_bytes());
    a.wait_line("sam: hello");
    app.wait_receipt(id);
    // a batch of two
    let batch = format!(
        "[{},{}]",
        APP_MSG
            .replace("hello", "one")
            .replace("CQIDBA==", "CQIDBQ=="),
        APP_MSG
            .replace("hello", "two")
            .replace("CQIDBA==", "CQIDBg==")
    );
    let id = app.send(conn, batch.as_bytes());
    a.wait_line("sam: one");
    a.wait_line("sam: two");
    app.wait_receipt(id);
    // a compressed batch: X, one block, '1' (zstd), 2-byte length, the zstd CLI's frame
    let frame = hex(CLI_FRAME_HEX);
    let mut body = vec![b'X', 1, b'1', 0, frame.len() as u8];
    body.extend_from_slice(&frame);
    app.send(conn, &body);
    a.wait_line("sam: hello 0");
    a.wait_line("sam: hello 1");
    a.wait_line("sam: hello 2");
    // an edit of the first message; a group event hush does not handle; then a text
    app.send(conn, APP_UPDATE.as_bytes());
    a.wait_line("sam edited: hello, edited");
    app.send(conn, APP_GRP_EVENT.as_bytes());
    app.send(
        conn,
        APP_MSG
            .replace("hello", "after the group event")
            .replace("CQIDBA==", "CQIDBw==")
            .as_bytes(),
    );
    a.wait_line("sam: after the group event");
    // a compressed batch that is not zstd: an error line, the session goes on
    app.send(conn, b"X\x011\x00\x04abcd");
    a.wait_for("undecodable", Duration::from_secs(20), |l| {
        l.contains("undecodable message from sam")
    });

    // alice answers: the app gets an x.msg.new with a msgId; its receipt shows as delivered
    a.send("@sam hi sam");
    let body = app.recv_with_receipt();
    let m = parse_chat_messages(&body).remove(0).unwrap();
    assert_eq!(m.msg_text(), Some("hi sam"));
    assert!(m.msg_id.is_some());
    assert!(matches!(m.event, ChatMsgEvent::MsgNew(_)));
    a.wait_line("[delivered to sam] hi sam");

    let (code, lines) = a.finish(Duration::from_secs(20));
    assert_eq!(code, 0);
    // the unknown event showed nothing
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("x.grp") || l.contains("memberId")),
        "{lines:?}"
    );
    let h = hush(&pa, &["history", "sam"]);
    assert_eq!(
        h,
        vec![
            "sam: hello, edited",
            "sam: one",
            "sam: two",
            "sam: hello 0",
            "sam: hello 1",
            "sam: hello 2",
            "sam: after the group event",
            "me: hi sam (delivered)",
        ]
    );
}

#[test]
fn old_hush_peer_still_displays_and_is_answered_in_its_format() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, relay) = start_up(dir.path());
    let pa = profile(dir.path(), "alice", &relay);
    let mut a = chat(&pa, "alice", &[]);
    let mut old = App::open(dir.path(), "oldie", &relay);
    let link = invitation(&mut a);
    let conn = old.join(&link, br#"{"name":"oldie"}"#);
    a.wait_line("connected: oldie");
    old.wait("connected", |e| matches!(e, AgentEvent::Connected { .. }));
    old.send(conn, br#"{"t":"msg","text":"old hush here"}"#);
    a.wait_line("oldie: old hush here");
    a.send("@oldie hello old friend");
    let body = old.recv_with_receipt();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"t": "msg", "text": "hello old friend"})
    );
    // old hush clients do not send receipts, but an agent that does is shown
    a.wait_line("[delivered to oldie] hello old friend");
    let (code, _) = a.finish(Duration::from_secs(20));
    assert_eq!(code, 0);
    let st = hush(&pa, &["status"]);
    assert!(st.iter().any(|l| l.ends_with("(old hush)")), "{st:?}");
}

#[test]
fn app_contact_address_gets_x_contact_then_x_info() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, relay) = start_up(dir.path());
    let pa = profile(dir.path(), "alice", &relay);
    let mut a = chat(&pa, "alice", &[]);
    let mut app = App::open(dir.path(), "sam", &relay);
    let (_, address) = app.rt.block_on(app.agent.create_contact_address()).unwrap();
    a.send(&format!("/connect {address}"));
    // the request is the app's x.contact with alice's profile and a 16-byte request id
    let AgentEvent::ContactRequest {
        request, conn_info, ..
    } = app.wait("request", |e| {
        matches!(e, AgentEvent::ContactRequest { .. })
    })
    else {
        unreachable!()
    };
    let m = parse_chat_messages(&conn_info).remove(0).unwrap();
    match &m.event {
        ChatMsgEvent::Contact {
            profile,
            contact_req_id,
            ..
        } => {
            assert_eq!(profile.display_name, "alice");
            assert_eq!(contact_req_id.as_ref().map(Vec::len), Some(16));
        }
        e => panic!("expected x.contact, got {e:?}"),
    }
    let conn = app
        .rt
        .block_on(
            app.agent
                .accept_contact_request(request, APP_INFO.as_bytes()),
        )
        .unwrap();
    a.wait_line("connected: sam");
    // alice's confirmation after the acceptance is x.info, as the app's own
    let AgentEvent::Connected { peer_info, .. } = app.wait(
        "connected",
        |e| matches!(e, AgentEvent::Connected { conn: c, .. } if *c == conn),
    ) else {
        unreachable!()
    };
    let m = parse_chat_messages(&peer_info).remove(0).unwrap();
    assert!(
        matches!(&m.event, ChatMsgEvent::Info(p) if p.display_name == "alice"),
        "{m:?}"
    );
    app.send(conn, APP_MSG.as_bytes());
    a.wait_line("sam: hello");
}

/// Figures (printed): for 20 texts alice → bob, the time from the `@bob` line to bob's display
/// and to alice's `[delivered to bob]` (bob's receipt back through the relay). Run with
/// `cargo test -p hush --test simplex_chat receipt_latency -- --nocapture`.
#[test]
fn receipt_latency_figures() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, relay) = start_up(dir.path());
    let pa = profile(dir.path(), "alice", &relay);
    let pb = profile(dir.path(), "bob", &relay);
    let mut a = chat(&pa, "alice", &[]);
    let mut b = chat(&pb, "bob", &[]);
    connect(&mut a, &mut b, "alice", "bob");
    let (mut shown, mut delivered) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let t0 = Instant::now();
        a.send(&format!("@bob m{i}"));
        b.wait_line(&format!("alice: m{i}"));
        shown.push(t0.elapsed().as_secs_f64() * 1000.0);
        a.wait_line(&format!("[delivered to bob] m{i}"));
        delivered.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|x, y| x.partial_cmp(y).unwrap());
        v[v.len() / 2]
    };
    let (s, d) = (median(&mut shown), median(&mut delivered));
    eprintln!(
        "20 texts alice -> bob (debug build, loopback relay): shown at bob median {s:.1} ms, \
         delivered (receipt at alice) median {d:.1} ms, max {:.1} ms",
        delivered.last().unwrap()
    );
    assert!(s <= d && d < 5000.0);
}
