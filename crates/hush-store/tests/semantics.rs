//! The same behaviour suite against every backend (protocols.md §3.5–§3.8).

mod common;

use common::*;
use hush_store::{
    AppendOutcome, BlockInfo, BlockNotice, BlockReason, MAX_MESSAGE_BODY, MemoryStore, Message,
    QueueStatus, QueueStore, StoreError,
};

const QUOTA: usize = 4;

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    let store = hush_store::MemoryStore::new(super::QUOTA);
                    super::$name(&store).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::open_sqlite(&dir, super::QUOTA);
                    super::$name(&store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let schema = super::PgSchema::new();
                    let store = super::open_pg(&schema, super::QUOTA).await;
                    super::$name(&store).await;
                }
            )*
        }
    };
}

both_backends!(
    service_registration,
    service_associations,
    create_and_lookup_namespaces,
    duplicate_ids_refused,
    secure_queue_rules,
    recipient_key_set,
    link_rules,
    notifier_lifecycle,
    status_changes,
    delete_queue_removes_everything,
    message_queue_basics,
    quota_marker_flow,
    expiry,
    notifications_drain_oldest_first,
    notifications_drain_many,
    stats_counts,
    failed_operation_leaves_no_partial_effects,
    expiry_is_a_prefix_and_per_queue,
);

async fn create_and_lookup_namespaces(s: &dyn QueueStore) {
    let q1 = full_queue(1);
    s.create_queue(q1.clone()).await.unwrap();
    assert_eq!(s.get_by_recipient(rid(1)).await.unwrap(), Some(q1.clone()));
    assert_eq!(s.get_by_sender(sid(1)).await.unwrap(), Some(q1.clone()));
    assert_eq!(s.get_by_notifier(nid(1)).await.unwrap(), Some(q1.clone()));
    assert_eq!(s.get_by_link(lid(1)).await.unwrap(), Some(q1.clone()));
    // Wrong namespace: a sender id is not a recipient id, etc.
    assert_eq!(s.get_by_recipient(sid(1)).await.unwrap(), None);
    assert_eq!(s.get_by_sender(rid(1)).await.unwrap(), None);
    assert_eq!(s.get_by_notifier(lid(1)).await.unwrap(), None);
    assert_eq!(s.get_by_link(nid(1)).await.unwrap(), None);
    // A queue whose sender id equals queue 1's recipient id is fine (separate namespaces).
    let mut q2 = queue(2);
    q2.sender_id = rid(1);
    q2.mode = None;
    s.create_queue(q2.clone()).await.unwrap();
    assert_eq!(s.get_by_sender(rid(1)).await.unwrap(), Some(q2.clone()));
    assert_eq!(s.get_by_recipient(rid(1)).await.unwrap(), Some(q1));
    assert_eq!(
        s.get_by_recipient(rid(2)).await.unwrap().unwrap().mode,
        None
    );
}

async fn duplicate_ids_refused(s: &dyn QueueStore) {
    s.create_queue(full_queue(1)).await.unwrap();
    let dup_rid = QueueRecord {
        sender_id: sid(2),
        ..queue(1)
    };
    let dup_sid = QueueRecord {
        recipient_id: rid(2),
        ..queue(1)
    };
    let dup_nid = QueueRecord {
        notifier: Some(notifier(1)),
        ..queue(3)
    };
    let dup_lid = QueueRecord {
        link: Some(link(1, b"x", b"y")),
        ..queue(4)
    };
    for q in [dup_rid, dup_sid, dup_nid, dup_lid] {
        assert!(
            matches!(s.create_queue(q).await, Err(StoreError::DuplicateId)),
            "duplicate id must be refused"
        );
    }
    // Nothing of the refused queues was stored.
    for n in 2..=4 {
        assert_eq!(s.get_by_recipient(rid(n)).await.unwrap(), None);
    }
    // Empty key set refused.
    let no_keys = QueueRecord {
        recipient_keys: vec![],
        ..queue(5)
    };
    assert!(matches!(
        s.create_queue(no_keys).await,
        Err(StoreError::Invalid(_))
    ));
}

use hush_store::QueueRecord;

