//! Hashes and HKDF used by the protocols (reference §4.3).

use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use sha3::{Sha3_256, Sha3_384};
use zeroize::{Zeroize, Zeroizing};

/// SHA-256.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// SHA-512 (OpenSSL's assembly: ≈ 30 % faster than `sha2` on long inputs here). Through
/// `SHA512_Init/Update/Final`: OpenSSL 3's one-shot `SHA512()` fetches the algorithm from the
/// provider on every call, which doubles the cost of a short input.
pub fn sha512(data: &[u8]) -> [u8; 64] {
    sha512_parts(&[data])
}

/// SHA-512 of the concatenation of `parts`, without concatenating them.
pub fn sha512_parts(parts: &[&[u8]]) -> [u8; 64] {
    let mut h = openssl::sha::Sha512::new();
    for p in parts {
        h.update(p);
    }
    h.finish()
}

/// SHA3-256 (short-link key: `linkKey = SHA3-256(fixed link data)`, §3.9).
pub fn sha3_256(data: &[u8]) -> [u8; 32] {
    Sha3_256::digest(data).into()
}

/// SHA3-384.
pub fn sha3_384(data: &[u8]) -> [u8; 48] {
    Sha3_384::digest(data).into()
}

/// HMAC-SHA512 keyed once: the SHA-512 states after the ipad and opad blocks, cloned per
/// message (so each MAC of a short message costs 2 compressions, not 4).
#[derive(Clone)]
struct HmacSha512 {
    inner: openssl::sha::Sha512,
    outer: openssl::sha::Sha512,
}

impl HmacSha512 {
    fn new(key: &[u8]) -> Self {
        let mut block = Zeroizing::new([0u8; 128]);
        if key.len() > block.len() {
            let mut h = Zeroizing::new(sha512(key));
            if let Some(dst) = block.get_mut(..64) {
                dst.copy_from_slice(h.as_ref());
            }
            h.zeroize();
        } else if let Some(dst) = block.get_mut(..key.len()) {
            dst.copy_from_slice(key);
        }
        let mut pad = Zeroizing::new([0u8; 128]);
        let mut inner = openssl::sha::Sha512::new();
        for (p, k) in pad.iter_mut().zip(block.iter()) {
            *p = k ^ 0x36;
        }
        inner.update(pad.as_ref());
        let mut outer = openssl::sha::Sha512::new();
        for (p, k) in pad.iter_mut().zip(block.iter()) {
            *p = k ^ 0x5c;
        }
        outer.update(pad.as_ref());
        HmacSha512 { inner, outer }
    }

    /// HMAC of the concatenation of `parts`.
    fn mac(&self, parts: &[&[u8]]) -> Zeroizing<[u8; 64]> {
        let mut inner = self.inner.clone();
        for p in parts {
            inner.update(p);
        }
        let ih = Zeroizing::new(inner.finish());
        let mut outer = self.outer.clone();
        outer.update(ih.as_ref());
        Zeroizing::new(outer.finish())
    }
}

/// HKDF-SHA512 (the only HKDF the protocols use; RFC 5869 over OpenSSL's SHA-512, ≈ 2× the
/// `sha2`/`hkdf` crates here, byte-identical: see the tests). `out.len()` must be ≤ 255 × 64;
/// longer outputs are never requested by the protocols and yield `InvalidKey` (nothing is
/// written then).
pub fn hkdf_sha512(
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
    out: &mut [u8],
) -> Result<(), crate::CryptoError> {
    if out.len() > 255 * 64 {
        return Err(crate::CryptoError::InvalidKey);
    }
    // An empty salt is HMAC's all-zero key, as RFC 5869 prescribes for an absent salt; its
    // ipad/opad states (no secret) are computed once per process: the chain step's case.
    static EMPTY_SALT: OnceLock<HmacSha512> = OnceLock::new();
    let prk = if salt.is_empty() {
        EMPTY_SALT.get_or_init(|| HmacSha512::new(b"")).mac(&[ikm])
    } else {
        HmacSha512::new(salt).mac(&[ikm])
    };
    let expand = HmacSha512::new(prk.as_ref());
    let mut prev: Option<Zeroizing<[u8; 64]>> = None;
    for (i, chunk) in out.chunks_mut(64).enumerate() {
        // i < 255 by the length check above
        let counter = [(i + 1) as u8];
        let t = match &prev {
            Some(p) => expand.mac(&[p.as_ref(), info, &counter]),
            None => expand.mac(&[info, &counter]),
        };
        if let Some(src) = t.get(..chunk.len()) {
            chunk.copy_from_slice(src);
        }
        prev = Some(t);
    }
    Ok(())
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
    use sha2::Sha512;

    /// The previous implementation (the `hkdf` crate over `sha2`).
    fn hkdf_sha512_rust(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> bool {
        hkdf::Hkdf::<Sha512>::new(Some(salt), ikm)
            .expand(info, out)
            .is_ok()
    }

    #[test]
    fn hkdf_rejects_outputs_over_255_blocks() {
        let mut ok = vec![0u8; 255 * 64];
        hkdf_sha512(b"s", b"k", b"i", &mut ok).expect("255 blocks");
        let mut want = vec![0u8; 255 * 64];
        assert!(hkdf_sha512_rust(b"s", b"k", b"i", &mut want));
        assert_eq!(ok, want);
        let mut long = vec![0u8; 255 * 64 + 1];
        assert!(matches!(
            hkdf_sha512(b"s", b"k", b"i", &mut long),
            Err(crate::CryptoError::InvalidKey)
        ));
        assert!(long.iter().all(|&b| b == 0), "nothing written on error");
    }

    /// The chain step's shape (empty salt, 32-byte ikm, 88 bytes out: two expand blocks).
    #[test]
    fn hkdf_sbchain_step_shape_equals_hkdf_crate() {
        let ck = [0x42u8; 32];
        let mut got = [0u8; 88];
        let mut want = [0u8; 88];
        hkdf_sha512(b"", &ck, b"SimpleXSbChain", &mut got).expect("88 B");
        assert!(hkdf_sha512_rust(b"", &ck, b"SimpleXSbChain", &mut want));
        assert_eq!(got, want);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// OpenSSL's SHA-512, one shot and fed in parts, equals the `sha2` crate's.
        #[test]
        fn openssl_sha512_equals_sha2(
            data in proptest::collection::vec(any::<u8>(), 0..20000),
            split in any::<prop::sample::Index>(),
        ) {
            let want: [u8; 64] = Sha512::digest(&data).into();
            prop_assert_eq!(sha512(&data), want);
            let k = split.index(data.len() + 1);
            prop_assert_eq!(sha512_parts(&[&data[..k], &data[k..]]), want);
            prop_assert_eq!(sha512_parts(&[&data[..k / 2], &[], &data[k / 2..k], &data[k..]]), want);
        }

        /// OpenSSL HKDF-SHA512 equals the `hkdf` crate's for any salt (incl. empty and longer
        /// than a block, which HMAC hashes first), ikm, info and output length.
        #[test]
        fn openssl_hkdf_equals_hkdf_crate(
            salt in proptest::collection::vec(any::<u8>(), 0..300),
            ikm in proptest::collection::vec(any::<u8>(), 0..300),
            info in proptest::collection::vec(any::<u8>(), 0..200),
            len in 0usize..700,
        ) {
            let mut got = vec![0u8; len];
            let mut want = vec![0u8; len];
            hkdf_sha512(&salt, &ikm, &info, &mut got).expect("short output");
            prop_assert!(hkdf_sha512_rust(&salt, &ikm, &info, &mut want));
            prop_assert_eq!(got, want);
        }
    }
}
