//! PostgreSQL-specific behaviour (each test in its own schema; fails if the server is down).

mod common;

use std::time::Duration;

use common::*;
use hush_store::{
    AppendOutcome, BlockInfo, BlockReason, Message, PgOptions, PgStore, QueueStatus, QueueStore,
    StoreError,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_restores_state_and_deleted_stays_deleted() {
    let schema = PgSchema::new();
    let blocked = BlockInfo {
        reason: BlockReason::Spam,
        notice: None,
    };
    {
        let s = open_pg(&schema, 3).await;
        s.create_queue(full_queue(1)).await.unwrap();
        s.create_queue(full_queue(2)).await.unwrap();
        s.create_queue(queue(3)).await.unwrap();
        s.block_queue(rid(3), blocked).await.unwrap();
        for i in 0..4 {
            s.append_message(rid(1), msg(i, 10 + i as i64), Some(ntf(i, 10 + i as i64)))
                .await
                .unwrap();
        }
        s.append_message(rid(2), msg(9, 1), Some(ntf(9, 1)))
            .await
            .unwrap();
        s.delete_queue(rid(2)).await.unwrap();
    }
    let s = open_pg(&schema, 3).await;
    assert_eq!(
        s.get_by_recipient(rid(1)).await.unwrap(),
        Some(full_queue(1))
    );
    assert_eq!(s.get_by_link(lid(1)).await.unwrap(), Some(full_queue(1)));
    assert_eq!(
        s.get_by_recipient(rid(3)).await.unwrap().unwrap().status,
        QueueStatus::Blocked(blocked)
    );
    assert_eq!(s.get_by_recipient(rid(2)).await.unwrap(), None);
    assert_eq!(s.get_by_notifier(nid(2)).await.unwrap(), None);
    assert!(s.drain_notifications(nid(2), 10).await.unwrap().is_empty());
    assert_eq!(s.message_count(rid(1)).await.unwrap(), 4); // 3 messages + marker
    for i in 0..3 {
        assert!(
            s.delete_message(rid(1), eid(b'm', i))
                .await
                .unwrap()
                .deleted
        );
    }
    assert!(matches!(
        s.peek_message(rid(1)).await.unwrap(),
        Some(Message::QuotaMarker { ts: 13, .. })
    ));
    assert_eq!(
        s.append_message(rid(1), msg(20, 20), None).await.unwrap(),
        AppendOutcome::QuotaExceeded {
            marker_added: false
        }
    );
    assert_eq!(
        s.drain_notifications(nid(1), 10).await.unwrap(),
        (0..3).map(|i| ntf(i, 10 + i as i64)).collect::<Vec<_>>()
    );
    let st = s.stats().await.unwrap();
    assert_eq!((st.queues, st.messages, st.notifications), (2, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_versioning() {
    let schema = PgSchema::new();
    drop(open_pg(&schema, 3).await);
    drop(open_pg(&schema, 3).await); // idempotent
    let (client, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let v: i64 = client
        .query_one(
            &format!(
                "SELECT value FROM {}.hush_meta WHERE key = 'schema_version'",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, hush_store::postgres::PG_SCHEMA_VERSION);
    client
        .batch_execute(&format!(
            "UPDATE {}.hush_meta SET value = 42 WHERE key = 'schema_version'",
            schema.name
        ))
        .await
        .unwrap();
    let err = PgStore::connect(schema.opts(3)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::PgSchemaTooNew { found: 42, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_schema_name_and_unreachable_server_are_errors() {
    let opts = PgOptions {
        url: pg_url(),
        schema: "x; DROP TABLE y".into(),
        ..PgOptions::default()
    };
    assert!(matches!(
        PgStore::connect(opts).await,
        Err(StoreError::Invalid(_))
    ));
    let opts = PgOptions {
        url: "postgres://postgres@127.0.0.1:1/test".into(),
        schema: "hush_unreachable".into(),
        connect_timeout: Duration::from_secs(2),
        ..PgOptions::default()
    };
    let started = std::time::Instant::now();
    let err = PgStore::connect(opts).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Postgres(_) | StoreError::Pool(_) | StoreError::Busy
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_pool_sheds_load_with_busy() {
    let schema = PgSchema::new();
    let opts = PgOptions {
        pool_size: 1,
        wait_timeout: Duration::from_millis(1),
        quota: 10_000,
        ..schema.opts(0)
    };
    let s = std::sync::Arc::new(PgStore::connect(opts).await.unwrap());
    s.create_queue(queue(1)).await.unwrap();
    let tasks: Vec<_> = (0..200u32)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.append_message(rid(1), msg(i, 1), None).await })
        })
        .collect();
    let (mut ok, mut busy) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(AppendOutcome::Appended { .. }) => ok += 1,
            Err(StoreError::Busy) => busy += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        busy > 0,
        "one connection, 1 ms wait, 200 writers: some must be shed"
    );
    assert_eq!(s.message_count(rid(1)).await.unwrap(), ok);
}

/// `stats` must not scan a large table every time the relay refreshes its gauges: above
/// 100,000 rows it reports the planner's estimate. Shown by deleting rows after `ANALYZE`: the
/// estimate (still the analyzed count) is returned, not the new exact count; a small table is
/// counted exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_uses_the_estimate_for_large_tables_and_counts_small_ones() {
    let schema = PgSchema::new();
    let s = open_pg(&schema, 3).await;
    s.create_queue(full_queue(1)).await.unwrap();
    s.append_message(rid(1), msg(0, 10), None).await.unwrap();
    let (client, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let n = schema.name.as_str();
    client
        .batch_execute(&format!(
            "INSERT INTO {n}.queues (recipient_id, recipient_keys, rcv_dh_secret, sender_id, status)
             SELECT ('r' || g::text)::bytea, '\\x00', '\\x00', ('s' || g::text)::bytea, 0
             FROM generate_series(1, 150000) g;
             ANALYZE {n}.queues;
             DELETE FROM {n}.queues WHERE id % 2 = 0;"
        ))
        .await
        .unwrap();
    let exact: i64 = client
        .query_one(&format!("SELECT count(*) FROM {n}.queues"), &[])
        .await
        .unwrap()
        .get(0);
    assert!((74_000..=76_000).contains(&exact), "{exact}");
    let st = s.stats().await.unwrap();
    // The estimate after ANALYZE of 150,001 rows (sampled, so within a few per cent).
    assert!(
        (140_000..=160_000).contains(&st.queues),
        "queues {} (exact count {exact})",
        st.queues
    );
    assert_eq!((st.messages, st.notifications), (1, 0));
}
