//! The SQLite store's in-memory caches (queue records by every id, queue heads, the writer's
//! per-queue message state) never show anything but committed state: random operations over a
//! few queues, on SQLite with a tiny cache (evictions, head byte budget overflows) and with the
//! default one, must give exactly what the memory backend gives, and a fresh store opened on the
//! same file afterwards must agree with the one that has the warm caches.

mod common;

use std::mem::discriminant;

use common::*;
use hush_store::{
    EntityId, MemoryStore, NewMessage, QueueLink, QueueStore, SqliteOptions, SqliteStore,
    StoreError,
};
use proptest::prelude::*;

const QUOTA: usize = 3;
const QUEUES: u32 = 3;

#[derive(Clone, Debug)]
enum Op {
    Append { q: u32, len: usize, notify: bool },
    Peek(u32),
    AckHead(u32),
    AckWrong(u32),
    ByRecipient(u32),
    BySender(u32),
    ByNotifier(u32),
    ByLink(u32),
    SetNotifier { q: u32, n: u32 },
    DeleteNotifier(u32),
    SetLink { q: u32, l: u32 },
    DeleteLink(u32),
    Secure(u32),
    Suspend(u32),
    Touch(u32),
    DeleteQueue(u32),
    CreateQueue(u32),
    ExpireQueue(u32),
    ExpireAll,
    Drain(u32),
    Count(u32),
}

fn op() -> impl Strategy<Value = Op> {
    let q = 0..QUEUES;
    prop_oneof![
        6 => (q.clone(), prop_oneof![0usize..40, 100usize..300], any::<bool>())
            .prop_map(|(q, len, notify)| Op::Append { q, len, notify }),
        3 => q.clone().prop_map(Op::Peek),
        4 => q.clone().prop_map(Op::AckHead),
        1 => q.clone().prop_map(Op::AckWrong),
        2 => q.clone().prop_map(Op::ByRecipient),
        3 => q.clone().prop_map(Op::BySender),
        2 => q.clone().prop_map(Op::ByNotifier),
        1 => q.clone().prop_map(Op::ByLink),
        1 => (q.clone(), 0..4u32).prop_map(|(q, n)| Op::SetNotifier { q, n }),
        1 => q.clone().prop_map(Op::DeleteNotifier),
        1 => (q.clone(), 0..4u32).prop_map(|(q, l)| Op::SetLink { q, l }),
        1 => q.clone().prop_map(Op::DeleteLink),
        1 => q.clone().prop_map(Op::Secure),
        1 => q.clone().prop_map(Op::Suspend),
        1 => q.clone().prop_map(Op::Touch),
        1 => q.clone().prop_map(Op::DeleteQueue),
        1 => q.clone().prop_map(Op::CreateQueue),
        1 => q.clone().prop_map(Op::ExpireQueue),
        1 => Just(Op::ExpireAll),
        1 => q.clone().prop_map(Op::Drain),
        1 => q.prop_map(Op::Count),
    ]
}

/// Results compared across backends: the value, or which error.
fn norm<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => format!("err {:?}", discriminant(&e)),
    }
}

fn notifier_of(n: u32) -> hush_store::NotifierCreds {
    // Notifier ids are shared between queues on purpose (DuplicateId paths).
    notifier(100 + n)
}

fn link_of(l: u32) -> QueueLink {
    link(200 + l, b"fixed", b"user")
}

