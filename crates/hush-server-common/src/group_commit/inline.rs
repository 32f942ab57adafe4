//! The group-commit writer without a writer thread: each job runs on its caller's thread,
//! inside the open transaction, under one lock; a flusher thread commits and makes commits
//! durable.
//!
//! Why (the relay's SQLite store, whose per-message path uses it): with a writer thread and a
//! job queue ([`super::spawn`]) every job crosses threads twice (the job to the writer, its
//! outcome back), and on a 2-core VM each crossing that finds a thread asleep costs a wake-up and
//! a context switch. Here a job runs where it is submitted — its outcome, and what a job answers
//! early, is known at once — and only the answers that need durability wait for the flusher.
//!
//! The flusher: when the open transaction holds a job whose caller waits for durability, it
//! lingers under load ([`Options::busy_commit_delay`]: only when the previous commit held two
//! or more such jobs; a lone caller is committed at once), then takes the lock, commits (the
//! backend commits without syncing, e.g. SQLite `synchronous=NORMAL`: the WAL frames are
//! written), lets the lock go, `fdatasync`s the log file it was given (if any), and answers the
//! So an answered job is on disk as with `synchronous=FULL`, while writers keep adding to the
//! next transaction during the fsync. SQLite's automatic checkpoint
//! (`wal_autocheckpoint` pages) still runs inside the `COMMIT` that crosses it, under the lock
//! (with `NORMAL` it syncs the WAL and the database file itself): a write arriving then waits
//! for it, as it waited behind the writer thread's checkpoint before.
//!
//! Bounds: at most `max_open` jobs wait in the open transaction; beyond, a job is refused with
//! [`SubmitError::Busy`] (as [`Overflow::Shed`] refuses one over a full queue).

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(doc)]
use super::Overflow;
use super::{Backend, Committer, Options, SubmitError};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Locked<B: Backend> {
    committer: Committer<B>,
    /// Reused for each job (no allocation per job).
    batch: Vec<B::Job>,
}

#[derive(Default)]
struct Flush {
    kicked: bool,
    closing: bool,
}

/// See the module documentation.
pub struct InlineWriter<B: Backend> {
    locked: Mutex<Locked<B>>,
    flush: Mutex<Flush>,
    wake: Condvar,
    max_open: usize,
    syncs: AtomicU64,
}

impl<B> InlineWriter<B>
where
    B: Backend + Send + 'static,
    B::Job: Send + 'static,
{
    /// Starts the flusher thread `name`. `log`: the file to `fdatasync` after each commit,
    /// before its callers are answered (`None`: the backend's commit is durable enough).
    pub fn start(
        name: &str,
        backend: B,
        opts: Options,
        max_open: usize,
        log: Option<File>,
    ) -> std::io::Result<(Arc<Self>, JoinHandle<()>)> {
        let w = Arc::new(InlineWriter {
            locked: Mutex::new(Locked {
                committer: Committer::new(backend, opts),
                batch: Vec::with_capacity(1),
            }),
            flush: Mutex::new(Flush::default()),
            wake: Condvar::new(),
            max_open: max_open.max(1),
            syncs: AtomicU64::new(0),
        });
        let f = w.clone();
        let t = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || f.flusher(log))?;
        Ok((w, t))
    }

    /// `fdatasync`s of the log so far (one per commit, before its callers are answered).
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Runs `job` in the open transaction on this thread (a job answered early is answered on
    /// return; the others when the flusher made their commit durable). A full transaction
    /// refuses it at once (the job is dropped unanswered).
    pub fn submit(&self, job: B::Job) -> Result<(), SubmitError> {
        let kick = {
            let mut g = lock(&self.locked);
            let Locked { committer, batch } = &mut *g;
            if committer.open_jobs() >= self.max_open {
                return Err(SubmitError::Busy);
            }
            let before = (committer.is_open(), committer.must_commit());
            batch.push(job);
            committer.run_batch(batch);
            // The flusher learns of a new transaction (its deadline) and of one that now
            // waits for a commit; other jobs need no wake-up.
            before != (committer.is_open(), committer.must_commit())
        };
        if kick {
            lock(&self.flush).kicked = true;
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Makes the flusher commit what is open and stop (join its handle to wait for that).
    pub fn close(&self) {
        lock(&self.flush).closing = true;
        self.wake.notify_one();
    }

    fn flusher(self: Arc<Self>, log: Option<File>) {
        loop {
            // What the open transaction needs: a commit now (after the busy linger), one at
            // its deadline (changes answered early), or nothing.
            let (commit, deadline) = {
                let g = lock(&self.locked);
                let c = &g.committer;
                let due = c.deadline().is_some_and(|d| d <= Instant::now());
                (
                    (c.must_commit() || due).then(|| c.linger_until()),
                    c.deadline(),
                )
            };
            let closing = lock(&self.flush).closing;
            match commit {
                Some(linger) => {
                    if let Some(until) = linger
                        && !closing
                    {
                        std::thread::sleep(until.saturating_duration_since(Instant::now()));
                    }
                    self.commit(log.as_ref());
                }
                None if closing => {
                    self.commit(log.as_ref());
                    break;
                }
                None => {
                    let mut f = lock(&self.flush);
                    while !f.kicked && !f.closing {
                        let wait = deadline.map_or(Duration::from_secs(3600), |d| {
                            d.saturating_duration_since(Instant::now())
                        });
                        if wait.is_zero() {
                            break;
                        }
                        let (g, timeout) = self
                            .wake
                            .wait_timeout(f, wait)
                            .unwrap_or_else(|e| e.into_inner());
                        f = g;
                        if timeout.timed_out() {
                            break;
                        }
                    }
                    f.kicked = false;
                }
            }
        }
        tracing::debug!("group commit: flusher exiting");
    }

    /// Commits the open transaction (under the lock), syncs the log (not under it), answers.
    fn commit(&self, log: Option<&File>) {
        let Some(mut done) = lock(&self.locked).committer.commit_unanswered() else {
            return;
        };
        if done.result.is_ok()
            && let Some(log) = log
        {
            match log.sync_data() {
                Ok(()) => {
                    self.syncs.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    // The transaction is in the log but may not be on disk: its callers are
                    // told it failed (a sender resends; agents drop the duplicate).
                    tracing::error!(error = %e, "group commit: fsync of the log failed");
                    done.result = Err(format!("fsync of the log failed: {e}"));
                }
            }
        }
        lock(&self.locked).committer.answer(done);
    }
}
