//! Prometheus metrics of the push-server, served by the shared endpoint
//! ([`hush_server_common::metrics`]: OpenMetrics text on `GET /metrics`).
//!
//! The per-push counters (`sent`, `jobs_submitted`, and `failed`/`retries`/`refused` by reason)
//! have label values from fixed lists: each child is looked up in its family at its first use
//! and kept, so that counting a push is an atomic add, with no lock, no map lookup and no
//! allocation. A series appears once something was counted in it; a value outside the lists is
//! counted all the same (looked up in the family).

use std::sync::atomic::AtomicI64;

use hush_server_common::metrics::{Children, Exposition};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub provider: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub reason: String,
}

/// Provider labels (`DeviceAddress::provider_label`).
pub const PROVIDERS: &[&str] = &["apns_prod", "apns_dev", "apns_test", "apns_null", "webpush"];
/// Failure and retry reasons (`PushError::metric_label`).
pub const REASONS: &[&str] = &[
    "invalid_bad",
    "invalid_topic",
    "invalid_expired",
    "invalid_unregistered",
    "provider_token_expired",
    "rate_limited",
    "unavailable",
    "connection",
    "payload_too_large",
    "rejected",
    "bad_handle",
    "no_provider",
    "expired",
    "destination_refused",
];
/// Outcomes of a submitted job.
pub const OUTCOMES: &[&str] = &["queued", "duplicate"];
/// Reasons of `push_refused_total` (see its help text).
pub const REFUSALS: &[&str] = &[
    "max_connections",
    "per_ip",
    "anonymous_connections",
    "handshake_timeout",
    "register_rate",
    "register_rate_per_ip",
    "anonymous_cap",
    "anonymous_disabled",
    "destination",
];

fn index(list: &[&str], value: &str) -> Option<usize> {
    list.iter().position(|v| *v == value)
}

/// The kept children of the per-push families.
struct Kept {
    sent: Children<ProviderLabels, Counter>,
    failed: Children<ReasonLabels, Counter>,
    retries: Children<ReasonLabels, Counter>,
    submitted: Children<OutcomeLabels, Counter>,
    refused: Children<RefusedLabels, Counter>,
}

/// All counters and gauges (cheap to clone).
#[derive(Clone)]
pub struct Metrics {
    exposition: Exposition,
    kept: std::sync::Arc<Kept>,
    pub sent: Family<ProviderLabels, Counter>,
    pub failed: Family<ReasonLabels, Counter>,
    pub retries: Family<ReasonLabels, Counter>,
    pub submitted: Family<OutcomeLabels, Counter>,
    pub outbox_length: Gauge<i64, AtomicU64Compat>,
    pub handles_registered: Counter,
    /// Connections and requests refused by an abuse limit, by reason.
    pub refused: Family<RefusedLabels, Counter>,
    /// Stored registrations made without credential (split mode, long Web Push endpoints).
    pub anonymous_registrations: Gauge<i64, AtomicU64Compat>,
}

