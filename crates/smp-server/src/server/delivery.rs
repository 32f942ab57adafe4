//! The async shell of the delivery rules (reference §3.7, §3.8; `Server.hs`
//! `subscribeQueueAndDeliver`, `getMessage`, `acknowledgeMsg`, `sendMessage`/`tryDeliverMessage`,
//! `endPreviousSubscriptions`).
//!
//! *Which message goes to whom and when* is decided by the pure state machine in
//! [`super::delivery_core`] (subscriber per queue, the one delivered unacknowledged message,
//! `END` to the previous subscriber, `GET`/`SUB` interplay; its module documentation has the
//! rules). This file carries its decisions out: it holds the queue's lock, reads and writes the
//! store, encrypts `MSG`s, counts metrics and subscriptions, and queues transmissions on the
//! connections' outgoing queues ([`OutQueue`]).
//!
//! * Notifier subscriptions (`NSUB`): one connection per notifier id, `END` on takeover, `DELD`
//!   when the notifier (or queue) is deleted. `NMSG` batching lives in `notify.rs`.
//!
//! Consistency: all state changes of one queue (and the store operations they depend on) run under
//! that queue's lock (a striped async mutex), so a `SEND` and a `SUB`/`ACK` on the same queue can
//! never interleave halfway (no message left undelivered to an idle subscriber).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use hush_crypto::DhSecret;
use hush_proto::encoding::{ShortString, put_int64};
use hush_proto::smp::BrokerMsg;
use hush_proto::transmission::{Transmission, encode_transmission};
use hush_store::{AppendOutcome, EntityId, Message, MsgId, NewMessage, PendingNtf, QueueRecord};

use super::delivery_core::{
    AckRoute, Conn, ConnQueues, HeadFrom, Previous, Refusal, Registry, Removed, SmallMap, SubAck,
};
use super::error::CmdError;
use super::{Response, Shared};

/// A connection's id (for logs and the control port; never a secret).
pub type ClientId = super::delivery_core::ConnId;

/// Per-connection facts other tasks can see (control port `clients`, inactivity), and the
/// connection's outgoing queue.
#[derive(Debug)]
pub struct ClientShared {
    pub id: ClientId,
    pub version: u16,
    /// tls-unique (on the wire of server transmissions below v7).
    pub session_id: Vec<u8>,
    /// Unix seconds of connection.
    pub connected_at: i64,
    /// Queues this connection is the subscriber of.
    pub rcv_subs: AtomicI64,
    /// Notifier ids this connection is subscribed to.
    pub ntf_subs: AtomicI64,
    /// Of those, the ones held for this connection's service (`NSUBS`, or `NSUB` in a service
    /// session): the `n` of the `ENDS n` it gets when another connection takes the service over.
    pub ntf_service_subs: AtomicI64,
    /// Unix milliseconds of the last block received or sent.
    pub last_active_ms: AtomicU64,
    /// Proxied commands (`PFWD`) of this connection in flight (reference
    /// `serverClientConcurrency`, 32); created by the first `PFWD` (see [`ClientShared::proxied`]).
    proxied: std::sync::OnceLock<Arc<tokio::sync::Semaphore>>,
    /// Encoded transmissions waiting to be written by the connection's task.
    pub(crate) out: OutQueue,
    /// Stop requests for the connection's task ([`STOP_SHUTDOWN`], [`STOP_INACTIVE`]).
    stop: AtomicU8,
}

/// Stop request: the relay is shutting down.
pub const STOP_SHUTDOWN: u8 = 1;
/// Stop request: the inactivity check found the connection idle (the task checks again with its
/// own state before closing).
pub const STOP_INACTIVE: u8 = 2;

/// `PFWD`s one connection may have in flight.
pub const PROXIED_CONCURRENCY: usize = 32;

impl ClientShared {
    /// A new connection's state; `queue_slots` is `client_queue_blocks`.
    pub fn new(id: ClientId, version: u16, session_id: Vec<u8>, queue_slots: usize) -> Self {
        ClientShared {
            id,
            version,
            session_id,
            connected_at: now_secs(),
            rcv_subs: AtomicI64::new(0),
            ntf_subs: AtomicI64::new(0),
            ntf_service_subs: AtomicI64::new(0),
            last_active_ms: AtomicU64::new(now_ms()),
            proxied: std::sync::OnceLock::new(),
            out: OutQueue::new(queue_slots),
            stop: AtomicU8::new(0),
        }
    }

    /// The limit of this connection's `PFWD`s in flight (allocated on first use: most
    /// connections never proxy).
    pub fn proxied(&self) -> Arc<tokio::sync::Semaphore> {
        self.proxied
            .get_or_init(|| Arc::new(tokio::sync::Semaphore::new(PROXIED_CONCURRENCY)))
            .clone()
    }

    /// Asks the connection's task to stop (`STOP_*`) and wakes it.
    pub fn request_stop(&self, what: u8) {
        self.stop.fetch_or(what, Ordering::SeqCst);
        self.out.wake();
    }

    pub(crate) fn stop_requested(&self) -> u8 {
        self.stop.load(Ordering::SeqCst)
    }

    pub(crate) fn clear_stop(&self, what: u8) {
        self.stop.fetch_and(!what, Ordering::SeqCst);
    }

    /// No subscriptions and nothing received or sent for `ttl`.
    pub fn idle_for(&self, ttl: std::time::Duration) -> bool {
        let idle_ms = now_ms().saturating_sub(self.last_active_ms.load(Ordering::Relaxed));
        !self.has_subscriptions() && u128::from(idle_ms) >= ttl.as_millis()
    }
    pub fn touch(&self) {
        self.last_active_ms.store(now_ms(), Ordering::Relaxed);
    }
    pub fn has_subscriptions(&self) -> bool {
        self.rcv_subs.load(Ordering::Relaxed) > 0 || self.ntf_subs.load(Ordering::Relaxed) > 0
    }
}

/// The servers' one clock (hush-server-common).
pub use hush_server_common::time::{unix_millis as now_ms, unix_secs as now_secs};

/// A connection's outgoing queue: groups of encoded transmissions ("slots"; a group is what one
/// response block or one event batch needs, at most about one block), written by the
/// connection's own task. It allocates only while something is queued (an idle connection holds
/// an empty `VecDeque` and a waker slot, no buffer).
///
/// Bounds: the connection stops reading while [`OutQueue::has_room`] is false, so its own
/// responses exceed `slots` by at most one block's worth; events for it (one outstanding `MSG`
/// per subscribed queue, `END`/`DELD` once per subscription, `NMSG` only while there is room, at
/// most [`PROXIED_CONCURRENCY`] proxied responses) are bounded by what it subscribed to.
#[derive(Debug)]
pub(crate) struct OutQueue {
    groups: Mutex<OutGroups>,
    slots: usize,
}

