//! The API the ntf-server calls: [`PushGateway`]. Implementations: [`crate::RemoteGateway`]
//! (network, this crate) and `push_server::InProcessGateway` (direct calls into a push-server
//! running in the same process).
//!
//! ```no_run
//! # async fn demo(gw: impl push_api::PushGateway, token_hex: String, apns_json: Vec<u8>) -> Result<(), push_api::GatewayError> {
//! use push_api::{ApnsEnv, DeviceAddress, JobId, PushGateway, PushJob, PushKind, PushTarget, PushType};
//! let job = PushJob {
//!     job_id: JobId::random(),
//!     target: PushTarget::Device(DeviceAddress::Apns { env: ApnsEnv::Prod, token: token_hex }),
//!     kind: PushKind::Message,
//!     payload: apns_json,
//!     push_type: PushType::Alert,
//!     priority: None,
//!     expires_at: None,
//!     collapse_id: None,
//!     report_delivery: false,
//! };
//! gw.submit(job).await?; // durable in the push-server's outbox when this returns
//! for ev in gw.feedback(0, 100).await? { /* mark the token INVALID with ev.reason */ }
//! # Ok(()) }
//! ```

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::job::{JobId, PushJob, PushTarget};

/// Why a device token is invalid (NTF `INVALID,<reason>`, reference §5.3 #7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidReason {
    /// APNs 400 `BadDeviceToken` → `INVALID,BAD`.
    Bad,
    /// APNs 400 `DeviceTokenNotForTopic` → `INVALID,TOPIC`.
    Topic,
    /// APNs 410 `ExpiredToken`, Web Push 410 Gone → `INVALID,EXPIRED`.
    Expired,
    /// APNs 410 `Unregistered`, Web Push 404 Not Found → `INVALID,UNREGISTERED`.
    Unregistered,
}

impl InvalidReason {
    /// The NTF wire text after `INVALID,`.
    pub const fn ntf_text(self) -> &'static str {
        match self {
            InvalidReason::Bad => "BAD",
            InvalidReason::Topic => "TOPIC",
            InvalidReason::Expired => "EXPIRED",
            InvalidReason::Unregistered => "UNREGISTERED",
        }
    }
}

/// Result of a submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmitOutcome {
    /// Stored durably; will be delivered at least once (or reported in feedback).
    Queued,
    /// This job id was already accepted (pending or delivered): nothing new queued.
    Duplicate,
}

/// Why a job did not reach the device, reported back to the ntf-server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackReason {
    /// The provider accepted the push (only for jobs with `report_delivery`).
    Delivered,
    /// The token / subscription / handle target is invalid: mark the token `INVALID,<reason>`.
    InvalidToken(InvalidReason),
    /// The job failed permanently (metric label of the error, e.g. `rejected`, `bad_handle`,
    /// `payload_too_large`, `no_provider`) or expired (`expired`).
    Failed(String),
}

/// One feedback event (ordered by `seq`, per ntf-server credential).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackEvent {
    pub seq: u64,
    pub job_id: JobId,
    /// The target exactly as submitted (device address or handle).
    pub target: PushTarget,
    pub reason: FeedbackReason,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid job: {0}")]
    InvalidJob(String),
    #[error("not authorized")]
    Auth,
    #[error("push-server unavailable: {0}")]
    Unavailable(String),
    #[error("push-server storage error: {0}")]
    Storage(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// An anonymous request over a rate limit (global or per peer address); retry later.
    #[error("rate limited: {0}")]
    RateLimited(String),
    /// A stored-data cap is reached (anonymous registrations); retry much later.
    #[error("capacity reached: {0}")]
    Capacity(String),
    /// A Web Push endpoint the destination policy does not allow (address range, port, scheme).
    #[error("destination refused: {0}")]
    DestinationRefused(String),
    /// No connection slot for an anonymous peer (the rest are reserved for ntf-servers).
    #[error("busy: {0}")]
    Busy(String),
}

impl GatewayError {
    /// Wire code (network protocol).
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::InvalidJob(_) => "invalid_job",
            GatewayError::Auth => "auth",
            GatewayError::Unavailable(_) => "unavailable",
            GatewayError::Storage(_) => "storage",
            GatewayError::Protocol(_) => "protocol",
            GatewayError::RateLimited(_) => "rate_limited",
            GatewayError::Capacity(_) => "capacity",
            GatewayError::DestinationRefused(_) => "destination_refused",
            GatewayError::Busy(_) => "busy",
        }
    }

    pub fn from_code(code: &str, message: String) -> GatewayError {
        match code {
            "invalid_job" => GatewayError::InvalidJob(message),
            "auth" => GatewayError::Auth,
            "storage" => GatewayError::Storage(message),
            "unavailable" => GatewayError::Unavailable(message),
            "rate_limited" => GatewayError::RateLimited(message),
            "capacity" => GatewayError::Capacity(message),
            "destination_refused" => GatewayError::DestinationRefused(message),
            "busy" => GatewayError::Busy(message),
            _ => GatewayError::Protocol(message),
        }
    }
}

/// What the ntf-server needs from the push-server.
pub trait PushGateway: Send + Sync {
    /// Hands over a job. Returns after the job is durable in the push-server's outbox. Safe to
    /// retry with the same job id (a duplicate is not delivered twice).
    fn submit(
        &self,
        job: PushJob,
    ) -> impl Future<Output = Result<SubmitOutcome, GatewayError>> + Send;
    /// Feedback events with `seq > after` (at most `max`).
    fn feedback(
        &self,
        after: u64,
        max: u32,
    ) -> impl Future<Output = Result<Vec<FeedbackEvent>, GatewayError>> + Send;
    /// Forgets feedback events up to `seq` (after the ntf-server stored their effect).
    fn ack_feedback(&self, up_to: u64) -> impl Future<Output = Result<(), GatewayError>> + Send;
}
