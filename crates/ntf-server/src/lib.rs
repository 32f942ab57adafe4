//! ntf-server: the private notification subscriber (design §1, §2; reference `protocols.md` §5).
//!
//! Devices register a push token (`TNEW`/`TVFY`) and hand over notifier credentials of their
//! receive queues (`SNEW`); the server subscribes to those queues on their relays as notifier
//! (`NSUB`, one connection per relay through [`hush_client::SmpClientPool`]) and turns every
//! `NMSG` into an encrypted push, handed to the push-server through its
//! [`push_api::PushGateway`] (in the same process or over the network; in split mode the
//! device registers a push handle, provider code `PH`, and this server never sees the token).
//!
//! Crate shape: the library depends on the small `push-api` crate (jobs, the gateway trait, push
//! handles, the remote client), not on the push-server. The push-server itself comes in only with
//! the cargo feature **`embedded-push`** (default on): it is what `[PUSH] mode = in_process` runs
//! (the binary's start-up path, `ntf-server init`'s push-server configuration
//! (`init::init_push`), `hush up`). `cargo build -p ntf-server --no-default-features` gives a
//! server that only reaches a separate push-server (`mode = remote`); its configuration refuses
//! `in_process` with an error naming `[PUSH] mode`.
//!
//! * [`policy`]: the delivery policy (budget of silent pushes, coalesced alerts), sans-IO.
//! * [`payload`]: APNs JSON payloads (verification, message, periodic), reference byte layout.
//! * [`store`]: tokens, subscriptions, last notifications; memory, SQLite (one writer thread) or
//!   PostgreSQL shared by several instances (relay leases, changes announced with `NOTIFY`).
//! * [`command`]: command parsing incl. push handles.
//! * [`core`]: the NTF state machine, relay events, push dispatch.
//! * [`server`]: listeners and connections; [`config`], [`init`], [`cli`], [`metrics`],
//!   [`control`]: operations.

pub mod cli;
pub mod command;
pub mod config;
pub mod control;
pub mod core;
pub mod import;
pub mod init;
pub mod metrics;
pub mod payload;
pub mod policy;
pub mod relays;
pub mod server;
pub mod store;

pub use config::{Config, Paths, PushConfig};
pub use core::{Core, CoreOptions};
pub use hush_server_common::{DestinationPolicy, Rate};
pub use policy::{BudgetConfig, Decision, Policy, PolicyMode, PushStyle};
pub use server::{NtfServer, RunError, start};
pub use store::{Store, StoreMode};

/// Current Unix time in seconds (the one clock helper of the servers).
pub use hush_server_common::time::unix_secs as unix_now;
