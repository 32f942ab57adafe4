//! The storage trait the relay is written against.

use std::future::Future;
use std::pin::Pin;

use crate::error::StoreError;
use crate::types::{
    AppendOutcome, BlockInfo, DeleteOutcome, EntityId, Message, MsgId, NewMessage, NotifierCreds,
    PendingNtf, QueueLink, QueueRecord, ServiceParty, ServiceRecord, StoreStats,
};

/// Boxed future returned by every [`QueueStore`] method (keeps the trait object-safe, so the
/// relay can hold an `Arc<dyn QueueStore>` and pick the backend at start-up).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Persistent relay state: queue records, their messages, pending notifications.
///
/// Concurrency model: every method may be called concurrently from any tokio task. Each method
/// is atomic. A write method's future resolves only once the change is durable under the
/// backend's sync policy (SQLite: after the batch transaction that holds it committed), so the
/// relay may answer `OK` as soon as it resolves. Writes that cannot be queued fail fast with
/// [`StoreError::Busy`] (load shedding) instead of buffering without bound. Dropping a write
/// future after it was first polled does not cancel the write (it may still commit); a failed
/// operation leaves no partial effects.
///
/// Lookups return the record whatever its status (active / off / blocked): the relay decides
/// what a status means for each command. Deleted queues are gone: every method on them returns
/// [`StoreError::NotFound`] (lookups return `Ok(None)`). Message methods do not look at status.
pub trait QueueStore: Send + Sync {
    /// Create a queue. Fails with [`StoreError::DuplicateId`] if its recipient, sender,
    /// notifier or link id is already used (each in its own namespace).
    fn create_queue(&self, queue: QueueRecord) -> StoreFuture<'_, ()>;

    fn get_by_recipient(&self, recipient_id: EntityId) -> StoreFuture<'_, Option<QueueRecord>>;
    fn get_by_sender(&self, sender_id: EntityId) -> StoreFuture<'_, Option<QueueRecord>>;
    fn get_by_notifier(&self, notifier_id: EntityId) -> StoreFuture<'_, Option<QueueRecord>>;
    fn get_by_link(&self, link_id: EntityId) -> StoreFuture<'_, Option<QueueRecord>>;

    /// Set the sender key. The same key again is `Ok`; a different one is
    /// [`StoreError::SenderKeyMismatch`].
    fn secure_queue(&self, recipient_id: EntityId, sender_key: Vec<u8>) -> StoreFuture<'_, ()>;
    /// Add a recipient key (no-op if already present).
    fn add_recipient_key(&self, recipient_id: EntityId, key: Vec<u8>) -> StoreFuture<'_, ()>;
    /// Remove a recipient key (no-op if absent); removing the last key is
    /// [`StoreError::Invalid`].
    fn remove_recipient_key(&self, recipient_id: EntityId, key: Vec<u8>) -> StoreFuture<'_, ()>;
    /// Replace the recipient key set (`RKEY`); must be non-empty. Duplicates are dropped.
    fn set_recipient_keys(&self, recipient_id: EntityId, keys: Vec<Vec<u8>>)
    -> StoreFuture<'_, ()>;
    /// Set the short link (`LSET`). Allowed if there is no link yet, or to change the user part
    /// of the same link id with the same fixed part; otherwise [`StoreError::LinkMismatch`].
    fn set_link(&self, recipient_id: EntityId, link: QueueLink) -> StoreFuture<'_, ()>;
    /// Remove the short link (`LDEL`, or on first send to a secured messaging queue).
    /// `Ok` also when there is none.
    fn delete_link(&self, recipient_id: EntityId) -> StoreFuture<'_, ()>;
    /// Set or replace notifier credentials. Returns the replaced notifier id, whose pending
    /// notifications are dropped.
    fn set_notifier(
        &self,
        recipient_id: EntityId,
        creds: NotifierCreds,
    ) -> StoreFuture<'_, Option<EntityId>>;
    /// Remove notifier credentials and their pending notifications; returns the removed id.
    fn delete_notifier(&self, recipient_id: EntityId) -> StoreFuture<'_, Option<EntityId>>;
    /// Status → off (`OFF`; idempotent).
    fn suspend_queue(&self, recipient_id: EntityId) -> StoreFuture<'_, ()>;
    /// Status → blocked (operator).
    fn block_queue(&self, recipient_id: EntityId, info: BlockInfo) -> StoreFuture<'_, ()>;
    /// Status blocked → active (other statuses are left as they are).
    fn unblock_queue(&self, recipient_id: EntityId) -> StoreFuture<'_, ()>;
    /// Set `updated_at` (unix seconds, rounded to a day by the caller).
    fn touch_queue(&self, recipient_id: EntityId, updated_at: i64) -> StoreFuture<'_, ()>;
    /// Delete the queue, its messages and its pending notifications. Returns the deleted record
    /// (so the relay can send `DELD` to its subscribers).
    fn delete_queue(&self, recipient_id: EntityId) -> StoreFuture<'_, QueueRecord>;

