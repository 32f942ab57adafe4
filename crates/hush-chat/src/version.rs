//! Chat protocol versions (reference `Simplex.Chat.Protocol` "Chat version history",
//! `Simplex.Chat.Types.ChatVersionRange`, `peerConnChatVersion`).
//!
//! A chat message carries the sender's supported range in `"v"`, as text: `"1"` when min = max,
//! else `"min-max"` (e.g. `"1-16"`). A message without `"v"` means version 1 only
//! (`chatInitialVRange`). The app records the range of every message it receives from a
//! connection (`updatePeerChatVRange`), so the range in our conn info (`x.info` / `x.contact`)
//! and in every later message decides what the app sends us.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ChatError;

/// 1: chat versions in connections (the initial version; a message without `v`).
pub const INITIAL_CHAT_VERSION: u16 = 1;
/// 5: batch sending in groups (JSON-array batches).
pub const BATCH_SEND_VERSION: u16 = 5;
/// 8: compressed messages (`X` batches) and post-quantum e2e encryption.
pub const PQ_ENCRYPTION_COMPRESSION_VERSION: u16 = 8;
/// 9: batch sending in direct connections.
pub const BATCH_SEND2_VERSION: u16 = 9;
/// 10: business chats (a business address answers a contact request with a group).
pub const BUSINESS_CHATS_VERSION: u16 = 10;
/// 16: short link data in invitation, contact and group links.
pub const SHORT_LINK_DATA_VERSION: u16 = 16;
/// The newest version of the reference snapshot read for this crate (18: comments on channel
/// posts). Informational: hush does not claim it, see [`HUSH_CHAT_VRANGE`].
pub const REFERENCE_CURRENT_CHAT_VERSION: u16 = 18;

/// The range hush announces: 1–9. It covers everything a direct chat between a hush user and
/// an app user needs (batches in direct connections, compressed messages) and stops below
/// [`BUSINESS_CHATS_VERSION`], so an app's business address answers with a plain contact
/// (which hush understands) instead of a group (which it does not). Raising it is a decision
/// for whoever adds group support.
pub const HUSH_CHAT_VRANGE: ChatVersionRange = ChatVersionRange { min: 1, max: 9 };

/// A chat version range, `min ≤ max` (reference `VersionRangeChat`, JSON via `ChatVersionRange`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChatVersionRange {
    min: u16,
    max: u16,
}

impl ChatVersionRange {
    /// `chatInitialVRange`: 1–1, what a message without `"v"` means.
    pub const INITIAL: ChatVersionRange = ChatVersionRange { min: 1, max: 1 };

    /// `None` when `min > max` (reference `safeVersionRange`).
    pub fn new(min: u16, max: u16) -> Option<ChatVersionRange> {
        (min <= max).then_some(ChatVersionRange { min, max })
    }

    pub fn min(&self) -> u16 {
        self.min
    }

    pub fn max(&self) -> u16 {
        self.max
    }

    /// Whether the two ranges overlap.
    pub fn compatible(&self, peer: &ChatVersionRange) -> bool {
        self.min <= peer.max && peer.min <= self.max
    }

    /// The version a connection uses once the peer's range is known (reference
    /// `peerConnChatVersion local peer`): the highest common version when the ranges overlap;
    /// otherwise the peer's min if the peer is newer than us, else the peer's max.
    pub fn peer_conn_version(&self, peer: &ChatVersionRange) -> u16 {
        if self.compatible(peer) {
            self.max.min(peer.max)
        } else if peer.min > self.max {
            peer.min
        } else {
            peer.max
        }
    }
}

impl fmt::Display for ChatVersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

fn version_number(s: &str, whole: &str) -> Result<u16, ChatError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ChatError::BadVersionRange(whole.to_string()));
    }
    s.parse::<u16>()
        .map_err(|_| ChatError::BadVersionRange(whole.to_string()))
}

impl FromStr for ChatVersionRange {
    type Err = ChatError;

    fn from_str(s: &str) -> Result<Self, ChatError> {
        let (min, max) = match s.split_once('-') {
            Some((a, b)) => (version_number(a, s)?, version_number(b, s)?),
            None => {
                let v = version_number(s, s)?;
                (v, v)
            }
        };
        ChatVersionRange::new(min, max).ok_or_else(|| ChatError::BadVersionRange(s.to_string()))
    }
}

impl Serialize for ChatVersionRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChatVersionRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The chat version implied by the agent version of a connection (reference
/// `agentToChatVersion`): agent versions before PQ double ratchet (agent v5) mean chat v1,
/// later ones v8.
pub fn agent_to_chat_version(agent_version: u16) -> u16 {
    const PQDR_SMP_AGENT_VERSION: u16 = 5;
    if agent_version < PQDR_SMP_AGENT_VERSION {
        INITIAL_CHAT_VERSION
    } else {
        PQ_ENCRYPTION_COMPRESSION_VERSION
    }
}
