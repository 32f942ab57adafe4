//! Older clients (SMP v6 without ALPN, v10, v15, v17, and every version boundary v6 … v18 with each
//! `NEW` request shape and `MSG` flags): version-dependent encodings of the relay's
//! answers (`OK` for `SUB` below v16, `END` for `DELD` below v10, `IDS` forms, body limits, no
//! block encryption below v11).

mod common;

use common::*;
use hush_proto::error::ErrorType;
use hush_proto::smp::{BrokerMsg, Command, QueueMode};
use hush_proto::version::VersionRange;
use hush_transport::{ClientConfig, Protocol, TransportClient};

async fn connect(server: &TestServer, max: u16, alpn: bool) -> TestClient {
    let mut config = ClientConfig::smp();
    config.versions = VersionRange::new(6, max).unwrap();
    if !alpn {
        config.alpn.clear();
    }
    let conn = TransportClient::new(Protocol::Smp, config, None)
        .unwrap()
        .connect_addr(server.addr, &server.key_hash)
        .await
        .unwrap();
    TestClient::from_conn(conn)
}

#[tokio::test]
async fn older_versions() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let server = TestServer::start(test_config(&paths)).await;
    for (max, alpn, expect) in [
        (18, false, 6),
        (10, true, 10),
        (15, true, 15),
        (17, true, 17),
    ] {
        let mut r = connect(&server, max, alpn).await;
        let mut s = connect(&server, max, alpn).await;
        assert_eq!(r.version(), expect);
        assert_eq!(r.conn.info().encrypted, expect >= 11);
        let mode = if expect >= 9 {
            Some(QueueMode::Messaging)
        } else {
            None
        };
        let q = new_queue_with(
            &mut r,
            AuthKey::ed25519(),
            NewOpts {
                mode,
                subscribe: false,
                ..Default::default()
            },
        )
        .await;
        let limit = hush_proto::version::smp_version::max_send_body(expect);
        let body = vec![7u8; limit];
        assert_eq!(
            s.cmd(None, &q.snd_id, send_cmd(&body, false)).await,
            BrokerMsg::Ok
        );
        assert_err(
            &s.cmd(None, &q.snd_id, send_cmd(&vec![7u8; limit + 1], false))
                .await,
            ErrorType::LargeMsg,
        );
        let corr = random_corr();
        r.send(Some(&q.rcv_key), &corr, &q.rcv_id, &Command::Sub)
            .await;
        let sub_reply = if expect >= 16 {
            BrokerMsg::Sok(None)
        } else {
            BrokerMsg::Ok
        };
        assert_eq!(r.response_to(&corr).await, sub_reply, "v{expect}");
        let (id, b) = q.body(&r.event().await.1);
        assert_eq!(b, body);
        assert_eq!(
            r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id)).await,
            BrokerMsg::Ok
        );
        // DEL from another connection: DELD (v≥10) / END
        let mut other = connect(&server, max, alpn).await;
        assert_eq!(
            other.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Del).await,
            BrokerMsg::Ok
        );
        let (e, m) = r.event().await;
        assert_eq!(e, q.rcv_id);
        assert_eq!(
            m,
            if expect >= 10 {
                BrokerMsg::Deld
            } else {
                BrokerMsg::End
            }
        );
    }
    server.stop().await;
}

