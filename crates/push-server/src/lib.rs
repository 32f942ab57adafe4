//! push-server: the push gateway (design §1, §2; reference `protocols.md` §5.3, §5.5).
//!
//! The push-server knows device tokens and provider credentials, and nothing else: it never learns
//! relays, queues or content (payloads arrive already encrypted end to end by the ntf-server).
//!
//! What the ntf-server side needs (jobs, the [`PushGateway`] trait, push handles, the remote
//! protocol's wire types and client) is the small `push-api` crate, re-exported here as
//! [`job`], [`handle`] and the items below, so that an ntf-server reaching a remote push-server
//! does not link this crate.
//!
//! * [`gateway`]: [`InProcessGateway`] (direct calls into a [`service::PushService`] in the same
//!   process) and [`AnyGateway`] (it or a [`net::RemoteGateway`]).
//! * [`net`]: the server side of the network protocol.
//! * [`provider`]: one folder per push provider behind the [`provider::Provider`] trait, selected
//!   from a map built in one place: [`provider::apns`], [`provider::webpush`], [`provider::sink`]
//!   (in memory, for tests).
//! * [`error`]: [`PushError`], the one place where a provider error becomes an outbox action, a
//!   feedback reason for the ntf-server, a metric label and a log level.
//! * [`outbox`]: SQLite outbox (single writer thread, group commit): at-least-once, dedup by job id.
//! * [`service`]: the dispatcher: outbox → providers, retries with backoff and jitter, expiry, feedback.
//! * The local APNs stand-in (for tests and `hush up`) is the `apns-sink` crate.
//! * [`config`], [`cli`], [`metrics`]: INI configuration, clap CLI, Prometheus endpoint.

pub mod cli;
pub mod config;
pub mod error;
pub mod gateway;
pub mod http_util;
pub mod jwt;
pub mod metrics;
pub mod net;
pub mod outbox;
pub mod provider;
pub mod service;

pub use error::PushError;
pub use gateway::{AnyGateway, InProcessGateway};
pub use hush_server_common::DestinationPolicy;
pub use push_api::{
    ApnsEnv, DeviceAddress, FeedbackEvent, FeedbackReason, GatewayError, HANDLE_PROVIDER_CODE,
    HandleError, HandleKey, InvalidReason, JobId, PushGateway, PushHandle, PushJob, PushKind,
    PushTarget, PushType, Sealed, SubmitOutcome,
};
pub use push_api::{handle, job};

/// Current Unix time in seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    hush_server_common::time::unix_millis() / 1000
}

/// Current Unix time in milliseconds (the one clock helper of the servers).
pub use hush_server_common::time::unix_millis as unix_now_ms;
