//! PostgreSQL backend (tokio-postgres + deadpool-postgres), for operators who outgrow one disk.
//!
//! Every write method is one PostgreSQL transaction (the server does its own group commit);
//! operations on one queue lock its row (`SELECT … FOR UPDATE`), so quota checks and head
//! deletes are serialised per queue. The future resolves after `COMMIT` returned, i.e. durable
//! under the server's `synchronous_commit`. Connections come from a bounded pool; a caller that
//! waits longer than `wait_timeout` for one gets [`StoreError::Busy`] (load shedding).
//!
//! Tables live in their own schema (`PgOptions::schema`, created if missing, selected with
//! `search_path` on every pooled connection); the schema version is kept in `hush_meta`.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, NoTls, Row};

use crate::codec::{
    EXPIRE_ALL_SQL, EXPIRE_QUEUE_SQL, KIND_QUOTA, QUEUE_COLUMNS, QueueRow, encode_keys,
    message_columns, message_from_columns, ntf_from_columns, status_columns,
};
use crate::error::{StoreError, StoreResult};
use crate::store::{QueueStore, StoreFuture};
use crate::types::{
    AppendOutcome, BlockInfo, DEFAULT_QUOTA, DeleteOutcome, EntityId, Message, MsgId, NewMessage,
    NotifierCreds, PendingNtf, QueueLink, QueueRecord, QueueStatus, ServiceParty, ServiceRecord,
    StoreStats,
};
use crate::validate;

/// Above this many rows (planner estimate) [`QueueStore::stats`] reports the estimate instead of
/// counting the table.
const EXACT_COUNT_MAX: u64 = 100_000;

/// Current PostgreSQL schema version.
pub const PG_SCHEMA_VERSION: i64 = 2;

const PG_MIGRATIONS: &[&str] = &[
    // 0 → 1
    "CREATE TABLE queues (
        id BIGSERIAL PRIMARY KEY,
        recipient_id BYTEA NOT NULL UNIQUE,
        recipient_keys BYTEA NOT NULL,
        rcv_dh_secret BYTEA NOT NULL,
        sender_id BYTEA NOT NULL UNIQUE,
        sender_key BYTEA,
        queue_mode BIGINT,
        link_id BYTEA UNIQUE,
        link_fixed BYTEA,
        link_user BYTEA,
        notifier_id BYTEA UNIQUE,
        notifier_key BYTEA,
        rcv_ntf_dh_secret BYTEA,
        status BIGINT NOT NULL,
        block_reason BIGINT,
        block_notice BIGINT,
        block_notice_ttl BIGINT,
        updated_at BIGINT
    );
    CREATE TABLE messages (
        id BIGSERIAL PRIMARY KEY,
        queue_id BIGINT NOT NULL REFERENCES queues (id) ON DELETE CASCADE,
        msg_id BYTEA NOT NULL,
        ts BIGINT NOT NULL,
        kind BIGINT NOT NULL,
        flags BIGINT NOT NULL,
        body BYTEA NOT NULL
    );
    CREATE INDEX messages_queue ON messages (queue_id, id);
    CREATE INDEX messages_ts ON messages (ts);
    CREATE TABLE notifications (
        id BIGSERIAL PRIMARY KEY,
        notifier_id BYTEA NOT NULL,
        msg_id BYTEA NOT NULL,
        ts BIGINT NOT NULL,
        nonce BYTEA NOT NULL,
        enc_meta BYTEA NOT NULL
    );
    CREATE INDEX notifications_notifier ON notifications (notifier_id, id);
    CREATE INDEX notifications_ts ON notifications (ts);",
    // 1 → 2: service certificates (v16; reference migration `20250514_service_certs`).
    "CREATE TABLE services (
        service_id BYTEA PRIMARY KEY,
        service_role BIGINT NOT NULL,
        service_cert BYTEA NOT NULL,
        service_cert_hash BYTEA NOT NULL UNIQUE,
        created_at BIGINT NOT NULL
    );
    ALTER TABLE queues ADD COLUMN rcv_service_id BYTEA;
    ALTER TABLE queues ADD COLUMN ntf_service_id BYTEA;
    CREATE INDEX queues_rcv_service ON queues (rcv_service_id, recipient_id)
        WHERE rcv_service_id IS NOT NULL;
    CREATE INDEX queues_ntf_service ON queues (ntf_service_id, notifier_id)
        WHERE ntf_service_id IS NOT NULL;",
];

