//! The async client API (reference §6.6, fast procedure): commands in, [`AgentEvent`]s out.
//!
//! * Queues live on the configured relay and are reached through one
//!   [`hush_client::SmpClientPool`] (one TLS connection per relay, reconnect with backoff,
//!   resubscription after reconnects).
//! * Every state change is one SQLite transaction ([`crate::store`]); outgoing messages are
//!   ratchet-encrypted once, stored in the outbox, and sent by one delivery task per send queue
//!   (retried until the relay says `OK`), so a restart in the middle of a conversation loses and
//!   duplicates nothing: a relay redelivery or a repeated `SEND` is recognised by the hash of
//!   the `SEND` body and dropped.
//! * Received application messages stay in the database until the application calls
//!   [`Agent::ack`], which also acknowledges them at the relay (the relay delivers the next
//!   message of a queue only after that).
//! * Integrity: agent message ids are sequential and carry the hash of the previous message;
//!   gaps and hash mismatches are reported in [`MsgIntegrity`]; duplicates are dropped with a
//!   [`AgentEvent::Duplicate`] event; undecryptable or malformed input gives
//!   [`AgentEvent::Error`] and leaves all state as it was.
//!
//! Limits (also in the crate docs): only the fast procedure (both queues in messaging mode,
//! secured by the sender with `SKEY`); by default the inviter accepts a joiner's confirmation
//! at once (see [`AgentConfig::auto_accept_confirmations`]). Short links live in the
//! `shortlink_agent` submodule (pure codecs in [`crate::shortlink`]). Queue rotation
//! ([`Agent::switch_queue`]) and ratchet re-synchronisation ([`Agent::sync_ratchet`]) live in
//! the `rotation` and `resync` submodules.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hush_client::{
    AuthAlgorithm, AuthKey, ClientError, NewQueueParams, NotifierCreds, PoolConfig, PoolEvent,
    PoolEvents, RawMsg, RcvMsgBody, ServerEvent, SmpClientPool,
};
use hush_crypto::{X448Public, X448Secret, X25519Public, X25519Secret, sha256};
use hush_proto::address::{
    ConnReqUriData, ConnectionRequestUri, E2eRatchetParamsUri, ProtocolServer, QueueMode,
    ServiceScheme, SmpQueueUri,
};
use hush_proto::error::ErrorType;
use hush_proto::smp::{QueueMode as SmpQueueMode, QueueReqData};
use hush_proto::version::{VersionRange, agent_version, smp_client_version};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::envelope::{
    AGENT_VERSION, AMessage, AgentMessage, AgentMsgEnvelope, ClientMessage, ClientMsgEnvelope,
    E2E_ENC_AGENT_MSG_LEN, E2E_ENC_CONN_INFO_LEN, EnvelopeError, PrivHeader, SmpQueueInfo,
    SndQAddr,
};
use crate::ratchet::{
    CURRENT_E2E_VERSION, E2eRatchetParams, JoinerKem, Ratchet, RatchetError, RatchetVersions,
    pq_x3dh_inviter, pq_x3dh_joiner, supported_e2e_versions,
};
use crate::store::{
    ConnId, ConnMode, ConnStatus, OutboxKind, RcvQueue, SndQueue, Store, StoreError, Tx,
};

#[path = "resync.rs"]
mod resync;
#[path = "rotation.rs"]
mod rotation;

pub use crate::store::RatchetSyncState;
pub use rotation::{QueueDirection, SwitchPhase};

/// Agent settings.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The relay where this agent creates its receive queues.
    pub server: ProtocolServer,
    /// Relay connection pool settings.
    pub pool: PoolConfig,
    /// Delay before retrying a delivery after a connection error.
    pub retry_interval: Duration,
    /// Delay before retrying a delivery after `ERR QUOTA` (an `A_QCONT` from the recipient
    /// resumes it earlier).
    pub quota_retry_interval: Duration,
    /// Inviter side: reply to a joiner's confirmation at once (default). When off, the
    /// connection waits in [`ConnStatus::AwaitingApproval`] for [`Agent::allow_connection`]
    /// (the reference's CONF / allowConnection).
    pub auto_accept_confirmations: bool,
    /// Propose the sntrup761 KEM (post-quantum ratchet) on connections we join without one
    /// being offered: off by default, as the reference agent does for full invitation links
    /// (`initialPQEncryption`: the KEM key travels only in short-link data or with
    /// `pq=invitation`). A peer without PQ ignores the proposal and the connection falls back.
    pub pq_propose: bool,
    /// Accept a KEM the peer proposes (in the invitation or in the joiner's confirmation): on by
    /// default, as the reference app joins and accepts direct connections with `PQSupportOn`.
    /// Headers then grow to 2310 bytes and the largest message body shrinks (13618-byte
    /// padding instead of 15840).
    pub pq_accept: bool,
}

impl AgentConfig {
    pub fn new(server: ProtocolServer) -> AgentConfig {
        AgentConfig {
            server,
            pool: PoolConfig::default(),
            retry_interval: Duration::from_secs(2),
            quota_retry_interval: Duration::from_secs(30),
            auto_accept_confirmations: true,
            pq_propose: false,
            pq_accept: true,
        }
    }
}

/// Agent version from which PQ support shrinks the padded lengths (`pqdrSMPAgentVersion`).
const PQDR_AGENT_VERSION: u16 = 5;

/// `e2eEncAgentMsgLength v pqSupport`.
fn agent_msg_len(agent_v: u16, pq_support: bool) -> usize {
    if pq_support && agent_v >= PQDR_AGENT_VERSION {
        13618
    } else {
        E2E_ENC_AGENT_MSG_LEN
    }
}

/// `e2eEncConnInfoLength v pqSupport`.
fn conn_info_len(agent_v: u16, pq_support: bool) -> usize {
    if pq_support && agent_v >= PQDR_AGENT_VERSION {
        11106
    } else {
        E2E_ENC_CONN_INFO_LEN
    }
}

/// The invitation link's KEM params in the ratchet's form.
fn uri_kem(k: &hush_proto::address::RatchetKemParams) -> crate::ratchet::KemParams {
    use hush_proto::address::RatchetKemParams as U;
    match k {
        U::Proposed { kem_key } => crate::ratchet::KemParams::Proposed {
            key: kem_key.clone(),
        },
        U::Accepted { kem_ct, kem_key } => crate::ratchet::KemParams::Accepted {
            ct: kem_ct.clone(),
            key: kem_key.clone(),
        },
    }
}

