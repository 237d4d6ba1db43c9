//! Element-wise ops: unary maps, scalar forms, and binary ops with broadcasting.
//!
//! Every op here is one line on top of two building blocks:
//!
//! - [`Tensor::map`] applies a scalar function to each element;
//! - [`Tensor::zip_map`] combines two tensors after broadcasting them to a common
//!   shape (NumPy rules: align on the right, size-1 axes repeat).
//!
//! Both have a contiguous fast path (a plain loop over slices, which the compiler
//! vectorises because each function is generic and inlined) and a strided path
//! (see `strided.rs`). Work above `PARALLEL_MIN_ELEMENTS` (32768) is split across
//! rayon's threads in large chunks.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::error::{invalid, Result};
use crate::layout::broadcast_shapes;
use crate::math;
use crate::simd;
use crate::strided::StridedRows;
use crate::tensor::{Tensor, PARALLEL_MIN_ELEMENTS};

/// Elements per parallel task in the contiguous fast paths.
const CHUNK: usize = 1 << 14;

/// A chunk of an output vector's slots, not yet written.
type Slots<'a> = &'a mut [MaybeUninit<f32>];

/// `out[i] = f(a[i])` over slices, in parallel when large.
fn map_slice(a: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = Vec::with_capacity(a.len());
    // The output's slots are filled without being zeroed first: zeroing is a whole
    // extra pass over memory (a few percent of a training step).
    let slots = &mut out.spare_capacity_mut()[..a.len()];
    let body = |(o, a): (Slots<'_>, &[f32])| {
        simd::widest(
            #[inline(always)]
            || {
                for (o, &x) in o.iter_mut().zip(a) {
                    o.write(f(x));
                }
            },
        )
    };
    if a.len() >= PARALLEL_MIN_ELEMENTS {
        slots
            .par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .for_each(body);
    } else {
        body((slots, a));
    }
    // SAFETY: `slots` and `a` have the same length and are cut into chunks of the
    // same size, so `body` wrote every one of the first `a.len()` slots.
    unsafe { out.set_len(a.len()) };
    out
}

/// `out[i] = f(a[i], b[i])` over slices of equal length, in parallel when large.
fn zip_slices(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "zip_slices needs slices of equal length");
    let mut out = Vec::with_capacity(a.len());
    let slots = &mut out.spare_capacity_mut()[..a.len()];
    let body = |((o, a), b): ((Slots<'_>, &[f32]), &[f32])| {
        simd::widest(
            #[inline(always)]
            || {
                for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
                    o.write(f(x, y));
                }
            },
        )
    };
    if a.len() >= PARALLEL_MIN_ELEMENTS {
        slots
            .par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .for_each(body);
    } else {
        body(((slots, a), b));
    }
    // SAFETY: `slots`, `a` and `b` have the same length and are cut into chunks of
    // the same size, so `body` wrote every one of the first `a.len()` slots.
    unsafe { out.set_len(a.len()) };
    out
}

/// `dst[i] += src[i]` over slices of equal length, in parallel when large.
fn add_in_place(dst: &mut [f32], src: &[f32]) {
    let body = |(d, s): (&mut [f32], &[f32])| {
        simd::widest(
            #[inline(always)]
            || {
                for (d, &s) in d.iter_mut().zip(s) {
                    *d += s;
                }
            },
        )
    };
    if dst.len() >= PARALLEL_MIN_ELEMENTS {
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(body);
    } else {
        body((dst, src));
    }
}

/// One output row of a broadcast binary op: `dst[i] = f(a[sa * i], b[sb * i])`.
/// The three common stride patterns get their own loops so they vectorise.
#[inline(always)]
fn zip_row(dst: &mut [f32], a: &[f32], sa: usize, b: &[f32], sb: usize, f: &impl Fn(f32, f32) -> f32) {
    let n = dst.len();
    match (sa, sb) {
        (1, 1) => {
            for ((d, &x), &y) in dst.iter_mut().zip(&a[..n]).zip(&b[..n]) {
                *d = f(x, y);
            }
        }
        (1, 0) => {
            let y = b[0];
            for (d, &x) in dst.iter_mut().zip(&a[..n]) {
                *d = f(x, y);
            }
        }
        (0, 1) => {
            let x = a[0];
            for (d, &y) in dst.iter_mut().zip(&b[..n]) {
                *d = f(x, y);
            }
        }
        _ => {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = f(a[i * sa], b[i * sb]);
            }
        }
    }
}

