//! Data at rest in the SQLite store: deleted (acknowledged, expired, queue-deleted) messages do
//! not linger in the database file's free pages (`secure_delete`), and the file, its WAL and
//! its shared-memory file are private (0600) from creation.

mod common;

use std::path::Path;

use common::*;
use hush_store::{NewMessage, QueueStore, SqliteOptions, SqliteStore, SyncPolicy};

/// A body nobody else writes: a 16-byte marker (distinct per message) repeated to `len` bytes.
fn marked_body(tag: u8, len: usize) -> Vec<u8> {
    let marker = [
        b'S', b'E', b'C', b'R', b'E', b'T', b'-', tag, b'-', b'H', b'U', b'S', b'H', b'-', b'!',
        b'!',
    ];
    marker.iter().copied().cycle().take(len).collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn marker(tag: u8) -> Vec<u8> {
    marked_body(tag, 16)
}

/// Stores three queues' messages with recognizable bodies, removes them by ACK (a small and a
/// large body), by expiry and by deleting the queue, checkpoints the WAL into the database file
/// and returns the file's bytes (and the WAL's, which TRUNCATE empties).
async fn deleted_bodies_file(dir: &Path, secure_delete: bool) -> (Vec<u8>, Vec<u8>) {
    let path = dir.join("store.db");
    let s = SqliteStore::open(
        &path,
        SqliteOptions {
            sync: SyncPolicy::Normal,
            secure_delete,
            ..SqliteOptions::default()
        },
    )
    .unwrap();
    for q in 1..=3 {
        s.create_queue(queue(q)).await.unwrap();
    }
    // A kept message: its bytes must stay (the search below is not trivially negative).
    let keep = NewMessage {
        msg_id: eid(b'm', 9),
        ts: 2_000_000_000,
        flags: b'T',
        body: marked_body(b'K', 64),
    };
    s.append_message(rid(3), keep, None).await.unwrap();
    let bodies = [
        (1, b'A', 200, 2_000_000_000), // small, in the table's leaf page; ACKed
        (1, b'B', 16_000, 2_000_000_000), // large, overflow pages; ACKed
        (2, b'C', 16_000, 1),          // expired
        (3, b'D', 4_000, 2_000_000_000), // its queue is deleted
    ];
    for (n, (q, tag, len, ts)) in bodies.iter().enumerate() {
        let m = NewMessage {
            msg_id: eid(b'm', n as u32),
            ts: *ts,
            flags: b'T',
            body: marked_body(*tag, *len),
        };
        s.append_message(rid(*q), m, None).await.unwrap();
    }
    // Everything is in the file before the deletes (the deletes must erase, not just skip it).
    {
        let c = rusqlite_conn(&path);
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for tag in [b'A', b'B', b'C', b'D', b'K'] {
            assert!(contains(&bytes, &marker(tag)), "{} not stored", tag as char);
        }
    }
    assert!(
        s.delete_message(rid(1), eid(b'm', 0))
            .await
            .unwrap()
            .deleted
    );
    assert!(
        s.delete_message(rid(1), eid(b'm', 1))
            .await
            .unwrap()
            .deleted
    );
    assert_eq!(s.expire_messages(1_000).await.unwrap(), 1);
    s.delete_queue(rid(3)).await.unwrap();
    s.create_queue(queue(4)).await.unwrap();
    s.append_message(
        rid(4),
        NewMessage {
            msg_id: eid(b'm', 10),
            ts: 2_000_000_000,
            flags: b'T',
            body: marked_body(b'K', 64),
        },
        None,
    )
    .await
    .unwrap();
    let c = rusqlite_conn(&path);
    let (busy, _, _): (i64, i64, i64) = c
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(busy, 0, "checkpoint blocked");
    let wal = std::fs::read(dir.join("store.db-wal")).unwrap_or_default();
    let db = std::fs::read(&path).unwrap();
    drop(c);
    drop(s);
    (db, wal)
}

fn rusqlite_conn(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_messages_are_erased_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (db, wal) = deleted_bodies_file(dir.path(), true).await;
    assert!(contains(&db, &marker(b'K')), "kept message missing");
    for (tag, how) in [
        (b'A', "ACKed small"),
        (b'B', "ACKed large"),
        (b'C', "expired"),
        (b'D', "deleted with its queue"),
    ] {
        assert!(
            !contains(&db, &marker(tag)),
            "{how} message body still in the database file"
        );
        assert!(
            !contains(&wal, &marker(tag)),
            "{how} message body in the WAL"
        );
    }
}

/// The control: without secure_delete the same deletes leave the bodies in free pages (so the
/// test above fails without the pragma).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_secure_delete_the_bodies_linger() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = deleted_bodies_file(dir.path(), false).await;
    let lingering: Vec<char> = [b'A', b'B', b'C', b'D']
        .into_iter()
        .filter(|t| contains(&db, &marker(*t)))
        .map(char::from)
        .collect();
    // At least the large bodies (overflow pages, put on the freelist as they were) linger; a
    // small one in a table page may have been overwritten by a later insert.
    assert!(
        lingering.contains(&'B') && lingering.contains(&'C'),
        "expected deleted bodies in free pages without secure_delete, found {lingering:?}"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_wal_and_shm_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let s = open_sqlite(&dir, 10);
        s.create_queue(queue(1)).await.unwrap();
        s.append_message(rid(1), msg(1, 1), None).await.unwrap();
        for f in ["store.db", "store.db-wal", "store.db-shm"] {
            assert_eq!(mode(&dir.path().join(f)), 0o600, "{f}");
        }
    }
    // A database left world-readable (older version, copied by hand) is tightened on open.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = open_sqlite(&dir, 10);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(s.message_count(rid(1)).await.unwrap(), 1);
}