/// Agent errors returned by commands.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("relay: {0}")]
    Relay(#[from] ClientError),
    #[error("ratchet: {0}")]
    Ratchet(#[from] RatchetError),
    #[error("envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    #[error("link: {0}")]
    Link(String),
    #[error("incompatible version: {0}")]
    Version(&'static str),
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    #[error("connection state: {0}")]
    State(&'static str),
    #[error("message too large")]
    TooLarge,
    #[error("key: {0}")]
    Key(&'static str),
    #[error("agent closed")]
    Closed,
}

/// How a received message relates to the previous one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MsgIntegrity {
    Ok,
    /// Messages `from..=to` never arrived (reference `MsgSkipped`).
    Skipped {
        from: i64,
        to: i64,
    },
    /// The previous-message hash does not match the last received message.
    BadHash,
    /// The id is not after the last received id (reference `MsgBadId`).
    BadId {
        last: i64,
    },
}

/// What the agent reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentEvent {
    /// Inviter: the joiner's confirmation arrived; the agent replies at once or, without
    /// auto-accept, after [`Agent::allow_connection`].
    Confirmation { conn: ConnId, peer_info: Vec<u8> },
    /// The connection works in both directions.
    Connected { conn: ConnId, peer_info: Vec<u8> },
    /// Someone used our contact address; accept with [`Agent::accept_contact_request`].
    ContactRequest {
        address: ConnId,
        request: i64,
        conn_info: Vec<u8>,
    },
    /// An application message. Call [`Agent::ack`] with `msg_id` when it is processed.
    Message {
        conn: ConnId,
        msg_id: i64,
        body: Vec<u8>,
        integrity: MsgIntegrity,
    },
    /// The relay accepted our message `msg_id`.
    Sent { conn: ConnId, msg_id: i64 },
    /// The peer's delivery receipt for our message `msg_id` (`hash_ok`: the hash it received
    /// is the hash we sent).
    Receipt {
        conn: ConnId,
        msg_id: i64,
        hash_ok: bool,
    },
    /// The relay permanently refused our message (it is dropped from the outbox).
    DeliveryError {
        conn: ConnId,
        msg_id: i64,
        error: String,
    },
    /// A message that was already received arrived again and was dropped.
    Duplicate { conn: ConnId },
    /// Bad input (undecryptable, malformed, unexpected); the message was dropped and no state
    /// changed.
    Error { conn: Option<ConnId>, error: String },
    /// The relay's queue subscription moved elsewhere (`END`) or the queue was deleted.
    QueueEnded { conn: ConnId },
    /// A connection to a relay is up (first connect or reconnect).
    RelayUp { server: String },
    /// A connection to a relay dropped; the pool reconnects.
    RelayDown { server: String, reason: String },
    /// Queue rotation progress (reference `SWITCH`), see [`Agent::switch_queue`].
    Switch {
        conn: ConnId,
        direction: QueueDirection,
        phase: SwitchPhase,
    },
    /// The ratchet synchronisation state changed (reference `RSYNC`); `error`: the decryption
    /// error that caused it. See [`Agent::sync_ratchet`].
    RatchetSync {
        conn: ConnId,
        state: RatchetSyncState,
        error: Option<String>,
    },
    /// The peer's `EREADY` after a re-synchronisation: the last of our message ids it had
    /// decrypted.
    EReady { conn: ConnId, last_msg_id: i64 },
}

/// Receives agent events.
pub type AgentEvents = mpsc::UnboundedReceiver<AgentEvent>;

struct Inner {
    config: AgentConfig,
    store: Mutex<Store>,
    pool: SmpClientPool,
    events: mpsc::UnboundedSender<AgentEvent>,
    workers: Mutex<HashMap<i64, Arc<Notify>>>,
    /// Messages emitted during this process's lifetime and not yet acknowledged (a relay
    /// redelivery of one of them is not emitted again).
    emitted: Mutex<HashSet<(ConnId, i64)>>,
    /// Queue rotation: the message held on a new receive queue (by relay text and recipient
    /// id) until the old queue is drained.
    held: Mutex<HashMap<(String, Vec<u8>), RawMsg>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
    /// Held by the receive loop while it handles one relay event (decrypt, store, emit, `ACK`):
    /// [`Agent::close`] waits for it, so a message already reported is also acknowledged.
    receiving: tokio::sync::Mutex<()>,
}

/// The client agent. Clone to share.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").finish_non_exhaustive()
    }
}

/// How long [`Agent::close`] waits for the message being handled (its `ACK` included).
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn to_address_mode(m: Option<SmpQueueMode>) -> Option<QueueMode> {
    m.map(|m| match m {
        SmpQueueMode::Messaging => QueueMode::Messaging,
        SmpQueueMode::Contact => QueueMode::Contact,
    })
}

fn x448_pub(der: &[u8]) -> Result<X448Public, AgentError> {
    X448Public::from_spki_der(der).map_err(|_| AgentError::Link("ratchet key is not X448".into()))
}

fn gen_x448() -> Result<X448Secret, AgentError> {
    X448Secret::generate().map_err(|_| AgentError::Key("x448"))
}

fn x448_public(k: &X448Secret) -> Result<X448Public, AgentError> {
    k.public().map_err(|_| AgentError::Key("x448"))
}

/// Outcome of processing one received message.
struct Processed {
    events: Vec<AgentEvent>,
    /// ACK at the relay now (everything but application messages).
    ack: bool,
    /// Wake the delivery task of this send queue.
    wake: Option<i64>,
}

impl Processed {
    fn ack(events: Vec<AgentEvent>) -> Processed {
        Processed {
            events,
            ack: true,
            wake: None,
        }
    }
}

