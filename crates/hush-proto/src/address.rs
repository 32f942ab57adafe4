//! Server addresses, transport hosts, queue URIs and connection links (reference §2.1, §3.9,
//! §6.5; upstream `Protocol.hs` `ProtocolServer`, `Transport/Client.hs` `TransportHost`,
//! `Agent/Protocol.hs` `SMPQueueUri` / `ConnectionRequestUri` / `ConnShortLink`,
//! `Crypto/Ratchet.hs` `E2ERatchetParamsUri`, `Agent/QueryString.hs`).
//!
//! Text forms:
//!
//! ```text
//! server      = scheme "://" keyHash [":" basicAuth] "@" host *("," host) [":" port]
//! queue URI   = smp-server "/" senderId "#/?" "v=" range "&dh=" key ["&q=m|c"] ["&k=s"] ["&srv=" hosts]
//! full link   = ("simplex:" | "https://" host[:port]) "/" ("invitation" | "contact") "#/?" query
//! short link  = ("simplex:" | "https://" host) "/" type "#" [linkId "/"] linkKey ["?" h= p= c=]
//! ```
//!
//! Binary form of a server (inside `PRXY`, `SNEW`, queue info): `NonEmpty(shortString host) ‖
//! shortString port ‖ shortString keyHash` — the scheme is not on the wire.
//!
//! Keys appear only as DER bytes; the algorithm is recognised from the fixed DER prefix of the
//! canonical SPKI encodings (no crypto here). Everything that needs crypto (short-link key
//! derivation, link data encryption) belongs to other crates: short links are parsed and printed
//! as text only.
//!
//! Deliberate differences from the reference parser (all on inputs no reference encoder emits):
//! a last IPv4 octet above 255 makes the host a domain name (the reference wraps it modulo 256);
//! ports above 65535 in text forms are rejected; a basic-auth password is limited to printable
//! ASCII; hosts and ports decoded from binary must be UTF-8.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use thiserror::Error;

use crate::encoding::{
    Decode, DecodeError, Encode, EncodeError, Parser, base64url_decode, base64url_encode,
    base64url_encode_unpadded, put_short_string,
};
use crate::version::VersionRange;

/// Default SMP port when an address has none.
pub const SMP_DEFAULT_PORT: u16 = 5223;
/// Default NTF port when an address has none.
pub const NTF_DEFAULT_PORT: u16 = 443;
/// Default XFTP port when an address has none.
pub const XFTP_DEFAULT_PORT: u16 = 443;

/// SMP client (queue URI) version from which extra hosts are listed in the authority.
pub const SRV_HOSTNAMES_SMP_CLIENT_VERSION: u16 = 2;
/// SMP client version from which the legacy `k=s` flag is no longer emitted.
pub const SHORT_LINKS_SMP_CLIENT_VERSION: u16 = 4;
/// Lowest agent version; contact links are raised to it when parsed.
pub const MIN_SUPPORTED_AGENT_VERSION: u16 = 2;
/// e2e version from which KEM parameters are carried in ratchet parameters.
pub const PQ_RATCHET_E2E_VERSION: u16 = 3;

/// An address text or value that cannot be parsed or built.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AddressError {
    #[error("invalid address: {0}")]
    Syntax(&'static str),
    #[error(transparent)]
    TooLong(#[from] EncodeError),
}

fn syntax<T>(what: &'static str) -> Result<T, AddressError> {
    Err(AddressError::Syntax(what))
}

// ---------------------------------------------------------------------------------------------
// small text-parsing helpers over the byte cursor

fn take_while<'a>(p: &mut Parser<'a>, f: impl Fn(u8) -> bool) -> &'a [u8] {
    let n = p.remaining().iter().take_while(|c| f(**c)).count();
    p.take(n).unwrap_or_default()
}

fn take_while1<'a>(
    p: &mut Parser<'a>,
    f: impl Fn(u8) -> bool,
    what: &'static str,
) -> Result<&'a [u8], AddressError> {
    let s = take_while(p, f);
    if s.is_empty() { syntax(what) } else { Ok(s) }
}

fn char_p(p: &mut Parser<'_>, c: u8, what: &'static str) -> Result<(), AddressError> {
    if p.peek() == Some(c) {
        let _ = p.byte();
        Ok(())
    } else {
        syntax(what)
    }
}

fn opt_char(p: &mut Parser<'_>, c: u8) -> bool {
    if p.peek() == Some(c) {
        let _ = p.byte();
        true
    } else {
        false
    }
}

fn end_p(p: &Parser<'_>) -> Result<(), AddressError> {
    if p.is_empty() {
        Ok(())
    } else {
        syntax("trailing characters")
    }
}

/// Decimal digits (at least one) as a u64; fails on overflow.
fn decimal_p(p: &mut Parser<'_>) -> Result<u64, AddressError> {
    let digits = take_while1(p, |c| c.is_ascii_digit(), "number")?;
    let mut v: u64 = 0;
    for d in digits {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
            .ok_or(AddressError::Syntax("number too large"))?;
    }
    Ok(v)
}

fn is_b64url_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// The reference `base64urlP`: `[A-Za-z0-9_-]+` then `=*`, decoded (padding optional).
fn base64url_p(p: &mut Parser<'_>) -> Result<Vec<u8>, AddressError> {
    let save = p.clone();
    let body = take_while1(p, is_b64url_char, "base64url")?;
    let pad = take_while(p, |c| c == b'=');
    let mut s = String::with_capacity(body.len() + pad.len());
    for c in body.iter().chain(pad) {
        s.push(char::from(*c));
    }
    match base64url_decode(&s) {
        Ok(v) => Ok(v),
        Err(_) => {
            *p = save;
            syntax("base64url")
        }
    }
}

fn utf8(b: &[u8], what: &'static str) -> Result<String, AddressError> {
    String::from_utf8(b.to_vec()).map_err(|_| AddressError::Syntax(what))
}

