//! Tokens, subscriptions and last notifications (reference §5.3, §5.4, §7.4 "NTF server stores
//! tokens, subscriptions, SMP servers and last notifications").
//!
//! The working state is in memory (one mutex, short critical sections, no I/O and no blocking
//! under it), with indexes so that nothing a peer can trigger scans the whole table: tokens by
//! device (`TVFY`, the tokens-per-device cap, push-server feedback), tokens due for a periodic
//! push in time order (the `TCRN` sweep), never-verified tokens in creation order (their expiry)
//! and subscriptions by relay (relay events and the relay caps). Three storage modes:
//!
//! * [`StoreMode::Memory`]: nothing on disk. After a restart clients find their tokens gone
//!   (`TCHK` → `ERR AUTH`) and create them again with `TNEW`/`SNEW`.
//! * [`StoreMode::Sqlite`]: every change is also appended, in order, to an in-memory queue that
//!   one writer thread applies in transactions (the common group-commit writer,
//!   [`hush_server_common::group_commit`]; WAL). Appending never blocks (the state lock is never
//!   held across a wait for the disk; the queue has no cap); [`Store::sync`] waits asynchronously
//!   until everything queued before it is committed, and command handlers call it before
//!   replying, so a client never gets `OK`/`IDTKN`/`IDSUB` for a change that is not durable.
//!   Writers that do not reply to anyone (relay events) wait in [`Store::throttle`] while the
//!   queue is longer than [`THROTTLE_BACKLOG`], which is the back-pressure (the writer's "wait"
//!   policy, outside the state lock). While another connection holds the file's write lock the
//!   writer waits for it and loses nothing. On start the state is loaded from the file (a row
//!   that does not decode is skipped with a warning, never a panic).
//! * [`StoreMode::Postgres`]: the same write-behind queue, applied by an async writer to a
//!   PostgreSQL schema that several ntf-server instances share ([`postgres`]). Each instance
//!   keeps the whole state in memory as here; every commit also announces the changed ids with
//!   `NOTIFY`, and the other instances read those rows back and apply them to their memory
//!   ([`RemoteChange`] tells the core about subscriptions created or deleted elsewhere). While
//!   the database is unreachable the writer retries (commands wait in `sync`, relay events in
//!   `throttle`); a lost `LISTEN` connection is re-established and followed by a full reload.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use hush_proto::address::ProtocolServer;
use hush_proto::ntf::{
    DeviceToken, PnMessageData, PushProvider, SmpQueueNtf, SubStatus, TokenStatus,
};
use push_api::{ApnsEnv, DeviceAddress, PushHandle, PushTarget};
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::payload::MAX_PUSH_NTFS;

pub mod postgres;
mod sqlite;

pub use postgres::{Lease, PgConfig};
use sqlite::{load, open_db, writer_loop};

/// Where a token's pushes go.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Device {
    /// A reference device token (`AP`/`AD`/`AT`/`AN`): the ntf-server knows the token.
    Token(DeviceToken),
    /// Split mode (`PH`): an opaque push handle only the push-server can open.
    Handle(String),
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Token(t) => write!(f, "{t:?}"),
            Device::Handle(_) => f.write_str("Handle(..)"),
        }
    }
}

impl Device {
    /// The push target, or `None` when the token is never pushed (`apns_null`).
    pub fn target(&self) -> Option<PushTarget> {
        match self {
            Device::Handle(h) => Some(PushTarget::Handle(PushHandle(h.clone()))),
            Device::Token(t) if t.provider == PushProvider::ApnsNull => None,
            Device::Token(t) => DeviceAddress::from_ntf_token(t).map(PushTarget::Device),
        }
    }

    /// Metric label of the provider.
    pub fn provider_label(&self) -> &'static str {
        match self {
            Device::Handle(_) => "push_handle",
            Device::Token(t) => t.provider.name(),
        }
    }

    /// Whether a feedback target names this device.
    pub fn matches_target(&self, t: &PushTarget) -> bool {
        match (self, t) {
            (Device::Handle(h), PushTarget::Handle(PushHandle(x))) => h == x,
            (Device::Token(tok), PushTarget::Device(DeviceAddress::Apns { env, token })) => {
                ApnsEnv::from_provider(tok.provider) == Some(*env) && tok.token == token.as_bytes()
            }
            _ => false,
        }
    }

    /// The device a push-server feedback target names (`None` for targets no token can have).
    pub fn from_target(t: &PushTarget) -> Option<Device> {
        match t {
            PushTarget::Handle(PushHandle(h)) => Some(Device::Handle(h.clone())),
            PushTarget::Device(DeviceAddress::Apns { env, token }) => {
                let provider = match env {
                    ApnsEnv::Prod => PushProvider::ApnsProd,
                    ApnsEnv::Dev => PushProvider::ApnsDev,
                    ApnsEnv::Test => PushProvider::ApnsTest,
                    ApnsEnv::Null => PushProvider::ApnsNull,
                };
                Some(Device::Token(DeviceToken {
                    provider,
                    token: token.as_bytes().to_vec(),
                }))
            }
            PushTarget::Device(DeviceAddress::WebPush(_)) => None,
        }
    }

    fn to_row(&self) -> (String, Vec<u8>) {
        match self {
            Device::Handle(h) => ("push_handle".into(), h.as_bytes().to_vec()),
            Device::Token(t) => (t.provider.name().into(), t.token.clone()),
        }
    }

    fn from_row(provider: &str, token: Vec<u8>) -> Option<Device> {
        if provider == "push_handle" {
            return String::from_utf8(token).ok().map(Device::Handle);
        }
        Some(Device::Token(DeviceToken {
            provider: PushProvider::from_name(provider)?,
            token,
        }))
    }
}

