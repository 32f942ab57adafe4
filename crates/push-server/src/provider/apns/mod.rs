//! APNs provider: HTTP/2 over OpenSSL (tokio-openssl + hyper), one long-lived connection per
//! environment with multiplexed streams, ES256 provider token (JWT) cached and refreshed.
//!
//! Reactions (reference §5.3 #7 and Apple's error table, mapped in [`crate::error::apns_error`]):
//! * 400 `BadDeviceToken`, 400 `DeviceTokenNotForTopic`, 410 `Unregistered`, 410 `ExpiredToken` →
//!   the token is invalid: reported back to the ntf-server with the reason;
//! * 403 `ExpiredProviderToken` → the JWT is regenerated at once and the push retried (once here;
//!   if APNs still says expired, the outbox retries later);
//! * 429 and 5xx (and 410 with another reason) → the outbox retries with exponential backoff and
//!   jitter; 503 and connection errors also drop the HTTP/2 connection so the next push reconnects;
//! * a connection error on a request → reconnect and retry once at once (as the reference does);
//! * any other 400/403/413 → permanent failure.
//!
//! JWT signature form: [`SigFormat::Jose`] (64-byte `r ‖ s`, what Apple documents) by default;
//! `der` reproduces the reference. Refresh interval is clamped to 20–50 min (Apple: not more often
//! than every 20 min, tokens older than 60 min are rejected).

pub mod setup;

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use openssl::ssl::SslConnector;

use super::{Delivery, Provider, SendFuture};
use crate::error::{PushError, apns_error};
use crate::http_util::{self, Body};
use crate::job::DeviceAddress;
use crate::jwt::{Es256Key, SigFormat, apns_provider_token};

/// Apple's limit for regular pushes.
pub const MAX_PAYLOAD: usize = 4096;

#[derive(Debug, Clone)]
pub struct ApnsConfig {
    /// Metric label (`apns_prod`, `apns_dev`, `apns_test`).
    pub label: &'static str,
    /// Host (e.g. `api.push.apple.com`, or `127.0.0.1` for apns-sink) and port (443).
    pub host: String,
    pub port: u16,
    /// `apns-topic` (the app bundle id, `chat.simplex.app` in the reference).
    pub topic: String,
    pub team_id: String,
    pub key_id: String,
    pub key: Es256Key,
    pub sig_format: SigFormat,
    /// JWT refresh interval, clamped to 20..=50 min unless `allow_short_refresh` (tests).
    pub jwt_refresh: Duration,
    pub allow_short_refresh: bool,
    /// Trust only these CAs (PEM) instead of the system store (apns-sink).
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Refuse payloads over this size locally (Apple: 4096).
    pub max_payload: usize,
}

impl ApnsConfig {
    fn refresh(&self) -> Duration {
        if self.allow_short_refresh {
            self.jwt_refresh
        } else {
            self.jwt_refresh
                .clamp(Duration::from_secs(20 * 60), Duration::from_secs(50 * 60))
        }
    }
}

struct CachedJwt {
    /// `bearer <JWT>`, ready for the `authorization` header (a clone shares the bytes).
    header: http::HeaderValue,
    made: Instant,
}

pub struct ApnsProvider {
    cfg: ApnsConfig,
    connector: SslConnector,
    /// The open connection's request handle (cloned per request; never held across an await).
    conn: Mutex<Option<SendRequest<Body>>>,
    /// Held while a connection is being opened, so that concurrent requests share one.
    connecting: tokio::sync::Mutex<()>,
    /// `https://host[:port]`, the request URIs' scheme and authority.
    authority: http::uri::Authority,
    topic: http::HeaderValue,
    jwt: Mutex<Option<CachedJwt>>,
    jwt_made: AtomicU64,
    connects: AtomicU64,
}

impl std::fmt::Debug for ApnsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApnsProvider({})", self.cfg.label)
    }
}

