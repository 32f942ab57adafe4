//! Tokens, subscriptions and last notifications (reference §5.3, §5.4, §7.4 "NTF server stores
//! tokens, subscriptions, SMP servers and last notifications").
//!
//! The working state is in memory (one mutex, short critical sections, no I/O under it). Two
//! storage modes:
//!
//! * [`StoreMode::Memory`]: nothing on disk. After a restart clients find their tokens gone
//!   (`TCHK` → `ERR AUTH`) and create them again with `TNEW`/`SNEW`.
//! * [`StoreMode::Sqlite`]: every change is also queued, in order, to one writer thread that
//!   applies all queued changes in one transaction (group commit, WAL). [`Store::sync`] waits until
//!   everything queued before it is committed; command handlers call it before replying, so a
//!   client never gets `OK`/`IDTKN`/`IDSUB` for a change that is not durable. On start the state is
//!   loaded from the file (a row that does not decode is skipped with a warning, never a panic).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use hush_proto::address::ProtocolServer;
use hush_proto::ntf::{
    DeviceToken, PnMessageData, PushProvider, SmpQueueNtf, SubStatus, TokenStatus,
};
use push_server::{ApnsEnv, DeviceAddress, PushHandle, PushTarget};
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use crate::payload::MAX_PUSH_NTFS;

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

#[derive(Default)]
struct State {
    tokens: HashMap<Vec<u8>, TokenRec>,
    /// (device, verify key) → token id (`TNEW` idempotency).
    token_by_reg: HashMap<(Device, Vec<u8>), Vec<u8>>,
    subs: HashMap<Vec<u8>, SubRec>,
    sub_by_queue: HashMap<SmpQueueNtf, Vec<u8>>,
    subs_by_token: HashMap<Vec<u8>, HashSet<Vec<u8>>>,
    last_ntfs: HashMap<Vec<u8>, VecDeque<LastNtf>>,
}

/// A change for the writer thread.
enum Op {
    PutToken(TokenRec),
    DelToken(Vec<u8>),
    PutSub(SubRec),
    DelSub(Vec<u8>),
    PutLastNtfs(Vec<u8>, Vec<LastNtf>),
    Sync(oneshot::Sender<()>),
}

/// Storage mode (`[STORE_LOG]` in `ntf-server.ini`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreMode {
    Memory,
    Sqlite(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("store writer stopped")]
    WriterGone,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Counts for metrics and the control port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub tokens: usize,
    pub subscriptions: usize,
    pub last_notifications: usize,
}

struct Inner {
    state: Mutex<State>,
    writer: Option<std::sync::mpsc::SyncSender<Op>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.writer = None;
        if let Ok(mut t) = self.thread.lock()
            && let Some(h) = t.take()
        {
            let _ = h.join();
        }
    }
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

/// Bound of the writer queue (changes); a full queue makes writers wait (back-pressure).
const WRITER_QUEUE: usize = 65_536;
/// Most changes applied in one transaction.
const MAX_BATCH: usize = 4096;

