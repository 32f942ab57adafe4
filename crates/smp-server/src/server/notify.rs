//! `NMSG` batching (reference §3.8): pending notifications are stored per notifier id by `SEND`
//! (see `commands.rs`) and flushed to the subscribed notifier connection every ~1.5 s, oldest first,
//! as `NMSG nonce encMeta` events. Only notifier ids marked since the last flush are looked at.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hush_proto::encoding::ShortString;
use hush_proto::smp::BrokerMsg;
use hush_store::EntityId;

use super::Shared;
use crate::Shutdown;

/// Notifications handed out per notifier id and flush (the rest waits for the next flush).
const DRAIN_LIMIT: usize = 256;

/// Notifier ids that may have pending notifications for a subscriber.
#[derive(Debug, Default)]
pub struct Dirty(Mutex<HashSet<EntityId>>);

impl Dirty {
    pub fn mark(&self, nid: EntityId) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(nid);
    }
    fn take(&self) -> HashSet<EntityId> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Flushes pending notifications every `interval` until shutdown.
pub async fn flush_loop(shared: Arc<Shared>, interval: Duration, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => flush_once(&shared).await,
        }
    }
}

/// One flush: for every marked notifier id with a subscriber, drain its notifications and queue
/// them as events for that connection.
pub async fn flush_once(shared: &Shared) {
    for nid in shared.notify.take() {
        let Some(outbox) = shared.subs.notifier_outbox(&nid) else {
            // No subscriber: notifications stay stored (up to their expiry) until `NSUB`.
            continue;
        };
        if !outbox.has_room() {
            // The subscriber is not reading: keep its notifications stored for a later flush.
            shared.notify.mark(nid);
            continue;
        }
        let pending = match shared.store.drain_notifications(nid, DRAIN_LIMIT).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read pending notifications");
                shared.notify.mark(nid);
                continue;
            }
        };
        if pending.len() == DRAIN_LIMIT {
            shared.notify.mark(nid);
        }
        let msgs: Vec<BrokerMsg> = pending
            .into_iter()
            .filter_map(|n| {
                Some(BrokerMsg::NMsg {
                    nonce: n.nonce,
                    enc_meta: ShortString::new(n.enc_meta).ok()?,
                })
            })
            .collect();
        if !msgs.is_empty() {
            shared
                .metrics
                .messages_ntf_successes
                .inc_by(msgs.len() as u64);
            outbox.push_events(&nid, &msgs);
        }
    }
}
