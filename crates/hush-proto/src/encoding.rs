//! `smpEncode` primitives (reference §1): big-endian integers, length-prefixed byte strings,
//! `Maybe`, lists, padding and the base64url text form.
//!
//! Decoding goes through [`Parser`], a cursor over a borrowed slice that never panics: every
//! read checks the remaining length and returns [`DecodeError`]. Encoding appends to a
//! `Vec<u8>`; values whose length is bounded by the wire format (shortString ≤ 255,
//! `Large` ≤ 65535) are checked when the value is built ([`ShortString`], [`Large`]) or by the
//! fallible `put_*` helpers, so an encoder can never emit a wrong length prefix.

use base64::Engine as _;
use thiserror::Error;

/// A decoding failure. Decoders return this instead of panicking on any input.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unexpected end of input")]
    Eof,
    #[error("unexpected byte 0x{found:02x} (expected {expected})")]
    Unexpected { expected: &'static str, found: u8 },
    #[error("{0} trailing byte(s) after the value")]
    Trailing(usize),
    #[error("invalid value: {0}")]
    Invalid(&'static str),
}

/// An encoding failure: a value does not fit its length prefix.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EncodeError {
    #[error("value of {len} bytes exceeds the {max}-byte limit of its length prefix")]
    TooLong { len: usize, max: usize },
    /// The value cannot be represented at the requested version / layout.
    #[error("cannot encode: {0}")]
    Invalid(&'static str),
}

/// Cursor over an input slice.
#[derive(Debug, Clone)]
pub struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Parser { buf, pos: 0 }
    }

    /// Bytes not consumed yet.
    pub fn remaining(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// Fails with [`DecodeError::Trailing`] if input is left.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }

    /// Next byte without consuming it.
    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return Err(DecodeError::Eof);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// Consumes one expected byte.
    pub fn expect(&mut self, b: u8, what: &'static str) -> Result<(), DecodeError> {
        let found = self.byte()?;
        if found == b {
            Ok(())
        } else {
            Err(DecodeError::Unexpected {
                expected: what,
                found,
            })
        }
    }

    /// Consumes a single space (0x20), the separator between a tag and its parameters.
    pub fn space(&mut self) -> Result<(), DecodeError> {
        self.expect(b' ', "space")
    }

    /// Consumes `lit` exactly.
    pub fn literal(&mut self, lit: &'static [u8]) -> Result<(), DecodeError> {
        if self.remaining().starts_with(lit) {
            self.pos += lit.len();
            Ok(())
        } else {
            Err(DecodeError::Invalid("expected literal"))
        }
    }

    /// Consumes `lit` if the input starts with it.
    pub fn try_literal(&mut self, lit: &[u8]) -> bool {
        if self.remaining().starts_with(lit) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    pub fn word16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take_array()?))
    }

    pub fn word32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take_array()?))
    }

    pub fn int64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take_array()?))
    }

    /// 1-byte length + bytes.
    pub fn short_string(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.byte()? as usize;
        self.take(n)
    }

    /// Word16 length + bytes.
    pub fn large(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.word16()? as usize;
        self.take(n)
    }

    /// The rest of the input.
    pub fn tail(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// `T` / `F`.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.byte()? {
            b'T' => Ok(true),
            b'F' => Ok(false),
            found => Err(DecodeError::Unexpected {
                expected: "T or F",
                found,
            }),
        }
    }

    /// `0` for Nothing, `1` followed by the value.
    pub fn maybe<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.byte()? {
            b'0' => Ok(None),
            b'1' => f(self).map(Some),
            found => Err(DecodeError::Unexpected {
                expected: "0 or 1",
                found,
            }),
        }
    }

    /// 1-byte count + items.
    pub fn list<T>(
        &mut self,
        mut f: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let n = self.byte()? as usize;
        let mut v = Vec::with_capacity(n.min(self.buf.len() - self.pos));
        for _ in 0..n {
            v.push(f(self)?);
        }
        Ok(v)
    }

    /// 1-byte count (≥ 1) + items.
    pub fn non_empty<T>(
        &mut self,
        f: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let v = self.list(f)?;
        if v.is_empty() {
            Err(DecodeError::Invalid("empty NonEmpty list"))
        } else {
            Ok(v)
        }
    }

    /// Decodes a [`Decode`] value.
    pub fn decode<T: Decode>(&mut self) -> Result<T, DecodeError> {
        T::decode(self)
    }
}

/// A value with a binary `smpEncode` form.
pub trait Encode {
    fn encode(&self, out: &mut Vec<u8>);

    fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

/// A value that can be parsed from its binary form.
pub trait Decode: Sized {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError>;

