//! The relay's answers to the control port (reference §7.5, `Server.hs runCPClient`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use hush_store::{BlockInfo, BlockNotice, BlockReason, EntityId, QueueRecord, QueueStatus};

use super::Shared;
use super::delivery::now_secs;
use crate::config::{BlockQuota, Config, SyncPolicy};
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

/// The `save` reply for the store `config` names (the store `start` opens from it: PostgreSQL
/// with `store_queues = database`, else SQLite, or memory with `[STORE_LOG] enable = off`).
fn save_reply(config: &Config) -> String {
    if let Some(db) = &config.store.database {
        return format!(
            "nothing to save: the store is PostgreSQL (schema {}), every change is committed \
             when it is made",
            db.schema
        );
    }
    if !config.store.enable {
        return "not saved: the store is in memory only ([STORE_LOG] enable = off), queues and \
                messages are lost when the server stops"
            .into();
    }
    // The relay opens SQLite with the default early commit delay (server::open_store).
    let early_ms = hush_store::SqliteOptions::default()
        .early_commit_delay
        .as_millis();
    let committed = format!(
        "every change is committed when it is made (before its reply; an ACK's delete within \
         {early_ms} ms)"
    );
    match config.store.sync {
        SyncPolicy::Full => {
            format!("nothing to save: the store is SQLite (sync = full), {committed} and fsynced")
        }
        SyncPolicy::Normal => format!(
            "nothing to save: the store is SQLite (sync = normal), {committed}; the WAL is \
             fsynced at checkpoints, so the last changes survive a crash of the server but may \
             be lost on power loss"
        ),
    }
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
        // The reference writes its in-memory state to the store log here. hush's stores commit
        // every change before the relay acknowledges it, so there is nothing to write: the reply
        // says so, and what the store is.
        Ok(vec![save_reply(&self.0.config)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_says_what_the_store_is() {
        let mut c = Config::defaults(crate::config::ServerPaths {
            config_dir: "/nonexistent".into(),
            data_dir: "/nonexistent".into(),
        });
        c.store.enable = true;
        c.store.sync = SyncPolicy::Full;
        let full = save_reply(&c);
        assert!(
            full.starts_with("nothing to save: the store is SQLite (sync = full), every change")
                && full.ends_with("5 ms) and fsynced"),
            "{full}"
        );
        c.store.sync = SyncPolicy::Normal;
        let normal = save_reply(&c);
        assert!(
            normal.contains("(sync = normal)") && normal.contains("power loss"),
            "{normal}"
        );
        c.store.enable = false;
        let mem = save_reply(&c);
        assert!(
            mem.starts_with("not saved: the store is in memory only"),
            "{mem}"
        );
        c.store.database = Some(crate::config::DatabaseConfig {
            connection: "postgresql://u:secret@h/db".into(),
            ..Default::default()
        });
        let pg = save_reply(&c);
        assert!(pg.contains("PostgreSQL (schema smp_server)"), "{pg}");
        assert!(!pg.contains("secret"), "{pg}");
    }

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
