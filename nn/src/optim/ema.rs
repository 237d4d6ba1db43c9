//! An exponential moving average of the weights: sampling from the average
//! rather than the last step's weights smooths out the noise of the
//! individual optimiser steps.

use autograd::{Parameter, Result};
use tensor::{Tensor, TensorError};

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
