//! Smoke test of `loadgen abuse` (the real runs and their figures are in RELIABILITY.md): the
//! `new-flood` and `stall` scenarios at tiny scale against an in-process relay (its "pid" is
//! this process), checking that each produces a sane report.

use std::net::SocketAddr;
use std::time::Duration;

use hush_proto::address::ServerWithAuth;
use loadgen::abuse::{AbuseOptions, RelayTarget, Scenario, Target, run};
use smp_server::server::RelayOptions;
use smp_server::testing::TestRelay;

fn tiny(scenario: Scenario) -> AbuseOptions {
    let mut o = AbuseOptions::new(scenario);
    o.label = "smoke".into();
    o.count = 20;
    o.connections = 2;
    o.in_flight = 2;
    o.duration = Duration::from_millis(1500);
    o.baseline = Duration::from_millis(500);
    o.tail = Duration::from_millis(300);
    o.good_interval = Duration::from_millis(50);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_new_flood_and_stall_smoke() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start_in(dir.path(), RelayOptions::default())
        .await
        .unwrap();
    let server = ServerWithAuth::parse(&relay.address()).unwrap();
    let target = Target::Relay(RelayTarget {
        server,
        addr: SocketAddr::from(([127, 0, 0, 1], relay.port())),
        pid: std::process::id(),
        data_dir: Some(relay.paths().data_dir.clone()),
    });

    let r = run(&tiny(Scenario::NewFlood), &target).await.unwrap();
    let created = r.attack["queues_created"].as_u64().unwrap();
    assert!(created > 0, "{:?}", r.attack);
    assert!(r.attack["connections_opened"].as_u64().unwrap() >= 2);
    // The good client worked alone and during the attack, and the relay is still up.
    assert!(
        r.baseline.ok > 0 && r.baseline.ok == r.baseline.attempts,
        "{r:?}"
    );
    assert!(r.during.attempts > 0 && r.during.ok > 0, "{r:?}");
    let (p50, p99) = (r.during.p50_ms.unwrap(), r.during.p99_ms.unwrap());
    assert!(p50 > 0.0 && p99 >= p50, "{r:?}");
    assert!(r.survived(), "{r:?}");
    assert!(r.peak_rss_kb.unwrap() >= r.rss_before_kb.unwrap());
    // The created queues were stored.
    let (before, after) = r.store_bytes.unwrap();
    assert!(after > before, "{before} -> {after}");
    let json = r.to_json();
    assert_eq!(json["scenario"], "new-flood");
    assert_eq!(json["survived"], true);
    assert!(
        r.summary()
            .starts_with("abuse new-flood [smoke] smp-server: good ")
    );

    let r = run(&tiny(Scenario::Stall), &target).await.unwrap();
    let connected = r.attack["tcp_connected"].as_u64().unwrap();
    assert!(connected >= 20, "{:?}", r.attack);
    // Every connection was either held to the end or closed by the relay (then reopened).
    let held = r.attack["held_to_end"].as_u64().unwrap();
    let closed = r.attack["closed_by_server"].as_u64().unwrap();
    assert_eq!(held + closed, connected, "{:?}", r.attack);
    assert!(held <= 20, "{:?}", r.attack);
    // Far below the relay's connection limit: fresh connections keep working.
    assert!(r.during.ok > 0, "{r:?}");
    assert!(r.survived(), "{r:?}");
    // The client connected before the attack kept working too.
    let (name, _, during, _) = r.second.as_ref().unwrap();
    assert_eq!(name, "connected before the attack");
    assert!(during.ok > 0 && during.ok == during.attempts, "{r:?}");
    // 20 stalled sockets on each side, sampled while held.
    assert!(r.fds_max.unwrap() >= 40, "{r:?}");

    relay.take_trigger().unwrap().trigger();
}
