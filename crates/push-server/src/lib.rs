//! push-server: the push gateway (design §1, §2; reference `protocols.md` §5.3, §5.5).
//!
//! The push-server knows device tokens and provider credentials, and nothing else: it never learns
//! relays, queues or content (payloads arrive already encrypted end to end by the ntf-server).
//!
//! * [`job`]: what the ntf-server hands over ([`PushJob`], [`PushTarget`], [`DeviceAddress`]).
//! * [`gateway`]: the [`PushGateway`] trait with two implementations, [`InProcessGateway`] (direct
//!   calls, one process) and [`net::RemoteGateway`] (TLS with a pinned certificate + bearer credential).
//! * [`handle`]: split mode: opaque push handles (the device token sealed under a push-server-only key).
//! * [`provider`]: one module per push provider behind the [`provider::Provider`] trait: [`provider::apns`],
//!   [`provider::webpush`], [`provider::sink`] (in memory, for tests).
//! * [`error`]: [`PushError`], the one place where a provider error becomes an outbox action, a
//!   feedback reason for the ntf-server, a metric label and a log level.
//! * [`outbox`]: SQLite outbox (single writer thread, group commit): at-least-once, dedup by job id.
//! * [`service`]: the dispatcher: outbox → providers, retries with backoff and jitter, expiry, feedback.
//! * [`apns_sink`]: a local HTTP/2 TLS server that behaves like APNs (for tests and `hush up`).
//! * [`config`], [`cli`], [`metrics`]: INI configuration, clap CLI, Prometheus endpoint.

pub mod apns_sink;
pub mod cli;
pub mod config;
pub mod error;
pub mod gateway;
pub mod handle;
pub mod http_util;
pub mod job;
pub mod jwt;
pub mod metrics;
pub mod net;
pub mod outbox;
pub mod provider;
pub mod service;

pub use error::{InvalidReason, PushError};
pub use gateway::{
    AnyGateway, FeedbackEvent, FeedbackReason, GatewayError, InProcessGateway, PushGateway,
    SubmitOutcome,
};
pub use handle::{HandleError, HandleKey, PushHandle, Sealed};
pub use hush_server_common::DestinationPolicy;
pub use job::{ApnsEnv, DeviceAddress, JobId, PushJob, PushKind, PushTarget, PushType};

/// The two-letter NTF device-token provider code of a split-mode push handle (`TNEW` carries
/// `PH` + shortString(handle text), [`hush_proto::ntf::PushProvider::PushHandle`]). Used only
/// between hush clients and hush servers.
pub const HANDLE_PROVIDER_CODE: &[u8; 2] = hush_proto::ntf::PushProvider::PushHandle.code();

/// Current Unix time in seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    hush_server_common::time::unix_millis() / 1000
}

/// Current Unix time in milliseconds (the one clock helper of the servers).
pub use hush_server_common::time::unix_millis as unix_now_ms;
