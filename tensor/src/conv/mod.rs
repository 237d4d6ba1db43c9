//! 2-D convolution (NCHW, groups = 1): forward and both gradients, with the shape
//! checks, the parallel drivers and the scratch buffers that its two algorithms
//! share.
//!
//! # Forward
//!
//! With stride `s` and zero padding `p`,
//!
//! ```text
//! y[b, o, i, j] = bias[o] + sum_{c, u, v} W[o, c, u, v] * x[b, c, i*s + u - p, j*s + v - p]
//! ```
//!
//! (x is zero outside the image), plus, for [`Tensor::conv2d_add`], an addend
//! written in the same pass (`conv/epilogue.rs`). Two algorithms compute it and
//! its gradients:
//!
//! - im2col (`conv/im2col.rs`): copy the input into a column matrix and multiply
//!   it by the weight, for any kernel, stride and padding;
//! - Winograd's F(2x2, 3x3) (`conv/winograd.rs`): 2.25x fewer multiplications,
//!   for 3x3 convolutions with stride 1, padding 1 and at least 4 channels in and
//!   out, at every SIMD level ([`crate::simd`]); [`set_winograd_enabled`] turns it off.
//!
//! # Work layout
//!
//! Both paths cut the batch into groups of images, about four per rayon thread,
//! and run each group as one task (`forward_groups`, `backward_groups`); inside a
//! group each path walks its own blocks through a per-thread scratch buffer that
//! every block and every call reuse (`with_scratch`). In the backward
//! pass each group returns its own partial `dW` and `dbias`, summed at the end.
//! GEMMs run on the calling thread ([`gemm`](crate::gemm)); all parallelism is
//! over the batch.
//!
//! # Inference
//!
//! Each forward pass first rearranges the filters for its path; a model that
//! does not change can do that once ([`PreparedWeights`], `conv/prepared.rs`).

use std::cell::RefCell;

use rayon::prelude::*;

use crate::error::{invalid, Result, TensorError};
use crate::layout::checked_numel;
use crate::reduce::sum_f64;
use crate::tensor::Tensor;

mod epilogue;
mod im2col;
mod prepared;
mod winograd;

use epilogue::{Addend, Epilogue};

pub use prepared::PreparedWeights;

/// Turns the Winograd F(2x2, 3x3) path for 3x3 convolutions on or off for the
/// whole process (it is on by default), so that benchmarks and tests can compare
/// it with im2col on the same layers.
pub fn set_winograd_enabled(on: bool) {
    winograd::set_enabled(on);
}

/// Whether 3x3 convolutions (stride 1, padding 1, at least 4 channels in and out)
/// take the Winograd path: it is enabled.
pub fn winograd_available() -> bool {
    winograd::available()
}

/// Stride and zero padding of a convolution, the same along both spatial axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Step between neighbouring output pixels, in input pixels (at least 1).
    pub stride: usize,
    /// Zeros added on each side of both spatial axes.
    pub padding: usize,
}

/// Gradients of a convolution.
#[derive(Debug, Clone)]
pub struct Conv2dGrads {
    /// Gradient with respect to the input `x`, `[B, Cin, H, W]`; `None` when not asked for.
    pub input: Option<Tensor>,
    /// Gradient with respect to the weight, `[Cout, Cin, KH, KW]`.
    pub weight: Tensor,
    /// Gradient with respect to the bias, `[Cout]`.
    pub bias: Tensor,
}

/// The sizes of one convolution, checked once.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    batch: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

impl Geometry {
    /// Checks the shapes of `x` (`[B, Cin, H, W]`) and `weight` (`[Cout, Cin, KH, KW]`)
    /// and derives the output size; an error too when a shape, the padded input
    /// or the output is too large ([`checked_numel`]).
    fn new(op: &'static str, x: &[usize], weight: &[usize], params: Conv2dParams) -> Result<Self> {
        let [batch, cin, h, w] = rank4(op, "input [B, Cin, H, W]", x)?;
        let [cout, wcin, kh, kw] = rank4(op, "weight [Cout, Cin, KH, KW]", weight)?;
        checked_numel(op, x)?;
        checked_numel(op, weight)?;
        if cin != wcin {
            return Err(TensorError::ShapeMismatch {
                op,
                lhs: x.to_vec(),
                rhs: weight.to_vec(),
            });
        }
        let Conv2dParams { stride, padding: pad } = params;
        if stride == 0 {
            return Err(invalid(op, "stride must be at least 1"));
        }
        let padded = |size: usize| pad.checked_mul(2).and_then(|p| size.checked_add(p));
        let (Some(ph), Some(pw)) = (padded(h), padded(w)) else {
            return Err(invalid(
                op,
                format!("padding {pad} overflows usize (input {x:?})"),
            ));
        };
        if kh == 0 || kw == 0 || kh > ph || kw > pw {
            return Err(invalid(
                op,
                format!(
                    "kernel {kh}x{kw} does not fit the padded input {ph}x{pw} (input {x:?}, weight {weight:?}, padding {pad})"
                ),
            ));
        }
        let g = Geometry {
            batch,
            cin,
            h,
            w,
            cout,
            kh,
            kw,
            stride,
            pad,
            oh: (ph - kh) / stride + 1,
            ow: (pw - kw) / stride + 1,
        };
        checked_numel(op, &g.out_shape())?;
        Ok(g)
    }

