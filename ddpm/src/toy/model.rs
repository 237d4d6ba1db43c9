//! The toy's epsilon-predictor: a small MLP on the point, told the time step
//! through a sinusoidal embedding added to every hidden layer.
//!
//! ```text
//! eps_theta(x, t) = W_out h_L,   h_l = silu(W_l h_{l-1} + b_l + V_l emb(t)),   h_0 = x
//! ```

use autograd::{no_grad, Parameter, Result, Var};
use nn::init::Init;
use nn::layers::Linear;
use nn::module::join;
use nn::Module;
use rand::Rng;
use tensor::{Tensor, TensorError};

use crate::unet::timestep_embedding;

/// Dimension of the sinusoidal time embedding.
const EMB_DIM: usize = 32;

/// The epsilon-predictor: an MLP on the point, with the time embedding projected
/// into and added to every hidden layer, and a zero-initialised output layer (the
/// untrained model predicts no noise, as the U-Net does).
pub struct ToyModel {
    layers: Vec<Linear>,
    time: Vec<Linear>,
    output: Linear,
}

impl ToyModel {
    /// `depth` hidden layers of `hidden` units.
    pub fn new<R: Rng + ?Sized>(hidden: usize, depth: usize, rng: &mut R) -> ToyModel {
        let depth = depth.max(1);
        let layers = (0..depth)
            .map(|l| Linear::new(if l == 0 { 2 } else { hidden }, hidden, Init::KaimingUniform, rng))
            .collect();
        let time = (0..depth)
            .map(|_| Linear::new(EMB_DIM, hidden, Init::KaimingUniform, rng))
            .collect();
        let output = Linear::new(hidden, 2, Init::Zeros, rng);
        ToyModel { layers, time, output }
    }

    /// `eps_theta(x, t)` for points `x` (`[B, 2]`) at step indices `t` (one each).
    pub fn forward(&self, x: &Var, t: &[usize]) -> Result<Var> {
        if x.shape().len() != 2 || x.shape()[1] != 2 || x.shape()[0] != t.len() {
            return Err(TensorError::InvalidArgument {
                op: "ToyModel",
                msg: format!(
                    "need [B, 2] points and B steps, got {:?} and {}",
                    x.shape(),
                    t.len()
                ),
            });
        }
        let emb = Var::constant(timestep_embedding(t, EMB_DIM));
        let mut h = x.clone();
        for (layer, time) in self.layers.iter().zip(&self.time) {
            h = layer.forward(&h)?.add(&time.forward(&emb)?)?.silu();
        }
        self.output.forward(&h)
    }

    /// `eps_theta(x, t)` with every point at step index `t`, without the tape.
    pub fn eps(&self, x: &Tensor, t: usize) -> Result<Tensor> {
        let steps = vec![t; x.shape()[0]];
        no_grad(|| Ok(self.forward(&Var::constant(x.clone()), &steps)?.value().clone()))
    }
}

impl Module for ToyModel {
    fn collect_parameters(&self, prefix: &str, out: &mut Vec<(String, Parameter)>) {
        for (i, (l, t)) in self.layers.iter().zip(&self.time).enumerate() {
            l.collect_parameters(&join(prefix, &format!("layers.{i}")), out);
            t.collect_parameters(&join(prefix, &format!("time.{i}")), out);
        }
        self.output.collect_parameters(&join(prefix, "output"), out);
    }
}
