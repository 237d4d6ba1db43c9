//! The forward process, its posterior, and the conversion from a predicted noise
//! to a predicted `x_0`: the maths every loss and sampler builds on.
//!
//! ```text
//! x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,     eps ~ N(0, I)   (q_sample)
//! x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)                  (predict_x0)
//! mu_tilde_t(x_t, x_0) = coef_x0_t x_0 + coef_xt_t x_t                           (posterior_mean)
//! ```
//!
//! The modules above it: [`crate::variance`] (learned variances and the bound's
//! terms), then [`crate::loss`] (the training objective) and [`crate::sample`].
//! Nothing here calls back up.

use autograd::Result;
use rand::Rng;
use rand_distr::StandardNormal;
use tensor::{Tensor, TensorError};

use crate::schedule::NoiseSchedule;

/// `[B, 1, 1, 1]` holding `values[t_i]` for each image, to scale a batch per image.
pub fn per_image(values: &[f64], t: &[usize]) -> Result<Tensor> {
    let v = t.iter().map(|&s| values[s] as f32).collect();
    Tensor::from_vec(v, &[t.len(), 1, 1, 1])
}

/// A standard normal tensor of `shape`.
pub fn normal<R: Rng + ?Sized>(shape: &[usize], rng: &mut R) -> Tensor {
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.sample::<f32, _>(StandardNormal)).collect();
    Tensor::from_vec(data, shape).expect("n elements for shape")
}

fn check_steps(schedule: &NoiseSchedule, t: &[usize], batch: usize) -> Result<()> {
    if t.len() != batch || t.iter().any(|&s| s >= schedule.steps()) {
        return Err(TensorError::InvalidArgument {
            op: "diffusion",
            msg: format!("need {batch} steps below {}, got {t:?}", schedule.steps()),
        });
    }
    Ok(())
}

/// Samples `x_t ~ q(x_t | x_0)` with the given noise: `sqrt(ab) x_0 + sqrt(1 - ab) eps`.
pub fn q_sample(schedule: &NoiseSchedule, x0: &Tensor, t: &[usize], eps: &Tensor) -> Result<Tensor> {
    check_steps(schedule, t, x0.shape().first().copied().unwrap_or(0))?;
    let a = per_image(&schedule.sqrt_alpha_bar, t)?;
    let s = per_image(&schedule.sqrt_one_minus_alpha_bar, t)?;
    x0.mul(&a)?.add(&eps.mul(&s)?)
}

/// `x_0` implied by `x_t` and a noise estimate at steps `t`.
pub fn predict_x0(schedule: &NoiseSchedule, x_t: &Tensor, t: &[usize], eps: &Tensor) -> Result<Tensor> {
    let a = per_image(&schedule.sqrt_alpha_bar, t)?;
    let s = per_image(&schedule.sqrt_one_minus_alpha_bar, t)?;
    x_t.sub(&eps.mul(&s)?)?.div(&a)
}

/// The mean of `q(x_{t-1} | x_t, x_0)`, the target of each reverse step.
pub fn posterior_mean(schedule: &NoiseSchedule, x0: &Tensor, x_t: &Tensor, t: &[usize]) -> Result<Tensor> {
    let a = per_image(&schedule.posterior_coef_x0, t)?;
    let c = per_image(&schedule.posterior_coef_xt, t)?;
    x0.mul(&a)?.add(&x_t.mul(&c)?)
}
