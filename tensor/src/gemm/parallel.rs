//! One product on every thread: `C` cut into blocks, each block an independent
//! [`gemm`], and the raw column views that let tasks write interleaved column
//! blocks of one buffer without overlapping `&mut` borrows.

use std::marker::PhantomData;

use rayon::prelude::*;

use super::{gemm, MatMut, MatRef};

/// Flops below which [`gemm_parallel`] stays on one thread (8.4 M: a 128^3 product
/// split in two ran slower than on one thread, a 256^3 one 1.4x faster).
const PARALLEL_MIN_FLOPS: usize = 1 << 23;

/// Columns (or rows) per block below which splitting stops paying.
const MIN_BLOCK: usize = 64;

/// `C = alpha * A * B + beta * C` for a dense row-major C, split over rayon's pool.
///
/// C is cut along its longer side into one block per thread (two per thread
/// scaled worse on the U-Net's products); each block is an independent `gemm` that packs
/// its own part of the longer operand and the whole of the shorter one.
pub fn gemm_parallel(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(c.len(), m * n, "gemm_parallel: C must be a dense {m}x{n} buffer");
    let threads = rayon::current_num_threads();
    if threads == 1 || 2 * m * n * k < PARALLEL_MIN_FLOPS || m.max(n) < 2 * MIN_BLOCK {
        gemm(alpha, a, b, beta, MatMut::row_major(c, m, n));
        return;
    }
    let blocks = threads.min(m.max(n) / MIN_BLOCK);
    if m >= n {
        // Row blocks of a row-major C are contiguous chunks.
        let rows = m.div_ceil(blocks);
        c.par_chunks_mut(rows * n).enumerate().for_each(|(i, cb)| {
            let r = cb.len() / n;
            gemm(
                alpha,
                a.rows_range(i * rows, r),
                b,
                beta,
                MatMut::row_major(cb, r, n),
            );
        });
    } else {
        // Column blocks are interleaved in memory; each task writes its own
        // columns through a view of the whole buffer, described by `ColumnBlocks`.
        let cols = n.div_ceil(blocks).next_multiple_of(16);
        let nblocks = n.div_ceil(cols);
        let shared = ColumnBlocks::new(c, m, n);
        (0..nblocks).into_par_iter().for_each(|j| {
            let j0 = j * cols;
            let w = cols.min(n - j0);
            // SAFETY: each task takes block j once, and blocks j differ, so the
            // column ranges j0..j0 + w of the views alive at one time are
            // disjoint; `shared` borrows `c` until the parallel loop returns.
            let cb = unsafe { shared.block(j0, w) };
            gemm(alpha, a, b.cols_range(j0, w), beta, cb);
        });
    }
}

/// A dense row-major `rows x cols` buffer that parallel tasks write in disjoint
/// column blocks, shared between them as a raw pointer.
///
/// Invariant: the views that [`ColumnBlocks::block`] hands out at one time have
/// disjoint column ranges, so each task writes a disjoint set of elements, and no
/// `&mut [f32]` of the buffer is made while it is shared (the views are raw:
/// [`MatMut::from_raw`]). The column blocks are interleaved in memory, so their
/// address ranges overlap: as slices they would be overlapping `&mut` borrows,
/// undefined behaviour even though no element is written twice.
struct ColumnBlocks<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: a `ColumnBlocks` is a unique borrow of its buffer (`'a`), shared by the
// tasks only through `block`, whose contract keeps the elements they reach
// disjoint; `f32` is `Send`, so the elements may be written from any thread.
unsafe impl Send for ColumnBlocks<'_> {}
// SAFETY: as for `Send` above: `&ColumnBlocks` gives access only through `block`.
unsafe impl Sync for ColumnBlocks<'_> {}

impl<'a> ColumnBlocks<'a> {
    /// Shares the row-major `rows x cols` buffer `c` (at least one row) for the
    /// duration of `'a`.
    fn new(c: &'a mut [f32], rows: usize, cols: usize) -> Self {
        assert!(
            rows > 0 && c.len() == rows * cols,
            "ColumnBlocks: {} floats are not a dense {rows}x{cols} buffer with rows",
            c.len()
        );
        ColumnBlocks {
            ptr: c.as_mut_ptr(),
            rows,
            cols,
            _borrow: PhantomData,
        }
    }

    /// Columns `j0..j0 + w` of the buffer, as a view with strides `(cols, 1)`.
    ///
    /// # Safety
    /// Views handed out at the same time must have disjoint column ranges. Then no
    /// element is reachable through two views: a view of columns `j0..j0 + w`
    /// only reaches indices `i * cols + j` with `j0 <= j < j0 + w`. Its range,
    /// from index `j0` to the end of the buffer, spans other blocks' columns too,
    /// which is why it is a raw view and never a slice.
    unsafe fn block(&self, j0: usize, w: usize) -> MatMut<'_> {
        assert!(
            j0 + w <= self.cols,
            "ColumnBlocks: columns {j0}..{} of {}",
            j0 + w,
            self.cols
        );
        let len = self.rows * self.cols - j0;
        // SAFETY: `j0 <= cols <= rows * cols` (`rows >= 1`, checked in `new`), so
        // `ptr + j0` and the `len` floats after it lie in the buffer, and
        // `from_raw` checks that the view fits in them. The view's elements are
        // valid for reads and writes (the buffer is borrowed for `'a`) and reached
        // by no other view (this function's contract).
        unsafe { MatMut::from_raw(self.ptr.add(j0), len, self.rows, w, self.cols, 1) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::tests::{data, naive};

    #[test]
    fn parallel_blocks_match_naive_both_ways() {
        for &(m, k, n) in &[(300, 40, 150), (90, 50, 700), (7, 3, 5)] {
            let a = data(m * k, 3);
            let b = data(k * n, 4);
            let want = naive(&a, &b, m, k, n);
            let mut c = vec![1.0; m * n];
            let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
            pool.install(|| {
                gemm_parallel(
                    1.0,
                    MatRef::row_major(&a, m, k),
                    MatRef::row_major(&b, k, n),
                    0.0,
                    &mut c,
                )
            });
            assert_eq!(c, want, "{m}x{k}x{n}");
        }
    }

    #[test]
    fn column_blocks_on_threads_write_exactly_their_columns() {
        // Plain threads rather than rayon, so that Miri's Stacked Borrows checks
        // run on this code alone (rayon's crossbeam-epoch trips them by itself).
        let (m, k, n) = (3, 4, 10);
        let a = data(m * k, 7);
        let b = data(k * n, 8);
        let want = naive(&a, &b, m, k, n);
        let mut c = vec![f32::NAN; m * n];
        // Columns 0..3, 3..7 and 8..10; column 7 belongs to no block.
        let blocks = [(0, 3), (3, 4), (8, 2)];
        let shared = ColumnBlocks::new(&mut c, m, n);
        std::thread::scope(|s| {
            for &(j0, w) in &blocks {
                let (a, b, shared) = (&a, &b, &shared);
                s.spawn(move || {
                    // SAFETY: the blocks' column ranges are disjoint.
                    let cb = unsafe { shared.block(j0, w) };
                    gemm(
                        1.0,
                        MatRef::row_major(a, m, k),
                        MatRef::row_major(b, k, n).cols_range(j0, w),
                        0.0,
                        cb,
                    );
                });
            }
        });
        for i in 0..m {
            for j in 0..n {
                let got = c[i * n + j];
                if j == 7 {
                    assert!(got.is_nan(), "column 7 was written at row {i}");
                } else {
                    assert_eq!(got, want[i * n + j], "({i}, {j})");
                }
            }
        }
    }
}
