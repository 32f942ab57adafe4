//! The SMP `ErrorType` (reference §3.4; upstream `Protocol.hs` `instance Encoding ErrorType`,
//! `CommandError`, `ProxyError`, `BrokerErrorType`, `BlockingInfo`; `Transport.hs`
//! `TransportError`). NTF reuses the same type.
//!
//! Wire form: ASCII words separated by single spaces (`CMD SYNTAX`, `PROXY BROKER TIMEOUT`,
//! `BLOCKED reason=spam,notice={"ttl":3600}`, `STORE <text>`). What follows `ERR ` is parsed
//! by [`ErrorType::decode`] (whole input) or the [`Decode`] impl (consumes what it needs; for
//! `STORE` and `BLOCKED` that is the rest of the input).

use crate::encoding::{Decode, DecodeError, Encode, Parser, ShortString};
use crate::version::smp_version;

/// Nesting limit for `PROXY PROTOCOL <ErrorType>` when parsing (the reference has none; a
/// peer could otherwise make us recurse ~1000 levels deep inside one block).
pub const MAX_ERROR_NESTING: usize = 8;

/// SMP protocol error (`ERR` payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorType {
    /// `BLOCK`: bad block/transmission format, bad authorization size.
    Block,
    /// `SESSION`: session id mismatch (v<7).
    Session,
    /// `CMD <sub>`.
    Cmd(CommandError),
    /// `PROXY <proxyError>`.
    Proxy(ProxyError),
    /// `AUTH`.
    Auth,
    /// `BLOCKED reason=…[,notice=…]` (`AUTH` below v12, notice dropped below v18).
    Blocked(BlockingInfo),
    /// `SERVICE`: service signature misuse.
    Service,
    /// `CRYPTO`: proxy layer decryption failure.
    Crypto,
    /// `QUOTA`.
    Quota,
    /// `STORE <text>` (text is the rest of the input, decoded lossily as UTF-8).
    Store(String),
    /// `NO_MSG`.
    NoMsg,
    /// `LARGE_MSG`.
    LargeMsg,
    /// `EXPIRED`.
    Expired,
    /// `INTERNAL`.
    Internal,
    /// `DUPLICATE_`: internal to the reference, never sent; parsed for completeness.
    Duplicate,
}

/// `CMD` sub-error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommandError {
    /// `UNKNOWN`: unknown command tag.
    Unknown,
    /// `SYNTAX`: parameters failed to parse.
    Syntax,
    /// `PROHIBITED`: not allowed (role, SUB/GET mix, bad client-chosen id…).
    Prohibited,
    /// `NO_AUTH`: required authorization or entity missing.
    NoAuth,
    /// `HAS_AUTH`: authorization or entity present where forbidden.
    HasAuth,
    /// `NO_ENTITY` (`NO_QUEUE` accepted when parsing).
    NoEntity,
}

/// `PROXY` sub-error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// `PROTOCOL <ErrorType>`: the relay's ERR, forwarded.
    Protocol(Box<ErrorType>),
    /// `BROKER <brokerError>`: destination server error.
    Broker(BrokerErrorType),
    /// `BASIC_AUTH`.
    BasicAuth,
    /// `NO_SESSION`.
    NoSession,
}

/// `BROKER` sub-error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerErrorType {
    /// `RESPONSE <shortString>`: unparsable response.
    Response(ShortString),
    /// `UNEXPECTED <shortString>`: unexpected response.
    Unexpected(ShortString),
    /// `NETWORK`: always sent bare; a detail after it (`NETWORK CONNECT …`) is accepted when
    /// parsing and discarded, like the reference.
    Network,
    /// `TIMEOUT`.
    Timeout,
    /// `HOST`.
    Host,
    /// `NO_SERVICE`.
    NoService,
    /// `TRANSPORT <transportError>`.
    Transport(TransportError),
}

/// Transport error as carried inside `BROKER TRANSPORT …` (reference `TransportError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportError {
    /// `BLOCK`.
    Block,
    /// `VERSION`.
    Version,
    /// `LARGE_MSG`.
    LargeMsg,
    /// `SESSION`.
    Session,
    /// `NO_AUTH`.
    NoAuth,
    /// `HANDSHAKE <err>`.
    Handshake(HandshakeError),
}

/// Handshake error (reference `HandshakeError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandshakeError {
    /// `PARSE`.
    Parse,
    /// `IDENTITY`.
    Identity,
    /// `BAD_AUTH`.
    BadAuth,
    /// `BAD_SERVICE`.
    BadService,
}

/// Why a queue was blocked, plus an optional client notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockingInfo {
    pub reason: BlockingReason,
    /// The notice JSON exactly as on the wire (`{"ttl":3600}` or `{}`), not interpreted here.
    /// Must be a JSON object text: starts with `{`, ends with `}`.
    pub notice: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockingReason {
    Spam,
    Content,
}

