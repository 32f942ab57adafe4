//! Vectors for the API contract: x25519, simplex_secretbox, crypto_box (pad/no-pad via the
//! same construction), sbchain, signed_x25519_key.

mod common;
use common::*;

use hush_crypto::secretbox::{sb_decrypt_in_place, sb_encrypt_into};
use hush_crypto::*;

#[test]
fn x25519_vectors() {
    let all = load("crypto");
    let mut n = 0;
    for v in family(&all, "x25519.") {
        let (i, e) = (&v["inputs"], &v["expected"]);
        let nm = name(v);
        if nm.starts_with("x25519.pub_from_priv_") {
            let sk = X25519Secret::from_bytes(hx32(&i["private_key_hex"]));
            assert_eq!(sk.public().0.to_vec(), hx(&e["public_key_hex"]), "{nm}");
        } else if nm.starts_with("x25519.spki.") {
            let pk = X25519Public(hx32(&i["public_key_hex"]));
            let der = hx(&e["der_hex"]);
            assert_eq!(pk.to_spki_der(), der, "{nm}");
            assert_eq!(X25519Public::from_spki_der(&der).unwrap(), pk, "{nm}");
        } else if nm.starts_with("x25519.pkcs8.") {
            let raw = hx32(&i["private_key_hex"]);
            let sk = X25519Secret::from_bytes(raw);
            let der = hx(&e["der_hex"]);
            assert_eq!(der.len(), 48);
            assert_eq!(sk.to_pkcs8_der(), der, "{nm}");
            let back = X25519Secret::from_pkcs8_der(&der).unwrap();
            assert_eq!(*back.to_bytes(), raw, "{nm}");
        } else if nm == "x25519.dh" {
            let a = X25519Secret::from_bytes(hx32(&i["private_key_hex"]));
            let b = X25519Secret::from_bytes(hx32(&i["peer_private_key_hex"]));
            let b_pub = X25519Public(hx32(&i["peer_public_key_hex"]));
            assert_eq!(b.public(), b_pub);
            let want = hx(&e["shared_secret_hex"]);
            assert_eq!(a.dh(&b_pub).as_bytes().to_vec(), want);
            assert_eq!(b.dh(&a.public()).as_bytes().to_vec(), want);
        } else {
            panic!("unhandled vector {nm}");
        }
        n += 1;
    }
    assert_eq!(n, 7);
}

#[test]
fn x25519_der_rejects_wrong_oid_and_length() {
    let pk = X25519Public([7; 32]);
    let mut der = pk.to_spki_der();
    assert!(X25519Public::from_spki_der(&der[..43]).is_err());
    der.push(0);
    assert!(X25519Public::from_spki_der(&der).is_err());
    let mut ed = pk.to_spki_der();
    ed[8] = 0x70; // Ed25519 OID
    assert!(X25519Public::from_spki_der(&ed).is_err());
    let sk = X25519Secret::from_bytes([9; 32]);
    let mut p8 = sk.to_pkcs8_der();
    assert!(X25519Secret::from_pkcs8_der(&p8[..47]).is_err());
    p8[10] = 0x70;
    assert!(X25519Secret::from_pkcs8_der(&p8).is_err());
}

