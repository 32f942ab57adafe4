//! `loadgen queues`: a relay with many stored queues (issue 13). Creates N queues on a relay
//! kept in its own directory (SQLite, or PostgreSQL with `--postgres`), saves a sample of
//! recipient ids with the key that authorizes them, then restarts the relay (SIGTERM or SIGKILL)
//! and measures the time from `exec` to the first `SUB` answered and the relay's memory.
//!
//! Speed: every `NEW` is signed with the **same** recipient Ed25519 key and carries the same
//! recipient DH key. The protocol allows it (the relay stores the key with each queue and does
//! not look for other queues with it; the relay's own DH key and the ids are fresh per queue),
//! and the key has to be saved once only: its 32-byte seed goes into the sample file. Commands
//! are pipelined (`window` `NEW`s per block) over many connections: a connection's commands run
//! one after another, so concurrent connections are what fills the store's group commits.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use hush_client::keys::new_dh_key;
use hush_client::{AuthKey, ClientConfig, Request, SmpClient, TlsConnector};
use hush_crypto::keys::Ed25519Secret;
use hush_proto::address::ServerWithAuth;
use hush_proto::encoding::{base64url_decode, base64url_encode};
use hush_proto::smp::{BrokerMsg, Command, NewQueueReq, QueueReqData, SubscriptionMode};
use smp_server::ServerPaths;
use smp_server::init::{InitOptions, PasswordChoice};

use crate::LoadError;
use crate::procfs::{MemStatus, mem_status};
use crate::relay::rewrite_ini;

// ---------------------------------------------------------------------------------------------
// Progress bar

/// Estimated time left at the average rate so far (`None` before anything was done).
pub fn eta(done: u64, total: u64, elapsed: Duration) -> Option<Duration> {
    if done == 0 || elapsed.is_zero() {
        return None;
    }
    let left = total.saturating_sub(done) as f64;
    let rate = done as f64 / elapsed.as_secs_f64();
    Some(Duration::from_secs_f64(left / rate))
}

/// `1h02m03s`, `4m05s`, `12s`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// One progress line: `[=====>    ]  45.2 %  452000/1000000  5234/s  ETA 1m45s`.
pub fn progress_line(done: u64, total: u64, elapsed: Duration, width: usize) -> String {
    let frac = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).min(1.0)
    };
    let filled = ((frac * width as f64) as usize).min(width);
    let mut bar = "=".repeat(filled);
    if filled < width {
        bar.push('>');
        bar.push_str(&" ".repeat(width - filled - 1));
    }
    let rate = if elapsed.is_zero() {
        0.0
    } else {
        done as f64 / elapsed.as_secs_f64()
    };
    let eta = match eta(done, total, elapsed) {
        Some(d) => fmt_duration(d),
        None => "?".into(),
    };
    format!(
        "[{bar}] {:5.1} %  {done}/{total}  {rate:.0}/s  ETA {eta}",
        frac * 100.0
    )
}

