//! Scalar maths that the compiler can vectorise.
//!
//! `f32::exp` calls the C library one element at a time, and every SiLU, sigmoid
//! and softmax of the U-Net spends its time there. [`exp`] below is branch-free
//! arithmetic (selects, not jumps), so a loop over a slice that calls it becomes
//! AVX code. The method is the classic one (Cody and Waite; Cephes' `expf`):
//!
//! ```text
//! exp(x) = 2^k * exp(r),   k = round(x / ln 2),   r = x - k ln 2,   |r| <= ln(2) / 2
//! ```
//!
//! `k ln 2` is subtracted in two parts (a high part exact in f32, then a low
//! correction) so `r` keeps its precision, `exp(r)` is a degree-6 minimax
//! polynomial, and `2^k` is built directly in the exponent bits (in two halves, so
//! that neither overflows). The error is within 2 ulp of the exact value over the
//! whole range (tested below).

const LOG2_E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Above this, `exp` overflows f32.
const EXP_MAX: f32 = 88.722_83;
/// Below this, `exp` rounds to 0 in f32 (the smallest subnormal is 1.4e-45).
const EXP_MIN: f32 = -104.0;
/// Adding then subtracting 1.5 * 2^23 rounds an f32 to the nearest integer.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x` in f32, vectorisable; NaN in gives NaN out, overflow gives infinity.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(EXP_MIN, EXP_MAX);
    let k = (xc * LOG2_E + ROUND_MAGIC) - ROUND_MAGIC;
    let r = xc - k * LN2_HI - k * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // k is in [-150, 128]: build 2^k as 2^k1 * 2^k2 with both halves normal
    // floats, so results near overflow and in the subnormal range stay right.
    let k = k as i32;
    let k1 = k >> 1;
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    let y = er * pow2(k1) * pow2(k - k1);
    let y = if x > EXP_MAX { f32::INFINITY } else { y };
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// The logistic function `1 / (1 + e^-x)`, vectorisable.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// SiLU (swish): `x * sigmoid(x)`, vectorisable.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// The derivative of SiLU: `s (1 + x (1 - s))` with `s = sigmoid(x)`.
#[inline(always)]
pub fn silu_grad(x: f32) -> f32 {
    let s = sigmoid(x);
    s * (1.0 + x * (1.0 - s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_of_f64_exp() {
        let mut x = -87.3_f32;
        let mut worst = 0;
        while x < 88.5 {
            let exact = (x as f64).exp() as f32;
            worst = worst.max(ulps(exp(x), exact));
            x += 0.000_37;
        }
        assert!(worst <= 2, "worst error {worst} ulp");
    }

    #[test]
    fn exp_edge_cases() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(-110.0), 0.0);
        let tiny = exp(-100.0); // subnormal: 3.7e-44
        assert!((tiny as f64 - (-100.0f64).exp()).abs() < 1.5e-45);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn sigmoid_and_silu_match_their_definitions() {
        for i in -200..200 {
            let x = i as f32 * 0.1;
            let s = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!((sigmoid(x) as f64 - s).abs() < 1e-6, "sigmoid({x})");
            assert!((silu(x) as f64 - x as f64 * s).abs() < 1e-5 * (1.0 + x.abs() as f64));
            let d = s * (1.0 + x as f64 * (1.0 - s));
            assert!((silu_grad(x) as f64 - d).abs() < 1e-6, "silu_grad({x})");
        }
    }
}
