//! Test support, not part of the relay's API (hidden from the docs): a loopback relay started
//! in-process, as the integration tests of this crate and of the crates that talk to the relay
//! (hush-client, hush-agent, ntf-server, loadgen) need it.
//!
//! * [`init_dirs`]: `config/` + `data/` with certificates and an ini under a directory, as
//!   `smp-server init` writes them (127.0.0.1, no create password, Ed25519, store log on);
//! * [`loopback_config`]: that configuration listening on 127.0.0.1:`port` (0 = a free port),
//!   no metrics endpoint, the proxy allowed to reach loopback destinations (`[PROXY]
//!   destinations = loopback`: test relays all live on 127.0.0.1); change any field (memory
//!   store, quota, …) before starting;
//! * [`TestRelay`]: the running relay with its address (`smp://fp@127.0.0.1:port`), shutdown
//!   trigger and paths; [`TestRelay::restart`] starts it again on the same port with the same data.
//!
//! Everything returns [`TestRelayError`] instead of panicking; tests `unwrap()`.
#![doc(hidden)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hush_proto::encoding::base64url_encode;
use tokio::task::JoinHandle;

use crate::init::{InitError, InitOptions, PasswordChoice};
use crate::server::{Relay, RelayOptions};
use crate::{Config, ConfigError, RunError, ServerPaths, ShutdownTrigger};

/// How long [`TestRelay::stop`] waits for the relay to finish.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often, and how far apart, a start on a fixed port is retried while the port is still
/// held (a restart right after a stop).
const BIND_ATTEMPTS: u32 = 50;
const BIND_RETRY: Duration = Duration::from_millis(100);

