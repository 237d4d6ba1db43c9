//! The noise schedule: every per-step constant of the diffusion, computed once.
//!
//! Ho et al. (2020) corrupt data `x_0` over `T` steps, `q(x_t | x_{t-1}) =
//! N(sqrt(alpha_t) x_{t-1}, beta_t I)` with `alpha_t = 1 - beta_t`. Everything the
//! training loss and the samplers need follows from `beta`:
//!
//! ```text
//! alpha_bar_t   = prod_{s <= t} alpha_s                  q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
//! beta_tilde_t  = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t      (posterior variance)
//! mu_tilde_t    = coef_x0_t x_0 + coef_xt_t x_t                           (posterior mean)
//! coef_x0_t     = beta_t sqrt(alpha_bar_{t-1}) / (1 - alpha_bar_t)
//! coef_xt_t     = (1 - alpha_bar_{t-1}) sqrt(alpha_t) / (1 - alpha_bar_t)
//! ```
//! with `alpha_bar_{-1} = 1`. Steps are indexed `0..T` here (the paper's `t = 1`
//! is our `0`), as the U-Net's time embedding expects. `beta_tilde_0 = 0`, so
//! its logarithm is clipped to `log beta_tilde_1`, as in the original code.
//! Everything is kept in f64 (1 - alpha_bar is tiny near t = 0).

/// How `beta_t` grows with `t`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BetaSchedule {
    /// `beta` evenly spaced from `start` to `end` (DDPM: 1e-4 to 0.02).
    Linear {
        /// `beta_0`.
        start: f64,
        /// `beta_{T-1}`.
        end: f64,
    },
    /// Nichol and Dhariwal (2021): `alpha_bar(t) = f(t) / f(0)` with
    /// `f(t) = cos((t / T + s) / (1 + s) * pi / 2)^2`, `beta` clipped at 0.999.
    Cosine {
        /// The small offset `s` (0.008).
        s: f64,
    },
}

impl BetaSchedule {
    /// DDPM's default: linear from 1e-4 to 0.02.
    pub const LINEAR: BetaSchedule = BetaSchedule::Linear {
        start: 1e-4,
        end: 0.02,
    };
    /// The improved-DDPM cosine schedule with `s = 0.008`.
    pub const COSINE: BetaSchedule = BetaSchedule::Cosine { s: 0.008 };

    /// The schedule's name: `linear` or `cosine`.
    pub fn name(self) -> &'static str {
        match self {
            BetaSchedule::Linear { .. } => "linear",
            BetaSchedule::Cosine { .. } => "cosine",
        }
    }

    /// `beta_0 .. beta_{T-1}`.
    pub fn betas(self, steps: usize) -> Vec<f64> {
        match self {
            BetaSchedule::Linear { start, end } => (0..steps)
                .map(|i| start + (end - start) * i as f64 / (steps.max(2) - 1) as f64)
                .collect(),
            BetaSchedule::Cosine { s } => {
                let f = |t: usize| {
                    let x = (t as f64 / steps as f64 + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2;
                    x.cos().powi(2)
                };
                (0..steps).map(|t| (1.0 - f(t + 1) / f(t)).min(0.999)).collect()
            }
        }
    }
}

/// Every schedule constant, per step `t = 0..T`, named after the paper's symbols.
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    /// `beta_t`.
    pub beta: Vec<f64>,
    /// `alpha_t = 1 - beta_t`.
    pub alpha: Vec<f64>,
    /// `alpha_bar_t = prod_{s <= t} alpha_s`.
    pub alpha_bar: Vec<f64>,
    /// `alpha_bar_{t-1}` (1 at `t = 0`).
    pub alpha_bar_prev: Vec<f64>,
    /// `sqrt(alpha_bar_t)`: the signal's scale in `x_t`.
    pub sqrt_alpha_bar: Vec<f64>,
    /// `sqrt(1 - alpha_bar_t)`: the noise's scale in `x_t`.
    pub sqrt_one_minus_alpha_bar: Vec<f64>,
    /// `beta_tilde_t`, the variance of `q(x_{t-1} | x_t, x_0)`.
    pub beta_tilde: Vec<f64>,
    /// `log beta_tilde_t`, with `t = 0` clipped to `log beta_tilde_1`.
    pub log_beta_tilde_clipped: Vec<f64>,
    /// `coef_x0_t`: the weight of `x_0` in the posterior mean.
    pub posterior_coef_x0: Vec<f64>,
    /// `coef_xt_t`: the weight of `x_t` in the posterior mean.
    pub posterior_coef_xt: Vec<f64>,
}

