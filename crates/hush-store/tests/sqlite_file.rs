//! SQLite-specific behaviour with real files: restart, refusing bad files, load shedding,
//! group commit.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use hush_store::{
    AppendOutcome, BlockInfo, BlockReason, Message, QueueStatus, QueueStore, SqliteOptions,
    SqliteStore, StoreError, SyncPolicy,
};

fn snapshot(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_restores_queues_messages_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let blocked = BlockInfo {
        reason: BlockReason::Content,
        notice: None,
    };
    {
        let s = SqliteStore::open(
            &path,
            SqliteOptions {
                quota: 4,
                ..SqliteOptions::default()
            },
        )
        .unwrap();
        s.create_queue(full_queue(1)).await.unwrap();
        s.create_queue(queue(2)).await.unwrap();
        s.create_queue(full_queue(3)).await.unwrap();
        s.block_queue(rid(2), blocked).await.unwrap();
        s.secure_queue(rid(2), key(4)).await.unwrap();
        for i in 0..5 {
            s.append_message(rid(1), msg(i, 100 + i as i64), Some(ntf(i, 100 + i as i64)))
                .await
                .unwrap();
        }
        s.append_message(rid(3), msg(20, 1), Some(ntf(20, 1)))
            .await
            .unwrap();
        assert!(
            s.delete_message(rid(1), eid(b'm', 0))
                .await
                .unwrap()
                .deleted
        );
        s.delete_queue(rid(3)).await.unwrap();
        assert_eq!(s.writer_stats().ops, 13);
    }
    let s = SqliteStore::open(
        &path,
        SqliteOptions {
            quota: 4,
            ..SqliteOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        s.get_by_recipient(rid(1)).await.unwrap(),
        Some(full_queue(1))
    );
    assert_eq!(
        s.get_by_notifier(nid(1)).await.unwrap(),
        Some(full_queue(1))
    );
    assert_eq!(s.get_by_link(lid(1)).await.unwrap(), Some(full_queue(1)));
    let q2 = s.get_by_sender(sid(2)).await.unwrap().unwrap();
    assert_eq!(q2.status, QueueStatus::Blocked(blocked));
    assert_eq!(q2.sender_key, Some(key(4)));
    // Deleted stays deleted, with its messages and notifications.
    assert_eq!(s.get_by_recipient(rid(3)).await.unwrap(), None);
    assert_eq!(s.get_by_notifier(nid(3)).await.unwrap(), None);
    assert!(s.drain_notifications(nid(3), 10).await.unwrap().is_empty());
    // Messages 1..3 plus the quota marker (the 5th append hit quota 4), in order.
    assert_eq!(s.message_count(rid(1)).await.unwrap(), 4);
    for i in 1..4 {
        let r = s.delete_message(rid(1), eid(b'm', i)).await.unwrap();
        assert!(r.deleted, "message {i} restored in order");
    }
    assert!(matches!(
        s.peek_message(rid(1)).await.unwrap(),
        Some(Message::QuotaMarker { ts: 104, .. })
    ));
    // Quota state survives the restart: the marker still blocks appends.
    assert_eq!(
        s.append_message(rid(1), msg(30, 200), None).await.unwrap(),
        AppendOutcome::QuotaExceeded {
            marker_added: false
        }
    );
    let ntfs = s.drain_notifications(nid(1), 100).await.unwrap();
    assert_eq!(
        ntfs,
        (0..4).map(|i| ntf(i, 100 + i as i64)).collect::<Vec<_>>()
    );
    assert_eq!(s.stats().await.unwrap().queues, 2);
}

fn dir_listing(path: &Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    names
}

fn expect_refused(path: &Path, check: impl Fn(&StoreError) -> bool) -> StoreError {
    let before = snapshot(path);
    let files_before = dir_listing(path);
    let err = SqliteStore::open(path, SqliteOptions::default()).unwrap_err();
    assert!(check(&err), "unexpected error: {err:?}");
    assert_eq!(
        snapshot(path),
        before,
        "refused file must be left untouched"
    );
    // Still refused the second time (nothing was "repaired").
    let err2 = SqliteStore::open(path, SqliteOptions::default()).unwrap_err();
    assert!(check(&err2), "unexpected error on retry: {err2:?}");
    assert_eq!(snapshot(path), before);
    assert_eq!(
        dir_listing(path),
        files_before,
        "no files created or removed beside it"
    );
    err
}

#[test]
fn random_bytes_file_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let bytes: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let err = expect_refused(&path, |e| matches!(e, StoreError::NotDatabase { .. }));
    let text = err.to_string();
    assert!(
        text.contains("not a SQLite database") && text.contains("untouched"),
        "{text}"
    );
    assert!(text.contains("store.db"), "error names the file: {text}");
}

