//! Ed25519 with OpenSSL's SHA-512 inside (keys.rs, hash.rs) against ed25519-dalek's own
//! `sign` / `Verifier::verify` (the previous implementation): identical signatures, and the
//! same accept/reject on tampered, malleated and degenerate inputs.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use hush_crypto::keys::ed25519_verify;
use hush_crypto::{Ed25519Public, Ed25519Secret, PublicKey};
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
    if let Ok(vk) = VerifyingKey::from_bytes(pk) {
        assert_eq!(ed25519_verify(&vk, msg, sig).is_ok(), a);
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
