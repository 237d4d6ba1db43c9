//! Sampling: running the learned reverse process from pure noise.
//!
//! Every sampler here walks a list of `S` kept steps `tau_1 < ... < tau_S` from
//! the last to the first (all `T` steps for the paper's sampler), on the schedule
//! *respaced* to those steps, so that each kept step keeps its `alpha_bar`. At each
//! step the network's output at `(x, tau_i)` becomes a data prediction `x0`,
//! clipped to `[-1, 1]`, by the conversion of the model's
//! [`Objective`] (`eps`, `x0` or `v`; see [`crate::diffusion`]):
//!
//! ```text
//! ancestral (DDPM):  x <- coef_x0 x0 + coef_xt x + sigma z,   sigma^2 = beta, beta_tilde or learned  (z = 0 at the end)
//! DDIM (Song et al. 2021), with ab = alpha_bar_i, ab' = alpha_bar_{i-1}:
//!   eps' = (x - sqrt(ab) x0) / sqrt(1 - ab)
//!   sigma = eta sqrt((1 - ab') / (1 - ab)) sqrt(1 - ab / ab')
//!   x <- sqrt(ab') x0 + sqrt(1 - ab' - sigma^2) eps' + sigma z
//! ```
//! With `eta = 0`, DDIM adds no noise: the result depends only on `x_T`.
//!
//! The fast solvers (DPM-Solver++ 2M, 2S and 2M SDE, and Heun's method as in
//! EDM) integrate the probability-flow ODE on the same kept steps, from the
//! network's prediction of `x_0` ([`solvers`]); [`spacing`] chooses the steps.
//! A [`Chain`] runs any of them one step at a time, and counts the network
//! evaluations it made (classifier-free guidance counts two per evaluation: it
//! runs the conditional and unconditional passes as one doubled batch).

mod chain;
mod guidance;
pub mod solvers;
pub mod spacing;

use autograd::Result;
use rand::Rng;
use tensor::Tensor;

use crate::diffusion::{normal, Objective};
use crate::schedule::NoiseSchedule;
use crate::unet::UNet;
pub use chain::{step_log_variance, Chain, History, Step};
pub use guidance::{guided_eps, predict};
pub use spacing::Spacing;

/// The variance of an ancestral step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Variance {
    /// `sigma^2 = beta_t` (the paper's "large" choice).
    Beta,
    /// `sigma^2 = beta_tilde_t`, the posterior variance ("small").
    BetaTilde,
    /// The model's own, per pixel, between the two (models trained with learned
    /// variances; see [`crate::variance`]).
    Learned,
}

/// Which reverse process to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    /// DDPM's ancestral sampler over `steps` evenly spaced steps (`T` for the paper's).
    Ancestral {
        /// Steps to take (at most `T`).
        steps: usize,
        /// `sigma^2`.
        variance: Variance,
    },
    /// DDIM over `steps` evenly spaced steps with noise scale `eta` (0: deterministic).
    Ddim {
        /// Steps to take.
        steps: usize,
        /// 0 for the deterministic sampler, 1 for DDPM-like noise.
        eta: f64,
    },
    /// DPM-Solver++ (Lu et al. 2022) over `steps` steps.
    DpmSolver {
        /// Steps to take.
        steps: usize,
        /// Which update.
        method: DpmMethod,
    },
    /// Heun's second-order method in EDM's formulation (Karras et al. 2022),
    /// `2 steps - 1` evaluations.
    Heun {
        /// Steps to take.
        steps: usize,
    },
}

/// The DPM-Solver++ updates ([`solvers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpmMethod {
    /// 2M: second order from the previous step's prediction, one evaluation a step.
    Multistep,
    /// 2S: second order through a midpoint, two evaluations a step.
    Singlestep,
    /// 2M SDE: the stochastic multistep variant (fresh noise every step).
    MultistepSde,
}

/// The ancestral sampler's default number of steps (on the respaced schedule).
pub const DEFAULT_ANCESTRAL_STEPS: usize = 250;

/// DDIM's default number of steps.
pub const DEFAULT_DDIM_STEPS: usize = 50;

/// The DPM-Solver++ samplers' default number of steps.
pub const DEFAULT_DPM_STEPS: usize = 20;

/// Heun's default number of steps (`2 * 10 - 1 = 19` evaluations).
pub const DEFAULT_HEUN_STEPS: usize = 10;

impl Sampler {
    /// The number of steps asked for (the chain takes at most `T`).
    pub fn steps(self) -> usize {
        match self {
            Sampler::Ancestral { steps, .. }
            | Sampler::Ddim { steps, .. }
            | Sampler::DpmSolver { steps, .. }
            | Sampler::Heun { steps } => steps,
        }
    }

