//! The network channel between ntf-servers (and devices registering handles) and a separate
//! push-server.
//!
//! Transport: TLS 1.3 (OpenSSL). The push-server has a self-signed P-256 certificate made by
//! `push-server init`; clients **pin the SHA-256 fingerprint of that certificate** (file
//! `fingerprint` in the push-server's directory) instead of using CAs. ntf-servers then
//! authenticate with a per-ntf-server **bearer credential** (random 32 bytes, base64url; the
//! `[CLIENTS]` section of `push-server.ini` maps a name to each credential; compared in constant
//! time). Feedback is kept per client name.
//!
//! Framing: one JSON object per line (`\n`), at most [`MAX_LINE`] bytes; strictly request →
//! response on a connection. Requests: `{"id":N,"op":"hello","credential":"…"}` (first, for
//! ntf-servers), `{"id":N,"op":"submit","job":{…}}`, `{"id":N,"op":"feedback","after":S,"max":M}`,
//! `{"id":N,"op":"ack_feedback","up_to":S}`, `{"id":N,"op":"ping"}` and, without credential (devices),
//! `{"id":N,"op":"register","address":{…}}`. Responses: `{"id":N,"ok":…}` or
//! `{"id":N,"err":{"code":"…","message":"…"}}`. An unauthenticated `submit`/`feedback` is refused
//! with `auth` and the connection is closed.
//!
//! Abuse limits ([`ServerLimits`], `[LIMITS]`): the TLS handshake and the first request must
//! arrive within `handshake_timeout` (15 s; an anonymous connection also gets no longer between
//! requests); connections are capped in total, per peer address (optional), and anonymous ones
//! cannot take the slots reserved for authenticated ntf-servers; `register` without credential is
//! rate-limited (whole server and per IPv4 address / IPv6 /64; error `rate_limited`) and its
//! stored registrations are capped (error `capacity`); a Web Push endpoint outside
//! `[WEBPUSH] destinations` / `allow_any_port` is refused (error `destination_refused`). Refusals
//! are counted in `push_refused_total{reason}` and logged at most once a minute per reason,
//! without the peer address.
//!
//! The client reconnects on I/O errors and retries a request once: `submit` is idempotent by job
//! id, so a retry after a lost response is delivered once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hush_server_common::limits::IpKey;
use hush_server_common::{IpConnLimiter, KeyedRateLimiter, LogThrottle, Rate, RateLimiter};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_openssl::SslStream;

use crate::gateway::{FeedbackEvent, GatewayError, PushGateway, SubmitOutcome};
use crate::handle::PushHandle;
use crate::job::{DeviceAddress, PushJob};
use crate::service::PushService;

/// Longest request or response line.
pub const MAX_LINE: usize = 256 * 1024;
/// Default `[LIMITS] max_connections`: concurrent connections served.
pub const MAX_CONNECTIONS: usize = 1024;
/// An authenticated connection with no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// A request (`op` and its fields). Public for the fuzz target and its corpus replay
/// (`fuzz/fuzz_targets/bodies/push.rs`), like [`Envelope`] and the line codecs below.
#[doc(hidden)]
#[derive(Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Hello { credential: String },
    Submit { job: PushJob },
    Feedback { after: u64, max: u32 },
    AckFeedback { up_to: u64 },
    Register { address: DeviceAddress },
    Ping,
}

/// One request line: `{"id":N,"op":…}`.
#[doc(hidden)]
#[derive(Debug, PartialEq, Deserialize, Serialize)]
pub struct Envelope {
    pub id: u64,
    #[serde(flatten)]
    pub req: Request,
}

/// The server's reading of a request line: the request, or the id to answer with (0 if the
/// line has none) and the `protocol` error.
#[doc(hidden)]
pub fn decode_request(line: &[u8]) -> Result<Envelope, (u64, GatewayError)> {
    serde_json::from_slice::<Envelope>(line).map_err(|e| {
        let id = serde_json::from_slice::<Value>(line)
            .ok()
            .and_then(|v| v.get("id").and_then(Value::as_u64))
            .unwrap_or(0);
        (id, GatewayError::Protocol(format!("bad request: {e}")))
    })
}

