//! The training loop: Adam on `L_simple`, warm-up, gradient clipping, an EMA of
//! the weights, progress lines, a loss CSV, atomic checkpoints and resumption.
//!
//! Reproducibility: every random draw of step `s` (the batch, the steps `t`, the
//! noise, the dropout masks) comes from a generator seeded with `(seed, s)`. So
//! a checkpoint needs only the step number to resume exactly where the run left
//! off, and a resumed run computes the same losses as an uninterrupted one.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use autograd::Parameter;
use nn::optim::{clip_grad_norm, Adam, Ema, LrSchedule, Optimizer};
use nn::safetensors::{self, CheckpointError};
use nn::Module;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tensor::Tensor;

use crate::config::UNetConfig;
use crate::data::Dataset;
use crate::diffusion::training_loss;
use crate::schedule::{BetaSchedule, NoiseSchedule};
use crate::unet::UNet;

/// Everything a training run is told.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The U-Net config.
    pub config: UNetConfig,
    /// Diffusion steps `T`.
    pub diffusion_steps: usize,
    /// The beta schedule.
    pub schedule: BetaSchedule,
    /// Images per step.
    pub batch: usize,
    /// Stop after this many steps (in total, counting resumed ones) ...
    pub max_steps: Option<u64>,
    /// ... or after this much time in this run, whichever comes first.
    pub time_budget: Option<Duration>,
    /// Peak learning rate.
    pub lr: f32,
    /// Linear warm-up steps.
    pub warmup: u64,
    /// Global gradient-norm clip.
    pub clip: f32,
    /// The EMA's maximum decay.
    pub ema_decay: f32,
    /// Seed of everything random.
    pub seed: u64,
    /// Where the checkpoint, CSV and samples go.
    pub out_dir: PathBuf,
    /// Continue from `out_dir/checkpoint.safetensors`.
    pub resume: bool,
    /// Save a checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// Print a progress line every this many steps.
    pub log_every: u64,
}

/// Why training stopped early, or could not start.
#[derive(Debug)]
pub enum TrainError {
    /// A tensor op failed (a bug, or a bad config).
    Tensor(tensor::TensorError),
    /// Reading or writing a checkpoint failed.
    Checkpoint(CheckpointError),
    /// Writing the CSV failed.
    Io(PathBuf, std::io::Error),
    /// The loss or the gradient became NaN or infinite.
    NonFinite {
        /// The step at which it happened.
        step: u64,
        /// What was not finite.
        what: String,
    },
    /// The checkpoint does not belong to this run.
    Mismatch(String),
    /// The data set could not give a batch.
    Data(String),
}

impl std::fmt::Display for TrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrainError::Tensor(e) => write!(f, "{e}"),
            TrainError::Checkpoint(e) => write!(f, "checkpoint: {e}"),
            TrainError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            TrainError::NonFinite { step, what } => write!(
                f,
                "the {what} at step {step} is not finite; stopped. The last checkpoint (before this step) is intact: \
                 lower --lr or check the data, then --resume"
            ),
            TrainError::Mismatch(m) => write!(f, "cannot resume: {m}"),
            TrainError::Data(m) => write!(f, "data: {m}"),
        }
    }
}

impl std::error::Error for TrainError {}

impl From<tensor::TensorError> for TrainError {
    fn from(e: tensor::TensorError) -> Self {
        TrainError::Tensor(e)
    }
}