/// Why a test relay could not be set up, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TestRelayError {
    #[error("init: {0}")]
    Init(#[from] InitError),
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    #[error("relay: {0}")]
    Run(#[from] RunError),
    #[error("the relay listens on no address")]
    NoListener,
    #[error("the relay did not stop within {0:?}")]
    StopTimeout(Duration),
    #[error("the relay task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// `config/` and `data/` under `dir`.
pub fn paths_in(dir: &Path) -> ServerPaths {
    ServerPaths {
        config_dir: dir.join("config"),
        data_dir: dir.join("data"),
    }
}

/// Runs `smp-server init` into `paths`: certificates, fingerprint and an ini for 127.0.0.1
/// (no create password, Ed25519 online key, store log on so data survives a restart).
pub fn init(paths: &ServerPaths) -> Result<(), InitError> {
    crate::init::init(&InitOptions {
        paths: paths.clone(),
        fqdn: None,
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        password: PasswordChoice::None,
        sign_algorithm: hush_crypto::SignAlgorithm::Ed25519,
        port: 5223,
        control_port: None,
        store_log: true,
        force: false,
    })?;
    Ok(())
}

/// [`init`] into [`paths_in`]`(dir)`; returns the paths.
pub fn init_dirs(dir: &Path) -> Result<ServerPaths, InitError> {
    let paths = paths_in(dir);
    init(&paths)?;
    Ok(paths)
}

/// The configuration in `paths`, listening on 127.0.0.1:`port` only (0 = a free port), without
/// the metrics endpoint, without expiring messages on SEND, and with the proxy allowed to
/// connect to loopback destinations (the other test relays).
pub fn loopback_config(paths: &ServerPaths, port: u16) -> Result<Config, ConfigError> {
    let (mut c, _warnings) = Config::load(paths.clone())?;
    c.transport.ports = vec![port];
    c.transport.bind = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    c.metrics.enable = false;
    c.store.expire_messages_on_send = false;
    c.proxy.destinations = hush_server_common::DestinationPolicy::Loopback;
    Ok(c)
}

/// `smp://<fingerprint>@127.0.0.1:<port>`.
pub fn loopback_address(fingerprint: &[u8; 32], port: u16) -> String {
    format!("smp://{}@127.0.0.1:{port}", base64url_encode(fingerprint))
}

/// A relay running in this process. Dropping it drops the shutdown trigger, which stops the
/// relay (without waiting for it).
#[derive(Debug)]
pub struct TestRelay {
    /// The configuration it was started with (`transport.ports` as given, possibly 0).
    pub config: Config,
    pub options: RelayOptions,
    /// Bound SMP addresses; `addr` is the first.
    pub addrs: Vec<SocketAddr>,
    pub addr: SocketAddr,
    pub control_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    /// SHA-256 of the CA certificate (the `fp` of the address).
    pub fingerprint: [u8; 32],
    /// The running relay's metrics (replaced by a restart).
    pub metrics: crate::Metrics,
    trigger: Option<ShutdownTrigger>,
    task: Option<JoinHandle<Result<(), RunError>>>,
}

impl TestRelay {
    /// [`init_dirs`]`(dir)`, then starts on a free loopback port ([`loopback_config`]).
    pub async fn start_in(dir: &Path, options: RelayOptions) -> Result<TestRelay, TestRelayError> {
        let paths = init_dirs(dir)?;
        TestRelay::start(loopback_config(&paths, 0)?, options).await
    }

    /// Starts the relay with `config` and returns once it listens. With fixed (non-zero) ports a
    /// port still held by a relay stopped a moment ago is retried for up to 5 s.
    pub async fn start(config: Config, options: RelayOptions) -> Result<TestRelay, TestRelayError> {
        let fingerprint = crate::init::check_fingerprint(&config.paths)?;
        let (trigger, relay) = start_relay(&config, &options).await?;
        let addr = relay
            .addrs
            .first()
            .copied()
            .ok_or(TestRelayError::NoListener)?;
        Ok(TestRelay {
            addrs: relay.addrs.clone(),
            addr,
            control_addr: relay.control_addr,
            metrics_addr: relay.metrics_addr,
            metrics: relay.metrics().clone(),
            config,
            options,
            fingerprint,
            trigger: Some(trigger),
            task: Some(tokio::spawn(relay.wait())),
        })
    }

    pub fn paths(&self) -> &ServerPaths {
        &self.config.paths
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `smp://<fingerprint>@127.0.0.1:<port>` (no create password).
    pub fn address(&self) -> String {
        loopback_address(&self.fingerprint, self.port())
    }

    /// The configuration with the bound ports instead of 0: started again, the relay listens on
    /// the same ports and uses the same data.
    pub fn restart_config(&self) -> Config {
        let mut c = self.config.clone();
        let mut ports: Vec<u16> = Vec::new();
        for a in &self.addrs {
            if !ports.contains(&a.port()) {
                ports.push(a.port());
            }
        }
        c.transport.ports = ports;
        c
    }

    /// Takes the shutdown trigger (the relay then stops when the caller triggers or drops it;
    /// [`TestRelay::stop`] no longer stops it).
    pub fn take_trigger(&mut self) -> Option<ShutdownTrigger> {
        self.trigger.take()
    }

    /// Whether the relay was started and not stopped.
    pub fn is_running(&self) -> bool {
        self.task.is_some()
    }

    /// Graceful stop: triggers shutdown and waits (up to [`STOP_TIMEOUT`]) for the relay to
    /// finish, returning its result. Stopping a stopped relay does nothing.
    pub async fn stop(&mut self) -> Result<(), TestRelayError> {
        if let Some(t) = self.trigger.take() {
            t.trigger();
        }
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        tokio::time::timeout(STOP_TIMEOUT, task)
            .await
            .map_err(|_| TestRelayError::StopTimeout(STOP_TIMEOUT))???;
        Ok(())
    }

    /// Stops the relay if it runs, then starts it again on the same ports with the same
    /// configuration, data and options.
    pub async fn restart(&mut self) -> Result<(), TestRelayError> {
        self.stop().await?;
        let config = self.restart_config();
        let (trigger, relay) = start_relay(&config, &self.options).await?;
        self.addr = relay
            .addrs
            .first()
            .copied()
            .ok_or(TestRelayError::NoListener)?;
        self.addrs = relay.addrs.clone();
        self.control_addr = relay.control_addr;
        self.metrics_addr = relay.metrics_addr;
        self.metrics = relay.metrics().clone();
        self.trigger = Some(trigger);
        self.task = Some(tokio::spawn(relay.wait()));
        Ok(())
    }
}

/// `server::start` with a fresh shutdown channel; bind errors on fixed ports are retried.
async fn start_relay(
    config: &Config,
    options: &RelayOptions,
) -> Result<(ShutdownTrigger, Relay), RunError> {
    let fixed_port = config.transport.ports.iter().any(|p| *p != 0);
    let mut attempt = 1;
    loop {
        let (trigger, shutdown) = crate::shutdown_channel();
        match crate::server::start(config.clone(), shutdown, options.clone()).await {
            Ok(relay) => return Ok((trigger, relay)),
            Err(RunError::Bind { .. }) if fixed_port && attempt < BIND_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(BIND_RETRY).await;
            }
            Err(e) => return Err(e),
        }
    }
}
