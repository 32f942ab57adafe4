//! Property tests: round trips, tamper → error, garbage/truncated input → error (never panic).

use hush_crypto::secretbox::{sb_decrypt_tail_tag, sb_encrypt_tail_tag};
use hush_crypto::*;
use proptest::prelude::*;

fn arr32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}
fn arr24() -> impl Strategy<Value = [u8; 24]> {
    any::<[u8; 24]>()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn secretbox_round_trip_and_tamper(
        key in arr32(), nonce in arr24(),
        msg in proptest::collection::vec(any::<u8>(), 0..400),
        extra in 2usize..100, flip in any::<prop::sample::Index>(), bit in 0u8..8,
    ) {
        let padded_len = msg.len() + extra;
        let ct = sb_encrypt(&key, &nonce, &msg, padded_len).unwrap();
        prop_assert_eq!(ct.len(), padded_len + 16);
        prop_assert_eq!(sb_decrypt(&key, &nonce, &ct).unwrap(), msg.clone());
        let mut bad = ct.clone();
        let i = flip.index(bad.len());
        bad[i] ^= 1 << bit;
        prop_assert!(sb_decrypt(&key, &nonce, &bad).is_err());
        let mut other = nonce;
        other[0] ^= 1;
        prop_assert!(sb_decrypt(&key, &other, &ct).is_err());
        // no-pad
        let np = sb_encrypt_no_pad(&key, &nonce, &msg);
        prop_assert_eq!(np.len(), msg.len() + 16);
        prop_assert_eq!(sb_decrypt_no_pad(&key, &nonce, &np).unwrap(), msg.clone());
        let mut bad = np.clone();
        let i = flip.index(bad.len());
        bad[i] ^= 1 << bit;
        prop_assert!(sb_decrypt_no_pad(&key, &nonce, &bad).is_err());
        // tail tag (file) variant
        let tt = sb_encrypt_tail_tag(&key, &nonce, &msg, msg.len() + 8 + extra).unwrap();
        prop_assert_eq!(sb_decrypt_tail_tag(&key, &nonce, &tt).unwrap(), msg.clone());
        let mut bad = tt.clone();
        let i = flip.index(bad.len());
        bad[i] ^= 1 << bit;
        prop_assert!(sb_decrypt_tail_tag(&key, &nonce, &bad).is_err());
    }

    #[test]
    fn secretbox_too_large_is_error(key in arr32(), nonce in arr24(), len in 0usize..50) {
        let msg = vec![1u8; len];
        prop_assert!(sb_encrypt(&key, &nonce, &msg, len + 1).is_err());
        prop_assert!(sb_encrypt(&key, &nonce, &msg, len + 2).is_ok());
    }

    #[test]
    fn decrypt_garbage_never_panics(
        key in arr32(), nonce in arr24(),
        ct in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let _ = sb_decrypt(&key, &nonce, &ct);
        let _ = sb_decrypt_no_pad(&key, &nonce, &ct);
        let _ = sb_decrypt_tail_tag(&key, &nonce, &ct);
        let dh = DhSecret::from_bytes(key);
        let _ = cb_decrypt(&dh, &nonce, &ct);
        let _ = decrypt_rcv_msg_body(&dh, &nonce, &ct);
        let _ = decrypt_nmsg_meta(&dh, &nonce, &ct);
        prop_assert!(sb_decrypt(&key, &nonce, &ct).is_err() || ct.len() >= 18);
    }

    #[test]
    fn crypto_box_between_two_parties(
        a in arr32(), b in arr32(), nonce in arr24(),
        msg in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let (a, b) = (X25519Secret::from_bytes(a), X25519Secret::from_bytes(b));
        let ab = a.dh(&b.public());
        let ba = b.dh(&a.public());
        prop_assert_eq!(ab.as_bytes(), ba.as_bytes());
        let ct = cb_encrypt(&ab, &nonce, &msg, msg.len() + 2).unwrap();
        prop_assert_eq!(cb_decrypt(&ba, &nonce, &ct).unwrap(), msg.clone());
        let np = cb_encrypt_no_pad(&ab, &nonce, &msg);
        prop_assert_eq!(cb_decrypt_no_pad(&ba, &nonce, &np).unwrap(), msg.clone());
        // MSG body and NMSG meta
        let enc = encrypt_rcv_msg_body(&ab, &nonce, &msg).unwrap();
        prop_assert_eq!(enc.len(), 16122);
        prop_assert_eq!(decrypt_rcv_msg_body(&ba, &nonce, &enc).unwrap(), msg.clone());
        if msg.len() <= 126 {
            let enc = encrypt_nmsg_meta(&ab, &nonce, &msg).unwrap();
            prop_assert_eq!(enc.len(), 144);
            prop_assert_eq!(decrypt_nmsg_meta(&ba, &nonce, &enc).unwrap(), msg.clone());
        } else {
            prop_assert!(encrypt_nmsg_meta(&ab, &nonce, &msg).is_err());
        }
    }

    #[test]
    fn authenticator_round_trip_and_tamper(
        q in arr32(), s in arr32(),
        corr in proptest::collection::vec(any::<u8>(), 0..40),
        authorized in proptest::collection::vec(any::<u8>(), 0..200),
        flip in 0usize..80,
    ) {
        let (queue, session) = (X25519Secret::from_bytes(q), X25519Secret::from_bytes(s));
        let a = cb_authenticate(&session.public(), &queue, &corr, &authorized);
        prop_assert!(cb_verify(&queue.public(), &session, &corr, &a, &authorized));
        let mut bad = a;
        bad[flip] ^= 1;
        prop_assert!(!cb_verify(&queue.public(), &session, &corr, &bad, &authorized));
        let mut other = authorized.clone();
        other.push(0);
        prop_assert!(!cb_verify(&queue.public(), &session, &corr, &a, &other));
        let auth = TransmissionAuth::parse(&a).unwrap().unwrap();
        let key = PublicKey::X25519(queue.public());
        prop_assert!(verify_transmission(Some(&key), Some(&auth), Some(&session), &authorized, &corr));
        prop_assert!(!dummy_verify_transmission(&auth, Some(&session), &authorized, &corr));
    }

    /// Every authorization kind gives the same verdict on the authorized bytes whole or in
    /// parts (the relay hashes them where they lie in the block), for the right bytes, for
    /// changed bytes and for the dummy verification.
    #[test]
    fn authorized_bytes_in_parts_verify_like_whole(
        seed in arr32(), q in arr32(), s in arr32(),
        corr in proptest::collection::vec(any::<u8>(), 0..40),
        authorized in proptest::collection::vec(any::<u8>(), 0..300),
        cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(),
    ) {
        let (queue, session) = (X25519Secret::from_bytes(q), X25519Secret::from_bytes(s));
        let ed = Ed25519Secret::from_seed(&seed);
        let ed448 = Ed448Secret::generate().unwrap();
        let c = cut.index(authorized.len() + 1);
        let parts: [&[u8]; 3] = [&authorized[..c / 2], &authorized[c / 2..c], &authorized[c..]];
        let mut changed = authorized.clone();
        if changed.is_empty() { changed.push(1) } else { let i = flip.index(changed.len()); changed[i] ^= 0x40 }
        let ed_sig = ed.sign_parts(&parts);
        prop_assert_eq!(ed_sig, ed.sign(&authorized));
        let cases = [
            (PublicKey::Ed25519(ed.public()), ed_sig.to_vec()),
            (PublicKey::Ed448(ed448.public().unwrap()), ed448.sign(&authorized).unwrap()),
            (PublicKey::X25519(queue.public()), cb_authenticate_parts(&session.public(), &queue, &corr, &parts).to_vec()),
        ];
        for (key, bytes) in cases {
            let auth = TransmissionAuth::parse(&bytes).unwrap().unwrap();
            let whole = verify_transmission(Some(&key), Some(&auth), Some(&session), &authorized, &corr);
            prop_assert!(whole);
            prop_assert!(verify_transmission_parts(Some(&key), Some(&auth), Some(&session), &parts, &corr));
            prop_assert!(!verify_transmission_parts(Some(&key), Some(&auth), Some(&session), &[&changed], &corr));
            prop_assert!(!verify_transmission(Some(&key), Some(&auth), Some(&session), &changed, &corr));
            prop_assert!(!dummy_verify_transmission_parts(&auth, Some(&session), &parts, &corr));
            prop_assert!(!verify_transmission_parts(None, Some(&auth), Some(&session), &parts, &corr));
        }
    }

    #[test]
    fn ed25519_sign_verify(seed in arr32(), msg in proptest::collection::vec(any::<u8>(), 0..200), flip in 0usize..64) {
        let sk = Ed25519Secret::from_seed(&seed);
        let sig = sk.sign(&msg);
        let pk = PublicKey::Ed25519(sk.public());
        prop_assert!(pk.verify(&msg, &sig).is_ok());
        let mut bad = sig;
        bad[flip] ^= 1;
        prop_assert!(pk.verify(&msg, &bad).is_err());
        let auth = TransmissionAuth::parse(&sig).unwrap().unwrap();
        prop_assert!(verify_transmission(Some(&pk), Some(&auth), None, &msg, b""));
        prop_assert!(!verify_transmission(None, Some(&auth), None, &msg, b""));
        prop_assert!(!dummy_verify(SignAlgorithm::Ed25519, &msg, &sig));
        // DER round trips
        let der = sk.public().to_spki_der();
        prop_assert_eq!(PublicKey::from_spki_der(&der).unwrap(), pk);
        let p8 = sk.to_pkcs8_der();
        prop_assert_eq!(*Ed25519Secret::from_pkcs8_der(&p8).unwrap().seed(), seed);
    }

    #[test]
    fn chain_sides_stay_in_sync(
        session in proptest::collection::vec(any::<u8>(), 0..48), dh in arr32(),
        steps in 1usize..8,
        msg in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let secret = DhSecret::from_bytes(dh);
        let (mut srv_send, mut srv_recv) = sb_chain_init(&session, &secret);
        let (mut cli_recv, mut cli_send) = sb_chain_init(&session, &secret);
        for _ in 0..steps {
            let (k, n) = srv_send.next();
            let ct = sb_encrypt(&k, &n, &msg, 256).unwrap();
            let (k2, n2) = cli_recv.next();
            prop_assert_eq!(sb_decrypt(&k2, &n2, &ct).unwrap(), msg.clone());
            let (k, n) = cli_send.next();
            let ct = sb_encrypt(&k, &n, &msg, 256).unwrap();
            let (k2, n2) = srv_recv.next();
            prop_assert_eq!(sb_decrypt(&k2, &n2, &ct).unwrap(), msg.clone());
            // a block from the wrong direction never decrypts
            let (k3, n3) = srv_recv.clone().next();
            prop_assert!(sb_decrypt(&k3, &n3, &ct).is_err());
        }
    }

    #[test]
    fn spki_pkcs8_round_trip_all_algorithms(raw in proptest::collection::vec(any::<u8>(), 57)) {
        let k32: [u8; 32] = raw[..32].try_into().unwrap();
        let keys = [
            PublicKey::Ed25519(Ed25519Public(k32)),
            PublicKey::X25519(X25519Public(k32)),
            PublicKey::Ed448(Ed448Public(raw[..57].try_into().unwrap())),
            PublicKey::X448(X448Public(raw[..56].try_into().unwrap())),
        ];
        for k in keys {
            let der = k.to_spki_der();
            prop_assert_eq!(PublicKey::from_spki_der(&der).unwrap(), k);
            for cut in 0..der.len() {
                prop_assert!(PublicKey::from_spki_der(&der[..cut]).is_err());
            }
            let mut long = der.clone();
            long.push(0);
            prop_assert!(PublicKey::from_spki_der(&long).is_err());
        }
        let x = X25519Secret::from_bytes(k32);
        let p8 = x.to_pkcs8_der();
        for cut in 0..p8.len() {
            prop_assert!(PrivateKey::from_pkcs8_der(&p8[..cut]).is_err());
            prop_assert!(X25519Secret::from_pkcs8_der(&p8[..cut]).is_err());
        }
        prop_assert!(Ed25519Secret::from_pkcs8_der(&p8).is_err());
    }

    #[test]
    fn garbage_der_is_error_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = PublicKey::from_spki_der(&bytes);
        let _ = PrivateKey::from_pkcs8_der(&bytes);
        let _ = X25519Public::from_spki_der(&bytes);
        let _ = X25519Secret::from_pkcs8_der(&bytes);
        let _ = Ed25519Public::from_spki_der(&bytes);
        let _ = Ed448Public::from_spki_der(&bytes);
        let _ = X448Public::from_spki_der(&bytes);
        let _ = TransmissionAuth::parse(&bytes);
        let _ = CertKey::from_pem(&bytes, &bytes);
        let _ = verify_signed_x25519_key(&bytes, &bytes);
        let pk = PublicKey::Ed25519(Ed25519Public([9; 32]));
        let _ = pk.verify(&bytes, &bytes);
        let _ = PublicKey::Ed448(Ed448Public([9; 57])).verify(&bytes, &bytes);
        prop_assert!(X25519Public::from_spki_der(&bytes).is_err() || bytes.len() == 44);
    }

    #[test]
    fn garbage_signed_key_against_real_cert(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        flip in any::<prop::sample::Index>(),
    ) {
        let leaf = leaf();
        prop_assert!(verify_signed_x25519_key(&leaf.cert_der, &bytes).is_err());
        let signed = sign_x25519_key(&leaf.key, &X25519Public([5; 32])).unwrap();
        let mut bad = signed.clone();
        let i = flip.index(bad.len());
        bad[i] ^= 0x01;
        prop_assert!(verify_signed_x25519_key(&leaf.cert_der, &bad).is_err());
        for cut in [0, 1, 2, 50, signed.len() - 1] {
            prop_assert!(verify_signed_x25519_key(&leaf.cert_der, &signed[..cut]).is_err());
        }
    }
}

