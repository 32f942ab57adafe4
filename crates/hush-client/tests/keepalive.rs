//! Kernel TCP keep-alive on the pool's relay sockets, against the REAL relay (smp-server in
//! process, real TLS):
//!
//! * `pool_sets_keepalive_on_relay_socket`: with [`PoolConfig::tcp_keepalive`] the relay
//!   socket carries `SO_KEEPALIVE`, `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT` and
//!   `TCP_USER_TIMEOUT` (read back with `getsockopt`); without it (the default) keep-alive is
//!   off, as before.
//! * `silent_relay_is_detected_and_subscription_restored`: the relay "disappears" without a FIN
//!   or RST — its answers are silently dropped by the network — and the pool, which would not
//!   `PING` for an hour, notices through the kernel's keep-alive / user timeout alone, then
//!   reconnects once the path is back, resubscribes, and a message sent afterwards arrives.
//!   The relay sits behind a forwarder listening inside a network namespace joined by a veth
//!   pair; "disappearing" is a blackhole route inside the namespace for the client's address,
//!   so the relay side's kernel can no longer answer anything (no ACK, no RST, not even to
//!   keep-alive probes), exactly like a host that is gone. Needs root (`ip netns`); without it
//!   the test says so and passes vacuously.
#![allow(unsafe_code)] // a test/bench harness calling libc / allocator APIs; SAFETY at each use

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hush_client::{
    BackoffConfig, ClientConfig, ClientError, NewQueueParams, PoolConfig, PoolEvent, RcvMsgBody,
    ServerEvent, SmpClient, SmpClientPool, TcpKeepalive,
};
use hush_proto::address::ProtocolServer;
use hush_proto::encoding::base64url_encode;
use smp_server::server::RelayOptions;
use smp_server::testing::TestRelay;

/// The fds of this process's TCP sockets connected to `peer`.
fn sockets_to(peer: SocketAddr) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let is_socket = std::fs::read_link(e.path())
            .map(|l| l.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false);
        if !is_socket {
            continue;
        }
        // SAFETY: getpeername into a zeroed sockaddr_storage with its size.
        let p = unsafe {
            let mut ss: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            if libc::getpeername(
                fd,
                (&mut ss as *mut libc::sockaddr_storage).cast(),
                &mut len,
            ) != 0
                || ss.ss_family as i32 != libc::AF_INET
            {
                continue;
            }
            let a: &libc::sockaddr_in = &*(&ss as *const libc::sockaddr_storage).cast();
            SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            ))
        };
        if p == peer {
            out.push(fd);
        }
    }
    out
}

fn server_at(relay: &TestRelay, addr: SocketAddr) -> ProtocolServer {
    ProtocolServer::parse(&format!(
        "smp://{}@{}:{}",
        base64url_encode(&relay.fingerprint),
        addr.ip(),
        addr.port()
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_sets_keepalive_on_relay_socket() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start_in(dir.path(), RelayOptions::default())
        .await
        .unwrap();
    let server = server_at(&relay, relay.addr);
    let ka = TcpKeepalive::new(Duration::from_secs(7), Duration::from_secs(3), 5);

    // default pool: no keep-alive (today's behaviour for every other user)
    let (plain, _ev) = SmpClientPool::tls(PoolConfig::default()).unwrap();
    plain.client(&server).await.unwrap();
    let fds = sockets_to(relay.addr);
    assert_eq!(fds.len(), 1, "{fds:?}");
    assert_eq!(TcpKeepalive::read_from(fds[0]).unwrap(), None);
    plain.close().await;

    let (pool, _ev) = SmpClientPool::tls(PoolConfig {
        tcp_keepalive: Some(ka),
        ..Default::default()
    })
    .unwrap();
    pool.client(&server).await.unwrap();
    let fds = sockets_to(relay.addr);
    assert_eq!(fds.len(), 1, "{fds:?}");
    let back = TcpKeepalive::read_from(fds[0])
        .unwrap()
        .expect("SO_KEEPALIVE off");
    assert_eq!(back, ka);
    assert_eq!(back.user_timeout, Some(Duration::from_secs(22)));
    pool.close().await;
}

/// A network namespace with one end of a veth pair (`10.a.b.2`); the other end (`10.a.b.1`)
/// is in ours. Removed on drop.
struct Netns {
    name: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

impl Netns {
    fn create() -> Option<Netns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let pid = std::process::id();
        let name = format!("hushka{pid}");
        let (a, b) = (format!("hka{pid}"), format!("hkb{pid}"));
        let (x, y) = (100 + (pid % 100) as u8, ((pid / 100) % 64 * 4) as u8);
        let host_ip = Ipv4Addr::new(10, x, y, 1);
        let ns_ip = Ipv4Addr::new(10, x, y, 2);
        if !ip(&["netns", "add", &name]) {
            return None;
        }
        let ns = Netns {
            name: name.clone(),
            host_ip,
            ns_ip,
        };
        let ok = ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])
            && ip(&["link", "set", &b, "netns", &name])
            && ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &a])
            && ip(&["link", "set", &a, "up"])
            && ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{ns_ip}/30"),
                "dev",
                &b,
            ])
            && ip(&["-n", &name, "link", "set", &b, "up"])
            && ip(&["-n", &name, "link", "set", "lo", "up"]);
        ok.then_some(ns)
    }

    /// A listening socket created inside the namespace (sockets keep their namespace).
    fn listen(&self) -> std::net::TcpListener {
        let path = format!("/var/run/netns/{}", self.name);
        let addr = SocketAddr::from((self.ns_ip, 0));
        std::thread::spawn(move || {
            let f = std::fs::File::open(path).unwrap();
            // SAFETY: setns on this short-lived thread with a namespace fd we just opened.
            let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            let l = std::net::TcpListener::bind(addr).unwrap();
            l.set_nonblocking(true).unwrap();
            l
        })
        .join()
        .unwrap()
    }

    /// Inside the namespace, nothing can be sent back to us any more (or again).
    fn blackhole(&self, on: bool) {
        let dst = format!("{}/32", self.host_ip);
        let verb = if on { "add" } else { "del" };
        assert!(ip(&["-n", &self.name, "route", verb, "blackhole", &dst]));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // deleting the namespace destroys its veth end and with it the pair
        ip(&["netns", "del", &self.name]);
    }
}

