//! Every crypto.json family beyond the contract ones, ntf.json crypto vectors, and the real
//! signatures / authenticators of the commands.json / ntf.json `transmission.*` vectors.

mod common;
use common::*;

use hush_crypto::keys::signature_algorithm;
use hush_crypto::*;

fn b64std(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn ed25519_vectors() {
    let all = load("crypto");
    let mut n = 0;
    for v in family(&all, "ed25519.") {
        let (i, e) = (&v["inputs"], &v["expected"]);
        let nm = name(v);
        if nm.starts_with("ed25519.pub_from_seed_") {
            let sk = Ed25519Secret::from_seed(&hx32(&i["seed_hex"]));
            assert_eq!(sk.public().0.to_vec(), hx(&e["public_key_hex"]), "{nm}");
        } else if nm.starts_with("ed25519.spki.") {
            let pk = Ed25519Public(hx32(&i["public_key_hex"]));
            let der = hx(&e["der_hex"]);
            assert_eq!(der.len(), 44);
            assert_eq!(pk.to_spki_der(), der, "{nm}");
            assert_eq!(Ed25519Public::from_spki_der(&der).unwrap(), pk);
            assert_eq!(
                PublicKey::from_spki_der(&der).unwrap(),
                PublicKey::Ed25519(pk)
            );
            // an Ed25519 SPKI is not an X25519 key
            assert!(X25519Public::from_spki_der(&der).is_err());
        } else if nm.starts_with("ed25519.pkcs8.") {
            let seed = hx32(&i["seed_hex"]);
            let der = hx(&e["der_hex"]);
            assert_eq!(der.len(), 48);
            assert_eq!(
                Ed25519Secret::from_seed(&seed).to_pkcs8_der().to_vec(),
                der,
                "{nm}"
            );
            let back = Ed25519Secret::from_pkcs8_der(&der).unwrap();
            assert_eq!(*back.seed(), seed);
            assert!(matches!(
                PrivateKey::from_pkcs8_der(&der).unwrap(),
                PrivateKey::Ed25519(_)
            ));
        } else if nm.starts_with("ed25519.sign.") {
            let sk = Ed25519Secret::from_seed(&hx32(&i["seed_hex"]));
            let m = msg(i);
            let sig = hx(&e["signature_hex"]);
            assert_eq!(sk.sign(&m).to_vec(), sig, "{nm}");
            sk.public().verify(&m, &sig).unwrap();
            PublicKey::Ed25519(sk.public()).verify(&m, &sig).unwrap();
            assert!(sk.public().verify(b"other message", &sig).is_err(), "{nm}");
            let mut bad = sig.clone();
            bad[10] ^= 0x40;
            assert!(sk.public().verify(&m, &bad).is_err(), "{nm}");
        } else {
            panic!("unhandled vector {nm}");
        }
        n += 1;
    }
    assert_eq!(n, 8);
}

#[test]
fn keyhash_sha_vectors() {
    let all = load("crypto");
    let kh = named(&all, "keyhash.sha256_of_spki");
    assert_eq!(
        sha256(&hx(&kh["inputs"]["der_hex"])).to_vec(),
        hx(&kh["expected"]["sha256_hex"])
    );
    let mut n = 0;
    for v in family(&all, "sha256.") {
        assert_eq!(
            sha256(&msg(&v["inputs"])).to_vec(),
            hx(&v["expected"]["digest_hex"]),
            "{}",
            name(v)
        );
        n += 1;
    }
    for v in family(&all, "sha512.") {
        assert_eq!(
            sha512(&msg(&v["inputs"])).to_vec(),
            hx(&v["expected"]["digest_hex"]),
            "{}",
            name(v)
        );
        n += 1;
    }
    assert_eq!(n, 5);
}

#[test]
fn literal_key_vectors() {
    let all = load("crypto");
    let mut n = 0;
    for v in family(&all, "literal_key.") {
        let (i, e) = (&v["inputs"], &v["expected"]);
        let nm = name(v);
        let der = b64std(s(&i["base64_std"]));
        assert_eq!(der, hx(&e["der_hex"]), "{nm}");
        if let Some(alg) = e.get("algorithm") {
            let pk = PublicKey::from_spki_der(&der).unwrap();
            let want = match s(alg) {
                "ed25519" => KeyAlgorithm::Ed25519,
                "x25519" => KeyAlgorithm::X25519,
                "x448" => KeyAlgorithm::X448,
                "ed448" => KeyAlgorithm::Ed448,
                a => panic!("{a}"),
            };
            assert_eq!(pk.algorithm(), want, "{nm}");
            assert_eq!(pk.raw().to_vec(), hx(&e["raw_public_key_hex"]), "{nm}");
            assert_eq!(pk.to_spki_der(), der);
            assert_eq!(der.len() as u64, e["der_len"].as_u64().unwrap());
            assert_eq!(
                hush_proto::encoding::base64url_encode(&der),
                s(&e["strEncode_base64url"])
            );
            let mut ss = vec![der.len() as u8];
            ss.extend_from_slice(&der);
            assert_eq!(ss, hx(&e["smpEncode_hex"]));
        } else {
            // private key literals (PKCS#8 v1)
            let sk = PrivateKey::from_pkcs8_der(&der).unwrap();
            assert_eq!(sk.to_pkcs8_der().unwrap().to_vec(), der, "{nm}");
            let pk = sk.public().unwrap();
            assert_eq!(pk.raw().to_vec(), hx(&e["public_key_hex"]), "{nm}");
            assert_eq!(pk.to_spki_der(), hx(&e["public_spki_hex"]), "{nm}");
            match sk {
                PrivateKey::Ed25519(k) => {
                    assert_eq!(k.seed().to_vec(), hx(&e["seed_hex"]));
                    let mut ss = vec![der.len() as u8];
                    ss.extend_from_slice(&der);
                    assert_eq!(ss, hx(&e["smpEncode_hex"]));
                }
                PrivateKey::X25519(k) => {
                    assert_eq!(k.to_bytes().to_vec(), hx(&e["private_key_hex"]));
                }
                _ => panic!("{nm}: unexpected algorithm"),
            }
        }
        n += 1;
    }
    assert_eq!(n, 6);

    let sig = named(&all, "literal.sampleSig");
    let raw = b64std(s(&sig["inputs"]["base64_std"]));
    assert_eq!(raw, hx(&sig["expected"]["signature_hex"]));
    assert_eq!(
        raw.len() as u64,
        sig["expected"]["length"].as_u64().unwrap()
    );
    assert_eq!(signature_algorithm(&raw), Some(SignAlgorithm::Ed25519));
    assert!(matches!(
        TransmissionAuth::parse(&raw).unwrap(),
        Some(TransmissionAuth::Signature(SignAlgorithm::Ed25519, _))
    ));
    // "verifies nothing": not against the upstream sample public key, nor the dummy key
    let sample = named(&all, "literal_key.samplePubKey");
    let pk = PublicKey::from_spki_der(&hx(&sample["expected"]["der_hex"])).unwrap();
    assert!(pk.verify(b"", &raw).is_err());
    assert!(!dummy_verify(SignAlgorithm::Ed25519, b"", &raw));
}

#[test]
fn ed448_x448_vectors() {
    let all = load("crypto");
    let v = named(&all, "ed448.pub_spki_pkcs8.seed_1..57");
    let (i, e) = (&v["inputs"], &v["expected"]);
    let sk = Ed448Secret::from_bytes(&hx(&i["private_key_hex"])).unwrap();
    let pk = sk.public().unwrap();
    assert_eq!(pk.0.to_vec(), hx(&e["public_key_hex"]));
    let spki = hx(&e["spki_der_hex"]);
    assert_eq!(spki.len() as u64, e["spki_len"].as_u64().unwrap());
    assert_eq!(pk.to_spki_der(), spki);
    assert_eq!(Ed448Public::from_spki_der(&spki).unwrap(), pk);
    assert_eq!(
        PublicKey::from_spki_der(&spki).unwrap(),
        PublicKey::Ed448(pk)
    );
    let p8 = hx(&e["pkcs8_der_hex"]);
    assert_eq!(p8.len() as u64, e["pkcs8_len"].as_u64().unwrap());
    assert_eq!(sk.to_pkcs8_der().unwrap().to_vec(), p8);
    let back = PrivateKey::from_pkcs8_der(&p8).unwrap();
    assert_eq!(back.public().unwrap(), PublicKey::Ed448(pk));

    let v = named(&all, "ed448.sign.deterministic test");
    let (i, e) = (&v["inputs"], &v["expected"]);
    let sk = Ed448Secret::from_bytes(&hx(&i["private_key_hex"])).unwrap();
    let m = msg(i);
    let sig = hx(&e["signature_hex"]);
    assert_eq!(sig.len(), 114);
    assert_eq!(e["length"].as_u64().unwrap(), 114);
    assert_eq!(sk.sign(&m).unwrap(), sig);
    assert_eq!(signature_algorithm(&sig), Some(SignAlgorithm::Ed448));
    let pk = sk.public().unwrap();
    pk.verify(&m, &sig).unwrap();
    assert!(pk.verify(b"x", &sig).is_err());
    assert!(pk.verify(&m, &sig[..64]).is_err());

    let v = named(&all, "x448.pub_spki_pkcs8.priv_1..56");
    let (i, e) = (&v["inputs"], &v["expected"]);
    let sk = X448Secret::from_bytes(&hx(&i["private_key_hex"])).unwrap();
    let pk = sk.public().unwrap();
    assert_eq!(pk.0.to_vec(), hx(&e["public_key_hex"]));
    let spki = hx(&e["spki_der_hex"]);
    assert_eq!(pk.to_spki_der(), spki);
    assert_eq!(X448Public::from_spki_der(&spki).unwrap(), pk);
    let p8 = hx(&e["pkcs8_der_hex"]);
    assert_eq!(sk.to_pkcs8_der().unwrap().to_vec(), p8);
    assert_eq!(
        PrivateKey::from_pkcs8_der(&p8).unwrap().public().unwrap(),
        PublicKey::X448(pk)
    );

    let v = named(&all, "x448.dh");
    let (i, e) = (&v["inputs"], &v["expected"]);
    let a = X448Secret::from_bytes(&hx(&i["private_key_hex"])).unwrap();
    let b = X448Secret::from_bytes(&hx(&i["peer_private_key_hex"])).unwrap();
    let b_pub = X448Public(hx(&i["peer_public_key_hex"]).try_into().unwrap());
    assert_eq!(b.public().unwrap(), b_pub);
    let want = hx(&e["shared_secret_hex"]);
    assert_eq!(a.dh(&b_pub).unwrap().to_vec(), want);
    assert_eq!(b.dh(&a.public().unwrap()).unwrap().to_vec(), want);
}

#[test]
fn crypto_box_vectors() {
    let all = load("crypto");
    let v = named(&all, "crypto_box.dh.padded");
    let (i, e) = (&v["inputs"], &v["expected"]);
    let ours = X25519Secret::from_bytes(hx32(&i["our_private_key_hex"]));
    let theirs = X25519Public(hx32(&i["their_public_key_hex"]));
    let dh = ours.dh(&theirs);
    assert_eq!(dh.as_bytes().to_vec(), hx(&i["dh_secret_hex"]));
    let nonce = hx24(&i["nonce_hex"]);
    let m = msg(i);
    let padded_len = i["padded_len"].as_u64().unwrap() as usize;
    let ct = hx(&e["ciphertext_hex"]);
    assert_eq!(ct.len() as u64, e["length"].as_u64().unwrap());
    assert_eq!(cb_encrypt(&dh, &nonce, &m, padded_len).unwrap(), ct);
    assert_eq!(cb_decrypt(&dh, &nonce, &ct).unwrap(), m);
    // cross-check with the crypto_box crate (NaCl box from the key pair)
    {
        use crypto_box::aead::Aead;
        let bx = crypto_box::SalsaBox::new(
            &crypto_box::PublicKey::from(theirs.0),
            &crypto_box::SecretKey::from(*ours.to_bytes()),
        );
        let padded = hush_proto::encoding::pad(&m, padded_len).unwrap();
        let nacl = bx.encrypt(&nonce.into(), padded.as_slice()).unwrap();
        assert_eq!(nacl, ct);
    }

    let v = named(&all, "crypto_box.dh.nopad");
    let (i, e) = (&v["inputs"], &v["expected"]);
    let dh = DhSecret::from_bytes(hx32(&i["dh_secret_hex"]));
    let nonce = hx24(&i["nonce_hex"]);
    let ct = hx(&e["ciphertext_hex"]);
    assert_eq!(cb_encrypt_no_pad(&dh, &nonce, &msg(i)), ct);
    assert_eq!(cb_decrypt_no_pad(&dh, &nonce, &ct).unwrap(), msg(i));
}

#[test]
fn authenticator_vector() {
    let all = load("crypto");
    let v = named(&all, "authenticator.crypto_box.SUB");
    let (i, e) = (&v["inputs"], &v["expected"]);
    let client = X25519Secret::from_bytes(hx32(&i["client_queue_private_key_hex"]));
    let client_pub = X25519Public(hx32(&i["client_queue_public_key_hex"]));
    let server = X25519Secret::from_bytes(hx32(&i["server_session_private_key_hex"]));
    let server_pub = X25519Public(hx32(&i["server_session_public_key_hex"]));
    assert_eq!(client.public(), client_pub);
    assert_eq!(server.public(), server_pub);
    let corr = hx(&i["corr_id_hex"]);
    let authorized = hush_proto::transmission::authorized_bytes(
        &hx(&i["session_id_hex"]),
        &corr,
        &hx(&i["entity_id_hex"]),
        s(&i["command_ascii"]).as_bytes(),
    );
    assert_eq!(authorized, hx(&i["authorized_hex"]));
    assert_eq!(sha512(&authorized).to_vec(), hx(&e["sha512_hex"]));
    let want = hx(&e["authenticator_hex"]);
    assert_eq!(want.len() as u64, e["length"].as_u64().unwrap());
    let a = cb_authenticate(&server_pub, &client, &corr, &authorized);
    assert_eq!(a.to_vec(), want);
    // server side
    assert!(cb_verify(&client_pub, &server, &corr, &want, &authorized));
    assert!(!cb_verify(&client_pub, &server, &corr, &want, b"other"));
    assert!(!cb_verify(
        &client_pub,
        &server,
        &corr[..23],
        &want,
        &authorized
    ));
    assert!(!cb_verify(&server_pub, &server, &corr, &want, &authorized));
    let mut bad = want.clone();
    bad[79] ^= 1;
    assert!(!cb_verify(&client_pub, &server, &corr, &bad, &authorized));
    // through the generic path
    let auth = TransmissionAuth::parse(&want).unwrap().unwrap();
    assert!(verify_transmission(
        Some(&PublicKey::X25519(client_pub)),
        Some(&auth),
        Some(&server),
        &authorized,
        &corr
    ));
    assert!(!verify_transmission(
        Some(&PublicKey::X25519(client_pub)),
        Some(&auth),
        None,
        &authorized,
        &corr
    ));
    assert!(!verify_transmission(
        None,
        Some(&auth),
        Some(&server),
        &authorized,
        &corr
    ));
}

#[test]
fn cb_nonce_pads_and_truncates() {
    assert_eq!(cb_nonce(b"ab")[..3], [b'a', b'b', 0]);
    assert_eq!(cb_nonce(b"ab")[2..], [0u8; 22]);
    let long: Vec<u8> = (0..30).collect();
    assert_eq!(cb_nonce(&long).to_vec(), long[..24].to_vec());
    assert_eq!(cb_nonce(b""), [0u8; 24]);
}

#[test]
fn sender_id_short_link_vectors() {
    let all = load("crypto");
    let v = named(&all, "sender_id_from_corr_id");
    let corr = hx(&v["inputs"]["corr_id_hex"]);
    assert_eq!(
        hush_crypto::hash::sha3_384(&corr).to_vec(),
        hx(&v["expected"]["sha3_384_hex"])
    );
    assert_eq!(
        sender_id_from_corr_id(&corr).to_vec(),
        hx(&v["expected"]["sender_id_hex"])
    );

    let v = named(&all, "short_link.link_key");
    assert_eq!(
        hush_crypto::hash::link_key(s(&v["inputs"]["fixed_data_ascii"]).as_bytes()).to_vec(),
        hx(&v["expected"]["link_key_hex"])
    );
}

#[test]
fn msg_body_vectors() {
    let all = load("crypto");
    let v = named(&all, "msg_body.encrypt");
    let (i, e) = (&v["inputs"], &v["expected"]);
    let dh = DhSecret::from_bytes(hx32(&i["rcv_dh_secret_hex"]));
    let msg_id = hx(&i["msg_id_nonce_hex"]);
    // plaintext = Int64 ts ‖ 'T' ‖ ' ' ‖ body
    let mut pt = Vec::new();
    hush_proto::encoding::put_int64(&mut pt, i["msg_ts_seconds"].as_i64().unwrap());
    pt.push(if i["notification_flag"].as_bool().unwrap() {
        b'T'
    } else {
        b'F'
    });
    pt.push(b' ');
    pt.extend_from_slice(s(&i["body_ascii"]).as_bytes());
    assert_eq!(pt, hx(&i["plaintext_hex"]));
    assert_eq!(
        i["padded_len"].as_u64().unwrap() as usize,
        hush_crypto::cryptobox::RCV_MSG_PADDED_LEN
    );
    let enc = encrypt_rcv_msg_body(&dh, &msg_id, &pt).unwrap();
    assert_eq!(enc.len() as u64, e["enc_body_len"].as_u64().unwrap());
    assert_eq!(enc.len(), hush_crypto::cryptobox::ENC_RCV_MSG_BODY_LEN);
    assert_eq!(enc, hx(&e["enc_body_hex"]));
    assert!(enc.starts_with(&hx(&e["enc_body_prefix_hex"])));
    assert_eq!(sha256(&enc).to_vec(), hx(&e["enc_body_sha256_hex"]));
    assert_eq!(decrypt_rcv_msg_body(&dh, &msg_id, &enc).unwrap(), pt);

    let q = named(&all, "msg_body.quota_marker_plaintext");
    let mut qm = b"QUOTA ".to_vec();
    hush_proto::encoding::put_int64(&mut qm, q["inputs"]["msg_ts_seconds"].as_i64().unwrap());
    assert_eq!(qm, hx(&q["expected"]["plaintext_hex"]));
    // the quota marker encrypts to the same size
    assert_eq!(
        encrypt_rcv_msg_body(&dh, &msg_id, &qm).unwrap().len(),
        16122
    );
}

#[test]
fn xftp_file_vector() {
    let all = load("crypto");
    let v = named(&all, "xftp.encryptFile.test.txt.256");
    let i = &v["inputs"];
    let mut m = hx(&i["file_header_hex"]);
    m.extend_from_slice(s(&i["source_ascii"]).as_bytes());
    assert_eq!(m.len() as u64, i["file_size"].as_u64().unwrap());
    let enc_size = i["enc_size"].as_u64().unwrap() as usize;
    let ct = hush_crypto::secretbox::sb_encrypt_tail_tag(
        &hx32(&i["key_hex"]),
        &hx24(&i["nonce_hex"]),
        &m,
        enc_size - 16,
    )
    .unwrap();
    assert_eq!(ct.len(), enc_size);
    assert_eq!(ct, hx(&v["expected"]["ciphertext_hex"]));
}

#[test]
fn vector_file_crypto_families_all_covered() {
    // Every crypto.json vector belongs to a family some test here asserts.
    let all = load("crypto");
    let known = [
        "ed25519.",
        "x25519.",
        "keyhash.",
        "literal_key.",
        "literal.",
        "ed448.",
        "x448.",
        "sha256.",
        "sha512.",
        "simplex_secretbox.",
        "xftp.",
        "crypto_box.",
        "authenticator.",
        "signed_x25519_key.",
        "sbchain.",
        "sender_id_from_corr_id",
        "short_link.",
        "msg_body.",
    ];
    for v in &all {
        let nm = name(v);
        assert!(
            known.iter().any(|k| nm.starts_with(k)),
            "uncovered vector {nm}"
        );
    }
    assert_eq!(all.len(), 52);
}

// ---------------------------------------------------------------------------------------------
// ntf.json

#[test]
fn ntf_nmsg_meta_vector() {
    let all = load("ntf");
    let v = named(&all, "nmsg_meta.encrypt");
    let (i, e) = (&v["inputs"], &v["expected"]);
    let rcp = X25519Secret::from_bytes(hx32(&i["recipient_ntf_dh_private_hex"]));
    let srv_pub = X25519Public(hx32(&i["server_ntf_dh_public_hex"]));
    let dh = rcp.dh(&srv_pub);
    assert_eq!(dh.as_bytes().to_vec(), hx(&i["rcv_ntf_dh_secret_hex"]));
    // NMsgMeta = shortString msgId ‖ Int64 ts
    let mut meta = Vec::new();
    hush_proto::encoding::put_short_string(&mut meta, &hx(&i["msg_id_hex"])).unwrap();
    hush_proto::encoding::put_int64(&mut meta, i["msg_ts_seconds"].as_i64().unwrap());
    assert_eq!(meta, hx(&i["plaintext_hex"]));
    let nonce = hx24(&i["nonce_hex"]);
    let enc = encrypt_nmsg_meta(&dh, &nonce, &meta).unwrap();
    assert_eq!(enc.len() as u64, e["length"].as_u64().unwrap());
    assert_eq!(enc, hx(&e["enc_meta_hex"]));
    assert_eq!(decrypt_nmsg_meta(&dh, &nonce, &enc).unwrap(), meta);
}

#[test]
fn ntf_apns_ciphertexts() {
    let all = load("ntf");
    let v = named(&all, "apns.verification_push");
    let (i, e) = (&v["inputs"], &v["expected"]);
    let client = X25519Secret::from_bytes(hx32(&i["client_dh_private_hex"]));
    let server = X25519Secret::from_bytes(hx32(&i["server_dh_private_hex"]));
    assert_eq!(client.public().0.to_vec(), hx(&i["client_dh_public_hex"]));
    assert_eq!(server.public().0.to_vec(), hx(&i["server_dh_public_hex"]));
    let dh = server.dh(&client.public());
    assert_eq!(dh.as_bytes().to_vec(), hx(&i["tkn_dh_secret_hex"]));
    assert_eq!(client.dh(&server.public()).as_bytes(), dh.as_bytes());
    let nonce = hx24(&i["nonce_hex"]);
    let reg_code = hx(&i["reg_code_hex"]);
    let padded_len = i["padded_len"].as_u64().unwrap() as usize;
    let ct = cb_encrypt(&dh, &nonce, &reg_code, padded_len).unwrap();
    assert_eq!(ct.len() as u64, e["ciphertext_len"].as_u64().unwrap());
    assert_eq!(ct, hx(&e["ciphertext_hex"]));
    assert_eq!(sha256(&ct).to_vec(), hx(&e["ciphertext_sha256_hex"]));
    // the JSON carries base64url (padded) of nonce and ciphertext
    let json = s(&e["json"]);
    assert!(json.contains(&hush_proto::encoding::base64url_encode(&nonce)));
    assert!(json.contains(&hush_proto::encoding::base64url_encode(&ct)));
    assert_eq!(cb_decrypt(&dh, &nonce, &ct).unwrap(), reg_code);

    let v = named(&all, "apns.message_push");
    let (i, e) = (&v["inputs"], &v["expected"]);
    let dh = DhSecret::from_bytes(hx32(&i["tkn_dh_secret_hex"]));
    let nonce = hx24(&i["nonce_hex"]);
    let text = s(&named(&all, "pn_messages.text")["expected"]["text"]).to_owned();
    let padded_len = i["padded_len"].as_u64().unwrap() as usize;
    let ct = cb_encrypt(&dh, &nonce, text.as_bytes(), padded_len).unwrap();
    assert_eq!(ct.len() as u64, e["ciphertext_len"].as_u64().unwrap());
    assert_eq!(ct, hx(&e["ciphertext_hex"]));
    let json = s(&e["json"]);
    assert!(json.contains(&hush_proto::encoding::base64url_encode(&ct)));
    assert!(json.contains(&hush_proto::encoding::base64url_encode(&nonce)));
    assert_eq!(cb_decrypt(&dh, &nonce, &ct).unwrap(), text.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// transmission.* (commands.json, ntf.json): real signatures / authenticators

/// Splits `authorization(shortString) [serviceSig] corrId entityId command` of a v≥7
/// transmission; returns (auth, corrId, entityId, command).
fn split_transmission(t: &[u8], service_slot: bool) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut p = hush_proto::Parser::new(t);
    let auth = p.short_string().unwrap().to_vec();
    if service_slot && !auth.is_empty() {
        assert_eq!(p.byte().unwrap(), b'0', "service signature slot");
    }
    let corr = p.short_string().unwrap().to_vec();
    let ent = p.short_string().unwrap().to_vec();
    (auth, corr, ent, p.tail().to_vec())
}

#[test]
fn transmission_vectors_signatures_and_authenticators() {
    let cmds = load("commands");
    let crypto = load("crypto");
    let ntf = load("ntf");
    let mut n = 0;
    let mut fams: Vec<&serde_json::Value> = family(&cmds, "transmission.");
    fams.extend(family(&ntf, "transmission."));
    for v in fams {
        let (i, e) = (&v["inputs"], &v["expected"]);
        let nm = name(v);
        let t = hx(&e["transmission_hex"]);
        match nm {
            "transmission.v18.SUB.ed25519" | "transmission.v3.TNEW.signed" => {
                let v18 = nm.contains("v18");
                let (auth, corr, ent, cmd) = split_transmission(&t, v18);
                assert_eq!(corr, hx(&i["corr_id_hex"]));
                assert_eq!(ent, hx(&i["entity_id_hex"]));
                let session = hx(&i["session_id_hex"]);
                let authorized =
                    hush_proto::transmission::authorized_bytes(&session, &corr, &ent, &cmd);
                assert_eq!(authorized, hx(&e["authorized_hex"]), "{nm}");
                assert_eq!(auth, hx(&e["signature_hex"]), "{nm}");
                let seed_field = if v18 {
                    "ed25519_seed_hex"
                } else {
                    "token_key_seed_hex"
                };
                let sk = Ed25519Secret::from_seed(&hx32(&i[seed_field]));
                assert_eq!(sk.sign(&authorized).to_vec(), auth, "{nm}");
                if let Some(spki) = i.get("ed25519_public_spki_hex") {
                    assert_eq!(sk.public().to_spki_der(), hx(spki));
                }
                let key = PublicKey::Ed25519(sk.public());
                let ta = TransmissionAuth::parse(&auth).unwrap();
                assert!(
                    verify_transmission(Some(&key), ta.as_ref(), None, &authorized, &corr),
                    "{nm}"
                );
                // wrong session id → fails
                let other =
                    hush_proto::transmission::authorized_bytes(&[0u8; 32], &corr, &ent, &cmd);
                assert!(!verify_transmission(
                    Some(&key),
                    ta.as_ref(),
                    None,
                    &other,
                    &corr
                ));
                // the signature checked against an X25519 key → false (dummy verify)
                let x = PublicKey::X25519(X25519Public([1; 32]));
                assert!(!verify_transmission(
                    Some(&x),
                    ta.as_ref(),
                    None,
                    &authorized,
                    &corr
                ));
            }
            "transmission.v6.SUB.ed25519" => {
                // v6: authorization, then sessionId on the wire, then corrId, entityId, command
                let mut p = hush_proto::Parser::new(&t);
                let auth = p.short_string().unwrap().to_vec();
                let rest = p.remaining().to_vec();
                let session = hx(&i["session_id_hex"]);
                let mut p2 = hush_proto::Parser::new(&rest);
                assert_eq!(p2.short_string().unwrap(), &session[..]);
                let corr = p2.short_string().unwrap().to_vec();
                // signed bytes are exactly what follows the authorization
                let sk = Ed25519Secret::from_seed(&hx32(&i["ed25519_seed_hex"]));
                assert_eq!(sk.sign(&rest).to_vec(), auth);
                sk.public().verify(&rest, &auth).unwrap();
                assert_eq!(corr, hx(&i["corr_id_hex"]));
            }
            "transmission.v18.SUB.authenticator" => {
                let (auth, corr, ent, cmd) = split_transmission(&t, true);
                assert_eq!(auth.len(), AUTHENTICATOR_LEN);
                let keys = &named(&crypto, "authenticator.crypto_box.SUB")["inputs"];
                let server =
                    X25519Secret::from_bytes(hx32(&keys["server_session_private_key_hex"]));
                let client_pub = X25519Public(hx32(&keys["client_queue_public_key_hex"]));
                let session = hx(&i["session_id_hex"]);
                let authorized =
                    hush_proto::transmission::authorized_bytes(&session, &corr, &ent, &cmd);
                let ta = TransmissionAuth::parse(&auth).unwrap();
                assert!(matches!(ta, Some(TransmissionAuth::Authenticator(_))));
                assert!(verify_transmission(
                    Some(&PublicKey::X25519(client_pub)),
                    ta.as_ref(),
                    Some(&server),
                    &authorized,
                    &corr
                ));
                // an authenticator against an Ed25519 key → false
                let ed = PublicKey::Ed25519(Ed25519Public([1; 32]));
                assert!(!verify_transmission(
                    Some(&ed),
                    ta.as_ref(),
                    Some(&server),
                    &authorized,
                    &corr
                ));
            }
            "transmission.v18.PING" | "transmission.v18.SUB.response_SOK" => {
                let (auth, _, _, _) = split_transmission(&t, true);
                assert!(auth.is_empty());
                assert_eq!(TransmissionAuth::parse(&auth).unwrap(), None);
                assert!(!verify_transmission(None, None, None, b"", b""));
            }
            _ => panic!("unhandled transmission vector {nm}"),
        }
        n += 1;
    }
    assert_eq!(n, 6);
}

#[test]
fn dummy_keys_are_the_reference_literals() {
    use hush_crypto::auth::*;
    let ed = b64std("MCowBQYDK2VwAyEA139Oqs4QgpqbAmB0o7rZf6T19ryl7E65k4AYe0kE3Qs=");
    let ed448 = b64std(
        "MEMwBQYDK2VxAzoA6ibQc9XpkSLtwrf7PLvp81qW/etiumckVFImCMRdftcG/XopbOSaq9qyLhrgJWKOLyNrQPNVvpMA",
    );
    let x = b64std("MCowBQYDK2VuAyEA4JGSMYht18H4mas/jHeBwfcM7jLwNYJNOAhi2/g4RXg=");
    assert_eq!(
        PublicKey::from_spki_der(&ed).unwrap(),
        dummy_sign_key(SignAlgorithm::Ed25519)
    );
    assert_eq!(
        PublicKey::from_spki_der(&ed448).unwrap(),
        dummy_sign_key(SignAlgorithm::Ed448)
    );
    assert_eq!(X25519Public::from_spki_der(&x).unwrap().0, DUMMY_KEY_X25519);
}

#[test]
fn ntf_snew_notifier_private_key() {
    let all = load("ntf");
    let v = named(&all, "encode.SNEW");
    let der = hx(&v["inputs"]["notifier_private_pkcs8_hex"]);
    let sk = PrivateKey::from_pkcs8_der(&der).unwrap();
    let PrivateKey::Ed25519(ed) = &sk else {
        panic!("expected an Ed25519 notifier key")
    };
    let seed: Vec<u8> = (1..=32).collect();
    assert_eq!(ed.seed().to_vec(), seed);
    assert_eq!(sk.to_pkcs8_der().unwrap().to_vec(), der);
    // the command ends with shortString(PKCS#8 DER)
    let bytes = hx(&v["expected"]["bytes_hex"]);
    let mut tail = vec![der.len() as u8];
    tail.extend_from_slice(&der);
    assert!(bytes.ends_with(&tail));
    assert_eq!(der.len(), 48);
}
