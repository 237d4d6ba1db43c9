//! The im2col path of 2-D convolution: every convolution becomes GEMMs with the
//! weight, after copying the input into a column matrix.
//!
//! # Forward
//!
//! Per image the convolution is one matrix product `Y_b = W * C_b`, where `W` is
//! the weight seen as a `[Cout, K]` matrix (`K = Cin * KH * KW`) and `C_b = col(x_b)`
//! is the `[K, Hout * Wout]` *im2col* matrix,
//! `C_b[(c, u, v), (i, j)] = x_b[c, i*s + u - p, j*s + v - p]`. The GEMM does the
//! flops at close to the machine's peak; im2col only copies. Any kernel size,
//! stride and padding takes this path.
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
//! # Blocks
//!
//! Inside a group of images (the unit of parallel work, see the parent module),
//! the output columns (image, output pixel) are walked in blocks of about 1 MB of
//! im2col floats (`COL_BLOCK_FLOATS`), built row by row (`im2col/rows.rs`) in the
//! thread's scratch buffer. A block lies either inside one image (a run of whole
//! output rows: the GEMM then reads `dY` and writes `y` in place, through strided
//! views) or covers whole images (its output goes through a scratch matrix). The
//! backward pass shares one im2col per block between `dW` and `dx`. A 1x1
//! convolution with stride 1 and no padding skips im2col: `C_b` is `x_b` itself.

use super::{backward_groups, bias_grad, forward_groups, with_scratch, Epilogue, Geometry, Partial};
use crate::gemm::{gemm, MatMut, MatRef};
use crate::simd;

mod rows;

use rows::{col2im_row, im2col_row, kernel_rows};

/// The forward pass on contiguous slices: `[B, Cout, Hout, Wout]`.
pub(super) fn forward(g: &Geometry, x: &[f32], w: &[f32], epi: Epilogue<'_>) -> Vec<f32> {
    forward_transposed(g, x, &weight_matrix(w, g.cout, g.k()), epi)
}

/// The GEMM operand of the forward pass: the weight as `[K, Cout]` (`K = Cin KH
/// KW`), what [`forward_transposed`] takes.
pub(super) fn weight_matrix(w: &[f32], cout: usize, k: usize) -> Vec<f32> {
    transpose(w, cout, k)
}

/// [`forward`] from the weight already transposed (`wt`, [`weight_matrix`]'s).
pub(super) fn forward_transposed(g: &Geometry, x: &[f32], wt: &[f32], epi: Epilogue<'_>) -> Vec<f32> {
    assert_eq!(wt.len(), g.cout * g.k(), "a weight matrix of another shape");
    forward_groups(g, x, epi, |xc, epi, yc| {
        forward_group(g, xc, wt, epi.bias, yc);
        epi.addend.add_to(g, yc);
    })
}

/// The backward pass on contiguous slices: `(dx, dW, db)`, with `dx` present when
/// `need_dx` and `dW` present (non-empty) when `x` is given.
pub(super) fn backward(
    g: &Geometry,
    x: Option<&[f32]>,
    w: &[f32],
    dy: &[f32],
    need_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let dwt_len = if x.is_some() { g.cout * g.k() } else { 0 };
    let (dx, dwt, db) = backward_groups(g, g.group_images(), x, dy, need_dx, dwt_len, |xc, dyc, dxc| {
        backward_group(g, xc, w, dyc, dxc)
    });
    (dx, transpose(&dwt, g.k(), g.cout), db)
}

/// Floats in one block's im2col matrix (`K x ncols`) that we aim for (1 MB).
///
/// Every GEMM call packs the whole weight (`Cout x K`) besides the block, so small
/// blocks pay that packing again and again. Measured on the benchmark layers
/// (Zen 4, 1 MB L2): 32 K and 64 K floats ran 10-40% slower than 128 K-1 M floats,
/// which were within the (large) noise of each other.
const COL_BLOCK_FLOATS: usize = 256 * 1024;

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

impl Geometry {
    /// A 1x1 convolution with stride 1 and no padding: im2col is the identity.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }
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
