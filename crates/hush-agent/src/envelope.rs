//! Per-queue e2e envelope (reference §6.2) and agent envelopes/messages (§6.3).
//!
//! ```text
//! SEND body      = ClientMsgEnvelope = PubHeader ‖ nonce(24) ‖ crypto_box(e2e secret, nonce, pad(ClientMessage, L))
//! ClientMessage  = PrivHeader ('K' auth key | '_') ‖ AgentMsgEnvelope
//! AgentMsgEnvelope = agentVersion ‖ ('C' Maybe params ‖ ratchet msg | 'M' ratchet msg |
//!                                    'I' Large(invitation URI text) ‖ connInfo | 'R' params ‖ info)
//! ratchet plaintext = AgentMessage ('I' info | 'D' queues info | 'R' info | 'M' APrivHeader AMessage)
//! ```
//!
//! Decoders never panic and return [`EnvelopeError`] on any malformed input.

use hush_crypto::{DhSecret, X25519Public, cb_decrypt, cb_encrypt};
use hush_proto::address::{
    ConnectionRequestUri, ProtocolServer, ProtocolType, QueueMode, SmpQueueUri, SmpServer,
    TransportHost,
};
use hush_proto::encoding::{
    Decode, Encode, Parser, put_bool, put_int64, put_large, put_short_string, put_word16,
};
use hush_proto::version::VersionRange;

use crate::ratchet::E2eRatchetParams;

/// Padded length of the per-queue e2e plaintext when the PubHeader carries a key
/// (confirmations, contact requests).
pub const E2E_ENC_CONFIRMATION_LEN: usize = 15904;
/// Padded length of the per-queue e2e plaintext otherwise.
pub const E2E_ENC_MESSAGE_LEN: usize = 16000;
/// Ratchet pad target for agent messages (no PQ).
pub const E2E_ENC_AGENT_MSG_LEN: usize = 15840;
/// Ratchet pad target for connection info (confirmations, no PQ).
pub const E2E_ENC_CONN_INFO_LEN: usize = 14832;
/// Current SMP client (queue URI) version.
pub const SMP_CLIENT_VERSION: u16 = 4;
/// Current SMP agent version.
pub const AGENT_VERSION: u16 = 7;

/// Envelope codec errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("malformed {0}")]
    Syntax(&'static str),
    #[error("e2e decryption failed")]
    Decrypt,
    #[error("message too large")]
    TooLarge,
}

fn syn(what: &'static str) -> impl Fn(hush_proto::encoding::DecodeError) -> EnvelopeError {
    move |_| EnvelopeError::Syntax(what)
}

fn big<E>(_: E) -> EnvelopeError {
    EnvelopeError::TooLarge
}

// ---------------------------------------------------------------------------------------------
// Per-queue e2e envelope (§6.2)

/// `PrivHeader`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrivHeader {
    /// `K` + sender auth public key SPKI (legacy unsigned confirmation: "KEY the queue with this").
    Confirmation(Vec<u8>),
    /// `_`.
    Empty,
}

/// `ClientMessage = PrivHeader ‖ body`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientMessage {
    pub header: PrivHeader,
    pub body: Vec<u8>,
}

impl ClientMessage {
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = Vec::with_capacity(self.body.len() + 50);
        match &self.header {
            PrivHeader::Confirmation(k) => {
                out.push(b'K');
                put_short_string(&mut out, k).map_err(big)?;
            }
            PrivHeader::Empty => out.push(b'_'),
        }
        out.extend_from_slice(&self.body);
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<ClientMessage, EnvelopeError> {
        let mut p = Parser::new(bytes);
        let header = match p.byte().map_err(syn("PrivHeader"))? {
            b'K' => {
                PrivHeader::Confirmation(p.short_string().map_err(syn("PrivHeader key"))?.to_vec())
            }
            b'_' => PrivHeader::Empty,
            _ => return Err(EnvelopeError::Syntax("PrivHeader tag")),
        };
        Ok(ClientMessage {
            header,
            body: p.tail().to_vec(),
        })
    }
}

