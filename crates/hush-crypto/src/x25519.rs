//! X25519 keys (x25519-dalek), their SPKI / PKCS#8 DER forms (§1.1) and DH secrets.

use rand::rngs::OsRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;

/// DER SubjectPublicKeyInfo prefix of an X25519 key (OID 1.3.101.110).
pub const X25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
];
/// DER PKCS#8 v1 prefix of an X25519 private key.
pub const X25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
];

/// An X25519 private key; zeroized on drop (x25519-dalek's `StaticSecret` does that itself).
#[derive(Clone)]
pub struct X25519Secret(StaticSecret);

impl std::fmt::Debug for X25519Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("X25519Secret(..)")
    }
}

impl X25519Secret {
    /// A fresh random key (OS RNG).
    pub fn generate() -> Self {
        X25519Secret(StaticSecret::random_from_rng(OsRng))
    }

    /// From the 32 raw private-key bytes (as stored; clamping happens at use).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut b = bytes;
        let s = StaticSecret::from(b);
        b.zeroize();
        X25519Secret(s)
    }

    /// The 32 raw private-key bytes.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The matching public key.
    pub fn public(&self) -> X25519Public {
        X25519Public(PublicKey::from(&self.0).to_bytes())
    }

    /// Raw X25519 with the peer's public key. SimpleX uses the raw output directly as the
    /// crypto_box "secret" (HSalsa20 is applied inside the box).
    pub fn dh(&self, peer: &X25519Public) -> DhSecret {
        let shared = self.0.diffie_hellman(&PublicKey::from(peer.0));
        DhSecret(*shared.as_bytes())
    }

    /// PKCS#8 v1 DER (48 bytes, no public key) — the form NTF `SNEW` carries.
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        let raw = self.to_bytes();
        let mut out = Vec::with_capacity(48);
        out.extend_from_slice(&X25519_PKCS8_PREFIX);
        out.extend_from_slice(raw.as_ref());
        out
    }

    /// Parses PKCS#8 v1 DER (exactly 48 bytes with the X25519 OID).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        let raw = der
            .strip_prefix(&X25519_PKCS8_PREFIX[..])
            .ok_or(CryptoError::Der("not an X25519 PKCS#8 key"))?;
        let mut bytes: [u8; 32] = raw
            .try_into()
            .map_err(|_| CryptoError::Der("bad X25519 PKCS#8 length"))?;
        let s = Self::from_bytes(bytes);
        bytes.zeroize();
        Ok(s)
    }
}

/// An X25519 public key (32 raw bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct X25519Public(pub [u8; 32]);

impl std::fmt::Debug for X25519Public {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "X25519Public({:02x}{:02x}{:02x}{:02x}..)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

impl X25519Public {
    /// DER SubjectPublicKeyInfo (44 bytes).
    pub fn to_spki_der(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(44);
        out.extend_from_slice(&X25519_SPKI_PREFIX);
        out.extend_from_slice(&self.0);
        out
    }

    /// Parses a DER SubjectPublicKeyInfo; any other OID or length is an error.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        let raw = der
            .strip_prefix(&X25519_SPKI_PREFIX[..])
            .ok_or(CryptoError::Der("not an X25519 SubjectPublicKeyInfo"))?;
        let k: [u8; 32] = raw
            .try_into()
            .map_err(|_| CryptoError::Der("bad X25519 SubjectPublicKeyInfo length"))?;
        Ok(X25519Public(k))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A raw X25519 shared secret (also used as a stored queue secret); zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DhSecret([u8; 32]);

impl std::fmt::Debug for DhSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DhSecret(..)")
    }
}

impl DhSecret {
    /// Wraps stored secret bytes (e.g. a queue's rcvDhSecret loaded from the store).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DhSecret(bytes)
    }

    /// The 32 secret bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for DhSecret {
    fn eq(&self, other: &Self) -> bool {
        crate::ct_eq(&self.0, &other.0)
    }
}
impl Eq for DhSecret {}
