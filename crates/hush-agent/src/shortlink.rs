//! Short links (reference §3.9; upstream `Crypto/ShortLink.hs`, `Agent/Protocol.hs`): the
//! link data a queue carries on a v15+ relay, and the client-side crypto around it. Pure code:
//! no I/O (the agent's `*_short_link` methods do the `NEW` / `LKEY` / `LGET`).
//!
//! * Link data = (fixed part, user part). Each part is `signature ‖ smpEncode(data)` (the
//!   signature is a 1-byte-length Ed25519 signature by the link's root key), encrypted as
//!   `nonce(24) ‖ sbEncrypt(key, nonce, part, L)` with L = 2008 (fixed) / 13784 (user), so the
//!   relay stores 2048 and 13824 bytes whatever the content.
//! * Fixed part ([`FixedLinkData`]): agent version range, root key, the full connection link
//!   (binary form), optional entity id. It never changes; `linkKey = SHA3-256(fixed part)`.
//! * User part ([`ConnLinkData`]): the agent range and the application's data (for a contact
//!   address also "direct", extra owner keys and relay links). A contact address can replace it.
//! * Keys: invitation — `HKDF-SHA512("", linkKey, "SimpleXInvLink", 32)`; the relay's link id
//!   is in the link text. Contact — `HKDF-SHA512("", linkKey, "SimpleXContactLink", 56)` =
//!   `linkId(24) ‖ key(32)`, so the link text needs only the link key.
//! * The link text itself is [`hush_proto::address::ConnShortLink`].
//!
//! Decoding checks what the reference checks, in its order, with one error per failure
//! ([`LinkError`]): both parts decrypt, both decode (with the right connection mode), the fixed
//! part hashes to the link key, the root key signed the fixed part, and the root key (or, for a
//! contact address, a valid owner key) signed the user part.

use hush_crypto::hash::{hkdf_sha512, sha3_256};
use hush_crypto::{Ed25519Public, Ed25519Secret, random_nonce, sb_decrypt, sb_encrypt};
use hush_proto::address::{
    ConnReqUriData, ConnShortLink, ConnectionRequestUri, ContactConnType, E2eRatchetParamsUri,
    ProtocolServer, ProtocolType, QueueMode, RatchetKemParams, ServiceScheme, ShortLinkScheme,
    SmpQueueUri,
};
use hush_proto::encoding::{
    DecodeError, Large, Parser, put_bool, put_large, put_short_string, put_word16,
};
use hush_proto::smp::QueueLinkData;
use hush_proto::version::VersionRange;

/// Padded length of the fixed part (2048 − 24 nonce − 16 tag).
pub const FIXED_DATA_PADDED_LEN: usize = 2008;
/// Padded length of the user part (13824 − 24 − 16).
pub const USER_DATA_PADDED_LEN: usize = 13784;

/// Why link data was refused. The reference's agent errors are noted beside each.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// A part does not decrypt (wrong key, tampered or truncated ciphertext): `A_CRYPTO`.
    #[error("link data does not decrypt")]
    Decrypt,
    /// A decrypted part does not decode: `A_MESSAGE`.
    #[error("link data encoding: {0}")]
    Encoding(&'static str),
    /// The fixed part's SHA3-256 is not the link key: `A_LINK "link data hash"`.
    #[error("link data hash")]
    Hash,
    /// The root key did not sign the fixed part: `A_LINK "link data signature"`.
    #[error("link data signature")]
    FixedSignature,
    /// Neither the root key nor an owner signed the user part: `A_LINK "user data signature"`.
    #[error("user data signature")]
    UserSignature,
    /// The owner chain of a contact address is invalid: `A_LINK <reason>`.
    #[error("link owners: {0}")]
    Owners(String),
    /// The link's relay or sender id differs from the queue in its data: `A_LINK "different
    /// address"`.
    #[error("different address")]
    DifferentAddress,
    /// Something does not fit its length prefix or padding.
    #[error("link data too large")]
    TooLarge,
}

fn enc(_: DecodeError) -> LinkError {
    LinkError::Encoding("bad link data")
}

fn too_large<E>(_: E) -> LinkError {
    LinkError::TooLarge
}

// ---------------------------------------------------------------------------------------------
// Binary forms of links (smpEncode of ConnectionRequestUri and its parts)

fn put_vr(out: &mut Vec<u8>, vr: VersionRange) {
    put_word16(out, vr.min());
    put_word16(out, vr.max());
}

fn vr_p(p: &mut Parser<'_>) -> Result<VersionRange, LinkError> {
    let (a, b) = (p.word16().map_err(enc)?, p.word16().map_err(enc)?);
    VersionRange::new(a, b).ok_or(LinkError::Encoding("version range"))
}

fn short(out: &mut Vec<u8>, b: &[u8]) -> Result<(), LinkError> {
    put_short_string(out, b).map_err(too_large)
}

/// `SMPQueueUri` binary: range, server, sender id, dh key, then the queue mode as the reference
/// writes it for the range's minimum version (v4: `M`/`C`; v3, or messaging with max ≥ 3:
/// the "sender can secure" Bool; else nothing).
pub fn put_queue_uri(out: &mut Vec<u8>, q: &SmpQueueUri) -> Result<(), LinkError> {
    let vr = q.client_versions;
    put_vr(out, vr);
    q.server.encode_binary(out);
    short(out, &q.sender_id)?;
    short(out, &q.dh_public_key)?;
    let snd_secure = q.queue_mode == Some(QueueMode::Messaging);
    if vr.min() >= 4 {
        match q.queue_mode {
            Some(QueueMode::Messaging) => out.push(b'M'),
            Some(QueueMode::Contact) => out.push(b'C'),
            None => {}
        }
    } else if vr.min() >= 3 || (vr.max() >= 3 && snd_secure) {
        put_bool(out, snd_secure);
    }
    Ok(())
}

/// `queueModeP`: `M`/`C`, else a Bool (`T` messaging, `F` contact), else none.
fn queue_mode_p(p: &mut Parser<'_>) -> Option<QueueMode> {
    let m = match p.peek() {
        Some(b'M') | Some(b'T') => QueueMode::Messaging,
        Some(b'C') | Some(b'F') => QueueMode::Contact,
        _ => return None,
    };
    let _ = p.byte();
    Some(m)
}

pub fn queue_uri_p(p: &mut Parser<'_>) -> Result<SmpQueueUri, LinkError> {
    let client_versions = vr_p(p)?;
    let server = ProtocolServer::decode_binary(p, ProtocolType::Smp).map_err(enc)?;
    let sender_id = p.short_string().map_err(enc)?.to_vec();
    let dh_public_key = p.short_string().map_err(enc)?.to_vec();
    let queue_mode = queue_mode_p(p);
    Ok(SmpQueueUri {
        client_versions,
        server,
        sender_id,
        dh_public_key,
        queue_mode,
    })
}

