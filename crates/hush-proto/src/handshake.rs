//! SMP and NTF transport handshake messages (reference §2.4, §5.1), sans-IO.
//!
//! Each hello travels as the whole content of one padded, unbatched, unencrypted block. Every
//! decoder here ignores bytes after the last field it knows (the reference's extension point:
//! `getHandshake` parses with `parseOnly`, which does not require the end of input), so use
//! [`Decode::decode`] on a [`Parser`] or the `decode` associated functions, not
//! [`Decode::from_bytes`] (which rejects trailing bytes).
//!
//! Certificates and signed keys are carried as opaque DER bytes: checking them is the job of
//! `hush-transport` / `hush-crypto`. The only key this module interprets is the client's
//! X25519 hello key, whose SPKI form is fixed (44 bytes), because its presence has to be
//! decided while parsing.

use crate::encoding::{
    Decode, DecodeError, Encode, EncodeError, Large, Parser, ShortString, put_bool, put_word16,
};
use crate::version::{VersionRange, ntf_version, smp_version};
use thiserror::Error;

/// SMP version from which the server hello carries a signed session key and the client hello
/// may carry a DH key (`authCmdsSMPVersion`).
const SMP_AUTH_CMDS_VERSION: u16 = smp_version::AUTH_CMDS;
/// SMP version from which the client hello has the `proxyServer` flag.
const SMP_PROXY_SERVER_HANDSHAKE_VERSION: u16 = smp_version::PROXY_SERVER_HANDSHAKE;
/// SMP version from which the client hello has the optional service field.
const SMP_SERVICE_CERTS_VERSION: u16 = smp_version::SERVICE_CERTS;
/// NTF version from which the server hello carries the signed session key.
const NTF_AUTH_BATCH_CMDS_VERSION: u16 = ntf_version::AUTH_BATCH_CMDS;

/// DER prefix of an X25519 SubjectPublicKeyInfo (`SEQUENCE { SEQUENCE { OID 1.3.101.110 },
/// BIT STRING }`), followed by the 32 raw key bytes.
pub const X25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
];

/// Encodes a raw X25519 public key as its 44-byte SPKI DER.
pub fn x25519_spki(key: &[u8; 32]) -> [u8; 44] {
    let mut out = [0u8; 44];
    out[..12].copy_from_slice(&X25519_SPKI_PREFIX);
    out[12..].copy_from_slice(key);
    out
}

/// Extracts the raw key from a 44-byte X25519 SPKI DER.
pub fn x25519_from_spki(der: &[u8]) -> Option<[u8; 32]> {
    let key = der.strip_prefix(&X25519_SPKI_PREFIX[..])?;
    key.try_into().ok()
}

/// Why a [`CertChain`] cannot be built.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CertChainError {
    #[error("empty certificate chain")]
    Empty,
    #[error("{0} certificates (at most 255)")]
    TooMany(usize),
    #[error("certificate: {0}")]
    Cert(EncodeError),
}

/// A certificate chain as sent in hellos: `NonEmpty Large` (1-byte count ≥ 1, then each DER
/// certificate with a Word16 length), leaf first. At most 255 certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertChain(Vec<Large>);

impl CertChain {
    /// Builds a chain from DER certificates; fails when empty, over 255 certificates, or when
    /// a certificate is over 65535 bytes.
    pub fn new<I, C>(certs: I) -> Result<Self, CertChainError>
    where
        I: IntoIterator<Item = C>,
        C: Into<Vec<u8>>,
    {
        let certs = certs
            .into_iter()
            .map(|c| Large::new(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(CertChainError::Cert)?;
        match certs.len() {
            0 => Err(CertChainError::Empty),
            1..=255 => Ok(CertChain(certs)),
            n => Err(CertChainError::TooMany(n)),
        }
    }

    pub fn certs(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.0.iter().map(|c| c.as_bytes())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false (the chain is non-empty by construction); present for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// DER certificates as owned vectors.
    pub fn to_vecs(&self) -> Vec<Vec<u8>> {
        self.certs().map(<[u8]>::to_vec).collect()
    }
}

impl Encode for CertChain {
    fn encode(&self, out: &mut Vec<u8>) {
        // 1..=255 certificates, checked at construction.
        out.push(self.0.len() as u8);
        for c in &self.0 {
            c.encode(out);
        }
    }
}

impl Decode for CertChain {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        Ok(CertChain(p.non_empty(Large::decode)?))
    }
}

/// A certificate chain plus a key signed by the chain's leaf key (`CertChainPubKey`): the
/// signed key is the DER of an X.509 `SignedExact` over an SPKI (reference §2.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertChainPubKey {
    pub cert_chain: CertChain,
    pub signed_key: Large,
}

impl Encode for CertChainPubKey {
    fn encode(&self, out: &mut Vec<u8>) {
        self.cert_chain.encode(out);
        self.signed_key.encode(out);
    }
}

impl Decode for CertChainPubKey {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        let cert_chain = CertChain::decode(p)?;
        let signed_key = Large::decode(p)?;
        Ok(CertChainPubKey {
            cert_chain,
            signed_key,
        })
    }
}