/// A registered token.
#[derive(Clone)]
pub struct TokenRec {
    pub id: Vec<u8>,
    pub device: Device,
    /// SPKI of the key that authorizes the token's commands (and `SNEW`).
    pub verify_key: Vec<u8>,
    /// SPKI of the client's X25519 key from `TNEW`.
    pub client_dh_key: Vec<u8>,
    /// The server's X25519 private key for this token.
    pub server_dh_key: Zeroizing<[u8; 32]>,
    /// X25519(server key, client key): encrypts the token's push data.
    pub dh_secret: Zeroizing<[u8; 32]>,
    pub status: TokenStatus,
    pub reg_code: Vec<u8>,
    /// `TCRN` interval in minutes (0 = off).
    pub cron_interval: u16,
    /// Unix seconds of the last periodic push (or of `TCRN`).
    pub cron_sent_at: i64,
    pub created_at: i64,
    /// The token was ACTIVE at some time (verified with `TVFY`). Only such tokens may create
    /// subscriptions once INVALID/EXPIRED; tokens never verified expire.
    pub was_active: bool,
}

impl std::fmt::Debug for TokenRec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRec")
            .field("device", &self.device)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A notification subscription.
#[derive(Clone)]
pub struct SubRec {
    pub id: Vec<u8>,
    pub token_id: Vec<u8>,
    pub queue: SmpQueueNtf,
    /// PKCS#8 of the notifier key (signs `NSUB`).
    pub notifier_key: Zeroizing<Vec<u8>>,
    pub status: SubStatus,
}

impl std::fmt::Debug for SubRec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubRec")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// One of a token's last notifications (one per subscription).
#[derive(Clone, Debug)]
pub struct LastNtf {
    pub sub_id: Vec<u8>,
    pub data: PnMessageData,
}

/// Caps checked when a subscription is created ([`Store::add_sub`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubCaps {
    /// Subscriptions of one token.
    pub per_token: usize,
    /// Distinct relays of one token's subscriptions.
    pub relays_per_token: usize,
    /// Distinct relays of all subscriptions.
    pub relays: usize,
}

/// Which cap a new subscription would exceed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapExceeded {
    #[error("subscriptions per token")]
    SubsPerToken,
    #[error("relays per token")]
    RelaysPerToken,
    #[error("relays in total")]
    Relays,
    #[error("tokens per device")]
    TokensPerDevice,
}

impl CapExceeded {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            CapExceeded::SubsPerToken => "subscriptions_per_token",
            CapExceeded::RelaysPerToken => "relays_per_token",
            CapExceeded::Relays => "relays",
            CapExceeded::TokensPerDevice => "tokens_per_device",
        }
    }
}

/// What [`Store::add_token`] / [`Store::replace_device`] removed to keep the tokens-per-device
/// cap: the evicted (never verified) tokens' subscriptions.
#[derive(Debug, Default)]
pub struct Evicted {
    pub tokens: usize,
    pub subs: Vec<SubRec>,
}

/// A token removed by [`State::make_room`]: its id and subscriptions.
type EvictedToken = (Vec<u8>, Vec<SubRec>);

#[derive(Default)]
struct State {
    tokens: HashMap<Vec<u8>, TokenRec>,
    /// (device, verify key) → token id (`TNEW` idempotency).
    token_by_reg: HashMap<(Device, Vec<u8>), Vec<u8>>,
    /// device → its tokens' ids (activation, the per-device cap, push-server feedback).
    tokens_by_device: HashMap<Device, Vec<Vec<u8>>>,
    /// (due time in ms, token id) of ACTIVE tokens with a `TCRN` interval.
    cron_due: BTreeSet<(i128, Vec<u8>)>,
    /// (created_at, token id) of tokens never verified (expire after the unverified ttl).
    unverified: BTreeSet<(i64, Vec<u8>)>,
    /// Length of a `TCRN` minute in ms (the due index depends on it).
    cron_minute_ms: i128,
    subs: HashMap<Vec<u8>, SubRec>,
    sub_by_queue: HashMap<SmpQueueNtf, Vec<u8>>,
    subs_by_token: HashMap<Vec<u8>, HashSet<Vec<u8>>>,
    /// relay → its subscriptions' ids.
    subs_by_server: HashMap<ProtocolServer, HashSet<Vec<u8>>>,
    /// token → relay → count of the token's subscriptions on it.
    relays_by_token: HashMap<Vec<u8>, HashMap<ProtocolServer, u32>>,
    last_ntfs: HashMap<Vec<u8>, VecDeque<LastNtf>>,
}

/// Due time (ms) of a token's next periodic push: `cron_sent_at` (1 s resolution) plus the
/// interval, at least 1 s (at most one periodic push per token per second).
fn cron_due_ms(t: &TokenRec, minute_ms: i128) -> i128 {
    let period_ms = minute_ms
        .saturating_mul(i128::from(t.cron_interval))
        .max(1000);
    i128::from(t.cron_sent_at)
        .saturating_mul(1000)
        .saturating_add(period_ms)
}

impl State {
    fn new() -> State {
        State {
            cron_minute_ms: 60_000,
            ..State::default()
        }
    }

    fn cron_key(&self, t: &TokenRec) -> Option<(i128, Vec<u8>)> {
        (t.status == TokenStatus::Active && t.cron_interval > 0)
            .then(|| (cron_due_ms(t, self.cron_minute_ms), t.id.clone()))
    }

    /// Adds `t` to the indexes (not to `tokens`).
    fn index_token(&mut self, t: &TokenRec) {
        self.token_by_reg
            .insert((t.device.clone(), t.verify_key.clone()), t.id.clone());
        let ids = self.tokens_by_device.entry(t.device.clone()).or_default();
        if !ids.contains(&t.id) {
            ids.push(t.id.clone());
        }
        if let Some(k) = self.cron_key(t) {
            self.cron_due.insert(k);
        }
        if !t.was_active {
            self.unverified.insert((t.created_at, t.id.clone()));
        }
    }

