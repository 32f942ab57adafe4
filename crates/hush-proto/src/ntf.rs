//! NTF protocol v3 commands, responses and framing helpers (reference §5.1–§5.3; upstream
//! `Notifications/Protocol.hs`, `Notifications/Transport.hs`).
//!
//! ```text
//! TNEW SP 'T' deviceToken verifyKey(SPKI) dhKey(X25519 SPKI)   -> IDTKN SP tokenId srvDhKey
//! TVFY SP regCode                                             -> OK
//! TCHK                                                        -> TKN SP status
//! TRPL SP deviceToken                                         -> OK
//! TDEL                                                        -> OK
//! TCRN SP Word16 minutes                                      -> OK
//! SNEW SP 'S' tokenId smpServer notifierId notifierKey(PKCS#8) -> IDSUB SP subId
//! SCHK                                                        -> SUB SP status
//! SDEL                                                        -> OK
//! PING                                                        -> PONG
//! deviceToken = provider(2 chars) ‖ shortString token
//! ```
//!
//! Errors are the SMP [`ErrorType`] (`ERR SP error`). NTF transmissions never have a
//! service-signature slot; at v1 the session id is on the wire and blocks are unbatched
//! (one bare transmission per padded block), from v2 the session id is implied and blocks
//! are batched like SMP ([`ntf_block_content`], [`decode_ntf_block_content`]).
//!
//! Keys are carried as DER bytes ([`PublicKeyDer`], [`PrivateKeyDer`]); their algorithm is
//! checked from the canonical DER prefix, nothing more (no crypto in this crate).

use std::fmt;

use crate::address::{AddressError, KeyAlgorithm, ProtocolServer, ProtocolType, SmpServer};
use crate::encoding::{
    Decode, DecodeError, Encode, EncodeError, Parser, base64url_decode, base64url_encode,
    put_short_string, put_word16,
};
use crate::error::{CommandError, ErrorType};
use crate::transmission::{
    Layout, Transmission, batch_one, decode_batch, decode_transmission_with,
    encode_transmission_with,
};
use crate::version::ntf_version;

// ---------------------------------------------------------------------------------------------
// keys

/// Public keys are the SMP module's SPKI DER wrapper (checked algorithm, shortString on the
/// wire): `PublicKeyDer::auth_key` for verify keys, `PublicKeyDer::dh_key` for X25519 keys.
pub use crate::smp::PublicKeyDer;

/// A private key as PKCS#8 v1 DER (only `SNEW` carries one). Its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKeyDer {
    alg: KeyAlgorithm,
    der: Vec<u8>,
}

impl PrivateKeyDer {
    /// Accepts the canonical PKCS#8 DER of Ed25519, Ed448, X25519 or X448.
    pub fn new(der: impl Into<Vec<u8>>) -> Result<PrivateKeyDer, DecodeError> {
        let der = der.into();
        let alg = KeyAlgorithm::of_pkcs8(&der).ok_or(DecodeError::Invalid("private key DER"))?;
        Ok(PrivateKeyDer { alg, der })
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    pub fn as_der(&self) -> &[u8] {
        &self.der
    }
}

impl fmt::Debug for PrivateKeyDer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKeyDer({:?}, ..)", self.alg)
    }
}

impl Encode for PrivateKeyDer {
    fn encode(&self, out: &mut Vec<u8>) {
        let _ = put_short_string(out, &self.der);
    }
}

/// Algorithms allowed for command authorization keys (reference `AuthAlgorithm`).
pub const AUTH_KEY_ALGORITHMS: [KeyAlgorithm; 3] = [
    KeyAlgorithm::Ed25519,
    KeyAlgorithm::Ed448,
    KeyAlgorithm::X25519,
];

// ---------------------------------------------------------------------------------------------
// push providers and device tokens

/// Push provider of a device token.
///
/// `PH` is hush's own: the "token" is an opaque push handle issued by a hush push-server (split
/// mode), so the ntf-server never learns the device token. Reference NTF servers and clients
/// reject unknown codes (`ERR CMD SYNTAX`), so `PH` is only used between hush clients and hush
/// servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PushProvider {
    /// `AD` / `apns_dev`: Apple development (sandbox) environment.
    ApnsDev,
    /// `AP` / `apns_prod`: Apple production, including TestFlight.
    ApnsProd,
    /// `AT` / `apns_test`: APNs mock server used by tests.
    ApnsTest,
    /// `AN` / `apns_null`: never pushed (the apps' "test server" button).
    ApnsNull,
    /// `PH` / `hush_push_handle`: an opaque push handle from a hush push-server (base64url text,
    /// no padding), not a device token.
    PushHandle,
}

impl PushProvider {
    pub const ALL: [PushProvider; 5] = [
        PushProvider::ApnsDev,
        PushProvider::ApnsProd,
        PushProvider::ApnsTest,
        PushProvider::ApnsNull,
        PushProvider::PushHandle,
    ];

