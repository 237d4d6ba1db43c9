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
//! panels. The transforms run on AVX-512 vectors of 16 tiles of one tile row: the
//! even and odd columns a tile reads are separated with one permute each, and
//! output tiles are interleaved back the same way. The weight gradient's `dM` is
//! written with each tile's channels contiguous instead, 16 channels a vector,
//! gathered from 16 planes. Only CPUs with AVX-512 take this path ([`applies`]);
//! the others use im2col.

use std::arch::x86_64::*;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{backward_groups, bias_grad, forward_groups, with_scratch, Geometry, Partial};
use crate::gemm::{gemm, MatMut, MatRef};

/// Positions of the 4x4 Winograd domain.
const XI: usize = 16;
/// Floats of transformed input and products per block, at most (512 KB, half of
/// a Zen 4 L2): the GEMMs then read what the transform just wrote from cache.
const BLOCK_FLOATS: usize = 128 * 1024;
/// Columns of the short GEMM kernel's panels: a block's tile count should fill them.
const PANEL: usize = 32;
/// Tiles per AVX-512 vector.
const LANES: usize = 16;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the Winograd path on or off for the whole process (on by default where
/// the CPU has AVX-512), so that benchmarks and tests can compare it with im2col.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the path is enabled and the CPU has AVX-512F.
pub(super) fn available() -> bool {
    ENABLED.load(Ordering::Relaxed) && is_x86_feature_detected!("avx512f")
}

/// Whether convolutions of this geometry take the Winograd path: a 3x3 kernel,
/// stride 1, padding 1, enough channels for the GEMMs to dominate, AVX-512.
pub(super) fn applies(g: &Geometry) -> bool {
    applies_to_shape(g) && available()
}

/// The geometry part of [`applies`].
fn applies_to_shape(g: &Geometry) -> bool {
    g.kh == 3 && g.kw == 3 && g.stride == 1 && g.pad == 1 && g.cin >= 4 && g.cout >= 4
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

    /// Tile rows per block (of `rows` in all): as many as keep the block's
    /// transformed input and products within [`BLOCK_FLOATS`], then fewer until
    /// the tiles fill at least 90% of the GEMM kernel's panels.
    fn rows_per_block(&self, g: &Geometry, rows: usize) -> usize {
        let per_row = XI * (g.cin + g.cout) * self.tw;
        let fill = |r: usize| (r * self.tw) as f64 / ((r * self.tw).div_ceil(PANEL) * PANEL) as f64;
        let most = (BLOCK_FLOATS / per_row.max(1)).clamp(1, rows.max(1));
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

/// The blocks of a group with `images` images.
fn blocks(g: &Geometry, t: &Tiling, images: usize) -> impl Iterator<Item = Block> {
    let rows = images * t.th;
    let per = t.rows_per_block(g, rows);
    (0..rows).step_by(per).map(move |r0| Block {
        r0,
        r1: (r0 + per).min(rows),
    })
}

/// `V[xi][o][c] = (G g G^T)[xi]` for the filters `w[o][c]` (`[outer, inner, 3, 3]`),
/// `[16, outer, inner]`.
fn weight_transform(w: &[f32], outer: usize, inner: usize) -> Vec<f32> {
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
    for oc in 0..n {
        let (o, c) = (oc / cin, oc % cin);
        let m = |i: usize, j: usize| dvt[(i * 4 + j) * n + c * cout + o];
        let cols: [[f32; 3]; 4] = std::array::from_fn(|j| gt([m(0, j), m(1, j), m(2, j), m(3, j)]));
        for u in 0..3 {
            let row = gt([cols[0][u], cols[1][u], cols[2][u], cols[3][u]]);
            dw[oc * 9 + u * 3..][..3].copy_from_slice(&row);
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

/// The checks every entry point makes before running the transforms: the CPU has
/// AVX-512F (their `unsafe` blocks rely on it), and the output planes are as large as
/// the input planes (their load and store masks are computed for one width).
fn check(g: &Geometry) {
    assert!(
        is_x86_feature_detected!("avx512f"),
        "Winograd path without AVX-512F"
    );
    assert!(
        applies_to_shape(g) && (g.oh, g.ow) == (g.h, g.w),
        "Winograd path for {g:?}"
    );
}

/// Forward pass (`y = conv(x, w) + bias`) on contiguous slices.
pub(super) fn forward(g: &Geometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    check(g);
    let v = weight_transform(w, g.cout, g.cin);
    forward_groups(g, x, |xc, yc| {
        correlate(g, Channels::forward(g), &v, xc, bias, yc)
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

/// `out = correlate(src, filters) + bias` for one group of images, with the
/// filters already transformed (`v`, `[16, outer, inner]`): `src` is
/// `[images, inner, h, w]` and `out` `[images, outer, h, w]`.
fn correlate(g: &Geometry, ch: Channels, v: &[f32], src: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    let t = Tiling::new(g);
    let images = out.len() / (ch.outer * g.hw_out());
    let max_tiles = t.rows_per_block(g, images * t.th) * t.tw;
    with_scratch([XI * ch.inner * max_tiles, XI * ch.outer * max_tiles], |[u, m]| {
        for blk in blocks(g, &t, images) {
            let n = blk.tiles(&t);
            let (u, m) = (&mut u[..XI * ch.inner * n], &mut m[..XI * ch.outer * n]);
            // SAFETY: the CPU has AVX-512F: `forward` and `backward`, the only callers, `check` it.
            unsafe { input_transform(g, &t, blk, ch.inner, src, u) };
            products(v, u, m, (ch.outer, ch.inner, n), 0.0);
            // SAFETY: as above.
            unsafe { output_transform(g, &t, blk, ch.outer, m, bias, out) };
        }
    });
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
    let dv_len = if x.is_some() { XI * g.cout * g.cin } else { 0 };
    let (dx, dv, db) = backward_groups(g, x, dy, need_dx, dv_len, |xc, dyc, dxc| {
        if let Some(dxc) = dxc {
            correlate(g, Channels::input_grad(g), &wt, dyc, None, dxc);
        }
        Partial {
            dw: xc.map_or_else(Vec::new, |xc| weight_products(g, xc, dyc)),
            db: bias_grad(g, dyc),
        }
    });
    let dw = if x.is_some() {
        weight_grad(&dv, g.cout, g.cin)
    } else {
        Vec::new()
    };
    (dx, dw, db)
}

/// One group's `dV^T[xi] = sum_t U[xi][., t] dM[xi][., t]^T`, `[16, Cin, Cout]`:
/// computed transposed so that the right-hand side, `dM^T` (tiles x Cout), is the
/// operand with contiguous rows.
fn weight_products(g: &Geometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let t = Tiling::new(g);
    let images = dy.len() / g.image_out();
    let max_tiles = t.rows_per_block(g, images * t.th) * t.tw;
    let mut dvt = vec![0.0; XI * g.cin * g.cout];
    with_scratch([XI * g.cin * max_tiles, XI * g.cout * max_tiles], |[u, dmt]| {
        for blk in blocks(g, &t, images) {
            let n = blk.tiles(&t);
            let (u, dmt) = (&mut u[..XI * g.cin * n], &mut dmt[..XI * g.cout * n]);
            // SAFETY: the CPU has AVX-512F: `forward` and `backward`, the only callers, `check` it.
            unsafe {
                input_transform(g, &t, blk, g.cin, x, u);
                grad_transform(g, &t, blk, g.cout, dy, dmt);
            }
            products(u, dmt, &mut dvt, (g.cin, n, g.cout), 1.0);
        }
    });
    dvt
}

/// Permute indices that pick the even and the odd floats of two vectors.
const EVEN: [i32; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
const ODD: [i32; 16] = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31];
/// Permute indices that interleave two vectors, first and second halves.
const ZIP_LO: [i32; 16] = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
const ZIP_HI: [i32; 16] = [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31];

/// The lanes `l` of a 16-float vector with `0 <= start + l < len`.
fn lane_mask(start: isize, len: usize) -> __mmask16 {
    let lo = (-start).clamp(0, 16);
    let hi = (len as isize - start).clamp(0, 16);
    if hi <= lo {
        return 0;
    }
    let below_hi = ((1u32 << hi) - 1) as u16;
    let below_lo = ((1u32 << lo) - 1) as u16;
    below_hi & !below_lo
}

/// A run of 16 tiles, `tj0..tj0 + 16`, of a tile row, with the masks of its loads
/// and stores, computed once per block rather than once per access.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    tj0: usize,
    /// Lanes that are tiles of the row (`tj0 + l < tw`).
    tiles: __mmask16,
    /// Loads from an input row (`w` wide) at `2 tj0 - 1 + [0, 16, 2, 18]`.
    input: [__mmask16; 4],
    /// Loads or stores on an output row (`ow` wide) at `2 tj0 + [0, 16]`.
    output: [__mmask16; 2],
}

impl Chunk {
    /// The chunks of a tile row, for `w`-wide input and `ow`-wide output rows.
    fn all(t: &Tiling, w: usize, ow: usize) -> Vec<Chunk> {
        (0..t.tw)
            .step_by(LANES)
            .map(|tj0| {
                let (i0, o0) = (2 * tj0 as isize - 1, 2 * tj0 as isize);
                Chunk {
                    tj0,
                    tiles: lane_mask(tj0 as isize, t.tw),
                    input: [0, 16, 2, 18].map(|d| lane_mask(i0 + d, w)),
                    output: [0, 16].map(|d| lane_mask(o0 + d, ow)),
                }
            })
            .collect()
    }
}

/// `row[start + l]` in each lane `l` of `mask`, zero in the others.
///
/// # Safety
/// The CPU has AVX-512F, and every lane `l` of `mask` has `0 <= start + l <
/// row.len()` (`mask` is `lane_mask(start, row.len())` or a subset of it). A masked
/// load touches only the lanes of its mask (faults are suppressed elsewhere), so
/// the pointer may point outside `row` (`wrapping_offset`).
#[inline(always)]
unsafe fn load(row: &[f32], start: isize, mask: __mmask16) -> __m512 {
    debug_assert_eq!(mask & !lane_mask(start, row.len()), 0);
    // SAFETY: the caller's contract.
    unsafe { _mm512_maskz_loadu_ps(mask, row.as_ptr().wrapping_offset(start)) }
}

/// Writes each lane `l` of `mask` from `v` to `row[start + l]`.
///
/// # Safety
/// The CPU has AVX-512F, and every lane `l` of `mask` has `start + l < row.len()`.
#[inline(always)]
unsafe fn store(row: &mut [f32], start: usize, mask: __mmask16, v: __m512) {
    debug_assert_eq!(mask & !lane_mask(start as isize, row.len()), 0);
    // SAFETY: the caller's contract.
    unsafe { _mm512_mask_storeu_ps(row.as_mut_ptr().wrapping_add(start), mask, v) }
}

/// Indices for a two-vector permute.
#[target_feature(enable = "avx512f")]
#[inline]
fn indices(idx: &[i32; 16]) -> __m512i {
    // SAFETY: `idx` is 16 readable i32s.
    unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) }
}

/// `(x[2 l], x[2 l + 1])` for `x = row[start..start + 32]`, loaded with the masks
/// of its two halves.
///
/// # Safety
/// As [`load`], for both halves (`start` and `start + 16`).
#[inline(always)]
unsafe fn split(row: &[f32], start: isize, [m_lo, m_hi]: [__mmask16; 2]) -> (__m512, __m512) {
    // SAFETY: the caller's contract.
    unsafe {
        let (lo, hi) = (load(row, start, m_lo), load(row, start + 16, m_hi));
        (
            _mm512_permutex2var_ps(lo, indices(&EVEN), hi),
            _mm512_permutex2var_ps(lo, indices(&ODD), hi),
        )
    }
}

/// `(B^T d B)` of a 4x4 `d` given as `d[i][j]`, one tile per lane:
/// first down the columns (`B^T d`), then along the rows.
#[target_feature(enable = "avx512f")]
#[inline]
fn bt_d_b(d: [[__m512; 4]; 4]) -> [[__m512; 4]; 4] {
    let (add, sub) = (_mm512_add_ps, _mm512_sub_ps);
    let bt = |v: [__m512; 4]| [sub(v[0], v[2]), add(v[1], v[2]), sub(v[2], v[1]), sub(v[1], v[3])];
    let cols: [[__m512; 4]; 4] = std::array::from_fn(|j| bt([d[0][j], d[1][j], d[2][j], d[3][j]]));
    std::array::from_fn(|i| bt([cols[0][i], cols[1][i], cols[2][i], cols[3][i]]))
}

/// Row `y` of a plane (zero for `y` outside `0..h`), as the four vectors a chunk
/// of tiles reads from it: lane `l` of vector `j` is column `2 (tj0 + l) + j - 1`.
/// The odd and even columns from `2 tj0 - 1` give `j = 0, 1`; those from
/// `2 tj0 + 1`, `j = 2, 3`.
///
/// # Safety
/// The CPU has AVX-512F, and `chunk` was made for rows `w` wide.
#[inline(always)]
unsafe fn input_row(plane: &[f32], (h, w): (usize, usize), y: usize, chunk: &Chunk) -> [__m512; 4] {
    // SAFETY: the caller's contract; `chunk.input` holds the masks of these loads
    // for rows `w` wide.
    unsafe {
        if y >= h {
            return [_mm512_setzero_ps(); 4];
        }
        let row = &plane[y * w..][..w];
        let first = 2 * chunk.tj0 as isize - 1;
        let [m0, m1, m2, m3] = chunk.input;
        let (d0, d1) = split(row, first, [m0, m1]);
        let (d2, d3) = split(row, first + 2, [m2, m3]);
        [d0, d1, d2, d3]
    }
}

/// Writes `U[xi][c][t] = (B^T d B)[xi]` for every channel `c < channels` and tile
/// `t` of the block, `u` being `[16, channels, tiles]` ("channel-major": each
/// channel's tiles contiguous); `src` is `[images, channels, h, w]`.
///
/// Tile row `ti` reads input rows `2 ti - 1 ..= 2 ti + 2`; its last two are the
/// next tile row's first two, so they are loaded once and carried over.
#[target_feature(enable = "avx512f")]
fn input_transform(g: &Geometry, t: &Tiling, blk: Block, channels: usize, src: &[f32], u: &mut [f32]) {
    let (hw, n) = (g.h * g.w, blk.tiles(t));
    let chunks = Chunk::all(t, g.w, g.ow);
    for c in 0..channels {
        for chunk in &chunks {
            // The bottom two rows of the previous tile row (of the same image unless
            // `ti == 0`).
            let mut carried: Option<[[__m512; 4]; 2]> = None;
            for r in blk.r0..blk.r1 {
                let (img, ti) = (r / t.th, r % t.th);
                let plane = &src[(img * channels + c) * hw..][..hw];
                let col = (r - blk.r0) * t.tw + chunk.tj0;
                // SAFETY: this function has AVX-512F; `chunks` were made for
                // rows `w` wide, and tile lanes end at `col + tw - tj0 <= n`.
                unsafe {
                    let row = |y: usize| input_row(plane, (g.h, g.w), y, chunk);
                    let top = match carried {
                        Some(rows) if ti > 0 => rows,
                        _ => [row((2 * ti).wrapping_sub(1)), row(2 * ti)],
                    };
                    let bottom = [row(2 * ti + 1), row(2 * ti + 2)];
                    carried = Some(bottom);
                    let tr = bt_d_b([top[0], top[1], bottom[0], bottom[1]]);
                    for (xi, v) in tr.iter().flatten().enumerate() {
                        store(&mut u[(xi * channels + c) * n..][..n], col, chunk.tiles, *v);
                    }
                }
            }
        }
    }
}

/// Writes `dM[xi][t][o] = (A dY A^T)[xi]` for every tile `t` of the block and
/// output channel `o < channels`, `dm` being `[16, tiles, channels]`
/// ("tile-major": each tile's channels contiguous, the layout the weight
/// gradient's products read); `dy` is `[images, channels, oh, ow]`, and pixels past
/// the output's edge count as zero. Sixteen channels at a time: each of a
/// tile's four `dY` pixels is gathered from sixteen planes.
#[target_feature(enable = "avx512f")]
fn grad_transform(g: &Geometry, t: &Tiling, blk: Block, channels: usize, dy: &[f32], dm: &mut [f32]) {
    let (oh, ow, n) = (g.oh, g.ow, blk.tiles(t));
    let ohw = oh * ow;
    assert!(
        LANES * ohw <= i32::MAX as usize,
        "plane too large for 32-bit gather offsets"
    );
    let idx = indices(&std::array::from_fn(|l| (l * ohw) as i32));
    let zero = _mm512_setzero_ps();
    let (add, sub) = (_mm512_add_ps, _mm512_sub_ps);
    // (A v) for a 2-vector: the rows of A = [1 0; 1 1; 1 -1; 0 -1] applied to it.
    let a = |v0: __m512, v1: __m512| [v0, add(v0, v1), sub(v0, v1), sub(zero, v1)];
    for r in blk.r0..blk.r1 {
        let (img, ti) = (r / t.th, r % t.th);
        for tj in 0..t.tw {
            let tile = (r - blk.r0) * t.tw + tj;
            for o0 in (0..channels).step_by(LANES) {
                let mask = lane_mask(0, channels - o0);
                let planes = &dy[(img * channels + o0) * ohw..];
                let mut e = [[zero; 2]; 2];
                for (a_row, ea) in e.iter_mut().enumerate() {
                    for (b_col, eab) in ea.iter_mut().enumerate() {
                        let (y, x) = (2 * ti + a_row, 2 * tj + b_col);
                        if y < oh && x < ow {
                            // SAFETY: AVX-512F. Lane `l` of `mask` reads
                            // `planes[l * ohw + y * ow + x]`, pixel (y, x) of channel
                            // `o0 + l < channels` of this image: inside `dy`.
                            *eab = unsafe {
                                _mm512_mask_i32gather_ps::<4>(
                                    zero,
                                    mask,
                                    idx,
                                    planes.as_ptr().add(y * ow + x),
                                )
                            };
                        }
                    }
                }
                // Down the columns, then along the rows.
                let cols = [a(e[0][0], e[1][0]), a(e[0][1], e[1][1])];
                for i in 0..4 {
                    for (j, v) in a(cols[0][i], cols[1][i]).into_iter().enumerate() {
                        let row = &mut dm[((i * 4 + j) * n + tile) * channels..][..channels];
                        // SAFETY: AVX-512F; the lanes of `mask` end at `channels`.
                        unsafe { store(row, o0, mask, v) };
                    }
                }
            }
        }
    }
}

/// Writes `out[img][o][2 ti + a][2 tj + b] = (A^T M A)[a][b] + bias[o]` for every
/// channel `o < channels` and tile of the block, `m` being `[16, channels, tiles]`
/// and `out` `[images, channels, oh, ow]`.
#[target_feature(enable = "avx512f")]
fn output_transform(
    g: &Geometry,
    t: &Tiling,
    blk: Block,
    channels: usize,
    m: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let (oh, ow, n) = (g.oh, g.ow, blk.tiles(t));
    let chunks = Chunk::all(t, g.w, g.ow);
    let (add, sub) = (_mm512_add_ps, _mm512_sub_ps);
    // (A^T v) for a 4-vector: [v0 + v1 + v2, v1 - v2 - v3].
    let at = |v: [__m512; 4]| [add(add(v[0], v[1]), v[2]), sub(sub(v[1], v[2]), v[3])];
    let (zip_lo, zip_hi) = (indices(&ZIP_LO), indices(&ZIP_HI));
    for o in 0..channels {
        let b = _mm512_set1_ps(bias.map_or(0.0, |b| b[o]));
        for r in blk.r0..blk.r1 {
            let (img, ti) = (r / t.th, r % t.th);
            let plane = &mut out[(img * channels + o) * oh * ow..][..oh * ow];
            for chunk in &chunks {
                let col = (r - blk.r0) * t.tw + chunk.tj0;
                // SAFETY: AVX-512F; tile lanes end at `col + tw - tj0 <= n`.
                let mv: [__m512; 16] = std::array::from_fn(|xi| unsafe {
                    load(&m[(xi * channels + o) * n..][..n], col as isize, chunk.tiles)
                });
                let cols: [[__m512; 2]; 4] =
                    std::array::from_fn(|j| at([mv[j], mv[4 + j], mv[8 + j], mv[12 + j]]));
                let rows: [[__m512; 2]; 2] =
                    std::array::from_fn(|a| at([cols[0][a], cols[1][a], cols[2][a], cols[3][a]]));
                for (a_row, [y0, y1]) in rows.into_iter().enumerate() {
                    let y = 2 * ti + a_row;
                    if y >= oh {
                        continue;
                    }
                    let (y0, y1) = (add(y0, b), add(y1, b));
                    let row = &mut plane[y * ow..][..ow];
                    let [m_lo, m_hi] = chunk.output;
                    // SAFETY: AVX-512F; `chunk.output` holds the masks of rows
                    // `ow` wide at 2 tj0 and 2 tj0 + 16.
                    unsafe {
                        store(row, 2 * chunk.tj0, m_lo, _mm512_permutex2var_ps(y0, zip_lo, y1));
                        store(
                            row,
                            2 * chunk.tj0 + 16,
                            m_hi,
                            _mm512_permutex2var_ps(y0, zip_hi, y1),
                        );
                    }
                }
            }
        }
    }
}
