//! Shared vectors (`/work/shared/vectors/addresses.json`): every `connection_link.*` and the
//! `e2e_ratchet_params.uri` vector is taken the way the agent takes a link when joining — its
//! ratchet keys become binary `E2ERatchetParams`, its queues become binary `SMPQueueInfo` at
//! the agreed client version — and those binary forms must round-trip and keep the vector's
//! keys, ids and modes.

use hush_agent::envelope::SmpQueueInfo;
use hush_agent::ratchet::E2eRatchetParams;
use hush_crypto::{X448Public, X25519Public};
use hush_proto::address::{ConnectionRequestUri, E2eRatchetParamsUri, QueueMode};
use hush_proto::encoding::Parser;
use hush_proto::version::smp_client_version;
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/addresses.json"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("shared vectors missing at {path}: {e}"));
    serde_json::from_str::<Vec<Value>>(&text).unwrap()
}

fn params_round_trip(e2e: &E2eRatchetParamsUri) -> E2eRatchetParams {
    let p = E2eRatchetParams {
        version: e2e.versions.max(),
        key1: X448Public::from_spki_der(&e2e.key1).unwrap(),
        key2: X448Public::from_spki_der(&e2e.key2).unwrap(),
        kem: None,
    };
    let mut bin = Vec::new();
    p.encode(&mut bin).unwrap();
    // v ‖ 68-byte SPKI ×2 as shortStrings ‖ [v ≥ 3: '0']
    let kem_slot = usize::from(p.version >= 3);
    assert_eq!(bin.len(), 2 + 2 * 69 + kem_slot);
    let mut parser = Parser::new(&bin);
    let back = E2eRatchetParams::parse(&mut parser).unwrap();
    assert!(parser.is_empty());
    assert_eq!(back, p);
    assert_eq!(back.key1.to_spki_der(), e2e.key1);
    assert_eq!(back.key2.to_spki_der(), e2e.key2);
    back
}

#[test]
fn e2e_ratchet_params_vector() {
    let vs = vectors();
    let v = vs
        .iter()
        .find(|v| v["name"] == "e2e_ratchet_params.uri")
        .expect("e2e_ratchet_params.uri vector");
    let unescaped = v["expected"]["unescaped"].as_str().unwrap();
    let uri = E2eRatchetParamsUri::parse(unescaped).unwrap();
    let keys: Vec<Vec<u8>> = v["inputs"]["x3dh_keys_x448_der_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| hex::decode(k.as_str().unwrap()).unwrap())
        .collect();
    let p = params_round_trip(&uri);
    assert_eq!(p.key1.to_spki_der(), keys[0]);
    assert_eq!(p.key2.to_spki_der(), keys[1]);
}

#[test]
fn connection_link_vectors_as_joined() {
    let mut invitations = 0;
    let mut contacts = 0;
    let mut queues = 0;
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        if !name.starts_with("connection_link.") {
            continue;
        }
        let text = v["expected"]["text"].as_str().unwrap();
        let link = ConnectionRequestUri::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        match &link {
            ConnectionRequestUri::Invitation { e2e, .. } => {
                params_round_trip(e2e);
                invitations += 1;
            }
            ConnectionRequestUri::Contact { .. } => contacts += 1,
        }
        for q in &link.data().smp_queues {
            let version = q
                .client_versions
                .compatible_version(&smp_client_version::RANGE)
                .unwrap_or_else(|| panic!("{name}: no compatible client version"));
            let info = SmpQueueInfo {
                client_version: version,
                server: q.server.clone(),
                sender_id: q.sender_id.clone(),
                dh_public_key: X25519Public::from_spki_der(&q.dh_public_key).unwrap(),
                queue_mode: q.queue_mode,
            };
            let mut bin = Vec::new();
            info.encode(&mut bin).unwrap();
            let mut p = Parser::new(&bin);
            let back = SmpQueueInfo::parse(&mut p).unwrap();
            assert!(p.is_empty(), "{name}");
            assert_eq!(back.sender_id, q.sender_id, "{name}");
            assert_eq!(back.dh_public_key.to_spki_der(), q.dh_public_key, "{name}");
            assert_eq!(back.client_version, version, "{name}");
            // the mode survives from client version 3 on (v3 only carries messaging)
            let expect_mode = match version {
                v if v >= 4 => q.queue_mode,
                3 if q.queue_mode == Some(QueueMode::Messaging) => q.queue_mode,
                _ => None,
            };
            assert_eq!(back.queue_mode, expect_mode, "{name}");
            if version >= 2 {
                assert_eq!(back.server, q.server, "{name}");
            }
            queues += 1;
        }
    }
    assert!(invitations >= 9, "invitation vectors: {invitations}");
    assert!(contacts >= 8, "contact vectors: {contacts}");
    assert!(queues >= 20, "queues: {queues}");
}
