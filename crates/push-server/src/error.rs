//! Provider errors and, in one place, what each one means: the outbox action, the feedback reason
//! reported to the ntf-server, the metric label and the log level.

use std::time::Duration;

pub use push_api::InvalidReason;

/// An error from a provider (or from resolving a job's target).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The provider says the token / subscription is invalid.
    #[error("device token invalid ({reason:?}: {detail})")]
    InvalidToken {
        reason: InvalidReason,
        detail: String,
    },
    /// APNs 403 `ExpiredProviderToken` (after the provider already refreshed its JWT and retried).
    #[error("provider token expired")]
    ProviderTokenExpired,
    /// 429 (APNs `TooManyRequests`, Web Push rate limit).
    #[error("rate limited by the provider")]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx or APNs `Shutdown`/`ServiceUnavailable`.
    #[error("provider unavailable ({status} {reason})")]
    Unavailable { status: u16, reason: String },
    /// Could not connect, TLS or HTTP/2 failure, timeout.
    #[error("connection to the provider failed: {0}")]
    Connection(String),
    /// The payload exceeds the provider's limit (APNs 413, Web Push record size).
    #[error("payload too large for the provider")]
    PayloadTooLarge,
    /// Any other rejection (other 400/403, `TopicDisallowed`, bad provider token...). Permanent.
    #[error("rejected by the provider ({status} {reason})")]
    Rejected { status: u16, reason: String },
    /// The push handle does not open with this server's key (or is malformed). Permanent.
    #[error("push handle cannot be opened")]
    BadHandle,
    /// No provider is configured for this target. Permanent.
    #[error("no provider configured for {0}")]
    NoProvider(&'static str),
    /// The job expired before it could be delivered.
    #[error("job expired before delivery")]
    Expired,
    /// The Web Push endpoint is not allowed by `[WEBPUSH] destinations` / `allow_any_port` (checked
    /// on the address actually connected to). The text names the range or port, never the host.
    #[error("destination refused: {0}")]
    DestinationRefused(String),
}

/// What the dispatcher does with a failed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Keep the job and try again later (exponential backoff with jitter; at least `min_delay`).
    Retry { min_delay: Option<Duration> },
    /// Drop the job and tell the ntf-server the token is invalid.
    Invalidate(InvalidReason),
    /// Drop the job and report a permanent failure.
    Drop,
}

/// Log level of an error (as a value, so that the choice lives here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl PushError {
    /// The one table: action, metric label, log level.
    pub fn action(&self) -> Action {
        match self {
            PushError::InvalidToken { reason, .. } => Action::Invalidate(*reason),
            // This server will never deliver to it: the device must register another endpoint.
            PushError::DestinationRefused(_) => Action::Invalidate(InvalidReason::Bad),
            PushError::ProviderTokenExpired => Action::Retry {
                min_delay: Some(Duration::from_secs(1)),
            },
            PushError::RateLimited { retry_after } => Action::Retry {
                min_delay: *retry_after,
            },
            PushError::Unavailable { .. } | PushError::Connection(_) => {
                Action::Retry { min_delay: None }
            }
            PushError::PayloadTooLarge
            | PushError::Rejected { .. }
            | PushError::BadHandle
            | PushError::NoProvider(_)
            | PushError::Expired => Action::Drop,
        }
    }

    /// Prometheus label value (`reason`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            PushError::InvalidToken { reason, .. } => match reason {
                InvalidReason::Bad => "invalid_bad",
                InvalidReason::Topic => "invalid_topic",
                InvalidReason::Expired => "invalid_expired",
                InvalidReason::Unregistered => "invalid_unregistered",
            },
            PushError::ProviderTokenExpired => "provider_token_expired",
            PushError::RateLimited { .. } => "rate_limited",
            PushError::Unavailable { .. } => "unavailable",
            PushError::Connection(_) => "connection",
            PushError::PayloadTooLarge => "payload_too_large",
            PushError::Rejected { .. } => "rejected",
            PushError::BadHandle => "bad_handle",
            PushError::NoProvider(_) => "no_provider",
            PushError::Expired => "expired",
            PushError::DestinationRefused(_) => "destination_refused",
        }
    }

    pub fn log_level(&self) -> LogLevel {
        match self {
            PushError::InvalidToken { .. } | PushError::Expired => LogLevel::Info,
            PushError::RateLimited { .. }
            | PushError::Unavailable { .. }
            | PushError::Connection(_)
            | PushError::ProviderTokenExpired => LogLevel::Warn,
            PushError::BadHandle
            | PushError::PayloadTooLarge
            | PushError::DestinationRefused(_) => LogLevel::Warn,
            PushError::Rejected { .. } | PushError::NoProvider(_) => LogLevel::Error,
        }
    }

    /// Logs the error at its level (no token, no address: only the job id and the provider).
    pub fn log(&self, provider: &str, job: &crate::JobId) {
        match self.log_level() {
            LogLevel::Debug => tracing::debug!(%provider, %job, "push failed: {self}"),
            LogLevel::Info => tracing::info!(%provider, %job, "push failed: {self}"),
            LogLevel::Warn => tracing::warn!(%provider, %job, "push failed: {self}"),
            LogLevel::Error => tracing::error!(%provider, %job, "push failed: {self}"),
        }
    }
}

/// Maps an APNs error reply (status, `reason`) to a [`PushError`] (Apple's documented table).
/// `ExpiredProviderToken` is handled by the APNs provider first (refresh + retry).
pub fn apns_error(status: u16, reason: &str) -> PushError {
    let r = reason.to_string();
    match (status, reason) {
        (400, "BadDeviceToken") => PushError::InvalidToken {
            reason: InvalidReason::Bad,
            detail: r,
        },
        (400, "DeviceTokenNotForTopic") => PushError::InvalidToken {
            reason: InvalidReason::Topic,
            detail: r,
        },
        (410, "ExpiredToken") => PushError::InvalidToken {
            reason: InvalidReason::Expired,
            detail: r,
        },
        (410, "Unregistered") => PushError::InvalidToken {
            reason: InvalidReason::Unregistered,
            detail: r,
        },
        (403, "ExpiredProviderToken") => PushError::ProviderTokenExpired,
        (413, _) => PushError::PayloadTooLarge,
        (429, _) => PushError::RateLimited { retry_after: None },
        (500..=599, _) => PushError::Unavailable { status, reason: r },
        // 410 with another reason: the reference reconnects and retries.
        (410, _) => PushError::Unavailable { status, reason: r },
        _ => PushError::Rejected { status, reason: r },
    }
}
