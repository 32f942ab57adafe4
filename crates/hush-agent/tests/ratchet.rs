//! Double ratchet: known-answer tests (vectors from `tests/kat/gen_ratchet_kat.py`, computed with
//! python `cryptography` from the reference construction) and a property test over random
//! interleavings, drops, reorders, duplicates and corruptions.

use std::collections::VecDeque;

use hush_agent::ratchet::{
    Ratchet, RatchetError, RatchetVersions, chain_kdf, encrypt_aead, root_kdf, x3dh_inviter,
    x3dh_joiner,
};
use hush_crypto::{X448Public, X448Secret};
use proptest::prelude::*;
use serde_json::Value;

fn kat() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kat/ratchet_kat.json");
    let text = std::fs::read_to_string(path).expect("ratchet_kat.json missing");
    serde_json::from_str(&text).unwrap()
}

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).unwrap()
}

fn arr<const N: usize>(v: &Value) -> [u8; N] {
    hx(v).try_into().unwrap()
}

fn sk(v: &Value) -> X448Secret {
    X448Secret::from_bytes(&hx(v)).unwrap()
}

const V3: RatchetVersions = RatchetVersions {
    current: 3,
    max_supported: 3,
};

#[test]
fn kat_kdf_steps() {
    let k = kat();
    let r = &k["root_kdf"];
    let (rk, ck, nhk) = root_kdf(&arr(&r["rk_hex"]), &hx(&r["dh_hex"])).unwrap();
    assert_eq!(rk.to_vec(), hx(&r["rk_out_hex"]));
    assert_eq!(ck.to_vec(), hx(&r["ck_out_hex"]));
    assert_eq!(nhk.to_vec(), hx(&r["nhk_out_hex"]));

    let c = &k["chain_kdf"];
    let (ck2, mk, iv, hiv) = chain_kdf(&arr(&c["ck_hex"])).unwrap();
    assert_eq!(ck2.to_vec(), hx(&c["ck_out_hex"]));
    assert_eq!(mk.to_vec(), hx(&c["mk_hex"]));
    assert_eq!(iv.to_vec(), hx(&c["msg_iv_hex"]));
    assert_eq!(hiv.to_vec(), hx(&c["header_iv_hex"]));

    let g = &k["aes_gcm_16"];
    let (tag, ct) = encrypt_aead(
        &arr(&g["key_hex"]),
        &arr(&g["iv_hex"]),
        g["padded_len"].as_u64().unwrap() as usize,
        g["ad_ascii"].as_str().unwrap().as_bytes(),
        g["plain_ascii"].as_str().unwrap().as_bytes(),
    )
    .unwrap();
    assert_eq!(tag.to_vec(), hx(&g["tag_hex"]));
    assert_eq!(ct, hx(&g["ct_hex"]));
}

#[test]
fn kat_x3dh_both_sides() {
    let k = kat();
    let keys = &k["keys"];
    let (r1, r2) = (sk(&keys["r1_priv_hex"]), sk(&keys["r2_priv_hex"]));
    let (s1, s2) = (sk(&keys["s1_priv_hex"]), sk(&keys["s2_priv_hex"]));
    for (name, key) in [("r1", &r1), ("r2", &r2), ("s1", &s1), ("s2", &s2)] {
        assert_eq!(
            key.public().unwrap().to_spki_der(),
            hx(&keys[format!("{name}_spki_hex")]),
            "{name}"
        );
    }
    let x = &k["x3dh"];
    let j = x3dh_joiner(&s1, &s2, &r1.public().unwrap(), &r2.public().unwrap()).unwrap();
    let i = x3dh_inviter(&r1, &r2, &s1.public().unwrap(), &s2.public().unwrap()).unwrap();
    for p in [&j, &i] {
        assert_eq!(p.snd_hk.to_vec(), hx(&x["hk_hex"]));
        assert_eq!(p.rcv_next_hk.to_vec(), hx(&x["nhk_hex"]));
        assert_eq!(p.ratchet_key.to_vec(), hx(&x["sk_hex"]));
        assert_eq!(p.assoc_data, hx(&x["ad_hex"]));
    }
}

