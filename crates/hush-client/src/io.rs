//! The two halves a [`crate::SmpClient`] runs over: something that yields received block
//! contents and something that sends block contents. Implemented for hush-transport's TLS
//! connection halves and for an in-memory pair ([`memory_pair`]) used by tests and tools
//! that play the relay themselves.

use std::future::Future;

use hush_proto::transmission::{batch_one, decode_batch};
use hush_transport::{BlockError, ConnReader, ConnWriter, TransportError};
use tokio::sync::mpsc;

/// Receives blocks (already decrypted and unpadded).
pub trait BlockSource: Send + 'static {
    /// One block's content.
    type Block: AsRef<[u8]> + Send;
    /// The next block. The outer error ends the connection; the inner one is one bad block
    /// (the connection continues). Must be cancel-safe.
    fn recv(
        &mut self,
    ) -> impl Future<Output = Result<Result<Self::Block, BlockError>, TransportError>> + Send;
}

/// Sends blocks.
pub trait BlockSink: Send + 'static {
    /// Pads (and encrypts) `content` into one block and writes it.
    fn send_block(
        &mut self,
        content: &[u8],
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Closes the sending direction (TLS close_notify).
    fn shutdown(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;
}

/// A received TLS block (owns the 16 KB buffer only while it is being processed).
#[derive(Debug)]
pub struct TlsBlock(hush_transport::Block);

impl AsRef<[u8]> for TlsBlock {
    fn as_ref(&self) -> &[u8] {
        self.0.content()
    }
}

impl BlockSource for ConnReader {
    type Block = TlsBlock;
    async fn recv(&mut self) -> Result<Result<TlsBlock, BlockError>, TransportError> {
        Ok(ConnReader::recv(self).await?.map(TlsBlock))
    }
}

impl BlockSink for ConnWriter {
    async fn send_block(&mut self, content: &[u8]) -> Result<(), TransportError> {
        ConnWriter::send_block(self, content).await
    }
    async fn shutdown(&mut self) -> Result<(), TransportError> {
        ConnWriter::shutdown(self).await
    }
}

/// Client side of an in-memory connection: receives block contents.
#[derive(Debug)]
pub struct MemorySource {
    rx: mpsc::Receiver<Vec<u8>>,
}

/// Client side of an in-memory connection: sends block contents.
#[derive(Debug)]
pub struct MemorySink {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    block_size: usize,
}

/// The far end of an in-memory connection: a test (or tool) plays the relay with it.
#[derive(Debug)]
pub struct MemoryRelay {
    from_client: mpsc::Receiver<Vec<u8>>,
    to_client: Option<mpsc::Sender<Vec<u8>>>,
    block_size: usize,
}

/// An in-memory connection carrying block contents (no TLS, no padding). `block_size` is the
/// size the client batches for (16384 for SMP); blocks larger than it are refused like a
/// real block writer would.
pub fn memory_pair(block_size: usize) -> (MemorySource, MemorySink, MemoryRelay) {
    let (ctx, crx) = mpsc::channel(64);
    let (stx, srx) = mpsc::channel(64);
    (
        MemorySource { rx: srx },
        MemorySink {
            tx: Some(ctx),
            block_size,
        },
        MemoryRelay {
            from_client: crx,
            to_client: Some(stx),
            block_size,
        },
    )
}

impl BlockSource for MemorySource {
    type Block = Vec<u8>;
    async fn recv(&mut self) -> Result<Result<Vec<u8>, BlockError>, TransportError> {
        self.rx.recv().await.map(Ok).ok_or(TransportError::Closed)
    }
}

impl BlockSink for MemorySink {
    async fn send_block(&mut self, content: &[u8]) -> Result<(), TransportError> {
        // 2 bytes of padding length and the 16-byte tag of an encrypted block.
        if content.len() + 18 > self.block_size {
            return Err(TransportError::LargeMsg);
        }
        let tx = self.tx.as_ref().ok_or(TransportError::Closed)?;
        tx.send(content.to_vec())
            .await
            .map_err(|_| TransportError::Closed)
    }
    async fn shutdown(&mut self) -> Result<(), TransportError> {
        self.tx = None;
        Ok(())
    }
}

impl MemoryRelay {
    /// The next block the client sent (its content), `None` once the client closed.
    pub async fn recv_block(&mut self) -> Option<Vec<u8>> {
        self.from_client.recv().await
    }

    /// The transmissions of the next block (`count ‖ count × Large`); `None` once the client
    /// closed or if the block is not a valid batch.
    pub async fn recv_transmissions(&mut self) -> Option<Vec<Vec<u8>>> {
        let b = self.from_client.recv().await?;
        decode_batch(&b)
            .ok()
            .map(|ts| ts.into_iter().map(<[u8]>::to_vec).collect())
    }

    /// Sends one block holding exactly these transmissions. Fails if they do not fit one
    /// block or the client is gone.
    pub async fn send_transmissions(&mut self, ts: &[Vec<u8>]) -> Result<(), TransportError> {
        let items: Vec<&[u8]> = ts.iter().map(Vec::as_slice).collect();
        let content = batch_one(&items, self.block_size).map_err(|_| TransportError::LargeMsg)?;
        self.send_block(content).await
    }

    /// Sends raw block content (for malformed-block tests).
    pub async fn send_block(&mut self, content: Vec<u8>) -> Result<(), TransportError> {
        let tx = self.to_client.as_ref().ok_or(TransportError::Closed)?;
        tx.send(content).await.map_err(|_| TransportError::Closed)
    }

    /// Closes the relay → client direction (the client sees the connection closed).
    pub fn close(&mut self) {
        self.to_client = None;
    }
}
