//! Against the REAL relay (crates/smp-server, in-process, real TLS on 127.0.0.1, SQLite store):
//! create / secure / send / subscribe / ack with every key type, GET, QUE, DEL; 1000 messages;
//! notifications (NKEY, NSUB, NMSG); relay stopped for 5 s and restarted → the pool
//! reconnects, resubscribes and receives what was sent meanwhile; wrong CA fingerprint.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hush_client::{
    AuthAlgorithm, AuthKey, BackoffConfig, ClientConfig, ClientError, EventReceiver,
    NewQueueParams, PoolConfig, PoolEvent, RawMsg, RcvMsgBody, ServerEvent, SmpClient,
    SmpClientPool, decrypt_nmsg,
};
use hush_proto::address::ProtocolServer;
use hush_proto::encoding::base64url_encode;
use hush_proto::error::ErrorType;
use smp_server::server::RelayOptions;
use smp_server::testing::{TestRelay, init_dirs, loopback_config};

const WAIT: Duration = Duration::from_secs(20);

/// An in-process relay (`smp_server::testing`, adaptive NMSG delivery) with a short shutdown grace.
fn options() -> RelayOptions {
    RelayOptions {
        shutdown_grace: Duration::from_secs(2),
        ..RelayOptions::default()
    }
}

/// `smp-server init` in `dir`, then started on a free loopback port.
async fn start_relay(dir: &std::path::Path) -> TestRelay {
    TestRelay::start_in(dir, options()).await.unwrap()
}

fn address(relay: &TestRelay) -> ProtocolServer {
    ProtocolServer::parse(&relay.address()).unwrap()
}

async fn connect(relay: &TestRelay) -> (SmpClient, EventReceiver) {
    SmpClient::connect(&address(relay), ClientConfig::default())
        .await
        .unwrap()
}

async fn next_msg(ev: &mut EventReceiver, rcv_id: &[u8]) -> RawMsg {
    match tokio::time::timeout(WAIT, ev.recv())
        .await
        .expect("no MSG event")
        .expect("connection closed")
    {
        ServerEvent::Message { rcv_id: r, msg } if r == rcv_id => msg,
        e => panic!("unexpected event {e:?}"),
    }
}

fn body_of(m: &RawMsg, q: &hush_client::NewQueue) -> Vec<u8> {
    match m.decrypt(&q.rcv_dh_secret).unwrap().body {
        RcvMsgBody::Message { body, .. } => body,
        b => panic!("expected a message, got {b:?}"),
    }
}

