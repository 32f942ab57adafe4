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
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::debug;

use crate::backoff::{Backoff, BackoffConfig};
use crate::client::{ClientConfig, EventReceiver, SmpClient};
use crate::connect::{Connector, TlsConnector};
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
    /// `PING` after this long without receiving anything (default 10 min).
    pub ping_interval: Duration,
    /// Consecutive unanswered `PING`s after which the connection is dropped and re-opened.
    pub max_missed_pings: u32,
    /// Capacity of the pool's event channel (events of all relays). When full, relays stop
    /// reading their sockets until it drains.
    pub event_buffer: usize,
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

/// Receives the pool's events.
pub type PoolEvents = mpsc::Receiver<PoolEvent>;

#[derive(Clone, Debug)]
enum RelayState {
    Idle,
    Connecting,
    Connected(SmpClient),
    Failed(ClientError),
    Closed,
}

#[derive(Default)]
struct Subs {
    recipients: HashMap<Vec<u8>, Arc<AuthKey>>,
    notifiers: HashMap<Vec<u8>, Arc<AuthKey>>,
}

struct Relay {
    server: ProtocolServer,
    state: watch::Sender<RelayState>,
    demand: Notify,
    subs: Mutex<Subs>,
}

impl Relay {
    fn has_subs(&self) -> bool {
        self.subs
            .lock()
            .map(|s| !s.recipients.is_empty() || !s.notifiers.is_empty())
            .unwrap_or(false)
    }

    fn forget(&self, entity_id: &[u8]) {
        if let Ok(mut s) = self.subs.lock() {
            s.recipients.remove(entity_id);
            s.notifiers.remove(entity_id);
        }
    }

