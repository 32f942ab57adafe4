//! Smoke test (kept tiny on purpose: the real runs are the manual commands in BENCHMARKS.md):
//! a few idle connections against an in-process relay, and a sub-second throughput run against
//! the relay, Mosquitto (127.0.0.1:1883) and NATS (127.0.0.1:4222), which run on this machine
//! (design §5); a missing broker fails the test.

use std::time::Duration;

use hush_proto::address::ServerWithAuth;
use loadgen::idle::{IdleOptions, run_idle};
use loadgen::throughput::{ThroughputOptions, render_table, run_all};
use smp_server::server::RelayOptions;
use smp_server::testing::TestRelay;

/// An in-process relay on a free loopback port (`smp_server::testing`) and its address.
async fn start_relay(dir: &std::path::Path) -> (ServerWithAuth, TestRelay) {
    let relay = TestRelay::start_in(dir, RelayOptions::default())
        .await
        .unwrap();
    (ServerWithAuth::parse(&relay.address()).unwrap(), relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_throughput_smoke() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut relay) = start_relay(dir.path()).await;

    // Idle: 4 connections × 2 queues; the relay is in this process, so its "pid" is ours.
    let report = run_idle(&IdleOptions {
        server: server.clone(),
        relay_pid: Some(std::process::id()),
        connections: 4,
        queues_per_conn: 2,
        concurrency: 2,
        settle: Duration::from_millis(100),
        progress: false,
    })
    .await
    .unwrap();
    assert_eq!(report.queues, 8);
    assert_eq!(report.alive_after_settle, 4);
    let settled = report.relay_settled.unwrap();
    // 4 client sockets + 4 relay sockets more than before.
    assert!(
        settled.fds >= report.relay_before.unwrap().fds + 8,
        "{report:?}"
    );
    assert!(report.relay_kb_per_conn().is_some());
    // The half-way reading was taken with 2 of the 4 connections open.
    let (half_n, half) = report.relay_half.unwrap();
    assert_eq!(half_n, 2);
    assert!(
        half.fds >= report.relay_before.unwrap().fds + 4,
        "{report:?}"
    );
    assert!(report.relay_marginal_kb_per_conn().is_some());
    assert!(report.render().contains("relay per connection"));

    // Throughput: all three systems, one small size, a fraction of a second each.
    let results = run_all(&ThroughputOptions {
        hush: Some(server),
        hush_store: "SQLite, sync=full".into(),
        // The relay runs in this process.
        hush_pid: Some(std::process::id()),
        mqtt_pid: None,
        nats_pid: None,
        mqtt: Some("127.0.0.1:1883".into()),
        nats: Some("127.0.0.1:4222".into()),
        pairs: 2,
        window: 2,
        sizes: vec![64],
        warmup: Duration::from_millis(200),
        duration: Duration::from_millis(500),
    })
    .await
    .unwrap();
    assert_eq!(results.len(), 3);
    for r in &results {
        assert!(r.messages > 0, "{} received nothing", r.system);
        assert!(r.p50_us > 0.0 && r.p99_us >= r.p50_us, "{r:?}");
        assert!(r.client_cpu_us_per_msg.is_some(), "{r:?}");
    }
    let table = render_table(&results);
    assert!(table.contains("| 64 B | hush relay |"), "{table}");
    assert!(table.contains("1.00×"), "{table}");
    assert!(results[0].server_cpu_us_per_msg.is_some());
    assert!(results[1].server_cpu_us_per_msg.is_none());
    // Stop without waiting for the relay (as dropping it would).
    relay.take_trigger().unwrap().trigger();
}
