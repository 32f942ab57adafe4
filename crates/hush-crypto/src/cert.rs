//! Server certificates (OpenSSL): offline CA + online leaf (`smp-server init`, §2.3), the CA
//! fingerprint (server identity, §2.1), the signed per-connection X25519 key of the server
//! hello (§2.4) and PEM files.

use std::path::Path;

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Private, Public};
use openssl::sign::{Signer, Verifier};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509NameBuilder, X509Ref};

use crate::CryptoError;
use crate::der::{TAG_BIT_STRING, TAG_OID, TAG_SEQUENCE, expect_tlv, write_tlv};
use crate::hash::sha256;
use crate::x25519::X25519Public;

/// Certificate validity used by the reference's `smp-server init` for CA and leaf.
pub const CERT_VALIDITY_DAYS: u32 = 999_999;

/// DER `AlgorithmIdentifier` contents: OID 1.3.101.112 (Ed25519), no parameters.
const OID_ED25519: [u8; 3] = [0x2b, 0x65, 0x70];
/// OID 1.3.101.113 (Ed448).
const OID_ED448: [u8; 3] = [0x2b, 0x65, 0x71];

/// Signature algorithm of certificates and signed keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignAlgorithm {
    Ed25519,
    Ed448,
}

impl SignAlgorithm {
    fn oid(self) -> &'static [u8] {
        match self {
            SignAlgorithm::Ed25519 => &OID_ED25519,
            SignAlgorithm::Ed448 => &OID_ED448,
        }
    }

    fn of_pkey_id(id: Id) -> Result<Self, CryptoError> {
        if id == Id::ED25519 {
            Ok(SignAlgorithm::Ed25519)
        } else if id == Id::ED448 {
            Ok(SignAlgorithm::Ed448)
        } else {
            Err(CryptoError::Algorithm)
        }
    }

    fn generate_key(self) -> Result<PKey<Private>, CryptoError> {
        Ok(match self {
            SignAlgorithm::Ed25519 => PKey::generate_ed25519()?,
            SignAlgorithm::Ed448 => PKey::generate_ed448()?,
        })
    }
}

