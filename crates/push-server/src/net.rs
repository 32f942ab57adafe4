//! The network channel between ntf-servers (and devices registering handles) and a separate
//! push-server: the server side ([`serve`], [`Credentials`], [`ServerLimits`]). The wire types,
//! the line codecs and the client ([`RemoteGateway`]) are in `push_api::remote` (re-exported
//! here), so that an ntf-server reaches a remote push-server without linking this crate.
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
//! id, so a retry after a lost response is delivered once (see `push_api::remote`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hush_server_common::limits::IpKey;
use hush_server_common::{IpConnLimiter, KeyedRateLimiter, LogThrottle, Rate, RateLimiter};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_openssl::SslStream;

use crate::gateway::GatewayError;
use crate::service::PushService;
// The wire types, the line codecs and the client live in push-api (the ntf-server's side).
pub use push_api::remote::{
    Envelope, MAX_LINE, RemoteConfig, RemoteGateway, Request, decode_request, decode_response,
    encode_request, encode_response, parse_fingerprint,
};

/// Default `[LIMITS] max_connections`: concurrent connections served.
pub const MAX_CONNECTIONS: usize = 1024;
/// An authenticated connection with no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

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
        // one log throttle per refusal reason (the metric's label values)
        warn: crate::metrics::REFUSALS
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
