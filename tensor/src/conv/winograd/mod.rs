//! 3x3 convolutions (stride 1, padding 1) by Winograd's minimal filtering,
//! F(2x2, 3x3): 16 multiplications per 2x2 output tile instead of 36.
//!
//! # The algorithm (Lavin and Gray 2016)
//!
//! Cut the output into 2x2 tiles. Tile `(ti, tj)` reads the 4x4 input patch `d`
//! whose top-left pixel is `(2 ti - 1, 2 tj - 1)` (zero outside the image). For a
//! 3x3 filter `g`,
//!
//! ```text
//! Y = A^T [ (G g G^T) (.) (B^T d B) ] A        (.) = element-wise product
//!
//! B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1 1  1  0]
//!       [0  1  1  0]         [1/2  1/2  1/2]           [0 1 -1 -1]
//!       [0 -1  1  0]         [1/2 -1/2  1/2]
//!       [0  1  0 -1]         [ 0    0    1 ]
//! ```
//!
//! Summed over input channels, each of the 16 positions `xi` of the 4x4 "Winograd
//! domain" is one matrix product over all tiles at once:
//!
//! ```text
//! U[xi][c][t] = (B^T d_{c,t} B)[xi]        input transform, [Cin, tiles] per xi
//! V[xi][o][c] = (G g_{o,c} G^T)[xi]        weight transform, [Cout, Cin] per xi
//! M[xi]       = V[xi] U[xi]                16 GEMMs, [Cout, tiles] each
//! y_{o,t}     = A^T M[.][o][t] A           output transform
//! ```
//!
//! The GEMMs do `16 Cout Cin` multiply-adds per tile where im2col does
//! `36 Cout Cin`: 2.25x fewer. The transforms are additions only.
//!
//! # Backward
//!
//! - Input gradient: `dx` is the correlation of `dy` (padded by 1) with the filter
//!   turned by 180 degrees and its channel axes swapped,
//!   `W'[c][o][u][v] = W[o][c][2-u][2-v]`: the same forward algorithm.
//! - Weight gradient: `Y` is linear in `V`, and `V` in `g`. With `dM = A dY A^T`
//!   (`A` is 4x2) the gradient of each product is `dV[xi] = sum_t dM[xi][., t] U[xi][., t]^T`,
//!   one GEMM per `xi` over all tiles (computed as its transpose, whose
//!   right-hand side `dM^T` the transform writes with contiguous rows), and
//!   `dg = G^T dV G`.
//!
//! # Work layout
//!
//! As for im2col, the batch is cut into groups of images, one rayon task each
//! (the parent module's drivers). Inside a group, the tile rows of all its images
//! are walked in blocks whose transformed inputs and products fit in half of L2
//! (down to one tile row) and whose tile counts fill the GEMM kernel's 32-column
//! panels. The transforms run on vectors of neighbouring tiles of one tile row
//! (16 with AVX-512, 8 with AVX2, 4 at the portable level): the even and odd
//! columns a tile reads are separated with one permute each, and output tiles
//! are interleaved back the same way. The weight gradient's `dM` is
//! written with each tile's channels contiguous instead, gathered from
//! several planes (`transforms.rs`). The weight gradient has blocks and groups
//! of its own: each block's products accumulate into its group's `dV^T`, which
//! for wide layers is larger than L2, so its blocks are about as large as
//! `dV^T` and its groups hold enough images for such a block.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{backward_groups, bias_grad, forward_groups, with_scratch, Epilogue, Geometry, Partial};
use crate::gemm::{gemm, MatMut, MatRef};
use crate::simd::{self, Kernel, Vector};

mod transforms;

