//! Listeners and connections (design §4, *mini-redis*): an accept loop with a connection limit,
//! an optional per-address cap and back-off on accept errors, one task per NTF connection (TLS,
//! ALPN `ntf/1`, 512-byte blocks) that must finish the TLS handshake and the NTF hello within
//! `handshake_timeout`, then reads a block, answers its transmissions in one batch, and stops on
//! shutdown or inactivity. Each connection has its own `TNEW`/`TRPL` rate limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hush_proto::error::ErrorType;
use hush_proto::ntf::NtfResponse;
use hush_server_common::{Admission, LogThrottle, Rate, RateLimiter};
use hush_transport::TransportServer;
use push_api::PushGateway;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::core::{ConnCtx, Core, CoreOptions, encode_response};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("certificates: {0}")]
    Certificates(String),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Other(String),
}

/// A started ntf-server.
pub struct NtfServer<G> {
    /// Bound NTF listener addresses.
    pub addrs: Vec<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub control_addr: Option<SocketAddr>,
    /// Bound addresses of the server information page (`[WEB] http`, `https`).
    pub web_http_addr: Option<SocketAddr>,
    pub web_https_addr: Option<SocketAddr>,
    /// SHA-256 of the CA certificate (the server identity in `ntf://<fp>@host`).
    pub fingerprint: [u8; 32],
    pub core: Arc<Core<G>>,
    tasks: Vec<JoinHandle<()>>,
    shutdown: hush_server_common::Shutdown,
}

impl<G> std::fmt::Debug for NtfServer<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtfServer")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

/// Starts an ntf-server with `config`, pushing through `gateway`. Returns once everything is
/// bound; [`NtfServer::wait`] runs until `shutdown` fires.
pub async fn start<G: PushGateway + 'static>(
    config: Config,
    gateway: Arc<G>,
    shutdown: hush_server_common::Shutdown,
) -> Result<NtfServer<G>, RunError> {
    let identity = hush_crypto::ServerIdentity::load(&config.paths.config_dir)
        .map_err(|e| RunError::Certificates(e.to_string()))?;
    let fingerprint = hush_crypto::fingerprint(&identity.ca_cert_der);
    let identity = hush_transport::ServerIdentity::from_crypto(&identity)
        .map_err(|e| RunError::Certificates(e.to_string()))?;
    let transport =
        TransportServer::ntf(identity).map_err(|e| RunError::Certificates(e.to_string()))?;

    let store = Store::open_async(&config.store_mode()).await?;

    // Destination policy, SOCKS proxy and (with `use_service_credentials`) the service
    // certificate, all from the configuration.
    let connector = crate::relays::CheckedConnector::for_config(&config)
        .map_err(|e| RunError::Other(format!("relay client: {e}")))?;
    let (pool, pool_events) =
        hush_client::SmpClientPool::new(Arc::new(connector), config.pool_config());
    let options: CoreOptions = config.core_options();
    let (core, mut tasks) =
        Core::start(store, options, gateway, pool, pool_events, shutdown.clone());

    let mut addrs = Vec::new();
    let limits = Arc::new(ConnLimits {
        handshake_timeout: config.handshake_timeout,
        admission: Admission::new(config.max_connections, config.max_connections_per_ip),
        token_rate: config.token_rate_per_connection,
        token_per_ip: Arc::new(hush_server_common::KeyedRateLimiter::new(
            config.token_rate_per_ip,
            100_000,
        )),
        inactive_ttl: config.inactive_ttl,
        log_tls_errors: config.log_tls_errors,
    });
    for addr in config.listen_addrs() {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind { addr, source })?;
        addrs.push(
            l.local_addr()
                .map_err(|source| RunError::Bind { addr, source })?,
        );
        tasks.push(tokio::spawn(accept_loop(
            core.clone(),
            transport.clone(),
            l,
            limits.clone(),
            shutdown.clone(),
        )));
    }
    let mut metrics_addr = None;
    if let Some(addr) = config.metrics_addr {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind { addr, source })?;
        metrics_addr = l.local_addr().ok();
        tasks.push(tokio::spawn(crate::metrics::serve(
            l,
            core.metrics.clone(),
            shutdown.clone(),
        )));
    }
    let mut control_addr = None;
    if let Some(port) = config.control_port {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind { addr, source })?;
        control_addr = l.local_addr().ok();
        tasks.push(tokio::spawn(crate::control::serve(
            l,
            core.clone(),
            config.control_auth(),
            shutdown.clone(),
        )));
    }
    let (web_http_addr, web_https_addr) = match &config.web {
        None => (None, None),
        Some(w) => {
            let web = start_web(&config, w, &fingerprint, &core.metrics, &shutdown).await?;
            tasks.extend(web.tasks);
            (web.http_addr, web.https_addr)
        }
    };
    Ok(NtfServer {
        addrs,
        metrics_addr,
        control_addr,
        web_http_addr,
        web_https_addr,
        fingerprint,
        core,
        tasks,
        shutdown,
    })
}