#[test]
fn simplex_secretbox_vectors() {
    let all = load("crypto");
    let mut n = 0;
    for v in family(&all, "simplex_secretbox.") {
        let (i, e) = (&v["inputs"], &v["expected"]);
        let nm = name(v);
        let key = hx32(&i["key_hex"]);
        let nonce = hx24(&i["nonce_hex"]);
        let m = msg(i);
        if nm.starts_with("simplex_secretbox.nopad.") {
            let ct = hx(&e["ciphertext_hex"]);
            assert_eq!(sb_encrypt_no_pad(&key, &nonce, &m), ct, "{nm}");
            assert_eq!(sb_decrypt_no_pad(&key, &nonce, &ct).unwrap(), m, "{nm}");
        } else if nm.starts_with("simplex_secretbox.tailtag.") {
            // File (XFTP) variant: padLazy(msg, len, padded_len - 16), tag at the END.
            let ct = hx(&e["ciphertext_hex"]);
            let padded_len = i["padded_len"].as_u64().unwrap() as usize;
            let got =
                hush_crypto::secretbox::sb_encrypt_tail_tag(&key, &nonce, &m, padded_len).unwrap();
            assert_eq!(got, ct, "{nm}");
            assert_eq!(e["length"].as_u64().unwrap() as usize, ct.len());
            let back = hush_crypto::secretbox::sb_decrypt_tail_tag(&key, &nonce, &ct).unwrap();
            assert_eq!(back, m, "{nm}");
        } else if nm == "simplex_secretbox.differs_from_nacl_secretbox" {
            let padded_len = i["padded_len"].as_u64().unwrap() as usize;
            let ct = sb_encrypt(&key, &nonce, &m, padded_len).unwrap();
            assert_eq!(ct[..32].to_vec(), hx(&e["simplex_prefix_hex"]));
            assert_ne!(
                ct[..32].to_vec(),
                hx(&e["nacl_crypto_secretbox_raw_key_prefix_hex"])
            );
            // Plain XSalsa20-Poly1305 (= libsodium crypto_secretbox) with the raw key gives the
            // "wrong" prefix, with HSalsa20(key, 0) the SimpleX one.
            use xsalsa20poly1305::aead::{Aead, KeyInit};
            let padded = hush_proto::encoding::pad(&m, padded_len).unwrap();
            let raw = xsalsa20poly1305::XSalsa20Poly1305::new(&key.into())
                .encrypt(&nonce.into(), padded.as_slice())
                .unwrap();
            // xsalsa20poly1305's `Aead::encrypt` emits the NaCl layout (tag first).
            let nacl_prefix = hx(&e["nacl_crypto_secretbox_raw_key_prefix_hex"]);
            assert_eq!(raw[..32].to_vec(), nacl_prefix);
            assert_ne!(ct[..32].to_vec(), nacl_prefix);
            let k1 = hx32(&e["hsalsa20_key_0_hex"]);
            let via_k1 = xsalsa20poly1305::XSalsa20Poly1305::new(&k1.into())
                .encrypt(&nonce.into(), padded.as_slice())
                .unwrap();
            assert_eq!(via_k1, ct);
        } else {
            let padded_len = i["padded_len"].as_u64().unwrap() as usize;
            let ct = hx(&e["ciphertext_hex"]);
            assert_eq!(e["length"].as_u64().unwrap() as usize, ct.len());
            assert_eq!(
                sb_encrypt(&key, &nonce, &m, padded_len).unwrap(),
                ct,
                "{nm}"
            );
            let mut out = vec![0xAA];
            sb_encrypt_into(&key, &nonce, &m, padded_len, &mut out).unwrap();
            assert_eq!(out[1..], ct[..], "{nm}");
            assert_eq!(sb_decrypt(&key, &nonce, &ct).unwrap(), m, "{nm}");
            let mut buf = ct.clone();
            assert_eq!(sb_decrypt_in_place(&key, &nonce, &mut buf).unwrap(), &m[..]);
        }
        n += 1;
    }
    assert_eq!(n, 8);
}

