//! SmpClient over an in-memory connection, the test playing the relay, with tokio's paused
//! (virtual) clock: correlation, batching, timeouts and late responses, events, ERR mapping,
//! closing, signing and the typed helpers' DH/decryption.

mod common;

use std::time::Duration;

use common::*;
use hush_client::{
    AuthAlgorithm, AuthKey, ClientConfig, ClientError, NewQueueParams, RcvMsgBody, ServerEvent,
};
use hush_crypto::keys::PublicKey;
use hush_crypto::{
    TransmissionAuth, X25519Public, X25519Secret, encrypt_rcv_msg_body, verify_transmission,
};
use hush_proto::encoding::ShortString;
use hush_proto::error::{CommandError, ErrorType};
use hush_proto::smp::{BrokerMsg, Command, PublicKeyDer, QueueIdsKeys, QueueMode};
use hush_proto::transmission::authorized_bytes;
use tokio::time::Instant;

fn cfg() -> ClientConfig {
    ClientConfig::default()
}

fn ss(b: &[u8]) -> ShortString {
    ShortString::new(b.to_vec()).unwrap()
}

/// Three concurrent commands answered in reverse order each get their own response; the relay saw
/// them in one block with distinct 24-byte corrIds.
#[tokio::test(start_paused = true)]
async fn responses_match_by_corr_id() {
    let (c, _ev, mut relay) = client_pair(cfg());
    let (a, b, d) = (c.clone(), c.clone(), c.clone());
    let h = tokio::spawn(async move {
        tokio::join!(
            a.request(&[1], None, &Command::Del),
            b.request(&[2], None, &Command::Del),
            d.request(&[3], None, &Command::Del),
        )
    });
    // Everything queued before the writer ran shares one block.
    let ts = relay.recv_transmissions().await.unwrap();
    assert_eq!(ts.len(), 3);
    let seen: Vec<Seen> = ts.iter().map(|t| parse_client(t)).collect();
    for s in &seen {
        assert_eq!(s.corr_id.len(), 24);
        assert!(s.authorization.is_empty());
    }
    assert_ne!(seen[0].corr_id, seen[1].corr_id);
    // Answer in reverse order, each with a response identifying the request by entity.
    let answers: Vec<Vec<u8>> = seen
        .iter()
        .rev()
        .map(|s| {
            let m = if s.entity_id == [2] {
                BrokerMsg::Err(ErrorType::Auth)
            } else {
                BrokerMsg::Ok
            };
            server_t(&s.corr_id, &s.entity_id, &m)
        })
        .collect();
    relay.send_transmissions(&answers).await.unwrap();
    let (ra, rb, rd) = h.await.unwrap();
    assert_eq!(ra.unwrap(), BrokerMsg::Ok);
    assert!(matches!(rb, Err(ClientError::Smp(ErrorType::Auth))));
    assert_eq!(rd.unwrap(), BrokerMsg::Ok);
    assert_eq!(c.pending_commands(), 0);
}

/// 300 concurrent signed SUBs are batched like the reference: 135 per block at v18
/// (`batching.v18.SUB_per_block`), the remainder first (30, 135, 135).
#[tokio::test(start_paused = true)]
async fn concurrent_subs_share_blocks() {
    let per_block = vector("commands.json", "batching.v18.SUB_per_block")["expected"]["value"]
        .as_u64()
        .unwrap() as usize;
    let (c, _ev, mut relay) = client_pair(cfg());
    let keys: Vec<(Vec<u8>, AuthKey)> = (0..300u32)
        .map(|i| {
            let mut id = vec![0u8; 24];
            id[..4].copy_from_slice(&i.to_be_bytes());
            (id, AuthKey::generate(AuthAlgorithm::Ed25519).unwrap())
        })
        .collect();
    let c2 = c.clone();
    let h = tokio::spawn(async move {
        let refs: Vec<(&[u8], &AuthKey)> = keys.iter().map(|(i, k)| (i.as_slice(), k)).collect();
        c2.subscribe_many(&refs).await
    });
    let mut sizes = Vec::new();
    let mut all = Vec::new();
    while all.len() < 300 {
        let ts = relay.recv_transmissions().await.unwrap();
        sizes.push(ts.len());
        all.extend(ts.iter().map(|t| parse_client(t)));
    }
    assert_eq!(sizes, vec![300 - 2 * per_block, per_block, per_block]);
    for s in &all {
        assert_eq!(s.command, Command::Sub);
        assert_eq!(s.authorization.len(), 64);
    }
    // Answer all in one go (SOK is small).
    for chunk in all.chunks(200) {
        let ans: Vec<Vec<u8>> = chunk
            .iter()
            .map(|s| server_t(&s.corr_id, &s.entity_id, &BrokerMsg::Sok(None)))
            .collect();
        relay.send_transmissions(&ans).await.unwrap();
    }
    let results = h.await.unwrap();
    assert_eq!(results.len(), 300);
    assert!(results.iter().all(|r| r.is_ok()));
}

