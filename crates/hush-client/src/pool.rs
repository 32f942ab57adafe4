//! [`SmpClientPool`]: one connection per relay, opened on first use, kept alive with `PING`,
//! re-opened with exponential backoff and jitter when it drops, and every remembered
//! subscription (recipient `SUB`s and notifier `NSUB`s) sent again, batched, after each
//! reconnect. All relays' events come out of one channel, tagged with the relay.
//!
//! Per relay there is one task that owns the connection's life:
//!
//! ```text
//!  Idle ──demand/subscription──▶ Connecting ──ok──▶ Connected ──drop / 3 missed PINGs──┐
//!   ▲                               │ error                ▲                             │
//!   │                               ▼                      │                             │
//!   └──no subscriptions──── Failed (backoff sleep, cut short by demand) ◀──────────────┘
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hush_proto::address::ProtocolServer;
use hush_proto::handshake::ServiceRole;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::debug;

use crate::backoff::{Backoff, BackoffConfig};
use crate::client::{ClientConfig, EventReceiver, SmpClient};
use crate::connect::{Connector, TlsConnector};
use crate::keepalive::TcpKeepalive;
use crate::keys::AuthKey;
use crate::{ClientError, ServerEvent};

/// Pool settings.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Settings of every connection (command timeout, buffers).
    pub client: ClientConfig,
    /// Bound on one connection attempt (TCP + TLS + handshake).
    pub connect_timeout: Duration,
    /// Reconnect delays (default 1 s doubling to 60 s, with jitter).
    pub backoff: BackoffConfig,
    /// `PING` after this long without receiving anything (default 10 min, the reference
    /// client's interval). Relays drop connections that hold no subscription after a long
    /// inactivity (reference `[INACTIVE_CLIENTS] ttl`, 6 h) and keep subscribed ones, so a
    /// client that holds subscriptions and keeps NAT state and dead-peer detection with
    /// [`PoolConfig::tcp_keepalive`] can use a much longer interval (`hush daemon`: 5 h).
    pub ping_interval: Duration,
    /// Consecutive unanswered `PING`s after which the connection is dropped and re-opened.
    pub max_missed_pings: u32,
    /// Capacity of the pool's event channel (events of all relays). When full, relays stop
    /// reading their sockets until it drains.
    pub event_buffer: usize,
    /// Kernel TCP keep-alive and user timeout on the relay sockets opened by
    /// [`SmpClientPool::tls`] (default `None`: the system's defaults, i.e. no keep-alive).
    /// A connection the kernel declares dead fails its next read and is re-opened like any
    /// dropped connection. Pools over a custom [`Connector`] set it on their connector
    /// (e.g. [`TlsConnector::with_keepalive`]).
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// SOCKS5 proxy (Tor) and host choice of the connections opened by
    /// [`SmpClientPool::tls`] (default: direct).
    pub network: hush_transport::NetworkConfig,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            client: ClientConfig::default(),
            connect_timeout: Duration::from_secs(30),
            backoff: BackoffConfig::default(),
            ping_interval: Duration::from_secs(600),
            max_missed_pings: 3,
            event_buffer: 1024,
            tcp_keepalive: None,
            network: hush_transport::NetworkConfig::direct(),
        }
    }
}

/// What happens in the pool.
#[derive(Clone, Debug)]
pub enum PoolEvent {
    /// A connection to the relay is up (first connect or reconnect).
    Connected { server: ProtocolServer },
    /// A connection attempt failed; `retry_in` is set when the pool will retry by itself
    /// (because it has subscriptions on this relay).
    ConnectFailed {
        server: ProtocolServer,
        error: ClientError,
        retry_in: Option<Duration>,
    },
    /// The connection dropped (relay gone, transport error, missed `PING`s).
    Disconnected {
        server: ProtocolServer,
        reason: ClientError,
    },
    /// After a reconnect: the remembered subscriptions were sent again. Those in `failed`
    /// with a permanent error (e.g. `AUTH`: the queue is gone) are forgotten.
    Resubscribed {
        server: ProtocolServer,
        recipients: usize,
        notifiers: usize,
        failed: Vec<(Vec<u8>, ClientError)>,
    },
    /// A server event (messages, notifications, END, DELD…).
    Event {
        server: ProtocolServer,
        event: ServerEvent,
    },
}

