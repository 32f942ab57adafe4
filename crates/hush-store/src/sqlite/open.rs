//! Opening a database file safely: refuse (never touch) anything that is not a healthy SQLite
//! database of a schema version we know; create and migrate otherwise.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::error::{StoreError, StoreResult};

/// Current schema version (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 2;

/// Migrations: entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: initial schema.
    "CREATE TABLE queues (
        id INTEGER PRIMARY KEY,
        recipient_id BLOB NOT NULL UNIQUE,
        recipient_keys BLOB NOT NULL,
        rcv_dh_secret BLOB NOT NULL,
        sender_id BLOB NOT NULL UNIQUE,
        sender_key BLOB,
        queue_mode INTEGER,
        link_id BLOB UNIQUE,
        link_fixed BLOB,
        link_user BLOB,
        notifier_id BLOB UNIQUE,
        notifier_key BLOB,
        rcv_ntf_dh_secret BLOB,
        status INTEGER NOT NULL,
        block_reason INTEGER,
        block_notice INTEGER,
        block_notice_ttl INTEGER,
        updated_at INTEGER
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        queue_id INTEGER NOT NULL,
        msg_id BLOB NOT NULL,
        ts INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        flags INTEGER NOT NULL,
        body BLOB NOT NULL
    );
    CREATE INDEX messages_queue ON messages (queue_id, id);
    CREATE INDEX messages_ts ON messages (ts);
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY,
        notifier_id BLOB NOT NULL,
        msg_id BLOB NOT NULL,
        ts INTEGER NOT NULL,
        nonce BLOB NOT NULL,
        enc_meta BLOB NOT NULL
    );
    CREATE INDEX notifications_notifier ON notifications (notifier_id, id);
    CREATE INDEX notifications_ts ON notifications (ts);",
    // 1 → 2: service certificates (v16): services, and the queue ↔ service associations
    // (reference migration `20250514_service_certs`).
    "CREATE TABLE services (
        service_id BLOB PRIMARY KEY,
        service_role INTEGER NOT NULL,
        service_cert BLOB NOT NULL,
        service_cert_hash BLOB NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    ALTER TABLE queues ADD COLUMN rcv_service_id BLOB;
    ALTER TABLE queues ADD COLUMN ntf_service_id BLOB;
    CREATE INDEX queues_rcv_service ON queues (rcv_service_id, recipient_id)
        WHERE rcv_service_id IS NOT NULL;
    CREATE INDEX queues_ntf_service ON queues (ntf_service_id, notifier_id)
        WHERE ntf_service_id IS NOT NULL;",
];

const MAGIC: &[u8; 16] = b"SQLite format 3\0";

fn not_db(path: &Path, detail: impl Into<String>) -> StoreError {
    StoreError::NotDatabase {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

fn corrupt(path: &Path, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// Check the 100-byte header of an existing file without SQLite: magic, page size, and (when the
/// header's page count is valid and there is no WAL to replay) that the file is not shorter
/// than the header says.
fn check_header(path: &Path) -> StoreResult<()> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Err(corrupt(path, "file is empty (truncated?)"));
    }
    let mut h = [0u8; 100];
    let mut got = 0;
    while got < h.len() {
        let n = f.read(&mut h[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    if got < 16 || h[..16] != MAGIC[..] {
        return Err(not_db(path, "missing SQLite header"));
    }
    if got < 100 {
        return Err(corrupt(
            path,
            format!("file is {len} bytes, shorter than the 100-byte header"),
        ));
    }
    let page_size = match u16::from_be_bytes([h[16], h[17]]) {
        1 => 65536u64,
        n if n >= 512 && n.is_power_of_two() => u64::from(n),
        n => return Err(corrupt(path, format!("invalid page size {n}"))),
    };
    let change_counter = &h[24..28];
    let valid_for = &h[92..96];
    let pages = u64::from(u32::from_be_bytes([h[28], h[29], h[30], h[31]]));
    let wal = wal_path(path);
    let wal_has_frames = std::fs::metadata(&wal)
        .map(|m| m.len() > 32)
        .unwrap_or(false);
    if change_counter == valid_for && pages > 0 && !wal_has_frames {
        let expected = pages.saturating_mul(page_size);
        if len < expected {
            return Err(corrupt(
                path,
                format!(
                    "file is {len} bytes but its header says {pages} pages of {page_size} bytes (truncated)"
                ),
            ));
        }
    }
    Ok(())
}

fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push("-wal");
    s.into()
}

/// `file:` URI (percent-encoded path) opening the database read-only and immutable.
fn immutable_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    uri
}

fn map_open_err(path: &Path, e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, msg) => match f.code {
            rusqlite::ErrorCode::NotADatabase => {
                not_db(path, msg.clone().unwrap_or_else(|| e.to_string()))
            }
            rusqlite::ErrorCode::DatabaseCorrupt => {
                corrupt(path, msg.clone().unwrap_or_else(|| e.to_string()))
            }
            _ => StoreError::Sqlite(e),
        },
        _ => StoreError::Sqlite(e),
    }
}

/// Read-only integrity check of an existing database: header, `PRAGMA quick_check`, version.
///
/// Without a WAL file beside it the database is opened `immutable=1`, so the check creates no
/// `-wal`/`-shm` files either; with one (after a crash), a plain read-only connection is used so
/// the WAL is part of what is checked.
pub(crate) fn check_existing(path: &Path, quick_check: bool) -> StoreResult<()> {
    check_header(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let c = if wal_path(path).exists() {
        Connection::open_with_flags(path, flags)
    } else {
        Connection::open_with_flags(immutable_uri(path), flags | OpenFlags::SQLITE_OPEN_URI)
    }
    .map_err(|e| map_open_err(path, e))?;
    if quick_check {
        let mut st = c
            .prepare("PRAGMA quick_check")
            .map_err(|e| map_open_err(path, e))?;
        let rows: Vec<String> = st
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| map_open_err(path, e))?;
        if rows.len() != 1 || rows[0] != "ok" {
            let detail: Vec<_> = rows.into_iter().take(5).collect();
            return Err(corrupt(path, format!("quick_check: {}", detail.join("; "))));
        }
    }
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| map_open_err(path, e))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == 0 {
        // An existing SQLite file with no hush schema: only accept it if it is empty.
        let tables: i64 = c
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(|e| map_open_err(path, e))?;
        if tables != 0 {
            return Err(not_db(path, "SQLite database without a hush schema"));
        }
    }
    Ok(())
}

/// Apply pending migrations on the writer connection, in one transaction.
pub(crate) fn migrate(c: &mut Connection, path: &Path) -> StoreResult<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    let from = usize::try_from(version).map_err(|_| corrupt(path, "negative user_version"))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tracing::info!(schema_version = i + 1, "hush-store: migrated SQLite schema");
    }
    tx.commit()?;
    Ok(())
}

const _: () = assert!(MIGRATIONS.len() as i64 == SCHEMA_VERSION);
