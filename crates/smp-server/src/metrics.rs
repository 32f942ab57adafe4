//! Relay metrics (reference §7.5, `Server/Prometheus.hs` names), served by the shared endpoint
//! ([`hush_server_common::metrics`]: OpenMetrics text on `GET /metrics` at the admin address).
//!
//! [`Metrics`] is a cheap-to-clone bundle of atomic counters and gauges in a `prometheus-client`
//! registry. The relay core increments them; [`serve`] answers `GET /metrics`.
//!
//! Names are the reference's, byte for byte (including its `subscribtion` spelling), so dashboards built
//! for the reference keep working. The reference writes counters without the `_total` suffix that the
//! OpenMetrics counter type demands, so reference counters are exposed as [`RefCounter`]s: monotonic
//! values whose `# TYPE` is `unknown` (`untyped` in the text format 0.0.4; `rate()` works on them
//! as usual). Gauges keep the `gauge` type.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use hush_server_common::metrics::Exposition;

use crate::Shutdown;

/// A monotonic counter exposed under its exact name (no `_total` suffix), typed `unknown`.
pub type RefCounter = hush_server_common::metrics::UntypedCounter;

/// Label set: one or two `(name, value)` pairs with static strings.
pub type Label = [(&'static str, &'static str); 1];
pub type Label2 = [(&'static str, &'static str); 2];
/// Label set for per-port socket gauges.
pub type PortLabel = [(&'static str, String); 1];

/// `simplex_smp_messages_sent_errors{type=…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    Auth,
    Quota,
    Large,
    Block,
}

/// `simplex_smp_subscribtion_errors{type=…}` and `simplex_smp_messages_notify_get_errors{type=…}`
/// (`NoMsg` only for GET).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubError {
    Auth,
    Duplicate,
    Prohibited,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetError {
    NoMsg,
    Auth,
    Duplicate,
    Prohibited,
}

/// `simplex_smp_messages_ntf_errors{type=…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NtfError {
    NoSub,
    Lost,
    Expired,
}

/// `simplex_smp_subscribtion_ntf_errors{type=…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NtfSubError {
    Auth,
    Duplicate,
}

/// Outcome of a proxied session or forwarded message (`simplex_smp_relay_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyOutcome {
    Request,
    Success,
    ErrorConnect,
    ErrorCompat,
    ErrorOther,
}

/// Every metric the relay exposes. Fields are public handles; the helper methods keep the reference's
/// "all + subset" label conventions in one place.
#[derive(Clone)]
pub struct Metrics {
    exposition: Exposition,
    // Queues
    pub queues_created: RefCounter,
    pub queues_secured: RefCounter,
    /// `{type="all"|"new"|"secured"}`; use [`Metrics::queue_deleted`].
    pub queues_deleted: Family<Label, RefCounter>,
    pub queues_blocked: RefCounter,
    /// Stored queues (gauge, reference `simplex_smp_queues_total1`).
    pub queues_total: Gauge,
    // Subscriptions
    pub subscription_successes: RefCounter,
    pub subscription_end: RefCounter,
    pub subscription_errors: Family<Label, RefCounter>,
    // Messages
    pub messages_sent: RefCounter,
    pub messages_sent_errors: Family<Label, RefCounter>,
    pub messages_received: RefCounter,
    pub messages_expired: RefCounter,
    /// Stored messages (gauge).
    pub messages_total: Gauge,
    // Notification flags (client side)
    pub messages_notify_sent: RefCounter,
    pub messages_notify_get_sent: RefCounter,
    pub messages_notify_get_received: RefCounter,
    pub messages_notify_get_errors: Family<Label, RefCounter>,
    pub queues_notify_created: RefCounter,
    pub queues_notify_new_created: RefCounter,
    pub queues_notify_deleted: RefCounter,
    /// Stored queues with notification credentials (gauge, reference
    /// `simplex_smp_queues_notify_total1`).
    pub queues_notify_total: Gauge,
    // Notifications (to ntf servers)
    pub messages_ntf_successes: RefCounter,
    pub messages_ntf_errors: Family<Label, RefCounter>,
    pub subscription_ntf_requests: RefCounter,
    pub subscription_ntf_requests_batch: RefCounter,
    pub subscription_ntf_errors: Family<Label, RefCounter>,
    // Proxy ("relay")
    pub relay_sessions_requests: Family<Label, RefCounter>,
    pub relay_sessions_successes: Family<Label, RefCounter>,
    pub relay_sessions_errors: Family<Label2, RefCounter>,
    pub relay_messages_requests: Family<Label, RefCounter>,
    pub relay_messages_successes: Family<Label, RefCounter>,
    pub relay_messages_errors: Family<Label2, RefCounter>,
    pub relay_messages_received: RefCounter,
    // Real-time
    pub sockets_accepted: Family<PortLabel, Gauge>,
    pub sockets_closed: Family<PortLabel, Gauge>,
    pub sockets_active: Family<PortLabel, Gauge>,
    pub clients_total: Gauge,
    pub subscription_total: Gauge,
    pub subscription_clients_total: Gauge,
    pub subscription_ntf_total: Gauge,
    pub subscription_ntf_clients_total: Gauge,
    /// Seconds from delivery (MSG) to ACK.
    pub delivery_ack_confirmed_time: Histogram,
    // Abuse limits (hush additions, `hush_smp_*`)
    /// New sockets closed at accept, `{type="max_connections"|"per_ip"}`.
    pub connections_refused: Family<Label, RefCounter>,
    /// Connections closed because TLS + SMP hello took longer than `handshake_timeout`.
    pub handshake_timeouts: RefCounter,
    /// `NEW` refused with `ERR QUOTA` by `new_queues_per_minute`.
    pub queues_new_refused: RefCounter,
    /// Service handshakes refused by the service-handshake rate caps.
    pub service_handshakes_refused: RefCounter,
    /// `PRXY` refused, `{type="destination"|"links"|"client_links"}`.
    pub proxy_refused: Family<Label, RefCounter>,
    /// Open proxy connections to destination relays.
    pub proxy_links: Gauge,
}

