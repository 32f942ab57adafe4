//! The double ratchet with header encryption (reference §6.4, `Crypto/Ratchet.hs`).
//!
//! * DH: X448 (keys on the wire as 68-byte SPKI DER, raw 56-byte keys inside KDFs and AD).
//! * X3DH ("SimpleXX3DH"), root KDF ("SimpleXRootRatchet"), chain KDF ("SimpleXChainRatchet"),
//!   all HKDF-SHA512 with 96-byte outputs split 32/32/32 (the chain KDF's last 32 bytes are the
//!   message IV and the header IV, 16 bytes each).
//! * AES-256-GCM with a 16-byte IV (GHASH-derived J0), the 16-byte tag placed *before* the
//!   ciphertext, plaintexts `pad`ded (Word16 length ‖ data ‖ `#`…).
//! * Headers already carry the e2e-v3 `Maybe KEM` slot. The sntrup761 KEM is not implemented:
//!   headers always say "no KEM" (`'0'`), a peer's KEM *proposal* is ignored (as the reference
//!   does when PQ encryption is off locally) and a KEM *acceptance* is a [`RatchetError::KemState`].
//!
//! Every operation is transactional: [`Ratchet::decrypt`] works on a copy of the state and only
//! replaces `self` when the message decrypted, so a corrupted, replayed or foreign message leaves
//! the ratchet exactly as it was. Unlike the reference (which persists skipped keys as a diff),
//! the skipped message keys are part of [`Ratchet`] and of its serialised form.

use std::collections::BTreeMap;

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce, Tag};
use hush_crypto::hash::hkdf_sha512;
use hush_crypto::{X448Public, X448Secret};
use hush_proto::encoding::{
    Parser, pad, put_large, put_short_string, put_word16, put_word32, unpad,
};
use zeroize::{Zeroize, Zeroizing};

/// AES-256-GCM with a 16-byte nonce, as the reference's cryptonite `aeadInit AEAD_GCM` with a
/// 16-byte IV.
type Aes256Gcm16 = AesGcm<Aes256, U16>;

/// e2e encryption version that first uses the KDF in X3DH.
pub const KDF_X3DH_E2E_VERSION: u16 = 2;
/// e2e encryption version with PQ KEM header fields (and `Large` header framing).
pub const PQ_RATCHET_E2E_VERSION: u16 = 3;
/// Current e2e encryption version.
pub const CURRENT_E2E_VERSION: u16 = 3;
/// Maximum number of message keys one message may make the receiver skip in one chain.
pub const MAX_SKIP: u32 = 512;
/// Padded header length without PQ support.
pub const PADDED_HEADER_LEN: usize = 88;
/// Padded header length with PQ support at e2e version ≥ 3 (never used here: no KEM).
pub const PADDED_HEADER_LEN_PQ: usize = 2310;
/// AES-GCM tag size.
pub const AUTH_TAG_LEN: usize = 16;
/// AES-GCM IV size used by the ratchet.
pub const IV_LEN: usize = 16;
/// Raw X448 key length.
pub const X448_LEN: usize = 56;

/// Supported e2e version range (2..3).
pub fn supported_e2e_versions() -> hush_proto::version::VersionRange {
    // Both constants are valid, 2 ≤ 3.
    hush_proto::version::VersionRange::new(KDF_X3DH_E2E_VERSION, CURRENT_E2E_VERSION).unwrap_or(
        hush_proto::version::VersionRange::single(CURRENT_E2E_VERSION),
    )
}