/// Subscriptions sent per resubscription round (8 blocks of signed `SUB`s); each round has
/// its own command deadline.
const RESUBSCRIBE_CHUNK: usize = 1080;

/// Receives the pool's events.
pub type PoolEvents = mpsc::Receiver<PoolEvent>;

#[derive(Clone, Debug)]
enum RelayState {
    Idle,
    Connecting,
    /// The connection and its generation (1 for the first connection, +1 per reconnect).
    Connected(SmpClient, u64),
    Failed(ClientError),
    Closed,
}

/// A remembered subscription.
struct SubEntry {
    key: Arc<AuthKey>,
    /// The connection generation it is known to be subscribed on.
    on_conn: Option<u64>,
    /// A `subscribe` call is sending its own `SUB`/`NSUB` right now (the resubscription
    /// pass skips it to avoid a duplicate).
    pending: bool,
    /// The relay associated this notifier with our service (`SOK serviceId` in a notifier
    /// service session): `NSUBS` subscribes it again, no `NSUB` needed.
    service: bool,
}

#[derive(Default)]
struct Subs {
    recipients: HashMap<Vec<u8>, SubEntry>,
    notifiers: HashMap<Vec<u8>, SubEntry>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SubKind {
    Recipient,
    Notifier,
}

type SubList = Vec<(Vec<u8>, Arc<AuthKey>)>;

/// Notifier subscriptions for [`SmpClientPool::remember_notifiers`]: (notifier id, key).
pub type NotifierList = Vec<(Vec<u8>, Arc<AuthKey>)>;

struct Relay {
    server: ProtocolServer,
    state: watch::Sender<RelayState>,
    /// Count of requests for a connection; the relay task serves those made before an
    /// attempt starts, so a stale request never causes an extra attempt.
    demand: watch::Sender<u64>,
    /// Asks the connected loop for another resubscription pass.
    resub: Notify,
    /// Serializes resubscription passes (a pass sees what the previous one marked).
    resub_lock: tokio::sync::Mutex<()>,
    subs: Mutex<Subs>,
    /// The connection generation that sent `NSUBS` (notifier service sessions: once per
    /// connection; 0 = none yet).
    nsubs_generation: Mutex<u64>,
}

impl Relay {
    fn has_subs(&self) -> bool {
        self.subs
            .lock()
            .map(|s| !s.recipients.is_empty() || !s.notifiers.is_empty())
            .unwrap_or(false)
    }

    fn with_map<T>(
        &self,
        kind: SubKind,
        f: impl FnOnce(&mut HashMap<Vec<u8>, SubEntry>) -> T,
    ) -> Option<T> {
        let mut s = self.subs.lock().ok()?;
        Some(match kind {
            SubKind::Recipient => f(&mut s.recipients),
            SubKind::Notifier => f(&mut s.notifiers),
        })
    }

    fn forget(&self, entity_id: &[u8]) {
        if let Ok(mut s) = self.subs.lock() {
            s.recipients.remove(entity_id);
            s.notifiers.remove(entity_id);
        }
    }

    /// Subscriptions not yet known to be active on connection `generation` (and not being
    /// sent by a `subscribe` call).
    fn to_resubscribe(&self, generation: u64) -> (SubList, SubList) {
        let pick = |m: &HashMap<Vec<u8>, SubEntry>| -> SubList {
            m.iter()
                .filter(|(_, e)| !e.pending && e.on_conn != Some(generation))
                .map(|(k, e)| (k.clone(), e.key.clone()))
                .collect()
        };
        match self.subs.lock() {
            Ok(s) => (pick(&s.recipients), pick(&s.notifiers)),
            Err(_) => (Vec::new(), Vec::new()),
        }
    }

