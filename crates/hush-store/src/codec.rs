//! Column-level encoding of records, shared by the SQL backends (SQLite, PostgreSQL), so both
//! store and decode exactly the same way. Decoding never panics: bad stored data is
//! [`StoreError::BadRecord`].

use crate::error::{StoreError, StoreResult};
use crate::types::{
    BlockInfo, BlockNotice, BlockReason, LinkData, MAX_MESSAGE_BODY, Message, NewMessage,
    NotifierCreds, PendingNtf, QueueLink, QueueMode, QueueRecord, QueueStatus,
};

/// Column list, in [`QueueRow`] field order.
pub(crate) const QUEUE_COLUMNS: &str = "recipient_id, recipient_keys, rcv_dh_secret, sender_id, \
     sender_key, queue_mode, link_id, link_fixed, link_user, notifier_id, notifier_key, \
     rcv_ntf_dh_secret, status, block_reason, block_notice, block_notice_ttl, updated_at";

/// Expire a prefix of every queue (`?1`/`$1` = before): items older than `before` that have no
/// newer-or-equal item ahead of them. Valid SQL for SQLite and PostgreSQL.
pub(crate) const EXPIRE_ALL_SQL: &str = "DELETE FROM messages WHERE ts < $1 AND id < coalesce(\
     (SELECT min(n.id) FROM messages n WHERE n.queue_id = messages.queue_id AND n.ts >= $1), \
     9223372036854775807)";

/// The same for one queue (`$2` = internal queue row id).
pub(crate) const EXPIRE_QUEUE_SQL: &str = "DELETE FROM messages WHERE queue_id = $2 AND ts < $1 \
     AND id < coalesce((SELECT min(n.id) FROM messages n WHERE n.queue_id = $2 AND n.ts >= $1), \
     9223372036854775807)";

pub(crate) const KIND_MESSAGE: i64 = 0;
pub(crate) const KIND_QUOTA: i64 = 1;

/// A queue record as SQL column values.
#[derive(Debug)]
pub(crate) struct QueueRow {
    pub recipient_id: Vec<u8>,
    pub recipient_keys: Vec<u8>,
    pub rcv_dh_secret: Vec<u8>,
    pub sender_id: Vec<u8>,
    pub sender_key: Option<Vec<u8>>,
    pub queue_mode: Option<i64>,
    pub link_id: Option<Vec<u8>>,
    pub link_fixed: Option<Vec<u8>>,
    pub link_user: Option<Vec<u8>>,
    pub notifier_id: Option<Vec<u8>>,
    pub notifier_key: Option<Vec<u8>>,
    pub rcv_ntf_dh_secret: Option<Vec<u8>>,
    pub status: i64,
    pub block_reason: Option<i64>,
    pub block_notice: Option<i64>,
    pub block_notice_ttl: Option<i64>,
    pub updated_at: Option<i64>,
}

pub(crate) fn bad(what: &str) -> StoreError {
    StoreError::BadRecord(what.to_string())
}

pub(crate) fn fixed<const N: usize>(v: Vec<u8>, what: &str) -> StoreResult<[u8; N]> {
    <[u8; N]>::try_from(v).map_err(|_| bad(what))
}

/// Recipient key set: count(u8) ‖ (len(u16 BE) ‖ key)*.
pub(crate) fn encode_keys(keys: &[Vec<u8>]) -> StoreResult<Vec<u8>> {
    let count =
        u8::try_from(keys.len()).map_err(|_| StoreError::Invalid("too many recipient keys"))?;
    let mut out = vec![count];
    for k in keys {
        let len =
            u16::try_from(k.len()).map_err(|_| StoreError::Invalid("recipient key length"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(k);
    }
    Ok(out)
}

pub(crate) fn decode_keys(b: &[u8]) -> StoreResult<Vec<Vec<u8>>> {
    let (&count, mut rest) = b
        .split_first()
        .ok_or_else(|| bad("recipient keys: empty"))?;
    let mut keys = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (len, tail) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| bad("recipient keys: length"))?;
        let len = u16::from_be_bytes(*len) as usize;
        let (key, tail) = tail
            .split_at_checked(len)
            .ok_or_else(|| bad("recipient keys: key"))?;
        keys.push(key.to_vec());
        rest = tail;
    }
    if !rest.is_empty() || keys.is_empty() {
        return Err(bad("recipient keys: trailing bytes or empty set"));
    }
    Ok(keys)
}

