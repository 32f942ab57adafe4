//! Two agents talking through a real smp-server relay (in-process, real TLS, real files).

mod common;

use common::*;
use hush_agent::{AgentEvent, MsgIntegrity};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitation_connect_and_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (a, mut a_rx) = open_agent(&db_path(dir.path(), "a"), relay.server()).await;
    let (b, mut b_rx) = open_agent(&db_path(dir.path(), "b"), relay.server()).await;
    let (a_conn, b_conn) = connect_pair(&a, &mut a_rx, &b, &mut b_rx).await;

    let mut seen = Vec::new();
    for i in 0..5 {
        let body = format!("a->b {i}");
        let id = a.send(a_conn, body.as_bytes()).unwrap();
        assert_eq!(id, 2 + i, "confirmation took id 1");
        let (mid, got, integrity) = wait_for(&mut b_rx, &mut seen, |e| match e {
            AgentEvent::Message {
                conn,
                msg_id,
                body,
                integrity,
            } if *conn == b_conn => Some((*msg_id, body.clone(), integrity.clone())),
            _ => None,
        })
        .await;
        assert_eq!(mid, id);
        assert_eq!(got, body.as_bytes());
        assert_eq!(integrity, MsgIntegrity::Ok);
        b.ack(b_conn, mid).await.unwrap();
        let body = format!("b->a {i}");
        let id = b.send(b_conn, body.as_bytes()).unwrap();
        let (mid, got) = wait_for(&mut a_rx, &mut seen, |e| match e {
            AgentEvent::Message {
                conn, msg_id, body, ..
            } if *conn == a_conn => Some((*msg_id, body.clone())),
            _ => None,
        })
        .await;
        assert_eq!((mid, got), (id, body.into_bytes()));
        a.ack(a_conn, mid).await.unwrap();
    }
    a.close().await;
    b.close().await;
}
