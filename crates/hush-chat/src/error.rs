//! Decoder errors. Every decoder in this crate returns one of these; none panics on any input.

use thiserror::Error;

/// Why a chat message, a batch or a compressed block could not be decoded (or encoded).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ChatError {
    /// The body is empty (reference: `"empty string"`).
    #[error("empty message body")]
    Empty,
    /// The body (or a batch element) is not valid JSON, or not the JSON shape of a chat
    /// message (an object with string `event` and object `params`).
    #[error("bad JSON: {0}")]
    Json(String),
    /// The first byte is none of the framings this crate reads (`{`, `[`, `X`, `=`).
    #[error("invalid element prefix {0:#04x}")]
    BadPrefix(u8),
    /// A framing the reference has but this crate does not decode (binary file chunks `F`,
    /// signed `/` and forwarded `>` relay-group elements).
    #[error("unsupported chat framing: {0}")]
    Unsupported(&'static str),
    /// A known event whose `params` do not have the shape the reference requires
    /// (e.g. `x.info` without `profile`).
    #[error("bad params for {event}: {reason}")]
    BadParams { event: String, reason: String },
    /// `v` is not a chat version range (`"1"`, `"1-5"`; min ≤ max, 16-bit numbers).
    #[error("bad chat version range {0:?}")]
    BadVersionRange(String),
    /// A byte string field (`msgId`, `contactReqId`, …) is not base64url.
    #[error("bad base64url in {field}")]
    BadBase64 { field: &'static str },
    /// The binary framing of a compressed batch (`X`) or binary batch (`=`) is cut short,
    /// has an unknown tag, a zero count, or trailing bytes.
    #[error("bad binary framing: {0}")]
    Framing(&'static str),
    /// A compressed block decompresses to more than the cap (a zstd bomb, or a peer over the
    /// reference's 65,536-byte limit); decoding stops at the cap without allocating more.
    #[error("decompressed block over {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    /// zstd refused the block (corrupt frame, bad checksum, …).
    #[error("zstd: {0}")]
    Zstd(String),
    /// An encoded message or batch is over the size limit given to the encoder.
    #[error("encoded message is {len} bytes, over the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
}
