//! The command line, declared once with clap: every subcommand, flag, default and
//! bound. `--help` is generated from the doc comments here, so a default is
//! written in exactly one place (the `default_value` beside its flag).
//!
//! Every numeric flag is bounded at parse time: a zero, negative, NaN, infinite
//! or absurdly large value is a usage error naming the flag, never a panic later
//! (a `Duration` overflow, an allocation abort) or a silent nonsense run.

use std::path::PathBuf;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::checkpoint::Weights;
use crate::config::CONFIG_NAMES;
use crate::contract::{Objective, MAX_DIFFUSION_STEPS};
use crate::sample::{Spacing, Variance};
use crate::train::LrDecay;

/// The most images in one training or sampling batch.
pub const MAX_BATCH: u64 = 4096;
/// The most micro-batches one training step accumulates.
pub const MAX_ACCUMULATE: u64 = 4096;
/// The most samples one command draws.
pub const MAX_SAMPLES: u64 = 100_000;
/// The longest time budget, in minutes (a year).
pub const MAX_MINUTES: f64 = 525_600.0;

/// `ddpm`: denoising diffusion (Ho, Jain and Abbeel 2020) on the CPU. Without a
/// command: train mnist-tiny on the embedded MNIST subset for about ten minutes,
/// then sample a grid of digits.
#[derive(Debug, Parser)]
#[command(name = "ddpm", version)]
pub struct Cli {
    /// What to do (none: the ten-minute default run).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Worker threads (default: all cores).
    #[arg(long, global = true, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub threads: Option<usize>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a U-Net (and its EMA) on MNIST-style IDX files, an image folder, or the embedded subset.
    Train(TrainArgs),
    /// Draw samples from a checkpoint into a grid.
    Sample(SampleArgs),
    /// Score samples (or a folder of images) with the MNIST classifier; or, with --nll, the likelihood bound.
    Eval(EvalArgs),
    /// The paper's figures from a checkpoint, or the training loss curve.
    Figure(FigureArgs),
    /// A 2-D Swiss roll, diffused to a Gaussian and learned back (about 11 s).
    Toy(ToyArgs),
    /// Print a shell completion script (e.g. `ddpm completions bash > /etc/bash_completion.d/ddpm`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// A float parser accepting values in `lo..=hi` (`lo` itself only if `lo_ok`).
fn float_in(
    lo: f64,
    lo_ok: bool,
    hi: f64,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let v: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
        let low = if lo_ok { v >= lo } else { v > lo };
        if v.is_finite() && low && v <= hi {
            Ok(v)
        } else {
            let open = if lo_ok { "[" } else { "(" };
            Err(format!("{s} is not in {open}{lo}, {hi}]"))
        }
    }
}

/// A count in `1..=max`.
fn count(max: u64) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::<usize>::new().range(1..=max)
}

/// The beta schedules `--schedule` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    /// Linear from 1e-4 to 0.02 (the paper's).
    Linear,
    /// Nichol and Dhariwal's cosine schedule, s = 0.008.
    Cosine,
}