/// A command times out after `command_timeout` of virtual time; its response arriving later
/// becomes a `LateResponse` event (a late `MSG` a `Message` event); the connection stays up.
#[tokio::test(start_paused = true)]
async fn timeout_then_late_response() {
    let config = ClientConfig {
        command_timeout: Duration::from_secs(10),
        ..cfg()
    };
    let (c, mut ev, mut relay) = client_pair(config);
    let start = Instant::now();
    let c2 = c.clone();
    let h = tokio::spawn(async move {
        let key = AuthKey::generate(AuthAlgorithm::Ed25519).unwrap();
        let r1 = c2.request(b"q1", Some(&key), &Command::Del).await;
        let t1 = Instant::now();
        let r2 = c2
            .request(b"q2", Some(&key), &Command::Ack(ss(&[1; 24])))
            .await;
        (r1, t1, r2)
    });
    let del = parse_client(&relay.recv_transmissions().await.unwrap()[0]);
    let ack = parse_client(&relay.recv_transmissions().await.unwrap()[0]);
    let (r1, t1, r2) = h.await.unwrap();
    assert!(matches!(r1, Err(ClientError::Timeout)));
    assert!(matches!(r2, Err(ClientError::Timeout)));
    let waited = t1 - start;
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "{waited:?}"
    );
    assert_eq!(c.pending_commands(), 0);
    relay
        .send_transmissions(&[
            server_t(&del.corr_id, &del.entity_id, &BrokerMsg::Ok),
            server_t(
                &ack.corr_id,
                &ack.entity_id,
                &BrokerMsg::Msg {
                    msg_id: ss(&[3; 24]),
                    body: vec![4; 100],
                },
            ),
        ])
        .await
        .unwrap();
    match ev.recv().await.unwrap() {
        ServerEvent::LateResponse {
            entity_id,
            command,
            response,
        } => {
            assert_eq!(entity_id, b"q1");
            assert_eq!(command, "DEL");
            assert_eq!(response.unwrap(), BrokerMsg::Ok);
        }
        e => panic!("{e:?}"),
    }
    match ev.recv().await.unwrap() {
        ServerEvent::Message { rcv_id, msg } => {
            assert_eq!(rcv_id, b"q2");
            assert_eq!(msg.msg_id, vec![3; 24]);
        }
        e => panic!("{e:?}"),
    }
    // Still usable.
    let c3 = c.clone();
    let h = tokio::spawn(async move { c3.ping().await });
    let p = parse_client(&relay.recv_transmissions().await.unwrap()[0]);
    relay
        .send_transmissions(&[server_t(&p.corr_id, &[], &BrokerMsg::Pong)])
        .await
        .unwrap();
    h.await.unwrap().unwrap();
}

