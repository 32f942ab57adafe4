//! Ed25519 (ed25519-dalek), Ed448 and X448 (OpenSSL) keys, their DER forms (§1.1), and
//! algorithm detection from DER. X25519 lives in [`crate::x25519`].
//!
//! Public keys are kept as raw bytes and only decoded as curve points when used, like the
//! reference (whose key parsers only check the DER structure and the length).

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::SigningKey;
use ed25519_dalek::hazmat::ExpandedSecretKey;
use openssl::derive::Deriver;
use openssl::pkey::{Id, PKey, Private};
use openssl::sign::{Signer, Verifier};
use rand::rngs::OsRng;
use zeroize::{Zeroize, Zeroizing};

use crate::CryptoError;
use crate::x25519::{X25519Public, X25519Secret};

pub use crate::cert::SignAlgorithm;

pub use hush_proto::address::KeyAlgorithm;

/// DER SubjectPublicKeyInfo: `SEQ { SEQ { OID 1.3.101.x } BIT STRING { 0x00 ‖ key } }` — the
/// algorithm's fixed prefix (from hush-proto) followed by the raw key.
fn spki_encode(alg: KeyAlgorithm, key: &[u8]) -> Vec<u8> {
    [alg.spki_prefix(), key].concat()
}

/// True if `der` has the algorithm-identifier part (`SEQ { OID 1.3.101.x }`, bytes `range`) of
/// one of the four algorithms' DER prefixes, as given by `prefix`.
fn known_algorithm_id(
    der: &[u8],
    range: std::ops::Range<usize>,
    prefix: fn(KeyAlgorithm) -> &'static [u8],
) -> bool {
    [
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Ed448,
        KeyAlgorithm::X25519,
        KeyAlgorithm::X448,
    ]
    .into_iter()
    .any(|a| der.get(range.clone()) == prefix(a).get(range.clone()))
}

/// Parses an SPKI of one of the four algorithms; returns the algorithm and raw key.
fn spki_decode(der: &[u8]) -> Result<(KeyAlgorithm, &[u8]), CryptoError> {
    match KeyAlgorithm::of_spki(der) {
        Some(alg) => Ok((alg, der.get(alg.spki_prefix().len()..).unwrap_or_default())),
        None if der.len() >= 12 && known_algorithm_id(der, 2..9, KeyAlgorithm::spki_prefix) => {
            Err(CryptoError::Der("bad SubjectPublicKeyInfo length"))
        }
        None => Err(CryptoError::Der(
            "not an Ed25519/Ed448/X25519/X448 SubjectPublicKeyInfo",
        )),
    }
}

fn spki_decode_as(alg: KeyAlgorithm, der: &[u8]) -> Result<&[u8], CryptoError> {
    let (a, k) = spki_decode(der)?;
    if a != alg {
        return Err(CryptoError::Der(
            "unexpected key algorithm in SubjectPublicKeyInfo",
        ));
    }
    Ok(k)
}

/// PKCS#8 v1: `SEQ { INT 0, SEQ { OID }, OCTET STRING { OCTET STRING { key } } }` — the
/// algorithm's fixed prefix (from hush-proto) followed by the raw key.
fn pkcs8_encode(alg: KeyAlgorithm, key: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(alg.pkcs8_prefix().len() + key.len()));
    out.extend_from_slice(alg.pkcs8_prefix());
    out.extend_from_slice(key);
    out
}

