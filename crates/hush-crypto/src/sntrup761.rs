//! sntrup761 KEM (Streamlined NTRU Prime 4591^761, NIST round 3), as the reference's
//! `cbits/sntrup761.c` (SUPERCOP-20201130 code, the one OpenSSH uses): public key 1158 bytes,
//! secret key 1763, ciphertext 1039, shared key 32.
//!
//! The arithmetic is the pure-Rust `sntrup761` crate; it is checked here against the round-3
//! known-answer test (count 0 of the NIST KAT, driven by the NIST AES-256-CTR DRBG, see
//! `tests/sntrup761.rs`): key generation, encapsulation and decapsulation all give the KAT bytes,
//! so the crate draws its randomness in the same order and chunks as the reference code.
//!
//! Randomness comes from the OS (`getrandom` through `rand` 0.8's `OsRng`), or from a caller's
//! RNG for known-answer tests ([`keypair_with`], [`encapsulate_with`]). Secret keys and shared
//! secrets zeroize on drop and never appear in `Debug`.

use rand::RngCore as _;
use rand_core::{TryCryptoRng, TryRng};
use zeroize::{Zeroize, Zeroizing};

use crate::CryptoError;

/// Public (encapsulation) key length.
pub const PUBLIC_KEY_LEN: usize = sntrup761::PUBLIC_KEY_SIZE;
/// Secret (decapsulation) key length; it contains the public key.
pub const SECRET_KEY_LEN: usize = sntrup761::SECRET_KEY_SIZE;
/// Ciphertext length.
pub const CIPHERTEXT_LEN: usize = sntrup761::CIPHERTEXT_SIZE;
/// Shared key length.
pub const SHARED_KEY_LEN: usize = sntrup761::SHARED_SECRET_SIZE;

/// Offset of the public key inside the secret key (f ‖ 1/g ‖ pk ‖ rho ‖ hash prefix).
const SK_PK_OFFSET: usize = 2 * 191;

/// The OS RNG in the shape the `sntrup761` crate takes (rand_core 0.10).
struct OsRandom;

impl TryRng for OsRandom {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(rand::rngs::OsRng.next_u32())
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(rand::rngs::OsRng.next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        rand::rngs::OsRng.fill_bytes(dst);
        Ok(())
    }
}

impl TryCryptoRng for OsRandom {}

/// sntrup761 public key (`KEMPublicKey`).
#[derive(Clone, PartialEq, Eq)]
pub struct KemPublicKey(Box<[u8; PUBLIC_KEY_LEN]>);

/// sntrup761 secret key (`KEMSecretKey`); zeroized on drop.
#[derive(Clone)]
pub struct KemSecretKey(Box<[u8; SECRET_KEY_LEN]>);

/// sntrup761 ciphertext (`KEMCiphertext`).
#[derive(Clone, PartialEq, Eq)]
pub struct KemCiphertext(Box<[u8; CIPHERTEXT_LEN]>);

/// 32-byte shared key (`KEMSharedKey`); zeroized on drop.
#[derive(Clone)]
pub struct KemSharedKey(Zeroizing<[u8; SHARED_KEY_LEN]>);

/// A key pair as the reference keeps it (`KEMKeyPair`).
#[derive(Clone)]
pub struct KemKeyPair {
    pub public: KemPublicKey,
    pub secret: KemSecretKey,
}

fn fixed<const N: usize>(bytes: &[u8]) -> Result<Box<[u8; N]>, CryptoError> {
    let arr: [u8; N] = bytes.try_into().map_err(|_| CryptoError::InvalidKey)?;
    Ok(Box::new(arr))
}

impl KemPublicKey {
    /// Exactly [`PUBLIC_KEY_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        Ok(KemPublicKey(fixed(bytes)?))
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0[..]
    }
}

impl std::fmt::Debug for KemPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KemPublicKey({} bytes)", self.0.len())
    }
}

impl KemCiphertext {
    /// Exactly [`CIPHERTEXT_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        Ok(KemCiphertext(fixed(bytes)?))
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0[..]
    }
}

impl std::fmt::Debug for KemCiphertext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KemCiphertext({} bytes)", self.0.len())
    }
}

impl KemSecretKey {
    /// Exactly [`SECRET_KEY_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        Ok(KemSecretKey(fixed(bytes)?))
    }
    /// The secret key bytes (store them only in the client database).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0[..]
    }
    /// The public key embedded in the secret key.
    pub fn public(&self) -> KemPublicKey {
        let mut pk = [0u8; PUBLIC_KEY_LEN];
        pk.copy_from_slice(&self.0[SK_PK_OFFSET..SK_PK_OFFSET + PUBLIC_KEY_LEN]);
        KemPublicKey(Box::new(pk))
    }
}

