//! `NMSG` delivery (reference §3.8, §2.6): pending notifications are stored per notifier id by
//! `SEND` (see `commands.rs`) and flushed to the subscribed notifier connection, oldest first, as
//! `NMSG nonce encMeta` events. Only notifier ids marked since the last flush are looked at.
//!
//! When: [`NtfDelivery::Adaptive`] (the default) flushes as soon as a notifier id is marked after
//! a quiet period, so a lone notification leaves at once; under load a flush waits until
//! `max_delay` has passed since the previous one, so notifications arriving together share blocks
//! and no notification waits more than `max_delay` for company. [`NtfDelivery::Fixed`] is the
//! reference's fixed tick (1.5 s).
//!
//! Packing: the notifications of all the notifier ids one connection subscribed are packed into
//! groups of at most one block each (the batching rule of
//! [`hush_proto::transmission::batch_transmissions`]: ≈ 80 `NMSG`s per SMP block), and one group
//! takes one slot of that connection's outgoing queue. So a flush hands a notifier connection up
//! to `client_queue_blocks` full blocks, not one slot per notifier id.
//!
//! Bounded memory: a flush drains at most `NMSGS_PER_BLOCK` notifications per free slot of the
//! subscriber's queue (so the queue stays within `client_queue_blocks`, plus a group when some
//! notifications are larger than usual);
//! a subscriber that does not read keeps its notifications in the store (until they expire), and
//! the adaptive loop retries it with a back-off (up to [`RETRY_MAX`]) instead of spinning.
//!
//! Fairness: a flush takes at most `DRAIN_LIMIT` notifications per notifier id; an id with
//! more goes to the back of the next flush's order, an id skipped because its subscriber's queue
//! was full (or the flush's budget for that subscriber ran out before it) goes to the front.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hush_proto::encoding::ShortString;
use hush_proto::smp::BrokerMsg;
use hush_proto::transmission::{BATCH_OVERHEAD, MAX_BATCH_COUNT};
use hush_proto::version::SMP_BLOCK_SIZE;
use hush_store::EntityId;

use super::Shared;
use super::delivery::{ClientId, Outbox};
use crate::Shutdown;

/// Notifications handed out per notifier id and flush (the rest waits for the next flush).
const DRAIN_LIMIT: usize = 128;

/// The longest wait before retrying notifier ids whose subscriber's queue was full.
pub const RETRY_MAX: Duration = Duration::from_millis(1500);

/// When pending notifications are flushed to notifier subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NtfDelivery {
    /// At once after a quiet period; under load at most `max_delay` after the previous flush.
    Adaptive { max_delay: Duration },
    /// Every `interval`, whether or not anything is pending (the reference: 1.5 s).
    Fixed { interval: Duration },
}

impl NtfDelivery {
    /// The default: adaptive with a 10 ms bound (one flush per 10 ms under load packs ≈ 80
    /// notifications per block from ≈ 8,000 notifications/s on one notifier connection).
    pub const DEFAULT: NtfDelivery = NtfDelivery::Adaptive {
        max_delay: Duration::from_millis(10),
    };
    /// The reference's fixed 1.5 s tick.
    pub const REFERENCE: NtfDelivery = NtfDelivery::Fixed {
        interval: Duration::from_millis(1500),
    };
}

