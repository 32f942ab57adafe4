//! §8.1 "Notifications (SMP side)".

mod common;

use std::time::Duration;

use common::*;
use hush_crypto::X25519Public;
use hush_proto::error::ErrorType;
use hush_proto::smp::{BrokerMsg, Command};
use hush_proto::transmission::{Transmission, authorized_bytes, encode_transmission};
use smp_server::server::RelayOptions;

async fn server() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    // Default (adaptive) NMSG delivery.
    let s = TestServer::start_with(test_config(&paths), RelayOptions::default()).await;
    (dir, s)
}

/// NKEY: returns (notifier key, notifier id, rcv ntf dh secret).
async fn nkey(r: &mut TestClient, q: &Queue) -> (AuthKey, Vec<u8>, hush_crypto::DhSecret) {
    let nk = AuthKey::ed25519();
    let dh = hush_crypto::X25519Secret::generate();
    let m = r
        .cmd(
            Some(&q.rcv_key),
            &q.rcv_id,
            Command::NKey {
                notifier_key: nk.public_der(),
                rcv_ntf_dh_key: dh_der(&dh),
            },
        )
        .await;
    let BrokerMsg::Nid {
        notifier_id,
        srv_ntf_dh_key,
    } = m
    else {
        panic!("{m:?}")
    };
    let secret = dh.dh(&X25519Public::from_spki_der(srv_ntf_dh_key.as_bytes()).unwrap());
    (nk, notifier_id.as_bytes().to_vec(), secret)
}

fn check_nmsg(m: &BrokerMsg, secret: &hush_crypto::DhSecret, msg_id: &[u8]) {
    let BrokerMsg::NMsg { nonce, enc_meta } = m else {
        panic!("expected NMSG, got {m:?}")
    };
    assert_eq!(enc_meta.len(), 144);
    let meta = hush_crypto::decrypt_nmsg_meta(secret, nonce, enc_meta.as_bytes()).unwrap();
    assert_eq!(meta[0], 24);
    assert_eq!(&meta[1..25], msg_id);
    assert_eq!(meta.len(), 33);
}

#[tokio::test]
async fn nkey_twice_gives_new_ids() {
    let (_d, server) = server().await;
    let mut r = server.connect().await;
    let q = new_queue(&mut r).await;
    let (_, n1, _) = nkey(&mut r, &q).await;
    let (_, n2, _) = nkey(&mut r, &q).await;
    assert_ne!(n1, n2);
    server.stop().await;
}

#[tokio::test]
async fn nsub_with_service_signature_outside_service_session() {
    let (_d, server) = server().await;
    let mut r = server.connect().await;
    let q = new_queue(&mut r).await;
    let (nk, nid, _) = nkey(&mut r, &q).await;
    let mut n = server.connect().await;
    // NSUB with a (64-byte) service signature: ERR SERVICE
    let corr = random_corr();
    let cmd = Command::NSub.encode(18);
    let authorized = authorized_bytes(n.conn.session_id(), &corr, &nid, &cmd);
    let server_key = *n.conn.server_session_key().unwrap();
    let sig = nk.authorize(&authorized, &corr, &server_key);
    let service_sig = [5u8; 64];
    let t = Transmission {
        authorization: &sig,
        service_sig: Some(&service_sig),
        corr_id: &corr,
        entity_id: &nid,
        command: &cmd,
        ..Default::default()
    };
    let mut bytes = Vec::new();
    encode_transmission(&mut bytes, &t, 18, true).unwrap();
    n.send_raw(vec![bytes]).await;
    assert_err(&n.response_to(&corr).await, ErrorType::Service);
    // plain NSUB → SOK 0
    assert_eq!(
        n.cmd(Some(&nk), &nid, Command::NSub).await,
        BrokerMsg::Sok(None)
    );
    // a wrong key → AUTH
    assert_err(
        &n.cmd(Some(&AuthKey::ed25519()), &nid, Command::NSub).await,
        ErrorType::Auth,
    );
    server.stop().await;
}

