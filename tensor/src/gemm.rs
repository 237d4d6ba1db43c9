//! A safe, strided GEMM: `C = alpha * A * B + beta * C` on `matrixmultiply::sgemm`
//! or, for short, wide products, a kernel of our own ([`short`]).
//!
//! `matrixmultiply` takes raw pointers and signed strides. This module wraps them in
//! two small view types, [`MatRef`] and [`MatMut`], that check once, when they are
//! built, that every element they describe lies inside their memory (and, for the
//! output, that no two elements share a place). After that, [`gemm`] can call the
//! `unsafe` kernel knowing the kernel only touches memory the views own.
//!
//! [`MatMut`] holds a raw pointer, not a `&mut [f32]`: [`gemm_parallel`] gives
//! each thread the columns of its own block of one row-major buffer, and the
//! address ranges of interleaved column blocks overlap. Overlapping `&mut` slices
//! in different threads are undefined behaviour (under Stacked Borrows) even when
//! no element is written through two of them; raw pointers claim only the
//! elements that are actually written, which are disjoint.
//!
//! Because a view carries strides, a transposed matrix is just a view with its
//! row and column strides swapped: [`MatRef::t`]. Nothing is copied.
//!
//! Short, wide products whose `B` and `C` have contiguous rows (the convolutions'
//! products, im2col's and Winograd's) go to our own kernel in [`short`], at every
//! SIMD level, which reads `B` in place instead of packing it; everything else
//! goes to `matrixmultiply`.
//!
//! [`gemm`] runs on the calling thread. [`gemm_parallel`] splits C into column or
//! row blocks and runs one `gemm` per block on rayon's pool, so the engine scales
//! with the pool rather than with `matrixmultiply`'s own (4-thread) pool.

use std::marker::PhantomData;

mod parallel;
pub mod short;

pub use parallel::gemm_parallel;

/// A read-only matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// A writable matrix view whose elements are all distinct places: element
/// `(i, j)` is `ptr[i * rs + j * cs]`, inside the range of floats it was built on.
///
/// Invariant: for the lifetime `'a` the view's elements are valid for reads and
/// writes and are accessed only through this view. The other floats of its range
/// need not be: they may be elements of another thread's view (see
/// `ColumnBlocks`), so a `MatMut` never makes a slice of its range.
#[derive(Debug)]
pub struct MatMut<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: a `MatMut` is a unique borrow of its elements (its invariant), as a
// `&mut [f32]` is, and `&mut [f32]` is `Send` and `Sync`; through `&MatMut` only
// the shape can be read.
unsafe impl Send for MatMut<'_> {}
// SAFETY: as for `Send` above.
unsafe impl Sync for MatMut<'_> {}

/// One past the largest index a `rows x cols` view with strides `(rs, cs)` reads.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        // Checked: huge strides must fail the bounds check, not wrap around it.
        (rows - 1)
            .checked_mul(rs)
            .and_then(|r| (cols - 1).checked_mul(cs).and_then(|c| r.checked_add(c)))
            .and_then(|last| last.checked_add(1))
            .unwrap_or(usize::MAX)
    }
}

impl<'a> MatRef<'a> {
    /// A view of `data` as a `rows x cols` matrix with row stride `rs` and column
    /// stride `cs` (in elements; 0 repeats a row or column).
    ///
    /// # Panics
    /// If the view reaches past the end of `data`: a bug in the caller.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        assert!(
            extent(rows, cols, rs, cs) <= data.len(),
            "MatRef: a {rows}x{cols} view with strides ({rs}, {cs}) does not fit in {} elements",
            data.len()
        );
        MatRef {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// A dense row-major `rows x cols` view.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose, as a view (strides swapped).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Rows `start..start + len`, as a view.
    pub fn rows_range(self, start: usize, len: usize) -> Self {
        assert!(start + len <= self.rows);
        let off = if len == 0 { 0 } else { start * self.rs };
        MatRef::new(&self.data[off..], len, self.cols, self.rs, self.cs)
    }

    /// Columns `start..start + len`, as a view.
    pub fn cols_range(self, start: usize, len: usize) -> Self {
        assert!(start + len <= self.cols);
        let off = if len == 0 { 0 } else { start * self.cs };
        MatRef::new(&self.data[off..], self.rows, len, self.rs, self.cs)
    }

    /// Row `i` as a slice, for a view whose rows are contiguous (`cs == 1`).
    ///
    /// # Panics
    /// If `i` is not a row or the row is not contiguous.
    pub fn row(&self, i: usize) -> &'a [f32] {
        assert!(
            i < self.rows && self.cs == 1,
            "MatRef::row: row {i} of a {}x{} view with column stride {}",
            self.rows,
            self.cols,
            self.cs
        );
        &self.data[i * self.rs..][..self.cols]
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
}

