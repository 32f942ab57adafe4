//! Transmissions and batching (reference §2.6, §2.7; upstream `Protocol.hs` `tEncodeAuth`,
//! `encodeTransmissionForAuth`, `batchTransmissions_`, `tParse`).
//!
//! ```text
//! transmission = authorization(shortString)
//!                [serviceSig: Maybe shortString  -- SMP v>=16 and authorization non-empty]
//!                [sessionId(shortString)         -- SMP v<7, NTF v<2]
//!                corrId(shortString) entityId(shortString) command(Tail)
//! block content = count(1..255) ‖ count × Large(transmission)
//! ```
//!
//! The layout depends on the protocol and the negotiated version; [`Layout`] captures both.
//! The contract functions take `(version, service_slot)`: `service_slot = true` means SMP
//! rules (service slot from v16, session id on the wire below v7), `false` means NTF rules
//! (no service slot, session id on the wire below v2).

use crate::encoding::{DecodeError, EncodeError, Parser, put_large, put_short_string};
use crate::version::{ntf_version, smp_version};
use thiserror::Error;

/// One transmission as on the wire, borrowing its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Transmission<'a> {
    /// Empty (no authorization), 64/114-byte signature or 80-byte authenticator.
    pub authorization: &'a [u8],
    /// Service signature; only representable when the layout has the service slot and
    /// `authorization` is non-empty. `None` encodes as `'0'` in that slot.
    pub service_sig: Option<&'a [u8]>,
    /// Session id; on the wire only in legacy layouts (SMP v<7, NTF v1). Ignored when
    /// encoding newer layouts and empty after decoding them.
    pub session_id: &'a [u8],
    pub corr_id: &'a [u8],
    pub entity_id: &'a [u8],
    /// Tag and parameters, the rest of the transmission.
    pub command: &'a [u8],
}

impl<'a> Transmission<'a> {
    /// An unauthorized transmission (server replies, `PING`, unsigned `SEND`...).
    pub fn new(corr_id: &'a [u8], entity_id: &'a [u8], command: &'a [u8]) -> Self {
        Transmission {
            corr_id,
            entity_id,
            command,
            ..Default::default()
        }
    }

    /// Owned copy.
    pub fn to_owned(&self) -> RawTransmission {
        RawTransmission {
            authorization: self.authorization.to_vec(),
            service_sig: self.service_sig.map(<[u8]>::to_vec),
            session_id: self.session_id.to_vec(),
            corr_id: self.corr_id.to_vec(),
            entity_id: self.entity_id.to_vec(),
            command: self.command.to_vec(),
        }
    }

    /// The bytes that get signed / authenticated, with `session_id` being the connection's
    /// tls-unique (not necessarily the field of this struct, which is empty for v>=7).
    pub fn authorized(&self, session_id: &[u8]) -> Vec<u8> {
        authorized_bytes(session_id, self.corr_id, self.entity_id, self.command)
    }
}

/// Owned variant of [`Transmission`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RawTransmission {
    pub authorization: Vec<u8>,
    pub service_sig: Option<Vec<u8>>,
    pub session_id: Vec<u8>,
    pub corr_id: Vec<u8>,
    pub entity_id: Vec<u8>,
    pub command: Vec<u8>,
}

impl RawTransmission {
    pub fn as_ref(&self) -> Transmission<'_> {
        Transmission {
            authorization: &self.authorization,
            service_sig: self.service_sig.as_deref(),
            session_id: &self.session_id,
            corr_id: &self.corr_id,
            entity_id: &self.entity_id,
            command: &self.command,
        }
    }
}

/// The service signature is always Ed25519 (reference `Maybe (Signature 'Ed25519)`); any other
/// length makes the whole transmission unparsable (`ERR BLOCK`).
pub const SERVICE_SIGNATURE_LEN: usize = 64;

/// What an authorization is, decided by its length (reference `decodeTAuthBytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthorizationKind {
    /// Empty: no authorization.
    None,
    /// 80 bytes: crypto_box authenticator.
    Authenticator,
    /// 64 bytes: Ed25519 signature.
    Ed25519Signature,
    /// 114 bytes: Ed448 signature.
    Ed448Signature,
}

