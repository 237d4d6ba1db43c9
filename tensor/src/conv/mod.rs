//! 2-D convolution (NCHW, groups = 1): forward and both gradients, by im2col + GEMM
//! (3x3 convolutions with stride 1, padding 1 and at least 4 channels in and out
//! take Winograd's F(2x2, 3x3) instead on CPUs with AVX-512: `conv/winograd.rs`).
//!
//! # Forward
//!
//! With stride `s` and zero padding `p`,
//!
//! ```text
//! y[b, o, i, j] = bias[o] + sum_{c, u, v} W[o, c, u, v] * x[b, c, i*s + u - p, j*s + v - p]
//! ```
//!
//! (x is zero outside the image). Per image this is one matrix product
//! `Y_b = W * C_b`, where `W` is the weight seen as a `[Cout, K]` matrix
//! (`K = Cin * KH * KW`) and `C_b = col(x_b)` is the `[K, Hout * Wout]` *im2col* matrix,
//! `C_b[(c, u, v), (i, j)] = x_b[c, i*s + u - p, j*s + v - p]`. The GEMM does the
//! flops at close to the machine's peak; im2col only copies.
//!
//! # Backward (the adjoints)
//!
//! `Y_b = W * C_b` is bilinear in `W` and `C_b`, and `C_b` is linear in `x_b`, so
//!
//! ```text
//! dW      = sum_b dY_b * C_b^T                       ([Cout, K])
//! dbias[o] = sum_{b, i, j} dY[b, o, i, j]
//! dC_b    = W^T * dY_b                               ([K, Hout * Wout])
//! dx_b    = col^T(dC_b)                              (col2im)
//! ```
//!
//! where `col^T`, *col2im*, is the adjoint of im2col: every entry of `dC_b` is
//! *added* back to the input pixel it was read from, and entries that were read
//! from the padding are dropped.
//!
//! # Work layout
//!
//! The batch is cut into groups of images, about four per rayon thread, and each
//! group is one task. Inside a group, the output columns (image, output pixel) are
//! walked in blocks of about 1 MB of im2col floats (`COL_BLOCK_FLOATS`), built in a
//! per-thread scratch buffer that every block and every call reuse. For stride 1
//! and an output as wide as the input (the usual "same" convolution), each im2col
//! row of an image is one contiguous copy of the input plane plus a few zeros at
//! the row edges (`Run`); col2im adds the same runs back. A block lies either
//! inside one image (a run of whole output rows: the GEMM then reads `dY` and
//! writes `y` in place, through strided views) or covers whole images (its output
//! goes through a scratch matrix). The backward pass shares one im2col per block
//! between `dW` and `dx`, and each group returns its own partial `dW` and `dbias`,
//! summed at the end. A 1x1 convolution with stride 1 and no padding skips im2col:
//! `C_b` is `x_b` itself.
//!
//! GEMMs run on the calling thread ([`gemm`]); all parallelism is over the batch.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::error::{invalid, Result, TensorError};
use crate::gemm::{gemm, MatMut, MatRef};
use crate::reduce::sum_f64;
use crate::simd;
use crate::tensor::Tensor;

#[cfg(target_arch = "x86_64")]
mod winograd;

/// Turns the Winograd F(2x2, 3x3) path for 3x3 convolutions on or off for the
/// whole process (it is on by default where the CPU has AVX-512), so that
/// benchmarks and tests can compare it with im2col on the same layers.
pub fn set_winograd_enabled(on: bool) {
    #[cfg(target_arch = "x86_64")]
    winograd::set_enabled(on);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = on;
}

/// Whether 3x3 convolutions (stride 1, padding 1, at least 4 channels in and out)
/// take the Winograd path: it is enabled and the CPU has AVX-512.
pub fn winograd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return winograd::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
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