/// `ClientMsgEnvelope` (the `SEND` body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientMsgEnvelope {
    /// SMP client version agreed for the queue.
    pub smp_client_version: u16,
    /// Sender's X25519 e2e key (confirmations and contact requests only).
    pub e2e_dh_key: Option<X25519Public>,
    pub nonce: [u8; 24],
    pub ciphertext: Vec<u8>,
}

impl ClientMsgEnvelope {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 46 + 24 + self.ciphertext.len());
        put_word16(&mut out, self.smp_client_version);
        match &self.e2e_dh_key {
            None => out.push(b'0'),
            Some(k) => {
                out.push(b'1');
                // 44 bytes, always fits
                let _ = put_short_string(&mut out, &k.to_spki_der());
            }
        }
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<ClientMsgEnvelope, EnvelopeError> {
        let mut p = Parser::new(bytes);
        let smp_client_version = p.word16().map_err(syn("PubHeader version"))?;
        let e2e_dh_key = match p.byte().map_err(syn("PubHeader"))? {
            b'0' => None,
            b'1' => Some(
                X25519Public::from_spki_der(p.short_string().map_err(syn("PubHeader key"))?)
                    .map_err(|_| EnvelopeError::Syntax("PubHeader key is not X25519"))?,
            ),
            _ => return Err(EnvelopeError::Syntax("PubHeader Maybe tag")),
        };
        let nonce = p.take_array::<24>().map_err(syn("envelope nonce"))?;
        Ok(ClientMsgEnvelope {
            smp_client_version,
            e2e_dh_key,
            nonce,
            ciphertext: p.tail().to_vec(),
        })
    }

    /// Encrypts `msg` for a queue: L = 15904 when `e2e_dh_key` is present, else 16000.
    pub fn seal(
        secret: &DhSecret,
        smp_client_version: u16,
        e2e_dh_key: Option<X25519Public>,
        msg: &ClientMessage,
    ) -> Result<ClientMsgEnvelope, EnvelopeError> {
        let padded = if e2e_dh_key.is_some() {
            E2E_ENC_CONFIRMATION_LEN
        } else {
            E2E_ENC_MESSAGE_LEN
        };
        let nonce = hush_crypto::random_nonce();
        let ciphertext = cb_encrypt(secret, &nonce, &msg.encode()?, padded).map_err(big)?;
        Ok(ClientMsgEnvelope {
            smp_client_version,
            e2e_dh_key,
            nonce,
            ciphertext,
        })
    }

    /// Decrypts the envelope's body with the queue's e2e secret.
    pub fn open(&self, secret: &DhSecret) -> Result<ClientMessage, EnvelopeError> {
        let plain = cb_decrypt(secret, &self.nonce, &self.ciphertext)
            .map_err(|_| EnvelopeError::Decrypt)?;
        ClientMessage::decode(&plain)
    }
}

// ---------------------------------------------------------------------------------------------
// Queue info (binary SMPQueueInfo)

/// Binary `SMPQueueInfo` (a queue address at one agreed client version).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmpQueueInfo {
    pub client_version: u16,
    pub server: ProtocolServer,
    pub sender_id: Vec<u8>,
    /// X25519 SPKI DER (the queue's e2e key for the sender).
    pub dh_public_key: X25519Public,
    pub queue_mode: Option<QueueMode>,
}

fn put_mode(out: &mut Vec<u8>, m: QueueMode) {
    out.push(match m {
        QueueMode::Messaging => b'M',
        QueueMode::Contact => b'C',
    })
}

/// `queueModeP`: `M`/`C`, else `T`/`F`, else none.
fn queue_mode_p(p: &mut Parser<'_>) -> Option<QueueMode> {
    let m = match p.peek() {
        Some(b'M') | Some(b'T') => QueueMode::Messaging,
        Some(b'C') | Some(b'F') => QueueMode::Contact,
        _ => return None,
    };
    let _ = p.byte();
    Some(m)
}