const TYPE: &str = "type";
const SOURCE: &str = "source";

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn family1(values: &[&'static str], key: &'static str) -> Family<Label, RefCounter> {
    let f = Family::<Label, RefCounter>::default();
    for v in values {
        // Pre-create every series so that a scrape shows zeros, as the reference does.
        drop(f.get_or_create(&[(key, v)]));
    }
    f
}

fn proxy_family() -> Family<Label2, RefCounter> {
    let f = Family::<Label2, RefCounter>::default();
    for s in ["all", "own"] {
        for t in ["connect", "compat", "other"] {
            drop(f.get_or_create(&[(SOURCE, s), (TYPE, t)]));
        }
    }
    f
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            exposition: Exposition::new(Registry::default()),
            queues_created: RefCounter::default(),
            queues_secured: RefCounter::default(),
            queues_deleted: family1(&["all", "new", "secured"], TYPE),
            queues_blocked: RefCounter::default(),
            queues_total: Gauge::default(),
            subscription_successes: RefCounter::default(),
            subscription_end: RefCounter::default(),
            subscription_errors: family1(&["auth", "duplicate", "prohibited"], TYPE),
            messages_sent: RefCounter::default(),
            messages_sent_errors: family1(&["auth", "quota", "large", "block"], TYPE),
            messages_received: RefCounter::default(),
            messages_expired: RefCounter::default(),
            messages_total: Gauge::default(),
            messages_notify_sent: RefCounter::default(),
            messages_notify_get_sent: RefCounter::default(),
            messages_notify_get_received: RefCounter::default(),
            messages_notify_get_errors: family1(
                &["nomsg", "auth", "duplicate", "prohibited"],
                TYPE,
            ),
            queues_notify_created: RefCounter::default(),
            queues_notify_new_created: RefCounter::default(),
            queues_notify_deleted: RefCounter::default(),
            queues_notify_total: Gauge::default(),
            messages_ntf_successes: RefCounter::default(),
            messages_ntf_errors: family1(&["nosub", "lost", "expired"], TYPE),
            subscription_ntf_requests: RefCounter::default(),
            subscription_ntf_requests_batch: RefCounter::default(),
            subscription_ntf_errors: family1(&["auth", "duplicate"], TYPE),
            relay_sessions_requests: family1(&["all", "own"], SOURCE),
            relay_sessions_successes: family1(&["all", "own"], SOURCE),
            relay_sessions_errors: proxy_family(),
            relay_messages_requests: family1(&["all", "own"], SOURCE),
            relay_messages_successes: family1(&["all", "own"], SOURCE),
            relay_messages_errors: proxy_family(),
            relay_messages_received: RefCounter::default(),
            sockets_accepted: Family::default(),
            sockets_closed: Family::default(),
            sockets_active: Family::default(),
            clients_total: Gauge::default(),
            subscription_total: Gauge::default(),
            subscription_clients_total: Gauge::default(),
            subscription_ntf_total: Gauge::default(),
            subscription_ntf_clients_total: Gauge::default(),
            delivery_ack_confirmed_time: Histogram::new([
                1.0, 5.0, 30.0, 60.0, 300.0, 1200.0, 3600.0,
            ]),
            connections_refused: family1(&["max_connections", "per_ip"], TYPE),
            handshake_timeouts: RefCounter::default(),
            queues_new_refused: RefCounter::default(),
            service_handshakes_refused: RefCounter::default(),
            proxy_refused: family1(&["destination", "links", "client_links"], TYPE),
            proxy_links: Gauge::default(),
        };
        let mut r = Registry::default();
        macro_rules! reg {
            ($name:literal, $help:literal, $field:ident) => {
                r.register($name, $help, m.$field.clone());
            };
        }
        reg!(
            "simplex_smp_queues_created",
            "Created queues",
            queues_created
        );
        reg!(
            "simplex_smp_queues_secured",
            "Secured queues",
            queues_secured
        );
        reg!(
            "simplex_smp_queues_deleted",
            "Deleted queues",
            queues_deleted
        );
        reg!(
            "simplex_smp_queues_blocked",
            "Blocked queues",
            queues_blocked
        );
        reg!(
            "simplex_smp_queues_total1",
            "Total number of stored queues",
            queues_total
        );
        reg!(
            "simplex_smp_subscribtion_successes",
            "Successful subscriptions",
            subscription_successes
        );
        reg!(
            "simplex_smp_subscribtion_end",
            "Ended subscriptions",
            subscription_end
        );
        reg!(
            "simplex_smp_subscribtion_errors",
            "Subscription errors",
            subscription_errors
        );
        reg!("simplex_smp_messages_sent", "Sent messages", messages_sent);
        reg!(
            "simplex_smp_messages_sent_errors",
            "Total number of messages errors by type",
            messages_sent_errors
        );
        reg!(
            "simplex_smp_messages_received",
            "Received messages",
            messages_received
        );
        reg!(
            "simplex_smp_messages_expired",
            "Expired messages",
            messages_expired
        );
        reg!(
            "simplex_smp_messages_total",
            "Total number of messages stored",
            messages_total
        );
        reg!(
            "simplex_smp_messages_notify_sent",
            "Sent messages with notification flag (client)",
            messages_notify_sent
        );
        reg!(
            "simplex_smp_messages_notify_get_sent",
            "Requests to get messages with notification flag (client)",
            messages_notify_get_sent
        );
        reg!(
            "simplex_smp_messages_notify_get_received",
            "Successfully received get requests messages with notification flag (client)",
            messages_notify_get_received
        );
        reg!(
            "simplex_smp_messages_notify_get_errors",
            "Error events with messages with notification flag (client)",
            messages_notify_get_errors
        );
        reg!(
            "simplex_smp_queues_notify_created",
            "Created queue notification credentials",
            queues_notify_created
        );
        reg!(
            "simplex_smp_queues_notify_new_created",
            "Created new queues with notification credentials",
            queues_notify_new_created
        );
        reg!(
            "simplex_smp_queues_notify_deleted",
            "Deleted queue notification credentials",
            queues_notify_deleted
        );
        reg!(
            "simplex_smp_queues_notify_total1",
            "Total number of stored queues with notification flag",
            queues_notify_total
        );
        reg!(
            "simplex_smp_messages_ntf_successes",
            "Successful events with notification messages (to ntf server)",
            messages_ntf_successes
        );
        reg!(
            "simplex_smp_messages_ntf_errors",
            "Error events with notification messages (to ntf server)",
            messages_ntf_errors
        );
        reg!(
            "simplex_smp_subscription_ntf_requests",
            "Subscription requests with notification flag (from ntf server)",
            subscription_ntf_requests
        );
        reg!(
            "simplex_smp_subscription_ntf_requests_batch",
            "Batched subscription requests with notification flag (from ntf server)",
            subscription_ntf_requests_batch
        );
        reg!(
            "simplex_smp_subscribtion_ntf_errors",
            "Subscription errors with notification flag (from ntf server)",
            subscription_ntf_errors
        );
        reg!(
            "simplex_smp_relay_sessions_requests",
            "Session requests through relay",
            relay_sessions_requests
        );
        reg!(
            "simplex_smp_relay_sessions_successes",
            "Successful session events through relay",
            relay_sessions_successes
        );
        reg!(
            "simplex_smp_relay_sessions_errors",
            "Error session events through relay",
            relay_sessions_errors
        );
        reg!(
            "simplex_smp_relay_messages_requests",
            "Message requests sent through relay",
            relay_messages_requests
        );
        reg!(
            "simplex_smp_relay_messages_successes",
            "Successful messages sent through relay",
            relay_messages_successes
        );
        reg!(
            "simplex_smp_relay_messages_errors",
            "Error events with messages sent through relay",
            relay_messages_errors
        );
        reg!(
            "simplex_smp_relay_messages_received",
            "Relay messages statistics",
            relay_messages_received
        );
        reg!(
            "simplex_smp_sockets_accepted",
            "Accepted sockets",
            sockets_accepted
        );
        reg!(
            "simplex_smp_sockets_closed",
            "Closed sockets",
            sockets_closed
        );
        reg!(
            "simplex_smp_sockets_active",
            "Active sockets",
            sockets_active
        );
        reg!("simplex_smp_clients_total", "Clients", clients_total);
        reg!(
            "simplex_smp_subscribtion_total",
            "Total SMP subscriptions",
            subscription_total
        );
        reg!(
            "simplex_smp_subscribtion_clients_total",
            "Subscribed clients",
            subscription_clients_total
        );
        reg!(
            "simplex_smp_subscription_ntf_total",
            "Total notification subscriptions (from ntf server)",
            subscription_ntf_total
        );
        reg!(
            "simplex_smp_subscription_ntf_clients_total",
            "Total subscribed NTF servers",
            subscription_ntf_clients_total
        );
        reg!(
            "simplex_smp_delivery_ack_confirmed_time",
            "Times to confirm message delivery, only confirmed deliveries",
            delivery_ack_confirmed_time
        );
        reg!(
            "hush_smp_connections_refused",
            "New connections closed at accept by max_connections or max_connections_per_ip",
            connections_refused
        );
        reg!(
            "hush_smp_handshake_timeouts",
            "Connections closed for not completing TLS and the SMP hello within handshake_timeout",
            handshake_timeouts
        );
        reg!(
            "hush_smp_queues_new_refused",
            "NEW refused by new_queues_per_minute",
            queues_new_refused
        );
        reg!(
            "hush_smp_service_handshakes_refused",
            "Service handshakes (client certificates) refused by the per-address or server-wide rate cap",
            service_handshakes_refused
        );
        reg!(
            "hush_smp_proxy_refused",
            "PRXY refused by the destination policy or the proxy connection caps",
            proxy_refused
        );
        reg!(
            "hush_smp_proxy_links",
            "Open proxy connections to destination relays",
            proxy_links
        );
        r.register(
            "simplex_smp",
            "Server information",
            Info::new([
                ("version", env!("CARGO_PKG_VERSION")),
                ("implementation", "hush"),
            ]),
        );
        Metrics {
            exposition: Exposition::new(r),
            ..m
        }
    }

    /// A queue was deleted; `secured` says whether it had been secured (reference `qDeletedSecured`).
    pub fn queue_deleted(&self, secured: bool) {
        self.queues_deleted.get_or_create(&[(TYPE, "all")]).inc();
        let kind = if secured { "secured" } else { "new" };
        self.queues_deleted.get_or_create(&[(TYPE, kind)]).inc();
    }

    pub fn send_error(&self, e: SendError) {
        let t = match e {
            SendError::Auth => "auth",
            SendError::Quota => "quota",
            SendError::Large => "large",
            SendError::Block => "block",
        };
        self.messages_sent_errors.get_or_create(&[(TYPE, t)]).inc();
    }

    pub fn subscription_error(&self, e: SubError) {
        let t = match e {
            SubError::Auth => "auth",
            SubError::Duplicate => "duplicate",
            SubError::Prohibited => "prohibited",
        };
        self.subscription_errors.get_or_create(&[(TYPE, t)]).inc();
    }

    pub fn get_error(&self, e: GetError) {
        let t = match e {
            GetError::NoMsg => "nomsg",
            GetError::Auth => "auth",
            GetError::Duplicate => "duplicate",
            GetError::Prohibited => "prohibited",
        };
        self.messages_notify_get_errors
            .get_or_create(&[(TYPE, t)])
            .inc();
    }

    pub fn ntf_error(&self, e: NtfError) {
        let t = match e {
            NtfError::NoSub => "nosub",
            NtfError::Lost => "lost",
            NtfError::Expired => "expired",
        };
        self.messages_ntf_errors.get_or_create(&[(TYPE, t)]).inc();
    }

    pub fn ntf_subscription_error(&self, e: NtfSubError) {
        let t = match e {
            NtfSubError::Auth => "auth",
            NtfSubError::Duplicate => "duplicate",
        };
        self.subscription_ntf_errors
            .get_or_create(&[(TYPE, t)])
            .inc();
    }

    /// A proxied session event (`PRXY`); `own` = the destination is one of this operator's servers.
    /// Counted under `source="all"` always and also under `source="own"` when `own`.
    pub fn relay_session(&self, own: bool, outcome: ProxyOutcome) {
        Self::proxy(
            &self.relay_sessions_requests,
            &self.relay_sessions_successes,
            &self.relay_sessions_errors,
            own,
            outcome,
        );
    }

    /// A forwarded message event (`PFWD`), same conventions as [`Metrics::relay_session`].
    pub fn relay_message(&self, own: bool, outcome: ProxyOutcome) {
        Self::proxy(
            &self.relay_messages_requests,
            &self.relay_messages_successes,
            &self.relay_messages_errors,
            own,
            outcome,
        );
    }

    fn proxy(
        requests: &Family<Label, RefCounter>,
        successes: &Family<Label, RefCounter>,
        errors: &Family<Label2, RefCounter>,
        own: bool,
        outcome: ProxyOutcome,
    ) {
        let sources: &[&'static str] = if own { &["all", "own"] } else { &["all"] };
        for s in sources {
            match outcome {
                ProxyOutcome::Request => requests.get_or_create(&[(SOURCE, s)]).inc(),
                ProxyOutcome::Success => successes.get_or_create(&[(SOURCE, s)]).inc(),
                ProxyOutcome::ErrorConnect => errors
                    .get_or_create(&[(SOURCE, s), (TYPE, "connect")])
                    .inc(),
                ProxyOutcome::ErrorCompat => {
                    errors.get_or_create(&[(SOURCE, s), (TYPE, "compat")]).inc()
                }
                ProxyOutcome::ErrorOther => {
                    errors.get_or_create(&[(SOURCE, s), (TYPE, "other")]).inc()
                }
            }
        }
    }

    /// A client socket was accepted on `port`.
    pub fn socket_accepted(&self, port: u16) {
        let l = [("port", port.to_string())];
        self.sockets_accepted.get_or_create(&l).inc();
        self.sockets_active.get_or_create(&l).inc();
    }

    /// A client socket accepted on `port` was closed.
    pub fn socket_closed(&self, port: u16) {
        let l = [("port", port.to_string())];
        self.sockets_closed.get_or_create(&l).inc();
        self.sockets_active.get_or_create(&l).dec();
    }

    /// The OpenMetrics text of every metric (what `/metrics` answers).
    pub fn encode(&self) -> String {
        self.exposition.encode()
    }
}

/// Content type of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = hush_server_common::metrics::CONTENT_TYPE;
/// Largest accepted request head (request line + headers); a larger one is answered `431`.
pub const MAX_REQUEST_HEAD: usize = hush_server_common::metrics::MAX_REQUEST_HEAD;

/// Serves `GET /metrics` on `listener` until `shutdown` fires (the shared endpoint).
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: Shutdown) {
    hush_server_common::metrics::serve(listener, metrics.exposition, shutdown).await;
}