    #[allow(clippy::type_complexity)]
    fn snapshot(&self) -> (Vec<(Vec<u8>, Arc<AuthKey>)>, Vec<(Vec<u8>, Arc<AuthKey>)>) {
        match self.subs.lock() {
            Ok(s) => (
                s.recipients
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                s.notifiers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            Err(_) => (Vec::new(), Vec::new()),
        }
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

    /// A pool that connects over TLS with default transport settings.
    pub fn tls(config: PoolConfig) -> Result<(SmpClientPool, PoolEvents), ClientError> {
        Ok(Self::new(Arc::new(TlsConnector::new()?), config))
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
        let relay = Arc::new(Relay {
            server: server.clone(),
            state,
            demand: Notify::new(),
            subs: Mutex::new(Subs::default()),
        });
        relays.insert(server.clone(), relay.clone());
        let task = tokio::spawn(relay_task(self.shared.clone(), relay.clone()));
        if let Ok(mut t) = self.shared.tasks.lock() {
            t.push(task);
        }
        Ok(relay)
    }

    /// The connection to `server`, connecting if needed. While the relay is unreachable this
    /// returns the error of the next connection attempt (started at once, cutting a backoff
    /// wait short).
    pub async fn client(&self, server: &ProtocolServer) -> Result<SmpClient, ClientError> {
        let relay = self.relay(server)?;
        let mut rx = relay.state.subscribe();
        if let RelayState::Connected(c) = &*rx.borrow_and_update()
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        relay.demand.notify_one();
        loop {
            if rx.changed().await.is_err() {
                return Err(ClientError::PoolClosed);
            }
            match &*rx.borrow_and_update() {
                RelayState::Connected(c) if !c.is_closed() => return Ok(c.clone()),
                RelayState::Failed(e) => return Err(e.clone()),
                RelayState::Closed => return Err(ClientError::PoolClosed),
                _ => {}
            }
        }
    }

    /// The current connection to `server` without connecting.
    pub fn connected_client(&self, server: &ProtocolServer) -> Option<SmpClient> {
        let relays = self.shared.relays.lock().ok()?;
        match &*relays.get(server)?.state.borrow() {
            RelayState::Connected(c) if !c.is_closed() => Some(c.clone()),
            _ => None,
        }
    }

    /// Subscribes to a queue (`SUB`) and remembers it: after every reconnect it is
    /// subscribed again, and while it is remembered the pool keeps the relay connected. A
    /// connection error leaves it remembered (it is subscribed on reconnect); a permanent
    /// error (e.g. `AUTH`) forgets it.
    pub async fn subscribe(
        &self,
        server: &ProtocolServer,
        rcv_id: &[u8],
        rcv_key: Arc<AuthKey>,
    ) -> Result<(), ClientError> {
        let relay = self.relay(server)?;
        if let Ok(mut s) = relay.subs.lock() {
            s.recipients.insert(rcv_id.to_vec(), rcv_key.clone());
        }
        let r = match self.client(server).await {
            Ok(c) => c.subscribe(rcv_id, &rcv_key).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &r
            && e.is_permanent()
        {
            relay.forget(rcv_id);
        }
        r
    }

    /// Subscribes as notifier (`NSUB`) and remembers it, like [`SmpClientPool::subscribe`].
    pub async fn subscribe_notifier(
        &self,
        server: &ProtocolServer,
        notifier_id: &[u8],
        notifier_key: Arc<AuthKey>,
    ) -> Result<(), ClientError> {
        let relay = self.relay(server)?;
        if let Ok(mut s) = relay.subs.lock() {
            s.notifiers
                .insert(notifier_id.to_vec(), notifier_key.clone());
        }
        let r = match self.client(server).await {
            Ok(c) => c.subscribe_notifier(notifier_id, &notifier_key).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &r
            && e.is_permanent()
        {
            relay.forget(notifier_id);
        }
        r
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
    let mut backoff = Backoff::new(shared.config.backoff.clone());
    let server = relay.server.clone();
    loop {
        if *stop.borrow() {
            break;
        }
        if !relay.has_subs() {
            if matches!(*relay.state.borrow(), RelayState::Connecting) {
                relay.state.send_replace(RelayState::Idle);
            }
            tokio::select! {
                biased;
                _ = crate::stopped(&mut stop) => break,
                _ = relay.demand.notified() => {}
            }
        }
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
                    wait_or_demand(&relay, &mut stop, d).await;
                }
                continue;
            }
            Ok((client, events)) => {
                backoff.reset();
                relay
                    .state
                    .send_replace(RelayState::Connected(client.clone()));
                emit(
                    &shared,
                    PoolEvent::Connected {
                        server: server.clone(),
                    },
                )
                .await;
                if relay.has_subs() {
                    tokio::spawn(resubscribe(shared.clone(), relay.clone(), client.clone()));
                }
                run_connected(&shared, &relay, &client, events).await
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
            wait_or_demand(&relay, &mut stop, d).await;
        }
    }
    if let RelayState::Connected(c) = &*relay.state.borrow() {
        c.abort();
    }
    relay.state.send_replace(RelayState::Closed);
}

async fn wait_or_demand(relay: &Relay, stop: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        biased;
        _ = crate::stopped(stop) => {}
        _ = relay.demand.notified() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// Forwards events and keeps the connection alive until it ends; returns why it ended.
async fn run_connected(
    shared: &Arc<PoolShared>,
    relay: &Arc<Relay>,
    client: &SmpClient,
    mut events: EventReceiver,
) -> ClientError {
    let mut stop = shared.stop.subscribe();
    let interval = shared.config.ping_interval;
    let (ping_tx, mut ping_rx) = mpsc::channel::<Result<(), ClientError>>(1);
    let mut ping_in_flight = false;
    let mut missed = 0u32;
    let mut next_check = client.last_received() + interval;
    loop {
        tokio::select! {
            biased;
            _ = crate::stopped(&mut stop) => {
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
            Some(r) = ping_rx.recv() => {
                ping_in_flight = false;
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
                if now >= due && !ping_in_flight {
                    ping_in_flight = true;
                    let c = client.clone();
                    let tx = ping_tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(c.ping().await).await;
                    });
                    next_check = now + interval;
                } else {
                    next_check = due.max(now + Duration::from_millis(1));
                }
            },
        }
    }
}

/// Sends every remembered `SUB` and `NSUB` on a fresh connection (batched), forgets the
/// permanently failed ones and reports.
async fn resubscribe(shared: Arc<PoolShared>, relay: Arc<Relay>, client: SmpClient) {
    let (rcv, ntf) = relay.snapshot();
    let rcv_refs: Vec<(&[u8], &AuthKey)> = rcv.iter().map(|(i, k)| (i.as_slice(), &**k)).collect();
    let ntf_refs: Vec<(&[u8], &AuthKey)> = ntf.iter().map(|(i, k)| (i.as_slice(), &**k)).collect();
    let (rr, nr) = tokio::join!(
        client.subscribe_many(&rcv_refs),
        client.subscribe_notifiers(&ntf_refs)
    );
    let mut failed = Vec::new();
    for ((id, _), r) in rcv.iter().zip(rr).chain(ntf.iter().zip(nr)) {
        if let Err(e) = r {
            if e.is_permanent() {
                relay.forget(id);
            }
            failed.push((id.clone(), e));
        }
    }
    emit(
        &shared,
        PoolEvent::Resubscribed {
            server: relay.server.clone(),
            recipients: rcv.len(),
            notifiers: ntf.len(),
            failed,
        },
    )
    .await;
}
