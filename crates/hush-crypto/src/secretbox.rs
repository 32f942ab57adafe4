//! The SimpleX "secretbox" (reference §4.2) and NaCl crypto_box over a raw DH secret (§4.1).
//!
//! Both are the same construction: `k1 = HSalsa20(key, 0¹⁶)`, then XSalsa20-Poly1305 with
//! `k1` and the 24-byte nonce; output `tag(16) ‖ ciphertext`. For crypto_box `key` is the raw
//! X25519 output (so `k1` is `crypto_box_beforenm`); for the SimpleX secretbox it is a
//! symmetric key — which is why it differs from libsodium `crypto_secretbox(key, …)`.

use salsa20::cipher::consts::U10;
use salsa20::hsalsa;
use xsalsa20poly1305::aead::{AeadInPlace, KeyInit};
use xsalsa20poly1305::{Tag, XSalsa20Poly1305};
use zeroize::Zeroize;

use crate::CryptoError;
use hush_proto::encoding::{pad_into, unpad};

/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;

fn cipher(key: &[u8; 32]) -> XSalsa20Poly1305 {
    let mut k1 = hsalsa::<U10>(key.into(), &[0u8; 16].into());
    let c = XSalsa20Poly1305::new(&k1);
    k1.as_mut_slice().zeroize();
    c
}

/// Encrypts `buf[TAG_LEN..]` in place and writes the tag into `buf[..TAG_LEN]`.
fn seal_in_place(key: &[u8; 32], nonce: &[u8; 24], buf: &mut [u8]) -> Result<(), CryptoError> {
    let (tag_out, body) = buf.split_at_mut(TAG_LEN);
    let tag = cipher(key)
        .encrypt_in_place_detached(nonce.into(), b"", body)
        .map_err(|_| CryptoError::DecryptFailed)?;
    tag_out.copy_from_slice(&tag);
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
    seal_in_place(key, nonce, &mut out[start..])
}

/// `sbEncryptNoPad`: tag(16) ‖ XSalsa20(msg).
pub fn sb_encrypt_no_pad(key: &[u8; 32], nonce: &[u8; 24], msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(TAG_LEN + msg.len());
    out.resize(TAG_LEN, 0);
    out.extend_from_slice(msg);
    // encrypt_in_place_detached only fails for messages longer than the cipher's limit
    // (2^38 bytes), impossible for an in-memory Vec of protocol data.
    if seal_in_place(key, nonce, &mut out).is_err() {
        out.truncate(TAG_LEN);
    }
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
    let tag = Tag::clone_from_slice(tag);
    cipher(key)
        .decrypt_in_place_detached(nonce.into(), b"", body, &tag)
        .map_err(|_| CryptoError::DecryptFailed)?;
    Ok(body)
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
    let tag = cipher(key)
        .encrypt_in_place_detached(nonce.into(), b"", &mut buf)
        .map_err(|_| CryptoError::DecryptFailed)?;
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
    cipher(key)
        .decrypt_in_place_detached(nonce.into(), b"", &mut buf, Tag::from_slice(tag))
        .map_err(|_| CryptoError::DecryptFailed)?;
    let msg = hush_proto::encoding::unpad_lazy(&buf)?.to_vec();
    buf.zeroize();
    Ok(msg)
}
