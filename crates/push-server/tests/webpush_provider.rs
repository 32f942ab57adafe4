//! The Web Push provider against a local RFC 8030 push service (TLS, HTTP/1.1): the device side
//! decrypts the body with its key, the VAPID header verifies, headers and status handling.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use push_server::http_util;
use push_server::job::WebPushSubscription;
use push_server::jwt::{Es256Key, verify_es256};
use push_server::provider::webpush::{self, EndpointPolicy, Vapid, WebPushConfig, WebPushProvider};
use push_server::provider::{Delivery, Provider};
use push_server::{DeviceAddress, InvalidReason, JobId, PushError, PushKind, PushType};

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn push_service() -> (
    std::net::SocketAddr,
    Arc<Mutex<Vec<Seen>>>,
    tempfile::TempDir,
) {
    let (cert, key) = http_util::self_signed_cert("push.test", &["127.0.0.1"], 30).unwrap();
    let acceptor = Arc::new(http_util::tls_acceptor(&cert, &key, &[b"http/1.1"], false).unwrap());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &cert).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = l.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let ssl = openssl::ssl::Ssl::new(acceptor.context()).unwrap();
                let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
                if std::pin::Pin::new(&mut tls).accept().await.is_err() {
                    return;
                }
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect();
                        let body = http_util::read_body(req.into_body(), 1 << 20)
                            .await
                            .unwrap();
                        seen.lock().unwrap().push(Seen {
                            path: path.clone(),
                            headers,
                            body: body.to_vec(),
                        });
                        let (status, retry) = match path.as_str() {
                            "/gone" => (410, None),
                            "/notfound" => (404, None),
                            "/busy" => (429, Some("7")),
                            "/err" => (502, None),
                            _ => (201, None),
                        };
                        let mut b = http::Response::builder().status(status);
                        if let Some(r) = retry {
                            b = b.header("retry-after", r);
                        }
                        Ok::<_, http::Error>(b.body(http_util::full(Bytes::new())).unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, seen, dir)
}

fn header(s: &Seen, k: &str) -> Option<String> {
    s.headers
        .iter()
        .find(|(h, _)| h == k)
        .map(|(_, v)| v.clone())
}

#[tokio::test]
async fn webpush_delivery_decrypts_at_the_device_and_carries_vapid() {
    let (addr, seen, dir) = push_service().await;
    let vapid_key = Es256Key::generate().unwrap();
    let provider = WebPushProvider::new(WebPushConfig {
        vapid: Vapid {
            key: vapid_key.clone(),
            subject: "mailto:ops@example.org".into(),
            lifetime: Duration::from_secs(12 * 3600),
        },
        ca_file: Some(dir.path().join("ca.pem")),
        // The test push service listens on 127.0.0.1 at a random port.
        endpoints: EndpointPolicy {
            destinations: push_server::DestinationPolicy::Loopback,
            allow_any_port: true,
            allow_http: false,
        },
        default_ttl: Duration::from_secs(3600),
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    // The device (UA) key pair and auth secret.
    let ua = Es256Key::generate().unwrap();
    let auth: [u8; 16] = rand::random();
    let sub = |path: &str| {
        DeviceAddress::WebPush(WebPushSubscription {
            endpoint: format!("https://127.0.0.1:{}{path}", addr.port()),
            p256dh: ua.public_uncompressed().unwrap(),
            auth: auth.to_vec(),
        })
    };
    let payload = br#"{"aps":{"content-available":1},"notificationData":{"checkMessages":true}}"#;
    let ok = sub("/push/abc");
    let expires = push_server::unix_now() + 600;
    fn delivery<'a>(a: &'a DeviceAddress, payload: &'a [u8], expires: u64) -> Delivery<'a> {
        Delivery {
            job_id: JobId::random(),
            kind: PushKind::Message,
            address: a,
            payload,
            push_type: PushType::Alert,
            priority: None,
            expires_at: Some(expires),
            collapse_id: Some("queue-1"),
        }
    }
    let d = |a| delivery(a, payload, expires);
    provider.send(d(&ok)).await.unwrap();
    let s = seen.lock().unwrap()[0].clone();
    assert_eq!(s.path, "/push/abc");
    assert_eq!(header(&s, "content-encoding").as_deref(), Some("aes128gcm"));
    assert_eq!(header(&s, "urgency").as_deref(), Some("high"));
    assert_eq!(header(&s, "topic").as_deref(), Some("queue-1"));
    let ttl: u64 = header(&s, "ttl").unwrap().parse().unwrap();
    assert!((590..=600).contains(&ttl), "{ttl}");
    // The device decrypts exactly the payload; the push service saw only ciphertext.
    assert_eq!(webpush::decrypt(&ua, &auth, &s.body).unwrap(), payload);
    assert!(!s.body.windows(8).any(|w| w == b"checkMes"));
    // VAPID: `vapid t=…, k=…` verifies with k, audience is the endpoint's origin.
    let authz = header(&s, "authorization").unwrap();
    let (t, k) = authz
        .strip_prefix("vapid t=")
        .unwrap()
        .split_once(", k=")
        .unwrap();
    assert_eq!(
        URL_SAFE_NO_PAD.decode(k).unwrap(),
        vapid_key.public_uncompressed().unwrap()
    );
    let pubkey = push_server::jwt::public_key_from_pem(&vapid_key.public_pem().unwrap()).unwrap();
    let v = verify_es256(t, &pubkey).unwrap();
    assert_eq!(
        v.claims["aud"],
        format!("https://127.0.0.1:{}", addr.port())
    );
    assert_eq!(v.claims["sub"], "mailto:ops@example.org");

    // Status handling.
    type Check = Box<dyn Fn(&PushError) -> bool>;
    let cases: Vec<(&str, Check)> = vec![
        (
            "/gone",
            Box::new(|e| {
                matches!(
                    e,
                    PushError::InvalidToken {
                        reason: InvalidReason::Expired,
                        ..
                    }
                )
            }),
        ),
        (
            "/notfound",
            Box::new(|e| {
                matches!(
                    e,
                    PushError::InvalidToken {
                        reason: InvalidReason::Unregistered,
                        ..
                    }
                )
            }),
        ),
        (
            "/busy",
            Box::new(|e| {
                *e == PushError::RateLimited {
                    retry_after: Some(Duration::from_secs(7)),
                }
            }),
        ),
        (
            "/err",
            Box::new(|e| matches!(e, PushError::Unavailable { status: 502, .. })),
        ),
    ];
    for (path, check) in cases {
        let a = sub(path);
        let e = provider
            .send(delivery(&a, payload, expires))
            .await
            .unwrap_err();
        assert!(check(&e), "{path}: {e:?}");
    }
    // Too large for one record.
    let big = vec![b'x'; webpush::MAX_PLAINTEXT + 1];
    let mut dd = d(&ok);
    dd.payload = &big;
    assert_eq!(provider.send(dd).await, Err(PushError::PayloadTooLarge));
    // Plain http endpoints are refused unless allowed.
    let plain = DeviceAddress::WebPush(WebPushSubscription {
        endpoint: format!("http://127.0.0.1:{}/x", addr.port()),
        p256dh: ua.public_uncompressed().unwrap(),
        auth: auth.to_vec(),
    });
    assert!(matches!(
        provider.send(delivery(&plain, payload, expires)).await,
        Err(PushError::Rejected { .. })
    ));
    assert_eq!(seen.lock().unwrap().len(), 5);
}
