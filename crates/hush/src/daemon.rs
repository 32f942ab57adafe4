//! `hush daemon`: the always-connected receiver (design §1.1).
//!
//! One TLS connection per relay (the agent's [`hush_client::SmpClientPool`]), subscribed to the
//! receive queues of the profile whose notification mode is `connected` (the default), plus
//! every queue that is not a contact's (pending invitations, the contact address, group
//! members). Contacts in `push`, `periodic` or `off` mode are left to their mode: the device
//! fetches their queues with GET on a push or a periodic wake-up, or a chat session does. (A
//! mode change takes effect at the daemon's next start or SIGHUP for newly included queues; the
//! daemon does not unsubscribe a queue while running.) Reconnects with exponential backoff and
//! jitter; a notification for each new message ([`crate::notify`]).
//!
//! Keeping the connection: NAT state and dead-peer detection are the kernel's job — TCP
//! keep-alive on the relay sockets (`--keepalive`, default idle 45 s, then a probe every 15 s,
//! dead after 4 unanswered, `TCP_USER_TIMEOUT` 105 s for unacknowledged data), so a relay that
//! vanished silently is noticed within 105 s (measured: 105 s after the last answer); the read then fails and the pool
//! reconnects and resubscribes. A probe and its ACK are ≈ 104 bytes on IPv4 and never wake the
//! process. An SMP `PING` (one 16 KB block each way, ≈ 32.8 KB per round trip) is sent only
//! after `--ping-interval` of silence, default 5 h: a relay keeps a connection that holds
//! subscriptions however long it is silent (reference and hush relays drop only connections
//! *without* subscriptions, after `[INACTIVE_CLIENTS] ttl` = 6 h of inactivity), so the PING is
//! not needed for the relay's sake on the subscribed connections, and 5 h stays under the 6 h
//! ttl with an hour's margin for connections that only send (a relay where the profile has no
//! receive queue). What the kernel cannot see — a relay process that hangs while its host
//! still ACKs — is left to that PING (three unanswered → reconnect). The daemon processes everything a chat
//! session does (contacts completing, group introductions), so the profile stays current.
//!
//! Idle cost is measured, not estimated: the daemon reads the kernel's `TCP_INFO` counters of
//! its own relay sockets (bytes acknowledged / received on the wire — TLS records included —
//! and segments in / out) and the context switches of all its threads, and writes them with
//! per-hour rates to `<profile>/daemon-stats.json` every `--stats-interval` and at exit.
//! `hush daemon --stats` prints that file.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::notify::Notifier;
use crate::profile::{NotifyMode, Profile};
use crate::session::{Output, Session, short_relay};

pub const PID_FILE: &str = "daemon.pid";
pub const STATS_FILE: &str = "daemon-stats.json";

#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub ping_interval: Duration,
    /// Kernel TCP keep-alive on the relay sockets (`None`: the system's defaults, i.e. off).
    pub keepalive: Option<hush_client::TcpKeepalive>,
    pub reconnect_max: Duration,
    pub on_message: Option<String>,
    pub no_desktop: bool,
    pub stats_interval: Duration,
    /// Stop after this long (measurements); `None` = until a signal.
    pub run_for: Option<Duration>,
}

/// `--keepalive`: `<idle>/<interval>/<count>` (durations in whole seconds, e.g. `45s/15s/4`)
/// or `off`. The user timeout is `idle + interval × count`.
pub fn parse_keepalive(
    s: &str,
    duration: impl Fn(&str) -> anyhow::Result<Duration>,
) -> anyhow::Result<Option<hush_client::TcpKeepalive>> {
    let s = s.trim();
    if s == "off" {
        return Ok(None);
    }
    let parts: Vec<&str> = s.split('/').collect();
    let [idle, interval, count] = parts.as_slice() else {
        anyhow::bail!(
            "bad --keepalive {s:?}: expected <idle>/<interval>/<count> (e.g. 45s/15s/4) or off"
        );
    };
    let count: u32 = count
        .trim()
        .parse()
        .with_context(|| format!("bad --keepalive count in {s:?}"))?;
    let k = hush_client::TcpKeepalive::new(duration(idle)?, duration(interval)?, count);
    k.validate()
        .map_err(|e| anyhow::anyhow!("bad --keepalive {s:?}: {e}"))?;
    Ok(Some(k))
}

