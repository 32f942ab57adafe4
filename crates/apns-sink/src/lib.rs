//! apns-sink: a local HTTP/2 TLS server that behaves like APNs, for tests, `hush up` and the
//! device simulator.
//!
//! * `POST /3/device/<token>` over HTTP/2 (TLS, ALPN `h2`), checked like APNs does (Apple's
//!   "Handling notification responses from APNs" table): `authorization: bearer <JWT>` verified as
//!   ES256 against the configured P-256 public key (`alg` ES256, `kid`/`iss` if configured, `iat`
//!   not older than 1 h; signature as JOSE `r ‖ s` or DER, both of which APNs accepts);
//!   `apns-topic` required (and one of the allowed topics if configured); `apns-push-type`,
//!   `apns-priority` (1, 5, 10; background pushes must use 5), `apns-expiration`,
//!   `apns-collapse-id` (≤ 64 bytes), `apns-id` (UUID) validated; the payload must be a JSON object
//!   with an `aps` dictionary, at most `max_payload` bytes (4096, else 413 `PayloadTooLarge`).
//!   Replies: 200 with `apns-id`, or the status and `{"reason": …}` (410 adds `timestamp`).
//! * Per-token failure modes ([`FailureMode`]), optionally for the next N requests only.
//! * A read API on a second, plain-HTTP loopback port: `GET /received?after=<seq>&wait_ms=<ms>`
//!   (JSON lines, long-poll), `GET /attempts`, `POST /failures` (`{"token","mode","times"}`),
//!   `DELETE /failures`. The same is available in-process on [`SinkHandle`].

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use openssl::ec::EcKey;
use openssl::pkey::Public;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_openssl::SslStream;

use push_api::JobId;
use push_server::http_util::{self, Body};
use push_server::jwt::{self, SigFormat};

/// How the sink answers pushes to a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// 400 `BadDeviceToken`.
    BadDeviceToken,
    /// 400 `DeviceTokenNotForTopic`.
    DeviceTokenNotForTopic,
    /// 410 `Unregistered` (with `timestamp`).
    Unregistered,
    /// 410 `ExpiredToken` (with `timestamp`).
    ExpiredToken,
    /// 429 `TooManyRequests`.
    TooManyRequests,
    /// 500 `InternalServerError`.
    InternalServerError,
    /// 503 `ServiceUnavailable`.
    ServiceUnavailable,
    /// 403 `ExpiredProviderToken`: the provider token of the request is marked expired (so the
    /// same JWT keeps failing; a refreshed one passes).
    ExpiredProviderToken,
}

impl FailureMode {
    pub fn status_reason(self) -> (u16, &'static str) {
        match self {
            FailureMode::BadDeviceToken => (400, "BadDeviceToken"),
            FailureMode::DeviceTokenNotForTopic => (400, "DeviceTokenNotForTopic"),
            FailureMode::Unregistered => (410, "Unregistered"),
            FailureMode::ExpiredToken => (410, "ExpiredToken"),
            FailureMode::TooManyRequests => (429, "TooManyRequests"),
            FailureMode::InternalServerError => (500, "InternalServerError"),
            FailureMode::ServiceUnavailable => (503, "ServiceUnavailable"),
            FailureMode::ExpiredProviderToken => (403, "ExpiredProviderToken"),
        }
    }
}

/// Sink configuration.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// HTTP/2 TLS listener (e.g. `127.0.0.1:0`).
    pub listen: SocketAddr,
    /// Plain-HTTP read API listener (must be loopback); `None` = no read port.
    pub read_listen: Option<SocketAddr>,
    /// P-256 public key (PEM) that verifies provider tokens.
    pub jwt_public_key_pem: Vec<u8>,
    /// Required `kid` / `iss` of provider tokens, if set.
    pub key_id: Option<String>,
    pub team_id: Option<String>,
    /// Allowed `apns-topic` values (empty = any).
    pub topics: Vec<String>,
    /// Payload limit (Apple: 4096).
    pub max_payload: usize,
    /// Provider tokens older than this are `ExpiredProviderToken` (Apple: 1 h).
    pub token_max_age: Duration,
    /// TLS certificate and key (PEM); `None` = a fresh self-signed certificate for
    /// `localhost` / `127.0.0.1` / `::1`.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
    /// Each answer is held this long (the round trip to Apple over the Internet is tens of ms;
    /// on loopback it is well under one): shows how a sender behaves with real round trips.
    pub response_delay: Duration,
}

