//! `loadgen abuse <scenario>`: bounded abuse of one server on loopback while a well-behaved
//! client keeps doing its normal work; reports the good client's success rate and latency
//! (alone first, then during the attack), the server's memory (VmRSS samples and VmHWM from
//! `/proc/<pid>/status`), whether it stayed up, and what the attacker achieved.
//!
//! Every scenario is bounded in count and time and stops by itself. The attacker connects from
//! its own loopback source address (default 127.0.0.2) and the good client from the kernel's
//! choice (127.0.0.1), so that per-address limits of a server treat them as two hosts.
//!
//! * `tnew` — `TNEW` × count (10,000) with fresh tokens at an ntf-server: tokens created,
//!   verification pushes that reached the apns-sink.
//! * `snew` — one verified token, then `SNEW` × count (1,000) for notifier queues on relays
//!   that do not exist (loopback ports whose listener accepts and closes at once, so that
//!   every outgoing connection attempt is counted).
//! * `stall` — count (2,000) TCP connections to a relay that stall in the TLS handshake (half
//!   send nothing, half a partial ClientHello), each opened again whenever the relay closes it,
//!   for the attack time; the good client opens a fresh connection per cycle.
//! * `new-flood` — `NEW` without a create password on `connections` connections, several in
//!   flight each, for the attack time: queues created, store growth.
//! * `register` — push-server `register` without credentials on `connections` connections for
//!   the attack time (half APNs tokens, half long Web Push endpoints, which the push-server
//!   stores): handles issued, outbox growth.

pub mod clients;
pub mod spawn;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hush_client::{AuthKey, ClientConfig, NewQueueParams, SmpClient, TlsConnector};
use hush_crypto::{Ed25519Secret, X25519Public, X25519Secret};
use hush_proto::address::{ProtocolServer, ServerWithAuth};
use hush_proto::ntf::{
    DeviceToken, NtfCommand, NtfResponse, PrivateKeyDer, PublicKeyDer, PushProvider, SmpQueueNtf,
};
use hush_transport::TransportClient;
use push_api::remote::Request;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::LoadError;
use crate::procfs::{MemStatus, mem_status, open_fds};
use clients::{NtfConn, PushConn, SinkWatch, ntf_label, tcp_from, verification_code};

/// The scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Tnew,
    Snew,
    Stall,
    NewFlood,
    Register,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::Tnew,
        Scenario::Snew,
        Scenario::Stall,
        Scenario::NewFlood,
        Scenario::Register,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Tnew => "tnew",
            Scenario::Snew => "snew",
            Scenario::Stall => "stall",
            Scenario::NewFlood => "new-flood",
            Scenario::Register => "register",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    /// The attacked server.
    pub fn server(self) -> &'static str {
        match self {
            Scenario::Tnew | Scenario::Snew => "ntf-server",
            Scenario::Stall | Scenario::NewFlood => "smp-server",
            Scenario::Register => "push-server",
        }
    }

    /// Default count (where the scenario has one) and attack time.
    pub fn defaults(self) -> (usize, Duration) {
        match self {
            Scenario::Tnew => (10_000, Duration::from_secs(60)),
            Scenario::Snew => (1_000, Duration::from_secs(30)),
            Scenario::Stall => (2_000, Duration::from_secs(30)),
            Scenario::NewFlood => (0, Duration::from_secs(20)),
            Scenario::Register => (0, Duration::from_secs(20)),
        }
    }
}

/// Options shared by the scenarios.
#[derive(Clone, Debug)]
pub struct AbuseOptions {
    pub scenario: Scenario,
    /// Free text carried into the report (e.g. "before", "after").
    pub label: String,
    /// Source address of the attacker's connections.
    pub attacker_ip: IpAddr,
    /// Source address of the good client (`None`: the kernel's choice, 127.0.0.1).
    pub good_ip: Option<IpAddr>,
    /// tnew: TNEWs; snew: SNEWs; stall: connections (ignored by the floods).
    pub count: usize,
    /// Attacker connections (tnew, snew, new-flood, register).
    pub connections: usize,
    /// Requests in flight per attacker connection (new-flood).
    pub in_flight: usize,
    /// Attack time (bound; tnew stops earlier once `count` were sent).
    pub duration: Duration,
    /// The good client alone before the attack.
    pub baseline: Duration,
    /// Pause between two cycles of the good client.
    pub good_interval: Duration,
    /// After the attack: how long to keep counting its effects (pushes still arriving,
    /// connection attempts) before the final probe.
    pub tail: Duration,
}

impl AbuseOptions {
    pub fn new(scenario: Scenario) -> AbuseOptions {
        let (count, duration) = scenario.defaults();
        AbuseOptions {
            scenario,
            label: String::new(),
            attacker_ip: IpAddr::from([127, 0, 0, 2]),
            good_ip: None,
            count,
            connections: 8,
            in_flight: 4,
            duration,
            baseline: Duration::from_secs(5),
            good_interval: Duration::from_millis(200),
            // A TNEW flood backs up the push path for a while: watch the recovery longer.
            tail: Duration::from_secs(if scenario == Scenario::Tnew { 30 } else { 5 }),
        }
    }
}

/// The relay under test.
#[derive(Clone, Debug)]
pub struct RelayTarget {
    pub server: ServerWithAuth,
    pub addr: SocketAddr,
    pub pid: u32,
    /// Its data directory (store growth), if known.
    pub data_dir: Option<PathBuf>,
}

/// The ntf-server under test, with the apns-sink behind its push-server.
#[derive(Clone, Debug)]
pub struct NtfTarget {
    pub addr: SocketAddr,
    pub key_hash: [u8; 32],
    pub pid: u32,
    pub sink_read: SocketAddr,
    pub data_dir: Option<PathBuf>,
    /// A relay for the second good client (an existing device getting message pushes).
    pub relay: Option<ServerWithAuth>,
}

/// The push-server under test, with the apns-sink it delivers to.
#[derive(Clone, Debug)]
pub struct PushTarget {
    pub addr: SocketAddr,
    pub fingerprint: [u8; 32],
    pub credential: String,
    pub pid: u32,
    pub sink_read: SocketAddr,
    pub data_dir: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub enum Target {
    Relay(RelayTarget),
    Ntf(NtfTarget),
    Push(PushTarget),
}

impl Target {
    fn pid(&self) -> u32 {
        match self {
            Target::Relay(t) => t.pid,
            Target::Ntf(t) => t.pid,
            Target::Push(t) => t.pid,
        }
    }

