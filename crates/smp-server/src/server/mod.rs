//! The relay core: listeners, connections, commands, delivery (reference §2–§3, §7).
//!
//! Shape (design §4, *mini-redis*): one accept loop per listener with a connection-limit semaphore
//! (over the limit a new socket is closed at once) and back-off on accept errors; one task per
//! connection ([`connection`]) that reads, processes and writes (its outgoing queue lives in its
//! `ClientShared`); background tasks for message expiry, the inactive-client check, `NMSG`
//! flushing ([`notify`]) and metric gauges. Shutdown and the inactivity check reach a connection
//! as a flag plus a wake-up of its queue (no per-connection timer or watch future: idle
//! connections are the relay's main memory cost). Graceful shutdown: stop accepting, let every
//! connection finish the block it is processing and write what is queued, wait for them, then
//! close the store (its writer commits what is queued — and every `OK` already waited for
//! durability).
//!
//! Where to look: [`delivery_core`] is the queue/subscription/delivery state machine (pure) and
//! [`delivery`] the async shell that carries out its effects; [`commands`]
//! parses, authorizes ([`auth`]) and dispatches one transmission; [`error`] maps failures to `ERR`,
//! metric labels and log levels; [`control`] answers the control port.
//!
//! Differences from the reference (simplexmq 6.5.5) a reader should know:
//! * v16 service sessions (`[TRANSPORT] accept_service_credentials`, on): `NSUBS` subscribes
//!   every notifier id associated with the service (`SOKS n`, the previous holder gets `ENDS n`).
//!   `SUBS` answers `CMD PROHIBITED` after verification, as the current reference does ("TODO
//!   [certs rcv]"). An `NSUB` from a second session of the same service takes only that queue
//!   (the reference ends the first session's whole service subscription); a later `NSUBS` takes
//!   all. Services store the identity certificate (DER and hash), not the whole chain.
//! * `END`/`DELD` are sent at once (the reference queues them and flushes every 15 s).
//! * `expire_messages_on_send` expires all queues (the store has no per-queue expiry), at most
//!   once per min(ttl / 2, 60 s), instead of only the queue being sent to.
//! * Messages and queues live in SQLite, PostgreSQL (`store_queues = database`) or memory, not a
//!   store log + message log: there is no log compaction and no message-log import.

pub mod auth;
pub mod commands;
pub mod connection;
pub mod control;
pub mod delivery;
pub mod delivery_core;
pub mod error;
pub mod limits;
pub mod notify;
pub mod proxy;
#[cfg(test)]
mod test_store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hush_proto::error::ErrorType;
use hush_proto::smp::BrokerMsg;
use hush_store::{MemoryStore, PgOptions, PgStore, QueueStore, SqliteOptions, SqliteStore};
use hush_transport::TransportServer;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::config::{Config, DatabaseConfig, SyncPolicy};
use crate::{AdminEndpoints, Metrics, RunError, Shutdown};
use delivery::{ClientId, ClientShared, Subscriptions, now_secs};

/// Tuning knobs that are not in `smp-server.ini` (the defaults are the reference's).
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// How often expired messages and notifications are removed (reference: every 2 h).
    pub expire_interval: Duration,
    /// How long a graceful shutdown waits for connections to finish their current block.
    pub shutdown_grace: Duration,
    /// Print `Listening on <addr>` to stdout once bound (the binary does; tests read it).
    pub print_listening: bool,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            expire_interval: Duration::from_secs(2 * 3600),
            shutdown_grace: Duration::from_secs(30),
            print_listening: false,
        }
    }
}

/// One response or event: corrId (empty for events), entity id, message.
#[derive(Debug, Clone)]
pub struct Response {
    pub corr_id: Vec<u8>,
    pub entity_id: Vec<u8>,
    pub msg: BrokerMsg,
}

impl Response {
    pub fn new(corr: &[u8], entity: &[u8], msg: BrokerMsg) -> Response {
        Response {
            corr_id: corr.to_vec(),
            entity_id: entity.to_vec(),
            msg,
        }
    }
    pub fn err(corr: &[u8], entity: &[u8], e: ErrorType) -> Response {
        Response::new(corr, entity, BrokerMsg::Err(e))
    }
}

