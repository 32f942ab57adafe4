//! SQLite backend: writes run on the caller's thread in one open transaction, a flusher thread
//! commits (group commit), a bounded pool of read connections.
//!
//! Write path ([`group_commit::InlineWriter`]): a write method runs its operation at once, under
//! the writer's lock,
//! inside the open transaction (`BEGIN IMMEDIATE`, each operation in its own savepoint: a failing
//! one is rolled back alone and gets its error), over the shared group-commit transaction logic
//! ([`hush_server_common::group_commit::Committer`]). Only after the flusher's `COMMIT` and,
//! with `sync = full`, its fdatasync of the WAL are the callers' futures completed (an `ACK`'s
//! delete and an append's outcome are told earlier, see below). If the commit fails, every
//! operation of the transaction gets [`StoreError::CommitFailed`] and nothing of it is stored.
//! At most `write_queue` operations wait in the open transaction ([`StoreError::Busy`] beyond).
//!
//! Read path: lookups take a permit from a semaphore (as many permits as read connections; a
//! caller waiting longer than `read_timeout` gets [`StoreError::Busy`]) and run on a read-only
//! connection in `spawn_blocking`. WAL mode lets reads proceed while the writer commits; a read
//! issued after a write's future resolved sees that write.
//!
//! Caches (the relay's per-message path — `SEND`: lookup by sender id, append; `ACK`: lookup by
//! recipient id, delete; delivery: peek — touches SQLite only for the `INSERT` / `DELETE`):
//! * queue records by recipient / sender / notifier / link id, and each cached queue's head
//!   (or "empty"), in a bounded [`cache`](self::cache) shared with the readers. When all the
//!   queues fit in half of `cache_queues` at open they are all loaded, and until the first
//!   eviction an unknown id is answered from memory too (no SQLite read, so a lookup of an
//!   unknown id takes the time of a known one: no queue-existence timing signal). It only holds
//!   committed state: the writer applies a batch's changes to it after `COMMIT` and before
//!   answering the batch's callers; see that module for why a concurrent miss cannot refill it
//!   with stale data. Options `cache_queues` / `cache_head_bytes`.
//! * the writer's per-queue message state (row id, notifier id, item count, quota
//!   marker, head id), so append and ACK run no `SELECT` first. Only the writer changes the
//!   database, so it is exact; it is dropped for a queue whose operation failed (savepoint
//!   rolled back) and entirely when a batch fails to commit.
//!
//! Durability: every write, `ACK`'s delete included, resolves after its transaction's `COMMIT`
//! and (`sync = full`) the WAL's fdatasync; SQLite itself runs with `synchronous=NORMAL`, so its
//! commits only write the WAL and the sync happens outside the writer's lock.
//!
//! Must be used from within a tokio runtime (reads use `spawn_blocking`).

mod cache;
mod open;
mod ops;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hush_server_common::group_commit::{self, Backend, InlineWriter, Ran, SubmitError};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Semaphore, oneshot};

use crate::error::{StoreError, StoreResult};
use crate::store::{QueueStore, StoreFuture};
use crate::types::{
    AppendOutcome, BlockInfo, DEFAULT_QUOTA, DeleteOutcome, EntityId, Message, MsgId, NewMessage,
    NotifierCreds, PendingNtf, QueueLink, QueueRecord, QueueStatus, ServiceParty, ServiceRecord,
    StoreStats,
};
use cache::{Cache, Key};
use ops::{IdKind, WriterState};

pub use open::SCHEMA_VERSION;

/// What `COMMIT` waits for (`PRAGMA synchronous`, WAL mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Default, ini value `full`: every commit is fsynced (the WAL, by the flusher, as
    /// `synchronous=FULL` would) before it is acknowledged; an acknowledged write survives a
    /// process crash and a power loss.
    #[default]
    Full,
    /// Ini value `normal` (`synchronous=NORMAL`): the WAL is fsynced only at checkpoints; an
    /// acknowledged write survives a process crash (SIGKILL) but the last commits may be lost on
    /// power loss / OS crash. Faster.
    Normal,
}