fn pkcs8_decode(der: &[u8]) -> Result<(KeyAlgorithm, &[u8]), CryptoError> {
    // Ed448 private keys are 57 bytes, X448 56, the 25519 ones 32.
    match KeyAlgorithm::of_pkcs8(der) {
        Some(alg) => Ok((alg, der.get(alg.pkcs8_prefix().len()..).unwrap_or_default())),
        None if der.len() >= 16 && known_algorithm_id(der, 2..12, KeyAlgorithm::pkcs8_prefix) => {
            Err(CryptoError::Der("bad PKCS#8 length"))
        }
        None => Err(CryptoError::Der(
            "not an Ed25519/Ed448/X25519/X448 PKCS#8 v1 key",
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Ed25519

/// An Ed25519 signing key (zeroized on drop by ed25519-dalek).
#[derive(Clone)]
pub struct Ed25519Secret(SigningKey);

impl std::fmt::Debug for Ed25519Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ed25519Secret(..)")
    }
}

impl Ed25519Secret {
    pub fn generate() -> Self {
        Ed25519Secret(SigningKey::generate(&mut OsRng))
    }

    /// From the 32-byte seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Ed25519Secret(SigningKey::from_bytes(seed))
    }

    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    pub fn public(&self) -> Ed25519Public {
        Ed25519Public(self.0.verifying_key().to_bytes())
    }

    /// A 64-byte signature (RFC 8032; the same bytes as ed25519-dalek's `sign`, with OpenSSL's
    /// SHA-512 for the two hashes over the message).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.sign_parts(&[msg])
    }

    /// [`Ed25519Secret::sign`] of the concatenation of `parts`, without concatenating them
    /// (a 16 KB transmission is hashed twice where it lies, not copied first).
    pub fn sign_parts(&self, parts: &[&[u8]]) -> [u8; 64] {
        // RFC 8032 §5.1.6, as ed25519-dalek's `raw_sign`: r = H(prefix ‖ M), R = [r]B,
        // k = H(R ‖ A ‖ M), S = r + k·a.
        let esk = ExpandedSecretKey::from(&*self.seed());
        let mut h = openssl::sha::Sha512::new();
        h.update(&esk.hash_prefix);
        for p in parts {
            h.update(p);
        }
        let mut r_hash = Zeroizing::new(h.finish());
        let r = Zeroizing::new(Scalar::from_bytes_mod_order_wide(&r_hash));
        r_hash.zeroize();
        let big_r = EdwardsPoint::mul_base(&r).compress();
        let k = challenge(big_r.as_bytes(), self.0.verifying_key().as_bytes(), parts);
        let s = k * esk.scalar + *r;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(big_r.as_bytes());
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }

    /// PKCS#8 v1 DER, 48 bytes.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        pkcs8_encode(KeyAlgorithm::Ed25519, self.seed().as_ref())
    }

    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        match PrivateKey::from_pkcs8_der(der)? {
            PrivateKey::Ed25519(k) => Ok(k),
            _ => Err(CryptoError::Der("not an Ed25519 PKCS#8 key")),
        }
    }
}

/// An Ed25519 public key (raw 32 bytes; decoded as a point when verifying).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Ed25519Public(pub [u8; 32]);

impl Ed25519Public {
    /// 44-byte DER SPKI.
    pub fn to_spki_der(&self) -> Vec<u8> {
        spki_encode(KeyAlgorithm::Ed25519, &self.0)
    }

    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        let k = spki_decode_as(KeyAlgorithm::Ed25519, der)?;
        Ok(Ed25519Public(
            k.try_into().map_err(|_| CryptoError::InvalidKey)?,
        ))
    }

    /// Verifies a 64-byte signature (RFC 8032, cofactorless; non-canonical S rejected).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        Ed25519Verifier::new(self)
            .map_err(|_| CryptoError::BadSignature)?
            .verify(msg, sig)
    }
}

/// `k = H(R ‖ A ‖ M) mod ℓ`, M given in parts.
fn challenge(r: &[u8; 32], a: &[u8; 32], parts: &[&[u8]]) -> Scalar {
    let mut h = openssl::sha::Sha512::new();
    h.update(r);
    h.update(a);
    for p in parts {
        h.update(p);
    }
    Scalar::from_bytes_mod_order_wide(&h.finish())
}

/// An Ed25519 public key decoded for verification: the point is decompressed once, so callers
/// that verify with the same key again (the relay's per-connection key cache) skip it.
///
/// The check is ed25519-dalek's `Verifier::verify` (the one before it, tested against it in
/// `tests/ed25519_sha512.rs`): cofactorless, a non-canonical S rejected, R compared as
/// bytes, small-order keys not refused (not `verify_strict`, like the reference), with
/// OpenSSL's SHA-512 for `H(R ‖ A ‖ M)`.
#[derive(Clone, Copy)]
pub struct Ed25519Verifier {
    /// The key as given (hashed as given, like ed25519-dalek).
    key: [u8; 32],
    /// `-A`.
    minus_a: EdwardsPoint,
}

impl std::fmt::Debug for Ed25519Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ed25519Verifier(..)")
    }
}

