//! PostgreSQL mode (`[STORE_LOG] db_connection`, `db_schema`, `db_pool_size`): one schema shared
//! by several ntf-server instances.
//!
//! * Schema: created if missing and migrated in steps recorded in `ntf_meta.schema_version`
//!   (under an advisory lock, so instances starting together migrate once).
//! * Writes: the store's write-behind queue, applied by an async writer in transactions (upserts
//!   and deletes, so a retried batch is harmless). While the database is unreachable the writer
//!   retries with a back-off: `sync` (command replies) and `throttle` (relay events) wait, nothing
//!   crashes, nothing is dropped.
//! * Other instances: each commit also sends `NOTIFY <channel>` with the ids it changed (packed
//!   into payloads below PostgreSQL's 8000-byte limit, tagged with the writer's instance id). Every
//!   instance `LISTEN`s, reads the named rows back and applies them to its memory
//!   ([`RemoteChange`] for the core). When the `LISTEN` connection drops, it reconnects and
//!   reloads the whole state (a notification may have been missed).
//! * Relay leases ([`PgShared::lease_tick`]): `relay_leases` says which instance subscribes to
//!   each relay's notifier queues; a lease is renewed every [`Lease::renew`] and taken over once
//!   expired. `instances` holds a heartbeat of each live instance so that relays are shared
//!   fairly: an instance holding more than its share releases one relay per round.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls, Row};

use super::*;

/// Reference default `db_connection` of the ntf-server.
pub const DEFAULT_DB_CONNECTION: &str = "postgresql://ntf@/ntf_server_store";
/// Reference default `db_schema` of the ntf-server.
pub const DEFAULT_DB_SCHEMA: &str = "ntf_server";
/// Reference default `db_pool_size`.
pub const DEFAULT_DB_POOL_SIZE: usize = 10;

/// Relay lease timing (`[STORE_LOG] lease_ttl`; renewed every fifth of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// A lease not renewed for this long is taken over by another instance.
    pub ttl: Duration,
    /// How often leases are renewed (and free relays claimed).
    pub renew: Duration,
}

impl Lease {
    pub fn from_ttl(ttl: Duration) -> Lease {
        Lease {
            ttl,
            renew: (ttl / 5).max(Duration::from_millis(100)),
        }
    }
}

impl Default for Lease {
    fn default() -> Self {
        Lease::from_ttl(Duration::from_secs(15))
    }
}

/// Where the PostgreSQL store is.
#[derive(Clone, PartialEq, Eq)]
pub struct PgConfig {
    /// `postgresql://user[:password]@host[:port]/db` or libpq `key=value`. May hold a password:
    /// never printed.
    pub connection: String,
    /// Schema holding the tables: `[a-z_][a-z0-9_]*`, at most 63 bytes.
    pub schema: String,
    pub pool_size: usize,
    pub lease: Lease,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            connection: DEFAULT_DB_CONNECTION.into(),
            schema: DEFAULT_DB_SCHEMA.into(),
            pool_size: DEFAULT_DB_POOL_SIZE,
            lease: Lease::default(),
        }
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("connection", &"<redacted>")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("lease", &self.lease)
            .finish()
    }
}

