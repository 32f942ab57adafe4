//! Minimal clients for the abuse runs: TCP from a chosen loopback source address, an NTF
//! connection, a push-server connection (JSON lines over pinned TLS) and a reader of the
//! apns-sink's read API.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hush_crypto::{DhSecret, Ed25519Secret};
use hush_proto::ntf::{NtfCommand, NtfResponse, decode_ntf_transmission, encode_ntf_transmission};
use hush_proto::transmission::{Transmission, authorized_bytes};
use hush_transport::{ClientConnection, TransportClient};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use push_api::remote::{Envelope, Request, decode_response, encode_request};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_openssl::SslStream;

use crate::LoadError;

/// TCP connection to `addr` from `source` (any port), or from the kernel's choice.
pub async fn tcp_from(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let s = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source {
        s.bind(SocketAddr::new(ip, 0))?;
    }
    let t = s.connect(addr).await?;
    let _ = t.set_nodelay(true);
    Ok(t)
}

/// One NTF connection (commands one at a time).
pub struct NtfConn {
    conn: ClientConnection,
}

/// Answer timeout of one NTF command.
const NTF_WAIT: Duration = Duration::from_secs(10);

impl NtfConn {
    pub async fn connect(
        addr: SocketAddr,
        key_hash: &[u8],
        source: Option<IpAddr>,
    ) -> Result<NtfConn, LoadError> {
        let tcp = tcp_from(addr, source).await?;
        let conn = TransportClient::ntf()
            .map_err(|e| LoadError::proto("ntf", e.to_string()))?
            .connect(tcp, key_hash)
            .await
            .map_err(|e| LoadError::proto("ntf", format!("connect: {e}")))?;
        Ok(NtfConn { conn })
    }

    /// Sends `command` for `entity`, signed with `key`, and returns the answer.
    pub async fn cmd(
        &mut self,
        key: &Ed25519Secret,
        entity: &[u8],
        command: &NtfCommand,
    ) -> Result<NtfResponse, LoadError> {
        let v = self.conn.version();
        let body = command
            .encode_checked(v)
            .map_err(|e| LoadError::proto("ntf", format!("encode: {e:?}")))?;
        let corr = hush_crypto::random_nonce();
        let auth = key
            .sign(&authorized_bytes(
                self.conn.session_id(),
                &corr,
                entity,
                &body,
            ))
            .to_vec();
        let t = Transmission {
            authorization: &auth,
            corr_id: &corr,
            entity_id: entity,
            command: &body,
            ..Default::default()
        };
        let mut out = Vec::new();
        encode_ntf_transmission(&mut out, &t, v)
            .map_err(|e| LoadError::proto("ntf", format!("encode: {e:?}")))?;
        self.conn
            .send(&[out])
            .await
            .map_err(|e| LoadError::proto("ntf", format!("send: {e}")))?;
        let block = tokio::time::timeout(NTF_WAIT, self.conn.recv())
            .await
            .map_err(|_| LoadError::Timeout("ntf answer"))?
            .map_err(|e| LoadError::proto("ntf", format!("receive: {e}")))?
            .map_err(|e| LoadError::proto("ntf", format!("block: {e:?}")))?;
        let ts = block
            .transmissions()
            .map_err(|e| LoadError::proto("ntf", format!("block: {e:?}")))?;
        let first = ts
            .first()
            .ok_or_else(|| LoadError::proto("ntf", "empty block"))?;
        let r = decode_ntf_transmission(first, v)
            .map_err(|e| LoadError::proto("ntf", format!("response: {e:?}")))?;
        if r.corr_id != corr {
            return Err(LoadError::proto("ntf", "answer to another command"));
        }
        NtfResponse::parse(r.command, v)
            .map_err(|e| LoadError::proto("ntf", format!("response: {e:?}")))
    }

    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}

/// Short label of an NTF answer for counting (`IDTKN`, `ERR AUTH`, …).
pub fn ntf_label(r: &NtfResponse) -> String {
    match r {
        NtfResponse::Err(e) => format!("ERR {e:?}"),
        r => r.tag().to_string(),
    }
}

/// A push-server connection from `source` (JSON lines over TLS 1.3, certificate pinned).
pub struct PushConn {
    reader: BufReader<tokio::io::ReadHalf<SslStream<TcpStream>>>,
    writer: tokio::io::WriteHalf<SslStream<TcpStream>>,
    next_id: AtomicU64,
}

const PUSH_WAIT: Duration = Duration::from_secs(10);

