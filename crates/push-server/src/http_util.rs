//! Small HTTP helpers shared by the providers, the sink and the metrics endpoint: OpenSSL TLS
//! client connections (the one TLS stack), bounded body reads, tiny HTTP/1.1 responses.

use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use openssl::ssl::{SslConnector, SslMethod, SslVersion};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

/// Request/response body type used everywhere in this crate.
pub type Body = Full<Bytes>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
}

/// A TLS client context: TLS ≥ 1.2, the given ALPN list (wire format), and either the system CA
/// store or only the CAs in `ca_file` (PEM).
pub fn tls_connector(
    ca_file: Option<&Path>,
    alpn_wire: &[u8],
) -> Result<SslConnector, openssl::error::ErrorStack> {
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    // Read whatever the socket has into OpenSSL's buffer (one read per burst of records instead
    // of two per record: its 5-byte header, then its body). Readers here always read on until
    // `Pending`, so bytes left in that buffer are never waited for.
    b.set_read_ahead(true);
    if !alpn_wire.is_empty() {
        b.set_alpn_protos(alpn_wire)?;
    }
    if let Some(ca) = ca_file {
        // Trust only this file (replace the store so the system CAs do not apply).
        b.set_cert_store(openssl::x509::store::X509StoreBuilder::new()?.build());
        b.set_ca_file(ca)?;
    }
    Ok(b.build())
}

/// Connects TCP + TLS to `host:port` with SNI and hostname (or IP) verification.
pub async fn connect_tls(
    connector: &SslConnector,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<SslStream<TcpStream>, String> {
    let fut = async {
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        tls_handshake(connector, tcp, host).await
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| "connect timeout".to_string())?
}

/// Connects TCP to the first of `addrs` that answers (addresses already resolved and checked by the
/// caller: no DNS lookup here), all within `timeout`.
pub async fn connect_addrs(
    addrs: &[std::net::SocketAddr],
    timeout: Duration,
) -> Result<TcpStream, String> {
    let fut = async {
        let mut last = "no address to connect to".to_string();
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    return Ok(tcp);
                }
                Err(e) => last = format!("connect: {e}"),
            }
        }
        Err(last)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| "connect timeout".to_string())?
}

/// TLS over `tcp` with SNI and verification of `host` (name or IP), within `timeout`.
pub async fn tls_over(
    connector: &SslConnector,
    tcp: TcpStream,
    host: &str,
    timeout: Duration,
) -> Result<SslStream<TcpStream>, String> {
    tokio::time::timeout(timeout, tls_handshake(connector, tcp, host))
        .await
        .map_err(|_| "tls handshake timeout".to_string())?
}

/// The TLS client handshake over `tcp` with SNI and verification of `host` (no time limit).
async fn tls_handshake(
    connector: &SslConnector,
    tcp: TcpStream,
    host: &str,
) -> Result<SslStream<TcpStream>, String> {
    let ssl = connector
        .configure()
        .and_then(|c| c.into_ssl(host))
        .map_err(|e| format!("tls setup: {e}"))?;
    let mut s = SslStream::new(ssl, tcp).map_err(|e| format!("tls setup: {e}"))?;
    Pin::new(&mut s)
        .connect()
        .await
        .map_err(|e| format!("tls handshake: {e}"))?;
    Ok(s)
}

/// A stream whose writes are gathered in memory and written to the inner stream as one write
/// when flushed (or when 64 KB are gathered). Over TLS, h2 writes each DATA frame's header and
/// its payload separately and flushes after each DATA frame: two TLS records and two `send`
/// calls per request, one with this.
pub struct CoalescingWriter<S> {
    inner: S,
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    pos: usize,
    /// The inner stream answered `Pending` to a write of `buf[pos..]`: that write must be
    /// completed (OpenSSL retries it with the same bytes) before `buf` grows.
    stalled: bool,
}

/// Most bytes gathered before they are written.
const COALESCE_LIMIT: usize = 64 * 1024;

impl<S> CoalescingWriter<S> {
    pub fn new(inner: S) -> CoalescingWriter<S> {
        CoalescingWriter {
            inner,
            buf: Vec::new(),
            pos: 0,
            stalled: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> CoalescingWriter<S> {
    fn poll_drain(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while self.pos < self.buf.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.pos..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.stalled = false;
                    self.pos += n;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.stalled = true;
                    return Poll::Pending;
                }
            }
        }
        self.buf.clear();
        self.pos = 0;
        Poll::Ready(Ok(()))
    }