impl Default for NtfDelivery {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Notifier ids that may have pending notifications for a subscriber, in flush order, and the
/// wake-up of the flush loop when one is marked.
#[derive(Debug, Default)]
pub struct Dirty {
    ids: Mutex<DirtyIds>,
    wake: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct DirtyIds {
    order: VecDeque<EntityId>,
    set: HashSet<EntityId>,
}

impl Dirty {
    fn with<R>(&self, f: impl FnOnce(&mut DirtyIds) -> R) -> R {
        f(&mut self.ids.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn mark(&self, nid: EntityId) {
        let new = self.with(|d| {
            let new = d.set.insert(nid);
            if new {
                d.order.push_back(nid);
            }
            new
        });
        if new {
            // One stored permit at most: marks during a flush wake the loop once after it.
            self.wake.notify_one();
        }
    }

    fn is_empty(&self) -> bool {
        self.with(|d| d.order.is_empty())
    }

    fn take(&self) -> VecDeque<EntityId> {
        self.with(|d| {
            d.set = HashSet::new();
            std::mem::take(&mut d.order)
        })
    }

    /// Marks `first` ahead of everything marked so far (in their order), `last` behind.
    fn requeue(&self, first: Vec<EntityId>, last: Vec<EntityId>) {
        self.with(|d| {
            for nid in first.into_iter().rev() {
                if d.set.insert(nid) {
                    d.order.push_front(nid);
                }
            }
            for nid in last {
                if d.set.insert(nid) {
                    d.order.push_back(nid);
                }
            }
        })
    }
}

/// Flushes pending notifications as `mode` says until shutdown.
pub async fn flush_loop(shared: Arc<Shared>, mode: NtfDelivery, mut shutdown: Shutdown) {
    match mode {
        NtfDelivery::Fixed { interval } => {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tick.tick() => { flush_once(&shared).await; }
                }
            }
        }
        NtfDelivery::Adaptive { max_delay } => {
            let mut last: Option<Instant> = None;
            // Set while requeued ids wait (more than DRAIN_LIMIT pending, or a full queue).
            let mut retry: Option<Duration> = None;
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = shared.notify.wake.notified() => {}
                    _ = tokio::time::sleep(retry.unwrap_or(Duration::MAX)), if retry.is_some() => {}
                }
                if shared.notify.is_empty() {
                    // A stale wake-up: what was marked went out with the previous flush.
                    retry = None;
                    continue;
                }
                // Under load, let the notifications of the next `max_delay` share blocks.
                if let Some(wait) = last.and_then(|l| max_delay.checked_sub(l.elapsed())) {
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                let sent = flush_once(&shared).await;
                last = Some(Instant::now());
                retry = if shared.notify.is_empty() {
                    None
                } else if sent > 0 {
                    Some(max_delay)
                } else {
                    // Only subscribers that do not read: back off.
                    Some(
                        retry
                            .map_or(max_delay, |r| r * 2)
                            .clamp(max_delay, RETRY_MAX.max(max_delay)),
                    )
                };
            }
        }
    }
}

/// Transmissions for one subscriber, cut into groups of at most one block.
struct Pack {
    outbox: Outbox,
    group: Vec<Vec<u8>>,
    /// Bytes the current group takes in a batch (`Large` length prefixes included).
    used: usize,
}

impl Pack {
    /// Batch budget of one SMP block (the rule of `batch_transmissions`).
    const BUDGET: usize = SMP_BLOCK_SIZE - BATCH_OVERHEAD;

    fn add(&mut self, t: Vec<u8>) {
        let need = 2 + t.len();
        if !self.group.is_empty()
            && (self.used + need > Self::BUDGET || self.group.len() >= MAX_BATCH_COUNT)
        {
            self.finish();
        }
        self.used += need;
        self.group.push(t);
    }

