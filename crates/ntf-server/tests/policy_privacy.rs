//! Delivery policy against real servers (compressed time), privacy of what apns-sink receives,
//! split mode (push handles), push-server feedback, periodic pushes, metrics and control port.

mod common;

use std::sync::Arc;
use std::time::Duration;

use apns_sink::Received;
use common::*;
use hush_proto::encoding::base64url_encode;
use hush_proto::ntf::{InvalidReason, NtfCommand, NtfResponse, TokenStatus};
use ntf_server::policy::TokenBudget;
use ntf_server::{BudgetConfig, Decision, Policy, PolicyMode, PushStyle};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// Nothing in any payload the sink received may name the relay, a queue, or the content.
fn assert_private(received: &[Received], relay: &Relay, qs: &[&Queue], bodies: &[&str]) {
    assert!(!received.is_empty());
    let key_hash = base64url_encode(relay.server.key_hash());
    for r in received {
        let p = &r.payload;
        assert!(!p.contains("127.0.0.1"), "relay host in clear");
        assert!(
            !p.contains(key_hash.trim_end_matches('=')),
            "relay identity in clear"
        );
        assert!(!p.contains("smp://"), "relay address in clear");
        for q in qs {
            for id in [&q.ntf.notifier_id, &q.q.rcv_id, &q.q.snd_id] {
                assert!(
                    !p.contains(base64url_encode(id).trim_end_matches('=')),
                    "queue id in clear"
                );
            }
        }
        for b in bodies {
            assert!(!p.contains(b), "message content in clear");
        }
        // the visible part is generic
        let v: serde_json::Value = serde_json::from_str(p).unwrap();
        if let Some(a) = v["aps"].get("alert") {
            assert!(
                a == "You have a new message" || a == "Encrypted message or another app event",
                "alert text {a}"
            );
        }
    }
}

fn styles(d: &Device, r: &[Received]) -> (usize, usize) {
    let msgs: Vec<&Received> = r
        .iter()
        .filter(|p| matches!(d.decode(p), PushContent::Messages(_)))
        .collect();
    let silent = msgs
        .iter()
        .filter(|p| p.push_type.as_deref() == Some("background"))
        .count();
    let alert = msgs
        .iter()
        .filter(|p| p.push_type.as_deref() == Some("alert"))
        .count();
    (silent, alert)
}

