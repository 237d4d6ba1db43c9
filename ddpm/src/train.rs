//! The training loop: Adam on the training loss ([`crate::loss`]), warm-up,
//! gradient clipping, an EMA of the weights, progress reports, a loss CSV, atomic
//! checkpoints and resumption.
//!
//! Gradient accumulation: a step runs `accumulate` micro-batches of `batch`
//! images, each loss scaled by `1 / accumulate` before its backward pass, so the
//! gradients the tape sums are their mean, the gradient of one batch of
//! `accumulate * batch` images. The clip, the learning rate, Adam and the EMA act
//! once per step; the logged loss is the mean over the micro-batches.
//!
//! Reproducibility: every random draw of micro-batch `m` of step `s` (the images,
//! the steps `t`, the noise, the dropout masks) comes from a generator seeded with
//! `(seed, s, m)`, micro-batch 0 drawing what a run without accumulation draws.
//! So a checkpoint needs only the step number (and the learning rate's horizon)
//! to resume exactly where the run left off, and a resumed run computes the same
//! losses as an uninterrupted one.
//!
//! The learning rate warms up linearly, then stays constant or decays (cosine or
//! linear, [`LrDecay`]) to a floor at the *horizon*: `max_steps` when the run has
//! one; else, for a run with only a time budget, an estimate fixed once the
//! warm-up is over and this run has timed [`HORIZON_AFTER_STEPS`] steps (or spent
//! [`HORIZON_AFTER_FRACTION`] of its budget): the step it will reach at its
//! measured pace ([`estimate_horizon`]). Until then the rate is the peak one. The
//! checkpoint records the horizon, and a resumed run without `max_steps` reuses
//! it, so its rates are the uninterrupted run's.
//!
//! Nothing is lost or silently replaced: a directory that already holds a run is
//! refused unless `resume` (continue it) or `overwrite` (start over) says which;
//! a resumed run first cuts its loss log back to the checkpoint's step; and a
//! step whose loss, gradient or updated weights are not finite stops the run
//! before anything is saved, so the last checkpoint on disk is the last good one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use autograd::Parameter;
use nn::optim::{clip_grad_norm, LrSchedule, Optimizer};
use nn::Module;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tensor::Tensor;

use crate::checkpoint::{checkpoint_path, TrainState, TrainingRecord, EMA_FILE};
use crate::contract::Contract;
use crate::data::Dataset;
use crate::diffusion::normal;
use crate::error::{Context, Error, Result};
use crate::loss::{loss_at, LossOptions};
use crate::losslog::{self, Row, LOSS_FILE};
use crate::schedule::NoiseSchedule;

/// How the learning rate falls after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LrDecay {
    /// Constant at the peak rate.
    None,
    /// Half a cosine down to the floor at the horizon.
    Cosine,
    /// A straight line down to the floor at the horizon.
    Linear,
}

impl LrDecay {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LrDecay::None => "none",
            LrDecay::Cosine => "cosine",
            LrDecay::Linear => "linear",
        }
    }
}

/// A time-budgeted run fixes its learning-rate horizon once it has timed this
/// many steps (after the warm-up) ...
pub const HORIZON_AFTER_STEPS: u64 = 20;

/// ... or spent this fraction of its budget, whichever comes first.
pub const HORIZON_AFTER_FRACTION: f64 = 0.05;

/// The step a run at `step` reaches by the end of its `budget` seconds, having
/// done `timed` steps in `elapsed` seconds: `step + floor((budget - elapsed) /
/// (elapsed / timed))`.
pub fn estimate_horizon(step: u64, timed: u64, elapsed: f64, budget: f64) -> u64 {
    let per_step = elapsed.max(1e-9) / timed.max(1) as f64;
    step + ((budget - elapsed).max(0.0) / per_step).floor() as u64
}

