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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_down_5s_then_reconnect_delivers_queued_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(dir.path()).await;
    let (a, mut a_rx) = open_agent(&db_path(dir.path(), "a"), relay.server()).await;
    let (b, mut b_rx) = open_agent(&db_path(dir.path(), "b"), relay.server()).await;
    let (a_conn, b_conn) = connect_pair(&a, &mut a_rx, &b, &mut b_rx).await;
    let mut seen = Vec::new();

    relay.stop().await;
    for rx in [&mut a_rx, &mut b_rx] {
        wait_for(rx, &mut seen, |e| {
            matches!(e, AgentEvent::RelayDown { .. }).then_some(())
        })
        .await;
    }
    let id = a.send(a_conn, b"sent while the relay is down").unwrap();
    assert_eq!(a.pending_sends().unwrap(), 1);
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(
        a.pending_sends().unwrap(),
        1,
        "nothing can be delivered while down"
    );
    relay.restart().await;

    wait_for(&mut b_rx, &mut seen, |e| {
        matches!(e, AgentEvent::RelayUp { .. }).then_some(())
    })
    .await;
    let (mid, body) = wait_for(&mut b_rx, &mut seen, |e| match e {
        AgentEvent::Message {
            conn, msg_id, body, ..
        } if *conn == b_conn => Some((*msg_id, body.clone())),
        _ => None,
    })
    .await;
    assert_eq!(
        (mid, body.as_slice()),
        (id, &b"sent while the relay is down"[..])
    );
    b.ack(b_conn, mid).await.unwrap();
    wait_for(&mut a_rx, &mut seen, |e| {
        matches!(e, AgentEvent::Sent { conn, msg_id } if *conn == a_conn && *msg_id == id)
            .then_some(())
    })
    .await;
    assert_eq!(a.pending_sends().unwrap(), 0);
    a.close().await;
    b.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_connection_refuses_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (a, mut a_rx) = open_agent(&db_path(dir.path(), "a"), relay.server()).await;
    let (b, mut b_rx) = open_agent(&db_path(dir.path(), "b"), relay.server()).await;
    let (a_conn, b_conn) = connect_pair(&a, &mut a_rx, &b, &mut b_rx).await;
    b.delete_connection(b_conn).await.unwrap();
    assert!(!b.connections().unwrap().contains(&b_conn));
    let id = a.send(a_conn, b"to nowhere").unwrap();
    let mut seen = Vec::new();
    let err = wait_for(&mut a_rx, &mut seen, |e| match e {
        AgentEvent::DeliveryError {
            conn,
            msg_id,
            error,
        } if *conn == a_conn && *msg_id == id => Some(error.clone()),
        _ => None,
    })
    .await;
    assert!(err.contains("Auth"), "{err}");
    assert_eq!(a.pending_sends().unwrap(), 0);
    a.close().await;
    b.close().await;
}