impl Drop for KemSecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for KemSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KemSecretKey(..)")
    }
}

impl KemSharedKey {
    /// Exactly [`SHARED_KEY_LEN`] bytes (a stored shared key).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; SHARED_KEY_LEN] = bytes.try_into().map_err(|_| CryptoError::InvalidKey)?;
        Ok(KemSharedKey(Zeroizing::new(arr)))
    }
    pub fn as_bytes(&self) -> &[u8; SHARED_KEY_LEN] {
        &self.0
    }
}

impl PartialEq for KemSharedKey {
    fn eq(&self, other: &Self) -> bool {
        crate::ct_eq(&self.0[..], &other.0[..])
    }
}

impl Eq for KemSharedKey {}

impl std::fmt::Debug for KemSharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KemSharedKey(..)")
    }
}

impl std::fmt::Debug for KemKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KemKeyPair").finish_non_exhaustive()
    }
}

/// `sntrup761Keypair` with the OS RNG.
pub fn keypair() -> KemKeyPair {
    keypair_with(OsRandom)
}

/// Key generation from a caller's RNG (known-answer tests).
pub fn keypair_with(rng: impl rand_core::CryptoRng) -> KemKeyPair {
    let (pk, sk) = sntrup761::generate_key(rng);
    let mut skb = [0u8; SECRET_KEY_LEN];
    skb.copy_from_slice(sk.as_ref());
    let secret = KemSecretKey(Box::new(skb));
    skb.zeroize();
    let mut pkb = [0u8; PUBLIC_KEY_LEN];
    pkb.copy_from_slice(pk.as_ref());
    KemKeyPair {
        public: KemPublicKey(Box::new(pkb)),
        secret,
    }
}

/// `sntrup761Enc` with the OS RNG: a ciphertext for `pk` and the shared key it carries.
pub fn encapsulate(pk: &KemPublicKey) -> (KemCiphertext, KemSharedKey) {
    encapsulate_with(pk, OsRandom)
}

/// Encapsulation with a caller's RNG (known-answer tests).
pub fn encapsulate_with(
    pk: &KemPublicKey,
    rng: impl rand_core::CryptoRng,
) -> (KemCiphertext, KemSharedKey) {
    let ek = sntrup761::EncapsulationKey::from(*pk.0);
    let (ct, ss) = ek.encapsulate(rng);
    let mut ctb = [0u8; CIPHERTEXT_LEN];
    ctb.copy_from_slice(ct.as_ref());
    let mut ssb = Zeroizing::new([0u8; SHARED_KEY_LEN]);
    ssb.copy_from_slice(ss.as_ref());
    (KemCiphertext(Box::new(ctb)), KemSharedKey(ssb))
}

/// `sntrup761Dec`: the shared key in `ct`. Never fails: a ciphertext that does not decrypt
/// gives an unrelated key (implicit rejection), so the peer's next AEAD check fails instead.
pub fn decapsulate(ct: &KemCiphertext, sk: &KemSecretKey) -> KemSharedKey {
    let dk = sntrup761::DecapsulationKey::from(*sk.0);
    let c = sntrup761::Ciphertext::from(*ct.0);
    let ss = dk.decapsulate(&c);
    let mut ssb = Zeroizing::new([0u8; SHARED_KEY_LEN]);
    ssb.copy_from_slice(ss.as_ref());
    KemSharedKey(ssb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_implicit_rejection() {
        let kp = keypair();
        assert_eq!(kp.secret.public(), kp.public);
        let (ct, ss) = encapsulate(&kp.public);
        assert_eq!(decapsulate(&ct, &kp.secret), ss);
        let mut bad = ct.as_bytes().to_vec();
        bad[10] ^= 1;
        let bad = KemCiphertext::from_bytes(&bad).unwrap();
        assert_ne!(decapsulate(&bad, &kp.secret), ss);
        // another key pair cannot open it
        let other = keypair();
        assert_ne!(decapsulate(&ct, &other.secret), ss);
    }

    #[test]
    fn lengths_are_checked() {
        assert!(matches!(
            KemPublicKey::from_bytes(&[0; PUBLIC_KEY_LEN - 1]),
            Err(CryptoError::InvalidKey)
        ));
        assert!(matches!(
            KemCiphertext::from_bytes(&[0; CIPHERTEXT_LEN + 1]),
            Err(CryptoError::InvalidKey)
        ));
        assert!(KemSecretKey::from_bytes(&[0; SECRET_KEY_LEN]).is_ok());
    }
}