impl Store {
    pub fn memory() -> Store {
        Store {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                writer: None,
                thread: Mutex::new(None),
            }),
        }
    }

    /// Opens (or creates) the SQLite file and loads its content. Blocking: call from
    /// `spawn_blocking` in async code.
    pub fn open(mode: &StoreMode) -> Result<Store, StoreError> {
        let path = match mode {
            StoreMode::Memory => return Ok(Store::memory()),
            StoreMode::Sqlite(p) => p,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let conn = open_db(path)?;
        let state = load(&conn)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(WRITER_QUEUE);
        let thread = std::thread::Builder::new()
            .name("ntf-store-writer".into())
            .spawn(move || writer_loop(conn, rx))?;
        Ok(Store {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                writer: Some(tx),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    pub fn is_persistent(&self) -> bool {
        self.inner.writer.is_some()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a change (called with the state lock held, so the file sees changes in the
    /// order the memory did).
    fn persist(&self, op: Op) {
        if let Some(w) = &self.inner.writer
            && w.send(op).is_err()
        {
            tracing::error!("store writer stopped: change not persisted");
        }
    }

    /// Resolves when every change queued before this call is committed (at once in memory mode).
    pub async fn sync(&self) -> Result<(), StoreError> {
        let Some(w) = self.inner.writer.clone() else {
            return Ok(());
        };
        let (tx, rx) = oneshot::channel();
        match w.try_send(Op::Sync(tx)) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(op)) => {
                // The queue is bounded: wait for room off the async threads.
                let sent = tokio::task::spawn_blocking(move || w.send(op).is_ok())
                    .await
                    .map_err(|_| StoreError::WriterGone)?;
                if !sent {
                    return Err(StoreError::WriterGone);
                }
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                return Err(StoreError::WriterGone);
            }
        }
        rx.await.map_err(|_| StoreError::WriterGone)
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

    /// Inserts or replaces a token.
    pub fn put_token(&self, t: TokenRec) {
        let mut st = self.state();
        if let Some(old) = st.tokens.get(&t.id) {
            let key = (old.device.clone(), old.verify_key.clone());
            st.token_by_reg.remove(&key);
        }
        st.token_by_reg
            .insert((t.device.clone(), t.verify_key.clone()), t.id.clone());
        self.persist(Op::PutToken(t.clone()));
        st.tokens.insert(t.id.clone(), t);
    }

    /// Changes a token with `f` (returns false if it does not exist).
    pub fn update_token(&self, id: &[u8], f: impl FnOnce(&mut TokenRec)) -> bool {
        let Some(mut t) = self.token(id) else {
            return false;
        };
        f(&mut t);
        self.put_token(t);
        true
    }

    /// Deletes a token with its subscriptions and last notifications; returns the deleted
    /// subscriptions.
    pub fn delete_token(&self, id: &[u8]) -> Vec<SubRec> {
        let mut st = self.state();
        let Some(t) = st.tokens.remove(id) else {
            return Vec::new();
        };
        st.token_by_reg
            .remove(&(t.device.clone(), t.verify_key.clone()));
        st.last_ntfs.remove(id);
        let sub_ids = st.subs_by_token.remove(id).unwrap_or_default();
        let mut out = Vec::new();
        for s in sub_ids {
            if let Some(sub) = st.subs.remove(&s) {
                st.sub_by_queue.remove(&sub.queue);
                out.push(sub);
            }
        }
        self.persist(Op::DelToken(id.to_vec()));
        out
    }

    /// Ids of other tokens with the same device (deleted when a token is verified).
    pub fn tokens_with_device(&self, device: &Device) -> Vec<Vec<u8>> {
        self.state()
            .tokens
            .values()
            .filter(|t| t.device == *device)
            .map(|t| t.id.clone())
            .collect()
    }

    pub fn tokens(&self) -> Vec<TokenRec> {
        self.state().tokens.values().cloned().collect()
    }

    // --- subscriptions ------------------------------------------------------------------

    pub fn sub(&self, id: &[u8]) -> Option<SubRec> {
        self.state().subs.get(id).cloned()
    }

    pub fn sub_by_queue(&self, q: &SmpQueueNtf) -> Option<SubRec> {
        let st = self.state();
        st.subs.get(st.sub_by_queue.get(q)?).cloned()
    }

    pub fn put_sub(&self, s: SubRec) {
        let mut st = self.state();
        st.sub_by_queue.insert(s.queue.clone(), s.id.clone());
        st.subs_by_token
            .entry(s.token_id.clone())
            .or_default()
            .insert(s.id.clone());
        self.persist(Op::PutSub(s.clone()));
        st.subs.insert(s.id.clone(), s);
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
        st.sub_by_queue.remove(&s.queue);
        if let Some(set) = st.subs_by_token.get_mut(&s.token_id) {
            set.remove(id);
        }
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

    /// Subscriptions on one relay.
    pub fn subs_on_server(&self, server: &ProtocolServer) -> Vec<SubRec> {
        self.state()
            .subs
            .values()
            .filter(|s| s.queue.server == *server)
            .cloned()
            .collect()
    }

    pub fn subs(&self) -> Vec<SubRec> {
        self.state().subs.values().cloned().collect()
    }

    // --- last notifications -------------------------------------------------------------

    /// Records a notification of `sub` for its token (replacing that subscription's previous
    /// one, keeping the token's 6 newest) and returns the token's list, oldest first.
    pub fn add_last_ntf(&self, token_id: &[u8], ntf: LastNtf) -> Vec<LastNtf> {
        let mut st = self.state();
        let l = st.last_ntfs.entry(token_id.to_vec()).or_default();
        l.retain(|n| n.sub_id != ntf.sub_id);
        l.push_back(ntf);
        while l.len() > MAX_PUSH_NTFS {
            l.pop_front();
        }
        let out: Vec<LastNtf> = l.iter().cloned().collect();
        self.persist(Op::PutLastNtfs(token_id.to_vec(), out.clone()));
        out
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

// --- SQLite ---------------------------------------------------------------------------------

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tokens (
  token_id BLOB PRIMARY KEY,
  provider TEXT NOT NULL,
  device_token BLOB NOT NULL,
  verify_key BLOB NOT NULL,
  client_dh_key BLOB NOT NULL,
  server_dh_key BLOB NOT NULL,
  dh_secret BLOB NOT NULL,
  status TEXT NOT NULL,
  reg_code BLOB NOT NULL,
  cron_interval INTEGER NOT NULL,
  cron_sent_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS smp_servers (
  server TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS subscriptions (
  sub_id BLOB PRIMARY KEY,
  token_id BLOB NOT NULL,
  server TEXT NOT NULL REFERENCES smp_servers(server),
  notifier_id BLOB NOT NULL,
  notifier_key BLOB NOT NULL,
  status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_token ON subscriptions(token_id);
CREATE TABLE IF NOT EXISTS last_notifications (
  token_id BLOB NOT NULL,
  pos INTEGER NOT NULL,
  sub_id BLOB NOT NULL,
  item TEXT NOT NULL,
  PRIMARY KEY (token_id, pos)
);
";

fn open_db(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

fn load(conn: &rusqlite::Connection) -> Result<State, StoreError> {
    let mut st = State::default();
    let mut bad = 0usize;
    {
        let mut q = conn.prepare(
            "SELECT token_id, provider, device_token, verify_key, client_dh_key, server_dh_key,
                    dh_secret, status, reg_code, cron_interval, cron_sent_at, created_at FROM tokens",
        )?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, Vec<u8>>(5)?,
                r.get::<_, Vec<u8>>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, Vec<u8>>(8)?,
                r.get::<_, i64>(9)?,
                r.get::<_, i64>(10)?,
                r.get::<_, i64>(11)?,
            ))
        })?;
        for row in rows {
            let (id, prov, tok, vk, cdh, sdh, dh, status, code, cron, cron_at, created) = row?;
            let rec = (|| {
                Some(TokenRec {
                    id,
                    device: Device::from_row(&prov, tok)?,
                    verify_key: vk,
                    client_dh_key: cdh,
                    server_dh_key: Zeroizing::new(sdh.try_into().ok()?),
                    dh_secret: Zeroizing::new(dh.try_into().ok()?),
                    status: TokenStatus::parse_text(&status).ok()?,
                    reg_code: code,
                    cron_interval: u16::try_from(cron).ok()?,
                    cron_sent_at: cron_at,
                    created_at: created,
                })
            })();
            match rec {
                Some(t) => {
                    st.token_by_reg
                        .insert((t.device.clone(), t.verify_key.clone()), t.id.clone());
                    st.tokens.insert(t.id.clone(), t);
                }
                None => bad += 1,
            }
        }
    }
    {
        let mut q = conn.prepare(
            "SELECT sub_id, token_id, server, notifier_id, notifier_key, status FROM subscriptions",
        )?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        for row in rows {
            let (id, token_id, server, nid, key, status) = row?;
            let rec = (|| {
                Some(SubRec {
                    id,
                    token_id,
                    queue: SmpQueueNtf {
                        server: ProtocolServer::parse(&server).ok()?,
                        notifier_id: nid,
                    },
                    notifier_key: Zeroizing::new(key),
                    status: SubStatus::parse_text(&status).ok()?,
                })
            })();
            match rec {
                Some(s) if st.tokens.contains_key(&s.token_id) => {
                    st.sub_by_queue.insert(s.queue.clone(), s.id.clone());
                    st.subs_by_token
                        .entry(s.token_id.clone())
                        .or_default()
                        .insert(s.id.clone());
                    st.subs.insert(s.id.clone(), s);
                }
                _ => bad += 1,
            }
        }
    }
    {
        let mut q = conn.prepare(
            "SELECT token_id, sub_id, item FROM last_notifications ORDER BY token_id, pos",
        )?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (token_id, sub_id, item) = row?;
            match hush_proto::ntf::parse_pn_messages(&item)
                .ok()
                .and_then(|mut v| v.pop())
            {
                Some(data) if st.tokens.contains_key(&token_id) => {
                    st.last_ntfs
                        .entry(token_id)
                        .or_default()
                        .push_back(LastNtf { sub_id, data });
                }
                _ => bad += 1,
            }
        }
    }
    if bad > 0 {
        tracing::warn!(rows = bad, "skipped store rows that do not decode");
    }
    Ok(st)
}

fn apply(tx: &rusqlite::Transaction<'_>, op: &Op) -> Result<(), rusqlite::Error> {
    match op {
        Op::PutToken(t) => {
            let (prov, tok) = t.device.to_row();
            tx.execute(
                "INSERT OR REPLACE INTO tokens (token_id, provider, device_token, verify_key,
                   client_dh_key, server_dh_key, dh_secret, status, reg_code, cron_interval,
                   cron_sent_at, created_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                rusqlite::params![
                    t.id,
                    prov,
                    tok,
                    t.verify_key,
                    t.client_dh_key,
                    t.server_dh_key.as_slice(),
                    t.dh_secret.as_slice(),
                    t.status.to_text(),
                    t.reg_code,
                    i64::from(t.cron_interval),
                    t.cron_sent_at,
                    t.created_at
                ],
            )?;
        }
        Op::DelToken(id) => {
            tx.execute("DELETE FROM tokens WHERE token_id = ?1", [id])?;
            tx.execute("DELETE FROM subscriptions WHERE token_id = ?1", [id])?;
            tx.execute("DELETE FROM last_notifications WHERE token_id = ?1", [id])?;
        }
        Op::PutSub(s) => {
            let server = s.queue.server.to_text();
            tx.execute(
                "INSERT OR IGNORE INTO smp_servers (server) VALUES (?1)",
                [&server],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO subscriptions (sub_id, token_id, server, notifier_id,
                   notifier_key, status) VALUES (?1,?2,?3,?4,?5,?6)",
                rusqlite::params![
                    s.id,
                    s.token_id,
                    server,
                    s.queue.notifier_id,
                    s.notifier_key.as_slice(),
                    s.status.to_text()
                ],
            )?;
        }
        Op::DelSub(id) => {
            tx.execute("DELETE FROM subscriptions WHERE sub_id = ?1", [id])?;
        }
        Op::PutLastNtfs(token_id, list) => {
            tx.execute(
                "DELETE FROM last_notifications WHERE token_id = ?1",
                [token_id],
            )?;
            for (pos, n) in list.iter().enumerate() {
                tx.execute(
                    "INSERT INTO last_notifications (token_id, pos, sub_id, item) VALUES (?1,?2,?3,?4)",
                    rusqlite::params![token_id, pos as i64, n.sub_id, n.data.to_text()],
                )?;
            }
        }
        Op::Sync(_) => {}
    }
    Ok(())
}

fn writer_loop(mut conn: rusqlite::Connection, rx: std::sync::mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let result = (|| -> Result<(), rusqlite::Error> {
            let tx = conn.transaction()?;
            for op in &batch {
                apply(&tx, op)?;
            }
            tx.commit()
        })();
        if let Err(e) = result {
            tracing::error!(error = %e, "store commit failed");
        }
        for op in batch {
            if let Op::Sync(tx) = op {
                let _ = tx.send(());
            }
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
}
