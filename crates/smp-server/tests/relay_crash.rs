//! Crash test (design §5): 8 senders on 8 queues SEND continuously to the real binary, which is
//! killed with SIGKILL at a random moment; after a restart every SEND that got `OK` is delivered
//! exactly once (and nothing is delivered twice or out of order).

mod common;

use std::time::Duration;

use common::*;
use hush_proto::smp::{BrokerMsg, Command};
use rand::Rng;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    ini_for_binary(&paths, &[("LIMITS", "queue_quota", "1000000")]);
    let bin = BinaryServer::start(&paths);
    let mut r = bin.connect().await;
    let mut queues = Vec::new();
    for _ in 0..8 {
        queues.push(
            new_queue_with(
                &mut r,
                AuthKey::ed25519(),
                NewOpts {
                    subscribe: false,
                    ..Default::default()
                },
            )
            .await,
        );
    }
    drop(r);
    let mut senders = Vec::new();
    for q in &queues {
        let mut c = bin.connect().await;
        let snd = q.snd_id.clone();
        senders.push(tokio::spawn(async move {
            // (acknowledged counters, last counter attempted)
            let mut acked = Vec::new();
            let mut attempted = 0u32;
            for n in 0u32.. {
                attempted = n;
                match c
                    .try_cmd(None, &snd, send_cmd(&n.to_be_bytes(), false))
                    .await
                {
                    Some(BrokerMsg::Ok) => acked.push(n),
                    Some(other) => panic!("unexpected response {other:?}"),
                    None => break,
                }
            }
            (acked, attempted)
        }));
    }
    let delay = rand::thread_rng().gen_range(300..1500);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    bin.sigkill();
    let mut results = Vec::new();
    for s in senders {
        results.push(s.await.unwrap());
    }
    let total: usize = results.iter().map(|(a, _)| a.len()).sum();
    eprintln!("killed after {delay} ms with {total} SENDs acknowledged");
    assert!(
        total > 8,
        "senders made progress before the kill ({total} acknowledged)"
    );

    let bin = BinaryServer::start(&paths);
    let mut r = bin.connect().await;
    for (q, (acked, attempted)) in queues.iter().zip(&results) {
        let corr = random_corr();
        r.send(Some(&q.rcv_key), &corr, &q.rcv_id, &Command::Sub)
            .await;
        assert_eq!(r.response_to(&corr).await, BrokerMsg::Sok(None));
        let mut got: Vec<u32> = Vec::new();
        if !acked.is_empty() || *attempted > 0 {
            // the first message (if any) arrives as an event after SOK
            let (_, first) = tokio::time::timeout(Duration::from_secs(2), r.event())
                .await
                .unwrap_or_else(|_| panic!("no message delivered, {} acknowledged", acked.len()));
            let (mut id, body) = q.body(&first);
            got.push(u32::from_be_bytes(body.try_into().unwrap()));
            loop {
                match r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id)).await {
                    BrokerMsg::Ok => break,
                    m => {
                        let (nid, body) = q.body(&m);
                        got.push(u32::from_be_bytes(body.try_into().unwrap()));
                        id = nid;
                    }
                }
            }
        }
        // exactly once, in order: 0..k with k ≥ every acknowledged counter, and at most the one
        // in-flight SEND beyond the last acknowledged one
        let expect: Vec<u32> = (0..got.len() as u32).collect();
        assert_eq!(got, expect, "delivered in order, no duplicates, no gaps");
        if let Some(last) = acked.last() {
            assert!(
                got.len() as u32 > *last,
                "acknowledged message {last} lost (got {})",
                got.len()
            );
        }
        assert!(got.len() as u32 <= attempted + 1);
    }
    bin.sigkill();
}
