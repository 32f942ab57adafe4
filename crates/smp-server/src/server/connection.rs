//! One task per client connection (design §4, *mini-redis*): TLS + SMP handshake, then a loop that
//! `select!`s on the next block, the write in progress and a wake-up of the connection's outgoing
//! queue (which also carries shutdown and inactivity stop requests, set as flags in its
//! `ClientShared`). The same task writes: a write in progress is a boxed future that owns the
//! sending half and gives it back when done, so reading, processing a block and writing still
//! overlap, without a second task per connection.
//!
//! Back-pressure: responses and events are queued in the connection's `OutQueue`; while it holds
//! `client_queue_blocks` groups or more (the client does not read), the task stops reading from
//! the client instead of buffering without bound. Memory: an idle connection holds no block
//! buffer (hush-transport reads the first byte into a 1-byte buffer, and OpenSSL runs with
//! `SSL_MODE_RELEASE_BUFFERS`) and no queue buffer (the queue allocates only while non-empty).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hush_crypto::{DhSecret, X25519Secret};
use hush_proto::error::ErrorType;
use hush_transport::{ConnReader, ConnWriter, ServerConnection, TransportServer};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::commands::{ConnCtx, DeferredSend, SendDone};
use super::delivery::{
    ClientShared, LocalSubs, Outbox, STOP_INACTIVE, STOP_SHUTDOWN, encode_response,
};
use super::{Response, Shared};
use crate::Shutdown;

/// Most transmissions gathered into one write (they are batched into blocks).
const WRITE_GATHER: usize = 255;

/// How long a closing connection may take to write what is still queued.
const FINAL_WRITE_LIMIT: Duration = Duration::from_secs(10);

type WriteFuture = Pin<Box<dyn Future<Output = (ConnWriter, bool)> + Send>>;

/// The sending half: idle (owned here) or lent to the write in progress.
enum Writer {
    Idle(ConnWriter),
    Busy(WriteFuture),
    Failed,
}

impl Writer {
    /// Starts writing what is queued, if idle and something is.
    fn kick(&mut self, client: &Arc<ClientShared>) {
        if !matches!(self, Writer::Idle(_)) {
            return;
        }
        let Some(items) = client.out.take(WRITE_GATHER) else {
            return;
        };
        let Writer::Idle(mut w) = std::mem::replace(self, Writer::Failed) else {
            return;
        };
        let client = client.clone();
        *self = Writer::Busy(Box::pin(async move {
            client.touch();
            let ok = w.send_transmissions(&items).await.is_ok();
            (w, ok)
        }));
    }

    fn is_busy(&self) -> bool {
        matches!(self, Writer::Busy(_))
    }

    /// Resolves when the write in progress ends (`false`: the connection failed); never resolves
    /// when no write is in progress. Cancel-safe (the write future stays here).
    async fn finished(&mut self) -> bool {
        let Writer::Busy(f) = self else {
            return std::future::pending().await;
        };
        let (w, ok) = f.await;
        *self = if ok { Writer::Idle(w) } else { Writer::Failed };
        ok
    }
}

/// What a connection holds while it lives: its place under `max_connections` and under
/// `max_connections_per_ip` (both given back when dropped).
pub(super) struct Slot {
    pub _permit: OwnedSemaphorePermit,
    pub _ip: hush_server_common::IpConnGuard,
    /// The peer's address key (IPv4 address or IPv6 /64) for per-address budgets.
    pub peer: hush_server_common::limits::IpKey,
}

/// A new socket and what its handshake needs. Boxed, so that the connection task's state (held
/// for the connection's whole life) does not keep room for them after the handshake.
pub(super) struct Incoming {
    pub transport: TransportServer,
    pub tcp: TcpStream,
    pub port: u16,
    pub shutdown: Shutdown,
    pub slot: Slot,
}

/// A connection after a successful handshake.
struct Established {
    conn: ServerConnection,
    port: u16,
    slot: Slot,
    shutdown: Shutdown,
}

/// The connection task: handshake, then [`run`].
/// Most `SEND`s of one connection waiting for their commit at once; beyond, the connection is
/// not read until one ends (each holds its message until the writer committed it).
const MAX_DEFERRED_SENDS: usize = 64;

