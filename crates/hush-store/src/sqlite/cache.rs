//! Bounded in-memory cache of queue records and queue heads, shared by the readers and the
//! writer thread, so the relay's per-message lookups (`get_by_sender` on `SEND`,
//! `get_by_recipient` on `ACK`, `peek_message` on delivery) neither go to SQLite nor decode a
//! row, nor hop to the blocking pool.
//!
//! Consistency: the cache only ever holds committed state.
//! * The writer thread is the only place where the database changes. After a batch committed
//!   (and before any caller of that batch is answered) it applies the batch's effects here:
//!   a changed queue record is replaced by its committed value (read back in the transaction),
//!   a deleted one dropped, a queue's new head set.
//!   A write that resolved is therefore visible to every lookup that starts after it.
//! * A miss is read from SQLite by a reader and then filled in, but only if nothing that could
//!   make the read stale happened in between: every invalidation, eviction and "head unknown"
//!   bumps [`Inner::epoch`], and a fill carries the epoch seen before its read and is dropped
//!   if the epoch moved (or the slot was filled meanwhile). Drops are safe: the reader still
//!   returns what it read (a committed state no older than its start).
//!
//! Bounds: at most `capacity` queue records (least recently used evicted) and at most
//! `head_budget` bytes of cached head message bodies (beyond it a head is left unknown and read
//! from SQLite when asked for). Unknown ids are not cached one by one; but while the cache is
//! *complete* (all queues loaded at open, no eviction since) a miss is the answer "no such
//! queue", so lookups of unknown and known ids take the same path and time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use hashlink::LruCache;

use crate::types::{EntityId, Message, QueueRecord};

/// What the cache knows of a queue's head.
#[derive(Clone, Debug)]
enum Head {
    Unknown,
    Empty,
    Item(Arc<Message>),
}

struct Entry {
    record: Arc<QueueRecord>,
    head: Head,
}

fn head_bytes(h: &Head) -> usize {
    match h {
        Head::Item(m) => match &**m {
            Message::Message(m) => m.body.len() + 64,
            Message::QuotaMarker { .. } => 64,
        },
        _ => 0,
    }
}

/// Which id a lookup is by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    Recipient,
    Sender,
    Notifier,
    Link,
}

/// A committed change, applied by the writer thread after its batch committed.
#[derive(Debug)]
pub(crate) enum Effect {
    /// The queue record as committed now (`None`: deleted).
    Record(EntityId, Option<Box<QueueRecord>>),
    /// The queue's head is now this (`None` = empty).
    Head(EntityId, Option<Message>),
    /// The queue's head is not known any more (partial expiry).
    HeadUnknown(EntityId),
    /// Every queue's head is unknown (expiry over all queues).
    AllHeadsUnknown,
}

struct Inner {
    epoch: u64,
    /// Every queue of the database is cached: a miss means "no such queue".
    complete: bool,
    entries: LruCache<EntityId, Entry>,
    by_sender: HashMap<EntityId, EntityId>,
    by_notifier: HashMap<EntityId, EntityId>,
    by_link: HashMap<EntityId, EntityId>,
    head_bytes: usize,
}

impl Inner {
    fn index(&mut self, q: &QueueRecord) {
        let rid = q.recipient_id;
        self.by_sender.insert(q.sender_id, rid);
        if let Some(n) = &q.notifier {
            self.by_notifier.insert(n.notifier_id, rid);
        }
        if let Some(l) = &q.link {
            self.by_link.insert(l.link_id, rid);
        }
    }

    fn unindex(&mut self, q: &QueueRecord) {
        self.by_sender.remove(&q.sender_id);
        if let Some(n) = &q.notifier {
            self.by_notifier.remove(&n.notifier_id);
        }
        if let Some(l) = &q.link {
            self.by_link.remove(&l.link_id);
        }
    }

    fn remove(&mut self, rid: &EntityId) {
        if let Some(e) = self.entries.remove(rid) {
            self.unindex(&e.record);
            self.head_bytes -= head_bytes(&e.head);
        }
        self.epoch += 1;
    }

    fn set_head(&mut self, rid: &EntityId, head: Head, budget: usize) {
        let Some(e) = self.entries.peek_mut(rid) else {
            return;
        };
        let old = head_bytes(&e.head);
        let new = head_bytes(&head);
        let head = if self.head_bytes - old + new > budget {
            Head::Unknown
        } else {
            head
        };
        let unknown = matches!(head, Head::Unknown);
        self.head_bytes = self.head_bytes - old + head_bytes(&head);
        e.head = head;
        if unknown {
            self.epoch += 1;
        }
    }
}

