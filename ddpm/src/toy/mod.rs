//! The 2-D picture of Sohl-Dickstein et al. (2015), figure 1, made with a DDPM: a
//! Swiss roll diffused into a Gaussian, and a small network that learns to run
//! the diffusion backwards.
//!
//! Everything is the image model's maths on points instead of pictures: a batch
//! of points `[B, 2]` is reshaped to `[B, 2, 1, 1]` so that
//! [`q_sample`](crate::diffusion::q_sample), [`predict_x0`](crate::diffusion::predict_x0)
//! and [`posterior_mean`](crate::diffusion::posterior_mean) apply unchanged.
//!
//! This module holds what to train ([`ToyOptions`]) and the whole run ([`run`]);
//! the pieces are `data` (the Swiss roll), `model` (the MLP), `diffusion` (the
//! schedule, loss, training loop and chains) and `figure` (the picture). Their
//! public items are re-exported here.
//!
//! ```text
//! data     p = (s cos s, s sin s) / c + N(0, noise^2 I),   s ~ U(1.5 pi, 4.5 pi)
//!          c = sqrt(E[s^2] / 2) = pi sqrt(39 / 8)          (unit mean square per coordinate)
//! forward  x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps                  (row 1 of the figure)
//! model    eps_theta(x, t) = W_out h_L,   h_l = silu(W_l h_{l-1} + b_l + V_l emb(t)),   h_0 = x
//! loss     L_simple = E || eps - eps_theta(x_t, t) ||^2
//! reverse  x_{t-1} = mu_theta(x_t, t) + sqrt(beta_tilde_t) z,
//!          mu_theta = coef_x0_t x0_hat + coef_xt_t x_t,   x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_bar_t)   (row 2)
//! drift    mu_theta(x, t) - x, on a grid of points x                                  (row 3)
//! ```
//! `T = 100` steps of a cosine schedule on a cubed clock ([`toy_schedule`]), so
//! that the figure's columns `t = 0, T/4, T/2, 3T/4, T` show the roll dissolving
//! gradually. Time: the paper's `t = 1..T` is step index `t - 1` of
//! [`NoiseSchedule`](crate::schedule::NoiseSchedule); a chain of states is indexed by the paper's `t` (`chain[0]`
//! is `x_0`, `chain[T]` is `x_T`).
//!
//! The drift row reads like Sohl-Dickstein's: arrows converge on the data. At
//! `t = 1` the step is tiny near the roll (its noise level is tiny) and the arrows
//! away from it are the network's extrapolation, since training never puts `x_1`
//! there.
//!
//! The check printed beside the figure is the mean distance from each point to its
//! nearest neighbour in a fresh reference sample of the roll: near the roll's own
//! noise level for good samples, several times larger for the `N(0, I)` prior.

mod data;
mod diffusion;
mod figure;
mod model;

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;

pub use data::{
    gaussian, mean_nearest_distance, roll_scale, swiss_roll, to_points, to_tensor, Point, ROLL_NOISE,
};
pub use diffusion::{
    drift, forward_marginal, loss_at, reverse_chain, reverse_mean, toy_schedule, train, Trained,
};
pub use figure::{column_times, draw_figure, figure_data, FigureData};
pub use model::ToyModel;

/// What to train.
#[derive(Debug, Clone, PartialEq)]
pub struct ToyOptions {
    /// Adam steps.
    pub steps: usize,
    /// Points per step (fresh from the roll every step).
    pub batch: usize,
    /// Peak learning rate (cosine-decayed to a tenth over the run).
    pub lr: f32,
    /// `T`.
    pub diffusion_steps: usize,
    /// Hidden units per layer.
    pub hidden: usize,
    /// Hidden layers.
    pub depth: usize,
    /// Seed of everything random.
    pub seed: u64,
}

impl Default for ToyOptions {
    fn default() -> ToyOptions {
        ToyOptions {
            steps: 4000,
            batch: 256,
            lr: 2e-3,
            diffusion_steps: 100,
            hidden: 128,
            depth: 3,
            seed: 0,
        }
    }
}

/// The mean of `values` (0 when empty).
pub fn mean(values: &[f32]) -> f64 {
    values.iter().map(|&v| v as f64).sum::<f64>() / values.len().max(1) as f64
}

/// What `ddpm toy` did.
pub struct ToyReport {
    /// Training steps.
    pub steps: usize,
    /// Mean loss of the last 200 steps.
    pub final_loss: f64,
    /// Mean loss of the first 20 steps.
    pub initial_loss: f64,
    /// Training seconds.
    pub train_seconds: f64,
    /// Total seconds (training, sampling, drawing).
    pub total_seconds: f64,
    /// Mean nearest-reference distance of the generated samples.
    pub nn_samples: f64,
    /// The same for prior `N(0, I)` draws.
    pub nn_prior: f64,
    /// The same for fresh data (the floor).
    pub nn_data: f64,
    /// Where the PNG went.
    pub png: PathBuf,
}

/// Trains, samples `samples` points, measures them, draws the figure to `out`.
pub fn run(
    opts: &ToyOptions,
    samples: usize,
    out: &Path,
    log: impl FnMut(&str),
) -> std::result::Result<ToyReport, String> {
    let start = Instant::now();
    let trained = train(opts, log).map_err(|e| e.to_string())?;
    let mut rng = StdRng::seed_from_u64(opts.seed.wrapping_add(1));
    let chain =
        reverse_chain(&trained.model, &trained.schedule, samples, &mut rng).map_err(|e| e.to_string())?;
    let reference = swiss_roll(4000, ROLL_NOISE, &mut rng);
    let data = swiss_roll(samples, ROLL_NOISE, &mut rng);
    let prior = gaussian(samples, &mut rng);
    let fig = figure_data(&trained, &data, &chain, &mut rng).map_err(|e| e.to_string())?;
    draw_figure(&fig, trained.schedule.steps()).save_png(out)?;
    let losses = &trained.losses;
    Ok(ToyReport {
        steps: opts.steps,
        final_loss: mean(&losses[losses.len().saturating_sub(200)..]),
        initial_loss: mean(&losses[..losses.len().min(20)]),
        train_seconds: trained.seconds,
        total_seconds: start.elapsed().as_secs_f64(),
        nn_samples: mean_nearest_distance(&chain[0], &reference),
        nn_prior: mean_nearest_distance(&prior, &reference),
        nn_data: mean_nearest_distance(&data, &reference),
        png: out.to_path_buf(),
    })
}
