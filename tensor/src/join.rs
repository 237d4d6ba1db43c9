//! Concat, split, index-select and its adjoint, index-add.
//!
//! The U-Net concatenates skip connections along the channel axis, and a token or
//! class embedding is a row lookup (`index_select` along axis 0). All four ops see
//! a tensor as `[outer, d, inner]` around the chosen axis (`outer` = product of
//! the axes before it, `inner` = product of those after it): in a contiguous
//! tensor, one index along the axis is then a contiguous run of `inner` floats, so
//! every op is a sequence of slice copies.
//!
//! Backward maths (each op's adjoint is another op of this module):
//!
//! - `concat`: `dx_k` = the `k`-th piece of `split(dy, axis, sizes)`.
//! - `split`: `dx = concat(dy_0, dy_1, ...)` (zeros for pieces without gradient).
//! - `index_select`: `dx = index_add(dy, axis, indices, x.shape)`; repeated
//!   indices accumulate, since `<index_select(x), g> = <x, index_add(g)>`.
//! - `index_add`: `dg = index_select(dy, axis, indices)`.

use rayon::prelude::*;

use crate::error::{check_axis, invalid, Result, TensorError};
use crate::layout::checked_numel;
use crate::tensor::{Tensor, PARALLEL_MIN_ELEMENTS};

/// `(outer, inner)`: the products of the axes before and after `axis`.
fn outer_inner(shape: &[usize], axis: usize) -> (usize, usize) {
    (shape[..axis].iter().product(), shape[axis + 1..].iter().product())
}

/// Fills each `chunk`-sized piece of `out` (its index given) with `f`, in parallel
/// when large. `chunk` must be non-zero.
fn fill_chunks(out: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if out.len() >= PARALLEL_MIN_ELEMENTS {
        out.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    } else {
        out.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// Checks that every index is below `dim`.
fn check_indices(op: &'static str, indices: &[usize], dim: usize, shape: &[usize]) -> Result<()> {
    match indices.iter().find(|&&i| i >= dim) {
        Some(i) => Err(invalid(
            op,
            format!("index {i} is out of range for an axis of size {dim} (shape {shape:?})"),
        )),
        None => Ok(()),
    }
}

impl Tensor {
    /// Joins `tensors` along `axis`; all shapes must be equal except along `axis`.
    pub fn concat(tensors: &[&Tensor], axis: usize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| invalid("concat", "needs at least one tensor"))?;
        check_axis("concat", axis, first.rank())?;
        for t in tensors {
            let same = t.rank() == first.rank()
                && (0..t.rank()).all(|a| a == axis || t.shape()[a] == first.shape()[a]);
            if !same {
                return Err(TensorError::ShapeMismatch {
                    op: "concat",
                    lhs: first.shape().to_vec(),
                    rhs: t.shape().to_vec(),
                });
            }
        }
        // The output's shape is checked before any input is made contiguous.
        let mut shape = first.shape().to_vec();
        shape[axis] = tensors
            .iter()
            .try_fold(0usize, |n, t| n.checked_add(t.shape()[axis]))
            .ok_or_else(|| invalid("concat", format!("the sizes along axis {axis} overflow usize")))?;
        let numel = checked_numel("concat", &shape)?;
        let (_, inner) = outer_inner(first.shape(), axis);
        let dense: Vec<Tensor> = tensors.iter().map(|t| t.contiguous()).collect();
        let pieces: Vec<(&[f32], usize)> = dense
            .iter()
            .map(|t| (t.as_slice().unwrap_or_default(), t.shape()[axis] * inner))
            .collect();
        let row: usize = pieces.iter().map(|p| p.1).sum();
        let mut out = vec![0.0; numel];
        if !out.is_empty() {
            fill_chunks(&mut out, row, |o, dst| {
                let mut at = 0;
                for &(src, n) in &pieces {
                    dst[at..at + n].copy_from_slice(&src[o * n..(o + 1) * n]);
                    at += n;
                }
            });
        }
        Ok(Tensor::from_contiguous(out, &shape))
    }

    /// Cuts `axis` into consecutive pieces of `sizes` (which must add up to its
    /// size). The pieces are views: no data is copied.
    pub fn split(&self, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>> {
        check_axis("split", axis, self.rank())?;
        if sizes.iter().sum::<usize>() != self.shape()[axis] {
            return Err(invalid(
                "split",
                format!(
                    "sizes {sizes:?} do not add up to axis {axis} of shape {:?}",
                    self.shape()
                ),
            ));
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&n| {
                start += n;
                self.narrow(axis, start - n, n)
            })
            .collect()
    }

    /// Gathers the slices at `indices` along `axis` (repeats allowed), in that
    /// order: an embedding lookup when `self` is `[vocab, dim]` and `axis` is 0.
    pub fn index_select(&self, axis: usize, indices: &[usize]) -> Result<Tensor> {
        check_axis("index_select", axis, self.rank())?;
        let dim = self.shape()[axis];
        check_indices("index_select", indices, dim, self.shape())?;
        let (_, inner) = outer_inner(self.shape(), axis);
        let dense = self.contiguous();
        let src = dense.as_slice().unwrap_or_default();
        let mut shape = self.shape().to_vec();
        shape[axis] = indices.len();
        let mut out = vec![0.0; checked_numel("index_select", &shape)?];
        if !out.is_empty() {
            let n = indices.len();
            fill_chunks(&mut out, inner, |r, dst| {
                let start = ((r / n) * dim + indices[r % n]) * inner;
                dst.copy_from_slice(&src[start..start + inner]);
            });
        }
        Ok(Tensor::from_contiguous(out, &shape))
    }

    /// The adjoint of [`Tensor::index_select`]: a zero tensor of `shape` into which
    /// slice `i` of `self` along `axis` is added at position `indices[i]`; repeated
    /// indices accumulate. `self.shape()` must be `shape` with `axis` resized to
    /// `indices.len()`.
    pub fn index_add(&self, axis: usize, indices: &[usize], shape: &[usize]) -> Result<Tensor> {
        let numel = checked_numel("index_add", shape)?;
        check_axis("index_add", axis, shape.len())?;
        let mut expected = shape.to_vec();
        expected[axis] = indices.len();
        if self.shape() != expected {
            return Err(TensorError::ShapeMismatch {
                op: "index_add",
                lhs: self.shape().to_vec(),
                rhs: expected,
            });
        }
        let dim = shape[axis];
        check_indices("index_add", indices, dim, shape)?;
        let (_, inner) = outer_inner(shape, axis);
        let dense = self.contiguous();
        let src = dense.as_slice().unwrap_or_default();
        let mut out = vec![0.0; numel];
        let n = indices.len();
        if !out.is_empty() {
            fill_chunks(&mut out, dim * inner, |o, dst| {
                for (k, &i) in indices.iter().enumerate() {
                    let from = &src[(o * n + k) * inner..(o * n + k + 1) * inner];
                    for (d, &g) in dst[i * inner..(i + 1) * inner].iter_mut().zip(from) {
                        *d += g;
                    }
                }
            });
        }
        Ok(Tensor::from_contiguous(out, shape))
    }
}
