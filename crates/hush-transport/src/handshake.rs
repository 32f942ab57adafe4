//! SMP and NTF handshakes in both roles (reference §2.4, §5.1), over an established TLS
//! stream, and the server/client entry points that add TLS and timeouts.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hush_crypto::keys::{Ed25519Public, Ed25519Secret, PublicKey};
use hush_crypto::{X25519Public, X25519Secret, sb_chain_init};
use hush_proto::encoding::{Encode, Large, ShortString};
use hush_proto::handshake::{
    CertChain, CertChainPubKey, ClientHelloService, HandshakeErrorKind, HelloTransportError,
    NtfClientHello, NtfServerHello, ServiceRole, SmpClientHello, SmpServerHandshakeResponse,
    SmpServerHello,
};
use hush_proto::version::{NTF_BLOCK_SIZE, SMP_BLOCK_SIZE, VersionRange, ntf_version, smp_version};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::time::timeout;

use crate::block::{BlockReader, BlockWriter};
use crate::connection::{ClientConnection, Io, Protocol, ServerConnection, SessionInfo};
use crate::error::{Phase, TransportError};
use crate::tls::{
    self, ClientCertificate, NTF_ALPN, NTF_SERVER_ALPN, SMP_CLIENT_ALPN, SMP_SERVER_ALPN,
    ServerIdentity, TlsClient, TlsServer, TlsStream, chain_id_ca,
};

/// Timeouts (reference: TLS setup 60 s, `smpHandshakeTimeout` 120 s).
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// TCP connect (client) and TLS handshake.
    pub tls_timeout: Duration,
    /// The hello exchange after TLS.
    pub handshake_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            tls_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(120),
        }
    }
}

/// A service's registration request, seen by the server's [`ServiceRegistrar`] after the
/// service's chain and signed key were checked (reference `getService`).
#[derive(Clone, Debug)]
pub struct ServiceRequest {
    pub role: ServiceRole,
    /// The TLS client chain (= the chain in the hello), leaf first.
    pub cert_chain: Vec<Vec<u8>>,
    /// SHA-256 of the service's identity certificate (the chain's single certificate, or its
    /// second one).
    pub cert_hash: [u8; 32],
}

/// Looks up or creates the service id for a service (typically backed by the store). An
/// error is sent to the client as the third handshake message (`E <error>`).
pub type ServiceRegistrar = Arc<
    dyn Fn(
            ServiceRequest,
        ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, HelloTransportError>> + Send>>
        + Send
        + Sync,
>;

/// A service client as the server knows it after the handshake (`THPeerClientService`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerService {
    pub service_id: Vec<u8>,
    pub role: ServiceRole,
    pub cert_hash: [u8; 32],
    /// The service's Ed25519 key (signs `SUBS`/`NSUBS` and the service-signature slot).
    pub key: Ed25519Public,
}

/// Credentials of a client that connects as a service (v16): its TLS client certificate and
/// role. A fresh Ed25519 service key is generated per connection and signed by the leaf.
pub struct ServiceCredentials {
    pub role: ServiceRole,
    pub cert: ClientCertificate,
}

/// A service session as the client knows it after the handshake (`THClientService`).
#[derive(Clone, Debug)]
pub struct ClientService {
    pub service_id: Vec<u8>,
    pub role: ServiceRole,
    pub cert_hash: [u8; 32],
    /// The per-connection service signing key.
    pub key: Ed25519Secret,
}

fn handshake_err(kind: HandshakeErrorKind) -> TransportError {
    TransportError::Handshake(kind)
}

fn parse_err(_: hush_proto::DecodeError) -> TransportError {
    handshake_err(HandshakeErrorKind::Parse)
}

fn short(b: &[u8]) -> Result<ShortString, TransportError> {
    ShortString::new(b.to_vec()).map_err(|_| TransportError::Config("value over 255 bytes".into()))
}

fn split(stream: TlsStream, block_size: usize) -> Io {
    let (r, w) = tokio::io::split(stream);
    Io {
        reader: BlockReader::new(r, block_size),
        writer: BlockWriter::new(w, block_size),
    }
}