fn parse_all<T>(
    s: &[u8],
    f: impl FnOnce(&mut Parser<'_>) -> Result<T, AddressError>,
) -> Result<T, AddressError> {
    let mut p = Parser::new(s);
    let v = f(&mut p)?;
    end_p(&p)?;
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// URL query strings (http-types `renderSimpleQuery False` / `parseSimpleQuery`)

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes all but `A-Za-z0-9-_.~`, upper-case hex (http-types `urlEncode True`).
pub fn url_encode(s: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &c in s {
        if is_unreserved(c) {
            out.push(char::from(c));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(c >> 4)]));
            out.push(char::from(HEX[usize::from(c & 15)]));
        }
    }
    out
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` (either case) and `+` as space; malformed `%` sequences are kept as they are
/// (http-types `urlDecode True`).
pub fn url_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        match c {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                s.get(i + 1).copied().and_then(hex_val),
                s.get(i + 2).copied().and_then(hex_val),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// A parsed query string: decoded `(name, value)` pairs in order; lookups take the first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query(pub Vec<(Vec<u8>, Vec<u8>)>);

impl Query {
    /// Splits on `&` and `;`, then at the first `=` (a missing value is empty).
    pub fn parse(s: &[u8]) -> Query {
        let s = s.strip_prefix(b"?").unwrap_or(s);
        if s.is_empty() {
            return Query(Vec::new());
        }
        Query(
            s.split(|c| *c == b'&' || *c == b';')
                .map(|pair| match pair.iter().position(|c| *c == b'=') {
                    Some(i) => (url_decode(&pair[..i]), url_decode(&pair[i + 1..])),
                    None => (url_decode(pair), Vec::new()),
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// Renders `name=value&...` with both sides percent-encoded.
    pub fn render_escaped(params: &[(&str, &[u8])]) -> String {
        let mut out = String::new();
        for (i, (n, v)) in params.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(&url_encode(n.as_bytes()));
            out.push('=');
            out.push_str(&url_encode(v));
        }
        out
    }
}

/// The query text that follows in a link: everything up to a space or newline.
fn query_p(p: &mut Parser<'_>) -> Query {
    Query::parse(take_while(p, |c| c != b' ' && c != b'\n'))
}

// ---------------------------------------------------------------------------------------------
// DER key recognition

/// Key algorithms that appear in SMP / NTF / agent messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    Ed25519,
    Ed448,
    X25519,
    X448,
}

impl KeyAlgorithm {
    const ALL: [KeyAlgorithm; 4] = [
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Ed448,
        KeyAlgorithm::X25519,
        KeyAlgorithm::X448,
    ];

    /// Raw key length.
    pub const fn key_len(self) -> usize {
        match self {
            KeyAlgorithm::Ed25519 | KeyAlgorithm::X25519 => 32,
            KeyAlgorithm::Ed448 => 57,
            KeyAlgorithm::X448 => 56,
        }
    }

    /// Fixed DER prefix of the X.509 SubjectPublicKeyInfo.
    pub const fn spki_prefix(self) -> &'static [u8] {
        match self {
            KeyAlgorithm::Ed25519 => b"\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00",
            KeyAlgorithm::X25519 => b"\x30\x2a\x30\x05\x06\x03\x2b\x65\x6e\x03\x21\x00",
            KeyAlgorithm::Ed448 => b"\x30\x43\x30\x05\x06\x03\x2b\x65\x71\x03\x3a\x00",
            KeyAlgorithm::X448 => b"\x30\x42\x30\x05\x06\x03\x2b\x65\x6f\x03\x39\x00",
        }
    }

    /// Fixed DER prefix of the PKCS#8 v1 private key (no attributes, no public key).
    pub const fn pkcs8_prefix(self) -> &'static [u8] {
        match self {
            KeyAlgorithm::Ed25519 => {
                b"\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20"
            }
            KeyAlgorithm::X25519 => {
                b"\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x6e\x04\x22\x04\x20"
            }
            KeyAlgorithm::Ed448 => {
                b"\x30\x47\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x71\x04\x3b\x04\x39"
            }
            KeyAlgorithm::X448 => {
                b"\x30\x46\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x6f\x04\x3a\x04\x38"
            }
        }
    }

    /// The algorithm of a canonical SPKI DER public key.
    pub fn of_spki(der: &[u8]) -> Option<KeyAlgorithm> {
        Self::ALL.into_iter().find(|a| {
            der.len() == a.spki_prefix().len() + a.key_len() && der.starts_with(a.spki_prefix())
        })
    }

    /// The algorithm of a canonical PKCS#8 DER private key.
    pub fn of_pkcs8(der: &[u8]) -> Option<KeyAlgorithm> {
        Self::ALL.into_iter().find(|a| {
            der.len() == a.pkcs8_prefix().len() + a.key_len() && der.starts_with(a.pkcs8_prefix())
        })
    }

    pub const fn is_dh(self) -> bool {
        matches!(self, KeyAlgorithm::X25519 | KeyAlgorithm::X448)
    }
}

/// A base64url DER public key of one of `algs`.
fn spki_p(p: &mut Parser<'_>, algs: &[KeyAlgorithm]) -> Result<Vec<u8>, AddressError> {
    let save = p.clone();
    let der = base64url_p(p)?;
    match KeyAlgorithm::of_spki(&der) {
        Some(a) if algs.contains(&a) => Ok(der),
        _ => {
            *p = save;
            syntax("public key")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Transport hosts

/// A host in a server address (reference `TransportHost`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransportHost {
    Ipv4([u8; 4]),
    Ipv6(Ipv6Addr),
    /// Full name including `.onion`.
    Onion(String),
    Domain(String),
}

impl TransportHost {
    /// Parses one host from the start of the input (reference `strP`: IPv4, IPv6, onion, then
    /// domain — the first alternative that matches wins and the rest is left for the caller).
    pub fn parse_prefix(p: &mut Parser<'_>) -> Result<TransportHost, AddressError> {
        let save = p.clone();
        if let Some(h) = Self::ipv4_p(p) {
            return Ok(h);
        }
        *p = save.clone();
        if let Some(h) = Self::ipv6_p(p) {
            return Ok(h);
        }
        *p = save.clone();
        if let Some(h) = Self::onion_p(p) {
            return Ok(h);
        }
        *p = save.clone();
        let s = take_while(p, |c| !b":#,;/ \n\r\t".contains(&c));
        if s.is_empty() || s.ends_with(b".onion") {
            *p = save;
            return syntax("host");
        }
        match String::from_utf8(s.to_vec()) {
            Ok(d) => Ok(TransportHost::Domain(d)),
            Err(_) => {
                *p = save;
                syntax("host is not UTF-8")
            }
        }
    }

    fn ipv4_p(p: &mut Parser<'_>) -> Option<TransportHost> {
        let mut a = [0u8; 4];
        for (i, o) in a.iter_mut().enumerate() {
            let n = decimal_p(p).ok()?;
            *o = u8::try_from(n).ok()?;
            if i < 3 && !opt_char(p, b'.') {
                return None;
            }
        }
        Some(TransportHost::Ipv4(a))
    }

    fn ipv6_p(p: &mut Parser<'_>) -> Option<TransportHost> {
        let s = if opt_char(p, b'[') {
            let s = take_while(p, |c| c != b']');
            if s.is_empty() || !opt_char(p, b']') {
                return None;
            }
            s
        } else {
            take_while(p, |c| c.is_ascii_hexdigit() || c == b':')
        };
        let s = std::str::from_utf8(s).ok()?;
        if s.is_empty() {
            return None;
        }
        Ipv6Addr::from_str(s).ok().map(TransportHost::Ipv6)
    }

    fn onion_p(p: &mut Parser<'_>) -> Option<TransportHost> {
        let name = take_while(p, |c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !p.try_literal(b".onion") {
            return None;
        }
        let mut s = String::from_utf8(name.to_vec()).ok()?;
        s.push_str(".onion");
        Some(TransportHost::Onion(s))
    }

    /// Parses a whole string as one host.
    pub fn parse_bytes(s: &[u8]) -> Result<TransportHost, AddressError> {
        parse_all(s, Self::parse_prefix)
    }

    /// Text form (IPv6 without brackets, as the reference prints it).
    pub fn to_text(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for TransportHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportHost::Ipv4([a, b, c, d]) => write!(f, "{a}.{b}.{c}.{d}"),
            TransportHost::Ipv6(a) => {
                // As the reference (iproute `showIPv6`, RFC 5952 like `inet_ntop`): Rust's
                // form, except that IPv4-compatible addresses (`::a.b.c.d`, last 32 bits
                // ≥ 0x10000) keep the dotted tail.
                let o = a.octets();
                let tail = u32::from_be_bytes([o[12], o[13], o[14], o[15]]);
                if o[..12].iter().all(|b| *b == 0) && tail >= 0x10000 {
                    write!(f, "::{}.{}.{}.{}", o[12], o[13], o[14], o[15])
                } else {
                    write!(f, "{a}")
                }
            }
            TransportHost::Onion(s) | TransportHost::Domain(s) => f.write_str(s),
        }
    }
}

impl FromStr for TransportHost {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, AddressError> {
        Self::parse_bytes(s.as_bytes())
    }
}

/// Binary form: shortString of the text form.
impl Encode for TransportHost {
    fn encode(&self, out: &mut Vec<u8>) {
        // Hosts built by the parsers are ≤ 255 bytes when they come from binary; longer text
        // hosts are rejected by `ProtocolServer::new`.
        let _ = put_short_string(out, self.to_string().as_bytes());
    }
}

impl Decode for TransportHost {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        let s = p.short_string()?;
        TransportHost::parse_bytes(s).map_err(|_| DecodeError::Invalid("transport host"))
    }
}

/// Comma-separated hosts, at least one (reference `TransportHosts`).
fn hosts_p(p: &mut Parser<'_>) -> Result<Vec<TransportHost>, AddressError> {
    let mut hosts = vec![TransportHost::parse_prefix(p)?];
    loop {
        let save = p.clone();
        if !opt_char(p, b',') {
            break;
        }
        match TransportHost::parse_prefix(p) {
            Ok(h) => hosts.push(h),
            Err(_) => {
                *p = save;
                break;
            }
        }
    }
    Ok(hosts)
}

/// Comma-separated hosts, possibly none (reference `TransportHosts_`).
fn hosts0_p(p: &mut Parser<'_>) -> Vec<TransportHost> {
    let save = p.clone();
    match hosts_p(p) {
        Ok(h) => h,
        Err(_) => {
            *p = save;
            Vec::new()
        }
    }
}

fn hosts_text(hosts: &[TransportHost]) -> String {
    hosts
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

// ---------------------------------------------------------------------------------------------
// Server addresses

/// The scheme of a server address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolType {
    Smp,
    Ntf,
    Xftp,
}

impl ProtocolType {
    pub const fn as_str(self) -> &'static str {
        match self {
            ProtocolType::Smp => "smp",
            ProtocolType::Ntf => "ntf",
            ProtocolType::Xftp => "xftp",
        }
    }

    pub const fn default_port(self) -> u16 {
        match self {
            ProtocolType::Smp => SMP_DEFAULT_PORT,
            ProtocolType::Ntf => NTF_DEFAULT_PORT,
            ProtocolType::Xftp => XFTP_DEFAULT_PORT,
        }
    }

    fn parse_bytes(s: &[u8]) -> Option<ProtocolType> {
        match s {
            b"smp" => Some(ProtocolType::Smp),
            b"ntf" => Some(ProtocolType::Ntf),
            b"xftp" => Some(ProtocolType::Xftp),
            _ => None,
        }
    }
}

impl fmt::Display for ProtocolType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A server basic-auth password (`smp://hash:password@host`): printable ASCII except space,
/// `@`, `:` and `/`; non-empty; at most 255 bytes. It is never part of the binary server
/// address — it travels separately (e.g. in `NEW`, `PRXY`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BasicAuth(String);