impl Ed25519Verifier {
    /// Decodes the key; an encoding that is not a curve point is an error.
    pub fn new(key: &Ed25519Public) -> Result<Self, CryptoError> {
        let a = CompressedEdwardsY(key.0)
            .decompress()
            .ok_or(CryptoError::InvalidKey)?;
        Ok(Ed25519Verifier {
            key: key.0,
            minus_a: -a,
        })
    }

    /// Verifies a 64-byte signature over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        self.verify_parts(&[msg], sig)
    }

    /// Verifies a 64-byte signature over the concatenation of `parts`, without concatenating
    /// them.
    pub fn verify_parts(&self, parts: &[&[u8]], sig: &[u8]) -> Result<(), CryptoError> {
        let sig: &[u8; 64] = sig.try_into().map_err(|_| CryptoError::BadSignature)?;
        let (r, s) = sig.split_at(32);
        let r: [u8; 32] = r.try_into().map_err(|_| CryptoError::BadSignature)?;
        let s: [u8; 32] = s.try_into().map_err(|_| CryptoError::BadSignature)?;
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s))
            .ok_or(CryptoError::BadSignature)?;
        let k = challenge(&r, &self.key, parts);
        // [s]B - [k]A must be R (as bytes: a non-canonical R never matches).
        let expected = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &self.minus_a, &s);
        if expected.compress().as_bytes() == &r {
            Ok(())
        } else {
            Err(CryptoError::BadSignature)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ed448 (OpenSSL)

/// An Ed448 signing key (OpenSSL frees it with a secure clear).
#[derive(Clone)]
pub struct Ed448Secret(PKey<Private>);

impl std::fmt::Debug for Ed448Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ed448Secret(..)")
    }
}

impl Ed448Secret {
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Ed448Secret(PKey::generate_ed448()?))
    }

    /// From the 57 raw private-key bytes.
    pub fn from_bytes(raw: &[u8]) -> Result<Self, CryptoError> {
        if raw.len() != 57 {
            return Err(CryptoError::InvalidKey);
        }
        Ok(Ed448Secret(PKey::private_key_from_raw_bytes(
            raw,
            Id::ED448,
        )?))
    }

    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        Ok(Zeroizing::new(self.0.raw_private_key()?))
    }

    pub fn public(&self) -> Result<Ed448Public, CryptoError> {
        let raw = self.0.raw_public_key()?;
        Ok(Ed448Public(
            raw.try_into().map_err(|_| CryptoError::InvalidKey)?,
        ))
    }

    /// A 114-byte signature (pure Ed448, empty context).
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(Signer::new_without_digest(&self.0)?.sign_oneshot_to_vec(msg)?)
    }

    /// PKCS#8 v1 DER, 73 bytes.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        Ok(pkcs8_encode(KeyAlgorithm::Ed448, &self.to_bytes()?))
    }

    /// The OpenSSL key (e.g. for certificates).
    pub fn pkey(&self) -> &PKey<Private> {
        &self.0
    }
}

/// An Ed448 public key (57 raw bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Ed448Public(pub [u8; 57]);

impl Ed448Public {
    /// 69-byte DER SPKI.
    pub fn to_spki_der(&self) -> Vec<u8> {
        spki_encode(KeyAlgorithm::Ed448, &self.0)
    }

    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        let k = spki_decode_as(KeyAlgorithm::Ed448, der)?;
        Ok(Ed448Public(
            k.try_into().map_err(|_| CryptoError::InvalidKey)?,
        ))
    }

    /// Verifies a 114-byte signature.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        if sig.len() != 114 {
            return Err(CryptoError::BadSignature);
        }
        let ok = PKey::public_key_from_raw_bytes(&self.0, Id::ED448)
            .and_then(|pk| Verifier::new_without_digest(&pk)?.verify_oneshot(sig, msg))
            .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            Err(CryptoError::BadSignature)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// X448 (OpenSSL) — used by the agent's double ratchet, not by the servers.

/// An X448 private key.
#[derive(Clone)]
pub struct X448Secret(PKey<Private>);

impl std::fmt::Debug for X448Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("X448Secret(..)")
    }
}

