//! The relay's delivery rules as a pure state machine (reference §3.7, §3.8; `Server.hs`
//! `subscribeQueueAndDeliver`, `getMessage`, `acknowledgeMsg`, `tryDeliverMessage`,
//! `endPreviousSubscriptions`). No locks, no store, no crypto, no clock reads, no tasks:
//! `delivery.rs` is the async shell that holds the queue's lock, reads and writes the store,
//! encrypts, counts metrics and queues the transmissions this module decides on.
//!
//! State:
//! * [`Registry`] (server-wide, one entry per subscribed queue): the queue's **subscriber**
//!   connection and the **one delivered, unacknowledged message** with its delivery time.
//! * [`ConnQueues`] (one per connection, owned by its task): how this connection uses each queue,
//!   `SUB` or `GET` (with the message the last `GET` returned).
//!
//! Inputs and what they return (the effects the shell carries out):
//!
//! | input (shell step) | call | effects |
//! |---|---|---|
//! | `SUB`, before the lock | [`ConnQueues::check_sub`] | `Err(Prohibited)` after `GET` |
//! | `SUB`, under the lock | [`Registry::subscribe`] | [`Previous::Other`]: `END` to it; reply `SOK`; peek the store |
//! | head found (`SUB`, `ACK`) | [`Registry::record_delivery`] | deliver it (`MSG`) |
//! | `GET` | [`ConnQueues::check_get`], then [`ConnQueues::got`] | `Err(Prohibited)` on the subscriber; peek; `MSG` or `OK` |
//! | `ACK id` | [`ConnQueues::ack`] | `Err(NoMsg)`; [`AckRoute::Get`]: delete, `OK`; [`AckRoute::Sub`]: next call |
//! | `ACK id` on a subscription, under the lock | [`Registry::ack`] | `Err(NoMsg)`; [`HeadFrom`]: delete or peek, then the head |
//! | `SEND` stored | [`Registry::stored`] | deliver the new message to the returned connection |
//! | `NEW` subscribing | [`Registry::subscribe_new`] | count the subscription |
//! | queue deleted | [`Registry::queue_deleted`] | [`Removed`]: `DELD` to it |
//! | connection closed | [`Registry::connection_closed`] | none |
//!
//! Rules:
//! * A queue has at most one subscriber; `SUB` from another connection moves the subscription
//!   there and the previous connection gets `END` (exactly once: its entry is replaced).
//! * A subscription has at most one delivered, unacknowledged message. `SUB` (also a repeated one)
//!   delivers the head; `ACK` of the delivered id (or an empty id) clears it, and the shell
//!   delivers the next head, if any, in the answer.
//! * `SEND` to an empty queue whose subscriber has nothing outstanding is delivered at once;
//!   otherwise the message waits for the `ACK` of the one before it.
//! * `GET` is prohibited on the connection that is the queue's subscriber, `SUB` on a connection
//!   that used `GET`. A subscription taken over by another connection turns into `GET` use on
//!   `GET`.
//!
//! Hot path: no allocation beyond what the shell did before (a delivered message is one small
//! box, as before); effects are small enums returned by value.

use std::collections::HashMap;
use std::time::Instant;

use hush_store::{EntityId, MsgId};

/// A connection's id (for logs and the control port; never a secret).
pub type ConnId = u64;

/// A handle on a connection that the registry can hold (the shell's `Outbox`; a plain
/// [`ConnId`] in tests).
pub trait Conn {
    fn conn_id(&self) -> ConnId;
}

impl Conn for ConnId {
    fn conn_id(&self) -> ConnId {
        *self
    }
}

/// A command the rules refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `ERR CMD PROHIBITED`: `SUB` after `GET`, or `GET` on the subscriber connection.
    Prohibited,
    /// `ERR NO_MSG`: `ACK` of something that is not the delivered message.
    NoMsg,
}

/// How a connection uses a queue (reference `Sub` with `ServerSub` / `ProhibitSub`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// `SUB`: the delivered message is tracked in the [`Registry`].
    Sub,
    /// `GET`: the message last returned by `GET`.
    Get { delivered: Option<MsgId> },
}

/// Whether `ACK msg_id` acknowledges `delivered` (an empty id matches whatever was delivered).
fn acks(msg_id: &[u8], delivered: &MsgId) -> bool {
    msg_id.is_empty() || msg_id == delivered.as_slice()
}

/// A connection's own view of the queues it uses (only its task touches it).
#[derive(Debug, Default)]
pub struct ConnQueues {
    map: SmallMap<Use>,
}

/// What an accepted `ACK` needs next ([`ConnQueues::ack`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckRoute {
    /// After `GET`: delete this message from the store (none for an empty id: nothing is
    /// deleted), then answer `OK`.
    Get { delete: Option<MsgId> },
    /// On a subscription: take the queue's lock and call [`Registry::ack`].
    Sub,
}