impl NoiseSchedule {
    /// The schedule for `steps` steps (`T`) of `kind`.
    pub fn new(kind: BetaSchedule, steps: usize) -> NoiseSchedule {
        Self::from_betas(kind.betas(steps))
    }

    /// The schedule of the given `beta`s (also used for respaced samplers).
    pub fn from_betas(beta: Vec<f64>) -> NoiseSchedule {
        let alpha: Vec<f64> = beta.iter().map(|b| 1.0 - b).collect();
        let alpha_bar: Vec<f64> = alpha
            .iter()
            .scan(1.0, |acc, a| {
                *acc *= a;
                Some(*acc)
            })
            .collect();
        let alpha_bar_prev: Vec<f64> = std::iter::once(1.0)
            .chain(alpha_bar.iter().copied())
            .take(beta.len())
            .collect();
        let map2 = |f: &dyn Fn(usize) -> f64| (0..beta.len()).map(f).collect::<Vec<f64>>();
        let beta_tilde = map2(&|t| (1.0 - alpha_bar_prev[t]) / (1.0 - alpha_bar[t]) * beta[t]);
        let log_beta_tilde_clipped = map2(&|t| {
            let v = if t == 0 && beta.len() > 1 {
                beta_tilde[1]
            } else {
                beta_tilde[t]
            };
            v.ln()
        });
        NoiseSchedule {
            sqrt_alpha_bar: alpha_bar.iter().map(|a| a.sqrt()).collect(),
            sqrt_one_minus_alpha_bar: alpha_bar.iter().map(|a| (1.0 - a).sqrt()).collect(),
            posterior_coef_x0: map2(&|t| beta[t] * alpha_bar_prev[t].sqrt() / (1.0 - alpha_bar[t])),
            posterior_coef_xt: map2(&|t| (1.0 - alpha_bar_prev[t]) * alpha[t].sqrt() / (1.0 - alpha_bar[t])),
            beta_tilde,
            log_beta_tilde_clipped,
            beta,
            alpha,
            alpha_bar,
            alpha_bar_prev,
        }
    }

    /// `T`, the number of steps.
    pub fn steps(&self) -> usize {
        self.beta.len()
    }

    /// The schedule restricted to the increasing steps `kept` (respacing, Nichol
    /// and Dhariwal 2021): the new `beta_i = 1 - alpha_bar_{kept_i} / alpha_bar_{kept_{i-1}}`,
    /// so each kept step has the same `alpha_bar` as before.
    pub fn respaced(&self, kept: &[usize]) -> NoiseSchedule {
        let mut last = 1.0;
        let beta = kept
            .iter()
            .map(|&t| {
                let b = 1.0 - self.alpha_bar[t] / last;
                last = self.alpha_bar[t];
                b
            })
            .collect();
        Self::from_betas(beta)
    }
}

/// `count` steps spread evenly over `0..steps`, always including `steps - 1`
/// (the sampler must start from pure noise), increasing.
pub fn spaced_steps(steps: usize, count: usize) -> Vec<usize> {
    let count = count.clamp(1, steps);
    let mut kept: Vec<usize> = (0..count)
        .map(|i| ((steps - 1) as f64 * i as f64 / (count.max(2) - 1) as f64).round() as usize)
        .collect();
    if count == 1 {
        kept = vec![steps - 1];
    }
    kept.dedup();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaced_steps_cover_the_range() {
        assert_eq!(spaced_steps(1000, 5), vec![0, 250, 500, 749, 999]);
        assert_eq!(spaced_steps(10, 10), (0..10).collect::<Vec<_>>());
        assert_eq!(spaced_steps(10, 50), (0..10).collect::<Vec<_>>());
        assert_eq!(spaced_steps(10, 1), vec![9]);
    }
}