#[test]
fn sbchain_vectors() {
    let all = load("crypto");
    let init = named(&all, "sbchain.init");
    let secret = DhSecret::from_bytes(hx32(&init["inputs"]["ikm_dh_secret_hex"]));
    let sid = hx(&init["inputs"]["salt_session_id_hex"]);
    let (mut ck1, ck2) = sb_chain_init(&sid, &secret);
    assert_eq!(ck1.as_bytes().to_vec(), hx(&init["expected"]["ck1_hex"]));
    assert_eq!(ck2.as_bytes().to_vec(), hx(&init["expected"]["ck2_hex"]));

    let step = named(&all, "sbchain.step");
    let e = &step["expected"];
    assert_eq!(
        ck1.as_bytes().to_vec(),
        hx(&step["inputs"]["chain_key_hex"])
    );
    let (key, nonce) = ck1.next();
    assert_eq!(key.to_vec(), hx(&e["sb_key_hex"]));
    assert_eq!(nonce.to_vec(), hx(&e["nonce_hex"]));
    assert_eq!(ck1.as_bytes().to_vec(), hx(&e["next_chain_key_hex"]));
    let e2 = &e["step2_from_next_chain_key"];
    let (key2, nonce2) = ck1.next();
    assert_eq!(key2.to_vec(), hx(&e2["sb_key_hex"]));
    assert_eq!(nonce2.to_vec(), hx(&e2["nonce_hex"]));
    assert_eq!(ck1.as_bytes().to_vec(), hx(&e2["next_chain_key_hex"]));
    // okm = next ck ‖ key ‖ nonce
    let okm = hx(&e["okm_hex"]);
    assert_eq!(okm.len(), 88);
    assert_eq!(okm[32..64], key[..]);

    let blk = named(&all, "sbchain.encrypted_block.PING");
    let bi = &blk["inputs"];
    assert_eq!(hx32(&bi["sb_key_hex"]), key);
    assert_eq!(hx24(&bi["nonce_hex"]), nonce);
    let content = hx(&bi["block_content_hex"]);
    let padded_len = bi["padded_len"].as_u64().unwrap() as usize;
    let block = sb_encrypt(&key, &nonce, &content, padded_len).unwrap();
    assert_eq!(block.len(), 16384);
    assert_eq!(block, hx(&blk["expected"]["block_hex"]));
    assert_eq!(
        hush_crypto::hash::sha256(&block).to_vec(),
        hx(&blk["expected"]["sha256_hex"])
    );
    assert_eq!(sb_decrypt(&key, &nonce, &block).unwrap(), content);
}

#[test]
fn signed_x25519_key_vector() {
    let all = load("crypto");
    let v = named(&all, "signed_x25519_key.ed25519");
    let (i, e) = (&v["inputs"], &v["expected"]);
    let seed = hx32(&i["sign_seed_hex"]);
    let key =
        openssl::pkey::PKey::private_key_from_raw_bytes(&seed, openssl::pkey::Id::ED25519).unwrap();
    assert_eq!(key.raw_public_key().unwrap(), hx(&i["sign_public_key_hex"]));
    let dh = X25519Secret::from_bytes(hx32(&i["dh_private_key_hex"]));
    assert_eq!(dh.public().0.to_vec(), hx(&i["dh_public_key_hex"]));
    let signed = sign_x25519_key(&key, &dh.public()).unwrap();
    let want = hx(&e["signed_exact_der_hex"]);
    assert_eq!(signed.len(), 120);
    assert_eq!(e["length"].as_u64().unwrap(), 120);
    // Ed25519 is deterministic, so the whole DER must match.
    assert_eq!(signed, want);
    let mut large = vec![0x00, 0x78];
    large.extend_from_slice(&signed);
    assert_eq!(large, hx(&e["smpEncode_as_Large_hex"]));

    // Verify against a certificate carrying that public key (self-signed, built here).
    let cert = self_signed_with(&key);
    assert_eq!(verify_signed_x25519_key(&cert, &want).unwrap(), dh.public());
    // Tampering with any byte of the signed object fails.
    for idx in [20usize, 50, 60, 119] {
        let mut bad = want.clone();
        bad[idx] ^= 1;
        assert!(verify_signed_x25519_key(&cert, &bad).is_err(), "byte {idx}");
    }
    // Another leaf key fails.
    let other = generate_ca(SignAlgorithm::Ed25519, "x").unwrap();
    assert!(verify_signed_x25519_key(&other.cert_der, &want).is_err());
}

fn self_signed_with(key: &openssl::pkey::PKey<openssl::pkey::Private>) -> Vec<u8> {
    use openssl::x509::*;
    let mut n = X509NameBuilder::new().unwrap();
    n.append_entry_by_text("CN", "t").unwrap();
    let n = n.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&n).unwrap();
    b.set_issuer_name(&n).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    b.sign(key, openssl::hash::MessageDigest::null()).unwrap();
    b.build().to_der().unwrap()
}

