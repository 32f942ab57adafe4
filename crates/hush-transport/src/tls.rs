//! TLS 1.3 over OpenSSL with the reference profile (reference §2.2, §2.3, design.md §3).
//!
//! * TLS 1.3 only, `TLS_CHACHA20_POLY1305_SHA256`, groups X25519/X448, signature schemes
//!   Ed25519/Ed448; no session cache, no tickets, no renegotiation.
//! * Server: sends `[online leaf, offline CA]` (or whatever chain the identity has); ALPN is the
//!   first protocol of the *client's* list that the server supports, a client offering only
//!   unknown protocols is refused with a `no_application_protocol` alert, a client offering
//!   none gets no ALPN (legacy version range). The server requests a client certificate but
//!   does not require one; a presented chain is validated after the handshake (reference
//!   `validateClientCertificate`).
//! * Client: sends no SNI; the server chain is checked against the pinned key hash inside the
//!   TLS handshake by a verify callback ([`verify_server_chain`]; OpenSSL's store-based
//!   verdict is ignored because the trust anchor is chosen by the chain itself, §2.3), so a
//!   wrong server makes the handshake fail (alert) before the client's Finished; the check is repeated
//!   on the final chain after the handshake.
//! * Session id = tls-unique: the client's Finished verify_data (client: `finished()`,
//!   server: `peer_finished()`).
//! * `SSL_MODE_RELEASE_BUFFERS` is set, so an idle connection does not keep OpenSSL's 16 KB+
//!   record buffers.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use openssl::ex_data::Index;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{
    AlpnError, Ssl, SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslRef,
    SslSessionCacheMode, SslVerifyMode, SslVersion,
};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509Ref, X509StoreContext, X509VerifyResult};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::error::{ChainError, TransportError};

/// The TLS stream type of every connection.
pub type TlsStream = SslStream<Sniff<TcpStream>>;

/// TLS 1.3 cipher suite of the reference profile.
pub const CIPHER_SUITES: &str = "TLS_CHACHA20_POLY1305_SHA256";
/// Key exchange groups.
pub const GROUPS: &str = "X25519:X448";
/// Signature schemes.
pub const SIGALGS: &str = "ed25519:ed448";
/// ALPN list of an SMP server.
pub const SMP_SERVER_ALPN: &[&str] = &["smp/1", "h2", "http/1.1"];
/// ALPN a normal SMP client offers.
pub const SMP_CLIENT_ALPN: &[&str] = &["smp/1"];
/// ALPN list of an NTF server (reference `Notifications/Server/Main.hs`:
/// `alpnSupportedNTFHandshakes <> httpALPN`).
pub const NTF_SERVER_ALPN: &[&str] = &["ntf/1", "h2", "http/1.1"];
/// ALPN an NTF client offers.
pub const NTF_ALPN: &[&str] = &["ntf/1"];

