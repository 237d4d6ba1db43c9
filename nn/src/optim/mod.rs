//! Optimisers and the training-loop helpers around them.

mod adam;
mod extras;
mod sgd;

use autograd::{Parameter, Result};

pub use adam::Adam;
pub use extras::{clip_grad_norm, Ema, LrSchedule};
pub use sgd::Sgd;

/// Something that updates parameters from their gradients.
pub trait Optimizer {
    /// One update from the current gradients. Parameters without a gradient are
    /// left alone.
    fn step(&mut self) -> Result<()>;

    /// The parameters this optimiser updates.
    fn params(&self) -> &[Parameter];

    /// Sets the learning rate (for schedules).
    fn set_lr(&mut self, lr: f32);

    /// Forgets every parameter's gradient, before the next backward pass.
    fn zero_grad(&self) {
        self.params().iter().for_each(Parameter::zero_grad);
    }
}

/// The gradient of `p` as a row-major `Vec`, or `None` when it has none.
fn grad_or_skip(p: &Parameter) -> Option<Vec<f32>> {
    p.grad().map(|g| g.to_vec())
}
