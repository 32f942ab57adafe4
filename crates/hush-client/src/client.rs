//! [`SmpClient`]: one connection to one relay. Two tasks per connection: a writer that drains
//! every command queued so far and batches them into as few blocks as the reference rule
//! allows, and a reader that hands responses to their waiting commands (by corrId) and
//! pushes events into a bounded channel.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hush_proto::address::ProtocolServer;
use hush_proto::smp::{BrokerMsg, Command};
use hush_proto::transmission::{MAX_BATCH_COUNT, batch_transmissions, decode_batch};
use hush_transport::{ClientConnection, TransportError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::debug;

use crate::core::{
    Correlator, Incoming, Resolution, SessionParams, decode_incoming, encode_command_service,
    new_corr_id,
};
use crate::io::{BlockSink, BlockSource};
use crate::keys::AuthKey;
use crate::{ClientError, ServerEvent};

/// Per-connection settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// How long a command waits for its response (reference: 10 s interactive, 30 s
    /// background).
    pub command_timeout: Duration,
    /// Capacity of the event channel. When it is full the reader stops reading the socket
    /// (backpressure), so drain events promptly.
    pub event_buffer: usize,
    /// Capacity of the command queue to the writer task (in batches of commands).
    pub send_buffer: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            command_timeout: Duration::from_secs(10),
            event_buffer: 1024,
            send_buffer: 256,
        }
    }
}

/// One command to send: entity id, optional key that authorizes it, the command.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub entity_id: &'a [u8],
    pub key: Option<&'a AuthKey>,
    pub command: &'a Command,
}

type Waiter = oneshot::Sender<Result<BrokerMsg, ClientError>>;

struct Shared {
    correlator: Correlator<Waiter>,
    /// Set once the connection ended; new commands fail with it.
    closed: Option<ClientError>,
}

struct Outgoing {
    corr_id: Vec<u8>,
    bytes: Vec<u8>,
}

enum WriterMsg {
    Send(Vec<Outgoing>),
    Close(oneshot::Sender<()>),
}

struct Inner {
    session: SessionParams,
    /// The service session (TLS client certificate = service certificate), if any.
    service: Option<hush_transport::ClientService>,
    config: ClientConfig,
    server: Option<ProtocolServer>,
    shared: Mutex<Shared>,
    last_received: Mutex<Instant>,
    /// `true` once the connection is closed (tasks stop).
    stop: watch::Sender<bool>,
}

/// A connection to one SMP relay. Cheap to clone (all clones share the connection); the
/// connection closes when [`SmpClient::close`] / [`SmpClient::abort`] is called, when the
/// relay goes away, or when the last clone is dropped.
#[derive(Clone)]
pub struct SmpClient {
    inner: Arc<Inner>,
    /// Commands to the writer task; when every clone is gone the writer stops.
    out: mpsc::Sender<WriterMsg>,
}

impl std::fmt::Debug for SmpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmpClient")
            .field("version", &self.inner.session.version)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// Events from one connection; ends (`recv` returns `None`) when the connection is closed.
///
/// Events travel boxed, so the channel an idle connection keeps allocated is small (tokio
/// allocates its slots in blocks of 32 up front).
#[derive(Debug)]
pub struct EventReceiver {
    rx: mpsc::Receiver<Box<ServerEvent>>,
}

impl EventReceiver {
    /// The next event; `None` once the connection has ended and every event was received.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<ServerEvent> {
        self.rx.recv().await.map(|e| *e)
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Result<ServerEvent, mpsc::error::TryRecvError> {
        self.rx.try_recv().map(|e| *e)
    }

    /// Events waiting to be received.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl SmpClient {
    /// Runs a client over an established TLS connection (after the SMP handshake).
    pub fn from_connection(
        conn: ClientConnection,
        server: Option<ProtocolServer>,
        config: ClientConfig,
    ) -> (SmpClient, EventReceiver) {
        let info = conn.info();
        let session = SessionParams {
            version: info.version,
            session_id: info.session_id.clone(),
            server_session_key: conn.server_session_key().cloned(),
            block_size: info.block_size,
        };
        let service = conn.service().cloned();
        let (reader, writer) = conn.into_split();
        Self::start_inner(session, service, reader, writer, server, config)
    }

    /// Runs a client over any block source/sink (e.g. [`crate::memory_pair`]). Spawns two
    /// tasks on the current tokio runtime.
    pub fn start<R: BlockSource, W: BlockSink>(
        session: SessionParams,
        reader: R,
        writer: W,
        server: Option<ProtocolServer>,
        config: ClientConfig,
    ) -> (SmpClient, EventReceiver) {
        Self::start_inner(session, None, reader, writer, server, config)
    }

