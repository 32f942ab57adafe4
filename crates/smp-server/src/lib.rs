//! smp-server: the SMP relay (reference `protocols.md` §3, §7).
//!
//! Operations live here: [`config`] (typed `smp-server.ini`), [`init`] (`smp-server init`/`cert`/`delete`
//! file work), [`cli`] (clap definitions), [`control`] (loopback control port), [`metrics`] (Prometheus
//! endpoint). The relay core (connections, queues, delivery) plugs in through [`run`].

pub mod cli;
pub mod config;
pub mod control;
pub mod ini;
pub mod init;
pub mod metrics;

pub use config::{Config, ConfigError, ConfigWarning, ServerPaths};
pub use control::{ControlHandler, ControlReply, Role};
pub use metrics::Metrics;

use tokio::sync::watch;

/// A cloneable "stop now" signal for every task of the server.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The sending half of [`Shutdown`]; dropping it also shuts the server down.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// A new trigger and its signal.
pub fn shutdown_channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    /// Asks every holder of a [`Shutdown`] to stop.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    /// True once shutdown was requested (or the trigger was dropped).
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Resolves when shutdown is requested (or the trigger is dropped). Cancel-safe.
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

/// Why the relay stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The placeholder below: the relay core has not been written yet.
    #[error(
        "relay core not built yet: `smp-server start` checks the configuration and certificates, but cannot serve clients"
    )]
    NotBuilt,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// Runs the relay with `config` until `shutdown` fires.
///
/// `smp-server start` calls this after it has loaded the configuration and checked that the CA
/// certificate matches the `fingerprint` file. It is expected to bind `config.transport.listen_addrs()`,
/// start the control port (`control::serve` with a [`ControlHandler`]) when
/// `config.transport.control_addr()` is set, the metrics endpoint (`metrics::serve`) when
/// `config.metrics.enable`, and return `Ok(())` after a graceful shutdown.
///
/// RELAY-CORE SEAM: placeholder until the relay core lands; it returns [`RunError::NotBuilt`].
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), RunError> {
    let _ = (config, shutdown);
    Err(RunError::NotBuilt)
}