impl ConnQueues {
    /// Queues this connection has subscribed to with `SUB` (whether or not another connection
    /// took a subscription over since).
    pub fn subscribed_count(&self) -> usize {
        self.map.iter().filter(|(_, u)| **u == Use::Sub).count()
    }

    /// `SUB` input, first step: refused on a connection that used `GET` on the queue.
    pub fn check_sub(&self, rid: &EntityId) -> Result<(), Refusal> {
        match self.map.get(rid) {
            Some(Use::Get { .. }) => Err(Refusal::Prohibited),
            _ => Ok(()),
        }
    }

    /// `GET` input, first step: refused when this connection is the queue's subscriber
    /// (`is_subscriber` asks the registry, only when this connection subscribed the queue); a
    /// subscription another connection took over (it got `END`) is forgotten.
    pub fn check_get(
        &mut self,
        rid: &EntityId,
        is_subscriber: impl FnOnce() -> bool,
    ) -> Result<(), Refusal> {
        if let Some(Use::Sub) = self.map.get(rid) {
            if is_subscriber() {
                return Err(Refusal::Prohibited);
            }
            self.map.remove(rid);
        }
        Ok(())
    }

    /// `GET` input, second step: the store's head (returned to the client) or none.
    pub fn got(&mut self, rid: EntityId, head: Option<MsgId>) {
        self.map.insert(rid, Use::Get { delivered: head });
    }

    /// `ACK msg_id` input: refused unless the connection has the message delivered (after
    /// `GET`) or subscribed the queue (the registry decides, [`Registry::ack`]).
    pub fn ack(&mut self, rid: &EntityId, msg_id: &[u8]) -> Result<AckRoute, Refusal> {
        match self.map.get_mut(rid) {
            None => Err(Refusal::NoMsg),
            Some(Use::Get { delivered }) => match delivered {
                Some(d) if acks(msg_id, d) => {
                    *delivered = None;
                    Ok(AckRoute::Get {
                        delete: msg_id.try_into().ok(),
                    })
                }
                _ => Err(Refusal::NoMsg),
            },
            Some(Use::Sub) => Ok(AckRoute::Sub),
        }
    }

    /// The message the last `GET` returned and not yet acknowledged, when this connection uses
    /// the queue with `GET` (`Some(None)`: nothing outstanding); `None` otherwise.
    pub fn get_delivered(&self, rid: &EntityId) -> Option<Option<MsgId>> {
        match self.map.get(rid)? {
            Use::Get { delivered } => Some(*delivered),
            Use::Sub => None,
        }
    }

    /// Whether this connection subscribed the queue with `SUB` (the subscription may since have
    /// moved to another connection).
    pub fn used_sub(&self, rid: &EntityId) -> bool {
        self.map.get(rid) == Some(&Use::Sub)
    }
}

/// A queue's subscriber.
#[derive(Debug)]
struct Subscriber<H> {
    conn: H,
    /// The delivered, not yet acknowledged message and when it was delivered. Boxed: an idle
    /// subscription has none, and the registry holds one entry per subscribed queue.
    delivered: Option<Box<(MsgId, Instant)>>,
}

impl<H> Subscriber<H> {
    fn new(conn: H) -> Self {
        Subscriber {
            conn,
            delivered: None,
        }
    }
}

/// Who held a queue's subscription before a `SUB` ([`Registry::subscribe`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Previous<H> {
    /// Nobody: a new subscription.
    None,
    /// The same connection (a repeated `SUB`): its unacknowledged message is delivered again.
    Same,
    /// Another connection: it gets `END`.
    Other(H),
}

/// Where the head to deliver after an accepted `ACK` on a subscription comes from
/// ([`Registry::ack`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadFrom {
    /// Delete this message; the store's answer carries the new head.
    Delete(MsgId),
    /// An empty id: nothing is deleted; peek the head (the same message is delivered again).
    Peek,
}

/// An accepted `ACK` on a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubAck {
    pub next: HeadFrom,
    /// When the acknowledged message was delivered.
    pub delivered_at: Instant,
}

/// The subscription a deleted queue had ([`Registry::queue_deleted`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Removed<H> {
    pub conn: H,
    /// Send `DELD` to it (it is not the connection that deleted the queue).
    pub deld: bool,
}

/// Server-wide subscription state of the recipient queues.
#[derive(Debug)]
pub struct Registry<H> {
    subs: HashMap<EntityId, Subscriber<H>>,
}

impl<H> Default for Registry<H> {
    fn default() -> Self {
        Registry {
            subs: HashMap::new(),
        }
    }
}

impl<H: Conn + Clone> Registry<H> {
    /// Subscribed queues.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// The queue's subscriber.
    pub fn subscriber(&self, rid: &EntityId) -> Option<&H> {
        self.subs.get(rid).map(|s| &s.conn)
    }

