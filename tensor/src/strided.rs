//! Walking strided operands in row-major order, one contiguous-ish row at a time.
//!
//! An element-wise op over views (a transpose, a broadcast, a slice) must visit the
//! operands' elements in the output's row-major order. Doing that one element at a
//! time with a multi-index is slow. Instead we:
//!
//! 1. *coalesce* axes: drop axes of size 1, and merge two neighbouring axes whenever
//!    every operand steps through them as if they were one (`stride[i] ==
//!    stride[i + 1] * shape[i + 1]`). A contiguous tensor becomes one long axis; a
//!    `[B, C, H, W] + [1, C, 1, 1]` bias add becomes `[B*C, H*W]` with strides
//!    `(H*W, 1)` and `(1, 0)`.
//! 2. split the result into *rows*: the innermost (merged) axis is the row, walked
//!    with a fixed stride per operand in a tight loop the compiler can vectorise;
//!    the outer axes only give each row its starting offsets.
//!
//! This is the same idea as PyTorch's `TensorIterator` and tinygrad's shape
//! tracker merging views, at a tenth of the size.

/// `N` strided operands over one common shape, grouped into rows.
#[derive(Debug, Clone)]
pub(crate) struct StridedRows<const N: usize> {
    /// Outer (non-row) axes, outermost first.
    outer_shape: Vec<usize>,
    /// Each operand's strides along the outer axes.
    outer_strides: [Vec<usize>; N],
    /// Each operand's storage offset of element `[0, ..., 0]`.
    base: [usize; N],
    /// Elements in one row.
    pub inner: usize,
    /// Each operand's stride along the row.
    pub inner_strides: [usize; N],
}

impl<const N: usize> StridedRows<N> {
    /// Groups `shape`, read through each operand's `strides` from its `offsets`,
    /// into rows.
    pub fn new(shape: &[usize], strides: [&[usize]; N], offsets: [usize; N]) -> Self {
        // Merged axes, innermost first: (size, strides per operand).
        let mut axes: Vec<(usize, [usize; N])> = Vec::with_capacity(shape.len());
        for i in (0..shape.len()).rev() {
            let d = shape[i];
            if d == 1 {
                continue;
            }
            let s: [usize; N] = std::array::from_fn(|k| strides[k][i]);
            if let Some((inner_d, inner_s)) = axes.last_mut() {
                if (0..N).all(|k| s[k] == inner_s[k] * *inner_d) {
                    *inner_d *= d;
                    continue;
                }
            }
            axes.push((d, s));
        }
        let (inner, inner_strides) = if shape.contains(&0) {
            (0, [0; N])
        } else {
            axes.first().copied().unwrap_or((1, [0; N]))
        };
        let outer: Vec<_> = axes.iter().skip(1).rev().collect();
        StridedRows {
            outer_shape: outer.iter().map(|a| a.0).collect(),
            outer_strides: std::array::from_fn(|k| outer.iter().map(|a| a.1[k]).collect()),
            base: offsets,
            inner,
            inner_strides,
        }
    }

    /// How many rows there are.
    #[cfg(test)]
    pub fn rows(&self) -> usize {
        if self.inner == 0 {
            0
        } else {
            self.outer_shape.iter().product()
        }
    }

    /// The storage offset, for each operand, of the first element of row `r`.
    pub fn row_start(&self, mut r: usize) -> [usize; N] {
        let mut start = self.base;
        for i in (0..self.outer_shape.len()).rev() {
            let d = self.outer_shape[i];
            let idx = r % d;
            r /= d;
            for (k, s) in start.iter_mut().enumerate() {
                *s += idx * self.outer_strides[k][i];
            }
        }
        start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_collapses_to_one_row() {
        let rows = StridedRows::new(&[2, 3, 4], [&[12, 4, 1]], [5]);
        assert_eq!((rows.rows(), rows.inner, rows.inner_strides), (1, 24, [1]));
        assert_eq!(rows.row_start(0), [5]);
    }

    #[test]
    fn bias_broadcast_merges_spatial_axes() {
        // [B, C, H, W] + [1, C, 1, 1] broadcast: strides (C*H*W, H*W, W, 1) and (0, 1, 0, 0).
        let rows = StridedRows::new(&[2, 3, 4, 5], [&[60, 20, 5, 1], &[0, 1, 0, 0]], [0, 0]);
        assert_eq!(rows.inner, 20);
        assert_eq!(rows.inner_strides, [1, 0]);
        assert_eq!(rows.rows(), 6);
        assert_eq!(rows.row_start(4), [80, 1]);
    }

    #[test]
    fn transpose_walks_with_the_column_stride() {
        // A [3, 2] view of a row-major [2, 3] array.
        let rows = StridedRows::new(&[3, 2], [&[1, 3]], [0]);
        assert_eq!((rows.rows(), rows.inner, rows.inner_strides), (3, 2, [3]));
        assert_eq!(rows.row_start(2), [2]);
    }
}
