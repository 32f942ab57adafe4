//! `loadgen`: idle-connection memory and throughput/latency benchmarks (see BENCHMARKS.md).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use hush_proto::address::ServerWithAuth;
use loadgen::idle::{IdleOptions, run_idle};
use loadgen::procfs;
use loadgen::relay::{RelaySpawn, SpawnedRelay};
use loadgen::throughput::{ThroughputOptions, render_table, run_all};
use loadgen::tlsfloor::Variant;

#[derive(Debug, Parser)]
#[command(name = "loadgen", about = "hush load generator and benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// N idle TLS connections, each creating and subscribing queues; prints the relay's RSS
    /// growth per connection.
    Idle(IdleArgs),
    /// Messages/s and end-to-end latency: hush relay, Mosquitto and NATS, same pattern, one run.
    Throughput(ThroughputArgs),
    /// OpenSSL's own memory per idle server-side TLS 1.3 connection (hush settings and variants),
    /// measured in a child process against a plain-TCP baseline.
    TlsFloor(TlsFloorArgs),
    /// (internal) the child process of `tls-floor`.
    #[command(hide = true)]
    TlsFloorServer {
        #[arg(long, value_enum)]
        variant: Variant,
    },
}

#[derive(Debug, Args)]
struct TlsFloorArgs {
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "tcp,hush,no-client-cert,aes,keep-buffers"
    )]
    variants: Vec<Variant>,
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// Seconds between the last connection and the reading.
    #[arg(long, default_value_t = 3)]
    settle: u64,
}

#[derive(Debug, Args)]
struct RelayArgs {
    /// Address of a running relay (smp://fingerprint[:password]@host:port).
    #[arg(long, conflicts_with = "spawn_relay")]
    relay: Option<String>,
    /// Start this smp-server binary (release build) in a fresh directory and use it.
    #[arg(long, value_name = "PATH")]
    spawn_relay: Option<PathBuf>,
    /// Directory for the spawned relay's config and data (default: a new dir under /tmp,
    /// removed afterwards).
    #[arg(long)]
    relay_dir: Option<PathBuf>,
    /// Spawned relay: keep queues in memory only ([STORE_LOG] enable = off).
    #[arg(long)]
    memory_store: bool,
    /// Spawned relay: --log-level.
    #[arg(long, default_value = "warn")]
    relay_log_level: String,
}

#[derive(Debug, Args)]
struct IdleArgs {
    #[command(flatten)]
    relay: RelayArgs,
    /// Pid of the relay given with --relay, to read its memory.
    #[arg(long)]
    relay_pid: Option<u32>,
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    #[arg(long, default_value_t = 1)]
    queues_per_conn: usize,
    /// Connections opened at the same time.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to wait after the last SUB before the settled reading.
    #[arg(long, default_value_t = 10)]
    settle: u64,
}

#[derive(Debug, Args)]
struct ThroughputArgs {
    #[command(flatten)]
    relay: RelayArgs,
    /// Mosquitto address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// NATS address.
    #[arg(long, default_value = "127.0.0.1:4222")]
    nats: String,
    /// Mosquitto's pid (e.g. `$(pidof mosquitto)`), to report its CPU time per message.
    #[arg(long)]
    mqtt_pid: Option<u32>,
    /// NATS's pid (e.g. `$(pidof nats-server)`), to report its CPU time per message.
    #[arg(long)]
    nats_pid: Option<u32>,
    /// Pid of the relay given with --relay, to report its CPU time per message.
    #[arg(long)]
    relay_pid: Option<u32>,
    /// Systems to leave out (hush, mqtt, nats).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Sender → subscriber pairs.
    #[arg(long, default_value_t = 8)]
    pairs: usize,
    /// Messages in flight per pair (end to end).
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Payload sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "256,4096")]
    sizes: Vec<usize>,
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    #[arg(long, default_value_t = 10)]
    duration: u64,
}

/// The relay to use: the spawned process (kept alive by the guard) or the given address.
struct RelayTarget {
    server: ServerWithAuth,
    pid: Option<u32>,
    _spawned: Option<SpawnedRelay>,
    cleanup: Option<PathBuf>,
}

