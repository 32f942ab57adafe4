//! The one group-commit writer of hush's servers (the relay's message store, the ntf-server's
//! SQLite store, the push-server's outbox), in two shapes over the same transaction logic
//! ([`Committer`]): a writer thread fed by a queue (below), or jobs run on their callers'
//! threads with a flusher thread that commits ([`InlineWriter`], the relay's store).
//!
//! One named thread owns the database connection (a [`Backend`]). Callers hand it jobs through
//! a bounded queue ([`channel`]) whose [`Overflow`] policy is chosen at construction:
//!
//! * [`Overflow::Shed`]: a full queue refuses the job at once with [`SubmitError::Busy`]
//!   (the relay: load shedding, the client retries);
//! * [`Overflow::Wait`]: [`Sender::submit`] waits asynchronously for space (a tokio wake-up
//!   when the writer takes jobs off the queue; never a blocking call on a runtime thread).
//!
//! The writer takes the first job, then whatever else is queued, up to `max_batch`, and runs
//! them in one transaction (group commit): `BEGIN IMMEDIATE`, each job in its own savepoint
//! ([`Savepoints`] says how a failing job is isolated), `COMMIT`. A job's caller is answered
//! after that commit ([`Backend::finish`]), except for jobs the backend answers when they ran
//! ([`Ran::wait_commit`] false: changes whose loss in a crash is harmless). A transaction that
//! holds only such jobs stays open up to `commit_delay` so that the next job whose caller waits
//! shares its commit. Under load ([`Options::busy_commit_delay`]) a transaction whose callers
//! wait may sleep briefly before its commit so that more of them share it. If the commit fails,
//! every job of the transaction gets the error.
//! Closing the queue (every [`Sender`] dropped) lets the writer run and commit what is queued,
//! then the thread ends.
//!
//! The writer's loop ([`run`]) takes its jobs from a [`Source`]: the bounded queue
//! ([`Receiver`]), or a store's own queue (the ntf-server appends changes under its state lock
//! into an unbounded list, never waiting; its back-pressure is an async wait on the backlog).
//! The loop and the transaction logic ([`Committer`]) add no allocation, lock or wake-up per
//! job: the jobs that ran are kept in one reused vector until their commit.

mod inline;

pub use inline::InlineWriter;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a full queue does to a new job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse it at once ([`SubmitError::Busy`]).
    Shed,
    /// [`Sender::submit`] waits (asynchronously) until the writer makes room.
    Wait,
}

/// Why a job was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full (policy [`Overflow::Shed`], or [`Sender::try_submit`]).
    #[error("write queue is full")]
    Busy,
    /// The writer is gone.
    #[error("writer is closed")]
    Closed,
}

/// How the jobs of one transaction are isolated from each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Savepoints {
    /// Each job in its own savepoint: a failing job is rolled back alone, the others commit.
    EachJob,
    /// The jobs run without savepoints (two statements per job saved); when one fails, the
    /// transaction is rolled back and the batch run again, each job in its own savepoint. Jobs
    /// must be re-runnable (the last run's result counts); no job may be answered early.
    OnFailure,
    /// No savepoints: a failing job breaks the transaction (rolled back; every job gets the
    /// error).
    Never,
}

/// What running one job did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ran {
    /// It succeeded (else its changes are rolled back, see [`Savepoints`]).
    pub ok: bool,
    /// Its caller waits for the commit. False when the backend answered it already: then the
    /// transaction may stay open up to the commit delay.
    pub wait_commit: bool,
}

/// The database side of a writer: transaction control and the jobs. Every SQL statement has a
/// default over [`Backend::exec`].
pub trait Backend {
    type Job;

    /// Runs one statement without parameters (`BEGIN IMMEDIATE`, `SAVEPOINT op`, …).
    fn exec(&mut self, sql: &'static str) -> Result<(), String>;

    /// How jobs are isolated (a constant for each backend).
    fn savepoints(&self) -> Savepoints {
        Savepoints::EachJob
    }

    fn begin(&mut self) -> Result<(), String> {
        self.exec("BEGIN IMMEDIATE")
    }
    fn commit(&mut self) -> Result<(), String> {
        self.exec("COMMIT")
    }
    fn rollback(&mut self) {
        let _ = self.exec("ROLLBACK");
    }
    fn savepoint(&mut self) -> Result<(), String> {
        self.exec("SAVEPOINT op")
    }
    fn release(&mut self) -> Result<(), String> {
        self.exec("RELEASE op")
    }
    /// Undoes the current job's changes and ends its savepoint.
    fn rollback_to(&mut self) -> Result<(), String> {
        self.exec("ROLLBACK TO op")?;
        self.exec("RELEASE op")
    }

    /// Called with each batch before it runs (e.g. to skip jobs a later one replaces).
    fn prepare(&mut self, _batch: &mut [Self::Job]) {}

    /// Runs one job in the open transaction.
    fn run(&mut self, job: &mut Self::Job) -> Ran;

    /// The job cannot run (the transaction did not begin or is broken): answer it with `error`.
    fn fail(&mut self, job: Self::Job, error: &str);

    /// After the transaction's `COMMIT` (`Ok`) or rollback (`Err`), before its `jobs` jobs are
    /// answered (caches, counters, logs).
    fn after_commit(&mut self, _result: &Result<(), String>, _jobs: usize) {}

    /// Answers a job that ran, with its transaction's outcome (nothing to do for a job answered
    /// when it ran).
    fn finish(&mut self, job: Self::Job, commit: &Result<(), String>);
}

/// Writer settings.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Most jobs run in one transaction (at least 1).
    pub max_batch: usize,
    /// How long a transaction holding only early-answered jobs may stay open for more work
    /// (zero: committed at once).
    pub commit_delay: Duration,
    /// Under load, how long a transaction whose callers wait may stay open for more of them
    /// (zero: never). "Under load" means the last committed transaction held at least
    /// [`BUSY_DURABLE_JOBS`] jobs whose callers waited for it: the open one then waits
    /// [`BUSY_DELAY_PER_JOB`] for each of them, at most this long from its first, so that a
    /// burst of callers shares one commit (one fsync) instead of splitting into commits of one
    /// or two while the previous one runs. A lone caller is never kept waiting (its
    /// transactions hold one such job), nor are callers that all arrived already.
    pub busy_commit_delay: Duration,
}

