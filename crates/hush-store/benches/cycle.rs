//! The relay's per-message store sequence on a real SQLite file, the way smp-server drives it:
//! `SEND` (get_by_sender → append_message), delivery (peek_message), `ACK` (get_by_recipient →
//! delete_message), concurrently over `QUEUES` queues (each queue one message at a time, as a
//! subscribed recipient sees it).
//!
//! `cargo bench -p hush-store --bench cycle`. Reports wall time per message (items = messages)
//! and, on stderr, the process CPU (user + system, all threads: tokio workers, blocking pool,
//! writer thread) per message over all samples of an argument, from `getrusage`.

use std::sync::Arc;

use divan::Bencher;
use divan::counter::ItemsCount;
use hush_store::{
    NewMessage, QueueRecord, QueueStatus, QueueStore, SqliteOptions, SqliteStore, SyncPolicy,
};

/// Queues driven concurrently.
const QUEUES: u32 = 64;
/// Messages per queue per iteration.
const PER_QUEUE: u32 = 16;

fn main() {
    divan::main();
}

fn id(tag: u8, n: u32) -> [u8; 24] {
    let mut id = [tag; 24];
    id[20..].copy_from_slice(&n.to_be_bytes());
    id
}

fn cpu_us() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    assert_eq!(rc, 0);
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// `"<sync>/<body bytes>"`.
fn parse(arg: &str) -> (SyncPolicy, usize) {
    let (sync, body) = arg.split_once('/').unwrap();
    (SyncPolicy::parse(sync).unwrap(), body.parse().unwrap())
}

#[divan::bench(args = ["full/256", "full/16000", "normal/256"], sample_count = 8, sample_size = 1)]
fn cycle(bencher: Bencher, arg: &str) {
    let (sync, body) = parse(arg);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store: Arc<dyn QueueStore> = Arc::new(
        SqliteStore::open(
            dir.path().join("cycle.db"),
            SqliteOptions {
                sync,
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
                    sender_key: Some(vec![2; 44]),
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
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut messages = 0u64;
    let cpu0 = cpu_us();
    bencher
        .counter(ItemsCount::new(QUEUES * PER_QUEUE))
        .bench_local(|| {
            messages += u64::from(QUEUES * PER_QUEUE);
            rt.block_on(async {
                let tasks: Vec<_> = (0..QUEUES)
                    .map(|q| {
                        let store = store.clone();
                        let seq = seq.clone();
                        tokio::spawn(async move {
                            for _ in 0..PER_QUEUE {
                                let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let mut msg_id = [0u8; 24];
                                msg_id[..8].copy_from_slice(&n.to_be_bytes());
                                // SEND
                                let qr = store.get_by_sender(id(b's', q)).await.unwrap().unwrap();
                                let msg = NewMessage {
                                    msg_id,
                                    ts: 1,
                                    flags: 0,
                                    body: vec![n as u8; body],
                                };
                                store
                                    .append_message(qr.recipient_id, msg, None)
                                    .await
                                    .unwrap();
                                // delivery
                                let head = store.peek_message(qr.recipient_id).await.unwrap();
                                assert_eq!(head.as_ref().map(|m| *m.msg_id()), Some(msg_id));
                                // ACK
                                let qr =
                                    store.get_by_recipient(id(b'r', q)).await.unwrap().unwrap();
                                let out =
                                    store.delete_message(qr.recipient_id, msg_id).await.unwrap();
                                assert!(out.deleted && out.head.is_none());
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            })
        });
    let cpu = cpu_us() - cpu0;
    eprintln!(
        "cycle {arg}: {messages} messages, process CPU {:.1} µs/message",
        cpu / messages as f64
    );
}