    /// Marks a subscription active on `generation`, also setting (when `Some`) whether the
    /// relay associated it with our service.
    fn mark_service(
        &self,
        kind: SubKind,
        entity_id: &[u8],
        key: &Arc<AuthKey>,
        generation: u64,
        service: Option<bool>,
    ) {
        self.with_map(kind, |m| {
            if let Some(e) = m.get_mut(entity_id)
                && Arc::ptr_eq(&e.key, key)
            {
                e.on_conn = Some(generation);
                if let Some(s) = service {
                    e.service = s;
                }
            }
        });
    }

    /// After `NSUBS` answered `SOKS n`: the notifiers associated with the service are active
    /// on `generation`. When `n` equals the number of remembered notifiers, all of them are
    /// taken as associated (what a restarted subscriber, which remembers no association,
    /// relies on); otherwise only those known from `SOK serviceId`. Returns how many were
    /// marked.
    fn mark_service_subscribed(&self, n: i64, generation: u64) -> usize {
        let Ok(mut s) = self.subs.lock() else {
            return 0;
        };
        let all = usize::try_from(n).is_ok_and(|n| n == s.notifiers.len());
        let mut marked = 0;
        for e in s.notifiers.values_mut() {
            if e.pending {
                continue;
            }
            if all {
                e.service = true;
            }
            if e.service {
                e.on_conn = Some(generation);
                marked += 1;
            }
        }
        marked
    }

    fn request_connection(&self) {
        self.demand.send_modify(|n| *n = n.wrapping_add(1));
    }
}

struct PoolShared {
    config: PoolConfig,
    connector: Arc<dyn Connector>,
    relays: Mutex<HashMap<ProtocolServer, Arc<Relay>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    events: mpsc::Sender<PoolEvent>,
    stop: watch::Sender<bool>,
}

/// Connections to many relays, one per relay address. Clone to share.
#[derive(Clone)]
pub struct SmpClientPool {
    shared: Arc<PoolShared>,
}

impl std::fmt::Debug for SmpClientPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmpClientPool").finish_non_exhaustive()
    }
}

impl SmpClientPool {
    /// A pool over any connector. Call [`SmpClientPool::close`] to stop it (its tasks keep
    /// running otherwise).
    pub fn new(connector: Arc<dyn Connector>, config: PoolConfig) -> (SmpClientPool, PoolEvents) {
        let (tx, rx) = mpsc::channel(config.event_buffer.max(1));
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(PoolShared {
            config,
            connector,
            relays: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            events: tx,
            stop,
        });
        (SmpClientPool { shared }, rx)
    }

    /// A pool that connects over TLS with default transport settings (and
    /// [`PoolConfig::tcp_keepalive`] on its sockets).
    pub fn tls(config: PoolConfig) -> Result<(SmpClientPool, PoolEvents), ClientError> {
        let connector = TlsConnector::new()?
            .with_keepalive(config.tcp_keepalive)
            .with_network(config.network.clone());
        Ok(Self::new(Arc::new(connector), config))
    }

    fn relay(&self, server: &ProtocolServer) -> Result<Arc<Relay>, ClientError> {
        if *self.shared.stop.borrow() {
            return Err(ClientError::PoolClosed);
        }
        let mut relays = self
            .shared
            .relays
            .lock()
            .map_err(|_| ClientError::PoolClosed)?;
        if let Some(r) = relays.get(server) {
            return Ok(r.clone());
        }
        let (state, _) = watch::channel(RelayState::Idle);
        let (demand, _) = watch::channel(0);
        let relay = Arc::new(Relay {
            server: server.clone(),
            state,
            demand,
            resub: Notify::new(),
            resub_lock: tokio::sync::Mutex::new(()),
            subs: Mutex::new(Subs::default()),
            nsubs_generation: Mutex::new(0),
        });
        relays.insert(server.clone(), relay.clone());
        let task = tokio::spawn(relay_task(self.shared.clone(), relay.clone()));
        if let Ok(mut t) = self.shared.tasks.lock() {
            t.push(task);
        }
        Ok(relay)
    }