/// State shared by every task of one relay.
pub struct Shared {
    pub store: Arc<dyn QueueStore>,
    pub config: Config,
    pub options: RelayOptions,
    pub metrics: Metrics,
    pub subs: Subscriptions,
    pub notify: notify::Dirty,
    pub proxy: Arc<proxy::Proxy>,
    /// `[LIMITS] max_connections_per_ip`.
    ip_conns: hush_server_common::IpConnLimiter,
    /// `[LIMITS] new_queues_per_minute_per_ip`: queue creations without a password per address.
    pub(crate) new_queues_per_ip:
        hush_server_common::KeyedRateLimiter<hush_server_common::limits::IpKey>,
    /// Service handshakes (v16 client certificates) per address and server-wide: each one with a
    /// new certificate stores a service record, so their rate is capped ([`SERVICE_HANDSHAKES`]).
    pub(crate) service_handshakes: ServiceHandshakeLimits,
    /// The "connection limit reached" warn lines (global, per address): at most one a minute each.
    conn_limit_log: [hush_server_common::LogThrottle; 2],
    clients: Mutex<HashMap<ClientId, Arc<ClientShared>>>,
    next_client: AtomicU64,
    last_send_expiry: Mutex<Option<Instant>>,
    /// (day, queues blocked that day) for `daily_block_queue_quota`.
    blocked_today: Mutex<(i64, u32)>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn register_client(&self, c: Arc<ClientShared>) {
        lock(&self.clients).insert(c.id, c);
        self.metrics.clients_total.inc();
    }

    fn unregister_client(&self, id: ClientId) {
        if lock(&self.clients).remove(&id).is_some() {
            self.metrics.clients_total.dec();
        }
    }

    /// Sends a stop request to every connection `which` selects.
    fn stop_clients(&self, which: impl Fn(&ClientShared) -> bool, what: u8) {
        for c in lock(&self.clients).values() {
            if which(c) {
                c.request_stop(what);
            }
        }
    }

