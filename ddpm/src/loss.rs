//! The training objective: the network's output against its [`Objective`]'s
//! quantity, optionally weighted per image by min-SNR-gamma.
//!
//! ```text
//! L_simple = E_{t, x_0, eps} w_t || target_t - f_theta(x_t, t) ||^2,    x_t = q_sample(x_0, t, eps)
//! target = eps, x_0 or v = alpha_t eps - sigma_t x_0                     (Objective::target)
//! ```
//! with `t` uniform over `0..T` (drawn by [`crate::train`]) and `w_t = 1`, or with
//! min-SNR-gamma weighting (Hang et al. 2023). With `SNR_t = alpha_bar_t / (1 -
//! alpha_bar_t)`, every objective's error is a multiple of the error in `x_0`:
//! `|eps error|^2 = SNR |x_0 error|^2`, `|v error|^2 = (SNR + 1) |x_0 error|^2`. The
//! paper weights the `x_0` error by `min(SNR, gamma)` (the easy, low-noise steps
//! stop dominating), which on each objective's own error reads
//!
//! ```text
//! eps: w = min(SNR, gamma) / SNR      x0: w = min(SNR, gamma)      v: w = min(SNR, gamma) / (SNR + 1)
//! ```
//! `L_simple` is then the batch mean of each image's weight times its mean
//! squared error. A model with learned variances trains on `L_hybrid = L_simple +
//! lambda L_vlb` instead ([`crate::variance`]); the weighting touches `L_simple` only.

use autograd::{Result, Var};
use tensor::Tensor;

use crate::diffusion::{q_sample, Objective};
use crate::schedule::NoiseSchedule;
use crate::unet::UNet;
use crate::variance::{split_output, vlb_loss, HYBRID_LAMBDA};

/// What the network learns to output and how each image's error counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossOptions {
    /// The quantity the network predicts.
    pub objective: Objective,
    /// min-SNR-gamma's `gamma`, or `None` for the unweighted mean.
    pub min_snr: Option<f64>,
}

impl LossOptions {
    /// The unweighted loss on `objective`.
    pub fn simple(objective: Objective) -> LossOptions {
        LossOptions {
            objective,
            min_snr: None,
        }
    }
}

/// The min-SNR-gamma weight of each image at steps `t`, on `objective`'s error
/// (see the module doc).
pub fn min_snr_weights(schedule: &NoiseSchedule, objective: Objective, gamma: f64, t: &[usize]) -> Vec<f64> {
    t.iter()
        .map(|&s| {
            let snr = schedule.alpha_bar[s] / (1.0 - schedule.alpha_bar[s]);
            let clipped = snr.min(gamma);
            match objective {
                Objective::Eps => clipped / snr,
                Objective::X0 => clipped,
                Objective::V => clipped / (snr + 1.0),
            }
        })
        .collect()
}

/// `L_simple` of a prediction against its `target` at steps `t`: the mean squared
/// error, or with `loss.min_snr` the batch mean of each image's weight times its
/// mean squared error.
pub fn simple_loss(
    schedule: &NoiseSchedule,
    loss: LossOptions,
    prediction: &Var,
    target: &Tensor,
    t: &[usize],
) -> Result<Var> {
    let target = Var::constant(target.clone());
    match loss.min_snr {
        None => prediction.mse_loss(&target),
        Some(gamma) => {
            let w: Vec<f32> = min_snr_weights(schedule, loss.objective, gamma, t)
                .into_iter()
                .map(|w| w as f32)
                .collect();
            let w = Tensor::from_vec(w, &[t.len(), 1, 1, 1])?;
            // Every image has the same number of elements, so the mean over all of
            // them is the mean over images of each image's weighted mean.
            prediction
                .sub(&target)?
                .square()
                .mul(&Var::constant(w))?
                .mean_all()
        }
    }
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
    let simple = simple_loss(schedule, loss, prediction, &target, t)?;
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
    autograd::profile::lap("(q_sample)");
    let out = model.forward(&Var::constant(x_t.clone()), t, labels)?;
    match split_output(&out, model.config.learn_sigma)? {
        (prediction, None) => {
            let target = loss.objective.target(schedule, x0, t, eps)?;
            simple_loss(schedule, loss, &prediction, &target, t)
        }
        (prediction, Some(o)) => hybrid_loss(schedule, loss, x0, &x_t, t, eps, (&prediction, &o)),
    }
}
