//! Wall time of the SMP `SEND` hot path and of the primitives it is made of (divan).
//! Run: `cargo bench -p hush-bench --bench send`. Figures: BENCHMARKS.md.
//!
//! * `send::a_seal` — client: build, sign, batch, pad, encrypt one 16048-byte `SEND`;
//! * `send::b_open` — server: decrypt, unpad, parse batch / transmission / command, verify;
//! * `send::c_total` — both, with client and server chains advancing in step.
//!
//! `a_seal` and `b_open` restart from the same chain key each iteration (one HKDF step each,
//! as in a real block), so every iteration does identical work.

use divan::{Bencher, black_box};
use hush_bench::{SendFixture, open_send, seal_send};
use hush_crypto::secretbox::{TAG_LEN, sb_encrypt_into, sb_open_in_place};
use hush_crypto::{Ed25519Secret, Ed25519Verifier, PublicKey, SbChainKey};
use hush_proto::version::SMP_BLOCK_SIZE;

fn main() {
    divan::main();
}

/// The previous secretbox seal (before the SIMD keystream): `xsalsa20poly1305` with
/// `k1 = HSalsa20(key, 0¹⁶)`; the same bytes as `sb_encrypt_into` (tested in hush-crypto).
fn old_secretbox_seal(key: &[u8; 32], nonce: &[u8; 24], body: &mut [u8]) -> [u8; 16] {
    use salsa20::cipher::consts::U10;
    use xsalsa20poly1305::aead::{AeadInPlace, KeyInit};
    let k1 = salsa20::hsalsa::<U10>(key.into(), &[0u8; 16].into());
    xsalsa20poly1305::XSalsa20Poly1305::new(&k1)
        .encrypt_in_place_detached(nonce.into(), b"", body)
        .expect("short message")
        .into()
}

mod send {
    use super::*;

    #[divan::bench]
    fn a_seal(b: Bencher) {
        let fx = SendFixture::default();
        let mut out = Vec::with_capacity(SMP_BLOCK_SIZE);
        b.bench_local(|| {
            seal_send(black_box(&fx), &mut fx.chain(), &mut out);
            black_box(out.len())
        });
    }

    #[divan::bench]
    fn b_open(b: Bencher) {
        let fx = SendFixture::default();
        let mut block = Vec::new();
        seal_send(&fx, &mut fx.chain(), &mut block);
        b.with_inputs(|| block.clone()).bench_local_refs(|blk| {
            open_send(&fx.sender_verifier, &fx.session_id, &mut fx.chain(), blk)
                .expect("the fixture block opens")
        });
    }

    /// `b_open` with the sender key decoded (point decompression) on every open: a relay's
    /// first verification with a key on a connection (and the figure before 2026-12-06's
    /// seventh session, when the bench decoded the key each time).
    #[divan::bench]
    fn b_open_key_decoded_each_time(b: Bencher) {
        let fx = SendFixture::default();
        let mut block = Vec::new();
        seal_send(&fx, &mut fx.chain(), &mut block);
        let PublicKey::Ed25519(pk) = &fx.sender_public else {
            unreachable!("the fixture key is Ed25519")
        };
        b.with_inputs(|| block.clone()).bench_local_refs(|blk| {
            let key = Ed25519Verifier::new(pk).expect("the fixture key is a point");
            open_send(&key, &fx.session_id, &mut fx.chain(), blk).expect("the fixture block opens")
        });
    }

    #[divan::bench]
    fn c_total(b: Bencher) {
        let fx = SendFixture::default();
        let (mut client, mut server) = (fx.chain(), fx.chain());
        let mut out = Vec::with_capacity(SMP_BLOCK_SIZE);
        b.bench_local(|| {
            seal_send(&fx, &mut client, &mut out);
            open_send(&fx.sender_verifier, &fx.session_id, &mut server, &mut out)
                .expect("the block opens")
        });
    }
}

mod primitives {
    use super::*;

    /// Size of the authorized bytes of the benchmarked `SEND` (what gets signed).
    const AUTHORIZED_LEN: usize = hush_bench::SEND_AUTHORIZED_LEN;

    fn key() -> Ed25519Secret {
        Ed25519Secret::from_seed(&[7; 32])
    }

    #[divan::bench(args = [100, AUTHORIZED_LEN])]
    fn ed25519_sign(b: Bencher, len: usize) {
        let sk = key();
        let msg = vec![1u8; len];
        b.bench_local(|| sk.sign(black_box(&msg)));
    }

