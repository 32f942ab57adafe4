//! Message bodies as the agent carries them (reference `parseChatMessages`,
//! `Simplex.Chat.Messages.Batch`, `Simplex.Messaging.Compression`).
//!
//! The first byte decides the framing:
//!
//! | first byte | framing |
//! |---|---|
//! | `{` | one JSON chat message |
//! | `[` | JSON array of chat messages (a batch; chat v5 groups, v9 direct) |
//! | `X` | compressed batch: `X` ‖ count(1 byte, ≥ 1) ‖ count × block; block = `0` ‖ len(1) ‖ bytes (passthrough, bodies under 181 bytes) or `1` ‖ len(2, big-endian) ‖ zstd frame. Each block, once decompressed (≤ 65,536 bytes), is again `{`, `[` or `=` — never `X` |
//! | `=` | binary batch: `=` ‖ count(1) ‖ count × (len(2) ‖ element) |
//!
//! Elements of a binary batch starting with `{` are JSON chat messages; the relay-group
//! element forms (`/` signed, `>` forwarded, `F` file chunk) are reported as
//! [`ChatError::Unsupported`], one error per element, never a panic.

use serde_json::Value;

use crate::ChatError;
use crate::message::ChatMessage;

/// Largest JSON message (or batch) body the app sends (reference `maxEncodedMsgLength`):
/// 15,780 (file chunk size) − 161 (forward overhead) − 16 (block encryption), rounded.
pub const MAX_ENCODED_MSG_LENGTH: usize = 15602;
/// Largest message body once compressed, and the size above which the app compresses
/// (reference `maxCompressedMsgLength`, = 15,602 − 2,222 for PQ headers).
pub const MAX_COMPRESSED_MSG_LENGTH: usize = 13380;
/// Largest decompressed block (reference `maxDecompressedMsgLength`).
pub const MAX_DECOMPRESSED_MSG_LENGTH: usize = 65536;
/// Largest JSON conn info (reference `maxEncodedInfoLength`).
pub const MAX_ENCODED_INFO_LENGTH: usize = 14694;
/// Largest conn info once compressed, and the size above which the app compresses it
/// (reference `maxCompressedInfoLength`).
pub const MAX_COMPRESSED_INFO_LENGTH: usize = 10968;
/// Bodies shorter than this go into a compressed batch uncompressed (reference
/// `maxLengthPassthrough`).
pub const MAX_LENGTH_PASSTHROUGH: usize = 181;
/// zstd level the reference compresses with.
pub const ZSTD_LEVEL: i32 = 3;

/// Caps for decoding compressed batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest decompressed block (reference: 65,536).
    pub max_block: usize,
    /// Largest sum of decompressed blocks in one body. Not in the reference (which caps each
    /// block only, so 255 blocks could expand to 16 MiB); the app puts one block of at most
    /// 15,602 bytes in a body, so hush caps the sum at one block's worth.
    pub max_total: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_block: MAX_DECOMPRESSED_MSG_LENGTH,
            max_total: MAX_DECOMPRESSED_MSG_LENGTH,
        }
    }
}

/// Decodes a message body (or conn info) into its chat messages, one result per message,
/// with the default [`DecodeLimits`]. Like the reference, a bad element gives an error in its
/// place and the others still decode; a body whose framing is broken gives one error.
pub fn parse_chat_messages(body: &[u8]) -> Vec<Result<ChatMessage, ChatError>> {
    parse_chat_messages_with(body, &DecodeLimits::default())
}

/// [`parse_chat_messages`] with explicit limits.
pub fn parse_chat_messages_with(
    body: &[u8],
    limits: &DecodeLimits,
) -> Vec<Result<ChatMessage, ChatError>> {
    match body.first() {
        None => vec![Err(ChatError::Empty)],
        Some(b'X') => match decompress_batch(&body[1..], limits) {
            Err(e) => vec![Err(e)],
            Ok(blocks) => blocks
                .into_iter()
                .flat_map(|b| match b {
                    Err(e) => vec![Err(e)],
                    Ok(b) if b.is_empty() => vec![Err(ChatError::Empty)],
                    Ok(b) => parse_uncompressed(&b),
                })
                .collect(),
        },
        Some(_) => parse_uncompressed(body),
    }
}

fn parse_uncompressed(s: &[u8]) -> Vec<Result<ChatMessage, ChatError>> {
    match s[0] {
        b'[' => match serde_json::from_slice::<Vec<Value>>(s) {
            Ok(items) => items.iter().map(ChatMessage::from_json).collect(),
            Err(e) => vec![Err(ChatError::Json(e.to_string()))],
        },
        b'=' => match decode_binary_batch(&s[1..]) {
            Ok(elems) => elems.into_iter().map(parse_element).collect(),
            Err(e) => vec![Err(e)],
        },
        _ => vec![parse_element(s)],
    }
}

