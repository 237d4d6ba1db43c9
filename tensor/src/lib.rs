//! A strided `f32` tensor, and the kernels a diffusion model needs.
//!
//! - [`Tensor`]: shared storage plus a [`Layout`] (shape, strides, offset). Views
//!   (reshape, permute, narrow, broadcast, squeeze) change the layout, not the data.
//! - Element-wise ops with NumPy broadcasting ([`elementwise`]), reductions and
//!   softmax ([`reduce`]).
//! - `matmul` with batch broadcasting, passing strides so transposed views are
//!   never copied ([`matmul`]), on a strided GEMM ([`gemm`]): `matrixmultiply`'s
//!   `sgemm`, or a kernel of our own for short, wide products.
//! - `conv2d` forward and both gradients, parallel over the batch ([`conv`]), by
//!   one of two algorithms: im2col + GEMM for any kernel, stride and padding, or
//!   Winograd's F(2x2, 3x3) for 3x3 convolutions with stride 1 and padding 1 (at
//!   least 4 channels in and out).
//! - Upsampling ([`resample`]), concat/split and index-select ([`join`]), group
//!   norm ([`group_norm`]) and dropout masks ([`mask`]) as kernels; a
//!   vectorisable `exp`, sigmoid and SiLU ([`math`]), and the SIMD layer the
//!   kernels are written over, with AVX-512, AVX2 + FMA and portable
//!   implementations chosen at run time ([`simd`]).
//! - [`splitmix64`], the mixing function of the engine's counter-based random
//!   streams ([`rng`]), for other crates to reuse.
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
pub mod rng;
pub mod simd;
mod strided;
mod tensor;
mod uninit;

pub use error::{Result, TensorError};
pub use layout::{broadcast_shapes, checked_numel, contiguous_strides, Layout};
pub use rng::splitmix64;
pub use tensor::Tensor;
