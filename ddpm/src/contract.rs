//! The model's contract: every choice that defines a trained model, recorded in
//! its weight files and read back by everything that uses them.
//!
//! A set of weights is only meaningful together with the diffusion it was trained
//! on: a network trained on the cosine schedule, sampled with linear betas, draws
//! garbage without any error. So both `checkpoint.safetensors` and
//! `ema.safetensors` carry, as safetensors metadata (strings):
//!
//! | key | values | default for older files |
//! |---|---|---|
//! | `config` | `mnist-tiny`, `mnist-small`, `cifar10` | (required, or `--config`) |
//! | `num_classes` | `none` or 1..=1000 | `none` |
//! | `variance` | `fixed` or `learned` | `fixed` |
//! | `schedule` | `linear` or `cosine` | `linear` |
//! | `beta_start`, `beta_end` | linear betas | 1e-4, 0.02 |
//! | `cosine_s` | the cosine offset `s` | 0.008 |
//! | `diffusion_steps` | `T` | 1000 |
//! | `objective` | what the network predicts: `eps`, `x0` or `v` ([`Objective`]) | `eps` |
//!
//! [`Contract::from_metadata`] is the one reader, [`Contract::metadata`] the one
//! writer and [`Contract::noise_schedule`] the one way to rebuild the diffusion.
//! Every value is checked on the way in, so a corrupt file is an error naming the
//! field, never a division by zero or a 25 GB embedding table.

use std::collections::BTreeMap;

use crate::config::UNetConfig;
pub use crate::diffusion::Objective;
use crate::schedule::{BetaSchedule, NoiseSchedule};

/// The most classes a conditional model may have (ImageNet's 1000): bounds the
/// label-embedding table a file can ask for.
pub const MAX_CLASSES: usize = 1000;

/// The most diffusion steps `T` a model may have.
pub const MAX_DIFFUSION_STEPS: usize = 100_000;

/// Everything needed to rebuild a trained model and its diffusion.
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    /// The network's shape (with its classes and variance output).
    pub config: UNetConfig,
    /// How `beta_t` grows.
    pub schedule: BetaSchedule,
    /// `T`.
    pub diffusion_steps: usize,
    /// What the network predicts.
    pub objective: Objective,
}

impl Contract {
    /// The spec's diffusion defaults (linear betas, `T = 1000`, eps) for `config`.
    pub fn new(config: UNetConfig) -> Contract {
        Contract {
            config,
            schedule: BetaSchedule::LINEAR,
            diffusion_steps: 1000,
            objective: Objective::Eps,
        }
    }