/// Positions of the 4x4 Winograd domain.
const XI: usize = 16;
/// Floats of transformed input and products per block, at most (512 KB, half of
/// a Zen 4 L2): the GEMMs then read what the transform just wrote from cache.
const BLOCK_FLOATS: usize = 128 * 1024;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the Winograd path on or off for the whole process (on by default), so
/// that benchmarks and tests can compare it with im2col.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the path is enabled.
pub(super) fn available() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether convolutions of this geometry take the Winograd path: a 3x3 kernel,
/// stride 1, padding 1, enough channels for the GEMMs to dominate, and enabled.
pub(super) fn applies(g: &Geometry) -> bool {
    applies_to_shape(g) && available()
}

/// The geometry part of [`applies`].
fn applies_to_shape(g: &Geometry) -> bool {
    takes_filters([g.cout, g.cin, g.kh, g.kw], g.stride, g.pad)
}

/// Whether filters of `shape` (`[Cout, Cin, KH, KW]`) with this stride and
/// padding are the path's: the geometry test, which needs no input size.
pub(super) fn takes_filters([cout, cin, kh, kw]: [usize; 4], stride: usize, pad: usize) -> bool {
    kh == 3 && kw == 3 && stride == 1 && pad == 1 && cin >= 4 && cout >= 4
}

/// Tiles whose transforms (`16 (Cin + Cout)` floats each) are as large as the
/// weight gradient's `dV^T` (`16 Cin Cout` floats): the block size at which its
/// products spend as much on their inputs as on their accumulator.
fn balanced_tiles(g: &Geometry) -> usize {
    g.cin * g.cout / (g.cin + g.cout).max(1)
}

/// The tiling of one output plane: `th x tw` tiles of 2x2 pixels.
#[derive(Debug, Clone, Copy)]
struct Tiling {
    th: usize,
    tw: usize,
}

impl Tiling {
    fn new(g: &Geometry) -> Self {
        Tiling {
            th: g.oh.div_ceil(2),
            tw: g.ow.div_ceil(2),
        }
    }

    /// Tile rows per block of the weight gradient's products (of `rows` in all):
    /// at least [`Tiling::rows_per_block`]'s, and enough tiles that the block's
    /// transforms (`16 (Cin + Cout)` floats a tile) are about as large as `dV^T`
    /// (`16 Cin Cout` floats), which every block's products read and write once.
    /// With 32 tiles a block, a 256 -> 256 layer moved 8 MB of `dV^T` through
    /// the caches for every 67 MFLOP.
    fn weight_rows_per_block(&self, g: &Geometry, rows: usize) -> usize {
        let balanced = balanced_tiles(g).div_ceil(self.tw.max(1));
        self.rows_per_block(g, rows).max(balanced).min(rows.max(1))
    }

    /// Tile rows per block (of `rows` in all): as many as keep the block's
    /// transformed input and products within [`BLOCK_FLOATS`], but at least as
    /// many as fill one of the GEMM kernel's panels (two vectors wide), then fewer
    /// until the tiles fill at least 90% of the panels. Without that floor, layers
    /// of many channels got blocks of a few tiles: 8 of a panel's 32 columns at
    /// 16x16 with 512 + 256 channels, where the GEMMs ran at a quarter of their width.
    fn rows_per_block(&self, g: &Geometry, rows: usize) -> usize {
        let per_row = XI * (g.cin + g.cout) * self.tw;
        let panel = crate::gemm::short::panel_width();
        let fill = |r: usize| (r * self.tw) as f64 / ((r * self.tw).div_ceil(panel) * panel) as f64;
        let one_panel = panel.div_ceil(self.tw.max(1));
        let most = (BLOCK_FLOATS / per_row.max(1))
            .max(one_panel)
            .clamp(1, rows.max(1));
        (1..=most).rev().find(|&r| fill(r) >= 0.9).unwrap_or(most)
    }
}

/// A run of tile rows `r0..r1` of a group (tile row `r` is row `r % th` of image
/// `r / th`); tile `(r, tj)` is column `(r - r0) * tw + tj` of the block's matrices.
#[derive(Debug, Clone, Copy)]
struct Block {
    r0: usize,
    r1: usize,
}

impl Block {
    fn tiles(&self, t: &Tiling) -> usize {
        (self.r1 - self.r0) * t.tw
    }
}

