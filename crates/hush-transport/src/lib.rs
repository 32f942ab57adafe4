//! hush-transport: TLS 1.3 over OpenSSL with tls-unique session ids, the SMP and NTF
//! handshakes, and block I/O for clients and servers (reference §2.2–§2.6, §5.1).
//!
//! * [`tls`]: the TLS profile, certificate-chain rules and tls-unique.
//! * [`handshake`]: [`TransportServer`] / [`TransportClient`] run TLS plus the hello exchange
//!   (with timeouts) and return a [`ServerConnection`] / [`ClientConnection`].
//! * [`socks`]: outgoing connections through a SOCKS5 proxy (Tor) and the choice of host.
//! * [`block`]: fixed-size padded blocks, v11+ secretbox-chain encryption, batching; see its
//!   docs for the buffer policy (idle connections hold no block buffer).
//!
//! ```no_run
//! # async fn demo(identity: hush_transport::ServerIdentity, key_hash: [u8; 32]) -> Result<(), hush_transport::TransportError> {
//! use hush_transport::{TransportClient, TransportServer};
//! let server = TransportServer::smp(identity)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     let (tcp, _) = listener.accept().await?;
//!     let mut conn = server.accept(tcp).await?;
//!     while let Ok(block) = conn.recv().await {
//!         let _ = block.map(|b| b.transmissions().map(|ts| ts.len()));
//!     }
//!     Ok::<_, hush_transport::TransportError>(())
//! });
//! let mut client = TransportClient::smp()?.connect_addr(addr, &key_hash).await?;
//! client.send(&[b"encoded transmission".to_vec()]).await?;
//! # Ok(()) }
//! ```

pub mod block;
pub mod connection;
pub mod error;
pub mod handshake;
pub mod socks;
pub mod tls;

pub use block::{Block, BlockReader, BlockWriter};
pub use connection::{
    ClientConnection, ConnReader, ConnWriter, Protocol, ServerConnection, SessionInfo,
};
pub use error::{BlockError, ChainError, Phase, TransportError};
pub use handshake::{
    ClientConfig, ClientService, PeerService, ServerConfig, ServiceCredentials, ServiceRegistrar,
    ServiceRequest, TransportClient, TransportConfig, TransportServer,
};
pub use socks::{HostMode, NetworkConfig, SocksAuth, SocksMode, SocksProxy};
pub use tls::{ClientCertificate, ServerIdentity};
