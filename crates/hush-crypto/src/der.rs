//! A minimal strict DER reader/writer: just enough for SPKI, PKCS#8 and the X.509
//! "SignedExact" signed session key. Never panics on malformed input.

use crate::CryptoError;

pub(crate) const TAG_SEQUENCE: u8 = 0x30;
pub(crate) const TAG_OID: u8 = 0x06;
pub(crate) const TAG_BIT_STRING: u8 = 0x03;

/// One TLV read from the front of `input`.
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    /// The value bytes.
    pub value: &'a [u8],
    /// The whole TLV (tag, length and value).
    pub raw: &'a [u8],
}

/// Reads one TLV; returns it and the rest. Only definite, minimally-encoded lengths
/// (short form, or long form with 1–2 bytes) and single-byte tags are accepted.
pub(crate) fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), CryptoError> {
    let bad = || CryptoError::Der("malformed DER");
    let (&tag, rest) = input.split_first().ok_or_else(bad)?;
    if tag & 0x1f == 0x1f {
        return Err(bad());
    }
    let (&l0, rest) = rest.split_first().ok_or_else(bad)?;
    let (len, rest) = match l0 {
        0..=0x7f => (usize::from(l0), rest),
        0x81 => {
            let (&l, rest) = rest.split_first().ok_or_else(bad)?;
            if l < 0x80 {
                return Err(bad());
            }
            (usize::from(l), rest)
        }
        0x82 => {
            let b = rest.get(..2).ok_or_else(bad)?;
            let l = usize::from(u16::from_be_bytes([b[0], b[1]]));
            if l < 0x100 {
                return Err(bad());
            }
            (l, &rest[2..])
        }
        _ => return Err(bad()),
    };
    let value = rest.get(..len).ok_or_else(bad)?;
    let header = input.len() - rest.len();
    let raw = &input[..header + len];
    Ok((Tlv { tag, value, raw }, &rest[len..]))
}

/// Reads one TLV with the expected tag.
pub(crate) fn expect_tlv(input: &[u8], tag: u8) -> Result<(Tlv<'_>, &[u8]), CryptoError> {
    let (t, rest) = read_tlv(input)?;
    if t.tag != tag {
        return Err(CryptoError::Der("unexpected DER tag"));
    }
    Ok((t, rest))
}

/// Appends a TLV with a definite length.
pub(crate) fn write_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let n = value.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend_from_slice(&[0x81, n as u8]);
    } else {
        // Only used for the small structures in this crate (< 64 KiB).
        out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(value);
}
