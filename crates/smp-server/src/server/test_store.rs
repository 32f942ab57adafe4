//! Test stores for the relay's unit tests.

use std::sync::Arc;

use hush_store::{
    AppendOutcome, EntityId, MemoryStore, Message, MsgId, NewMessage, PendingNtf, QueueRecord,
};

/// A store whose appends are decided at once but become durable only when the test
/// opens the gate (a slow fsync, held).
pub struct HeldCommits(pub MemoryStore, pub Arc<tokio::sync::Semaphore>);
use hush_store::{
    BlockInfo, DeleteOutcome, NotifierCreds, QueueLink, ServiceParty, ServiceRecord, StoreFuture,
    StoreStats,
};

impl hush_store::QueueStore for HeldCommits {
    fn append_message_then(
        &self,
        recipient_id: EntityId,
        msg: NewMessage,
        ntf: Option<PendingNtf>,
        ran: tokio::sync::oneshot::Sender<AppendOutcome>,
    ) -> StoreFuture<'_, AppendOutcome> {
        Box::pin(async move {
            // The memory store's append is durable at once: it tells `ran` when it returns.
            let r = self
                .0
                .append_message_then(recipient_id, msg, ntf, ran)
                .await;
            let _ = self.1.acquire().await.map(|p| p.forget());
            r
        })
    }
    fn create_queue(&self, queue: QueueRecord) -> StoreFuture<'_, ()> {
        self.0.create_queue(queue)
    }
    fn get_by_recipient(&self, recipient_id: EntityId) -> StoreFuture<'_, Option<QueueRecord>> {
        self.0.get_by_recipient(recipient_id)
    }
    fn get_by_sender(&self, sender_id: EntityId) -> StoreFuture<'_, Option<QueueRecord>> {
        self.0.get_by_sender(sender_id)
    }
    fn get_by_notifier(&self, notifier_id: EntityId) -> StoreFuture<'_, Option<QueueRecord>> {
        self.0.get_by_notifier(notifier_id)
    }
    fn get_by_link(&self, link_id: EntityId) -> StoreFuture<'_, Option<QueueRecord>> {
        self.0.get_by_link(link_id)
    }
    fn secure_queue(&self, recipient_id: EntityId, sender_key: Vec<u8>) -> StoreFuture<'_, ()> {
        self.0.secure_queue(recipient_id, sender_key)
    }
    fn add_recipient_key(&self, recipient_id: EntityId, key: Vec<u8>) -> StoreFuture<'_, ()> {
        self.0.add_recipient_key(recipient_id, key)
    }
    fn remove_recipient_key(&self, recipient_id: EntityId, key: Vec<u8>) -> StoreFuture<'_, ()> {
        self.0.remove_recipient_key(recipient_id, key)
    }
    fn set_recipient_keys(
        &self,
        recipient_id: EntityId,
        keys: Vec<Vec<u8>>,
    ) -> StoreFuture<'_, ()> {
        self.0.set_recipient_keys(recipient_id, keys)
    }
    fn set_link(&self, recipient_id: EntityId, link: QueueLink) -> StoreFuture<'_, ()> {
        self.0.set_link(recipient_id, link)
    }
    fn delete_link(&self, recipient_id: EntityId) -> StoreFuture<'_, ()> {
        self.0.delete_link(recipient_id)
    }
    fn set_notifier(
        &self,
        recipient_id: EntityId,
        creds: NotifierCreds,
    ) -> StoreFuture<'_, Option<EntityId>> {
        self.0.set_notifier(recipient_id, creds)
    }
    fn delete_notifier(&self, recipient_id: EntityId) -> StoreFuture<'_, Option<EntityId>> {
        self.0.delete_notifier(recipient_id)
    }
    fn suspend_queue(&self, recipient_id: EntityId) -> StoreFuture<'_, ()> {
        self.0.suspend_queue(recipient_id)
    }
    fn block_queue(&self, recipient_id: EntityId, info: BlockInfo) -> StoreFuture<'_, ()> {
        self.0.block_queue(recipient_id, info)
    }
    fn unblock_queue(&self, recipient_id: EntityId) -> StoreFuture<'_, ()> {
        self.0.unblock_queue(recipient_id)
    }
    fn touch_queue(&self, recipient_id: EntityId, updated_at: i64) -> StoreFuture<'_, ()> {
        self.0.touch_queue(recipient_id, updated_at)
    }
    fn delete_queue(&self, recipient_id: EntityId) -> StoreFuture<'_, QueueRecord> {
        self.0.delete_queue(recipient_id)
    }
    fn append_message(
        &self,
        recipient_id: EntityId,
        msg: NewMessage,
        ntf: Option<PendingNtf>,
    ) -> StoreFuture<'_, AppendOutcome> {
        self.0.append_message(recipient_id, msg, ntf)
    }
    fn peek_message(&self, recipient_id: EntityId) -> StoreFuture<'_, Option<Message>> {
        self.0.peek_message(recipient_id)
    }
    fn delete_message(
        &self,
        recipient_id: EntityId,
        msg_id: MsgId,
    ) -> StoreFuture<'_, DeleteOutcome> {
        self.0.delete_message(recipient_id, msg_id)
    }
    fn message_count(&self, recipient_id: EntityId) -> StoreFuture<'_, usize> {
        self.0.message_count(recipient_id)
    }
    fn expire_messages(&self, before: i64) -> StoreFuture<'_, u64> {
        self.0.expire_messages(before)
    }
    fn expire_queue_messages(&self, recipient_id: EntityId, before: i64) -> StoreFuture<'_, u64> {
        self.0.expire_queue_messages(recipient_id, before)
    }
    fn drain_notifications(
        &self,
        notifier_id: EntityId,
        limit: usize,
    ) -> StoreFuture<'_, Vec<PendingNtf>> {
        self.0.drain_notifications(notifier_id, limit)
    }
    fn drain_notifications_many(
        &self,
        ids: Vec<EntityId>,
        per_id: usize,
        total: usize,
    ) -> StoreFuture<'_, Vec<Vec<PendingNtf>>> {
        self.0.drain_notifications_many(ids, per_id, total)
    }
    fn expire_notifications(&self, before: i64) -> StoreFuture<'_, u64> {
        self.0.expire_notifications(before)
    }
    fn get_create_service(&self, service: ServiceRecord) -> StoreFuture<'_, EntityId> {
        self.0.get_create_service(service)
    }
    fn get_queue_service(
        &self,
        recipient_id: EntityId,
        party: ServiceParty,
    ) -> StoreFuture<'_, Option<EntityId>> {
        self.0.get_queue_service(recipient_id, party)
    }
    fn set_queue_service(
        &self,
        recipient_id: EntityId,
        party: ServiceParty,
        service_id: Option<EntityId>,
    ) -> StoreFuture<'_, ()> {
        self.0.set_queue_service(recipient_id, party, service_id)
    }
    fn service_queue_count(
        &self,
        service_id: EntityId,
        party: ServiceParty,
    ) -> StoreFuture<'_, u64> {
        self.0.service_queue_count(service_id, party)
    }
    fn service_queue_ids(
        &self,
        service_id: EntityId,
        party: ServiceParty,
        after: Option<EntityId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<EntityId>> {
        self.0.service_queue_ids(service_id, party, after, limit)
    }
    fn stats(&self) -> StoreFuture<'_, StoreStats> {
        self.0.stats()
    }
}
