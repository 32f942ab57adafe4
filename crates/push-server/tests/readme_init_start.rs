//! The README's first run of the push-server, as written: `push-server --dir DIR init` then
//! `push-server --dir DIR start` (only the port differs: any free port instead of 5228, so that
//! tests run in parallel). `start` says that no push provider is enabled; an ntf-server's
//! gateway connects with the fingerprint `init` printed and the credential it wrote, gets
//! `ping` and `feedback` answered, and a wrong credential is refused.

use std::process::Command;
use std::time::{Duration, Instant};

use hush_server_common::test_support::{after, run_ok, spawn_lines, wait_for_lines};
use push_server::PushGateway;
use push_server::net::{RemoteConfig, RemoteGateway, parse_fingerprint};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_init_then_start_serves_the_gateway() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("push");
    let cmd = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_push-server"));
        c.arg("--dir")
            .arg(&d)
            .env_remove("PUSH_SERVER_DIR")
            .env_remove("RUST_LOG");
        c
    };
    let text = run_ok(cmd().args(["init", "--port", "0"]), "init");
    let fp = text
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: "))
        .and_then(parse_fingerprint)
        .unwrap_or_else(|| panic!("no fingerprint in:\n{text}"));
    let (cfg, _) = push_server::config::Config::load(&d).unwrap();
    let credential = cfg.clients.get("ntf").expect("init's client `ntf`").clone();

    let (child, rx) = spawn_lines(cmd().arg("start"));
    let (mut addr, mut no_provider) = (None, false);
    let addr: std::net::SocketAddr = wait_for_lines(&rx, Duration::from_secs(20), |line| {
        addr = addr.or(after(line, "push-server listening on "));
        no_provider |= line.starts_with("No push provider is enabled");
        addr.filter(|_| no_provider)
    })
    .unwrap_or_else(|seen| panic!("start did not come up:\n{}", seen.join("\n")));
    let gateway = |credential: &str| {
        RemoteGateway::new(RemoteConfig {
            host: addr.ip().to_string(),
            port: addr.port(),
            fingerprint: fp,
            credential: Some(credential.to_string()),
            timeout: Duration::from_secs(10),
        })
        .unwrap()
    };
    let gw = gateway(&credential);
    gw.ping().await.unwrap();
    assert!(gw.feedback(0, 10).await.unwrap().is_empty());
    let wrong = gateway("not-the-credential");
    assert!(wrong.feedback(0, 10).await.is_err());
    // a pin that does not match the certificate is refused
    let mut other = fp;
    other[0] ^= 1;
    let pinned_wrong = RemoteGateway::new(RemoteConfig {
        host: addr.ip().to_string(),
        port: addr.port(),
        fingerprint: other,
        credential: Some(credential),
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    assert!(pinned_wrong.ping().await.is_err());
    drop(child);
    eprintln!("README init → start → gateway: {:?}", started.elapsed());
}