    fn start_inner<R: BlockSource, W: BlockSink>(
        session: SessionParams,
        service: Option<hush_transport::ClientService>,
        reader: R,
        writer: W,
        server: Option<ProtocolServer>,
        config: ClientConfig,
    ) -> (SmpClient, EventReceiver) {
        let (out_tx, out_rx) = mpsc::channel(config.send_buffer.max(1));
        let (ev_tx, ev_rx) = mpsc::channel(config.event_buffer.max(1));
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            session,
            service,
            config,
            server,
            shared: Mutex::new(Shared {
                correlator: Correlator::new(),
                closed: None,
            }),
            last_received: Mutex::new(Instant::now()),
            stop,
        });
        tokio::spawn(reader_task(inner.clone(), reader, ev_tx));
        tokio::spawn(writer_task(inner.clone(), writer, out_rx));
        (
            SmpClient { inner, out: out_tx },
            EventReceiver { rx: ev_rx },
        )
    }

    /// Negotiated SMP version.
    pub fn version(&self) -> u16 {
        self.inner.session.version
    }

    /// The session parameters (version, tls-unique, relay session key).
    pub fn session(&self) -> &SessionParams {
        &self.inner.session
    }

    /// The service session (v16+ handshake with a service certificate), if this is one.
    pub fn service(&self) -> Option<&hush_transport::ClientService> {
        self.inner.service.as_ref()
    }

    /// Whether `command` carries the service signature on this connection (reference
    /// `useServiceAuth`: `NEW`/`SUB` in a messaging service session, `NSUB` in a notifier
    /// one).
    fn service_for(&self, command: &Command) -> Option<&hush_transport::ClientService> {
        use hush_proto::handshake::ServiceRole;
        let svc = self.inner.service.as_ref()?;
        let signed = match command {
            Command::New(_) | Command::Sub => svc.role == ServiceRole::Messaging,
            Command::NSub => svc.role == ServiceRole::Notifier,
            _ => false,
        };
        signed.then_some(svc)
    }

    /// The relay's address, when known.
    pub fn server(&self) -> Option<&ProtocolServer> {
        self.inner.server.as_ref()
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        *self.inner.stop.borrow()
    }

    /// Why the connection ended (`None` while open).
    pub fn close_reason(&self) -> Option<ClientError> {
        self.inner.shared.lock().ok().and_then(|s| s.closed.clone())
    }

    /// Resolves when the connection has ended.
    pub async fn closed(&self) {
        let mut rx = self.inner.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// When the last block arrived from the relay (or when the connection started).
    pub fn last_received(&self) -> Instant {
        self.inner
            .last_received
            .lock()
            .map(|t| *t)
            .unwrap_or_else(|_| Instant::now())
    }

    /// Commands still waiting for a response.
    pub fn pending_commands(&self) -> usize {
        self.inner
            .shared
            .lock()
            .map(|s| s.correlator.waiting())
            .unwrap_or(0)
    }

    /// Graceful close: commands already queued are sent, then TLS close_notify; waiting
    /// commands fail with [`ClientError::Closed`].
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.out.send(WriterMsg::Close(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
        self.inner.shut(ClientError::Closed);
    }

    /// Drops the connection now (no close_notify).
    pub fn abort(&self) {
        self.inner.shut(ClientError::Closed);
    }

    /// Sends one command and waits for its response (`ERR` becomes [`ClientError::Smp`]).
    pub async fn request(
        &self,
        entity_id: &[u8],
        key: Option<&AuthKey>,
        command: &Command,
    ) -> Result<BrokerMsg, ClientError> {
        self.request_batch(&[Request {
            entity_id,
            key,
            command,
        }])
        .await
        .pop()
        .unwrap_or(Err(ClientError::Closed))
    }

    /// Sends several commands at once (they share blocks: e.g. 135 signed `SUB`s per block)
    /// and waits for all responses; results are in request order. All commands share one
    /// deadline (`command_timeout` from now).
    pub async fn request_batch(
        &self,
        requests: &[Request<'_>],
    ) -> Vec<Result<BrokerMsg, ClientError>> {
        self.request_batch_timeout(requests, self.inner.config.command_timeout)
            .await
    }

    /// [`SmpClient::request_batch`] with its own timeout instead of `command_timeout` (e.g.
    /// the reference's longer background timeout, or ×1.5 on an interactive retry).
    pub async fn request_batch_timeout(
        &self,
        requests: &[Request<'_>],
        timeout: Duration,
    ) -> Vec<Result<BrokerMsg, ClientError>> {
        self.request_batch_corr(requests, None, timeout).await
    }

    /// One command with a correlation id chosen by the caller (24 bytes, unique per
    /// connection): `NEW` with a client-supplied sender id must use the corrId whose
    /// SHA3-384 gives that id (short links, §3.5).
    pub async fn request_with_corr_id(
        &self,
        corr_id: &[u8; 24],
        entity_id: &[u8],
        key: Option<&AuthKey>,
        command: &Command,
    ) -> Result<BrokerMsg, ClientError> {
        self.request_batch_corr(
            &[Request {
                entity_id,
                key,
                command,
            }],
            Some(corr_id),
            self.inner.config.command_timeout,
        )
        .await
        .pop()
        .unwrap_or(Err(ClientError::Closed))
    }

    /// `corr_id`: the id of a single request (random ids otherwise).
    async fn request_batch_corr(
        &self,
        requests: &[Request<'_>],
        corr_id: Option<&[u8; 24]>,
        timeout: Duration,
    ) -> Vec<Result<BrokerMsg, ClientError>> {
        let deadline = Instant::now() + timeout;
        // Encode and sign outside the lock (signing many commands takes a while).
        let encoded: Vec<Result<Outgoing, ClientError>> = requests
            .iter()
            .map(|r| {
                let corr_id = match corr_id {
                    Some(c) if requests.len() == 1 => c.to_vec(),
                    _ => new_corr_id().to_vec(),
                };
                let cmd = r.command.encode(self.inner.session.version);
                encode_command_service(
                    &self.inner.session,
                    &corr_id,
                    r.entity_id,
                    &cmd,
                    r.key,
                    self.service_for(r.command),
                )
                .map(|bytes| Outgoing { corr_id, bytes })
            })
            .collect();
        let mut results: Vec<Option<Result<BrokerMsg, ClientError>>> = Vec::new();
        let mut waits: Vec<(usize, oneshot::Receiver<_>)> = Vec::new();
        let mut out = Vec::with_capacity(requests.len());
        // If this future is dropped before every response came, the commands still waiting
        // are marked timed out (their responses then become events).
        let mut guard = GiveUpGuard {
            inner: &self.inner,
            corr_ids: Vec::new(),
        };
        {
            let mut shared = match self.inner.shared.lock() {
                Ok(s) => s,
                Err(_) => return requests.iter().map(|_| Err(ClientError::Closed)).collect(),
            };
            if let Some(e) = &shared.closed {
                return requests.iter().map(|_| Err(e.clone())).collect();
            }
            for (i, (r, enc)) in requests.iter().zip(encoded).enumerate() {
                match enc {
                    Ok(o) => {
                        let (tx, rx) = oneshot::channel();
                        shared.correlator.register(
                            o.corr_id.clone(),
                            r.entity_id.to_vec(),
                            r.command.tag(),
                            tx,
                        );
                        waits.push((i, rx));
                        guard.corr_ids.push(o.corr_id.clone());
                        out.push(o);
                        results.push(None);
                    }
                    Err(e) => results.push(Some(Err(e))),
                }
            }
        }
        if !out.is_empty() && self.out.send(WriterMsg::Send(out)).await.is_err() {
            // Writer gone: the connection is closing; the reader fails the waiters.
            self.inner.shut(ClientError::Closed);
        }
        for (i, rx) in waits {
            let r = match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(self.close_reason().unwrap_or(ClientError::Closed)),
                // Marked timed out by the guard below.
                Err(_) => Err(ClientError::Timeout),
            };
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(r);
            }
        }
        drop(guard);
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(ClientError::Closed)))
            .collect()
    }
}

