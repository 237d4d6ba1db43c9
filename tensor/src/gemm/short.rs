//! A GEMM for short, wide products that reads its operands in place:
//! `C = A B + beta C` where `B` and `C` have contiguous rows, computed tile by tile
//! by a micro-kernel over the SIMD layer ([`crate::simd`]), with no packing.
//!
//! Why a second GEMM: in a convolution `A` is the weight (`Cout x K`, a few rows)
//! and `B` the im2col matrix (`K x pixels`), built moments before with every row
//! contiguous, which is all a micro-kernel needs. A general GEMM (matrixmultiply)
//! first copies `B` into packed panels; with 32 output channels each element of `B`
//! feeds only 64 flops, so that copy was a quarter to a third of the product's time.
//! Winograd's products have the same shape (`Cout x Cin` times `Cin x tiles`, the
//! right-hand side just written by the input transform) and take this kernel too.
//!
//! The micro-kernel computes an `R x NR` tile of `C` in `2 R` vector registers
//! (`NR` = two vectors: 32 columns with AVX-512, 16 with AVX2, 8 at the portable
//! level), written once over the [`Vector`] layer:
//!
//! ```text
//! for kk in 0..k:
//!     b0, b1 = B[kk, j..j+NR/2], B[kk, j+NR/2..j+NR]      two loads (masked at the right edge)
//!     for r in 0..R:
//!         a = broadcast A[i+r, kk]                          any strides: A may be a transposed view
//!         acc[r][0] += a * b0;  acc[r][1] += a * b1           fused multiply-adds
//! C[i+r, j..j+NR] = acc[r] + beta C[i+r, j..j+NR]
//! ```
//!
//! `R` is as large as the registers allow: `2 R` accumulators, two rows of `B`
//! and a broadcast must fit, so 8 rows with AVX-512's 32 registers and 6 with
//! AVX2's 16. Twelve to sixteen independent accumulators hide the FMA latency;
//! `B`'s panel is reused from cache by every row block before moving right.
//! `applies` keeps the kernel to products where that reuse works: `A` small
//! enough to stay in L2, or `C` at most two panels wide (then `A` is read at most
//! twice), and `B` in cache.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{MatMut, MatRef};
use crate::simd::{self, Kernel, Vector};

/// The tile of `C` one micro-kernel call computes for vectors `V`, as
/// `(rows, vectors per row)`: its `rows * vectors` accumulators, one row of `B`
/// (`vectors` registers) and a broadcast must fit in `V::REGISTERS`. With 32
/// registers (AVX-512) 8 x 2; with 16 (AVX2, the portable level) 6 x 2, whose 12
/// accumulators still hide the FMA latency.
const fn tile_shape<V: Vector>() -> (usize, usize) {
    if V::REGISTERS >= 32 {
        (8, 2)
    } else {
        (6, 2)
    }
}

/// Columns of `C` per tile at the current SIMD level (callers size their
/// blocks in whole panels of this width).
pub fn panel_width() -> usize {
    crate::simd::dispatch(PanelWidth)
}

struct PanelWidth;

impl Kernel for PanelWidth {
    type Output = usize;

    #[inline(always)]
    fn run<V: Vector>(self, _: V) -> usize {
        tile_shape::<V>().1 * V::LANES
    }
}

