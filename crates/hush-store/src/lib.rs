//! hush-store: the relay's persistent state (reference `protocols.md` §3.5–§3.8, §7.4).
//!
//! One trait, [`QueueStore`], with three backends:
//! * [`SqliteStore`] — embedded default: one writer thread with group commit (many operations
//!   per transaction, each acknowledged only after its transaction committed), WAL, a bounded pool
//!   of read connections gated by a semaphore, load shedding ([`StoreError::Busy`]) when the
//!   write queue is full, versioned schema, integrity check on open.
//! * [`MemoryStore`] — same semantics in RAM.
//! * [`PgStore`] — PostgreSQL (tokio-postgres + deadpool-postgres), one transaction per
//!   operation, queue rows locked per operation, bounded pool (`Busy` on wait timeout).
//!
//! ```no_run
//! # async fn demo() -> Result<(), hush_store::StoreError> {
//! use std::sync::Arc;
//! use hush_store::{QueueStore, SqliteOptions, SqliteStore};
//! let store: Arc<dyn QueueStore> =
//!     Arc::new(SqliteStore::open("/var/opt/hush/smp-server.db", SqliteOptions::default())?);
//! let head = store.peek_message([0u8; 24]).await;
//! # let _ = head; Ok(()) }
//! ```

mod codec;
mod error;
mod memory;
pub mod postgres;
pub mod sqlite;
mod store;
mod types;
mod validate;

pub use error::{StoreError, StoreResult};
pub use memory::MemoryStore;
pub use postgres::{PgOptions, PgStore};
pub use sqlite::{SqliteOptions, SqliteStore, SyncPolicy, WriterStats};
pub use store::{QueueStore, StoreFuture};
pub use types::*;
