//! Adaptive `NMSG` delivery: a notification after a quiet period leaves at once (not on the
//! reference's 1.5 s tick), while notifications that arrive together within `max_delay` of a
//! flush wait for the next flush and share full blocks.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use hush_proto::smp::{BrokerMsg, Command};
use smp_server::server::RelayOptions;
use smp_server::server::notify::NtfDelivery;

/// A long bound so that the two behaviours are far apart on a noisy machine: the lone
/// notification must arrive well before it, the burst not before most of it has passed.
const MAX_DELAY: Duration = Duration::from_secs(3);
const QUEUES: usize = 400;

fn nmsg_nid(t: &[u8]) -> Vec<u8> {
    let t = hush_proto::transmission::decode_transmission(t, 18, true).unwrap();
    assert!(t.command.starts_with(b"NMSG "), "expected NMSG");
    t.entity_id.to_vec()
}

#[tokio::test]
async fn lone_notification_leaves_at_once_and_a_burst_shares_full_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let mut cfg = test_config(&paths);
    cfg.store.enable = false; // memory store: the test is about when NMSGs leave
    cfg.limits.new_queues_per_minute = 0;
    cfg.notifications.delivery = NtfDelivery::Adaptive {
        max_delay: MAX_DELAY,
    };
    let server = TestServer::start_with(cfg, RelayOptions::default()).await;
    let mut r = server.connect().await;
    let mut n = server.connect().await;
    let mut s = server.connect().await;

    let o = NewOpts {
        subscribe: false,
        ntf: true,
        ..Default::default()
    };
    let mut queues = Vec::new();
    for _ in 0..QUEUES {
        queues.push(new_queue_with(&mut r, AuthKey::ed25519(), o).await);
    }
    let nsubs = queues
        .iter()
        .map(|q| {
            let (nk, _) = q.ntf.as_ref().unwrap();
            (Some(nk.clone()), q.notifier_id(), Command::NSub)
        })
        .collect();
    for m in pipelined(&mut n, nsubs).await {
        assert_eq!(m, BrokerMsg::Sok(None));
    }
    // NSUB marks its notifier ids (pending notifications are flushed on subscription): let that
    // flush's window pass, so the relay is quiet.
    n.expect_nothing(MAX_DELAY * 2 + Duration::from_millis(500))
        .await;

    // 1. A lone notification after a quiet period: far sooner than MAX_DELAY.
    for (i, q) in queues.iter().take(3).enumerate() {
        let t0 = Instant::now();
        assert_eq!(
            s.cmd(None, &q.snd_id, send_cmd(b"hi", true)).await,
            BrokerMsg::Ok
        );
        let ts = n.recv_raw().await;
        let waited = t0.elapsed();
        assert_eq!(ts.len(), 1);
        assert_eq!(nmsg_nid(&ts[0]), q.notifier_id());
        assert!(
            waited < MAX_DELAY / 3,
            "lone notification {i} took {waited:?} (bound {MAX_DELAY:?})"
        );
        // Quiet again before the next one.
        n.expect_nothing(MAX_DELAY + Duration::from_millis(300))
            .await;
    }

    // 2. Right after a flush, a burst to every queue: it waits for the window and leaves packed.
    let t0 = Instant::now();
    let first = &queues[QUEUES - 1];
    assert_eq!(
        s.cmd(None, &first.snd_id, send_cmd(b"hi", true)).await,
        BrokerMsg::Ok
    );
    let ts = n.recv_raw().await;
    assert_eq!(nmsg_nid(&ts[0]), first.notifier_id());
    let flushed = Instant::now();
    let sends = queues
        .iter()
        .take(QUEUES - 1)
        .map(|q| (None, q.snd_id.clone(), send_cmd(b"hi", true)))
        .collect();
    for m in pipelined(&mut s, sends).await {
        assert_eq!(m, BrokerMsg::Ok);
    }
    let sent_in = flushed.elapsed();
    let mut seen = HashSet::new();
    let mut blocks = 0usize;
    let mut first_at = None;
    while seen.len() < QUEUES - 1 {
        let ts = n.recv_raw().await;
        first_at.get_or_insert_with(|| flushed.elapsed());
        blocks += 1;
        for t in ts {
            assert!(seen.insert(nmsg_nid(&t)), "one NMSG per notifier id");
        }
    }
    let first_at = first_at.unwrap();
    // The burst was held back for (most of) the window after the previous flush...
    assert!(
        first_at >= MAX_DELAY / 2,
        "burst NMSGs arrived {first_at:?} after the previous flush (window {MAX_DELAY:?}, t0 {:?})",
        t0.elapsed()
    );
    // ... and, if the SENDs all got in within the window, packed into full blocks
    // (≈ 80 NMSGs each: 399 need 5).
    let full = (QUEUES - 1).div_ceil(80);
    if sent_in < MAX_DELAY / 2 {
        assert!(
            blocks <= full + 1,
            "{blocks} blocks for {} NMSGs",
            QUEUES - 1
        );
    } else {
        assert!(
            blocks <= 3 * full,
            "{blocks} blocks for {} NMSGs",
            QUEUES - 1
        );
    }
    server.stop().await;
}

#[test]
fn delivery_is_configured_in_the_ini() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    // What `init` writes gives the default.
    assert_eq!(
        test_config(&paths).notifications.delivery,
        NtfDelivery::DEFAULT
    );
    let ini = paths.config_dir.join("smp-server.ini");
    let base = std::fs::read_to_string(&ini).unwrap();
    let with = |section: &str| {
        let text = base.replace("[NOTIFICATIONS]\n", &format!("[NOTIFICATIONS]\n{section}"));
        let text = text.replace("delivery = adaptive\n", "");
        std::fs::write(&ini, text).unwrap();
        smp_server::Config::load(paths.clone())
    };
    assert_eq!(
        with("delivery = fixed\n").unwrap().0.notifications.delivery,
        NtfDelivery::REFERENCE
    );
    assert_eq!(
        with("delivery = fixed\ninterval_ms = 250\n")
            .unwrap()
            .0
            .notifications
            .delivery,
        NtfDelivery::Fixed {
            interval: Duration::from_millis(250)
        }
    );
    let e = with("delivery = sometimes\n").unwrap_err().to_string();
    assert!(e.contains("delivery") && e.contains("adaptive"), "{e}");
    let e = with("delivery = adaptive\nmax_delay_ms = 0\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_delay_ms"), "{e}");
}

#[test]
fn default_delivery_is_adaptive_and_the_reference_tick_is_available() {
    let NtfDelivery::Adaptive { max_delay } = NtfDelivery::DEFAULT else {
        panic!("default is not adaptive");
    };
    assert!(max_delay <= Duration::from_millis(20));
    assert_eq!(
        NtfDelivery::REFERENCE,
        NtfDelivery::Fixed {
            interval: Duration::from_millis(1500)
        }
    );
}