/// Ratchet errors (reference `CryptoError` ratchet cases). None carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatchetError {
    /// The message or its header could not be parsed (reference `CryptoHeaderError`).
    #[error("ratchet message/header syntax: {0}")]
    Syntax(&'static str),
    /// The header did not decrypt with any known header key (`CERatchetHeader`).
    #[error("ratchet header does not decrypt with any known key")]
    Header,
    /// The message body failed authentication (`AESDecryptError`).
    #[error("ratchet message decryption failed")]
    Decrypt,
    /// The message was already decrypted (`CERatchetDuplicateMessage`).
    #[error("duplicate ratchet message")]
    Duplicate,
    /// The message is older than the last decrypted one of its chain and was not skipped
    /// (`CERatchetEarlierMessage n`).
    #[error("earlier ratchet message ({0} before the next expected)")]
    Earlier(u32),
    /// More than [`MAX_SKIP`] keys would have to be skipped (`CERatchetTooManySkipped n`).
    #[error("too many skipped ratchet messages ({0})")]
    TooManySkipped(u32),
    /// No sending chain yet, or an inconsistent state (`CERatchetState`).
    #[error("ratchet state")]
    State,
    /// The peer sent a KEM ciphertext although no KEM key was proposed (`CERatchetKEMState`).
    #[error("ratchet KEM state")]
    KemState,
    /// The plaintext does not fit the padded length (`CryptoLargeMsgError`).
    #[error("message too large for the padded length")]
    TooLarge,
    /// A DH or key operation failed.
    #[error("ratchet key operation failed")]
    Key,
    /// Serialised ratchet state is malformed.
    #[error("corrupt serialised ratchet state: {0}")]
    CorruptState(&'static str),
}

type Key32 = [u8; 32];

/// Output of X3DH (reference `RatchetInitParams` without KEM).
#[derive(Clone)]
pub struct RatchetInitParams {
    /// Associated data: raw S1 ‖ raw R1 (112 bytes).
    pub assoc_data: Vec<u8>,
    /// Initial root key SK.
    pub ratchet_key: Key32,
    /// HK: the joiner's first sending header key (inviter's first NHKr).
    pub snd_hk: Key32,
    /// NHK: the joiner's first NHKr (inviter's first NHKs).
    pub rcv_next_hk: Key32,
}

impl Drop for RatchetInitParams {
    fn drop(&mut self) {
        self.ratchet_key.zeroize();
        self.snd_hk.zeroize();
        self.rcv_next_hk.zeroize();
    }
}

fn hkdf3(salt: &[u8], ikm: &[u8], info: &[u8]) -> Result<(Key32, Key32, Key32), RatchetError> {
    let mut out = Zeroizing::new([0u8; 96]);
    hkdf_sha512(salt, ikm, info, out.as_mut()).map_err(|_| RatchetError::Key)?;
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    let mut c = [0u8; 32];
    a.copy_from_slice(&out[..32]);
    b.copy_from_slice(&out[32..64]);
    c.copy_from_slice(&out[64..]);
    Ok((a, b, c))
}

/// X3DH key agreement: `HKDF-SHA512(salt = 64 zero bytes, dh1 ‖ dh2 ‖ dh3, "SimpleXX3DH", 96)`
/// → HK ‖ NHK ‖ SK. `(s1, r1)` are the public keys forming the AD.
fn x3dh(
    s1: &X448Public,
    r1: &X448Public,
    dh1: &[u8; 56],
    dh2: &[u8; 56],
    dh3: &[u8; 56],
) -> Result<RatchetInitParams, RatchetError> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(168));
    ikm.extend_from_slice(dh1);
    ikm.extend_from_slice(dh2);
    ikm.extend_from_slice(dh3);
    let (hk, nhk, sk) = hkdf3(&[0u8; 64], &ikm, b"SimpleXX3DH")?;
    let mut assoc_data = Vec::with_capacity(112);
    assoc_data.extend_from_slice(&s1.0);
    assoc_data.extend_from_slice(&r1.0);
    Ok(RatchetInitParams {
        assoc_data,
        ratchet_key: sk,
        snd_hk: hk,
        rcv_next_hk: nhk,
    })
}

fn dh(sk: &X448Secret, pk: &X448Public) -> Result<Zeroizing<[u8; 56]>, RatchetError> {
    sk.dh(pk).map_err(|_| RatchetError::Key)
}

/// X3DH on the joiner's side (reference `pqX3dhSnd` without KEM): own keys S1, S2, the
/// invitation's keys R1, R2. dh1 = DH(R1,S2), dh2 = DH(R2,S1), dh3 = DH(R2,S2).
pub fn x3dh_joiner(
    s1: &X448Secret,
    s2: &X448Secret,
    r1: &X448Public,
    r2: &X448Public,
) -> Result<RatchetInitParams, RatchetError> {
    let s1p = s1.public().map_err(|_| RatchetError::Key)?;
    x3dh(&s1p, r1, &*dh(s2, r1)?, &*dh(s1, r2)?, &*dh(s2, r2)?)
}

/// X3DH on the inviter's side (reference `pqX3dhRcv` without KEM): own keys R1, R2, the
/// confirmation's keys S1, S2.
pub fn x3dh_inviter(
    r1: &X448Secret,
    r2: &X448Secret,
    s1: &X448Public,
    s2: &X448Public,
) -> Result<RatchetInitParams, RatchetError> {
    let r1p = r1.public().map_err(|_| RatchetError::Key)?;
    x3dh(s1, &r1p, &*dh(r1, s2)?, &*dh(r2, s1)?, &*dh(r2, s2)?)
}

/// Root KDF: `HKDF-SHA512(salt = RK, ikm = DH output, "SimpleXRootRatchet", 96)` → RK' ‖ CK ‖ NHK.
pub fn root_kdf(rk: &Key32, dh_out: &[u8]) -> Result<(Key32, Key32, Key32), RatchetError> {
    hkdf3(rk, dh_out, b"SimpleXRootRatchet")
}

/// Chain KDF: `HKDF-SHA512(salt = "", ikm = CK, "SimpleXChainRatchet", 96)`
/// → CK' ‖ MK ‖ message IV (16) ‖ header IV (16).
pub fn chain_kdf(ck: &Key32) -> Result<(Key32, Key32, [u8; 16], [u8; 16]), RatchetError> {
    let (ck2, mk, ivs) = hkdf3(&[], ck, b"SimpleXChainRatchet")?;
    let mut iv = [0u8; 16];
    let mut hiv = [0u8; 16];
    iv.copy_from_slice(&ivs[..16]);
    hiv.copy_from_slice(&ivs[16..]);
    Ok((ck2, mk, iv, hiv))
}

/// `encryptAEAD`: AES-256-GCM(key, 16-byte iv, ad, pad(msg, padded_len)) → (tag, ciphertext).
pub fn encrypt_aead(
    key: &Key32,
    iv: &[u8; 16],
    padded_len: usize,
    ad: &[u8],
    msg: &[u8],
) -> Result<([u8; 16], Vec<u8>), RatchetError> {
    let mut buf = pad(msg, padded_len).map_err(|_| RatchetError::TooLarge)?;
    let cipher = Aes256Gcm16::new_from_slice(key).map_err(|_| RatchetError::Key)?;
    let tag = cipher
        .encrypt_in_place_detached(Nonce::<U16>::from_slice(iv), ad, &mut buf)
        .map_err(|_| RatchetError::TooLarge)?;
    Ok((tag.into(), buf))
}