/// Forwards every connection accepted on `listener` to `to` (plain byte copy).
fn forward(listener: std::net::TcpListener, to: SocketAddr) {
    let l = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        while let Ok((mut down, _)) = l.accept().await {
            tokio::spawn(async move {
                if let Ok(mut up) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
            });
        }
    });
}

async fn next_event(events: &mut hush_client::PoolEvents, within: Duration) -> PoolEvent {
    tokio::time::timeout(within, events.recv())
        .await
        .expect("no pool event in time")
        .expect("pool closed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_relay_is_detected_and_subscription_restored() {
    let Some(ns) = Netns::create() else {
        // CI runs as root with iproute2: there the test must run, never skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "silent_relay_is_detected_and_subscription_restored needs root and `ip netns` (CI has both)"
        );
        eprintln!(
            "SKIPPED silent_relay_is_detected_and_subscription_restored: needs root and `ip netns`"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start_in(dir.path(), RelayOptions::default())
        .await
        .unwrap();
    let listener = ns.listen();
    let front = listener.local_addr().unwrap();
    forward(listener, relay.addr);
    let server = server_at(&relay, front);

    // Short knobs: first probe after 1 s of silence, then every 1 s; the user timeout ends
    // the connection 3 s after the last thing heard. PING only after an hour: the pool's own
    // liveness check cannot be what notices.
    let ka = TcpKeepalive {
        idle: Duration::from_secs(1),
        interval: Duration::from_secs(1),
        count: 2,
        user_timeout: Some(Duration::from_secs(3)),
    };
    let (pool, mut events) = SmpClientPool::tls(PoolConfig {
        tcp_keepalive: Some(ka),
        ping_interval: Duration::from_secs(3600),
        connect_timeout: Duration::from_secs(2),
        backoff: BackoffConfig {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.1,
        },
        ..Default::default()
    })
    .unwrap();

    // the queue is made over a direct connection; the pool subscribes through the forwarder
    let direct = server_at(&relay, relay.addr);
    let (c, _ev) = SmpClient::connect(&direct, ClientConfig::default())
        .await
        .unwrap();
    let q = c
        .create_queue(NewQueueParams {
            subscribe: false,
            ..Default::default()
        })
        .await
        .unwrap();
    pool.subscribe(&server, &q.rcv_id, Arc::new(q.rcv_key.clone()))
        .await
        .unwrap();
    assert_eq!(sockets_to(front).len(), 1);
    while !matches!(
        next_event(&mut events, Duration::from_secs(10)).await,
        PoolEvent::Connected { .. }
    ) {}

    // the relay's host "disappears": no FIN, no RST, no answer to anything
    ns.blackhole(true);
    let frozen = Instant::now();
    let reason = match next_event(&mut events, Duration::from_secs(60)).await {
        PoolEvent::Disconnected { reason, .. } => reason,
        e => panic!("unexpected {e:?}"),
    };
    let detected = frozen.elapsed();
    eprintln!("silent relay detected after {detected:?}: {reason}");
    // the kernel ended it (ETIMEDOUT on read), not a PING or command timeout
    assert!(
        matches!(&reason, ClientError::Transport(_)),
        "unexpected reason {reason:?}"
    );
    assert!(
        reason.to_string().contains("timed out"),
        "unexpected reason {reason}"
    );
    // generous "does not hang" bound (the knobs say ≈ 3-4 s)
    assert!(detected < Duration::from_secs(30), "{detected:?}");

    // the path comes back: the pool reconnects by itself and resubscribes
    tokio::time::sleep(Duration::from_secs(1)).await;
    ns.blackhole(false);
    loop {
        match next_event(&mut events, Duration::from_secs(60)).await {
            PoolEvent::Resubscribed {
                recipients, failed, ..
            } => {
                assert_eq!(recipients, 1);
                assert!(failed.is_empty(), "{failed:?}");
                break;
            }
            PoolEvent::ConnectFailed { retry_in, .. } => assert!(retry_in.is_some()),
            PoolEvent::Connected { .. } => {}
            e => panic!("unexpected {e:?}"),
        }
    }
    c.send(&q.snd_id, None, true, b"after the outage")
        .await
        .unwrap();
    let msg = match next_event(&mut events, Duration::from_secs(20)).await {
        PoolEvent::Event {
            event: ServerEvent::Message { rcv_id, msg },
            ..
        } if rcv_id == q.rcv_id => msg,
        e => panic!("unexpected {e:?}"),
    };
    let m = msg.decrypt(&q.rcv_dh_secret).unwrap();
    match &m.body {
        RcvMsgBody::Message { body, .. } => assert_eq!(body.as_slice(), b"after the outage"),
        b => panic!("unexpected {b:?}"),
    }
    pool.close().await;
    c.close().await;
}
