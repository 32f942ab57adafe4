//! 1,000 messages each way on a connection made by invitation and on one made through a contact
//! address, while one agent restarts (process restart: close + reopen from its database) and
//! the relay goes down for 5 s and comes back (same port, same data). Every message must reach
//! the application exactly once, in order, with intact integrity.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hush_agent::{Agent, AgentEvent, AgentEvents, MsgIntegrity};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const N: i64 = 1000;

type Got = Arc<Mutex<Vec<(i64, i64, Vec<u8>, MsgIntegrity)>>>;

/// A tiny application: records every message and acknowledges it.
struct App {
    agent: Agent,
    got: Got,
    others: Arc<Mutex<Vec<AgentEvent>>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn spawn_app(
    agent: Agent,
    mut rx: AgentEvents,
    got: Got,
    others: Arc<Mutex<Vec<AgentEvent>>>,
) -> App {
    let (stop, mut stop_rx) = watch::channel(false);
    let a = agent.clone();
    let (g, o) = (got.clone(), others.clone());
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop_rx.changed() => return,
                ev = rx.recv() => match ev {
                    Some(AgentEvent::Message { conn, msg_id, body, integrity }) => {
                        g.lock().unwrap().push((conn, msg_id, body, integrity));
                        // may fail while the relay is down: the agent then ACKs on redelivery
                        let _ = a.ack(conn, msg_id).await;
                    }
                    Some(e) => o.lock().unwrap().push(e),
                    None => return,
                },
            }
        }
    });
    App {
        agent,
        got,
        others,
        stop,
        task,
    }
}

impl App {
    async fn shutdown(self) -> (Got, Arc<Mutex<Vec<AgentEvent>>>) {
        self.stop.send_replace(true);
        self.task.await.unwrap();
        self.agent.close().await;
        (self.got, self.others)
    }

    fn count(&self, conn: i64) -> usize {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.0 == conn)
            .count()
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn check(got: &Got, conn: i64, dir: &str) {
    let got = got.lock().unwrap();
    let msgs: Vec<_> = got.iter().filter(|m| m.0 == conn).collect();
    assert_eq!(msgs.len() as i64, N, "{dir}: every message exactly once");
    let mut last_id = 1; // the confirmation took id 1
    for (i, m) in msgs.iter().enumerate() {
        // ids increase; control messages (A_QCONT after a full queue) take ids in between
        assert!(m.1 > last_id, "{dir}: in order ({} after {last_id})", m.1);
        last_id = m.1;
        assert_eq!(m.2, format!("{dir} {i}").into_bytes(), "{dir}: body");
        assert_eq!(m.3, MsgIntegrity::Ok, "{dir}: integrity of {}", m.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_each_way_through_agent_and_relay_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(dir.path()).await;
    let db_a = db_path(dir.path(), "a");
    let db_b = db_path(dir.path(), "b");
    let (a, mut a_rx) = open_agent(&db_a, relay.server()).await;
    let (b, mut b_rx) = open_agent(&db_b, relay.server()).await;

    // 1. by invitation
    let (a1, b1) = connect_pair(&a, &mut a_rx, &b, &mut b_rx).await;

    // 2. through a contact address: A publishes it, B requests, A accepts
    let mut seen = Vec::new();
    let (address, address_link) = a.create_contact_address().await.unwrap();
    let b2 = b.join(&address_link, b"bob via address").await.unwrap();
    let request = wait_for(&mut a_rx, &mut seen, |e| match e {
        AgentEvent::ContactRequest {
            address: ad,
            request,
            conn_info,
        } if *ad == address => {
            assert_eq!(conn_info, b"bob via address");
            Some(*request)
        }
        _ => None,
    })
    .await;
    let a2 = a.accept_contact_request(request, b"alice").await.unwrap();
    wait_for(&mut a_rx, &mut seen, |e| {
        matches!(e, AgentEvent::Connected { conn, peer_info } if *conn == a2 && peer_info == b"bob via address")
            .then_some(())
    })
    .await;
    wait_for(&mut b_rx, &mut seen, |e| {
        matches!(e, AgentEvent::Connected { conn, peer_info } if *conn == b2 && peer_info == b"alice")
            .then_some(())
    })
    .await;

    let got_a: Got = Arc::default();
    let got_b: Got = Arc::default();
    let others_a = Arc::default();
    let others_b = Arc::default();
    let app_a = spawn_app(a.clone(), a_rx, got_a.clone(), others_a);
    let mut app_b = spawn_app(b.clone(), b_rx, got_b.clone(), others_b);

    // queue everything at once: the outbox delivers in order, waiting out QUOTA
    for i in 0..N {
        a.send(a1, format!("a1 {i}").as_bytes()).unwrap();
        b.send(b1, format!("b1 {i}").as_bytes()).unwrap();
        a.send(a2, format!("a2 {i}").as_bytes()).unwrap();
        b.send(b2, format!("b2 {i}").as_bytes()).unwrap();
    }

    // B's process restarts in the middle of the conversation
    wait_until("B got 300", || app_b.count(b1) >= 300).await;
    let (got_b, others_b) = app_b.shutdown().await;
    let (b, b_rx) = open_agent(&db_b, relay.server()).await;
    assert!(b.subscribe_all().await.unwrap() >= 2);
    app_b = spawn_app(b.clone(), b_rx, got_b.clone(), others_b);

    // the relay goes down for 5 s
    wait_until("B got 600", || app_b.count(b1) >= 600).await;
    relay.stop().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    relay.restart().await;

    wait_until("all delivered", || {
        app_a.count(a1) as i64 == N
            && app_a.count(a2) as i64 == N
            && app_b.count(b1) as i64 == N
            && app_b.count(b2) as i64 == N
    })
    .await;
    wait_until("outboxes empty", || {
        app_a.agent.pending_sends().unwrap() == 0 && app_b.agent.pending_sends().unwrap() == 0
    })
    .await;
    let others_b = app_b.others.clone();
    let others_a = app_a.others.clone();
    check(&got_b, b1, "a1");
    check(&got_a, a1, "b1");
    check(&got_b, b2, "a2");
    check(&got_a, a2, "b2");
    // nothing went wrong on the way
    for e in others_a
        .lock()
        .unwrap()
        .iter()
        .chain(others_b.lock().unwrap().iter())
    {
        assert!(
            !matches!(
                e,
                AgentEvent::Error { .. } | AgentEvent::DeliveryError { .. }
            ),
            "unexpected {e:?}"
        );
    }
    // the relay outage was seen and recovered from
    assert!(
        others_a
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, AgentEvent::RelayDown { .. }))
    );
    app_a.shutdown().await;
    app_b.shutdown().await;
    relay.stop().await;
}