    /// Parses the whole input (trailing bytes are an error).
    fn from_bytes(b: &[u8]) -> Result<Self, DecodeError> {
        let mut p = Parser::new(b);
        let v = Self::decode(&mut p)?;
        p.finish()?;
        Ok(v)
    }
}

pub fn put_word16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_word32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_int64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(if v { b'T' } else { b'F' });
}

/// 1-byte length + bytes; fails over 255 bytes.
pub fn put_short_string(out: &mut Vec<u8>, s: &[u8]) -> Result<(), EncodeError> {
    let n = u8::try_from(s.len()).map_err(|_| EncodeError::TooLong {
        len: s.len(),
        max: 255,
    })?;
    out.push(n);
    out.extend_from_slice(s);
    Ok(())
}

/// Word16 length + bytes; fails over 65535 bytes.
pub fn put_large(out: &mut Vec<u8>, s: &[u8]) -> Result<(), EncodeError> {
    let n = u16::try_from(s.len()).map_err(|_| EncodeError::TooLong {
        len: s.len(),
        max: 65535,
    })?;
    put_word16(out, n);
    out.extend_from_slice(s);
    Ok(())
}

/// `0`, or `1` followed by what `f` writes.
pub fn put_maybe<T>(out: &mut Vec<u8>, v: Option<&T>, f: impl FnOnce(&mut Vec<u8>, &T)) {
    match v {
        None => out.push(b'0'),
        Some(x) => {
            out.push(b'1');
            f(out, x)
        }
    }
}

/// 1-byte count + items; fails over 255 items.
pub fn put_list<T>(
    out: &mut Vec<u8>,
    items: &[T],
    mut f: impl FnMut(&mut Vec<u8>, &T),
) -> Result<(), EncodeError> {
    let n = u8::try_from(items.len()).map_err(|_| EncodeError::TooLong {
        len: items.len(),
        max: 255,
    })?;
    out.push(n);
    for i in items {
        f(out, i)
    }
    Ok(())
}

macro_rules! bounded_bytes {
    ($(#[$m:meta])* $name:ident, $max:expr, $put:ident, $get:ident) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, Hash, Default)]
        pub struct $name(Vec<u8>);

        impl $name {
            pub const MAX: usize = $max;

            pub fn new(v: impl Into<Vec<u8>>) -> Result<Self, EncodeError> {
                let v = v.into();
                if v.len() > Self::MAX {
                    Err(EncodeError::TooLong { len: v.len(), max: Self::MAX })
                } else {
                    Ok($name(v))
                }
            }

            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }

            pub fn into_vec(self) -> Vec<u8> {
                self.0
            }

            pub fn len(&self) -> usize {
                self.0.len()
            }

            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), base64url_encode(&self.0))
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl TryFrom<&[u8]> for $name {
            type Error = EncodeError;
            fn try_from(v: &[u8]) -> Result<Self, EncodeError> {
                Self::new(v.to_vec())
            }
        }

        impl Encode for $name {
            fn encode(&self, out: &mut Vec<u8>) {
                // Length checked at construction.
                let _ = $put(out, &self.0);
            }
        }

        impl Decode for $name {
            fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
                Ok($name(p.$get()?.to_vec()))
            }
        }
    };
}

bounded_bytes!(
    /// A byte string of at most 255 bytes, encoded with a 1-byte length.
    ShortString,
    255,
    put_short_string,
    short_string
);
bounded_bytes!(
    /// A byte string of at most 65535 bytes, encoded with a Word16 length.
    Large,
    65535,
    put_large,
    large
);

impl Encode for u16 {
    fn encode(&self, out: &mut Vec<u8>) {
        put_word16(out, *self)
    }
}
impl Decode for u16 {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        p.word16()
    }
}
impl Encode for u32 {
    fn encode(&self, out: &mut Vec<u8>) {
        put_word32(out, *self)
    }
}
impl Decode for u32 {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        p.word32()
    }
}
impl Encode for i64 {
    fn encode(&self, out: &mut Vec<u8>) {
        put_int64(out, *self)
    }
}
impl Decode for i64 {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        p.int64()
    }
}
impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        put_bool(out, *self)
    }
}
impl Decode for bool {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        p.bool()
    }
}
impl<T: Encode> Encode for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        put_maybe(out, self.as_ref(), |o, v| v.encode(o))
    }
}
impl<T: Decode> Decode for Option<T> {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        p.maybe(T::decode)
    }
}

/// Padding errors (reference names: `CryptoLargeMsgError`, `CryptoInvalidMsgError`).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum PadError {
    #[error("message too large for the padded length")]
    LargeMsg,
    #[error("invalid padded message")]
    InvalidMsg,
}

/// Largest message `pad` accepts (2^16 − 3).
pub const MAX_PAD_MSG: usize = 65533;

