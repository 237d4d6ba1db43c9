//! Reductions (sum, mean, max, argmax, variance), softmax and `sum_to_shape`.
//!
//! Every reduction uses one scheme: permute the reduced axes to the end and make
//! the result contiguous (free when they already are last and the tensor is
//! dense), so each output element is the reduction of one contiguous *row* of
//! `R = product of the reduced dims` floats. Rows are independent, so large
//! tensors reduce in parallel over rows. Because the kept axes keep their order,
//! the row index is already the row-major index of the output, with or without
//! `keepdim`.
//!
//! Sums run in `LANES` independent accumulators over blocks of `BLOCK`
//! elements, and the block sums are added in `f64`: the lanes let the compiler
//! vectorise the loop, and both the lanes and the blocks keep the rounding error
//! far below that of one running `f32` sum.
//!
//! Softmax moves its axis last, normalises each row (subtracting the row maximum
//! first so `exp` cannot overflow) and moves the axis back.
//!
//! Backward maths (used by the autograd crate):
//!
//! - `sum`: `dx = broadcast(dy)`; `mean`: `dx = broadcast(dy) / R`.
//! - `max`: `dy` flows to the position of the maximum (see `argmax`).
//! - `var`: `dx = broadcast(dy) * 2 (x - mean) / R`.
//! - `softmax` `y`: `dx = y * (dy - sum(dy * y))` along the axis.
//! - `log_softmax` `y`: `dx = dy - exp(y) * sum(dy)` along the axis.
//! - `sum_to_shape` is itself the backward of broadcasting; its backward is
//!   `broadcast_to`.

use rayon::prelude::*;

use crate::error::{check_axis, invalid, Result, TensorError};
use crate::math;
use crate::simd;
use crate::tensor::{Tensor, PARALLEL_MIN_ELEMENTS};

/// Independent accumulators in the inner loops (two AVX registers of `f32`).
pub(crate) const LANES: usize = 8;

/// Elements summed in `f32` before the partial sum is added in `f64`.
pub(crate) const BLOCK: usize = 4096;

/// `sum(f(x))` over a short slice, in [`LANES`] accumulators so it vectorises.
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
    ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7)) + tail
}

/// `sum(f(x))` over any slice: vectorised `f32` blocks added in `f64`.
#[inline(always)]
pub(crate) fn sum_map_f64(x: &[f32], f: impl Fn(f32) -> f32 + Copy) -> f64 {
    simd::widest(
        #[inline(always)]
        || x.chunks(BLOCK).map(|b| f64::from(lane_sum(b, f))).sum(),
    )
}

/// The sum of a slice, accurately (see [`sum_map_f64`]).
pub(crate) fn sum_f64(x: &[f32]) -> f64 {
    sum_map_f64(x, |v| v)
}

/// The larger of two floats, NaN winning (as in [`Tensor::maximum`]).
#[inline(always)]
fn nan_max(a: f32, b: f32) -> f32 {
    if b.is_nan() || b > a {
        b
    } else {
        a
    }
}

/// The maximum of a slice (`-inf` when empty), NaN winning.
fn row_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| nan_max(m, v));
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = nan_max(*a, v);
        }
    }
    acc.iter().fold(tail, |m, &v| nan_max(m, v))
}

/// The population variance of a row: mean first, then the mean squared deviation.
fn row_var(x: &[f32]) -> f32 {
    let n = x.len() as f64;
    let mean = (sum_f64(x) / n) as f32;
    (sum_map_f64(x, |v| (v - mean) * (v - mean)) / n) as f32
}

/// The index of the first maximum of a row (NaN counts as the maximum).
fn row_argmax(x: &[f32]) -> f32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate().skip(1) {
        let b = x[best];
        if !b.is_nan() && (v.is_nan() || v > b) {
            best = i;
        }
    }
    best as f32
}

/// Checks that `axes` are distinct and below `rank`.
fn check_axes(op: &'static str, axes: &[usize], rank: usize) -> Result<()> {
    let mut seen = vec![false; rank];
    for &a in axes {
        check_axis(op, a, rank)?;
        if seen[a] {
            return Err(invalid(op, format!("axis {a} appears twice in {axes:?}")));
        }
        seen[a] = true;
    }
    Ok(())
}

