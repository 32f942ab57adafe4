//! The network gateway: TLS with the pinned certificate, bearer credentials, device registration,
//! submit + feedback over the wire, metrics endpoint.

mod common;

use std::time::Duration;

use apns_sink::FailureMode;
use common::*;
use push_server::config::Config;
use push_server::{
    ApnsEnv, DeviceAddress, FeedbackReason, GatewayError, InvalidReason, PushGateway, PushTarget,
    SubmitOutcome,
};

#[tokio::test]
async fn remote_gateway_end_to_end() {
    let env = sink().await;
    let (dir, fp, cred) = push_server_dir(&env, 50);
    let (cfg, warnings) = Config::load(dir.path()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let running = push_server::cli::start(&cfg).await.unwrap();
    let gw = remote(running.addr, fp, Some(cred.clone()));

    // Submit over the network; delivered to the sink with the job id as apns-id.
    let t = token(1);
    let j = check_job(&t);
    assert_eq!(gw.submit(j.clone()).await.unwrap(), SubmitOutcome::Queued);
    assert_eq!(
        gw.submit(j.clone()).await.unwrap(),
        SubmitOutcome::Duplicate
    );
    assert!(env.sink.wait_for(1, Duration::from_secs(5)).await);
    assert_eq!(env.sink.received()[0].apns_id, j.job_id.to_uuid());

    // Feedback over the network.
    let bad = token(2);
    env.sink.set_failure(&bad, FailureMode::Unregistered, None);
    let jb = check_job(&bad);
    gw.submit(jb.clone()).await.unwrap();
    let mut fb = Vec::new();
    for _ in 0..100 {
        fb = gw.feedback(0, 10).await.unwrap();
        if !fb.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(fb.len(), 1);
    assert_eq!(fb[0].job_id, jb.job_id);
    assert_eq!(
        fb[0].reason,
        FeedbackReason::InvalidToken(InvalidReason::Unregistered)
    );
    gw.ack_feedback(fb[0].seq).await.unwrap();
    assert!(gw.feedback(0, 10).await.unwrap().is_empty());

    // Split mode over the network: a device (no credential) registers; the ntf-server pushes to
    // the handle; it arrives for the device's token.
    let device = remote(running.addr, fp, None);
    let dt = token(3);
    let h = device
        .register(DeviceAddress::Apns {
            env: ApnsEnv::Test,
            token: dt.clone(),
        })
        .await
        .unwrap();
    assert!(!h.as_str().contains(&dt));
    let mut jh = check_job("00");
    jh.target = PushTarget::Handle(h);
    gw.submit(jh.clone()).await.unwrap();
    assert!(env.sink.wait_for(2, Duration::from_secs(5)).await);
    assert_eq!(env.sink.received_for(&dt)[0].apns_id, jh.job_id.to_uuid());

    // A device cannot submit or read feedback.
    assert!(matches!(
        device.submit(check_job(&t)).await,
        Err(GatewayError::Auth)
    ));
    // A wrong credential is refused.
    let wrong = remote(running.addr, fp, Some("not-the-credential".into()));
    assert!(matches!(
        wrong.submit(check_job(&t)).await,
        Err(GatewayError::Auth)
    ));
    // A wrong pin is refused at TLS.
    let mut other = fp;
    other[0] ^= 1;
    let mitm = remote(running.addr, other, Some(cred.clone()));
    assert!(matches!(
        mitm.ping().await,
        Err(GatewayError::Unavailable(_))
    ));
    // Invalid jobs come back as typed errors.
    let mut inv = check_job("zz");
    inv.priority = Some(3);
    assert!(matches!(
        gw.submit(inv).await,
        Err(GatewayError::InvalidJob(_))
    ));

    // Metrics endpoint.
    let maddr = running.metrics_addr.unwrap();
    let text = http_get(maddr, "/metrics").await;
    assert!(
        text.contains(r#"push_sent_total{provider="apns_test"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"push_failed_total{provider="apns_test",reason="invalid_unregistered"} 1"#),
        "{text}"
    );
    assert!(text.contains("push_handles_registered_total 1"), "{text}");
    running.stop().await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn sink_read_api_serves_json_lines_and_failure_modes() {
    let env = sink().await;
    let p = env.provider();
    let read = env.sink.read_addr.unwrap();
    // Set a failure through the HTTP API.
    let t = token(5);
    let body = format!(r#"{{"token":"{t}","mode":"bad_device_token","times":1}}"#);
    let resp = http_req(read, "POST", "/failures", &body).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let a = DeviceAddress::Apns {
        env: ApnsEnv::Test,
        token: t.clone(),
    };
    let d = |id| push_server::provider::Delivery {
        job_id: id,
        kind: push_server::PushKind::Other,
        address: &a,
        payload: br#"{"aps":{"alert":"x"}}"#,
        push_type: push_server::PushType::Alert,
        priority: None,
        expires_at: None,
        collapse_id: Some("c1"),
    };
    use push_server::provider::Provider as _;
    assert!(p.send(d(push_server::JobId::random())).await.is_err());
    let id = push_server::JobId::random();
    p.send(d(id)).await.unwrap();
    // Long-poll read: returns the record with seq > 0.
    let resp = http_req(read, "GET", "/received?after=0&wait_ms=1000", "").await;
    let body = resp.split("\r\n\r\n").nth(1).unwrap();
    let line = body.lines().find(|l| l.starts_with('{')).unwrap();
    let rec: apns_sink::Received = serde_json::from_str(line).unwrap();
    assert_eq!(rec.apns_id, id.to_uuid());
    assert_eq!(rec.collapse_id.as_deref(), Some("c1"));
    assert_eq!(rec.token, t);
    let att = http_req(read, "GET", "/attempts", "").await;
    assert!(att.contains("BadDeviceToken"));
    // Nothing newer: the long-poll times out empty.
    let resp = http_req(read, "GET", "/received?after=1&wait_ms=100", "").await;
    assert!(!resp.contains("apns_id"));
}

async fn http_req(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submits_share_the_connection_pool() {
    let env = sink().await;
    let (dir, fp, cred) = push_server_dir(&env, 50);
    let (cfg, _) = Config::load(dir.path()).unwrap();
    let running = push_server::cli::start(&cfg).await.unwrap();
    let gw = std::sync::Arc::new(remote(running.addr, fp, Some(cred)));
    let started = std::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..16u8 {
        let gw = gw.clone();
        set.spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25u8 {
                let j = check_job(&token(w.wrapping_mul(31).wrapping_add(i)));
                assert_eq!(gw.submit(j.clone()).await.unwrap(), SubmitOutcome::Queued);
                ids.push(j.job_id);
            }
            ids
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.unwrap());
    }
    let submitted = started.elapsed();
    assert_eq!(all.len(), 400);
    assert!(env.sink.wait_for(400, Duration::from_secs(30)).await);
    let got: std::collections::HashSet<String> =
        env.sink.received().into_iter().map(|r| r.apns_id).collect();
    assert!(all.iter().all(|id| got.contains(&id.to_uuid())));
    eprintln!(
        "400 remote submits (16 concurrent callers, pooled connections) in {submitted:?}, delivered in {:?}",
        started.elapsed()
    );
    running.stop().await;
}
