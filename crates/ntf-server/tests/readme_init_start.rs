//! The README's first run of the ntf-server, as written: `ntf-server --config-dir DIR
//! --data-dir DIR init` then `ntf-server ... start` on a fresh directory, nothing edited in
//! between (only the ports: any free port instead of 443 and 5228, so tests run in parallel).
//! `init` writes a complete configuration (an in-process push-server with no provider enabled)
//! and `start` says so; an NTF client connects over TLS and gets `TNEW` answered.

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Device, NtfClient, tnew};
use hush_proto::ntf::{NtfCommand, NtfResponse, TokenStatus};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_init_then_start_serves_ntf() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (etc, var) = (dir.path().join("ntf"), dir.path().join("ntf-data"));
    let cmd = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ntf-server"));
        c.arg("--config-dir")
            .arg(&etc)
            .arg("--data-dir")
            .arg(&var)
            .env_remove("NTF_SERVER_CFG_PATH")
            .env_remove("NTF_SERVER_LOG_PATH")
            .env_remove("RUST_LOG");
        c
    };
    let out = cmd()
        .args(["init", "--port", "0", "--push-port", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "init failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("no push provider is enabled"), "{text}");
    assert!(etc.join("push").join("push-server.ini").exists());

    let mut child = Killed(
        cmd()
            .arg("start")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let stderr = child.0.stderr.take().unwrap();
    // stderr is collected for the failure message
    let err_lines = std::thread::spawn(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut port, mut fp, mut no_provider) = (None, None, false);
    let mut seen = Vec::new();
    while port.is_none() || fp.is_none() || !no_provider {
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.0.kill();
                panic!(
                    "start did not come up; stdout:\n{}\nstderr:\n{}",
                    seen.join("\n"),
                    err_lines.join().unwrap()
                );
            }
        };
        if let Some(a) = line.strip_prefix("Listening on ") {
            port = Some(a.trim().parse::<std::net::SocketAddr>().unwrap().port());
        }
        if let Some(f) = line.strip_prefix("Fingerprint: ") {
            let b = hush_proto::encoding::base64url_decode(f.trim()).unwrap();
            fp = Some(<[u8; 32]>::try_from(b.as_slice()).unwrap());
        }
        if line.starts_with("No push provider is enabled") {
            no_provider = true;
        }
        seen.push(line);
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
