//! §8.1 "Messages" and the delivery state machine.

mod common;

use std::time::Duration;

use common::*;
use hush_proto::error::{CommandError, ErrorType};
use hush_proto::smp::{BrokerMsg, Command};

async fn server_with(quota: Option<usize>) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let mut cfg = test_config(&paths);
    if let Some(q) = quota {
        cfg.limits.queue_quota = q;
    }
    let s = TestServer::start(cfg).await;
    (dir, s)
}

#[tokio::test]
async fn duplex_channel() {
    let (_d, server) = server_with(None).await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    let qa = new_queue(&mut a).await; // A receives
    let qb = new_queue(&mut b).await; // B receives
    let (ka, kb) = (AuthKey::ed25519(), AuthKey::ed25519());
    assert_eq!(
        a.cmd(Some(&qa.rcv_key), &qa.rcv_id, Command::Key(kb.public_der()))
            .await,
        BrokerMsg::Ok
    );
    assert_eq!(
        b.cmd(Some(&qb.rcv_key), &qb.rcv_id, Command::Key(ka.public_der()))
            .await,
        BrokerMsg::Ok
    );
    for i in 0..5u8 {
        assert_eq!(
            b.cmd(Some(&kb), &qa.snd_id, send_cmd(&[b'b', i], false))
                .await,
            BrokerMsg::Ok
        );
        let (id, body) = qa.body(&a.event().await.1);
        assert_eq!(body, [b'b', i]);
        assert_eq!(
            a.cmd(Some(&qa.rcv_key), &qa.rcv_id, ack(&id)).await,
            BrokerMsg::Ok
        );
        assert_eq!(
            a.cmd(Some(&ka), &qb.snd_id, send_cmd(&[b'a', i], false))
                .await,
            BrokerMsg::Ok
        );
        let (id, body) = qb.body(&b.event().await.1);
        assert_eq!(body, [b'a', i]);
        assert_eq!(
            b.cmd(Some(&qb.rcv_key), &qb.rcv_id, ack(&id)).await,
            BrokerMsg::Ok
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn same_connection_msg_before_ok() {
    let (_d, server) = server_with(None).await;
    let mut c = server.connect().await;
    let q = new_queue(&mut c).await;
    let corr = random_corr();
    c.send(None, &corr, &q.snd_id, &send_cmd(b"self", false))
        .await;
    let (c1, e1, m1) = c.recv().await;
    assert!(c1.is_empty(), "the pushed MSG comes first");
    assert_eq!(e1, q.rcv_id);
    assert_eq!(q.body(&m1).1, b"self");
    assert_eq!(c.recv().await, (corr, q.snd_id.clone(), BrokerMsg::Ok));
    server.stop().await;
}

#[tokio::test]
async fn subscription_switch() {
    let (_d, server) = server_with(None).await;
    let mut r1 = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue(&mut r1).await;
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"one", false)).await,
        BrokerMsg::Ok
    );
    let (id1, _) = q.body(&r1.event().await.1);

    let mut r2 = server.connect().await;
    let corr = random_corr();
    r2.send(Some(&q.rcv_key), &corr, &q.rcv_id, &Command::Sub)
        .await;
    assert_eq!(
        r2.recv().await,
        (corr, q.rcv_id.clone(), BrokerMsg::Sok(None))
    );
    // the unacked message is redelivered to the new subscriber
    let (e, m) = r2.event().await;
    assert_eq!(e, q.rcv_id);
    assert_eq!(q.body(&m), (id1.clone(), b"one".to_vec()));
    // the first connection gets END
    assert_eq!(r1.event().await, (q.rcv_id.clone(), BrokerMsg::End));
    // ACK from the first connection → NO_MSG
    assert_err(
        &r1.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id1)).await,
        ErrorType::NoMsg,
    );
    // new messages go to the second
    let m = r2.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id1)).await;
    assert_eq!(m, BrokerMsg::Ok);
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"two", false)).await,
        BrokerMsg::Ok
    );
    assert_eq!(q.body(&r2.event().await.1).1, b"two");
    // DEL from the first → DELD to the second
    assert_eq!(
        r1.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Del).await,
        BrokerMsg::Ok
    );
    assert_eq!(r2.event().await, (q.rcv_id.clone(), BrokerMsg::Deld));
    r1.expect_nothing(Duration::from_millis(300)).await;
    server.stop().await;
}

#[tokio::test]
async fn get_and_ack() {
    let (_d, server) = server_with(None).await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue_with(
        &mut r,
        AuthKey::ed25519(),
        NewOpts {
            subscribe: false,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Get).await,
        BrokerMsg::Ok
    );
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"g1", false)).await,
        BrokerMsg::Ok
    );
    r.expect_nothing(Duration::from_millis(200)).await;
    let corr = random_corr();
    r.send(Some(&q.rcv_key), &corr, &q.rcv_id, &Command::Get)
        .await;
    let (c, e, m) = r.recv().await;
    assert_eq!((c, e), (corr, q.rcv_id.clone()));
    let (id, body) = q.body(&m);
    assert_eq!(body, b"g1");
    // GET again returns the same message until it is acknowledged
    let again = r.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Get).await;
    assert_eq!(q.body(&again).0, id);
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id)).await,
        BrokerMsg::Ok
    );
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Get).await,
        BrokerMsg::Ok
    );
    server.stop().await;
}