fn encode_all(responses: &[Response], session_id: &[u8], version: u16) -> Vec<Vec<u8>> {
    responses
        .iter()
        .map(|r| encode_response(session_id, &r.corr_id, &r.entity_id, &r.msg, version))
        .collect()
}

/// Polls for the first deferred `SEND` whose commit ended (removed from `deferred`, which keeps
/// the others in order).
fn poll_done(
    deferred: &mut [DeferredSend],
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<(usize, SendDone)> {
    for (i, f) in deferred.iter_mut().enumerate() {
        if let std::task::Poll::Ready(done) = f.as_mut().poll(cx) {
            return std::task::Poll::Ready((i, done));
        }
    }
    std::task::Poll::Pending
}

/// Waits (bounded by [`FINAL_WRITE_LIMIT`]) for the commits of a closed connection's deferred
/// `SEND`s and accounts them (metrics, notifier marks). Boxed: runs once, at the end.
pub(in crate::server) async fn finish_deferred(shared: &Shared, deferred: Vec<DeferredSend>) {
    if deferred.is_empty() {
        return;
    }
    let _ = Box::pin(tokio::time::timeout(FINAL_WRITE_LIMIT, async {
        for d in deferred {
            let _ = shared.send_done(d.await);
        }
    }))
    .await;
}

pub(super) async fn serve(shared: Arc<Shared>, incoming: Box<Incoming>) {
    // Boxed: the handshake's state lives on the heap only while it runs, instead of enlarging
    // this task (allocated once per connection, for its whole life).
    if let Some(est) = Box::pin(handshake(&shared, incoming)).await {
        run(shared, est).await;
    }
}

async fn handshake(shared: &Arc<Shared>, incoming: Box<Incoming>) -> Option<Box<Established>> {
    let Incoming {
        transport,
        tcp,
        port,
        mut shutdown,
        slot,
    } = *incoming;
    // One limit for TLS and the SMP hello together (`[TRANSPORT] handshake_timeout`): a peer
    // that stalls before authenticating holds a connection slot at most this long.
    let limit = shared.config.transport.handshake_timeout;
    // Services (v16 client certificates) get their id from the store (reference
    // `getClientService`), unless `[TRANSPORT] accept_service_credentials = off`: then a client
    // declaring a service is refused in the handshake, as before services were supported.
    let transport = if shared.config.transport.accept_service_credentials {
        let peer = tcp.peer_addr().ok().map(|a| a.ip());
        transport.with_service_registrar(service_registrar(shared.clone(), peer))
    } else {
        transport
    };
    let accepted = tokio::select! {
        _ = shutdown.wait() => return None,
        c = tokio::time::timeout(limit, transport.accept(tcp)) => c,
    };
    match accepted {
        Ok(Ok(conn)) => Some(Box::new(Established {
            conn,
            port,
            slot,
            shutdown,
        })),
        Err(_elapsed) => {
            tracing::debug!("handshake timed out: closing the connection");
            shared.metrics.handshake_timeouts.inc();
            shared.metrics.socket_closed(port);
            None
        }
        Ok(Err(e)) => {
            if shared.config.transport.log_tls_errors {
                tracing::info!(error = %e, "handshake failed");
            } else {
                tracing::debug!(error = %e, "handshake failed");
            }
            shared.metrics.socket_closed(port);
            None
        }
    }
}

/// Looks up or creates the id of a service connecting with its certificate (reference
/// `getClientService` → `getCreateService`): 24 random bytes for a new certificate; any store
/// error (e.g. the certificate registered in another role) refuses the service
/// (`HANDSHAKE BAD_SERVICE`).
fn service_registrar(
    shared: Arc<Shared>,
    peer: Option<std::net::IpAddr>,
) -> hush_transport::ServiceRegistrar {
    Arc::new(move |req: hush_transport::ServiceRequest| {
        let shared = shared.clone();
        Box::pin(async move {
            let store = shared.store.clone();
            let refused = hush_proto::handshake::HelloTransportError::Handshake(
                hush_proto::handshake::HandshakeErrorKind::BadService,
            );
            // Each new certificate stores a service record: cap how fast they can come.
            if !shared.service_handshakes.allow(peer) {
                shared.metrics.service_handshakes_refused.inc();
                tracing::debug!("service handshake refused: rate limit");
                return Err(refused);
            }
            // The identity certificate: the only one, or the second of the chain.
            let cert = match req.cert_chain.as_slice() {
                [only] => only.clone(),
                [_, id, ..] => id.clone(),
                [] => return Err(refused),
            };
            let mut service_id = [0u8; hush_store::ID_LEN];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut service_id);
            let record = hush_store::ServiceRecord {
                service_id,
                role: req.role.tag(),
                cert,
                cert_hash: req.cert_hash,
                created_at: super::delivery::now_secs(),
            };
            match store.get_create_service(record).await {
                Ok(id) => Ok(id.to_vec()),
                Err(e) => {
                    tracing::debug!(error = %e, "service refused");
                    Err(refused)
                }
            }
        })
    })
}