    /// Two-letter wire code.
    pub const fn code(self) -> &'static [u8; 2] {
        match self {
            PushProvider::ApnsDev => b"AD",
            PushProvider::ApnsProd => b"AP",
            PushProvider::ApnsTest => b"AT",
            PushProvider::ApnsNull => b"AN",
            PushProvider::PushHandle => b"PH",
        }
    }

    pub fn from_code(c: &[u8]) -> Option<PushProvider> {
        Self::ALL.into_iter().find(|p| p.code() == c)
    }

    /// Text name (store logs, JSON, CLI).
    pub const fn name(self) -> &'static str {
        match self {
            PushProvider::ApnsDev => "apns_dev",
            PushProvider::ApnsProd => "apns_prod",
            PushProvider::ApnsTest => "apns_test",
            PushProvider::ApnsNull => "apns_null",
            PushProvider::PushHandle => "hush_push_handle",
        }
    }

    pub fn from_name(s: &str) -> Option<PushProvider> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    /// The APNs host for real APNs providers (`None` for the test mock and null provider).
    pub const fn apns_host(self) -> Option<&'static str> {
        match self {
            PushProvider::ApnsDev => Some("api.sandbox.push.apple.com"),
            PushProvider::ApnsProd => Some("api.push.apple.com"),
            PushProvider::ApnsTest | PushProvider::ApnsNull | PushProvider::PushHandle => None,
        }
    }
}

impl Encode for PushProvider {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.code());
    }
}

impl Decode for PushProvider {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        PushProvider::from_code(p.take(2)?).ok_or(DecodeError::Invalid("push provider"))
    }
}

/// The token of the apps' "test server" button (`apns_null test_ntf_token`).
pub const TEST_NTF_TOKEN: &[u8] = b"test_ntf_token";

/// A device token: provider and token bytes. For APNs the bytes are the token as lowercase
/// hex text (used verbatim in the APNs URL path), not the raw token.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceToken {
    pub provider: PushProvider,
    pub token: Vec<u8>,
}

impl DeviceToken {
    /// Text form `<provider name> <token>`.
    pub fn to_text(&self) -> String {
        format!(
            "{} {}",
            self.provider.name(),
            String::from_utf8_lossy(&self.token)
        )
    }

    /// Parses the text form: `apns_null test_ntf_token`, or a provider name, a space and an
    /// even number of lowercase hex digits.
    pub fn parse_text(s: &str) -> Result<DeviceToken, DecodeError> {
        if s == "apns_null test_ntf_token" {
            return Ok(DeviceToken {
                provider: PushProvider::ApnsNull,
                token: TEST_NTF_TOKEN.to_vec(),
            });
        }
        let (name, hex) = s
            .split_once(' ')
            .ok_or(DecodeError::Invalid("device token"))?;
        let provider = PushProvider::from_name(name).ok_or(DecodeError::Invalid("provider"))?;
        if provider == PushProvider::PushHandle {
            let ok = !hex.is_empty()
                && hex.len() <= 255
                && hex
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
            return if ok {
                Ok(DeviceToken {
                    provider,
                    token: hex.as_bytes().to_vec(),
                })
            } else {
                Err(DecodeError::Invalid("push handle"))
            };
        }
        if hex.len() % 2 != 0 || !hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DecodeError::Invalid("device token hex"));
        }
        Ok(DeviceToken {
            provider,
            token: hex.as_bytes().to_vec(),
        })
    }
}

impl fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens identify devices: keep them out of logs.
        write!(f, "DeviceToken({}, ..)", self.provider.name())
    }
}

/// Binary form: provider code ‖ shortString token. Tokens longer than 255 bytes cannot be
/// built through the decoders; [`NtfCommand::encode_checked`] rejects them.
impl Encode for DeviceToken {
    fn encode(&self, out: &mut Vec<u8>) {
        self.provider.encode(out);
        let _ = put_short_string(out, &self.token);
    }
}