    pub fn clients(&self) -> Vec<Arc<ClientShared>> {
        let mut v: Vec<_> = lock(&self.clients).values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// Expiry run by `SEND` when `expire_messages_on_send` is on. The store can only expire all
    /// queues at once, so this runs at most once per min(ttl / 2, 60 s).
    async fn expire_on_send(&self) {
        let ttl = self.config.store.message_expiration;
        let every = (ttl / 2).min(Duration::from_secs(60));
        {
            let mut last = lock(&self.last_send_expiry);
            if last.is_some_and(|t| t.elapsed() < every) {
                return;
            }
            *last = Some(Instant::now());
        }
        self.expire_messages().await;
    }

    /// Removes messages older than the configured ttl; returns how many.
    pub async fn expire_messages(&self) -> u64 {
        let before = now_secs() - self.config.store.message_expiration.as_secs() as i64;
        match self.store.expire_messages(before).await {
            Ok(n) => {
                if n > 0 {
                    self.metrics.messages_expired.inc_by(n);
                    tracing::info!(expired = n, "expired messages");
                }
                n
            }
            Err(e) => {
                tracing::warn!(error = %e, "message expiry failed");
                0
            }
        }
    }

    async fn expire_notifications(&self) {
        let before = now_secs() - self.config.store.notification_expiration.as_secs() as i64;
        match self.store.expire_notifications(before).await {
            Ok(n) if n > 0 => {
                self.metrics.ntf_error(crate::metrics::NtfError::Expired);
                tracing::debug!(expired = n, "expired notifications");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "notification expiry failed"),
        }
    }

    async fn update_gauges(&self) {
        if let Ok(s) = self.store.stats().await {
            self.metrics.queues_total.set(s.queues as i64);
            self.metrics.messages_total.set(s.messages as i64);
            self.metrics
                .queues_notify_total
                .set(s.notifier_queues as i64);
        }
        let (rcv, ntf) = self.subs.counts();
        self.metrics.subscription_total.set(rcv as i64);
        self.metrics.subscription_ntf_total.set(ntf as i64);
        let clients = self.clients();
        let count =
            |f: fn(&ClientShared) -> i64| clients.iter().filter(|c| f(c) > 0).count() as i64;
        self.metrics.subscription_clients_total.set(count(|c| {
            c.rcv_subs.load(std::sync::atomic::Ordering::Relaxed)
        }));
        self.metrics.subscription_ntf_clients_total.set(count(|c| {
            c.ntf_subs.load(std::sync::atomic::Ordering::Relaxed)
        }));
    }

    /// A relay state over a memory store with default settings (unit tests).
    #[cfg(test)]
    pub(crate) fn for_tests() -> Arc<Shared> {
        Self::for_tests_with(Arc::new(MemoryStore::new(128)))
    }

    #[cfg(test)]
    pub(crate) fn for_tests_with(store: Arc<dyn QueueStore>) -> Arc<Shared> {
        let paths = crate::ServerPaths {
            config_dir: "/nonexistent".into(),
            data_dir: "/nonexistent".into(),
        };
        let config = Config::defaults(paths);
        let metrics = Metrics::new();
        Arc::new(Shared {
            store,
            proxy: Arc::new(proxy::Proxy::new(config.proxy.clone(), metrics.clone())),
            config,
            options: RelayOptions::default(),
            metrics,
            subs: Subscriptions::default(),
            notify: notify::Dirty::default(),
            ip_conns: hush_server_common::IpConnLimiter::new(0),
            new_queues_per_ip: new_queues_per_ip_limiter(0),
            service_handshakes: ServiceHandshakeLimits::new(),
            conn_limit_log: conn_limit_throttles(),
            clients: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(1),
            last_send_expiry: Mutex::new(None),
            blocked_today: Mutex::new((0, 0)),
        })
    }
}

/// A started relay: bound addresses and the tasks serving them.
#[derive(Debug)]
pub struct Relay {
    /// Bound SMP listener addresses (port 0 in the config gives a free port).
    pub addrs: Vec<SocketAddr>,
    /// Bound metrics / control port addresses.
    pub metrics_addr: Option<SocketAddr>,
    pub control_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    max_connections: u32,
    tasks: Vec<JoinHandle<()>>,
    shutdown: Shutdown,
}

/// Opens the store named by the configuration (SQLite under the data directory; memory only when
/// the store log is disabled).
fn open_store(config: &Config) -> Result<Arc<dyn QueueStore>, RunError> {
    let quota = config.limits.queue_quota;
    if !config.store.enable {
        tracing::warn!("store log disabled: queues and messages are kept in memory only");
        return Ok(Arc::new(MemoryStore::new(quota)));
    }
    let path = &config.store.path;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        // Private (0700); a looser existing directory is tightened (logged at info).
        hush_server_common::private_start::prepare_private_dir(dir, "relay data directory")
            .map_err(|e| {
                RunError::Other(format!(
                    "cannot create data directory {}: {e}",
                    dir.display()
                ))
            })?;
    }
    let opts = SqliteOptions {
        sync: match config.store.sync {
            SyncPolicy::Full => hush_store::SyncPolicy::Full,
            SyncPolicy::Normal => hush_store::SyncPolicy::Normal,
        },
        quota,
        cache_queues: config.store.cache_queues,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(path, opts).map_err(|e| {
        RunError::Other(format!(
            "cannot open the message store {}: {e}",
            path.display()
        ))
    })?;
    Ok(Arc::new(store))
}

/// Connects to PostgreSQL (`store_queues = database`), creating and migrating the schema.
async fn open_postgres(db: &DatabaseConfig, quota: usize) -> Result<Arc<dyn QueueStore>, RunError> {
    let opts = PgOptions {
        url: db.connection.clone(),
        schema: db.schema.clone(),
        pool_size: db.pool_size,
        quota,
        ..PgOptions::default()
    };
    // The connection string may hold a password: the message names only the schema.
    let store = PgStore::connect(opts).await.map_err(|e| {
        RunError::Other(format!(
            "cannot open the PostgreSQL database (db_connection in [STORE_LOG], schema {}): {e}",
            db.schema
        ))
    })?;
    Ok(Arc::new(store))
}

/// Starts the relay: loads the certificates, opens the store (expiring old messages if
/// configured), binds every listener and the admin endpoints, and spawns the tasks. Returns once
/// everything is bound; [`Relay::wait`] runs until `shutdown` fires.
pub async fn start(
    config: Config,
    shutdown: Shutdown,
    options: RelayOptions,
) -> Result<Relay, RunError> {
    let identity = hush_crypto::ServerIdentity::load(&config.paths.config_dir).map_err(|e| {
        RunError::Other(format!(
            "cannot load the server certificates from {}: {e}",
            config.paths.config_dir.display()
        ))
    })?;
    let identity = hush_transport::ServerIdentity::from_crypto(&identity)
        .map_err(|e| RunError::Other(format!("bad server certificates: {e}")))?;
    let fingerprint = identity.fingerprint();
    let transport = TransportServer::smp(identity)
        .map_err(|e| RunError::Other(format!("cannot set up TLS: {e}")))?;

    let store = match &config.store.database {
        Some(db) => open_postgres(db, config.limits.queue_quota).await?,
        None => {
            let cfg = config.clone();
            tokio::task::spawn_blocking(move || open_store(&cfg))
                .await
                .map_err(|e| RunError::Other(format!("store open task failed: {e}")))??
        }
    };

    let metrics = Metrics::new();
    let proxy = Arc::new(proxy::Proxy::new(config.proxy.clone(), metrics.clone()));
    let ip_conns = hush_server_common::IpConnLimiter::new(config.limits.max_connections_per_ip);
    let new_queues_per_ip = new_queues_per_ip_limiter(config.limits.new_queues_per_minute_per_ip);
    let shared = Arc::new(Shared {
        store,
        config,
        options,
        metrics: metrics.clone(),
        subs: Subscriptions::default(),
        notify: notify::Dirty::default(),
        proxy,
        ip_conns,
        new_queues_per_ip,
        service_handshakes: ServiceHandshakeLimits::new(),
        conn_limit_log: conn_limit_throttles(),
        clients: Mutex::new(HashMap::new()),
        next_client: AtomicU64::new(1),
        last_send_expiry: Mutex::new(None),
        blocked_today: Mutex::new((0, 0)),
    });
    if shared.config.store.expire_messages_on_start {
        shared.expire_messages().await;
    }
    shared.update_gauges().await;

    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for addr in shared.config.transport.listen_addrs() {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind { addr, source })?;
        let bound = l
            .local_addr()
            .map_err(|source| RunError::Bind { addr, source })?;
        addrs.push(bound);
        listeners.push(l);
    }
    if shared.options.print_listening {
        for a in &addrs {
            println!("Listening on {a}");
        }
    }
    let max_connections = shared.config.limits.max_connections.clamp(1, 1 << 20) as u32;
    let permits = Arc::new(Semaphore::new(max_connections as usize));
    let mut tasks = Vec::new();
    for l in listeners {
        tasks.push(tokio::spawn(accept_loop(
            shared.clone(),
            transport.clone(),
            l,
            permits.clone(),
            shutdown.clone(),
        )));
    }
    let admin: AdminEndpoints = crate::spawn_admin(
        &shared.config,
        &metrics,
        Arc::new(control::ControlPort(shared.clone())),
        &shutdown,
    )
    .await?;
    tasks.extend(admin.tasks);
    tasks.extend(
        crate::spawn_web(
            &shared.config,
            &fingerprint,
            &metrics,
            shared.options.print_listening,
            &shutdown,
        )
        .await?,
    );
    tasks.push(tokio::spawn(notify::flush_loop(
        shared.clone(),
        shared.config.notifications.delivery,
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(housekeeping(shared.clone(), shutdown.clone())));
    Ok(Relay {
        addrs,
        metrics_addr: admin.metrics_addr,
        control_addr: admin.control_addr,
        shared,
        permits,
        max_connections,
        tasks,
        shutdown,
    })
}

impl Relay {
    /// The relay's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Serves until shutdown, then stops gracefully: no new connections, every connection finishes
    /// the block it is processing, then the store is closed.
    pub async fn wait(mut self) -> Result<(), RunError> {
        self.shutdown.wait().await;
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        // Every connection holds a permit until its task ends.
        let all = tokio::time::timeout(
            self.shared.options.shutdown_grace,
            self.permits.acquire_many(self.max_connections),
        )
        .await;
        if all.is_err() {
            tracing::warn!("some connections did not finish in time");
        }
        let shared = self.shared;
        // Dropping the last handle of the SQLite store joins its writer thread after it committed
        // everything queued: do it off the async threads.
        let _ = tokio::task::spawn_blocking(move || drop(shared)).await;
        tracing::info!("server stopped");
        Ok(())
    }
}

/// How often a "connection limit reached" warn line may be logged (each kind).
const CONN_LIMIT_LOG_INTERVAL: Duration = Duration::from_secs(60);

fn conn_limit_throttles() -> [hush_server_common::LogThrottle; 2] {
    [
        hush_server_common::LogThrottle::new(CONN_LIMIT_LOG_INTERVAL),
        hush_server_common::LogThrottle::new(CONN_LIMIT_LOG_INTERVAL),
    ]
}

impl Shared {
    /// Counts a socket closed at accept by a connection limit, with a rate-limited warn line
    /// (without the peer address).
    fn connection_refused(&self, per_ip: bool, port: u16) {
        let (kind, key) = if per_ip {
            (1, "per_ip")
        } else {
            (0, "max_connections")
        };
        self.metrics
            .connections_refused
            .get_or_create(&[("type", key)])
            .inc();
        if let Some(held) = self.conn_limit_log[kind].check() {
            if per_ip {
                tracing::warn!(
                    port,
                    limit = self.config.limits.max_connections_per_ip,
                    refused_since_last_report = held,
                    "connection limit per address reached (max_connections_per_ip): closing new connections from that address"
                );
            } else {
                tracing::warn!(
                    port,
                    limit = self.config.limits.max_connections,
                    refused_since_last_report = held,
                    "connection limit reached (max_connections): closing new connections"
                );
            }
        }
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    transport: TransportServer,
    listener: TcpListener,
    permits: Arc<Semaphore>,
    mut shutdown: Shutdown,
) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut backoff = hush_server_common::AcceptBackoff::new("smp");
    loop {
        // On accept errors (usually EMFILE/ENFILE) this backs off instead of spinning.
        let Some((tcp, peer)) =
            hush_server_common::accept(&listener, &mut backoff, &mut shutdown).await
        else {
            return;
        };
        let Some(ip_slot) = shared.ip_conns.try_acquire(peer.ip()) else {
            drop(tcp);
            shared.connection_refused(true, port);
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(tcp);
            shared.connection_refused(false, port);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        shared.metrics.socket_accepted(port);
        tokio::spawn(connection::serve(
            shared.clone(),
            Box::new(connection::Incoming {
                transport: transport.clone(),
                tcp,
                port,
                shutdown: shutdown.clone(),
                slot: connection::Slot {
                    _permit: permit,
                    _ip: ip_slot,
                    peer: peer.ip().into(),
                },
            }),
        ));
    }
}

/// Periodic expiry, gauge updates and the inactive-client check; at shutdown, tells every
/// connection to stop.
async fn housekeeping(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let mut expire = tokio::time::interval(shared.options.expire_interval);
    expire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    expire.tick().await; // the first tick is immediate; start-up expiry already ran
    let mut gauges = tokio::time::interval(Duration::from_secs(10));
    gauges.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One timer for all connections (a timer per connection costs memory on every idle one).
    let inactive = shared.config.inactive_clients;
    let mut check = tokio::time::interval(
        inactive
            .map(|i| i.check_interval)
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(100)),
    );
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => {
                shared.stop_clients(|_| true, delivery::STOP_SHUTDOWN);
                return;
            }
            _ = expire.tick() => {
                shared.expire_messages().await;
                shared.expire_notifications().await;
            }
            _ = gauges.tick() => shared.update_gauges().await,
            _ = check.tick(), if inactive.is_some() => {
                if let Some(i) = inactive {
                    shared.stop_clients(|c| c.idle_for(i.ttl), delivery::STOP_INACTIVE);
                }
            }
        }
    }
}