    fn data_dir(&self) -> Option<&PathBuf> {
        match self {
            Target::Relay(t) => t.data_dir.as_ref(),
            Target::Ntf(t) => t.data_dir.as_ref(),
            Target::Push(t) => t.data_dir.as_ref(),
        }
    }
}

/// The good client's results over one phase.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GoodStats {
    pub attempts: u64,
    pub ok: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Seconds from the phase start to the first failed cycle and to the last successful one
    /// (when the good client was locked out, and whether it got back in).
    pub first_error_s: Option<f64>,
    pub last_ok_s: Option<f64>,
}

impl GoodStats {
    pub fn success_rate(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.ok as f64 / self.attempts as f64
        }
    }

    fn from_samples(samples: &[Sample], phase_start: Instant) -> GoodStats {
        let rel = |s: &Sample| round1(s.at.saturating_duration_since(phase_start).as_secs_f64());
        let first_error_s = samples.iter().find(|s| s.error.is_some()).map(rel);
        let last_ok_s = samples.iter().rev().find(|s| s.error.is_none()).map(rel);
        let mut lat: Vec<f64> = samples
            .iter()
            .filter(|s| s.error.is_none())
            .map(|s| s.latency.as_secs_f64() * 1000.0)
            .collect();
        lat.sort_by(f64::total_cmp);
        let q = |p: f64| -> Option<f64> {
            if lat.is_empty() {
                return None;
            }
            let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
            lat.get(i.min(lat.len() - 1)).copied()
        };
        let mut errors = BTreeMap::new();
        for s in samples {
            if let Some(e) = &s.error {
                *errors.entry(e.clone()).or_insert(0) += 1;
            }
        }
        GoodStats {
            attempts: samples.len() as u64,
            ok: lat.len() as u64,
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            max_ms: lat.last().copied(),
            errors,
            first_error_s,
            last_ok_s,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "attempts": self.attempts,
            "ok": self.ok,
            "success_rate": (self.success_rate() * 10000.0).round() / 10000.0,
            "p50_ms": self.p50_ms.map(round1),
            "p99_ms": self.p99_ms.map(round1),
            "max_ms": self.max_ms.map(round1),
            "errors": self.errors,
            "first_error_s": self.first_error_s,
            "last_ok_s": self.last_ok_s,
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// One scenario's report.
#[derive(Clone, Debug)]
pub struct AbuseReport {
    pub scenario: Scenario,
    pub label: String,
    pub server: &'static str,
    /// The good client alone.
    pub baseline: GoodStats,
    /// The good client while the attack ran.
    pub during: GoodStats,
    /// The good client during the tail after the attack (lagging effects, recovery).
    pub after: GoodStats,
    /// A second good client (name, alone, during, after): in the ntf scenarios with a relay an
    /// already registered device getting a push for each message (SEND with notification →
    /// push at the sink → GET, ACK); in `stall` a relay client whose connection was open
    /// before the attack (SEND/GET/ACK on it).
    pub second: Option<(String, GoodStats, GoodStats, GoodStats)>,
    pub attack_secs: f64,
    /// VmRSS before the attack, kB.
    pub rss_before_kb: Option<u64>,
    /// Largest VmRSS sampled during the attack (every 250 ms), kB.
    pub rss_max_sampled_kb: Option<u64>,
    /// VmHWM at the end (peak over the process's life), kB.
    pub peak_rss_kb: Option<u64>,
    /// Largest number of open fds sampled.
    pub fds_max: Option<usize>,
    /// Process still running at the end and a final good cycle succeeded.
    pub process_alive: bool,
    pub final_probe_ok: bool,
    /// Data directory size before/after (bytes), if known.
    pub store_bytes: Option<(u64, u64)>,
    /// What the attacker achieved (scenario-specific counters).
    pub attack: BTreeMap<String, Value>,
    pub notes: Vec<String>,
}

impl AbuseReport {
    pub fn survived(&self) -> bool {
        self.process_alive && self.final_probe_ok
    }

    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario.name(),
            "label": self.label,
            "server": self.server,
            "good_baseline": self.baseline.to_json(),
            "good_during": self.during.to_json(),
            "good_after": self.after.to_json(),
            "second_good": self.second.as_ref().map(|(name, b, d, a)| json!({
                "name": name,
                "baseline": b.to_json(),
                "during": d.to_json(),
                "after": a.to_json(),
            })),
            "attack_secs": round1(self.attack_secs),
            "rss_before_kb": self.rss_before_kb,
            "rss_max_sampled_kb": self.rss_max_sampled_kb,
            "peak_rss_kb": self.peak_rss_kb,
            "fds_max": self.fds_max,
            "process_alive": self.process_alive,
            "final_probe_ok": self.final_probe_ok,
            "survived": self.survived(),
            "store_bytes_before": self.store_bytes.map(|s| s.0),
            "store_bytes_after": self.store_bytes.map(|s| s.1),
            "attack": self.attack,
            "notes": self.notes,
        })
    }

    /// One human-readable line.
    pub fn summary(&self) -> String {
        let ms = |x: Option<f64>| x.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
        let attack: Vec<String> = self
            .attack
            .iter()
            .filter(|(_, v)| !v.is_object())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "abuse {} [{}] {}: good {}/{} ok ({:.1}%) p50 {} ms p99 {} ms (alone: {:.1}% p50 {} p99 {}; after: {:.1}%); peak RSS {} kB (before {} kB); survived: {}; attack {:.0} s: {}",
            self.scenario.name(),
            self.label,
            self.server,
            self.during.ok,
            self.during.attempts,
            self.during.success_rate() * 100.0,
            ms(self.during.p50_ms),
            ms(self.during.p99_ms),
            self.baseline.success_rate() * 100.0,
            ms(self.baseline.p50_ms),
            ms(self.baseline.p99_ms),
            self.after.success_rate() * 100.0,
            self.peak_rss_kb
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            self.rss_before_kb
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            if self.survived() { "yes" } else { "NO" },
            self.attack_secs,
            attack.join(" ")
        ) + &self
            .second
            .as_ref()
            .map(|(name, b, d, _)| {
                format!(
                    "; {name}: {}/{} ok ({:.1}%) p50 {} ms p99 {} ms (alone: {:.1}% p50 {} p99 {})",
                    d.ok,
                    d.attempts,
                    d.success_rate() * 100.0,
                    ms(d.p50_ms),
                    ms(d.p99_ms),
                    b.success_rate() * 100.0,
                    ms(b.p50_ms),
                    ms(b.p99_ms),
                )
            })
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// The good clients

#[derive(Clone, Debug)]
struct Sample {
    at: Instant,
    latency: Duration,
    error: Option<String>,
}

