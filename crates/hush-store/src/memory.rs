//! In-memory backend: same semantics as SQLite, nothing persisted (tests, `store_queues=memory`
//! without a store log).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use crate::error::{StoreError, StoreResult};
use crate::store::{QueueStore, StoreFuture};
use crate::types::{
    AppendOutcome, BlockInfo, DEFAULT_QUOTA, DeleteOutcome, EntityId, Message, MsgId, NewMessage,
    NotifierCreds, PendingNtf, QueueLink, QueueRecord, QueueStatus, ServiceParty, ServiceRecord,
    StoreStats,
};
use crate::validate;

#[derive(Default)]
struct State {
    queues: HashMap<EntityId, QueueRecord>,
    messages: HashMap<EntityId, VecDeque<Message>>,
    by_sender: HashMap<EntityId, EntityId>,
    by_notifier: HashMap<EntityId, EntityId>,
    by_link: HashMap<EntityId, EntityId>,
    ntfs: HashMap<EntityId, VecDeque<PendingNtf>>,
    /// Services by certificate hash.
    services: HashMap<[u8; 32], ServiceRecord>,
    /// Recipient id → service, for each side.
    rcv_service: HashMap<EntityId, EntityId>,
    ntf_service: HashMap<EntityId, EntityId>,
    /// (side, service id, recipient or notifier id), for paging a service's queues in order.
    service_index: BTreeSet<(u8, EntityId, EntityId)>,
}

fn side(p: ServiceParty) -> u8 {
    match p {
        ServiceParty::Recipient => 0,
        ServiceParty::Notifier => 1,
    }
}

impl State {
    /// Drops the notifier-side association of queue `rid` (its notifier was `nid`).
    fn drop_ntf_service(&mut self, rid: &EntityId, nid: &EntityId) {
        if let Some(sid) = self.ntf_service.remove(rid) {
            self.service_index.remove(&(1, sid, *nid));
        }
    }
}

/// In-memory [`QueueStore`].
pub struct MemoryStore {
    quota: usize,
    state: Mutex<State>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(DEFAULT_QUOTA)
    }
}

impl MemoryStore {
    /// `quota`: messages per queue (at least 1).
    pub fn new(quota: usize) -> Self {
        Self {
            quota: quota.max(1),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> StoreResult<MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| StoreError::Internal("memory store lock poisoned"))
    }

    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State, usize) -> StoreResult<T> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        Box::pin(async move {
            let mut s = self.lock()?;
            f(&mut s, self.quota)
        })
    }
}

fn queue_mut<'a>(s: &'a mut State, rid: &EntityId) -> StoreResult<&'a mut QueueRecord> {
    s.queues.get_mut(rid).ok_or(StoreError::NotFound)
}

/// The notifier id of a queue (`None` when it has no notifier); `NotFound` without the queue.
fn notifier_id(s: &State, rid: &EntityId) -> StoreResult<Option<EntityId>> {
    let q = s.queues.get(rid).ok_or(StoreError::NotFound)?;
    Ok(q.notifier.as_ref().map(|n| n.notifier_id))
}

fn lookup(
    s: &State,
    idx: fn(&State) -> &HashMap<EntityId, EntityId>,
    id: &EntityId,
) -> Option<QueueRecord> {
    idx(s).get(id).and_then(|rid| s.queues.get(rid)).cloned()
}

/// Pop items from the head while they are older than `before`.
fn expire_prefix(msgs: &mut VecDeque<Message>, before: i64) -> u64 {
    let mut n = 0;
    while msgs.front().is_some_and(|m| m.ts() < before) {
        msgs.pop_front();
        n += 1;
    }
    n
}