impl<G: PushGateway + 'static> NtfServer<G> {
    /// Serves until shutdown, then closes relay connections and flushes the store.
    pub async fn wait(mut self) -> Result<(), RunError> {
        self.shutdown.wait().await;
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        self.core.pool.close().await;
        let _ = self.core.store.sync().await;
        if let Some(pg) = self.core.store.postgres()
            && let Err(e) = pg.release_leases().await
        {
            tracing::warn!(error = %e, "could not release relay leases (they expire)");
        }
        let core = self.core;
        let _ = tokio::task::spawn_blocking(move || drop(core)).await;
        Ok(())
    }
}

/// The server information page (`[WEB]`, hush-server-common `web`, as smp-server's).
async fn start_web(
    config: &Config,
    w: &hush_server_common::web::WebConfig,
    fingerprint: &[u8; 32],
    metrics: &crate::metrics::Metrics,
    shutdown: &hush_server_common::Shutdown,
) -> Result<hush_server_common::web::WebServer, RunError> {
    use hush_server_common::web::{self, Stat};
    use std::sync::atomic::Ordering::Relaxed;
    let port = config
        .ports
        .first()
        .copied()
        .unwrap_or(crate::config::DEFAULT_PORT);
    let addresses = config
        .host
        .iter()
        .map(|h| {
            format!(
                "ntf://{}@{h}{}",
                hush_proto::encoding::base64url_encode(fingerprint),
                if port == 443 {
                    String::new()
                } else {
                    format!(":{port}")
                }
            )
        })
        .collect();
    let page = web::PageInfo {
        server_kind: "Notification server".into(),
        addresses,
        information: config.information.clone(),
        settings: vec![
            (
                "Persistence".into(),
                if config.store_enable {
                    "Tokens and subscriptions"
                } else {
                    "In-memory only"
                }
                .into(),
            ),
            (
                "Notifications".into(),
                if config.policy_reference {
                    "every message, as an alert".to_string()
                } else {
                    format!(
                        "at most {} silent pushes per {} s per device, then alerts",
                        config.budget.silent_per_window,
                        config.budget.window.as_secs()
                    )
                },
            ),
        ],
        software: format!("hush ntf-server {}", env!("CARGO_PKG_VERSION")),
        started: std::time::SystemTime::now(),
    };
    let m = metrics.clone();
    let stats: web::StatsSource = Arc::new(move || {
        vec![
            Stat::new("tokens", "Device tokens", m.tokens_total.load(Relaxed)),
            Stat::new(
                "subscriptions",
                "Subscriptions",
                m.subscriptions_total.load(Relaxed),
            ),
            Stat::new("relays", "Relays", m.relays_total.load(Relaxed)),
            Stat::new(
                "tokens-created",
                "Tokens registered since start",
                m.tokens_created.get(),
            ),
            Stat::new(
                "notifications-delivered",
                "Notifications delivered since start",
                m.notifications_delivered.get(),
            ),
        ]
    });
    let own_tls = web::TlsFiles {
        chain: vec![
            config.paths.config_dir.join("server.crt"),
            config.paths.config_dir.join("ca.crt"),
        ],
        key: config.paths.config_dir.join("server.key"),
    };
    let server = web::start(w, Some(own_tls), page, stats, shutdown.clone())
        .await
        .map_err(|e| RunError::Other(e.to_string()))?;
    for (scheme, a) in [("http", server.http_addr), ("https", server.https_addr)] {
        if let Some(a) = a {
            tracing::info!("server page on {scheme}://{a}/");
        }
    }
    Ok(server)
}

