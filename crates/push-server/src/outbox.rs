//! The outbox: pending pushes in SQLite, so that they survive a restart.
//!
//! One connection, owned by one writer thread (the common group-commit writer,
//! [`hush_server_common::group_commit`], policy [`Overflow::Wait`]: a caller waits
//! asynchronously while its 4096 places are taken) that batches every queued operation into one
//! `BEGIN IMMEDIATE … COMMIT` transaction (group commit; when an operation fails, the batch is
//! run again with each operation in its own savepoint, so a failed one leaves nothing behind),
//! WAL mode, `synchronous=FULL` by default. A caller's future resolves only after the commit that
//! contains its operation, so a `submit` that returned `Queued` is durable.
//!
//! Layout (schema 2): a pending job is a small row of the rowid table `job` (appended in submit
//! order; the dispatcher addresses it by its row id) and its payload a row of `job_payload` with
//! the same row id, a binary blob that fits one page; `job_ids` holds the 16-byte id of every
//! job accepted within the dedup window. Only jobs that are not leased are in the due index.
//! Schema 1 (one `WITHOUT ROWID` table keyed by the job id, JSON rows with the payload in
//! base64, and a `done` row per finished job) is converted when such a file is opened.
//!
//! Guarantees:
//! * **at-least-once**: a job row is deleted only after its provider accepted the push (or it failed
//!   permanently / expired). A crash between "provider accepted" and "row deleted" re-sends the push
//!   after the restart: that is the only duplicate, and it carries the same job id (`apns-id`).
//! * **dedup**: a job id is remembered (`job_ids`, written with the job in the same transaction)
//!   from its submit until `dedup_window` later (and for as long as the job is pending), and a
//!   second `submit` of that id returns [`SubmitOutcome::Duplicate`] and is not delivered again.
//! * **leases**: a job handed to the dispatcher is marked `leased` so it is not handed out twice;
//!   every lease is cleared when the outbox is opened (the previous process is gone).

use std::path::Path;
use std::time::Duration;

use hush_server_common::group_commit::{self, Backend, Overflow, Ran, Savepoints};
use rusqlite::{Connection, OptionalExtension as _, params};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::gateway::{FeedbackEvent, FeedbackReason, SubmitOutcome};
use crate::job::{DeviceAddress, JobId, PushJob, PushKind, PushTarget, PushType};

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
    /// The job's row in the outbox (for [`Outbox::finish`] / [`Outbox::reschedule`]).
    pub row: i64,
    pub job: PushJob,
    pub client: String,
    /// Unix seconds after which the job is dropped.
    pub deadline: u64,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// What [`Outbox::submit_as`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored in this row.
    Queued(i64),
    /// The id is pending or was accepted within the dedup window: nothing stored.
    Duplicate,
}

/// The stored layout ([`Outbox::open`] converts older ones).
const SCHEMA_VERSION: i64 = 2;

fn create_schema(conn: &Connection) -> Result<(), OutboxError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS job (
            row INTEGER PRIMARY KEY,
            job_id BLOB NOT NULL,
            client TEXT NOT NULL,
            meta BLOB NOT NULL,
            deadline INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at INTEGER NOT NULL,
            leased INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        );
        CREATE INDEX IF NOT EXISTS job_due ON job(next_at) WHERE leased = 0;
        CREATE TABLE IF NOT EXISTS job_payload (
            row INTEGER PRIMARY KEY,
            payload BLOB NOT NULL
        );
        CREATE TABLE IF NOT EXISTS job_ids (
            job_id BLOB PRIMARY KEY,
            at INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS job_ids_at ON job_ids(at);
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
        ) WITHOUT ROWID;",
    )?;
    Ok(())
}

