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

pub mod solvers;
pub mod spacing;

use std::cell::Cell;

use autograd::{no_grad, Result, Var};
use rand::Rng;
use tensor::{Tensor, TensorError};

use crate::diffusion::{normal, posterior_mean, Objective};
use crate::schedule::NoiseSchedule;
use crate::unet::UNet;
use crate::variance::{log_variance, split_output};
use solvers::{dpm2m, dpm2m_sde, dpm2s, heun, midpoint, Point};
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

/// Classifier-free guidance (Ho and Salimans 2022): with `w` the guidance scale,
/// `eps = (1 + w) eps(x, t, y) - w eps(x, t, none)`. `w = 0` is plain conditional
/// sampling; larger `w` trades diversity for samples that look more like their class.
/// It applies to the network's output whatever its objective: every conversion
/// to `eps` is affine in the output with coefficients fixed by `t`, so guiding the
/// output guides `eps` (and `x_0`) by the same formula.
pub fn guided_eps(conditional: &Tensor, unconditional: &Tensor, w: f64) -> Result<Tensor> {
    conditional.zip_map(unconditional, "guidance", |c, u| {
        ((1.0 + w) * c as f64 - w * u as f64) as f32
    })
}

/// The model's outputs at steps `t`: its prediction (of its objective's quantity;
/// conditional, and guided when `w != 0`) and, for learned variances, the
/// variance output `o` (from the conditional pass).
pub fn predict(
    model: &UNet,
    x: &Tensor,
    t: &[usize],
    labels: Labels<'_>,
    w: f64,
) -> Result<(Tensor, Option<Tensor>)> {
    let outputs = |y: Labels<'_>| -> Result<(Tensor, Option<Tensor>)> {
        let out = no_grad(|| model.forward(&Var::constant(x.clone()), t, y))?;
        let (prediction, o) = split_output(&out, model.config.learn_sigma)?;
        Ok((prediction.value().clone(), o.map(|o| o.value().clone())))
    };
    match (labels, model.config.num_classes) {
        (Some(y), Some(none)) if w != 0.0 => {
            // One pass on [x; x] with [y; none]: both estimates for one call.
            let b = t.len();
            let doubled = Tensor::concat(&[x, x], 0)?;
            let (t2, y2) = ([t, t].concat(), [y, &vec![none; b]].concat());
            let out = no_grad(|| model.forward(&Var::constant(doubled), &t2, Some(&y2)))?;
            let (prediction, o) = split_output(&out, model.config.learn_sigma)?;
            let prediction = prediction.value();
            let (cond, uncond) = (prediction.narrow(0, 0, b)?, prediction.narrow(0, b, b)?);
            let o = o.map(|o| o.value().narrow(0, 0, b)).transpose()?;
            Ok((guided_eps(&cond, &uncond, w)?, o))
        }
        _ => outputs(labels),
    }
}

/// `log sigma^2` of an ancestral step at respaced step `t` (one per image): a
/// `[B, 1, 1, 1]` constant for the fixed choices, per pixel for learned ones.
/// Step 0 of `Beta` uses `beta_tilde_1`, as the original code does.
pub fn step_log_variance(
    schedule: &NoiseSchedule,
    variance: Variance,
    t: &[usize],
    o: Option<&Tensor>,
) -> Result<Tensor> {
    let fixed = |lv: &dyn Fn(usize) -> f64| {
        let v = t.iter().map(|&s| lv(s) as f32).collect();
        Tensor::from_vec(v, &[t.len(), 1, 1, 1])
    };
    match (variance, o) {
        (Variance::Learned, Some(o)) => Ok(log_variance(schedule, t, &Var::constant(o.clone()))?
            .value()
            .clone()),
        (Variance::Learned, None) => Err(TensorError::InvalidArgument {
            op: "sample",
            msg: "learned variances need a model trained with them (train --learn-sigma)".into(),
        }),
        (Variance::BetaTilde, _) => fixed(&|s| schedule.log_beta_tilde_clipped[s]),
        (Variance::Beta, _) => fixed(&|s| {
            if s == 0 {
                schedule.beta_tilde[1.min(schedule.steps() - 1)].ln()
            } else {
                schedule.beta[s].ln()
            }
        }),
    }
}

/// What one reverse step produced: the next (less noisy) `x` and the model's
/// prediction of `x_0` made on the way (clipped to `[-1, 1]`).
#[derive(Debug, Clone)]
pub struct Step {
    /// `x` at the next kept step (the sample itself after the last step).
    pub x: Tensor,
    /// The predicted `x_0`.
    pub x0: Tensor,
}

