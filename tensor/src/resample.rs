//! Nearest-neighbour upsampling of NCHW images by an integer factor, and its adjoint.
//!
//! Forward, with scale `s`: every input pixel becomes an `s x s` block,
//!
//! ```text
//! y[b, c, i, j] = x[b, c, i / s, j / s]        (integer division)
//! ```
//!
//! Backward: each input pixel was copied to the `s x s` block above it, so its
//! gradient (the adjoint of the copy) is the sum of that block,
//!
//! ```text
//! dx[b, c, i, j] = sum_{u, v < s} dy[b, c, i*s + u, j*s + v]
//! ```
//!
//! Both work plane by plane (one `H x W` image of one channel), in parallel over
//! the planes when the tensor is large.

use rayon::prelude::*;

use crate::error::{invalid, Result};
use crate::layout::checked_numel;
use crate::tensor::{Tensor, PARALLEL_MIN_ELEMENTS};

/// The four sizes of a `[B, C, H, W]` tensor and a checked scale, or an error.
fn check(op: &'static str, t: &Tensor, scale: usize) -> Result<[usize; 4]> {
    let shape: [usize; 4] = t.shape().try_into().map_err(|_| {
        invalid(
            op,
            format!("needs a [B, C, H, W] tensor, shape is {:?}", t.shape()),
        )
    })?;
    if scale == 0 {
        return Err(invalid(op, "scale must be at least 1"));
    }
    Ok(shape)
}

/// Runs `f(src_plane, dst_plane)` over matching planes, in parallel when large.
fn per_plane(
    src: &[f32],
    src_plane: usize,
    dst: &mut [f32],
    dst_plane: usize,
    f: impl Fn(&[f32], &mut [f32]) + Sync,
) {
    if src_plane == 0 || dst_plane == 0 {
        return;
    }
    let body = |(d, s): (&mut [f32], &[f32])| f(s, d);
    if dst.len() >= PARALLEL_MIN_ELEMENTS {
        dst.par_chunks_mut(dst_plane)
            .zip(src.par_chunks(src_plane))
            .for_each(body);
    } else {
        dst.chunks_mut(dst_plane)
            .zip(src.chunks(src_plane))
            .for_each(body);
    }
}

impl Tensor {
    /// Nearest-neighbour upsampling of `[B, C, H, W]` by an integer factor `scale`:
    /// returns `[B, C, H * scale, W * scale]`.
    pub fn upsample_nearest2d(&self, scale: usize) -> Result<Tensor> {
        let op = "upsample_nearest2d";
        let [b, c, h, w] = check(op, self, scale)?;
        let (oh, ow) = match (h.checked_mul(scale), w.checked_mul(scale)) {
            (Some(oh), Some(ow)) => (oh, ow),
            _ => {
                return Err(invalid(
                    op,
                    format!(
                        "{h}x{w} times scale {scale} overflows usize (input {:?})",
                        self.shape()
                    ),
                ))
            }
        };
        let numel = checked_numel(op, &[b, c, oh, ow])?;
        let x = self.contiguous();
        let src = x.as_slice().expect("contiguous() returns a contiguous tensor");
        let mut out = vec![0.0; numel];
        per_plane(src, h * w, &mut out, oh * ow, |s, d| {
            for (row, dst_rows) in s.chunks_exact(w).zip(d.chunks_exact_mut(scale * ow)) {
                let (first, rest) = dst_rows.split_at_mut(ow);
                for (blk, &v) in first.chunks_exact_mut(scale).zip(row) {
                    blk.fill(v);
                }
                for copy in rest.chunks_exact_mut(ow) {
                    copy.copy_from_slice(first);
                }
            }
        });
        Ok(Tensor::from_contiguous(out, &[b, c, oh, ow]))
    }

    /// The adjoint of [`Tensor::upsample_nearest2d`] (its gradient): sums each
    /// `scale x scale` block of `[B, C, H, W]`, returning `[B, C, H / scale, W / scale]`.
    /// `H` and `W` must be multiples of `scale`.
    pub fn upsample_nearest2d_backward(&self, scale: usize) -> Result<Tensor> {
        let op = "upsample_nearest2d_backward";
        let [b, c, h, w] = check(op, self, scale)?;
        if h % scale != 0 || w % scale != 0 {
            return Err(invalid(
                op,
                format!(
                    "spatial size {h}x{w} of {:?} is not a multiple of scale {scale}",
                    self.shape()
                ),
            ));
        }
        let (oh, ow) = (h / scale, w / scale);
        let g = self.contiguous();
        let src = g.as_slice().expect("contiguous() returns a contiguous tensor");
        let mut out = vec![0.0; b * c * oh * ow];
        per_plane(src, h * w, &mut out, oh * ow, |s, d| {
            for (src_rows, drow) in s.chunks_exact(scale * w).zip(d.chunks_exact_mut(ow)) {
                for row in src_rows.chunks_exact(w) {
                    for (dv, blk) in drow.iter_mut().zip(row.chunks_exact(scale)) {
                        *dv += blk.iter().sum::<f32>();
                    }
                }
            }
        });
        Ok(Tensor::from_contiguous(out, &[b, c, oh, ow]))
    }
}
