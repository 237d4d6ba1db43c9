//! Which of the `T` trained steps a sampler visits.
//!
//! A sampler with `S` steps evaluates the network at `S` of the trained steps
//! `0..T` and walks them from the noisiest down. How they are spread decides
//! where the solver spends its evaluations:
//!
//! ```text
//! uniform    t_i = round((T - 1) i / (S - 1))                  includes 0 and T - 1 (DDPM/DDIM)
//! trailing   t_i = round(T - i T / S) - 1,  i = 0..S            starts at T - 1, stops at T/S - 1 (diffusers)
//! quadratic  t_i = round((T - 1) (i / (S - 1))^2)               dense near t = 0 (DDIM's CIFAR choice)
//! karras     sigma_i = (s_max^(1/rho) + i/(S-1) (s_min^(1/rho) - s_max^(1/rho)))^rho,  rho = 7
//!            then t_i = the trained step whose sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)
//!            is nearest in log sigma (Karras et al. 2022, restricted to the trained steps)
//! ```
//!
//! Every spacing returns increasing, distinct steps ending at `T - 1`, so each
//! chain starts from pure noise; a step count above what the spacing can give
//! distinct steps for returns fewer.

use crate::schedule::spaced_steps;

/// How a sampler's steps are spread over `0..T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Spacing {
    /// Evenly spaced, from 0 to `T - 1`.
    Uniform,
    /// Evenly spaced down from `T - 1`, leaving out the last stretch near 0.
    Trailing,
    /// Quadratically spaced: dense near the data.
    Quadratic,
    /// Karras et al.'s sigma spacing with rho = 7.
    Karras,
}

/// The rho of the Karras spacing.
pub const KARRAS_RHO: f64 = 7.0;

/// `count` steps of `0..alpha_bar.len()` spread by `spacing` (increasing,
/// distinct, ending at `T - 1`).
pub fn kept_steps(spacing: Spacing, alpha_bar: &[f64], count: usize) -> Vec<usize> {
    let t_max = alpha_bar.len() - 1;
    let s = count.clamp(1, alpha_bar.len());
    let frac = |i: usize| if s == 1 { 1.0 } else { i as f64 / (s - 1) as f64 };
    let mut kept: Vec<usize> = match spacing {
        Spacing::Uniform => spaced_steps(alpha_bar.len(), s),
        Spacing::Quadratic => (0..s)
            .map(|i| (t_max as f64 * frac(i).powi(2)).round() as usize)
            .collect(),
        Spacing::Trailing => {
            let t = alpha_bar.len() as f64;
            (0..s)
                .map(|i| ((t - i as f64 * t / s as f64).round() as usize).saturating_sub(1))
                .collect()
        }
        Spacing::Karras => {
            let sigma: Vec<f64> = alpha_bar.iter().map(|ab| ((1.0 - ab) / ab).sqrt().ln()).collect();
            let (lo, hi) = (
                sigma[0].exp().powf(1.0 / KARRAS_RHO),
                sigma[t_max].exp().powf(1.0 / KARRAS_RHO),
            );
            (0..s)
                .map(|i| {
                    let target = (hi + frac(i) * (lo - hi)).powf(KARRAS_RHO).ln();
                    nearest(&sigma, target)
                })
                .collect()
        }
    };
    if s == 1 {
        kept = vec![t_max];
    }
    kept.sort_unstable();
    kept.dedup();
    kept
}

/// The index of the value of the increasing `values` nearest to `target`.
fn nearest(values: &[f64], target: f64) -> usize {
    let above = values.partition_point(|&v| v < target);
    match above {
        0 => 0,
        n if n == values.len() => n - 1,
        n if target - values[n - 1] <= values[n] - target => n - 1,
        n => n,
    }
}