/// `[a-z_][a-z0-9_]*`, at most 63 bytes (it is spliced into SQL as an identifier).
pub fn valid_schema(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

/// Schema steps; `ntf_meta.schema_version` = how many ran.
const MIGRATIONS: &[&str] = &["
CREATE TABLE tokens (
  token_id BYTEA PRIMARY KEY,
  provider TEXT NOT NULL,
  device_token BYTEA NOT NULL,
  verify_key BYTEA NOT NULL,
  client_dh_key BYTEA NOT NULL,
  server_dh_key BYTEA NOT NULL,
  dh_secret BYTEA NOT NULL,
  status TEXT NOT NULL,
  reg_code BYTEA NOT NULL,
  cron_interval BIGINT NOT NULL,
  cron_sent_at BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  was_active BOOLEAN NOT NULL
);
CREATE TABLE subscriptions (
  sub_id BYTEA PRIMARY KEY,
  token_id BYTEA NOT NULL,
  server TEXT NOT NULL,
  notifier_id BYTEA NOT NULL,
  notifier_key BYTEA NOT NULL,
  status TEXT NOT NULL
);
CREATE INDEX subscriptions_token ON subscriptions (token_id);
CREATE TABLE last_notifications (
  token_id BYTEA NOT NULL,
  pos BIGINT NOT NULL,
  sub_id BYTEA NOT NULL,
  item TEXT NOT NULL,
  PRIMARY KEY (token_id, pos)
);
CREATE TABLE relay_leases (
  server TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE instances (
  id TEXT PRIMARY KEY,
  seen_at TIMESTAMPTZ NOT NULL
);"];

fn pg_err(what: &str, e: impl fmt::Display) -> StoreError {
    StoreError::Postgres(format!("{what}: {e}"))
}

fn pg_config(cfg: &PgConfig) -> Result<tokio_postgres::Config, StoreError> {
    if !valid_schema(&cfg.schema) {
        return Err(StoreError::Postgres(
            "db_schema must match [a-z_][a-z0-9_]* (at most 63 bytes)".into(),
        ));
    }
    // The parse error never repeats the string (it may hold a password).
    let mut c: tokio_postgres::Config = cfg
        .connection
        .parse()
        .map_err(|_| StoreError::Postgres("db_connection does not parse".into()))?;
    c.options(format!("-c search_path={}", cfg.schema));
    c.connect_timeout(Duration::from_secs(10));
    // Per schema, so that an operator (or a test) can find one deployment's connections.
    c.application_name(format!("ntf-server {}", cfg.schema));
    Ok(c)
}

/// The PostgreSQL side of a store: the pool, this instance's id, remote changes, leases.
#[derive(Clone)]
pub struct PgShared {
    inner: Arc<PgInner>,
}

struct PgInner {
    pool: Pool,
    config: tokio_postgres::Config,
    schema: String,
    channel: String,
    instance: String,
    lease: Lease,
    remote_rx: Mutex<Option<mpsc::Receiver<RemoteChange>>>,
    stop: watch::Sender<bool>,
}

impl fmt::Debug for PgShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgShared")
            .field("schema", &self.inner.schema)
            .field("instance", &self.inner.instance)
            .finish_non_exhaustive()
    }
}

impl PgShared {
    /// This instance's id (random per start; the `owner` of its leases).
    pub fn instance_id(&self) -> &str {
        &self.inner.instance
    }

    pub fn lease(&self) -> Lease {
        self.inner.lease
    }

    /// Changes made by other instances (once: the core takes it).
    pub fn take_remote_changes(&self) -> Option<mpsc::Receiver<RemoteChange>> {
        lock(&self.inner.remote_rx).take()
    }

    pub(super) fn stop(&self) {
        self.inner.stop.send_replace(true);
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| pg_err("connection", e))
    }

    /// One lease round: heartbeat, renew this instance's leases, release one relay if it holds
    /// more than its share of `relays`, claim free ones up to its share and any relay whose
    /// lease expired more than a ttl ago. Returns the relays this instance now holds.
    pub async fn lease_tick(
        &self,
        relays: &[ProtocolServer],
    ) -> Result<HashSet<ProtocolServer>, StoreError> {
        let c = self.client().await?;
        let me = self.inner.instance.as_str();
        let ttl = self.inner.lease.ttl.as_secs_f64();
        let e = |e: tokio_postgres::Error| pg_err("lease", e);
        c.execute(
            "INSERT INTO instances (id, seen_at) VALUES ($1, now())
             ON CONFLICT (id) DO UPDATE SET seen_at = now()",
            &[&me],
        )
        .await
        .map_err(e)?;
        c.execute(
            "DELETE FROM instances WHERE seen_at < now() - make_interval(secs => $1)",
            &[&(ttl * 4.0)],
        )
        .await
        .map_err(e)?;
        let live: i64 = c
            .query_one(
                "SELECT count(*) FROM instances WHERE seen_at > now() - make_interval(secs => $1)",
                &[&ttl],
            )
            .await
            .map_err(e)?
            .get(0);
        let held_rows = c
            .query(
                "UPDATE relay_leases SET expires_at = now() + make_interval(secs => $2)
                 WHERE owner = $1 RETURNING server",
                &[&me, &ttl],
            )
            .await
            .map_err(e)?;
        let by_text: HashMap<String, &ProtocolServer> =
            relays.iter().map(|r| (r.to_text(), r)).collect();
        let mut held: HashSet<String> = held_rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .filter(|s| by_text.contains_key(s))
            .collect();
        let live = usize::try_from(live.max(1)).unwrap_or(1);
        let fair = relays.len().div_ceil(live);
        if held.len() > fair
            && let Some(extra) = held.iter().min().cloned()
        {
            // Expired now: an instance below its share claims it at its next round.
            c.execute(
                "UPDATE relay_leases SET expires_at = now() WHERE server = $1 AND owner = $2",
                &[&extra, &me],
            )
            .await
            .map_err(e)?;
            held.remove(&extra);
        }
        let mut free: Vec<&String> = by_text.keys().filter(|s| !held.contains(*s)).collect();
        // A different order per instance, so that instances do not all race for the same relay.
        free.sort_by_key(|s| hush_crypto::sha256(format!("{me}{s}").as_bytes()));
        for s in free {
            let claim_any = held.len() < fair;
            let got = if claim_any {
                c.query_opt(
                    "INSERT INTO relay_leases (server, owner, expires_at)
                     VALUES ($1, $2, now() + make_interval(secs => $3))
                     ON CONFLICT (server) DO UPDATE
                       SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
                       WHERE relay_leases.expires_at < now()
                     RETURNING server",
                    &[s, &me, &ttl],
                )
                .await
            } else {
                // Beyond the share only relays nobody took for a whole ttl.
                c.query_opt(
                    "UPDATE relay_leases SET owner = $2, expires_at = now() + make_interval(secs => $3)
                     WHERE server = $1 AND expires_at < now() - make_interval(secs => $3)
                     RETURNING server",
                    &[s, &me, &ttl],
                )
                .await
            }
            .map_err(e)?;
            if got.is_some() {
                held.insert(s.clone());
            }
        }
        Ok(held
            .iter()
            .filter_map(|s| by_text.get(s).map(|r| (*r).clone()))
            .collect())
    }

    /// Gives up this instance's leases (graceful stop): other instances take them over at their
    /// next round.
    pub async fn release_leases(&self) -> Result<(), StoreError> {
        let c = self.client().await?;
        let ttl = self.inner.lease.ttl.as_secs_f64();
        c.execute(
            "UPDATE relay_leases SET expires_at = now() - make_interval(secs => $2)
             WHERE owner = $1",
            &[&self.inner.instance, &(ttl + 1.0)],
        )
        .await
        .map_err(|e| pg_err("lease", e))?;
        c.execute(
            "DELETE FROM instances WHERE id = $1",
            &[&self.inner.instance],
        )
        .await
        .map_err(|e| pg_err("lease", e))?;
        Ok(())
    }

    /// Who holds each relay's lease and whether it is current (tests, control port).
    pub async fn leases(&self) -> Result<Vec<(String, String, bool)>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT server, owner, expires_at > now() FROM relay_leases ORDER BY server",
                &[],
            )
            .await
            .map_err(|e| pg_err("lease", e))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}