impl Drop for RelayTarget {
    fn drop(&mut self) {
        if let Some(mut s) = self._spawned.take() {
            s.stop();
        }
        if let Some(d) = &self.cleanup {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn relay_target(a: &RelayArgs, max_connections: usize) -> anyhow::Result<RelayTarget> {
    match (&a.relay, &a.spawn_relay) {
        (Some(r), None) => Ok(RelayTarget {
            server: ServerWithAuth::parse(r).map_err(|e| anyhow::anyhow!("--relay: {e}"))?,
            pid: None,
            _spawned: None,
            cleanup: None,
        }),
        (None, Some(bin)) => {
            let (dir, cleanup) = match &a.relay_dir {
                Some(d) => (d.clone(), None),
                None => {
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or(0);
                    let d = std::env::temp_dir()
                        .join(format!("loadgen-relay-{}-{nanos}", std::process::id()));
                    (d.clone(), Some(d))
                }
            };
            let spawned = SpawnedRelay::start(&RelaySpawn {
                binary: bin.clone(),
                dir: dir.clone(),
                max_connections,
                store_log: !a.memory_store,
                log_level: a.relay_log_level.clone(),
            })
            .context("starting the relay")?;
            eprintln!(
                "relay: {} pid {} ({}, data in {})",
                spawned.addr,
                spawned.pid(),
                if a.memory_store {
                    "memory store"
                } else {
                    "SQLite store"
                },
                dir.display()
            );
            Ok(RelayTarget {
                server: spawned.server.clone(),
                pid: Some(spawned.pid()),
                _spawned: Some(spawned),
                cleanup,
            })
        }
        _ => bail!("give --relay <address> or --spawn-relay <smp-server binary>"),
    }
}

/// Machine description for the report.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
        })
        .unwrap_or_else(|| "?".into());
    format!("{cores} cores, {cpu}, MemTotal {mem} kB")
}

/// Raises the soft open-files limit of `pid` towards `need` (up to its hard limit) with
/// `prlimit` (util-linux; an unprivileged process may raise its soft limit up to the hard one).
fn raise_fd_limit(pid: u32, need: usize) {
    let Ok((Some(soft), hard)) = procfs::fd_limit(pid) else {
        return;
    };
    if soft as usize >= need {
        return;
    }
    let target = match hard {
        Some(h) => h.min(need as u64).max(soft),
        None => need as u64,
    };
    let hard_text = hard
        .map(|h| h.to_string())
        .unwrap_or_else(|| "unlimited".into());
    let ok = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--nofile={target}:{hard_text}"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        eprintln!("raised the open-files limit of pid {pid} from {soft} to {target}");
    }
}

/// Raises this process's fd limit (a spawned relay inherits it) and warns when it stays short.
fn check_fds(need: usize) {
    let me = std::process::id();
    raise_fd_limit(me, need);
    if let Ok((Some(soft), hard)) = procfs::fd_limit(me)
        && (soft as usize) < need
    {
        eprintln!(
            "warning: this process may open only {soft} files (hard limit {}); about {need} are needed: raise the hard limit (`ulimit -Hn`, as root) first",
            hard.map(|h| h.to_string())
                .unwrap_or_else(|| "unlimited".into())
        );
    }
    if let Some(max) = procfs::file_max()
        && (max as usize) < 2 * need
    {
        eprintln!(
            "warning: /proc/sys/fs/file-max is {max}; both processes need about {}",
            2 * need
        );
    }
}

