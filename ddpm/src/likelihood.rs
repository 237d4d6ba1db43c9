//! The variational bound on the negative log-likelihood, in bits per dimension.
//!
//! Ho et al. (2020), eq. 5, as the original code computes it (`calc_bpd_loop`):
//!
//! ```text
//! -log p(x_0) <= L_T + sum_{t>=1} L_{t-1} + L_0
//! L_T     = KL( q(x_T | x_0) || N(0, I) )                               (the prior term)
//! L_{t-1} = KL( q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t) )             (t = 1 .. T-1 here)
//! L_0     = -log p(x_0 | x_1)                                           (the decoder)
//! ```
//!
//! Both distributions in each KL are diagonal Gaussians, so each KL has the closed
//! form [`normal_kl`]. The decoder is a Gaussian discretised to the 256 pixel
//! values: value `k` (at `x = k / 127.5 - 1`) gets the Gaussian's mass over
//! `[x - 1/255, x + 1/255]`, and the two outer bins extend to infinity, so the 256
//! probabilities sum to 1 exactly. Every term is averaged over the dimensions and
//! divided by `ln 2`, so the total is in bits per dimension.
//!
//! Steps are indexed `0..T` as in [`crate::schedule`]: the paper's `L_{t-1}` at
//! `t >= 2` is our step `t - 1 >= 1`, and `L_0` is our step 0.

use autograd::Result;
use rand::Rng;
use tensor::Tensor;

use crate::diffusion::{normal, posterior_mean, q_sample, Objective};
use crate::sample::{predict, step_log_variance, Variance};
use crate::schedule::NoiseSchedule;
use crate::unet::UNet;

/// `KL(N(m1, e^lv1) || N(m2, e^lv2))` per element, in nats:
/// `(lv2 - lv1 + e^(lv1 - lv2) + (m1 - m2)^2 e^-lv2 - 1) / 2`.
pub fn normal_kl(m1: f64, lv1: f64, m2: f64, lv2: f64) -> f64 {
    0.5 * (lv2 - lv1 + (lv1 - lv2).exp() + (m1 - m2).powi(2) * (-lv2).exp() - 1.0)
}

/// The standard normal CDF, through the tanh approximation the original code uses
/// (`0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`; absolute error below 4e-4).
pub fn approx_std_normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

/// `log p(x)` of the discretised Gaussian decoder, for a pixel value `x` in
/// `[-1, 1]` on the 256-level grid, a mean, and a log standard deviation.
pub fn discretized_gaussian_log_likelihood(x: f64, mean: f64, log_scale: f64) -> f64 {
    let inv_std = (-log_scale).exp();
    let cdf_plus = approx_std_normal_cdf(inv_std * (x - mean + 1.0 / 255.0));
    let cdf_min = approx_std_normal_cdf(inv_std * (x - mean - 1.0 / 255.0));
    let p = if x < -0.999 {
        cdf_plus
    } else if x > 0.999 {
        1.0 - cdf_min
    } else {
        cdf_plus - cdf_min
    };
    p.max(1e-12).ln()
}

/// The mean over elements of `f(a_i, b_i, c_i)`, in f64.
fn mean3(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f64, f64, f64) -> f64) -> f64 {
    let sum: f64 = a
        .iter()
        .zip(b)
        .zip(c)
        .map(|((&x, &y), &z)| f(x as f64, y as f64, z as f64))
        .sum();
    sum / a.len().max(1) as f64
}

/// The prior term `L_T` in bits per dimension for data `x0`:
/// `KL(N(sqrt(ab_T) x0, 1 - ab_T) || N(0, 1))`, averaged over all elements.
pub fn prior_bpd(schedule: &NoiseSchedule, x0: &Tensor) -> f64 {
    let t = schedule.steps() - 1;
    let (scale, lv) = (schedule.sqrt_alpha_bar[t], (1.0 - schedule.alpha_bar[t]).ln());
    let x = x0.to_vec();
    let nats: f64 = x.iter().map(|&v| normal_kl(scale * v as f64, lv, 0.0, 0.0)).sum();
    nats / x.len().max(1) as f64 / std::f64::consts::LN_2
}