impl From<CheckpointError> for TrainError {
    fn from(e: CheckpointError) -> Self {
        TrainError::Checkpoint(e)
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
}

/// The generator of step `step` of a run seeded `seed` (SplitMix64 mixing, so
/// nearby seeds and steps give unrelated streams).
pub fn step_rng(seed: u64, step: u64, stream: u64) -> StdRng {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// The model, its optimiser and its EMA: what a checkpoint holds.
pub struct TrainState {
    /// The network being trained.
    pub model: UNet,
    /// Adam over the network's parameters.
    pub optimizer: Adam,
    /// The moving average used for sampling.
    pub ema: Ema,
    /// Steps done.
    pub step: u64,
    names: Vec<String>,
    params: Vec<Parameter>,
}

impl TrainState {
    /// A fresh state for `opts` (weights drawn from the run's seed).
    pub fn new(opts: &TrainOptions) -> Result<TrainState, TrainError> {
        let model = UNet::new(&opts.config, &mut step_rng(opts.seed, u64::MAX, 0))?;
        let (names, params): (Vec<String>, Vec<Parameter>) = model.parameters().into_iter().unzip();
        Ok(TrainState {
            optimizer: Adam::new(params.clone(), opts.lr),
            ema: Ema::new(&params, opts.ema_decay),
            step: 0,
            model,
            names,
            params,
        })
    }

    /// Writes the checkpoint atomically: `model.*`, `ema.*`, `adam.m.*`, `adam.v.*`
    /// tensors, and the step, config and counters as metadata.
    pub fn save(&self, path: &Path, opts: &TrainOptions) -> Result<(), TrainError> {
        let (adam_steps, moments) = self.optimizer.state()?;
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (i, name) in self.names.iter().enumerate() {
            tensors.push((format!("model.{name}"), self.params[i].value()));
            tensors.push((format!("ema.{name}"), self.ema.shadow()[i].clone()));
            tensors.push((format!("adam.m.{name}"), moments[i].0.clone()));
            tensors.push((format!("adam.v.{name}"), moments[i].1.clone()));
        }
        let mut meta = opts.config.metadata();
        meta.extend([
            ("format".to_string(), "ddpm-train-checkpoint".to_string()),
            ("step".to_string(), self.step.to_string()),
            ("seed".to_string(), opts.seed.to_string()),
            ("adam_steps".to_string(), adam_steps.to_string()),
            ("ema_updates".to_string(), self.ema.updates().to_string()),
            ("diffusion_steps".to_string(), opts.diffusion_steps.to_string()),
        ]);
        safetensors::save(path, tensors.iter().map(|(n, t)| (n, t)), &meta)?;
        Ok(())
    }

    /// Restores a checkpoint written by [`TrainState::save`] for the same config.
    pub fn load(&mut self, path: &Path, opts: &TrainOptions) -> Result<(), TrainError> {
        let file = safetensors::load(path)?;
        let meta = file.metadata();
        let field = |k: &str| {
            meta.get(k)
                .cloned()
                .ok_or_else(|| TrainError::Mismatch(format!("{}: no {k:?} in the metadata", path.display())))
        };
        let number = |k: &str| -> Result<u64, TrainError> {
            field(k)?
                .parse()
                .map_err(|_| TrainError::Mismatch(format!("{}: bad {k:?}", path.display())))
        };
        // Read through from_metadata, so files older than a key get its default.
        let recorded = UNetConfig::from_metadata(meta, None)
            .map_err(|e| TrainError::Mismatch(format!("{}: {e}", path.display())))?
            .metadata();
        for (key, wanted) in opts.config.metadata() {
            let found = recorded.get(&key).cloned().unwrap_or_default();
            if found != wanted {
                return Err(TrainError::Mismatch(format!(
                    "{} was trained with {key} {found}, not {wanted}",
                    path.display()
                )));
            }
        }
        if number("seed")? != opts.seed {
            return Err(TrainError::Mismatch(format!(
                "{} was trained with seed {}, not {}",
                path.display(),
                number("seed")?,
                opts.seed
            )));
        }
        let mut expected = Vec::new();
        for (name, p) in self.names.iter().zip(&self.params) {
            for prefix in ["model", "ema", "adam.m", "adam.v"] {
                expected.push((format!("{prefix}.{name}"), p.shape()));
            }
        }
        file.check_against(&expected)?;
        let get = |k: String| file.tensor(&k).cloned();
        let mut shadow = Vec::new();
        let mut moments = Vec::new();
        for (name, p) in self.names.iter().zip(&self.params) {
            p.set_value(get(format!("model.{name}"))?)?;
            shadow.push(get(format!("ema.{name}"))?);
            moments.push((get(format!("adam.m.{name}"))?, get(format!("adam.v.{name}"))?));
        }
        self.ema.load(shadow, number("ema_updates")?)?;
        self.optimizer.load_state(number("adam_steps")?, moments)?;
        self.step = number("step")?;
        Ok(())
    }

    /// The EMA weights under the model's own names (what sampling loads).
    pub fn ema_tensors(&self) -> Vec<(String, Tensor)> {
        self.names
            .iter()
            .cloned()
            .zip(self.ema.shadow().iter().cloned())
            .collect()
    }
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

/// One optimisation step at `state.step`; returns the loss and the gradient norm
/// before clipping. Errors (without updating anything) on a non-finite value.
pub fn train_step(
    state: &mut TrainState,
    data: &Dataset,
    schedule: &NoiseSchedule,
    lr: &LrSchedule,
    opts: &TrainOptions,
) -> Result<(f32, f32), TrainError> {
    let step = state.step;
    let mut rng = step_rng(opts.seed, step, 1);
    for (k, d) in state.model.dropouts().iter().enumerate() {
        d.set_rng(step_rng(opts.seed, step, 100 + k as u64));
    }
    let indices: Vec<usize> = (0..opts.batch).map(|_| rng.gen_range(0..data.len())).collect();
    let (x0, labels) = data
        .batch(&indices)
        .map_err(|e| TrainError::Data(e.to_string()))?;
    let labels = match state.model.config.num_classes {
        None => None,
        Some(none) => {
            let labels = labels
                .ok_or_else(|| TrainError::Data("a class-conditional model needs labelled data".into()))?;
            Some(drop_labels(labels, none, &mut rng))
        }
    };
    state.optimizer.zero_grad();
    let loss = training_loss(&state.model, schedule, &x0, labels.as_deref(), &mut rng)?;
    let value = loss.value().item()?;
    if !value.is_finite() {
        autograd::clear_tape();
        return Err(TrainError::NonFinite {
            step,
            what: format!("loss ({value})"),
        });
    }
    loss.backward()?;
    let norm = clip_grad_norm(&state.params, opts.clip)?;
    if !norm.is_finite() {
        return Err(TrainError::NonFinite {
            step,
            what: format!("gradient norm ({norm})"),
        });
    }
    state.optimizer.set_lr(lr.at(step));
    state.optimizer.step()?;
    state.ema.update(&state.params)?;
    state.step += 1;
    Ok((value, norm))
}

/// Appends one line to the loss CSV (creating it with a header).
fn append_csv(path: &Path, line: &str) -> Result<(), TrainError> {
    let fresh = !path.exists();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TrainError::Io(path.to_path_buf(), e))?;
    let header = if fresh {
        "step,loss,smoothed_loss,grad_norm,lr,images_per_sec,elapsed_s\n"
    } else {
        ""
    };
    writeln!(f, "{header}{line}").map_err(|e| TrainError::Io(path.to_path_buf(), e))
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

/// Paths of a run's outputs inside its directory.
pub fn checkpoint_path(out_dir: &Path) -> PathBuf {
    out_dir.join("checkpoint.safetensors")
}

/// Trains until `max_steps` or the time budget; returns the trained state.
pub fn train(
    data: &Dataset,
    opts: &TrainOptions,
    mut log: impl FnMut(&str),
) -> Result<(TrainState, TrainSummary), TrainError> {
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| TrainError::Io(opts.out_dir.clone(), e))?;
    let ckpt = checkpoint_path(&opts.out_dir);
    let csv = opts.out_dir.join("loss.csv");
    let mut state = TrainState::new(opts)?;
    log(&format!(
        "training {} ({} parameters) on {} images, batch {}, {} threads",
        opts.config.name,
        state.model.num_parameters(),
        data.len(),
        opts.batch,
        rayon::current_num_threads()
    ));
    if opts.resume {
        state.load(&ckpt, opts)?;
        log(&format!("resumed from {} at step {}", ckpt.display(), state.step));
    } else if csv.exists() {
        std::fs::remove_file(&csv).map_err(|e| TrainError::Io(csv.clone(), e))?;
    }
    let schedule = NoiseSchedule::new(opts.schedule, opts.diffusion_steps);
    let lr = LrSchedule {
        base: opts.lr,
        warmup: opts.warmup,
        total: None,
        min: opts.lr,
    };
    state.model.set_training(true);
    let start = Instant::now();
    let first = state.step;
    let mut smoothed: Option<f64> = None;
    let done = |state: &TrainState| {
        opts.max_steps.is_some_and(|m| state.step >= m)
            || opts.time_budget.is_some_and(|b| start.elapsed() >= b)
    };
    while !done(&state) {
        let (loss, norm) = train_step(&mut state, data, &schedule, &lr, opts)?;
        let s = smoothed.map_or(loss as f64, |m| 0.98 * m + 0.02 * loss as f64);
        smoothed = Some(s);
        let elapsed = start.elapsed().as_secs_f64();
        let ips = ((state.step - first) as usize * opts.batch) as f64 / elapsed.max(1e-9);
        append_csv(
            &csv,
            &format!(
                "{},{loss},{s},{norm},{},{ips:.2},{elapsed:.2}",
                state.step,
                lr.at(state.step - 1)
            ),
        )?;
        if state.step % opts.log_every == 0 || state.step == first + 1 {
            let eta = eta_seconds(opts, &state, first, elapsed, start.elapsed());
            log(&format!(
                "step {:>6}  loss {s:.4}  {ips:6.1} images/s  elapsed {}  eta {}",
                state.step,
                clock(elapsed),
                clock(eta)
            ));
        }
        if state.step % opts.checkpoint_every == 0 {
            state.save(&ckpt, opts)?;
        }
    }
    state.save(&ckpt, opts)?;
    let elapsed = start.elapsed().as_secs_f64();
    let summary = TrainSummary {
        steps: state.step,
        steps_this_run: state.step - first,
        images_per_sec: ((state.step - first) as usize * opts.batch) as f64 / elapsed.max(1e-9),
        smoothed_loss: smoothed.unwrap_or(f64::NAN),
        checkpoint: ckpt,
    };
    Ok((state, summary))
}

/// Seconds left: the sooner of the step limit and the time budget.
fn eta_seconds(opts: &TrainOptions, state: &TrainState, first: u64, elapsed: f64, wall: Duration) -> f64 {
    let per_step = elapsed / (state.step - first).max(1) as f64;
    let by_steps = opts
        .max_steps
        .map(|m| m.saturating_sub(state.step) as f64 * per_step);
    let by_time = opts.time_budget.map(|b| b.saturating_sub(wall).as_secs_f64());
    match (by_steps, by_time) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => f64::INFINITY,
    }
}