/// Runs `f` and rewinds the parser if it fails (attoparsec's `optional`).
fn optional<'a, T>(
    p: &mut Parser<'a>,
    f: impl FnOnce(&mut Parser<'a>) -> Result<T, DecodeError>,
) -> Option<T> {
    let saved = p.clone();
    match f(p) {
        Ok(v) => Some(v),
        Err(_) => {
            *p = saved;
            None
        }
    }
}

/// Parses every field of a hello and ignores whatever follows.
fn decode_ignoring_tail<T>(
    bytes: &[u8],
    f: impl FnOnce(&mut Parser<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let mut p = Parser::new(bytes);
    f(&mut p)
}

/// SMP server hello (server → client, first message after TLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmpServerHello {
    pub versions: VersionRange,
    pub session_id: ShortString,
    /// Cert chain (same as TLS) + X25519 session key signed by the leaf key. Only encoded when
    /// `versions.max() >= 7`; parsed optionally there (absent or malformed → `None`).
    pub auth: Option<CertChainPubKey>,
}

impl SmpServerHello {
    /// Parses a hello block's content, ignoring trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_ignoring_tail(bytes, <Self as Decode>::decode)
    }
}

impl Encode for SmpServerHello {
    fn encode(&self, out: &mut Vec<u8>) {
        self.versions.encode(out);
        self.session_id.encode(out);
        if self.versions.max() >= SMP_AUTH_CMDS_VERSION
            && let Some(a) = &self.auth
        {
            a.encode(out);
        }
    }
}

impl Decode for SmpServerHello {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        let versions = VersionRange::decode(p)?;
        let session_id = ShortString::decode(p)?;
        let auth = if versions.max() >= SMP_AUTH_CMDS_VERSION {
            optional(p, CertChainPubKey::decode)
        } else {
            None
        };
        Ok(SmpServerHello {
            versions,
            session_id,
            auth,
        })
    }
}

/// The role a service declares in the client hello (v16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceRole {
    /// `M`
    Messaging,
    /// `N`
    Notifier,
    /// `P`
    Proxy,
}

impl ServiceRole {
    pub fn tag(self) -> u8 {
        match self {
            ServiceRole::Messaging => b'M',
            ServiceRole::Notifier => b'N',
            ServiceRole::Proxy => b'P',
        }
    }
}

impl Encode for ServiceRole {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.tag());
    }
}

impl Decode for ServiceRole {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        match p.byte()? {
            b'M' => Ok(ServiceRole::Messaging),
            b'N' => Ok(ServiceRole::Notifier),
            b'P' => Ok(ServiceRole::Proxy),
            found => Err(DecodeError::Unexpected {
                expected: "service role M, N or P",
                found,
            }),
        }
    }
}

/// The service field of the client hello: role, the TLS client chain and an Ed25519 key signed
/// by its leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHelloService {
    pub role: ServiceRole,
    pub cert_key: CertChainPubKey,
}

impl Encode for ClientHelloService {
    fn encode(&self, out: &mut Vec<u8>) {
        self.role.encode(out);
        self.cert_key.encode(out);
    }
}

impl Decode for ClientHelloService {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        let role = ServiceRole::decode(p)?;
        let cert_key = CertChainPubKey::decode(p)?;
        Ok(ClientHelloService { role, cert_key })
    }
}

/// SMP client hello (client → server).
///
/// Fields are version dependent (on the *chosen* `version`): `dh_key` only from v7,
/// `proxy_server` only from v14, `service` only from v16. On encode, fields the version does
/// not have are left out; on decode they come back as `None` / `false`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmpClientHello {
    pub version: u16,
    /// SHA-256 of the server's identity (CA) certificate, 32 bytes in practice.
    pub key_hash: ShortString,
    /// Raw X25519 public key, sent as a 44-byte SPKI shortString; absent = zero bytes.
    pub dh_key: Option<[u8; 32]>,
    pub proxy_server: bool,
    pub service: Option<ClientHelloService>,
}

impl SmpClientHello {
    /// Parses a hello block's content, ignoring trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_ignoring_tail(bytes, <Self as Decode>::decode)
    }
}

impl Encode for SmpClientHello {
    fn encode(&self, out: &mut Vec<u8>) {
        put_word16(out, self.version);
        self.key_hash.encode(out);
        if self.version >= SMP_AUTH_CMDS_VERSION
            && let Some(k) = &self.dh_key
        {
            out.push(44);
            out.extend_from_slice(&x25519_spki(k));
        }
        if self.version >= SMP_PROXY_SERVER_HANDSHAKE_VERSION {
            put_bool(out, self.proxy_server);
        }
        if self.version >= SMP_SERVICE_CERTS_VERSION {
            self.service.encode(out);
        }
    }
}

