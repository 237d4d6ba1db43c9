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
//!
//! **Fused activation.** In the U-Net nearly every group norm feeds a SiLU, so the
//! kernels can apply one ([`Activation`]) on the way out: forward writes
//! `silu(z)` with `z = xhat * gamma + beta` instead of `z`, and backward first
//! turns `dy` into `dz = dy * silu'(z)`, recomputing `z` from `x` and the saved
//! statistics, then runs the group-norm backward above on `dz`. That saves the
//! activation's own pass over memory each way and the tensor it would keep for
//! its backward. Per group, backward is two passes: the first computes `dz` into
//! the `dx` buffer while summing `dz * xhat` and `dz`, the second turns it into
//! `dx` in place (the group, a few thousand floats, is still in cache).
//!
//! **Fused dropout.** After the activation the kernels can also apply dropout
//! with the mask of `(p, seed)` ([`crate::mask`]): forward writes `act(z) *
//! mask[i]`, and backward starts from `dy * mask[i]`, the mask computed again
//! from its seed (element `i` is the index in the whole `[B, C, ...]` tensor, as
//! [`Tensor::dropout`] numbers it, so the values are those of the unfused ops).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::error::{invalid, Result, TensorError};
use crate::mask::MaskStream;
use crate::math;
use crate::reduce::{sum_f64, sum_map_f64, BLOCK, LANES};
use crate::simd;
use crate::tensor::{Tensor, PARALLEL_MIN_ELEMENTS};
use crate::uninit::{assume_written, filled_by};

/// The per-`(b, g)` statistics of a forward pass that the backward pass needs.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupNormSaved {
    /// The mean of each group, indexed `b * groups + g`.
    pub mean: Vec<f32>,
    /// `1 / sqrt(var + eps)` of each group, indexed `b * groups + g`.
    pub rstd: Vec<f32>,
}

/// The activation a group-norm kernel applies to its output `z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `y = z`: plain group norm.
    Identity,
    /// `y = silu(z) = z sigmoid(z)`.
    Silu,
}

/// An [`Activation`] as a type, so each kernel is compiled (and vectorised) for it.
trait Act: Copy + Send + Sync {
    /// `y = f(z)`.
    fn f(z: f32) -> f32;
    /// `dz = dy f'(z)`.
    fn back(z: f32, dy: f32) -> f32;
}

#[derive(Clone, Copy)]
struct Identity;

impl Act for Identity {
    #[inline(always)]
    fn f(z: f32) -> f32 {
        z
    }
    #[inline(always)]
    fn back(_: f32, dy: f32) -> f32 {
        dy
    }
}

#[derive(Clone, Copy)]
struct Silu;

impl Act for Silu {
    #[inline(always)]
    fn f(z: f32) -> f32 {
        math::silu(z)
    }
    #[inline(always)]
    fn back(z: f32, dy: f32) -> f32 {
        dy * math::silu_grad(z)
    }
}

/// A dropout mask as a type: none (the kernels compile without it) or a stream.
trait Mask: Copy + Send + Sync {
    /// `mask[i]`.
    fn at(&self, i: usize) -> f32;
}

impl Mask for () {
    #[inline(always)]
    fn at(&self, _: usize) -> f32 {
        1.0
    }
}

impl Mask for MaskStream {
    #[inline(always)]
    fn at(&self, i: usize) -> f32 {
        MaskStream::at(self, i)
    }
}

/// Dropout applied after the activation: probability `p`, mask stream `seed`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    /// The probability of dropping an element, in `[0, 1)`.
    pub p: f32,
    /// The seed of the mask ([`Tensor::dropout_mask`]).
    pub seed: u64,
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

/// Normalises one image into `y` (then applies `A`), returning `(mean, rstd)`
/// of each group. Writes every slot of `y`.
#[inline(always)]
fn forward_image<A: Act, M: Mask>(
    x: &[f32],
    y: &mut [MaybeUninit<f32>],
    d: Dims,
    (gamma, beta): (&[f32], &[f32]),
    eps: f32,
    (mask, base): (M, usize),
) -> Vec<(f32, f32)> {
    let n = d.cg * d.hw;
    // A `for` loop, not `map(..).collect()`: the closure of an iterator adapter
    // is compiled as a function of its own, outside the SIMD level's target
    // features, and its `exp` would not vectorise.
    let mut stats = Vec::with_capacity(d.c / d.cg);
    for (g, (xg, yg)) in x.chunks(n).zip(y.chunks_mut(n)).enumerate() {
        let mean = (sum_f64(xg) / n as f64) as f32;
        let var = sum_map_f64(xg, |v| (v - mean) * (v - mean)) / n as f64;
        let rstd = (1.0 / (var + f64::from(eps)).sqrt()) as f32;
        for (k, (xc, yc)) in xg.chunks(d.hw).zip(yg.chunks_mut(d.hw)).enumerate() {
            let c = g * d.cg + k;
            let scale = rstd * gamma[c];
            let shift = beta[c] - mean * scale;
            let first = base + c * d.hw;
            for (i, (o, &v)) in yc.iter_mut().zip(xc).enumerate() {
                o.write(A::f(v * scale + shift) * mask.at(first + i));
            }
        }
        stats.push((mean, rstd));
    }
    stats
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
    group_norm_act_forward(x, groups, gamma, beta, eps, Activation::Identity, None)
}

