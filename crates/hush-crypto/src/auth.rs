//! Command authorization (reference §2.7): Ed25519/Ed448 signatures and the 80-byte
//! crypto_box authenticator, with dummy-key verification so every `AUTH` failure costs about
//! the same time whether or not the queue exists.

use crate::CryptoError;
use crate::cryptobox::{cb_decrypt_no_pad, cb_encrypt_no_pad, cb_nonce};
use crate::hash::sha512_parts;
use crate::keys::{Ed448Public, Ed25519Public, PublicKey, SignAlgorithm};
use crate::x25519::{X25519Public, X25519Secret};

/// Authenticator length: 16-byte tag ‖ 64-byte encrypted SHA-512.
pub const AUTHENTICATOR_LEN: usize = 80;

/// `cbAuthenticate`: crypto_box_noPad(X25519(peer, own), cbNonce(corrId), SHA-512(authorized)).
/// The client uses (server session public key, its queue private key).
pub fn cb_authenticate(
    peer: &X25519Public,
    own: &X25519Secret,
    corr_id: &[u8],
    authorized: &[u8],
) -> [u8; AUTHENTICATOR_LEN] {
    cb_authenticate_parts(peer, own, corr_id, &[authorized])
}

/// [`cb_authenticate`] of the concatenation of `authorized` (not concatenated).
pub fn cb_authenticate_parts(
    peer: &X25519Public,
    own: &X25519Secret,
    corr_id: &[u8],
    authorized: &[&[u8]],
) -> [u8; AUTHENTICATOR_LEN] {
    let dh = own.dh(peer);
    let ct = cb_encrypt_no_pad(&dh, &cb_nonce(corr_id), &sha512_parts(authorized));
    let mut out = [0u8; AUTHENTICATOR_LEN];
    out.copy_from_slice(&ct);
    out
}

/// `cbVerify`: the server checks an authenticator with (queue public key, its per-connection
/// session private key). Constant-time comparison of the decrypted digest.
pub fn cb_verify(
    peer: &X25519Public,
    own: &X25519Secret,
    corr_id: &[u8],
    authenticator: &[u8],
    authorized: &[u8],
) -> bool {
    cb_verify_parts(peer, own, corr_id, authenticator, &[authorized])
}

/// [`cb_verify`] of the concatenation of `authorized` (not concatenated).
pub fn cb_verify_parts(
    peer: &X25519Public,
    own: &X25519Secret,
    corr_id: &[u8],
    authenticator: &[u8],
    authorized: &[&[u8]],
) -> bool {
    if authenticator.len() != AUTHENTICATOR_LEN {
        return false;
    }
    cb_verify_dh(&own.dh(peer), corr_id, authenticator, authorized)
}

/// [`cb_verify_parts`] with the DH secret already computed (the relay caches it per key and
/// connection).
pub fn cb_verify_dh(
    dh: &crate::DhSecret,
    corr_id: &[u8],
    authenticator: &[u8],
    authorized: &[&[u8]],
) -> bool {
    match cb_decrypt_no_pad(dh, &cb_nonce(corr_id), authenticator) {
        Ok(digest) => crate::ct_eq(&digest, &sha512_parts(authorized)),
        Err(_) => false,
    }
}

/// A transmission's authorization, classified by length (§2.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransmissionAuth {
    /// 64 (Ed25519) or 114 (Ed448) bytes.
    Signature(SignAlgorithm, Vec<u8>),
    /// 80 bytes.
    Authenticator([u8; AUTHENTICATOR_LEN]),
}

impl TransmissionAuth {
    /// 0 bytes → `None`; 64/114 → signature; 80 → authenticator; anything else is an error
    /// (the server answers `ERR BLOCK`).
    pub fn parse(bytes: &[u8]) -> Result<Option<Self>, CryptoError> {
        match bytes.len() {
            0 => Ok(None),
            64 => Ok(Some(TransmissionAuth::Signature(
                SignAlgorithm::Ed25519,
                bytes.to_vec(),
            ))),
            114 => Ok(Some(TransmissionAuth::Signature(
                SignAlgorithm::Ed448,
                bytes.to_vec(),
            ))),
            AUTHENTICATOR_LEN => {
                let mut a = [0u8; AUTHENTICATOR_LEN];
                a.copy_from_slice(bytes);
                Ok(Some(TransmissionAuth::Authenticator(a)))
            }
            _ => Err(CryptoError::BadSignature),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            TransmissionAuth::Signature(_, s) => s,
            TransmissionAuth::Authenticator(a) => a,
        }
    }
}

