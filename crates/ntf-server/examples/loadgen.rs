//! Load generator / benchmark: SEND → push arrives at apns-sink.
//!
//! Starts R real smp-server relays, the ntf-server (SQLite store unless `--memory`), an
//! in-process push-server delivering over HTTP/2 to apns-sink, registers T device tokens, creates
//! S queues with notifier credentials spread over the relays and subscribes them (SNEW → NSUB),
//! then sends M messages with the notification flag and matches every push the sink receives to
//! its message (decrypting the push and the NMSG metadata, as a device does). Prints SEND → push
//! latency percentiles and pushes/s.
//!
//! Load shapes:
//! * `--rate 0` (default): one message at a time, the next SEND only after the previous push
//!   reached the sink (unloaded latency);
//! * `--rate N`: N SEND/s paced over `--concurrency` senders;
//! * `--burst`: M messages from C senders as fast as they go;
//! * `--direct`: no SEND; M NMSG events (one per queue, as the relay connection would deliver
//!   them) are fed from one task into the ntf-server core exactly where the relay-event task
//!   feeds them (store back-pressure, then `Core::on_pool_event`), as fast as the core takes
//!   them (or at `--rate N`): ntf-server + push-server throughput and latency from NMSG
//!   receipt, not capped by the relays.
//!
//! Relay NMSG delivery: `--relay-delivery adaptive` (the relay default, `--max-delay-ms`,
//! default 10) or `fixed` (every `--flush-ms`, default 1500 = the reference tick).
//!
//! Push gateway: in process (default), or `--remote`: the ntf-server submits over the
//! push-server's network gateway (TLS 1.3 on loopback, pinned certificate, credential, the JSON
//! line protocol; `--remote-connections N`, default the ntf-server's) to the same push service
//! (same outbox, dispatcher and apns-sink).
//!
//! ```text
//! cargo build --release -p ntf-server --example loadgen
//! ./target/release/examples/loadgen --relays 3 --subscriptions 10000 --messages 200 --rate 0
//! ./target/release/examples/loadgen --relays 3 --subscriptions 10000 --messages 10000 --rate 1000
//! ./target/release/examples/loadgen --relays 3 --subscriptions 10000 --messages 10000 --direct
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hush_proto::ntf::{NtfResponse, SubStatus};
use ntf_server::{Config, NtfServer, PolicyMode};
use push_server::AnyGateway;
use smp_server::ShutdownTrigger;
use smp_server::server::notify::NtfDelivery;

/// The ntf-server with either gateway (the harness's `Ntf` is in-process only).
struct NtfAny {
    addr: std::net::SocketAddr,
    fingerprint: [u8; 32],
    config: Config,
    core: Arc<ntf_server::Core<AnyGateway>>,
    trigger: Option<ShutdownTrigger>,
    task: Option<tokio::task::JoinHandle<Result<(), ntf_server::RunError>>>,
}

impl NtfAny {
    async fn start(config: Config, gw: Arc<AnyGateway>) -> NtfAny {
        let (trigger, shutdown) = smp_server::shutdown_channel();
        let s: NtfServer<AnyGateway> = ntf_server::start(config.clone(), gw, shutdown)
            .await
            .unwrap();
        let mut config = config;
        config.ports = vec![s.addrs[0].port()];
        NtfAny {
            addr: s.addrs[0],
            fingerprint: s.fingerprint,
            config,
            core: s.core.clone(),
            trigger: Some(trigger),
            task: Some(tokio::spawn(s.wait())),
        }
    }

    async fn stop(mut self) -> Config {
        if let Some(t) = self.trigger.take() {
            t.trigger();
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("ntf-server did not stop")
                .unwrap()
                .unwrap();
        }
        self.config.clone()
    }

    async fn client(&self) -> NtfClient {
        NtfClient::connect(self.addr, &self.fingerprint).await
    }
}

