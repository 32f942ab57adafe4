//! Metrics with the reference's `simplex_ntf_*` names (upstream
//! `Notifications/Server/Prometheus.hs`), plus hush's delivery-policy counters
//! (`hush_ntf_policy_*`), rendered as Prometheus text (format 0.0.4) for `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// All counters (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    inner: Arc<MetricsInner>,
}

#[derive(Debug, Default)]
pub struct MetricsInner {
    pub tokens_created: Counter,
    pub tokens_verified: Counter,
    pub tokens_deleted: Counter,
    pub tokens_replaced: Counter,
    pub subscriptions_created: Counter,
    pub subscriptions_deleted: Counter,
    pub notifications_received: Counter,
    pub notifications_delivered: Counter,
    pub notifications_failed: Counter,
    /// NMSG for an unknown subscription or a token that is not ACTIVE (dropped).
    pub notifications_dropped: Counter,
    pub periodic_delivered: Counter,
    pub periodic_failed: Counter,
    pub verification_queued: Counter,
    pub verification_delivered: Counter,
    pub verification_failed: Counter,
    pub verification_invalid_tkn: Counter,
    /// Tokens marked INVALID from push-server feedback.
    pub feedback_invalid: Counter,
    pub smp_subscribed: Counter,
    pub smp_subscribe_errors: Counter,
    pub smp_connected: Counter,
    pub smp_disconnected: Counter,
    /// `TNEW`/`TRPL` refused with `ERR QUOTA` by the connection's or the server's rate limit.
    pub token_rate_limited: Counter,
    /// Tokens never verified and deleted after `unverified_token_ttl`.
    pub tokens_expired: Counter,
    /// Never-verified tokens evicted by a newer `TNEW`/`TRPL` for the same device.
    pub tokens_evicted: Counter,
    /// `SNEW`s refused because the relay address is not allowed by `relay_destinations`.
    pub destinations_refused: Counter,
    /// Connections closed before the TLS handshake and NTF hello completed in time.
    pub handshake_timeouts: Counter,
    /// Refusals by cap (`subscriptions_per_token`, `relays_per_token`, `relays`,
    /// `tokens_per_device`).
    caps: Mutex<BTreeMap<&'static str, u64>>,
    /// Connections refused at accept (`max_connections`, `max_connections_per_ip`).
    conns_refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Delivery-policy decisions by label (`silent`, `alert`, `deferred`, `coalesced`,
    /// `due_silent`, `due_alert`).
    policy: Mutex<BTreeMap<&'static str, u64>>,
    /// Pushes handed to the push-server by style (`silent`, `alert`).
    pushes: Mutex<BTreeMap<&'static str, u64>>,
    /// Gauges set by the server.
    pub tokens_total: AtomicU64,
    pub subscriptions_total: AtomicU64,
    pub last_ntfs_total: AtomicU64,
    pub smp_sessions: AtomicU64,
    pub subs_active: AtomicU64,
    pub subs_pending: AtomicU64,
    pub push_queue_length: AtomicU64,
    pub relays_total: AtomicU64,
}

impl std::ops::Deref for Metrics {
    type Target = MetricsInner;
    fn deref(&self) -> &MetricsInner {
        &self.inner
    }
}

fn bump(m: &Mutex<BTreeMap<&'static str, u64>>, label: &'static str) {
    let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
    *g.entry(label).or_default() += 1;
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    pub fn policy_decision(&self, label: &'static str) {
        bump(&self.inner.policy, label);
    }

    pub fn cap_refused(&self, cap: &'static str) {
        bump(&self.inner.caps, cap);
    }

    pub fn connection_refused(&self, reason: &'static str) {
        bump(&self.inner.conns_refused, reason);
    }

    /// Refusals of one cap.
    pub fn cap_count(&self, cap: &str) -> u64 {
        let g = self.inner.caps.lock().unwrap_or_else(|p| p.into_inner());
        g.get(cap).copied().unwrap_or(0)
    }

    /// Connections refused for one reason.
    pub fn connections_refused(&self, reason: &str) -> u64 {
        let g = self
            .inner
            .conns_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        g.get(reason).copied().unwrap_or(0)
    }

    pub fn push_sent(&self, style: &'static str) {
        bump(&self.inner.pushes, style);
    }

    /// Count of one policy decision label.
    pub fn policy_count(&self, label: &str) -> u64 {
        self.inner
            .policy
            .lock()
            .map(|g| g.get(label).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Count of pushes of one style.
    pub fn push_count(&self, style: &str) -> u64 {
        self.inner
            .pushes
            .lock()
            .map(|g| g.get(style).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Prometheus text.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        let m = &self.inner;
        let counters: [(&str, &str, u64); 24] = [
            (
                "simplex_ntf_tokens_created",
                "Created tokens",
                m.tokens_created.get(),
            ),
            (
                "simplex_ntf_tokens_verified",
                "Verified tokens",
                m.tokens_verified.get(),
            ),
            (
                "simplex_ntf_tokens_deleted",
                "Deleted tokens",
                m.tokens_deleted.get(),
            ),
            (
                "simplex_ntf_tokens_replaced",
                "Replaced tokens",
                m.tokens_replaced.get(),
            ),
            (
                "simplex_ntf_subscriptions_created",
                "Created subscriptions",
                m.subscriptions_created.get(),
            ),
            (
                "simplex_ntf_subscriptions_deleted",
                "Deleted subscriptions",
                m.subscriptions_deleted.get(),
            ),
            (
                "simplex_ntf_notifications_received",
                "Received notifications",
                m.notifications_received.get(),
            ),
            (
                "simplex_ntf_notifications_delivered",
                "Delivered notifications",
                m.notifications_delivered.get(),
            ),
            (
                "simplex_ntf_notifications_failed",
                "Failed notifications",
                m.notifications_failed.get(),
            ),
            (
                "simplex_ntf_notifications_periodic_delivered",
                "Delivered periodic notifications",
                m.periodic_delivered.get(),
            ),
            (
                "simplex_ntf_notifications_periodic_failed",
                "Failed periodic notifications",
                m.periodic_failed.get(),
            ),
            (
                "simplex_ntf_notifications_verification_queued",
                "Token verifications queued",
                m.verification_queued.get(),
            ),
            (
                "simplex_ntf_notifications_verification_delivered",
                "Delivered token verifications",
                m.verification_delivered.get(),
            ),
            (
                "simplex_ntf_notifications_verification_failed",
                "Failed token verification deliveries",
                m.verification_failed.get(),
            ),
            (
                "simplex_ntf_notifications_verification_invalid_tkn",
                "Invalid token errors while delivering verifications",
                m.verification_invalid_tkn.get(),
            ),
            (
                "hush_ntf_notifications_dropped",
                "Notifications for unknown subscriptions or inactive tokens",
                m.notifications_dropped.get(),
            ),
            (
                "hush_ntf_tokens_invalidated",
                "Tokens marked invalid from push-server feedback",
                m.feedback_invalid.get(),
            ),
            (
                "hush_ntf_smp_subscribe_errors",
                "NSUB errors",
                m.smp_subscribe_errors.get(),
            ),
            (
                "hush_ntf_smp_disconnects",
                "SMP relay disconnections",
                m.smp_disconnected.get(),
            ),
            (
                "hush_ntf_token_commands_rate_limited",
                "TNEW/TRPL refused by a rate limit (ERR QUOTA)",
                m.token_rate_limited.get(),
            ),
            (
                "hush_ntf_tokens_expired",
                "Never verified tokens deleted after the unverified token ttl",
                m.tokens_expired.get(),
            ),
            (
                "hush_ntf_tokens_evicted",
                "Never verified tokens evicted by the tokens-per-device cap",
                m.tokens_evicted.get(),
            ),
            (
                "hush_ntf_relay_destinations_refused",
                "SNEW refused: relay address not allowed by relay_destinations",
                m.destinations_refused.get(),
            ),
            (
                "hush_ntf_handshake_timeouts",
                "Connections closed because TLS + hello did not complete in time",
                m.handshake_timeouts.get(),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                o,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            );
        }
        let gauges: [(&str, &str, &AtomicU64); 8] = [
            (
                "simplex_ntf_tokens_total",
                "Total number of tokens stored.",
                &m.tokens_total,
            ),
            (
                "simplex_ntf_subscriptions_approx_total",
                "Approximate total number of subscriptions stored.",
                &m.subscriptions_total,
            ),
            (
                "simplex_ntf_notifications_total",
                "Total number of last notifications stored.",
                &m.last_ntfs_total,
            ),
            (
                "simplex_ntf_smp_sessions_count",
                "SMP sessions count",
                &m.smp_sessions,
            ),
            (
                "simplex_ntf_smp_subscription_active_sub_count_other",
                "Active SMP subscriptions count",
                &m.subs_active,
            ),
            (
                "simplex_ntf_smp_subscription_pending_sub_count_other",
                "Pending SMP subscriptions count",
                &m.subs_pending,
            ),
            (
                "simplex_ntf_apns_push_queue_length",
                "Count of notifications in push queue",
                &m.push_queue_length,
            ),
            (
                "hush_ntf_relays_total",
                "Relays with subscriptions",
                &m.relays_total,
            ),
        ];
        for (name, help, v) in gauges {
            let v = v.load(Ordering::Relaxed);
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
        }
        let name = "hush_ntf_policy_decisions";
        let _ = writeln!(
            o,
            "# HELP {name} Delivery policy decisions\n# TYPE {name} counter"
        );
        if let Ok(g) = m.policy.lock() {
            for (l, v) in g.iter() {
                let _ = writeln!(o, "{name}{{decision=\"{l}\"}} {v}");
            }
        }
        for (name, help, label, map) in [
            (
                "hush_ntf_caps_refused",
                "Commands refused by a cap (ERR QUOTA)",
                "cap",
                &m.caps,
            ),
            (
                "hush_ntf_connections_refused",
                "Connections refused at accept",
                "reason",
                &m.conns_refused,
            ),
        ] {
            let _ = writeln!(o, "\n# HELP {name} {help}\n# TYPE {name} counter");
            if let Ok(g) = map.lock() {
                for (l, v) in g.iter() {
                    let _ = writeln!(o, "{name}{{{label}=\"{l}\"}} {v}");
                }
            }
        }
        let name = "hush_ntf_pushes";
        let _ = writeln!(
            o,
            "\n# HELP {name} Message pushes handed to the push-server\n# TYPE {name} counter"
        );
        if let Ok(g) = m.pushes.lock() {
            for (l, v) in g.iter() {
                let _ = writeln!(o, "{name}{{style=\"{l}\"}} {v}");
            }
        }
        let _ = writeln!(
            o,
            "\n# HELP simplex_ntf_info Server information.\n# TYPE simplex_ntf_info gauge\nsimplex_ntf_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        o
    }
}

/// Concurrent metrics connections.
const MAX_SCRAPES: usize = 64;

/// Serves `GET /metrics` (any path) until `shutdown` fires: HTTP/1.1, one request per connection.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    mut shutdown: hush_server_common::Shutdown,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut backoff = hush_server_common::AcceptBackoff::new("metrics");
    // at most this many scrapes at once (a task each); more are closed at accept
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    loop {
        let Some((mut s, _)) =
            hush_server_common::accept(&listener, &mut backoff, &mut shutdown).await
        else {
            return;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                while n < buf.len() {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return false,
                        Ok(k) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        return true;
                    }
                }
                false
            })
            .await;
            let resp = if matches!(read, Ok(true)) && buf.starts_with(b"GET ") {
                let body = metrics.render();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = s.write_all(resp.as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
}