/// `decryptAEAD`: checks the tag, then unpads.
pub fn decrypt_aead(
    key: &Key32,
    iv: &[u8; 16],
    ad: &[u8],
    ct: &[u8],
    tag: &[u8; 16],
) -> Result<Vec<u8>, RatchetError> {
    let cipher = Aes256Gcm16::new_from_slice(key).map_err(|_| RatchetError::Key)?;
    let mut buf = ct.to_vec();
    cipher
        .decrypt_in_place_detached(
            Nonce::<U16>::from_slice(iv),
            ad,
            &mut buf,
            Tag::<U16>::from_slice(tag),
        )
        .map_err(|_| RatchetError::Decrypt)?;
    let plain = unpad(&buf).map_err(|_| RatchetError::Decrypt)?.to_vec();
    buf.zeroize();
    Ok(plain)
}

fn can_pad(len: usize, padded_len: usize) -> bool {
    len <= hush_proto::encoding::MAX_PAD_MSG && len + 2 <= padded_len
}

// ---------------------------------------------------------------------------------------------
// Wire formats

/// KEM part of a header or of ratchet params (`P` pk | `A` ct pk), kept opaque.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KemParams {
    Proposed { key: Vec<u8> },
    Accepted { ct: Vec<u8>, key: Vec<u8> },
}

impl KemParams {
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), RatchetError> {
        let big = |_| RatchetError::TooLarge;
        match self {
            KemParams::Proposed { key } => {
                out.push(b'P');
                put_large(out, key).map_err(big)?;
            }
            KemParams::Accepted { ct, key } => {
                out.push(b'A');
                put_large(out, ct).map_err(big)?;
                put_large(out, key).map_err(big)?;
            }
        }
        Ok(())
    }

    pub fn parse(p: &mut Parser<'_>) -> Result<KemParams, RatchetError> {
        let syn = |_| RatchetError::Syntax("KEM params");
        match p.byte().map_err(syn)? {
            b'P' => Ok(KemParams::Proposed {
                key: p.large().map_err(syn)?.to_vec(),
            }),
            b'A' => {
                let ct = p.large().map_err(syn)?.to_vec();
                let key = p.large().map_err(syn)?.to_vec();
                Ok(KemParams::Accepted { ct, key })
            }
            _ => Err(RatchetError::Syntax("bad KEM params tag")),
        }
    }

    fn parse_maybe(p: &mut Parser<'_>) -> Result<Option<KemParams>, RatchetError> {
        match p.byte().map_err(|_| RatchetError::Syntax("KEM maybe"))? {
            b'0' => Ok(None),
            b'1' => Ok(Some(KemParams::parse(p)?)),
            _ => Err(RatchetError::Syntax("bad Maybe tag")),
        }
    }
}

/// Decrypted ratchet message header (reference `MsgHeader`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsgHeader {
    /// Sender's max supported e2e version.
    pub max_version: u16,
    /// Sender's current ratchet public key.
    pub dh: X448Public,
    pub kem: Option<KemParams>,
    /// Number of messages in the sender's previous sending chain.
    pub pn: u32,
    /// Message number in the current sending chain.
    pub ns: u32,
}

impl MsgHeader {
    /// `encodeMsgHeader v`: the KEM slot only from version 3.
    pub fn encode(&self, version: u16) -> Result<Vec<u8>, RatchetError> {
        let mut out = Vec::with_capacity(84);
        put_word16(&mut out, self.max_version);
        put_short_string(&mut out, &self.dh.to_spki_der()).map_err(|_| RatchetError::Key)?;
        if version >= PQ_RATCHET_E2E_VERSION {
            match &self.kem {
                None => out.push(b'0'),
                Some(k) => {
                    out.push(b'1');
                    k.encode(&mut out)?;
                }
            }
        }
        put_word32(&mut out, self.pn);
        put_word32(&mut out, self.ns);
        Ok(out)
    }

    /// `msgHeaderP v` (trailing bytes allowed, as the reference parses headers leniently).
    pub fn parse(bytes: &[u8], version: u16) -> Result<MsgHeader, RatchetError> {
        let syn = |_| RatchetError::Syntax("message header");
        let mut p = Parser::new(bytes);
        let max_version = p.word16().map_err(syn)?;
        let dh = X448Public::from_spki_der(p.short_string().map_err(syn)?)
            .map_err(|_| RatchetError::Syntax("header DH key is not X448"))?;
        let kem = if version >= PQ_RATCHET_E2E_VERSION {
            KemParams::parse_maybe(&mut p)?
        } else {
            None
        };
        let pn = p.word32().map_err(syn)?;
        let ns = p.word32().map_err(syn)?;
        Ok(MsgHeader {
            max_version,
            dh,
            kem,
            pn,
            ns,
        })
    }
}

/// `Large` from v3, shortString before (reference `encodeLarge`).
fn put_versioned_len(out: &mut Vec<u8>, v: u16, s: &[u8]) -> Result<(), RatchetError> {
    if v >= PQ_RATCHET_E2E_VERSION {
        put_large(out, s).map_err(|_| RatchetError::TooLarge)
    } else {
        put_short_string(out, s).map_err(|_| RatchetError::TooLarge)
    }
}