impl X448Secret {
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(X448Secret(PKey::generate_x448()?))
    }

    pub fn from_bytes(raw: &[u8]) -> Result<Self, CryptoError> {
        if raw.len() != 56 {
            return Err(CryptoError::InvalidKey);
        }
        Ok(X448Secret(PKey::private_key_from_raw_bytes(raw, Id::X448)?))
    }

    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        Ok(Zeroizing::new(self.0.raw_private_key()?))
    }

    pub fn public(&self) -> Result<X448Public, CryptoError> {
        let raw = self.0.raw_public_key()?;
        Ok(X448Public(
            raw.try_into().map_err(|_| CryptoError::InvalidKey)?,
        ))
    }

    /// Raw X448 shared secret (56 bytes).
    pub fn dh(&self, peer: &X448Public) -> Result<Zeroizing<[u8; 56]>, CryptoError> {
        let peer = PKey::public_key_from_raw_bytes(&peer.0, Id::X448)?;
        let mut d = Deriver::new(&self.0)?;
        d.set_peer(&peer)?;
        let mut out = Zeroizing::new([0u8; 56]);
        let n = d.derive(out.as_mut())?;
        if n != 56 {
            return Err(CryptoError::InvalidKey);
        }
        Ok(out)
    }

    /// PKCS#8 v1 DER, 72 bytes.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        Ok(pkcs8_encode(KeyAlgorithm::X448, &self.to_bytes()?))
    }
}

/// An X448 public key (56 raw bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct X448Public(pub [u8; 56]);

impl X448Public {
    /// 68-byte DER SPKI.
    pub fn to_spki_der(&self) -> Vec<u8> {
        spki_encode(KeyAlgorithm::X448, &self.0)
    }

    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        let k = spki_decode_as(KeyAlgorithm::X448, der)?;
        Ok(X448Public(
            k.try_into().map_err(|_| CryptoError::InvalidKey)?,
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Algorithm-detecting enums

/// Any public key, algorithm detected from the DER SPKI.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PublicKey {
    Ed25519(Ed25519Public),
    Ed448(Ed448Public),
    X25519(X25519Public),
    X448(X448Public),
}

impl PublicKey {
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        let (alg, k) = spki_decode(der)?;
        let bad = |_| CryptoError::InvalidKey;
        Ok(match alg {
            KeyAlgorithm::Ed25519 => PublicKey::Ed25519(Ed25519Public(k.try_into().map_err(bad)?)),
            KeyAlgorithm::Ed448 => PublicKey::Ed448(Ed448Public(k.try_into().map_err(bad)?)),
            KeyAlgorithm::X25519 => PublicKey::X25519(X25519Public(k.try_into().map_err(bad)?)),
            KeyAlgorithm::X448 => PublicKey::X448(X448Public(k.try_into().map_err(bad)?)),
        })
    }

    pub fn to_spki_der(&self) -> Vec<u8> {
        match self {
            PublicKey::Ed25519(k) => k.to_spki_der(),
            PublicKey::Ed448(k) => k.to_spki_der(),
            PublicKey::X25519(k) => k.to_spki_der(),
            PublicKey::X448(k) => k.to_spki_der(),
        }
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            PublicKey::Ed25519(_) => KeyAlgorithm::Ed25519,
            PublicKey::Ed448(_) => KeyAlgorithm::Ed448,
            PublicKey::X25519(_) => KeyAlgorithm::X25519,
            PublicKey::X448(_) => KeyAlgorithm::X448,
        }
    }

    /// Raw key bytes.
    pub fn raw(&self) -> &[u8] {
        match self {
            PublicKey::Ed25519(k) => &k.0,
            PublicKey::Ed448(k) => &k.0,
            PublicKey::X25519(k) => &k.0,
            PublicKey::X448(k) => &k.0,
        }
    }

    /// Verifies a signature with this key; the signature's length must match the key's
    /// algorithm (64 for Ed25519, 114 for Ed448). DH keys never verify signatures.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        self.verify_parts(&[msg], sig)
    }

    /// [`PublicKey::verify`] of the concatenation of `parts` (Ed25519 hashes them where they
    /// lie; OpenSSL's one-shot Ed448 gets them concatenated).
    pub fn verify_parts(&self, parts: &[&[u8]], sig: &[u8]) -> Result<(), CryptoError> {
        match self {
            PublicKey::Ed25519(k) => Ed25519Verifier::new(k)
                .map_err(|_| CryptoError::BadSignature)?
                .verify_parts(parts, sig),
            PublicKey::Ed448(k) => match parts {
                [one] => k.verify(one, sig),
                _ => k.verify(&parts.concat(), sig),
            },
            _ => Err(CryptoError::Algorithm),
        }
    }
}

