//! Losses and dropout.
//!
//! ```text
//! L = mean((p - t)^2):           dp = 2 (p - t) / N * g,   dt = -dp
//! L = -mean_i log softmax(z_i)[y_i] (cross-entropy over B rows):
//!                                dz = (softmax(z) - onehot(y)) / B * g
//! y = x * m / (1 - p) (dropout): dx = g * m / (1 - p), with the same mask m
//! ```

use rand::Rng;
use tensor::{math, Result, Tensor, TensorError};

use crate::Var;

impl Var {
    /// Mean squared error between `self` (a prediction) and `target`, same shapes,
    /// as a rank-0 value.
    pub fn mse_loss(&self, target: &Var) -> Result<Var> {
        if self.shape() != target.shape() {
            return Err(TensorError::ShapeMismatch {
                op: "mse_loss",
                lhs: self.shape().to_vec(),
                rhs: target.shape().to_vec(),
            });
        }
        let diff = self.value().sub(target.value())?;
        let n = diff.numel().max(1) as f32;
        let loss = diff.square().sum_all().mul_scalar(1.0 / n);
        let (p, t) = (self.requires_grad(), target.requires_grad());
        Ok(Var::from_op(loss, "mse_loss", &[self, target], move |g| {
            let dp = diff.mul_scalar(2.0 * g.item()? / n);
            let dt = t.then(|| dp.neg());
            Ok(vec![p.then_some(dp), dt])
        }))
    }

    /// Cross-entropy of logits `[B, C]` against class `labels` (one per row), as the
    /// mean over rows of `-log softmax(z)[label]`. Fused, so the softmax is computed
    /// once and the backward is the classic `softmax - onehot`.
    pub fn cross_entropy(&self, labels: &[usize]) -> Result<Var> {
        let (b, c) = match self.shape() {
            &[b, c] if b == labels.len() && c > 0 => (b, c),
            _ => {
                return Err(TensorError::InvalidArgument {
                    op: "cross_entropy",
                    msg: format!("logits {:?} need shape [{}, classes]", self.shape(), labels.len()),
                })
            }
        };
        if let Some(&bad) = labels.iter().find(|&&l| l >= c) {
            return Err(TensorError::InvalidArgument {
                op: "cross_entropy",
                msg: format!("label {bad} is not below the number of classes {c}"),
            });
        }
        let logp = self.value().log_softmax(1)?.to_vec();
        let nll: f64 = labels
            .iter()
            .enumerate()
            .map(|(i, &l)| -(logp[i * c + l] as f64))
            .sum();
        let loss = Tensor::scalar((nll / b as f64) as f32);
        let labels = labels.to_vec();
        Ok(Var::from_op(loss, "cross_entropy", &[self], move |g| {
            let scale = g.item()? / b as f32;
            let mut dz: Vec<f32> = logp.iter().map(|&lp| math::exp(lp) * scale).collect();
            for (i, &l) in labels.iter().enumerate() {
                dz[i * c + l] -= scale;
            }
            Ok(vec![Some(Tensor::from_vec(dz, &[b, c])?)])
        }))
    }

    /// Inverted dropout: zeroes each element with probability `p` and scales the
    /// rest by `1 / (1 - p)`, so the expected value is unchanged. `p = 0` is the
    /// identity (use it, or skip the call, in evaluation mode).
    pub fn dropout<R: Rng + ?Sized>(&self, p: f32, rng: &mut R) -> Result<Var> {
        if !(0.0..1.0).contains(&p) {
            return Err(TensorError::InvalidArgument {
                op: "dropout",
                msg: format!("probability {p} is not in [0, 1)"),
            });
        }
        if p == 0.0 {
            return Ok(self.clone());
        }
        // One draw from `rng` seeds a counter-based mask (`tensor::mask`), computed
        // in parallel and vectorised instead of one generator call per element, and
        // computed again from the seed in backward: the tape keeps no mask tensor.
        let seed = rng.gen();
        let y = self.value().dropout(p, seed)?;
        Ok(Var::from_op(y, "dropout", &[self], move |g| {
            Ok(vec![Some(g.dropout(p, seed)?)])
        }))
    }
}
