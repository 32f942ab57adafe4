//! An unauthenticated peer against a real ntf-server over TLS (real relay, push-server and
//! apns-sink): `TNEW`/`TRPL` rate limits, expiry of tokens never verified, the tokens-per-device
//! cap, `SNEW` only for verified tokens, subscription and relay caps, the relay destination
//! policy (no connection to a refused address), the handshake timeout and the per-address
//! connection cap.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use apns_sink::FailureMode;
use common::*;
use hush_crypto::Ed25519Secret;
use hush_proto::address::ProtocolServer;
use hush_proto::error::{CommandError, ErrorType};
use hush_proto::ntf::{
    InvalidReason, NtfCommand, NtfResponse, PrivateKeyDer, SmpQueueNtf, TokenStatus,
};
use hush_server_common::{DestinationPolicy, Rate};
use ntf_server::store::SubCaps;
use ntf_server::{Config, PolicyMode};
use tokio::io::AsyncReadExt;

const QUOTA: NtfResponse = NtfResponse::Err(ErrorType::Quota);
const AUTH: NtfResponse = NtfResponse::Err(ErrorType::Auth);
const PROHIBITED: NtfResponse = NtfResponse::Err(ErrorType::Cmd(CommandError::Prohibited));

async fn start(dir: &std::path::Path, store: bool, f: impl FnOnce(&mut Config)) -> (Push, Ntf) {
    let push = push().await;
    let mut cfg = ntf_config(dir, store, PolicyMode::Reference);
    f(&mut cfg);
    let ntf = Ntf::start(cfg, &push).await;
    (push, ntf)
}

/// `TNEW` → `IDTKN` (the token id and push secret are kept in `d`).
async fn tnew_ok(c: &mut NtfClient, d: &mut Device) {
    let (_, r) = tnew(c, d).await;
    let NtfResponse::TknId {
        token_id,
        server_dh_key,
    } = r
    else {
        panic!("TNEW: {r:?}")
    };
    d.token_id = token_id;
    let srv = hush_crypto::X25519Public::from_spki_der(server_dh_key.as_bytes()).unwrap();
    d.dh_secret = Some(d.dh.dh(&srv));
}

async fn tchk(c: &mut NtfClient, d: &Device) -> NtfResponse {
    c.cmd(Some(&d.key), &d.token_id, &NtfCommand::Tchk).await.1
}

/// A device with the same device token as `Device::new(n)` but its own keys.
fn same_device(n: u8) -> Device {
    Device::new(n)
}

/// A relay address on 127.0.0.1:`port` with a random key hash (nothing answers SMP there).
fn fake_server(host: &str, port: u16) -> ProtocolServer {
    let mut kh = [7u8; 32];
    kh[..24].copy_from_slice(&hush_crypto::random_nonce());
    let kh = hush_proto::encoding::base64url_encode(&kh);
    ProtocolServer::parse(&format!("smp://{kh}@{host}:{port}")).unwrap()
}

