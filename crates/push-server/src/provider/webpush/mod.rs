//! Web Push (RFC 8030) with `aes128gcm` message encryption (RFC 8291, RFC 8188) and VAPID
//! (RFC 8292). The same provider serves UnifiedPush distributors, which speak RFC 8030.
//!
//! The job payload (the JSON the ntf-server built, itself end-to-end encrypted inside) is encrypted
//! for the subscription's keys as a single 4096-byte record, so it may be at most
//! [`MAX_PLAINTEXT`] bytes; the push service sees only the ciphertext.
//!
//! One HTTP/1.1 connection (TLS via OpenSSL, ALPN `http/1.1`) per push: endpoints are spread over
//! many hosts, so there is no single long-lived connection to keep as for APNs.

pub mod setup;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hkdf::Hkdf;
use hush_server_common::{DestinationPolicy, DestinationRefused, resolve_checked};
use hyper_util::rt::TokioIo;
use openssl::bn::BigNumContext;
use openssl::derive::Deriver;
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::SslConnector;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{Delivery, Provider, SendFuture};
use crate::error::{InvalidReason, PushError};
use crate::http_util::{self, Body, UrlParts};
use crate::job::{DeviceAddress, PushType};
use crate::jwt::{Es256Key, SigFormat};

/// RFC 8188 record size used for every push (the RFC 8030 minimum a push service must accept).
pub const RECORD_SIZE: u32 = 4096;
/// Header: salt(16) ‖ rs(4) ‖ idlen(1) ‖ keyid(65).
pub const HEADER_LEN: usize = 86;
/// Largest plaintext that fits one 4096-byte body: 4096 − 86 − 16 (tag) − 1 (delimiter).
pub const MAX_PLAINTEXT: usize = 4096 - HEADER_LEN - 16 - 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EceError {
    #[error("invalid P-256 public key")]
    PublicKey,
    #[error("auth secret must be 16 bytes")]
    AuthSecret,
    #[error("plaintext longer than {MAX_PLAINTEXT} bytes")]
    TooLong,
    #[error("malformed aes128gcm body")]
    Malformed,
    #[error("decryption failed")]
    Decrypt,
    #[error("crypto: {0}")]
    Crypto(String),
}

fn cerr(e: impl std::fmt::Display) -> EceError {
    EceError::Crypto(e.to_string())
}

/// P-256 ECDH: the 32-byte x coordinate of `private · peer`.
pub fn ecdh_p256(private: &EcKey<Private>, peer_uncompressed: &[u8]) -> Result<[u8; 32], EceError> {
    if peer_uncompressed.len() != 65 || peer_uncompressed.first() != Some(&4) {
        return Err(EceError::PublicKey);
    }
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(cerr)?;
    let mut ctx = BigNumContext::new().map_err(cerr)?;
    let point = EcPoint::from_bytes(&group, peer_uncompressed, &mut ctx)
        .map_err(|_| EceError::PublicKey)?;
    let peer = EcKey::from_public_key(&group, &point).map_err(|_| EceError::PublicKey)?;
    peer.check_key().map_err(|_| EceError::PublicKey)?;
    let peer = PKey::from_ec_key(peer).map_err(cerr)?;
    let ours = PKey::from_ec_key(private.clone()).map_err(cerr)?;
    let mut d = Deriver::new(&ours).map_err(cerr)?;
    d.set_peer(&peer).map_err(|_| EceError::PublicKey)?;
    let v = Zeroizing::new(d.derive_to_vec().map_err(cerr)?);
    v.as_slice()
        .try_into()
        .map_err(|_| EceError::Crypto("ECDH length".into()))
}

/// The RFC 8291 key schedule (Appendix A names).
#[derive(Clone, PartialEq, Eq)]
pub struct KeySchedule {
    pub ikm: [u8; 32],
    pub prk: [u8; 32],
    pub cek: [u8; 16],
    pub nonce: [u8; 12],
}