/// Everything a training run is told.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The model and diffusion to train (config, schedule, `T`, objective).
    pub contract: Contract,
    /// Images per micro-batch.
    pub batch: usize,
    /// Micro-batches per optimiser step (1: none), their gradients averaged.
    pub accumulate: usize,
    /// Stop after this many steps (in total, counting resumed ones) ...
    pub max_steps: Option<u64>,
    /// ... or after this much time in this run, whichever comes first.
    pub time_budget: Option<Duration>,
    /// Peak learning rate.
    pub lr: f32,
    /// Linear warm-up steps.
    pub warmup: u64,
    /// The decay after the warm-up.
    pub lr_decay: LrDecay,
    /// The rate the decay ends at (at most `lr`).
    pub lr_min: f32,
    /// Global gradient-norm clip.
    pub clip: f32,
    /// min-SNR-gamma loss weighting's `gamma` (`None`: unweighted).
    pub min_snr: Option<f64>,
    /// The EMA's maximum decay.
    pub ema_decay: f32,
    /// Seed of everything random.
    pub seed: u64,
    /// Where the checkpoint, CSV and samples go.
    pub out_dir: PathBuf,
    /// Continue from `out_dir/checkpoint.safetensors`.
    pub resume: bool,
    /// Start over in a directory that already holds a run, replacing it.
    pub overwrite: bool,
    /// Save a checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
}

impl TrainOptions {
    /// The loss the run trains on.
    pub fn loss(&self) -> LossOptions {
        LossOptions {
            objective: self.contract.objective,
            min_snr: self.min_snr,
        }
    }

    /// The learning rate of step `step` with the decay ending at `horizon`
    /// (`None`: not fixed yet, the peak rate after the warm-up).
    pub fn learning_rate(&self, horizon: Option<u64>, step: u64) -> f32 {
        let schedule = LrSchedule {
            base: self.lr,
            warmup: self.warmup,
            total: horizon.filter(|_| self.lr_decay != LrDecay::None),
            min: self.lr_min,
        };
        match self.lr_decay {
            LrDecay::Linear => schedule.at_linear(step),
            LrDecay::None | LrDecay::Cosine => schedule.at(step),
        }
    }

