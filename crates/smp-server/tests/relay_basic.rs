//! First end-to-end checks: connection + PING, and NEW / SEND / SUB / ACK over real TLS.

mod common;

use common::*;
use hush_proto::error::ErrorType;
use hush_proto::smp::{BrokerMsg, Command};

#[tokio::test]
async fn ping_pong() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let server = TestServer::start(test_config(&paths)).await;
    let mut c = server.connect().await;
    let corr = random_corr();
    c.send(None, &corr, &[], &Command::Ping).await;
    let (rc, re, m) = c.recv().await;
    assert_eq!((rc, re, m), (corr, vec![], BrokerMsg::Pong));
    server.stop().await;
}

#[tokio::test]
async fn new_send_sub_ack() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let server = TestServer::start(test_config(&paths)).await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue(&mut r).await;

    // unsigned first SEND is accepted and pushed to the subscriber (NEW with subMode S)
    let m = s.cmd(None, &q.snd_id, send_cmd(b"hello", false)).await;
    assert_eq!(m, BrokerMsg::Ok);
    let (e, msg) = r.event().await;
    assert_eq!(e, q.rcv_id);
    let (id, plain) = q.decrypt(&msg);
    let Plain::Msg {
        ts,
        notification,
        body,
    } = plain
    else {
        panic!()
    };
    assert_eq!(body, b"hello");
    assert!(!notification);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - ts).abs() < 60);

    // second message waits for the ACK; the ACK answers with it
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"second", true)).await,
        BrokerMsg::Ok
    );
    r.expect_nothing(std::time::Duration::from_millis(300))
        .await;
    let m = r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id)).await;
    let (id2, body) = q.body(&m);
    assert_eq!(body, b"second");
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id2)).await,
        BrokerMsg::Ok
    );
    // repeated ACK → NO_MSG
    assert_err(
        &r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id2)).await,
        ErrorType::NoMsg,
    );
    server.stop().await;
}