/// Full conversation: joiner → inviter (2 messages), inviter → joiner (after a DH step),
/// joiner → inviter (after its DH step); every ciphertext byte-compared with the vectors.
#[test]
fn kat_messages_byte_exact() {
    let k = kat();
    let keys = &k["keys"];
    let (r1, r2) = (sk(&keys["r1_priv_hex"]), sk(&keys["r2_priv_hex"]));
    let (s1, s2) = (sk(&keys["s1_priv_hex"]), sk(&keys["s2_priv_hex"]));
    let r2_pub = r2.public().unwrap();
    let pj = x3dh_joiner(&s1, &s2, &r1.public().unwrap(), &r2_pub).unwrap();
    let pi = x3dh_inviter(&r1, &r2, &s1.public().unwrap(), &s2.public().unwrap()).unwrap();
    let mut joiner =
        Ratchet::init_joiner(V3, &r2_pub, sk(&keys["joiner_dhrs0_priv_hex"]), &pj).unwrap();
    let mut inviter = Ratchet::init_inviter(V3, r2, &pi);

    let msgs = k["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 4);
    let enc = |r: &mut Ratchet, m: &Value| {
        let out = r
            .encrypt(
                m["plain_ascii"].as_str().unwrap().as_bytes(),
                m["padded_len"].as_u64().unwrap() as usize,
            )
            .unwrap();
        assert_eq!(hex::encode(&out), m["full_hex"].as_str().unwrap());
        out
    };
    let m1 = enc(&mut joiner, &msgs[0]);
    let m2 = enc(&mut joiner, &msgs[1]);
    let mut inviter_keys = vec![sk(&keys["inviter_dhrs1_priv_hex"])];
    let mut next = || inviter_keys.pop().ok_or(RatchetError::Key);
    assert_eq!(
        inviter.decrypt_with(&m1, &mut next).unwrap(),
        b"hello from joiner"
    );
    assert_eq!(inviter.decrypt_with(&m2, &mut next).unwrap(), b"second");
    let m3 = enc(&mut inviter, &msgs[2]);
    let mut joiner_keys = vec![sk(&keys["joiner_dhrs1_priv_hex"])];
    let mut next_j = || joiner_keys.pop().ok_or(RatchetError::Key);
    assert_eq!(
        joiner.decrypt_with(&m3, &mut next_j).unwrap(),
        b"reply from inviter"
    );
    let m4 = enc(&mut joiner, &msgs[3]);
    assert_eq!(inviter.decrypt(&m4).unwrap(), b"after step");
    // the header framing of the vectors: Large prefix (v3), 88-byte padded header
    let enc_hdr = hx(&msgs[0]["enc_header_hex"]);
    assert_eq!(enc_hdr.len(), 2 + 16 + 16 + 2 + 88);
    assert_eq!(&m1[..2], &(enc_hdr.len() as u16).to_be_bytes());
}

/// e2e version 2 (no KEM slot in the header, 1-byte length framing), and the upgrade to 3 that
/// the header's max version triggers on both sides.
#[test]
fn kat_v2_message_and_upgrade() {
    let k = kat();
    let keys = &k["keys"];
    let (r1, r2) = (sk(&keys["r1_priv_hex"]), sk(&keys["r2_priv_hex"]));
    let (s1, s2) = (sk(&keys["s1_priv_hex"]), sk(&keys["s2_priv_hex"]));
    let r2_pub = r2.public().unwrap();
    let pj = x3dh_joiner(&s1, &s2, &r1.public().unwrap(), &r2_pub).unwrap();
    let pi = x3dh_inviter(&r1, &r2, &s1.public().unwrap(), &s2.public().unwrap()).unwrap();
    let v2 = RatchetVersions {
        current: 2,
        max_supported: 3,
    };
    let mut joiner =
        Ratchet::init_joiner(v2, &r2_pub, sk(&keys["joiner_dhrs0_priv_hex"]), &pj).unwrap();
    let mut inviter = Ratchet::init_inviter(v2, r2, &pi);
    let msgs = k["messages_v2"].as_array().unwrap();
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    let out = joiner
        .encrypt(
            m["plain_ascii"].as_str().unwrap().as_bytes(),
            m["padded_len"].as_u64().unwrap() as usize,
        )
        .unwrap();
    assert_eq!(hex::encode(&out), m["full_hex"].as_str().unwrap());
    assert_eq!(
        out[0] as usize,
        hx(&m["enc_header_hex"]).len(),
        "shortString framing"
    );
    assert_eq!(inviter.decrypt(&out).unwrap(), b"v2 message");
    assert_eq!(
        inviter.versions().current,
        3,
        "upgraded by the header's max version"
    );
    let reply = inviter.encrypt(b"v3 reply", 100).unwrap();
    assert!(reply[0] < 32, "Large framing from v3");
    assert_eq!(joiner.decrypt(&reply).unwrap(), b"v3 reply");
    assert_eq!(joiner.versions().current, 3);
}

// ---------------------------------------------------------------------------------------------
// Property: random interleavings

#[derive(Clone, Debug)]
enum Op {
    /// Party sends a new message.
    Send(bool),
    /// Deliver the in-flight message at this index (mod len) of that direction.
    Deliver(bool, usize),
    /// Drop an in-flight message (never delivered).
    Drop(bool, usize),
    /// Redeliver an already delivered message.
    Replay(bool, usize),
    /// Deliver a corrupted copy of an in-flight message (flip one byte).
    Corrupt(bool, usize, usize),
    /// Serialise and reload one party (a process restart).
    Persist(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(Op::Send),
        4 => (any::<bool>(), any::<usize>()).prop_map(|(d, i)| Op::Deliver(d, i)),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(d, i)| Op::Drop(d, i)),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(d, i)| Op::Replay(d, i)),
        1 => (any::<bool>(), any::<usize>(), any::<usize>()).prop_map(|(d, i, b)| Op::Corrupt(d, i, b)),
        1 => any::<bool>().prop_map(Op::Persist),
    ]
}

