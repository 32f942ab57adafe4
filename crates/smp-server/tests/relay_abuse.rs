//! What an unauthenticated peer can make the relay do, and the limits on it (hush additions; the
//! reference has none of them): the handshake time limit, the per-address connection cap and its
//! throttled warn line, the proxy's destination policy and link caps, the per-connection budget
//! of queue creations, and constant-time password checks that still accept the right password.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use hush_crypto::X25519Secret;
use hush_proto::address::{BasicAuth, ProtocolServer};
use hush_proto::error::{BrokerErrorType, ErrorType, ProxyError};
use hush_proto::smp::{BrokerMsg, Command};
use hush_transport::TransportClient;
use prometheus_client::metrics::family::Family;
use smp_server::config::DestinationPolicy;
use smp_server::metrics::{Label, RefCounter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Bound for "the relay closed the connection" (the relay's limit in these tests is 1 s; without
/// the limit it would be 60 s or more). Only a "does not hang" bound, not a timing assertion.
const CLOSED_WITHIN: Duration = Duration::from_secs(10);

fn network_error() -> ErrorType {
    ErrorType::Proxy(ProxyError::Broker(BrokerErrorType::Network))
}

/// Reads until the peer closes the connection (EOF or reset); panics if that takes longer than
/// [`CLOSED_WITHIN`]. Returns the bytes read before.
async fn wait_closed<R: AsyncReadExt + Unpin>(r: &mut R) -> usize {
    let mut total = 0;
    let mut buf = vec![0u8; 32 * 1024];
    let closed = tokio::time::timeout(CLOSED_WITHIN, async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the relay did not close the connection");
    total
}

/// A TCP connection to `to` from the local address `from`.
async fn tcp_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// A full SMP connection to `server` from the local address `from`.
async fn smp_from(from: &str, server: &TestServer) -> Result<TestClient, String> {
    let tcp = tcp_from(from, server.addr).await;
    let conn = TransportClient::smp()
        .unwrap()
        .connect(tcp, &server.key_hash)
        .await
        .map_err(|e| e.to_string())?;
    Ok(TestClient::from_conn(conn))
}

fn smp_server_at(port: u16, host: &str, key_hash: &[u8]) -> ProtocolServer {
    ProtocolServer::smp(vec![host.parse().unwrap()], Some(port), key_hash.to_vec()).unwrap()
}

fn prxy(server: ProtocolServer, basic_auth: Option<&str>) -> Command {
    Command::Prxy {
        server,
        basic_auth: basic_auth.map(|p| BasicAuth::new(p).unwrap()),
    }
}

fn counter(f: &Family<Label, RefCounter>, t: &'static str) -> u64 {
    f.get_or_create(&[("type", t)]).get()
}

// ---------------------------------------------------------------------------------------------
// 1. Time limits before authentication, per-address cap, throttled warn line

#[tokio::test]
async fn stalled_tls_handshake_is_closed_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(&init_dirs(dir.path()));
    cfg.transport.handshake_timeout = Duration::from_secs(1);
    let server = TestServer::start(cfg).await;
    // The start of a ClientHello record (announcing 200 bytes), then nothing.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00])
        .await
        .unwrap();
    let read = wait_closed(&mut tcp).await;
    assert_eq!(read, 0, "nothing is sent to a peer that never finished TLS");
    assert_eq!(server.metrics().handshake_timeouts.get(), 1);
    // A well-behaved client is still served.
    let mut c = server.connect().await;
    assert_eq!(c.cmd(None, &[], Command::Ping).await, BrokerMsg::Pong);
    server.stop().await;
}

#[tokio::test]
async fn client_that_never_sends_the_hello_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(&init_dirs(dir.path()));
    cfg.transport.handshake_timeout = Duration::from_secs(1);
    let server = TestServer::start(cfg).await;
    // Complete TLS (with the relay's pinned identity), read the relay's hello, never answer.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut tls = hush_transport::tls::TlsClient::new(None)
        .unwrap()
        .connect(tcp, hush_transport::tls::SMP_CLIENT_ALPN, &server.key_hash)
        .await
        .unwrap();
    let read = wait_closed(&mut tls).await;
    assert_eq!(read, 16384, "the relay sent its hello block, then closed");
    assert_eq!(server.metrics().handshake_timeouts.get(), 1);
    server.stop().await;
}

#[tokio::test]
async fn per_ip_cap_refuses_the_next_connection_while_another_address_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(&init_dirs(dir.path()));
    cfg.limits.max_connections_per_ip = 2;
    let server = TestServer::start(cfg).await;
    let mut a1 = smp_from("127.0.0.1", &server).await.unwrap();
    let a2 = smp_from("127.0.0.1", &server).await.unwrap();
    // The third connection from 127.0.0.1 is closed at accept (the handshake fails at once).
    let third = tokio::time::timeout(CLOSED_WITHIN, smp_from("127.0.0.1", &server))
        .await
        .expect("refused promptly");
    assert!(
        third.is_err(),
        "a third connection from one address is refused"
    );
    // Another address is still served.
    let mut b = smp_from("127.0.0.2", &server).await.unwrap();
    assert_eq!(b.cmd(None, &[], Command::Ping).await, BrokerMsg::Pong);
    assert_eq!(a1.cmd(None, &[], Command::Ping).await, BrokerMsg::Pong);
    let refused = &server.metrics().connections_refused;
    assert_eq!(counter(refused, "per_ip"), 1);
    assert_eq!(counter(refused, "max_connections"), 0);
    // A closed connection gives its place back.
    drop(a2);
    let mut again = None;
    for _ in 0..50 {
        if let Ok(c) = smp_from("127.0.0.1", &server).await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut again = again.expect("a freed place can be used again");
    assert_eq!(again.cmd(None, &[], Command::Ping).await, BrokerMsg::Pong);
    server.stop().await;
}

/// Log lines of this test binary (a global subscriber: the relay logs from its worker threads).
fn captured_logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        struct W(&'static Mutex<Vec<u8>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let _ = tracing_subscriber::fmt()
            .with_writer(move || W(logs))
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .try_init();
        logs
    })
}

