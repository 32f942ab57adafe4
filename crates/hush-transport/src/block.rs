//! Fixed-size block I/O (reference §2.6): padded blocks, and from SMP v11 the secretbox chain.
//!
//! Buffer policy: no buffer lives in an idle reader or writer. A reader waits for the first
//! byte of the next block with a 1-byte stack buffer and only then allocates the block
//! buffer, which it hands out inside the returned [`Block`] (decrypted in place, no copy); a
//! writer allocates one block buffer per block and frees it after the write. With OpenSSL's
//! `SSL_MODE_RELEASE_BUFFERS` (see [`crate::tls`]) an idle connection therefore holds no
//! 16 KB buffer at all. A pool was not used: one 16 KB allocation per block is cheap next to
//! the TLS record and secretbox work on the same bytes.
//!
//! [`BlockReader::recv`] is cancel-safe (a partly read block is kept in the reader and the
//! next call continues it); [`BlockWriter`] methods are not: if a send future is dropped
//! mid-write, the connection must be dropped too.

use hush_crypto::SbChainKey;
use hush_proto::transmission::{TooLarge, batch_ranges, decode_batch};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroize;

use crate::error::{BlockError, TransportError};

/// Poly1305 tag length of an encrypted block.
pub const TAG_LEN: usize = 16;

/// `Word16 len ‖ content ‖ …` → the content's range inside `padded`.
fn unpad_range(padded: &[u8]) -> Option<std::ops::Range<usize>> {
    let len = u16::from_be_bytes([*padded.first()?, *padded.get(1)?]) as usize;
    (2 + len <= padded.len()).then_some(2..2 + len)
}

/// How many leading bytes of a padded body `unpad_range` reads, from its first bytes.
fn padded_prefix_len(head: &[u8]) -> usize {
    match head {
        [hi, lo, ..] => 2 + usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => head.len(),
    }
}

/// One received block: the (decrypted) buffer and where its content lies.
#[derive(Debug)]
pub struct Block {
    buf: Box<[u8]>,
    content: std::ops::Range<usize>,
    batched: bool,
}

impl Block {
    /// The unpadded block content.
    pub fn content(&self) -> &[u8] {
        self.buf.get(self.content.clone()).unwrap_or(&[])
    }

    /// The transmissions in this block: `count ‖ count × Large` with nothing left over when
    /// the session batches (SMP, NTF v2+); otherwise the whole content is one transmission
    /// (NTF v1).
    pub fn transmissions(&self) -> Result<Vec<&[u8]>, BlockError> {
        if self.batched {
            decode_batch(self.content()).map_err(BlockError::Batch)
        } else {
            Ok(vec![self.content()])
        }
    }
}

/// The receiving half of a connection.
pub struct BlockReader<R> {
    io: R,
    block_size: usize,
    batched: bool,
    key: Option<SbChainKey>,
    /// A block being received: buffer and bytes filled so far (only while a block is in flight).
    partial: Option<(Box<[u8]>, usize)>,
}