/// The push service of `push` served on a loopback TLS listener (as `push-server start` serves
/// it), and a [`push_server::net::RemoteGateway`] to it with `connections` pooled connections.
async fn remote_gateway(
    dir: &std::path::Path,
    push: &Push,
    connections: usize,
) -> (
    push_server::net::RemoteGateway,
    tokio::sync::watch::Sender<bool>,
) {
    use push_server::net;
    let pdir = dir.join("push-server");
    let out = push_server::cli::init(&pdir, "127.0.0.1".parse().unwrap(), 0, "ntf1").unwrap();
    let cert = std::fs::read(pdir.join(push_server::config::CERT_FILE)).unwrap();
    let key = std::fs::read(pdir.join(push_server::config::KEY_FILE)).unwrap();
    let acceptor = push_server::http_util::tls_acceptor(&cert, &key, &[], true).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let clients = HashMap::from([("ntf1".to_string(), out.credential.clone())]);
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(net::serve(
        listener,
        acceptor,
        push.service.clone(),
        net::Credentials::new(&clients),
        net::ServerLimits::default(),
        rx,
    ));
    let gw = net::RemoteGateway::with_connections(
        net::RemoteConfig {
            host: addr.ip().to_string(),
            port: addr.port(),
            fingerprint: net::parse_fingerprint(&out.fingerprint).unwrap(),
            credential: Some(out.credential),
            timeout: Duration::from_secs(10),
        },
        connections,
    )
    .unwrap();
    (gw, tx)
}

struct Args {
    relays: usize,
    subs: usize,
    tokens: usize,
    messages: usize,
    concurrency: usize,
    flush_ms: u64,
    memory: bool,
    relay_memory: bool,
    relay_queue_blocks: usize,
    /// Paced sending (messages per second over all senders); 0 = one at a time.
    rate: u64,
    /// As fast as the senders go.
    burst: bool,
    /// NMSG events fed into the core (no relay SEND).
    direct: bool,
    /// Relay NMSG delivery: adaptive (true) or fixed every `flush_ms`.
    adaptive: bool,
    max_delay_ms: u64,
    /// After setup: stop and start the ntf-server, time until every subscription is ACTIVE again.
    restart: bool,
    /// Submit over the push-server's TLS gateway instead of in process.
    remote: bool,
    remote_connections: usize,
}

