//! The `ddpm` program: `train`, `sample`, `eval`, and the no-argument default run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nn::lenet::{LeNet, FEATURES};
use nn::safetensors;
use nn::Module;
use rand::SeedableRng;
use tensor::Tensor;

use crate::cli::{help, Flags, Spec};
use crate::config::UNetConfig;
use crate::data::{self, Dataset, Split};
use crate::eval;
use crate::likelihood;
use crate::sample::{sample, Request, Sampler, Variance};
use crate::schedule::{BetaSchedule, NoiseSchedule};
use crate::toy;
use crate::train::{checkpoint_path, clock, train, TrainOptions};
use crate::unet::UNet;

mod figure;

/// Where the default run writes.
pub const DEFAULT_OUT: &str = "runs/default";

const COMMON: &[Spec] = &[
    Spec {
        name: "threads",
        value: Some("N"),
        help: "worker threads (default: all cores)",
    },
    Spec {
        name: "help",
        value: None,
        help: "this help",
    },
];

const TRAIN: &[Spec] = &[
    Spec {
        name: "config",
        value: Some("NAME"),
        help: "mnist-tiny | mnist-small | cifar10 (default mnist-small)",
    },
    Spec {
        name: "data",
        value: Some("DIR"),
        help: "MNIST-style IDX files (raw or .gz); default: the embedded subset",
    },
    Spec {
        name: "images",
        value: Some("DIR"),
        help: "a folder of PNG/JPEG images instead (resized to the config)",
    },
    Spec {
        name: "batch",
        value: Some("N"),
        help: "images per step (default 64)",
    },
    Spec {
        name: "steps",
        value: Some("N"),
        help: "stop after N steps in total",
    },
    Spec {
        name: "minutes",
        value: Some("M"),
        help: "stop after M minutes (default 10 when --steps is not given)",
    },
    Spec {
        name: "lr",
        value: Some("X"),
        help: "Adam learning rate (default 2e-4)",
    },
    Spec {
        name: "warmup",
        value: Some("N"),
        help: "linear warm-up steps (default 500)",
    },
    Spec {
        name: "clip",
        value: Some("X"),
        help: "gradient-norm clip (default 1.0)",
    },
    Spec {
        name: "ema",
        value: Some("X"),
        help: "EMA decay (default 0.999, with the (1+n)/(10+n) warm-up)",
    },
    Spec {
        name: "schedule",
        value: Some("S"),
        help: "linear | cosine (default linear)",
    },
    Spec {
        name: "seed",
        value: Some("N"),
        help: "seed of everything random (default 0)",
    },
    Spec {
        name: "out",
        value: Some("DIR"),
        help: "output directory (default runs/default)",
    },
    Spec {
        name: "resume",
        value: None,
        help: "continue from DIR/checkpoint.safetensors",
    },
    Spec {
        name: "conditional",
        value: None,
        help: "class-conditional (labels dropped with p = 0.1, for classifier-free guidance)",
    },
    Spec {
        name: "learn-sigma",
        value: None,
        help: "learn the reverse variances too (L_hybrid = L_simple + 0.001 L_vlb)",
    },
    Spec {
        name: "checkpoint-every",
        value: Some("N"),
        help: "save every N steps (default 200)",
    },
    Spec {
        name: "log-every",
        value: Some("N"),
        help: "progress line every N steps (default 20)",
    },
];

/// Shorthand for a flag with a value.
const fn flag(name: &'static str, value: &'static str, help: &'static str) -> Spec {
    Spec {
        name,
        value: Some(value),
        help,
    }
}

/// The flags of every command that draws samples (`sample` and `eval`).
const SAMPLING: &[Spec] = &[
    flag(
        "checkpoint",
        "FILE",
        "weights (default runs/default/checkpoint.safetensors)",
    ),
    flag("config", "NAME", "config, for weight files without metadata"),
    flag(
        "weights",
        "W",
        "ema | model, in a training checkpoint (default ema)",
    ),
    flag("sampler", "S", "ddpm | ddim (default ddpm: ancestral)"),
    flag(
        "steps",
        "N",
        "denoising steps (default 250 for ddpm, 50 for ddim; T = 1000)",
    ),
    flag("eta", "X", "DDIM noise, 0 = deterministic (default 0)"),
    flag(
        "variance",
        "V",
        "ddpm variance: beta | beta-tilde | learned (default learned for --learn-sigma models, else beta)",
    ),
    flag(
        "class",
        "K",
        "conditional models: every sample of class K (default: cycle 0..9)",
    ),
    flag("guidance", "W", "classifier-free guidance scale w (default 0)"),
    flag("batch", "N", "samples per batch (default 64)"),
    flag("seed", "N", "seed (default 0)"),
    flag("out", "DIR", "output directory (default: the checkpoint's)"),
    Spec {
        name: "individual",
        value: None,
        help: "also write each sample as DIR/samples/NNNN.png",
    },
];

