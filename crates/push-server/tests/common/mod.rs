//! Shared test helpers: an apns-sink with a fresh provider key, and an APNs provider for it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apns_sink::{SinkConfig, SinkHandle};
use push_server::jwt::{Es256Key, SigFormat};
use push_server::provider::apns::{ApnsConfig, ApnsProvider};

pub const TOPIC: &str = "chat.simplex.app";
pub const KEY_ID: &str = "KEYID12345";
pub const TEAM_ID: &str = "5NN7GUYB6T";

pub struct Env {
    pub sink: SinkHandle,
    pub key: Es256Key,
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
}

pub async fn sink() -> Env {
    sink_with(|_| {}).await
}

/// [`sink`] with changes to its configuration.
pub async fn sink_with(change: impl FnOnce(&mut SinkConfig)) -> Env {
    let key = Es256Key::generate().unwrap();
    let mut cfg = SinkConfig::new("127.0.0.1:0".parse().unwrap(), key.public_pem().unwrap());
    cfg.read_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.key_id = Some(KEY_ID.into());
    cfg.team_id = Some(TEAM_ID.into());
    cfg.topics = vec![TOPIC.into()];
    change(&mut cfg);
    let sink = apns_sink::start(cfg).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("apns-sink.crt");
    std::fs::write(&ca_file, &sink.cert_pem).unwrap();
    Env {
        sink,
        key,
        dir,
        ca_file,
    }
}

impl Env {
    pub fn apns_config(&self, format: SigFormat) -> ApnsConfig {
        ApnsConfig {
            label: "apns_test",
            host: "127.0.0.1".into(),
            port: self.sink.addr.port(),
            topic: TOPIC.into(),
            team_id: TEAM_ID.into(),
            key_id: KEY_ID.into(),
            key: self.key.clone(),
            sig_format: format,
            jwt_refresh: Duration::from_secs(30 * 60),
            allow_short_refresh: false,
            ca_file: Some(self.ca_file.clone()),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            max_payload: 4096,
        }
    }

    pub fn provider(&self) -> Arc<ApnsProvider> {
        Arc::new(ApnsProvider::new(self.apns_config(SigFormat::Jose)).unwrap())
    }
}

pub fn token(n: u8) -> String {
    hex::encode([n; 32])
}

pub fn vectors() -> Vec<serde_json::Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/ntf.json"
    );
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("vectors missing at {path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

pub fn vector(name: &str) -> serde_json::Value {
    vectors()
        .into_iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("vector {name} missing"))
}

/// Writes a push-server directory (via `push_server::cli::init`) whose APNs test endpoint is this
/// sink; returns (dir, fingerprint, credential).
pub fn push_server_dir(env: &Env, retry_base_ms: u64) -> (tempfile::TempDir, [u8; 32], String) {
    let dir = tempfile::tempdir().unwrap();
    let out = push_server::cli::init(dir.path(), "127.0.0.1".parse().unwrap(), 0, "ntf1").unwrap();
    std::fs::write(
        dir.path().join("apns-key.p8"),
        env.key.to_pkcs8_pem().unwrap(),
    )
    .unwrap();
    std::fs::copy(&env.ca_file, dir.path().join("apns-sink.crt")).unwrap();
    let ini = format!(
        "[STORE]\noutbox_file = push-outbox.sqlite\nsync = full\n\
         [TRANSPORT]\nhost = 127.0.0.1\nport = 0\n\
         [CLIENTS]\nntf1 = {cred}\n\
         [APNS]\nenable = on\ntopic = {TOPIC}\nteam_id = {TEAM_ID}\nkey_id = {KEY_ID}\nkey_file = apns-key.p8\n\
         prod_url =\ndev_url =\ntest_url = https://127.0.0.1:{port}\ntest_ca_file = apns-sink.crt\n\
         [OUTBOX]\nretry_base_ms = {retry_base_ms}\nretry_max_seconds = 1\nconcurrency = 16\n\
         [METRICS]\nenable = on\nhost = 127.0.0.1\nport = 0\n",
        cred = out.credential,
        port = env.sink.addr.port(),
    );
    std::fs::remove_file(dir.path().join("push-server.ini")).unwrap();
    std::fs::write(dir.path().join("push-server.ini"), ini).unwrap();
    let fp = push_server::net::parse_fingerprint(
        &std::fs::read_to_string(dir.path().join("fingerprint")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        push_server::net::parse_fingerprint(&out.fingerprint),
        Some(fp)
    );
    (dir, fp, out.credential)
}

pub fn remote(
    addr: std::net::SocketAddr,
    fp: [u8; 32],
    credential: Option<String>,
) -> push_server::net::RemoteGateway {
    push_server::net::RemoteGateway::new(push_server::net::RemoteConfig {
        host: addr.ip().to_string(),
        port: addr.port(),
        fingerprint: fp,
        credential,
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

pub fn check_job(t: &str) -> push_server::PushJob {
    push_server::PushJob {
        job_id: push_server::JobId::random(),
        target: push_server::PushTarget::Device(push_server::DeviceAddress::Apns {
            env: push_server::ApnsEnv::Test,
            token: t.into(),
        }),
        kind: push_server::PushKind::CheckMessages,
        payload: br#"{"aps":{"content-available":1},"notificationData":{"checkMessages":true}}"#
            .to_vec(),
        push_type: push_server::PushType::Background,
        priority: Some(5),
        expires_at: None,
        collapse_id: None,
        report_delivery: false,
    }
}
