//! Post-quantum (sntrup761 KEM) ratchet negotiated between two hush agents over a real relay.
//!
//! As the reference, hush's full invitation links carry no KEM key; a joiner with
//! `pq_propose` proposes its key in the confirmation, and an inviter with `pq_accept` (the
//! default) accepts it at its first ratchet step. The PQ envelope limits apply from then on
//! (13618-byte message padding: 13573-byte bodies at most).

mod common;

use common::*;
use hush_agent::{Agent, AgentError, AgentEvent, AgentEvents};

/// `from` sends `body` on its connection; `to` receives it (and acknowledges it, so the queue
/// delivers the next one); the sender sees it sent.
async fn exchange(
    from: (&Agent, &mut AgentEvents, i64),
    to: (&Agent, &mut AgentEvents, i64),
    body: &[u8],
) {
    let (a, a_rx, a_conn) = from;
    let (b, b_rx, b_conn) = to;
    let mut seen = Vec::new();
    let id = a.send(a_conn, body).unwrap();
    let (mid, got) = wait_for(b_rx, &mut seen, |e| match e {
        AgentEvent::Message {
            conn, msg_id, body, ..
        } if *conn == b_conn => Some((*msg_id, body.clone())),
        _ => None,
    })
    .await;
    assert_eq!(got, body);
    b.ack(b_conn, mid).await.unwrap();
    wait_for(a_rx, &mut seen, |e| match e {
        AgentEvent::Sent { conn, msg_id } if *conn == a_conn && *msg_id == id => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pq_negotiated_when_the_joiner_proposes() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (a, mut a_rx) = open_agent(&db_path(dir.path(), "a"), relay.server()).await;
    let mut cb = agent_config(relay.server());
    cb.pq_propose = true;
    let (b, mut b_rx) = Agent::open(&db_path(dir.path(), "b"), cb).await.unwrap();
    let (a_conn, b_conn) = connect_pair(&a, &mut a_rx, &b, &mut b_rx).await;
    for i in 0..3 {
        let m = format!("a->b {i}");
        exchange(
            (&a, &mut a_rx, a_conn),
            (&b, &mut b_rx, b_conn),
            m.as_bytes(),
        )
        .await;
        let m = format!("b->a {i}");
        exchange(
            (&b, &mut b_rx, b_conn),
            (&a, &mut a_rx, a_conn),
            m.as_bytes(),
        )
        .await;
    }
    assert_eq!(a.connection_pq(a_conn).unwrap(), (true, true));
    assert_eq!(b.connection_pq(b_conn).unwrap(), (true, true));
    // the PQ message limit: 13618-byte padding, so 13573 bytes fit (and pass the relay) and
    // one more does not
    assert!(matches!(
        a.send(a_conn, &[7; 13574]),
        Err(AgentError::TooLarge)
    ));
    exchange(
        (&a, &mut a_rx, a_conn),
        (&b, &mut b_rx, b_conn),
        &[7; 13573],
    )
    .await;
    exchange(
        (&b, &mut b_rx, b_conn),
        (&a, &mut a_rx, a_conn),
        &[8; 13573],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pq_proposal_refused_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let mut ca = agent_config(relay.server());
    ca.pq_accept = false;
    let (a, mut a_rx) = Agent::open(&db_path(dir.path(), "a"), ca).await.unwrap();
    let mut cb = agent_config(relay.server());
    cb.pq_propose = true;
    let (b, mut b_rx) = Agent::open(&db_path(dir.path(), "b"), cb).await.unwrap();
    let (a_conn, b_conn) = connect_pair(&a, &mut a_rx, &b, &mut b_rx).await;
    for i in 0..3 {
        let m = format!("a->b {i}");
        exchange(
            (&a, &mut a_rx, a_conn),
            (&b, &mut b_rx, b_conn),
            m.as_bytes(),
        )
        .await;
        let m = format!("b->a {i}");
        exchange(
            (&b, &mut b_rx, b_conn),
            (&a, &mut a_rx, a_conn),
            m.as_bytes(),
        )
        .await;
    }
    // no KEM secret on either side; the proposer keeps its large headers (support never goes
    // off), the refuser keeps the full message size
    assert_eq!(a.connection_pq(a_conn).unwrap(), (false, false));
    assert_eq!(b.connection_pq(b_conn).unwrap(), (true, false));
    exchange(
        (&a, &mut a_rx, a_conn),
        (&b, &mut b_rx, b_conn),
        &[1; 15795],
    )
    .await;
    assert!(matches!(
        b.send(b_conn, &[7; 13574]),
        Err(AgentError::TooLarge)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pq_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (a, mut a_rx) = open_agent(&db_path(dir.path(), "a"), relay.server()).await;
    let (b, mut b_rx) = open_agent(&db_path(dir.path(), "b"), relay.server()).await;
    let (a_conn, b_conn) = connect_pair(&a, &mut a_rx, &b, &mut b_rx).await;
    exchange((&a, &mut a_rx, a_conn), (&b, &mut b_rx, b_conn), b"hello").await;
    exchange((&b, &mut b_rx, b_conn), (&a, &mut a_rx, a_conn), b"hi").await;
    assert_eq!(a.connection_pq(a_conn).unwrap(), (false, false));
    assert_eq!(b.connection_pq(b_conn).unwrap(), (false, false));
}