/// Budget policy, one hour compressed 150× (1 min = 400 ms): 10 messages 5 "minutes" apart to
/// one device, budget 3 silent per hour, alerts at most every 7 "minutes". The outcome must be
/// what the pure policy computes for the same schedule: 3 silent pushes, then 6 visible alerts
/// (1 at once, 5 that coalesced the notifications arriving inside their interval).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_policy_compressed_hour() {
    init_tracing();
    const MIN_MS: u64 = 400;
    let budget = BudgetConfig {
        silent_per_window: 3,
        window: Duration::from_millis(60 * MIN_MS),
        alert_interval: Duration::from_millis(7 * MIN_MS),
    };
    // expected, from the pure policy with a virtual clock
    let policy = Policy::new(PolicyMode::Budget(budget.clone()));
    let mut st = TokenBudget::default();
    let (mut exp_silent, mut exp_alert) = (0, 0);
    let mut count = |s: PushStyle| match s {
        PushStyle::Silent => exp_silent += 1,
        PushStyle::Alert => exp_alert += 1,
    };
    for i in 0..10u64 {
        let t = i * 5 * MIN_MS;
        while let Some(at) = st.pending_at().filter(|at| *at <= t) {
            count(policy.on_due(&mut st, at).unwrap());
        }
        if let Decision::Push(s) = policy.on_notification(&mut st, t) {
            count(s);
        }
    }
    if let Some(at) = st.pending_at() {
        count(policy.on_due(&mut st, at).unwrap());
    }
    assert_eq!((exp_silent, exp_alert), (3, 6));

    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let relay = Relay::start(relay_config(dir.path())).await;
    let ntf = Ntf::start(
        ntf_config(dir.path(), false, PolicyMode::Budget(budget)),
        &push,
    )
    .await;
    let mut c = ntf.client().await;
    let smp = relay.client().await;
    let mut d = Device::new(20);
    register(&mut c, &push, &mut d).await;
    let qs = [
        Queue::new(&smp, &relay.server).await,
        Queue::new(&smp, &relay.server).await,
    ];
    for q in &qs {
        subscribe(&mut c, &d, q).await;
    }
    let n0 = push.received(d.sink_token()).len();
    let start = tokio::time::Instant::now();
    for i in 0..10u64 {
        tokio::time::sleep_until(start + Duration::from_millis(i * 5 * MIN_MS)).await;
        send(
            &smp,
            &qs[(i % 2) as usize],
            format!("secret message {i}").as_bytes(),
        )
        .await;
    }
    // the last scheduled alert is due at 50 "minutes"
    tokio::time::sleep_until(start + Duration::from_millis(55 * MIN_MS)).await;
    let all = push.received(d.sink_token());
    let msgs = &all[n0..];
    assert_eq!(styles(&d, msgs), (3, 6), "silent and alert pushes");
    let m = &ntf.core.metrics;
    assert_eq!(m.policy_count("silent"), 3);
    assert_eq!(m.policy_count("alert"), 1);
    assert_eq!(m.policy_count("deferred"), 5);
    assert_eq!(m.policy_count("coalesced"), 1);
    assert_eq!(m.policy_count("due_alert"), 5);
    // no notification is dropped: the last push carries the newest notification of each queue,
    // and the device fetches every message with GET
    let items = last_message_items(&d, msgs);
    assert_eq!(items.len(), 2);
    let mut got = 0;
    for q in &qs {
        while let Some(raw) = smp.get(&q.q.rcv_id, &q.q.rcv_key).await.unwrap() {
            smp.ack(&q.q.rcv_id, &q.q.rcv_key, &raw.msg_id)
                .await
                .unwrap();
            got += 1;
        }
    }
    assert_eq!(got, 10);
    for p in msgs
        .iter()
        .filter(|p| p.push_type.as_deref() == Some("alert"))
    {
        let v: serde_json::Value = serde_json::from_str(&p.payload).unwrap();
        assert_eq!(v["aps"]["alert"], "You have a new message");
        assert_eq!(v["aps"]["mutable-content"], 1);
    }
    for p in msgs
        .iter()
        .filter(|p| p.push_type.as_deref() == Some("background"))
    {
        assert_eq!(p.priority, Some(5));
    }
    let bodies: Vec<String> = (0..10).map(|i| format!("secret message {i}")).collect();
    let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
    assert_private(&all, &relay, &[&qs[0], &qs[1]], &bodies);
    ntf.stop().await;
    relay.stop().await;
}

