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
//! Bounded memory: notifications are drained from the store only while the subscriber's queue
//! has room (so at most one group plus `DRAIN_LIMIT` notifications past `client_queue_blocks`);
//! a subscriber that does not read keeps its notifications in the store (until they expire), and
//! the adaptive loop retries it with a back-off (up to [`RETRY_MAX`]) instead of spinning.
//!
//! Fairness: a flush takes at most `DRAIN_LIMIT` notifications per notifier id; an id with
//! more goes to the back of the next flush's order, an id skipped because its subscriber's queue
//! was full goes to the front.

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

/// One flush: for the marked notifier ids with a subscriber whose queue has room, drain their
/// notifications and queue them, packed into blocks, as events for that connection. Returns the
/// number of notifications queued.
pub async fn flush_once(shared: &Shared) -> u64 {
    let mut total = 0u64;
    let mut packs: HashMap<ClientId, Pack> = HashMap::new();
    let mut skipped = Vec::new();
    let mut again = Vec::new();
    let mut dirty = shared.notify.take();
    while let Some(nid) = dirty.pop_front() {
        let Some(outbox) = shared.subs.notifier_outbox(&nid) else {
            // No subscriber: notifications stay stored (up to their expiry) until `NSUB`.
            continue;
        };
        let pack = packs.entry(outbox.id()).or_insert_with(|| Pack {
            outbox,
            group: Vec::new(),
            used: 0,
        });
        if !pack.outbox.has_room() {
            // The subscriber is not reading: keep its notifications stored for a later flush.
            skipped.push(nid);
            continue;
        }
        let pending = match shared.store.drain_notifications(nid, DRAIN_LIMIT).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read pending notifications");
                skipped.push(nid);
                skipped.extend(dirty.drain(..));
                break;
            }
        };
        if pending.len() == DRAIN_LIMIT {
            again.push(nid);
        }
        let mut sent = 0u64;
        for n in pending {
            let Ok(enc_meta) = ShortString::new(n.enc_meta) else {
                continue;
            };
            let msg = BrokerMsg::NMsg {
                nonce: n.nonce,
                enc_meta,
            };
            let t = pack.outbox.encode_event(&nid, &msg);
            pack.add(t);
            sent += 1;
        }
        if sent > 0 {
            shared.metrics.messages_ntf_successes.inc_by(sent);
            total += sent;
        }
    }
    for pack in packs.values_mut() {
        if !pack.group.is_empty() {
            pack.finish();
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

    /// A subscriber that does not read: a flush stops draining the store once its queue is full
    /// (bounded), later flushes add nothing, and once it reads again every notification arrives
    /// exactly once (none was dropped or duplicated while they waited in the store).
    #[tokio::test]
    async fn notifications_wait_in_the_store_while_the_subscriber_queue_is_full() {
        use super::super::delivery::{Client, ClientShared, LocalSubs};
        use hush_store::{NewMessage, NotifierCreds, PendingNtf, QueueRecord, QueueStatus};
        const N: u32 = 1000;
        const SLOTS: usize = 2;
        let shared = super::super::Shared::for_tests();
        let client = Arc::new(ClientShared::new(7, 18, vec![1; 32], SLOTS));
        let outbox = Outbox::new(client.clone());
        let mut local = LocalSubs::default();
        for i in 0..N {
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
            shared.subscribe_notifier(
                Client {
                    outbox: &outbox,
                    local: &mut local,
                },
                nid,
            );
        }
        // NMSG transmissions are ≈ 200 bytes: 80 per block.
        let bound = (SLOTS + 1) * 80 + DRAIN_LIMIT;
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
