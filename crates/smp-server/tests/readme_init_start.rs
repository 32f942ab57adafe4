//! The README's first run of the relay, as written: `smp-server --config-dir DIR --data-dir DIR
//! init --fqdn relay.example.com` (answering its question with `y`, as an operator at a
//! terminal does) then `smp-server ... start`, and a client creates a queue (`NEW` with the
//! `create_password` init generated). Only the ports differ from the README: any free port for
//! SMP (`--port 0`) and for the metrics endpoint (the ini's fixed loopback address, so that
//! tests run in parallel).

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use hush_proto::address::ServerWithAuth;
use hush_proto::error::ErrorType;
use hush_proto::smp::{BrokerMsg, Command as SmpCommand};
use hush_server_common::test_support::{after, dirs_command, spawn_lines, wait_for_lines};

fn line_with<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_init_then_start_serves_new() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (etc, var) = (dir.path().join("smp"), dir.path().join("smp-data"));
    let cmd = || dirs_command(env!("CARGO_BIN_EXE_smp-server"), "SMP_SERVER", &etc, &var);
    let mut init = cmd()
        .args(["init", "--fqdn", "relay.example.com", "--port", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    init.stdin.take().unwrap().write_all(b"y\n").unwrap();
    let out = init.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "init failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let address = line_with(&text, "Server address: ").trim().to_string();
    let parsed = ServerWithAuth::parse(&address).unwrap();
    let password = parsed.auth.clone().expect("init sets a create_password");

    // the metrics endpoint's fixed loopback port → any free port
    let ini = etc.join("smp-server.ini");
    let t = std::fs::read_to_string(&ini).unwrap();
    let metrics = format!("address = {}\n", smp_server::config::DEFAULT_METRICS_ADDR);
    assert!(t.contains(&metrics), "{t}");
    std::fs::write(&ini, t.replace(&metrics, "address = 127.0.0.1:0\n")).unwrap();

    let (child, rx) = spawn_lines(cmd().arg("start"));
    let mut before = Vec::new();
    let port = wait_for_lines(&rx, Duration::from_secs(20), |line| {
        let port = after(line, "Listening on ").map(|a: std::net::SocketAddr| a.port());
        if port.is_none() {
            before.push(line.to_string());
        }
        port
    })
    .unwrap_or_else(|seen| panic!("start did not come up:\n{}", seen.join("\n")));
    // `start` prints the address `init` printed (same identity and password)
    let all = before.join("\n");
    assert_eq!(line_with(&all, "Server address: ").trim(), address);

    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = TestClient::connect(addr, parsed.server.key_hash()).await;
    // NEW without the password: refused; with it: IDS
    let key = AuthKey::ed25519();
    let dh = hush_crypto::X25519Secret::generate();
    let req = new_request(&key, &dh, NewOpts::default(), None);
    let corr = random_corr();
    c.send(Some(&key), &corr, &[], &req).await;
    assert_err(&c.response_to(&corr).await, ErrorType::Auth);
    let SmpCommand::New(mut with_password) = req else {
        unreachable!()
    };
    with_password.basic_auth = Some(password);
    let corr = random_corr();
    c.send(Some(&key), &corr, &[], &SmpCommand::New(with_password))
        .await;
    let r = c.response_to(&corr).await;
    let BrokerMsg::Ids(ids) = r else {
        panic!("expected IDS, got {r:?}")
    };
    assert_eq!(ids.rcv_id.len(), 24);
    drop(child);
    eprintln!("README init → start → NEW: {:?}", started.elapsed());
}
