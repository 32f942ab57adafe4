//! §8.1 "Queue creation and securing".

mod common;

use std::time::Duration;

use common::*;
use hush_proto::error::ErrorType;
use hush_proto::smp::{BrokerMsg, Command, NonEmpty, QueueMode};

async fn server() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let s = TestServer::start(test_config(&paths)).await;
    (dir, s)
}

#[tokio::test]
async fn new_ids_unsigned_send_decrypts_and_ack() {
    let (_d, server) = server().await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let key = AuthKey::ed25519();
    let dh = hush_crypto::X25519Secret::generate();
    let corr = random_corr();
    r.send(
        Some(&key),
        &corr,
        &[],
        &new_request(&key, &dh, NewOpts::default(), None),
    )
    .await;
    let (rc, entity, m) = r.recv().await;
    assert_eq!(rc, corr);
    assert!(entity.is_empty(), "IDS has an empty entity id");
    let BrokerMsg::Ids(ids) = m else {
        panic!("{m:?}")
    };
    let q = Queue {
        rcv_key: key,
        dh,
        rcv_id: ids.rcv_id.as_bytes().to_vec(),
        snd_id: ids.snd_id.as_bytes().to_vec(),
        ids,
        ntf: None,
    };
    assert_ne!(q.rcv_id, q.snd_id);
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"hi", false)).await,
        BrokerMsg::Ok
    );
    let (e, msg) = r.event().await;
    assert_eq!(e, q.rcv_id);
    // decrypts with DH(srvDhKey, own key) and nonce = msgId
    let (id, body) = q.body(&msg);
    assert_eq!(body, b"hi");
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id)).await,
        BrokerMsg::Ok
    );
    assert_err(
        &r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id)).await,
        ErrorType::NoMsg,
    );
    server.stop().await;
}

#[tokio::test]
async fn key_securing_rules() {
    let (_d, server) = server().await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue(&mut r).await;
    let sender = AuthKey::ed25519();
    // before securing a signed SEND is refused
    assert_err(
        &s.cmd(Some(&sender), &q.snd_id, send_cmd(b"x", false)).await,
        ErrorType::Auth,
    );
    // KEY with a wrong signature
    let wrong = AuthKey::ed25519();
    assert_err(
        &r.cmd(Some(&wrong), &q.rcv_id, Command::Key(sender.public_der()))
            .await,
        ErrorType::Auth,
    );
    // KEY with the sender id
    assert_err(
        &r.cmd(
            Some(&q.rcv_key),
            &q.snd_id,
            Command::Key(sender.public_der()),
        )
        .await,
        ErrorType::Auth,
    );
    // valid KEY: OK with the same entity
    let corr = random_corr();
    r.send(
        Some(&q.rcv_key),
        &corr,
        &q.rcv_id,
        &Command::Key(sender.public_der()),
    )
    .await;
    assert_eq!(r.recv().await, (corr, q.rcv_id.clone(), BrokerMsg::Ok));
    // same key again → OK, other key → AUTH
    assert_eq!(
        r.cmd(
            Some(&q.rcv_key),
            &q.rcv_id,
            Command::Key(sender.public_der())
        )
        .await,
        BrokerMsg::Ok
    );
    assert_err(
        &r.cmd(
            Some(&q.rcv_key),
            &q.rcv_id,
            Command::Key(wrong.public_der()),
        )
        .await,
        ErrorType::Auth,
    );
    // after securing: signed SEND delivered, unsigned refused
    assert_eq!(
        s.cmd(Some(&sender), &q.snd_id, send_cmd(b"signed", false))
            .await,
        BrokerMsg::Ok
    );
    let (_, msg) = r.event().await;
    assert_eq!(q.body(&msg).1, b"signed");
    assert_err(
        &s.cmd(None, &q.snd_id, send_cmd(b"unsigned", false)).await,
        ErrorType::Auth,
    );
    assert_err(
        &s.cmd(Some(&wrong), &q.snd_id, send_cmd(b"wrong", false))
            .await,
        ErrorType::Auth,
    );
    server.stop().await;
}

#[tokio::test]
async fn max_body_and_large_msg() {
    let (_d, server) = server().await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue(&mut r).await;
    let body: Vec<u8> = (0..16048u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(&body, false)).await,
        BrokerMsg::Ok
    );
    let (_, msg) = r.event().await;
    assert_eq!(q.body(&msg).1, body);
    let mut big = body.clone();
    big.push(1);
    assert_err(
        &s.cmd(None, &q.snd_id, send_cmd(&big, false)).await,
        ErrorType::LargeMsg,
    );
    server.stop().await;
}

