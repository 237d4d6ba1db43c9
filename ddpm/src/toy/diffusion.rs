//! The diffusion on points: the toy's noise schedule, its training loss and
//! loop, and the forward and reverse processes the figure shows.
//!
//! ```text
//! forward  x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps
//! loss     L_simple = E || eps - eps_theta(x_t, t) ||^2
//! reverse  x_{t-1} = mu_theta(x_t, t) + sqrt(beta_tilde_t) z,
//!          mu_theta = coef_x0_t x0_hat + coef_xt_t x_t,   x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_bar_t)
//! ```
//! Points `[B, 2]` are reshaped to `[B, 2, 1, 1]` so that the image model's
//! [`q_sample`], [`predict_x0`] and [`posterior_mean`] apply unchanged.

use std::f64::consts::PI;
use std::time::Instant;

use autograd::{Parameter, Result, Var};
use nn::optim::{Adam, LrSchedule, Optimizer};
use nn::Module;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tensor::Tensor;

use super::data::{as_images, as_points, swiss_roll, to_points, to_tensor, Point, ROLL_NOISE};
use super::{mean, ToyModel, ToyOptions};
use crate::diffusion::{normal, posterior_mean, predict_x0, q_sample};
use crate::schedule::NoiseSchedule;

/// The offset `s` of the cosine schedule (Nichol and Dhariwal 2021).
const COSINE_OFFSET: f64 = 0.008;

/// The toy's diffusion: the cosine schedule run on a cubed clock,
/// `alpha_bar(t) = f(t) / f(0)` with `f(t) = cos(((t / T)^3 + s) / (1 + s) pi / 2)^2`
/// and `beta_t = 1 - alpha_bar(t + 1) / alpha_bar(t)` (clipped at 0.999). The plain
/// cosine schedule has already blurred the roll's arms (0.9 apart) into noise by
/// `T / 4` (noise `sqrt(1 - alpha_bar)` = 0.39); on the cubed clock the noise is
/// 0.04 at `T / 4`, 0.21 at `T / 2` and 0.62 at `3 T / 4`, so the figure's columns
/// show the roll dissolving.
pub fn toy_schedule(steps: usize) -> NoiseSchedule {
    let f = |t: usize| {
        let u = (t as f64 / steps as f64).powi(3);
        ((u + COSINE_OFFSET) / (1.0 + COSINE_OFFSET) * PI / 2.0)
            .cos()
            .powi(2)
    };
    NoiseSchedule::from_betas((0..steps).map(|t| (1.0 - f(t + 1) / f(t)).min(0.999)).collect())
}

/// A trained toy model and how its training went.
pub struct Trained {
    /// The epsilon-predictor.
    pub model: ToyModel,
    /// The diffusion it was trained for.
    pub schedule: NoiseSchedule,
    /// `L_simple` of each step's batch.
    pub losses: Vec<f32>,
    /// Training time in seconds.
    pub seconds: f64,
}

/// `L_simple` for points `x0` (`[B, 2]`) at step indices `t` with noise `eps`
/// (`[B, 2]`): the mean of `(eps - eps_theta(q_sample(x0, t, eps), t))^2`.
pub fn loss_at(
    model: &ToyModel,
    schedule: &NoiseSchedule,
    x0: &Tensor,
    t: &[usize],
    eps: &Tensor,
) -> Result<Var> {
    let x_t = as_points(&q_sample(schedule, &as_images(x0)?, t, &as_images(eps)?)?)?;
    model
        .forward(&Var::constant(x_t), t)?
        .mse_loss(&Var::constant(eps.clone()))
}

