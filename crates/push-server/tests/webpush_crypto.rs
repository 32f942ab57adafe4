//! RFC 8291 Appendix A byte for byte, RFC 8292 VAPID JWT checked by an independent verifier
//! (the `openssl` command-line tool), Web Push status mapping.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use push_server::jwt::{Es256Key, SigFormat, verify_es256};
use push_server::provider::webpush::{self, Vapid};

fn b64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

// RFC 8291 §5 and Appendix A (the same values appear in several independent implementations'
// test suites; each is asserted below).
const PLAINTEXT: &str = "When I grow up, I want to be a watermelon";
const UA_PUBLIC: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
const AS_PUBLIC: &str =
    "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
const AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
const AUTH_SECRET: &str = "BTBZMqHH6r4Tts7J_aSIgg";
const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
const ECDH_SECRET: &str = "kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs";
const IKM: &str = "S4lYMb_L0FxCeq0WhDx813KgSYqU26kOyzWUdsXYyrg";
const PRK: &str = "09_eUZGrsvxChDCGRCdkLiDXrReGOEVeSCdCcPBSJSc";
const CEK: &str = "oIhVW04MRdy2XN9CiKLxTg";
const NONCE: &str = "4h_95klXJ5E_qnoN";
const BODY: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

#[test]
fn rfc8291_appendix_a_intermediates() {
    let as_key = Es256Key::from_private_bytes(&b64(AS_PRIVATE)).unwrap();
    assert_eq!(as_key.public_uncompressed().unwrap(), b64(AS_PUBLIC));
    let ua_key = Es256Key::from_private_bytes(&b64(UA_PRIVATE)).unwrap();
    assert_eq!(ua_key.public_uncompressed().unwrap(), b64(UA_PUBLIC));

    let secret = webpush::ecdh_p256(as_key.ec_key(), &b64(UA_PUBLIC)).unwrap();
    assert_eq!(secret.to_vec(), b64(ECDH_SECRET));
    // Symmetric from the UA side.
    let secret2 = webpush::ecdh_p256(ua_key.ec_key(), &b64(AS_PUBLIC)).unwrap();
    assert_eq!(secret, secret2);

    let salt: [u8; 16] = b64(SALT).try_into().unwrap();
    let ks = webpush::key_schedule(
        &secret,
        &b64(AUTH_SECRET),
        &b64(UA_PUBLIC),
        &b64(AS_PUBLIC),
        &salt,
    )
    .unwrap();
    assert_eq!(ks.ikm.to_vec(), b64(IKM));
    assert_eq!(ks.prk.to_vec(), b64(PRK));
    assert_eq!(ks.cek.to_vec(), b64(CEK));
    assert_eq!(ks.nonce.to_vec(), b64(NONCE));
}

#[test]
fn rfc8291_appendix_a_body_byte_for_byte() {
    let as_key = Es256Key::from_private_bytes(&b64(AS_PRIVATE)).unwrap();
    let salt: [u8; 16] = b64(SALT).try_into().unwrap();
    let body = webpush::encrypt_with(
        &b64(UA_PUBLIC),
        &b64(AUTH_SECRET),
        PLAINTEXT.as_bytes(),
        &as_key,
        &salt,
    )
    .unwrap();
    assert_eq!(body, b64(BODY));
    assert_eq!(body.len(), 86 + 41 + 1 + 16);
    assert_eq!(&body[16..21], &[0, 0, 0x10, 0, 65]);

    // The UA decrypts it.
    let ua_key = Es256Key::from_private_bytes(&b64(UA_PRIVATE)).unwrap();
    let plain = webpush::decrypt(&ua_key, &b64(AUTH_SECRET), &body).unwrap();
    assert_eq!(plain, PLAINTEXT.as_bytes());
}

