//! The portable level: "vectors" of 4 floats as plain arrays.
//!
//! Every operation is a loop over the four lanes, which the compiler maps onto
//! the baseline's vector registers where it can (SSE2 on x86-64, NEON on
//! AArch64). `mul_add` is a multiply and an add: `f32::mul_add` would call a
//! software fused multiply-add on CPUs without the instruction.

use super::Vector;

/// The portable level's token (every CPU has it).
#[derive(Debug, Clone, Copy)]
pub struct Scalar(());

impl Scalar {
    /// The token: always available.
    pub fn token() -> Scalar {
        Scalar(())
    }
}

const N: usize = 4;
type F = [f32; N];

impl Vector for Scalar {
    type Reg = F;
    /// The lanes `lo..hi`.
    type Mask = (usize, usize);
    const LANES: usize = N;
    const REGISTERS: usize = 16;

    #[inline(always)]
    fn zero(self) -> F {
        [0.0; N]
    }
    #[inline(always)]
    fn splat(self, x: f32) -> F {
        [x; N]
    }
    #[inline(always)]
    fn add(self, a: F, b: F) -> F {
        std::array::from_fn(|l| a[l] + b[l])
    }
    #[inline(always)]
    fn sub(self, a: F, b: F) -> F {
        std::array::from_fn(|l| a[l] - b[l])
    }
    #[inline(always)]
    fn mul_add(self, a: F, b: F, c: F) -> F {
        std::array::from_fn(|l| a[l] * b[l] + c[l])
    }
    #[inline(always)]
    fn lanes(self, lo: usize, hi: usize) -> (usize, usize) {
        (lo.min(N), hi.min(N))
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> F {
        // SAFETY: the caller's contract: p[0..4] is readable.
        unsafe { p.cast::<F>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: F) {
        // SAFETY: the caller's contract: p[0..4] is writable.
        unsafe { p.cast::<F>().write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn load_masked(self, p: *const f32, (lo, hi): (usize, usize)) -> F {
        // SAFETY: the caller's contract: p[l] is readable for l in lo..hi.
        std::array::from_fn(|l| {
            if (lo..hi).contains(&l) {
                unsafe { *p.wrapping_add(l) }
            } else {
                0.0
            }
        })
    }
    #[inline(always)]
    unsafe fn store_masked(self, p: *mut f32, (lo, hi): (usize, usize), v: F) {
        for (l, &x) in v.iter().enumerate().take(hi).skip(lo) {
            // SAFETY: the caller's contract: p[l] is writable for l in lo..hi.
            unsafe { *p.wrapping_add(l) = x };
        }
    }
    #[inline(always)]
    unsafe fn gather_masked(self, p: *const f32, stride: usize, (lo, hi): (usize, usize)) -> F {
        std::array::from_fn(|l| {
            if (lo..hi).contains(&l) {
                // SAFETY: the caller's contract: p[l * stride] is readable for l in lo..hi.
                unsafe { *p.wrapping_add(l * stride) }
            } else {
                0.0
            }
        })
    }
    #[inline(always)]
    fn deinterleave(self, a: F, b: F) -> (F, F) {
        let both = |l: usize| if l < N { a[l] } else { b[l - N] };
        (
            std::array::from_fn(|l| both(2 * l)),
            std::array::from_fn(|l| both(2 * l + 1)),
        )
    }
    #[inline(always)]
    fn interleave(self, a: F, b: F) -> (F, F) {
        let zip = |i: usize| if i.is_multiple_of(2) { a[i / 2] } else { b[i / 2] };
        (std::array::from_fn(zip), std::array::from_fn(|l| zip(l + N)))
    }
}