/// [`group_norm_forward`] followed by `act` and, if given, `dropout`, in one
/// pass: `y = act(z) * mask`.
pub fn group_norm_act_forward(
    x: &Tensor,
    groups: usize,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    act: Activation,
    dropout: Option<Dropout>,
) -> Result<(Tensor, GroupNormSaved)> {
    const OP: &str = "group_norm_forward";
    let args = (x, groups, (gamma, beta), eps);
    match (act, dropout) {
        (Activation::Identity, None) => forward::<Identity, ()>(args, ()),
        (Activation::Silu, None) => forward::<Silu, ()>(args, ()),
        (Activation::Identity, Some(p)) => forward::<Identity, _>(args, MaskStream::new(OP, p.p, p.seed)?),
        (Activation::Silu, Some(p)) => forward::<Silu, _>(args, MaskStream::new(OP, p.p, p.seed)?),
    }
}

fn forward<A: Act, M: Mask>(
    (x, groups, (gamma, beta), eps): (&Tensor, usize, (&Tensor, &Tensor), f32),
    mask: M,
) -> Result<(Tensor, GroupNormSaved)> {
    let d = Dims::new("group_norm_forward", x, groups, &[gamma, beta])?;
    let (x, gamma, beta) = (x.contiguous(), gamma.contiguous(), beta.contiguous());
    let (xs, gs, bs) = (
        x.as_slice().unwrap_or_default(),
        gamma.as_slice().unwrap_or_default(),
        beta.as_slice().unwrap_or_default(),
    );
    let mut stats: Vec<Vec<(f32, f32)>> = Vec::new();
    let fill = |out: &mut [MaybeUninit<f32>]| {
        stats = out
            .par_chunks_mut(d.image())
            .zip(xs.par_chunks(d.image()))
            .enumerate()
            .with_min_len(d.min_images_per_task())
            .map(|(b, (y, xi))| {
                simd::widest(
                    #[inline(always)]
                    || forward_image::<A, M>(xi, y, d, (gs, bs), eps, (mask, b * d.image())),
                )
            })
            .collect();
    };
    // SAFETY: the images cut `out` into whole images, each cut into whole groups,
    // and `forward_image` writes every slot of each group.
    let out = unsafe { filled_by(xs.len(), fill) };
    let (mean, rstd) = stats.into_iter().flatten().unzip();
    Ok((
        Tensor::from_contiguous(out, x.shape()),
        GroupNormSaved { mean, rstd },
    ))
}

/// The first backward pass over one channel: `dz = A::back(z, dy)` into `dz`
/// (every slot written), with `z = x * scale + shift` as forward computed it;
/// then, while the channel is in cache, `(sum(dz * xhat), sum(dz))` with
/// `xhat = (x - mean) * rstd`. (Two plain loops vectorise; one loop doing both
/// does not.)
#[inline(always)]
fn channel_pass<A: Act, M: Mask>(
    dy: &[f32],
    x: &[f32],
    dz: &mut [MaybeUninit<f32>],
    (mean, rstd): (f32, f32),
    (scale, shift): (f32, f32),
    (mask, first): (M, usize),
) -> (f64, f64) {
    for (i, ((o, &g), &v)) in dz.iter_mut().zip(dy).zip(x).enumerate() {
        o.write(A::back(v * scale + shift, g * mask.at(first + i)));
    }
    // SAFETY: the loop above wrote every slot of `dz` (`dy` and `x` are as long).
    let dz = unsafe { assume_written(dz) };
    channel_sums(dz, x, mean, rstd)
}

