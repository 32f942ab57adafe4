//! `AUTH` timing (§2.7, §8.1 "Security"): an unknown queue and a wrong key take similar time,
//! because the unknown-queue path still verifies (against a dummy key of the same algorithm).
//! The machine is shared and noisy, so the bound is loose (medians within 0.5..2.0).

mod common;

use std::time::{Duration, Instant};

use common::*;
use hush_proto::error::ErrorType;
use hush_proto::smp::{BrokerMsg, Command};

const N: usize = 150;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn time_cmd(c: &mut TestClient, key: &AuthKey, entity: &[u8], cmd: &Command) -> Duration {
    let t = Instant::now();
    let m = c.cmd(Some(key), entity, cmd.clone()).await;
    let d = t.elapsed();
    assert_eq!(m, BrokerMsg::Err(ErrorType::Auth));
    d
}

#[tokio::test]
async fn auth_failures_take_similar_time() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let server = TestServer::start(test_config(&paths)).await;
    let mut c = server.connect().await;
    let mut no_queue_sub = Vec::new();
    for (name, make) in [
        ("ed25519", AuthKey::ed25519 as fn() -> AuthKey),
        ("ed448", AuthKey::ed448),
        ("x25519", AuthKey::x25519),
    ] {
        let q = new_queue_with(
            &mut c,
            make(),
            NewOpts {
                subscribe: false,
                ..Default::default()
            },
        )
        .await;
        let sk = make();
        assert_eq!(
            c.cmd(Some(&sk), &q.snd_id, Command::SKey(sk.public_der()))
                .await,
            BrokerMsg::Ok
        );
        let wrong = make();
        let unknown = [9u8; 24];
        for (cmd, real) in [
            (Command::Sub, &q.rcv_id),
            (send_cmd(b"t", false), &q.snd_id),
        ] {
            let mut wrong_key = Vec::new();
            let mut no_queue = Vec::new();
            // interleave the two cases so that machine noise hits both alike
            for _ in 0..N {
                wrong_key.push(time_cmd(&mut c, &wrong, real, &cmd).await);
                no_queue.push(time_cmd(&mut c, &wrong, &unknown, &cmd).await);
            }
            let (a, b) = (median(wrong_key), median(no_queue));
            if cmd.tag() == "SUB" {
                no_queue_sub.push(b);
            }
            let ratio = b.as_secs_f64() / a.as_secs_f64();
            eprintln!(
                "{name} {}: wrong key {a:?}, no queue {b:?}, ratio {ratio:.2}",
                cmd.tag()
            );
            assert!(
                (0.5..2.0).contains(&ratio),
                "{name} {}: wrong key {a:?} vs unknown queue {b:?}",
                cmd.tag()
            );
        }
    }
    // The dummy path really verifies: an Ed448 verification (slower than Ed25519) shows up in the
    // unknown-queue timing. Printed, not asserted: after the issue-12 speed-ups the difference
    // (≈ 0.15 ms) is within the noise of a ≈ 4 ms round trip on a loaded CI machine (it failed
    // CI once at 0.96×). That the dummy runs a real verification of the same algorithm is
    // asserted without timing in smp-server's `server::auth` unit tests.
    eprintln!(
        "unknown queue: Ed448 {:?} vs Ed25519 {:?}",
        no_queue_sub[1], no_queue_sub[0]
    );
    server.stop().await;
}
