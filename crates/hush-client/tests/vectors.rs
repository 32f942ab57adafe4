//! Wire bytes against /work/shared/vectors: transmissions the client encodes (signed SUB at
//! v18 and v6, crypto_box authenticator, PING), responses and events it decodes (PONG, SOK,
//! MSG, NMSG), MSG body / quota marker / NMSG metadata decryption.

mod common;

use common::{hex_of, vector};
use hush_client::core::{Incoming, SessionParams, decode_incoming, encode_command};
use hush_client::msg::{parse_nmsg_meta, parse_rcv_msg_body};
use hush_client::{AuthKey, RawMsg, RcvMsgBody, ServerEvent, decrypt_nmsg};
use hush_crypto::keys::Ed25519Secret;
use hush_crypto::{DhSecret, X25519Public, X25519Secret};
use hush_proto::smp::BrokerMsg;

fn session_of(v: &serde_json::Value) -> SessionParams {
    SessionParams {
        version: v["inputs"]["smp_version"].as_u64().unwrap_or(18) as u16,
        session_id: hex_of(&v["inputs"]["session_id_hex"]),
        server_session_key: None,
        block_size: 16384,
    }
}

/// `transmission.v18.SUB.ed25519` and `transmission.v6.SUB.ed25519`: the client's encoding
/// of a signed SUB (signature over sessionId ‖ corrId ‖ entityId ‖ command; v6 puts the
/// session id on the wire; v18 adds the empty service-signature slot).
#[test]
fn signed_sub_transmissions() {
    let mut n = 0;
    for name in [
        "transmission.v18.SUB.ed25519",
        "transmission.v6.SUB.ed25519",
    ] {
        let v = vector("commands.json", name);
        let i = &v["inputs"];
        let seed: [u8; 32] = hex_of(&i["ed25519_seed_hex"]).try_into().unwrap();
        let key = AuthKey::Ed25519(Ed25519Secret::from_seed(&seed));
        let t = encode_command(
            &session_of(&v),
            &hex_of(&i["corr_id_hex"]),
            &hex_of(&i["entity_id_hex"]),
            i["command_ascii"].as_str().unwrap().as_bytes(),
            Some(&key),
        )
        .unwrap();
        assert_eq!(hex::encode(&t), v["expected"]["transmission_hex"], "{name}");
        if let Some(spki) = i.get("ed25519_public_spki_hex") {
            assert_eq!(hex::encode(key.public_der().unwrap().as_bytes()), *spki);
        }
        n += 1;
    }
    assert_eq!(n, 2);
}

/// `transmission.v18.SUB.authenticator` with the keys of `authenticator.crypto_box.SUB`: an
/// X25519 queue key makes the 80-byte authenticator with the relay's session key.
#[test]
fn authenticator_sub_transmission() {
    let v = vector("commands.json", "transmission.v18.SUB.authenticator");
    let k = vector("crypto.json", "authenticator.crypto_box.SUB");
    let ki = &k["inputs"];
    let own: [u8; 32] = hex_of(&ki["client_queue_private_key_hex"])
        .try_into()
        .unwrap();
    let srv: [u8; 32] = hex_of(&ki["server_session_public_key_hex"])
        .try_into()
        .unwrap();
    let mut session = session_of(&v);
    session.server_session_key = Some(X25519Public(srv));
    let key = AuthKey::X25519(X25519Secret::from_bytes(own));
    let t = encode_command(
        &session,
        &hex_of(&v["inputs"]["corr_id_hex"]),
        &hex_of(&v["inputs"]["entity_id_hex"]),
        b"SUB",
        Some(&key),
    )
    .unwrap();
    assert_eq!(hex::encode(&t), v["expected"]["transmission_hex"]);
    assert_eq!(
        hex::encode(&t[1..81]),
        k["expected"]["authenticator_hex"].as_str().unwrap()
    );
    // Without a relay session key an authenticator cannot be made.
    session.server_session_key = None;
    assert!(encode_command(&session, &[1; 24], &[2; 24], b"SUB", Some(&key)).is_err());
}

/// `transmission.v18.PING`: unsigned request bytes, and its PONG response correlates.
#[test]
fn ping_and_pong() {
    let v = vector("commands.json", "transmission.v18.PING");
    let corr = hex_of(&v["inputs"]["corr_id_hex"]);
    let s = SessionParams {
        version: 18,
        session_id: vec![1; 32],
        server_session_key: None,
        block_size: 16384,
    };
    let t = encode_command(&s, &corr, &[], b"PING", None).unwrap();
    assert_eq!(hex::encode(&t), v["expected"]["transmission_hex"]);
    match decode_incoming(&hex_of(&v["expected"]["response_transmission_hex"]), &s) {
        Incoming::Response {
            corr_id,
            entity_id,
            msg,
        } => {
            assert_eq!(corr_id, corr);
            assert!(entity_id.is_empty());
            assert_eq!(msg.unwrap(), BrokerMsg::Pong);
        }
        other => panic!("expected a response, got {other:?}"),
    }
}

/// `transmission.v18.SUB.response_SOK`: decoded as the SUB's response.
#[test]
fn sok_response() {
    let v = vector("commands.json", "transmission.v18.SUB.response_SOK");
    let s = SessionParams {
        version: 18,
        session_id: vec![1; 32],
        server_session_key: None,
        block_size: 16384,
    };
    match decode_incoming(&hex_of(&v["expected"]["transmission_hex"]), &s) {
        Incoming::Response {
            corr_id,
            entity_id,
            msg,
        } => {
            assert_eq!(corr_id, hex_of(&v["inputs"]["corr_id_hex"]));
            assert_eq!(entity_id, hex_of(&v["inputs"]["entity_id_hex"]));
            assert_eq!(msg.unwrap(), BrokerMsg::Sok(None));
        }
        other => panic!("expected a response, got {other:?}"),
    }
}