impl Decode for SmpClientHello {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        let version = p.word16()?;
        let key_hash = ShortString::decode(p)?;
        // Optional: an absent key is zero bytes, so the next byte (`T`/`F` from v14, or the
        // end of input) does not parse as a 44-byte X25519 SPKI and the parser rewinds.
        let dh_key = if version >= SMP_AUTH_CMDS_VERSION {
            optional(p, |p| {
                x25519_from_spki(p.short_string()?).ok_or(DecodeError::Invalid("X25519 SPKI"))
            })
        } else {
            None
        };
        let proxy_server = if version >= SMP_PROXY_SERVER_HANDSHAKE_VERSION {
            p.bool()?
        } else {
            false
        };
        let service = if version >= SMP_SERVICE_CERTS_VERSION {
            Option::<ClientHelloService>::decode(p)?
        } else {
            None
        };
        Ok(SmpClientHello {
            version,
            key_hash,
            dh_key,
            proxy_server,
            service,
        })
    }
}

/// Handshake error kinds (reference `HandshakeError`): the one definition in
/// [`crate::error`], under the name this module has always used.
pub use crate::error::HandshakeError as HandshakeErrorKind;
/// Transport error as carried by the third handshake message (reference `TransportError`,
/// text form): the one definition in [`crate::error`].
pub use crate::error::TransportError as HelloTransportError;

/// Optional third SMP handshake message (server → client, only after a service was declared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmpServerHandshakeResponse {
    /// `R` serviceId
    ServiceId(ShortString),
    /// `E` transport error (text form)
    Error(HelloTransportError),
}

impl SmpServerHandshakeResponse {
    /// Parses the block content, ignoring trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_ignoring_tail(bytes, <Self as Decode>::decode)
    }
}

impl Encode for SmpServerHandshakeResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            SmpServerHandshakeResponse::ServiceId(id) => {
                out.push(b'R');
                id.encode(out);
            }
            SmpServerHandshakeResponse::Error(e) => {
                out.push(b'E');
                e.encode(out);
            }
        }
    }
}

impl Decode for SmpServerHandshakeResponse {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        match p.byte()? {
            b'R' => Ok(SmpServerHandshakeResponse::ServiceId(ShortString::decode(
                p,
            )?)),
            b'E' => Ok(SmpServerHandshakeResponse::Error(
                HelloTransportError::decode(p)?,
            )),
            found => Err(DecodeError::Unexpected {
                expected: "R or E",
                found,
            }),
        }
    }
}

/// NTF server hello: like SMP's, but the signed key comes without a cert chain and is
/// mandatory when `versions.max() >= 2` (reference §5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NtfServerHello {
    pub versions: VersionRange,
    pub session_id: ShortString,
    /// DER `SignedExact` over the X25519 SPKI. Must be `Some` when `versions.max() >= 2` for
    /// the encoding to round-trip (encode writes it only then; decode requires it then).
    pub signed_key: Option<Large>,
}

impl NtfServerHello {
    /// Parses a hello block's content, ignoring trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_ignoring_tail(bytes, <Self as Decode>::decode)
    }
}

impl Encode for NtfServerHello {
    fn encode(&self, out: &mut Vec<u8>) {
        self.versions.encode(out);
        self.session_id.encode(out);
        if self.versions.max() >= NTF_AUTH_BATCH_CMDS_VERSION
            && let Some(k) = &self.signed_key
        {
            k.encode(out);
        }
    }
}

impl Decode for NtfServerHello {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        let versions = VersionRange::decode(p)?;
        let session_id = ShortString::decode(p)?;
        let signed_key = if versions.max() >= NTF_AUTH_BATCH_CMDS_VERSION {
            Some(Large::decode(p)?)
        } else {
            None
        };
        Ok(NtfServerHello {
            versions,
            session_id,
            signed_key,
        })
    }
}

/// NTF client hello: chosen version and the server key hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NtfClientHello {
    pub version: u16,
    pub key_hash: ShortString,
}

impl NtfClientHello {
    /// Parses a hello block's content, ignoring trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_ignoring_tail(bytes, <Self as Decode>::decode)
    }
}

impl Encode for NtfClientHello {
    fn encode(&self, out: &mut Vec<u8>) {
        put_word16(out, self.version);
        self.key_hash.encode(out);
    }
}

impl Decode for NtfClientHello {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        let version = p.word16()?;
        let key_hash = ShortString::decode(p)?;
        Ok(NtfClientHello { version, key_hash })
    }
}