/// The whole life of a queue with each recipient key type (Ed25519, Ed448, X25519
/// authenticator): NEW (subscribed), unsigned SEND, MSG event, ACK, KEY, signed SEND (and an
/// unsigned one refused with AUTH), GET on another connection, QUE, OFF, DEL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = start_relay(dir.path()).await;
    let (rcv, mut rcv_ev) = connect(&relay).await;
    let (snd, _snd_ev) = connect(&relay).await;
    assert_eq!(rcv.version(), 18);
    for alg in [
        AuthAlgorithm::Ed25519,
        AuthAlgorithm::Ed448,
        AuthAlgorithm::X25519,
    ] {
        let q = rcv
            .create_queue(NewQueueParams {
                auth: alg,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(q.rcv_id.len(), 24);
        assert_ne!(q.rcv_id, q.snd_id);
        // Unsigned SEND before the queue is secured; notification flag kept.
        snd.send(&q.snd_id, None, true, b"first").await.unwrap();
        let m = next_msg(&mut rcv_ev, &q.rcv_id).await;
        let d = m.decrypt(&q.rcv_dh_secret).unwrap();
        match &d.body {
            RcvMsgBody::Message { ts, flags, body } => {
                assert_eq!(body, b"first");
                assert!(flags.notification);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64;
                assert!((now - ts).abs() < 60);
            }
            b => panic!("{b:?}"),
        }
        assert!(
            rcv.ack(&q.rcv_id, &q.rcv_key, &d.msg_id)
                .await
                .unwrap()
                .is_none()
        );
        // Acknowledging again: NO_MSG.
        assert!(matches!(
            rcv.ack(&q.rcv_id, &q.rcv_key, &d.msg_id).await,
            Err(ClientError::Smp(ErrorType::NoMsg))
        ));
        // Secure with the sender's key (recipient KEY), then signed sends only.
        let sk = AuthKey::generate(alg).unwrap();
        rcv.secure_queue(&q.rcv_id, &q.rcv_key, &sk.public_der().unwrap())
            .await
            .unwrap();
        assert!(matches!(
            snd.send(&q.snd_id, None, false, b"unsigned").await,
            Err(ClientError::Smp(ErrorType::Auth))
        ));
        snd.send(&q.snd_id, Some(&sk), false, b"second")
            .await
            .unwrap();
        let m = next_msg(&mut rcv_ev, &q.rcv_id).await;
        assert_eq!(body_of(&m, &q), b"second");
        // GET on the connection that subscribed the queue is refused (SUB/GET don't mix).
        assert!(matches!(
            rcv.get(&q.rcv_id, &q.rcv_key).await,
            Err(ClientError::Smp(ErrorType::Cmd(
                hush_proto::error::CommandError::Prohibited
            )))
        ));
        // A GET on another connection sees the same head message.
        let (other, _o) = connect(&relay).await;
        let g = other.get(&q.rcv_id, &q.rcv_key).await.unwrap().unwrap();
        assert_eq!(g.msg_id, m.msg_id);
        other.close().await;
        assert!(
            rcv.ack(&q.rcv_id, &q.rcv_key, &m.msg_id)
                .await
                .unwrap()
                .is_none()
        );
        let info = rcv.queue_info(&q.rcv_id, &q.rcv_key).await.unwrap();
        assert!(info.contains("qiSize"), "{info}");
        rcv.suspend(&q.rcv_id, &q.rcv_key).await.unwrap();
        assert!(matches!(
            snd.send(&q.snd_id, Some(&sk), false, b"x").await,
            Err(ClientError::Smp(ErrorType::Auth))
        ));
        rcv.delete(&q.rcv_id, &q.rcv_key).await.unwrap();
        assert!(matches!(
            rcv.subscribe(&q.rcv_id, &q.rcv_key).await,
            Err(ClientError::Smp(ErrorType::Auth))
        ));
    }
    // Sender-side securing (SKEY) on a fresh queue.
    let q = rcv.create_queue(NewQueueParams::default()).await.unwrap();
    let sk = AuthKey::generate(AuthAlgorithm::Ed25519).unwrap();
    snd.secure_sender(&q.snd_id, &sk).await.unwrap();
    snd.send(&q.snd_id, Some(&sk), false, b"after SKEY")
        .await
        .unwrap();
    assert_eq!(
        body_of(&next_msg(&mut rcv_ev, &q.rcv_id).await, &q),
        b"after SKEY"
    );
    rcv.ping().await.unwrap();
    rcv.close().await;
    snd.close().await;
    relay.stop().await.unwrap();
}

/// 1000 messages through one queue: sent 25 at a time concurrently (sharing blocks), retried
/// on QUOTA; the recipient receives each exactly once (MSG events and ACK responses, the
/// quota marker acknowledged like a message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_messages() {
    const N: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let mut relay = start_relay(dir.path()).await;
    let (rcv, mut rcv_ev) = connect(&relay).await;
    let (snd, _snd_ev) = connect(&relay).await;
    let q = Arc::new(rcv.create_queue(NewQueueParams::default()).await.unwrap());
    let sender = {
        let q = q.clone();
        tokio::spawn(async move {
            let mut quota_errors = 0;
            for chunk in (0..N).collect::<Vec<_>>().chunks(25) {
                let mut todo: Vec<usize> = chunk.to_vec();
                while !todo.is_empty() {
                    let mut handles = Vec::new();
                    for &i in &todo {
                        let snd = snd.clone();
                        let sid = q.snd_id.clone();
                        handles.push(tokio::spawn(async move {
                            (
                                i,
                                snd.send(&sid, None, false, format!("message {i}").as_bytes())
                                    .await,
                            )
                        }));
                    }
                    let mut again = Vec::new();
                    for h in handles {
                        let (i, r) = h.await.unwrap();
                        match r {
                            Ok(()) => {}
                            Err(ClientError::Smp(ErrorType::Quota)) => {
                                quota_errors += 1;
                                again.push(i);
                            }
                            Err(e) => panic!("send {i}: {e}"),
                        }
                    }
                    if !again.is_empty() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    todo = again;
                }
            }
            snd.close().await;
            quota_errors
        })
    };
    let mut seen = HashSet::new();
    let mut markers = 0;
    while seen.len() < N {
        let mut m = next_msg(&mut rcv_ev, &q.rcv_id).await;
        loop {
            match m.decrypt(&q.rcv_dh_secret).unwrap().body {
                RcvMsgBody::Message { body, .. } => {
                    let s = String::from_utf8(body).unwrap();
                    assert!(seen.insert(s.clone()), "duplicate {s}");
                }
                RcvMsgBody::Quota { .. } => markers += 1,
            }
            match rcv.ack(&q.rcv_id, &q.rcv_key, &m.msg_id).await.unwrap() {
                Some(next) => m = next,
                None => break,
            }
        }
    }
    let quota_errors = tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.len(), N);
    for i in 0..N {
        assert!(seen.contains(&format!("message {i}")));
    }
    // Each QUOTA period leaves exactly one marker.
    assert!(
        markers <= quota_errors,
        "{markers} markers, {quota_errors} QUOTA errors"
    );
    rcv.close().await;
    relay.stop().await.unwrap();
}