impl BasicAuth {
    pub fn new(s: impl Into<String>) -> Result<BasicAuth, AddressError> {
        let s = s.into();
        if s.is_empty() {
            return syntax("empty basic auth");
        }
        if s.len() > 255 {
            return Err(EncodeError::TooLong {
                len: s.len(),
                max: 255,
            }
            .into());
        }
        if !s.bytes().all(Self::valid_char) {
            return syntax("invalid character in basic auth");
        }
        Ok(BasicAuth(s))
    }

    pub fn valid_char(c: u8) -> bool {
        c.is_ascii_graphic() && c != b'@' && c != b':' && c != b'/'
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BasicAuth(..)")
    }
}

/// Binary form: shortString (validated on decode, as the reference does).
impl Encode for BasicAuth {
    fn encode(&self, out: &mut Vec<u8>) {
        let _ = put_short_string(out, self.0.as_bytes());
    }
}

impl Decode for BasicAuth {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        let s = p.short_string()?;
        let s = std::str::from_utf8(s).map_err(|_| DecodeError::Invalid("basic auth"))?;
        BasicAuth::new(s).map_err(|_| DecodeError::Invalid("basic auth"))
    }
}

/// A server address: scheme, one or more hosts, port ("" = the scheme's default) and the key
/// hash (SHA-256 of the offline CA certificate; any length on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolServer {
    scheme: ProtocolType,
    hosts: Vec<TransportHost>,
    port: String,
    key_hash: Vec<u8>,
}

/// The reference's preset SMP hosts that get their `.onion` host appended when an address
/// names only them (`Agent/Protocol.hs` `extraSMPServerHosts`).
pub const LEGACY_PRESET_ONION_HOSTS: [(&str, &str); 6] = [
    (
        "smp4.simplex.im",
        "o5vmywmrnaxalvz6wi3zicyftgio6psuvyniis6gco6bp6ekl4cqj4id.onion",
    ),
    (
        "smp5.simplex.im",
        "jjbyvoemxysm7qxap7m5d5m35jzv5qq6gnlv7s4rsn7tdwwmuqciwpid.onion",
    ),
    (
        "smp6.simplex.im",
        "bylepyau3ty4czmn77q4fglvperknl4bi2eb2fdy2bh4jxtf32kf73yd.onion",
    ),
    (
        "smp8.simplex.im",
        "beccx4yfxxbvyhqypaavemqurytl6hozr47wfc7uuecacjqdvwpw2xid.onion",
    ),
    (
        "smp9.simplex.im",
        "jssqzccmrcws6bhmn77vgmhfjmhwlyr3u7puw4erkyoosywgl67slqqd.onion",
    ),
    (
        "smp10.simplex.im",
        "rb2pbttocvnbrngnwziclp2f4ckjq65kebafws6g4hy22cdaiv5dwjqd.onion",
    ),
];

impl ProtocolServer {
    /// Builds an address; fails if `hosts` is empty or any part exceeds its binary length
    /// prefix (255 hosts, 255 bytes per host text, port and key hash).
    pub fn new(
        scheme: ProtocolType,
        hosts: Vec<TransportHost>,
        port: impl Into<String>,
        key_hash: impl Into<Vec<u8>>,
    ) -> Result<ProtocolServer, AddressError> {
        let port = port.into();
        let key_hash = key_hash.into();
        if hosts.is_empty() {
            return syntax("no hosts");
        }
        let too_long = |len: usize| AddressError::TooLong(EncodeError::TooLong { len, max: 255 });
        if hosts.len() > 255 {
            return Err(too_long(hosts.len()));
        }
        for h in &hosts {
            let n = h.to_string().len();
            if n > 255 {
                return Err(too_long(n));
            }
        }
        if port.len() > 255 {
            return Err(too_long(port.len()));
        }
        if key_hash.len() > 255 {
            return Err(too_long(key_hash.len()));
        }
        Ok(ProtocolServer {
            scheme,
            hosts,
            port,
            key_hash,
        })
    }