/// Reference policy: one alert per notification, no silent pushes; payloads private.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_policy_alert_per_notification() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let relay = Relay::start(relay_config(dir.path())).await;
    let ntf = Ntf::start(ntf_config(dir.path(), false, PolicyMode::Reference), &push).await;
    let mut c = ntf.client().await;
    let smp = relay.client().await;
    let mut d = Device::new(21);
    register(&mut c, &push, &mut d).await;
    let q = Queue::new(&smp, &relay.server).await;
    subscribe(&mut c, &d, &q).await;
    let n0 = push.received(d.sink_token()).len();
    for i in 0..10 {
        send(&smp, &q, format!("private text {i}").as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = push.wait_pushes(d.sink_token(), n0 + 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all2 = push.received(d.sink_token());
    assert_eq!(all2.len(), all.len(), "exactly one push per notification");
    assert_eq!(styles(&d, &all2[n0..]), (0, 10));
    assert_eq!(ntf.core.metrics.policy_count("alert"), 10);
    let bodies: Vec<String> = (0..10).map(|i| format!("private text {i}")).collect();
    let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
    assert_private(&all2, &relay, &[&q], &bodies);
    ntf.stop().await;
    relay.stop().await;
}

/// Split mode: the device registers a push handle (`PH`); the ntf-server stores and uses only
/// the handle, the push-server opens it and the sink receives at the real token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_mode_push_handle() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let relay = Relay::start(relay_config(dir.path())).await;
    let ntf = Ntf::start(ntf_config(dir.path(), true, PolicyMode::Reference), &push).await;
    let mut c = ntf.client().await;
    let smp = relay.client().await;
    let mut d = Device::new(22);
    let handle = push
        .service
        .register(&push_server::DeviceAddress::Apns {
            env: push_server::ApnsEnv::Test,
            token: d.token_hex.clone(),
        })
        .await
        .unwrap();
    assert!(!handle.as_str().contains(&d.token_hex));
    d.handle = Some(handle.as_str().to_string());
    register(&mut c, &push, &mut d).await;
    let q = Queue::new(&smp, &relay.server).await;
    subscribe(&mut c, &d, &q).await;
    let n = push.received(d.sink_token()).len();
    send(&smp, &q, b"via handle").await;
    let (_, items) = wait_message_push(&push, &d, n).await;
    fetch_and_check(&smp, &q, items.last().unwrap()).await;
    // the ntf-server never saw the token: not in memory, not on disk
    for t in ntf.core.store.tokens() {
        assert!(matches!(t.device, ntf_server::store::Device::Handle(_)));
    }
    let cfg = ntf.stop().await;
    let db = std::fs::read(cfg.paths.data_dir.join("ntf-server-store.db")).unwrap();
    let wal = std::fs::read(cfg.paths.data_dir.join("ntf-server-store.db-wal")).unwrap_or_default();
    let needle = d.token_hex.as_bytes();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "token on disk"
        );
    }
    relay.stop().await;
}

/// APNs rejects the token (410 Unregistered): push-server feedback marks it INVALID,UNREGISTERED.
/// Periodic pushes (TCRN) are background `checkMessages` pushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_and_periodic_pushes() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let relay = Relay::start(relay_config(dir.path())).await;
    let ntf = Ntf::start(ntf_config(dir.path(), false, PolicyMode::Reference), &push).await;
    let mut c = ntf.client().await;
    let smp = relay.client().await;
    let mut d = Device::new(23);
    register(&mut c, &push, &mut d).await;

    // periodic: TCRN 20, then pretend 21 minutes passed and run a sweep
    let (_, r) = c
        .cmd(Some(&d.key), &d.token_id, &NtfCommand::Tcrn { minutes: 20 })
        .await;
    assert_eq!(r, NtfResponse::Ok);
    let permits = Arc::new(tokio::sync::Semaphore::new(4));
    assert_eq!(ntf.core.cron_sweep(&permits).await, 0, "not due yet");
    ntf.core.store.update_token(&d.token_id, |t| {
        t.cron_sent_at -= 21 * 60;
        true
    });
    let n = push.received(d.sink_token()).len();
    assert_eq!(ntf.core.cron_sweep(&permits).await, 1);
    let r = push.wait_pushes(d.sink_token(), n + 1).await;
    let p = r.last().unwrap();
    assert!(matches!(d.decode(p), PushContent::CheckMessages));
    assert_eq!(p.push_type.as_deref(), Some("background"));
    assert_eq!(p.priority, Some(5));
    assert_eq!(
        p.payload,
        r#"{"aps":{"content-available":1},"notificationData":{"checkMessages":true}}"#
    );
    assert_eq!(ntf.core.cron_sweep(&permits).await, 0, "sent_at updated");

    // feedback: the sink answers 410 Unregistered
    push.sink
        .set_failure(d.sink_token(), apns_sink::FailureMode::Unregistered, None);
    let q = Queue::new(&smp, &relay.server).await;
    subscribe(&mut c, &d, &q).await;
    send(&smp, &q, b"to a dead token").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, r) = c.cmd(Some(&d.key), &d.token_id, &NtfCommand::Tchk).await;
        if r == NtfResponse::Tkn(TokenStatus::Invalid(Some(InvalidReason::Unregistered))) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "token not invalidated: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ntf.core.metrics.feedback_invalid.get() >= 1);
    // the token was verified: not a verification failure
    assert_eq!(ntf.core.metrics.verification_invalid_tkn.get(), 0);
    ntf.stop().await;
    relay.stop().await;
}