/// Longest good cycle before it counts as failed.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(20);

trait GoodClient: Send + 'static {
    /// One unit of normal work.
    fn cycle(&mut self) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

fn short(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    match s.char_indices().nth(60) {
        Some((i, _)) => s[..i].to_string(),
        None => s,
    }
}

/// Runs `client` until `stop`, recording every cycle.
fn spawn_good<G: GoodClient>(
    mut client: G,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(G, Vec<Sample>)> {
    tokio::spawn(async move {
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let at = Instant::now();
            let r = tokio::time::timeout(CYCLE_TIMEOUT, client.cycle()).await;
            let error = match r {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some("cycle timeout".into()),
            };
            samples.push(Sample {
                at,
                latency: at.elapsed(),
                error,
            });
            tokio::time::sleep(interval).await;
        }
        (client, samples)
    })
}

/// Relay: SEND → GET → ACK on its own queue (a fresh connection per cycle when
/// `reconnect_each`).
struct RelayGood {
    server: ServerWithAuth,
    reconnect_each: bool,
    client: Option<SmpClient>,
    queue: Option<(Vec<u8>, AuthKey, Vec<u8>)>,
    connector: TlsConnector,
}

fn good_config() -> ClientConfig {
    ClientConfig {
        event_buffer: 16,
        send_buffer: 16,
        command_timeout: Duration::from_secs(15),
    }
}

impl RelayGood {
    fn new(server: ServerWithAuth, reconnect_each: bool) -> Result<RelayGood, LoadError> {
        Ok(RelayGood {
            server,
            reconnect_each,
            client: None,
            queue: None,
            connector: TlsConnector::new()?,
        })
    }

    async fn run(&mut self) -> Result<(), String> {
        let client = match &self.client {
            Some(c) if !c.is_closed() => c.clone(),
            _ => {
                let (c, _ev) = self
                    .connector
                    .connect_to(&self.server.server, &good_config())
                    .await
                    .map_err(|e| format!("connect: {}", short(e)))?;
                // Events are not used (no subscriptions); the receiver may be dropped.
                self.client = Some(c.clone());
                c
            }
        };
        if self.queue.is_none() {
            let q = client
                .create_queue(NewQueueParams {
                    subscribe: false,
                    basic_auth: self.server.auth.clone(),
                    ..NewQueueParams::default()
                })
                .await
                .map_err(|e| format!("NEW: {}", short(e)))?;
            self.queue = Some((q.rcv_id, q.rcv_key, q.snd_id));
        }
        let Some((rcv_id, rcv_key, snd_id)) = &self.queue else {
            return Err("no queue".into());
        };
        client
            .send(snd_id, None, false, &[7u8; 128])
            .await
            .map_err(|e| format!("SEND: {}", short(e)))?;
        let m = client
            .get(rcv_id, rcv_key)
            .await
            .map_err(|e| format!("GET: {}", short(e)))?
            .ok_or("GET: queue empty")?;
        client
            .ack(rcv_id, rcv_key, &m.msg_id)
            .await
            .map_err(|e| format!("ACK: {}", short(e)))?;
        Ok(())
    }
}

impl GoodClient for RelayGood {
    async fn cycle(&mut self) -> Result<(), String> {
        let r = self.run().await;
        if (r.is_err() || self.reconnect_each)
            && let Some(c) = self.client.take()
        {
            c.close().await;
        }
        r
    }
}

/// A fresh device token's registration: `TNEW`, the verification push read back from the
/// sink, `TVFY`, `TCHK` (active), `TDEL`.
struct NtfGood {
    target: NtfTarget,
    source: Option<IpAddr>,
    sink: SinkWatch,
    conn: Option<NtfConn>,
}

/// A random 64-hex-digit APNs token starting with `prefix`.
fn token(prefix: &str) -> String {
    let r = hex::encode(rand::random::<[u8; 32]>());
    format!("{prefix}{}", &r[prefix.len()..])
}

fn tnew_cmd(token_hex: &str, key: &Ed25519Secret, dh: &X25519Secret) -> Result<NtfCommand, String> {
    Ok(NtfCommand::Tnew {
        token: DeviceToken {
            provider: PushProvider::ApnsTest,
            token: token_hex.as_bytes().to_vec(),
        },
        verify_key: PublicKeyDer::auth_key(key.public().to_spki_der())
            .map_err(|e| format!("{e:?}"))?,
        dh_key: PublicKeyDer::dh_key(dh.public().to_spki_der()).map_err(|e| format!("{e:?}"))?,
    })
}

/// Registers and verifies a token on `conn`; returns (token id, key).
async fn register_token(
    conn: &mut NtfConn,
    sink: &SinkWatch,
    token_hex: &str,
) -> Result<(Vec<u8>, Ed25519Secret), String> {
    let key = Ed25519Secret::generate();
    let dh = X25519Secret::generate();
    let r = conn
        .cmd(&key, b"", &tnew_cmd(token_hex, &key, &dh)?)
        .await
        .map_err(|e| format!("TNEW: {}", short(e)))?;
    let NtfResponse::TknId {
        token_id,
        server_dh_key,
    } = r
    else {
        return Err(format!("TNEW: {}", ntf_label(&r)));
    };
    let srv = X25519Public::from_spki_der(server_dh_key.as_bytes())
        .map_err(|e| format!("server DH key: {e}"))?;
    let secret = dh.dh(&srv);
    let payload = sink
        .take(token_hex, Duration::from_secs(15))
        .await
        .ok_or("no verification push within 15 s")?;
    let code = verification_code(&secret, &payload).ok_or("undecodable verification push")?;
    let r = conn
        .cmd(&key, &token_id, &NtfCommand::Tvfy { code })
        .await
        .map_err(|e| format!("TVFY: {}", short(e)))?;
    if r != NtfResponse::Ok {
        return Err(format!("TVFY: {}", ntf_label(&r)));
    }
    Ok((token_id, key))
}

impl NtfGood {
    async fn run(&mut self) -> Result<(), String> {
        if self.conn.is_none() {
            self.conn = Some(
                NtfConn::connect(self.target.addr, &self.target.key_hash, self.source)
                    .await
                    .map_err(|e| format!("connect: {}", short(e)))?,
            );
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err("no connection".into());
        };
        let t = token("beef");
        let (token_id, key) = register_token(conn, &self.sink, &t).await?;
        let r = conn
            .cmd(&key, &token_id, &NtfCommand::Tchk)
            .await
            .map_err(|e| format!("TCHK: {}", short(e)))?;
        if !matches!(r, NtfResponse::Tkn(_)) {
            return Err(format!("TCHK: {}", ntf_label(&r)));
        }
        let r = conn
            .cmd(&key, &token_id, &NtfCommand::Tdel)
            .await
            .map_err(|e| format!("TDEL: {}", short(e)))?;
        if r != NtfResponse::Ok {
            return Err(format!("TDEL: {}", ntf_label(&r)));
        }
        Ok(())
    }
}

