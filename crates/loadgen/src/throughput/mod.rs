//! `loadgen throughput`: the same closed-loop pattern against the hush relay, Mosquitto and NATS.
//!
//! Pattern (per system, per payload size): M pairs; pair i has a subscriber connection on its own
//! queue / topic / subject and a sender connection publishing to it. Each pair keeps at most W
//! messages in flight end to end (a permit is taken before a send and returned when the
//! subscriber receives the message), so no system is measured while silently dropping or
//! piling up messages. Every payload starts with the send time (ns since the run's origin, LE);
//! the subscriber records `receive time − send time`. After a warm-up, messages received during
//! the measurement window are counted (messages/s) and their latencies give p50/p99.

pub mod hush;
pub mod mqtt;
pub mod nats;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hush_proto::address::ServerWithAuth;
use tokio::sync::watch;

use crate::LoadError;

/// Bytes of the timestamp at the start of every payload.
pub const STAMP_LEN: usize = 8;

#[derive(Clone, Debug)]
pub struct ThroughputOptions {
    /// The hush relay (`None`: skip).
    pub hush: Option<ServerWithAuth>,
    /// Pids of the relay / Mosquitto / NATS, to report their CPU time per message.
    pub hush_pid: Option<u32>,
    pub mqtt_pid: Option<u32>,
    pub nats_pid: Option<u32>,
    /// How the relay stores messages, for the guarantees column (e.g. "SQLite, sync=full").
    pub hush_store: String,
    /// Mosquitto `host:port` (`None`: skip).
    pub mqtt: Option<String>,
    /// NATS `host:port` (`None`: skip).
    pub nats: Option<String>,
    /// Sender → subscriber pairs.
    pub pairs: usize,
    /// Messages in flight per pair.
    pub window: usize,
    /// Payload sizes in bytes (each ≥ 8).
    pub sizes: Vec<usize>,
    pub warmup: Duration,
    pub duration: Duration,
}

/// The measurement clock and window shared by every task of one run.
#[derive(Clone, Debug)]
pub struct Clock {
    origin: Instant,
    start: Duration,
    end: Duration,
}

impl Clock {
    pub fn new(warmup: Duration, duration: Duration) -> Clock {
        Clock {
            origin: Instant::now(),
            start: warmup,
            end: warmup + duration,
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// A payload of `size` bytes stamped with the current time.
    pub fn payload(&self, size: usize) -> Vec<u8> {
        let mut p = vec![0u8; size.max(STAMP_LEN)];
        p[..STAMP_LEN].copy_from_slice(&self.now_ns().to_le_bytes());
        p
    }
}

/// What one subscriber saw during the measurement window.
#[derive(Debug, Default)]
pub struct Samples {
    /// Latencies (ns) of messages received inside the window.
    pub latencies_ns: Vec<u64>,
    /// Every message received (warm-up included).
    pub received_total: u64,
}

impl Samples {
    /// Records a received payload (its stamp) at the current time.
    pub fn record(&mut self, clock: &Clock, payload: &[u8]) -> Result<(), LoadError> {
        let stamp: [u8; STAMP_LEN] = payload
            .get(..STAMP_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| LoadError::proto("payload", "shorter than the timestamp"))?;
        let sent = u64::from_le_bytes(stamp);
        let now = clock.now_ns();
        self.received_total += 1;
        let in_window = now >= clock.start.as_nanos() as u64 && now < clock.end.as_nanos() as u64;
        if in_window {
            self.latencies_ns.push(now.saturating_sub(sent));
        }
        Ok(())
    }
}

/// Result of one system at one payload size.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub system: &'static str,
    pub guarantees: String,
    pub size: usize,
    pub messages: usize,
    pub secs: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// CPU time of the server process during the window, per message (µs).
    pub server_cpu_us_per_msg: Option<f64>,
    /// CPU time of this process (all clients) during the window, per message (µs).
    pub client_cpu_us_per_msg: Option<f64>,
}

/// CPU time used during the measurement window.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuWindow {
    pub server: Option<Duration>,
    pub client: Option<Duration>,
}

impl RunResult {
    pub fn msgs_per_sec(&self) -> f64 {
        self.messages as f64 / self.secs.max(1e-9)
    }

    fn from_samples(
        system: &'static str,
        guarantees: String,
        size: usize,
        clock: &Clock,
        samples: Vec<Samples>,
        cpu: CpuWindow,
    ) -> RunResult {
        let mut lat: Vec<u64> = samples.into_iter().flat_map(|s| s.latencies_ns).collect();
        lat.sort_unstable();
        let per_msg = |d: Option<Duration>| {
            d.filter(|_| !lat.is_empty())
                .map(|d| d.as_secs_f64() * 1e6 / lat.len() as f64)
        };
        RunResult {
            server_cpu_us_per_msg: per_msg(cpu.server),
            client_cpu_us_per_msg: per_msg(cpu.client),
            system,
            guarantees,
            size,
            messages: lat.len(),
            secs: (clock.end - clock.start).as_secs_f64(),
            p50_us: percentile(&lat, 50.0) / 1000.0,
            p99_us: percentile(&lat, 99.0) / 1000.0,
            max_us: lat.last().copied().unwrap_or(0) as f64 / 1000.0,
        }
    }
}

/// Nearest-rank percentile of sorted values (0 for none).
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64
}

/// A stop signal for the tasks of one run.
pub type Stop = watch::Receiver<bool>;

