//! SQL for each operation, run on the writer connection (inside the batch transaction and a
//! per-operation savepoint) or on a read connection.

use rusqlite::{Connection, OptionalExtension, Row, named_params, params};

use hashlink::LruCache;
use std::collections::HashMap;

use super::cache::Effect;
use crate::codec::{
    EXPIRE_ALL_SQL, EXPIRE_QUEUE_SQL, KIND_QUOTA, QUEUE_COLUMNS, QueueRow, bad, encode_keys, fixed,
    message_columns, message_from_columns, ntf_from_columns, status_columns,
};
use crate::error::{StoreError, StoreResult};
use crate::types::{
    AppendOutcome, DeleteOutcome, EntityId, Message, MsgId, NewMessage, NotifierCreds, PendingNtf,
    QueueLink, QueueRecord, QueueStatus, StoreStats,
};
use crate::validate;

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// Map a UNIQUE violation to `DuplicateId`.
fn dup(e: rusqlite::Error) -> StoreError {
    if is_constraint(&e) {
        StoreError::DuplicateId
    } else {
        StoreError::Sqlite(e)
    }
}

fn row_to_queue(r: &Row<'_>) -> StoreResult<QueueRecord> {
    QueueRow {
        recipient_id: r.get(0)?,
        recipient_keys: r.get(1)?,
        rcv_dh_secret: r.get(2)?,
        sender_id: r.get(3)?,
        sender_key: r.get(4)?,
        queue_mode: r.get(5)?,
        link_id: r.get(6)?,
        link_fixed: r.get(7)?,
        link_user: r.get(8)?,
        notifier_id: r.get(9)?,
        notifier_key: r.get(10)?,
        rcv_ntf_dh_secret: r.get(11)?,
        status: r.get(12)?,
        block_reason: r.get(13)?,
        block_notice: r.get(14)?,
        block_notice_ttl: r.get(15)?,
        updated_at: r.get(16)?,
    }
    .into_record()
}

/// Lookup column: which namespace an id is searched in.
#[derive(Clone, Copy, Debug)]
pub(crate) enum IdKind {
    Recipient,
    Sender,
    Notifier,
    Link,
}

pub(crate) fn get_queue(
    c: &Connection,
    kind: IdKind,
    id: &EntityId,
) -> StoreResult<Option<QueueRecord>> {
    let sql = match kind {
        IdKind::Recipient => select_by("recipient_id"),
        IdKind::Sender => select_by("sender_id"),
        IdKind::Notifier => select_by("notifier_id"),
        IdKind::Link => select_by("link_id"),
    };
    let mut st = c.prepare_cached(&sql)?;
    let mut rows = st.query(params![&id[..]])?;
    match rows.next()? {
        Some(r) => Ok(Some(row_to_queue(r)?)),
        None => Ok(None),
    }
}

/// Every queue (to fill the cache at open).
pub(crate) fn all_queues(c: &Connection) -> StoreResult<Vec<QueueRecord>> {
    let mut st = c.prepare(&format!("SELECT {QUEUE_COLUMNS} FROM queues"))?;
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(row_to_queue(r)?);
    }
    Ok(out)
}

/// Number of queues.
pub(crate) fn queue_count(c: &Connection) -> StoreResult<u64> {
    let n: i64 = c.query_row("SELECT count(*) FROM queues", [], |r| r.get(0))?;
    u64::try_from(n).map_err(|_| bad("count"))
}

fn select_by(col: &str) -> String {
    format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE {col} = ?1")
}

fn require(c: &Connection, rid: &EntityId) -> StoreResult<QueueRecord> {
    get_queue(c, IdKind::Recipient, rid)?.ok_or(StoreError::NotFound)
}

/// Internal row id of a queue.
fn queue_rowid(c: &Connection, rid: &EntityId) -> StoreResult<i64> {
    c.prepare_cached("SELECT id FROM queues WHERE recipient_id = ?1")?
        .query_row(params![&rid[..]], |r| r.get(0))
        .optional()?
        .ok_or(StoreError::NotFound)
}