    /// Rows of the im2col matrix: `Cin * KH * KW`.
    fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    /// Pixels of one input plane.
    fn hw_in(&self) -> usize {
        self.h * self.w
    }

    /// Pixels of one output plane.
    fn hw_out(&self) -> usize {
        self.oh * self.ow
    }

    /// Elements of one input image.
    fn image_in(&self) -> usize {
        self.cin * self.hw_in()
    }

    /// Elements of one output image.
    fn image_out(&self) -> usize {
        self.cout * self.hw_out()
    }

    /// The output shape `[B, Cout, Hout, Wout]`.
    fn out_shape(&self) -> [usize; 4] {
        [self.batch, self.cout, self.oh, self.ow]
    }

    /// The input shape `[B, Cin, H, W]`.
    fn in_shape(&self) -> [usize; 4] {
        [self.batch, self.cin, self.h, self.w]
    }

    /// The weight shape `[Cout, Cin, KH, KW]`.
    fn weight_shape(&self) -> [usize; 4] {
        [self.cout, self.cin, self.kh, self.kw]
    }

    /// Images per parallel task: about four tasks per rayon thread.
    fn group_images(&self) -> usize {
        let groups = (4 * rayon::current_num_threads()).clamp(1, self.batch.max(1));
        self.batch.div_ceil(groups).max(1)
    }
}

/// The four sizes of a rank-4 shape, or an error naming `what`.
fn rank4(op: &'static str, what: &str, shape: &[usize]) -> Result<[usize; 4]> {
    shape
        .try_into()
        .map_err(|_| invalid(op, format!("{what} must have rank 4, shape is {shape:?}")))
}

/// Checks that `t` has exactly `want` as its shape.
fn check_shape(op: &'static str, t: &[usize], want: &[usize]) -> Result<()> {
    if t == want {
        Ok(())
    } else {
        Err(TensorError::ShapeMismatch {
            op,
            lhs: t.to_vec(),
            rhs: want.to_vec(),
        })
    }
}

thread_local! {
    /// Scratch space of each thread, reused by every block of every call (im2col
    /// matrices, column gradients, gathered outputs): fresh megabyte-sized buffers
    /// per task would cost page faults and zeroing on every call. It only grows.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `N` disjoint scratch slices of lengths `lens` from this thread's
/// [`SCRATCH`]. Their contents are left over from earlier use: `f` must write
/// before it reads. `f` must not re-enter (it runs no rayon work).
fn with_scratch<const N: usize, R>(lens: [usize; N], f: impl FnOnce([&mut [f32]; N]) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut buf = cell.borrow_mut();
        let total = lens.iter().sum();
        if buf.len() < total {
            buf.resize(total, 0.0);
        }
        let mut rest = &mut buf[..total];
        let parts = lens.map(|len| {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
            rest = tail;
            head
        });
        f(parts)
    })
}

/// One group's share of the weight and bias gradients.
struct Partial {
    /// The weight gradient in the path's own layout (im2col: `dW^T`, `[K, Cout]`);
    /// empty when not asked for.
    dw: Vec<f32>,
    db: Vec<f32>,
}

/// `dbias[o] = sum over the images and pixels of dy[., o, ., .]`.
fn bias_grad(g: &Geometry, dy: &[f32]) -> Vec<f32> {
    let mut db = vec![0.0; g.cout];
    for image in dy.chunks_exact(g.image_out()) {
        for (d, plane) in db.iter_mut().zip(image.chunks_exact(g.hw_out())) {
            *d += sum_f64(plane) as f32;
        }
    }
    db
}

/// The forward pass on contiguous slices, by the path that applies.
fn forward(g: &Geometry, x: &[f32], w: &[f32], epi: Epilogue<'_>) -> Vec<f32> {
    if winograd::applies(g) {
        return winograd::forward(g, x, w, epi);
    }
    im2col::forward(g, x, w, epi)
}

