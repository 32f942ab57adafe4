//! The APNs provider against apns-sink: success with the reference's headers, every error reply
//! and the provider's reaction.

mod common;

use std::time::Duration;

use apns_sink::FailureMode;
use common::*;
use push_server::jwt::SigFormat;
use push_server::provider::apns::ApnsProvider;
use push_server::provider::{Delivery, Provider};
use push_server::{ApnsEnv, DeviceAddress, InvalidReason, JobId, PushError, PushKind, PushType};

fn delivery<'a>(addr: &'a DeviceAddress, payload: &'a [u8], id: JobId) -> Delivery<'a> {
    Delivery {
        job_id: id,
        kind: PushKind::CheckMessages,
        address: addr,
        payload,
        push_type: PushType::Background,
        priority: Some(5),
        expires_at: None,
        collapse_id: None,
    }
}

fn addr(t: &str) -> DeviceAddress {
    DeviceAddress::Apns {
        env: ApnsEnv::Test,
        token: t.to_string(),
    }
}

#[tokio::test]
async fn reference_payloads_and_headers_reach_the_sink() {
    let env = sink().await;
    // Every apns.* payload vector: the headers of the vector, the JSON as the body.
    let mut n = 0;
    for v in vectors().iter().filter(|v| {
        v["name"].as_str().is_some_and(|n| n.starts_with("apns."))
            && v["expected"]["json"].is_string()
    }) {
        n += 1;
        let json = v["expected"]["json"].as_str().unwrap();
        let headers = &v["expected"]["http"]["headers"];
        let push_type = match headers["apns-push-type"].as_str().unwrap() {
            "background" => PushType::Background,
            "alert" => PushType::Alert,
            other => panic!("{other}"),
        };
        let priority = headers["apns-priority"]
            .as_str()
            .map(|p| p.parse::<u8>().unwrap());
        let t = token(n);
        let a = addr(&t);
        let id = JobId::random();
        let d = Delivery {
            push_type,
            priority,
            ..delivery(&a, json.as_bytes(), id)
        };
        // A provider with the payload limit lifted, to show what the sink (APNs) says.
        let mut cfg = env.apns_config(SigFormat::Jose);
        cfg.max_payload = 64 * 1024;
        let p = ApnsProvider::new(cfg).unwrap();
        let r = p.send(d).await;
        if json.len() <= 4096 {
            r.unwrap();
            let got = env.sink.received_for(&t);
            assert_eq!(got.len(), 1, "{}", v["name"]);
            let g = &got[0];
            assert_eq!(g.payload, json);
            assert_eq!(g.topic, headers["apns-topic"].as_str().unwrap());
            assert_eq!(g.push_type.as_deref(), headers["apns-push-type"].as_str());
            assert_eq!(g.priority, priority);
            assert_eq!(g.apns_id, id.to_uuid());
            assert!(g.apns_id_from_request);
            assert_eq!(g.jwt_signature, "jose");
        } else {
            // The reference's verification (4233 B) and message (4310 B) pushes exceed Apple's
            // documented 4096-byte limit: APNs (and the sink) answer 413 PayloadTooLarge.
            assert_eq!(r, Err(PushError::PayloadTooLarge), "{}", v["name"]);
            let att = env.sink.attempts_for(&t);
            assert_eq!(att.len(), 1);
            assert_eq!(
                (att[0].status, att[0].reason.as_deref()),
                (413, Some("PayloadTooLarge"))
            );
            // Our provider refuses it locally with the default limit, without a request.
            let p = env.provider();
            assert_eq!(p.send(d).await, Err(PushError::PayloadTooLarge));
            assert_eq!(env.sink.attempts_for(&t).len(), 1);
        }
    }
    assert_eq!(n, 3, "three apns payload vectors");
}

#[tokio::test]
async fn der_signature_as_the_reference_is_accepted_too() {
    let env = sink().await;
    let p = ApnsProvider::new(env.apns_config(SigFormat::Der)).unwrap();
    let t = token(9);
    let a = addr(&t);
    p.send(delivery(
        &a,
        br#"{"aps":{"content-available":1}}"#,
        JobId::random(),
    ))
    .await
    .unwrap();
    assert_eq!(env.sink.received_for(&t)[0].jwt_signature, "der");
}

