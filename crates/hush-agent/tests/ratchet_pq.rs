//! The double ratchet with the sntrup761 KEM (reference `Crypto/Ratchet.hs`: `replyKEM_`,
//! `pqX3dhSnd` / `pqX3dhRcv`, `initSndRatchet` / `initRcvRatchet`, `pqRatchetStep`).
//!
//! No upstream test pins ratchet bytes (the reference's tests use random keys, see
//! shared/vectors/README.md), so the byte layouts below are derived by hand from the reference
//! source: `encodeMsgHeader` (v ≥ 3: Word16 maxVersion ‖ shortString X448 SPKI ‖ Maybe
//! ARKEMParams ‖ Word32 PN ‖ Word32 Ns), `ARKEMParams` (`'P'` Large pk | `'A'` Large ct ‖ Large pk),
//! `paddedHeaderLen` (2310 with PQ support at v ≥ 3, else 88), `EncMessageHeader` (Word16 v ‖
//! IV 16 ‖ tag 16 ‖ Large body) and `encodeEncRatchetMessage` (Large header ‖ tag 16 ‖ Tail).

use hush_agent::ratchet::{
    JoinerKem, KemParams, MsgHeader, PADDED_HEADER_LEN, PADDED_HEADER_LEN_PQ, Ratchet,
    RatchetError, RatchetVersions, pq_x3dh_inviter, pq_x3dh_joiner,
};
use hush_crypto::sntrup761::{self, CIPHERTEXT_LEN, PUBLIC_KEY_LEN};
use hush_crypto::{X448Public, X448Secret};
use hush_proto::encoding::Parser;

const V3: RatchetVersions = RatchetVersions {
    current: 3,
    max_supported: 3,
};

/// Message length for a padded body of `padded` bytes and a padded header of `header` bytes:
/// Large(v ‖ iv ‖ tag ‖ Large(header body)) ‖ tag ‖ body.
fn msg_len(header: usize, padded: usize) -> usize {
    2 + (2 + 16 + 16 + 2 + header) + 16 + padded
}

struct Setup {
    joiner: Ratchet,
    inviter: Ratchet,
    /// The KEM part of the joiner's confirmation params.
    conf_kem: Option<KemParams>,
}

/// One connection: the inviter proposes a KEM key in the invitation when `invite_kem`, the
/// joiner answers per `replyKEM_` with its PQ support `joiner_pq`, the inviter's ratchet has
/// PQ support `inviter_pq`.
fn setup(invite_kem: bool, joiner_pq: bool, inviter_pq: bool) -> Setup {
    let (r1, r2) = (
        X448Secret::generate().unwrap(),
        X448Secret::generate().unwrap(),
    );
    let (s1, s2) = (
        X448Secret::generate().unwrap(),
        X448Secret::generate().unwrap(),
    );
    let (r1p, r2p) = (r1.public().unwrap(), r2.public().unwrap());
    let (s1p, s2p) = (s1.public().unwrap(), s2.public().unwrap());
    let inv_kem = invite_kem.then(sntrup761::keypair);
    let inv_params = inv_kem.as_ref().map(|k| KemParams::Proposed {
        key: k.public.as_bytes().to_vec(),
    });
    let reply = JoinerKem::reply(3, inv_params.as_ref(), joiner_pq).unwrap();
    let conf_kem = reply.params();
    let (pj, jown) = pq_x3dh_joiner(&s1, &s2, &r1p, &r2p, reply).unwrap();
    let joiner =
        Ratchet::init_joiner_pq(V3, &r2p, X448Secret::generate().unwrap(), &pj, jown).unwrap();
    let (pi, iown) = pq_x3dh_inviter(&r1, &r2, inv_kem, &s1p, &s2p, 3, conf_kem.as_ref()).unwrap();
    assert_eq!(pj.ratchet_key, pi.ratchet_key);
    assert_eq!(pj.snd_hk, pi.snd_hk);
    assert_eq!(pj.assoc_data, pi.assoc_data);
    assert_eq!(pj.kem_accepted.is_some(), pi.kem_accepted.is_some());
    let inviter = Ratchet::init_inviter_pq(V3, r2, &pi, iown, inviter_pq);
    Setup {
        joiner,
        inviter,
        conf_kem,
    }
}

