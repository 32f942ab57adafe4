//! The outbox's stored layout: an outbox file of the first layout (schema 1, written here with
//! its own SQL) opens and its pending jobs are delivered; dedup ids outlive their jobs for the
//! window and no payload row is left behind.

use std::sync::Arc;
use std::time::Duration;

use push_server::metrics::Metrics;
use push_server::outbox::{Outbox, Stored};
use push_server::provider::Providers;
use push_server::provider::sink::MemorySink;
use push_server::service::{PushService, ServiceConfig};
use push_server::{
    ApnsEnv, DeviceAddress, HandleKey, InProcessGateway, JobId, PushGateway, PushJob, PushKind,
    PushTarget, PushType, SubmitOutcome,
};
use rusqlite::{Connection, params};
use tokio::sync::watch;

fn job(token: &str, payload: Vec<u8>) -> PushJob {
    PushJob {
        job_id: JobId::random(),
        target: PushTarget::Device(DeviceAddress::Apns {
            env: ApnsEnv::Test,
            token: token.into(),
        }),
        kind: PushKind::Message,
        payload,
        push_type: PushType::Alert,
        priority: Some(10),
        expires_at: None,
        collapse_id: Some("c1".into()),
        report_delivery: true,
    }
}

/// The schema-1 tables exactly as the first outbox created them.
const V1_SCHEMA: &str = "CREATE TABLE jobs (
        job_id BLOB PRIMARY KEY,
        client TEXT NOT NULL,
        job TEXT NOT NULL,
        deadline INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER NOT NULL,
        leased INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    ) WITHOUT ROWID;
    CREATE INDEX jobs_next_at ON jobs(leased, next_at);
    CREATE TABLE done (
        job_id BLOB PRIMARY KEY,
        done_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX done_at ON done(done_at);
    CREATE TABLE feedback (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        client TEXT NOT NULL,
        job_id BLOB NOT NULL,
        target TEXT NOT NULL,
        reason TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE TABLE registrations (
        id BLOB PRIMARY KEY,
        address TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        used_at INTEGER NOT NULL,
        anonymous INTEGER NOT NULL DEFAULT 1
    ) WITHOUT ROWID;";

fn service(outbox: Outbox, sink: Arc<MemorySink>) -> (PushService, watch::Sender<bool>) {
    let service = PushService::new(
        outbox,
        Providers::new().with_apns(ApnsEnv::Test, sink),
        HandleKey::generate(),
        Metrics::new(),
        ServiceConfig::default(),
    );
    let (tx, rx) = watch::channel(false);
    service.spawn_dispatcher(rx);
    (service, tx)
}

#[tokio::test]
async fn an_outbox_of_the_first_layout_opens_and_its_pending_jobs_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    let now = push_server::unix_now();
    // three pending jobs (one leased by the crashed process, one after two failed attempts, a
    // ≈4 KB payload like the ntf-server's), and one finished id in `done`
    let pending = [
        job(&"a1".repeat(32), vec![7; 3900]),
        job(&"b2".repeat(32), b"{\"aps\":{}}".to_vec()),
        job(&"c3".repeat(32), vec![0; 1]),
    ];
    let finished = JobId::random();
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        c.execute_batch(V1_SCHEMA).unwrap();
        for (i, j) in pending.iter().enumerate() {
            c.execute(
                "INSERT INTO jobs (job_id, client, job, deadline, attempts, next_at, leased) \
                 VALUES (?1, 'ntf1', ?2, ?3, ?4, 0, ?5)",
                params![
                    j.job_id.0.to_vec(),
                    serde_json::to_string(j).unwrap(),
                    now as i64 + 3600,
                    if i == 1 { 2 } else { 0 },
                    i64::from(i == 0)
                ],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO done (job_id, done_at) VALUES (?1, ?2)",
            params![finished.0.to_vec(), now as i64],
        )
        .unwrap();
    }

    let outbox = Outbox::open(&path, true).unwrap();
    assert_eq!(outbox.len().await.unwrap(), 3);
    // finished and pending ids of the old file are still refused
    let mut again = job(&"d4".repeat(32), b"x".to_vec());
    again.job_id = finished;
    assert_eq!(
        outbox.submit("ntf1", &again, now + 60, 0).await.unwrap(),
        SubmitOutcome::Duplicate
    );
    again.job_id = pending[1].job_id;
    assert_eq!(
        outbox.submit("ntf1", &again, now + 60, 0).await.unwrap(),
        SubmitOutcome::Duplicate
    );
    {
        // the old tables are gone, the schema version is recorded
        let c = Connection::open(&path).unwrap();
        let old: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('jobs', 'done')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old, 0);
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 2);
    }

    // every pending job is delivered with its id, payload and fields (the leased one too)
    let sink = Arc::new(MemorySink::new());
    let (svc, _stop) = service(outbox.clone(), sink.clone());
    assert!(sink.wait_for(3, Duration::from_secs(10)).await);
    let mut got = sink.records();
    got.sort_by_key(|r| r.job_id);
    let mut want = pending.to_vec();
    want.sort_by_key(|j| j.job_id);
    for (r, j) in got.iter().zip(&want) {
        assert_eq!(r.job_id, j.job_id);
        assert_eq!(r.payload, j.payload);
        assert_eq!(r.priority, Some(10));
        assert_eq!(r.collapse_id.as_deref(), Some("c1"));
        assert_eq!(PushTarget::Device(r.address.clone()), j.target);
    }
    // report_delivery survived the conversion: one Delivered event per job
    let gw = InProcessGateway::new(svc.clone(), "ntf1");
    let mut fb = Vec::new();
    for _ in 0..100 {
        fb = gw.feedback(0, 10).await.unwrap();
        if fb.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fb.len(), 3, "{fb:?}");
    assert_eq!(outbox.len().await.unwrap(), 0);

    // opening the converted file again changes nothing
    drop((svc, gw));
    drop(outbox);
    let outbox = Outbox::open(&path, true).unwrap();
    assert_eq!(outbox.len().await.unwrap(), 0);
    again.job_id = pending[0].job_id;
    assert_eq!(
        outbox.submit("ntf1", &again, now + 60, 0).await.unwrap(),
        SubmitOutcome::Duplicate
    );
}

