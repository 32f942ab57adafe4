//! Many connections between two agents at once: 20 duplex connections, 50 messages each way on
//! each, all in flight together; every message arrives once, in order per connection.

mod common;

use std::collections::HashMap;

use common::*;
use hush_agent::{AgentEvent, MsgIntegrity};

const CONNS: usize = 20;
const MSGS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_connections_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (a, mut a_rx) = open_agent(&db_path(dir.path(), "a"), relay.server()).await;
    let (b, mut b_rx) = open_agent(&db_path(dir.path(), "b"), relay.server()).await;
    let mut pairs = Vec::new();
    for _ in 0..CONNS {
        pairs.push(connect_pair(&a, &mut a_rx, &b, &mut b_rx).await);
    }
    for i in 0..MSGS {
        for (k, (ac, bc)) in pairs.iter().enumerate() {
            a.send(*ac, format!("a{k} {i}").as_bytes()).unwrap();
            b.send(*bc, format!("b{k} {i}").as_bytes()).unwrap();
        }
    }
    let a_to_k: HashMap<i64, usize> = pairs.iter().enumerate().map(|(k, p)| (p.0, k)).collect();
    let b_to_k: HashMap<i64, usize> = pairs.iter().enumerate().map(|(k, p)| (p.1, k)).collect();
    let mut got_a = vec![0usize; CONNS];
    let mut got_b = vec![0usize; CONNS];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
    while got_a.iter().sum::<usize>() + got_b.iter().sum::<usize>() < 2 * CONNS * MSGS {
        let ev = tokio::select! {
            e = a_rx.recv() => e.map(|e| (true, e)),
            e = b_rx.recv() => e.map(|e| (false, e)),
            _ = tokio::time::sleep_until(deadline) => panic!("timed out: {got_a:?} {got_b:?}"),
        };
        let Some((on_a, ev)) = ev else {
            panic!("events closed")
        };
        match ev {
            AgentEvent::Message {
                conn,
                msg_id,
                body,
                integrity,
            } => {
                assert_eq!(integrity, MsgIntegrity::Ok);
                let (agent, map, got, from) = if on_a {
                    (&a, &a_to_k, &mut got_a, "b")
                } else {
                    (&b, &b_to_k, &mut got_b, "a")
                };
                let k = map[&conn];
                assert_eq!(body, format!("{from}{k} {}", got[k]).into_bytes());
                got[k] += 1;
                agent.ack(conn, msg_id).await.unwrap();
            }
            AgentEvent::Error { .. } | AgentEvent::DeliveryError { .. } => panic!("{ev:?}"),
            _ => {}
        }
    }
    assert!(got_a.iter().chain(got_b.iter()).all(|n| *n == MSGS));
    a.close().await;
    b.close().await;
}
