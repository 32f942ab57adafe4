//! The Salsa20/20 keystream behind every secretbox and crypto_box (reference §4.1, §4.2), with
//! SIMD backends chosen at run time: AVX-512 (16 blocks at once; its rotations are one
//! instruction), AVX2 (8 blocks at once), SSE2 (4 blocks at once, always present on x86_64) and
//! the scalar `salsa20` crate elsewhere or for short inputs.
//!
//! The SIMD backends compute the same function as the `salsa20` crate: the state is laid out
//! one word per vector (word `i` of blocks `c … c+7` in one AVX2 register), the 20 rounds are
//! plain adds, xors and shift-rotates, and a transpose turns the words back into consecutive
//! 64-byte blocks. Equality with the `salsa20` crate and with `xsalsa20poly1305` is tested
//! below for every backend, whatever the machine would pick by itself.

use salsa20::Salsa20;
use salsa20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

/// Which implementation produces the keystream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    /// The `salsa20` crate, one block at a time.
    Scalar,
    /// 4 blocks per step in SSE2 registers.
    #[cfg(target_arch = "x86_64")]
    Sse2,
    /// 8 blocks per step in AVX2 registers.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// 16 blocks per step in AVX-512 registers (AVX-512F).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// Below this many bytes the SIMD setup and the wasted lanes cost more than they save.
const SIMD_MIN_LEN: usize = 192;

impl Backend {
    /// The fastest backend this CPU runs for `len` bytes of keystream.
    pub(crate) fn for_len(len: usize) -> Backend {
        if len < SIMD_MIN_LEN {
            return Backend::Scalar;
        }
        Backend::best()
    }

    /// The fastest backend this CPU runs (`is_x86_feature_detected!` caches its answer).
    pub(crate) fn best() -> Backend {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                Backend::Avx512
            } else if std::arch::is_x86_feature_detected!("avx2") {
                Backend::Avx2
            } else {
                Backend::Sse2
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Backend::Scalar
    }

    /// Whether this CPU can run the backend.
    #[cfg(test)]
    pub(crate) fn available(self) -> bool {
        match self {
            Backend::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Backend::Sse2 => true,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
        }
    }
}

/// XORs the Salsa20/20 keystream of (`key`, `nonce`), starting at 64-byte block `counter`,
/// into `data`. The block counter wraps at 2⁶⁴ (callers start at 0 or 1 with far less data).
///
/// # Panics
/// If `backend` is not available on this CPU (only tests ask for a particular one).
#[allow(unsafe_code)] // calls the target-feature functions after checking the CPU (SAFETY below)
pub(crate) fn xor_keystream(
    backend: Backend,
    key: &[u8; 32],
    nonce: &[u8; 8],
    counter: u64,
    data: &mut [u8],
) {
    match backend {
        Backend::Scalar => {
            let mut c = Salsa20::new(key.into(), nonce.into());
            c.seek(u128::from(counter) * 64);
            c.apply_keystream(data);
        }
        #[cfg(target_arch = "x86_64")]
        Backend::Sse2 => {
            let s = state(key, nonce);
            // SAFETY: SSE2 is part of the x86_64 baseline.
            unsafe { x86::xor_sse2(&s, counter, data) }
        }
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 => {
            assert!(std::arch::is_x86_feature_detected!("avx2"));
            let s = state(key, nonce);
            // SAFETY: AVX2 support was checked just above.
            unsafe { x86::xor_avx2(&s, counter, data) }
        }
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => {
            assert!(std::arch::is_x86_feature_detected!("avx512f"));
            let s = state(key, nonce);
            // SAFETY: AVX-512F support was checked just above (AVX-512F implies AVX2).
            unsafe { x86::xor_avx512(&s, counter, data) }
        }
    }
}

/// The initial Salsa20 state without the counter words (8, 9).
#[cfg(target_arch = "x86_64")]
fn state(key: &[u8; 32], nonce: &[u8; 8]) -> [u32; 16] {
    let w = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let k = |i: usize| w(&key[4 * i..]);
    [
        0x6170_7865,
        k(0),
        k(1),
        k(2),
        k(3),
        0x3320_646e,
        w(&nonce[0..]),
        w(&nonce[4..]),
        0,
        0,
        0x7962_2d32,
        k(4),
        k(5),
        k(6),
        k(7),
        0x6b20_6574,
    ]
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)] // SIMD intrinsics; each unsafe block states why it is sound
mod x86 {
    use core::arch::x86_64::*;
    use zeroize::Zeroize;

