//! Poly1305 for the secretbox (reference §4.2): OpenSSL's assembly (`EVP_MAC` "POLY1305",
//! AVX2 / AVX-512 chosen by OpenSSL at run time) for long inputs, where it is about twice as
//! fast here as the `poly1305` crate's AVX2 backend; the `poly1305` crate for short inputs
//! (no context allocation) and whenever OpenSSL does not provide it.

use poly1305::Poly1305;
use poly1305::universal_hash::KeyInit;

/// From this length on, OpenSSL's context set-up (≈ 0.3 µs) is worth it.
#[cfg(hush_ossl3)]
const OPENSSL_MIN_LEN: usize = 1024;

/// The Poly1305 tag of `data` under the one-time key `key`.
pub(crate) fn tag(key: &[u8; 32], data: &[u8]) -> [u8; 16] {
    #[cfg(hush_ossl3)]
    if data.len() >= OPENSSL_MIN_LEN
        && let Some(t) = ossl::tag(key, data)
    {
        return t;
    }
    rust_tag(key, data)
}

/// The `poly1305` crate's tag.
pub(crate) fn rust_tag(key: &[u8; 32], data: &[u8]) -> [u8; 16] {
    Poly1305::new(key.into()).compute_unpadded(data).into()
}

#[cfg(hush_ossl3)]
#[allow(unsafe_code)] // OpenSSL's EVP_MAC through openssl-sys; each unsafe block states why
pub(crate) mod ossl {
    use openssl_sys as ffi;
    use std::sync::OnceLock;

    /// The fetched algorithm, kept for the life of the process (`EVP_MAC` is reference
    /// counted and may be shared between threads once fetched).
    struct Mac(*mut ffi::EVP_MAC);
    // SAFETY: a fetched EVP_MAC is immutable and thread-safe to use from any thread.
    unsafe impl Send for Mac {}
    // SAFETY: see above.
    unsafe impl Sync for Mac {}

    fn mac() -> Option<&'static Mac> {
        static MAC: OnceLock<Option<Mac>> = OnceLock::new();
        MAC.get_or_init(|| {
            openssl_sys::init();
            // SAFETY: NUL-terminated name, default library context and properties.
            let m = unsafe {
                ffi::EVP_MAC_fetch(std::ptr::null_mut(), c"POLY1305".as_ptr(), std::ptr::null())
            };
            (!m.is_null()).then_some(Mac(m))
        })
        .as_ref()
    }

    /// OpenSSL's Poly1305 tag, `None` if OpenSSL lacks it or fails (callers fall back).
    pub(crate) fn tag(key: &[u8; 32], data: &[u8]) -> Option<[u8; 16]> {
        let mac = mac()?;
        // SAFETY: `ctx` is checked non-null and freed on every path (EVP_MAC_CTX_free
        // clears the key state); key, data and output pointers are valid for the lengths
        // given.
        unsafe {
            let ctx = ffi::EVP_MAC_CTX_new(mac.0);
            if ctx.is_null() {
                return None;
            }
            let mut out = [0u8; 16];
            let mut outl: usize = 0;
            let ok = ffi::EVP_MAC_init(ctx, key.as_ptr(), key.len(), std::ptr::null()) == 1
                && ffi::EVP_MAC_update(ctx, data.as_ptr(), data.len()) == 1
                && ffi::EVP_MAC_final(ctx, out.as_mut_ptr(), &mut outl, out.len()) == 1
                && outl == 16;
            ffi::EVP_MAC_CTX_free(ctx);
            ok.then_some(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 8439 §2.5.2 test vector.
    #[test]
    fn rfc8439_vector_on_both_implementations() {
        let key: [u8; 32] = [
            0x85, 0xd6, 0xbe, 0x78, 0x57, 0x55, 0x6d, 0x33, 0x7f, 0x44, 0x52, 0xfe, 0x42, 0xd5,
            0x06, 0xa8, 0x01, 0x03, 0x80, 0x8a, 0xfb, 0x0d, 0xb2, 0xfd, 0x4a, 0xbf, 0xf6, 0xaf,
            0x41, 0x49, 0xf5, 0x1b,
        ];
        let msg = b"Cryptographic Forum Research Group";
        let want = [
            0xa8, 0x06, 0x1d, 0xc1, 0x30, 0x51, 0x36, 0xc6, 0xc2, 0x2b, 0x8b, 0xaf, 0x0c, 0x01,
            0x27, 0xa9,
        ];
        assert_eq!(rust_tag(&key, msg), want);
        #[cfg(hush_ossl3)]
        assert_eq!(ossl::tag(&key, msg), Some(want));
    }

    #[cfg(hush_ossl3)]
    #[test]
    fn openssl_is_used_for_long_inputs_here() {
        // this machine's OpenSSL 3 has POLY1305: the long path must not silently fall back
        assert!(ossl::tag(&[1; 32], &[0; OPENSSL_MIN_LEN]).is_some());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn openssl_equals_the_poly1305_crate(
            key in any::<[u8; 32]>(),
            data in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..20000),
                proptest::collection::vec(any::<u8>(), 0..100),
            ],
        ) {
            let want = rust_tag(&key, &data);
            prop_assert_eq!(tag(&key, &data), want);
            #[cfg(hush_ossl3)]
            prop_assert_eq!(ossl::tag(&key, &data), Some(want));
        }
    }
}
