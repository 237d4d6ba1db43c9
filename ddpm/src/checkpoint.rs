//! Weight files: the training checkpoint a run saves and resumes from, the EMA
//! weights it publishes, and loading a model from either for sampling.
//!
//! - `checkpoint.safetensors` holds `model.*`, `ema.*`, `adam.m.*`, `adam.v.*` and,
//!   as metadata, the [`Contract`], the [`TrainingRecord`] (the seed, the loss
//!   weighting and the batch), the step, the learning rate's decay horizon once it is fixed
//!   (`lr_horizon`) and the optimiser's and EMA's counters.
//! - `ema.safetensors` holds the EMA weights under the spec's plain names and the
//!   [`Contract`], so that any safetensors reader can use it.
//!
//! Both are written atomically (`nn::safetensors::save`). Whatever is read is
//! checked before it is used: every counter is bounded, every tensor is finite
//! (Adam's second moments also non-negative), and the contract is read with
//! [`Contract::from_metadata`], so a corrupt or hostile file is an error naming
//! the file and the field or tensor, never a panic or a model that draws NaNs.

use std::path::{Path, PathBuf};

use autograd::Parameter;
use nn::optim::{Adam, Ema};
use nn::safetensors::{self, CheckpointError, SafeTensors};
use nn::Module;
use tensor::Tensor;

use crate::contract::{difference, Contract};
use crate::error::{Context, Error, Result};
use crate::train::step_rng;
use crate::unet::UNet;

/// The training checkpoint's file name inside a run's directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

/// The published EMA weights' file name inside a run's directory.
pub const EMA_FILE: &str = "ema.safetensors";

/// The largest step or counter a checkpoint may record (2^53: exact in an f64,
/// and far from overflowing when a run adds to it).
pub const MAX_COUNTER: u64 = 1 << 53;

/// The checkpoint inside `out_dir`.
pub fn checkpoint_path(out_dir: &Path) -> PathBuf {
    out_dir.join(CHECKPOINT_FILE)
}

/// The training settings a checkpoint records beside the [`Contract`]. They do
/// not change how the model is used (the EMA file leaves them out). Two change
/// what a resumed run computes, so [`TrainState::load`] refuses a resume that
/// changes them, naming both values: `seed` and `min_snr` (`none` or gamma;
/// `none` for older files). The batch is recorded for the reader (`batch`,
/// `accumulate` and their product `effective_batch`) and may change on resume.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainingRecord {
    /// The seed of every random draw.
    pub seed: u64,
    /// min-SNR-gamma's `gamma`, or `None` for the unweighted loss.
    pub min_snr: Option<f64>,
    /// Images per micro-batch.
    pub batch: usize,
    /// Micro-batches per optimiser step.
    pub accumulate: usize,
}

impl TrainingRecord {
    /// The keys a resume must repeat, and their values.
    fn checked(&self) -> [(&'static str, String); 2] {
        [
            ("seed", self.seed.to_string()),
            ("min_snr", show_min_snr(self.min_snr)),
        ]
    }

    /// Every key and value the checkpoint records.
    fn metadata(&self) -> Vec<(String, String)> {
        let batch = [
            ("batch", self.batch),
            ("accumulate", self.accumulate),
            ("effective_batch", self.batch * self.accumulate),
        ];
        let checked = self.checked().into_iter();
        checked
            .chain(batch.into_iter().map(|(k, v)| (k, v.to_string())))
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    /// Each checked setting on which the checkpoint at `path` and `self` (the
    /// flags') disagree, as `"key: checkpoint value, flags value"`; the
    /// checkpoint's values are checked first.
    fn differences(&self, file: &SafeTensors, path: &Path) -> Result<Vec<String>> {
        let min_snr = match file.metadata().get("min_snr").map(String::as_str) {
            None | Some("none") => None,
            Some(v) => Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|g| g.is_finite() && *g > 0.0)
                    .ok_or_else(|| {
                        Error::contract(
                            path,
                            format!("min_snr {v:?} is not \"none\" or a positive number"),
                        )
                    })?,
            ),
        };
        let recorded = TrainingRecord {
            seed: counter(file, path, "seed", u64::MAX)?,
            min_snr,
            ..*self
        };
        Ok(recorded
            .checked()
            .into_iter()
            .zip(self.checked())
            .filter(|((_, have), (_, want))| have != want)
            .map(|((key, have), (_, want))| difference(key, &have, &want))
            .collect())
    }
}

/// `gamma` as the metadata writes it.
fn show_min_snr(gamma: Option<f64>) -> String {
    gamma.map_or("none".into(), |g| g.to_string())
}