/// One operation on one store; `seq` makes message ids unique.
async fn apply(s: &dyn QueueStore, op: &Op, seq: u32, clock: i64) -> String {
    match *op {
        Op::Append { q, len, notify } => {
            let m = NewMessage {
                body: vec![seq as u8; len],
                ..msg(seq, clock)
            };
            norm(
                s.append_message(rid(q), m, notify.then(|| ntf(seq, clock)))
                    .await,
            )
        }
        Op::Peek(q) => norm(s.peek_message(rid(q)).await),
        Op::AckHead(q) => match s.peek_message(rid(q)).await {
            Ok(Some(h)) => norm(s.delete_message(rid(q), *h.msg_id()).await),
            other => norm(other),
        },
        Op::AckWrong(q) => norm(s.delete_message(rid(q), [0xee; 24]).await),
        Op::ByRecipient(q) => norm(s.get_by_recipient(rid(q)).await),
        Op::BySender(q) => norm(s.get_by_sender(sid(q)).await),
        Op::ByNotifier(n) => norm(s.get_by_notifier(notifier_of(n).notifier_id).await),
        Op::ByLink(l) => norm(s.get_by_link(link_of(l).link_id).await),
        Op::SetNotifier { q, n } => norm(s.set_notifier(rid(q), notifier_of(n)).await),
        Op::DeleteNotifier(q) => norm(s.delete_notifier(rid(q)).await),
        Op::SetLink { q, l } => norm(s.set_link(rid(q), link_of(l)).await),
        Op::DeleteLink(q) => norm(s.delete_link(rid(q)).await),
        Op::Secure(q) => norm(s.secure_queue(rid(q), key(3)).await),
        Op::Suspend(q) => norm(s.suspend_queue(rid(q)).await),
        Op::Touch(q) => norm(s.touch_queue(rid(q), i64::from(seq) * 86400).await),
        Op::DeleteQueue(q) => norm(s.delete_queue(rid(q)).await),
        Op::CreateQueue(q) => norm(s.create_queue(queue(q)).await),
        Op::ExpireQueue(q) => norm(s.expire_queue_messages(rid(q), clock - 2).await),
        Op::ExpireAll => norm(s.expire_messages(clock - 2).await),
        Op::Drain(n) => norm(s.drain_notifications(notifier_of(n).notifier_id, 2).await),
        Op::Count(q) => norm(s.message_count(rid(q)).await),
    }
}

/// Everything observable about the queues (read after the run).
async fn snapshot(s: &dyn QueueStore) -> Vec<String> {
    let mut out = Vec::new();
    for q in 0..QUEUES {
        out.push(norm(s.get_by_recipient(rid(q)).await));
        out.push(norm(s.get_by_sender(sid(q)).await));
        out.push(norm(s.peek_message(rid(q)).await));
        out.push(norm(s.message_count(rid(q)).await));
    }
    for n in 0..4 {
        let id: EntityId = notifier_of(n).notifier_id;
        out.push(norm(s.get_by_notifier(id).await));
        out.push(norm(s.get_by_link(link_of(n).link_id).await));
    }
    out
}

fn tiny_cache() -> SqliteOptions {
    SqliteOptions {
        cache_queues: 2,
        cache_head_bytes: 200,
        ..sqlite_opts(QUOTA)
    }
}

async fn run(ops: Vec<Op>, opts: SqliteOptions) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let sqlite = SqliteStore::open(&path, opts.clone()).unwrap();
    let memory = MemoryStore::new(QUOTA);
    for q in 0..QUEUES {
        sqlite.create_queue(queue(q)).await.unwrap();
        memory.create_queue(queue(q)).await.unwrap();
    }
    let mut clock = 1000;
    for (i, op) in ops.iter().enumerate() {
        let seq = i as u32 + 1;
        if i % 4 == 0 {
            clock += 1;
        }
        let want = apply(&memory, op, seq, clock).await;
        let got = apply(&sqlite, op, seq, clock).await;
        prop_assert_eq!(got, want, "op {} {:?}", i, op);
    }
    let warm = snapshot(&sqlite).await;
    prop_assert_eq!(&warm, &snapshot(&memory).await);
    drop(sqlite);
    let cold = SqliteStore::open(&path, opts).unwrap();
    prop_assert_eq!(&snapshot(&cold).await, &warm);
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn tiny_cache_matches_memory_backend(ops in prop::collection::vec(op(), 1..80)) {
        runtime().block_on(run(ops, tiny_cache()))?;
    }

    #[test]
    fn default_cache_matches_memory_backend(ops in prop::collection::vec(op(), 1..80)) {
        runtime().block_on(run(ops, sqlite_opts(QUOTA)))?;
    }

    #[test]
    fn no_cache_matches_memory_backend(ops in prop::collection::vec(op(), 1..40)) {
        let opts = SqliteOptions { cache_queues: 0, cache_head_bytes: 0, ..sqlite_opts(QUOTA) };
        runtime().block_on(run(ops, opts))?;
    }
}
