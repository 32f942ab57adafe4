//! Ed25519 with OpenSSL's SHA-512 inside (keys.rs: `sign`, `sign_parts`, `Ed25519Verifier`)
//! against ed25519-dalek's own `sign` / `Verifier::verify` (the previous implementation):
//! identical signatures, and the same accept/reject on tampered, malleated and degenerate
//! inputs, whole or in parts.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use hush_crypto::{Ed25519Public, Ed25519Secret, Ed25519Verifier, PublicKey};
use proptest::prelude::*;

/// The group order L, little endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// The old path's verdict on raw bytes (key decoding included).
fn old_verify(pk: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    VerifyingKey::from_bytes(pk)
        .map(|vk| vk.verify(msg, &Signature::from_bytes(sig)).is_ok())
        .unwrap_or(false)
}

fn new_verify(pk: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    let a = Ed25519Public(*pk).verify(msg, sig).is_ok();
    let b = PublicKey::Ed25519(Ed25519Public(*pk))
        .verify(msg, sig)
        .is_ok();
    assert_eq!(a, b);
    match Ed25519Verifier::new(&Ed25519Public(*pk)) {
        Ok(v) => {
            assert_eq!(v.verify(msg, sig).is_ok(), a);
            // the same verdict with the message in parts, wherever it is cut
            let cuts = [0, msg.len() / 3, msg.len() / 2, msg.len()];
            for &c in &cuts {
                assert_eq!(v.verify_parts(&[&msg[..c], &msg[c..]], sig).is_ok(), a);
            }
            assert_eq!(
                v.verify_parts(
                    &[
                        &[],
                        &msg[..cuts[1]],
                        &msg[cuts[1]..cuts[2]],
                        &msg[cuts[2]..]
                    ],
                    sig
                )
                .is_ok(),
                a
            );
        }
        // a key that is not a point verifies nothing (ed25519-dalek refuses it too)
        Err(_) => assert!(!a && VerifyingKey::from_bytes(pk).is_err()),
    }
    a
}

fn same_verdict(pk: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    let v = old_verify(pk, msg, sig);
    assert_eq!(new_verify(pk, msg, sig), v, "pk {pk:02x?} sig {sig:02x?}");
    v
}

/// `s + L` as 32 little-endian bytes (fits: s < L < 2²⁵³).
fn add_l(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s[i]) + u16::from(L[i]) + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    out
}

#[test]
fn signatures_are_identical_to_dalek() {
    for (i, len) in [0usize, 1, 64, 100, 111, 112, 127, 128, 129, 1000, 16138]
        .into_iter()
        .enumerate()
    {
        let seed = [i as u8 + 1; 32];
        let msg: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
        let old = SigningKey::from_bytes(&seed).sign(&msg).to_bytes();
        let new = Ed25519Secret::from_seed(&seed).sign(&msg);
        assert_eq!(new, old, "len {len}");
        let (a, b) = msg.split_at(len / 2);
        let parts = Ed25519Secret::from_seed(&seed).sign_parts(&[a, &[], b]);
        assert_eq!(parts, old, "len {len} in parts");
        assert!(same_verdict(
            &Ed25519Secret::from_seed(&seed).public().0,
            &msg,
            &new
        ));
    }
}

#[test]
fn non_canonical_s_is_rejected_by_both() {
    let sk = Ed25519Secret::from_seed(&[3; 32]);
    let pk = sk.public().0;
    let msg = b"malleate me";
    let sig = sk.sign(msg);
    assert!(same_verdict(&pk, msg, &sig));
    let mut m = sig;
    m[32..].copy_from_slice(&add_l(&sig[32..]));
    assert!(!same_verdict(&pk, msg, &m), "S + L");
    let mut m = sig;
    m[63] |= 0x80;
    assert!(!same_verdict(&pk, msg, &m), "S high bit");
    let mut m = sig;
    m[32..].copy_from_slice(&L);
    assert!(!same_verdict(&pk, msg, &m), "S = L");
}