impl AuthorizationKind {
    /// `None` (the Rust `Option`) for any other length: the relay answers `ERR BLOCK` with the
    /// request's corrId and an empty entity.
    pub fn classify(authorization: &[u8]) -> Option<AuthorizationKind> {
        match authorization.len() {
            0 => Some(AuthorizationKind::None),
            80 => Some(AuthorizationKind::Authenticator),
            64 => Some(AuthorizationKind::Ed25519Signature),
            114 => Some(AuthorizationKind::Ed448Signature),
            _ => None,
        }
    }
}

/// Which optional fields a transmission has at a given protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The session id travels on the wire (before corrId).
    pub session_id_on_wire: bool,
    /// A `Maybe` service signature follows every non-empty authorization.
    pub service_slot: bool,
}

impl Layout {
    /// SMP at a negotiated version.
    pub const fn smp(version: u16) -> Self {
        Layout {
            session_id_on_wire: version < smp_version::IMPLIED_SESSION_ID,
            service_slot: version >= smp_version::SERVICE_CERTS,
        }
    }

    /// NTF at a negotiated version.
    pub const fn ntf(version: u16) -> Self {
        Layout {
            session_id_on_wire: version < ntf_version::AUTH_BATCH_CMDS,
            service_slot: false,
        }
    }

    /// The contract's `(version, service_slot)` pair: `true` = SMP rules, `false` = NTF rules.
    pub const fn for_contract(version: u16, service_slot: bool) -> Self {
        if service_slot {
            Layout::smp(version)
        } else {
            Layout::ntf(version)
        }
    }
}

/// Appends one transmission in the given layout.
pub fn encode_transmission_with(
    out: &mut Vec<u8>,
    t: &Transmission<'_>,
    layout: Layout,
) -> Result<(), EncodeError> {
    let start = out.len();
    let r = encode_inner(out, t, layout);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

fn encode_inner(
    out: &mut Vec<u8>,
    t: &Transmission<'_>,
    layout: Layout,
) -> Result<(), EncodeError> {
    put_short_string(out, t.authorization)?;
    if layout.service_slot && !t.authorization.is_empty() {
        match t.service_sig {
            None => out.push(b'0'),
            Some(sig) => {
                if sig.len() != SERVICE_SIGNATURE_LEN {
                    return Err(EncodeError::Invalid(
                        "service signature must be 64 bytes (Ed25519)",
                    ));
                }
                out.push(b'1');
                put_short_string(out, sig)?;
            }
        }
    } else if t.service_sig.is_some() {
        return Err(EncodeError::Invalid(
            "service signature needs the v16+ slot and a non-empty authorization",
        ));
    }
    if layout.session_id_on_wire {
        put_short_string(out, t.session_id)?;
    }
    put_short_string(out, t.corr_id)?;
    put_short_string(out, t.entity_id)?;
    out.extend_from_slice(t.command);
    Ok(())
}

/// Contract form of [`encode_transmission_with`]: `service_slot = true` for SMP (slot from
/// v16, session id on the wire below v7), `false` for NTF (session id on the wire below v2).
/// On error nothing is appended.
pub fn encode_transmission(
    out: &mut Vec<u8>,
    t: &Transmission<'_>,
    version: u16,
    service_slot: bool,
) -> Result<(), EncodeError> {
    encode_transmission_with(out, t, Layout::for_contract(version, service_slot))
}

/// Parses one transmission (the whole input; the command is its tail).
pub fn decode_transmission_with(
    bytes: &[u8],
    layout: Layout,
) -> Result<Transmission<'_>, DecodeError> {
    decode_transmission_signed(bytes, layout).map(|(t, _)| t)
}

/// [`decode_transmission_with`], and the wire bytes from corrId's length byte to the end:
/// `shortString(corrId) ‖ shortString(entityId) ‖ command`, the part of the authorized bytes
/// that lies in the transmission as it is (see [`Authorized`]).
pub fn decode_transmission_signed(
    bytes: &[u8],
    layout: Layout,
) -> Result<(Transmission<'_>, &[u8]), DecodeError> {
    let mut p = Parser::new(bytes);
    let authorization = p.short_string()?;
    let service_sig = if layout.service_slot && !authorization.is_empty() {
        p.maybe(|p| {
            let s = p.short_string()?;
            if s.len() == SERVICE_SIGNATURE_LEN {
                Ok(s)
            } else {
                Err(DecodeError::Invalid(
                    "service signature must be 64 bytes (Ed25519)",
                ))
            }
        })?
    } else {
        None
    };
    let session_id = if layout.session_id_on_wire {
        p.short_string()?
    } else {
        &[]
    };
    let signed = p.remaining();
    let corr_id = p.short_string()?;
    let entity_id = p.short_string()?;
    let command = p.tail();
    Ok((
        Transmission {
            authorization,
            service_sig,
            session_id,
            corr_id,
            entity_id,
            command,
        },
        signed,
    ))
}

