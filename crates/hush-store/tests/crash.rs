//! Crash test (design §5): a child process appends messages and prints each acknowledged id;
//! the parent SIGKILLs it mid-stream, reopens the database and checks that every acknowledged
//! message is there (nothing acknowledged is lost) and in order.
//!
//! The child is this test binary re-executed with `CHILD_ENV` set, running the ignored test
//! `crash_child` (it does nothing unless started by the parent).

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hush_store::{Message, QueueStore, SqliteOptions, SqliteStore, SyncPolicy};

const CHILD_ENV: &str = "HUSH_STORE_CRASH_CHILD_DB";
const SYNC_ENV: &str = "HUSH_STORE_CRASH_CHILD_SYNC";
const WRITERS: u32 = 8;

fn opts(sync: SyncPolicy) -> SqliteOptions {
    SqliteOptions {
        sync,
        quota: 1_000_000,
        ..SqliteOptions::default()
    }
}

fn msg_id(writer: u32, seq: u32) -> [u8; 24] {
    let mut id = [0u8; 24];
    id[..4].copy_from_slice(b"crsh");
    id[4..8].copy_from_slice(&writer.to_be_bytes());
    id[8..12].copy_from_slice(&seq.to_be_bytes());
    id
}

#[test]
#[ignore = "child process of crash_* tests; does nothing when run directly"]
fn crash_child() {
    let Ok(db) = std::env::var(CHILD_ENV) else {
        return;
    };
    let sync = SyncPolicy::parse(&std::env::var(SYNC_ENV).unwrap()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = std::sync::Arc::new(SqliteStore::open(&db, opts(sync)).unwrap());
        if store.get_by_recipient(rid(1)).await.unwrap().is_none() {
            store.create_queue(queue(1)).await.unwrap();
        }
        // Continue after what a previous round stored.
        let start = store.message_count(rid(1)).await.unwrap() as u32;
        println!("READY");
        std::io::stdout().flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for seq in start.. {
                        if Instant::now() > deadline {
                            break;
                        }
                        let mut m = msg(0, i64::from(seq));
                        m.msg_id = msg_id(w, seq);
                        m.body = vec![w as u8; 200];
                        store.append_message(rid(1), m, None).await.unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {}", hex::encode(msg_id(w, seq))).unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Run the child until it acknowledged `kill_after` messages, SIGKILL it, return all ids it
/// acknowledged (including those still in the pipe).
fn run_and_kill(db: &Path, sync: &str, kill_after: usize) -> Vec<[u8; 24]> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, db)
        .env(SYNC_ENV, sync)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = Vec::new();
    let mut ready = false;
    let mut killed = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        // The harness prints "test crash_child ... " before the child's first line.
        if line.ends_with("READY") {
            ready = true;
        } else if let Some(h) = line.strip_prefix("ACK ") {
            acked.push(<[u8; 24]>::try_from(hex::decode(h).unwrap()).unwrap());
            if acked.len() >= kill_after {
                child.kill().unwrap(); // SIGKILL on Unix
                killed = true;
                break;
            }
        }
    }
    assert!(ready, "child never became ready");
    assert!(
        killed,
        "child stopped before being killed ({} acks)",
        acked.len()
    );
    // Acks already written to the pipe before the kill count too.
    for line in lines {
        let Ok(line) = line else { break };
        // The last line may be cut short by the kill: only complete ids count.
        let id = line.strip_prefix("ACK ").and_then(|h| hex::decode(h).ok());
        if let Some(Ok(id)) = id.map(<[u8; 24]>::try_from) {
            acked.push(id);
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "child must have been killed");
    acked
}

/// Reopen (integrity check included) and return the stored message ids in queue order.
async fn stored_ids(db: &Path, sync: SyncPolicy) -> Vec<[u8; 24]> {
    let store =
        SqliteStore::open(db, opts(sync)).expect("database must reopen cleanly after SIGKILL");
    let n = store.message_count(rid(1)).await.unwrap();
    let ids: Vec<_> = {
        // List all ids without consuming them: a read-only connection beside the store.
        let c =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let mut st = c
            .prepare("SELECT msg_id FROM messages ORDER BY id")
            .unwrap();
        st.query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|v| <[u8; 24]>::try_from(v.unwrap()).unwrap())
            .collect()
    };
    assert_eq!(ids.len(), n);
    match store.peek_message(rid(1)).await.unwrap() {
        Some(Message::Message(m)) => assert_eq!(Some(&m.msg_id), ids.first()),
        other => assert!(ids.is_empty(), "unexpected head {other:?}"),
    }
    ids
}

fn check_round(acked: &[[u8; 24]], stored: &[[u8; 24]]) {
    let stored_set: HashSet<_> = stored.iter().collect();
    let lost: Vec<_> = acked.iter().filter(|id| !stored_set.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {}",
        lost.len(),
        hex::encode(lost[0])
    );
    // Per writer, stored sequence numbers are strictly increasing (append order kept).
    let mut last: HashMap<[u8; 4], u32> = HashMap::new();
    for id in stored {
        let w: [u8; 4] = id[4..8].try_into().unwrap();
        let seq = u32::from_be_bytes(id[8..12].try_into().unwrap());
        if let Some(prev) = last.insert(w, seq) {
            assert!(seq > prev, "writer order broken");
        }
    }
}

async fn crash_rounds(sync: SyncPolicy, name: &str, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let mut all_acked = Vec::new();
    for round in 0..rounds {
        let acked = run_and_kill(&db, name, 400 + 300 * round);
        assert!(acked.len() >= 400);
        all_acked.extend(acked);
        let stored = stored_ids(&db, sync).await;
        check_round(&all_acked, &stored);
        eprintln!(
            "{name} round {round}: {} acknowledged so far, {} stored",
            all_acked.len(),
            stored.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_sigkill_loses_nothing_acknowledged_sync_full() {
    crash_rounds(SyncPolicy::Full, "full", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_sigkill_loses_nothing_acknowledged_sync_normal() {
    crash_rounds(SyncPolicy::Normal, "normal", 2).await;
}
