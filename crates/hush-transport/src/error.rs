//! Transport errors: one typed enum for everything that ends a connection, and
//! [`BlockError`] for a single bad block (the connection continues).

use hush_proto::handshake::HandshakeErrorKind;
use thiserror::Error;

/// Which timeout expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect + TLS handshake (reference: 60 s server-side TLS setup).
    Tls,
    /// The SMP/NTF hello exchange (reference: 120 s `smpHandshakeTimeout`).
    Handshake,
}

/// Why a certificate chain was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ChainError {
    /// 0 certificates, or 1 (self-signed): no identity certificate to pin.
    #[error("certificate chain has {0} certificate(s); at least 2 are required")]
    TooShort(usize),
    /// More than 4 certificates.
    #[error("certificate chain of {0} certificates is too deep")]
    TooLong(usize),
    /// SHA-256 of the identity certificate is not the pinned key hash ("unknown CA").
    #[error("unknown CA: identity certificate fingerprint does not match the server key hash")]
    UnknownCa,
    /// The leaf (1st certificate) is not issued by the identity certificate (2nd, the one whose
    /// fingerprint is pinned): its issuer name or its signature does not match. This is how a
    /// leaf issued by another CA, sent along with a copy of the real identity certificate, is
    /// refused (the reference accepts such a chain).
    #[error("leaf certificate is not issued by the pinned identity certificate")]
    LeafNotIssuedByIdentity,
    /// Certificate `n` (1 = the identity certificate, 2 = the network certificate of a
    /// 4-certificate chain) is not issued by certificate `n + 1`, so the identity certificate
    /// does not chain up to the CA (last certificate).
    #[error(
        "identity certificate does not chain to the CA: certificate {} is not issued by certificate {}",
        .0 + 1,
        .0 + 2
    )]
    IdentityNotChainedToCa(usize),
    /// The chain does not X.509-validate against its CA certificate.
    #[error("certificate chain does not validate: {0}")]
    Invalid(String),
    /// A certificate is not parseable DER.
    #[error("malformed certificate")]
    Malformed,
}

/// A connection-level failure. Every variant except the ones documented otherwise ends the
/// connection.
#[derive(Debug, Error)]
pub enum TransportError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection (EOF before or inside a block).
    #[error("connection closed by peer")]
    Closed,
    /// The TLS handshake failed for another reason (OpenSSL's message).
    #[error("TLS failure: {0}")]
    Tls(String),
    /// The peer does not speak TLS (its first byte is not a TLS handshake/alert record).
    #[error("peer is not speaking TLS")]
    NotTls,
    /// The client offered ALPN protocols, none of which the server supports.
    #[error("no common ALPN protocol")]
    Alpn,
    /// The server's certificate chain was refused (includes a wrong CA fingerprint:
    /// [`ChainError::UnknownCa`]).
    #[error("server certificate: {0}")]
    ServerChain(ChainError),
    /// A client certificate chain was presented and is invalid.
    #[error("client certificate: {0}")]
    ClientChain(ChainError),
    /// No common protocol version, or the client chose one outside the offered range.
    #[error("incompatible protocol version")]
    Version,
    /// The session id in the server hello is not this connection's tls-unique.
    #[error("session id mismatch")]
    BadSession,
    /// A hello could not be parsed, the peer's key hash is wrong (`IDENTITY`, server side) or
    /// a signed key does not verify (`BAD_AUTH`).
    #[error("bad handshake: {}", .0.wire())]
    Handshake(HandshakeErrorKind),
    /// The service part of the handshake failed with this error (client: the server's
    /// `E <error>` reply; server: the registrar's error).
    #[error("service handshake refused: {0:?}")]
    ServiceRefused(hush_proto::handshake::HelloTransportError),
    /// A timeout expired.
    #[error("timeout during {0:?}")]
    Timeout(Phase),
    /// Content larger than a block (never sent; the connection is still usable).
    #[error("message too large for a block")]
    LargeMsg,
    /// Local configuration / key material problem.
    #[error("configuration: {0}")]
    Config(String),
    #[error("crypto: {0}")]
    Crypto(#[from] hush_crypto::CryptoError),
}

impl From<openssl::error::ErrorStack> for TransportError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        TransportError::Config(e.to_string())
    }
}

/// One received block that cannot be used; the connection continues (reference `ERR BLOCK`
/// with empty corrId and entity). The block-encryption chain has already advanced past it.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum BlockError {
    #[error("block failed to decrypt")]
    Decrypt,
    #[error("invalid block padding")]
    Padding,
    #[error("invalid batch: {0}")]
    Batch(hush_proto::DecodeError),
}
