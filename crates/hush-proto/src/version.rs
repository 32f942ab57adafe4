//! Protocol versions and version ranges (reference §0, §2.5, §5.1; upstream `Version.hs`).
//!
//! A [`VersionRange`] always has `min <= max` (enforced by [`VersionRange::new`] and by the
//! binary parser). Negotiation follows the reference: two ranges are compatible when they
//! overlap, and the agreed version is the smaller of the two maxima.

use crate::encoding::{Decode, DecodeError, Encode, Parser, put_word16};

/// SMP block size (reference §2.6).
pub const SMP_BLOCK_SIZE: usize = 16384;
/// NTF block size (reference §5.1).
pub const NTF_BLOCK_SIZE: usize = 512;

/// An inclusive version range, `min <= max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VersionRange {
    min: u16,
    max: u16,
}

impl VersionRange {
    /// `None` if `min > max` (upstream `mkVersionRange` errors "invalid version range").
    pub const fn new(min: u16, max: u16) -> Option<Self> {
        if min <= max {
            Some(VersionRange { min, max })
        } else {
            None
        }
    }

    /// The range holding exactly one version.
    pub const fn single(v: u16) -> Self {
        VersionRange { min: v, max: v }
    }

    pub const fn min(&self) -> u16 {
        self.min
    }

    pub const fn max(&self) -> u16 {
        self.max
    }

    /// `v` lies inside the range (upstream `isCompatible`).
    pub const fn contains(&self, v: u16) -> bool {
        self.min <= v && v <= self.max
    }

    /// Overlap of two ranges, `None` if disjoint (upstream `compatibleVRange`).
    pub fn intersect(&self, other: &VersionRange) -> Option<VersionRange> {
        VersionRange::new(self.min.max(other.min), self.max.min(other.max))
    }

    /// The version both sides use: the smaller of the two maxima when the ranges overlap
    /// (upstream `compatibleVersion`).
    pub fn compatible_version(&self, other: &VersionRange) -> Option<u16> {
        self.intersect(other).map(|r| r.max)
    }

    /// Keeps `min`, sets `max = new_max`; `None` if `new_max` is outside the range
    /// (upstream `compatibleVRange'`, used by servers after the client hello).
    pub fn capped(&self, new_max: u16) -> Option<VersionRange> {
        if self.contains(new_max) {
            VersionRange::new(self.min, new_max)
        } else {
            None
        }
    }

    /// Caps the maximum at `cap` (e.g. the SMP proxy's 17), `None` if `cap < min`.
    pub fn cap_max(&self, cap: u16) -> Option<VersionRange> {
        VersionRange::new(self.min, self.max.min(cap))
    }

    /// Text form: `"min-max"`, or a single number when `min == max`.
    pub fn str_encode(&self) -> String {
        if self.min == self.max {
            self.min.to_string()
        } else {
            format!("{}-{}", self.min, self.max)
        }
    }

    /// Parses the text form (`"4"`, `"1-4"`; `"2-2"` accepted).
    pub fn str_decode(s: &str) -> Result<Self, DecodeError> {
        fn num(s: &str) -> Result<u16, DecodeError> {
            if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                return Err(DecodeError::Invalid("version number"));
            }
            s.parse()
                .map_err(|_| DecodeError::Invalid("version number"))
        }
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let v = num(s)?;
                (v, v)
            }
        };
        VersionRange::new(a, b).ok_or(DecodeError::Invalid("invalid version range"))
    }
}

impl Encode for VersionRange {
    fn encode(&self, out: &mut Vec<u8>) {
        put_word16(out, self.min);
        put_word16(out, self.max);
    }
}

impl Decode for VersionRange {
    fn decode(p: &mut Parser<'_>) -> Result<Self, DecodeError> {
        let min = p.word16()?;
        let max = p.word16()?;
        VersionRange::new(min, max).ok_or(DecodeError::Invalid("invalid version range"))
    }
}

/// SMP relay protocol versions (reference §2.5).
pub mod smp_version {
    use super::VersionRange;