impl QueueStore for MemoryStore {
    fn create_queue(&self, queue: QueueRecord) -> StoreFuture<'_, ()> {
        self.with(move |s, _| {
            let queue = validate::queue(queue)?;
            let rid = queue.recipient_id;
            if s.queues.contains_key(&rid)
                || s.by_sender.contains_key(&queue.sender_id)
                || queue
                    .notifier
                    .as_ref()
                    .is_some_and(|n| s.by_notifier.contains_key(&n.notifier_id))
                || queue
                    .link
                    .as_ref()
                    .is_some_and(|l| s.by_link.contains_key(&l.link_id))
            {
                return Err(StoreError::DuplicateId);
            }
            s.by_sender.insert(queue.sender_id, rid);
            if let Some(n) = &queue.notifier {
                s.by_notifier.insert(n.notifier_id, rid);
            }
            if let Some(l) = &queue.link {
                s.by_link.insert(l.link_id, rid);
            }
            s.queues.insert(rid, queue);
            Ok(())
        })
    }

    fn get_by_recipient(&self, recipient_id: EntityId) -> StoreFuture<'_, Option<QueueRecord>> {
        self.with(move |s, _| Ok(s.queues.get(&recipient_id).cloned()))
    }

    fn get_by_sender(&self, sender_id: EntityId) -> StoreFuture<'_, Option<QueueRecord>> {
        self.with(move |s, _| Ok(lookup(s, |s| &s.by_sender, &sender_id)))
    }

    fn get_by_notifier(&self, notifier_id: EntityId) -> StoreFuture<'_, Option<QueueRecord>> {
        self.with(move |s, _| Ok(lookup(s, |s| &s.by_notifier, &notifier_id)))
    }

    fn get_by_link(&self, link_id: EntityId) -> StoreFuture<'_, Option<QueueRecord>> {
        self.with(move |s, _| Ok(lookup(s, |s| &s.by_link, &link_id)))
    }

    fn secure_queue(&self, recipient_id: EntityId, sender_key: Vec<u8>) -> StoreFuture<'_, ()> {
        self.with(move |s, _| {
            let q = queue_mut(s, &recipient_id)?;
            match &q.sender_key {
                None => {
                    q.sender_key = Some(sender_key);
                    Ok(())
                }
                Some(k) if *k == sender_key => Ok(()),
                Some(_) => Err(StoreError::SenderKeyMismatch),
            }
        })
    }

    fn add_recipient_key(&self, recipient_id: EntityId, key: Vec<u8>) -> StoreFuture<'_, ()> {
        self.with(move |s, _| {
            let q = queue_mut(s, &recipient_id)?;
            q.recipient_keys = validate::add_key(std::mem::take(&mut q.recipient_keys), key)?;
            Ok(())
        })
    }

    fn remove_recipient_key(&self, recipient_id: EntityId, key: Vec<u8>) -> StoreFuture<'_, ()> {
        self.with(move |s, _| {
            let q = queue_mut(s, &recipient_id)?;
            q.recipient_keys = validate::remove_key(q.recipient_keys.clone(), &key)?;
            Ok(())
        })
    }

    fn set_recipient_keys(
        &self,
        recipient_id: EntityId,
        keys: Vec<Vec<u8>>,
    ) -> StoreFuture<'_, ()> {
        self.with(move |s, _| {
            let keys = validate::key_set(keys)?;
            queue_mut(s, &recipient_id)?.recipient_keys = keys;
            Ok(())
        })
    }

    fn set_link(&self, recipient_id: EntityId, link: QueueLink) -> StoreFuture<'_, ()> {
        self.with(move |s, _| {
            let current = s
                .queues
                .get(&recipient_id)
                .ok_or(StoreError::NotFound)?
                .link
                .clone();
            match validate::link_change(current.as_ref(), &link)? {
                validate::LinkChange::New => {
                    if s.by_link.contains_key(&link.link_id) {
                        return Err(StoreError::DuplicateId);
                    }
                    s.by_link.insert(link.link_id, recipient_id);
                }
                validate::LinkChange::UpdateUser => {}
            }
            queue_mut(s, &recipient_id)?.link = Some(link);
            Ok(())
        })
    }

    fn delete_link(&self, recipient_id: EntityId) -> StoreFuture<'_, ()> {
        self.with(move |s, _| {
            if let Some(l) = queue_mut(s, &recipient_id)?.link.take() {
                s.by_link.remove(&l.link_id);
            }
            Ok(())
        })
    }

    fn set_notifier(
        &self,
        recipient_id: EntityId,
        creds: NotifierCreds,
    ) -> StoreFuture<'_, Option<EntityId>> {
        self.with(move |s, _| {
            let old = notifier_id(s, &recipient_id)?;
            if old != Some(creds.notifier_id) && s.by_notifier.contains_key(&creds.notifier_id) {
                return Err(StoreError::DuplicateId);
            }
            if let Some(old) = &old {
                s.by_notifier.remove(old);
                s.ntfs.remove(old);
                s.drop_ntf_service(&recipient_id, old);
            }
            s.by_notifier.insert(creds.notifier_id, recipient_id);
            queue_mut(s, &recipient_id)?.notifier = Some(creds);
            Ok(old)
        })
    }

    fn delete_notifier(&self, recipient_id: EntityId) -> StoreFuture<'_, Option<EntityId>> {
        self.with(move |s, _| {
            let old = queue_mut(s, &recipient_id)?
                .notifier
                .take()
                .map(|n| n.notifier_id);
            if let Some(old) = &old {
                s.by_notifier.remove(old);
                s.ntfs.remove(old);
                s.drop_ntf_service(&recipient_id, old);
            }
            Ok(old)
        })
    }

    fn suspend_queue(&self, recipient_id: EntityId) -> StoreFuture<'_, ()> {
        self.with(move |s, _| {
            queue_mut(s, &recipient_id)?.status = QueueStatus::Off;
            Ok(())
        })
    }

    fn block_queue(&self, recipient_id: EntityId, info: BlockInfo) -> StoreFuture<'_, ()> {
        self.with(move |s, _| {
            queue_mut(s, &recipient_id)?.status = QueueStatus::Blocked(info);
            Ok(())
        })
    }

    fn unblock_queue(&self, recipient_id: EntityId) -> StoreFuture<'_, ()> {
        self.with(move |s, _| {
            let q = queue_mut(s, &recipient_id)?;
            if matches!(q.status, QueueStatus::Blocked(_)) {
                q.status = QueueStatus::Active;
            }
            Ok(())
        })
    }

    fn touch_queue(&self, recipient_id: EntityId, updated_at: i64) -> StoreFuture<'_, ()> {
        self.with(move |s, _| {
            queue_mut(s, &recipient_id)?.updated_at = Some(updated_at);
            Ok(())
        })
    }

    fn delete_queue(&self, recipient_id: EntityId) -> StoreFuture<'_, QueueRecord> {
        self.with(move |s, _| {
            let q = s.queues.remove(&recipient_id).ok_or(StoreError::NotFound)?;
            s.messages.remove(&recipient_id);
            s.by_sender.remove(&q.sender_id);
            if let Some(n) = &q.notifier {
                s.by_notifier.remove(&n.notifier_id);
                s.ntfs.remove(&n.notifier_id);
                s.drop_ntf_service(&recipient_id, &n.notifier_id);
            }
            if let Some(sid) = s.rcv_service.remove(&recipient_id) {
                s.service_index.remove(&(0, sid, recipient_id));
            }
            if let Some(l) = &q.link {
                s.by_link.remove(&l.link_id);
            }
            Ok(q)
        })
    }

    fn append_message(
        &self,
        recipient_id: EntityId,
        msg: NewMessage,
        ntf: Option<PendingNtf>,
    ) -> StoreFuture<'_, AppendOutcome> {
        self.with(move |s, quota| {
            validate::message(&msg)?;
            let notifier = notifier_id(s, &recipient_id)?;
            let msgs = s.messages.entry(recipient_id).or_default();
            let has_marker = msgs.back().is_some_and(Message::is_quota_marker);
            match validate::quota_decision(msgs.len(), has_marker, quota) {
                validate::QuotaDecision::Refuse => Ok(AppendOutcome::QuotaExceeded {
                    marker_added: false,
                }),
                validate::QuotaDecision::AddMarker => {
                    msgs.push_back(Message::QuotaMarker {
                        msg_id: msg.msg_id,
                        ts: msg.ts,
                    });
                    Ok(AppendOutcome::QuotaExceeded { marker_added: true })
                }
                validate::QuotaDecision::Append => {
                    let was_empty = msgs.is_empty();
                    msgs.push_back(Message::Message(msg));
                    if let (Some(nid), Some(ntf)) = (notifier, ntf) {
                        s.ntfs.entry(nid).or_default().push_back(ntf);
                    }
                    Ok(AppendOutcome::Appended { was_empty })
                }
            }
        })
    }

    fn peek_message(&self, recipient_id: EntityId) -> StoreFuture<'_, Option<Message>> {
        self.with(move |s, _| {
            if !s.queues.contains_key(&recipient_id) {
                return Err(StoreError::NotFound);
            }
            Ok(s.messages
                .get(&recipient_id)
                .and_then(|m| m.front().cloned()))
        })
    }

    fn delete_message(
        &self,
        recipient_id: EntityId,
        msg_id: MsgId,
    ) -> StoreFuture<'_, DeleteOutcome> {
        self.with(move |s, _| {
            if !s.queues.contains_key(&recipient_id) {
                return Err(StoreError::NotFound);
            }
            let Some(msgs) = s.messages.get_mut(&recipient_id) else {
                return Ok(DeleteOutcome {
                    deleted: false,
                    head: None,
                });
            };
            let deleted = msgs.front().is_some_and(|m| *m.msg_id() == msg_id);
            if deleted {
                msgs.pop_front();
            }
            Ok(DeleteOutcome {
                deleted,
                head: msgs.front().cloned(),
            })
        })
    }

    fn message_count(&self, recipient_id: EntityId) -> StoreFuture<'_, usize> {
        self.with(move |s, _| {
            if !s.queues.contains_key(&recipient_id) {
                return Err(StoreError::NotFound);
            }
            Ok(s.messages.get(&recipient_id).map_or(0, VecDeque::len))
        })
    }

    fn expire_messages(&self, before: i64) -> StoreFuture<'_, u64> {
        self.with(move |s, _| {
            Ok(s.messages
                .values_mut()
                .map(|m| expire_prefix(m, before))
                .sum())
        })
    }

    fn expire_queue_messages(&self, recipient_id: EntityId, before: i64) -> StoreFuture<'_, u64> {
        self.with(move |s, _| {
            if !s.queues.contains_key(&recipient_id) {
                return Err(StoreError::NotFound);
            }
            Ok(s.messages
                .get_mut(&recipient_id)
                .map_or(0, |m| expire_prefix(m, before)))
        })
    }

    fn drain_notifications(
        &self,
        notifier_id: EntityId,
        limit: usize,
    ) -> StoreFuture<'_, Vec<PendingNtf>> {
        self.with(move |s, _| {
            let Some(q) = s.ntfs.get_mut(&notifier_id) else {
                return Ok(Vec::new());
            };
            let n = limit.min(q.len());
            let out: Vec<_> = q.drain(..n).collect();
            if q.is_empty() {
                s.ntfs.remove(&notifier_id);
            }
            Ok(out)
        })
    }

    fn expire_notifications(&self, before: i64) -> StoreFuture<'_, u64> {
        self.with(move |s, _| {
            let mut n = 0u64;
            for q in s.ntfs.values_mut() {
                let len = q.len();
                q.retain(|x| x.ts >= before);
                n += (len - q.len()) as u64;
            }
            s.ntfs.retain(|_, q| !q.is_empty());
            Ok(n)
        })
    }

    fn get_create_service(&self, service: ServiceRecord) -> StoreFuture<'_, EntityId> {
        self.with(move |s, _| match s.services.get(&service.cert_hash) {
            Some(r) if r.role == service.role => Ok(r.service_id),
            Some(_) => Err(StoreError::Invalid("service certificate has another role")),
            None => {
                if s.services
                    .values()
                    .any(|r| r.service_id == service.service_id)
                {
                    return Err(StoreError::DuplicateId);
                }
                let id = service.service_id;
                s.services.insert(service.cert_hash, service);
                Ok(id)
            }
        })
    }

    fn get_queue_service(
        &self,
        recipient_id: EntityId,
        party: ServiceParty,
    ) -> StoreFuture<'_, Option<EntityId>> {
        self.with(move |s, _| {
            if !s.queues.contains_key(&recipient_id) {
                return Err(StoreError::NotFound);
            }
            Ok(match party {
                ServiceParty::Recipient => s.rcv_service.get(&recipient_id).copied(),
                ServiceParty::Notifier => s.ntf_service.get(&recipient_id).copied(),
            })
        })
    }

    fn set_queue_service(
        &self,
        recipient_id: EntityId,
        party: ServiceParty,
        service_id: Option<EntityId>,
    ) -> StoreFuture<'_, ()> {
        self.with(move |s, _| {
            let q = s.queues.get(&recipient_id).ok_or(StoreError::NotFound)?;
            let key = match party {
                ServiceParty::Recipient => recipient_id,
                ServiceParty::Notifier => {
                    q.notifier.as_ref().ok_or(StoreError::NotFound)?.notifier_id
                }
            };
            let map = match party {
                ServiceParty::Recipient => &mut s.rcv_service,
                ServiceParty::Notifier => &mut s.ntf_service,
            };
            let prev = match service_id {
                Some(sid) => map.insert(recipient_id, sid),
                None => map.remove(&recipient_id),
            };
            if let Some(prev) = prev {
                s.service_index.remove(&(side(party), prev, key));
            }
            if let Some(sid) = service_id {
                s.service_index.insert((side(party), sid, key));
            }
            Ok(())
        })
    }

    fn service_queue_count(
        &self,
        service_id: EntityId,
        party: ServiceParty,
    ) -> StoreFuture<'_, u64> {
        self.with(move |s, _| {
            let p = side(party);
            Ok(s.service_index
                .range((p, service_id, [0; 24])..=(p, service_id, [0xff; 24]))
                .count() as u64)
        })
    }

    fn service_queue_ids(
        &self,
        service_id: EntityId,
        party: ServiceParty,
        after: Option<EntityId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<EntityId>> {
        self.with(move |s, _| {
            let p = side(party);
            use std::ops::Bound;
            let start = match after {
                Some(a) => Bound::Excluded((p, service_id, a)),
                None => Bound::Included((p, service_id, [0; 24])),
            };
            let end = Bound::Included((p, service_id, [0xff; 24]));
            Ok(s.service_index
                .range((start, end))
                .map(|(_, _, id)| *id)
                .take(limit)
                .collect())
        })
    }

    fn stats(&self) -> StoreFuture<'_, StoreStats> {
        self.with(|s, _| {
            Ok(StoreStats {
                queues: s.queues.len() as u64,
                messages: s.messages.values().map(|m| m.len() as u64).sum(),
                notifications: s.ntfs.values().map(|m| m.len() as u64).sum(),
                notifier_queues: s.by_notifier.len() as u64,
            })
        })
    }
}