/// A certificate (DER) and its private key.
pub struct CertKey {
    pub cert_der: Vec<u8>,
    pub key: PKey<Private>,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey")
            .field("cert_der_len", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

fn random_serial() -> Result<Asn1Integer, CryptoError> {
    let mut bn = BigNum::new()?;
    // 159 random bits, top bit clear: positive and ≤ 20 bytes (RFC 5280).
    bn.rand(159, openssl::bn::MsbOption::MAYBE_ZERO, false)?;
    Ok(bn.to_asn1_integer()?)
}

fn name(common_name: &str) -> Result<openssl::x509::X509Name, CryptoError> {
    let mut b = X509NameBuilder::new()?;
    b.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    Ok(b.build())
}

fn base_builder(subject_cn: &str, key: &PKeyRef<Private>) -> Result<X509Builder, CryptoError> {
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = random_serial()?;
    b.set_serial_number(&serial)?;
    let subject = name(subject_cn)?;
    b.set_subject_name(&subject)?;
    b.set_pubkey(key)?;
    let not_before = Asn1Time::days_from_now(0)?;
    b.set_not_before(&not_before)?;
    let not_after = Asn1Time::days_from_now(CERT_VALIDITY_DAYS)?;
    b.set_not_after(&not_after)?;
    Ok(b)
}

/// Generates the offline CA: self-signed, 999999 days, `basicConstraints = critical,CA:true`,
/// subject/authority key identifiers (as the reference's `openssl_ca.conf`).
pub fn generate_ca(alg: SignAlgorithm, common_name: &str) -> Result<CertKey, CryptoError> {
    let key = alg.generate_key()?;
    let mut b = base_builder(common_name, &key)?;
    let issuer = name(common_name)?;
    b.set_issuer_name(&issuer)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&b.x509v3_context(None, None))?;
    b.append_extension(aki)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.sign(&key, MessageDigest::null())?;
    let cert_der = b.build().to_der()?;
    Ok(CertKey { cert_der, key })
}

/// Generates the online (TLS leaf) certificate signed by `ca`: 999999 days, `CA:FALSE`,
/// key usage digitalSignature/nonRepudiation/keyAgreement, EKU serverAuth.
pub fn generate_online_cert(
    ca: &CertKey,
    alg: SignAlgorithm,
    common_name: &str,
) -> Result<CertKey, CryptoError> {
    let ca_cert = X509::from_der(&ca.cert_der)?;
    let key = alg.generate_key()?;
    let mut b = base_builder(common_name, &key)?;
    b.set_issuer_name(ca_cert.subject_name())?;
    b.append_extension(BasicConstraints::new().build()?)?;
    b.append_extension(
        KeyUsage::new()
            .digital_signature()
            .non_repudiation()
            .key_agreement()
            .build()?,
    )?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    b.sign(&ca.key, MessageDigest::null())?;
    let cert_der = b.build().to_der()?;
    Ok(CertKey { cert_der, key })
}

/// SHA-256 of the full certificate DER = the server key hash in `smp://<fp>@host`.
pub fn fingerprint(cert_der: &[u8]) -> [u8; 32] {
    sha256(cert_der)
}

/// Builds the DER "SignedExact" object of §2.4:
/// `SEQUENCE { SPKI(X25519), SEQUENCE { OID }, BIT STRING { 0x00 ‖ signature } }`.
pub(crate) fn encode_signed_object(spki: &[u8], alg: SignAlgorithm, sig: &[u8]) -> Vec<u8> {
    let mut alg_id = Vec::with_capacity(7);
    write_tlv(&mut alg_id, TAG_OID, alg.oid());
    let mut bits = Vec::with_capacity(sig.len() + 1);
    bits.push(0);
    bits.extend_from_slice(sig);
    let mut body = Vec::with_capacity(spki.len() + 130);
    body.extend_from_slice(spki);
    write_tlv(&mut body, TAG_SEQUENCE, &alg_id);
    write_tlv(&mut body, TAG_BIT_STRING, &bits);
    let mut out = Vec::with_capacity(body.len() + 3);
    write_tlv(&mut out, TAG_SEQUENCE, &body);
    out
}

/// Parsed "SignedExact": (signed object DER, algorithm, raw signature).
pub(crate) fn decode_signed_object(
    der: &[u8],
) -> Result<(&[u8], SignAlgorithm, &[u8]), CryptoError> {
    let (outer, rest) = expect_tlv(der, TAG_SEQUENCE)?;
    if !rest.is_empty() {
        return Err(CryptoError::Der("trailing bytes after signed object"));
    }
    let (obj, rest) = expect_tlv(outer.value, TAG_SEQUENCE)?;
    let (alg_id, rest) = expect_tlv(rest, TAG_SEQUENCE)?;
    let (bits, rest) = expect_tlv(rest, TAG_BIT_STRING)?;
    if !rest.is_empty() {
        return Err(CryptoError::Der("trailing bytes in signed object"));
    }
    let (oid, alg_rest) = expect_tlv(alg_id.value, TAG_OID)?;
    if !alg_rest.is_empty() {
        return Err(CryptoError::Der("unexpected algorithm parameters"));
    }
    let alg = if oid.value == OID_ED25519 {
        SignAlgorithm::Ed25519
    } else if oid.value == OID_ED448 {
        SignAlgorithm::Ed448
    } else {
        return Err(CryptoError::Algorithm);
    };
    let sig = match bits.value.split_first() {
        Some((0, sig)) => sig,
        _ => return Err(CryptoError::Der("bad signature bit string")),
    };
    Ok((obj.raw, alg, sig))
}

/// Signs the X25519 hello key with the TLS leaf (online) key: DER SignedExact, 120 bytes for
/// Ed25519, 171 for Ed448.
pub fn sign_x25519_key(
    leaf_key: &PKeyRef<Private>,
    key: &X25519Public,
) -> Result<Vec<u8>, CryptoError> {
    let alg = SignAlgorithm::of_pkey_id(leaf_key.id())?;
    let spki = key.to_spki_der();
    let sig = Signer::new_without_digest(leaf_key)?.sign_oneshot_to_vec(&spki)?;
    Ok(encode_signed_object(&spki, alg, &sig))
}

/// Verifies a signed X25519 key against the leaf certificate's public key and returns the key.
pub fn verify_signed_x25519_key(
    leaf_cert_der: &[u8],
    signed_der: &[u8],
) -> Result<X25519Public, CryptoError> {
    let cert = X509::from_der(leaf_cert_der)?;
    let pk = cert.public_key()?;
    verify_signed_object_with(&pk, signed_der).and_then(X25519Public::from_spki_der)
}

/// The same SignedExact structure over any public key's SPKI (v16 service key: an Ed25519
/// key signed by the service certificate's leaf key).
pub fn sign_public_key(
    leaf_key: &PKeyRef<Private>,
    key: &crate::keys::PublicKey,
) -> Result<Vec<u8>, CryptoError> {
    let alg = SignAlgorithm::of_pkey_id(leaf_key.id())?;
    let spki = key.to_spki_der();
    let sig = Signer::new_without_digest(leaf_key)?.sign_oneshot_to_vec(&spki)?;
    Ok(encode_signed_object(&spki, alg, &sig))
}

/// Verifies a signed public key (any algorithm) against the leaf certificate's key.
pub fn verify_signed_public_key(
    leaf_cert_der: &[u8],
    signed_der: &[u8],
) -> Result<crate::keys::PublicKey, CryptoError> {
    let cert = X509::from_der(leaf_cert_der)?;
    let pk = cert.public_key()?;
    verify_signed_object_with(&pk, signed_der).and_then(crate::keys::PublicKey::from_spki_der)
}

/// Verifies a SignedExact with `pk` (algorithm must match) and returns the signed object DER.
pub(crate) fn verify_signed_object_with<'a>(
    pk: &PKeyRef<Public>,
    signed_der: &'a [u8],
) -> Result<&'a [u8], CryptoError> {
    let (obj, alg, sig) = decode_signed_object(signed_der)?;
    if SignAlgorithm::of_pkey_id(pk.id())? != alg {
        return Err(CryptoError::Algorithm);
    }
    let ok = Verifier::new_without_digest(pk)
        .and_then(|mut v| v.verify_oneshot(sig, obj))
        .unwrap_or(false);
    if ok {
        Ok(obj)
    } else {
        Err(CryptoError::BadSignature)
    }
}