/// The client's request line (with the `\n`).
#[doc(hidden)]
pub fn encode_request(env: &Envelope) -> Result<Vec<u8>, GatewayError> {
    let mut out = serde_json::to_vec(env).map_err(|e| GatewayError::Protocol(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// The server's response line (with the `\n`): `{"id":N,"ok":…}` or `{"id":N,"err":…}`.
#[doc(hidden)]
pub fn encode_response(id: u64, result: &Result<Value, GatewayError>) -> Result<Vec<u8>, String> {
    let resp = match result {
        Ok(v) => json!({"id": id, "ok": v}),
        Err(e) => json!({"id": id, "err": {"code": e.code(), "message": e.to_string()}}),
    };
    let mut out = serde_json::to_vec(&resp).map_err(|e| e.to_string())?;
    out.push(b'\n');
    Ok(out)
}

/// The client's reading of the response line to request `id`: the `ok` value or the error.
#[doc(hidden)]
pub fn decode_response(line: &[u8], id: u64) -> Result<Value, GatewayError> {
    let v: Value =
        serde_json::from_slice(line).map_err(|e| GatewayError::Protocol(e.to_string()))?;
    if v.get("id").and_then(Value::as_u64) != Some(id) {
        return Err(GatewayError::Protocol("response id mismatch".into()));
    }
    if let Some(ok) = v.get("ok") {
        return Ok(ok.clone());
    }
    let err = v.get("err").cloned().unwrap_or(Value::Null);
    let code = err
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("protocol");
    let msg = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Err(GatewayError::from_code(code, msg))
}

/// ntf-server credentials (name → SHA-256 of the credential text).
#[derive(Clone, Default)]
pub struct Credentials {
    by_hash: Vec<([u8; 32], String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} clients)", self.by_hash.len())
    }
}

impl Credentials {
    pub fn new(clients: &HashMap<String, String>) -> Credentials {
        Credentials {
            by_hash: clients
                .iter()
                .map(|(name, cred)| (openssl::sha::sha256(cred.as_bytes()), name.clone()))
                .collect(),
        }
    }

    /// The client name for a credential (constant-time comparison of hashes).
    pub fn check(&self, credential: &str) -> Option<String> {
        let h = openssl::sha::sha256(credential.as_bytes());
        let mut found = None;
        for (hash, name) in &self.by_hash {
            if openssl::memcmp::eq(hash, &h) {
                found = Some(name.clone());
            }
        }
        found
    }
}

/// A new random credential (32 bytes, base64url).
pub fn new_credential() -> String {
    use base64::Engine as _;
    let b: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Abuse limits of the listener (`[LIMITS]`, `[TRANSPORT] handshake_timeout`).
///
/// Every connection is anonymous until a `hello` with a valid credential. A new connection takes
/// one of the `max_connections − reserved_connections` anonymous slots, or, when they are all
/// taken, one of the `reserved_connections` slots, which it keeps only if it authenticates: a
/// connection whose first request is anything but a valid `hello` is answered `busy` and closed
/// while it holds a reserved slot. So anonymous peers (devices registering, or a flood) can hold at
/// most the anonymous slots, and ntf-servers still get in.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Concurrent connections, all kinds.
    pub max_connections: usize,
    /// Of those, kept for authenticated ntf-servers (less than `max_connections`).
    pub reserved_connections: usize,
    /// Concurrent connections per IPv4 address / IPv6 /64 (0 = no cap).
    pub max_connections_per_ip: u32,
    /// TLS handshake + first request, and the gap between requests of an anonymous connection.
    pub handshake_timeout: Duration,
    /// `register` without credential allowed.
    pub anonymous_registrations: bool,
    /// Anonymous registrations, whole server.
    pub register_rate: Rate,
    /// Anonymous registrations per IPv4 address / IPv6 /64.
    pub register_rate_per_ip: Rate,
}

/// Default `[TRANSPORT] handshake_timeout`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: MAX_CONNECTIONS,
            reserved_connections: 64,
            max_connections_per_ip: 0,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            anonymous_registrations: true,
            register_rate: Rate::new(20.0, 200),
            register_rate_per_ip: Rate::new(1.0, 10),
        }
    }
}

/// Peer addresses tracked by the per-address registration limit.
const MAX_RATE_KEYS: usize = 65_536;
/// One warn line per reason at most this often.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// A connection slot: anonymous or reserved for authenticated peers (the permit is held for its
/// `Drop`).
#[allow(dead_code)]
enum Slot {
    Anonymous(OwnedSemaphorePermit),
    Reserved(OwnedSemaphorePermit),
}