#[test]
fn certificates_and_signed_keys_both_algorithms() {
    for (alg, len, prefix) in [
        (SignAlgorithm::Ed25519, 120usize, &[0x30u8, 0x76][..]),
        (SignAlgorithm::Ed448, 171, &[0x30, 0x81, 0xa8][..]),
    ] {
        let ca = generate_ca(alg, "SMP server CA").unwrap();
        let leaf = generate_online_cert(&ca, alg, "127.0.0.1").unwrap();
        assert_eq!(
            fingerprint(&ca.cert_der),
            hush_crypto::hash::sha256(&ca.cert_der)
        );
        assert_eq!(ca.fingerprint(), fingerprint(&ca.cert_der));
        // leaf is signed by the CA, CA self-signed
        let ca_x = ca.cert().unwrap();
        let leaf_x = leaf.cert().unwrap();
        assert!(leaf_x.verify(&ca_x.public_key().unwrap()).unwrap());
        assert!(ca_x.verify(&ca_x.public_key().unwrap()).unwrap());
        assert!(!leaf_x.verify(&leaf_x.public_key().unwrap()).unwrap());
        // full X.509 validation with the CA as the only trust anchor
        let mut store = openssl::x509::store::X509StoreBuilder::new().unwrap();
        store.add_cert(ca_x.clone()).unwrap();
        let store = store.build();
        let chain = openssl::stack::Stack::new().unwrap();
        let mut ctx = openssl::x509::X509StoreContext::new().unwrap();
        let ok = ctx
            .init(&store, &leaf_x, &chain, |c| c.verify_cert())
            .unwrap();
        assert!(ok, "{alg:?}: chain does not validate");

        let dh = X25519Secret::generate();
        let signed = sign_x25519_key(&leaf.key, &dh.public()).unwrap();
        assert_eq!(signed.len(), len, "{alg:?}");
        assert!(signed.starts_with(prefix));
        assert_eq!(
            verify_signed_x25519_key(&leaf.cert_der, &signed).unwrap(),
            dh.public()
        );
        // signed by the CA key instead of the leaf → fails against the leaf
        let by_ca = sign_x25519_key(&ca.key, &dh.public()).unwrap();
        assert!(verify_signed_x25519_key(&leaf.cert_der, &by_ca).is_err());
        // garbage
        assert!(verify_signed_x25519_key(&leaf.cert_der, &signed[..signed.len() - 1]).is_err());
        assert!(verify_signed_x25519_key(&leaf.cert_der, b"").is_err());

        // PEM round trip
        let (cp, kp) = leaf.to_pem().unwrap();
        let back = CertKey::from_pem(cp.as_bytes(), kp.as_bytes()).unwrap();
        assert_eq!(back.cert_der, leaf.cert_der);
        assert!(back.key.public_eq(&leaf.key));
        // mismatched key rejected
        let (_, ca_kp) = ca.to_pem().unwrap();
        assert!(CertKey::from_pem(cp.as_bytes(), ca_kp.as_bytes()).is_err());
    }
}

