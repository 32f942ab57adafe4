#![allow(dead_code)]

use hush_store::{
    EntityId, LinkData, NewMessage, NotifierCreds, PendingNtf, QueueLink, QueueMode, QueueRecord,
    QueueStatus, SqliteOptions, SqliteStore, SyncPolicy,
};

/// Distinct ids per (kind tag, n).
pub fn eid(tag: u8, n: u32) -> EntityId {
    let mut id = [tag; 24];
    id[20..].copy_from_slice(&n.to_be_bytes());
    id
}

pub fn rid(n: u32) -> EntityId {
    eid(b'r', n)
}
pub fn sid(n: u32) -> EntityId {
    eid(b's', n)
}
pub fn nid(n: u32) -> EntityId {
    eid(b'n', n)
}
pub fn lid(n: u32) -> EntityId {
    eid(b'l', n)
}

pub fn key(tag: u8) -> Vec<u8> {
    let mut k = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    k.extend_from_slice(&[tag; 32]);
    k
}

pub fn queue(n: u32) -> QueueRecord {
    QueueRecord {
        recipient_id: rid(n),
        recipient_keys: vec![key(1)],
        rcv_dh_secret: [7; 32],
        sender_id: sid(n),
        sender_key: None,
        mode: Some(QueueMode::Messaging),
        link: None,
        notifier: None,
        status: QueueStatus::Active,
        updated_at: None,
    }
}

pub fn full_queue(n: u32) -> QueueRecord {
    QueueRecord {
        recipient_keys: vec![key(1), key(2)],
        sender_key: Some(key(3)),
        mode: Some(QueueMode::Contact),
        link: Some(link(n, b"fixed", b"user")),
        notifier: Some(notifier(n)),
        updated_at: Some(1_700_000_000 / 86400 * 86400),
        ..queue(n)
    }
}

pub fn link(n: u32, fixed: &[u8], user: &[u8]) -> QueueLink {
    QueueLink {
        link_id: lid(n),
        data: LinkData {
            fixed: fixed.to_vec(),
            user: user.to_vec(),
        },
    }
}

pub fn notifier(n: u32) -> NotifierCreds {
    NotifierCreds {
        notifier_id: nid(n),
        notifier_key: key(9),
        rcv_ntf_dh_secret: [n as u8; 32],
    }
}

pub fn msg(n: u32, ts: i64) -> NewMessage {
    NewMessage {
        msg_id: eid(b'm', n),
        ts,
        flags: b'T',
        body: format!("message {n}").into_bytes(),
    }
}

pub fn ntf(n: u32, ts: i64) -> PendingNtf {
    PendingNtf {
        msg_id: eid(b'm', n),
        ts,
        nonce: [n as u8; 24],
        enc_meta: vec![n as u8; 144],
    }
}

pub fn sqlite_opts(quota: usize) -> SqliteOptions {
    SqliteOptions {
        quota,
        sync: SyncPolicy::Normal,
        ..SqliteOptions::default()
    }
}

pub fn open_sqlite(dir: &tempfile::TempDir, quota: usize) -> SqliteStore {
    SqliteStore::open(dir.path().join("store.db"), sqlite_opts(quota)).unwrap()
}

/// PostgreSQL used by tests (design §5): trust auth on this machine; override with
/// `HUSH_TEST_PG_URL`. Tests fail (never skip) when it is down.
pub fn pg_url() -> String {
    std::env::var("HUSH_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A fresh schema for one test; dropped (CASCADE) when the guard goes out of scope.
pub struct PgSchema {
    pub name: String,
}

impl PgSchema {
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "hush_test_{}_{}_{}",
            std::process::id(),
            nanos,
            N.fetch_add(1, Ordering::Relaxed)
        );
        Self { name }
    }

    pub fn opts(&self, quota: usize) -> hush_store::PgOptions {
        hush_store::PgOptions {
            url: pg_url(),
            schema: self.name.clone(),
            pool_size: 4,
            quota,
            ..hush_store::PgOptions::default()
        }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Own thread + runtime: Drop may run inside (or outside) a tokio runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (client, conn) =
                    tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
            })
        })
        .join();
    }
}

pub async fn open_pg(schema: &PgSchema, quota: usize) -> hush_store::PgStore {
    hush_store::PgStore::connect(schema.opts(quota))
        .await
        .expect(
            "PostgreSQL must be running at HUSH_TEST_PG_URL / 127.0.0.1:5432 (tests do not skip)",
        )
}