/// `(sum(dz * xhat), sum(dz))` over one channel, with `xhat = (x - mean) * rstd`.
#[inline(always)]
fn channel_sums(dz: &[f32], x: &[f32], mean: f32, rstd: f32) -> (f64, f64) {
    let (mut s_dzx, mut s_dz) = (0.0f64, 0.0f64);
    for (dzb, xb) in dz.chunks(BLOCK).zip(x.chunks(BLOCK)) {
        let (mut a, mut b) = ([0.0f32; LANES], [0.0f32; LANES]);
        let (dzc, xc) = (dzb.chunks_exact(LANES), xb.chunks_exact(LANES));
        for (&g, &v) in dzc.remainder().iter().zip(xc.remainder()) {
            a[0] += g * (v - mean) * rstd;
            b[0] += g;
        }
        for (gs, vs) in dzc.zip(xc) {
            for l in 0..LANES {
                a[l] += gs[l] * (vs[l] - mean) * rstd;
                b[l] += gs[l];
            }
        }
        s_dzx += a.iter().map(|&v| f64::from(v)).sum::<f64>();
        s_dz += b.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
    (s_dzx, s_dz)
}

/// The backward pass of one image: writes every slot of `dx` and returns this
/// image's `(dgamma[c], dbeta[c])` for every channel. `beta` is needed only to
/// recompute `z` for an activation (`None`: zero, which `Identity` ignores).
#[inline(always)]
fn backward_image<A: Act, M: Mask>(
    dy: &[f32],
    x: &[f32],
    dx: &mut [MaybeUninit<f32>],
    d: Dims,
    stats: (&[f32], &[f32]),
    (gamma, beta): (&[f32], Option<&[f32]>),
    (mask, base): (M, usize),
) -> Vec<(f64, f64)> {
    let n = d.cg * d.hw;
    let mut partial = Vec::with_capacity(d.c);
    for (g, ((dyg, xg), dxg)) in dy.chunks(n).zip(x.chunks(n)).zip(dx.chunks_mut(n)).enumerate() {
        let (mean, rstd) = (stats.0[g], stats.1[g]);
        let first = partial.len();
        let channels = dyg.chunks(d.hw).zip(xg.chunks(d.hw)).zip(dxg.chunks_mut(d.hw));
        for (k, ((dyc, xc), dzc)) in channels.enumerate() {
            let c = g * d.cg + k;
            let scale = rstd * gamma[c];
            let shift = beta.map_or(0.0, |b| b[c]) - mean * scale;
            let first = base + c * d.hw;
            partial.push(channel_pass::<A, M>(
                dyc,
                xc,
                dzc,
                (mean, rstd),
                (scale, shift),
                (mask, first),
            ));
        }
        // SAFETY: the channels cut the group into whole runs of `hw`, and
        // `channel_pass` wrote every slot of each.
        let dxg = unsafe { assume_written(dxg) };
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
        for (k, (xc, dxc)) in xg.chunks(d.hw).zip(dxg.chunks_mut(d.hw)).enumerate() {
            let w = gam[k];
            for (o, &v) in dxc.iter_mut().zip(xc) {
                let xhat = (v - mean) * rstd;
                *o = rstd * (*o * w - a - xhat * b);
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
    backward::<Identity, ()>((grad_out, x, saved, groups), (gamma, None), ())
}

/// The gradients of [`group_norm_act_forward`] with `act` and `dropout`:
/// `(dx, dgamma, dbeta)`. `beta` is the forward's (an activation's derivative
/// needs `z`).
pub fn group_norm_act_backward(
    grad_out: &Tensor,
    x: &Tensor,
    saved: &GroupNormSaved,
    groups: usize,
    (gamma, beta): (&Tensor, &Tensor),
    act: Activation,
    dropout: Option<Dropout>,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "group_norm_backward";
    let args = (grad_out, x, saved, groups);
    let mask = |p: Dropout| MaskStream::new(OP, p.p, p.seed);
    match (act, dropout) {
        (Activation::Identity, None) => backward::<Identity, ()>(args, (gamma, None), ()),
        (Activation::Silu, None) => backward::<Silu, ()>(args, (gamma, Some(beta)), ()),
        (Activation::Identity, Some(p)) => backward::<Identity, _>(args, (gamma, None), mask(p)?),
        (Activation::Silu, Some(p)) => backward::<Silu, _>(args, (gamma, Some(beta)), mask(p)?),
    }
}

fn backward<A: Act, M: Mask>(
    (grad_out, x, saved, groups): (&Tensor, &Tensor, &GroupNormSaved, usize),
    (gamma, beta): (&Tensor, Option<&Tensor>),
    mask: M,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "group_norm_backward";
    let d = Dims::new(
        OP,
        x,
        groups,
        &[gamma].into_iter().chain(beta).collect::<Vec<_>>(),
    )?;
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
    let beta = beta.map(Tensor::contiguous);
    let (dys, xs, gs) = (
        dy.as_slice().unwrap_or_default(),
        x.as_slice().unwrap_or_default(),
        gamma.as_slice().unwrap_or_default(),
    );
    let bs = beta.as_ref().map(|b| b.as_slice().unwrap_or_default());
    let mut partials: Vec<Vec<(f64, f64)>> = Vec::new();
    let fill = |dx: &mut [MaybeUninit<f32>]| {
        partials = dx
            .par_chunks_mut(d.image())
            .zip(dys.par_chunks(d.image()).zip(xs.par_chunks(d.image())))
            .zip(saved.mean.par_chunks(groups).zip(saved.rstd.par_chunks(groups)))
            .enumerate()
            .with_min_len(d.min_images_per_task())
            .map(|(b, ((dxi, (dyi, xi)), stats))| {
                simd::widest(
                    #[inline(always)]
                    || backward_image::<A, M>(dyi, xi, dxi, d, stats, (gs, bs), (mask, b * d.image())),
                )
            })
            .collect();
    };
    // SAFETY: the images cut `dx` into whole images, each cut into whole groups,
    // and `backward_image` writes every slot of each group.
    let dx = unsafe { filled_by(xs.len(), fill) };
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