    #[divan::bench(args = [100, AUTHORIZED_LEN])]
    fn ed25519_verify(b: Bencher, len: usize) {
        let sk = key();
        let msg = vec![1u8; len];
        let sig = sk.sign(&msg);
        let pk = PublicKey::Ed25519(sk.public());
        b.bench_local(|| pk.verify(black_box(&msg), black_box(&sig)).is_ok());
    }

    /// Verify with an already-decompressed key: what a per-queue key cache would save
    /// (`PublicKey::verify` decompresses the point on every call).
    #[divan::bench(args = [100, AUTHORIZED_LEN])]
    fn ed25519_verify_cached_key(b: Bencher, len: usize) {
        let sk = key();
        let msg = vec![1u8; len];
        let sig = sk.sign(&msg);
        let vk = Ed25519Verifier::new(&sk.public()).expect("valid key");
        b.bench_local(|| vk.verify(black_box(&msg), black_box(&sig)).is_ok());
    }

    /// The previous verify: ed25519-dalek's own `Verifier` (SHA-512 from the `sha2` crate),
    /// decoded key.
    #[divan::bench(args = [100, AUTHORIZED_LEN])]
    fn ed25519_verify_cached_key_sha2_old(b: Bencher, len: usize) {
        use ed25519_dalek::{Signature, Verifier, VerifyingKey};
        let sk = key();
        let msg = vec![1u8; len];
        let sig = Signature::from_bytes(&sk.sign(&msg));
        let vk = VerifyingKey::from_bytes(&sk.public().0).expect("valid key");
        b.bench_local(|| vk.verify(black_box(&msg), black_box(&sig)).is_ok());
    }

    /// The previous sign: ed25519-dalek's own `Signer` (`sha2`).
    #[divan::bench(args = [100, AUTHORIZED_LEN])]
    fn ed25519_sign_sha2_old(b: Bencher, len: usize) {
        use ed25519_dalek::{Signer, SigningKey};
        let sk = SigningKey::from_bytes(&[7; 32]);
        let msg = vec![1u8; len];
        b.bench_local(|| sk.sign(black_box(&msg)));
    }

    #[divan::bench(args = [100, AUTHORIZED_LEN])]
    fn sha512(b: Bencher, len: usize) {
        let msg = vec![1u8; len];
        b.bench_local(|| hush_crypto::sha512(black_box(&msg)));
    }

    /// The previous SHA-512: the `sha2` crate.
    #[divan::bench(args = [100, AUTHORIZED_LEN])]
    fn sha512_sha2_old(b: Bencher, len: usize) {
        use sha2::Digest;
        let msg = vec![1u8; len];
        b.bench_local(|| sha2::Sha512::digest(black_box(&msg)));
    }

    /// The previous secretbox seal: `xsalsa20poly1305` (scalar `salsa20` crate keystream).
    #[divan::bench]
    fn secretbox_seal_16k_xsalsa20poly1305_old(b: Bencher) {
        let mut buf = vec![3u8; SMP_BLOCK_SIZE - TAG_LEN];
        b.bench_local(|| old_secretbox_seal(black_box(&[5; 32]), &[4; 24], &mut buf));
    }

    #[divan::bench]
    fn secretbox_seal_16k(b: Bencher) {
        let msg = vec![3u8; 16_200];
        let mut out = Vec::with_capacity(SMP_BLOCK_SIZE);
        b.bench_local(|| {
            out.clear();
            sb_encrypt_into(
                black_box(&[5; 32]),
                &[4; 24],
                &msg,
                SMP_BLOCK_SIZE - TAG_LEN,
                &mut out,
            )
            .expect("fits")
        });
    }

    #[divan::bench]
    fn secretbox_open_16k(b: Bencher) {
        let mut ct = Vec::new();
        sb_encrypt_into(
            &[5; 32],
            &[4; 24],
            &[3u8; 16_200],
            SMP_BLOCK_SIZE - TAG_LEN,
            &mut ct,
        )
        .expect("fits");
        b.with_inputs(|| ct.clone()).bench_local_refs(|c| {
            sb_open_in_place(black_box(&[5; 32]), &[4; 24], c)
                .expect("opens")
                .len()
        });
    }

    #[divan::bench]
    fn sbchain_step(b: Bencher) {
        let mut ck = SbChainKey::from_bytes([8; 32]);
        b.bench_local(|| ck.next());
    }
}