struct Listener {
    acceptor: openssl::ssl::SslAcceptor,
    service: PushService,
    credentials: Credentials,
    limits: ServerLimits,
    anonymous_slots: Arc<Semaphore>,
    reserved_slots: Arc<Semaphore>,
    per_ip: IpConnLimiter,
    register_all: RateLimiter,
    register_ip: KeyedRateLimiter<IpKey>,
    warn: HashMap<&'static str, LogThrottle>,
}

impl Listener {
    /// Counts a refusal and logs it (throttled, never the peer address).
    fn refused(&self, reason: &'static str, what: &str) {
        self.service.metrics().refused(reason);
        if let Some(t) = self.warn.get(reason)
            && let Some(held) = t.check()
        {
            tracing::warn!(
                reason,
                suppressed = held,
                "push-server: {what} (at most one such line a minute)"
            );
        }
    }

    /// Moves an authenticated connection to a reserved slot when one is free (freeing an
    /// anonymous one).
    fn promote(&self, slot: &mut Slot) {
        if let Slot::Anonymous(_) = slot
            && let Ok(p) = self.reserved_slots.clone().try_acquire_owned()
        {
            *slot = Slot::Reserved(p);
        }
    }

    /// An anonymous connection must hold an anonymous slot.
    fn demote(&self, slot: &mut Slot) -> bool {
        match slot {
            Slot::Anonymous(_) => true,
            Slot::Reserved(_) => match self.anonymous_slots.clone().try_acquire_owned() {
                Ok(p) => {
                    *slot = Slot::Anonymous(p);
                    true
                }
                Err(_) => false,
            },
        }
    }
}

const REASONS: &[&str] = &[
    "max_connections",
    "per_ip",
    "anonymous_connections",
    "handshake_timeout",
    "register_rate",
    "register_rate_per_ip",
    "anonymous_disabled",
];