impl PushConn {
    pub async fn connect(
        addr: SocketAddr,
        fingerprint: [u8; 32],
        source: Option<IpAddr>,
    ) -> Result<PushConn, LoadError> {
        let p = |e: &dyn std::fmt::Display| LoadError::proto("push", e.to_string());
        let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| p(&e))?;
        b.set_min_proto_version(Some(SslVersion::TLS1_3))
            .map_err(|e| p(&e))?;
        b.set_verify_callback(SslVerifyMode::PEER, move |_, ctx| {
            if ctx.error_depth() != 0 {
                return true;
            }
            ctx.current_cert()
                .and_then(|c| c.to_der().ok())
                .map(|der| openssl::sha::sha256(&der) == fingerprint)
                .unwrap_or(false)
        });
        let connector = b.build();
        let tcp = tokio::time::timeout(PUSH_WAIT, tcp_from(addr, source))
            .await
            .map_err(|_| LoadError::Timeout("push-server connect"))??;
        let mut conf = connector.configure().map_err(|e| p(&e))?;
        conf.set_verify_hostname(false);
        let ssl = conf.into_ssl("push-server").map_err(|e| p(&e))?;
        let mut tls = SslStream::new(ssl, tcp).map_err(|e| p(&e))?;
        tokio::time::timeout(PUSH_WAIT, Pin::new(&mut tls).connect())
            .await
            .map_err(|_| LoadError::Timeout("push-server TLS"))?
            .map_err(|e| p(&e))?;
        let (r, w) = tokio::io::split(tls);
        Ok(PushConn {
            reader: BufReader::new(r),
            writer: w,
            next_id: AtomicU64::new(1),
        })
    }

    /// One request → its answer (`Ok(Err(code))` = the server's error answer).
    pub async fn call(&mut self, req: Request) -> Result<Result<Value, String>, LoadError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let out = encode_request(&Envelope { id, req })
            .map_err(|e| LoadError::proto("push", e.to_string()))?;
        let fut = async {
            self.writer.write_all(&out).await?;
            self.writer.flush().await?;
            let mut line = Vec::new();
            let n = (&mut self.reader)
                .take(push_api::remote::MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .await?;
            std::io::Result::Ok((n, line))
        };
        let (n, line) = tokio::time::timeout(PUSH_WAIT, fut)
            .await
            .map_err(|_| LoadError::Timeout("push-server answer"))??;
        if n == 0 || line.last() != Some(&b'\n') {
            return Err(LoadError::proto("push", "connection closed"));
        }
        Ok(decode_response(&line, id).map_err(|e| e.code().to_string()))
    }
}

/// What the apns-sink received, read continuously from its read API: pushes to tokens
/// starting with [`SinkWatch::COUNT_ONLY_PREFIX`] are only counted (the attacker's), the
/// others are kept by token until taken.
#[derive(Clone)]
pub struct SinkWatch {
    state: Arc<Mutex<SinkState>>,
    notify: Arc<tokio::sync::Notify>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
struct SinkState {
    total: u64,
    counted: u64,
    kept: HashMap<String, Vec<String>>,
    errors: u64,
}

impl SinkWatch {
    pub const COUNT_ONLY_PREFIX: &'static str = "dead";

    pub fn start(read_addr: SocketAddr) -> SinkWatch {
        let state = Arc::new(Mutex::new(SinkState::default()));
        let notify = Arc::new(tokio::sync::Notify::new());
        let (st, nt) = (state.clone(), notify.clone());
        let task = tokio::spawn(async move {
            let mut after = 0u64;
            loop {
                match sink_read(read_addr, after, 1000).await {
                    Ok(pushes) => {
                        let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                        for (seq, token, payload) in pushes {
                            after = after.max(seq);
                            s.total += 1;
                            if token.starts_with(Self::COUNT_ONLY_PREFIX) {
                                s.counted += 1;
                            } else {
                                s.kept.entry(token).or_default().push(payload);
                            }
                        }
                        drop(s);
                        nt.notify_waiters();
                    }
                    Err(_) => {
                        st.lock().unwrap_or_else(|e| e.into_inner()).errors += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        SinkWatch {
            state,
            notify,
            task: Arc::new(task),
        }
    }

    /// (all pushes, pushes to count-only tokens) seen so far.
    pub fn counts(&self) -> (u64, u64) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (s.total, s.counted)
    }

    /// Forgets the pushes to `token` received so far.
    pub fn drain(&self, token: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.kept.remove(token);
    }

    /// Waits up to `wait` for a push to `token`; returns its payload.
    pub async fn take(&self, token: &str, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(v) = s.kept.get_mut(token)
                    && !v.is_empty()
                {
                    return Some(v.remove(0));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

impl Drop for SinkWatch {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

/// `GET /received?after=&wait_ms=` → (seq, token, payload) of each push.
async fn sink_read(
    addr: SocketAddr,
    after: u64,
    wait_ms: u64,
) -> Result<Vec<(u64, String, String)>, LoadError> {
    let mut s = TcpStream::connect(addr).await?;
    let req = format!(
        "GET /received?after={after}&wait_ms={wait_ms} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(
        Duration::from_millis(wait_ms + 10_000),
        s.read_to_end(&mut buf),
    )
    .await
    .map_err(|_| LoadError::Timeout("apns-sink read API"))??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| LoadError::proto("apns-sink", "bad HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(LoadError::proto(
            "apns-sink",
            head.lines().next().unwrap_or(""),
        ));
    }
    Ok(body
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            Some((
                v["seq"].as_u64()?,
                v["token"].as_str()?.to_string(),
                v["payload"].as_str()?.to_string(),
            ))
        })
        .collect())
}

/// The verification code in a verification push (payload JSON as the ntf-server builds it).
pub fn verification_code(secret: &DhSecret, payload: &str) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_str(payload).ok()?;
    let nd = &v["notificationData"];
    let nonce: [u8; 24] = hush_proto::encoding::base64url_decode(nd["nonce"].as_str()?)
        .ok()?
        .try_into()
        .ok()?;
    let ct = hush_proto::encoding::base64url_decode(nd["verification"].as_str()?).ok()?;
    hush_crypto::cb_decrypt(secret, &nonce, &ct).ok()
}