/// Reference `largeP`: first byte < 32 → Word16 length, else 1-byte length.
fn large_p<'a>(p: &mut Parser<'a>) -> Result<&'a [u8], RatchetError> {
    let syn = |_| RatchetError::Syntax("length-prefixed field");
    match p.peek() {
        Some(b) if b < 32 => p.large().map_err(syn),
        Some(_) => p.short_string().map_err(syn),
        None => Err(RatchetError::Syntax("empty field")),
    }
}

/// Encrypted header (reference `EncMessageHeader`): v ‖ iv(16) ‖ tag(16) ‖ body.
struct EncMessageHeader<'a> {
    version: u16,
    iv: [u8; 16],
    tag: [u8; 16],
    body: &'a [u8],
}

impl<'a> EncMessageHeader<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, RatchetError> {
        let syn = |_| RatchetError::Syntax("encrypted header");
        let mut p = Parser::new(bytes);
        let version = p.word16().map_err(syn)?;
        let iv = p.take_array::<16>().map_err(syn)?;
        let tag = p.take_array::<16>().map_err(syn)?;
        let body = large_p(&mut p)?;
        p.finish().map_err(syn)?;
        Ok(EncMessageHeader {
            version,
            iv,
            tag,
            body,
        })
    }
}

/// Encrypted ratchet message (reference `EncRatchetMessage`): prefixed header ‖ tag ‖ body.
struct EncRatchetMessage<'a> {
    header: &'a [u8],
    tag: [u8; 16],
    body: &'a [u8],
}

impl<'a> EncRatchetMessage<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, RatchetError> {
        let syn = |_| RatchetError::Syntax("ratchet message");
        let mut p = Parser::new(bytes);
        let header = large_p(&mut p)?;
        let tag = p.take_array::<16>().map_err(syn)?;
        let body = p.tail();
        Ok(EncRatchetMessage { header, tag, body })
    }
}

// ---------------------------------------------------------------------------------------------
// State

/// A message key and its IV (one skipped message).
#[derive(Clone, PartialEq, Eq)]
pub struct MessageKey {
    key: Key32,
    iv: [u8; 16],
}

impl Drop for MessageKey {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

#[derive(Clone, PartialEq, Eq)]
struct SndRatchet {
    dhrr: X448Public,
    cks: Key32,
    hks: Key32,
}

#[derive(Clone, PartialEq, Eq)]
struct RcvRatchet {
    ckr: Key32,
    hkr: Key32,
}

impl Drop for SndRatchet {
    fn drop(&mut self) {
        self.cks.zeroize();
        self.hks.zeroize();
    }
}

impl Drop for RcvRatchet {
    fn drop(&mut self) {
        self.ckr.zeroize();
        self.hkr.zeroize();
    }
}

/// Current and max supported e2e versions of a ratchet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RatchetVersions {
    pub current: u16,
    pub max_supported: u16,
}

/// Double-ratchet state (reference `Ratchet 'X448` plus its skipped message keys).
#[derive(Clone)]
pub struct Ratchet {
    version: RatchetVersions,
    ad: Vec<u8>,
    dhrs: X448Secret,
    rk: Key32,
    snd: Option<SndRatchet>,
    rcv: Option<RcvRatchet>,
    ns: u32,
    nr: u32,
    pn: u32,
    nhks: Key32,
    nhkr: Key32,
    /// Header key → (message number → key), ordered like the reference's `Map`.
    skipped: BTreeMap<Key32, BTreeMap<u32, MessageKey>>,
}

impl std::fmt::Debug for Ratchet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ratchet")
            .field("version", &self.version)
            .field("ns", &self.ns)
            .field("nr", &self.nr)
            .field("pn", &self.pn)
            .field("has_snd", &self.snd.is_some())
            .field("has_rcv", &self.rcv.is_some())
            .field("skipped", &self.skipped_count())
            .finish_non_exhaustive()
    }
}

impl Drop for Ratchet {
    fn drop(&mut self) {
        self.rk.zeroize();
        self.nhks.zeroize();
        self.nhkr.zeroize();
    }
}

/// Source of fresh X448 key pairs for DH ratchet steps (injectable for known-answer tests).
pub trait KeySource {
    fn generate(&mut self) -> Result<X448Secret, RatchetError>;
}

/// Fresh keys from the OS RNG (via OpenSSL).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsKeys;

impl KeySource for OsKeys {
    fn generate(&mut self) -> Result<X448Secret, RatchetError> {
        X448Secret::generate().map_err(|_| RatchetError::Key)
    }
}

impl<F: FnMut() -> Result<X448Secret, RatchetError>> KeySource for F {
    fn generate(&mut self) -> Result<X448Secret, RatchetError> {
        self()
    }
}

enum Step {
    Same,
    Advance,
}