/// The blocks of a group with `images` images, `per` tile rows each (the last
/// one fewer).
fn blocks(t: &Tiling, images: usize, per: usize) -> impl Iterator<Item = Block> {
    let rows = images * t.th;
    (0..rows).step_by(per.max(1)).map(move |r0| Block {
        r0,
        r1: (r0 + per).min(rows),
    })
}

/// `V[xi][o][c] = (G g G^T)[xi]` for the filters `w[o][c]` (`[outer, inner, 3, 3]`),
/// `[16, outer, inner]`: what [`forward_transformed`] takes.
pub(super) fn weight_transform(w: &[f32], outer: usize, inner: usize) -> Vec<f32> {
    let mut v = vec![0.0; XI * outer * inner];
    // (G g)[i][.] for a 3-vector: the rows of G applied to it.
    let g_rows = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    for (oc, g) in w.chunks_exact(9).enumerate() {
        let cols: [[f32; 4]; 3] = std::array::from_fn(|col| g_rows(g[col], g[3 + col], g[6 + col]));
        for i in 0..4 {
            let row = g_rows(cols[0][i], cols[1][i], cols[2][i]);
            for (j, &val) in row.iter().enumerate() {
                v[(i * 4 + j) * outer * inner + oc] = val;
            }
        }
    }
    v
}

/// The filters of the input gradient, `W'[c][o][u][v] = W[o][c][2-u][2-v]`.
fn turned(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for o in 0..cout {
        for c in 0..cin {
            let (src, dst) = ((o * cin + c) * 9, (c * cout + o) * 9);
            for k in 0..9 {
                t[dst + k] = w[src + 8 - k];
            }
        }
    }
    t
}

/// `dg = G^T dV G` for every filter, from `dvt`, `dV^T` as `[16, cin, cout]`;
/// the result is `[cout, cin, 3, 3]`.
fn weight_grad(dvt: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let n = cout * cin;
    let mut dw = vec![0.0; n * 9];
    // (G^T m) for a 4-vector: G's columns applied to it.
    let gt = |m: [f32; 4]| {
        [
            m[0] + 0.5 * (m[1] + m[2]),
            0.5 * (m[1] - m[2]),
            0.5 * (m[1] + m[2]) + m[3],
        ]
    };
    // In `dV^T`'s order (o fastest), so that its 16 planes are read sequentially.
    for co in 0..n {
        let (c, o) = (co / cout, co % cout);
        let m = |i: usize, j: usize| dvt[(i * 4 + j) * n + co];
        let cols: [[f32; 3]; 4] = std::array::from_fn(|j| gt([m(0, j), m(1, j), m(2, j), m(3, j)]));
        let filter = &mut dw[(o * cin + c) * 9..][..9];
        for u in 0..3 {
            let row = gt([cols[0][u], cols[1][u], cols[2][u], cols[3][u]]);
            filter[u * 3..][..3].copy_from_slice(&row);
        }
    }
    dw
}

/// One product per Winograd position: `C[xi] = A[xi] B[xi] + beta C[xi]`, with
/// `A[xi]` `m x k` and `B[xi]` `k x n`, all row-major. `B`'s rows are contiguous,
/// as the short-product GEMM kernel wants.
fn products(a: &[f32], b: &[f32], c: &mut [f32], (m, k, n): (usize, usize, usize), beta: f32) {
    for xi in 0..XI {
        let am = MatRef::row_major(&a[xi * m * k..][..m * k], m, k);
        let bm = MatRef::row_major(&b[xi * k * n..][..k * n], k, n);
        gemm(
            1.0,
            am,
            bm,
            beta,
            MatMut::row_major(&mut c[xi * m * n..][..m * n], m, n),
        );
    }
}

/// The check every entry point makes before running the transforms: the output
/// planes are as large as the input planes (their load and store masks are
/// computed for one width).
fn check(g: &Geometry) {
    assert!(
        applies_to_shape(g) && (g.oh, g.ow) == (g.h, g.w),
        "Winograd path for {g:?}"
    );
}