/// How many jobs waiting for their commit the last transaction must have held for the next one
/// to wait for more ([`Options::busy_commit_delay`]).
pub const BUSY_DURABLE_JOBS: usize = 2;

/// Under load the open transaction waits this long for each job that waited for the last
/// commit, up to [`Options::busy_commit_delay`]: two callers → 0.3 ms, twenty-seven or more →
/// the whole delay (so light load keeps short commits, heavy load gets few large ones).
pub const BUSY_DELAY_PER_JOB: Duration = Duration::from_micros(150);

/// The transaction logic of the writer, one batch at a time (the writer thread drives it with
/// [`run`]; tests can drive it step by step).
pub struct Committer<B: Backend> {
    backend: B,
    max_batch: usize,
    commit_delay: Duration,
    /// Jobs run in the open transaction, to answer after it commits.
    ran: Vec<B::Job>,
    open: bool,
    /// Set once the open transaction failed: later jobs fail, the commit becomes a rollback.
    broken: Option<String>,
    /// A job in the open transaction waits for the commit.
    durable: bool,
    /// Commit by then even if no more work came.
    deadline: Instant,
    busy_commit_delay: Duration,
    /// Jobs of the open transaction whose callers wait for its commit.
    durable_jobs: usize,
    /// The same count for the last committed transaction.
    last_durable_jobs: usize,
    /// The open transaction waits until then for more jobs although callers wait.
    linger: Option<Instant>,
}