async fn secure_queue_rules(s: &dyn QueueStore) {
    s.create_queue(queue(1)).await.unwrap();
    s.secure_queue(rid(1), key(5)).await.unwrap();
    s.secure_queue(rid(1), key(5)).await.unwrap(); // same key again: OK
    assert!(matches!(
        s.secure_queue(rid(1), key(6)).await,
        Err(StoreError::SenderKeyMismatch)
    ));
    assert_eq!(
        s.get_by_sender(sid(1)).await.unwrap().unwrap().sender_key,
        Some(key(5))
    );
    assert!(matches!(
        s.secure_queue(rid(9), key(5)).await,
        Err(StoreError::NotFound)
    ));
}

async fn recipient_key_set(s: &dyn QueueStore) {
    s.create_queue(queue(1)).await.unwrap();
    s.add_recipient_key(rid(1), key(2)).await.unwrap();
    s.add_recipient_key(rid(1), key(2)).await.unwrap(); // already there: no-op
    assert_eq!(
        s.get_by_recipient(rid(1))
            .await
            .unwrap()
            .unwrap()
            .recipient_keys,
        vec![key(1), key(2)]
    );
    s.remove_recipient_key(rid(1), key(1)).await.unwrap();
    s.remove_recipient_key(rid(1), key(7)).await.unwrap(); // absent: no-op
    assert_eq!(
        s.get_by_recipient(rid(1))
            .await
            .unwrap()
            .unwrap()
            .recipient_keys,
        vec![key(2)]
    );
    assert!(matches!(
        s.remove_recipient_key(rid(1), key(2)).await,
        Err(StoreError::Invalid(_))
    ));
    s.set_recipient_keys(rid(1), vec![key(3), key(4), key(3)])
        .await
        .unwrap();
    assert_eq!(
        s.get_by_recipient(rid(1))
            .await
            .unwrap()
            .unwrap()
            .recipient_keys,
        vec![key(3), key(4)]
    );
    assert!(matches!(
        s.set_recipient_keys(rid(1), vec![]).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.add_recipient_key(rid(2), key(1)).await,
        Err(StoreError::NotFound)
    ));
}

async fn link_rules(s: &dyn QueueStore) {
    s.create_queue(queue(1)).await.unwrap();
    s.create_queue(QueueRecord {
        link: Some(link(2, b"f2", b"u2")),
        ..queue(2)
    })
    .await
    .unwrap();
    s.delete_link(rid(1)).await.unwrap(); // no link: OK
    s.set_link(rid(1), link(1, b"fixed", b"user"))
        .await
        .unwrap();
    assert_eq!(
        s.get_by_link(lid(1)).await.unwrap().unwrap().recipient_id,
        rid(1)
    );
    // Same id + same fixed: user part may change.
    s.set_link(rid(1), link(1, b"fixed", b"user2"))
        .await
        .unwrap();
    assert_eq!(
        s.get_by_link(lid(1))
            .await
            .unwrap()
            .unwrap()
            .link
            .unwrap()
            .data
            .user,
        b"user2"
    );
    // Different fixed part or another link id: refused.
    assert!(matches!(
        s.set_link(rid(1), link(1, b"other", b"user")).await,
        Err(StoreError::LinkMismatch)
    ));
    assert!(matches!(
        s.set_link(rid(1), link(3, b"fixed", b"user")).await,
        Err(StoreError::LinkMismatch)
    ));
    s.delete_link(rid(1)).await.unwrap();
    assert_eq!(s.get_by_link(lid(1)).await.unwrap(), None);
    assert_eq!(
        s.get_by_recipient(rid(1)).await.unwrap().unwrap().link,
        None
    );
    // Another queue's link id is taken.
    assert!(matches!(
        s.set_link(rid(1), link(2, b"f", b"u")).await,
        Err(StoreError::DuplicateId)
    ));
    assert_eq!(
        s.get_by_recipient(rid(1)).await.unwrap().unwrap().link,
        None
    );
}