impl Ratchet {
    /// Joiner's ratchet (reference `initSndRatchet` without KEM): DHRr = the invitation's R2,
    /// DHRs = `dhrs` (fresh), (RK, CKs, NHKs) = KDF_RK(SK, DH(R2, DHRs)).
    pub fn init_joiner(
        version: RatchetVersions,
        r2: &X448Public,
        dhrs: X448Secret,
        params: &RatchetInitParams,
    ) -> Result<Ratchet, RatchetError> {
        let (rk, cks, nhks) = root_kdf(&params.ratchet_key, dh(&dhrs, r2)?.as_ref())?;
        Ok(Ratchet {
            version,
            ad: params.assoc_data.clone(),
            dhrs,
            rk,
            snd: Some(SndRatchet {
                dhrr: *r2,
                cks,
                hks: params.snd_hk,
            }),
            rcv: None,
            ns: 0,
            nr: 0,
            pn: 0,
            nhks,
            nhkr: params.rcv_next_hk,
            skipped: BTreeMap::new(),
        })
    }

    /// Inviter's ratchet (reference `initRcvRatchet`): DHRs = R2's private key, RK = SK, no
    /// chains yet; NHKs = NHK, NHKr = HK.
    pub fn init_inviter(
        version: RatchetVersions,
        r2: X448Secret,
        params: &RatchetInitParams,
    ) -> Ratchet {
        Ratchet {
            version,
            ad: params.assoc_data.clone(),
            dhrs: r2,
            rk: params.ratchet_key,
            snd: None,
            rcv: None,
            ns: 0,
            nr: 0,
            pn: 0,
            nhks: params.rcv_next_hk,
            nhkr: params.snd_hk,
            skipped: BTreeMap::new(),
        }
    }

    pub fn versions(&self) -> RatchetVersions {
        self.version
    }

    /// Whether this ratchet can send (the inviter can only after its first received message).
    pub fn can_send(&self) -> bool {
        self.snd.is_some()
    }

    /// Number of stored skipped message keys.
    pub fn skipped_count(&self) -> usize {
        self.skipped.values().map(BTreeMap::len).sum()
    }

    /// Padded header length for the current version (no PQ support: always 88).
    pub fn padded_header_len(&self) -> usize {
        PADDED_HEADER_LEN
    }

    /// Encrypts `msg` padded to `padded_len` (reference `rcEncryptHeader` + `rcEncryptMsg`).
    /// On error the state is unchanged.
    pub fn encrypt(&mut self, msg: &[u8], padded_len: usize) -> Result<Vec<u8>, RatchetError> {
        if !can_pad(msg.len(), padded_len) {
            return Err(RatchetError::TooLarge);
        }
        let sr = self.snd.as_ref().ok_or(RatchetError::State)?;
        let (ck2, mk, iv, hiv) = chain_kdf(&sr.cks)?;
        let mk = Zeroizing::new(mk);
        let v = self.version.current;
        let max_supported = CURRENT_E2E_VERSION.max(v);
        let header = MsgHeader {
            max_version: max_supported,
            dh: self.dhrs.public().map_err(|_| RatchetError::Key)?,
            kem: None,
            pn: self.pn,
            ns: self.ns,
        }
        .encode(v)?;
        let (htag, hbody) =
            encrypt_aead(&sr.hks, &hiv, self.padded_header_len(), &self.ad, &header)?;
        let mut enc_header = Vec::with_capacity(40 + hbody.len());
        put_word16(&mut enc_header, v);
        enc_header.extend_from_slice(&hiv);
        enc_header.extend_from_slice(&htag);
        put_versioned_len(&mut enc_header, v, &hbody)?;
        let mut ad = Vec::with_capacity(self.ad.len() + enc_header.len());
        ad.extend_from_slice(&self.ad);
        ad.extend_from_slice(&enc_header);
        let (tag, body) = encrypt_aead(&mk, &iv, padded_len, &ad, msg)?;
        let mut out = Vec::with_capacity(enc_header.len() + 2 + 16 + body.len());
        put_versioned_len(&mut out, v, &enc_header)?;
        out.extend_from_slice(&tag);
        out.extend_from_slice(&body);
        // commit
        if let Some(sr) = self.snd.as_mut() {
            sr.cks = ck2;
        }
        self.ns = self.ns.wrapping_add(1);
        self.version.max_supported = max_supported;
        Ok(out)
    }

    /// Decrypts a ratchet message with fresh OS keys for DH ratchet steps.
    pub fn decrypt(&mut self, msg: &[u8]) -> Result<Vec<u8>, RatchetError> {
        self.decrypt_with(msg, &mut OsKeys)
    }