#[tokio::test]
async fn connection_limit_warns_once_while_many_are_refused() {
    let logs = captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(&init_dirs(dir.path()));
    cfg.limits.max_connections = 1;
    let server = TestServer::start(cfg).await;
    let mut held = server.connect().await;
    const REFUSED: u64 = 20;
    for _ in 0..REFUSED {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        assert_eq!(wait_closed(&mut tcp).await, 0);
    }
    assert_eq!(held.cmd(None, &[], Command::Ping).await, BrokerMsg::Pong);
    assert_eq!(
        counter(&server.metrics().connections_refused, "max_connections"),
        REFUSED
    );
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    let port = format!("port={}", server.addr.port());
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("connection limit reached") && l.contains(&port))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one warn line for {REFUSED} refusals: {lines:?}"
    );
    assert!(lines[0].contains("WARN"), "{}", lines[0]);
    assert!(
        !lines[0].contains("127.0.0.1"),
        "no peer address in the line: {}",
        lines[0]
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 2. PRXY without a password is no scanner of private networks

/// A plain TCP listener that counts the connections it gets.
async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (addr, n)
}

#[tokio::test]
async fn prxy_to_loopback_is_refused_under_the_public_policy() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(&init_dirs(dir.path()));
    cfg.proxy.destinations = DestinationPolicy::Public;
    let a = TestServer::start(cfg).await;
    let (target, accepted) = counting_listener().await;
    let mut c = a.connect().await;
    for host in ["127.0.0.1", "localhost", "127.0.0.2"] {
        let m = c
            .cmd(
                None,
                &[],
                prxy(smp_server_at(target.port(), host, &a.key_hash), None),
            )
            .await;
        assert_err(&m, network_error());
    }
    // Private and link-local literals too (refused before any connection attempt).
    for host in ["10.0.0.1", "192.168.1.1", "169.254.169.254"] {
        let m = c
            .cmd(
                None,
                &[],
                prxy(smp_server_at(5223, host, &a.key_hash), None),
            )
            .await;
        assert_err(&m, network_error());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "no connection was made to the refused destination"
    );
    assert_eq!(counter(&a.metrics().proxy_refused, "destination"), 6);
    assert_eq!(a.metrics().proxy_links.get(), 0);
    a.stop().await;

    // The same request under `loopback` does connect (the listener is no SMP relay, so it fails
    // after connecting): the refusal above is the policy's.
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(&init_dirs(dir.path()));
    assert_eq!(cfg.proxy.destinations, DestinationPolicy::Loopback);
    let a = TestServer::start(cfg).await;
    let mut c = a.connect().await;
    let m = c
        .cmd(
            None,
            &[],
            prxy(smp_server_at(target.port(), "127.0.0.1", &a.key_hash), None),
        )
        .await;
    assert_err(&m, network_error());
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(counter(&a.metrics().proxy_refused, "destination"), 0);
    a.stop().await;
}