/// Forward pass (`y = conv(x, w) + bias + addend`) on contiguous slices.
pub(super) fn forward(g: &Geometry, x: &[f32], w: &[f32], epi: Epilogue<'_>) -> Vec<f32> {
    forward_transformed(g, x, &weight_transform(w, g.cout, g.cin), epi)
}

/// [`forward`] from the filters already transformed (`v`, [`weight_transform`]'s).
pub(super) fn forward_transformed(g: &Geometry, x: &[f32], v: &[f32], epi: Epilogue<'_>) -> Vec<f32> {
    check(g);
    assert_eq!(
        v.len(),
        XI * g.cout * g.cin,
        "transformed filters of another shape"
    );
    forward_groups(g, x, epi, |xc, epi, yc| {
        correlate(g, Channels::forward(g), v, xc, epi, yc)
    })
}

/// The sizes of one Winograd correlation: `inner` channels in, `outer` out, of
/// `h x w` planes (`oh x ow` for the output, the same for stride 1, padding 1).
#[derive(Debug, Clone, Copy)]
struct Channels {
    inner: usize,
    outer: usize,
}

impl Channels {
    fn forward(g: &Geometry) -> Self {
        Channels {
            inner: g.cin,
            outer: g.cout,
        }
    }

    fn input_grad(g: &Geometry) -> Self {
        Channels {
            inner: g.cout,
            outer: g.cin,
        }
    }
}

/// `out = correlate(src, filters) + bias + addend` for one group of images, with the
/// filters already transformed (`v`, `[16, outer, inner]`): `src` is
/// `[images, inner, h, w]` and `out` `[images, outer, h, w]`.
fn correlate(g: &Geometry, ch: Channels, v: &[f32], src: &[f32], epi: Epilogue<'_>, out: &mut [f32]) {
    let t = Tiling::new(g);
    let images = out.len() / (ch.outer * g.hw_out());
    let per = t.rows_per_block(g, images * t.th);
    let max_tiles = per * t.tw;
    with_scratch([XI * ch.inner * max_tiles, XI * ch.outer * max_tiles], |[u, m]| {
        simd::dispatch(Correlate {
            g,
            t,
            ch,
            v,
            src,
            epi,
            out,
            images,
            per,
            u,
            m,
        })
    });
}

/// [`correlate`]'s block loop, as a kernel for [`simd::dispatch`]: `u` and `m`
/// are scratch for one block's transformed input and products.
struct Correlate<'a> {
    g: &'a Geometry,
    t: Tiling,
    ch: Channels,
    v: &'a [f32],
    src: &'a [f32],
    epi: Epilogue<'a>,
    out: &'a mut [f32],
    images: usize,
    /// Tile rows per block.
    per: usize,
    u: &'a mut [f32],
    m: &'a mut [f32],
}

impl Kernel for Correlate<'_> {
    type Output = ();

    #[inline(always)]
    fn run<V: Vector>(self, vec: V) {
        let Correlate {
            g,
            t,
            ch,
            v,
            src,
            epi,
            out,
            images,
            per,
            u,
            m,
        } = self;
        for blk in blocks(&t, images, per) {
            let n = blk.tiles(&t);
            let (u, m) = (&mut u[..XI * ch.inner * n], &mut m[..XI * ch.outer * n]);
            transforms::input(vec, g, &t, blk, ch.inner, src, u);
            products(v, u, m, (ch.outer, ch.inner, n), 0.0);
            transforms::output(vec, g, &t, blk, ch.outer, m, epi, out);
        }
    }
}

