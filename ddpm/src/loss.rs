//! The training objective: the network's output against its [`Objective`]'s
//! quantity.
//!
//! ```text
//! L_simple = E_{t, x_0, eps} || target_t - f_theta(x_t, t) ||^2,    x_t = q_sample(x_0, t, eps)
//! target = eps, x_0 or v = alpha_t eps - sigma_t x_0                 (Objective::target)
//! ```
//! with `t` uniform over `0..T` (drawn by [`crate::train`]). A model with learned
//! variances trains on `L_hybrid = L_simple + lambda L_vlb` instead
//! ([`crate::variance`]).

use autograd::{Result, Var};
use tensor::Tensor;

use crate::diffusion::{q_sample, Objective};
use crate::schedule::NoiseSchedule;
use crate::unet::UNet;
use crate::variance::{split_output, vlb_loss, HYBRID_LAMBDA};

/// What the network learns to output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossOptions {
    /// The quantity the network predicts.
    pub objective: Objective,
}

impl LossOptions {
    /// The loss on `objective`.
    pub fn simple(objective: Objective) -> LossOptions {
        LossOptions { objective }
    }
}

/// `L_simple` of a prediction against its `target`: the mean squared error.
pub fn simple_loss(prediction: &Var, target: &Tensor) -> Result<Var> {
    prediction.mse_loss(&Var::constant(target.clone()))
}

/// `L_hybrid = L_simple + lambda L_vlb` for a learned-variance output (the
/// `prediction` and `o`) at steps `t`, for data `x0` and the noise `eps` that
/// made `x_t`. The bound's mean comes from the prediction's noise estimate, with
/// its gradient stopped.
pub fn hybrid_loss(
    schedule: &NoiseSchedule,
    loss: LossOptions,
    x0: &Tensor,
    x_t: &Tensor,
    t: &[usize],
    eps: &Tensor,
    (prediction, o): (&Var, &Var),
) -> Result<Var> {
    let target = loss.objective.target(schedule, x0, t, eps)?;
    let simple = simple_loss(prediction, &target)?;
    let eps_hat = loss.objective.eps(schedule, x_t, t, prediction.value())?;
    let vlb = vlb_loss(schedule, x0, x_t, t, &eps_hat, o)?;
    simple.add(&vlb.mul_scalar(HYBRID_LAMBDA as f32))
}

/// The training loss of `model` on data `x0` at steps `t` with noise `eps`:
/// `L_simple`, or `L_hybrid` for a model with learned variances.
pub fn loss_at(
    model: &UNet,
    schedule: &NoiseSchedule,
    loss: LossOptions,
    x0: &Tensor,
    t: &[usize],
    eps: &Tensor,
    labels: Option<&[usize]>,
) -> Result<Var> {
    let x_t = q_sample(schedule, x0, t, eps)?;
    let out = model.forward(&Var::constant(x_t.clone()), t, labels)?;
    match split_output(&out, model.config.learn_sigma)? {
        (prediction, None) => {
            let target = loss.objective.target(schedule, x0, t, eps)?;
            simple_loss(&prediction, &target)
        }
        (prediction, Some(o)) => hybrid_loss(schedule, loss, x0, &x_t, t, eps, (&prediction, &o)),
    }
}