    /// Decrypts a ratchet message (reference `rcDecrypt`); `keys` supplies the new DHRs at a
    /// ratchet step. Transactional: `self` changes only when `Ok` is returned.
    pub fn decrypt_with(
        &mut self,
        msg: &[u8],
        keys: &mut dyn KeySource,
    ) -> Result<Vec<u8>, RatchetError> {
        let enc_msg = EncRatchetMessage::parse(msg)?;
        let enc_hdr = EncMessageHeader::parse(enc_msg.header)?;
        // (1) skipped header keys, in map order
        let mut found: Option<(Key32, MsgHeader)> = None;
        for hk in self.skipped.keys() {
            match self.decrypt_header(hk, &enc_hdr) {
                Ok(h) => {
                    found = Some((*hk, h));
                    break;
                }
                Err(RatchetError::Header) => continue,
                Err(e) => return Err(e),
            }
        }
        if let Some((hk, hdr)) = found {
            if let Some(mk) = self.skipped.get(&hk).and_then(|m| m.get(&hdr.ns)) {
                let plain = self.decrypt_message(mk, &enc_msg)?;
                let mut next = self.clone();
                if let Some(m) = next.skipped.get_mut(&hk) {
                    m.remove(&hdr.ns);
                    if m.is_empty() {
                        next.skipped.remove(&hk);
                    }
                }
                *self = next;
                return Ok(plain);
            }
            let step = if self.rcv.as_ref().is_some_and(|r| r.hkr == hk) {
                Step::Same
            } else if hk == self.nhkr {
                Step::Advance
            } else {
                return Err(RatchetError::Header);
            };
            return self.decrypt_rc_message(step, hdr, &enc_msg, keys);
        }
        // (2) HKr → same chain; (3) NHKr → ratchet step
        let (step, hdr) = match &self.rcv {
            Some(rr) => match self.decrypt_header(&rr.hkr, &enc_hdr) {
                Ok(h) => (Step::Same, h),
                Err(RatchetError::Header) => {
                    (Step::Advance, self.decrypt_header(&self.nhkr, &enc_hdr)?)
                }
                Err(e) => return Err(e),
            },
            None => (Step::Advance, self.decrypt_header(&self.nhkr, &enc_hdr)?),
        };
        self.decrypt_rc_message(step, hdr, &enc_msg, keys)
    }

    fn decrypt_header(
        &self,
        hk: &Key32,
        eh: &EncMessageHeader<'_>,
    ) -> Result<MsgHeader, RatchetError> {
        let plain = decrypt_aead(hk, &eh.iv, &self.ad, eh.body, &eh.tag)
            .map_err(|_| RatchetError::Header)?;
        MsgHeader::parse(&plain, eh.version)
    }

    fn decrypt_message(
        &self,
        mk: &MessageKey,
        em: &EncRatchetMessage<'_>,
    ) -> Result<Vec<u8>, RatchetError> {
        let mut ad = Vec::with_capacity(self.ad.len() + em.header.len());
        ad.extend_from_slice(&self.ad);
        ad.extend_from_slice(em.header);
        decrypt_aead(&mk.key, &mk.iv, &ad, em.body, &em.tag)
    }

    fn decrypt_rc_message(
        &mut self,
        step: Step,
        hdr: MsgHeader,
        em: &EncRatchetMessage<'_>,
        keys: &mut dyn KeySource,
    ) -> Result<Vec<u8>, RatchetError> {
        let mut next = self.clone();
        // upgradedRatchet
        let RatchetVersions {
            current,
            max_supported,
        } = next.version;
        if hdr.max_version > current {
            next.version.current = current.max(hdr.max_version.min(max_supported));
        }
        if let Step::Advance = step {
            next.skip_message_keys(hdr.pn)?;
            next.ratchet_step(&hdr, keys)?;
        }
        next.skip_message_keys(hdr.ns)?;
        let rr = next.rcv.as_mut().ok_or(RatchetError::State)?;
        let (ck2, mk, iv, _) = chain_kdf(&rr.ckr)?;
        let plain = next.decrypt_message(&MessageKey { key: mk, iv }, em)?;
        if let Some(rr) = next.rcv.as_mut() {
            rr.ckr = ck2;
        }
        next.nr = next.nr.wrapping_add(1);
        *self = next;
        Ok(plain)
    }

    fn ratchet_step(
        &mut self,
        hdr: &MsgHeader,
        keys: &mut dyn KeySource,
    ) -> Result<(), RatchetError> {
        // pqRatchetStep with PQ encryption off: a proposal is ignored, an acceptance needs a KEM
        // key we never made.
        if let Some(KemParams::Accepted { .. }) = hdr.kem {
            return Err(RatchetError::KemState);
        }
        let new_dhrs = keys.generate()?;
        let (rk1, ckr, nhkr) = root_kdf(&self.rk, dh(&self.dhrs, &hdr.dh)?.as_ref())?;
        let (rk2, cks, nhks) = root_kdf(&rk1, dh(&new_dhrs, &hdr.dh)?.as_ref())?;
        let snd = SndRatchet {
            dhrr: hdr.dh,
            cks,
            hks: self.nhks,
        };
        let rcv = RcvRatchet {
            ckr,
            hkr: self.nhkr,
        };
        self.dhrs = new_dhrs;
        self.rk = rk2;
        self.snd = Some(snd);
        self.rcv = Some(rcv);
        self.pn = self.ns;
        self.ns = 0;
        self.nr = 0;
        self.nhks = nhks;
        self.nhkr = nhkr;
        Ok(())
    }