/// The flags of `ddpm train`.
#[derive(Debug, Clone, Args)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    /// The U-Net config.
    #[arg(long, default_value = "mnist-small", value_parser = CONFIG_NAMES)]
    pub config: String,
    /// MNIST-style IDX files (raw or .gz) [default: the embedded subset].
    #[arg(long, value_name = "DIR", conflicts_with = "images")]
    pub data: Option<PathBuf>,
    /// A folder of PNG/JPEG images instead (resized to the config; class sub-folders give labels).
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Images per step (per micro-batch with --accumulate).
    #[arg(long, default_value_t = 64, value_parser = count(MAX_BATCH))]
    pub batch: usize,
    /// Micro-batches of --batch images per optimiser step, their gradients averaged.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = count(MAX_ACCUMULATE))]
    pub accumulate: usize,
    /// Stop after N steps in total (counting resumed ones).
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<u64>::new().range(1..=crate::checkpoint::MAX_COUNTER))]
    pub steps: Option<u64>,
    /// Stop after M minutes [default: 10 when --steps is not given].
    #[arg(long, value_name = "M", value_parser = float_in(0.0, false, MAX_MINUTES))]
    pub minutes: Option<f64>,
    /// Adam learning rate.
    #[arg(long, default_value_t = 2e-4, value_parser = float_in(0.0, false, 1.0))]
    pub lr: f64,
    /// Linear warm-up steps.
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = RangedU64ValueParser::<u64>::new().range(0..=crate::checkpoint::MAX_COUNTER))]
    pub warmup: u64,
    /// Learning-rate decay after the warm-up, to --lr-min at the last step (--steps, or estimated from --minutes).
    #[arg(long, value_enum, default_value_t = LrDecay::None)]
    pub lr_decay: LrDecay,
    /// The rate the decay ends at [default: 0.1 x --lr].
    #[arg(long, value_name = "X", value_parser = float_in(0.0, true, 1.0))]
    pub lr_min: Option<f64>,
    /// Gradient-norm clip.
    #[arg(long, default_value_t = 1.0, value_parser = float_in(0.0, false, 1e6))]
    pub clip: f64,
    /// Min-SNR-gamma loss weighting (Hang et al. 2023; 5 is the paper's) [default: off].
    #[arg(long, value_name = "GAMMA", value_parser = float_in(0.0, false, 1e6))]
    pub min_snr: Option<f64>,
    /// EMA decay (with the (1+n)/(10+n) warm-up).
    #[arg(long, default_value_t = 0.999, value_parser = float_in(0.0, true, 0.999_999))]
    pub ema: f64,
    /// The beta schedule.
    #[arg(long, value_enum, default_value_t = ScheduleArg::Linear)]
    pub schedule: ScheduleArg,
    /// Diffusion steps T.
    #[arg(long, value_name = "T", default_value_t = 1000, value_parser = count(MAX_DIFFUSION_STEPS as u64))]
    pub diffusion_steps: usize,
    /// What the network predicts: the noise, the clean image, or v = alpha eps - sigma x_0.
    #[arg(long, value_enum, default_value_t = Objective::Eps)]
    pub objective: Objective,
    /// Seed of everything random.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = super::DEFAULT_OUT)]
    pub out: PathBuf,
    /// Continue the run in DIR from DIR/checkpoint.safetensors.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Start over in a DIR that already holds a run, replacing its files.
    #[arg(long)]
    pub overwrite: bool,
    /// Class-conditional (labels dropped with p = 0.1, for classifier-free guidance).
    #[arg(long)]
    pub conditional: bool,
    /// Learn the reverse variances too (L_hybrid = L_simple + 0.001 L_vlb).
    #[arg(long)]
    pub learn_sigma: bool,
    /// Save a checkpoint every N steps (and at the end).
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    pub checkpoint_every: u64,
    /// A progress line every N steps (when standard error is not a terminal).
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    pub log_every: u64,
}

/// The reverse processes `--sampler` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SamplerArg {
    /// The paper's ancestral sampler (on a respaced schedule below T steps).
    Ddpm,
    /// DDIM (Song et al. 2021).
    Ddim,
    /// DPM-Solver++(2M), multistep, one evaluation a step (Lu et al. 2022).
    #[value(name = "dpm++2m")]
    Dpm2m,
    /// DPM-Solver++(2S), singlestep, two evaluations a step.
    #[value(name = "dpm++2s")]
    Dpm2s,
    /// DPM-Solver++(2M) SDE: stochastic, one evaluation a step.
    #[value(name = "dpm++2m-sde")]
    Dpm2mSde,
    /// Heun's method as in EDM (Karras et al. 2022), 2 steps - 1 evaluations.
    Heun,
}

