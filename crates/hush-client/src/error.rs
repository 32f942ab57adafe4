//! Client errors: one typed enum for everything a command can end with.

use std::sync::Arc;

use hush_proto::error::ErrorType;
use hush_transport::{ChainError, TransportError};
use thiserror::Error;

/// Why a command (or a connection) failed. Cheap to clone: the pool hands the same error to
/// every waiter and keeps the last one in its state.
#[derive(Clone, Debug, Error)]
pub enum ClientError {
    /// The relay answered `ERR <error>` (reference §3.4), e.g. `AUTH`, `QUOTA`, `NO_MSG`,
    /// `CMD SYNTAX`.
    #[error("relay error: {0:?}")]
    Smp(ErrorType),
    /// The connection failed (TLS, handshake, socket). A wrong CA fingerprint in the server
    /// address shows up here as [`TransportError::ServerChain`]`(`[`ChainError::UnknownCa`]`)`;
    /// see [`ClientError::is_unknown_ca`].
    #[error("transport: {0}")]
    Transport(Arc<TransportError>),
    /// No response within the command timeout. The command may still have been executed by
    /// the relay; a response arriving later is reported as [`crate::ServerEvent::LateResponse`].
    #[error("command timed out")]
    Timeout,
    /// Connecting (TCP + TLS + handshake) took longer than the connect timeout.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The connection is closed (by us, by the peer, or after a transport error); the command
    /// was not (or may not have been) answered.
    #[error("connection closed")]
    Closed,
    /// The relay answered with something this command does not expect (wrong tag or wrong
    /// entity id).
    #[error("unexpected response {tag} to {command}")]
    UnexpectedResponse {
        command: &'static str,
        tag: &'static str,
    },
    /// A response could not be parsed (reference: the client gets a `CMD SYNTAX`/`UNKNOWN`).
    #[error("bad response from relay: {0:?}")]
    BadResponse(ErrorType),
    /// The transmission does not fit a block (reference `TELargeMsg`); nothing was sent.
    #[error("transmission too large for a block")]
    LargeMsg,
    /// The command needs a crypto_box authenticator but the relay sent no session key
    /// (SMP < 7), or the key cannot authorize at all.
    #[error("cannot authorize command: {0}")]
    Auth(&'static str),
    /// Key or decryption failure on our side (bad server key, undecryptable message body).
    #[error("crypto: {0}")]
    Crypto(Arc<hush_crypto::CryptoError>),
    /// A decrypted message or notification does not parse.
    #[error("cannot parse decrypted data: {0}")]
    Decode(hush_proto::DecodeError),
    /// The address cannot be used (no host this client can reach, e.g. only `.onion` hosts,
    /// or a bad key hash).
    #[error("address: {0}")]
    Address(String),
    /// The pool has been closed.
    #[error("client pool closed")]
    PoolClosed,
}

impl ClientError {
    /// The relay's CA fingerprint is not the one in the address (`smp://<fp>@…`).
    pub fn is_unknown_ca(&self) -> bool {
        matches!(self, ClientError::Transport(e)
            if matches!(**e, TransportError::ServerChain(ChainError::UnknownCa)))
    }

    /// The relay's `ERR` payload, if this is one.
    pub fn smp_error(&self) -> Option<&ErrorType> {
        match self {
            ClientError::Smp(e) => Some(e),
            _ => None,
        }
    }

    /// Errors after which the connection is gone or unusable (reconnecting may help), as
    /// opposed to per-command errors.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            ClientError::Transport(_)
                | ClientError::Closed
                | ClientError::ConnectTimeout
                | ClientError::PoolClosed
        )
    }

    /// Errors that will not go away by retrying the same command on a new connection
    /// (the relay rejected it): `ERR` other than `INTERNAL`/`STORE`, bad responses,
    /// local key problems.
    pub fn is_permanent(&self) -> bool {
        match self {
            ClientError::Smp(e) => !matches!(e, ErrorType::Internal | ErrorType::Store(_)),
            ClientError::UnexpectedResponse { .. }
            | ClientError::BadResponse(_)
            | ClientError::LargeMsg
            | ClientError::Auth(_)
            | ClientError::Crypto(_)
            | ClientError::Decode(_)
            | ClientError::Address(_) => true,
            _ => false,
        }
    }
}

impl From<TransportError> for ClientError {
    fn from(e: TransportError) -> Self {
        ClientError::Transport(Arc::new(e))
    }
}

impl From<hush_crypto::CryptoError> for ClientError {
    fn from(e: hush_crypto::CryptoError) -> Self {
        ClientError::Crypto(Arc::new(e))
    }
}

impl From<hush_proto::DecodeError> for ClientError {
    fn from(e: hush_proto::DecodeError) -> Self {
        ClientError::Decode(e)
    }
}