#[test]
fn fresh_encryption_round_trips_and_never_repeats() {
    let ua = Es256Key::generate().unwrap();
    let auth: [u8; 16] = rand::random();
    let msg = br#"{"aps":{"content-available":1},"notificationData":{"checkMessages":true}}"#;
    let a = webpush::encrypt(&ua.public_uncompressed().unwrap(), &auth, msg).unwrap();
    let b = webpush::encrypt(&ua.public_uncompressed().unwrap(), &auth, msg).unwrap();
    assert_ne!(a[..16], b[..16], "fresh salt per message");
    assert_ne!(a[21..86], b[21..86], "fresh sender key per message");
    assert_eq!(webpush::decrypt(&ua, &auth, &a).unwrap(), msg);
    // Wrong auth secret fails.
    assert!(webpush::decrypt(&ua, &[0u8; 16], &a).is_err());
    // Size limit: 3993 bytes fit exactly one 4096-byte body.
    let max = vec![7u8; webpush::MAX_PLAINTEXT];
    let body = webpush::encrypt(&ua.public_uncompressed().unwrap(), &auth, &max).unwrap();
    assert_eq!(body.len(), 4096);
    assert!(webpush::encrypt(&ua.public_uncompressed().unwrap(), &auth, &[0u8; 3994]).is_err());
    // A point not on the curve is refused.
    let mut bogus = ua.public_uncompressed().unwrap();
    bogus[40] ^= 0xff;
    assert!(webpush::encrypt(&bogus, &auth, msg).is_err());
}

fn run(cmd: &mut std::process::Command) -> std::process::Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (is the openssl CLI installed?): {e}"))
}

/// Converts a 64-byte JOSE signature to DER (independently of the code under test: hand-built ASN.1).
fn jose_to_der(sig: &[u8]) -> Vec<u8> {
    fn int(b: &[u8]) -> Vec<u8> {
        let mut v: Vec<u8> = b.iter().copied().skip_while(|x| *x == 0).collect();
        if v.is_empty() || v[0] & 0x80 != 0 {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    }
    let mut body = int(&sig[..32]);
    body.extend(int(&sig[32..]));
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

#[test]
fn vapid_jwt_verifies_with_the_openssl_cli() {
    let dir = tempfile::tempdir().unwrap();
    let key = Es256Key::generate().unwrap();
    let vapid = Vapid {
        key: key.clone(),
        subject: "mailto:ops@example.org".into(),
        lifetime: std::time::Duration::from_secs(12 * 3600),
    };
    let now = 1_700_000_000;
    let header = vapid
        .authorization("https://push.example.net", now)
        .unwrap();
    // `vapid t=<jwt>, k=<key>`
    let rest = header.strip_prefix("vapid t=").unwrap();
    let (jwt, k) = rest.split_once(", k=").unwrap();
    assert_eq!(b64(k), key.public_uncompressed().unwrap());
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let h: serde_json::Value = serde_json::from_slice(&b64(parts[0])).unwrap();
    assert_eq!(h, serde_json::json!({"typ": "JWT", "alg": "ES256"}));
    let c: serde_json::Value = serde_json::from_slice(&b64(parts[1])).unwrap();
    assert_eq!(c["aud"], "https://push.example.net");
    assert_eq!(c["sub"], "mailto:ops@example.org");
    assert_eq!(c["exp"], now + 12 * 3600);
    let sig = b64(parts[2]);
    assert_eq!(sig.len(), 64, "RFC 8292 / RFC 7518: r || s");

    // Independent verification: openssl dgst over "header.claims" with the DER form of r||s,
    // against the public key rebuilt from the `k=` parameter (uncompressed point → SPKI DER).
    let signed = format!("{}.{}", parts[0], parts[1]);
    std::fs::write(dir.path().join("data"), signed.as_bytes()).unwrap();
    std::fs::write(dir.path().join("sig.der"), jose_to_der(&sig)).unwrap();
    let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    spki.extend(b64(k));
    std::fs::write(dir.path().join("pub.der"), &spki).unwrap();
    let out = run(std::process::Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-keyform",
            "DER",
            "-verify",
            "pub.der",
            "-signature",
            "sig.der",
            "data",
        ])
        .current_dir(dir.path()));
    assert!(
        out.status.success(),
        "openssl rejected the VAPID JWT: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Verified OK"));

    // And a tampered token is rejected by the same verifier (the check can fail).
    std::fs::write(dir.path().join("data"), format!("{signed}x")).unwrap();
    let out = run(std::process::Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-keyform",
            "DER",
            "-verify",
            "pub.der",
            "-signature",
            "sig.der",
            "data",
        ])
        .current_dir(dir.path()));
    assert!(!out.status.success());
}

