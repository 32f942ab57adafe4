//! Prometheus metrics of the push-server and the `/metrics` endpoint.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http_util::{self, Body};

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

/// All counters and gauges (cheap to clone).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
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
pub type AtomicU64Compat = std::sync::atomic::AtomicI64;

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
        Metrics {
            registry: Arc::new(r),
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
        self.refused
            .get_or_create(&RefusedLabels {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn sent(&self, provider: &str) {
        self.sent
            .get_or_create(&ProviderLabels {
                provider: provider.into(),
            })
            .inc();
    }

    pub fn failed(&self, provider: &str, reason: &str) {
        self.failed
            .get_or_create(&ReasonLabels {
                provider: provider.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn retry(&self, provider: &str, reason: &str) {
        self.retries
            .get_or_create(&ReasonLabels {
                provider: provider.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn submitted(&self, outcome: &str) {
        self.submitted
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out = "# encoding error\n".into();
        }
        out
    }
}

static SCRAPES: AtomicU64 = AtomicU64::new(0);

/// Serves `GET /metrics` (HTTP/1.1) until `shutdown` becomes true.
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: watch::Receiver<bool>) {
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut backoff = hush_server_common::AcceptBackoff::new("metrics");
    loop {
        let Some((tcp, _)) = hush_server_common::accept_until(&listener, &mut backoff, || {
            let mut shutdown = shutdown.clone();
            async move {
                let _ = shutdown.wait_for(|s| *s).await;
            }
        })
        .await
        else {
            return;
        };
        let Ok(permit) = sem.clone().try_acquire_owned() else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let resp =
                        if req.uri().path() == "/metrics" && req.method() == http::Method::GET {
                            SCRAPES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            http::Response::builder()
                                .header(
                                    "content-type",
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                )
                                .body(http_util::full(Bytes::from(metrics.encode())))
                        } else {
                            http::Response::builder()
                                .status(404)
                                .body(http_util::full(Bytes::from_static(b"not found\n")))
                        };
                    Ok::<_, http::Error>(
                        resp.unwrap_or_else(|_| http::Response::new(Body::default())),
                    )
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(tcp), svc);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), conn).await;
            drop(permit);
        });
    }
}