#[tokio::test]
async fn mixed_get_and_sub() {
    let (_d, server) = server_with(None).await;
    let mut sub = server.connect().await;
    let mut getter = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue(&mut sub).await;
    for b in [b"m1", b"m2", b"m3"] {
        assert_eq!(
            s.cmd(None, &q.snd_id, send_cmd(b, false)).await,
            BrokerMsg::Ok
        );
    }
    let (id1, b1) = q.body(&sub.event().await.1);
    assert_eq!(b1, b"m1");
    let g = getter.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Get).await;
    assert_eq!(
        q.body(&g),
        (id1.clone(), b"m1".to_vec()),
        "both see the head"
    );
    let prohibited = ErrorType::Cmd(CommandError::Prohibited);
    assert_err(
        &sub.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Get).await,
        prohibited.clone(),
    );
    assert_err(
        &getter.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Sub).await,
        prohibited,
    );
    // subscriber ACK returns the next message
    let m = sub.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id1)).await;
    let (id2, b2) = q.body(&m);
    assert_eq!(b2, b"m2");
    // getter: bad id → NO_MSG (and the delivery stays), already-acked id → OK
    assert_err(
        &getter.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&[7; 24])).await,
        ErrorType::NoMsg,
    );
    assert_eq!(
        getter.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id1)).await,
        BrokerMsg::Ok
    );
    // nothing was lost: getter sees m2, subscriber continues with m3
    let g = getter.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Get).await;
    assert_eq!(q.body(&g), (id2.clone(), b"m2".to_vec()));
    let m = sub.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id2)).await;
    let (id3, b3) = q.body(&m);
    assert_eq!(b3, b"m3");
    assert_eq!(
        sub.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id3)).await,
        BrokerMsg::Ok
    );
    assert_eq!(
        getter.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Get).await,
        BrokerMsg::Ok
    );
    server.stop().await;
}

#[tokio::test]
async fn quota_and_marker() {
    let (_d, server) = server_with(Some(2)).await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue(&mut r).await;
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"1", false)).await,
        BrokerMsg::Ok
    );
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"2", false)).await,
        BrokerMsg::Ok
    );
    assert_err(
        &s.cmd(None, &q.snd_id, send_cmd(b"3", false)).await,
        ErrorType::Quota,
    );
    assert_err(
        &s.cmd(None, &q.snd_id, send_cmd(b"4", false)).await,
        ErrorType::Quota,
    );
    let (id1, b1) = q.body(&r.event().await.1);
    assert_eq!(b1, b"1");
    let (id2, b2) = q.body(&r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id1)).await);
    assert_eq!(b2, b"2");
    assert_err(
        &s.cmd(None, &q.snd_id, send_cmd(b"5", false)).await,
        ErrorType::Quota,
    );
    let m = r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id2)).await;
    let (idq, p) = q.decrypt(&m);
    assert!(matches!(p, Plain::Quota { .. }), "quota marker, got {p:?}");
    // still full until the marker is acknowledged
    assert_err(
        &s.cmd(None, &q.snd_id, send_cmd(b"6", false)).await,
        ErrorType::Quota,
    );
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&idq)).await,
        BrokerMsg::Ok
    );
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"7", false)).await,
        BrokerMsg::Ok
    );
    assert_eq!(q.body(&r.event().await.1).1, b"7");
    server.stop().await;
}

#[tokio::test]
async fn two_concurrent_senders_fifty_rounds() {
    let (_d, server) = server_with(None).await;
    let mut r = server.connect().await;
    let q = new_queue(&mut r).await;
    let mut s1 = server.connect().await;
    let mut s2 = server.connect().await;
    let mut seen = std::collections::HashSet::new();
    for round in 0..50u32 {
        let b1 = format!("s1-{round}");
        let b2 = format!("s2-{round}");
        let snd = q.snd_id.clone();
        let (r1, r2) = tokio::join!(
            s1.cmd(None, &snd, send_cmd(b1.as_bytes(), false)),
            s2.cmd(None, &snd, send_cmd(b2.as_bytes(), false))
        );
        assert_eq!((r1, r2), (BrokerMsg::Ok, BrokerMsg::Ok));
        let (id, body) = q.body(&r.event().await.1);
        assert!(seen.insert(body.clone()));
        let m = r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id)).await;
        let (id, body) = q.body(&m);
        assert!(seen.insert(body));
        assert_eq!(
            r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id)).await,
            BrokerMsg::Ok
        );
    }
    assert_eq!(seen.len(), 100);
    r.expect_nothing(Duration::from_millis(200)).await;
    server.stop().await;
}

#[tokio::test]
async fn que_reports_state() {
    let (_d, server) = server_with(None).await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue_with(
        &mut r,
        AuthKey::ed25519(),
        NewOpts {
            ntf: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"x", false)).await,
        BrokerMsg::Ok
    );
    let (id, _) = q.body(&r.event().await.1);
    let BrokerMsg::Info(j) = r.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Que).await else {
        panic!()
    };
    let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
    assert_eq!(v["qiSnd"], false);
    assert_eq!(v["qiNtf"], true);
    assert_eq!(v["qiSize"], 1);
    assert_eq!(v["qiSub"]["qSubThread"], "noSub");
    assert!(v["qiSub"]["qDelivered"].is_string());
    assert_eq!(v["qiMsg"]["msgType"], "message");
    let _ = id;
    server.stop().await;
}