/// Events with an empty corrId come out tagged with their entity; bad blocks and unknown
/// corrIds are reported, not fatal.
#[tokio::test(start_paused = true)]
async fn server_events() {
    let (_c, mut ev, mut relay) = client_pair(cfg());
    relay
        .send_transmissions(&[server_t(
            &[],
            b"rcv1",
            &BrokerMsg::Msg {
                msg_id: ss(&[1; 24]),
                body: vec![0; 16122],
            },
        )])
        .await
        .unwrap();
    relay
        .send_transmissions(&[
            server_t(&[], b"rcv2", &BrokerMsg::End),
            server_t(&[], b"rcv3", &BrokerMsg::Deld),
            server_t(
                &[],
                b"ntf1",
                &BrokerMsg::NMsg {
                    nonce: [2; 24],
                    enc_meta: ss(&[3; 144]),
                },
            ),
            server_t(&[], &[], &BrokerMsg::Err(ErrorType::Block)),
            server_t(&[9; 24], b"x", &BrokerMsg::Ok),
        ])
        .await
        .unwrap();
    relay.send_block(vec![2, 0, 1, 0]).await.unwrap(); // count 2, one short item
    let mut got = Vec::new();
    for _ in 0..7 {
        got.push(ev.recv().await.unwrap());
    }
    assert!(
        matches!(&got[0], ServerEvent::Message { rcv_id, msg } if rcv_id == b"rcv1" && msg.enc_body.len() == 16122)
    );
    assert!(matches!(&got[1], ServerEvent::End { entity_id } if entity_id == b"rcv2"));
    assert!(matches!(&got[2], ServerEvent::Deleted { entity_id } if entity_id == b"rcv3"));
    assert!(
        matches!(&got[3], ServerEvent::Notification { notifier_id, nonce, enc_meta } if notifier_id == b"ntf1" && *nonce == [2; 24] && enc_meta.len() == 144)
    );
    assert!(matches!(
        &got[4],
        ServerEvent::Error {
            error: ErrorType::Block,
            ..
        }
    ));
    assert!(matches!(&got[5], ServerEvent::Unexpected { tag: "OK", .. }));
    assert!(matches!(&got[6], ServerEvent::Unparsable { .. }));
    for e in &got[..4] {
        assert!(!e.entity_id().is_empty());
    }
}

/// A response with another entity than the command's is an error; a syntax error in the
/// response is a `BadResponse`.
#[tokio::test(start_paused = true)]
async fn wrong_entity_and_bad_response() {
    let (c, _ev, mut relay) = client_pair(cfg());
    let key = AuthKey::generate(AuthAlgorithm::Ed25519).unwrap();
    let c2 = c.clone();
    let k2 = key.clone();
    let h = tokio::spawn(async move {
        let a = c2.subscribe(b"mine", &k2).await;
        let b = c2.subscribe(b"mine2", &k2).await;
        (a, b)
    });
    let s = parse_client(&relay.recv_transmissions().await.unwrap()[0]);
    relay
        .send_transmissions(&[server_t(&s.corr_id, b"other", &BrokerMsg::Sok(None))])
        .await
        .unwrap();
    let s = parse_client(&relay.recv_transmissions().await.unwrap()[0]);
    let mut bad = server_t(&s.corr_id, &s.entity_id, &BrokerMsg::Ok);
    bad.extend_from_slice(b"XX"); // "OKXX": unknown tag
    relay.send_transmissions(&[bad]).await.unwrap();
    let (a, b) = h.await.unwrap();
    assert!(matches!(
        a,
        Err(ClientError::UnexpectedResponse {
            command: "SUB",
            tag: "SOK"
        })
    ));
    assert!(matches!(
        b,
        Err(ClientError::BadResponse(ErrorType::Cmd(
            CommandError::Unknown
        )))
    ));
}

/// When the relay goes away, waiting commands fail with `Closed`, later ones too, and the
/// event stream ends.
#[tokio::test(start_paused = true)]
async fn relay_close_fails_waiters() {
    let (c, mut ev, mut relay) = client_pair(cfg());
    let c2 = c.clone();
    let h = tokio::spawn(async move { c2.ping().await });
    let _ = relay.recv_transmissions().await.unwrap();
    relay.close();
    assert!(matches!(h.await.unwrap(), Err(ClientError::Closed)));
    assert!(ev.recv().await.is_none());
    c.closed().await;
    assert!(c.is_closed());
    assert!(matches!(c.ping().await, Err(ClientError::Closed)));
    assert!(matches!(c.close_reason(), Some(ClientError::Closed)));
}

/// Graceful close: the relay end sees the client's direction end; commands then fail.
#[tokio::test(start_paused = true)]
async fn graceful_close() {
    let (c, _ev, mut relay) = client_pair(cfg());
    c.close().await;
    assert!(relay.recv_block().await.is_none());
    assert!(matches!(c.ping().await, Err(ClientError::Closed)));
}