impl SyncPolicy {
    /// Parse the ini value (`full` / `normal`, case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "full" => Some(Self::Full),
            "normal" => Some(Self::Normal),
            _ => None,
        }
    }

    fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// Options for [`SqliteStore::open`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub sync: SyncPolicy,
    /// Most writes waiting in the open transaction for their commit; beyond, writes get `Busy`.
    pub write_queue: usize,
    /// Most jobs committed in one transaction.
    pub max_batch: usize,
    /// Read connections (and semaphore permits).
    pub readers: usize,
    /// How long a read waits for a free connection before `Busy`.
    pub read_timeout: Duration,
    /// Messages per queue before the quota marker.
    pub quota: usize,
    /// Create the file if it does not exist (an existing file is never re-created).
    pub create: bool,
    /// Run `PRAGMA quick_check` on open (O(database size)).
    pub quick_check: bool,
    /// `PRAGMA secure_delete = ON` on the writer connection (default on): deleted messages,
    /// notifications and queues are overwritten with zeros in the database pages, so a copy of
    /// the file (disk image, backup) does not hold delivered messages in free pages. Off only
    /// for comparison (the `append` bench).
    pub secure_delete: bool,
    /// Queue records kept in memory (least recently used evicted; 0 = no cache): lookups by
    /// recipient / sender / notifier / link id of a cached queue, and its head, are answered
    /// without SQLite. About 0.5 KB each (more with short-link data).
    pub cache_queues: usize,
    /// Most bytes of head message bodies kept in memory beside the cached records.
    pub cache_head_bytes: usize,
    /// `PRAGMA wal_autocheckpoint` (pages; SQLite's default 1000): the writer checkpoints the
    /// WAL into the database file once it holds this many pages.
    pub wal_autocheckpoint: u32,
    /// `PRAGMA journal_size_limit` (bytes; -1 = never truncate): the WAL file is truncated to
    /// this size after a checkpoint reset it.
    pub journal_size_limit: i64,
    /// How long a transaction that holds only changes already answered (an `ACK`'s delete, a
    /// notification drain: their loss in a crash only makes the relay deliver the message or
    /// notification again) may stay open waiting for more work before it is committed. The next
    /// durable write (a `SEND`, a new queue) then commits them together with itself, so a
    /// SEND → MSG → ACK cycle costs one fsync'd commit instead of two. Zero commits them at once.
    pub early_commit_delay: Duration,
    /// Under load (the last commit held two or more `SEND`s or other writes whose replies wait
    /// for it, and fewer are in the open transaction), how long the flusher waits before the
    /// commit so that more of them share its fsync (`group_commit::Options::busy_commit_delay`).
    /// A lone client's writes never wait; writes answered early (an `ACK`) and the outcome of
    /// an append (the subscriber's `MSG`) never wait for it. Zero: every commit at once.
    pub busy_commit_delay: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            sync: SyncPolicy::Full,
            write_queue: 4096,
            max_batch: 1024,
            readers: 4,
            read_timeout: Duration::from_secs(5),
            quota: DEFAULT_QUOTA,
            create: true,
            quick_check: true,
            secure_delete: true,
            cache_queues: 65_536,
            cache_head_bytes: 16 << 20,
            wal_autocheckpoint: 1000,
            journal_size_limit: -1,
            early_commit_delay: Duration::from_millis(5),
            // The cap; the wait is 0.15 ms per caller of the last commit (two: 0.3 ms).
            // Measured (BENCHMARKS.md, issue 12, 8 × 16 senders): relay CPU per message 171 µs
            // at 300 µs, 155 at 1 ms, 143–149 at 4 ms, and more msgs/s. Only `OK`s to `SEND`s
            // wait for it: writes run (and `MSG`s leave, `ACK`s are answered) at once.
            busy_commit_delay: Duration::from_millis(4),
        }
    }
}

/// A write operation queued for the writer thread.
trait WriteJob: Send {
    /// Run on the writer connection (inside the job's savepoint): whether it succeeded (else
    /// its savepoint is rolled back). The result waits in the job for [`WriteJob::finish`].
    fn run(&mut self, conn: &Connection, st: &mut WriterState) -> bool;
    /// Answer with the result once the transaction committed (or with the commit's error).
    fn finish(self: Box<Self>, commit: &Result<(), String>);
    /// The transaction is unusable: complete without running.
    fn fail(self: Box<Self>, error: String);
    /// Answered when it ran (its loss in a crash is harmless): a transaction holding only such
    /// jobs may wait up to [`SqliteOptions::early_commit_delay`] for more work before its commit.
    fn early(&self) -> bool {
        false
    }
}

type Job = Box<dyn WriteJob>;

/// The answer of a job that ran, after its transaction's commit.
fn committed<T>(r: Option<StoreResult<T>>, commit: &Result<(), String>) -> StoreResult<T> {
    match commit {
        Ok(()) => r.unwrap_or(Err(StoreError::Internal("write job did not run"))),
        Err(e) => Err(StoreError::CommitFailed(e.clone())),
    }
}

struct OpJob<F, T> {
    op: Option<F>,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<F, T> OpJob<F, T> {
    fn new(op: F, reply: oneshot::Sender<StoreResult<T>>) -> Self {
        OpJob {
            op: Some(op),
            result: None,
            reply,
        }
    }
}

impl<F, T> WriteJob for OpJob<F, T>
where
    F: FnOnce(&Connection, &mut WriterState) -> StoreResult<T> + Send + 'static,
    T: Send + 'static,
{
    fn run(&mut self, conn: &Connection, st: &mut WriterState) -> bool {
        let Some(op) = self.op.take() else {
            return false;
        };
        let r = op(conn, st);
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn finish(self: Box<Self>, commit: &Result<(), String>) {
        // The caller may have gone away (dropped future): nothing to tell then.
        let _ = self.reply.send(committed(self.result, commit));
    }

    fn fail(self: Box<Self>, error: String) {
        let _ = self.reply.send(Err(StoreError::CommitFailed(error)));
    }
}

/// A job answered after its commit that also tells `ran` its result as soon as it ran (see
/// [`QueueStore::append_message_then`]).
struct RanJob<F, T> {
    inner: OpJob<F, T>,
    ran: Option<oneshot::Sender<T>>,
}

impl<F, T> WriteJob for RanJob<F, T>
where
    F: FnOnce(&Connection, &mut WriterState) -> StoreResult<T> + Send + 'static,
    T: Clone + Send + 'static,
{
    fn run(&mut self, conn: &Connection, st: &mut WriterState) -> bool {
        let ok = self.inner.run(conn, st);
        if let (Some(Ok(v)), Some(ran)) = (&self.inner.result, self.ran.take()) {
            let _ = ran.send(v.clone());
        }
        ok
    }

    fn finish(self: Box<Self>, commit: &Result<(), String>) {
        Box::new(self.inner).finish(commit);
    }

    fn fail(self: Box<Self>, error: String) {
        Box::new(self.inner).fail(error);
    }
}

/// A job answered when it ran, not after the commit (see [`SqliteStore::write_early`]).
struct EarlyJob<F, T> {
    op: Option<F>,
    result: Option<StoreResult<T>>,
    /// Taken when answered early.
    reply: Option<oneshot::Sender<StoreResult<T>>>,
}

impl<F, T> EarlyJob<F, T> {
    fn new(op: F, reply: oneshot::Sender<StoreResult<T>>) -> Self {
        EarlyJob {
            op: Some(op),
            result: None,
            reply: Some(reply),
        }
    }
}

impl<F, T> WriteJob for EarlyJob<F, T>
where
    F: FnOnce(&Connection, &mut WriterState) -> StoreResult<T> + Send + 'static,
    T: Send + 'static,
{
    fn run(&mut self, conn: &Connection, st: &mut WriterState) -> bool {
        let Some(op) = self.op.take() else {
            return false;
        };
        let r = op(conn, st);
        let ok = r.is_ok();
        if st.wait_commit {
            // It would hand out an item of the open transaction: answer after the commit.
            self.result = Some(r);
            return ok;
        }
        if ok {
            // Reads of these queues now wait for the commit (see `Uncommitted`).
            let mut early = std::mem::take(&mut st.early_rids);
            st.uncommitted.add(&mut early);
        }
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(r);
        }
        ok
    }

    fn finish(self: Box<Self>, commit: &Result<(), String>) {
        if let Some(reply) = self.reply {
            let _ = reply.send(committed(self.result, commit));
        }
    }

    fn fail(self: Box<Self>, error: String) {
        if let Some(reply) = self.reply {
            let _ = reply.send(Err(StoreError::CommitFailed(error)));
        }
    }

    fn early(&self) -> bool {
        true
    }
}

/// Writer counters (for metrics and to see group commit at work).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed.
    pub batches: u64,
    /// Operations committed (in those transactions).
    pub ops: u64,
    /// Largest batch so far.
    pub max_batch: u64,
    /// `fdatasync`s of the WAL (`sync = full`: one per commit, before its callers are answered).
    pub wal_syncs: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    ops: AtomicU64,
    max_batch: AtomicU64,
}