/// Which weights of a training checkpoint to load for sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Weights {
    /// The exponential moving average (what the paper samples from).
    Ema,
    /// The raw, last-step weights.
    Model,
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
    /// The step at which the learning rate's decay ends, once fixed (see
    /// [`crate::train`]); a resumed run reuses it.
    pub lr_horizon: Option<u64>,
    names: Vec<String>,
    params: Vec<Parameter>,
}

impl TrainState {
    /// A fresh state (weights drawn from the run's `seed`).
    pub fn new(contract: &Contract, lr: f32, ema_decay: f32, seed: u64) -> Result<TrainState> {
        let model =
            UNet::new(&contract.config, &mut step_rng(seed, u64::MAX, 0)).context("building the U-Net")?;
        let (names, params): (Vec<String>, Vec<Parameter>) = model.parameters().into_iter().unzip();
        Ok(TrainState {
            optimizer: Adam::new(params.clone(), lr),
            ema: Ema::new(&params, ema_decay),
            step: 0,
            lr_horizon: None,
            model,
            names,
            params,
        })
    }

    /// The trainable parameters, in the model's order.
    pub fn params(&self) -> &[Parameter] {
        &self.params
    }

    /// Moves the EMA towards the current weights.
    pub fn update_ema(&mut self) -> tensor::Result<()> {
        self.ema.update(&self.params)
    }

    /// Writes the checkpoint atomically.
    pub fn save(&self, path: &Path, contract: &Contract, record: &TrainingRecord) -> Result<()> {
        let (adam_steps, moments) = self.optimizer.state().context("reading Adam's state")?;
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (i, name) in self.names.iter().enumerate() {
            tensors.push((format!("model.{name}"), self.params[i].value()));
            tensors.push((format!("ema.{name}"), self.ema.shadow()[i].clone()));
            tensors.push((format!("adam.m.{name}"), moments[i].0.clone()));
            tensors.push((format!("adam.v.{name}"), moments[i].1.clone()));
        }
        let mut meta = contract.metadata();
        meta.extend(record.metadata());
        meta.extend([
            ("format".to_string(), "ddpm-train-checkpoint".to_string()),
            ("step".to_string(), self.step.to_string()),
            ("adam_steps".to_string(), adam_steps.to_string()),
            ("ema_updates".to_string(), self.ema.updates().to_string()),
        ]);
        if let Some(h) = self.lr_horizon {
            meta.insert("lr_horizon".to_string(), h.to_string());
        }
        safetensors::save(path, tensors.iter().map(|(n, t)| (n, t)), &meta)
            .map_err(|e| Error::checkpoint(path, e))
    }

    /// Writes the EMA weights under the plain names, with the contract and step.
    pub fn save_ema(&self, path: &Path, contract: &Contract) -> Result<()> {
        let mut meta = contract.metadata();
        meta.insert("step".to_string(), self.step.to_string());
        let tensors = self.names.iter().zip(self.ema.shadow());
        safetensors::save(path, tensors, &meta).map_err(|e| Error::checkpoint(path, e))
    }

    /// Restores a checkpoint written by [`TrainState::save`]. Refuses one whose
    /// contract or training record differs from the run's (`wanted`, `record`),
    /// naming both values of each difference.
    pub fn load(&mut self, path: &Path, wanted: &Contract, record: &TrainingRecord) -> Result<()> {
        let file = safetensors::load(path).map_err(|e| Error::checkpoint(path, e))?;
        let recorded =
            Contract::from_metadata(file.metadata(), None).map_err(|m| Error::contract(path, m))?;
        let mut differences = recorded.differences(wanted);
        differences.extend(record.differences(&file, path)?);
        if !differences.is_empty() {
            return Err(Error::contract(
                path,
                format!(
                    "cannot resume: the run's flags contradict the checkpoint:\n    {}\n  give the \
                     checkpoint's values, or train into another --out (or pass --overwrite to start over)",
                    differences.join("\n    ")
                ),
            ));
        }
        let mut expected = Vec::new();
        for (name, p) in self.names.iter().zip(&self.params) {
            for prefix in ["model", "ema", "adam.m", "adam.v"] {
                expected.push((format!("{prefix}.{name}"), p.shape()));
            }
        }
        file.check_against(&expected)
            .map_err(|e| Error::checkpoint(path, e))?;
        let get = |k: String, non_negative: bool| -> Result<Tensor> {
            let t = file.tensor(&k).map_err(|e| Error::checkpoint(path, e))?;
            check_values(path, &k, t, non_negative)?;
            Ok(t.clone())
        };
        let (mut shadow, mut moments) = (Vec::new(), Vec::new());
        for (name, p) in self.names.iter().zip(&self.params) {
            p.set_value(get(format!("model.{name}"), false)?)
                .context("restoring the weights")?;
            shadow.push(get(format!("ema.{name}"), false)?);
            moments.push((
                get(format!("adam.m.{name}"), false)?,
                get(format!("adam.v.{name}"), true)?,
            ));
        }
        let ema_updates = counter(&file, path, "ema_updates", MAX_COUNTER)?;
        let adam_steps = counter(&file, path, "adam_steps", MAX_COUNTER)?;
        self.ema.load(shadow, ema_updates).context("restoring the EMA")?;
        self.optimizer
            .load_state(adam_steps, moments)
            .context("restoring Adam")?;
        self.step = counter(&file, path, "step", MAX_COUNTER)?;
        self.lr_horizon = match file.metadata().get("lr_horizon") {
            None => None,
            Some(_) => Some(counter(&file, path, "lr_horizon", MAX_COUNTER)?),
        };
        Ok(())
    }
}