impl SinkConfig {
    pub fn new(listen: SocketAddr, jwt_public_key_pem: Vec<u8>) -> SinkConfig {
        SinkConfig {
            listen,
            read_listen: None,
            jwt_public_key_pem,
            key_id: None,
            team_id: None,
            topics: Vec::new(),
            max_payload: push_server::provider::apns::MAX_PAYLOAD,
            token_max_age: Duration::from_secs(3600),
            tls: None,
            response_delay: Duration::ZERO,
        }
    }
}

/// A push the sink accepted (what "the device" received).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub seq: u64,
    pub token: String,
    /// `apns-id` of the reply (the request's, or a generated one).
    pub apns_id: String,
    /// Whether the request carried its own `apns-id` (the push-server sends the job id).
    pub apns_id_from_request: bool,
    pub topic: String,
    pub push_type: Option<String>,
    pub priority: Option<u8>,
    pub expiration: Option<u64>,
    pub collapse_id: Option<String>,
    pub payload: String,
    pub received_at_ms: u64,
    /// `jose` or `der`: how the provider token's signature was encoded.
    pub jwt_signature: String,
}

/// One request and the sink's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub token: String,
    pub status: u16,
    pub reason: Option<String>,
    pub apns_id: String,
    /// When the request was answered (Unix ms).
    pub at_ms: u64,
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    attempts: Mutex<Vec<Attempt>>,
    failures: Mutex<HashMap<String, (FailureMode, Option<u32>)>>,
    expired_jwts: Mutex<HashSet<String>>,
    notify: Notify,
    /// Requests being handled now, and the most there ever were at once.
    in_flight: std::sync::atomic::AtomicUsize,
    max_in_flight: std::sync::atomic::AtomicUsize,
}

/// A running sink. Dropping it stops the servers.
pub struct SinkHandle {
    pub addr: SocketAddr,
    pub read_addr: Option<SocketAddr>,
    /// The TLS certificate (PEM) clients must trust.
    pub cert_pem: Vec<u8>,
    state: Arc<State>,
    _shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for SinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SinkHandle({})", self.addr)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink TLS/key setup: {0}")]
    Setup(String),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("the read API must listen on a loopback address")]
    NotLoopback,
}

/// Starts the sink.
pub async fn start(cfg: SinkConfig) -> Result<SinkHandle, SinkError> {
    let key = jwt::public_key_from_pem(&cfg.jwt_public_key_pem)
        .map_err(|e| SinkError::Setup(e.to_string()))?;
    let (cert_pem, key_pem) = match &cfg.tls {
        Some(t) => t.clone(),
        None => http_util::self_signed_cert("apns-sink", &["localhost", "127.0.0.1", "::1"], 3650)
            .map_err(|e| SinkError::Setup(e.to_string()))?,
    };
    let acceptor = http_util::tls_acceptor(&cert_pem, &key_pem, &[b"h2"], false)
        .map_err(|e| SinkError::Setup(e.to_string()))?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| SinkError::Bind(cfg.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| SinkError::Bind(cfg.listen, e))?;
    let state = Arc::new(State::default());
    let (tx, rx) = watch::channel(false);
    let read_addr = match cfg.read_listen {
        Some(ra) => {
            if !ra.ip().is_loopback() {
                return Err(SinkError::NotLoopback);
            }
            let l = TcpListener::bind(ra)
                .await
                .map_err(|e| SinkError::Bind(ra, e))?;
            let a = l.local_addr().map_err(|e| SinkError::Bind(ra, e))?;
            tokio::spawn(read_api(l, state.clone(), rx.clone()));
            Some(a)
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        cfg,
        key,
        state: state.clone(),
        last_verified: Mutex::new(None),
    });
    tokio::spawn(apns_server(listener, Arc::new(acceptor), shared, rx));
    Ok(SinkHandle {
        addr,
        read_addr,
        cert_pem,
        state,
        _shutdown: tx,
    })
}

impl SinkHandle {
    pub fn received(&self) -> Vec<Received> {
        self.state
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    pub fn received_for(&self, token: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.token == token)
            .collect()
    }