struct Inner {
    path: PathBuf,
    counters: Arc<Counters>,
    cache: Arc<Cache>,
    /// Queues with answered, uncommitted changes (shared with the writer thread).
    uncommitted: Arc<ops::Uncommitted>,
    writer: Arc<InlineWriter<RelayWriter>>,
    flusher: Option<JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
    read_permits: Arc<Semaphore>,
    read_timeout: Duration,
    /// Whether any queue may be associated with a service, per side (recipient, notifier):
    /// false while none is (checked at open, set by the first association), so that
    /// [`QueueStore::get_queue_service`] — asked by every plain `NSUB` — needs no read then.
    services_used: [std::sync::atomic::AtomicBool; 2],
}

fn side(p: ServiceParty) -> usize {
    match p {
        ServiceParty::Recipient => 0,
        ServiceParty::Notifier => 1,
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The flusher commits (and syncs) what is open, then exits.
        self.writer.close();
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
    }
}

/// SQLite [`QueueStore`]. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn configure(c: &Connection, sync: SyncPolicy, secure_delete: bool) -> StoreResult<()> {
    c.busy_timeout(Duration::from_secs(5))?;
    let mode: String = c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Internal("could not enable WAL journal mode"));
    }
    c.pragma_update(None, "synchronous", sync.pragma())?;
    // Per connection; only the writer deletes. ON (not FAST): message bodies live in overflow
    // pages, which FAST would leave on the freelist unerased.
    let on: i64 = c.query_row(
        if secure_delete {
            "PRAGMA secure_delete = ON"
        } else {
            "PRAGMA secure_delete = OFF"
        },
        [],
        |r| r.get(0),
    )?;
    if (on == 1) != secure_delete {
        return Err(StoreError::Internal("could not set secure_delete"));
    }
    Ok(())
}