async fn migrate(pool: &Pool, schema: &str) -> Result<(), StoreError> {
    let e = |e: tokio_postgres::Error| pg_err("schema migration", e);
    let mut c = pool.get().await.map_err(|e| {
        StoreError::Postgres(format!(
            "cannot connect to PostgreSQL ([STORE_LOG] db_connection): {e}"
        ))
    })?;
    let tx = c.transaction().await.map_err(e)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('hush-ntf-' || $1))",
        &[&schema],
    )
    .await
    .map_err(e)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.ntf_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);"
    ))
    .await
    .map_err(e)?;
    let version: i64 = tx
        .query_opt(
            "SELECT value FROM ntf_meta WHERE key = 'schema_version'",
            &[],
        )
        .await
        .map_err(e)?
        .map_or(0, |r| r.get(0));
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::Postgres(format!(
            "schema {schema} is at version {version}, newer than this ntf-server ({known})"
        )));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(step).await.map_err(e)?;
        tracing::info!(schema, version = i + 1, "ntf-server schema migrated");
    }
    tx.execute(
        "INSERT INTO ntf_meta (key, value) VALUES ('schema_version', $1)
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        &[&known],
    )
    .await
    .map_err(e)?;
    tx.commit().await.map_err(e)
}

const TOKEN_COLUMNS: &str = "token_id, provider, device_token, verify_key, client_dh_key, \
     server_dh_key, dh_secret, status, reg_code, cron_interval, cron_sent_at, created_at, was_active";
const SUB_COLUMNS: &str = "sub_id, token_id, server, notifier_id, notifier_key, status";

fn token_from_row(r: &Row) -> Option<TokenRec> {
    let sdh: Vec<u8> = r.try_get(5).ok()?;
    let dh: Vec<u8> = r.try_get(6).ok()?;
    let status: String = r.try_get(7).ok()?;
    let cron: i64 = r.try_get(9).ok()?;
    Some(TokenRec {
        id: r.try_get(0).ok()?,
        device: Device::from_row(&r.try_get::<_, String>(1).ok()?, r.try_get(2).ok()?)?,
        verify_key: r.try_get(3).ok()?,
        client_dh_key: r.try_get(4).ok()?,
        server_dh_key: Zeroizing::new(sdh.try_into().ok()?),
        dh_secret: Zeroizing::new(dh.try_into().ok()?),
        status: TokenStatus::parse_text(&status).ok()?,
        reg_code: r.try_get(8).ok()?,
        cron_interval: u16::try_from(cron).ok()?,
        cron_sent_at: r.try_get(10).ok()?,
        created_at: r.try_get(11).ok()?,
        was_active: r.try_get(12).ok()?,
    })
}

