//! The SimpleX "secretbox" (reference §4.2) and NaCl crypto_box over a raw DH secret (§4.1).
//!
//! Both are the same construction: `k1 = HSalsa20(key, 0¹⁶)`, then XSalsa20-Poly1305 with
//! `k1` and the 24-byte nonce; output `tag(16) ‖ ciphertext`. For crypto_box `key` is the raw
//! X25519 output (so `k1` is `crypto_box_beforenm`); for the SimpleX secretbox it is a
//! symmetric key — which is why it differs from libsodium `crypto_secretbox(key, …)`.

use salsa20::cipher::consts::U10;
use salsa20::hsalsa;
use zeroize::{Zeroize, Zeroizing};

use crate::CryptoError;
use crate::poly;
use crate::salsa::{Backend, xor_keystream};
use hush_proto::encoding::{pad_into, unpad};

/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;

/// The XSalsa20 subkey and Salsa20 nonce for (`key`, `nonce`): `k1 = HSalsa20(key, 0¹⁶)`,
/// `k2 = HSalsa20(k1, nonce[..16])`, Salsa20 nonce `nonce[16..]`.
struct Stream {
    subkey: [u8; 32],
    nonce: [u8; 8],
}

impl Stream {
    fn new(key: &[u8; 32], nonce: &[u8; 24]) -> Stream {
        let mut k1 = hsalsa::<U10>(key.into(), &[0u8; 16].into());
        let mut k2 = hsalsa::<U10>(&k1, nonce[..16].into());
        k1.as_mut_slice().zeroize();
        let mut subkey = [0u8; 32];
        subkey.copy_from_slice(&k2);
        k2.as_mut_slice().zeroize();
        let mut n = [0u8; 8];
        n.copy_from_slice(&nonce[16..]);
        Stream { subkey, nonce: n }
    }

    /// Block 0 of the Salsa20 stream: the Poly1305 key (bytes 0…31) and the keystream for
    /// the first 32 bytes of the body (bytes 32…63), as NaCl's `crypto_secretbox`.
    fn block0(&self) -> Zeroizing<[u8; 64]> {
        let mut block0 = Zeroizing::new([0u8; 64]);
        xor_keystream(Backend::Scalar, &self.subkey, &self.nonce, 0, &mut *block0);
        block0
    }

