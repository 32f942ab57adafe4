//! Figures (ignored; run by hand, release): S subscriptions over 3 real relays (SQLite stores,
//! in process), an ntf-server with a SQLite store restarted, without and with
//! `[SUBSCRIBER] use_service_credentials`: time from the restart until the relays have
//! subscribed every stored notifier again (their `subscription_ntf_requests`), this process's CPU time over that window (relays + ntf-server,
//! /proc/self/stat) and the relays' counters (`NSUBS` commands, notifier subscriptions).
//!
//! ```text
//! NTFSVC_SUBS=30000 cargo test --release -p ntf-server --test service_resubscribe_figures \
//!     -- --ignored --nocapture
//! ```
//!
//! The service run needs server.rs to build its connector with
//! `relays::CheckedConnector::for_config` (otherwise it measures plain `NSUB`s twice).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hush_proto::ntf::{NtfResponse, SubStatus};
use ntf_server::PolicyMode;
use smp_server::server::RelayOptions;
use smp_server::testing::TestRelay;

const RELAYS: usize = 3;

fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64 / 100.0
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn run(service: bool, subs: usize) {
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let mut relays = Vec::new();
    for i in 0..RELAYS {
        let mut cfg = relay_config(&dir.path().join(format!("r{i}")));
        cfg.limits.new_queues_per_minute = 0;
        cfg.limits.new_queues_per_minute_per_ip = 0;
        let r = TestRelay::start(cfg, RelayOptions::default())
            .await
            .unwrap();
        let server = hush_proto::address::ProtocolServer::parse(&r.address()).unwrap();
        relays.push((r, server));
    }
    let mut cfg = ntf_config(&dir.path().join("ntf"), true, PolicyMode::Reference);
    cfg.use_service_credentials = service;
    cfg.token_rate = hush_server_common::Rate::new(1e6, 1_000_000);
    cfg.token_rate_per_connection = hush_server_common::Rate::new(1e6, 1_000_000);
    cfg.token_rate_per_ip = hush_server_common::Rate::new(1e6, 1_000_000);
    let ntf = Ntf::start(cfg, &push).await;
    let mut c = ntf.client().await;
    let tokens = subs.div_ceil(4000);
    let mut devices = Vec::new();
    for i in 0..tokens {
        let mut d = Device::new(0);
        d.token_hex = format!("{:064x}", i + 1);
        register(&mut c, &push, &mut d).await;
        devices.push(Arc::new(d));
    }
    let mut smps = Vec::new();
    for (_, s) in &relays {
        smps.push(
            hush_client::SmpClient::connect(s, hush_client::ClientConfig::default())
                .await
                .unwrap()
                .0,
        );
    }
    let t0 = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..subs {
        let smp = smps[i % RELAYS].clone();
        let server = relays[i % RELAYS].1.clone();
        let sem = sem.clone();
        set.spawn(async move {
            let _p = sem.acquire_owned().await.unwrap();
            Queue::new(&smp, &server).await
        });
    }
    let mut queues = Vec::new();
    while let Some(q) = set.join_next().await {
        queues.push(Arc::new(q.unwrap()));
    }
    let conns = 16;
    let mut set = tokio::task::JoinSet::new();
    for k in 0..conns {
        let mut c = ntf.client().await;
        let qs: Vec<_> = (k..subs)
            .step_by(conns)
            .map(|i| (queues[i].clone(), devices[i % tokens].clone()))
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
    let active = |ntf: &Ntf| {
        ntf.core
            .store
            .subs()
            .iter()
            .filter(|s| s.status == SubStatus::Active)
            .count()
    };
    while active(&ntf) < subs {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "[{}] {subs} queues created and subscribed in {:?}",
        if service { "service" } else { "plain" },
        t0.elapsed()
    );
    for s in &smps {
        s.close().await;
    }
    drop(c);
    let cfg = ntf.stop().await;
    let before: Vec<(u64, u64)> = relays
        .iter()
        .map(|(r, _)| {
            (
                r.metrics.subscription_ntf_requests_batch.get(),
                r.metrics.subscription_ntf_requests.get(),
            )
        })
        .collect();

    let up = load();
    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    let ntf = Ntf::start(cfg, &push).await;
    // The stored statuses survive the restart: wait for the relays to have subscribed every
    // notifier again (one per NSUB, n per NSUBS).
    let resubscribed = || -> u64 {
        relays
            .iter()
            .zip(&before)
            .map(|((r, _), (_, s0))| r.metrics.subscription_ntf_requests.get() - s0)
            .sum()
    };
    while resubscribed() < subs as u64 {
        assert!(t0.elapsed() < Duration::from_secs(120), "not resubscribed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall = t0.elapsed();
    let cpu = cpu_secs() - cpu0;
    let (mut nsubs, mut subscribed) = (0, 0);
    for ((r, _), (b0, s0)) in relays.iter().zip(&before) {
        nsubs += r.metrics.subscription_ntf_requests_batch.get() - b0;
        subscribed += r.metrics.subscription_ntf_requests.get() - s0;
    }
    println!(
        "[{}] restart: {subs} subscriptions subscribed again at the relays after {wall:?}, {cpu:.2} s CPU \
         ({:.1} us/subscription); relays counted {nsubs} NSUBS and {subscribed} notifier \
         subscriptions (NSUB + SOKS n); load at start: {up}",
        if service { "service" } else { "plain" },
        cpu * 1e6 / subs as f64,
    );
    ntf.stop().await;
    for (mut r, _) in relays {
        r.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figures, run by hand"]
async fn restart_figures() {
    let subs: usize = std::env::var("NTFSVC_SUBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    run(false, subs).await;
    run(true, subs).await;
}
