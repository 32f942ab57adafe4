//! SMP v18 commands and broker messages (reference §3.1–§3.3; upstream `Protocol.hs`
//! `encodeProtocol`, `protocolP`, `checkCredentials`, `parseProtocol`).
//!
//! * [`Command`]: everything a client (or proxy / NTF server) sends to a relay.
//! * [`BrokerMsg`]: everything a relay sends back (responses and events).
//!
//! Both have `encode(&self, version) -> Vec<u8>` and `decode(bytes, version)`. Decoding follows
//! the reference's `parseProtocol`: the tag is the bytes before the first space; an unknown tag
//! is [`CommandError::Unknown`], parameters that do not parse (or leave bytes over) are
//! [`CommandError::Syntax`]. A client sending a broker tag (e.g. `OK`) gets `Unknown`.
//!
//! Keys inside commands are X.509 SubjectPublicKeyInfo DER byte strings ([`PublicKeyDer`]); the
//! parser checks they are canonical Ed25519 / Ed448 / X25519 / X448 SPKIs of the algorithm
//! family the field allows (auth keys: Ed25519, Ed448, X25519; DH keys: X25519), as the
//! reference's key decoders do (a wrong key is a syntax error). Signature checks and DH happen
//! in `hush-crypto`.

use crate::address::{BasicAuth, KeyAlgorithm, ProtocolServer, ProtocolType};
use crate::encoding::{
    Decode, DecodeError, Encode, Large, Parser, ShortString, put_bool, put_int64, put_maybe,
};
use crate::error::{CommandError, ErrorType};
use crate::transmission::{AuthorizationKind, Transmission};
use crate::version::{VersionRange, smp_version};

// ---------------------------------------------------------------------------------------------
// Field types

/// A public key as X.509 SubjectPublicKeyInfo DER (shortString on the wire), known to be a
/// canonical Ed25519, Ed448, X25519 or X448 SPKI.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKeyDer(ShortString);

impl PublicKeyDer {
    /// Any of the four algorithms.
    pub fn new(der: impl Into<Vec<u8>>) -> Result<Self, DecodeError> {
        let der = der.into();
        if KeyAlgorithm::of_spki(&der).is_none() {
            return Err(DecodeError::Invalid(
                "not an Ed25519/Ed448/X25519/X448 SPKI",
            ));
        }
        ShortString::new(der)
            .map(PublicKeyDer)
            .map_err(|_| DecodeError::Invalid("key too long"))
    }

    /// A key usable for command authorization (Ed25519, Ed448 or X25519).
    pub fn auth_key(der: impl Into<Vec<u8>>) -> Result<Self, DecodeError> {
        let k = Self::new(der)?;
        match k.algorithm() {
            KeyAlgorithm::X448 => Err(DecodeError::Invalid("X448 is not an auth key")),
            _ => Ok(k),
        }
    }

    /// An X25519 DH key.
    pub fn dh_key(der: impl Into<Vec<u8>>) -> Result<Self, DecodeError> {
        let k = Self::new(der)?;
        match k.algorithm() {
            KeyAlgorithm::X25519 => Ok(k),
            _ => Err(DecodeError::Invalid("not an X25519 key")),
        }
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        // Checked at construction.
        KeyAlgorithm::of_spki(self.0.as_bytes()).unwrap_or(KeyAlgorithm::X25519)
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    fn parse_auth(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        Self::auth_key(p.short_string()?)
    }

    fn parse_dh(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        Self::dh_key(p.short_string()?)
    }
}

impl std::fmt::Debug for PublicKeyDer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKeyDer({:?})", self.algorithm())
    }
}

impl AsRef<[u8]> for PublicKeyDer {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Encode for PublicKeyDer {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out)
    }
}

/// A non-empty list of at most 255 items (`NonEmpty` on the wire: count byte + items).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonEmpty<T>(Vec<T>);

impl<T> NonEmpty<T> {
    pub fn new(v: Vec<T>) -> Option<Self> {
        if v.is_empty() || v.len() > 255 {
            None
        } else {
            Some(NonEmpty(v))
        }
    }

    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<T> {
        self.0
    }

    fn encode_with(&self, out: &mut Vec<u8>, mut f: impl FnMut(&mut Vec<u8>, &T)) {
        // 1..=255 items by construction.
        out.push(self.0.len() as u8);
        for x in &self.0 {
            f(out, x)
        }
    }

    fn parse(
        p: &mut Parser<'_>,
        f: impl FnMut(&mut Parser<'_>) -> Result<T, DecodeError>,
    ) -> Result<Self, DecodeError> {
        p.non_empty(f).map(NonEmpty)
    }
}

/// Short-link data: two opaque ciphertexts (fixed part, user part), each `Large`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct QueueLinkData {
    pub fixed: Large,
    pub user: Large,
}