#[tokio::test]
async fn nmsg_delivery_switch_ndel() {
    let (_d, server) = server().await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue(&mut r).await;
    let (nk, nid, secret) = nkey(&mut r, &q).await;
    let mut n1 = server.connect().await;
    assert_eq!(
        n1.cmd(Some(&nk), &nid, Command::NSub).await,
        BrokerMsg::Sok(None)
    );

    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"n1", true)).await,
        BrokerMsg::Ok
    );
    let (id1, _) = q.body(&r.event().await.1);
    let (e, m) = n1.event().await;
    assert_eq!(e, nid);
    check_nmsg(&m, &secret, &id1);
    // flag F: no notification
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id1)).await,
        BrokerMsg::Ok
    );
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"quiet", false)).await,
        BrokerMsg::Ok
    );
    let (idq, _) = q.body(&r.event().await.1);
    n1.expect_nothing(Duration::from_millis(600)).await;
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&idq)).await,
        BrokerMsg::Ok
    );

    // a second notifier connection takes over: the first gets END
    let mut n2 = server.connect().await;
    assert_eq!(
        n2.cmd(Some(&nk), &nid, Command::NSub).await,
        BrokerMsg::Sok(None)
    );
    assert_eq!(n1.event().await, (nid.clone(), BrokerMsg::End));
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"n2", true)).await,
        BrokerMsg::Ok
    );
    let (id2, _) = q.body(&r.event().await.1);
    let (e, m) = n2.event().await;
    assert_eq!(e, nid);
    check_nmsg(&m, &secret, &id2);
    n1.expect_nothing(Duration::from_millis(500)).await;

    // NDEL → DELD to the notifier subscriber, no further NMSG
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, Command::NDel).await,
        BrokerMsg::Ok
    );
    assert_eq!(n2.event().await, (nid.clone(), BrokerMsg::Deld));
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id2)).await,
        BrokerMsg::Ok
    );
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"n3", true)).await,
        BrokerMsg::Ok
    );
    n2.expect_nothing(Duration::from_millis(600)).await;
    assert_err(
        &n2.cmd(Some(&nk), &nid, Command::NSub).await,
        ErrorType::Auth,
    );

    // a new NKEY after NDEL works again
    let (nk3, nid3, secret3) = nkey(&mut r, &q).await;
    assert_eq!(
        n2.cmd(Some(&nk3), &nid3, Command::NSub).await,
        BrokerMsg::Sok(None)
    );
    let (id3, _) = q.body(&r.event().await.1);
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id3)).await,
        BrokerMsg::Ok
    );
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"n4", true)).await,
        BrokerMsg::Ok
    );
    let (id4, _) = q.body(&r.event().await.1);
    let (e, m) = n2.event().await;
    assert_eq!(e, nid3);
    check_nmsg(&m, &secret3, &id4);
    server.stop().await;
}

#[tokio::test]
async fn notifier_creds_in_new_and_pending_before_nsub() {
    let (_d, server) = server().await;
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
    let (nk, ndh) = q.ntf.clone().unwrap();
    let creds = q.ids.server_ntf_creds.clone().unwrap();
    let secret = ndh.dh(&X25519Public::from_spki_der(creds.srv_ntf_dh_key.as_bytes()).unwrap());
    let nid = q.notifier_id();
    // sent before anyone subscribed as notifier: kept and flushed after NSUB
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"early", true)).await,
        BrokerMsg::Ok
    );
    let (id, _) = q.body(&r.event().await.1);
    let mut n = server.connect().await;
    assert_eq!(
        n.cmd(Some(&nk), &nid, Command::NSub).await,
        BrokerMsg::Sok(None)
    );
    let (e, m) = n.event().await;
    assert_eq!(e, nid);
    check_nmsg(&m, &secret, &id);
    // DEL of the queue → DELD to the notifier subscriber too
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Del).await,
        BrokerMsg::Ok
    );
    assert_eq!(n.event().await, (nid, BrokerMsg::Deld));
    server.stop().await;
}

#[tokio::test]
async fn service_subscriptions_need_a_service_session() {
    let (_d, server) = server().await;
    let mut c = server.connect().await;
    let k = AuthKey::ed25519();
    for cmd in [Command::NSubs, Command::Subs] {
        assert_err(&c.cmd(Some(&k), &[3; 24], cmd).await, ErrorType::Service);
    }
    server.stop().await;
}