/// `f(row)` for each contiguous row of `len` elements of `data`, in parallel when large.
fn map_rows(data: &[f32], len: usize, rows: usize, f: impl Fn(&[f32]) -> f32 + Sync) -> Vec<f32> {
    let row = |r: usize| f(&data[r * len..(r + 1) * len]);
    if data.len() >= PARALLEL_MIN_ELEMENTS {
        (0..rows).into_par_iter().map(row).collect()
    } else {
        (0..rows).map(row).collect()
    }
}

/// Rewrites each contiguous row of `len` elements of `data` in place with `f`,
/// in parallel when large. `len` must be non-zero.
fn update_rows(data: &mut [f32], len: usize, f: impl Fn(&mut [f32]) + Sync) {
    // Blocks of rows, each under the widest SIMD level: `f` (which the callers
    // mark `#[inline(always)]`) is compiled into the block's loop at that level,
    // so its `exp` vectorises; called row by row from rayon it would not be.
    let block = len * (BLOCK / len).max(1);
    let body = |rows: &mut [f32]| {
        simd::widest(
            #[inline(always)]
            || {
                for row in rows.chunks_mut(len) {
                    f(row);
                }
            },
        )
    };
    if data.len() >= PARALLEL_MIN_ELEMENTS {
        data.par_chunks_mut(block).for_each(body);
    } else {
        body(data);
    }
}

/// The inverse of a permutation.
fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    inv
}

impl Tensor {
    /// Reduces `axes` (distinct, in any order; empty means a plain copy) by
    /// applying `f` to each row of reduced elements. `nonempty` rejects reducing
    /// over zero elements (there is no maximum of nothing).
    fn reduce_rows(
        &self,
        op: &'static str,
        axes: &[usize],
        keepdim: bool,
        nonempty: bool,
        f: impl Fn(&[f32]) -> f32 + Sync,
    ) -> Result<Tensor> {
        check_axes(op, axes, self.rank())?;
        let reduced = |a: &usize| axes.contains(a);
        let mut perm: Vec<usize> = (0..self.rank()).filter(|a| !reduced(a)).collect();
        let kept = perm.len();
        perm.extend_from_slice(axes);
        let len: usize = axes.iter().map(|&a| self.shape()[a]).product();
        let out_shape: Vec<usize> = if keepdim {
            (0..self.rank())
                .map(|a| if reduced(&a) { 1 } else { self.shape()[a] })
                .collect()
        } else {
            perm[..kept].iter().map(|&a| self.shape()[a]).collect()
        };
        let rows: usize = out_shape.iter().product();
        if nonempty && len == 0 && rows > 0 {
            return Err(invalid(
                op,
                format!(
                    "cannot reduce axes {axes:?} of shape {:?}: no elements",
                    self.shape()
                ),
            ));
        }
        let dense = self.permute(&perm)?.contiguous();
        let data = dense.as_slice().unwrap_or_default();
        Ok(Tensor::from_contiguous(map_rows(data, len, rows, f), &out_shape))
    }

    /// Sums over `axes` (distinct; empty is a copy). `keepdim` keeps them as size 1,
    /// so the result broadcasts against `self`.
    pub fn sum(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce_rows("sum", axes, keepdim, false, |r| sum_f64(r) as f32)
    }

    /// The sum of all elements, as a rank-0 tensor.
    pub fn sum_all(&self) -> Tensor {
        let dense = self.contiguous();
        Tensor::scalar(sum_f64(dense.as_slice().unwrap_or_default()) as f32)
    }

    /// The sum of the squares of all elements, in `f64` (vectorised `f32`
    /// blocks, as every sum here): the squared L2 norm, as gradient clipping
    /// needs it, without a copy of a contiguous tensor.
    pub fn sum_squares(&self) -> f64 {
        let dense = self.contiguous();
        sum_map_f64(dense.as_slice().unwrap_or_default(), |v| v * v)
    }

    /// The mean over `axes` (NaN when they hold no elements).
    pub fn mean(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce_rows("mean", axes, keepdim, false, |r| {
            (sum_f64(r) / r.len() as f64) as f32
        })
    }

    /// The maximum over `axes` (NaN wins); an error when they hold no elements.
    pub fn max(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce_rows("max", axes, keepdim, true, row_max)
    }