    /// The metadata a weight file records (see the module doc).
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let c = &self.config;
        let mut meta = BTreeMap::from([
            ("config".to_string(), c.name.clone()),
            (
                "num_classes".to_string(),
                c.num_classes.map_or("none".into(), |n| n.to_string()),
            ),
            (
                "variance".to_string(),
                if c.learn_sigma { "learned" } else { "fixed" }.to_string(),
            ),
            ("diffusion_steps".to_string(), self.diffusion_steps.to_string()),
            ("objective".to_string(), self.objective.name().to_string()),
        ]);
        match self.schedule {
            BetaSchedule::Linear { start, end } => meta.extend([
                ("schedule".to_string(), "linear".to_string()),
                ("beta_start".to_string(), start.to_string()),
                ("beta_end".to_string(), end.to_string()),
            ]),
            BetaSchedule::Cosine { s } => meta.extend([
                ("schedule".to_string(), "cosine".to_string()),
                ("cosine_s".to_string(), s.to_string()),
            ]),
        }
        meta
    }

    /// The contract a weight file's metadata records; `config_name` stands in for
    /// a missing (or overrides the) `config` key. `Err` is a sentence naming the
    /// field and its value.
    pub fn from_metadata(
        meta: &BTreeMap<String, String>,
        config_name: Option<&str>,
    ) -> Result<Contract, String> {
        let name = config_name
            .or(meta.get("config").map(String::as_str))
            .ok_or("no config in the file's metadata; give --config")?;
        let mut config = UNetConfig::named(name).map_err(|e| e.to_string())?;
        if let Some(n) = meta.get("num_classes").filter(|n| n.as_str() != "none") {
            config.num_classes = Some(
                n.parse()
                    .ok()
                    .filter(|n| (1..=MAX_CLASSES).contains(n))
                    .ok_or(format!("num_classes {n:?} is not \"none\" or 1..={MAX_CLASSES}"))?,
            );
        }
        match meta.get("variance").map(String::as_str) {
            None | Some("fixed") => {}
            Some("learned") => config = config.with_learned_sigma(),
            Some(v) => return Err(format!("variance {v:?} is not fixed or learned")),
        }
        let number = |key: &str, default: f64| -> Result<f64, String> {
            meta.get(key).map_or(Ok(default), |v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or(format!("{key} {v:?} is not a finite number"))
            })
        };
        let schedule = match meta.get("schedule").map(String::as_str) {
            None | Some("linear") => BetaSchedule::Linear {
                start: number("beta_start", 1e-4)?,
                end: number("beta_end", 0.02)?,
            },
            Some("cosine") => BetaSchedule::Cosine {
                s: number("cosine_s", 0.008)?,
            },
            Some(s) => return Err(format!("schedule {s:?} is not linear or cosine")),
        };
        let diffusion_steps = match meta.get("diffusion_steps") {
            None => 1000,
            Some(t) => t
                .parse()
                .ok()
                .filter(|t| (1..=MAX_DIFFUSION_STEPS).contains(t))
                .ok_or(format!(
                    "diffusion_steps {t:?} is not in 1..={MAX_DIFFUSION_STEPS}"
                ))?,
        };
        let objective = match meta.get("objective") {
            None => Objective::Eps,
            Some(o) => Objective::parse(o).ok_or(format!("objective {o:?} is not eps, x0 or v"))?,
        };
        let contract = Contract {
            config,
            schedule,
            diffusion_steps,
            objective,
        };
        contract.check_schedule()?;
        Ok(contract)
    }

    /// Checks that every `beta_t` is in `(0, 1)`, so that every schedule constant
    /// is finite.
    pub fn check_schedule(&self) -> Result<(), String> {
        let betas = self.schedule.betas(self.diffusion_steps);
        match betas.iter().position(|b| !(*b > 0.0 && *b < 1.0)) {
            None => Ok(()),
            Some(t) => Err(format!(
                "the {} schedule gives beta_{t} = {}, outside (0, 1)",
                self.schedule.name(),
                betas[t]
            )),
        }
    }

    /// The diffusion the model was trained on.
    pub fn noise_schedule(&self) -> NoiseSchedule {
        NoiseSchedule::new(self.schedule, self.diffusion_steps)
    }

    /// Each recorded choice on which `self` (a checkpoint's) and `wanted` (the
    /// flags') disagree, as `"key: checkpoint value, flags value"`.
    pub fn differences(&self, wanted: &Contract) -> Vec<String> {
        let (have, want) = (self.metadata(), wanted.metadata());
        let keys: std::collections::BTreeSet<&String> = have.keys().chain(want.keys()).collect();
        keys.into_iter()
            .filter(|k| have.get(*k) != want.get(*k))
            .map(|k| {
                let show = |m: &BTreeMap<String, String>| m.get(k).cloned().unwrap_or_else(|| "-".into());
                difference(k, &show(&have), &show(&want))
            })
            .collect()
    }
}

/// One setting on which a checkpoint and the flags of a resumed run disagree,
/// as every refusal to resume words it.
pub fn difference(key: &str, checkpoint: &str, flags: &str) -> String {
    format!("{key}: the checkpoint has {checkpoint}, the flags ask for {flags}")
}