    /// Removes `t` from the indexes (not from `tokens`).
    fn unindex_token(&mut self, t: &TokenRec) {
        let reg = (t.device.clone(), t.verify_key.clone());
        if self.token_by_reg.get(&reg) == Some(&t.id) {
            self.token_by_reg.remove(&reg);
        }
        if let Some(ids) = self.tokens_by_device.get_mut(&t.device) {
            ids.retain(|i| *i != t.id);
            if ids.is_empty() {
                self.tokens_by_device.remove(&t.device);
            }
        }
        if let Some(k) = self.cron_key(t) {
            self.cron_due.remove(&k);
        }
        self.unverified.remove(&(t.created_at, t.id.clone()));
    }

    fn index_sub(&mut self, s: &SubRec) {
        self.sub_by_queue.insert(s.queue.clone(), s.id.clone());
        self.subs_by_token
            .entry(s.token_id.clone())
            .or_default()
            .insert(s.id.clone());
        if self
            .subs_by_server
            .entry(s.queue.server.clone())
            .or_default()
            .insert(s.id.clone())
        {
            *self
                .relays_by_token
                .entry(s.token_id.clone())
                .or_default()
                .entry(s.queue.server.clone())
                .or_default() += 1;
        }
    }

    fn unindex_sub(&mut self, s: &SubRec) {
        if self.sub_by_queue.get(&s.queue) == Some(&s.id) {
            self.sub_by_queue.remove(&s.queue);
        }
        if let Some(set) = self.subs_by_token.get_mut(&s.token_id) {
            set.remove(&s.id);
            if set.is_empty() {
                self.subs_by_token.remove(&s.token_id);
            }
        }
        let mut was_there = false;
        if let Some(set) = self.subs_by_server.get_mut(&s.queue.server) {
            was_there = set.remove(&s.id);
            if set.is_empty() {
                self.subs_by_server.remove(&s.queue.server);
            }
        }
        if was_there && let Some(m) = self.relays_by_token.get_mut(&s.token_id) {
            if let Some(n) = m.get_mut(&s.queue.server) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&s.queue.server);
                }
            }
            if m.is_empty() {
                self.relays_by_token.remove(&s.token_id);
            }
        }
    }

    /// Inserts or replaces a token, keeping the indexes.
    fn put_token(&mut self, mut t: TokenRec) -> TokenRec {
        t.was_active |= t.status == TokenStatus::Active;
        if let Some(old) = self.tokens.remove(&t.id) {
            self.unindex_token(&old);
        }
        self.index_token(&t);
        self.tokens.insert(t.id.clone(), t.clone());
        t
    }

    /// Removes a token with its subscriptions and last notifications (memory only).
    fn remove_token(&mut self, id: &[u8]) -> Option<Vec<SubRec>> {
        let t = self.tokens.remove(id)?;
        self.unindex_token(&t);
        self.last_ntfs.remove(id);
        let sub_ids = self.subs_by_token.get(id).cloned().unwrap_or_default();
        let mut out = Vec::new();
        for s in sub_ids {
            if let Some(sub) = self.subs.remove(&s) {
                self.unindex_sub(&sub);
                out.push(sub);
            }
        }
        self.subs_by_token.remove(id);
        self.relays_by_token.remove(id);
        Some(out)
    }

    /// Makes room for one more token of `device` (not counting `except`): evicts its oldest
    /// never-verified tokens while it has `cap` or more. `Err` if the rest were all verified.
    fn make_room(
        &mut self,
        device: &Device,
        cap: usize,
        except: &[u8],
    ) -> Result<Vec<EvictedToken>, CapExceeded> {
        let mut evicted = Vec::new();
        // `apns_null` tokens are never pushed and share one token by design (the apps' "test
        // server" button registers `test_ntf_token`): no victim to protect, and evicting would
        // make concurrent tests fail. The rate limits and the unverified ttl bound them.
        if matches!(device, Device::Token(t) if t.provider == PushProvider::ApnsNull) {
            return Ok(evicted);
        }
        loop {
            let ids: Vec<&Vec<u8>> = self
                .tokens_by_device
                .get(device)
                .map(|v| v.iter().filter(|i| i.as_slice() != except).collect())
                .unwrap_or_default();
            if ids.len() < cap.max(1) {
                return Ok(evicted);
            }
            let oldest = ids
                .iter()
                .filter_map(|i| self.tokens.get(*i))
                .filter(|t| !t.was_active)
                .min_by_key(|t| t.created_at)
                .map(|t| t.id.clone());
            let Some(id) = oldest else {
                return Err(CapExceeded::TokensPerDevice);
            };
            let subs = self.remove_token(&id).unwrap_or_default();
            evicted.push((id, subs));
        }
    }
}

/// A change for the writer.
#[derive(Clone)]
enum Op {
    PutToken(TokenRec),
    DelToken(Vec<u8>),
    PutSub(SubRec),
    DelSub(Vec<u8>),
    PutLastNtfs(Vec<u8>, Vec<LastNtf>),
}

/// Storage mode (`[STORE_LOG]` in `ntf-server.ini`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreMode {
    Memory,
    Sqlite(PathBuf),
    /// `[STORE_LOG] db_connection`, `db_schema`, `db_pool_size`.
    Postgres(PgConfig),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("store writer stopped")]
    WriterGone,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
}

/// A change made by another instance sharing the PostgreSQL store, already applied to this
/// instance's memory: the core subscribes or forgets the subscription if it owns its relay.
#[derive(Debug)]
pub enum RemoteChange {
    /// A subscription this instance did not have, or one set back to NEW (`SNEW` again).
    Sub(SubRec),
    /// A subscription deleted elsewhere (directly or with its token).
    SubDeleted(SubRec),
}

