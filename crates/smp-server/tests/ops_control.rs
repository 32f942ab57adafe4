//! Control port over a real loopback socket, with a test `ControlHandler`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hush_server_common::test_support::ControlClient;
use proptest::prelude::*;
use smp_server::config::BasicAuth;
use smp_server::control::{
    self, BlockingInfo, BlockingReason, ControlAuth, ControlCommand, ControlHandler, ControlReply,
    MAX_LINE, SenderId,
};

/// Records every call; `status` of an unknown queue is an error, as in the reference.
#[derive(Default)]
struct TestHandler {
    calls: Mutex<Vec<String>>,
}

impl TestHandler {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn record(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
}

fn b64(id: &SenderId) -> String {
    hush_b64(&id.0)
}

fn hush_b64(b: &[u8]) -> String {
    // Test-local base64url (padded) so the test does not share code with the parser under test.
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                out.push(A[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl ControlHandler for TestHandler {
    async fn stats(&self) -> ControlReply {
        self.record("stats".into());
        Ok(vec!["qCreated: 5".into(), "qSecured: 4".into()])
    }
    async fn clients(&self) -> ControlReply {
        self.record("clients".into());
        Ok(vec!["clientId,sessionId".into()])
    }
    async fn status(&self, id: SenderId) -> ControlReply {
        self.record(format!("status {}", b64(&id)));
        if id.0 == [1, 2, 3] {
            Ok(vec!["status: EntityActive".into()])
        } else {
            Err("AUTH".into())
        }
    }
    async fn block(&self, id: SenderId, info: BlockingInfo) -> ControlReply {
        self.record(format!(
            "block {} {:?} {:?}",
            b64(&id),
            info.reason,
            info.notice
        ));
        Ok(vec!["ok, queue blocked".into()])
    }
    async fn unblock(&self, id: SenderId) -> ControlReply {
        self.record(format!("unblock {}", b64(&id)));
        Ok(vec!["ok, queue unblocked\nsecond line".into()])
    }
    async fn delete(&self, id: SenderId) -> ControlReply {
        self.record(format!("delete {}", b64(&id)));
        Ok(vec!["ok, 0 messages deleted".into()])
    }
    async fn save(&self) -> ControlReply {
        self.record("save".into());
        Ok(vec![
            "saving server state...".into(),
            "server state saved!".into(),
        ])
    }
}

/// The shared control-port test client (hush-server-common `test_support`).
struct Client;

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> ControlClient {
        ControlClient::connect(addr, "SMP server").await
    }
}

struct Server {
    addr: std::net::SocketAddr,
    handler: Arc<TestHandler>,
    _trigger: smp_server::ShutdownTrigger,
}

async fn server() -> Server {
    let listener = control::bind(0).await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    let handler = Arc::new(TestHandler::default());
    let auth = ControlAuth {
        admin: Some(BasicAuth::new("admin-pw").unwrap()),
        user: Some(BasicAuth::new("user-pw").unwrap()),
    };
    let (trigger, shutdown) = smp_server::shutdown_channel();
    tokio::spawn(control::serve(listener, handler.clone(), auth, shutdown));
    Server {
        addr,
        handler,
        _trigger: trigger,
    }
}

#[tokio::test]
async fn roles_gate_commands() {
    let s = server().await;
    let mut c = Client::connect(s.addr).await;
    assert_eq!(
        c.cmd("help").await,
        "commands: auth, stats, clients, status, block, unblock, delete, save, help, quit"
    );
    // No role: everything that reaches the handler is refused.
    for cmd in [
        "stats",
        "clients",
        "status AQID",
        "block AQID reason=spam",
        "unblock AQID",
        "delete AQID",
        "save",
    ] {
        assert_eq!(c.cmd(cmd).await, "AUTH", "{cmd}");
    }
    assert!(s.handler.calls().is_empty());

    // User role: stats and status only.
    assert_eq!(c.cmd("auth user-pw").await, "Current role is CPRUser");
    assert_eq!(c.cmd("stats").await, "qCreated: 5");
    assert_eq!(c.line().await.as_deref(), Some("qSecured: 4"));
    assert_eq!(c.cmd("status AQID").await, "status: EntityActive");
    assert_eq!(c.cmd("status BAUG").await, "error: AUTH");
    for cmd in [
        "clients",
        "block AQID reason=spam",
        "unblock AQID",
        "delete AQID",
        "save",
    ] {
        assert_eq!(c.cmd(cmd).await, "AUTH", "{cmd}");
    }
    // The role cannot change within a session.
    assert_eq!(
        c.cmd("auth admin-pw").await,
        "Current role is CPRUser, start new session to change."
    );
    assert_eq!(c.cmd("save").await, "AUTH");
    assert_eq!(
        s.handler.calls(),
        vec!["stats", "status AQID", "status BAUG"]
    );

    // Admin role: everything.
    let mut a = Client::connect(s.addr).await;
    assert_eq!(a.cmd("auth admin-pw").await, "Current role is CPRAdmin");
    assert_eq!(a.cmd("clients").await, "clientId,sessionId");
    assert_eq!(
        a.cmd("block AQID reason=content,notice={\"ttl\":86400}")
            .await,
        "ok, queue blocked"
    );
    // A handler line with an embedded newline cannot break the framing.
    assert_eq!(
        a.cmd("unblock AQID").await,
        "ok, queue unblocked second line"
    );
    assert_eq!(a.cmd("delete AQID").await, "ok, 0 messages deleted");
    assert_eq!(a.cmd("save").await, "saving server state...");
    assert_eq!(a.line().await.as_deref(), Some("server state saved!"));
    let calls = s.handler.calls();
    assert_eq!(
        calls[3..],
        [
            "clients".to_string(),
            "block AQID Content Some(\"{\\\"ttl\\\":86400}\")".to_string(),
            "unblock AQID".to_string(),
            "delete AQID".to_string(),
            "save".to_string(),
        ]
    );
    // quit closes the connection.
    a.send_bytes(b"quit\n").await.unwrap();
    assert_eq!(a.line().await, None);
}

#[tokio::test]
async fn bad_input_gets_error_lines_and_the_session_goes_on() {
    let s = server().await;
    let mut c = Client::connect(s.addr).await;
    assert_eq!(
        c.cmd("frobnicate").await,
        "error: unknown command \"frobnicate\", 'help' for supported commands"
    );
    assert_eq!(
        c.cmd("status").await,
        "error: status: missing argument, expected: <senderId>"
    );
    assert_eq!(
        c.cmd("status not*base64").await,
        "error: invalid queue id: expected the base64url sender id"
    );
    assert_eq!(
        c.cmd("block AQID reason=eggs").await,
        "error: invalid blocking info: expected reason=spam|content[,notice=<json>]"
    );
    assert_eq!(
        c.cmd("threads").await,
        "error: threads is not implemented by this server"
    );
    c.send_bytes(b"\xff\xfe\n").await.unwrap();
    assert_eq!(
        c.line().await.as_deref(),
        Some("error: command is not valid UTF-8")
    );
    // Empty lines and CRLF are fine.
    c.send_bytes(b"\r\n\n").await.unwrap();
    assert_eq!(c.cmd("help\r").await.split(':').next(), Some("commands"));
    // Wrong password: role stays none, the session goes on.
    assert_eq!(c.cmd("auth wrong").await, "Current role is CPRNone");
    assert_eq!(c.cmd("stats").await, "AUTH");
    assert!(s.handler.calls().is_empty());
}

#[tokio::test]
async fn overlong_line_closes_the_connection() {
    let s = server().await;
    let mut c = Client::connect(s.addr).await;
    let long = vec![b'a'; MAX_LINE + 1];
    c.send_bytes(&long).await.unwrap();
    c.send_bytes(b"\n").await.unwrap();
    assert_eq!(
        c.line().await,
        Some(format!(
            "error: line too long (limit {MAX_LINE} bytes), closing"
        ))
    );
    assert_eq!(c.line().await, None);

    // A line of exactly the limit is still a (bad) command, not a framing error.
    let mut c = Client::connect(s.addr).await;
    let mut exact = b"status ".to_vec();
    exact.extend(std::iter::repeat_n(b'A', MAX_LINE - exact.len()));
    c.send_bytes(&exact).await.unwrap();
    c.send_bytes(b"\n").await.unwrap();
    assert_eq!(
        c.line().await.as_deref(),
        Some("error: invalid queue id: expected the base64url sender id")
    );

    // A huge stream without newlines is cut off too.
    let mut c = Client::connect(s.addr).await;
    let junk = vec![b'x'; 256 * 1024];
    let _ = c.send_bytes(&junk).await; // the server may close before we finish
    let l = c.line().await.unwrap();
    assert!(l.starts_with("error: line too long"), "{l}");
}

#[tokio::test]
async fn repeated_failed_auth_closes_the_connection() {
    let s = server().await;
    let mut c = Client::connect(s.addr).await;
    assert_eq!(c.cmd("auth a").await, "Current role is CPRNone");
    assert_eq!(c.cmd("auth b").await, "Current role is CPRNone");
    assert_eq!(c.cmd("auth c").await, "Current role is CPRNone");
    assert_eq!(
        c.line().await.as_deref(),
        Some("error: too many failed auth attempts, closing")
    );
    assert_eq!(c.line().await, None);
}

#[tokio::test]
async fn without_passwords_nothing_is_allowed() {
    let listener = control::bind(0).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(TestHandler::default());
    let (_trigger, shutdown) = smp_server::shutdown_channel();
    tokio::spawn(control::serve(
        listener,
        handler.clone(),
        ControlAuth::default(),
        shutdown,
    ));
    let mut c = Client::connect(addr).await;
    assert_eq!(
        c.cmd("auth ").await,
        "error: auth: missing argument, expected: <password>"
    );
    assert_eq!(c.cmd("auth anything").await, "Current role is CPRNone");
    assert_eq!(c.cmd("stats").await, "AUTH");
    assert!(handler.calls().is_empty());
}

#[tokio::test]
async fn shutdown_ends_sessions_and_the_listener() {
    let listener = control::bind(0).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, shutdown) = smp_server::shutdown_channel();
    let task = tokio::spawn(control::serve(
        listener,
        Arc::new(TestHandler::default()),
        ControlAuth::default(),
        shutdown,
    ));
    let mut c = Client::connect(addr).await;
    trigger.trigger();
    assert_eq!(c.line().await, None);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve did not stop")
        .unwrap();
}

#[test]
fn parse_block_reason_values() {
    for (text, reason) in [
        ("block AQID reason=spam", BlockingReason::Spam),
        ("block AQID reason=content", BlockingReason::Content),
    ] {
        match ControlCommand::parse(text.as_bytes()).unwrap() {
            ControlCommand::Block(id, info) => {
                assert_eq!(id.0, vec![1, 2, 3]);
                assert_eq!(info.reason, reason);
            }
            other => panic!("{other:?}"),
        }
    }
    // Sender ids round-trip through base64url, padded or not.
    let id: Vec<u8> = (0u8..24).collect();
    for enc in [
        hush_b64(&id),
        hush_b64(&id).trim_end_matches('=').to_string(),
    ] {
        assert_eq!(
            ControlCommand::parse(format!("delete {enc}").as_bytes()),
            Ok(ControlCommand::Delete(SenderId(id.clone())))
        );
    }
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = ControlCommand::parse(&bytes);
    }

    #[test]
    fn parse_never_panics_on_command_shaped_lines(
        word in "(auth|stats|status|block|unblock|delete|save|help|quit|clients|[a-z-]{0,12})",
        rest in "[ -~]{0,80}",
    ) {
        let _ = ControlCommand::parse(format!("{word} {rest}").as_bytes());
    }
}