impl<B: Backend> Committer<B> {
    pub fn new(backend: B, opts: Options) -> Self {
        let max_batch = opts.max_batch.max(1);
        Committer {
            backend,
            max_batch,
            commit_delay: opts.commit_delay,
            ran: Vec::with_capacity(max_batch),
            open: false,
            broken: None,
            durable: false,
            deadline: Instant::now(),
            busy_commit_delay: opts.busy_commit_delay,
            durable_jobs: 0,
            last_durable_jobs: 0,
            linger: None,
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// A transaction is open (jobs ran, not committed yet).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The open transaction must be committed now (a caller waits for it, it failed or is full).
    pub fn must_commit(&self) -> bool {
        self.open && self.durable
    }

    /// When the open transaction is to be committed at the latest.
    pub fn deadline(&self) -> Option<Instant> {
        self.open.then_some(self.deadline)
    }

    fn begin(&mut self, batch: &mut Vec<B::Job>) -> bool {
        if self.open {
            return true;
        }
        if let Err(e) = self.backend.begin() {
            tracing::warn!(error = %e, "group commit: BEGIN failed");
            for job in batch.drain(..) {
                self.backend.fail(job, &e);
            }
            return false;
        }
        self.open = true;
        self.broken = None;
        self.durable = self.commit_delay.is_zero();
        self.deadline = Instant::now() + self.commit_delay;
        self.durable_jobs = 0;
        self.linger = None;
        true
    }

    /// Runs `batch` (emptied) in the open transaction, beginning one if there is none. The
    /// transaction stays open: [`Committer::finish`] commits it.
    pub fn run_batch(&mut self, batch: &mut Vec<B::Job>) {
        if batch.is_empty() {
            return;
        }
        self.backend.prepare(batch);
        match self.backend.savepoints() {
            Savepoints::EachJob => self.run_each(batch, true),
            Savepoints::Never => self.run_each(batch, false),
            Savepoints::OnFailure => self.run_optimistic(batch),
        }
        // A failed transaction or a full one is not kept waiting.
        if self.open && (self.broken.is_some() || self.ran.len() >= self.max_batch) {
            self.durable = true;
            self.linger = None;
        } else if self.linger.is_none()
            && self.open
            && self.durable_jobs > 0
            && self.durable_jobs < self.last_durable_jobs
            && self.last_durable_jobs >= BUSY_DURABLE_JOBS
            && !self.busy_commit_delay.is_zero()
        {
            // Under load: give the callers still to come time to join this commit, in
            // proportion to how many shared the last one (a lone pair of callers gets a short
            // wait, a crowd the whole busy delay).
            let wait = BUSY_DELAY_PER_JOB
                .saturating_mul(u32::try_from(self.last_durable_jobs).unwrap_or(u32::MAX))
                .min(self.busy_commit_delay);
            self.linger = Some(Instant::now() + wait);
        }
    }

    /// The open transaction waits for more callers under load ([`Options::busy_commit_delay`])
    /// until then; [`run`] sleeps (no wake-up per arriving job), takes what came and commits.
    pub fn linger_until(&self) -> Option<Instant> {
        if self.open && self.durable {
            self.linger
        } else {
            None
        }
    }

    fn run_each(&mut self, batch: &mut Vec<B::Job>, savepoints: bool) {
        if !self.begin(batch) {
            return;
        }
        for mut job in batch.drain(..) {
            if let Some(e) = &self.broken {
                self.backend.fail(job, e);
                continue;
            }
            if savepoints && let Err(e) = self.backend.savepoint() {
                self.backend.fail(job, &e);
                self.broken = Some(e);
                continue;
            }
            let ran = self.backend.run(&mut job);
            self.durable |= ran.wait_commit;
            self.durable_jobs += usize::from(ran.wait_commit);
            self.ran.push(job);
            let end = match (savepoints, ran.ok) {
                (true, true) => self.backend.release(),
                (true, false) => self.backend.rollback_to(),
                (false, true) => Ok(()),
                (false, false) => Err("an operation of the transaction failed".to_string()),
            };
            if let Err(e) = end {
                self.broken = Some(e);
            }
        }
    }

    fn run_optimistic(&mut self, batch: &mut Vec<B::Job>) {
        debug_assert!(!self.open, "no early answers with Savepoints::OnFailure");
        if !self.begin(batch) {
            return;
        }
        let backend = &mut self.backend;
        let mut ok = true;
        for job in batch.iter_mut() {
            let ran = backend.run(job);
            self.durable |= ran.wait_commit;
            self.durable_jobs += usize::from(ran.wait_commit);
            if !ran.ok {
                ok = false;
                break;
            }
        }
        if ok {
            self.ran.append(batch);
            return;
        }
        // Again, each job in its own savepoint, so that the failed one leaves nothing behind.
        self.backend.rollback();
        self.open = false;
        self.run_each(batch, true);
    }

    /// Commits (or, when broken, rolls back) the open transaction and answers its jobs.
    pub fn finish(&mut self) {
        if let Some(done) = self.commit_unanswered() {
            self.answer(done);
        }
    }

    /// Answers the jobs of a transaction [`Committer::commit_unanswered`] committed.
    pub fn answer(&mut self, mut done: Committed<B::Job>) {
        for job in done.jobs.drain(..) {
            self.backend.finish(job, &done.result);
        }
        // Keep the allocation for the next transaction.
        if self.ran.capacity() == 0 {
            self.ran = done.jobs;
        }
    }

    /// [`Committer::finish`] without answering the jobs: the caller answers them
    /// ([`Committer::answer`]) once it made the commit durable itself — a writer that commits
    /// without fsync and syncs the log outside its lock ([`InlineWriter`]). `None` if no
    /// transaction is open.
    pub fn commit_unanswered(&mut self) -> Option<Committed<B::Job>> {
        if !self.open {
            return None;
        }
        self.open = false;
        self.linger = None;
        self.last_durable_jobs = self.durable_jobs;
        let n = self.ran.len();
        let result = match self.broken.take() {
            Some(e) => Err(e),
            None => self.backend.commit(),
        };
        if result.is_err() {
            self.backend.rollback();
        }
        self.backend.after_commit(&result, n);
        Some(Committed {
            result,
            jobs: std::mem::take(&mut self.ran),
        })
    }

    /// Jobs run in the open transaction, not answered yet.
    pub fn open_jobs(&self) -> usize {
        self.ran.len()
    }

    pub fn into_backend(mut self) -> B {
        self.finish();
        self.backend
    }
}

/// A transaction committed (or rolled back: `result` is the error) by
/// [`Committer::commit_unanswered`], with the jobs still to answer.
#[derive(Debug)]
pub struct Committed<J> {
    pub result: Result<(), String>,
    pub jobs: Vec<J>,
}

/// What [`Source::next`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Jobs were added to the batch.
    Jobs,
    /// The wait ended with no job.
    Timeout,
    /// No job is queued and none will come.
    Closed,
}

/// Where the writer takes its jobs from.
pub trait Source<J> {
    /// Waits for a job (at most `wait`, when given), then adds it and whatever else is queued
    /// to `batch`, up to `max` jobs in it.
    fn next(&mut self, batch: &mut Vec<J>, max: usize, wait: Option<Duration>) -> Next;
}

/// The writer's loop: batches from `source` until it is closed and drained; what is still open
/// is committed before it returns.
pub fn run<B: Backend, S: Source<B::Job>>(committer: &mut Committer<B>, source: &mut S) {
    let mut batch = Vec::with_capacity(committer.max_batch);
    loop {
        let wait = committer
            .deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        match source.next(&mut batch, committer.max_batch, wait) {
            Next::Jobs => {
                committer.run_batch(&mut batch);
                if let Some(until) = committer.linger_until() {
                    // Under load: sleep rather than wake for each job that arrives meanwhile,
                    // then take them all into this commit.
                    std::thread::sleep(until.saturating_duration_since(Instant::now()));
                    let room = committer
                        .max_batch
                        .saturating_sub(committer.ran.len())
                        .max(1);
                    if source.next(&mut batch, room, Some(Duration::ZERO)) == Next::Jobs {
                        committer.run_batch(&mut batch);
                    }
                    committer.finish();
                } else if committer.must_commit() {
                    committer.finish();
                }
            }
            Next::Timeout => committer.finish(),
            Next::Closed => break,
        }
    }
    committer.finish();
}

/// Space notifications of an [`Overflow::Wait`] queue.
#[derive(Debug, Default)]
struct Space {
    waiters: AtomicUsize,
    notify: tokio::sync::Notify,
}

impl Space {
    /// The writer took jobs off the queue: wake the submits waiting for room.
    fn freed(&self) {
        // Pairs with the fence in `Sender::submit`: either that submit sees the room made, or
        // this sees it waiting.
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) > 0 {
            self.notify.notify_waiters();
        }
    }
}

/// Wakes the waiting submits when the receiver is gone (declared after the receiver, so it
/// runs once the queue is disconnected and they see it).
struct WakeOnDrop(Option<Arc<Space>>);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.notify.notify_waiters();
        }
    }
}