impl Decode for DeviceToken {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        Ok(DeviceToken {
            provider: p.decode()?,
            token: p.short_string()?.to_vec(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// SMP queue reference

/// The SMP queue an NTF subscription is for (reference `SMPQueueNtf`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SmpQueueNtf {
    /// `smp` scheme; normalised with [`ProtocolServer::update_legacy_hosts`] when parsed.
    pub server: ProtocolServer,
    pub notifier_id: Vec<u8>,
}

impl SmpQueueNtf {
    /// Text form `<smp server>/<base64url notifierId>`.
    pub fn to_text(&self) -> String {
        format!(
            "{}/{}",
            self.server.to_text(),
            base64url_encode(&self.notifier_id)
        )
    }

    /// Parses the text form from the start of `p` (the legacy preset hosts are normalised).
    pub fn parse_prefix(p: &mut Parser<'_>) -> Result<SmpQueueNtf, AddressError> {
        let (server, auth) = ProtocolServer::parse_prefix(p)?;
        if auth.is_some() || server.scheme() != ProtocolType::Smp {
            return Err(AddressError::Syntax("queue server"));
        }
        if p.peek() != Some(b'/') {
            return Err(AddressError::Syntax("expected /"));
        }
        let _ = p.byte();
        let notifier_id = b64_token(p)?;
        Ok(SmpQueueNtf {
            server: server.update_legacy_hosts(),
            notifier_id,
        })
    }
}

impl fmt::Display for SmpQueueNtf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl std::str::FromStr for SmpQueueNtf {
    type Err = AddressError;
    /// Parses the whole text form (store logs).
    fn from_str(s: &str) -> Result<SmpQueueNtf, AddressError> {
        let mut p = Parser::new(s.as_bytes());
        let q = SmpQueueNtf::parse_prefix(&mut p)?;
        if p.is_empty() {
            Ok(q)
        } else {
            Err(AddressError::Syntax("trailing characters"))
        }
    }
}

/// Binary form: smpServer ‖ shortString notifierId (server normalised on decode).
impl Encode for SmpQueueNtf {
    fn encode(&self, out: &mut Vec<u8>) {
        self.server.encode_binary(out);
        let _ = put_short_string(out, &self.notifier_id);
    }
}

impl Decode for SmpQueueNtf {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        let SmpServer(server) = p.decode()?;
        Ok(SmpQueueNtf {
            server: server.update_legacy_hosts(),
            notifier_id: p.short_string()?.to_vec(),
        })
    }
}

fn b64_token(p: &mut Parser<'_>) -> Result<Vec<u8>, AddressError> {
    let r = p.remaining();
    let body = r
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-' || **c == b'_')
        .count();
    if body == 0 {
        return Err(AddressError::Syntax("base64url"));
    }
    let pads = r.iter().skip(body).take_while(|c| **c == b'=').count();
    let tok = p
        .take(body + pads)
        .map_err(|_| AddressError::Syntax("base64url"))?;
    let tok = std::str::from_utf8(tok).map_err(|_| AddressError::Syntax("base64url"))?;
    base64url_decode(tok).map_err(|_| AddressError::Syntax("base64url"))
}

// ---------------------------------------------------------------------------------------------
// statuses

/// Why a token became invalid (sent to clients from v3 only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvalidReason {
    /// `BAD` — APNs 400 BadDeviceToken.
    BadToken,
    /// `TOPIC` — APNs 400 DeviceTokenNotForTopic.
    TokenNotForTopic,
    /// `EXPIRED` — APNs 410 ExpiredToken.
    ExpiredToken,
    /// `UNREGISTERED` — APNs 410 Unregistered.
    Unregistered,
}

impl InvalidReason {
    pub const fn wire(self) -> &'static str {
        match self {
            InvalidReason::BadToken => "BAD",
            InvalidReason::TokenNotForTopic => "TOPIC",
            InvalidReason::ExpiredToken => "EXPIRED",
            InvalidReason::Unregistered => "UNREGISTERED",
        }
    }

    fn from_wire(s: &[u8]) -> Option<InvalidReason> {
        match s {
            b"BAD" => Some(InvalidReason::BadToken),
            b"TOPIC" => Some(InvalidReason::TokenNotForTopic),
            b"EXPIRED" => Some(InvalidReason::ExpiredToken),
            b"UNREGISTERED" => Some(InvalidReason::Unregistered),
            _ => None,
        }
    }
}

/// Token status (`TKN`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenStatus {
    New,
    Registered,
    /// `INVALID[,reason]` (the reason only at v≥3).
    Invalid(Option<InvalidReason>),
    Confirmed,
    Active,
    Expired,
}

impl TokenStatus {
    /// `TVFY` is allowed (REGISTERED, CONFIRMED, ACTIVE).
    pub const fn allows_verification(self) -> bool {
        matches!(
            self,
            TokenStatus::Registered | TokenStatus::Confirmed | TokenStatus::Active
        )
    }

    /// `SNEW`/`SCHK`/`SDEL` are allowed (ACTIVE, INVALID, EXPIRED).
    pub const fn allows_sub_commands(self) -> bool {
        matches!(
            self,
            TokenStatus::Active | TokenStatus::Invalid(_) | TokenStatus::Expired
        )
    }

    /// The status as sent at `version` (the INVALID reason is dropped below v3).
    pub fn for_version(self, version: u16) -> TokenStatus {
        match self {
            TokenStatus::Invalid(_) if version < ntf_version::INVALID_REASON => {
                TokenStatus::Invalid(None)
            }
            s => s,
        }
    }

    /// Text form (same as the wire form; used in store logs).
    pub fn to_text(self) -> String {
        String::from_utf8_lossy(&self.to_bytes()).into_owned()
    }

    /// Parses the whole text/wire form.
    pub fn parse_text(s: &str) -> Result<TokenStatus, DecodeError> {
        TokenStatus::from_bytes(s.as_bytes())
    }
}

impl Encode for TokenStatus {
    fn encode(&self, out: &mut Vec<u8>) {
        let s = match self {
            TokenStatus::New => "NEW",
            TokenStatus::Registered => "REGISTERED",
            TokenStatus::Invalid(r) => {
                out.extend_from_slice(b"INVALID");
                if let Some(r) = r {
                    out.push(b',');
                    out.extend_from_slice(r.wire().as_bytes());
                }
                ""
            }
            TokenStatus::Confirmed => "CONFIRMED",
            TokenStatus::Active => "ACTIVE",
            TokenStatus::Expired => "EXPIRED",
        };
        out.extend_from_slice(s.as_bytes());
    }
}