    /// The index (as `f32`) of the maximum along `axis`; the first one wins on ties.
    pub fn argmax(&self, axis: usize, keepdim: bool) -> Result<Tensor> {
        self.reduce_rows("argmax", &[axis], keepdim, true, row_argmax)
    }

    /// The population variance (dividing by N) over `axes`, computed in two passes
    /// (mean, then mean squared deviation) so it stays accurate when the mean is large.
    pub fn var(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce_rows("var", axes, keepdim, false, row_var)
    }

    /// Moves `axis` last, rewrites each row with `f`, and moves it back; the
    /// result is contiguous.
    fn along_axis(&self, op: &'static str, axis: usize, f: impl Fn(&mut [f32]) + Sync) -> Result<Tensor> {
        check_axis(op, axis, self.rank())?;
        let mut perm: Vec<usize> = (0..self.rank()).filter(|&a| a != axis).collect();
        perm.push(axis);
        let moved = self.permute(&perm)?;
        let mut data = moved.to_vec();
        let len = self.shape()[axis];
        if len > 0 {
            update_rows(&mut data, len, f);
        }
        Tensor::from_contiguous(data, moved.shape())
            .permute(&inverse(&perm))
            .map(|t| t.contiguous())
    }

    /// `exp(x) / sum(exp(x))` along `axis`, computed as `exp(x - max)` so large
    /// inputs do not overflow.
    pub fn softmax(&self, axis: usize) -> Result<Tensor> {
        self.along_axis(
            "softmax",
            axis,
            #[inline(always)]
            |row| {
                let m = row_max(row);
                for v in row.iter_mut() {
                    *v = math::exp(*v - m);
                }
                let scale = (1.0 / sum_f64(row)) as f32;
                for v in row.iter_mut() {
                    *v *= scale;
                }
            },
        )
    }

    /// `log(softmax(x))` along `axis`, computed stably as
    /// `x - max - log(sum(exp(x - max)))`.
    pub fn log_softmax(&self, axis: usize) -> Result<Tensor> {
        self.along_axis(
            "log_softmax",
            axis,
            #[inline(always)]
            |row| {
                let m = row_max(row);
                let shift = m + sum_map_f64(row, |v| math::exp(v - m)).ln() as f32;
                for v in row.iter_mut() {
                    *v -= shift;
                }
            },
        )
    }

    /// Sums a broadcast result back to `shape`: the gradient of broadcasting
    /// `shape` up to `self.shape()`. Sums the leading extra axes and every axis
    /// where `shape` has 1 but `self` does not; an error when `shape` does not
    /// broadcast to `self.shape()`.
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        let err = || TensorError::ShapeMismatch {
            op: "sum_to_shape",
            lhs: self.shape().to_vec(),
            rhs: shape.to_vec(),
        };
        let lead = self.rank().checked_sub(shape.len()).ok_or_else(err)?;
        let mut axes: Vec<usize> = (0..lead).collect();
        for (i, &d) in shape.iter().enumerate() {
            let own = self.shape()[lead + i];
            if d == 1 && own != 1 {
                axes.push(lead + i);
            } else if d != own {
                return Err(err());
            }
        }
        if axes.is_empty() {
            // Nothing was broadcast: the gradient is the value itself, not a copy.
            return Ok(self.clone());
        }
        self.sum(&axes, false)?.reshape(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_sum_handles_every_remainder() {
        for n in 0..40 {
            let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
            assert_eq!(sum_f64(&x), (0..n).sum::<usize>() as f64, "n = {n}");
        }
    }

    #[test]
    fn long_sums_stay_accurate() {
        let x = vec![0.1f32; 1_000_000];
        let exact = 1_000_000.0 * f64::from(0.1f32);
        let rel = (sum_f64(&x) - exact).abs() / exact;
        assert!(rel < 1e-5, "relative error {rel}");
    }

    #[test]
    fn max_and_argmax_let_nan_win() {
        let x = [1.0, f32::NAN, 3.0, 2.0, 5.0, 0.0, 1.0, 1.0, 9.0];
        assert!(row_max(&x).is_nan());
        assert_eq!(row_argmax(&x), 1.0);
        assert_eq!(row_argmax(&[2.0, 7.0, 7.0]), 1.0);
    }
}
