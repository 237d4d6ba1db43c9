//! Gradient-norm clipping: one bad batch's huge gradient shrinks to a bounded
//! step in the same direction instead of throwing the weights away.

use autograd::{Parameter, Result};
use tensor::Tensor;

/// Scales all gradients together so that their global L2 norm is at most
/// `max_norm`; returns the norm before clipping (NaN or infinite if any gradient
/// is, and then nothing is scaled: the caller should stop).
///
/// `norm = sqrt(sum over parameters of sum(g^2))`; if `norm > max_norm`, every
/// `g <- g * max_norm / norm`: the direction is kept, only the step shrinks.
pub fn clip_grad_norm(params: &[Parameter], max_norm: f32) -> Result<f32> {
    let grads: Vec<Option<Tensor>> = params.iter().map(Parameter::grad).collect();
    let sq: f64 = grads.iter().flatten().map(Tensor::sum_squares).sum();
    let norm = sq.sqrt() as f32;
    if norm.is_finite() && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for (p, g) in params.iter().zip(grads) {
            if let Some(g) = g {
                p.set_grad(Some(g.mul_scalar(scale)))?;
            }
        }
    }
    Ok(norm)
}