fn fake_snew(token_id: &[u8], server: &ProtocolServer) -> NtfCommand {
    let k = Ed25519Secret::generate();
    NtfCommand::Snew {
        token_id: token_id.to_vec(),
        queue: SmpQueueNtf {
            server: server.clone(),
            notifier_id: hush_crypto::random_nonce().to_vec(),
        },
        notifier_key: PrivateKeyDer::new(k.to_pkcs8_der().to_vec()).unwrap(),
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_commands_are_rate_limited_per_connection_and_per_server() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (push, ntf) = start(dir.path(), false, |c| {
        c.token_rate_per_connection = Rate::new(0.0001, 3);
        c.token_rate = Rate::new(0.0001, 5);
    })
    .await;
    let m = &ntf.core.metrics;

    // one connection: 3 TNEWs, the 4th is over the connection's limit
    let mut a = ntf.client().await;
    let mut devs: Vec<Device> = (1..=3).map(Device::new).collect();
    for d in devs.iter_mut() {
        tnew_ok(&mut a, d).await;
    }
    let refused = Device::new(4);
    assert_eq!(tnew(&mut a, &refused).await.1, QUOTA);
    assert_eq!(m.token_rate_limited.get(), 1);

    // another connection has its own limit, but the server's (5) is reached after 2 more
    let mut b = ntf.client().await;
    for n in [5, 6] {
        let mut d = Device::new(n);
        tnew_ok(&mut b, &mut d).await;
        devs.push(d);
    }
    let refused2 = Device::new(7);
    assert_eq!(tnew(&mut b, &refused2).await.1, QUOTA);
    // TRPL is counted too
    let mut c = ntf.client().await;
    let d = &devs[0];
    let trpl = NtfCommand::Trpl {
        token: Device::new(8).device_token(),
    };
    assert_eq!(c.cmd(Some(&d.key), &d.token_id, &trpl).await.1, QUOTA);
    assert_eq!(m.token_rate_limited.get(), 3);
    assert!(
        m.render()
            .contains("\nhush_ntf_token_commands_rate_limited 3\n"),
        "{}",
        m.render()
    );

    // accepted TNEWs got their verification push, refused ones none
    for d in &devs {
        push.wait_pushes(d.sink_token(), 1).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for d in [&refused, &refused2, &Device::new(8)] {
        assert!(push.received(d.sink_token()).is_empty());
    }
    assert_eq!(ntf.core.store.counts().tokens, 5);
    ntf.stop().await;
}

/// An NTF client whose TCP connection comes from `from` (another loopback address).
async fn ntf_client_from(from: &str, ntf: &Ntf) -> NtfClient {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(std::net::SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let tcp = sock.connect(ntf.addr).await.unwrap();
    let conn = hush_transport::TransportClient::ntf()
        .unwrap()
        .connect(tcp, &ntf.fingerprint)
        .await
        .unwrap();
    NtfClient { conn }
}

/// More connections from one address buy no more tokens: every connection from an address
/// shares `token_rate_per_ip`, and one address cannot drain the server-wide budget for others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_commands_are_rate_limited_per_address() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (_push, ntf) = start(dir.path(), false, |c| {
        c.token_rate_per_connection = Rate::new(0.0, 0); // no per-connection limit
        c.token_rate = Rate::new(0.0001, 100);
        c.token_rate_per_ip = Rate::new(0.0001, 4);
    })
    .await;
    let mut ok = 0;
    let mut refused = 0;
    for conn in 0..3u8 {
        let mut c = ntf.client().await;
        for i in 0..2u8 {
            let d = Device::new(10 + conn * 2 + i);
            match tnew(&mut c, &d).await.1 {
                r if r == QUOTA => refused += 1,
                NtfResponse::TknId { .. } => ok += 1,
                r => panic!("TNEW: {r:?}"),
            }
        }
    }
    assert_eq!(
        (ok, refused),
        (4, 2),
        "the address's 4, not 3 connections x 2"
    );
    // another address still registers
    let mut b = ntf_client_from("127.0.0.2", &ntf).await;
    let d = Device::new(99);
    assert_ne!(tnew(&mut b, &d).await.1, QUOTA);
    ntf.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_tokens_expire_from_memory_and_store() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (push, ntf) = start(dir.path(), true, |c| {
        c.unverified_token_ttl = Duration::from_secs(3);
        c.cron_sweep = Duration::from_millis(200);
    })
    .await;
    let mut c = ntf.client().await;
    let mut verified = Device::new(1);
    register(&mut c, &push, &mut verified).await;
    let mut pending = Device::new(2);
    tnew_ok(&mut c, &mut pending).await;
    assert!(matches!(tchk(&mut c, &pending).await, NtfResponse::Tkn(_)));

    let deadline = tokio::time::Instant::now() + WAIT;
    while tchk(&mut c, &pending).await != AUTH {
        assert!(
            tokio::time::Instant::now() < deadline,
            "unverified token not expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        tchk(&mut c, &verified).await,
        NtfResponse::Tkn(TokenStatus::Active)
    );
    assert_eq!(ntf.core.metrics.tokens_expired.get(), 1);
    assert_eq!(ntf.core.store.counts().tokens, 1);
    // gone from the file too
    drop(c);
    let cfg = ntf.stop().await;
    let ntf = Ntf::start(cfg, &push).await;
    assert_eq!(ntf.core.store.counts().tokens, 1);
    let mut c = ntf.client().await;
    assert_eq!(tchk(&mut c, &pending).await, AUTH);
    assert_eq!(
        tchk(&mut c, &verified).await,
        NtfResponse::Tkn(TokenStatus::Active)
    );
    ntf.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_per_device_cap_evicts_the_oldest_unverified() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (push, ntf) = start(dir.path(), false, |c| {
        c.tokens_per_device = 2;
        c.token_rate_per_connection = Rate::new(0.0, 1);
    })
    .await;
    let mut c = ntf.client().await;
    // three registrations of one device token with different keys: the first is evicted
    let mut d1 = same_device(9);
    let mut d2 = same_device(9);
    let mut d3 = same_device(9);
    tnew_ok(&mut c, &mut d1).await;
    tnew_ok(&mut c, &mut d2).await;
    assert_eq!(ntf.core.metrics.tokens_evicted.get(), 0);
    tnew_ok(&mut c, &mut d3).await;
    assert_eq!(tchk(&mut c, &d1).await, AUTH);
    assert!(matches!(tchk(&mut c, &d2).await, NtfResponse::Tkn(_)));
    assert!(matches!(tchk(&mut c, &d3).await, NtfResponse::Tkn(_)));
    assert_eq!(ntf.core.metrics.tokens_evicted.get(), 1);
    assert_eq!(ntf.core.store.counts().tokens, 2);

    // two verified tokens on one device (TRPL moves a verified token there): no token can be
    // evicted, a further TNEW is refused
    let mut a = Device::new(10);
    register(&mut c, &push, &mut a).await;
    let mut b = Device::new(11);
    register(&mut c, &push, &mut b).await;
    let (_, r) = c
        .cmd(
            Some(&b.key),
            &b.token_id,
            &NtfCommand::Trpl {
                token: a.device_token(),
            },
        )
        .await;
    assert_eq!(r, NtfResponse::Ok);
    let mut e = same_device(10);
    assert_eq!(tnew(&mut c, &e).await.1, QUOTA);
    assert_eq!(ntf.core.metrics.cap_count("tokens_per_device"), 1);
    // once one of them is deleted there is room again
    let (_, r) = c.cmd(Some(&b.key), &b.token_id, &NtfCommand::Tdel).await;
    assert_eq!(r, NtfResponse::Ok);
    tnew_ok(&mut c, &mut e).await;
    ntf.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snew_needs_a_token_that_was_verified() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(relay_config(dir.path())).await;
    let (push, ntf) = start(dir.path(), false, |_| {}).await;
    let smp = relay.client().await;
    let mut c = ntf.client().await;

    // the verification push is rejected (BadDeviceToken): INVALID,BAD, never verified
    let mut never = Device::new(20);
    push.sink
        .set_failure(never.sink_token(), FailureMode::BadDeviceToken, None);
    tnew_ok(&mut c, &mut never).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while tchk(&mut c, &never).await
        != NtfResponse::Tkn(TokenStatus::Invalid(Some(InvalidReason::BadToken)))
    {
        assert!(tokio::time::Instant::now() < deadline, "token not INVALID");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let q = Queue::new(&smp, &relay.server).await;
    let (_, r) = c.cmd(Some(&never.key), b"", &q.snew(&never.token_id)).await;
    assert_eq!(r, AUTH);
    assert_eq!(ntf.core.store.counts().subscriptions, 0);

    // an ACTIVE token subscribes
    let mut d = Device::new(21);
    register(&mut c, &push, &mut d).await;
    let q1 = Queue::new(&smp, &relay.server).await;
    subscribe(&mut c, &d, &q1).await;

    // ... and still may once INVALID after having been ACTIVE (reference behaviour)
    push.sink
        .set_failure(d.sink_token(), FailureMode::Unregistered, None);
    send(&smp, &q1, b"hello").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !matches!(
        tchk(&mut c, &d).await,
        NtfResponse::Tkn(TokenStatus::Invalid(_))
    ) {
        assert!(tokio::time::Instant::now() < deadline, "token not INVALID");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let q2 = Queue::new(&smp, &relay.server).await;
    let (_, r) = c.cmd(Some(&d.key), b"", &q2.snew(&d.token_id)).await;
    assert!(matches!(r, NtfResponse::SubId { .. }), "{r:?}");
    ntf.stop().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_and_relay_caps() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(relay_config(dir.path())).await;
    let (push, ntf) = start(dir.path(), false, |c| {
        c.sub_caps = SubCaps {
            per_token: 3,
            relays_per_token: 1,
            relays: 2,
        };
    })
    .await;
    let smp = relay.client().await;
    let mut c = ntf.client().await;
    let m = &ntf.core.metrics;
    let mut a = Device::new(30);
    register(&mut c, &push, &mut a).await;
    for _ in 0..3 {
        let q = Queue::new(&smp, &relay.server).await;
        subscribe(&mut c, &a, &q).await;
    }
    let q = Queue::new(&smp, &relay.server).await;
    assert_eq!(
        c.cmd(Some(&a.key), b"", &q.snew(&a.token_id)).await.1,
        QUOTA
    );
    assert_eq!(m.cap_count("subscriptions_per_token"), 1);

    let f1 = fake_server("127.0.0.1", closed_port());
    let f2 = fake_server("127.0.0.1", closed_port());
    // a second relay for token a
    let mut a2 = Device::new(31);
    register(&mut c, &push, &mut a2).await;
    let q = Queue::new(&smp, &relay.server).await;
    subscribe(&mut c, &a2, &q).await;
    let (_, r) = c
        .cmd(Some(&a2.key), b"", &fake_snew(&a2.token_id, &f1))
        .await;
    assert_eq!(r, QUOTA);
    assert_eq!(m.cap_count("relays_per_token"), 1);
    // relays in total: the relay and f1 fit, f2 does not
    let mut b = Device::new(32);
    register(&mut c, &push, &mut b).await;
    let (_, r) = c.cmd(Some(&b.key), b"", &fake_snew(&b.token_id, &f1)).await;
    assert!(matches!(r, NtfResponse::SubId { .. }), "{r:?}");
    let mut d = Device::new(33);
    register(&mut c, &push, &mut d).await;
    let (_, r) = c.cmd(Some(&d.key), b"", &fake_snew(&d.token_id, &f2)).await;
    assert_eq!(r, QUOTA);
    assert_eq!(m.cap_count("relays"), 1);
    assert!(
        m.render()
            .contains("hush_ntf_caps_refused{cap=\"relays\"} 1")
    );
    // deleting b's subscription frees f1's place
    let (_, r) = c.cmd(Some(&b.key), &b.token_id, &NtfCommand::Tdel).await;
    assert_eq!(r, NtfResponse::Ok);
    let (_, r) = c.cmd(Some(&d.key), b"", &fake_snew(&d.token_id, &f2)).await;
    assert!(matches!(r, NtfResponse::SubId { .. }), "{r:?}");
    ntf.stop().await;
    relay.stop().await;
}

/// Accepts on `l` for `d`; true if anything connected.
async fn connected_within(l: &tokio::net::TcpListener, d: Duration) -> bool {
    tokio::time::timeout(d, l.accept()).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_and_private_relays_refused_under_public_policy() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (push, ntf) = start(dir.path(), true, |c| {
        c.relay_destinations = DestinationPolicy::Public
    })
    .await;
    let mut c = ntf.client().await;
    let mut d = Device::new(40);
    register(&mut c, &push, &mut d).await;
    for host in ["127.0.0.1", "localhost", "10.1.2.3", "169.254.169.254"] {
        let (_, r) = c
            .cmd(
                Some(&d.key),
                b"",
                &fake_snew(&d.token_id, &fake_server(host, port)),
            )
            .await;
        assert_eq!(r, PROHIBITED, "{host}");
    }
    assert_eq!(ntf.core.metrics.destinations_refused.get(), 4);
    assert_eq!(ntf.core.store.counts().subscriptions, 0);
    assert!(!connected_within(&listener, Duration::from_millis(1500)).await);
    let cfg = ntf.stop().await;

    // allowed under `loopback`: the server connects ...
    let mut cfg2 = cfg.clone();
    cfg2.relay_destinations = DestinationPolicy::Loopback;
    let ntf = Ntf::start(cfg2, &push).await;
    let mut c = ntf.client().await;
    let (_, r) = c
        .cmd(
            Some(&d.key),
            b"",
            &fake_snew(&d.token_id, &fake_server("127.0.0.1", port)),
        )
        .await;
    assert!(matches!(r, NtfResponse::SubId { .. }), "{r:?}");
    assert!(connected_within(&listener, WAIT).await);
    drop(c);
    ntf.stop().await;
    // connection attempts made before the stop
    while connected_within(&listener, Duration::from_millis(300)).await {}
    // ... but the stored subscription is not connected to once the policy is public again
    // (every connection attempt checks the address)
    let ntf = Ntf::start(cfg, &push).await;
    assert_eq!(ntf.core.store.counts().subscriptions, 1);
    assert!(!connected_within(&listener, Duration::from_millis(2000)).await);
    ntf.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_timeout_closes_a_stalled_client() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (_push, ntf) = start(dir.path(), false, |c| {
        c.handshake_timeout = Duration::from_millis(500)
    })
    .await;
    // TCP connected, no TLS ClientHello: closed after the handshake timeout (the transport's
    // own TLS timeout is 60 s)
    let mut s = tokio::net::TcpStream::connect(ntf.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("stalled connection not closed");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while ntf.core.metrics.handshake_timeouts.get() != 1 {
        assert!(tokio::time::Instant::now() < deadline, "not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // TLS completed, the server's hello read, no client hello: closed as well (the
    // transport's own hello timeout is 120 s)
    let addr = ntf.addr;
    let eof = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
        b.set_verify(openssl::ssl::SslVerifyMode::NONE);
        b.set_min_proto_version(Some(openssl::ssl::SslVersion::TLS1_3))
            .unwrap();
        b.set_alpn_protos(b"\x05ntf/1").unwrap();
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut cfg = b.build().configure().unwrap();
        cfg.set_verify_hostname(false);
        let mut tls = cfg.connect("localhost", tcp).unwrap();
        let mut hello = [0u8; 512];
        tls.read_exact(&mut hello).unwrap();
        let mut more = [0u8; 64];
        let started = std::time::Instant::now();
        let r = tls.read(&mut more);
        (matches!(r, Ok(0) | Err(_)), started.elapsed())
    })
    .await
    .unwrap();
    assert!(eof.0, "stalled hello not closed");
    assert!(
        eof.1 < Duration::from_secs(9),
        "closed by the read timeout only"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while ntf.core.metrics.handshake_timeouts.get() != 2 {
        assert!(tokio::time::Instant::now() < deadline, "not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // a client that completes the handshake is served
    let mut c = ntf.client().await;
    let (_, r) = c.cmd(None, b"", &NtfCommand::Ping).await;
    assert_eq!(r, NtfResponse::Pong);
    ntf.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_capped() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (_push, ntf) = start(dir.path(), false, |c| c.max_connections_per_ip = 2).await;
    let addr: SocketAddr = ntf.addr;
    let c1 = ntf.client().await;
    let _c2 = ntf.client().await;
    // the third from 127.0.0.1 is closed at once
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("over-the-cap connection not closed");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    assert_eq!(
        ntf.core
            .metrics
            .connections_refused("max_connections_per_ip"),
        1
    );
    // closing one frees its place
    drop(c1);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let conn = hush_transport::TransportClient::ntf()
            .unwrap()
            .connect_addr(addr, &ntf.fingerprint)
            .await;
        if conn.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no place freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ntf.stop().await;
}
