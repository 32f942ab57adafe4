//! Opening connections: [`Connector`] turns a server address into a running [`SmpClient`].
//! [`TlsConnector`] is the real one (TCP + TLS with CA-fingerprint pinning + SMP handshake);
//! tests plug in their own.

use std::future::Future;
use std::pin::Pin;

use hush_proto::address::{ProtocolServer, TransportHost};
use hush_transport::TransportClient;

use crate::ClientError;
use crate::client::{ClientConfig, EventReceiver, SmpClient};

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
}

/// TCP + TLS 1.3 (ALPN `smp/1`, no SNI) + SMP handshake, pinned to the address's key hash
/// (SHA-256 of the relay's CA certificate). Tries the address's hosts in order, skipping
/// `.onion` hosts (no SOCKS support here).
#[derive(Clone, Debug)]
pub struct TlsConnector {
    transport: TransportClient,
}

impl TlsConnector {
    /// Default SMP client settings (versions 6..18, TLS 60 s, handshake 120 s timeouts).
    pub fn new() -> Result<Self, ClientError> {
        Ok(TlsConnector {
            transport: TransportClient::smp()?,
        })
    }

    /// Custom transport settings (timeouts, versions, ALPN).
    pub fn with_transport(transport: TransportClient) -> Self {
        TlsConnector { transport }
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
        let mut last = None;
        for host in server.hosts() {
            let name = match host {
                TransportHost::Onion(_) => continue,
                h => h.to_text(),
            };
            match self
                .transport
                .connect_addr((name.as_str(), port), server.key_hash())
                .await
            {
                Ok(conn) => {
                    return Ok(SmpClient::from_connection(
                        conn,
                        Some(server.clone()),
                        config.clone(),
                    ));
                }
                Err(e) => last = Some(ClientError::from(e)),
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