fn put_e2e(out: &mut Vec<u8>, e: &E2eRatchetParamsUri) -> Result<(), LinkError> {
    put_vr(out, e.versions);
    short(out, &e.key1)?;
    short(out, &e.key2)?;
    match &e.kem {
        None => out.push(b'0'),
        Some(RatchetKemParams::Proposed { kem_key }) => {
            out.extend_from_slice(b"1P");
            put_large(out, kem_key).map_err(too_large)?;
        }
        Some(RatchetKemParams::Accepted { kem_ct, kem_key }) => {
            out.extend_from_slice(b"1A");
            put_large(out, kem_ct).map_err(too_large)?;
            put_large(out, kem_key).map_err(too_large)?;
        }
    }
    Ok(())
}

fn e2e_p(p: &mut Parser<'_>) -> Result<E2eRatchetParamsUri, LinkError> {
    let versions = vr_p(p)?;
    let key1 = p.short_string().map_err(enc)?.to_vec();
    let key2 = p.short_string().map_err(enc)?.to_vec();
    let kem = p
        .maybe(|p| match p.byte()? {
            b'P' => Ok(RatchetKemParams::Proposed {
                kem_key: p.large()?.to_vec(),
            }),
            b'A' => Ok(RatchetKemParams::Accepted {
                kem_ct: p.large()?.to_vec(),
                kem_key: p.large()?.to_vec(),
            }),
            _ => Err(DecodeError::Invalid("ratchet KEM params")),
        })
        .map_err(enc)?;
    Ok(E2eRatchetParamsUri {
        versions,
        key1,
        key2,
        kem,
    })
}

/// `smpEncode` of a full connection link: `I` data e2e | `C` data, where data = agent range,
/// NonEmpty queue URIs, Maybe (Large client data). The scheme is not encoded.
pub fn encode_conn_req(cr: &ConnectionRequestUri) -> Result<Vec<u8>, LinkError> {
    let mut out = Vec::new();
    let (mode, data, e2e) = match cr {
        ConnectionRequestUri::Invitation { data, e2e } => (b'I', data, Some(e2e)),
        ConnectionRequestUri::Contact { data } => (b'C', data, None),
    };
    out.push(mode);
    put_vr(&mut out, data.agent_versions);
    let n = u8::try_from(data.smp_queues.len()).map_err(too_large)?;
    if n == 0 {
        return Err(LinkError::Encoding("link without queues"));
    }
    out.push(n);
    for q in &data.smp_queues {
        put_queue_uri(&mut out, q)?;
    }
    match &data.client_data {
        None => out.push(b'0'),
        Some(d) => {
            out.push(b'1');
            put_large(&mut out, d.as_bytes()).map_err(too_large)?;
        }
    }
    if let Some(e) = e2e {
        put_e2e(&mut out, e)?;
    }
    Ok(out)
}

/// Parses [`encode_conn_req`]'s form. As the reference does, a queue without a mode in a binary
/// link is a contact queue (the mode was left out only below client version 3).
pub fn conn_req_p(p: &mut Parser<'_>) -> Result<ConnectionRequestUri, LinkError> {
    let mode = p.byte().map_err(enc)?;
    if mode != b'I' && mode != b'C' {
        return Err(LinkError::Encoding("connection mode"));
    }
    let agent_versions = vr_p(p)?;
    let n = p.byte().map_err(enc)?;
    if n == 0 {
        return Err(LinkError::Encoding("link without queues"));
    }
    let mut smp_queues = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let mut q = queue_uri_p(p)?;
        if q.queue_mode.is_none() {
            q.queue_mode = Some(QueueMode::Contact);
        }
        smp_queues.push(q);
    }
    let client_data = p
        .maybe(|p| p.large().map(|d| String::from_utf8_lossy(d).into_owned()))
        .map_err(enc)?;
    let data = ConnReqUriData {
        scheme: ServiceScheme::Simplex,
        agent_versions,
        smp_queues,
        client_data,
    };
    Ok(if mode == b'I' {
        ConnectionRequestUri::Invitation {
            data,
            e2e: e2e_p(p)?,
        }
    } else {
        ConnectionRequestUri::Contact { data }
    })
}

/// Binary `ConnShortLink` (relay links inside a contact address's user data):
/// `I` server linkId key | `C` type server key.
pub fn put_short_link(out: &mut Vec<u8>, l: &ConnShortLink) -> Result<(), LinkError> {
    match l {
        ConnShortLink::Invitation {
            server,
            link_id,
            link_key,
            ..
        } => {
            out.push(b'I');
            server.encode_binary(out);
            short(out, link_id)?;
            short(out, link_key)
        }
        ConnShortLink::Contact {
            conn_type,
            server,
            link_key,
            ..
        } => {
            out.push(b'C');
            out.push(conn_type.char());
            server.encode_binary(out);
            short(out, link_key)
        }
    }
}

pub fn short_link_p(p: &mut Parser<'_>) -> Result<ConnShortLink, LinkError> {
    match p.byte().map_err(enc)? {
        b'I' => Ok(ConnShortLink::Invitation {
            scheme: ShortLinkScheme::Server,
            server: ProtocolServer::decode_binary(p, ProtocolType::Smp).map_err(enc)?,
            link_id: p.short_string().map_err(enc)?.to_vec(),
            link_key: p.short_string().map_err(enc)?.to_vec(),
        }),
        b'C' => {
            let conn_type = ContactConnType::from_char(p.byte().map_err(enc)?)
                .ok_or(LinkError::Encoding("contact address type"))?;
            Ok(ConnShortLink::Contact {
                scheme: ShortLinkScheme::Server,
                conn_type,
                server: ProtocolServer::decode_binary(p, ProtocolType::Smp).map_err(enc)?,
                link_key: p.short_string().map_err(enc)?.to_vec(),
            })
        }
        _ => Err(LinkError::Encoding("connection mode")),
    }
}

// ---------------------------------------------------------------------------------------------
// Link data

/// The fixed part (reference `FixedLinkData`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedLinkData {
    pub agent_versions: VersionRange,
    /// Signs both parts.
    pub root_key: Ed25519Public,
    /// The full link this short link stands for.
    pub conn_req: ConnectionRequestUri,
    pub entity_id: Option<Vec<u8>>,
}

