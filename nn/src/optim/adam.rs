//! Adam (Kingma and Ba 2015) and AdamW (Loshchilov and Hutter 2019).
//!
//! With gradient `g` at step `t` (counting from 1):
//!
//! ```text
//! m <- b1 m + (1 - b1) g                 (first moment: a running mean of g)
//! v <- b2 v + (1 - b2) g^2               (second moment: a running mean of g^2)
//! m^ = m / (1 - b1^t),  v^ = v / (1 - b2^t)   (bias correction: m, v start at 0)
//! p <- p - lr m^ / (sqrt(v^) + eps)
//! ```
//! Weight decay: Adam adds `wd p` to `g` (L2 regularisation, which the adaptive
//! scaling then distorts); AdamW instead shrinks `p <- p (1 - lr wd)` directly.

use autograd::{Parameter, Result};
use tensor::{Tensor, TensorError};

use super::{update, Optimizer};

/// Adam or AdamW, with the moments kept per parameter.
pub struct Adam {
    params: Vec<Parameter>,
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to `sqrt(v^)`.
    pub eps: f32,
    /// Weight decay.
    pub weight_decay: f32,
    decoupled: bool,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: u64,
}

impl Adam {
    /// Adam with betas (0.9, 0.999) and eps 1e-8, no weight decay.
    pub fn new(params: Vec<Parameter>, lr: f32) -> Adam {
        let zeros = |p: &Parameter| vec![0.0; p.value().numel()];
        Adam {
            m: params.iter().map(zeros).collect(),
            v: params.iter().map(zeros).collect(),
            params,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            t: 0,
        }
    }

    /// AdamW: Adam with decoupled weight decay `weight_decay`.
    pub fn adamw(params: Vec<Parameter>, lr: f32, weight_decay: f32) -> Adam {
        Adam {
            weight_decay,
            decoupled: true,
            ..Adam::new(params, lr)
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// The state to save in a checkpoint: the step count and, per parameter, the
    /// first and second moments shaped like the parameter.
    pub fn state(&self) -> Result<(u64, Vec<(Tensor, Tensor)>)> {
        let moments = self
            .params
            .iter()
            .zip(self.m.iter().zip(&self.v))
            .map(|(p, (m, v))| {
                Ok((
                    Tensor::from_vec(m.clone(), &p.shape())?,
                    Tensor::from_vec(v.clone(), &p.shape())?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok((self.t, moments))
    }

    /// Restores a state saved by [`Adam::state`]; shapes must match the parameters.
    pub fn load_state(&mut self, steps: u64, moments: Vec<(Tensor, Tensor)>) -> Result<()> {
        if moments.len() != self.params.len() {
            return Err(TensorError::InvalidArgument {
                op: "Adam::load_state",
                msg: format!(
                    "{} moment pairs for {} parameters",
                    moments.len(),
                    self.params.len()
                ),
            });
        }
        for (i, (p, (m, v))) in self.params.iter().zip(&moments).enumerate() {
            for t in [m, v] {
                if t.shape() != p.shape() {
                    return Err(TensorError::ShapeMismatch {
                        op: "Adam::load_state",
                        lhs: p.shape(),
                        rhs: t.shape().to_vec(),
                    });
                }
            }
            self.m[i] = m.to_vec();
            self.v[i] = v.to_vec();
        }
        self.t = steps;
        Ok(())
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let bc1 = 1.0 - b1.powi(self.t.min(i32::MAX as u64) as i32);
        let bc2 = 1.0 - b2.powi(self.t.min(i32::MAX as u64) as i32);
        let (lr, eps, wd) = (self.lr, self.eps, self.weight_decay);
        let (l2, shrink) = if self.decoupled {
            (0.0, 1.0 - lr * wd)
        } else {
            (wd, 1.0)
        };
        for ((p, m), v) in self.params.iter().zip(&mut self.m).zip(&mut self.v) {
            update(
                p,
                #[inline(always)]
                |w, g| {
                    for (((w, m), v), &g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                        let g = g + l2 * *w;
                        *m = b1 * *m + (1.0 - b1) * g;
                        *v = b2 * *v + (1.0 - b2) * g * g;
                        *w = *w * shrink - lr * (*m / bc1) / ((*v / bc2).sqrt() + eps);
                    }
                },
            )?;
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