/// `simplex_ntf_notifications_verification_invalid_tkn` counts invalid-token feedback for a token
/// still awaiting verification (its verification push is the only push it gets).
#[tokio::test]
async fn invalid_token_while_verifying_is_counted() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let ntf = Ntf::start(ntf_config(dir.path(), false, PolicyMode::Reference), &push).await;
    let mut c = ntf.client().await;
    let d = Device::new(25);
    push.sink
        .set_failure(d.sink_token(), apns_sink::FailureMode::Unregistered, None);
    let (_, r) = tnew(&mut c, &d).await;
    assert!(matches!(r, NtfResponse::TknId { .. }), "{r:?}");
    let m = &ntf.core.metrics;
    let deadline = tokio::time::Instant::now() + WAIT;
    while m.verification_invalid_tkn.get() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no verification failure counted (feedback_invalid {})",
            m.feedback_invalid.get()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(m.verification_invalid_tkn.get(), 1);
    assert_eq!(m.feedback_invalid.get(), 1);
    assert!(
        ntf.core
            .metrics
            .render()
            .contains("\nsimplex_ntf_notifications_verification_invalid_tkn 1\n")
    );
    ntf.stop().await;
}

/// Metrics endpoint (reference names) and control port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_control_port() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let mut cfg = ntf_config(dir.path(), false, PolicyMode::default());
    cfg.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    cfg.control_port = Some(0);
    cfg.control_admin_password = Some(smp_server::config::BasicAuth::new("adminpw").unwrap());
    let (trigger, shutdown) = smp_server::shutdown_channel();
    let s = ntf_server::start(cfg, push.gw.clone(), shutdown)
        .await
        .unwrap();
    let (m_addr, c_addr) = (s.metrics_addr.unwrap(), s.control_addr.unwrap());
    let mut c = NtfClient::connect(s.addrs[0], &s.fingerprint).await;
    let task = tokio::spawn(s.wait());
    let mut d = Device::new(24);
    register(&mut c, &push, &mut d).await;

    let mut tcp = tokio::net::TcpStream::connect(m_addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    tcp.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"));
    for line in [
        "simplex_ntf_tokens_created 1",
        "simplex_ntf_tokens_verified 1",
        "simplex_ntf_notifications_verification_queued 1",
        "# TYPE simplex_ntf_subscriptions_created unknown",
        "# TYPE simplex_ntf_apns_push_queue_length gauge",
    ] {
        assert!(body.contains(line), "missing {line}");
    }

    let tcp = tokio::net::TcpStream::connect(c_addr).await.unwrap();
    let (rd, mut wr) = tcp.into_split();
    let mut rd = tokio::io::BufReader::new(rd).lines();
    rd.next_line().await.unwrap();
    rd.next_line().await.unwrap();
    wr.write_all(b"stats\n").await.unwrap();
    assert_eq!(rd.next_line().await.unwrap().unwrap(), "AUTH");
    wr.write_all(b"auth wrong\n").await.unwrap();
    assert_eq!(
        rd.next_line().await.unwrap().unwrap(),
        "Current role is CPRNone"
    );
    wr.write_all(b"auth adminpw\nstats\n").await.unwrap();
    assert_eq!(
        rd.next_line().await.unwrap().unwrap(),
        "Current role is CPRAdmin"
    );
    assert_eq!(rd.next_line().await.unwrap().unwrap(), "tokens: 1");
    trigger.trigger();
    task.await.unwrap().unwrap();
}