impl ApnsProvider {
    pub fn new(cfg: ApnsConfig) -> Result<ApnsProvider, PushError> {
        let connector = http_util::tls_connector(cfg.ca_file.as_deref(), b"\x02h2")
            .map_err(|e| PushError::Connection(format!("TLS setup: {e}")))?;
        let authority = if cfg.port == 443 {
            cfg.host.clone()
        } else if cfg.host.contains(':') {
            format!("[{}]:{}", cfg.host, cfg.port)
        } else {
            format!("{}:{}", cfg.host, cfg.port)
        };
        let authority = http::uri::Authority::try_from(authority.as_str())
            .map_err(|e| PushError::Connection(format!("APNs host: {e}")))?;
        let topic = http::HeaderValue::try_from(cfg.topic.as_str())
            .map_err(|e| PushError::Connection(format!("APNs topic: {e}")))?;
        Ok(ApnsProvider {
            cfg,
            connector,
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            authority,
            topic,
            jwt: Mutex::new(None),
            jwt_made: AtomicU64::new(0),
            connects: AtomicU64::new(0),
        })
    }

    /// How many provider tokens were generated so far (tests, metrics).
    pub fn jwt_generations(&self) -> u64 {
        self.jwt_made.load(Ordering::Relaxed)
    }

    /// How many HTTP/2 connections were opened so far.
    pub fn connections(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// The `authorization` header value (`bearer <provider token>`), the cached token unless
    /// it is older than the refresh interval or `force`.
    fn provider_token(&self, force: bool) -> Result<http::HeaderValue, PushError> {
        let mut guard = self
            .jwt
            .lock()
            .map_err(|_| PushError::Connection("jwt lock poisoned".into()))?;
        if !force
            && let Some(c) = guard.as_ref()
            && c.made.elapsed() < self.cfg.refresh()
        {
            return Ok(c.header.clone());
        }
        let token = apns_provider_token(
            &self.cfg.key,
            &self.cfg.key_id,
            &self.cfg.team_id,
            crate::unix_now(),
            self.cfg.sig_format,
        )
        .map_err(|e| PushError::Rejected {
            status: 0,
            reason: format!("cannot sign provider token: {e}"),
        })?;
        let header = http::HeaderValue::try_from(format!("bearer {token}")).map_err(|e| {
            PushError::Rejected {
                status: 0,
                reason: format!("provider token header: {e}"),
            }
        })?;
        self.jwt_made.fetch_add(1, Ordering::Relaxed);
        *guard = Some(CachedJwt {
            header: header.clone(),
            made: Instant::now(),
        });
        Ok(header)
    }

    /// The open connection's request handle, if it is still open.
    fn open_sender(&self) -> Option<SendRequest<Body>> {
        let guard = self.conn.lock().ok()?;
        guard.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    async fn sender(&self) -> Result<SendRequest<Body>, PushError> {
        if let Some(s) = self.open_sender() {
            return Ok(s);
        }
        let _connecting = self.connecting.lock().await;
        // opened by another request while this one waited
        if let Some(s) = self.open_sender() {
            return Ok(s);
        }
        let tls = http_util::connect_tls(
            &self.connector,
            &self.cfg.host,
            self.cfg.port,
            self.cfg.connect_timeout,
        )
        .await
        .map_err(PushError::Connection)?;
        if tls.ssl().selected_alpn_protocol() != Some(b"h2") {
            return Err(PushError::Connection("server did not select h2".into()));
        }
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(60))
            .keep_alive_timeout(Duration::from_secs(20))
            .handshake::<_, Body>(TokioIo::new(http_util::CoalescingWriter::new(tls)))
            .await
            .map_err(|e| PushError::Connection(format!("h2 handshake: {e}")))?;
        let label = self.cfg.label;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(provider = label, "APNs connection closed: {e}");
            }
        });
        self.connects.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut g) = self.conn.lock() {
            *g = Some(sender.clone());
        }
        Ok(sender)
    }

    fn drop_connection(&self) {
        if let Ok(mut g) = self.conn.lock() {
            *g = None;
        }
    }

    fn request(
        &self,
        d: &Delivery<'_>,
        token: &str,
        authorization: http::HeaderValue,
    ) -> Result<http::Request<Body>, PushError> {
        let bad = |e: &dyn std::fmt::Display| PushError::Rejected {
            status: 0,
            reason: format!("request: {e}"),
        };
        let mut path = String::with_capacity(10 + token.len());
        path.push_str("/3/device/");
        path.push_str(token);
        let uri = http::Uri::builder()
            .scheme(http::uri::Scheme::HTTPS)
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| bad(&e))?;
        let mut b = http::Request::builder()
            .method(http::Method::POST)
            .uri(uri)
            .header(http::header::AUTHORIZATION, authorization)
            .header("apns-topic", self.topic.clone())
            .header(
                "apns-push-type",
                http::HeaderValue::from_static(d.push_type.apns_value()),
            )
            .header("apns-id", d.job_id.to_uuid());
        if let Some(p) = d.priority {
            b = b.header("apns-priority", p.to_string());
        }
        if let Some(e) = d.expires_at {
            b = b.header("apns-expiration", e.to_string());
        }
        if let Some(c) = d.collapse_id {
            b = b.header("apns-collapse-id", c);
        }
        b.body(http_util::full(Bytes::copy_from_slice(d.payload)))
            .map_err(|e| bad(&e))
    }

    async fn send_inner(&self, d: Delivery<'_>) -> Result<(), PushError> {
        let DeviceAddress::Apns { token, .. } = d.address else {
            return Err(PushError::NoProvider("apns"));
        };
        if d.payload.len() > self.cfg.max_payload {
            return Err(PushError::PayloadTooLarge);
        }
        let mut refreshed = false;
        let mut reconnected = false;
        loop {
            let jwt = self.provider_token(false)?;
            let mut sender = match self.sender().await {
                Ok(s) => s,
                Err(e) if !reconnected => {
                    reconnected = true;
                    tracing::debug!(
                        provider = self.cfg.label,
                        "APNs connect failed, retrying: {e}"
                    );
                    continue;
                }
                Err(e) => return Err(e),
            };
            let req = self.request(&d, token, jwt)?;
            let sent = tokio::time::timeout(self.cfg.request_timeout, async {
                sender
                    .ready()
                    .await
                    .map_err(|e| PushError::Connection(format!("h2 not ready: {e}")))?;
                let resp = sender
                    .send_request(req)
                    .await
                    .map_err(|e| PushError::Connection(format!("h2 request: {e}")))?;
                let status = resp.status().as_u16();
                let body = http_util::read_body(resp.into_body(), 16 * 1024)
                    .await
                    .map_err(|e| PushError::Connection(format!("h2 body: {e}")))?;
                Ok::<_, PushError>((status, body))
            })
            .await
            .unwrap_or_else(|_| Err(PushError::Connection("request timeout".into())));
            let (status, body) = match sent {
                Ok(r) => r,
                Err(e) => {
                    self.drop_connection();
                    if !reconnected {
                        reconnected = true;
                        continue;
                    }
                    return Err(e);
                }
            };
            if status == 200 {
                return Ok(());
            }
            let reason = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_string))
                .unwrap_or_default();
            let err = apns_error(status, &reason);
            match err {
                PushError::ProviderTokenExpired if !refreshed => {
                    refreshed = true;
                    self.provider_token(true)?;
                    continue;
                }
                PushError::Unavailable { .. } => {
                    // 503 / 5xx / 410 with another reason: reconnect for the next attempt.
                    self.drop_connection();
                    return Err(err);
                }
                _ => return Err(err),
            }
        }
    }
}

impl Provider for ApnsProvider {
    fn name(&self) -> &'static str {
        self.cfg.label
    }

    fn send<'a>(&'a self, d: Delivery<'a>) -> SendFuture<'a> {
        Box::pin(self.send_inner(d))
    }
}