/// Creates a new database at `path`, private (0600) from the first byte and atomically: the
/// schema is written to a 0600 temporary sibling which is then renamed into place (and the
/// directory fsync'd). A crash part-way leaves only the temporary file, never an empty or
/// half-initialised `path` (which the next start would rightly refuse as truncated).
fn create_private_db(path: &Path) -> StoreResult<()> {
    let name = path
        .file_name()
        .ok_or_else(|| StoreError::Internal("database path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".new");
    let tmp = path.with_file_name(tmp_name);
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut p = tmp.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(std::path::PathBuf::from(p)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    hush_server_common::private::create_private_file(&tmp, false)?;
    {
        let mut c = Connection::open_with_flags(
            &tmp,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.pragma_update(None, "synchronous", "FULL")?;
        open::migrate(&mut c, path)?;
    }
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    hush_server_common::private::sync_dir(dir)?;
    Ok(())
}

impl SqliteStore {
    /// Open (or create) the database at `path`. An existing file is checked first, read-only:
    /// a file that is not SQLite, is truncated or corrupt, or has a newer schema is refused with
    /// [`StoreError::NotDatabase`] / [`StoreError::Corrupt`] / [`StoreError::SchemaTooNew`]
    /// and left untouched. Blocking (call it at start-up or in `spawn_blocking`).
    pub fn open(path: impl AsRef<Path>, opts: SqliteOptions) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        let exists = path.try_exists()?;
        if exists {
            open::check_existing(&path, opts.quick_check)?;
        } else if !opts.create {
            return Err(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{}: database does not exist", path.display()),
            )));
        }
        if exists {
            // An existing file with a looser mode is tightened (logged at info).
            hush_server_common::private_start::prepare_private_db(&path, false, "message store")?;
        } else {
            create_private_db(&path)?;
        }
        let mut writer = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // The flusher syncs the WAL itself, outside the writer's lock (`InlineWriter`):
        // SQLite's commits only write it.
        configure(&writer, SyncPolicy::Normal, opts.secure_delete)?;
        writer.pragma_update(None, "wal_autocheckpoint", opts.wal_autocheckpoint)?;
        let _limit: i64 = writer.query_row(
            &format!("PRAGMA journal_size_limit = {}", opts.journal_size_limit),
            [],
            |r| r.get(0),
        )?;
        open::migrate(&mut writer, &path)?;
        writer.set_prepared_statement_cache_capacity(64);
        let used = |col: &str| -> StoreResult<bool> {
            Ok(writer.query_row(
                &format!("SELECT EXISTS (SELECT 1 FROM queues WHERE {col} IS NOT NULL)"),
                [],
                |r| r.get(0),
            )?)
        };
        let services_used = [
            std::sync::atomic::AtomicBool::new(used("rcv_service_id")?),
            std::sync::atomic::AtomicBool::new(used("ntf_service_id")?),
        ];

        let n_readers = opts.readers.max(1);
        let mut readers = Vec::with_capacity(n_readers);
        for _ in 0..n_readers {
            let r = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            r.busy_timeout(Duration::from_secs(5))?;
            r.set_prepared_statement_cache_capacity(32);
            readers.push(r);
        }

        let counters = Arc::new(Counters::default());
        let cache = Arc::new(Cache::new(opts.cache_queues, opts.cache_head_bytes));
        if opts.cache_queues > 0 && ops::queue_count(&writer)? <= (opts.cache_queues / 2) as u64 {
            cache.load_all(ops::all_queues(&writer)?);
        }
        let uncommitted = Arc::new(ops::Uncommitted::default());
        let state = WriterState::new(opts.cache_queues, opts.quota.max(1), uncommitted.clone());
        let wal = match opts.sync {
            SyncPolicy::Full => {
                let mut p = path.clone().into_os_string();
                p.push("-wal");
                // Written by the migration above (WAL mode): it exists while the writer
                // connection is open.
                Some(std::fs::File::open(&p)?)
            }
            SyncPolicy::Normal => None,
        };
        let (writer, flusher) = InlineWriter::start(
            "hush-store-flush",
            RelayWriter {
                conn: writer,
                st: state,
                counters: counters.clone(),
                cache: cache.clone(),
            },
            group_commit::Options {
                max_batch: opts.max_batch,
                commit_delay: opts.early_commit_delay,
                busy_commit_delay: opts.busy_commit_delay,
            },
            opts.write_queue,
            wal,
        )?;

        Ok(Self {
            inner: Arc::new(Inner {
                path,
                counters,
                cache,
                uncommitted,
                writer,
                flusher: Some(flusher),
                readers: Mutex::new(readers),
                read_permits: Arc::new(Semaphore::new(n_readers)),
                read_timeout: opts.read_timeout,
                services_used,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Group-commit counters.
    pub fn writer_stats(&self) -> WriterStats {
        let c = &self.inner.counters;
        WriterStats {
            batches: c.batches.load(Ordering::Relaxed),
            ops: c.ops.load(Ordering::Relaxed),
            max_batch: c.max_batch.load(Ordering::Relaxed),
            wal_syncs: self.inner.writer.syncs(),
        }
    }

    /// Queue a write job; resolves after its batch committed.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &mut WriterState) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (tx, rx) = oneshot::channel::<StoreResult<T>>();
        self.submit(Box::new(OpJob::new(f, tx)), rx).await
    }

    /// If `rid` has changes that were answered but not committed (an early `ACK`), make the
    /// writer commit them first (a no-op job that waits for the commit), so that a read sees
    /// them. Rare: a read of a queue within [`SqliteOptions::early_commit_delay`] of its `ACK`.
    async fn settle(&self, rid: &EntityId) -> StoreResult<()> {
        if self.inner.uncommitted.contains(rid) {
            self.write(|_, _| Ok(())).await?;
        }
        Ok(())
    }

    /// Queue a write job that is answered as soon as it ran in the open transaction, before the
    /// commit: only for changes whose loss in a crash is harmless (the change is then simply
    /// not made, and is made again later).
    async fn write_early<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &mut WriterState) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (tx, rx) = oneshot::channel::<StoreResult<T>>();
        self.submit(Box::new(EarlyJob::new(f, tx)), rx).await
    }

    async fn submit<T>(&self, job: Job, rx: oneshot::Receiver<StoreResult<T>>) -> StoreResult<T> {
        // Runs here, in the open transaction (a full one is `Busy` at once).
        self.inner.writer.submit(job).map_err(|e| match e {
            SubmitError::Busy => StoreError::Busy,
            SubmitError::Closed => StoreError::Closed,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Run a read on a pooled read-only connection.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let permit = tokio::time::timeout(
            self.inner.read_timeout,
            self.inner.read_permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| StoreError::Busy)?
        .map_err(|_| StoreError::Closed)?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner
                .readers
                .lock()
                .map_err(|_| StoreError::Internal("reader pool lock poisoned"))?
                .pop()
                .ok_or(StoreError::Internal("reader pool empty"))?;
            let r = f(&conn);
            if let Ok(mut pool) = inner.readers.lock() {
                pool.push(conn);
            }
            drop(permit);
            r
        })
        .await
        .map_err(|_| StoreError::Internal("read task failed"))?
    }
}

fn exec(conn: &Connection, sql: &str) -> Result<(), String> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The store's side of the group-commit writer: the writer connection, the writer's per-queue
/// state, and the shared cache and counters it updates after each commit.
struct RelayWriter {
    conn: Connection,
    st: WriterState,
    counters: Arc<Counters>,
    cache: Arc<Cache>,
}

impl Backend for RelayWriter {
    type Job = Job;

    fn exec(&mut self, sql: &'static str) -> Result<(), String> {
        exec(&self.conn, sql)
    }

    fn run(&mut self, job: &mut Job) -> Ran {
        let st = &mut self.st;
        let early = job.early();
        st.early_rids.clear();
        let mark = st.mark();
        let ok = job.run(&self.conn, st);
        let wait_commit = !early || std::mem::take(&mut st.wait_commit);
        if !ok {
            st.job_failed(mark);
        }
        Ran { ok, wait_commit }
    }

    fn fail(&mut self, job: Job, error: &str) {
        job.fail(error.to_string());
    }

    /// After the commit (or the rollback), before the callers are answered.
    fn after_commit(&mut self, commit: &Result<(), String>, n: usize) {
        let (st, cache, counters) = (&mut self.st, &self.cache, &self.counters);
        if let Err(e) = commit {
            tracing::warn!(error = %e, jobs = n, "hush-store: batch transaction failed");
            // Jobs answered before the commit (an ACK's delete) may have told the relay a head
            // that the database no longer has: nothing cached about heads is trusted any more.
            cache.apply(&mut vec![cache::Effect::AllHeadsUnknown]);
        } else {
            tracing::trace!(jobs = n, "hush-store: committed batch");
        }
        st.batch_done(commit.is_ok());
        if commit.is_ok() {
            // Before completing callers, so a caller sees its own operation (and counts it).
            cache.apply(&mut st.effects);
            counters.batches.fetch_add(1, Ordering::Relaxed);
            counters.ops.fetch_add(n as u64, Ordering::Relaxed);
            counters.max_batch.fetch_max(n as u64, Ordering::Relaxed);
        }
        // The database, the cache and the read connections agree again.
        st.uncommitted.clear();
    }

    fn finish(&mut self, job: Job, commit: &Result<(), String>) {
        job.finish(commit);
    }
}

impl SqliteStore {
    /// A queue record: from the cache, else from SQLite (then cached).
    async fn lookup(&self, key: Key, id: EntityId) -> StoreResult<Option<QueueRecord>> {
        let miss = match self.inner.cache.lookup(key, &id) {
            Ok(q) => return Ok(q),
            Err(miss) => miss,
        };
        let kind = match key {
            Key::Recipient => IdKind::Recipient,
            Key::Sender => IdKind::Sender,
            Key::Notifier => IdKind::Notifier,
            Key::Link => IdKind::Link,
        };
        let q = self.read(move |c| ops::get_queue(c, kind, &id)).await?;
        if let Some(q) = &q {
            self.inner.cache.fill_record(miss, q);
        }
        Ok(q)
    }

    /// A write that changes the queue record `rid` (dropped from the cache once committed).
    async fn write_queue<T: Send + 'static>(
        &self,
        rid: EntityId,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.write(move |c, st| {
            let r = f(c)?;
            st.record_changed(c, &rid)?;
            Ok(r)
        })
        .await
    }
}

impl QueueStore for SqliteStore {
    fn create_queue(&self, queue: QueueRecord) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |c, st| {
            let rid = queue.recipient_id;
            ops::create_queue(c, queue)?;
            st.record_changed(c, &rid)
        }))
    }

    fn get_by_recipient(&self, id: EntityId) -> StoreFuture<'_, Option<QueueRecord>> {
        Box::pin(self.lookup(Key::Recipient, id))
    }

    fn get_by_sender(&self, id: EntityId) -> StoreFuture<'_, Option<QueueRecord>> {
        Box::pin(self.lookup(Key::Sender, id))
    }

    fn get_by_notifier(&self, id: EntityId) -> StoreFuture<'_, Option<QueueRecord>> {
        Box::pin(self.lookup(Key::Notifier, id))
    }

    fn get_by_link(&self, id: EntityId) -> StoreFuture<'_, Option<QueueRecord>> {
        Box::pin(self.lookup(Key::Link, id))
    }

    fn secure_queue(&self, rid: EntityId, key: Vec<u8>) -> StoreFuture<'_, ()> {
        Box::pin(self.write_queue(rid, move |c| ops::secure_queue(c, &rid, key)))
    }

    fn add_recipient_key(&self, rid: EntityId, key: Vec<u8>) -> StoreFuture<'_, ()> {
        Box::pin(self.write_queue(rid, move |c| ops::add_recipient_key(c, &rid, key)))
    }

    fn remove_recipient_key(&self, rid: EntityId, key: Vec<u8>) -> StoreFuture<'_, ()> {
        Box::pin(self.write_queue(rid, move |c| ops::remove_recipient_key(c, &rid, &key)))
    }

    fn set_recipient_keys(&self, rid: EntityId, keys: Vec<Vec<u8>>) -> StoreFuture<'_, ()> {
        Box::pin(self.write_queue(rid, move |c| ops::set_recipient_keys(c, &rid, keys)))
    }

    fn set_link(&self, rid: EntityId, link: QueueLink) -> StoreFuture<'_, ()> {
        Box::pin(self.write_queue(rid, move |c| ops::set_link(c, &rid, link)))
    }

    fn delete_link(&self, rid: EntityId) -> StoreFuture<'_, ()> {
        Box::pin(self.write_queue(rid, move |c| ops::delete_link(c, &rid)))
    }

    fn set_notifier(
        &self,
        rid: EntityId,
        creds: NotifierCreds,
    ) -> StoreFuture<'_, Option<EntityId>> {
        Box::pin(self.write(move |c, st| {
            // The writer's per-queue state holds the notifier id.
            st.forget(&rid);
            let r = ops::set_notifier(c, &rid, creds)?;
            st.record_changed(c, &rid)?;
            Ok(r)
        }))
    }

    fn delete_notifier(&self, rid: EntityId) -> StoreFuture<'_, Option<EntityId>> {
        Box::pin(self.write(move |c, st| {
            st.forget(&rid);
            let r = ops::delete_notifier(c, &rid)?;
            st.record_changed(c, &rid)?;
            Ok(r)
        }))
    }

    fn suspend_queue(&self, rid: EntityId) -> StoreFuture<'_, ()> {
        Box::pin(self.write_queue(rid, move |c| ops::set_status(c, &rid, &QueueStatus::Off)))
    }

    fn block_queue(&self, rid: EntityId, info: BlockInfo) -> StoreFuture<'_, ()> {
        Box::pin(self.write_queue(rid, move |c| {
            ops::set_status(c, &rid, &QueueStatus::Blocked(info))
        }))
    }

    fn unblock_queue(&self, rid: EntityId) -> StoreFuture<'_, ()> {
        Box::pin(self.write_queue(rid, move |c| ops::unblock_queue(c, &rid)))
    }

    fn touch_queue(&self, rid: EntityId, updated_at: i64) -> StoreFuture<'_, ()> {
        Box::pin(self.write_queue(rid, move |c| ops::touch_queue(c, &rid, updated_at)))
    }

    fn delete_queue(&self, rid: EntityId) -> StoreFuture<'_, QueueRecord> {
        Box::pin(self.write(move |c, st| {
            st.forget(&rid);
            let r = ops::delete_queue(c, &rid)?;
            st.record_changed(c, &rid)?;
            Ok(r)
        }))
    }

    fn append_message(
        &self,
        rid: EntityId,
        msg: NewMessage,
        ntf: Option<PendingNtf>,
    ) -> StoreFuture<'_, AppendOutcome> {
        Box::pin(self.write(move |c, st| ops::append_message(c, st, &rid, msg, ntf)))
    }

    fn append_message_then(
        &self,
        rid: EntityId,
        msg: NewMessage,
        ntf: Option<PendingNtf>,
        ran: oneshot::Sender<AppendOutcome>,
    ) -> StoreFuture<'_, AppendOutcome> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            let job = RanJob {
                inner: OpJob::new(
                    move |c: &Connection, st: &mut WriterState| {
                        ops::append_message(c, st, &rid, msg, ntf)
                    },
                    tx,
                ),
                ran: Some(ran),
            };
            self.submit(Box::new(job), rx).await
        })
    }

    fn peek_message(&self, rid: EntityId) -> StoreFuture<'_, Option<Message>> {
        Box::pin(async move {
            self.settle(&rid).await?;
            let miss = match self.inner.cache.peek(&rid) {
                Ok(head) => return Ok(head),
                Err(miss) => miss,
            };
            let head = self.read(move |c| ops::peek_message(c, &rid)).await?;
            if let Some(miss) = miss {
                self.inner.cache.fill_head(miss, &rid, head.as_ref());
            }
            Ok(head)
        })
    }

    /// Answered as soon as it ran (before its commit, see
    /// [`SqliteOptions::early_commit_delay`]), unless the new head is itself not committed yet:
    /// a crash can make the relay deliver an acknowledged message again, never lose one.
    fn delete_message(&self, rid: EntityId, msg_id: MsgId) -> StoreFuture<'_, DeleteOutcome> {
        Box::pin(self.write_early(move |c, st| ops::delete_message(c, st, &rid, &msg_id)))
    }

    fn message_count(&self, rid: EntityId) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            self.settle(&rid).await?;
            self.read(move |c| ops::message_count(c, &rid)).await
        })
    }

    fn expire_messages(&self, before: i64) -> StoreFuture<'_, u64> {
        Box::pin(self.write(move |c, st| {
            let n = ops::expire_messages(c, before)?;
            if n > 0 {
                st.forget_all();
                st.effects.push(cache::Effect::AllHeadsUnknown);
            }
            Ok(n)
        }))
    }

    fn expire_queue_messages(&self, rid: EntityId, before: i64) -> StoreFuture<'_, u64> {
        Box::pin(self.write(move |c, st| {
            let n = ops::expire_queue_messages(c, &rid, before)?;
            if n > 0 {
                st.forget(&rid);
                st.effects.push(cache::Effect::HeadUnknown(rid));
            }
            Ok(n)
        }))
    }

    fn drain_notifications(&self, nid: EntityId, limit: usize) -> StoreFuture<'_, Vec<PendingNtf>> {
        Box::pin(self.write(move |c, _| ops::drain_notifications(c, &nid, limit)))
    }

    /// One write job, answered as soon as it ran (before its batch's commit): the caller sends
    /// the notifications at once, and a commit that fails only leaves them stored to be sent
    /// again (at-least-once, as a crash before the commit would).
    fn drain_notifications_many(
        &self,
        ids: Vec<EntityId>,
        per_id: usize,
        total: usize,
    ) -> StoreFuture<'_, Vec<Vec<PendingNtf>>> {
        Box::pin(
            self.write_early(move |c, _| ops::drain_notifications_many(c, &ids, per_id, total)),
        )
    }

    fn expire_notifications(&self, before: i64) -> StoreFuture<'_, u64> {
        Box::pin(self.write(move |c, _| ops::expire_notifications(c, before)))
    }

    fn get_create_service(&self, service: ServiceRecord) -> StoreFuture<'_, EntityId> {
        Box::pin(self.write(move |c, _| ops::get_create_service(c, service)))
    }

    fn get_queue_service(
        &self,
        rid: EntityId,
        party: ServiceParty,
    ) -> StoreFuture<'_, Option<EntityId>> {
        Box::pin(async move {
            if !self.inner.services_used[side(party)].load(Ordering::SeqCst) {
                // No association anywhere: only the queue's existence to check.
                return match self.lookup(Key::Recipient, rid).await? {
                    Some(_) => Ok(None),
                    None => Err(StoreError::NotFound),
                };
            }
            self.read(move |c| ops::get_queue_service(c, &rid, party))
                .await
        })
    }

    fn set_queue_service(
        &self,
        rid: EntityId,
        party: ServiceParty,
        service_id: Option<EntityId>,
    ) -> StoreFuture<'_, ()> {
        if service_id.is_some() {
            // Before the write: a lookup racing with it may read the store, never skip it.
            self.inner.services_used[side(party)].store(true, Ordering::SeqCst);
        }
        Box::pin(self.write(move |c, _| ops::set_queue_service(c, &rid, party, service_id)))
    }

    fn service_queue_count(&self, sid: EntityId, party: ServiceParty) -> StoreFuture<'_, u64> {
        Box::pin(self.read(move |c| ops::service_queue_count(c, &sid, party)))
    }

    fn service_queue_ids(
        &self,
        sid: EntityId,
        party: ServiceParty,
        after: Option<EntityId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<EntityId>> {
        Box::pin(self.read(move |c| ops::service_queue_ids(c, &sid, party, after, limit)))
    }

    fn stats(&self) -> StoreFuture<'_, StoreStats> {
        Box::pin(self.read(ops::stats))
    }
}