    async fn client_gen(&self, relay: &Relay) -> Result<(SmpClient, u64), ClientError> {
        let mut rx = relay.state.subscribe();
        match &*rx.borrow_and_update() {
            RelayState::Connected(c, g) if !c.is_closed() => return Ok((c.clone(), *g)),
            RelayState::Closed => return Err(ClientError::PoolClosed),
            // An attempt is under way: wait for its outcome.
            RelayState::Connecting => {}
            _ => relay.request_connection(),
        }
        loop {
            if rx.changed().await.is_err() {
                return Err(ClientError::PoolClosed);
            }
            match &*rx.borrow_and_update() {
                RelayState::Connected(c, g) if !c.is_closed() => return Ok((c.clone(), *g)),
                RelayState::Failed(e) => return Err(e.clone()),
                RelayState::Closed => return Err(ClientError::PoolClosed),
                _ => {}
            }
        }
    }

    /// The connection to `server`, connecting if needed. While the relay is unreachable this
    /// returns the error of the next connection attempt (started at once, cutting a backoff
    /// wait short).
    pub async fn client(&self, server: &ProtocolServer) -> Result<SmpClient, ClientError> {
        let relay = self.relay(server)?;
        self.client_gen(&relay).await.map(|(c, _)| c)
    }

    /// The current connection to `server` without connecting.
    pub fn connected_client(&self, server: &ProtocolServer) -> Option<SmpClient> {
        let relays = self.shared.relays.lock().ok()?;
        match &*relays.get(server)?.state.borrow() {
            RelayState::Connected(c, _) if !c.is_closed() => Some(c.clone()),
            _ => None,
        }
    }

    async fn subscribe_as(
        &self,
        kind: SubKind,
        server: &ProtocolServer,
        entity_id: &[u8],
        key: Arc<AuthKey>,
    ) -> Result<(), ClientError> {
        let relay = self.relay(server)?;
        relay.with_map(kind, |m| {
            m.insert(
                entity_id.to_vec(),
                SubEntry {
                    key: key.clone(),
                    on_conn: None,
                    pending: true,
                    service: false,
                },
            )
        });
        let r = match self.client_gen(&relay).await {
            Ok((c, generation)) => {
                let r = match kind {
                    SubKind::Recipient => c.subscribe(entity_id, &key).await.map(|()| false),
                    SubKind::Notifier => c
                        .subscribe_notifiers_service(&[(entity_id, &key)])
                        .await
                        .pop()
                        .unwrap_or(Err(ClientError::Closed))
                        .map(|sid| is_our_service(&c, sid.as_deref())),
                };
                r.map(|svc| (generation, svc))
            }
            Err(e) => Err(e),
        };
        relay.with_map(kind, |m| {
            let ours = m.get(entity_id).is_some_and(|e| Arc::ptr_eq(&e.key, &key));
            if !ours {
                return;
            }
            match &r {
                Err(e) if e.is_permanent() => {
                    m.remove(entity_id);
                }
                _ => {
                    if let Some(e) = m.get_mut(entity_id) {
                        e.pending = false;
                        if let Ok((g, svc)) = &r {
                            e.on_conn = Some(*g);
                            e.service = *svc;
                        }
                    }
                }
            }
        });
        if r.is_err() && matches!(*relay.state.borrow(), RelayState::Connected(..)) {
            // A reconnect may have skipped this entry while it was pending.
            relay.resub.notify_one();
        }
        r.map(|_| ())
    }

    /// Subscribes to a queue (`SUB`) and remembers it: after every reconnect it is
    /// subscribed again, and while it is remembered the pool keeps the relay connected. A
    /// connection error leaves it remembered (it is subscribed once connected); a permanent
    /// error (e.g. `AUTH`) forgets it.
    pub async fn subscribe(
        &self,
        server: &ProtocolServer,
        rcv_id: &[u8],
        rcv_key: Arc<AuthKey>,
    ) -> Result<(), ClientError> {
        self.subscribe_as(SubKind::Recipient, server, rcv_id, rcv_key)
            .await
    }

    /// Subscribes as notifier (`NSUB`) and remembers it, like [`SmpClientPool::subscribe`].
    pub async fn subscribe_notifier(
        &self,
        server: &ProtocolServer,
        notifier_id: &[u8],
        notifier_key: Arc<AuthKey>,
    ) -> Result<(), ClientError> {
        self.subscribe_as(SubKind::Notifier, server, notifier_id, notifier_key)
            .await
    }