/// Notifier path: NKEY (fresh keys), NSUB on another connection, SEND with the notification
/// flag → NMSG whose metadata decrypts to the delivered message's id; NDEL → DELD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = start_relay(dir.path()).await;
    let (rcv, mut rcv_ev) = connect(&relay).await;
    let (ntf, mut ntf_ev) = connect(&relay).await;
    let (snd, _s) = connect(&relay).await;
    // Credentials inside NEW (v17) and by NKEY.
    let q = rcv
        .create_queue(NewQueueParams {
            notifier: Some(AuthAlgorithm::Ed25519),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        q.notifier.is_some(),
        "v17+ relay grants notifier creds in NEW"
    );
    let creds = rcv
        .enable_notifications(&q.rcv_id, &q.rcv_key, AuthAlgorithm::Ed25519)
        .await
        .unwrap();
    ntf.subscribe_notifier(&creds.notifier_id, &creds.notifier_key)
        .await
        .unwrap();
    snd.send(&q.snd_id, None, true, b"ping me").await.unwrap();
    let m = next_msg(&mut rcv_ev, &q.rcv_id).await;
    let ev = tokio::time::timeout(WAIT, ntf_ev.recv())
        .await
        .unwrap()
        .unwrap();
    let ServerEvent::Notification {
        notifier_id,
        nonce,
        enc_meta,
    } = ev
    else {
        panic!("{ev:?}")
    };
    assert_eq!(notifier_id, creds.notifier_id);
    let meta = decrypt_nmsg(&creds.rcv_ntf_dh_secret, &nonce, &enc_meta).unwrap();
    assert_eq!(meta.msg_id, m.msg_id);
    rcv.disable_notifications(&q.rcv_id, &q.rcv_key)
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(30), ntf_ev.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&ev, ServerEvent::Deleted { entity_id } if *entity_id == creds.notifier_id),
        "{ev:?}"
    );
    for c in [rcv, ntf, snd] {
        c.close().await;
    }
    relay.stop().await.unwrap();
}

/// The relay stops for 5 s and restarts on the same port with the same store: the pool
/// reconnects (backoff), resubscribes, and receives the message sent right after the
/// restart, before the pool was back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_restart_resubscribes() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = start_relay(dir.path()).await;
    let server = address(&relay);
    let port = relay.addr.port();
    let (pool, mut events) = SmpClientPool::tls(PoolConfig {
        backoff: BackoffConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(4),
            multiplier: 2.0,
            jitter: 0.2,
        },
        ..Default::default()
    })
    .unwrap();
    let c = pool.client(&server).await.unwrap();
    let q = c
        .create_queue(NewQueueParams {
            subscribe: false,
            ..Default::default()
        })
        .await
        .unwrap();
    let key = Arc::new(q.rcv_key.clone());
    pool.subscribe(&server, &q.rcv_id, key).await.unwrap();
    // The same pool also holds a notifier subscription (as an NTF server would).
    let creds = c
        .enable_notifications(&q.rcv_id, &q.rcv_key, AuthAlgorithm::Ed25519)
        .await
        .unwrap();
    pool.subscribe_notifier(
        &server,
        &creds.notifier_id,
        Arc::new(creds.notifier_key.clone()),
    )
    .await
    .unwrap();
    assert_eq!(pool.subscription_count(&server), (1, 1));
    let (snd, _s) = connect(&relay).await;
    snd.send(&q.snd_id, None, false, b"before").await.unwrap();
    snd.close().await;
    let m = wait_pool_msg(&mut events, &q.rcv_id).await;
    assert_eq!(body_of(&m, &q), b"before");
    c.ack(&q.rcv_id, &q.rcv_key, &m.msg_id).await.unwrap();

    relay.stop().await.unwrap();
    let stopped = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    relay.restart().await.unwrap();
    assert_eq!(relay.addr.port(), port);
    // Sent while the pool is still backing off.
    let (snd, _s) = connect(&relay).await;
    snd.send(&q.snd_id, None, true, b"meanwhile").await.unwrap();
    snd.close().await;

    // The MSG that follows the SOK may come before or after the Resubscribed report.
    let mut saw = (false, false, false);
    let mut got = None;
    let mut nmsg = None;
    while got.is_none() || !saw.2 || nmsg.is_none() {
        let e = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "pool did not recover: {saw:?} msg {} nmsg {}",
                    got.is_some(),
                    nmsg.is_some()
                )
            })
            .unwrap();
        match e {
            PoolEvent::Disconnected { .. } => saw.0 = true,
            PoolEvent::Connected { .. } => saw.1 = true,
            PoolEvent::Resubscribed {
                recipients,
                notifiers,
                failed,
                ..
            } => {
                assert_eq!((recipients, notifiers), (1, 1));
                assert!(failed.is_empty(), "{failed:?}");
                saw.2 = true;
            }
            PoolEvent::Event {
                event: ServerEvent::Message { rcv_id, msg },
                ..
            } if rcv_id == q.rcv_id => {
                assert!(got.is_none(), "message delivered twice");
                got = Some(msg);
            }
            PoolEvent::Event {
                event:
                    ServerEvent::Notification {
                        notifier_id,
                        nonce,
                        enc_meta,
                    },
                ..
            } if notifier_id == creds.notifier_id => {
                nmsg = Some(decrypt_nmsg(&creds.rcv_ntf_dh_secret, &nonce, &enc_meta).unwrap());
            }
            PoolEvent::ConnectFailed { retry_in, .. } => assert!(retry_in.is_some()),
            e => panic!("unexpected {e:?}"),
        }
    }
    let m = got.unwrap();
    assert_eq!(saw, (true, true, true));
    assert!(stopped.elapsed() >= Duration::from_secs(5));
    assert_eq!(body_of(&m, &q), b"meanwhile");
    assert_eq!(nmsg.unwrap().msg_id, m.msg_id);
    let c = pool.client(&server).await.unwrap();
    c.ack(&q.rcv_id, &q.rcv_key, &m.msg_id).await.unwrap();
    pool.close().await;
    relay.stop().await.unwrap();
}