async fn expect_pkey(c: &mut TestClient, b: &TestServer) {
    let m = c
        .cmd(
            None,
            &[],
            prxy(smp_server_at(b.addr.port(), "127.0.0.1", &b.key_hash), None),
        )
        .await;
    assert!(
        matches!(m, BrokerMsg::PKey { .. }),
        "expected PKEY, got {m:?}"
    );
}

async fn expect_refused(c: &mut TestClient, b: &TestServer) {
    let m = c
        .cmd(
            None,
            &[],
            prxy(smp_server_at(b.addr.port(), "127.0.0.1", &b.key_hash), None),
        )
        .await;
    assert_err(&m, network_error());
}

#[tokio::test]
async fn proxy_links_are_capped_and_idle_ones_closed() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let b = TestServer::start(test_config(&init_dirs(dirs[1].path()))).await;
    let d = TestServer::start(test_config(&init_dirs(dirs[2].path()))).await;
    let mut cfg = test_config(&init_dirs(dirs[0].path()));
    cfg.proxy.max_relay_links = 1;
    cfg.proxy.idle_timeout = Duration::from_secs(1);
    let a = TestServer::start(cfg).await;
    let mut c1 = a.connect().await;
    let mut c2 = a.connect().await;
    expect_pkey(&mut c1, &b).await;
    // the one link is shared by every client
    expect_pkey(&mut c2, &b).await;
    assert_eq!(a.metrics().proxy_links.get(), 1);
    // a second destination needs a second link: refused
    expect_refused(&mut c2, &d).await;
    assert_eq!(counter(&a.metrics().proxy_refused, "links"), 1);
    // unused for idle_timeout, the link is closed and its place is free again
    let mut closed = false;
    for _ in 0..100 {
        if a.metrics().proxy_links.get() == 0 {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "the idle proxy link was not closed");
    expect_pkey(&mut c2, &d).await;
    a.stop().await;
    b.stop().await;
    d.stop().await;
}

#[tokio::test]
async fn proxy_links_per_client_connection_are_capped() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let b = TestServer::start(test_config(&init_dirs(dirs[1].path()))).await;
    let d = TestServer::start(test_config(&init_dirs(dirs[2].path()))).await;
    let mut cfg = test_config(&init_dirs(dirs[0].path()));
    cfg.proxy.max_links_per_client = 1;
    let a = TestServer::start(cfg).await;
    let mut c1 = a.connect().await;
    expect_pkey(&mut c1, &b).await;
    expect_pkey(&mut c1, &b).await;
    expect_refused(&mut c1, &d).await;
    assert_eq!(counter(&a.metrics().proxy_refused, "client_links"), 1);
    // another connection has its own budget
    let mut c2 = a.connect().await;
    expect_pkey(&mut c2, &d).await;
    a.stop().await;
    b.stop().await;
    d.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Queue creations without a password; constant-time password checks

#[tokio::test]
async fn new_flood_gets_quota_while_another_connection_still_creates_queues() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(&init_dirs(dir.path()));
    cfg.store.enable = false;
    cfg.limits.new_queues_per_minute = 5;
    let server = TestServer::start(cfg).await;
    let mut c1 = server.connect().await;
    for _ in 0..5 {
        new_queue(&mut c1).await;
    }
    for _ in 0..3 {
        let key = AuthKey::ed25519();
        let cmd = new_request(&key, &X25519Secret::generate(), NewOpts::default(), None);
        let corr = random_corr();
        c1.send(Some(&key), &corr, &[], &cmd).await;
        assert_err(&c1.response_to(&corr).await, ErrorType::Quota);
    }
    assert_eq!(server.metrics().queues_new_refused.get(), 3);
    // the refused connection is still served otherwise
    assert_eq!(c1.cmd(None, &[], Command::Ping).await, BrokerMsg::Pong);
    // another connection has its own budget
    let mut c2 = server.connect().await;
    new_queue(&mut c2).await;
    server.stop().await;
}