    /// Oldest supported version (`NEW` can create without subscribing).
    pub const MIN: u16 = 6;
    pub const CURRENT: u16 = 18;
    /// crypto_box authenticators; session id implied (not sent) from here on.
    pub const AUTH_CMDS: u16 = 7;
    /// Alias of [`AUTH_CMDS`]: from this version the session id is not on the wire.
    pub const IMPLIED_SESSION_ID: u16 = 7;
    /// SMP proxy (`PRXY`, `PFWD`, `RFWD`, `PKEY`, `PRES`, `RRES`).
    pub const SENDING_PROXY: u16 = 8;
    /// `SKEY`; `NEW`/`IDS` carry the "sender can secure" flag.
    pub const SND_AUTH_KEY: u16 = 9;
    /// `DELD` event (older clients get `END`).
    pub const DELETED_EVENT: u16 = 10;
    /// Transport block encryption.
    pub const ENCRYPTED_BLOCK: u16 = 11;
    /// `ERR BLOCKED` (older clients get `ERR AUTH`).
    pub const BLOCKED_ENTITY: u16 = 12;
    /// `proxyServer` flag in the client hello.
    pub const PROXY_SERVER_HANDSHAKE: u16 = 14;
    /// Short links, queue modes.
    pub const SHORT_LINKS: u16 = 15;
    /// Service certificates; service-signature slot in transmissions; `SOK`.
    pub const SERVICE_CERTS: u16 = 16;
    /// `NEW` may carry notifier credentials.
    pub const NEW_NTF_CREDS: u16 = 17;
    /// Client notices inside `ERR BLOCKED`.
    pub const CLIENT_NOTICES: u16 = 18;
    /// Highest version an SMP proxy offers for forwarded traffic.
    pub const PROXIED_MAX: u16 = 17;

    /// Server range offered when any ALPN was negotiated.
    pub const SERVER_RANGE: VersionRange = VersionRange {
        min: MIN,
        max: CURRENT,
    };
    /// Server range offered without ALPN (legacy clients).
    pub const LEGACY_SERVER_RANGE: VersionRange = VersionRange { min: MIN, max: MIN };
    pub const CLIENT_RANGE: VersionRange = VersionRange {
        min: MIN,
        max: CURRENT,
    };
    /// Range used for proxied traffic (relay must support ≥ 8; capped at 17).
    pub const PROXIED_RANGE: VersionRange = VersionRange {
        min: SENDING_PROXY,
        max: PROXIED_MAX,
    };

    /// ALPN protocol name.
    pub const ALPN: &str = "smp/1";

    /// Largest `SEND` body accepted at a negotiated version (reference §3.6).
    pub const fn max_send_body(version: u16) -> usize {
        if version >= ENCRYPTED_BLOCK {
            16048
        } else if version >= SENDING_PROXY {
            16064
        } else {
            16088
        }
    }
}

/// NTF protocol versions (reference §5.1).
pub mod ntf_version {
    use super::VersionRange;

    pub const MIN: u16 = 1;
    pub const CURRENT: u16 = 3;
    /// Batched, authenticated commands; session id implied (not sent) from here on.
    pub const AUTH_BATCH_CMDS: u16 = 2;
    /// Invalid-token reason in `TKN INVALID`.
    pub const INVALID_REASON: u16 = 3;

    pub const SERVER_RANGE: VersionRange = VersionRange {
        min: MIN,
        max: CURRENT,
    };
    pub const LEGACY_SERVER_RANGE: VersionRange = VersionRange { min: MIN, max: MIN };
    pub const CLIENT_RANGE: VersionRange = VersionRange {
        min: MIN,
        max: CURRENT,
    };

    pub const ALPN: &str = "ntf/1";
}

/// SMP client (queue URI) versions.
pub mod smp_client_version {
    use super::VersionRange;
    pub const RANGE: VersionRange = VersionRange { min: 1, max: 4 };
}

/// SMP agent protocol versions.
pub mod agent_version {
    use super::VersionRange;
    pub const RANGE: VersionRange = VersionRange { min: 2, max: 7 };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_rejects_inverted_range() {
        assert!(VersionRange::from_bytes(&[0, 2, 0, 1]).is_err());
        assert_eq!(
            VersionRange::from_bytes(&[0, 1, 0, 3]).unwrap(),
            VersionRange::new(1, 3).unwrap()
        );
    }

    #[test]
    fn text_form() {
        assert_eq!(
            VersionRange::str_decode("2-2").unwrap(),
            VersionRange::single(2)
        );
        assert!(VersionRange::str_decode("3-2").is_err());
        assert!(VersionRange::str_decode("").is_err());
        assert!(VersionRange::str_decode("+1").is_err());
    }
}