#[test]
fn empty_and_short_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    std::fs::write(&path, b"").unwrap();
    expect_refused(&path, |e| matches!(e, StoreError::Corrupt { .. }));
    let mut short = b"SQLite format 3\0".to_vec();
    short.extend_from_slice(&[0u8; 40]);
    std::fs::write(&path, &short).unwrap();
    expect_refused(&path, |e| matches!(e, StoreError::Corrupt { .. }));
    std::fs::write(&path, b"hello").unwrap();
    expect_refused(&path, |e| matches!(e, StoreError::NotDatabase { .. }));
}

/// A new database is created through a private temporary sibling renamed into place: what an
/// interrupted first start leaves behind (a temporary with anything in it) does not stop the next
/// start, and the database path itself is never left empty.
#[tokio::test]
async fn interrupted_creation_leaves_no_empty_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let tmp = dir.path().join(".store.db.new");
    std::fs::write(&tmp, b"half-written by a start that was killed").unwrap();
    std::fs::write(dir.path().join(".store.db.new-journal"), b"junk").unwrap();
    {
        let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        s.create_queue(queue(1)).await.unwrap();
    }
    assert!(!tmp.exists(), "temporary renamed into place");
    assert!(!dir.path().join(".store.db.new-journal").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert!(s.get_by_recipient(rid(1)).await.unwrap().is_some());
}

