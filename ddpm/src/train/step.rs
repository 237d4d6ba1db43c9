//! One optimisation step: its micro-batches drawn from `(seed, step, micro-batch)`
//! streams, the loss and its backward pass, the clip, Adam, the EMA, and the
//! checks that stop a run before anything non-finite is saved.

use autograd::profile;
use nn::optim::{clip_grad_norm, Optimizer};
use nn::Module;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tensor::Tensor;

use super::TrainOptions;
use crate::checkpoint::{first_bad_value, TrainState};
use crate::data::Dataset;
use crate::diffusion::normal;
use crate::error::{Context, Error, Result};
use crate::loss::loss_at;
use crate::schedule::NoiseSchedule;

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
    names
        .into_iter()
        .find(|(_, p)| first_bad_value(&p.value(), false).is_some())
        .map(|(n, _)| n)
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
        profile::lap("(drawing the batch, t and noise)");
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
    profile::lap("(gradient clip)");
    if !norm.is_finite() {
        return Err(non_finite(format!("gradient norm ({norm})")));
    }
    state.optimizer.set_lr(lr);
    state.optimizer.step().context("the Adam update")?;
    profile::lap("(adam)");
    if let Some(name) = first_non_finite(state) {
        return Err(non_finite(format!("weight {name:?} after the update")));
    }
    profile::lap("(weight check)");
    state.update_ema().context("the EMA update")?;
    profile::lap("(ema)");
    state.step += 1;
    Ok(((sum / k as f64) as f32, norm))
}
