//! The README's first run of the ntf-server, as written: `ntf-server --config-dir DIR
//! --data-dir DIR init` then `ntf-server ... start` on a fresh directory, nothing edited in
//! between (only the ports: any free port instead of 443 and 5228, so tests run in parallel).
//! `init` writes a complete configuration (an in-process push-server with no provider enabled)
//! and `start` says so; an NTF client connects over TLS and gets `TNEW` answered.

mod common;

use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Device, NtfClient, tnew};
use hush_proto::ntf::{NtfCommand, NtfResponse, TokenStatus};
use hush_server_common::test_support::{after, dirs_command, run_ok, spawn_lines, wait_for_lines};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_init_then_start_serves_ntf() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (etc, var) = (dir.path().join("ntf"), dir.path().join("ntf-data"));
    let cmd = || dirs_command(env!("CARGO_BIN_EXE_ntf-server"), "NTF_SERVER", &etc, &var);
    let text = run_ok(
        cmd().args(["init", "--port", "0", "--push-port", "0"]),
        "init",
    );
    assert!(text.contains("no push provider is enabled"), "{text}");
    assert!(etc.join("push").join("push-server.ini").exists());

    let (mut child, rx) = spawn_lines(cmd().arg("start").stderr(Stdio::piped()));
    let stderr = child.0.stderr.take().unwrap();
    // stderr is collected for the failure message
    let err_lines = std::thread::spawn(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    });
    let (mut port, mut fp, mut no_provider) = (None, None, false);
    let up = wait_for_lines(&rx, Duration::from_secs(20), |line| {
        port = port.or(after(line, "Listening on ").map(|a: std::net::SocketAddr| a.port()));
        if let Some(f) = line.strip_prefix("Fingerprint: ") {
            let b = hush_proto::encoding::base64url_decode(f.trim()).unwrap();
            fp = Some(<[u8; 32]>::try_from(b.as_slice()).unwrap());
        }
        no_provider |= line.starts_with("No push provider is enabled");
        (port.is_some() && fp.is_some() && no_provider).then_some(())
    });
    if let Err(seen) = up {
        let _ = child.0.kill();
        panic!(
            "start did not come up; stdout:\n{}\nstderr:\n{}",
            seen.join("\n"),
            err_lines.join().unwrap()
        );
    }
    // the fingerprint `start` prints is the one `init` printed
    let fp = fp.unwrap();
    assert!(
        text.contains(&hush_proto::encoding::base64url_encode(&fp)),
        "{text}"
    );

    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port.unwrap()));
    let mut c = NtfClient::connect(addr, &fp).await;
    let mut d = Device::new(7);
    let (_, resp) = tnew(&mut c, &d).await;
    let NtfResponse::TknId { token_id, .. } = resp else {
        panic!("TNEW: {resp:?}")
    };
    d.token_id = token_id;
    let (_, resp) = c.cmd(Some(&d.key), &d.token_id, &NtfCommand::Tchk).await;
    // registered, not verified (no provider delivered the verification push)
    assert!(
        matches!(
            resp,
            NtfResponse::Tkn(TokenStatus::New | TokenStatus::Registered)
        ),
        "{resp:?}"
    );
    drop(child);
    eprintln!("README init → start → TNEW: {:?}", started.elapsed());
}