impl SmpQueueInfo {
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EnvelopeError> {
        let v = self.client_version;
        let addr = |out: &mut Vec<u8>| -> Result<(), EnvelopeError> {
            put_short_string(out, &self.sender_id).map_err(big)?;
            put_short_string(out, &self.dh_public_key.to_spki_der()).map_err(big)
        };
        put_word16(out, v);
        if v > 1 {
            self.server.encode_binary(out);
            addr(out)?;
            if v >= 4 {
                if let Some(m) = self.queue_mode {
                    put_mode(out, m);
                }
            } else if v >= 3 && self.queue_mode == Some(QueueMode::Messaging) {
                out.push(b'T');
            }
        } else {
            let host = self
                .server
                .hosts()
                .first()
                .ok_or(EnvelopeError::Syntax("server without hosts"))?;
            host.encode(out);
            put_short_string(out, self.server.port().as_bytes()).map_err(big)?;
            put_short_string(out, self.server.key_hash()).map_err(big)?;
            addr(out)?;
        }
        Ok(())
    }

    pub fn parse(p: &mut Parser<'_>) -> Result<SmpQueueInfo, EnvelopeError> {
        let client_version = p.word16().map_err(syn("queue info version"))?;
        let server = if client_version > 1 {
            SmpServer::decode(p).map_err(syn("queue info server"))?.0
        } else {
            let host = TransportHost::decode(p).map_err(syn("legacy host"))?;
            let port = std::str::from_utf8(p.short_string().map_err(syn("legacy port"))?)
                .map_err(|_| EnvelopeError::Syntax("legacy port"))?
                .to_string();
            let key_hash = p.short_string().map_err(syn("legacy key hash"))?.to_vec();
            ProtocolServer::new(ProtocolType::Smp, vec![host], port, key_hash)
                .map_err(|_| EnvelopeError::Syntax("legacy server"))?
                .update_legacy_hosts()
        };
        let sender_id = p.short_string().map_err(syn("sender id"))?.to_vec();
        let dh_public_key = X25519Public::from_spki_der(p.short_string().map_err(syn("dh key"))?)
            .map_err(|_| EnvelopeError::Syntax("queue dh key is not X25519"))?;
        let queue_mode = queue_mode_p(p);
        Ok(SmpQueueInfo {
            client_version,
            server,
            sender_id,
            dh_public_key,
            queue_mode,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Agent envelopes (§6.3)

/// `AgentMsgEnvelope`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentMsgEnvelope {
    /// `C`: confirmation; `e2e` present in the joiner's confirmation.
    Confirmation {
        agent_version: u16,
        e2e: Option<E2eRatchetParams>,
        enc_conn_info: Vec<u8>,
    },
    /// `M`: a ratchet-encrypted `AgentMessage`.
    Msg {
        agent_version: u16,
        enc_agent_message: Vec<u8>,
    },
    /// `I`: a contact request, carrying the requester's invitation link (text form).
    Invitation {
        agent_version: u16,
        conn_req: String,
        conn_info: Vec<u8>,
    },
    /// `R`: ratchet re-synchronisation.
    RatchetKey {
        agent_version: u16,
        e2e: E2eRatchetParams,
        info: Vec<u8>,
    },
}

impl AgentMsgEnvelope {
    pub fn agent_version(&self) -> u16 {
        match self {
            AgentMsgEnvelope::Confirmation { agent_version, .. }
            | AgentMsgEnvelope::Msg { agent_version, .. }
            | AgentMsgEnvelope::Invitation { agent_version, .. }
            | AgentMsgEnvelope::RatchetKey { agent_version, .. } => *agent_version,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = Vec::new();
        put_word16(&mut out, self.agent_version());
        match self {
            AgentMsgEnvelope::Confirmation {
                e2e, enc_conn_info, ..
            } => {
                out.push(b'C');
                match e2e {
                    None => out.push(b'0'),
                    Some(p) => {
                        out.push(b'1');
                        p.encode(&mut out).map_err(big)?;
                    }
                }
                out.extend_from_slice(enc_conn_info);
            }
            AgentMsgEnvelope::Msg {
                enc_agent_message, ..
            } => {
                out.push(b'M');
                out.extend_from_slice(enc_agent_message);
            }
            AgentMsgEnvelope::Invitation {
                conn_req,
                conn_info,
                ..
            } => {
                out.push(b'I');
                put_large(&mut out, conn_req.as_bytes()).map_err(big)?;
                out.extend_from_slice(conn_info);
            }
            AgentMsgEnvelope::RatchetKey { e2e, info, .. } => {
                out.push(b'R');
                e2e.encode(&mut out).map_err(big)?;
                out.extend_from_slice(info);
            }
        }
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<AgentMsgEnvelope, EnvelopeError> {
        let mut p = Parser::new(bytes);
        let agent_version = p.word16().map_err(syn("agent version"))?;
        let ratchet_params = |p: &mut Parser<'_>| {
            E2eRatchetParams::parse(p).map_err(|_| EnvelopeError::Syntax("e2e ratchet params"))
        };
        match p.byte().map_err(syn("agent envelope tag"))? {
            b'C' => {
                let e2e = match p.byte().map_err(syn("confirmation"))? {
                    b'0' => None,
                    b'1' => Some(ratchet_params(&mut p)?),
                    _ => return Err(EnvelopeError::Syntax("confirmation Maybe tag")),
                };
                Ok(AgentMsgEnvelope::Confirmation {
                    agent_version,
                    e2e,
                    enc_conn_info: p.tail().to_vec(),
                })
            }
            b'M' => Ok(AgentMsgEnvelope::Msg {
                agent_version,
                enc_agent_message: p.tail().to_vec(),
            }),
            b'I' => {
                let uri = p.large().map_err(syn("invitation URI"))?;
                let conn_req = std::str::from_utf8(uri)
                    .map_err(|_| EnvelopeError::Syntax("invitation URI is not UTF-8"))?;
                // The reference parses it as an invitation URI: reject anything else here.
                match ConnectionRequestUri::parse(conn_req) {
                    Ok(ConnectionRequestUri::Invitation { .. }) => {}
                    _ => return Err(EnvelopeError::Syntax("invitation URI")),
                }
                Ok(AgentMsgEnvelope::Invitation {
                    agent_version,
                    conn_req: conn_req.to_string(),
                    conn_info: p.tail().to_vec(),
                })
            }
            b'R' => {
                let e2e = ratchet_params(&mut p)?;
                Ok(AgentMsgEnvelope::RatchetKey {
                    agent_version,
                    e2e,
                    info: p.tail().to_vec(),
                })
            }
            _ => Err(EnvelopeError::Syntax("agent envelope tag")),
        }
    }
}

/// `SndQAddr = SMPServer ‖ shortString senderId`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SndQAddr {
    pub server: ProtocolServer,
    pub sender_id: Vec<u8>,
}

impl SndQAddr {
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EnvelopeError> {
        self.server.encode_binary(out);
        put_short_string(out, &self.sender_id).map_err(big)
    }

    pub fn parse(p: &mut Parser<'_>) -> Result<SndQAddr, EnvelopeError> {
        let server = SmpServer::decode(p).map_err(syn("SndQAddr server"))?.0;
        let sender_id = p
            .short_string()
            .map_err(syn("SndQAddr sender id"))?
            .to_vec();
        Ok(SndQAddr { server, sender_id })
    }
}

/// One delivery receipt in `A_RCVD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsgReceipt {
    /// The sender's message id being acknowledged.
    pub agent_msg_id: i64,
    pub msg_hash: Vec<u8>,
    pub info: Vec<u8>,
}

/// `AMessage` (inside `AgentMessage` `M`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AMessage {
    /// `H`.
    Hello,
    /// `M` + application body.
    AMsg(Vec<u8>),
    /// `V` delivery receipts (never empty).
    ARcvd(Vec<MsgReceipt>),
    /// `QC`.
    QCont(SndQAddr),
    /// `E` last decrypted sender message id.
    EReady(i64),
    /// `QA` (recipient → sender): add these queues, each replacing the queue at the address.
    QAdd(Vec<(SmpQueueUri, Option<SndQAddr>)>),
    /// `QK` (sender → recipient): the added queue at the agreed client version with the
    /// sender's e2e key, and the sender's auth public key (SPKI DER) to secure it with.
    QKey(Vec<(SmpQueueInfo, Vec<u8>)>),
    /// `QU` (recipient → sender): the queues are secured; use them (flag: primary).
    QUse(Vec<(SndQAddr, bool)>),
    /// `QT` (sender → recipient, on the new queue): test message completing the switch.
    QTest(Vec<SndQAddr>),
}

/// Binary `SMPQueueUri` (reference `Encoding SMPQueueUri`): version range, server, sender id,
/// dh key, then the queue mode as `M`/`C` when the minimum version is ≥ 4, else the
/// sender-can-secure flag as `T`/`F` when the minimum version is ≥ 3 or the maximum is ≥ 3 and
/// the queue is sender-securable.
pub fn encode_queue_uri(q: &SmpQueueUri, out: &mut Vec<u8>) -> Result<(), EnvelopeError> {
    let vr = q.client_versions;
    vr.encode(out);
    q.server.encode_binary(out);
    put_short_string(out, &q.sender_id).map_err(big)?;
    put_short_string(out, &q.dh_public_key).map_err(big)?;
    let snd_secure = q.queue_mode == Some(QueueMode::Messaging);
    if vr.min() >= 4 {
        if let Some(m) = q.queue_mode {
            put_mode(out, m);
        }
    } else if vr.min() >= 3 || (vr.max() >= 3 && snd_secure) {
        put_bool(out, snd_secure);
    }
    Ok(())
}

/// Parses a binary `SMPQueueUri`.
pub fn parse_queue_uri(p: &mut Parser<'_>) -> Result<SmpQueueUri, EnvelopeError> {
    let client_versions = VersionRange::decode(p).map_err(syn("queue URI versions"))?;
    let server = SmpServer::decode(p).map_err(syn("queue URI server"))?.0;
    let sender_id = p
        .short_string()
        .map_err(syn("queue URI sender id"))?
        .to_vec();
    let dh = p.short_string().map_err(syn("queue URI dh key"))?;
    X25519Public::from_spki_der(dh)
        .map_err(|_| EnvelopeError::Syntax("queue URI dh key is not X25519"))?;
    Ok(SmpQueueUri {
        client_versions,
        server,
        sender_id,
        dh_public_key: dh.to_vec(),
        queue_mode: queue_mode_p(p),
    })
}

fn put_count(out: &mut Vec<u8>, n: usize) -> Result<(), EnvelopeError> {
    if n == 0 || n > 255 {
        return Err(EnvelopeError::TooLarge);
    }
    out.push(n as u8);
    Ok(())
}

impl AMessage {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EnvelopeError> {
        match self {
            AMessage::Hello => out.push(b'H'),
            AMessage::AMsg(body) => {
                out.push(b'M');
                out.extend_from_slice(body);
            }
            AMessage::ARcvd(rs) => {
                if rs.is_empty() || rs.len() > 255 {
                    return Err(EnvelopeError::TooLarge);
                }
                out.push(b'V');
                out.push(rs.len() as u8);
                for r in rs {
                    put_int64(out, r.agent_msg_id);
                    put_short_string(out, &r.msg_hash).map_err(big)?;
                    put_large(out, &r.info).map_err(big)?;
                }
            }
            AMessage::QCont(a) => {
                out.extend_from_slice(b"QC");
                a.encode(out)?;
            }
            AMessage::EReady(id) => {
                out.push(b'E');
                put_int64(out, *id);
            }
            AMessage::QAdd(qs) => {
                out.extend_from_slice(b"QA");
                put_count(out, qs.len())?;
                for (uri, replaced) in qs {
                    encode_queue_uri(uri, out)?;
                    match replaced {
                        None => out.push(b'0'),
                        Some(a) => {
                            out.push(b'1');
                            a.encode(out)?;
                        }
                    }
                }
            }
            AMessage::QKey(qs) => {
                out.extend_from_slice(b"QK");
                put_count(out, qs.len())?;
                for (info, key) in qs {
                    info.encode(out)?;
                    put_short_string(out, key).map_err(big)?;
                }
            }
            AMessage::QUse(qs) => {
                out.extend_from_slice(b"QU");
                put_count(out, qs.len())?;
                for (a, primary) in qs {
                    a.encode(out)?;
                    put_bool(out, *primary);
                }
            }
            AMessage::QTest(qs) => {
                out.extend_from_slice(b"QT");
                put_count(out, qs.len())?;
                for a in qs {
                    a.encode(out)?;
                }
            }
        }
        Ok(())
    }