#[cfg(test)]
mod early_commit_tests {
    //! The writer's early answers (an `ACK`'s delete) against the open transaction.
    use super::*;
    use crate::types::{NewMessage, QueueMode, QueueRecord, QueueStatus};
    use std::time::Instant;

    const RID: EntityId = [b'r'; 24];

    fn mid(n: u8) -> MsgId {
        [n; 24]
    }

    fn new_msg(n: u8) -> NewMessage {
        NewMessage {
            msg_id: mid(n),
            ts: 1,
            flags: b'T',
            body: vec![n; 10],
        }
    }

    fn ids_in(path: &Path) -> Vec<Vec<u8>> {
        let c = Connection::open(path).unwrap();
        let mut st = c
            .prepare("SELECT msg_id FROM messages ORDER BY id")
            .unwrap();
        st.query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    fn test_queue() -> QueueRecord {
        QueueRecord {
            recipient_id: RID,
            recipient_keys: vec![vec![1; 44]],
            rcv_dh_secret: [7; 32],
            sender_id: [b's'; 24],
            sender_key: None,
            mode: Some(QueueMode::Messaging),
            link: None,
            notifier: None,
            status: QueueStatus::Active,
            updated_at: None,
        }
    }

    /// A writer on the store at `path`, driven step by step by the test.
    fn writer_on(path: &Path, commit_delay: Duration) -> group_commit::Committer<RelayWriter> {
        group_commit::Committer::new(
            RelayWriter {
                conn: Connection::open(path).unwrap(),
                st: WriterState::new(16, 100, Arc::default()),
                counters: Arc::default(),
                cache: Arc::new(Cache::new(16, 1 << 20)),
            },
            group_commit::Options {
                max_batch: 1024,
                commit_delay,
                busy_commit_delay: Duration::ZERO,
            },
        )
    }

    fn job<T: Send + 'static>(
        early: bool,
        op: impl FnOnce(&Connection, &mut WriterState) -> StoreResult<T> + Send + 'static,
    ) -> (Job, oneshot::Receiver<StoreResult<T>>) {
        let (reply, rx) = oneshot::channel();
        let job: Job = if early {
            Box::new(EarlyJob::new(op, reply))
        } else {
            Box::new(OpJob::new(op, reply))
        };
        (job, rx)
    }

