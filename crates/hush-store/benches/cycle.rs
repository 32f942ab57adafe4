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

fn main() {
    divan::main();
}

fn id(tag: u8, n: u32) -> [u8; 24] {
    let mut id = [tag; 24];
    id[20..].copy_from_slice(&n.to_be_bytes());
    id
}

#[allow(unsafe_code)] // libc calls, SAFETY below
fn cpu_us() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    assert_eq!(rc, 0);
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Messages per queue per iteration: `HUSH_CYCLE_PER_QUEUE` (default 16; raise it for a
/// profile).
fn per_queue() -> u32 {
    std::env::var("HUSH_CYCLE_PER_QUEUE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

/// `"<sync>/<body bytes>[/sd-off][/ckpt-<pages>][/nocache]"`.
fn parse(arg: &str) -> (usize, SqliteOptions) {
    let mut parts = arg.split('/');
    let sync = SyncPolicy::parse(parts.next().unwrap()).unwrap();
    let body = parts.next().unwrap().parse().unwrap();
    let mut opts = SqliteOptions {
        sync,
        ..SqliteOptions::default()
    };
    for p in parts {
        if p == "sd-off" {
            opts.secure_delete = false;
        } else if p == "nocache" {
            opts.cache_queues = 0;
            opts.cache_head_bytes = 0;
        } else if let Some(n) = p.strip_prefix("ckpt-") {
            opts.wal_autocheckpoint = n.parse().unwrap();
            opts.journal_size_limit = 64 << 20;
        } else {
            panic!("unknown option {p}");
        }
    }
    (body, opts)
}

#[divan::bench(
    args = [
        "full/256", "full/16000", "normal/256", "full/16000/sd-off", "full/16000/ckpt-10000",
        "full/256/nocache",
    ],
    sample_count = 8,
    sample_size = 1
)]
fn cycle(bencher: Bencher, arg: &str) {
    let (body, opts) = parse(arg);
    let per_queue = per_queue();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let sqlite = Arc::new(SqliteStore::open(dir.path().join("cycle.db"), opts).unwrap());
    let store: Arc<dyn QueueStore> = sqlite.clone();
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
        .counter(ItemsCount::new(QUEUES * per_queue))
        .bench_local(|| {
            messages += u64::from(QUEUES * per_queue);
            rt.block_on(async {
                let tasks: Vec<_> = (0..QUEUES)
                    .map(|q| {
                        let store = store.clone();
                        let seq = seq.clone();
                        tokio::spawn(async move {
                            for _ in 0..per_queue {
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
    let w = sqlite.writer_stats();
    eprintln!(
        "cycle {arg}: {messages} messages, process CPU {:.1} µs/message, {:.1} writes per commit",
        cpu / messages as f64,
        w.ops as f64 / w.batches as f64
    );
}