    pub fn attempts(&self) -> Vec<Attempt> {
        self.state
            .attempts
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    pub fn attempts_for(&self, token: &str) -> Vec<Attempt> {
        self.attempts()
            .into_iter()
            .filter(|a| a.token == token)
            .collect()
    }

    /// Pushes to `token` fail with `mode` (the next `times` requests, or always if `None`).
    pub fn set_failure(&self, token: &str, mode: FailureMode, times: Option<u32>) {
        if let Ok(mut f) = self.state.failures.lock() {
            f.insert(token.to_string(), (mode, times));
        }
    }

    pub fn clear_failures(&self) {
        if let Ok(mut f) = self.state.failures.lock() {
            f.clear();
        }
    }

    /// Waits until at least `n` pushes were accepted in total.
    /// The most push requests the sink was handling at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state
            .max_in_flight
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        wait_for(&self.state, |r| r.len() >= n, timeout).await
    }

    /// Waits until at least `n` requests were answered (accepted or not).
    pub async fn wait_attempts(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.notify.notified();
            if self.state.attempts.lock().map(|a| a.len()).unwrap_or(0) >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }
}

async fn wait_for(state: &State, pred: impl Fn(&[Received]) -> bool, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = state.notify.notified();
        if state.received.lock().map(|r| pred(&r)).unwrap_or(false) {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return false;
        }
    }
}

struct Shared {
    cfg: SinkConfig,
    key: EcKey<Public>,
    state: Arc<State>,
    /// The last provider token whose signature verified (a provider reuses one token for
    /// 20–60 minutes): the same text is not verified again (one ECDSA verification per push
    /// was most of the sink's CPU). Claims (`kid`, `iss`, `iat` age) are still checked per push.
    last_verified: Mutex<Option<(String, Arc<jwt::Verified>)>>,
}

async fn apns_server(
    listener: TcpListener,
    acceptor: Arc<openssl::ssl::SslAcceptor>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let Ok((tcp, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        let mut sd = shutdown.clone();
        tokio::spawn(async move {
            let Ok(ssl) = openssl::ssl::Ssl::new(acceptor.context()) else {
                return;
            };
            let Ok(mut tls) = SslStream::new(ssl, tcp) else {
                return;
            };
            let hs =
                tokio::time::timeout(Duration::from_secs(10), Pin::new(&mut tls).accept()).await;
            if !matches!(hs, Ok(Ok(()))) {
                return;
            }
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle_push(&shared, req).await) }
            });
            // The SETTINGS APNs sends once a connection is in use (observed: at most 500
            // concurrent streams, 65,535-byte stream windows, 8,000-byte header lists), so a
            // client that exceeds them fails here as it would there.
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_concurrent_streams(APNS_MAX_CONCURRENT_STREAMS)
                .initial_stream_window_size(65_535)
                .max_header_list_size(8_000)
                .serve_connection(TokioIo::new(tls), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = sd.wait_for(|s| *s) => {}
            }
        });
    }
}

/// APNs's `SETTINGS_MAX_CONCURRENT_STREAMS` on a connection in use.
pub const APNS_MAX_CONCURRENT_STREAMS: u32 = 500;

fn reply(status: u16, reason: Option<&str>, apns_id: &str) -> http::Response<Body> {
    let body = match reason {
        None => Bytes::new(),
        Some(r) if status == 410 => Bytes::from(
            serde_json::json!({"reason": r, "timestamp": hush_server_common::time::unix_millis()})
                .to_string(),
        ),
        Some(r) => Bytes::from(serde_json::json!({"reason": r}).to_string()),
    };
    let mut b = http::Response::builder()
        .status(status)
        .header("apns-id", apns_id);
    if reason.is_some() {
        b = b.header("content-type", "application/json");
    }
    b.body(http_util::full(body))
        .unwrap_or_else(|_| http::Response::new(Body::default()))
}

fn header<'a>(req: &'a http::Request<Incoming>, name: &str) -> Result<Option<&'a str>, ()> {
    let mut it = req.headers().get_all(name).iter();
    let first = it.next();
    if it.next().is_some() {
        return Err(());
    }
    match first {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| ()),
    }
}

const PUSH_TYPES: &[&str] = &[
    "alert",
    "background",
    "location",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "liveactivity",
    "pushtotalk",
    "widgets",
    "controls",
];

async fn handle_push(shared: &Shared, req: http::Request<Incoming>) -> http::Response<Body> {
    use std::sync::atomic::Ordering::Relaxed;
    let state = &shared.state;
    let now = state.in_flight.fetch_add(1, Relaxed) + 1;
    state.max_in_flight.fetch_max(now, Relaxed);
    let reply = handle_push_inner(shared, req).await;
    if !shared.cfg.response_delay.is_zero() {
        tokio::time::sleep(shared.cfg.response_delay).await;
    }
    state.in_flight.fetch_sub(1, Relaxed);
    reply
}