/// Floats in one block's im2col matrix (`K x ncols`) that we aim for (1 MB).
///
/// Every GEMM call packs the whole weight (`Cout x K`) besides the block, so small
/// blocks pay that packing again and again. Measured on the benchmark layers
/// (Zen 4, 1 MB L2): 32 K and 64 K floats ran 10-40% slower than 128 K-1 M floats,
/// which were within the (large) noise of each other.
const COL_BLOCK_FLOATS: usize = 256 * 1024;

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
    /// and derives the output size.
    fn new(op: &'static str, x: &[usize], weight: &[usize], params: Conv2dParams) -> Result<Self> {
        let [batch, cin, h, w] = rank4(op, "input [B, Cin, H, W]", x)?;
        let [cout, wcin, kh, kw] = rank4(op, "weight [Cout, Cin, KH, KW]", weight)?;
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
        if kh == 0 || kw == 0 || kh > h + 2 * pad || kw > w + 2 * pad {
            return Err(invalid(
                op,
                format!(
                    "kernel {kh}x{kw} does not fit the padded input {}x{} (input {x:?}, weight {weight:?}, padding {pad})",
                    h + 2 * pad,
                    w + 2 * pad
                ),
            ));
        }
        Ok(Geometry {
            batch,
            cin,
            h,
            w,
            cout,
            kh,
            kw,
            stride,
            pad,
            oh: (h + 2 * pad - kh) / stride + 1,
            ow: (w + 2 * pad - kw) / stride + 1,
        })
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

    /// A 1x1 convolution with stride 1 and no padding: im2col is the identity.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }

    /// Images per parallel task: about four tasks per rayon thread.
    fn group_images(&self) -> usize {
        let groups = (4 * rayon::current_num_threads()).clamp(1, self.batch.max(1));
        self.batch.div_ceil(groups).max(1)
    }

    /// Output positions `t` (along an axis of `out` positions over `size` input
    /// pixels) whose input `t * stride + offset - pad` is inside the image.
    fn valid(&self, offset: usize, size: usize, out: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.pad);
        let lo = if offset >= p { 0 } else { (p - offset).div_ceil(s) };
        let hi = if size + p <= offset {
            0
        } else {
            out.min((size + p - 1 - offset) / s + 1)
        };
        (lo.min(hi), hi)
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

/// A run of output columns that share one im2col matrix: images
/// `img..img + images` of a group, output rows `oh0..oh0 + rows` of each. A block
/// of several images always covers their whole height.
#[derive(Debug, Clone, Copy)]
struct Block {
    img: usize,
    images: usize,
    oh0: usize,
    rows: usize,
}

impl Block {
    /// Columns of the block's im2col matrix.
    fn cols(&self, g: &Geometry) -> usize {
        self.images * self.rows * g.ow
    }
}

/// Cuts a group of `images` images into blocks of about [`COL_BLOCK_FLOATS`]
/// im2col floats, of balanced sizes.
fn plan(g: &Geometry, images: usize) -> Vec<Block> {
    let target_rows = if g.is_pointwise() {
        g.oh
    } else {
        (COL_BLOCK_FLOATS / (g.k().max(1) * g.ow)).max(1)
    };
    if target_rows >= 2 * g.oh && !g.is_pointwise() {
        let per = balanced(images, target_rows / g.oh);
        (0..images)
            .step_by(per)
            .map(|img| Block {
                img,
                images: per.min(images - img),
                oh0: 0,
                rows: g.oh,
            })
            .collect()
    } else {
        let per = balanced(g.oh, target_rows);
        (0..images)
            .flat_map(|img| {
                (0..g.oh).step_by(per).map(move |oh0| Block {
                    img,
                    images: 1,
                    oh0,
                    rows: per.min(g.oh - oh0),
                })
            })
            .collect()
    }
}

/// Chunk size near `max_chunk` that cuts `n` into equal chunks (the last no larger).
fn balanced(n: usize, max_chunk: usize) -> usize {
    let chunks = n.div_ceil(max_chunk.clamp(1, n.max(1)));
    n.div_ceil(chunks.max(1)).max(1)
}

/// For stride 1 and `Wout == W` ("same" width), the valid part of one image's
/// segment of an im2col row `(c, u, v)` is a single contiguous run of the input
/// plane: output pixel `q = r * W + j` reads plane index `q + shift`. Positions
/// inside the run whose column `j` falls in the padding ("gaps", `gap` of them per
/// row boundary) read a neighbouring row instead and are fixed up separately.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// First and one-past-last segment positions of the run.
    start: usize,
    end: usize,
    /// Plane index of segment position `start`.
    src: usize,
    /// Segment position of the first gap; gaps repeat every `Wout` positions.
    gap_first: usize,
    /// Consecutive positions per gap.
    gap: usize,
}

impl Geometry {
    /// True when im2col rows can be copied as whole [`Run`]s.
    fn runs_merge(&self) -> bool {
        self.stride == 1 && self.ow == self.w
    }