/// See the module docs.
pub(crate) struct Cache {
    inner: Mutex<Inner>,
    capacity: usize,
    head_budget: usize,
}

/// A miss: the epoch to pass to the fill after reading SQLite.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Miss(u64);

impl Cache {
    /// `capacity` = 0 disables the cache (every lookup is a miss and nothing is filled).
    pub(crate) fn new(capacity: usize, head_budget: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                epoch: 0,
                complete: false,
                // Unbounded map: the bound is enforced (with index upkeep) in `fill_record`.
                entries: LruCache::new_unbounded(),
                by_sender: HashMap::new(),
                by_notifier: HashMap::new(),
                by_link: HashMap::new(),
                head_bytes: 0,
            }),
            capacity,
            head_budget,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The cache is consistent after every method (no panics inside), so a poisoned lock
        // (a panic elsewhere while holding it cannot happen) is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Load every queue of the database (at open, before the writer starts): if they fit,
    /// the cache is complete and unknown ids are answered without SQLite (and in the same time
    /// as known ones) until the first eviction.
    pub(crate) fn load_all(&self, queues: Vec<QueueRecord>) {
        if self.capacity == 0 || queues.len() > self.capacity / 2 {
            return;
        }
        for q in &queues {
            let miss = Miss(self.lock().epoch);
            self.fill_record(miss, q);
        }
        self.lock().complete = true;
    }

    /// The cached record for an id: `Ok(None)` when the cache is complete and has no such id,
    /// else a [`Miss`].
    pub(crate) fn lookup(&self, key: Key, id: &EntityId) -> Result<Option<QueueRecord>, Miss> {
        let mut g = self.lock();
        let rid = match key {
            Key::Recipient => Some(*id),
            Key::Sender => g.by_sender.get(id).copied(),
            Key::Notifier => g.by_notifier.get(id).copied(),
            Key::Link => g.by_link.get(id).copied(),
        };
        let epoch = g.epoch;
        let complete = g.complete;
        match rid.and_then(|rid| g.entries.get(&rid)) {
            Some(e) => Ok(Some(QueueRecord::clone(&e.record))),
            None if complete => Ok(None),
            None => Err(Miss(epoch)),
        }
    }

    /// Store a record read from SQLite after `miss` (dropped if anything changed since).
    pub(crate) fn fill_record(&self, miss: Miss, q: &QueueRecord) {
        if self.capacity == 0 {
            return;
        }
        let mut g = self.lock();
        if g.epoch != miss.0 || g.entries.contains_key(&q.recipient_id) {
            return;
        }
        // Committed states are consistent: no other cached queue holds these ids.
        g.index(q);
        g.entries.insert(
            q.recipient_id,
            Entry {
                record: Arc::new(q.clone()),
                head: Head::Unknown,
            },
        );
        self.evict(&mut g);
    }

    fn evict(&self, g: &mut Inner) {
        while g.entries.len() > self.capacity {
            let Some((_, old)) = g.entries.remove_lru() else {
                break;
            };
            g.unindex(&old.record);
            g.head_bytes -= head_bytes(&old.head);
            g.epoch += 1;
            g.complete = false;
        }
    }

    /// The cached head of a queue (`Ok(None)` = known empty), or a miss: `Err(Some(_))` when
    /// the queue is cached but its head is not (the head may be filled after reading it),
    /// `Err(None)` when the queue is not cached.
    pub(crate) fn peek(&self, rid: &EntityId) -> Result<Option<Message>, Option<Miss>> {
        let g = self.lock();
        match g.entries.peek(rid).map(|e| &e.head) {
            Some(Head::Empty) => Ok(None),
            Some(Head::Item(m)) => Ok(Some(Message::clone(m))),
            Some(Head::Unknown) => Err(Some(Miss(g.epoch))),
            None => Err(None),
        }
    }

    /// Store a head read from SQLite after `miss` (dropped if anything changed since).
    pub(crate) fn fill_head(&self, miss: Miss, rid: &EntityId, head: Option<&Message>) {
        let mut g = self.lock();
        if g.epoch != miss.0 || !matches!(g.entries.peek(rid).map(|e| &e.head), Some(Head::Unknown))
        {
            return;
        }
        let head = match head {
            None => Head::Empty,
            Some(m) => Head::Item(Arc::new(m.clone())),
        };
        g.set_head(rid, head, self.head_budget);
    }

    /// Apply a committed batch's effects (writer thread, after `COMMIT`, before answering).
    pub(crate) fn apply(&self, effects: &mut Vec<Effect>) {
        if effects.is_empty() {
            return;
        }
        let mut g = self.lock();
        for e in effects.drain(..) {
            match e {
                Effect::Record(rid, None) => g.remove(&rid),
                Effect::Record(rid, Some(q)) => {
                    if let Some(old) = g.entries.peek(&rid).map(|e| e.record.clone()) {
                        g.unindex(&old);
                        g.index(&q);
                        if let Some(e) = g.entries.peek_mut(&rid) {
                            e.record = Arc::new(*q);
                        }
                    } else if g.complete {
                        // A new queue (complete: every other one is here): empty.
                        g.index(&q);
                        g.entries.insert(
                            rid,
                            Entry {
                                record: Arc::new(*q),
                                head: Head::Empty,
                            },
                        );
                        self.evict(&mut g);
                    } else {
                        g.epoch += 1;
                    }
                }
                Effect::Head(rid, head) => {
                    let head = match head {
                        None => Head::Empty,
                        Some(m) => Head::Item(Arc::new(m)),
                    };
                    g.set_head(&rid, head, self.head_budget);
                }
                Effect::HeadUnknown(rid) => {
                    g.set_head(&rid, Head::Unknown, self.head_budget);
                    g.epoch += 1;
                }
                Effect::AllHeadsUnknown => {
                    for (_, e) in g.entries.iter_mut() {
                        e.head = Head::Unknown;
                    }
                    g.head_bytes = 0;
                    g.epoch += 1;
                }
            }
        }
    }

    /// Queue records cached (tests, metrics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{NewMessage, NotifierCreds, QueueStatus};

    fn q(n: u8) -> QueueRecord {
        QueueRecord {
            recipient_id: [n; 24],
            recipient_keys: vec![vec![1; 44]],
            rcv_dh_secret: [0; 32],
            sender_id: [n + 100; 24],
            sender_key: None,
            mode: None,
            link: None,
            notifier: Some(NotifierCreds {
                notifier_id: [n + 50; 24],
                notifier_key: vec![2; 44],
                rcv_ntf_dh_secret: [3; 32],
            }),
            status: QueueStatus::Active,
            updated_at: None,
        }
    }

    fn msg(len: usize) -> Message {
        Message::Message(NewMessage {
            msg_id: [9; 24],
            ts: 1,
            flags: 0,
            body: vec![0; len],
        })
    }

    #[test]
    fn fill_then_hit_by_every_id() {
        let c = Cache::new(8, 1 << 20);
        let miss = c.lookup(Key::Sender, &[101; 24]).unwrap_err();
        c.fill_record(miss, &q(1));
        assert_eq!(c.lookup(Key::Sender, &[101; 24]).unwrap(), Some(q(1)));
        assert_eq!(c.lookup(Key::Recipient, &[1; 24]).unwrap(), Some(q(1)));
        assert_eq!(c.lookup(Key::Notifier, &[51; 24]).unwrap(), Some(q(1)));
        assert!(c.lookup(Key::Link, &[1; 24]).is_err());
    }

    #[test]
    fn a_fill_after_an_invalidation_is_dropped() {
        let c = Cache::new(8, 1 << 20);
        let miss = c.lookup(Key::Recipient, &[1; 24]).unwrap_err();
        // The writer commits a change to the queue while the reader reads SQLite.
        c.apply(&mut vec![Effect::Record([1; 24], None)]);
        c.fill_record(miss, &q(1));
        assert!(c.lookup(Key::Recipient, &[1; 24]).is_err());
    }

    #[test]
    fn invalidation_drops_all_ids() {
        let c = Cache::new(8, 1 << 20);
        c.fill_record(c.lookup(Key::Recipient, &[1; 24]).unwrap_err(), &q(1));
        c.apply(&mut vec![Effect::Record([1; 24], None)]);
        assert!(c.lookup(Key::Sender, &[101; 24]).is_err());
        assert!(c.lookup(Key::Notifier, &[51; 24]).is_err());
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn capacity_evicts_least_recently_used() {
        let c = Cache::new(2, 1 << 20);
        for n in 1..=2 {
            c.fill_record(c.lookup(Key::Recipient, &[n; 24]).unwrap_err(), &q(n));
        }
        c.lookup(Key::Recipient, &[1; 24]).unwrap().unwrap(); // 2 is now the LRU
        c.fill_record(c.lookup(Key::Recipient, &[3; 24]).unwrap_err(), &q(3));
        assert_eq!(c.len(), 2);
        assert!(c.lookup(Key::Recipient, &[1; 24]).is_ok());
        assert!(c.lookup(Key::Recipient, &[2; 24]).is_err());
        assert!(c.lookup(Key::Sender, &[102; 24]).is_err());
        assert!(c.lookup(Key::Sender, &[103; 24]).is_ok());
    }

    #[test]
    fn heads_follow_the_writer_and_respect_the_budget() {
        let c = Cache::new(8, 1000);
        c.fill_record(c.lookup(Key::Recipient, &[1; 24]).unwrap_err(), &q(1));
        let miss = c.peek(&[1; 24]).unwrap_err().unwrap();
        c.fill_head(miss, &[1; 24], None);
        assert_eq!(c.peek(&[1; 24]).unwrap(), None);
        c.apply(&mut vec![Effect::Head([1; 24], Some(msg(100)))]);
        assert_eq!(c.peek(&[1; 24]).unwrap(), Some(msg(100)));
        // Over the byte budget: the head is not kept.
        c.apply(&mut vec![Effect::Head([1; 24], Some(msg(2000)))]);
        assert!(c.peek(&[1; 24]).unwrap_err().is_some());
        // A head read before a commit that left the head unknown is not filled in.
        let miss = c.peek(&[1; 24]).unwrap_err().unwrap();
        c.apply(&mut vec![Effect::HeadUnknown([1; 24])]);
        c.fill_head(miss, &[1; 24], Some(&msg(10)));
        assert!(c.peek(&[1; 24]).is_err());
        // Not cached queue: no head kept.
        c.apply(&mut vec![Effect::Head([2; 24], None)]);
        assert!(matches!(c.peek(&[2; 24]), Err(None)));
    }

    #[test]
    fn complete_cache_answers_unknown_ids_until_an_eviction() {
        let c = Cache::new(4, 1 << 20);
        c.load_all(vec![q(1)]);
        assert_eq!(c.lookup(Key::Sender, &[101; 24]).unwrap(), Some(q(1)));
        assert_eq!(c.lookup(Key::Sender, &[7; 24]).unwrap(), None);
        // A queue created (committed) is inserted, known empty.
        c.apply(&mut vec![Effect::Record([2; 24], Some(Box::new(q(2))))]);
        assert_eq!(c.lookup(Key::Notifier, &[52; 24]).unwrap(), Some(q(2)));
        assert_eq!(c.peek(&[2; 24]).unwrap(), None);
        // A changed record replaces the old one, its old ids are gone.
        let mut q2 = q(2);
        q2.notifier = None;
        c.apply(&mut vec![Effect::Record(
            [2; 24],
            Some(Box::new(q2.clone())),
        )]);
        assert_eq!(c.lookup(Key::Recipient, &[2; 24]).unwrap(), Some(q2));
        assert_eq!(c.lookup(Key::Notifier, &[52; 24]).unwrap(), None);
        // Deleted.
        c.apply(&mut vec![Effect::Record([1; 24], None)]);
        assert_eq!(c.lookup(Key::Sender, &[101; 24]).unwrap(), None);
        // Past the capacity: no longer complete, unknown ids are misses again.
        for n in 3..=7 {
            c.apply(&mut vec![Effect::Record([n; 24], Some(Box::new(q(n))))]);
        }
        assert_eq!(c.len(), 4);
        assert!(c.lookup(Key::Sender, &[7; 24]).is_err());
    }

    #[test]
    fn too_many_queues_at_open_leave_the_cache_partial() {
        let c = Cache::new(4, 1 << 20);
        c.load_all((1..=3).map(q).collect());
        assert!(c.lookup(Key::Sender, &[101; 24]).is_err());
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn disabled_cache_never_hits() {
        let c = Cache::new(0, 1 << 20);
        c.fill_record(c.lookup(Key::Recipient, &[1; 24]).unwrap_err(), &q(1));
        assert!(c.lookup(Key::Recipient, &[1; 24]).is_err());
    }
}