fn leaf() -> &'static CertKey {
    use std::sync::OnceLock;
    static LEAF: OnceLock<CertKey> = OnceLock::new();
    LEAF.get_or_init(|| {
        let ca = generate_ca(SignAlgorithm::Ed25519, "SMP server CA").unwrap();
        generate_online_cert(&ca, SignAlgorithm::Ed25519, "localhost").unwrap()
    })
}

#[test]
fn transmission_auth_lengths() {
    for len in 0..200usize {
        let r = TransmissionAuth::parse(&vec![0u8; len]);
        match len {
            0 => assert_eq!(r.unwrap(), None),
            64 | 80 | 114 => assert!(r.unwrap().is_some()),
            _ => assert!(r.is_err(), "len {len}"),
        }
    }
}

#[test]
fn dummy_verification_runs_for_each_kind() {
    let session = X25519Secret::generate();
    let ed = Ed25519Secret::generate();
    let ed448 = Ed448Secret::generate().unwrap();
    let msg = b"authorized bytes";
    let s1 = TransmissionAuth::parse(&ed.sign(msg)).unwrap().unwrap();
    let s2 = TransmissionAuth::parse(&ed448.sign(msg).unwrap())
        .unwrap()
        .unwrap();
    let q = X25519Secret::generate();
    let a = cb_authenticate(&session.public(), &q, b"corr", msg);
    let s3 = TransmissionAuth::parse(&a).unwrap().unwrap();
    for auth in [&s1, &s2, &s3] {
        assert!(!dummy_verify_transmission(
            auth,
            Some(&session),
            msg,
            b"corr"
        ));
        assert!(!verify_transmission(
            None,
            Some(auth),
            Some(&session),
            msg,
            b"corr"
        ));
    }
    // right keys verify
    assert!(verify_transmission(
        Some(&PublicKey::Ed25519(ed.public())),
        Some(&s1),
        None,
        msg,
        b""
    ));
    let p448 = PublicKey::Ed448(ed448.public().unwrap());
    assert!(verify_transmission(Some(&p448), Some(&s2), None, msg, b""));
    let pq = PublicKey::X25519(q.public());
    assert!(verify_transmission(
        Some(&pq),
        Some(&s3),
        Some(&session),
        msg,
        b"corr"
    ));
    // algorithm mismatch → false
    assert!(!verify_transmission(Some(&p448), Some(&s1), None, msg, b""));
    assert!(!verify_transmission(
        Some(&pq),
        Some(&s1),
        Some(&session),
        msg,
        b""
    ));
    // missing authorization → false
    assert!(!verify_transmission(
        Some(&pq),
        None,
        Some(&session),
        msg,
        b""
    ));
}