#[derive(Debug, Default)]
struct OutGroups {
    queued: std::collections::VecDeque<Vec<Vec<u8>>>,
    closed: bool,
    /// A wake-up is pending for the connection's task (set by [`OutQueue::wake`], cleared by
    /// [`OutQueue::woken`]); with `waker`, a one-consumer `Notify` whose wait future is one
    /// pointer instead of tokio's 64-byte `Notified`.
    woken: bool,
    waker: Option<std::task::Waker>,
}

impl OutQueue {
    fn new(slots: usize) -> Self {
        OutQueue {
            groups: Mutex::new(OutGroups::default()),
            slots: slots.max(1),
        }
    }

    /// Wakes the connection's task (now, or at its next [`OutQueue::woken`] if it is not
    /// waiting).
    pub(crate) fn wake(&self) {
        let waker = {
            let mut g = lock(&self.groups);
            g.woken = true;
            g.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Resolves at the next wake-up (at once if one happened since the last call). Only the
    /// connection's own task waits here. Cancel-safe.
    pub(crate) fn woken(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let mut g = lock(&self.groups);
            if g.woken {
                g.woken = false;
                std::task::Poll::Ready(())
            } else {
                match &mut g.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                std::task::Poll::Pending
            }
        })
    }

    /// Queues one group (dropped when the connection is gone or the group is empty).
    fn push(&self, group: Vec<Vec<u8>>) {
        if group.is_empty() {
            return;
        }
        {
            let mut g = lock(&self.groups);
            if g.closed {
                return;
            }
            g.queued.push_back(group);
        }
        self.wake();
    }

    /// Whether fewer than `slots` groups are queued.
    pub(crate) fn has_room(&self) -> bool {
        lock(&self.groups).queued.len() < self.slots
    }

    /// How many more groups fit before [`OutQueue::has_room`] turns false.
    pub(crate) fn free_slots(&self) -> usize {
        self.slots.saturating_sub(lock(&self.groups).queued.len())
    }

    /// Takes queued groups, whole, until at least `max` transmissions are taken or the queue is
    /// empty; `None` when nothing is queued.
    pub(crate) fn take(&self, max: usize) -> Option<Vec<Vec<u8>>> {
        let mut g = lock(&self.groups);
        let mut items = g.queued.pop_front()?;
        while items.len() < max {
            match g.queued.pop_front() {
                Some(more) => items.extend(more),
                None => break,
            }
        }
        if g.queued.is_empty() {
            // Give the ring buffer back: an idle connection holds no queue memory.
            g.queued = std::collections::VecDeque::new();
        }
        Some(items)
    }

    /// Transmissions queued right now (tests).
    #[cfg(test)]
    pub(crate) fn queued_transmissions(&self) -> usize {
        lock(&self.groups).queued.iter().map(Vec::len).sum()
    }

    /// The connection is gone: drop what is queued and refuse further groups.
    pub(crate) fn close(&self) {
        let mut g = lock(&self.groups);
        g.closed = true;
        g.queued = std::collections::VecDeque::new();
        g.waker = None;
    }
}

/// The sending side of a connection (a handle on its `OutQueue`); events for other connections
/// go through here.
#[derive(Clone, Debug)]
pub struct Outbox {
    pub client: Arc<ClientShared>,
}

/// Encodes one server transmission (empty authorization) for a client at `version`;
/// `session_id` goes on the wire only below v7. The command is encoded straight after the
/// header, into one buffer sized for it (a `MSG` is ≈ 16 KB: no intermediate copy).
pub fn encode_response(
    session_id: &[u8],
    corr_id: &[u8],
    entity_id: &[u8],
    msg: &BrokerMsg,
    version: u16,
) -> Vec<u8> {
    let t = Transmission {
        session_id,
        ..Transmission::new(corr_id, entity_id, &[])
    };
    let body = match msg {
        BrokerMsg::Msg { body, .. } => body.len(),
        _ => 0,
    };
    let mut out =
        Vec::with_capacity(body + corr_id.len() + entity_id.len() + session_id.len() + 64);
    // Fields come from decoded transmissions or our own 24-byte ids: always ≤ 255 bytes.
    if encode_transmission(&mut out, &t, version, true).is_err() {
        out.clear();
        return out;
    }
    msg.encode_into(&mut out, version);
    out
}

impl Outbox {
    pub fn new(client: Arc<ClientShared>) -> Outbox {
        Outbox { client }
    }

    pub fn id(&self) -> ClientId {
        self.client.id
    }

    /// Queues already-encoded transmissions as one group, whether or not there is room (the
    /// caller — the connection itself — stops reading while [`Outbox::has_room`] is false).
    pub fn push(&self, items: Vec<Vec<u8>>) {
        self.client.out.push(items);
    }

    /// Encodes an event (empty corrId) for this connection.
    pub fn encode_event(&self, entity: &[u8], msg: &BrokerMsg) -> Vec<u8> {
        encode_response(
            &self.client.session_id,
            &[],
            entity,
            msg,
            self.client.version,
        )
    }

    /// Queues events (empty corrId) for this connection without making the caller wait (see
    /// `OutQueue` for why this stays bounded).
    pub fn push_events(&self, entity: &[u8], msgs: &[BrokerMsg]) {
        self.push(msgs.iter().map(|m| self.encode_event(entity, m)).collect());
    }

    /// Whether the outgoing queue has room right now (used to hold notifications back in the
    /// store instead of piling them up for a client that does not read).
    pub fn has_room(&self) -> bool {
        self.client.out.has_room()
    }

    /// Slots of the outgoing queue free right now.
    pub fn free_slots(&self) -> usize {
        self.client.out.free_slots()
    }

    /// Queues a response computed outside the connection's task (a proxied command; at most
    /// [`PROXIED_CONCURRENCY`] of them are in flight per connection).
    pub async fn send_response(&self, corr: &[u8], entity: &[u8], msg: &BrokerMsg) {
        let t = encode_response(
            &self.client.session_id,
            corr,
            entity,
            msg,
            self.client.version,
        );
        self.push(vec![t]);
    }

    pub fn push_event(&self, entity: &[u8], msg: BrokerMsg) {
        self.push_events(entity, &[msg])
    }
}

impl Conn for Outbox {
    fn conn_id(&self) -> ClientId {
        self.client.id
    }
}