/// What every connection of a listener is held to.
struct ConnLimits {
    handshake_timeout: Duration,
    /// `max_connections` and `[LIMITS] max_connections_per_ip`.
    admission: Admission,
    token_rate: Rate,
    /// `[LIMITS] token_rate_per_ip` / `token_burst_per_ip`, shared by an address's connections.
    token_per_ip: Arc<hush_server_common::KeyedRateLimiter<hush_server_common::limits::IpKey>>,
    inactive_ttl: Option<Duration>,
    log_tls_errors: bool,
}

static HANDSHAKE_TIMEOUT_LOG: LogThrottle = LogThrottle::new(Duration::from_secs(60));

async fn accept_loop<G: PushGateway + 'static>(
    core: Arc<Core<G>>,
    transport: TransportServer,
    listener: TcpListener,
    limits: Arc<ConnLimits>,
    mut shutdown: hush_server_common::Shutdown,
) {
    let mut backoff = hush_server_common::AcceptBackoff::new("ntf");
    loop {
        let Some((tcp, peer)) =
            hush_server_common::accept(&listener, &mut backoff, &mut shutdown).await
        else {
            return;
        };
        let slot = match limits.admission.admit(peer.ip()) {
            Ok(slot) => slot,
            Err((refused, log)) => {
                core.metrics.connection_refused(refused.key());
                if let Some(held) = log {
                    tracing::warn!(
                        limit = refused.key(),
                        suppressed = held,
                        "NTF connection limit reached: connection refused"
                    );
                }
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let core = core.clone();
        let transport = transport.clone();
        let limits = limits.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let conn = tokio::select! {
                _ = shutdown.wait() => return,
                c = tokio::time::timeout(limits.handshake_timeout, transport.accept(tcp)) => c,
            };
            let conn = match conn {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    if limits.log_tls_errors {
                        tracing::info!(error = %e, "NTF handshake failed");
                    } else {
                        tracing::debug!(error = %e, "NTF handshake failed");
                    }
                    return;
                }
                Err(_) => {
                    core.metrics.handshake_timeouts.inc();
                    if limits.log_tls_errors
                        && let Some(held) = HANDSHAKE_TIMEOUT_LOG.check()
                    {
                        tracing::info!(suppressed = held, "NTF handshake timed out");
                    }
                    return;
                }
            };
            let token_limit = crate::core::TokenLimits {
                connection: RateLimiter::new(limits.token_rate),
                per_ip: Some((limits.token_per_ip.clone(), peer.ip().into())),
            };
            serve_connection(core, conn, limits.inactive_ttl, &token_limit, shutdown).await;
        });
    }
}

async fn serve_connection<G: PushGateway + 'static>(
    core: Arc<Core<G>>,
    mut conn: hush_transport::ServerConnection,
    inactive_ttl: Option<Duration>,
    token_limit: &crate::core::TokenLimits,
    mut shutdown: hush_server_common::Shutdown,
) {
    let version = conn.version();
    let session_id = conn.session_id().to_vec();
    let session_key = conn.session_key().clone();
    let has_key =
        conn.info().server_versions.max() >= hush_proto::version::ntf_version::AUTH_BATCH_CMDS;
    loop {
        let idle = async {
            match inactive_ttl {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        let received = tokio::select! {
            _ = shutdown.wait() => break,
            _ = idle => break,
            r = conn.recv() => r,
        };
        let out = match received {
            Err(_) => break,
            Ok(Err(_)) => vec![encode_response(
                &session_id,
                &[],
                &[],
                &NtfResponse::Err(ErrorType::Block),
                version,
            )],
            Ok(Ok(block)) => match block.transmissions() {
                Err(_) => vec![encode_response(
                    &session_id,
                    &[],
                    &[],
                    &NtfResponse::Err(ErrorType::Block),
                    version,
                )],
                Ok(ts) => {
                    let ctx = ConnCtx {
                        version,
                        session_id: &session_id,
                        session_key: has_key.then_some(&session_key),
                        token_limit: Some(token_limit),
                    };
                    let mut out = Vec::with_capacity(ts.len());
                    for t in ts {
                        out.push(core.process_transmission(&ctx, t).await);
                    }
                    out
                }
            },
        };
        if conn.send(&out).await.is_err() {
            break;
        }
    }
    let _ = conn.close().await;
}
