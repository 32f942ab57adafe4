//! NaCl crypto_box over a raw X25519 secret (reference §4.1): `cbEncrypt(dh, nonce, msg, L)` =
//! tag(16) ‖ XSalsa20(pad(msg, L)) with key HSalsa20(dh, 0¹⁶) (= `crypto_box_beforenm`).
//! "NoPad" variants skip the padding. Also the MSG body (§3.6) and NMSG metadata (§3.8) boxes.

use rand::RngCore;

use crate::CryptoError;
use crate::secretbox::{
    sb_decrypt, sb_decrypt_in_place, sb_decrypt_no_pad, sb_encrypt, sb_encrypt_into,
    sb_encrypt_no_pad,
};
use crate::x25519::DhSecret;

/// A 24-byte nonce from a correlation id / message id: truncated to, or right-padded with
/// zero bytes to, 24 bytes (`cbNonce`).
pub fn cb_nonce(id: &[u8]) -> [u8; 24] {
    let mut n = [0u8; 24];
    let k = id.len().min(24);
    n[..k].copy_from_slice(&id[..k]);
    n
}

/// 24 random bytes (nonces, ids).
pub fn random_nonce() -> [u8; 24] {
    let mut n = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

/// `cbEncrypt`: tag ‖ XSalsa20(pad(msg, L)), L + 16 bytes.
pub fn cb_encrypt(
    dh: &DhSecret,
    nonce: &[u8; 24],
    msg: &[u8],
    padded_len: usize,
) -> Result<Vec<u8>, CryptoError> {
    sb_encrypt(dh.as_bytes(), nonce, msg, padded_len)
}

/// Like [`cb_encrypt`], appending to `out`.
pub fn cb_encrypt_into(
    dh: &DhSecret,
    nonce: &[u8; 24],
    msg: &[u8],
    padded_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    sb_encrypt_into(dh.as_bytes(), nonce, msg, padded_len, out)
}

/// `cbDecrypt`: checks the tag, decrypts, unpads.
pub fn cb_decrypt(dh: &DhSecret, nonce: &[u8; 24], ct: &[u8]) -> Result<Vec<u8>, CryptoError> {
    sb_decrypt(dh.as_bytes(), nonce, ct)
}

/// In-place [`cb_decrypt`]: returns the message as a sub-slice of `ct`.
pub fn cb_decrypt_in_place<'a>(
    dh: &DhSecret,
    nonce: &[u8; 24],
    ct: &'a mut [u8],
) -> Result<&'a [u8], CryptoError> {
    sb_decrypt_in_place(dh.as_bytes(), nonce, ct)
}

/// `cbEncryptNoPad`: tag ‖ XSalsa20(msg).
pub fn cb_encrypt_no_pad(dh: &DhSecret, nonce: &[u8; 24], msg: &[u8]) -> Vec<u8> {
    sb_encrypt_no_pad(dh.as_bytes(), nonce, msg)
}

/// `cbDecryptNoPad`.
pub fn cb_decrypt_no_pad(
    dh: &DhSecret,
    nonce: &[u8; 24],
    ct: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    sb_decrypt_no_pad(dh.as_bytes(), nonce, ct)
}

/// Padded length of the server → recipient `MSG` body plaintext (§3.6).
pub const RCV_MSG_PADDED_LEN: usize = 16106;
/// Length of every encrypted `MSG` body: 16106 + 16.
pub const ENC_RCV_MSG_BODY_LEN: usize = RCV_MSG_PADDED_LEN + 16;

/// Encrypts a `MSG` body plaintext (`Int64 ts ‖ flag ‖ ' ' ‖ body`, or the quota marker) for
/// the recipient: crypto_box(rcvDhSecret, nonce = msgId, pad(plaintext, 16106)) → 16122 bytes.
pub fn encrypt_rcv_msg_body(
    rcv_dh_secret: &DhSecret,
    msg_id: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    cb_encrypt(
        rcv_dh_secret,
        &cb_nonce(msg_id),
        plaintext,
        RCV_MSG_PADDED_LEN,
    )
}

/// Inverse of [`encrypt_rcv_msg_body`] (client side).
pub fn decrypt_rcv_msg_body(
    rcv_dh_secret: &DhSecret,
    msg_id: &[u8],
    enc_body: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    cb_decrypt(rcv_dh_secret, &cb_nonce(msg_id), enc_body)
}

/// Padded length of `NMsgMeta` (§3.8).
pub const NMSG_META_PADDED_LEN: usize = 128;
/// Length of the encrypted `NMSG` metadata: 128 + 16.
pub const ENC_NMSG_META_LEN: usize = NMSG_META_PADDED_LEN + 16;

/// Encrypts `NMsgMeta` (`shortString msgId ‖ Int64 ts`) for the notifier:
/// crypto_box(rcvNtfDhSecret, nonce, pad(meta, 128)) → 144 bytes.
pub fn encrypt_nmsg_meta(
    rcv_ntf_dh_secret: &DhSecret,
    nonce: &[u8; 24],
    meta: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    cb_encrypt(rcv_ntf_dh_secret, nonce, meta, NMSG_META_PADDED_LEN)
}

/// Inverse of [`encrypt_nmsg_meta`] (client side).
pub fn decrypt_nmsg_meta(
    rcv_ntf_dh_secret: &DhSecret,
    nonce: &[u8; 24],
    enc_meta: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    cb_decrypt(rcv_ntf_dh_secret, nonce, enc_meta)
}