    /// Reference `skipMessageKeys untilN`.
    fn skip_message_keys(&mut self, until_n: u32) -> Result<(), RatchetError> {
        let Some(rr) = self.rcv.as_mut() else {
            return Ok(());
        };
        let nr = u64::from(self.nr);
        let until = u64::from(until_n);
        if nr > until + 1 {
            return Err(RatchetError::Earlier((nr - until - 1) as u32));
        }
        if nr == until + 1 {
            return Err(RatchetError::Duplicate);
        }
        if nr + u64::from(MAX_SKIP) < until {
            return Err(RatchetError::TooManySkipped((until + 1 - nr) as u32));
        }
        if nr == until {
            return Ok(());
        }
        let hkr = rr.hkr;
        let mut ck = rr.ckr;
        let mut n = self.nr;
        let entry = self.skipped.entry(hkr).or_default();
        while n < until_n {
            let (ck2, mk, iv, _) = chain_kdf(&ck)?;
            entry.insert(n, MessageKey { key: mk, iv });
            ck.zeroize();
            ck = ck2;
            n += 1;
        }
        rr.ckr = ck;
        self.nr = n;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Serialisation

    const STATE_FORMAT: u8 = 1;

    /// Serialises the whole state (including skipped keys). Contains secrets: store it only in
    /// the client database.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        let mut out = Zeroizing::new(Vec::with_capacity(512));
        out.push(Self::STATE_FORMAT);
        put_word16(&mut out, self.version.current);
        put_word16(&mut out, self.version.max_supported);
        put_large(&mut out, &self.ad).map_err(|_| RatchetError::State)?;
        let dhrs = self.dhrs.to_bytes().map_err(|_| RatchetError::Key)?;
        out.extend_from_slice(&dhrs);
        out.extend_from_slice(&self.rk);
        match &self.snd {
            None => out.push(b'0'),
            Some(s) => {
                out.push(b'1');
                out.extend_from_slice(&s.dhrr.0);
                out.extend_from_slice(&s.cks);
                out.extend_from_slice(&s.hks);
            }
        }
        match &self.rcv {
            None => out.push(b'0'),
            Some(r) => {
                out.push(b'1');
                out.extend_from_slice(&r.ckr);
                out.extend_from_slice(&r.hkr);
            }
        }
        put_word32(&mut out, self.ns);
        put_word32(&mut out, self.nr);
        put_word32(&mut out, self.pn);
        out.extend_from_slice(&self.nhks);
        out.extend_from_slice(&self.nhkr);
        put_word32(&mut out, self.skipped.len() as u32);
        for (hk, mks) in &self.skipped {
            out.extend_from_slice(hk);
            put_word32(&mut out, mks.len() as u32);
            for (n, mk) in mks {
                put_word32(&mut out, *n);
                out.extend_from_slice(&mk.key);
                out.extend_from_slice(&mk.iv);
            }
        }
        Ok(out)
    }

    /// Parses [`Ratchet::to_bytes`] output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Ratchet, RatchetError> {
        let c = |_| RatchetError::CorruptState("truncated");
        let mut p = Parser::new(bytes);
        if p.byte().map_err(c)? != Self::STATE_FORMAT {
            return Err(RatchetError::CorruptState("unknown format"));
        }
        let current = p.word16().map_err(c)?;
        let max_supported = p.word16().map_err(c)?;
        let ad = p.large().map_err(c)?.to_vec();
        let dhrs = X448Secret::from_bytes(p.take(X448_LEN).map_err(c)?)
            .map_err(|_| RatchetError::CorruptState("DHRs"))?;
        let rk = p.take_array::<32>().map_err(c)?;
        let snd = match p.byte().map_err(c)? {
            b'0' => None,
            b'1' => Some(SndRatchet {
                dhrr: X448Public(p.take_array::<56>().map_err(c)?),
                cks: p.take_array::<32>().map_err(c)?,
                hks: p.take_array::<32>().map_err(c)?,
            }),
            _ => return Err(RatchetError::CorruptState("snd tag")),
        };
        let rcv = match p.byte().map_err(c)? {
            b'0' => None,
            b'1' => Some(RcvRatchet {
                ckr: p.take_array::<32>().map_err(c)?,
                hkr: p.take_array::<32>().map_err(c)?,
            }),
            _ => return Err(RatchetError::CorruptState("rcv tag")),
        };
        let ns = p.word32().map_err(c)?;
        let nr = p.word32().map_err(c)?;
        let pn = p.word32().map_err(c)?;
        let nhks = p.take_array::<32>().map_err(c)?;
        let nhkr = p.take_array::<32>().map_err(c)?;
        let n_hk = p.word32().map_err(c)?;
        let mut skipped = BTreeMap::new();
        for _ in 0..n_hk {
            let hk = p.take_array::<32>().map_err(c)?;
            let n = p.word32().map_err(c)?;
            let mut mks = BTreeMap::new();
            for _ in 0..n {
                let msg_n = p.word32().map_err(c)?;
                let key = p.take_array::<32>().map_err(c)?;
                let iv = p.take_array::<16>().map_err(c)?;
                mks.insert(msg_n, MessageKey { key, iv });
            }
            skipped.insert(hk, mks);
        }
        p.finish()
            .map_err(|_| RatchetError::CorruptState("trailing bytes"))?;
        Ok(Ratchet {
            version: RatchetVersions {
                current,
                max_supported,
            },
            ad,
            dhrs,
            rk,
            snd,
            rcv,
            ns,
            nr,
            pn,
            nhks,
            nhkr,
            skipped,
        })
    }
}