impl From<Refusal> for CmdError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Prohibited => CmdError::prohibited(),
            Refusal::NoMsg => CmdError::NoMsg,
        }
    }
}

/// A connection's own view of its subscriptions (only its task touches it).
#[derive(Debug, Default)]
pub struct LocalSubs {
    /// The recipient queues it uses (`SUB` or `GET`).
    rcv: ConnQueues,
    ntf: SmallMap<()>,
    /// The notifier service this connection subscribed with `NSUBS` (reference
    /// `ntfServiceSubscribed`).
    ntf_service: Option<EntityId>,
    /// The connection's new-queue and proxy-destination budgets (allocated on first use).
    pub limits: super::limits::ConnLimits,
}

impl LocalSubs {
    pub fn subscribed_count(&self) -> usize {
        self.rcv.subscribed_count() + self.ntf.len()
    }
}

/// Server-wide subscription registry plus per-queue locks.
pub struct Subscriptions {
    stripes: Box<[tokio::sync::Mutex<()>]>,
    rcv: Mutex<Registry<Outbox>>,
    ntf: Mutex<HashMap<EntityId, Outbox>>,
    /// Notifier services: the connection holding each service's subscription (`NSUBS`).
    ntf_services: Mutex<HashMap<EntityId, Outbox>>,
}

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions").finish_non_exhaustive()
    }
}

const STRIPES: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these short locks would be a bug; keep serving with the data as is.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for Subscriptions {
    fn default() -> Self {
        Subscriptions {
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            rcv: Mutex::new(Registry::default()),
            ntf: Mutex::new(HashMap::new()),
            ntf_services: Mutex::new(HashMap::new()),
        }
    }
}

impl Subscriptions {
    fn stripe(&self, rid: &EntityId) -> &tokio::sync::Mutex<()> {
        let h = u16::from_le_bytes([rid[0], rid[1]]) as usize % STRIPES;
        // `h < STRIPES == stripes.len()`.
        &self.stripes[h]
    }

    /// Number of queue subscriptions and notifier subscriptions (metrics).
    pub fn counts(&self) -> (usize, usize) {
        (lock(&self.rcv).len(), lock(&self.ntf).len())
    }

    /// The subscriber of a notifier id, if any.
    pub fn notifier_outbox(&self, nid: &EntityId) -> Option<Outbox> {
        lock(&self.ntf).get(nid).cloned()
    }

    /// Whether `me` is the subscriber of queue `rid` (tests).
    #[cfg(test)]
    fn is_subscriber_for_tests(&self, rid: &EntityId, me: ClientId) -> bool {
        lock(&self.rcv).is_subscriber(rid, me)
    }

    pub fn notifier_ids(&self) -> Vec<EntityId> {
        lock(&self.ntf).keys().copied().collect()
    }
}

/// A `SEND`'s append until it is durable.
pub type DurableAppend = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<AppendOutcome, hush_store::StoreError>> + Send>,
>;

/// The durable outcome of a `SEND`'s append ([`Shared::send_message_deferred`]).
pub enum Sent {
    /// Already known (a memory store, or an append refused before any commit).
    Durable(Result<AppendOutcome, CmdError>),
    /// Resolves once the append's commit ended.
    Pending(DurableAppend),
}

/// `MSG` for a stored item: `crypto_box(rcvDhSecret, nonce = msgId, pad(plaintext, 16106))`.
pub fn encrypt_msg(q: &QueueRecord, m: &Message) -> Result<BrokerMsg, CmdError> {
    let mut plain = Vec::new();
    match m {
        Message::Message(NewMessage {
            ts, flags, body, ..
        }) => {
            plain.reserve(10 + body.len());
            put_int64(&mut plain, *ts);
            plain.push(if flags & 1 == 1 { b'T' } else { b'F' });
            plain.push(b' ');
            plain.extend_from_slice(body);
        }
        Message::QuotaMarker { ts, .. } => {
            plain.extend_from_slice(b"QUOTA ");
            put_int64(&mut plain, *ts);
        }
    }
    let msg_id = m.msg_id();
    let secret = DhSecret::from_bytes(q.rcv_dh_secret);
    let body = hush_crypto::encrypt_rcv_msg_body(&secret, msg_id, &plain)
        .map_err(|_| CmdError::Internal("message too large to encrypt"))?;
    Ok(BrokerMsg::Msg {
        msg_id: ShortString::new(msg_id.to_vec()).map_err(|_| CmdError::Internal("message id"))?,
        body,
    })
}

/// Notifier ids read from the store per page of a service subscription (`NSUBS`).
pub const SERVICE_PAGE: usize = 1000;

/// One queue of `p`'s service subscription went to another connection.
fn decrement_service_subs(p: &Outbox) {
    let _ = p
        .client
        .ntf_service_subs
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n > 0).then(|| n - 1)
        });
}

/// What a connection brings to a delivery operation.
pub struct Client<'a> {
    pub outbox: &'a Outbox,
    pub local: &'a mut LocalSubs,
}

fn resp(corr: &[u8], entity: &[u8], msg: BrokerMsg) -> Response {
    Response {
        corr_id: corr.to_vec(),
        entity_id: entity.to_vec(),
        msg,
    }
}

impl Shared {
    /// `SUB`: subscribe this connection (ending another connection's subscription with `END`),
    /// answer `SOK`, then deliver the head message as a separate event. Re-`SUB` on the same
    /// connection redelivers the unacknowledged message.
    pub async fn subscribe(
        &self,
        c: Client<'_>,
        q: &QueueRecord,
        corr: &[u8],
    ) -> Result<Vec<Response>, CmdError> {
        let rid = q.recipient_id;
        let me = c.outbox.id();
        if let Err(e) = c.local.rcv.check_sub(&rid) {
            self.metrics
                .subscription_error(crate::metrics::SubError::Prohibited);
            return Err(e.into());
        }
        let _guard = self.subs.stripe(&rid).lock().await;
        let previous = lock(&self.subs.rcv).subscribe(&mut c.local.rcv, rid, c.outbox.clone());
        match previous {
            Previous::Same => {
                self.metrics
                    .subscription_error(crate::metrics::SubError::Duplicate);
            }
            Previous::Other(prev) => {
                prev.client.rcv_subs.fetch_sub(1, Ordering::Relaxed);
                prev.push_event(&rid, BrokerMsg::End);
                self.metrics.subscription_end.inc();
                c.outbox.client.rcv_subs.fetch_add(1, Ordering::Relaxed);
                self.metrics.subscription_successes.inc();
            }
            Previous::None => {
                c.outbox.client.rcv_subs.fetch_add(1, Ordering::Relaxed);
                self.metrics.subscription_successes.inc();
            }
        }
        let mut out = vec![resp(corr, &rid, BrokerMsg::Sok(None))];
        if let Some(head) = self.store.peek_message(rid).await? {
            let msg = encrypt_msg(q, &head)?;
            lock(&self.subs.rcv).record_delivery(&rid, me, *head.msg_id(), Instant::now());
            out.push(resp(&[], &rid, msg));
        }
        Ok(out)
    }