/// What the connection loop keeps of an established connection.
struct Session {
    reader: ConnReader,
    writer: ConnWriter,
    client: Arc<ClientShared>,
    session_key: X25519Secret,
    /// Boxed: the task state stays small (see `connection_task_state_stays_small`).
    proxy_secret: Option<Box<DhSecret>>,
    /// The service this connection is a session of (boxed: rare, and the task state stays
    /// small).
    service: Option<Box<hush_transport::PeerService>>,
    port: u16,
    slot: Slot,
}

/// Registers the connection. Not async on purpose: the `ServerConnection` it takes apart must not
/// take room in the task's state (an async fn's locals can occupy it for the whole function).
fn open_session(shared: &Shared, est: Box<Established>) -> Session {
    let Established {
        conn,
        port,
        slot,
        shutdown,
    } = *est;
    let version = conn.version();
    let session_key = conn.session_key().clone();
    // X25519(client hello key, our session key): the secret of RFWD from an SMP proxy.
    let proxy_secret = conn.client_dh_key().map(|k| Box::new(session_key.dh(k)));
    let service = conn.service().cloned().map(Box::new);
    let id = shared.next_client.fetch_add(1, Ordering::Relaxed);
    let client = Arc::new(ClientShared::new(
        id,
        version,
        conn.session_id().to_vec(),
        shared.config.limits.client_queue_blocks,
    ));
    let (reader, writer) = conn.into_split();
    shared.register_client(client.clone());
    // Shutdown reaches a registered connection as a flag plus a wake-up of its queue (see
    // `Shared::stop_clients`, called once the signal fired). Checked after the registration, so
    // a signal either finds this connection registered or is seen here.
    if shutdown.is_triggered() {
        client.request_stop(STOP_SHUTDOWN);
    }
    Session {
        reader,
        writer,
        client,
        session_key,
        proxy_secret,
        service,
        port,
        slot,
    }
}