    /// Room for more bytes (writing out what is gathered when it is full or stalled).
    fn poll_room(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.stalled || self.buf.len() >= COALESCE_LIMIT {
            std::task::ready!(self.poll_drain(cx))?;
        }
        std::task::Poll::Ready(Ok(COALESCE_LIMIT - self.buf.len()))
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CoalescingWriter<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for CoalescingWriter<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let room = std::task::ready!(self.poll_room(cx))?;
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        std::task::Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let mut room = std::task::ready!(self.poll_room(cx))?;
        let mut n = 0;
        for b in bufs {
            if room == 0 {
                break;
            }
            let k = b.len().min(room);
            self.buf.extend_from_slice(&b[..k]);
            room -= k;
            n += k;
        }
        std::task::Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads a whole body, at most `limit` bytes.
pub async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, String>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(e.to_string()),
    }
}

/// Splits an `http(s)://host[:port]/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl UrlParts {
    pub fn parse(url: &str) -> Option<UrlParts> {
        let uri: http::Uri = url.parse().ok()?;
        let https = match uri.scheme_str()? {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return None;
        }
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        Some(UrlParts {
            https,
            host: host.to_string(),
            port,
            path,
        })
    }

    /// `scheme://host[:port]` (the VAPID audience).
    pub fn origin(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        let scheme = if self.https { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}:{}", self.port)
        }
    }
}

/// A self-signed P-256 certificate for `names` (DNS names or IP addresses as SANs), valid for
/// `days`. Returns (certificate PEM, PKCS#8 key PEM).
pub fn self_signed_cert(
    common_name: &str,
    names: &[&str],
    days: u32,
) -> Result<(Vec<u8>, Vec<u8>), openssl::error::ErrorStack> {
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
    use openssl::x509::{X509, X509NameBuilder};

    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    let not_before = Asn1Time::days_from_now(0)?;
    let not_after = Asn1Time::days_from_now(days)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    if !names.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for n in names {
            if n.parse::<std::net::IpAddr>().is_ok() {
                san.ip(n);
            } else {
                san.dns(n);
            }
        }
        let ext = san.build(&b.x509v3_context(None, None))?;
        b.append_extension(ext)?;
    }
    b.sign(&key, MessageDigest::sha256())?;
    let cert = b.build();
    Ok((cert.to_pem()?, key.private_key_to_pem_pkcs8()?))
}

/// SHA-256 of a certificate's DER (the pinned fingerprint).
pub fn cert_fingerprint(cert_pem: &[u8]) -> Result<[u8; 32], openssl::error::ErrorStack> {
    let cert = openssl::x509::X509::from_pem(cert_pem)?;
    Ok(openssl::sha::sha256(&cert.to_der()?))
}

/// A TLS server context from PEM certificate + key, with the given ALPN protocols (first match in
/// the server's order).
pub fn tls_acceptor(
    cert_pem: &[u8],
    key_pem: &[u8],
    alpn: &'static [&'static [u8]],
    tls13_only: bool,
) -> Result<openssl::ssl::SslAcceptor, openssl::error::ErrorStack> {
    use openssl::ssl::{AlpnError, SslAcceptor};
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    // as in `tls_connector`
    b.set_read_ahead(true);
    if tls13_only {
        b.set_min_proto_version(Some(SslVersion::TLS1_3))?;
    }
    let cert = openssl::x509::X509::from_pem(cert_pem)?;
    let key = openssl::pkey::PKey::private_key_from_pem(key_pem)?;
    b.set_certificate(&cert)?;
    b.set_private_key(&key)?;
    b.check_private_key()?;
    if !alpn.is_empty() {
        b.set_alpn_select_callback(move |_, client| {
            let mut p = client;
            let mut offered = Vec::new();
            while let Some((&len, rest)) = p.split_first() {
                let len = usize::from(len);
                if rest.len() < len {
                    break;
                }
                offered.push(&rest[..len]);
                p = &rest[len..];
            }
            for ours in alpn {
                if let Some(o) = offered.iter().find(|o| **o == *ours) {
                    return Ok(*o);
                }
            }
            Err(AlpnError::ALERT_FATAL)
        });
    }
    Ok(b.build())
}