    /// The inline writer (inline.rs): with `sync = full` every answer to a durable write comes
    /// after a WAL fdatasync of its commit (the count rises before each answer), with
    /// `sync = normal` none runs; what was answered is in the file for another connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn durable_writes_are_answered_after_the_wal_is_synced() {
        for sync in [SyncPolicy::Full, SyncPolicy::Normal] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("store.db");
            let s = SqliteStore::open(
                &path,
                SqliteOptions {
                    sync,
                    ..SqliteOptions::default()
                },
            )
            .unwrap();
            s.create_queue(test_queue()).await.unwrap();
            let mut syncs = s.writer_stats().wal_syncs;
            for n in 0..5 {
                s.append_message(RID, new_msg(n), None).await.unwrap();
                let now = s.writer_stats().wal_syncs;
                match sync {
                    SyncPolicy::Full => assert!(now > syncs, "append {n} answered before a sync"),
                    SyncPolicy::Normal => assert_eq!(now, 0),
                }
                syncs = now;
                assert_eq!(
                    ids_in(&path).len(),
                    n as usize + 1,
                    "committed when answered"
                );
            }
        }
    }

    /// Writes run on the caller's thread: an early-answered write (an `ACK`'s delete) is
    /// answered before any commit; the open transaction holds at most `write_queue` writes,
    /// beyond which a write is `Busy` at once; closing the store commits what is open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_open_transaction_is_bounded_and_committed_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let opts = SqliteOptions {
            write_queue: 3,
            // Early-answered writes then wait a minute for their commit.
            early_commit_delay: Duration::from_secs(60),
            ..SqliteOptions::default()
        };
        {
            let s = SqliteStore::open(&path, opts.clone()).unwrap();
            s.create_queue(test_queue()).await.unwrap();
            for n in 0..4 {
                s.append_message(RID, new_msg(n), None).await.unwrap();
            }
            let batches = s.writer_stats().batches;
            // Three ACKs answered at once, none committed.
            for n in 0..3 {
                let out =
                    tokio::time::timeout(Duration::from_secs(5), s.delete_message(RID, mid(n)))
                        .await
                        .expect("an ACK is answered without waiting for a commit")
                        .unwrap();
                assert!(out.deleted);
            }
            assert_eq!(s.writer_stats().batches, batches, "nothing committed yet");
            assert_eq!(
                ids_in(&path).len(),
                4,
                "the deletes are not in the file yet"
            );
            // The open transaction is full.
            assert!(matches!(
                s.delete_message(RID, mid(3)).await,
                Err(StoreError::Busy)
            ));
        }
        // Dropped: the flusher committed the open transaction.
        assert_eq!(ids_in(&path), vec![mid(3).to_vec()]);
    }

    #[tokio::test]
    async fn an_ack_is_answered_before_its_commit_unless_it_hands_out_an_uncommitted_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        {
            let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
            s.create_queue(test_queue()).await.unwrap();
            for n in 0..2 {
                s.append_message(RID, new_msg(n), None).await.unwrap();
            }
        }
        let mut c = writer_on(&path, Duration::from_secs(60));

        // ACK of message 0: the new head (1) is committed, so the answer leaves at once and the
        // transaction stays open, waiting for more work.
        let (ack0, mut ack0_rx) = job(true, |c, st| ops::delete_message(c, st, &RID, &mid(0)));
        c.run_batch(&mut vec![ack0]);
        let out = ack0_rx
            .try_recv()
            .expect("answered before the commit")
            .unwrap();
        assert!(out.deleted);
        assert_eq!(out.head.map(|m| *m.msg_id()), Some(mid(1)));
        assert!(
            c.is_open() && !c.must_commit(),
            "nothing waits for this commit"
        );
        assert_eq!(ids_in(&path).len(), 2, "not committed yet");

        // A SEND (message 2) and the ACK of message 1 in the same transaction: the ACK's new
        // head is message 2, which is not durable yet, so that answer waits for the commit.
        let (send, mut send_rx) = job(false, |c, st| {
            ops::append_message(c, st, &RID, new_msg(2), None)
        });
        let (ack1, mut ack1_rx) = job(true, |c, st| ops::delete_message(c, st, &RID, &mid(1)));
        c.run_batch(&mut vec![send, ack1]);
        assert!(c.must_commit());
        assert!(
            send_rx.try_recv().is_err(),
            "a SEND is answered after its commit"
        );
        assert!(
            ack1_rx.try_recv().is_err(),
            "must not hand out message 2 before its commit"
        );
        c.finish();
        let counters = &c.backend().counters;
        assert!(send_rx.try_recv().unwrap().is_ok());
        let out = ack1_rx.try_recv().unwrap().unwrap();
        assert_eq!(out.head.map(|m| *m.msg_id()), Some(mid(2)));
        // One commit for both ACKs and the SEND.
        assert_eq!(ids_in(&path), vec![mid(2).to_vec()]);
        assert_eq!(counters.batches.load(Ordering::Relaxed), 1);
        assert_eq!(counters.ops.load(Ordering::Relaxed), 3);
    }

    /// `append_message_then`: the relay learns the outcome when the append ran in the open
    /// transaction (to deliver the message), its caller only after the commit (to answer `OK`);
    /// an append that fails is never announced.
    #[tokio::test]
    async fn an_append_tells_ran_before_its_commit_and_its_caller_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        {
            let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
            s.create_queue(test_queue()).await.unwrap();
        }
        let mut c = writer_on(&path, Duration::ZERO);
        let append = |n: u8, body: Vec<u8>| {
            let (tx, rx) = oneshot::channel();
            let (ran_tx, ran_rx) = oneshot::channel();
            let job: Job = Box::new(RanJob {
                inner: OpJob::new(
                    move |c: &Connection, st: &mut WriterState| {
                        let msg = NewMessage { body, ..new_msg(n) };
                        ops::append_message(c, st, &RID, msg, None)
                    },
                    tx,
                ),
                ran: Some(ran_tx),
            });
            (job, rx, ran_rx)
        };

        let (j0, mut rx0, mut ran0) = append(0, vec![0; 10]);
        // Too large: fails in its savepoint.
        let (j1, mut rx1, mut ran1) = append(1, vec![1; crate::types::MAX_MESSAGE_BODY + 1]);
        c.run_batch(&mut vec![j0, j1]);
        assert!(c.must_commit());
        assert_eq!(
            ran0.try_recv().expect("told when it ran"),
            AppendOutcome::Appended { was_empty: true }
        );
        assert!(rx0.try_recv().is_err(), "the caller waits for the commit");
        assert!(ids_in(&path).is_empty(), "not committed yet");
        assert!(
            ran1.try_recv().is_err(),
            "a failed append is never announced"
        );
        c.finish();
        assert_eq!(
            rx0.try_recv().unwrap().unwrap(),
            AppendOutcome::Appended { was_empty: true }
        );
        assert!(matches!(
            rx1.try_recv().unwrap(),
            Err(StoreError::MessageTooLarge(_))
        ));
        assert!(
            matches!(ran1.try_recv(), Err(oneshot::error::TryRecvError::Closed)),
            "its `ran` is dropped unsent"
        );
        assert_eq!(ids_in(&path), vec![mid(0).to_vec()]);
    }

    #[tokio::test]
    async fn early_answers_are_committed_by_the_deadline_and_when_the_store_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let opts = |delay| SqliteOptions {
            early_commit_delay: delay,
            ..SqliteOptions::default()
        };
        let q = |n: u8| QueueRecord {
            recipient_id: [n; 24],
            recipient_keys: vec![vec![1; 44]],
            rcv_dh_secret: [7; 32],
            sender_id: [n + 100; 24],
            sender_key: None,
            mode: Some(QueueMode::Messaging),
            link: None,
            notifier: None,
            status: QueueStatus::Active,
            updated_at: None,
        };
        {
            // A long delay: only closing the store commits the ACK.
            let s = SqliteStore::open(&path, opts(Duration::from_secs(3600))).unwrap();
            s.create_queue(q(1)).await.unwrap();
            s.append_message([1; 24], new_msg(0), None).await.unwrap();
            let before = s.writer_stats().batches;
            assert!(s.delete_message([1; 24], mid(0)).await.unwrap().deleted);
            assert_eq!(
                s.writer_stats().batches,
                before,
                "answered before its commit"
            );
            // A read of that queue makes the writer commit first: it never sees the old head.
            assert_eq!(s.message_count([1; 24]).await.unwrap(), 0);
            assert!(s.peek_message([1; 24]).await.unwrap().is_none());
            assert_eq!(s.writer_stats().batches, before + 1);
            s.append_message([1; 24], new_msg(9), None).await.unwrap();
            assert!(s.delete_message([1; 24], mid(9)).await.unwrap().deleted);
            assert_eq!(
                ids_in(&path).len(),
                1,
                "the second ACK is not committed yet"
            );
        }
        assert!(
            ids_in(&path).is_empty(),
            "closing the store commits the open transaction"
        );
        // A short delay: committed without any further work.
        let s = SqliteStore::open(&path, opts(Duration::from_millis(20))).unwrap();
        s.append_message([1; 24], new_msg(1), None).await.unwrap();
        let before = s.writer_stats().batches;
        assert!(s.delete_message([1; 24], mid(1)).await.unwrap().deleted);
        let waited = Instant::now();
        while s.writer_stats().batches == before {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "never committed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(ids_in(&path).is_empty());
    }
}