    fn parse(p: &mut Parser<'_>) -> Result<AMessage, EnvelopeError> {
        Ok(match p.byte().map_err(syn("AMessage tag"))? {
            b'H' => AMessage::Hello,
            b'M' => AMessage::AMsg(p.tail().to_vec()),
            b'V' => {
                let rs = p
                    .non_empty(|p| {
                        let agent_msg_id = p.int64()?;
                        let msg_hash = p.short_string()?.to_vec();
                        let info = p.large()?.to_vec();
                        Ok(MsgReceipt {
                            agent_msg_id,
                            msg_hash,
                            info,
                        })
                    })
                    .map_err(syn("A_RCVD"))?;
                AMessage::ARcvd(rs)
            }
            b'E' => AMessage::EReady(p.int64().map_err(syn("EREADY"))?),
            b'Q' => match p.byte().map_err(syn("AMessage Q tag"))? {
                b'C' => AMessage::QCont(SndQAddr::parse(p)?),
                b'A' => AMessage::QAdd(non_empty(p, "QADD", |p| {
                    let uri = parse_queue_uri(p)?;
                    let replaced = match p.byte().map_err(syn("QADD Maybe tag"))? {
                        b'0' => None,
                        b'1' => Some(SndQAddr::parse(p)?),
                        _ => return Err(EnvelopeError::Syntax("QADD Maybe tag")),
                    };
                    Ok((uri, replaced))
                })?),
                b'K' => AMessage::QKey(non_empty(p, "QKEY", |p| {
                    let info = SmpQueueInfo::parse(p)?;
                    let key = p.short_string().map_err(syn("QKEY sender key"))?.to_vec();
                    Ok((info, key))
                })?),
                b'U' => AMessage::QUse(non_empty(p, "QUSE", |p| {
                    let a = SndQAddr::parse(p)?;
                    let primary = p.bool().map_err(syn("QUSE primary flag"))?;
                    Ok((a, primary))
                })?),
                b'T' => AMessage::QTest(non_empty(p, "QTEST", SndQAddr::parse)?),
                _ => return Err(EnvelopeError::Syntax("AMessage Q tag")),
            },
            _ => return Err(EnvelopeError::Syntax("AMessage tag")),
        })
    }
}

/// A `NonEmpty` list: count byte (≥ 1) then the items.
fn non_empty<T>(
    p: &mut Parser<'_>,
    what: &'static str,
    mut f: impl FnMut(&mut Parser<'_>) -> Result<T, EnvelopeError>,
) -> Result<Vec<T>, EnvelopeError> {
    let n = p.byte().map_err(syn(what))?;
    if n == 0 {
        return Err(EnvelopeError::Syntax(what));
    }
    (0..n).map(|_| f(p)).collect()
}

/// Ratchet plaintext (`AgentMessage`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentMessage {
    /// `I` connInfo (inviter's reply in the confirmation).
    ConnInfo(Vec<u8>),
    /// `D` reply queues ‖ connInfo (joiner's confirmation).
    ConnInfoReply {
        queues: Vec<SmpQueueInfo>,
        conn_info: Vec<u8>,
    },
    /// `R` info (inside the `R` envelope, not ratcheted).
    RatchetInfo(Vec<u8>),
    /// `M` sndMsgId ‖ prevMsgHash ‖ AMessage.
    Message {
        snd_msg_id: i64,
        prev_msg_hash: Vec<u8>,
        msg: AMessage,
    },
}

impl AgentMessage {
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = Vec::new();
        match self {
            AgentMessage::ConnInfo(i) => {
                out.push(b'I');
                out.extend_from_slice(i);
            }
            AgentMessage::ConnInfoReply { queues, conn_info } => {
                if queues.is_empty() || queues.len() > 255 {
                    return Err(EnvelopeError::Syntax("reply queues must be 1..255"));
                }
                out.push(b'D');
                out.push(queues.len() as u8);
                for q in queues {
                    q.encode(&mut out)?;
                }
                out.extend_from_slice(conn_info);
            }
            AgentMessage::RatchetInfo(i) => {
                out.push(b'R');
                out.extend_from_slice(i);
            }
            AgentMessage::Message {
                snd_msg_id,
                prev_msg_hash,
                msg,
            } => {
                out.push(b'M');
                put_int64(&mut out, *snd_msg_id);
                put_short_string(&mut out, prev_msg_hash).map_err(big)?;
                msg.encode(&mut out)?;
            }
        }
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<AgentMessage, EnvelopeError> {
        let mut p = Parser::new(bytes);
        let m = match p.byte().map_err(syn("AgentMessage tag"))? {
            b'I' => AgentMessage::ConnInfo(p.tail().to_vec()),
            b'D' => {
                let n = p.byte().map_err(syn("reply queues"))?;
                if n == 0 {
                    return Err(EnvelopeError::Syntax("empty reply queues"));
                }
                let mut queues = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    queues.push(SmpQueueInfo::parse(&mut p)?);
                }
                AgentMessage::ConnInfoReply {
                    queues,
                    conn_info: p.tail().to_vec(),
                }
            }
            b'R' => AgentMessage::RatchetInfo(p.tail().to_vec()),
            b'M' => {
                let snd_msg_id = p.int64().map_err(syn("sndMsgId"))?;
                let prev_msg_hash = p.short_string().map_err(syn("prevMsgHash"))?.to_vec();
                let msg = AMessage::parse(&mut p)?;
                p.finish().map_err(syn("AgentMessage trailing bytes"))?;
                AgentMessage::Message {
                    snd_msg_id,
                    prev_msg_hash,
                    msg,
                }
            }
            _ => return Err(EnvelopeError::Syntax("AgentMessage tag")),
        };
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hush_crypto::X25519Secret;