/// Keep-alive settings read back from a socket (`getsockopt`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepaliveInfo {
    pub idle_seconds: u64,
    pub interval_seconds: u64,
    pub count: u32,
    /// `TCP_USER_TIMEOUT`; 0 = the system's default.
    pub user_timeout_ms: u64,
}

impl From<hush_client::TcpKeepalive> for KeepaliveInfo {
    fn from(k: hush_client::TcpKeepalive) -> Self {
        KeepaliveInfo {
            idle_seconds: k.idle.as_secs(),
            interval_seconds: k.interval.as_secs(),
            count: k.count,
            user_timeout_ms: k.user_timeout.map(|u| u.as_millis() as u64).unwrap_or(0),
        }
    }
}

/// Estimated IP + TCP header bytes per segment (TCP timestamps on, as Linux negotiates by
/// default): 20 + 32 on IPv4, 40 + 32 on IPv6.
const HEADER_V4: u64 = 52;
const HEADER_V6: u64 = 72;

/// The pid of a running daemon of this profile, if any.
pub fn running_pid(profile_dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(profile_dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// Tells a running daemon of this profile (if any) to subscribe newly created queues.
#[allow(unsafe_code)] // libc calls, SAFETY below
pub fn notify_running(profile_dir: &Path) {
    #[cfg(unix)]
    if let Some(pid) = running_pid(profile_dir)
        && let Ok(pid) = i32::try_from(pid)
    {
        // SAFETY: kill(2) with a pid read from our own pid file; at worst it fails with ESRCH.
        unsafe {
            libc::kill(pid, libc::SIGHUP);
        }
    }
}

/// One relay's counters over the measured period.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RelayStats {
    pub relay: String,
    /// TCP payload (TLS records included), from `TCP_INFO`.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub segments_in: u64,
    pub segments_out: u64,
    /// On the wire: payload plus estimated IP/TCP headers of every segment (keep-alive probes
    /// and bare ACKs carry no payload, so only this counts them).
    #[serde(default)]
    pub wire_bytes_sent: u64,
    #[serde(default)]
    pub wire_bytes_received: u64,
    /// Per hour of the measured period (payload, both directions).
    pub bytes_per_hour: f64,
    #[serde(default)]
    pub wire_bytes_sent_per_hour: f64,
    #[serde(default)]
    pub wire_bytes_received_per_hour: f64,
    pub segments_in_per_hour: f64,
    #[serde(default)]
    pub segments_out_per_hour: f64,
    /// Incoming data segments are what wakes the process up for this relay.
    pub wakeups_per_hour: f64,
    pub connections_seen: u64,
    /// Keep-alive settings of the relay socket, read back with `getsockopt` (`null`: off).
    #[serde(default)]
    pub keepalive: Option<KeepaliveInfo>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    pub measured_seconds: f64,
    pub ping_interval_seconds: u64,
    /// The configured keep-alive (`null`: off).
    #[serde(default)]
    pub keepalive: Option<KeepaliveInfo>,
    pub relays: Vec<RelayStats>,
    /// Voluntary + involuntary context switches of all threads (every wake-up of the process,
    /// for any reason) during the measured period, and per hour.
    pub process_wakeups: u64,
    pub process_wakeups_per_hour: f64,
    pub messages: u64,
}

#[derive(Clone, Copy, Default)]
struct SockSample {
    peer: Option<SocketAddr>,
    bytes_acked: u64,
    bytes_received: u64,
    segs_in: u64,
    segs_out: u64,
    data_segs_in: u64,
    keepalive: Option<hush_client::TcpKeepalive>,
}

/// `TCP_INFO` of every connected TCP socket of this process, by socket inode.
fn sample_sockets() -> HashMap<u64, SockSample> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(link) = std::fs::read_link(e.path()) else {
            continue;
        };
        let Some(inode) = link
            .to_str()
            .and_then(|s| s.strip_prefix("socket:["))
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if let Some(s) = tcp_sample(fd) {
            out.insert(inode, s);
        }
    }
    out
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // libc calls, SAFETY below
fn tcp_sample(fd: i32) -> Option<SockSample> {
    // SAFETY: plain getsockopt/getpeername calls into zeroed, correctly sized C structs owned by
    // this frame; the lengths passed are their sizes. A stale fd at worst yields an error.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        if libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        ) != 0
        {
            return None;
        }
        // Only established connections.
        if info.tcpi_state != 1 {
            return None;
        }
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let mut slen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let peer = if libc::getpeername(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut slen,
        ) == 0
        {
            match ss.ss_family as i32 {
                libc::AF_INET => {
                    let a: &libc::sockaddr_in = &*(&ss as *const libc::sockaddr_storage).cast();
                    Some(SocketAddr::from((
                        u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                        u16::from_be(a.sin_port),
                    )))
                }
                libc::AF_INET6 => {
                    let a: &libc::sockaddr_in6 = &*(&ss as *const libc::sockaddr_storage).cast();
                    Some(SocketAddr::from((
                        a.sin6_addr.s6_addr,
                        u16::from_be(a.sin6_port),
                    )))
                }
                _ => None,
            }
        } else {
            None
        };
        Some(SockSample {
            peer,
            bytes_acked: info.tcpi_bytes_acked,
            bytes_received: info.tcpi_bytes_received,
            segs_in: u64::from(info.tcpi_segs_in),
            segs_out: u64::from(info.tcpi_segs_out),
            data_segs_in: u64::from(info.tcpi_data_segs_in),
            keepalive: hush_client::TcpKeepalive::read_from(fd).ok().flatten(),
        })
    }
}