/// Prints [`progress_line`] to stderr every `every` until dropped: rewritten in place on a
/// terminal, one line each 10 s otherwise (logs).
pub struct ProgressBar {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressBar {
    pub fn start(done: Arc<AtomicU64>, total: u64, started: Instant) -> ProgressBar {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let tty = std::io::stderr().is_terminal();
        let thread = std::thread::spawn(move || {
            let every = if tty {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(10)
            };
            let mut last = Instant::now();
            loop {
                let finished = s.load(Ordering::Relaxed);
                if finished || last.elapsed() >= every {
                    last = Instant::now();
                    let line =
                        progress_line(done.load(Ordering::Relaxed), total, started.elapsed(), 30);
                    let mut e = std::io::stderr().lock();
                    if tty {
                        let _ = write!(e, "\r{line}\x1b[K");
                        if finished {
                            let _ = writeln!(e);
                        }
                    } else {
                        let _ = writeln!(e, "{line}");
                    }
                    let _ = e.flush();
                }
                if finished {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        ProgressBar {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ProgressBar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sample file

/// What is kept to `SUB` queues later: the relay address, the recipient key's seed (one key for
/// every queue), and a sample of recipient ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// `smp://fingerprint@host:port`.
    pub server: String,
    /// Queues created on the relay in total (for the report).
    pub created: u64,
    /// Ed25519 seed of the recipient key.
    pub seed: [u8; 32],
    pub rcv_ids: Vec<Vec<u8>>,
}

const SAMPLE_HEADER: &str = "# loadgen queues sample v1";

impl Sample {
    pub fn key(&self) -> AuthKey {
        AuthKey::Ed25519(Ed25519Secret::from_seed(&self.seed))
    }

    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{SAMPLE_HEADER}\nserver {}\ncreated {}\nseed {}\n",
            self.server,
            self.created,
            hex::encode(self.seed)
        );
        for id in &self.rcv_ids {
            s.push_str("rcv ");
            s.push_str(&base64url_encode(id));
            s.push('\n');
        }
        s
    }

    pub fn parse(text: &str) -> Result<Sample, String> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, l)) if l.trim() == SAMPLE_HEADER => {}
            _ => return Err(format!("first line must be `{SAMPLE_HEADER}`")),
        }
        let (mut server, mut created, mut seed) = (None, None, None);
        let mut rcv_ids = Vec::new();
        for (i, line) in lines {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once(' ')
                .ok_or_else(|| format!("line {n}: expected `<key> <value>`"))?;
            match k {
                "server" => server = Some(v.to_string()),
                "created" => {
                    created = Some(v.parse().map_err(|_| format!("line {n}: bad count"))?);
                }
                "seed" => {
                    let b = hex::decode(v).map_err(|_| format!("line {n}: bad hex"))?;
                    seed = Some(
                        <[u8; 32]>::try_from(b.as_slice())
                            .map_err(|_| format!("line {n}: seed must be 32 bytes"))?,
                    );
                }
                "rcv" => {
                    let id = base64url_decode(v).map_err(|_| format!("line {n}: bad base64url"))?;
                    if id.is_empty() || id.len() > 255 {
                        return Err(format!("line {n}: id of {} bytes", id.len()));
                    }
                    rcv_ids.push(id);
                }
                _ => return Err(format!("line {n}: unknown key {k}")),
            }
        }
        Ok(Sample {
            server: server.ok_or("no server line")?,
            created: created.ok_or("no created line")?,
            seed: seed.ok_or("no seed line")?,
            rcv_ids,
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), LoadError> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.to_text())?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Sample, LoadError> {
        let text = std::fs::read_to_string(path)?;
        Sample::parse(&text).map_err(|e| LoadError::Relay(format!("{}: {e}", path.display())))
    }
}

/// Which created queues go into the sample: every `every`-th, for about `want` in `total`.
pub fn sample_every(total: u64, want: usize) -> u64 {
    if want == 0 {
        return u64::MAX;
    }
    (total / want as u64).max(1)
}

// ---------------------------------------------------------------------------------------------
// Creating queues

#[derive(Clone, Debug)]
pub struct CreateOptions {
    pub server: ServerWithAuth,
    pub count: u64,
    pub connections: usize,
    /// `NEW`s sent together (one request batch) per connection.
    pub window: usize,
    /// About this many recipient ids are kept.
    pub sample: usize,
    pub progress: bool,
}

#[derive(Debug)]
pub struct CreateReport {
    pub created: u64,
    pub elapsed: Duration,
    pub sample: Vec<Vec<u8>>,
    /// Failures by kind (short text), each retried.
    pub errors: BTreeMap<String, u64>,
}

fn client_config() -> ClientConfig {
    ClientConfig {
        event_buffer: 64,
        send_buffer: 256,
        command_timeout: Duration::from_secs(120),
    }
}

/// Claims up to `want` of the `count - claimed` NEWs left (0 when none).
fn claim(claimed: &AtomicU64, count: u64, want: u64) -> u64 {
    let mut cur = claimed.load(Ordering::Relaxed);
    loop {
        let n = want.min(count.saturating_sub(cur));
        if n == 0 {
            return 0;
        }
        match claimed.compare_exchange_weak(cur, cur + n, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return n,
            Err(c) => cur = c,
        }
    }
}

/// Stops after this many failed `NEW`s or connections (all retried until then).
const MAX_ERRORS: u64 = 1000;

/// Creates `opts.count` queues, all authorized by `key`.
pub async fn create_queues(opts: &CreateOptions, key: &AuthKey) -> Result<CreateReport, LoadError> {
    let connector = Arc::new(TlsConnector::new()?);
    let (_dh, dh_pub) = new_dh_key()?;
    let cmd = Arc::new(Command::New(NewQueueReq {
        rcv_auth_key: key.public_der()?,
        rcv_dh_key: dh_pub,
        basic_auth: opts.server.auth.clone(),
        sub_mode: SubscriptionMode::OnlyCreate,
        queue_req_data: Some(QueueReqData::Messaging(None)),
        ntf_creds: None,
    }));
    let claimed = Arc::new(AtomicU64::new(0));
    let created = Arc::new(AtomicU64::new(0));
    let error_count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let sample = Arc::new(Mutex::new(Vec::new()));
    let every = sample_every(opts.count, opts.sample);
    let started = Instant::now();
    let bar = opts
        .progress
        .then(|| ProgressBar::start(created.clone(), opts.count, started));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..opts.connections.max(1) {
        let (connector, cmd, key, server) = (
            connector.clone(),
            cmd.clone(),
            key.clone(),
            opts.server.clone(),
        );
        let (claimed, created, error_count, errors, sample) = (
            claimed.clone(),
            created.clone(),
            error_count.clone(),
            errors.clone(),
            sample.clone(),
        );
        let (count, window) = (opts.count, opts.window.max(1) as u64);
        tasks.spawn(async move {
            let fail = |what: String| {
                *errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(what)
                    .or_default() += 1;
                error_count.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_ERRORS
            };
            let mut client: Option<SmpClient> = None;
            while created.load(Ordering::Relaxed) < count {
                let c = match &client {
                    Some(c) if !c.is_closed() => c.clone(),
                    _ => match connector.connect_to(&server.server, &client_config()).await {
                        Ok((c, _events)) => {
                            client = Some(c.clone());
                            c
                        }
                        Err(e) => {
                            if fail(format!("connect: {e}")) {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    },
                };
                let n = claim(&claimed, count, window);
                if n == 0 {
                    // Others still have NEWs in flight; any that fail are given back.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if claimed.load(Ordering::Relaxed) >= count
                        && created.load(Ordering::Relaxed) >= count
                    {
                        break;
                    }
                    continue;
                }
                let reqs: Vec<Request<'_>> = (0..n)
                    .map(|_| Request {
                        entity_id: &[],
                        key: Some(&key),
                        command: &cmd,
                    })
                    .collect();
                let mut failed = 0u64;
                for r in c.request_batch(&reqs).await {
                    match r {
                        Ok(BrokerMsg::Ids(ids)) => {
                            let i = created.fetch_add(1, Ordering::Relaxed);
                            if i % every == 0 {
                                sample
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(ids.rcv_id.into_vec());
                            }
                        }
                        Ok(m) => {
                            failed += 1;
                            if fail(format!("answer {}", m.tag())) {
                                return;
                            }
                        }
                        Err(e) => {
                            failed += 1;
                            if fail(e.to_string()) {
                                return;
                            }
                        }
                    }
                }
                if failed > 0 {
                    claimed.fetch_sub(failed, Ordering::Relaxed);
                }
            }
            if let Some(c) = client {
                c.close().await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    drop(bar);
    let errors = std::mem::take(&mut *errors.lock().unwrap_or_else(|p| p.into_inner()));
    let created = created.load(Ordering::Relaxed);
    if created < opts.count {
        return Err(LoadError::Relay(format!(
            "created {created} of {} queues; errors: {errors:?}",
            opts.count
        )));
    }
    let sample = std::mem::take(&mut *sample.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(CreateReport {
        created,
        elapsed: started.elapsed(),
        sample,
        errors,
    })
}

// ---------------------------------------------------------------------------------------------
// The relay process

/// Where the relay keeps its queues.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres { url: String, schema: String },
}

/// A relay in a directory of its own that survives restarts, on a fixed port.
#[derive(Clone, Debug)]
pub struct RelayHome {
    pub binary: PathBuf,
    pub dir: PathBuf,
    pub backend: Backend,
    pub log_level: String,
}

/// A running relay process: its pid, the `exec` instant and when it printed its listening line.
#[derive(Debug)]
pub struct RelayProc {
    child: Child,
    pub started: Instant,
    listening: mpsc::Receiver<Instant>,
    pub listening_at: Option<Instant>,
}

impl RelayProc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Time from `exec` to the listening line, once printed.
    pub fn listening_after(&mut self) -> Option<Duration> {
        if self.listening_at.is_none() {
            self.listening_at = self.listening.try_recv().ok();
        }
        self.listening_at.map(|t| t - self.started)
    }

    /// Sends `signal` and waits for the exit; returns how long that took.
    #[allow(unsafe_code)] // kill(2) on our own child, SAFETY below
    pub fn stop(&mut self, signal: libc::c_int) -> Duration {
        let t = Instant::now();
        if self.alive() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, signal);
            }
        }
        let _ = self.child.wait();
        t.elapsed()
    }
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        if self.alive() {
            self.stop(libc::SIGTERM);
        }
    }
}

impl RelayHome {
    pub fn paths(&self) -> ServerPaths {
        ServerPaths {
            config_dir: self.dir.join("config"),
            data_dir: self.dir.join("data"),
        }
    }

    pub fn sample_file(&self) -> PathBuf {
        self.dir.join("sample.txt")
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.join("relay.log")
    }

    /// `smp-server init` in a new directory, listening on 127.0.0.1:`port`, no per-address or
    /// per-connection queue creation budgets (all clients are on 127.0.0.1), `max_connections`.
    pub fn init(&self, port: u16, max_connections: usize) -> Result<ServerWithAuth, LoadError> {
        let paths = self.paths();
        smp_server::init::init(&InitOptions {
            paths: paths.clone(),
            fqdn: None,
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            password: PasswordChoice::None,
            sign_algorithm: hush_crypto::SignAlgorithm::Ed25519,
            port,
            control_port: None,
            store_log: true,
            force: false,
        })
        .map_err(|e| LoadError::Relay(format!("init in {}: {e}", self.dir.display())))?;
        let mut set = vec![
            ("TRANSPORT", "port", port.to_string()),
            ("TRANSPORT", "bind", "127.0.0.1".to_string()),
            ("METRICS", "enable", "off".to_string()),
            ("LIMITS", "max_connections", max_connections.to_string()),
            ("LIMITS", "new_queues_per_minute", "0".to_string()),
            ("LIMITS", "new_queues_per_minute_per_ip", "0".to_string()),
        ];
        if let Backend::Postgres { url, schema } = &self.backend {
            set.push(("STORE_LOG", "store_queues", "database".to_string()));
            set.push(("STORE_LOG", "db_connection", url.clone()));
            set.push(("STORE_LOG", "db_schema", schema.clone()));
        }
        rewrite_ini(&paths.ini_file(), &set)?;
        let fp = smp_server::init::check_fingerprint(&paths)
            .map_err(|e| LoadError::Relay(format!("fingerprint: {e}")))?;
        let text = format!("smp://{}@127.0.0.1:{port}", base64url_encode(&fp));
        ServerWithAuth::parse(&text).map_err(|e| LoadError::Address(e.to_string()))
    }

    /// Starts the relay (stderr appended to `relay.log`); does not wait for anything.
    pub fn exec(&self) -> Result<RelayProc, LoadError> {
        let paths = self.paths();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())?;
        let started = Instant::now();
        let mut child = Proc::new(&self.binary)
            .arg("--config-dir")
            .arg(&paths.config_dir)
            .arg("--data-dir")
            .arg(&paths.data_dir)
            .arg("start")
            .arg("--log-level")
            .arg(&self.log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| LoadError::Relay(format!("{}: {e}", self.binary.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| LoadError::Relay("no stdout pipe".into()))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("Listening on ") {
                    let _ = tx.send(Instant::now());
                }
            }
        });
        Ok(RelayProc {
            child,
            started,
            listening: rx,
            listening_at: None,
        })
    }

