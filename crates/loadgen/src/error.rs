//! One error type for the load generator's library side.

use hush_client::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("relay client: {0}")]
    Client(#[from] ClientError),
    #[error("address: {0}")]
    Address(String),
    #[error("relay process: {0}")]
    Relay(String),
    #[error("{system} protocol: {detail}")]
    Protocol {
        system: &'static str,
        detail: String,
    },
    #[error("/proc: {0}")]
    Proc(String),
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

impl LoadError {
    pub(crate) fn proto(system: &'static str, detail: impl Into<String>) -> LoadError {
        LoadError::Protocol {
            system,
            detail: detail.into(),
        }
    }
}