/// A server's TLS identity: the chain it sends (leaf first, then identity/CA certificates) and
/// the leaf's private key.
pub struct ServerIdentity {
    chain: Vec<Vec<u8>>,
    key: PKey<Private>,
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl ServerIdentity {
    /// The reference layout: `[online leaf, offline CA]`; the key hash is SHA-256 of the CA.
    pub fn new(leaf: hush_crypto::CertKey, ca_cert_der: Vec<u8>) -> Result<Self, TransportError> {
        Self::from_chain(vec![leaf.cert_der, ca_cert_der], leaf.key)
    }

    /// From a `hush_crypto::ServerIdentity` (what `smp-server init` creates / loads).
    pub fn from_crypto(id: &hush_crypto::ServerIdentity) -> Result<Self, TransportError> {
        Self::from_chain(id.chain_der(), id.online.key.clone())
    }

    /// Any chain of 2..=4 certificates (leaf first), interpreted as in §2.3; `key` must be the
    /// leaf's private key.
    pub fn from_chain(chain: Vec<Vec<u8>>, key: PKey<Private>) -> Result<Self, TransportError> {
        let fingerprint = match chain_id_ca(&chain) {
            ChainCerts::Valid { id, .. } => hush_crypto::fingerprint(id),
            ChainCerts::Empty | ChainCerts::SelfSigned(_) => {
                return Err(TransportError::Config(
                    "server chain needs a leaf and an identity certificate".into(),
                ));
            }
            ChainCerts::TooLong => {
                return Err(TransportError::Config("server chain too long".into()));
            }
        };
        let leaf = chain
            .first()
            .ok_or_else(|| TransportError::Config("empty chain".into()))?;
        let leaf_pk = X509::from_der(leaf)?.public_key()?;
        if !leaf_pk.public_eq(&key) {
            return Err(TransportError::Config(
                "private key does not match the leaf certificate".into(),
            ));
        }
        Ok(ServerIdentity {
            chain,
            key,
            fingerprint,
        })
    }

    /// The server key hash (SHA-256 of the identity certificate) clients pin.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The chain as sent in TLS and in the SMP server hello, leaf first.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The leaf (online) private key, which signs the per-connection hello key.
    pub fn key(&self) -> &PKey<Private> {
        &self.key
    }

    /// The leaf certificate DER.
    pub fn leaf_der(&self) -> &[u8] {
        self.chain.first().map(Vec::as_slice).unwrap_or(&[])
    }
}

/// How §2.3 reads a chain.
#[derive(Debug, PartialEq, Eq)]
pub enum ChainCerts<'a, T> {
    Empty,
    SelfSigned(&'a T),
    Valid { leaf: &'a T, id: &'a T, ca: &'a T },
    TooLong,
}

/// `chainIdCaCerts`: 2 → (leaf, id = ca = [1]); 3 → (leaf, [1], [2]); 4 → (leaf, [1], [3]);
/// 0/1 → empty/self-signed; more → too long.
pub fn chain_id_ca<T>(chain: &[T]) -> ChainCerts<'_, T> {
    match chain {
        [] => ChainCerts::Empty,
        [c] => ChainCerts::SelfSigned(c),
        [leaf, id] => ChainCerts::Valid { leaf, id, ca: id },
        [leaf, id, ca] => ChainCerts::Valid { leaf, id, ca },
        [leaf, id, _, ca] => ChainCerts::Valid { leaf, id, ca },
        _ => ChainCerts::TooLong,
    }
}

/// Parses every certificate of a chain (leaf first).
fn parse_chain(chain: &[Vec<u8>]) -> Result<Vec<X509>, ChainError> {
    chain
        .iter()
        .map(|d| X509::from_der(d).map_err(|_| ChainError::Malformed))
        .collect()
}

/// `child` is issued by `issuer`: OpenSSL's issuer match (`X509_check_issued`: issuer name =
/// subject name, authority key id if present, keyCertSign if key usage is present) **and**
/// `child`'s signature verifies with `issuer`'s public key.
fn issued_by(child: &X509Ref, issuer: &X509Ref) -> bool {
    let ok = issuer.issued(child) == X509VerifyResult::OK
        && issuer
            .public_key()
            .and_then(|k| child.verify(&k))
            .unwrap_or(false);
    if !ok {
        // A failed signature check leaves errors on this thread's OpenSSL error queue (this
        // also runs inside the TLS verify callback); drop them.
        let _ = openssl::error::ErrorStack::get();
    }
    ok
}

/// Every certificate of the presented chain must be issued by the *next* one: the leaf by the
/// identity certificate (2nd), the identity certificate by the 3rd (the CA, or the network
/// certificate that the CA issued). The reference only validates that *some* path leads from
/// the leaf to the last certificate, which lets a leaf issued by any CA ride along with a
/// copied identity certificate.
fn check_issuance(certs: &[X509]) -> Result<(), ChainError> {
    for (i, pair) in certs.windows(2).enumerate() {
        if let [child, issuer] = pair
            && !issued_by(child, issuer)
        {
            return Err(if i == 0 {
                ChainError::LeafNotIssuedByIdentity
            } else {
                ChainError::IdentityNotChainedToCa(i)
            });
        }
    }
    Ok(())
}

/// X.509 validation of `certs` (leaf first) with `ca` as the only trust anchor; validity dates
/// are checked, host names are not. Returns the path OpenSSL verified (leaf first, DER).
fn x509_validate(certs: &[X509], ca: &X509) -> Result<Vec<Vec<u8>>, ChainError> {
    let (leaf, rest) = certs.split_first().ok_or(ChainError::TooShort(0))?;
    let internal = |e: openssl::error::ErrorStack| ChainError::Invalid(e.to_string());
    let mut store = X509StoreBuilder::new().map_err(internal)?;
    store.add_cert(ca.clone()).map_err(internal)?;
    let store = store.build();
    let mut untrusted = Stack::new().map_err(internal)?;
    for c in rest {
        untrusted.push(c.clone()).map_err(internal)?;
    }
    let mut ctx = X509StoreContext::new().map_err(internal)?;
    let verdict = ctx
        .init(&store, leaf, &untrusted, |c| {
            Ok(if c.verify_cert()? {
                let path = c
                    .chain()
                    .map(|s| s.iter().filter_map(|x| x.to_der().ok()).collect())
                    .unwrap_or_default();
                Ok(path)
            } else {
                Err(c.error().error_string().to_owned())
            })
        })
        .map_err(internal)?;
    verdict.map_err(ChainError::Invalid)
}

/// The full check of a 1..=4 certificate chain (leaf first) whose last certificate is the
/// trust anchor: each certificate is issued by the next ([`check_issuance`]), the chain
/// X.509-validates against the last certificate alone, and the path OpenSSL verified is exactly
/// the presented chain (a certificate repeated next to itself, as in `[ca, ca]`, counts once).
fn validate_chain(chain: &[Vec<u8>]) -> Result<(), ChainError> {
    let certs = parse_chain(chain)?;
    let ca = certs.last().ok_or(ChainError::TooShort(0))?;
    check_issuance(&certs)?;
    let path = x509_validate(&certs, ca)?;
    let mut presented: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
    presented.dedup();
    if !path.iter().map(Vec::as_slice).eq(presented) {
        return Err(ChainError::Invalid(
            "the verified certificate path is not the presented chain".into(),
        ));
    }
    Ok(())
}

/// Client-side check of a server chain (§2.3, `validateCertificateChain`, made stricter):
/// 2..=4 certificates, SHA-256 of the identity certificate (2nd) equals `key_hash` (else
/// [`ChainError::UnknownCa`]), the leaf is issued by that identity certificate (else
/// [`ChainError::LeafNotIssuedByIdentity`]), the identity certificate is issued by the next
/// certificate and so on up to the CA (last; for 2 certificates the identity certificate is
/// the CA) (else [`ChainError::IdentityNotChainedToCa`]), and the chain validates against the
/// CA certificate alone.
pub fn verify_server_chain(chain: &[Vec<u8>], key_hash: &[u8]) -> Result<(), ChainError> {
    match chain_id_ca(chain) {
        ChainCerts::Empty | ChainCerts::SelfSigned(_) => Err(ChainError::TooShort(chain.len())),
        ChainCerts::TooLong => Err(ChainError::TooLong(chain.len())),
        ChainCerts::Valid { id, .. } => {
            if !hush_crypto::ct_eq(&hush_crypto::fingerprint(id), key_hash) {
                return Err(ChainError::UnknownCa);
            }
            validate_chain(chain)
        }
    }
}

/// Server-side check of a presented client chain (`validateClientCertificate`, made stricter
/// as [`verify_server_chain`], without the pin): empty is fine (ordinary clients), 1
/// certificate must validate against itself, 2..=4 must form leaf → identity → … → CA (each
/// issued by the next) and validate against their CA; longer chains are refused.
pub fn verify_client_chain(chain: &[Vec<u8>]) -> Result<(), ChainError> {
    match chain_id_ca(chain) {
        ChainCerts::Empty => Ok(()),
        ChainCerts::SelfSigned(_) | ChainCerts::Valid { .. } => validate_chain(chain),
        ChainCerts::TooLong => Err(ChainError::TooLong(chain.len())),
    }
}

fn base_context(method: SslMethod) -> Result<SslContextBuilder, TransportError> {
    let mut b = SslContextBuilder::new(method)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_3))?;
    b.set_max_proto_version(Some(SslVersion::TLS1_3))?;
    b.set_ciphersuites(CIPHER_SUITES)?;
    b.set_groups_list(GROUPS)?;
    b.set_sigalgs_list(SIGALGS)?;
    b.set_options(
        SslOptions::NO_TICKET | SslOptions::NO_RENEGOTIATION | SslOptions::NO_COMPRESSION,
    );
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    b.set_mode(SslMode::RELEASE_BUFFERS);
    Ok(b)
}

