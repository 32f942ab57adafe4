//! hush-client: the SMP relay client shared by the client library (hush-agent), the
//! ntf-server's relay subscriber and test tools (reference `protocols.md` §2, §3, §6.7).
//!
//! * [`SmpClient`] — one TLS connection to one relay (`smp://<fp>@host:port`, pinned to the
//!   CA fingerprint). Commands are correlated with responses by a random 24-byte corrId;
//!   commands issued concurrently share blocks (reference batching rule); each command has a
//!   timeout; commands are authorized with Ed25519/Ed448 signatures or X25519 crypto_box
//!   authenticators. Server-pushed transmissions (`MSG`, `NMSG`, `END`, `DELD`, …) come out
//!   of an [`EventReceiver`] as [`ServerEvent`]s tagged with their entity id.
//! * Typed helpers for every party: [`SmpClient::create_queue`], [`SmpClient::secure_queue`]
//!   (`KEY`), [`SmpClient::secure_sender`] (`SKEY`), [`SmpClient::subscribe`] (`SUB`),
//!   [`SmpClient::get`], [`SmpClient::ack`], [`SmpClient::suspend`] (`OFF`),
//!   [`SmpClient::delete`] (`DEL`), [`SmpClient::queue_info`] (`QUE`), [`SmpClient::send`],
//!   [`SmpClient::enable_notifications`] / [`SmpClient::nkey`] (`NKEY`),
//!   [`SmpClient::disable_notifications`] (`NDEL`), [`SmpClient::subscribe_notifier`]
//!   (`NSUB`), [`SmpClient::ping`]; anything else through [`SmpClient::request`] /
//!   [`SmpClient::request_batch`].
//! * Receiving: [`RawMsg::decrypt`] turns a `MSG` into `(msgId, ts, flags, body)` or the
//!   quota marker; [`decrypt_nmsg`] turns an `NMSG` into `(msgId, ts)`.
//! * [`SmpClientPool`] — one connection per relay, opened lazily, re-opened with exponential
//!   backoff and jitter, kept alive with `PING` (default every 10 min of silence; 3 missed →
//!   reconnect), resubscribing every remembered `SUB`/`NSUB` (batched) after a reconnect,
//!   reporting [`PoolEvent`]s (connected, disconnected, resubscribed, server events).
//!   Optionally ([`PoolConfig::tcp_keepalive`], off by default) the kernel keeps the idle
//!   connection and detects a silently vanished relay ([`TcpKeepalive`]: `SO_KEEPALIVE` +
//!   `TCP_KEEPIDLE`/`TCP_KEEPINTVL`/`TCP_KEEPCNT` + `TCP_USER_TIMEOUT`), so that `PING` can be
//!   rare.
//! * Errors are one enum, [`ClientError`]: relay `ERR` ([`ClientError::Smp`] with the
//!   protocol's [`hush_proto::error::ErrorType`]), transport (a wrong CA fingerprint is
//!   [`ClientError::is_unknown_ca`]), timeout, closed.
//!
//! The correlation logic ([`core::Correlator`]) and the backoff ([`Backoff`]) are sans-IO;
//! [`SmpClient::start`] runs a client over any [`BlockSource`]/[`BlockSink`] pair, e.g.
//! [`memory_pair`], so that tests can play the relay with a virtual clock.
//!
//! Idle cost: an idle connection holds no block buffer (hush-transport reads the first byte
//! of a block into a 1-byte buffer and OpenSSL releases its buffers), two parked tasks and two
//! small channels.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hush_client::ClientError> {
//! use hush_client::{ClientConfig, NewQueueParams, RcvMsgBody, ServerEvent, SmpClient};
//! use hush_proto::address::ProtocolServer;
//!
//! let server = ProtocolServer::parse("smp://LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI=@127.0.0.1:5223")
//!     .map_err(|e| hush_client::ClientError::Address(e.to_string()))?;
//! let (client, mut events) = SmpClient::connect(&server, ClientConfig::default()).await?;
//!
//! // Recipient: create a queue (subscribed by this connection).
//! let q = client.create_queue(NewQueueParams::default()).await?;
//! // Sender (here the same connection): send before the queue is secured, unsigned.
//! client.send(&q.snd_id, None, true, b"hello").await?;
//!
//! while let Some(ev) = events.recv().await {
//!     if let ServerEvent::Message { rcv_id, msg } = ev {
//!         let m = msg.decrypt(&q.rcv_dh_secret)?;
//!         if let RcvMsgBody::Message { body, .. } = &m.body {
//!             println!("got {} bytes", body.len());
//!         }
//!         client.ack(&rcv_id, &q.rcv_key, &m.msg_id).await?;
//!         break;
//!     }
//! }
//! client.close().await;
//! # Ok(()) }
//! ```

pub mod backoff;
pub mod client;
pub mod commands;
pub mod connect;
pub mod core;
pub mod error;
pub mod event;
pub mod io;
pub mod keepalive;
pub mod keys;
pub mod msg;
pub mod pool;

/// Resolves once a stop flag is set (or its sender is gone), without holding the borrow.
pub(crate) async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

pub use backoff::{Backoff, BackoffConfig};
pub use client::{ClientConfig, EventReceiver, Request, SmpClient};
pub use commands::{NewQueue, NewQueueParams, NotifierCreds};
pub use connect::{ConnectFuture, Connector, TlsConnector};
pub use core::SessionParams;
pub use error::ClientError;
pub use event::ServerEvent;
pub use io::{BlockSink, BlockSource, MemoryRelay, MemorySink, MemorySource, memory_pair};
pub use keepalive::TcpKeepalive;
pub use keys::{AuthAlgorithm, AuthKey};
pub use msg::{NMsgMeta, RawMsg, RcvMessage, RcvMsgBody, decrypt_nmsg};
pub use pool::{NotifierList, PoolConfig, PoolEvent, PoolEvents, SmpClientPool};
