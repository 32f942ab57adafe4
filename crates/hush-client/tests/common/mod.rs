//! Shared test helpers: vector loading and a scriptable in-memory relay.
#![allow(dead_code)]

use hush_client::{ClientConfig, MemoryRelay, SessionParams, SmpClient, memory_pair};
use hush_proto::smp::{BrokerMsg, Command};
use hush_proto::transmission::{
    Layout, Transmission, decode_transmission_with, encode_transmission_with,
};
use serde_json::Value;

/// All vectors of one file (fails loudly when the file is missing).
pub fn vectors(file: &str) -> Vec<Value> {
    let path = format!(
        "{}/../../../shared/vectors/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("vector file {path} missing or unreadable: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// One vector by name.
pub fn vector(file: &str, name: &str) -> Value {
    vectors(file)
        .into_iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("vector {name} missing in {file}"))
}

pub fn hex_of(v: &Value) -> Vec<u8> {
    hex::decode(
        v.as_str()
            .unwrap_or_else(|| panic!("not a hex string: {v}")),
    )
    .unwrap()
}

pub const VERSION: u16 = 18;

pub fn session() -> SessionParams {
    SessionParams {
        version: VERSION,
        session_id: vec![7; 32],
        server_session_key: None,
        block_size: 16384,
    }
}

/// A client over an in-memory connection and the relay end.
pub fn client_pair(config: ClientConfig) -> (SmpClient, hush_client::EventReceiver, MemoryRelay) {
    client_pair_with(session(), config)
}

pub fn client_pair_with(
    session: SessionParams,
    config: ClientConfig,
) -> (SmpClient, hush_client::EventReceiver, MemoryRelay) {
    let (src, sink, relay) = memory_pair(session.block_size);
    let (c, ev) = SmpClient::start(session, src, sink, None, config);
    (c, ev, relay)
}

/// A client transmission as the fake relay sees it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub authorization: Vec<u8>,
    pub corr_id: Vec<u8>,
    pub entity_id: Vec<u8>,
    pub command: Command,
    pub raw: Vec<u8>,
}

pub fn parse_client(t: &[u8]) -> Seen {
    let tr = decode_transmission_with(t, Layout::smp(VERSION)).unwrap();
    Seen {
        authorization: tr.authorization.to_vec(),
        corr_id: tr.corr_id.to_vec(),
        entity_id: tr.entity_id.to_vec(),
        command: Command::decode(tr.command, VERSION).unwrap(),
        raw: t.to_vec(),
    }
}

/// A relay transmission (empty authorization).
pub fn server_t(corr_id: &[u8], entity_id: &[u8], msg: &BrokerMsg) -> Vec<u8> {
    let cmd = msg.encode(VERSION);
    let mut out = Vec::new();
    encode_transmission_with(
        &mut out,
        &Transmission::new(corr_id, entity_id, &cmd),
        Layout::smp(VERSION),
    )
    .unwrap();
    out
}

/// The answer a well-behaved relay gives to simple commands.
pub fn default_answer(s: &Seen) -> Option<BrokerMsg> {
    Some(match &s.command {
        Command::Ping => BrokerMsg::Pong,
        Command::Sub | Command::NSub => BrokerMsg::Sok(None),
        Command::Key(_)
        | Command::SKey(_)
        | Command::Send { .. }
        | Command::Off
        | Command::Del
        | Command::NDel => BrokerMsg::Ok,
        _ => return None,
    })
}
