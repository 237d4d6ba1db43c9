//! The training objective.
//!
//! ```text
//! L_simple = E_{t, x_0, eps} || eps - eps_theta(x_t, t) ||^2,    x_t = q_sample(x_0, t, eps)
//! ```
//! with `t` uniform over `0..T`. A model with learned variances trains on
//! `L_hybrid = L_simple + lambda L_vlb` instead ([`crate::variance`]).

use autograd::{Result, Var};
use rand::Rng;
use tensor::Tensor;

use crate::diffusion::{normal, q_sample};
use crate::schedule::NoiseSchedule;
use crate::unet::UNet;
use crate::variance::{hybrid_loss, split_output};

/// One draw of the training objective for a batch `x0` (`[B, C, H, W]` in
/// `[-1, 1]`): steps uniform over `0..T`, fresh noise, `L_simple` (or `L_hybrid`
/// for a model with learned variances).
pub fn training_loss<R: Rng + ?Sized>(
    model: &UNet,
    schedule: &NoiseSchedule,
    x0: &Tensor,
    labels: Option<&[usize]>,
    rng: &mut R,
) -> Result<Var> {
    let b = x0.shape()[0];
    let t: Vec<usize> = (0..b).map(|_| rng.gen_range(0..schedule.steps())).collect();
    let eps = normal(x0.shape(), rng);
    loss_at(model, schedule, x0, &t, &eps, labels)
}

/// The training loss at given steps and noise (deterministic: for tests and
/// resumption checks).
pub fn loss_at(
    model: &UNet,
    schedule: &NoiseSchedule,
    x0: &Tensor,
    t: &[usize],
    eps: &Tensor,
    labels: Option<&[usize]>,
) -> Result<Var> {
    let x_t = q_sample(schedule, x0, t, eps)?;
    let out = model.forward(&Var::constant(x_t.clone()), t, labels)?;
    match split_output(&out, model.config.learn_sigma)? {
        (pred, None) => pred.mse_loss(&Var::constant(eps.clone())),
        (pred, Some(o)) => hybrid_loss(schedule, x0, &x_t, t, eps, (&pred, &o)),
    }
}