const _: () = assert!(PG_MIGRATIONS.len() as i64 == PG_SCHEMA_VERSION);

/// Options for [`PgStore::connect`] (ini: `db_connection`, `db_schema`, `db_pool_size`).
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// `postgresql://user@host:port/db` (libpq-style key=value strings work too).
    pub url: String,
    /// Schema holding the tables: `[a-z_][a-z0-9_]*`, at most 63 bytes.
    pub schema: String,
    pub pool_size: usize,
    /// How long a caller waits for a pooled connection before `Busy`.
    pub wait_timeout: Duration,
    /// How long establishing a new connection may take.
    pub connect_timeout: Duration,
    pub quota: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            url: "postgresql://smp@/smp_server_store".into(),
            schema: "smp_server".into(),
            pool_size: 10,
            wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            quota: DEFAULT_QUOTA,
        }
    }
}

/// PostgreSQL [`QueueStore`]. Cheap to clone (shared pool).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    quota: usize,
    schema: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .finish()
    }
}

fn valid_schema(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        StoreError::DuplicateId
    } else {
        StoreError::Postgres(e)
    }
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

async fn opt<C: GenericClient + Sync>(c: &C, sql: &str, p: Params<'_>) -> StoreResult<Option<Row>> {
    c.query_opt(sql, p).await.map_err(pg)
}

async fn all<C: GenericClient + Sync>(c: &C, sql: &str, p: Params<'_>) -> StoreResult<Vec<Row>> {
    c.query(sql, p).await.map_err(pg)
}