impl std::fmt::Debug for KeySchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySchedule(..)")
    }
}

/// RFC 8291 §3.3–3.4 + RFC 8188 §2.2–2.3.
pub fn key_schedule(
    ecdh_secret: &[u8; 32],
    auth_secret: &[u8],
    ua_public: &[u8],
    as_public: &[u8],
    salt: &[u8; 16],
) -> Result<KeySchedule, EceError> {
    if auth_secret.len() != 16 {
        return Err(EceError::AuthSecret);
    }
    let mut key_info = Vec::with_capacity(14 + 130);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(as_public);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth_secret), ecdh_secret)
        .expand(&key_info, &mut ikm)
        .map_err(cerr)?;
    let (prk, hk) = Hkdf::<Sha256>::extract(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    hk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .map_err(cerr)?;
    hk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .map_err(cerr)?;
    let prk: [u8; 32] = prk.into();
    Ok(KeySchedule {
        ikm,
        prk,
        cek,
        nonce,
    })
}

/// Encrypts `plaintext` for a subscription with the given sender key pair and salt (for the
/// RFC's example; real pushes use [`encrypt`], which draws both fresh).
pub fn encrypt_with(
    ua_public: &[u8],
    auth_secret: &[u8],
    plaintext: &[u8],
    as_key: &Es256Key,
    salt: &[u8; 16],
) -> Result<Vec<u8>, EceError> {
    use aes_gcm::aead::{Aead, KeyInit};
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EceError::TooLong);
    }
    let as_public = as_key.public_uncompressed().map_err(cerr)?;
    let secret = Zeroizing::new(ecdh_p256(as_key.ec_key(), ua_public)?);
    let ks = key_schedule(&secret, auth_secret, ua_public, &as_public, salt)?;
    let mut record = Zeroizing::new(Vec::with_capacity(plaintext.len() + 1));
    record.extend_from_slice(plaintext);
    record.push(2); // last (and only) record
    let cipher = aes_gcm::Aes128Gcm::new_from_slice(&ks.cek).map_err(cerr)?;
    let ct = cipher
        .encrypt(aes_gcm::Nonce::from_slice(&ks.nonce), record.as_slice())
        .map_err(cerr)?;
    let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
    out.extend_from_slice(salt);
    out.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    out.push(65);
    out.extend_from_slice(&as_public);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Encrypts with a fresh sender key pair and a fresh random salt.
