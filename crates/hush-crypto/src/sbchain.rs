//! The v11+ transport block-encryption chain (reference §2.6).
//!
//! `(ck1, ck2) = split(HKDF-SHA512(salt = sessionId, ikm = dh, "SimpleXSbChainInit", 64))`;
//! per block `HKDF-SHA512(salt = "", ikm = ck, "SimpleXSbChain", 88)` → next ck ‖ key ‖ nonce.

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::hash::hkdf_sha512;
use crate::x25519::DhSecret;

const INIT_INFO: &[u8] = b"SimpleXSbChainInit";
const STEP_INFO: &[u8] = b"SimpleXSbChain";

/// One direction's chain key; zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SbChainKey([u8; 32]);

impl std::fmt::Debug for SbChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SbChainKey(..)")
    }
}

/// Derives the two chain keys: `ck1` = server → client, `ck2` = client → server.
/// The server sends with ck1 and receives with ck2; the client the other way round.
pub fn sb_chain_init(session_id: &[u8], secret: &DhSecret) -> (SbChainKey, SbChainKey) {
    let mut okm = Zeroizing::new([0u8; 64]);
    // 64 bytes is far below HKDF-SHA512's 16320-byte limit, so expand cannot fail.
    let _ = hkdf_sha512(session_id, secret.as_bytes(), INIT_INFO, okm.as_mut());
    let mut ck1 = [0u8; 32];
    let mut ck2 = [0u8; 32];
    ck1.copy_from_slice(&okm[..32]);
    ck2.copy_from_slice(&okm[32..]);
    (SbChainKey(ck1), SbChainKey(ck2))
}

impl SbChainKey {
    /// A chain key from raw bytes (tests, or a resumed state).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SbChainKey(bytes)
    }

    /// The current chain key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Advances the chain one block and returns that block's (secretbox key, nonce).
    #[allow(clippy::should_implement_trait)] // name fixed by the API contract
    pub fn next(&mut self) -> ([u8; 32], [u8; 24]) {
        let mut okm = Zeroizing::new([0u8; 88]);
        // 88 bytes ≤ HKDF-SHA512 limit: cannot fail.
        let _ = hkdf_sha512(b"", &self.0, STEP_INFO, okm.as_mut());
        self.0.copy_from_slice(&okm[..32]);
        let mut key = [0u8; 32];
        let mut nonce = [0u8; 24];
        key.copy_from_slice(&okm[32..64]);
        nonce.copy_from_slice(&okm[64..88]);
        (key, nonce)
    }
}
