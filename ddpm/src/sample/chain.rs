//! A reverse process ready to run, one step at a time: the [`Chain`] holds the
//! kept steps, the respaced schedule of the ancestral and DDIM samplers and the
//! points of the ODE solvers, calls the network (counting its evaluations), and
//! carries a multistep solver's [`History`] from step to step.

use std::cell::Cell;

use autograd::{Result, Var};
use tensor::{Tensor, TensorError};

use super::guidance::predict;
use super::solvers::{dpm2m, dpm2m_sde, dpm2s, heun, midpoint, Point};
use super::{spacing, Condition, DpmMethod, Sampler, Spacing, Variance};
use crate::diffusion::{posterior_mean, Objective};
use crate::schedule::NoiseSchedule;
use crate::unet::UNet;
use crate::variance::log_variance;

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
/// to 0; [`super::sample_from`] walks all of it, and the paper's figures
/// ([`crate::figures`]) start or stop part way.
pub struct Chain<'a> {
    model: &'a UNet,
    objective: Objective,
    sampler: Sampler,
    kept: Vec<usize>,
    respaced: NoiseSchedule,
    schedule: NoiseSchedule,
    condition: Condition<'a>,
    clip: bool,
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
            clip: true,
            evaluations: Cell::new(0),
        })
    }

    /// The same chain with the prediction of `x_0` clipped to `[-1, 1]` at every
    /// step (`clip`, the default, as the paper's sampler does) or left as the
    /// network gives it.
    pub fn with_clipping(mut self, clip: bool) -> Self {
        self.clip = clip;
        self
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
    /// 1]` unless [`Chain::with_clipping`] said not to) and the variance output,
    /// counted.
    fn predict(&self, x: &Tensor, t: usize) -> Result<(Tensor, Option<Tensor>)> {
        let (labels, w) = (self.condition.labels, self.condition.guidance);
        let guided = labels.is_some() && w != 0.0;
        self.evaluations
            .set(self.evaluations.get() + 1 + usize::from(guided));
        let steps = vec![t; x.shape()[0]];
        let (output, o) = predict(self.model, x, &steps, labels, w)?;
        let x0 = self.objective.x0(&self.schedule, x, &steps, &output)?;
        Ok((if self.clip { x0.clamp(-1.0, 1.0)? } else { x0 }, o))
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
