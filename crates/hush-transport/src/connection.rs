//! Established connections (after TLS and the hello exchange), client and server side.

use hush_crypto::{DhSecret, X25519Public, X25519Secret};
use hush_proto::transmission::TooLarge;
use hush_proto::version::VersionRange;
use tokio::io::{ReadHalf, WriteHalf};

use crate::block::{Block, BlockReader, BlockWriter};
use crate::error::{BlockError, TransportError};
use crate::handshake::{ClientService, PeerService};
use crate::tls::TlsStream;

/// Receiving half of an established connection.
pub type ConnReader = BlockReader<ReadHalf<TlsStream>>;
/// Sending half of an established connection.
pub type ConnWriter = BlockWriter<WriteHalf<TlsStream>>;

/// Which protocol runs over the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// SMP relay protocol, 16384-byte blocks.
    Smp,
    /// Notification protocol, 512-byte blocks.
    Ntf,
}

/// What both sides agreed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub protocol: Protocol,
    /// tls-unique (the client's TLS Finished), 32 bytes with the reference suite.
    pub session_id: Vec<u8>,
    /// The negotiated protocol version.
    pub version: u16,
    /// The version range the server offered in its hello.
    pub server_versions: VersionRange,
    /// The negotiated ALPN protocol (`None` = legacy client without ALPN).
    pub alpn: Option<Vec<u8>>,
    pub block_size: usize,
    /// Blocks carry `count ‖ count × Large` (SMP; NTF v2+).
    pub batched: bool,
    /// Blocks are encrypted with the secretbox chain (SMP v11+ with a client DH key and not a
    /// proxy link).
    pub encrypted: bool,
}

/// Block I/O shared by both connection types.
#[derive(Debug)]
pub(crate) struct Io {
    pub(crate) reader: ConnReader,
    pub(crate) writer: ConnWriter,
}

macro_rules! block_io_methods {
    () => {
        /// Agreed session parameters.
        pub fn info(&self) -> &SessionInfo {
            &self.info
        }

        /// tls-unique session id.
        pub fn session_id(&self) -> &[u8] {
            &self.info.session_id
        }

        /// Negotiated protocol version.
        pub fn version(&self) -> u16 {
            self.info.version
        }

        /// Negotiated ALPN protocol.
        pub fn alpn(&self) -> Option<&[u8]> {
            self.info.alpn.as_deref()
        }

        /// Sends already-encoded transmissions (batched per the reference rule). Returns the
        /// ones too large for any block (not sent; reference `TELargeMsg`).
        pub async fn send(
            &mut self,
            transmissions: &[Vec<u8>],
        ) -> Result<Vec<TooLarge>, TransportError> {
            self.io.writer.send_transmissions(transmissions).await
        }

        /// Sends one block with exactly this content (already batched).
        pub async fn send_block(&mut self, content: &[u8]) -> Result<(), TransportError> {
            self.io.writer.send_block(content).await
        }

        /// Receives one block; `Ok(Err(_))` is a bad block (reference `ERR BLOCK`), after which
        /// the connection can still be used. Use [`Block::transmissions`] for the list.
        /// Cancel-safe.
        pub async fn recv(&mut self) -> Result<Result<Block, BlockError>, TransportError> {
            self.io.reader.recv().await
        }

        /// Splits into independently usable halves (e.g. one task reading, one writing).
        pub fn into_split(self) -> (ConnReader, ConnWriter) {
            (self.io.reader, self.io.writer)
        }

        /// Sends TLS close_notify and closes the write side.
        pub async fn close(mut self) -> Result<(), TransportError> {
            self.io.writer.shutdown().await
        }

        #[doc(hidden)]
        pub fn writer_mut(&mut self) -> &mut ConnWriter {
            &mut self.io.writer
        }
    };
}

/// A client's connection to an SMP or NTF server.
#[derive(Debug)]
pub struct ClientConnection {
    pub(crate) info: SessionInfo,
    pub(crate) io: Io,
    pub(crate) server_key: Option<X25519Public>,
    pub(crate) server_chain: Vec<Vec<u8>>,
    pub(crate) service: Option<ClientService>,
    pub(crate) session_secret: Option<DhSecret>,
    pub(crate) server_signed_key: Option<Vec<u8>>,
}

impl ClientConnection {
    block_io_methods!();

    /// X25519(the client's hello key, the server's session key): the secret an SMP proxy uses
    /// to encrypt `RFWD` to this relay and decrypt `RRES` (reference `sessSecret`). `None` when
    /// the server offered no key.
    pub fn session_secret(&self) -> Option<&DhSecret> {
        self.session_secret.as_ref()
    }

    /// The server's signed session key exactly as in its hello (DER X.509 SignedExact), which
    /// an SMP proxy passes on to its client in `PKEY`.
    pub fn server_signed_key(&self) -> Option<&[u8]> {
        self.server_signed_key.as_deref()
    }

    /// The server's per-connection X25519 key from its hello (verified against the TLS leaf),
    /// used with a queue's private key for crypto_box command authenticators. `None` only
    /// when the server offered no key (SMP max < 7, NTF max < 2).
    pub fn server_session_key(&self) -> Option<&X25519Public> {
        self.server_key.as_ref()
    }

    /// The server's TLS certificate chain (leaf first).
    pub fn server_cert_chain(&self) -> &[Vec<u8>] {
        &self.server_chain
    }

    /// The service session (v16), when connected with service credentials.
    pub fn service(&self) -> Option<&ClientService> {
        self.service.as_ref()
    }
}

/// A server's connection to one client.
#[derive(Debug)]
pub struct ServerConnection {
    pub(crate) info: SessionInfo,
    pub(crate) io: Io,
    pub(crate) session_key: X25519Secret,
    pub(crate) client_dh_key: Option<X25519Public>,
    pub(crate) proxy_server: bool,
    pub(crate) client_chain: Vec<Vec<u8>>,
    pub(crate) service: Option<PeerService>,
}

impl ServerConnection {
    block_io_methods!();

    /// This connection's X25519 private key (its public half was signed into the hello); the
    /// server verifies crypto_box authenticators with it.
    pub fn session_key(&self) -> &X25519Secret {
        &self.session_key
    }

    /// The client's hello DH key, if it sent one.
    pub fn client_dh_key(&self) -> Option<&X25519Public> {
        self.client_dh_key.as_ref()
    }

    /// The client declared itself an SMP proxy (`proxyServer = T`, no block encryption).
    pub fn is_proxy_client(&self) -> bool {
        self.proxy_server
    }

    /// The client's TLS certificate chain, leaf first (empty for ordinary clients).
    pub fn client_cert_chain(&self) -> &[Vec<u8>] {
        &self.client_chain
    }

    /// The service the client declared (v16): chain checked against TLS, key verified, id
    /// assigned by the server's registrar.
    pub fn service(&self) -> Option<&PeerService> {
        self.service.as_ref()
    }
}