/// The authorized bytes of a received transmission without copying them:
/// `[certHash] ‖ shortString(sessionId) ‖ shortString(corrId) ‖ shortString(entityId) ‖
/// command`, the last three being the transmission's own wire bytes
/// ([`decode_transmission_signed`]). A 16 KB `SEND` is hashed where it lies.
#[derive(Clone, Copy, Debug)]
pub struct Authorized<'a> {
    cert_hash: &'a [u8],
    /// `shortString(sessionId)`'s length byte (none in [`Authorized::from_bytes`]).
    session_len: Option<[u8; 1]>,
    session_id: &'a [u8],
    signed: &'a [u8],
}

impl<'a> Authorized<'a> {
    /// `None` if `session_id` is over 255 bytes (it could not be a shortString).
    pub fn new(session_id: &'a [u8], signed: &'a [u8]) -> Option<Self> {
        Some(Authorized {
            cert_hash: &[],
            session_len: Some([u8::try_from(session_id.len()).ok()?]),
            session_id,
            signed,
        })
    }

    /// Authorized bytes already laid out in one slice.
    pub fn from_bytes(bytes: &'a [u8]) -> Self {
        Authorized {
            cert_hash: &[],
            session_len: None,
            session_id: &[],
            signed: bytes,
        }
    }

    /// The same bytes after a service certificate's hash (service sessions: the entity key
    /// signs `certHash ‖ authorized`).
    pub fn with_cert_hash(self, cert_hash: &'a [u8]) -> Self {
        Authorized { cert_hash, ..self }
    }

    /// The bytes in order, as parts to hash.
    pub fn parts(&self) -> [&[u8]; 4] {
        [
            self.cert_hash,
            self.session_len.as_ref().map_or(&[][..], |l| &l[..]),
            self.session_id,
            self.signed,
        ]
    }

    /// The bytes, concatenated.
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts().concat()
    }
}

/// Contract form of [`decode_transmission_with`] (same `service_slot` meaning as
/// [`encode_transmission`]).
pub fn decode_transmission(
    bytes: &[u8],
    version: u16,
    service_slot: bool,
) -> Result<Transmission<'_>, DecodeError> {
    decode_transmission_with(bytes, Layout::for_contract(version, service_slot))
}

/// `shortString(sessionId) ‖ shortString(corrId) ‖ shortString(entityId) ‖ command`, or an
/// error if a field exceeds 255 bytes.
pub fn try_authorized_bytes(
    session_id: &[u8],
    corr_id: &[u8],
    entity_id: &[u8],
    command: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut v =
        Vec::with_capacity(3 + session_id.len() + corr_id.len() + entity_id.len() + command.len());
    put_short_string(&mut v, session_id)?;
    put_short_string(&mut v, corr_id)?;
    put_short_string(&mut v, entity_id)?;
    v.extend_from_slice(command);
    Ok(v)
}

/// The bytes that get signed / authenticated:
/// `shortString(sessionId) ‖ shortString(corrId) ‖ shortString(entityId) ‖ command`.
///
/// Fields come from decoded transmissions (≤ 255 bytes by construction) or from our own
/// values. If a field is longer than 255 bytes (it could never be sent) the result is
/// empty; use [`try_authorized_bytes`] to get an error instead.
pub fn authorized_bytes(
    session_id: &[u8],
    corr_id: &[u8],
    entity_id: &[u8],
    command: &[u8],
) -> Vec<u8> {
    try_authorized_bytes(session_id, corr_id, entity_id, command).unwrap_or_default()
}

/// Bytes of block overhead not available to transmissions: 2 (pad length) + 1 (count) +
/// 16 (auth tag), applied to every block (reference §2.6).
pub const BATCH_OVERHEAD: usize = 19;
/// At most this many transmissions per block (count is one byte).
pub const MAX_BATCH_COUNT: usize = 255;

