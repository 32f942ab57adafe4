//! apns-sink behaves like APNs on bad requests: provider-token checks, header checks, payload
//! checks, each with Apple's status and reason.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use common::*;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use push_server::http_util::{self, Body};
use push_server::jwt::{Es256Key, SigFormat, apns_provider_token};

async fn client(env: &Env) -> SendRequest<Body> {
    let conn = http_util::tls_connector(Some(&env.ca_file), b"\x02h2").unwrap();
    let tls = http_util::connect_tls(
        &conn,
        "127.0.0.1",
        env.sink.addr.port(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let (s, c) = hyper::client::conn::http2::handshake::<_, _, Body>(
        TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(c);
    s
}

fn jwt(key: &Es256Key, iat: u64) -> String {
    apns_provider_token(key, KEY_ID, TEAM_ID, iat, SigFormat::Jose).unwrap()
}

struct Req {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn good(env: &Env) -> Req {
    Req {
        method: "POST",
        path: format!("/3/device/{}", token(1)),
        headers: vec![
            (
                "authorization",
                format!("bearer {}", jwt(&env.key, push_server::unix_now())),
            ),
            ("apns-topic", TOPIC.into()),
            ("apns-push-type", "background".into()),
            ("apns-priority", "5".into()),
        ],
        body: br#"{"aps":{"content-available":1}}"#.to_vec(),
    }
}

async fn send(
    s: &mut SendRequest<Body>,
    env: &Env,
    r: Req,
) -> (u16, serde_json::Value, Option<String>) {
    let mut b = http::Request::builder().method(r.method).uri(format!(
        "https://127.0.0.1:{}{}",
        env.sink.addr.port(),
        r.path
    ));
    for (k, v) in r.headers {
        b = b.header(k, v);
    }
    s.ready().await.unwrap();
    let resp = s
        .send_request(b.body(http_util::full(Bytes::from(r.body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("apns-id")
        .map(|v| v.to_str().unwrap().to_string());
    let body = http_util::read_body(resp.into_body(), 64 * 1024)
        .await
        .unwrap();
    let v = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (status, v, id)
}

fn set(r: &mut Req, k: &'static str, v: Option<&str>) {
    r.headers.retain(|(h, _)| *h != k);
    if let Some(v) = v {
        r.headers.push((k, v.to_string()));
    }
}

#[tokio::test]
async fn sink_answers_like_apns() {
    let env = sink().await;
    let mut s = client(&env).await;
    let now = push_server::unix_now();

    // A good request: 200, empty body, an apns-id.
    let (st, body, id) = send(&mut s, &env, good(&env)).await;
    assert_eq!((st, body), (200, serde_json::Value::Null));
    assert_eq!(id.unwrap().len(), 36);

    let wrong_key = Es256Key::generate().unwrap();
    let other_kid =
        apns_provider_token(&env.key, "OTHERKID", TEAM_ID, now, SigFormat::Jose).unwrap();
    let other_team =
        apns_provider_token(&env.key, KEY_ID, "OTHERTEAM", now, SigFormat::Jose).unwrap();
    let hs256 = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"KEYID12345"}"#),
        URL_SAFE_NO_PAD.encode(format!(r#"{{"iss":"{TEAM_ID}","iat":{now}}}"#)),
        URL_SAFE_NO_PAD.encode([0u8; 32])
    );
    type Edit = Box<dyn Fn(&mut Req)>;
    let cases: Vec<(&str, Edit, u16, &str)> = vec![
        (
            "no authorization",
            Box::new(|r| set(r, "authorization", None)),
            403,
            "MissingProviderToken",
        ),
        (
            "not bearer",
            Box::new(|r| set(r, "authorization", Some("basic xyz"))),
            403,
            "InvalidProviderToken",
        ),
        (
            "garbage JWT",
            Box::new(|r| set(r, "authorization", Some("bearer a.b.c"))),
            403,
            "InvalidProviderToken",
        ),
        (
            "signed by another key",
            {
                let t = jwt(&wrong_key, now);
                Box::new(move |r| set(r, "authorization", Some(&format!("bearer {t}"))))
            },
            403,
            "InvalidProviderToken",
        ),
        (
            "other kid",
            Box::new(move |r| set(r, "authorization", Some(&format!("bearer {other_kid}")))),
            403,
            "InvalidProviderToken",
        ),
        (
            "other team",
            Box::new(move |r| set(r, "authorization", Some(&format!("bearer {other_team}")))),
            403,
            "InvalidProviderToken",
        ),
        (
            "alg HS256",
            Box::new(move |r| set(r, "authorization", Some(&format!("bearer {hs256}")))),
            403,
            "InvalidProviderToken",
        ),
        (
            "iat older than one hour",
            {
                let t = jwt(&env.key, now - 3700);
                Box::new(move |r| set(r, "authorization", Some(&format!("bearer {t}"))))
            },
            403,
            "ExpiredProviderToken",
        ),
        (
            "iat in the future",
            {
                let t = jwt(&env.key, now + 3600);
                Box::new(move |r| set(r, "authorization", Some(&format!("bearer {t}"))))
            },
            403,
            "InvalidProviderToken",
        ),
        (
            "no topic",
            Box::new(|r| set(r, "apns-topic", None)),
            400,
            "MissingTopic",
        ),
        (
            "other topic",
            Box::new(|r| set(r, "apns-topic", Some("com.example.other"))),
            400,
            "TopicDisallowed",
        ),
        (
            "bad push type",
            Box::new(|r| set(r, "apns-push-type", Some("loud"))),
            400,
            "InvalidPushType",
        ),
        (
            "bad priority",
            Box::new(|r| set(r, "apns-priority", Some("7"))),
            400,
            "BadPriority",
        ),
        (
            "background at priority 10",
            Box::new(|r| set(r, "apns-priority", Some("10"))),
            400,
            "BadPriority",
        ),
        (
            "background without priority",
            Box::new(|r| set(r, "apns-priority", None)),
            400,
            "BadPriority",
        ),
        (
            "bad expiration",
            Box::new(|r| set(r, "apns-expiration", Some("soon"))),
            400,
            "BadExpirationDate",
        ),
        (
            "long collapse id",
            Box::new(|r| set(r, "apns-collapse-id", Some(&"c".repeat(65)))),
            400,
            "BadCollapseId",
        ),
        (
            "bad apns-id",
            Box::new(|r| set(r, "apns-id", Some("not-a-uuid"))),
            400,
            "BadMessageId",
        ),
        (
            "bad token",
            Box::new(|r| r.path = "/3/device/xyz".into()),
            400,
            "BadDeviceToken",
        ),
        (
            "no token",
            Box::new(|r| r.path = "/3/device/".into()),
            400,
            "MissingDeviceToken",
        ),
        (
            "bad path",
            Box::new(|r| r.path = "/2/device/aa".into()),
            404,
            "BadPath",
        ),
        (
            "GET",
            Box::new(|r| r.method = "GET"),
            405,
            "MethodNotAllowed",
        ),
        (
            "empty payload",
            Box::new(|r| r.body.clear()),
            400,
            "PayloadEmpty",
        ),
        (
            "payload not JSON",
            Box::new(|r| r.body = b"{not json".to_vec()),
            400,
            "BadPayload",
        ),
        (
            "payload without aps",
            Box::new(|r| r.body = br#"{"x":1}"#.to_vec()),
            400,
            "BadPayload",
        ),
        (
            "aps not an object",
            Box::new(|r| r.body = br#"{"aps":[1]}"#.to_vec()),
            400,
            "BadPayload",
        ),
        (
            "payload not UTF-8",
            Box::new(|r| r.body = b"{\"aps\":{},\"m\":\"\xff\"}".to_vec()),
            400,
            "BadPayload",
        ),
        (
            "4097-byte payload",
            Box::new(|r| {
                let pad = "x".repeat(4097 - r#"{"aps":{},"p":""}"#.len());
                r.body = format!(r#"{{"aps":{{}},"p":"{pad}"}}"#).into_bytes();
                assert_eq!(r.body.len(), 4097);
            }),
            413,
            "PayloadTooLarge",
        ),
    ];
    let n = cases.len();
    for (what, edit, status, reason) in cases {
        let mut r = good(&env);
        edit(&mut r);
        let (st, body, id) = send(&mut s, &env, r).await;
        assert_eq!(
            (st, body["reason"].as_str()),
            (status, Some(reason)),
            "{what}"
        );
        assert!(id.is_some(), "{what}: apns-id on errors too");
    }
    // Exactly 4096 bytes is fine.
    let mut r = good(&env);
    let pad = "x".repeat(4096 - r#"{"aps":{},"p":""}"#.len());
    r.body = format!(r#"{{"aps":{{}},"p":"{pad}"}}"#).into_bytes();
    assert_eq!(send(&mut s, &env, r).await.0, 200);
    // Alert without priority is fine (default 10), and the request's apns-id is echoed.
    let mut r = good(&env);
    set(&mut r, "apns-push-type", Some("alert"));
    set(&mut r, "apns-priority", None);
    set(
        &mut r,
        "apns-id",
        Some("123e4567-e89b-12d3-a456-426614174000"),
    );
    let (st, _, id) = send(&mut s, &env, r).await;
    assert_eq!(st, 200);
    assert_eq!(id.as_deref(), Some("123e4567-e89b-12d3-a456-426614174000"));
    // 410 replies carry a timestamp.
    env.sink
        .set_failure(&token(1), apns_sink::FailureMode::Unregistered, Some(1));
    let (st, body, _) = send(&mut s, &env, good(&env)).await;
    assert_eq!(st, 410);
    assert_eq!(body["reason"], "Unregistered");
    assert!(body["timestamp"].as_u64().unwrap() >= now * 1000);
    // Only the 3 good requests were recorded as received.
    assert_eq!(env.sink.received().len(), 3);
    assert_eq!(env.sink.attempts().len(), n + 4);
}