pub fn encrypt(
    ua_public: &[u8],
    auth_secret: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, EceError> {
    let key = Es256Key::generate().map_err(cerr)?;
    let salt: [u8; 16] = rand::random();
    encrypt_with(ua_public, auth_secret, plaintext, &key, &salt)
}

/// Decrypts an `aes128gcm` body with the UA's private key (what the device does; used by tests and
/// the device simulator).
pub fn decrypt(ua_key: &Es256Key, auth_secret: &[u8], body: &[u8]) -> Result<Vec<u8>, EceError> {
    use aes_gcm::aead::{Aead, KeyInit};
    if body.len() < HEADER_LEN + 17 {
        return Err(EceError::Malformed);
    }
    let (header, ct) = body.split_at(HEADER_LEN);
    let salt: [u8; 16] = header[..16].try_into().map_err(|_| EceError::Malformed)?;
    if header[20] != 65 {
        return Err(EceError::Malformed);
    }
    let as_public = &header[21..86];
    let ua_public = ua_key.public_uncompressed().map_err(cerr)?;
    let secret = Zeroizing::new(ecdh_p256(ua_key.ec_key(), as_public)?);
    let ks = key_schedule(&secret, auth_secret, &ua_public, as_public, &salt)?;
    let cipher = aes_gcm::Aes128Gcm::new_from_slice(&ks.cek).map_err(cerr)?;
    let mut plain = cipher
        .decrypt(aes_gcm::Nonce::from_slice(&ks.nonce), ct)
        .map_err(|_| EceError::Decrypt)?;
    // Strip padding: trailing zeros, then the delimiter 2.
    while plain.last() == Some(&0) {
        plain.pop();
    }
    if plain.pop() != Some(2) {
        return Err(EceError::Malformed);
    }
    Ok(plain)
}

/// RFC 8292 VAPID: the application server's key and contact (`sub`).
#[derive(Debug, Clone)]
pub struct Vapid {
    pub key: Es256Key,
    /// `mailto:` or `https:` contact URI.
    pub subject: String,
    /// Token lifetime (≤ 24 h); default 12 h.
    pub lifetime: Duration,
}

impl Vapid {
    /// `Authorization` header value: `vapid t=<JWT>, k=<b64url public key>` (JOSE `r ‖ s`).
    pub fn authorization(&self, audience: &str, now: u64) -> Result<String, PushError> {
        let exp = now + self.lifetime.as_secs().min(24 * 3600);
        let header = r#"{"typ":"JWT","alg":"ES256"}"#;
        let claims =
            serde_json::json!({"aud": audience, "exp": exp, "sub": self.subject}).to_string();
        let jwt = self
            .key
            .sign_jwt(header, &claims, SigFormat::Jose)
            .map_err(|e| PushError::Rejected {
                status: 0,
                reason: format!("VAPID signing: {e}"),
            })?;
        let k = self
            .key
            .public_uncompressed()
            .map_err(|e| PushError::Rejected {
                status: 0,
                reason: format!("VAPID key: {e}"),
            })?;
        Ok(format!("vapid t={jwt}, k={}", URL_SAFE_NO_PAD.encode(k)))
    }
}

/// Which Web Push endpoints this server delivers to (`[WEBPUSH] destinations`, `allow_any_port`,
/// `allow_http`). An endpoint comes from a device, so unchecked it would let anyone make the
/// push-server POST into the operator's private network. Checked when a device registers it (a
/// clear error early) and again at every delivery on the very address connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointPolicy {
    /// Address ranges allowed (default: public only).
    pub destinations: DestinationPolicy,
    /// Any port; else only the scheme's default port (443, or 80 for `http://`). Default off.
    pub allow_any_port: bool,
    /// `http://` endpoints (a UnifiedPush distributor on this machine). Default off.
    pub allow_http: bool,
}

/// How long the registration-time check waits for DNS.
const REGISTER_DNS_TIMEOUT: Duration = Duration::from_secs(5);

impl EndpointPolicy {
    /// The checks that need no DNS: URL form, scheme, port, and an IP-literal host's range.
    /// Refusal texts never contain the endpoint (it identifies a device).
    pub fn check_url(&self, endpoint: &str) -> Result<UrlParts, String> {
        let url = UrlParts::parse(endpoint).ok_or_else(|| "bad endpoint URL".to_string())?;
        if !url.https && !self.allow_http {
            return Err("plain http endpoint not allowed ([WEBPUSH] allow_http = off)".into());
        }
        let default_port = if url.https { 443 } else { 80 };
        if url.port != default_port && !self.allow_any_port {
            return Err(format!(
                "{} ([WEBPUSH] allow_any_port = off)",
                DestinationRefused::Port(url.port)
            ));
        }
        if let Ok(ip) = url.host.parse::<IpAddr>() {
            self.destinations
                .check(ip)
                .map_err(|e| format!("{e} ([WEBPUSH] destinations = {})", self.destinations))?;
        }
        Ok(url)
    }

    /// Registration-time check: [`Self::check_url`], then the host's DNS answer (every address
    /// refused → refused). A name that does not resolve now is accepted (DNS may be down for a
    /// moment; delivery checks again).
    pub async fn check_registration(&self, endpoint: &str) -> Result<(), String> {
        let url = self.check_url(endpoint)?;
        let lookup = resolve_checked(&url.host, url.port, self.destinations);
        match tokio::time::timeout(REGISTER_DNS_TIMEOUT, lookup).await {
            Ok(Err(e @ (DestinationRefused::AllRefused(_) | DestinationRefused::Class(_)))) => Err(
                format!("{e} ([WEBPUSH] destinations = {})", self.destinations),
            ),
            Ok(Err(e @ DestinationRefused::Onion)) => Err(e.to_string()),
            _ => Ok(()),
        }
    }