/// `NEW` without a password, signed by a fresh key; the response.
async fn try_new(c: &mut TestClient) -> BrokerMsg {
    let key = AuthKey::ed25519();
    let cmd = new_request(&key, &X25519Secret::generate(), NewOpts::default(), None);
    let corr = random_corr();
    c.send(Some(&key), &corr, &[], &cmd).await;
    c.response_to(&corr).await
}

/// Reconnecting does not renew the budget: all connections from one address share
/// `new_queues_per_minute_per_ip`, while another address keeps its own.
#[tokio::test]
async fn new_flood_over_reconnects_is_bounded_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(&init_dirs(dir.path()));
    cfg.store.enable = false;
    cfg.limits.new_queues_per_minute = 5;
    cfg.limits.new_queues_per_minute_per_ip = 8;
    let server = TestServer::start(cfg).await;
    let mut created = 0;
    let mut refused = 0;
    // An attacker that reconnects after each per-connection budget.
    for _ in 0..4 {
        let mut c = server.connect().await;
        for _ in 0..5 {
            match try_new(&mut c).await {
                BrokerMsg::Ids(_) => created += 1,
                m => {
                    assert_err(&m, ErrorType::Quota);
                    refused += 1;
                }
            }
        }
    }
    assert_eq!(created, 8, "the address's budget, not 4 connections x 5");
    assert_eq!(refused, 12);
    assert_eq!(server.metrics().queues_new_refused.get(), 12);
    // Another address is served.
    let mut b = smp_from("127.0.0.2", &server).await.unwrap();
    assert!(matches!(try_new(&mut b).await, BrokerMsg::Ids(_)));
    server.stop().await;
}

/// `NEW` with `basic_auth`, signed by a fresh key; the response.
async fn new_with_password(c: &mut TestClient, password: Option<&str>) -> BrokerMsg {
    let key = AuthKey::ed25519();
    let mut cmd = new_request(&key, &X25519Secret::generate(), NewOpts::default(), None);
    if let Command::New(r) = &mut cmd {
        r.basic_auth = password.map(|p| BasicAuth::new(p).unwrap());
    }
    let corr = random_corr();
    c.send(Some(&key), &corr, &[], &cmd).await;
    c.response_to(&corr).await
}

#[tokio::test]
async fn passwords_accept_the_right_one_and_refuse_wrong_ones_of_any_length() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let b = TestServer::start(test_config(&init_dirs(dirs[1].path()))).await;
    let mut cfg = test_config(&init_dirs(dirs[0].path()));
    cfg.store.enable = false;
    cfg.auth.create_password = Some(smp_server::config::BasicAuth::new("s3cret-pw").unwrap());
    // With a password the per-connection budget does not apply.
    cfg.limits.new_queues_per_minute = 1;
    let a = TestServer::start(cfg).await;
    let mut c = a.connect().await;
    let wrong = [
        "s3cret-pX", // same length, last byte differs
        "X3cret-pw", // same length, first byte differs
        "s3cret-p",  // a prefix
        "s3cret-pw1",
        "s",
    ];
    for w in wrong {
        assert_err(&new_with_password(&mut c, Some(w)).await, ErrorType::Auth);
    }
    assert_err(&new_with_password(&mut c, None).await, ErrorType::Auth);
    for _ in 0..3 {
        let m = new_with_password(&mut c, Some("s3cret-pw")).await;
        assert!(matches!(m, BrokerMsg::Ids(_)), "{m:?}");
    }
    let to_b = || smp_server_at(b.addr.port(), "127.0.0.1", &b.key_hash);
    for w in wrong {
        let m = c.cmd(None, &[], prxy(to_b(), Some(w))).await;
        assert_err(&m, ErrorType::Proxy(ProxyError::BasicAuth));
    }
    let m = c.cmd(None, &[], prxy(to_b(), None)).await;
    assert_err(&m, ErrorType::Proxy(ProxyError::BasicAuth));
    let m = c.cmd(None, &[], prxy(to_b(), Some("s3cret-pw"))).await;
    assert!(matches!(m, BrokerMsg::PKey { .. }), "{m:?}");
    a.stop().await;
    b.stop().await;
}