impl Decode for TokenStatus {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        let w = take_till(p, |c| c == b' ' || c == b',');
        Ok(match w {
            b"NEW" => TokenStatus::New,
            b"REGISTERED" => TokenStatus::Registered,
            b"INVALID" => {
                let save = p.clone();
                let reason = if p.peek() == Some(b',') {
                    let _ = p.byte();
                    InvalidReason::from_wire(take_till(p, |c| c == b' '))
                } else {
                    None
                };
                if reason.is_none() {
                    *p = save;
                }
                TokenStatus::Invalid(reason)
            }
            b"CONFIRMED" => TokenStatus::Confirmed,
            b"ACTIVE" => TokenStatus::Active,
            b"EXPIRED" => TokenStatus::Expired,
            _ => return Err(DecodeError::Invalid("token status")),
        })
    }
}

/// Subscription status (`SUB`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubStatus {
    /// After `SNEW`.
    New,
    /// Waiting for the SMP server (connecting / retrying).
    Pending,
    /// Subscribed on the SMP server.
    Active,
    /// Disconnected from the SMP server.
    Inactive,
    /// SMP `END` received.
    End,
    /// SMP `DELD` received.
    Deleted,
    /// SMP `AUTH` error.
    Auth,
    /// SMP `SERVICE` error.
    Service,
    /// Other SMP error: `ERR <text>` (text = rest of the input).
    Err(Vec<u8>),
}

impl SubStatus {
    /// The NTF server keeps (re)subscribing in this status.
    pub const fn should_subscribe(&self) -> bool {
        matches!(
            self,
            SubStatus::New
                | SubStatus::Pending
                | SubStatus::Active
                | SubStatus::Inactive
                | SubStatus::Service
        )
    }

    pub fn to_text(&self) -> String {
        String::from_utf8_lossy(&self.to_bytes()).into_owned()
    }

    pub fn parse_text(s: &str) -> Result<SubStatus, DecodeError> {
        SubStatus::from_bytes(s.as_bytes())
    }
}

impl Encode for SubStatus {
    fn encode(&self, out: &mut Vec<u8>) {
        let s: &[u8] = match self {
            SubStatus::New => b"NEW",
            SubStatus::Pending => b"PENDING",
            SubStatus::Active => b"ACTIVE",
            SubStatus::Inactive => b"INACTIVE",
            SubStatus::End => b"END",
            SubStatus::Deleted => b"DELETED",
            SubStatus::Auth => b"AUTH",
            SubStatus::Service => b"SERVICE",
            SubStatus::Err(e) => {
                out.extend_from_slice(b"ERR ");
                e
            }
        };
        out.extend_from_slice(s);
    }
}

impl Decode for SubStatus {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        Ok(match take_till(p, |c| c == b' ') {
            b"NEW" => SubStatus::New,
            b"PENDING" => SubStatus::Pending,
            b"ACTIVE" => SubStatus::Active,
            b"INACTIVE" => SubStatus::Inactive,
            b"END" => SubStatus::End,
            b"DELETED" => SubStatus::Deleted,
            b"AUTH" => SubStatus::Auth,
            b"SERVICE" => SubStatus::Service,
            b"ERR" => {
                p.space()?;
                SubStatus::Err(p.tail().to_vec())
            }
            _ => return Err(DecodeError::Invalid("subscription status")),
        })
    }
}

fn take_till<'a>(p: &mut Parser<'a>, stop: impl Fn(u8) -> bool) -> &'a [u8] {
    let n = p.remaining().iter().take_while(|c| !stop(**c)).count();
    p.take(n).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// commands

/// Which kind of entity a command addresses (`PING` counts as a subscription command, as in
/// the reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NtfEntity {
    Token,
    Subscription,
}

/// A client command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NtfCommand {
    /// Register a device token; authorized by `verify_key` (entity empty).
    Tnew {
        token: DeviceToken,
        /// Ed25519, Ed448 or X25519 SPKI.
        verify_key: PublicKeyDer,
        /// X25519 SPKI.
        dh_key: PublicKeyDer,
    },
    /// Verify the token with the code from the verification push.
    Tvfy { code: Vec<u8> },
    /// Token status (`TKN`).
    Tchk,
    /// Replace the device token, keeping subscriptions.
    Trpl { token: DeviceToken },
    /// Delete the token and its subscriptions.
    Tdel,
    /// Periodic "check messages" pushes every `minutes` (0 = off, else ≥ 20).
    Tcrn { minutes: u16 },
    /// Create a subscription; authorized by the token key (entity empty).
    Snew {
        token_id: Vec<u8>,
        queue: SmpQueueNtf,
        /// Ed25519, Ed448 or X25519 PKCS#8.
        notifier_key: PrivateKeyDer,
    },
    /// Subscription status (`SUB`).
    Schk,
    /// Delete the subscription.
    Sdel,
    /// Keep-alive (no authorization, no entity).
    Ping,
}