fn send(from: &mut Ratchet, to: &mut Ratchet, text: &[u8]) -> usize {
    let m = from.encrypt(text, 200).unwrap();
    assert_eq!(to.decrypt(&m).unwrap(), text);
    m.len()
}

#[test]
fn pq_both_sides_from_the_invitation() {
    let Setup {
        mut joiner,
        mut inviter,
        conf_kem,
    } = setup(true, true, true);
    assert!(
        matches!(conf_kem, Some(KemParams::Accepted { ref ct, ref key })
        if ct.len() == CIPHERTEXT_LEN && key.len() == PUBLIC_KEY_LEN)
    );
    // the joiner's first chain already has the KEM secret of X3DH
    assert_eq!(joiner.pq_chains(), (true, false));
    assert!(joiner.pq_support());
    let l = send(&mut joiner, &mut inviter, b"confirmation");
    assert_eq!(l, msg_len(PADDED_HEADER_LEN_PQ, 200));
    assert_eq!(inviter.pq_chains(), (true, true));
    send(&mut inviter, &mut joiner, b"reply");
    assert_eq!(joiner.pq_chains(), (true, true));
    for k in 0..6u8 {
        send(&mut joiner, &mut inviter, &[k]);
        send(&mut inviter, &mut joiner, &[k, k]);
        assert_eq!(joiner.pq_chains(), (true, true));
        assert_eq!(inviter.pq_chains(), (true, true));
    }
}

#[test]
fn pq_proposed_by_the_joiner_accepted_by_the_inviter() {
    let Setup {
        mut joiner,
        mut inviter,
        conf_kem,
    } = setup(false, true, true);
    assert!(
        matches!(conf_kem, Some(KemParams::Proposed { ref key }) if key.len() == PUBLIC_KEY_LEN)
    );
    assert_eq!(joiner.pq_chains(), (false, false));
    let l = send(&mut joiner, &mut inviter, b"confirmation");
    assert_eq!(l, msg_len(PADDED_HEADER_LEN_PQ, 200));
    // the inviter accepted the proposal: its sending chain has a KEM secret
    assert_eq!(inviter.pq_chains(), (true, false));
    let l = send(&mut inviter, &mut joiner, b"reply");
    assert_eq!(l, msg_len(PADDED_HEADER_LEN_PQ, 200));
    assert_eq!(joiner.pq_chains(), (true, true));
    send(&mut joiner, &mut inviter, b"third");
    assert_eq!(inviter.pq_chains(), (true, true));
}

#[test]
fn pq_on_one_side_only_falls_back() {
    // joiner proposes, inviter has PQ off: the proposal is ignored
    let Setup {
        mut joiner,
        mut inviter,
        ..
    } = setup(false, true, false);
    let l = send(&mut joiner, &mut inviter, b"confirmation");
    assert_eq!(l, msg_len(PADDED_HEADER_LEN_PQ, 200));
    let l = send(&mut inviter, &mut joiner, b"reply");
    assert_eq!(l, msg_len(PADDED_HEADER_LEN, 200));
    for k in 0..4u8 {
        send(&mut joiner, &mut inviter, &[k]);
        send(&mut inviter, &mut joiner, &[k]);
    }
    assert_eq!(joiner.pq_chains(), (false, false));
    assert_eq!(inviter.pq_chains(), (false, false));
    assert!(!joiner.pq_enabled() && !inviter.pq_enabled());
    // large headers, once on, stay on (the joiner), the inviter never turned them on
    assert!(joiner.pq_support());
    assert!(!inviter.pq_support());

    // invitation proposes, joiner has PQ off: no KEM in the confirmation, the inviter (PQ on)
    // proposes a fresh key in its first reply, which the joiner ignores
    let Setup {
        mut joiner,
        mut inviter,
        conf_kem,
    } = setup(true, false, true);
    assert!(conf_kem.is_none());
    let l = send(&mut joiner, &mut inviter, b"confirmation");
    assert_eq!(l, msg_len(PADDED_HEADER_LEN, 200));
    let l = send(&mut inviter, &mut joiner, b"reply");
    assert_eq!(l, msg_len(PADDED_HEADER_LEN_PQ, 200));
    for k in 0..4u8 {
        send(&mut joiner, &mut inviter, &[k]);
        send(&mut inviter, &mut joiner, &[k]);
    }
    assert_eq!(joiner.pq_chains(), (false, false));
    assert_eq!(inviter.pq_chains(), (false, false));
    assert!(!joiner.pq_support());
}