/// One `tls-floor` variant: (RSS before, RSS after, kB per connection) of the child server.
async fn tls_floor_one(v: Variant, n: usize, settle: u64) -> anyhow::Result<(u64, u64, f64)> {
    use std::io::BufRead;
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .arg("tls-floor-server")
        .arg("--variant")
        .arg(
            clap::ValueEnum::to_possible_value(&v)
                .map(|p| p.get_name().to_string())
                .unwrap_or_default(),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let result = async {
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let addr: std::net::SocketAddr = loop {
            let line = lines.next().context("server exited")??;
            if let Some(a) = line.strip_prefix("Listening on ") {
                break a.trim().parse()?;
            }
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Warm-up: one connection (lazily built library state), then the baseline.
        let warm = loadgen::tlsfloor::open_clients(addr, v, 1).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = procfs::mem_status(pid)?.vm_rss_kb;
        let conns = loadgen::tlsfloor::open_clients(addr, v, n).await?;
        tokio::time::sleep(Duration::from_secs(settle)).await;
        let after = procfs::mem_status(pid)?.vm_rss_kb;
        drop(conns);
        drop(warm);
        anyhow::Ok((
            before,
            after,
            (after as f64 - before as f64) / n.max(1) as f64,
        ))
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Cmd::TlsFloorServer { variant } = cli.command {
        return rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            println!("Listening on {}", l.local_addr()?);
            loadgen::tlsfloor::serve(l, variant).await?;
            Ok(())
        });
    }
    println!("machine: {}", machine());
    match cli.command {
        Cmd::TlsFloorServer { .. } => {}
        Cmd::TlsFloor(a) => {
            check_fds(a.connections + 64);
            println!(
                "| variant | connections | server VmRSS before kB | after kB | kB / connection | minus tcp |"
            );
            println!("|---|---:|---:|---:|---:|---:|");
            let mut tcp_per = None;
            for v in &a.variants {
                let per = rt.block_on(tls_floor_one(*v, a.connections, a.settle))?;
                if *v == Variant::Tcp {
                    tcp_per = Some(per.2);
                }
                println!(
                    "| {v:?} | {} | {} | {} | {:.2} | {} |",
                    a.connections,
                    per.0,
                    per.1,
                    per.2,
                    tcp_per
                        .filter(|_| *v != Variant::Tcp)
                        .map(|t| format!("{:.2}", per.2 - t))
                        .unwrap_or_else(|| "–".into())
                );
            }
        }
        Cmd::Idle(a) => {
            let need = a.connections + 64;
            check_fds(need);
            let target = relay_target(&a.relay, a.connections + 100)?;
            let pid = a.relay_pid.or(target.pid);
            if let Some(p) = pid {
                raise_fd_limit(p, need);
                if let Ok((Some(soft), _)) = procfs::fd_limit(p)
                    && (soft as usize) < need
                {
                    eprintln!("warning: the relay (pid {p}) may open only {soft} files");
                }
            } else {
                eprintln!("no relay pid: connecting only, no memory figures (give --relay-pid)");
            }
            let opts = IdleOptions {
                server: target.server.clone(),
                relay_pid: pid,
                connections: a.connections,
                queues_per_conn: a.queues_per_conn,
                concurrency: a.concurrency,
                settle: Duration::from_secs(a.settle),
                progress: true,
            };
            let report = rt.block_on(run_idle(&opts))?;
            print!("{}", report.render());
            drop(target);
        }
        Cmd::Throughput(a) => {
            let skip = |s: &str| a.skip.iter().any(|x| x == s);
            let target = if skip("hush") {
                None
            } else {
                Some(relay_target(&a.relay, 1000)?)
            };
            let opts = ThroughputOptions {
                hush: target.as_ref().map(|t| t.server.clone()),
                hush_pid: a.relay_pid.or(target.as_ref().and_then(|t| t.pid)),
                mqtt_pid: a.mqtt_pid,
                nats_pid: a.nats_pid,
                hush_store: match (&a.relay.spawn_relay, a.relay.memory_store) {
                    (Some(_), true) => "memory only".into(),
                    (Some(_), false) => "SQLite, sync=full".into(),
                    (None, _) => "as configured".into(),
                },
                mqtt: (!skip("mqtt")).then(|| a.mqtt.clone()),
                nats: (!skip("nats")).then(|| a.nats.clone()),
                pairs: a.pairs,
                window: a.window,
                sizes: a.sizes.clone(),
                warmup: Duration::from_secs(a.warmup),
                duration: Duration::from_secs(a.duration),
            };
            println!(
                "throughput: {} pairs, window {} per pair, warm-up {} s, measured {} s",
                a.pairs, a.window, a.warmup, a.duration
            );
            let results = rt.block_on(run_all(&opts))?;
            print!("{}", render_table(&results));
            drop(target);
        }
    }
    Ok(())
}
