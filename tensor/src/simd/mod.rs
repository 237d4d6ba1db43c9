//! The engine's SIMD layer: one small vector interface, implemented once per
//! instruction set, and the run-time choice of which one runs.
//!
//! The engine is built for the baseline of its target (x86-64 with SSE2, or
//! AArch64), so that one binary runs on any CPU of that architecture. Wider
//! instructions are used where the CPU has them, chosen once at run time:
//!
//! | [`Level`]  | instructions   | floats per vector | where                          |
//! |------------|----------------|-------------------|--------------------------------|
//! | `avx512`   | AVX-512F       | 16                | Intel servers, AMD Zen 4 and 5 |
//! | `avx2`     | AVX2 + FMA     | 8                 | x86-64 CPUs since 2013-2015    |
//! | `scalar`   | none (portable)| 4 (an array)      | everything else, ARM included  |
//!
//! Two ways in:
//!
//! - Kernels written with intrinsics-like operations (the short GEMM's
//!   micro-kernel, Winograd's transforms) are generic over [`Vector`] and run
//!   through [`dispatch`], which calls them with the vector type of the current
//!   level from inside a function compiled for its instructions.
//! - Plain loops that the compiler vectorises on its own (element-wise maps,
//!   group norm) run through [`widest`], the same trick without a vector type.
//!
//! Adding an instruction set (NEON, say) is one file: a zero-sized token type
//! implementing [`Vector`] with that set's intrinsics, and one arm in [`dispatch`]
//! and [`widest`]. Not written yet: this project has no ARM machine to test it on,
//! and an untested kernel is not shipped. ARM CPUs run the portable level, whose
//! 4-float arrays the compiler maps onto NEON registers by itself.
//!
//! The level is the best the CPU has unless the environment variable
//! `TENSOR_SIMD` (`avx512`, `avx2` or `scalar`) asks for a lower one, read once;
//! [`set_level`] changes it for the whole process (benchmarks and tests use it
//! to compare levels on one machine).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod level;
mod scalar;

pub use level::{configure_from_env, detected, level, set_level, supported, Level, ENV_VAR};
pub use scalar::Scalar;
#[cfg(target_arch = "x86_64")]
pub use {avx2::Avx2, avx512::Avx512};

/// A vector of `LANES` floats and the operations the engine's kernels use.
///
/// The implementing type is a zero-sized token: a value of it exists only where
/// the CPU has its instructions (the sole constructors are [`dispatch`]'s
/// feature-enabled entry points), so its operations are safe to call. Kernels
/// take the token by value (`v.add(a, b)`), generic over `V: Vector`, and are
/// compiled once per implementation.
///
/// Every method is `#[inline(always)]`: an intrinsic is only turned into its
/// instruction when it is inlined into a function compiled for its features.
pub trait Vector: Copy + Send + Sync + 'static {
    /// The register type (`__m512`, `__m256`, `[f32; 4]`).
    type Reg: Copy;
    /// A set of lanes, for loads and stores that touch only part of a vector.
    type Mask: Copy;
    /// Floats per vector.
    const LANES: usize;
    /// Vector registers the instruction set has (how many accumulators fit).
    const REGISTERS: usize;

    /// All lanes zero.
    fn zero(self) -> Self::Reg;
    /// All lanes `x`.
    fn splat(self, x: f32) -> Self::Reg;
    /// `a + b`, lane by lane.
    fn add(self, a: Self::Reg, b: Self::Reg) -> Self::Reg;
    /// `a - b`, lane by lane.
    fn sub(self, a: Self::Reg, b: Self::Reg) -> Self::Reg;
    /// `a * b + c`, lane by lane: fused (one rounding) where the instruction set
    /// has FMA, a multiply then an add in the portable level.
    fn mul_add(self, a: Self::Reg, b: Self::Reg, c: Self::Reg) -> Self::Reg;
    /// The lanes `lo..hi` (empty when `hi <= lo`; both at most `LANES`).
    fn lanes(self, lo: usize, hi: usize) -> Self::Mask;

    /// `p[0..LANES]`.
    ///
    /// # Safety
    /// `p[0..LANES]` is readable.
    unsafe fn load(self, p: *const f32) -> Self::Reg;
    /// Writes `v` to `p[0..LANES]`.
    ///
    /// # Safety
    /// `p[0..LANES]` is writable.
    unsafe fn store(self, p: *mut f32, v: Self::Reg);
    /// `p[l]` in the lanes `l` of `m`, zero in the others. Only the lanes of `m`
    /// are read, so `p` may point outside its allocation where the others would.
    ///
    /// # Safety
    /// `p[l]` is readable for every lane `l` of `m`.
    unsafe fn load_masked(self, p: *const f32, m: Self::Mask) -> Self::Reg;
    /// Writes lane `l` of `v` to `p[l]` for the lanes of `m`, and nothing else.
    ///
    /// # Safety
    /// `p[l]` is writable for every lane `l` of `m`.
    unsafe fn store_masked(self, p: *mut f32, m: Self::Mask, v: Self::Reg);
    /// `p[l * stride]` in the lanes `l` of `m`, zero in the others.
    ///
    /// # Safety
    /// `p[l * stride]` is readable for every lane `l` of `m`, and
    /// `LANES * stride <= i32::MAX` (the offsets are 32-bit).
    unsafe fn gather_masked(self, p: *const f32, stride: usize, m: Self::Mask) -> Self::Reg;

    /// The even and the odd floats of the `2 LANES` floats `a ++ b`:
    /// `([a0, a2, .., b0, b2, ..], [a1, a3, .., b1, b3, ..])`.
    fn deinterleave(self, a: Self::Reg, b: Self::Reg) -> (Self::Reg, Self::Reg);
    /// The inverse: `[a0, b0, a1, b1, ..]` as two vectors, its first half and its
    /// second half.
    fn interleave(self, a: Self::Reg, b: Self::Reg) -> (Self::Reg, Self::Reg);
}

/// A computation generic over the vector type, for [`dispatch`] (a closure
/// cannot be generic, so a kernel is a value with a generic method).
pub trait Kernel {
    /// What the kernel returns.
    type Output;
    /// Runs the kernel with vectors of type `V`. Mark the implementation
    /// `#[inline(always)]`, so that it is compiled inside the feature-enabled
    /// entry point rather than as a separate function for the baseline.
    fn run<V: Vector>(self, v: V) -> Self::Output;
}

/// Runs `kernel` with the vector type of the current [`level`].
#[inline(always)]
pub fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    match level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` is AVX-512 only when the CPU has AVX-512F (`set_level`
        // and the detection check it).
        Level::Avx512 => unsafe { avx512::run(kernel) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for AVX2 and FMA.
        Level::Avx2 => unsafe { avx2::run(kernel) },
        _ => kernel.run(Scalar::token()),
    }
}

/// Runs `body` compiled for the current [`level`]'s instructions (AVX-512 or
/// AVX2 + FMA), or as is at the portable level.
///
/// Mark the closure `#[inline(always)]` (`widest(#[inline(always)] || ...)`): only
/// code inlined into the feature-enabled function is compiled for those features,
/// and the optimiser may otherwise keep a large closure as a separate, baseline call.
#[inline(always)]
pub fn widest<R>(body: impl FnOnce() -> R) -> R {
    match level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` is AVX-512 only when the CPU has AVX-512F.
        Level::Avx512 => unsafe { avx512::call(body) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` is AVX2 only when the CPU has AVX2 and FMA.
        Level::Avx2 => unsafe { avx2::call(body) },
        _ => body(),
    }
}
