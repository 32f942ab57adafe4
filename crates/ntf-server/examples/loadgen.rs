//! Load generator / benchmark: SEND → push arrives at apns-sink.
//!
//! Starts R real smp-server relays, the ntf-server (SQLite store unless `--memory`), an
//! in-process push-server delivering over HTTP/2 to apns-sink, registers T device tokens, creates
//! S queues with notifier credentials spread over the relays and subscribes them (SNEW → NSUB),
//! then sends M messages with the notification flag from C concurrent senders and matches every
//! push the sink receives to its message (decrypting the push and the NMSG metadata, as a device
//! does). Prints SEND → push latency percentiles and pushes/s.
//!
//! ```text
//! cargo run --release -p ntf-server --example loadgen -- \
//!     --relays 3 --subs 10000 --tokens 100 --messages 5000 --concurrency 64 --flush-ms 1500
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hush_proto::ntf::{NtfResponse, SubStatus};
use ntf_server::PolicyMode;

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
    /// Paced sending (messages per second over all senders); 0 = as fast as possible.
    rate: u64,
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
            "--subs" => a.subs = n(i) as usize,
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
    let push = push().await;
    let mut relays = Vec::new();
    for i in 0..a.relays {
        let rdir = dir.path().join(format!("relay{i}"));
        let mut cfg = relay_config(&rdir);
        cfg.store.enable = !a.relay_memory;
        // The relay flushes NMSGs of at most this many notifier ids per subscriber connection
        // and flush (its per-client queue, reference tbqSize 128).
        cfg.limits.client_queue_blocks = a.relay_queue_blocks;
        relays.push(Relay::start_with_flush(cfg, Duration::from_millis(a.flush_ms)).await);
    }
    let ntf = Ntf::start(
        ntf_config(dir.path(), !a.memory, PolicyMode::Reference),
        &push,
    )
    .await;
    assert!(
        a.messages <= a.subs,
        "one message per queue (exact matching): --messages <= --subs"
    );
    println!(
        "setup: {} relays (store {}), {} tokens, {} subscriptions, ntf store {}",
        a.relays,
        if a.relay_memory { "memory" } else { "sqlite" },
        a.tokens,
        a.subs,
        if a.memory { "memory" } else { "sqlite" }
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

    // load: M messages, C concurrent senders, each message to a different queue (a permutation),
    // so that every push names exactly one SEND
    let t_start = unix_ms();
    let wall = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let per = a.messages.div_ceil(a.concurrency);
    for s in 0..a.concurrency {
        let queues = queues.clone();
        let smps = smps.clone();
        let n = per.min(a.messages.saturating_sub(s * per));
        let relays_n = a.relays;
        let (rate, conc) = (a.rate, a.concurrency);
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
    let mut sends: Vec<(usize, u64)> = Vec::new();
    while let Some(r) = set.join_next().await {
        sends.extend(r.unwrap());
    }
    let send_wall = wall.elapsed();
    // wait for all pushes (one per notification under the reference policy)
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last_report = Instant::now();
    let mut ntf_done: Option<Duration> = None;
    while push.sink.received().len() < sink_before + a.messages && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
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
    let recv_wall = wall.elapsed();
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
            hush_client::decrypt_nmsg(&q.ntf.rcv_ntf_dh_secret, &item.nonce, &item.enc_meta)
                .unwrap();
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
        "messages sent: {} in {:?} ({:.0} SEND/s)",
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
        "SEND → push latency ms: p50 {} p90 {} p99 {} max {} (relay NMSG flush interval {} ms, relay client queue {})",
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
        a.flush_ms,
        a.relay_queue_blocks
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
