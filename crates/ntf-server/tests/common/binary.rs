//! Helpers for tests that run the `ntf-server` binary: apns-sink, a push-server configuration
//! pointing at it, `ntf-server init` and `start`, and a device registered through it. Included
//! with `#[path]` next to `mod common;` (it uses the harness in `common`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use apns_sink::{SinkConfig, SinkHandle};
use hush_proto::ntf::{NtfCommand, NtfResponse};
use hush_server_common::test_support::{
    Killed, after, dirs_command, run_ok, spawn_lines, wait_for_lines,
};
use push_server::jwt::Es256Key;

use crate::common::{Device, NtfClient, PushContent, WAIT, tnew};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ntf-server"))
}

/// `ntf-server --config-dir etc --data-dir var` (without the developer's environment).
pub fn ntf_command(etc: &Path, var: &Path) -> Command {
    dirs_command(env!("CARGO_BIN_EXE_ntf-server"), "NTF_SERVER", etc, var)
}

pub struct Sink {
    pub sink: SinkHandle,
    pub key: Es256Key,
}

/// An apns-sink on 127.0.0.1 accepting `topics` (empty: its default).
pub async fn sink_with_topics(topics: &[&str]) -> Sink {
    let key = Es256Key::generate().unwrap();
    let mut cfg = SinkConfig::new("127.0.0.1:0".parse().unwrap(), key.public_pem().unwrap());
    if !topics.is_empty() {
        cfg.topics = topics.iter().map(|t| t.to_string()).collect();
    }
    Sink {
        sink: apns_sink::start(cfg).await.unwrap(),
        key,
    }
}

/// A push-server configuration directory whose APNs test endpoint is the sink; returns the
/// credential of client `ntf1`.
pub fn push_dir(dir: &Path, s: &Sink) -> String {
    let out = push_server::cli::init(dir, "127.0.0.1".parse().unwrap(), 0, "ntf1").unwrap();
    std::fs::write(dir.join("apns-key.p8"), s.key.to_pkcs8_pem().unwrap()).unwrap();
    std::fs::write(dir.join("apns-sink.crt"), &s.sink.cert_pem).unwrap();
    let ini = format!(
        "[STORE]\noutbox_file = push-outbox.sqlite\nsync = normal\n\
         [TRANSPORT]\nhost = 127.0.0.1\nport = 0\n\
         [CLIENTS]\nntf1 = {cred}\n\
         [APNS]\nenable = on\ntopic = chat.simplex.app\nteam_id = 5NN7GUYB6T\nkey_id = KEYID12345\n\
         key_file = apns-key.p8\nprod_url =\ndev_url =\ntest_url = https://127.0.0.1:{port}\n\
         test_ca_file = apns-sink.crt\n",
        cred = out.credential,
        port = s.sink.addr.port(),
    );
    std::fs::write(dir.join("push-server.ini"), ini).unwrap();
    out.credential
}

/// `ntf-server init -y --port 0` into `dir/etc` and `dir/var`; returns them and what init
/// printed.
pub fn ntf_init(dir: &Path) -> (PathBuf, PathBuf, String) {
    let (etc, var) = (dir.join("etc"), dir.join("var"));
    let text = run_ok(
        ntf_command(&etc, &var).args(["init", "-y", "--port", "0"]),
        "init",
    );
    (etc, var, text)
}

/// A running `ntf-server start` (killed when dropped).
pub struct Running {
    pub child: Killed,
    pub addr: std::net::SocketAddr,
    pub fp: [u8; 32],
    /// `Instance: …` (printed with a PostgreSQL store only).
    pub id: Option<String>,
}

/// `ntf-server start --log-level warn`, once it printed its address and fingerprint (and, with
/// `instance`, its instance id).
pub fn start(etc: &Path, var: &Path, instance: bool) -> Running {
    let (child, rx) = spawn_lines(ntf_command(etc, var).args(["start", "--log-level", "warn"]));
    let (mut addr, mut fp, mut id) = (None, None, None);
    wait_for_lines(&rx, Duration::from_secs(120), |line| {
        addr = addr.or(after(line, "Listening on "));
        if let Some(f) = line.strip_prefix("Fingerprint: ") {
            let b = hush_proto::encoding::base64url_decode(f.trim()).unwrap();
            fp = Some(<[u8; 32]>::try_from(b.as_slice()).unwrap());
        }
        id = id.take().or(after(line, "Instance: "));
        (addr.is_some() && fp.is_some() && (id.is_some() || !instance)).then_some(())
    })
    .unwrap_or_else(|seen| panic!("ntf-server exited:\n{}", seen.join("\n")));
    Running {
        child,
        addr: addr.unwrap(),
        fp: fp.unwrap(),
        id,
    }
}

/// TNEW → verification push (from the sink) → TVFY through the server at `addr`; returns
/// (client, device).
pub async fn register(
    addr: std::net::SocketAddr,
    fp: &[u8; 32],
    s: &Sink,
    n: u8,
) -> (NtfClient, Device) {
    let mut c = NtfClient::connect(addr, fp).await;
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