    /// The 20 rounds (10 double rounds) over 16 vectors of state words, then the feed-forward
    /// addition of the input. `$add`, `$xor`, `$or`, `$shl`, `$shr` are the lane-wise u32
    /// operations of the vector type.
    macro_rules! salsa20_core {
        ($x:ident, $add:ident, $xor:ident, $or:ident, $shl:ident, $shr:ident) => {{
            let init = $x;
            macro_rules! rotl {
                ($v:expr, $n:literal) => {{
                    let v = $v;
                    $or($shl::<$n>(v), $shr::<{ 32 - $n }>(v))
                }};
            }
            macro_rules! qr {
                ($a:literal, $b:literal, $c:literal, $d:literal) => {
                    $x[$b] = $xor($x[$b], rotl!($add($x[$a], $x[$d]), 7));
                    $x[$c] = $xor($x[$c], rotl!($add($x[$b], $x[$a]), 9));
                    $x[$d] = $xor($x[$d], rotl!($add($x[$c], $x[$b]), 13));
                    $x[$a] = $xor($x[$a], rotl!($add($x[$d], $x[$c]), 18));
                };
            }
            for _ in 0..10 {
                // column round
                qr!(0, 4, 8, 12);
                qr!(5, 9, 13, 1);
                qr!(10, 14, 2, 6);
                qr!(15, 3, 7, 11);
                // row round
                qr!(0, 1, 2, 3);
                qr!(5, 6, 7, 4);
                qr!(10, 11, 8, 9);
                qr!(15, 12, 13, 14);
            }
            for (v, i) in $x.iter_mut().zip(init.iter()) {
                *v = $add(*v, *i);
            }
        }};
    }

    /// Counter words 8 (low) and 9 (high) of `LANES` consecutive blocks.
    fn counters<const LANES: usize>(counter: u64) -> ([u32; LANES], [u32; LANES]) {
        let (mut lo, mut hi) = ([0u32; LANES], [0u32; LANES]);
        for (i, (l, h)) in lo.iter_mut().zip(hi.iter_mut()).enumerate() {
            let c = counter.wrapping_add(i as u64);
            *l = c as u32;
            *h = (c >> 32) as u32;
        }
        (lo, hi)
    }

    // ---- AVX2: 8 blocks, 512 bytes per step ----

