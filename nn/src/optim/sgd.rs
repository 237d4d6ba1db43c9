//! Stochastic gradient descent with momentum (PyTorch's form):
//!
//! ```text
//! v <- mu v + g          p <- p - lr v
//! ```

use autograd::{Parameter, Result};
use tensor::Tensor;

use super::{grad_or_skip, Optimizer};

/// SGD with momentum `mu` (0 for plain SGD).
pub struct Sgd {
    params: Vec<Parameter>,
    /// Learning rate.
    pub lr: f32,
    /// Momentum coefficient.
    pub momentum: f32,
    velocity: Vec<Vec<f32>>,
}

impl Sgd {
    /// SGD over `params`.
    pub fn new(params: Vec<Parameter>, lr: f32, momentum: f32) -> Sgd {
        let velocity = params.iter().map(|p| vec![0.0; p.value().numel()]).collect();
        Sgd {
            params,
            lr,
            momentum,
            velocity,
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        for (p, vel) in self.params.iter().zip(&mut self.velocity) {
            let Some(g) = grad_or_skip(p) else { continue };
            let mut w = p.value().into_vec();
            for ((w, v), &g) in w.iter_mut().zip(vel.iter_mut()).zip(&g) {
                *v = self.momentum * *v + g;
                *w -= self.lr * *v;
            }
            p.set_value(Tensor::from_vec(w, &p.shape())?)?;
        }
        Ok(())
    }

    fn params(&self) -> &[Parameter] {
        &self.params
    }

    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
}
