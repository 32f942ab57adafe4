//! Plain data types stored by the relay (reference `protocols.md` §3.5, §3.6, §3.8).
//!
//! Deliberately independent of `hush-proto`: ids are `[u8; 24]`, keys are DER (SPKI) bytes,
//! DH secrets are the 32-byte X25519 shared secrets.

/// Length of every entity id (recipient, sender, notifier, link) and of message ids.
pub const ID_LEN: usize = 24;

/// Recipient / sender / notifier / link id: 24 random bytes. The four kinds live in separate
/// namespaces (the same bytes may be a recipient id of one queue and a sender id of another).
pub type EntityId = [u8; ID_LEN];

/// Message id: 24 random bytes, also the `crypto_box` nonce of the delivered `MSG`.
pub type MsgId = [u8; ID_LEN];

/// X25519 shared secret (server key × client key).
pub type DhSecret = [u8; 32];

/// Largest stored message body (`MaxMessageLen`, §3.6).
pub const MAX_MESSAGE_BODY: usize = 16088;

/// Default per-queue message quota (§3.7).
pub const DEFAULT_QUOTA: usize = 128;

/// Queue mode from `NEW` (§3.5). `None` in [`QueueRecord::mode`] is the legacy "unknown" mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueMode {
    Messaging,
    Contact,
}

/// Short-link data: two opaque ciphertexts (§3.9). `fixed` never changes once set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkData {
    pub fixed: Vec<u8>,
    pub user: Vec<u8>,
}

/// A queue's short link: its id (own namespace) and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueLink {
    pub link_id: EntityId,
    pub data: LinkData,
}

/// Notifier credentials (`NKEY` / `NEW` v17, §3.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifierCreds {
    pub notifier_id: EntityId,
    /// Notifier's public auth key (DER SPKI).
    pub notifier_key: Vec<u8>,
    /// X25519 secret shared with the recipient, encrypts `NMSG` metadata.
    pub rcv_ntf_dh_secret: DhSecret,
}

/// Why an operator blocked a queue (`ERR BLOCKED reason=…`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockReason {
    Spam,
    Content,
}

/// Optional client notice sent with `ERR BLOCKED` (`notice={"ttl":n}` or `{}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockNotice {
    /// Seconds; `None` = indefinite.
    pub ttl: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockInfo {
    pub reason: BlockReason,
    pub notice: Option<BlockNotice>,
}

/// Queue status (§3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueStatus {
    Active,
    /// Suspended by the recipient (`OFF`).
    Off,
    /// Blocked by the operator.
    Blocked(BlockInfo),
}

/// The server-side queue record (§3.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueRecord {
    pub recipient_id: EntityId,
    /// Non-empty set of recipient auth keys (DER SPKI), in insertion order, no duplicates.
    pub recipient_keys: Vec<Vec<u8>>,
    pub rcv_dh_secret: DhSecret,
    pub sender_id: EntityId,
    /// Set by `KEY`/`SKEY`/`LKEY`; `None` while the queue is unsecured.
    pub sender_key: Option<Vec<u8>>,
    pub mode: Option<QueueMode>,
    pub link: Option<QueueLink>,
    pub notifier: Option<NotifierCreds>,
    pub status: QueueStatus,
    /// Unix seconds, rounded to a day by the caller (bumped daily on use); `None` if never set.
    pub updated_at: Option<i64>,
}

/// A message the relay accepted (`SEND`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    pub msg_id: MsgId,
    /// Server clock at acceptance, whole seconds.
    pub ts: i64,
    /// The stored flags byte (bit 0 = notification wanted).
    pub flags: u8,
    /// ≤ [`MAX_MESSAGE_BODY`] bytes.
    pub body: Vec<u8>,
}

/// A stored queue item: a message, or the quota marker appended when the queue filled up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Message(NewMessage),
    QuotaMarker { msg_id: MsgId, ts: i64 },
}

impl Message {
    pub fn msg_id(&self) -> &MsgId {
        match self {
            Message::Message(m) => &m.msg_id,
            Message::QuotaMarker { msg_id, .. } => msg_id,
        }
    }

    pub fn ts(&self) -> i64 {
        match self {
            Message::Message(m) => m.ts,
            Message::QuotaMarker { ts, .. } => *ts,
        }
    }

    pub fn is_quota_marker(&self) -> bool {
        matches!(self, Message::QuotaMarker { .. })
    }
}

/// A pending notification for a notifier id (§3.8): sent as `NMSG nonce encMeta`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingNtf {
    pub msg_id: MsgId,
    pub ts: i64,
    pub nonce: [u8; 24],
    /// `crypto_box(rcvNtfDhSecret, nonce, pad(NMsgMeta, 128))`, opaque here.
    pub enc_meta: Vec<u8>,
}

/// Result of [`crate::QueueStore::append_message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored. `was_empty`: the queue held nothing before (the relay may push it at once).
    Appended { was_empty: bool },
    /// Not stored (`ERR QUOTA`). `marker_added`: this call appended the quota marker.
    QuotaExceeded { marker_added: bool },
}

/// Result of [`crate::QueueStore::delete_message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The head matched the given msg id and was removed.
    pub deleted: bool,
    /// The head of the queue after the operation.
    pub head: Option<Message>,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub queues: u64,
    pub messages: u64,
    pub notifications: u64,
    /// Queues with notification credentials (a notifier id).
    pub notifier_queues: u64,
}

/// The side of a queue a service (v16 service certificate) is associated with (reference
/// `SRecipientService` / `SNotifierService`): a messaging service receives the queue's messages
/// (`SUBS`), a notifier service its notifications (`NSUBS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceParty {
    Recipient,
    Notifier,
}

/// A service as the relay stores it (reference `ServiceRec`): its id is assigned at its first
/// connection and found again by the hash of its identity certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRecord {
    pub service_id: EntityId,
    /// The role declared in the hello: `b'M'` (messaging), `b'N'` (notifier) or `b'P'` (proxy).
    pub role: u8,
    /// DER of the service's identity certificate.
    pub cert: Vec<u8>,
    /// SHA-256 of `cert` (unique: one service per certificate).
    pub cert_hash: [u8; 32],
    /// Unix seconds.
    pub created_at: i64,
}