/// A transmission that can never fit a block (upstream `TELargeMsg`).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("transmission #{index} of {len} bytes does not fit a block")]
pub struct TooLarge {
    /// Index into the `items` given to [`batch_transmissions`].
    pub index: usize,
    pub len: usize,
}

/// One block's content produced by [`batch_transmissions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// `count ‖ count × Large(item)`, ready to be padded / encrypted.
    pub content: Vec<u8>,
    /// The indices (into `items`) of the transmissions in this block, in order.
    pub items: std::ops::Range<usize>,
}

/// Groups encoded transmissions into block contents, like the reference
/// (`batchTransmissions_`): a block holds items while Σ(2 + len) ≤ `block_size − 19` and at
/// most 255 items. Grouping is done from the **end** (a right fold), so the last blocks are
/// full and the first one takes the remainder — e.g. 300 signed v18 `SUB`s give blocks of
/// 30, 135 and 135. An item that can never fit (2 + len > budget, or len > 65535) yields
/// `Err(TooLarge)` at its position and splits the blocks around it; the others still batch.
/// The result is in item order; empty input gives an empty vector.
pub fn batch_transmissions(items: &[Vec<u8>], block_size: usize) -> Vec<Result<Batch, TooLarge>> {
    batch_ranges(items, block_size)
        .into_iter()
        .map(|r| {
            r.map(|range| {
                let slice = items.get(range.clone()).unwrap_or(&[]);
                let mut content =
                    Vec::with_capacity(1 + slice.iter().map(|t| 2 + t.len()).sum::<usize>());
                // At most MAX_BATCH_COUNT items per block (checked by batch_ranges).
                content.push(slice.len() as u8);
                for t in slice {
                    // Cannot fail: every item here is ≤ 65535 bytes.
                    let _ = put_large(&mut content, t);
                }
                Batch {
                    content,
                    items: range,
                }
            })
        })
        .collect()
}

/// The grouping of [`batch_transmissions`] without building the block contents: each
/// block's item range (non-empty, in item order), or the item that can never fit. For
/// writers that encode `count ‖ count × Large(item)` straight into their block buffer.
pub fn batch_ranges(
    items: &[Vec<u8>],
    block_size: usize,
) -> Vec<Result<std::ops::Range<usize>, TooLarge>> {
    let budget = block_size.saturating_sub(BATCH_OVERHEAD);
    let mut rev: Vec<Result<std::ops::Range<usize>, TooLarge>> = Vec::new();
    let close = |rev: &mut Vec<Result<std::ops::Range<usize>, TooLarge>>, start: usize, end| {
        if end > start {
            rev.push(Ok(start..end));
        }
    };
    // Current block is items[i+1 .. end] while scanning backwards.
    let mut end = items.len();
    let mut used = 0usize;
    let mut n = 0usize;
    for (i, t) in items.iter().enumerate().rev() {
        let need = 2 + t.len();
        if need > budget || t.len() > u16::MAX as usize {
            close(&mut rev, i + 1, end);
            rev.push(Err(TooLarge {
                index: i,
                len: t.len(),
            }));
            end = i;
            used = 0;
            n = 0;
        } else if used + need <= budget && n < MAX_BATCH_COUNT {
            used += need;
            n += 1;
        } else {
            close(&mut rev, i + 1, end);
            end = i + 1;
            used = need;
            n = 1;
        }
    }
    close(&mut rev, 0, end);
    rev.reverse();
    rev
}

/// Builds the content of a single block holding exactly these transmissions, or an error if
/// they do not all fit (`block_size − 19` budget, 1..255 items).
pub fn batch_one(items: &[&[u8]], block_size: usize) -> Result<Vec<u8>, EncodeError> {
    let budget = block_size.saturating_sub(BATCH_OVERHEAD);
    let total: usize = items.iter().map(|t| 2 + t.len()).sum();
    if items.is_empty() {
        return Err(EncodeError::Invalid("empty batch"));
    }
    if items.len() > MAX_BATCH_COUNT {
        return Err(EncodeError::TooLong {
            len: items.len(),
            max: MAX_BATCH_COUNT,
        });
    }
    if total > budget {
        return Err(EncodeError::TooLong {
            len: total,
            max: budget,
        });
    }
    let mut c = Vec::with_capacity(1 + total);
    c.push(items.len() as u8);
    for t in items {
        put_large(&mut c, t)?;
    }
    Ok(c)
}

