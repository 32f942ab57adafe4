//! `loadgen`: idle-connection memory and throughput/latency benchmarks (see BENCHMARKS.md),
//! bounded abuse scenarios (see RELIABILITY.md), and a relay with many stored queues (`queues`:
//! create N, restart, time to the first SUB and RSS).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use hush_proto::address::ServerWithAuth;
use loadgen::idle::IdleOptions;
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
    /// Bounded abuse of one server (tnew, snew, stall, new-flood, register, or all) while a
    /// well-behaved client keeps working; servers are spawned from --server-bin-dir.
    Abuse(AbuseArgs),
    /// A relay with many stored queues: create N queues in a relay directory that persists
    /// (SQLite, or PostgreSQL with --postgres), then restart the relay and measure the time from
    /// exec to the first SUB answered and its memory (issue 13).
    Queues(QueuesArgs),
    /// The disk's commit latency: W paced writers rewrite a 4 KiB page and fsync it; prints the
    /// fsync latency distribution (the floor under every durable commit on this disk).
    Fsync(FsyncArgs),
    /// (internal) the child process of `tls-floor`.
    #[command(hide = true)]
    TlsFloorServer {
        #[arg(long, value_enum)]
        variant: Variant,
    },
}

#[derive(Debug, Args)]
struct AbuseArgs {
    /// tnew, snew, stall, new-flood, register, or all (one after the other).
    scenario: String,
    /// Directory with the smp-server, ntf-server, push-server and apns-sink binaries to attack
    /// (e.g. target/release of an older checkout).
    #[arg(long, value_name = "DIR")]
    server_bin_dir: PathBuf,
    /// Label carried into the report (e.g. before, after).
    #[arg(long, default_value = "")]
    label: String,
    /// Settings only the hardened servers know (ignored by older ones: see RELIABILITY.md):
    /// `ntf:[SUBSCRIBER] relay_destinations = loopback`, so that SNEW's loopback relays are
    /// measured against the caps rather than refused by the destination policy.
    #[arg(long)]
    after: bool,
    /// Extra ini setting `<smp|ntf|push>:<SECTION>.<key>=<value>` (repeatable).
    #[arg(long = "set", value_name = "SERVER:SECTION.KEY=VALUE")]
    sets: Vec<String>,
    /// tnew: TNEWs (10000); snew: SNEWs (1000); stall: connections (2000).
    #[arg(long)]
    count: Option<usize>,
    /// Attack time in seconds (tnew 60, snew 30, stall 30, new-flood 20, register 20).
    #[arg(long)]
    duration: Option<f64>,
    /// Attacker connections (floods).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// new-flood: NEWs in flight per connection.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Seconds of the good client alone before the attack.
    #[arg(long, default_value_t = 5.0)]
    baseline: f64,
    /// Seconds after the attack (the "after" phase: lagging effects, recovery); default 30 for
    /// tnew, else 5.
    #[arg(long)]
    tail: Option<f64>,
    /// Pause between the good client's cycles, ms.
    #[arg(long, default_value_t = 200)]
    good_interval_ms: u64,
    /// Source address of the attacker's connections (any 127.0.0.0/8 address).
    #[arg(long, default_value = "127.0.0.2")]
    attacker_ip: std::net::IpAddr,
    /// Relay `[LIMITS] max_connections` (default: stall: the stall count, else 1000).
    #[arg(long)]
    relay_max_connections: Option<usize>,
    /// Directory for the servers' files (default: a new dir under /tmp, removed afterwards).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Append the JSON report lines to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct QueuesArgs {
    /// The smp-server binary (release build).
    #[arg(long, value_name = "PATH")]
    smp_server: PathBuf,
    /// The relay's directory (config, data, sample.txt, relay.log). With --count > 0 it must not
    /// exist yet; with --count 0 it is a directory of an earlier run.
    #[arg(long)]
    dir: PathBuf,
    /// Queues to create (0: use the queues of an earlier run in --dir).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Keep queues in PostgreSQL (`store_queues = database`) at this connection string.
    #[arg(long, value_name = "CONNSTR")]
    postgres: Option<String>,
    /// PostgreSQL schema of the relay.
    #[arg(long, default_value = "loadgen_queues")]
    schema: String,
    /// Drop the schema at the end (DROP SCHEMA … CASCADE).
    #[arg(long)]
    drop_schema: bool,
    /// Connections creating queues.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// NEWs sent together per connection.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Recipient ids kept (and subscribed after each restart).
    #[arg(long, default_value_t = 1000)]
    sample: usize,
    /// Restarts to measure, in order: term (SIGTERM, wait for the exit), kill (SIGKILL).
    #[arg(long, value_delimiter = ',', default_value = "term,kill")]
    restarts: Vec<String>,
    /// Seconds to idle after each start before the last memory reading.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Drop the kernel's page cache before each start (root only): a cold start.
    #[arg(long)]
    drop_caches: bool,
    /// Give up on a start after this many seconds.
    #[arg(long, default_value_t = 600)]
    give_up_secs: u64,
    /// The relay's --log-level.
    #[arg(long, default_value = "info")]
    relay_log_level: String,
}