/// Any private key, algorithm detected from PKCS#8 v1 DER (NTF `SNEW` carries the notifier's
/// private auth key this way).
#[derive(Clone, Debug)]
pub enum PrivateKey {
    Ed25519(Ed25519Secret),
    Ed448(Ed448Secret),
    X25519(X25519Secret),
    X448(X448Secret),
}

impl PrivateKey {
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        let (alg, k) = pkcs8_decode(der)?;
        Ok(match alg {
            KeyAlgorithm::Ed25519 => {
                let mut seed: [u8; 32] = k.try_into().map_err(|_| CryptoError::InvalidKey)?;
                let key = Ed25519Secret::from_seed(&seed);
                seed.zeroize();
                PrivateKey::Ed25519(key)
            }
            KeyAlgorithm::X25519 => {
                let raw: [u8; 32] = k.try_into().map_err(|_| CryptoError::InvalidKey)?;
                PrivateKey::X25519(X25519Secret::from_bytes(raw))
            }
            KeyAlgorithm::Ed448 => PrivateKey::Ed448(Ed448Secret::from_bytes(k)?),
            KeyAlgorithm::X448 => PrivateKey::X448(X448Secret::from_bytes(k)?),
        })
    }

    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        Ok(match self {
            PrivateKey::Ed25519(k) => k.to_pkcs8_der(),
            PrivateKey::X25519(k) => Zeroizing::new(k.to_pkcs8_der()),
            PrivateKey::Ed448(k) => k.to_pkcs8_der()?,
            PrivateKey::X448(k) => k.to_pkcs8_der()?,
        })
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            PrivateKey::Ed25519(_) => KeyAlgorithm::Ed25519,
            PrivateKey::Ed448(_) => KeyAlgorithm::Ed448,
            PrivateKey::X25519(_) => KeyAlgorithm::X25519,
            PrivateKey::X448(_) => KeyAlgorithm::X448,
        }
    }

    pub fn public(&self) -> Result<PublicKey, CryptoError> {
        Ok(match self {
            PrivateKey::Ed25519(k) => PublicKey::Ed25519(k.public()),
            PrivateKey::Ed448(k) => PublicKey::Ed448(k.public()?),
            PrivateKey::X25519(k) => PublicKey::X25519(k.public()),
            PrivateKey::X448(k) => PublicKey::X448(k.public()?),
        })
    }
}

/// A signing key of either signature algorithm.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // long-lived keys; boxing buys nothing
pub enum SignSecret {
    Ed25519(Ed25519Secret),
    Ed448(Ed448Secret),
}

impl SignSecret {
    pub fn generate(alg: SignAlgorithm) -> Result<Self, CryptoError> {
        Ok(match alg {
            SignAlgorithm::Ed25519 => SignSecret::Ed25519(Ed25519Secret::generate()),
            SignAlgorithm::Ed448 => SignSecret::Ed448(Ed448Secret::generate()?),
        })
    }

    pub fn algorithm(&self) -> SignAlgorithm {
        match self {
            SignSecret::Ed25519(_) => SignAlgorithm::Ed25519,
            SignSecret::Ed448(_) => SignAlgorithm::Ed448,
        }
    }

    /// Signature bytes (64 or 114).
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match self {
            SignSecret::Ed25519(k) => Ok(k.sign(msg).to_vec()),
            SignSecret::Ed448(k) => k.sign(msg),
        }
    }

    pub fn public(&self) -> Result<PublicKey, CryptoError> {
        Ok(match self {
            SignSecret::Ed25519(k) => PublicKey::Ed25519(k.public()),
            SignSecret::Ed448(k) => PublicKey::Ed448(k.public()?),
        })
    }
}

/// The algorithm a signature's length implies: 64 → Ed25519, 114 → Ed448.
pub fn signature_algorithm(sig: &[u8]) -> Option<SignAlgorithm> {
    match sig.len() {
        64 => Some(SignAlgorithm::Ed25519),
        114 => Some(SignAlgorithm::Ed448),
        _ => None,
    }
}