    /// XORs the cipher keystream (bytes 32… of the Salsa20 stream) into `body`.
    fn xor(&self, backend: Backend, block0: &[u8; 64], body: &mut [u8]) {
        let head = body.len().min(32);
        for (b, k) in body[..head].iter_mut().zip(&block0[32..]) {
            *b ^= k;
        }
        if body.len() > 32 {
            xor_keystream(backend, &self.subkey, &self.nonce, 1, &mut body[32..]);
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.subkey.zeroize();
    }
}

/// XSalsa20-Poly1305 seal of `body` in place; returns the tag.
fn seal_detached(backend: Backend, key: &[u8; 32], nonce: &[u8; 24], body: &mut [u8]) -> [u8; 16] {
    let stream = Stream::new(key, nonce);
    let block0 = stream.block0();
    stream.xor(backend, &block0, body);
    poly::tag(poly_key(&block0), body)
}

fn poly_key(block0: &[u8; 64]) -> &[u8; 32] {
    block0[..32].try_into().expect("32 bytes")
}

/// XSalsa20-Poly1305 open of `body` in place: checks `tag` (constant time) over the
/// ciphertext first and decrypts only if it matches.
fn open_detached(
    backend: Backend,
    key: &[u8; 32],
    nonce: &[u8; 24],
    body: &mut [u8],
    tag: &[u8],
) -> Result<(), CryptoError> {
    let stream = Stream::new(key, nonce);
    let block0 = stream.block0();
    let expected = poly::tag(poly_key(&block0), body);
    if !crate::ct_eq(&expected, tag) {
        return Err(CryptoError::DecryptFailed);
    }
    stream.xor(backend, &block0, body);
    Ok(())
}

/// Encrypts `buf[TAG_LEN..]` in place and writes the tag into `buf[..TAG_LEN]`.
fn seal_in_place(key: &[u8; 32], nonce: &[u8; 24], buf: &mut [u8]) {
    let (tag_out, body) = buf.split_at_mut(TAG_LEN);
    let tag = seal_detached(Backend::for_len(body.len()), key, nonce, body);
    tag_out.copy_from_slice(&tag);
}

/// Seals a buffer the caller has already laid out as `16 bytes (overwritten) ‖ body`:
/// encrypts the body in place and writes the tag in front; with a padded body this gives
/// exactly [`sb_encrypt_into`]'s bytes without copying the message. A buffer shorter than
/// the tag is refused with `Pad(InvalidMsg)` and left as it is.
pub fn sb_seal_in_place(
    key: &[u8; 32],
    nonce: &[u8; 24],
    buf: &mut [u8],
) -> Result<(), CryptoError> {
    if buf.len() < TAG_LEN {
        return Err(CryptoError::Pad(hush_proto::encoding::PadError::InvalidMsg));
    }
    seal_in_place(key, nonce, buf);
    Ok(())
}

/// `sbEncrypt(key, nonce, msg, L)` = tag(16) ‖ XSalsa20(pad(msg, L)); output is L + 16 bytes.
pub fn sb_encrypt(
    key: &[u8; 32],
    nonce: &[u8; 24],
    msg: &[u8],
    padded_len: usize,
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(TAG_LEN + padded_len);
    sb_encrypt_into(key, nonce, msg, padded_len, &mut out)?;
    Ok(out)
}

/// Like [`sb_encrypt`], appending the `L + 16` bytes to `out` (lets callers reuse buffers).
pub fn sb_encrypt_into(
    key: &[u8; 32],
    nonce: &[u8; 24],
    msg: &[u8],
    padded_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    let start = out.len();
    out.resize(start + TAG_LEN, 0);
    if let Err(e) = pad_into(out, msg, padded_len) {
        out.truncate(start);
        return Err(e.into());
    }
    seal_in_place(key, nonce, &mut out[start..]);
    Ok(())
}

/// `sbEncryptNoPad`: tag(16) ‖ XSalsa20(msg).
pub fn sb_encrypt_no_pad(key: &[u8; 32], nonce: &[u8; 24], msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(TAG_LEN + msg.len());
    out.resize(TAG_LEN, 0);
    out.extend_from_slice(msg);
    seal_in_place(key, nonce, &mut out);
    out
}

/// Checks the tag (constant time) and decrypts `ct = tag ‖ body` in place; returns the
/// decrypted body (still padded) as a sub-slice of `ct`.
pub fn sb_open_in_place<'a>(
    key: &[u8; 32],
    nonce: &[u8; 24],
    ct: &'a mut [u8],
) -> Result<&'a mut [u8], CryptoError> {
    if ct.len() < TAG_LEN {
        return Err(CryptoError::DecryptFailed);
    }
    let (tag, body) = ct.split_at_mut(TAG_LEN);
    open_detached(Backend::for_len(body.len()), key, nonce, body, tag)?;
    Ok(body)
}

/// Like [`sb_open_in_place`], but decrypts only a prefix of the body: the tag is checked
/// (constant time) over the whole ciphertext first — on a bad tag nothing is decrypted — then
/// the first `min(32, body length)` bytes are decrypted (they come with the Poly1305 key's
/// Salsa20 block at no extra cost) and passed to `prefix_len`, which says how many body bytes
/// the caller will read; returns that prefix (bounded by the body), decrypted. The body bytes
/// after the prefix stay ciphertext (beyond the first 32, which are decrypted in any case).
///
/// For padded blocks whose padding is never read: `prefix_len = |h| 2 + Word16 length`.
pub fn sb_open_prefix_in_place<'a>(
    key: &[u8; 32],
    nonce: &[u8; 24],
    ct: &'a mut [u8],
    prefix_len: impl FnOnce(&[u8]) -> usize,
) -> Result<&'a mut [u8], CryptoError> {
    if ct.len() < TAG_LEN {
        return Err(CryptoError::DecryptFailed);
    }
    let (tag, body) = ct.split_at_mut(TAG_LEN);
    let stream = Stream::new(key, nonce);
    let block0 = stream.block0();
    let expected = poly::tag(poly_key(&block0), body);
    if !crate::ct_eq(&expected, tag) {
        return Err(CryptoError::DecryptFailed);
    }
    let head = body.len().min(32);
    let (first, rest) = body.split_at_mut(head);
    stream.xor(Backend::Scalar, &block0, first);
    let n = prefix_len(first).min(head + rest.len());
    if let Some(more) = n.checked_sub(head).and_then(|m| rest.get_mut(..m))
        && !more.is_empty()
    {
        xor_keystream(
            Backend::for_len(more.len()),
            &stream.subkey,
            &stream.nonce,
            1,
            more,
        );
    }
    Ok(body.get_mut(..n).unwrap_or_default())
}

