//! Fuzz target body for an SMP block: padding, batching, and block decryption with the
//! secretbox chain (reference §2.6). Uses `hush-proto` (unpad, batch, transmission) and
//! `hush-crypto` (sbchain, SimpleX secretbox), the same calls `hush-transport::block` makes.
//!
//! Shared by `fuzz/fuzz_targets/block.rs` and `crates/hush-transport/tests/fuzz_corpus.rs`
//! (included with `#[path]`).
//!
//! The whole input is a block as received. It is processed twice:
//! 1. as an unencrypted padded block (SMP below v11): unpad, batch decode, each transmission
//!    decoded at v18 and its command parsed;
//! 2. as an encrypted v11+ block: decryption with the first key of [`FUZZ_CHAIN_KEY`]'s
//!    chain; if the tag verifies (only for seeds made with that key), step 1 runs on the
//!    plaintext.
//!
//! When a block decodes, its content is re-batched (must give the same bytes, or fail exactly
//! when it is over the block budget), re-padded, encrypted with the chain key and decrypted
//! again (must give the same content).

use hush_crypto::SbChainKey;
use hush_crypto::secretbox::{TAG_LEN, sb_encrypt_into, sb_open_in_place};
use hush_proto::encoding::unpad;
use hush_proto::smp::{BrokerMsg, Command};
use hush_proto::transmission::{
    BATCH_OVERHEAD, Layout, batch_one, decode_batch, decode_transmission_with,
    encode_transmission_with,
};
use hush_proto::version::{SMP_BLOCK_SIZE, smp_version};

/// The client → server chain key of the `sbchain.init` / `sbchain.step` vectors; its first
/// block key and nonce are those of the `sbchain.encrypted_block.PING` vector.
pub const FUZZ_CHAIN_KEY: [u8; 32] = [
    0x34, 0x8d, 0x69, 0x2f, 0xd2, 0x49, 0x32, 0x9f, 0x7d, 0x8e, 0xd0, 0x33, 0xe5, 0x61, 0x40, 0xa0,
    0xf0, 0x66, 0x64, 0x7b, 0xf0, 0xf7, 0xb6, 0xae, 0x7a, 0xeb, 0x6b, 0xec, 0x78, 0x34, 0x7c, 0x6a,
];

/// First (secretbox key, nonce) of the fuzz chain.
pub fn fuzz_block_key() -> ([u8; 32], [u8; 24]) {
    SbChainKey::from_bytes(FUZZ_CHAIN_KEY).next()
}

/// Checks one unpadded block content; returns whether it was a valid batch.
fn check_content(content: &[u8], key: &([u8; 32], [u8; 24])) -> bool {
    let Ok(items) = decode_batch(content) else {
        return false;
    };
    assert!(!items.is_empty() && items.len() <= 255);
    let layout = Layout::smp(smp_version::CURRENT);
    for item in &items {
        if let Ok(t) = decode_transmission_with(item, layout) {
            let mut out = Vec::new();
            encode_transmission_with(&mut out, &t, layout).expect("transmission re-encodes");
            assert_eq!(&out, item, "transmission in block is canonical");
            let _ = Command::decode(t.command, smp_version::CURRENT);
            let _ = BrokerMsg::decode(t.command, smp_version::CURRENT);
        }
    }
    // Re-batch: identical bytes when within the budget of one block, an error otherwise.
    let budget = SMP_BLOCK_SIZE - BATCH_OVERHEAD;
    match batch_one(&items, SMP_BLOCK_SIZE) {
        Ok(c) => {
            assert_eq!(c, content, "re-batched content differs");
            // Pad, encrypt with the chain key, decrypt, unpad: same content.
            let mut block = Vec::with_capacity(SMP_BLOCK_SIZE);
            sb_encrypt_into(&key.0, &key.1, &c, SMP_BLOCK_SIZE - TAG_LEN, &mut block)
                .expect("a batch within budget pads into a block");
            assert_eq!(block.len(), SMP_BLOCK_SIZE);
            let plain = sb_open_in_place(&key.0, &key.1, &mut block).expect("own block opens");
            assert_eq!(unpad(plain).expect("own padding"), content);
        }
        Err(_) => assert!(
            content.len() - 1 > budget,
            "batch of {} bytes within budget {budget} was refused",
            content.len()
        ),
    }
    true
}

/// `block` target body; returns whether the input (plain or decrypted) was a valid batch.
pub fn block(data: &[u8]) -> bool {
    let key = fuzz_block_key();
    let mut decoded = false;
    if let Ok(content) = unpad(data) {
        decoded |= check_content(content, &key);
    }
    let mut buf = data.to_vec();
    if let Ok(plain) = sb_open_in_place(&key.0, &key.1, &mut buf)
        && let Ok(content) = unpad(plain)
    {
        decoded |= check_content(content, &key);
    }
    decoded
}