async fn handle_push_inner(shared: &Shared, req: http::Request<Incoming>) -> http::Response<Body> {
    let state = &shared.state;
    // apns-id: the request's (if a valid UUID) or a fresh one.
    let req_id = match header(&req, "apns-id") {
        Ok(v) => v.map(str::to_string),
        Err(()) => None,
    };
    let id_valid = req_id.as_deref().map(is_uuid).unwrap_or(true);
    let apns_id = match (&req_id, id_valid) {
        (Some(s), true) => s.to_ascii_lowercase(),
        _ => JobId::random().to_uuid(),
    };
    let token = req
        .uri()
        .path()
        .strip_prefix("/3/device/")
        .unwrap_or("")
        .to_string();
    let (status, reason, record) = check(shared, req, &token, id_valid, &req_id, &apns_id).await;
    if let Ok(mut a) = state.attempts.lock() {
        a.push(Attempt {
            token: token.clone(),
            status,
            reason: reason.map(str::to_string),
            apns_id: apns_id.clone(),
            at_ms: hush_server_common::time::unix_millis(),
        });
    }
    if let Some(rec) = record
        && let Ok(mut r) = state.received.lock()
    {
        let seq = r.len() as u64 + 1;
        r.push(Received { seq, ..rec });
    }
    state.notify.notify_waiters();
    reply(status, reason, &apns_id)
}

/// True when `body` is one JSON object whose `aps` member is an object (each `aps` member, if
/// repeated). Checked without building the document (a `serde_json::Value` of every 4 KB
/// payload was a tenth of the sink's CPU).
fn has_aps_object(body: &str) -> bool {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    use std::borrow::Cow;
    use std::fmt;

    /// Any JSON object (its members skipped).
    struct AnyObject;
    impl<'de> Deserialize<'de> for AnyObject {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = AnyObject;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<AnyObject, A::Error> {
                    while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(AnyObject)
                }
            }
            d.deserialize_map(V)
        }
    }

    /// The top-level object: whether it has an `aps` member (all of them objects).
    struct Top(bool);
    impl<'de> Deserialize<'de> for Top {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Top;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Top, A::Error> {
                    let mut aps = false;
                    while let Some(k) = m.next_key::<Cow<'de, str>>()? {
                        if k == "aps" {
                            m.next_value::<AnyObject>()?;
                            aps = true;
                        } else {
                            m.next_value::<IgnoredAny>()?;
                        }
                    }
                    Ok(Top(aps))
                }
            }
            d.deserialize_map(V)
        }
    }

    serde_json::from_str::<Top>(body).is_ok_and(|t| t.0)
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