/// `A` up to this size (half a Zen 4 L2) is re-read from L2 for every panel of `B`.
const A_CACHE_BYTES: usize = 512 * 1024;
/// `B` up to this size comes from cache. A panel touches one or two cache lines in
/// each of `k` rows far apart, which the hardware prefetchers do not follow: from
/// DRAM (a `32 x 288 x 50176` product) this kernel ran at 0.75x matrixmultiply, whose
/// packing reads `B` sequentially.
const B_CACHE_BYTES: usize = 8 << 20;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the short-product kernel on or off for the whole process (it is on by
/// default), so that benchmarks and tests can compare it with matrixmultiply on
/// the same products.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the kernel is enabled.
pub fn available() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether [`gemm`] handles `C (m x n) = A (m x k) B (k x n)`.
pub(super) fn applies(a: &MatRef<'_>, b: &MatRef<'_>, c: &MatMut<'_>) -> bool {
    let bytes = |elements: usize| elements * std::mem::size_of::<f32>();
    let small_a = bytes(a.rows * a.cols) <= A_CACHE_BYTES;
    let cached_b = bytes(b.rows * b.rs) <= B_CACHE_BYTES;
    b.cs == 1
        && c.cs == 1
        && a.cols > 0
        && (small_a || b.cols <= 2 * panel_width())
        && cached_b
        && available()
}

/// `C = A B + beta C` for shapes [`applies`] accepts (the caller checked the
/// shapes agree). With `beta == 0`, C's old contents are not read.
pub(super) fn gemm(a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: MatMut<'_>) {
    assert!(applies(&a, &b, &c), "short gemm called where it does not apply");
    simd::dispatch(Product { a, b, beta, c });
}

/// One product, as a kernel for [`simd::dispatch`].
struct Product<'a> {
    a: MatRef<'a>,
    b: MatRef<'a>,
    beta: f32,
    c: MatMut<'a>,
}

impl Kernel for Product<'_> {
    type Output = ();

    #[inline(always)]
    fn run<V: Vector>(self, v: V) {
        let Product { a, b, beta, mut c } = self;
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let (mr, vectors) = tile_shape::<V>();
        let nr = vectors * V::LANES;
        // The rows are cut into as few tiles as `mr` allows, of as equal sizes as
        // possible (32 rows at 6 a tile: 5 or 6 each, not five of 6 and one of 2,
        // whose two broadcasts a row of B feed only 4 FMAs).
        let row_tiles = m.div_ceil(mr);
        for j in (0..n).step_by(nr) {
            let cols = nr.min(n - j);
            for tile_row in 0..row_tiles {
                let (i, i1) = (tile_row * m / row_tiles, (tile_row + 1) * m / row_tiles);
                let tile = Tile {
                    rows: i1 - i,
                    cols,
                    k,
                    a: a.data[i * a.rs..].as_ptr(),
                    a_strides: (a.rs, a.cs),
                    b: b.data[j..].as_ptr(),
                    b_rs: b.rs,
                    c: c.ptr_at(i, j),
                    c_rs: c.rs,
                    beta,
                };
                // SAFETY: the tile touches A(i + r, kk), B(kk, j + t) and C(i + r, j + t)
                // for r < rows = i1 - i <= m - i, kk < k and t < cols <= n - j, all elements
                // of the views, whose constructors checked that every element lies
                // inside their ranges. The pointers are the tile's first elements
                // (indices `i * rs + j * cs` inside the range, since the view's
                // extent covers them), and C's elements are distinct and reached
                // only through C (`MatMut`'s invariant), so the writes alias
                // neither A nor B nor each other.
                unsafe { tile.run(v) };
            }
        }
    }
}

/// One micro-kernel call: an `rows x cols` tile of C (at most [`tile_shape`])
/// from `rows` rows of A and `cols` columns of B, by raw pointers to their
/// first elements.
struct Tile {
    rows: usize,
    cols: usize,
    k: usize,
    a: *const f32,
    a_strides: (usize, usize),
    b: *const f32,
    b_rs: usize,
    c: *mut f32,
    c_rs: usize,
    beta: f32,
}