#[test]
fn pem_files_round_trip() {
    let dir = std::env::temp_dir().join(format!("hush-crypto-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = generate_ca(SignAlgorithm::Ed448, "SMP server CA").unwrap();
    let (c, k) = (dir.join("ca.crt"), dir.join("ca.key"));
    ca.save_pem_files(&c, &k).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&k), 0o600);
        // An older, world-readable key file is replaced by a private one (not rewritten in
        // place with its old mode).
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
        ca.save_pem_files(&c, &k).unwrap();
        assert_eq!(mode(&k), 0o600);
        // A new identity directory is private.
        let id_dir = dir.join("identity");
        hush_crypto::identity::ServerIdentity::generate(SignAlgorithm::Ed25519, "127.0.0.1")
            .unwrap()
            .save(&id_dir)
            .unwrap();
        assert_eq!(mode(&id_dir), 0o700);
        for f in ["ca.key", "server.key"] {
            assert_eq!(mode(&id_dir.join(f)), 0o600, "{f}");
        }
    }
    let back = CertKey::load_pem_files(&c, &k).unwrap();
    assert_eq!(back.cert_der, ca.cert_der);
    assert_eq!(back.fingerprint(), ca.fingerprint());
    let chain = hush_crypto::cert::load_cert_chain_pem(&c).unwrap();
    assert_eq!(chain, vec![ca.cert_der.clone()]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn signed_service_key_round_trip() {
    use hush_crypto::cert::{sign_public_key, verify_signed_public_key};
    use hush_crypto::keys::{Ed25519Secret, PublicKey};
    let ca = generate_ca(SignAlgorithm::Ed25519, "service CA").unwrap();
    let leaf = generate_online_cert(&ca, SignAlgorithm::Ed25519, "service").unwrap();
    let svc = PublicKey::Ed25519(Ed25519Secret::generate().public());
    let signed = sign_public_key(&leaf.key, &svc).unwrap();
    assert_eq!(signed.len(), 120);
    assert_eq!(
        verify_signed_public_key(&leaf.cert_der, &signed).unwrap(),
        svc
    );
    // an X25519-only verifier rejects an Ed25519 payload
    assert!(verify_signed_x25519_key(&leaf.cert_der, &signed).is_err());
    assert!(verify_signed_public_key(&ca.cert_der, &signed).is_err());
}

#[test]
fn fixture_ca_fingerprints() {
    use hush_crypto::keys::{KeyAlgorithm, PublicKey};
    let all = load("addresses");
    let mut n = 0;
    for v in family(&all, "server_identity.fixture_ca_") {
        let (i, e) = (&v["inputs"], &v["expected"]);
        let der = hx(&i["ca_cert_der_hex"]);
        let fp = fingerprint(&der);
        assert_eq!(fp.to_vec(), hx(&e["sha256_hex"]), "{}", name(v));
        assert_eq!(
            hush_proto::encoding::base64url_encode(&fp),
            s(&e["key_hash_text"])
        );
        // our SPKI parser agrees with OpenSSL on the certificate's key
        let cert = openssl::x509::X509::from_der(&der).unwrap();
        let spki = cert.public_key().unwrap().public_key_to_der().unwrap();
        let pk = PublicKey::from_spki_der(&spki).unwrap();
        let want = match s(&i["ca_cert_key_algorithm"]) {
            "Ed25519" => KeyAlgorithm::Ed25519,
            "Ed448" => KeyAlgorithm::Ed448,
            a => panic!("{a}"),
        };
        assert_eq!(pk.algorithm(), want);
        assert_eq!(pk.to_spki_der(), spki);
        if let Some(x) = i.get("ca_spki_der_hex") {
            // an openssl-made Ed448 SPKI example (not the fixture's own key)
            let other = PublicKey::from_spki_der(&hx(x)).unwrap();
            assert_eq!(other.algorithm(), KeyAlgorithm::Ed448);
            assert_eq!(hx(x).len(), 69);
        }
        // a PEM round trip keeps the DER (and so the fingerprint)
        let pem = cert.to_pem().unwrap();
        let path =
            std::env::temp_dir().join(format!("hush-fixture-{}-{n}.crt", std::process::id()));
        std::fs::write(&path, pem).unwrap();
        let chain = hush_crypto::cert::load_cert_chain_pem(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(fingerprint(&chain[0]), fp);
        n += 1;
    }
    assert_eq!(n, 2);
    let mut m = 0;
    for v in family(&all, "cert_chain.fingerprint_") {
        let chain: Vec<Vec<u8>> = v["inputs"]["chain_hex"]
            .as_array()
            .unwrap()
            .iter()
            .map(hx)
            .collect();
        // the identity certificate is always the second one
        assert_eq!(
            fingerprint(&chain[1]).to_vec(),
            hx(&v["expected"]["fingerprint_hex"]),
            "{}",
            name(v)
        );
        m += 1;
    }
    assert_eq!(m, 2);
}