async fn check(
    shared: &Shared,
    req: http::Request<Incoming>,
    token: &str,
    id_valid: bool,
    req_id: &Option<String>,
    apns_id: &str,
) -> (u16, Option<&'static str>, Option<Received>) {
    let cfg = &shared.cfg;
    if req.method() != http::Method::POST {
        return (405, Some("MethodNotAllowed"), None);
    }
    if !req.uri().path().starts_with("/3/device/") {
        return (404, Some("BadPath"), None);
    }
    if token.is_empty() {
        return (400, Some("MissingDeviceToken"), None);
    }
    for h in [
        "apns-topic",
        "apns-push-type",
        "apns-priority",
        "apns-expiration",
        "apns-collapse-id",
        "apns-id",
        "authorization",
    ] {
        if header(&req, h).is_err() {
            return (400, Some("DuplicateHeaders"), None);
        }
    }
    // Provider token.
    let Ok(Some(auth)) = header(&req, "authorization") else {
        return (403, Some("MissingProviderToken"), None);
    };
    let Some(jwt_text) = auth
        .strip_prefix("bearer ")
        .or_else(|| auth.strip_prefix("Bearer "))
    else {
        return (403, Some("InvalidProviderToken"), None);
    };
    let jwt_text = jwt_text.trim().to_string();
    let cached = shared.last_verified.lock().ok().and_then(|c| {
        c.as_ref()
            .filter(|(t, _)| *t == jwt_text)
            .map(|(_, v)| v.clone())
    });
    let verified = match cached {
        Some(v) => v,
        None => match jwt::verify_es256(&jwt_text, &shared.key) {
            Ok(v) => {
                let v = Arc::new(v);
                if let Ok(mut c) = shared.last_verified.lock() {
                    *c = Some((jwt_text.clone(), v.clone()));
                }
                v
            }
            Err(_) => return (403, Some("InvalidProviderToken"), None),
        },
    };
    if let Some(kid) = &cfg.key_id
        && verified.header.get("kid").and_then(|v| v.as_str()) != Some(kid.as_str())
    {
        return (403, Some("InvalidProviderToken"), None);
    }
    if let Some(team) = &cfg.team_id
        && verified.claims.get("iss").and_then(|v| v.as_str()) != Some(team.as_str())
    {
        return (403, Some("InvalidProviderToken"), None);
    }
    let Some(iat) = verified.claims.get("iat").and_then(|v| v.as_u64()) else {
        return (403, Some("InvalidProviderToken"), None);
    };
    let now = push_server::unix_now();
    if iat > now + 300 {
        return (403, Some("InvalidProviderToken"), None);
    }
    if now.saturating_sub(iat) > cfg.token_max_age.as_secs() {
        return (403, Some("ExpiredProviderToken"), None);
    }
    if shared
        .state
        .expired_jwts
        .lock()
        .map(|s| s.contains(&jwt_text))
        .unwrap_or(false)
    {
        return (403, Some("ExpiredProviderToken"), None);
    }
    // Headers.
    let Ok(Some(topic)) = header(&req, "apns-topic") else {
        return (400, Some("MissingTopic"), None);
    };
    let topic = topic.to_string();
    if !cfg.topics.is_empty() && !cfg.topics.contains(&topic) {
        return (400, Some("TopicDisallowed"), None);
    }
    let push_type = header(&req, "apns-push-type")
        .ok()
        .flatten()
        .map(str::to_string);
    if let Some(pt) = &push_type
        && !PUSH_TYPES.contains(&pt.as_str())
    {
        return (400, Some("InvalidPushType"), None);
    }
    let priority = match header(&req, "apns-priority").ok().flatten() {
        None => None,
        Some(p) => match p.parse::<u8>() {
            Ok(v @ (1 | 5 | 10)) => Some(v),
            _ => return (400, Some("BadPriority"), None),
        },
    };
    if push_type.as_deref() == Some("background") && priority != Some(5) {
        // Apple: background notifications must be sent with priority 5 (default is 10).
        return (400, Some("BadPriority"), None);
    }
    let expiration = match header(&req, "apns-expiration").ok().flatten() {
        None => None,
        Some(e) => match e.parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => return (400, Some("BadExpirationDate"), None),
        },
    };
    let collapse_id = header(&req, "apns-collapse-id")
        .ok()
        .flatten()
        .map(str::to_string);
    if collapse_id.as_ref().is_some_and(|c| c.len() > 64) {
        return (400, Some("BadCollapseId"), None);
    }
    if !id_valid {
        return (400, Some("BadMessageId"), None);
    }
    if token.len() < 2
        || token.len() > 200
        || !token.len().is_multiple_of(2)
        || !token.bytes().all(|c| c.is_ascii_hexdigit())
    {
        return (400, Some("BadDeviceToken"), None);
    }
    // Body.
    let body = match http_util::read_body(req.into_body(), cfg.max_payload).await {
        Ok(b) => b,
        Err(_) => return (413, Some("PayloadTooLarge"), None),
    };
    if body.is_empty() {
        return (400, Some("PayloadEmpty"), None);
    }
    // APNs payloads are UTF-8 JSON (a string member that is not UTF-8 is refused like other
    // malformed JSON)
    let Ok(text) = std::str::from_utf8(&body) else {
        return (400, Some("BadPayload"), None);
    };
    if !has_aps_object(text) {
        // Not one of Apple's documented reasons (APNs does not document JSON checks).
        return (400, Some("BadPayload"), None);
    }
    // Scripted failures.
    let failure = shared.state.failures.lock().ok().and_then(|mut f| {
        let (mode, times) = f.get_mut(token).map(|(m, t)| (*m, t))?;
        match times {
            None => Some(mode),
            Some(0) => None,
            Some(n) => {
                *n -= 1;
                Some(mode)
            }
        }
    });
    if let Some(mode) = failure {
        if mode == FailureMode::ExpiredProviderToken
            && let Ok(mut s) = shared.state.expired_jwts.lock()
        {
            s.insert(jwt_text);
        }
        let (status, reason) = mode.status_reason();
        return (status, Some(reason), None);
    }
    let rec = Received {
        seq: 0,
        token: token.to_string(),
        apns_id: apns_id.to_string(),
        apns_id_from_request: req_id.is_some(),
        topic,
        push_type,
        priority,
        expiration,
        collapse_id,
        payload: text.to_owned(),
        received_at_ms: hush_server_common::time::unix_millis(),
        jwt_signature: match verified.format {
            SigFormat::Jose => "jose".into(),
            SigFormat::Der => "der".into(),
        },
    };
    (200, None, Some(rec))
}