#[test]
fn apns_jwt_shape_matches_the_vector() {
    // ntf.json "apns.jwt": header/claims JSON exactly, unpadded base64url, signature DER (reference)
    // or JOSE (our default).
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/ntf.json"
    );
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("vectors missing at {path}: {e}"));
    let vectors: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let jwt_vectors: Vec<&serde_json::Value> =
        vectors.iter().filter(|v| v["name"] == "apns.jwt").collect();
    assert_eq!(jwt_vectors.len(), 1);
    let v = jwt_vectors[0];
    let kid = v["inputs"]["kid"].as_str().unwrap();
    let team = v["inputs"]["team_id"].as_str().unwrap();
    let iat = v["inputs"]["iat"].as_u64().unwrap();
    let key = Es256Key::generate().unwrap();
    let pubkey = push_server::jwt::public_key_from_pem(&key.public_pem().unwrap()).unwrap();
    for (format, sig_len) in [(SigFormat::Der, 68..=72), (SigFormat::Jose, 64..=64)] {
        let jwt = push_server::jwt::apns_provider_token(&key, kid, team, iat, format).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(!jwt.contains('='), "unpadded");
        assert_eq!(
            String::from_utf8(b64(parts[0])).unwrap(),
            v["expected"]["header_json"].as_str().unwrap()
        );
        assert_eq!(
            String::from_utf8(b64(parts[1])).unwrap(),
            v["expected"]["claims_json"].as_str().unwrap()
        );
        let sig = b64(parts[2]);
        assert!(
            sig_len.contains(&sig.len()),
            "{format:?}: {} bytes",
            sig.len()
        );
        if format == SigFormat::Der {
            assert_eq!(sig[0], 0x30, "DER SEQUENCE");
        }
        let verified = verify_es256(&jwt, &pubkey).unwrap();
        assert_eq!(verified.format, format);
        // A different key does not verify it.
        let other = Es256Key::generate().unwrap();
        let other_pub =
            push_server::jwt::public_key_from_pem(&other.public_pem().unwrap()).unwrap();
        assert!(verify_es256(&jwt, &other_pub).is_err());
    }
    assert_eq!(v["expected"]["refresh_seconds"].as_u64().unwrap(), 1800);
}

#[test]
fn webpush_status_mapping() {
    use push_server::{InvalidReason, PushError};
    assert!(webpush::webpush_status(201, None).is_ok());
    assert!(matches!(
        webpush::webpush_status(404, None),
        Err(PushError::InvalidToken {
            reason: InvalidReason::Unregistered,
            ..
        })
    ));
    assert!(matches!(
        webpush::webpush_status(410, None),
        Err(PushError::InvalidToken {
            reason: InvalidReason::Expired,
            ..
        })
    ));
    assert!(matches!(
        webpush::webpush_status(429, None),
        Err(PushError::RateLimited { .. })
    ));
    assert!(matches!(
        webpush::webpush_status(503, None),
        Err(PushError::Unavailable { .. })
    ));
    assert!(matches!(
        webpush::webpush_status(413, None),
        Err(PushError::PayloadTooLarge)
    ));
    assert!(matches!(
        webpush::webpush_status(400, None),
        Err(PushError::Rejected { .. })
    ));
}
