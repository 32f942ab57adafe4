//! Small pieces shared by hush's servers (smp-server, ntf-server, push-server), kept apart from the
//! relay so that a server that needs only these does not build the relay:
//!
//! * [`ini`]: the strict INI reader of the configuration files;
//! * [`config`]: the typed reader on it (`on`/`off`, ranges, durations, addresses, paths, the
//!   known-key check) with one error and one warning type for every server;
//! * [`Shutdown`] / [`ShutdownTrigger`] / [`shutdown_channel`]: the "stop now" signal of every task;
//! * [`BasicAuth`]: an `[AUTH]` password (`create_password`, control port passwords);
//! * [`accept`]: the accept step of every listener, with back-off on accept errors;
//! * [`control`]: the loopback control port (roles, limits, built-ins, per-server command table);
//! * [`init_logging`] / [`wait_for_signal`]: the logging setup and stop signal of the `main`s;
//! * [`private`]: private files and directories (0600/0700 from creation, fsync'd, atomic replace);
//! * [`private_start`]: looser data directories / database files tightened at start (logged);
//! * [`netpolicy`]: which destinations a peer may make a server connect to (SNEW, PRXY, Web Push);
//! * [`limits`]: rate limits, per-address connection caps and throttled warn logs;
//! * [`storelog`]: reading a reference server's store log for the `import` commands;
//! * `test_support` (feature `test-support`): helpers of the servers' integration tests;
//! * [`web`]: the server information page (`[INFORMATION]`, `[WEB]`) over HTTP/HTTPS;
//! * [`metrics`]: the `/metrics` endpoint (OpenMetrics over HTTP/1.1) and shared metric types.

pub mod accept;
pub mod auth;
pub mod config;
pub mod control;
pub mod group_commit;
pub mod ini;
pub mod limits;
pub mod metrics;
pub mod netpolicy;
pub mod private;
pub mod private_start;
pub mod process;
pub mod storelog;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod time;
pub mod web;

pub use accept::{AcceptBackoff, accept, accept_until};
pub use auth::BasicAuth;
pub use limits::{
    Admission, Admitted, IpConnGuard, IpConnLimiter, KeyedRateLimiter, LogThrottle, Rate,
    RateLimiter,
};
pub use netpolicy::{DestinationPolicy, DestinationRefused, resolve_checked};
pub use process::{StopSignals, init_logging, wait_for_signal};

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

impl From<watch::Receiver<bool>> for Shutdown {
    /// A signal from a `watch` channel whose `true` (or dropped sender) means "stop now".
    fn from(rx: watch::Receiver<bool>) -> Self {
        Self { rx }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn trigger_reaches_every_clone() {
        let (trigger, shutdown) = shutdown_channel();
        let mut a = shutdown.clone();
        let mut b = shutdown.clone();
        assert!(!shutdown.is_triggered());
        // Not triggered yet: wait() must not resolve.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), a.wait())
                .await
                .is_err()
        );
        trigger.trigger();
        assert!(shutdown.is_triggered());
        tokio::time::timeout(Duration::from_secs(5), a.wait())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), b.wait())
            .await
            .unwrap();
        // A clone made after the trigger sees it too, and wait() resolves again (idempotent).
        let mut late = shutdown.clone();
        assert!(late.is_triggered());
        tokio::time::timeout(Duration::from_secs(5), late.wait())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn dropping_the_trigger_shuts_down() {
        let (trigger, mut shutdown) = shutdown_channel();
        assert!(!shutdown.is_triggered());
        drop(trigger);
        assert!(shutdown.is_triggered());
        tokio::time::timeout(Duration::from_secs(5), shutdown.wait())
            .await
            .unwrap();
    }
}
