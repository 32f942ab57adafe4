//! The `ntf-server` binary: `init` (Ed448 certificates by default, ini), `start` with the
//! push-server as a separate server over the network (`[PUSH] mode = remote`) and with the
//! push-server in the same process (`mode = in_process`), `delete`.

#[path = "common/binary.rs"]
mod binary;
mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use binary::{Sink, bin, push_dir, sink_with_topics};
use common::*;
use hush_proto::ntf::{NtfCommand, NtfResponse};

async fn sink() -> Sink {
    sink_with_topics(&[]).await
}

fn ntf_init(dir: &Path) -> (PathBuf, PathBuf) {
    let (etc, var, text) = binary::ntf_init(dir);
    assert!(text.contains("Fingerprint: "), "{text}");
    // Ed448 by default, like the reference's `ntf-server init`
    let pem = std::fs::read(etc.join("ca.crt")).unwrap();
    let ca = openssl::x509::X509::from_pem(&pem).unwrap();
    assert_eq!(ca.public_key().unwrap().id(), openssl::pkey::Id::ED448);
    (etc, var)
}

fn set_ini(etc: &Path, extra: &str) {
    let ini = etc.join("ntf-server.ini");
    let text = std::fs::read_to_string(&ini).unwrap();
    let text = text.replace("[TRANSPORT]\n", "[TRANSPORT]\nbind = 127.0.0.1\n");
    // the test relay listens on 127.0.0.1
    let text = text.replace(
        "relay_destinations = public",
        "relay_destinations = loopback",
    );
    std::fs::write(&ini, format!("{text}\n{extra}")).unwrap();
}

struct Running {
    child: Child,
    addr: std::net::SocketAddr,
    fp: [u8; 32],
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(etc: &Path, var: &Path) -> Running {
    let mut child = Command::new(bin())
        .arg("--config-dir")
        .arg(etc)
        .arg("--data-dir")
        .arg(var)
        .args(["start", "--log-level", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = None;
    let mut fp = None;
    while addr.is_none() || fp.is_none() {
        let line = lines.next().expect("ntf-server exited").unwrap();
        if let Some(a) = line.strip_prefix("Listening on ") {
            addr = Some(a.trim().parse().unwrap());
        }
        if let Some(f) = line.strip_prefix("Fingerprint: ") {
            fp = Some(
                hush_proto::encoding::base64url_decode(f.trim())
                    .unwrap()
                    .try_into()
                    .unwrap(),
            );
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Running {
        child,
        addr: addr.unwrap(),
        fp: fp.unwrap(),
    }
}

/// Registration through the binary; returns (client, device).
async fn register_via(r: &Running, s: &Sink, n: u8) -> (NtfClient, Device) {
    let mut c = NtfClient::connect(r.addr, &r.fp).await;
    let mut d = Device::new(n);
    let (_, resp) = tnew(&mut c, &d).await;
    let NtfResponse::TknId {
        token_id,
        server_dh_key,
    } = resp
    else {
        panic!("{resp:?}")
    };
    d.token_id = token_id;
    let srv = hush_crypto::X25519Public::from_spki_der(server_dh_key.as_bytes()).unwrap();
    d.dh_secret = Some(d.dh.dh(&srv));
    let deadline = tokio::time::Instant::now() + WAIT;
    let p = loop {
        if let Some(p) = s.sink.received_for(&d.token_hex).pop() {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no verification push"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let PushContent::Verification(code) = d.decode(&p) else {
        panic!()
    };
    let (_, resp) = c
        .cmd(Some(&d.key), &d.token_id, &NtfCommand::Tvfy { code })
        .await;
    assert_eq!(resp, NtfResponse::Ok);
    (c, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_with_remote_push_server() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let s = sink().await;
    let pdir = dir.path().join("push");
    std::fs::create_dir_all(&pdir).unwrap();
    let cred = push_dir(&pdir, &s);
    let (pcfg, _) = push_server::config::Config::load(&pdir).unwrap();
    let push = push_server::cli::start(&pcfg).await.unwrap();
    let fp = std::fs::read_to_string(pdir.join("fingerprint")).unwrap();

    let (etc, var) = ntf_init(dir.path());
    set_ini(
        &etc,
        &format!(
            "[PUSH]\nmode = remote\nhost = 127.0.0.1\nport = {}\nfingerprint = {}\ncredential = {cred}\n",
            push.addr.port(),
            fp.trim()
        ),
    );
    let r = start(&etc, &var);
    let (mut c, d) = register_via(&r, &s, 31).await;

    // a relay, a queue, SNEW, SEND → message push through the network gateway
    let relay = Relay::start(relay_config(dir.path())).await;
    let smp = relay.client().await;
    let q = Queue::new(&smp, &relay.server).await;
    let (_, resp) = c.cmd(Some(&d.key), b"", &q.snew(&d.token_id)).await;
    let NtfResponse::SubId { sub_id } = resp else {
        panic!("{resp:?}")
    };
    wait_sub(&mut c, &d, &sub_id, hush_proto::ntf::SubStatus::Active).await;
    send(&smp, &q, b"over the network").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let items = loop {
        let got = s.sink.received_for(&d.token_hex);
        if got.len() >= 2 {
            break last_message_items(&d, &got);
        }
        assert!(tokio::time::Instant::now() < deadline, "no message push");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    fetch_and_check(&smp, &q, items.last().unwrap()).await;
    drop(r);
    relay.stop().await;
    push.stop().await;

    // delete
    let out = Command::new(bin())
        .arg("--config-dir")
        .arg(&etc)
        .arg("--data-dir")
        .arg(&var)
        .args(["delete", "-y"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!etc.join("ntf-server.ini").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_with_in_process_push_server() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let s = sink().await;
    let pdir = dir.path().join("push");
    std::fs::create_dir_all(&pdir).unwrap();
    push_dir(&pdir, &s);
    let (etc, var) = ntf_init(dir.path());
    set_ini(
        &etc,
        &format!(
            "[PUSH]\nmode = in_process\nconfig_dir = {}\n",
            pdir.display()
        ),
    );
    let r = start(&etc, &var);
    let (mut c, d) = register_via(&r, &s, 32).await;
    let (_, resp) = c.cmd(Some(&d.key), &d.token_id, &NtfCommand::Tchk).await;
    assert_eq!(resp, NtfResponse::Tkn(hush_proto::ntf::TokenStatus::Active));
    // without a push configuration the binary refuses to start (init writes one in
    // `<config dir>/push`: removed here)
    let bare = tempfile::tempdir().unwrap();
    let (etc2, var2) = ntf_init(bare.path());
    std::fs::remove_dir_all(etc2.join("push")).unwrap();
    let out = Command::new(bin())
        .arg("--config-dir")
        .arg(&etc2)
        .arg("--data-dir")
        .arg(&var2)
        .arg("start")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("config_dir"));
}