/// The reference's fixed dummy Ed25519 key (Server.hs `dummyKeyEd25519`).
pub const DUMMY_KEY_ED25519: [u8; 32] = [
    0xd7, 0x7f, 0x4e, 0xaa, 0xce, 0x10, 0x82, 0x9a, 0x9b, 0x02, 0x60, 0x74, 0xa3, 0xba, 0xd9, 0x7f,
    0xa4, 0xf5, 0xf6, 0xbc, 0xa5, 0xec, 0x4e, 0xb9, 0x93, 0x80, 0x18, 0x7b, 0x49, 0x04, 0xdd, 0x0b,
];
/// The reference's fixed dummy Ed448 key (`dummyKeyEd448`).
pub const DUMMY_KEY_ED448: [u8; 57] = [
    0xea, 0x26, 0xd0, 0x73, 0xd5, 0xe9, 0x91, 0x22, 0xed, 0xc2, 0xb7, 0xfb, 0x3c, 0xbb, 0xe9, 0xf3,
    0x5a, 0x96, 0xfd, 0xeb, 0x62, 0xba, 0x67, 0x24, 0x54, 0x52, 0x26, 0x08, 0xc4, 0x5d, 0x7e, 0xd7,
    0x06, 0xfd, 0x7a, 0x29, 0x6c, 0xe4, 0x9a, 0xab, 0xda, 0xb2, 0x2e, 0x1a, 0xe0, 0x25, 0x62, 0x8e,
    0x2f, 0x23, 0x6b, 0x40, 0xf3, 0x55, 0xbe, 0x93, 0x00,
];
/// The reference's fixed dummy X25519 key (`dummyKeyX25519`).
pub const DUMMY_KEY_X25519: [u8; 32] = [
    0xe0, 0x91, 0x92, 0x31, 0x88, 0x6d, 0xd7, 0xc1, 0xf8, 0x99, 0xab, 0x3f, 0x8c, 0x77, 0x81, 0xc1,
    0xf7, 0x0c, 0xee, 0x32, 0xf0, 0x35, 0x82, 0x4d, 0x38, 0x08, 0x62, 0xdb, 0xf8, 0x38, 0x45, 0x78,
];

/// The dummy public key used for a signature of `alg`.
pub fn dummy_sign_key(alg: SignAlgorithm) -> PublicKey {
    match alg {
        SignAlgorithm::Ed25519 => PublicKey::Ed25519(Ed25519Public(DUMMY_KEY_ED25519)),
        SignAlgorithm::Ed448 => PublicKey::Ed448(Ed448Public(DUMMY_KEY_ED448)),
    }
}

/// Runs a verification of `alg` against the dummy key (result discarded by callers; always
/// `false` in practice). Used when the queue or key is missing.
pub fn dummy_verify(alg: SignAlgorithm, msg: &[u8], sig: &[u8]) -> bool {
    dummy_verify_parts(alg, &[msg], sig)
}

/// [`dummy_verify`] of the concatenation of `msg` (the same work as [`PublicKey::verify_parts`]
/// with a key decoded each time).
pub fn dummy_verify_parts(alg: SignAlgorithm, msg: &[&[u8]], sig: &[u8]) -> bool {
    dummy_sign_key(alg).verify_parts(msg, sig).is_ok()
}

/// Verifies a transmission's authorization like the reference's `verifyCmdAuthorization`:
///
/// * `key` — the entity's key for this command (`None` if the queue/key does not exist);
/// * `session_key` — the server's per-connection X25519 private key (`None` for v<7 or a
///   handshake without one: authenticators then always fail).
///
/// A signature whose algorithm differs from the key's, an authenticator against a non-X25519
/// key, and a missing key all run a dummy verification of the same kind and return `false`.
/// A missing authorization returns `false` (whether it is allowed is the caller's rule).
pub fn verify_transmission(
    key: Option<&PublicKey>,
    auth: Option<&TransmissionAuth>,
    session_key: Option<&X25519Secret>,
    authorized: &[u8],
    corr_id: &[u8],
) -> bool {
    verify_transmission_parts(key, auth, session_key, &[authorized], corr_id)
}

/// [`verify_transmission`] with the authorized bytes in parts (not concatenated).
pub fn verify_transmission_parts(
    key: Option<&PublicKey>,
    auth: Option<&TransmissionAuth>,
    session_key: Option<&X25519Secret>,
    authorized: &[&[u8]],
    corr_id: &[u8],
) -> bool {
    let Some(auth) = auth else { return false };
    match (auth, key) {
        (TransmissionAuth::Signature(alg, sig), Some(k)) => {
            let same = matches!(
                (alg, k),
                (SignAlgorithm::Ed25519, PublicKey::Ed25519(_))
                    | (SignAlgorithm::Ed448, PublicKey::Ed448(_))
            );
            if same {
                k.verify_parts(authorized, sig).is_ok()
            } else {
                let _ = dummy_verify_parts(*alg, authorized, sig);
                false
            }
        }
        (TransmissionAuth::Authenticator(a), Some(PublicKey::X25519(k))) => {
            verify_authenticator(k, session_key, a, authorized, corr_id)
        }
        _ => {
            let _ = dummy_verify_transmission_parts(auth, session_key, authorized, corr_id);
            false
        }
    }
}

fn verify_authenticator(
    k: &X25519Public,
    session_key: Option<&X25519Secret>,
    a: &[u8; AUTHENTICATOR_LEN],
    authorized: &[&[u8]],
    corr_id: &[u8],
) -> bool {
    match session_key {
        Some(sk) => cb_verify_parts(k, sk, corr_id, a, authorized),
        None => false,
    }
}

/// `dummyVerifyCmd`: the same work as a real verification, against the dummy key of the
/// authorization's kind. Always `false` for real inputs.
pub fn dummy_verify_transmission(
    auth: &TransmissionAuth,
    session_key: Option<&X25519Secret>,
    authorized: &[u8],
    corr_id: &[u8],
) -> bool {
    dummy_verify_transmission_parts(auth, session_key, &[authorized], corr_id)
}

/// [`dummy_verify_transmission`] with the authorized bytes in parts (not concatenated).
pub fn dummy_verify_transmission_parts(
    auth: &TransmissionAuth,
    session_key: Option<&X25519Secret>,
    authorized: &[&[u8]],
    corr_id: &[u8],
) -> bool {
    match auth {
        TransmissionAuth::Signature(alg, sig) => dummy_verify_parts(*alg, authorized, sig),
        TransmissionAuth::Authenticator(a) => verify_authenticator(
            &X25519Public(DUMMY_KEY_X25519),
            session_key,
            a,
            authorized,
            corr_id,
        ),
    }
}
