//! `hush --socks-proxy`: the CLI reaches its relay only through a SOCKS5 proxy. The profile's
//! relay address names `relay.invalid`, which does not resolve; the test proxy maps it to the
//! `hush up` relay on 127.0.0.1. With the flag `hush address` (creates the contact address
//! queue) and `hush status` work and the proxy saw the connections; without it they fail.

mod common;

use std::process::Command;

use common::*;
use hush_transport::socks::testing::MappingProxy;

const BIN: &str = env!("CARGO_BIN_EXE_hush");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_reaches_the_relay_only_through_the_socks_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, relay) = start_up(dir.path());
    // smp://<fingerprint>@127.0.0.1:<port> → the same relay under a name only the proxy knows
    let (head, port) = relay.rsplit_once(':').unwrap();
    let (scheme_fp, _) = head.rsplit_once('@').unwrap();
    let named = format!("{scheme_fp}@relay.invalid:{port}");
    let relay_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let proxy = MappingProxy::start([("relay.invalid".to_string(), relay_addr)].into())
        .await
        .unwrap();
    let socks = proxy.addr.to_string();

    let run = |profile: &std::path::Path, args: &[&str]| {
        Command::new(BIN)
            .arg("-p")
            .arg(profile)
            .args(args)
            .env_remove("HUSH_SOCKS_PROXY")
            .output()
            .unwrap()
    };
    let alice = dir.path().join("alice");
    let out = run(&alice, &["init", "--name", "alice", "--relay", &named]);
    assert!(out.status.success(), "{out:?}");
    let out = run(&alice, &["--socks-proxy", &socks, "address"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("relay.invalid"),
        "the address names the relay: {text}"
    );
    let r = proxy.requests();
    assert!(!r.is_empty(), "no connection through the proxy");
    assert!(
        r.iter().all(|r| r.host == "relay.invalid" && r.mapped),
        "{r:?}"
    );
    let n = r.len();
    let out = run(&alice, &["--socks-proxy", &socks, "--json", "status"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        proxy.requests().len() > n,
        "status connected through the proxy"
    );

    // without the proxy the same profile cannot reach its relay
    let bob = dir.path().join("bob");
    let out = run(&bob, &["init", "--name", "bob", "--relay", &named]);
    assert!(out.status.success(), "{out:?}");
    let n = proxy.requests().len();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .arg("-p")
            .arg(&bob)
            .args(["address"])
            .env_remove("HUSH_SOCKS_PROXY")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        !out.status.success(),
        "reached relay.invalid without the proxy"
    );
    assert_eq!(proxy.requests().len(), n);
}