    /// Remembers notifier subscriptions without sending anything now: the relay is connected
    /// (if it is not yet) and a resubscription pass subscribes them. In a notifier service
    /// session that pass sends one `NSUBS` and `NSUB` only for what it did not cover, so a
    /// restarted subscriber hands over everything it subscribed before here at once (the
    /// pass takes `SOKS n` equal to the remembered count as "all associated"). Entries
    /// already remembered are kept. The outcome is a [`PoolEvent::Resubscribed`].
    pub fn remember_notifiers(
        &self,
        server: &ProtocolServer,
        notifiers: NotifierList,
    ) -> Result<(), ClientError> {
        let relay = self.relay(server)?;
        relay.with_map(SubKind::Notifier, |m| {
            for (id, key) in notifiers {
                m.entry(id).or_insert(SubEntry {
                    key,
                    on_conn: None,
                    pending: false,
                    service: false,
                });
            }
        });
        if matches!(*relay.state.borrow(), RelayState::Connected(..)) {
            relay.resub.notify_one();
        } else {
            relay.request_connection();
        }
        Ok(())
    }

    /// Whether connections are notifier service sessions ([`Connector::is_service`]).
    pub fn uses_service(&self) -> bool {
        self.shared.connector.is_service()
    }

    /// Forgets a subscription (no command is sent: SMP has no unsubscribe; the relay drops it
    /// with the connection). Use after `DEL`/`NDEL`.
    pub fn forget_subscription(&self, server: &ProtocolServer, entity_id: &[u8]) {
        if let Ok(relays) = self.shared.relays.lock()
            && let Some(r) = relays.get(server)
        {
            r.forget(entity_id);
        }
    }

    /// Remembered (recipient, notifier) subscriptions on `server`.
    pub fn subscription_count(&self, server: &ProtocolServer) -> (usize, usize) {
        let Ok(relays) = self.shared.relays.lock() else {
            return (0, 0);
        };
        relays
            .get(server)
            .and_then(|r| {
                r.subs
                    .lock()
                    .ok()
                    .map(|s| (s.recipients.len(), s.notifiers.len()))
            })
            .unwrap_or((0, 0))
    }