/// Per-connection flag set by the ALPN callback when the client offered only unknown protocols.
fn alpn_refused_index() -> Result<Index<Ssl, bool>, TransportError> {
    static IDX: OnceLock<Result<Index<Ssl, bool>, String>> = OnceLock::new();
    IDX.get_or_init(|| Ssl::new_ex_index::<bool>().map_err(|e| e.to_string()))
        .clone()
        .map_err(TransportError::Config)
}

/// Splits an ALPN wire list (`len ‖ bytes` …); stops at a malformed entry.
fn alpn_entries(mut wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (&n, rest) = wire.split_first()?;
        let n = n as usize;
        if n == 0 || rest.len() < n {
            wire = &[];
            return None;
        }
        let (p, rest) = rest.split_at(n);
        wire = rest;
        Some(p)
    })
}

fn alpn_wire(protocols: &[&str]) -> Result<Vec<u8>, TransportError> {
    let mut out = Vec::new();
    for p in protocols {
        let n = u8::try_from(p.len())
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| TransportError::Config(format!("bad ALPN protocol {p:?}")))?;
        out.push(n);
        out.extend_from_slice(p.as_bytes());
    }
    Ok(out)
}

/// A TLS server context for one identity and ALPN list.
#[derive(Clone)]
pub struct TlsServer {
    ctx: SslContext,
}

