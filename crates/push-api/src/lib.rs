//! push-api: what an ntf-server (or a device registering a push handle) needs to reach a
//! push-server, without linking the push-server itself (design §1, §2; reference `protocols.md`
//! §5.3, §5.5).
//!
//! * [`job`]: what the ntf-server hands over ([`PushJob`], [`PushTarget`], [`DeviceAddress`]).
//! * [`gateway`]: the [`PushGateway`] trait, submit outcomes, feedback ([`FeedbackReason`],
//!   [`InvalidReason`]) and [`GatewayError`]. Implementations: [`RemoteGateway`] (here) and
//!   `push_server::InProcessGateway` (a push-server in the same process).
//! * [`handle`]: split mode: opaque push handles (the device token sealed under a push-server-only
//!   key; the key and the sealing are used by the push-server, the handle text by everyone).
//! * [`remote`]: the network protocol (JSON lines over TLS with a pinned certificate + bearer
//!   credential): wire types, line codecs and the client [`RemoteGateway`]. The server side is
//!   `push_server::net`.
//!
//! Dependencies stay small on purpose: no HTTP stack, no SQLite, no providers
//! (`cargo tree -p push-api -e normal`).

pub mod gateway;
pub mod handle;
pub mod job;
pub mod remote;

pub use gateway::{
    FeedbackEvent, FeedbackReason, GatewayError, InvalidReason, PushGateway, SubmitOutcome,
};
pub use handle::{HandleError, HandleKey, PushHandle, Sealed};
pub use job::{ApnsEnv, DeviceAddress, JobId, PushJob, PushKind, PushTarget, PushType};
pub use remote::{RemoteConfig, RemoteGateway, parse_fingerprint};

/// The two-letter NTF device-token provider code of a split-mode push handle (`TNEW` carries
/// `PH` + shortString(handle text), [`hush_proto::ntf::PushProvider::PushHandle`]). Used only
/// between hush clients and hush servers.
pub const HANDLE_PROVIDER_CODE: &[u8; 2] = hush_proto::ntf::PushProvider::PushHandle.code();

/// Default listen port of a push-server (`[TRANSPORT] port`; the in-process push-server of an
/// ntf-server listens on it too).
pub const DEFAULT_PORT: u16 = 5228;