/// Dropping every clone closes the connection.
#[tokio::test(start_paused = true)]
async fn drop_closes() {
    let (c, mut ev, mut relay) = client_pair(cfg());
    drop(c);
    assert!(relay.recv_block().await.is_none());
    assert!(ev.recv().await.is_none());
}

/// A SEND body too large for any block fails with `LargeMsg` without sending; the
/// connection keeps working.
#[tokio::test(start_paused = true)]
async fn too_large_is_refused() {
    let (c, _ev, mut relay) = client_pair(cfg());
    let r = c.send(b"snd", None, false, &vec![0; 16400]).await;
    assert!(matches!(r, Err(ClientError::LargeMsg)), "{r:?}");
    let c2 = c.clone();
    let h = tokio::spawn(async move { c2.send(b"snd", None, true, b"small").await });
    let s = parse_client(&relay.recv_transmissions().await.unwrap()[0]);
    match &s.command {
        Command::Send { flags, body } => {
            assert!(flags.notification);
            assert_eq!(body, b"small");
        }
        c => panic!("{c:?}"),
    }
    assert!(s.authorization.is_empty());
    relay
        .send_transmissions(&[server_t(&s.corr_id, &s.entity_id, &BrokerMsg::Ok)])
        .await
        .unwrap();
    h.await.unwrap().unwrap();
}

/// `create_queue`: NEW is signed by the recipient key it carries (the relay verifies it), the
/// client derives rcvDhSecret from the relay's IDS key, and a MSG the relay encrypts with its
/// side of the secret decrypts. Repeated for Ed25519, Ed448 and X25519 (authenticator) keys.
#[tokio::test(start_paused = true)]
async fn create_queue_sign_dh_decrypt() {
    for alg in [
        AuthAlgorithm::Ed25519,
        AuthAlgorithm::Ed448,
        AuthAlgorithm::X25519,
    ] {
        let relay_session = X25519Secret::generate();
        let mut s = session();
        s.server_session_key = Some(relay_session.public());
        let session_id = s.session_id.clone();
        let (c, mut ev, mut relay) = client_pair_with(s, cfg());
        let c2 = c.clone();
        let h = tokio::spawn(async move {
            c2.create_queue(NewQueueParams {
                auth: alg,
                notifier: Some(AuthAlgorithm::Ed25519),
                ..Default::default()
            })
            .await
        });
        let seen = parse_client(&relay.recv_transmissions().await.unwrap()[0]);
        let Command::New(req) = &seen.command else {
            panic!("{:?}", seen.command)
        };
        assert!(seen.entity_id.is_empty());
        assert_eq!(req.queue_mode(), Some(QueueMode::Messaging));
        let ntf = req.ntf_creds.clone().expect("v17+ asks for notifier creds");
        // The relay verifies the authorization with the key in NEW.
        let key = PublicKey::from_spki_der(req.rcv_auth_key.as_bytes()).unwrap();
        let cmd = seen.command.encode(VERSION);
        let authorized = authorized_bytes(&session_id, &seen.corr_id, &[], &cmd);
        let auth = TransmissionAuth::parse(&seen.authorization).unwrap();
        assert!(verify_transmission(
            Some(&key),
            auth.as_ref(),
            Some(&relay_session),
            &authorized,
            &seen.corr_id
        ));
        assert!(!verify_transmission(
            Some(&key),
            auth.as_ref(),
            Some(&relay_session),
            b"other bytes",
            &seen.corr_id
        ));
        // IDS with the relay's DH keys.
        let srv_dh = X25519Secret::generate();
        let srv_ntf_dh = X25519Secret::generate();
        let ids = QueueIdsKeys {
            rcv_id: ss(&[1; 24]),
            snd_id: ss(&[2; 24]),
            srv_dh_key: PublicKeyDer::dh_key(srv_dh.public().to_spki_der()).unwrap(),
            queue_mode: Some(QueueMode::Messaging),
            link_id: None,
            service_id: None,
            server_ntf_creds: Some(hush_proto::smp::ServerNtfCreds {
                notifier_id: ss(&[3; 24]),
                srv_ntf_dh_key: PublicKeyDer::dh_key(srv_ntf_dh.public().to_spki_der()).unwrap(),
            }),
        };
        relay
            .send_transmissions(&[server_t(&seen.corr_id, &[], &BrokerMsg::Ids(ids))])
            .await
            .unwrap();
        let q = h.await.unwrap().unwrap();
        assert_eq!(q.rcv_id, vec![1; 24]);
        assert_eq!(q.snd_id, vec![2; 24]);
        assert_eq!(q.rcv_key.algorithm(), alg);
        let n = q.notifier.as_ref().unwrap();
        assert_eq!(n.notifier_id, vec![3; 24]);
        let rcv_dh_pub = X25519Public::from_spki_der(req.rcv_dh_key.as_bytes()).unwrap();
        assert_eq!(srv_dh.dh(&rcv_dh_pub), q.rcv_dh_secret);
        let ntf_pub = X25519Public::from_spki_der(ntf.rcv_ntf_dh_key.as_bytes()).unwrap();
        assert_eq!(srv_ntf_dh.dh(&ntf_pub), n.rcv_ntf_dh_secret);
        // A MSG encrypted by the relay decrypts.
        let plain = RcvMsgBody::Message {
            ts: 1_700_000_000,
            flags: hush_proto::smp::MsgFlags { notification: true },
            body: b"hi".to_vec(),
        };
        let enc = encrypt_rcv_msg_body(&srv_dh.dh(&rcv_dh_pub), &[7; 24], &plain.encode()).unwrap();
        relay
            .send_transmissions(&[server_t(
                &[],
                &q.rcv_id,
                &BrokerMsg::Msg {
                    msg_id: ss(&[7; 24]),
                    body: enc,
                },
            )])
            .await
            .unwrap();
        let ServerEvent::Message { msg, .. } = ev.recv().await.unwrap() else {
            panic!()
        };
        let m = msg.decrypt(&q.rcv_dh_secret).unwrap();
        assert_eq!(m.msg_id, vec![7; 24]);
        assert_eq!(m.body, plain);
    }
}