#[tokio::test]
async fn finished_jobs_leave_only_their_id_and_ids_expire_after_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.sqlite");
    let outbox = Outbox::open(&path, false).unwrap();
    let now = push_server::unix_now();
    let a = job(&"a1".repeat(32), vec![1; 3900]);
    let b = job(&"b2".repeat(32), vec![2; 3900]);
    let Stored::Queued(row_a) = outbox
        .submit_as("ntf1", &a, now + 60, now * 1000, true)
        .await
        .unwrap()
    else {
        panic!("a not queued")
    };
    let Stored::Queued(row_b) = outbox
        .submit_as("ntf1", &b, now + 60, now * 1000, true)
        .await
        .unwrap()
    else {
        panic!("b not queued")
    };
    assert_ne!(row_a, row_b);
    assert_eq!(
        outbox
            .submit_as("ntf1", &b, now + 60, now * 1000, true)
            .await
            .unwrap(),
        Stored::Duplicate
    );
    outbox.finish(row_b, b.job_id, now, None).await.unwrap();
    assert_eq!(outbox.len().await.unwrap(), 1);
    {
        let c = Connection::open(&path).unwrap();
        let count = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(count("SELECT COUNT(*) FROM job_payload"), 1);
        assert_eq!(count("SELECT COUNT(*) FROM job_ids"), 2);
        // the payload is a blob of its own length (not base64 text)
        assert_eq!(count("SELECT length(payload) FROM job_payload"), 3900);
        assert_eq!(count("SELECT typeof(payload) = 'blob' FROM job_payload"), 1);
    }
    // within the window both ids are refused
    assert_eq!(
        outbox.submit("ntf1", &b, now + 60, 0).await.unwrap(),
        SubmitOutcome::Duplicate
    );
    // window over: the finished id is forgotten, the pending one is kept (its job still exists)
    assert_eq!(outbox.prune_done(now + 10).await.unwrap(), 1);
    assert_eq!(
        outbox.submit("ntf1", &a, now + 60, 0).await.unwrap(),
        SubmitOutcome::Duplicate
    );
    assert_eq!(
        outbox.submit("ntf1", &b, now + 60, 0).await.unwrap(),
        SubmitOutcome::Queued
    );
    // a reschedule puts the leased row back in the due index
    outbox.reschedule(row_a, 5, 1, "unavailable").await.unwrap();
    // (b, submitted again not leased with next_at 0, is due first)
    let due = outbox.lease_due(10, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].job, b);
    assert_eq!(due[1].row, row_a);
    assert_eq!(due[1].attempts, 1);
    assert_eq!(due[1].job, a);
    // leased now: nothing more is due
    assert!(outbox.lease_due(10, 10).await.unwrap().is_empty());
}