    /// An SMP server address with an optional explicit port.
    pub fn smp(
        hosts: Vec<TransportHost>,
        port: Option<u16>,
        key_hash: impl Into<Vec<u8>>,
    ) -> Result<ProtocolServer, AddressError> {
        Self::new(
            ProtocolType::Smp,
            hosts,
            port.map(|p| p.to_string()).unwrap_or_default(),
            key_hash,
        )
    }

    pub fn scheme(&self) -> ProtocolType {
        self.scheme
    }

    /// Never empty.
    pub fn hosts(&self) -> &[TransportHost] {
        &self.hosts
    }

    /// The port as written ("" = default).
    pub fn port(&self) -> &str {
        &self.port
    }

    /// The explicit port, if it is a valid number.
    pub fn port_number(&self) -> Option<u16> {
        if self.port.is_empty() || !self.port.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        self.port.parse().ok()
    }

    /// The explicit port or the scheme's default.
    pub fn effective_port(&self) -> u16 {
        self.port_number()
            .unwrap_or_else(|| self.scheme.default_port())
    }

    pub fn key_hash(&self) -> &[u8] {
        &self.key_hash
    }

    /// Same hosts and port (reference `sameSrvAddr`; key hash and scheme not compared).
    pub fn same_address(&self, other: &ProtocolServer) -> bool {
        self.hosts == other.hosts && self.port == other.port
    }

    /// Returns the address with another scheme.
    pub fn with_scheme(mut self, scheme: ProtocolType) -> ProtocolServer {
        self.scheme = scheme;
        self
    }

    /// Legacy preset normalisation (reference `updateSMPServerHosts`, reference §5.2): an
    /// address whose only host is one of `smp4|5|6|8|9|10.simplex.im` gets the matching
    /// `.onion` host appended. Applied by NTF `SNEW` / `PNMessages` parsers and by queue URIs
    /// whose maximum client version is 1.
    pub fn update_legacy_hosts(mut self) -> ProtocolServer {
        if let [TransportHost::Domain(d)] = self.hosts.as_slice()
            && let Some((_, onion)) = LEGACY_PRESET_ONION_HOSTS
                .iter()
                .find(|(h, _)| *h == d.as_str())
        {
            self.hosts.push(TransportHost::Onion((*onion).to_string()));
        }
        self
    }

    /// Text form without a password.
    pub fn to_text(&self) -> String {
        self.render(None, &self.hosts)
    }

    fn render(&self, auth: Option<&BasicAuth>, hosts: &[TransportHost]) -> String {
        let mut s = format!(
            "{}://{}",
            self.scheme.as_str(),
            base64url_encode(&self.key_hash)
        );
        if let Some(a) = auth {
            s.push(':');
            s.push_str(a.as_str());
        }
        s.push('@');
        s.push_str(&hosts_text(hosts));
        if !self.port.is_empty() {
            s.push(':');
            s.push_str(&self.port);
        }
        s
    }

    /// Text form naming only the first host (reference `legacyStrEncodeServer`).
    pub fn to_text_first_host(&self) -> String {
        self.render(None, self.hosts.get(..1).unwrap_or(&self.hosts))
    }

    /// The reference `serverStrP`: parses an address with an optional password from the start
    /// of the input.
    pub fn parse_prefix(
        p: &mut Parser<'_>,
    ) -> Result<(ProtocolServer, Option<BasicAuth>), AddressError> {
        let scheme = take_while(p, |c| c != b':' && c != b' ');
        let scheme =
            ProtocolType::parse_bytes(scheme).ok_or(AddressError::Syntax("unknown scheme"))?;
        if !p.try_literal(b"://") {
            return syntax("expected ://");
        }
        let key_hash = base64url_p(p)?;
        let auth = if opt_char(p, b':') {
            let a = take_while1(p, |c| c != b'@', "basic auth")?;
            Some(BasicAuth::new(utf8(a, "basic auth")?)?)
        } else {
            None
        };
        char_p(p, b'@', "expected @")?;
        let hosts = hosts_p(p)?;
        let save = p.clone();
        let port = if opt_char(p, b':') {
            match decimal_p(p) {
                Ok(n) if n <= 65535 => n.to_string(),
                Ok(_) => return syntax("port out of range"),
                Err(_) => {
                    *p = save;
                    String::new()
                }
            }
        } else {
            String::new()
        };
        Ok((ProtocolServer::new(scheme, hosts, port, key_hash)?, auth))
    }

    /// Parses an address without a password (a password is an error, as in the reference).
    pub fn parse(s: &str) -> Result<ProtocolServer, AddressError> {
        let (srv, auth) = parse_all(s.as_bytes(), Self::parse_prefix)?;
        if auth.is_some() {
            return syntax("server address with basic auth not allowed here");
        }
        Ok(srv)
    }

    /// Parses an address and checks its scheme.
    pub fn parse_with_scheme(
        s: &str,
        scheme: ProtocolType,
    ) -> Result<ProtocolServer, AddressError> {
        let srv = Self::parse(s)?;
        if srv.scheme != scheme {
            return syntax("wrong scheme");
        }
        Ok(srv)
    }

    /// Binary form (no scheme on the wire): NonEmpty(shortString host) ‖ shortString port ‖
    /// shortString keyHash.
    pub fn encode_binary(&self, out: &mut Vec<u8>) {
        // Lengths are checked by `new`.
        out.push(self.hosts.len() as u8);
        for h in &self.hosts {
            h.encode(out);
        }
        let _ = put_short_string(out, self.port.as_bytes());
        let _ = put_short_string(out, &self.key_hash);
    }

    /// Parses the binary form, giving it `scheme`.
    pub fn decode_binary(
        p: &mut Parser<'_>,
        scheme: ProtocolType,
    ) -> Result<ProtocolServer, DecodeError> {
        let hosts = p.non_empty(TransportHost::decode)?;
        let port = std::str::from_utf8(p.short_string()?)
            .map_err(|_| DecodeError::Invalid("port"))?
            .to_string();
        let key_hash = p.short_string()?.to_vec();
        Ok(ProtocolServer {
            scheme,
            hosts,
            port,
            key_hash,
        })
    }
}

impl fmt::Display for ProtocolServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for ProtocolServer {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, AddressError> {
        Self::parse(s)
    }
}

/// An SMP server inside SMP/NTF messages: [`ProtocolServer`] with the `smp` scheme and
/// `Encode`/`Decode` for the binary form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SmpServer(pub ProtocolServer);

impl Encode for SmpServer {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode_binary(out)
    }
}

