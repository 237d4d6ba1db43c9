//! Learned reverse-step variances (Nichol and Dhariwal 2021, "Improved DDPM").
//!
//! DDPM fixes the variance of each reverse step `p(x_{t-1} | x_t)` to `beta_t` or
//! to `beta_tilde_t`, the two ends of a narrow range. A model with learned
//! variances outputs, beside its prediction (of `eps`, `x_0` or `v`, its
//! [`crate::diffusion::Objective`]), one more value `o` per pixel, and uses
//!
//! ```text
//! f = (o + 1) / 2                                    (o = 0, the zero-initialised output, is the middle)
//! log Sigma = f log beta_t + (1 - f) log beta_tilde_t
//! ```
//! (the paper calls the fraction `v`; here `v` is the velocity objective).
//!
//! `L_simple` does not depend on `Sigma`, so the variance is learned from the
//! variational bound, with the mean's gradient stopped so that `L_vlb` trains only
//! the variance (the mean keeps learning from `L_simple`):
//!
//! ```text
//! L_hybrid = L_simple + lambda L_vlb,      lambda = 0.001,   L_vlb = sum_t L_t ~ T * L_t at a uniform t
//! L_t (t > 0) = KL( N(mu_q, beta_tilde_t) || N(mu, Sigma) )              per element, in nats:
//!             = (log Sigma - log beta_tilde_t - 1 + (beta_tilde_t + (mu_q - mu)^2) / Sigma) / 2
//! L_0        = -log of the discretised decoder (see crate::likelihood) with scale sqrt(Sigma)
//! ```
//!
//! `mu_q` is the posterior mean of `q(x_{t-1} | x_t, x_0)` and `mu` the model's
//! mean from its (stopped) noise estimate, converted from whatever the network
//! predicts; both are constants here. Every term is averaged over the pixels and
//! divided by `ln 2` (bits per dimension), as in the original code, so `lambda T
//! = 1` for `T = 1000`. The KL's derivative in `log Sigma` is
//! `(1 - (beta_tilde + (mu_q - mu)^2) / Sigma) / 2`: zero exactly when `Sigma` matches
//! the posterior's variance plus the mean's squared error. The tape derives it.

use autograd::{Result, Var};
use tensor::{Tensor, TensorError};

use crate::diffusion::{per_image, posterior_mean, predict_x0};
use crate::schedule::NoiseSchedule;

/// The weight `lambda` of the bound in `L_hybrid` ([`crate::loss`]).
pub const HYBRID_LAMBDA: f64 = 0.001;

/// Splits a network output `[B, 2C, H, W]` into the prediction and the variance
/// output `o` (`learned`), or returns it whole as the prediction (`!learned`).
pub fn split_output(out: &Var, learned: bool) -> Result<(Var, Option<Var>)> {
    if !learned {
        return Ok((out.clone(), None));
    }
    let c2 = out.shape()[1];
    if !c2.is_multiple_of(2) {
        return Err(TensorError::InvalidArgument {
            op: "split_output",
            msg: format!("a learned-variance output needs an even channel count, got {c2}"),
        });
    }
    let mut parts = out.split(1, &[c2 / 2, c2 / 2])?;
    let o = parts.pop().expect("two parts");
    let prediction = parts.pop().expect("two parts");
    Ok((prediction, Some(o)))
}

/// `log Sigma = log beta_tilde_t + (o + 1) / 2 (log beta_t - log beta_tilde_t)` per
/// element, at steps `t` (one per image). `log beta_tilde` is clipped at step 0.
pub fn log_variance(schedule: &NoiseSchedule, t: &[usize], o: &Var) -> Result<Var> {
    let min_log = per_image(&schedule.log_beta_tilde_clipped, t)?;
    let span: Vec<f32> = t
        .iter()
        .map(|&s| (schedule.beta[s].ln() - schedule.log_beta_tilde_clipped[s]) as f32)
        .collect();
    let span = Tensor::from_vec(span, min_log.shape())?;
    let f = o.add_scalar(1.0).mul_scalar(0.5);
    Var::constant(min_log).add(&f.mul(&Var::constant(span))?)
}

/// The standard normal CDF's tanh approximation as a [`Var`]:
/// `0.5 (1 + tanh(a)) = sigmoid(2 a)` with `a = sqrt(2 / pi) (z + 0.044715 z^3)`.
fn approx_std_normal_cdf(z: &Var) -> Result<Var> {
    let cube = z.mul(z)?.mul(z)?;
    let a = z.add(&cube.mul_scalar(0.044715))?;
    Ok(a.mul_scalar((8.0 / std::f64::consts::PI).sqrt() as f32).sigmoid())
}