/// The flags of `ddpm toy`.
const TOY: &[Spec] = &[
    flag("steps", "N", "training steps (default 4000)"),
    flag("samples", "N", "points per scatter panel (default 1500)"),
    flag("seed", "N", "seed of everything random (default 0)"),
    flag("out", "FILE", "the figure (default runs/toy/swiss-roll.png)"),
];

const SAMPLE: &[Spec] = &[
    flag("n", "N", "number of samples (default 64)"),
    flag("grid", "FILE", "grid file name in DIR (default samples.png)"),
];

const EVAL: &[Spec] = &[
    flag("n", "N", "samples to generate (default 1000)"),
    flag("grid", "FILE", "grid file name in DIR (default eval-samples.png)"),
    flag(
        "images",
        "DIR",
        "evaluate a folder of 28x28 PNGs instead of generating",
    ),
    flag(
        "mnist",
        "DIR",
        "MNIST IDX files: the test set is the FID reference (without it, no FID)",
    ),
    Spec {
        name: "calibrate",
        value: None,
        help: "also report the FID of 10,000 MNIST training images (needs --mnist)",
    },
    flag(
        "classifier",
        "FILE",
        "LeNet weights (default: the shipped classifier)",
    ),
    Spec {
        name: "nll",
        value: None,
        help: "report the variational bound in bits/dim on MNIST test images instead (needs --mnist)",
    },
    flag(
        "nll-images",
        "N",
        "test images for --nll (default 64; each batch runs T = 1000 model passes)",
    ),
];

/// The flags of a command: its own lists, then the common ones.
fn specs(own: &[&[Spec]]) -> Vec<Spec> {
    own.iter()
        .copied()
        .flatten()
        .chain(COMMON)
        .map(|s| Spec {
            name: s.name,
            value: s.value,
            help: s.help,
        })
        .collect()
}

/// Runs the program on its arguments (without the program name); `Err` holds the
/// message to print.
pub fn run(args: &[String]) -> Result<(), String> {
    let (command, rest) = match args.first().map(String::as_str) {
        None => return default_run(),
        Some(c) => (c, &args[1..]),
    };
    match command {
        "train" => train_command(rest),
        "sample" => sample_command(rest),
        "eval" => eval_command(rest),
        "figure" => figure::figure_command(rest),
        "toy" => toy_command(rest),
        "-h" | "--help" | "help" => {
            println!("{}", program_help());
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n\n{}", program_help())),
    }
}

fn program_help() -> String {
    "ddpm: denoising diffusion on the CPU\n\n\
     usage: ddpm                      train mnist-tiny on the embedded MNIST subset for ~10 minutes, then sample\n\
     \x20      ddpm train [flags]       train (ddpm train --help)\n\
     \x20      ddpm sample [flags]      draw samples from a checkpoint (ddpm sample --help)\n\
     \x20      ddpm eval [flags]        score samples with the MNIST classifier (ddpm eval --help)\n\
     \x20      ddpm figure KIND [flags] the paper's figures: x0-chain, shared-xt, interpolate, loss\n\
     \x20      ddpm toy [flags]         a 2-D Swiss roll, diffused and learned back (~11 s; ddpm toy --help)"
        .to_string()
}

/// Parses flags, handles `--help` and `--threads`; `None` when help was shown.
fn parse(args: &[String], own: &[&[Spec]], usage: &str) -> Result<Option<Flags>, String> {
    let all = specs(own);
    let flags = Flags::parse(args, &all).map_err(|e| format!("{e}\n\n{}", help(usage, &all)))?;
    if flags.has("help") {
        println!("{}", help(usage, &all));
        return Ok(None);
    }
    if let Some(n) = flags.text("threads") {
        let n: usize = n
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or(format!("--threads: cannot read {n:?}"))?;
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| e.to_string())?;
    }
    Ok(Some(flags))
}