/// The typed helpers send the right commands with the right keys and map the answers.
#[tokio::test(start_paused = true)]
async fn typed_helpers() {
    let (c, _ev, mut relay) = client_pair(cfg());
    let rk = AuthKey::generate(AuthAlgorithm::Ed25519).unwrap();
    let sk = AuthKey::generate(AuthAlgorithm::Ed25519).unwrap();
    let sk_pub = sk.public_der().unwrap();
    let c2 = c.clone();
    let (rk2, sk2, skp2) = (rk.clone(), sk.clone(), sk_pub.clone());
    let h = tokio::spawn(async move {
        c2.secure_queue(b"r", &rk2, &skp2).await.unwrap();
        c2.secure_sender(b"s", &sk2).await.unwrap();
        c2.send(b"s", Some(&sk2), false, b"body").await.unwrap();
        assert!(c2.get(b"r", &rk2).await.unwrap().is_none());
        let m = c2.ack(b"r", &rk2, &[5; 24]).await.unwrap().unwrap();
        assert_eq!(m.msg_id, vec![6; 24]);
        c2.suspend(b"r", &rk2).await.unwrap();
        assert_eq!(c2.queue_info(b"r", &rk2).await.unwrap(), "{\"qiSize\":0}");
        let n = c2
            .enable_notifications(b"r", &rk2, AuthAlgorithm::Ed25519)
            .await
            .unwrap();
        c2.subscribe_notifier(&n.notifier_id, &n.notifier_key)
            .await
            .unwrap();
        c2.disable_notifications(b"r", &rk2).await.unwrap();
        c2.delete(b"r", &rk2).await.unwrap();
        c2.ping().await.unwrap();
        // An unexpected tag for the command is an error.
        assert!(matches!(
            c2.delete(b"r", &rk2).await,
            Err(ClientError::UnexpectedResponse {
                command: "DEL",
                tag: "SOK"
            })
        ));
    });
    let mut tags = Vec::new();
    loop {
        let Some(ts) = relay.recv_transmissions().await else {
            break;
        };
        let s = parse_client(&ts[0]);
        tags.push(s.command.tag());
        let answer = match &s.command {
            Command::Key(k) => {
                assert_eq!(k, &sk_pub);
                assert_eq!(s.entity_id, b"r");
                BrokerMsg::Ok
            }
            Command::SKey(k) => {
                assert_eq!(k, &sk_pub);
                assert_eq!(s.entity_id, b"s");
                BrokerMsg::Ok
            }
            Command::Send { .. } => {
                assert_eq!(s.authorization.len(), 64);
                BrokerMsg::Ok
            }
            Command::Get => BrokerMsg::Ok,
            Command::Ack(id) => {
                assert_eq!(id.as_bytes(), &[5; 24]);
                BrokerMsg::Msg {
                    msg_id: ss(&[6; 24]),
                    body: vec![1; 10],
                }
            }
            Command::Que => BrokerMsg::Info(b"{\"qiSize\":0}".to_vec()),
            Command::NKey { .. } => BrokerMsg::Nid {
                notifier_id: ss(&[8; 24]),
                srv_ntf_dh_key: PublicKeyDer::dh_key(
                    X25519Secret::generate().public().to_spki_der(),
                )
                .unwrap(),
            },
            Command::NSub => {
                assert_eq!(s.entity_id, vec![8; 24]);
                BrokerMsg::Sok(None)
            }
            Command::Del if tags.iter().filter(|t| **t == "DEL").count() == 2 => {
                BrokerMsg::Sok(None)
            }
            _ => default_answer(&s).unwrap(),
        };
        relay
            .send_transmissions(&[server_t(&s.corr_id, &s.entity_id, &answer)])
            .await
            .unwrap();
        if tags.len() == 13 {
            break;
        }
    }
    h.await.unwrap();
    assert_eq!(
        tags,
        vec![
            "KEY", "SKEY", "SEND", "GET", "ACK", "OFF", "QUE", "NKEY", "NSUB", "NDEL", "DEL",
            "PING", "DEL"
        ]
    );
}