/// A small deterministic generator for the schedule (not for keys).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn kem_transitions_over_many_messages_with_skips_both_ways() {
    let Setup {
        mut joiner,
        mut inviter,
        ..
    } = setup(true, true, true);
    let mut rng = Lcg(7);
    let mut held: Vec<(bool, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut sent = 0u32;
    for round in 0..40u32 {
        // as the agent does, every message passes the connection's PQ setting (`pqEnc_`): on
        // for the inviter, off for the joiner in rounds 15..25
        let pq = Some(!(15..25).contains(&round));
        for side in [true, false] {
            let n = 1 + rng.next(4);
            let mut batch = Vec::new();
            for k in 0..n {
                let text = format!("r{round} s{side} m{k}").into_bytes();
                let m = if side {
                    joiner.encrypt_pq(&text, 300, pq)
                } else {
                    inviter.encrypt_pq(&text, 300, Some(true))
                }
                .unwrap();
                sent += 1;
                batch.push((side, text, m));
            }
            // deliver in a shuffled order, holding some back for later rounds. Not across a PQ
            // switch-off: from that message on the sender's headers stop carrying the KEM
            // ciphertext within the same chain, and the receiver's ratchet step takes the KEM
            // from whichever message of the chain arrives first (as the reference's; SMP queues
            // deliver in order, so only lost messages are skipped there)
            if side && round == 15 {
                for item in held.drain(..) {
                    deliver(&mut joiner, &mut inviter, &item);
                }
                for item in batch.drain(..) {
                    deliver(&mut joiner, &mut inviter, &item);
                }
            }
            while !batch.is_empty() {
                let i = rng.next(batch.len() as u64) as usize;
                let item = batch.swap_remove(i);
                if rng.next(5) == 0 {
                    held.push(item);
                } else {
                    deliver(&mut joiner, &mut inviter, &item);
                }
            }
            if rng.next(3) == 0 {
                for item in held.drain(..) {
                    deliver(&mut joiner, &mut inviter, &item);
                }
            }
        }
        if round == 10 || round == 38 {
            assert_eq!(joiner.pq_chains(), (true, true), "round {round}");
            assert_eq!(inviter.pq_chains(), (true, true), "round {round}");
        }
        if round == 24 {
            // with PQ off the joiner never encapsulates: no KEM secret in its sending chain
            assert!(!joiner.pq_chains().0);
        }
    }
    for item in held.drain(..) {
        deliver(&mut joiner, &mut inviter, &item);
    }
    assert!(sent > 80);
    assert_eq!(joiner.skipped_count(), 0);
    assert_eq!(inviter.skipped_count(), 0);
    // states survive serialisation and keep working
    let mut j2 = Ratchet::from_bytes(&joiner.to_bytes().unwrap()).unwrap();
    let mut i2 = Ratchet::from_bytes(&inviter.to_bytes().unwrap()).unwrap();
    send(&mut j2, &mut i2, b"after restore");
    send(&mut i2, &mut j2, b"after restore too");
}

fn deliver(
    joiner: &mut Ratchet,
    inviter: &mut Ratchet,
    (side, text, m): &(bool, Vec<u8>, Vec<u8>),
) {
    let to = if *side { inviter } else { joiner };
    assert_eq!(&to.decrypt(m).unwrap(), text);
}