    /// Append a message, with quota (§3.7): if the queue already holds `quota` items, a quota
    /// marker carrying the refused message's id and ts is appended instead (as the reference's
    /// `writeMsg` does) and `QuotaExceeded` returned; all further appends return
    /// `QuotaExceeded` until the queue is drained completely (marker included). `ntf` is stored
    /// for the queue's current notifier (if any) only when the message was stored. Body longer
    /// than `MAX_MESSAGE_BODY` → [`StoreError::MessageTooLarge`].
    fn append_message(
        &self,
        recipient_id: EntityId,
        msg: NewMessage,
        ntf: Option<PendingNtf>,
    ) -> StoreFuture<'_, AppendOutcome>;
    /// [`QueueStore::append_message`], telling `ran` its outcome as soon as the append is
    /// decided, before it is durable: the relay delivers the new message to a waiting
    /// subscriber while the commit (an fsync) runs, and answers the sender's `SEND` with `OK`
    /// only when the returned future resolves (durable). `ran` is told before the future
    /// resolves `Ok`, and never for an append that fails before its commit; if the commit
    /// itself fails the future returns the error after `ran` was told (a subscriber may then
    /// have received a message that is not stored: the sender is told the error and sends it
    /// again). Default: tells `ran` once the append is durable.
    fn append_message_then(
        &self,
        recipient_id: EntityId,
        msg: NewMessage,
        ntf: Option<PendingNtf>,
        ran: tokio::sync::oneshot::Sender<AppendOutcome>,
    ) -> StoreFuture<'_, AppendOutcome> {
        Box::pin(async move {
            let r = self.append_message(recipient_id, msg, ntf).await;
            if let Ok(o) = &r {
                let _ = ran.send(*o);
            }
            r
        })
    }
    /// The oldest item (message or quota marker).
    fn peek_message(&self, recipient_id: EntityId) -> StoreFuture<'_, Option<Message>>;
    /// Remove the head if its id is `msg_id` (`ACK`); returns whether it did and the new head.
    fn delete_message(
        &self,
        recipient_id: EntityId,
        msg_id: MsgId,
    ) -> StoreFuture<'_, DeleteOutcome>;
    /// Items in the queue (quota marker included).
    fn message_count(&self, recipient_id: EntityId) -> StoreFuture<'_, usize>;
    /// Expire messages in all queues: from each queue's head, remove items while their
    /// `ts < before` (the reference's `deleteExpiredMsgs`: a prefix, so order is kept even if
    /// the clock went back). Returns how many.
    fn expire_messages(&self, before: i64) -> StoreFuture<'_, u64>;
    /// The same for one queue (`expire_messages_on_send`).
    fn expire_queue_messages(&self, recipient_id: EntityId, before: i64) -> StoreFuture<'_, u64>;

    /// Take up to `limit` pending notifications of a notifier, oldest first (they are removed).
    fn drain_notifications(
        &self,
        notifier_id: EntityId,
        limit: usize,
    ) -> StoreFuture<'_, Vec<PendingNtf>>;
    /// Drain several notifiers in one operation (one transaction where the backend has them):
    /// in `ids` order, up to `per_id` notifications of each id, oldest first, stopping once
    /// `total` were taken. Element `i` of the result holds what was taken from `ids[i]`; the
    /// result is shorter than `ids` when the ids after it were not reached (they keep their
    /// notifications). Ids with nothing pending get an empty entry.
    ///
    /// The removal may become durable after the call returned (SQLite answers before its
    /// commit): a crash can only make the relay deliver a drained notification again, never lose
    /// one that was not handed out. An error on a later id (backends without a transaction
    /// here) ends the result early instead of failing what was already removed.
    fn drain_notifications_many(
        &self,
        ids: Vec<EntityId>,
        per_id: usize,
        total: usize,
    ) -> StoreFuture<'_, Vec<Vec<PendingNtf>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(ids.len());
            let mut left = total;
            for id in ids {
                if left == 0 {
                    break;
                }
                match self.drain_notifications(id, per_id.min(left)).await {
                    Ok(v) => {
                        left -= v.len().min(left);
                        out.push(v);
                    }
                    Err(e) if out.is_empty() => return Err(e),
                    Err(_) => break,
                }
            }
            Ok(out)
        })
    }
    /// Remove notifications with `ts < before` (the relay passes now − 24 h); returns how many.
    fn expire_notifications(&self, before: i64) -> StoreFuture<'_, u64>;

    /// The service of `service.cert_hash` (reference `getCreateService`): its stored id when
    /// it exists with the same role, else `service` is stored and its id returned. A stored
    /// service of another role is [`StoreError::Invalid`] (the relay refuses the handshake).
    fn get_create_service(&self, service: ServiceRecord) -> StoreFuture<'_, EntityId> {
        let _ = service;
        Box::pin(async { Err(StoreError::Internal("service certificates not supported")) })
    }
    /// The service a queue's `party` side is associated with. Recipient side: any queue;
    /// notifier side: `None` also when the queue has no notifier. A missing queue is
    /// [`StoreError::NotFound`].
    fn get_queue_service(
        &self,
        recipient_id: EntityId,
        party: ServiceParty,
    ) -> StoreFuture<'_, Option<EntityId>> {
        let _ = (recipient_id, party);
        Box::pin(async { Ok(None) })
    }
    /// Associate a queue's `party` side with a service, or remove the association (`None`);
    /// reference `setQueueService`. Notifier side of a queue without notifier:
    /// [`StoreError::NotFound`]. Replacing or deleting the notifier removes its association.
    fn set_queue_service(
        &self,
        recipient_id: EntityId,
        party: ServiceParty,
        service_id: Option<EntityId>,
    ) -> StoreFuture<'_, ()> {
        let _ = (recipient_id, party, service_id);
        Box::pin(async { Err(StoreError::Internal("service certificates not supported")) })
    }
    /// How many queues are associated with the service on `party`'s side
    /// (`getServiceQueueCount`).
    fn service_queue_count(
        &self,
        service_id: EntityId,
        party: ServiceParty,
    ) -> StoreFuture<'_, u64> {
        let _ = (service_id, party);
        Box::pin(async { Ok(0) })
    }
    /// One page of the ids associated with the service, ascending: recipient ids
    /// (`Recipient`) or notifier ids (`Notifier`), those greater than `after`, at most `limit`.
    /// A service subscription walks them page by page (keyset pagination: bounded memory
    /// whatever the number of queues).
    fn service_queue_ids(
        &self,
        service_id: EntityId,
        party: ServiceParty,
        after: Option<EntityId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<EntityId>> {
        let _ = (service_id, party, after, limit);
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Totals for metrics. PostgreSQL: a table with more than 100,000 rows (planner estimate)
    /// is not counted; its estimate (`pg_class.reltuples`) is returned.
    fn stats(&self) -> StoreFuture<'_, StoreStats>;
}