/// A caller that gives up (drops the request future) does not lose the answer: a `MSG`
/// answering its `ACK` comes out as a `Message` event, and nothing stays pending.
#[tokio::test(start_paused = true)]
async fn dropped_request_answer_becomes_event() {
    let (c, mut ev, mut relay) = client_pair(cfg());
    let key = AuthKey::generate(AuthAlgorithm::Ed25519).unwrap();
    let c2 = c.clone();
    let h = tokio::spawn(async move {
        // Gives up after 1 s, well before the 10 s command timeout.
        tokio::time::timeout(Duration::from_secs(1), c2.ack(b"q", &key, &[1; 24])).await
    });
    let s = parse_client(&relay.recv_transmissions().await.unwrap()[0]);
    assert!(h.await.unwrap().is_err());
    assert_eq!(c.pending_commands(), 0);
    relay
        .send_transmissions(&[server_t(
            &s.corr_id,
            &s.entity_id,
            &BrokerMsg::Msg {
                msg_id: ss(&[2; 24]),
                body: vec![0; 10],
            },
        )])
        .await
        .unwrap();
    match ev.recv().await.unwrap() {
        ServerEvent::Message { rcv_id, msg } => {
            assert_eq!(rcv_id, b"q");
            assert_eq!(msg.msg_id, vec![2; 24]);
        }
        e => panic!("{e:?}"),
    }
}

/// A per-call timeout overrides `command_timeout`.
#[tokio::test(start_paused = true)]
async fn per_call_timeout() {
    let (c, _ev, mut relay) = client_pair(cfg());
    let start = Instant::now();
    let c2 = c.clone();
    let h = tokio::spawn(async move {
        c2.request_batch_timeout(
            &[hush_client::Request {
                entity_id: &[],
                key: None,
                command: &Command::Ping,
            }],
            Duration::from_secs(3),
        )
        .await
    });
    let _ = relay.recv_transmissions().await.unwrap();
    let r = h.await.unwrap();
    assert!(matches!(r[..], [Err(ClientError::Timeout)]));
    let waited = Instant::now() - start;
    assert!(waited >= Duration::from_secs(3) && waited < Duration::from_secs(4));
}
