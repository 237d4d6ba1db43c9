//! The one error type of the tensor crate.
//!
//! Every fallible op returns [`Result`]. Errors name the op and the shapes
//! involved, so that a user sees `matmul: shapes do not match: [2, 3] vs [4, 5]`
//! rather than an index panic from deep inside a kernel.

use std::fmt;

/// What went wrong in a tensor op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensorError {
    /// Two shapes that the op needs to agree (or broadcast) do not.
    ShapeMismatch {
        /// The op that was called.
        op: &'static str,
        /// Shape of the left (first) operand.
        lhs: Vec<usize>,
        /// Shape of the right (second) operand, or the requested shape.
        rhs: Vec<usize>,
    },
    /// An axis index is not below the tensor's rank.
    AxisOutOfRange {
        /// The op that was called.
        op: &'static str,
        /// The axis that was asked for.
        axis: usize,
        /// The rank of the tensor.
        rank: usize,
    },
    /// The number of elements given does not match the shape.
    ElementCount {
        /// The op that was called.
        op: &'static str,
        /// Elements the shape needs.
        expected: usize,
        /// Elements that were given.
        got: usize,
    },
    /// A shape too large to lay out: the product of its non-zero sizes overflows
    /// `usize`, or its size in bytes exceeds `isize::MAX` (see
    /// [`checked_numel`](crate::layout::checked_numel)). Zero-size shapes count
    /// too: their strides are products of the same sizes.
    ShapeTooLarge {
        /// The op that was called.
        op: &'static str,
        /// The shape that was asked for.
        shape: Vec<usize>,
    },
    /// Any other invalid argument (a bad range, stride, permutation...).
    InvalidArgument {
        /// The op that was called.
        op: &'static str,
        /// A sentence that says what is wrong.
        msg: String,
    },
}

impl fmt::Display for TensorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorError::ShapeMismatch { op, lhs, rhs } => {
                write!(f, "{op}: shapes do not match: {lhs:?} vs {rhs:?}")
            }
            TensorError::AxisOutOfRange { op, axis, rank } => {
                write!(f, "{op}: axis {axis} is out of range for a tensor of rank {rank}")
            }
            TensorError::ElementCount { op, expected, got } => {
                write!(
                    f,
                    "{op}: the shape needs {expected} elements but {got} were given"
                )
            }
            TensorError::ShapeTooLarge { op, shape } => write!(
                f,
                "{op}: shape {shape:?} is too large: the product of its non-zero sizes \
                 overflows usize or exceeds isize::MAX bytes"
            ),
            TensorError::InvalidArgument { op, msg } => write!(f, "{op}: {msg}"),
        }
    }
}

impl std::error::Error for TensorError {}

/// The tensor crate's result type.
pub type Result<T> = std::result::Result<T, TensorError>;

/// Shorthand for an [`TensorError::InvalidArgument`].
pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> TensorError {
    TensorError::InvalidArgument { op, msg: msg.into() }
}

/// Checks that `axis < rank`.
pub(crate) fn check_axis(op: &'static str, axis: usize, rank: usize) -> Result<()> {
    if axis < rank {
        Ok(())
    } else {
        Err(TensorError::AxisOutOfRange { op, axis, rank })
    }
}
