use std::path::PathBuf;

/// Every error a store returns. The relay maps them to protocol errors in one place:
/// `NotFound`/`SenderKeyMismatch`/`LinkMismatch`/`DuplicateId` (client-supplied id) → `AUTH`,
/// `Busy` → `ERR STORE busy` (or connection back-off), the rest → `ERR STORE …`/`INTERNAL`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such queue (never existed or deleted).
    #[error("queue not found")]
    NotFound,
    /// One of the ids (recipient, sender, notifier, link) is already taken in its namespace.
    #[error("duplicate id")]
    DuplicateId,
    /// The queue is already secured with a different sender key.
    #[error("queue already secured with a different key")]
    SenderKeyMismatch,
    /// `set_link` with another link id or different fixed data than the stored link.
    #[error("link data mismatch")]
    LinkMismatch,
    /// A caller-side argument violates a store invariant.
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("message body too large: {0} bytes")]
    MessageTooLarge(usize),
    /// Load shedding: the write queue (or the reader pool) is saturated. Retry later.
    #[error("store busy")]
    Busy,
    /// The store was shut down (writer thread gone).
    #[error("store closed")]
    Closed,
    /// The file exists but is not a SQLite database. It was not modified.
    #[error("{path}: not a SQLite database ({detail}); refusing to open, file left untouched")]
    NotDatabase { path: PathBuf, detail: String },
    /// The file is a SQLite database that failed the integrity check. It was not modified.
    #[error(
        "{path}: database is corrupt or truncated ({detail}); refusing to open, file left untouched"
    )]
    Corrupt { path: PathBuf, detail: String },
    /// The database was written by a newer hush (schema `found` > `supported`).
    #[error("{path}: schema version {found} is newer than supported {supported}")]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// A stored row could not be decoded.
    #[error("bad stored record: {0}")]
    BadRecord(String),
    /// The batch transaction holding this operation failed to commit; nothing of it is stored.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(tokio_postgres::Error),
    #[error("postgres pool: {0}")]
    Pool(String),
    /// The PostgreSQL schema was written by a newer hush.
    #[error("PostgreSQL schema version {found} is newer than supported {supported}")]
    PgSchemaTooNew { found: i64, supported: i64 },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("internal store error: {0}")]
    Internal(&'static str),
}

pub type StoreResult<T> = Result<T, StoreError>;