/// What a multistep solver carries from one step to the next: the previous
/// point and its data prediction. Start every chain (or a continuation of one)
/// with `History::default()`: the first step is then first order.
#[derive(Debug, Clone, Default)]
pub struct History {
    previous: Option<(Point, Tensor)>,
}

impl History {
    /// The same history with `f` applied to its batch (e.g. rows repeated, to
    /// continue one chain as several).
    pub fn map(&self, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<History> {
        let previous = match &self.previous {
            Some((p, d)) => Some((*p, f(d)?)),
            None => None,
        };
        Ok(History { previous })
    }
}

/// A reverse process ready to run: the sampler, its kept steps `tau_1 < ... <
/// tau_S`, the schedule respaced to them, the model (and what its output
/// predicts) and the conditioning. Index `i` runs from `S - 1` (pure noise) down
/// to 0; [`sample_from`] walks all of it, and the paper's figures
/// ([`crate::figures`]) start or stop part way.
pub struct Chain<'a> {
    model: &'a UNet,
    objective: Objective,
    sampler: Sampler,
    kept: Vec<usize>,
    respaced: NoiseSchedule,
    schedule: NoiseSchedule,
    condition: Condition<'a>,
    evaluations: Cell<usize>,
}

impl<'a> Chain<'a> {
    /// Checks the sampler's settings and respaces `schedule` to its steps,
    /// spread by the sampler's [`Sampler::default_spacing`], for a `model`
    /// trained to predict `objective`'s quantity.
    pub fn new(
        model: &'a UNet,
        objective: Objective,
        schedule: &NoiseSchedule,
        sampler: Sampler,
        condition: Condition<'a>,
    ) -> Result<Chain<'a>> {
        Self::with_spacing(
            model,
            objective,
            schedule,
            sampler,
            sampler.default_spacing(),
            condition,
        )
    }

    /// [`Chain::new`] with the steps spread by `spacing`.
    pub fn with_spacing(
        model: &'a UNet,
        objective: Objective,
        schedule: &NoiseSchedule,
        sampler: Sampler,
        spacing: Spacing,
        condition: Condition<'a>,
    ) -> Result<Chain<'a>> {
        let bad = |msg: String| Err(TensorError::InvalidArgument { op: "sample", msg });
        if sampler.steps() == 0 {
            return bad("needs at least one step".into());
        }
        if let Sampler::Ddim { eta, .. } = sampler {
            if !(0.0..=1.0).contains(&eta) {
                return bad(format!("eta {eta} is not in [0, 1]"));
            }
        }
        if let Sampler::Ancestral {
            variance: Variance::Learned,
            ..
        } = sampler
        {
            if !model.config.learn_sigma {
                return bad("learned variances need a model trained with them (train --learn-sigma)".into());
            }
        }
        let kept = spacing::kept_steps(spacing, &schedule.alpha_bar, sampler.steps());
        let respaced = schedule.respaced(&kept);
        Ok(Chain {
            model,
            objective,
            sampler,
            kept,
            respaced,
            schedule: schedule.clone(),
            condition,
            evaluations: Cell::new(0),
        })
    }

    /// The number of steps `S`.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Whether the chain has no steps (never: [`Chain::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// The diffusion step `tau_i` (of the original `0..T`) that index `i` stands for.
    pub fn diffusion_step(&self, i: usize) -> usize {
        self.kept[i]
    }

    /// The last index whose diffusion step is at most `t`: where to enter the
    /// chain with an `x_t` made by `q_sample` at that step.
    pub fn index_at_or_below(&self, t: usize) -> usize {
        self.kept.iter().rposition(|&s| s <= t).unwrap_or(0)
    }

    /// Network evaluations per image so far (a guided evaluation counts two).
    pub fn evaluations(&self) -> usize {
        self.evaluations.get()
    }

    /// The data prediction `D(x, t)` at diffusion step `t` for every image of
    /// `x` (the network's output converted by its objective, clipped to `[-1,
    /// 1]`) and the variance output, counted.
    fn predict(&self, x: &Tensor, t: usize) -> Result<(Tensor, Option<Tensor>)> {
        let (labels, w) = (self.condition.labels, self.condition.guidance);
        let guided = labels.is_some() && w != 0.0;
        self.evaluations
            .set(self.evaluations.get() + 1 + usize::from(guided));
        let steps = vec![t; x.shape()[0]];
        let (output, o) = predict(self.model, x, &steps, labels, w)?;
        let x0 = self.objective.x0(&self.schedule, x, &steps, &output)?;
        Ok((x0.clamp(-1.0, 1.0)?, o))
    }

    /// The data prediction `D(x, t)` alone, for the ODE solvers.
    fn denoise(&self, x: &Tensor, t: usize) -> Result<Tensor> {
        Ok(self.predict(x, t)?.0)
    }

    /// One reverse step from `x` at index `i` to index `i - 1` (to clean data
    /// from index 0), drawing the step's noise (`[B, C, H, W]`) from `noise`
    /// when the sampler needs it; multistep solvers read and update `history`.
    pub fn step(
        &self,
        i: usize,
        x: &Tensor,
        history: &mut History,
        noise: &mut dyn FnMut(&[usize]) -> Tensor,
    ) -> Result<Step> {
        let method = match self.sampler {
            Sampler::Ancestral { variance, .. } => {
                return self.respaced_step(i, x, Some(variance), 0.0, noise)
            }
            Sampler::Ddim { eta, .. } => return self.respaced_step(i, x, None, eta, noise),
            Sampler::DpmSolver { method, .. } => Some(method),
            Sampler::Heun { .. } => None,
        };
        let alpha_bar = &self.schedule.alpha_bar;
        let from = Point::at(alpha_bar, self.kept[i]);
        let to = match i {
            0 => Point::CLEAN,
            _ => Point::at(alpha_bar, self.kept[i - 1]),
        };
        let d = self.denoise(x, from.t)?;
        let previous = history.previous.as_ref().map(|(p, d)| (*p, d));
        let mut denoise = |x: &Tensor, t: usize| self.denoise(x, t);
        let next = match method {
            Some(DpmMethod::Multistep) => dpm2m(x, from, to, &d, previous)?,
            // The step to clean data is deterministic: it draws no noise.
            Some(DpmMethod::MultistepSde) if !to.is_clean() => {
                dpm2m_sde(x, from, to, &d, previous, &noise(x.shape()))?
            }
            Some(DpmMethod::MultistepSde) => d.clone(),
            Some(DpmMethod::Singlestep) => {
                dpm2s(x, from, to, &d, midpoint(alpha_bar, from, to), &mut denoise)?
            }
            None => heun(x, from, to, &d, &mut denoise)?,
        };
        history.previous = Some((from, d.clone()));
        Ok(Step { x: next, x0: d })
    }

    /// A step of the ancestral sampler (with `variance`) or of DDIM (noise
    /// scale `eta`), on the respaced schedule.
    fn respaced_step(
        &self,
        i: usize,
        x: &Tensor,
        variance: Option<Variance>,
        eta: f64,
        noise: &mut dyn FnMut(&[usize]) -> Tensor,
    ) -> Result<Step> {
        let rs = &self.respaced;
        let t_rs = vec![i; x.shape()[0]];
        let (x0, o) = self.predict(x, self.kept[i])?;
        let next = match variance {
            Some(variance) => {
                let mean = posterior_mean(rs, &x0, x, &t_rs)?;
                if i > 0 {
                    let sigma = step_log_variance(rs, variance, &t_rs, o.as_ref())?
                        .mul_scalar(0.5)
                        .exp();
                    mean.add(&noise(x.shape()).mul(&sigma)?)?
                } else {
                    mean
                }
            }
            None => {
                let (ab, ab_prev) = (rs.alpha_bar[i], rs.alpha_bar_prev[i]);
                let eps = x
                    .sub(&x0.mul_scalar(ab.sqrt() as f32))?
                    .mul_scalar((1.0 / (1.0 - ab).sqrt()) as f32);
                let sigma = eta * ((1.0 - ab_prev) / (1.0 - ab)).sqrt() * (1.0 - ab / ab_prev).sqrt();
                let dir = (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt();
                let next = x0
                    .mul_scalar(ab_prev.sqrt() as f32)
                    .add(&eps.mul_scalar(dir as f32))?;
                if sigma > 0.0 {
                    next.add(&noise(x.shape()).mul_scalar(sigma as f32))?
                } else {
                    next
                }
            }
        };
        Ok(Step { x: next, x0 })
    }
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
        let chain = Chain::with_spacing(model, objective, schedule, request.sampler, spacing, condition)?;
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
