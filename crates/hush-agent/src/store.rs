//! The client database: SQLite (rusqlite, one real file, WAL), schema versioned with
//! `PRAGMA user_version` and forward-only migrations.
//!
//! It holds everything needed to continue a conversation after a restart: connections (with
//! their double-ratchet state, last sent/received agent message id and hash), receive queues
//! (recipient id/key, relay DH secret, our e2e key and the per-queue e2e secret, notifier
//! credentials), send queues (sender id/key, e2e secret, whether `SKEY` was done), the outbox
//! of encrypted messages not yet accepted by the relay, received messages not yet acknowledged
//! by the application (plus hashes of recent ones, to drop relay redeliveries), and contact
//! requests. Private keys are stored unencrypted: protect the file like a key file.
//!
//! A file that is not a hush-agent database (or is damaged) gives [`StoreError::Corrupt`]; a
//! database made by a newer version gives [`StoreError::TooNew`].

use std::path::Path;

use hush_client::{AuthKey, NotifierCreds};
use hush_crypto::keys::PrivateKey;
use hush_crypto::{DhSecret, X448Secret, X25519Public, X25519Secret};
use hush_proto::address::{ProtocolServer, QueueMode};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::ratchet::Ratchet;

/// Schema version written by this code.
pub const SCHEMA_VERSION: i64 = 3;

/// Received-message hashes kept per connection once acknowledged (redelivery detection only
/// ever concerns the latest unacknowledged message of a queue).
const KEEP_ACKED_HASHES: i64 = 64;

/// Connection id (local).
pub type ConnId = i64;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("client database is corrupt or not a hush-agent database: {0}")]
    Corrupt(String),
    #[error("client database schema version {found} is newer than supported {supported}")]
    TooNew { found: i64, supported: i64 },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file could not be created or its mode set (missing directory, no permission).
    #[error("client database: {0}")]
    Io(#[from] std::io::Error),
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("bad stored value: {0}")]
    BadValue(&'static str),
}

