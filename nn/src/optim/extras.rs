//! What a training loop adds around the optimiser: gradient-norm clipping, a
//! learning-rate schedule, and an exponential moving average of the weights.

use autograd::{Parameter, Result};
use tensor::{Tensor, TensorError};

/// Scales all gradients together so that their global L2 norm is at most
/// `max_norm`; returns the norm before clipping (NaN or infinite if any gradient
/// is, and then nothing is scaled: the caller should stop).
///
/// `norm = sqrt(sum over parameters of sum(g^2))`; if `norm > max_norm`, every
/// `g <- g * max_norm / norm`: the direction is kept, only the step shrinks.
pub fn clip_grad_norm(params: &[Parameter], max_norm: f32) -> Result<f32> {
    let grads: Vec<Option<Tensor>> = params.iter().map(Parameter::grad).collect();
    let sq: f64 = grads
        .iter()
        .flatten()
        .map(|g| g.to_vec().iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
        .sum();
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

/// Linear warm-up from 0 to `base` over `warmup` steps, then (when `total` is
/// set) cosine decay to `min` at step `total`, else constant:
///
/// ```text
/// lr(s) = base (s + 1) / warmup                                  s < warmup
/// lr(s) = min + (base - min) (1 + cos(pi q)) / 2,  q = (s - warmup) / (total - warmup)
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// The peak learning rate.
    pub base: f32,
    /// Warm-up steps (0 for none).
    pub warmup: u64,
    /// The step at which the cosine reaches `min`; `None` for no decay.
    pub total: Option<u64>,
    /// The final learning rate of the cosine.
    pub min: f32,
}

impl LrSchedule {
    /// The learning rate at step `step` (counting from 0).
    pub fn at(&self, step: u64) -> f32 {
        if step < self.warmup {
            return self.base * (step + 1) as f32 / self.warmup as f32;
        }
        match self.total {
            Some(total) if total > self.warmup => {
                let q = ((step - self.warmup) as f64 / (total - self.warmup) as f64).min(1.0);
                let cos = 0.5 * (1.0 + (std::f64::consts::PI * q).cos());
                self.min + (self.base - self.min) * cos as f32
            }
            _ => self.base,
        }
    }
}

/// An exponential moving average of parameters, for sampling with smoothed
/// weights. At the n-th update (n = 0, 1, ...), with `p` the current weights:
///
/// ```text
/// decay = min(max_decay, (1 + n) / (10 + n))     shadow <- decay shadow + (1 - decay) p
/// ```
/// The warm-up term lets the average forget the random initial weights quickly.
pub struct Ema {
    /// The decay the warm-up rises to (0.999 in DDPM... 0.9999 for long runs).
    pub max_decay: f32,
    shadow: Vec<Tensor>,
    updates: u64,
}

impl Ema {
    /// An average that starts at the current values of `params`.
    pub fn new(params: &[Parameter], max_decay: f32) -> Ema {
        Ema {
            max_decay,
            shadow: params.iter().map(Parameter::value).collect(),
            updates: 0,
        }
    }

    /// The decay the next update will use.
    pub fn decay(&self) -> f32 {
        let n = self.updates as f32;
        self.max_decay.min((1.0 + n) / (10.0 + n))
    }

    /// Folds the current values of `params` (same order as at creation) in.
    pub fn update(&mut self, params: &[Parameter]) -> Result<()> {
        let d = self.decay();
        for (s, p) in self.shadow.iter_mut().zip(params) {
            *s = s.zip_map(&p.value(), "Ema::update", |a, b| d * a + (1.0 - d) * b)?;
        }
        self.updates += 1;
        Ok(())
    }

    /// The averaged values, in parameter order.
    pub fn shadow(&self) -> &[Tensor] {
        &self.shadow
    }

    /// Updates done so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Restores a saved average (resuming); shapes must match.
    pub fn load(&mut self, shadow: Vec<Tensor>, updates: u64) -> Result<()> {
        if shadow.len() != self.shadow.len()
            || shadow
                .iter()
                .zip(&self.shadow)
                .any(|(a, b)| a.shape() != b.shape())
        {
            return Err(TensorError::InvalidArgument {
                op: "Ema::load",
                msg: "the saved average does not match the parameters".into(),
            });
        }
        self.shadow = shadow;
        self.updates = updates;
        Ok(())
    }

    /// Writes the averaged values into `params` (for evaluation or sampling).
    pub fn copy_to(&self, params: &[Parameter]) -> Result<()> {
        for (s, p) in self.shadow.iter().zip(params) {
            p.set_value(s.clone())?;
        }
        Ok(())
    }
}
