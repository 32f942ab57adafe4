//! The push-server under abuse, over real TLS: anonymous registration rate limits and cap, the
//! Web Push destination policy (registration and delivery), the pre-authentication time limit,
//! connection slots reserved for authenticated ntf-servers and the per-address connection cap.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use hush_server_common::Rate;
use push_server::cli::Running;
use push_server::config::Config;
use push_server::job::WebPushSubscription;
use push_server::jwt::Es256Key;
use push_server::{
    ApnsEnv, DestinationPolicy, DeviceAddress, FeedbackReason, GatewayError, InvalidReason,
    PushGateway, PushTarget, SubmitOutcome,
};
use tokio::io::AsyncReadExt as _;

struct Server {
    running: Running,
    fp: [u8; 32],
    cred: String,
    dir: tempfile::TempDir,
    env: Env,
}

impl Server {
    fn anonymous(&self) -> push_server::net::RemoteGateway {
        remote(self.running.addr, self.fp, None)
    }
    fn ntf(&self) -> push_server::net::RemoteGateway {
        remote(self.running.addr, self.fp, Some(self.cred.clone()))
    }
    fn metrics(&self) -> String {
        self.running.service.metrics().encode()
    }
    fn refused(&self, reason: &str) -> u64 {
        let key = format!("push_refused_total{{reason=\"{reason}\"}} ");
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .map_or(0, |v| v.trim().parse().unwrap())
    }
}