/// `-log p(x0 | x_1)` per element, in nats: the discretised Gaussian decoder with
/// a constant mean and a learned log variance `lv`. The outer bins extend to
/// infinity; probabilities are clamped at `1e-12` before the log.
///
/// In f32, `1 - cdf(z)` and `cdf(z+) - cdf(z-)` lose every digit when both CDFs are
/// near 1, so above the mean we use the exact symmetry `1 - cdf(z) = cdf(-z)` of
/// the approximation (its polynomial is odd): `cdf(-z-) - cdf(-z+)` instead.
pub fn decoder_nll(x0: &Tensor, mean: &Tensor, lv: &Var) -> Result<Var> {
    const HALF_BIN: f32 = 1.0 / 255.0;
    let inv_std = lv.mul_scalar(-0.5).exp();
    let centred = x0.sub(mean)?;
    // cdf(sign * z) at z = (x - mean +- half a bin) / std.
    let cdf = |shift: f32, sign: f32| {
        let z = centred.add_scalar(shift).mul_scalar(sign);
        approx_std_normal_cdf(&inv_std.mul(&Var::constant(z))?)
    };
    let mask = |keep: &(dyn Fn(f32, f32) -> bool + Sync)| -> Result<Var> {
        Ok(Var::constant(
            x0.zip_map(&centred, "decoder", |x, c| f32::from(keep(x, c)))?,
        ))
    };
    let inner = |x: f32| (-0.999..=0.999).contains(&x);
    // cdf(z+), cdf(z-), and 1 - cdf(z-) = cdf(-z-), 1 - cdf(z+) = cdf(-z+).
    let (below_plus, below_minus) = (cdf(HALF_BIN, 1.0)?, cdf(-HALF_BIN, 1.0)?);
    let (above_minus, above_plus) = (cdf(-HALF_BIN, -1.0)?, cdf(HALF_BIN, -1.0)?);
    // Exactly one of the four masks is 1 at each pixel.
    let p = mask(&|x, _| x < -0.999)?
        .mul(&below_plus)?
        .add(&mask(&|x, _| x > 0.999)?.mul(&above_minus)?)?
        .add(&mask(&|x, c| inner(x) && c <= 0.0)?.mul(&below_plus.sub(&below_minus)?)?)?
        .add(&mask(&|x, c| inner(x) && c > 0.0)?.mul(&above_minus.sub(&above_plus)?)?)?;
    const FLOOR: f32 = 1e-12;
    Ok(p.add_scalar(-FLOOR).relu().add_scalar(FLOOR).log().neg())
}

/// `KL(N(mu_q, beta_tilde) || N(mu, e^lv))` per element, in nats, with constant
/// means and posterior variance (`[B, 1, 1, 1]`) and a learned log variance `lv`.
pub fn posterior_kl(mu_q: &Tensor, beta_tilde: &Tensor, mu: &Tensor, lv: &Var) -> Result<Var> {
    let log_bt = beta_tilde.log();
    let numerator = mu_q.sub(mu)?.square().add(beta_tilde)?;
    let ratio = Var::constant(numerator).mul(&lv.neg().exp())?;
    Ok(lv
        .sub(&Var::constant(log_bt.add_scalar(1.0)))?
        .add(&ratio)?
        .mul_scalar(0.5))
}

/// `L_vlb`'s one-step estimate for a batch, in bits per dimension: the mean over
/// images of `T * L_t` at each image's step, with the mean from the model's noise
/// estimate `eps` (whatever its objective, converted by
/// [`crate::diffusion::Objective::eps`]; a constant: the stopped gradient) and the
/// variance from the output `o`.
pub fn vlb_loss(
    schedule: &NoiseSchedule,
    x0: &Tensor,
    x_t: &Tensor,
    t: &[usize],
    eps: &Tensor,
    o: &Var,
) -> Result<Var> {
    let lv = log_variance(schedule, t, o)?;
    let mu = posterior_mean(schedule, &predict_x0(schedule, x_t, t, eps)?, x_t, t)?;
    let mu_q = posterior_mean(schedule, x0, x_t, t)?;
    let (first, later): (Vec<usize>, Vec<usize>) = (0..t.len()).partition(|&i| t[i] == 0);
    let mut nats = Var::constant(Tensor::scalar(0.0));
    if !first.is_empty() {
        let pick = |x: &Tensor| x.index_select(0, &first);
        let nll = decoder_nll(&pick(x0)?, &pick(&mu)?, &lv.index_select(0, &first)?)?;
        nats = nats.add(&nll.sum_all()?)?;
    }
    if !later.is_empty() {
        let pick = |x: &Tensor| x.index_select(0, &later);
        let steps: Vec<usize> = later.iter().map(|&i| t[i]).collect();
        let beta_tilde = per_image(&schedule.beta_tilde, &steps)?;
        let kl = posterior_kl(
            &pick(&mu_q)?,
            &beta_tilde,
            &pick(&mu)?,
            &lv.index_select(0, &later)?,
        )?;
        nats = nats.add(&kl.sum_all()?)?;
    }
    let scale = schedule.steps() as f64 / (x0.numel() as f64 * std::f64::consts::LN_2);
    Ok(nats.mul_scalar(scale as f32))
}