/// Counts for metrics and the control port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub tokens: usize,
    pub subscriptions: usize,
    pub last_notifications: usize,
}

/// Subscription counts by status group and relays in use (the metrics gauges).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubCounts {
    pub active: usize,
    pub pending: usize,
    pub relays: usize,
}

/// The queue between the state (which appends under its lock, never waiting) and the writer
/// thread.
struct WriteQueue {
    q: Mutex<Pending>,
    wake: Condvar,
    /// The same wake-up for an async writer.
    wake_async: tokio::sync::Notify,
    /// (changes committed, writer alive).
    committed: watch::Sender<(u64, bool)>,
}

#[derive(Default)]
struct Pending {
    ops: Vec<Op>,
    /// Changes ever appended.
    enqueued: u64,
    closed: bool,
}

struct Inner {
    state: Arc<Mutex<State>>,
    writer: Option<Arc<WriteQueue>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    pg: Option<postgres::PgShared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(w) = &self.writer {
            lock(&w.q).closed = true;
            w.wake.notify_all();
            w.wake_async.notify_one();
        }
        if let Some(pg) = &self.pg {
            pg.stop();
        }
        if let Ok(mut t) = self.thread.lock()
            && let Some(h) = t.take()
        {
            let _ = h.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The ntf-server's store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Changes not yet committed above which [`Store::throttle`] waits.
pub const THROTTLE_BACKLOG: u64 = 65_536;
/// Most changes applied in one transaction.
const MAX_BATCH: usize = 4096;

impl Store {
    pub fn memory() -> Store {
        Store {
            inner: Arc::new(Inner {
                state: Arc::new(Mutex::new(State::new())),
                writer: None,
                thread: Mutex::new(None),
                pg: None,
            }),
        }
    }

    /// Opens any mode (PostgreSQL: connects, migrates and loads; the others in
    /// `spawn_blocking`). Fails with a clear error if the database is unreachable.
    pub async fn open_async(mode: &StoreMode) -> Result<Store, StoreError> {
        match mode {
            StoreMode::Postgres(cfg) => postgres::open(cfg).await,
            other => {
                let mode = other.clone();
                tokio::task::spawn_blocking(move || Store::open(&mode))
                    .await
                    .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
            }
        }
    }

    fn with_writer(state: State, pg: Option<postgres::PgShared>) -> (Store, Arc<WriteQueue>) {
        let (committed, _) = watch::channel((0, true));
        let wq = Arc::new(WriteQueue {
            q: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            wake_async: tokio::sync::Notify::new(),
            committed,
        });
        let store = Store {
            inner: Arc::new(Inner {
                state: Arc::new(Mutex::new(state)),
                writer: Some(wq.clone()),
                thread: Mutex::new(None),
                pg,
            }),
        };
        (store, wq)
    }

    /// Opens (or creates) the SQLite file and loads its content. Blocking: call from
    /// `spawn_blocking` in async code. (PostgreSQL: [`Store::open_async`].)
    pub fn open(mode: &StoreMode) -> Result<Store, StoreError> {
        let path = match mode {
            StoreMode::Memory => return Ok(Store::memory()),
            StoreMode::Sqlite(p) => p,
            StoreMode::Postgres(_) => {
                return Err(StoreError::Postgres(
                    "open PostgreSQL stores with Store::open_async".into(),
                ));
            }
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            // Private (0700); a looser existing directory is tightened (logged at info).
            hush_server_common::private_start::prepare_private_dir(
                dir,
                "ntf-server data directory",
            )?;
        }
        // Created 0600 before SQLite opens it (its -wal/-shm get the same mode); a looser
        // existing file is tightened.
        hush_server_common::private_start::prepare_private_db(path, true, "ntf-server store")?;
        let conn = open_db(path)?;
        let state = load(&conn)?;
        let (store, w) = Store::with_writer(state, None);
        let thread = std::thread::Builder::new()
            .name("ntf-store-writer".into())
            .spawn(move || writer_loop(conn, w))?;
        *lock(&store.inner.thread) = Some(thread);
        Ok(store)
    }

    /// The PostgreSQL side (leases, remote changes), in PostgreSQL mode.
    pub fn postgres(&self) -> Option<&postgres::PgShared> {
        self.inner.pg.as_ref()
    }

    pub fn is_persistent(&self) -> bool {
        self.inner.writer.is_some()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// Appends a change for the writer (called with the state lock held, so the file sees
    /// changes in the order the memory did). Never waits.
    fn persist(&self, op: Op) {
        if let Some(w) = &self.inner.writer {
            let mut q = lock(&w.q);
            q.ops.push(op);
            q.enqueued += 1;
            drop(q);
            w.wake.notify_one();
            w.wake_async.notify_one();
        }
    }

    /// Resolves when every change queued before this call is committed (at once in memory mode).
    pub async fn sync(&self) -> Result<(), StoreError> {
        let Some(w) = &self.inner.writer else {
            return Ok(());
        };
        let target = lock(&w.q).enqueued;
        let mut rx = w.committed.subscribe();
        let r = rx
            .wait_for(|(done, alive)| *done >= target || !*alive)
            .await
            .map(|v| v.0 >= target);
        match r {
            Ok(true) => Ok(()),
            _ => Err(StoreError::WriterGone),
        }
    }

    /// Changes queued and not yet committed.
    pub fn backlog(&self) -> u64 {
        let Some(w) = &self.inner.writer else {
            return 0;
        };
        let enqueued = lock(&w.q).enqueued;
        enqueued.saturating_sub(w.committed.borrow().0)
    }

    /// Waits while the writer is far behind (back-pressure for changes nobody waits for, such as
    /// relay events).
    pub async fn throttle(&self) {
        let Some(w) = &self.inner.writer else {
            return;
        };
        let enqueued = lock(&w.q).enqueued;
        if enqueued.saturating_sub(w.committed.borrow().0) <= THROTTLE_BACKLOG {
            return;
        }
        let target = enqueued - THROTTLE_BACKLOG / 2;
        let mut rx = w.committed.subscribe();
        let _ = rx
            .wait_for(|(done, alive)| *done >= target || !*alive)
            .await;
    }

    /// Sets the length of a `TCRN` minute (the periodic-push due index is rebuilt).
    pub fn set_cron_minute(&self, minute: std::time::Duration) {
        let mut st = self.state();
        st.cron_minute_ms = i128::try_from(minute.as_millis())
            .unwrap_or(i128::MAX)
            .max(1);
        let keys: Vec<(i128, Vec<u8>)> =
            st.tokens.values().filter_map(|t| st.cron_key(t)).collect();
        st.cron_due = keys.into_iter().collect();
    }

    // --- tokens -------------------------------------------------------------------------

    pub fn token(&self, id: &[u8]) -> Option<TokenRec> {
        self.state().tokens.get(id).cloned()
    }

    pub fn token_by_registration(&self, device: &Device, verify_key: &[u8]) -> Option<TokenRec> {
        let st = self.state();
        let id = st
            .token_by_reg
            .get(&(device.clone(), verify_key.to_vec()))?;
        st.tokens.get(id).cloned()
    }

    /// Inserts or replaces a token (no cap; see [`Store::add_token`]).
    pub fn put_token(&self, t: TokenRec) {
        let mut st = self.state();
        let t = st.put_token(t);
        self.persist(Op::PutToken(t));
    }

    /// Inserts a new token, first evicting the device's oldest never-verified tokens while it
    /// has `per_device` or more. `Err` (nothing changed) if the device's other tokens were all
    /// verified.
    pub fn add_token(&self, t: TokenRec, per_device: usize) -> Result<Evicted, CapExceeded> {
        let mut st = self.state();
        let evicted = st.make_room(&t.device, per_device, &t.id)?;
        let out = self.evicted(evicted);
        let t = st.put_token(t);
        self.persist(Op::PutToken(t));
        Ok(out)
    }

    fn evicted(&self, evicted: Vec<EvictedToken>) -> Evicted {
        let mut out = Evicted::default();
        for (id, subs) in evicted {
            self.persist(Op::DelToken(id));
            out.tokens += 1;
            out.subs.extend(subs);
        }
        out
    }

    /// `TRPL`: moves a token to `device` with a new code, status REGISTERED, keeping the
    /// tokens-per-device cap of the new device like [`Store::add_token`]. `None`: no such token.
    pub fn replace_device(
        &self,
        id: &[u8],
        device: Device,
        reg_code: Vec<u8>,
        per_device: usize,
    ) -> Option<Result<Evicted, CapExceeded>> {
        let mut st = self.state();
        let mut t = st.tokens.get(id)?.clone();
        let evicted = if t.device == device {
            Vec::new()
        } else {
            match st.make_room(&device, per_device, id) {
                Ok(e) => e,
                Err(e) => return Some(Err(e)),
            }
        };
        let out = self.evicted(evicted);
        t.device = device;
        t.reg_code = reg_code;
        t.status = TokenStatus::Registered;
        let t = st.put_token(t);
        self.persist(Op::PutToken(t));
        Some(Ok(out))
    }

    /// Changes a token atomically: `f` runs under the store lock on a copy of the current
    /// record and returns whether to keep its changes. Returns `f`'s answer (false if the token
    /// does not exist). (A read, then a separate write, would lose concurrent updates.)
    pub fn update_token(&self, id: &[u8], f: impl FnOnce(&mut TokenRec) -> bool) -> bool {
        let mut st = self.state();
        let Some(mut t) = st.tokens.get(id).cloned() else {
            return false;
        };
        if !f(&mut t) {
            return false;
        }
        t.id = id.to_vec();
        let t = st.put_token(t);
        self.persist(Op::PutToken(t));
        true
    }

    /// Deletes a token with its subscriptions and last notifications; returns the deleted
    /// subscriptions.
    pub fn delete_token(&self, id: &[u8]) -> Vec<SubRec> {
        let mut st = self.state();
        let Some(out) = st.remove_token(id) else {
            return Vec::new();
        };
        self.persist(Op::DelToken(id.to_vec()));
        out
    }

    /// Ids of the tokens with this device (index, no scan).
    pub fn tokens_with_device(&self, device: &Device) -> Vec<Vec<u8>> {
        self.state()
            .tokens_by_device
            .get(device)
            .cloned()
            .unwrap_or_default()
    }

    /// Ids of the tokens a push-server feedback target names (index, no scan).
    pub fn tokens_for_target(&self, target: &PushTarget) -> Vec<Vec<u8>> {
        match Device::from_target(target) {
            Some(d) => self.tokens_with_device(&d),
            None => Vec::new(),
        }
    }

    /// All tokens (a copy: tests and tools only).
    pub fn tokens(&self) -> Vec<TokenRec> {
        self.state().tokens.values().cloned().collect()
    }

    /// Tokens due for a periodic push at `now_ms`, walking the due index from its start: each
    /// gets `cron_sent_at = now_secs` (so it is due again one interval later) and is returned.
    /// At most `limit`.
    pub fn take_due_cron(&self, now_ms: i128, now_secs: i64, limit: usize) -> Vec<TokenRec> {
        let mut st = self.state();
        let mut out = Vec::new();
        while out.len() < limit {
            let Some((due, id)) = st.cron_due.first().cloned() else {
                break;
            };
            if due > now_ms {
                break;
            }
            let Some(mut t) = st.tokens.get(&id).cloned() else {
                st.cron_due.remove(&(due, id));
                continue;
            };
            t.cron_sent_at = now_secs;
            let t = st.put_token(t);
            // `cron_sent_at` has 1 s resolution: make sure the entry moved on
            st.cron_due.remove(&(due, id));
            if let Some(k) = st.cron_key(&t) {
                st.cron_due.insert(k);
            }
            self.persist(Op::PutToken(t.clone()));
            out.push(t);
        }
        out
    }

    /// Deletes tokens never verified and created at or before `created_before` (walking the
    /// creation-ordered index); returns (tokens deleted, their subscriptions).
    pub fn expire_unverified(&self, created_before: i64, limit: usize) -> (usize, Vec<SubRec>) {
        let mut st = self.state();
        let mut n = 0;
        let mut subs = Vec::new();
        while n < limit {
            let Some((at, id)) = st.unverified.first().cloned() else {
                break;
            };
            if at > created_before {
                break;
            }
            st.unverified.remove(&(at, id.clone()));
            if let Some(s) = st.remove_token(&id) {
                subs.extend(s);
                self.persist(Op::DelToken(id));
                n += 1;
            }
        }
        (n, subs)
    }

    // --- subscriptions ------------------------------------------------------------------

    pub fn sub(&self, id: &[u8]) -> Option<SubRec> {
        self.state().subs.get(id).cloned()
    }

    pub fn sub_by_queue(&self, q: &SmpQueueNtf) -> Option<SubRec> {
        let st = self.state();
        st.subs.get(st.sub_by_queue.get(q)?).cloned()
    }

    /// Inserts or replaces a subscription (no caps; see [`Store::add_sub`]).
    pub fn put_sub(&self, s: SubRec) {
        let mut st = self.state();
        if let Some(old) = st.subs.remove(&s.id) {
            st.unindex_sub(&old);
        }
        st.index_sub(&s);
        self.persist(Op::PutSub(s.clone()));
        st.subs.insert(s.id.clone(), s);
    }

    /// Adds a new subscription unless it would exceed a cap (checked and applied under one
    /// lock, so concurrent `SNEW`s cannot overshoot).
    pub fn add_sub(&self, s: SubRec, caps: SubCaps) -> Result<(), CapExceeded> {
        let mut st = self.state();
        let of_token = st.subs_by_token.get(&s.token_id).map_or(0, |x| x.len());
        if of_token >= caps.per_token {
            return Err(CapExceeded::SubsPerToken);
        }
        let relays = st.relays_by_token.get(&s.token_id);
        let new_for_token = !relays.is_some_and(|m| m.contains_key(&s.queue.server));
        if new_for_token && relays.map_or(0, |m| m.len()) >= caps.relays_per_token {
            return Err(CapExceeded::RelaysPerToken);
        }
        if !st.subs_by_server.contains_key(&s.queue.server)
            && st.subs_by_server.len() >= caps.relays
        {
            return Err(CapExceeded::Relays);
        }
        st.index_sub(&s);
        self.persist(Op::PutSub(s.clone()));
        st.subs.insert(s.id.clone(), s);
        Ok(())
    }

    /// Whether any subscription is on `server`.
    pub fn relay_in_use(&self, server: &ProtocolServer) -> bool {
        self.state().subs_by_server.contains_key(server)
    }

    /// Sets a subscription's status; returns the previous one (`None`: no such subscription).
    pub fn set_sub_status(&self, id: &[u8], status: SubStatus) -> Option<SubStatus> {
        let mut st = self.state();
        let s = st.subs.get_mut(id)?;
        let old = std::mem::replace(&mut s.status, status);
        if old != s.status {
            let rec = s.clone();
            self.persist(Op::PutSub(rec));
        }
        Some(old)
    }

    pub fn delete_sub(&self, id: &[u8]) -> Option<SubRec> {
        let mut st = self.state();
        let s = st.subs.remove(id)?;
        st.unindex_sub(&s);
        let mut changed = None;
        if let Some(l) = st.last_ntfs.get_mut(&s.token_id) {
            let before = l.len();
            l.retain(|n| n.sub_id != id);
            if l.len() != before {
                changed = Some(l.iter().cloned().collect());
            }
        }
        if let Some(l) = changed {
            self.persist(Op::PutLastNtfs(s.token_id.clone(), l));
        }
        self.persist(Op::DelSub(id.to_vec()));
        Some(s)
    }

    /// Subscriptions on one relay (index, no scan of other relays).
    pub fn subs_on_server(&self, server: &ProtocolServer) -> Vec<SubRec> {
        let st = self.state();
        st.subs_by_server
            .get(server)
            .map(|ids| ids.iter().filter_map(|i| st.subs.get(i).cloned()).collect())
            .unwrap_or_default()
    }

    /// All subscriptions (a copy: start-up resubscription and tests).
    pub fn subs(&self) -> Vec<SubRec> {
        self.state().subs.values().cloned().collect()
    }

    /// Relays with subscriptions.
    pub fn relays(&self) -> Vec<ProtocolServer> {
        self.state().subs_by_server.keys().cloned().collect()
    }

    /// Subscriptions by status group, relays in use (no copies).
    pub fn sub_counts(&self) -> SubCounts {
        let st = self.state();
        let mut c = SubCounts {
            relays: st.subs_by_server.len(),
            ..SubCounts::default()
        };
        for s in st.subs.values() {
            match s.status {
                SubStatus::Active => c.active += 1,
                SubStatus::New | SubStatus::Pending | SubStatus::Inactive => c.pending += 1,
                _ => {}
            }
        }
        c
    }

    // --- last notifications -------------------------------------------------------------

    /// Records a notification of `sub` for its token (replacing that subscription's previous
    /// one, keeping the token's 6 newest) and returns the token's list, oldest first.
    pub fn add_last_ntf(&self, token_id: &[u8], ntf: LastNtf) -> Vec<LastNtf> {
        let mut st = self.state();
        let l = Self::push_last_ntf(&mut st, token_id, ntf);
        let out: Vec<LastNtf> = l.iter().cloned().collect();
        self.persist(Op::PutLastNtfs(token_id.to_vec(), out.clone()));
        out
    }

    /// [`Store::add_last_ntf`] without returning the list (the NMSG path: the list is copied
    /// only for the writer, not at all in memory mode).
    pub fn record_last_ntf(&self, token_id: &[u8], ntf: LastNtf) {
        let mut st = self.state();
        let l = Self::push_last_ntf(&mut st, token_id, ntf);
        if self.is_persistent() {
            let out: Vec<LastNtf> = l.iter().cloned().collect();
            self.persist(Op::PutLastNtfs(token_id.to_vec(), out));
        }
    }

    fn push_last_ntf<'a>(
        st: &'a mut State,
        token_id: &[u8],
        ntf: LastNtf,
    ) -> &'a VecDeque<LastNtf> {
        let l = st.last_ntfs.entry(token_id.to_vec()).or_default();
        l.retain(|n| n.sub_id != ntf.sub_id);
        l.push_back(ntf);
        while l.len() > MAX_PUSH_NTFS {
            l.pop_front();
        }
        l
    }

    /// Where a notification for queue `q` goes: its subscription's id, token id and queue, and
    /// whether the token is active (one lookup, without copying the records).
    pub fn ntf_route(&self, q: &SmpQueueNtf) -> Option<(Vec<u8>, Vec<u8>, SmpQueueNtf, bool)> {
        let st = self.state();
        let s = st.subs.get(st.sub_by_queue.get(q)?)?;
        let active = st
            .tokens
            .get(&s.token_id)
            .is_some_and(|t| t.status == TokenStatus::Active);
        Some((s.id.clone(), s.token_id.clone(), s.queue.clone(), active))
    }

    pub fn last_ntfs(&self, token_id: &[u8]) -> Vec<LastNtf> {
        self.state()
            .last_ntfs
            .get(token_id)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn counts(&self) -> StoreCounts {
        let st = self.state();
        StoreCounts {
            tokens: st.tokens.len(),
            subscriptions: st.subs.len(),
            last_notifications: st.last_ntfs.values().map(|l| l.len()).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: u8) -> TokenRec {
        TokenRec {
            id: vec![id; 24],
            device: Device::Token(DeviceToken {
                provider: PushProvider::ApnsTest,
                token: b"abcd".to_vec(),
            }),
            verify_key: vec![1, 2, 3],
            client_dh_key: vec![4, 5],
            server_dh_key: Zeroizing::new([9; 32]),
            dh_secret: Zeroizing::new([8; 32]),
            status: TokenStatus::Active,
            reg_code: vec![7; 32],
            cron_interval: 20,
            cron_sent_at: 5,
            created_at: 6,
            was_active: true,
        }
    }

    fn sub(id: u8, token: u8, nid: u8) -> SubRec {
        SubRec {
            id: vec![id; 24],
            token_id: vec![token; 24],
            queue: SmpQueueNtf {
                server: ProtocolServer::parse(
                    "smp://LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI=@localhost:5001",
                )
                .unwrap(),
                notifier_id: vec![nid; 24],
            },
            notifier_key: Zeroizing::new(vec![1; 48]),
            status: SubStatus::New,
        }
    }

    fn ntf(sub_id: u8, ts: i64) -> LastNtf {
        LastNtf {
            sub_id: vec![sub_id; 24],
            data: PnMessageData {
                queue: sub(sub_id, 1, sub_id).queue,
                ntf_ts: ts,
                nonce: [3; 24],
                enc_meta: vec![4; 144],
            },
        }
    }

    #[test]
    fn last_ntfs_one_per_sub_newest_six() {
        let s = Store::memory();
        s.put_token(token(1));
        for i in 0..8u8 {
            s.add_last_ntf(&[1; 24], ntf(i, i64::from(i)));
        }
        let l = s.add_last_ntf(&[1; 24], ntf(5, 100));
        assert_eq!(l.len(), 6);
        let ts: Vec<i64> = l.iter().map(|n| n.data.ntf_ts).collect();
        assert_eq!(ts, vec![2, 3, 4, 6, 7, 100]);
    }

    #[tokio::test]
    async fn sqlite_round_trip_and_delete_cascade() {
        let dir = tempfile::tempdir().unwrap();
        let mode = StoreMode::Sqlite(dir.path().join("ntf.db"));
        {
            let s = Store::open(&mode).unwrap();
            s.put_token(token(1));
            s.put_token(token(2));
            s.put_sub(sub(10, 1, 10));
            s.put_sub(sub(11, 1, 11));
            s.put_sub(sub(20, 2, 20));
            s.set_sub_status(&[10; 24], SubStatus::Active);
            s.add_last_ntf(&[1; 24], ntf(10, 42));
            s.add_last_ntf(&[2; 24], ntf(20, 43));
            s.delete_token(&[2; 24]);
            s.delete_sub(&[11; 24]);
            s.sync().await.unwrap();
        }
        let s = Store::open(&mode).unwrap();
        assert_eq!(
            s.counts(),
            StoreCounts {
                tokens: 1,
                subscriptions: 1,
                last_notifications: 1
            }
        );
        let t = s.token(&[1; 24]).unwrap();
        assert_eq!(t.status, TokenStatus::Active);
        assert_eq!(t.cron_interval, 20);
        assert_eq!(*t.dh_secret, [8; 32]);
        let sb = s.sub_by_queue(&sub(10, 1, 10).queue).unwrap();
        assert_eq!(sb.status, SubStatus::Active);
        assert_eq!(s.last_ntfs(&[1; 24])[0].data.ntf_ts, 42);
        assert!(s.token_by_registration(&t.device, &t.verify_key).is_some());
    }

    /// `update_token` is one read-modify-write under the lock: concurrent updates are not lost
    /// (they were when the record was read, changed outside the lock and written back).
    #[test]
    fn concurrent_token_updates_are_not_lost() {
        let s = Store::memory();
        s.put_token(token(1));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        s.update_token(&[1; 24], |t| {
                            t.cron_sent_at += 1;
                            true
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.token(&[1; 24]).unwrap().cron_sent_at, 5 + 8 * 2000);
        // a refused change leaves the token as it was
        assert!(!s.update_token(&[1; 24], |t| {
            t.cron_interval = 99;
            false
        }));
        assert_eq!(s.token(&[1; 24]).unwrap().cron_interval, 20);
        assert!(!s.update_token(&[2; 24], |_| true));
    }

    #[test]
    fn indexes_follow_changes() {
        let s = Store::memory();
        s.set_cron_minute(std::time::Duration::from_secs(60));
        let mut a = token(1);
        a.was_active = false;
        a.status = TokenStatus::Registered;
        a.created_at = 100;
        let mut b = token(2);
        b.verify_key = vec![9];
        b.created_at = 50;
        b.was_active = false;
        b.status = TokenStatus::Registered;
        let mut c = token(3);
        c.verify_key = vec![8];
        c.created_at = 10;
        c.was_active = false;
        c.status = TokenStatus::Registered;
        s.add_token(a.clone(), 8).unwrap();
        s.add_token(b, 8).unwrap();
        assert_eq!(s.tokens_with_device(&a.device).len(), 2);
        let target = a.device.target().unwrap();
        assert_eq!(s.tokens_for_target(&target).len(), 2);
        // cap 2: the oldest never-verified (b, created 50) goes
        let e = s.add_token(c, 2).unwrap();
        assert_eq!(e.tokens, 1);
        assert!(s.token(&[2; 24]).is_none());
        // verified tokens are never evicted
        s.update_token(&[1; 24], |t| {
            t.status = TokenStatus::Active;
            true
        });
        assert!(s.token(&[1; 24]).unwrap().was_active);
        s.update_token(&[3; 24], |t| {
            t.status = TokenStatus::Active;
            true
        });
        let mut d = token(4);
        d.verify_key = vec![7];
        assert_eq!(s.add_token(d, 2).unwrap_err(), CapExceeded::TokensPerDevice);
        // apns_null (the apps' server test) shares one token: no cap
        for i in 0..4u8 {
            let mut n = token(50 + i);
            n.device = Device::Token(DeviceToken {
                provider: PushProvider::ApnsNull,
                token: b"test_ntf_token".to_vec(),
            });
            n.was_active = false;
            n.status = TokenStatus::Registered;
            n.created_at = 2000;
            assert_eq!(s.add_token(n, 2).unwrap().tokens, 0);
        }
        // expiry walks only never-verified tokens created before the cutoff
        let mut u = token(5);
        u.device = Device::Handle("h".into());
        u.was_active = false;
        u.status = TokenStatus::Registered;
        u.created_at = 1000;
        s.put_token(u);
        assert_eq!(s.expire_unverified(999, 10).0, 0);
        assert_eq!(s.expire_unverified(1000, 10).0, 1);
        assert!(s.token(&[5; 24]).is_none());
        // cron: ACTIVE tokens with an interval, due cron_sent_at + interval minutes
        s.update_token(&[1; 24], |t| {
            t.cron_interval = 20;
            t.cron_sent_at = 0;
            true
        });
        assert!(s.take_due_cron(20 * 60_000 - 1, 0, 10).is_empty());
        let due = s.take_due_cron(20 * 60_000, 1200, 10);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].cron_sent_at, 1200);
        assert!(s.take_due_cron(20 * 60_000, 1200, 10).is_empty());
        // relay indexes
        let sb = sub(10, 1, 10);
        let server = sb.queue.server.clone();
        let caps = SubCaps {
            per_token: 1,
            relays_per_token: 1,
            relays: 1,
        };
        s.add_sub(sb, caps).unwrap();
        assert!(s.relay_in_use(&server));
        assert_eq!(s.subs_on_server(&server).len(), 1);
        assert_eq!(
            s.add_sub(sub(11, 1, 11), caps).unwrap_err(),
            CapExceeded::SubsPerToken
        );
        s.delete_token(&[1; 24]);
        assert!(!s.relay_in_use(&server));
        assert!(s.subs_on_server(&server).is_empty());
    }

    /// A file from before `was_active`: the column is added; ACTIVE tokens and tokens with
    /// subscriptions count as verified, others not.
    #[tokio::test]
    async fn old_file_gets_was_active() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ntf.db");
        {
            let s = Store::open(&StoreMode::Sqlite(path.clone())).unwrap();
            let mut t2 = token(2);
            t2.status = TokenStatus::Invalid(None);
            t2.verify_key = vec![2];
            let mut t3 = token(3);
            t3.status = TokenStatus::Registered;
            t3.verify_key = vec![3];
            s.put_token(token(1));
            s.put_token(t2);
            s.put_token(t3);
            s.put_sub(sub(20, 2, 20));
            s.sync().await.unwrap();
        }
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("ALTER TABLE tokens DROP COLUMN was_active")
            .unwrap();
        drop(conn);
        let s = Store::open(&StoreMode::Sqlite(path)).unwrap();
        assert!(s.token(&[1; 24]).unwrap().was_active);
        assert!(s.token(&[2; 24]).unwrap().was_active);
        assert!(!s.token(&[3; 24]).unwrap().was_active);
    }
}
