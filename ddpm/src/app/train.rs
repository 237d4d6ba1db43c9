//! `ddpm train`: the flags become [`TrainOptions`], the data is loaded and
//! checked against the config, and the run reports through a progress display.

use std::path::PathBuf;
use std::time::Duration;

use super::args::{ScheduleArg, TrainArgs};
use super::progress::TrainDisplay;
use crate::config::UNetConfig;
use crate::contract::Contract;
use crate::data::{self, Dataset, Split};
use crate::error::{Error, Result};
use crate::schedule::BetaSchedule;
use crate::train::{train, LrDecay, TrainOptions, TrainSummary};

/// `--lr-min`'s default, as a fraction of `--lr`.
pub const LR_MIN_FRACTION: f64 = 0.1;

/// The run the flags describe; the data decides the classes of a conditional model.
pub fn options(a: &TrainArgs, data: &Dataset) -> Result<TrainOptions> {
    let mut config = UNetConfig::named(&a.config).map_err(Error::Usage)?;
    if a.conditional {
        if data.labels().is_none() {
            return Err(Error::usage(
                "--conditional needs labelled data (IDX labels or class folders)",
            ));
        }
        config.num_classes = Some(data.num_classes());
    }
    if a.learn_sigma {
        config = config.with_learned_sigma();
    }
    let contract = Contract {
        schedule: match a.schedule {
            ScheduleArg::Linear => BetaSchedule::LINEAR,
            ScheduleArg::Cosine => BetaSchedule::COSINE,
        },
        diffusion_steps: a.diffusion_steps,
        objective: a.objective,
        ..Contract::new(config)
    };
    contract.check_schedule().map_err(Error::Usage)?;
    let minutes = a.minutes.or(if a.steps.is_none() { Some(10.0) } else { None });
    let lr_min = match a.lr_min {
        Some(_) if a.lr_decay == LrDecay::None => {
            return Err(Error::usage("--lr-min needs --lr-decay cosine or linear"))
        }
        Some(m) if m > a.lr => return Err(Error::usage(format!("--lr-min {m} is above --lr {}", a.lr))),
        Some(m) => m,
        None => LR_MIN_FRACTION * a.lr,
    };
    Ok(TrainOptions {
        contract,
        batch: a.batch,
        accumulate: a.accumulate,
        max_steps: a.steps,
        // The parser bounds minutes to (0, a year], so this cannot overflow.
        time_budget: minutes.map(|m| Duration::from_secs_f64(m * 60.0)),
        lr: a.lr as f32,
        warmup: a.warmup,
        lr_decay: a.lr_decay,
        lr_min: lr_min as f32,
        clip: a.clip as f32,
        min_snr: a.min_snr,
        ema_decay: a.ema as f32,
        seed: a.seed,
        out_dir: a.out.clone(),
        resume: a.resume,
        overwrite: a.overwrite,
        checkpoint_every: a.checkpoint_every,
    })
}

/// The training data the flags name, checked against the config's image shape.
pub fn load_data(a: &TrainArgs) -> Result<Dataset> {
    let config = UNetConfig::named(&a.config).map_err(Error::Usage)?;
    let data = match (&a.data, &a.images) {
        (Some(dir), _) => data::load_mnist(dir, Split::Train)?,
        (None, Some(dir)) => data::load_folder(dir, config.in_ch, config.image_size)?,
        (None, None) => data::embedded_mnist()?,
    };
    let want = (config.in_ch, config.image_size, config.image_size);
    if (data.channels(), data.height(), data.width()) != want {
        return Err(Error::usage(format!(
            "the data is {}x{}x{} but config {} needs {}x{}x{}",
            data.channels(),
            data.height(),
            data.width(),
            config.name,
            want.0,
            want.1,
            want.2
        )));
    }
    Ok(data)
}

/// `ddpm train`.
pub fn run(a: &TrainArgs) -> Result<()> {
    let data = load_data(a)?;
    let opts = options(a, &data)?;
    run_training(&data, &opts, a.log_every).map(|_| ())
}

/// Trains with a progress display and prints the summary; returns the path of
/// the EMA weights.
pub fn run_training(data: &Dataset, opts: &TrainOptions, log_every: u64) -> Result<PathBuf> {
    let mut display = TrainDisplay::new(opts.max_steps, log_every);
    let result = train(data, opts, |event| display.show(event));
    display.finish();
    let (_, summary): (_, TrainSummary) = result?;
    println!(
        "trained {} steps ({} this run) at {:.1} images/s; smoothed loss {:.4}\ncheckpoint: {}\nEMA weights: {}\nloss log: {}",
        summary.steps,
        summary.steps_this_run,
        summary.images_per_sec,
        summary.smoothed_loss,
        summary.checkpoint.display(),
        summary.ema.display(),
        summary.loss_log.display()
    );
    Ok(summary.ema)
}
