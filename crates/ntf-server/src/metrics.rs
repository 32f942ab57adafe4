//! Metrics with the reference's `simplex_ntf_*` names (upstream
//! `Notifications/Server/Prometheus.hs`), plus hush's delivery-policy counters
//! (`hush_ntf_policy_*`), in a `prometheus-client` registry served by the shared endpoint
//! ([`hush_server_common::metrics`]: OpenMetrics text on `GET /metrics`).
//!
//! Counters keep the reference's names without the `_total` suffix an OpenMetrics `counter` must
//! have, so they are [`Counter`]s typed `unknown` (`rate()` works on them as on counters); gauges
//! are plain atomics the server stores into. The labelled counters have a fixed set of label
//! values, created at start (a scrape shows them at zero) and kept: counting one is an atomic add,
//! with no lock and no map lookup (the policy and push counters move with every push).

use std::sync::Arc;

use hush_server_common::metrics::prometheus_client;
use hush_server_common::metrics::{AtomicGauge, Children, Exposition, UntypedCounter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A monotonic counter (`inc`, `inc_by`, `get`), exported typed `unknown` under its exact name.
pub type Counter = UntypedCounter;

/// A gauge the server sets (`store`, `load`, `fetch_add` on its `AtomicU64`).
pub type GaugeU64 = AtomicGauge;

type Label = [(&'static str, &'static str); 1];

/// A labelled counter family whose label values are a fixed list (created at start).
pub struct Labelled {
    key: &'static str,
    values: &'static [&'static str],
    children: Children<Label, Counter>,
}

impl std::fmt::Debug for Labelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Labelled").field("key", &self.key).finish()
    }
}

impl Labelled {
    fn new(key: &'static str, values: &'static [&'static str]) -> Self {
        let children = Children::new(Family::default(), values.len());
        children.create_all(|i| [(key, values[i])]);
        Self {
            key,
            values,
            children,
        }
    }

    fn family(&self) -> Family<Label, Counter> {
        self.children.family().clone()
    }

    fn inc(&self, value: &'static str) {
        match self.values.iter().position(|v| *v == value) {
            Some(i) => self.children.get(i, || [(self.key, value)]).inc(),
            // not in the list: counted all the same (a lookup in the family)
            None => self
                .children
                .family()
                .get_or_create(&[(self.key, value)])
                .inc(),
        }
    }

    fn get(&self, value: &'static str) -> u64 {
        match self.values.iter().position(|v| *v == value) {
            Some(i) => self.children.get(i, || [(self.key, value)]).get(),
            None => self
                .children
                .family()
                .get(&[(self.key, value)])
                .map_or(0, |c| c.get()),
        }
    }
}

/// Delivery-policy decisions (`hush_ntf_policy_decisions{decision}`).
pub const POLICY_DECISIONS: &[&str] = &[
    "silent",
    "alert",
    "deferred",
    "coalesced",
    "due_silent",
    "due_alert",
];
/// Caps that refuse commands (`hush_ntf_caps_refused{cap}`).
pub const CAPS: &[&str] = &[
    "subscriptions_per_token",
    "relays_per_token",
    "relays",
    "tokens_per_device",
];
/// Reasons to refuse a connection at accept (`hush_ntf_connections_refused{reason}`).
pub const CONNECTION_REFUSALS: &[&str] = &["max_connections", "max_connections_per_ip"];
/// Push styles (`hush_ntf_pushes{style}`).
pub const PUSH_STYLES: &[&str] = &["silent", "alert"];

/// All counters (cheap to clone).
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<MetricsInner>,
    labelled: Arc<LabelledCounters>,
    exposition: Exposition,
}

#[derive(Debug)]
struct LabelledCounters {
    /// Refusals by cap ([`CAPS`]).
    caps: Labelled,
    /// Connections refused at accept ([`CONNECTION_REFUSALS`]).
    conns_refused: Labelled,
    /// Delivery-policy decisions ([`POLICY_DECISIONS`]).
    policy: Labelled,
    /// Pushes handed to the push-server by style ([`PUSH_STYLES`]).
    pushes: Labelled,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
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
    /// Tokens awaiting verification that push-server feedback reported invalid.
    pub verification_invalid_tkn: Counter,
    /// Tokens marked INVALID from push-server feedback.
    pub feedback_invalid: Counter,
    /// NSUB answered OK (not exported).
    pub smp_subscribed: Counter,
    pub smp_subscribe_errors: Counter,
    /// Relay sessions connected (not exported).
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
    /// Gauges set by the server.
    pub tokens_total: GaugeU64,
    pub subscriptions_total: GaugeU64,
    pub last_ntfs_total: GaugeU64,
    pub smp_sessions: GaugeU64,
    pub subs_active: GaugeU64,
    pub subs_pending: GaugeU64,
    pub push_queue_length: GaugeU64,
    pub relays_total: GaugeU64,
}