#[test]
fn pq_header_bytes_hand_derived() {
    let dh = X448Secret::generate().unwrap().public().unwrap();
    let ct: Vec<u8> = (0..CIPHERTEXT_LEN).map(|i| i as u8).collect();
    let pk: Vec<u8> = (0..PUBLIC_KEY_LEN).map(|i| (i * 7) as u8).collect();
    let h = MsgHeader {
        max_version: 3,
        dh,
        kem: Some(KemParams::Accepted {
            ct: ct.clone(),
            key: pk.clone(),
        }),
        pn: 0x01020304,
        ns: 5,
    };
    let b = h.encode(3).unwrap();
    let spki = dh.to_spki_der();
    assert_eq!(spki.len(), 68);
    let mut expected = vec![0x00, 0x03, 68];
    expected.extend_from_slice(&spki);
    expected.extend_from_slice(b"1A");
    expected.extend_from_slice(&[0x04, 0x0f]); // 1039
    expected.extend_from_slice(&ct);
    expected.extend_from_slice(&[0x04, 0x86]); // 1158
    expected.extend_from_slice(&pk);
    expected.extend_from_slice(&[1, 2, 3, 4, 0, 0, 0, 5]);
    assert_eq!(b, expected);
    assert_eq!(b.len(), 2282);
    // fits the PQ padded header (Word16 length + data)
    assert!(b.len() + 2 <= PADDED_HEADER_LEN_PQ);
    assert_eq!(MsgHeader::parse(&b, 3).unwrap(), h);

    let proposed = MsgHeader {
        kem: Some(KemParams::Proposed { key: pk.clone() }),
        ..h.clone()
    };
    let b = proposed.encode(3).unwrap();
    assert_eq!(&b[71..75], &[b'1', b'P', 0x04, 0x86]);
    assert_eq!(b.len(), 2 + 69 + 2 + 2 + PUBLIC_KEY_LEN + 8);
    // v2 headers have no KEM slot at all
    let b2 = proposed.encode(2).unwrap();
    assert_eq!(b2.len(), 2 + 69 + 8);
    assert_eq!(MsgHeader::parse(&b2, 2).unwrap().kem, None);

    // a whole message: Large(enc header) with the Large 2310-byte header body
    let Setup { mut joiner, .. } = setup(true, true, true);
    let m = joiner.encrypt(b"hi", 100).unwrap();
    assert_eq!(m.len(), msg_len(PADDED_HEADER_LEN_PQ, 100));
    let enc_header_len = 2 + 16 + 16 + 2 + PADDED_HEADER_LEN_PQ;
    assert_eq!(&m[..2], &(enc_header_len as u16).to_be_bytes());
    assert_eq!(&m[2..4], &[0, 3]);
    assert_eq!(&m[36..38], &(PADDED_HEADER_LEN_PQ as u16).to_be_bytes());
}

#[test]
fn kem_field_decoder_errors() {
    let dh = X448Secret::generate().unwrap().public().unwrap();
    let base = MsgHeader {
        max_version: 3,
        dh,
        kem: Some(KemParams::Proposed { key: vec![9; 10] }),
        pn: 0,
        ns: 0,
    }
    .encode(3)
    .unwrap();
    // the Maybe tag sits at 71, the KEM tag at 72
    let mut bad = base.clone();
    bad[71] = b'2';
    assert_eq!(
        MsgHeader::parse(&bad, 3),
        Err(RatchetError::Syntax("bad Maybe tag"))
    );
    let mut bad = base.clone();
    bad[72] = b'X';
    assert_eq!(
        MsgHeader::parse(&bad, 3),
        Err(RatchetError::Syntax("bad KEM params tag"))
    );
    // Large length runs past the end
    let mut bad = base.clone();
    bad[73] = 0x10;
    assert_eq!(
        MsgHeader::parse(&bad, 3),
        Err(RatchetError::Syntax("KEM params"))
    );
    // accepted with the ciphertext only
    let mut p = Parser::new(b"A\x00\x01z");
    assert_eq!(
        KemParams::parse(&mut p),
        Err(RatchetError::Syntax("KEM params"))
    );

    // keys of the wrong length are refused where they are used
    assert!(matches!(
        JoinerKem::reply(3, Some(&KemParams::Proposed { key: vec![1; 1157] }), true),
        Err(RatchetError::Syntax("KEM public key length"))
    ));
    // an invitation cannot carry an acceptance
    assert!(matches!(
        JoinerKem::reply(
            3,
            Some(&KemParams::Accepted {
                ct: vec![0; CIPHERTEXT_LEN],
                key: vec![0; PUBLIC_KEY_LEN]
            }),
            true
        ),
        Err(RatchetError::KemState)
    ));
    // below e2e v3 or with PQ off there is no KEM at all
    assert!(matches!(
        JoinerKem::reply(2, None, true).unwrap(),
        JoinerKem::None
    ));
    assert!(matches!(
        JoinerKem::reply(3, None, false).unwrap(),
        JoinerKem::None
    ));

    let (r1, r2) = (
        X448Secret::generate().unwrap(),
        X448Secret::generate().unwrap(),
    );
    let (s1p, s2p): (X448Public, X448Public) = (
        X448Secret::generate().unwrap().public().unwrap(),
        X448Secret::generate().unwrap().public().unwrap(),
    );
    let accepted = KemParams::Accepted {
        ct: vec![0; CIPHERTEXT_LEN],
        key: vec![0; PUBLIC_KEY_LEN],
    };
    // the joiner accepted a key the inviter never proposed (reference CERatchetKEMState)
    assert!(matches!(
        pq_x3dh_inviter(&r1, &r2, None, &s1p, &s2p, 3, Some(&accepted)),
        Err(RatchetError::KemState)
    ));
    let short_ct = KemParams::Accepted {
        ct: vec![0; CIPHERTEXT_LEN - 1],
        key: vec![0; PUBLIC_KEY_LEN],
    };
    assert!(matches!(
        pq_x3dh_inviter(
            &r1,
            &r2,
            Some(sntrup761::keypair()),
            &s1p,
            &s2p,
            3,
            Some(&short_ct)
        ),
        Err(RatchetError::Syntax("KEM ciphertext length"))
    ));
    // at e2e v2 the KEM params are not looked at
    assert!(pq_x3dh_inviter(&r1, &r2, None, &s1p, &s2p, 2, Some(&accepted)).is_ok());
}