/// Gauge atomic type (prometheus-client's default `AtomicI64`).
pub type AtomicU64Compat = AtomicI64;

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("push");
        let sent = Family::<ProviderLabels, Counter>::default();
        let failed = Family::<ReasonLabels, Counter>::default();
        let retries = Family::<ReasonLabels, Counter>::default();
        let submitted = Family::<OutcomeLabels, Counter>::default();
        let outbox_length = Gauge::<i64, AtomicU64Compat>::default();
        let handles_registered = Counter::default();
        let refused = Family::<RefusedLabels, Counter>::default();
        let anonymous_registrations = Gauge::<i64, AtomicU64Compat>::default();
        r.register("sent", "Pushes accepted by a provider", sent.clone());
        r.register(
            "failed",
            "Pushes finished without delivery, by provider and reason",
            failed.clone(),
        );
        r.register(
            "retries",
            "Delivery attempts that will be retried, by provider and reason",
            retries.clone(),
        );
        r.register(
            "jobs_submitted",
            "Jobs handed over by ntf-servers (queued or duplicate)",
            submitted.clone(),
        );
        r.register(
            "outbox_length",
            "Pending jobs in the outbox",
            outbox_length.clone(),
        );
        r.register(
            "handles_registered",
            "Push handles issued to devices (split mode)",
            handles_registered.clone(),
        );
        r.register(
            "refused",
            "Connections and requests refused by an abuse limit (max_connections, per_ip, \
             anonymous_connections, handshake_timeout, register_rate, register_rate_per_ip, \
             anonymous_cap, anonymous_disabled, destination)",
            refused.clone(),
        );
        r.register(
            "anonymous_registrations",
            "Stored registrations made without credential",
            anonymous_registrations.clone(),
        );
        let kept = Kept {
            sent: Children::new(sent.clone(), PROVIDERS.len()),
            failed: Children::new(failed.clone(), PROVIDERS.len() * REASONS.len()),
            retries: Children::new(retries.clone(), PROVIDERS.len() * REASONS.len()),
            submitted: Children::new(submitted.clone(), OUTCOMES.len()),
            refused: Children::new(refused.clone(), REFUSALS.len()),
        };
        Metrics {
            exposition: Exposition::new(r),
            kept: std::sync::Arc::new(kept),
            sent,
            failed,
            retries,
            submitted,
            outbox_length,
            handles_registered,
            refused,
            anonymous_registrations,
        }
    }

    pub fn refused(&self, reason: &str) {
        let labels = || RefusedLabels {
            reason: reason.into(),
        };
        match index(REFUSALS, reason) {
            Some(i) => self.kept.refused.get(i, labels).inc(),
            None => self.refused.get_or_create(&labels()).inc(),
        };
    }

    pub fn sent(&self, provider: &str) {
        let labels = || ProviderLabels {
            provider: provider.into(),
        };
        match index(PROVIDERS, provider) {
            Some(i) => self.kept.sent.get(i, labels).inc(),
            None => self.sent.get_or_create(&labels()).inc(),
        };
    }

    pub fn failed(&self, provider: &str, reason: &str) {
        Self::by_reason(&self.kept.failed, provider, reason);
    }

    pub fn retry(&self, provider: &str, reason: &str) {
        Self::by_reason(&self.kept.retries, provider, reason);
    }

    fn by_reason(kept: &Children<ReasonLabels, Counter>, provider: &str, reason: &str) {
        let labels = || ReasonLabels {
            provider: provider.into(),
            reason: reason.into(),
        };
        match (index(PROVIDERS, provider), index(REASONS, reason)) {
            (Some(p), Some(r)) => kept.get(p * REASONS.len() + r, labels).inc(),
            _ => kept.family().get_or_create(&labels()).inc(),
        };
    }

    pub fn submitted(&self, outcome: &str) {
        let labels = || OutcomeLabels {
            outcome: outcome.into(),
        };
        match index(OUTCOMES, outcome) {
            Some(i) => self.kept.submitted.get(i, labels).inc(),
            None => self.submitted.get_or_create(&labels()).inc(),
        };
    }

    /// The OpenMetrics text of every metric (what `/metrics` answers).
    pub fn encode(&self) -> String {
        self.exposition.encode()
    }
}

/// Serves `GET /metrics` until `shutdown` becomes true (the shared endpoint).
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: watch::Receiver<bool>) {
    hush_server_common::metrics::serve(listener, metrics.exposition, shutdown.into()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_children_are_the_exported_series() {
        let m = Metrics::new();
        // nothing counted: the per-push families are not exported yet
        assert!(!m.encode().contains("push_sent_total{"), "{}", m.encode());
        m.sent("webpush");
        m.sent("webpush");
        m.sent("fcm"); // outside the list: counted in the family
        m.failed("apns_prod", "invalid_bad");
        m.failed("apns_prod", "something_new");
        m.retry("apns_dev", "unavailable");
        m.submitted("queued");
        m.refused("per_ip");
        let text = m.encode();
        for line in [
            "push_sent_total{provider=\"webpush\"} 2\n",
            "push_sent_total{provider=\"fcm\"} 1\n",
            "push_failed_total{provider=\"apns_prod\",reason=\"invalid_bad\"} 1\n",
            "push_failed_total{provider=\"apns_prod\",reason=\"something_new\"} 1\n",
            "push_retries_total{provider=\"apns_dev\",reason=\"unavailable\"} 1\n",
            "push_jobs_submitted_total{outcome=\"queued\"} 1\n",
            "push_refused_total{reason=\"per_ip\"} 1\n",
            "# TYPE push_outbox_length gauge\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        assert!(!text.contains("apns_test"), "only counted series: {text}");
        assert_eq!(
            m.sent
                .get_or_create(&ProviderLabels {
                    provider: "webpush".into()
                })
                .get(),
            2
        );
    }
}