/// (status, block_reason, block_notice, block_notice_ttl)
pub(crate) fn status_columns(s: &QueueStatus) -> (i64, Option<i64>, Option<i64>, Option<i64>) {
    match s {
        QueueStatus::Active => (0, None, None, None),
        QueueStatus::Off => (1, None, None, None),
        QueueStatus::Blocked(b) => (
            2,
            Some(match b.reason {
                BlockReason::Spam => 1,
                BlockReason::Content => 2,
            }),
            Some(i64::from(b.notice.is_some())),
            b.notice.and_then(|n| n.ttl),
        ),
    }
}

impl QueueRow {
    pub(crate) fn from_record(q: &QueueRecord) -> StoreResult<Self> {
        let (status, block_reason, block_notice, block_notice_ttl) = status_columns(&q.status);
        Ok(Self {
            recipient_id: q.recipient_id.to_vec(),
            recipient_keys: encode_keys(&q.recipient_keys)?,
            rcv_dh_secret: q.rcv_dh_secret.to_vec(),
            sender_id: q.sender_id.to_vec(),
            sender_key: q.sender_key.clone(),
            queue_mode: q.mode.map(|m| match m {
                QueueMode::Messaging => 1,
                QueueMode::Contact => 2,
            }),
            link_id: q.link.as_ref().map(|l| l.link_id.to_vec()),
            link_fixed: q.link.as_ref().map(|l| l.data.fixed.clone()),
            link_user: q.link.as_ref().map(|l| l.data.user.clone()),
            notifier_id: q.notifier.as_ref().map(|n| n.notifier_id.to_vec()),
            notifier_key: q.notifier.as_ref().map(|n| n.notifier_key.clone()),
            rcv_ntf_dh_secret: q.notifier.as_ref().map(|n| n.rcv_ntf_dh_secret.to_vec()),
            status,
            block_reason,
            block_notice,
            block_notice_ttl,
            updated_at: q.updated_at,
        })
    }

    pub(crate) fn into_record(self) -> StoreResult<QueueRecord> {
        let mode = match self.queue_mode {
            None => None,
            Some(1) => Some(QueueMode::Messaging),
            Some(2) => Some(QueueMode::Contact),
            Some(_) => return Err(bad("queue mode")),
        };
        let link = match (self.link_id, self.link_fixed, self.link_user) {
            (None, None, None) => None,
            (Some(id), Some(fixed_data), Some(user)) => Some(QueueLink {
                link_id: fixed(id, "link id")?,
                data: LinkData {
                    fixed: fixed_data,
                    user,
                },
            }),
            _ => return Err(bad("link columns")),
        };
        let notifier = match (self.notifier_id, self.notifier_key, self.rcv_ntf_dh_secret) {
            (None, None, None) => None,
            (Some(id), Some(notifier_key), Some(secret)) => Some(NotifierCreds {
                notifier_id: fixed(id, "notifier id")?,
                notifier_key,
                rcv_ntf_dh_secret: fixed(secret, "rcv ntf dh secret")?,
            }),
            _ => return Err(bad("notifier columns")),
        };
        let status = match self.status {
            0 => QueueStatus::Active,
            1 => QueueStatus::Off,
            2 => {
                let reason = match self.block_reason {
                    Some(1) => BlockReason::Spam,
                    Some(2) => BlockReason::Content,
                    _ => return Err(bad("block reason")),
                };
                let notice = match self.block_notice {
                    Some(1) => Some(BlockNotice {
                        ttl: self.block_notice_ttl,
                    }),
                    None | Some(0) => None,
                    _ => return Err(bad("block notice")),
                };
                QueueStatus::Blocked(BlockInfo { reason, notice })
            }
            _ => return Err(bad("status")),
        };
        Ok(QueueRecord {
            recipient_id: fixed(self.recipient_id, "recipient id")?,
            recipient_keys: decode_keys(&self.recipient_keys)?,
            rcv_dh_secret: fixed(self.rcv_dh_secret, "rcv dh secret")?,
            sender_id: fixed(self.sender_id, "sender id")?,
            sender_key: self.sender_key,
            mode,
            link,
            notifier,
            status,
            updated_at: self.updated_at,
        })
    }
}

