//! Group normalisation, forward and backward, as fused kernels.
//!
//! Group norm (Wu and He, 2018) splits the `C` channels of each image into `G`
//! groups and normalises each group of `N = (C / G) * H * W` values to zero mean
//! and unit variance, then applies a per-channel scale `gamma` and shift `beta`.
//! Built from generic ops it would take a dozen passes and temporaries per call;
//! as a kernel it is two passes forward and two backward. In a contiguous
//! `[B, C, H, W]` (or `[B, C, ...]`) tensor, group `g` of image `b` is one
//! contiguous run of `N` floats, and channel `c` of it a run of `H * W`.
//!
//! Forward, per `(b, g)` (statistics accumulated in `f64`, variance in two passes):
//!
//! ```text
//! mean = sum(x) / N,   var = sum((x - mean)^2) / N,   rstd = 1 / sqrt(var + eps)
//! xhat = (x - mean) * rstd,   y = xhat * gamma[c] + beta[c]
//! ```
//!
//! Backward, with `dxhat = dy * gamma[c]`, sums running over the group:
//!
//! ```text
//! dx        = rstd * (dxhat - sum(dxhat) / N - xhat * sum(dxhat * xhat) / N)
//! dgamma[c] = sum over b and the H * W positions of channel c of dy * xhat
//! dbeta[c]  = sum over b and the H * W positions of channel c of dy
//! ```
//!
//! (`dx` follows from `xhat` depending on `x` directly and through `mean` and
//! `rstd`; `d mean / dx = 1 / N` and `d rstd / dx = -rstd^3 (x - mean) / N`.)
//! Both kernels run in parallel over images; backward sums each image's partial
//! `dgamma`, `dbeta` at the end.

use rayon::prelude::*;

use crate::error::{invalid, Result, TensorError};
use crate::reduce::{sum_f64, sum_map_f64, BLOCK, LANES};
use crate::simd;
use crate::tensor::{Tensor, PARALLEL_MIN_ELEMENTS};

/// The per-`(b, g)` statistics of a forward pass that the backward pass needs.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupNormSaved {
    /// The mean of each group, indexed `b * groups + g`.
    pub mean: Vec<f32>,
    /// `1 / sqrt(var + eps)` of each group, indexed `b * groups + g`.
    pub rstd: Vec<f32>,
}

/// The sizes a group-norm call works with, after validation.
#[derive(Debug, Clone, Copy)]
struct Dims {
    /// Channels.
    c: usize,
    /// Elements per channel of one image (`H * W`).
    hw: usize,
    /// Channels per group.
    cg: usize,
}

impl Dims {
    /// Validates `x` (`[B, C, ...]`), `groups` and the `[C]` parameters (gamma, beta).
    fn new(op: &'static str, x: &Tensor, groups: usize, params: &[&Tensor]) -> Result<Dims> {
        if x.rank() < 2 {
            return Err(invalid(
                op,
                format!("needs [B, C, ...] input, shape is {:?}", x.shape()),
            ));
        }
        let (c, hw) = (x.shape()[1], x.shape()[2..].iter().product::<usize>());
        if groups == 0 || c % groups != 0 || c * hw == 0 {
            return Err(invalid(
                op,
                format!(
                    "cannot split the channels of shape {:?} into {groups} non-empty groups",
                    x.shape()
                ),
            ));
        }
        for &p in params {
            if p.shape() != [c] {
                return Err(TensorError::ShapeMismatch {
                    op,
                    lhs: x.shape().to_vec(),
                    rhs: p.shape().to_vec(),
                });
            }
        }
        Ok(Dims {
            c,
            hw,
            cg: c / groups,
        })
    }

    /// Elements of one image.
    fn image(&self) -> usize {
        self.c * self.hw
    }

    /// Images per rayon task, so that small inputs run on one thread.
    fn min_images_per_task(&self) -> usize {
        PARALLEL_MIN_ELEMENTS.div_ceil(self.image())
    }
}