/// Serves the push-server protocol on `listener` until `shutdown` becomes true.
pub async fn serve(
    listener: TcpListener,
    acceptor: openssl::ssl::SslAcceptor,
    service: PushService,
    credentials: Credentials,
    limits: ServerLimits,
    shutdown: watch::Receiver<bool>,
) {
    let max = limits.max_connections.max(1);
    let reserved = limits.reserved_connections.min(max - 1);
    let shared = Arc::new(Listener {
        acceptor,
        service,
        credentials,
        anonymous_slots: Arc::new(Semaphore::new(max - reserved)),
        reserved_slots: Arc::new(Semaphore::new(reserved)),
        per_ip: IpConnLimiter::new(limits.max_connections_per_ip),
        register_all: RateLimiter::new(limits.register_rate),
        register_ip: KeyedRateLimiter::new(limits.register_rate_per_ip, MAX_RATE_KEYS),
        warn: REASONS
            .iter()
            .map(|r| (*r, LogThrottle::new(WARN_INTERVAL)))
            .collect(),
        limits,
    });
    let mut backoff = hush_server_common::AcceptBackoff::new("push");
    loop {
        let Some((tcp, peer)) = hush_server_common::accept_until(&listener, &mut backoff, || {
            let mut shutdown = shutdown.clone();
            async move {
                let _ = shutdown.wait_for(|s| *s).await;
            }
        })
        .await
        else {
            return;
        };
        let ip = peer.ip();
        let Some(ip_guard) = shared.per_ip.try_acquire(ip) else {
            shared.refused(
                "per_ip",
                "connection refused: max_connections_per_ip reached for a peer address",
            );
            drop(tcp);
            continue;
        };
        let slot = match shared.anonymous_slots.clone().try_acquire_owned() {
            Ok(p) => Slot::Anonymous(p),
            Err(_) => match shared.reserved_slots.clone().try_acquire_owned() {
                Ok(p) => Slot::Reserved(p),
                Err(_) => {
                    shared.refused(
                        "max_connections",
                        "connection refused: max_connections reached",
                    );
                    drop(tcp);
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(tcp, ip, slot, &shared, shutdown).await {
                tracing::debug!("push-server connection ended: {e}");
            }
            drop(ip_guard);
        });
    }
}

async fn connection(
    tcp: TcpStream,
    ip: IpAddr,
    mut slot: Slot,
    shared: &Listener,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    // One deadline for the TLS handshake and the first request.
    let deadline = tokio::time::Instant::now() + shared.limits.handshake_timeout;
    let ssl = openssl::ssl::Ssl::new(shared.acceptor.context()).map_err(|e| e.to_string())?;
    let mut tls = SslStream::new(ssl, tcp).map_err(|e| e.to_string())?;
    match tokio::time::timeout_at(deadline, Pin::new(&mut tls).accept()).await {
        Err(_) => {
            shared.refused(
                "handshake_timeout",
                "connection closed: no TLS handshake within handshake_timeout",
            );
            return Err("TLS handshake timeout".into());
        }
        Ok(r) => r.map_err(|e| format!("TLS handshake: {e}"))?,
    }
    let (r, mut w) = tokio::io::split(tls);
    let mut reader = BufReader::new(r);
    let mut client: Option<String> = None;
    let mut first = true;
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_LINE as u64 + 1);
        let until = if first {
            deadline
        } else if client.is_some() {
            tokio::time::Instant::now() + IDLE_TIMEOUT
        } else {
            tokio::time::Instant::now() + shared.limits.handshake_timeout
        };
        let n = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
            r = tokio::time::timeout_at(until, limited.read_until(b'\n', &mut line)) => match r {
                Err(_) if first => {
                    shared.refused(
                        "handshake_timeout",
                        "connection closed: no request within handshake_timeout",
                    );
                    return Err("no first request in time".into());
                }
                Err(_) => return Err("idle timeout".into()),
                Ok(r) => r.map_err(|e| e.to_string())?,
            }
        };
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') {
            return Err("line too long or truncated".into());
        }
        first = false;
        let decoded = decode_request(&line);
        // Anything but a `hello` makes (or keeps) the connection anonymous: it must hold an
        // anonymous slot; a reserved one is only for authenticated peers.
        let hello = matches!(
            decoded,
            Ok(Envelope {
                req: Request::Hello { .. },
                ..
            })
        );
        let (id, result, close) = match decoded {
            Ok(Envelope { id, .. }) | Err((id, _))
                if client.is_none() && !hello && !shared.demote(&mut slot) =>
            {
                shared.refused(
                    "anonymous_connections",
                    "anonymous connection refused: all anonymous slots taken (the rest are \
                     reserved for authenticated ntf-servers)",
                );
                (
                    id,
                    Err(GatewayError::Busy(
                        "no free connection slot for clients without credential, retry later"
                            .into(),
                    )),
                    true,
                )
            }
            Err((id, e)) => (id, Err(e), false),
            Ok(Envelope { id, req }) => {
                let (r, close) = handle(req, ip, shared, &mut client).await;
                if client.is_some() {
                    shared.promote(&mut slot);
                }
                (id, r, close)
            }
        };
        let out = encode_response(id, &result)?;
        // A peer that does not read its responses must not hold its slot forever either.
        let write_limit = if client.is_some() {
            IDLE_TIMEOUT
        } else {
            shared.limits.handshake_timeout
        };
        tokio::time::timeout(write_limit, async {
            w.write_all(&out).await?;
            w.flush().await
        })
        .await
        .map_err(|_| "write timeout".to_string())?
        .map_err(|e| e.to_string())?;
        if close {
            let _ = tokio::time::timeout(write_limit, w.shutdown()).await;
            return Ok(());
        }
    }
}

async fn handle(
    req: Request,
    ip: IpAddr,
    shared: &Listener,
    client: &mut Option<String>,
) -> (Result<Value, GatewayError>, bool) {
    let service = &shared.service;
    match req {
        Request::Ping => (Ok(json!("pong")), false),
        Request::Hello { credential } => match shared.credentials.check(&credential) {
            Some(name) => {
                *client = Some(name);
                (Ok(json!({})), false)
            }
            None => (Err(GatewayError::Auth), true),
        },
        Request::Register { address } => {
            let r = if client.is_some() {
                service.register(&address).await
            } else {
                if !shared.limits.anonymous_registrations {
                    shared.refused(
                        "anonymous_disabled",
                        "registration without credential refused (anonymous_registrations = off)",
                    );
                    return (Err(GatewayError::Auth), true);
                }
                // Per address first, so that one flooding address does not drain the global
                // bucket that every other device shares.
                if !shared.register_ip.allow(&IpKey::from(ip)) {
                    shared.refused(
                        "register_rate_per_ip",
                        "registration without credential refused: register_rate_per_ip reached",
                    );
                    return (
                        Err(GatewayError::RateLimited(
                            "too many registrations from this address, retry later".into(),
                        )),
                        false,
                    );
                }
                if !shared.register_all.allow() {
                    shared.refused(
                        "register_rate",
                        "registration without credential refused: register_rate reached",
                    );
                    return (
                        Err(GatewayError::RateLimited(
                            "too many registrations, retry later".into(),
                        )),
                        false,
                    );
                }
                service.register_anonymous(&address).await
            };
            (r.map(|h| json!({"handle": h})), false)
        }
        Request::Submit { job } => {
            let Some(c) = client.as_deref() else {
                return (Err(GatewayError::Auth), true);
            };
            (
                service.submit(c, job).await.map(|o| json!({"outcome": o})),
                false,
            )
        }
        Request::Feedback { after, max } => {
            let Some(c) = client.as_deref() else {
                return (Err(GatewayError::Auth), true);
            };
            (
                service.feedback(c, after, max).await.and_then(|evs| {
                    serde_json::to_value(evs).map_err(|e| GatewayError::Protocol(e.to_string()))
                }),
                false,
            )
        }
        Request::AckFeedback { up_to } => {
            let Some(c) = client.as_deref() else {
                return (Err(GatewayError::Auth), true);
            };
            (
                service.ack_feedback(c, up_to).await.map(|_| json!({})),
                false,
            )
        }
    }
}