/// What the accepted TLS session tells the server.
struct TlsFacts {
    session_id: Vec<u8>,
    alpn: Option<Vec<u8>>,
    peer_chain: Vec<Vec<u8>>,
}

fn tls_facts(stream: &TlsStream, is_client: bool) -> Result<TlsFacts, TransportError> {
    let ssl = stream.ssl();
    let session_id = tls::tls_unique(ssl, is_client);
    if session_id.is_empty() {
        return Err(TransportError::Tls("no tls-unique after handshake".into()));
    }
    Ok(TlsFacts {
        session_id,
        alpn: tls::alpn(ssl),
        peer_chain: tls::peer_chain(ssl, is_client),
    })
}

/// Server-side settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub transport: TransportConfig,
    /// Range offered when the client negotiated any ALPN (SMP 6..18, NTF 1..3). Without ALPN
    /// the server offers only `min..min` (the legacy range).
    pub versions: VersionRange,
    /// Supported ALPN protocols, in no particular order (the client's order wins).
    pub alpn: Vec<String>,
}

impl ServerConfig {
    pub fn smp() -> Self {
        ServerConfig {
            transport: TransportConfig::default(),
            versions: smp_version::SERVER_RANGE,
            alpn: SMP_SERVER_ALPN.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn ntf() -> Self {
        ServerConfig {
            transport: TransportConfig::default(),
            versions: ntf_version::SERVER_RANGE,
            alpn: NTF_SERVER_ALPN.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Accepts SMP or NTF connections for one server identity.
#[derive(Clone)]
pub struct TransportServer {
    protocol: Protocol,
    identity: Arc<ServerIdentity>,
    tls: TlsServer,
    config: ServerConfig,
    services: Option<ServiceRegistrar>,
}

impl std::fmt::Debug for TransportServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportServer")
            .field("protocol", &self.protocol)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TransportServer {
    pub fn new(
        protocol: Protocol,
        identity: ServerIdentity,
        config: ServerConfig,
    ) -> Result<Self, TransportError> {
        let alpn: Vec<&str> = config.alpn.iter().map(String::as_str).collect();
        let tls = TlsServer::new(&identity, &alpn)?;
        Ok(TransportServer {
            protocol,
            identity: Arc::new(identity),
            tls,
            config,
            services: None,
        })
    }

    /// Accepts v16 service clients, with `registrar` assigning their service ids. Without a
    /// registrar a declared service is refused (`E HANDSHAKE BAD_SERVICE`).
    pub fn with_service_registrar(mut self, registrar: ServiceRegistrar) -> Self {
        self.services = Some(registrar);
        self
    }

    pub fn smp(identity: ServerIdentity) -> Result<Self, TransportError> {
        Self::new(Protocol::Smp, identity, ServerConfig::smp())
    }

    pub fn ntf(identity: ServerIdentity) -> Result<Self, TransportError> {
        Self::new(Protocol::Ntf, identity, ServerConfig::ntf())
    }

    pub fn identity(&self) -> &ServerIdentity {
        &self.identity
    }

    /// TLS handshake (bounded by `tls_timeout`) then the hello exchange (bounded by
    /// `handshake_timeout`). On a wrong key hash or version the connection is just dropped,
    /// nothing is sent (reference behaviour).
    pub async fn accept(&self, tcp: TcpStream) -> Result<ServerConnection, TransportError> {
        let t = &self.config.transport;
        let stream = timeout(t.tls_timeout, self.tls.accept(tcp))
            .await
            .map_err(|_| TransportError::Timeout(Phase::Tls))??;
        let facts = tls_facts(&stream, false)?;
        tls::verify_client_chain(&facts.peer_chain).map_err(TransportError::ClientChain)?;
        let hs = async {
            match self.protocol {
                Protocol::Smp => self.smp_handshake(stream, facts).await,
                Protocol::Ntf => self.ntf_handshake(stream, facts).await,
            }
        };
        timeout(t.handshake_timeout, hs)
            .await
            .map_err(|_| TransportError::Timeout(Phase::Handshake))?
    }

    fn offered_range(&self, alpn: &Option<Vec<u8>>) -> VersionRange {
        if alpn.is_some() {
            self.config.versions
        } else {
            VersionRange::single(self.config.versions.min())
        }
    }

    async fn smp_handshake(
        &self,
        stream: TlsStream,
        facts: TlsFacts,
    ) -> Result<ServerConnection, TransportError> {
        let mut io = split(stream, SMP_BLOCK_SIZE);
        let versions = self.offered_range(&facts.alpn);
        let session_key = X25519Secret::generate();
        let signed = hush_crypto::sign_x25519_key(self.identity.key(), &session_key.public())?;
        let hello = SmpServerHello {
            versions,
            session_id: short(&facts.session_id)?,
            auth: Some(CertChainPubKey {
                cert_chain: CertChain::new(self.identity.chain().iter().cloned())
                    .map_err(|e| TransportError::Config(e.to_string()))?,
                signed_key: Large::new(signed)
                    .map_err(|_| TransportError::Config("signed key too long".into()))?,
            }),
        };
        io.writer.send_block(&hello.to_bytes()).await?;

        let content = io.reader.recv_content().await?;
        let client = SmpClientHello::decode(&content).map_err(parse_err)?;
        if !hush_crypto::ct_eq(client.key_hash.as_bytes(), &self.identity.fingerprint()) {
            return Err(handshake_err(HandshakeErrorKind::Identity));
        }
        if !versions.contains(client.version) {
            return Err(TransportError::Version);
        }
        let service = match &client.service {
            None => None,
            Some(declared) => match self.register_service(declared, &facts.peer_chain).await {
                Ok(ps) => {
                    let id = short(&ps.service_id)?;
                    let reply = SmpServerHandshakeResponse::ServiceId(id);
                    io.writer.send_block(&reply.to_bytes()).await?;
                    Some(ps)
                }
                Err(e) => {
                    let reply = SmpServerHandshakeResponse::Error(e);
                    io.writer.send_block(&reply.to_bytes()).await?;
                    return Err(match e {
                        HelloTransportError::Handshake(k) => handshake_err(k),
                        other => TransportError::ServiceRefused(other),
                    });
                }
            },
        };
        let client_dh_key = client.dh_key.map(X25519Public);
        let keys = match &client_dh_key {
            Some(k) if client.version >= smp_version::ENCRYPTED_BLOCK && !client.proxy_server => {
                Some(sb_chain_init(&facts.session_id, &session_key.dh(k)))
            }
            _ => None,
        };
        let encrypted = keys.is_some();
        let (snd, rcv) = match keys {
            Some((ck1, ck2)) => (Some(ck1), Some(ck2)),
            None => (None, None),
        };
        io.writer.set_session(true, snd);
        io.reader.set_session(true, rcv);
        Ok(ServerConnection {
            info: SessionInfo {
                protocol: Protocol::Smp,
                session_id: facts.session_id,
                version: client.version,
                server_versions: versions,
                alpn: facts.alpn,
                block_size: SMP_BLOCK_SIZE,
                batched: true,
                encrypted,
            },
            io,
            session_key,
            client_dh_key,
            proxy_server: client.proxy_server,
            client_chain: facts.peer_chain,
            service,
        })
    }

    /// `getClientService`: the hello chain must be the TLS client chain, the service key must
    /// be an Ed25519 key signed by the chain's leaf, then the registrar assigns the id.
    async fn register_service(
        &self,
        declared: &ClientHelloService,
        tls_chain: &[Vec<u8>],
    ) -> Result<PeerService, HelloTransportError> {
        let bad_auth = HelloTransportError::Handshake(HandshakeErrorKind::BadAuth);
        let chain = declared.cert_key.cert_chain.to_vecs();
        if chain != tls_chain {
            return Err(bad_auth);
        }
        let (leaf, id) = match chain_id_ca(&chain) {
            tls::ChainCerts::SelfSigned(c) => (c, c),
            tls::ChainCerts::Valid { leaf, id, .. } => (leaf, id),
            _ => return Err(bad_auth),
        };
        let key = match hush_crypto::cert::verify_signed_public_key(
            leaf,
            declared.cert_key.signed_key.as_bytes(),
        ) {
            Ok(PublicKey::Ed25519(k)) => k,
            _ => return Err(bad_auth),
        };
        let cert_hash = hush_crypto::fingerprint(id);
        let registrar = self
            .services
            .as_ref()
            .ok_or(HelloTransportError::Handshake(
                HandshakeErrorKind::BadService,
            ))?;
        let service_id = registrar(ServiceRequest {
            role: declared.role,
            cert_chain: chain.clone(),
            cert_hash,
        })
        .await?;
        if service_id.len() > 255 {
            return Err(HelloTransportError::Handshake(
                HandshakeErrorKind::BadService,
            ));
        }
        Ok(PeerService {
            service_id,
            role: declared.role,
            cert_hash,
            key,
        })
    }

    async fn ntf_handshake(
        &self,
        stream: TlsStream,
        facts: TlsFacts,
    ) -> Result<ServerConnection, TransportError> {
        let mut io = split(stream, NTF_BLOCK_SIZE);
        let versions = self.offered_range(&facts.alpn);
        let session_key = X25519Secret::generate();
        let signed = hush_crypto::sign_x25519_key(self.identity.key(), &session_key.public())?;
        let hello = NtfServerHello {
            versions,
            session_id: short(&facts.session_id)?,
            signed_key: Some(
                Large::new(signed)
                    .map_err(|_| TransportError::Config("signed key too long".into()))?,
            ),
        };
        io.writer.send_block(&hello.to_bytes()).await?;
        let content = io.reader.recv_content().await?;
        let client = NtfClientHello::decode(&content).map_err(parse_err)?;
        if !hush_crypto::ct_eq(client.key_hash.as_bytes(), &self.identity.fingerprint()) {
            return Err(handshake_err(HandshakeErrorKind::Identity));
        }
        if !versions.contains(client.version) {
            return Err(TransportError::Version);
        }
        let batched = client.version >= ntf_version::AUTH_BATCH_CMDS;
        io.writer.set_session(batched, None);
        io.reader.set_session(batched, None);
        Ok(ServerConnection {
            info: SessionInfo {
                protocol: Protocol::Ntf,
                session_id: facts.session_id,
                version: client.version,
                server_versions: versions,
                alpn: facts.alpn,
                block_size: NTF_BLOCK_SIZE,
                batched,
                encrypted: false,
            },
            io,
            session_key,
            client_dh_key: None,
            proxy_server: false,
            client_chain: facts.peer_chain,
            service: None,
        })
    }
}

/// Client-side settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub transport: TransportConfig,
    /// Versions the client supports (SMP 6..18, NTF 1..3).
    pub versions: VersionRange,
    /// ALPN protocols to offer, in preference order (empty = none: legacy range).
    pub alpn: Vec<String>,
    /// SMP only: connect as an SMP proxy (`proxyServer = T`, no block encryption).
    pub proxy_server: bool,
}

impl ClientConfig {
    pub fn smp() -> Self {
        ClientConfig {
            transport: TransportConfig::default(),
            versions: smp_version::CLIENT_RANGE,
            alpn: SMP_CLIENT_ALPN.iter().map(|s| s.to_string()).collect(),
            proxy_server: false,
        }
    }

    pub fn ntf() -> Self {
        ClientConfig {
            transport: TransportConfig::default(),
            versions: ntf_version::CLIENT_RANGE,
            alpn: NTF_ALPN.iter().map(|s| s.to_string()).collect(),
            proxy_server: false,
        }
    }
}

/// Connects to SMP or NTF servers.
#[derive(Clone)]
pub struct TransportClient {
    protocol: Protocol,
    tls: TlsClient,
    config: ClientConfig,
    service: Option<Arc<ServiceCredentials>>,
}

impl std::fmt::Debug for TransportClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportClient")
            .field("protocol", &self.protocol)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TransportClient {
    pub fn new(
        protocol: Protocol,
        config: ClientConfig,
        client_cert: Option<&ClientCertificate>,
    ) -> Result<Self, TransportError> {
        Ok(TransportClient {
            protocol,
            tls: TlsClient::new(client_cert)?,
            config,
            service: None,
        })
    }

    /// An SMP client that presents `service.cert` in TLS and, when the negotiated version is
    /// ≥ 16, declares itself a service in the hello and waits for its service id.
    pub fn smp_service(
        config: ClientConfig,
        service: ServiceCredentials,
    ) -> Result<Self, TransportError> {
        Ok(TransportClient {
            protocol: Protocol::Smp,
            tls: TlsClient::new(Some(&service.cert))?,
            config,
            service: Some(Arc::new(service)),
        })
    }

    pub fn smp() -> Result<Self, TransportError> {
        Self::new(Protocol::Smp, ClientConfig::smp(), None)
    }

    pub fn ntf() -> Result<Self, TransportError> {
        Self::new(Protocol::Ntf, ClientConfig::ntf(), None)
    }

    /// TCP connect + TLS (bounded by `tls_timeout`), then the hello exchange.
    pub async fn connect_addr(
        &self,
        addr: impl ToSocketAddrs,
        key_hash: &[u8],
    ) -> Result<ClientConnection, TransportError> {
        let t = &self.config.transport;
        let alpn: Vec<&str> = self.config.alpn.iter().map(String::as_str).collect();
        let tls = async {
            let tcp = TcpStream::connect(addr).await?;
            // SMP writes whole 16 KB blocks; with Nagle a block written while the previous one
            // is unacknowledged waits for the peer's delayed ACK (up to 40 ms on Linux).
            let _ = tcp.set_nodelay(true);
            self.tls.connect(tcp, &alpn, key_hash).await
        };
        let stream = timeout(t.tls_timeout, tls)
            .await
            .map_err(|_| TransportError::Timeout(Phase::Tls))??;
        self.after_tls(stream, key_hash).await
    }

    /// TCP through the SOCKS5 `proxy` to `host:port` (the proxy resolves names), TLS (both
    /// bounded by `tls_timeout`), then the hello exchange.
    pub async fn connect_socks(
        &self,
        proxy: &crate::socks::SocksProxy,
        host: &hush_proto::address::TransportHost,
        port: u16,
        key_hash: &[u8],
    ) -> Result<ClientConnection, TransportError> {
        let t = &self.config.transport;
        let alpn: Vec<&str> = self.config.alpn.iter().map(String::as_str).collect();
        let tls = async {
            let tcp = crate::socks::socks5_connect(proxy, host, port).await?;
            self.tls.connect(tcp, &alpn, key_hash).await
        };
        let stream = timeout(t.tls_timeout, tls)
            .await
            .map_err(|_| TransportError::Timeout(Phase::Tls))??;
        self.after_tls(stream, key_hash).await
    }

    /// Connects to a server given by its hosts (a server address's host list) and port as `net`
    /// says: the host [`crate::socks::NetworkConfig::route`] picks, through the SOCKS proxy or
    /// directly. An address this configuration cannot use is a [`TransportError::Config`].
    pub async fn connect_server(
        &self,
        net: &crate::socks::NetworkConfig,
        hosts: &[hush_proto::address::TransportHost],
        port: u16,
        key_hash: &[u8],
    ) -> Result<ClientConnection, TransportError> {
        use hush_proto::address::TransportHost;
        let route = net
            .route(hosts)
            .map_err(|e| TransportError::Config(e.to_string()))?;
        if let Some(proxy) = route.proxy {
            return self.connect_socks(proxy, route.host, port, key_hash).await;
        }
        match route.host {
            TransportHost::Ipv4(a) => {
                self.connect_addr((std::net::Ipv4Addr::from(*a), port), key_hash)
                    .await
            }
            TransportHost::Ipv6(a) => self.connect_addr((*a, port), key_hash).await,
            TransportHost::Domain(n) | TransportHost::Onion(n) => {
                self.connect_addr((n.as_str(), port), key_hash).await
            }
        }
    }

    /// TLS (bounded by `tls_timeout`) over an already connected socket, then the hellos.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        key_hash: &[u8],
    ) -> Result<ClientConnection, TransportError> {
        let t = &self.config.transport;
        let alpn: Vec<&str> = self.config.alpn.iter().map(String::as_str).collect();
        let stream = timeout(t.tls_timeout, self.tls.connect(tcp, &alpn, key_hash))
            .await
            .map_err(|_| TransportError::Timeout(Phase::Tls))??;
        self.after_tls(stream, key_hash).await
    }

    async fn after_tls(
        &self,
        stream: TlsStream,
        key_hash: &[u8],
    ) -> Result<ClientConnection, TransportError> {
        let facts = tls_facts(&stream, true)?;
        let hs = async {
            match self.protocol {
                Protocol::Smp => self.smp_handshake(stream, facts, key_hash).await,
                Protocol::Ntf => self.ntf_handshake(stream, facts, key_hash).await,
            }
        };
        timeout(self.config.transport.handshake_timeout, hs)
            .await
            .map_err(|_| TransportError::Timeout(Phase::Handshake))?
    }

    async fn smp_handshake(
        &self,
        stream: TlsStream,
        facts: TlsFacts,
        key_hash: &[u8],
    ) -> Result<ClientConnection, TransportError> {
        let mut io = split(stream, SMP_BLOCK_SIZE);
        let content = io.reader.recv_content().await?;
        let hello = SmpServerHello::decode(&content).map_err(parse_err)?;
        if hello.session_id.as_bytes() != facts.session_id.as_slice() {
            return Err(TransportError::BadSession);
        }
        // An SMP proxy talking to a relay older than v14 caps itself at v10 (no block
        // encryption), as the reference does.
        let ours = if self.config.proxy_server
            && hello.versions.max() < smp_version::PROXY_SERVER_HANDSHAKE
        {
            let min = self.config.versions.min();
            VersionRange::new(min, min.max(smp_version::DELETED_EVENT))
                .unwrap_or(self.config.versions)
        } else {
            self.config.versions
        };
        let common = hello
            .versions
            .intersect(&ours)
            .ok_or(TransportError::Version)?;
        let version = common.max();
        let leaf = facts.peer_chain.first().map(Vec::as_slice).unwrap_or(&[]);
        let server_key = match &hello.auth {
            Some(auth) => {
                let chain = auth.cert_chain.to_vecs();
                let id_ok = match chain_id_ca(&chain) {
                    tls::ChainCerts::Valid { id, .. } => {
                        hush_crypto::ct_eq(&hush_crypto::fingerprint(id), key_hash)
                    }
                    _ => false,
                };
                if !id_ok {
                    return Err(handshake_err(HandshakeErrorKind::BadAuth));
                }
                let k = hush_crypto::verify_signed_x25519_key(leaf, auth.signed_key.as_bytes())
                    .map_err(|_| handshake_err(HandshakeErrorKind::BadAuth))?;
                Some(k)
            }
            None => None,
        };
        let dh_secret = X25519Secret::generate();
        // A service is declared only from v16 (and only when a client certificate was
        // configured, which our TLS client sends whenever the server asks for one, as
        // reference servers always do).
        let service_key = match &self.service {
            Some(creds) if version >= smp_version::SERVICE_CERTS => {
                let secret = Ed25519Secret::generate();
                let signed = hush_crypto::cert::sign_public_key(
                    &creds.cert.key,
                    &PublicKey::Ed25519(secret.public()),
                )?;
                let hello_service = ClientHelloService {
                    role: creds.role,
                    cert_key: CertChainPubKey {
                        cert_chain: CertChain::new(creds.cert.chain.iter().cloned())
                            .map_err(|e| TransportError::Config(e.to_string()))?,
                        signed_key: Large::new(signed)
                            .map_err(|_| TransportError::Config("signed key too long".into()))?,
                    },
                };
                Some((creds.clone(), secret, hello_service))
            }
            _ => None,
        };
        let reply = SmpClientHello {
            version,
            key_hash: short(key_hash)?,
            dh_key: Some(dh_secret.public().0),
            proxy_server: self.config.proxy_server,
            service: service_key.as_ref().map(|(_, _, h)| h.clone()),
        };
        io.writer.send_block(&reply.to_bytes()).await?;
        let service = match service_key {
            None => None,
            Some((creds, key, _)) => {
                let content = io.reader.recv_content().await?;
                match SmpServerHandshakeResponse::decode(&content).map_err(parse_err)? {
                    SmpServerHandshakeResponse::ServiceId(id) => {
                        let id_cert = match chain_id_ca(&creds.cert.chain) {
                            tls::ChainCerts::SelfSigned(c) => c,
                            tls::ChainCerts::Valid { id, .. } => id,
                            _ => return Err(TransportError::Config("bad service chain".into())),
                        };
                        Some(ClientService {
                            service_id: id.into_vec(),
                            role: creds.role,
                            cert_hash: hush_crypto::fingerprint(id_cert),
                            key,
                        })
                    }
                    SmpServerHandshakeResponse::Error(e) => {
                        return Err(TransportError::ServiceRefused(e));
                    }
                }
            }
        };
        let keys = match &server_key {
            Some(k) if version >= smp_version::ENCRYPTED_BLOCK && !self.config.proxy_server => {
                Some(sb_chain_init(&facts.session_id, &dh_secret.dh(k)))
            }
            _ => None,
        };
        let encrypted = keys.is_some();
        // X25519(own hello key, server session key): the proxy ↔ relay secret (RFWD/RRES).
        let session_secret = server_key.as_ref().map(|k| dh_secret.dh(k));
        let server_signed_key = hello
            .auth
            .as_ref()
            .map(|a| a.signed_key.as_bytes().to_vec());
        // The client sends with ck2 and receives with ck1.
        let (snd, rcv) = match keys {
            Some((ck1, ck2)) => (Some(ck2), Some(ck1)),
            None => (None, None),
        };
        io.writer.set_session(true, snd);
        io.reader.set_session(true, rcv);
        Ok(ClientConnection {
            info: SessionInfo {
                protocol: Protocol::Smp,
                session_id: facts.session_id,
                version,
                server_versions: hello.versions,
                alpn: facts.alpn,
                block_size: SMP_BLOCK_SIZE,
                batched: true,
                encrypted,
            },
            io,
            server_key,
            server_chain: facts.peer_chain,
            service,
            session_secret,
            server_signed_key,
        })
    }

    async fn ntf_handshake(
        &self,
        stream: TlsStream,
        facts: TlsFacts,
        key_hash: &[u8],
    ) -> Result<ClientConnection, TransportError> {
        let mut io = split(stream, NTF_BLOCK_SIZE);
        let content = io.reader.recv_content().await?;
        let hello = NtfServerHello::decode(&content).map_err(parse_err)?;
        if hello.session_id.as_bytes() != facts.session_id.as_slice() {
            return Err(TransportError::BadSession);
        }
        let common = hello
            .versions
            .intersect(&self.config.versions)
            .ok_or(TransportError::Version)?;
        let version = common.max();
        let leaf = facts.peer_chain.first().map(Vec::as_slice).unwrap_or(&[]);
        let server_key = match &hello.signed_key {
            Some(k) => Some(
                hush_crypto::verify_signed_x25519_key(leaf, k.as_bytes())
                    .map_err(|_| handshake_err(HandshakeErrorKind::BadAuth))?,
            ),
            None => None,
        };
        let reply = NtfClientHello {
            version,
            key_hash: short(key_hash)?,
        };
        io.writer.send_block(&reply.to_bytes()).await?;
        let batched = version >= ntf_version::AUTH_BATCH_CMDS;
        io.writer.set_session(batched, None);
        io.reader.set_session(batched, None);
        Ok(ClientConnection {
            info: SessionInfo {
                protocol: Protocol::Ntf,
                session_id: facts.session_id,
                version,
                server_versions: hello.versions,
                alpn: facts.alpn,
                block_size: NTF_BLOCK_SIZE,
                batched,
                encrypted: false,
            },
            io,
            server_key,
            server_chain: facts.peer_chain,
            service: None,
            session_secret: None,
            server_signed_key: None,
        })
    }
}
