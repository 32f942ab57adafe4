//! The relay's answers to the control port (reference §7.5, `Server.hs runCPClient`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use hush_store::{BlockInfo, BlockNotice, BlockReason, EntityId, QueueRecord, QueueStatus};

use super::Shared;
use super::delivery::now_secs;
use crate::config::BlockQuota;
use crate::control::{self, BlockingInfo, ControlHandler, ControlReply, SenderId};

/// [`ControlHandler`] backed by the running relay.
#[derive(Debug, Clone)]
pub struct ControlPort(pub Arc<Shared>);

fn id(s: &SenderId) -> Result<EntityId, String> {
    s.0.as_slice()
        .try_into()
        .map_err(|_| "queue not found".to_string())
}

fn status_text(q: &QueueRecord) -> String {
    match q.status {
        QueueStatus::Active => "active".into(),
        QueueStatus::Off => "off".into(),
        QueueStatus::Blocked(info) => {
            let b = super::error::blocking_info(&info);
            let mut s = format!("blocked reason={}", b.reason.wire());
            if let Some(n) = b.notice {
                s.push_str(&format!(",notice={n}"));
            }
            s
        }
    }
}

/// `{"ttl":n}` → `Some(n)`; `{}` → `None` (indefinite).
fn parse_notice(json: &str) -> Result<BlockNotice, String> {
    let inner = json
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or("notice must be a JSON object")?
        .trim();
    if inner.is_empty() {
        return Ok(BlockNotice { ttl: None });
    }
    let v = inner
        .strip_prefix("\"ttl\"")
        .map(str::trim_start)
        .and_then(|s| s.strip_prefix(':'))
        .ok_or("notice: expected {\"ttl\":<seconds>} or {}")?
        .trim();
    let ttl: i64 = v
        .parse()
        .map_err(|_| "notice: ttl must be a whole number")?;
    Ok(BlockNotice { ttl: Some(ttl) })
}

impl ControlPort {
    async fn queue(&self, s: &SenderId) -> Result<QueueRecord, String> {
        self.0
            .store
            .get_by_sender(id(s)?)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "queue not found".to_string())
    }
}

impl ControlHandler for ControlPort {
    async fn stats(&self) -> ControlReply {
        let s = self.0.store.stats().await.map_err(|e| e.to_string())?;
        let (subs, ntf_subs) = self.0.subs.counts();
        let m = &self.0.metrics;
        Ok(vec![
            format!("queues: {}", s.queues),
            format!("messages: {}", s.messages),
            format!("notifications: {}", s.notifications),
            format!("clients: {}", self.0.clients().len()),
            format!("subscriptions: {subs}"),
            format!("ntf subscriptions: {ntf_subs}"),
            format!("queues created: {}", m.queues_created.get()),
            format!("queues secured: {}", m.queues_secured.get()),
            format!("messages sent: {}", m.messages_sent.get()),
            format!("messages received: {}", m.messages_received.get()),
            format!("messages expired: {}", m.messages_expired.get()),
        ])
    }

    async fn clients(&self) -> ControlReply {
        let mut lines =
            vec!["clientId,version,connectedAt,subscriptions,ntfSubscriptions".to_string()];
        for c in self.0.clients() {
            lines.push(format!(
                "{},{},{},{},{}",
                c.id,
                c.version,
                crate::server::commands::utc_text(c.connected_at),
                c.rcv_subs.load(Ordering::Relaxed),
                c.ntf_subs.load(Ordering::Relaxed)
            ));
        }
        Ok(lines)
    }

    async fn status(&self, sender_id: SenderId) -> ControlReply {
        let q = self.queue(&sender_id).await?;
        Ok(vec![status_text(&q)])
    }

    async fn block(&self, sender_id: SenderId, info: BlockingInfo) -> ControlReply {
        let notice = match &info.notice {
            Some(n) => Some(parse_notice(n)?),
            None => None,
        };
        let q = self.queue(&sender_id).await?;
        if !matches!(q.status, QueueStatus::Blocked(_)) {
            let day = now_secs().div_euclid(86400);
            let mut b = self
                .0
                .blocked_today
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if b.0 != day {
                *b = (day, 0);
            }
            match self.0.config.auth.daily_block_queue_quota {
                BlockQuota::Forbidden => return Err("blocking queues is disabled".into()),
                BlockQuota::PerDay(n) if b.1 >= n => {
                    return Err(format!("daily block quota ({n}) reached"));
                }
                _ => {}
            }
            b.1 += 1;
        }
        let reason = match info.reason {
            control::BlockingReason::Spam => BlockReason::Spam,
            control::BlockingReason::Content => BlockReason::Content,
        };
        self.0
            .store
            .block_queue(q.recipient_id, BlockInfo { reason, notice })
            .await
            .map_err(|e| e.to_string())?;
        self.0.metrics.queues_blocked.inc();
        Ok(vec!["ok".into()])
    }

    async fn unblock(&self, sender_id: SenderId) -> ControlReply {
        let q = self.queue(&sender_id).await?;
        self.0
            .store
            .unblock_queue(q.recipient_id)
            .await
            .map_err(|e| e.to_string())?;
        Ok(vec!["ok".into()])
    }

    async fn delete(&self, sender_id: SenderId) -> ControlReply {
        let q = self.queue(&sender_id).await?;
        let deleted = self
            .0
            .store
            .delete_queue(q.recipient_id)
            .await
            .map_err(|e| e.to_string())?;
        self.0.queue_deleted(None, &deleted);
        self.0.metrics.queue_deleted(deleted.sender_key.is_some());
        Ok(vec!["ok".into()])
    }

    async fn save(&self) -> ControlReply {
        // Every change is committed before it is acknowledged: nothing to save.
        Ok(vec!["ok".into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices() {
        assert_eq!(parse_notice("{}"), Ok(BlockNotice { ttl: None }));
        assert_eq!(
            parse_notice("{\"ttl\":86400}"),
            Ok(BlockNotice { ttl: Some(86400) })
        );
        assert!(parse_notice("{\"x\":1}").is_err());
        assert!(parse_notice("{\"ttl\":\"a\"}").is_err());
    }
}
