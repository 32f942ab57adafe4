//! One task per client connection (design §4, *mini-redis*): TLS + SMP handshake, then a loop that
//! `select!`s on the next block, the connection's outgoing queue, the shutdown signal and the
//! inactivity check. The same task writes: a write in progress is a boxed future that owns the
//! sending half and gives it back when done, so reading, processing a block and writing still
//! overlap, without a second task per connection.
//!
//! Back-pressure: responses and events are queued in the connection's [`OutQueue`]; while it holds
//! `client_queue_blocks` groups or more (the client does not read), the task stops reading from
//! the client instead of buffering without bound. Memory: an idle connection holds no block
//! buffer (hush-transport reads the first byte into a 1-byte buffer, and OpenSSL runs with
//! `SSL_MODE_RELEASE_BUFFERS`) and no queue buffer (the queue allocates only while non-empty).
//!
//! [`OutQueue`]: super::delivery::OutQueue

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hush_proto::error::ErrorType;
use hush_transport::{ConnWriter, TransportServer};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::commands::ConnCtx;
use super::delivery::{ClientShared, LocalSubs, Outbox, encode_response, now_ms};
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

pub(super) async fn serve(
    shared: Arc<Shared>,
    transport: TransportServer,
    tcp: TcpStream,
    port: u16,
    mut shutdown: Shutdown,
    permit: OwnedSemaphorePermit,
) {
    let _permit = permit;
    let accepted = tokio::select! {
        _ = shutdown.wait() => return,
        // Boxed: the handshake's state lives on the heap only while it runs, instead of
        // enlarging this task (allocated once per connection, for its whole life).
        c = Box::pin(transport.accept(tcp)) => c,
    };
    let conn = match accepted {
        Ok(c) => c,
        Err(e) => {
            if shared.config.transport.log_tls_errors {
                tracing::info!(error = %e, "handshake failed");
            } else {
                tracing::debug!(error = %e, "handshake failed");
            }
            shared.metrics.socket_closed(port);
            return;
        }
    };
    let version = conn.version();
    let session_id = conn.session_id().to_vec();
    let session_key = conn.session_key().clone();
    // X25519(client hello key, our session key): the secret of RFWD from an SMP proxy.
    let proxy_secret = conn.client_dh_key().map(|k| session_key.dh(k));
    let (mut reader, writer) = conn.into_split();

    let id = shared.next_client.fetch_add(1, Ordering::Relaxed);
    let client = Arc::new(ClientShared::new(
        id,
        version,
        session_id.clone(),
        shared.config.limits.client_queue_blocks,
    ));
    shared.register_client(client.clone());
    let outbox = Outbox::new(client.clone());
    let mut writer = Writer::Idle(writer);

    let mut local = LocalSubs::default();
    let inactive = shared.config.inactive_clients;
    let mut check = inactive.map(|i| {
        let mut t = tokio::time::interval(i.check_interval.max(Duration::from_millis(100)));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    tracing::debug!(client = id, version, "client connected");
    'serve: loop {
        writer.kick(&client);
        let room = client.out.has_room();
        let received = tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            ok = writer.finished() => {
                if !ok {
                    break;
                }
                continue;
            }
            // Something was queued (by this task or another one) while no write was running.
            _ = client.out.ready.notified(), if !writer.is_busy() => continue,
            _ = async {
                match check.as_mut() {
                    Some(t) => { t.tick().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {
                if let Some(i) = inactive {
                    let idle_ms = now_ms().saturating_sub(client.last_active_ms.load(Ordering::Relaxed));
                    if local.subscribed_count() == 0
                        && !client.has_subscriptions()
                        && u128::from(idle_ms) >= i.ttl.as_millis()
                    {
                        tracing::debug!(client = id, "disconnecting inactive client");
                        break;
                    }
                }
                continue;
            }
            // Back-pressure: not read while the outgoing queue is full.
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
                        session_id: &session_id,
                        session_key: &session_key,
                        proxy_secret: proxy_secret.as_ref(),
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
                            _ = client.out.ready.notified(), if !failed && !writer.is_busy() => {}
                        }
                    };
                    if failed {
                        break 'serve;
                    }
                }
            },
        }
        let encoded: Vec<Vec<u8>> = responses
            .iter()
            .map(|r| encode_response(&session_id, &r.corr_id, &r.entity_id, &r.msg, version))
            .collect();
        outbox.push(encoded);
    }
    shared.client_closed(id, &local);
    shared.unregister_client(id);
    // Write what is already queued (bounded in time: the client may not be reading), then close.
    let _ = tokio::time::timeout(FINAL_WRITE_LIMIT, async {
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
    })
    .await;
    client.out.close();
    drop(outbox);
    shared.metrics.socket_closed(port);
    tracing::debug!(client = id, "client disconnected");
}