/// The flags of every command that runs a model (`sample`, `eval`, `figure`).
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// Weights: a training checkpoint or a plain weight file [default: runs/default/checkpoint.safetensors].
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// The config, for weight files without metadata.
    #[arg(long, value_parser = CONFIG_NAMES)]
    pub config: Option<String>,
    /// Which weights of a training checkpoint.
    #[arg(long, value_enum, default_value_t = Weights::Ema)]
    pub weights: Weights,
    /// The sampler.
    #[arg(long, value_enum, default_value_t = SamplerArg::Ddpm)]
    pub sampler: SamplerArg,
    /// Denoising steps, at most T [default: 250 for ddpm, 50 for ddim, 20 for dpm++*, 10 for heun].
    #[arg(long, value_name = "N", value_parser = count(MAX_DIFFUSION_STEPS as u64))]
    pub steps: Option<usize>,
    /// How the steps are spread over 0..T [default: uniform for ddpm and ddim, karras for the others].
    #[arg(long, value_enum)]
    pub spacing: Option<Spacing>,
    /// DDIM noise, 0 = deterministic.
    #[arg(long, default_value_t = 0.0, value_parser = float_in(0.0, true, 1.0))]
    pub eta: f64,
    /// Ancestral variance [default: learned for --learn-sigma models, else beta].
    #[arg(long, value_enum)]
    pub variance: Option<Variance>,
    /// Conditional models: every sample of class K [default: cycle through the classes].
    #[arg(long, value_name = "K")]
    pub class: Option<usize>,
    /// Leave each step's prediction of x_0 unclipped (the samplers clip it to [-1, 1] by default, as the paper's).
    #[arg(long)]
    pub no_clip: bool,
    /// Classifier-free guidance scale w (conditional models).
    #[arg(long, value_name = "W", value_parser = float_in(0.0, true, 1000.0))]
    pub guidance: Option<f64>,
    /// Samples per batch.
    #[arg(long, default_value_t = 64, value_parser = count(MAX_BATCH))]
    pub batch: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory [default: the checkpoint's].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The flags of `ddpm sample`.
#[derive(Debug, Clone, Args)]
#[command(allow_negative_numbers = true)]
pub struct SampleArgs {
    /// Number of samples.
    #[arg(long, default_value_t = 64, value_parser = count(MAX_SAMPLES))]
    pub n: usize,
    /// Grid file name in the output directory.
    #[arg(long, value_name = "FILE", default_value = "samples.png")]
    pub grid: PathBuf,
    /// Also write each sample as DIR/samples/NNNN.png.
    #[arg(long)]
    pub individual: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub sampling: SamplingArgs,
}

/// The flags of `ddpm eval`.
#[derive(Debug, Clone, Args)]
#[command(allow_negative_numbers = true)]
pub struct EvalArgs {
    /// Samples to generate.
    #[arg(long, default_value_t = 1000, value_parser = count(MAX_SAMPLES))]
    pub n: usize,
    /// Grid file name in the output directory.
    #[arg(long, value_name = "FILE", default_value = "eval-samples.png")]
    pub grid: PathBuf,
    /// Also write each sample as DIR/samples/NNNN.png.
    #[arg(long)]
    pub individual: bool,
    /// Evaluate a folder of 28x28 PNGs instead of generating.
    #[arg(long, value_name = "DIR", conflicts_with = "nll")]
    pub images: Option<PathBuf>,
    /// MNIST IDX files: the test set is the FID reference (without it, no FID).
    #[arg(long, value_name = "DIR")]
    pub mnist: Option<PathBuf>,
    /// Also report the FID of 10,000 MNIST training images (needs --mnist).
    #[arg(long, requires = "mnist")]
    pub calibrate: bool,
    /// LeNet weights [default: the shipped classifier].
    #[arg(long, value_name = "FILE")]
    pub classifier: Option<PathBuf>,
    /// Report the variational bound in bits/dim on MNIST test images instead (needs --mnist).
    #[arg(long, requires = "mnist")]
    pub nll: bool,
    /// Test images for --nll (each batch runs T model passes).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = count(10_000))]
    pub nll_images: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub sampling: SamplingArgs,
}

/// The figures `ddpm figure` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FigureKind {
    /// Predicted x_0 along the reverse chain (one row per chain).
    X0Chain,
    /// Samples sharing an x_t, for several t.
    SharedXt,
    /// Interpolation between test images in latent space.
    Interpolate,
    /// The training loss curve of a run's loss.csv.
    Loss,
}

impl FigureKind {
    /// The name on the command line (and of the default output file).
    pub fn name(self) -> &'static str {
        match self {
            FigureKind::X0Chain => "x0-chain",
            FigureKind::SharedXt => "shared-xt",
            FigureKind::Interpolate => "interpolate",
            FigureKind::Loss => "loss",
        }
    }
}

/// The flags of `ddpm figure`.
#[derive(Debug, Clone, Args)]
#[command(allow_negative_numbers = true)]
pub struct FigureArgs {
    /// Which figure.
    #[arg(value_enum)]
    pub kind: FigureKind,
    /// Rows: chains (x0-chain) or image pairs (interpolate) [default: 8 and 4].
    #[arg(long, value_parser = count(1000))]
    pub n: Option<usize>,
    /// x0-chain: predictions per row; interpolate: lambdas, at least 2 [default: 10 and 11].
    #[arg(long, value_name = "N", value_parser = count(1000))]
    pub columns: Option<usize>,
    /// shared-xt: the shared steps, each below T.
    #[arg(
        long,
        value_name = "T,T,..",
        value_delimiter = ',',
        default_value = "999,750,500,250,100"
    )]
    pub stops: Vec<usize>,
    /// shared-xt: samples per shared x_t.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = count(1000))]
    pub copies: usize,
    /// interpolate: the step of the latents (below T).
    #[arg(long, value_name = "T", default_value_t = 500)]
    pub t: usize,
    /// interpolate: MNIST test images from DIR [default: the embedded subset].
    #[arg(long, value_name = "DIR")]
    pub mnist: Option<PathBuf>,
    /// loss: the loss CSV [default: loss.csv beside the checkpoint].
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// File name in the output directory [default: KIND.png].
    #[arg(long, value_name = "FILE")]
    pub grid: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub sampling: SamplingArgs,
}

/// The flags of `ddpm toy`.
#[derive(Debug, Clone, Args)]
#[command(allow_negative_numbers = true)]
pub struct ToyArgs {
    /// Training steps.
    #[arg(long, default_value_t = 4000, value_parser = count(10_000_000))]
    pub steps: usize,
    /// Points per scatter panel.
    #[arg(long, value_name = "N", default_value_t = 1500, value_parser = count(1_000_000))]
    pub samples: usize,
    /// Seed of everything random.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The figure.
    #[arg(long, value_name = "FILE", default_value = "runs/toy/swiss-roll.png")]
    pub out: PathBuf,
}