/// The submitting side of a writer's queue. Cheap to clone; the queue closes when the last
/// one is dropped.
pub struct Sender<J> {
    tx: mpsc::SyncSender<J>,
    /// Some for [`Overflow::Wait`].
    space: Option<Arc<Space>>,
}

impl<J> Clone for Sender<J> {
    fn clone(&self) -> Self {
        Sender {
            tx: self.tx.clone(),
            space: self.space.clone(),
        }
    }
}

impl<J> std::fmt::Debug for Sender<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("group_commit::Sender")
            .field("overflow", &self.overflow())
            .finish()
    }
}

/// The writer's side of the queue (a [`Source`]).
pub struct Receiver<J> {
    rx: mpsc::Receiver<J>,
    space: Option<Arc<Space>>,
    _wake: WakeOnDrop,
}

/// A bounded queue of `capacity` jobs (at least 1) with the given policy.
pub fn channel<J>(capacity: usize, overflow: Overflow) -> (Sender<J>, Receiver<J>) {
    let (tx, rx) = mpsc::sync_channel(capacity.max(1));
    let space = match overflow {
        Overflow::Shed => None,
        Overflow::Wait => Some(Arc::new(Space::default())),
    };
    (
        Sender {
            tx,
            space: space.clone(),
        },
        Receiver {
            rx,
            space: space.clone(),
            _wake: WakeOnDrop(space),
        },
    )
}

/// Decrements the waiter count when a waiting submit ends (or is dropped).
struct Waiting<'a>(&'a Space);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<J> Sender<J> {
    pub fn overflow(&self) -> Overflow {
        match self.space {
            None => Overflow::Shed,
            Some(_) => Overflow::Wait,
        }
    }

    /// Queues `job` if there is room, never waiting (whatever the policy).
    pub fn try_submit(&self, job: J) -> Result<(), SubmitError> {
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => SubmitError::Busy,
            mpsc::TrySendError::Disconnected(_) => SubmitError::Closed,
        })
    }

    /// Queues `job` per the policy: [`Overflow::Shed`] refuses it at once when the queue is
    /// full, [`Overflow::Wait`] waits for room (cancel-safe: a dropped submit queued nothing).
    pub async fn submit(&self, job: J) -> Result<(), SubmitError> {
        let Some(space) = &self.space else {
            return self.try_submit(job);
        };
        let mut job = job;
        loop {
            match self.tx.try_send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::TrySendError::Disconnected(_)) => return Err(SubmitError::Closed),
                Err(mpsc::TrySendError::Full(j)) => job = j,
            }
            let notified = space.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            space.waiters.fetch_add(1, Ordering::SeqCst);
            let _waiting = Waiting(space);
            fence(Ordering::SeqCst);
            match self.tx.try_send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::TrySendError::Disconnected(_)) => return Err(SubmitError::Closed),
                Err(mpsc::TrySendError::Full(j)) => job = j,
            }
            notified.await;
        }
    }
}

impl<J> Source<J> for Receiver<J> {
    fn next(&mut self, batch: &mut Vec<J>, max: usize, wait: Option<Duration>) -> Next {
        let first = match wait {
            None => match self.rx.recv() {
                Ok(j) => j,
                Err(_) => return Next::Closed,
            },
            Some(w) => match self.rx.recv_timeout(w) {
                Ok(j) => j,
                Err(mpsc::RecvTimeoutError::Timeout) => return Next::Timeout,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Next::Closed,
            },
        };
        batch.push(first);
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if let Some(s) = &self.space {
            s.freed();
        }
        Next::Jobs
    }
}

/// Starts the writer thread `name` on `backend`, with a queue of `capacity` jobs and the policy
/// `overflow`. The thread ends (after committing what is queued) once every [`Sender`] is
/// dropped; join the handle to wait for that.
pub fn spawn<B>(
    name: &str,
    backend: B,
    capacity: usize,
    overflow: Overflow,
    opts: Options,
) -> std::io::Result<(Sender<B::Job>, JoinHandle<()>)>
where
    B: Backend + Send + 'static,
    B::Job: Send + 'static,
{
    let (tx, mut rx) = channel(capacity, overflow);
    let thread = spawn_with(name, backend, opts, move |c| run(c, &mut rx))?;
    Ok((tx, thread))
}