/// Receiver side: content must be `count(1..255) ‖ count × Large` with nothing left over
/// (otherwise the whole block is rejected, reference `ERR BLOCK`).
pub fn decode_batch(content: &[u8]) -> Result<Vec<&[u8]>, DecodeError> {
    let mut p = Parser::new(content);
    let items = p.non_empty(|p| p.large())?;
    p.finish()?;
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The authorized bytes in place equal the ones built from the decoded fields, in every
        /// layout (session id on the wire or not, service slot or not, signed or not), with and
        /// without a certificate hash.
        #[test]
        fn authorized_in_place_equals_authorized_bytes(
            session in proptest::collection::vec(any::<u8>(), 0..64),
            corr in proptest::collection::vec(any::<u8>(), 0..30),
            entity in proptest::collection::vec(any::<u8>(), 0..40),
            command in proptest::collection::vec(any::<u8>(), 0..300),
            signed in any::<bool>(), service in any::<bool>(),
            version in prop::sample::select(vec![6u16, 7, 15, 16, 18]),
        ) {
            let sig = [7u8; 64];
            let t = Transmission {
                authorization: if signed { &sig } else { &[] },
                service_sig: (signed && service && version >= 16).then_some(&[8u8; 64][..]),
                session_id: &session,
                corr_id: &corr,
                entity_id: &entity,
                command: &command,
            };
            let layout = Layout::smp(version);
            let mut wire = Vec::new();
            encode_transmission_with(&mut wire, &t, layout).unwrap();
            let (d, tail) = decode_transmission_signed(&wire, layout).unwrap();
            prop_assert_eq!(d, decode_transmission_with(&wire, layout).unwrap());
            let a = Authorized::new(&session, tail).unwrap();
            let want = authorized_bytes(&session, &corr, &entity, &command);
            prop_assert_eq!(a.to_vec(), want.clone());
            prop_assert_eq!(a.parts().concat(), want.clone());
            let hash = [9u8; 32];
            prop_assert_eq!(a.with_cert_hash(&hash).to_vec(), [&hash[..], &want].concat());
            prop_assert_eq!(Authorized::from_bytes(&want).to_vec(), want.clone());
        }
    }

    #[test]
    fn a_session_id_over_255_bytes_has_no_authorized_bytes() {
        assert!(Authorized::new(&[0; 256], b"x").is_none());
        assert!(Authorized::new(&[0; 255], b"x").is_some());
    }

    #[test]
    fn too_large_in_middle_splits() {
        let items = vec![vec![1; 10], vec![2; 600], vec![3; 10]];
        let r = batch_transmissions(&items, 512);
        assert_eq!(r.len(), 3);
        assert_eq!(
            decode_batch(&r[0].as_ref().unwrap().content).unwrap(),
            vec![&[1u8; 10][..]]
        );
        assert_eq!(r[1], Err(TooLarge { index: 1, len: 600 }));
        assert_eq!(r[0].as_ref().unwrap().items, 0..1);
        assert_eq!(r[2].as_ref().unwrap().items, 2..3);
    }

    #[test]
    fn service_sig_needs_slot() {
        let t = Transmission {
            authorization: &[1; 64],
            service_sig: Some(&[2; 64]),
            ..Default::default()
        };
        let mut out = vec![9];
        assert!(encode_transmission(&mut out, &t, 15, true).is_err());
        assert_eq!(out, vec![9]);
        assert!(encode_transmission(&mut out, &t, 16, true).is_ok());
        let t = Transmission {
            authorization: &[1; 64],
            service_sig: Some(&[2; 63]),
            ..Default::default()
        };
        assert!(encode_transmission(&mut Vec::new(), &t, 16, true).is_err());
        // 63-byte service signature on the wire: unparsable
        let mut bad = vec![64];
        bad.extend([1; 64]);
        bad.extend([b'1', 63]);
        bad.extend([2; 63]);
        bad.extend([0, 0]);
        assert!(decode_transmission(&bad, 18, true).is_err());
        assert_eq!(AuthorizationKind::classify(&[0; 65]), None);
        assert_eq!(
            AuthorizationKind::classify(&[0; 114]),
            Some(AuthorizationKind::Ed448Signature)
        );
    }
}
