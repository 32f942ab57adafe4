//! Invariants shared by all backends (one place, so the backends cannot drift apart).

use crate::error::{StoreError, StoreResult};
use crate::types::{MAX_MESSAGE_BODY, NewMessage, QueueLink, QueueRecord};

/// Most recipient keys a queue may hold (the stored encoding counts them in one byte).
pub(crate) const MAX_RECIPIENT_KEYS: usize = 255;

/// Dedupe (keeping first occurrences) and check a recipient key set.
pub(crate) fn key_set(keys: Vec<Vec<u8>>) -> StoreResult<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(keys.len());
    for k in keys {
        if k.is_empty() || k.len() > u16::MAX as usize {
            return Err(StoreError::Invalid("recipient key length"));
        }
        if !out.contains(&k) {
            out.push(k);
        }
    }
    if out.is_empty() {
        return Err(StoreError::Invalid("recipient key set must not be empty"));
    }
    if out.len() > MAX_RECIPIENT_KEYS {
        return Err(StoreError::Invalid("too many recipient keys"));
    }
    Ok(out)
}

pub(crate) fn add_key(mut keys: Vec<Vec<u8>>, key: Vec<u8>) -> StoreResult<Vec<Vec<u8>>> {
    keys.push(key);
    key_set(keys)
}

pub(crate) fn remove_key(mut keys: Vec<Vec<u8>>, key: &[u8]) -> StoreResult<Vec<Vec<u8>>> {
    keys.retain(|k| k != key);
    if keys.is_empty() {
        return Err(StoreError::Invalid("cannot remove the last recipient key"));
    }
    Ok(keys)
}

pub(crate) fn queue(mut q: QueueRecord) -> StoreResult<QueueRecord> {
    q.recipient_keys = key_set(q.recipient_keys)?;
    Ok(q)
}

pub(crate) fn message(m: &NewMessage) -> StoreResult<()> {
    if m.body.len() > MAX_MESSAGE_BODY {
        return Err(StoreError::MessageTooLarge(m.body.len()));
    }
    Ok(())
}

pub(crate) enum LinkChange {
    New,
    UpdateUser,
}

/// `LSET` rule (§3.9): a new link if none, else same id and same fixed data only.
pub(crate) fn link_change(current: Option<&QueueLink>, new: &QueueLink) -> StoreResult<LinkChange> {
    match current {
        None => Ok(LinkChange::New),
        Some(c) if c.link_id == new.link_id && c.data.fixed == new.data.fixed => {
            Ok(LinkChange::UpdateUser)
        }
        Some(_) => Err(StoreError::LinkMismatch),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum QuotaDecision {
    Append,
    AddMarker,
    Refuse,
}

/// Quota rule (§3.7): `len` items stored, `has_marker` if the last one is the quota marker.
pub(crate) fn quota_decision(len: usize, has_marker: bool, quota: usize) -> QuotaDecision {
    if has_marker {
        QuotaDecision::Refuse
    } else if len >= quota {
        QuotaDecision::AddMarker
    } else {
        QuotaDecision::Append
    }
}