impl Encode for QueueLinkData {
    fn encode(&self, out: &mut Vec<u8>) {
        self.fixed.encode(out);
        self.user.encode(out);
    }
}

impl Decode for QueueLinkData {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        Ok(QueueLinkData {
            fixed: p.decode()?,
            user: p.decode()?,
        })
    }
}

/// `S` subscribe the creating connection / `C` create only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionMode {
    Subscribe,
    OnlyCreate,
}

impl Encode for SubscriptionMode {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(match self {
            SubscriptionMode::Subscribe => b'S',
            SubscriptionMode::OnlyCreate => b'C',
        })
    }
}

impl Decode for SubscriptionMode {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        match p.byte()? {
            b'S' => Ok(SubscriptionMode::Subscribe),
            b'C' => Ok(SubscriptionMode::OnlyCreate),
            found => Err(DecodeError::Unexpected {
                expected: "S or C",
                found,
            }),
        }
    }
}

/// Queue mode: `M` messaging (sender secures) / `C` contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueMode {
    Messaging,
    Contact,
}

impl Encode for QueueMode {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(match self {
            QueueMode::Messaging => b'M',
            QueueMode::Contact => b'C',
        })
    }
}

impl Decode for QueueMode {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        match p.byte()? {
            b'M' => Ok(QueueMode::Messaging),
            b'C' => Ok(QueueMode::Contact),
            found => Err(DecodeError::Unexpected {
                expected: "M or C",
                found,
            }),
        }
    }
}

/// `NEW`'s queue request data (v15+).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueReqData {
    /// `M` Maybe (senderId, linkData).
    Messaging(Option<(ShortString, QueueLinkData)>),
    /// `C` Maybe (linkId, (senderId, linkData)).
    Contact(Option<(ShortString, ShortString, QueueLinkData)>),
}

impl QueueReqData {
    pub fn mode(&self) -> QueueMode {
        match self {
            QueueReqData::Messaging(_) => QueueMode::Messaging,
            QueueReqData::Contact(_) => QueueMode::Contact,
        }
    }
}

impl Encode for QueueReqData {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            QueueReqData::Messaging(d) => {
                out.push(b'M');
                put_maybe(out, d.as_ref(), |o, (sid, ld)| {
                    sid.encode(o);
                    ld.encode(o)
                });
            }
            QueueReqData::Contact(d) => {
                out.push(b'C');
                put_maybe(out, d.as_ref(), |o, (lid, sid, ld)| {
                    lid.encode(o);
                    sid.encode(o);
                    ld.encode(o)
                });
            }
        }
    }
}

impl Decode for QueueReqData {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        match p.byte()? {
            b'M' => Ok(QueueReqData::Messaging(
                p.maybe(|p| Ok((p.decode()?, p.decode()?)))?,
            )),
            b'C' => Ok(QueueReqData::Contact(
                p.maybe(|p| Ok((p.decode()?, p.decode()?, p.decode()?)))?,
            )),
            found => Err(DecodeError::Unexpected {
                expected: "M or C",
                found,
            }),
        }
    }
}

/// Notifier credentials requested inside `NEW` (v17+).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNtfCreds {
    /// Notifier auth key (Ed25519/Ed448/X25519).
    pub ntf_auth_key: PublicKeyDer,
    /// Recipient's X25519 key for notification metadata.
    pub rcv_ntf_dh_key: PublicKeyDer,
}

/// `NEW` parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewQueueReq {
    pub rcv_auth_key: PublicKeyDer,
    pub rcv_dh_key: PublicKeyDer,
    pub basic_auth: Option<BasicAuth>,
    pub sub_mode: SubscriptionMode,
    /// v15+; at v9–14 only the mode survives (`Messaging(None)` / `Contact(None)`); absent
    /// below v9.
    pub queue_req_data: Option<QueueReqData>,
    /// v17+.
    pub ntf_creds: Option<NewNtfCreds>,
}

impl NewQueueReq {
    /// Queue mode requested (`None` = legacy / unknown).
    pub fn queue_mode(&self) -> Option<QueueMode> {
        self.queue_req_data.as_ref().map(QueueReqData::mode)
    }
}

/// `SEND` flags: only the notification bit exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct MsgFlags {
    pub notification: bool,
}

/// Server-side notifier credentials returned in `IDS` (v17+).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerNtfCreds {
    pub notifier_id: ShortString,
    pub srv_ntf_dh_key: PublicKeyDer,
}

/// `IDS` payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueIdsKeys {
    pub rcv_id: ShortString,
    pub snd_id: ShortString,
    pub srv_dh_key: PublicKeyDer,
    /// v9+ (v9–14 as a Bool: `T` = messaging, `F` = contact).
    pub queue_mode: Option<QueueMode>,
    /// v15+.
    pub link_id: Option<ShortString>,
    /// v16+.
    pub service_id: Option<ShortString>,
    /// v17+.
    pub server_ntf_creds: Option<ServerNtfCreds>,
}