    /// The [`Run`] of row `(u, v)` in a segment covering output rows
    /// `oh0..oh0 + rows` (only when [`Geometry::runs_merge`]), or `None` when no
    /// output pixel of the segment reads inside the image.
    fn run(&self, oh0: usize, rows: usize, u: usize, v: usize) -> Option<Run> {
        let (rlo, rhi) = self.valid(u, self.h, self.oh);
        let (jlo, jhi) = self.valid(v, self.w, self.ow);
        let (r0, r1) = (rlo.max(oh0), rhi.min(oh0 + rows));
        if r0 >= r1 || jlo == jhi {
            return None;
        }
        let start = (r0 - oh0) * self.ow + jlo;
        Some(Run {
            start,
            end: (r1 - 1 - oh0) * self.ow + jhi,
            src: (r0 + u - self.pad) * self.w + jlo + v - self.pad,
            gap_first: (r0 - oh0) * self.ow + jhi,
            gap: self.ow - (jhi - jlo),
        })
    }
}

/// Sets the gaps of `run` inside `seg` (whose rows are `period` long) to zero.
fn zero_gaps(seg: &mut [f32], run: &Run, period: usize) {
    for first in (run.gap_first..run.end).take(run.gap) {
        seg[first..run.end]
            .iter_mut()
            .step_by(period)
            .for_each(|z| *z = 0.0);
    }
}

/// Fills row `(c, u, v)` of a block's im2col matrix from the group's input `x`:
/// `dst[(i, r, j)] = x[img + i, c, (oh0 + r)*s + u - p, j*s + v - p]`, zero in the
/// padding.
fn im2col_row(g: &Geometry, x: &[f32], blk: &Block, (c, u, v): (usize, usize, usize), dst: &mut [f32]) {
    for (i, seg) in dst.chunks_exact_mut(blk.rows * g.ow).enumerate() {
        let plane = &x[((blk.img + i) * g.cin + c) * g.hw_in()..][..g.hw_in()];
        if !g.runs_merge() {
            im2col_rows(g, plane, blk.oh0, (u, v), seg);
            continue;
        }
        match g.run(blk.oh0, blk.rows, u, v) {
            None => seg.fill(0.0),
            Some(run) => {
                seg[..run.start].fill(0.0);
                seg[run.end..].fill(0.0);
                seg[run.start..run.end].copy_from_slice(&plane[run.src..][..run.end - run.start]);
                zero_gaps(seg, &run, g.ow);
            }
        }
    }
}

/// [`im2col_row`] for one image's segment, one output row at a time (any stride).
fn im2col_rows(g: &Geometry, plane: &[f32], oh0: usize, (u, v): (usize, usize), seg: &mut [f32]) {
    let (rlo, rhi) = g.valid(u, g.h, g.oh);
    let (jlo, jhi) = g.valid(v, g.w, g.ow);
    for (r, d) in seg.chunks_exact_mut(g.ow).enumerate() {
        let oh = oh0 + r;
        if oh < rlo || oh >= rhi || jlo == jhi {
            d.fill(0.0);
            continue;
        }
        let src = &plane[(oh * g.stride + u - g.pad) * g.w..][..g.w];
        d[..jlo].fill(0.0);
        d[jhi..].fill(0.0);
        let first = jlo * g.stride + v - g.pad;
        for (dj, sj) in d[jlo..jhi].iter_mut().zip(src[first..].iter().step_by(g.stride)) {
            *dj = *sj;
        }
    }
}

/// The adjoint of [`im2col_row`]: adds row `(c, u, v)` of a block's column
/// gradient back into the group's input gradient `dx`, dropping the padding.
/// (Zeroes the gaps of `src` on the way.)
#[inline(always)]
fn col2im_row(g: &Geometry, src: &mut [f32], blk: &Block, (c, u, v): (usize, usize, usize), dx: &mut [f32]) {
    let hw = g.hw_in();
    for (i, seg) in src.chunks_exact_mut(blk.rows * g.ow).enumerate() {
        let plane = &mut dx[((blk.img + i) * g.cin + c) * hw..][..hw];
        if !g.runs_merge() {
            col2im_rows(g, seg, blk.oh0, (u, v), plane);
        } else if let Some(run) = g.run(blk.oh0, blk.rows, u, v) {
            zero_gaps(seg, &run, g.ow);
            let len = run.end - run.start;
            for (d, &s) in plane[run.src..][..len].iter_mut().zip(&seg[run.start..run.end]) {
                *d += s;
            }
        }
    }
}