/// Marks the commands of a request as timed out when the request ends (normally: a no-op
/// for the answered ones; on timeout or when the future is dropped: late responses become
/// events).
struct GiveUpGuard<'a> {
    inner: &'a Inner,
    corr_ids: Vec<Vec<u8>>,
}

impl Drop for GiveUpGuard<'_> {
    fn drop(&mut self) {
        if self.corr_ids.is_empty() {
            return;
        }
        if let Ok(mut s) = self.inner.shared.lock() {
            for c in &self.corr_ids {
                s.correlator.time_out(c);
            }
        }
    }
}

impl Inner {
    /// Marks the connection closed (first reason wins), stops both tasks and fails every
    /// waiting command.
    fn shut(&self, reason: ClientError) {
        let waiters = match self.shared.lock() {
            Ok(mut s) => {
                if s.closed.is_none() {
                    s.closed = Some(reason);
                }
                s.correlator.drain()
            }
            Err(_) => Vec::new(),
        };
        let reason = self.shared.lock().ok().and_then(|s| s.closed.clone());
        for w in waiters {
            let _ = w.send(Err(reason.clone().unwrap_or(ClientError::Closed)));
        }
        self.stop.send_replace(true);
    }

    fn touch(&self) {
        if let Ok(mut t) = self.last_received.lock() {
            *t = Instant::now();
        }
    }