async fn notifier_lifecycle(s: &dyn QueueStore) {
    s.create_queue(queue(1)).await.unwrap();
    s.create_queue(QueueRecord {
        notifier: Some(notifier(5)),
        ..queue(2)
    })
    .await
    .unwrap();
    assert_eq!(s.set_notifier(rid(1), notifier(1)).await.unwrap(), None);
    assert_eq!(
        s.get_by_notifier(nid(1))
            .await
            .unwrap()
            .unwrap()
            .recipient_id,
        rid(1)
    );
    s.append_message(rid(1), msg(1, 100), Some(ntf(1, 100)))
        .await
        .unwrap();
    // Replace: old id returned, its lookup and pending notifications gone.
    assert_eq!(
        s.set_notifier(rid(1), notifier(3)).await.unwrap(),
        Some(nid(1))
    );
    assert_eq!(s.get_by_notifier(nid(1)).await.unwrap(), None);
    assert!(s.drain_notifications(nid(1), 10).await.unwrap().is_empty());
    // Taken notifier id refused, record unchanged.
    assert!(matches!(
        s.set_notifier(rid(1), notifier(5)).await,
        Err(StoreError::DuplicateId)
    ));
    assert_eq!(
        s.get_by_recipient(rid(1)).await.unwrap().unwrap().notifier,
        Some(notifier(3))
    );
    s.append_message(rid(1), msg(2, 100), Some(ntf(2, 100)))
        .await
        .unwrap();
    assert_eq!(s.delete_notifier(rid(1)).await.unwrap(), Some(nid(3)));
    assert!(s.drain_notifications(nid(3), 10).await.unwrap().is_empty());
    assert_eq!(s.get_by_notifier(nid(3)).await.unwrap(), None);
    assert_eq!(
        s.get_by_recipient(rid(1)).await.unwrap().unwrap().notifier,
        None
    );
    assert_eq!(s.delete_notifier(rid(1)).await.unwrap(), None);
    assert!(matches!(
        s.set_notifier(rid(9), notifier(9)).await,
        Err(StoreError::NotFound)
    ));
}