fn train_options(f: &Flags) -> Result<TrainOptions, String> {
    let config = UNetConfig::named(f.text("config").unwrap_or("mnist-small")).map_err(|e| e.to_string())?;
    let steps: Option<u64> = f
        .text("steps")
        .map(|_| f.checked("steps", 1, "a positive integer", |v| v > 0))
        .transpose()?;
    let default_minutes = if steps.is_some() { None } else { Some(10.0) };
    let minutes: Option<f64> = match f.text("minutes") {
        Some(_) => Some(f.checked("minutes", 10.0, "a positive number", |v: f64| v > 0.0)?),
        None => default_minutes,
    };
    let schedule = match f.text("schedule").unwrap_or("linear") {
        "linear" => BetaSchedule::LINEAR,
        "cosine" => BetaSchedule::COSINE,
        s => return Err(format!("--schedule: {s:?} is not linear or cosine")),
    };
    Ok(TrainOptions {
        config,
        diffusion_steps: 1000,
        schedule,
        batch: f.checked("batch", 64, "a positive integer", |v: usize| v > 0)?,
        max_steps: steps,
        time_budget: minutes.map(|m| Duration::from_secs_f64(m * 60.0)),
        lr: f.checked("lr", 2e-4, "a positive number", |v: f32| v > 0.0 && v.is_finite())?,
        warmup: f.get("warmup", 500)?,
        clip: f.checked("clip", 1.0, "a positive number", |v: f32| v > 0.0)?,
        ema_decay: f.checked("ema", 0.999, "in [0, 1)", |v: f32| (0.0..1.0).contains(&v))?,
        seed: f.get("seed", 0)?,
        out_dir: PathBuf::from(f.text("out").unwrap_or(DEFAULT_OUT)),
        resume: f.has("resume"),
        checkpoint_every: f.checked("checkpoint-every", 200, "a positive integer", |v: u64| v > 0)?,
        log_every: f.checked("log-every", 20, "a positive integer", |v: u64| v > 0)?,
    })
}

/// The training data the flags name, checked against the config's image shape.
fn load_data(f: &Flags, config: &UNetConfig) -> Result<Dataset, String> {
    let data = match (f.text("data"), f.text("images")) {
        (Some(_), Some(_)) => return Err("give --data or --images, not both".into()),
        (Some(dir), None) => data::load_mnist(dir, Split::Train),
        (None, Some(dir)) => data::load_folder(dir, config.in_ch, config.image_size),
        (None, None) => data::embedded_mnist(),
    }
    .map_err(|e| e.to_string())?;
    let want = (config.in_ch, config.image_size, config.image_size);
    if (data.channels(), data.height(), data.width()) != want {
        return Err(format!(
            "the data is {}x{}x{} but config {} needs {}x{}x{}",
            data.channels(),
            data.height(),
            data.width(),
            config.name,
            want.0,
            want.1,
            want.2
        ));
    }
    Ok(data)
}

fn train_command(args: &[String]) -> Result<(), String> {
    let Some(f) = parse(args, &[TRAIN], "usage: ddpm train [flags]")? else {
        return Ok(());
    };
    let mut opts = train_options(&f)?;
    let data = load_data(&f, &opts.config)?;
    if f.has("conditional") {
        if data.labels().is_none() {
            return Err("--conditional needs labelled data (IDX labels or class folders)".into());
        }
        opts.config.num_classes = Some(data.num_classes());
    }
    if f.has("learn-sigma") {
        opts.config = opts.config.with_learned_sigma();
    }
    run_training(&data, &opts).map(|_| ())
}

/// Trains and writes the EMA weights beside the checkpoint; returns their path.
fn run_training(data: &Dataset, opts: &TrainOptions) -> Result<PathBuf, String> {
    let (state, summary) = train(data, opts, |line| println!("{line}")).map_err(|e| e.to_string())?;
    let ema_path = opts.out_dir.join("ema.safetensors");
    let mut meta = opts.config.metadata();
    meta.insert("step".to_string(), state.step.to_string());
    let tensors = state.ema_tensors();
    safetensors::save(&ema_path, tensors.iter().map(|(n, t)| (n, t)), &meta).map_err(|e| e.to_string())?;
    println!(
        "trained {} steps ({} this run) at {:.1} images/s; smoothed loss {:.4}\ncheckpoint: {}\nEMA weights: {}\nloss log: {}",
        summary.steps,
        summary.steps_this_run,
        summary.images_per_sec,
        summary.smoothed_loss,
        summary.checkpoint.display(),
        ema_path.display(),
        opts.out_dir.join("loss.csv").display()
    );
    Ok(ema_path)
}

