//! hush-crypto: keys and their DER encodings, signatures, DH, crypto_box, the SimpleX secretbox,
//! the block-encryption chain, command authenticators and server certificates (reference §1.1, §2.6, §2.7, §4).

pub mod cert;
mod der;
pub mod error;
pub mod hash;
pub mod sbchain;
pub mod secretbox;
pub mod x25519;

pub use cert::{
    CertKey, SignAlgorithm, fingerprint, generate_ca, generate_online_cert, sign_x25519_key,
    verify_signed_x25519_key,
};
pub use error::CryptoError;
pub use sbchain::{SbChainKey, sb_chain_init};
pub use secretbox::{sb_decrypt, sb_decrypt_no_pad, sb_encrypt, sb_encrypt_no_pad};
pub use x25519::{DhSecret, X25519Public, X25519Secret};

/// Constant-time equality of two byte strings (length is not secret: different lengths → false).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