// The reference's own KEM switching sequences (tests/AgentTests/DoubleRatchetTests.hs:
// testDisableEnableKEM, testDisableEnableKEMStrict, testEnableKEM, testEnableKEMStrict), with
// the same checks after every message: the sender's `rcSndKEM` after encrypting, the receiver's
// `rcRcvKEM` after decrypting (for `\#>` and `\#>\` the reference checks the receiver's
// `rcSndKEM`, kept as is). Alice is the inviter, Bob the joiner.

#[derive(Clone, Copy)]
enum Op {
    /// `!#>`: no PQ preference, KEM in both chains
    On,
    /// `!#>!`: PQ on, KEM in both chains
    OnOn,
    /// `\#>!`: PQ on, no KEM yet
    OffOn,
    /// `!#>\`: PQ off, KEM still in both chains
    OnOff,
    /// `\#>\`: PQ off, no KEM
    OffOff,
    /// `\#>`: no PQ preference, no KEM
    Off,
}

fn ref_step(s: &mut Ratchet, r: &mut Ratchet, op: Op, text: &str) {
    let (pq, kem) = match op {
        Op::On => (None, true),
        Op::OnOn => (Some(true), true),
        Op::OffOn => (Some(true), false),
        Op::OnOff => (Some(false), true),
        Op::OffOff => (Some(false), false),
        Op::Off => (None, false),
    };
    let m = s.encrypt_pq(text.as_bytes(), 100, pq).unwrap();
    assert_eq!(s.pq_chains().0, kem, "sender's chain: {text}");
    assert_eq!(r.decrypt(&m).unwrap(), text.as_bytes());
    let got = match op {
        Op::OffOff | Op::Off => r.pq_chains().0,
        _ => r.pq_chains().1,
    };
    assert_eq!(got, kem, "receiver's chain: {text}");
    // the reference's tests also round-trip the state on every step
    assert_eq!(
        *Ratchet::from_bytes(&r.to_bytes().unwrap())
            .unwrap()
            .to_bytes()
            .unwrap(),
        *r.to_bytes().unwrap()
    );
}

fn run_reference_sequence(kem_accepted: bool, seq: &[(bool, Op, &str)]) {
    let Setup {
        joiner: mut bob,
        inviter: mut alice,
        ..
    } = if kem_accepted {
        setup(true, true, true)
    } else {
        setup(false, false, false)
    };
    for &(bob_sends, op, text) in seq {
        if bob_sends {
            ref_step(&mut bob, &mut alice, op, text);
        } else {
            ref_step(&mut alice, &mut bob, op, text);
        }
    }
}

const BOB: bool = true;
const ALICE: bool = false;