const MIGRATIONS: &[&str] = &[
    // 1: initial schema
    r#"
CREATE TABLE connections (
  conn_id INTEGER PRIMARY KEY AUTOINCREMENT,
  mode TEXT NOT NULL,                 -- 'invitation' | 'address'
  status TEXT NOT NULL,
  agent_version INTEGER NOT NULL,
  ratchet BLOB,
  x3dh_r1 BLOB,
  x3dh_r2 BLOB,
  last_snd_id INTEGER NOT NULL DEFAULT 0,
  last_snd_hash BLOB NOT NULL DEFAULT x'',
  last_rcv_id INTEGER NOT NULL DEFAULT 0,
  last_rcv_hash BLOB NOT NULL DEFAULT x'',
  peer_info BLOB,
  own_info BLOB,
  created_at INTEGER NOT NULL
);
CREATE TABLE rcv_queues (
  conn_id INTEGER NOT NULL REFERENCES connections(conn_id) ON DELETE CASCADE,
  server TEXT NOT NULL,
  rcv_id BLOB NOT NULL,
  snd_id BLOB NOT NULL,
  rcv_key BLOB NOT NULL,
  rcv_dh_secret BLOB NOT NULL,
  e2e_priv BLOB NOT NULL,
  e2e_secret BLOB,
  queue_mode TEXT NOT NULL,
  smp_client_version INTEGER NOT NULL,
  ntf_id BLOB,
  ntf_key BLOB,
  ntf_dh_secret BLOB,
  PRIMARY KEY (server, rcv_id)
);
CREATE INDEX rcv_queues_conn ON rcv_queues(conn_id);
CREATE TABLE snd_queues (
  snd_queue_id INTEGER PRIMARY KEY AUTOINCREMENT,
  conn_id INTEGER NOT NULL REFERENCES connections(conn_id) ON DELETE CASCADE,
  server TEXT NOT NULL,
  snd_id BLOB NOT NULL,
  snd_key BLOB NOT NULL,
  e2e_priv BLOB NOT NULL,
  e2e_secret BLOB NOT NULL,
  secured INTEGER NOT NULL,
  smp_client_version INTEGER NOT NULL,
  UNIQUE (server, snd_id)
);
CREATE TABLE outbox (
  outbox_id INTEGER PRIMARY KEY AUTOINCREMENT,
  conn_id INTEGER NOT NULL REFERENCES connections(conn_id) ON DELETE CASCADE,
  snd_queue_id INTEGER NOT NULL REFERENCES snd_queues(snd_queue_id) ON DELETE CASCADE,
  msg_id INTEGER NOT NULL,
  kind TEXT NOT NULL,                  -- 'confirmation' | 'message' | 'control'
  body BLOB NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE rcv_msgs (
  conn_id INTEGER NOT NULL REFERENCES connections(conn_id) ON DELETE CASCADE,
  enc_hash BLOB NOT NULL,
  msg_id INTEGER NOT NULL,
  server TEXT NOT NULL,
  rcv_id BLOB NOT NULL,
  server_msg_id BLOB NOT NULL,
  body BLOB,
  acked INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (conn_id, enc_hash)
);
CREATE INDEX rcv_msgs_msg ON rcv_msgs(conn_id, msg_id);
CREATE TABLE contact_requests (
  request_id INTEGER PRIMARY KEY AUTOINCREMENT,
  address_conn_id INTEGER NOT NULL REFERENCES connections(conn_id) ON DELETE CASCADE,
  invitation TEXT NOT NULL,
  conn_info BLOB NOT NULL,
  created_at INTEGER NOT NULL
);
"#,
    // 2: delivery receipts (hashes of sent and received agent messages)
    r#"
ALTER TABLE rcv_msgs ADD COLUMN msg_hash BLOB;
CREATE TABLE snd_msgs (
  conn_id INTEGER NOT NULL REFERENCES connections(conn_id) ON DELETE CASCADE,
  msg_id INTEGER NOT NULL,
  msg_hash BLOB NOT NULL,
  PRIMARY KEY (conn_id, msg_id)
);
"#,
    // 3: ratchet re-synchronisation and queue rotation
    r#"
ALTER TABLE connections ADD COLUMN ratchet_sync TEXT NOT NULL DEFAULT 'ok';
CREATE TABLE ratchet_key_hashes (
  conn_id INTEGER NOT NULL REFERENCES connections(conn_id) ON DELETE CASCADE,
  key_hash BLOB NOT NULL,
  PRIMARY KEY (conn_id, key_hash)
);
ALTER TABLE rcv_queues ADD COLUMN switch_status TEXT;
ALTER TABLE rcv_queues ADD COLUMN replaces_rcv_id BLOB;
ALTER TABLE rcv_queues ADD COLUMN sender_key BLOB;
ALTER TABLE snd_queues ADD COLUMN switch_status TEXT;
ALTER TABLE snd_queues ADD COLUMN replaces_id INTEGER;
ALTER TABLE snd_queues ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
"#,
];

/// Hashes of sent messages kept per connection for delivery receipts.
const KEEP_SND_HASHES: i64 = 1000;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn corrupt(e: rusqlite::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// The database (one connection; the agent serialises access).
pub struct Store {
    db: Connection,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Key (de)serialisation

/// Stores an auth key as PKCS#8 DER.
pub fn auth_key_to_bytes(k: &AuthKey) -> Result<Vec<u8>, StoreError> {
    let der = match k {
        AuthKey::Ed25519(s) => s.to_pkcs8_der().to_vec(),
        AuthKey::Ed448(s) => s
            .to_pkcs8_der()
            .map_err(|_| StoreError::BadValue("ed448 key"))?
            .to_vec(),
        AuthKey::X25519(s) => s.to_pkcs8_der(),
    };
    Ok(der)
}

pub fn auth_key_from_bytes(b: &[u8]) -> Result<AuthKey, StoreError> {
    match PrivateKey::from_pkcs8_der(b).map_err(|_| StoreError::BadValue("auth key"))? {
        PrivateKey::Ed25519(k) => Ok(AuthKey::Ed25519(k)),
        PrivateKey::Ed448(k) => Ok(AuthKey::Ed448(k)),
        PrivateKey::X25519(k) => Ok(AuthKey::X25519(k)),
        PrivateKey::X448(_) => Err(StoreError::BadValue("auth key algorithm")),
    }
}

fn arr32(b: &[u8], what: &'static str) -> Result<[u8; 32], StoreError> {
    b.try_into().map_err(|_| StoreError::BadValue(what))
}

fn dh_from(b: &[u8]) -> Result<DhSecret, StoreError> {
    Ok(DhSecret::from_bytes(arr32(b, "dh secret")?))
}

fn x25519_from(b: &[u8]) -> Result<X25519Secret, StoreError> {
    Ok(X25519Secret::from_bytes(arr32(b, "x25519 key")?))
}

fn x448_from(b: &[u8]) -> Result<X448Secret, StoreError> {
    X448Secret::from_bytes(b).map_err(|_| StoreError::BadValue("x448 key"))
}

fn server_from(s: &str) -> Result<ProtocolServer, StoreError> {
    ProtocolServer::parse(s).map_err(|_| StoreError::BadValue("server address"))
}

fn mode_text(m: Option<QueueMode>) -> &'static str {
    match m {
        Some(QueueMode::Messaging) => "m",
        Some(QueueMode::Contact) => "c",
        None => "",
    }
}

fn mode_from(s: &str) -> Option<QueueMode> {
    match s {
        "m" => Some(QueueMode::Messaging),
        "c" => Some(QueueMode::Contact),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Records

/// Connection mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnMode {
    /// A duplex connection (made from a one-time invitation, on either side).
    Invitation,
    /// A contact address (receives contact requests only).
    Address,
}

/// Connection status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnStatus {
    /// Inviter: invitation created, waiting for the joiner's confirmation.
    Created,
    /// Joiner: confirmation queued/sent, waiting for the inviter's reply.
    Joined,
    /// Inviter: confirmation received, waiting for the application's approval.
    AwaitingApproval,
    /// Inviter: confirmation received, reply queued/sent.
    Confirmed,
    /// Both directions work.
    Connected,
    /// A contact address.
    Address,
}

impl ConnStatus {
    fn text(self) -> &'static str {
        match self {
            ConnStatus::Created => "created",
            ConnStatus::Joined => "joined",
            ConnStatus::AwaitingApproval => "awaiting",
            ConnStatus::Confirmed => "confirmed",
            ConnStatus::Connected => "connected",
            ConnStatus::Address => "address",
        }
    }

    fn parse(s: &str) -> Result<ConnStatus, StoreError> {
        Ok(match s {
            "created" => ConnStatus::Created,
            "joined" => ConnStatus::Joined,
            "awaiting" => ConnStatus::AwaitingApproval,
            "confirmed" => ConnStatus::Confirmed,
            "connected" => ConnStatus::Connected,
            "address" => ConnStatus::Address,
            _ => return Err(StoreError::BadValue("connection status")),
        })
    }
}

/// A connection row (without its queues).
#[derive(Debug)]
pub struct ConnRecord {
    pub conn_id: ConnId,
    pub mode: ConnMode,
    pub status: ConnStatus,
    pub agent_version: u16,
    pub ratchet: Option<Ratchet>,
    /// Inviter's X3DH keys until the confirmation arrives.
    pub x3dh_keys: Option<(X448Secret, X448Secret)>,
    pub last_snd_id: i64,
    pub last_snd_hash: Vec<u8>,
    pub last_rcv_id: i64,
    pub last_rcv_hash: Vec<u8>,
    pub peer_info: Option<Vec<u8>>,
    /// Our connection info, sent in our confirmation.
    pub own_info: Option<Vec<u8>>,
}

/// A receive queue.
#[derive(Clone, Debug)]
pub struct RcvQueue {
    pub conn_id: ConnId,
    pub server: ProtocolServer,
    pub rcv_id: Vec<u8>,
    pub snd_id: Vec<u8>,
    pub rcv_key: AuthKey,
    pub rcv_dh_secret: DhSecret,
    /// Our X25519 key whose public part is the queue URI's `dh=`.
    pub e2e_priv: X25519Secret,
    /// Per-queue e2e secret, once the sender's key is known.
    pub e2e_secret: Option<DhSecret>,
    pub queue_mode: Option<QueueMode>,
    pub smp_client_version: u16,
    /// Notifier credentials (`NKEY`), handed to a notification server.
    pub notifier: Option<NotifierCreds>,
}

/// A send queue.
#[derive(Clone, Debug)]
pub struct SndQueue {
    pub snd_queue_id: i64,
    pub conn_id: ConnId,
    pub server: ProtocolServer,
    pub snd_id: Vec<u8>,
    pub snd_key: AuthKey,
    pub e2e_priv: X25519Secret,
    pub e2e_secret: DhSecret,
    /// `SKEY` done.
    pub secured: bool,
    pub smp_client_version: u16,
}

impl SndQueue {
    pub fn e2e_public(&self) -> X25519Public {
        self.e2e_priv.public()
    }
}

/// What an outbox entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxKind {
    Confirmation,
    /// An application message.
    Message,
    /// An agent control message (e.g. `A_QCONT`): no event when sent.
    Control,
}