    /// Delivery-time check: the allowed addresses to connect to (resolved once, here).
    async fn resolve(
        &self,
        url: &UrlParts,
        timeout: Duration,
    ) -> Result<Vec<SocketAddr>, PushError> {
        let lookup = resolve_checked(&url.host, url.port, self.destinations);
        let resolved = tokio::time::timeout(timeout, lookup)
            .await
            .map_err(|_| PushError::Connection("endpoint lookup timeout".into()))?;
        match resolved {
            Ok(a) => Ok(a),
            Err(DestinationRefused::Unresolved) => Err(PushError::Connection(
                "endpoint host did not resolve".into(),
            )),
            Err(e) => Err(PushError::DestinationRefused(format!(
                "{e} ([WEBPUSH] destinations = {})",
                self.destinations
            ))),
        }
    }
}

/// Web Push provider configuration.
#[derive(Debug, Clone)]
pub struct WebPushConfig {
    pub vapid: Vapid,
    /// Trust only these CAs (PEM) instead of the system store (local distributors, tests).
    pub ca_file: Option<PathBuf>,
    /// Allowed endpoints (ranges, ports, `http://`).
    pub endpoints: EndpointPolicy,
    /// TTL when the job has no expiry.
    pub default_ttl: Duration,
    pub timeout: Duration,
}

pub struct WebPushProvider {
    cfg: WebPushConfig,
    connector: SslConnector,
    /// Cached VAPID headers per audience: (audience, issued at, header).
    cache: Mutex<Vec<(String, u64, String)>>,
}

impl std::fmt::Debug for WebPushProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebPushProvider(..)")
    }
}

impl WebPushProvider {
    pub fn new(cfg: WebPushConfig) -> Result<WebPushProvider, PushError> {
        let connector = http_util::tls_connector(cfg.ca_file.as_deref(), b"\x08http/1.1")
            .map_err(|e| PushError::Connection(format!("TLS setup: {e}")))?;
        Ok(WebPushProvider {
            cfg,
            connector,
            cache: Mutex::new(Vec::new()),
        })
    }