// ---------------------------------------------------------------------------------------------
// Commands

/// Who sends a command (reference `Party`), which decides the credential rules (§3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Party {
    Creator,
    Recipient,
    RecipientService,
    Sender,
    IdleClient,
    LinkClient,
    Notifier,
    NotifierService,
    ProxiedClient,
    ProxyService,
}

/// A command sent to an SMP relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    New(NewQueueReq),
    Sub,
    Subs,
    Key(PublicKeyDer),
    RKey(NonEmpty<PublicKeyDer>),
    LSet {
        link_id: ShortString,
        data: QueueLinkData,
    },
    LDel,
    NKey {
        notifier_key: PublicKeyDer,
        rcv_ntf_dh_key: PublicKeyDer,
    },
    NDel,
    Get,
    Ack(ShortString),
    Off,
    Del,
    Que,
    SKey(PublicKeyDer),
    Send {
        flags: MsgFlags,
        body: Vec<u8>,
    },
    Ping,
    LKey(PublicKeyDer),
    LGet,
    NSub,
    NSubs,
    Prxy {
        server: ProtocolServer,
        basic_auth: Option<BasicAuth>,
    },
    PFwd {
        version: u16,
        /// X25519 key of this forwarded transmission.
        key: PublicKeyDer,
        enc_transmission: Vec<u8>,
    },
    RFwd(Vec<u8>),
}

/// All command tags, for tests and tools.
pub const COMMAND_TAGS: [&str; 24] = [
    "NEW", "SUB", "SUBS", "KEY", "RKEY", "LSET", "LDEL", "NKEY", "NDEL", "GET", "ACK", "OFF",
    "DEL", "QUE", "SKEY", "SEND", "PING", "LKEY", "LGET", "NSUB", "NSUBS", "PRXY", "PFWD", "RFWD",
];

fn syntax<T>(r: Result<T, DecodeError>) -> Result<T, CommandError> {
    r.map_err(|_| CommandError::Syntax)
}

/// Splits `tag ‖ rest` at the first space (the space stays with the rest).
fn split_tag(bytes: &[u8]) -> (&[u8], &[u8]) {
    let n = bytes.iter().position(|&c| c == b' ').unwrap_or(bytes.len());
    bytes.split_at(n)
}

fn put_ss(out: &mut Vec<u8>, s: &ShortString) {
    s.encode(out)
}