/// A message waiting for the relay's `OK`.
#[derive(Clone, Debug)]
pub struct OutboxEntry {
    pub outbox_id: i64,
    pub conn_id: ConnId,
    pub snd_queue_id: i64,
    pub msg_id: i64,
    pub kind: OutboxKind,
    /// The complete `SEND` body.
    pub body: Vec<u8>,
}

/// A received message known to the store.
#[derive(Clone, Debug)]
pub struct RcvMsgRecord {
    pub conn_id: ConnId,
    pub msg_id: i64,
    pub server: ProtocolServer,
    pub rcv_id: Vec<u8>,
    pub server_msg_id: Vec<u8>,
    pub body: Option<Vec<u8>>,
    pub acked: bool,
    /// SHA-256 of the decrypted agent message (for a delivery receipt).
    pub msg_hash: Option<Vec<u8>>,
}

/// A pending contact request.
#[derive(Clone, Debug)]
pub struct ContactRequest {
    pub request_id: i64,
    pub address_conn_id: ConnId,
    pub invitation: String,
    pub conn_info: Vec<u8>,
}

// ---------------------------------------------------------------------------------------------

impl Store {
    /// Opens (creating if needed) the database file and migrates it. The file holds the keys
    /// and ratchets: it is created 0600 before SQLite opens it (its -wal and -shm get the same
    /// mode), and an existing file with a looser mode is tightened (logged at info).
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        // (a missing directory or no permission is an I/O problem, not corruption)
        hush_server_common::private_start::prepare_private_db(path, true, "client database")?;
        let db = Connection::open(path)?;
        Self::init(db)
    }

    /// An in-memory database (tests).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(db: Connection) -> Result<Store, StoreError> {
        // Any failure here on an existing file means it is not a (healthy) SQLite database.
        let version: i64 = db
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(corrupt)?;
        let check: String = db
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(corrupt)?;
        if check != "ok" {
            return Err(StoreError::Corrupt(check));
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version > 0 {
            // must be ours
            let n: i64 = db
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='connections'",
                    [],
                    |r| r.get(0),
                )
                .map_err(corrupt)?;
            if n != 1 {
                return Err(StoreError::Corrupt("missing tables".into()));
            }
        } else {
            let n: i64 = db
                .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(corrupt)?;
            if n != 0 {
                return Err(StoreError::Corrupt(
                    "database has tables but no hush-agent schema version".into(),
                ));
            }
        }
        db.pragma_update(None, "journal_mode", "WAL")
            .map_err(corrupt)?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut store = Store { db };
        store.migrate(version)?;
        Ok(store)
    }

    fn migrate(&mut self, from: i64) -> Result<(), StoreError> {
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let v = i as i64 + 1;
            if v <= from {
                continue;
            }
            let tx = self.db.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", v)?;
            tx.commit()?;
        }
        Ok(())
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.db.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Runs `f` in one transaction (committed when it returns `Ok`).
    pub fn tx<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let t = self.db.transaction().map_err(StoreError::from)?;
        let tx = Tx(t);
        let r = f(&tx)?;
        tx.0.commit().map_err(StoreError::from)?;
        Ok(r)
    }
}

/// A store transaction.
pub struct Tx<'a>(Transaction<'a>);

