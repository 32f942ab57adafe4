//! The dispatcher with the outbox and the APNs provider against apns-sink: reactions to every
//! error reply (invalid reported, refresh + retry, backoff + retry), dedup, expiry, split mode,
//! metrics.

mod common;

use std::sync::Arc;
use std::time::Duration;

use apns_sink::FailureMode;
use common::*;
use push_server::metrics::Metrics;
use push_server::outbox::Outbox;
use push_server::provider::Providers;
use push_server::service::{PushService, ServiceConfig};
use push_server::{
    ApnsEnv, DeviceAddress, FeedbackReason, HandleKey, InProcessGateway, InvalidReason, JobId,
    PushGateway, PushHandle, PushJob, PushKind, PushTarget, PushType, SubmitOutcome,
};
use tokio::sync::watch;

const BODY: &[u8] = br#"{"aps":{"content-available":1},"notificationData":{"checkMessages":true}}"#;

struct Svc {
    env: Env,
    service: PushService,
    gw: InProcessGateway,
    key: HandleKey,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn service(retry_base_ms: u64) -> Svc {
    service_on(sink().await, retry_base_ms)
}

fn service_on(env: Env, retry_base_ms: u64) -> Svc {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&dir.path().join("outbox.sqlite"), true).unwrap();
    let providers = Providers::new().with_apns(ApnsEnv::Test, env.provider());
    let key = HandleKey::generate();
    let cfg = ServiceConfig {
        retry_base: Duration::from_millis(retry_base_ms),
        retry_max: Duration::from_secs(2),
        poll_interval: Duration::from_millis(200),
        ..ServiceConfig::default()
    };
    let service = PushService::new(outbox, providers, key.clone(), Metrics::new(), cfg);
    let (tx, rx) = watch::channel(false);
    service.spawn_dispatcher(rx);
    let gw = InProcessGateway::new(service.clone(), "ntf1");
    Svc {
        env,
        service,
        gw,
        key,
        _stop: tx,
        _dir: dir,
    }
}

fn job(target: PushTarget) -> PushJob {
    PushJob {
        job_id: JobId::random(),
        target,
        kind: PushKind::CheckMessages,
        payload: BODY.to_vec(),
        push_type: PushType::Background,
        priority: Some(5),
        expires_at: None,
        collapse_id: None,
        report_delivery: false,
    }
}

fn device(t: &str) -> PushTarget {
    PushTarget::Device(DeviceAddress::Apns {
        env: ApnsEnv::Test,
        token: t.into(),
    })
}

