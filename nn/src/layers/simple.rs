//! Parameter-free layers: `SiLU`, `Dropout`, `Upsample`.

use std::cell::{Cell, RefCell};

use autograd::{Parameter, Result, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tensor::TensorError;

use crate::module::Module;

/// SiLU (swish), `x * sigmoid(x)`.
pub struct SiLU;

impl SiLU {
    /// `x * sigmoid(x)`.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        Ok(x.silu())
    }
}

impl Module for SiLU {
    fn collect_parameters(&self, _prefix: &str, _out: &mut Vec<(String, Parameter)>) {}
}

/// Dropout with probability `p` while training, the identity in evaluation. It
/// owns a seeded generator, so runs are reproducible.
pub struct Dropout {
    p: f32,
    training: Cell<bool>,
    rng: RefCell<StdRng>,
}

impl Dropout {
    /// Dropout with probability `p` in `[0, 1)`, in training mode, seeded.
    pub fn new(p: f32, seed: u64) -> Result<Dropout> {
        if !(0.0..1.0).contains(&p) {
            return Err(TensorError::InvalidArgument {
                op: "Dropout::new",
                msg: format!("probability {p} is not in [0, 1)"),
            });
        }
        Ok(Dropout {
            p,
            training: Cell::new(true),
            rng: RefCell::new(StdRng::seed_from_u64(seed)),
        })
    }

    /// The generator's state, to save with a checkpoint; restore with `set_rng`.
    pub fn rng(&self) -> StdRng {
        self.rng.borrow().clone()
    }

    /// Replaces the generator (resuming from a checkpoint).
    pub fn set_rng(&self, rng: StdRng) {
        *self.rng.borrow_mut() = rng;
    }

    /// Zeroes each element with probability `p` and scales the rest by `1 / (1 - p)` while
    /// training; the identity in evaluation.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        if self.training.get() && self.p > 0.0 {
            x.dropout(self.p, &mut *self.rng.borrow_mut())
        } else {
            Ok(x.clone())
        }
    }

    /// The mask this layer would apply next, for a kernel that fuses dropout
    /// (`GroupNorm::forward_silu_dropout`): `None` in evaluation or when `p = 0`;
    /// otherwise `p` and a seed drawn from the generator exactly as
    /// [`Dropout::forward`] draws it, so the masks are the same.
    pub fn draw(&self) -> Option<tensor::group_norm::Dropout> {
        (self.training.get() && self.p > 0.0).then(|| tensor::group_norm::Dropout {
            p: self.p,
            seed: self.rng.borrow_mut().gen(),
        })
    }
}

impl Module for Dropout {
    fn collect_parameters(&self, _prefix: &str, _out: &mut Vec<(String, Parameter)>) {}

    fn set_training(&self, training: bool) {
        self.training.set(training);
    }
}

/// Nearest-neighbour upsampling of `[B, C, H, W]` by an integer factor.
pub struct Upsample {
    /// The factor (2 in the U-Net).
    pub scale: usize,
}

impl Upsample {
    /// Each pixel repeated `scale x scale` times: `[B, C, H, W]` -> `[B, C, sH, sW]`.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        x.upsample_nearest2d(self.scale)
    }
}

impl Module for Upsample {
    fn collect_parameters(&self, _prefix: &str, _out: &mut Vec<(String, Parameter)>) {}
}