#[test]
fn degenerate_points_get_the_same_verdict() {
    // identity (y = 1), y = -1 (order 2), a non-canonical identity (y = p + 1), and an
    // encoding that is not on the curve (y = 2)
    let identity = {
        let mut b = [0u8; 32];
        b[0] = 1;
        b
    };
    let minus_one = {
        let mut b = [0xffu8; 32];
        b[0] = 0xec;
        b[31] = 0x7f;
        b
    };
    let noncanonical_identity = {
        let mut b = [0xffu8; 32];
        b[0] = 0xee;
        b[31] = 0x7f;
        b
    };
    let off_curve = {
        let mut b = [0u8; 32];
        b[0] = 2;
        b
    };
    let real = Ed25519Secret::from_seed(&[9; 32]).public().0;
    let msg = b"weak keys";
    let mut accepted = 0;
    for pk in [identity, minus_one, noncanonical_identity, off_curve, real] {
        for r in [identity, minus_one, noncanonical_identity, off_curve] {
            for s in [[0u8; 32], add_l(&[0u8; 32]), {
                let mut one = [0u8; 32];
                one[0] = 1;
                one
            }] {
                let mut sig = [0u8; 64];
                sig[..32].copy_from_slice(&r);
                sig[32..].copy_from_slice(&s);
                if same_verdict(&pk, msg, &sig) {
                    accepted += 1;
                }
            }
        }
    }
    // today's (non-strict, cofactorless) verify accepts the all-identity signature under the
    // identity key; the new path must too (semantics unchanged, not tightened)
    assert!(accepted >= 1);
}

/// RFC 8032 §7.1 TEST 1 and TEST 3: the published signatures, signed whole and in parts, and
/// verified.
#[test]
fn rfc8032_vectors() {
    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
    for (seed, public, msg, sig) in [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
    ] {
        let seed: [u8; 32] = hex(seed).try_into().unwrap();
        let (public, msg, sig) = (hex(public), hex(msg), hex(sig));
        let sk = Ed25519Secret::from_seed(&seed);
        assert_eq!(sk.public().0.to_vec(), public);
        assert_eq!(sk.sign(&msg).to_vec(), sig);
        let (a, b) = msg.split_at(msg.len() / 2);
        assert_eq!(sk.sign_parts(&[a, b]).to_vec(), sig);
        let v = Ed25519Verifier::new(&sk.public()).unwrap();
        assert!(v.verify(&msg, &sig).is_ok());
        assert!(v.verify_parts(&[a, b], &sig).is_ok());
        assert!(v.verify(b"other", &sig).is_err());
        assert!(
            v.verify(&msg, &sig[..63]).is_err(),
            "a short signature is an error"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn same_signature_and_verdict_on_random_tampering(
        seed in any::<[u8; 32]>(),
        msg in proptest::collection::vec(any::<u8>(), 0..20000),
        flip_sig in any::<prop::sample::Index>(), flip_msg in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let old = SigningKey::from_bytes(&seed).sign(&msg).to_bytes();
        let sk = Ed25519Secret::from_seed(&seed);
        let sig = sk.sign(&msg);
        prop_assert_eq!(sig, old);
        let cut = flip_msg.index(msg.len() + 1);
        prop_assert_eq!(sk.sign_parts(&[&msg[..cut], &msg[cut..]]), old);
        let pk = sk.public().0;
        prop_assert!(same_verdict(&pk, &msg, &sig));
        let mut bad = sig;
        bad[flip_sig.index(64)] ^= 1 << bit;
        prop_assert!(!same_verdict(&pk, &msg, &bad));
        if !msg.is_empty() {
            let mut m = msg.clone();
            let i = flip_msg.index(m.len());
            m[i] ^= 1 << bit;
            prop_assert!(!same_verdict(&pk, &m, &sig));
        }
        let mut other = pk;
        other[flip_sig.index(32)] ^= 1 << bit;
        prop_assert!(!same_verdict(&other, &msg, &sig));
    }
}