pub(crate) fn create_queue(c: &Connection, q: QueueRecord) -> StoreResult<()> {
    let q = validate::queue(q)?;
    let r = QueueRow::from_record(&q)?;
    c.prepare_cached(&format!(
        "INSERT INTO queues ({QUEUE_COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))?
    .execute(params![
        r.recipient_id,
        r.recipient_keys,
        r.rcv_dh_secret,
        r.sender_id,
        r.sender_key,
        r.queue_mode,
        r.link_id,
        r.link_fixed,
        r.link_user,
        r.notifier_id,
        r.notifier_key,
        r.rcv_ntf_dh_secret,
        r.status,
        r.block_reason,
        r.block_notice,
        r.block_notice_ttl,
        r.updated_at,
    ])
    .map_err(dup)?;
    Ok(())
}

fn update(c: &Connection, sql: &str, p: impl rusqlite::Params) -> StoreResult<()> {
    let n = c.prepare_cached(sql)?.execute(p).map_err(dup)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(crate) fn secure_queue(c: &Connection, rid: &EntityId, key: Vec<u8>) -> StoreResult<()> {
    match require(c, rid)?.sender_key {
        Some(k) if k == key => Ok(()),
        Some(_) => Err(StoreError::SenderKeyMismatch),
        None => update(
            c,
            "UPDATE queues SET sender_key = ?2 WHERE recipient_id = ?1",
            params![&rid[..], key],
        ),
    }
}

fn write_keys(c: &Connection, rid: &EntityId, keys: &[Vec<u8>]) -> StoreResult<()> {
    update(
        c,
        "UPDATE queues SET recipient_keys = ?2 WHERE recipient_id = ?1",
        params![&rid[..], encode_keys(keys)?],
    )
}

pub(crate) fn add_recipient_key(c: &Connection, rid: &EntityId, key: Vec<u8>) -> StoreResult<()> {
    let keys = validate::add_key(require(c, rid)?.recipient_keys, key)?;
    write_keys(c, rid, &keys)
}

pub(crate) fn remove_recipient_key(c: &Connection, rid: &EntityId, key: &[u8]) -> StoreResult<()> {
    let keys = validate::remove_key(require(c, rid)?.recipient_keys, key)?;
    write_keys(c, rid, &keys)
}

pub(crate) fn set_recipient_keys(
    c: &Connection,
    rid: &EntityId,
    keys: Vec<Vec<u8>>,
) -> StoreResult<()> {
    let keys = validate::key_set(keys)?;
    require(c, rid)?;
    write_keys(c, rid, &keys)
}

pub(crate) fn set_link(c: &Connection, rid: &EntityId, link: QueueLink) -> StoreResult<()> {
    let current = require(c, rid)?.link;
    validate::link_change(current.as_ref(), &link)?;
    update(
        c,
        "UPDATE queues SET link_id = ?2, link_fixed = ?3, link_user = ?4 WHERE recipient_id = ?1",
        params![&rid[..], &link.link_id[..], link.data.fixed, link.data.user],
    )
}

pub(crate) fn delete_link(c: &Connection, rid: &EntityId) -> StoreResult<()> {
    update(
        c,
        "UPDATE queues SET link_id = NULL, link_fixed = NULL, link_user = NULL WHERE recipient_id = ?1",
        params![&rid[..]],
    )
}

fn delete_ntfs(c: &Connection, nid: &EntityId) -> StoreResult<()> {
    c.prepare_cached("DELETE FROM notifications WHERE notifier_id = ?1")?
        .execute(params![&nid[..]])?;
    Ok(())
}

pub(crate) fn set_notifier(
    c: &Connection,
    rid: &EntityId,
    n: NotifierCreds,
) -> StoreResult<Option<EntityId>> {
    let old = require(c, rid)?.notifier.map(|n| n.notifier_id);
    if let Some(old) = &old {
        delete_ntfs(c, old)?;
    }
    update(
        c,
        "UPDATE queues SET notifier_id = ?2, notifier_key = ?3, rcv_ntf_dh_secret = ?4, ntf_service_id = NULL WHERE recipient_id = ?1",
        params![
            &rid[..],
            &n.notifier_id[..],
            n.notifier_key,
            &n.rcv_ntf_dh_secret[..]
        ],
    )?;
    Ok(old)
}

pub(crate) fn delete_notifier(c: &Connection, rid: &EntityId) -> StoreResult<Option<EntityId>> {
    let old = require(c, rid)?.notifier.map(|n| n.notifier_id);
    if let Some(old) = &old {
        delete_ntfs(c, old)?;
    }
    update(
        c,
        "UPDATE queues SET notifier_id = NULL, notifier_key = NULL, rcv_ntf_dh_secret = NULL, ntf_service_id = NULL WHERE recipient_id = ?1",
        params![&rid[..]],
    )?;
    Ok(old)
}

pub(crate) fn set_status(c: &Connection, rid: &EntityId, s: &QueueStatus) -> StoreResult<()> {
    let (status, reason, notice, ttl) = status_columns(s);
    update(
        c,
        "UPDATE queues SET status = ?2, block_reason = ?3, block_notice = ?4, block_notice_ttl = ?5 \
         WHERE recipient_id = ?1",
        params![&rid[..], status, reason, notice, ttl],
    )
}

pub(crate) fn unblock_queue(c: &Connection, rid: &EntityId) -> StoreResult<()> {
    if matches!(require(c, rid)?.status, QueueStatus::Blocked(_)) {
        set_status(c, rid, &QueueStatus::Active)?;
    }
    Ok(())
}

pub(crate) fn touch_queue(c: &Connection, rid: &EntityId, at: i64) -> StoreResult<()> {
    update(
        c,
        "UPDATE queues SET updated_at = ?2 WHERE recipient_id = ?1",
        params![&rid[..], at],
    )
}

pub(crate) fn delete_queue(c: &Connection, rid: &EntityId) -> StoreResult<QueueRecord> {
    let q = require(c, rid)?;
    let row = queue_rowid(c, rid)?;
    c.prepare_cached("DELETE FROM messages WHERE queue_id = ?1")?
        .execute(params![row])?;
    if let Some(n) = &q.notifier {
        delete_ntfs(c, &n.notifier_id)?;
    }
    c.prepare_cached("DELETE FROM queues WHERE id = ?1")?
        .execute(params![row])?;
    Ok(q)
}

fn row_to_message(r: &Row<'_>) -> StoreResult<Message> {
    message_from_columns(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)
}

fn head(c: &Connection, row: i64) -> StoreResult<Option<(i64, Message)>> {
    let mut st = c.prepare_cached(
        "SELECT msg_id, ts, kind, flags, body, id FROM messages WHERE queue_id = ?1 ORDER BY id LIMIT 1",
    )?;
    let mut rows = st.query(params![row])?;
    match rows.next()? {
        Some(r) => Ok(Some((r.get(5)?, row_to_message(r)?))),
        None => Ok(None),
    }
}

/// What the writer thread knows of a queue's messages, so that append and ACK need no `SELECT`
/// (count, quota marker, head) before their `INSERT` / `DELETE`. Loaded from the database on
/// first use; exact while cached because only the writer thread changes the database; dropped
/// whenever an operation on the queue fails (its savepoint rolled back) or a batch fails to
/// commit, and by every operation that changes what it holds other than append / delete.
#[derive(Debug)]
pub(crate) struct Meta {
    /// Internal row id of the queue.
    row: i64,
    notifier: Option<Vec<u8>>,
    /// Items stored (quota marker included).
    count: usize,
    /// The last item is the quota marker.
    marker: bool,
    /// Row id and msg id of the oldest item.
    head: Option<(i64, MsgId)>,
}

/// State owned by the writer thread, handed to every write job.
pub(crate) struct WriterState {
    meta: LruCache<EntityId, Meta>,
    /// Changes for the shared cache, applied once the batch committed.
    pub(crate) effects: Vec<Effect>,
    /// Queues whose [`Meta`] the running job used (dropped if the job fails).
    touched: Vec<EntityId>,
    quota: usize,
    /// Per queue, the row id of the first item inserted in the open transaction: items from it
    /// on are not durable yet (row ids only grow within a queue while it is not emptied).
    fresh: HashMap<EntityId, i64>,
    /// Set by a job whose answer must wait for the commit although it runs as an early job
    /// (it would hand out an item of the open transaction); taken by the writer.
    pub(crate) wait_commit: bool,
    /// Queues whose messages the running early job changed (published to
    /// [`Uncommitted`] when it is answered before the commit).
    pub(crate) early_rids: Vec<EntityId>,
    /// Shared with the store's readers.
    pub(crate) uncommitted: std::sync::Arc<Uncommitted>,
}

/// Queues with changes that were answered but are not committed yet (an `ACK`'s delete waiting
/// for the writer's next commit). Reads of their messages first make the writer commit, so that
/// nobody reads the state from before the answer (the read connections and the cache only ever
/// see committed state).
#[derive(Default)]
pub(crate) struct Uncommitted {
    any: std::sync::atomic::AtomicBool,
    set: std::sync::Mutex<std::collections::HashSet<EntityId>>,
}

impl Uncommitted {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<EntityId>> {
        self.set.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn add(&self, rids: &mut Vec<EntityId>) {
        if rids.is_empty() {
            return;
        }
        let mut g = self.lock();
        g.extend(rids.drain(..));
        self.any.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// After the commit (or the rollback).
    pub(crate) fn clear(&self) {
        if self.any.load(std::sync::atomic::Ordering::SeqCst) {
            let mut g = self.lock();
            g.clear();
            self.any.store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }

    pub(crate) fn contains(&self, rid: &EntityId) -> bool {
        self.any.load(std::sync::atomic::Ordering::SeqCst) && self.lock().contains(rid)
    }
}

/// Where a job's changes start, to undo them in the writer state if it fails.
pub(crate) struct Mark {
    effects: usize,
    touched: usize,
}

impl WriterState {
    pub(crate) fn new(
        capacity: usize,
        quota: usize,
        uncommitted: std::sync::Arc<Uncommitted>,
    ) -> Self {
        Self {
            meta: LruCache::new(capacity.max(1)),
            effects: Vec::new(),
            touched: Vec::new(),
            quota,
            fresh: HashMap::new(),
            wait_commit: false,
            early_rids: Vec::new(),
            uncommitted,
        }
    }

    pub(crate) fn mark(&mut self) -> Mark {
        Mark {
            effects: self.effects.len(),
            touched: self.touched.len(),
        }
    }

    /// The job since `mark` failed and was rolled back.
    pub(crate) fn job_failed(&mut self, mark: Mark) {
        self.effects.truncate(mark.effects);
        for rid in self.touched.drain(mark.touched..) {
            self.meta.remove(&rid);
        }
    }

    /// The batch is over: `committed` or rolled back as a whole.
    pub(crate) fn batch_done(&mut self, committed: bool) {
        self.touched.clear();
        self.fresh.clear();
        if !committed {
            self.meta.clear();
            self.effects.clear();
        }
    }

    /// The queue record changed (or was created / deleted): tell the shared cache what it is
    /// now, read back inside the transaction.
    pub(crate) fn record_changed(&mut self, c: &Connection, rid: &EntityId) -> StoreResult<()> {
        let q = get_queue(c, IdKind::Recipient, rid)?;
        self.effects.push(Effect::Record(*rid, q.map(Box::new)));
        Ok(())
    }

    /// An item was inserted into `rid` at row `row` in the open transaction.
    fn note_fresh(&mut self, rid: &EntityId, row: i64) {
        self.fresh.entry(*rid).or_insert(row);
    }

    /// The item at `row` of `rid` was inserted in the open transaction: answering with it
    /// before the commit would hand out what a crash can still lose.
    fn note_handed_out(&mut self, rid: &EntityId, row: Option<i64>) {
        if let (Some(row), Some(first)) = (row, self.fresh.get(rid)) {
            if row >= *first {
                self.wait_commit = true;
            }
        }
    }

    /// Forget the messages state of a queue (changed by something else than append / ACK).
    pub(crate) fn forget(&mut self, rid: &EntityId) {
        self.meta.remove(rid);
    }

    /// Forget the messages state of every queue.
    pub(crate) fn forget_all(&mut self) {
        self.meta.clear();
    }

    fn meta(&mut self, c: &Connection, rid: &EntityId) -> StoreResult<&mut Meta> {
        self.touched.push(*rid);
        if !self.meta.contains_key(rid) {
            let (row, notifier): (i64, Option<Vec<u8>>) = c
                .prepare_cached("SELECT id, notifier_id FROM queues WHERE recipient_id = ?1")?
                .query_row(params![&rid[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .ok_or(StoreError::NotFound)?;
            let (count, max_kind): (i64, i64) = c
                .prepare_cached(
                    "SELECT count(*), coalesce(max(kind), 0) FROM messages WHERE queue_id = ?1",
                )?
                .query_row(params![row], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let head = c
                .prepare_cached(
                    "SELECT id, msg_id FROM messages WHERE queue_id = ?1 ORDER BY id LIMIT 1",
                )?
                .query_row(params![row], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .optional()?
                .map(|(id, msg_id)| Ok::<_, StoreError>((id, fixed::<24>(msg_id, "msg id")?)))
                .transpose()?;
            let meta = Meta {
                row,
                notifier,
                count: usize::try_from(count).map_err(|_| bad("count"))?,
                marker: max_kind == KIND_QUOTA,
                head,
            };
            self.meta.insert(*rid, meta);
        }
        self.meta
            .get_mut(rid)
            .ok_or(StoreError::Internal("writer state"))
    }
}

fn insert_message(c: &Connection, row: i64, m: &Message) -> StoreResult<i64> {
    let (kind, flags, body) = message_columns(m);
    c.prepare_cached(
        "INSERT INTO messages (queue_id, msg_id, ts, kind, flags, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![row, &m.msg_id()[..], m.ts(), kind, flags, body])?;
    Ok(c.last_insert_rowid())
}

pub(crate) fn append_message(
    c: &Connection,
    st: &mut WriterState,
    rid: &EntityId,
    msg: NewMessage,
    ntf: Option<PendingNtf>,
) -> StoreResult<AppendOutcome> {
    validate::message(&msg)?;
    let quota = st.quota;
    let m = st.meta(c, rid)?;
    match validate::quota_decision(m.count, m.marker, quota) {
        validate::QuotaDecision::Refuse => Ok(AppendOutcome::QuotaExceeded {
            marker_added: false,
        }),
        validate::QuotaDecision::AddMarker => {
            let marker = Message::QuotaMarker {
                msg_id: msg.msg_id,
                ts: msg.ts,
            };
            let id = insert_message(c, m.row, &marker)?;
            m.marker = true;
            m.count += 1;
            if m.head.is_none() {
                m.head = Some((id, msg.msg_id));
                st.effects.push(Effect::Head(*rid, Some(marker)));
            }
            st.note_fresh(rid, id);
            Ok(AppendOutcome::QuotaExceeded { marker_added: true })
        }
        validate::QuotaDecision::Append => {
            let msg_id = msg.msg_id;
            let item = Message::Message(msg);
            let id = insert_message(c, m.row, &item)?;
            let was_empty = m.count == 0;
            m.count += 1;
            if let (Some(nid), Some(n)) = (&m.notifier, ntf) {
                c.prepare_cached(
                    "INSERT INTO notifications (notifier_id, msg_id, ts, nonce, enc_meta) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![nid, &n.msg_id[..], n.ts, &n.nonce[..], n.enc_meta])?;
            }
            if was_empty {
                m.head = Some((id, msg_id));
                st.effects.push(Effect::Head(*rid, Some(item)));
            }
            st.note_fresh(rid, id);
            Ok(AppendOutcome::Appended { was_empty })
        }
    }
}

pub(crate) fn peek_message(c: &Connection, rid: &EntityId) -> StoreResult<Option<Message>> {
    let row = queue_rowid(c, rid)?;
    Ok(head(c, row)?.map(|(_, m)| m))
}

pub(crate) fn delete_message(
    c: &Connection,
    st: &mut WriterState,
    rid: &EntityId,
    msg_id: &MsgId,
) -> StoreResult<DeleteOutcome> {
    let m = st.meta(c, rid)?;
    match m.head {
        Some((id, head_id)) if head_id == *msg_id => {
            c.prepare_cached("DELETE FROM messages WHERE id = ?1")?
                .execute(params![id])?;
            m.count -= 1;
            let next = if m.count == 0 {
                m.marker = false;
                None
            } else {
                head(c, m.row)?
            };
            m.head = next.as_ref().map(|(id, n)| (*id, *n.msg_id()));
            st.note_handed_out(rid, next.as_ref().map(|(id, _)| *id));
            st.early_rids.push(*rid);
            let next = next.map(|(_, n)| n);
            st.effects.push(Effect::Head(*rid, next.clone()));
            Ok(DeleteOutcome {
                deleted: true,
                head: next,
            })
        }
        Some(_) => {
            let h = head(c, m.row)?;
            st.note_handed_out(rid, h.as_ref().map(|(id, _)| *id));
            Ok(DeleteOutcome {
                deleted: false,
                head: h.map(|(_, m)| m),
            })
        }
        None => Ok(DeleteOutcome {
            deleted: false,
            head: None,
        }),
    }
}

pub(crate) fn message_count(c: &Connection, rid: &EntityId) -> StoreResult<usize> {
    let row = queue_rowid(c, rid)?;
    let n: i64 = c
        .prepare_cached("SELECT count(*) FROM messages WHERE queue_id = ?1")?
        .query_row(params![row], |r| r.get(0))?;
    usize::try_from(n).map_err(|_| bad("count"))
}

pub(crate) fn expire_messages(c: &Connection, before: i64) -> StoreResult<u64> {
    let n = c
        .prepare_cached(EXPIRE_ALL_SQL)?
        .execute(named_params! { "$1": before })?;
    Ok(n as u64)
}

pub(crate) fn expire_queue_messages(
    c: &Connection,
    rid: &EntityId,
    before: i64,
) -> StoreResult<u64> {
    let row = queue_rowid(c, rid)?;
    let n = c
        .prepare_cached(EXPIRE_QUEUE_SQL)?
        .execute(named_params! { "$1": before, "$2": row })?;
    Ok(n as u64)
}

pub(crate) fn drain_notifications(
    c: &Connection,
    nid: &EntityId,
    limit: usize,
) -> StoreResult<Vec<PendingNtf>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    let mut last_id: Option<i64> = None;
    {
        let mut st = c.prepare_cached(
            "SELECT msg_id, ts, nonce, enc_meta, id FROM notifications WHERE notifier_id = ?1 ORDER BY id LIMIT ?2",
        )?;
        let mut rows = st.query(params![&nid[..], limit])?;
        while let Some(r) = rows.next()? {
            out.push(ntf_from_columns(
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
            )?);
            last_id = Some(r.get(4)?);
        }
    }
    if let Some(last) = last_id {
        c.prepare_cached("DELETE FROM notifications WHERE notifier_id = ?1 AND id <= ?2")?
            .execute(params![&nid[..], last])?;
    }
    Ok(out)
}

/// [`drain_notifications`] for several notifier ids (see
/// `QueueStore::drain_notifications_many`), in the caller's transaction.
pub(crate) fn drain_notifications_many(
    c: &Connection,
    ids: &[EntityId],
    per_id: usize,
    total: usize,
) -> StoreResult<Vec<Vec<PendingNtf>>> {
    let mut out = Vec::with_capacity(ids.len());
    let mut left = total;
    for id in ids {
        if left == 0 {
            break;
        }
        let v = drain_notifications(c, id, per_id.min(left))?;
        left -= v.len().min(left);
        out.push(v);
    }
    Ok(out)
}

pub(crate) fn expire_notifications(c: &Connection, before: i64) -> StoreResult<u64> {
    let n = c
        .prepare_cached("DELETE FROM notifications WHERE ts < ?1")?
        .execute(params![before])?;
    Ok(n as u64)
}

pub(crate) fn stats(c: &Connection) -> StoreResult<StoreStats> {
    let count = |sql: &str| -> StoreResult<u64> {
        let n: i64 = c.prepare_cached(sql)?.query_row([], |r| r.get(0))?;
        u64::try_from(n).map_err(|_| bad("count"))
    };
    Ok(StoreStats {
        queues: count("SELECT count(*) FROM queues")?,
        messages: count("SELECT count(*) FROM messages")?,
        notifications: count("SELECT count(*) FROM notifications")?,
        // the UNIQUE index on notifier_id: no table scan
        notifier_queues: count("SELECT count(*) FROM queues WHERE notifier_id IS NOT NULL")?,
    })
}

// ---------------------------------------------------------------------------------------------
// Service certificates (v16)

pub(crate) fn get_create_service(
    c: &Connection,
    r: crate::types::ServiceRecord,
) -> StoreResult<EntityId> {
    let found: Option<(Vec<u8>, i64)> = c
        .prepare_cached(
            "SELECT service_id, service_role FROM services WHERE service_cert_hash = ?1",
        )?
        .query_row(params![&r.cert_hash[..]], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    match found {
        Some((id, role)) if role == i64::from(r.role) => {
            id.as_slice().try_into().map_err(|_| bad("service_id"))
        }
        Some(_) => Err(StoreError::Invalid("service certificate has another role")),
        None => {
            c.prepare_cached(
                "INSERT INTO services (service_id, service_role, service_cert, service_cert_hash, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                &r.service_id[..],
                i64::from(r.role),
                r.cert,
                &r.cert_hash[..],
                r.created_at
            ])
            .map_err(dup)?;
            Ok(r.service_id)
        }
    }
}

fn service_column(p: crate::types::ServiceParty) -> (&'static str, &'static str) {
    match p {
        crate::types::ServiceParty::Recipient => ("rcv_service_id", "recipient_id"),
        crate::types::ServiceParty::Notifier => ("ntf_service_id", "notifier_id"),
    }
}

pub(crate) fn get_queue_service(
    c: &Connection,
    rid: &EntityId,
    party: crate::types::ServiceParty,
) -> StoreResult<Option<EntityId>> {
    let (col, _) = service_column(party);
    let v: Option<Option<Vec<u8>>> = c
        .prepare_cached(&format!("SELECT {col} FROM queues WHERE recipient_id = ?1"))?
        .query_row(params![&rid[..]], |r| r.get(0))
        .optional()?;
    match v {
        None => Err(StoreError::NotFound),
        Some(None) => Ok(None),
        Some(Some(id)) => Ok(Some(id.as_slice().try_into().map_err(|_| bad(col))?)),
    }
}

pub(crate) fn set_queue_service(
    c: &Connection,
    rid: &EntityId,
    party: crate::types::ServiceParty,
    sid: Option<EntityId>,
) -> StoreResult<()> {
    let sid = sid.map(|s| s.to_vec());
    let n = match party {
        crate::types::ServiceParty::Recipient => c
            .prepare_cached("UPDATE queues SET rcv_service_id = ?2 WHERE recipient_id = ?1")?
            .execute(params![&rid[..], sid])?,
        crate::types::ServiceParty::Notifier => c
            .prepare_cached(
                "UPDATE queues SET ntf_service_id = ?2 WHERE recipient_id = ?1 AND notifier_id IS NOT NULL",
            )?
            .execute(params![&rid[..], sid])?,
    };
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(crate) fn service_queue_count(
    c: &Connection,
    sid: &EntityId,
    party: crate::types::ServiceParty,
) -> StoreResult<u64> {
    let (col, _) = service_column(party);
    let n: i64 = c
        .prepare_cached(&format!("SELECT count(*) FROM queues WHERE {col} = ?1"))?
        .query_row(params![&sid[..]], |r| r.get(0))?;
    u64::try_from(n).map_err(|_| bad("count"))
}

pub(crate) fn service_queue_ids(
    c: &Connection,
    sid: &EntityId,
    party: crate::types::ServiceParty,
    after: Option<EntityId>,
    limit: usize,
) -> StoreResult<Vec<EntityId>> {
    let (col, id_col) = service_column(party);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // The first page has no lower bound; then ids after the last one seen.
    let (bound, after) = match after {
        Some(a) => (format!("AND {id_col} > ?2"), a.to_vec()),
        None => ("AND ?2 IS NOT NULL".to_string(), Vec::new()),
    };
    let mut st = c.prepare_cached(&format!(
        "SELECT {id_col} FROM queues WHERE {col} = ?1 {bound} ORDER BY {id_col} LIMIT ?3"
    ))?;
    let mut rows = st.query(params![&sid[..], after, limit])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let id: Vec<u8> = r.get(0)?;
        out.push(id.as_slice().try_into().map_err(|_| bad(id_col))?);
    }
    Ok(out)
}