    fn authorization(&self, audience: &str) -> Result<String, PushError> {
        let now = crate::unix_now();
        let refresh = self.cfg.vapid.lifetime.as_secs().min(24 * 3600) / 2;
        if let Ok(cache) = self.cache.lock()
            && let Some((_, at, h)) = cache.iter().find(|(a, _, _)| a == audience)
            && now.saturating_sub(*at) < refresh
        {
            return Ok(h.clone());
        }
        let h = self.cfg.vapid.authorization(audience, now)?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|(a, at, _)| a != audience && now.saturating_sub(*at) < refresh);
            if cache.len() < 1024 {
                cache.push((audience.to_string(), now, h.clone()));
            }
        }
        Ok(h)
    }

    async fn send_inner(&self, d: Delivery<'_>) -> Result<(), PushError> {
        let DeviceAddress::WebPush(sub) = d.address else {
            return Err(PushError::NoProvider("webpush"));
        };
        let url = UrlParts::parse(&sub.endpoint).ok_or(PushError::Rejected {
            status: 0,
            reason: "bad endpoint URL".into(),
        })?;
        if !url.https && !self.cfg.endpoints.allow_http {
            return Err(PushError::Rejected {
                status: 0,
                reason: "plain http endpoint not allowed".into(),
            });
        }
        // Port and IP-literal range (names are checked after the lookup below).
        self.cfg
            .endpoints
            .check_url(&sub.endpoint)
            .map_err(PushError::DestinationRefused)?;
        let body = match encrypt(&sub.p256dh, &sub.auth, d.payload) {
            Ok(b) => b,
            Err(EceError::TooLong) => return Err(PushError::PayloadTooLarge),
            Err(e) => {
                return Err(PushError::InvalidToken {
                    reason: InvalidReason::Bad,
                    detail: e.to_string(),
                });
            }
        };
        let now = crate::unix_now();
        let ttl = match d.expires_at {
            Some(e) => e.saturating_sub(now),
            None => self.cfg.default_ttl.as_secs(),
        };
        let urgency = match (d.push_type, d.priority) {
            (_, Some(10)) => "high",
            (PushType::Alert, None) => "high",
            _ => "normal",
        };
        let auth = self.authorization(&url.origin())?;
        let host_header = if (url.https && url.port == 443) || (!url.https && url.port == 80) {
            url.host.clone()
        } else {
            format!("{}:{}", url.host, url.port)
        };
        let mut req = http::Request::builder()
            .method("POST")
            .uri(url.path.as_str())
            .header("host", host_header)
            .header("ttl", ttl.to_string())
            .header("urgency", urgency)
            .header("content-encoding", "aes128gcm")
            .header("content-type", "application/octet-stream")
            .header("content-length", body.len().to_string())
            .header("authorization", auth);
        if let Some(topic) = d.collapse_id
            && topic.len() <= 32
            && topic
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            req = req.header("topic", topic);
        }
        let req =
            req.body(http_util::full(Bytes::from(body)))
                .map_err(|e| PushError::Rejected {
                    status: 0,
                    reason: format!("request: {e}"),
                })?;
        let timeout = self.cfg.timeout;
        // Resolve once and connect only to the checked addresses: no second lookup, so a DNS
        // answer that changes between check and connect (rebinding) cannot pick the address.
        let addrs = self.cfg.endpoints.resolve(&url, timeout).await?;
        let tcp = http_util::connect_addrs(&addrs, timeout)
            .await
            .map_err(PushError::Connection)?;
        let resp = if url.https {
            let tls = http_util::tls_over(&self.connector, tcp, &url.host, timeout)
                .await
                .map_err(PushError::Connection)?;
            send_http1(TokioIo::new(tls), req, timeout).await?
        } else {
            send_http1(TokioIo::new(tcp), req, timeout).await?
        };
        webpush_status(resp.0, resp.1)
    }
}

async fn send_http1<I>(
    io: I,
    req: http::Request<Body>,
    timeout: Duration,
) -> Result<(u16, Option<Duration>), PushError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let fut = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Body>(io)
            .await
            .map_err(|e| PushError::Connection(format!("http handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| PushError::Connection(format!("request: {e}")))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let _ = http_util::read_body(resp.into_body(), 64 * 1024).await;
        Ok((status, retry_after))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| PushError::Connection("request timeout".into()))?
}

/// RFC 8030 status → result.
pub fn webpush_status(status: u16, retry_after: Option<Duration>) -> Result<(), PushError> {
    match status {
        200..=202 => Ok(()),
        404 => Err(PushError::InvalidToken {
            reason: InvalidReason::Unregistered,
            detail: "404 Not Found".into(),
        }),
        410 => Err(PushError::InvalidToken {
            reason: InvalidReason::Expired,
            detail: "410 Gone".into(),
        }),
        413 => Err(PushError::PayloadTooLarge),
        429 => Err(PushError::RateLimited { retry_after }),
        500..=599 => Err(PushError::Unavailable {
            status,
            reason: String::new(),
        }),
        _ => Err(PushError::Rejected {
            status,
            reason: String::new(),
        }),
    }
}

impl Provider for WebPushProvider {
    fn name(&self) -> &'static str {
        "webpush"
    }

    fn send<'a>(&'a self, d: Delivery<'a>) -> SendFuture<'a> {
        Box::pin(self.send_inner(d))
    }
}