/// Where and how to reach a push-server.
#[derive(Clone)]
pub struct RemoteConfig {
    pub host: String,
    pub port: u16,
    /// SHA-256 of the push-server's certificate (DER).
    pub fingerprint: [u8; 32],
    /// Bearer credential (ntf-servers); `None` for devices (register only).
    pub credential: Option<String>,
    pub timeout: Duration,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Parses a fingerprint: 64 hex digits or 43 base64url characters.
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    let s = s.trim();
    let v = if s.len() == 64 {
        hex::decode(s).ok()?
    } else {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .ok()?
    };
    v.try_into().ok()
}

type ClientStream = SslStream<TcpStream>;

struct ClientConn {
    reader: BufReader<tokio::io::ReadHalf<ClientStream>>,
    writer: tokio::io::WriteHalf<ClientStream>,
}

/// Network implementation of [`PushGateway`] (and device registration).
pub struct RemoteGateway {
    cfg: RemoteConfig,
    connector: SslConnector,
    /// A small pool: each request takes the first free connection (requests on one connection
    /// are strictly sequential, so several let concurrent submits share a group commit).
    conns: Vec<tokio::sync::Mutex<Option<ClientConn>>>,
    next_conn: AtomicU64,
    next_id: AtomicU64,
}

impl std::fmt::Debug for RemoteGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteGateway({:?})", self.cfg)
    }
}

fn unavailable(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Unavailable(e.to_string())
}

impl RemoteGateway {
    /// Default number of pooled connections.
    pub const DEFAULT_CONNECTIONS: usize = 4;

    /// A gateway with [`Self::DEFAULT_CONNECTIONS`] pooled connections (opened on demand).
    pub fn new(cfg: RemoteConfig) -> Result<RemoteGateway, GatewayError> {
        RemoteGateway::with_connections(cfg, Self::DEFAULT_CONNECTIONS)
    }

    /// A gateway with up to `n` pooled connections (at least 1).
    pub fn with_connections(cfg: RemoteConfig, n: usize) -> Result<RemoteGateway, GatewayError> {
        let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(unavailable)?;
        b.set_min_proto_version(Some(SslVersion::TLS1_3))
            .map_err(unavailable)?;
        let pin = cfg.fingerprint;
        b.set_verify_callback(SslVerifyMode::PEER, move |_preverified, ctx| {
            if ctx.error_depth() != 0 {
                return true;
            }
            ctx.current_cert()
                .and_then(|c| c.to_der().ok())
                .map(|der| openssl::memcmp::eq(&openssl::sha::sha256(&der), &pin))
                .unwrap_or(false)
        });
        Ok(RemoteGateway {
            cfg,
            connector: b.build(),
            conns: (0..n.max(1))
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next_conn: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
        })
    }