/// Build a closed database with enough data to span many pages.
async fn populated_db(path: &Path) {
    let s = SqliteStore::open(path, sqlite_opts(128)).unwrap();
    for q in 0..20 {
        s.create_queue(queue(q)).await.unwrap();
        for i in 0..10 {
            let mut m = msg(q * 100 + i, 1);
            m.body = vec![(q + i) as u8; 4000];
            s.append_message(rid(q), m, None).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    populated_db(&path).await;
    assert!(
        !dir.path().join("store.db-wal").exists(),
        "clean close checkpoints the WAL"
    );
    let full = snapshot(&path);
    assert!(
        full.len() > 200_000,
        "test database too small: {}",
        full.len()
    );
    // Reopening the intact file works.
    drop(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    for cut in [full.len() / 2, 4096 * 3, full.len() - 4096] {
        std::fs::write(&path, &full[..cut]).unwrap();
        let err = expect_refused(&path, |e| matches!(e, StoreError::Corrupt { .. }));
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_pages_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    populated_db(&path).await;
    let mut bytes = snapshot(&path);
    // Overwrite pages 2..6 (b-tree roots and interior pages) with garbage.
    for (i, b) in bytes[4096..4096 * 6].iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    std::fs::write(&path, &bytes).unwrap();
    expect_refused(&path, |e| matches!(e, StoreError::Corrupt { .. }));
}

#[test]
fn foreign_and_newer_databases_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let c = rusqlite_conn(&path);
        c.execute_batch("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('keep me');")
            .unwrap();
    }
    expect_refused(&path, |e| matches!(e, StoreError::NotDatabase { .. }));

    let path = dir.path().join("newer.db");
    drop(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    {
        let c = rusqlite_conn(&path);
        c.execute_batch("PRAGMA user_version = 99").unwrap();
    }
    expect_refused(
        &path,
        |e| matches!(e, StoreError::SchemaTooNew { found: 99, supported, .. } if *supported == hush_store::sqlite::SCHEMA_VERSION),
    );
}

fn rusqlite_conn(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[test]
fn missing_file_with_create_false_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    let err = SqliteStore::open(
        &path,
        SqliteOptions {
            create: false,
            ..SqliteOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::Io(_)), "{err:?}");
    assert!(!path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_version_and_wal_mode_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    let c = rusqlite_conn(&path);
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, hush_store::sqlite::SCHEMA_VERSION);
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn sync_policy_parses_ini_values() {
    assert_eq!(SyncPolicy::parse("full"), Some(SyncPolicy::Full));
    assert_eq!(SyncPolicy::parse(" NORMAL "), Some(SyncPolicy::Normal));
    assert_eq!(SyncPolicy::parse("off"), None);
    assert_eq!(SyncPolicy::default(), SyncPolicy::Full);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(
        SqliteStore::open(
            dir.path().join("store.db"),
            SqliteOptions {
                quota: 1000,
                sync: SyncPolicy::Full,
                ..SqliteOptions::default()
            },
        )
        .unwrap(),
    );
    s.create_queue(queue(1)).await.unwrap();
    let before = s.writer_stats();
    let n = 300u32;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.append_message(rid(1), msg(i, 1), None).await })
        })
        .collect();
    for t in tasks {
        assert!(matches!(
            t.await.unwrap().unwrap(),
            AppendOutcome::Appended { .. }
        ));
    }
    let after = s.writer_stats();
    assert_eq!(after.ops - before.ops, u64::from(n));
    assert!(
        after.batches - before.batches < u64::from(n) / 2,
        "expected batching, got {} transactions for {n} appends",
        after.batches - before.batches
    );
    assert!(after.max_batch > 1);
    assert_eq!(s.message_count(rid(1)).await.unwrap(), n as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_write_queue_sheds_load_with_busy() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(
        SqliteStore::open(
            dir.path().join("store.db"),
            SqliteOptions {
                quota: 100_000,
                write_queue: 2,
                max_batch: 1,
                sync: SyncPolicy::Full,
                ..SqliteOptions::default()
            },
        )
        .unwrap(),
    );
    s.create_queue(queue(1)).await.unwrap();
    let tasks: Vec<_> = (0..500u32)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { (i, s.append_message(rid(1), msg(i, 1), None).await) })
        })
        .collect();
    let (mut ok, mut busy) = (0usize, 0usize);
    let mut stored = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (i, Ok(AppendOutcome::Appended { .. })) => {
                ok += 1;
                stored.push(i);
            }
            (_, Err(StoreError::Busy)) => busy += 1,
            (_, other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        busy > 0,
        "a 2-slot queue under 500 concurrent writers must shed load"
    );
    assert!(ok > 0);
    // Exactly the acknowledged ones are stored.
    assert_eq!(s.message_count(rid(1)).await.unwrap(), ok);
    assert_eq!(StoreError::Busy.to_string(), "store busy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_works_with_unusual_path_characters() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("we ird#dir?%");
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join("st ore#1?.db");
    {
        let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        s.create_queue(queue(1)).await.unwrap();
    }
    let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(s.get_by_recipient(rid(1)).await.unwrap(), Some(queue(1)));
    assert_eq!(s.path(), path.as_path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_operations_in_a_batch_do_not_affect_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open_sqlite(&dir, 128));
    let tasks: Vec<_> = (0..200u32)
        .map(|i| {
            let s = s.clone();
            // Every queue is created twice: one of each pair must fail with DuplicateId.
            tokio::spawn(async move { s.create_queue(queue(i / 2)).await })
        })
        .collect();
    let (mut ok, mut dup) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::DuplicateId) => dup += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, dup), (100, 100));
    assert!(s.writer_stats().max_batch > 1, "operations were batched");
    assert_eq!(s.stats().await.unwrap().queues, 100);
    for i in 0..100 {
        assert_eq!(s.get_by_sender(sid(i)).await.unwrap(), Some(queue(i)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_reader_pool_sheds_load_with_busy() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(
        SqliteStore::open(
            dir.path().join("store.db"),
            SqliteOptions {
                readers: 1,
                read_timeout: std::time::Duration::from_nanos(1),
                // Cached lookups take no reader: the pool is what is tested here.
                cache_queues: 0,
                ..sqlite_opts(128)
            },
        )
        .unwrap(),
    );
    s.create_queue(full_queue(1)).await.unwrap();
    let tasks: Vec<_> = (0..300)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.get_by_recipient(rid(1)).await })
        })
        .collect();
    let (mut ok, mut busy) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(Some(q)) => {
                assert_eq!(q, full_queue(1));
                ok += 1;
            }
            Err(StoreError::Busy) => busy += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(ok > 0 && busy > 0, "ok {ok}, busy {busy}");
}

/// `wal_autocheckpoint` / `journal_size_limit` reach the writer connection: with a 10-page
/// checkpoint threshold and a 0-byte limit the WAL stays small, with SQLite's default (1000
/// pages) the same appends leave it far larger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_checkpoint_options_bound_the_wal() {
    async fn wal_len(autocheckpoint: u32, limit: i64) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let store = SqliteStore::open(
            &path,
            SqliteOptions {
                wal_autocheckpoint: autocheckpoint,
                journal_size_limit: limit,
                ..sqlite_opts(1000)
            },
        )
        .unwrap();
        store.create_queue(queue(1)).await.unwrap();
        for n in 0..60 {
            let m = hush_store::NewMessage {
                body: vec![n as u8; 16_000],
                ..msg(n, 1)
            };
            store.append_message(rid(1), m, None).await.unwrap();
        }
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        std::fs::metadata(wal).unwrap().len()
    }
    let small = wal_len(10, 0).await;
    let default = wal_len(1000, -1).await;
    assert!(
        small < 256 * 1024,
        "WAL {small} bytes with a 10-page checkpoint"
    );
    assert!(
        default > 512 * 1024,
        "WAL {default} bytes with the default checkpoint"
    );
}
