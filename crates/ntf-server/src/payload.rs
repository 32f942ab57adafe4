//! APNs payloads (reference §5.5): the JSON the ntf-server hands to the push-server.
//!
//! ```text
//! verification  {"aps":{"content-available":1},"notificationData":{"nonce":N,"verification":E}}
//! message       {"aps":{"mutable-content":1,"alert":TEXT,"category":"NTF_CAT_CHECK_MESSAGE"},
//!                "notificationData":{"message":E,"nonce":N}}
//! silent (hush) {"aps":{"content-available":1},"notificationData":{"message":E,"nonce":N}}
//! periodic      {"aps":{"content-available":1},"notificationData":{"checkMessages":true}}
//! ```
//!
//! `E` = base64url (padded) of crypto_box(token DH secret, N, pad(data, 3072)): the registration
//! code or the `PNMessages` text. Keys are written in the reference's order (`aps` fields as in
//! `APNS.hs`, `notificationData` sorted as aeson does), so reference pushes are byte-identical to
//! the reference's. The visible part of an alert is a fixed generic text: no content, no relay.

use hush_crypto::DhSecret;
use hush_proto::encoding::base64url_encode;
use hush_proto::ntf::PnMessageData;
#[cfg(test)]
use hush_proto::ntf::encode_pn_messages;

/// Padded plaintext length of encrypted push data in the reference (its message pushes are
/// ≈4.3 KB of JSON, over APNs' documented 4096-byte limit).
pub const PAYLOAD_PAD: usize = 3072;
/// hush's default padded length: a message push with 6 notifications still fits, and the JSON
/// stays under 4096 bytes. Devices unpad by the length prefix, so both sizes decrypt alike.
pub const DEFAULT_PAYLOAD_PAD: usize = 2880;
/// Alert text of the reference's message pushes.
pub const REFERENCE_ALERT_TEXT: &str = "Encrypted message or another app event";
/// Default alert text of hush's coalesced visible alerts.
pub const DEFAULT_ALERT_TEXT: &str = "You have a new message";
/// Notification category of message alerts.
pub const CHECK_MESSAGE_CATEGORY: &str = "NTF_CAT_CHECK_MESSAGE";
/// Most notifications carried by one push (one per queue, newest kept).
pub const MAX_PUSH_NTFS: usize = 6;

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("push data does not fit the padded size")]
    TooLarge,
    #[error("nothing to push")]
    Empty,
}

/// How a message push is presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presentation<'a> {
    /// Background (`content-available`), silent.
    Background,
    /// `mutable-content` alert with this generic text and category `NTF_CAT_CHECK_MESSAGE`.
    Alert { text: &'a str },
}