fn sub_from_row(r: &Row) -> Option<SubRec> {
    let server: String = r.try_get(2).ok()?;
    let key: Vec<u8> = r.try_get(4).ok()?;
    let status: String = r.try_get(5).ok()?;
    Some(SubRec {
        id: r.try_get(0).ok()?,
        token_id: r.try_get(1).ok()?,
        queue: SmpQueueNtf {
            server: ProtocolServer::parse(&server).ok()?,
            notifier_id: r.try_get(3).ok()?,
        },
        notifier_key: Zeroizing::new(key),
        status: SubStatus::parse_text(&status).ok()?,
    })
}

fn ntf_from_row(r: &Row) -> Option<(Vec<u8>, LastNtf)> {
    let item: String = r.try_get(2).ok()?;
    let data = hush_proto::ntf::parse_pn_messages(&item).ok()?.pop()?;
    Some((
        r.try_get(0).ok()?,
        LastNtf {
            sub_id: r.try_get(1).ok()?,
            data,
        },
    ))
}

/// The whole state (start and after a lost `LISTEN` connection).
async fn load(pool: &Pool) -> Result<State, StoreError> {
    let e = |e: tokio_postgres::Error| pg_err("load", e);
    let c = pool.get().await.map_err(|e| pg_err("load", e))?;
    let mut st = State::new();
    let mut bad = 0usize;
    for r in c
        .query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens"), &[])
        .await
        .map_err(e)?
    {
        match token_from_row(&r) {
            Some(t) => {
                st.put_token(t);
            }
            None => bad += 1,
        }
    }
    for r in c
        .query(&format!("SELECT {SUB_COLUMNS} FROM subscriptions"), &[])
        .await
        .map_err(e)?
    {
        match sub_from_row(&r) {
            Some(s) if st.tokens.contains_key(&s.token_id) => {
                st.index_sub(&s);
                st.subs.insert(s.id.clone(), s);
            }
            _ => bad += 1,
        }
    }
    for r in c
        .query(
            "SELECT token_id, sub_id, item FROM last_notifications ORDER BY token_id, pos",
            &[],
        )
        .await
        .map_err(e)?
    {
        match ntf_from_row(&r) {
            Some((token_id, n)) if st.tokens.contains_key(&token_id) => {
                st.last_ntfs.entry(token_id).or_default().push_back(n);
            }
            _ => bad += 1,
        }
    }
    if bad > 0 {
        tracing::warn!(rows = bad, "skipped store rows that do not decode");
    }
    Ok(st)
}

/// Connects a dedicated (unpooled) connection that `LISTEN`s on `channel`; its notifications'
/// payloads arrive on the receiver, which closes when the connection is lost.
async fn listen(
    config: &tokio_postgres::Config,
    channel: &str,
) -> Result<(tokio_postgres::Client, mpsc::UnboundedReceiver<String>), StoreError> {
    let (client, mut conn) = config.connect(NoTls).await.map_err(|e| {
        pg_err(
            "cannot connect to PostgreSQL ([STORE_LOG] db_connection)",
            e,
        )
    })?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "PostgreSQL LISTEN connection lost");
                    return;
                }
                None => return,
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .map_err(|e| pg_err("LISTEN", e))?;
    Ok((client, rx))
}

/// Connects, migrates, loads; starts the writer and the listener.
pub(super) async fn open(cfg: &PgConfig) -> Result<Store, StoreError> {
    let config = pg_config(cfg)?;
    let mgr = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(mgr)
        .max_size(cfg.pool_size.max(2))
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .recycle_timeout(Some(Duration::from_secs(10)))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| pg_err("pool", e))?;
    migrate(&pool, &cfg.schema).await?;
    let channel = format!("hush_ntf_{}", cfg.schema);
    // LISTEN before loading: a change committed meanwhile is both loaded and announced.
    let (listener, notes) = listen(&config, &channel).await?;
    let state = load(&pool).await?;
    let mut id = [0u8; 8];
    id.copy_from_slice(&hush_crypto::random_nonce()[..8]);
    let (remote_tx, remote_rx) = mpsc::channel(65_536);
    let (stop, _) = watch::channel(false);
    let shared = PgShared {
        inner: Arc::new(PgInner {
            pool: pool.clone(),
            config,
            schema: cfg.schema.clone(),
            channel: channel.clone(),
            instance: hex::encode(id),
            lease: cfg.lease,
            remote_rx: Mutex::new(Some(remote_rx)),
            stop,
        }),
    };
    let (store, wq) = Store::with_writer(state, Some(shared.clone()));
    tokio::spawn(writer(shared.clone(), wq));
    tokio::spawn(listener_loop(
        shared,
        Arc::downgrade(&store.inner),
        listener,
        notes,
        remote_tx,
    ));
    Ok(store)
}