#[test]
fn server_identity_generate_save_load() {
    let dir = std::env::temp_dir().join(format!("hush-crypto-ident-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for alg in [SignAlgorithm::Ed25519, SignAlgorithm::Ed448] {
        let id = ServerIdentity::generate(alg, "127.0.0.1").unwrap();
        assert_eq!(id.fingerprint, fingerprint(&id.ca_cert_der));
        let chain = id.chain_der();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], id.ca_cert_der);
        id.save(&dir).unwrap();
        let fp_text = std::fs::read_to_string(dir.join("fingerprint")).unwrap();
        assert_eq!(
            fp_text.trim(),
            hush_proto::encoding::base64url_encode(&id.fingerprint)
        );
        let back = ServerIdentity::load(&dir).unwrap();
        assert_eq!(back.fingerprint, id.fingerprint);
        assert_eq!(back.online.cert_der, id.online.cert_der);
        assert!(back.ca_key.is_some());
        // the online key still signs hello keys that verify against the loaded leaf
        let hello = X25519Secret::generate();
        let signed = sign_x25519_key(&back.online.key, &hello.public()).unwrap();
        assert_eq!(
            verify_signed_x25519_key(&id.online.cert_der, &signed).unwrap(),
            hello.public()
        );
        // CA key moved offline: still loads
        std::fs::remove_file(dir.join("ca.key")).unwrap();
        assert!(ServerIdentity::load(&dir).unwrap().ca_key.is_none());
        // a fingerprint file that does not match is refused
        std::fs::write(dir.join("fingerprint"), "AAAA\n").unwrap();
        assert!(ServerIdentity::load(&dir).is_err());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ct_eq_semantics() {
    assert!(ct_eq(b"", b""));
    assert!(ct_eq(b"abc", b"abc"));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"ab"));
}