/// A push-server (APNs test endpoint = the sink) with `[LIMITS]` etc. changed by `f`.
async fn start(f: impl FnOnce(&mut Config)) -> Server {
    let env = sink().await;
    let (dir, fp, cred) = push_server_dir(&env, 50);
    let (mut cfg, warnings) = Config::load(dir.path()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    f(&mut cfg);
    let running = push_server::cli::start(&cfg).await.unwrap();
    Server {
        running,
        fp,
        cred,
        dir,
        env,
    }
}

fn apns(n: u8) -> DeviceAddress {
    DeviceAddress::Apns {
        env: ApnsEnv::Test,
        token: token(n),
    }
}

fn webpush(endpoint: &str) -> DeviceAddress {
    DeviceAddress::WebPush(WebPushSubscription {
        endpoint: endpoint.into(),
        p256dh: Es256Key::generate().unwrap().public_uncompressed().unwrap(),
        auth: vec![7; 16],
    })
}

/// An endpoint too long for an inline handle (stored as a registration), on a public address.
fn long_endpoint(n: usize) -> String {
    format!("https://9.9.9.9/wpush/v2/{n}-{}", "gAAAAA".repeat(60))
}

#[tokio::test]
async fn register_flood_without_credential_is_rate_limited_while_ntf_server_works() {
    let s = start(|c| {
        c.limits.register_rate = Rate::new(1000.0, 1000);
        c.limits.register_rate_per_ip = Rate::new(0.001, 5);
    })
    .await;
    let device = s.anonymous();
    let ntf = s.ntf();
    let mut ok = 0;
    let mut limited = 0;
    for i in 0..30u8 {
        // The flood (same peer address, no credential).
        match device.register(apns(i)).await {
            Ok(_) => ok += 1,
            Err(GatewayError::RateLimited(m)) => {
                assert!(m.contains("from this address"), "{m}");
                limited += 1;
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
        // Meanwhile the authenticated ntf-server registers and submits, every time.
        let h = ntf
            .register(apns(100 + i))
            .await
            .expect("ntf-server register");
        let mut j = check_job(&token(100 + i));
        j.target = PushTarget::Handle(h);
        assert_eq!(ntf.submit(j).await.unwrap(), SubmitOutcome::Queued);
    }
    assert_eq!(ok, 5, "the per-address burst");
    assert_eq!(limited, 25);
    assert!(s.env.sink.wait_for(30, Duration::from_secs(20)).await);
    assert_eq!(s.refused("register_rate_per_ip"), 25);
    // The rate-limited device connection stays usable (a limit is not a protocol error).
    device.ping().await.unwrap();
    s.running.stop().await;
}

#[tokio::test]
async fn global_register_rate_limits_all_anonymous_peers_together() {
    let s = start(|c| {
        c.limits.register_rate = Rate::new(0.001, 3);
        c.limits.register_rate_per_ip = Rate::new(0.0, 1);
    })
    .await;
    let a = s.anonymous();
    let b = s.anonymous();
    for i in 0..3u8 {
        let gw = if i % 2 == 0 { &a } else { &b };
        gw.register(apns(i)).await.unwrap();
    }
    for gw in [&a, &b] {
        match gw.register(apns(9)).await {
            Err(GatewayError::RateLimited(m)) => assert!(m.contains("too many"), "{m}"),
            other => panic!("expected rate_limited, got {other:?}"),
        }
    }
    // Authenticated registrations are not counted against it.
    s.ntf().register(apns(10)).await.unwrap();
    assert_eq!(s.refused("register_rate"), 2);
    s.running.stop().await;
}

#[tokio::test]
async fn anonymous_registrations_are_capped_and_the_cap_survives_a_restart() {
    let s = start(|c| c.service.max_anonymous_registrations = 3).await;
    let device = s.anonymous();
    for i in 0..3 {
        device.register(webpush(&long_endpoint(i))).await.unwrap();
    }
    match device.register(webpush(&long_endpoint(3))).await {
        Err(GatewayError::Capacity(m)) => {
            assert!(m.contains("max_anonymous_registrations"), "{m}")
        }
        other => panic!("expected capacity, got {other:?}"),
    }
    // Inline handles store nothing: still issued. Authenticated registrations are not capped.
    device.register(apns(1)).await.unwrap();
    s.ntf().register(webpush(&long_endpoint(4))).await.unwrap();
    assert_eq!(s.refused("anonymous_cap"), 1);
    assert!(
        s.metrics().contains("push_anonymous_registrations 3"),
        "{}",
        s.metrics()
    );
    // The count is in the outbox: after a restart the cap still holds.
    let Server {
        running, dir, env, ..
    } = s;
    running.stop().await;
    let (cfg, _) = Config::load(dir.path()).unwrap();
    let mut cfg = cfg;
    cfg.service.max_anonymous_registrations = 3;
    let running = push_server::cli::start(&cfg).await.unwrap();
    let fp = push_server::net::parse_fingerprint(
        &std::fs::read_to_string(dir.path().join("fingerprint")).unwrap(),
    )
    .unwrap();
    let device = remote(running.addr, fp, None);
    assert!(matches!(
        device.register(webpush(&long_endpoint(5))).await,
        Err(GatewayError::Capacity(_))
    ));
    running.stop().await;
    drop(env);
}

fn refused_text(r: Result<push_server::PushHandle, GatewayError>) -> String {
    match r {
        Err(GatewayError::DestinationRefused(m)) => m,
        other => panic!("expected destination_refused, got {other:?}"),
    }
}

#[tokio::test]
async fn webpush_endpoints_outside_the_destination_policy_are_refused_at_registration() {
    let s = start(|_| {}).await;
    let device = s.anonymous();
    let m = refused_text(device.register(webpush("https://127.0.0.1/x")).await);
    assert!(m.contains("loopback") && !m.contains("127.0.0.1"), "{m}");
    let m = refused_text(device.register(webpush("https://10.1.2.3/x")).await);
    assert!(m.contains("private") && !m.contains("10.1.2.3"), "{m}");
    let m = refused_text(device.register(webpush("https://9.9.9.9:8443/x")).await);
    assert!(
        m.contains("port 8443") && m.contains("allow_any_port"),
        "{m}"
    );
    // A name is checked on what it resolves to ("localhost" → loopback only).
    let m = refused_text(device.register(webpush("https://localhost/x")).await);
    assert!(m.contains("loopback") && !m.contains("localhost"), "{m}");
    // Authenticated registrations are checked too.
    refused_text(s.ntf().register(webpush("https://10.1.2.3/x")).await);
    // A public address on 443 is fine.
    device.register(webpush("https://9.9.9.9/x")).await.unwrap();
    assert_eq!(s.refused("destination"), 5);
    s.running.stop().await;

    // Allowed when configured.
    let s = start(|c| {
        c.webpush.endpoints.destinations = DestinationPolicy::Private;
        c.webpush.endpoints.allow_any_port = true;
    })
    .await;
    let device = s.anonymous();
    for e in [
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://9.9.9.9:8443/x",
        "https://localhost:8443/x",
    ] {
        device.register(webpush(e)).await.unwrap();
    }
    s.running.stop().await;
}

/// A TCP listener that counts the connections it gets (and closes them).
async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            n2.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (addr, n)
}

fn webpush_job(endpoint: &str) -> push_server::PushJob {
    let mut j = check_job(&token(1));
    j.target = PushTarget::Device(webpush(endpoint));
    j.payload = br#"{"checkMessages":true}"#.to_vec();
    j
}

#[tokio::test]
async fn webpush_delivery_connects_only_to_allowed_addresses() {
    let (addr, accepted) = counting_listener().await;
    let enable = |c: &mut Config| {
        c.webpush.enable = true;
        c.webpush.subject = "mailto:ops@example.org".into();
        c.webpush.endpoints.allow_any_port = true;
    };
    // Public only: a job naming a loopback endpoint (as an IP or as a name) is never connected
    // to; the ntf-server hears the token is invalid.
    let s = start(enable).await;
    let ntf = s.ntf();
    let j1 = webpush_job(&format!("https://127.0.0.1:{}/x", addr.port()));
    let j2 = webpush_job(&format!("https://localhost:{}/x", addr.port()));
    ntf.submit(j1.clone()).await.unwrap();
    ntf.submit(j2.clone()).await.unwrap();
    let mut fb = Vec::new();
    for _ in 0..200 {
        fb = ntf.feedback(0, 10).await.unwrap();
        if fb.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(fb.len(), 2, "{fb:?}");
    for ev in &fb {
        assert!(ev.job_id == j1.job_id || ev.job_id == j2.job_id);
        assert_eq!(
            ev.reason,
            FeedbackReason::InvalidToken(InvalidReason::Bad),
            "{ev:?}"
        );
    }
    assert!(
        s.metrics()
            .contains(r#"push_failed_total{provider="webpush",reason="destination_refused"} 2"#),
        "{}",
        s.metrics()
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    s.running.stop().await;

    // Loopback allowed: the same job is delivered to (connects to) the endpoint.
    let s = start(|c| {
        enable(c);
        c.webpush.endpoints.destinations = DestinationPolicy::Loopback;
    })
    .await;
    s.ntf()
        .submit(webpush_job(&format!("https://localhost:{}/x", addr.port())))
        .await
        .unwrap();
    for _ in 0..200 {
        if accepted.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(accepted.load(Ordering::SeqCst) > 0);
    s.running.stop().await;
}

fn insecure_connector() -> openssl::ssl::SslConnector {
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
    b.set_verify(openssl::ssl::SslVerifyMode::NONE);
    b.build()
}

/// Waits (generously) for the server to close `s`: true if it did.
async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(8), s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn stalled_handshake_and_silent_connection_are_closed_after_handshake_timeout() {
    let s = start(|c| c.limits.handshake_timeout = Duration::from_millis(500)).await;
    // TCP only, no TLS ClientHello.
    let mut tcp = tokio::net::TcpStream::connect(s.running.addr)
        .await
        .unwrap();
    assert!(
        closed_by_server(&mut tcp).await,
        "stalled handshake not closed"
    );
    // TLS done, no first request.
    let tcp = tokio::net::TcpStream::connect(s.running.addr)
        .await
        .unwrap();
    let ssl = insecure_connector()
        .configure()
        .unwrap()
        .into_ssl("push-server")
        .unwrap();
    let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    std::pin::Pin::new(&mut tls).connect().await.unwrap();
    assert!(
        closed_by_server(&mut tls).await,
        "silent connection not closed"
    );
    assert_eq!(s.refused("handshake_timeout"), 2);
    // An authenticated client is not cut after the short limit.
    let ntf = s.ntf();
    ntf.ping().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        ntf.submit(check_job(&token(3))).await.unwrap(),
        SubmitOutcome::Queued
    );
    s.running.stop().await;
}

#[tokio::test]
async fn reserved_slots_keep_authenticated_ntf_servers_in() {
    let s = start(|c| {
        c.limits.max_connections = 4;
        c.limits.reserved_connections = 2;
        c.limits.handshake_timeout = Duration::from_secs(60);
    })
    .await;
    let single = |cred: Option<String>| {
        push_server::net::RemoteGateway::with_connections(
            push_server::net::RemoteConfig {
                host: "127.0.0.1".into(),
                port: s.running.addr.port(),
                fingerprint: s.fp,
                credential: cred,
                timeout: Duration::from_secs(5),
            },
            1,
        )
        .unwrap()
    };
    // Two anonymous connections take both anonymous slots and stay open.
    let a1 = single(None);
    let a2 = single(None);
    a1.register(apns(1)).await.unwrap();
    a2.ping().await.unwrap();
    // A third anonymous peer is told the server is busy (its slot was a reserved one).
    let a3 = single(None);
    match a3.register(apns(3)).await {
        Err(GatewayError::Busy(m)) => assert!(m.contains("without credential"), "{m}"),
        other => panic!("expected busy, got {other:?}"),
    }
    assert_eq!(s.refused("anonymous_connections"), 1);
    // Authenticated ntf-servers still connect, register and submit.
    let n1 = single(Some(s.cred.clone()));
    let n2 = single(Some(s.cred.clone()));
    let h = n1.register(apns(4)).await.unwrap();
    let mut j = check_job(&token(4));
    j.target = PushTarget::Handle(h);
    assert_eq!(n1.submit(j).await.unwrap(), SubmitOutcome::Queued);
    assert_eq!(
        n2.submit(check_job(&token(5))).await.unwrap(),
        SubmitOutcome::Queued
    );
    assert!(s.env.sink.wait_for(2, Duration::from_secs(10)).await);
    // All four slots are taken now: the next connection is closed at once.
    assert!(matches!(
        single(None).ping().await,
        Err(GatewayError::Unavailable(_))
    ));
    assert!(s.refused("max_connections") >= 1);
    // The anonymous connections still work.
    a1.ping().await.unwrap();
    a2.register(apns(6)).await.unwrap();
    s.running.stop().await;
}

#[tokio::test]
async fn per_address_connection_cap() {
    let s = start(|c| c.limits.max_connections_per_ip = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let gw = s.anonymous();
        gw.ping().await.unwrap();
        held.push(gw);
    }
    assert!(matches!(
        s.anonymous().ping().await,
        Err(GatewayError::Unavailable(_))
    ));
    assert!(s.refused("per_ip") >= 1);
    // A closed connection frees its place.
    held.pop();
    let mut ok = false;
    for _ in 0..100 {
        if s.anonymous().ping().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the freed place was not given back");
    s.running.stop().await;
}

#[tokio::test]
async fn anonymous_registrations_can_be_switched_off() {
    let s = start(|c| c.limits.anonymous_registrations = false).await;
    assert!(matches!(
        s.anonymous().register(apns(1)).await,
        Err(GatewayError::Auth)
    ));
    s.ntf().register(apns(1)).await.unwrap();
    assert_eq!(s.refused("anonymous_disabled"), 1);
    s.running.stop().await;
}

#[tokio::test]
async fn anonymous_peer_that_does_not_read_loses_its_slot() {
    use tokio::io::AsyncWriteExt as _;
    let s = start(|c| {
        c.limits.max_connections = 2;
        c.limits.reserved_connections = 1;
        c.limits.handshake_timeout = Duration::from_millis(500);
    })
    .await;
    // Takes the only anonymous slot and sends pings without ever reading the answers.
    let tcp = tokio::net::TcpStream::connect(s.running.addr)
        .await
        .unwrap();
    let ssl = insecure_connector()
        .configure()
        .unwrap()
        .into_ssl("push-server")
        .unwrap();
    let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    std::pin::Pin::new(&mut tls).connect().await.unwrap();
    let chunk: Vec<u8> = (0..2000)
        .flat_map(|i| format!("{{\"id\":{i},\"op\":\"ping\"}}\n").into_bytes())
        .collect();
    let writer = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), tls.write_all(&chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return true,
                Err(_) => {}
            }
        }
        false
    });
    // Once the server gave up writing to it, the slot is free for another device.
    let mut ok = false;
    for _ in 0..150 {
        if s.anonymous().ping().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the non-reading peer kept the anonymous slot");
    assert!(
        writer.await.unwrap(),
        "the server never closed the non-reading peer"
    );
    s.running.stop().await;
}