#[derive(Deserialize)]
struct FailureRequest {
    token: String,
    mode: FailureMode,
    #[serde(default)]
    times: Option<u32>,
}

async fn read_api(listener: TcpListener, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let Ok((tcp, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(read_request(&state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn query_param(q: Option<&str>, name: &str) -> Option<u64> {
    q?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.parse().ok()).flatten()
    })
}

fn lines<T: Serialize>(items: &[T]) -> Bytes {
    let mut out = Vec::new();
    for i in items {
        if let Ok(mut l) = serde_json::to_vec(i) {
            l.push(b'\n');
            out.extend_from_slice(&l);
        }
    }
    Bytes::from(out)
}

async fn read_request(state: &State, req: http::Request<Incoming>) -> http::Response<Body> {
    let ok = |b: Bytes| {
        http::Response::builder()
            .header("content-type", "application/x-ndjson")
            .body(http_util::full(b))
            .unwrap_or_else(|_| http::Response::new(Body::default()))
    };
    let status = |s: u16, msg: &'static str| {
        http::Response::builder()
            .status(s)
            .body(http_util::full(Bytes::from_static(msg.as_bytes())))
            .unwrap_or_else(|_| http::Response::new(Body::default()))
    };
    let q = req.uri().query().map(str::to_string);
    match (req.method().clone(), req.uri().path()) {
        (http::Method::GET, "/received") => {
            let after = query_param(q.as_deref(), "after").unwrap_or(0);
            let wait = query_param(q.as_deref(), "wait_ms")
                .unwrap_or(0)
                .min(30_000);
            let _ = wait_for(
                state,
                |r| r.iter().any(|x| x.seq > after),
                Duration::from_millis(wait),
            )
            .await;
            let items: Vec<Received> = state
                .received
                .lock()
                .map(|r| r.iter().filter(|x| x.seq > after).cloned().collect())
                .unwrap_or_default();
            ok(lines(&items))
        }
        (http::Method::GET, "/attempts") => {
            let items = state.attempts.lock().map(|a| a.clone()).unwrap_or_default();
            ok(lines(&items))
        }
        (http::Method::POST, "/failures") => {
            let Ok(body) = http_util::read_body(req.into_body(), 4096).await else {
                return status(400, "bad body\n");
            };
            let Ok(f) = serde_json::from_slice::<FailureRequest>(&body) else {
                return status(400, "expected {\"token\",\"mode\",\"times\"}\n");
            };
            if let Ok(mut m) = state.failures.lock() {
                m.insert(f.token, (f.mode, f.times));
            }
            status(200, "ok\n")
        }
        (http::Method::DELETE, "/failures") => {
            if let Ok(mut m) = state.failures.lock() {
                m.clear();
            }
            status(200, "ok\n")
        }
        (http::Method::GET, "/health") => status(200, "ok\n"),
        _ => status(404, "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::has_aps_object;

    #[test]
    fn payload_check_wants_an_aps_object() {
        for ok in [
            r#"{"aps":{}}"#,
            r#"{"aps":{"alert":"x","content-available":1},"m":"a\u00e9b","n":[1,{"aps":2}]}"#,
            r#" { "x" : null , "aps" : { "a" : [ ] } } "#,
            r#"{"a\"ps":1,"aps":{}}"#,
        ] {
            assert!(has_aps_object(ok), "{ok}");
        }
        for bad in [
            "",
            "{}",
            r#"{"aps":1}"#,
            r#"{"aps":[]}"#,
            r#"{"aps":"x"}"#,
            r#"{"aps":null}"#,
            r#"[{"aps":{}}]"#,
            r#"{"x":{"aps":{}}}"#,
            r#"{"aps":{}"#,
            r#"{"aps":{}} trailing"#,
            r#"{"aps":{},}"#,
        ] {
            assert!(!has_aps_object(bad), "{bad:?}");
        }
    }
}
