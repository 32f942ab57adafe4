//! Typed errors for every fallible crypto operation.

use hush_proto::encoding::PadError;

/// Errors returned by hush-crypto. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A key has the wrong length or is not a valid point/scalar.
    #[error("invalid key")]
    InvalidKey,
    /// A signature did not verify (or has an impossible length).
    #[error("bad signature")]
    BadSignature,
    /// Authentication tag mismatch or ciphertext too short.
    #[error("decryption failed")]
    DecryptFailed,
    /// Padding failed (message too large) or the decrypted padding is malformed.
    #[error("padding: {0}")]
    Pad(#[from] PadError),
    /// A DER structure (SPKI, PKCS#8, signed key, certificate) could not be parsed.
    #[error("DER: {0}")]
    Der(&'static str),
    /// The key or signature algorithm is not the one expected here.
    #[error("unsupported or mismatched algorithm")]
    Algorithm,
    /// An OpenSSL call failed.
    #[error("openssl: {0}")]
    OpenSsl(String),
    /// A PEM file could not be parsed.
    #[error("PEM: {0}")]
    Pem(&'static str),
    /// Reading or writing a key/certificate file failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl From<openssl::error::ErrorStack> for CryptoError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        CryptoError::OpenSsl(e.to_string())
    }
}
