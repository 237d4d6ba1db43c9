//! Running a loop compiled for the widest vectors the CPU has.
//!
//! The engine is built for the baseline x86-64 (SSE2: 4 floats per instruction, no
//! fused multiply-add), so that the same binary runs anywhere. A loop body is plain,
//! generic Rust; [`widest`] calls it from inside a function compiled with AVX-512
//! (16 floats) or AVX2 + FMA (8 floats) enabled, after checking at run time that the
//! CPU has them. The body is inlined into that function, so the compiler vectorises
//! it for those instructions: the same source, three machine-code versions
//! ("function multiversioning"), and one `is_x86_feature_detected!` per call.

/// Runs `body` compiled for AVX-512 or AVX2 + FMA where the CPU has them, else as is.
///
/// Mark the closure `#[inline(always)]` (`widest(#[inline(always)] || ...)`): only
/// code inlined into the feature-enabled function is compiled for those features,
/// and the optimiser may otherwise keep a large closure as a separate, baseline call.
#[inline(always)]
pub fn widest<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, the only feature `avx512` enables.
            return unsafe { avx512(body) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, the features `avx2` enables.
            return unsafe { avx2(body) };
        }
    }
    body()
}

/// `body()`, compiled with AVX-512F. Safety: the CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512<R>(body: impl FnOnce() -> R) -> R {
    body()
}

/// `body()`, compiled with AVX2 and FMA. Safety: the CPU must have both.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<R>(body: impl FnOnce() -> R) -> R {
    body()
}