pub(crate) async fn stopped(stop: &mut Stop) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Waits for the window to end (reading the CPU time of `server_pid` and of this process at
/// its start and end), then stops the tasks and gathers their samples.
pub(crate) async fn finish(
    clock: &Clock,
    server_pid: Option<u32>,
    stop_tx: watch::Sender<bool>,
    receivers: Vec<tokio::task::JoinHandle<Result<Samples, LoadError>>>,
    senders: Vec<tokio::task::JoinHandle<Result<(), LoadError>>>,
) -> Result<(Vec<Samples>, CpuWindow), LoadError> {
    let me = std::process::id();
    let cpu = |pid: Option<u32>| pid.and_then(|p| crate::procfs::cpu_time(p).ok());
    tokio::time::sleep_until((clock.origin + clock.start).into()).await;
    let (server0, client0) = (cpu(server_pid), cpu(Some(me)));
    tokio::time::sleep_until((clock.origin + clock.end).into()).await;
    let (server1, client1) = (cpu(server_pid), cpu(Some(me)));
    let _ = stop_tx.send(true);
    let window = CpuWindow {
        server: server0.zip(server1).map(|(a, b)| b.saturating_sub(a)),
        client: client0.zip(client1).map(|(a, b)| b.saturating_sub(a)),
    };
    let mut first_err = None;
    for s in senders {
        match tokio::time::timeout(Duration::from_secs(30), s).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => first_err = first_err.or(Some(e)),
            Ok(Err(e)) => first_err = first_err.or(Some(LoadError::Relay(format!("task: {e}")))),
            Err(_) => first_err = first_err.or(Some(LoadError::Timeout("sender did not stop"))),
        }
    }
    let mut out = Vec::new();
    for r in receivers {
        match tokio::time::timeout(Duration::from_secs(30), r).await {
            Ok(Ok(Ok(s))) => out.push(s),
            Ok(Ok(Err(e))) => first_err = first_err.or(Some(e)),
            Ok(Err(e)) => first_err = first_err.or(Some(LoadError::Relay(format!("task: {e}")))),
            Err(_) => first_err = first_err.or(Some(LoadError::Timeout("receiver did not stop"))),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok((out, window)),
    }
}

/// A unique prefix for topics / subjects of this run.
pub(crate) fn run_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{}", std::process::id(), nanos % 1_000_000_000_000)
}

/// Runs every configured system at every size (sizes outer, systems inner, so that the figures
/// of one size are taken close together).
pub async fn run_all(opts: &ThroughputOptions) -> Result<Vec<RunResult>, LoadError> {
    let mut results = Vec::new();
    for &size in &opts.sizes {
        if let Some(server) = &opts.hush {
            results.push(hush::run(Arc::new(server.clone()), opts, size).await?);
        }
        if let Some(addr) = &opts.mqtt {
            results.push(mqtt::run(addr, opts, size).await?);
        }
        if let Some(addr) = &opts.nats {
            results.push(nats::run(addr, opts, size).await?);
        }
    }
    Ok(results)
}

fn cpu_cell(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 10.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "–".into(),
    }
}

/// `1.00×`, `27.8×`, `0.042×`: three significant digits.
pub fn ratio(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}×")
    } else if x >= 10.0 {
        format!("{x:.1}×")
    } else if x >= 1.0 {
        format!("{x:.2}×")
    } else {
        format!("{x:.3}×")
    }
}

/// A markdown table of the results, with ratios against hush at the same size.
pub fn render_table(results: &[RunResult]) -> String {
    let mut s = String::new();
    s.push_str("| payload | system | guarantees | msgs/s | p50 µs | p99 µs | max µs | server CPU µs/msg | client CPU µs/msg | msgs/s ÷ hush | p50 ÷ hush |\n");
    s.push_str("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in results {
        let base = results
            .iter()
            .find(|b| b.size == r.size && b.system == hush::SYSTEM);
        let (tr, lr) = match base {
            Some(b) if b.messages > 0 && r.messages > 0 => (
                ratio(r.msgs_per_sec() / b.msgs_per_sec()),
                ratio(r.p50_us / b.p50_us.max(1e-9)),
            ),
            _ => ("–".into(), "–".into()),
        };
        let _ = writeln!(
            s,
            "| {} B | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} |",
            r.size,
            r.system,
            r.guarantees,
            r.msgs_per_sec(),
            r.p50_us,
            r.p99_us,
            r.max_us,
            cpu_cell(r.server_cpu_us_per_msg),
            cpu_cell(r.client_cpu_us_per_msg),
            tr,
            lr
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn ratios_keep_three_digits() {
        assert_eq!(ratio(1.0), "1.00×");
        assert_eq!(ratio(27.77), "27.8×");
        assert_eq!(ratio(205.3), "205×");
        assert_eq!(ratio(0.0421), "0.042×");
    }

    #[test]
    fn samples_count_only_inside_the_window() {
        let clock = Clock::new(Duration::from_millis(30), Duration::from_secs(60));
        let mut s = Samples::default();
        let early = clock.payload(16);
        s.record(&clock, &early).unwrap();
        assert_eq!((s.received_total, s.latencies_ns.len()), (1, 0));
        std::thread::sleep(Duration::from_millis(40));
        let p = clock.payload(16);
        std::thread::sleep(Duration::from_millis(2));
        s.record(&clock, &p).unwrap();
        assert_eq!((s.received_total, s.latencies_ns.len()), (2, 1));
        assert!(s.latencies_ns[0] >= 2_000_000);
        assert!(s.record(&clock, &[1, 2, 3]).is_err());
    }
}