impl FixedLinkData {
    pub fn encode(&self) -> Result<Vec<u8>, LinkError> {
        let mut out = Vec::new();
        put_vr(&mut out, self.agent_versions);
        short(&mut out, &self.root_key.to_spki_der())?;
        out.extend_from_slice(&encode_conn_req(&self.conn_req)?);
        if let Some(id) = &self.entity_id {
            short(&mut out, id)?;
        }
        Ok(out)
    }

    /// Bytes after the optional entity id are ignored (forward compatibility, as upstream).
    pub fn decode(b: &[u8]) -> Result<FixedLinkData, LinkError> {
        let mut p = Parser::new(b);
        let agent_versions = vr_p(&mut p)?;
        let root_key = Ed25519Public::from_spki_der(p.short_string().map_err(enc)?)
            .map_err(|_| LinkError::Encoding("root key is not Ed25519"))?;
        let conn_req = conn_req_p(&mut p)?;
        let entity_id = if p.is_empty() {
            None
        } else {
            p.short_string().ok().map(<[u8]>::to_vec)
        };
        Ok(FixedLinkData {
            agent_versions,
            root_key,
            conn_req,
            entity_id,
        })
    }
}

/// An additional owner of a contact address (reference `OwnerAuth`): its key, authorized by
/// the root key or an earlier owner with a signature over `ownerId ‖ ownerKey SPKI`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerAuth {
    pub owner_id: Vec<u8>,
    pub owner_key: Ed25519Public,
    pub auth_sig: Vec<u8>,
}

impl OwnerAuth {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), LinkError> {
        let mut inner = Vec::new();
        short(&mut inner, &self.owner_id)?;
        short(&mut inner, &self.owner_key.to_spki_der())?;
        short(&mut inner, &self.auth_sig)?;
        short(out, &inner)
    }

    fn parse(p: &mut Parser<'_>) -> Result<OwnerAuth, LinkError> {
        let mut q = Parser::new(p.short_string().map_err(enc)?);
        let owner_id = q.short_string().map_err(enc)?.to_vec();
        let owner_key = Ed25519Public::from_spki_der(q.short_string().map_err(enc)?)
            .map_err(|_| LinkError::Encoding("owner key is not Ed25519"))?;
        let auth_sig = q.short_string().map_err(enc)?.to_vec();
        if auth_sig.len() != 64 {
            return Err(LinkError::Encoding("owner signature"));
        }
        // bytes after the signature: a later extension, ignored
        Ok(OwnerAuth {
            owner_id,
            owner_key,
            auth_sig,
        })
    }
}

/// A contact address's user part (reference `UserContactData`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserContactData {
    /// Connecting with the link's full connection request is allowed.
    pub direct: bool,
    pub owners: Vec<OwnerAuth>,
    /// Chat relays that receive requests for this address.
    pub relays: Vec<ConnShortLink>,
    pub user_data: Vec<u8>,
}

impl UserContactData {
    /// A personal address: direct, no owners, no relays.
    pub fn direct(user_data: &[u8]) -> UserContactData {
        UserContactData {
            direct: true,
            owners: Vec::new(),
            relays: Vec::new(),
            user_data: user_data.to_vec(),
        }
    }
}

/// The user part (reference `ConnLinkData`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnLinkData {
    Invitation {
        agent_versions: VersionRange,
        user_data: Vec<u8>,
    },
    Contact {
        agent_versions: VersionRange,
        data: UserContactData,
    },
}

/// `UserLinkData`: shortString up to 254 bytes, else `\xFF` ‖ Large.
fn put_user_link_data(out: &mut Vec<u8>, d: &[u8]) -> Result<(), LinkError> {
    if d.len() <= 254 {
        short(out, d)
    } else {
        out.push(255);
        put_large(out, d).map_err(too_large)
    }
}

fn user_link_data_p(p: &mut Parser<'_>) -> Result<Vec<u8>, LinkError> {
    if p.peek() == Some(255) {
        let _ = p.byte();
        Ok(p.large().map_err(enc)?.to_vec())
    } else {
        Ok(p.short_string().map_err(enc)?.to_vec())
    }
}

