//! The relay store's writer: each write runs on its caller's thread, inside the open
//! transaction, under one lock; a flusher thread commits and makes commits durable.
//!
//! Why not a writer thread with a job queue (as the ntf and push stores have): on the relay's
//! per-message path every `SEND` and `ACK` then crossed threads twice (the job to the writer,
//! its outcome back), and on a 2-core VM each crossing that finds a thread asleep costs a wake-up
//! and a context switch. Here the append / delete runs where the command is processed — its
//! outcome (and so the subscriber's `MSG`, or the next message after an `ACK`) is known at once —
//! and only the answer that needs durability (`OK` to a `SEND`) waits for the flusher.
//!
//! The flusher: when the open transaction holds a write whose caller waits for durability, it
//! lingers under load ([`group_commit::Options::busy_commit_delay`]: only when the previous
//! commit held two or more such writes; a lone caller is committed at once), then takes the
//! lock, `COMMIT`s (SQLite `synchronous=NORMAL`: the WAL frames are written, not synced), lets
//! the lock go, and with [`SyncPolicy::Full`] `fdatasync`s the WAL file before it answers the
//! transaction's callers. So an answered write is on disk as with `synchronous=FULL`, while
//! writers keep adding to the next transaction during the fsync. SQLite's automatic checkpoint
//! (`wal_autocheckpoint` pages) still runs inside the `COMMIT` that crosses it, under the lock
//! (with `NORMAL` it syncs the WAL and the database file itself): a write arriving then waits
//! for it, as it waited behind the writer thread's checkpoint before.
//!
//! Bounds: at most `write_queue` writes wait in the open transaction; beyond that a write is
//! refused with [`StoreError::Busy`] (as the writer thread's bounded queue did).

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hush_server_common::group_commit::{self, Committer};

use super::{Counters, Job, RelayWriter};
use crate::error::{StoreError, StoreResult};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Locked {
    committer: Committer<RelayWriter>,
    /// Reused for each write (no allocation per job).
    batch: Vec<Job>,
}

#[derive(Default)]
struct Flush {
    kicked: bool,
    closing: bool,
}

pub(super) struct InlineWriter {
    locked: Mutex<Locked>,
    flush: Mutex<Flush>,
    wake: Condvar,
    write_queue: usize,
    counters: Arc<Counters>,
}

impl InlineWriter {
    /// Starts the flusher thread.
    pub(super) fn start(
        backend: RelayWriter,
        opts: group_commit::Options,
        write_queue: usize,
        wal: Option<File>,
        counters: Arc<Counters>,
    ) -> std::io::Result<(Arc<Self>, JoinHandle<()>)> {
        let w = Arc::new(InlineWriter {
            locked: Mutex::new(Locked {
                committer: Committer::new(backend, opts),
                batch: Vec::with_capacity(1),
            }),
            flush: Mutex::new(Flush::default()),
            wake: Condvar::new(),
            write_queue: write_queue.max(1),
            counters,
        });
        let f = w.clone();
        let t = std::thread::Builder::new()
            .name("hush-store-flush".into())
            .spawn(move || f.flusher(wal))?;
        Ok((w, t))
    }

    /// Runs `job` in the open transaction on this thread (a job answered early is answered on
    /// return; the others when the flusher made their commit durable).
    pub(super) fn submit(&self, job: Job) -> StoreResult<()> {
        let kick = {
            let mut g = lock(&self.locked);
            let Locked { committer, batch } = &mut *g;
            if committer.open_jobs() >= self.write_queue {
                return Err(StoreError::Busy);
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

    /// Makes the flusher commit what is open and stop (joined by the caller).
    pub(super) fn close(&self) {
        lock(&self.flush).closing = true;
        self.wake.notify_one();
    }

    /// `wal`: the WAL file, synced before callers are answered (`None`: `sync = normal`).
    fn flusher(self: Arc<Self>, wal: Option<File>) {
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
                    self.commit(wal.as_ref());
                }
                None if closing => {
                    self.commit(wal.as_ref());
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
        tracing::debug!("hush-store: flusher exiting");
    }

    /// Commits the open transaction (under the lock), syncs the WAL (not under it), answers.
    fn commit(&self, wal: Option<&File>) {
        let Some(mut done) = lock(&self.locked).committer.commit_unanswered() else {
            return;
        };
        if done.result.is_ok()
            && let Some(wal) = wal
        {
            match wal.sync_data() {
                Ok(()) => {
                    self.counters
                        .wal_syncs
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => {
                    // The transaction is in the WAL but may not be on disk: its callers are
                    // told it failed (a sender resends; agents drop the duplicate).
                    tracing::error!(error = %e, "hush-store: fsync of the WAL failed");
                    done.result = Err(format!("fsync of the WAL failed: {e}"));
                }
            }
        }
        for job in done.jobs.drain(..) {
            job.finish(&done.result);
        }
    }
}
