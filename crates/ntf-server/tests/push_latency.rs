//! SEND → push at apns-sink without waiting for a tick: with the relay's default (adaptive)
//! NMSG delivery, a single notification reaches the sink well within a second, where the
//! reference's fixed 1.5 s tick made it 0.1–1.5 s (≈1.4 s for a SEND right after a push).
//! Real relay, ntf-server and in-process push-server over real TLS on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ntf_server::PolicyMode;
use smp_server::server::notify::NtfDelivery;

/// Generous: the adaptive path takes milliseconds; the bound only separates it from a tick.
const BOUND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_notification_reaches_the_sink_without_a_tick() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let cfg = relay_config(dir.path());
    // the relay's default, as `smp-server init` writes it
    assert_eq!(cfg.notifications.delivery, NtfDelivery::DEFAULT);
    let delivery = cfg.notifications.delivery;
    let relay = Relay::start_with_delivery(cfg, delivery).await;
    let ntf = Ntf::start(ntf_config(dir.path(), true, PolicyMode::Reference), &push).await;
    let mut c = ntf.client().await;
    let smp = relay.client().await;
    let mut d = Device::new(1);
    register(&mut c, &push, &mut d).await;
    let q = Queue::new(&smp, &relay.server).await;
    subscribe(&mut c, &d, &q).await;

    // one notification at a time; each SEND right after the previous push arrived (with a
    // fixed tick that is just after a flush, i.e. the worst phase)
    for k in 0..3 {
        let before = push.received(d.sink_token()).len();
        let t = Instant::now();
        send(&smp, &q, format!("message {k}").as_bytes()).await;
        let (_, items) = wait_message_push(&push, &d, before).await;
        let took = t.elapsed();
        assert_eq!(items.last().unwrap().queue, q.queue_ntf());
        assert!(
            took < BOUND,
            "notification {k}: SEND → push took {took:?} (relay delivery {delivery:?})"
        );
        fetch_and_check(&smp, &q, items.last().unwrap()).await;
    }
    ntf.stop().await;
    relay.stop().await;
}