async fn run(shared: Arc<Shared>, est: Box<Established>) {
    let Session {
        mut reader,
        writer,
        client,
        session_key,
        proxy_secret,
        service,
        port,
        slot,
    } = open_session(&shared, est);
    let _slot = slot;
    let id = client.id;
    let version = client.version;
    let outbox = Outbox::new(client.clone());
    let mut writer = Writer::Idle(writer);
    let mut local = LocalSubs::default();
    let keys = super::auth::KeyCache::default();
    local.limits = super::limits::ConnLimits::for_peer(_slot.peer);
    tracing::debug!(client = id, version, "client connected");
    // SENDs of this connection whose appends are still committing (answered when they end);
    // boxed so that an idle connection's task stays small.
    let mut deferred: Box<Vec<DeferredSend>> = Box::default();
    'serve: loop {
        let stop = client.stop_requested();
        if stop & STOP_SHUTDOWN != 0 {
            break;
        }
        if stop & STOP_INACTIVE != 0 {
            client.clear_stop(STOP_INACTIVE);
            if let Some(i) = shared.config.inactive_clients
                && local.subscribed_count() == 0
                && client.idle_for(i.ttl)
            {
                tracing::debug!(client = id, "disconnecting inactive client");
                break;
            }
        }
        writer.kick(&client);
        let room = client.out.has_room() && deferred.len() < MAX_DEFERRED_SENDS;
        let received = tokio::select! {
            biased;
            ok = writer.finished() => {
                if !ok {
                    break;
                }
                continue;
            }
            // Something was queued, or a stop was requested.
            _ = client.out.woken() => continue,
            // A SEND's commit ended: its answer.
            (i, done) = std::future::poll_fn(|cx| poll_done(&mut deferred, cx)),
                if !deferred.is_empty() =>
            {
                drop(deferred.remove(i));
                let answer = shared.send_done(done);
                outbox.push(encode_all(&answer, &client.session_id, version));
                continue;
            }
            // Back-pressure: not read while the outgoing queue is full, nor while too many
            // SENDs of this connection wait for their commit.
            r = reader.recv(), if room => r,
        };
        client.touch();
        let mut responses: Vec<Response> = Vec::new();
        match received {
            Err(_) => break,
            Ok(Err(_)) => responses.push(Response::err(&[], &[], ErrorType::Block)),
            Ok(Ok(block)) => match block.transmissions() {
                Err(_) => responses.push(Response::err(&[], &[], ErrorType::Block)),
                Ok(ts) => {
                    let mut ctx = ConnCtx {
                        outbox: &outbox,
                        local: &mut local,
                        version,
                        session_id: &client.session_id,
                        session_key: &session_key,
                        keys: &keys,
                        proxy_secret: proxy_secret.as_deref(),
                        service: service.as_deref(),
                        deferred: Some(&mut deferred),
                    };
                    // Boxed: command handling is large and its state should live on the heap
                    // only while it runs, not in this task (allocated for the connection's life).
                    let mut processing = Box::pin(async {
                        let mut out = Vec::new();
                        for t in ts {
                            out.extend(shared.process_transmission(&mut ctx, t).await);
                        }
                        out
                    });
                    // Keep writing while the block is processed (a SEND waits for the store).
                    let mut failed = false;
                    responses = loop {
                        if !failed {
                            writer.kick(&client);
                        }
                        tokio::select! {
                            biased;
                            r = &mut processing => break r,
                            ok = writer.finished(), if !failed => failed = !ok,
                            _ = client.out.woken(), if !failed && !writer.is_busy() => {}
                        }
                    };
                    if failed {
                        break 'serve;
                    }
                }
            },
        }
        outbox.push(encode_all(&responses, &client.session_id, version));
    }
    // SENDs still committing: their answers have nowhere to go, but their metrics and the
    // notifications they mark must not be lost with the connection.
    finish_deferred(&shared, std::mem::take(&mut *deferred)).await;
    shared.client_closed(id, &local);
    shared.unregister_client(id);
    // Write what is already queued (bounded in time: the client may not be reading), then close.
    // Boxed: runs once, at the end.
    let _ = Box::pin(tokio::time::timeout(FINAL_WRITE_LIMIT, async {
        loop {
            if writer.is_busy() {
                if !writer.finished().await {
                    return;
                }
                continue;
            }
            writer.kick(&client);
            if !writer.is_busy() {
                break;
            }
        }
        if let Writer::Idle(w) = &mut writer {
            let _ = w.shutdown().await;
        }
    }))
    .await;
    client.out.close();
    drop(outbox);
    shared.metrics.socket_closed(port);
    tracing::debug!(client = id, "client disconnected");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An accepted loopback socket with its own connection slot, as the accept loop makes it.
    fn loopback_incoming(
        transport: TransportServer,
        tcp: TcpStream,
        shutdown: Shutdown,
    ) -> Box<Incoming> {
        let localhost = std::net::Ipv4Addr::LOCALHOST;
        Box::new(Incoming {
            transport,
            tcp,
            port: 0,
            shutdown,
            slot: Slot {
                _permit: Arc::new(tokio::sync::Semaphore::new(1))
                    .try_acquire_owned()
                    .unwrap(),
                _ip: hush_server_common::IpConnLimiter::new(1)
                    .try_acquire(localhost.into())
                    .unwrap(),
                peer: std::net::IpAddr::from(localhost).into(),
            },
        })
    }

    /// The connection task's state is allocated once per connection and held for its whole
    /// life (idle connections included): keep it small. It was 1,992 bytes with the handshake
    /// inline and a separate writer task; large, short-lived parts are boxed or kept out of async
    /// scopes now.
    #[tokio::test]
    async fn connection_task_state_stays_small() {
        let shared = Shared::for_tests();
        let id = hush_crypto::ServerIdentity::generate(hush_crypto::SignAlgorithm::Ed25519, "t")
            .unwrap();
        let transport =
            TransportServer::smp(hush_transport::ServerIdentity::from_crypto(&id).unwrap())
                .unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (_trigger, shutdown) = crate::shutdown_channel();
        let f = serve(shared, loopback_incoming(transport, tcp, shutdown));
        let size = std::mem::size_of_val(&f);
        eprintln!("connection task state: {size} bytes");
        assert!(size <= 800, "connection task state is {size} bytes");
    }

    /// An unauthenticated client pipelining `SEND`s while commits stall holds at most
    /// [`MAX_DEFERRED_SENDS`] of them at the relay: beyond, its connection is not read (the
    /// messages wait in its own socket); every one is stored and answered once commits go on.
    #[tokio::test]
    async fn a_connection_is_not_read_while_its_cap_of_sends_waits_for_commits() {
        use crate::server::test_store::HeldCommits;
        use hush_proto::smp::{BrokerMsg, Command, MsgFlags};
        use hush_proto::transmission::{Transmission, decode_transmission, encode_transmission};
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let store = Arc::new(HeldCommits(
            hush_store::MemoryStore::new(1000),
            gate.clone(),
        ));
        let shared = Shared::for_tests_with(store);
        let rid = [1u8; 24];
        let sid = [2u8; 24];
        shared
            .store
            .create_queue(hush_store::QueueRecord {
                recipient_id: rid,
                recipient_keys: vec![vec![1, 2, 3]],
                rcv_dh_secret: [3; 32],
                sender_id: sid,
                sender_key: None,
                mode: None,
                link: None,
                notifier: None,
                status: hush_store::QueueStatus::Active,
                updated_at: None,
            })
            .await
            .unwrap();
        let id = hush_crypto::ServerIdentity::generate(hush_crypto::SignAlgorithm::Ed25519, "t")
            .unwrap();
        let server_id = hush_transport::ServerIdentity::from_crypto(&id).unwrap();
        let fingerprint = server_id.fingerprint();
        let transport = TransportServer::smp(server_id).unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (_trigger, shutdown) = crate::shutdown_channel();
        let relay = shared.clone();
        tokio::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            serve(relay, loopback_incoming(transport, tcp, shutdown)).await;
        });
        let conn = hush_transport::TransportClient::smp()
            .unwrap()
            .connect_addr(addr, &fingerprint)
            .await
            .unwrap();
        let version = conn.version();
        let (mut rd, mut wr) = conn.into_split();
        let total = MAX_DEFERRED_SENDS + 6;
        let cmd = Command::Send {
            flags: MsgFlags {
                notification: false,
            },
            body: b"hi".to_vec(),
        }
        .encode(version);
        // One SEND per block, written by a task: the relay stops reading, so the writes block.
        let writer = tokio::spawn(async move {
            for i in 0..total {
                let corr = format!("{i:024}");
                let t = Transmission::new(corr.as_bytes(), &sid, &cmd);
                let mut bytes = Vec::new();
                encode_transmission(&mut bytes, &t, version, true).unwrap();
                wr.send_transmissions(&[bytes]).await.unwrap();
            }
            wr
        });
        let count = || shared.store.message_count(rid);
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while count().await.unwrap() < MAX_DEFERRED_SENDS {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the relay takes SENDs up to its cap");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            count().await.unwrap(),
            MAX_DEFERRED_SENDS,
            "nothing read beyond the cap"
        );
        gate.add_permits(total);
        let mut oks = 0;
        while oks < total {
            let block = tokio::time::timeout(std::time::Duration::from_secs(10), rd.recv())
                .await
                .expect("answers once commits go on")
                .unwrap()
                .unwrap();
            for t in block.transmissions().unwrap() {
                let t = decode_transmission(t, version, true).unwrap();
                assert_eq!(
                    BrokerMsg::decode(t.command, version).unwrap(),
                    BrokerMsg::Ok
                );
                oks += 1;
            }
        }
        assert_eq!(count().await.unwrap(), total);
        drop(writer.await.unwrap());
    }
}