impl TlsServer {
    /// `alpn`: the server's supported list (e.g. [`SMP_SERVER_ALPN`] or [`NTF_ALPN`]).
    pub fn new(identity: &ServerIdentity, alpn: &[&str]) -> Result<Self, TransportError> {
        let mut b = base_context(SslMethod::tls_server())?;
        b.set_num_tickets(0)?;
        let mut certs = identity.chain.iter();
        let leaf = certs
            .next()
            .ok_or_else(|| TransportError::Config("empty chain".into()))?;
        let leaf = X509::from_der(leaf)?;
        b.set_certificate(&leaf)?;
        for c in certs {
            b.add_extra_chain_cert(X509::from_der(c)?)?;
        }
        b.set_private_key(&identity.key)?;
        b.check_private_key()?;
        // Ask for a client certificate (services present one), accept any here and validate
        // after the handshake; no certificate at all is fine.
        b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
        let supported: Vec<Vec<u8>> = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let idx = alpn_refused_index()?;
        b.set_alpn_select_callback(move |ssl, client| {
            for p in alpn_entries(client) {
                if supported.iter().any(|s| s == p) {
                    return Ok(p);
                }
            }
            ssl.set_ex_data(idx, true);
            Err(AlpnError::ALERT_FATAL)
        });
        Ok(TlsServer { ctx: b.build() })
    }

    /// Runs the TLS handshake on an accepted socket (no timeout here; see
    /// [`crate::config::TransportConfig`]).
    pub async fn accept(&self, tcp: TcpStream) -> Result<TlsStream, TransportError> {
        let ssl = Ssl::new(&self.ctx)?;
        let mut s = SslStream::new(ssl, Sniff::new(tcp))?;
        match Pin::new(&mut s).accept().await {
            Ok(()) => Ok(s),
            Err(e) => {
                let refused = alpn_refused_index()
                    .ok()
                    .and_then(|i| s.ssl().ex_data(i).copied())
                    .unwrap_or(false);
                Err(if refused {
                    TransportError::Alpn
                } else {
                    classify_tls_error(e, s.get_ref())
                })
            }
        }
    }
}

/// A client certificate for services (optional).
pub struct ClientCertificate {
    /// Leaf first.
    pub chain: Vec<Vec<u8>>,
    pub key: PKey<Private>,
}

/// A TLS client context.
#[derive(Clone)]
pub struct TlsClient {
    ctx: SslContext,
}

impl TlsClient {
    pub fn new(client_cert: Option<&ClientCertificate>) -> Result<Self, TransportError> {
        let mut b = base_context(SslMethod::tls_client())?;
        // Each connection installs its own verify callback (pinned key hash + the chain's own
        // CA as the only anchor, `verify_server_chain`), which OpenSSL's store-based
        // verification cannot express.
        b.set_verify(SslVerifyMode::PEER);
        if let Some(cc) = client_cert {
            let mut certs = cc.chain.iter();
            let leaf = certs
                .next()
                .ok_or_else(|| TransportError::Config("empty client chain".into()))?;
            let leaf = X509::from_der(leaf)?;
            b.set_certificate(&leaf)?;
            for c in certs {
                b.add_extra_chain_cert(X509::from_der(c)?)?;
            }
            b.set_private_key(&cc.key)?;
            b.check_private_key()?;
        }
        Ok(TlsClient { ctx: b.build() })
    }

