//! Matrix products: `[.., m, k] x [.., k, n] -> [.., m, n]`, batch axes broadcast.
//!
//! Each matrix of each operand is handed to [`crate::gemm`] as a strided view of
//! the operand's storage: a transposed operand (`x.t()`) is a view with its two
//! strides swapped, a broadcast batch axis has stride 0, and neither is copied.
//!
//! Parallelism is at our level, on rayon's pool: over the batch when there are at
//! least as many matrices as threads, otherwise inside each product by output
//! blocks ([`gemm_parallel`]).
//!
//! Backward (for autograd): with `C = A B`, `dA = dC B^T` and `dB = A^T dC`; both
//! are `matmul` calls on transposed views.

use rayon::prelude::*;

use crate::error::{Result, TensorError};
use crate::gemm::{gemm, gemm_parallel, MatMut, MatRef};
use crate::layout::{broadcast_shapes, checked_numel};
use crate::tensor::Tensor;

/// Storage offsets of every matrix in a batch: `batch_shape` walked in row-major
/// order, with `strides` (0 on broadcast axes) from `base`.
fn batch_offsets(batch_shape: &[usize], strides: &[usize], base: usize) -> Vec<usize> {
    let mut offsets = vec![base];
    for (&d, &s) in batch_shape.iter().zip(strides) {
        offsets = offsets
            .iter()
            .flat_map(|&o| (0..d).map(move |i| o + i * s))
            .collect();
    }
    offsets
}

/// A `[rows, cols]` matrix of `t` (its last two axes) starting at `offset`.
fn matrix_view(t: &Tensor, offset: usize) -> MatRef<'_> {
    let r = t.rank();
    let (rows, cols) = (t.shape()[r - 2], t.shape()[r - 1]);
    let (rs, cs) = (t.strides()[r - 2], t.strides()[r - 1]);
    MatRef::new(&t.storage()[offset..], rows, cols, rs, cs)
}

impl Tensor {
    /// The matrix product, NumPy style: the last two axes multiply, the leading
    /// (batch) axes broadcast. A 1-D operand is a row vector on the left or a
    /// column vector on the right, and its axis is dropped from the result.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        let mismatch = || TensorError::ShapeMismatch {
            op: "matmul",
            lhs: self.shape().to_vec(),
            rhs: other.shape().to_vec(),
        };
        if self.rank() == 0 || other.rank() == 0 {
            return Err(mismatch());
        }
        // Promote vectors to matrices, and remember which axis to drop.
        let a = if self.rank() == 1 {
            self.unsqueeze(0)?
        } else {
            self.clone()
        };
        let b = if other.rank() == 1 {
            other.unsqueeze(1)?
        } else {
            other.clone()
        };
        let (ra, rb) = (a.rank(), b.rank());
        let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
        if b.shape()[rb - 2] != k {
            return Err(mismatch());
        }
        let batch =
            broadcast_shapes("matmul", &a.shape()[..ra - 2], &b.shape()[..rb - 2]).map_err(|e| match e {
                TensorError::ShapeMismatch { .. } => mismatch(),
                e => e,
            })?;
        let out = matmul_batched(&a, &b, &batch, m, k, n)?;
        let mut shape = batch;
        if self.rank() > 1 {
            shape.push(m);
        }
        if other.rank() > 1 {
            shape.push(n);
        }
        out.reshape(&shape)
    }
}

/// The product of broadcast batches of matrices, as a `[batch.., m, n]` tensor.
fn matmul_batched(a: &Tensor, b: &Tensor, batch: &[usize], m: usize, k: usize, n: usize) -> Result<Tensor> {
    let with_batch = |rows: usize, cols: usize| -> Result<(Vec<usize>, usize)> {
        let mut shape = batch.to_vec();
        shape.extend([rows, cols]);
        // Each may be too large on its own: with `k == 0` both operands can be
        // empty while the product is not.
        let numel = checked_numel("matmul", &shape)?;
        Ok((shape, numel))
    };
    let ((a_shape, _), (b_shape, _)) = (with_batch(m, k)?, with_batch(k, n)?);
    let (shape, numel) = with_batch(m, n)?;
    if numel == 0 {
        // Also spares walking a batch like `[1 << 40, 0]` matrix by matrix.
        return Ok(Tensor::from_contiguous(Vec::new(), &shape));
    }
    let (a, b) = (a.broadcast_to(&a_shape)?, b.broadcast_to(&b_shape)?);
    let nb = batch.len();
    let a_offsets = batch_offsets(batch, &a.strides()[..nb], a.layout().offset());
    let b_offsets = batch_offsets(batch, &b.strides()[..nb], b.layout().offset());
    let count = a_offsets.len();
    let mut out = vec![0.0; numel];
    let product = |(i, c): (usize, &mut [f32])| {
        let (av, bv) = (matrix_view(&a, a_offsets[i]), matrix_view(&b, b_offsets[i]));
        gemm(1.0, av, bv, 0.0, MatMut::row_major(c, m, n));
    };
    if count >= rayon::current_num_threads() && count > 1 {
        out.par_chunks_mut(m * n).enumerate().for_each(product);
    } else {
        for (i, c) in out.chunks_mut(m * n).enumerate() {
            let (av, bv) = (matrix_view(&a, a_offsets[i]), matrix_view(&b, b_offsets[i]));
            gemm_parallel(1.0, av, bv, 0.0, c);
        }
    }
    Tensor::from_vec(out, &shape)
}
