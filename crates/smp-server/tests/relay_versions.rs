//! Older clients (SMP v6 without ALPN, v10, v15, v17): version-dependent encodings of the relay's
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
