//! NMSG throughput: one flush packs the notifications of many notifier ids into full blocks
//! (reference §2.6: ≈ 80 NMSGs per block), so a notifier connection is not limited to one
//! notifier id per outgoing-queue slot and flush.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use hush_crypto::X25519Public;
use hush_proto::smp::{BrokerMsg, Command};
use smp_server::server::RelayOptions;

const QUEUES: usize = 1000;
const FLUSH: Duration = Duration::from_millis(250);

#[tokio::test]
async fn one_notifier_connection_gets_a_thousand_nmsgs_in_a_few_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let mut cfg = test_config(&paths);
    cfg.limits.client_queue_blocks = 4;
    cfg.store.enable = false; // memory store: the test is about the flush, not fsync
    cfg.limits.new_queues_per_minute = 0; // 1000 NEWs on one connection
    cfg.limits.new_queues_per_minute_per_ip = 0;
    cfg.notifications.delivery = smp_server::server::notify::NtfDelivery::Fixed { interval: FLUSH };
    let server = TestServer::start_with(cfg, RelayOptions::default()).await;
    let mut r = server.connect().await;
    let mut n = server.connect().await;
    let mut s = server.connect().await;

    // 1000 queues with notifier credentials, not subscribed (no MSG events to `r`).
    let o = NewOpts {
        subscribe: false,
        ntf: true,
        ..Default::default()
    };
    let mut setup = Vec::new();
    let mut new_cmds = Vec::new();
    for _ in 0..QUEUES {
        let key = AuthKey::ed25519();
        let dh = hush_crypto::X25519Secret::generate();
        let ntf = (AuthKey::ed25519(), hush_crypto::X25519Secret::generate());
        new_cmds.push((
            Some(key.clone()),
            Vec::new(),
            new_request(&key, &dh, o, Some((&ntf.0, &ntf.1))),
        ));
        setup.push(ntf);
    }
    let ids = pipelined(&mut r, new_cmds).await;
    let mut queues = Vec::new(); // (snd id, notifier id, notifier key, ntf dh secret)
    for (m, (nk, ndh)) in ids.into_iter().zip(setup) {
        let BrokerMsg::Ids(ids) = m else {
            panic!("expected IDS, got {m:?}")
        };
        let creds = ids.server_ntf_creds.unwrap();
        let secret = ndh.dh(&X25519Public::from_spki_der(creds.srv_ntf_dh_key.as_bytes()).unwrap());
        queues.push((
            ids.snd_id.as_bytes().to_vec(),
            creds.notifier_id.as_bytes().to_vec(),
            nk,
            secret,
        ));
    }

    // One notifier connection subscribes all 1000 notifier ids.
    let nsubs = queues
        .iter()
        .map(|(_, nid, nk, _)| (Some(nk.clone()), nid.clone(), Command::NSub))
        .collect();
    for m in pipelined(&mut n, nsubs).await {
        assert_eq!(m, BrokerMsg::Sok(None));
    }

    // One SEND with the notification flag to every queue.
    let sends = queues
        .iter()
        .map(|(sid, _, _, _)| (None, sid.clone(), send_cmd(b"hi", true)))
        .collect();
    for m in pipelined(&mut s, sends).await {
        assert_eq!(m, BrokerMsg::Ok);
    }

    // With 4 queue slots, one NMSG per slot would give ≈ 5 NMSGs per flush (≈ 200 flushes for
    // 1000); packed into blocks it is ≥ 4 × 80 per flush. Allow 12 flushes.
    let deadline = Instant::now() + FLUSH * 12;
    let mut seen = HashSet::new();
    let mut count = 0usize;
    while count < QUEUES {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((corr, nid, m)) = tokio::time::timeout(left, n.recv()).await else {
            break;
        };
        assert!(corr.is_empty());
        let BrokerMsg::NMsg { nonce, enc_meta } = &m else {
            panic!("expected NMSG, got {m:?}")
        };
        let (_, _, _, secret) = queues
            .iter()
            .find(|q| q.1 == nid)
            .expect("NMSG for a known notifier id");
        hush_crypto::decrypt_nmsg_meta(secret, nonce, enc_meta.as_bytes()).unwrap();
        assert!(seen.insert(nid), "one NMSG per notifier id");
        count += 1;
    }
    assert_eq!(
        count, QUEUES,
        "NMSGs received within 12 flushes of {FLUSH:?}"
    );
    n.expect_nothing(FLUSH * 2).await;
    server.stop().await;
}