/// [`col2im_row`] for one image's segment, one output row at a time (any stride).
#[inline(always)]
fn col2im_rows(g: &Geometry, seg: &[f32], oh0: usize, (u, v): (usize, usize), plane: &mut [f32]) {
    let (rlo, rhi) = g.valid(u, g.h, g.oh);
    let (jlo, jhi) = g.valid(v, g.w, g.ow);
    for (r, s) in seg.chunks_exact(g.ow).enumerate() {
        let oh = oh0 + r;
        if oh < rlo || oh >= rhi || jlo == jhi {
            continue;
        }
        let dst = &mut plane[(oh * g.stride + u - g.pad) * g.w..][..g.w];
        let first = jlo * g.stride + v - g.pad;
        for (d, &sv) in dst[first..].iter_mut().step_by(g.stride).zip(&s[jlo..jhi]) {
            *d += sv;
        }
    }
}

/// The rows `(c, u, v)` of the im2col matrix, in order.
fn kernel_rows(g: &Geometry) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    (0..g.cin).flat_map(move |c| (0..g.kh).flat_map(move |u| (0..g.kw).map(move |v| (c, u, v))))
}

/// The block's im2col matrix `[K, cols]`: a strided view of `x` itself for a
/// pointwise convolution, otherwise built in `scratch`.
fn col_view<'a>(g: &Geometry, x: &'a [f32], blk: &Block, scratch: &'a mut [f32]) -> MatRef<'a> {
    let (k, n) = (g.k(), blk.cols(g));
    if g.is_pointwise() {
        let start = blk.img * g.image_in() + blk.oh0 * g.w;
        return MatRef::new(&x[start..], k, n, g.hw_in(), 1);
    }
    let col = &mut scratch[..k * n];
    for (kidx, dst) in kernel_rows(g).zip(col.chunks_exact_mut(n.max(1))) {
        im2col_row(g, x, blk, kidx, dst);
    }
    MatRef::row_major(col, k, n)
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

/// Where in a group's output (or output gradient) a single-image block starts.
fn out_start(g: &Geometry, blk: &Block) -> usize {
    blk.img * g.image_out() + blk.oh0 * g.ow
}

/// Forward pass of one group: `x` and `y` are the group's images; `wt` is the
/// weight transposed, `[K, Cout]`, so that the GEMM packs it with straight copies.
fn forward_group(g: &Geometry, x: &[f32], wt: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let blocks = plan(g, y.len() / g.image_out());
    let max_cols = blocks.iter().map(|b| b.cols(g)).max().unwrap_or(0);
    let col_len = if g.is_pointwise() { 0 } else { g.k() * max_cols };
    let multi = blocks.iter().any(|b| b.images > 1);
    let out_len = if multi { g.cout * max_cols } else { 0 };
    with_scratch([col_len, out_len], |[col, out]| {
        forward_blocks(g, &blocks, x, wt, bias, y, col, out)
    });
}

/// The block loop of [`forward_group`], with its scratch buffers.
#[allow(clippy::too_many_arguments)]
fn forward_blocks(
    g: &Geometry,
    blocks: &[Block],
    x: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    col: &mut [f32],
    out: &mut [f32],
) {
    let wm = MatRef::row_major(wt, g.k(), g.cout).t();
    for blk in blocks {
        let n = blk.cols(g);
        let cm = col_view(g, x, blk, col);
        if blk.images == 1 {
            let start = out_start(g, blk);
            gemm(
                1.0,
                wm,
                cm,
                0.0,
                MatMut::new(&mut y[start..], g.cout, n, g.hw_out(), 1),
            );
            if let Some(bias) = bias {
                for (o, &b) in bias.iter().enumerate() {
                    y[start + o * g.hw_out()..][..n].iter_mut().for_each(|v| *v += b);
                }
            }
        } else {
            gemm(
                1.0,
                wm,
                cm,
                0.0,
                MatMut::row_major(&mut out[..g.cout * n], g.cout, n),
            );
            scatter(g, &out[..g.cout * n], blk, bias, y);
        }
    }
}

/// Copies a multi-image block's output `[Cout, images * HWout]` into the group's
/// `y` (`[images, Cout, HWout]`), adding the bias.
fn scatter(g: &Geometry, out: &[f32], blk: &Block, bias: Option<&[f32]>, y: &mut [f32]) {
    let (hw, n) = (g.hw_out(), blk.cols(g));
    for o in 0..g.cout {
        let b = bias.map_or(0.0, |b| b[o]);
        for i in 0..blk.images {
            let dst = &mut y[((blk.img + i) * g.cout + o) * hw..][..hw];
            for (d, &s) in dst.iter_mut().zip(&out[o * n + i * hw..][..hw]) {
                *d = s + b;
            }
        }
    }
}

/// The block's output gradient as a `[Cout, cols]` matrix: a strided view of the
/// group's `dy` for a single-image block, else gathered into `scratch`.
fn dy_view<'a>(g: &Geometry, dy: &'a [f32], blk: &Block, scratch: &'a mut [f32]) -> MatRef<'a> {
    let (hw, n) = (g.hw_out(), blk.cols(g));
    if blk.images == 1 {
        return MatRef::new(&dy[out_start(g, blk)..], g.cout, n, hw, 1);
    }
    let buf = &mut scratch[..g.cout * n];
    for (o, row) in buf.chunks_exact_mut(n).enumerate() {
        for (i, d) in row.chunks_exact_mut(hw).enumerate() {
            d.copy_from_slice(&dy[((blk.img + i) * g.cout + o) * hw..][..hw]);
        }
    }
    MatRef::row_major(buf, g.cout, n)
}

/// `dY^T`, `[cols, Cout]` row-major, from the block's `[Cout, cols]` view: the
/// right-hand side of `dW^T = col * dY^T`, with the contiguous rows a GEMM reads
/// in place.
fn transpose_dy<'a>(dym: &MatRef<'_>, g: &Geometry, scratch: &'a mut [f32]) -> MatRef<'a> {
    let (cout, n) = (g.cout, dym.cols());
    let buf = &mut scratch[..n * cout];
    for o in 0..cout {
        for (j, &v) in dym.row(o).iter().enumerate() {
            buf[j * cout + o] = v;
        }
    }
    MatRef::row_major(buf, n, cout)
}

/// One group's share of the weight and bias gradients.
struct Partial {
    /// The weight gradient in the path's own layout (im2col: `dW^T`, `[K, Cout]`);
    /// empty when not asked for.
    dw: Vec<f32>,
    db: Vec<f32>,
}

/// The transpose of a row-major `rows x cols` matrix, row-major `cols x rows`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for (i, row) in m.chunks_exact(cols.max(1)).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            t[j * rows + i] = v;
        }
    }
    t
}