/// Starts the writer thread `name` running `body` (usually [`run`] over a store's own
/// [`Source`]) on a [`Committer`] of `backend`.
pub fn spawn_with<B, F>(
    name: &str,
    backend: B,
    opts: Options,
    body: F,
) -> std::io::Result<JoinHandle<()>>
where
    B: Backend + Send + 'static,
    B::Job: Send + 'static,
    F: FnOnce(&mut Committer<B>) + Send + 'static,
{
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let mut c = Committer::new(backend, opts);
            body(&mut c);
            c.finish();
            tracing::debug!("group commit: writer thread exiting");
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;
    use tokio::sync::oneshot;

    /// A job of the test backend: writes `id` to the "database" (fails when `fail`).
    struct TJob {
        id: u32,
        fail: bool,
        early: bool,
        result: Option<bool>,
        reply: Option<oneshot::Sender<Result<u32, String>>>,
    }

    fn job(id: u32) -> (TJob, oneshot::Receiver<Result<u32, String>>) {
        let (tx, rx) = oneshot::channel();
        (
            TJob {
                id,
                fail: false,
                early: false,
                result: None,
                reply: Some(tx),
            },
            rx,
        )
    }

    #[derive(Default)]
    struct Db {
        /// Committed ids.
        committed: Vec<u32>,
        /// Ids written in the open transaction.
        txn: Vec<u32>,
        /// Savepoint marks.
        marks: Vec<usize>,
        /// Every statement / job run, in order.
        log: Vec<String>,
        /// Jobs per committed transaction.
        batches: Vec<usize>,
        fail_commit: bool,
    }

    /// An in-memory database with real transaction semantics.
    struct TestBackend {
        db: Arc<Mutex<Db>>,
        mode: Savepoints,
        /// Blocks BEGIN until set (a stalled writer), telling `began` first.
        gate: Option<Arc<(Mutex<bool>, std::sync::Condvar)>>,
        began: Option<mpsc::Sender<()>>,
    }

    impl TestBackend {
        fn new(mode: Savepoints) -> (Self, Arc<Mutex<Db>>) {
            let db = Arc::new(Mutex::new(Db::default()));
            (
                TestBackend {
                    db: db.clone(),
                    mode,
                    gate: None,
                    began: None,
                },
                db,
            )
        }
    }

    impl Backend for TestBackend {
        type Job = TJob;

        fn exec(&mut self, sql: &'static str) -> Result<(), String> {
            if sql == "BEGIN IMMEDIATE"
                && let Some(g) = &self.gate
            {
                if let Some(b) = &self.began {
                    let _ = b.send(());
                }
                let mut open = g.0.lock().unwrap();
                while !*open {
                    open = g.1.wait(open).unwrap();
                }
            }
            let mut db = self.db.lock().unwrap();
            db.log.push(sql.to_string());
            match sql {
                "BEGIN IMMEDIATE" => db.txn.clear(),
                "COMMIT" => {
                    if db.fail_commit {
                        return Err("disk full".into());
                    }
                    let t = std::mem::take(&mut db.txn);
                    db.committed.extend(t);
                }
                "ROLLBACK" => db.txn.clear(),
                "SAVEPOINT op" => {
                    let n = db.txn.len();
                    db.marks.push(n);
                }
                "ROLLBACK TO op" => {
                    let m = *db.marks.last().ok_or("no savepoint")?;
                    db.txn.truncate(m);
                }
                "RELEASE op" => {
                    db.marks.pop().ok_or("no savepoint")?;
                }
                _ => return Err(format!("unknown statement {sql}")),
            }
            Ok(())
        }

        fn savepoints(&self) -> Savepoints {
            self.mode
        }

        fn run(&mut self, job: &mut TJob) -> Ran {
            let mut db = self.db.lock().unwrap();
            db.log.push(format!("run {}", job.id));
            // A failing job writes before it fails: the savepoint must undo it.
            db.txn.push(job.id);
            job.result = Some(!job.fail);
            if job.early
                && !job.fail
                && let Some(r) = job.reply.take()
            {
                let _ = r.send(Ok(job.id));
            }
            Ran {
                ok: !job.fail,
                wait_commit: !job.early,
            }
        }

        fn fail(&mut self, mut job: TJob, error: &str) {
            if let Some(r) = job.reply.take() {
                let _ = r.send(Err(error.to_string()));
            }
        }

        fn after_commit(&mut self, result: &Result<(), String>, jobs: usize) {
            if result.is_ok() {
                self.db.lock().unwrap().batches.push(jobs);
            }
        }

        fn finish(&mut self, mut job: TJob, commit: &Result<(), String>) {
            let Some(r) = job.reply.take() else { return };
            let out = match (commit, job.result) {
                (Err(e), _) => Err(format!("commit failed: {e}")),
                (Ok(()), Some(true)) => Ok(job.id),
                (Ok(()), _) => Err("job failed".to_string()),
            };
            let _ = r.send(out);
        }
    }

    /// [`InlineWriter`]: a job runs on the submitting thread (an early one is answered on
    /// return, before any commit); a job whose caller waits is answered only after the
    /// flusher's commit and the log's sync; beyond `max_open` jobs in the open transaction a
    /// submit is `Busy` at once; closing commits what is open.
    #[test]
    fn inline_writer_runs_jobs_in_place_and_answers_after_commit_and_sync() {
        let path = std::env::temp_dir().join(format!("hush-gc-inline-{}", std::process::id()));
        std::fs::write(&path, b"log").unwrap();
        let log = std::fs::File::open(&path).unwrap();
        let (backend, db) = TestBackend::new(Savepoints::EachJob);
        let (w, flusher) = InlineWriter::start(
            "test-flush",
            backend,
            Options {
                max_batch: 16,
                commit_delay: Duration::from_secs(60),
                busy_commit_delay: Duration::ZERO,
            },
            2,
            Some(log),
        )
        .unwrap();
        let (j1, r1) = job(1);
        w.submit(j1).unwrap();
        assert_eq!(r1.blocking_recv().unwrap(), Ok(1));
        assert_eq!(
            db.lock().unwrap().committed,
            vec![1],
            "answered after its commit"
        );
        assert_eq!(w.syncs(), 1, "and after the log's sync");
        // Early jobs: answered on return, left open (the commit delay is a minute).
        for id in [2, 3] {
            let (mut e, mut re) = job(id);
            e.early = true;
            w.submit(e).unwrap();
            assert_eq!(re.try_recv().unwrap(), Ok(id), "answered when it ran");
        }
        assert_eq!(db.lock().unwrap().committed, vec![1]);
        assert!(matches!(w.submit(job(4).0), Err(SubmitError::Busy)));
        w.close();
        flusher.join().unwrap();
        assert_eq!(db.lock().unwrap().committed, vec![1, 2, 3]);
        assert_eq!(w.syncs(), 2);
        let _ = std::fs::remove_file(&path);
    }

    fn opts(max_batch: usize) -> Options {
        Options {
            max_batch,
            commit_delay: Duration::ZERO,
            busy_commit_delay: Duration::ZERO,
        }
    }

    #[test]
    fn batches_form_from_what_is_queued_and_closing_commits_the_rest() {
        let (backend, db) = TestBackend::new(Savepoints::EachJob);
        let (tx, mut rx) = channel::<TJob>(16, Overflow::Shed);
        let mut replies = Vec::new();
        for id in 0..10 {
            let (j, r) = job(id);
            tx.try_submit(j).unwrap();
            replies.push(r);
        }
        // Queued before the writer ran; then the queue closes.
        drop(tx);
        let mut c = Committer::new(backend, opts(4));
        run(&mut c, &mut rx);
        let db = db.lock().unwrap();
        assert_eq!(
            db.batches,
            vec![4, 4, 2],
            "first job + what is queued, ≤ max_batch"
        );
        assert_eq!(db.committed, (0..10).collect::<Vec<_>>());
        for (id, mut r) in replies.into_iter().enumerate() {
            assert_eq!(r.try_recv().unwrap(), Ok(id as u32));
        }
    }

    #[tokio::test]
    async fn shed_refuses_a_full_queue_at_once() {
        let (tx, rx) = channel::<TJob>(2, Overflow::Shed);
        assert_eq!(tx.overflow(), Overflow::Shed);
        tx.submit(job(1).0).await.unwrap();
        tx.submit(job(2).0).await.unwrap();
        assert_eq!(tx.submit(job(3).0).await, Err(SubmitError::Busy));
        assert_eq!(tx.try_submit(job(3).0), Err(SubmitError::Busy));
        drop(rx);
        assert_eq!(tx.submit(job(4).0).await, Err(SubmitError::Closed));
    }

    /// A full queue with policy Wait: the submit pends without blocking the (only) runtime
    /// thread, another task keeps running, and the submit completes once the writer drains.
    #[tokio::test(flavor = "current_thread")]
    async fn wait_pends_without_blocking_the_runtime() {
        let (mut backend, db) = TestBackend::new(Savepoints::EachJob);
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        backend.gate = Some(gate.clone());
        let (began_tx, began) = mpsc::channel();
        backend.began = Some(began_tx);
        let (tx, thread) = spawn("test-writer", backend, 1, Overflow::Wait, opts(8)).unwrap();
        assert_eq!(tx.overflow(), Overflow::Wait);
        // Job 1 is taken by the writer, which stalls in BEGIN; job 0 then fills the queue.
        let (j1, r1) = job(1);
        tx.submit(j1).await.unwrap();
        began.recv_timeout(Duration::from_secs(10)).unwrap();
        tx.try_submit(job(0).0).unwrap();
        assert_eq!(tx.try_submit(job(0).0), Err(SubmitError::Busy));
        // The queue is full and the writer stalled: job 2's submit must wait.
        let (j2, r2) = job(2);
        let done = Arc::new(AtomicBool::new(false));
        let submit = tokio::spawn({
            let tx = tx.clone();
            let done = done.clone();
            async move {
                let r = tx.submit(j2).await;
                done.store(true, Ordering::SeqCst);
                r
            }
        });
        let ticks = Arc::new(AtomicUsize::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    ticks.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        while ticks.load(Ordering::SeqCst) < 50 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(
            !done.load(Ordering::SeqCst),
            "the submit completed while the queue was full"
        );
        assert!(!submit.is_finished());
        // Release the writer: it drains the queue, the waiting submit gets room.
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        tokio::time::timeout(Duration::from_secs(10), submit)
            .await
            .expect("the waiting submit never completed")
            .unwrap()
            .unwrap();
        assert_eq!(r1.await.unwrap(), Ok(1));
        assert_eq!(r2.await.unwrap(), Ok(2));
        ticker.abort();
        drop(tx);
        thread.join().unwrap();
        let mut committed = db.lock().unwrap().committed.clone();
        committed.sort();
        assert_eq!(committed, vec![0, 1, 2]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_waiting_submit_learns_that_the_writer_is_gone() {
        let (tx, rx) = channel::<TJob>(1, Overflow::Wait);
        tx.submit(job(1).0).await.unwrap();
        let pending = tokio::spawn({
            let tx = tx.clone();
            async move { tx.submit(job(2).0).await }
        });
        tokio::task::yield_now().await;
        assert!(!pending.is_finished());
        drop(rx);
        let r = tokio::time::timeout(Duration::from_secs(10), pending)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r, Err(SubmitError::Closed));
    }

    #[test]
    fn a_failing_job_is_rolled_back_alone_each_job_in_a_savepoint() {
        let (backend, db) = TestBackend::new(Savepoints::EachJob);
        let mut c = Committer::new(backend, opts(16));
        let (j1, mut r1) = job(1);
        let (mut j2, mut r2) = job(2);
        j2.fail = true;
        let (j3, mut r3) = job(3);
        c.run_batch(&mut vec![j1, j2, j3]);
        assert!(c.must_commit());
        assert!(r1.try_recv().is_err(), "answered only after the commit");
        c.finish();
        assert_eq!(r1.try_recv().unwrap(), Ok(1));
        assert_eq!(r2.try_recv().unwrap(), Err("job failed".into()));
        assert_eq!(r3.try_recv().unwrap(), Ok(3));
        let db = db.lock().unwrap();
        assert_eq!(db.committed, vec![1, 3], "job 2's write was rolled back");
        assert_eq!(
            db.log,
            [
                "BEGIN IMMEDIATE",
                "SAVEPOINT op",
                "run 1",
                "RELEASE op",
                "SAVEPOINT op",
                "run 2",
                "ROLLBACK TO op",
                "RELEASE op",
                "SAVEPOINT op",
                "run 3",
                "RELEASE op",
                "COMMIT"
            ]
        );
    }

    #[test]
    fn on_failure_the_batch_runs_again_with_savepoints() {
        let (backend, db) = TestBackend::new(Savepoints::OnFailure);
        let mut c = Committer::new(backend, opts(16));
        // Without a failure: no savepoint at all.
        let (j0, mut r0) = job(10);
        c.run_batch(&mut vec![j0]);
        c.finish();
        assert_eq!(r0.try_recv().unwrap(), Ok(10));
        let (j1, mut r1) = job(1);
        let (mut j2, mut r2) = job(2);
        j2.fail = true;
        let (j3, mut r3) = job(3);
        c.run_batch(&mut vec![j1, j2, j3]);
        c.finish();
        assert_eq!(r1.try_recv().unwrap(), Ok(1));
        assert_eq!(r2.try_recv().unwrap(), Err("job failed".into()));
        assert_eq!(r3.try_recv().unwrap(), Ok(3));
        let db = db.lock().unwrap();
        assert_eq!(db.committed, vec![10, 1, 3]);
        assert_eq!(
            db.log,
            [
                "BEGIN IMMEDIATE",
                "run 10",
                "COMMIT",
                "BEGIN IMMEDIATE",
                "run 1",
                "run 2",
                "ROLLBACK",
                "BEGIN IMMEDIATE",
                "SAVEPOINT op",
                "run 1",
                "RELEASE op",
                "SAVEPOINT op",
                "run 2",
                "ROLLBACK TO op",
                "RELEASE op",
                "SAVEPOINT op",
                "run 3",
                "RELEASE op",
                "COMMIT"
            ]
        );
    }

    #[test]
    fn without_savepoints_a_failing_job_fails_the_transaction() {
        let (backend, db) = TestBackend::new(Savepoints::Never);
        let mut c = Committer::new(backend, opts(16));
        let (j1, mut r1) = job(1);
        let (mut j2, mut r2) = job(2);
        j2.fail = true;
        let (j3, mut r3) = job(3);
        c.run_batch(&mut vec![j1, j2, j3]);
        c.finish();
        assert!(
            r1.try_recv()
                .unwrap()
                .unwrap_err()
                .starts_with("commit failed")
        );
        assert!(
            r2.try_recv()
                .unwrap()
                .unwrap_err()
                .starts_with("commit failed")
        );
        assert!(r3.try_recv().unwrap().is_err(), "not run after the failure");
        let db = db.lock().unwrap();
        assert!(db.committed.is_empty());
        assert_eq!(db.log, ["BEGIN IMMEDIATE", "run 1", "run 2", "ROLLBACK"]);
    }

    #[test]
    fn a_failed_commit_fails_the_whole_batch() {
        let (backend, db) = TestBackend::new(Savepoints::EachJob);
        db.lock().unwrap().fail_commit = true;
        let mut c = Committer::new(backend, opts(16));
        let (j1, mut r1) = job(1);
        let (j2, mut r2) = job(2);
        c.run_batch(&mut vec![j1, j2]);
        c.finish();
        assert_eq!(
            r1.try_recv().unwrap(),
            Err("commit failed: disk full".into())
        );
        assert_eq!(
            r2.try_recv().unwrap(),
            Err("commit failed: disk full".into())
        );
        let db = db.lock().unwrap();
        assert!(db.committed.is_empty());
        assert!(db.batches.is_empty());
        assert_eq!(db.log.last().map(String::as_str), Some("ROLLBACK"));
    }

    #[test]
    fn early_jobs_are_answered_before_a_delayed_commit_that_the_next_job_shares() {
        let (backend, db) = TestBackend::new(Savepoints::EachJob);
        let mut c = Committer::new(
            backend,
            Options {
                max_batch: 16,
                commit_delay: Duration::from_secs(60),
                busy_commit_delay: Duration::ZERO,
            },
        );
        let (mut e1, mut re1) = job(1);
        e1.early = true;
        c.run_batch(&mut vec![e1]);
        assert_eq!(re1.try_recv().unwrap(), Ok(1), "answered when it ran");
        assert!(c.is_open() && !c.must_commit(), "kept open for more work");
        assert!(c.deadline().unwrap() > Instant::now() + Duration::from_secs(30));
        assert!(db.lock().unwrap().committed.is_empty());
        let (j2, mut r2) = job(2);
        c.run_batch(&mut vec![j2]);
        assert!(c.must_commit(), "a caller waits for this commit");
        assert!(r2.try_recv().is_err());
        c.finish();
        assert_eq!(r2.try_recv().unwrap(), Ok(2));
        let db = db.lock().unwrap();
        assert_eq!(db.committed, vec![1, 2]);
        assert_eq!(db.batches, vec![2], "one commit for both");
    }

    /// Under load (the last commit held ≥ 2 waiting callers) a transaction with fewer waits
    /// [`BUSY_DELAY_PER_JOB`] per caller of the last commit (at most the busy delay) and takes
    /// what came meanwhile; a lone caller's, or one that already holds as many, or one with only
    /// early answers, is committed at once.
    #[test]
    fn under_load_a_commit_waits_for_more_callers_a_lone_caller_never_does() {
        let busy = Duration::from_millis(200);
        let (backend, db) = TestBackend::new(Savepoints::EachJob);
        let mut c = Committer::new(
            backend,
            Options {
                busy_commit_delay: busy,
                ..opts(16)
            },
        );
        // No history: a caller's job is committed at once.
        c.run_batch(&mut vec![job(1).0]);
        assert_eq!(c.linger_until(), None);
        assert!(c.must_commit());
        c.finish();
        // Two callers at once: committed at once (nothing was busy before), but now it is.
        c.run_batch(&mut vec![job(2).0, job(3).0]);
        assert_eq!(c.linger_until(), None);
        c.finish();
        // One caller after a commit of two: wait two callers' time for more.
        let wait = BUSY_DELAY_PER_JOB * 2;
        let before = Instant::now();
        c.run_batch(&mut vec![job(4).0]);
        let until = c.linger_until().expect("waits under load");
        assert!(until >= before + wait && until <= Instant::now() + wait);
        // A second comes: as many as last time, still the same deadline (not extended).
        c.run_batch(&mut vec![job(5).0]);
        assert_eq!(c.linger_until(), Some(until));
        c.finish();
        assert_eq!(db.lock().unwrap().batches, vec![1, 2, 2]);
        // Three at once after two: enough already, no wait.
        c.run_batch(&mut vec![job(6).0, job(7).0, job(8).0]);
        assert_eq!(c.linger_until(), None);
        c.finish();
        // Only early answers (nobody waits for the commit): no busy wait either.
        let (mut e, _) = job(9);
        e.early = true;
        c.run_batch(&mut vec![e]);
        assert_eq!(c.linger_until(), None);
        c.finish();
        // The last commit had no waiting caller: the next one is alone, committed at once.
        c.run_batch(&mut vec![job(10).0]);
        assert_eq!(c.linger_until(), None);
        c.finish();
        c.run_batch(&mut vec![job(11).0]);
        assert_eq!(c.linger_until(), None, "one caller after one: never waits");
        c.finish();
        // A crowd: after a commit of 40 the next waits 40 callers' time …
        c.run_batch(&mut (100..140).map(|i| job(i).0).collect());
        c.finish();
        let before = Instant::now();
        c.run_batch(&mut vec![job(12).0]);
        let until = c.linger_until().expect("waits under load");
        let wait = BUSY_DELAY_PER_JOB * 40;
        assert!(until >= before + wait && until <= Instant::now() + wait);
        c.finish();
        // … and never more than the busy delay.
        let mut more: Vec<_> = (300..1800).map(|i| job(i).0).collect();
        let mut c2 = Committer::new(
            TestBackend::new(Savepoints::EachJob).0,
            Options {
                busy_commit_delay: busy,
                ..opts(4096)
            },
        );
        c2.run_batch(&mut more);
        c2.finish();
        let before = Instant::now();
        c2.run_batch(&mut vec![job(13).0]);
        let until = c2.linger_until().expect("waits under load");
        assert!(until >= before + busy && until <= Instant::now() + busy);
        let mut want: Vec<u32> = (1..=11).collect();
        want.extend(100..140);
        want.push(12);
        assert_eq!(db.lock().unwrap().committed, want);
    }

    /// The writer loop sleeps through the busy delay (no wake-up per arriving job), then takes
    /// whatever is queued without waiting and commits it with the open transaction.
    #[test]
    fn the_writer_sleeps_through_the_busy_delay_then_commits_what_came() {
        struct Feed {
            calls: Vec<Option<Duration>>,
        }
        impl Source<TJob> for Feed {
            fn next(&mut self, batch: &mut Vec<TJob>, _: usize, wait: Option<Duration>) -> Next {
                self.calls.push(wait);
                match self.calls.len() {
                    1 => batch.extend([job(1).0, job(2).0]),
                    2 => batch.push(job(3).0),
                    // Taken after the sleep, without waiting.
                    3 => batch.extend([job(4).0, job(5).0]),
                    _ => return Next::Closed,
                }
                Next::Jobs
            }
        }
        let busy = Duration::from_millis(50);
        let (backend, db) = TestBackend::new(Savepoints::EachJob);
        let mut c = Committer::new(
            backend,
            Options {
                busy_commit_delay: busy,
                ..opts(16)
            },
        );
        let mut feed = Feed { calls: Vec::new() };
        let start = Instant::now();
        run(&mut c, &mut feed);
        // Two callers in the last commit: two callers' time (less than `busy`).
        assert!(
            start.elapsed() >= BUSY_DELAY_PER_JOB * 2,
            "slept the busy delay"
        );
        assert_eq!(feed.calls[..3], [None, None, Some(Duration::ZERO)]);
        let db = db.lock().unwrap();
        assert_eq!(
            db.batches,
            vec![2, 3],
            "job 3 shares its commit with 4 and 5"
        );
        assert_eq!(db.committed, (1..=5).collect::<Vec<_>>());
    }

    #[test]
    fn a_timeout_commits_the_open_transaction() {
        struct Idle(u8);
        impl Source<TJob> for Idle {
            fn next(&mut self, batch: &mut Vec<TJob>, _: usize, wait: Option<Duration>) -> Next {
                self.0 += 1;
                match self.0 {
                    1 => {
                        assert_eq!(wait, None, "nothing open: wait for work");
                        let (mut j, _) = job(1);
                        j.early = true;
                        batch.push(j);
                        Next::Jobs
                    }
                    2 => {
                        assert!(wait.is_some(), "open: wait until the deadline");
                        Next::Timeout
                    }
                    _ => Next::Closed,
                }
            }
        }
        let (backend, db) = TestBackend::new(Savepoints::EachJob);
        let mut c = Committer::new(
            backend,
            Options {
                max_batch: 16,
                commit_delay: Duration::from_millis(5),
                busy_commit_delay: Duration::ZERO,
            },
        );
        run(&mut c, &mut Idle(0));
        let db = db.lock().unwrap();
        assert_eq!(db.committed, vec![1]);
        assert_eq!(db.batches, vec![1]);
    }
}