/// The per-address budget of queue creations without a password: `per_minute` at once, refilled
/// at `per_minute` a minute (0 = no limit); at most 100,000 addresses tracked (past that they
/// share one budget, see `KeyedRateLimiter`).
/// Service handshakes allowed: per address (IPv4 / IPv6 /64) 10 at once then 10 a minute;
/// server-wide 100 at once then 1 a second. A notification server opens a few service sessions
/// per relay; someone minting certificates to fill the services table gets at most 86,400 rows a
/// day from all addresses together.
pub const SERVICE_HANDSHAKES: ((f64, u32), (f64, u32)) = ((10.0 / 60.0, 10), (1.0, 100));

/// The caps of [`SERVICE_HANDSHAKES`].
pub(crate) struct ServiceHandshakeLimits {
    per_ip: hush_server_common::KeyedRateLimiter<hush_server_common::limits::IpKey>,
    total: hush_server_common::RateLimiter,
}

impl ServiceHandshakeLimits {
    fn new() -> Self {
        let ((ip_rate, ip_burst), (rate, burst)) = SERVICE_HANDSHAKES;
        ServiceHandshakeLimits {
            per_ip: hush_server_common::KeyedRateLimiter::new(
                hush_server_common::Rate::new(ip_rate, ip_burst),
                100_000,
            ),
            total: hush_server_common::RateLimiter::new(hush_server_common::Rate::new(rate, burst)),
        }
    }