#[derive(Debug, Args)]
struct FsyncArgs {
    /// Directory on the disk to measure (e.g. the relay's data directory).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Writer threads (e.g. 3 relays, or relay + ntf-server + push-server).
    #[arg(long, default_value_t = 3)]
    writers: usize,
    /// Commits per second per writer (0: back to back).
    #[arg(long, default_value_t = 333.0)]
    rate: f64,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
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
    /// Source addresses of the connections, taken in turn (e.g. 127.0.0.1-127.0.0.4): one
    /// address reaches one relay port from at most the ~28,000 ports of ip_local_port_range.
    #[arg(long, value_name = "IPS")]
    source_ips: Option<String>,
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

/// Raises this process's soft open-files limit to its hard limit (spawned servers inherit it).
#[allow(unsafe_code)] // libc calls, SAFETY below
fn raise_own_nofile() -> (libc::rlim_t, libc::rlim_t) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                r = want;
            }
        }
    }
    (r.rlim_cur, r.rlim_max)
}

/// What `--after` adds (keys only the hardened servers know).
const AFTER_SETS: &[&str] = &["ntf:SUBSCRIBER.relay_destinations=loopback"];

fn abuse(a: &AbuseArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    use loadgen::abuse::{self, AbuseOptions, Scenario, Target, spawn};
    let scenarios: Vec<Scenario> = if a.scenario == "all" {
        Scenario::ALL.to_vec()
    } else {
        vec![Scenario::parse(&a.scenario).with_context(|| {
            format!(
                "unknown scenario {} (tnew, snew, stall, new-flood, register, all)",
                a.scenario
            )
        })?]
    };
    let mut sets = Vec::new();
    if a.after {
        for s in AFTER_SETS {
            sets.push(spawn::IniSet::parse(s).map_err(|e| anyhow::anyhow!("{s}: {e}"))?);
        }
    }
    for s in &a.sets {
        sets.push(spawn::IniSet::parse(s).map_err(|e| anyhow::anyhow!("--set {s}: {e}"))?);
    }
    let (soft, hard) = raise_own_nofile();
    eprintln!("open files: soft {soft}, hard {hard}");
    let bin_dir = a
        .server_bin_dir
        .canonicalize()
        .with_context(|| format!("--server-bin-dir {}", a.server_bin_dir.display()))?;
    let (root, cleanup) = match &a.work_dir {
        Some(d) => (d.clone(), false),
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            (
                std::env::temp_dir().join(format!("loadgen-abuse-{}-{nanos}", std::process::id())),
                true,
            )
        }
    };
    for sc in scenarios {
        let mut o = AbuseOptions::new(sc);
        o.label = a.label.clone();
        if let Some(c) = a.count {
            o.count = c;
        }
        if let Some(d) = a.duration {
            o.duration = Duration::from_secs_f64(d);
        }
        o.connections = a.connections;
        o.in_flight = a.in_flight;
        o.baseline = Duration::from_secs_f64(a.baseline);
        if let Some(t) = a.tail {
            o.tail = Duration::from_secs_f64(t);
        }
        o.good_interval = Duration::from_millis(a.good_interval_ms);
        o.attacker_ip = a.attacker_ip;
        if sc == Scenario::Stall && (soft as usize) < o.count + 256 {
            eprintln!(
                "warning: open-files limit {soft} is below {} (stall connections + margin)",
                o.count + 256
            );
        }
        let dir = root.join(sc.name());
        std::fs::create_dir_all(&dir)?;
        let mut procs: Vec<spawn::ServerProc> = Vec::new();
        let target = match sc {
            Scenario::Stall | Scenario::NewFlood => {
                let maxc = a.relay_max_connections.unwrap_or(if sc == Scenario::Stall {
                    o.count
                } else {
                    1000
                });
                let r = spawn::relay(&bin_dir, &dir.join("relay"), maxc, &sets)?;
                eprintln!(
                    "{}: smp-server pid {} on {} (max_connections {maxc})",
                    sc.name(),
                    r.proc.pid(),
                    r.addr
                );
                let t = Target::Relay(abuse::RelayTarget {
                    server: r.server.clone(),
                    addr: r.addr,
                    pid: r.proc.pid(),
                    data_dir: Some(r.dir.join("data")),
                });
                procs.push(r.proc);
                t
            }
            Scenario::Tnew | Scenario::Snew => {
                let p = spawn::push_stack(&bin_dir, &dir, &sets)?;
                let n = spawn::ntf(&bin_dir, &dir, &p, &sets)?;
                // The relay of the second good client (an existing device getting pushes).
                let r = spawn::relay(&bin_dir, &dir.join("relay"), 1000, &sets)?;
                eprintln!(
                    "{}: ntf-server pid {} on {}, push-server pid {}, apns-sink pid {}, smp-server pid {}",
                    sc.name(),
                    n.proc.pid(),
                    n.addr,
                    p.push.pid(),
                    p.sink.pid(),
                    r.proc.pid()
                );
                let t = Target::Ntf(abuse::NtfTarget {
                    addr: n.addr,
                    key_hash: n.key_hash,
                    pid: n.proc.pid(),
                    sink_read: p.sink_read,
                    data_dir: Some(n.dir.join("data")),
                    relay: Some(r.server.clone()),
                });
                procs.extend([n.proc, p.push, p.sink, r.proc]);
                t
            }
            Scenario::Register => {
                let p = spawn::push_stack(&bin_dir, &dir, &sets)?;
                eprintln!(
                    "{}: push-server pid {} on {}, apns-sink pid {}",
                    sc.name(),
                    p.push.pid(),
                    p.push_addr,
                    p.sink.pid()
                );
                let t = Target::Push(abuse::PushTarget {
                    addr: p.push_addr,
                    fingerprint: p.push_fingerprint,
                    credential: p.credential.clone(),
                    pid: p.push.pid(),
                    sink_read: p.sink_read,
                    data_dir: Some(p.dir.clone()),
                });
                procs.extend([p.push, p.sink]);
                t
            }
        };
        let mut report = rt.block_on(abuse::run(&o, &target))?;
        for p in procs.iter_mut() {
            if let Some(st) = p.exit_status() {
                report.process_alive &= p.name != sc.server();
                report
                    .notes
                    .push(format!("{} exited: {st} (log {})", p.name, p.log.display()));
            } else if p.name != sc.server()
                && let Some(m) = p.mem()
            {
                report.attack.insert(
                    format!("{}_peak_rss_kb", p.name.replace('-', "_")),
                    serde_json::json!(m.vm_hwm_kb),
                );
            }
        }
        for mut p in procs {
            p.stop();
        }
        println!("{}", report.summary());
        let line = report.to_json().to_string();
        println!("{line}");
        if let Some(f) = &a.json_out {
            use std::io::Write as _;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)?;
            writeln!(file, "{line}")?;
        }
    }
    if cleanup {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(())
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

#[allow(unsafe_code)] // libc calls, SAFETY below
fn drop_page_cache() {
    // SAFETY: sync(2) has no arguments.
    unsafe { libc::sync() };
    match std::fs::write("/proc/sys/vm/drop_caches", "3\n") {
        Ok(()) => eprintln!("page cache dropped"),
        Err(e) => eprintln!("warning: cannot drop the page cache: {e}"),
    }
}

fn queues(a: &QueuesArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    use loadgen::queues::{self, Backend, CreateOptions, RelayHome, Sample};
    let backend = match &a.postgres {
        Some(url) => Backend::Postgres {
            url: url.clone(),
            schema: a.schema.clone(),
        },
        None => Backend::Sqlite,
    };
    let home = RelayHome {
        binary: a.smp_server.clone(),
        dir: a.dir.clone(),
        backend: backend.clone(),
        log_level: a.relay_log_level.clone(),
    };
    if a.schema.is_empty()
        || !a
            .schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!("--schema: lowercase letters, digits and _ only");
    }
    let store_name = match &backend {
        Backend::Sqlite => "SQLite".to_string(),
        Backend::Postgres { schema, .. } => format!("PostgreSQL, schema {schema}"),
    };
    let signals = a
        .restarts
        .iter()
        .map(|r| match r.as_str() {
            "term" => Ok((libc::SIGTERM, "SIGTERM")),
            "kill" => Ok((libc::SIGKILL, "SIGKILL")),
            _ => bail!("--restarts: term or kill, not {r}"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let give_up = Duration::from_secs(a.give_up_secs);
    let idle = (a.idle_secs > 0).then(|| Duration::from_secs(a.idle_secs));
    println!(
        "queues: relay in {} ({store_name}); load average {}",
        a.dir.display(),
        load_avg()
    );
    let mut relay = if a.count > 0 {
        if a.dir.exists() {
            bail!(
                "{} exists: give a new directory with --count > 0",
                a.dir.display()
            );
        }
        if let Backend::Postgres { url, schema } = &backend {
            let n = queues::psql(
                url,
                &format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'"),
            )?;
            if n.trim() != "0" {
                bail!("schema {schema} exists already: drop it or use another --schema");
            }
        }
        let port = queues::free_port()?;
        let server = home.init(port, a.connections + 1000)?;
        let mut relay = home.exec()?;
        let started = std::time::Instant::now();
        while relay.listening_after().is_none() {
            if !relay.alive() || started.elapsed() > give_up {
                bail!(
                    "the relay did not start (see {})",
                    home.log_file().display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let seed: [u8; 32] = rand::random();
        let mut sample = Sample {
            server: server.to_string(),
            created: 0,
            seed,
            rcv_ids: Vec::new(),
        };
        eprintln!(
            "creating {} queues on {} connections, {} NEWs per block (relay pid {})",
            a.count,
            a.connections,
            a.window,
            relay.pid()
        );
        let opts = CreateOptions {
            server,
            count: a.count,
            connections: a.connections,
            window: a.window,
            sample: a.sample,
            progress: true,
        };
        let report = rt.block_on(queues::create_queues(&opts, &sample.key()))?;
        sample.created = report.created;
        sample.rcv_ids = report.sample;
        sample.save(&home.sample_file())?;
        let mem = procfs::mem_status(relay.pid())?;
        println!(
            "created {} queues in {:.1} s ({:.0}/s; {} retried failures {:?}); relay then VmRSS {} kB, VmHWM {} kB; load average {}",
            report.created,
            report.elapsed.as_secs_f64(),
            report.created as f64 / report.elapsed.as_secs_f64(),
            report.errors.values().sum::<u64>(),
            report.errors,
            mem.vm_rss_kb,
            mem.vm_hwm_kb,
            load_avg()
        );
        relay
    } else {
        let sample = Sample::load(&home.sample_file())?;
        println!(
            "starting the relay of an earlier run ({} queues)",
            sample.created
        );
        if a.drop_caches {
            drop_page_cache();
        }
        let mut relay = home.exec()?;
        let r = rt.block_on(queues::measure_start(&mut relay, &sample, idle, give_up))?;
        print!("{}", r.render("start"));
        relay
    };
    let sample = Sample::load(&home.sample_file())?;
    println!(
        "store size: {:.1} MB ({} queues, sample of {})",
        home.db_size()? as f64 / 1e6,
        sample.created,
        sample.rcv_ids.len()
    );
    for (sig, name) in signals {
        let stopped = relay.stop(sig);
        println!("{name}: the relay exited in {:.3} s", stopped.as_secs_f64());
        drop(relay);
        if a.drop_caches {
            drop_page_cache();
        }
        let load = load_avg();
        relay = home.exec()?;
        let r = rt.block_on(queues::measure_start(&mut relay, &sample, idle, give_up))?;
        print!(
            "{}",
            r.render(&format!("restart after {name} (load average {load})"))
        );
    }
    let stopped = relay.stop(libc::SIGTERM);
    println!("stopped (SIGTERM) in {:.3} s", stopped.as_secs_f64());
    println!(
        "store size: {:.1} MB; load average {}",
        home.db_size()? as f64 / 1e6,
        load_avg()
    );
    if a.drop_schema
        && let Backend::Postgres { url, schema } = &backend
    {
        queues::psql(url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))?;
        println!("schema {schema} dropped");
    }
    Ok(())
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
        Cmd::Abuse(a) => abuse(&a, &rt)?,
        Cmd::Queues(a) => queues(&a, &rt)?,
        Cmd::Fsync(a) => {
            let r = loadgen::fsync::run(&a.dir, a.writers, a.rate, a.seconds)?;
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            println!(
                "| writers | rate/writer | commits | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | > 20 ms |"
            );
            println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            println!(
                "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {} |",
                r.writers,
                a.rate,
                r.commits,
                ms(r.p50),
                ms(r.p90),
                ms(r.p99),
                ms(r.p999),
                ms(r.max),
                r.over_20ms
            );
        }
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
            let sources = match &a.source_ips {
                Some(t) => loadgen::idle::parse_sources(t)
                    .map_err(|e| anyhow::anyhow!("--source-ips: {e}"))?,
                None => Vec::new(),
            };
            let report = rt.block_on(loadgen::idle::run_idle_from(&opts, &sources))?;
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
