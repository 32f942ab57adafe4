//! What a recipient and a notifier do with `MSG` and `NMSG` (reference §3.6, §3.8):
//! decrypt with the queue's DH secret and parse.
//!
//! ```text
//! MSG plaintext = Int64 ts ‖ flags ('T'/'F', further non-space bytes ignored) ‖ ' ' ‖ body
//!               | "QUOTA " ‖ Int64 ts                                  (quota marker)
//! NMsgMeta      = shortString msgId ‖ Int64 ts
//! ```

use hush_crypto::{DhSecret, decrypt_nmsg_meta, decrypt_rcv_msg_body};
use hush_proto::encoding::Parser;
use hush_proto::smp::MsgFlags;
use hush_proto::{DecodeError, Encode};

use crate::ClientError;

/// An encrypted message as the relay delivered it (`MSG msgId encBody`).
#[derive(Clone, PartialEq, Eq)]
pub struct RawMsg {
    /// 24 bytes; also the crypto_box nonce of the body and what `ACK` names.
    pub msg_id: Vec<u8>,
    /// 16122 bytes from a conforming relay.
    pub enc_body: Vec<u8>,
}

impl std::fmt::Debug for RawMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawMsg")
            .field("enc_body_len", &self.enc_body.len())
            .finish_non_exhaustive()
    }
}

impl RawMsg {
    /// Decrypts with the queue's `rcvDhSecret` (X25519 of the relay's `IDS` key and our DH
    /// private key) and parses the plaintext.
    pub fn decrypt(&self, rcv_dh_secret: &DhSecret) -> Result<RcvMessage, ClientError> {
        let plain = decrypt_rcv_msg_body(rcv_dh_secret, &self.msg_id, &self.enc_body)?;
        let body = parse_rcv_msg_body(&plain)?;
        Ok(RcvMessage {
            msg_id: self.msg_id.clone(),
            body,
        })
    }
}

/// A decrypted `MSG`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RcvMessage {
    pub msg_id: Vec<u8>,
    pub body: RcvMsgBody,
}

/// The plaintext of a `MSG` body.
#[derive(Clone, PartialEq, Eq)]
pub enum RcvMsgBody {
    /// A message: the relay's timestamp (seconds) when it accepted the `SEND`, the stored
    /// flags, and the sender's body.
    Message {
        ts: i64,
        flags: MsgFlags,
        body: Vec<u8>,
    },
    /// The quota marker: the queue was full at `ts`; `SEND`s resume once everything, this
    /// marker included, is acknowledged.
    Quota { ts: i64 },
}

impl std::fmt::Debug for RcvMsgBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RcvMsgBody::Message { ts, flags, body } => f
                .debug_struct("Message")
                .field("ts", ts)
                .field("flags", flags)
                .field("body_len", &body.len())
                .finish(),
            RcvMsgBody::Quota { ts } => f.debug_struct("Quota").field("ts", ts).finish(),
        }
    }
}

impl RcvMsgBody {
    /// Encodes the plaintext as the relay does (`encodeRcvMsgBody`); for tests and fakes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            RcvMsgBody::Message { ts, flags, body } => {
                ts.encode(&mut out);
                out.push(if flags.notification { b'T' } else { b'F' });
                out.push(b' ');
                out.extend_from_slice(body);
            }
            RcvMsgBody::Quota { ts } => {
                out.extend_from_slice(b"QUOTA ");
                ts.encode(&mut out);
            }
        }
        out
    }
}

/// Parses a decrypted `MSG` plaintext (reference: quota marker first, then the message form).
pub fn parse_rcv_msg_body(plain: &[u8]) -> Result<RcvMsgBody, DecodeError> {
    let mut p = Parser::new(plain);
    if p.try_literal(b"QUOTA ") {
        let ts = p.int64()?;
        p.finish()?;
        return Ok(RcvMsgBody::Quota { ts });
    }
    let ts = p.int64()?;
    let notification = p.bool()?;
    // Reserved flag bytes: skipped up to the space.
    while p.peek().is_some_and(|c| c != b' ') {
        p.byte()?;
    }
    p.space()?;
    Ok(RcvMsgBody::Message {
        ts,
        flags: MsgFlags { notification },
        body: p.tail().to_vec(),
    })
}

/// A decrypted `NMSG`: which message arrived and when (the notifier never sees the body).
#[derive(Clone, PartialEq, Eq)]
pub struct NMsgMeta {
    pub msg_id: Vec<u8>,
    pub ts: i64,
}

impl std::fmt::Debug for NMsgMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NMsgMeta")
            .field("ts", &self.ts)
            .finish_non_exhaustive()
    }
}

/// Decrypts `NMSG nonce encMeta` with the `rcvNtfDhSecret` (X25519 of the relay's `NID` key
/// and the recipient's notification DH private key) and parses it.
pub fn decrypt_nmsg(
    rcv_ntf_dh_secret: &DhSecret,
    nonce: &[u8; 24],
    enc_meta: &[u8],
) -> Result<NMsgMeta, ClientError> {
    let plain = decrypt_nmsg_meta(rcv_ntf_dh_secret, nonce, enc_meta)?;
    Ok(parse_nmsg_meta(&plain)?)
}

/// Parses `shortString msgId ‖ Int64 ts` (trailing bytes are ignored, as unknown extensions).
pub fn parse_nmsg_meta(plain: &[u8]) -> Result<NMsgMeta, DecodeError> {
    let mut p = Parser::new(plain);
    let msg_id = p.short_string()?.to_vec();
    let ts = p.int64()?;
    Ok(NMsgMeta { msg_id, ts })
}