/// A U-Net with weights from `path`: a training checkpoint (`model.*` / `ema.*`
/// names, `which` picks) or a plain weight file with the spec's names.
pub fn load_model(path: &Path, config: Option<&str>, which: &str) -> Result<UNet, String> {
    let file = safetensors::load(path).map_err(|e| e.to_string())?;
    let config =
        UNetConfig::from_metadata(file.metadata(), config).map_err(|e| format!("{}: {e}", path.display()))?;
    let model = UNet::new(&config, &mut rand::rngs::StdRng::seed_from_u64(0)).map_err(|e| e.to_string())?;
    let params = model.parameters();
    let prefix = if file.tensors().keys().any(|k| k.starts_with("model.")) {
        match which {
            "ema" | "model" => format!("{which}."),
            w => return Err(format!("--weights: {w:?} is not ema or model")),
        }
    } else {
        String::new()
    };
    for (n, p) in &params {
        let t = file
            .tensor(&format!("{prefix}{n}"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        p.set_value(t.clone())
            .map_err(|e| format!("{}: {n}: {e}", path.display()))?;
    }
    model.set_training(false);
    Ok(model)
}

/// `--variance`, defaulting to the model's own when it `learned` them.
fn variance_from(f: &Flags, learned: bool) -> Result<Variance, String> {
    let default = if learned { "learned" } else { "beta" };
    match f.text("variance").unwrap_or(default) {
        "beta" => Ok(Variance::Beta),
        "beta-tilde" => Ok(Variance::BetaTilde),
        "learned" if learned => Ok(Variance::Learned),
        "learned" => Err("--variance learned needs a model trained with --learn-sigma".into()),
        v => Err(format!("--variance: {v:?} is not beta, beta-tilde or learned")),
    }
}

/// The sampler the flags ask for, for a model with (`learned`) or without learned
/// variances.
fn sampler_from(f: &Flags, learned: bool) -> Result<Sampler, String> {
    match f.text("sampler").unwrap_or("ddpm") {
        "ddim" => Ok(Sampler::Ddim {
            steps: f.checked("steps", 50, "a positive integer", |v: usize| v > 0)?,
            eta: f.checked("eta", 0.0, "in [0, 1]", |v: f64| (0.0..=1.0).contains(&v))?,
        }),
        "ddpm" => Ok(Sampler::Ancestral {
            steps: f.checked("steps", 250, "a positive integer", |v: usize| v > 0)?,
            variance: variance_from(f, learned)?,
        }),
        s => Err(format!("--sampler: {s:?} is not ddpm or ddim")),
    }
}

/// The class of each of `n` samples: `--class K` for all, else 0, 1, ..., 9, 0, ...
/// for a conditional model; `None` for an unconditional one.
fn sample_labels(model: &UNet, f: &Flags, n: usize) -> Result<Option<Vec<usize>>, String> {
    let Some(classes) = model.config.num_classes else {
        if f.text("class").is_some() || f.text("guidance").is_some() {
            return Err("--class and --guidance need a class-conditional model (train --conditional)".into());
        }
        return Ok(None);
    };
    Ok(Some(match f.text("class") {
        Some(_) => vec![
            f.checked("class", 0, &format!("a class below {classes}"), |k: usize| k
                < classes)?;
            n
        ],
        None => (0..n).map(|i| i % classes).collect(),
    }))
}

/// Samples and writes the grid (and optionally each image); returns the samples
/// and the grid's path.
fn write_samples(
    model: &UNet,
    sampler: Sampler,
    f: &Flags,
    out: &Path,
    n_default: usize,
) -> Result<(Tensor, PathBuf), String> {
    let n = f.checked("n", n_default, "a positive integer", |v: usize| v > 0)?;
    let batch = f.checked("batch", 64, "a positive integer", |v: usize| v > 0)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(f.get("seed", 0)?);
    let schedule = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let start = Instant::now();
    let mut steps_done = 0usize;
    let labels = sample_labels(model, f, n)?;
    let guidance = f.checked("guidance", 0.0, "a finite number >= 0", |w: f64| {
        w.is_finite() && w >= 0.0
    })?;
    let request = Request {
        sampler,
        n,
        batch,
        labels: labels.as_deref(),
        guidance,
    };
    let images = sample(model, &schedule, request, &mut rng, |i, total| {
        steps_done += 1;
        if i == total || i % 10 == 0 {
            let secs = start.elapsed().as_secs_f64();
            println!("  step {i}/{total}  {:.3} s per step", secs / steps_done as f64);
        }
    })
    .map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sampled {n} images in {} ({:.3} s per denoising step)",
        clock(secs),
        secs / steps_done.max(1) as f64
    );
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let grid = out.join(f.text("grid").unwrap_or("samples.png"));
    let cols = (n as f64).sqrt().ceil() as usize;
    data::save_grid(&grid, &images, cols).map_err(|e| e.to_string())?;
    if f.has("individual") {
        let dir = out.join("samples");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for i in 0..n {
            let img = images
                .narrow(0, i, 1)
                .and_then(|t| t.squeeze(0))
                .map_err(|e| e.to_string())?;
            data::save_png(dir.join(format!("{i:04}.png")), &img).map_err(|e| e.to_string())?;
        }
        println!("individual images: {}", dir.display());
    }
    Ok((images, grid))
}

/// `ddpm toy`: trains the 2-D Swiss-roll model, draws the figure of forward,
/// reverse and drift (Sohl-Dickstein et al. 2015, figure 1) and checks the samples.
fn toy_command(args: &[String]) -> Result<(), String> {
    let Some(f) = parse(args, &[TOY], "usage: ddpm toy [flags]")? else {
        return Ok(());
    };
    let opts = toy::ToyOptions {
        steps: f.checked("steps", 4000, "a positive integer", |v: usize| v > 0)?,
        seed: f.get("seed", 0)?,
        ..toy::ToyOptions::default()
    };
    let samples = f.checked("samples", 1500, "a positive integer", |v: usize| v > 0)?;
    let out = PathBuf::from(f.text("out").unwrap_or("runs/toy/swiss-roll.png"));
    println!(
        "training a {}x{} MLP on the Swiss roll: {} steps of {} points, T = {}",
        opts.depth, opts.hidden, opts.steps, opts.batch, opts.diffusion_steps
    );
    let r = toy::run(&opts, samples, &out, |line| println!("{line}"))?;
    println!(
        "trained {} steps in {:.1} s; loss {:.4} -> {:.4} (first 20 -> last 200 steps)",
        r.steps, r.train_seconds, r.initial_loss, r.final_loss
    );
    println!(
        "mean distance to the nearest data point: samples {:.4}, fresh data {:.4}, N(0, I) prior {:.4}",
        r.nn_samples, r.nn_data, r.nn_prior
    );
    println!("figure: {} ({:.1} s in all)", r.png.display(), r.total_seconds);
    Ok(())
}

/// `--checkpoint`, or the default run's checkpoint.
fn checkpoint_flag(f: &Flags) -> PathBuf {
    f.text("checkpoint")
        .map(PathBuf::from)
        .unwrap_or_else(|| checkpoint_path(Path::new(DEFAULT_OUT)))
}

/// `--out`, or the directory of the checkpoint `ckpt`.
fn out_dir_flag(f: &Flags, ckpt: &Path) -> PathBuf {
    f.text("out")
        .map(PathBuf::from)
        .unwrap_or_else(|| ckpt.parent().unwrap_or(Path::new(".")).to_path_buf())
}

/// The model in `ckpt` (`--config`, `--weights` as the flags say).
fn load_flagged_model(f: &Flags, ckpt: &Path) -> Result<UNet, String> {
    load_model(ckpt, f.text("config"), f.text("weights").unwrap_or("ema"))
}

/// The model in `ckpt` and the sampler the flags ask for it; bad sampler flags are
/// reported before the checkpoint is read.
fn model_and_sampler(f: &Flags, ckpt: &Path) -> Result<(UNet, Sampler), String> {
    sampler_from(f, true)?;
    let model = load_flagged_model(f, ckpt)?;
    let sampler = sampler_from(f, model.config.learn_sigma)?;
    Ok((model, sampler))
}

fn sample_command(args: &[String]) -> Result<(), String> {
    let Some(f) = parse(args, &[SAMPLE, SAMPLING], "usage: ddpm sample [flags]")? else {
        return Ok(());
    };
    let ckpt = checkpoint_flag(&f);
    let (model, sampler) = model_and_sampler(&f, &ckpt)?;
    let out = out_dir_flag(&f, &ckpt);
    let (_, grid) = write_samples(&model, sampler, &f, &out, 64)?;
    println!("sample grid: {}", grid.display());
    Ok(())
}

/// Scores samples (generated, or read from a folder) with the classifier: the
/// fraction classified with confidence > 0.9, the predicted-class histogram, and
/// with `--mnist` the Frechet distance of classifier features to the test set.
fn eval_command(args: &[String]) -> Result<(), String> {
    let has_grid = args.iter().any(|a| a == "--grid" || a.starts_with("--grid="));
    let args = if has_grid { args.to_vec() } else { with_grid(args) };
    let Some(f) = parse(&args, &[EVAL, SAMPLING], "usage: ddpm eval [flags]")? else {
        return Ok(());
    };
    if f.has("calibrate") && f.text("mnist").is_none() {
        return Err("--calibrate needs --mnist DIR".into());
    }
    if f.has("nll") {
        return nll_command(&f);
    }
    let classifier = match f.text("classifier") {
        Some(p) => eval::load_classifier(Path::new(p)),
        None => eval::embedded_classifier(),
    }
    .map_err(|e| e.to_string())?;
    let (samples, wanted) = match f.text("images") {
        Some(dir) => {
            let d = data::load_folder(dir, 1, 28).map_err(|e| e.to_string())?;
            let all: Vec<usize> = (0..d.len()).collect();
            (d.batch(&all).map_err(|e| e.to_string())?.0, None)
        }
        None => {
            let ckpt = checkpoint_flag(&f);
            let (model, sampler) = model_and_sampler(&f, &ckpt)?;
            let out = out_dir_flag(&f, &ckpt);
            let (images, _) = write_samples(&model, sampler, &f, &out, 1000)?;
            (images, sample_labels(&model, &f, f.get("n", 1000)?)?)
        }
    };
    let scored = eval::classify(&classifier, &samples, 256).map_err(|e| e.to_string())?;
    report_scores(&scored);
    if let Some(wanted) = wanted {
        let predicted = eval::predicted_classes(&scored.probs, eval::CLASSES);
        let agree = predicted.iter().zip(&wanted).filter(|(p, w)| p == w).count();
        println!(
            "classified as the requested class: {:.1}%",
            100.0 * agree as f64 / scored.n as f64
        );
    }
    if let Some(dir) = f.text("mnist") {
        let reference = mnist_features(&classifier, dir, Split::Test, 10_000)?;
        let fid = eval::frechet_distance(&gaussian(&scored), &reference);
        println!(
            "classifier FID vs the MNIST test set ({} samples): {fid:.2}",
            scored.n
        );
        if f.has("calibrate") {
            let train = eval::fit_gaussian(
                &classify_split(&classifier, dir, Split::Train, 10_000)?.features,
                10_000,
                FEATURES,
            );
            println!(
                "calibration: 10,000 MNIST training images vs the test set: {:.2}",
                eval::frechet_distance(&train, &reference)
            );
        }
    }
    Ok(())
}

/// `ddpm eval --nll`: the variational bound (L_T + sum of L_{t-1} + L_0) in bits
/// per dimension on the first `--nll-images` MNIST test images.
fn nll_command(f: &Flags) -> Result<(), String> {
    let dir = f
        .text("mnist")
        .ok_or("--nll needs --mnist DIR (the bound is measured on the test set)")?;
    if f.text("images").is_some() {
        return Err("--nll measures a model: give --checkpoint, not --images".into());
    }
    let count = f.checked("nll-images", 64, "a positive integer", |v: usize| v > 0)?;
    let batch = f.checked("batch", 64, "a positive integer", |v: usize| v > 0)?;
    let model = load_flagged_model(f, &checkpoint_flag(f))?;
    let variance = variance_from(f, model.config.learn_sigma)?;
    let test = data::load_mnist(dir, Split::Test).map_err(|e| e.to_string())?;
    let schedule = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(f.get("seed", 0)?);
    let indices: Vec<usize> = (0..count.min(test.len())).collect();
    let (mut prior, mut terms, mut seen) = (0.0, vec![0.0; schedule.steps()], 0usize);
    let start = Instant::now();
    for chunk in indices.chunks(batch) {
        let x0 = test.batch(chunk).map_err(|e| e.to_string())?.0;
        let (p, t) =
            likelihood::vlb_terms(&model, &schedule, variance, &x0, &mut rng).map_err(|e| e.to_string())?;
        let w = chunk.len() as f64;
        prior += p * w;
        terms.iter_mut().zip(&t).for_each(|(acc, v)| *acc += v * w);
        seen += chunk.len();
        println!(
            "  {seen}/{} images, {}",
            indices.len(),
            clock(start.elapsed().as_secs_f64())
        );
    }
    let n = seen as f64;
    let (prior, terms): (f64, Vec<f64>) = (prior / n, terms.iter().map(|t| t / n).collect());
    println!(
        "NLL bound on {seen} MNIST test images: {:.3} bits/dim (L_T {:.2e}, L_0 {:.3}, sum of L_1..L_{} {:.3})",
        likelihood::total_bpd(prior, &terms),
        prior,
        terms[0],
        terms.len() - 1,
        terms[1..].iter().sum::<f64>()
    );
    Ok(())
}

/// `args` with `--grid eval-samples.png` added, so that eval does not overwrite
/// the `samples.png` of `ddpm sample`.
fn with_grid(args: &[String]) -> Vec<String> {
    args.iter()
        .cloned()
        .chain(["--grid".to_string(), "eval-samples.png".to_string()])
        .collect()
}

fn report_scores(scored: &eval::Classified) {
    let confident = eval::confident_fraction(&scored.probs, eval::CLASSES, 0.9);
    let mut histogram = [0usize; eval::CLASSES];
    for c in eval::predicted_classes(&scored.probs, eval::CLASSES) {
        histogram[c] += 1;
    }
    println!(
        "classified with confidence > 0.9: {:.1}% of {} samples",
        100.0 * confident,
        scored.n
    );
    println!("predicted digits 0..9: {histogram:?}");
}

fn gaussian(c: &eval::Classified) -> eval::Gaussian {
    eval::fit_gaussian(&c.features, c.n, FEATURES)
}

/// The classifier's outputs on the first `count` images of a split.
fn classify_split(
    classifier: &LeNet,
    dir: &str,
    split: Split,
    count: usize,
) -> Result<eval::Classified, String> {
    let d = data::load_mnist(dir, split).map_err(|e| e.to_string())?;
    let idx: Vec<usize> = (0..d.len().min(count)).collect();
    let images = d.batch(&idx).map_err(|e| e.to_string())?.0;
    eval::classify(classifier, &images, 256).map_err(|e| e.to_string())
}

fn mnist_features(
    classifier: &LeNet,
    dir: &str,
    split: Split,
    count: usize,
) -> Result<eval::Gaussian, String> {
    Ok(gaussian(&classify_split(classifier, dir, split, count)?))
}

/// The flags of the no-argument run: the small, fast config with a higher
/// learning rate, so that ten minutes on a laptop give recognisable digits
/// (`ddpm train` keeps the spec's defaults).
const DEFAULT_RUN: [&str; 6] = ["--config", "mnist-tiny", "--lr", "1e-3", "--warmup", "200"];

/// `ddpm` with no arguments: train mnist-tiny on the embedded subset for about
/// ten minutes, then sample 64 digits with DDIM (50 steps) into a grid.
fn default_run() -> Result<(), String> {
    let args: Vec<String> = DEFAULT_RUN.iter().map(|s| s.to_string()).collect();
    let f = Flags::parse(&args, TRAIN)?;
    let opts = train_options(&f)?;
    let data = load_data(&f, &opts.config)?;
    let weights = run_training(&data, &opts)?;
    let model = load_model(&weights, None, "ema")?;
    let sample_flags = Flags::parse(&[], &specs(&[SAMPLE, SAMPLING]))?;
    let (images, grid) = write_samples(
        &model,
        sampler_from(&sample_flags, model.config.learn_sigma)?,
        &sample_flags,
        &opts.out_dir,
        64,
    )?;
    println!("sample grid: {}", grid.display());
    let classifier = eval::embedded_classifier().map_err(|e| e.to_string())?;
    report_scores(&eval::classify(&classifier, &images, 64).map_err(|e| e.to_string())?);
    Ok(())
}