    /// The settings the run's checkpoints record and a resume must repeat.
    pub fn record(&self) -> TrainingRecord {
        TrainingRecord {
            seed: self.seed,
            min_snr: self.min_snr,
            batch: self.batch,
            accumulate: self.accumulate,
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Total steps done (including resumed ones).
    pub steps: u64,
    /// Steps done by this run.
    pub steps_this_run: u64,
    /// Images per second over this run.
    pub images_per_sec: f64,
    /// The smoothed loss at the end.
    pub smoothed_loss: f64,
    /// The checkpoint written at the end.
    pub checkpoint: PathBuf,
    /// The EMA weights written at the end.
    pub ema: PathBuf,
    /// The loss log.
    pub loss_log: PathBuf,
}

/// What the loop tells its caller, who decides how to show it (a progress bar,
/// or plain lines).
#[derive(Debug, Clone)]
pub enum Event {
    /// A line worth printing as it is (start, resume, the learning rate's plan
    /// and its estimated horizon).
    Line(String),
    /// A step finished.
    Step(Progress),
}

/// The state of the run after a step.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Steps done in total.
    pub step: u64,
    /// The first step of this run (0, or where it resumed).
    pub first: u64,
    /// The run's step limit, if it has one.
    pub max_steps: Option<u64>,
    /// The smoothed loss.
    pub smoothed_loss: f64,
    /// Images per second over this run.
    pub images_per_sec: f64,
    /// Seconds since this run started.
    pub elapsed: f64,
    /// Seconds left (by the step limit or the time budget, whichever is sooner).
    pub eta: f64,
}

/// The generator of step `step` of a run seeded `seed` (SplitMix64 mixing, so
/// nearby seeds and steps give unrelated streams).
pub fn step_rng(seed: u64, step: u64, stream: u64) -> StdRng {
    let z = seed ^ step.wrapping_mul(tensor::rng::GOLDEN_GAMMA) ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
    StdRng::seed_from_u64(tensor::splitmix64(z))
}

/// The generators of micro-batch `m` of a step use streams offset by `m` times
/// this (stream 1 draws the data, 100 + k seeds dropout layer k), so micro-batch
/// 0 keeps the streams of a run without accumulation.
pub const MICRO_BATCH_STREAMS: u64 = 1 << 32;

/// What one micro-batch draws: its images (and labels, some dropped for a
/// conditional model), a step per image and the noise.
#[derive(Debug, Clone)]
pub struct MicroBatch {
    /// `[batch, C, H, W]` in `[-1, 1]`.
    pub x0: Tensor,
    /// The labels the model sees (`none` where dropped), for a conditional model.
    pub labels: Option<Vec<usize>>,
    /// The diffusion step of each image, uniform over `0..T`.
    pub t: Vec<usize>,
    /// The noise of each image.
    pub eps: Tensor,
}

/// Micro-batch `m` of step `step`: everything drawn from `(opts.seed, step, m)`.
pub fn micro_batch(
    data: &Dataset,
    schedule: &NoiseSchedule,
    opts: &TrainOptions,
    step: u64,
    m: u64,
) -> Result<MicroBatch> {
    let mut rng = step_rng(opts.seed, step, 1 + m * MICRO_BATCH_STREAMS);
    let indices: Vec<usize> = (0..opts.batch).map(|_| rng.gen_range(0..data.len())).collect();
    let (x0, labels) = data.batch(&indices)?;
    let labels = match opts.contract.config.num_classes {
        None => None,
        Some(none) => {
            let labels =
                labels.ok_or_else(|| Error::usage("a class-conditional model needs labelled data"))?;
            Some(drop_labels(labels, none, &mut rng))
        }
    };
    let t = (0..opts.batch)
        .map(|_| rng.gen_range(0..schedule.steps()))
        .collect();
    let eps = normal(x0.shape(), &mut rng);
    Ok(MicroBatch { x0, labels, t, eps })
}

/// The probability that a training label is replaced by "no label", so that one
/// network learns both the conditional and the unconditional noise estimate that
/// classifier-free guidance combines (Ho and Salimans 2022).
pub const LABEL_DROP: f32 = 0.1;

/// `labels` with each one replaced by `none` with probability [`LABEL_DROP`].
pub fn drop_labels<R: Rng + ?Sized>(labels: Vec<usize>, none: usize, rng: &mut R) -> Vec<usize> {
    labels
        .into_iter()
        .map(|y| if rng.gen::<f32>() < LABEL_DROP { none } else { y })
        .collect()
}

/// The name of the first parameter with a NaN or infinite entry.
fn first_non_finite(state: &TrainState) -> Option<String> {
    let names = state.model.parameters();
    let bad = |p: &Parameter| {
        let v = p.value();
        match v.as_slice() {
            Some(s) => s.iter().any(|x| !x.is_finite()),
            None => v.to_vec().iter().any(|x| !x.is_finite()),
        }
    };
    names.into_iter().find(|(_, p)| bad(p)).map(|(n, _)| n)
}

/// One optimisation step at `state.step` with learning rate `lr`, over
/// `opts.accumulate` micro-batches; returns the loss (the micro-batches' mean)
/// and the gradient norm before clipping. Errors on a non-finite loss or
/// gradient (before updating anything) and on non-finite weights after the
/// update (the caller must then not save the state).
pub fn train_step(
    state: &mut TrainState,
    data: &Dataset,
    schedule: &NoiseSchedule,
    lr: f32,
    opts: &TrainOptions,
) -> Result<(f32, f32)> {
    let step = state.step;
    let non_finite = |what: String| Error::NonFinite { step, what };
    let k = opts.accumulate;
    state.optimizer.zero_grad();
    let mut sum = 0.0f64;
    for m in 0..k as u64 {
        for (j, d) in state.model.dropouts().iter().enumerate() {
            d.set_rng(step_rng(
                opts.seed,
                step,
                100 + j as u64 + m * MICRO_BATCH_STREAMS,
            ));
        }
        let b = micro_batch(data, schedule, opts, step, m)?;
        let loss = loss_at(
            &state.model,
            schedule,
            opts.loss(),
            &b.x0,
            &b.t,
            &b.eps,
            b.labels.as_deref(),
        )
        .context("the training loss")?;
        let value = loss.value().item().context("the training loss")?;
        if !value.is_finite() {
            autograd::clear_tape();
            return Err(non_finite(format!("loss ({value})")));
        }
        // The tape adds each backward pass to the gradients: scaled, they sum to the mean.
        let loss = if k == 1 {
            loss
        } else {
            loss.mul_scalar(1.0 / k as f32)
        };
        loss.backward().context("the backward pass")?;
        sum += value as f64;
    }
    let norm = clip_grad_norm(state.params(), opts.clip).context("clipping the gradient")?;
    if !norm.is_finite() {
        return Err(non_finite(format!("gradient norm ({norm})")));
    }
    state.optimizer.set_lr(lr);
    state.optimizer.step().context("the Adam update")?;
    if let Some(name) = first_non_finite(state) {
        return Err(non_finite(format!("weight {name:?} after the update")));
    }
    state.update_ema().context("the EMA update")?;
    state.step += 1;
    Ok(((sum / k as f64) as f32, norm))
}

/// `mm:ss` or `h:mm:ss`.
pub fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Makes the output directory ready: refuses one that holds a run unless
/// `resume` or `overwrite` says what to do with it.
fn prepare_out_dir(opts: &TrainOptions) -> Result<()> {
    let dir = &opts.out_dir;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    if opts.resume {
        return Ok(());
    }
    let existing: Vec<&str> = [crate::checkpoint::CHECKPOINT_FILE, EMA_FILE, LOSS_FILE]
        .into_iter()
        .filter(|f| dir.join(f).exists())
        .collect();
    if existing.is_empty() {
        return Ok(());
    }
    if !opts.overwrite {
        return Err(Error::usage(format!(
            "{} already holds a training run ({}): pass --resume to continue it, --overwrite to \
             start over (replacing it), or another --out",
            dir.display(),
            existing.join(", ")
        )));
    }
    for f in existing {
        let path = dir.join(f);
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The line that says how the learning rate will go.
fn lr_plan(opts: &TrainOptions, state: &TrainState) -> String {
    let warm = format!("lr {:e} after a {}-step warm-up", opts.lr, opts.warmup);
    if opts.lr_decay == LrDecay::None {
        return format!("{warm}, then constant");
    }
    let decay = format!("{} decay to {:e}", opts.lr_decay.name(), opts.lr_min);
    match (state.lr_horizon, opts.max_steps) {
        (Some(h), Some(_)) => format!("{warm}, {decay} at step {}", thousands(h)),
        (Some(h), None) => format!(
            "{warm}, {decay} at step {} (the checkpoint's horizon)",
            thousands(h)
        ),
        (None, _) => format!(
            "{warm}, {decay} at a horizon estimated from the step time after the warm-up (and at least \
             {HORIZON_AFTER_STEPS} steps or {}% of the time budget)",
            HORIZON_AFTER_FRACTION * 100.0
        ),
    }
}

/// Fixes a time-budgeted run's horizon when the time has come (see the module
/// doc); returns the line that says so.
fn fix_horizon(opts: &TrainOptions, state: &mut TrainState, first: u64, elapsed: f64) -> Option<String> {
    let budget = opts.time_budget?.as_secs_f64();
    let timed = state.step - first;
    let ready = timed >= 1
        && state.step >= opts.warmup
        && (timed >= HORIZON_AFTER_STEPS || elapsed >= HORIZON_AFTER_FRACTION * budget);
    if opts.lr_decay == LrDecay::None || state.lr_horizon.is_some() || !ready {
        return None;
    }
    let horizon = estimate_horizon(state.step, timed, elapsed, budget);
    state.lr_horizon = Some(horizon);
    Some(format!(
        "lr horizon ~{} steps (estimated at step {} from {:.3} s/step and the time left)",
        thousands(horizon),
        state.step,
        elapsed / timed as f64
    ))
}

/// Trains until `max_steps` or the time budget, telling `report` about each
/// step; saves the checkpoint and the EMA weights, and returns the state.
pub fn train(
    data: &Dataset,
    opts: &TrainOptions,
    mut report: impl FnMut(Event),
) -> Result<(TrainState, TrainSummary)> {
    if let Some(gamma) = opts.min_snr.filter(|g| !(g.is_finite() && *g > 0.0)) {
        return Err(Error::usage(format!(
            "min-SNR gamma {gamma} is not a positive number"
        )));
    }
    if opts.accumulate == 0 {
        return Err(Error::usage("accumulating 0 micro-batches per step"));
    }
    if opts.lr_decay != LrDecay::None && !(0.0..=opts.lr).contains(&opts.lr_min) {
        return Err(Error::usage(format!(
            "the learning rate's floor {} is not in [0, {}] (the peak rate)",
            opts.lr_min, opts.lr
        )));
    }
    prepare_out_dir(opts)?;
    let ckpt = checkpoint_path(&opts.out_dir);
    let csv = opts.out_dir.join(LOSS_FILE);
    let contract = &opts.contract;
    let mut state = TrainState::new(contract, opts.lr, opts.ema_decay, opts.seed)?;
    let effective = opts.batch * opts.accumulate;
    let batch = match opts.accumulate {
        1 => effective.to_string(),
        k => format!("{effective} ({k} micro-batches of {})", opts.batch),
    };
    report(Event::Line(format!(
        "training {} ({} parameters) on {} images, batch {batch}, {} schedule, T = {}, predicting {}{}, {} threads",
        contract.config.name,
        state.model.num_parameters(),
        data.len(),
        contract.schedule.name(),
        contract.diffusion_steps,
        contract.objective.name(),
        opts.min_snr.map_or(String::new(), |g| format!(" (min-SNR gamma {g})")),
        rayon::current_num_threads()
    )));
    if opts.resume {
        if !ckpt.exists() {
            return Err(Error::usage(format!(
                "--resume: there is no {} to continue from",
                ckpt.display()
            )));
        }
        state.load(&ckpt, contract, &opts.record())?;
        losslog::truncate(&csv, state.step)?;
        report(Event::Line(format!(
            "resumed from {} at step {}",
            ckpt.display(),
            state.step
        )));
    }
    let schedule = contract.noise_schedule();
    if opts.lr_decay != LrDecay::None && opts.max_steps.is_some() {
        state.lr_horizon = opts.max_steps;
    }
    report(Event::Line(lr_plan(opts, &state)));
    state.model.set_training(true);
    let start = Instant::now();
    let first = state.step;
    let mut smoothed: Option<f64> = None;
    let done = |state: &TrainState| {
        opts.max_steps.is_some_and(|m| state.step >= m)
            || opts.time_budget.is_some_and(|b| start.elapsed() >= b)
    };
    while !done(&state) {
        if let Some(line) = fix_horizon(opts, &mut state, first, start.elapsed().as_secs_f64()) {
            report(Event::Line(line));
        }
        let lr = opts.learning_rate(state.lr_horizon, state.step);
        let (loss, norm) = train_step(&mut state, data, &schedule, lr, opts)?;
        let s = smoothed.map_or(loss as f64, |m| 0.98 * m + 0.02 * loss as f64);
        smoothed = Some(s);
        let elapsed = start.elapsed().as_secs_f64();
        let ips = ((state.step - first) as usize * effective) as f64 / elapsed.max(1e-9);
        let row = Row {
            step: state.step,
            loss,
            smoothed_loss: s,
            grad_norm: norm,
            lr,
            images_per_sec: ips,
            elapsed,
        };
        losslog::append(&csv, &row)?;
        let per_step = elapsed / (state.step - first) as f64;
        let by_steps = opts
            .max_steps
            .map(|m| m.saturating_sub(state.step) as f64 * per_step);
        let by_time = opts
            .time_budget
            .map(|b| b.saturating_sub(start.elapsed()).as_secs_f64());
        report(Event::Step(Progress {
            step: state.step,
            first,
            max_steps: opts.max_steps,
            smoothed_loss: s,
            images_per_sec: ips,
            elapsed,
            eta: by_steps.into_iter().chain(by_time).fold(f64::INFINITY, f64::min),
        }));
        if state.step.is_multiple_of(opts.checkpoint_every) {
            state.save(&ckpt, contract, &opts.record())?;
        }
    }
    state.save(&ckpt, contract, &opts.record())?;
    let ema = opts.out_dir.join(EMA_FILE);
    state.save_ema(&ema, contract)?;
    let elapsed = start.elapsed().as_secs_f64();
    let summary = TrainSummary {
        steps: state.step,
        steps_this_run: state.step - first,
        images_per_sec: ((state.step - first) as usize * effective) as f64 / elapsed.max(1e-9),
        smoothed_loss: smoothed.unwrap_or(f64::NAN),
        checkpoint: ckpt,
        ema,
        loss_log: csv,
    };
    Ok((state, summary))
}