    pub fn is_subscriber(&self, rid: &EntityId, me: ConnId) -> bool {
        self.subs.get(rid).is_some_and(|s| s.conn.conn_id() == me)
    }

    /// The queue's delivered, unacknowledged message.
    pub fn delivered(&self, rid: &EntityId) -> Option<MsgId> {
        self.subs.get(rid)?.delivered.as_ref().map(|d| d.0)
    }

    /// `SUB` input, under the queue's lock (after [`ConnQueues::check_sub`]): `conn` becomes
    /// the subscriber with nothing delivered; the shell answers `SOK`, sends `END` to a
    /// [`Previous::Other`], then peeks the store and delivers the head
    /// ([`Registry::record_delivery`]).
    pub fn subscribe(&mut self, local: &mut ConnQueues, rid: EntityId, conn: H) -> Previous<H> {
        let me = conn.conn_id();
        let previous = match self.subs.insert(rid, Subscriber::new(conn)) {
            None => Previous::None,
            Some(p) if p.conn.conn_id() == me => Previous::Same,
            Some(p) => Previous::Other(p.conn),
        };
        local.map.insert(rid, Use::Sub);
        previous
    }

    /// `NEW` in subscribe mode: the creating connection subscribes the new, empty queue. Returns
    /// whether the queue had no subscriber (the shell counts the subscription).
    pub fn subscribe_new(&mut self, local: &mut ConnQueues, rid: EntityId, conn: H) -> bool {
        let new = self.subs.insert(rid, Subscriber::new(conn)).is_none();
        local.map.insert(rid, Use::Sub);
        new
    }

    /// Head found input (`SUB`, `ACK`, under the queue's lock): the shell delivers `head` to
    /// `me` and it becomes the delivered message, when `me` is (still) the subscriber. Returns
    /// whether it was recorded.
    pub fn record_delivery(
        &mut self,
        rid: &EntityId,
        me: ConnId,
        head: MsgId,
        now: Instant,
    ) -> bool {
        match self.subs.get_mut(rid) {
            Some(s) if s.conn.conn_id() == me => {
                s.delivered = Some(Box::new((head, now)));
                true
            }
            _ => false,
        }
    }

    /// `ACK msg_id` input on a subscription (after [`AckRoute::Sub`]), under the queue's lock:
    /// accepted when `me` is the subscriber and `msg_id` is the delivered message (or empty
    /// while one is delivered). The delivered message is cleared; the shell deletes it (or
    /// peeks) and delivers the new head with the `ACK`'s corrId, or answers `OK`.
    pub fn ack(&mut self, rid: &EntityId, me: ConnId, msg_id: &[u8]) -> Result<SubAck, Refusal> {
        let s = match self.subs.get_mut(rid) {
            Some(s) if s.conn.conn_id() == me => s,
            _ => return Err(Refusal::NoMsg),
        };
        let (delivered, delivered_at) = match s.delivered.as_deref() {
            Some(&(d, at)) if acks(msg_id, &d) => (d, at),
            _ => return Err(Refusal::NoMsg),
        };
        s.delivered = None;
        let next = if msg_id.is_empty() {
            HeadFrom::Peek
        } else {
            HeadFrom::Delete(delivered)
        };
        Ok(SubAck { next, delivered_at })
    }

    /// `SEND` stored input, under the queue's lock: a message appended to a queue that was
    /// empty goes at once to a subscriber that has nothing outstanding (it becomes the
    /// delivered message; `now` is read only then). Returns that subscriber.
    pub fn stored(
        &mut self,
        rid: &EntityId,
        was_empty: bool,
        msg_id: MsgId,
        now: impl FnOnce() -> Instant,
    ) -> Option<H> {
        if !was_empty {
            return None;
        }
        match self.subs.get_mut(rid) {
            Some(s) if s.delivered.is_none() => {
                s.delivered = Some(Box::new((msg_id, now())));
                Some(s.conn.clone())
            }
            _ => None,
        }
    }

    /// Queue deleted input (`DEL` by connection `by`, or the control port): the subscription
    /// ends; its connection gets `DELD` unless it deleted the queue itself.
    pub fn queue_deleted(&mut self, rid: &EntityId, by: Option<ConnId>) -> Option<Removed<H>> {
        let s = self.subs.remove(rid)?;
        let deld = Some(s.conn.conn_id()) != by;
        Some(Removed { conn: s.conn, deld })
    }

    /// Connection closed input: the subscriptions it still holds end (no events).
    pub fn connection_closed(&mut self, me: ConnId, local: &ConnQueues) {
        for (rid, u) in local.map.iter() {
            if *u == Use::Sub && self.is_subscriber(rid, me) {
                self.subs.remove(rid);
            }
        }
    }