/// Schema 1 → 2, in one transaction: pending jobs move to `job`/`job_payload` (not leased,
/// attempts and next attempt kept), pending and finished ids to `job_ids`; the old tables go.
fn migrate_v1(conn: &Connection) -> Result<(), OutboxError> {
    let old: bool = conn
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'")?
        .exists([])?;
    if !old {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let r = (|| -> Result<usize, OutboxError> {
        let mut moved = 0;
        let mut st = conn.prepare(
            "SELECT job_id, client, job, deadline, attempts, next_at, last_error FROM jobs \
             ORDER BY next_at",
        )?;
        let mut q = st.query([])?;
        while let Some(r) = q.next()? {
            let id: Vec<u8> = r.get(0)?;
            let client: String = r.get(1)?;
            let text: String = r.get(2)?;
            let job = match serde_json::from_str::<PushJob>(&text) {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!("outbox: dropping unreadable job row of the old layout: {e}");
                    continue;
                }
            };
            let meta = serde_json::to_vec(&MetaRef::of(&job))
                .map_err(|e| OutboxError::Corrupt(e.to_string()))?;
            conn.execute(
                "INSERT INTO job (job_id, client, meta, deadline, attempts, next_at, leased, last_error) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7)",
                params![
                    id,
                    client,
                    meta,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<String>>(6)?
                ],
            )?;
            let row = conn.last_insert_rowid();
            conn.execute(
                "INSERT INTO job_payload (row, payload) VALUES (?1, ?2)",
                params![row, job.payload],
            )?;
            conn.execute(
                "INSERT OR IGNORE INTO job_ids (job_id, at) VALUES (?1, unixepoch())",
                params![id],
            )?;
            moved += 1;
        }
        conn.execute_batch(
            "INSERT OR IGNORE INTO job_ids (job_id, at) SELECT job_id, done_at FROM done;
             DROP TABLE jobs; DROP TABLE done;",
        )?;
        Ok(moved)
    })();
    match r {
        Ok(moved) => {
            conn.execute_batch("COMMIT")?;
            tracing::info!("outbox: converted to schema {SCHEMA_VERSION} ({moved} pending jobs)");
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// A job's fields but its id and payload, as stored in `job.meta` (JSON).
#[derive(Serialize)]
struct MetaRef<'a> {
    target: &'a PushTarget,
    kind: PushKind,
    push_type: PushType,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    collapse_id: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    report_delivery: bool,
}

impl<'a> MetaRef<'a> {
    fn of(j: &'a PushJob) -> Self {
        MetaRef {
            target: &j.target,
            kind: j.kind,
            push_type: j.push_type,
            priority: j.priority,
            expires_at: j.expires_at,
            collapse_id: j.collapse_id.as_deref(),
            report_delivery: j.report_delivery,
        }
    }
}

#[derive(Deserialize)]
struct Meta {
    target: PushTarget,
    kind: PushKind,
    push_type: PushType,
    #[serde(default)]
    priority: Option<u8>,
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(default)]
    collapse_id: Option<String>,
    #[serde(default)]
    report_delivery: bool,
}

fn decode_job(id: &[u8], meta: &[u8], payload: Option<Vec<u8>>) -> Result<PushJob, String> {
    let id = <[u8; 16]>::try_from(id).map_err(|_| "job id is not 16 bytes".to_string())?;
    let payload = payload.ok_or_else(|| "payload row missing".to_string())?;
    let m: Meta = serde_json::from_slice(meta).map_err(|e| e.to_string())?;
    Ok(PushJob {
        job_id: JobId(id),
        target: m.target,
        kind: m.kind,
        payload,
        push_type: m.push_type,
        priority: m.priority,
        expires_at: m.expires_at,
        collapse_id: m.collapse_id,
        report_delivery: m.report_delivery,
    })
}

fn delete_job(c: &Connection, row: i64) -> Result<(), OutboxError> {
    c.prepare_cached("DELETE FROM job WHERE row = ?1")?
        .execute(params![row])?;
    c.prepare_cached("DELETE FROM job_payload WHERE row = ?1")?
        .execute(params![row])?;
    Ok(())
}

trait BatchOp: Send {
    /// Runs inside the batch transaction; false = this op failed. May run a second time in the
    /// same batch (after the first attempt was rolled back, see [`OutboxWriter`]): the last
    /// run's result is the op's result.
    fn run(&mut self, conn: &Connection) -> bool;
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

struct Op<F, T> {
    f: F,
    result: Option<Result<T, OutboxError>>,
    reply: oneshot::Sender<Result<T, OutboxError>>,
}

impl<F, T> BatchOp for Op<F, T>
where
    F: FnMut(&Connection) -> Result<T, OutboxError> + Send,
    T: Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let r = (self.f)(conn);
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
    tx: group_commit::Sender<Box<dyn BatchOp>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox(..)")
    }
}

/// Most operations in one transaction.
const MAX_BATCH: usize = 512;
/// Operations queued for the writer; a submit beyond waits for room.
const QUEUE: usize = 4096;

