//! Opening connections: [`Connector`] turns a server address into a running [`SmpClient`].
//! [`TlsConnector`] is the real one (TCP + TLS with CA-fingerprint pinning + SMP handshake);
//! tests plug in their own.

use std::future::Future;
use std::pin::Pin;

use hush_proto::address::{ProtocolServer, TransportHost};
use hush_transport::{NetworkConfig, TransportClient};

use crate::ClientError;
use crate::client::{ClientConfig, EventReceiver, SmpClient};
use crate::keepalive::TcpKeepalive;

/// A connection attempt in progress.
pub type ConnectFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(SmpClient, EventReceiver), ClientError>> + Send + 'a>>;

/// Opens a connection to a relay.
pub trait Connector: Send + Sync + 'static {
    fn connect<'a>(
        &'a self,
        server: &'a ProtocolServer,
        config: &'a ClientConfig,
    ) -> ConnectFuture<'a>;

    /// Whether the connections are notifier service sessions (TLS client certificate =
    /// service certificate), so that [`crate::SmpClientPool`] resubscribes with `NSUBS`.
    fn is_service(&self) -> bool {
        false
    }
}

/// TCP + TLS 1.3 (ALPN `smp/1`, no SNI) + SMP handshake, pinned to the address's key hash
/// (SHA-256 of the relay's CA certificate). Without a SOCKS proxy it tries the address's hosts
/// in order, skipping `.onion` hosts; with one ([`TlsConnector::with_network`]) it connects to
/// the host [`NetworkConfig::route`] picks, through the proxy when the configuration says so
/// (`.onion` hosts always).
#[derive(Clone, Debug)]
pub struct TlsConnector {
    transport: TransportClient,
    keepalive: Option<TcpKeepalive>,
    network: NetworkConfig,
}

impl TlsConnector {
    /// Default SMP client settings (versions 6..18, TLS 60 s, handshake 120 s timeouts).
    pub fn new() -> Result<Self, ClientError> {
        Ok(TlsConnector {
            transport: TransportClient::smp()?,
            keepalive: None,
            network: NetworkConfig::direct(),
        })
    }

    /// Custom transport settings (timeouts, versions, ALPN).
    pub fn with_transport(transport: TransportClient) -> Self {
        TlsConnector {
            transport,
            keepalive: None,
            network: NetworkConfig::direct(),
        }
    }

    /// SOCKS5 proxy and host choice (e.g. [`NetworkConfig::all_via`] for Tor).
    pub fn with_network(mut self, network: NetworkConfig) -> Self {
        self.network = network;
        self
    }

    /// Kernel TCP keep-alive (and user timeout) on every socket this connector opens
    /// (default: none, the system's defaults). If the platform cannot set them the connection
    /// is used without (logged at warn level).
    pub fn with_keepalive(mut self, keepalive: Option<TcpKeepalive>) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// TCP connect to `host:port` (each resolved address in turn) with keep-alive set, then
    /// TLS and the SMP handshake.
    async fn connect_with_keepalive(
        &self,
        host: &str,
        port: u16,
        key_hash: &[u8],
        keepalive: &TcpKeepalive,
    ) -> Result<hush_transport::ClientConnection, ClientError> {
        let mut last: Option<std::io::Error> = None;
        let addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ClientError::from(hush_transport::TransportError::from(e)))?;
        for addr in addrs {
            // Options set before connecting: the user timeout also bounds the SYN retries.
            let attempt = async {
                let socket = if addr.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                if let Err(e) = keepalive.apply(&socket) {
                    tracing::warn!("TCP keep-alive not set: {e}");
                }
                // as TransportClient::connect_addr does: whole 16 KB blocks, no Nagle delay
                socket.set_nodelay(true)?;
                socket.connect(addr).await
            };
            let tcp = match attempt.await {
                Ok(t) => t,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            return self
                .transport
                .connect(tcp, key_hash)
                .await
                .map_err(ClientError::from);
        }
        Err(ClientError::from(hush_transport::TransportError::from(
            last.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "host resolved to no address")
            }),
        )))
    }

    /// Connects to `server` and starts the client.
    pub async fn connect_to(
        &self,
        server: &ProtocolServer,
        config: &ClientConfig,
    ) -> Result<(SmpClient, EventReceiver), ClientError> {
        if server.key_hash().len() != 32 {
            return Err(ClientError::Address("key hash must be 32 bytes".into()));
        }
        let port = server.effective_port();
        if self.network.socks_proxy.is_some() {
            let route = self
                .network
                .route(server.hosts())
                .map_err(|e| ClientError::Address(e.to_string()))?;
            if let Some(proxy) = route.proxy {
                let conn = self
                    .transport
                    .connect_socks(proxy, route.host, port, server.key_hash())
                    .await?;
                return Ok(SmpClient::from_connection(
                    conn,
                    Some(server.clone()),
                    config.clone(),
                ));
            }
        }
        let mut last = None;
        for host in server.hosts() {
            let name = match host {
                TransportHost::Onion(_) => continue,
                h => h.to_text(),
            };
            let conn = match &self.keepalive {
                Some(k) => {
                    self.connect_with_keepalive(&name, port, server.key_hash(), k)
                        .await
                }
                None => self
                    .transport
                    .connect_addr((name.as_str(), port), server.key_hash())
                    .await
                    .map_err(ClientError::from),
            };
            match conn {
                Ok(conn) => {
                    return Ok(SmpClient::from_connection(
                        conn,
                        Some(server.clone()),
                        config.clone(),
                    ));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Address("no reachable (non-onion) host".into())))
    }
}

impl Connector for TlsConnector {
    fn connect<'a>(
        &'a self,
        server: &'a ProtocolServer,
        config: &'a ClientConfig,
    ) -> ConnectFuture<'a> {
        Box::pin(self.connect_to(server, config))
    }
}

impl SmpClient {
    /// Connects to `server` over TLS with default transport settings.
    pub async fn connect(
        server: &ProtocolServer,
        config: ClientConfig,
    ) -> Result<(SmpClient, EventReceiver), ClientError> {
        TlsConnector::new()?.connect_to(server, &config).await
    }
}
