//! The `Tensor`: shared storage plus a layout.
//!
//! A tensor is a reference-counted flat `Vec<f32>` (the *storage*) and a
//! [`Layout`] that says how to read it. Cloning a tensor, or taking a view of it
//! (transpose, slice, broadcast, reshape of a contiguous tensor), copies no data:
//! the new tensor shares the storage and only the layout differs. Ops never mutate
//! a storage that another tensor can see, so sharing is always safe.

use std::sync::Arc;

use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};
use rayon::prelude::*;

use crate::error::{check_axis, invalid, Result, TensorError};
use crate::layout::{checked_numel, Layout};
use crate::strided::StridedRows;

/// Element counts below this run on one thread: splitting smaller work across
/// rayon's pool costs more than it saves.
pub(crate) const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

/// An n-dimensional array of `f32`, possibly a view into another tensor's storage.
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Vec<f32>>,
    layout: Layout,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 8;
        let v = self.to_vec();
        write!(f, "Tensor{:?} {:?}", self.shape(), &v[..v.len().min(SHOWN)])?;
        if v.len() > SHOWN {
            write!(f, "...")?;
        }
        Ok(())
    }
}

impl Tensor {
    // ----- construction -------------------------------------------------------

    /// Wraps `data` (row-major) as a tensor of `shape`.
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Self> {
        let expected = checked_numel("from_vec", shape)?;
        if data.len() != expected {
            return Err(TensorError::ElementCount {
                op: "from_vec",
                expected,
                got: data.len(),
            });
        }
        Ok(Self::from_contiguous(data, shape))
    }

    /// Wraps `data` whose length is known to match `shape`, a shape that passes
    /// [`checked_numel`].
    pub(crate) fn from_contiguous(data: Vec<f32>, shape: &[usize]) -> Self {
        debug_assert_eq!(checked_numel("from_contiguous", shape), Ok(data.len()));
        Tensor {
            storage: Arc::new(data),
            layout: Layout::contiguous(shape),
        }
    }

    /// A tensor of rank 0 holding `value`.
    pub fn scalar(value: f32) -> Self {
        Self::from_contiguous(vec![value], &[])
    }

    /// A tensor of `shape` filled with `value`, or [`TensorError::ShapeTooLarge`]
    /// for a shape that cannot be laid out ([`checked_numel`]).
    pub fn try_full(shape: &[usize], value: f32) -> Result<Self> {
        let numel = checked_numel("full", shape)?;
        Ok(Self::from_contiguous(vec![value; numel], shape))
    }

    /// A tensor of `shape` filled with `value`.
    ///
    /// # Panics
    /// With the [`TensorError::ShapeTooLarge`] message when the shape cannot be
    /// laid out, as `vec!` panics on a capacity overflow; [`Tensor::try_full`]
    /// returns the error instead.
    pub fn full(shape: &[usize], value: f32) -> Self {
        Self::try_full(shape, value).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A tensor of `shape` filled with zeros.
    ///
    /// # Panics
    /// As [`Tensor::full`] does.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, 0.0)
    }

    /// A tensor of `shape` filled with ones.
    ///
    /// # Panics
    /// As [`Tensor::full`] does.
    pub fn ones(shape: &[usize]) -> Self {
        Self::full(shape, 1.0)
    }

    /// The 1-D tensor `[0, 1, ..., n - 1]`.
    pub fn arange(n: usize) -> Self {
        Self::from_contiguous((0..n).map(|i| i as f32).collect(), &[n])
    }

    /// Samples each element uniformly from `[low, high)`.
    pub fn rand_uniform<R: Rng + ?Sized>(shape: &[usize], low: f32, high: f32, rng: &mut R) -> Result<Self> {
        let numel = checked_numel("rand_uniform", shape)?;
        // Written so that NaN bounds fail too.
        if low.partial_cmp(&high) != Some(std::cmp::Ordering::Less) || !(high - low).is_finite() {
            return Err(invalid(
                "rand_uniform",
                format!("empty or unbounded interval [{low}, {high})"),
            ));
        }
        let dist = Uniform::new(low, high);
        let data = (0..numel).map(|_| dist.sample(rng)).collect();
        Ok(Self::from_contiguous(data, shape))
    }

