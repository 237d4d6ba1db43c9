//! The AVX2 + FMA level: 8 floats a vector, masks as vectors of all-ones or
//! zero 32-bit lanes (`vmaskmovps` reads and writes only the lanes whose sign
//! bit is set, and suppresses faults on the others).
//!
//! The permutes work inside the two 128-bit halves of a register and then
//! across them: `deinterleave` is a `shufps` (even or odd floats of each half)
//! and a 64-bit permute that puts `a`'s pairs before `b`'s; `interleave` is
//! `unpcklps`/`unpckhps` and two half swaps.

use std::arch::x86_64::*;

use super::{Kernel, Vector};

/// The AVX2 level's token: exists only where the CPU has AVX2 and FMA.
#[derive(Debug, Clone, Copy)]
pub struct Avx2(());

/// `kernel` with AVX2 vectors, compiled with AVX2 and FMA enabled.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn run<K: Kernel>(kernel: K) -> K::Output {
    kernel.run(Avx2(()))
}

/// `body()`, compiled with AVX2 and FMA enabled.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn call<R>(body: impl FnOnce() -> R) -> R {
    body()
}

/// `_mm256_permute4x64_pd`'s order `[0, 2, 1, 3]` (64-bit chunks).
const PAIRS: i32 = 0b11_01_10_00;

// SAFETY (every `unsafe` block below that calls an intrinsic): a value of `Avx2`
// exists only inside `run`, which the caller may call only where the CPU has
// AVX2 and FMA, so these instructions can execute. Blocks that also dereference
// pointers say why those accesses are valid.
impl Vector for Avx2 {
    type Reg = __m256;
    type Mask = __m256i;
    const LANES: usize = 8;
    const REGISTERS: usize = 16;

    #[inline(always)]
    fn zero(self) -> __m256 {
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    fn splat(self, x: f32) -> __m256 {
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn lanes(self, lo: usize, hi: usize) -> __m256i {
        // lane l is in the set when lo <= l < hi, i.e. l > lo - 1 and hi > l.
        let (lo, hi) = (lo.min(8) as i32, hi.min(8) as i32);
        unsafe {
            let l = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            _mm256_and_si256(
                _mm256_cmpgt_epi32(l, _mm256_set1_epi32(lo - 1)),
                _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), l),
            )
        }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m256 {
        // SAFETY: the caller's contract covers the 8 floats read.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m256) {
        // SAFETY: the caller's contract covers the 8 floats written.
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn load_masked(self, p: *const f32, m: __m256i) -> __m256 {
        // SAFETY: only the lanes of `m` are read, which the caller's contract covers.
        unsafe { _mm256_maskload_ps(p, m) }
    }
    #[inline(always)]
    unsafe fn store_masked(self, p: *mut f32, m: __m256i, v: __m256) {
        // SAFETY: only the lanes of `m` are written, which the caller's contract covers.
        unsafe { _mm256_maskstore_ps(p, m, v) }
    }
    #[inline(always)]
    unsafe fn gather_masked(self, p: *const f32, stride: usize, m: __m256i) -> __m256 {
        // SAFETY: lane l reads p[l * stride] for the lanes of `m` only, which the
        // caller's contract covers; 8 * stride fits an i32 (also the contract).
        unsafe {
            let s = stride as i32;
            let idx = _mm256_setr_epi32(0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s);
            _mm256_mask_i32gather_ps::<4>(_mm256_setzero_ps(), p, idx, _mm256_castsi256_ps(m))
        }
    }
    #[inline(always)]
    fn deinterleave(self, a: __m256, b: __m256) -> (__m256, __m256) {
        unsafe {
            // [a0 a2 b0 b2 | a4 a6 b4 b6], then pairs reordered to [a0 a2 a4 a6 b0 b2 b4 b6].
            let even = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
            let odd = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
            let pairs = |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<PAIRS>(_mm256_castps_pd(v)));
            (pairs(even), pairs(odd))
        }
    }
    #[inline(always)]
    fn interleave(self, a: __m256, b: __m256) -> (__m256, __m256) {
        unsafe {
            // [a0 b0 a1 b1 | a4 b4 a5 b5] and [a2 b2 a3 b3 | a6 b6 a7 b7].
            let (lo, hi) = (_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
            (
                _mm256_permute2f128_ps::<0x20>(lo, hi),
                _mm256_permute2f128_ps::<0x31>(lo, hi),
            )
        }
    }
}