impl<R> std::fmt::Debug for BlockReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockReader")
            .field("block_size", &self.block_size)
            .field("encrypted", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl<R: AsyncRead + Unpin> BlockReader<R> {
    pub(crate) fn new(io: R, block_size: usize) -> Self {
        BlockReader {
            io,
            block_size: block_size.max(TAG_LEN + 2),
            batched: false,
            key: None,
            partial: None,
        }
    }

    pub(crate) fn set_session(&mut self, batched: bool, key: Option<SbChainKey>) {
        self.batched = batched;
        self.key = key;
    }

    /// Whether blocks are decrypted with the secretbox chain.
    pub fn is_encrypted(&self) -> bool {
        self.key.is_some()
    }

    /// Reads exactly one block's bytes (cancel-safe).
    async fn read_raw(&mut self) -> Result<Box<[u8]>, TransportError> {
        loop {
            match &mut self.partial {
                None => {
                    let mut first = [0u8; 1];
                    if self.io.read(&mut first).await? == 0 {
                        return Err(TransportError::Closed);
                    }
                    let mut buf = vec![0u8; self.block_size].into_boxed_slice();
                    if let Some(b) = buf.first_mut() {
                        *b = first[0];
                    }
                    self.partial = Some((buf, 1));
                }
                Some((buf, filled)) => {
                    if *filled >= buf.len() {
                        if let Some((buf, _)) = self.partial.take() {
                            return Ok(buf);
                        }
                        continue;
                    }
                    let Some(dst) = buf.get_mut(*filled..) else {
                        self.partial = None;
                        continue;
                    };
                    let n = self.io.read(dst).await?;
                    if n == 0 {
                        self.partial = None;
                        return Err(TransportError::Closed);
                    }
                    *filled += n;
                }
            }
        }
    }

    /// Receives one block. The outer error ends the connection; the inner one is a bad block
    /// (the chain key has advanced and the next block can be read normally).
    pub async fn recv(&mut self) -> Result<Result<Block, BlockError>, TransportError> {
        let mut buf = self.read_raw().await?;
        let content = match &mut self.key {
            Some(ck) => {
                let (mut key, nonce) = ck.next();
                // Authenticates the whole block but decrypts only `Word16 length ‖ content`:
                // the padding is never read (a length beyond the block decrypts up to its
                // end and then fails `unpad_range` below, as a fully opened block did).
                let opened = buf
                    .get_mut(..)
                    .map(|b| {
                        hush_crypto::secretbox::sb_open_prefix_in_place(
                            &key,
                            &nonce,
                            b,
                            padded_prefix_len,
                        )
                        .is_ok()
                    })
                    .unwrap_or(false);
                key.zeroize();
                if !opened {
                    return Ok(Err(BlockError::Decrypt));
                }
                match buf.get(TAG_LEN..).and_then(unpad_range) {
                    Some(r) => r.start + TAG_LEN..r.end + TAG_LEN,
                    None => return Ok(Err(BlockError::Padding)),
                }
            }
            None => match unpad_range(&buf) {
                Some(r) => r,
                None => return Ok(Err(BlockError::Padding)),
            },
        };
        Ok(Ok(Block {
            buf,
            content,
            batched: self.batched,
        }))
    }

    /// Receives one block and returns its unpadded content, treating a bad block as a
    /// handshake failure (used for hellos).
    pub(crate) async fn recv_content(&mut self) -> Result<Vec<u8>, TransportError> {
        match self.recv().await? {
            Ok(b) => Ok(b.content().to_vec()),
            Err(_) => Err(TransportError::Handshake(
                hush_proto::handshake::HandshakeErrorKind::Parse,
            )),
        }
    }
}

/// The sending half of a connection.
pub struct BlockWriter<W> {
    io: W,
    block_size: usize,
    batched: bool,
    key: Option<SbChainKey>,
}

impl<W> std::fmt::Debug for BlockWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockWriter")
            .field("block_size", &self.block_size)
            .field("encrypted", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl<W: AsyncWrite + Unpin> BlockWriter<W> {
    pub(crate) fn new(io: W, block_size: usize) -> Self {
        BlockWriter {
            io,
            block_size: block_size.max(TAG_LEN + 2),
            batched: false,
            key: None,
        }
    }

    pub(crate) fn set_session(&mut self, batched: bool, key: Option<SbChainKey>) {
        self.batched = batched;
        self.key = key;
    }

    /// Whether blocks are encrypted with the secretbox chain.
    pub fn is_encrypted(&self) -> bool {
        self.key.is_some()
    }

    /// Largest content one block can carry (16382 / 16366 encrypted for SMP, 510 for NTF).
    pub fn max_content(&self) -> usize {
        let body = if self.key.is_some() {
            self.block_size - TAG_LEN
        } else {
            self.block_size
        };
        body - 2
    }

    /// Pads (and encrypts) `content` into one block and writes it. Content over
    /// [`Self::max_content`] gives [`TransportError::LargeMsg`] without touching the chain.
    pub async fn send_block(&mut self, content: &[u8]) -> Result<(), TransportError> {
        self.send_block_tampered(content, |_| ()).await
    }

    /// [`Self::send_block`] with a hook that may alter the finished (encrypted) block before
    /// it is written: for tests of corrupted blocks only.
    #[doc(hidden)]
    pub async fn send_block_tampered(
        &mut self,
        content: &[u8],
        tamper: impl FnOnce(&mut [u8]),
    ) -> Result<(), TransportError> {
        if content.len() > self.max_content() {
            return Err(TransportError::LargeMsg);
        }
        let mut buf = Vec::with_capacity(self.block_size);
        match &mut self.key {
            Some(ck) => {
                let (mut key, nonce) = ck.next();
                let r = hush_crypto::secretbox::sb_encrypt_into(
                    &key,
                    &nonce,
                    content,
                    self.block_size - TAG_LEN,
                    &mut buf,
                );
                key.zeroize();
                r?;
            }
            None => hush_proto::encoding::pad_into(&mut buf, content, self.block_size)
                .map_err(|_| TransportError::LargeMsg)?,
        }
        tamper(&mut buf);
        self.io.write_all(&buf).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Sends already-encoded transmissions, batched into as few blocks as the reference's rule
    /// allows (or one per block on unbatched NTF v1 sessions). Returns the transmissions that
    /// can never fit a block (reference `TELargeMsg`); they are skipped, the rest are sent.
    pub async fn send_transmissions(
        &mut self,
        transmissions: &[Vec<u8>],
    ) -> Result<Vec<TooLarge>, TransportError> {
        let mut too_large = Vec::new();
        if self.batched {
            for r in batch_ranges(transmissions, self.block_size) {
                match r {
                    Ok(r) => self.send_batch(transmissions.get(r).unwrap_or(&[])).await?,
                    Err(e) => too_large.push(e),
                }
            }
        } else {
            for (index, t) in transmissions.iter().enumerate() {
                if t.len() > self.max_content() {
                    too_large.push(TooLarge {
                        index,
                        len: t.len(),
                    });
                } else {
                    self.send_block(t).await?;
                }
            }
        }
        Ok(too_large)
    }

    /// Sends one batched block, `count ‖ count × Large(t)` encoded straight into the block
    /// buffer after the tag's room, padded there and sealed in place: the same bytes as
    /// [`Self::send_block`] of [`hush_proto::transmission::batch_transmissions`]'s content,
    /// without the two block-sized copies (content, then pad). `items` come from
    /// [`batch_ranges`] (1..=255 items that fit); anything else is `LargeMsg`, chain untouched.
    async fn send_batch(&mut self, items: &[Vec<u8>]) -> Result<(), TransportError> {
        let content_len = 1 + items.iter().map(|t| 2 + t.len()).sum::<usize>();
        let count = u8::try_from(items.len()).map_err(|_| TransportError::LargeMsg)?;
        if items.is_empty()
            || content_len > self.max_content()
            || items.iter().any(|t| t.len() > usize::from(u16::MAX))
        {
            return Err(TransportError::LargeMsg);
        }
        let mut buf = Vec::with_capacity(self.block_size);
        if self.key.is_some() {
            buf.resize(TAG_LEN, 0);
        }
        // content_len ≤ max_content < 65536 (checked above)
        buf.extend_from_slice(&(content_len as u16).to_be_bytes());
        buf.push(count);
        for t in items {
            buf.extend_from_slice(&(t.len() as u16).to_be_bytes());
            buf.extend_from_slice(t);
        }
        buf.resize(self.block_size, b'#');
        if let Some(ck) = &mut self.key {
            let (mut key, nonce) = ck.next();
            let r = hush_crypto::secretbox::sb_seal_in_place(&key, &nonce, &mut buf);
            key.zeroize();
            r?;
        }
        self.io.write_all(&buf).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Sends TLS close_notify and shuts the socket's write side.
    pub async fn shutdown(&mut self) -> Result<(), TransportError> {
        self.io.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hush_crypto::{DhSecret, sb_chain_init};
    use proptest::prelude::*;
    use serde_json::Value;

    fn vector(name: &str) -> Value {
        let path = format!(
            "{}/../../../shared/vectors/crypto.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("vector file {path} missing or unreadable: {e}"));
        let all: Vec<Value> = serde_json::from_str(&text).unwrap();
        all.into_iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("vector {name} missing"))
    }

    fn hex_of(v: &Value) -> Vec<u8> {
        hex::decode(v.as_str().unwrap()).unwrap()
    }

    /// ck1 of the `sbchain.init` vector (session id 201..232, DH of keys 1..32 × 33..64).
    fn vector_chain() -> (SbChainKey, SbChainKey) {
        let init = vector("sbchain.init");
        let sid = hex_of(&init["inputs"]["salt_session_id_hex"]);
        let secret: [u8; 32] = hex_of(&init["inputs"]["ikm_dh_secret_hex"])
            .try_into()
            .unwrap();
        sb_chain_init(&sid, &DhSecret::from_bytes(secret))
    }

    /// The first server→client block of the vector session is `sbchain.encrypted_block.PING`
    /// (key and nonce from the first `sbchain.step` of ck1), and the reader decrypts it.
    #[tokio::test]
    async fn encrypted_block_vector() {
        let v = vector("sbchain.encrypted_block.PING");
        let content = hex_of(&v["inputs"]["block_content_hex"]);
        let block = hex_of(&v["expected"]["block_hex"]);
        assert_eq!(block.len(), 16384);

        let (a, mut b) = tokio::io::duplex(1 << 16);
        let (ck1, _) = vector_chain();
        let mut w = BlockWriter::new(a, 16384);
        w.set_session(true, Some(ck1));
        w.send_block(&content).await.unwrap();
        let mut wire = vec![0u8; 16384];
        b.read_exact(&mut wire).await.unwrap();
        assert_eq!(hex::encode(&wire), hex::encode(&block));

        let (mut a, b) = tokio::io::duplex(1 << 16);
        let (ck1, _) = vector_chain();
        let mut r = BlockReader::new(b, 16384);
        r.set_session(true, Some(ck1));
        a.write_all(&block).await.unwrap();
        let got = r.recv().await.unwrap().unwrap();
        assert_eq!(got.content(), &content[..]);
        let ts = got.transmissions().unwrap();
        assert_eq!(ts.len(), 1);
        assert!(ts[0].ends_with(b"PING"));
    }

    /// A bad block advances the chain: the second block (encrypted with step 2) still opens.
    #[tokio::test]
    async fn chain_advances_past_bad_block() {
        let (a, b) = tokio::io::duplex(1 << 17);
        let (ck1, _) = vector_chain();
        let (ck1b, _) = vector_chain();
        let mut w = BlockWriter::new(a, 16384);
        w.set_session(true, Some(ck1));
        let mut r = BlockReader::new(b, 16384);
        r.set_session(true, Some(ck1b));
        w.send_block_tampered(b"\x01\x00\x01x", |b| b[0] ^= 1)
            .await
            .unwrap();
        w.send_block(b"\x01\x00\x01y").await.unwrap();
        assert_eq!(r.recv().await.unwrap().unwrap_err(), BlockError::Decrypt);
        assert_eq!(r.recv().await.unwrap().unwrap().content(), b"\x01\x00\x01y");
        // Too-large content is refused without advancing the writer's chain.
        let big = vec![0u8; 16384 - 16 - 1];
        assert!(matches!(
            w.send_block(&big).await,
            Err(TransportError::LargeMsg)
        ));
        w.send_block(b"\x01\x00\x01z").await.unwrap();
        assert_eq!(r.recv().await.unwrap().unwrap().content(), b"\x01\x00\x01z");
        drop(w);
        assert!(matches!(r.recv().await, Err(TransportError::Closed)));
    }

    /// Blocks opened by prefix: a content length reaching the body's last byte opens, one
    /// byte more (or 0xFFFF) is the same `Padding` error as with a fully opened block, a bad
    /// tag is `Decrypt`, and the chain carries on after each.
    #[tokio::test]
    async fn prefix_open_length_field_edges() {
        let body_len = 16384 - TAG_LEN;
        let (mut a, b) = tokio::io::duplex(1 << 18);
        let (ck1, _) = vector_chain();
        let (mut wck, _) = vector_chain();
        let mut r = BlockReader::new(b, 16384);
        r.set_session(true, Some(ck1));
        let mut block_with = |len: u16, fill: u8, tamper: bool| {
            let mut body = vec![fill; body_len];
            body[..2].copy_from_slice(&len.to_be_bytes());
            let (key, nonce) = wck.next();
            let mut ct = hush_crypto::sb_encrypt_no_pad(&key, &nonce, &body);
            if tamper {
                ct[100] ^= 1;
            }
            ct
        };
        let cases: [(u16, bool, Result<usize, BlockError>); 6] = [
            ((body_len - 2) as u16, false, Ok(body_len - 2)),
            ((body_len - 1) as u16, false, Err(BlockError::Padding)),
            (u16::MAX, false, Err(BlockError::Padding)),
            (5, true, Err(BlockError::Decrypt)),
            (0, false, Ok(0)),
            (40, false, Ok(40)),
        ];
        for (len, tamper, _) in &cases {
            a.write_all(&block_with(*len, 0xab, *tamper)).await.unwrap();
        }
        for (len, _, want) in cases {
            let got = r.recv().await.unwrap();
            match want {
                Ok(n) => {
                    let blk = got.unwrap_or_else(|e| panic!("len {len}: {e:?}"));
                    assert_eq!(blk.content(), &vec![0xab; n][..], "len {len}");
                }
                Err(e) => assert_eq!(got.unwrap_err(), e, "len {len}"),
            }
        }
    }

    /// EOF in the middle of a block is a closed connection, not a short block.
    #[tokio::test]
    async fn eof_inside_block() {
        let (mut a, b) = tokio::io::duplex(1024);
        let mut r = BlockReader::new(b, 512);
        a.write_all(&[0u8; 100]).await.unwrap();
        drop(a);
        assert!(matches!(r.recv().await, Err(TransportError::Closed)));
    }

    /// The bytes a writer puts on the wire for `ts`: through `send_transmissions` (batches
    /// encoded and sealed in the block buffer) or, `old = true`, the previous way
    /// (`batch_transmissions` contents, each through `send_block`).
    async fn wire_of(
        ts: &[Vec<u8>],
        block_size: usize,
        key: Option<[u8; 32]>,
        old: bool,
    ) -> (Vec<u8>, Vec<TooLarge>) {
        let (a, mut b) = tokio::io::duplex(1 << 24);
        let mut w = BlockWriter::new(a, block_size);
        w.set_session(true, key.map(SbChainKey::from_bytes));
        let too_large = if old {
            let mut tl = Vec::new();
            for r in hush_proto::transmission::batch_transmissions(ts, block_size) {
                match r {
                    Ok(batch) => w.send_block(&batch.content).await.unwrap(),
                    Err(e) => tl.push(e),
                }
            }
            tl
        } else {
            w.send_transmissions(ts).await.unwrap()
        };
        drop(w);
        let mut wire = Vec::new();
        b.read_to_end(&mut wire).await.unwrap();
        (wire, too_large)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Batches built in the block buffer and sealed in place are byte for byte the blocks
        /// of the two-copy path (pad + seal of `batch_transmissions`' content), encrypted or
        /// not, with items too large skipped the same way; and the reader gets them back.
        #[test]
        fn in_place_batches_equal_the_copying_path(
            ts in prop_oneof![
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..12),
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3), 250..300),
            ],
            key in proptest::option::of(any::<[u8; 32]>()),
            block_size in prop_oneof![Just(512usize), Just(16384usize)],
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (new, new_tl) = rt.block_on(wire_of(&ts, block_size, key, false));
            let (old, old_tl) = rt.block_on(wire_of(&ts, block_size, key, true));
            prop_assert_eq!(&new_tl, &old_tl);
            prop_assert_eq!(new.len() % block_size, 0);
            prop_assert!(new == old, "wire bytes differ");
            let sent: Vec<Vec<u8>> = ts
                .iter()
                .enumerate()
                .filter(|(i, _)| !new_tl.iter().any(|t| t.index == *i))
                .map(|(_, t)| t.clone())
                .collect();
            let got = rt.block_on(async {
                let (mut a, b) = tokio::io::duplex(1 << 24);
                let mut r = BlockReader::new(b, block_size);
                r.set_session(true, key.map(SbChainKey::from_bytes));
                a.write_all(&new).await.unwrap();
                drop(a);
                let mut got = Vec::new();
                while let Ok(blk) = r.recv().await {
                    let blk = blk.unwrap();
                    got.extend(blk.transmissions().unwrap().into_iter().map(<[u8]>::to_vec));
                }
                got
            });
            prop_assert_eq!(got, sent);
        }

        /// Arbitrary bytes, encrypted or not, never panic the reader.
        #[test]
        fn reader_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            key in proptest::option::of(any::<[u8; 32]>()),
            batched in any::<bool>(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async move {
                let (mut a, b) = tokio::io::duplex(1024);
                let mut r = BlockReader::new(b, 64);
                r.set_session(batched, key.map(SbChainKey::from_bytes));
                a.write_all(&bytes).await.unwrap();
                drop(a);
                let mut blocks = 0;
                loop {
                    match r.recv().await {
                        Ok(Ok(b)) => { let _ = b.transmissions(); blocks += 1; }
                        Ok(Err(_)) => blocks += 1,
                        Err(_) => break,
                    }
                }
                assert_eq!(blocks, bytes.len() / 64);
            });
        }
    }
}