async fn wait_feedback(gw: &InProcessGateway, n: usize) -> Vec<push_server::FeedbackEvent> {
    for _ in 0..200 {
        let f = gw.feedback(0, 100).await.unwrap();
        if f.len() >= n {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    gw.feedback(0, 100).await.unwrap()
}

#[tokio::test]
async fn reactions_to_every_apns_error() {
    let s = service(100).await;
    let sink = &s.env.sink;
    let cases = [
        (FailureMode::BadDeviceToken, None),
        (FailureMode::DeviceTokenNotForTopic, None),
        (FailureMode::Unregistered, None),
        (FailureMode::ExpiredToken, None),
        (FailureMode::TooManyRequests, Some(2)),
        (FailureMode::InternalServerError, Some(1)),
        (FailureMode::ServiceUnavailable, Some(2)),
        (FailureMode::ExpiredProviderToken, Some(1)),
    ];
    let mut jobs = Vec::new();
    for (i, (mode, times)) in cases.iter().enumerate() {
        let t = token(i as u8 + 1);
        sink.set_failure(&t, *mode, *times);
        let j = job(device(&t));
        assert_eq!(s.gw.submit(j.clone()).await.unwrap(), SubmitOutcome::Queued);
        jobs.push((t, j, *mode));
    }
    // 4 retried-and-delivered pushes.
    assert!(
        sink.wait_for(4, Duration::from_secs(20)).await,
        "retried pushes delivered"
    );
    let fb = wait_feedback(&s.gw, 4).await;
    assert_eq!(fb.len(), 4, "{fb:?}");
    for (t, j, mode) in &jobs {
        let got = sink.received_for(t);
        let mut att = sink.attempts_for(t);
        if *mode != FailureMode::ExpiredProviderToken {
            // The provider token is shared by all pushes: while it is marked expired, other
            // tokens' requests get 403 too (then refresh and retry at once). Not their own reply.
            att.retain(|a| a.reason.as_deref() != Some("ExpiredProviderToken"));
        }
        let ev = fb.iter().find(|e| e.job_id == j.job_id);
        match mode {
            FailureMode::BadDeviceToken
            | FailureMode::DeviceTokenNotForTopic
            | FailureMode::Unregistered
            | FailureMode::ExpiredToken => {
                let want = match mode {
                    FailureMode::BadDeviceToken => InvalidReason::Bad,
                    FailureMode::DeviceTokenNotForTopic => InvalidReason::Topic,
                    FailureMode::Unregistered => InvalidReason::Unregistered,
                    _ => InvalidReason::Expired,
                };
                let ev = ev.unwrap_or_else(|| panic!("{mode:?}: feedback"));
                assert_eq!(ev.reason, FeedbackReason::InvalidToken(want));
                assert_eq!(
                    ev.target, j.target,
                    "feedback names the target as submitted"
                );
                assert!(got.is_empty());
                assert_eq!(att.len(), 1, "{mode:?}: invalid tokens are not retried");
            }
            FailureMode::ExpiredProviderToken => {
                assert!(ev.is_none());
                assert_eq!(got.len(), 1);
                assert_eq!(
                    att.len(),
                    2,
                    "403 then 200 right away (refresh, not backoff)"
                );
                assert!(att[1].at_ms - att[0].at_ms < 50 + 1000);
            }
            _ => {
                let fails = match mode {
                    FailureMode::TooManyRequests | FailureMode::ServiceUnavailable => 2,
                    _ => 1,
                };
                assert!(ev.is_none(), "{mode:?}");
                assert_eq!(got.len(), 1, "{mode:?}: delivered once");
                assert_eq!(got[0].apns_id, j.job_id.to_uuid());
                assert_eq!(att.len(), fails + 1, "{mode:?}");
                // Backoff: attempt n waits at least base·2^(n-1)/2 (jitter keeps ≥ half).
                for k in 1..att.len() {
                    let gap = att[k].at_ms - att[k - 1].at_ms;
                    let min = 100u64 * (1 << (k - 1)) / 2;
                    assert!(gap >= min, "{mode:?}: gap {gap} ms < {min} ms");
                }
            }
        }
    }
    // Metrics: failures by reason, retries, sent (wait for the dispatcher to finish its books).
    let mut m = String::new();
    for _ in 0..100 {
        m = s.service.metrics().encode();
        if m.contains("push_outbox_length 0")
            && m.contains(r#"push_sent_total{provider="apns_test"} 4"#)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        m.contains(r#"push_failed_total{provider="apns_test",reason="invalid_bad"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"push_failed_total{provider="apns_test",reason="invalid_unregistered"} 1"#)
    );
    assert!(
        m.contains(r#"push_retries_total{provider="apns_test",reason="rate_limited"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"push_retries_total{provider="apns_test",reason="unavailable"} 3"#),
        "{m}"
    );
    assert!(
        m.contains(r#"push_sent_total{provider="apns_test"} 4"#),
        "{m}"
    );
    assert!(m.contains("push_outbox_length 0"), "{m}");
    // Feedback ack.
    let last = fb.iter().map(|e| e.seq).max().unwrap();
    s.gw.ack_feedback(last).await.unwrap();
    assert!(s.gw.feedback(0, 100).await.unwrap().is_empty());
    assert_eq!(s.service.outbox().len().await.unwrap(), 0);
}

#[tokio::test]
async fn a_job_id_accepted_twice_is_delivered_once() {
    let s = service(50).await;
    let t = token(42);
    let j = job(device(&t));
    assert_eq!(s.gw.submit(j.clone()).await.unwrap(), SubmitOutcome::Queued);
    assert_eq!(
        s.gw.submit(j.clone()).await.unwrap(),
        SubmitOutcome::Duplicate
    );
    assert!(s.env.sink.wait_for(1, Duration::from_secs(5)).await);
    // After delivery the id is still remembered.
    assert_eq!(
        s.gw.submit(j.clone()).await.unwrap(),
        SubmitOutcome::Duplicate
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.env.sink.received_for(&t).len(), 1);
    let m = s.service.metrics().encode();
    assert!(
        m.contains(r#"push_jobs_submitted_total{outcome="duplicate"} 2"#),
        "{m}"
    );
}

#[tokio::test]
async fn an_expired_job_is_dropped_and_reported() {
    let s = service(300).await;
    let t = token(43);
    s.env
        .sink
        .set_failure(&t, FailureMode::ServiceUnavailable, None);
    let mut j = job(device(&t));
    j.expires_at = Some(push_server::unix_now() + 1);
    s.gw.submit(j.clone()).await.unwrap();
    let fb = wait_feedback(&s.gw, 1).await;
    assert_eq!(fb.len(), 1);
    assert_eq!(fb[0].reason, FeedbackReason::Failed("expired".into()));
    assert!(s.env.sink.received_for(&t).is_empty());
    assert_eq!(s.service.outbox().len().await.unwrap(), 0);
    // apns-expiration was sent.
    let _ = s.env.sink.attempts_for(&t);
    // Already-expired jobs are refused at submit.
    let mut old = job(device(&t));
    old.expires_at = Some(1);
    assert!(s.gw.submit(old).await.is_err());
}

#[tokio::test]
async fn invalid_jobs_are_refused() {
    let s = service(50).await;
    let mut j = job(device("NOT-HEX"));
    assert!(s.gw.submit(j.clone()).await.is_err());
    j.target = device(&token(1));
    j.priority = Some(7);
    assert!(s.gw.submit(j.clone()).await.is_err());
    j.priority = Some(5);
    j.payload = vec![b'x'; 20_000];
    assert!(s.gw.submit(j).await.is_err());
}

#[tokio::test]
async fn split_mode_handle_push_arrives_for_the_right_token() {
    let s = service(50).await;
    let t1 = token(0xa1);
    let t2 = token(0xa2);
    let a1 = DeviceAddress::Apns {
        env: ApnsEnv::Test,
        token: t1.clone(),
    };
    let a2 = DeviceAddress::Apns {
        env: ApnsEnv::Test,
        token: t2.clone(),
    };
    let h1 = s.service.register(&a1).await.unwrap();
    let h2 = s.service.register(&a2).await.unwrap();
    let h1b = s.service.register(&a1).await.unwrap();
    assert_ne!(h1, h1b, "re-registration gives an unlinkable handle");
    assert!(h1.as_str().len() <= 255, "fits the NTF shortString");
    let j1 = job(PushTarget::Handle(h1.clone()));
    let j2 = job(PushTarget::Handle(h2.clone()));
    let j1b = job(PushTarget::Handle(h1b.clone()));
    for j in [&j1, &j2, &j1b] {
        s.gw.submit(j.clone()).await.unwrap();
    }
    assert!(s.env.sink.wait_for(3, Duration::from_secs(5)).await);
    let got1 = s.env.sink.received_for(&t1);
    let got2 = s.env.sink.received_for(&t2);
    let ids1: Vec<_> = got1.iter().map(|r| r.apns_id.clone()).collect();
    assert!(ids1.contains(&j1.job_id.to_uuid()) && ids1.contains(&j1b.job_id.to_uuid()));
    assert_eq!(got2.len(), 1);
    assert_eq!(got2[0].apns_id, j2.job_id.to_uuid());

    // A handle sealed under another key (another push-server) or altered is refused and reported.
    let foreign = HandleKey::generate().seal(&a1).unwrap();
    let mut altered = h2.as_str().to_string().into_bytes();
    let i = altered.len() / 2;
    altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
    let altered = PushHandle(String::from_utf8(altered).unwrap());
    let jf = job(PushTarget::Handle(foreign));
    let ja = job(PushTarget::Handle(altered));
    s.gw.submit(jf.clone()).await.unwrap();
    s.gw.submit(ja.clone()).await.unwrap();
    let fb = wait_feedback(&s.gw, 2).await;
    for j in [&jf, &ja] {
        let ev = fb.iter().find(|e| e.job_id == j.job_id).unwrap();
        assert_eq!(ev.reason, FeedbackReason::Failed("bad_handle".into()));
    }
    assert_eq!(s.env.sink.received().len(), 3);
    let _ = &s.key;
}

#[tokio::test]
async fn null_provider_is_accepted_and_never_pushed() {
    let s = service(50).await;
    let j = job(PushTarget::Device(DeviceAddress::Apns {
        env: ApnsEnv::Null,
        token: "test_ntf_token".into(),
    }));
    s.gw.submit(j).await.unwrap();
    for _ in 0..100 {
        if s.service.outbox().len().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.service.outbox().len().await.unwrap(), 0);
    assert!(s.env.sink.attempts().is_empty());
    assert!(s.gw.feedback(0, 10).await.unwrap().is_empty());
    let m = s.service.metrics().encode();
    assert!(
        m.contains(r#"push_sent_total{provider="apns_null"} 1"#),
        "{m}"
    );
    let _ = Arc::new(());
}

#[tokio::test]
async fn delivery_is_reported_when_asked() {
    let s = service(50).await;
    let t = token(77);
    let mut j = job(device(&t));
    j.kind = PushKind::Verification;
    j.report_delivery = true;
    let plain = job(device(&t));
    s.gw.submit(j.clone()).await.unwrap();
    s.gw.submit(plain.clone()).await.unwrap();
    let fb = wait_feedback(&s.gw, 1).await;
    assert!(s.env.sink.wait_for(2, Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fb2 = s.gw.feedback(0, 10).await.unwrap();
    assert_eq!(fb2.len(), 1, "{fb2:?}");
    assert_eq!(fb[0].job_id, j.job_id);
    assert_eq!(fb[0].reason, FeedbackReason::Delivered);
}

#[tokio::test]
async fn memory_sink_provider_and_load_shedding() {
    use push_server::provider::sink::MemorySink;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&dir.path().join("o.sqlite"), false).unwrap();
    let sink = Arc::new(MemorySink::new());
    let providers = Providers::new().with_apns(ApnsEnv::Test, sink.clone());
    let cfg = ServiceConfig {
        retry_base: Duration::from_millis(20),
        poll_interval: Duration::from_millis(100),
        max_pending: 3,
        ..ServiceConfig::default()
    };
    let service = PushService::new(
        outbox,
        providers,
        HandleKey::generate(),
        Metrics::new(),
        cfg,
    );
    let gw = InProcessGateway::new(service.clone(), "ntf");
    // No dispatcher yet: jobs pile up until the limit.
    let t = token(5);
    for _ in 0..3 {
        gw.submit(job(device(&t))).await.unwrap();
    }
    assert!(matches!(
        gw.submit(job(device(&t))).await,
        Err(push_server::GatewayError::Unavailable(_))
    ));
    // Scripted failure then success, through the dispatcher.
    let addr = DeviceAddress::Apns {
        env: ApnsEnv::Test,
        token: t.clone(),
    };
    sink.fail_next(
        &addr,
        [push_server::PushError::Unavailable {
            status: 503,
            reason: String::new(),
        }],
    );
    let (_tx, rx) = watch::channel(false);
    service.spawn_dispatcher(rx);
    assert!(sink.wait_for(3, Duration::from_secs(5)).await);
    assert_eq!(sink.attempts(), 4);
    for _ in 0..100 {
        if gw.submit(job(device(&t))).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sink.wait_for(4, Duration::from_secs(5)).await);
    assert!(
        sink.records()
            .iter()
            .all(|r| r.address == addr && r.payload == BODY)
    );
}

#[tokio::test]
async fn long_webpush_subscriptions_are_stored_and_the_handle_seals_the_id() {
    use push_server::job::WebPushSubscription;
    use push_server::provider::sink::MemorySink;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&dir.path().join("o.sqlite"), true).unwrap();
    let sink = Arc::new(MemorySink::new());
    let providers = Providers::new().with_webpush(sink.clone());
    let key = HandleKey::generate();
    let service = PushService::new(
        outbox.clone(),
        providers,
        key.clone(),
        Metrics::new(),
        ServiceConfig {
            poll_interval: Duration::from_millis(100),
            ..ServiceConfig::default()
        },
    );
    let (_tx, rx) = watch::channel(false);
    service.spawn_dispatcher(rx);
    let gw = InProcessGateway::new(service.clone(), "ntf");
    // A Mozilla-style endpoint: far too long to seal inline.
    let endpoint = format!(
        "https://updates.push.services.mozilla.com/wpush/v2/{}",
        "gAAAAA".repeat(40)
    );
    let addr = DeviceAddress::WebPush(WebPushSubscription {
        endpoint: endpoint.clone(),
        p256dh: {
            let mut v = vec![4u8];
            v.extend([9u8; 64]);
            v
        },
        auth: vec![2; 16],
    });
    assert!(matches!(
        key.seal(&addr),
        Err(push_server::HandleError::TooLong(_))
    ));
    let h1 = service.register(&addr).await.unwrap();
    let h2 = service.register(&addr).await.unwrap();
    assert!(h1.as_str().len() <= 255);
    assert_ne!(h1, h2, "unlinkable re-registrations");
    assert!(!h1.as_str().contains("mozilla"));
    assert!(matches!(
        key.open_sealed(&h1).unwrap(),
        push_server::Sealed::Registration(_)
    ));
    assert_eq!(key.open(&h1), Err(push_server::HandleError::Stored));
    let mut j = job(PushTarget::Handle(h1.clone()));
    j.push_type = PushType::Alert;
    j.priority = None;
    gw.submit(j.clone()).await.unwrap();
    assert!(sink.wait_for(1, Duration::from_secs(5)).await);
    assert_eq!(sink.records()[0].address, addr);
    assert_eq!(sink.records()[0].job_id, j.job_id);
    // Registrations unused for the TTL are dropped: the handle then reports the token invalid.
    assert_eq!(
        outbox
            .prune_registrations(push_server::unix_now() + 10)
            .await
            .unwrap(),
        2
    );
    let j2 = job(PushTarget::Handle(h2));
    gw.submit(j2.clone()).await.unwrap();
    let fb = wait_feedback(&gw, 1).await;
    assert_eq!(fb[0].job_id, j2.job_id);
    assert_eq!(
        fb[0].reason,
        FeedbackReason::InvalidToken(InvalidReason::Unregistered)
    );
    assert_eq!(sink.records().len(), 1);
}

/// `submit` hands a job straight to the dispatcher: the row is committed already leased (no
/// second transaction, no poll), and like every lease it is cleared when the outbox is opened
/// again, so a job accepted just before a crash is still delivered (at-least-once).
#[tokio::test]
async fn a_job_handed_to_the_dispatcher_is_stored_leased_and_survives_a_restart() {
    use push_server::provider::sink::MemorySink;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.sqlite");
    let t = token(6);
    {
        let outbox = Outbox::open(&path, true).unwrap();
        let sink = Arc::new(MemorySink::new());
        let service = PushService::new(
            outbox.clone(),
            Providers::new().with_apns(ApnsEnv::Test, sink.clone()),
            HandleKey::generate(),
            Metrics::new(),
            ServiceConfig::default(),
        );
        // no dispatcher runs ("crashed" before it took the job)
        let gw = InProcessGateway::new(service.clone(), "ntf");
        assert_eq!(
            gw.submit(job(device(&t))).await.unwrap(),
            SubmitOutcome::Queued
        );
        assert_eq!(outbox.len().await.unwrap(), 1);
        // stored leased: the table has nothing for a poll to lease
        assert!(
            outbox
                .lease_due(push_server::unix_now_ms() + 1000, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
    let outbox = Outbox::open(&path, true).unwrap();
    let sink = Arc::new(MemorySink::new());
    let service = PushService::new(
        outbox.clone(),
        Providers::new().with_apns(ApnsEnv::Test, sink.clone()),
        HandleKey::generate(),
        Metrics::new(),
        ServiceConfig::default(),
    );
    let (_tx, rx) = watch::channel(false);
    service.spawn_dispatcher(rx);
    assert!(sink.wait_for(1, Duration::from_secs(10)).await);
    assert_eq!(sink.records()[0].payload, BODY);
}

/// Deliveries overlap: each holds a slot for one round trip to the provider (Apple's is tens of
/// ms), so the default number of slots bounds pushes/s. The default keeps up to 256 requests in
/// flight (it was 64: ≈ 7,500 pushes/s on a 2-core host with loopback round trips), never more
/// than it is configured for, and below the 500 concurrent streams APNs allows.
#[tokio::test]
async fn deliveries_overlap_up_to_the_default_concurrency() {
    let hold = Duration::from_millis(500);
    let s = service_on(sink_with(|c| c.response_delay = hold).await, 50);
    assert_eq!(ServiceConfig::default().concurrency, 256);
    let n = 600;
    let mut submits = tokio::task::JoinSet::new();
    for i in 0..n {
        let gw = s.gw.clone();
        submits.spawn(async move { gw.submit(job(device(&format!("{i:064x}")))).await });
    }
    while let Some(r) = submits.join_next().await {
        assert_eq!(r.unwrap().unwrap(), SubmitOutcome::Queued);
    }
    assert!(s.env.sink.wait_for(n, Duration::from_secs(30)).await);
    let most = s.env.sink.max_in_flight();
    assert!(
        (200..=256).contains(&most),
        "{most} requests in flight at most (expected close to 256, never more)"
    );
    assert!(most <= apns_sink::APNS_MAX_CONCURRENT_STREAMS as usize);
}