    /// TLS handshake as a client offering `alpn` (empty = no ALPN extension), then the
    /// server-chain check against `key_hash`. No SNI is sent.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        alpn: &[&str],
        key_hash: &[u8],
    ) -> Result<TlsStream, TransportError> {
        let mut ssl = Ssl::new(&self.ctx)?;
        if !alpn.is_empty() {
            ssl.set_alpn_protos(&alpn_wire(alpn)?)?;
        }
        // Check the chain inside the handshake, so a wrong server aborts it (with an
        // alert) before this client sends its Finished or a client
        // certificate. The verdict is remembered for the error and the callback's later
        // per-depth calls.
        let verdict: Arc<Mutex<Option<Result<(), ChainError>>>> = Arc::new(Mutex::new(None));
        let slot = verdict.clone();
        let pinned = key_hash.to_vec();
        ssl.set_verify_callback(SslVerifyMode::PEER, move |_preverify, ctx| {
            let Ok(mut v) = slot.lock() else {
                return false;
            };
            if v.is_none() {
                let chain = X509StoreContext::ssl_idx()
                    .ok()
                    .and_then(|i| ctx.ex_data(i))
                    .map(|ssl| peer_chain(ssl, true))
                    .unwrap_or_default();
                *v = Some(verify_server_chain(&chain, &pinned));
            }
            matches!(*v, Some(Ok(())))
        });
        let mut s = SslStream::new(ssl, Sniff::new(tcp))?;
        if let Err(e) = Pin::new(&mut s).connect().await {
            if let Ok(v) = verdict.lock()
                && let Some(Err(chain_err)) = v.as_ref()
            {
                return Err(TransportError::ServerChain(chain_err.clone()));
            }
            return Err(classify_tls_error(e, s.get_ref()));
        }
        // Belt and braces: the same check on the final chain.
        let chain = peer_chain(s.ssl(), true);
        verify_server_chain(&chain, key_hash).map_err(TransportError::ServerChain)?;
        Ok(s)
    }
}

fn classify_tls_error(e: openssl::ssl::Error, sniff: &Sniff<TcpStream>) -> TransportError {
    if let Some(b) = sniff.first_byte()
        && b != 0x16
        && b != 0x15
    {
        return TransportError::NotTls;
    }
    if let Some(stack) = e.ssl_error()
        && stack.errors().iter().any(|x| {
            x.reason()
                .is_some_and(|r| r.contains("no application protocol"))
        })
    {
        return TransportError::Alpn;
    }
    if sniff.first_byte().is_none() && e.ssl_error().is_none() {
        return TransportError::Closed;
    }
    TransportError::Tls(e.to_string())
}

/// The peer's certificate chain as DER, leaf first. On the server side OpenSSL's
/// `peer_cert_chain` excludes the leaf, so it is prepended.
pub fn peer_chain(ssl: &SslRef, is_client: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if !is_client && let Some(leaf) = ssl.peer_certificate() {
        out.extend(leaf.to_der().ok());
    }
    if let Some(stack) = ssl.peer_cert_chain() {
        out.extend(stack.iter().filter_map(|c| c.to_der().ok()));
    }
    out
}

/// tls-unique: the client's Finished verify_data. The client reads its own, the server the
/// peer's. Empty if the handshake has not completed.
pub fn tls_unique(ssl: &SslRef, is_client: bool) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let n = if is_client {
        ssl.finished(&mut buf)
    } else {
        ssl.peer_finished(&mut buf)
    };
    buf.get(..n.min(buf.len())).unwrap_or(&[]).to_vec()
}

/// The negotiated ALPN protocol, if any.
pub fn alpn(ssl: &SslRef) -> Option<Vec<u8>> {
    ssl.selected_alpn_protocol().map(<[u8]>::to_vec)
}

/// A stream wrapper that remembers the first byte received, to tell a non-TLS peer from a
/// TLS failure.
#[derive(Debug)]
pub struct Sniff<S> {
    inner: S,
    first: Option<u8>,
}

impl<S> Sniff<S> {
    pub fn new(inner: S) -> Self {
        Sniff { inner, first: None }
    }

    /// The first byte the peer sent, if any arrived yet.
    pub fn first_byte(&self) -> Option<u8> {
        self.first
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniff<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.first.is_none()
            && let Some(&b) = buf.filled().get(before)
        {
            self.first = Some(b);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniff<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_wire_round_trip() {
        let w = alpn_wire(&["smp/1", "h2"]).unwrap();
        assert_eq!(w, b"\x05smp/1\x02h2");
        let e: Vec<&[u8]> = alpn_entries(&w).collect();
        assert_eq!(e, vec![&b"smp/1"[..], &b"h2"[..]]);
        // malformed tails stop the iteration
        assert_eq!(alpn_entries(b"\x05smp").count(), 0);
        assert_eq!(alpn_entries(b"\x02h2\x00").count(), 1);
        assert!(alpn_wire(&[""]).is_err());
    }
}