impl Command {
    pub fn tag(&self) -> &'static str {
        match self {
            Command::New(_) => "NEW",
            Command::Sub => "SUB",
            Command::Subs => "SUBS",
            Command::Key(_) => "KEY",
            Command::RKey(_) => "RKEY",
            Command::LSet { .. } => "LSET",
            Command::LDel => "LDEL",
            Command::NKey { .. } => "NKEY",
            Command::NDel => "NDEL",
            Command::Get => "GET",
            Command::Ack(_) => "ACK",
            Command::Off => "OFF",
            Command::Del => "DEL",
            Command::Que => "QUE",
            Command::SKey(_) => "SKEY",
            Command::Send { .. } => "SEND",
            Command::Ping => "PING",
            Command::LKey(_) => "LKEY",
            Command::LGet => "LGET",
            Command::NSub => "NSUB",
            Command::NSubs => "NSUBS",
            Command::Prxy { .. } => "PRXY",
            Command::PFwd { .. } => "PFWD",
            Command::RFwd(_) => "RFWD",
        }
    }

    pub fn party(&self) -> Party {
        match self {
            Command::New(_) => Party::Creator,
            Command::Sub
            | Command::Key(_)
            | Command::RKey(_)
            | Command::LSet { .. }
            | Command::LDel
            | Command::NKey { .. }
            | Command::NDel
            | Command::Get
            | Command::Ack(_)
            | Command::Off
            | Command::Del
            | Command::Que => Party::Recipient,
            Command::Subs => Party::RecipientService,
            Command::SKey(_) | Command::Send { .. } => Party::Sender,
            Command::Ping => Party::IdleClient,
            Command::LKey(_) | Command::LGet => Party::LinkClient,
            Command::NSub => Party::Notifier,
            Command::NSubs => Party::NotifierService,
            Command::Prxy { .. } | Command::PFwd { .. } => Party::ProxiedClient,
            Command::RFwd(_) => Party::ProxyService,
        }
    }

    /// Commands that may (in a service session: must) carry a service signature.
    pub fn uses_service_auth(&self) -> bool {
        matches!(self, Command::New(_) | Command::Sub | Command::NSub)
    }

    /// Commands a relay accepts inside `RFWD` (§3.10; others get `CMD PROHIBITED`).
    pub fn allowed_forwarded(&self) -> bool {
        matches!(
            self,
            Command::Send { .. } | Command::SKey(_) | Command::LKey(_) | Command::LGet
        )
    }

    /// The credential rules of §3.1 (reference `checkCredentials`), applied before any store
    /// access. `has_auth` = the transmission's authorization is non-empty.
    pub fn check_credentials(&self, has_auth: bool, entity_id: &[u8]) -> Result<(), CommandError> {
        check_credentials(self.party(), self.tag(), has_auth, entity_id)
    }

    /// Encodes for a peer at `version`. Fields that do not exist at that version are left out
    /// (as the reference does): below v17 `NEW` loses `ntf_creds`, below v15 its link data
    /// (v9–14 keep only the mode as a Bool), below v9 everything after the basic auth.
    pub fn encode(&self, version: u16) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out, version);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>, version: u16) {
        out.extend_from_slice(self.tag().as_bytes());
        match self {
            Command::New(r) => {
                out.push(b' ');
                r.rcv_auth_key.encode(out);
                r.rcv_dh_key.encode(out);
                if version >= smp_version::SND_AUTH_KEY {
                    r.basic_auth.encode(out);
                    r.sub_mode.encode(out);
                    if version >= smp_version::SHORT_LINKS {
                        r.queue_req_data.encode(out);
                        if version >= smp_version::NEW_NTF_CREDS {
                            put_maybe(out, r.ntf_creds.as_ref(), |o, c| {
                                c.ntf_auth_key.encode(o);
                                c.rcv_ntf_dh_key.encode(o)
                            });
                        }
                    } else {
                        put_bool(out, r.queue_mode() == Some(QueueMode::Messaging));
                    }
                } else {
                    if let Some(a) = &r.basic_auth {
                        out.push(b'A');
                        a.encode(out);
                    }
                    r.sub_mode.encode(out);
                }
            }
            Command::Key(k) | Command::SKey(k) | Command::LKey(k) => {
                out.push(b' ');
                k.encode(out)
            }
            Command::RKey(ks) => {
                out.push(b' ');
                ks.encode_with(out, |o, k| k.encode(o))
            }
            Command::LSet { link_id, data } => {
                out.push(b' ');
                link_id.encode(out);
                data.encode(out)
            }
            Command::NKey {
                notifier_key,
                rcv_ntf_dh_key,
            } => {
                out.push(b' ');
                notifier_key.encode(out);
                rcv_ntf_dh_key.encode(out)
            }
            Command::Ack(id) => {
                out.push(b' ');
                id.encode(out)
            }
            Command::Send { flags, body } => {
                out.push(b' ');
                put_bool(out, flags.notification);
                out.push(b' ');
                out.extend_from_slice(body)
            }
            Command::Prxy { server, basic_auth } => {
                out.push(b' ');
                server.encode_binary(out);
                basic_auth.encode(out)
            }
            Command::PFwd {
                version: v,
                key,
                enc_transmission,
            } => {
                out.push(b' ');
                v.encode(out);
                key.encode(out);
                out.extend_from_slice(enc_transmission)
            }
            Command::RFwd(t) => {
                out.push(b' ');
                out.extend_from_slice(t)
            }
            Command::Sub
            | Command::Subs
            | Command::LDel
            | Command::NDel
            | Command::Get
            | Command::Off
            | Command::Del
            | Command::Que
            | Command::Ping
            | Command::LGet
            | Command::NSub
            | Command::NSubs => {}
        }
    }

    /// Parses a command as the relay does at `version`: unknown tag → `Unknown`, bad or
    /// trailing parameters → `Syntax`.
    pub fn decode(bytes: &[u8], version: u16) -> Result<Command, CommandError> {
        let (tag, params) = split_tag(bytes);
        let mut p = Parser::new(params);
        let cmd = match tag {
            b"NEW" => syntax(parse_new(&mut p, version))?,
            b"SUB" => Command::Sub,
            b"SUBS" => Command::Subs,
            b"KEY" => Command::Key(syntax(
                sp(&mut p).and_then(|_| PublicKeyDer::parse_auth(&mut p)),
            )?),
            b"RKEY" => Command::RKey(syntax(
                sp(&mut p).and_then(|_| NonEmpty::parse(&mut p, PublicKeyDer::parse_auth)),
            )?),
            b"LSET" => syntax((|| {
                sp(&mut p)?;
                Ok(Command::LSet {
                    link_id: p.decode()?,
                    data: p.decode()?,
                })
            })())?,
            b"LDEL" => Command::LDel,
            b"NKEY" => syntax((|| {
                sp(&mut p)?;
                Ok(Command::NKey {
                    notifier_key: PublicKeyDer::parse_auth(&mut p)?,
                    rcv_ntf_dh_key: PublicKeyDer::parse_dh(&mut p)?,
                })
            })())?,
            b"NDEL" => Command::NDel,
            b"GET" => Command::Get,
            b"ACK" => Command::Ack(syntax(sp(&mut p).and_then(|_| p.decode()))?),
            b"OFF" => Command::Off,
            b"DEL" => Command::Del,
            b"QUE" => Command::Que,
            b"SKEY" => Command::SKey(syntax(
                sp(&mut p).and_then(|_| PublicKeyDer::parse_auth(&mut p)),
            )?),
            b"SEND" => syntax((|| {
                sp(&mut p)?;
                let notification = p.bool()?;
                // reserved flag bytes: skipped up to the next space
                while p.peek().is_some_and(|c| c != b' ') {
                    p.byte()?;
                }
                sp(&mut p)?;
                Ok(Command::Send {
                    flags: MsgFlags { notification },
                    body: p.tail().to_vec(),
                })
            })())?,
            b"PING" => Command::Ping,
            b"LKEY" => Command::LKey(syntax(
                sp(&mut p).and_then(|_| PublicKeyDer::parse_auth(&mut p)),
            )?),
            b"LGET" => Command::LGet,
            b"NSUB" => Command::NSub,
            b"NSUBS" => Command::NSubs,
            b"PRXY" => syntax((|| {
                sp(&mut p)?;
                Ok(Command::Prxy {
                    server: ProtocolServer::decode_binary(&mut p, ProtocolType::Smp)?,
                    basic_auth: p.decode()?,
                })
            })())?,
            b"PFWD" => syntax((|| {
                sp(&mut p)?;
                Ok(Command::PFwd {
                    version: p.word16()?,
                    key: PublicKeyDer::parse_dh(&mut p)?,
                    enc_transmission: p.tail().to_vec(),
                })
            })())?,
            b"RFWD" => syntax(sp(&mut p).map(|_| Command::RFwd(p.tail().to_vec())))?,
            _ => return Err(CommandError::Unknown),
        };
        syntax(p.finish())?;
        Ok(cmd)
    }
}

