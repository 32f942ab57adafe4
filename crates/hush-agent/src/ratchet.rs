//! The double ratchet with header encryption (reference §6.4, `Crypto/Ratchet.hs`).
//!
//! * DH: X448 (keys on the wire as 68-byte SPKI DER, raw 56-byte keys inside KDFs and AD).
//! * X3DH ("SimpleXX3DH"), root KDF ("SimpleXRootRatchet"), chain KDF ("SimpleXChainRatchet"),
//!   all HKDF-SHA512 with 96-byte outputs split 32/32/32 (the chain KDF's last 32 bytes are the
//!   message IV and the header IV, 16 bytes each).
//! * AES-256-GCM with a 16-byte IV (GHASH-derived J0), the 16-byte tag placed *before* the
//!   ciphertext, plaintexts `pad`ded (Word16 length ‖ data ‖ `#`…).
//! * PQ (e2e v3, reference `pqX3dh*`, `pqRatchetStep`): the sntrup761 KEM
//!   ([`hush_crypto::sntrup761`]). A header's `Maybe KEM` slot proposes our KEM public key (`P`)
//!   or, once we encapsulated to the peer's key, accepts it (`A` ciphertext ‖ our key); the KEM
//!   shared secret is appended to the DH output in X3DH and in the root KDF of the chains it
//!   belongs to, and headers are padded to 2310 bytes once PQ support is on (it never goes off).
//!   With PQ encryption off locally a peer's proposal is ignored, and an acceptance decapsulates
//!   only if we still have a KEM key (else [`RatchetError::KemState`]), as the reference does.
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
use hush_crypto::sntrup761::{
    self, KemCiphertext, KemKeyPair, KemPublicKey, KemSecretKey, KemSharedKey,
};
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
/// Padded header length with PQ support at e2e version ≥ 3.
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

/// An accepted KEM (reference `RatchetKEMAccepted`): the peer's public key, the shared secret we
/// encapsulated to it and the ciphertext carrying it (sent in our headers until the next step).
#[derive(Clone, Debug)]
pub struct KemAccepted {
    pub peer_key: KemPublicKey,
    pub shared: KemSharedKey,
    pub ct: KemCiphertext,
}

/// Our KEM state (reference `RatchetKEM`): our current key pair and what we accepted.
#[derive(Clone, Debug)]
struct RatchetKem {
    own: KemKeyPair,
    accepted: Option<KemAccepted>,
}

impl RatchetKem {
    fn header_params(&self) -> KemParams {
        let key = self.own.public.as_bytes().to_vec();
        match &self.accepted {
            None => KemParams::Proposed { key },
            Some(a) => KemParams::Accepted {
                ct: a.ct.as_bytes().to_vec(),
                key,
            },
        }
    }
}

/// Output of X3DH (reference `RatchetInitParams`).
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
    /// The KEM accepted in the confirmation (its shared secret went into X3DH).
    pub kem_accepted: Option<KemAccepted>,
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

