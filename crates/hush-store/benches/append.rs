//! Appends/s on a real file: group commit (many concurrent appends share one transaction)
//! vs. one append per transaction (each awaited before the next), under both sync policies.
//!
//! `cargo bench -p hush-store --bench append`. Each iteration appends `N` messages of
//! `BODY` bytes spread over `QUEUES` queues; the queues are emptied between iterations
//! (not timed). Throughput is reported as items/s.
//!
//! `append_ack` times the whole life of a message (concurrent appends, then every message
//! ACKed, i.e. deleted, in order per queue, the queues concurrently) with `secure_delete` on (the default: deleted bodies are
//! overwritten with zeros) and off, side by side: `cargo bench -p hush-store --bench append
//! append_ack`.

use std::sync::Arc;

use divan::Bencher;
use divan::counter::ItemsCount;
use hush_store::{
    NewMessage, QueueRecord, QueueStatus, QueueStore, SqliteOptions, SqliteStore, SyncPolicy,
};

const N: usize = 256;
const QUEUES: u32 = 16;
const BODY: usize = 16_000;

fn main() {
    divan::main();
}

fn id(tag: u8, n: u32) -> [u8; 24] {
    let mut id = [tag; 24];
    id[20..].copy_from_slice(&n.to_be_bytes());
    id
}

struct Setup {
    rt: tokio::runtime::Runtime,
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

fn setup(sync: SyncPolicy) -> Setup {
    setup_with(sync, true)
}

fn setup_with(sync: SyncPolicy, secure_delete: bool) -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = Arc::new(
        SqliteStore::open(
            dir.path().join("bench.db"),
            SqliteOptions {
                sync,
                quota: 100_000,
                secure_delete,
                ..SqliteOptions::default()
            },
        )
        .unwrap(),
    );
    rt.block_on(async {
        for q in 0..QUEUES {
            store
                .create_queue(QueueRecord {
                    recipient_id: id(b'r', q),
                    recipient_keys: vec![vec![1; 44]],
                    rcv_dh_secret: [0; 32],
                    sender_id: id(b's', q),
                    sender_key: None,
                    mode: None,
                    link: None,
                    notifier: None,
                    status: QueueStatus::Active,
                    updated_at: None,
                })
                .await
                .unwrap();
        }
    });
    Setup {
        rt,
        store,
        _dir: dir,
    }
}

fn message(i: usize) -> NewMessage {
    let mut msg_id = [0u8; 24];
    msg_id[..8].copy_from_slice(&(i as u64).to_be_bytes());
    NewMessage {
        msg_id,
        ts: 1,
        flags: b'T',
        body: vec![i as u8; BODY],
    }
}

fn sync_of(name: &str) -> SyncPolicy {
    SyncPolicy::parse(name).unwrap()
}

#[divan::bench(args = ["full", "normal"], sample_count = 10, sample_size = 1)]
fn group_commit(bencher: Bencher, sync: &str) {
    let s = setup(sync_of(sync));
    bencher
        .counter(ItemsCount::new(N))
        .with_inputs(|| {
            s.rt.block_on(s.store.expire_messages(i64::MAX)).unwrap();
        })
        .bench_local_values(|()| {
            s.rt.block_on(async {
                let tasks: Vec<_> = (0..N)
                    .map(|i| {
                        let store = s.store.clone();
                        tokio::spawn(async move {
                            store
                                .append_message(id(b'r', i as u32 % QUEUES), message(i), None)
                                .await
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap().unwrap();
                }
            })
        });
}

#[divan::bench(args = ["full", "normal"], sample_count = 10, sample_size = 1)]
fn one_per_transaction(bencher: Bencher, sync: &str) {
    let s = setup(sync_of(sync));
    bencher
        .counter(ItemsCount::new(N))
        .with_inputs(|| {
            s.rt.block_on(s.store.expire_messages(i64::MAX)).unwrap();
        })
        .bench_local_values(|()| {
            s.rt.block_on(async {
                for i in 0..N {
                    s.store
                        .append_message(id(b'r', i as u32 % QUEUES), message(i), None)
                        .await
                        .unwrap();
                }
            })
        });
}

/// `"<sync>/<secure_delete>"`, e.g. `"full/on"`.
fn sync_and_secure_delete(arg: &str) -> (SyncPolicy, bool) {
    let (sync, sd) = arg.split_once('/').unwrap();
    (sync_of(sync), sd == "on")
}

#[divan::bench(
    args = ["full/on", "full/off", "normal/on", "normal/off"],
    sample_count = 10,
    sample_size = 1
)]
fn append_ack(bencher: Bencher, arg: &str) {
    let (sync, secure_delete) = sync_and_secure_delete(arg);
    let s = setup_with(sync, secure_delete);
    bencher.counter(ItemsCount::new(N)).bench_local(|| {
        s.rt.block_on(async {
            let tasks: Vec<_> = (0..N)
                .map(|i| {
                    let store = s.store.clone();
                    tokio::spawn(async move {
                        store
                            .append_message(id(b'r', i as u32 % QUEUES), message(i), None)
                            .await
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            // Each queue's recipient ACKs its messages in order (ACK, next message, ACK, ...);
            // the 16 queues' ACKs share the writer's transactions.
            let acks: Vec<_> = (0..QUEUES)
                .map(|q| {
                    let store = s.store.clone();
                    tokio::spawn(async move {
                        let rid = id(b'r', q);
                        let mut next = store.peek_message(rid).await.unwrap();
                        let mut n = 0;
                        while let Some(m) = next {
                            let out = store.delete_message(rid, *m.msg_id()).await.unwrap();
                            assert!(out.deleted);
                            next = out.head;
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let mut acked = 0;
            for t in acks {
                acked += t.await.unwrap();
            }
            assert_eq!(acked, N);
        })
    });
}