    /// Queues the current group (one slot).
    fn finish(&mut self) {
        self.used = 0;
        self.outbox.push(std::mem::take(&mut self.group));
    }
}

/// `NMSG`s one SMP block holds (≈ 200-byte transmissions, see `pack_groups_fill_single_blocks`):
/// a flush drains at most this many notifications per free slot of a subscriber's queue.
const NMSGS_PER_BLOCK: usize = 80;

/// The notifier ids of one subscriber taken in one flush.
struct Drain {
    pack: Pack,
    ids: Vec<EntityId>,
    /// Notifications this flush may take for this subscriber (its free slots, in blocks).
    budget: usize,
}

/// One flush: for the marked notifier ids with a subscriber whose queue has room, drain their
/// notifications and queue them, packed into blocks, as events for that connection. Returns the
/// number of notifications queued.
///
/// The store is asked once per subscriber connection (one write job each, all concurrently, so
/// the SQLite writer takes them into one transaction), not once per notifier id: at 1,000
/// notifications/s over 10,000 notifier ids a flush touches a few dozen ids, and a transaction
/// each would add as many commits per flush.
pub async fn flush_once(shared: &Shared) -> u64 {
    let mut drains: HashMap<ClientId, Drain> = HashMap::new();
    // Subscribers in the order their first id came up (fair across connections).
    let mut order: Vec<ClientId> = Vec::new();
    let mut skipped = Vec::new();
    let dirty = shared.notify.take();
    for nid in dirty {
        let Some(outbox) = shared.subs.notifier_outbox(&nid) else {
            // No subscriber: notifications stay stored (up to their expiry) until `NSUB`.
            continue;
        };
        let drain = drains.entry(outbox.id()).or_insert_with(|| {
            order.push(outbox.id());
            let budget = outbox.free_slots() * NMSGS_PER_BLOCK;
            Drain {
                pack: Pack {
                    outbox,
                    group: Vec::new(),
                    used: 0,
                },
                ids: Vec::new(),
                budget,
            }
        });
        if drain.budget == 0 {
            // The subscriber is not reading: keep its notifications stored for a later flush.
            skipped.push(nid);
            continue;
        }
        drain.ids.push(nid);
    }
    let mut total = 0u64;
    let mut again = Vec::new();
    for id in &order {
        let Some(drain) = drains.get_mut(id) else {
            continue;
        };
        // Answered by the SQLite writer as soon as it ran, not after its commit (the store
        // trait's contract for this method): no fsync on the way to the NMSG.
        let result = shared
            .store
            .drain_notifications_many(drain.ids.clone(), DRAIN_LIMIT, drain.budget)
            .await;
        let taken = match result {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read pending notifications");
                Vec::new()
            }
        };
        let ids = std::mem::take(&mut drain.ids);
        let reached = taken.len();
        let mut sent = 0u64;
        for (nid, pending) in ids.iter().zip(taken) {
            if pending.len() == DRAIN_LIMIT {
                again.push(*nid);
            }
            for n in pending {
                let Ok(enc_meta) = ShortString::new(n.enc_meta) else {
                    continue;
                };
                let msg = BrokerMsg::NMsg {
                    nonce: n.nonce,
                    enc_meta,
                };
                let t = drain.pack.outbox.encode_event(nid, &msg);
                drain.pack.add(t);
                sent += 1;
            }
        }
        // Ids the budget (or an error) did not reach go first next time.
        skipped.extend_from_slice(&ids[reached..]);
        if !drain.pack.group.is_empty() {
            drain.pack.finish();
        }
        if sent > 0 {
            shared.metrics.messages_ntf_successes.inc_by(sent);
            total += sent;
        }
    }
    shared.notify.requeue(skipped, again);
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use hush_proto::transmission::batch_transmissions;

    fn nid(i: u32) -> EntityId {
        let mut id = [0u8; 24];
        id[..4].copy_from_slice(&i.to_be_bytes());
        id
    }

    #[test]
    fn dirty_order_and_requeue() {
        let d = Dirty::default();
        for i in 0..5 {
            d.mark(nid(i));
        }
        d.mark(nid(2)); // already marked: no duplicate
        let taken: Vec<_> = d.take().into_iter().collect();
        assert_eq!(taken, (0..5).map(nid).collect::<Vec<_>>());
        assert!(d.take().is_empty());
        d.mark(nid(7));
        d.requeue(vec![nid(3), nid(4)], vec![nid(1), nid(7)]);
        let taken: Vec<_> = d.take().into_iter().collect();
        assert_eq!(taken, vec![nid(3), nid(4), nid(7), nid(1)]);
    }