fn parse_element(s: &[u8]) -> Result<ChatMessage, ChatError> {
    match s.first() {
        None => Err(ChatError::Empty),
        Some(b'{') => ChatMessage::from_json_bytes(s),
        Some(b'/') => Err(ChatError::Unsupported("signed element (relay groups)")),
        Some(b'>') => Err(ChatError::Unsupported("forwarded element (relay groups)")),
        Some(b'F') => Err(ChatError::Unsupported("binary file chunk")),
        Some(&c) => Err(ChatError::BadPrefix(c)),
    }
}

/// `count(1) ‖ count × Large`, nothing left over.
fn decode_binary_batch(s: &[u8]) -> Result<Vec<&[u8]>, ChatError> {
    let (&count, mut rest) = s
        .split_first()
        .ok_or(ChatError::Framing("binary batch without count"))?;
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        if rest.len() < 2 {
            return Err(ChatError::Framing("binary batch element length cut short"));
        }
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        rest = &rest[2..];
        if rest.len() < len {
            return Err(ChatError::Framing("binary batch element cut short"));
        }
        out.push(&rest[..len]);
        rest = &rest[len..];
    }
    if !rest.is_empty() {
        return Err(ChatError::Framing("trailing bytes after binary batch"));
    }
    Ok(out)
}

/// Reads the part of a compressed batch after `X`: the framing must be whole (else one
/// error); each block then decompresses or fails on its own.
fn decompress_batch(
    s: &[u8],
    limits: &DecodeLimits,
) -> Result<Vec<Result<Vec<u8>, ChatError>>, ChatError> {
    enum Block<'a> {
        Passthrough(&'a [u8]),
        Zstd(&'a [u8]),
    }
    let (&count, mut rest) = s
        .split_first()
        .ok_or(ChatError::Framing("compressed batch without count"))?;
    if count == 0 {
        return Err(ChatError::Framing("compressed batch with no blocks"));
    }
    let mut blocks = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (&tag, r) = rest
            .split_first()
            .ok_or(ChatError::Framing("compressed block cut short"))?;
        let (len, r) = match tag {
            b'0' => {
                let (&l, r) = r
                    .split_first()
                    .ok_or(ChatError::Framing("passthrough length cut short"))?;
                (l as usize, r)
            }
            b'1' => {
                if r.len() < 2 {
                    return Err(ChatError::Framing("compressed length cut short"));
                }
                (u16::from_be_bytes([r[0], r[1]]) as usize, &r[2..])
            }
            _ => return Err(ChatError::Framing("unknown compressed block tag")),
        };
        if r.len() < len {
            return Err(ChatError::Framing("compressed block cut short"));
        }
        let bytes = &r[..len];
        blocks.push(if tag == b'0' {
            Block::Passthrough(bytes)
        } else {
            Block::Zstd(bytes)
        });
        rest = &r[len..];
    }
    if !rest.is_empty() {
        return Err(ChatError::Framing("trailing bytes after compressed batch"));
    }
    let mut budget = limits.max_total;
    Ok(blocks
        .into_iter()
        .map(|b| {
            let cap = limits.max_block.min(budget);
            let out = match b {
                Block::Passthrough(p) if p.len() > cap => {
                    Err(ChatError::DecompressedTooLarge { limit: cap })
                }
                Block::Passthrough(p) => Ok(p.to_vec()),
                Block::Zstd(z) => decompress_capped(z, cap),
            };
            if let Ok(b) = &out {
                budget -= b.len();
            }
            out
        })
        .collect())
}

/// Decompresses one zstd block into at most `cap` bytes. The output buffer is `cap` bytes,
/// allocated once; zstd stops when it is full, so a bomb costs `cap` bytes and the time to
/// fill them, then gives [`ChatError::DecompressedTooLarge`].
pub fn decompress_capped(src: &[u8], cap: usize) -> Result<Vec<u8>, ChatError> {
    // A frame that declares its size up front is refused before any work.
    if let Ok(Some(n)) = zstd::zstd_safe::get_frame_content_size(src)
        && n > cap as u64
    {
        return Err(ChatError::DecompressedTooLarge { limit: cap });
    }
    let mut out = Vec::with_capacity(cap);
    let mut dctx = zstd::zstd_safe::DCtx::create();
    match dctx.decompress(&mut out, src) {
        Ok(_) => Ok(out),
        Err(code) => {
            let name = zstd::zstd_safe::get_error_name(code);
            if name.contains("too small") {
                Err(ChatError::DecompressedTooLarge { limit: cap })
            } else {
                Err(ChatError::Zstd(name.to_string()))
            }
        }
    }
}