impl NtfCommand {
    pub const fn tag(&self) -> &'static str {
        match self {
            NtfCommand::Tnew { .. } => "TNEW",
            NtfCommand::Tvfy { .. } => "TVFY",
            NtfCommand::Tchk => "TCHK",
            NtfCommand::Trpl { .. } => "TRPL",
            NtfCommand::Tdel => "TDEL",
            NtfCommand::Tcrn { .. } => "TCRN",
            NtfCommand::Snew { .. } => "SNEW",
            NtfCommand::Schk => "SCHK",
            NtfCommand::Sdel => "SDEL",
            NtfCommand::Ping => "PING",
        }
    }

    pub const fn entity(&self) -> NtfEntity {
        match self {
            NtfCommand::Tnew { .. }
            | NtfCommand::Tvfy { .. }
            | NtfCommand::Tchk
            | NtfCommand::Trpl { .. }
            | NtfCommand::Tdel
            | NtfCommand::Tcrn { .. } => NtfEntity::Token,
            _ => NtfEntity::Subscription,
        }
    }

    /// Encodes the command; fails if a variable-length field exceeds 255 bytes.
    pub fn encode_checked(&self, _version: u16) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        out.extend_from_slice(self.tag().as_bytes());
        match self {
            NtfCommand::Tnew {
                token,
                verify_key,
                dh_key,
            } => {
                out.extend_from_slice(b" T");
                token.provider.encode(&mut out);
                put_short_string(&mut out, &token.token)?;
                verify_key.encode(&mut out);
                dh_key.encode(&mut out);
            }
            NtfCommand::Tvfy { code } => {
                out.push(b' ');
                put_short_string(&mut out, code)?;
            }
            NtfCommand::Trpl { token } => {
                out.push(b' ');
                token.provider.encode(&mut out);
                put_short_string(&mut out, &token.token)?;
            }
            NtfCommand::Tcrn { minutes } => {
                out.push(b' ');
                put_word16(&mut out, *minutes);
            }
            NtfCommand::Snew {
                token_id,
                queue,
                notifier_key,
            } => {
                out.extend_from_slice(b" S");
                put_short_string(&mut out, token_id)?;
                queue.server.encode_binary(&mut out);
                put_short_string(&mut out, &queue.notifier_id)?;
                notifier_key.encode(&mut out);
            }
            NtfCommand::Tchk
            | NtfCommand::Tdel
            | NtfCommand::Schk
            | NtfCommand::Sdel
            | NtfCommand::Ping => {}
        }
        Ok(out)
    }

    /// Parses a command (tag and parameters, the whole input). Unknown tag →
    /// `CMD UNKNOWN`, anything else wrong → `CMD SYNTAX` (reference `parseProtocol`).
    pub fn parse(command: &[u8], _version: u16) -> Result<NtfCommand, ErrorType> {
        let split = command
            .iter()
            .position(|c| *c == b' ')
            .unwrap_or(command.len());
        let (tag, params) = command.split_at(split);
        let syntax = || ErrorType::Cmd(CommandError::Syntax);
        let mut p = Parser::new(params);
        let cmd = match tag {
            b"TNEW" => Self::new_entity(&mut p, b'T').map_err(|_| syntax())?,
            b"TVFY" => {
                p.space().map_err(|_| syntax())?;
                NtfCommand::Tvfy {
                    code: p.short_string().map_err(|_| syntax())?.to_vec(),
                }
            }
            b"TCHK" => NtfCommand::Tchk,
            b"TRPL" => {
                p.space().map_err(|_| syntax())?;
                NtfCommand::Trpl {
                    token: p.decode().map_err(|_| syntax())?,
                }
            }
            b"TDEL" => NtfCommand::Tdel,
            b"TCRN" => {
                p.space().map_err(|_| syntax())?;
                NtfCommand::Tcrn {
                    minutes: p.word16().map_err(|_| syntax())?,
                }
            }
            b"SNEW" => Self::new_entity(&mut p, b'S').map_err(|_| syntax())?,
            b"SCHK" => NtfCommand::Schk,
            b"SDEL" => NtfCommand::Sdel,
            b"PING" => NtfCommand::Ping,
            _ => return Err(ErrorType::Cmd(CommandError::Unknown)),
        };
        p.finish().map_err(|_| syntax())?;
        Ok(cmd)
    }

    /// `SP 'T' …` / `SP 'S' …`; the entity letter must match the tag's entity.
    fn new_entity(p: &mut Parser<'_>, letter: u8) -> Result<NtfCommand, DecodeError> {
        p.space()?;
        p.expect(letter, "entity letter")?;
        Ok(if letter == b'T' {
            NtfCommand::Tnew {
                token: p.decode()?,
                verify_key: PublicKeyDer::auth_key(p.short_string()?)?,
                dh_key: PublicKeyDer::dh_key(p.short_string()?)?,
            }
        } else {
            let token_id = p.short_string()?.to_vec();
            let queue = p.decode()?;
            let key = PrivateKeyDer::new(p.short_string()?)?;
            if !AUTH_KEY_ALGORITHMS.contains(&key.alg) {
                return Err(DecodeError::Invalid("notifier key algorithm"));
            }
            NtfCommand::Snew {
                token_id,
                queue,
                notifier_key: key,
            }
        })
    }

    /// Server-side credential rules (reference `checkCredentials` for `NtfCommand`):
    /// `TNEW`/`SNEW` need an authorization and an empty entity; `PING` needs neither;
    /// every other command needs both.
    pub fn check_credentials(&self, has_auth: bool, entity_id: &[u8]) -> Result<(), ErrorType> {
        let err = |e| Err(ErrorType::Cmd(e));
        match self {
            NtfCommand::Tnew { .. } | NtfCommand::Snew { .. } => {
                if !has_auth {
                    err(CommandError::NoAuth)
                } else if !entity_id.is_empty() {
                    err(CommandError::HasAuth)
                } else {
                    Ok(())
                }
            }
            NtfCommand::Ping => {
                if !has_auth && entity_id.is_empty() {
                    Ok(())
                } else {
                    err(CommandError::HasAuth)
                }
            }
            _ => {
                if !has_auth || entity_id.is_empty() {
                    err(CommandError::NoAuth)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// What the NTF server does with a received transmission before looking at its store
    /// (reference `tDecodeServer`): authorization size (0, 64, 80 or 114 bytes, else
    /// `BLOCK`), command parse (`CMD UNKNOWN` / `CMD SYNTAX`), credentials. The reply to an
    /// error reuses the request's corrId and entityId, except `BLOCK`, which has an empty
    /// entity. Signature/authenticator verification is the caller's job.
    pub fn from_transmission(
        authorization: &[u8],
        entity_id: &[u8],
        command: &[u8],
        version: u16,
    ) -> Result<NtfCommand, ErrorType> {
        if !matches!(authorization.len(), 0 | 64 | 80 | 114) {
            return Err(ErrorType::Block);
        }
        let cmd = NtfCommand::parse(command, version)?;
        cmd.check_credentials(!authorization.is_empty(), entity_id)?;
        Ok(cmd)
    }
}

/// The v3 encoding; fields that exceed 255 bytes (only possible for values built by hand)
/// are written as nothing, use [`NtfCommand::encode_checked`] to get an error instead.
impl Encode for NtfCommand {
    fn encode(&self, out: &mut Vec<u8>) {
        if let Ok(v) = self.encode_checked(ntf_version::CURRENT) {
            out.extend_from_slice(&v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// responses

/// A server response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NtfResponse {
    /// `IDTKN tokenId srvDhKey` (entity empty).
    TknId {
        token_id: Vec<u8>,
        /// X25519 SPKI.
        server_dh_key: PublicKeyDer,
    },
    /// `IDSUB subId` (entity empty).
    SubId {
        sub_id: Vec<u8>,
    },
    Ok,
    Err(ErrorType),
    Tkn(TokenStatus),
    Sub(SubStatus),
    /// Entity empty.
    Pong,
}

impl NtfResponse {
    pub const fn tag(&self) -> &'static str {
        match self {
            NtfResponse::TknId { .. } => "IDTKN",
            NtfResponse::SubId { .. } => "IDSUB",
            NtfResponse::Ok => "OK",
            NtfResponse::Err(_) => "ERR",
            NtfResponse::Tkn(_) => "TKN",
            NtfResponse::Sub(_) => "SUB",
            NtfResponse::Pong => "PONG",
        }
    }

    /// Encodes the response for a peer at `version` (`TKN INVALID,<reason>` becomes
    /// `TKN INVALID` below v3). Fails if an id exceeds 255 bytes.
    pub fn encode_checked(&self, version: u16) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        out.extend_from_slice(self.tag().as_bytes());
        match self {
            NtfResponse::TknId {
                token_id,
                server_dh_key,
            } => {
                out.push(b' ');
                put_short_string(&mut out, token_id)?;
                server_dh_key.encode(&mut out);
            }
            NtfResponse::SubId { sub_id } => {
                out.push(b' ');
                put_short_string(&mut out, sub_id)?;
            }
            NtfResponse::Err(e) => {
                out.push(b' ');
                e.encode(&mut out);
            }
            NtfResponse::Tkn(s) => {
                out.push(b' ');
                s.for_version(version).encode(&mut out);
            }
            NtfResponse::Sub(s) => {
                out.push(b' ');
                s.encode(&mut out);
            }
            NtfResponse::Ok | NtfResponse::Pong => {}
        }
        Ok(out)
    }

    /// Encodes for `version`; an over-long id yields an `ERR INTERNAL` instead (cannot happen
    /// for 24-byte ids).
    pub fn encode_for_version(&self, version: u16) -> Vec<u8> {
        self.encode_checked(version)
            .unwrap_or_else(|_| b"ERR INTERNAL".to_vec())
    }

    /// Parses a response (the whole input). The parser does not depend on the version.
    pub fn parse(response: &[u8], _version: u16) -> Result<NtfResponse, ErrorType> {
        let split = response
            .iter()
            .position(|c| *c == b' ')
            .unwrap_or(response.len());
        let (tag, params) = response.split_at(split);
        let syntax = |_| ErrorType::Cmd(CommandError::Syntax);
        let mut p = Parser::new(params);
        let r = match tag {
            b"IDTKN" => {
                p.space().map_err(syntax)?;
                NtfResponse::TknId {
                    token_id: p.short_string().map_err(syntax)?.to_vec(),
                    server_dh_key: PublicKeyDer::dh_key(p.short_string().map_err(syntax)?)
                        .map_err(syntax)?,
                }
            }
            b"IDSUB" => {
                p.space().map_err(syntax)?;
                NtfResponse::SubId {
                    sub_id: p.short_string().map_err(syntax)?.to_vec(),
                }
            }
            b"OK" => NtfResponse::Ok,
            b"ERR" => {
                p.space().map_err(syntax)?;
                NtfResponse::Err(p.decode().map_err(syntax)?)
            }
            b"TKN" => {
                p.space().map_err(syntax)?;
                NtfResponse::Tkn(p.decode().map_err(syntax)?)
            }
            b"SUB" => {
                p.space().map_err(syntax)?;
                NtfResponse::Sub(p.decode().map_err(syntax)?)
            }
            b"PONG" => NtfResponse::Pong,
            _ => return Err(ErrorType::Cmd(CommandError::Unknown)),
        };
        p.finish().map_err(syntax)?;
        Ok(r)
    }

    /// Client-side entity rules (reference `checkCredentials` for `NtfResponse`): `IDTKN`,
    /// `IDSUB`, `PONG` must have an empty entity (`CMD HAS_AUTH`), `ERR` may have any, the
    /// others need one (`CMD NO_ENTITY`).
    pub fn check_entity(&self, entity_id: &[u8]) -> Result<(), ErrorType> {
        match self {
            NtfResponse::TknId { .. } | NtfResponse::SubId { .. } | NtfResponse::Pong => {
                if entity_id.is_empty() {
                    Ok(())
                } else {
                    Err(ErrorType::Cmd(CommandError::HasAuth))
                }
            }
            NtfResponse::Err(_) => Ok(()),
            _ => {
                if entity_id.is_empty() {
                    Err(ErrorType::Cmd(CommandError::NoEntity))
                } else {
                    Ok(())
                }
            }
        }
    }
}

impl Encode for NtfResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.encode_for_version(ntf_version::CURRENT));
    }
}

// ---------------------------------------------------------------------------------------------
// framing

/// The NTF transmission layout at `version` (no service slot; session id on the wire at v1).
pub const fn ntf_layout(version: u16) -> Layout {
    Layout::ntf(version)
}

/// Encodes one NTF transmission at `version`.
pub fn encode_ntf_transmission(
    out: &mut Vec<u8>,
    t: &Transmission<'_>,
    version: u16,
) -> Result<(), EncodeError> {
    encode_transmission_with(out, t, ntf_layout(version))
}

/// Decodes one NTF transmission at `version`.
pub fn decode_ntf_transmission(
    bytes: &[u8],
    version: u16,
) -> Result<Transmission<'_>, DecodeError> {
    decode_transmission_with(bytes, ntf_layout(version))
}

