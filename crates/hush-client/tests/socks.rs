//! Relay connections through a SOCKS5 proxy (Tor): the relay's address names a host that does
//! not resolve (`relay.invalid`, and an `.onion` host next to it), which only the test proxy
//! maps to the relay on 127.0.0.1 — so the test fails if the proxy is bypassed. The pool
//! (`PoolConfig::network`, as `hush --socks-proxy` sets it) creates a queue, sends and
//! receives through the proxy; without the proxy the same address is unreachable.

use std::time::Duration;

use hush_client::{
    ClientConfig, NewQueueParams, PoolConfig, RcvMsgBody, ServerEvent, SmpClientPool, TlsConnector,
};
use hush_proto::address::{ProtocolServer, TransportHost};
use hush_transport::socks::testing::MappingProxy;
use hush_transport::{HostMode, NetworkConfig, SocksMode, SocksProxy};
use smp_server::server::RelayOptions;
use smp_server::testing::TestRelay;

const ONION: &str = "hushtestrelayaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.onion";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_reached_only_through_the_socks_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start_in(dir.path(), RelayOptions::default())
        .await
        .unwrap();
    let real = ProtocolServer::parse(&relay.address()).unwrap();
    let port = relay.addr.port();
    let map = [
        ("relay.invalid".to_string(), relay.addr),
        (ONION.to_string(), relay.addr),
    ]
    .into();
    let proxy = MappingProxy::start(map).await.unwrap();

    // a public name that only the proxy knows, and an onion host
    let named = ProtocolServer::smp(
        vec![TransportHost::Domain("relay.invalid".into())],
        Some(port),
        real.key_hash().to_vec(),
    )
    .unwrap();
    let both = ProtocolServer::smp(
        vec![
            TransportHost::Domain("relay.invalid".into()),
            TransportHost::Onion(ONION.into()),
        ],
        Some(port),
        real.key_hash().to_vec(),
    )
    .unwrap();

    // without the proxy the names do not resolve
    let direct = TlsConnector::new().unwrap();
    let direct_attempt = tokio::time::timeout(
        Duration::from_secs(20),
        direct.connect_to(&named, &ClientConfig::default()),
    )
    .await
    .expect("direct attempt timed out");
    let Err(e) = direct_attempt else {
        panic!("relay.invalid must not be reachable directly")
    };
    eprintln!("direct: {e}");
    assert!(proxy.requests().is_empty());

    // the pool as `hush --socks-proxy` configures it (everything through the proxy, onion
    // hosts preferred)
    let (pool, mut events) = SmpClientPool::tls(PoolConfig {
        network: NetworkConfig::all_via(SocksProxy::new(proxy.addr)),
        ..Default::default()
    })
    .unwrap();
    let q = pool
        .client(&both)
        .await
        .unwrap()
        .create_queue(NewQueueParams {
            subscribe: false,
            ..NewQueueParams::default()
        })
        .await
        .unwrap();
    pool.subscribe(&both, &q.rcv_id, std::sync::Arc::new(q.rcv_key.clone()))
        .await
        .unwrap();
    let r = proxy.requests();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!((r[0].host.as_str(), r[0].port), (ONION, port));
    assert!(r[0].username.is_some(), "isolation credentials");
    let sender = pool.client(&named).await.unwrap();
    sender
        .send(&q.snd_id, None, false, b"through the proxy")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let msg = loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("no MSG")
            .expect("pool closed");
        if let hush_client::PoolEvent::Event {
            event: ServerEvent::Message { msg, .. },
            ..
        } = ev
        {
            break msg;
        }
    };
    let RcvMsgBody::Message { body, .. } = msg.decrypt(&q.rcv_dh_secret).unwrap().body else {
        panic!("quota marker")
    };
    assert_eq!(body, b"through the proxy");
    let hosts: Vec<String> = proxy.requests().into_iter().map(|r| r.host).collect();
    assert_eq!(
        hosts,
        [ONION, "relay.invalid"],
        "every connection via the proxy"
    );
    // different destinations, different isolation usernames
    let r = proxy.requests();
    assert_ne!(r[0].username, r[1].username);

    // socks_mode onion / host_mode public (the servers' defaults): a public host goes direct
    let servers = NetworkConfig {
        socks_proxy: Some(SocksProxy::new(proxy.addr)),
        socks_mode: SocksMode::Onion,
        host_mode: HostMode::Public,
        required_host_mode: false,
    };
    let (c, _) = TlsConnector::new()
        .unwrap()
        .with_network(servers)
        .connect_to(&real, &ClientConfig::default())
        .await
        .unwrap();
    c.close().await;
    assert_eq!(proxy.requests().len(), 2, "a public host is not proxied");
    pool.close().await;

    // figure (printed, not asserted): connection setup (TCP + TLS + SMP hello) directly and
    // through the loopback SOCKS5 proxy, alternating, in one run
    let via = TlsConnector::new()
        .unwrap()
        .with_network(NetworkConfig::all_via(SocksProxy::new(proxy.addr)));
    let (mut t_direct, mut t_via) = (Duration::ZERO, Duration::ZERO);
    const N: u32 = 20;
    for _ in 0..N {
        let t = std::time::Instant::now();
        let (c, _) = direct
            .connect_to(&real, &ClientConfig::default())
            .await
            .unwrap();
        t_direct += t.elapsed();
        c.close().await;
        let t = std::time::Instant::now();
        let (c, _) = via
            .connect_to(&named, &ClientConfig::default())
            .await
            .unwrap();
        t_via += t.elapsed();
        c.close().await;
    }
    eprintln!(
        "connect: direct {:.2} ms, via SOCKS5 {:.2} ms (×{:.2}), mean of {N}",
        t_direct.as_secs_f64() * 1e3 / N as f64,
        t_via.as_secs_f64() * 1e3 / N as f64,
        t_via.as_secs_f64() / t_direct.as_secs_f64()
    );
}