    /// XORs the keystream of blocks `counter … counter+7` into `out`.
    #[target_feature(enable = "avx2")]
    fn avx2_blocks8(s: &[u32; 16], counter: u64, out: &mut [u8; 512]) {
        let (lo, hi) = counters::<8>(counter);
        let mut x = [_mm256_setzero_si256(); 16];
        for (v, w) in x.iter_mut().zip(s.iter()) {
            *v = _mm256_set1_epi32(*w as i32);
        }
        // SAFETY: unaligned loads of two 32-byte arrays.
        unsafe {
            x[8] = _mm256_loadu_si256(lo.as_ptr().cast());
            x[9] = _mm256_loadu_si256(hi.as_ptr().cast());
        }
        salsa20_core!(
            x,
            _mm256_add_epi32,
            _mm256_xor_si256,
            _mm256_or_si256,
            _mm256_slli_epi32,
            _mm256_srli_epi32
        );
        let a = transpose8([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]]);
        let b = transpose8([x[8], x[9], x[10], x[11], x[12], x[13], x[14], x[15]]);
        for (blk, (a, b)) in out.chunks_exact_mut(64).zip(a.iter().zip(b.iter())) {
            let p = blk.as_mut_ptr().cast::<__m256i>();
            // SAFETY: `blk` is 64 bytes: two unaligned 32-byte loads and stores.
            unsafe {
                _mm256_storeu_si256(p, _mm256_xor_si256(_mm256_loadu_si256(p), *a));
                let q = p.add(1);
                _mm256_storeu_si256(q, _mm256_xor_si256(_mm256_loadu_si256(q), *b));
            }
        }
    }

    /// 8×8 transpose of u32 lanes: output `j` holds lane `j` of inputs 0…7.
    #[target_feature(enable = "avx2")]
    fn transpose8(v: [__m256i; 8]) -> [__m256i; 8] {
        let t0 = _mm256_unpacklo_epi32(v[0], v[1]);
        let t1 = _mm256_unpackhi_epi32(v[0], v[1]);
        let t2 = _mm256_unpacklo_epi32(v[2], v[3]);
        let t3 = _mm256_unpackhi_epi32(v[2], v[3]);
        let t4 = _mm256_unpacklo_epi32(v[4], v[5]);
        let t5 = _mm256_unpackhi_epi32(v[4], v[5]);
        let t6 = _mm256_unpacklo_epi32(v[6], v[7]);
        let t7 = _mm256_unpackhi_epi32(v[6], v[7]);
        // u0: words 0-3 of lanes 0 | 4; u1: lanes 1 | 5; u2: lanes 2 | 6; u3: lanes 3 | 7
        let u0 = _mm256_unpacklo_epi64(t0, t2);
        let u1 = _mm256_unpackhi_epi64(t0, t2);
        let u2 = _mm256_unpacklo_epi64(t1, t3);
        let u3 = _mm256_unpackhi_epi64(t1, t3);
        // u4…u7: words 4-7, same lanes
        let u4 = _mm256_unpacklo_epi64(t4, t6);
        let u5 = _mm256_unpackhi_epi64(t4, t6);
        let u6 = _mm256_unpacklo_epi64(t5, t7);
        let u7 = _mm256_unpackhi_epi64(t5, t7);
        [
            _mm256_permute2x128_si256::<0x20>(u0, u4),
            _mm256_permute2x128_si256::<0x20>(u1, u5),
            _mm256_permute2x128_si256::<0x20>(u2, u6),
            _mm256_permute2x128_si256::<0x20>(u3, u7),
            _mm256_permute2x128_si256::<0x31>(u0, u4),
            _mm256_permute2x128_si256::<0x31>(u1, u5),
            _mm256_permute2x128_si256::<0x31>(u2, u6),
            _mm256_permute2x128_si256::<0x31>(u3, u7),
        ]
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn xor_avx2(s: &[u32; 16], mut counter: u64, data: &mut [u8]) {
        let mut chunks = data.chunks_exact_mut(512);
        for chunk in &mut chunks {
            let chunk: &mut [u8; 512] = chunk.try_into().expect("512-byte chunk");
            avx2_blocks8(s, counter, chunk);
            counter = counter.wrapping_add(8);
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            if rest.len() <= 256 {
                sse2_tail(s, counter, rest);
            } else {
                let mut buf = [0u8; 512];
                avx2_blocks8(s, counter, &mut buf);
                xor_from(rest, &buf);
                buf.zeroize();
            }
        }
    }

    // ---- AVX-512: 16 blocks, 1024 bytes per step ----

    /// XORs the keystream of blocks `counter … counter+15` into `out`. The rounds run on
    /// 16-lane vectors (LLVM turns the shift/or rotations into `vprold`); the output is
    /// transposed as two 8-block halves with the AVX2 transpose.
    #[target_feature(enable = "avx512f,avx2")]
    fn avx512_blocks16(s: &[u32; 16], counter: u64, out: &mut [u8; 1024]) {
        let (lo, hi) = counters::<16>(counter);
        let mut x = [_mm512_setzero_si512(); 16];
        for (v, w) in x.iter_mut().zip(s.iter()) {
            *v = _mm512_set1_epi32(*w as i32);
        }
        // SAFETY: unaligned loads of two 64-byte arrays.
        unsafe {
            x[8] = _mm512_loadu_si512(lo.as_ptr().cast());
            x[9] = _mm512_loadu_si512(hi.as_ptr().cast());
        }
        salsa20_core!(
            x,
            _mm512_add_epi32,
            _mm512_xor_si512,
            _mm512_or_si512,
            _mm512_slli_epi32,
            _mm512_srli_epi32
        );
        let mut low = [_mm256_setzero_si256(); 16];
        let mut high = [_mm256_setzero_si256(); 16];
        for ((l, h), v) in low.iter_mut().zip(high.iter_mut()).zip(x.iter()) {
            *l = _mm512_castsi512_si256(*v);
            *h = _mm512_extracti64x4_epi64::<1>(*v);
        }
        for (half, words) in out.chunks_exact_mut(512).zip([low, high]) {
            let a = transpose8([
                words[0], words[1], words[2], words[3], words[4], words[5], words[6], words[7],
            ]);
            let b = transpose8([
                words[8], words[9], words[10], words[11], words[12], words[13], words[14],
                words[15],
            ]);
            for (blk, (a, b)) in half.chunks_exact_mut(64).zip(a.iter().zip(b.iter())) {
                let p = blk.as_mut_ptr().cast::<__m256i>();
                // SAFETY: `blk` is 64 bytes: two unaligned 32-byte loads and stores.
                unsafe {
                    _mm256_storeu_si256(p, _mm256_xor_si256(_mm256_loadu_si256(p), *a));
                    let q = p.add(1);
                    _mm256_storeu_si256(q, _mm256_xor_si256(_mm256_loadu_si256(q), *b));
                }
            }
        }
    }

    /// # Safety
    /// The CPU must support AVX-512F (and so AVX2).
    #[target_feature(enable = "avx512f,avx2")]
    pub(super) unsafe fn xor_avx512(s: &[u32; 16], mut counter: u64, data: &mut [u8]) {
        let mut chunks = data.chunks_exact_mut(1024);
        for chunk in &mut chunks {
            let chunk: &mut [u8; 1024] = chunk.try_into().expect("1024-byte chunk");
            avx512_blocks16(s, counter, chunk);
            counter = counter.wrapping_add(16);
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            // SAFETY: AVX2 is implied by AVX-512F, which the caller guarantees.
            unsafe { xor_avx2(s, counter, rest) }
        }
    }

    // ---- SSE2: 4 blocks, 256 bytes per step ----

    /// XORs the keystream of blocks `counter … counter+3` into `out`.
    #[target_feature(enable = "sse2")]
    fn sse2_blocks4(s: &[u32; 16], counter: u64, out: &mut [u8; 256]) {
        let (lo, hi) = counters::<4>(counter);
        let mut x = [_mm_setzero_si128(); 16];
        for (v, w) in x.iter_mut().zip(s.iter()) {
            *v = _mm_set1_epi32(*w as i32);
        }
        // SAFETY: unaligned loads of two 16-byte arrays.
        unsafe {
            x[8] = _mm_loadu_si128(lo.as_ptr().cast());
            x[9] = _mm_loadu_si128(hi.as_ptr().cast());
        }
        salsa20_core!(
            x,
            _mm_add_epi32,
            _mm_xor_si128,
            _mm_or_si128,
            _mm_slli_epi32,
            _mm_srli_epi32
        );
        for g in 0..4 {
            // words 4g … 4g+3 of the 4 blocks
            let t0 = _mm_unpacklo_epi32(x[4 * g], x[4 * g + 1]);
            let t1 = _mm_unpackhi_epi32(x[4 * g], x[4 * g + 1]);
            let t2 = _mm_unpacklo_epi32(x[4 * g + 2], x[4 * g + 3]);
            let t3 = _mm_unpackhi_epi32(x[4 * g + 2], x[4 * g + 3]);
            let rows = [
                _mm_unpacklo_epi64(t0, t2),
                _mm_unpackhi_epi64(t0, t2),
                _mm_unpacklo_epi64(t1, t3),
                _mm_unpackhi_epi64(t1, t3),
            ];
            for (j, r) in rows.iter().enumerate() {
                // SAFETY: offset 64j + 16g + 16 ≤ 256: an unaligned 16-byte load and store.
                unsafe {
                    let p = out.as_mut_ptr().add(64 * j + 16 * g).cast::<__m128i>();
                    _mm_storeu_si128(p, _mm_xor_si128(_mm_loadu_si128(p), *r));
                }
            }
        }
    }

    /// Up to 256 bytes through one 4-block step.
    #[target_feature(enable = "sse2")]
    fn sse2_tail(s: &[u32; 16], counter: u64, rest: &mut [u8]) {
        let mut buf = [0u8; 256];
        sse2_blocks4(s, counter, &mut buf);
        xor_from(rest, &buf);
        buf.zeroize();
    }

    /// # Safety
    /// The CPU must support SSE2 (always true on x86_64).
    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn xor_sse2(s: &[u32; 16], mut counter: u64, data: &mut [u8]) {
        let mut chunks = data.chunks_exact_mut(256);
        for chunk in &mut chunks {
            let chunk: &mut [u8; 256] = chunk.try_into().expect("256-byte chunk");
            sse2_blocks4(s, counter, chunk);
            counter = counter.wrapping_add(4);
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            sse2_tail(s, counter, rest);
        }
    }

    fn xor_from(dst: &mut [u8], ks: &[u8]) {
        for (d, k) in dst.iter_mut().zip(ks) {
            *d ^= k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn backends() -> Vec<Backend> {
        let all = [
            Backend::Scalar,
            #[cfg(target_arch = "x86_64")]
            Backend::Sse2,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512,
        ];
        all.into_iter().filter(|b| b.available()).collect()
    }

    /// The `salsa20` crate's keystream XORed into `data` from block `counter`.
    fn reference(key: &[u8; 32], nonce: &[u8; 8], counter: u64, data: &mut [u8]) {
        let mut c = Salsa20::new(key.into(), nonce.into());
        c.seek(u128::from(counter) * 64);
        c.apply_keystream(data);
    }

    #[test]
    fn every_backend_this_machine_has_is_tested() {
        let b = backends();
        assert!(b.contains(&Backend::Scalar));
        #[cfg(target_arch = "x86_64")]
        {
            assert!(b.contains(&Backend::Sse2));
            assert_eq!(
                b.contains(&Backend::Avx2),
                std::arch::is_x86_feature_detected!("avx2")
            );
            assert_eq!(
                b.contains(&Backend::Avx512),
                std::arch::is_x86_feature_detected!("avx512f")
            );
        }
        assert!(b.contains(&Backend::best()));
        assert_eq!(Backend::for_len(SIMD_MIN_LEN - 1), Backend::Scalar);
        assert_eq!(Backend::for_len(SIMD_MIN_LEN), Backend::best());
    }

    /// Known answer: the Salsa20 test vector of the eSTREAM set 1 vector 0 (key 80 00…00,
    /// IV 0), first 64 bytes of keystream.
    #[test]
    fn estream_set1_vector0_on_every_backend() {
        let mut key = [0u8; 32];
        key[0] = 0x80;
        let expected = hex_decode(concat!(
            "e3be8fdd8beca2e3ea8ef9475b29a6e7",
            "003951e1097a5c38d23b7a5fad9f6844",
            "b22c97559e2723c7cbbd3fe4fc8d9a07",
            "44652a83e72a9c461876af4d7ef1a117"
        ));
        for b in backends() {
            let mut buf = vec![0u8; 64 * 9];
            xor_keystream(b, &key, &[0; 8], 0, &mut buf);
            assert_eq!(&buf[..64], &expected[..], "{b:?}");
            let mut r = vec![0u8; 64 * 9];
            reference(&key, &[0; 8], 0, &mut r);
            assert_eq!(buf, r, "{b:?}");
        }
    }

    fn hex_decode(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// Counters whose blocks carry from word 8 into word 9 inside one SIMD step, and the last
    /// blocks before 2⁶⁴ (no wrap: the reference refuses to go past the end).
    #[test]
    fn counter_carry_into_the_high_word() {
        let key = [0x42u8; 32];
        let nonce = [7u8; 8];
        let starts = [
            u64::from(u32::MAX) - 8,
            u64::from(u32::MAX) - 3,
            u64::from(u32::MAX),
            (5u64 << 32) - 1,
            u64::MAX - 40,
        ];
        for b in backends() {
            for &c in &starts {
                for len in [
                    1usize,
                    63,
                    64,
                    65,
                    255,
                    256,
                    257,
                    511,
                    512,
                    513,
                    1000,
                    1023,
                    1024,
                    1025,
                    2047,
                    40 * 64,
                ] {
                    let mut got: Vec<u8> = (0..len).map(|i| i as u8).collect();
                    let mut want = got.clone();
                    xor_keystream(b, &key, &nonce, c, &mut got);
                    reference(&key, &nonce, c, &mut want);
                    assert_eq!(got, want, "{b:?} counter {c:#x} len {len}");
                }
            }
        }
    }

    #[test]
    fn every_length_up_to_three_avx512_steps() {
        let key = [0x17u8; 32];
        let nonce = [0xa5u8; 8];
        let mut want = vec![0u8; 3200];
        reference(&key, &nonce, 3, &mut want);
        for b in backends() {
            for len in 0..=3200 {
                let mut got = vec![0u8; len];
                xor_keystream(b, &key, &nonce, 3, &mut got);
                assert_eq!(got[..], want[..len], "{b:?} len {len}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn simd_equals_the_salsa20_crate(
            key in any::<[u8; 32]>(), nonce in any::<[u8; 8]>(),
            counter in prop_oneof![0u64..1000, (u64::from(u32::MAX) - 20)..(u64::from(u32::MAX) + 20)],
            data in proptest::collection::vec(any::<u8>(), 0..20000),
        ) {
            let mut want = data.clone();
            reference(&key, &nonce, counter, &mut want);
            for b in backends() {
                let mut got = data.clone();
                xor_keystream(b, &key, &nonce, counter, &mut got);
                prop_assert_eq!(&got, &want, "{:?}", b);
            }
        }
    }
}