impl Tx<'_> {
    // ---- connections

    pub fn create_connection(
        &self,
        mode: ConnMode,
        status: ConnStatus,
        agent_version: u16,
    ) -> Result<ConnId, StoreError> {
        let mode = match mode {
            ConnMode::Invitation => "invitation",
            ConnMode::Address => "address",
        };
        self.0.execute(
            "INSERT INTO connections (mode, status, agent_version, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![mode, status.text(), agent_version, now()],
        )?;
        Ok(self.0.last_insert_rowid())
    }

    pub fn connection(&self, conn_id: ConnId) -> Result<ConnRecord, StoreError> {
        let row = self
            .0
            .query_row(
                "SELECT mode, status, agent_version, ratchet, x3dh_r1, x3dh_r2, last_snd_id, last_snd_hash,
                        last_rcv_id, last_rcv_hash, peer_info, own_info
                 FROM connections WHERE conn_id = ?1",
                [conn_id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<Vec<u8>>>(3)?,
                        r.get::<_, Option<Vec<u8>>>(4)?,
                        r.get::<_, Option<Vec<u8>>>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, Vec<u8>>(7)?,
                        r.get::<_, i64>(8)?,
                        r.get::<_, Vec<u8>>(9)?,
                        r.get::<_, Option<Vec<u8>>>(10)?,
                        r.get::<_, Option<Vec<u8>>>(11)?,
                    ))
                },
            )
            .optional()?
            .ok_or(StoreError::NotFound("connection"))?;
        let mode = match row.0.as_str() {
            "invitation" => ConnMode::Invitation,
            "address" => ConnMode::Address,
            _ => return Err(StoreError::BadValue("connection mode")),
        };
        let ratchet = match row.3 {
            Some(b) => {
                Some(Ratchet::from_bytes(&b).map_err(|_| StoreError::BadValue("ratchet state"))?)
            }
            None => None,
        };
        let x3dh_keys = match (row.4, row.5) {
            (Some(a), Some(b)) => Some((x448_from(&a)?, x448_from(&b)?)),
            _ => None,
        };
        Ok(ConnRecord {
            conn_id,
            mode,
            status: ConnStatus::parse(&row.1)?,
            agent_version: u16::try_from(row.2).map_err(|_| StoreError::BadValue("version"))?,
            ratchet,
            x3dh_keys,
            last_snd_id: row.6,
            last_snd_hash: row.7,
            last_rcv_id: row.8,
            last_rcv_hash: row.9,
            peer_info: row.10,
            own_info: row.11,
        })
    }

    pub fn connection_ids(&self) -> Result<Vec<ConnId>, StoreError> {
        let mut st = self
            .0
            .prepare("SELECT conn_id FROM connections ORDER BY conn_id")?;
        let ids = st
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    pub fn set_status(&self, conn_id: ConnId, status: ConnStatus) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE connections SET status = ?2 WHERE conn_id = ?1",
            params![conn_id, status.text()],
        )?;
        Ok(())
    }

    pub fn set_agent_version(&self, conn_id: ConnId, v: u16) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE connections SET agent_version = ?2 WHERE conn_id = ?1",
            params![conn_id, v],
        )?;
        Ok(())
    }

    pub fn set_peer_info(&self, conn_id: ConnId, info: &[u8]) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE connections SET peer_info = ?2 WHERE conn_id = ?1",
            params![conn_id, info],
        )?;
        Ok(())
    }

    pub fn set_own_info(&self, conn_id: ConnId, info: &[u8]) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE connections SET own_info = ?2 WHERE conn_id = ?1",
            params![conn_id, info],
        )?;
        Ok(())
    }

    pub fn set_ratchet(&self, conn_id: ConnId, r: &Ratchet) -> Result<(), StoreError> {
        let b = r.to_bytes().map_err(|_| StoreError::BadValue("ratchet"))?;
        self.0.execute(
            "UPDATE connections SET ratchet = ?2, x3dh_r1 = NULL, x3dh_r2 = NULL WHERE conn_id = ?1",
            params![conn_id, b.as_slice()],
        )?;
        Ok(())
    }

    pub fn set_x3dh_keys(
        &self,
        conn_id: ConnId,
        r1: &X448Secret,
        r2: &X448Secret,
    ) -> Result<(), StoreError> {
        let k1 = r1.to_bytes().map_err(|_| StoreError::BadValue("x448"))?;
        let k2 = r2.to_bytes().map_err(|_| StoreError::BadValue("x448"))?;
        self.0.execute(
            "UPDATE connections SET x3dh_r1 = ?2, x3dh_r2 = ?3 WHERE conn_id = ?1",
            params![conn_id, k1.as_slice(), k2.as_slice()],
        )?;
        Ok(())
    }

    pub fn set_last_snd(&self, conn_id: ConnId, id: i64, hash: &[u8]) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE connections SET last_snd_id = ?2, last_snd_hash = ?3 WHERE conn_id = ?1",
            params![conn_id, id, hash],
        )?;
        Ok(())
    }

    pub fn set_last_rcv(&self, conn_id: ConnId, id: i64, hash: &[u8]) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE connections SET last_rcv_id = ?2, last_rcv_hash = ?3 WHERE conn_id = ?1",
            params![conn_id, id, hash],
        )?;
        Ok(())
    }

    pub fn delete_connection(&self, conn_id: ConnId) -> Result<(), StoreError> {
        self.0
            .execute("DELETE FROM connections WHERE conn_id = ?1", [conn_id])?;
        Ok(())
    }

    // ---- receive queues

    pub fn add_rcv_queue(&self, q: &RcvQueue) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO rcv_queues (conn_id, server, rcv_id, snd_id, rcv_key, rcv_dh_secret, e2e_priv,
                                     e2e_secret, queue_mode, smp_client_version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                q.conn_id,
                q.server.to_text(),
                q.rcv_id,
                q.snd_id,
                auth_key_to_bytes(&q.rcv_key)?,
                q.rcv_dh_secret.as_bytes().as_slice(),
                q.e2e_priv.to_bytes().as_slice(),
                q.e2e_secret.as_ref().map(|s| s.as_bytes().to_vec()),
                mode_text(q.queue_mode),
                q.smp_client_version,
            ],
        )?;
        Ok(())
    }

    fn rcv_queue_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RcvRow> {
        Ok(RcvRow {
            conn_id: r.get(0)?,
            server: r.get(1)?,
            rcv_id: r.get(2)?,
            snd_id: r.get(3)?,
            rcv_key: r.get(4)?,
            rcv_dh_secret: r.get(5)?,
            e2e_priv: r.get(6)?,
            e2e_secret: r.get(7)?,
            queue_mode: r.get(8)?,
            smp_client_version: r.get(9)?,
            ntf_id: r.get(10)?,
            ntf_key: r.get(11)?,
            ntf_dh_secret: r.get(12)?,
        })
    }

    const RCV_COLS: &'static str = "conn_id, server, rcv_id, snd_id, rcv_key, rcv_dh_secret, e2e_priv, e2e_secret, queue_mode, smp_client_version, ntf_id, ntf_key, ntf_dh_secret";

    /// The receive queue with this relay address and recipient id.
    pub fn rcv_queue(
        &self,
        server: &ProtocolServer,
        rcv_id: &[u8],
    ) -> Result<Option<RcvQueue>, StoreError> {
        let sql = format!(
            "SELECT {} FROM rcv_queues WHERE server = ?1 AND rcv_id = ?2",
            Self::RCV_COLS
        );
        let row = self
            .0
            .query_row(&sql, params![server.to_text(), rcv_id], Self::rcv_queue_row)
            .optional()?;
        row.map(RcvRow::into_queue).transpose()
    }

    pub fn rcv_queues_of(&self, conn_id: ConnId) -> Result<Vec<RcvQueue>, StoreError> {
        let sql = format!(
            "SELECT {} FROM rcv_queues WHERE conn_id = ?1",
            Self::RCV_COLS
        );
        let mut st = self.0.prepare(&sql)?;
        let rows = st
            .query_map([conn_id], Self::rcv_queue_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(RcvRow::into_queue).collect()
    }

    pub fn all_rcv_queues(&self) -> Result<Vec<RcvQueue>, StoreError> {
        let sql = format!("SELECT {} FROM rcv_queues", Self::RCV_COLS);
        let mut st = self.0.prepare(&sql)?;
        let rows = st
            .query_map([], Self::rcv_queue_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(RcvRow::into_queue).collect()
    }

    pub fn set_rcv_e2e_secret(
        &self,
        server: &ProtocolServer,
        rcv_id: &[u8],
        secret: &DhSecret,
    ) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE rcv_queues SET e2e_secret = ?3 WHERE server = ?1 AND rcv_id = ?2",
            params![server.to_text(), rcv_id, secret.as_bytes().as_slice()],
        )?;
        Ok(())
    }

    /// Stores (`Some`) or removes (`None`) a receive queue's notifier credentials.
    pub fn set_rcv_notifier(
        &self,
        server: &ProtocolServer,
        rcv_id: &[u8],
        creds: Option<&NotifierCreds>,
    ) -> Result<(), StoreError> {
        let (id, key, dh) = match creds {
            Some(c) => (
                Some(c.notifier_id.clone()),
                Some(auth_key_to_bytes(&c.notifier_key)?),
                Some(c.rcv_ntf_dh_secret.as_bytes().to_vec()),
            ),
            None => (None, None, None),
        };
        self.0.execute(
            "UPDATE rcv_queues SET ntf_id = ?3, ntf_key = ?4, ntf_dh_secret = ?5 WHERE server = ?1 AND rcv_id = ?2",
            params![server.to_text(), rcv_id, id, key, dh],
        )?;
        Ok(())
    }

    // ---- send queues

    pub fn add_snd_queue(&self, q: &SndQueue) -> Result<i64, StoreError> {
        self.0.execute(
            "INSERT INTO snd_queues (conn_id, server, snd_id, snd_key, e2e_priv, e2e_secret, secured, smp_client_version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                q.conn_id,
                q.server.to_text(),
                q.snd_id,
                auth_key_to_bytes(&q.snd_key)?,
                q.e2e_priv.to_bytes().as_slice(),
                q.e2e_secret.as_bytes().as_slice(),
                q.secured,
                q.smp_client_version,
            ],
        )?;
        Ok(self.0.last_insert_rowid())
    }

    fn snd_rows(
        &self,
        where_: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<SndQueue>, StoreError> {
        let sql = format!(
            "SELECT snd_queue_id, conn_id, server, snd_id, snd_key, e2e_priv, e2e_secret, secured, smp_client_version
             FROM snd_queues WHERE {where_} ORDER BY snd_queue_id"
        );
        let mut st = self.0.prepare(&sql)?;
        let rows = st
            .query_map(p, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                    r.get::<_, Vec<u8>>(5)?,
                    r.get::<_, Vec<u8>>(6)?,
                    r.get::<_, bool>(7)?,
                    r.get::<_, i64>(8)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|r| {
                Ok(SndQueue {
                    snd_queue_id: r.0,
                    conn_id: r.1,
                    server: server_from(&r.2)?,
                    snd_id: r.3,
                    snd_key: auth_key_from_bytes(&r.4)?,
                    e2e_priv: x25519_from(&r.5)?,
                    e2e_secret: dh_from(&r.6)?,
                    secured: r.7,
                    smp_client_version: u16::try_from(r.8)
                        .map_err(|_| StoreError::BadValue("version"))?,
                })
            })
            .collect()
    }

    pub fn snd_queue(&self, snd_queue_id: i64) -> Result<SndQueue, StoreError> {
        self.snd_rows("snd_queue_id = ?1", [snd_queue_id])?
            .pop()
            .ok_or(StoreError::NotFound("send queue"))
    }

    pub fn snd_queues_of(&self, conn_id: ConnId) -> Result<Vec<SndQueue>, StoreError> {
        self.snd_rows("conn_id = ?1", [conn_id])
    }

    pub fn all_snd_queues(&self) -> Result<Vec<SndQueue>, StoreError> {
        self.snd_rows("1 = 1", [])
    }

    pub fn set_snd_secured(&self, snd_queue_id: i64) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE snd_queues SET secured = 1 WHERE snd_queue_id = ?1",
            [snd_queue_id],
        )?;
        Ok(())
    }

    // ---- outbox

    pub fn push_outbox(
        &self,
        conn_id: ConnId,
        snd_queue_id: i64,
        msg_id: i64,
        kind: OutboxKind,
        body: &[u8],
    ) -> Result<i64, StoreError> {
        let kind = match kind {
            OutboxKind::Confirmation => "confirmation",
            OutboxKind::Message => "message",
            OutboxKind::Control => "control",
        };
        self.0.execute(
            "INSERT INTO outbox (conn_id, snd_queue_id, msg_id, kind, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![conn_id, snd_queue_id, msg_id, kind, body, now()],
        )?;
        Ok(self.0.last_insert_rowid())
    }

    /// The oldest outbox entry of a send queue.
    pub fn outbox_head(&self, snd_queue_id: i64) -> Result<Option<OutboxEntry>, StoreError> {
        let row = self
            .0
            .query_row(
                "SELECT outbox_id, conn_id, msg_id, kind, body FROM outbox WHERE snd_queue_id = ?1
                 ORDER BY outbox_id LIMIT 1",
                [snd_queue_id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Vec<u8>>(4)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(outbox_id, conn_id, msg_id, kind, body)| {
            Ok(OutboxEntry {
                outbox_id,
                conn_id,
                snd_queue_id,
                msg_id,
                kind: match kind.as_str() {
                    "confirmation" => OutboxKind::Confirmation,
                    "message" => OutboxKind::Message,
                    "control" => OutboxKind::Control,
                    _ => return Err(StoreError::BadValue("outbox kind")),
                },
                body,
            })
        })
        .transpose()
    }

    pub fn outbox_len(&self) -> Result<i64, StoreError> {
        Ok(self
            .0
            .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?)
    }

    pub fn delete_outbox(&self, outbox_id: i64) -> Result<(), StoreError> {
        self.0
            .execute("DELETE FROM outbox WHERE outbox_id = ?1", [outbox_id])?;
        Ok(())
    }

    // ---- received messages

    #[allow(clippy::too_many_arguments)]
    pub fn add_rcv_msg(
        &self,
        conn_id: ConnId,
        enc_hash: &[u8],
        msg_id: i64,
        server: &ProtocolServer,
        rcv_id: &[u8],
        server_msg_id: &[u8],
        body: Option<&[u8]>,
        acked: bool,
    ) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT OR REPLACE INTO rcv_msgs (conn_id, enc_hash, msg_id, server, rcv_id, server_msg_id, body, acked)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![conn_id, enc_hash, msg_id, server.to_text(), rcv_id, server_msg_id, body, acked],
        )?;
        Ok(())
    }

    fn rcv_msg_from(conn_id: ConnId, row: RcvMsgRow) -> Result<RcvMsgRecord, StoreError> {
        Ok(RcvMsgRecord {
            conn_id,
            msg_id: row.0,
            server: server_from(&row.1)?,
            rcv_id: row.2,
            server_msg_id: row.3,
            body: row.4,
            acked: row.5,
            msg_hash: row.6,
        })
    }

    /// A received message by the hash of its encrypted envelope (redelivery detection).
    pub fn rcv_msg_by_hash(
        &self,
        conn_id: ConnId,
        enc_hash: &[u8],
    ) -> Result<Option<RcvMsgRecord>, StoreError> {
        self.rcv_msg_where(
            conn_id,
            "SELECT msg_id, server, rcv_id, server_msg_id, body, acked, msg_hash FROM rcv_msgs
             WHERE conn_id = ?1 AND enc_hash = ?2",
            params![conn_id, enc_hash],
        )
    }

    /// The one received message row `sql` (selecting the `rcv_msgs` columns in
    /// [`Self::rcv_msg_from`] order) finds, if any.
    fn rcv_msg_where(
        &self,
        conn_id: ConnId,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<RcvMsgRecord>, StoreError> {
        let row = self
            .0
            .query_row(sql, params, |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .optional()?;
        row.map(|r| Self::rcv_msg_from(conn_id, r)).transpose()
    }

    /// A received application message by its agent message id.
    pub fn rcv_msg(
        &self,
        conn_id: ConnId,
        msg_id: i64,
    ) -> Result<Option<RcvMsgRecord>, StoreError> {
        self.rcv_msg_where(
            conn_id,
            "SELECT msg_id, server, rcv_id, server_msg_id, body, acked, msg_hash FROM rcv_msgs
             WHERE conn_id = ?1 AND msg_id = ?2 ORDER BY rowid DESC LIMIT 1",
            params![conn_id, msg_id],
        )
    }

    /// Marks a received message acknowledged by the application, drops its body and prunes old
    /// hashes.
    pub fn ack_rcv_msg(&self, conn_id: ConnId, msg_id: i64) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE rcv_msgs SET acked = 1, body = NULL WHERE conn_id = ?1 AND msg_id = ?2",
            params![conn_id, msg_id],
        )?;
        self.0.execute(
            "DELETE FROM rcv_msgs WHERE conn_id = ?1 AND acked = 1 AND rowid NOT IN
               (SELECT rowid FROM rcv_msgs WHERE conn_id = ?1 ORDER BY rowid DESC LIMIT ?2)",
            params![conn_id, KEEP_ACKED_HASHES],
        )?;
        Ok(())
    }

    /// Records the hash of a received agent message (all rows with that id).
    pub fn set_rcv_msg_hash(
        &self,
        conn_id: ConnId,
        msg_id: i64,
        msg_hash: &[u8],
    ) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE rcv_msgs SET msg_hash = ?3 WHERE conn_id = ?1 AND msg_id = ?2",
            params![conn_id, msg_id, msg_hash],
        )?;
        Ok(())
    }

    // ---- sent message hashes (receipts)

    pub fn add_snd_msg(
        &self,
        conn_id: ConnId,
        msg_id: i64,
        msg_hash: &[u8],
    ) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT OR REPLACE INTO snd_msgs (conn_id, msg_id, msg_hash) VALUES (?1, ?2, ?3)",
            params![conn_id, msg_id, msg_hash],
        )?;
        self.0.execute(
            "DELETE FROM snd_msgs WHERE conn_id = ?1 AND msg_id <= ?2",
            params![conn_id, msg_id - KEEP_SND_HASHES],
        )?;
        Ok(())
    }

    /// Takes (returns and forgets) the hash of a sent message.
    pub fn take_snd_msg(
        &self,
        conn_id: ConnId,
        msg_id: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let h = self
            .0
            .query_row(
                "SELECT msg_hash FROM snd_msgs WHERE conn_id = ?1 AND msg_id = ?2",
                params![conn_id, msg_id],
                |r| r.get(0),
            )
            .optional()?;
        self.0.execute(
            "DELETE FROM snd_msgs WHERE conn_id = ?1 AND msg_id = ?2",
            params![conn_id, msg_id],
        )?;
        Ok(h)
    }

    // ---- contact requests

    pub fn add_contact_request(
        &self,
        address_conn_id: ConnId,
        invitation: &str,
        conn_info: &[u8],
    ) -> Result<i64, StoreError> {
        self.0.execute(
            "INSERT INTO contact_requests (address_conn_id, invitation, conn_info, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![address_conn_id, invitation, conn_info, now()],
        )?;
        Ok(self.0.last_insert_rowid())
    }

    pub fn contact_request(&self, request_id: i64) -> Result<ContactRequest, StoreError> {
        self.0
            .query_row(
                "SELECT address_conn_id, invitation, conn_info FROM contact_requests WHERE request_id = ?1",
                [request_id],
                |r| {
                    Ok(ContactRequest {
                        request_id,
                        address_conn_id: r.get(0)?,
                        invitation: r.get(1)?,
                        conn_info: r.get(2)?,
                    })
                },
            )
            .optional()?
            .ok_or(StoreError::NotFound("contact request"))
    }

    pub fn delete_contact_request(&self, request_id: i64) -> Result<(), StoreError> {
        self.0.execute(
            "DELETE FROM contact_requests WHERE request_id = ?1",
            [request_id],
        )?;
        Ok(())
    }
}