impl Decode for SmpServer {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        ProtocolServer::decode_binary(p, ProtocolType::Smp).map(SmpServer)
    }
}

/// A server address with an optional password (reference `ProtoServerWithAuth`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerWithAuth {
    pub server: ProtocolServer,
    pub auth: Option<BasicAuth>,
}

impl ServerWithAuth {
    pub fn parse(s: &str) -> Result<ServerWithAuth, AddressError> {
        let (server, auth) = parse_all(s.as_bytes(), ProtocolServer::parse_prefix)?;
        Ok(ServerWithAuth { server, auth })
    }
}

impl fmt::Display for ServerWithAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.server.render(self.auth.as_ref(), &self.server.hosts))
    }
}

impl FromStr for ServerWithAuth {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, AddressError> {
        Self::parse(s)
    }
}

/// The address `smp-server init` / `start` prints (reference `printServiceInfo`):
/// `smp://<base64url fingerprint>@host1,host2[:port]`. Hosts are printed verbatim, joined by
/// commas; no hosts prints the reference's `<hostnames>` placeholder. The port is omitted when
/// it is `None` or the default 5223.
pub fn render_server_address<H: fmt::Display>(
    fingerprint: &[u8; 32],
    hosts: &[H],
    port: Option<u16>,
) -> String {
    render_server_address_with_auth(fingerprint, None, hosts, port)
}

/// [`render_server_address`] with the optional `create_password` after the fingerprint
/// (`smp://<fp>:<password>@…`), as the reference prints it.
pub fn render_server_address_with_auth<H: fmt::Display>(
    fingerprint: &[u8; 32],
    password: Option<&BasicAuth>,
    hosts: &[H],
    port: Option<u16>,
) -> String {
    let mut s = format!("smp://{}", base64url_encode(fingerprint));
    if let Some(p) = password {
        s.push(':');
        s.push_str(p.as_str());
    }
    s.push('@');
    if hosts.is_empty() {
        s.push_str("<hostnames>");
    } else {
        let hs: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        s.push_str(&hs.join(","));
    }
    if let Some(p) = port.filter(|p| *p != SMP_DEFAULT_PORT) {
        s.push(':');
        s.push_str(&p.to_string());
    }
    s
}

// ---------------------------------------------------------------------------------------------
// SMP queue URIs

/// Queue mode flag of a queue URI (`q=m` / `q=c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueMode {
    Messaging,
    Contact,
}

/// An SMP queue as shared out-of-band (reference `SMPQueueUri`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmpQueueUri {
    /// SMP client (queue URI) version range, currently 1..4.
    pub client_versions: VersionRange,
    pub server: ProtocolServer,
    pub sender_id: Vec<u8>,
    /// X25519 SPKI DER.
    pub dh_public_key: Vec<u8>,
    pub queue_mode: Option<QueueMode>,
}

impl SmpQueueUri {
    pub fn to_text(&self) -> String {
        let vr = self.client_versions;
        let dh = base64url_encode(&self.dh_public_key);
        let v = vr.str_encode();
        let mut params: Vec<(&str, &[u8])> = vec![("v", v.as_bytes()), ("dh", dh.as_bytes())];
        match self.queue_mode {
            Some(QueueMode::Messaging) => params.push(("q", b"m")),
            Some(QueueMode::Contact) => params.push(("q", b"c")),
            None => {}
        }
        if self.queue_mode == Some(QueueMode::Messaging)
            && vr.min() < SHORT_LINKS_SMP_CLIENT_VERSION
        {
            params.push(("k", b"s"));
        }
        let sender = base64url_encode(&self.sender_id);
        if vr.min() >= SRV_HOSTNAMES_SMP_CLIENT_VERSION {
            format!(
                "{}/{}#/?{}",
                self.server.to_text(),
                sender,
                Query::render_escaped(&params)
            )
        } else {
            let extra = hosts_text(self.server.hosts.get(1..).unwrap_or_default());
            if !extra.is_empty() {
                params.push(("srv", extra.as_bytes()));
            }
            format!(
                "{}/{}#/?{}",
                self.server.to_text_first_host(),
                sender,
                Query::render_escaped(&params)
            )
        }
    }

    /// Parses the current form and the legacy forms (dh key after `#`, no version = v1).
    pub fn parse(s: &str) -> Result<SmpQueueUri, AddressError> {
        Self::parse_bytes(s.as_bytes())
    }

    pub fn parse_bytes(s: &[u8]) -> Result<SmpQueueUri, AddressError> {
        let mut p = Parser::new(s);
        let (server, auth) = ProtocolServer::parse_prefix(&mut p)?;
        if auth.is_some() || server.scheme != ProtocolType::Smp {
            return syntax("queue server");
        }
        char_p(&mut p, b'/', "expected /")?;
        let sender_id = base64url_p(&mut p)?;
        opt_char(&mut p, b'/');
        char_p(&mut p, b'#', "expected #")?;
        let save = p.clone();
        let (vr, extra_hosts, dh_public_key, queue_mode) = match Self::versioned_p(&mut p) {
            Ok(v) => v,
            Err(_) => {
                p = save;
                let dh = spki_p(&mut p, &[KeyAlgorithm::X25519])?;
                end_p(&p)?;
                (VersionRange::single(1), Vec::new(), dh, None)
            }
        };
        let mut server = server;
        server.hosts.extend(extra_hosts);
        let server =
            ProtocolServer::new(server.scheme, server.hosts, server.port, server.key_hash)?;
        let server = if vr.max() < SRV_HOSTNAMES_SMP_CLIENT_VERSION {
            server.update_legacy_hosts()
        } else {
            server
        };
        Ok(SmpQueueUri {
            client_versions: vr,
            server,
            sender_id,
            dh_public_key,
            queue_mode,
        })
    }

    #[allow(clippy::type_complexity)]
    fn versioned_p(
        p: &mut Parser<'_>,
    ) -> Result<(VersionRange, Vec<TransportHost>, Vec<u8>, Option<QueueMode>), AddressError> {
        let save = p.clone();
        let dh_ = match spki_p(p, &[KeyAlgorithm::X25519]) {
            Ok(k) => Some(k),
            Err(_) => {
                *p = save;
                None
            }
        };
        opt_char(p, b'/');
        char_p(p, b'?', "expected ?")?;
        let q = query_p(p);
        end_p(p)?;
        let vr = version_param(&q, "v")?;
        let dh = match dh_ {
            Some(k) => k,
            None => {
                let v = q.get("dh").ok_or(AddressError::Syntax("no dh param"))?;
                parse_all(v, |p| spki_p(p, &[KeyAlgorithm::X25519]))?
            }
        };
        let hosts = match q.get("srv") {
            Some(v) => parse_all(v, |p| Ok(hosts0_p(p)))?,
            None => Vec::new(),
        };
        let mode = match q.get("q") {
            Some(b"m") => Some(QueueMode::Messaging),
            Some(b"c") => Some(QueueMode::Contact),
            _ if q.get("k") == Some(b"s") => Some(QueueMode::Messaging),
            _ => None,
        };
        Ok((vr, hosts, dh, mode))
    }
}