#[tokio::test]
async fn skey_rules() {
    let (_d, server) = server().await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue(&mut r).await;
    let k = AuthKey::ed25519();
    let other = AuthKey::ed25519();
    // SKEY signed by a key other than the one being set
    assert_err(
        &s.cmd(Some(&other), &q.snd_id, Command::SKey(k.public_der()))
            .await,
        ErrorType::Auth,
    );
    // SKEY with the recipient id
    assert_err(
        &s.cmd(Some(&k), &q.rcv_id, Command::SKey(k.public_der()))
            .await,
        ErrorType::Auth,
    );
    let corr = random_corr();
    s.send(Some(&k), &corr, &q.snd_id, &Command::SKey(k.public_der()))
        .await;
    assert_eq!(s.recv().await, (corr, q.snd_id.clone(), BrokerMsg::Ok));
    assert_err(
        &s.cmd(Some(&other), &q.snd_id, Command::SKey(other.public_der()))
            .await,
        ErrorType::Auth,
    );
    assert_eq!(
        s.cmd(Some(&k), &q.snd_id, Command::SKey(k.public_der()))
            .await,
        BrokerMsg::Ok
    );
    assert_eq!(
        s.cmd(Some(&k), &q.snd_id, send_cmd(b"m", false)).await,
        BrokerMsg::Ok
    );
    assert_eq!(q.body(&r.event().await.1).1, b"m");

    // a contact queue cannot be secured by the sender
    let cq = new_queue_with(
        &mut r,
        AuthKey::ed25519(),
        NewOpts {
            mode: Some(QueueMode::Contact),
            ..Default::default()
        },
    )
    .await;
    assert_err(
        &s.cmd(Some(&k), &cq.snd_id, Command::SKey(k.public_der()))
            .await,
        ErrorType::Auth,
    );
    server.stop().await;
}

#[tokio::test]
async fn rkey_on_contact_queue() {
    let (_d, server) = server().await;
    let mut r = server.connect().await;
    let k1 = AuthKey::ed25519();
    let k2 = AuthKey::ed448();
    let q = new_queue_with(
        &mut r,
        k1.clone(),
        NewOpts {
            mode: Some(QueueMode::Contact),
            ..Default::default()
        },
    )
    .await;
    let keys = |ks: &[&AuthKey]| {
        Command::RKey(NonEmpty::new(ks.iter().map(|k| k.public_der()).collect()).unwrap())
    };
    assert_err(
        &r.cmd(Some(&k2), &q.rcv_id, Command::Que).await,
        ErrorType::Auth,
    );
    assert_eq!(
        r.cmd(Some(&k1), &q.rcv_id, keys(&[&k1, &k2])).await,
        BrokerMsg::Ok
    );
    for k in [&k1, &k2] {
        let m = r.cmd(Some(k), &q.rcv_id, Command::Que).await;
        let BrokerMsg::Info(json) = m else {
            panic!("{m:?}")
        };
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["qiSnd"], false);
        assert_eq!(v["qiSize"], 0);
    }
    // k2 removes k1; k1 no longer works
    assert_eq!(
        r.cmd(Some(&k2), &q.rcv_id, keys(&[&k2])).await,
        BrokerMsg::Ok
    );
    assert_err(
        &r.cmd(Some(&k1), &q.rcv_id, Command::Que).await,
        ErrorType::Auth,
    );
    // a key may remove itself
    assert_eq!(
        r.cmd(Some(&k2), &q.rcv_id, keys(&[&k1])).await,
        BrokerMsg::Ok
    );
    assert_err(
        &r.cmd(Some(&k2), &q.rcv_id, Command::Que).await,
        ErrorType::Auth,
    );
    assert!(matches!(
        r.cmd(Some(&k1), &q.rcv_id, Command::Que).await,
        BrokerMsg::Info(_)
    ));
    // RKEY on a messaging queue → AUTH
    let mq = new_queue(&mut r).await;
    assert_err(
        &r.cmd(Some(&mq.rcv_key), &mq.rcv_id, keys(&[&k2])).await,
        ErrorType::Auth,
    );
    server.stop().await;
}

#[tokio::test]
async fn off_suspends_sending_but_sub_redelivers() {
    let (_d, server) = server().await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue(&mut r).await;
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"before off", false)).await,
        BrokerMsg::Ok
    );
    let (_, first) = r.event().await;
    let (id, _) = q.body(&first);
    assert_err(
        &r.cmd(Some(&AuthKey::ed25519()), &q.rcv_id, Command::Off)
            .await,
        ErrorType::Auth,
    );
    assert_err(
        &r.cmd(Some(&q.rcv_key), &q.snd_id, Command::Off).await,
        ErrorType::Auth,
    );
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Off).await,
        BrokerMsg::Ok
    );
    let sk = AuthKey::ed25519();
    assert_err(
        &s.cmd(None, &q.snd_id, send_cmd(b"x", false)).await,
        ErrorType::Auth,
    );
    assert_err(
        &s.cmd(Some(&sk), &q.snd_id, send_cmd(b"x", false)).await,
        ErrorType::Auth,
    );
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Off).await,
        BrokerMsg::Ok
    );
    // SUB still works and redelivers the unacked message: SOK then MSG
    let corr = random_corr();
    r.send(Some(&q.rcv_key), &corr, &q.rcv_id, &Command::Sub)
        .await;
    assert_eq!(
        r.recv().await,
        (corr, q.rcv_id.clone(), BrokerMsg::Sok(None))
    );
    let (e, again) = r.event().await;
    assert_eq!(e, q.rcv_id);
    assert_eq!(q.body(&again), (id.clone(), b"before off".to_vec()));
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id)).await,
        BrokerMsg::Ok
    );
    server.stop().await;
}

