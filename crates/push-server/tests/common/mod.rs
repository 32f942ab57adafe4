//! Shared test helpers: an apns-sink with a fresh provider key, and an APNs provider for it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use push_server::apns_sink::{self, SinkConfig, SinkHandle};
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
    let key = Es256Key::generate().unwrap();
    let mut cfg = SinkConfig::new("127.0.0.1:0".parse().unwrap(), key.public_pem().unwrap());
    cfg.read_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.key_id = Some(KEY_ID.into());
    cfg.team_id = Some(TEAM_ID.into());
    cfg.topics = vec![TOPIC.into()];
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