#[cfg(not(target_os = "linux"))]
fn tcp_sample(_fd: i32) -> Option<SockSample> {
    None
}

/// Context switches of all threads of this process.
fn ctx_switches() -> u64 {
    let mut total = 0;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    for t in dir.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("status")) {
            for line in s.lines() {
                if let Some(v) = line
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    total += v.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    total
}

/// Accumulates per-relay deltas across samples (a reconnect starts a new socket).
struct Meter {
    started: Instant,
    ctx_start: u64,
    last: HashMap<u64, SockSample>,
    acc: BTreeMap<String, (RelayStats, u64)>,
    names: HashMap<SocketAddr, String>,
}

impl Meter {
    fn new(names: HashMap<SocketAddr, String>) -> Meter {
        let mut m = Meter {
            started: Instant::now(),
            ctx_start: ctx_switches(),
            last: sample_sockets(),
            acc: BTreeMap::new(),
            names,
        };
        for n in m.names.values() {
            m.acc
                .entry(n.clone())
                .or_insert_with(|| (RelayStats::default(), 0));
        }
        m.acc.iter_mut().for_each(|(_, (_, c))| *c = 0);
        let known: Vec<(u64, Option<SocketAddr>)> =
            m.last.iter().map(|(k, s)| (*k, s.peer)).collect();
        for (_, peer) in known {
            if let Some(name) = peer.and_then(|p| m.names.get(&p)).cloned()
                && let Some(e) = m.acc.get_mut(&name)
            {
                e.1 += 1;
            }
        }
        m
    }

    fn update(&mut self) {
        let now = sample_sockets();
        for (inode, s) in &now {
            let Some(peer) = s.peer else { continue };
            let Some(name) = self.names.get(&peer).cloned() else {
                continue;
            };
            let prev = self.last.get(inode).copied();
            let e = self
                .acc
                .entry(name)
                .or_insert_with(|| (RelayStats::default(), 0));
            let p = match prev {
                Some(p) => p,
                None => {
                    e.1 += 1;
                    SockSample::default()
                }
            };
            let sent = s.bytes_acked.saturating_sub(p.bytes_acked);
            let received = s.bytes_received.saturating_sub(p.bytes_received);
            let segs_in = s.segs_in.saturating_sub(p.segs_in);
            let segs_out = s.segs_out.saturating_sub(p.segs_out);
            let hdr = if peer.is_ipv4() { HEADER_V4 } else { HEADER_V6 };
            e.0.bytes_sent += sent;
            e.0.bytes_received += received;
            e.0.segments_in += segs_in;
            e.0.segments_out += segs_out;
            e.0.wire_bytes_sent += sent + segs_out * hdr;
            e.0.wire_bytes_received += received + segs_in * hdr;
            e.0.keepalive = s.keepalive.map(KeepaliveInfo::from);
            e.0.wakeups_per_hour += s.data_segs_in.saturating_sub(p.data_segs_in) as f64;
        }
        self.last = now;
    }

    fn stats(
        &mut self,
        ping: Duration,
        keepalive: Option<hush_client::TcpKeepalive>,
        messages: u64,
    ) -> Stats {
        self.update();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let per_hour = 3600.0 / secs;
        let wake = ctx_switches().saturating_sub(self.ctx_start);
        let relays = self
            .acc
            .iter()
            .map(|(name, (r, conns))| RelayStats {
                relay: name.clone(),
                bytes_per_hour: (r.bytes_sent + r.bytes_received) as f64 * per_hour,
                wire_bytes_sent_per_hour: r.wire_bytes_sent as f64 * per_hour,
                wire_bytes_received_per_hour: r.wire_bytes_received as f64 * per_hour,
                segments_in_per_hour: r.segments_in as f64 * per_hour,
                segments_out_per_hour: r.segments_out as f64 * per_hour,
                // accumulated as a count of data segments in; turned into a rate here
                wakeups_per_hour: r.wakeups_per_hour * per_hour,
                connections_seen: *conns,
                ..r.clone()
            })
            .collect();
        Stats {
            measured_seconds: secs,
            ping_interval_seconds: ping.as_secs(),
            keepalive: keepalive.map(KeepaliveInfo::from),
            relays,
            process_wakeups: wake,
            process_wakeups_per_hour: wake as f64 * per_hour,
            messages,
        }
    }
}

/// Socket addresses of every relay that has receive queues of this profile.
async fn relay_addrs(agent_db: &Path) -> anyhow::Result<HashMap<SocketAddr, String>> {
    let mut store = hush_agent::store::Store::open(agent_db)?;
    let queues = store.tx(|tx| tx.all_rcv_queues())?;
    drop(store);
    let mut servers: Vec<hush_proto::address::ProtocolServer> = Vec::new();
    for q in queues {
        if !servers.iter().any(|s| s == &q.server) {
            servers.push(q.server);
        }
    }
    let mut out = HashMap::new();
    for s in servers {
        let port = s.effective_port();
        let label = short_relay(&s.to_text());
        for h in s.hosts() {
            let host = h.to_text();
            if let Ok(addrs) = tokio::net::lookup_host((host.as_str(), port)).await {
                for a in addrs {
                    out.insert(a, label.clone());
                }
            }
        }
    }
    Ok(out)
}

fn write_stats(dir: &Path, s: &Stats) {
    let path = dir.join(STATS_FILE);
    let tmp = dir.join(format!("{STATS_FILE}.tmp"));
    if let Ok(text) = serde_json::to_string_pretty(s)
        && std::fs::write(&tmp, text).is_ok()
    {
        let _ = std::fs::rename(&tmp, &path);
    }
}

/// `hush daemon --stats`.
pub fn print_stats(profile_dir: &Path, json: bool) -> anyhow::Result<()> {
    let path = profile_dir.join(STATS_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no statistics yet ({})", path.display()))?;
    if json {
        let v: serde_json::Value = serde_json::from_str(&text)?;
        println!("{v}");
        return Ok(());
    }
    let s: Stats = serde_json::from_str(&text)?;
    println!(
        "hush daemon idle traffic over {:.0} s (PING after {} s of silence, TCP keep-alive {}), {} message(s):",
        s.measured_seconds,
        s.ping_interval_seconds,
        describe_keepalive(s.keepalive.as_ref()),
        s.messages
    );
    for r in &s.relays {
        println!(
            "  relay {}: {} B sent, {} B received (payload), {} segments in, {} out ({} connection(s)); socket keep-alive {}",
            r.relay,
            r.bytes_sent,
            r.bytes_received,
            r.segments_in,
            r.segments_out,
            r.connections_seen,
            describe_keepalive(r.keepalive.as_ref()),
        );
        println!(
            "    per hour: {:.0} B payload; on the wire (headers estimated) {:.0} B sent, {:.0} B received; {:.1} segments out, {:.1} in; {:.1} wake-ups (data segments in)",
            r.bytes_per_hour,
            r.wire_bytes_sent_per_hour,
            r.wire_bytes_received_per_hour,
            r.segments_out_per_hour,
            r.segments_in_per_hour,
            r.wakeups_per_hour
        );
    }
    println!(
        "  process: {} wake-ups (context switches, all threads), {:.1} per hour",
        s.process_wakeups, s.process_wakeups_per_hour
    );
    Ok(())
}

fn describe_keepalive(k: Option<&KeepaliveInfo>) -> String {
    match k {
        None => "off".into(),
        Some(k) => format!(
            "idle {} s, every {} s, {} probes, user timeout {} ms",
            k.idle_seconds, k.interval_seconds, k.count, k.user_timeout_ms
        ),
    }
}

struct PidFile(PathBuf);

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A contact the daemon leaves to its notification mode: (name, mode).
type LeftToMode = (String, &'static str);

/// The connections whose receive queues the daemon subscribes: every connection except those
/// of contacts whose notification mode is not `connected`; and those contacts (name, mode).
pub(crate) fn daemon_connections(s: &Session) -> anyhow::Result<(Vec<i64>, Vec<LeftToMode>)> {
    let mut left = Vec::new();
    let mut skip = std::collections::HashSet::new();
    for c in s.profile.contacts()? {
        if c.notify != NotifyMode::Connected {
            skip.insert(c.conn_id);
            left.push((c.name.unwrap_or_else(|| "?".into()), c.notify.as_str()));
        }
    }
    let conns = s
        .agent
        .connections()?
        .into_iter()
        .filter(|c| !skip.contains(c))
        .collect();
    Ok((conns, left))
}

/// The connections a device wake-up subscribes while a daemon runs for the profile: those of
/// contacts not in `connected` mode (the daemon keeps the others; subscribing them here would
/// take their subscriptions away from it).
pub(crate) fn left_to_device(s: &Session) -> anyhow::Result<Vec<i64>> {
    Ok(s.profile
        .contacts()?
        .into_iter()
        .filter(|c| c.notify != NotifyMode::Connected)
        .map(|c| c.conn_id)
        .collect())
}

/// Runs the daemon until a signal (or `run_for`).
pub async fn run(
    profile: Profile,
    relay: hush_proto::address::ProtocolServer,
    opts: DaemonOptions,
    out: Output,
) -> anyhow::Result<()> {
    // Registered before anything is printed: a SIGTERM right after "relay connected" stops the
    // daemon cleanly instead of killing it with the default action.
    let mut signals = hush_server_common::StopSignals::install()?;
    let dir = profile.dir.clone();
    if let Some(pid) = running_pid(&dir)
        && pid != std::process::id()
    {
        anyhow::bail!("a daemon is already running for this profile (pid {pid})");
    }
    std::fs::write(dir.join(PID_FILE), std::process::id().to_string())?;
    let _pid = PidFile(dir.join(PID_FILE));
    // Long PING interval + kernel keep-alive: see the module documentation.
    let pool = hush_client::PoolConfig {
        ping_interval: opts.ping_interval,
        tcp_keepalive: opts.keepalive,
        backoff: hush_client::BackoffConfig {
            max: opts.reconnect_max,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut s = Session::open(profile, relay, Some(pool), out).await?;
    let notifier = Notifier::new(opts.on_message.clone(), opts.no_desktop);
    let (conns, left) = daemon_connections(&s)?;
    let n = s.agent.subscribe(&conns).await?;
    out.emit(
        "daemon_started",
        &format!(
            "hush daemon: {n} queue(s) subscribed, PING after {} s idle, TCP keep-alive {}, notifications: {}",
            opts.ping_interval.as_secs(),
            describe_keepalive(opts.keepalive.map(KeepaliveInfo::from).as_ref()),
            notifier.describe()
        ),
        serde_json::json!({
            "queues": n,
            "ping_interval": opts.ping_interval.as_secs(),
            "keepalive": opts.keepalive.map(KeepaliveInfo::from),
            "left_to_mode": left.iter().map(|(name, mode)| serde_json::json!({"name": name, "mode": mode})).collect::<Vec<_>>(),
        }),
    );
    if !left.is_empty() {
        let list: Vec<String> = left.iter().map(|(n, m)| format!("{n} ({m})")).collect();
        out.emit(
            "daemon_not_subscribed",
            &format!("not subscribed (left to their mode): {}", list.join(", ")),
            serde_json::json!({ "contacts": left.iter().map(|(n, _)| n).collect::<Vec<_>>() }),
        );
    }
    s.notifier = Some(notifier);
    let messages = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let m = messages.clone();
        s.on_incoming = Some(Box::new(move |_| {
            m.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }));
    }
    let names = relay_addrs(&s.profile.agent_db()).await.unwrap_or_default();
    let mut meter = Meter::new(names);
    let mut stats_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + opts.stats_interval,
        opts.stats_interval,
    );
    let stop = async {
        match opts.run_for {
            Some(d) => tokio::time::sleep(d).await,
            None => signals.recv().await,
        }
    };
    tokio::pin!(stop);
    // SIGHUP: another hush command created queues in this profile; subscribe them too.
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        #[cfg(unix)]
        let rescan = hup.recv();
        #[cfg(not(unix))]
        let rescan = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = &mut stop => break,
            _ = rescan => {
                let r = match daemon_connections(&s) {
                    Ok((conns, _)) => s.agent.subscribe(&conns).await.map_err(anyhow::Error::from),
                    Err(e) => Err(e),
                };
                match r {
                    Ok(n) => tracing::info!(queues = n, "resubscribed after SIGHUP"),
                    Err(e) => s.out.error(&format!("subscribe: {e:#}")),
                }
            }
            ev = s.events.recv() => match ev {
                Some(ev) => {
                    if let Err(e) = s.handle(ev).await {
                        s.out.error(&format!("{e:#}"));
                    }
                }
                None => break,
            },
            _ = stats_tick.tick() => {
                let st = meter.stats(opts.ping_interval, opts.keepalive, messages.load(std::sync::atomic::Ordering::Relaxed));
                write_stats(&dir, &st);
            }
        }
    }
    let st = meter.stats(
        opts.ping_interval,
        opts.keepalive,
        messages.load(std::sync::atomic::Ordering::Relaxed),
    );
    write_stats(&dir, &st);
    let _ = s.flush(Duration::from_secs(3)).await;
    s.close().await;
    out.emit(
        "daemon_stopped",
        "hush daemon: stopped",
        serde_json::json!({}),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> anyhow::Result<Duration> {
        let n: u64 = s.trim_end_matches('s').parse().context("bad duration")?;
        Ok(Duration::from_secs(n))
    }

    #[test]
    fn keepalive_option() {
        let k = parse_keepalive("45s/15s/4", secs).unwrap().unwrap();
        assert_eq!(k, hush_client::TcpKeepalive::receiver());
        assert_eq!(k.user_timeout, Some(Duration::from_secs(105)));
        assert_eq!(parse_keepalive("off", secs).unwrap(), None);
        for (bad, why) in [
            ("60s/15s", "expected <idle>/<interval>/<count>"),
            ("60s/15s/x", "count"),
            ("60s/0s/4", "interval"),
            ("60s/15s/0", "count"),
            ("99999s/15s/4", "idle"),
        ] {
            let e = format!("{:#}", parse_keepalive(bad, secs).unwrap_err());
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
