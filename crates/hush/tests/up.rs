//! `hush up` as a real process: the printed relay address works (create queue, send, receive
//! with hush-client), and SIGTERM stops it gracefully with exit code 0.

mod common;

use std::time::Duration;

use common::start_up;
use hush_client::{ClientConfig, NewQueueParams, RcvMsgBody, ServerEvent, SmpClient};
use hush_proto::address::ProtocolServer;

#[test]
fn up_serves_the_printed_relay_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (up, relay) = start_up(dir.path());
    // every address is printed
    for prefix in [
        "ntf-server:",
        "push-server:",
        "apns-sink:",
        "apns-sink read:",
    ] {
        assert!(
            up.seen.iter().any(|l| l.starts_with(prefix)),
            "missing {prefix} in {:?}",
            up.seen
        );
    }
    assert!(relay.starts_with("smp://"), "{relay}");
    let addresses: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("up/addresses.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(addresses["smp"].as_str(), Some(relay.as_str()));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let server = ProtocolServer::parse(&relay).unwrap();
        let (client, mut events) = SmpClient::connect(&server, ClientConfig::default())
            .await
            .unwrap();
        let q = client
            .create_queue(NewQueueParams::default())
            .await
            .unwrap();
        client
            .send(&q.snd_id, None, true, b"hello hush up")
            .await
            .unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        let ServerEvent::Message { msg, .. } = ev else {
            panic!("expected MSG, got {ev:?}");
        };
        let m = msg.decrypt(&q.rcv_dh_secret).unwrap();
        let RcvMsgBody::Message { body, .. } = &m.body else {
            panic!("expected a message body");
        };
        assert_eq!(body.as_slice(), b"hello hush up");
        client.ack(&q.rcv_id, &q.rcv_key, &m.msg_id).await.unwrap();
        client.close().await;
    });

    up.signal(libc::SIGTERM);
    let (code, lines) = up.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{lines:?}");
    assert!(lines.iter().any(|l| l == "stopped"), "{lines:?}");

    // Second start reuses the initialized data directory (same relay identity).
    let (up2, relay2) = start_up(dir.path());
    let fp = |s: &str| s.split('@').next().unwrap().to_string();
    assert_eq!(fp(&relay), fp(&relay2));
    assert!(!up2.seen.iter().any(|l| l.starts_with("initialized")));
    up2.signal(libc::SIGTERM);
    let (code, _) = up2.finish(Duration::from_secs(20));
    assert_eq!(code, 0);
}