impl GoodClient for NtfGood {
    async fn cycle(&mut self) -> Result<(), String> {
        let r = self.run().await;
        // A device registers once per connection (the per-connection TNEW limit of a hardened
        // server must not be what the good client measures).
        if let Some(c) = self.conn.take() {
            c.close().await;
        }
        r
    }
}

/// push-server: authenticated (`hello` with the ntf credential) `register` + `submit`, then
/// the push's arrival at the sink.
struct PushGood {
    target: PushTarget,
    source: Option<IpAddr>,
    sink: SinkWatch,
    conn: Option<PushConn>,
}

impl PushGood {
    async fn run(&mut self) -> Result<(), String> {
        if self.conn.is_none() {
            let mut c = PushConn::connect(self.target.addr, self.target.fingerprint, self.source)
                .await
                .map_err(|e| format!("connect: {}", short(e)))?;
            c.call(Request::Hello {
                credential: self.target.credential.clone(),
            })
            .await
            .map_err(|e| format!("hello: {}", short(e)))?
            .map_err(|e| format!("hello: {e}"))?;
            self.conn = Some(c);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err("no connection".into());
        };
        let t = token("beef");
        let v = conn
            .call(Request::Register {
                address: push_api::DeviceAddress::Apns {
                    env: push_api::ApnsEnv::Test,
                    token: t.clone(),
                },
            })
            .await
            .map_err(|e| format!("register: {}", short(e)))?
            .map_err(|e| format!("register: {e}"))?;
        let handle: push_api::PushHandle =
            serde_json::from_value(v.get("handle").cloned().unwrap_or(Value::Null))
                .map_err(|e| format!("register: {e}"))?;
        let job = push_api::PushJob {
            job_id: push_api::JobId::random(),
            target: push_api::PushTarget::Handle(handle),
            kind: push_api::PushKind::Other,
            payload: br#"{"aps":{"content-available":1}}"#.to_vec(),
            push_type: push_api::PushType::Background,
            priority: Some(5),
            expires_at: None,
            collapse_id: None,
            report_delivery: false,
        };
        conn.call(Request::Submit { job })
            .await
            .map_err(|e| format!("submit: {}", short(e)))?
            .map_err(|e| format!("submit: {e}"))?;
        self.sink
            .take(&t, Duration::from_secs(15))
            .await
            .ok_or("push not delivered within 15 s")?;
        Ok(())
    }
}

impl GoodClient for PushGood {
    async fn cycle(&mut self) -> Result<(), String> {
        let r = self.run().await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }
}

/// An existing device: a verified token with one subscription (a queue on the relay); each
/// cycle sends a message with the notification flag, waits for the push at the sink, then
/// `GET` + `ACK`.
struct NtfPushGood {
    client: SmpClient,
    queue: (Vec<u8>, AuthKey, Vec<u8>),
    token: String,
    sink: SinkWatch,
}

fn pkcs8(k: &AuthKey) -> Result<PrivateKeyDer, String> {
    let der = match k {
        AuthKey::Ed25519(k) => k.to_pkcs8_der().to_vec(),
        AuthKey::Ed448(k) => k.to_pkcs8_der().map_err(|e| e.to_string())?.to_vec(),
        AuthKey::X25519(k) => k.to_pkcs8_der(),
    };
    PrivateKeyDer::new(der).map_err(|e| format!("{e:?}"))
}

impl NtfPushGood {
    /// Queue with notifier credentials, token registered and verified, `SNEW`, and a first
    /// message whose push arrives (the ntf-server subscribed at the relay).
    async fn setup(
        t: &NtfTarget,
        relay: &ServerWithAuth,
        source: Option<IpAddr>,
        sink: &SinkWatch,
    ) -> Result<NtfPushGood, String> {
        let (client, _ev) = TlsConnector::new()
            .map_err(short)?
            .connect_to(&relay.server, &good_config())
            .await
            .map_err(|e| format!("relay: {}", short(e)))?;
        let q = client
            .create_queue(NewQueueParams {
                subscribe: false,
                basic_auth: relay.auth.clone(),
                notifier: Some(hush_client::AuthAlgorithm::Ed25519),
                ..NewQueueParams::default()
            })
            .await
            .map_err(|e| format!("NEW: {}", short(e)))?;
        let n = q.notifier.clone().ok_or("NEW: no notifier credentials")?;
        let mut conn = NtfConn::connect(t.addr, &t.key_hash, source)
            .await
            .map_err(|e| format!("ntf connect: {}", short(e)))?;
        let tok = token("beef");
        let (token_id, key) = register_token(&mut conn, sink, &tok).await?;
        let r = conn
            .cmd(
                &key,
                b"",
                &NtfCommand::Snew {
                    token_id,
                    queue: SmpQueueNtf {
                        server: relay.server.clone(),
                        notifier_id: n.notifier_id.clone(),
                    },
                    notifier_key: pkcs8(&n.notifier_key)?,
                },
            )
            .await
            .map_err(|e| format!("SNEW: {}", short(e)))?;
        if !matches!(r, NtfResponse::SubId { .. }) {
            return Err(format!("SNEW: {}", ntf_label(&r)));
        }
        conn.close().await;
        let mut g = NtfPushGood {
            client,
            queue: (q.rcv_id, q.rcv_key, q.snd_id),
            token: tok,
            sink: sink.clone(),
        };
        // The ntf-server subscribes at the relay asynchronously: wait for the first push.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match g.cycle_with(Duration::from_secs(2)).await {
                Ok(()) => return Ok(g),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("no push for the first message: {e}"));
                }
                Err(_) => {}
            }
        }
    }

    async fn cycle_with(&mut self, wait: Duration) -> Result<(), String> {
        let (rcv_id, rcv_key, snd_id) = &self.queue;
        self.client
            .send(snd_id, None, true, &[9u8; 128])
            .await
            .map_err(|e| format!("SEND: {}", short(e)))?;
        let pushed = self.sink.take(&self.token, wait).await;
        // Empty the queue either way (a push may also come late: drop it next time).
        while let Some(m) = self
            .client
            .get(rcv_id, rcv_key)
            .await
            .map_err(|e| format!("GET: {}", short(e)))?
        {
            self.client
                .ack(rcv_id, rcv_key, &m.msg_id)
                .await
                .map_err(|e| format!("ACK: {}", short(e)))?;
        }
        pushed
            .map(|_| ())
            .ok_or_else(|| "no push within the wait".to_string())
    }
}

