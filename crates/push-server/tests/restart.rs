//! Crash test: the real `push-server` binary is SIGKILLed with pending pushes and under load;
//! after a restart nothing acknowledged is lost, and the only duplicates are at-least-once
//! re-sends, recognisable at the device by their job id (apns-id).

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use apns_sink::FailureMode;
use common::*;
use push_server::{JobId, PushGateway, SubmitOutcome};

fn spawn(dir: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_push-server"))
        .args(["--dir", dir.to_str().unwrap(), "start"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("push-server exited before listening")
            .unwrap();
        if let Some(a) = line.strip_prefix("push-server listening on ") {
            break a.trim().parse().unwrap();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_pending_pushes_loses_nothing() {
    let env = sink().await;
    let (dir, fp, cred) = push_server_dir(&env, 100);

    // Tokens "held": APNs answers 503 until we clear it, so their jobs stay pending in the outbox.
    let held: Vec<String> = (0..20u8).map(token).collect();
    for t in &held {
        env.sink
            .set_failure(t, FailureMode::ServiceUnavailable, None);
    }
    let healthy: Vec<String> = (100..120u8).map(token).collect();

    let (mut child, addr) = spawn(dir.path());
    let gw = remote(addr, fp, Some(cred.clone()));

    // 1. Pending pushes: 40 jobs to held tokens, all acknowledged.
    let mut acked: HashMap<JobId, String> = HashMap::new();
    for i in 0..40 {
        let t = &held[i % held.len()];
        let j = check_job(t);
        assert_eq!(gw.submit(j.clone()).await.unwrap(), SubmitOutcome::Queued);
        acked.insert(j.job_id, t.clone());
    }
    // 2. Load: a concurrent submitter to healthy tokens; SIGKILL in the middle of it.
    let gw_load = remote(addr, fp, Some(cred.clone()));
    let healthy2 = healthy.clone();
    let load = tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut attempted = Vec::new();
        for i in 0..400 {
            let t = &healthy2[i % healthy2.len()];
            let j = check_job(t);
            attempted.push(j.job_id);
            match gw_load.submit(j.clone()).await {
                Ok(SubmitOutcome::Queued) => acked.push((j.job_id, t.clone())),
                Ok(SubmitOutcome::Duplicate) => panic!("fresh id reported duplicate"),
                Err(_) => break, // the server died
            }
        }
        (acked, attempted)
    });
    // Kill once some of the load is acknowledged and delivering.
    assert!(
        env.sink.wait_for(30, Duration::from_secs(20)).await,
        "load is being delivered"
    );
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    let (load_acked, attempted) = load.await.unwrap();
    assert!(!load_acked.is_empty());
    let attempted: HashSet<JobId> = attempted.into_iter().collect();
    for (id, t) in &load_acked {
        acked.insert(*id, t.clone());
    }
    let before_restart = env.sink.received().len();
    let received_before_kill: HashSet<String> =
        env.sink.received().into_iter().map(|r| r.apns_id).collect();
    // Held tokens were tried (503) but never accepted.
    for t in &held {
        assert!(env.sink.received_for(t).is_empty());
    }
    assert!(env.sink.attempts().iter().any(|a| a.status == 503));

    // 3. Restart with APNs healthy again.
    env.sink.clear_failures();
    let (mut child2, addr2) = spawn(dir.path());
    let gw2 = remote(addr2, fp, Some(cred));

    // Every acknowledged job reaches the device at least once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got: HashSet<String> = env.sink.received().into_iter().map(|r| r.apns_id).collect();
        let missing = acked
            .keys()
            .filter(|id| !got.contains(&id.to_uuid()))
            .count();
        if missing == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} acknowledged pushes lost after SIGKILL + restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let stragglers (at-least-once re-sends) arrive, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = env.sink.received();
    let mut count: HashMap<String, usize> = HashMap::new();
    for r in &received {
        *count.entry(r.apns_id.clone()).or_default() += 1;
        // Every push the device got is recognisable as one of our jobs, to the right token.
        let id = JobId::from_uuid(&r.apns_id).unwrap();
        assert!(
            acked.contains_key(&id) || attempted.contains(&id),
            "unknown push {}",
            r.apns_id
        );
        if let Some(t) = acked.get(&id) {
            assert_eq!(&r.token, t);
        }
    }
    let dups: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    // Held jobs were never accepted before the crash: exactly once.
    for (id, t) in acked.iter().filter(|(_, t)| held.contains(t)) {
        assert_eq!(count.get(&id.to_uuid()), Some(&1), "held job for {t}");
    }
    // Duplicates can only be pushes APNs accepted before the kill whose outcome was not yet
    // committed (in flight, or answered and waiting for the outbox commit: a delivery slot is
    // freed when the provider answers, so this is not bounded by the dispatcher's concurrency),
    // and never more than two copies.
    for (id, n) in &dups {
        assert!(
            received_before_kill.contains(*id),
            "{id} pushed twice but never before the kill"
        );
        assert_eq!(**n, 2, "{id} pushed {n} times");
    }
    eprintln!(
        "restart test: {} acked, {} received before kill, {} received total, {} duplicate ids",
        acked.len(),
        before_restart,
        received.len(),
        dups.len()
    );

    // Dedup survives the restart: an acknowledged id is refused as a duplicate.
    let (&some_id, t) = acked.iter().next().unwrap();
    let mut again = check_job(t);
    again.job_id = some_id;
    assert_eq!(gw2.submit(again).await.unwrap(), SubmitOutcome::Duplicate);

    child2.kill().unwrap();
    let _ = child2.wait();
}