    async fn connect(&self) -> Result<ClientConn, GatewayError> {
        let tcp = tokio::time::timeout(
            self.cfg.timeout,
            TcpStream::connect((self.cfg.host.as_str(), self.cfg.port)),
        )
        .await
        .map_err(|_| unavailable("connect timeout"))?
        .map_err(unavailable)?;
        let _ = tcp.set_nodelay(true);
        let mut conf = self.connector.configure().map_err(unavailable)?;
        conf.set_verify_hostname(false);
        let ssl = conf.into_ssl("push-server").map_err(unavailable)?;
        let mut tls = SslStream::new(ssl, tcp).map_err(unavailable)?;
        tokio::time::timeout(self.cfg.timeout, Pin::new(&mut tls).connect())
            .await
            .map_err(|_| unavailable("TLS timeout"))?
            .map_err(|e| unavailable(format!("TLS (certificate pin?): {e}")))?;
        // Belt and braces: the leaf must be the pinned certificate.
        let leaf_ok = tls
            .ssl()
            .peer_certificate()
            .and_then(|c| c.to_der().ok())
            .map(|der| openssl::memcmp::eq(&openssl::sha::sha256(&der), &self.cfg.fingerprint))
            .unwrap_or(false);
        if !leaf_ok {
            return Err(unavailable(
                "push-server certificate does not match the pin",
            ));
        }
        let (r, w) = tokio::io::split(tls);
        let mut conn = ClientConn {
            reader: BufReader::new(r),
            writer: w,
        };
        if let Some(cred) = &self.cfg.credential {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let req = Envelope {
                id,
                req: Request::Hello {
                    credential: cred.clone(),
                },
            };
            roundtrip(&mut conn, &req, self.cfg.timeout).await?;
        }
        Ok(conn)
    }

    async fn call(&self, req: Request) -> Result<Value, GatewayError> {
        // First free connection, else wait for the next one in turn.
        let mut guard = match self.conns.iter().find_map(|c| c.try_lock().ok()) {
            Some(g) => g,
            None => {
                let n = self.conns.len() as u64;
                let i = self.next_conn.fetch_add(1, Ordering::Relaxed) % n;
                let slot = self
                    .conns
                    .get(usize::try_from(i).unwrap_or(0))
                    .ok_or_else(|| unavailable("no connection slot"))?;
                slot.lock().await
            }
        };
        let env = Envelope {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            req,
        };
        if let Some(conn) = guard.as_mut() {
            match roundtrip(conn, &env, self.cfg.timeout).await {
                Err(e @ (GatewayError::Unavailable(_) | GatewayError::Protocol(_))) => {
                    // Broken connection (or out of sync): reconnect and retry once.
                    *guard = None;
                    tracing::debug!("push-server request failed, reconnecting: {e}");
                }
                other => return other,
            }
        }
        let mut conn = self.connect().await?;
        let r = roundtrip(&mut conn, &env, self.cfg.timeout).await;
        if !matches!(
            r,
            Err(GatewayError::Unavailable(_)
                | GatewayError::Protocol(_)
                | GatewayError::Auth
                | GatewayError::Busy(_))
        ) {
            *guard = Some(conn);
        }
        r
    }

    /// Split mode, device side: registers a device address and returns its push handle.
    pub async fn register(&self, address: DeviceAddress) -> Result<PushHandle, GatewayError> {
        let v = self.call(Request::Register { address }).await?;
        serde_json::from_value::<PushHandle>(v.get("handle").cloned().unwrap_or(Value::Null))
            .map_err(|e| GatewayError::Protocol(e.to_string()))
    }

    pub async fn ping(&self) -> Result<(), GatewayError> {
        self.call(Request::Ping).await.map(|_| ())
    }
}

async fn roundtrip(
    conn: &mut ClientConn,
    env: &Envelope,
    timeout: Duration,
) -> Result<Value, GatewayError> {
    let fut = async {
        let out = encode_request(env)?;
        conn.writer.write_all(&out).await.map_err(unavailable)?;
        conn.writer.flush().await.map_err(unavailable)?;
        let mut line = Vec::new();
        let n = (&mut conn.reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
            .map_err(unavailable)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Err(unavailable("connection closed"));
        }
        decode_response(&line, env.id)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| unavailable("request timeout"))?
}

impl PushGateway for RemoteGateway {
    async fn submit(&self, job: PushJob) -> Result<SubmitOutcome, GatewayError> {
        let v = self.call(Request::Submit { job }).await?;
        serde_json::from_value(v.get("outcome").cloned().unwrap_or(Value::Null))
            .map_err(|e| GatewayError::Protocol(e.to_string()))
    }

    async fn feedback(&self, after: u64, max: u32) -> Result<Vec<FeedbackEvent>, GatewayError> {
        let v = self.call(Request::Feedback { after, max }).await?;
        serde_json::from_value(v).map_err(|e| GatewayError::Protocol(e.to_string()))
    }

    async fn ack_feedback(&self, up_to: u64) -> Result<(), GatewayError> {
        self.call(Request::AckFeedback { up_to }).await.map(|_| ())
    }
}
