//! `ddpm` with no arguments: train `mnist-tiny` on the embedded subset for about
//! ten minutes, then sample 64 digits with DPM-Solver++(2M) SDE in 20 steps into
//! a grid and score them with the shipped classifier.
//!
//! The sampler is the one that matched the ancestral sampler's 250 steps at the
//! fewest network evaluations on this model (docs/PERF.md, "Samplers"): 20
//! evaluations give a lower classifier FID than ancestral-250 (65 against 71 on
//! 1,000 samples), so the grid takes about a second instead of twenty.
//!
//! The flags are parsed by the same command line as `ddpm train` and `ddpm
//! sample`, so every default not named here is theirs. A second run never
//! touches the first: it goes to the first of `runs/default`, `runs/default-2`,
//! `runs/default-3`, ... that holds no run yet.

use std::path::{Path, PathBuf};

use clap::Parser;

use super::args::{Cli, Command};
use super::eval::report_scores;
use super::sample::{load, write_samples};
use super::train::{load_data, options, run_training};
use super::DEFAULT_OUT;
use crate::error::{Error, Result};
use crate::eval;

/// The training flags of the default run: the small, fast config and a ten
/// times higher learning rate than the spec's, decayed along half a cosine to a
/// tenth of it by the end of the ten minutes, so that a laptop draws
/// recognisable digits in that time (`ddpm train` keeps the spec's defaults;
/// docs/PERF.md, "Objectives and loss weighting", has the runs that chose them).
const TRAIN_FLAGS: [&str; 8] = [
    "--config",
    "mnist-tiny",
    "--lr",
    "2e-3",
    "--warmup",
    "200",
    "--lr-decay",
    "cosine",
];

/// The sampling flags of the default run (see the module doc).
const SAMPLE_FLAGS: [&str; 4] = ["--sampler", "dpm++2m-sde", "--steps", "20"];

/// The first of `base`, `base-2`, `base-3`, ... that holds no training run.
pub fn fresh_out_dir(base: &Path) -> PathBuf {
    let holds_run = |dir: &Path| {
        crate::checkpoint::checkpoint_path(dir).exists() || dir.join(crate::losslog::LOSS_FILE).exists()
    };
    let name = |i: u64| match i {
        1 => base.to_path_buf(),
        i => PathBuf::from(format!("{}-{i}", base.display())),
    };
    (1..)
        .map(name)
        .find(|d| !holds_run(d))
        .expect("an unbounded sequence has a free name")
}

/// Parses `args` as a `ddpm` command line (the subcommand first).
fn parse(args: &[&str]) -> Result<Command> {
    let cli = Cli::try_parse_from(std::iter::once("ddpm").chain(args.iter().copied()))
        .map_err(|e| Error::Usage(e.to_string()))?;
    cli.command.ok_or_else(|| Error::usage("no command"))
}

/// `ddpm` with no arguments.
pub fn run() -> Result<()> {
    let out = fresh_out_dir(Path::new(DEFAULT_OUT));
    let out_flag = out.to_string_lossy().into_owned();
    let mut train_args = vec!["train"];
    train_args.extend(TRAIN_FLAGS);
    train_args.extend(["--out", &out_flag]);
    let Command::Train(t) = parse(&train_args)? else {
        unreachable!("parsed a train command")
    };
    let data = load_data(&t)?;
    let opts = options(&t, &data)?;
    let ema = run_training(&data, &opts, t.log_every)?;
    let ema_flag = ema.to_string_lossy().into_owned();
    let mut sample_args = vec!["sample", "--checkpoint", &ema_flag];
    sample_args.extend(SAMPLE_FLAGS);
    let Command::Sample(s) = parse(&sample_args)? else {
        unreachable!("parsed a sample command")
    };
    let loaded = load(&s.sampling)?;
    let (images, grid) = write_samples(&loaded, &s.sampling, s.n, &s.grid, s.individual)?;
    println!("sample grid: {}", grid.display());
    let classifier = eval::embedded_classifier()?;
    report_scores(&eval::classify(&classifier, &images, 64)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::LrDecay;

    /// The default run's flags are real flags of `train` and `sample` (a renamed
    /// flag would otherwise fail only ten minutes into the run).
    #[test]
    fn the_default_flags_parse() {
        let train: Vec<&str> = ["train"].into_iter().chain(TRAIN_FLAGS).collect();
        let Command::Train(t) = parse(&train).unwrap() else {
            panic!("not a train command")
        };
        assert_eq!(
            (t.config.as_str(), t.batch, t.lr, t.warmup, t.lr_decay),
            ("mnist-tiny", 64, 2e-3, 200, LrDecay::Cosine)
        );
        let sample: Vec<&str> = ["sample"].into_iter().chain(SAMPLE_FLAGS).collect();
        let Command::Sample(s) = parse(&sample).unwrap() else {
            panic!("not a sample command")
        };
        assert_eq!((s.sampling.steps, s.n), (Some(20), 64));
    }
}