/// Block content (before `pad(…, 512)`) carrying one encoded transmission: at v1 the bare
/// transmission, from v2 a batch of one (`1 ‖ Large(transmission)`).
pub fn ntf_block_content(transmission: &[u8], version: u16) -> Result<Vec<u8>, EncodeError> {
    if version < ntf_version::AUTH_BATCH_CMDS {
        if transmission.len() + 2 > crate::version::NTF_BLOCK_SIZE {
            return Err(EncodeError::TooLong {
                len: transmission.len(),
                max: crate::version::NTF_BLOCK_SIZE - 2,
            });
        }
        Ok(transmission.to_vec())
    } else {
        batch_one(&[transmission], crate::version::NTF_BLOCK_SIZE)
    }
}

/// The transmissions in an (unpadded) block content at `version`.
pub fn decode_ntf_block_content(content: &[u8], version: u16) -> Result<Vec<&[u8]>, DecodeError> {
    if version < ntf_version::AUTH_BATCH_CMDS {
        Ok(vec![content])
    } else {
        decode_batch(content)
    }
}

// ---------------------------------------------------------------------------------------------
// PNMessages (text carried, encrypted, in APNs message pushes)

/// One notification in a push (reference `PNMessageData`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PnMessageData {
    pub queue: SmpQueueNtf,
    /// NTF server's receive time of the `NMSG`, seconds.
    pub ntf_ts: i64,
    pub nonce: [u8; 24],
    pub enc_meta: Vec<u8>,
}