fn event_transmission(command: &[u8], entity: &[u8]) -> Vec<u8> {
    // authorization "" ‖ corrId "" ‖ entity ‖ command
    let mut t = vec![0, 0, entity.len() as u8];
    t.extend_from_slice(entity);
    t.extend_from_slice(command);
    t
}

/// `encode.MSG` (prefix) + `msg_body.encrypt` (body): a pushed MSG event decodes and its body
/// decrypts to the vector's timestamp, flag and text.
#[test]
fn msg_event_decrypts() {
    let m = vector("commands.json", "encode.MSG");
    let b = vector("crypto.json", "msg_body.encrypt");
    let mut cmd = hex_of(&m["expected"]["prefix_hex"]);
    cmd.extend(hex_of(&b["expected"]["enc_body_hex"]));
    assert_eq!(
        cmd.len() as u64,
        m["expected"]["total_len"].as_u64().unwrap()
    );
    let s = SessionParams {
        version: 18,
        session_id: vec![1; 32],
        server_session_key: None,
        block_size: 16384,
    };
    let rcv_id = [9u8; 24];
    let Incoming::Event(ServerEvent::Message { rcv_id: got, msg }) =
        decode_incoming(&event_transmission(&cmd, &rcv_id), &s)
    else {
        panic!("expected a MSG event")
    };
    assert_eq!(got, rcv_id);
    assert_eq!(msg.msg_id, hex_of(&b["inputs"]["msg_id_nonce_hex"]));
    let secret = DhSecret::from_bytes(
        hex_of(&b["inputs"]["rcv_dh_secret_hex"])
            .try_into()
            .unwrap(),
    );
    let plain = msg.decrypt(&secret).unwrap();
    assert_eq!(
        plain.body,
        RcvMsgBody::Message {
            ts: b["inputs"]["msg_ts_seconds"].as_i64().unwrap(),
            flags: hush_proto::smp::MsgFlags {
                notification: b["inputs"]["notification_flag"].as_bool().unwrap()
            },
            body: b["inputs"]["body_ascii"]
                .as_str()
                .unwrap()
                .as_bytes()
                .to_vec(),
        }
    );
    // The plaintext encoder matches the vector too.
    assert_eq!(
        hex::encode(plain.body.encode()),
        b["inputs"]["plaintext_hex"].as_str().unwrap()
    );
    // A wrong secret or a flipped byte does not decrypt.
    assert!(msg.decrypt(&DhSecret::from_bytes([0; 32])).is_err());
    let mut bad = msg.clone();
    bad.enc_body[100] ^= 1;
    assert!(bad.decrypt(&secret).is_err());
    let mut bad = msg;
    bad.msg_id[0] ^= 1;
    assert!(RawMsg::decrypt(&bad, &secret).is_err());
}

/// `msg_body.quota_marker_plaintext`: parses as the quota marker and encodes back.
#[test]
fn quota_marker() {
    let v = vector("crypto.json", "msg_body.quota_marker_plaintext");
    let plain = hex_of(&v["expected"]["plaintext_hex"]);
    let body = parse_rcv_msg_body(&plain).unwrap();
    assert_eq!(
        body,
        RcvMsgBody::Quota {
            ts: v["inputs"]["msg_ts_seconds"].as_i64().unwrap()
        }
    );
    assert_eq!(body.encode(), plain);
}

/// `encode.NMSG` + `nmsg_meta.encrypt`: an NMSG event decodes and its metadata decrypts
/// (with the DH secret derived from the vector's keys) to the message id and timestamp.
#[test]
fn nmsg_event_decrypts() {
    let e = vector("commands.json", "encode.NMSG");
    let m = vector("ntf.json", "nmsg_meta.encrypt");
    let s = SessionParams {
        version: 18,
        session_id: vec![1; 32],
        server_session_key: None,
        block_size: 16384,
    };
    let nid = [5u8; 24];
    let Incoming::Event(ServerEvent::Notification {
        notifier_id,
        nonce,
        enc_meta,
    }) = decode_incoming(
        &event_transmission(&hex_of(&e["expected"]["bytes_hex"]), &nid),
        &s,
    )
    else {
        panic!("expected an NMSG event")
    };
    assert_eq!(notifier_id, nid);
    assert_eq!(nonce.to_vec(), hex_of(&m["inputs"]["nonce_hex"]));
    assert_eq!(enc_meta, hex_of(&m["expected"]["enc_meta_hex"]));
    // Derive the secret the way a recipient does: own private key × relay's NID key.
    let own: [u8; 32] = hex_of(&m["inputs"]["recipient_ntf_dh_private_hex"])
        .try_into()
        .unwrap();
    let srv: [u8; 32] = hex_of(&m["inputs"]["server_ntf_dh_public_hex"])
        .try_into()
        .unwrap();
    let secret = X25519Secret::from_bytes(own).dh(&X25519Public(srv));
    assert_eq!(
        secret.as_bytes().to_vec(),
        hex_of(&m["inputs"]["rcv_ntf_dh_secret_hex"])
    );
    let meta = decrypt_nmsg(&secret, &nonce, &enc_meta).unwrap();
    assert_eq!(meta.msg_id, hex_of(&m["inputs"]["msg_id_hex"]));
    assert_eq!(meta.ts, m["inputs"]["msg_ts_seconds"].as_i64().unwrap());
    assert_eq!(
        parse_nmsg_meta(&hex_of(&m["inputs"]["plaintext_hex"])).unwrap(),
        meta
    );
    assert!(decrypt_nmsg(&DhSecret::from_bytes([1; 32]), &nonce, &enc_meta).is_err());
}