    /// Bytes the relay's store takes: the files of the data directory (SQLite), or the
    /// schema's tables with their indexes and TOAST (PostgreSQL, via `psql`).
    pub fn db_size(&self) -> Result<u64, LoadError> {
        match &self.backend {
            Backend::Sqlite => {
                let mut total = 0;
                for e in std::fs::read_dir(self.paths().data_dir)? {
                    let m = e?.metadata()?;
                    if m.is_file() {
                        total += m.len();
                    }
                }
                Ok(total)
            }
            Backend::Postgres { url, schema } => {
                let sql = format!(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = '{schema}' AND c.relkind = 'r'"
                );
                psql(url, &sql)?
                    .trim()
                    .parse()
                    .map_err(|_| LoadError::Relay("psql: not a number".into()))
            }
        }
    }
}

/// Runs one statement with `psql` and returns its unaligned output.
pub fn psql(url: &str, sql: &str) -> Result<String, LoadError> {
    let out = Proc::new("psql")
        .arg("-X")
        .arg("-At")
        .arg("-v")
        .arg("ON_ERROR_STOP=1")
        .arg("-c")
        .arg(sql)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LoadError::Relay(format!("psql: {e}")))?;
    if !out.status.success() {
        return Err(LoadError::Relay(format!(
            "psql: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> Result<u16, LoadError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

// ---------------------------------------------------------------------------------------------
// Measuring a start

/// What a relay start cost.
#[derive(Clone, Debug)]
pub struct StartReport {
    /// `exec` → `Listening on` on stdout.
    pub listening: Option<Duration>,
    /// `exec` → first TLS + SMP handshake completed.
    pub connected: Duration,
    /// `exec` → first `SUB` answered `OK`/`SOK`.
    pub first_sub: Duration,
    /// Connection attempts until then.
    pub attempts: u32,
    /// Memory right after the first `SUB`.
    pub mem_serving: MemStatus,
    /// The whole sample subscribed on one connection: (ok, failed, how long).
    pub sample_sub: (usize, usize, Duration),
    pub mem_after_sample: MemStatus,
    /// After idling: (seconds, memory).
    pub mem_idle: Option<(u64, MemStatus)>,
}

fn short(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    s.chars().take(120).collect()
}

/// Polls the relay from the moment of `exec` until a `SUB` of `sample.rcv_ids[0]` is answered,
/// then subscribes the whole sample, reads the relay's memory, idles `idle` with the
/// subscriptions held and reads it again.
pub async fn measure_start(
    relay: &mut RelayProc,
    sample: &Sample,
    idle: Option<Duration>,
    give_up: Duration,
) -> Result<StartReport, LoadError> {
    let server = ServerWithAuth::parse(&sample.server)
        .map_err(|e| LoadError::Address(format!("{}: {e}", sample.server)))?;
    let first = sample
        .rcv_ids
        .first()
        .ok_or_else(|| LoadError::Relay("empty sample".into()))?;
    let key = sample.key();
    let connector = TlsConnector::new()?;
    let mut attempts = 0u32;
    let mut last_err = String::new();
    let (client, connected) = loop {
        if relay.started.elapsed() > give_up {
            return Err(LoadError::Relay(format!(
                "no SUB answered within {give_up:?} ({attempts} attempts; last: {last_err})"
            )));
        }
        if !relay.alive() {
            return Err(LoadError::Relay("the relay exited (see relay.log)".into()));
        }
        attempts += 1;
        match tokio::time::timeout(
            Duration::from_secs(5),
            connector.connect_to(&server.server, &client_config()),
        )
        .await
        {
            Ok(Ok((c, events))) => break ((c, events), relay.started.elapsed()),
            Ok(Err(e)) => last_err = short(e),
            Err(_) => last_err = "connect timeout".into(),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let (client, _events) = client;
    client.subscribe(first, &key).await?;
    let first_sub = relay.started.elapsed();
    let mem_serving = mem_status(relay.pid())?;
    let _ = relay.listening_after();
    let t = Instant::now();
    let subs: Vec<(&[u8], &AuthKey)> = sample
        .rcv_ids
        .iter()
        .skip(1)
        .map(|id| (id.as_slice(), &key))
        .collect();
    let mut ok = 1;
    let mut failed = 0;
    for chunk in subs.chunks(1000) {
        for r in client.subscribe_many(chunk).await {
            if r.is_ok() {
                ok += 1;
            } else {
                failed += 1;
            }
        }
    }
    let sample_sub = (ok, failed, t.elapsed());
    let mem_after_sample = mem_status(relay.pid())?;
    let mem_idle = match idle {
        Some(d) => {
            tokio::time::sleep(d).await;
            Some((d.as_secs(), mem_status(relay.pid())?))
        }
        None => None,
    };
    client.close().await;
    Ok(StartReport {
        listening: relay.listening_after(),
        connected,
        first_sub,
        attempts,
        mem_serving,
        sample_sub,
        mem_after_sample,
        mem_idle,
    })
}

fn mem_text(m: &MemStatus) -> String {
    format!(
        "VmRSS {} kB, RssAnon {} kB, VmHWM {} kB, threads {}",
        m.vm_rss_kb, m.rss_anon_kb, m.vm_hwm_kb, m.threads
    )
}

impl StartReport {
    pub fn render(&self, label: &str) -> String {
        let mut s = format!(
            "{label}: exec → listening {}, → connected {:.3} s, → first SUB answered {:.3} s ({} connection attempts)\n",
            self.listening
                .map(|d| format!("{:.3} s", d.as_secs_f64()))
                .unwrap_or_else(|| "?".into()),
            self.connected.as_secs_f64(),
            self.first_sub.as_secs_f64(),
            self.attempts
        );
        s.push_str(&format!(
            "  relay right after the first SUB: {}\n",
            mem_text(&self.mem_serving)
        ));
        let (ok, failed, t) = self.sample_sub;
        s.push_str(&format!(
            "  sample: {ok} SUB ok, {failed} failed, in {:.3} s; relay then: {}\n",
            t.as_secs_f64(),
            mem_text(&self.mem_after_sample)
        ));
        if let Some((secs, m)) = &self.mem_idle {
            s.push_str(&format!("  relay after {secs} s idle: {}\n", mem_text(m)));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_and_progress_line() {
        assert_eq!(eta(0, 100, Duration::from_secs(5)), None);
        assert_eq!(eta(10, 100, Duration::ZERO), None);
        // 250 done in 10 s (25/s), 750 left: 30 s.
        assert_eq!(
            eta(250, 1000, Duration::from_secs(10)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            eta(1000, 1000, Duration::from_secs(10)),
            Some(Duration::ZERO)
        );
        assert_eq!(fmt_duration(Duration::from_secs(12)), "12s");
        assert_eq!(fmt_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(fmt_duration(Duration::from_secs(3723)), "1h02m03s");
        assert_eq!(
            progress_line(250, 1000, Duration::from_secs(10), 10),
            "[==>       ]  25.0 %  250/1000  25/s  ETA 30s"
        );
        assert_eq!(
            progress_line(1000, 1000, Duration::from_secs(10), 4),
            "[====] 100.0 %  1000/1000  100/s  ETA 0s"
        );
        assert_eq!(
            progress_line(0, 1000, Duration::ZERO, 4),
            "[>   ]   0.0 %  0/1000  0/s  ETA ?"
        );
    }

    #[test]
    fn claims_share_the_count_and_failures_are_given_back() {
        let c = AtomicU64::new(0);
        assert_eq!(claim(&c, 10, 4), 4);
        assert_eq!(claim(&c, 10, 4), 4);
        assert_eq!(claim(&c, 10, 4), 2);
        assert_eq!(claim(&c, 10, 4), 0);
        c.fetch_sub(3, Ordering::Relaxed);
        assert_eq!(claim(&c, 10, 4), 3);
        assert_eq!(sample_every(1_000_000, 1000), 1000);
        assert_eq!(sample_every(10, 1000), 1);
        assert_eq!(sample_every(10, 0), u64::MAX);
    }

    #[test]
    fn sample_file_round_trip_and_errors() {
        let s = Sample {
            server: "smp://AAAA@127.0.0.1:5223".into(),
            created: 1_000_000,
            seed: [7; 32],
            rcv_ids: vec![vec![1; 24], vec![0xff, 0, 3]],
        };
        let text = s.to_text();
        assert_eq!(Sample::parse(&text), Ok(s.clone()));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sample.txt");
        s.save(&p).unwrap();
        assert_eq!(Sample::load(&p).unwrap(), s);
        // The key is the one the seed gives, every time.
        assert_eq!(
            s.key().public_der().unwrap(),
            Sample::parse(&text).unwrap().key().public_der().unwrap()
        );

        assert!(
            Sample::parse("server x\n")
                .unwrap_err()
                .contains("first line")
        );
        let no_seed = text.replace("seed ", "# seed ");
        assert_eq!(Sample::parse(&no_seed), Err("no seed line".into()));
        let short_seed = text.replace(&hex::encode([7u8; 32]), "0707");
        assert!(Sample::parse(&short_seed).unwrap_err().contains("32 bytes"));
        let bad_id = format!("{text}rcv !!\n");
        assert!(Sample::parse(&bad_id).unwrap_err().contains("base64url"));
        let unknown = format!("{text}colour blue\n");
        assert!(
            Sample::parse(&unknown)
                .unwrap_err()
                .contains("unknown key colour")
        );
    }

    /// Against an in-process relay: every queue is created once, the sample is spread over
    /// them, and the saved key subscribes the sampled queues (another key does not).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn creates_queues_the_sample_subscribes() {
        let dir = tempfile::tempdir().unwrap();
        let relay = smp_server::testing::TestRelay::start_in(
            dir.path(),
            smp_server::server::RelayOptions::default(),
        )
        .await
        .unwrap();
        let mut sample = Sample {
            server: relay.address(),
            created: 0,
            seed: [3; 32],
            rcv_ids: Vec::new(),
        };
        let server = ServerWithAuth::parse(&sample.server).unwrap();
        let r = create_queues(
            &CreateOptions {
                server: server.clone(),
                count: 90,
                connections: 3,
                window: 7,
                sample: 10,
                progress: false,
            },
            &sample.key(),
        )
        .await
        .unwrap();
        assert_eq!(r.created, 90);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.sample.len(), 10);
        let mut ids = r.sample.clone();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10);
        sample.created = r.created;
        sample.rcv_ids = r.sample;
        let sample = Sample::parse(&sample.to_text()).unwrap();
        let (client, _events) = SmpClient::connect(&server.server, client_config())
            .await
            .unwrap();
        let key = sample.key();
        for id in &sample.rcv_ids {
            client.subscribe(id, &key).await.unwrap();
        }
        let other = Sample {
            seed: [4; 32],
            ..sample.clone()
        };
        let e = client
            .subscribe(&sample.rcv_ids[0], &other.key())
            .await
            .unwrap_err();
        assert!(
            matches!(e.smp_error(), Some(hush_proto::error::ErrorType::Auth)),
            "{e}"
        );
        client.close().await;
    }
}