impl Tensor {
    /// Applies `f` to every element; the result is contiguous.
    pub fn map(&self, f: impl Fn(f32) -> f32 + Sync) -> Tensor {
        let data = match self.as_slice() {
            Some(a) => map_slice(a, f),
            None => self.map_strided(f),
        };
        Tensor::from_contiguous(data, self.shape())
    }

    /// Combines `self` and `other` element by element after broadcasting them to a
    /// common shape. `op` names the caller in errors.
    pub fn zip_map(
        &self,
        other: &Tensor,
        op: &'static str,
        f: impl Fn(f32, f32) -> f32 + Sync,
    ) -> Result<Tensor> {
        if self.shape() == other.shape() {
            if let (Some(a), Some(b)) = (self.as_slice(), other.as_slice()) {
                return Ok(Tensor::from_contiguous(zip_slices(a, b, f), self.shape()));
            }
        }
        let shape = broadcast_shapes(op, self.shape(), other.shape())?;
        let la = self.layout().broadcast_to(&shape)?;
        let lb = other.layout().broadcast_to(&shape)?;
        let rows = StridedRows::new(&shape, [la.strides(), lb.strides()], [la.offset(), lb.offset()]);
        let mut out = vec![0.0; shape.iter().product()];
        if out.is_empty() {
            return Ok(Tensor::from_contiguous(out, &shape));
        }
        let (sa, sb) = (rows.inner_strides[0], rows.inner_strides[1]);
        let (a, b) = (self.storage(), other.storage());
        let fill = |(r, dst): (usize, &mut [f32])| {
            let [oa, ob] = rows.row_start(r);
            simd::widest(
                #[inline(always)]
                || zip_row(dst, &a[oa..], sa, &b[ob..], sb, &f),
            );
        };
        if out.len() >= PARALLEL_MIN_ELEMENTS {
            out.par_chunks_mut(rows.inner).enumerate().for_each(fill);
        } else {
            out.chunks_mut(rows.inner).enumerate().for_each(fill);
        }
        Ok(Tensor::from_contiguous(out, &shape))
    }

    // ----- binary, broadcasting -------------------------------------------------

