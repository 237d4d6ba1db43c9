//! `Linear`: `y = x W^T + b`, over the last axis of `x`.

use autograd::{Parameter, Result, Var};
use rand::Rng;

use crate::init::{uniform, Init};
use crate::module::{join, Module};

/// A fully connected layer: `weight` `[out, in]` (PyTorch layout), `bias` `[out]`.
pub struct Linear {
    /// `[out, in]`.
    pub weight: Parameter,
    /// `[out]`.
    pub bias: Parameter,
}

impl Linear {
    /// A layer from `inputs` to `outputs` features; the bias starts as PyTorch's
    /// (`U(+-1/sqrt(in))`) unless the weight init is `Zeros`, then it is zero too.
    pub fn new<R: Rng + ?Sized>(inputs: usize, outputs: usize, init: Init, rng: &mut R) -> Linear {
        let weight = init.tensor(&[outputs, inputs], inputs, outputs, rng);
        let bias = match init {
            Init::KaimingUniform => uniform(&[outputs], 1.0 / (inputs.max(1) as f32).sqrt(), rng),
            _ => tensor::Tensor::zeros(&[outputs]),
        };
        Linear {
            weight: Parameter::new(weight),
            bias: Parameter::new(bias),
        }
    }

    /// `x W^T + b` over the last axis: `[..., in]` -> `[..., out]`.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        let wt = self.weight.var().transpose(0, 1)?;
        x.matmul(&wt)?.add(&self.bias.var())
    }
}

impl Module for Linear {
    fn collect_parameters(&self, prefix: &str, out: &mut Vec<(String, Parameter)>) {
        out.push((join(prefix, "weight"), self.weight.clone()));
        out.push((join(prefix, "bias"), self.bias.clone()));
    }
}