    /// Every group a pack queues is one block by `batch_transmissions`, and a group is only cut
    /// when the next transmission would not fit.
    #[tokio::test]
    async fn pack_groups_fill_single_blocks() {
        let client = Arc::new(super::super::delivery::ClientShared::new(
            1,
            18,
            vec![1; 32],
            1000,
        ));
        let mut pack = Pack {
            outbox: Outbox::new(client.clone()),
            group: Vec::new(),
            used: 0,
        };
        // NMSG-sized transmissions (≈ 200 bytes) and a few larger ones.
        let mut total = 0;
        for i in 0..1000usize {
            let len = if i % 97 == 0 { 3000 } else { 201 };
            pack.add(vec![i as u8; len]);
            total += 1;
        }
        pack.finish();
        let mut groups = Vec::new();
        while let Some(g) = client.out.take(1) {
            groups.push(g);
        }
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), total);
        for (i, g) in groups.iter().enumerate() {
            let batches = batch_transmissions(g, SMP_BLOCK_SIZE);
            assert_eq!(batches.len(), 1, "group {i} needs {} blocks", batches.len());
            assert!(batches[0].is_ok());
            if let Some(next) = groups.get(i + 1) {
                let mut more = g.clone();
                more.push(next[0].clone());
                assert_eq!(
                    batch_transmissions(&more, SMP_BLOCK_SIZE).len(),
                    2,
                    "group {i} was cut early"
                );
            }
        }
        // 201-byte NMSGs: 80 per block, as the reference batches them.
        let mut only_nmsg = Pack {
            outbox: Outbox::new(client.clone()),
            group: Vec::new(),
            used: 0,
        };
        for _ in 0..160 {
            only_nmsg.add(vec![0; 201]);
        }
        only_nmsg.finish();
        assert_eq!(client.out.take(1).map(|g| g.len()), Some(80));
        assert_eq!(client.out.take(1).map(|g| g.len()), Some(80));
        assert!(client.out.take(1).is_none());
    }

    fn eid(kind: u8, i: u32) -> EntityId {
        let mut id = [kind; 24];
        id[..4].copy_from_slice(&i.to_be_bytes());
        id
    }

    fn taken_nmsgs(client: &super::super::delivery::ClientShared) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(g) = client.out.take(usize::MAX) {
            all.extend(g);
        }
        all
    }

    /// Queue `i` with a notifier and one pending notification, its notifier id subscribed by
    /// the connection of `outbox`.
    async fn queue_with_pending_ntf(
        shared: &super::super::Shared,
        outbox: &Outbox,
        local: &mut super::super::delivery::LocalSubs,
        i: u32,
    ) {
        use super::super::delivery::Client;
        use hush_store::{NewMessage, NotifierCreds, PendingNtf, QueueRecord, QueueStatus};
        let (rid, nid, msg_id) = (eid(1, i), eid(2, i), eid(4, i));
        shared
            .store
            .create_queue(QueueRecord {
                recipient_id: rid,
                recipient_keys: vec![vec![1, 2, 3]],
                rcv_dh_secret: [0; 32],
                sender_id: eid(3, i),
                sender_key: None,
                mode: None,
                link: None,
                notifier: Some(NotifierCreds {
                    notifier_id: nid,
                    notifier_key: vec![4],
                    rcv_ntf_dh_secret: [0; 32],
                }),
                status: QueueStatus::Active,
                updated_at: None,
            })
            .await
            .unwrap();
        let ntf = PendingNtf {
            msg_id,
            ts: 0,
            nonce: [5; 24],
            enc_meta: vec![7; 144],
        };
        let msg = NewMessage {
            msg_id,
            ts: 0,
            flags: 1,
            body: Vec::new(),
        };
        shared
            .store
            .append_message(rid, msg, Some(ntf))
            .await
            .unwrap();
        shared.subscribe_notifier(Client { outbox, local }, nid);
    }

    /// One flush asks the store once per subscriber connection, not once per notifier id: with
    /// SQLite, 300 notifier ids on two connections are one write job each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flush_drains_each_connection_in_one_store_job() {
        use super::super::delivery::{ClientShared, LocalSubs};
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            hush_store::SqliteStore::open(dir.path().join("s.db"), Default::default()).unwrap(),
        );
        let shared = super::super::Shared::for_tests_with(store.clone());
        let a = Arc::new(ClientShared::new(1, 18, vec![1; 32], 16));
        let b = Arc::new(ClientShared::new(2, 18, vec![1; 32], 16));
        let (oa, ob) = (Outbox::new(a.clone()), Outbox::new(b.clone()));
        let (mut la, mut lb) = (LocalSubs::default(), LocalSubs::default());
        for i in 0..300 {
            if i % 3 == 0 {
                queue_with_pending_ntf(&shared, &ob, &mut lb, i).await;
            } else {
                queue_with_pending_ntf(&shared, &oa, &mut la, i).await;
            }
        }
        let before = store.writer_stats().ops;
        assert_eq!(flush_once(&shared).await, 300);
        // The drains are answered before their commit; a write after them resolves after its
        // own (the writer is serial), so the counters then include the drains.
        shared.store.touch_queue(eid(1, 0), 1).await.unwrap();
        assert_eq!(
            store.writer_stats().ops - before,
            2 + 1,
            "store jobs for one flush (+ the touch)"
        );
        assert_eq!(taken_nmsgs(&a).len(), 200);
        assert_eq!(taken_nmsgs(&b).len(), 100);
        // Drained: the next flush has nothing (and asks nothing).
        assert_eq!(flush_once(&shared).await, 0);
    }

    /// A subscriber that does not read: a flush stops draining the store once its queue is full
    /// (bounded), later flushes add nothing, and once it reads again every notification arrives
    /// exactly once (none was dropped or duplicated while they waited in the store).
    #[tokio::test]
    async fn notifications_wait_in_the_store_while_the_subscriber_queue_is_full() {
        use super::super::delivery::{ClientShared, LocalSubs};
        const N: u32 = 1000;
        const SLOTS: usize = 2;
        let shared = super::super::Shared::for_tests();
        let client = Arc::new(ClientShared::new(7, 18, vec![1; 32], SLOTS));
        let outbox = Outbox::new(client.clone());
        let mut local = LocalSubs::default();
        for i in 0..N {
            queue_with_pending_ntf(&shared, &outbox, &mut local, i).await;
        }
        // NMSG transmissions are ≈ 200 bytes: 80 per block; a flush takes 80 per free slot.
        let bound = SLOTS * NMSGS_PER_BLOCK;
        flush_once(&shared).await;
        let queued = |c: &ClientShared| c.out.queued_transmissions();
        let first = queued(&client);
        assert!(first > 0 && first <= bound, "{first} queued, bound {bound}");
        for _ in 0..5 {
            flush_once(&shared).await;
            assert_eq!(
                queued(&client),
                first,
                "nothing added while the queue is full"
            );
        }
        // The subscriber reads: everything arrives, each notifier id once.
        let mut seen = HashSet::new();
        let mut flushes = 0;
        while seen.len() < N as usize && flushes < 20 {
            for t in taken_nmsgs(&client) {
                let t = hush_proto::transmission::decode_transmission(&t, 18, true).unwrap();
                let nid: EntityId = t.entity_id.try_into().unwrap();
                assert!(seen.insert(nid), "duplicate NMSG");
                assert!(t.command.starts_with(b"NMSG "));
            }
            flush_once(&shared).await;
            flushes += 1;
        }
        assert_eq!(
            seen.len(),
            N as usize,
            "NMSGs received within {flushes} flushes"
        );
        assert!(taken_nmsgs(&client).is_empty());
        // 1000 NMSGs through 2 slots of ≈ 80: a handful of flushes, not one per 2 notifier ids.
        assert!(flushes <= 8, "{flushes} flushes");
    }
}