/// Backward pass of one group. `x` (the group's input) is given when the weight
/// gradient is wanted, `dx` (zeroed) when the input gradient is; `w` is read only
/// for the input gradient.
fn backward_group(
    g: &Geometry,
    x: Option<&[f32]>,
    w: &[f32],
    dy: &[f32],
    mut dx: Option<&mut [f32]>,
) -> Partial {
    let blocks = plan(g, dy.len() / g.image_out());
    let max_cols = blocks.iter().map(|b| b.cols(g)).max().unwrap_or(0);
    let scratch_len = if g.is_pointwise() { 0 } else { g.k() * max_cols };
    let col_len = if x.is_some() { scratch_len } else { 0 };
    let dcol_len = if dx.is_some() { scratch_len } else { 0 };
    let multi = blocks.iter().any(|b| b.images > 1);
    let dy_len = if multi { g.cout * max_cols } else { 0 };
    let dyt_len = if x.is_some() { g.cout * max_cols } else { 0 };
    // The weight gradient is accumulated transposed, `[K, Cout]` (see `backward_block`).
    let mut dwt = vec![0.0; if x.is_some() { g.cout * g.k() } else { 0 }];
    with_scratch([col_len, dcol_len, dy_len, dyt_len], |[col, dcol, dy_buf, dyt]| {
        for blk in &blocks {
            let scratch = [&mut *col, &mut *dcol, &mut *dy_buf, &mut *dyt];
            backward_block(g, blk, x, w, dy, dx.as_deref_mut(), &mut dwt, scratch);
        }
    });
    Partial {
        dw: dwt,
        db: bias_grad(g, dy),
    }
}

