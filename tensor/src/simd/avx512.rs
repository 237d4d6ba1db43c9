//! The AVX-512 level: 16 floats a vector, masks as 16-bit lane sets.
//!
//! Masked loads and stores touch only the lanes of their mask (faults on the
//! others are suppressed), which is what lets kernels run past the right edge
//! of a row without a scalar tail loop.

use std::arch::x86_64::*;

use super::{Kernel, Vector};

/// The AVX-512 level's token: exists only where the CPU has AVX-512F.
#[derive(Debug, Clone, Copy)]
pub struct Avx512(());

/// `kernel` with AVX-512 vectors, compiled with AVX-512F enabled.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn run<K: Kernel>(kernel: K) -> K::Output {
    kernel.run(Avx512(()))
}

/// `body()`, compiled with AVX-512F enabled.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn call<R>(body: impl FnOnce() -> R) -> R {
    body()
}

/// Lane indices `0..16`, for permutes.
const fn iota(start: i32, step: i32) -> [i32; 16] {
    let mut out = [0; 16];
    let mut l = 0;
    while l < 16 {
        out[l] = start + step * l as i32;
        l += 1;
    }
    out
}
const EVEN: [i32; 16] = iota(0, 2);
const ODD: [i32; 16] = iota(1, 2);
/// `[0, 16, 1, 17, ..]` and `[8, 24, 9, 25, ..]`: the two halves of a zip.
const ZIP_LO: [i32; 16] = zip(0);
const ZIP_HI: [i32; 16] = zip(8);
const fn zip(start: i32) -> [i32; 16] {
    let mut out = [0; 16];
    let mut l = 0;
    while l < 16 {
        out[l] = start + (l as i32) / 2 + if l % 2 == 1 { 16 } else { 0 };
        l += 1;
    }
    out
}

// SAFETY (every `unsafe` block below that calls an intrinsic): a value of
// `Avx512` exists only inside `run`, which the caller may call only where the
// CPU has AVX-512F, so these AVX-512F instructions can execute. Blocks that
// also dereference pointers say why those accesses are valid.
impl Vector for Avx512 {
    type Reg = __m512;
    type Mask = __mmask16;
    const LANES: usize = 16;
    const REGISTERS: usize = 32;

    #[inline(always)]
    fn zero(self) -> __m512 {
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    fn splat(self, x: f32) -> __m512 {
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn lanes(self, lo: usize, hi: usize) -> __mmask16 {
        let below = |n: usize| ((1u32 << n.min(16)) - 1) as u16;
        below(hi) & !below(lo)
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m512 {
        // SAFETY: the caller's contract covers the 16 floats read.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m512) {
        // SAFETY: the caller's contract covers the 16 floats written.
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn load_masked(self, p: *const f32, m: __mmask16) -> __m512 {
        // SAFETY: only the lanes of `m` are read, which the caller's contract covers.
        unsafe { _mm512_maskz_loadu_ps(m, p) }
    }
    #[inline(always)]
    unsafe fn store_masked(self, p: *mut f32, m: __mmask16, v: __m512) {
        // SAFETY: only the lanes of `m` are written, which the caller's contract covers.
        unsafe { _mm512_mask_storeu_ps(p, m, v) }
    }
    #[inline(always)]
    unsafe fn gather_masked(self, p: *const f32, stride: usize, m: __mmask16) -> __m512 {
        // SAFETY: lane l reads p[l * stride] for the lanes of `m` only, which the
        // caller's contract covers; 16 * stride fits an i32 (also the contract).
        unsafe {
            let idx = _mm512_mullo_epi32(
                _mm512_loadu_si512(iota(0, 1).as_ptr().cast()),
                _mm512_set1_epi32(stride as i32),
            );
            _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, idx, p)
        }
    }
    #[inline(always)]
    fn deinterleave(self, a: __m512, b: __m512) -> (__m512, __m512) {
        unsafe {
            let (even, odd) = (
                _mm512_loadu_si512(EVEN.as_ptr().cast()),
                _mm512_loadu_si512(ODD.as_ptr().cast()),
            );
            (
                _mm512_permutex2var_ps(a, even, b),
                _mm512_permutex2var_ps(a, odd, b),
            )
        }
    }
    #[inline(always)]
    fn interleave(self, a: __m512, b: __m512) -> (__m512, __m512) {
        unsafe {
            let (lo, hi) = (
                _mm512_loadu_si512(ZIP_LO.as_ptr().cast()),
                _mm512_loadu_si512(ZIP_HI.as_ptr().cast()),
            );
            (_mm512_permutex2var_ps(a, lo, b), _mm512_permutex2var_ps(a, hi, b))
        }
    }
}