    /// The spacing this sampler uses unless told otherwise: uniform for the
    /// DDPM and DDIM samplers (as the papers), Karras for the ODE solvers.
    pub fn default_spacing(self) -> Spacing {
        match self {
            Sampler::Ancestral { .. } | Sampler::Ddim { .. } => Spacing::Uniform,
            Sampler::DpmSolver { .. } | Sampler::Heun { .. } => Spacing::Karras,
        }
    }
}

/// Conditioning for class-conditional models: the class of each sample.
pub type Labels<'a> = Option<&'a [usize]>;

/// What a sample is conditioned on: class labels (one per sample) and the
/// classifier-free guidance scale.
#[derive(Debug, Clone, Copy)]
pub struct Condition<'a> {
    /// The class of each sample, or `None` for an unconditional model.
    pub labels: Labels<'a>,
    /// The guidance scale `w` (0: no guidance).
    pub guidance: f64,
}

impl Condition<'_> {
    /// No labels, no guidance.
    pub const NONE: Condition<'static> = Condition {
        labels: None,
        guidance: 0.0,
    };
}

/// Runs `sampler` from `x_t` (noise `[B, C, H, W]`) down to a sample in `[-1, 1]`,
/// calling `progress(i, S)` after each step. Recording is off (no tape).
#[allow(clippy::too_many_arguments)] // Chain::new's five, the rng and the callback
pub fn sample_from<R: Rng + ?Sized>(
    model: &UNet,
    objective: Objective,
    schedule: &NoiseSchedule,
    sampler: Sampler,
    x: Tensor,
    condition: Condition<'_>,
    rng: &mut R,
    progress: impl FnMut(usize, usize),
) -> Result<Tensor> {
    let chain = Chain::new(model, objective, schedule, sampler, condition)?;
    run_chain(&chain, x, rng, progress)
}

/// Walks all of `chain` from `x` (at its last index), calling `progress(i, S)`
/// after each step.
pub fn run_chain<R: Rng + ?Sized>(
    chain: &Chain<'_>,
    mut x: Tensor,
    rng: &mut R,
    mut progress: impl FnMut(usize, usize),
) -> Result<Tensor> {
    let mut history = History::default();
    for i in (0..chain.len()).rev() {
        x = chain
            .step(i, &x, &mut history, &mut |shape| normal(shape, rng))?
            .x;
        progress(chain.len() - i, chain.len());
    }
    Ok(x)
}

/// How many samples to draw, how, and of which classes.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The reverse process.
    pub sampler: Sampler,
    /// How its steps are spread (`None`: the sampler's default).
    pub spacing: Option<Spacing>,
    /// Number of samples.
    pub n: usize,
    /// Samples per batch (bounds memory).
    pub batch: usize,
    /// The class of each sample, for class-conditional models.
    pub labels: Labels<'a>,
    /// The classifier-free guidance scale `w` (0: none).
    pub guidance: f64,
    /// Clip each step's prediction of `x_0` to `[-1, 1]` (the paper's choice).
    pub clip: bool,
}

/// Samples and what they cost.
#[derive(Debug, Clone)]
pub struct Samples {
    /// `[n, C, H, W]` in `[-1, 1]`.
    pub images: Tensor,
    /// Network evaluations per image (NFE; a guided evaluation counts two).
    pub evaluations: usize,
}

/// Draws `request.n` samples in batches from `model` (which predicts
/// `objective`'s quantity), from noise drawn with `rng`.
pub fn sample<R: Rng + ?Sized>(
    model: &UNet,
    objective: Objective,
    schedule: &NoiseSchedule,
    request: Request<'_>,
    rng: &mut R,
    mut progress: impl FnMut(usize, usize),
) -> Result<Samples> {
    let c = &model.config;
    let (n, batch) = (request.n, request.batch.max(1));
    let spacing = request.spacing.unwrap_or(request.sampler.default_spacing());
    let (mut parts, mut evaluations) = (Vec::new(), 0);
    let mut done = 0;
    while done < n {
        let b = batch.min(n - done);
        let x_t = normal(&[b, c.in_ch, c.image_size, c.image_size], rng);
        let condition = Condition {
            labels: request.labels.map(|l| &l[done..done + b]),
            guidance: request.guidance,
        };
        let chain = Chain::with_spacing(model, objective, schedule, request.sampler, spacing, condition)?
            .with_clipping(request.clip);
        parts.push(run_chain(&chain, x_t, rng, &mut progress)?);
        evaluations = chain.evaluations();
        done += b;
    }
    let refs: Vec<&Tensor> = parts.iter().collect();
    Ok(Samples {
        images: Tensor::concat(&refs, 0)?,
        evaluations,
    })
}