    /// `self + other`, broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_map(other, "add", |x, y| x + y)
    }

    /// `a + b` for two tensors of the same shape that the caller gives up: the sum
    /// is written over one of them when nothing else shares its buffer (addition
    /// commutes, so either serves), and into a new buffer otherwise. The values
    /// are those of [`Tensor::add`]. For accumulating gradients, where one of the
    /// two is usually a fresh tensor that nothing else holds.
    pub fn add_consuming(mut a: Tensor, mut b: Tensor) -> Result<Tensor> {
        if a.shape() == b.shape() {
            if let (Some(src), Some(dst)) = (b.as_slice(), a.sole_buffer()) {
                add_in_place(dst, src);
                return Ok(a);
            }
            if let (Some(src), Some(dst)) = (a.as_slice(), b.sole_buffer()) {
                add_in_place(dst, src);
                return Ok(b);
            }
        }
        a.add(&b)
    }

    /// `self - other`, broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_map(other, "sub", |x, y| x - y)
    }

    /// `self * other`, broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_map(other, "mul", |x, y| x * y)
    }

    /// `self / other`, broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_map(other, "div", |x, y| x / y)
    }

    /// `self ^ other` element-wise, broadcasting.
    pub fn pow(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_map(other, "pow", f32::powf)
    }

    /// The larger of the two, element-wise, broadcasting (NaN wins).
    pub fn maximum(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_map(other, "maximum", |x, y| if x.is_nan() || x > y { x } else { y })
    }

    /// The smaller of the two, element-wise, broadcasting (NaN wins).
    pub fn minimum(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_map(other, "minimum", |x, y| if x.is_nan() || x < y { x } else { y })
    }

    /// 1.0 where `self == other`, else 0.0.
    pub fn eq(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_map(other, "eq", |x, y| f32::from(x == y))
    }

    /// 1.0 where `self != other`, else 0.0.
    pub fn ne(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_map(other, "ne", |x, y| f32::from(x != y))
    }

    /// 1.0 where `self < other`, else 0.0.
    pub fn lt(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_map(other, "lt", |x, y| f32::from(x < y))
    }

    /// 1.0 where `self <= other`, else 0.0.
    pub fn le(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_map(other, "le", |x, y| f32::from(x <= y))
    }

    /// 1.0 where `self > other`, else 0.0.
    pub fn gt(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_map(other, "gt", |x, y| f32::from(x > y))
    }

    /// 1.0 where `self >= other`, else 0.0.
    pub fn ge(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_map(other, "ge", |x, y| f32::from(x >= y))
    }

    // ----- scalar forms -----------------------------------------------------------

    /// `self + s`.
    pub fn add_scalar(&self, s: f32) -> Tensor {
        self.map(|x| x + s)
    }

    /// `self - s`.
    pub fn sub_scalar(&self, s: f32) -> Tensor {
        self.map(|x| x - s)
    }

    /// `self * s`.
    pub fn mul_scalar(&self, s: f32) -> Tensor {
        self.map(|x| x * s)
    }

    /// `self / s`.
    pub fn div_scalar(&self, s: f32) -> Tensor {
        self.map(|x| x / s)
    }

    /// `self * scale + shift` in one pass.
    pub fn affine(&self, scale: f32, shift: f32) -> Tensor {
        self.map(|x| x * scale + shift)
    }

    /// `self ^ p`.
    pub fn powf(&self, p: f32) -> Tensor {
        if p == 2.0 {
            self.map(|x| x * x)
        } else {
            self.map(|x| x.powf(p))
        }
    }

    /// The larger of `self` and `s` (NaN stays NaN).
    pub fn maximum_scalar(&self, s: f32) -> Tensor {
        self.map(|x| if x.is_nan() || x > s { x } else { s })
    }

    /// Limits every element to `[lo, hi]` (NaN stays NaN).
    pub fn clamp(&self, lo: f32, hi: f32) -> Result<Tensor> {
        if lo > hi || lo.is_nan() || hi.is_nan() {
            return Err(invalid("clamp", format!("empty interval [{lo}, {hi}]")));
        }
        Ok(self.map(|x| {
            if x < lo {
                lo
            } else if x > hi {
                hi
            } else {
                x
            }
        }))
    }

    // ----- unary ------------------------------------------------------------------

    /// `-self`.
    pub fn neg(&self) -> Tensor {
        self.map(|x| -x)
    }

    /// `e^self` (vectorised, within 2 ulp; see [`crate::math::exp`]).
    pub fn exp(&self) -> Tensor {
        self.map(math::exp)
    }

    /// The natural logarithm.
    pub fn log(&self) -> Tensor {
        self.map(f32::ln)
    }

    /// The square root.
    pub fn sqrt(&self) -> Tensor {
        self.map(f32::sqrt)
    }

    /// `self * self`.
    pub fn square(&self) -> Tensor {
        self.map(|x| x * x)
    }

    /// `1 / self`.
    pub fn recip(&self) -> Tensor {
        self.map(|x| 1.0 / x)
    }

    /// The absolute value.
    pub fn abs(&self) -> Tensor {
        self.map(f32::abs)
    }

    /// The hyperbolic tangent.
    pub fn tanh(&self) -> Tensor {
        self.map(f32::tanh)
    }

    /// The logistic function `1 / (1 + e^-x)`.
    pub fn sigmoid(&self) -> Tensor {
        self.map(math::sigmoid)
    }

    /// SiLU (swish): `x * sigmoid(x)`.
    pub fn silu(&self) -> Tensor {
        self.map(math::silu)
    }

    /// `max(x, 0)` (NaN stays NaN).
    pub fn relu(&self) -> Tensor {
        self.map(|x| if x < 0.0 { 0.0 } else { x })
    }
}
