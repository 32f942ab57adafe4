//! The ntf-server's relay subscriber through a SOCKS5 proxy (`[SUBSCRIBER] socks_proxy`, Tor):
//! the device's queue is on a relay whose address is an `.onion` host, which only the test
//! proxy maps to the relay on 127.0.0.1 — the test fails if the proxy is bypassed. `SNEW`, the
//! subscription (`NSUB`) and the message push all work through it; with the reference's
//! defaults (`socks_mode = onion`) a relay with a public host is still subscribed directly.

mod common;

use common::*;
use hush_proto::address::{ProtocolServer, TransportHost};
use hush_transport::socks::testing::MappingProxy;
use hush_transport::{NetworkConfig, SocksProxy};
use ntf_server::PolicyMode;

const ONION: &str = "hushntfsubscriberaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.onion";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_reaches_an_onion_relay_through_the_socks_proxy() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(relay_config(dir.path())).await;
    let push = push().await;
    let proxy = MappingProxy::start([(ONION.to_string(), relay.addr)].into())
        .await
        .unwrap();
    let mut config = ntf_config(dir.path(), false, PolicyMode::default());
    // as `[SUBSCRIBER] socks_proxy = 127.0.0.1:<port>` with the reference's defaults
    config.network = NetworkConfig {
        socks_proxy: Some(SocksProxy::new(proxy.addr)),
        ..NetworkConfig::default()
    };
    let ntf = Ntf::start(config, &push).await;
    let mut c = ntf.client().await;
    let mut d = Device::new(51);
    register(&mut c, &push, &mut d).await;

    let smp = relay.client().await;
    let onion = ProtocolServer::smp(
        vec![TransportHost::Onion(ONION.into())],
        Some(relay.addr.port()),
        relay.server.key_hash().to_vec(),
    )
    .unwrap();
    let mut q = Queue::new(&smp, &relay.server).await;
    q.server = onion;
    subscribe(&mut c, &d, &q).await;
    let r = proxy.requests();
    assert!(!r.is_empty(), "NSUB went through the proxy");
    assert!(
        r.iter()
            .all(|r| r.host == ONION && r.port == relay.addr.port() && r.mapped),
        "{r:?}"
    );
    assert!(r[0].username.is_some(), "isolation credentials");

    let before = push.received(d.sink_token()).len();
    send(&smp, &q, b"from an onion relay").await;
    let (_, items) = wait_message_push(&push, &d, before).await;
    let body = fetch_and_check(&smp, &q, items.last().unwrap()).await;
    assert_eq!(body, b"from an onion relay");

    // socks_mode = onion (default): the relay's public address is subscribed directly
    let n = proxy.requests().len();
    let q2 = Queue::new(&smp, &relay.server).await;
    subscribe(&mut c, &d, &q2).await;
    assert_eq!(proxy.requests().len(), n, "a public host is not proxied");
    ntf.stop().await;
}
