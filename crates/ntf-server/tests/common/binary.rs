//! Helpers for tests that run the `ntf-server` binary: apns-sink, a push-server configuration
//! pointing at it, and `ntf-server init`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use push_server::apns_sink::{self, SinkConfig, SinkHandle};
use push_server::jwt::Es256Key;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ntf-server"))
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
    let out = Command::new(bin())
        .arg("--config-dir")
        .arg(&etc)
        .arg("--data-dir")
        .arg(&var)
        .args(["init", "-y", "--port", "0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (etc, var, String::from_utf8(out.stdout).unwrap())
}