    /// Samples each element from a normal distribution `N(mean, std^2)`.
    pub fn rand_normal<R: Rng + ?Sized>(shape: &[usize], mean: f32, std: f32, rng: &mut R) -> Result<Self> {
        let numel = checked_numel("rand_normal", shape)?;
        let dist =
            Normal::new(mean, std).map_err(|e| invalid("rand_normal", format!("bad std {std}: {e}")))?;
        let data = (0..numel).map(|_| dist.sample(rng)).collect();
        Ok(Self::from_contiguous(data, shape))
    }

    // ----- inspection ---------------------------------------------------------

    /// The size of each axis.
    pub fn shape(&self) -> &[usize] {
        self.layout.shape()
    }

    /// The strides of each axis, in elements.
    pub fn strides(&self) -> &[usize] {
        self.layout.strides()
    }

    /// The layout (shape, strides, offset).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The number of axes.
    pub fn rank(&self) -> usize {
        self.layout.rank()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.layout.numel()
    }

    /// Size of `axis`, with a clear error when the axis does not exist.
    pub fn dim(&self, axis: usize) -> Result<usize> {
        check_axis("dim", axis, self.rank())?;
        Ok(self.shape()[axis])
    }

    /// True when the elements are densely packed in row-major order.
    pub fn is_contiguous(&self) -> bool {
        self.layout.is_contiguous()
    }

    /// The whole shared storage (not only the part this view sees).
    pub fn storage(&self) -> &[f32] {
        &self.storage
    }

    /// How many tensors (views and clones) share this tensor's storage: a way to
    /// check that nothing else still holds on to a buffer.
    pub fn storage_share_count(&self) -> usize {
        Arc::strong_count(&self.storage)
    }