/// One client per version boundary (v6 … v18), each `NEW` request shape the version can carry —
/// create only / create and subscribe (every version), queue mode messaging / contact (v9+),
/// an invitation link with its data (v15+), notifier credentials in `NEW` (v17+) — and `MSG`
/// with and without the notification flag: what the relay answers must decode at that version
/// and carry what was asked.
#[tokio::test]
async fn every_version_boundary_new_shapes_and_msg_flags() {
    use hush_proto::smp::{NewNtfCreds, NewQueueReq, QueueReqData, SubscriptionMode};
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let server = TestServer::start(test_config(&paths)).await;
    for v in [6u16, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18] {
        // Below v7 there is no ALPN-negotiated range: a v6 client offers only v6.
        let mut r = connect(&server, v, v > 6).await;
        let mut s = connect(&server, v, v > 6).await;
        assert_eq!(r.version(), v, "negotiated");
        let mut shapes: Vec<(&str, SubscriptionMode, Option<QueueReqData>, bool)> = vec![
            ("create only", SubscriptionMode::OnlyCreate, None, false),
            (
                "create + subscribe",
                SubscriptionMode::Subscribe,
                None,
                false,
            ),
        ];
        if v >= 9 {
            shapes.push((
                "messaging mode",
                SubscriptionMode::Subscribe,
                Some(QueueReqData::Messaging(None)),
                false,
            ));
            shapes.push((
                "contact mode",
                SubscriptionMode::OnlyCreate,
                Some(QueueReqData::Contact(None)),
                false,
            ));
        }
        if v >= 15 {
            // The sender id of a link is derived from the corrId: filled in below.
            shapes.push((
                "invitation link",
                SubscriptionMode::OnlyCreate,
                Some(QueueReqData::Messaging(Some((
                    ss(&[0; 24]),
                    link_data(b"fixed", b"user"),
                )))),
                false,
            ));
        }
        if v >= 17 {
            shapes.push((
                "notifier credentials",
                SubscriptionMode::Subscribe,
                Some(QueueReqData::Messaging(None)),
                true,
            ));
        }
        for (name, sub_mode, data, with_ntf) in shapes {
            let what = format!("v{v} NEW {name}");
            let key = AuthKey::ed25519();
            let dh = hush_crypto::X25519Secret::generate();
            let ntf_key = AuthKey::ed25519();
            let ntf_dh = hush_crypto::X25519Secret::generate();
            let corr = random_corr();
            let data = data.map(|d| match d {
                QueueReqData::Messaging(Some((_, link))) => QueueReqData::Messaging(Some((
                    ss(&hush_crypto::sender_id_from_corr_id(&corr)),
                    link,
                ))),
                d => d,
            });
            let mode = data.as_ref().map(QueueReqData::mode);
            let cmd = Command::New(NewQueueReq {
                rcv_auth_key: key.public_der(),
                rcv_dh_key: dh_der(&dh),
                basic_auth: None,
                sub_mode,
                queue_req_data: data.clone(),
                ntf_creds: with_ntf.then(|| NewNtfCreds {
                    ntf_auth_key: ntf_key.public_der(),
                    rcv_ntf_dh_key: dh_der(&ntf_dh),
                }),
            });
            r.send(Some(&key), &corr, &[], &cmd).await;
            let BrokerMsg::Ids(ids) = r.response_to(&corr).await else {
                panic!("{what}: no IDS");
            };
            // v9–v14 carry the mode as one flag (sender can secure: messaging, else contact);
            // v15+ as an optional field; below v9 not at all.
            let expect_mode = match v {
                ..9 => None,
                9..15 => Some(mode.unwrap_or(QueueMode::Contact)),
                _ => mode,
            };
            assert_eq!(ids.queue_mode, expect_mode, "{what}: mode");
            assert_eq!(
                ids.server_ntf_creds.is_some(),
                with_ntf,
                "{what}: ntf creds"
            );
            assert_eq!(
                ids.link_id.is_some(),
                matches!(data, Some(QueueReqData::Messaging(Some(_)))),
                "{what}: link id"
            );
            let q = Queue {
                rcv_key: key,
                dh,
                rcv_id: ids.rcv_id.as_bytes().to_vec(),
                snd_id: ids.snd_id.as_bytes().to_vec(),
                ids,
                ntf: None,
            };
            // Two messages: notification flag set, then not.
            for (i, flag) in [(0u8, true), (1, false)] {
                assert_eq!(
                    s.cmd(None, &q.snd_id, send_cmd(&[i; 100], flag)).await,
                    BrokerMsg::Ok,
                    "{what}: SEND"
                );
            }
            if sub_mode == SubscriptionMode::OnlyCreate {
                let corr = random_corr();
                r.send(Some(&q.rcv_key), &corr, &q.rcv_id, &Command::Sub)
                    .await;
                let expect = if v >= 16 {
                    BrokerMsg::Sok(None)
                } else {
                    BrokerMsg::Ok
                };
                assert_eq!(r.response_to(&corr).await, expect, "{what}: SUB");
            }
            let mut next = r.event().await.1;
            for (i, flag) in [(0u8, true), (1, false)] {
                let (id, plain) = q.decrypt(&next);
                let Plain::Msg {
                    notification, body, ..
                } = plain
                else {
                    panic!("{what}: not a message")
                };
                assert_eq!(body, vec![i; 100], "{what}: body {i}");
                assert_eq!(
                    notification, flag,
                    "{what}: notification flag of message {i}"
                );
                next = r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id)).await;
            }
            assert_eq!(next, BrokerMsg::Ok, "{what}: last ACK");
        }
    }
    server.stop().await;
}