impl ConnLinkData {
    pub fn user_data(&self) -> &[u8] {
        match self {
            ConnLinkData::Invitation { user_data, .. } => user_data,
            ConnLinkData::Contact { data, .. } => &data.user_data,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, LinkError> {
        let mut out = Vec::new();
        match self {
            ConnLinkData::Invitation {
                agent_versions,
                user_data,
            } => {
                out.push(b'I');
                put_vr(&mut out, *agent_versions);
                put_user_link_data(&mut out, user_data)?;
            }
            ConnLinkData::Contact {
                agent_versions,
                data,
            } => {
                out.push(b'C');
                put_vr(&mut out, *agent_versions);
                put_bool(&mut out, data.direct);
                let n = u8::try_from(data.owners.len()).map_err(too_large)?;
                out.push(n);
                for o in &data.owners {
                    o.encode(&mut out)?;
                }
                let n = u8::try_from(data.relays.len()).map_err(too_large)?;
                out.push(n);
                for r in &data.relays {
                    put_short_link(&mut out, r)?;
                }
                put_user_link_data(&mut out, &data.user_data)?;
            }
        }
        Ok(out)
    }

    /// Trailing bytes are ignored (forward compatibility, as upstream).
    pub fn decode(b: &[u8]) -> Result<ConnLinkData, LinkError> {
        let mut p = Parser::new(b);
        match p.byte().map_err(enc)? {
            b'I' => Ok(ConnLinkData::Invitation {
                agent_versions: vr_p(&mut p)?,
                user_data: user_link_data_p(&mut p)?,
            }),
            b'C' => {
                let agent_versions = vr_p(&mut p)?;
                let direct = p.bool().map_err(enc)?;
                let n = p.byte().map_err(enc)?;
                let owners = (0..n)
                    .map(|_| OwnerAuth::parse(&mut p))
                    .collect::<Result<Vec<_>, _>>()?;
                let n = p.byte().map_err(enc)?;
                let relays = (0..n)
                    .map(|_| match short_link_p(&mut p)? {
                        l @ ConnShortLink::Contact { .. } => Ok(l),
                        ConnShortLink::Invitation { .. } => {
                            Err(LinkError::Encoding("relay link is an invitation"))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let user_data = user_link_data_p(&mut p)?;
                Ok(ConnLinkData::Contact {
                    agent_versions,
                    data: UserContactData {
                        direct,
                        owners,
                        relays,
                        user_data,
                    },
                })
            }
            _ => Err(LinkError::Encoding("connection mode")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Keys, signatures, encryption

/// `invShortLinkKdf`: the key of a one-time invitation's link data.
pub fn inv_link_key(link_key: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 32];
    // 32 ≤ 255 × 64: cannot fail
    let _ = hkdf_sha512(b"", link_key, b"SimpleXInvLink", &mut k);
    k
}

/// `contactShortLinkKdf`: (link id, data key) of a contact address.
pub fn contact_link_id_key(link_key: &[u8]) -> ([u8; 24], [u8; 32]) {
    let mut okm = [0u8; 56];
    let _ = hkdf_sha512(b"", link_key, b"SimpleXContactLink", &mut okm);
    let (mut id, mut k) = ([0u8; 24], [0u8; 32]);
    id.copy_from_slice(&okm[..24]);
    k.copy_from_slice(&okm[24..]);
    (id, k)
}

/// `encodeSign`: shortString(signature) ‖ data.
pub fn sign_part(key: &Ed25519Secret, data: &[u8]) -> Vec<u8> {
    let sig = key.sign(data);
    let mut out = Vec::with_capacity(65 + data.len());
    out.push(64);
    out.extend_from_slice(&sig);
    out.extend_from_slice(data);
    out
}

/// Signed (not yet encrypted) link data, and its link key.
#[derive(Clone, Debug)]
pub struct SignedLinkData {
    /// SHA3-256 of the fixed part (before signing).
    pub link_key: [u8; 32],
    pub fixed: Vec<u8>,
    pub user: Vec<u8>,
}

/// `encodeSignLinkData`: both parts signed by `root`.
pub fn sign_link_data(
    root: &Ed25519Secret,
    agent_versions: VersionRange,
    conn_req: &ConnectionRequestUri,
    entity_id: Option<&[u8]>,
    user: &ConnLinkData,
) -> Result<SignedLinkData, LinkError> {
    let fd = FixedLinkData {
        agent_versions,
        root_key: root.public(),
        conn_req: conn_req.clone(),
        entity_id: entity_id.map(<[u8]>::to_vec),
    }
    .encode()?;
    let link_key = sha3_256(&fd);
    Ok(SignedLinkData {
        link_key,
        fixed: sign_part(root, &fd),
        user: sign_part(root, &user.encode()?),
    })
}

/// `encryptData`: nonce ‖ sbEncrypt(key, nonce, part, padded_len).
pub fn encrypt_part(key: &[u8; 32], padded_len: usize, part: &[u8]) -> Result<Vec<u8>, LinkError> {
    let nonce = random_nonce();
    let ct = sb_encrypt(key, &nonce, part, padded_len).map_err(too_large)?;
    let mut out = Vec::with_capacity(24 + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// `encryptLinkData`: the `QueueLinkData` for `NEW` / `LSET`.
pub fn encrypt_link_data(key: &[u8; 32], d: &SignedLinkData) -> Result<QueueLinkData, LinkError> {
    Ok(QueueLinkData {
        fixed: Large::new(encrypt_part(key, FIXED_DATA_PADDED_LEN, &d.fixed)?)
            .map_err(too_large)?,
        user: Large::new(encrypt_part(key, USER_DATA_PADDED_LEN, &d.user)?).map_err(too_large)?,
    })
}

/// Decrypts one part into (signature, signed bytes).
fn decrypt_part(key: &[u8; 32], d: &[u8]) -> Result<(Vec<u8>, Vec<u8>), LinkError> {
    let (nonce, ct) = d.split_at_checked(24).ok_or(LinkError::Encoding("nonce"))?;
    let nonce: [u8; 24] = nonce.try_into().map_err(|_| LinkError::Encoding("nonce"))?;
    let plain = sb_decrypt(key, &nonce, ct).map_err(|_| LinkError::Decrypt)?;
    let mut p = Parser::new(&plain);
    let sig = p.short_string().map_err(enc)?.to_vec();
    Ok((sig, p.tail().to_vec()))
}

fn signed_by(k: &Ed25519Public, sig: &[u8], msg: &[u8]) -> bool {
    k.verify(msg, sig).is_ok()
}

/// Reference `validateLinkOwners`: no owner uses the root key, no duplicate id or key, each
/// authorized by the root key or an earlier owner.
pub fn validate_owners(root: &Ed25519Public, owners: &[OwnerAuth]) -> Result<(), LinkError> {
    for (i, o) in owners.iter().enumerate() {
        let prev = owners.get(..i).unwrap_or_default();
        let id = hush_proto::encoding::base64url_encode_unpadded(&o.owner_id);
        if o.owner_key == *root {
            return Err(LinkError::Owners(format!(
                "owner key for ID {id} matches root key"
            )));
        }
        if prev
            .iter()
            .any(|p| p.owner_id == o.owner_id || p.owner_key == o.owner_key)
        {
            return Err(LinkError::Owners(format!("duplicate owner key or ID {id}")));
        }
        let mut msg = o.owner_id.clone();
        msg.extend_from_slice(&o.owner_key.to_spki_der());
        if !(signed_by(root, &o.auth_sig, &msg)
            || prev
                .iter()
                .any(|p| signed_by(&p.owner_key, &o.auth_sig, &msg)))
        {
            return Err(LinkError::Owners(format!(
                "invalid authorization of owner ID {id}"
            )));
        }
    }
    Ok(())
}

/// `decryptLinkData`: decrypts, decodes and verifies link data read with `LKEY` / `LGET`.
/// `invitation` says which kind the link is (the connection link inside and the user part
/// must be of that kind).
pub fn decrypt_link_data(
    link_key: &[u8],
    key: &[u8; 32],
    d: &QueueLinkData,
    invitation: bool,
) -> Result<(FixedLinkData, ConnLinkData), LinkError> {
    let (sig1, fd) = decrypt_part(key, d.fixed.as_bytes())?;
    let (sig2, md) = decrypt_part(key, d.user.as_bytes())?;
    let fixed = FixedLinkData::decode(&fd)?;
    if matches!(fixed.conn_req, ConnectionRequestUri::Invitation { .. }) != invitation {
        return Err(LinkError::Encoding("connection mode"));
    }
    let user = ConnLinkData::decode(&md)?;
    if matches!(user, ConnLinkData::Invitation { .. }) != invitation {
        return Err(LinkError::Encoding("connection mode"));
    }
    if !hush_crypto::ct_eq(&sha3_256(&fd), link_key) {
        return Err(LinkError::Hash);
    }
    if !signed_by(&fixed.root_key, &sig1, &fd) {
        return Err(LinkError::FixedSignature);
    }
    match &user {
        ConnLinkData::Invitation { .. } => {
            if !signed_by(&fixed.root_key, &sig2, &md) {
                return Err(LinkError::UserSignature);
            }
        }
        ConnLinkData::Contact { data, .. } => {
            validate_owners(&fixed.root_key, &data.owners)?;
            if !(signed_by(&fixed.root_key, &sig2, &md)
                || data
                    .owners
                    .iter()
                    .any(|o| signed_by(&o.owner_key, &sig2, &md)))
            {
                return Err(LinkError::UserSignature);
            }
        }
    }
    Ok((fixed, user))
}

/// The agent's check after decrypting (upstream `getConnShortLink'`): the link's relay (first
/// host) must be one of the hosts of the first queue in the data and `LNK`'s sender id must be
/// that queue's; the queue then takes the link's server address when it differs.
pub fn check_link_address(
    link_server: &ProtocolServer,
    sender_id: &[u8],
    mut conn_req: ConnectionRequestUri,
) -> Result<ConnectionRequestUri, LinkError> {
    let data = match &mut conn_req {
        ConnectionRequestUri::Invitation { data, .. } | ConnectionRequestUri::Contact { data } => {
            data
        }
    };
    let q = data
        .smp_queues
        .first_mut()
        .ok_or(LinkError::Encoding("link without queues"))?;
    let same_host = link_server
        .hosts()
        .first()
        .is_some_and(|h| q.server.hosts().contains(h));
    if !same_host || q.sender_id != sender_id {
        return Err(LinkError::DifferentAddress);
    }
    if q.server != *link_server {
        q.server = link_server.clone();
    }
    Ok(conn_req)
}

/// The reference client's preset SMP servers (SimpleX Chat and Flux; simplex-chat
/// `Operators/Presets.hs` `allPresetServers`). The app leaves port and key hash out of short
/// links on these servers; they are restored from this list before connecting.
pub const PRESET_SMP_SERVERS: [&str; 21] = [
    "smp://0YuTwO05YJWS8rkjn9eLJDjQhFKvIYd8d4xG8X1blIU=@smp8.simplex.im,beccx4yfxxbvyhqypaavemqurytl6hozr47wfc7uuecacjqdvwpw2xid.onion",
    "smp://SkIkI6EPd2D63F4xFKfHk7I1UGZVNn6k1QWZ5rcyr6w=@smp9.simplex.im,jssqzccmrcws6bhmn77vgmhfjmhwlyr3u7puw4erkyoosywgl67slqqd.onion",
    "smp://6iIcWT_dF2zN_w5xzZEY7HI2Prbh3ldP07YTyDexPjE=@smp10.simplex.im,rb2pbttocvnbrngnwziclp2f4ckjq65kebafws6g4hy22cdaiv5dwjqd.onion",
    "smp://1OwYGt-yqOfe2IyVHhxz3ohqo3aCCMjtB-8wn4X_aoY=@smp11.simplex.im,6ioorbm6i3yxmuoezrhjk6f6qgkc4syabh7m3so74xunb5nzr4pwgfqd.onion",
    "smp://UkMFNAXLXeAAe0beCa4w6X_zp18PwxSaSjY17BKUGXQ=@smp12.simplex.im,ie42b5weq7zdkghocs3mgxdjeuycheeqqmksntj57rmejagmg4eor5yd.onion",
    "smp://enEkec4hlR3UtKx2NMpOUK_K4ZuDxjWBO1d9Y4YXVaA=@smp14.simplex.im,aspkyu2sopsnizbyfabtsicikr2s4r3ti35jogbcekhm3fsoeyjvgrid.onion",
    "smp://h--vW7ZSkXPeOUpfxlFGgauQmXNFOzGoizak7Ult7cw=@smp15.simplex.im,oauu4bgijybyhczbnxtlggo6hiubahmeutaqineuyy23aojpih3dajad.onion",
    "smp://hejn2gVIqNU6xjtGM3OwQeuk8ZEbDXVJXAlnSBJBWUA=@smp16.simplex.im,p3ktngodzi6qrf7w64mmde3syuzrv57y55hxabqcq3l5p6oi7yzze6qd.onion",
    "smp://ZKe4uxF4Z_aLJJOEsC-Y6hSkXgQS5-oc442JQGkyP8M=@smp17.simplex.im,ogtwfxyi3h2h5weftjjpjmxclhb5ugufa5rcyrmg7j4xlch7qsr5nuqd.onion",
    "smp://PtsqghzQKU83kYTlQ1VKg996dW4Cw4x_bvpKmiv8uns=@smp18.simplex.im,lyqpnwbs2zqfr45jqkncwpywpbtq7jrhxnib5qddtr6npjyezuwd3nqd.onion",
    "smp://N_McQS3F9TGoh4ER0QstUf55kGnNSd-wXfNPZ7HukcM=@smp19.simplex.im,i53bbtoqhlc365k6kxzwdp5w3cdt433s7bwh3y32rcbml2vztiyyz5id.onion",
    "smp://u2dS9sG8nMNURyZwqASV4yROM28Er0luVTx5X1CsMrU=@smp4.simplex.im,o5vmywmrnaxalvz6wi3zicyftgio6psuvyniis6gco6bp6ekl4cqj4id.onion",
    "smp://hpq7_4gGJiilmz5Rf-CswuU5kZGkm_zOIooSw6yALRg=@smp5.simplex.im,jjbyvoemxysm7qxap7m5d5m35jzv5qq6gnlv7s4rsn7tdwwmuqciwpid.onion",
    "smp://PQUV2eL0t7OStZOoAsPEV2QYWt4-xilbakvGUGOItUo=@smp6.simplex.im,bylepyau3ty4czmn77q4fglvperknl4bi2eb2fdy2bh4jxtf32kf73yd.onion",
    "smp://xQW_ufMkGE20UrTlBl8QqceG1tbuylXhr9VOLPyRJmw=@smp1.simplexonflux.com,qb4yoanyl4p7o33yrknv4rs6qo7ugeb2tu2zo66sbebezs4cpyosarid.onion",
    "smp://LDnWZVlAUInmjmdpQQoIo6FUinRXGe0q3zi5okXDE4s=@smp2.simplexonflux.com,yiqtuh3q4x7hgovkomafsod52wvfjucdljqbbipg5sdssnklgongxbqd.onion",
    "smp://1jne379u7IDJSxAvXbWb_JgoE7iabcslX0LBF22Rej0=@smp3.simplexonflux.com,a5lm4k7ufei66cdck6fy63r4lmkqy3dekmmb7jkfdm5ivi6kfaojshad.onion",
    "smp://xmAmqj75I9mWrUihLUlI0ZuNLXlIwFIlHRq5Pb6cHAU=@smp4.simplexonflux.com,qpcz2axyy66u26hfdd2e23uohcf3y6c36mn7dcuilcgnwjasnrvnxjqd.onion",
    "smp://rWvBYyTamuRCBYb_KAn-nsejg879ndhiTg5Sq3k0xWA=@smp5.simplexonflux.com,4ao347qwiuluyd45xunmii4skjigzuuox53hpdsgbwxqafd4yrticead.onion",
    "smp://PN7-uqLBToqlf1NxHEaiL35lV2vBpXq8Nj8BW11bU48=@smp6.simplexonflux.com,hury6ot3ymebbr2535mlp7gcxzrjpc6oujhtfxcfh2m4fal4xw5fq6qd.onion",
    "smp://8Af90NX2TTkKEJAF1RCg69P_Odg2Z-6_J6DOKUqK3rQ=@smp7.simplex.im,dbxqutskmmbkbrs7ofi7pmopeyhgi5cxbjbh4ummgmep4r6bz4cbrcid.onion",
];

/// [`PRESET_SMP_SERVERS`] parsed.
pub fn preset_servers() -> Vec<ProtocolServer> {
    PRESET_SMP_SERVERS
        .iter()
        .filter_map(|s| ProtocolServer::parse(s).ok())
        .collect()
}

/// Whether `s` looks like a short link (`simplex:/i#`, `https://host/a#`, …) rather than a full
/// one (`…/invitation#/?…`, `…/contact#/?…`).
pub fn is_short_link(s: &str) -> bool {
    ConnShortLink::parse(s.trim()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hush_proto::encoding::base64url_encode_unpadded;

    fn contact_req() -> ConnectionRequestUri {
        // haskell-test-literal: ConnectionRequestTests.hs (vectors/addresses.json
        // connection_link.contact.simplex)
        ConnectionRequestUri::parse("simplex:/contact#/?v=2-7&smp=smp%3A%2F%2F1234-w%3D%3D%40smp.simplex.im%3A5223%2F3456-w%3D%3D%23%2F%3Fv%3D1-4%26dh%3DMCowBQYDK2VuAyEAjiswwI3O_NlS8Fk3HJUW870EY2bAwmttMBsvRB9eV3o%253D%26q%3Dm%26k%3Ds%26srv%3Djjbyvoemxysm7qxap7m5d5m35jzv5qq6gnlv7s4rsn7tdwwmuqciwpid.onion").unwrap()
    }

    fn inv_req() -> ConnectionRequestUri {
        // haskell-test-literal: vectors/addresses.json connection_link.invitation.simplex
        ConnectionRequestUri::parse("simplex:/invitation#/?v=2-7&smp=smp%3A%2F%2F1234-w%3D%3D%40smp.simplex.im%3A5223%2F3456-w%3D%3D%23%2F%3Fv%3D1-4%26dh%3DMCowBQYDK2VuAyEAjiswwI3O_NlS8Fk3HJUW870EY2bAwmttMBsvRB9eV3o%253D%26q%3Dm%26k%3Ds%26srv%3Djjbyvoemxysm7qxap7m5d5m35jzv5qq6gnlv7s4rsn7tdwwmuqciwpid.onion&e2e=v%3D1%26x3dh%3DMEIwBQYDK2VvAzkAmKuSYeQ_m0SixPDS8Wq8VBaTS1cW-Lp0n0h4Diu-kUpR-qXx4SDJ32YGEFoGFGSbGPry5Ychr6U%3D%2CMEIwBQYDK2VvAzkAmKuSYeQ_m0SixPDS8Wq8VBaTS1cW-Lp0n0h4Diu-kUpR-qXx4SDJ32YGEFoGFGSbGPry5Ychr6U%3D").unwrap()
    }

    fn b64(s: &str) -> Vec<u8> {
        hush_proto::encoding::base64url_decode(s).unwrap()
    }

    /// The binary contact link, derived by hand from upstream `Agent/Protocol.hs`
    /// (`Encoding ConnectionRequestUri`, `ConnReqUriData`, `SMPQueueUri`) and
    /// `Protocol.hs` (`Encoding ProtocolServer`): no Haskell test literal exists for it.
    #[test]
    fn contact_conn_req_binary_by_hand() {
        let mut want = Vec::new();
        want.push(b'C'); // CMContact
        want.extend_from_slice(&[0, 2, 0, 7]); // agent range 2-7 (two Word16)
        want.push(1); // NonEmpty: one queue
        want.extend_from_slice(&[0, 1, 0, 4]); // client range 1-4
        want.push(2); // hosts: NonEmpty of 2
        want.push(14);
        want.extend_from_slice(b"smp.simplex.im");
        want.push(62);
        want.extend_from_slice(b"jjbyvoemxysm7qxap7m5d5m35jzv5qq6gnlv7s4rsn7tdwwmuqciwpid.onion");
        want.push(4);
        want.extend_from_slice(b"5223"); // port
        let kh = b64("1234-w==");
        want.push(kh.len() as u8);
        want.extend_from_slice(&kh);
        let sid = b64("3456-w==");
        want.push(sid.len() as u8);
        want.extend_from_slice(&sid);
        let dh = b64("MCowBQYDK2VuAyEAjiswwI3O_NlS8Fk3HJUW870EY2bAwmttMBsvRB9eV3o=");
        want.push(dh.len() as u8);
        want.extend_from_slice(&dh);
        // min version 1 < 3, max 4 ≥ 3 and a messaging queue: the "sender can secure" Bool
        want.push(b'T');
        want.push(b'0'); // no client data
        let cr = contact_req();
        let bytes = encode_conn_req(&cr).unwrap();
        assert_eq!(bytes, want);
        let mut p = Parser::new(&bytes);
        assert_eq!(conn_req_p(&mut p).unwrap(), cr);
        assert!(p.is_empty());
    }

    #[test]
    fn invitation_conn_req_binary_roundtrip() {
        let cr = inv_req();
        let bytes = encode_conn_req(&cr).unwrap();
        assert_eq!(bytes[0], b'I');
        // e2e params at the end: range 1-1, two X448 SPKI keys (68 bytes), no KEM
        let key = b64(
            "MEIwBQYDK2VvAzkAmKuSYeQ_m0SixPDS8Wq8VBaTS1cW-Lp0n0h4Diu-kUpR-qXx4SDJ32YGEFoGFGSbGPry5Ychr6U=",
        );
        let mut tail = vec![0, 1, 0, 1, key.len() as u8];
        tail.extend_from_slice(&key);
        tail.push(key.len() as u8);
        tail.extend_from_slice(&key);
        tail.push(b'0');
        assert!(bytes.ends_with(&tail));
        let mut p = Parser::new(&bytes);
        assert_eq!(conn_req_p(&mut p).unwrap(), cr);
        assert!(p.is_empty());
    }

    #[test]
    fn queue_without_mode_in_binary_link_is_contact() {
        // v1-2 range: no mode byte is written for a contact queue
        let mut cr = contact_req();
        if let ConnectionRequestUri::Contact { data } = &mut cr {
            data.smp_queues[0].client_versions = VersionRange::new(1, 2).unwrap();
            data.smp_queues[0].queue_mode = Some(QueueMode::Messaging);
        }
        let bytes = encode_conn_req(&cr).unwrap();
        let got = conn_req_p(&mut Parser::new(&bytes)).unwrap();
        assert_eq!(
            got.data().smp_queues[0].queue_mode,
            Some(QueueMode::Contact)
        );
    }

    #[test]
    fn link_key_is_sha3_256_of_fixed_data() {
        // vectors/crypto.json short_link.link_key
        assert_eq!(
            hex::encode(sha3_256(b"fixed data")),
            "bb93e4558dcaddb19c472e1bff08c7aff4b0dc497451845989c3a31664de23de"
        );
    }

    #[test]
    fn kdfs_are_hkdf_sha512_with_the_reference_info_strings() {
        let lk = [7u8; 32];
        let mut want = [0u8; 56];
        hkdf_sha512(b"", &lk, b"SimpleXContactLink", &mut want).unwrap();
        let (id, k) = contact_link_id_key(&lk);
        assert_eq!(&want[..24], &id);
        assert_eq!(&want[24..], &k);
        let mut want = [0u8; 32];
        hkdf_sha512(b"", &lk, b"SimpleXInvLink", &mut want).unwrap();
        assert_eq!(inv_link_key(&lk), want);
        assert_ne!(inv_link_key(&lk)[..], k[..]);
    }

    fn user_contact() -> ConnLinkData {
        ConnLinkData::Contact {
            agent_versions: VersionRange::new(2, 7).unwrap(),
            data: UserContactData::direct(b"some user data"),
        }
    }

    #[test]
    fn user_link_data_long_form() {
        let long = vec![9u8; 300];
        let d = ConnLinkData::Invitation {
            agent_versions: VersionRange::new(2, 7).unwrap(),
            user_data: long.clone(),
        };
        let b = d.encode().unwrap();
        assert_eq!(&b[..8], &[b'I', 0, 2, 0, 7, 255, 1, 44]);
        assert_eq!(ConnLinkData::decode(&b).unwrap().user_data(), &long[..]);
        let short254 = ConnLinkData::Invitation {
            agent_versions: VersionRange::new(2, 7).unwrap(),
            user_data: vec![1; 254],
        };
        assert_eq!(short254.encode().unwrap()[5], 254);
    }

    #[test]
    fn contact_link_data_roundtrip_and_sizes() {
        let root = Ed25519Secret::generate();
        let cr = contact_req();
        let s = sign_link_data(
            &root,
            VersionRange::new(2, 7).unwrap(),
            &cr,
            None,
            &user_contact(),
        )
        .unwrap();
        let (_, k) = contact_link_id_key(&s.link_key);
        let d = encrypt_link_data(&k, &s).unwrap();
        assert_eq!(d.fixed.len(), 2048);
        assert_eq!(d.user.len(), 13824);
        let (fixed, user) = decrypt_link_data(&s.link_key, &k, &d, false).unwrap();
        assert_eq!(fixed.conn_req, cr);
        assert_eq!(fixed.root_key, root.public());
        assert_eq!(user, user_contact());
        // the same data is not an invitation
        assert_eq!(
            decrypt_link_data(&s.link_key, &k, &d, true),
            Err(LinkError::Encoding("connection mode"))
        );
    }

    struct Signed {
        root: Ed25519Secret,
        fd: Vec<u8>,
        link_key: [u8; 32],
    }

    fn fixed(cr: &ConnectionRequestUri) -> Signed {
        let root = Ed25519Secret::generate();
        let fd = FixedLinkData {
            agent_versions: VersionRange::new(2, 7).unwrap(),
            root_key: root.public(),
            conn_req: cr.clone(),
            entity_id: None,
        }
        .encode()
        .unwrap();
        let link_key = sha3_256(&fd);
        Signed { root, fd, link_key }
    }

    fn enc_parts(k: &[u8; 32], fixed: &[u8], user: &[u8]) -> QueueLinkData {
        QueueLinkData {
            fixed: Large::new(encrypt_part(k, FIXED_DATA_PADDED_LEN, fixed).unwrap()).unwrap(),
            user: Large::new(encrypt_part(k, USER_DATA_PADDED_LEN, user).unwrap()).unwrap(),
        }
    }

    fn inv_user() -> ConnLinkData {
        ConnLinkData::Invitation {
            agent_versions: VersionRange::new(2, 7).unwrap(),
            user_data: b"some user data".to_vec(),
        }
    }

    #[test]
    fn invitation_roundtrip() {
        let s = fixed(&inv_req());
        let k = inv_link_key(&s.link_key);
        let d = enc_parts(
            &k,
            &sign_part(&s.root, &s.fd),
            &sign_part(&s.root, &inv_user().encode().unwrap()),
        );
        let (f, u) = decrypt_link_data(&s.link_key, &k, &d, true).unwrap();
        assert_eq!(f.conn_req, inv_req());
        assert_eq!(u.user_data(), b"some user data");
    }

    #[test]
    fn tampered_link_data_is_refused_with_the_specific_error() {
        let s = fixed(&inv_req());
        let k = inv_link_key(&s.link_key);
        let user = inv_user().encode().unwrap();
        let good_fixed = sign_part(&s.root, &s.fd);
        let good_user = sign_part(&s.root, &user);
        let other = Ed25519Secret::generate();

        // fixed part signed by another key (root key in the data unchanged)
        let d = enc_parts(&k, &sign_part(&other, &s.fd), &good_user);
        assert_eq!(
            decrypt_link_data(&s.link_key, &k, &d, true),
            Err(LinkError::FixedSignature)
        );
        // a flipped signature byte
        let mut bad = good_fixed.clone();
        bad[10] ^= 1;
        let d = enc_parts(&k, &bad, &good_user);
        assert_eq!(
            decrypt_link_data(&s.link_key, &k, &d, true),
            Err(LinkError::FixedSignature)
        );
        // user part signed by another key
        let d = enc_parts(&k, &good_fixed, &sign_part(&other, &user));
        assert_eq!(
            decrypt_link_data(&s.link_key, &k, &d, true),
            Err(LinkError::UserSignature)
        );
        // a different link key that derives the data key (reference "link data hash" test)
        let other_lk = [5u8; 32];
        let k2 = inv_link_key(&other_lk);
        let d = enc_parts(&k2, &good_fixed, &good_user);
        assert_eq!(
            decrypt_link_data(&other_lk, &k2, &d, true),
            Err(LinkError::Hash)
        );
        // wrong key: the data does not decrypt
        let d = enc_parts(&k, &good_fixed, &good_user);
        assert_eq!(
            decrypt_link_data(&other_lk, &inv_link_key(&other_lk), &d, true),
            Err(LinkError::Decrypt)
        );
        // contact-address key derivation on invitation data: does not decrypt either
        assert_eq!(
            decrypt_link_data(&s.link_key, &contact_link_id_key(&s.link_key).1, &d, true),
            Err(LinkError::Decrypt)
        );
        // truncated ciphertext
        let mut t = d.clone();
        t.fixed = Large::new(d.fixed.as_bytes()[..2000].to_vec()).unwrap();
        assert_eq!(
            decrypt_link_data(&s.link_key, &k, &t, true),
            Err(LinkError::Decrypt)
        );
        // shorter than a nonce
        t.fixed = Large::new(vec![0u8; 10]).unwrap();
        assert_eq!(
            decrypt_link_data(&s.link_key, &k, &t, true),
            Err(LinkError::Encoding("nonce"))
        );
        // a flipped ciphertext byte
        let mut raw = d.user.as_bytes().to_vec();
        raw[100] ^= 0x80;
        t = d.clone();
        t.user = Large::new(raw).unwrap();
        assert_eq!(
            decrypt_link_data(&s.link_key, &k, &t, true),
            Err(LinkError::Decrypt)
        );
        // truncated plaintext (correctly encrypted): cut inside the connection link
        let cut = sign_part(&s.root, &s.fd[..s.fd.len() - 40]);
        let d = enc_parts(&k, &cut, &good_user);
        assert!(matches!(
            decrypt_link_data(&s.link_key, &k, &d, true),
            Err(LinkError::Encoding(_))
        ));
        // an invitation link whose data holds a contact address
        let c = fixed(&contact_req());
        let kc = inv_link_key(&c.link_key);
        let d = enc_parts(
            &kc,
            &sign_part(&c.root, &c.fd),
            &sign_part(&c.root, &user_contact().encode().unwrap()),
        );
        assert_eq!(
            decrypt_link_data(&c.link_key, &kc, &d, true),
            Err(LinkError::Encoding("connection mode"))
        );
    }

    fn owner(id: &[u8], key: &Ed25519Secret, by: &Ed25519Secret) -> OwnerAuth {
        let mut msg = id.to_vec();
        msg.extend_from_slice(&key.public().to_spki_der());
        OwnerAuth {
            owner_id: id.to_vec(),
            owner_key: key.public(),
            auth_sig: by.sign(&msg).to_vec(),
        }
    }

    #[test]
    fn contact_owners_sign_user_data_and_are_checked() {
        let s = fixed(&contact_req());
        let (_, k) = contact_link_id_key(&s.link_key);
        let (o1, o2, stranger) = (
            Ed25519Secret::generate(),
            Ed25519Secret::generate(),
            Ed25519Secret::generate(),
        );
        let with = |owners: Vec<OwnerAuth>| {
            ConnLinkData::Contact {
            agent_versions: VersionRange::new(2, 7).unwrap(),
            data: UserContactData {
                direct: false,
                owners,
                relays: vec![
                    ConnShortLink::parse(
                        "https://localhost/a#4AkRDmhf64tdRlN406g8lJRg5OCmhD6ynIhi6glOcCM?p=7001&c=LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI",
                    )
                    .unwrap(),
                ],
                user_data: b"group".to_vec(),
            },
        }
        };
        let fixed_part = sign_part(&s.root, &s.fd);
        // o1 by root, o2 by o1; user data signed by o2
        let ok = with(vec![owner(b"1", &o1, &s.root), owner(b"2", &o2, &o1)]);
        let d = enc_parts(&k, &fixed_part, &sign_part(&o2, &ok.encode().unwrap()));
        let (_, u) = decrypt_link_data(&s.link_key, &k, &d, false).unwrap();
        assert_eq!(u, ok);
        // signed by a key that is not an owner
        let d = enc_parts(
            &k,
            &fixed_part,
            &sign_part(&stranger, &ok.encode().unwrap()),
        );
        assert_eq!(
            decrypt_link_data(&s.link_key, &k, &d, false),
            Err(LinkError::UserSignature)
        );
        // an owner authorized by a stranger
        let bad = with(vec![owner(b"1", &o1, &stranger)]);
        let d = enc_parts(&k, &fixed_part, &sign_part(&s.root, &bad.encode().unwrap()));
        assert_eq!(
            decrypt_link_data(&s.link_key, &k, &d, false),
            Err(LinkError::Owners(
                "invalid authorization of owner ID MQ".into()
            ))
        );
        // duplicate owner id
        let dup = with(vec![owner(b"1", &o1, &s.root), owner(b"1", &o2, &s.root)]);
        let d = enc_parts(&k, &fixed_part, &sign_part(&s.root, &dup.encode().unwrap()));
        assert_eq!(
            decrypt_link_data(&s.link_key, &k, &d, false),
            Err(LinkError::Owners("duplicate owner key or ID MQ".into()))
        );
    }

    #[test]
    fn link_address_must_match_the_queue() {
        let cr = contact_req();
        let q = cr.data().smp_queues[0].clone();
        let sid = q.sender_id.clone();
        // same relay (first host), same sender id: accepted, the link's address is used
        let srv = ProtocolServer::parse("smp://1234-w==@smp.simplex.im:5223").unwrap();
        let got = check_link_address(&srv, &sid, cr.clone()).unwrap();
        assert_eq!(got.data().smp_queues[0].server, srv);
        assert_eq!(
            check_link_address(&srv, b"another sender id", cr.clone()),
            Err(LinkError::DifferentAddress)
        );
        let elsewhere = ProtocolServer::parse("smp://1234-w==@smp.example.org:5223").unwrap();
        assert_eq!(
            check_link_address(&elsewhere, &sid, cr),
            Err(LinkError::DifferentAddress)
        );
    }

    #[test]
    fn presets_restore_app_links() {
        let presets = preset_servers();
        assert_eq!(presets.len(), PRESET_SMP_SERVERS.len());
        let l = ConnShortLink::parse(
            "https://smp11.simplex.im/a#MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY",
        )
        .unwrap()
        .restore(&presets);
        assert_eq!(
            base64url_encode_unpadded(l.server().key_hash()),
            "1OwYGt-yqOfe2IyVHhxz3ohqo3aCCMjtB-8wn4X_aoY"
        );
        assert!(is_short_link(" https://smp11.simplex.im/a#MDEy "));
        assert!(!is_short_link(&contact_req().to_text()));
    }
}