fn args() -> Args {
    let mut a = Args {
        relays: 3,
        subs: 10_000,
        tokens: 100,
        messages: 5_000,
        concurrency: 64,
        flush_ms: 1500,
        memory: false,
        relay_memory: false,
        relay_queue_blocks: 128,
        rate: 0,
        burst: false,
        direct: false,
        adaptive: true,
        max_delay_ms: 10,
        restart: false,
        remote: false,
        remote_connections: push_server::net::RemoteGateway::DEFAULT_CONNECTIONS,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let n = |i: usize| {
            v.get(i + 1)
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match v[i].as_str() {
            "--relays" => a.relays = n(i) as usize,
            "--subs" | "--subscriptions" => a.subs = n(i) as usize,
            "--max-delay-ms" => a.max_delay_ms = n(i),
            "--relay-delivery" => {
                a.adaptive = match v.get(i + 1).map(String::as_str) {
                    Some("adaptive") => true,
                    Some("fixed") => false,
                    other => panic!("--relay-delivery adaptive|fixed, not {other:?}"),
                }
            }
            "--burst" => {
                a.burst = true;
                i += 1;
                continue;
            }
            "--restart" => {
                a.restart = true;
                i += 1;
                continue;
            }
            "--direct" => {
                a.direct = true;
                i += 1;
                continue;
            }
            "--remote" => {
                a.remote = true;
                i += 1;
                continue;
            }
            "--remote-connections" => a.remote_connections = n(i) as usize,
            "--tokens" => a.tokens = n(i) as usize,
            "--messages" => a.messages = n(i) as usize,
            "--concurrency" => a.concurrency = n(i) as usize,
            "--flush-ms" => a.flush_ms = n(i),
            "--rate" => a.rate = n(i),
            "--relay-queue-blocks" => a.relay_queue_blocks = n(i) as usize,
            "--memory" => {
                a.memory = true;
                i += 1;
                continue;
            }
            "--relay-memory" => {
                a.relay_memory = true;
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

/// Thread name of the apns-sink's runtime.
const SINK_THREAD: &str = "apns-sink";

fn unix_ms() -> u64 {
    push_server::unix_now_ms()
}

/// A permutation of 0..n (multiplication by a prime that does not divide n).
fn permute(i: usize, n: usize) -> usize {
    let p = [7919usize, 7927, 7933, 7937]
        .into_iter()
        .find(|p| !n.is_multiple_of(*p))
        .unwrap_or(1);
    i * p % n
}

/// CPU seconds (user + system) used so far by this process's threads, summed per thread name
/// (from `/proc/self/task/*/stat`; empty where there is no procfs). Clock ticks of 1/100 s.
fn thread_cpu() -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ... : comm may hold spaces, fields after the last ')'
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the comm
        *out.entry(comm).or_insert(0.0) += (ticks(11) + ticks(12)) as f64 / 100.0;
    }
    out
}

fn pct(v: &[u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().unwrap();
    // The apns-sink (the stand-in for Apple) on threads of its own, so that its CPU is reported
    // apart from the ntf-server's and push-server's.
    let sink_rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(SINK_THREAD)
            .enable_all()
            .build()
            .unwrap(),
    ));
    let push = push_on(Some(sink_rt.handle().clone())).await;
    let mut relays = Vec::new();
    for i in 0..a.relays {
        let rdir = dir.path().join(format!("relay{i}"));
        let mut cfg = relay_config(&rdir);
        cfg.store.enable = !a.relay_memory;
        // The relay flushes NMSGs of at most this many notifier ids per subscriber connection
        // and flush (its per-client queue, reference tbqSize 128).
        cfg.limits.client_queue_blocks = a.relay_queue_blocks;
        // all benchmark queues are created from one connection at once
        cfg.limits.new_queues_per_minute = 0;
        cfg.limits.new_queues_per_minute_per_ip = 0;
        let delivery = if a.adaptive {
            NtfDelivery::Adaptive {
                max_delay: Duration::from_millis(a.max_delay_ms),
            }
        } else {
            NtfDelivery::Fixed {
                interval: Duration::from_millis(a.flush_ms),
            }
        };
        relays.push(Relay::start_with_delivery(cfg, delivery).await);
    }
    let mut ntf_cfg = ntf_config(dir.path(), !a.memory, PolicyMode::Reference);
    // all benchmark tokens register from one connection at once
    ntf_cfg.token_rate = hush_server_common::Rate::new(1e6, 1_000_000);
    ntf_cfg.token_rate_per_connection = hush_server_common::Rate::new(1e6, 1_000_000);
    ntf_cfg.token_rate_per_ip = hush_server_common::Rate::new(1e6, 1_000_000);
    let (gw, _remote_stop) = if a.remote {
        let (gw, stop) = remote_gateway(dir.path(), &push, a.remote_connections).await;
        (Arc::new(AnyGateway::Remote(gw)), Some(stop))
    } else {
        (Arc::new(AnyGateway::InProcess((*push.gw).clone())), None)
    };
    let ntf = NtfAny::start(ntf_cfg, gw.clone()).await;
    assert!(
        a.messages <= a.subs,
        "one message per queue (exact matching): --messages <= --subs"
    );
    println!(
        "setup: {} relays (store {}), {} tokens, {} subscriptions, ntf store {}, push gateway {}",
        a.relays,
        if a.relay_memory { "memory" } else { "sqlite" },
        a.tokens,
        a.subs,
        if a.memory { "memory" } else { "sqlite" },
        if a.remote {
            format!("remote (TLS, {} connections)", a.remote_connections)
        } else {
            "in process".to_string()
        }
    );

    // devices
    let t0 = Instant::now();
    let mut c = ntf.client().await;
    let mut devices = Vec::new();
    for i in 0..a.tokens {
        let mut d = Device::new(0);
        d.token_hex = format!("{:064x}", i + 1);
        register(&mut c, &push, &mut d).await;
        devices.push(Arc::new(d));
    }
    println!("registered {} tokens in {:?}", a.tokens, t0.elapsed());

    // queues
    let t0 = Instant::now();
    let mut smps = Vec::new();
    for r in &relays {
        smps.push(r.client().await);
    }
    let mut set = tokio::task::JoinSet::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    for i in 0..a.subs {
        let smp = smps[i % a.relays].clone();
        let server = relays[i % a.relays].server.clone();
        let sem = sem.clone();
        set.spawn(async move {
            let _p = sem.acquire_owned().await.unwrap();
            (i, Queue::new(&smp, &server).await)
        });
    }
    let mut queues: Vec<Option<Queue>> = (0..a.subs).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, q) = r.unwrap();
        queues[i] = Some(q);
    }
    let queues: Vec<Arc<Queue>> = queues.into_iter().map(|q| Arc::new(q.unwrap())).collect();
    println!(
        "created {} queues with notifier keys in {:?}",
        a.subs,
        t0.elapsed()
    );

    // SNEW over 16 NTF connections
    let t0 = Instant::now();
    let conns = 16;
    let mut set = tokio::task::JoinSet::new();
    for k in 0..conns {
        let mut c = ntf.client().await;
        let qs: Vec<(Arc<Queue>, Arc<Device>)> = (k..a.subs)
            .step_by(conns)
            .map(|i| (queues[i].clone(), devices[i % a.tokens].clone()))
            .collect();
        set.spawn(async move {
            for (q, d) in qs {
                let (_, r) = c.cmd(Some(&d.key), b"", &q.snew(&d.token_id)).await;
                assert!(matches!(r, NtfResponse::SubId { .. }), "{r:?}");
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let snew_time = t0.elapsed();
    loop {
        let active = ntf
            .core
            .store
            .subs()
            .iter()
            .filter(|s| s.status == SubStatus::Active)
            .count();
        if active == a.subs {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "SNEW x{} in {:?} ({:.0}/s); all NSUB active after {:?}",
        a.subs,
        snew_time,
        a.subs as f64 / snew_time.as_secs_f64(),
        t0.elapsed()
    );

    let ntf = if a.restart {
        let cfg = ntf.stop().await;
        let t0 = Instant::now();
        let ntf = NtfAny::start(cfg, gw.clone()).await;
        // stored statuses survive the restart: count the new process's successful NSUBs
        while ntf.core.metrics.smp_subscribed.get() < a.subs as u64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "ntf-server restarted: all {} subscriptions NSUBed again (ACTIVE) after {:?}",
            a.subs,
            t0.elapsed()
        );
        ntf
    } else {
        ntf
    };

    // index: (server text, notifier id) → queue index; token → device
    let mut by_nid: HashMap<Vec<u8>, usize> = HashMap::new();
    for (i, q) in queues.iter().enumerate() {
        by_nid.insert(q.ntf.notifier_id.clone(), i);
    }
    let by_token: HashMap<String, Arc<Device>> = devices
        .iter()
        .map(|d| (d.token_hex.clone(), d.clone()))
        .collect();
    let sink_before = push.sink.received().len();

    let cpu_before = thread_cpu();
    let t_start = unix_ms();
    let wall = Instant::now();
    let mut sends: Vec<(usize, u64)> = Vec::new();
    if a.direct {
        // NMSG-equivalents into the core, one per queue, from one task (like the relay-event
        // task); timestamps before each hand-over
        let mut hush_nonce = [0u8; 24];
        let begin = tokio::time::Instant::now();
        for k in 0..a.messages {
            if let Some(us) = (k as u64 * 1_000_000).checked_div(a.rate) {
                tokio::time::sleep_until(begin + Duration::from_micros(us)).await;
            }
            let qi = permute(k, queues.len());
            let q = &queues[qi];
            hush_nonce[..8].copy_from_slice(&(k as u64).to_le_bytes());
            let t = unix_ms();
            ntf.core.store.throttle().await;
            ntf.core
                .on_pool_event(hush_client::PoolEvent::Event {
                    server: relays[qi % a.relays].server.clone(),
                    event: hush_client::ServerEvent::Notification {
                        notifier_id: q.ntf.notifier_id.clone(),
                        nonce: hush_nonce,
                        enc_meta: vec![0; 64],
                    },
                })
                .await;
            sends.push((qi, t));
        }
    } else if a.rate == 0 && !a.burst {
        // one at a time: the next SEND after the previous push reached the sink
        for k in 0..a.messages {
            let qi = permute(k, queues.len());
            let t = unix_ms();
            send(&smps[qi % a.relays], &queues[qi], b"benchmark message").await;
            sends.push((qi, t));
            assert!(
                push.sink
                    .wait_for(sink_before + k + 1, Duration::from_secs(30))
                    .await,
                "no push for message {k} in 30 s"
            );
        }
    } else {
        // M messages, C concurrent senders (paced at --rate or as fast as possible), each
        // message to a different queue (a permutation), so that every push names one SEND
        let mut set = tokio::task::JoinSet::new();
        let per = a.messages.div_ceil(a.concurrency);
        let rate = if a.burst { 0 } else { a.rate };
        for s in 0..a.concurrency {
            let queues = queues.clone();
            let smps = smps.clone();
            let n = per.min(a.messages.saturating_sub(s * per));
            let relays_n = a.relays;
            let conc = a.concurrency;
            let begin = tokio::time::Instant::now();
            set.spawn(async move {
                let mut sent = Vec::new();
                for k in 0..n {
                    let slot = (k * conc + s) as u64;
                    if let Some(us) = (slot * 1_000_000).checked_div(rate) {
                        tokio::time::sleep_until(begin + Duration::from_micros(us)).await;
                    }
                    let qi = permute(s * per + k, queues.len());
                    let q = &queues[qi];
                    let smp = &smps[qi % relays_n];
                    let t = unix_ms();
                    send(smp, q, b"benchmark message").await;
                    sent.push((qi, t));
                }
                sent
            });
        }
        while let Some(r) = set.join_next().await {
            sends.extend(r.unwrap());
        }
    }
    let send_wall = wall.elapsed();
    // wait for all pushes (one per notification under the reference policy)
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last_report = Instant::now();
    let mut ntf_done: Option<Duration> = None;
    while !push
        .sink
        .wait_for(sink_before + a.messages, Duration::from_millis(10))
        .await
        && Instant::now() < deadline
    {
        if ntf_done.is_none() && ntf.core.metrics.notifications_delivered.get() >= a.messages as u64
        {
            ntf_done = Some(wall.elapsed());
        }
        if std::env::var_os("LOADGEN_PROGRESS").is_some()
            && last_report.elapsed() >= Duration::from_secs(1)
        {
            last_report = Instant::now();
            let m = &ntf.core.metrics;
            eprintln!(
                "t={:?} nmsg={} submitted={} sink={}",
                wall.elapsed(),
                m.notifications_received.get(),
                m.notifications_delivered.get(),
                push.sink.received().len() - sink_before
            );
        }
    }
    if ntf_done.is_none() && ntf.core.metrics.notifications_delivered.get() >= a.messages as u64 {
        ntf_done = Some(wall.elapsed());
    }
    let recv_wall = wall.elapsed();
    let cpu_after = thread_cpu();
    let received = push.sink.received();
    let pushes = &received[sink_before.min(received.len())..];

    // match: each push lists the token's newest notifications (≤ 6, one per queue); each queue
    // got exactly one SEND, so latency = first push listing the queue − that SEND's time
    let sent_at: HashMap<usize, u64> = sends.iter().copied().collect();
    let mut first_push: HashMap<usize, u64> = HashMap::new();
    for p in pushes {
        let Some(d) = by_token.get(&p.token) else {
            continue;
        };
        let PushContent::Messages(items) = d.decode(p) else {
            continue;
        };
        // a device learns about a message from the first push that lists its queue
        for item in &items {
            let Some(&qi) = by_nid.get(&item.queue.notifier_id) else {
                continue;
            };
            let q = &queues[qi];
            // the device's check: the metadata decrypts with the queue's notification secret
            // (--direct feeds placeholder metadata)
            if !a.direct {
                hush_client::decrypt_nmsg(&q.ntf.rcv_ntf_dh_secret, &item.nonce, &item.enc_meta)
                    .unwrap();
            }
            let e = first_push.entry(qi).or_insert(p.received_at_ms);
            *e = (*e).min(p.received_at_ms);
        }
    }
    let mut lat: Vec<u64> = first_push
        .iter()
        .filter_map(|(qi, at)| sent_at.get(qi).map(|t| at.saturating_sub(*t)))
        .collect();
    lat.sort_unstable();
    let span_ms = pushes
        .iter()
        .map(|p| p.received_at_ms)
        .max()
        .unwrap_or(t_start)
        .saturating_sub(t_start)
        .max(1);
    println!("---");
    println!(
        "{}: {} in {:?} ({:.0}/s)",
        if a.direct {
            "NMSG events fed into the core"
        } else {
            "messages sent"
        },
        sends.len(),
        send_wall,
        sends.len() as f64 / send_wall.as_secs_f64()
    );
    println!(
        "pushes received by apns-sink: {} (distinct messages matched: {}), all in {:?}",
        pushes.len(),
        lat.len(),
        recv_wall
    );
    if let Some(t) = ntf_done {
        println!(
            "ntf-server: all {} notifications handed to the push-server {:?} after the first SEND ({:.0}/s)",
            a.messages,
            t,
            a.messages as f64 / t.as_secs_f64()
        );
    }
    println!(
        "throughput: {:.0} pushes/s at apns-sink (first SEND → last push)",
        pushes.len() as f64 * 1000.0 / span_ms as f64
    );
    println!(
        "{} → push latency ms: p50 {} p90 {} p99 {} max {} (relay NMSG delivery {}, relay client queue {}, load {})",
        if a.direct { "NMSG" } else { "SEND" },
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
        if a.adaptive {
            format!("adaptive max {} ms", a.max_delay_ms)
        } else {
            format!("fixed every {} ms", a.flush_ms)
        },
        a.relay_queue_blocks,
        if a.direct {
            "direct".to_string()
        } else if a.burst {
            format!("burst, {} senders", a.concurrency)
        } else if a.rate == 0 {
            "one at a time".to_string()
        } else {
            format!("{}/s", a.rate)
        }
    );
    // CPU of the whole process during the run, per thread name (threads that ended are missed)
    let mut cpu: Vec<(String, f64)> = cpu_after
        .iter()
        .map(|(k, v)| (k.clone(), v - cpu_before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect();
    cpu.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = cpu.iter().map(|(_, v)| v).sum();
    let per_push = |s: f64| s * 1e6 / pushes.len().max(1) as f64;
    println!(
        "CPU during the run: {:.2} s = {:.0} µs per push ({})",
        total,
        per_push(total),
        cpu.iter()
            .map(|(k, v)| format!("{k} {:.2} s", v))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // the main thread is the load generator's task: in --direct mode it runs the ntf-server
    // core's NMSG handling (as the relay-event task would), so it counts as ntf-server
    let sink_cpu: f64 = cpu
        .iter()
        .filter(|(k, _)| k.starts_with(SINK_THREAD))
        .map(|(_, v)| v)
        .sum();
    println!(
        "CPU per push: ntf-server + push-server {:.0} µs, apns-sink {:.0} µs",
        per_push(total - sink_cpu),
        per_push(sink_cpu)
    );
    let m = &ntf.core.metrics;
    println!(
        "ntf metrics: received {} delivered {} failed {}",
        m.notifications_received.get(),
        m.notifications_delivered.get(),
        m.notifications_failed.get()
    );
    ntf.stop().await;
    for r in relays {
        r.stop().await;
    }
}
