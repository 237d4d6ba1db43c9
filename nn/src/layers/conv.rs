//! `Conv2d`: a 2-D convolution layer with bias, NCHW.
//!
//! Under [`autograd::no_grad`] (sampling, evaluation) the layer keeps its weight
//! prepared for the convolution kernels (`tensor::conv::PreparedWeights`: the
//! Winograd-domain filters, or the transposed weight matrix) and reuses it for
//! as long as the weight is the same tensor, so a fixed model rearranges its
//! filters once instead of at every evaluation. While recording (training) the
//! weights change every step and the plain convolution runs.

use std::cell::RefCell;
use std::rc::Rc;

use autograd::{Parameter, Result, Var};
use rand::Rng;
use tensor::conv::{Conv2dParams, PreparedWeights};
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
    /// The weight prepared for inference, from the last `no_grad` forward pass.
    prepared: RefCell<Option<Rc<PreparedWeights>>>,
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
            prepared: RefCell::new(None),
        }
    }

    /// The convolution of `[B, in, H, W]` plus the bias: `[B, out, H', W']`.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        if autograd::is_recording() {
            return x.conv2d(&self.weight.var(), Some(&self.bias.var()), self.params);
        }
        let prepared = self.prepared()?;
        x.conv2d_prepared(&prepared, Some(&self.bias.var()))
    }

    /// `forward(x) + addend` in one pass (`Var::conv2d_add`: the same values),
    /// with `addend` `[B, out, H', W']` (a residual) or `[B, out, 1, 1]` (one value
    /// per image and channel, such as a projected time embedding).
    pub fn forward_add(&self, x: &Var, addend: &Var) -> Result<Var> {
        if autograd::is_recording() {
            return x.conv2d_add(&self.weight.var(), Some(&self.bias.var()), addend, self.params);
        }
        let prepared = self.prepared()?;
        x.conv2d_prepared_add(&prepared, Some(&self.bias.var()), addend)
    }

    /// The weight prepared for inference: the cached one while the weight is
    /// the tensor it was prepared from, else prepared anew (and cached).
    fn prepared(&self) -> Result<Rc<PreparedWeights>> {
        let weight = self.weight.value();
        let mut cache = self.prepared.borrow_mut();
        match cache.as_ref() {
            Some(p) if p.is_for(&weight, self.params) => Ok(Rc::clone(p)),
            _ => {
                let p = Rc::new(PreparedWeights::new(&weight, self.params)?);
                *cache = Some(Rc::clone(&p));
                Ok(p)
            }
        }
    }
}

impl Module for Conv2d {
    fn collect_parameters(&self, prefix: &str, out: &mut Vec<(String, Parameter)>) {
        out.push((join(prefix, "weight"), self.weight.clone()));
        out.push((join(prefix, "bias"), self.bias.clone()));
    }
}