fn version_param(q: &Query, name: &'static str) -> Result<VersionRange, AddressError> {
    let v = q.get(name).ok_or(AddressError::Syntax("missing version"))?;
    let v = std::str::from_utf8(v).map_err(|_| AddressError::Syntax("version"))?;
    VersionRange::str_decode(v).map_err(|_| AddressError::Syntax("version"))
}

impl fmt::Display for SmpQueueUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for SmpQueueUri {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, AddressError> {
        Self::parse(s)
    }
}

// ---------------------------------------------------------------------------------------------
// e2e ratchet parameters (text form inside invitation links)

/// KEM part of ratchet parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RatchetKemParams {
    /// `kem_key` only.
    Proposed { kem_key: Vec<u8> },
    /// `kem_ct` and `kem_key`.
    Accepted { kem_ct: Vec<u8>, kem_key: Vec<u8> },
}

/// Reference `E2ERatchetParamsUri`: `v=<range>&x3dh=<key1>,<key2>[&kem_ct=..][&kem_key=..]`
/// (keys: X448 or X25519 SPKI DER of the same algorithm, base64url with padding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct E2eRatchetParamsUri {
    pub versions: VersionRange,
    pub key1: Vec<u8>,
    pub key2: Vec<u8>,
    pub kem: Option<RatchetKemParams>,
}

impl E2eRatchetParamsUri {
    /// The unescaped text (values not percent-encoded).
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "v={}&x3dh={},{}",
            self.versions.str_encode(),
            base64url_encode(&self.key1),
            base64url_encode(&self.key2)
        );
        if self.versions.max() >= PQ_RATCHET_E2E_VERSION {
            match &self.kem {
                Some(RatchetKemParams::Proposed { kem_key }) => {
                    s.push_str("&kem_key=");
                    s.push_str(&base64url_encode(kem_key));
                }
                Some(RatchetKemParams::Accepted { kem_ct, kem_key }) => {
                    s.push_str("&kem_ct=");
                    s.push_str(&base64url_encode(kem_ct));
                    s.push_str("&kem_key=");
                    s.push_str(&base64url_encode(kem_key));
                }
                None => {}
            }
        }
        s
    }

    pub fn parse(s: &str) -> Result<E2eRatchetParamsUri, AddressError> {
        Self::parse_bytes(s.as_bytes())
    }

    pub fn parse_bytes(s: &[u8]) -> Result<E2eRatchetParamsUri, AddressError> {
        let q = parse_all(s, |p| Ok(query_p(p)))?;
        let versions = version_param(&q, "v")?;
        let keys = q.get("x3dh").ok_or(AddressError::Syntax("no x3dh param"))?;
        let mut keys_out = Vec::new();
        for item in keys.split(|c| *c == b',') {
            let dh = [KeyAlgorithm::X25519, KeyAlgorithm::X448];
            keys_out.push(parse_all(item, |p| spki_p(p, &dh))?);
        }
        let [key1, key2]: [Vec<u8>; 2] = keys_out
            .try_into()
            .map_err(|_| AddressError::Syntax("bad e2e params"))?;
        if KeyAlgorithm::of_spki(&key1) != KeyAlgorithm::of_spki(&key2) {
            return syntax("bad e2e params: different key algorithms");
        }
        let b64 = |v: &[u8]| parse_all(v, base64url_p);
        let kem = if versions.max() >= PQ_RATCHET_E2E_VERSION {
            match q.get("kem_key") {
                Some(k) => {
                    let kem_key = b64(k)?;
                    Some(match q.get("kem_ct") {
                        Some(ct) => RatchetKemParams::Accepted {
                            kem_ct: b64(ct)?,
                            kem_key,
                        },
                        None => RatchetKemParams::Proposed { kem_key },
                    })
                }
                None => None,
            }
        } else {
            None
        };
        Ok(E2eRatchetParamsUri {
            versions,
            key1,
            key2,
            kem,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Full connection links

/// Where a full link points: `simplex:` or an app web server (`https://host[:port]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceScheme {
    Simplex,
    AppServer { host: String, port: String },
}

impl ServiceScheme {
    /// `https://simplex.chat`.
    pub fn simplex_chat() -> ServiceScheme {
        ServiceScheme::AppServer {
            host: "simplex.chat".into(),
            port: String::new(),
        }
    }

    fn to_text(&self) -> String {
        match self {
            ServiceScheme::Simplex => "simplex:".into(),
            ServiceScheme::AppServer { host, port } if port.is_empty() => format!("https://{host}"),
            ServiceScheme::AppServer { host, port } => format!("https://{host}:{port}"),
        }
    }

    fn parse_prefix(p: &mut Parser<'_>) -> Result<ServiceScheme, AddressError> {
        if p.try_literal(b"simplex:") {
            return Ok(ServiceScheme::Simplex);
        }
        if !p.try_literal(b"https://") {
            return syntax("link scheme");
        }
        let host = take_while1(p, |c| !b":#,;/ ".contains(&c), "link host")?;
        let host = utf8(host, "link host")?;
        let save = p.clone();
        let port = if opt_char(p, b':') {
            match decimal_p(p) {
                Ok(n) if n <= 65535 => n.to_string(),
                Ok(_) => return syntax("port out of range"),
                Err(_) => {
                    *p = save;
                    String::new()
                }
            }
        } else {
            String::new()
        };
        Ok(ServiceScheme::AppServer { host, port })
    }
}

/// Fields shared by invitation and contact links (reference `ConnReqUriData`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnReqUriData {
    pub scheme: ServiceScheme,
    pub agent_versions: VersionRange,
    /// Never empty.
    pub smp_queues: Vec<SmpQueueUri>,
    pub client_data: Option<String>,
}

/// A full connection link (reference `ConnectionRequestUri`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionRequestUri {
    Invitation {
        data: ConnReqUriData,
        e2e: E2eRatchetParamsUri,
    },
    Contact {
        data: ConnReqUriData,
    },
}

impl ConnectionRequestUri {
    pub fn data(&self) -> &ConnReqUriData {
        match self {
            ConnectionRequestUri::Invitation { data, .. }
            | ConnectionRequestUri::Contact { data } => data,
        }
    }

    pub fn to_text(&self) -> String {
        let (mode, data, e2e) = match self {
            ConnectionRequestUri::Invitation { data, e2e } => ("invitation", data, Some(e2e)),
            ConnectionRequestUri::Contact { data } => ("contact", data, None),
        };
        let v = data.agent_versions.str_encode();
        let smp = data
            .smp_queues
            .iter()
            .map(SmpQueueUri::to_text)
            .collect::<Vec<_>>()
            .join(";");
        let e2e = e2e.map(E2eRatchetParamsUri::to_text);
        let mut params: Vec<(&str, &[u8])> = vec![("v", v.as_bytes()), ("smp", smp.as_bytes())];
        if let Some(e) = &e2e {
            params.push(("e2e", e.as_bytes()));
        }
        if let Some(d) = &data.client_data {
            params.push(("data", d.as_bytes()));
        }
        format!(
            "{}/{}#/?{}",
            data.scheme.to_text(),
            mode,
            Query::render_escaped(&params)
        )
    }

