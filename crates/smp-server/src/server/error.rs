//! Why a command failed, and what that means on the wire, in the metrics and in the log — in one
//! place (design §4, *autopush-rs*).

use hush_proto::error::{BlockingInfo, BlockingReason, CommandError, ErrorType};
use hush_store::{BlockInfo, BlockReason, StoreError};

/// A failed command. [`CmdError::to_protocol`] is the `ERR` the client gets,
/// [`CmdError::label`] the metric label, [`CmdError::log`] writes the log line (at a level chosen
/// here).
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// Authorization failed, or the entity does not exist / is gone, or the key does not match.
    #[error("AUTH")]
    Auth,
    /// Command-level error (`CMD …`).
    #[error("CMD {0:?}")]
    Cmd(CommandError),
    /// The queue was blocked by the operator.
    #[error("BLOCKED")]
    Blocked(BlockInfo),
    /// Service signature misuse.
    #[error("SERVICE")]
    Service,
    /// `ACK` of something that was not delivered.
    #[error("NO_MSG")]
    NoMsg,
    /// The queue is full.
    #[error("QUOTA")]
    Quota,
    /// Body over the negotiated limit.
    #[error("LARGE_MSG")]
    LargeMsg,
    /// The store refused or failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A bug or an impossible state.
    #[error("internal: {0}")]
    Internal(&'static str),
}

impl CmdError {
    pub fn prohibited() -> CmdError {
        CmdError::Cmd(CommandError::Prohibited)
    }

    /// The `ERR` payload (the encoder adapts it to the client's version).
    pub fn to_protocol(&self) -> ErrorType {
        match self {
            CmdError::Auth => ErrorType::Auth,
            CmdError::Cmd(e) => ErrorType::Cmd(*e),
            CmdError::Blocked(info) => ErrorType::Blocked(blocking_info(info)),
            CmdError::Service => ErrorType::Service,
            CmdError::NoMsg => ErrorType::NoMsg,
            CmdError::Quota => ErrorType::Quota,
            CmdError::LargeMsg => ErrorType::LargeMsg,
            CmdError::Store(e) => match e {
                StoreError::NotFound
                | StoreError::SenderKeyMismatch
                | StoreError::LinkMismatch
                | StoreError::DuplicateId => ErrorType::Auth,
                StoreError::MessageTooLarge(_) => ErrorType::LargeMsg,
                StoreError::Busy => ErrorType::Store("busy".into()),
                _ => ErrorType::Internal,
            },
            CmdError::Internal(_) => ErrorType::Internal,
        }
    }

    /// Metric label (`type=` of the error families).
    pub fn label(&self) -> &'static str {
        match self.to_protocol() {
            ErrorType::Auth => "auth",
            ErrorType::Quota => "quota",
            ErrorType::LargeMsg => "large",
            ErrorType::Blocked(_) => "block",
            ErrorType::Cmd(CommandError::Prohibited) => "prohibited",
            ErrorType::NoMsg => "nomsg",
            _ => "other",
        }
    }

    /// Client errors are routine (debug); store and internal errors are the operator's business.
    pub fn log(&self, command: &'static str) {
        match self {
            CmdError::Store(StoreError::Busy) => {
                tracing::warn!(command, "store busy: command refused")
            }
            CmdError::Store(
                StoreError::NotFound
                | StoreError::SenderKeyMismatch
                | StoreError::LinkMismatch
                | StoreError::DuplicateId,
            ) => tracing::debug!(command, error = %self, "command failed"),
            CmdError::Store(e) => tracing::error!(command, error = %e, "store error"),
            CmdError::Internal(e) => tracing::error!(command, error = e, "internal error"),
            _ => tracing::debug!(command, error = %self, "command failed"),
        }
    }
}

/// Store blocking info → protocol (`notice={"ttl":n}` or `{}`).
pub fn blocking_info(info: &BlockInfo) -> BlockingInfo {
    BlockingInfo {
        reason: match info.reason {
            BlockReason::Spam => BlockingReason::Spam,
            BlockReason::Content => BlockingReason::Content,
        },
        notice: info.notice.map(|n| match n.ttl {
            Some(t) => format!("{{\"ttl\":{t}}}"),
            None => "{}".to_string(),
        }),
    }
}
