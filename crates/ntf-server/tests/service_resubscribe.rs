//! `[SUBSCRIBER] use_service_credentials = on` (issue 15) over real TLS sockets: two relays,
//! an ntf-server with a SQLite store subscribes queues on both (its `NSUB`s signed in a
//! notifier service session, so each relay associates them with the service), is restarted,
//! and subscribes them all again with one `NSUBS` per relay and no `NSUB` (counted at the
//! relays: `subscription_ntf_requests_batch` counts `NSUBS`, `subscription_ntf_requests`
//! counts every notifier subscribed, one per `NSUB` and `n` per `NSUBS`); an `NMSG` after the
//! restart still turns into a push. With the option off the same restart sends one `NSUB`
//! per queue and no `NSUBS`.

mod common;

use std::time::Duration;

use common::*;
use hush_proto::address::ProtocolServer;
use hush_proto::ntf::SubStatus;
use ntf_server::PolicyMode;
use smp_server::server::RelayOptions;
use smp_server::testing::TestRelay;

const PER_RELAY: usize = 6;

async fn relay(dir: &std::path::Path) -> (TestRelay, ProtocolServer) {
    let mut config = relay_config(dir);
    config.notifications.delivery = smp_server::server::notify::NtfDelivery::Fixed {
        interval: Duration::from_millis(50),
    };
    let r = TestRelay::start(config, RelayOptions::default())
        .await
        .unwrap();
    let server = ProtocolServer::parse(&r.address()).unwrap();
    (r, server)
}

/// (`NSUBS` commands, notifier subscriptions) counted by the relay so far.
fn counts(r: &TestRelay) -> (u64, u64) {
    (
        r.metrics.subscription_ntf_requests_batch.get(),
        r.metrics.subscription_ntf_requests.get(),
    )
}

async fn run(service: bool) {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let mut relays = Vec::new();
    for i in 0..2 {
        relays.push(relay(&dir.path().join(format!("r{i}"))).await);
    }
    let mut config = ntf_config(&dir.path().join("ntf"), true, PolicyMode::Reference);
    config.use_service_credentials = service;
    let ntf = Ntf::start(config, &push).await;
    let mut c = ntf.client().await;
    let mut d = Device::new(7);
    register(&mut c, &push, &mut d).await;
    let mut queues = Vec::new();
    for (r, server) in &relays {
        let smp = hush_client::SmpClient::connect(server, hush_client::ClientConfig::default())
            .await
            .unwrap()
            .0;
        for _ in 0..PER_RELAY {
            let q = Queue::new(&smp, server).await;
            let sub = subscribe(&mut c, &d, &q).await;
            queues.push((q, sub));
        }
        let (batches, subs) = counts(r);
        assert_eq!(batches, 0, "no NSUBS before the restart");
        assert_eq!(subs, PER_RELAY as u64, "one NSUB per queue");
        smp.close().await;
    }
    drop(c);
    let config = ntf.stop().await;

    // Restart: every stored subscription subscribed again.
    let before: Vec<(u64, u64)> = relays.iter().map(|(r, _)| counts(r)).collect();
    let ntf = Ntf::start(config, &push).await;
    let mut c = ntf.client().await;
    for (_, sub) in &queues {
        wait_sub(&mut c, &d, sub, SubStatus::Active).await;
    }
    // Every relay has answered by now; give stray NSUBs time to show up in the counts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for ((r, _), (b0, s0)) in relays.iter().zip(&before) {
        let (b1, s1) = counts(r);
        if service {
            assert_eq!(b1 - b0, 1, "one NSUBS per relay");
            assert_eq!(s1 - s0, PER_RELAY as u64, "SOKS n covers all, no NSUB");
        } else {
            assert_eq!(b1 - b0, 0, "no NSUBS without service credentials");
            assert_eq!(s1 - s0, PER_RELAY as u64, "one NSUB per queue");
        }
    }

    // NMSG → push after the restart, on both relays.
    for (q, _) in [&queues[0], &queues[PER_RELAY]] {
        let smp = hush_client::SmpClient::connect(&q.server, hush_client::ClientConfig::default())
            .await
            .unwrap()
            .0;
        let n = push.received(d.sink_token()).len();
        send(&smp, q, b"after restart").await;
        let (_, items) = wait_message_push(&push, &d, n).await;
        assert_eq!(
            fetch_and_check(&smp, q, items.last().unwrap()).await,
            b"after restart"
        );
        smp.close().await;
    }
    ntf.stop().await;
    for (mut r, _) in relays {
        r.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resubscribes_with_one_nsubs_per_relay() {
    run(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_service_credentials_restart_sends_nsub_per_queue() {
    run(false).await;
}

/// Turning the option on for subscriptions made without it: the first restart's `NSUBS`
/// answers `SOKS 0`, so every queue gets its `NSUB` (now signed by the service, which
/// associates it); the next restart needs only `NSUBS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_service_credentials_on_associates_on_the_first_restart() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let (r, server) = relay(&dir.path().join("r")).await;
    let config = ntf_config(&dir.path().join("ntf"), true, PolicyMode::Reference);
    let ntf = Ntf::start(config, &push).await;
    let mut c = ntf.client().await;
    let mut d = Device::new(8);
    register(&mut c, &push, &mut d).await;
    let smp = hush_client::SmpClient::connect(&server, hush_client::ClientConfig::default())
        .await
        .unwrap()
        .0;
    let mut queues = Vec::new();
    for _ in 0..PER_RELAY {
        let q = Queue::new(&smp, &server).await;
        let sub = subscribe(&mut c, &d, &q).await;
        queues.push((q, sub));
    }
    drop(c);
    let mut config = ntf.stop().await;
    config.use_service_credentials = true;
    for (round, (nsubs, nsub)) in [(1, PER_RELAY as u64), (1, 0)].into_iter().enumerate() {
        let (b0, s0) = counts(&r);
        let ntf = Ntf::start(config.clone(), &push).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        // every notifier subscribed again: n by NSUBS (0 the first time) + one per NSUB
        while counts(&r).1 - s0 < nsub.max(PER_RELAY as u64) {
            assert!(tokio::time::Instant::now() < deadline, "round {round}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (b1, s1) = counts(&r);
        assert_eq!(b1 - b0, nsubs, "round {round}: NSUBS");
        assert_eq!(s1 - s0, PER_RELAY as u64, "round {round}: subscribed");
        let mut c = ntf.client().await;
        for (_, sub) in &queues {
            wait_sub(&mut c, &d, sub, SubStatus::Active).await;
        }
        drop(c);
        config = ntf.stop().await;
    }
    // still pushed after both rounds
    let ntf = Ntf::start(config, &push).await;
    let n = push.received(d.sink_token()).len();
    send(&smp, &queues[1].0, b"on").await;
    let (_, items) = wait_message_push(&push, &d, n).await;
    assert_eq!(
        fetch_and_check(&smp, &queues[1].0, items.last().unwrap()).await,
        b"on"
    );
    smp.close().await;
    ntf.stop().await;
    let mut r = r;
    r.stop().await.unwrap();
}
