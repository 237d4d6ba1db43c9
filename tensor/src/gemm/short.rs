//! A GEMM for short, wide products that reads its operands in place:
//! `C = A B + beta C` where `B` and `C` have contiguous rows, computed tile by tile
//! by an AVX-512 micro-kernel, with no packing.
//!
//! Why a second GEMM: in a convolution `A` is the weight (`Cout x K`, a few rows)
//! and `B` the im2col matrix (`K x pixels`), built moments before with every row
//! contiguous, which is all a micro-kernel needs. A general GEMM (matrixmultiply)
//! first copies `B` into packed panels; with 32 output channels each element of `B`
//! feeds only 64 flops, so that copy was a quarter to a third of the product's time.
//! Winograd's products have the same shape (`Cout x Cin` times `Cin x tiles`, the
//! right-hand side just written by the input transform) and take this kernel too.
//!
//! The micro-kernel computes an `R x 32` tile of `C` (`R <= 8`) in `2 R` vector
//! registers of 16 floats:
//!
//! ```text
//! for kk in 0..k:
//!     b0, b1 = B[kk, j..j+16], B[kk, j+16..j+32]          two loads (masked at the right edge)
//!     for r in 0..R:
//!         a = broadcast A[i+r, kk]                          any strides: A may be a transposed view
//!         acc[r][0] += a * b0;  acc[r][1] += a * b1           fused multiply-adds
//! C[i+r, j..j+32] = acc[r] + beta C[i+r, j..j+32]
//! ```
//!
//! Sixteen independent accumulators hide the FMA latency; `B`'s 32-column panel is
//! reused from cache by every row block before moving right. `applies` keeps the
//! kernel to products where that reuse works: `A` small enough to stay in L2, or
//! `C` at most two panels wide (then `A` is read at most twice), and `B` in cache.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{MatMut, MatRef};

