//! The outbox: pending pushes in SQLite, so that they survive a restart.
//!
//! One connection, owned by one writer thread that batches every queued operation into one
//! `BEGIN IMMEDIATE … COMMIT` transaction (group commit, each operation in its own savepoint),
//! WAL mode, `synchronous=FULL` by default. A caller's future resolves only after the commit that
//! contains its operation, so a `submit` that returned `Queued` is durable.
//!
//! Guarantees:
//! * **at-least-once**: a job row is deleted only after its provider accepted the push (or it failed
//!   permanently / expired). A crash between "provider accepted" and "row deleted" re-sends the push
//!   after the restart: that is the only duplicate, and it carries the same job id (`apns-id`).
//! * **dedup**: a job id is remembered (`done` table) for `dedup_window` after it finished, and a
//!   second `submit` of a pending or finished id returns [`SubmitOutcome::Duplicate`] and is not
//!   delivered again.
//! * **leases**: a job handed to the dispatcher is marked `leased` so it is not handed out twice;
//!   every lease is cleared when the outbox is opened (the previous process is gone).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, params};
use tokio::sync::{mpsc, oneshot};

use crate::gateway::{FeedbackEvent, FeedbackReason, SubmitOutcome};
use crate::job::{DeviceAddress, JobId, PushJob, PushTarget};

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox database: {0}")]
    Db(String),
    #[error("outbox commit failed: {0}")]
    CommitFailed(String),
    #[error("outbox is closed")]
    Closed,
    #[error("stored job is unreadable: {0}")]
    Corrupt(String),
    /// The anonymous registration cap is reached (nothing was stored).
    #[error("anonymous registration cap reached")]
    Full,
}

impl From<rusqlite::Error> for OutboxError {
    fn from(e: rusqlite::Error) -> Self {
        OutboxError::Db(e.to_string())
    }
}

/// A job handed to the dispatcher.
#[derive(Debug, Clone)]
pub struct LeasedJob {
    pub job: PushJob,
    pub client: String,
    /// Unix seconds after which the job is dropped.
    pub deadline: u64,
    /// Failed attempts so far.
    pub attempts: u32,
}

trait BatchOp: Send {
    /// Runs inside the batch transaction; false = this op failed (its savepoint is rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

struct Op<F, T> {
    f: Option<F>,
    result: Option<Result<T, OutboxError>>,
    reply: oneshot::Sender<Result<T, OutboxError>>,
}

impl<F, T> BatchOp for Op<F, T>
where
    F: FnOnce(&Connection) -> Result<T, OutboxError> + Send,
    T: Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else { return false };
        let r = f(conn);
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let r = match commit {
            Ok(()) => self
                .result
                .unwrap_or(Err(OutboxError::Db("operation did not run".into()))),
            Err(e) => Err(OutboxError::CommitFailed(e)),
        };
        let _ = self.reply.send(r);
    }
}

/// Handle to the outbox (cheap to clone).
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Box<dyn BatchOp>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox(..)")
    }
}

/// Most operations in one transaction.
const MAX_BATCH: usize = 512;

