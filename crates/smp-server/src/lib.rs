//! smp-server: the SMP relay (reference `protocols.md` §3, §7).
//!
//! Operations live here: [`config`] (typed `smp-server.ini`), [`init`] (`smp-server init`/`cert`/`delete`
//! file work), [`cli`] (clap definitions), [`control`] (loopback control port), [`metrics`] (Prometheus
//! endpoint). The relay core (connections, queues, delivery) plugs in through [`run`].

pub mod cli;
pub mod config;
pub mod control;
pub mod import;
pub mod init;
pub mod metrics;
pub mod server;
pub mod testing;

pub use config::{Config, ConfigError, ConfigWarning, ServerPaths};
pub use control::{ControlHandler, ControlReply, Role};
pub use metrics::Metrics;

/// The INI reader lives in `hush-server-common` (shared with ntf-server and push-server).
pub use hush_server_common::ini;
/// The shutdown signal lives in `hush-server-common` (shared with ntf-server and push-server).
pub use hush_server_common::{Shutdown, ShutdownTrigger, shutdown_channel};

/// Why the relay stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// The admin endpoints started by [`spawn_admin`].
#[derive(Debug)]
pub struct AdminEndpoints {
    /// Bound address of the Prometheus endpoint, if `[METRICS] enable = on`.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Bound address of the control port, if `[TRANSPORT] control_port` is set.
    pub control_addr: Option<std::net::SocketAddr>,
    /// The serving tasks; they end when the shutdown signal fires.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Binds and spawns what `config` asks for: the metrics endpoint (`[METRICS]`) serving `metrics`, and
/// the loopback control port (`[TRANSPORT] control_port`, `[AUTH] control_port_*_password`) answering
/// through `handler`. Port 0 binds a free port (the bound addresses are returned).
pub async fn spawn_admin<H: ControlHandler>(
    config: &Config,
    metrics: &Metrics,
    handler: std::sync::Arc<H>,
    shutdown: &Shutdown,
) -> Result<AdminEndpoints, RunError> {
    let mut out = AdminEndpoints {
        metrics_addr: None,
        control_addr: None,
        tasks: Vec::new(),
    };
    if config.metrics.enable {
        let addr = config.metrics.address;
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind { addr, source })?;
        out.metrics_addr = Some(
            l.local_addr()
                .map_err(|source| RunError::Bind { addr, source })?,
        );
        out.tasks.push(tokio::spawn(metrics::serve(
            l,
            metrics.clone(),
            shutdown.clone(),
        )));
    }
    if let Some(addr) = config.transport.control_addr() {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind { addr, source })?;
        out.control_addr = Some(
            l.local_addr()
                .map_err(|source| RunError::Bind { addr, source })?,
        );
        let auth = control::ControlAuth {
            admin: config.auth.control_port_admin_password.clone(),
            user: config.auth.control_port_user_password.clone(),
        };
        out.tasks.push(tokio::spawn(control::serve(
            l,
            handler,
            auth,
            shutdown.clone(),
        )));
    }
    Ok(out)
}

/// Starts the server information page when `[WEB] static_path` is set: writes it (server address
/// without `create_password`, `[INFORMATION]`, configuration, statistics from `metrics`), updates
/// it every `refresh_interval`, and serves it on `[WEB] http` / `https` (HTTPS with `cert`/`key`,
/// else this server's own certificate). With `print`, prints `Server page on <url>` per listener.
pub async fn spawn_web(
    config: &Config,
    fingerprint: &[u8; 32],
    metrics: &Metrics,
    print: bool,
    shutdown: &Shutdown,
) -> Result<Vec<tokio::task::JoinHandle<()>>, RunError> {
    use hush_server_common::web::{self, Stat};
    let Some(w) = &config.web else {
        return Ok(Vec::new());
    };
    let port = config
        .transport
        .ports
        .first()
        .copied()
        .unwrap_or(config::DEFAULT_PORT);
    let addresses = if config.transport.hosts.is_empty() {
        Vec::new()
    } else {
        // Never the create_password: the page is public.
        vec![init::server_address(
            fingerprint,
            None,
            &config.transport.hosts,
            port,
        )]
    };
    let yes_no = |b: bool| if b { "Yes" } else { "No" }.to_string();
    let page = web::PageInfo {
        server_kind: "SMP server".into(),
        addresses,
        information: config.information.clone(),
        settings: vec![
            (
                "Persistence".into(),
                if config.store.enable {
                    "Queues and messages"
                } else {
                    "In-memory only"
                }
                .into(),
            ),
            (
                "Message expiration".into(),
                format!("{} days", config.store.message_expiration.as_secs() / 86400),
            ),
            ("New queues allowed".into(), yes_no(config.auth.new_queues)),
            (
                "Password to create queues".into(),
                yes_no(config.auth.create_password.is_some()),
            ),
        ],
        software: format!("hush smp-server {}", env!("CARGO_PKG_VERSION")),
        started: std::time::SystemTime::now(),
    };
    let m = metrics.clone();
    let stats: web::StatsSource = std::sync::Arc::new(move || {
        vec![
            Stat::new("queues", "Queues", m.queues_total.get()),
            Stat::new(
                "messages",
                "Messages waiting for delivery",
                m.messages_total.get(),
            ),
            Stat::new("clients", "Connected clients", m.clients_total.get()),
            Stat::new(
                "queues-created",
                "Queues created since start",
                m.queues_created.get(),
            ),
            Stat::new(
                "messages-sent",
                "Messages sent since start",
                m.messages_sent.get(),
            ),
            Stat::new(
                "messages-delivered",
                "Messages delivered since start",
                m.messages_received.get(),
            ),
        ]
    });
    let own_tls = web::TlsFiles {
        chain: vec![config.paths.server_cert(), config.paths.ca_cert()],
        key: config.paths.server_key(),
    };
    let server = web::start(w, Some(own_tls), page, stats, shutdown.clone())
        .await
        .map_err(|e| RunError::Other(e.to_string()))?;
    if print {
        if let Some(a) = server.http_addr {
            println!("Server page on http://{a}/");
        }
        if let Some(a) = server.https_addr {
            println!("Server page on https://{a}/");
        }
    }
    Ok(server.tasks)
}

/// Runs the relay with `config` until `shutdown` fires.
///
/// `smp-server start` calls this after it has loaded the configuration and checked that the CA
/// certificate matches the `fingerprint` file. It binds `config.transport.listen_addrs()`, opens the
/// store (SQLite under the data directory; memory only with `[STORE_LOG] enable = off`), starts the
/// control port and the metrics endpoint when configured ([`spawn_admin`]), serves clients
/// ([`server`]), and returns `Ok(())` after a graceful shutdown. [`server::start`] does the same
/// but returns once everything is bound (with the bound addresses), for tests and tools.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), RunError> {
    server::start(config, shutdown, server::RelayOptions::default())
        .await?
        .wait()
        .await
}