/// X3DH key agreement: `HKDF-SHA512(salt = 64 zero bytes, dh1 ‖ dh2 ‖ dh3 [‖ KEM secret],
/// "SimpleXX3DH", 96)` → HK ‖ NHK ‖ SK. `(s1, r1)` are the public keys forming the AD.
fn x3dh(
    s1: &X448Public,
    r1: &X448Public,
    dh1: &[u8; 56],
    dh2: &[u8; 56],
    dh3: &[u8; 56],
    kem_accepted: Option<KemAccepted>,
) -> Result<RatchetInitParams, RatchetError> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(200));
    ikm.extend_from_slice(dh1);
    ikm.extend_from_slice(dh2);
    ikm.extend_from_slice(dh3);
    if let Some(k) = &kem_accepted {
        ikm.extend_from_slice(k.shared.as_bytes());
    }
    let (hk, nhk, sk) = hkdf3(&[0u8; 64], &ikm, b"SimpleXX3DH")?;
    let mut assoc_data = Vec::with_capacity(112);
    assoc_data.extend_from_slice(&s1.0);
    assoc_data.extend_from_slice(&r1.0);
    Ok(RatchetInitParams {
        assoc_data,
        ratchet_key: sk,
        snd_hk: hk,
        rcv_next_hk: nhk,
        kem_accepted,
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
    x3dh(&s1p, r1, &*dh(s2, r1)?, &*dh(s1, r2)?, &*dh(s2, r2)?, None)
}

/// What the joiner answers to an invitation's KEM (reference `replyKEM_` then
/// `generateSndE2EParams`): nothing, a proposal of its own key, or an acceptance (encapsulation
/// to the invitation's key, plus its own key for the inviter to encapsulate to later).
pub enum JoinerKem {
    None,
    Proposed(KemKeyPair),
    Accepted {
        own: KemKeyPair,
        accepted: KemAccepted,
    },
}

impl JoinerKem {
    /// `replyKEM_ v invitationKEM pqSupport`: with PQ support and e2e version ≥ 3, accept the
    /// invitation's proposed key or, without one, propose our own. An invitation cannot carry an
    /// acceptance ([`RatchetError::KemState`]); its key must be an sntrup761 key
    /// ([`RatchetError::Syntax`]).
    pub fn reply(
        version: u16,
        invitation_kem: Option<&KemParams>,
        pq_support: bool,
    ) -> Result<JoinerKem, RatchetError> {
        if !pq_support || version < PQ_RATCHET_E2E_VERSION {
            return Ok(JoinerKem::None);
        }
        match invitation_kem {
            None => Ok(JoinerKem::Proposed(sntrup761::keypair())),
            Some(KemParams::Proposed { key }) => {
                let peer_key = kem_public(key)?;
                let own = sntrup761::keypair();
                let (ct, shared) = sntrup761::encapsulate(&peer_key);
                Ok(JoinerKem::Accepted {
                    own,
                    accepted: KemAccepted {
                        peer_key,
                        shared,
                        ct,
                    },
                })
            }
            Some(KemParams::Accepted { .. }) => Err(RatchetError::KemState),
        }
    }

    /// The KEM part of the confirmation's ratchet params.
    pub fn params(&self) -> Option<KemParams> {
        match self {
            JoinerKem::None => None,
            JoinerKem::Proposed(own) => Some(KemParams::Proposed {
                key: own.public.as_bytes().to_vec(),
            }),
            JoinerKem::Accepted { own, accepted } => Some(KemParams::Accepted {
                ct: accepted.ct.as_bytes().to_vec(),
                key: own.public.as_bytes().to_vec(),
            }),
        }
    }
}

/// X3DH on the joiner's side with KEM (reference `pqX3dhSnd`): returns the init params (with
/// the accepted KEM's secret in X3DH) and our KEM key pair for [`Ratchet::init_joiner_pq`].
pub fn pq_x3dh_joiner(
    s1: &X448Secret,
    s2: &X448Secret,
    r1: &X448Public,
    r2: &X448Public,
    kem: JoinerKem,
) -> Result<(RatchetInitParams, Option<KemKeyPair>), RatchetError> {
    let s1p = s1.public().map_err(|_| RatchetError::Key)?;
    let (own, accepted) = match kem {
        JoinerKem::None => (None, None),
        JoinerKem::Proposed(own) => (Some(own), None),
        JoinerKem::Accepted { own, accepted } => (Some(own), Some(accepted)),
    };
    let p = x3dh(
        &s1p,
        r1,
        &*dh(s2, r1)?,
        &*dh(s1, r2)?,
        &*dh(s2, r2)?,
        accepted,
    )?;
    Ok((p, own))
}

/// X3DH on the inviter's side with KEM (reference `pqX3dhRcv`): `own_kem` is the key pair the
/// invitation proposed (if any), `joiner_kem` the confirmation's KEM params at e2e `version`.
/// An acceptance decapsulates with our key (none → [`RatchetError::KemState`]); a proposal is
/// left to the first ratchet step. Returns our key pair only when the joiner accepted it.
pub fn pq_x3dh_inviter(
    r1: &X448Secret,
    r2: &X448Secret,
    own_kem: Option<KemKeyPair>,
    s1: &X448Public,
    s2: &X448Public,
    version: u16,
    joiner_kem: Option<&KemParams>,
) -> Result<(RatchetInitParams, Option<KemKeyPair>), RatchetError> {
    let r1p = r1.public().map_err(|_| RatchetError::Key)?;
    let (own, accepted) = match joiner_kem {
        Some(KemParams::Accepted { ct, key }) if version >= PQ_RATCHET_E2E_VERSION => {
            let peer_key = kem_public(key)?;
            let ct = kem_ciphertext(ct)?;
            let own = own_kem.ok_or(RatchetError::KemState)?;
            let shared = sntrup761::decapsulate(&ct, &own.secret);
            (
                Some(own),
                Some(KemAccepted {
                    peer_key,
                    shared,
                    ct,
                }),
            )
        }
        _ => (None, None),
    };
    let p = x3dh(
        s1,
        &r1p,
        &*dh(r1, s2)?,
        &*dh(r2, s1)?,
        &*dh(r2, s2)?,
        accepted,
    )?;
    Ok((p, own))
}

fn kem_public(key: &[u8]) -> Result<KemPublicKey, RatchetError> {
    KemPublicKey::from_bytes(key).map_err(|_| RatchetError::Syntax("KEM public key length"))
}

fn kem_ciphertext(ct: &[u8]) -> Result<KemCiphertext, RatchetError> {
    KemCiphertext::from_bytes(ct).map_err(|_| RatchetError::Syntax("KEM ciphertext length"))
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
    x3dh(s1, &r1p, &*dh(r1, s2)?, &*dh(r2, s1)?, &*dh(r2, s2)?, None)
}

/// Root KDF: `HKDF-SHA512(salt = RK, ikm = DH output, "SimpleXRootRatchet", 96)` → RK' ‖ CK ‖ NHK.
pub fn root_kdf(rk: &Key32, dh_out: &[u8]) -> Result<(Key32, Key32, Key32), RatchetError> {
    hkdf3(rk, dh_out, b"SimpleXRootRatchet")
}

/// Root KDF with an optional KEM shared secret appended to the DH output (reference `rootKdf`).
pub fn root_kdf_pq(
    rk: &Key32,
    dh_out: &[u8],
    kem: Option<&KemSharedKey>,
) -> Result<(Key32, Key32, Key32), RatchetError> {
    match kem {
        None => root_kdf(rk, dh_out),
        Some(ss) => {
            let mut ikm = Zeroizing::new(Vec::with_capacity(dh_out.len() + 32));
            ikm.extend_from_slice(dh_out);
            ikm.extend_from_slice(ss.as_bytes());
            root_kdf(rk, &ikm)
        }
    }
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

/// Reference `paddedHeaderLen v pqSupport`.
pub fn padded_header_len(version: u16, pq_support: bool) -> usize {
    if pq_support && version >= PQ_RATCHET_E2E_VERSION {
        PADDED_HEADER_LEN_PQ
    } else {
        PADDED_HEADER_LEN
    }
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
    /// `rcKEM`: our KEM key pair and what we accepted.
    kem: Option<RatchetKem>,
    /// `rcSupportKEM`: large (2310-byte) headers; once on, stays on.
    support_kem: bool,
    /// `rcEnableKEM`: use KEM at the next ratchet step.
    enable_kem: bool,
    /// `rcSndKEM`: the sending chain includes a KEM secret.
    snd_kem: bool,
    /// `rcRcvKEM`: the receiving chain includes a KEM secret.
    rcv_kem: bool,
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
            .field("pq_support", &self.support_kem)
            .field("pq_enable", &self.enable_kem)
            .field("pq_snd", &self.snd_kem)
            .field("pq_rcv", &self.rcv_kem)
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
    /// Joiner's ratchet without KEM (see [`Ratchet::init_joiner_pq`]).
    pub fn init_joiner(
        version: RatchetVersions,
        r2: &X448Public,
        dhrs: X448Secret,
        params: &RatchetInitParams,
    ) -> Result<Ratchet, RatchetError> {
        Self::init_joiner_pq(version, r2, dhrs, params, None)
    }

    /// Joiner's ratchet (reference `initSndRatchet`): DHRr = the invitation's R2, DHRs = `dhrs`
    /// (fresh), (RK, CKs, NHKs) = KDF_RK(SK, DH(R2, DHRs) [‖ accepted KEM secret]). With a KEM key
    /// pair (from [`pq_x3dh_joiner`]) PQ support and encryption are on.
    pub fn init_joiner_pq(
        version: RatchetVersions,
        r2: &X448Public,
        dhrs: X448Secret,
        params: &RatchetInitParams,
        own_kem: Option<KemKeyPair>,
    ) -> Result<Ratchet, RatchetError> {
        let accepted = params.kem_accepted.clone();
        let (rk, cks, nhks) = root_kdf_pq(
            &params.ratchet_key,
            dh(&dhrs, r2)?.as_ref(),
            accepted.as_ref().map(|a| &a.shared),
        )?;
        let pq_on = own_kem.is_some();
        let snd_kem = accepted.is_some();
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
            kem: own_kem.map(|own| RatchetKem { own, accepted }),
            support_kem: pq_on,
            enable_kem: pq_on,
            snd_kem,
            rcv_kem: false,
        })
    }

    /// Inviter's ratchet without KEM (see [`Ratchet::init_inviter_pq`]).
    pub fn init_inviter(
        version: RatchetVersions,
        r2: X448Secret,
        params: &RatchetInitParams,
    ) -> Ratchet {
        Self::init_inviter_pq(version, r2, params, None, false)
    }

    /// Inviter's ratchet (reference `initRcvRatchet`): DHRs = R2's private key, RK = SK, no
    /// chains yet; NHKs = NHK, NHKr = HK. `own_kem` is the key pair [`pq_x3dh_inviter`] returned
    /// (the joiner accepted our proposal); `pq_support` turns PQ support and encryption on, so
    /// the first ratchet step accepts the joiner's proposal (or proposes our own key).
    pub fn init_inviter_pq(
        version: RatchetVersions,
        r2: X448Secret,
        params: &RatchetInitParams,
        own_kem: Option<KemKeyPair>,
        pq_support: bool,
    ) -> Ratchet {
        let accepted = params.kem_accepted.clone();
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
            kem: own_kem.map(|own| RatchetKem { own, accepted }),
            support_kem: pq_support,
            enable_kem: pq_support,
            snd_kem: false,
            rcv_kem: false,
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

    /// Padded header length (reference `paddedHeaderLen`): 2310 with PQ support at e2e v ≥ 3,
    /// else 88.
    pub fn padded_header_len(&self) -> usize {
        padded_header_len(self.version.current, self.support_kem)
    }

    /// PQ support after the next [`Ratchet::encrypt`] (reference `pqEnableSupport`): whether
    /// headers are large, so the agent must use the smaller PQ envelope lengths.
    pub fn pq_support(&self) -> bool {
        self.support_kem || (self.version.current >= PQ_RATCHET_E2E_VERSION && self.enable_kem)
    }

    /// Whether KEM will be used at the next ratchet step (`rcEnableKEM`).
    pub fn pq_enabled(&self) -> bool {
        self.enable_kem
    }

    /// Whether the current sending / receiving chains include a KEM secret (`rcSndKEM`,
    /// `rcRcvKEM`): the connection is post-quantum encrypted when both are.
    pub fn pq_chains(&self) -> (bool, bool) {
        (self.snd_kem, self.rcv_kem)
    }

    /// Encrypts `msg` padded to `padded_len` (reference `rcEncryptHeader` + `rcEncryptMsg`
    /// with no PQ change). On error the state is unchanged.
    pub fn encrypt(&mut self, msg: &[u8], padded_len: usize) -> Result<Vec<u8>, RatchetError> {
        self.encrypt_pq(msg, padded_len, None)
    }

    /// Encrypts with an optional PQ encryption switch (`pqEnc_` of `rcEncryptHeader`): `Some(true)`
    /// turns KEM on from the next ratchet step (and PQ support now, at e2e v ≥ 3), `Some(false)`
    /// turns it off and stops repeating the pending KEM ciphertext after this message.
    pub fn encrypt_pq(
        &mut self,
        msg: &[u8],
        padded_len: usize,
        pq_enc: Option<bool>,
    ) -> Result<Vec<u8>, RatchetError> {
        self.encrypt_inner(msg, padded_len, pq_enc, None)
    }

    /// `header_kem` replaces the header's KEM slot (decoder tests only).
    fn encrypt_inner(
        &mut self,
        msg: &[u8],
        padded_len: usize,
        pq_enc: Option<bool>,
        header_kem: Option<Option<KemParams>>,
    ) -> Result<Vec<u8>, RatchetError> {
        if !can_pad(msg.len(), padded_len) {
            return Err(RatchetError::TooLarge);
        }
        let sr = self.snd.as_ref().ok_or(RatchetError::State)?;
        let (ck2, mk, iv, hiv) = chain_kdf(&sr.cks)?;
        let mk = Zeroizing::new(mk);
        let v = self.version.current;
        let enable_kem = pq_enc.unwrap_or(self.enable_kem);
        let support_kem = self.support_kem || (v >= PQ_RATCHET_E2E_VERSION && enable_kem);
        let max_supported = CURRENT_E2E_VERSION.max(if pq_enc == Some(true) {
            PQ_RATCHET_E2E_VERSION
        } else {
            v
        });
        let header = MsgHeader {
            max_version: max_supported,
            dh: self.dhrs.public().map_err(|_| RatchetError::Key)?,
            kem: header_kem.unwrap_or_else(|| self.kem.as_ref().map(RatchetKem::header_params)),
            pn: self.pn,
            ns: self.ns,
        }
        .encode(v)?;
        let (htag, hbody) = encrypt_aead(
            &sr.hks,
            &hiv,
            padded_header_len(v, support_kem),
            &self.ad,
            &header,
        )?;
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
        self.support_kem = support_kem;
        self.enable_kem = enable_kem;
        if pq_enc == Some(false)
            && let Some(k) = self.kem.as_mut()
        {
            k.accepted = None;
        }
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
        let (kem_ss, kem_ss2, new_kem) = self.pq_ratchet_step(hdr.kem.as_ref())?;
        let new_dhrs = keys.generate()?;
        let (rk1, ckr, nhkr) =
            root_kdf_pq(&self.rk, dh(&self.dhrs, &hdr.dh)?.as_ref(), kem_ss.as_ref())?;
        let (rk2, cks, nhks) =
            root_kdf_pq(&rk1, dh(&new_dhrs, &hdr.dh)?.as_ref(), kem_ss2.as_ref())?;
        let snd_kem = kem_ss2.is_some();
        let rcv_kem = kem_ss.is_some();
        let enable_kem = snd_kem || rcv_kem || new_kem.is_some();
        self.support_kem =
            self.support_kem || (self.version.current >= PQ_RATCHET_E2E_VERSION && enable_kem);
        self.enable_kem = enable_kem;
        self.snd_kem = snd_kem;
        self.rcv_kem = rcv_kem;
        self.kem = new_kem;
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

    /// Reference `pqRatchetStep`: (receiving chain KEM secret, sending chain KEM secret, new KEM
    /// state). A header without KEM makes us propose a key when PQ encryption is on and we have
    /// none (and drops our KEM state otherwise); a header with KEM decapsulates an acceptance
    /// with our key and, with PQ encryption on, accepts the peer's key with a fresh
    /// encapsulation and a new key pair of ours.
    #[allow(clippy::type_complexity)]
    fn pq_ratchet_step(
        &self,
        kem: Option<&KemParams>,
    ) -> Result<
        (
            Option<KemSharedKey>,
            Option<KemSharedKey>,
            Option<RatchetKem>,
        ),
        RatchetError,
    > {
        let pq_on = self.enable_kem && self.version.current >= PQ_RATCHET_E2E_VERSION;
        let Some(kem) = kem else {
            return Ok(match &self.kem {
                None if pq_on => (
                    None,
                    None,
                    Some(RatchetKem {
                        own: sntrup761::keypair(),
                        accepted: None,
                    }),
                ),
                _ => (None, None, None),
            });
        };
        let (ss, peer_key) = match kem {
            KemParams::Proposed { key } => (None, kem_public(key)?),
            KemParams::Accepted { ct, key } => {
                let peer_key = kem_public(key)?;
                let ct = kem_ciphertext(ct)?;
                let own = self.kem.as_ref().ok_or(RatchetError::KemState)?;
                (Some(sntrup761::decapsulate(&ct, &own.own.secret)), peer_key)
            }
        };
        if !pq_on {
            return Ok((ss, None, None));
        }
        let (ct2, ss2) = sntrup761::encapsulate(&peer_key);
        let own = sntrup761::keypair();
        let accepted = KemAccepted {
            peer_key,
            shared: ss2.clone(),
            ct: ct2,
        };
        Ok((
            ss,
            Some(ss2),
            Some(RatchetKem {
                own,
                accepted: Some(accepted),
            }),
        ))
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
    /// Format 1 followed by the PQ state; written only when there is some.
    const STATE_FORMAT_PQ: u8 = 2;

    fn has_pq_state(&self) -> bool {
        self.kem.is_some() || self.support_kem || self.enable_kem || self.snd_kem || self.rcv_kem
    }

    /// Serialises the whole state (including skipped keys). Contains secrets: store it only in
    /// the client database. A ratchet that never used PQ keeps the format-1 bytes.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        let pq = self.has_pq_state();
        let mut out = Zeroizing::new(Vec::with_capacity(if pq { 6000 } else { 512 }));
        out.push(if pq {
            Self::STATE_FORMAT_PQ
        } else {
            Self::STATE_FORMAT
        });
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
        if pq {
            out.push(
                u8::from(self.support_kem)
                    | u8::from(self.enable_kem) << 1
                    | u8::from(self.snd_kem) << 2
                    | u8::from(self.rcv_kem) << 3,
            );
            match &self.kem {
                None => out.push(b'0'),
                Some(k) => {
                    out.push(b'1');
                    out.extend_from_slice(k.own.secret.as_bytes());
                    match &k.accepted {
                        None => out.push(b'0'),
                        Some(a) => {
                            out.push(b'1');
                            out.extend_from_slice(a.peer_key.as_bytes());
                            out.extend_from_slice(a.shared.as_bytes());
                            out.extend_from_slice(a.ct.as_bytes());
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Parses [`Ratchet::to_bytes`] output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Ratchet, RatchetError> {
        let c = |_| RatchetError::CorruptState("truncated");
        let mut p = Parser::new(bytes);
        let format = p.byte().map_err(c)?;
        if format != Self::STATE_FORMAT && format != Self::STATE_FORMAT_PQ {
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
        let (mut support_kem, mut enable_kem, mut snd_kem, mut rcv_kem) =
            (false, false, false, false);
        let mut kem = None;
        if format == Self::STATE_FORMAT_PQ {
            let flags = p.byte().map_err(c)?;
            if flags > 0x0f {
                return Err(RatchetError::CorruptState("PQ flags"));
            }
            support_kem = flags & 1 != 0;
            enable_kem = flags & 2 != 0;
            snd_kem = flags & 4 != 0;
            rcv_kem = flags & 8 != 0;
            kem = match p.byte().map_err(c)? {
                b'0' => None,
                b'1' => {
                    let secret =
                        KemSecretKey::from_bytes(p.take(sntrup761::SECRET_KEY_LEN).map_err(c)?)
                            .map_err(|_| RatchetError::CorruptState("KEM secret key"))?;
                    let own = KemKeyPair {
                        public: secret.public(),
                        secret,
                    };
                    let accepted = match p.byte().map_err(c)? {
                        b'0' => None,
                        b'1' => {
                            let peer_key = KemPublicKey::from_bytes(
                                p.take(sntrup761::PUBLIC_KEY_LEN).map_err(c)?,
                            )
                            .map_err(|_| RatchetError::CorruptState("KEM key"))?;
                            let shared = KemSharedKey::from_bytes(p.take(32).map_err(c)?)
                                .map_err(|_| RatchetError::CorruptState("KEM secret"))?;
                            let ct = KemCiphertext::from_bytes(
                                p.take(sntrup761::CIPHERTEXT_LEN).map_err(c)?,
                            )
                            .map_err(|_| RatchetError::CorruptState("KEM ciphertext"))?;
                            Some(KemAccepted {
                                peer_key,
                                shared,
                                ct,
                            })
                        }
                        _ => return Err(RatchetError::CorruptState("KEM accepted tag")),
                    };
                    Some(RatchetKem { own, accepted })
                }
                _ => return Err(RatchetError::CorruptState("KEM tag")),
            };
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
            kem,
            support_kem,
            enable_kem,
            snd_kem,
            rcv_kem,
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
    fn malformed_header_kem_is_rejected_and_state_kept() {
        // a proposal whose key is not 1158 bytes
        let (mut j, mut i) = pair();
        j.support_kem = true; // large headers for the KEM fields
        i.support_kem = true;
        i.enable_kem = true;
        let m = j
            .encrypt_inner(
                b"x",
                100,
                None,
                Some(Some(KemParams::Proposed { key: vec![7; 100] })),
            )
            .unwrap();
        let before = i.to_bytes().unwrap();
        assert_eq!(
            i.decrypt(&m),
            Err(RatchetError::Syntax("KEM public key length"))
        );
        assert_eq!(*i.to_bytes().unwrap(), *before);
        // an acceptance with a short ciphertext
        let (mut j, mut i) = pair();
        j.support_kem = true; // large headers for the KEM fields
        let m = j
            .encrypt_inner(
                b"x",
                100,
                None,
                Some(Some(KemParams::Accepted {
                    ct: vec![1; 1038],
                    key: vec![2; sntrup761::PUBLIC_KEY_LEN],
                })),
            )
            .unwrap();
        assert_eq!(
            i.decrypt(&m),
            Err(RatchetError::Syntax("KEM ciphertext length"))
        );
        // a well-formed acceptance although we never proposed a key (reference CERatchetKEMState)
        let (mut j, mut i) = pair();
        j.support_kem = true; // large headers for the KEM fields
        let m = j
            .encrypt_inner(
                b"x",
                100,
                None,
                Some(Some(KemParams::Accepted {
                    ct: vec![1; sntrup761::CIPHERTEXT_LEN],
                    key: vec![2; sntrup761::PUBLIC_KEY_LEN],
                })),
            )
            .unwrap();
        let before = i.to_bytes().unwrap();
        assert_eq!(i.decrypt(&m), Err(RatchetError::KemState));
        assert_eq!(*i.to_bytes().unwrap(), *before);
        // the same message decrypts once the receiver has a KEM key (implicit rejection gives an
        // unrelated secret, so both chains then differ: the body no longer authenticates)
        i.kem = Some(RatchetKem {
            own: sntrup761::keypair(),
            accepted: None,
        });
        assert_eq!(i.decrypt(&m), Err(RatchetError::Decrypt));
    }

    #[test]
    fn pq_state_serialisation_round_trips() {
        let (mut j, mut i) = pair();
        assert_eq!(j.to_bytes().unwrap()[0], Ratchet::STATE_FORMAT);
        j.support_kem = true;
        j.enable_kem = true;
        j.kem = Some(RatchetKem {
            own: sntrup761::keypair(),
            accepted: None,
        });
        let m = j.encrypt(b"pq", 100).unwrap();
        i.support_kem = true;
        i.enable_kem = true;
        assert_eq!(i.decrypt(&m).unwrap(), b"pq");
        let r = i.encrypt(b"ok", 100).unwrap();
        assert_eq!(j.decrypt(&r).unwrap(), b"ok");
        for r in [&i, &j] {
            let bytes = r.to_bytes().unwrap();
            assert_eq!(bytes[0], Ratchet::STATE_FORMAT_PQ);
            let back = Ratchet::from_bytes(&bytes).unwrap();
            assert_eq!(*back.to_bytes().unwrap(), *bytes);
            assert_eq!(back.pq_chains(), r.pq_chains());
            for cut in [bytes.len() - 1, bytes.len() - 33, bytes.len() - 1200] {
                assert!(Ratchet::from_bytes(&bytes[..cut]).is_err());
            }
        }
        // i accepted j's proposal: its state holds an accepted KEM
        assert!(i.kem.as_ref().is_some_and(|k| k.accepted.is_some()));
        assert_eq!(i.pq_chains(), (true, false));
        assert_eq!(j.pq_chains(), (true, true));
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