    fn server() -> ProtocolServer {
        ProtocolServer::parse("smp://AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=@localhost:5001")
            .unwrap()
    }

    #[test]
    fn client_envelope_seal_open() {
        let a = X25519Secret::generate();
        let b = X25519Secret::generate();
        let s1 = a.dh(&b.public());
        let s2 = b.dh(&a.public());
        let msg = ClientMessage {
            header: PrivHeader::Empty,
            body: b"hello".to_vec(),
        };
        let env = ClientMsgEnvelope::seal(&s1, 4, Some(a.public()), &msg).unwrap();
        let wire = env.encode();
        // 2 + 1 + 45 + 24 + 16 + 15904
        assert_eq!(wire.len(), 15992);
        let back = ClientMsgEnvelope::decode(&wire).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.open(&s2).unwrap(), msg);
        let env2 = ClientMsgEnvelope::seal(&s1, 4, None, &msg).unwrap();
        assert_eq!(env2.encode().len(), 2 + 1 + 24 + 16 + 16000);
        // tampering fails
        let mut bad = env2.clone();
        bad.ciphertext[20] ^= 1;
        assert_eq!(bad.open(&s2), Err(EnvelopeError::Decrypt));
    }

    #[test]
    fn queue_info_versions() {
        let k = X25519Secret::generate().public();
        for (v, mode, suffix) in [
            (4u16, Some(QueueMode::Messaging), Some(b'M')),
            (4, Some(QueueMode::Contact), Some(b'C')),
            (4, None, None),
            (3, Some(QueueMode::Messaging), Some(b'T')),
            (2, Some(QueueMode::Messaging), None),
        ] {
            let qi = SmpQueueInfo {
                client_version: v,
                server: server(),
                sender_id: vec![7; 24],
                dh_public_key: k,
                queue_mode: mode,
            };
            let mut out = Vec::new();
            qi.encode(&mut out).unwrap();
            assert_eq!(out.last().copied() == suffix, suffix.is_some(), "v{v}");
            let back = SmpQueueInfo::parse(&mut Parser::new(&out)).unwrap();
            let expect_mode = if v == 2 { None } else { mode };
            assert_eq!(back.queue_mode, expect_mode);
            assert_eq!(back.sender_id, qi.sender_id);
            assert_eq!(back.server, qi.server);
        }
    }
}