#[test]
fn reference_disable_enable_kem() {
    use Op::*;
    run_reference_sequence(
        true,
        &[
            (BOB, On, "hello alice"),
            (ALICE, On, "hello bob"),
            (BOB, OnOff, "disabling KEM"),
            (ALICE, On, "still disabling KEM"),
            (BOB, Off, "now KEM is disabled"),
            (ALICE, Off, "KEM is disabled for both sides"),
            (BOB, OffOn, "trying to enable KEM"),
            (
                ALICE,
                Off,
                "but unless alice enables it too it won't enable",
            ),
            (BOB, Off, "KEM is disabled"),
            (ALICE, Off, "KEM is disabled for both sides"),
            (BOB, OffOn, "enabling KEM again"),
            (ALICE, OffOn, "and alice accepts it this time"),
            (BOB, OffOn, "still enabling KEM"),
            (ALICE, On, "now KEM is enabled"),
            (BOB, On, "KEM is enabled for both sides"),
        ],
    );
    run_reference_sequence(
        true,
        &[
            (BOB, OnOn, "hello alice"),
            (ALICE, OnOn, "hello bob"),
            (BOB, OnOff, "disabling KEM"),
            (ALICE, OnOn, "still disabling KEM"),
            (BOB, OffOff, "now KEM is disabled"),
            (ALICE, OffOff, "KEM is disabled for both sides"),
            (BOB, OffOn, "trying to enable KEM"),
            (
                ALICE,
                OffOff,
                "but unless alice enables it too it won't enable",
            ),
            (BOB, OffOn, "KEM is disabled"),
            (ALICE, OffOff, "KEM is disabled for both sides"),
            (BOB, OffOn, "enabling KEM again"),
            (ALICE, OffOn, "and alice accepts it this time"),
            (BOB, OffOn, "still enabling KEM"),
            (ALICE, OnOn, "now KEM is enabled"),
            (BOB, OnOn, "KEM is enabled for both sides"),
        ],
    );
}

#[test]
fn reference_enable_kem() {
    use Op::*;
    run_reference_sequence(
        false,
        &[
            (BOB, Off, "hello alice"),
            (ALICE, Off, "hello bob"),
            (BOB, OffOn, "enabling KEM"),
            (BOB, OffOn, "KEM not enabled yet"),
            (ALICE, OffOn, "accepting KEM"),
            (ALICE, OffOn, "KEM not enabled yet here too"),
            (BOB, OffOn, "KEM is still not enabled"),
            (ALICE, OnOn, "now KEM is enabled"),
            (BOB, On, "now KEM is enabled for both sides"),
            (ALICE, On, "still enabled for both sides"),
            (BOB, On, "still enabled for both sides 2"),
            (ALICE, OnOff, "disabling KEM"),
            (BOB, On, "KEM not disabled yet"),
            (ALICE, Off, "KEM disabled"),
            (BOB, Off, "KEM disabled on both sides"),
        ],
    );
    run_reference_sequence(
        false,
        &[
            (BOB, OffOff, "hello alice"),
            (ALICE, OffOff, "hello bob"),
            (BOB, OffOn, "enabling KEM"),
            (BOB, OffOn, "KEM not enabled yet"),
            (ALICE, OffOn, "accepting KEM"),
            (ALICE, OffOn, "KEM not enabled yet here too"),
            (BOB, OffOn, "KEM is still not enabled"),
            (ALICE, OnOn, "now KEM is enabled"),
            (BOB, OnOn, "now KEM is enabled for both sides"),
            (ALICE, OnOn, "still enabled for both sides"),
            (BOB, OnOn, "still enabled for both sides 2"),
            (ALICE, OnOff, "disabling KEM"),
            (BOB, OnOn, "KEM not disabled yet"),
            (ALICE, OffOff, "KEM disabled"),
            (BOB, OffOn, "KEM disabled on both sides"),
            (ALICE, OffOff, "KEM still disabled 1"),
            (BOB, OffOn, "KEM still disabled 2"),
            (ALICE, OffOff, "KEM still disabled 3"),
            (BOB, OffOn, "KEM still disabled 4"),
            (ALICE, OffOff, "KEM still disabled 5"),
        ],
    );
}
