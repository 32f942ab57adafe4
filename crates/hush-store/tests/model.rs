//! Property test: message-queue semantics (append with quota + marker, peek, delete head,
//! count, expiry) of both backends against a plain `Vec` model.

mod common;

use common::*;
use hush_store::{AppendOutcome, MemoryStore, Message, NewMessage, QueueStore};
use proptest::prelude::*;

const QUOTA: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    Append {
        body_len: usize,
        flags: u8,
        notify: bool,
    },
    Peek,
    AckHead,
    AckWrong(u8),
    Count,
    /// Expire items older than (clock − age), in all queues or only this one.
    Expire {
        age: i64,
        one_queue: bool,
    },
    Tick,
    /// The clock goes back (expiry must still only remove a prefix).
    Rewind,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..300, any::<u8>(), any::<bool>())
            .prop_map(|(body_len, flags, notify)| Op::Append { body_len, flags, notify }),
        2 => Just(Op::Peek),
        3 => Just(Op::AckHead),
        1 => any::<u8>().prop_map(Op::AckWrong),
        1 => Just(Op::Count),
        1 => (0i64..8, any::<bool>()).prop_map(|(age, one_queue)| Op::Expire { age, one_queue }),
        2 => Just(Op::Tick),
        1 => Just(Op::Rewind),
    ]
}

#[derive(Clone, Debug, PartialEq)]
enum Item {
    Msg(NewMessage),
    Marker { msg_id: [u8; 24], ts: i64 },
}

fn same(item: Option<&Item>, m: &Option<Message>) -> bool {
    match (item, m) {
        (None, None) => true,
        (Some(Item::Msg(a)), Some(Message::Message(b))) => a == b,
        (Some(Item::Marker { msg_id, ts }), Some(Message::QuotaMarker { msg_id: i, ts: t })) => {
            ts == t && msg_id == i
        }
        _ => false,
    }
}

async fn run(store: &dyn QueueStore, ops: Vec<Op>) -> Result<(), TestCaseError> {
    store
        .create_queue(hush_store::QueueRecord {
            notifier: Some(notifier(1)),
            ..queue(1)
        })
        .await
        .unwrap();
    let mut model: Vec<Item> = Vec::new();
    let mut clock = 1000i64;
    let mut seq = 0u32;
    let mut expected_ntfs = Vec::new();
    for op in ops {
        match op {
            Op::Append {
                body_len,
                flags,
                notify,
            } => {
                seq += 1;
                let m = NewMessage {
                    body: vec![seq as u8; body_len],
                    flags,
                    ..msg(seq, clock)
                };
                let n = notify.then(|| ntf(seq, clock));
                let got = store
                    .append_message(rid(1), m.clone(), n.clone())
                    .await
                    .unwrap();
                let has_marker = matches!(model.last(), Some(Item::Marker { .. }));
                let want = if has_marker {
                    AppendOutcome::QuotaExceeded {
                        marker_added: false,
                    }
                } else if model.len() >= QUOTA {
                    model.push(Item::Marker {
                        msg_id: m.msg_id,
                        ts: clock,
                    });
                    AppendOutcome::QuotaExceeded { marker_added: true }
                } else {
                    let was_empty = model.is_empty();
                    model.push(Item::Msg(m));
                    expected_ntfs.extend(n);
                    AppendOutcome::Appended { was_empty }
                };
                prop_assert_eq!(got, want);
            }
            Op::Peek => {
                let head = store.peek_message(rid(1)).await.unwrap();
                prop_assert!(
                    same(model.first(), &head),
                    "peek {:?} vs model {:?}",
                    head,
                    model.first()
                );
            }
            Op::AckHead => {
                let head = store.peek_message(rid(1)).await.unwrap();
                prop_assert!(same(model.first(), &head));
                if let Some(h) = head {
                    let r = store.delete_message(rid(1), *h.msg_id()).await.unwrap();
                    model.remove(0);
                    prop_assert!(r.deleted);
                    prop_assert!(same(model.first(), &r.head));
                }
            }
            Op::AckWrong(b) => {
                let r = store.delete_message(rid(1), [b; 24]).await.unwrap();
                // [b; 24] never equals a test id ("m" ‖ small counter).
                prop_assert!(!r.deleted);
                prop_assert!(same(model.first(), &r.head));
            }
            Op::Count => {
                prop_assert_eq!(store.message_count(rid(1)).await.unwrap(), model.len());
            }
            Op::Expire { age, one_queue } => {
                let before = clock - age;
                let n = if one_queue {
                    store.expire_queue_messages(rid(1), before).await.unwrap()
                } else {
                    store.expire_messages(before).await.unwrap()
                };
                let len = model.len();
                let ts = |i: &Item| match i {
                    Item::Msg(m) => m.ts,
                    Item::Marker { ts, .. } => *ts,
                };
                let keep_from = model.iter().position(|i| ts(i) >= before).unwrap_or(len);
                model.drain(..keep_from);
                prop_assert_eq!(n, (len - model.len()) as u64);
            }
            Op::Tick => clock += 1,
            Op::Rewind => clock -= 3,
        }
    }
    prop_assert_eq!(store.message_count(rid(1)).await.unwrap(), model.len());
    let ntfs = store.drain_notifications(nid(1), usize::MAX).await.unwrap();
    prop_assert_eq!(ntfs, expected_ntfs);
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
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn memory_store_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        let store = MemoryStore::new(QUOTA);
        runtime().block_on(run(&store, ops))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn sqlite_store_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let store = rt.block_on(async { open_sqlite(&dir, QUOTA) });
        rt.block_on(run(&store, ops))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn postgres_store_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        let rt = runtime();
        let schema = PgSchema::new();
        let store = rt.block_on(open_pg(&schema, QUOTA));
        rt.block_on(run(&store, ops))?;
    }
}
