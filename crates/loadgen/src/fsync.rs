//! `loadgen fsync`: the disk's commit latency, the part of a durable `SEND`'s (and a push
//! outbox commit's) time that no code of ours can remove.
//!
//! W writer threads each rewrite a 4 KiB page of their own file and `fsync` it, paced at
//! `rate` commits per second per writer (what a relay's store writer does at low load, one
//! commit per `SEND`), for `seconds`. Reports the latency distribution of the `fsync` calls and
//! how many took longer than 20 ms: on a virtual disk the tail comes from the host flushing,
//! and every commit that lands in it (the relay's, the ntf-server's, the push outbox's) waits.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The latency distribution of one run.
#[derive(Debug, Clone)]
pub struct FsyncReport {
    pub writers: usize,
    pub commits: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
    /// Commits slower than 20 ms.
    pub over_20ms: usize,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i]
}

fn writer(path: PathBuf, rate: f64, until: Instant) -> std::io::Result<Vec<Duration>> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    // Allocate the pages first: the measured commits rewrite, as a WAL that was reset does.
    f.write_all(&vec![0u8; 64 * 4096])?;
    f.sync_all()?;
    let page = vec![0x5au8; 4096];
    let gap = if rate > 0.0 {
        Duration::from_secs_f64(1.0 / rate)
    } else {
        Duration::ZERO
    };
    let mut lat = Vec::new();
    let mut k = 0u64;
    let mut next = Instant::now();
    while Instant::now() < until {
        f.write_all_at(&page, (k % 64) * 4096)?;
        let t = Instant::now();
        f.sync_data()?;
        lat.push(t.elapsed());
        k += 1;
        next += gap;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        } else {
            next = Instant::now();
        }
    }
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(lat)
}

/// Runs `writers` paced writers in `dir` for `seconds`.
pub fn run(dir: &Path, writers: usize, rate: f64, seconds: f64) -> std::io::Result<FsyncReport> {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..writers.max(1))
        .map(|i| {
            let path = dir.join(format!(".loadgen-fsync-{}-{i}", std::process::id()));
            std::thread::spawn(move || writer(path, rate, until))
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(
            h.join()
                .map_err(|_| std::io::Error::other("fsync writer panicked"))??,
        );
    }
    all.sort();
    Ok(FsyncReport {
        writers: writers.max(1),
        commits: all.len(),
        p50: pct(&all, 0.50),
        p90: pct(&all, 0.90),
        p99: pct(&all, 0.99),
        p999: pct(&all, 0.999),
        max: all.last().copied().unwrap_or_default(),
        over_20ms: all
            .iter()
            .filter(|d| **d > Duration::from_millis(20))
            .count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let v: Vec<Duration> = (1..=1000).map(Duration::from_micros).collect();
        assert_eq!(pct(&v, 0.5), Duration::from_micros(501));
        assert_eq!(pct(&v, 0.99), Duration::from_micros(991));
        assert_eq!(pct(&v, 1.0), Duration::from_micros(1000));
        assert_eq!(pct(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn a_short_run_measures_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let r = run(dir.path(), 2, 200.0, 0.3).unwrap();
        assert_eq!(r.writers, 2);
        // Paced at 200/s for 0.3 s: at most ≈ 60 per writer, at least one each.
        assert!(
            r.commits >= 2 && r.commits <= 2 * 62,
            "{} commits",
            r.commits
        );
        assert!(r.p50 <= r.p99 && r.p99 <= r.max);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