/// Decrypts in place and unpads; returns the message as a sub-slice of `ct`.
pub fn sb_decrypt_in_place<'a>(
    key: &[u8; 32],
    nonce: &[u8; 24],
    ct: &'a mut [u8],
) -> Result<&'a [u8], CryptoError> {
    let body = sb_open_in_place(key, nonce, ct)?;
    Ok(unpad(body)?)
}

/// `sbDecrypt`: checks the tag, decrypts, unpads.
pub fn sb_decrypt(key: &[u8; 32], nonce: &[u8; 24], ct: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut buf = ct.to_vec();
    let msg = sb_decrypt_in_place(key, nonce, &mut buf)?.to_vec();
    buf.zeroize();
    Ok(msg)
}

/// `sbDecryptNoPad`: checks the tag and decrypts, no unpadding.
pub fn sb_decrypt_no_pad(
    key: &[u8; 32],
    nonce: &[u8; 24],
    ct: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut buf = ct.to_vec();
    let n = sb_open_in_place(key, nonce, &mut buf)?.len();
    buf.drain(..TAG_LEN);
    debug_assert_eq!(buf.len(), n);
    Ok(buf)
}

/// File (XFTP) variant: `XSalsa20(padLazy(msg, len(msg), L)) ‖ tag` — Int64 length prefix and
/// the tag at the end (`sbEncryptTailTag`); output is L + 16 bytes.
pub fn sb_encrypt_tail_tag(
    key: &[u8; 32],
    nonce: &[u8; 24],
    msg: &[u8],
    padded_len: usize,
) -> Result<Vec<u8>, CryptoError> {
    let mut buf = hush_proto::encoding::pad_lazy(msg, msg.len(), padded_len)?;
    let tag = seal_detached(Backend::for_len(buf.len()), key, nonce, &mut buf);
    buf.extend_from_slice(&tag);
    Ok(buf)
}