    /// Closes every connection gracefully and stops all tasks; later calls fail with
    /// [`ClientError::PoolClosed`].
    pub async fn close(&self) {
        self.shared.stop.send_replace(true);
        let tasks = match self.shared.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => Vec::new(),
        };
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

async fn emit(shared: &PoolShared, ev: PoolEvent) {
    let mut stop = shared.stop.subscribe();
    tokio::select! {
        biased;
        _ = crate::stopped(&mut stop) => {}
        _ = shared.events.send(ev) => {}
    }
}

async fn relay_task(shared: Arc<PoolShared>, relay: Arc<Relay>) {
    let mut stop = shared.stop.subscribe();
    let mut demand = relay.demand.subscribe();
    let mut backoff = Backoff::new(shared.config.backoff.clone());
    let server = relay.server.clone();
    let mut generation = 0u64;
    // Requests up to this count are served by an attempt already made.
    let mut served = 0u64;
    loop {
        if *stop.borrow() {
            break;
        }
        if !relay.has_subs() && *demand.borrow() == served {
            relay.state.send_if_modified(|s| {
                let idle = matches!(s, RelayState::Connecting);
                if idle {
                    *s = RelayState::Idle;
                }
                idle
            });
            tokio::select! {
                biased;
                _ = crate::stopped(&mut stop) => break,
                _ = demand.wait_for(|n| *n != served) => {}
            }
        }
        served = *demand.borrow_and_update();
        relay.state.send_replace(RelayState::Connecting);
        let attempt = tokio::time::timeout(
            shared.config.connect_timeout,
            shared.connector.connect(&server, &shared.config.client),
        );
        let result = tokio::select! {
            biased;
            _ = crate::stopped(&mut stop) => break,
            r = attempt => r.unwrap_or(Err(ClientError::ConnectTimeout)),
        };
        let reason = match result {
            Err(error) => {
                debug!("connect failed: {error}");
                relay.state.send_replace(RelayState::Failed(error.clone()));
                let retry_in = relay.has_subs().then(|| backoff.next_delay());
                emit(
                    &shared,
                    PoolEvent::ConnectFailed {
                        server: server.clone(),
                        error,
                        retry_in,
                    },
                )
                .await;
                if let Some(d) = retry_in {
                    wait_or_demand(&mut stop, &mut demand, served, d).await;
                }
                continue;
            }
            Ok((client, events)) => {
                backoff.reset();
                generation += 1;
                relay
                    .state
                    .send_replace(RelayState::Connected(client.clone(), generation));
                emit(
                    &shared,
                    PoolEvent::Connected {
                        server: server.clone(),
                    },
                )
                .await;
                run_connected(&shared, &relay, &client, generation, events).await
            }
        };
        if *stop.borrow() {
            break;
        }
        relay.state.send_replace(RelayState::Failed(reason.clone()));
        emit(
            &shared,
            PoolEvent::Disconnected {
                server: server.clone(),
                reason,
            },
        )
        .await;
        if relay.has_subs() {
            let d = backoff.next_delay();
            wait_or_demand(&mut stop, &mut demand, served, d).await;
        }
    }
    if let RelayState::Connected(c, _) = &*relay.state.borrow() {
        c.abort();
    }
    relay.state.send_replace(RelayState::Closed);
}

async fn wait_or_demand(
    stop: &mut watch::Receiver<bool>,
    demand: &mut watch::Receiver<u64>,
    served: u64,
    d: Duration,
) {
    tokio::select! {
        biased;
        _ = crate::stopped(stop) => {}
        _ = demand.wait_for(|n| *n != served) => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// Forwards events, resubscribes and keeps the connection alive until it ends; returns why
/// it ended.
async fn run_connected(
    shared: &Arc<PoolShared>,
    relay: &Arc<Relay>,
    client: &SmpClient,
    generation: u64,
    mut events: EventReceiver,
) -> ClientError {
    let mut stop = shared.stop.subscribe();
    let interval = shared.config.ping_interval;
    let mut ping: Option<JoinHandle<Result<(), ClientError>>> = None;
    let mut missed = 0u32;
    let mut next_check = client.last_received() + interval;
    tokio::spawn(resubscribe(
        shared.clone(),
        relay.clone(),
        client.clone(),
        generation,
    ));
    loop {
        tokio::select! {
            biased;
            _ = crate::stopped(&mut stop) => {
                if let Some(h) = ping.take() {
                    h.abort();
                }
                client.close().await;
                return ClientError::PoolClosed;
            }
            ev = events.recv() => match ev {
                None => return client.close_reason().unwrap_or(ClientError::Closed),
                Some(event) => {
                    if let ServerEvent::End { entity_id } | ServerEvent::Deleted { entity_id } = &event {
                        relay.forget(entity_id);
                    }
                    emit(shared, PoolEvent::Event { server: relay.server.clone(), event }).await;
                }
            },
            _ = relay.resub.notified() => {
                tokio::spawn(resubscribe(shared.clone(), relay.clone(), client.clone(), generation));
            },
            r = async {
                match ping.as_mut() {
                    Some(h) => h.await.unwrap_or(Err(ClientError::Closed)),
                    None => std::future::pending().await,
                }
            } => {
                ping = None;
                match r {
                    Ok(()) => missed = 0,
                    Err(ClientError::Timeout) => {
                        missed += 1;
                        debug!("PING timed out ({missed} in a row)");
                        if missed >= shared.config.max_missed_pings.max(1) {
                            client.abort();
                            return ClientError::Timeout;
                        }
                    }
                    Err(_) => {}
                }
            },
            _ = tokio::time::sleep_until(next_check) => {
                let now = Instant::now();
                let due = client.last_received() + interval;
                if now >= due && ping.is_none() {
                    let c = client.clone();
                    ping = Some(tokio::spawn(async move { c.ping().await }));
                    next_check = now + interval;
                } else {
                    next_check = due.max(now + Duration::from_millis(1));
                }
            },
        }
    }
}

/// Sends `SUB`/`NSUB` (batched) for every remembered subscription not yet active on this
/// connection, forgets the permanently failed ones and reports (when there was anything
/// to do).
async fn resubscribe(
    shared: Arc<PoolShared>,
    relay: Arc<Relay>,
    client: SmpClient,
    generation: u64,
) {
    let _pass = relay.resub_lock.lock().await;
    // A notifier service session: one `NSUBS` per connection subscribes every notifier the
    // relay associated with the service; `NSUB` follows only for the others.
    let mut covered = None;
    let first_pass = relay
        .nsubs_generation
        .lock()
        .map(|mut g| std::mem::replace(&mut *g, generation) != generation)
        .unwrap_or(false);
    if first_pass
        && client
            .service()
            .is_some_and(|s| s.role == ServiceRole::Notifier)
    {
        let (_, ntf) = relay.to_resubscribe(generation);
        if !ntf.is_empty() {
            match client.subscribe_service_notifiers().await {
                Ok(n) => {
                    let marked = relay.mark_service_subscribed(n, generation);
                    debug!("NSUBS: SOKS {n}, {marked} remembered notifiers covered");
                    covered = Some(marked);
                }
                Err(e) => debug!("NSUBS failed: {e}"),
            }
        }
    }
    let (rcv, ntf) = relay.to_resubscribe(generation);
    if rcv.is_empty() && ntf.is_empty() && covered.is_none() {
        return;
    }
    let mut failed = Vec::new();
    let all: Vec<(SubKind, &Vec<u8>, &Arc<AuthKey>)> = rcv
        .iter()
        .map(|(i, k)| (SubKind::Recipient, i, k))
        .chain(ntf.iter().map(|(i, k)| (SubKind::Notifier, i, k)))
        .collect();
    // In chunks, each with its own command deadline, so that thousands of subscriptions on a
    // slow relay do not all share one timeout.
    for chunk in all.chunks(RESUBSCRIBE_CHUNK) {
        let part = |kind: SubKind| -> Vec<(&[u8], &AuthKey)> {
            chunk
                .iter()
                .filter(|(k, _, _)| *k == kind)
                .map(|(_, i, key)| (i.as_slice(), &***key))
                .collect()
        };
        let (rcv_refs, ntf_refs) = (part(SubKind::Recipient), part(SubKind::Notifier));
        let (rr, nr) = tokio::join!(
            client.subscribe_many(&rcv_refs),
            client.subscribe_notifiers_service(&ntf_refs)
        );
        let rr = rr.into_iter().map(|r| r.map(|()| None));
        let nr = nr
            .into_iter()
            .map(|r| r.map(|sid| Some(is_our_service(&client, sid.as_deref()))));
        let results = chunk
            .iter()
            .filter(|(k, _, _)| *k == SubKind::Recipient)
            .zip(rr)
            .chain(
                chunk
                    .iter()
                    .filter(|(k, _, _)| *k == SubKind::Notifier)
                    .zip(nr),
            );
        for ((kind, id, key), r) in results {
            match r {
                Ok(svc) => relay.mark_service(*kind, id, key, generation, svc),
                Err(e) => {
                    if e.is_permanent() {
                        relay.with_map(*kind, |m| {
                            if m.get(id.as_slice())
                                .is_some_and(|x| Arc::ptr_eq(&x.key, key))
                            {
                                m.remove(id.as_slice());
                            }
                        });
                    }
                    failed.push(((*id).clone(), e));
                }
            }
        }
        if client.is_closed() {
            break;
        }
    }
    emit(
        &shared,
        PoolEvent::Resubscribed {
            server: relay.server.clone(),
            recipients: rcv.len(),
            notifiers: ntf.len() + covered.unwrap_or(0),
            failed,
        },
    )
    .await;
}

/// Whether a `SOK` service id is this connection's service.
fn is_our_service(client: &SmpClient, sid: Option<&[u8]>) -> bool {
    match (client.service(), sid) {
        (Some(svc), Some(sid)) => svc.service_id == sid,
        _ => false,
    }
}
