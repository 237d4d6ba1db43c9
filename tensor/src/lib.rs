//! A strided `f32` tensor, and the kernels a diffusion model needs.
//!
//! - [`Tensor`]: shared storage plus a [`Layout`] (shape, strides, offset). Views
//!   (reshape, permute, narrow, broadcast, squeeze) change the layout, not the data.
//! - Element-wise ops with NumPy broadcasting ([`elementwise`]), reductions and
//!   softmax ([`reduce`]).
//! - `matmul` on `matrixmultiply::sgemm`, passing strides so transposed views are
//!   never copied ([`matmul`]).
//! - `conv2d` forward and both gradients by im2col + GEMM, parallel over the batch
//!   ([`conv`]); upsampling, concat/split, index-select and group norm kernels.
//!
//! Every fallible op returns [`Result`] with a [`TensorError`] that names the op
//! and the shapes involved.

pub mod conv;
pub mod elementwise;
pub mod error;
pub mod gemm;
pub mod group_norm;
pub mod join;
pub mod layout;
pub mod mask;
pub mod math;
pub mod matmul;
pub mod reduce;
pub mod resample;
pub mod simd;
mod strided;
mod tensor;

pub use error::{Result, TensorError};
pub use layout::{broadcast_shapes, contiguous_strides, Layout};
pub use tensor::Tensor;
