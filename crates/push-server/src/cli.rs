//! `push-server init|start`: command line (clap) and the server assembly used by the binary
//! and by tests ([`start`]).

use hush_server_common::private::write_private;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{self, Config};
use crate::handle::HandleKey;
use crate::http_util;
use crate::jwt::Es256Key;
use crate::metrics::Metrics;
use crate::net::{self, Credentials};
use crate::outbox::Outbox;
use crate::provider::{Providers, SetupError};
use crate::service::PushService;

pub const DEFAULT_DIR: &str = "/etc/opt/hush/push";

#[derive(Debug, Parser)]
#[command(
    name = "push-server",
    version,
    about = "hush push gateway: APNs and Web Push / UnifiedPush delivery for ntf-servers"
)]
pub struct Cli {
    /// Directory with push-server.ini, the TLS certificate, keys and the outbox.
    #[arg(long, short = 'd', global = true, env = "PUSH_SERVER_DIR", default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create push-server.ini, the TLS certificate + fingerprint, the handle key, a VAPID key and
    /// one ntf-server credential.
    Init {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
        #[arg(long, default_value_t = config::DEFAULT_PORT)]
        port: u16,
        /// Name of the first ntf-server client.
        #[arg(long, default_value = "ntf")]
        client_name: String,
    },
    /// Run the push-server.
    Start,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("{0}")]
    Setup(String),
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// What `init` produced.
#[derive(Debug)]
pub struct InitOutcome {
    pub fingerprint: String,
    pub client_name: String,
    pub credential: String,
}

/// `push-server init`: refuses to overwrite an existing configuration.
pub fn init(
    dir: &Path,
    host: IpAddr,
    port: u16,
    client_name: &str,
) -> Result<InitOutcome, CliError> {
    let ini = dir.join(config::INI_FILE);
    if ini.exists() {
        return Err(file_err(
            &ini,
            "already exists (delete the directory to start over)",
        ));
    }
    // Keys, credentials and the outbox (device tokens) live here: private, tightened if it exists.
    hush_server_common::private_start::prepare_private_dir(dir, "push-server directory")
        .map_err(|e| file_err(dir, e))?;
    let (cert, key) = http_util::self_signed_cert("push-server", &[], 3650)
        .map_err(|e| CliError::Setup(e.to_string()))?;
    let fp = http_util::cert_fingerprint(&cert).map_err(|e| CliError::Setup(e.to_string()))?;
    let fp_text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(fp);
    std::fs::write(dir.join(config::CERT_FILE), &cert)
        .map_err(|e| file_err(&dir.join(config::CERT_FILE), e))?;
    // Private files: 0600 from creation, fsync'd, atomically replaced.
    let key_file = dir.join(config::KEY_FILE);
    write_private(&key_file, &key).map_err(|e| file_err(&key_file, e))?;
    std::fs::write(dir.join(config::FINGERPRINT_FILE), format!("{fp_text}\n"))
        .map_err(|e| file_err(&dir.join(config::FINGERPRINT_FILE), e))?;
    HandleKey::generate()
        .save(&dir.join(config::HANDLE_KEY_FILE))
        .map_err(|e| CliError::Setup(e.to_string()))?;
    let vapid = Es256Key::generate()
        .and_then(|k| k.to_pkcs8_pem())
        .map_err(|e| CliError::Setup(e.to_string()))?;
    let vapid_file = dir.join("vapid.pem");
    write_private(&vapid_file, &vapid).map_err(|e| file_err(&vapid_file, e))?;
    let credential = net::new_credential();
    write_private(
        &ini,
        config::default_ini(host, port, client_name, &credential).as_bytes(),
    )
    .map_err(|e| file_err(&ini, e))?;
    Ok(InitOutcome {
        fingerprint: fp_text,
        client_name: client_name.to_string(),
        credential,
    })
}

/// Builds the providers configured in `cfg` (every provider of [`crate::provider::REGISTRY`]).
pub fn providers(cfg: &Config) -> Result<Providers, CliError> {
    Providers::from_config(cfg).map_err(|e| match e {
        SetupError::File { path, msg } => CliError::File { path, msg },
        SetupError::Setup(m) => CliError::Setup(m),
    })
}

/// A running push-server.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub service: PushService,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Running({})", self.addr)
    }
}

impl Running {
    /// Graceful stop: listeners close, in-flight deliveries finish.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts everything `cfg` describes (outbox, dispatcher, listener, metrics).
pub async fn start(cfg: &Config) -> Result<Running, CliError> {
    let providers = providers(cfg)?;
    let handle_key = HandleKey::load(&cfg.dir.join(config::HANDLE_KEY_FILE))
        .map_err(|e| CliError::Setup(e.to_string()))?;
    // The directory holds the keys and (by default) the outbox: private, a looser one is
    // tightened (logged at info). The outbox (device tokens) is created 0600 before SQLite
    // opens it, its -wal/-shm with the same mode.
    hush_server_common::private_start::prepare_private_dir(&cfg.dir, "push-server directory")
        .map_err(|e| file_err(&cfg.dir, e))?;
    hush_server_common::private_start::prepare_private_db(&cfg.outbox_file, true, "push outbox")
        .map_err(|e| file_err(&cfg.outbox_file, e))?;
    let outbox =
        Outbox::open(&cfg.outbox_file, cfg.full_sync).map_err(|e| file_err(&cfg.outbox_file, e))?;
    let metrics = Metrics::new();
    // One source for the endpoint policy: the registration check and the delivery check agree.
    let mut service_cfg = cfg.service.clone();
    service_cfg.webpush_endpoints = cfg.webpush.endpoints;
    let service = PushService::new(outbox, providers, handle_key, metrics.clone(), service_cfg);
    let cert_path = cfg.dir.join(config::CERT_FILE);
    let key_path = cfg.dir.join(config::KEY_FILE);
    let cert = std::fs::read(&cert_path).map_err(|e| file_err(&cert_path, e))?;
    let key = std::fs::read(&key_path).map_err(|e| file_err(&key_path, e))?;
    let acceptor = http_util::tls_acceptor(&cert, &key, &[], true)
        .map_err(|e| CliError::Setup(format!("TLS: {e}")))?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| CliError::Setup(format!("cannot listen on {}: {e}", cfg.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Setup(e.to_string()))?;
    let (tx, rx) = watch::channel(false);
    let mut tasks = vec![service.spawn_dispatcher(rx.clone())];
    tasks.push(tokio::spawn(net::serve(
        listener,
        acceptor,
        service.clone(),
        Credentials::new(&cfg.clients),
        cfg.limits.clone(),
        rx.clone(),
    )));
    let metrics_addr = match cfg.metrics {
        Some(a) => {
            let l = TcpListener::bind(a)
                .await
                .map_err(|e| CliError::Setup(format!("cannot listen on {a}: {e}")))?;
            let ma = l.local_addr().map_err(|e| CliError::Setup(e.to_string()))?;
            tasks.push(tokio::spawn(crate::metrics::serve(l, metrics, rx.clone())));
            Some(ma)
        }
        None => None,
    };
    Ok(Running {
        addr,
        metrics_addr,
        service,
        shutdown: tx,
        tasks,
    })
}