/// One block of [`backward_group`]: accumulates `dW^T` into `dwt` (`[K, Cout]`)
/// and adds into `dx`. `scratch` holds the im2col matrix, the column gradient, the
/// gathered `dy` and `dY^T`.
///
/// `dW = dY col^T` is computed as its transpose, `dW^T = col dY^T`: then the big
/// operand, `col`, is the left one, read by rows where im2col just wrote it, and
/// only `dY` (9 times smaller for a 3x3 kernel) is copied, into `dY^T`.
#[allow(clippy::too_many_arguments)]
fn backward_block(
    g: &Geometry,
    blk: &Block,
    x: Option<&[f32]>,
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dwt: &mut [f32],
    [col, dcol, dy_buf, dyt]: [&mut [f32]; 4],
) {
    let (k, cout, n) = (g.k(), g.cout, blk.cols(g));
    let dym = dy_view(g, dy, blk, dy_buf);
    if let Some(x) = x {
        let cm = col_view(g, x, blk, col);
        let dyt = transpose_dy(&dym, g, dyt);
        gemm(1.0, cm, dyt, 1.0, MatMut::row_major(dwt, k, cout));
    }
    if let Some(dx) = dx {
        let wt = MatRef::row_major(w, cout, k).t();
        if g.is_pointwise() {
            let start = blk.img * g.image_in() + blk.oh0 * g.w;
            gemm(
                1.0,
                wt,
                dym,
                0.0,
                MatMut::new(&mut dx[start..], k, n, g.hw_in(), 1),
            );
        } else {
            let dc = &mut dcol[..k * n];
            gemm(1.0, wt, dym, 0.0, MatMut::row_major(dc, k, n));
            simd::widest(
                #[inline(always)]
                || {
                    for (kidx, src) in kernel_rows(g).zip(dc.chunks_exact_mut(n)) {
                        col2im_row(g, src, blk, kidx, dx);
                    }
                },
            );
        }
    }
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

/// The forward pass on contiguous slices, parallel over groups of images.
fn forward(g: &Geometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if winograd::applies(g) {
        return winograd::forward(g, x, w, bias);
    }
    let wt = transpose(w, g.cout, g.k());
    forward_groups(g, x, |xc, yc| forward_group(g, xc, &wt, bias, yc))
}

/// Runs `group(x, y)` on every group of images in parallel, with the group's
/// slices of the input `x` and of the output, which it must fill; returns the
/// output, `[B, Cout, Hout, Wout]`.
fn forward_groups(g: &Geometry, x: &[f32], group: impl Fn(&[f32], &mut [f32]) + Sync) -> Vec<f32> {
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
            group(xc, yc);
        });
    y
}

/// The backward pass on contiguous slices: returns `(dx, dW, db)`, with `dx`
/// present when `need_dx` and `dW` present (non-empty) when `x` is given.
fn backward(
    g: &Geometry,
    x: Option<&[f32]>,
    w: &[f32],
    dy: &[f32],
    need_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    if winograd::applies(g) {
        return winograd::backward(g, x, w, dy, need_dx);
    }
    let dwt_len = if x.is_some() { g.cout * g.k() } else { 0 };
    let (dx, dwt, db) = backward_groups(g, x, dy, need_dx, dwt_len, |xc, dyc, dxc| {
        backward_group(g, xc, w, dyc, dxc)
    });
    (dx, transpose(&dwt, g.k(), g.cout), db)
}

/// Runs `group(x, dy, dx)` on every group of images in parallel, with the group's
/// slices of `x` (when given), `dy` and, when `need_dx`, the zeroed `dx`; returns
/// `dx` and the groups' weight gradients (each `dw_len` long) and bias gradients,
/// summed.
fn backward_groups(
    g: &Geometry,
    x: Option<&[f32]>,
    dy: &[f32],
    need_dx: bool,
    dw_len: usize,
    group: impl Fn(Option<&[f32]>, &[f32], Option<&mut [f32]>) -> Partial + Sync,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let gi = g.group_images();
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
    let mut dw = vec![0.0; dw_len];
    let mut db = vec![0.0; g.cout];
    for p in &partials {
        dw.iter_mut().zip(&p.dw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(&p.db).for_each(|(a, b)| *a += b);
    }
    (need_dx.then_some(dx), dw, db)
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
        let g = Geometry::new("conv2d", self.shape(), weight.shape(), params)?;
        if let Some(b) = bias {
            check_shape("conv2d", b.shape(), &[g.cout])?;
        }
        let (x, w, b) = (
            self.contiguous(),
            weight.contiguous(),
            bias.map(Tensor::contiguous),
        );
        let y = forward(&g, slice(&x), slice(&w), b.as_ref().map(slice));
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
