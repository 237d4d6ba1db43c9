//! Shape, strides and offset: how a flat buffer is read as an n-dimensional array.
//!
//! Element `[i0, i1, ..., ik]` of a tensor lives at
//! `offset + i0 * strides[0] + ... + ik * strides[k]` in its storage. Every view
//! (transpose, slice, broadcast, squeeze) is a new `Layout` over the same storage:
//! no element is copied. A stride of 0 repeats one element along an axis, which is
//! how broadcasting works without materialising the repeated copies.

use crate::error::{check_axis, invalid, Result, TensorError};

/// The number of elements of `shape`, or [`TensorError::ShapeTooLarge`] when the
/// shape cannot be laid out: the product of its non-zero sizes overflows `usize`
/// or its `f32`s would take more than `isize::MAX` bytes (the most one
/// allocation, or one pointer offset, can span).
///
/// Zero sizes are left out of the product on purpose: `[0, 1 << 62, 8]` holds no
/// element, but its row-major strides (`8 << 62`, 8, 1) overflow all the same,
/// and every view or op that walks it would compute them. Every constructor that
/// takes a shape checks it here first.
pub fn checked_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    let too_large = || TensorError::ShapeTooLarge {
        op,
        shape: shape.to_vec(),
    };
    let nonzero = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(too_large)?;
    let max_elements = isize::MAX as usize / std::mem::size_of::<f32>();
    if nonzero > max_elements {
        return Err(too_large());
    }
    Ok(if shape.contains(&0) { 0 } else { nonzero })
}

/// The strides of a densely packed, row-major ("C order") array of `shape`.
///
/// # Panics
/// If a stride overflows `usize`: a shape that [`checked_numel`] rejects.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = Some(1usize);
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc.unwrap_or_else(|| panic!("contiguous_strides: a stride of shape {shape:?} overflows usize"));
        acc = acc.and_then(|a| a.checked_mul(d));
    }
    strides
}

/// The shape that `a` and `b` broadcast to, NumPy style: align the shapes on the
/// right; each pair of dimensions must be equal or one of them must be 1. An
/// error too when the result is too large ([`checked_numel`]).
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() {
            1
        } else {
            a[i - (rank - a.len())]
        };
        let db = if i < rank - b.len() {
            1
        } else {
            b[i - (rank - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(TensorError::ShapeMismatch {
                    op,
                    lhs: a.to_vec(),
                    rhs: b.to_vec(),
                })
            }
        };
    }
    checked_numel(op, &out)?;
    Ok(out)
}

/// How to read a flat buffer as an n-dimensional array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