    /// Parses a full link. As in the reference, the parsed value always has the `simplex:`
    /// scheme (an `https://` link is accepted but not remembered), and a contact link's agent
    /// version range is raised to at least 2.
    pub fn parse(s: &str) -> Result<ConnectionRequestUri, AddressError> {
        let mut p = Parser::new(s.as_bytes());
        ServiceScheme::parse_prefix(&mut p)?;
        char_p(&mut p, b'/', "expected /")?;
        let invitation = if p.try_literal(b"invitation") {
            true
        } else if p.try_literal(b"contact") {
            false
        } else {
            return syntax("link mode");
        };
        opt_char(&mut p, b'/');
        if !p.try_literal(b"#/?") {
            return syntax("expected #/?");
        }
        let q = query_p(&mut p);
        end_p(&p)?;
        let agent_versions = version_param(&q, "v")?;
        let smp = q.get("smp").ok_or(AddressError::Syntax("no smp param"))?;
        let smp_queues = smp
            .split(|c| *c == b';')
            .map(SmpQueueUri::parse_bytes)
            .collect::<Result<Vec<_>, _>>()?;
        let client_data = q
            .get("data")
            .map(|d| String::from_utf8_lossy(d).into_owned());
        let mut data = ConnReqUriData {
            scheme: ServiceScheme::Simplex,
            agent_versions,
            smp_queues,
            client_data,
        };
        if invitation {
            let e2e = q.get("e2e").ok_or(AddressError::Syntax("no e2e param"))?;
            let e2e = E2eRatchetParamsUri::parse_bytes(e2e)?;
            if matches!(e2e.kem, Some(RatchetKemParams::Accepted { .. })) {
                return syntax("invitation with accepted KEM");
            }
            if KeyAlgorithm::of_spki(&e2e.key1) != Some(KeyAlgorithm::X448) {
                return syntax("invitation ratchet keys must be X448");
            }
            Ok(ConnectionRequestUri::Invitation { data, e2e })
        } else {
            let v = agent_versions.min().max(MIN_SUPPORTED_AGENT_VERSION);
            if let Some(r) = VersionRange::new(v, v.max(agent_versions.max())) {
                data.agent_versions = r;
            }
            Ok(ConnectionRequestUri::Contact { data })
        }
    }
}

impl fmt::Display for ConnectionRequestUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for ConnectionRequestUri {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, AddressError> {
        Self::parse(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Short links

/// `simplex:/...` or `https://<first host>/...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShortLinkScheme {
    Simplex,
    Server,
}

/// The kind of a contact short link (path letter `a`, `c`, `g`, `r`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContactConnType {
    Contact,
    Channel,
    Group,
    Relay,
}

impl ContactConnType {
    /// Upper-case letter (binary form); the link text uses it lower-cased.
    pub const fn char(self) -> u8 {
        match self {
            ContactConnType::Contact => b'A',
            ContactConnType::Channel => b'C',
            ContactConnType::Group => b'G',
            ContactConnType::Relay => b'R',
        }
    }

    pub fn from_char(c: u8) -> Option<ContactConnType> {
        match c.to_ascii_uppercase() {
            b'A' => Some(ContactConnType::Contact),
            b'C' => Some(ContactConnType::Channel),
            b'G' => Some(ContactConnType::Group),
            b'R' => Some(ContactConnType::Relay),
            _ => None,
        }
    }
}

/// A short link (reference `ConnShortLink`, §3.9). The server may carry only its first host
/// (no port, empty key hash) when it is a preset server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnShortLink {
    Invitation {
        scheme: ShortLinkScheme,
        server: ProtocolServer,
        link_id: Vec<u8>,
        link_key: Vec<u8>,
    },
    Contact {
        scheme: ShortLinkScheme,
        conn_type: ContactConnType,
        server: ProtocolServer,
        link_key: Vec<u8>,
    },
}

impl ConnShortLink {
    pub fn server(&self) -> &ProtocolServer {
        match self {
            ConnShortLink::Invitation { server, .. } | ConnShortLink::Contact { server, .. } => {
                server
            }
        }
    }

    fn server_mut(&mut self) -> &mut ProtocolServer {
        match self {
            ConnShortLink::Invitation { server, .. } | ConnShortLink::Contact { server, .. } => {
                server
            }
        }
    }

    pub fn to_text(&self) -> String {
        let (scheme, server, kind, link_id, key) = match self {
            ConnShortLink::Invitation {
                scheme,
                server,
                link_id,
                link_key,
            } => (*scheme, server, b'i', link_id.as_slice(), link_key),
            ConnShortLink::Contact {
                scheme,
                conn_type,
                server,
                link_key,
            } => (
                *scheme,
                server,
                conn_type.char().to_ascii_lowercase(),
                &[][..],
                link_key,
            ),
        };
        let (authority, param_hosts) = match scheme {
            ShortLinkScheme::Simplex => ("simplex:".to_string(), server.hosts()),
            ShortLinkScheme::Server => (
                format!(
                    "https://{}",
                    server
                        .hosts
                        .first()
                        .map(|h| h.to_string())
                        .unwrap_or_default()
                ),
                server.hosts.get(1..).unwrap_or_default(),
            ),
        };
        let mut s = format!("{authority}/{}#", char::from(kind));
        if !link_id.is_empty() {
            s.push_str(&base64url_encode_unpadded(link_id));
            s.push('/');
        }
        s.push_str(&base64url_encode_unpadded(key));
        let h = hosts_text(param_hosts);
        let c = base64url_encode_unpadded(server.key_hash());
        let mut params: Vec<(&str, &[u8])> = Vec::new();
        if !param_hosts.is_empty() {
            params.push(("h", h.as_bytes()));
        }
        if !server.port.is_empty() {
            params.push(("p", server.port.as_bytes()));
        }
        if !server.key_hash.is_empty() {
            params.push(("c", c.as_bytes()));
        }
        if !params.is_empty() {
            s.push('?');
            s.push_str(&Query::render_escaped(&params));
        }
        s
    }