/// Queue-rotation and ratchet re-synchronisation rows (schema 3).
impl Tx<'_> {
    /// The connection's ratchet synchronisation state.
    pub fn ratchet_sync(&self, conn_id: ConnId) -> Result<RatchetSyncState, StoreError> {
        let s: String = self
            .0
            .query_row(
                "SELECT ratchet_sync FROM connections WHERE conn_id = ?1",
                [conn_id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(StoreError::NotFound("connection"))?;
        RatchetSyncState::parse(&s)
    }

    pub fn set_ratchet_sync(
        &self,
        conn_id: ConnId,
        state: RatchetSyncState,
    ) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE connections SET ratchet_sync = ?2 WHERE conn_id = ?1",
            params![conn_id, state.text()],
        )?;
        Ok(())
    }

    /// Records the hash of a peer's re-synchronisation keys; false if it was already there.
    pub fn add_ratchet_key_hash(&self, conn_id: ConnId, hash: &[u8]) -> Result<bool, StoreError> {
        let n = self.0.execute(
            "INSERT OR IGNORE INTO ratchet_key_hashes (conn_id, key_hash) VALUES (?1, ?2)",
            params![conn_id, hash],
        )?;
        Ok(n == 1)
    }

    /// A receive queue's rotation state.
    pub fn rcv_switch(
        &self,
        server: &ProtocolServer,
        rcv_id: &[u8],
    ) -> Result<RcvSwitch, StoreError> {
        self.0
            .query_row(
                "SELECT switch_status, replaces_rcv_id, sender_key FROM rcv_queues WHERE server = ?1 AND rcv_id = ?2",
                params![server.to_text(), rcv_id],
                |r| {
                    Ok(RcvSwitch {
                        status: r.get(0)?,
                        replaces_rcv_id: r.get(1)?,
                        sender_key: r.get(2)?,
                    })
                },
            )
            .optional()?
            .ok_or(StoreError::NotFound("receive queue"))
    }

    pub fn set_rcv_switch(
        &self,
        server: &ProtocolServer,
        rcv_id: &[u8],
        sw: &RcvSwitch,
    ) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE rcv_queues SET switch_status = ?3, replaces_rcv_id = ?4, sender_key = ?5 WHERE server = ?1 AND rcv_id = ?2",
            params![
                server.to_text(),
                rcv_id,
                sw.status,
                sw.replaces_rcv_id,
                sw.sender_key
            ],
        )?;
        Ok(())
    }

    pub fn delete_rcv_queue(
        &self,
        server: &ProtocolServer,
        rcv_id: &[u8],
    ) -> Result<(), StoreError> {
        self.0.execute(
            "DELETE FROM rcv_queues WHERE server = ?1 AND rcv_id = ?2",
            params![server.to_text(), rcv_id],
        )?;
        Ok(())
    }

    /// A send queue's rotation state.
    pub fn snd_switch(&self, snd_queue_id: i64) -> Result<SndSwitch, StoreError> {
        self.0
            .query_row(
                "SELECT switch_status, replaces_id, active FROM snd_queues WHERE snd_queue_id = ?1",
                [snd_queue_id],
                |r| {
                    Ok(SndSwitch {
                        status: r.get(0)?,
                        replaces_id: r.get(1)?,
                        active: r.get(2)?,
                    })
                },
            )
            .optional()?
            .ok_or(StoreError::NotFound("send queue"))
    }

    pub fn set_snd_switch(&self, snd_queue_id: i64, sw: &SndSwitch) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE snd_queues SET switch_status = ?2, replaces_id = ?3, active = ?4 WHERE snd_queue_id = ?1",
            params![snd_queue_id, sw.status, sw.replaces_id, sw.active],
        )?;
        Ok(())
    }

    pub fn delete_snd_queue(&self, snd_queue_id: i64) -> Result<(), StoreError> {
        self.0.execute(
            "DELETE FROM snd_queues WHERE snd_queue_id = ?1",
            [snd_queue_id],
        )?;
        Ok(())
    }

    /// The send queue new messages go to: the newest active one.
    pub fn current_snd_queue(&self, conn_id: ConnId) -> Result<Option<SndQueue>, StoreError> {
        Ok(self
            .snd_rows("conn_id = ?1 AND active = 1", [conn_id])?
            .pop())
    }

    /// Messages waiting in one send queue's outbox.
    pub fn outbox_count(&self, snd_queue_id: i64) -> Result<i64, StoreError> {
        Ok(self.0.query_row(
            "SELECT count(*) FROM outbox WHERE snd_queue_id = ?1",
            [snd_queue_id],
            |r| r.get(0),
        )?)
    }
}

