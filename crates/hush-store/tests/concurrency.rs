//! Concurrent writers on one queue: the quota and head-deletion rules hold exactly
//! (every backend serialises operations per queue).

mod common;

use std::sync::Arc;

use common::*;
use hush_store::{AppendOutcome, MemoryStore, QueueStore};

const QUOTA: usize = 50;
const WRITERS: u32 = 200;

async fn concurrent_appends_respect_quota(s: Arc<dyn QueueStore>) {
    s.create_queue(queue(1)).await.unwrap();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.append_message(rid(1), msg(i, 1), None).await.unwrap() })
        })
        .collect();
    let (mut appended, mut markers, mut refused, mut was_empty) = (0, 0, 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            AppendOutcome::Appended { was_empty: e } => {
                appended += 1;
                was_empty += usize::from(e);
            }
            AppendOutcome::QuotaExceeded { marker_added: true } => markers += 1,
            AppendOutcome::QuotaExceeded {
                marker_added: false,
            } => refused += 1,
        }
    }
    assert_eq!(
        (appended, markers, refused),
        (QUOTA, 1, WRITERS as usize - QUOTA - 1)
    );
    assert_eq!(was_empty, 1, "exactly one append found the queue empty");
    assert_eq!(s.message_count(rid(1)).await.unwrap(), QUOTA + 1);
    // Concurrent ACKs of the same head: exactly one deletes it.
    let head = *s.peek_message(rid(1)).await.unwrap().unwrap().msg_id();
    let acks: Vec<_> = (0..20)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.delete_message(rid(1), head).await.unwrap().deleted })
        })
        .collect();
    let mut deleted = 0;
    for a in acks {
        deleted += usize::from(a.await.unwrap());
    }
    assert_eq!(deleted, 1);
    assert_eq!(s.message_count(rid(1)).await.unwrap(), QUOTA);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    concurrent_appends_respect_quota(Arc::new(MemoryStore::new(QUOTA))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_appends_respect_quota(Arc::new(open_sqlite(&dir, QUOTA))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let schema = PgSchema::new();
    concurrent_appends_respect_quota(Arc::new(open_pg(&schema, QUOTA).await)).await;
}