/// Next space-delimited word (may be empty).
fn word<'a>(p: &mut Parser<'a>) -> &'a [u8] {
    let rest = p.remaining();
    let n = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
    // Cannot fail: n ≤ remaining length.
    p.take(n).unwrap_or_default()
}

const BAD: DecodeError = DecodeError::Invalid("bad error type");

impl CommandError {
    pub const fn wire(&self) -> &'static str {
        match self {
            CommandError::Unknown => "UNKNOWN",
            CommandError::Syntax => "SYNTAX",
            CommandError::Prohibited => "PROHIBITED",
            CommandError::NoAuth => "NO_AUTH",
            CommandError::HasAuth => "HAS_AUTH",
            CommandError::NoEntity => "NO_ENTITY",
        }
    }
}

impl Encode for CommandError {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.wire().as_bytes());
    }
}

impl Decode for CommandError {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        Ok(match word(p) {
            b"UNKNOWN" => CommandError::Unknown,
            b"SYNTAX" => CommandError::Syntax,
            b"PROHIBITED" => CommandError::Prohibited,
            b"NO_AUTH" => CommandError::NoAuth,
            b"HAS_AUTH" => CommandError::HasAuth,
            b"NO_ENTITY" | b"NO_QUEUE" => CommandError::NoEntity,
            _ => return Err(DecodeError::Invalid("bad CommandError")),
        })
    }
}

impl HandshakeError {
    pub const fn wire(&self) -> &'static str {
        match self {
            HandshakeError::Parse => "PARSE",
            HandshakeError::Identity => "IDENTITY",
            HandshakeError::BadAuth => "BAD_AUTH",
            HandshakeError::BadService => "BAD_SERVICE",
        }
    }
}

impl Encode for HandshakeError {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.wire().as_bytes());
    }
}

impl Decode for HandshakeError {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        Ok(match word(p) {
            b"PARSE" => HandshakeError::Parse,
            b"IDENTITY" => HandshakeError::Identity,
            b"BAD_AUTH" => HandshakeError::BadAuth,
            b"BAD_SERVICE" => HandshakeError::BadService,
            _ => return Err(DecodeError::Invalid("bad HandshakeError")),
        })
    }
}

impl Encode for TransportError {
    fn encode(&self, out: &mut Vec<u8>) {
        let s: &str = match self {
            TransportError::Block => "BLOCK",
            TransportError::Version => "VERSION",
            TransportError::LargeMsg => "LARGE_MSG",
            TransportError::Session => "SESSION",
            TransportError::NoAuth => "NO_AUTH",
            TransportError::Handshake(e) => {
                out.extend_from_slice(b"HANDSHAKE ");
                e.wire()
            }
        };
        out.extend_from_slice(s.as_bytes());
    }
}

impl Decode for TransportError {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        Ok(match word(p) {
            b"BLOCK" => TransportError::Block,
            b"VERSION" => TransportError::Version,
            b"LARGE_MSG" => TransportError::LargeMsg,
            b"SESSION" => TransportError::Session,
            b"NO_AUTH" => TransportError::NoAuth,
            b"HANDSHAKE" => {
                p.space()?;
                TransportError::Handshake(p.decode()?)
            }
            _ => return Err(DecodeError::Invalid("bad TransportError")),
        })
    }
}

impl Encode for BrokerErrorType {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            BrokerErrorType::Response(s) => {
                out.extend_from_slice(b"RESPONSE ");
                s.encode(out)
            }
            BrokerErrorType::Unexpected(s) => {
                out.extend_from_slice(b"UNEXPECTED ");
                s.encode(out)
            }
            BrokerErrorType::Network => out.extend_from_slice(b"NETWORK"),
            BrokerErrorType::Timeout => out.extend_from_slice(b"TIMEOUT"),
            BrokerErrorType::Host => out.extend_from_slice(b"HOST"),
            BrokerErrorType::NoService => out.extend_from_slice(b"NO_SERVICE"),
            BrokerErrorType::Transport(e) => {
                out.extend_from_slice(b"TRANSPORT ");
                e.encode(out)
            }
        }
    }
}

/// Skips the optional detail of `NETWORK` (reference `NetworkError` binary form).
fn skip_network_detail(p: &mut Parser<'_>) {
    let save = p.clone();
    let ok = (|| -> Result<(), DecodeError> {
        p.space()?;
        match word(p) {
            b"CONNECT" | b"TLS" | b"SUBSCRIBE" => {
                p.space()?;
                p.short_string()?;
            }
            b"UNKNOWNCA" | b"FAILED" | b"TIMEOUT" => {}
            _ => return Err(BAD),
        }
        Ok(())
    })();
    if ok.is_err() {
        *p = save;
    }
}