    fn dispatch(&self, item: &[u8]) -> Option<ServerEvent> {
        match decode_incoming(item, &self.session) {
            Incoming::Event(ev) => Some(ev),
            Incoming::Response {
                corr_id,
                entity_id,
                msg,
            } => {
                let r = match self.shared.lock() {
                    Ok(mut s) => s
                        .correlator
                        .resolve_live(&corr_id, entity_id, msg, |w| !w.is_closed()),
                    Err(_) => return None,
                };
                match r {
                    Resolution::Deliver(w, result) => {
                        let _ = w.send(result);
                        None
                    }
                    Resolution::Late(ev) | Resolution::Unknown(ev) => Some(ev),
                }
            }
        }
    }
}

async fn reader_task<R: BlockSource>(
    inner: Arc<Inner>,
    mut reader: R,
    events: mpsc::Sender<Box<ServerEvent>>,
) {
    let mut stop = inner.stop.subscribe();
    let reason = loop {
        let block = tokio::select! {
            biased;
            _ = crate::stopped(&mut stop) => break None,
            b = reader.recv() => b,
        };
        let mut evs = Vec::new();
        match block {
            Err(TransportError::Closed) => break Some(ClientError::Closed),
            Err(e) => break Some(ClientError::from(e)),
            Ok(Err(e)) => {
                debug!("bad block from relay: {e}");
                inner.touch();
                evs.push(ServerEvent::Unparsable {
                    error: hush_proto::error::ErrorType::Block,
                });
            }
            Ok(Ok(b)) => {
                inner.touch();
                match decode_batch(b.as_ref()) {
                    Ok(items) => evs.extend(items.into_iter().filter_map(|t| inner.dispatch(t))),
                    Err(_) => evs.push(ServerEvent::Unparsable {
                        error: hush_proto::error::ErrorType::Block,
                    }),
                }
            }
        }
        for ev in evs {
            tokio::select! {
                biased;
                _ = crate::stopped(&mut stop) => break,
                r = events.send(Box::new(ev)) => { let _ = r; }
            }
        }
    };
    inner.shut(reason.unwrap_or(ClientError::Closed));
}

async fn writer_task<W: BlockSink>(
    inner: Arc<Inner>,
    mut writer: W,
    mut rx: mpsc::Receiver<WriterMsg>,
) {
    let mut stop = inner.stop.subscribe();
    let block_size = inner.session.block_size;
    loop {
        let first = tokio::select! {
            biased;
            _ = crate::stopped(&mut stop) => break,
            m = rx.recv() => m,
        };
        let mut close = None;
        let mut items = match first {
            None => break,
            Some(WriterMsg::Close(ack)) => {
                let _ = writer.shutdown().await;
                let _ = ack.send(());
                break;
            }
            Some(WriterMsg::Send(items)) => items,
        };
        // Take whatever else is queued right now, so concurrent commands share blocks.
        while items.len() < MAX_BATCH_COUNT * 8 {
            match rx.try_recv() {
                Ok(WriterMsg::Send(more)) => items.extend(more),
                Ok(WriterMsg::Close(ack)) => {
                    close = Some(ack);
                    break;
                }
                Err(_) => break,
            }
        }
        let (corr_ids, bytes): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
            items.into_iter().map(|o| (o.corr_id, o.bytes)).unzip();
        for batch in batch_transmissions(&bytes, block_size) {
            match batch {
                Ok(b) => {
                    if let Err(e) = writer.send_block(&b.content).await {
                        inner.shut(match e {
                            TransportError::Closed => ClientError::Closed,
                            e => ClientError::from(e),
                        });
                        return;
                    }
                }
                Err(too_large) => {
                    let w = corr_ids.get(too_large.index).and_then(|c| {
                        inner
                            .shared
                            .lock()
                            .ok()
                            .and_then(|mut s| s.correlator.remove(c))
                    });
                    if let Some(w) = w {
                        let _ = w.send(Err(ClientError::LargeMsg));
                    }
                }
            }
        }
        if let Some(ack) = close {
            let _ = writer.shutdown().await;
            let _ = ack.send(());
            break;
        }
    }
    inner.shut(ClientError::Closed);
}
