//! Hashes and HKDF used by the protocols (reference §4.3).

use hkdf::Hkdf;
use sha2::digest::consts::U64;
use sha2::digest::{FixedOutput, HashMarker, Output, OutputSizeUser, Update};
use sha2::{Digest, Sha256, Sha512};
use sha3::{Sha3_256, Sha3_384};

/// SHA-256.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// SHA-512 (OpenSSL's assembly: ≈ 30 % faster than `sha2` on long inputs here). Through
/// `SHA512_Init/Update/Final`: OpenSSL 3's one-shot `SHA512()` fetches the algorithm from the
/// provider on every call, which doubles the cost of a short input.
pub fn sha512(data: &[u8]) -> [u8; 64] {
    let mut h = openssl::sha::Sha512::new();
    h.update(data);
    h.finish()
}

/// SHA-512 by OpenSSL behind the RustCrypto `Digest` traits, for the hash inside Ed25519
/// signing and verification (ed25519-dalek's `hazmat` functions take the digest as a type).
#[derive(Clone)]
pub(crate) struct OpensslSha512(openssl::sha::Sha512);

impl Default for OpensslSha512 {
    fn default() -> Self {
        OpensslSha512(openssl::sha::Sha512::new())
    }
}

impl HashMarker for OpensslSha512 {}

impl OutputSizeUser for OpensslSha512 {
    type OutputSize = U64;
}

impl Update for OpensslSha512 {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
}

impl FixedOutput for OpensslSha512 {
    fn finalize_into(self, out: &mut Output<Self>) {
        out.copy_from_slice(&self.0.finish());
    }
}

/// SHA3-256 (short-link key: `linkKey = SHA3-256(fixed link data)`, §3.9).
pub fn sha3_256(data: &[u8]) -> [u8; 32] {
    Sha3_256::digest(data).into()
}

/// SHA3-384.
pub fn sha3_384(data: &[u8]) -> [u8; 48] {
    Sha3_384::digest(data).into()
}

/// HKDF-SHA512 (the only HKDF the protocols use). `out.len()` must be ≤ 255 × 64; longer
/// outputs are never requested by the protocols and yield `InvalidKey`.
pub fn hkdf_sha512(
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
    out: &mut [u8],
) -> Result<(), crate::CryptoError> {
    Hkdf::<Sha512>::new(Some(salt), ikm)
        .expand(info, out)
        .map_err(|_| crate::CryptoError::InvalidKey)
}

/// The sender id a client may supply in `NEW` (short links): the first 24 bytes of
/// SHA3-384(corrId) (§3.5).
pub fn sender_id_from_corr_id(corr_id: &[u8]) -> [u8; 24] {
    let h = sha3_384(corr_id);
    let mut out = [0u8; 24];
    out.copy_from_slice(&h[..24]);
    out
}

/// Short-link key: SHA3-256 of the fixed link data (§3.9).
pub fn link_key(fixed_data: &[u8]) -> [u8; 32] {
    sha3_256(fixed_data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// OpenSSL's SHA-512, one shot and fed in pieces through the `Digest` traits, equals
        /// the `sha2` crate's.
        #[test]
        fn openssl_sha512_equals_sha2(
            data in proptest::collection::vec(any::<u8>(), 0..20000),
            split in any::<prop::sample::Index>(),
        ) {
            let want: [u8; 64] = Sha512::digest(&data).into();
            prop_assert_eq!(sha512(&data), want);
            let k = split.index(data.len() + 1);
            let mut d = <OpensslSha512 as Default>::default();
            Digest::update(&mut d, &data[..k]);
            Digest::update(&mut d, &data[k..]);
            let got: [u8; 64] = d.finalize().into();
            prop_assert_eq!(got, want);
        }
    }
}