fn sp(p: &mut Parser<'_>) -> Result<(), DecodeError> {
    p.space()
}

fn parse_new(p: &mut Parser<'_>, version: u16) -> Result<Command, DecodeError> {
    p.space()?;
    let rcv_auth_key = PublicKeyDer::parse_auth(p)?;
    let rcv_dh_key = PublicKeyDer::parse_dh(p)?;
    let (basic_auth, sub_mode, queue_req_data, ntf_creds);
    if version >= smp_version::SND_AUTH_KEY {
        basic_auth = p.decode::<Option<BasicAuth>>()?;
        sub_mode = p.decode()?;
        if version >= smp_version::SHORT_LINKS {
            queue_req_data = p.decode::<Option<QueueReqData>>()?;
            ntf_creds = if version >= smp_version::NEW_NTF_CREDS {
                p.maybe(|p| {
                    Ok(NewNtfCreds {
                        ntf_auth_key: PublicKeyDer::parse_auth(p)?,
                        rcv_ntf_dh_key: PublicKeyDer::parse_dh(p)?,
                    })
                })?
            } else {
                None
            };
        } else {
            queue_req_data = Some(if p.bool()? {
                QueueReqData::Messaging(None)
            } else {
                QueueReqData::Contact(None)
            });
            ntf_creds = None;
        }
    } else {
        basic_auth = if p.try_literal(b"A") {
            Some(p.decode()?)
        } else {
            None
        };
        sub_mode = p.decode()?;
        queue_req_data = None;
        ntf_creds = None;
    }
    Ok(Command::New(NewQueueReq {
        rcv_auth_key,
        rcv_dh_key,
        basic_auth,
        sub_mode,
        queue_req_data,
        ntf_creds,
    }))
}

