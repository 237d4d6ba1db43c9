//! Stochastic gradient descent with momentum (PyTorch's form):
//!
//! ```text
//! v <- mu v + g          p <- p - lr v
//! ```

use autograd::{Parameter, Result};

use super::{update, Optimizer};

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
        let (lr, mu) = (self.lr, self.momentum);
        for (p, vel) in self.params.iter().zip(&mut self.velocity) {
            update(p, |w, g| {
                for ((w, v), &g) in w.iter_mut().zip(vel.iter_mut()).zip(g) {
                    *v = mu * *v + g;
                    *w -= lr * *v;
                }
            })?;
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