/// Normalises one image in place of `y`, returning `(mean, rstd)` of each group.
#[inline(always)]
fn forward_image(
    x: &[f32],
    y: &mut [f32],
    d: Dims,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> Vec<(f32, f32)> {
    let n = d.cg * d.hw;
    x.chunks(n)
        .zip(y.chunks_mut(n))
        .enumerate()
        .map(|(g, (xg, yg))| {
            let mean = (sum_f64(xg) / n as f64) as f32;
            let var = sum_map_f64(xg, |v| (v - mean) * (v - mean)) / n as f64;
            let rstd = (1.0 / (var + f64::from(eps)).sqrt()) as f32;
            for (k, (xc, yc)) in xg.chunks(d.hw).zip(yg.chunks_mut(d.hw)).enumerate() {
                let c = g * d.cg + k;
                let scale = rstd * gamma[c];
                let shift = beta[c] - mean * scale;
                for (o, &v) in yc.iter_mut().zip(xc) {
                    *o = v * scale + shift;
                }
            }
            (mean, rstd)
        })
        .collect()
}

/// Normalises `x` (`[B, C, ...]`) over `groups` groups of channels, then scales
/// and shifts each channel by `gamma`, `beta` (both `[C]`). Returns the output and
/// the statistics that [`group_norm_backward`] needs.
pub fn group_norm_forward(
    x: &Tensor,
    groups: usize,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
) -> Result<(Tensor, GroupNormSaved)> {
    let d = Dims::new("group_norm_forward", x, groups, &[gamma, beta])?;
    let (x, gamma, beta) = (x.contiguous(), gamma.contiguous(), beta.contiguous());
    let (xs, gs, bs) = (
        x.as_slice().unwrap_or_default(),
        gamma.as_slice().unwrap_or_default(),
        beta.as_slice().unwrap_or_default(),
    );
    let mut out = vec![0.0; xs.len()];
    let stats: Vec<Vec<(f32, f32)>> = out
        .par_chunks_mut(d.image())
        .zip(xs.par_chunks(d.image()))
        .with_min_len(d.min_images_per_task())
        .map(|(y, xi)| {
            simd::widest(
                #[inline(always)]
                || forward_image(xi, y, d, gs, bs, eps),
            )
        })
        .collect();
    let (mean, rstd) = stats.into_iter().flatten().unzip();
    Ok((
        Tensor::from_contiguous(out, x.shape()),
        GroupNormSaved { mean, rstd },
    ))
}

/// `(sum(dy * xhat), sum(dy))` over one channel, with `xhat = (x - mean) * rstd`.
#[inline(always)]
fn channel_sums(dy: &[f32], x: &[f32], mean: f32, rstd: f32) -> (f64, f64) {
    let (mut s_dyx, mut s_dy) = (0.0f64, 0.0f64);
    for (dyb, xb) in dy.chunks(BLOCK).zip(x.chunks(BLOCK)) {
        let (mut a, mut b) = ([0.0f32; LANES], [0.0f32; LANES]);
        let (dyc, xc) = (dyb.chunks_exact(LANES), xb.chunks_exact(LANES));
        for (&g, &v) in dyc.remainder().iter().zip(xc.remainder()) {
            a[0] += g * (v - mean) * rstd;
            b[0] += g;
        }
        for (gs, vs) in dyc.zip(xc) {
            for l in 0..LANES {
                a[l] += gs[l] * (vs[l] - mean) * rstd;
                b[l] += gs[l];
            }
        }
        s_dyx += a.iter().map(|&v| f64::from(v)).sum::<f64>();
        s_dy += b.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
    (s_dyx, s_dy)
}

/// The backward pass of one image: writes `dx` and returns this image's
/// `(dgamma[c], dbeta[c])` for every channel.
#[inline(always)]
fn backward_image(
    dy: &[f32],
    x: &[f32],
    dx: &mut [f32],
    d: Dims,
    stats: (&[f32], &[f32]),
    gamma: &[f32],
) -> Vec<(f64, f64)> {
    let n = d.cg * d.hw;
    let mut partial = Vec::with_capacity(d.c);
    for (g, ((dyg, xg), dxg)) in dy.chunks(n).zip(x.chunks(n)).zip(dx.chunks_mut(n)).enumerate() {
        let (mean, rstd) = (stats.0[g], stats.1[g]);
        let first = partial.len();
        partial.extend(
            dyg.chunks(d.hw)
                .zip(xg.chunks(d.hw))
                .map(|(dyc, xc)| channel_sums(dyc, xc, mean, rstd)),
        );
        let group = &partial[first..];
        let gam = &gamma[g * d.cg..(g + 1) * d.cg];
        let mean_dxhat_xhat = group
            .iter()
            .zip(gam)
            .map(|(p, &w)| p.0 * f64::from(w))
            .sum::<f64>()
            / n as f64;
        let mean_dxhat = group
            .iter()
            .zip(gam)
            .map(|(p, &w)| p.1 * f64::from(w))
            .sum::<f64>()
            / n as f64;
        let (a, b) = (mean_dxhat as f32, mean_dxhat_xhat as f32);
        for (k, ((dyc, xc), dxc)) in dyg
            .chunks(d.hw)
            .zip(xg.chunks(d.hw))
            .zip(dxg.chunks_mut(d.hw))
            .enumerate()
        {
            let w = gam[k];
            for ((o, &gy), &v) in dxc.iter_mut().zip(dyc).zip(xc) {
                let xhat = (v - mean) * rstd;
                *o = rstd * (gy * w - a - xhat * b);
            }
        }
    }
    partial
}

/// The gradients of [`group_norm_forward`] with respect to `x`, `gamma` and `beta`,
/// given the output gradient and the saved statistics. Returns `(dx, dgamma, dbeta)`.
pub fn group_norm_backward(
    grad_out: &Tensor,
    x: &Tensor,
    saved: &GroupNormSaved,
    groups: usize,
    gamma: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "group_norm_backward";
    let d = Dims::new(OP, x, groups, &[gamma])?;
    if grad_out.shape() != x.shape() {
        return Err(TensorError::ShapeMismatch {
            op: OP,
            lhs: grad_out.shape().to_vec(),
            rhs: x.shape().to_vec(),
        });
    }
    let stats_len = x.shape()[0] * groups;
    if saved.mean.len() != stats_len || saved.rstd.len() != stats_len {
        return Err(invalid(
            OP,
            format!(
                "saved statistics have {} means and {} rstds, shape {:?} with {groups} groups needs {stats_len}",
                saved.mean.len(),
                saved.rstd.len(),
                x.shape()
            ),
        ));
    }
    let (dy, x, gamma) = (grad_out.contiguous(), x.contiguous(), gamma.contiguous());
    let (dys, xs, gs) = (
        dy.as_slice().unwrap_or_default(),
        x.as_slice().unwrap_or_default(),
        gamma.as_slice().unwrap_or_default(),
    );
    let mut dx = vec![0.0; xs.len()];
    let partials: Vec<Vec<(f64, f64)>> = dx
        .par_chunks_mut(d.image())
        .zip(dys.par_chunks(d.image()).zip(xs.par_chunks(d.image())))
        .zip(saved.mean.par_chunks(groups).zip(saved.rstd.par_chunks(groups)))
        .with_min_len(d.min_images_per_task())
        .map(|((dxi, (dyi, xi)), stats)| {
            simd::widest(
                #[inline(always)]
                || backward_image(dyi, xi, dxi, d, stats, gs),
            )
        })
        .collect();
    let mut sums = vec![(0.0f64, 0.0f64); d.c];
    for image in &partials {
        for (s, p) in sums.iter_mut().zip(image) {
            s.0 += p.0;
            s.1 += p.1;
        }
    }
    let dgamma = sums.iter().map(|s| s.0 as f32).collect();
    let dbeta = sums.iter().map(|s| s.1 as f32).collect();
    Ok((
        Tensor::from_contiguous(dx, x.shape()),
        Tensor::from_contiguous(dgamma, &[d.c]),
        Tensor::from_contiguous(dbeta, &[d.c]),
    ))
}