/// Ratchet synchronisation state (reference `RatchetSyncState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RatchetSyncState {
    /// In sync.
    Ok,
    /// A message failed to decrypt in a way that may be harmless; re-sync may be started.
    Allowed,
    /// The ratchet is out of sync: sending is prohibited until re-synchronised.
    Required,
    /// We sent our re-synchronisation keys and wait for the peer's.
    Started,
    /// Both keys known, the ratchet was re-initialised; waiting for the first message.
    Agreed,
}

impl RatchetSyncState {
    pub fn text(self) -> &'static str {
        match self {
            RatchetSyncState::Ok => "ok",
            RatchetSyncState::Allowed => "allowed",
            RatchetSyncState::Required => "required",
            RatchetSyncState::Started => "started",
            RatchetSyncState::Agreed => "agreed",
        }
    }

    pub fn parse(s: &str) -> Result<RatchetSyncState, StoreError> {
        Ok(match s {
            "ok" => RatchetSyncState::Ok,
            "allowed" => RatchetSyncState::Allowed,
            "required" => RatchetSyncState::Required,
            "started" => RatchetSyncState::Started,
            "agreed" => RatchetSyncState::Agreed,
            _ => return Err(StoreError::BadValue("ratchet sync state")),
        })
    }

    /// Sending is prohibited (reference `ratchetSyncSendProhibited`).
    pub fn send_prohibited(self) -> bool {
        matches!(
            self,
            RatchetSyncState::Required | RatchetSyncState::Started | RatchetSyncState::Agreed
        )
    }
}