/// Runs `group(x, epilogue, y)` on every group of images in parallel, with the
/// group's slices of the input `x`, of the epilogue's addend and of the output,
/// which it must fill; returns the output, `[B, Cout, Hout, Wout]`.
fn forward_groups(
    g: &Geometry,
    x: &[f32],
    epi: Epilogue<'_>,
    group: impl Fn(&[f32], Epilogue<'_>, &mut [f32]) + Sync,
) -> Vec<f32> {
    let mut y = vec![0.0; g.batch * g.image_out()];
    if y.is_empty() {
        return y;
    }
    let gi = g.group_images();
    y.par_chunks_mut(gi * g.image_out())
        .enumerate()
        .for_each(|(i, yc)| {
            let images = yc.len() / g.image_out();
            let xc = &x[i * gi * g.image_in()..][..images * g.image_in()];
            group(xc, epi.images(g, i * gi, images), yc);
        });
    y
}

/// The backward pass on contiguous slices, by the path that applies: returns
/// `(dx, dW, db)`, with `dx` present when `need_dx` and `dW` present (non-empty)
/// when `x` is given.
fn backward(
    g: &Geometry,
    x: Option<&[f32]>,
    w: &[f32],
    dy: &[f32],
    need_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    if winograd::applies(g) {
        return winograd::backward(g, x, w, dy, need_dx);
    }
    im2col::backward(g, x, w, dy, need_dx)
}

/// Runs `group(x, dy, dx)` on every group of `gi` images in parallel (usually
/// [`Geometry::group_images`]), with the group's slices of `x` (when given), `dy`
/// and, when `need_dx`, the zeroed `dx`; returns `dx` and the groups' weight
/// gradients (each `dw_len` long) and bias gradients, summed.
fn backward_groups(
    g: &Geometry,
    gi: usize,
    x: Option<&[f32]>,
    dy: &[f32],
    need_dx: bool,
    dw_len: usize,
    group: impl Fn(Option<&[f32]>, &[f32], Option<&mut [f32]>) -> Partial + Sync,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let gi = gi.max(1);
    let (ii, io) = (gi * g.image_in(), gi * g.image_out());
    let run = |i: usize, dxc: Option<&mut [f32]>| {
        let dyc = &dy[i * io..(i * io + io).min(dy.len())];
        let images = dyc.len() / g.image_out().max(1);
        let xc = x.map(|x| &x[i * ii..][..images * g.image_in()]);
        group(xc, dyc, dxc)
    };
    let groups = g.batch.div_ceil(gi);
    let mut dx = vec![0.0; if need_dx { g.batch * g.image_in() } else { 0 }];
    let partials: Vec<Partial> = if need_dx && ii > 0 && io > 0 {
        dx.par_chunks_mut(ii)
            .enumerate()
            .map(|(i, dxc)| run(i, Some(dxc)))
            .collect()
    } else if io > 0 {
        (0..groups).into_par_iter().map(|i| run(i, None)).collect()
    } else {
        Vec::new()
    };
    let (dws, dbs): (Vec<_>, Vec<_>) = partials.into_iter().map(|p| (p.dw, p.db)).unzip();
    (
        need_dx.then_some(dx),
        sum_parts(dws, dw_len),
        sum_parts(dbs, g.cout),
    )
}

/// The element-wise sum of `parts` in order, into the first one (no zeroed
/// accumulator: the Winograd weight gradient's parts are 4 MB at 256
/// channels); `len` zeros when there are none.
fn sum_parts(parts: Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    let mut parts = parts.into_iter();
    let mut sum = parts.next().unwrap_or_else(|| vec![0.0; len]);
    for p in parts {
        sum.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
    }
    sum
}

/// Row-major slice of a tensor that `contiguous()` returned.
fn slice(t: &Tensor) -> &[f32] {
    t.as_slice().expect("contiguous() returns a contiguous tensor")
}

impl Tensor {
    /// 2-D convolution (cross-correlation, as in PyTorch) of `self`, `[B, Cin, H, W]`,
    /// with `weight`, `[Cout, Cin, KH, KW]`, plus an optional `bias`, `[Cout]`.
    /// Returns `[B, Cout, Hout, Wout]` with `Hout = (H + 2p - KH) / s + 1`.
    pub fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, params: Conv2dParams) -> Result<Tensor> {
        self.conv2d_add_opt(weight, bias, None, params)
    }

    /// `self.conv2d(weight, bias, params) + addend` (the same values bit for bit)
    /// in one pass: the addend is added as the output is written. `addend` has
    /// the output's shape `[B, Cout, Hout, Wout]` (a residual) or `[B, Cout, 1, 1]`
    /// (one value per image and channel, such as a time embedding).
    pub fn conv2d_add(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        addend: &Tensor,
        params: Conv2dParams,
    ) -> Result<Tensor> {
        self.conv2d_add_opt(weight, bias, Some(addend), params)
    }

    /// [`Tensor::conv2d_add`] with the addend optional.
    fn conv2d_add_opt(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        addend: Option<&Tensor>,
        params: Conv2dParams,
    ) -> Result<Tensor> {
        let w = weight.contiguous();
        self.conv2d_with(weight.shape(), params, bias, addend, |g, x, epi| {
            forward(g, x, slice(&w), epi)
        })
    }

    /// The checks and layout of a forward pass, around `run(geometry, x, epilogue)`
    /// on contiguous slices (which returns `[B, Cout, Hout, Wout]`).
    fn conv2d_with(
        &self,
        weight_shape: &[usize],
        params: Conv2dParams,
        bias: Option<&Tensor>,
        addend: Option<&Tensor>,
        run: impl FnOnce(&Geometry, &[f32], Epilogue<'_>) -> Vec<f32>,
    ) -> Result<Tensor> {
        let g = Geometry::new("conv2d", self.shape(), weight_shape, params)?;
        if let Some(b) = bias {
            check_shape("conv2d", b.shape(), &[g.cout])?;
        }
        let (x, b) = (self.contiguous(), bias.map(Tensor::contiguous));
        let a = addend.map(Tensor::contiguous);
        let epi = Epilogue {
            bias: b.as_ref().map(slice),
            addend: match &a {
                Some(a) => Addend::new(&g, a.shape(), slice(a))?,
                None => Addend::None,
            },
        };
        let y = run(&g, slice(&x), epi);
        Ok(Tensor::from_contiguous(y, &g.out_shape()))
    }
}

/// All gradients of `y = x.conv2d(weight, bias, params)` given `grad_out = dL/dy`,
/// in one pass that builds each im2col block once for both `dW` and `dx` (on the
/// Winograd path, the transformed input for `dW` and the transformed `dy` for `dx`).
/// `input` is computed only when `need_input_grad`.
pub fn conv2d_backward(
    x: &Tensor,
    weight: &Tensor,
    grad_out: &Tensor,
    params: Conv2dParams,
    need_input_grad: bool,
) -> Result<Conv2dGrads> {
    let g = Geometry::new("conv2d_backward", x.shape(), weight.shape(), params)?;
    check_shape("conv2d_backward", grad_out.shape(), &g.out_shape())?;
    let (x, w, dy) = (x.contiguous(), weight.contiguous(), grad_out.contiguous());
    let (dx, dw, db) = backward(&g, Some(slice(&x)), slice(&w), slice(&dy), need_input_grad);
    Ok(Conv2dGrads {
        input: dx.map(|d| Tensor::from_contiguous(d, &g.in_shape())),
        weight: Tensor::from_contiguous(dw, &g.weight_shape()),
        bias: Tensor::from_contiguous(db, &[g.cout]),
    })
}

/// The gradient with respect to the input, `[B, Cin, H, W]` = `input_shape`:
/// `dx_b = col2im(W^T * dY_b)` (on the Winograd path, the correlation of `dy` with
/// the filters turned 180 degrees).
pub fn conv2d_backward_input(
    grad_out: &Tensor,
    weight: &Tensor,
    input_shape: &[usize],
    params: Conv2dParams,
) -> Result<Tensor> {
    let g = Geometry::new("conv2d_backward_input", input_shape, weight.shape(), params)?;
    check_shape("conv2d_backward_input", grad_out.shape(), &g.out_shape())?;
    let (w, dy) = (weight.contiguous(), grad_out.contiguous());
    let (dx, _, _) = backward(&g, None, slice(&w), slice(&dy), true);
    let dx = dx.expect("backward returns dx when asked");
    Ok(Tensor::from_contiguous(dx, &g.in_shape()))
}

/// The gradients with respect to the weight (`weight_shape`) and the bias:
/// `(dW, dbias) = (sum_b dY_b * col(x_b)^T, sum of dY over b, h, w)`.
pub fn conv2d_backward_weight(
    x: &Tensor,
    grad_out: &Tensor,
    weight_shape: &[usize],
    params: Conv2dParams,
) -> Result<(Tensor, Tensor)> {
    let g = Geometry::new("conv2d_backward_weight", x.shape(), weight_shape, params)?;
    check_shape("conv2d_backward_weight", grad_out.shape(), &g.out_shape())?;
    let (x, dy) = (x.contiguous(), grad_out.contiguous());
    // The weight's values do not enter dW or dbias: no weight is needed.
    let (_, dw, db) = backward(&g, Some(slice(&x)), &[], slice(&dy), false);
    Ok((
        Tensor::from_contiguous(dw, &g.weight_shape()),
        Tensor::from_contiguous(db, &[g.cout]),
    ))
}