impl Decode for BrokerErrorType {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        Ok(match word(p) {
            b"RESPONSE" => {
                p.space()?;
                BrokerErrorType::Response(p.decode()?)
            }
            b"UNEXPECTED" => {
                p.space()?;
                BrokerErrorType::Unexpected(p.decode()?)
            }
            b"NETWORK" => {
                skip_network_detail(p);
                BrokerErrorType::Network
            }
            b"TIMEOUT" => BrokerErrorType::Timeout,
            b"HOST" => BrokerErrorType::Host,
            b"NO_SERVICE" => BrokerErrorType::NoService,
            b"TRANSPORT" => {
                p.space()?;
                BrokerErrorType::Transport(p.decode()?)
            }
            _ => return Err(DecodeError::Invalid("bad BrokerErrorType")),
        })
    }
}

impl ProxyError {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ProxyError::Protocol(e) => {
                out.extend_from_slice(b"PROTOCOL ");
                e.encode(out)
            }
            ProxyError::Broker(e) => {
                out.extend_from_slice(b"BROKER ");
                e.encode(out)
            }
            ProxyError::BasicAuth => out.extend_from_slice(b"BASIC_AUTH"),
            ProxyError::NoSession => out.extend_from_slice(b"NO_SESSION"),
        }
    }

    fn parse(p: &mut Parser<'_>, depth: usize) -> Result<Self, DecodeError> {
        Ok(match word(p) {
            b"PROTOCOL" => {
                p.space()?;
                ProxyError::Protocol(Box::new(ErrorType::parse(p, depth + 1)?))
            }
            b"BROKER" => {
                p.space()?;
                ProxyError::Broker(p.decode()?)
            }
            b"BASIC_AUTH" => ProxyError::BasicAuth,
            b"NO_SESSION" => ProxyError::NoSession,
            _ => return Err(DecodeError::Invalid("bad ProxyError")),
        })
    }
}

impl BlockingReason {
    pub const fn wire(&self) -> &'static str {
        match self {
            BlockingReason::Spam => "spam",
            BlockingReason::Content => "content",
        }
    }
}

impl BlockingInfo {
    /// A notice must be a JSON object text.
    pub fn valid_notice(s: &str) -> bool {
        s.len() >= 2 && s.starts_with('{') && s.ends_with('}')
    }
}

impl Encode for BlockingInfo {
    /// `reason=<spam|content>[,notice=<JSON>]`.
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"reason=");
        out.extend_from_slice(self.reason.wire().as_bytes());
        if let Some(n) = &self.notice {
            out.extend_from_slice(b",notice=");
            out.extend_from_slice(n.as_bytes());
        }
    }
}

impl Decode for BlockingInfo {
    /// Consumes the rest of the input when a notice is present (the JSON runs to the end).
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        p.literal(b"reason=")?;
        let reason = if p.try_literal(b"spam") {
            BlockingReason::Spam
        } else if p.try_literal(b"content") {
            BlockingReason::Content
        } else {
            return Err(DecodeError::Invalid("bad BlockingReason"));
        };
        let notice = if p.remaining().starts_with(b",notice=") {
            let json = &p.remaining()[b",notice=".len()..];
            match std::str::from_utf8(json) {
                Ok(s) if BlockingInfo::valid_notice(s) => {
                    let s = s.to_owned();
                    p.tail();
                    Some(s)
                }
                // like the reference: the optional notice fails, leaving input behind
                _ => None,
            }
        } else {
            None
        };
        Ok(BlockingInfo { reason, notice })
    }
}

impl ErrorType {
    /// The form to send to a peer at `version` (reference `encodeProtocol` of `ERR`):
    /// `BLOCKED` becomes `AUTH` below v12, and its notice is dropped below v18.
    pub fn for_version(&self, version: u16) -> ErrorType {
        match self {
            ErrorType::Blocked(_) if version < smp_version::BLOCKED_ENTITY => ErrorType::Auth,
            ErrorType::Blocked(info) if version < smp_version::CLIENT_NOTICES => {
                ErrorType::Blocked(BlockingInfo {
                    reason: info.reason,
                    notice: None,
                })
            }
            e => e.clone(),
        }
    }

    /// Encodes the form for `version` (see [`ErrorType::for_version`]).
    pub fn encode_for_version(&self, out: &mut Vec<u8>, version: u16) {
        self.for_version(version).encode(out)
    }

