//! hush-crypto: keys and their DER encodings, signatures, DH, crypto_box, the SimpleX secretbox,
//! the block-encryption chain, command authenticators and server certificates (reference §1.1, §2.6, §2.7, §4).
//!
//! X25519/Ed25519 come from dalek (Ed25519 hashing with OpenSSL's SHA-512), HSalsa20 from
//! RustCrypto, Poly1305 from OpenSSL (long inputs) and RustCrypto, HKDF/SHA from RustCrypto and OpenSSL, Ed448/X448 and certificates
//! from OpenSSL. The one primitive written here is the Salsa20 keystream's SSE2/AVX2 backends
//! (`salsa`), tested equal to the `salsa20` crate, which remains the scalar fallback.
//! Private keys zeroize on drop; secret comparisons use [`ct_eq`].

pub mod auth;
pub mod cert;
pub mod cryptobox;
mod der;
pub mod error;
pub mod hash;
pub mod identity;
pub mod keys;
mod poly;
mod salsa;
pub mod sbchain;
pub mod secretbox;
pub mod sntrup761;
pub mod x25519;

pub use auth::{
    AUTHENTICATOR_LEN, TransmissionAuth, cb_authenticate, cb_authenticate_parts, cb_verify,
    cb_verify_dh, cb_verify_parts, dummy_verify, dummy_verify_parts, dummy_verify_transmission,
    dummy_verify_transmission_parts, verify_transmission, verify_transmission_parts,
};
pub use cert::{
    CertKey, SignAlgorithm, fingerprint, generate_ca, generate_online_cert, sign_x25519_key,
    verify_signed_x25519_key,
};
pub use cryptobox::{
    cb_decrypt, cb_decrypt_no_pad, cb_encrypt, cb_encrypt_no_pad, cb_nonce, decrypt_nmsg_meta,
    decrypt_rcv_msg_body, encrypt_nmsg_meta, encrypt_rcv_msg_body, random_nonce,
};
pub use error::CryptoError;
pub use hash::{sender_id_from_corr_id, sha256, sha512, sha512_parts};
pub use identity::ServerIdentity;
pub use keys::{
    Ed448Public, Ed448Secret, Ed25519Public, Ed25519Secret, Ed25519Verifier, KeyAlgorithm,
    PrivateKey, PublicKey, SignSecret, X448Public, X448Secret,
};
pub use sbchain::{SbChainKey, sb_chain_init};
pub use secretbox::{sb_decrypt, sb_decrypt_no_pad, sb_encrypt, sb_encrypt_no_pad};
pub use x25519::{DhSecret, X25519Public, X25519Secret};

/// Constant-time equality of two byte strings (length is not secret: different lengths → false).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