    /// Subscribes the creating connection to a new (empty) queue (`NEW` with subscribe mode).
    pub fn subscribe_new(&self, c: Client<'_>, rid: EntityId) {
        if lock(&self.subs.rcv).subscribe_new(&mut c.local.rcv, rid, c.outbox.clone()) {
            c.outbox.client.rcv_subs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `GET`: the head message with the request's corrId, or `OK` when empty. Prohibited on a
    /// connection subscribed to the queue.
    pub async fn get(
        &self,
        c: Client<'_>,
        q: &QueueRecord,
        corr: &[u8],
    ) -> Result<Vec<Response>, CmdError> {
        let rid = q.recipient_id;
        let me = c.outbox.id();
        let registry = &self.subs.rcv;
        if let Err(e) = c
            .local
            .rcv
            .check_get(&rid, || lock(registry).is_subscriber(&rid, me))
        {
            self.metrics.get_error(crate::metrics::GetError::Prohibited);
            return Err(e.into());
        }
        let head = self.store.peek_message(rid).await?;
        c.local.rcv.got(rid, head.as_ref().map(|m| *m.msg_id()));
        match head {
            Some(m) => {
                self.metrics.messages_notify_get_sent.inc();
                Ok(vec![resp(corr, &rid, encrypt_msg(q, &m)?)])
            }
            None => {
                self.metrics.get_error(crate::metrics::GetError::NoMsg);
                Ok(vec![resp(corr, &rid, BrokerMsg::Ok)])
            }
        }
    }

    /// `ACK msgId`: only the delivered message (or an empty id, matching whatever was
    /// delivered) is accepted, else `NO_MSG`. On a subscription the answer is the next `MSG` (with
    /// the `ACK`'s corrId) or `OK`; after `GET` it is `OK`.
    pub async fn ack(
        &self,
        c: Client<'_>,
        q: &QueueRecord,
        corr: &[u8],
        msg_id: &[u8],
    ) -> Result<Vec<Response>, CmdError> {
        let rid = q.recipient_id;
        let me = c.outbox.id();
        match c.local.rcv.ack(&rid, msg_id)? {
            AckRoute::Get { delete } => {
                if let Some(id) = delete {
                    let _guard = self.subs.stripe(&rid).lock().await;
                    let out = self.store.delete_message(rid, id).await?;
                    if out.deleted {
                        self.metrics.messages_received.inc();
                        self.metrics.messages_notify_get_received.inc();
                    }
                }
                Ok(vec![resp(corr, &rid, BrokerMsg::Ok)])
            }
            AckRoute::Sub => {
                let _guard = self.subs.stripe(&rid).lock().await;
                let SubAck { next, delivered_at } = lock(&self.subs.rcv).ack(&rid, me, msg_id)?;
                let head = match next {
                    HeadFrom::Delete(id) => {
                        let out = self.store.delete_message(rid, id).await?;
                        if out.deleted {
                            self.metrics.messages_received.inc();
                            self.metrics
                                .delivery_ack_confirmed_time
                                .observe(delivered_at.elapsed().as_secs_f64());
                        }
                        out.head
                    }
                    HeadFrom::Peek => self.store.peek_message(rid).await?,
                };
                match head {
                    Some(m) => {
                        let msg = encrypt_msg(q, &m)?;
                        lock(&self.subs.rcv).record_delivery(&rid, me, *m.msg_id(), Instant::now());
                        Ok(vec![resp(corr, &rid, msg)])
                    }
                    None => Ok(vec![resp(corr, &rid, BrokerMsg::Ok)]),
                }
            }
        }
    }

    /// Stores a `SEND`ed message (the future resolves after the store made it durable) and, if
    /// the queue was empty and its subscriber has nothing outstanding, delivers it. A `MSG` for
    /// the sending connection itself is returned (to be written before the `OK`); for another
    /// connection it is queued as an event.
    pub async fn send_message(
        &self,
        c: Client<'_>,
        q: &QueueRecord,
        msg: NewMessage,
        ntf: Option<PendingNtf>,
    ) -> Result<(AppendOutcome, Vec<Response>), CmdError> {
        let (sent, own) = self.send_message_deferred(c, q, msg, ntf).await?;
        let outcome = match sent {
            Sent::Durable(r) => r?,
            Sent::Pending(durable) => durable.await.map_err(CmdError::from)?,
        };
        Ok((outcome, own))
    }

    /// `SEND`'s store and delivery part: the subscriber gets the message as soon as the store
    /// decided the append, while its commit (an fsync) runs; the returned [`Sent`] resolves once
    /// the append is durable, and only then may the sender be answered `OK`. A crash in between
    /// loses a message the sender was never told was stored (it sends it again; the recipient's
    /// agent drops the copy), never one it was told was. The connection keeps reading while a
    /// [`Sent::Pending`] runs; appends keep their order (one writer, first come first served).
    pub async fn send_message_deferred(
        &self,
        c: Client<'_>,
        q: &QueueRecord,
        msg: NewMessage,
        ntf: Option<PendingNtf>,
    ) -> Result<(Sent, Vec<Response>), CmdError> {
        let rid = q.recipient_id;
        let _guard = self.subs.stripe(&rid).lock().await;
        let (ran_tx, mut ran_rx) = tokio::sync::oneshot::channel();
        let msg_id = msg.msg_id;
        let store = self.store.clone();
        let body = msg.clone();
        let mut durable: DurableAppend =
            Box::pin(async move { store.append_message_then(rid, body, ntf, ran_tx).await });
        let mut done = None;
        let ran = tokio::select! {
            biased;
            r = &mut ran_rx => r.ok(),
            r = &mut durable => {
                done = Some(r);
                ran_rx.try_recv().ok()
            }
        };
        let mut own = Vec::new();
        match ran {
            Some(AppendOutcome::Appended { was_empty }) => {
                let target = lock(&self.subs.rcv).stored(&rid, was_empty, msg_id, Instant::now);
                if let Some(outbox) = target {
                    let m = encrypt_msg(q, &Message::Message(msg))?;
                    if outbox.id() == c.outbox.id() {
                        own.push(resp(&[], &rid, m));
                    } else {
                        outbox.push_event(&rid, m);
                    }
                }
            }
            Some(AppendOutcome::QuotaExceeded { .. }) => {}
            // Not appended (refused before its commit): the error is the durable result.
            None if done.is_none() => done = Some(durable.as_mut().await),
            None => {}
        }
        let sent = match done {
            Some(r) => Sent::Durable(r.map_err(CmdError::from)),
            None => Sent::Pending(durable),
        };
        Ok((sent, own))
    }

    /// The queue was deleted (`DEL`, control port): its subscriber (on another connection) gets
    /// `DELD`, and so does the notifier subscriber.
    pub fn queue_deleted(&self, me: Option<ClientId>, q: &QueueRecord) {
        let rid = q.recipient_id;
        let removed = lock(&self.subs.rcv).queue_deleted(&rid, me);
        if let Some(Removed { conn, deld }) = removed {
            conn.client.rcv_subs.fetch_sub(1, Ordering::Relaxed);
            if deld {
                conn.push_event(&rid, BrokerMsg::Deld);
            }
        }
        if let Some(n) = &q.notifier {
            self.notifier_deleted(me, n.notifier_id);
        }
    }

    /// `NSUB`: this connection becomes the notifier subscriber; a previous one gets `END`.
    /// Returns false when this connection already was the subscriber.
    pub fn subscribe_notifier(&self, c: Client<'_>, nid: EntityId) -> bool {
        let prev = lock(&self.subs.ntf).insert(nid, c.outbox.clone());
        let new = match prev {
            Some(p) if p.id() == c.outbox.id() => {
                self.metrics
                    .ntf_subscription_error(crate::metrics::NtfSubError::Duplicate);
                false
            }
            Some(p) => {
                p.client.ntf_subs.fetch_sub(1, Ordering::Relaxed);
                // A queue of a service subscription moved away: one less in the service's
                // count (reference `endServiceSub` → `CSAEndServiceSub`).
                decrement_service_subs(&p);
                p.push_event(&nid, BrokerMsg::End);
                c.outbox.client.ntf_subs.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => {
                c.outbox.client.ntf_subs.fetch_add(1, Ordering::Relaxed);
                true
            }
        };
        self.metrics.subscription_ntf_requests.inc();
        c.local.ntf.insert(nid, ());
        self.notify.mark(nid);
        new
    }

    /// `NSUBS` (reference `subscribeServiceNotifications`): this connection becomes the
    /// subscriber of every notifier id associated with service `sid`; the connection that held
    /// the service before gets one `ENDS n` (not an `END` per queue). The ids are read from the
    /// store a page at a time ([`SERVICE_PAGE`] ids), so memory beyond the subscriptions
    /// themselves stays bounded whatever the number of queues. Returns the number of queues
    /// subscribed (`SOKS n`). A repeated `NSUBS` on the same connection answers the current
    /// count without reading the store again (reference).
    pub async fn subscribe_notifier_service(
        &self,
        c: Client<'_>,
        sid: EntityId,
    ) -> Result<i64, CmdError> {
        let me = c.outbox.id();
        let client = &c.outbox.client;
        if c.local.ntf_service == Some(sid) {
            return Ok(client.ntf_service_subs.load(Ordering::Relaxed));
        }
        let prev = lock(&self.subs.ntf_services).insert(sid, c.outbox.clone());
        let prev_holder = match prev {
            Some(p) if p.id() != me => {
                let n = p.client.ntf_service_subs.swap(0, Ordering::Relaxed);
                p.push_event(&sid, BrokerMsg::Ends(n));
                self.metrics.subscription_end.inc();
                Some(p.id())
            }
            _ => None,
        };
        c.local.ntf_service = Some(sid);
        let mut after = None;
        let mut count: i64 = 0;
        loop {
            let page = self
                .store
                .service_queue_ids(sid, hush_store::ServiceParty::Notifier, after, SERVICE_PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(*last);
            let mut added: i64 = 0;
            {
                let mut reg = lock(&self.subs.ntf);
                for nid in &page {
                    match reg.insert(*nid, c.outbox.clone()) {
                        Some(p) if p.id() == me => {}
                        Some(p) => {
                            p.client.ntf_subs.fetch_sub(1, Ordering::Relaxed);
                            // The previous service holder got `ENDS`; anyone else an `END`.
                            if Some(p.id()) != prev_holder {
                                decrement_service_subs(&p);
                                p.push_event(nid, BrokerMsg::End);
                            }
                            added += 1;
                        }
                        None => added += 1,
                    }
                    c.local.ntf.insert(*nid, ());
                }
            }
            client.ntf_subs.fetch_add(added, Ordering::Relaxed);
            // Pending notifications of these ids go out with the next flush.
            for nid in &page {
                self.notify.mark(*nid);
            }
            count += page.len() as i64;
            if page.len() < SERVICE_PAGE {
                break;
            }
        }
        client.ntf_service_subs.store(count, Ordering::Relaxed);
        self.metrics.subscription_ntf_requests.inc_by(count as u64);
        self.metrics.subscription_ntf_requests_batch.inc();
        Ok(count)
    }

    /// `NSUB` in a service session: the connection holds the service's subscription unless
    /// another connection does (reference `upsertSubscribedClient serviceId`; the reference
    /// would also end the other connection's whole service subscription here, hush leaves it
    /// to `NSUBS`).
    pub fn hold_notifier_service(&self, c: &Client<'_>, sid: EntityId) {
        lock(&self.subs.ntf_services)
            .entry(sid)
            .or_insert_with(|| c.outbox.clone());
    }

    /// A queue subscribed in a service session (`NSUB` with a service signature) counts in the
    /// service's subscription.
    pub fn count_service_notifier(&self, c: &Client<'_>) {
        c.outbox
            .client
            .ntf_service_subs
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Notifier credentials removed or replaced: the notifier subscriber gets `DELD` (unless it
    /// is the connection that made the change, `me`).
    pub fn notifier_deleted(&self, me: Option<ClientId>, nid: EntityId) {
        if let Some(p) = lock(&self.subs.ntf).remove(&nid) {
            p.client.ntf_subs.fetch_sub(1, Ordering::Relaxed);
            // In a service session every notifier subscription is the service's.
            decrement_service_subs(&p);
            if Some(p.id()) != me {
                p.push_event(&nid, BrokerMsg::Deld);
            }
        }
    }

    /// For `QUE`: (subscription thread name, delivered msg id) of this connection's use of the queue.
    pub fn local_sub_info(
        &self,
        c: &Client<'_>,
        rid: &EntityId,
    ) -> Option<(&'static str, Option<MsgId>)> {
        lock(&self.subs.rcv).info(&c.local.rcv, rid, c.outbox.id())
    }

    /// The connection closed: drop the subscriptions it still holds.
    pub fn client_closed(&self, me: ClientId, local: &LocalSubs) {
        lock(&self.subs.rcv).connection_closed(me, &local.rcv);
        if local.ntf_service.is_some() || local.ntf.len() > 0 {
            // Few services: a scan is cheap (and covers services held through `NSUB`).
            lock(&self.subs.ntf_services).retain(|_, o| o.id() != me);
        }
        let mut reg = lock(&self.subs.ntf);
        for (nid, _) in local.ntf.iter() {
            if reg.get(nid).is_some_and(|o| o.id() == me) {
                reg.remove(nid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `encode_response` (command encoded in place) gives the bytes of the two-step encoding
    /// (`BrokerMsg::encode`, then `encode_transmission`) at every version, for a `MSG` and for
    /// small replies.
    #[test]
    fn encode_response_matches_two_step_encoding() {
        let msgs = [
            BrokerMsg::Ok,
            BrokerMsg::Pong,
            BrokerMsg::Msg {
                msg_id: ShortString::new(vec![9; 24]).unwrap(),
                body: vec![0xab; 16122],
            },
            BrokerMsg::Err(hush_proto::error::ErrorType::Block),
        ];
        for version in [6u16, 7, 15, 16, 18] {
            for m in &msgs {
                let got = encode_response(&[1; 32], b"corr", &[2; 24], m, version);
                let command = m.encode(version);
                let t = Transmission {
                    session_id: &[1; 32],
                    ..Transmission::new(b"corr", &[2; 24], &command)
                };
                let mut want = Vec::new();
                encode_transmission(&mut want, &t, version, true).unwrap();
                assert_eq!(got, want, "v{version} {}", m.tag());
            }
        }
        // A field over 255 bytes cannot be encoded: empty output, as before.
        assert!(encode_response(&[], &[0; 256], &[], &BrokerMsg::Ok, 18).is_empty());
    }

    /// The async shell over a memory store (real locks, store calls, encryption and outgoing
    /// queues), driven by random `SUB`/`GET`/`ACK`/`SEND`/close sequences from 3 connections on
    /// 2 queues: what the connections receive (answers, and events decoded from their outgoing
    /// queues) keeps the delivery rules that `tests/delivery_model.rs` checks on the pure state
    /// machine, and the store holds exactly the sent messages not yet acknowledged, in order.
    mod shell {
        use super::*;
        use hush_store::QueueStatus;
        use proptest::prelude::*;
        use std::collections::VecDeque;

        const VERSION: u16 = 18;

        #[derive(Clone, Copy, Debug)]
        enum Cmd {
            Sub(usize, usize),
            Get(usize, usize),
            /// Acknowledge the last message received (`true`: with an empty id).
            Ack(usize, usize, bool),
            Send(usize, usize),
            Close(usize),
        }

        struct Conn {
            outbox: Outbox,
            local: LocalSubs,
            holds: [bool; 2],
            outstanding: [Option<MsgId>; 2],
            last: [Option<MsgId>; 2],
            get_mode: [bool; 2],
        }

        fn conn(id: ClientId) -> Conn {
            Conn {
                outbox: Outbox::new(Arc::new(ClientShared::new(id, VERSION, vec![1; 32], 64))),
                local: LocalSubs::default(),
                holds: [false; 2],
                outstanding: [None; 2],
                last: [None; 2],
                get_mode: [false; 2],
            }
        }

        fn queue(i: u8) -> QueueRecord {
            QueueRecord {
                recipient_id: [i; 24],
                recipient_keys: vec![vec![1, 2, 3]],
                rcv_dh_secret: [i; 32],
                sender_id: [i + 100; 24],
                sender_key: None,
                mode: None,
                link: None,
                notifier: None,
                status: QueueStatus::Active,
                updated_at: None,
            }
        }

        fn msg_id(m: &BrokerMsg) -> Option<MsgId> {
            match m {
                BrokerMsg::Msg { msg_id, .. } => msg_id.as_bytes().try_into().ok(),
                _ => None,
            }
        }

        /// Events queued for a connection: (queue index, message).
        fn events(c: &Conn, queues: &[QueueRecord]) -> Vec<(usize, BrokerMsg)> {
            let mut out = Vec::new();
            while let Some(group) = c.outbox.client.out.take(usize::MAX) {
                for t in group {
                    let t = hush_proto::transmission::decode_transmission(&t, VERSION, true)
                        .expect("event decodes");
                    assert!(t.corr_id.is_empty(), "an event has no corrId");
                    let q = queues
                        .iter()
                        .position(|q| q.recipient_id.as_slice() == t.entity_id)
                        .expect("event for a known queue");
                    out.push((q, BrokerMsg::decode(t.command, VERSION).expect("event")));
                }
            }
            out
        }

        fn cmd() -> impl Strategy<Value = Cmd> {
            prop_oneof![
                3 => (0..3usize, 0..2usize).prop_map(|(c, q)| Cmd::Sub(c, q)),
                1 => (0..3usize, 0..2usize).prop_map(|(c, q)| Cmd::Get(c, q)),
                5 => (0..3usize, 0..2usize, prop::bool::weighted(0.1))
                    .prop_map(|(c, q, e)| Cmd::Ack(c, q, e)),
                4 => (0..3usize, 0..2usize).prop_map(|(c, q)| Cmd::Send(c, q)),
                1 => (0..3usize).prop_map(Cmd::Close),
            ]
        }

        async fn run(cmds: Vec<Cmd>) -> Result<(), TestCaseError> {
            let shared = Shared::for_tests();
            let queues = [queue(1), queue(2)];
            for q in &queues {
                shared.store.create_queue(q.clone()).await.unwrap();
            }
            let mut next_id = 1;
            let mut conns: Vec<Conn> = (0..3)
                .map(|_| {
                    next_id += 1;
                    conn(next_id)
                })
                .collect();
            let mut model: [VecDeque<MsgId>; 2] = Default::default();
            let mut sent: u64 = 0;
            for cmd in cmds {
                let (c, q) = match cmd {
                    Cmd::Sub(c, q) | Cmd::Get(c, q) | Cmd::Ack(c, q, _) | Cmd::Send(c, q) => (c, q),
                    Cmd::Close(c) => (c, 0),
                };
                let holder = conns.iter().position(|x| x.holds[q]);
                let qr = &queues[q];
                let corr = b"corr";
                let cn = &mut conns[c];
                let client = Client {
                    outbox: &cn.outbox,
                    local: &mut cn.local,
                };
                // The connection's own answers, and whether an accepted ACK removed the head.
                let answer = match cmd {
                    Cmd::Sub(..) => shared.subscribe(client, qr, corr).await,
                    Cmd::Get(..) => shared.get(client, qr, corr).await,
                    Cmd::Ack(_, _, empty) => {
                        let id = if empty {
                            Vec::new()
                        } else {
                            cn.last[q].unwrap_or([9; 24]).to_vec()
                        };
                        let r = shared.ack(client, qr, corr, &id).await;
                        if r.is_ok()
                            && !empty
                            && model[q].front().map(|f| f.as_slice()) == Some(&id[..])
                        {
                            model[q].pop_front();
                        }
                        r
                    }
                    Cmd::Send(..) => {
                        sent += 1;
                        let mut id = [0u8; 24];
                        id[..8].copy_from_slice(&sent.to_be_bytes());
                        let m = NewMessage {
                            msg_id: id,
                            ts: 1,
                            flags: 0,
                            body: vec![7; 10],
                        };
                        let (outcome, own) =
                            shared.send_message(client, qr, m, None).await.unwrap();
                        prop_assert_eq!(
                            outcome,
                            AppendOutcome::Appended {
                                was_empty: model[q].is_empty()
                            }
                        );
                        model[q].push_back(id);
                        Ok(own)
                    }
                    Cmd::Close(_) => {
                        shared.client_closed(cn.outbox.id(), &cn.local);
                        cn.outbox.client.out.close();
                        next_id += 1;
                        conns[c] = conn(next_id);
                        Ok(Vec::new())
                    }
                };
                // The store holds exactly the model's messages: nothing lost, nothing reordered,
                // ACK removed exactly the head.
                let head = shared.store.peek_message(qr.recipient_id).await.unwrap();
                prop_assert_eq!(
                    head.as_ref().map(|m| *m.msg_id()),
                    model[q].front().copied()
                );
                prop_assert_eq!(
                    shared.store.message_count(qr.recipient_id).await.unwrap() as usize,
                    model[q].len()
                );
                let head = model[q].front().copied();
                // GET/SUB interplay.
                let cn = &mut conns[c];
                match cmd {
                    Cmd::Sub(..) => prop_assert_eq!(answer.is_err(), cn.get_mode[q]),
                    Cmd::Get(..) => prop_assert_eq!(answer.is_err(), cn.holds[q]),
                    _ => {}
                }
                if let Err(e) = &answer {
                    prop_assert!(
                        matches!(e, CmdError::NoMsg) && matches!(cmd, Cmd::Ack(..))
                            || matches!(
                                e,
                                CmdError::Cmd(hush_proto::error::CommandError::Prohibited)
                            ),
                        "{:?} -> {:?}",
                        cmd,
                        e
                    );
                }
                // Replies to the commanding connection, then events to everyone.
                let mut received: Vec<(usize, usize, BrokerMsg, bool)> = Vec::new();
                for r in answer.unwrap_or_default() {
                    prop_assert_eq!(r.entity_id.as_slice(), qr.recipient_id.as_slice());
                    received.push((c, q, r.msg, !r.corr_id.is_empty()));
                }
                for (x, cx) in conns.iter().enumerate() {
                    for (eq, m) in events(cx, &queues) {
                        received.push((x, eq, m, false));
                    }
                }
                let mut ends = 0;
                for (x, eq, m, corr) in received {
                    let cx = &mut conns[x];
                    match m {
                        BrokerMsg::Sok(_) => {
                            cx.holds[eq] = true;
                            cx.outstanding[eq] = None;
                        }
                        BrokerMsg::End => {
                            prop_assert!(
                                cx.holds[eq],
                                "END to a connection without the subscription"
                            );
                            prop_assert!(
                                matches!(cmd, Cmd::Sub(..)) && Some(x) == holder && x != c
                            );
                            cx.holds[eq] = false;
                            cx.outstanding[eq] = None;
                            ends += 1;
                        }
                        BrokerMsg::Ok => {
                            if let Cmd::Ack(..) = cmd {
                                cx.outstanding[eq] = None;
                            }
                            if let Cmd::Get(..) = cmd {
                                cx.get_mode[eq] = true;
                                cx.holds[eq] = false;
                            }
                        }
                        m => {
                            let id = msg_id(&m);
                            prop_assert!(id.is_some(), "unexpected {:?}", m);
                            prop_assert_eq!(eq, q);
                            prop_assert_eq!(id, head, "a message delivered not from the head");
                            cx.last[eq] = id;
                            if let Cmd::Get(..) = cmd {
                                prop_assert!(corr);
                                cx.get_mode[eq] = true;
                                cx.holds[eq] = false;
                            } else {
                                if corr {
                                    // The answer to an ACK: the previous one is acknowledged.
                                    cx.outstanding[eq] = None;
                                }
                                prop_assert!(
                                    cx.holds[eq],
                                    "MSG to a connection that is not the subscriber"
                                );
                                prop_assert_eq!(
                                    cx.outstanding[eq],
                                    None,
                                    "a second unacknowledged message"
                                );
                                cx.outstanding[eq] = id;
                            }
                        }
                    }
                }
                let takeover = matches!(cmd, Cmd::Sub(..))
                    && holder.is_some_and(|h| h != c)
                    && !conns[c].get_mode[q];
                prop_assert_eq!(ends, usize::from(takeover), "END count");
                // At most one holder per queue, the registry's subscriber; a holder with messages
                // waiting has one delivered.
                let held = (0..2)
                    .filter(|&qq| conns.iter().any(|x| x.holds[qq]))
                    .count();
                prop_assert_eq!(shared.subs.counts().0, held, "registry entries");
                for qq in 0..2 {
                    let holders: Vec<&Conn> = conns.iter().filter(|x| x.holds[qq]).collect();
                    prop_assert!(holders.len() <= 1);
                    if let Some(h) = holders.first() {
                        prop_assert!(
                            shared
                                .subs
                                .is_subscriber_for_tests(&queues[qq].recipient_id, h.outbox.id())
                        );
                        if !model[qq].is_empty() {
                            prop_assert!(
                                h.outstanding[qq].is_some(),
                                "an idle subscriber with messages waiting"
                            );
                        }
                    }
                }
            }
            Ok(())
        }

        use crate::server::auth::KeyCache;
        use crate::server::commands::{ConnCtx, DeferredSend};
        use crate::server::test_store::HeldCommits;

        /// A relay whose appends become durable only as the returned gate lets them, with
        /// queue 1.
        async fn held_relay() -> (Arc<tokio::sync::Semaphore>, Arc<Shared>, QueueRecord) {
            let gate = Arc::new(tokio::sync::Semaphore::new(0));
            let store = HeldCommits(hush_store::MemoryStore::new(128), gate.clone());
            let shared = Shared::for_tests_with(Arc::new(store));
            let qr = queue(1);
            shared.store.create_queue(qr.clone()).await.unwrap();
            (gate, shared, qr)
        }

        /// An unsigned `SEND` of `body` to `sender_id`, encoded as a client sends it.
        fn send_bytes(corr: &[u8], sender_id: &[u8], body: &[u8]) -> Vec<u8> {
            let cmd = hush_proto::smp::Command::Send {
                flags: hush_proto::smp::MsgFlags {
                    notification: false,
                },
                body: body.to_vec(),
            }
            .encode(VERSION);
            let mut out = Vec::new();
            let t = Transmission::new(corr, sender_id, &cmd);
            encode_transmission(&mut out, &t, VERSION, true).unwrap();
            out
        }

        /// `snd`'s connection context, its `SEND`s deferred into `deferred`.
        fn deferring_ctx<'a>(
            snd: &'a mut Conn,
            key: &'a hush_crypto::X25519Secret,
            keys: &'a KeyCache,
            deferred: &'a mut Vec<DeferredSend>,
        ) -> ConnCtx<'a> {
            ConnCtx {
                outbox: &snd.outbox,
                local: &mut snd.local,
                version: VERSION,
                session_id: &[1; 32],
                session_key: key,
                keys,
                proxy_secret: None,
                service: None,
                deferred: Some(deferred),
            }
        }

        /// A connection's `SEND`s whose commits have not ended are left in its deferred list
        /// (no answer yet, the connection reads on); each is answered `OK` under its own corrId
        /// once its commit ended, and the messages are stored in the order sent.
        #[tokio::test]
        async fn sends_waiting_for_their_commit_are_answered_when_it_ends() {
            let (gate, shared, qr) = held_relay().await;
            let mut snd = conn(3);
            let key = hush_crypto::X25519Secret::generate();
            let keys = KeyCache::default();
            let mut deferred: Vec<DeferredSend> = Vec::new();
            for (corr, body) in [(b"corr-one", b"first"), (b"corr-two", b"other")] {
                let mut c = deferring_ctx(&mut snd, &key, &keys, &mut deferred);
                let bytes = send_bytes(corr, &qr.sender_id, body);
                let answer = shared.process_transmission(&mut c, &bytes).await;
                assert!(answer.is_empty(), "no answer before the commit: {answer:?}");
            }
            assert_eq!(deferred.len(), 2);
            assert_eq!(
                shared.store.message_count(qr.recipient_id).await.unwrap(),
                2
            );
            gate.add_permits(2);
            let mut answers = Vec::new();
            for d in deferred {
                answers.extend(shared.send_done(d.await));
            }
            let got: Vec<(&[u8], &BrokerMsg)> = answers
                .iter()
                .map(|r| (r.corr_id.as_slice(), &r.msg))
                .collect();
            assert_eq!(
                got,
                vec![
                    (&b"corr-one"[..], &BrokerMsg::Ok),
                    (&b"corr-two"[..], &BrokerMsg::Ok)
                ]
            );
            let head = shared.store.peek_message(qr.recipient_id).await.unwrap();
            match head {
                Some(Message::Message(m)) => assert_eq!(m.body, b"first"),
                other => panic!("head {other:?}"),
            }
        }

        /// A connection that closes while its `SEND`s commit: they are still accounted once
        /// their commits end (the connection loop hands its list to `finish_deferred`).
        #[tokio::test]
        async fn a_closed_connections_sends_are_accounted_when_their_commits_end() {
            let (gate, shared, qr) = held_relay().await;
            let mut snd = conn(3);
            let key = hush_crypto::X25519Secret::generate();
            let keys = KeyCache::default();
            let mut deferred: Vec<DeferredSend> = Vec::new();
            let bytes = send_bytes(b"corr", &qr.sender_id, b"late");
            let mut c = deferring_ctx(&mut snd, &key, &keys, &mut deferred);
            assert!(shared.process_transmission(&mut c, &bytes).await.is_empty());
            let before = shared.metrics.messages_sent.get();
            gate.add_permits(1);
            crate::server::connection::finish_deferred(&shared, deferred).await;
            assert_eq!(shared.metrics.messages_sent.get(), before + 1);
        }

        /// `SEND` to a subscribed queue: the subscriber's `MSG` is queued as soon as the store
        /// decided the append, while its commit is still running; the sender's `OK` only after
        /// the commit.
        #[tokio::test]
        async fn the_subscriber_gets_the_message_before_the_sender_gets_ok() {
            let (gate, shared, qr) = held_relay().await;
            let (mut rcv, mut snd) = (conn(2), conn(3));
            let sub = Client {
                outbox: &rcv.outbox,
                local: &mut rcv.local,
            };
            shared.subscribe(sub, &qr, b"corr").await.unwrap();
            let _ = events(&rcv, std::slice::from_ref(&qr));
            let m = NewMessage {
                msg_id: [5; 24],
                ts: 1,
                flags: 0,
                body: vec![7; 10],
            };
            let client = Client {
                outbox: &snd.outbox,
                local: &mut snd.local,
            };
            let send = shared.send_message(client, &qr, m, None);
            tokio::pin!(send);
            let got = async {
                loop {
                    let ev = events(&rcv, std::slice::from_ref(&qr));
                    if !ev.is_empty() {
                        return ev;
                    }
                    tokio::task::yield_now().await;
                }
            };
            let ev = tokio::select! {
                _ = &mut send => panic!("SEND finished before its commit"),
                ev = tokio::time::timeout(std::time::Duration::from_secs(10), got) => {
                    ev.expect("MSG queued before the commit")
                }
            };
            assert_eq!(ev.len(), 1);
            assert_eq!(msg_id(&ev[0].1), Some([5; 24]));
            gate.add_permits(1);
            let (outcome, own) = send.await.unwrap();
            assert_eq!(outcome, AppendOutcome::Appended { was_empty: true });
            assert!(own.is_empty(), "the MSG went to the other connection");
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn shell_keeps_the_delivery_rules(cmds in proptest::collection::vec(cmd(), 1..50)) {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(run(cmds))?;
            }
        }
    }
}