/// Backward pass on contiguous slices: `(dx, dW, db)` as in im2col's `backward`.
pub(super) fn backward(
    g: &Geometry,
    x: Option<&[f32]>,
    w: &[f32],
    dy: &[f32],
    need_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    check(g);
    let wt = if need_dx {
        weight_transform(&turned(w, g.cout, g.cin), g.cin, g.cout)
    } else {
        Vec::new()
    };
    let (dx, _, db) = backward_groups(g, g.group_images(), None, dy, need_dx, 0, |_, dyc, dxc| {
        if let Some(dxc) = dxc {
            correlate(g, Channels::input_grad(g), &wt, dyc, Epilogue::default(), dxc);
        }
        Partial {
            dw: Vec::new(),
            db: bias_grad(g, dyc),
        }
    });
    let dw = x.map_or_else(Vec::new, |x| {
        weight_grad(&weight_products_parallel(g, x, dy), g.cout, g.cin)
    });
    (dx, dw, db)
}

/// `dV^T` summed over the batch, from groups of images in parallel, each
/// group's products accumulated in a `dV^T` of its own (`16 Cin Cout` floats,
/// 4 MB at 256 channels) and the groups' sums added at the end. The groups are
/// those of the input gradient unless the layer is wide for its planes: then a
/// group holds enough images for [`Tiling::weight_rows_per_block`]'s block
/// (but no fewer groups than threads, while the batch allows), since every
/// group pays for a `dV^T` whatever its size. cifar10's 8x8 layers at batch 8
/// had eight groups of 16 tiles each.
fn weight_products_parallel(g: &Geometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let t = Tiling::new(g);
    let balanced = balanced_tiles(g).div_ceil((t.th * t.tw).max(1));
    let per_thread = g.batch.div_ceil(rayon::current_num_threads().max(1));
    let gi = balanced.min(per_thread).max(g.group_images());
    let dv_len = XI * g.cin * g.cout;
    let (_, dvt, _) = backward_groups(g, gi, Some(x), dy, false, dv_len, |xc, dyc, _| Partial {
        dw: xc.map_or_else(Vec::new, |xc| weight_products(g, xc, dyc)),
        db: Vec::new(),
    });
    dvt
}

/// One group's `dV^T[xi] = sum_t U[xi][., t] dM[xi][., t]^T`, `[16, Cin, Cout]`:
/// computed transposed so that the right-hand side, `dM^T` (tiles x Cout), is the
/// operand with contiguous rows.
fn weight_products(g: &Geometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let t = Tiling::new(g);
    let images = dy.len() / g.image_out();
    let per = t.weight_rows_per_block(g, images * t.th);
    let max_tiles = per * t.tw;
    let mut dvt = vec![0.0; XI * g.cin * g.cout];
    with_scratch([XI * g.cin * max_tiles, XI * g.cout * max_tiles], |[u, dmt]| {
        simd::dispatch(WeightProducts {
            g,
            t,
            x,
            dy,
            images,
            per,
            u,
            dmt,
            dvt: &mut dvt,
        })
    });
    dvt
}

/// [`weight_products`]' block loop, as a kernel for [`simd::dispatch`].
struct WeightProducts<'a> {
    g: &'a Geometry,
    t: Tiling,
    x: &'a [f32],
    dy: &'a [f32],
    images: usize,
    /// Tile rows per block.
    per: usize,
    u: &'a mut [f32],
    dmt: &'a mut [f32],
    dvt: &'a mut [f32],
}

impl Kernel for WeightProducts<'_> {
    type Output = ();

    #[inline(always)]
    fn run<V: Vector>(self, v: V) {
        let WeightProducts {
            g,
            t,
            x,
            dy,
            images,
            per,
            u,
            dmt,
            dvt,
        } = self;
        for blk in blocks(&t, images, per) {
            let n = blk.tiles(&t);
            let (u, dmt) = (&mut u[..XI * g.cin * n], &mut dmt[..XI * g.cout * n]);
            transforms::input(v, g, &t, blk, g.cin, x, u);
            transforms::grad(v, g, &t, blk, g.cout, dy, dmt);
            products(u, dmt, dvt, (g.cin, n, g.cout), 1.0);
        }
    }
}