impl CertKey {
    /// The parsed certificate.
    pub fn cert(&self) -> Result<X509, CryptoError> {
        Ok(X509::from_der(&self.cert_der)?)
    }

    /// SHA-256 of the certificate DER.
    pub fn fingerprint(&self) -> [u8; 32] {
        fingerprint(&self.cert_der)
    }

    /// The signature algorithm of this key.
    pub fn algorithm(&self) -> Result<SignAlgorithm, CryptoError> {
        SignAlgorithm::of_pkey_id(self.key.id())
    }

    /// PEM text of the certificate.
    pub fn cert_to_pem(&self) -> Result<String, CryptoError> {
        let pem = self.cert()?.to_pem()?;
        String::from_utf8(pem).map_err(|_| CryptoError::Pem("non-UTF-8 PEM"))
    }

    /// PEM text of the private key (PKCS#8 "PRIVATE KEY", as `openssl genpkey` writes).
    pub fn key_to_pem(&self) -> Result<zeroize::Zeroizing<String>, CryptoError> {
        let pem = zeroize::Zeroizing::new(self.key.private_key_to_pem_pkcs8()?);
        let s = std::str::from_utf8(&pem).map_err(|_| CryptoError::Pem("non-UTF-8 PEM"))?;
        Ok(zeroize::Zeroizing::new(s.to_owned()))
    }

    /// `(cert PEM, key PEM)`.
    pub fn to_pem(&self) -> Result<(String, zeroize::Zeroizing<String>), CryptoError> {
        Ok((self.cert_to_pem()?, self.key_to_pem()?))
    }

    /// From a certificate PEM (the first certificate is used) and a private-key PEM; the key
    /// must match the certificate and be Ed25519 or Ed448.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, CryptoError> {
        let cert = X509::from_pem(cert_pem).map_err(|_| CryptoError::Pem("bad certificate PEM"))?;
        let key =
            PKey::private_key_from_pem(key_pem).map_err(|_| CryptoError::Pem("bad key PEM"))?;
        SignAlgorithm::of_pkey_id(key.id())?;
        check_key_matches(&cert, &key)?;
        Ok(CertKey {
            cert_der: cert.to_der()?,
            key,
        })
    }

    /// Writes `cert_path` (PEM) and `key_path` (PEM, a private file: mode 0600 from creation,
    /// fsync'd, atomically replacing an older key; see [`hush_server_common::private`]).
    pub fn save_pem_files(&self, cert_path: &Path, key_path: &Path) -> Result<(), CryptoError> {
        let (cert_pem, key_pem) = self.to_pem()?;
        std::fs::write(cert_path, cert_pem.as_bytes())?;
        hush_server_common::private::write_private(key_path, key_pem.as_bytes())?;
        Ok(())
    }

    /// Reads a pair written by [`CertKey::save_pem_files`] (or by `openssl`).
    pub fn load_pem_files(cert_path: &Path, key_path: &Path) -> Result<Self, CryptoError> {
        let cert_pem = std::fs::read(cert_path)?;
        let key_pem = zeroize::Zeroizing::new(std::fs::read(key_path)?);
        Self::from_pem(&cert_pem, &key_pem)
    }
}

fn check_key_matches(cert: &X509Ref, key: &PKeyRef<Private>) -> Result<(), CryptoError> {
    let cert_pk = cert.public_key()?;
    if cert_pk.public_eq(key) {
        Ok(())
    } else {
        Err(CryptoError::InvalidKey)
    }
}

/// Loads a certificate file (PEM, one or more certificates) as DER, in file order.
pub fn load_cert_chain_pem(path: &Path) -> Result<Vec<Vec<u8>>, CryptoError> {
    let pem = std::fs::read(path)?;
    let certs = X509::stack_from_pem(&pem).map_err(|_| CryptoError::Pem("bad certificate PEM"))?;
    if certs.is_empty() {
        return Err(CryptoError::Pem("no certificate"));
    }
    certs.iter().map(|c| Ok(c.to_der()?)).collect()
}
