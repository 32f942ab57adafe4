//! Test harness: a real smp-server relay in-process (restartable on the same port) and agents
//! with their own database files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use hush_agent::{Agent, AgentConfig, AgentEvent, AgentEvents};
use hush_client::BackoffConfig;
use hush_proto::address::ProtocolServer;
use smp_server::server::RelayOptions;

pub const WAIT: Duration = Duration::from_secs(30);

/// An in-process relay (`smp_server::testing`), restartable on the same port with the same data
/// (the store log is on, so queues and messages survive restarts).
pub struct TestRelay(smp_server::testing::TestRelay);

fn options() -> RelayOptions {
    RelayOptions {
        shutdown_grace: Duration::from_millis(500),
        ..RelayOptions::default()
    }
}

impl TestRelay {
    /// `init` in `dir`, then start on a free port.
    pub async fn start(dir: &Path) -> TestRelay {
        TestRelay(
            smp_server::testing::TestRelay::start_in(dir, options())
                .await
                .unwrap(),
        )
    }

    pub async fn stop(&mut self) {
        self.0.stop().await.unwrap();
    }

    /// Starts again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.0.restart().await.unwrap();
    }

    pub fn server(&self) -> ProtocolServer {
        ProtocolServer::parse(&self.0.address()).unwrap()
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