    /// For `QUE`: (subscription thread name, delivered msg id) of connection `me`'s use of
    /// the queue.
    pub fn info(
        &self,
        local: &ConnQueues,
        rid: &EntityId,
        me: ConnId,
    ) -> Option<(&'static str, Option<MsgId>)> {
        match local.map.get(rid)? {
            Use::Get { delivered } => Some(("prohibitSub", *delivered)),
            Use::Sub => {
                let s = self.subs.get(rid).filter(|s| s.conn.conn_id() == me)?;
                Some(("noSub", s.delivered.as_ref().map(|d| d.0)))
            }
        }
    }
}

/// A map by entity id that stays a small exactly-sized vector (linear search) up to
/// [`SMALL_MAP_MAX`] entries and becomes a hash map above: most connections use a few queues,
/// and an empty or one-entry hash map costs a 4-bucket table per connection.
#[derive(Debug)]
pub(crate) enum SmallMap<V> {
    Few(Vec<(EntityId, V)>),
    // Boxed on purpose: keeps the enum at a `Vec`'s size (the small case is the common one).
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<EntityId, V>>),
}

pub(crate) const SMALL_MAP_MAX: usize = 8;

impl<V> Default for SmallMap<V> {
    fn default() -> Self {
        SmallMap::Few(Vec::new())
    }
}

impl<V> SmallMap<V> {
    pub(crate) fn get(&self, k: &EntityId) -> Option<&V> {
        match self {
            SmallMap::Few(v) => v.iter().find(|(id, _)| id == k).map(|(_, x)| x),
            SmallMap::Many(m) => m.get(k),
        }
    }

    pub(crate) fn get_mut(&mut self, k: &EntityId) -> Option<&mut V> {
        match self {
            SmallMap::Few(v) => v.iter_mut().find(|(id, _)| id == k).map(|(_, x)| x),
            SmallMap::Many(m) => m.get_mut(k),
        }
    }

    pub(crate) fn insert(&mut self, k: EntityId, x: V) {
        match self {
            SmallMap::Few(v) => {
                if let Some(slot) = v.iter_mut().find(|(id, _)| *id == k) {
                    slot.1 = x;
                } else if v.len() < SMALL_MAP_MAX {
                    v.reserve_exact(1);
                    v.push((k, x));
                } else {
                    let mut m: HashMap<EntityId, V> = std::mem::take(v).into_iter().collect();
                    m.insert(k, x);
                    *self = SmallMap::Many(Box::new(m));
                }
            }
            SmallMap::Many(m) => {
                m.insert(k, x);
            }
        }
    }

    pub(crate) fn remove(&mut self, k: &EntityId) {
        match self {
            SmallMap::Few(v) => {
                v.retain(|(id, _)| id != k);
                v.shrink_to_fit();
            }
            SmallMap::Many(m) => {
                m.remove(k);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            SmallMap::Few(v) => v.len(),
            SmallMap::Many(m) => m.len(),
        }
    }

    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = (&EntityId, &V)> + '_> {
        match self {
            SmallMap::Few(v) => Box::new(v.iter().map(|(k, x)| (k, x))),
            SmallMap::Many(m) => Box::new(m.iter()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u8) -> EntityId {
        [i; 24]
    }

    /// The small map behaves as a map below, at and above the switch to a hash map, and shrinks
    /// back to nothing when emptied while small.
    #[test]
    fn small_map_is_a_map() {
        let mut m: SmallMap<u32> = SmallMap::default();
        let mut reference = HashMap::new();
        for round in 0..3u32 {
            for i in 0..20u8 {
                m.insert(id(i), u32::from(i) + round);
                reference.insert(id(i), u32::from(i) + round);
                assert_eq!(m.len(), reference.len());
                if m.len() <= SMALL_MAP_MAX {
                    assert!(matches!(m, SmallMap::Few(_)));
                }
            }
            for i in 0..25u8 {
                assert_eq!(m.get(&id(i)), reference.get(&id(i)));
            }
            *m.get_mut(&id(3)).unwrap() = 99;
            reference.insert(id(3), 99);
            let mut all: Vec<_> = m.iter().map(|(k, v)| (*k, *v)).collect();
            let mut want: Vec<_> = reference.iter().map(|(k, v)| (*k, *v)).collect();
            all.sort();
            want.sort();
            assert_eq!(all, want);
            for i in (0..20u8).step_by(2) {
                m.remove(&id(i));
                reference.remove(&id(i));
            }
            assert_eq!(m.len(), reference.len());
        }
        let mut small: SmallMap<()> = SmallMap::default();
        small.insert(id(1), ());
        small.insert(id(1), ());
        assert_eq!(small.len(), 1);
        small.remove(&id(1));
        match &small {
            SmallMap::Few(v) => assert_eq!(v.capacity(), 0),
            SmallMap::Many(_) => panic!("small map became a hash map"),
        }
    }
}