impl GoodClient for NtfPushGood {
    async fn cycle(&mut self) -> Result<(), String> {
        self.sink.drain(&self.token);
        self.cycle_with(Duration::from_secs(15)).await
    }
}

// ---------------------------------------------------------------------------------------------
// Counters

#[derive(Default)]
struct Counts(Mutex<BTreeMap<String, u64>>);

impl Counts {
    fn add(&self, k: impl Into<String>, n: u64) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(k.into()).or_insert(0) += n;
    }

    fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn counts_json(c: BTreeMap<String, u64>) -> Value {
    Value::Object(c.into_iter().map(|(k, v)| (k, json!(v))).collect())
}

// ---------------------------------------------------------------------------------------------
// The attacks. Each returns its counters; `deadline` bounds it.

async fn attack_tnew(
    t: &NtfTarget,
    o: &AbuseOptions,
    deadline: Instant,
) -> BTreeMap<String, Value> {
    let next = Arc::new(AtomicUsize::new(0));
    let answers = Arc::new(Counts::default());
    let sent = Arc::new(AtomicU64::new(0));
    let reconnects = Arc::new(AtomicU64::new(0));
    let key = Arc::new(Ed25519Secret::generate());
    let dh = Arc::new(X25519Secret::generate());
    let salt: u32 = rand::random();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..o.connections.max(1) {
        let (t, next, answers, sent, reconnects, key, dh) = (
            t.clone(),
            next.clone(),
            answers.clone(),
            sent.clone(),
            reconnects.clone(),
            key.clone(),
            dh.clone(),
        );
        let (count, ip) = (o.count, o.attacker_ip);
        tasks.spawn(async move {
            let mut conn: Option<NtfConn> = None;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                if conn.is_none() {
                    match NtfConn::connect(t.addr, &t.key_hash, Some(ip)).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            answers.add(format!("connect failed: {}", short(e)), 1);
                            reconnects.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let tok = format!("{}{:08x}{:052x}", SinkWatch::COUNT_ONLY_PREFIX, salt, i);
                let Ok(cmd) = tnew_cmd(&tok, &key, &dh) else {
                    break;
                };
                sent.fetch_add(1, Ordering::Relaxed);
                match c.cmd(&key, b"", &cmd).await {
                    Ok(r) => {
                        // An adaptive attacker: a refused TNEW (per-connection limit) → new connection.
                        if matches!(r, NtfResponse::Err(_)) {
                            conn = None;
                            reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        answers.add(ntf_label(&r), 1)
                    }
                    Err(e) => {
                        answers.add(format!("transport: {}", short(e)), 1);
                        conn = None;
                        reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let answers = answers.take();
    let mut m = BTreeMap::new();
    m.insert(
        "tokens_created".into(),
        json!(answers.get("IDTKN").copied().unwrap_or(0)),
    );
    m.insert("tnew_sent".into(), json!(sent.load(Ordering::Relaxed)));
    m.insert(
        "reconnects".into(),
        json!(reconnects.load(Ordering::Relaxed)),
    );
    m.insert("answers".into(), counts_json(answers));
    m
}

/// Listeners that accept and close at once, counting the connections.
struct DeadRelays {
    ports: Vec<u16>,
    accepted: Arc<AtomicU64>,
    contacted: Arc<Mutex<std::collections::HashSet<u16>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl DeadRelays {
    async fn start(n: usize) -> std::io::Result<DeadRelays> {
        let accepted = Arc::new(AtomicU64::new(0));
        let contacted = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let mut ports = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let port = l.local_addr()?.port();
            ports.push(port);
            let (acc, con) = (accepted.clone(), contacted.clone());
            tasks.push(tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    acc.fetch_add(1, Ordering::Relaxed);
                    con.lock().unwrap_or_else(|e| e.into_inner()).insert(port);
                    drop(s);
                }
            }));
        }
        Ok(DeadRelays {
            ports,
            accepted,
            contacted,
            tasks,
        })
    }

    fn counts(&self) -> (u64, usize) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.contacted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len(),
        )
    }
}

impl Drop for DeadRelays {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn attack_snew(
    t: &NtfTarget,
    o: &AbuseOptions,
    sink: &SinkWatch,
    dead: &DeadRelays,
    deadline: Instant,
    tail: Duration,
) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    let answers = Arc::new(Counts::default());
    // One verified token (as a real device would have).
    let mut conn = match NtfConn::connect(t.addr, &t.key_hash, Some(o.attacker_ip)).await {
        Ok(c) => c,
        Err(e) => {
            m.insert("error".into(), json!(format!("connect: {e}")));
            return m;
        }
    };
    let tok = token("cafe");
    let (token_id, key) = match register_token(&mut conn, sink, &tok).await {
        Ok(x) => {
            m.insert("token_verified".into(), json!(true));
            x
        }
        Err(e) => {
            m.insert("token_verified".into(), json!(false));
            m.insert("token_error".into(), json!(e));
            return m;
        }
    };
    conn.close().await;
    let key = Arc::new(key);
    let token_id = Arc::new(token_id);
    let notifier_key = match PrivateKeyDer::new(Ed25519Secret::generate().to_pkcs8_der().to_vec()) {
        Ok(k) => Arc::new(k),
        Err(e) => {
            m.insert("error".into(), json!(format!("{e:?}")));
            return m;
        }
    };
    let next = Arc::new(AtomicUsize::new(0));
    let ports = Arc::new(dead.ports.clone());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..o.connections.clamp(1, 4) {
        let (t, answers, key, token_id, notifier_key, next, ports) = (
            t.clone(),
            answers.clone(),
            key.clone(),
            token_id.clone(),
            notifier_key.clone(),
            next.clone(),
            ports.clone(),
        );
        let (count, ip) = (o.count, o.attacker_ip);
        tasks.spawn(async move {
            let mut conn: Option<NtfConn> = None;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                if conn.is_none() {
                    match NtfConn::connect(t.addr, &t.key_hash, Some(ip)).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            answers.add(format!("connect failed: {}", short(e)), 1);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let port = ports[i % ports.len()];
                let fp = hush_proto::encoding::base64url_encode(&rand::random::<[u8; 32]>());
                let Ok(server) = ProtocolServer::parse(&format!("smp://{fp}@127.0.0.1:{port}"))
                else {
                    answers.add("bad address", 1);
                    continue;
                };
                let cmd = NtfCommand::Snew {
                    token_id: (*token_id).clone(),
                    queue: SmpQueueNtf {
                        server,
                        notifier_id: rand::random::<[u8; 24]>().to_vec(),
                    },
                    notifier_key: (*notifier_key).clone(),
                };
                match c.cmd(&key, b"", &cmd).await {
                    Ok(r) => answers.add(ntf_label(&r), 1),
                    Err(e) => {
                        answers.add(format!("transport: {}", short(e)), 1);
                        conn = None;
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let sent_secs = started.elapsed().as_secs_f64();
    let after_send = dead.counts();
    // Keep counting connection attempts until the attack time (and the tail) is over.
    tokio::time::sleep_until((deadline + tail).into()).await;
    let (attempts, contacted) = dead.counts();
    let answers = answers.take();
    m.insert(
        "subscriptions_created".into(),
        json!(answers.get("IDSUB").copied().unwrap_or(0)),
    );
    m.insert("snew_secs".into(), json!(round1(sent_secs)));
    m.insert("outgoing_attempts".into(), json!(attempts));
    m.insert(
        "outgoing_attempts_while_sending".into(),
        json!(after_send.0),
    );
    m.insert("dead_relays".into(), json!(dead.ports.len()));
    m.insert("dead_relays_contacted".into(), json!(contacted));
    m.insert("answers".into(), counts_json(answers));
    m
}

async fn attack_stall(
    t: &RelayTarget,
    o: &AbuseOptions,
    deadline: Instant,
) -> BTreeMap<String, Value> {
    let connected = Arc::new(AtomicU64::new(0));
    let open_now = Arc::new(AtomicU64::new(0));
    let held = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(Counts::default());
    let closed = Arc::new(Mutex::new(Vec::<f64>::new()));
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    // How many stalled connections are open, sampled every 100 ms.
    let open_samples = {
        let open_now = open_now.clone();
        tokio::spawn(async move {
            let mut v = Vec::new();
            while Instant::now() < deadline {
                v.push(open_now.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            v
        })
    };
    for i in 0..o.count {
        let (connected, open_now, held, failed, closed, gate) = (
            connected.clone(),
            open_now.clone(),
            held.clone(),
            failed.clone(),
            closed.clone(),
            gate.clone(),
        );
        let (addr, ip) = (t.addr, o.attacker_ip);
        // One slot: a stalled connection, opened again whenever the server closes it.
        tasks.spawn(async move {
            let until = tokio::time::Instant::from(deadline);
            while Instant::now() < deadline {
                let permit = gate.acquire().await;
                let tcp = tokio::time::timeout_at(until, tcp_from(addr, Some(ip))).await;
                drop(permit);
                let mut s = match tcp {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        failed.add(format!("connect: {}", short(e)), 1);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(_) => return,
                };
                connected.fetch_add(1, Ordering::Relaxed);
                open_now.fetch_add(1, Ordering::Relaxed);
                let opened = Instant::now();
                if i % 2 == 1 {
                    // TLS record header announcing 512 bytes of handshake, then a few of them.
                    let mut partial =
                        vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03];
                    partial.extend_from_slice(&[0x03; 12]);
                    let _ = s.write_all(&partial).await;
                }
                let mut buf = [0u8; 4096];
                let closed_by_server = loop {
                    match tokio::time::timeout_at(until, s.read(&mut buf)).await {
                        Err(_) => break false,
                        Ok(Ok(0)) | Ok(Err(_)) => break true,
                        Ok(Ok(_)) => {} // e.g. an alert; keep reading until closed
                    }
                };
                open_now.fetch_sub(1, Ordering::Relaxed);
                if !closed_by_server {
                    held.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                closed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(opened.elapsed().as_secs_f64());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let open_samples = open_samples.await.unwrap_or_default();
    let mut closed = std::mem::take(&mut *closed.lock().unwrap_or_else(|e| e.into_inner()));
    closed.sort_by(f64::total_cmp);
    let n_connected = connected.load(Ordering::Relaxed);
    let within = |a: f64, b: f64| closed.iter().filter(|x| **x >= a && **x < b).count();
    let mut m = BTreeMap::new();
    m.insert("stall_slots".into(), json!(o.count));
    m.insert("tcp_connected".into(), json!(n_connected));
    m.insert("held_to_end".into(), json!(held.load(Ordering::Relaxed)));
    m.insert(
        "open_avg".into(),
        json!((open_samples.iter().sum::<u64>() as f64 / open_samples.len().max(1) as f64).round()),
    );
    m.insert(
        "open_min_after_10s".into(),
        json!(open_samples.iter().skip(100).min()),
    );
    m.insert("closed_by_server".into(), json!(closed.len()));
    m.insert("closed_within_1s".into(), json!(within(0.0, 1.0)));
    m.insert("closed_1s_to_10s".into(), json!(within(1.0, 10.0)));
    m.insert("closed_after_10s".into(), json!(within(10.0, f64::MAX)));
    m.insert(
        "close_time_p50_s".into(),
        json!(closed.get(closed.len() / 2).copied().map(round1)),
    );
    m.insert(
        "close_time_max_s".into(),
        json!(closed.last().copied().map(round1)),
    );
    m.insert(
        "attack_phase_secs".into(),
        json!(round1(started.elapsed().as_secs_f64())),
    );
    m.insert("connect_failures".into(), counts_json(failed.take()));
    m
}

async fn attack_new_flood(
    t: &RelayTarget,
    o: &AbuseOptions,
    deadline: Instant,
) -> BTreeMap<String, Value> {
    let created = Arc::new(AtomicU64::new(0));
    let answers = Arc::new(Counts::default());
    let connects = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..o.connections.max(1) {
        let (t, created, answers, connects) = (
            t.clone(),
            created.clone(),
            answers.clone(),
            connects.clone(),
        );
        let (ip, in_flight) = (o.attacker_ip, o.in_flight.max(1));
        tasks.spawn(async move {
            let Ok(transport) = TransportClient::smp() else {
                return;
            };
            while Instant::now() < deadline {
                let conn = async {
                    let tcp = tcp_from(t.addr, Some(ip)).await.map_err(short)?;
                    transport
                        .connect(tcp, t.server.server.key_hash())
                        .await
                        .map_err(short)
                };
                let conn = match tokio::time::timeout(Duration::from_secs(10), conn).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        answers.add(format!("connect: {e}"), 1);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(_) => {
                        answers.add("connect timeout", 1);
                        continue;
                    }
                };
                connects.fetch_add(1, Ordering::Relaxed);
                let (client, _ev) =
                    SmpClient::from_connection(conn, Some(t.server.server.clone()), good_config());
                let mut workers = tokio::task::JoinSet::new();
                for _ in 0..in_flight {
                    let (client, created, answers) =
                        (client.clone(), created.clone(), answers.clone());
                    workers.spawn(async move {
                        while Instant::now() < deadline && !client.is_closed() {
                            let r = client
                                .create_queue(NewQueueParams {
                                    subscribe: false,
                                    ..NewQueueParams::default()
                                })
                                .await;
                            match r {
                                Ok(_) => {
                                    created.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => {
                                    // An adaptive attacker: refused (per-connection limit) or
                                    // closed → a new connection.
                                    answers.add(short(e), 1);
                                    break;
                                }
                            }
                        }
                    });
                }
                while workers.join_next().await.is_some() {}
                client.close().await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut m = BTreeMap::new();
    m.insert(
        "queues_created".into(),
        json!(created.load(Ordering::Relaxed)),
    );
    m.insert(
        "connections_opened".into(),
        json!(connects.load(Ordering::Relaxed)),
    );
    m.insert("errors".into(), counts_json(answers.take()));
    m
}

/// An uncompressed P-256 public key (65 bytes) for Web Push subscriptions.
fn p256_public() -> Vec<u8> {
    use openssl::bn::BigNumContext;
    use openssl::ec::{EcGroup, EcKey, PointConversionForm};
    use openssl::nid::Nid;
    let r = (|| -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let g = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let k = EcKey::generate(&g)?;
        let mut ctx = BigNumContext::new()?;
        k.public_key()
            .to_bytes(&g, PointConversionForm::UNCOMPRESSED, &mut ctx)
    })();
    r.unwrap_or_else(|_| {
        let mut v = vec![4u8];
        v.extend_from_slice(&[1u8; 64]);
        v
    })
}

async fn attack_register(
    t: &PushTarget,
    o: &AbuseOptions,
    deadline: Instant,
) -> BTreeMap<String, Value> {
    let ok = Arc::new(Counts::default());
    let errors = Arc::new(Counts::default());
    let connects = Arc::new(AtomicU64::new(0));
    let p256 = Arc::new(p256_public());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..o.connections.max(1) {
        let (t, ok, errors, connects, p256) = (
            t.clone(),
            ok.clone(),
            errors.clone(),
            connects.clone(),
            p256.clone(),
        );
        let ip = o.attacker_ip;
        tasks.spawn(async move {
            let mut conn: Option<PushConn> = None;
            let mut i: u64 = 0;
            while Instant::now() < deadline {
                if conn.is_none() {
                    match PushConn::connect(t.addr, t.fingerprint, Some(ip)).await {
                        Ok(c) => {
                            connects.fetch_add(1, Ordering::Relaxed);
                            conn = Some(c);
                        }
                        Err(e) => {
                            errors.add(format!("connect: {}", short(e)), 1);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                i += 1;
                let (kind, address) = if i.is_multiple_of(2) {
                    (
                        "apns",
                        push_api::DeviceAddress::Apns {
                            env: push_api::ApnsEnv::Test,
                            token: token("dead"),
                        },
                    )
                } else {
                    let path = hex::encode(rand::random::<[u8; 32]>()).repeat(6);
                    (
                        "webpush_long",
                        push_api::DeviceAddress::WebPush(push_api::job::WebPushSubscription {
                            endpoint: format!("https://push.example.net/wpush/v2/{path}"),
                            p256dh: (*p256).clone(),
                            auth: rand::random::<[u8; 16]>().to_vec(),
                        }),
                    )
                };
                match c.call(Request::Register { address }).await {
                    Ok(Ok(_)) => ok.add(format!("handles_{kind}"), 1),
                    Ok(Err(code)) => errors.add(format!("{kind}: {code}"), 1),
                    Err(e) => {
                        errors.add(format!("transport: {}", short(e)), 1);
                        conn = None;
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let ok = ok.take();
    let mut m = BTreeMap::new();
    m.insert(
        "handles_issued".into(),
        json!(ok.values().copied().sum::<u64>()),
    );
    m.insert(
        "handles_stored_webpush".into(),
        json!(ok.get("handles_webpush_long").copied().unwrap_or(0)),
    );
    m.insert(
        "connections_opened".into(),
        json!(connects.load(Ordering::Relaxed)),
    );
    m.insert("errors".into(), counts_json(errors.take()));
    m
}

// ---------------------------------------------------------------------------------------------
// The run

/// Samples the server's memory and fds every 250 ms until stopped.
fn spawn_sampler(
    pid: u32,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(Option<u64>, Option<usize>)> {
    tokio::spawn(async move {
        let (mut rss, mut fds) = (None::<u64>, None::<usize>);
        while !stop.load(Ordering::Relaxed) {
            if let Ok(m) = mem_status(pid) {
                rss = Some(rss.unwrap_or(0).max(m.vm_rss_kb));
            }
            if let Ok(f) = open_fds(pid) {
                fds = Some(fds.unwrap_or(0).max(f));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        (rss, fds)
    })
}

enum AnyGood {
    Relay(Box<RelayGood>),
    Ntf(Box<NtfGood>),
    Push(Box<PushGood>),
    NtfPush(Box<NtfPushGood>),
}

impl GoodClient for AnyGood {
    async fn cycle(&mut self) -> Result<(), String> {
        match self {
            AnyGood::Relay(g) => g.cycle().await,
            AnyGood::Ntf(g) => g.cycle().await,
            AnyGood::Push(g) => g.cycle().await,
            AnyGood::NtfPush(g) => g.cycle().await,
        }
    }
}

/// Runs one scenario against `target` (which must match the scenario's server).
pub async fn run(o: &AbuseOptions, target: &Target) -> Result<AbuseReport, LoadError> {
    let pid = target.pid();
    let sink = match target {
        Target::Ntf(t) => Some(SinkWatch::start(t.sink_read)),
        Target::Push(t) => Some(SinkWatch::start(t.sink_read)),
        Target::Relay(_) => None,
    };
    let good = match (o.scenario, target, &sink) {
        (Scenario::Stall | Scenario::NewFlood, Target::Relay(t), _) => AnyGood::Relay(Box::new(
            RelayGood::new(t.server.clone(), o.scenario == Scenario::Stall)?,
        )),
        (Scenario::Tnew | Scenario::Snew, Target::Ntf(t), Some(sink)) => {
            AnyGood::Ntf(Box::new(NtfGood {
                target: t.clone(),
                source: o.good_ip,
                sink: sink.clone(),
                conn: None,
            }))
        }
        (Scenario::Register, Target::Push(t), Some(sink)) => AnyGood::Push(Box::new(PushGood {
            target: t.clone(),
            source: o.good_ip,
            sink: sink.clone(),
            conn: None,
        })),
        _ => {
            return Err(LoadError::Relay(format!(
                "scenario {} needs a {}",
                o.scenario.name(),
                o.scenario.server()
            )));
        }
    };
    let mut notes = Vec::new();
    if o.good_ip.is_some() && o.good_ip == Some(o.attacker_ip) {
        notes.push("good client and attacker share one source address".into());
    }
    let second = match (target, &sink) {
        (Target::Ntf(t), Some(sink)) => match &t.relay {
            Some(relay) => Some((
                "existing device pushes",
                AnyGood::NtfPush(Box::new(
                    NtfPushGood::setup(t, relay, o.good_ip, sink)
                        .await
                        .map_err(|e| LoadError::Relay(format!("second good client: {e}")))?,
                )),
            )),
            None => None,
        },
        // Stalled handshakes: does a client connected before the attack keep working?
        (Target::Relay(t), _) if o.scenario == Scenario::Stall => Some((
            "connected before the attack",
            AnyGood::Relay(Box::new(RelayGood::new(t.server.clone(), false)?)),
        )),
        _ => None,
    };
    let dead = match (o.scenario, target) {
        (Scenario::Snew, Target::Ntf(_)) => Some(DeadRelays::start(o.count.clamp(1, 1000)).await?),
        _ => None,
    };
    let store_before = target.data_dir().map(|d| spawn::dir_bytes(d));
    let rss_before: Option<MemStatus> = mem_status(pid).ok();

    let stop_good = Arc::new(AtomicBool::new(false));
    let good_task = spawn_good(good, o.good_interval, stop_good.clone());
    let second_name = second.as_ref().map(|(n, _)| n.to_string());
    let second_task = second.map(|(_, g)| spawn_good(g, o.good_interval, stop_good.clone()));
    tokio::time::sleep(o.baseline).await;

    let stop_sampler = Arc::new(AtomicBool::new(false));
    let sampler = spawn_sampler(pid, stop_sampler.clone());
    let attack_start = Instant::now();
    let deadline = attack_start + o.duration;
    let mut attack = match (o.scenario, target) {
        (Scenario::Tnew, Target::Ntf(t)) => attack_tnew(t, o, deadline).await,
        (Scenario::Snew, Target::Ntf(t)) => {
            let (Some(sink), Some(dead)) = (&sink, &dead) else {
                return Err(LoadError::Relay("snew setup".into()));
            };
            attack_snew(t, o, sink, dead, deadline, Duration::ZERO).await
        }
        (Scenario::Stall, Target::Relay(t)) => attack_stall(t, o, deadline).await,
        (Scenario::NewFlood, Target::Relay(t)) => attack_new_flood(t, o, deadline).await,
        (Scenario::Register, Target::Push(t)) => attack_register(t, o, deadline).await,
        _ => BTreeMap::new(),
    };
    let attack_end = Instant::now();
    // The effects that lag behind (pushes in flight, reconnect attempts) and the recovery: the
    // good client keeps running ("after").
    tokio::time::sleep(o.tail).await;
    let during_end = Instant::now();
    stop_good.store(true, Ordering::Relaxed);
    stop_sampler.store(true, Ordering::Relaxed);
    let (mut good, samples) = good_task
        .await
        .map_err(|e| LoadError::Relay(format!("good client task: {e}")))?;
    let (rss_max, fds_max) = sampler.await.unwrap_or((None, None));
    let second_samples = match second_task {
        Some(t) => Some(
            t.await
                .map_err(|e| LoadError::Relay(format!("second good client task: {e}")))?
                .1,
        ),
        None => None,
    };
    let phases = |samples: &[Sample]| -> (GoodStats, GoodStats, GoodStats) {
        let pick = |a: Instant, b: Instant| -> Vec<Sample> {
            samples
                .iter()
                .filter(|s| s.at >= a && s.at < b)
                .cloned()
                .collect()
        };
        let far_past = attack_start - Duration::from_secs(3600);
        (
            GoodStats::from_samples(
                &pick(far_past, attack_start),
                samples.first().map(|s| s.at).unwrap_or(attack_start),
            ),
            GoodStats::from_samples(&pick(attack_start, attack_end), attack_start),
            GoodStats::from_samples(&pick(attack_end, during_end), attack_end),
        )
    };
    if let (Some(sink), Scenario::Tnew) = (&sink, o.scenario) {
        let (total, counted) = sink.counts();
        attack.insert("verification_pushes_at_sink".into(), json!(counted));
        attack.insert("sink_pushes_total".into(), json!(total));
    }
    if let (Some(dead), Scenario::Snew) = (&dead, o.scenario) {
        let (attempts, contacted) = dead.counts();
        attack.insert("outgoing_attempts_incl_tail".into(), json!(attempts));
        attack.insert("dead_relays_contacted_incl_tail".into(), json!(contacted));
    }
    let end_status = mem_status(pid).ok();
    let process_alive = end_status.is_some();
    let probe = tokio::time::timeout(CYCLE_TIMEOUT, good.cycle()).await;
    let final_probe_ok = matches!(probe, Ok(Ok(())));
    match &probe {
        Ok(Err(e)) => notes.push(format!("final probe failed: {e}")),
        Err(_) => notes.push("final probe timed out".into()),
        Ok(Ok(())) => {}
    }
    let store_after = target.data_dir().map(|d| spawn::dir_bytes(d));
    let (baseline, during, after) = phases(&samples);
    let second = second_samples.map(|s| {
        let (b, d, a) = phases(&s);
        (second_name.clone().unwrap_or_default(), b, d, a)
    });
    Ok(AbuseReport {
        scenario: o.scenario,
        label: o.label.clone(),
        server: o.scenario.server(),
        baseline,
        during,
        after,
        second,
        attack_secs: (attack_end - attack_start).as_secs_f64(),
        rss_before_kb: rss_before.map(|m| m.vm_rss_kb),
        rss_max_sampled_kb: rss_max,
        peak_rss_kb: end_status.map(|m| m.vm_hwm_kb).or(rss_max),
        fds_max,
        process_alive,
        final_probe_ok,
        store_bytes: store_before.zip(store_after),
        attack,
        notes,
    })
}