/// Kinds of ids in a `NOTIFY` payload.
const K_TOKEN: char = 't';
const K_SUB: char = 's';
const K_NTFS: char = 'n';

fn op_key(op: &Op) -> (char, &[u8]) {
    match op {
        Op::PutToken(t) => (K_TOKEN, &t.id),
        Op::DelToken(id) => (K_TOKEN, id),
        Op::PutSub(s) => (K_SUB, &s.id),
        Op::DelSub(id) => (K_SUB, id),
        Op::PutLastNtfs(id, _) => (K_NTFS, id),
    }
}

/// Payloads `"<instance> k:hex,k:hex,…"` of at most ~7,000 bytes each.
fn payloads(instance: &str, batch: &[Op]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut cur = String::new();
    for op in batch {
        let (k, id) = op_key(op);
        if !seen.insert((k, id)) {
            continue;
        }
        if cur.len() > 7000 {
            out.push(std::mem::take(&mut cur));
        }
        if cur.is_empty() {
            cur.push_str(instance);
            cur.push(' ');
        } else {
            cur.push(',');
        }
        cur.push(k);
        cur.push(':');
        cur.push_str(&hex::encode(id));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

async fn commit(pg: &PgShared, batch: &[Op]) -> Result<(), StoreError> {
    let e = |e: tokio_postgres::Error| pg_err("commit", e);
    let mut c = pg.client().await?;
    let tx = c.transaction().await.map_err(e)?;
    for op in batch {
        match op {
            Op::PutToken(t) => {
                let (prov, tok) = t.device.to_row();
                let st = tx
                    .prepare_cached(&format!(
                        "INSERT INTO tokens ({TOKEN_COLUMNS})
                         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)
                         ON CONFLICT (token_id) DO UPDATE SET provider = EXCLUDED.provider,
                           device_token = EXCLUDED.device_token, verify_key = EXCLUDED.verify_key,
                           client_dh_key = EXCLUDED.client_dh_key,
                           server_dh_key = EXCLUDED.server_dh_key, dh_secret = EXCLUDED.dh_secret,
                           status = EXCLUDED.status, reg_code = EXCLUDED.reg_code,
                           cron_interval = EXCLUDED.cron_interval,
                           cron_sent_at = EXCLUDED.cron_sent_at, created_at = EXCLUDED.created_at,
                           was_active = EXCLUDED.was_active"
                    ))
                    .await
                    .map_err(e)?;
                tx.execute(
                    &st,
                    &[
                        &t.id,
                        &prov,
                        &tok,
                        &t.verify_key,
                        &t.client_dh_key,
                        &t.server_dh_key.as_slice(),
                        &t.dh_secret.as_slice(),
                        &t.status.to_text(),
                        &t.reg_code,
                        &i64::from(t.cron_interval),
                        &t.cron_sent_at,
                        &t.created_at,
                        &t.was_active,
                    ],
                )
                .await
                .map_err(e)?;
            }
            Op::DelToken(id) => {
                for table in ["tokens", "subscriptions", "last_notifications"] {
                    let st = tx
                        .prepare_cached(&format!("DELETE FROM {table} WHERE token_id = $1"))
                        .await
                        .map_err(e)?;
                    tx.execute(&st, &[id]).await.map_err(e)?;
                }
            }
            Op::PutSub(s) => {
                let st = tx
                    .prepare_cached(&format!(
                        "INSERT INTO subscriptions ({SUB_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6)
                         ON CONFLICT (sub_id) DO UPDATE SET token_id = EXCLUDED.token_id,
                           server = EXCLUDED.server, notifier_id = EXCLUDED.notifier_id,
                           notifier_key = EXCLUDED.notifier_key, status = EXCLUDED.status"
                    ))
                    .await
                    .map_err(e)?;
                tx.execute(
                    &st,
                    &[
                        &s.id,
                        &s.token_id,
                        &s.queue.server.to_text(),
                        &s.queue.notifier_id,
                        &s.notifier_key.as_slice(),
                        &s.status.to_text(),
                    ],
                )
                .await
                .map_err(e)?;
            }
            Op::DelSub(id) => {
                let st = tx
                    .prepare_cached("DELETE FROM subscriptions WHERE sub_id = $1")
                    .await
                    .map_err(e)?;
                tx.execute(&st, &[id]).await.map_err(e)?;
            }
            Op::PutLastNtfs(token_id, list) => {
                let del = tx
                    .prepare_cached("DELETE FROM last_notifications WHERE token_id = $1")
                    .await
                    .map_err(e)?;
                tx.execute(&del, &[token_id]).await.map_err(e)?;
                let ins = tx
                    .prepare_cached(
                        "INSERT INTO last_notifications (token_id, pos, sub_id, item)
                         VALUES ($1,$2,$3,$4)",
                    )
                    .await
                    .map_err(e)?;
                for (pos, n) in list.iter().enumerate() {
                    tx.execute(
                        &ins,
                        &[token_id, &(pos as i64), &n.sub_id, &n.data.to_text()],
                    )
                    .await
                    .map_err(e)?;
                }
            }
        }
    }
    for p in payloads(&pg.inner.instance, batch) {
        tx.execute("SELECT pg_notify($1, $2)", &[&pg.inner.channel, &p])
            .await
            .map_err(e)?;
    }
    tx.commit().await.map_err(e)
}

/// Commits after a failure are retried for this long once the store is closing (at shutdown);
/// before that, forever.
const GIVE_UP_CLOSED: u32 = 20;

async fn writer(pg: PgShared, w: Arc<WriteQueue>) {
    loop {
        let batch: Vec<Op> = loop {
            {
                let mut q = lock(&w.q);
                if !q.ops.is_empty() {
                    break if q.ops.len() <= MAX_BATCH {
                        std::mem::take(&mut q.ops)
                    } else {
                        q.ops.drain(..MAX_BATCH).collect()
                    };
                }
                if q.closed {
                    w.committed.send_modify(|(_, alive)| *alive = false);
                    return;
                }
            }
            w.wake_async.notified().await;
        };
        let mut attempt = 0u32;
        let mut backoff = Duration::from_millis(50);
        loop {
            match commit(&pg, &batch).await {
                Ok(()) => {
                    if attempt > 0 {
                        tracing::warn!(attempts = attempt + 1, "PostgreSQL commit succeeded again");
                    }
                    break;
                }
                Err(e) => {
                    attempt += 1;
                    if attempt == 1 || attempt.is_multiple_of(20) {
                        tracing::warn!(error = %e, attempt, pending = batch.len(),
                            "PostgreSQL commit failed; retrying (commands wait)");
                    }
                    if lock(&w.q).closed && attempt >= GIVE_UP_CLOSED {
                        tracing::error!(
                            lost = batch.len(),
                            "store closed with changes not committed"
                        );
                        w.committed.send_modify(|(_, alive)| *alive = false);
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        let n = batch.len() as u64;
        w.committed.send_modify(|(done, _)| *done += n);
    }
}

/// Parses a payload; `None` for this instance's own or a malformed one.
fn parse_payload(me: &str, p: &str) -> Option<Vec<(char, Vec<u8>)>> {
    let (inst, rest) = p.split_once(' ')?;
    if inst == me {
        return None;
    }
    Some(
        rest.split(',')
            .filter_map(|kv| {
                let (k, h) = kv.split_once(':')?;
                Some((k.chars().next()?, hex::decode(h).ok()?))
            })
            .collect(),
    )
}

async fn fetch_apply(
    pg: &PgShared,
    store: &Store,
    ids: HashMap<char, Vec<Vec<u8>>>,
) -> Result<Vec<RemoteChange>, StoreError> {
    let e = |e: tokio_postgres::Error| pg_err("read changes", e);
    let c = pg.client().await?;
    let mut out = Vec::new();
    if let Some(tokens) = ids.get(&K_TOKEN) {
        let rows = c
            .query(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_id = ANY($1)"),
                &[tokens],
            )
            .await
            .map_err(e)?;
        let found: HashMap<Vec<u8>, TokenRec> = rows
            .iter()
            .filter_map(token_from_row)
            .map(|t| (t.id.clone(), t))
            .collect();
        let mut st = store.state();
        for id in tokens {
            match found.get(id) {
                Some(t) => {
                    st.put_token(t.clone());
                }
                None => {
                    if let Some(subs) = st.remove_token(id) {
                        out.extend(subs.into_iter().map(RemoteChange::SubDeleted));
                    }
                }
            }
        }
    }
    if let Some(subs) = ids.get(&K_SUB) {
        let rows = c
            .query(
                &format!("SELECT {SUB_COLUMNS} FROM subscriptions WHERE sub_id = ANY($1)"),
                &[subs],
            )
            .await
            .map_err(e)?;
        let found: HashMap<Vec<u8>, SubRec> = rows
            .iter()
            .filter_map(sub_from_row)
            .map(|s| (s.id.clone(), s))
            .collect();
        let mut st = store.state();
        for id in subs {
            match found.get(id) {
                Some(s) => {
                    let old = st.subs.remove(id);
                    if let Some(o) = &old {
                        st.unindex_sub(o);
                    }
                    st.index_sub(s);
                    st.subs.insert(id.clone(), s.clone());
                    let again = s.status == SubStatus::New
                        && old.as_ref().is_none_or(|o| o.status != SubStatus::New);
                    if old.is_none() || again {
                        out.push(RemoteChange::Sub(s.clone()));
                    }
                }
                None => {
                    if let Some(s) = st.subs.remove(id) {
                        st.unindex_sub(&s);
                        if let Some(l) = st.last_ntfs.get_mut(&s.token_id) {
                            l.retain(|n| n.sub_id != s.id);
                        }
                        out.push(RemoteChange::SubDeleted(s));
                    }
                }
            }
        }
    }
    if let Some(tokens) = ids.get(&K_NTFS) {
        let rows = c
            .query(
                "SELECT token_id, sub_id, item FROM last_notifications WHERE token_id = ANY($1)
                 ORDER BY token_id, pos",
                &[tokens],
            )
            .await
            .map_err(e)?;
        let mut lists: HashMap<Vec<u8>, VecDeque<LastNtf>> = HashMap::new();
        for (t, n) in rows.iter().filter_map(ntf_from_row) {
            lists.entry(t).or_default().push_back(n);
        }
        let mut st = store.state();
        for id in tokens {
            if !st.tokens.contains_key(id) {
                st.last_ntfs.remove(id);
                continue;
            }
            // Merged, not replaced: instances holding different relays of one token write its
            // list concurrently, and a notification this instance just added (perhaps not yet
            // committed) must stay in the list its push is built from.
            let remote = lists.remove(id).unwrap_or_default();
            let local = st.last_ntfs.remove(id).unwrap_or_default();
            let merged = merge_last_ntfs(local, remote);
            if !merged.is_empty() {
                st.last_ntfs.insert(id.clone(), merged);
            }
        }
    }
    Ok(out)
}

/// One notification per subscription (the newer of the two lists' by timestamp, this
/// instance's on a tie), the newest [`MAX_PUSH_NTFS`], oldest first.
fn merge_last_ntfs(local: VecDeque<LastNtf>, remote: VecDeque<LastNtf>) -> VecDeque<LastNtf> {
    let mut by_sub: Vec<LastNtf> = Vec::new();
    for n in local.into_iter().chain(remote) {
        match by_sub.iter_mut().find(|x| x.sub_id == n.sub_id) {
            Some(x) if n.data.ntf_ts > x.data.ntf_ts => *x = n,
            Some(_) => {}
            None => by_sub.push(n),
        }
    }
    by_sub.sort_by_key(|n| n.data.ntf_ts);
    let skip = by_sub.len().saturating_sub(MAX_PUSH_NTFS);
    by_sub.into_iter().skip(skip).collect()
}

/// Reloads everything and replaces the memory state; the differences in subscriptions become
/// remote changes.
async fn resync(pg: &PgShared, store: &Store) -> Result<Vec<RemoteChange>, StoreError> {
    // Local changes first, so that the reload includes them.
    let _ = store.sync().await;
    let mut fresh = load(&pg.inner.pool).await?;
    let mut st = store.state();
    fresh.cron_minute_ms = st.cron_minute_ms;
    let keys: Vec<(i128, Vec<u8>)> = fresh
        .tokens
        .values()
        .filter_map(|t| fresh.cron_key(t))
        .collect();
    fresh.cron_due = keys.into_iter().collect();
    let mut out = Vec::new();
    for (id, s) in &st.subs {
        if !fresh.subs.contains_key(id) {
            out.push(RemoteChange::SubDeleted(s.clone()));
        }
    }
    for (id, s) in &fresh.subs {
        if !st.subs.contains_key(id) {
            out.push(RemoteChange::Sub(s.clone()));
        }
    }
    *st = fresh;
    Ok(out)
}

async fn listener_loop(
    pg: PgShared,
    store: std::sync::Weak<Inner>,
    client: tokio_postgres::Client,
    notes: mpsc::UnboundedReceiver<String>,
    remote: mpsc::Sender<RemoteChange>,
) {
    let mut stop = pg.inner.stop.subscribe();
    let mut conn = Some((client, notes));
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let Some((_client, notes)) = conn.as_mut() else {
            // Reconnect, then reload (notifications may have been missed).
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
            let Ok(new) = listen(&pg.inner.config, &pg.inner.channel).await else {
                continue;
            };
            let Some(inner) = store.upgrade() else { return };
            let s = Store { inner };
            match resync(&pg, &s).await {
                Ok(changes) => {
                    tracing::warn!("PostgreSQL LISTEN connection restored; state reloaded");
                    backoff = Duration::from_millis(100);
                    conn = Some(new);
                    for c in changes {
                        if remote.send(c).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reload after reconnect failed"),
            }
            continue;
        };
        let first = tokio::select! {
            _ = stop.changed() => return,
            n = notes.recv() => n,
        };
        let Some(first) = first else {
            conn = None;
            continue;
        };
        let mut ids: HashMap<char, Vec<Vec<u8>>> = HashMap::new();
        let mut seen = HashSet::new();
        let mut add = |p: &str| {
            for (k, id) in parse_payload(&pg.inner.instance, p).unwrap_or_default() {
                if seen.insert((k, id.clone())) {
                    ids.entry(k).or_default().push(id);
                }
            }
        };
        add(&first);
        let mut n = 1;
        while n < 256
            && let Ok(p) = notes.try_recv()
        {
            add(&p);
            n += 1;
        }
        if ids.is_empty() {
            continue;
        }
        let Some(inner) = store.upgrade() else { return };
        let s = Store { inner };
        let mut tries = 0;
        let changes = loop {
            match fetch_apply(&pg, &s, ids.clone()).await {
                Ok(c) => break Some(c),
                Err(e) => {
                    tries += 1;
                    tracing::warn!(error = %e, "cannot read changes of other instances");
                    if tries >= 5 {
                        break None;
                    }
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
            }
        };
        drop(s);
        match changes {
            Some(changes) => {
                for c in changes {
                    if remote.send(c).await.is_err() {
                        return;
                    }
                }
            }
            // Could not read them: reload everything once the database answers.
            None => conn = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_pack_dedupe_and_skip_own() {
        let ops: Vec<Op> = (0..400u32)
            .map(|i| Op::DelSub(i.to_be_bytes().repeat(6)))
            .chain([Op::DelSub(0u32.to_be_bytes().repeat(6))])
            .collect();
        let p = payloads("abc", &ops);
        assert!(p.len() >= 3, "{}", p.len());
        assert!(p.iter().all(|x| x.len() < 8000));
        let mut all = Vec::new();
        for x in &p {
            assert!(parse_payload("abc", x).is_none());
            all.extend(parse_payload("other", x).unwrap());
        }
        assert_eq!(all.len(), 400);
        assert_eq!(all[1], (K_SUB, 1u32.to_be_bytes().repeat(6)));
        assert!(parse_payload("x", "nospace").is_none());
    }

    #[test]
    fn merged_last_ntfs_keep_each_instances_newest() {
        let n = |sub: u8, ts: i64| LastNtf {
            sub_id: vec![sub; 24],
            data: PnMessageData {
                queue: SmpQueueNtf {
                    server: ProtocolServer::parse(
                        "smp://LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI=@localhost:5001",
                    )
                    .unwrap(),
                    notifier_id: vec![sub; 24],
                },
                ntf_ts: ts,
                nonce: [sub; 24],
                enc_meta: vec![1; 10],
            },
        };
        // local: subs 1 (ts 5) and 2 (ts 9, not yet committed); remote: 1 (ts 7), 3..=8
        let local: VecDeque<LastNtf> = [n(1, 5), n(2, 9)].into();
        let remote: VecDeque<LastNtf> = [n(1, 7)]
            .into_iter()
            .chain((3..=8).map(|i| n(i, i64::from(i))))
            .collect();
        let m = merge_last_ntfs(local, remote);
        let got: Vec<(u8, i64)> = m.iter().map(|x| (x.sub_id[0], x.data.ntf_ts)).collect();
        assert_eq!(
            got,
            vec![(4, 4), (5, 5), (6, 6), (1, 7), (7, 7), (8, 8), (2, 9)][1..]
        );
    }

    #[test]
    fn config_debug_redacts_and_schema_checked() {
        let c = PgConfig {
            connection: "postgresql://u:secret@h/db".into(),
            ..PgConfig::default()
        };
        assert!(!format!("{c:?}").contains("secret"));
        assert!(valid_schema("ntf_1"));
        assert!(!valid_schema("1x"));
        assert!(!valid_schema("a;drop"));
        let bad = PgConfig {
            schema: "A".into(),
            ..PgConfig::default()
        };
        assert!(matches!(pg_config(&bad), Err(StoreError::Postgres(_))));
    }
}
