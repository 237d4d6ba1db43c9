//! `Conv2d`: a 2-D convolution layer with bias, NCHW.

use autograd::{Parameter, Result, Var};
use rand::Rng;
use tensor::conv::Conv2dParams;
use tensor::Tensor;

use crate::init::{uniform, Init};
use crate::module::{join, Module};

/// `weight` `[out, in, k, k]`, `bias` `[out]`, with a stride and zero padding.
pub struct Conv2d {
    /// `[out, in, k, k]`.
    pub weight: Parameter,
    /// `[out]`.
    pub bias: Parameter,
    /// Stride and padding.
    pub params: Conv2dParams,
}

impl Conv2d {
    /// A `k x k` convolution from `cin` to `cout` channels. With `Init::Zeros` the
    /// bias starts at zero too; otherwise as PyTorch's (`U(+-1/sqrt(fan_in))`) for
    /// Kaiming, zero for variance scaling (as the DDPM code does).
    pub fn new<R: Rng + ?Sized>(
        cin: usize,
        cout: usize,
        k: usize,
        params: Conv2dParams,
        init: Init,
        rng: &mut R,
    ) -> Conv2d {
        let (fan_in, fan_out) = (cin * k * k, cout * k * k);
        let weight = init.tensor(&[cout, cin, k, k], fan_in, fan_out, rng);
        let bias = match init {
            Init::KaimingUniform => uniform(&[cout], 1.0 / (fan_in.max(1) as f32).sqrt(), rng),
            _ => Tensor::zeros(&[cout]),
        };
        Conv2d {
            weight: Parameter::new(weight),
            bias: Parameter::new(bias),
            params,
        }
    }

    /// The convolution of `[B, in, H, W]` plus the bias: `[B, out, H', W']`.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        x.conv2d(&self.weight.var(), Some(&self.bias.var()), self.params)
    }
}

impl Module for Conv2d {
    fn collect_parameters(&self, prefix: &str, out: &mut Vec<(String, Parameter)>) {
        out.push((join(prefix, "weight"), self.weight.clone()));
        out.push((join(prefix, "bias"), self.bias.clone()));
    }
}