/// Rows of `C` per tile.
const MR: usize = 8;
/// Columns of `C` per tile: two 16-float vectors.
const NR: usize = 32;
/// `A` up to this size (half a Zen 4 L2) is re-read from L2 for every panel of `B`.
const A_CACHE_BYTES: usize = 512 * 1024;
/// `B` up to this size comes from cache. A panel touches one or two cache lines in
/// each of `k` rows far apart, which the hardware prefetchers do not follow: from
/// DRAM (a `32 x 288 x 50176` product) this kernel ran at 0.75x matrixmultiply, whose
/// packing reads `B` sequentially.
const B_CACHE_BYTES: usize = 8 << 20;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the short-product kernel on or off for the whole process (it is on by
/// default where the CPU has AVX-512), so that benchmarks and tests can compare it
/// with matrixmultiply on the same products.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether this CPU has the kernel's instructions and it is enabled.
pub fn available() -> bool {
    ENABLED.load(Ordering::Relaxed) && cpu_has_avx512()
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_avx512() -> bool {
    is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_avx512() -> bool {
    false
}

/// Whether [`gemm`] handles `C (m x n) = A (m x k) B (k x n)`.
pub(super) fn applies(a: &MatRef<'_>, b: &MatRef<'_>, c: &MatMut<'_>) -> bool {
    let bytes = |elements: usize| elements * std::mem::size_of::<f32>();
    let small_a = bytes(a.rows * a.cols) <= A_CACHE_BYTES;
    let cached_b = bytes(b.rows * b.rs) <= B_CACHE_BYTES;
    b.cs == 1 && c.cs == 1 && a.cols > 0 && (small_a || b.cols <= 2 * NR) && cached_b && available()
}

/// `C = A B + beta C` for shapes [`applies`] accepts (the caller checked the
/// shapes agree). With `beta == 0`, C's old contents are not read.
pub(super) fn gemm(a: MatRef<'_>, b: MatRef<'_>, beta: f32, mut c: MatMut<'_>) {
    assert!(applies(&a, &b, &c), "short gemm called where it does not apply");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    for j in (0..n).step_by(NR) {
        let cols = NR.min(n - j);
        for i in (0..m).step_by(MR) {
            let rows = MR.min(m - i);
            let tile = Tile {
                rows,
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
            // SAFETY: `applies` checked that the CPU has AVX-512F. The tile touches
            // A(i + r, kk), B(kk, j + t) and C(i + r, j + t) for r < rows <= m - i,
            // kk < k and t < cols <= n - j, all elements of the views, whose
            // constructors checked that every element lies inside their ranges.
            // The pointers are the tile's first elements (indices `i * rs + j * cs`
            // inside the range, since the view's extent covers them), and C's
            // elements are distinct and reached only through C (`MatMut`'s
            // invariant), so the writes alias neither A nor B nor each other.
            unsafe { tile.run() };
        }
    }
}

/// One micro-kernel call: an `rows x cols` tile of C (`rows <= MR`, `cols <= NR`)
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
    /// The CPU has AVX-512F, and the pointers address the elements described on
    /// [`Tile`]: `a + r * a_rs + kk * a_cs`, `b + kk * b_rs + t` and
    /// `c + r * c_rs + t` for `r < rows`, `kk < k`, `t < cols` are valid
    /// (C's for writing, and not aliased by A or B).
    #[cfg(target_arch = "x86_64")]
    unsafe fn run(&self) {
        // SAFETY: forwarded from this function's contract; `rows` picks the
        // instantiation with exactly that many rows.
        unsafe {
            match self.rows {
                8 => x86::tile::<8>(self),
                7 => x86::tile::<7>(self),
                6 => x86::tile::<6>(self),
                5 => x86::tile::<5>(self),
                4 => x86::tile::<4>(self),
                3 => x86::tile::<3>(self),
                2 => x86::tile::<2>(self),
                1 => x86::tile::<1>(self),
                _ => unreachable!("tiles have 1 to {MR} rows"),
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn run(&self) {
        unreachable!("the short gemm needs x86-64 AVX-512; `applies` said no")
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m512, __mmask16, _mm512_fmadd_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_set1_ps,
        _mm512_setzero_ps,
    };

    use super::Tile;

    /// Lanes `0..n` of a 16-lane mask (`n <= 16`).
    fn lanes(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    /// The micro-kernel for a tile of exactly `R` rows.
    ///
    /// # Safety
    /// That of [`Tile::run`], with `R == t.rows`. Masked loads and stores touch only
    /// the lanes their mask enables (AVX-512 suppresses faults on the others), so
    /// columns `cols..32` are never read or written; pointers to them are formed
    /// with `wrapping_add`, which is defined even past the end of an allocation.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile<const R: usize>(t: &Tile) {
        let (lo, hi) = (lanes(t.cols.min(16)), lanes(t.cols.saturating_sub(16)));
        let (a_rs, a_cs) = t.a_strides;
        let mut acc: [[__m512; 2]; R] = [[_mm512_setzero_ps(); 2]; R];
        for kk in 0..t.k {
            let b = t.b.wrapping_add(kk * t.b_rs);
            // SAFETY: B(kk, 0..cols) is valid; the masks stop at column `cols`.
            let (b0, b1) = unsafe {
                (
                    _mm512_maskz_loadu_ps(lo, b),
                    _mm512_maskz_loadu_ps(hi, b.wrapping_add(16)),
                )
            };
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: A(r, kk) is valid for r < R = rows and kk < k.
                let a = _mm512_set1_ps(unsafe { *t.a.add(r * a_rs + kk * a_cs) });
                acc[0] = _mm512_fmadd_ps(a, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(a, b1, acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let c = t.c.wrapping_add(r * t.c_rs);
            let (c0, c1) = (c, c.wrapping_add(16));
            // SAFETY: C(r, 0..cols) is valid and unaliased; the masks stop at `cols`.
            unsafe {
                let (mut v0, mut v1) = (acc[0], acc[1]);
                if t.beta != 0.0 {
                    let beta = _mm512_set1_ps(t.beta);
                    v0 = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(lo, c0), v0);
                    v1 = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(hi, c1), v1);
                }
                _mm512_mask_storeu_ps(c0, lo, v0);
                _mm512_mask_storeu_ps(c1, hi, v1);
            }
        }
    }
}
