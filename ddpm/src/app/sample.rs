//! `ddpm sample`, and what every command that runs a model shares: the model and
//! its contract from the checkpoint, the sampler and the labels the flags ask
//! for, checked against that model, and drawing samples into a grid.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use tensor::Tensor;

use super::args::{SampleArgs, SamplerArg, SamplingArgs};
use super::progress::SampleDisplay;
use super::{checkpoint_or_default, create_dir, out_or_beside};
use crate::checkpoint::load_model;
use crate::contract::Contract;
use crate::data;
use crate::error::{Context, Error, Result};
use crate::sample::spacing::kept_steps;
use crate::sample::{
    sample, DpmMethod, Request, Sampler, Spacing, Variance, DEFAULT_ANCESTRAL_STEPS, DEFAULT_DDIM_STEPS,
    DEFAULT_DPM_STEPS, DEFAULT_HEUN_STEPS,
};
use crate::train::clock;
use crate::unet::UNet;

/// A model ready to sample: the network, its contract, the sampler the flags
/// ask for, and where the outputs go.
pub struct Loaded {
    /// The network, in evaluation mode.
    pub model: UNet,
    /// What the weight file records (schedule, `T`, ...).
    pub contract: Contract,
    /// The reverse process.
    pub sampler: Sampler,
    /// How its steps are spread.
    pub spacing: Spacing,
    /// The output directory.
    pub out: PathBuf,
}

/// Loads the model the flags name and resolves the sampler for it.
pub fn load(a: &SamplingArgs) -> Result<Loaded> {
    let ckpt = checkpoint_or_default(&a.checkpoint);
    let (model, contract) = load_model(&ckpt, a.config.as_deref(), a.weights)?;
    let sampler = sampler(a, &contract)?;
    check_condition(a, &model)?;
    Ok(Loaded {
        model,
        contract,
        sampler,
        spacing: a.spacing.unwrap_or(sampler.default_spacing()),
        out: out_or_beside(&a.out, &ckpt),
    })
}

/// The sampler the flags ask for, checked against the model's contract.
fn sampler(a: &SamplingArgs, contract: &Contract) -> Result<Sampler> {
    let learned = contract.config.learn_sigma;
    let t = contract.diffusion_steps;
    let steps = a.steps.unwrap_or(match a.sampler {
        SamplerArg::Ddpm => DEFAULT_ANCESTRAL_STEPS,
        SamplerArg::Ddim => DEFAULT_DDIM_STEPS,
        SamplerArg::Dpm2m | SamplerArg::Dpm2s | SamplerArg::Dpm2mSde => DEFAULT_DPM_STEPS,
        SamplerArg::Heun => DEFAULT_HEUN_STEPS,
    });
    if steps > t {
        return Err(Error::usage(format!(
            "--steps {steps}: the model has only T = {t} steps"
        )));
    }
    Ok(match a.sampler {
        SamplerArg::Ddim => Sampler::Ddim { steps, eta: a.eta },
        SamplerArg::Ddpm => Sampler::Ancestral {
            steps,
            variance: variance(a.variance, learned)?,
        },
        SamplerArg::Dpm2m => dpm(steps, DpmMethod::Multistep),
        SamplerArg::Dpm2s => dpm(steps, DpmMethod::Singlestep),
        SamplerArg::Dpm2mSde => dpm(steps, DpmMethod::MultistepSde),
        SamplerArg::Heun => Sampler::Heun { steps },
    })
}

fn dpm(steps: usize, method: DpmMethod) -> Sampler {
    Sampler::DpmSolver { steps, method }
}

/// `--variance`, defaulting to the model's own when it learned them.
pub fn variance(flag: Option<Variance>, learned: bool) -> Result<Variance> {
    match flag {
        None if learned => Ok(Variance::Learned),
        None => Ok(Variance::Beta),
        Some(Variance::Learned) if !learned => Err(Error::usage(
            "--variance learned needs a model trained with --learn-sigma",
        )),
        Some(v) => Ok(v),
    }
}

/// Refuses `--class` / `--guidance` that the model cannot honour.
fn check_condition(a: &SamplingArgs, model: &UNet) -> Result<()> {
    match model.config.num_classes {
        None if a.class.is_some() || a.guidance.is_some() => Err(Error::usage(
            "--class and --guidance need a class-conditional model (train --conditional)",
        )),
        Some(classes) if a.class.is_some_and(|k| k >= classes) => Err(Error::usage(format!(
            "--class {}: the model has classes 0..{}",
            a.class.unwrap_or(0),
            classes - 1
        ))),
        _ => Ok(()),
    }
}

/// The class of each of `n` samples: `--class K` for all, else 0, 1, ..., 0, ...
/// for a conditional model; `None` for an unconditional one.
pub fn labels(a: &SamplingArgs, model: &UNet, n: usize) -> Option<Vec<usize>> {
    let classes = model.config.num_classes?;
    Some(match a.class {
        Some(k) => vec![k; n],
        None => (0..n).map(|i| i % classes).collect(),
    })
}

/// Draws `n` samples and writes the grid `out/grid` (and, if `individual`, each
/// image); returns the samples and the grid's path.
pub fn write_samples(
    loaded: &Loaded,
    a: &SamplingArgs,
    n: usize,
    grid: &Path,
    individual: bool,
) -> Result<(Tensor, PathBuf)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let schedule = loaded.contract.noise_schedule();
    let labels = labels(a, &loaded.model, n);
    let request = Request {
        sampler: loaded.sampler,
        spacing: Some(loaded.spacing),
        n,
        batch: a.batch,
        labels: labels.as_deref(),
        guidance: a.guidance.unwrap_or(0.0),
        clip: !a.no_clip,
    };
    let batches = n.div_ceil(a.batch);
    let kept = kept_steps(loaded.spacing, &schedule.alpha_bar, loaded.sampler.steps()).len();
    let mut display = SampleDisplay::new(batches * kept);
    let images = sample(
        &loaded.model,
        loaded.contract.objective,
        &schedule,
        request,
        &mut rng,
        |i, total| display.step(i, total),
    );
    display.finish();
    let samples = images.context("sampling")?;
    let images = samples.images;
    println!(
        "sampled {n} images in {} ({:.3} s per denoising step, {} network evaluations per image)",
        clock(display.elapsed()),
        display.seconds_per_step(),
        samples.evaluations
    );
    create_dir(&loaded.out)?;
    let grid = loaded.out.join(grid);
    let cols = (n as f64).sqrt().ceil() as usize;
    data::save_grid(&grid, &images, cols)?;
    if individual {
        let dir = loaded.out.join("samples");
        create_dir(&dir)?;
        for i in 0..n {
            let img = images
                .narrow(0, i, 1)
                .and_then(|t| t.squeeze(0))
                .context("an image")?;
            data::save_png(dir.join(format!("{i:04}.png")), &img)?;
        }
        println!("individual images: {}", dir.display());
    }
    Ok((images, grid))
}

/// `ddpm sample`.
pub fn run(a: &SampleArgs) -> Result<()> {
    let loaded = load(&a.sampling)?;
    let (_, grid) = write_samples(&loaded, &a.sampling, a.n, &a.grid, a.individual)?;
    println!("sample grid: {}", grid.display());
    Ok(())
}
