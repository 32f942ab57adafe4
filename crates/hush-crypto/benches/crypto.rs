//! Hot-path crypto costs: Ed25519 sign/verify, crypto_box and SimpleX secretbox over a
//! 16 KB block, one block-chain step. Run: `cargo bench -p hush-crypto --bench crypto`.

use divan::{Bencher, black_box};
use hush_crypto::*;

fn main() {
    divan::main();
}

const BLOCK: usize = 16384;

#[divan::bench]
fn ed25519_sign(b: Bencher) {
    let sk = Ed25519Secret::from_seed(&[7; 32]);
    let msg = [1u8; 100];
    b.bench(|| sk.sign(black_box(&msg)));
}

#[divan::bench]
fn ed25519_verify(b: Bencher) {
    let sk = Ed25519Secret::from_seed(&[7; 32]);
    let msg = [1u8; 100];
    let sig = sk.sign(&msg);
    let pk = PublicKey::Ed25519(sk.public());
    b.bench(|| pk.verify(black_box(&msg), black_box(&sig)).is_ok());
}

#[divan::bench]
fn crypto_box_16k(b: Bencher) {
    let dh = X25519Secret::from_bytes([1; 32]).dh(&X25519Secret::from_bytes([2; 32]).public());
    let msg = vec![3u8; 16000];
    b.counter(divan::counter::BytesCount::new(BLOCK))
        .bench(|| cb_encrypt(&dh, black_box(&[4; 24]), black_box(&msg), BLOCK - 16).unwrap());
}

#[divan::bench]
fn secretbox_16k(b: Bencher) {
    let msg = vec![3u8; 16000];
    b.counter(divan::counter::BytesCount::new(BLOCK)).bench(|| {
        sb_encrypt(
            black_box(&[5; 32]),
            black_box(&[4; 24]),
            black_box(&msg),
            BLOCK - 16,
        )
        .unwrap()
    });
}

#[divan::bench]
fn secretbox_16k_decrypt(b: Bencher) {
    let msg = vec![3u8; 16000];
    let ct = sb_encrypt(&[5; 32], &[4; 24], &msg, BLOCK - 16).unwrap();
    b.counter(divan::counter::BytesCount::new(BLOCK))
        .bench(|| sb_decrypt(black_box(&[5; 32]), black_box(&[4; 24]), black_box(&ct)).unwrap());
}

/// X25519 shared secret (the `crypto_box` precompute: `crypto_box_beforenm` adds one
/// HSalsa20, ≈ 0.1 µs, inside every box call).
#[divan::bench]
fn x25519_dh(b: Bencher) {
    let own = X25519Secret::from_bytes([1; 32]);
    let peer = X25519Secret::from_bytes([2; 32]).public();
    b.bench(|| own.dh(black_box(&peer)));
}

/// The relay's per-message `MSG` body box (crypto_box with the queue's DH secret, padded to
/// 16106 bytes whatever the body length).
#[divan::bench(args = [256, 16000])]
fn encrypt_rcv_msg_body_len(b: Bencher, len: usize) {
    let dh = X25519Secret::from_bytes([1; 32]).dh(&X25519Secret::from_bytes([2; 32]).public());
    let body = vec![3u8; len];
    b.bench(|| encrypt_rcv_msg_body(&dh, black_box(&[4; 24]), black_box(&body)).unwrap());
}

#[divan::bench(args = [100, 16138])]
fn ed25519_verify_len(b: Bencher, len: usize) {
    let sk = Ed25519Secret::from_seed(&[7; 32]);
    let msg = vec![1u8; len];
    let sig = sk.sign(&msg);
    let pk = PublicKey::Ed25519(sk.public());
    b.bench(|| pk.verify(black_box(&msg), black_box(&sig)).is_ok());
}

#[divan::bench]
fn sbchain_step(b: Bencher) {
    let (mut ck, _) = sb_chain_init(&[9; 32], &DhSecret::from_bytes([8; 32]));
    b.bench_local(|| ck.next());
}

/// The chain step as it was before issue 12's follow-up (the `hkdf` crate over `sha2`), for
/// a same-run comparison with `sbchain_step` (OpenSSL SHA-512, cached HMAC pads).
#[divan::bench]
fn sbchain_step_old_hkdf_sha2(b: Bencher) {
    let mut ck = [7u8; 32];
    b.bench_local(|| {
        let mut okm = [0u8; 88];
        hkdf::Hkdf::<sha2::Sha512>::new(Some(b""), black_box(&ck))
            .expand(b"SimpleXSbChain", &mut okm)
            .unwrap();
        ck.copy_from_slice(&okm[..32]);
        okm
    });
}

/// Opening a received 16 KB block in place: the whole body (`full`) or, as the block reader
/// does, only `Word16 length ‖ content` of a block carrying 300 bytes (`prefix_300`).
#[divan::bench(args = ["full", "prefix_300"])]
fn secretbox_16k_open_in_place(b: Bencher, how: &str) {
    let ct = sb_encrypt(&[5; 32], &[4; 24], &[3u8; 300], BLOCK - 16).unwrap();
    b.counter(divan::counter::BytesCount::new(BLOCK))
        .with_inputs(|| ct.clone())
        .bench_local_refs(|c| {
            if how == "full" {
                secretbox::sb_open_in_place(&[5; 32], &[4; 24], c).map(|b| b.len())
            } else {
                secretbox::sb_open_prefix_in_place(&[5; 32], &[4; 24], c, |h| {
                    2 + usize::from(u16::from_be_bytes([h[0], h[1]]))
                })
                .map(|b| b.len())
            }
        });
}

#[divan::bench]
fn authenticator_verify(b: Bencher) {
    let session = X25519Secret::from_bytes([1; 32]);
    let queue = X25519Secret::from_bytes([2; 32]);
    let authorized = [6u8; 120];
    let a = cb_authenticate(&session.public(), &queue, &[3; 24], &authorized);
    let qp = queue.public();
    b.bench(|| {
        cb_verify(
            &qp,
            &session,
            &[3; 24],
            black_box(&a),
            black_box(&authorized),
        )
    });
}
