//! The forward process, its posterior, and what the network's output means: the
//! maths every loss and sampler builds on.
//!
//! With `alpha_t = sqrt(alpha_bar_t)` and `sigma_t = sqrt(1 - alpha_bar_t)`:
//!
//! ```text
//! x_t = alpha_t x_0 + sigma_t eps,     eps ~ N(0, I)                          (q_sample)
//! x_0 = (x_t - sigma_t eps) / alpha_t                                          (predict_x0)
//! mu_tilde_t(x_t, x_0) = coef_x0_t x_0 + coef_xt_t x_t                           (posterior_mean)
//! ```
//!
//! The network predicts one of three equivalent quantities, its [`Objective`]:
//! the noise `eps` (Ho et al. 2020), the data `x_0`, or the velocity
//! `v = alpha_t eps - sigma_t x_0` (Salimans and Ho 2022). Given `x_t`, each
//! determines the other two, since `alpha_t^2 + sigma_t^2 = 1`:
//!
//! ```text
//! output eps:  x_0 = (x_t - sigma_t eps) / alpha_t
//! output x_0:  eps = (x_t - alpha_t x_0) / sigma_t
//! output v:    x_0 = alpha_t x_t - sigma_t v,     eps = sigma_t x_t + alpha_t v
//! ```
//!
//! Every conversion is affine in the output with a coefficient that depends only
//! on `t`, so a linear combination of outputs (classifier-free guidance) converts
//! to the same combination of noise or data predictions. `alpha_t` and `sigma_t`
//! are both positive at every trained step (`0 < beta_t < 1`), so every division
//! is defined; `x_0` from `eps` divides by `alpha_t`, small at the last steps,
//! `eps` from `x_0` by `sigma_t`, small at the first ones: `v` divides by neither.
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

/// `alpha_t` and `sigma_t` of each image, each `[B, 1, 1, 1]`, checked against `x`.
fn scales(schedule: &NoiseSchedule, x: &Tensor, t: &[usize]) -> Result<(Tensor, Tensor)> {
    check_steps(schedule, t, x.shape().first().copied().unwrap_or(0))?;
    Ok((
        per_image(&schedule.sqrt_alpha_bar, t)?,
        per_image(&schedule.sqrt_one_minus_alpha_bar, t)?,
    ))
}

/// Samples `x_t ~ q(x_t | x_0)` with the given noise: `sqrt(ab) x_0 + sqrt(1 - ab) eps`.
pub fn q_sample(schedule: &NoiseSchedule, x0: &Tensor, t: &[usize], eps: &Tensor) -> Result<Tensor> {
    let (a, s) = scales(schedule, x0, t)?;
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

/// What the network's (first) output predicts (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Objective {
    /// The noise `eps` that made `x_t` (Ho et al. 2020).
    Eps,
    /// The clean data `x_0`.
    #[value(name = "x0")]
    X0,
    /// The velocity `v = alpha_t eps - sigma_t x_0` (Salimans and Ho 2022).
    V,
}

impl Objective {
    /// Every objective, in the order of the command line's help.
    pub const ALL: [Objective; 3] = [Objective::Eps, Objective::X0, Objective::V];

    /// The name in the metadata and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Objective::Eps => "eps",
            Objective::X0 => "x0",
            Objective::V => "v",
        }
    }

    /// The objective called `name`.
    pub fn parse(name: &str) -> Option<Objective> {
        Objective::ALL.into_iter().find(|o| o.name() == name)
    }

    /// What the network should output for `x_t = q_sample(x0, t, eps)`: the
    /// training target.
    pub fn target(self, schedule: &NoiseSchedule, x0: &Tensor, t: &[usize], eps: &Tensor) -> Result<Tensor> {
        match self {
            Objective::Eps => Ok(eps.clone()),
            Objective::X0 => Ok(x0.clone()),
            Objective::V => {
                let (a, s) = scales(schedule, x0, t)?;
                eps.mul(&a)?.sub(&x0.mul(&s)?)
            }
        }
    }

    /// The noise estimate implied by the network's `output` at `x_t`, steps `t`.
    pub fn eps(self, schedule: &NoiseSchedule, x_t: &Tensor, t: &[usize], output: &Tensor) -> Result<Tensor> {
        let (a, s) = scales(schedule, x_t, t)?;
        match self {
            Objective::Eps => Ok(output.clone()),
            Objective::X0 => x_t.sub(&output.mul(&a)?)?.div(&s),
            Objective::V => x_t.mul(&s)?.add(&output.mul(&a)?),
        }
    }

    /// The data prediction implied by the network's `output` at `x_t`, steps `t`
    /// (not clipped).
    pub fn x0(self, schedule: &NoiseSchedule, x_t: &Tensor, t: &[usize], output: &Tensor) -> Result<Tensor> {
        let (a, s) = scales(schedule, x_t, t)?;
        match self {
            Objective::Eps => x_t.sub(&output.mul(&s)?)?.div(&a),
            Objective::X0 => Ok(output.clone()),
            Objective::V => x_t.mul(&a)?.sub(&output.mul(&s)?),
        }
    }
}