async fn exec<C: GenericClient + Sync>(c: &C, sql: &str, p: Params<'_>) -> StoreResult<u64> {
    c.execute(sql, p).await.map_err(pg)
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> StoreResult<T> {
    r.try_get(i).map_err(StoreError::Postgres)
}

fn row_to_queue(r: &Row) -> StoreResult<QueueRecord> {
    QueueRow {
        recipient_id: get(r, 0)?,
        recipient_keys: get(r, 1)?,
        rcv_dh_secret: get(r, 2)?,
        sender_id: get(r, 3)?,
        sender_key: get(r, 4)?,
        queue_mode: get(r, 5)?,
        link_id: get(r, 6)?,
        link_fixed: get(r, 7)?,
        link_user: get(r, 8)?,
        notifier_id: get(r, 9)?,
        notifier_key: get(r, 10)?,
        rcv_ntf_dh_secret: get(r, 11)?,
        status: get(r, 12)?,
        block_reason: get(r, 13)?,
        block_notice: get(r, 14)?,
        block_notice_ttl: get(r, 15)?,
        updated_at: get(r, 16)?,
    }
    .into_record()
}

fn row_to_message(r: &Row) -> StoreResult<Message> {
    message_from_columns(get(r, 0)?, get(r, 1)?, get(r, 2)?, get(r, 3)?, get(r, 4)?)
}

async fn get_queue<C: GenericClient + Sync>(
    c: &C,
    col: &str,
    id: &EntityId,
) -> StoreResult<Option<QueueRecord>> {
    let sql = format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE {col} = $1");
    opt(c, &sql, &[&&id[..]])
        .await?
        .as_ref()
        .map(row_to_queue)
        .transpose()
}

/// Lock the queue row for the rest of the transaction; returns (row id, record).
async fn lock<C: GenericClient + Sync>(c: &C, rid: &EntityId) -> StoreResult<(i64, QueueRecord)> {
    let sql = format!("SELECT {QUEUE_COLUMNS}, id FROM queues WHERE recipient_id = $1 FOR UPDATE");
    let r = opt(c, &sql, &[&&rid[..]])
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok((get(&r, 17)?, row_to_queue(&r)?))
}

async fn head<C: GenericClient + Sync>(c: &C, row: i64) -> StoreResult<Option<(i64, Message)>> {
    let r = opt(
        c,
        "SELECT msg_id, ts, kind, flags, body, id FROM messages WHERE queue_id = $1 ORDER BY id LIMIT 1",
        &[&row],
    )
    .await?;
    match r {
        Some(r) => Ok(Some((get(&r, 5)?, row_to_message(&r)?))),
        None => Ok(None),
    }
}

async fn queue_row<C: GenericClient + Sync>(c: &C, rid: &EntityId) -> StoreResult<i64> {
    let r = opt(
        c,
        "SELECT id FROM queues WHERE recipient_id = $1",
        &[&&rid[..]],
    )
    .await?
    .ok_or(StoreError::NotFound)?;
    get(&r, 0)
}

impl PgStore {
    /// Connect, create the schema if missing and migrate it. Fails (never skips) if the server
    /// is unreachable.
    pub async fn connect(opts: PgOptions) -> StoreResult<Self> {
        if !valid_schema(&opts.schema) {
            return Err(StoreError::Invalid(
                "PostgreSQL schema name must match [a-z_][a-z0-9_]*",
            ));
        }
        let mut cfg: tokio_postgres::Config = opts.url.parse().map_err(StoreError::Postgres)?;
        cfg.options(format!("-c search_path={}", opts.schema));
        let mgr = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(opts.pool_size.max(1))
            .wait_timeout(Some(opts.wait_timeout))
            .create_timeout(Some(opts.connect_timeout))
            .recycle_timeout(Some(opts.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        let store = Self {
            pool,
            quota: opts.quota.max(1),
            schema: opts.schema,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The schema in use.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Client> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
                StoreError::Busy
            }
            deadpool_postgres::PoolError::Backend(e) => StoreError::Postgres(e),
            other => StoreError::Pool(other.to_string()),
        })
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // Serialise concurrent starts on the same schema.
        exec(
            &*tx,
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[&self.schema],
        )
        .await?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s};
             CREATE TABLE IF NOT EXISTS {s}.hush_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);",
            s = self.schema
        ))
        .await
        .map_err(pg)?;
        let version: i64 = match opt(
            &*tx,
            "SELECT value FROM hush_meta WHERE key = 'schema_version'",
            &[],
        )
        .await?
        {
            Some(r) => get(&r, 0)?,
            None => 0,
        };
        if version > PG_SCHEMA_VERSION {
            return Err(StoreError::PgSchemaTooNew {
                found: version,
                supported: PG_SCHEMA_VERSION,
            });
        }
        let from =
            usize::try_from(version).map_err(|_| StoreError::BadRecord("schema version".into()))?;
        for (i, sql) in PG_MIGRATIONS.iter().enumerate().skip(from) {
            tx.batch_execute(sql).await.map_err(pg)?;
            let v = (i + 1) as i64;
            exec(
                &*tx,
                "INSERT INTO hush_meta (key, value) VALUES ('schema_version', $1)
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&v],
            )
            .await?;
            tracing::info!(schema_version = v, "hush-store: migrated PostgreSQL schema");
        }
        tx.commit().await.map_err(pg)?;
        Ok(())
    }

    async fn read_queue(
        &self,
        col: &'static str,
        id: EntityId,
    ) -> StoreResult<Option<QueueRecord>> {
        let c = self.client().await?;
        get_queue(&**c, col, &id).await
    }
}

/// Open a transaction on a pooled connection: `let mut c = …; let tx = begin!(c);`
macro_rules! begin {
    ($c:ident) => {
        $c.transaction().await.map_err(pg)?
    };
}

async fn set_keys<C: GenericClient + Sync>(
    c: &C,
    rid: &EntityId,
    keys: &[Vec<u8>],
) -> StoreResult<()> {
    let enc = encode_keys(keys)?;
    exec(
        c,
        "UPDATE queues SET recipient_keys = $2 WHERE recipient_id = $1",
        &[&&rid[..], &enc],
    )
    .await?;
    Ok(())
}

async fn set_status<C: GenericClient + Sync>(
    c: &C,
    rid: &EntityId,
    st: &QueueStatus,
) -> StoreResult<()> {
    let (status, reason, notice, ttl) = status_columns(st);
    exec(
        c,
        "UPDATE queues SET status = $2, block_reason = $3, block_notice = $4, block_notice_ttl = $5 \
         WHERE recipient_id = $1",
        &[&&rid[..], &status, &reason, &notice, &ttl],
    )
    .await?;
    Ok(())
}