impl Tile {
    /// # Safety
    /// The pointers address the elements described on [`Tile`]:
    /// `a + r * a_rs + kk * a_cs`, `b + kk * b_rs + t` and `c + r * c_rs + t` for
    /// `r < rows`, `kk < k`, `t < cols` are valid (C's for writing, and not
    /// aliased by A or B).
    #[inline(always)]
    unsafe fn run<V: Vector>(&self, v: V) {
        // SAFETY: forwarded from this function's contract; the match picks the
        // instantiation with exactly `rows` rows and the level's vectors per row,
        // with whole-vector loads only when the tile has all its columns.
        unsafe {
            match tile_shape::<V>() {
                (8, 2) => self.rows_of::<V, 2, 8>(v),
                (6, 2) => self.rows_of::<V, 2, 6>(v),
                _ => unreachable!("tile shapes are 8 x 2 or 6 x 2"),
            }
        }
    }

    /// [`Tile::run`] for tiles of at most `MR` rows of `C` vectors.
    ///
    /// # Safety
    /// That of [`Tile::run`], with `rows <= MR` and `cols <= C V::LANES`.
    #[inline(always)]
    unsafe fn rows_of<V: Vector, const C: usize, const MR: usize>(&self, v: V) {
        let full = self.cols == C * V::LANES;
        // SAFETY: forwarded; each arm has `R == rows` and `FULL == full`.
        unsafe {
            macro_rules! by_rows {
                ($($r:literal)*) => {
                    match (self.rows, full) {
                        $(($r, true) if $r <= MR => tile::<V, $r, C, true>(v, self),
                          ($r, false) if $r <= MR => tile::<V, $r, C, false>(v, self),)*
                        _ => unreachable!("tiles have 1 to {MR} rows"),
                    }
                };
            }
            by_rows!(1 2 3 4 5 6 7 8)
        }
    }
}

/// The micro-kernel for a tile of exactly `R` rows and at most `C` vectors of
/// columns; `FULL` when it has all `C V::LANES` columns (whole-vector loads and
/// stores), else masked ones.
///
/// # Safety
/// That of [`Tile::run`], with `R == t.rows` and `FULL == (t.cols == C V::LANES)`.
/// Masked loads and stores touch only the lanes their mask enables, so columns
/// `cols..` are never read or written; pointers to them are formed with
/// `wrapping_add`, which is defined even past the end of an allocation.
#[inline(always)]
unsafe fn tile<V: Vector, const R: usize, const C: usize, const FULL: bool>(v: V, t: &Tile) {
    let lanes = V::LANES;
    let masks: [V::Mask; C] = std::array::from_fn(|q| v.lanes(0, t.cols.saturating_sub(q * lanes)));
    // SAFETY (loads and stores): with FULL the tile's `C lanes` columns are all
    // valid; otherwise the masks stop at column `cols`.
    let load = |p: *const f32, m: V::Mask| unsafe {
        if FULL {
            v.load(p)
        } else {
            v.load_masked(p, m)
        }
    };
    let store = |p: *mut f32, m: V::Mask, x: V::Reg| unsafe {
        if FULL {
            v.store(p, x)
        } else {
            v.store_masked(p, m, x)
        }
    };
    let (a_rs, a_cs) = t.a_strides;
    let mut acc: [[V::Reg; C]; R] = [[v.zero(); C]; R];
    for kk in 0..t.k {
        let b = t.b.wrapping_add(kk * t.b_rs);
        let bv: [V::Reg; C] = std::array::from_fn(|q| load(b.wrapping_add(q * lanes), masks[q]));
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: A(r, kk) is valid for r < R = rows and kk < k.
            let a = v.splat(unsafe { *t.a.add(r * a_rs + kk * a_cs) });
            for (acc, &b) in acc.iter_mut().zip(&bv) {
                *acc = v.mul_add(a, b, *acc);
            }
        }
    }
    let beta = v.splat(t.beta);
    for (r, acc) in acc.iter().enumerate() {
        let c = t.c.wrapping_add(r * t.c_rs);
        for (q, &x) in acc.iter().enumerate() {
            let (p, m) = (c.wrapping_add(q * lanes), masks[q]);
            let x = if t.beta != 0.0 {
                v.mul_add(beta, load(p, m), x)
            } else {
                x
            };
            store(p, m, x);
        }
    }
}
