//! One task per client connection (design §4, *mini-redis*): TLS + SMP handshake, then a loop that
//! `select!`s on the next block, the shutdown signal and the inactivity check; a writer task owns the
//! sending half and drains the connection's bounded outgoing queue.
//!
//! Back-pressure: responses are queued with `send().await`, so a client whose outgoing queue is full
//! (it does not read) is not read from either, instead of buffering without bound. Memory: an idle
//! connection holds no block buffer (hush-transport reads the first byte into a 1-byte buffer, and
//! OpenSSL runs with `SSL_MODE_RELEASE_BUFFERS`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use hush_proto::error::ErrorType;
use hush_transport::TransportServer;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use super::commands::ConnCtx;
use super::delivery::{ClientShared, LocalSubs, Outbox, encode_response, now_ms, now_secs};
use super::{Response, Shared};
use crate::Shutdown;

/// Most transmissions the writer gathers before writing (they are batched into blocks).
const WRITE_GATHER: usize = 255;

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
    let (mut reader, mut writer) = conn.into_split();

    let id = shared.next_client.fetch_add(1, Ordering::Relaxed);
    let client = Arc::new(ClientShared {
        id,
        version,
        session_id: session_id.clone(),
        connected_at: now_secs(),
        rcv_subs: AtomicI64::new(0),
        ntf_subs: AtomicI64::new(0),
        last_active_ms: AtomicU64::new(now_ms()),
        proxied: Arc::new(tokio::sync::Semaphore::new(
            super::delivery::PROXIED_CONCURRENCY,
        )),
    });
    shared.register_client(client.clone());
    let (tx, mut rx) =
        mpsc::channel::<Vec<Vec<u8>>>(shared.config.limits.client_queue_blocks.max(1));
    let outbox = Outbox::new(client.clone(), tx);
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();

    let writer_client = client.clone();
    let writer_task = tokio::spawn(async move {
        let mut write = async |items: Vec<Vec<u8>>| -> bool {
            writer_client.touch();
            writer.send_transmissions(&items).await.is_ok()
        };
        loop {
            let first = tokio::select! {
                biased;
                m = rx.recv() => m,
                _ = &mut stop_rx => None,
            };
            let Some(mut items) = first else { break };
            while items.len() < WRITE_GATHER {
                match rx.try_recv() {
                    Ok(more) => items.extend(more),
                    Err(_) => break,
                }
            }
            if !write(items).await {
                return;
            }
        }
        // Stopping: write what is already queued, then close.
        let mut rest = Vec::new();
        while let Ok(more) = rx.try_recv() {
            rest.extend(more);
        }
        if !rest.is_empty() {
            let _ = write(rest).await;
        }
        let _ = writer.shutdown().await;
    });

    let mut local = LocalSubs::default();
    let inactive = shared.config.inactive_clients;
    let mut check = inactive.map(|i| {
        let mut t = tokio::time::interval(i.check_interval.max(Duration::from_millis(100)));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    tracing::debug!(client = id, version, "client connected");
    loop {
        let received = tokio::select! {
            biased;
            _ = shutdown.wait() => break,
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
            r = reader.recv() => r,
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
                    for t in ts {
                        // Boxed for the same reason (command handling is large).
                        responses.extend(Box::pin(shared.process_transmission(&mut ctx, t)).await);
                    }
                }
            },
        }
        let encoded: Vec<Vec<u8>> = responses
            .iter()
            .map(|r| encode_response(&session_id, &r.corr_id, &r.entity_id, &r.msg, version))
            .collect();
        if !encoded.is_empty() && outbox.send(encoded).await.is_err() {
            break;
        }
    }
    shared.client_closed(id, &local);
    shared.unregister_client(id);
    let _ = stop_tx.send(());
    drop(outbox);
    let _ = writer_task.await;
    shared.metrics.socket_closed(port);
    tracing::debug!(client = id, "client disconnected");
}