fn new_pair() -> (Ratchet, Ratchet) {
    let r1 = X448Secret::generate().unwrap();
    let r2 = X448Secret::generate().unwrap();
    let s1 = X448Secret::generate().unwrap();
    let s2 = X448Secret::generate().unwrap();
    let r2p: X448Public = r2.public().unwrap();
    let pj = x3dh_joiner(&s1, &s2, &r1.public().unwrap(), &r2p).unwrap();
    let pi = x3dh_inviter(&r1, &r2, &s1.public().unwrap(), &s2.public().unwrap()).unwrap();
    let j = Ratchet::init_joiner(V3, &r2p, X448Secret::generate().unwrap(), &pj).unwrap();
    (j, Ratchet::init_inviter(V3, r2, &pi))
}

fn state(r: &Ratchet) -> Vec<u8> {
    r.to_bytes().unwrap().to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn every_message_decrypts_exactly_once(ops in prop::collection::vec(op(), 1..120)) {
        // side 0 = joiner (A), side 1 = inviter (B); direction `true` = A→B.
        let (a, b) = new_pair();
        let mut parties = [a, b];
        let mut in_flight: [VecDeque<(Vec<u8>, Vec<u8>)>; 2] = [VecDeque::new(), VecDeque::new()];
        let mut delivered: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
        let mut counter = 0u32;
        let mut b_received = false;
        // the inviter can only send after receiving the first message
        let first = parties[0].encrypt(b"first", 64).unwrap();
        prop_assert_eq!(parties[1].decrypt(&first).unwrap(), b"first".to_vec());
        b_received |= true;
        for op in ops {
            match op {
                Op::Send(ab) => {
                    let (s, d) = if ab { (0, 0) } else { (1, 1) };
                    if s == 1 && !b_received { continue; }
                    counter += 1;
                    let plain = format!("m{counter}").into_bytes();
                    let ct = parties[s].encrypt(&plain, 128).unwrap();
                    in_flight[d].push_back((ct, plain));
                }
                Op::Deliver(ab, i) | Op::Drop(ab, i) | Op::Corrupt(ab, i, _) if in_flight[usize::from(!ab)].is_empty() => {
                    let _ = (ab, i);
                }
                Op::Deliver(ab, i) => {
                    let d = usize::from(!ab);
                    let idx = i % in_flight[d].len();
                    let (ct, plain) = in_flight[d].remove(idx).unwrap();
                    let r = &mut parties[1 - d];
                    prop_assert_eq!(r.decrypt(&ct).unwrap(), plain);
                    delivered[d].push(ct);
                }
                Op::Drop(ab, i) => {
                    let d = usize::from(!ab);
                    let idx = i % in_flight[d].len();
                    in_flight[d].remove(idx);
                }
                Op::Corrupt(ab, i, byte) => {
                    let d = usize::from(!ab);
                    let idx = i % in_flight[d].len();
                    let mut ct = in_flight[d][idx].0.clone();
                    let pos = byte % ct.len();
                    ct[pos] ^= 0x5a;
                    let r = &mut parties[1 - d];
                    let before = state(r);
                    prop_assert!(r.decrypt(&ct).is_err());
                    prop_assert_eq!(state(r), before);
                }
                Op::Persist(a_side) => {
                    let p = &mut parties[usize::from(!a_side)];
                    let bytes = p.to_bytes().unwrap();
                    *p = Ratchet::from_bytes(&bytes).unwrap();
                    prop_assert_eq!(state(p), bytes.to_vec());
                }
                Op::Replay(ab, i) => {
                    let d = usize::from(!ab);
                    if delivered[d].is_empty() { continue; }
                    let ct = delivered[d][i % delivered[d].len()].clone();
                    let r = &mut parties[1 - d];
                    let before = state(r);
                    prop_assert!(r.decrypt(&ct).is_err());
                    prop_assert_eq!(state(r), before);
                }
            }
        }
        // Everything still in flight decrypts (in reverse order, to exercise skipped keys),
        // also after a serialisation round trip of both parties.
        for p in parties.iter_mut() {
            *p = Ratchet::from_bytes(&p.to_bytes().unwrap()).unwrap();
        }
        for d in 0..2 {
            while let Some((ct, plain)) = in_flight[d].pop_back() {
                prop_assert_eq!(parties[1 - d].decrypt(&ct).unwrap(), plain);
            }
        }
    }

    #[test]
    fn garbage_never_panics_or_changes_state(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let (mut a, mut b) = new_pair();
        let m = a.encrypt(b"x", 64).unwrap();
        b.decrypt(&m).unwrap();
        let before = state(&b);
        prop_assert!(b.decrypt(&bytes).is_err());
        prop_assert_eq!(state(&b), before.clone());
        // truncations of a valid message
        let m2 = a.encrypt(b"y", 64).unwrap();
        let cut = bytes.len() % m2.len();
        prop_assert!(b.decrypt(&m2[..cut]).is_err());
        prop_assert_eq!(state(&b), before);
        let _ = Ratchet::from_bytes(&bytes);
    }
}

#[test]
fn header_under_wrong_key_is_rejected_without_state_change() {
    let (mut a, _b) = new_pair();
    let (_c, mut d) = new_pair();
    let m = a.encrypt(b"not for you", 64).unwrap();
    let before = state(&d);
    assert_eq!(d.decrypt(&m), Err(RatchetError::Header));
    assert_eq!(state(&d), before);
}