/// The control port has the limits of every hush control port (hush-server-common `control`):
/// help lists what is implemented, the reference's other names get an error, the user role
/// runs `stats`, three failed `auth` close the connection, the ninth connection is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_port_limits() {
    use hush_server_common::control::{MAX_CONNECTIONS, TOO_MANY_CONNECTIONS};
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let mut cfg = ntf_config(dir.path(), false, PolicyMode::default());
    cfg.control_port = Some(0);
    cfg.control_admin_password = Some(smp_server::config::BasicAuth::new("adminpw").unwrap());
    cfg.control_user_password = Some(smp_server::config::BasicAuth::new("userpw").unwrap());
    let (trigger, shutdown) = smp_server::shutdown_channel();
    let s = ntf_server::start(cfg, push.gw.clone(), shutdown)
        .await
        .unwrap();
    let c_addr = s.control_addr.unwrap();
    assert!(c_addr.ip().is_loopback());
    let task = tokio::spawn(s.wait());

    type Lines = tokio::io::Lines<tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>>;
    async fn next(rd: &mut Lines) -> Option<String> {
        tokio::time::timeout(WAIT, rd.next_line())
            .await
            .expect("no reply")
            .unwrap_or(None)
    }
    async fn connect(addr: std::net::SocketAddr) -> (Lines, tokio::net::tcp::OwnedWriteHalf) {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (rd, wr) = tcp.into_split();
        (tokio::io::BufReader::new(rd).lines(), wr)
    }

    let (mut rd, mut wr) = connect(c_addr).await;
    assert_eq!(
        next(&mut rd).await.as_deref(),
        Some("NTF server control port")
    );
    assert_eq!(
        next(&mut rd).await.as_deref(),
        Some("'help' for supported commands")
    );
    wr.write_all(b"help\nstats-rts\nfrobnicate\nauth userpw\nstats\n")
        .await
        .unwrap();
    assert_eq!(
        next(&mut rd).await.as_deref(),
        Some("commands: auth, stats, help, quit")
    );
    assert_eq!(
        next(&mut rd).await.as_deref(),
        Some("error: stats-rts is not implemented by this server")
    );
    assert_eq!(
        next(&mut rd).await.as_deref(),
        Some("error: unknown command \"frobnicate\", 'help' for supported commands")
    );
    assert_eq!(
        next(&mut rd).await.as_deref(),
        Some("Current role is CPRUser")
    );
    assert_eq!(next(&mut rd).await.as_deref(), Some("tokens: 0"));
    wr.write_all(b"quit\n").await.unwrap();
    // the rest of `stats` (one `name: value` line each), then `quit` closes the connection
    let mut rest = Vec::new();
    while let Some(l) = next(&mut rd).await {
        rest.push(l);
    }
    assert!(
        rest.iter().any(|l| l.starts_with("subscriptions: "))
            && rest.iter().all(|l| l.contains(": ")),
        "{rest:?}"
    );
    drop(wr);

    // Three failed auth attempts close the connection.
    let (mut rd, mut wr) = connect(c_addr).await;
    wr.write_all(b"auth a\nauth b\nauth c\n").await.unwrap();
    let mut lines = Vec::new();
    while let Some(l) = next(&mut rd).await {
        lines.push(l);
    }
    assert_eq!(
        lines[2..],
        [
            "Current role is CPRNone",
            "Current role is CPRNone",
            "Current role is CPRNone",
            "error: too many failed auth attempts, closing",
        ]
    );

    // At most MAX_CONNECTIONS at once: the next one gets one line and is closed.
    let mut open = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        let (mut rd, wr) = connect(c_addr).await;
        assert_eq!(
            next(&mut rd).await.as_deref(),
            Some("NTF server control port")
        );
        open.push((rd, wr));
    }
    let (mut rd, _wr) = connect(c_addr).await;
    assert_eq!(next(&mut rd).await.as_deref(), Some(TOO_MANY_CONNECTIONS));
    assert_eq!(next(&mut rd).await, None);
    drop(open);
    trigger.trigger();
    task.await.unwrap().unwrap();
}