impl std::ops::Deref for Metrics {
    type Target = MetricsInner;
    fn deref(&self) -> &MetricsInner {
        &self.inner
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = MetricsInner::default();
        let l = LabelledCounters {
            caps: Labelled::new("cap", CAPS),
            conns_refused: Labelled::new("reason", CONNECTION_REFUSALS),
            policy: Labelled::new("decision", POLICY_DECISIONS),
            pushes: Labelled::new("style", PUSH_STYLES),
        };
        let mut r = Registry::default();
        let counters: [(&str, &str, &Counter); 24] = [
            (
                "simplex_ntf_tokens_created",
                "Created tokens",
                &m.tokens_created,
            ),
            (
                "simplex_ntf_tokens_verified",
                "Verified tokens",
                &m.tokens_verified,
            ),
            (
                "simplex_ntf_tokens_deleted",
                "Deleted tokens",
                &m.tokens_deleted,
            ),
            (
                "simplex_ntf_tokens_replaced",
                "Replaced tokens",
                &m.tokens_replaced,
            ),
            (
                "simplex_ntf_subscriptions_created",
                "Created subscriptions",
                &m.subscriptions_created,
            ),
            (
                "simplex_ntf_subscriptions_deleted",
                "Deleted subscriptions",
                &m.subscriptions_deleted,
            ),
            (
                "simplex_ntf_notifications_received",
                "Received notifications",
                &m.notifications_received,
            ),
            (
                "simplex_ntf_notifications_delivered",
                "Delivered notifications",
                &m.notifications_delivered,
            ),
            (
                "simplex_ntf_notifications_failed",
                "Failed notifications",
                &m.notifications_failed,
            ),
            (
                "simplex_ntf_notifications_periodic_delivered",
                "Delivered periodic notifications",
                &m.periodic_delivered,
            ),
            (
                "simplex_ntf_notifications_periodic_failed",
                "Failed periodic notifications",
                &m.periodic_failed,
            ),
            (
                "simplex_ntf_notifications_verification_queued",
                "Token verifications queued",
                &m.verification_queued,
            ),
            (
                "simplex_ntf_notifications_verification_delivered",
                "Delivered token verifications",
                &m.verification_delivered,
            ),
            (
                "simplex_ntf_notifications_verification_failed",
                "Failed token verification deliveries",
                &m.verification_failed,
            ),
            (
                "simplex_ntf_notifications_verification_invalid_tkn",
                "Invalid token errors while delivering verifications",
                &m.verification_invalid_tkn,
            ),
            (
                "hush_ntf_notifications_dropped",
                "Notifications for unknown subscriptions or inactive tokens",
                &m.notifications_dropped,
            ),
            (
                "hush_ntf_tokens_invalidated",
                "Tokens marked invalid from push-server feedback",
                &m.feedback_invalid,
            ),
            (
                "hush_ntf_smp_subscribe_errors",
                "NSUB errors",
                &m.smp_subscribe_errors,
            ),
            (
                "hush_ntf_smp_disconnects",
                "SMP relay disconnections",
                &m.smp_disconnected,
            ),
            (
                "hush_ntf_token_commands_rate_limited",
                "TNEW/TRPL refused by a rate limit (ERR QUOTA)",
                &m.token_rate_limited,
            ),
            (
                "hush_ntf_tokens_expired",
                "Never verified tokens deleted after the unverified token ttl",
                &m.tokens_expired,
            ),
            (
                "hush_ntf_tokens_evicted",
                "Never verified tokens evicted by the tokens-per-device cap",
                &m.tokens_evicted,
            ),
            (
                "hush_ntf_relay_destinations_refused",
                "SNEW refused: relay address not allowed by relay_destinations",
                &m.destinations_refused,
            ),
            (
                "hush_ntf_handshake_timeouts",
                "Connections closed because TLS + hello did not complete in time",
                &m.handshake_timeouts,
            ),
        ];
        for (name, help, c) in counters {
            r.register(name, help, c.clone());
        }
        let gauges: [(&str, &str, &GaugeU64); 8] = [
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
        for (name, help, g) in gauges {
            r.register(name, help, g.clone());
        }
        for (name, help, family) in [
            (
                "hush_ntf_policy_decisions",
                "Delivery policy decisions",
                &l.policy,
            ),
            (
                "hush_ntf_caps_refused",
                "Commands refused by a cap (ERR QUOTA)",
                &l.caps,
            ),
            (
                "hush_ntf_connections_refused",
                "Connections refused at accept",
                &l.conns_refused,
            ),
            (
                "hush_ntf_pushes",
                "Message pushes handed to the push-server",
                &l.pushes,
            ),
        ] {
            r.register(name, help, family.family());
        }
        // `simplex_ntf_info{version}` 1, a gauge as the reference's
        let info = Family::<Label, Gauge>::default();
        info.get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        r.register("simplex_ntf_info", "Server information.", info);
        Metrics {
            inner: Arc::new(m),
            labelled: Arc::new(l),
            exposition: Exposition::new(r),
        }
    }

    pub fn policy_decision(&self, label: &'static str) {
        self.labelled.policy.inc(label);
    }

    pub fn cap_refused(&self, cap: &'static str) {
        self.labelled.caps.inc(cap);
    }

    pub fn connection_refused(&self, reason: &'static str) {
        self.labelled.conns_refused.inc(reason);
    }

    /// Refusals of one cap.
    pub fn cap_count(&self, cap: &'static str) -> u64 {
        self.labelled.caps.get(cap)
    }

    /// Connections refused for one reason.
    pub fn connections_refused(&self, reason: &'static str) -> u64 {
        self.labelled.conns_refused.get(reason)
    }

    pub fn push_sent(&self, style: &'static str) {
        self.labelled.pushes.inc(style);
    }

    /// Count of one policy decision label.
    pub fn policy_count(&self, label: &'static str) -> u64 {
        self.labelled.policy.get(label)
    }

    /// Count of pushes of one style.
    pub fn push_count(&self, style: &'static str) -> u64 {
        self.labelled.pushes.get(style)
    }

    /// The OpenMetrics text of every metric (what `/metrics` answers).
    pub fn render(&self) -> String {
        self.exposition.encode()
    }
}

/// Serves `GET /metrics` until `shutdown` fires (the shared endpoint).
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: hush_server_common::Shutdown,
) {
    hush_server_common::metrics::serve(listener, metrics.exposition, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn names_types_and_labelled_counters() {
        let m = Metrics::new();
        m.tokens_created.inc();
        m.tokens_expired.inc_by(3);
        m.push_queue_length.fetch_add(2, Relaxed);
        m.policy_decision("coalesced");
        m.policy_decision("coalesced");
        m.push_sent("alert");
        m.cap_refused("relays");
        m.connection_refused("max_connections_per_ip");
        assert_eq!(m.policy_count("coalesced"), 2);
        assert_eq!(m.policy_count("silent"), 0);
        assert_eq!(m.push_count("alert"), 1);
        assert_eq!(m.cap_count("relays"), 1);
        assert_eq!(m.connections_refused("max_connections_per_ip"), 1);
        let text = m.render();
        for line in [
            "# TYPE simplex_ntf_tokens_created unknown\n",
            "\nsimplex_ntf_tokens_created 1\n",
            "\nhush_ntf_tokens_expired 3\n",
            "# TYPE simplex_ntf_apns_push_queue_length gauge\n",
            "\nsimplex_ntf_apns_push_queue_length 2\n",
            "\nhush_ntf_policy_decisions{decision=\"coalesced\"} 2\n",
            "\nhush_ntf_policy_decisions{decision=\"due_alert\"} 0\n",
            "\nhush_ntf_pushes{style=\"alert\"} 1\n",
            "\nhush_ntf_pushes{style=\"silent\"} 0\n",
            "\nhush_ntf_caps_refused{cap=\"relays\"} 1\n",
            "\nhush_ntf_connections_refused{reason=\"max_connections_per_ip\"} 1\n",
            "# TYPE simplex_ntf_info gauge\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        assert!(!text.contains("_total{") && !text.contains("created_total"));
        assert!(
            text.contains(&format!(
                "simplex_ntf_info{{version=\"{}\"}} 1\n",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
    }
}