/// Inverse of [`sb_encrypt_tail_tag`].
pub fn sb_decrypt_tail_tag(
    key: &[u8; 32],
    nonce: &[u8; 24],
    ct: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let split = ct
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(CryptoError::DecryptFailed)?;
    let (body, tag) = ct.split_at(split);
    let mut buf = body.to_vec();
    open_detached(Backend::for_len(buf.len()), key, nonce, &mut buf, tag)?;
    let msg = hush_proto::encoding::unpad_lazy(&buf)?.to_vec();
    buf.zeroize();
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use xsalsa20poly1305::XSalsa20Poly1305;
    use xsalsa20poly1305::aead::{AeadInPlace, KeyInit};

    fn backends() -> Vec<Backend> {
        let all = [
            Backend::Scalar,
            #[cfg(target_arch = "x86_64")]
            Backend::Sse2,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512,
        ];
        all.into_iter().filter(|b| b.available()).collect()
    }

    /// The previous implementation: `xsalsa20poly1305` with `k1 = HSalsa20(key, 0¹⁶)`.
    fn reference_seal(key: &[u8; 32], nonce: &[u8; 24], body: &mut [u8]) -> [u8; 16] {
        let k1 = hsalsa::<U10>(key.into(), &[0u8; 16].into());
        XSalsa20Poly1305::new(&k1)
            .encrypt_in_place_detached(nonce.into(), b"", body)
            .expect("short message")
            .into()
    }

    #[test]
    fn open_rejects_a_wrong_tag_and_leaves_the_ciphertext() {
        for b in backends() {
            let mut body = vec![9u8; 5000];
            let tag = seal_detached(b, &[1; 32], &[2; 24], &mut body);
            let ct = body.clone();
            let mut bad = tag;
            bad[15] ^= 0x80;
            assert!(matches!(
                open_detached(b, &[1; 32], &[2; 24], &mut body, &bad),
                Err(CryptoError::DecryptFailed)
            ));
            assert_eq!(body, ct, "{b:?}: nothing decrypted before the tag check");
            assert!(matches!(
                open_detached(b, &[1; 32], &[2; 24], &mut body, &tag[..15]),
                Err(CryptoError::DecryptFailed)
            ));
            open_detached(b, &[1; 32], &[2; 24], &mut body, &tag).expect("opens");
            assert_eq!(body, vec![9u8; 5000]);
        }
    }

    #[test]
    fn seal_in_place_refuses_a_buffer_without_room_for_the_tag() {
        let mut short = [7u8; TAG_LEN - 1];
        assert!(matches!(
            sb_seal_in_place(&[1; 32], &[2; 24], &mut short),
            Err(CryptoError::Pad(_))
        ));
        assert_eq!(short, [7u8; TAG_LEN - 1]);
        let mut empty_body = [7u8; TAG_LEN];
        sb_seal_in_place(&[1; 32], &[2; 24], &mut empty_body).expect("tag only");
        assert_eq!(
            &empty_body[..],
            &sb_encrypt_no_pad(&[1; 32], &[2; 24], b"")[..]
        );
    }

    #[test]
    fn open_prefix_rejects_a_bad_tag_and_decrypts_nothing() {
        let mut ct = sb_encrypt(&[1; 32], &[2; 24], b"hello", 16368).expect("fits");
        for i in [0, 15, 16, 17, 40, ct.len() - 1] {
            let mut bad = ct.clone();
            bad[i] ^= 1;
            let before = bad.clone();
            let mut called = false;
            let r = sb_open_prefix_in_place(&[1; 32], &[2; 24], &mut bad, |_| {
                called = true;
                16368
            });
            assert!(matches!(r, Err(CryptoError::DecryptFailed)), "byte {i}");
            assert!(!called, "byte {i}: prefix callback reached on a bad tag");
            assert_eq!(bad, before, "byte {i}: nothing decrypted");
        }
        assert!(matches!(
            sb_open_prefix_in_place(&[1; 32], &[2; 24], &mut [0u8; 15], |_| 0),
            Err(CryptoError::DecryptFailed)
        ));
        assert!(matches!(
            sb_open_prefix_in_place(&[1; 32], &[3; 32][..24].try_into().unwrap(), &mut ct, |_| 0),
            Err(CryptoError::DecryptFailed)
        ));
        let got = sb_open_prefix_in_place(&[1; 32], &[2; 24], &mut ct, |h| {
            2 + usize::from(u16::from_be_bytes([h[0], h[1]]))
        })
        .expect("opens");
        assert_eq!(got, b"\x00\x05hello");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Every backend seals exactly as `xsalsa20poly1305` did and opens its output.
        #[test]
        fn every_backend_equals_xsalsa20poly1305(
            key in any::<[u8; 32]>(), nonce in any::<[u8; 24]>(),
            msg in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..20000),
                proptest::collection::vec(any::<u8>(), 0..600),
            ],
        ) {
            let mut want = msg.clone();
            let want_tag = reference_seal(&key, &nonce, &mut want);
            for b in backends() {
                let mut got = msg.clone();
                let tag = seal_detached(b, &key, &nonce, &mut got);
                prop_assert_eq!(&got, &want, "{:?}", b);
                prop_assert_eq!(tag, want_tag, "{:?}", b);
                open_detached(b, &key, &nonce, &mut got, &tag).expect("opens");
                prop_assert_eq!(&got, &msg, "{:?}", b);
            }
            // the public functions (automatic backend) agree too
            let np = sb_encrypt_no_pad(&key, &nonce, &msg);
            prop_assert_eq!(&np[..TAG_LEN], &want_tag[..]);
            prop_assert_eq!(&np[TAG_LEN..], &want[..]);
            let mut inplace = vec![0xee; TAG_LEN];
            inplace.extend_from_slice(&msg);
            sb_seal_in_place(&key, &nonce, &mut inplace).expect("room for the tag");
            prop_assert_eq!(&inplace, &np);
        }

        /// The prefix open returns exactly the full open's first bytes, for every prefix
        /// length (bounded by the body), and hands the first `min(32, len)` plaintext bytes
        /// to the callback.
        #[test]
        fn open_prefix_equals_full_open(
            key in any::<[u8; 32]>(), nonce in any::<[u8; 24]>(),
            msg in prop_oneof![
                proptest::collection::vec(any::<u8>(), 16368..=16368),
                proptest::collection::vec(any::<u8>(), 0..20000),
                proptest::collection::vec(any::<u8>(), 0..300),
            ],
            want_len in prop_oneof![0usize..300, 0usize..21000],
        ) {
            let ct = sb_encrypt_no_pad(&key, &nonce, &msg);
            let mut full = ct.clone();
            let opened = sb_open_in_place(&key, &nonce, &mut full).expect("opens").to_vec();
            prop_assert_eq!(&opened, &msg);
            let mut part = ct.clone();
            let mut seen = Vec::new();
            let got = sb_open_prefix_in_place(&key, &nonce, &mut part, |h| {
                seen = h.to_vec();
                want_len
            })
            .expect("opens");
            let n = want_len.min(msg.len());
            prop_assert_eq!(&got[..], &msg[..n]);
            prop_assert_eq!(&seen[..], &msg[..msg.len().min(32)]);
            // past the prefix (and the free first 32 bytes) the ciphertext is untouched
            let untouched = TAG_LEN + n.max(32).min(msg.len());
            prop_assert_eq!(&part[untouched..], &ct[untouched..]);
        }
    }
}