/// The metadata number `key`, at most `max`.
fn counter(file: &SafeTensors, path: &Path, key: &str, max: u64) -> Result<u64> {
    let text = file
        .metadata()
        .get(key)
        .ok_or_else(|| Error::contract(path, format!("no {key:?} in the metadata")))?;
    text.parse::<u64>()
        .ok()
        .filter(|&v| v <= max)
        .ok_or_else(|| Error::contract(path, format!("{key} {text:?} is not an integer in 0..={max}")))
}

/// The index and value of the first NaN or infinite entry of `t` (or, if
/// `non_negative`, the first negative one), read in place when `t` is contiguous.
pub(crate) fn first_bad_value(t: &Tensor, non_negative: bool) -> Option<(usize, f32)> {
    let bad = |v: &f32| !v.is_finite() || (non_negative && *v < 0.0);
    let find = |s: &[f32]| s.iter().position(bad).map(|i| (i, s[i]));
    match t.as_slice() {
        Some(s) => find(s),
        None => find(&t.to_vec()),
    }
}

/// Refuses a tensor with a NaN or infinite entry (or, if `non_negative`, a
/// negative one), naming it and the first bad entry.
fn check_values(path: &Path, name: &str, t: &Tensor, non_negative: bool) -> Result<()> {
    match first_bad_value(t, non_negative) {
        None => Ok(()),
        Some((i, v)) => Err(Error::contract(
            path,
            format!(
                "tensor {name:?} holds {v} at index {i}: the weights are corrupt (or were saved from a \
                 diverged run)"
            ),
        )),
    }
}

/// A U-Net with weights from `path` and the contract it records: a training
/// checkpoint (`model.*` / `ema.*` names, `weights` picks) or a plain weight file
/// with the spec's names. `config` names the config of a file without metadata.
pub fn load_model(path: &Path, config: Option<&str>, weights: Weights) -> Result<(UNet, Contract)> {
    let file = safetensors::load(path).map_err(|e| Error::checkpoint(path, e))?;
    let contract = Contract::from_metadata(file.metadata(), config).map_err(|m| Error::contract(path, m))?;
    let prefix = if file.tensors().keys().any(|k| k.starts_with("model.")) {
        match weights {
            Weights::Ema => "ema.",
            Weights::Model => "model.",
        }
    } else {
        ""
    };
    let model = UNet::new(
        &contract.config,
        &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0),
    )
    .context("building the U-Net")?;
    let params = model.parameters();
    let expected: Vec<(String, Vec<usize>)> = params
        .iter()
        .map(|(n, p)| (format!("{prefix}{n}"), p.shape()))
        .collect();
    if prefix.is_empty() {
        // A plain weight file holds exactly the model's tensors.
        file.check_against(&expected)
            .map_err(|e| Error::checkpoint(path, e))?;
    }
    for ((name, shape), (_, p)) in expected.into_iter().zip(&params) {
        let t = file.tensor(&name).map_err(|e| Error::checkpoint(path, e))?;
        if t.shape() != shape.as_slice() {
            let found = t.shape().to_vec();
            return Err(Error::checkpoint(
                path,
                CheckpointError::ShapeMismatch {
                    name,
                    expected: shape,
                    found,
                },
            ));
        }
        check_values(path, &name, t, false)?;
        p.set_value(t.clone()).context("setting the weights")?;
    }
    model.set_training(false);
    Ok((model, contract))
}