/// Locks a queue and deletes the pending notifications of its current notifier (if any);
/// returns that notifier's id.
async fn lock_and_drop_ntfs<C: GenericClient + Sync>(
    c: &C,
    rid: &EntityId,
) -> StoreResult<Option<EntityId>> {
    let (_, q) = lock(c, rid).await?;
    let old = q.notifier.map(|n| n.notifier_id);
    if let Some(old) = &old {
        delete_ntfs(c, old).await?;
    }
    Ok(old)
}

fn pg_service_column(p: ServiceParty) -> (&'static str, &'static str) {
    match p {
        ServiceParty::Recipient => ("rcv_service_id", "recipient_id"),
        ServiceParty::Notifier => ("ntf_service_id", "notifier_id"),
    }
}

async fn delete_ntfs<C: GenericClient + Sync>(c: &C, nid: &EntityId) -> StoreResult<()> {
    exec(
        c,
        "DELETE FROM notifications WHERE notifier_id = $1",
        &[&&nid[..]],
    )
    .await?;
    Ok(())
}

impl QueueStore for PgStore {
    fn create_queue(&self, queue: QueueRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let q = validate::queue(queue)?;
            let r = QueueRow::from_record(&q)?;
            let c = self.client().await?;
            let sql = format!(
                "INSERT INTO queues ({QUEUE_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
            );
            exec(
                &**c,
                &sql,
                &[
                    &r.recipient_id,
                    &r.recipient_keys,
                    &r.rcv_dh_secret,
                    &r.sender_id,
                    &r.sender_key,
                    &r.queue_mode,
                    &r.link_id,
                    &r.link_fixed,
                    &r.link_user,
                    &r.notifier_id,
                    &r.notifier_key,
                    &r.rcv_ntf_dh_secret,
                    &r.status,
                    &r.block_reason,
                    &r.block_notice,
                    &r.block_notice_ttl,
                    &r.updated_at,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn get_by_recipient(&self, id: EntityId) -> StoreFuture<'_, Option<QueueRecord>> {
        Box::pin(self.read_queue("recipient_id", id))
    }

    fn get_by_sender(&self, id: EntityId) -> StoreFuture<'_, Option<QueueRecord>> {
        Box::pin(self.read_queue("sender_id", id))
    }

    fn get_by_notifier(&self, id: EntityId) -> StoreFuture<'_, Option<QueueRecord>> {
        Box::pin(self.read_queue("notifier_id", id))
    }

