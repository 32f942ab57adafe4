//! Test harness: a real smp-server relay in-process (restartable on the same port) and agents
//! with their own database files.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hush_agent::{Agent, AgentConfig, AgentEvent, AgentEvents};
use hush_client::BackoffConfig;
use hush_proto::address::ProtocolServer;
use hush_proto::encoding::base64url_encode;
use smp_server::ServerPaths;
use smp_server::config::Config;
use smp_server::init::{InitOptions, PasswordChoice};
use smp_server::server::RelayOptions;

pub const WAIT: Duration = Duration::from_secs(30);

pub struct TestRelay {
    pub paths: ServerPaths,
    pub port: u16,
    pub key_hash: [u8; 32],
    trigger: Option<smp_server::ShutdownTrigger>,
    task: Option<tokio::task::JoinHandle<Result<(), smp_server::RunError>>>,
}

fn config(paths: &ServerPaths, port: u16) -> Config {
    let (mut c, _) = Config::load(paths.clone()).unwrap();
    c.transport.ports = vec![port];
    c.transport.bind = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    c.metrics.enable = false;
    c.store.expire_messages_on_send = false;
    c
}

fn options() -> RelayOptions {
    RelayOptions {
        shutdown_grace: Duration::from_millis(500),
        ..RelayOptions::default()
    }
}

impl TestRelay {
    /// `init` in `dir`, then start on a free port (with the store log on, so queues and
    /// messages survive restarts).
    pub async fn start(dir: &Path) -> TestRelay {
        let paths = ServerPaths {
            config_dir: dir.join("config"),
            data_dir: dir.join("data"),
        };
        smp_server::init::init(&InitOptions {
            paths: paths.clone(),
            fqdn: None,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            password: PasswordChoice::None,
            sign_algorithm: hush_crypto::SignAlgorithm::Ed25519,
            port: 5223,
            control_port: None,
            store_log: true,
            force: false,
        })
        .unwrap();
        let key_hash = smp_server::init::check_fingerprint(&paths).unwrap();
        let mut r = TestRelay {
            paths,
            port: 0,
            key_hash,
            trigger: None,
            task: None,
        };
        r.run().await;
        r
    }

    async fn run(&mut self) {
        let (trigger, shutdown) = smp_server::shutdown_channel();
        let mut last_err = None;
        for _ in 0..50 {
            match smp_server::server::start(
                config(&self.paths, self.port),
                shutdown.clone(),
                options(),
            )
            .await
            {
                Ok(relay) => {
                    let addr: SocketAddr = relay.addrs[0];
                    self.port = addr.port();
                    self.task = Some(tokio::spawn(relay.wait()));
                    self.trigger = Some(trigger);
                    return;
                }
                Err(e) => {
                    // the port may still be held for a moment after a stop
                    last_err = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        panic!("relay did not start: {last_err:?}");
    }

    pub async fn stop(&mut self) {
        if let Some(t) = self.trigger.take() {
            t.trigger();
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("relay did not stop")
                .unwrap()
                .unwrap();
        }
    }

    /// Starts again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.run().await;
    }

    pub fn server(&self) -> ProtocolServer {
        ProtocolServer::parse(&format!(
            "smp://{}@127.0.0.1:{}",
            base64url_encode(&self.key_hash),
            self.port
        ))
        .unwrap()
    }
}

pub fn agent_config(server: ProtocolServer) -> AgentConfig {
    let mut c = AgentConfig::new(server);
    c.retry_interval = Duration::from_millis(200);
    c.quota_retry_interval = Duration::from_millis(300);
    c.pool.connect_timeout = Duration::from_secs(5);
    c.pool.backoff = BackoffConfig {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(1),
        multiplier: 2.0,
        jitter: 0.2,
    };
    c
}

pub async fn open_agent(db: &Path, server: ProtocolServer) -> (Agent, AgentEvents) {
    Agent::open(db, agent_config(server)).await.unwrap()
}

pub fn db_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.db"))
}

/// Waits for the first event matching `f`, returning what `f` extracted. Other events are
/// collected into `skipped`.
pub async fn wait_for<T>(
    rx: &mut AgentEvents,
    skipped: &mut Vec<AgentEvent>,
    mut f: impl FnMut(&AgentEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out; events so far: {skipped:?}"))
            .expect("event channel closed");
        if let Some(t) = f(&ev) {
            return t;
        }
        skipped.push(ev);
    }
}

/// Connects two agents by invitation; returns (A's connection, B's connection).
pub async fn connect_pair(
    a: &Agent,
    a_rx: &mut AgentEvents,
    b: &Agent,
    b_rx: &mut AgentEvents,
) -> (i64, i64) {
    let mut seen = Vec::new();
    let (a_conn, link) = a.create_invitation(b"alice").await.unwrap();
    let b_conn = b.join(&link, b"bob").await.unwrap();
    let info = wait_for(a_rx, &mut seen, |e| match e {
        AgentEvent::Connected { conn, peer_info } if *conn == a_conn => Some(peer_info.clone()),
        _ => None,
    })
    .await;
    assert_eq!(info, b"bob");
    let info = wait_for(b_rx, &mut seen, |e| match e {
        AgentEvent::Connected { conn, peer_info } if *conn == b_conn => Some(peer_info.clone()),
        _ => None,
    })
    .await;
    assert_eq!(info, b"alice");
    (a_conn, b_conn)
}
