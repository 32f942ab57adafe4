//! The network protocol between ntf-servers (and devices registering handles) and a separate
//! push-server: the wire types and line codecs (shared with the server side,
//! `push_server::net`) and the client, [`RemoteGateway`].
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
//! The client reconnects on I/O errors and retries a request once: `submit` is idempotent by job
//! id, so a retry after a lost response is delivered once.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::gateway::{FeedbackEvent, GatewayError, PushGateway, SubmitOutcome};
use crate::handle::PushHandle;
use crate::job::{DeviceAddress, PushJob};

/// Longest request or response line.
pub const MAX_LINE: usize = 256 * 1024;

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