    /// Whether `other` is this tensor: the same storage seen through the same
    /// layout. Storage is never written while shared, so two such tensors hold
    /// the same values for as long as both exist.
    pub fn is_same_view(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage) && self.layout == other.layout
    }

    /// The elements as one row-major slice, when the tensor is contiguous.
    pub fn as_slice(&self) -> Option<&[f32]> {
        self.is_contiguous()
            .then(|| &self.storage[self.layout.offset()..self.layout.offset() + self.numel()])
    }

    /// The elements in row-major order, copied into a new `Vec`.
    pub fn to_vec(&self) -> Vec<f32> {
        match self.as_slice() {
            Some(s) => s.to_vec(),
            None => self.map_strided(|x| x),
        }
    }

    /// The elements in row-major order as a `Vec`, without a copy when this tensor
    /// is the only owner of a contiguous storage that it covers exactly.
    pub fn into_vec(self) -> Vec<f32> {
        if self.is_contiguous() && self.layout.offset() == 0 && self.storage.len() == self.numel() {
            let numel = self.numel();
            match Arc::try_unwrap(self.storage) {
                Ok(v) => v,
                Err(shared) => shared[..numel].to_vec(),
            }
        } else {
            self.to_vec()
        }
    }

    /// This tensor's whole buffer, writable, when this tensor is its only owner
    /// and covers it exactly in row-major order: an op can then write its result
    /// over its input instead of allocating.
    pub(crate) fn sole_buffer(&mut self) -> Option<&mut [f32]> {
        let whole = self.is_contiguous() && self.layout.offset() == 0 && self.storage.len() == self.numel();
        whole
            .then(|| Arc::get_mut(&mut self.storage))
            .flatten()
            .map(Vec::as_mut_slice)
    }

    /// The element at `index`, with a clear error when it is out of range.
    pub fn get(&self, index: &[usize]) -> Result<f32> {
        if index.len() != self.rank() || index.iter().zip(self.shape()).any(|(&i, &d)| i >= d) {
            return Err(invalid(
                "get",
                format!("index {index:?} is outside shape {:?}", self.shape()),
            ));
        }
        Ok(self.storage[self.layout.index_of(index)])
    }

    /// The value of a one-element tensor (of any rank).
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(invalid(
                "item",
                format!("needs exactly one element, shape is {:?}", self.shape()),
            ));
        }
        Ok(self.storage[self.layout.offset()])
    }

    // ----- views --------------------------------------------------------------

    fn with_layout(&self, layout: Layout) -> Self {
        Tensor {
            storage: Arc::clone(&self.storage),
            layout,
        }
    }

    /// The same elements under a new shape. A view when the strides allow it,
    /// otherwise a contiguous copy.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        let numel = checked_numel("reshape", shape)?;
        if numel != self.numel() {
            return Err(TensorError::ShapeMismatch {
                op: "reshape",
                lhs: self.shape().to_vec(),
                rhs: shape.to_vec(),
            });
        }
        Ok(match self.layout.reshape(shape) {
            Some(layout) => self.with_layout(layout),
            None => Self::from_contiguous(self.to_vec(), shape),
        })
    }

    /// Reorders the axes (a view): axis `i` of the result is axis `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Self> {
        Ok(self.with_layout(self.layout.permute(perm)?))
    }

    /// Swaps two axes (a view).
    pub fn transpose(&self, a: usize, b: usize) -> Result<Self> {
        Ok(self.with_layout(self.layout.transpose(a, b)?))
    }

    /// The transpose of a matrix: swaps the last two axes (a view).
    pub fn t(&self) -> Result<Self> {
        if self.rank() < 2 {
            return Err(invalid(
                "t",
                format!("needs rank >= 2, shape is {:?}", self.shape()),
            ));
        }
        self.transpose(self.rank() - 2, self.rank() - 1)
    }

    /// Keeps `len` elements of `axis` starting at `start` (a view).
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Self> {
        Ok(self.with_layout(self.layout.narrow(axis, start, len)?))
    }

    /// Repeats axes of size 1 to reach `shape` (a view with stride 0).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Self> {
        Ok(self.with_layout(self.layout.broadcast_to(shape)?))
    }

    /// Removes an axis of size 1 (a view).
    pub fn squeeze(&self, axis: usize) -> Result<Self> {
        Ok(self.with_layout(self.layout.squeeze(axis)?))
    }

    /// Inserts an axis of size 1 at position `axis` (a view).
    pub fn unsqueeze(&self, axis: usize) -> Result<Self> {
        Ok(self.with_layout(self.layout.unsqueeze(axis)?))
    }

    /// A densely packed row-major tensor with the same elements: `self` itself
    /// (shared, no copy) when it already is one.
    pub fn contiguous(&self) -> Self {
        if self.is_contiguous() {
            self.clone()
        } else {
            Self::from_contiguous(self.to_vec(), self.shape())
        }
    }

    // ----- element-wise building blocks -----------------------------------------

    /// Applies `f` to every element, walking the strides: the general path of
    /// every unary op, and the copy inside `contiguous()`.
    pub(crate) fn map_strided(&self, f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
        let rows = StridedRows::new(self.shape(), [self.strides()], [self.layout.offset()]);
        let mut out = vec![0.0; self.numel()];
        if out.is_empty() {
            return out;
        }
        let src = &self.storage[..];
        let inner = rows.inner;
        let fill = |(r, dst): (usize, &mut [f32])| {
            let [start] = rows.row_start(r);
            let s = rows.inner_strides[0];
            if s == 1 {
                for (d, &x) in dst.iter_mut().zip(&src[start..start + inner]) {
                    *d = f(x);
                }
            } else {
                for (i, d) in dst.iter_mut().enumerate() {
                    *d = f(src[start + i * s]);
                }
            }
        };
        if out.len() >= PARALLEL_MIN_ELEMENTS {
            out.par_chunks_mut(inner).enumerate().for_each(fill);
        } else {
            out.chunks_mut(inner).enumerate().for_each(fill);
        }
        out
    }
}