/// Decode a stored message row.
pub(crate) fn message_from_columns(
    msg_id: Vec<u8>,
    ts: i64,
    kind: i64,
    flags: i64,
    body: Vec<u8>,
) -> StoreResult<Message> {
    let msg_id = fixed(msg_id, "msg id")?;
    match kind {
        KIND_MESSAGE => {
            let flags = u8::try_from(flags).map_err(|_| bad("flags"))?;
            if body.len() > MAX_MESSAGE_BODY {
                return Err(bad("body length"));
            }
            Ok(Message::Message(NewMessage {
                msg_id,
                ts,
                flags,
                body,
            }))
        }
        KIND_QUOTA => Ok(Message::QuotaMarker { msg_id, ts }),
        _ => Err(bad("message kind")),
    }
}

/// (kind, flags, body) columns of a message.
pub(crate) fn message_columns(m: &Message) -> (i64, i64, &[u8]) {
    match m {
        Message::Message(m) => (KIND_MESSAGE, i64::from(m.flags), &m.body),
        Message::QuotaMarker { .. } => (KIND_QUOTA, 0, &[]),
    }
}

pub(crate) fn ntf_from_columns(
    msg_id: Vec<u8>,
    ts: i64,
    nonce: Vec<u8>,
    enc_meta: Vec<u8>,
) -> StoreResult<PendingNtf> {
    Ok(PendingNtf {
        msg_id: fixed(msg_id, "ntf msg id")?,
        ts,
        nonce: fixed(nonce, "ntf nonce")?,
        enc_meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keys_round_trip(keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..100), 1..10)) {
            let enc = encode_keys(&keys).unwrap();
            prop_assert_eq!(decode_keys(&enc).unwrap(), keys);
        }

        #[test]
        fn decode_keys_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_keys(&bytes);
        }

        #[test]
        fn truncated_keys_are_errors(keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..50), 1..5), cut in 0usize..1000) {
            let enc = encode_keys(&keys).unwrap();
            let cut = cut % enc.len();
            prop_assert!(decode_keys(&enc[..cut]).is_err());
        }

        #[test]
        fn message_columns_never_panic(id in prop::collection::vec(any::<u8>(), 0..30), kind in -2i64..4, flags in -2i64..300, body_len in 0usize..17000) {
            let _ = message_from_columns(id, 0, kind, flags, vec![0; body_len]);
        }
    }

    #[test]
    fn bad_rows_are_errors_not_panics() {
        let q = QueueRecord {
            recipient_id: [1; 24],
            recipient_keys: vec![vec![1, 2, 3]],
            rcv_dh_secret: [2; 32],
            sender_id: [3; 24],
            sender_key: None,
            mode: Some(QueueMode::Contact),
            link: None,
            notifier: None,
            status: QueueStatus::Blocked(BlockInfo {
                reason: BlockReason::Spam,
                notice: Some(BlockNotice { ttl: None }),
            }),
            updated_at: Some(86400),
        };
        assert_eq!(QueueRow::from_record(&q).unwrap().into_record().unwrap(), q);
        let mut r = QueueRow::from_record(&q).unwrap();
        r.recipient_id.pop();
        assert!(matches!(r.into_record(), Err(StoreError::BadRecord(_))));
        let mut r = QueueRow::from_record(&q).unwrap();
        r.status = 9;
        assert!(r.into_record().is_err());
        let mut r = QueueRow::from_record(&q).unwrap();
        r.link_id = Some(vec![0; 24]); // link id without data
        assert!(r.into_record().is_err());
        let mut r = QueueRow::from_record(&q).unwrap();
        r.queue_mode = Some(7);
        assert!(r.into_record().is_err());
        assert!(message_from_columns(vec![0; 24], 1, KIND_MESSAGE, 256, vec![]).is_err());
        assert!(message_from_columns(vec![0; 23], 1, KIND_QUOTA, 0, vec![]).is_err());
        assert!(ntf_from_columns(vec![0; 24], 1, vec![0; 23], vec![]).is_err());
    }
}