impl Outbox {
    /// Opens (creating if needed) the outbox file. `full_sync` = `synchronous=FULL`, else NORMAL
    /// (survives SIGKILL, not power loss).
    pub fn open(path: &Path, full_sync: bool) -> Result<Outbox, OutboxError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            if full_sync { "FULL" } else { "NORMAL" },
        )?;
        // Pending jobs are rows of ≈4 KB (a padded payload): with SQLite's default 2 MB cache
        // every insert/delete re-reads their pages from the file. 32 MB (allocated as used)
        // keeps a few thousand pending jobs in memory.
        conn.pragma_update(None, "cache_size", -32_768)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS jobs (
                job_id BLOB PRIMARY KEY,
                client TEXT NOT NULL,
                job TEXT NOT NULL,
                deadline INTEGER NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_at INTEGER NOT NULL,
                leased INTEGER NOT NULL DEFAULT 0,
                last_error TEXT
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS jobs_next_at ON jobs(leased, next_at);
            CREATE TABLE IF NOT EXISTS done (
                job_id BLOB PRIMARY KEY,
                done_at INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS done_at ON done(done_at);
            CREATE TABLE IF NOT EXISTS feedback (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                client TEXT NOT NULL,
                job_id BLOB NOT NULL,
                target TEXT NOT NULL,
                reason TEXT NOT NULL,
                at INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS registrations (
                id BLOB PRIMARY KEY,
                address TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                used_at INTEGER NOT NULL,
                anonymous INTEGER NOT NULL DEFAULT 1
            ) WITHOUT ROWID;
            UPDATE jobs SET leased = 0 WHERE leased <> 0;",
        )?;
        // Outboxes from before the anonymous-registration cap: their rows all came from devices.
        let has_anonymous: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('registrations') WHERE name = 'anonymous'")?
            .exists([])?;
        if !has_anonymous {
            conn.execute_batch(
                "ALTER TABLE registrations ADD COLUMN anonymous INTEGER NOT NULL DEFAULT 1",
            )?;
        }
        // The number of anonymous registrations, kept in the same transactions as the rows (so a
        // cap check is one lookup, exact even across a crash); recounted at every open.
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS registration_count (
                id INTEGER PRIMARY KEY CHECK (id = 0),
                anonymous INTEGER NOT NULL
            );
            INSERT OR REPLACE INTO registration_count (id, anonymous)
                VALUES (0, (SELECT COUNT(*) FROM registrations WHERE anonymous = 1));
            CREATE TRIGGER IF NOT EXISTS registrations_anon_ins AFTER INSERT ON registrations
                WHEN NEW.anonymous = 1
                BEGIN UPDATE registration_count SET anonymous = anonymous + 1 WHERE id = 0; END;
            CREATE TRIGGER IF NOT EXISTS registrations_anon_del AFTER DELETE ON registrations
                WHEN OLD.anonymous = 1
                BEGIN UPDATE registration_count SET anonymous = anonymous - 1 WHERE id = 0; END;",
        )?;
        let (tx, mut rx) = mpsc::channel::<Box<dyn BatchOp>>(4096);
        std::thread::Builder::new()
            .name("push-outbox-writer".into())
            .spawn(move || {
                let mut batch: Vec<Box<dyn BatchOp>> = Vec::with_capacity(64);
                while let Some(op) = rx.blocking_recv() {
                    batch.push(op);
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(op) => batch.push(op),
                            Err(_) => break,
                        }
                    }
                    run_batch(&conn, &mut batch);
                }
            })
            .map_err(|e| OutboxError::Db(format!("cannot start writer thread: {e}")))?;
        Ok(Outbox { tx })
    }

    async fn op<T, F>(&self, f: F) -> Result<T, OutboxError>
    where
        F: FnOnce(&Connection) -> Result<T, OutboxError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let op: Box<dyn BatchOp> = Box::new(Op {
            f: Some(f),
            result: None,
            reply,
        });
        self.tx.send(op).await.map_err(|_| OutboxError::Closed)?;
        rx.await.map_err(|_| OutboxError::Closed)?
    }

    /// Stores a job unless its id is pending or finished within the dedup window. Resolves after
    /// the commit.
    pub async fn submit(
        &self,
        client: &str,
        job: &PushJob,
        deadline: u64,
        now_ms: u64,
    ) -> Result<SubmitOutcome, OutboxError> {
        self.submit_as(client, job, deadline, now_ms, false).await
    }

    /// [`Outbox::submit`], the row stored already `leased` when the caller hands the job to the
    /// dispatcher itself (no second transaction to lease it; the lease is cleared at the next
    /// open like any other, so the job stays at-least-once).
    pub async fn submit_as(
        &self,
        client: &str,
        job: &PushJob,
        deadline: u64,
        now_ms: u64,
        leased: bool,
    ) -> Result<SubmitOutcome, OutboxError> {
        let id = job.job_id.0.to_vec();
        let text = serde_json::to_string(job).map_err(|e| OutboxError::Corrupt(e.to_string()))?;
        let client = client.to_string();
        self.op(move |c| {
            let seen: Option<i64> = c
                .prepare_cached(
                    "SELECT 1 FROM jobs WHERE job_id = ?1 UNION ALL SELECT 1 FROM done WHERE job_id = ?1 LIMIT 1",
                )?
                .query_row(params![id], |r| r.get(0))
                .optional()?;
            if seen.is_some() {
                return Ok(SubmitOutcome::Duplicate);
            }
            c.prepare_cached(
                "INSERT INTO jobs (job_id, client, job, deadline, attempts, next_at, leased) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
            )?
            .execute(params![id, client, text, to_i64(deadline), to_i64(now_ms), i64::from(leased)])?;
            Ok(SubmitOutcome::Queued)
        })
        .await
    }

    /// Leases up to `limit` due jobs (not leased, `next_at <= now_ms`), oldest due first.
    pub async fn lease_due(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<LeasedJob>, OutboxError> {
        self.op(move |c| {
            let mut out = Vec::new();
            let mut ids = Vec::new();
            {
                let mut st = c.prepare_cached(
                    "SELECT job_id, client, job, deadline, attempts FROM jobs WHERE leased = 0 AND next_at <= ?1 ORDER BY next_at LIMIT ?2",
                )?;
                let rows = st.query_map(
                    params![to_i64(now_ms), i64::try_from(limit).unwrap_or(i64::MAX)],
                    |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    },
                )?;
                for row in rows {
                    let (id, client, text, deadline, attempts) = row?;
                    ids.push(id.clone());
                    match serde_json::from_str::<PushJob>(&text) {
                        Ok(job) => out.push(LeasedJob {
                            job,
                            client,
                            deadline: u64::try_from(deadline).unwrap_or(0),
                            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                        }),
                        Err(e) => {
                            // An unreadable row can never be sent: drop it (loudly).
                            tracing::error!("outbox: dropping unreadable job row: {e}");
                            c.prepare_cached("DELETE FROM jobs WHERE job_id = ?1")?
                                .execute(params![id])?;
                            ids.pop();
                        }
                    }
                }
            }
            let mut up = c.prepare_cached("UPDATE jobs SET leased = 1 WHERE job_id = ?1")?;
            for id in ids {
                up.execute(params![id])?;
            }
            Ok(out)
        })
        .await
    }

    /// The provider accepted the job: forget it (remember its id for dedup).
    pub async fn complete(&self, id: JobId, now: u64) -> Result<(), OutboxError> {
        self.finish(id, now, None).await
    }

    /// The job is finished without delivery; `feedback` is recorded for its client.
    pub async fn finish(
        &self,
        id: JobId,
        now: u64,
        feedback: Option<(String, PushTarget, FeedbackReason)>,
    ) -> Result<(), OutboxError> {
        let fb = match feedback {
            Some((client, target, reason)) => Some((
                client,
                serde_json::to_string(&target).map_err(|e| OutboxError::Corrupt(e.to_string()))?,
                serde_json::to_string(&reason).map_err(|e| OutboxError::Corrupt(e.to_string()))?,
            )),
            None => None,
        };
        self.op(move |c| {
            let id = id.0.to_vec();
            c.prepare_cached("DELETE FROM jobs WHERE job_id = ?1")?
                .execute(params![id])?;
            c.prepare_cached("INSERT OR REPLACE INTO done (job_id, done_at) VALUES (?1, ?2)")?
                .execute(params![id, to_i64(now)])?;
            if let Some((client, target, reason)) = fb {
                c.prepare_cached(
                    "INSERT INTO feedback (client, job_id, target, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![client, id, target, reason, to_i64(now)])?;
            }
            Ok(())
        })
        .await
    }

    /// Puts a failed job back for another attempt at `next_ms`.
    pub async fn reschedule(
        &self,
        id: JobId,
        next_ms: u64,
        attempts: u32,
        error: &str,
    ) -> Result<(), OutboxError> {
        let error = error.to_string();
        self.op(move |c| {
            c.prepare_cached(
                "UPDATE jobs SET leased = 0, next_at = ?2, attempts = ?3, last_error = ?4 WHERE job_id = ?1",
            )?
            .execute(params![id.0.to_vec(), to_i64(next_ms), i64::from(attempts), error])?;
            Ok(())
        })
        .await
    }

    /// Earliest `next_at` (ms) of a job that is not leased.
    pub async fn next_due(&self) -> Result<Option<u64>, OutboxError> {
        self.op(|c| {
            let v: Option<i64> = c
                .prepare_cached("SELECT MIN(next_at) FROM jobs WHERE leased = 0")?
                .query_row([], |r| r.get(0))?;
            Ok(v.map(|v| u64::try_from(v).unwrap_or(0)))
        })
        .await
    }

    /// Number of pending jobs.
    pub async fn len(&self) -> Result<u64, OutboxError> {
        self.op(|c| {
            let v: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM jobs")?
                .query_row([], |r| r.get(0))?;
            Ok(u64::try_from(v).unwrap_or(0))
        })
        .await
    }

    /// True when no job is pending.
    pub async fn is_empty(&self) -> Result<bool, OutboxError> {
        Ok(self.len().await? == 0)
    }

    /// Feedback events of `client` with `seq > after`, at most `max`.
    pub async fn feedback(
        &self,
        client: &str,
        after: u64,
        max: u32,
    ) -> Result<Vec<FeedbackEvent>, OutboxError> {
        let client = client.to_string();
        self.op(move |c| {
            let mut st = c.prepare_cached(
                "SELECT seq, job_id, target, reason FROM feedback WHERE client = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = st.query_map(params![client, to_i64(after), i64::from(max)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, id, target, reason) = row?;
                let (Ok(id), Ok(target), Ok(reason)) = (
                    <[u8; 16]>::try_from(id.as_slice()),
                    serde_json::from_str::<PushTarget>(&target),
                    serde_json::from_str::<FeedbackReason>(&reason),
                ) else {
                    tracing::error!("outbox: unreadable feedback row {seq}");
                    continue;
                };
                out.push(FeedbackEvent {
                    seq: u64::try_from(seq).unwrap_or(0),
                    job_id: JobId(id),
                    target,
                    reason,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Deletes `client`'s feedback events with `seq <= up_to`.
    pub async fn ack_feedback(&self, client: &str, up_to: u64) -> Result<(), OutboxError> {
        let client = client.to_string();
        self.op(move |c| {
            c.prepare_cached("DELETE FROM feedback WHERE client = ?1 AND seq <= ?2")?
                .execute(params![client, to_i64(up_to)])?;
            Ok(())
        })
        .await
    }

    /// Stores a device address too long for an inline handle; returns its random id.
    /// `anonymous_cap`: the registration comes from a peer without credential and is refused
    /// ([`OutboxError::Full`]) when that many anonymous registrations are stored already.
    pub async fn store_registration(
        &self,
        address: &DeviceAddress,
        now: u64,
        anonymous_cap: Option<u64>,
    ) -> Result<[u8; 16], OutboxError> {
        let text =
            serde_json::to_string(address).map_err(|e| OutboxError::Corrupt(e.to_string()))?;
        let id: [u8; 16] = rand::random();
        self.op(move |c| {
            if let Some(cap) = anonymous_cap {
                let n: i64 = c
                    .prepare_cached("SELECT anonymous FROM registration_count WHERE id = 0")?
                    .query_row([], |r| r.get(0))?;
                if u64::try_from(n).unwrap_or(0) >= cap {
                    return Err(OutboxError::Full);
                }
            }
            c.prepare_cached(
                "INSERT INTO registrations (id, address, created_at, used_at, anonymous) \
                 VALUES (?1, ?2, ?3, ?3, ?4)",
            )?
            .execute(params![
                id.to_vec(),
                text,
                to_i64(now),
                anonymous_cap.is_some()
            ])?;
            Ok(id)
        })
        .await
    }

    /// Stored registrations made without credential.
    pub async fn anonymous_registrations(&self) -> Result<u64, OutboxError> {
        self.op(|c| {
            let n: i64 = c
                .prepare_cached("SELECT anonymous FROM registration_count WHERE id = 0")?
                .query_row([], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    /// The stored address of a registration (and marks it used at `now`).
    pub async fn registration(
        &self,
        id: [u8; 16],
        now: u64,
    ) -> Result<Option<DeviceAddress>, OutboxError> {
        self.op(move |c| {
            let text: Option<String> = c
                .prepare_cached("SELECT address FROM registrations WHERE id = ?1")?
                .query_row(params![id.to_vec()], |r| r.get(0))
                .optional()?;
            let Some(text) = text else { return Ok(None) };
            c.prepare_cached("UPDATE registrations SET used_at = ?2 WHERE id = ?1")?
                .execute(params![id.to_vec(), to_i64(now)])?;
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| OutboxError::Corrupt(e.to_string()))
        })
        .await
    }

    /// Drops registrations not used since `before` (unix seconds).
    pub async fn prune_registrations(&self, before: u64) -> Result<usize, OutboxError> {
        self.op(move |c| {
            Ok(
                c.prepare_cached("DELETE FROM registrations WHERE used_at < ?1")?
                    .execute(params![to_i64(before)])?,
            )
        })
        .await
    }

    /// Forgets finished job ids older than `before` (unix seconds).
    pub async fn prune_done(&self, before: u64) -> Result<usize, OutboxError> {
        self.op(move |c| {
            Ok(c.prepare_cached("DELETE FROM done WHERE done_at < ?1")?
                .execute(params![to_i64(before)])?)
        })
        .await
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn exec(conn: &Connection, sql: &str) -> Result<(), String> {
    conn.execute_batch(sql).map_err(|e| e.to_string())
}

fn run_batch(conn: &Connection, batch: &mut Vec<Box<dyn BatchOp>>) {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        tracing::warn!("outbox: BEGIN failed: {e}");
        for op in batch.drain(..) {
            op.finish(Err(e.clone()));
        }
        return;
    }
    for op in batch.iter_mut() {
        if let Err(e) = exec(conn, "SAVEPOINT op") {
            tracing::warn!("outbox: SAVEPOINT failed: {e}");
            continue;
        }
        let ok = op.run(conn);
        if !ok {
            let _ = exec(conn, "ROLLBACK TO op");
        }
        let _ = exec(conn, "RELEASE op");
    }
    let commit = exec(conn, "COMMIT");
    if commit.is_err() {
        let _ = exec(conn, "ROLLBACK");
    }
    for op in batch.drain(..) {
        op.finish(commit.clone());
    }
}