impl Outbox {
    /// Opens (creating if needed) the outbox file. `full_sync` = `synchronous=FULL`, else NORMAL
    /// (survives SIGKILL, not power loss). An outbox of the first layout (schema 1: `jobs` and
    /// `done` tables) is converted in place; its pending jobs are kept.
    pub fn open(path: &Path, full_sync: bool) -> Result<Outbox, OutboxError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            if full_sync { "FULL" } else { "NORMAL" },
        )?;
        // Pending payloads are ≈4 KB each: 32 MB (allocated as used) keeps a few thousand
        // pending jobs in memory instead of re-reading their pages from the file.
        conn.pragma_update(None, "cache_size", -32_768)?;
        // Fewer, larger checkpoints (every 16,000 pages, 64 MB of WAL): the WAL of a busy outbox
        // is mostly the same few pages rewritten (rows deleted again, their pages reused), and a
        // checkpoint copies each page once however often it was rewritten since the last one
        // (every 4,000 pages it was 15 % of the writer's CPU at 10,000 pushes/s).
        conn.pragma_update(None, "wal_autocheckpoint", 16_000)?;
        conn.set_prepared_statement_cache_capacity(64);
        create_schema(&conn)?;
        migrate_v1(&conn)?;
        conn.execute_batch(&format!(
            "UPDATE job SET leased = 0 WHERE leased <> 0; PRAGMA user_version = {SCHEMA_VERSION};"
        ))?;
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
        // The common group-commit writer; a full queue makes the submit wait (asynchronously).
        let (tx, _thread) = group_commit::spawn(
            "push-outbox-writer",
            OutboxWriter { conn },
            QUEUE,
            Overflow::Wait,
            group_commit::Options {
                max_batch: MAX_BATCH,
                commit_delay: Duration::ZERO,
                busy_commit_delay: Duration::ZERO,
            },
        )
        .map_err(|e| OutboxError::Db(format!("cannot start writer thread: {e}")))?;
        Ok(Outbox { tx })
    }

    /// Runs `f` in the writer's next batch; resolves after that batch's commit. `f` must only
    /// touch the database (it may be run twice, the first run rolled back).
    async fn op<T, F>(&self, f: F) -> Result<T, OutboxError>
    where
        F: FnMut(&Connection) -> Result<T, OutboxError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let op: Box<dyn BatchOp> = Box::new(Op {
            f,
            result: None,
            reply,
        });
        self.tx.submit(op).await.map_err(|_| OutboxError::Closed)?;
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
        Ok(
            match self.submit_as(client, job, deadline, now_ms, false).await? {
                Stored::Queued(_) => SubmitOutcome::Queued,
                Stored::Duplicate => SubmitOutcome::Duplicate,
            },
        )
    }

    /// [`Outbox::submit`], the row stored already `leased` when the caller hands the job to the
    /// dispatcher itself (no second transaction to lease it; the lease is cleared at the next
    /// open like any other, so the job stays at-least-once). Returns the row of a queued job.
    pub async fn submit_as(
        &self,
        client: &str,
        job: &PushJob,
        deadline: u64,
        now_ms: u64,
        leased: bool,
    ) -> Result<Stored, OutboxError> {
        let id = job.job_id.0;
        let meta = serde_json::to_vec(&MetaRef::of(job))
            .map_err(|e| OutboxError::Corrupt(e.to_string()))?;
        let payload = job.payload.clone();
        let client = client.to_string();
        self.op(move |c| {
            // The id's dedup row is written once, here: a pending or finished id is refused by
            // this one insert (no lookup of the job rows, nothing written when it finishes).
            let fresh = c
                .prepare_cached("INSERT OR IGNORE INTO job_ids (job_id, at) VALUES (?1, ?2)")?
                .execute(params![&id[..], to_i64(now_ms / 1000)])?;
            if fresh == 0 {
                return Ok(Stored::Duplicate);
            }
            c.prepare_cached(
                "INSERT INTO job (job_id, client, meta, deadline, next_at, leased) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                &id[..],
                client,
                meta,
                to_i64(deadline),
                to_i64(now_ms),
                i64::from(leased)
            ])?;
            let row = c.last_insert_rowid();
            c.prepare_cached("INSERT INTO job_payload (row, payload) VALUES (?1, ?2)")?
                .execute(params![row, payload])?;
            Ok(Stored::Queued(row))
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
            let mut rows = Vec::new();
            {
                let mut st = c.prepare_cached(
                    "SELECT j.row, j.job_id, j.client, j.meta, j.deadline, j.attempts, p.payload \
                     FROM job j LEFT JOIN job_payload p ON p.row = j.row \
                     WHERE j.leased = 0 AND j.next_at <= ?1 ORDER BY j.next_at LIMIT ?2",
                )?;
                let mut q = st.query(params![
                    to_i64(now_ms),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ])?;
                while let Some(r) = q.next()? {
                    let row: i64 = r.get(0)?;
                    let id: Vec<u8> = r.get(1)?;
                    let client: String = r.get(2)?;
                    let meta: Vec<u8> = r.get(3)?;
                    let deadline: i64 = r.get(4)?;
                    let attempts: i64 = r.get(5)?;
                    let payload: Option<Vec<u8>> = r.get(6)?;
                    match decode_job(&id, &meta, payload) {
                        Ok(job) => {
                            rows.push((row, true));
                            out.push(LeasedJob {
                                row,
                                job,
                                client,
                                deadline: u64::try_from(deadline).unwrap_or(0),
                                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                            });
                        }
                        Err(e) => {
                            // An unreadable row can never be sent: drop it (loudly).
                            tracing::error!("outbox: dropping unreadable job row: {e}");
                            rows.push((row, false));
                        }
                    }
                }
            }
            for (row, ok) in rows {
                if ok {
                    c.prepare_cached("UPDATE job SET leased = 1 WHERE row = ?1")?
                        .execute(params![row])?;
                } else {
                    delete_job(c, row)?;
                }
            }
            Ok(out)
        })
        .await
    }

    /// The provider accepted the job: forget it (its id stays known for dedup).
    pub async fn complete(&self, row: i64, now: u64) -> Result<(), OutboxError> {
        self.finish(row, JobId([0; 16]), now, None).await
    }

    /// The job (row `row`, id `id`) is finished: its row is deleted; `feedback` is recorded for
    /// its client. The id stays known for dedup until the window ends.
    pub async fn finish(
        &self,
        row: i64,
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
            delete_job(c, row)?;
            if let Some((client, target, reason)) = &fb {
                c.prepare_cached(
                    "INSERT INTO feedback (client, job_id, target, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![client, &id.0[..], target, reason, to_i64(now)])?;
            }
            Ok(())
        })
        .await
    }

    /// Puts a failed job (row `row`) back for another attempt at `next_ms`.
    pub async fn reschedule(
        &self,
        row: i64,
        next_ms: u64,
        attempts: u32,
        error: &str,
    ) -> Result<(), OutboxError> {
        let error = error.to_string();
        self.op(move |c| {
            c.prepare_cached(
                "UPDATE job SET leased = 0, next_at = ?2, attempts = ?3, last_error = ?4 WHERE row = ?1",
            )?
            .execute(params![row, to_i64(next_ms), i64::from(attempts), error])?;
            Ok(())
        })
        .await
    }

    /// Earliest `next_at` (ms) of a job that is not leased.
    pub async fn next_due(&self) -> Result<Option<u64>, OutboxError> {
        self.op(|c| {
            let v: Option<i64> = c
                .prepare_cached("SELECT MIN(next_at) FROM job WHERE leased = 0")?
                .query_row([], |r| r.get(0))?;
            Ok(v.map(|v| u64::try_from(v).unwrap_or(0)))
        })
        .await
    }

    /// Number of pending jobs.
    pub async fn len(&self) -> Result<u64, OutboxError> {
        self.op(|c| {
            let v: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM job")?
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

    /// Forgets the ids of jobs accepted before `before` (unix seconds) that are no longer
    /// pending.
    pub async fn prune_done(&self, before: u64) -> Result<usize, OutboxError> {
        self.op(move |c| {
            Ok(c.prepare_cached(
                "DELETE FROM job_ids WHERE at < ?1 AND job_id NOT IN (SELECT job_id FROM job)",
            )?
            .execute(params![to_i64(before)])?)
        })
        .await
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One statement without parameters, prepared once (the writer runs these for every batch and
/// operation).
fn exec(conn: &Connection, sql: &str) -> Result<(), String> {
    conn.prepare_cached(sql)
        .and_then(|mut st| st.execute([]))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The outbox's side of the group-commit writer: one transaction for the whole batch. The ops
/// run first without savepoints (two statements per op saved); only when one fails is the
/// transaction rolled back and the batch run again with each op in its own savepoint, so that a
/// failed op leaves nothing behind and the others commit ([`Savepoints::OnFailure`]).
struct OutboxWriter {
    conn: Connection,
}

impl Backend for OutboxWriter {
    type Job = Box<dyn BatchOp>;

    fn exec(&mut self, sql: &'static str) -> Result<(), String> {
        exec(&self.conn, sql)
    }

    fn savepoints(&self) -> Savepoints {
        Savepoints::OnFailure
    }

    fn run(&mut self, op: &mut Box<dyn BatchOp>) -> Ran {
        Ran {
            ok: op.run(&self.conn),
            wait_commit: true,
        }
    }

    fn fail(&mut self, op: Box<dyn BatchOp>, error: &str) {
        op.finish(Err(error.to_string()));
    }

    fn after_commit(&mut self, result: &Result<(), String>, jobs: usize) {
        if let Err(e) = result {
            tracing::warn!(error = %e, jobs, "outbox: transaction failed");
        }
    }

    fn finish(&mut self, op: Box<dyn BatchOp>, commit: &Result<(), String>) {
        op.finish(commit.clone());
    }
}