#[tokio::test]
async fn del_removes_queue() {
    let (_d, server) = server().await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue(&mut r).await;
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"m", false)).await,
        BrokerMsg::Ok
    );
    let (id, _) = q.body(&r.event().await.1);
    assert_err(
        &r.cmd(Some(&AuthKey::ed25519()), &q.rcv_id, Command::Del)
            .await,
        ErrorType::Auth,
    );
    assert_err(
        &r.cmd(Some(&q.rcv_key), &q.snd_id, Command::Del).await,
        ErrorType::Auth,
    );
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Del).await,
        BrokerMsg::Ok
    );
    assert_err(
        &s.cmd(None, &q.snd_id, send_cmd(b"m", false)).await,
        ErrorType::Auth,
    );
    assert_err(
        &r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id)).await,
        ErrorType::Auth,
    );
    assert_err(
        &r.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Off).await,
        ErrorType::Auth,
    );
    assert_err(
        &r.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Sub).await,
        ErrorType::Auth,
    );
    server.stop().await;
}

#[tokio::test]
async fn fifty_queues_resubscribed_on_other_connections() {
    let (_d, server) = server().await;
    let mut c1 = server.connect().await;
    let mut qs = Vec::new();
    for _ in 0..50 {
        qs.push(new_queue(&mut c1).await);
    }
    for round in 0..2 {
        let mut c = server.connect().await;
        // all SUBs in one batch
        let mut ts = Vec::new();
        let mut corrs = Vec::new();
        for q in &qs {
            let corr = random_corr();
            ts.push(c.transmission(Some(&q.rcv_key), &corr, &q.rcv_id, &Command::Sub.encode(18)));
            corrs.push(corr);
        }
        c.send_raw(ts).await;
        for corr in &corrs {
            assert_eq!(c.response_to(corr).await, BrokerMsg::Sok(None));
        }
        // the previous subscriber got END for every queue
        let mut ended = std::collections::HashSet::new();
        while ended.len() < 50 {
            let (e, m) = c1.event().await;
            assert_eq!(m, BrokerMsg::End);
            ended.insert(e);
        }
        c1 = c;
        let _ = round;
    }
    server.stop().await;
}

#[tokio::test]
async fn new_queues_off_and_password() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let mut cfg = test_config(&paths);
    cfg.auth.new_queues = false;
    let server = TestServer::start(cfg.clone()).await;
    let mut c = server.connect().await;
    let key = AuthKey::ed25519();
    let dh = hush_crypto::X25519Secret::generate();
    let m = c
        .cmd(
            Some(&key),
            &[],
            new_request(&key, &dh, NewOpts::default(), None),
        )
        .await;
    assert_err(&m, ErrorType::Auth);
    server.stop().await;

    cfg.auth.new_queues = true;
    cfg.auth.create_password = Some(smp_server::config::BasicAuth::new("s3cret").unwrap());
    let server = TestServer::start(cfg).await;
    let mut c = server.connect().await;
    let mut req = new_request(&key, &dh, NewOpts::default(), None);
    assert_err(&c.cmd(Some(&key), &[], req.clone()).await, ErrorType::Auth);
    if let Command::New(r) = &mut req {
        r.basic_auth = Some(hush_proto::address::BasicAuth::new("wrong").unwrap());
    }
    assert_err(&c.cmd(Some(&key), &[], req.clone()).await, ErrorType::Auth);
    if let Command::New(r) = &mut req {
        r.basic_auth = Some(hush_proto::address::BasicAuth::new("s3cret").unwrap());
    }
    assert!(matches!(
        c.cmd(Some(&key), &[], req).await,
        BrokerMsg::Ids(_)
    ));
    server.stop().await;
}

#[tokio::test]
async fn ed448_and_x25519_recipient_keys() {
    let (_d, server) = server().await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    for key in [AuthKey::ed448(), AuthKey::x25519()] {
        let q = new_queue_with(
            &mut r,
            key,
            NewOpts {
                subscribe: false,
                ..Default::default()
            },
        )
        .await;
        let sk = AuthKey::x25519();
        assert_eq!(
            s.cmd(Some(&sk), &q.snd_id, Command::SKey(sk.public_der()))
                .await,
            BrokerMsg::Ok
        );
        assert_eq!(
            s.cmd(Some(&sk), &q.snd_id, send_cmd(b"k", false)).await,
            BrokerMsg::Ok
        );
        let corr = random_corr();
        r.send(Some(&q.rcv_key), &corr, &q.rcv_id, &Command::Sub)
            .await;
        assert_eq!(r.response_to(&corr).await, BrokerMsg::Sok(None));
        let (_, m) = r.event().await;
        assert_eq!(q.body(&m).1, b"k");
        // a signature of the wrong type for the key → AUTH
        assert_err(
            &r.cmd(Some(&AuthKey::ed25519()), &q.rcv_id, Command::Que)
                .await,
            ErrorType::Auth,
        );
    }
    r.expect_nothing(Duration::from_millis(100)).await;
    server.stop().await;
}