impl Layout {
    /// A densely packed row-major layout of `shape`, starting at 0.
    ///
    /// # Panics
    /// If a stride overflows (see [`contiguous_strides`]); tensor constructors
    /// check their shapes with [`checked_numel`] before they get here.
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }

    /// The size of each axis.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// How far apart (in elements) neighbours along each axis are.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Where element `[0, 0, ..., 0]` is in the storage.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The number of axes.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the elements are densely packed in row-major order, so that the
    /// view is exactly `storage[offset..offset + numel]`. Axes of size 1 may have
    /// any stride.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d;
        }
        true
    }

    /// One past the largest storage index this layout can touch (0 when empty).
    pub fn storage_end(&self) -> usize {
        if self.numel() == 0 {
            return self.offset;
        }
        self.offset
            + self
                .shape
                .iter()
                .zip(&self.strides)
                .map(|(&d, &s)| (d - 1) * s)
                .sum::<usize>()
            + 1
    }

    /// Storage index of the element at `index`.
    pub fn index_of(&self, index: &[usize]) -> usize {
        self.offset
            + index
                .iter()
                .zip(&self.strides)
                .map(|(&i, &s)| i * s)
                .sum::<usize>()
    }

    /// Reorders the axes: axis `i` of the result is axis `perm[i]` of `self`.
    pub fn permute(&self, perm: &[usize]) -> Result<Self> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        if perm.len() != rank {
            return Err(invalid(
                "permute",
                format!("permutation {perm:?} does not match rank {rank}"),
            ));
        }
        for &p in perm {
            if p >= rank || seen[p] {
                return Err(invalid(
                    "permute",
                    format!("{perm:?} is not a permutation of 0..{rank}"),
                ));
            }
            seen[p] = true;
        }
        Ok(Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        })
    }

    /// Swaps two axes.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Self> {
        check_axis("transpose", a, self.rank())?;
        check_axis("transpose", b, self.rank())?;
        let mut out = self.clone();
        out.shape.swap(a, b);
        out.strides.swap(a, b);
        Ok(out)
    }

    /// Keeps `len` elements of `axis`, starting at `start`.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Self> {
        check_axis("narrow", axis, self.rank())?;
        if start + len > self.shape[axis] {
            return Err(invalid(
                "narrow",
                format!(
                    "range {start}..{} is outside axis {axis} of size {} (shape {:?})",
                    start + len,
                    self.shape[axis],
                    self.shape
                ),
            ));
        }
        let mut out = self.clone();
        if len > 0 {
            out.offset += start * self.strides[axis];
        }
        out.shape[axis] = len;
        Ok(out)
    }

    /// Views the array as `shape` by repeating axes of size 1 (stride 0) and by
    /// adding leading axes. Fails when a dimension is neither equal nor 1, or
    /// when `shape` is too large ([`checked_numel`]).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Self> {
        checked_numel("broadcast_to", shape)?;
        let err = || TensorError::ShapeMismatch {
            op: "broadcast_to",
            lhs: self.shape.clone(),
            rhs: shape.to_vec(),
        };
        if shape.len() < self.rank() {
            return Err(err());
        }
        let lead = shape.len() - self.rank();
        let mut strides = vec![0; shape.len()];
        for (i, &d) in shape.iter().enumerate().skip(lead) {
            let (sd, ss) = (self.shape[i - lead], self.strides[i - lead]);
            strides[i] = if sd == d {
                ss
            } else if sd == 1 {
                0
            } else {
                return Err(err());
            };
        }
        Ok(Layout {
            shape: shape.to_vec(),
            strides,
            offset: self.offset,
        })
    }

    /// Views the same elements (in row-major order) under a new shape, if the
    /// strides allow it without a copy; `None` when a copy is needed, or when
    /// `shape` is too large to have strides ([`checked_numel`]).
    ///
    /// Works by grouping the old axes into runs that are contiguous with respect to
    /// each other, and checking that every new axis falls inside one run.
    pub fn reshape(&self, shape: &[usize]) -> Option<Self> {
        checked_numel("reshape", shape).ok()?;
        if self.is_contiguous() {
            return Some(Layout {
                shape: shape.to_vec(),
                strides: contiguous_strides(shape),
                offset: self.offset,
            });
        }
        // Drop size-1 axes: their strides mean nothing.
        let old: Vec<(usize, usize)> = self
            .shape
            .iter()
            .zip(&self.strides)
            .filter(|(&d, _)| d != 1)
            .map(|(&d, &s)| (d, s))
            .collect();
        let mut strides = vec![0; shape.len()];
        let (mut oi, mut ni) = (0, 0);
        while ni < shape.len() {
            if shape[ni] == 1 {
                strides[ni] = 1;
                ni += 1;
                continue;
            }
            // Collect a run of old axes (oi..oj) whose product equals the product of
            // new axes (ni..nj), requiring the old run to be internally contiguous.
            let (mut old_prod, mut new_prod) = (old.get(oi)?.0, shape[ni]);
            let (mut oj, mut nj) = (oi + 1, ni + 1);
            while old_prod != new_prod {
                if old_prod < new_prod {
                    let (d, s) = *old.get(oj)?;
                    if old[oj - 1].1 != d * s {
                        return None;
                    }
                    old_prod *= d;
                    oj += 1;
                } else {
                    new_prod *= *shape.get(nj)?;
                    nj += 1;
                }
            }
            // The run's innermost stride; new axes get strides from the inside out.
            let mut stride = old[oj - 1].1;
            for k in (ni..nj).rev() {
                strides[k] = stride;
                stride *= shape[k];
            }
            oi = oj;
            ni = nj;
        }
        (oi == old.len()).then(|| Layout {
            shape: shape.to_vec(),
            strides,
            offset: self.offset,
        })
    }

    /// Removes `axis`, which must have size 1.
    pub fn squeeze(&self, axis: usize) -> Result<Self> {
        check_axis("squeeze", axis, self.rank())?;
        if self.shape[axis] != 1 {
            return Err(invalid(
                "squeeze",
                format!(
                    "axis {axis} of shape {:?} has size {}, not 1",
                    self.shape, self.shape[axis]
                ),
            ));
        }
        let mut out = self.clone();
        out.shape.remove(axis);
        out.strides.remove(axis);
        Ok(out)
    }

    /// Inserts an axis of size 1 before position `axis` (`axis <= rank`).
    pub fn unsqueeze(&self, axis: usize) -> Result<Self> {
        check_axis("unsqueeze", axis, self.rank() + 1)?;
        let mut out = self.clone();
        out.shape.insert(axis, 1);
        out.strides.insert(axis, 1);
        Ok(out)
    }
}
