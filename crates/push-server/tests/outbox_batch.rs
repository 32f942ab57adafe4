//! The outbox writer's group commit when one operation of a batch fails: the batch is run again
//! with each operation in its own savepoint, so the failed one leaves nothing and every other
//! operation commits exactly once (a submit run twice without the first run rolled back would
//! find its own id and answer `Duplicate`).

use std::time::Duration;

use push_server::outbox::{Outbox, OutboxError, Stored};
use push_server::{
    ApnsEnv, DeviceAddress, JobId, PushJob, PushKind, PushTarget, PushType, unix_now, unix_now_ms,
};
use rusqlite::Connection;

fn job(n: usize) -> PushJob {
    PushJob {
        job_id: JobId::random(),
        target: PushTarget::Device(DeviceAddress::Apns {
            env: ApnsEnv::Test,
            token: format!("{:064x}", n + 1),
        }),
        kind: PushKind::Message,
        payload: vec![u8::try_from(n % 251).unwrap(); 100 + n],
        push_type: PushType::Background,
        priority: Some(5),
        expires_at: None,
        collapse_id: None,
        report_delivery: false,
    }
}

fn count(c: &Connection, table: &str) -> i64 {
    c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_failed_operation_leaves_the_rest_of_its_batch_committed_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite");
    let outbox = Outbox::open(&path, true).unwrap();
    let deadline = unix_now() + 3600;
    let pending = job(1000);
    assert_eq!(
        outbox
            .submit_as("c", &pending, deadline, unix_now_ms(), false)
            .await
            .unwrap(),
        Stored::Queued(1)
    );

    // Another connection holds the write lock: the writer's next transaction waits, and the
    // operations sent meanwhile form one batch when it is released.
    let other = Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let first = tokio::spawn({
        let o = outbox.clone();
        async move { o.len().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut submits = Vec::new();
    let jobs: Vec<PushJob> = (0..40).map(job).collect();
    for (i, j) in jobs.iter().enumerate() {
        let (o, j) = (outbox.clone(), j.clone());
        submits.push(tokio::spawn(async move {
            o.submit_as("c", &j, deadline, unix_now_ms(), false).await
        }));
        if i == 20 {
            // fails (the anonymous cap is 0) in the middle of the batch
            let o = outbox.clone();
            submits.push(tokio::spawn(async move {
                let addr = DeviceAddress::Apns {
                    env: ApnsEnv::Test,
                    token: "ab".into(),
                };
                match o.store_registration(&addr, unix_now(), Some(0)).await {
                    Err(OutboxError::Full) => Ok(Stored::Duplicate),
                    Err(e) => Err(e),
                    Ok(_) => panic!("registration stored over the cap"),
                }
            }));
        }
    }
    // the pending job's id again: refused in the same batch
    let dup = tokio::spawn({
        let (o, j) = (outbox.clone(), pending.clone());
        async move { o.submit_as("c", &j, deadline, unix_now_ms(), false).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    other.execute_batch("COMMIT").unwrap();

    assert_eq!(first.await.unwrap().unwrap(), 1);
    let mut rows = Vec::new();
    let mut refused = 0;
    for s in submits {
        match s.await.unwrap().unwrap() {
            Stored::Queued(row) => rows.push(row),
            Stored::Duplicate => refused += 1,
        }
    }
    assert_eq!(refused, 1, "only the registration over the cap fails");
    assert_eq!(rows.len(), 40);
    rows.sort_unstable();
    rows.dedup();
    assert_eq!(rows.len(), 40, "each job in a row of its own");
    assert_eq!(dup.await.unwrap().unwrap(), Stored::Duplicate);
    assert_eq!(outbox.len().await.unwrap(), 41);
    assert_eq!(outbox.anonymous_registrations().await.unwrap(), 0);

    let c = Connection::open(&path).unwrap();
    assert_eq!(count(&c, "job"), 41);
    assert_eq!(count(&c, "job_payload"), 41);
    assert_eq!(count(&c, "job_ids"), 41);
    assert_eq!(count(&c, "registrations"), 0);
    // every payload stored as submitted
    for j in &jobs {
        let p: Vec<u8> = c
            .query_row(
                "SELECT p.payload FROM job j JOIN job_payload p ON p.row = j.row WHERE j.job_id = ?1",
                [&j.job_id.0[..]],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(p, j.payload);
    }
}