impl<'a> MatMut<'a> {
    /// A writable `rows x cols` view of `data` with strides `(rs, cs)`.
    ///
    /// # Panics
    /// If the view reaches past `data`, or if two elements would share a place
    /// (the strides must be those of a row-major or column-major layout, possibly
    /// with padding): a bug in the caller.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        // SAFETY: `data` is valid for reads and writes and borrowed uniquely for
        // `'a`, so in particular the view's elements are.
        unsafe { Self::from_raw(data.as_mut_ptr(), data.len(), rows, cols, rs, cs) }
    }

    /// A view of the `len` floats from `ptr`, with the checks of [`MatMut::new`].
    ///
    /// # Safety
    /// `ptr..ptr + len` lies in one allocation, and for `'a` the view's elements
    /// (`ptr + i * rs + j * cs`, `i < rows`, `j < cols`) are valid for reads and
    /// writes and accessed through this view only. The rest of the range may be
    /// in use elsewhere: the view never touches it.
    unsafe fn from_raw(ptr: *mut f32, len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        assert!(
            extent(rows, cols, rs, cs) <= len,
            "MatMut: a {rows}x{cols} view with strides ({rs}, {cs}) does not fit in {len} elements"
        );
        let distinct = rows <= 1 && (cols <= 1 || cs >= 1)
            || cols <= 1 && rs >= 1
            || cs >= 1 && rs >= cols * cs
            || rs >= 1 && cs >= rows * rs;
        assert!(
            distinct,
            "MatMut: strides ({rs}, {cs}) alias elements of a {rows}x{cols} view"
        );
        MatMut {
            ptr,
            rows,
            cols,
            rs,
            cs,
            _borrow: PhantomData,
        }
    }

    /// A dense row-major `rows x cols` view.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    /// A pointer to element `(i, j)`, for writing it (and the elements after it
    /// that the caller's kernel is entitled to).
    ///
    /// # Panics
    /// If `(i, j)` is not an element of the view.
    fn ptr_at(&mut self, i: usize, j: usize) -> *mut f32 {
        assert!(
            i < self.rows && j < self.cols,
            "MatMut: ({i}, {j}) is outside a {}x{} view",
            self.rows,
            self.cols
        );
        // SAFETY: `i * rs + j * cs < extent <= len` (checked in `from_raw`), so
        // the offset stays inside the range `ptr..ptr + len` the view was built
        // on, which lies in one allocation.
        unsafe { self.ptr.add(i * self.rs + j * self.cs) }
    }

    /// Element `(i, j)`, for reading and writing.
    ///
    /// # Panics
    /// If `(i, j)` is not an element of the view.
    fn at(&mut self, i: usize, j: usize) -> &mut f32 {
        let p = self.ptr_at(i, j);
        // SAFETY: `p` is an element of the view, valid and accessed only through
        // this view (the invariant), which `&mut self` borrows while the
        // reference lives.
        unsafe { &mut *p }
    }
}