fn encrypt(
    dh: &DhSecret,
    nonce: &[u8; 24],
    data: &[u8],
    pad: usize,
) -> Result<String, PayloadError> {
    let ct = hush_crypto::cb_encrypt(dh, nonce, data, pad).map_err(|_| PayloadError::TooLarge)?;
    Ok(base64url_encode(&ct))
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

const APS_BACKGROUND: &str = r#"{"content-available":1}"#;

fn aps_alert(text: &str) -> String {
    format!(
        r#"{{"mutable-content":1,"alert":{},"category":"{CHECK_MESSAGE_CATEGORY}"}}"#,
        json_str(text)
    )
}

/// Verification push (background) carrying the encrypted registration code.
pub fn verification_payload(
    dh: &DhSecret,
    nonce: &[u8; 24],
    reg_code: &[u8],
    pad: usize,
) -> Result<Vec<u8>, PayloadError> {
    let e = encrypt(dh, nonce, reg_code, pad)?;
    Ok(format!(
        r#"{{"aps":{APS_BACKGROUND},"notificationData":{{"nonce":"{}","verification":"{e}"}}}}"#,
        base64url_encode(nonce)
    )
    .into_bytes())
}

/// Message push carrying the encrypted `PNMessages` of `items` (oldest first). If the text does
/// not fit the padded size, the oldest items are left out until it does.
pub fn message_payload(
    dh: &DhSecret,
    nonce: &[u8; 24],
    items: &[PnMessageData],
    presentation: Presentation<'_>,
    pad: usize,
) -> Result<Vec<u8>, PayloadError> {
    let start = items.len().saturating_sub(MAX_PUSH_NTFS);
    let mut items = items.get(start..).unwrap_or_default();
    let e = loop {
        if items.is_empty() {
            return Err(PayloadError::Empty);
        }
        let text = pn_messages_text(items);
        match encrypt(dh, nonce, text.as_bytes(), pad) {
            Ok(e) => break e,
            Err(_) => items = items.get(1..).unwrap_or_default(),
        }
    };
    let aps = match presentation {
        Presentation::Background => std::borrow::Cow::Borrowed(APS_BACKGROUND),
        Presentation::Alert { text } => std::borrow::Cow::Owned(aps_alert(text)),
    };
    // {"aps":APS,"notificationData":{"message":"E","nonce":"N"}} written into one buffer
    let nonce = base64url_encode(nonce);
    let mut out = Vec::with_capacity(64 + aps.len() + e.len() + nonce.len());
    out.extend_from_slice(br#"{"aps":"#);
    out.extend_from_slice(aps.as_bytes());
    out.extend_from_slice(br#","notificationData":{"message":""#);
    out.extend_from_slice(e.as_bytes());
    out.extend_from_slice(br#"","nonce":""#);
    out.extend_from_slice(nonce.as_bytes());
    out.extend_from_slice(br#""}}"#);
    Ok(out)
}

/// `hush_proto::ntf::encode_pn_messages` (the same text) with each relay's address rendered
/// once per push instead of once per notification (the six notifications of a push are mostly
/// from a few relays; rendering them was a third of the payload's cost).
fn pn_messages_text(items: &[PnMessageData]) -> String {
    use std::fmt::Write as _;
    let mut servers: Vec<(&hush_proto::address::ProtocolServer, String)> = Vec::new();
    let mut out = String::with_capacity(items.len() * 200);
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        let k = match servers.iter().position(|(s, _)| *s == &it.queue.server) {
            Some(k) => k,
            None => {
                servers.push((&it.queue.server, it.queue.server.to_text()));
                servers.len() - 1
            }
        };
        // PnMessageData::to_text: "<server>/<notifier id> <ts> <nonce> <enc meta>"
        out.push_str(&servers[k].1);
        out.push('/');
        out.push_str(&base64url_encode(&it.queue.notifier_id));
        let _ = write!(out, " {} ", it.ntf_ts);
        out.push_str(&base64url_encode(&it.nonce));
        out.push(' ');
        out.push_str(&base64url_encode(&it.enc_meta));
    }
    out
}

/// Periodic (`TCRN`) push: background, not encrypted.
pub fn check_messages_payload() -> Vec<u8> {
    format!(r#"{{"aps":{APS_BACKGROUND},"notificationData":{{"checkMessages":true}}}}"#)
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast text is `encode_pn_messages`' byte for byte (several relays, repeated ones,
    /// negative and large timestamps, empty metadata).
    #[test]
    fn pn_messages_text_is_the_reference_encoding() {
        let servers = [
            "smp://LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI=@localhost:5001",
            "smp://LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI=@localhost:5002",
            "smp://0YuTwO05YJWS8rkjn9eLJDjQhFKvIYd8d4xG8X1blIU=@smp8.simplex.im,beccx4yfxxbvyhqypaavemqurytl6hozr47wfc7uuecacjqdvwpw2xid.onion",
        ];
        let items: Vec<PnMessageData> = (0..6u8)
            .map(|i| PnMessageData {
                queue: SmpQueueNtf {
                    server: hush_proto::address::ProtocolServer::parse(
                        servers[usize::from(i) % 3 * usize::from(i % 2 == 0)],
                    )
                    .unwrap(),
                    notifier_id: vec![i; 24],
                },
                ntf_ts: [0, -5, 1_733_000_000, i64::MAX, i64::MIN, 42][usize::from(i)],
                nonce: [i.wrapping_mul(37); 24],
                enc_meta: vec![i; usize::from(i) * 13],
            })
            .collect();
        for n in 1..=items.len() {
            assert_eq!(
                pn_messages_text(&items[..n]),
                encode_pn_messages(&items[..n])
            );
        }
        assert_eq!(pn_messages_text(&[]), encode_pn_messages(&[]));
    }
    use hush_proto::ntf::SmpQueueNtf;
    use serde_json::Value;

    fn vectors() -> Vec<Value> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/vectors/ntf.json"
        );
        let text = std::fs::read_to_string(path).expect("ntf.json vectors missing");
        serde_json::from_str(&text).unwrap()
    }

    fn vector(name: &str) -> Value {
        vectors()
            .into_iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("vector {name} missing"))
    }

    fn hx(v: &Value) -> Vec<u8> {
        hex::decode(v.as_str().unwrap()).unwrap()
    }

    fn arr<const N: usize>(v: &Value) -> [u8; N] {
        hx(v).try_into().unwrap()
    }

    fn pn_items(v: &Value) -> Vec<PnMessageData> {
        v["inputs"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| PnMessageData {
                queue: SmpQueueNtf {
                    server: hush_proto::address::ProtocolServer::parse(
                        i["smp_server"].as_str().unwrap(),
                    )
                    .unwrap(),
                    notifier_id: hx(&i["notifier_id_hex"]),
                },
                ntf_ts: i["ntf_ts"].as_i64().unwrap(),
                nonce: arr(&i["nmsg_nonce_hex"]),
                enc_meta: hx(&i["enc_nmsg_meta_hex"]),
            })
            .collect()
    }

    #[test]
    fn apns_vectors() {
        let mut checked = 0;
        // verification: DH from the two private/public keys, exact JSON bytes
        let v = vector("apns.verification_push");
        let client =
            hush_crypto::X25519Secret::from_bytes(arr(&v["inputs"]["client_dh_private_hex"]));
        let server =
            hush_crypto::X25519Secret::from_bytes(arr(&v["inputs"]["server_dh_private_hex"]));
        let dh = server.dh(&client.public());
        assert_eq!(
            dh.as_bytes().to_vec(),
            hx(&v["inputs"]["tkn_dh_secret_hex"])
        );
        let json = verification_payload(
            &dh,
            &arr(&v["inputs"]["nonce_hex"]),
            &hx(&v["inputs"]["reg_code_hex"]),
            v["inputs"]["padded_len"].as_u64().unwrap() as usize,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            v["expected"]["json"].as_str().unwrap()
        );
        let parsed: Value = serde_json::from_slice(&json).unwrap();
        let ct = hush_proto::encoding::base64url_decode(
            parsed["notificationData"]["verification"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(ct, hx(&v["expected"]["ciphertext_hex"]));
        assert_eq!(ct.len(), 3088);
        checked += 1;

        // message: PNMessages text from pn_messages.text, then the exact JSON
        let pn = vector("pn_messages.text");
        let items = pn_items(&pn);
        assert_eq!(items.len(), 2);
        assert_eq!(
            encode_pn_messages(&items),
            pn["expected"]["text"].as_str().unwrap()
        );
        let v = vector("apns.message_push");
        let dh = DhSecret::from_bytes(arr(&v["inputs"]["tkn_dh_secret_hex"]));
        let json = message_payload(
            &dh,
            &arr(&v["inputs"]["nonce_hex"]),
            &items,
            Presentation::Alert {
                text: REFERENCE_ALERT_TEXT,
            },
            v["inputs"]["padded_len"].as_u64().unwrap() as usize,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            v["expected"]["json"].as_str().unwrap()
        );
        assert_eq!(
            json.len() as u64,
            v["expected"]["json_len"].as_u64().unwrap()
        );
        checked += 1;

        // periodic
        let v = vector("apns.check_messages_push");
        assert_eq!(
            String::from_utf8(check_messages_payload()).unwrap(),
            v["expected"]["json"].as_str().unwrap()
        );
        checked += 1;
        assert_eq!(checked, 3);
    }

    #[test]
    fn message_payload_keeps_newest_six_and_fits() {
        let pn = vector("pn_messages.text");
        let one = pn_items(&pn).remove(0);
        let items: Vec<PnMessageData> = (0..9)
            .map(|i| PnMessageData {
                ntf_ts: 1000 + i,
                ..one.clone()
            })
            .collect();
        let dh = DhSecret::from_bytes([7; 32]);
        let nonce = [1; 24];
        let json = message_payload(
            &dh,
            &nonce,
            &items,
            Presentation::Background,
            DEFAULT_PAYLOAD_PAD,
        )
        .unwrap();
        assert!(json.len() < 4096, "{}", json.len());
        let v: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["aps"]["content-available"], 1);
        let ct = hush_proto::encoding::base64url_decode(
            v["notificationData"]["message"].as_str().unwrap(),
        )
        .unwrap();
        let plain = hush_crypto::cb_decrypt(&dh, &nonce, &ct).unwrap();
        let got = hush_proto::ntf::parse_pn_messages(std::str::from_utf8(&plain).unwrap()).unwrap();
        assert_eq!(got.len(), 6);
        assert_eq!(got[0].ntf_ts, 1003);
        assert_eq!(got[5].ntf_ts, 1008);
        assert!(matches!(
            message_payload(&dh, &nonce, &[], Presentation::Background, PAYLOAD_PAD),
            Err(PayloadError::Empty)
        ));
    }

    #[test]
    fn alert_text_is_escaped() {
        let dh = DhSecret::from_bytes([7; 32]);
        let pn = vector("pn_messages.text");
        let json = message_payload(
            &dh,
            &[0; 24],
            &pn_items(&pn),
            Presentation::Alert { text: "a \"b\"\n" },
            PAYLOAD_PAD,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["aps"]["alert"], "a \"b\"\n");
        assert_eq!(v["aps"]["category"], CHECK_MESSAGE_CATEGORY);
        assert_eq!(v["aps"]["mutable-content"], 1);
    }
}