impl PnMessageData {
    /// `<server>/<notifierId> <ts> <nonce> <encMeta>` (base64url with padding).
    pub fn to_text(&self) -> String {
        format!(
            "{} {} {} {}",
            self.queue.to_text(),
            self.ntf_ts,
            base64url_encode(&self.nonce),
            base64url_encode(&self.enc_meta)
        )
    }

    fn parse_prefix(p: &mut Parser<'_>) -> Result<PnMessageData, AddressError> {
        let queue = SmpQueueNtf::parse_prefix(p)?;
        space_t(p)?;
        // reference `A.signed A.decimal`: optional sign, then digits
        let neg = p.try_literal(b"-");
        if !neg {
            let _ = p.try_literal(b"+");
        }
        let digits = take_till(p, |c| !c.is_ascii_digit());
        let digits = std::str::from_utf8(digits).map_err(|_| AddressError::Syntax("timestamp"))?;
        let ntf_ts = format!("{}{digits}", if neg { "-" } else { "" })
            .parse::<i64>()
            .map_err(|_| AddressError::Syntax("timestamp"))?;
        space_t(p)?;
        let n = b64_token(p)?;
        // reference `cbNonce`: truncated or zero-padded to 24 bytes
        let mut nonce = [0u8; 24];
        for (d, s) in nonce.iter_mut().zip(n.iter()) {
            *d = *s;
        }
        space_t(p)?;
        let enc_meta = b64_token(p)?;
        Ok(PnMessageData {
            queue,
            ntf_ts,
            nonce,
            enc_meta,
        })
    }
}