/// A receive queue's rotation state: on the old queue `status` (`sending_qadd`,
/// `sending_quse`, `draining`), on the new one `replaces_rcv_id` (the old queue's recipient id)
/// and, between QKEY and KEY, the sender's auth key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RcvSwitch {
    pub status: Option<String>,
    pub replaces_rcv_id: Option<Vec<u8>>,
    pub sender_key: Option<Vec<u8>>,
}

/// A send queue's rotation state: on the old queue `status` (`sending_qkey`, `sending_qtest`),
/// on the new one `replaces_id`; a new queue is inactive (gets no messages) until QUSE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SndSwitch {
    pub status: Option<String>,
    pub replaces_id: Option<i64>,
    pub active: bool,
}

type RcvMsgRow = (
    i64,
    String,
    Vec<u8>,
    Vec<u8>,
    Option<Vec<u8>>,
    bool,
    Option<Vec<u8>>,
);

struct RcvRow {
    conn_id: i64,
    server: String,
    rcv_id: Vec<u8>,
    snd_id: Vec<u8>,
    rcv_key: Vec<u8>,
    rcv_dh_secret: Vec<u8>,
    e2e_priv: Vec<u8>,
    e2e_secret: Option<Vec<u8>>,
    queue_mode: String,
    smp_client_version: i64,
    ntf_id: Option<Vec<u8>>,
    ntf_key: Option<Vec<u8>>,
    ntf_dh_secret: Option<Vec<u8>>,
}

impl RcvRow {
    fn into_queue(self) -> Result<RcvQueue, StoreError> {
        Ok(RcvQueue {
            conn_id: self.conn_id,
            server: server_from(&self.server)?,
            rcv_id: self.rcv_id,
            snd_id: self.snd_id,
            rcv_key: auth_key_from_bytes(&self.rcv_key)?,
            rcv_dh_secret: dh_from(&self.rcv_dh_secret)?,
            e2e_priv: x25519_from(&self.e2e_priv)?,
            e2e_secret: self.e2e_secret.as_deref().map(dh_from).transpose()?,
            queue_mode: mode_from(&self.queue_mode),
            smp_client_version: u16::try_from(self.smp_client_version)
                .map_err(|_| StoreError::BadValue("version"))?,
            notifier: match (self.ntf_id, self.ntf_key, self.ntf_dh_secret) {
                (Some(notifier_id), Some(k), Some(d)) => Some(NotifierCreds {
                    notifier_id,
                    notifier_key: auth_key_from_bytes(&k)?,
                    rcv_ntf_dh_secret: dh_from(&d)?,
                }),
                (None, None, None) => None,
                _ => return Err(StoreError::BadValue("partial notifier credentials")),
            },
        })
    }
}