#[tokio::test]
async fn every_error_reply_maps_to_its_reaction() {
    let env = sink().await;
    let p = env.provider();
    let body = br#"{"aps":{"content-available":1},"notificationData":{"checkMessages":true}}"#;
    let cases: Vec<(FailureMode, u16, &str)> = vec![
        (FailureMode::BadDeviceToken, 400, "BadDeviceToken"),
        (
            FailureMode::DeviceTokenNotForTopic,
            400,
            "DeviceTokenNotForTopic",
        ),
        (FailureMode::Unregistered, 410, "Unregistered"),
        (FailureMode::ExpiredToken, 410, "ExpiredToken"),
        (FailureMode::TooManyRequests, 429, "TooManyRequests"),
        (FailureMode::InternalServerError, 500, "InternalServerError"),
        (FailureMode::ServiceUnavailable, 503, "ServiceUnavailable"),
    ];
    for (i, (mode, status, reason)) in cases.into_iter().enumerate() {
        let t = token(100 + i as u8);
        env.sink.set_failure(&t, mode, None);
        let a = addr(&t);
        let r = p.send(delivery(&a, body, JobId::random())).await;
        let att = env.sink.attempts_for(&t);
        assert_eq!(
            att.len(),
            1,
            "{reason}: exactly one request (no inline retry)"
        );
        assert_eq!(
            (att[0].status, att[0].reason.as_deref()),
            (status, Some(reason))
        );
        let e = r.unwrap_err();
        match mode {
            FailureMode::BadDeviceToken => assert!(matches!(
                e,
                PushError::InvalidToken {
                    reason: InvalidReason::Bad,
                    ..
                }
            )),
            FailureMode::DeviceTokenNotForTopic => assert!(matches!(
                e,
                PushError::InvalidToken {
                    reason: InvalidReason::Topic,
                    ..
                }
            )),
            FailureMode::Unregistered => assert!(matches!(
                e,
                PushError::InvalidToken {
                    reason: InvalidReason::Unregistered,
                    ..
                }
            )),
            FailureMode::ExpiredToken => assert!(matches!(
                e,
                PushError::InvalidToken {
                    reason: InvalidReason::Expired,
                    ..
                }
            )),
            FailureMode::TooManyRequests => assert!(matches!(e, PushError::RateLimited { .. })),
            FailureMode::InternalServerError => assert_eq!(
                e,
                PushError::Unavailable {
                    status: 500,
                    reason: reason.into()
                }
            ),
            FailureMode::ServiceUnavailable => assert_eq!(
                e,
                PushError::Unavailable {
                    status: 503,
                    reason: reason.into()
                }
            ),
            FailureMode::ExpiredProviderToken => unreachable!(),
        }
        // The action table: invalid → report, 429/5xx → retry.
        match e.action() {
            push_server::error::Action::Invalidate(_) => assert!(status == 400 || status == 410),
            push_server::error::Action::Retry { .. } => assert!(status == 429 || status >= 500),
            push_server::error::Action::Drop => panic!("{reason} must not be dropped"),
        }
    }
    // 503 dropped the connection: the next push opens a new one.
    let before = p.connections();
    let t = token(200);
    let a = addr(&t);
    p.send(delivery(&a, body, JobId::random())).await.unwrap();
    assert_eq!(p.connections(), before + 1);
    // ... and a 200 keeps it.
    p.send(delivery(&a, body, JobId::random())).await.unwrap();
    assert_eq!(p.connections(), before + 1);
}

#[tokio::test]
async fn expired_provider_token_refreshes_the_jwt_and_retries() {
    let env = sink().await;
    let p = env.provider();
    let t = token(7);
    let a = addr(&t);
    let body = br#"{"aps":{"content-available":1}}"#;
    // Warm up: one JWT made.
    p.send(delivery(&a, body, JobId::random())).await.unwrap();
    assert_eq!(p.jwt_generations(), 1);
    // The sink now declares the current JWT expired (it keeps rejecting that exact token).
    env.sink
        .set_failure(&t, FailureMode::ExpiredProviderToken, Some(1));
    let id = JobId::random();
    p.send(delivery(&a, body, id)).await.unwrap();
    assert_eq!(p.jwt_generations(), 2, "refreshed once");
    let att = env.sink.attempts_for(&t);
    let tail: Vec<_> = att[att.len() - 2..]
        .iter()
        .map(|a| (a.status, a.reason.clone()))
        .collect();
    assert_eq!(
        tail,
        vec![(403, Some("ExpiredProviderToken".into())), (200, None)]
    );
    assert_eq!(
        env.sink.received_for(&t).last().unwrap().apns_id,
        id.to_uuid()
    );
    // The cached (refreshed) token is reused afterwards.
    p.send(delivery(&a, body, JobId::random())).await.unwrap();
    assert_eq!(p.jwt_generations(), 2);
}

#[tokio::test]
async fn multiplexed_streams_share_one_connection() {
    let env = sink().await;
    let p = env.provider();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..50u8 {
        let p = p.clone();
        set.spawn(async move {
            let a = addr(&token(i));
            p.send(delivery(
                &a,
                br#"{"aps":{"content-available":1}}"#,
                JobId::random(),
            ))
            .await
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(env.sink.received().len(), 50);
    assert_eq!(p.connections(), 1, "one HTTP/2 connection, 50 streams");
    let _ = Duration::ZERO;
}