    fn get_by_link(&self, id: EntityId) -> StoreFuture<'_, Option<QueueRecord>> {
        Box::pin(self.read_queue("link_id", id))
    }

    fn secure_queue(&self, rid: EntityId, key: Vec<u8>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = begin!(c);
            let (_, q) = lock(&*tx, &rid).await?;
            match q.sender_key {
                Some(k) if k == key => return Ok(()),
                Some(_) => return Err(StoreError::SenderKeyMismatch),
                None => {
                    exec(
                        &*tx,
                        "UPDATE queues SET sender_key = $2 WHERE recipient_id = $1",
                        &[&&rid[..], &key],
                    )
                    .await?;
                }
            }
            tx.commit().await.map_err(pg)
        })
    }

    fn add_recipient_key(&self, rid: EntityId, key: Vec<u8>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = begin!(c);
            let (_, q) = lock(&*tx, &rid).await?;
            set_keys(&*tx, &rid, &validate::add_key(q.recipient_keys, key)?).await?;
            tx.commit().await.map_err(pg)
        })
    }

    fn remove_recipient_key(&self, rid: EntityId, key: Vec<u8>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = begin!(c);
            let (_, q) = lock(&*tx, &rid).await?;
            set_keys(&*tx, &rid, &validate::remove_key(q.recipient_keys, &key)?).await?;
            tx.commit().await.map_err(pg)
        })
    }

    fn set_recipient_keys(&self, rid: EntityId, keys: Vec<Vec<u8>>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let keys = validate::key_set(keys)?;
            let mut c = self.client().await?;
            let tx = begin!(c);
            lock(&*tx, &rid).await?;
            set_keys(&*tx, &rid, &keys).await?;
            tx.commit().await.map_err(pg)
        })
    }

    fn set_link(&self, rid: EntityId, link: QueueLink) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = begin!(c);
            let (_, q) = lock(&*tx, &rid).await?;
            validate::link_change(q.link.as_ref(), &link)?;
            exec(
                &*tx,
                "UPDATE queues SET link_id = $2, link_fixed = $3, link_user = $4 WHERE recipient_id = $1",
                &[&&rid[..], &&link.link_id[..], &link.data.fixed, &link.data.user],
            )
            .await?;
            tx.commit().await.map_err(pg)
        })
    }

    fn delete_link(&self, rid: EntityId) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let c = self.client().await?;
            let n = exec(
                &**c,
                "UPDATE queues SET link_id = NULL, link_fixed = NULL, link_user = NULL WHERE recipient_id = $1",
                &[&&rid[..]],
            )
            .await?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
    }

    fn set_notifier(
        &self,
        rid: EntityId,
        creds: NotifierCreds,
    ) -> StoreFuture<'_, Option<EntityId>> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = begin!(c);
            let old = lock_and_drop_ntfs(&*tx, &rid).await?;
            exec(
                &*tx,
                "UPDATE queues SET notifier_id = $2, notifier_key = $3, rcv_ntf_dh_secret = $4, ntf_service_id = NULL WHERE recipient_id = $1",
                &[&&rid[..], &&creds.notifier_id[..], &creds.notifier_key, &&creds.rcv_ntf_dh_secret[..]],
            )
            .await?;
            tx.commit().await.map_err(pg)?;
            Ok(old)
        })
    }

    fn delete_notifier(&self, rid: EntityId) -> StoreFuture<'_, Option<EntityId>> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = begin!(c);
            let old = lock_and_drop_ntfs(&*tx, &rid).await?;
            if old.is_some() {
                exec(
                    &*tx,
                    "UPDATE queues SET notifier_id = NULL, notifier_key = NULL, rcv_ntf_dh_secret = NULL, \
                     ntf_service_id = NULL WHERE recipient_id = $1",
                    &[&&rid[..]],
                )
                .await?;
            }
            tx.commit().await.map_err(pg)?;
            Ok(old)
        })
    }

    fn suspend_queue(&self, rid: EntityId) -> StoreFuture<'_, ()> {
        self.block_or_suspend(rid, QueueStatus::Off)
    }

    fn block_queue(&self, rid: EntityId, info: BlockInfo) -> StoreFuture<'_, ()> {
        self.block_or_suspend(rid, QueueStatus::Blocked(info))
    }

    fn unblock_queue(&self, rid: EntityId) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = begin!(c);
            let (_, q) = lock(&*tx, &rid).await?;
            if matches!(q.status, QueueStatus::Blocked(_)) {
                set_status(&*tx, &rid, &QueueStatus::Active).await?;
            }
            tx.commit().await.map_err(pg)
        })
    }

    fn touch_queue(&self, rid: EntityId, updated_at: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let c = self.client().await?;
            let n = exec(
                &**c,
                "UPDATE queues SET updated_at = $2 WHERE recipient_id = $1",
                &[&&rid[..], &updated_at],
            )
            .await?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
    }

    fn delete_queue(&self, rid: EntityId) -> StoreFuture<'_, QueueRecord> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = begin!(c);
            let (row, q) = lock(&*tx, &rid).await?;
            if let Some(n) = &q.notifier {
                delete_ntfs(&*tx, &n.notifier_id).await?;
            }
            // Messages go with the row (ON DELETE CASCADE).
            exec(&*tx, "DELETE FROM queues WHERE id = $1", &[&row]).await?;
            tx.commit().await.map_err(pg)?;
            Ok(q)
        })
    }

    fn append_message(
        &self,
        rid: EntityId,
        msg: NewMessage,
        ntf: Option<PendingNtf>,
    ) -> StoreFuture<'_, AppendOutcome> {
        Box::pin(async move {
            validate::message(&msg)?;
            let mut c = self.client().await?;
            let tx = begin!(c);
            let (row, q) = lock(&*tx, &rid).await?;
            let r = opt(
                &*tx,
                "SELECT count(*), coalesce(max(kind), 0)::BIGINT FROM messages WHERE queue_id = $1",
                &[&row],
            )
            .await?
            .ok_or(StoreError::Internal("count returned no row"))?;
            let len: i64 = get(&r, 0)?;
            let max_kind: i64 = get(&r, 1)?;
            let len = usize::try_from(len).map_err(|_| StoreError::BadRecord("count".into()))?;
            let insert = |m: Message| {
                let tx = &tx;
                async move {
                    let (kind, flags, body) = message_columns(&m);
                    exec(
                        &**tx,
                        "INSERT INTO messages (queue_id, msg_id, ts, kind, flags, body) VALUES ($1, $2, $3, $4, $5, $6)",
                        &[&row, &&m.msg_id()[..], &m.ts(), &kind, &flags, &body],
                    )
                    .await
                }
            };
            let out = match validate::quota_decision(len, max_kind == KIND_QUOTA, self.quota) {
                validate::QuotaDecision::Refuse => {
                    return Ok(AppendOutcome::QuotaExceeded {
                        marker_added: false,
                    });
                }
                validate::QuotaDecision::AddMarker => {
                    insert(Message::QuotaMarker {
                        msg_id: msg.msg_id,
                        ts: msg.ts,
                    })
                    .await?;
                    AppendOutcome::QuotaExceeded { marker_added: true }
                }
                validate::QuotaDecision::Append => {
                    insert(Message::Message(msg)).await?;
                    if let (Some(n), Some(ntf)) = (&q.notifier, ntf) {
                        exec(
                            &*tx,
                            "INSERT INTO notifications (notifier_id, msg_id, ts, nonce, enc_meta) VALUES ($1, $2, $3, $4, $5)",
                            &[&&n.notifier_id[..], &&ntf.msg_id[..], &ntf.ts, &&ntf.nonce[..], &ntf.enc_meta],
                        )
                        .await?;
                    }
                    AppendOutcome::Appended {
                        was_empty: len == 0,
                    }
                }
            };
            tx.commit().await.map_err(pg)?;
            Ok(out)
        })
    }

    fn peek_message(&self, rid: EntityId) -> StoreFuture<'_, Option<Message>> {
        Box::pin(async move {
            let c = self.client().await?;
            let row = queue_row(&**c, &rid).await?;
            Ok(head(&**c, row).await?.map(|(_, m)| m))
        })
    }

    fn delete_message(&self, rid: EntityId, msg_id: MsgId) -> StoreFuture<'_, DeleteOutcome> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = begin!(c);
            let (row, _) = lock(&*tx, &rid).await?;
            let out = match head(&*tx, row).await? {
                Some((id, m)) if *m.msg_id() == msg_id => {
                    exec(&*tx, "DELETE FROM messages WHERE id = $1", &[&id]).await?;
                    DeleteOutcome {
                        deleted: true,
                        head: head(&*tx, row).await?.map(|(_, m)| m),
                    }
                }
                h => {
                    return Ok(DeleteOutcome {
                        deleted: false,
                        head: h.map(|(_, m)| m),
                    });
                }
            };
            tx.commit().await.map_err(pg)?;
            Ok(out)
        })
    }

    fn message_count(&self, rid: EntityId) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let c = self.client().await?;
            let row = queue_row(&**c, &rid).await?;
            let r = opt(
                &**c,
                "SELECT count(*) FROM messages WHERE queue_id = $1",
                &[&row],
            )
            .await?
            .ok_or(StoreError::Internal("count returned no row"))?;
            usize::try_from(get::<i64>(&r, 0)?).map_err(|_| StoreError::BadRecord("count".into()))
        })
    }

    fn expire_messages(&self, before: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let c = self.client().await?;
            exec(&**c, EXPIRE_ALL_SQL, &[&before]).await
        })
    }

    fn expire_queue_messages(&self, rid: EntityId, before: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = begin!(c);
            let (row, _) = lock(&*tx, &rid).await?;
            let n = exec(&*tx, EXPIRE_QUEUE_SQL, &[&before, &row]).await?;
            tx.commit().await.map_err(pg)?;
            Ok(n)
        })
    }

    fn drain_notifications(&self, nid: EntityId, limit: usize) -> StoreFuture<'_, Vec<PendingNtf>> {
        Box::pin(async move {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let c = self.client().await?;
            let rows = all(
                &**c,
                "DELETE FROM notifications WHERE id IN (
                     SELECT id FROM notifications WHERE notifier_id = $1 ORDER BY id LIMIT $2
                     FOR UPDATE SKIP LOCKED)
                 RETURNING msg_id, ts, nonce, enc_meta, id",
                &[&&nid[..], &limit],
            )
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let id: i64 = get(r, 4)?;
                out.push((
                    id,
                    ntf_from_columns(get(r, 0)?, get(r, 1)?, get(r, 2)?, get(r, 3)?)?,
                ));
            }
            out.sort_by_key(|(id, _)| *id);
            Ok(out.into_iter().map(|(_, n)| n).collect())
        })
    }

    fn expire_notifications(&self, before: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let c = self.client().await?;
            exec(&**c, "DELETE FROM notifications WHERE ts < $1", &[&before]).await
        })
    }

    fn get_create_service(&self, r: ServiceRecord) -> StoreFuture<'_, EntityId> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = begin!(c);
            // Serialise registrations of the same certificate.
            exec(
                &*tx,
                "SELECT pg_advisory_xact_lock(hashtextextended(encode($1, 'hex'), 0))",
                &[&&r.cert_hash[..]],
            )
            .await?;
            let found = opt(
                &*tx,
                "SELECT service_id, service_role FROM services WHERE service_cert_hash = $1",
                &[&&r.cert_hash[..]],
            )
            .await?;
            let id = match found {
                Some(row) => {
                    let role: i64 = get(&row, 1)?;
                    if role != i64::from(r.role) {
                        return Err(StoreError::Invalid("service certificate has another role"));
                    }
                    let id: Vec<u8> = get(&row, 0)?;
                    id.as_slice()
                        .try_into()
                        .map_err(|_| StoreError::BadRecord("service_id".into()))?
                }
                None => {
                    exec(
                        &*tx,
                        "INSERT INTO services (service_id, service_role, service_cert, service_cert_hash, created_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                        &[
                            &&r.service_id[..],
                            &i64::from(r.role),
                            &r.cert,
                            &&r.cert_hash[..],
                            &r.created_at,
                        ],
                    )
                    .await?;
                    r.service_id
                }
            };
            tx.commit().await.map_err(pg)?;
            Ok(id)
        })
    }

    fn get_queue_service(
        &self,
        rid: EntityId,
        party: ServiceParty,
    ) -> StoreFuture<'_, Option<EntityId>> {
        Box::pin(async move {
            let c = self.client().await?;
            let col = pg_service_column(party).0;
            let row = opt(
                &**c,
                &format!("SELECT {col} FROM queues WHERE recipient_id = $1"),
                &[&&rid[..]],
            )
            .await?
            .ok_or(StoreError::NotFound)?;
            let v: Option<Vec<u8>> = get(&row, 0)?;
            v.map(|id| {
                id.as_slice()
                    .try_into()
                    .map_err(|_| StoreError::BadRecord(col.into()))
            })
            .transpose()
        })
    }

    fn set_queue_service(
        &self,
        rid: EntityId,
        party: ServiceParty,
        service_id: Option<EntityId>,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let c = self.client().await?;
            let sid = service_id.map(|s| s.to_vec());
            let sql = match party {
                ServiceParty::Recipient => {
                    "UPDATE queues SET rcv_service_id = $2 WHERE recipient_id = $1"
                }
                ServiceParty::Notifier => {
                    "UPDATE queues SET ntf_service_id = $2 WHERE recipient_id = $1 AND notifier_id IS NOT NULL"
                }
            };
            if exec(&**c, sql, &[&&rid[..], &sid]).await? == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
    }

    fn service_queue_count(&self, sid: EntityId, party: ServiceParty) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let c = self.client().await?;
            let col = pg_service_column(party).0;
            let row = opt(
                &**c,
                &format!("SELECT count(*) FROM queues WHERE {col} = $1"),
                &[&&sid[..]],
            )
            .await?
            .ok_or(StoreError::Internal("count returned no row"))?;
            let n: i64 = get(&row, 0)?;
            u64::try_from(n).map_err(|_| StoreError::BadRecord("count".into()))
        })
    }

    fn service_queue_ids(
        &self,
        sid: EntityId,
        party: ServiceParty,
        after: Option<EntityId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<EntityId>> {
        Box::pin(async move {
            let c = self.client().await?;
            let (col, id_col) = pg_service_column(party);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = match after {
                Some(a) => {
                    all(
                        &**c,
                        &format!(
                            "SELECT {id_col} FROM queues WHERE {col} = $1 AND {id_col} > $2 \
                             ORDER BY {id_col} LIMIT $3"
                        ),
                        &[&&sid[..], &&a[..], &limit],
                    )
                    .await?
                }
                None => all(
                    &**c,
                    &format!(
                        "SELECT {id_col} FROM queues WHERE {col} = $1 ORDER BY {id_col} LIMIT $2"
                    ),
                    &[&&sid[..], &limit],
                )
                .await?,
            };
            rows.iter()
                .map(|r| {
                    let id: Vec<u8> = get(r, 0)?;
                    id.as_slice()
                        .try_into()
                        .map_err(|_| StoreError::BadRecord(id_col.into()))
                })
                .collect()
        })
    }

    fn stats(&self) -> StoreFuture<'_, StoreStats> {
        Box::pin(async move {
            let c = self.client().await?;
            // `count(*)` is a scan of the whole table (125 ms of both cores for 1M queues here,
            // and the relay refreshes its gauges every 10 s): above `EXACT_COUNT_MAX` rows the
            // planner's estimate (`pg_class.reltuples`, kept by autovacuum/ANALYZE) is used.
            let est = all(
                &**c,
                "SELECT c.relname::text, c.reltuples::float8 FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() \
                 AND c.relname IN ('queues', 'messages', 'notifications')",
                &[],
            )
            .await?;
            let mut out = [0u64; 3];
            for (i, table) in ["queues", "messages", "notifications"].iter().enumerate() {
                let estimate = est
                    .iter()
                    .find(|r| get::<String>(r, 0).is_ok_and(|n| n == *table))
                    .and_then(|r| get::<f64>(r, 1).ok())
                    .unwrap_or(-1.0);
                out[i] = if estimate > EXACT_COUNT_MAX as f64 {
                    estimate as u64
                } else {
                    let r = opt(&**c, &format!("SELECT count(*) FROM {table}"), &[])
                        .await?
                        .ok_or(StoreError::Internal("count returned no row"))?;
                    u64::try_from(get::<i64>(&r, 0)?)
                        .map_err(|_| StoreError::BadRecord("count".into()))?
                };
            }
            // Queues with a notifier: counted exactly (its UNIQUE index) while the queues are,
            // else the queues' estimate times the planner's share of non-null notifier ids.
            let queues_exact = out[0] <= EXACT_COUNT_MAX;
            let notifier_queues = if queues_exact {
                let r = opt(
                    &**c,
                    "SELECT count(*) FROM queues WHERE notifier_id IS NOT NULL",
                    &[],
                )
                .await?
                .ok_or(StoreError::Internal("count returned no row"))?;
                u64::try_from(get::<i64>(&r, 0)?)
                    .map_err(|_| StoreError::BadRecord("count".into()))?
            } else {
                let null_frac = opt(
                    &**c,
                    "SELECT null_frac::float8 FROM pg_stats WHERE schemaname = current_schema() \
                     AND tablename = 'queues' AND attname = 'notifier_id'",
                    &[],
                )
                .await?
                .and_then(|r| get::<f64>(&r, 0).ok())
                .unwrap_or(1.0);
                (out[0] as f64 * (1.0 - null_frac.clamp(0.0, 1.0))) as u64
            };
            Ok(StoreStats {
                queues: out[0],
                messages: out[1],
                notifications: out[2],
                notifier_queues,
            })
        })
    }
}

impl PgStore {
    fn block_or_suspend(&self, rid: EntityId, status: QueueStatus) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = begin!(c);
            lock(&*tx, &rid).await?;
            set_status(&*tx, &rid, &status).await?;
            tx.commit().await.map_err(pg)
        })
    }
}