    /// Parses a whole `ERR` payload (trailing bytes are an error).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        <Self as Decode>::from_bytes(bytes)
    }

    fn parse(p: &mut Parser<'_>, depth: usize) -> Result<Self, DecodeError> {
        if depth > MAX_ERROR_NESTING {
            return Err(DecodeError::Invalid("error type nested too deeply"));
        }
        Ok(match word(p) {
            b"BLOCK" => ErrorType::Block,
            b"SESSION" => ErrorType::Session,
            b"CMD" => {
                p.space()?;
                ErrorType::Cmd(p.decode()?)
            }
            b"PROXY" => {
                p.space()?;
                ErrorType::Proxy(ProxyError::parse(p, depth)?)
            }
            b"AUTH" => ErrorType::Auth,
            b"BLOCKED" => {
                p.space()?;
                ErrorType::Blocked(p.decode()?)
            }
            b"SERVICE" => ErrorType::Service,
            b"CRYPTO" => ErrorType::Crypto,
            b"QUOTA" => ErrorType::Quota,
            b"STORE" => {
                p.space()?;
                ErrorType::Store(String::from_utf8_lossy(p.tail()).into_owned())
            }
            b"NO_MSG" => ErrorType::NoMsg,
            b"LARGE_MSG" => ErrorType::LargeMsg,
            b"EXPIRED" => ErrorType::Expired,
            b"INTERNAL" => ErrorType::Internal,
            b"DUPLICATE_" => ErrorType::Duplicate,
            _ => return Err(BAD),
        })
    }
}

impl Encode for ErrorType {
    /// The unversioned (v18) form; use [`ErrorType::encode_for_version`] towards peers.
    fn encode(&self, out: &mut Vec<u8>) {
        let s: &str = match self {
            ErrorType::Block => "BLOCK",
            ErrorType::Session => "SESSION",
            ErrorType::Cmd(e) => {
                out.extend_from_slice(b"CMD ");
                e.wire()
            }
            ErrorType::Proxy(e) => {
                out.extend_from_slice(b"PROXY ");
                e.encode(out);
                ""
            }
            ErrorType::Auth => "AUTH",
            ErrorType::Blocked(info) => {
                out.extend_from_slice(b"BLOCKED ");
                info.encode(out);
                ""
            }
            ErrorType::Service => "SERVICE",
            ErrorType::Crypto => "CRYPTO",
            ErrorType::Quota => "QUOTA",
            ErrorType::Store(t) => {
                out.extend_from_slice(b"STORE ");
                t
            }
            ErrorType::NoMsg => "NO_MSG",
            ErrorType::LargeMsg => "LARGE_MSG",
            ErrorType::Expired => "EXPIRED",
            ErrorType::Internal => "INTERNAL",
            ErrorType::Duplicate => "DUPLICATE_",
        };
        out.extend_from_slice(s.as_bytes());
    }
}

impl Decode for ErrorType {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        ErrorType::parse(p, 0)
    }
}

impl From<CommandError> for ErrorType {
    fn from(e: CommandError) -> Self {
        ErrorType::Cmd(e)
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

impl std::error::Error for ErrorType {}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CMD {}", self.wire())
    }
}

impl std::error::Error for CommandError {}

/// Convenience for `RESPONSE`/`UNEXPECTED` texts longer than 255 bytes: truncates.
pub fn short_text(s: &str) -> ShortString {
    let b = s.as_bytes();
    // Cannot fail: at most 255 bytes.
    ShortString::new(b[..b.len().min(ShortString::MAX)].to_vec()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_and_blocked_take_the_rest() {
        let e = ErrorType::decode(b"STORE a b c").unwrap();
        assert_eq!(e, ErrorType::Store("a b c".into()));
        let e = ErrorType::decode(b"BLOCKED reason=spam,notice={}").unwrap();
        assert_eq!(
            e,
            ErrorType::Blocked(BlockingInfo {
                reason: BlockingReason::Spam,
                notice: Some("{}".into())
            })
        );
        assert!(ErrorType::decode(b"BLOCKED reason=spam,notice=x").is_err());
        assert!(ErrorType::decode(b"BLOCKED reason=spam ").is_err());
        assert!(ErrorType::decode(b"AUTH ").is_err());
        assert_eq!(
            ErrorType::decode(b"CMD NO_QUEUE").unwrap(),
            ErrorType::Cmd(CommandError::NoEntity)
        );
        assert_eq!(
            ErrorType::decode(b"PROXY BROKER NETWORK CONNECT \x03abc").unwrap(),
            ErrorType::Proxy(ProxyError::Broker(BrokerErrorType::Network))
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let mut s = b"PROXY PROTOCOL ".repeat(MAX_ERROR_NESTING);
        s.extend_from_slice(b"AUTH");
        assert!(ErrorType::decode(&s).is_ok());
        let mut s = b"PROXY PROTOCOL ".repeat(MAX_ERROR_NESTING + 1);
        s.extend_from_slice(b"AUTH");
        assert!(ErrorType::decode(&s).is_err());
    }
}
