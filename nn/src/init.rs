//! Weight initialisers.
//!
//! A layer's weights start random so that units differ, scaled so that the
//! variance of activations neither explodes nor vanishes with depth. With
//! `fan_in` inputs per output (`in * kh * kw` for a convolution):
//!
//! - [`Init::KaimingUniform`]: PyTorch's default for `Linear` and `Conv2d`,
//!   `U(-b, b)` with `b = 1 / sqrt(fan_in)` (He et al. with `a = sqrt 5`).
//! - [`Init::VarianceScaling`]: the original DDPM code's default (TensorFlow's
//!   `variance_scaling(scale, "fan_avg", "uniform")`): `b = sqrt(3 scale / fan_avg)`
//!   with `fan_avg = (fan_in + fan_out) / 2`.
//! - [`Init::Zeros`]: for the layers that must start at zero (the last conv of each
//!   residual block, so that the untrained U-Net outputs zero).

use rand::Rng;
use tensor::Tensor;

/// How to fill a weight tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.
    KaimingUniform,
    /// `U(-b, b)` with `b = sqrt(3 scale / fan_avg)`.
    VarianceScaling {
        /// The variance scale (1 in DDPM; 1e-10 stands for "almost zero" there).
        scale: f32,
    },
    /// All zeros.
    Zeros,
}

impl Init {
    /// A tensor of `shape` for a layer with `fan_in` inputs and `fan_out` outputs.
    pub fn tensor<R: Rng + ?Sized>(
        self,
        shape: &[usize],
        fan_in: usize,
        fan_out: usize,
        rng: &mut R,
    ) -> Tensor {
        let bound = match self {
            Init::Zeros => return Tensor::zeros(shape),
            Init::KaimingUniform => 1.0 / (fan_in.max(1) as f32).sqrt(),
            Init::VarianceScaling { scale } => {
                (3.0 * scale / ((fan_in + fan_out).max(1) as f32 / 2.0)).sqrt()
            }
        };
        uniform(shape, bound, rng)
    }
}

/// `U(-bound, bound)` (zeros when `bound` is 0).
pub fn uniform<R: Rng + ?Sized>(shape: &[usize], bound: f32, rng: &mut R) -> Tensor {
    if bound > 0.0 {
        Tensor::rand_uniform(shape, -bound, bound, rng).expect("bound > 0 gives a valid interval")
    } else {
        Tensor::zeros(shape)
    }
}