/// `pad(msg, L)` = Word16 len ‖ msg ‖ `#` × (L − len − 2).
pub fn pad(msg: &[u8], padded_len: usize) -> Result<Vec<u8>, PadError> {
    let mut out = Vec::with_capacity(padded_len);
    pad_into(&mut out, msg, padded_len)?;
    Ok(out)
}

/// Appends `pad(msg, L)` to `out`.
pub fn pad_into(out: &mut Vec<u8>, msg: &[u8], padded_len: usize) -> Result<(), PadError> {
    if msg.len() > MAX_PAD_MSG || msg.len() + 2 > padded_len {
        return Err(PadError::LargeMsg);
    }
    put_word16(out, msg.len() as u16);
    out.extend_from_slice(msg);
    out.resize(out.len() + padded_len - msg.len() - 2, b'#');
    Ok(())
}

/// Inverse of [`pad`]: reads the Word16 length and returns that many bytes; what follows is
/// not checked (the reference ignores it).
pub fn unpad(padded: &[u8]) -> Result<&[u8], PadError> {
    let mut p = Parser::new(padded);
    let n = p.word16().map_err(|_| PadError::InvalidMsg)? as usize;
    p.take(n).map_err(|_| PadError::InvalidMsg)
}

/// Lazy padding (Int64 length prefix), used for file/large bodies, as the reference's
/// `Crypto.Lazy.pad`: `Int64 msg_len ‖ first msg_len bytes of msg ‖ '#' × (padded_len − msg_len − 8)`.
/// A `msg` longer than `msg_len` is truncated; a shorter one gives a shorter output (the pad
/// count is computed from `msg_len`). Fails only if `msg_len + 8 > padded_len`.
pub fn pad_lazy(msg: &[u8], msg_len: usize, padded_len: usize) -> Result<Vec<u8>, PadError> {
    let pad_count = padded_len
        .checked_sub(msg_len)
        .and_then(|r| r.checked_sub(8))
        .ok_or(PadError::LargeMsg)?;
    let len = i64::try_from(msg_len).map_err(|_| PadError::LargeMsg)?;
    let body = &msg[..msg_len.min(msg.len())];
    let mut out = Vec::with_capacity(8 + body.len() + pad_count);
    put_int64(&mut out, len);
    out.extend_from_slice(body);
    out.resize(out.len() + pad_count, b'#');
    Ok(out)
}

/// Inverse of [`pad_lazy`]: tolerates fewer bytes than declared (returns what is there).
pub fn unpad_lazy(padded: &[u8]) -> Result<&[u8], PadError> {
    let mut p = Parser::new(padded);
    let n = p.int64().map_err(|_| PadError::InvalidMsg)?;
    let n = usize::try_from(n).map_err(|_| PadError::InvalidMsg)?;
    let rest = p.remaining();
    Ok(&rest[..n.min(rest.len())])
}

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE;
const B64URL_LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// base64url with `=` padding (the reference's `strEncode` of bytes).
pub fn base64url_encode(b: &[u8]) -> String {
    B64URL.encode(b)
}

/// base64url without padding (short links, JWTs).
pub fn base64url_encode_unpadded(b: &[u8]) -> String {
    B64URL_LENIENT.encode(b)
}

/// Parses base64url, padded or not.
pub fn base64url_decode(s: &str) -> Result<Vec<u8>, DecodeError> {
    B64URL_LENIENT
        .decode(s.as_bytes())
        .map_err(|_| DecodeError::Invalid("base64url"))
}

/// The reference's text parser for a byte string: takes `[A-Za-z0-9_-]+` then `=*` from the
/// start of `s`, decodes it and returns the rest of `s` for the next parser.
pub fn base64url_token(s: &str) -> Result<(Vec<u8>, &str), DecodeError> {
    let body = s
        .bytes()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        .count();
    if body == 0 {
        return Err(DecodeError::Invalid("empty base64url token"));
    }
    let pads = s[body..].bytes().take_while(|c| *c == b'=').count();
    let v = base64url_decode(&s[..body + pads])?;
    Ok((v, &s[body + pads..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_never_reads_past_end() {
        let mut p = Parser::new(&[5, 1, 2]);
        assert_eq!(p.short_string(), Err(DecodeError::Eof));
        let mut p = Parser::new(&[0xff]);
        assert_eq!(p.word16(), Err(DecodeError::Eof));
    }

    #[test]
    fn short_string_limit() {
        assert!(ShortString::new(vec![0; 255]).is_ok());
        assert!(ShortString::new(vec![0; 256]).is_err());
        let mut v = Vec::new();
        assert!(put_short_string(&mut v, &[0; 256]).is_err());
    }
}
