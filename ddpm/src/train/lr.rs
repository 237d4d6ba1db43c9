//! The learning rate's plan: warm-up, then constant or a decay to a floor at the
//! run's horizon, and, for a run with only a time budget, the horizon estimated
//! from its measured pace (see the [module doc](super)).

use super::TrainOptions;
use crate::checkpoint::TrainState;

/// How the learning rate falls after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LrDecay {
    /// Constant at the peak rate.
    None,
    /// Half a cosine down to the floor at the horizon.
    Cosine,
    /// A straight line down to the floor at the horizon.
    Linear,
}

impl LrDecay {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LrDecay::None => "none",
            LrDecay::Cosine => "cosine",
            LrDecay::Linear => "linear",
        }
    }
}

/// A time-budgeted run fixes its learning-rate horizon once it has timed this
/// many steps (after the warm-up) ...
pub const HORIZON_AFTER_STEPS: u64 = 20;

/// ... or spent this fraction of its budget, whichever comes first.
pub const HORIZON_AFTER_FRACTION: f64 = 0.05;

/// The step a run at `step` reaches by the end of its `budget` seconds, having
/// done `timed` steps in `elapsed` seconds: `step + floor((budget - elapsed) /
/// (elapsed / timed))`.
pub fn estimate_horizon(step: u64, timed: u64, elapsed: f64, budget: f64) -> u64 {
    let per_step = elapsed.max(1e-9) / timed.max(1) as f64;
    step + ((budget - elapsed).max(0.0) / per_step).floor() as u64
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The line that says how the learning rate will go.
pub(super) fn lr_plan(opts: &TrainOptions, state: &TrainState) -> String {
    let warm = format!("lr {:e} after a {}-step warm-up", opts.lr, opts.warmup);
    if opts.lr_decay == LrDecay::None {
        return format!("{warm}, then constant");
    }
    let decay = format!("{} decay to {:e}", opts.lr_decay.name(), opts.lr_min);
    match (state.lr_horizon, opts.max_steps) {
        (Some(h), Some(_)) => format!("{warm}, {decay} at step {}", thousands(h)),
        (Some(h), None) => format!(
            "{warm}, {decay} at step {} (the checkpoint's horizon)",
            thousands(h)
        ),
        (None, _) => format!(
            "{warm}, {decay} at a horizon estimated from the step time after the warm-up (and at least \
             {HORIZON_AFTER_STEPS} steps or {}% of the time budget)",
            HORIZON_AFTER_FRACTION * 100.0
        ),
    }
}

/// Fixes a time-budgeted run's horizon when the time has come (see the module
/// doc); returns the line that says so.
pub(super) fn fix_horizon(
    opts: &TrainOptions,
    state: &mut TrainState,
    first: u64,
    elapsed: f64,
) -> Option<String> {
    let budget = opts.time_budget?.as_secs_f64();
    let timed = state.step - first;
    let ready = timed >= 1
        && state.step >= opts.warmup
        && (timed >= HORIZON_AFTER_STEPS || elapsed >= HORIZON_AFTER_FRACTION * budget);
    if opts.lr_decay == LrDecay::None || state.lr_horizon.is_some() || !ready {
        return None;
    }
    let horizon = estimate_horizon(state.step, timed, elapsed, budget);
    state.lr_horizon = Some(horizon);
    Some(format!(
        "lr horizon ~{} steps (estimated at step {} from {:.3} s/step and the time left)",
        thousands(horizon),
        state.step,
        elapsed / timed as f64
    ))
}