async fn wait_pool_msg(events: &mut hush_client::PoolEvents, rcv_id: &[u8]) -> RawMsg {
    loop {
        match tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("no message")
            .unwrap()
        {
            PoolEvent::Event {
                event: ServerEvent::Message { rcv_id: r, msg },
                ..
            } if r == rcv_id => return msg,
            _ => {}
        }
    }
}

/// An address whose fingerprint is not the relay's CA: a clear "unknown CA" error, from a
/// single client and from the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = start_relay(dir.path()).await;
    let mut fp = relay.fingerprint;
    fp[0] ^= 1;
    let wrong = ProtocolServer::parse(&format!(
        "smp://{}@127.0.0.1:{}",
        base64url_encode(&fp),
        relay.addr.port()
    ))
    .unwrap();
    let err = SmpClient::connect(&wrong, ClientConfig::default())
        .await
        .unwrap_err();
    assert!(err.is_unknown_ca(), "{err:?}");
    assert!(err.to_string().contains("unknown CA"), "{err}");
    let (pool, _ev) = SmpClientPool::tls(PoolConfig::default()).unwrap();
    let err = pool.client(&wrong).await.unwrap_err();
    assert!(err.is_unknown_ca(), "{err:?}");
    // The right fingerprint works.
    let c = pool.client(&address(&relay)).await.unwrap();
    c.ping().await.unwrap();
    pool.close().await;
    relay.stop().await.unwrap();
}

/// A relay with `create_password`: NEW without it (or with a wrong one) is refused with
/// AUTH, with it succeeds; the password comes from the `smp://fp:password@host` address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_password() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path()).unwrap();
    let mut cfg = loopback_config(&paths, 0).unwrap();
    let password = hush_proto::address::BasicAuth::new("s3cret-pass").unwrap();
    cfg.auth.create_password = Some(smp_server::config::BasicAuth::new("s3cret-pass").unwrap());
    let mut relay = TestRelay::start(cfg, options()).await.unwrap();
    let with_auth = hush_proto::address::ServerWithAuth::parse(&format!(
        "smp://{}:s3cret-pass@127.0.0.1:{}",
        base64url_encode(&relay.fingerprint),
        relay.addr.port()
    ))
    .unwrap();
    assert_eq!(with_auth.auth.as_ref(), Some(&password));
    let (c, _ev) = SmpClient::connect(&with_auth.server, ClientConfig::default())
        .await
        .unwrap();
    for bad in [
        None,
        Some(hush_proto::address::BasicAuth::new("wrong").unwrap()),
    ] {
        let r = c
            .create_queue(NewQueueParams {
                basic_auth: bad,
                ..Default::default()
            })
            .await;
        assert!(matches!(r, Err(ClientError::Smp(ErrorType::Auth))), "{r:?}");
    }
    let q = c
        .create_queue(NewQueueParams {
            basic_auth: with_auth.auth.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(q.rcv_id.len(), 24);
    c.close().await;
    relay.stop().await.unwrap();
}