    pub fn parse(s: &str) -> Result<ConnShortLink, AddressError> {
        let mut p = Parser::new(s.as_bytes());
        let (scheme, host) = if p.try_literal(b"simplex:") {
            (ShortLinkScheme::Simplex, None)
        } else if p.try_literal(b"https://") {
            (
                ShortLinkScheme::Server,
                Some(TransportHost::parse_prefix(&mut p)?),
            )
        } else {
            return syntax("bad short link scheme");
        };
        char_p(&mut p, b'/', "expected /")?;
        let t = p
            .byte()
            .map_err(|_| AddressError::Syntax("short link type"))?;
        let conn_type = match ContactConnType::from_char(t) {
            Some(ct) => Some(ct),
            None if t == b'i' => None,
            None => return syntax("unknown short link type"),
        };
        opt_char(&mut p, b'/');
        char_p(&mut p, b'#', "expected #")?;
        let link_id = match conn_type {
            None => {
                let id = base64url_p(&mut p)?;
                char_p(&mut p, b'/', "expected /")?;
                Some(id)
            }
            Some(_) => None,
        };
        let link_key = base64url_p(&mut p)?;
        let server = if opt_char(&mut p, b'?') {
            let q = query_p(&mut p);
            let mut hosts: Vec<TransportHost> = host.into_iter().collect();
            if let Some(h) = q.get("h") {
                hosts.extend(parse_all(h, |p| Ok(hosts0_p(p)))?);
            }
            let port = match q.get("p") {
                Some(v) => match parse_all(v, decimal_p)? {
                    n if n <= 65535 => n.to_string(),
                    _ => return syntax("port out of range"),
                },
                None => String::new(),
            };
            let key_hash = match q.get("c") {
                Some(v) => parse_all(v, base64url_p)?,
                None => Vec::new(),
            };
            if hosts.is_empty() {
                return syntax("short link without server");
            }
            ProtocolServer::new(ProtocolType::Smp, hosts, port, key_hash)?
        } else {
            match host {
                Some(h) => ProtocolServer::new(ProtocolType::Smp, vec![h], "", Vec::new())?,
                None => return syntax("short link without server"),
            }
        };
        end_p(&p)?;
        Ok(match (conn_type, link_id) {
            (Some(conn_type), _) => ConnShortLink::Contact {
                scheme,
                conn_type,
                server,
                link_key,
            },
            (None, link_id) => ConnShortLink::Invitation {
                scheme,
                server,
                link_id: link_id.unwrap_or_default(),
                link_key,
            },
        })
    }

    /// Drops port and key hash when the server is one of `presets` (reference
    /// `shortenShortLink`; `presets` must be preset servers, not user-configured ones).
    pub fn shorten(mut self, presets: &[ProtocolServer]) -> ConnShortLink {
        let srv = self.server();
        if is_preset_server(srv, presets) {
            let only_host = ProtocolServer {
                scheme: srv.scheme,
                hosts: srv.hosts.get(..1).unwrap_or_default().to_vec(),
                port: String::new(),
                key_hash: Vec::new(),
            };
            *self.server_mut() = only_host;
        }
        self
    }

    /// Puts the preset server's port and key hash back (reference `restoreShortLink`).
    pub fn restore(mut self, presets: &[ProtocolServer]) -> ConnShortLink {
        let srv = self.server();
        if srv.hosts.len() == 1
            && srv.port.is_empty()
            && srv.key_hash.is_empty()
            && let Some(full) = find_preset_server(srv, presets)
        {
            *self.server_mut() = full.clone();
        }
        self
    }
}

fn find_preset_server<'a>(
    srv: &ProtocolServer,
    presets: &'a [ProtocolServer],
) -> Option<&'a ProtocolServer> {
    presets
        .iter()
        .find(|p| p.hosts.first() == srv.hosts.first())
}

/// Reference `isPresetServer`.
pub fn is_preset_server(srv: &ProtocolServer, presets: &[ProtocolServer]) -> bool {
    match find_preset_server(srv, presets) {
        Some(p) => {
            srv.hosts.iter().all(|h| p.hosts.contains(h))
                && (srv.port == p.port
                    || (p.port.is_empty() && (srv.port == "443" || srv.port == "5223")))
                && srv.key_hash == p.key_hash
        }
        None => false,
    }
}

impl fmt::Display for ConnShortLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for ConnShortLink {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, AddressError> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_codec() {
        assert_eq!(url_encode(b"a=b/c d~"), "a%3Db%2Fc%20d~");
        assert_eq!(url_decode(b"a%3db+%zz%4"), b"a=b %zz%4");
    }

    #[test]
    fn legacy_hosts() {
        let s = ProtocolServer::parse("smp://AAAA@smp8.simplex.im").unwrap();
        let u = s.clone().update_legacy_hosts();
        assert_eq!(u.hosts().len(), 2);
        assert_eq!(
            u.hosts()[1].to_string(),
            "beccx4yfxxbvyhqypaavemqurytl6hozr47wfc7uuecacjqdvwpw2xid.onion"
        );
        let two = ProtocolServer::parse("smp://AAAA@smp8.simplex.im,a.b").unwrap();
        assert_eq!(two.clone().update_legacy_hosts(), two);
        let other = ProtocolServer::parse("smp://AAAA@smp7.simplex.im").unwrap();
        assert_eq!(other.clone().update_legacy_hosts(), other);
    }

    #[test]
    fn ipv6_hosts() {
        let h: TransportHost = "[::1]".parse().unwrap();
        assert_eq!(h, TransportHost::Ipv6(Ipv6Addr::LOCALHOST));
        assert_eq!(h.to_string(), "::1");
        let h: TransportHost = "2001:db8::1".parse().unwrap();
        assert!(matches!(h, TransportHost::Ipv6(_)));
        // a bare hex word that is not an address is a domain
        assert_eq!(
            "cafe".parse::<TransportHost>().unwrap(),
            TransportHost::Domain("cafe".into())
        );
    }

    #[test]
    fn ipv6_text_matches_reference() {
        let show = |s: &str| TransportHost::Ipv6(s.parse().unwrap()).to_string();
        assert_eq!(show("2001:db8:0:0:0:0:0:1"), "2001:db8::1");
        assert_eq!(show("2001:db8:0:1:0:0:0:1"), "2001:db8:0:1::1");
        assert_eq!(show("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
        assert_eq!(show("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
        assert_eq!(show("::ffff:192.0.2.1"), "::ffff:192.0.2.1");
        assert_eq!(show("::c000:201"), "::192.0.2.1");
        assert_eq!(show("::1"), "::1");
        assert_eq!(show("::"), "::");
    }

    #[test]
    fn render_init_address() {
        let fp = [0u8; 32];
        let hosts: Vec<TransportHost> = vec!["smp.example.com".parse().unwrap()];
        let s = render_server_address(&fp, &hosts, None);
        assert_eq!(
            s,
            "smp://AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=@smp.example.com"
        );
        let srv = ProtocolServer::parse(&s).unwrap();
        assert_eq!(srv.key_hash(), &fp);
        assert_eq!(srv.effective_port(), 5223);
        let s = render_server_address(&fp, &hosts, Some(443));
        assert_eq!(ProtocolServer::parse(&s).unwrap().effective_port(), 443);
        assert!(render_server_address(&fp, &hosts, Some(5223)).ends_with("@smp.example.com"));
        assert!(render_server_address::<&str>(&fp, &[], None).ends_with("@<hostnames>"));
        let pw = BasicAuth::new("pw1").unwrap();
        let s = render_server_address_with_auth(&fp, Some(&pw), &["a.b", "c.onion"], Some(7001));
        assert_eq!(
            s,
            "smp://AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:pw1@a.b,c.onion:7001"
        );
        let sa = ServerWithAuth::parse(&s).unwrap();
        assert_eq!(sa.auth, Some(pw));
        assert_eq!(sa.server.hosts().len(), 2);
    }

    #[test]
    fn basic_auth_chars() {
        assert!(BasicAuth::new("pass123").is_ok());
        for bad in ["", "a b", "a@b", "a:b", "a/b", "é"] {
            assert!(BasicAuth::new(bad).is_err(), "{bad}");
        }
    }
}
