//! Optimisers and the training-loop helpers around them: SGD and Adam(W), plus
//! gradient clipping (`clip`), a learning-rate schedule (`lr`) and an EMA of the
//! weights (`ema`).

mod adam;
mod clip;
mod ema;
mod lr;
mod sgd;

use autograd::{Parameter, Result};

pub use adam::Adam;
pub use clip::clip_grad_norm;
pub use ema::Ema;
pub use lr::LrSchedule;
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

/// Updates `p` in place with `rule(weights, gradient)`, both row-major; a
/// parameter without a gradient is left alone. The weights' buffer is reused when
/// nothing else holds it, a contiguous gradient is read where it is, and the
/// rule runs compiled for the widest SIMD level (`tensor::simd::widest`), so its
/// loop is vectorised with that level's instructions.
fn update(p: &Parameter, rule: impl FnOnce(&mut [f32], &[f32])) -> Result<()> {
    let Some(g) = p.grad() else { return Ok(()) };
    let mut w = p.value().into_vec();
    let copied;
    let g = match g.as_slice() {
        Some(g) => g,
        None => {
            copied = g.to_vec();
            &copied
        }
    };
    tensor::simd::widest(
        #[inline(always)]
        || rule(&mut w, g),
    );
    p.set_value(tensor::Tensor::from_vec(w, &p.shape())?)
}