/// Trains a fresh model on the Swiss roll with Adam on `L_simple`; `log` gets a
/// progress line now and then.
pub fn train(opts: &ToyOptions, mut log: impl FnMut(&str)) -> Result<Trained> {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let schedule = toy_schedule(opts.diffusion_steps);
    let model = ToyModel::new(opts.hidden, opts.depth, &mut rng);
    let params: Vec<Parameter> = model.parameters().into_iter().map(|(_, p)| p).collect();
    let mut adam = Adam::new(params, opts.lr);
    let lr = LrSchedule {
        base: opts.lr,
        warmup: 0,
        total: Some(opts.steps as u64),
        min: opts.lr / 10.0,
    };
    let (start, mut losses) = (Instant::now(), Vec::with_capacity(opts.steps));
    for step in 0..opts.steps {
        let x0 = to_tensor(&swiss_roll(opts.batch, ROLL_NOISE, &mut rng));
        let t: Vec<usize> = (0..opts.batch)
            .map(|_| rng.gen_range(0..schedule.steps()))
            .collect();
        let eps = normal(&[opts.batch, 2], &mut rng);
        adam.zero_grad();
        let loss = loss_at(&model, &schedule, &x0, &t, &eps)?;
        losses.push(loss.value().item()?);
        loss.backward()?;
        adam.set_lr(lr.at(step as u64));
        adam.step()?;
        if (step + 1) % 1000 == 0 {
            let recent = mean(&losses[losses.len().saturating_sub(200)..]);
            log(&format!("  step {:>5}  loss {recent:.4}", step + 1));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Trained {
        model,
        schedule,
        losses,
        seconds,
    })
}

/// `mu_theta(x_t, t)` for points `x` (`[B, 2]`) at step index `t`: the posterior mean
/// with the model's `x0_hat` in place of `x_0`.
pub fn reverse_mean(model: &ToyModel, schedule: &NoiseSchedule, x: &Tensor, t: usize) -> Result<Tensor> {
    let steps = vec![t; x.shape()[0]];
    let (x4, eps) = (as_images(x)?, as_images(&model.eps(x, t)?)?);
    let x0 = predict_x0(schedule, &x4, &steps, &eps)?;
    as_points(&posterior_mean(schedule, &x0, &x4, &steps)?)
}

/// The drift `mu_theta(x, t) - x` at each point, step index `t`.
pub fn drift(model: &ToyModel, schedule: &NoiseSchedule, points: &[Point], t: usize) -> Result<Vec<Point>> {
    let x = to_tensor(points);
    Ok(to_points(&reverse_mean(model, schedule, &x, t)?.sub(&x)?))
}

/// The reverse chain from `n` prior draws: `chain[t]` is `x_t` for the paper's
/// `t = 0..=T` (`chain[T]` the noise, `chain[0]` the samples). Each step adds
/// `sqrt(beta_tilde) z`, except the last.
pub fn reverse_chain<R: Rng + ?Sized>(
    model: &ToyModel,
    schedule: &NoiseSchedule,
    n: usize,
    rng: &mut R,
) -> Result<Vec<Vec<Point>>> {
    let steps = schedule.steps();
    let mut x = normal(&[n, 2], rng);
    let mut chain = vec![Vec::new(); steps + 1];
    chain[steps] = to_points(&x);
    for t in (0..steps).rev() {
        let mu = reverse_mean(model, schedule, &x, t)?;
        x = if t > 0 {
            let z = normal(&[n, 2], rng);
            mu.add(&z.mul_scalar(schedule.beta_tilde[t].sqrt() as f32))?
        } else {
            mu
        };
        chain[t] = to_points(&x);
    }
    Ok(chain)
}

/// Draws of `q(x_t | x_0)` for each point of `x0`, at the paper's time `t`
/// (`t = 0` returns `x0`).
pub fn forward_marginal<R: Rng + ?Sized>(
    schedule: &NoiseSchedule,
    x0: &[Point],
    t: usize,
    rng: &mut R,
) -> Result<Vec<Point>> {
    if t == 0 {
        return Ok(x0.to_vec());
    }
    let eps = normal(&[x0.len(), 2, 1, 1], rng);
    let steps = vec![t - 1; x0.len()];
    Ok(to_points(&q_sample(
        schedule,
        &as_images(&to_tensor(x0))?,
        &steps,
        &eps,
    )?))
}