/// `C = alpha * A * B + beta * C` on the calling thread. With `beta == 0`, C's old
/// contents are ignored (even NaN).
///
/// # Panics
/// If the shapes do not agree (`A: m x k`, `B: k x n`, `C: m x n`): callers check
/// shapes and return a `TensorError` before they get here.
pub fn gemm(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, mut c: MatMut<'_>) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k && c.rows == m && c.cols == n,
        "gemm: {}x{} * {}x{} -> {}x{}",
        a.rows,
        a.cols,
        b.rows,
        b.cols,
        c.rows,
        c.cols
    );
    if m == 0 || n == 0 {
        return;
    }
    if alpha == 1.0 && short::applies(&a, &b, &c) {
        short::gemm(a, b, beta, c);
        return;
    }
    if k == 0 {
        // matrixmultiply would scale C by beta; do it here and skip the pointers.
        for i in 0..m {
            for j in 0..n {
                let x = c.at(i, j);
                *x = if beta == 0.0 { 0.0 } else { beta * *x };
            }
        }
        return;
    }
    // SAFETY: `MatRef::new`/`MatMut::from_raw` checked that every index
    // `i * rs + j * cs` (i < rows, j < cols) is inside the view's range, the shape
    // check above makes the kernel read exactly A[m x k] and B[k x n] and write
    // exactly C[m x n], and `from_raw` checked that C's elements are distinct, as
    // sgemm requires. A and B are shared borrows; C's elements are borrowed
    // uniquely by C (its invariant), so they overlap neither A nor B, and sgemm
    // touches no other float of C's range. Strides are at most the range's
    // length, which fits in isize.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.ptr,
            c.rs as isize,
            c.cs as isize,
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(super) fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                    .sum::<f64>() as f32;
            }
        }
        c
    }

    pub(super) fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((((i as u32).wrapping_mul(2654435761) ^ seed) >> 16) % 17) as f32 - 8.0)
            .collect()
    }

    #[test]
    fn gemm_matches_naive_with_transposed_views() {
        let (m, k, n) = (5, 7, 3);
        let a = data(m * k, 1);
        let b = data(k * n, 2);
        let want = naive(&a, &b, m, k, n);
        // A stored transposed: at[p, i] = a[i, p].
        let at: Vec<f32> = (0..k * m).map(|x| a[(x % m) * k + x / m]).collect();
        let mut c = vec![f32::NAN; m * n];
        gemm(
            1.0,
            MatRef::row_major(&at, k, m).t(),
            MatRef::row_major(&b, k, n),
            0.0,
            MatMut::row_major(&mut c, m, n),
        );
        assert_eq!(c, want);
    }

    #[test]
    fn the_short_kernel_matches_naive_on_edges_strides_and_beta() {
        assert!(short::available(), "on by default");
        for &(m, k, n) in &[
            (1, 1, 1),
            (8, 5, 32),
            (9, 13, 33),
            (9, 13, 50),
            (17, 40, 70),
            (3, 288, 15),
            (32, 7, 64),
        ] {
            let a = data(m * k, 5);
            let b = data(k * n, 6);
            let want = naive(&a, &b, m, k, n);
            // A read through a transposed view, C with padded rows, beta 0 and 1.
            let at: Vec<f32> = (0..k * m).map(|x| a[(x % m) * k + x / m]).collect();
            let ld = n + 3;
            for beta in [0.0f32, 1.0] {
                let mut c = vec![if beta == 0.0 { f32::NAN } else { 2.0 }; m * ld];
                let cv = MatMut::new(&mut c, m, n, ld, 1);
                let (av, bv) = (MatRef::row_major(&at, k, m).t(), MatRef::row_major(&b, k, n));
                assert_eq!(short::applies(&av, &bv, &cv), short::available());
                gemm(1.0, av, bv, beta, cv);
                for i in 0..m {
                    for j in 0..n {
                        let w = want[i * n + j] + if beta == 0.0 { 0.0 } else { 2.0 };
                        assert_eq!(c[i * ld + j], w, "{m}x{k}x{n} beta {beta} at ({i}, {j})");
                    }
                    // The padding between rows is never written.
                    let pad = if beta == 0.0 { f32::NAN } else { 2.0 };
                    assert!(c[i * ld + n..i * ld + ld]
                        .iter()
                        .all(|v| v.to_bits() == pad.to_bits()));
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn views_outside_the_slice_are_refused() {
        let d = [0.0; 5];
        MatRef::new(&d, 2, 3, 3, 1);
    }

    #[test]
    #[should_panic(expected = "alias")]
    fn aliasing_outputs_are_refused() {
        let mut d = [0.0; 9];
        MatMut::new(&mut d, 2, 3, 1, 1);
    }
}