    /// Whether a service handshake from `ip` may go on (takes from both budgets).
    pub(crate) fn allow(&self, ip: Option<std::net::IpAddr>) -> bool {
        ip.is_none_or(|ip| self.per_ip.allow(&ip.into())) && self.total.allow()
    }
}

fn new_queues_per_ip_limiter(
    per_minute: u32,
) -> hush_server_common::KeyedRateLimiter<hush_server_common::limits::IpKey> {
    hush_server_common::KeyedRateLimiter::new(
        hush_server_common::Rate::new(f64::from(per_minute) / 60.0, per_minute),
        100_000,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hush_store::{NotifierCreds, QueueMode, QueueRecord, QueueStatus};

    fn queue(n: u8, notifier: bool) -> QueueRecord {
        QueueRecord {
            recipient_id: [n; 24],
            recipient_keys: vec![vec![1; 44]],
            rcv_dh_secret: [7; 32],
            sender_id: [n + 100; 24],
            sender_key: None,
            mode: Some(QueueMode::Messaging),
            link: None,
            notifier: notifier.then(|| NotifierCreds {
                notifier_id: [n + 200; 24],
                notifier_key: vec![9; 44],
                rcv_ntf_dh_secret: [n; 32],
            }),
            status: QueueStatus::Active,
            updated_at: None,
        }
    }

    /// `simplex_smp_queues_notify_total1` is the stored queues with notification credentials
    /// (the alert "notifier queues but no ntf-server subscribed" reads it).
    #[tokio::test]
    async fn gauges_count_stored_queues_and_queues_with_notifiers() {
        let shared = Shared::for_tests();
        for (n, notifier) in [(1, true), (2, false), (3, true)] {
            shared.store.create_queue(queue(n, notifier)).await.unwrap();
        }
        shared.update_gauges().await;
        assert_eq!(shared.metrics.queues_total.get(), 3);
        assert_eq!(shared.metrics.queues_notify_total.get(), 2);
        let text = shared.metrics.encode();
        assert!(
            text.contains("\nsimplex_smp_queues_notify_total1 2\n"),
            "{text}"
        );
    }
}