/// Equality of the full state (compares serialised forms; test helper).
impl PartialEq for Ratchet {
    fn eq(&self, other: &Self) -> bool {
        match (self.to_bytes(), other.to_bytes()) {
            (Ok(a), Ok(b)) => hush_crypto::ct_eq(&a, &b),
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// E2E ratchet params (binary, inside `C` confirmations)

/// Binary `E2ERatchetParams`: v ‖ key1 ‖ key2 (X448 SPKI shortStrings) ‖ [v ≥ 3: Maybe KEM].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct E2eRatchetParams {
    pub version: u16,
    pub key1: X448Public,
    pub key2: X448Public,
    pub kem: Option<KemParams>,
}

impl E2eRatchetParams {
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), RatchetError> {
        put_word16(out, self.version);
        put_short_string(out, &self.key1.to_spki_der()).map_err(|_| RatchetError::Key)?;
        put_short_string(out, &self.key2.to_spki_der()).map_err(|_| RatchetError::Key)?;
        if self.version >= PQ_RATCHET_E2E_VERSION {
            match &self.kem {
                None => out.push(b'0'),
                Some(k) => {
                    out.push(b'1');
                    k.encode(out)?;
                }
            }
        }
        Ok(())
    }

    pub fn parse(p: &mut Parser<'_>) -> Result<E2eRatchetParams, RatchetError> {
        let syn = |_| RatchetError::Syntax("e2e ratchet params");
        let version = p.word16().map_err(syn)?;
        let key1 = X448Public::from_spki_der(p.short_string().map_err(syn)?)
            .map_err(|_| RatchetError::Syntax("e2e params key1 is not X448"))?;
        let key2 = X448Public::from_spki_der(p.short_string().map_err(syn)?)
            .map_err(|_| RatchetError::Syntax("e2e params key2 is not X448"))?;
        let kem = if version >= PQ_RATCHET_E2E_VERSION {
            KemParams::parse_maybe(p)?
        } else {
            None
        };
        Ok(E2eRatchetParams {
            version,
            key1,
            key2,
            kem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Ratchet, Ratchet) {
        let r1 = X448Secret::generate().unwrap();
        let r2 = X448Secret::generate().unwrap();
        let s1 = X448Secret::generate().unwrap();
        let s2 = X448Secret::generate().unwrap();
        let pj = x3dh_joiner(&s1, &s2, &r1.public().unwrap(), &r2.public().unwrap()).unwrap();
        let pi = x3dh_inviter(&r1, &r2, &s1.public().unwrap(), &s2.public().unwrap()).unwrap();
        assert_eq!(pj.assoc_data, pi.assoc_data);
        let v = RatchetVersions {
            current: 3,
            max_supported: 3,
        };
        let j = Ratchet::init_joiner(
            v,
            &r2.public().unwrap(),
            X448Secret::generate().unwrap(),
            &pj,
        )
        .unwrap();
        let i = Ratchet::init_inviter(v, r2, &pi);
        (j, i)
    }

    #[test]
    fn round_trip_both_ways() {
        let (mut j, mut i) = pair();
        assert!(!i.can_send());
        assert_eq!(i.encrypt(b"x", 100), Err(RatchetError::State));
        let m = j.encrypt(b"hello", 200).unwrap();
        assert_eq!(i.decrypt(&m).unwrap(), b"hello");
        let r = i.encrypt(b"hi back", 200).unwrap();
        assert_eq!(j.decrypt(&r).unwrap(), b"hi back");
        // replay is rejected, state unchanged
        let before = i.to_bytes().unwrap();
        assert_eq!(i.decrypt(&m), Err(RatchetError::Duplicate));
        assert_eq!(*i.to_bytes().unwrap(), *before);
    }

    #[test]
    fn serialisation_round_trips_with_skipped_keys() {
        let (mut j, mut i) = pair();
        let ms: Vec<_> = (0..5).map(|k| j.encrypt(&[k], 64).unwrap()).collect();
        assert_eq!(i.decrypt(&ms[4]).unwrap(), vec![4]);
        assert_eq!(i.skipped_count(), 4);
        let bytes = i.to_bytes().unwrap();
        let mut i2 = Ratchet::from_bytes(&bytes).unwrap();
        assert_eq!(*i2.to_bytes().unwrap(), *bytes);
        assert_eq!(i2.decrypt(&ms[1]).unwrap(), vec![1]);
        assert_eq!(i2.skipped_count(), 3);
        for cut in 0..bytes.len() {
            assert!(Ratchet::from_bytes(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn exactly_max_skip_is_allowed() {
        let (mut j, mut i) = pair();
        i.decrypt(&j.encrypt(b"a", 40).unwrap()).unwrap();
        let skipped: Vec<_> = (0..MAX_SKIP)
            .map(|_| j.encrypt(b"s", 40).unwrap())
            .collect();
        let last = j.encrypt(b"last", 40).unwrap();
        assert_eq!(i.decrypt(&last).unwrap(), b"last");
        assert_eq!(i.skipped_count(), MAX_SKIP as usize);
        // every skipped one still decrypts, once
        for m in skipped.iter().rev() {
            assert_eq!(i.decrypt(m).unwrap(), b"s");
        }
        assert_eq!(i.skipped_count(), 0);
        assert!(i.decrypt(&skipped[0]).is_err());
    }

    #[test]
    fn too_large_and_too_many_skipped() {
        let (mut j, mut i) = pair();
        assert_eq!(j.encrypt(&[0; 99], 100), Err(RatchetError::TooLarge));
        let first = j.encrypt(b"a", 40).unwrap();
        i.decrypt(&first).unwrap();
        for _ in 0..MAX_SKIP + 1 {
            j.encrypt(b"a", 40).unwrap();
        }
        let far = j.encrypt(b"far", 40).unwrap();
        let before = i.to_bytes().unwrap();
        assert!(matches!(
            i.decrypt(&far),
            Err(RatchetError::TooManySkipped(_))
        ));
        assert_eq!(*i.to_bytes().unwrap(), *before);
    }
}