/// The credential rules of §3.1 by party/tag (reference `checkCredentials` for commands):
///
/// * `NEW`: authorization required (`NO_AUTH`), entity must be empty (`HAS_AUTH`).
/// * `SEND`: entity required (`NO_ENTITY`); authorization optional.
/// * `LGET`, `PFWD`: entity required (`NO_ENTITY`), authorization forbidden (`HAS_AUTH`).
/// * `PING`, `PRXY`, `RFWD`: neither authorization nor entity (`HAS_AUTH`).
/// * everything else (incl. `SUB`, `NSUB`, `SUBS`, `NSUBS`): both required (`NO_AUTH`).
pub fn check_credentials(
    party: Party,
    tag: &str,
    has_auth: bool,
    entity_id: &[u8],
) -> Result<(), CommandError> {
    let has_entity = !entity_id.is_empty();
    match (party, tag) {
        (Party::Creator, _) => {
            if !has_auth {
                Err(CommandError::NoAuth)
            } else if has_entity {
                Err(CommandError::HasAuth)
            } else {
                Ok(())
            }
        }
        (Party::Sender, "SEND") => {
            if has_entity {
                Ok(())
            } else {
                Err(CommandError::NoEntity)
            }
        }
        (Party::LinkClient, "LGET") | (Party::ProxiedClient, "PFWD") => {
            if !has_entity {
                Err(CommandError::NoEntity)
            } else if has_auth {
                Err(CommandError::HasAuth)
            } else {
                Ok(())
            }
        }
        (Party::IdleClient, _) | (Party::ProxiedClient, _) | (Party::ProxyService, _) => {
            if !has_auth && !has_entity {
                Ok(())
            } else {
                Err(CommandError::HasAuth)
            }
        }
        _ => {
            if has_auth && has_entity {
                Ok(())
            } else {
                Err(CommandError::NoAuth)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Broker messages

/// A message from an SMP relay (response or event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerMsg {
    Ids(QueueIdsKeys),
    Lnk {
        sender_id: ShortString,
        data: QueueLinkData,
    },
    /// Reply to `SUB`/`NSUB` from v16 (`OK` below).
    Sok(Option<ShortString>),
    Soks(i64),
    Msg {
        msg_id: ShortString,
        body: Vec<u8>,
    },
    Nid {
        notifier_id: ShortString,
        srv_ntf_dh_key: PublicKeyDer,
    },
    NMsg {
        nonce: [u8; 24],
        enc_meta: ShortString,
    },
    PKey {
        session_id: ShortString,
        version_range: VersionRange,
        /// Relay certificate chain (DER certificates, leaf first).
        cert_chain: NonEmpty<Large>,
        /// DER of the signed X25519 key (X.509 SignedExact).
        signed_key: Large,
    },
    RRes(Vec<u8>),
    PRes(Vec<u8>),
    End,
    Ends(i64),
    /// `DELD` from v10 (`END` below).
    Deld,
    /// `INFO` JSON, kept as raw text.
    Info(Vec<u8>),
    Ok,
    Err(ErrorType),
    Pong,
}

/// All broker message tags.
pub const BROKER_TAGS: [&str; 17] = [
    "IDS", "LNK", "SOK", "SOKS", "MSG", "NID", "NMSG", "PKEY", "RRES", "PRES", "END", "ENDS",
    "DELD", "INFO", "OK", "ERR", "PONG",
];

impl BrokerMsg {
    /// The tag as sent at the current version (`DELD`/`SOK` may be sent as `END`/`OK` to
    /// older peers, see [`BrokerMsg::encode`]).
    pub fn tag(&self) -> &'static str {
        match self {
            BrokerMsg::Ids(_) => "IDS",
            BrokerMsg::Lnk { .. } => "LNK",
            BrokerMsg::Sok(_) => "SOK",
            BrokerMsg::Soks(_) => "SOKS",
            BrokerMsg::Msg { .. } => "MSG",
            BrokerMsg::Nid { .. } => "NID",
            BrokerMsg::NMsg { .. } => "NMSG",
            BrokerMsg::PKey { .. } => "PKEY",
            BrokerMsg::RRes(_) => "RRES",
            BrokerMsg::PRes(_) => "PRES",
            BrokerMsg::End => "END",
            BrokerMsg::Ends(_) => "ENDS",
            BrokerMsg::Deld => "DELD",
            BrokerMsg::Info(_) => "INFO",
            BrokerMsg::Ok => "OK",
            BrokerMsg::Err(_) => "ERR",
            BrokerMsg::Pong => "PONG",
        }
    }

    /// Client-side entity rule (reference `checkCredentials` for broker messages): `IDS` and
    /// `ERR` any; `PONG`, `PKEY`, `RRES` must have an empty entity (`HAS_AUTH`); all others
    /// need one (`NO_ENTITY`).
    pub fn check_entity(&self, entity_id: &[u8]) -> Result<(), CommandError> {
        match self {
            BrokerMsg::Ids(_) | BrokerMsg::Err(_) => Ok(()),
            BrokerMsg::Pong | BrokerMsg::PKey { .. } | BrokerMsg::RRes(_) => {
                if entity_id.is_empty() {
                    Ok(())
                } else {
                    Err(CommandError::HasAuth)
                }
            }
            _ => {
                if entity_id.is_empty() {
                    Err(CommandError::NoEntity)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Encodes for a client at `version`: `IDS` fields by version, `SOK` → `OK` below v16,
    /// `DELD` → `END` below v10, `ERR BLOCKED` → `ERR AUTH` below v12 / notice dropped below
    /// v18.
    pub fn encode(&self, version: u16) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out, version);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>, version: u16) {
        match self {
            BrokerMsg::Ids(q) => {
                out.extend_from_slice(b"IDS ");
                q.rcv_id.encode(out);
                q.snd_id.encode(out);
                q.srv_dh_key.encode(out);
                if version >= smp_version::SHORT_LINKS {
                    q.queue_mode.encode(out);
                    q.link_id.encode(out);
                    if version >= smp_version::SERVICE_CERTS {
                        q.service_id.encode(out);
                        if version >= smp_version::NEW_NTF_CREDS {
                            put_maybe(out, q.server_ntf_creds.as_ref(), |o, c| {
                                c.notifier_id.encode(o);
                                c.srv_ntf_dh_key.encode(o)
                            });
                        }
                    }
                } else if version >= smp_version::SND_AUTH_KEY {
                    put_bool(out, q.queue_mode == Some(QueueMode::Messaging));
                }
            }
            BrokerMsg::Lnk { sender_id, data } => {
                out.extend_from_slice(b"LNK ");
                sender_id.encode(out);
                data.encode(out)
            }
            BrokerMsg::Sok(sid) => {
                if version >= smp_version::SERVICE_CERTS {
                    out.extend_from_slice(b"SOK ");
                    put_maybe(out, sid.as_ref(), put_ss);
                } else {
                    out.extend_from_slice(b"OK");
                }
            }
            BrokerMsg::Soks(n) => {
                out.extend_from_slice(b"SOKS ");
                put_int64(out, *n)
            }
            BrokerMsg::Msg { msg_id, body } => {
                out.extend_from_slice(b"MSG ");
                msg_id.encode(out);
                out.extend_from_slice(body)
            }
            BrokerMsg::Nid {
                notifier_id,
                srv_ntf_dh_key,
            } => {
                out.extend_from_slice(b"NID ");
                notifier_id.encode(out);
                srv_ntf_dh_key.encode(out)
            }
            BrokerMsg::NMsg { nonce, enc_meta } => {
                out.extend_from_slice(b"NMSG ");
                out.extend_from_slice(nonce);
                enc_meta.encode(out)
            }
            BrokerMsg::PKey {
                session_id,
                version_range,
                cert_chain,
                signed_key,
            } => {
                out.extend_from_slice(b"PKEY ");
                session_id.encode(out);
                version_range.encode(out);
                cert_chain.encode_with(out, |o, c| c.encode(o));
                signed_key.encode(out)
            }
            BrokerMsg::RRes(t) => {
                out.extend_from_slice(b"RRES ");
                out.extend_from_slice(t)
            }
            BrokerMsg::PRes(t) => {
                out.extend_from_slice(b"PRES ");
                out.extend_from_slice(t)
            }
            BrokerMsg::End => out.extend_from_slice(b"END"),
            BrokerMsg::Ends(n) => {
                out.extend_from_slice(b"ENDS ");
                put_int64(out, *n)
            }
            BrokerMsg::Deld => {
                if version >= smp_version::DELETED_EVENT {
                    out.extend_from_slice(b"DELD")
                } else {
                    out.extend_from_slice(b"END")
                }
            }
            BrokerMsg::Info(j) => {
                out.extend_from_slice(b"INFO ");
                out.extend_from_slice(j)
            }
            BrokerMsg::Ok => out.extend_from_slice(b"OK"),
            BrokerMsg::Err(e) => {
                out.extend_from_slice(b"ERR ");
                e.encode_for_version(out, version)
            }
            BrokerMsg::Pong => out.extend_from_slice(b"PONG"),
        }
    }

    /// Parses a broker message as a client at `version` does. Unknown tag → `Unknown`, bad
    /// parameters → `Syntax`. (A command tag is unknown here.)
    pub fn decode(bytes: &[u8], version: u16) -> Result<BrokerMsg, CommandError> {
        let (tag, params) = split_tag(bytes);
        let mut p = Parser::new(params);
        let msg = match tag {
            b"IDS" => syntax(parse_ids(&mut p, version))?,
            b"LNK" => syntax((|| {
                sp(&mut p)?;
                Ok(BrokerMsg::Lnk {
                    sender_id: p.decode()?,
                    data: p.decode()?,
                })
            })())?,
            b"SOK" => BrokerMsg::Sok(syntax(sp(&mut p).and_then(|_| p.decode()))?),
            b"SOKS" => BrokerMsg::Soks(syntax(sp(&mut p).and_then(|_| p.int64()))?),
            b"MSG" => syntax((|| {
                sp(&mut p)?;
                Ok(BrokerMsg::Msg {
                    msg_id: p.decode()?,
                    body: p.tail().to_vec(),
                })
            })())?,
            b"NID" => syntax((|| {
                sp(&mut p)?;
                Ok(BrokerMsg::Nid {
                    notifier_id: p.decode()?,
                    srv_ntf_dh_key: PublicKeyDer::parse_dh(&mut p)?,
                })
            })())?,
            b"NMSG" => syntax((|| {
                sp(&mut p)?;
                Ok(BrokerMsg::NMsg {
                    nonce: p.take_array()?,
                    enc_meta: p.decode()?,
                })
            })())?,
            b"PKEY" => syntax((|| {
                sp(&mut p)?;
                Ok(BrokerMsg::PKey {
                    session_id: p.decode()?,
                    version_range: p.decode()?,
                    cert_chain: NonEmpty::parse(&mut p, Large::decode)?,
                    signed_key: p.decode()?,
                })
            })())?,
            b"RRES" => BrokerMsg::RRes(syntax(sp(&mut p).map(|_| p.tail().to_vec()))?),
            b"PRES" => BrokerMsg::PRes(syntax(sp(&mut p).map(|_| p.tail().to_vec()))?),
            b"END" => BrokerMsg::End,
            b"ENDS" => BrokerMsg::Ends(syntax(sp(&mut p).and_then(|_| p.int64()))?),
            b"DELD" => BrokerMsg::Deld,
            b"INFO" => syntax((|| {
                sp(&mut p)?;
                let j = p.tail();
                if j.first() == Some(&b'{') && j.last() == Some(&b'}') {
                    Ok(BrokerMsg::Info(j.to_vec()))
                } else {
                    Err(DecodeError::Invalid("INFO is not a JSON object"))
                }
            })())?,
            b"OK" => BrokerMsg::Ok,
            b"ERR" => BrokerMsg::Err(syntax(sp(&mut p).and_then(|_| p.decode()))?),
            b"PONG" => BrokerMsg::Pong,
            _ => return Err(CommandError::Unknown),
        };
        syntax(p.finish())?;
        Ok(msg)
    }
}

fn parse_ids(p: &mut Parser<'_>, version: u16) -> Result<BrokerMsg, DecodeError> {
    p.space()?;
    let rcv_id = p.decode()?;
    let snd_id = p.decode()?;
    let srv_dh_key = PublicKeyDer::parse_dh(p)?;
    let mut q = QueueIdsKeys {
        rcv_id,
        snd_id,
        srv_dh_key,
        queue_mode: None,
        link_id: None,
        service_id: None,
        server_ntf_creds: None,
    };
    if version >= smp_version::SHORT_LINKS {
        q.queue_mode = p.decode()?;
        q.link_id = p.decode()?;
        if version >= smp_version::SERVICE_CERTS {
            q.service_id = p.decode()?;
            if version >= smp_version::NEW_NTF_CREDS {
                q.server_ntf_creds = p.maybe(|p| {
                    Ok(ServerNtfCreds {
                        notifier_id: p.decode()?,
                        srv_ntf_dh_key: PublicKeyDer::parse_dh(p)?,
                    })
                })?;
            }
        }
    } else if version >= smp_version::SND_AUTH_KEY {
        q.queue_mode = Some(if p.bool()? {
            QueueMode::Messaging
        } else {
            QueueMode::Contact
        });
    }
    Ok(BrokerMsg::Ids(q))
}

// ---------------------------------------------------------------------------------------------
// Per-transmission checks (reference `tDecodeServer` / `tDecodeClient`)

/// A client transmission the relay answers with an error before looking at its store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub error: ErrorType,
    /// Whether the `ERR` reply carries the request's entity id (`CMD …` errors) or an empty
    /// one (`BLOCK` for a bad authorization size, `SESSION` for a wrong v<7 session id). The
    /// reply always carries the request's corrId.
    pub keep_entity: bool,
}

/// The relay's checks on one decoded client transmission, in the reference's order: v<7
/// session id (`SESSION`), authorization size (`BLOCK`), command parse (`CMD UNKNOWN` /
/// `CMD SYNTAX`), credential rules (`CMD NO_AUTH` / `HAS_AUTH` / `NO_ENTITY`). Signature
/// verification, service-signature rules and store lookups come after.
pub fn check_client_transmission(
    t: &Transmission<'_>,
    version: u16,
    session_id: &[u8],
) -> Result<(AuthorizationKind, Command), Rejected> {
    if version < smp_version::IMPLIED_SESSION_ID && t.session_id != session_id {
        return Err(Rejected {
            error: ErrorType::Session,
            keep_entity: false,
        });
    }
    let kind = AuthorizationKind::classify(t.authorization).ok_or(Rejected {
        error: ErrorType::Block,
        keep_entity: false,
    })?;
    let reject = |e: CommandError| Rejected {
        error: ErrorType::Cmd(e),
        keep_entity: true,
    };
    let cmd = Command::decode(t.command, version).map_err(reject)?;
    cmd.check_credentials(!t.authorization.is_empty(), t.entity_id)
        .map_err(reject)?;
    Ok((kind, cmd))
}

/// The client's checks on one decoded relay transmission: v<7 session id (`SESSION`), parse
/// (`CMD UNKNOWN` / `CMD SYNTAX`) and the entity rule of [`BrokerMsg::check_entity`].
pub fn check_server_transmission(
    t: &Transmission<'_>,
    version: u16,
    session_id: &[u8],
) -> Result<BrokerMsg, ErrorType> {
    if version < smp_version::IMPLIED_SESSION_ID && t.session_id != session_id {
        return Err(ErrorType::Session);
    }
    let m = BrokerMsg::decode(t.command, version)?;
    m.check_entity(t.entity_id)?;
    Ok(m)
}