fn space_t(p: &mut Parser<'_>) -> Result<(), AddressError> {
    p.space()
        .map_err(|_| AddressError::Syntax("expected space"))
}

/// Items joined by `;` (hosts inside an item are comma-separated), oldest first.
pub fn encode_pn_messages(items: &[PnMessageData]) -> String {
    items
        .iter()
        .map(PnMessageData::to_text)
        .collect::<Vec<_>>()
        .join(";")
}

/// Parses a non-empty `;`-separated list of notifications (the whole input).
pub fn parse_pn_messages(s: &str) -> Result<Vec<PnMessageData>, AddressError> {
    let mut p = Parser::new(s.as_bytes());
    let mut items = vec![PnMessageData::parse_prefix(&mut p)?];
    while p.try_literal(b";") {
        items.push(PnMessageData::parse_prefix(&mut p)?);
    }
    if !p.is_empty() {
        return Err(AddressError::Syntax("trailing characters"));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_status_versions() {
        let s = TokenStatus::Invalid(Some(InvalidReason::Unregistered));
        let r = NtfResponse::Tkn(s);
        assert_eq!(r.encode_for_version(3), b"TKN INVALID,UNREGISTERED");
        assert_eq!(r.encode_for_version(2), b"TKN INVALID");
        assert_eq!(r.encode_for_version(1), b"TKN INVALID");
        assert_eq!(NtfResponse::parse(b"TKN INVALID,UNREGISTERED", 3), Ok(r));
        assert!(NtfResponse::parse(b"TKN INVALID,FOO", 3).is_err());
        assert!(NtfResponse::parse(b"TKN INVALID,", 3).is_err());
    }

    #[test]
    fn credentials() {
        let ping = NtfCommand::Ping;
        assert!(ping.check_credentials(false, b"").is_ok());
        assert_eq!(
            ping.check_credentials(true, b""),
            Err(ErrorType::Cmd(CommandError::HasAuth))
        );
        assert_eq!(
            NtfCommand::Tchk.check_credentials(true, b""),
            Err(ErrorType::Cmd(CommandError::NoAuth))
        );
        assert!(NtfCommand::Tchk.check_credentials(true, b"id").is_ok());
        assert_eq!(
            NtfCommand::from_transmission(&[0; 10], b"", b"PING", 3),
            Err(ErrorType::Block)
        );
    }

    #[test]
    fn trailing_bytes_are_syntax_errors() {
        for c in [&b"TCHK "[..], b"PING x", b"TCRN \x00\x14\x00", b"TCRN"] {
            assert_eq!(
                NtfCommand::parse(c, 3),
                Err(ErrorType::Cmd(CommandError::Syntax)),
                "{c:?}"
            );
        }
    }

    #[test]
    fn push_handle_provider() {
        // `PH` + shortString(handle) parses in TNEW like any device token.
        let mut cmd = b"TNEW T".to_vec();
        let handle = b"AbC-_9";
        DeviceToken {
            provider: PushProvider::PushHandle,
            token: handle.to_vec(),
        }
        .encode(&mut cmd);
        assert_eq!(&cmd[6..9], b"PH\x06");
        let t = DeviceToken::parse_text("hush_push_handle AbC-_9").unwrap();
        assert_eq!(t.provider, PushProvider::PushHandle);
        assert!(DeviceToken::parse_text("hush_push_handle a+b").is_err());
        assert!(DeviceToken::parse_text("hush_push_handle ").is_err());
        assert_eq!(
            PushProvider::from_code(b"PH"),
            Some(PushProvider::PushHandle)
        );
    }

    #[test]
    fn device_token_text() {
        let t = DeviceToken::parse_text("apns_dev 0a1b").unwrap();
        assert_eq!(t.provider, PushProvider::ApnsDev);
        assert_eq!(t.token, b"0a1b");
        assert!(DeviceToken::parse_text("apns_dev 0A1B").is_err());
        assert!(DeviceToken::parse_text("apns_dev 0a1").is_err());
        assert!(DeviceToken::parse_text("apns_null other").is_err());
        assert!(DeviceToken::parse_text("fcm 0a1b").is_err());
    }
}