impl Agent {
    /// Opens (or creates) the client database and starts the agent. Call
    /// [`Agent::subscribe_all`] to start receiving on existing connections.
    pub async fn open(
        db_path: impl AsRef<Path>,
        config: AgentConfig,
    ) -> Result<(Agent, AgentEvents), AgentError> {
        let store = Store::open(db_path)?;
        let (pool, pool_events) = SmpClientPool::tls(config.pool.clone())?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, _) = watch::channel(false);
        let agent = Agent {
            inner: Arc::new(Inner {
                config,
                store: Mutex::new(store),
                pool,
                events: tx,
                workers: Mutex::new(HashMap::new()),
                emitted: Mutex::new(HashSet::new()),
                held: Mutex::new(HashMap::new()),
                tasks: Mutex::new(Vec::new()),
                stop,
                receiving: tokio::sync::Mutex::new(()),
            }),
        };
        let a = agent.clone();
        let t = tokio::spawn(async move { a.pool_loop(pool_events).await });
        lock(&agent.inner.tasks).push(t);
        // resume deliveries that were pending at the last shutdown
        let queues = agent.with_tx(|tx| tx.all_snd_queues())?;
        for q in queues {
            agent.wake(q.snd_queue_id);
        }
        Ok((agent, rx))
    }

    /// Stops all tasks and closes relay connections. A message being handled is finished first
    /// (up to [`CLOSE_WAIT`]): one already reported as an event is also acknowledged, so the
    /// relay does not deliver it again to the next start.
    pub async fn close(&self) {
        self.inner.stop.send_replace(true);
        // The receive loop handles nothing more once `stop` is set; wait for the event it may
        // be handling (its ACK included).
        let _ = tokio::time::timeout(CLOSE_WAIT, self.inner.receiving.lock()).await;
        self.inner.pool.close().await;
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }

    fn emit(&self, e: AgentEvent) {
        let _ = self.inner.events.send(e);
    }

    fn with_tx<T>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        lock(&self.inner.store).tx(f)
    }

    fn with_tx_a<T>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, AgentError>,
    ) -> Result<T, AgentError> {
        lock(&self.inner.store).tx(f)
    }

    // -----------------------------------------------------------------------------------------
    // Queue creation

    async fn new_rcv_queue(
        &self,
        mode: SmpQueueMode,
    ) -> Result<(hush_client::NewQueue, X25519Secret), AgentError> {
        let server = &self.inner.config.server;
        let client = self.inner.pool.client(server).await?;
        let params = NewQueueParams {
            auth: AuthAlgorithm::Ed25519,
            subscribe: false,
            queue_req_data: Some(match mode {
                SmpQueueMode::Messaging => QueueReqData::Messaging(None),
                SmpQueueMode::Contact => QueueReqData::Contact(None),
            }),
            ..NewQueueParams::default()
        };
        let q = client.create_queue(params).await?;
        if q.queue_mode != Some(mode) {
            // the relay does not report queue modes (SMP < 9): the fast procedure needs them
            let _ = client.delete(&q.rcv_id, &q.rcv_key).await;
            return Err(AgentError::Unsupported(
                "relay without sender-secured queues",
            ));
        }
        Ok((q, X25519Secret::generate()))
    }

    fn rcv_queue_record(
        &self,
        conn_id: ConnId,
        q: &hush_client::NewQueue,
        e2e: &X25519Secret,
    ) -> RcvQueue {
        RcvQueue {
            conn_id,
            server: self.inner.config.server.clone(),
            rcv_id: q.rcv_id.clone(),
            snd_id: q.snd_id.clone(),
            rcv_key: q.rcv_key.clone(),
            rcv_dh_secret: q.rcv_dh_secret.clone(),
            e2e_priv: e2e.clone(),
            e2e_secret: None,
            queue_mode: to_address_mode(q.queue_mode),
            smp_client_version: crate::envelope::SMP_CLIENT_VERSION,
            notifier: None,
        }
    }

    fn queue_uri(&self, q: &hush_client::NewQueue, e2e: &X25519Secret) -> SmpQueueUri {
        SmpQueueUri {
            client_versions: smp_client_version::RANGE,
            server: self.inner.config.server.clone(),
            sender_id: q.snd_id.clone(),
            dh_public_key: e2e.public().to_spki_der(),
            queue_mode: to_address_mode(q.queue_mode),
        }
    }

    async fn subscribe_queue(&self, rq: &RcvQueue) -> Result<(), AgentError> {
        self.inner
            .pool
            .subscribe(&rq.server, &rq.rcv_id, Arc::new(rq.rcv_key.clone()))
            .await?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Commands

    /// Creates a one-time invitation; returns the connection id and the link to give the
    /// other party. `conn_info` is sent to the joiner in our confirmation.
    pub async fn create_invitation(
        &self,
        conn_info: &[u8],
    ) -> Result<(ConnId, String), AgentError> {
        let (q, e2e) = self.new_rcv_queue(SmpQueueMode::Messaging).await?;
        let (r1, r2) = (gen_x448()?, gen_x448()?);
        let link = ConnectionRequestUri::Invitation {
            data: ConnReqUriData {
                scheme: ServiceScheme::Simplex,
                agent_versions: agent_version::RANGE,
                smp_queues: vec![self.queue_uri(&q, &e2e)],
                client_data: None,
            },
            e2e: E2eRatchetParamsUri {
                versions: supported_e2e_versions(),
                key1: x448_public(&r1)?.to_spki_der(),
                key2: x448_public(&r2)?.to_spki_der(),
                kem: None,
            },
        };
        let rq = self.with_tx(|tx| {
            let conn =
                tx.create_connection(ConnMode::Invitation, ConnStatus::Created, AGENT_VERSION)?;
            tx.set_x3dh_keys(conn, &r1, &r2)?;
            tx.set_own_info(conn, conn_info)?;
            let rq = self.rcv_queue_record(conn, &q, &e2e);
            tx.add_rcv_queue(&rq)?;
            Ok(rq)
        })?;
        self.subscribe_queue(&rq).await?;
        Ok((rq.conn_id, link.to_text()))
    }

    /// Creates a contact address (a contact-mode queue anyone can send requests to).
    pub async fn create_contact_address(&self) -> Result<(ConnId, String), AgentError> {
        let (q, e2e) = self.new_rcv_queue(SmpQueueMode::Contact).await?;
        let link = ConnectionRequestUri::Contact {
            data: ConnReqUriData {
                scheme: ServiceScheme::Simplex,
                agent_versions: agent_version::RANGE,
                smp_queues: vec![self.queue_uri(&q, &e2e)],
                client_data: None,
            },
        };
        let rq = self.with_tx(|tx| {
            let conn =
                tx.create_connection(ConnMode::Address, ConnStatus::Address, AGENT_VERSION)?;
            let rq = self.rcv_queue_record(conn, &q, &e2e);
            tx.add_rcv_queue(&rq)?;
            Ok(rq)
        })?;
        self.subscribe_queue(&rq).await?;
        Ok((rq.conn_id, link.to_text()))
    }

    /// The contact addresses in the database.
    pub fn contact_addresses(&self) -> Result<Vec<ConnId>, AgentError> {
        Ok(self.with_tx(|tx| {
            let mut out = Vec::new();
            for id in tx.connection_ids()? {
                if tx.connection(id)?.mode == ConnMode::Address {
                    out.push(id);
                }
            }
            Ok(out)
        })?)
    }

    /// The link of a contact address (rebuilt from its queue).
    pub fn contact_address_link(&self, conn: ConnId) -> Result<String, AgentError> {
        let (c, q) = self.with_tx(|tx| Ok((tx.connection(conn)?, tx.rcv_queues_of(conn)?)))?;
        let q = q.into_iter().next().ok_or(AgentError::State("no queue"))?;
        if c.mode != ConnMode::Address {
            return Err(AgentError::State("not a contact address"));
        }
        Ok(ConnectionRequestUri::Contact {
            data: ConnReqUriData {
                scheme: ServiceScheme::Simplex,
                agent_versions: agent_version::RANGE,
                smp_queues: vec![SmpQueueUri {
                    client_versions: smp_client_version::RANGE,
                    server: q.server,
                    sender_id: q.snd_id,
                    dh_public_key: q.e2e_priv.public().to_spki_der(),
                    queue_mode: q.queue_mode,
                }],
                client_data: None,
            },
        }
        .to_text())
    }

    /// Joins a one-time invitation or sends a contact request to a contact address.
    /// `conn_info` (e.g. a profile) is delivered to the other party.
    pub async fn join(&self, link: &str, conn_info: &[u8]) -> Result<ConnId, AgentError> {
        if crate::shortlink::is_short_link(link) {
            return self.join_short_link(link, conn_info, conn_info).await;
        }
        match ConnectionRequestUri::parse(link).map_err(|e| AgentError::Link(e.to_string()))? {
            ConnectionRequestUri::Invitation { data, e2e } => {
                self.join_invitation(&data, &e2e, conn_info).await
            }
            ConnectionRequestUri::Contact { data } => {
                self.join_contact(&data, conn_info, conn_info).await
            }
        }
    }

    /// Like [`Agent::join`], with different conn info for a contact address: `request_info`
    /// goes in the contact request (the chat app's `x.contact`), `conn_info` in our
    /// confirmation once the address owner accepts (its `x.info`), as the reference chat
    /// client does. For a one-time invitation `conn_info` is used and `request_info` ignored.
    pub async fn join_with_request(
        &self,
        link: &str,
        request_info: &[u8],
        conn_info: &[u8],
    ) -> Result<ConnId, AgentError> {
        if crate::shortlink::is_short_link(link) {
            return self.join_short_link(link, request_info, conn_info).await;
        }
        match ConnectionRequestUri::parse(link).map_err(|e| AgentError::Link(e.to_string()))? {
            ConnectionRequestUri::Invitation { data, e2e } => {
                self.join_invitation(&data, &e2e, conn_info).await
            }
            ConnectionRequestUri::Contact { data } => {
                self.join_contact(&data, request_info, conn_info).await
            }
        }
    }

    async fn join_invitation(
        &self,
        data: &ConnReqUriData,
        e2e: &E2eRatchetParamsUri,
        conn_info: &[u8],
    ) -> Result<ConnId, AgentError> {
        self.join_invitation_keyed(data, e2e, conn_info, None).await
    }

    /// `lkey`: the sender key that already secured the queue with `LKEY` (a short link was
    /// read), so no `SKEY` is sent (reference `newSndQueue` with a key: status Secured).
    async fn join_invitation_keyed(
        &self,
        data: &ConnReqUriData,
        e2e: &E2eRatchetParamsUri,
        conn_info: &[u8],
        lkey: Option<AuthKey>,
    ) -> Result<ConnId, AgentError> {
        let agent_v = link_agent_version(data)?;
        let e2e_v = e2e
            .versions
            .compatible_version(&supported_e2e_versions())
            .ok_or(AgentError::Version("e2e"))?;
        let (queue, smp_v) = link_queue(data)?;
        if queue.queue_mode != Some(QueueMode::Messaging) || smp_v < 3 {
            return Err(AgentError::Unsupported(
                "invitation queue is not sender-securable (legacy procedure)",
            ));
        }
        let (r1, r2) = (x448_pub(&e2e.key1)?, x448_pub(&e2e.key2)?);
        let queue_dh = X25519Public::from_spki_der(&queue.dh_public_key)
            .map_err(|_| AgentError::Link("queue dh key".into()))?;
        // ratchet (joiner side): accept the invitation's KEM, or propose one (replyKEM_)
        let (s1, s2, dhrs) = (gen_x448()?, gen_x448()?, gen_x448()?);
        let inv_kem = e2e.kem.as_ref().map(uri_kem);
        let pq = if inv_kem.is_some() {
            self.inner.config.pq_accept
        } else {
            self.inner.config.pq_propose
        };
        let kem = JoinerKem::reply(e2e_v, inv_kem.as_ref(), pq)?;
        let conf_kem = kem.params();
        let (params, own_kem) = pq_x3dh_joiner(&s1, &s2, &r1, &r2, kem)?;
        let mut ratchet = Ratchet::init_joiner_pq(
            RatchetVersions {
                current: e2e_v,
                max_supported: CURRENT_E2E_VERSION,
            },
            &r2,
            dhrs,
            &params,
            own_kem,
        )?;
        // send queue to the inviter
        let secured = lkey.is_some();
        let snd_key = match lkey {
            Some(k) => k,
            None => AuthKey::generate(AuthAlgorithm::Ed25519)?,
        };
        let snd_e2e = X25519Secret::generate();
        let snd_secret = snd_e2e.dh(&queue_dh);
        // our reply queue
        let (q, e2e_rcv) = self.new_rcv_queue(SmpQueueMode::Messaging).await?;
        let reply = SmpQueueInfo {
            client_version: smp_v,
            server: self.inner.config.server.clone(),
            sender_id: q.snd_id.clone(),
            dh_public_key: e2e_rcv.public(),
            queue_mode: Some(QueueMode::Messaging),
        };
        let plain = AgentMessage::ConnInfoReply {
            queues: vec![reply],
            conn_info: conn_info.to_vec(),
        }
        .encode()?;
        let enc = ratchet
            .encrypt(&plain, conn_info_len(agent_v, ratchet.pq_support()))
            .map_err(|e| match e {
                RatchetError::TooLarge => AgentError::TooLarge,
                e => e.into(),
            })?;
        let env = AgentMsgEnvelope::Confirmation {
            agent_version: agent_v,
            e2e: Some(E2eRatchetParams {
                version: e2e_v,
                key1: x448_public(&s1)?,
                key2: x448_public(&s2)?,
                kem: conf_kem,
            }),
            enc_conn_info: enc,
        }
        .encode()?;
        let sealed = ClientMsgEnvelope::seal(
            &snd_secret,
            smp_v,
            Some(snd_e2e.public()),
            &ClientMessage {
                header: PrivHeader::Empty,
                body: env,
            },
        )?
        .encode();
        let (rq, sq_id) = self.with_tx(|tx| {
            let conn = tx.create_connection(ConnMode::Invitation, ConnStatus::Joined, agent_v)?;
            tx.set_ratchet(conn, &ratchet)?;
            tx.set_own_info(conn, conn_info)?;
            let rq = self.rcv_queue_record(conn, &q, &e2e_rcv);
            tx.add_rcv_queue(&rq)?;
            let sq_id = tx.add_snd_queue(&SndQueue {
                snd_queue_id: 0,
                conn_id: conn,
                server: queue.server.clone(),
                snd_id: queue.sender_id.clone(),
                snd_key: snd_key.clone(),
                e2e_priv: snd_e2e.clone(),
                e2e_secret: snd_secret.clone(),
                secured,
                smp_client_version: smp_v,
            })?;
            tx.push_outbox(conn, sq_id, 1, OutboxKind::Confirmation, &sealed)?;
            tx.set_last_snd(conn, 1, &sha256(&plain))?;
            Ok((rq, sq_id))
        })?;
        self.subscribe_queue(&rq).await?;
        self.wake(sq_id);
        Ok(rq.conn_id)
    }

    async fn join_contact(
        &self,
        data: &ConnReqUriData,
        request_info: &[u8],
        conn_info: &[u8],
    ) -> Result<ConnId, AgentError> {
        let agent_v = link_agent_version(data)?;
        let (queue, smp_v) = link_queue(data)?;
        let queue_dh = X25519Public::from_spki_der(&queue.dh_public_key)
            .map_err(|_| AgentError::Link("queue dh key".into()))?;
        let (conn, invitation) = self.create_invitation(conn_info).await?;
        let eph = X25519Secret::generate();
        let env = AgentMsgEnvelope::Invitation {
            agent_version: agent_v,
            conn_req: invitation,
            conn_info: request_info.to_vec(),
        }
        .encode()?;
        let sealed = ClientMsgEnvelope::seal(
            &eph.dh(&queue_dh),
            smp_v,
            Some(eph.public()),
            &ClientMessage {
                header: PrivHeader::Empty,
                body: env,
            },
        )?
        .encode();
        let r = async {
            let client = self.inner.pool.client(&queue.server).await?;
            client.send(&queue.sender_id, None, true, &sealed).await
        }
        .await;
        if let Err(e) = r {
            let _ = self.delete_connection(conn).await;
            return Err(e.into());
        }
        Ok(conn)
    }

    /// Accepts a contact request: joins the requester's invitation. Returns the new
    /// connection.
    pub async fn accept_contact_request(
        &self,
        request: i64,
        conn_info: &[u8],
    ) -> Result<ConnId, AgentError> {
        let req = self.with_tx(|tx| tx.contact_request(request))?;
        let conn = self.join(&req.invitation, conn_info).await?;
        self.with_tx(|tx| tx.delete_contact_request(request))?;
        Ok(conn)
    }

    /// Approves a joiner's confirmation ([`AgentEvent::Confirmation`]) when
    /// [`AgentConfig::auto_accept_confirmations`] is off (reference `allowConnection`):
    /// secures the joiner's queue and sends our confirmation with `conn_info` (or the info
    /// given to [`Agent::create_invitation`]). [`AgentEvent::Connected`] follows once it is sent.
    pub fn allow_connection(
        &self,
        conn: ConnId,
        conn_info: Option<&[u8]>,
    ) -> Result<(), AgentError> {
        if *self.inner.stop.borrow() {
            return Err(AgentError::Closed);
        }
        let sq_id = self.with_tx_a(|tx| {
            if tx.connection(conn)?.status != ConnStatus::AwaitingApproval {
                return Err(AgentError::State("no confirmation awaiting approval"));
            }
            Self::reply_confirmation(tx, conn, conn_info)
        })?;
        self.wake(sq_id);
        Ok(())
    }

    /// Queues an application message; returns its message id. [`AgentEvent::Sent`] follows
    /// once the relay accepted it.
    pub fn send(&self, conn: ConnId, body: &[u8]) -> Result<i64, AgentError> {
        if *self.inner.stop.borrow() {
            return Err(AgentError::Closed);
        }
        let (msg_id, sq_id) = self.with_tx_a(|tx| {
            if tx.ratchet_sync(conn)?.send_prohibited() {
                return Err(AgentError::State(
                    "ratchet is not synchronized (see sync_ratchet)",
                ));
            }
            Self::enqueue(tx, conn, AMessage::AMsg(body.to_vec()), OutboxKind::Message)
        })?;
        self.wake(sq_id);
        Ok(msg_id)
    }

    /// Ratchet-encrypts an agent message with the next message id and queues it on the
    /// connection's send queue; returns (message id, send queue id).
    fn enqueue(
        tx: &Tx<'_>,
        conn: ConnId,
        msg: AMessage,
        kind: OutboxKind,
    ) -> Result<(i64, i64), AgentError> {
        let c = tx.connection(conn)?;
        if !matches!(c.status, ConnStatus::Connected | ConnStatus::Confirmed) {
            return Err(AgentError::State("connection is not connected"));
        }
        // (the newest active queue: after a switch's QUSE, the new one)
        let sq = tx
            .current_snd_queue(conn)?
            .ok_or(AgentError::State("no send queue"))?;
        let mut ratchet = c.ratchet.ok_or(AgentError::State("no ratchet"))?;
        let msg_id = c.last_snd_id + 1;
        let plain = AgentMessage::Message {
            snd_msg_id: msg_id,
            prev_msg_hash: c.last_snd_hash,
            msg,
        }
        .encode()?;
        let enc = ratchet
            .encrypt(&plain, agent_msg_len(c.agent_version, ratchet.pq_support()))
            .map_err(|e| match e {
                RatchetError::TooLarge => AgentError::TooLarge,
                e => e.into(),
            })?;
        let env = AgentMsgEnvelope::Msg {
            agent_version: AGENT_VERSION,
            enc_agent_message: enc,
        }
        .encode()?;
        let sealed = ClientMsgEnvelope::seal(
            &sq.e2e_secret,
            sq.smp_client_version,
            None,
            &ClientMessage {
                header: PrivHeader::Empty,
                body: env,
            },
        )?
        .encode();
        tx.push_outbox(conn, sq.snd_queue_id, msg_id, kind, &sealed)?;
        tx.set_ratchet(conn, &ratchet)?;
        let hash = sha256(&plain);
        tx.set_last_snd(conn, msg_id, &hash)?;
        if kind == OutboxKind::Message {
            tx.add_snd_msg(conn, msg_id, &hash)?;
        }
        Ok((msg_id, sq.snd_queue_id))
    }

    /// Acknowledges a received message (it is then deleted at the relay, which delivers the
    /// next one).
    pub async fn ack(&self, conn: ConnId, msg_id: i64) -> Result<(), AgentError> {
        let rec = self
            .with_tx(|tx| {
                let r = tx.rcv_msg(conn, msg_id)?;
                if r.is_some() {
                    tx.ack_rcv_msg(conn, msg_id)?;
                }
                Ok(r)
            })?
            .ok_or(AgentError::State("no such received message"))?;
        lock(&self.inner.emitted).remove(&(conn, msg_id));
        if rec.acked {
            return Ok(());
        }
        self.relay_ack(&rec.server, &rec.rcv_id, &rec.server_msg_id)
            .await
    }

    /// Like [`Agent::ack`], and sends the peer a delivery receipt (`A_RCVD`) with `info`.
    pub async fn ack_with_receipt(
        &self,
        conn: ConnId,
        msg_id: i64,
        info: &[u8],
    ) -> Result<(), AgentError> {
        let sq = self.with_tx_a(|tx| {
            if tx.ratchet_sync(conn)?.send_prohibited() {
                return Err(AgentError::State(
                    "ratchet is not synchronized (see sync_ratchet)",
                ));
            }
            let rec = tx
                .rcv_msg(conn, msg_id)?
                .ok_or(AgentError::State("no such received message"))?;
            let msg_hash = rec
                .msg_hash
                .ok_or(AgentError::State("no hash for this message"))?;
            let receipt = crate::envelope::MsgReceipt {
                agent_msg_id: msg_id,
                msg_hash,
                info: info.to_vec(),
            };
            Self::enqueue(
                tx,
                conn,
                AMessage::ARcvd(vec![receipt]),
                OutboxKind::Control,
            )
            .map(|(_, sq)| sq)
        })?;
        self.wake(sq);
        self.ack(conn, msg_id).await
    }

    /// ACK at the relay and process the next message it returns.
    async fn relay_ack(
        &self,
        server: &ProtocolServer,
        rcv_id: &[u8],
        server_msg_id: &[u8],
    ) -> Result<(), AgentError> {
        let key = self
            .with_tx(|tx| tx.rcv_queue(server, rcv_id))?
            .ok_or(AgentError::State("queue gone"))?
            .rcv_key;
        let client = self.inner.pool.client(server).await?;
        match client.ack(rcv_id, &key, server_msg_id).await {
            Ok(Some(next)) => {
                // The ACK's answer is the next message: process it (iteratively).
                let mut next = Some(next);
                while let Some(m) = next.take() {
                    next = Box::pin(self.handle_msg(server, rcv_id, m)).await;
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(ClientError::Smp(ErrorType::NoMsg)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a connection: its receive queues at the relay (`DEL`) and all local state.
    pub async fn delete_connection(&self, conn: ConnId) -> Result<(), AgentError> {
        let queues = self.with_tx(|tx| tx.rcv_queues_of(conn))?;
        for q in &queues {
            self.inner.pool.forget_subscription(&q.server, &q.rcv_id);
            if let Ok(c) = self.inner.pool.client(&q.server).await {
                let _ = c.delete(&q.rcv_id, &q.rcv_key).await;
            }
        }
        let sqs = self.with_tx(|tx| {
            let sqs = tx.snd_queues_of(conn)?;
            tx.delete_connection(conn)?;
            Ok(sqs)
        })?;
        for sq in sqs {
            if let Some(n) = lock(&self.inner.workers).get(&sq.snd_queue_id) {
                n.notify_one();
            }
        }
        Ok(())
    }

    /// Creates notifier credentials (`NKEY`) for every receive queue of a connection and stores
    /// them; returns (relay, credentials) pairs to register with a notification server.
    pub async fn enable_notifications(
        &self,
        conn: ConnId,
    ) -> Result<Vec<(ProtocolServer, NotifierCreds)>, AgentError> {
        let queues = self.with_tx(|tx| tx.rcv_queues_of(conn))?;
        let mut out = Vec::new();
        for q in queues {
            let client = self.inner.pool.client(&q.server).await?;
            let creds = client
                .enable_notifications(&q.rcv_id, &q.rcv_key, AuthAlgorithm::Ed25519)
                .await?;
            self.with_tx(|tx| tx.set_rcv_notifier(&q.server, &q.rcv_id, Some(&creds)))?;
            out.push((q.server, creds));
        }
        Ok(out)
    }

    /// Removes the notifier credentials of a connection's receive queues (`NDEL`).
    pub async fn disable_notifications(&self, conn: ConnId) -> Result<(), AgentError> {
        let queues = self.with_tx(|tx| tx.rcv_queues_of(conn))?;
        for q in queues {
            if q.notifier.is_none() {
                continue;
            }
            let client = self.inner.pool.client(&q.server).await?;
            client.disable_notifications(&q.rcv_id, &q.rcv_key).await?;
            self.with_tx(|tx| tx.set_rcv_notifier(&q.server, &q.rcv_id, None))?;
        }
        Ok(())
    }

    /// Subscribes every receive queue (after [`Agent::open`]); returns how many succeeded.
    /// Failures are reported as [`AgentEvent::Error`]; the pool keeps retrying those that
    /// failed because the relay was unreachable.
    pub async fn subscribe_all(&self) -> Result<usize, AgentError> {
        let queues = self.with_tx(|tx| tx.all_rcv_queues())?;
        let mut ok = 0;
        for q in &queues {
            match self.subscribe_queue(q).await {
                Ok(()) => ok += 1,
                Err(e) => self.emit(AgentEvent::Error {
                    conn: Some(q.conn_id),
                    error: format!("subscribe: {e}"),
                }),
            }
        }
        self.resume_switches().await;
        Ok(ok)
    }

    /// Subscribes the receive queues of the given connections only (e.g. an always-connected
    /// receiver that leaves push-notified connections to the device). Unknown ids are skipped.
    /// Returns how many queues were subscribed; failures are reported as events.
    pub async fn subscribe(&self, conns: &[ConnId]) -> Result<usize, AgentError> {
        let queues = self.with_tx(|tx| tx.all_rcv_queues())?;
        let mut ok = 0;
        for q in queues.iter().filter(|q| conns.contains(&q.conn_id)) {
            match self.subscribe_queue(q).await {
                Ok(()) => ok += 1,
                Err(e) => self.emit(AgentEvent::Error {
                    conn: Some(q.conn_id),
                    error: format!("subscribe: {e}"),
                }),
            }
        }
        Ok(ok)
    }

    /// Connection ids in the database.
    pub fn connections(&self) -> Result<Vec<ConnId>, AgentError> {
        Ok(self.with_tx(|tx| tx.connection_ids())?)
    }

    /// A connection's status.
    pub fn connection_status(&self, conn: ConnId) -> Result<ConnStatus, AgentError> {
        Ok(self.with_tx(|tx| tx.connection(conn))?.status)
    }

    /// Post-quantum state of a connection's ratchet: (PQ support — large headers, smaller
    /// message limit; PQ encryption — both current chains include a KEM secret).
    pub fn connection_pq(&self, conn: ConnId) -> Result<(bool, bool), AgentError> {
        let r = self
            .with_tx(|tx| tx.connection(conn))?
            .ratchet
            .ok_or(AgentError::State("no ratchet"))?;
        Ok((r.pq_support(), r.pq_chains() == (true, true)))
    }

    /// Messages waiting in the outbox (all connections).
    pub fn pending_sends(&self) -> Result<i64, AgentError> {
        Ok(self.with_tx(|tx| tx.outbox_len())?)
    }

    // -----------------------------------------------------------------------------------------
    // Delivery

    fn wake(&self, snd_queue_id: i64) {
        if *self.inner.stop.borrow() {
            return;
        }
        let mut workers = lock(&self.inner.workers);
        if let Some(n) = workers.get(&snd_queue_id) {
            n.notify_one();
            return;
        }
        let n = Arc::new(Notify::new());
        n.notify_one();
        workers.insert(snd_queue_id, n.clone());
        let a = self.clone();
        let t = tokio::spawn(async move { a.delivery_loop(snd_queue_id, n).await });
        lock(&self.inner.tasks).push(t);
    }

    async fn delivery_loop(&self, sq_id: i64, notify: Arc<Notify>) {
        let mut stop = self.inner.stop.subscribe();
        loop {
            if *stop.borrow() {
                return;
            }
            // (the send queue is read first: once it is deleted the task ends)
            let head = self.with_tx(|tx| {
                let sq = tx.snd_queue(sq_id)?;
                Ok(tx.outbox_head(sq_id)?.map(|h| (h, sq)))
            });
            let (entry, sq) = match head {
                Ok(Some(x)) => x,
                Ok(None) => {
                    tokio::select! {
                        _ = notify.notified() => continue,
                        _ = stop.changed() => return,
                    }
                }
                Err(StoreError::NotFound(_)) => {
                    // queue deleted
                    lock(&self.inner.workers).remove(&sq_id);
                    return;
                }
                Err(e) => {
                    self.emit(AgentEvent::Error {
                        conn: None,
                        error: format!("outbox: {e}"),
                    });
                    tokio::time::sleep(self.inner.config.retry_interval).await;
                    continue;
                }
            };
            // queue rotation: a new send queue starts after the old one's outbox is empty
            if let Ok(true) = self.with_tx(|tx| Self::replaced_queue_busy(tx, sq_id)) {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    _ = stop.changed() => return,
                }
            }
            // Control messages (receipts, QCONT) are sent without the notification flag, as
            // the reference's (MsgFlags notification = False): they never wake a phone.
            let ntf_flag = entry.kind != OutboxKind::Control;
            match self.deliver(&sq, &entry.body, ntf_flag).await {
                Ok(()) => {
                    let events = self.with_tx(|tx| {
                        tx.delete_outbox(entry.outbox_id)?;
                        let mut ev = Vec::new();
                        Self::after_sent(tx, &sq, &mut ev)?;
                        match entry.kind {
                            OutboxKind::Message => ev.push(AgentEvent::Sent {
                                conn: entry.conn_id,
                                msg_id: entry.msg_id,
                            }),
                            OutboxKind::Control => {}
                            OutboxKind::Confirmation => {
                                let c = tx.connection(entry.conn_id)?;
                                if c.status == ConnStatus::Confirmed {
                                    tx.set_status(entry.conn_id, ConnStatus::Connected)?;
                                    ev.push(AgentEvent::Connected {
                                        conn: entry.conn_id,
                                        peer_info: c.peer_info.unwrap_or_default(),
                                    });
                                }
                            }
                        }
                        Ok(ev)
                    });
                    match events {
                        Ok(ev) => ev.into_iter().for_each(|e| self.emit(e)),
                        Err(e) => self.emit(AgentEvent::Error {
                            conn: Some(entry.conn_id),
                            error: format!("outbox: {e}"),
                        }),
                    }
                }
                Err(ClientError::Smp(ErrorType::Quota)) => {
                    // wait for the recipient's A_QCONT (or retry on a timer)
                    tokio::select! {
                        _ = tokio::time::sleep(self.inner.config.quota_retry_interval) => {}
                        _ = notify.notified() => {}
                        _ = stop.changed() => return,
                    }
                }
                Err(e) if e.is_permanent() => {
                    tracing::debug!(error = %e, "delivery refused by the relay");
                    // dropped from the outbox first, so the event describes the state
                    let _ = self.with_tx(|tx| tx.delete_outbox(entry.outbox_id));
                    // (a control message's failure is reported with its agent message id too)
                    self.emit(AgentEvent::DeliveryError {
                        conn: entry.conn_id,
                        msg_id: entry.msg_id,
                        error: e.to_string(),
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "delivery failed, will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(self.inner.config.retry_interval) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }

    /// `SKEY` (once) then `SEND` signed with the sender key; `notify`: the SEND notification
    /// flag (the relay sends NMSG to the queue's notifier).
    async fn deliver(&self, sq: &SndQueue, body: &[u8], notify: bool) -> Result<(), ClientError> {
        let client = self.inner.pool.client(&sq.server).await?;
        if !sq.secured {
            client.secure_sender(&sq.snd_id, &sq.snd_key).await?;
            let _ = self.with_tx(|tx| tx.set_snd_secured(sq.snd_queue_id));
        }
        client
            .send(&sq.snd_id, Some(&sq.snd_key), notify, body)
            .await
    }

    // -----------------------------------------------------------------------------------------
    // Receiving

    async fn pool_loop(&self, mut events: PoolEvents) {
        while let Some(ev) = events.recv().await {
            let _receiving = self.inner.receiving.lock().await;
            if *self.inner.stop.borrow() {
                // closing: not handled (a message is delivered again to the next start)
                break;
            }
            match ev {
                PoolEvent::Event { server, event } => match event {
                    ServerEvent::Message { rcv_id, msg } => {
                        let mut next = Some(msg);
                        while let Some(m) = next.take() {
                            next = self.handle_msg(&server, &rcv_id, m).await;
                        }
                    }
                    // an ACK that timed out but was executed: its answer is the next message
                    ServerEvent::LateResponse {
                        entity_id,
                        response: Ok(hush_proto::smp::BrokerMsg::Msg { msg_id, body }),
                        ..
                    } => {
                        let mut next = Some(RawMsg {
                            msg_id: msg_id.into_vec(),
                            enc_body: body,
                        });
                        while let Some(m) = next.take() {
                            next = self.handle_msg(&server, &entity_id, m).await;
                        }
                    }
                    ServerEvent::End { entity_id } | ServerEvent::Deleted { entity_id } => {
                        if let Ok(Some(q)) = self.with_tx(|tx| tx.rcv_queue(&server, &entity_id)) {
                            self.emit(AgentEvent::QueueEnded { conn: q.conn_id });
                        }
                    }
                    _ => {}
                },
                PoolEvent::Connected { server } => self.emit(AgentEvent::RelayUp {
                    server: server.to_text(),
                }),
                PoolEvent::Disconnected { server, reason } => self.emit(AgentEvent::RelayDown {
                    server: server.to_text(),
                    reason: reason.to_string(),
                }),
                PoolEvent::ConnectFailed { .. } | PoolEvent::Resubscribed { .. } => {}
            }
        }
    }

    /// Processes one `MSG`; returns the next message if the ACK sent here returned one.
    async fn handle_msg(
        &self,
        server: &ProtocolServer,
        rcv_id: &[u8],
        raw: RawMsg,
    ) -> Option<RawMsg> {
        let q = match self.with_tx(|tx| tx.rcv_queue(server, rcv_id)) {
            Ok(Some(q)) => q,
            Ok(None) => return None, // not ours (deleted)
            Err(e) => {
                self.emit(AgentEvent::Error {
                    conn: None,
                    error: format!("store: {e}"),
                });
                return None;
            }
        };
        let conn = q.conn_id;
        let rcv_key = q.rcv_key.clone();
        let ack_now = |a: &Agent, id: Vec<u8>| {
            let a = a.clone();
            let server = server.clone();
            let rcv_id = rcv_id.to_vec();
            let key = rcv_key.clone();
            async move {
                let client = a.inner.pool.client(&server).await.ok()?;
                client.ack(&rcv_id, &key, &id).await.ok().flatten()
            }
        };
        // queue rotation: a message on a new queue waits until the old queue is drained
        let raw = match self.hold_for_switch(&q, raw) {
            Ok(Some(raw)) => raw,
            Ok(None) => return None,
            Err(e) => {
                self.emit(AgentEvent::Error {
                    conn: Some(conn),
                    error: format!("store: {e}"),
                });
                return None;
            }
        };
        let m = match raw.decrypt(&q.rcv_dh_secret) {
            Ok(m) => m,
            Err(e) => {
                self.emit(AgentEvent::Error {
                    conn: Some(conn),
                    error: format!("relay layer: {e}"),
                });
                return ack_now(self, raw.msg_id).await;
            }
        };
        let body = match m.body {
            RcvMsgBody::Message { body, .. } => body,
            RcvMsgBody::Quota { .. } => {
                // the queue was full and is now drained: tell the sender to continue
                let addr = SndQAddr {
                    server: q.server.clone(),
                    sender_id: q.snd_id.clone(),
                };
                match self.with_tx_a(|tx| {
                    let c = tx.connection(conn)?;
                    // only duplex connections have someone to tell (not contact addresses)
                    if !matches!(c.status, ConnStatus::Connected | ConnStatus::Confirmed) {
                        return Ok(None);
                    }
                    Self::enqueue(tx, conn, AMessage::QCont(addr), OutboxKind::Control).map(Some)
                }) {
                    Ok(Some((_, sq))) => self.wake(sq),
                    Ok(None) => {}
                    Err(e) => self.emit(AgentEvent::Error {
                        conn: Some(conn),
                        error: format!("QCONT: {e}"),
                    }),
                }
                return ack_now(self, m.msg_id).await;
            }
        };
        let enc_hash = sha256(&body);
        // relay redelivery / repeated SEND?
        match self.with_tx(|tx| tx.rcv_msg_by_hash(conn, &enc_hash)) {
            Ok(Some(rec)) => {
                if rec.acked || rec.body.is_none() {
                    self.emit(AgentEvent::Duplicate { conn });
                    return ack_now(self, m.msg_id).await;
                }
                // known, not yet acknowledged by the application
                let fresh = lock(&self.inner.emitted).insert((conn, rec.msg_id));
                if rec.server_msg_id != m.msg_id {
                    // a repeated SEND of an unacknowledged message: drop this copy
                    let _ = self.with_tx(|tx| {
                        tx.add_rcv_msg(
                            conn,
                            &enc_hash,
                            rec.msg_id,
                            server,
                            rcv_id,
                            &m.msg_id,
                            rec.body.as_deref(),
                            false,
                        )
                    });
                }
                if fresh && let Some(b) = rec.body {
                    self.emit(AgentEvent::Message {
                        conn,
                        msg_id: rec.msg_id,
                        body: b,
                        integrity: MsgIntegrity::Ok,
                    });
                }
                return None;
            }
            Ok(None) => {}
            Err(e) => {
                self.emit(AgentEvent::Error {
                    conn: Some(conn),
                    error: format!("store: {e}"),
                });
                return None;
            }
        }
        let res = self.with_tx_a(|tx| self.process(tx, &q, &body, &enc_hash, &m.msg_id));
        match res {
            Ok(p) => {
                let mut secure = false;
                for e in p.events {
                    if let AgentEvent::Message { conn, msg_id, .. } = &e {
                        lock(&self.inner.emitted).insert((*conn, *msg_id));
                    }
                    secure |= matches!(
                        e,
                        AgentEvent::Switch {
                            direction: QueueDirection::Rcv,
                            phase: SwitchPhase::Confirmed,
                            ..
                        }
                    );
                    self.emit(e);
                }
                if secure {
                    // QKEY: KEY the new queue, then QUSE (after the transaction)
                    let a = self.clone();
                    let t = tokio::spawn(async move {
                        if let Err(e) = a.secure_switched_queues(conn).await {
                            a.emit(AgentEvent::Error {
                                conn: Some(conn),
                                error: format!("switch: {e}"),
                            });
                        }
                    });
                    lock(&self.inner.tasks).push(t);
                }
                if let Some(sq) = p.wake {
                    self.wake(sq);
                }
                if p.ack {
                    return ack_now(self, m.msg_id).await;
                }
                None
            }
            Err(AgentError::Store(e)) => {
                tracing::warn!(error = %e, "client database error while receiving");
                // a local failure: do not ACK, the relay redelivers the message later
                self.emit(AgentEvent::Error {
                    conn: Some(conn),
                    error: format!("store: {e}"),
                });
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "received message dropped");
                let duplicate = matches!(
                    e,
                    AgentError::Ratchet(RatchetError::Duplicate | RatchetError::Earlier(_))
                );
                self.emit(if duplicate {
                    AgentEvent::Duplicate { conn }
                } else {
                    AgentEvent::Error {
                        conn: Some(conn),
                        error: e.to_string(),
                    }
                });
                if let AgentError::Ratchet(re) = &e {
                    self.sync_on_decrypt_error(conn, re);
                }
                ack_now(self, m.msg_id).await
            }
        }
    }

    /// Decrypts and applies one received `SEND` body (inside one transaction).
    fn process(
        &self,
        tx: &Tx<'_>,
        q: &RcvQueue,
        body: &[u8],
        enc_hash: &[u8],
        server_msg_id: &[u8],
    ) -> Result<Processed, AgentError> {
        let conn = q.conn_id;
        let env = ClientMsgEnvelope::decode(body)?;
        let record = |msg_id: i64, body: Option<&[u8]>, acked: bool| {
            tx.add_rcv_msg(
                conn,
                enc_hash,
                msg_id,
                &q.server,
                &q.rcv_id,
                server_msg_id,
                body,
                acked,
            )
        };
        match (&q.e2e_secret, env.e2e_dh_key) {
            (None, Some(k)) => {
                let secret = q.e2e_priv.dh(&k);
                let cm = env.open(&secret)?;
                let aenv = AgentMsgEnvelope::decode(&cm.body)?;
                let c = tx.connection(conn)?;
                let p = match (c.mode, aenv) {
                    (
                        ConnMode::Invitation,
                        AgentMsgEnvelope::Confirmation {
                            agent_version,
                            e2e,
                            enc_conn_info,
                        },
                    ) => {
                        if !matches!(cm.header, PrivHeader::Empty) {
                            return Err(AgentError::Unsupported("legacy confirmation (K header)"));
                        }
                        let p = self.confirmation(tx, c, agent_version, e2e, &enc_conn_info)?;
                        tx.set_rcv_e2e_secret(&q.server, &q.rcv_id, &secret)?;
                        p
                    }
                    (
                        ConnMode::Address,
                        AgentMsgEnvelope::Invitation {
                            conn_req,
                            conn_info,
                            ..
                        },
                    ) => {
                        let request = tx.add_contact_request(conn, &conn_req, &conn_info)?;
                        Processed::ack(vec![AgentEvent::ContactRequest {
                            address: conn,
                            request,
                            conn_info,
                        }])
                    }
                    _ => return Err(AgentError::State("unexpected handshake message")),
                };
                record(0, None, true)?;
                Ok(p)
            }
            (Some(secret), None) => {
                let cm = env.open(secret)?;
                let (agent_version, enc_agent_message) = match AgentMsgEnvelope::decode(&cm.body)? {
                    AgentMsgEnvelope::Msg {
                        agent_version,
                        enc_agent_message,
                    } => (agent_version, enc_agent_message),
                    AgentMsgEnvelope::RatchetKey { e2e, .. } => {
                        let p = Self::on_ratchet_key(tx, conn, e2e)?;
                        record(0, None, true)?;
                        return Ok(p);
                    }
                    _ => {
                        return Err(AgentError::State(
                            "unexpected envelope on an established queue",
                        ));
                    }
                };
                let c = tx.connection(conn)?;
                let mut ratchet = c.ratchet.ok_or(AgentError::State("no ratchet"))?;
                let could_send = ratchet.can_send();
                let plain = ratchet.decrypt(&enc_agent_message)?;
                let AgentMessage::Message {
                    snd_msg_id,
                    prev_msg_hash,
                    msg,
                } = AgentMessage::decode(&plain)?
                else {
                    return Err(AgentError::State("unexpected agent message"));
                };
                let integrity = if snd_msg_id <= c.last_rcv_id {
                    MsgIntegrity::BadId {
                        last: c.last_rcv_id,
                    }
                } else if snd_msg_id > c.last_rcv_id + 1 {
                    MsgIntegrity::Skipped {
                        from: c.last_rcv_id + 1,
                        to: snd_msg_id - 1,
                    }
                } else if prev_msg_hash != c.last_rcv_hash {
                    MsgIntegrity::BadHash
                } else {
                    MsgIntegrity::Ok
                };
                tx.set_ratchet(conn, &ratchet)?;
                if snd_msg_id > c.last_rcv_id {
                    tx.set_last_rcv(conn, snd_msg_id, &sha256(&plain))?;
                }
                if agent_version > c.agent_version && agent_version <= AGENT_VERSION {
                    tx.set_agent_version(conn, agent_version)?;
                }
                let sync_ev = Self::sync_ok_after_decrypt(tx, conn)?;
                // a refused control message (queue rotation) is reported, the decryption kept
                let soft = |r: Result<Processed, AgentError>| match r {
                    Err(AgentError::Store(e)) => Err(AgentError::Store(e)),
                    Err(e) => Ok(Processed::ack(vec![AgentEvent::Error {
                        conn: Some(conn),
                        error: e.to_string(),
                    }])),
                    ok => ok,
                };
                let mut p = match msg {
                    AMessage::AMsg(body) => {
                        record(snd_msg_id, Some(&body), false)?;
                        tx.set_rcv_msg_hash(conn, snd_msg_id, &sha256(&plain))?;
                        Processed {
                            events: vec![AgentEvent::Message {
                                conn,
                                msg_id: snd_msg_id,
                                body,
                                integrity,
                            }],
                            ack: false,
                            wake: None,
                        }
                    }
                    AMessage::ARcvd(receipts) => {
                        record(snd_msg_id, None, true)?;
                        let mut events = Vec::new();
                        for r in receipts {
                            match tx.take_snd_msg(conn, r.agent_msg_id)? {
                                Some(h) => events.push(AgentEvent::Receipt {
                                    conn,
                                    msg_id: r.agent_msg_id,
                                    hash_ok: h == r.msg_hash,
                                }),
                                None => events.push(AgentEvent::Error {
                                    conn: Some(conn),
                                    error: "receipt for an unknown message".into(),
                                }),
                            }
                        }
                        Processed::ack(events)
                    }
                    AMessage::QCont(addr) => {
                        record(snd_msg_id, None, true)?;
                        let sq = tx.snd_queues_of(conn)?.into_iter().find(|sq| {
                            sq.server.same_address(&addr.server) && sq.snd_id == addr.sender_id
                        });
                        Processed {
                            events: Vec::new(),
                            ack: true,
                            wake: sq.map(|sq| sq.snd_queue_id),
                        }
                    }
                    AMessage::QAdd(qs) => {
                        record(snd_msg_id, None, true)?;
                        soft(Self::on_qadd(tx, conn, qs))?
                    }
                    AMessage::QKey(qs) => {
                        record(snd_msg_id, None, true)?;
                        soft(Self::on_qkey(tx, conn, qs))?
                    }
                    AMessage::QUse(qs) => {
                        record(snd_msg_id, None, true)?;
                        soft(Self::on_quse(tx, conn, qs))?
                    }
                    AMessage::EReady(id) => {
                        record(snd_msg_id, None, true)?;
                        soft(Self::on_eready(tx, conn, could_send, id, snd_msg_id))?
                    }
                    _ => {
                        // HELLO, QTEST (the switch completes on the sender's side): nothing
                        // to do here
                        record(snd_msg_id, None, true)?;
                        Processed::ack(Vec::new())
                    }
                };
                if let Some(e) = sync_ev {
                    p.events.insert(0, e);
                }
                Ok(p)
            }
            (Some(_), Some(_)) => {
                // repeated confirmation: ACK and ignore
                Ok(Processed::ack(vec![AgentEvent::Duplicate { conn }]))
            }
            (None, None) => Err(AgentError::State("message before the handshake")),
        }
    }

    /// The inviter's reply confirmation (`C` with `I` connInfo, message id 1) on the send queue
    /// made from the joiner's reply queue; returns the send queue id.
    fn reply_confirmation(
        tx: &Tx<'_>,
        conn: ConnId,
        conn_info: Option<&[u8]>,
    ) -> Result<i64, AgentError> {
        let c = tx.connection(conn)?;
        let sq = tx
            .snd_queues_of(conn)?
            .into_iter()
            .next()
            .ok_or(AgentError::State("no send queue"))?;
        let mut ratchet = c.ratchet.ok_or(AgentError::State("no ratchet"))?;
        let info = conn_info
            .map(<[u8]>::to_vec)
            .or(c.own_info)
            .unwrap_or_default();
        let own = AgentMessage::ConnInfo(info).encode()?;
        let enc = ratchet.encrypt(&own, conn_info_len(c.agent_version, ratchet.pq_support()))?;
        let env = AgentMsgEnvelope::Confirmation {
            agent_version: c.agent_version,
            e2e: None,
            enc_conn_info: enc,
        }
        .encode()?;
        let sealed = ClientMsgEnvelope::seal(
            &sq.e2e_secret,
            sq.smp_client_version,
            Some(sq.e2e_public()),
            &ClientMessage {
                header: PrivHeader::Empty,
                body: env,
            },
        )?
        .encode();
        tx.push_outbox(conn, sq.snd_queue_id, 1, OutboxKind::Confirmation, &sealed)?;
        tx.set_ratchet(conn, &ratchet)?;
        tx.set_last_snd(conn, 1, &sha256(&own))?;
        tx.set_status(conn, ConnStatus::Confirmed)?;
        Ok(sq.snd_queue_id)
    }

    /// A confirmation on a duplex connection: the joiner's (we are the inviter, status
    /// `Created`) or the inviter's reply (we are the joiner, status `Joined`).
    fn confirmation(
        &self,
        tx: &Tx<'_>,
        c: crate::store::ConnRecord,
        agent_version: u16,
        e2e: Option<E2eRatchetParams>,
        enc_conn_info: &[u8],
    ) -> Result<Processed, AgentError> {
        let conn = c.conn_id;
        match (c.status, e2e) {
            (ConnStatus::Created, Some(params)) => {
                let (r1, r2) = c.x3dh_keys.ok_or(AgentError::State("no X3DH keys"))?;
                let e2e_v = VersionRange::single(params.version)
                    .compatible_version(&supported_e2e_versions())
                    .ok_or(AgentError::Version("e2e"))?;
                let agent_v = VersionRange::single(agent_version)
                    .compatible_version(&agent_version::RANGE)
                    .ok_or(AgentError::Version("agent"))?;
                // our invitations carry no KEM key (as the reference's full links), so a joiner's
                // acceptance is a KEM state error; its proposal is accepted at the first step
                let pq = if params.kem.is_some() {
                    self.inner.config.pq_accept
                } else {
                    self.inner.config.pq_propose
                };
                let (init, own_kem) = pq_x3dh_inviter(
                    &r1,
                    &r2,
                    None,
                    &params.key1,
                    &params.key2,
                    params.version,
                    params.kem.as_ref(),
                )?;
                let mut ratchet = Ratchet::init_inviter_pq(
                    RatchetVersions {
                        current: e2e_v,
                        max_supported: CURRENT_E2E_VERSION,
                    },
                    r2,
                    &init,
                    own_kem,
                    pq,
                );
                let plain = ratchet.decrypt(enc_conn_info)?;
                let AgentMessage::ConnInfoReply { queues, conn_info } =
                    AgentMessage::decode(&plain)?
                else {
                    return Err(AgentError::State("confirmation without reply queue"));
                };
                let reply = queues
                    .into_iter()
                    .next()
                    .ok_or(AgentError::State("no reply queue"))?;
                if reply.queue_mode != Some(QueueMode::Messaging) || reply.client_version < 3 {
                    return Err(AgentError::Unsupported(
                        "reply queue is not sender-securable",
                    ));
                }
                let snd_key = AuthKey::generate(AuthAlgorithm::Ed25519)?;
                let snd_e2e = X25519Secret::generate();
                let snd_secret = snd_e2e.dh(&reply.dh_public_key);
                let sq_id = tx.add_snd_queue(&SndQueue {
                    snd_queue_id: 0,
                    conn_id: conn,
                    server: reply.server.clone(),
                    snd_id: reply.sender_id.clone(),
                    snd_key,
                    e2e_priv: snd_e2e.clone(),
                    e2e_secret: snd_secret.clone(),
                    secured: false,
                    smp_client_version: reply.client_version,
                })?;
                tx.set_ratchet(conn, &ratchet)?;
                tx.set_last_rcv(conn, 1, &sha256(&plain))?;
                tx.set_agent_version(conn, agent_v)?;
                tx.set_peer_info(conn, &conn_info)?;
                let events = vec![AgentEvent::Confirmation {
                    conn,
                    peer_info: conn_info,
                }];
                if self.inner.config.auto_accept_confirmations {
                    let sq_id = Self::reply_confirmation(tx, conn, None)?;
                    Ok(Processed {
                        events,
                        ack: true,
                        wake: Some(sq_id),
                    })
                } else {
                    tx.set_status(conn, ConnStatus::AwaitingApproval)?;
                    let _ = sq_id;
                    Ok(Processed::ack(events))
                }
            }
            (ConnStatus::Joined, None) => {
                let mut ratchet = c.ratchet.ok_or(AgentError::State("no ratchet"))?;
                let plain = ratchet.decrypt(enc_conn_info)?;
                let AgentMessage::ConnInfo(info) = AgentMessage::decode(&plain)? else {
                    return Err(AgentError::State("unexpected confirmation content"));
                };
                tx.set_ratchet(conn, &ratchet)?;
                tx.set_last_rcv(conn, 1, &sha256(&plain))?;
                tx.set_peer_info(conn, &info)?;
                tx.set_status(conn, ConnStatus::Connected)?;
                Ok(Processed::ack(vec![AgentEvent::Connected {
                    conn,
                    peer_info: info,
                }]))
            }
            _ => Err(AgentError::State("unexpected confirmation")),
        }
    }
}

/// The agent version agreed with a connection link.
fn link_agent_version(data: &ConnReqUriData) -> Result<u16, AgentError> {
    data.agent_versions
        .compatible_version(&agent_version::RANGE)
        .ok_or(AgentError::Version("agent"))
}

/// A connection link's (first) queue and the SMP client version agreed with it.
fn link_queue(data: &ConnReqUriData) -> Result<(&SmpQueueUri, u16), AgentError> {
    let queue = data
        .smp_queues
        .first()
        .ok_or(AgentError::Link("no queue".into()))?;
    let smp_v = queue
        .client_versions
        .compatible_version(&smp_client_version::RANGE)
        .ok_or(AgentError::Version("smp client"))?;
    Ok((queue, smp_v))
}

// Short links (§3.9): creating queues with link data, reading links (`LKEY` / `LGET`).
#[path = "shortlink_agent.rs"]
pub(crate) mod shortlink_agent;