/// The bound's terms for a batch `x0` (`[B, C, H, W]` on the pixel grid in
/// `[-1, 1]`), in bits per dimension averaged over the batch: `(L_T, [L_0, L_1, ...,
/// L_{T-1}])`, for a `model` that predicts `objective`'s quantity. Runs the model
/// once per step (T forward passes), without a tape.
pub fn vlb_terms<R: Rng + ?Sized>(
    model: &UNet,
    objective: Objective,
    schedule: &NoiseSchedule,
    variance: Variance,
    x0: &Tensor,
    rng: &mut R,
) -> Result<(f64, Vec<f64>)> {
    let b = x0.shape()[0];
    let x0v = x0.to_vec();
    let mut terms = vec![0.0; schedule.steps()];
    for (t, term) in terms.iter_mut().enumerate() {
        let steps = vec![t; b];
        let x_t = q_sample(schedule, x0, &steps, &normal(x0.shape(), rng))?;
        let (output, o) = predict(model, &x_t, &steps, None, 0.0)?;
        let x0_pred = objective.x0(schedule, &x_t, &steps, &output)?.clamp(-1.0, 1.0)?;
        let model_mean = posterior_mean(schedule, &x0_pred, &x_t, &steps)?.to_vec();
        let lv = step_log_variance(schedule, variance, &steps, o.as_ref())?
            .broadcast_to(x0.shape())?
            .to_vec();
        let nats = if t == 0 {
            // -log p(x_0 | x_1), the decoder.
            -mean3(&x0v, &model_mean, &lv, |x, m, lv| {
                discretized_gaussian_log_likelihood(x, m, 0.5 * lv)
            })
        } else {
            let true_mean = posterior_mean(schedule, x0, &x_t, &steps)?.to_vec();
            let true_lv = schedule.log_beta_tilde_clipped[t];
            mean3(&true_mean, &model_mean, &lv, |m1, m2, lv| {
                normal_kl(m1, true_lv, m2, lv)
            })
        };
        *term = nats / std::f64::consts::LN_2;
    }
    Ok((prior_bpd(schedule, x0), terms))
}

/// The whole bound, in bits per dimension: `L_T + sum of the step terms`.
pub fn total_bpd(prior: f64, terms: &[f64]) -> f64 {
    prior + terms.iter().sum::<f64>()
}

/// The bound averaged over a set of images.
#[derive(Debug, Clone)]
pub struct Bound {
    /// Images measured.
    pub images: usize,
    /// `L_T`, bits/dim.
    pub prior: f64,
    /// `[L_0, L_1, ..., L_{T-1}]`, bits/dim.
    pub terms: Vec<f64>,
}

impl Bound {
    /// The whole bound in bits/dim.
    pub fn total(&self) -> f64 {
        total_bpd(self.prior, &self.terms)
    }
}

/// The bound of `model` (predicting `objective`'s quantity) on `batches` of
/// images (each batch costs `T` forward passes), averaged over all images, each
/// batch weighted by its size; `progress(done, total)` after each batch.
pub fn dataset_bound<R: Rng + ?Sized>(
    model: &UNet,
    objective: Objective,
    schedule: &NoiseSchedule,
    variance: Variance,
    batches: &[Tensor],
    rng: &mut R,
    mut progress: impl FnMut(usize, usize),
) -> Result<Bound> {
    let total: usize = batches.iter().map(|b| b.shape()[0]).sum();
    let (mut prior, mut terms, mut seen) = (0.0, vec![0.0; schedule.steps()], 0usize);
    for x0 in batches {
        let (p, t) = vlb_terms(model, objective, schedule, variance, x0, rng)?;
        let w = x0.shape()[0] as f64;
        prior += p * w;
        terms.iter_mut().zip(&t).for_each(|(acc, v)| *acc += v * w);
        seen += x0.shape()[0];
        progress(seen, total);
    }
    let n = seen.max(1) as f64;
    Ok(Bound {
        images: seen,
        prior: prior / n,
        terms: terms.iter().map(|t| t / n).collect(),
    })
}