/// One block of a compressed batch (reference `compress1` + `Compressed` encoding): bodies
/// under [`MAX_LENGTH_PASSTHROUGH`] bytes pass through, longer ones are zstd level 3.
fn compressed_block(body: &[u8]) -> Result<Vec<u8>, ChatError> {
    if body.len() < MAX_LENGTH_PASSTHROUGH {
        let mut out = Vec::with_capacity(body.len() + 2);
        out.push(b'0');
        out.push(body.len() as u8);
        out.extend_from_slice(body);
        return Ok(out);
    }
    let z = zstd::bulk::compress(body, ZSTD_LEVEL).map_err(|e| ChatError::Zstd(e.to_string()))?;
    let len = u16::try_from(z.len()).map_err(|_| ChatError::TooLarge {
        len: z.len(),
        limit: u16::MAX as usize,
    })?;
    let mut out = Vec::with_capacity(z.len() + 3);
    out.push(b'1');
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&z);
    Ok(out)
}

/// A compressed batch holding one block (reference `compressedBatchMsgBody_`):
/// `X` ‖ 0x01 ‖ block.
pub fn compress_body(body: &[u8]) -> Result<Vec<u8>, ChatError> {
    let block = compressed_block(body)?;
    let mut out = Vec::with_capacity(block.len() + 2);
    out.push(b'X');
    out.push(1);
    out.extend_from_slice(&block);
    Ok(out)
}

/// What to hand the agent as a message body (reference `deliverMessagesB`): a body over
/// [`MAX_COMPRESSED_MSG_LENGTH`] is compressed when `compress` is true (the connection has PQ
/// support and its chat version is ≥ 8), and must then fit in that limit; otherwise it must fit
/// in [`MAX_ENCODED_MSG_LENGTH`].
pub fn message_body(body: Vec<u8>, compress: bool) -> Result<Vec<u8>, ChatError> {
    size_rule(
        body,
        compress,
        MAX_COMPRESSED_MSG_LENGTH,
        MAX_ENCODED_MSG_LENGTH,
    )
}

/// What to hand the agent as connection info (reference `encodeConnInfoPQ`): like
/// [`message_body`] with the conn-info limits ([`MAX_COMPRESSED_INFO_LENGTH`],
/// [`MAX_ENCODED_INFO_LENGTH`]).
pub fn conn_info_body(msg: &ChatMessage, compress: bool) -> Result<Vec<u8>, ChatError> {
    size_rule(
        msg.encode_max(MAX_ENCODED_INFO_LENGTH)?,
        compress,
        MAX_COMPRESSED_INFO_LENGTH,
        MAX_ENCODED_INFO_LENGTH,
    )
}

fn size_rule(
    body: Vec<u8>,
    compress: bool,
    compressed_max: usize,
    plain_max: usize,
) -> Result<Vec<u8>, ChatError> {
    if compress && body.len() > compressed_max {
        let c = compress_body(&body)?;
        if c.len() > compressed_max {
            return Err(ChatError::TooLarge {
                len: c.len(),
                limit: compressed_max,
            });
        }
        return Ok(c);
    }
    if body.len() > plain_max {
        return Err(ChatError::TooLarge {
            len: body.len(),
            limit: plain_max,
        });
    }
    Ok(body)
}

/// Packs encoded messages into as few bodies of at most `max_len` bytes as fit, in order
/// (reference `batchMessages BMJson`): one message alone goes as it is, several as a JSON
/// array `[a,b,…]`. A message longer than `max_len` on its own gives an error in its place.
/// Use [`MAX_ENCODED_MSG_LENGTH`] for `max_len`; send batches (more than one message) only to
/// a peer whose chat version is ≥ 9 ([`crate::version::BATCH_SEND2_VERSION`]).
pub fn batch_messages(msgs: &[Vec<u8>], max_len: usize) -> Vec<Result<Vec<u8>, ChatError>> {
    let mut out = Vec::new();
    let mut cur: Vec<&[u8]> = Vec::new();
    let mut cur_len = 0usize;
    let batch_len = |len: usize, n: usize| if n <= 1 { len } else { len + n + 1 };
    let flush = |cur: &mut Vec<&[u8]>, out: &mut Vec<Result<Vec<u8>, ChatError>>| {
        match cur.len() {
            0 => {}
            1 => out.push(Ok(cur[0].to_vec())),
            _ => {
                let mut b = vec![b'['];
                for (i, m) in cur.iter().enumerate() {
                    if i > 0 {
                        b.push(b',');
                    }
                    b.extend_from_slice(m);
                }
                b.push(b']');
                out.push(Ok(b));
            }
        }
        cur.clear();
    };
    for m in msgs {
        if batch_len(cur_len + m.len(), cur.len() + 1) <= max_len {
            cur.push(m);
            cur_len += m.len();
        } else if m.len() <= max_len {
            flush(&mut cur, &mut out);
            cur.push(m);
            cur_len = m.len();
        } else {
            flush(&mut cur, &mut out);
            cur_len = 0;
            out.push(Err(ChatError::TooLarge {
                len: m.len(),
                limit: max_len,
            }));
        }
    }
    flush(&mut cur, &mut out);
    out
}
