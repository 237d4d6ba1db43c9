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

mod lr;
mod step;

pub use lr::{estimate_horizon, LrDecay, HORIZON_AFTER_FRACTION, HORIZON_AFTER_STEPS};
use lr::{fix_horizon, lr_plan};
pub use step::{drop_labels, micro_batch, step_rng, train_step, MicroBatch, LABEL_DROP, MICRO_BATCH_STREAMS};

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nn::optim::LrSchedule;
use nn::Module;

use crate::checkpoint::{checkpoint_path, TrainState, TrainingRecord, EMA_FILE};
use crate::contract::Contract;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::loss::LossOptions;
use crate::losslog::{self, Row, LOSS_FILE};

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
        "training {} ({} parameters) on {} images, batch {batch}, {} schedule, T = {}, predicting {}{}, {} threads, SIMD {}",
        contract.config.name,
        state.model.num_parameters(),
        data.len(),
        contract.schedule.name(),
        contract.diffusion_steps,
        contract.objective.name(),
        opts.min_snr.map_or(String::new(), |g| format!(" (min-SNR gamma {g})")),
        rayon::current_num_threads(),
        tensor::simd::level()
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