async fn status_changes(s: &dyn QueueStore) {
    s.create_queue(queue(1)).await.unwrap();
    s.suspend_queue(rid(1)).await.unwrap();
    s.suspend_queue(rid(1)).await.unwrap();
    assert_eq!(
        s.get_by_recipient(rid(1)).await.unwrap().unwrap().status,
        QueueStatus::Off
    );
    s.unblock_queue(rid(1)).await.unwrap(); // not blocked: stays off
    assert_eq!(
        s.get_by_recipient(rid(1)).await.unwrap().unwrap().status,
        QueueStatus::Off
    );
    let info = BlockInfo {
        reason: BlockReason::Spam,
        notice: Some(BlockNotice { ttl: Some(3600) }),
    };
    s.block_queue(rid(1), info).await.unwrap();
    assert_eq!(
        s.get_by_sender(sid(1)).await.unwrap().unwrap().status,
        QueueStatus::Blocked(info)
    );
    let info2 = BlockInfo {
        reason: BlockReason::Content,
        notice: Some(BlockNotice { ttl: None }),
    };
    s.block_queue(rid(1), info2).await.unwrap();
    assert_eq!(
        s.get_by_sender(sid(1)).await.unwrap().unwrap().status,
        QueueStatus::Blocked(info2)
    );
    let info3 = BlockInfo {
        reason: BlockReason::Content,
        notice: None,
    };
    s.block_queue(rid(1), info3).await.unwrap();
    assert_eq!(
        s.get_by_sender(sid(1)).await.unwrap().unwrap().status,
        QueueStatus::Blocked(info3)
    );
    s.unblock_queue(rid(1)).await.unwrap();
    assert_eq!(
        s.get_by_recipient(rid(1)).await.unwrap().unwrap().status,
        QueueStatus::Active
    );
    s.touch_queue(rid(1), 86400 * 20000).await.unwrap();
    assert_eq!(
        s.get_by_recipient(rid(1))
            .await
            .unwrap()
            .unwrap()
            .updated_at,
        Some(86400 * 20000)
    );
    assert!(matches!(
        s.suspend_queue(rid(2)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.block_queue(rid(2), info).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.touch_queue(rid(2), 1).await,
        Err(StoreError::NotFound)
    ));
}

async fn delete_queue_removes_everything(s: &dyn QueueStore) {
    let q = full_queue(1);
    s.create_queue(q.clone()).await.unwrap();
    s.create_queue(full_queue(2)).await.unwrap();
    s.append_message(rid(1), msg(1, 10), Some(ntf(1, 10)))
        .await
        .unwrap();
    s.append_message(rid(2), msg(2, 10), Some(ntf(2, 10)))
        .await
        .unwrap();
    assert_eq!(s.delete_queue(rid(1)).await.unwrap(), q);
    assert_eq!(s.get_by_recipient(rid(1)).await.unwrap(), None);
    assert_eq!(s.get_by_sender(sid(1)).await.unwrap(), None);
    assert_eq!(s.get_by_notifier(nid(1)).await.unwrap(), None);
    assert_eq!(s.get_by_link(lid(1)).await.unwrap(), None);
    assert!(s.drain_notifications(nid(1), 10).await.unwrap().is_empty());
    assert!(matches!(
        s.peek_message(rid(1)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.message_count(rid(1)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.append_message(rid(1), msg(3, 10), None).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.delete_queue(rid(1)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.secure_queue(rid(1), key(1)).await,
        Err(StoreError::NotFound)
    ));
    // The other queue is intact.
    assert_eq!(s.message_count(rid(2)).await.unwrap(), 1);
    assert_eq!(
        s.drain_notifications(nid(2), 10).await.unwrap(),
        vec![ntf(2, 10)]
    );
    // Its ids are free again (random ids never repeat in practice; this only shows no residue).
    s.create_queue(queue(1)).await.unwrap();
    assert_eq!(s.message_count(rid(1)).await.unwrap(), 0);
}

async fn message_queue_basics(s: &dyn QueueStore) {
    s.create_queue(queue(1)).await.unwrap();
    assert_eq!(s.peek_message(rid(1)).await.unwrap(), None);
    assert_eq!(
        s.append_message(rid(1), msg(1, 10), None).await.unwrap(),
        AppendOutcome::Appended { was_empty: true }
    );
    assert_eq!(
        s.append_message(rid(1), msg(2, 11), None).await.unwrap(),
        AppendOutcome::Appended { was_empty: false }
    );
    assert_eq!(s.message_count(rid(1)).await.unwrap(), 2);
    assert_eq!(
        s.peek_message(rid(1)).await.unwrap(),
        Some(Message::Message(msg(1, 10)))
    );
    // Only the head can be deleted.
    let r = s.delete_message(rid(1), eid(b'm', 2)).await.unwrap();
    assert!(!r.deleted);
    assert_eq!(r.head, Some(Message::Message(msg(1, 10))));
    let r = s.delete_message(rid(1), eid(b'm', 1)).await.unwrap();
    assert!(r.deleted);
    assert_eq!(r.head, Some(Message::Message(msg(2, 11))));
    // Repeating the ACK: nothing deleted.
    assert!(
        !s.delete_message(rid(1), eid(b'm', 1))
            .await
            .unwrap()
            .deleted
    );
    let r = s.delete_message(rid(1), eid(b'm', 2)).await.unwrap();
    assert!(r.deleted);
    assert_eq!(r.head, None);
    assert_eq!(s.message_count(rid(1)).await.unwrap(), 0);
    assert!(
        !s.delete_message(rid(1), eid(b'm', 2))
            .await
            .unwrap()
            .deleted
    );
    // Body limits: exactly MAX stored intact, one more refused.
    let mut big = msg(3, 12);
    big.body = (0..MAX_MESSAGE_BODY).map(|i| i as u8).collect();
    big.flags = 0;
    s.append_message(rid(1), big.clone(), None).await.unwrap();
    assert_eq!(
        s.peek_message(rid(1)).await.unwrap(),
        Some(Message::Message(big.clone()))
    );
    let mut too_big = msg(4, 12);
    too_big.body = vec![0; MAX_MESSAGE_BODY + 1];
    assert!(matches!(
        s.append_message(rid(1), too_big, None).await,
        Err(StoreError::MessageTooLarge(n)) if n == MAX_MESSAGE_BODY + 1
    ));
    assert_eq!(s.message_count(rid(1)).await.unwrap(), 1);
    assert!(matches!(
        s.delete_message(rid(7), big.msg_id).await,
        Err(StoreError::NotFound)
    ));
}

async fn quota_marker_flow(s: &dyn QueueStore) {
    s.create_queue(queue(1)).await.unwrap();
    for i in 0..QUOTA as u32 {
        assert!(matches!(
            s.append_message(rid(1), msg(i, 100 + i as i64), None)
                .await
                .unwrap(),
            AppendOutcome::Appended { .. }
        ));
    }
    // Full: one marker, then refusals.
    assert_eq!(
        s.append_message(rid(1), msg(50, 200), None).await.unwrap(),
        AppendOutcome::QuotaExceeded { marker_added: true }
    );
    assert_eq!(
        s.append_message(rid(1), msg(51, 201), None).await.unwrap(),
        AppendOutcome::QuotaExceeded {
            marker_added: false
        }
    );
    assert_eq!(s.message_count(rid(1)).await.unwrap(), QUOTA + 1);
    // Drain the messages; appends stay refused while the marker is there.
    for i in 0..QUOTA as u32 {
        assert!(
            s.delete_message(rid(1), eid(b'm', i))
                .await
                .unwrap()
                .deleted
        );
        assert_eq!(
            s.append_message(rid(1), msg(60 + i, 300), None)
                .await
                .unwrap(),
            AppendOutcome::QuotaExceeded {
                marker_added: false
            }
        );
    }
    let head = s.peek_message(rid(1)).await.unwrap().unwrap();
    let Message::QuotaMarker { msg_id, ts } = head else {
        panic!("expected quota marker, got {head:?}")
    };
    assert_eq!(ts, 200);
    assert_eq!(
        msg_id,
        eid(b'm', 50),
        "marker takes the refused message's id (reference writeMsg)"
    );
    let r = s.delete_message(rid(1), msg_id).await.unwrap();
    assert!(r.deleted && r.head.is_none());
    // Drained: writes resume.
    assert_eq!(
        s.append_message(rid(1), msg(70, 400), None).await.unwrap(),
        AppendOutcome::Appended { was_empty: true }
    );
}

async fn expiry(s: &dyn QueueStore) {
    s.create_queue(QueueRecord {
        notifier: Some(notifier(1)),
        ..queue(1)
    })
    .await
    .unwrap();
    s.create_queue(queue(2)).await.unwrap();
    s.append_message(rid(1), msg(1, 100), Some(ntf(1, 100)))
        .await
        .unwrap();
    s.append_message(rid(1), msg(2, 300), Some(ntf(2, 300)))
        .await
        .unwrap();
    s.append_message(rid(2), msg(3, 200), None).await.unwrap();
    s.append_message(rid(2), msg(4, 400), None).await.unwrap();
    assert_eq!(s.expire_messages(250).await.unwrap(), 2);
    assert_eq!(
        s.peek_message(rid(1)).await.unwrap(),
        Some(Message::Message(msg(2, 300)))
    );
    assert_eq!(
        s.peek_message(rid(2)).await.unwrap(),
        Some(Message::Message(msg(4, 400)))
    );
    assert_eq!(s.expire_messages(250).await.unwrap(), 0);
    assert_eq!(s.expire_notifications(200).await.unwrap(), 1);
    assert_eq!(
        s.drain_notifications(nid(1), 10).await.unwrap(),
        vec![ntf(2, 300)]
    );
    // An expired quota marker lifts the quota.
    for i in 10..10 + QUOTA as u32 + 1 {
        s.append_message(rid(2), msg(i, 500), None).await.unwrap();
    }
    assert!(matches!(
        s.append_message(rid(2), msg(30, 600), None).await.unwrap(),
        AppendOutcome::QuotaExceeded {
            marker_added: false
        }
    ));
    // Queue 2: msg 4 + (QUOTA - 1) new + marker; queue 1: msg 2.
    assert_eq!(s.expire_messages(1000).await.unwrap(), QUOTA as u64 + 2);
    assert_eq!(s.message_count(rid(1)).await.unwrap(), 0);
    assert_eq!(s.message_count(rid(2)).await.unwrap(), 0);
    assert_eq!(
        s.append_message(rid(2), msg(31, 1001), None).await.unwrap(),
        AppendOutcome::Appended { was_empty: true }
    );
}

async fn notifications_drain_oldest_first(s: &dyn QueueStore) {
    s.create_queue(QueueRecord {
        notifier: Some(notifier(1)),
        ..queue(1)
    })
    .await
    .unwrap();
    s.create_queue(queue(2)).await.unwrap();
    for i in 0..QUOTA as u32 {
        s.append_message(rid(1), msg(i, 10 + i as i64), Some(ntf(i, 10 + i as i64)))
            .await
            .unwrap();
    }
    // Quota exceeded: no notification stored.
    s.append_message(rid(1), msg(90, 99), Some(ntf(90, 99)))
        .await
        .unwrap();
    // No notifier: notification ignored.
    s.append_message(rid(2), msg(91, 99), Some(ntf(91, 99)))
        .await
        .unwrap();
    assert_eq!(
        s.drain_notifications(nid(1), 2).await.unwrap(),
        vec![ntf(0, 10), ntf(1, 11)]
    );
    assert_eq!(
        s.drain_notifications(nid(1), 100).await.unwrap(),
        (2..QUOTA as u32)
            .map(|i| ntf(i, 10 + i as i64))
            .collect::<Vec<_>>()
    );
    assert!(s.drain_notifications(nid(1), 100).await.unwrap().is_empty());
    assert!(s.drain_notifications(nid(2), 100).await.unwrap().is_empty());
    assert_eq!(s.stats().await.unwrap().notifications, 0);
}

/// Several notifiers in one call: per-id limit, total budget, ids not reached keep theirs.
async fn notifications_drain_many(s: &dyn QueueStore) {
    for q in 1..=3u32 {
        s.create_queue(QueueRecord {
            notifier: Some(notifier(q)),
            ..queue(q)
        })
        .await
        .unwrap();
    }
    // Queue 1 and 3 get QUOTA notifications each, queue 2 none.
    for q in [1u32, 3] {
        for i in 0..QUOTA as u32 {
            let m = q * 100 + i;
            s.append_message(rid(q), msg(m, 10 + i as i64), Some(ntf(m, 10 + i as i64)))
                .await
                .unwrap();
        }
    }
    let ids = vec![nid(1), nid(2), nid(3)];
    // Per id at most 3; in total at most 4: id 1 gives 3, id 2 none, id 3 the 1 left.
    let got = s.drain_notifications_many(ids.clone(), 3, 4).await.unwrap();
    assert_eq!(
        got,
        vec![
            (0..3)
                .map(|i| ntf(100 + i, 10 + i as i64))
                .collect::<Vec<_>>(),
            vec![],
            vec![ntf(300, 10)],
        ]
    );
    // A budget used up before the last id: the result stops there, id 3 keeps its own.
    let got = s
        .drain_notifications_many(ids.clone(), 10, 1)
        .await
        .unwrap();
    assert_eq!(got, vec![vec![ntf(103, 13)]]);
    let got = s.drain_notifications_many(ids, 10, 100).await.unwrap();
    assert_eq!(got.len(), 3);
    assert!(got[0].is_empty() && got[1].is_empty());
    assert_eq!(
        got[2],
        (1..QUOTA as u32)
            .map(|i| ntf(300 + i, 10 + i as i64))
            .collect::<Vec<_>>()
    );
    // (Not `stats`: SQLite may answer a drain before its commit, and reads see committed
    // state; the next drain runs after it on the writer.)
    let got = s
        .drain_notifications_many(vec![nid(1), nid(3)], 10, 100)
        .await
        .unwrap();
    assert!(got.iter().all(Vec::is_empty));
    // Unknown ids are no error.
    assert_eq!(
        s.drain_notifications_many(vec![nid(9)], 10, 10)
            .await
            .unwrap(),
        vec![Vec::<hush_store::PendingNtf>::new()]
    );
}

async fn stats_counts(s: &dyn QueueStore) {
    s.create_queue(QueueRecord {
        notifier: Some(notifier(1)),
        ..queue(1)
    })
    .await
    .unwrap();
    s.create_queue(queue(2)).await.unwrap();
    s.append_message(rid(1), msg(1, 1), Some(ntf(1, 1)))
        .await
        .unwrap();
    s.append_message(rid(2), msg(2, 1), None).await.unwrap();
    s.append_message(rid(2), msg(3, 1), None).await.unwrap();
    let st = s.stats().await.unwrap();
    assert_eq!((st.queues, st.messages, st.notifications), (2, 3, 1));
    // queue 1 has notification credentials, queue 2 none
    assert_eq!(st.notifier_queues, 1);
}

#[tokio::test]
async fn memory_store_default_quota_is_128() {
    let s = MemoryStore::default();
    s.create_queue(queue(1)).await.unwrap();
    for i in 0..128 {
        assert!(matches!(
            s.append_message(rid(1), msg(i, 1), None).await.unwrap(),
            AppendOutcome::Appended { .. }
        ));
    }
    assert_eq!(
        s.append_message(rid(1), msg(200, 1), None).await.unwrap(),
        AppendOutcome::QuotaExceeded { marker_added: true }
    );
}

async fn failed_operation_leaves_no_partial_effects(s: &dyn QueueStore) {
    s.create_queue(QueueRecord {
        notifier: Some(notifier(1)),
        ..queue(1)
    })
    .await
    .unwrap();
    s.create_queue(QueueRecord {
        notifier: Some(notifier(2)),
        ..queue(2)
    })
    .await
    .unwrap();
    s.append_message(rid(1), msg(1, 10), Some(ntf(1, 10)))
        .await
        .unwrap();
    // Replacing notifier 1 by an id that is taken fails; queue 1's notifier and its pending
    // notification (which a successful replacement would drop) must both survive.
    assert!(matches!(
        s.set_notifier(rid(1), notifier(2)).await,
        Err(StoreError::DuplicateId)
    ));
    assert_eq!(
        s.get_by_recipient(rid(1)).await.unwrap().unwrap().notifier,
        Some(notifier(1))
    );
    assert_eq!(
        s.get_by_notifier(nid(2))
            .await
            .unwrap()
            .unwrap()
            .recipient_id,
        rid(2)
    );
    assert_eq!(
        s.drain_notifications(nid(1), 10).await.unwrap(),
        vec![ntf(1, 10)]
    );
}

async fn expiry_is_a_prefix_and_per_queue(s: &dyn QueueStore) {
    s.create_queue(queue(1)).await.unwrap();
    s.create_queue(queue(2)).await.unwrap();
    // The clock went back: 100, 300, 200. Expiry stops at the first item that is not expired.
    for (i, ts) in [(1, 100), (2, 300), (3, 200)] {
        s.append_message(rid(1), msg(i, ts), None).await.unwrap();
    }
    s.append_message(rid(2), msg(4, 100), None).await.unwrap();
    s.append_message(rid(2), msg(5, 150), None).await.unwrap();
    // Per queue: only queue 1 is touched.
    assert_eq!(s.expire_queue_messages(rid(1), 250).await.unwrap(), 1);
    assert_eq!(
        s.peek_message(rid(1)).await.unwrap(),
        Some(Message::Message(msg(2, 300)))
    );
    assert_eq!(s.message_count(rid(1)).await.unwrap(), 2);
    assert_eq!(s.message_count(rid(2)).await.unwrap(), 2);
    assert_eq!(s.expire_queue_messages(rid(1), 250).await.unwrap(), 0);
    // All queues: queue 2 loses both, queue 1 still keeps 300 and the 200 behind it.
    assert_eq!(s.expire_messages(250).await.unwrap(), 2);
    assert_eq!(s.message_count(rid(1)).await.unwrap(), 2);
    assert_eq!(s.message_count(rid(2)).await.unwrap(), 0);
    assert_eq!(s.expire_messages(301).await.unwrap(), 2);
    assert_eq!(s.message_count(rid(1)).await.unwrap(), 0);
    assert!(matches!(
        s.expire_queue_messages(rid(9), 1).await,
        Err(StoreError::NotFound)
    ));
}

fn service(n: u8, role: u8) -> hush_store::ServiceRecord {
    hush_store::ServiceRecord {
        service_id: [0xa0 + n; 24],
        role,
        cert: vec![n; 40],
        cert_hash: [n; 32],
        created_at: 1_700_000_000,
    }
}

/// A certificate gets one service id (the first one given), per role; the same certificate in
/// another role is refused.
async fn service_registration(s: &dyn QueueStore) {
    assert_eq!(
        s.get_create_service(service(1, b'N')).await.unwrap(),
        [0xa1; 24]
    );
    // Same certificate, another proposed id: the stored one.
    let mut again = service(1, b'N');
    again.service_id = [0xbb; 24];
    assert_eq!(s.get_create_service(again).await.unwrap(), [0xa1; 24]);
    // Same certificate, other role.
    assert!(matches!(
        s.get_create_service(service(1, b'M')).await,
        Err(StoreError::Invalid(_))
    ));
    // Another certificate: its own id.
    assert_eq!(
        s.get_create_service(service(2, b'M')).await.unwrap(),
        [0xa2; 24]
    );
}

/// Queue ↔ service associations: per side, counted and paged in id order, removed with the
/// notifier (replaced or deleted) and with the queue.
async fn service_associations(s: &dyn QueueStore) {
    use hush_store::ServiceParty::{Notifier, Recipient};
    let svc = s.get_create_service(service(3, b'N')).await.unwrap();
    let other = [0x55; 24];
    for n in 1..=7 {
        s.create_queue(full_queue(n)).await.unwrap();
    }
    s.create_queue(queue(8)).await.unwrap(); // no notifier
    assert_eq!(s.get_queue_service(rid(1), Notifier).await.unwrap(), None);
    assert!(matches!(
        s.get_queue_service(rid(99), Notifier).await,
        Err(StoreError::NotFound)
    ));
    // Notifier side of a queue without notifier / a missing queue: NotFound.
    assert!(matches!(
        s.set_queue_service(rid(8), Notifier, Some(svc)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.set_queue_service(rid(99), Recipient, Some(svc)).await,
        Err(StoreError::NotFound)
    ));
    for n in 1..=6 {
        s.set_queue_service(rid(n), Notifier, Some(svc))
            .await
            .unwrap();
    }
    s.set_queue_service(rid(7), Notifier, Some(other))
        .await
        .unwrap();
    s.set_queue_service(rid(8), Recipient, Some(svc))
        .await
        .unwrap();
    assert_eq!(
        s.get_queue_service(rid(2), Notifier).await.unwrap(),
        Some(svc)
    );
    assert_eq!(s.get_queue_service(rid(2), Recipient).await.unwrap(), None);
    assert_eq!(
        s.get_queue_service(rid(8), Recipient).await.unwrap(),
        Some(svc)
    );
    assert_eq!(s.service_queue_count(svc, Notifier).await.unwrap(), 6);
    assert_eq!(s.service_queue_count(svc, Recipient).await.unwrap(), 1);
    assert_eq!(s.service_queue_count(other, Notifier).await.unwrap(), 1);
    // Paging: notifier ids, ascending, after the last one seen.
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = s.service_queue_ids(svc, Notifier, after, 4).await.unwrap();
        assert!(page.len() <= 4);
        if page.is_empty() {
            break;
        }
        after = page.last().copied();
        all.extend(page);
    }
    let mut want: Vec<_> = (1..=6).map(nid).collect();
    want.sort();
    assert_eq!(all, want);
    assert_eq!(
        s.service_queue_ids(svc, Recipient, None, 10).await.unwrap(),
        vec![rid(8)]
    );
    // Moving a queue to another service, and removing an association.
    s.set_queue_service(rid(6), Notifier, Some(other))
        .await
        .unwrap();
    s.set_queue_service(rid(5), Notifier, None).await.unwrap();
    assert_eq!(s.service_queue_count(svc, Notifier).await.unwrap(), 4);
    assert_eq!(s.service_queue_count(other, Notifier).await.unwrap(), 2);
    // The notifier replaced: its association goes with it.
    let mut n2 = notifier(40);
    n2.notifier_id = nid(40);
    s.set_notifier(rid(1), n2).await.unwrap();
    assert_eq!(s.get_queue_service(rid(1), Notifier).await.unwrap(), None);
    // Deleted notifier, deleted queue.
    s.delete_notifier(rid(2)).await.unwrap();
    s.delete_queue(rid(3)).await.unwrap();
    s.delete_queue(rid(8)).await.unwrap();
    assert_eq!(s.service_queue_count(svc, Notifier).await.unwrap(), 1);
    assert_eq!(
        s.service_queue_ids(svc, Notifier, None, 10).await.unwrap(),
        vec![nid(4)]
    );
    assert_eq!(s.service_queue_count(svc, Recipient).await.unwrap(), 0);
    // Re-associating with the same service is harmless.
    s.set_queue_service(rid(4), Notifier, Some(svc))
        .await
        .unwrap();
    assert_eq!(s.service_queue_count(svc, Notifier).await.unwrap(), 1);
}
