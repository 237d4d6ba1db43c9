//! The fast samplers (DPM-Solver++ 2M, 2S and 2M SDE, Heun) against closed
//! forms and against DDIM.
//!
//! - On Gaussian data every quantity is closed form: the exact data prediction
//!   `D(x_t) = mu + alpha s^2 / (alpha^2 s^2 + sigma^2) (x_t - alpha mu)` and the
//!   exact probability-flow solution, which keeps `z = (x - alpha mu) /
//!   sqrt(alpha^2 s^2 + sigma^2)` fixed. The step functions, fed that `D`, must
//!   converge to it at their order: the error halves per doubling of the steps
//!   for the first-order step and quarters for the second-order ones; the 2M
//!   SDE's samples approach the exact marginal at second order too.
//! - On a point mass (`D` constant) every solver is exact, and the 2M SDE step
//!   is the exact posterior `q(x_to | x_from, x_0)`.
//! - With a real (small, untrained) U-Net: a solver's chain is its step
//!   functions composed, one step of any ODE solver is one step of DDIM, the
//!   first 2M step is DDIM's, seeds reproduce every sampler and only the
//!   stochastic ones read the rng, the chain counts its network evaluations, and
//!   guidance's doubled batch equals two separate passes.
//! - The step spacings against their formulas, and every sampler and spacing
//!   through the program.

use autograd::Var;
use ddpm::config::UNetConfig;
use ddpm::diffusion::{normal, Objective};
use ddpm::sample::solvers::{dpm2m, dpm2m_sde, dpm2s, first_order, heun, midpoint, Point};
use ddpm::sample::spacing::{kept_steps, Spacing, KARRAS_RHO};
use ddpm::sample::{
    guided_eps, predict, run_chain, sample, sample_from, Chain, Condition, DpmMethod, History, Request,
    Sampler, Variance,
};
use ddpm::schedule::{BetaSchedule, NoiseSchedule};
use ddpm::unet::UNet;
use nn::Module;
use rand::SeedableRng;
use tensor::Tensor;

mod common;
use common::{run, temp_dir, train_tiny};

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// The largest absolute difference of two tensors of one shape (infinite if
/// either holds a NaN, which `f32::max` would skip).
fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.to_vec()
        .iter()
        .zip(b.to_vec())
        .map(|(x, y)| {
            if x.is_nan() || y.is_nan() {
                f32::INFINITY
            } else {
                (x - y).abs()
            }
        })
        .fold(0.0, f32::max)
}

/// The largest absolute value of a tensor.
fn max_abs(a: &Tensor) -> f32 {
    a.to_vec().iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// The linear schedule's `alpha_bar` over `t` steps.
fn linear(t: usize) -> Vec<f64> {
    NoiseSchedule::new(BetaSchedule::LINEAR, t).alpha_bar
}

// ---------------------------------------------------------------------------
// Convergence on Gaussian data: everything closed form.
// ---------------------------------------------------------------------------

/// The data of the convergence tests: `x_0 ~ N(MU, SD^2)` per pixel.
const MU: f64 = 0.3;
const SD: f64 = 0.2;

/// `sqrt(alpha^2 s^2 + sigma^2)`: the standard deviation of `x_t` at `p`.
fn marginal_sd(p: Point) -> f64 {
    (p.alpha * p.alpha * SD * SD + p.sigma * p.sigma).sqrt()
}

/// The exact data prediction `E[x_0 | x_t]` of Gaussian data, unclipped.
fn gaussian_denoiser(x: &Tensor, p: Point) -> Tensor {
    let gain = p.alpha * SD * SD / marginal_sd(p).powi(2);
    x.map(|v| (MU + gain * (v as f64 - p.alpha * MU)) as f32)
}

/// The exact probability-flow solution from `a` to `b`: `z` is kept.
fn exact_flow(x: &[f32], a: Point, b: Point) -> Vec<f64> {
    x.iter()
        .map(|&v| b.alpha * MU + (v as f64 - a.alpha * MU) / marginal_sd(a) * marginal_sd(b))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Solver {
    FirstOrder,
    Dpm2m,
    Dpm2s,
    Heun,
}

const SECOND_ORDER: [Solver; 3] = [Solver::Dpm2m, Solver::Dpm2s, Solver::Heun];

/// Walks the increasing trained steps `kept` of `alpha_bar` from the last down to
/// the first (not on to clean data) with `solver` and the exact Gaussian
/// denoiser, from `x`; returns the largest error against the exact flow.
fn walk_error(solver: Solver, alpha_bar: &[f64], kept: &[usize], x: &[f32]) -> f64 {
    let point = |t: usize| Point::at(alpha_bar, t);
    let mut denoise = |x: &Tensor, t: usize| Ok(gaussian_denoiser(x, point(t)));
    let mut state = Tensor::from_vec(x.to_vec(), &[x.len()]).unwrap();
    let mut previous: Option<(Point, Tensor)> = None;
    for pair in kept.windows(2).rev() {
        let (from, to) = (point(pair[1]), point(pair[0]));
        let d = gaussian_denoiser(&state, from);
        state = match solver {
            Solver::FirstOrder => first_order(&state, from, to, &d),
            Solver::Dpm2m => dpm2m(&state, from, to, &d, previous.as_ref().map(|(p, d)| (*p, d))),
            Solver::Dpm2s => dpm2s(&state, from, to, &d, midpoint(alpha_bar, from, to), &mut denoise),
            Solver::Heun => heun(&state, from, to, &d, &mut denoise),
        }
        .unwrap();
        previous = Some((from, d));
    }
    let exact = exact_flow(x, point(kept[kept.len() - 1]), point(kept[0]));
    state
        .to_vec()
        .iter()
        .zip(&exact)
        .map(|(&got, want)| (got as f64 - want).abs())
        .fold(0.0, f64::max)
}

/// Starting points spanning x_T's +-3 standard deviations.
fn starts() -> Vec<f32> {
    (0..13).map(|i| -3.0 + 0.5 * i as f32).collect()
}

/// The error of `solver` for each step count, and the ratio of each error to the next.
fn errors_and_ratios(
    solver: Solver,
    alpha_bar: &[f64],
    spacing: Spacing,
    counts: &[usize],
) -> (Vec<f64>, Vec<f64>) {
    let errors: Vec<f64> = counts
        .iter()
        .map(|&s| walk_error(solver, alpha_bar, &kept_steps(spacing, alpha_bar, s), &starts()))
        .collect();
    let ratios = errors.windows(2).map(|e| e[0] / e[1]).collect();
    (errors, ratios)
}

/// The largest gap in lambda between consecutive kept steps.
fn largest_lambda_gap(alpha_bar: &[f64], kept: &[usize]) -> f64 {
    kept.windows(2)
        .map(|w| Point::at(alpha_bar, w[0]).lambda() - Point::at(alpha_bar, w[1]).lambda())
        .fold(0.0, f64::max)
}

/// `alpha_bar` of 721 trained steps evenly spaced in lambda over the linear
/// T = 1000 schedule's range, so that the uniform spacing with `S - 1` = 9, 18,
/// 36, 72, 144 intervals ([`EVEN_COUNTS`]) nests exactly and every interval's
/// `h` halves per doubling.
fn even_in_lambda() -> Vec<f64> {
    let lin = linear(1000);
    let (top, bottom) = (Point::at(&lin, 0).lambda(), Point::at(&lin, 999).lambda());
    (0..721)
        .map(|t| {
            let lambda = top + (bottom - top) * t as f64 / 720.0;
            1.0 / (1.0 + (-2.0 * lambda).exp())
        })
        .collect()
}

/// Step counts that double the intervals of [`even_in_lambda`]'s uniform spacing.
const EVEN_COUNTS: [usize; 5] = [10, 19, 37, 73, 145];

/// Measured (max error ratio per doubling of the intervals, S = 10, 19, 37, 73, 145):
///   first order  1.87 1.94 1.97 1.98
///   2M           1.35 3.52 3.90 3.97   (S = 10 is pre-asymptotic: its first step has no history)
///   2S           3.51 3.78 3.90 4.01
///   Heun         4.66 4.30 4.14 4.07
/// and at S >= 37 the second-order errors are 6.7x (Heun at 37) to 60x below the first-order ones.
#[test]
fn every_solver_converges_at_its_order_on_steps_even_in_log_snr() {
    let alpha_bar = even_in_lambda();
    let counts = EVEN_COUNTS;
    for pair in counts.windows(2) {
        let (coarse, fine) = (
            kept_steps(Spacing::Uniform, &alpha_bar, pair[0]),
            kept_steps(Spacing::Uniform, &alpha_bar, pair[1]),
        );
        assert_eq!(
            coarse,
            (0..pair[0]).map(|i| i * 720 / (pair[0] - 1)).collect::<Vec<_>>()
        );
        assert!(coarse.iter().all(|t| fine.contains(t)), "{pair:?} do not nest");
    }
    let (first, ratios) = errors_and_ratios(Solver::FirstOrder, &alpha_bar, Spacing::Uniform, &counts);
    assert!(
        ratios.iter().all(|r| (1.6..=2.6).contains(r)),
        "first order: errors {first:?}, ratios {ratios:?}"
    );
    for solver in SECOND_ORDER {
        let (errors, ratios) = errors_and_ratios(solver, &alpha_bar, Spacing::Uniform, &counts);
        assert!(
            ratios[1..].iter().all(|r| (3.0..=5.0).contains(r)),
            "{solver:?}: errors {errors:?}, ratios {ratios:?}"
        );
        for k in 2..counts.len() {
            assert!(
                errors[k] < first[k] / 5.0,
                "{solver:?} at S = {}: {} vs first order {}",
                counts[k],
                errors[k],
                first[k]
            );
        }
    }
}

/// The linear T = 1000 schedule, from t = 999 to t = 0.
///
/// Karras steps (the solvers' default), S = 20, 40, 80; measured ratios:
///   first order 1.97 1.96, 2M 3.58 3.96, 2S 3.51 3.33, Heun 4.56 4.25;
///   the second-order errors are 5.5x (2M at 40) to 18x below first order's.
/// Uniform steps, S = 10, 20, 40, 80: first order 1.78 1.93 1.95, Heun 4.32 3.98 3.88.
/// (2M and 2S are not second order on uniform steps down to t = 0: the last
/// interval, from t ~ 999 / (S - 1) to 0, spans h = 3.6, 2.9, 2.3, 1.7 in lambda,
/// which barely shrinks, and 2M's extrapolation there, with r = h_prev / h ~ 0.2,
/// is no better than the first-order step: measured 2M ratios 0.04 1.31 2.46.)
#[test]
fn on_the_linear_schedule_the_solvers_converge_down_to_t_zero() {
    let alpha_bar = linear(1000);
    let karras = [20, 40, 80];
    let gaps: Vec<f64> = karras
        .iter()
        .map(|&s| largest_lambda_gap(&alpha_bar, &kept_steps(Spacing::Karras, &alpha_bar, s)))
        .collect();
    assert!(
        gaps.windows(2).all(|g| g[1] < 0.8 * g[0]),
        "Karras steps are not refined: {gaps:?}"
    );
    let (first, ratios) = errors_and_ratios(Solver::FirstOrder, &alpha_bar, Spacing::Karras, &karras);
    assert!(
        ratios.iter().all(|r| (1.6..=2.6).contains(r)),
        "first order: {first:?} {ratios:?}"
    );
    for solver in SECOND_ORDER {
        let (errors, ratios) = errors_and_ratios(solver, &alpha_bar, Spacing::Karras, &karras);
        assert!(
            ratios.iter().all(|&r| r >= 3.0),
            "{solver:?}: errors {errors:?}, ratios {ratios:?}"
        );
        assert!(
            errors[1..].iter().zip(&first[1..]).all(|(e, f)| *e < f / 4.0),
            "{solver:?}: {errors:?} vs first order {first:?}"
        );
    }
    let uniform = [10, 20, 40, 80];
    let widest: Vec<usize> = uniform
        .iter()
        .map(|&s| {
            let kept = kept_steps(Spacing::Uniform, &alpha_bar, s);
            kept.windows(2).map(|w| w[1] - w[0]).max().unwrap()
        })
        .collect();
    assert!(
        widest.windows(2).all(|w| w[1] as f64 <= 0.55 * w[0] as f64),
        "uniform steps are not refined: {widest:?}"
    );
    let (first, ratios) = errors_and_ratios(Solver::FirstOrder, &alpha_bar, Spacing::Uniform, &uniform);
    assert!(
        ratios.iter().all(|r| (1.6..=2.6).contains(r)),
        "first order: {first:?} {ratios:?}"
    );
    let (errors, ratios) = errors_and_ratios(Solver::Heun, &alpha_bar, Spacing::Uniform, &uniform);
    assert!(ratios.iter().all(|&r| r >= 3.0), "Heun: {errors:?} {ratios:?}");
}

/// The mean and standard deviation at `kept[0]` of the 2M SDE's samples (with
/// the previous prediction, or without: the first-order SDE step) walked from
/// `x_T ~ N(alpha mu, alpha^2 s^2 + sigma^2)` at the last kept step with the exact
/// Gaussian denoiser.
///
/// Every step is affine in `x`, `D_prev` and `z`, and `D` is affine in `x`, so the
/// sample is `m + sum_j c_j xi_j` in independent standard normals `xi` (the
/// standardised `x_T` and each step's `z`). Lane 0 of the batch walks all `xi = 0`
/// (giving `m`); lane `1 + j` sets `xi_j = 1` alone (giving `m + c_j`): the
/// variance is `sum_j c_j^2`, exactly, without sampling.
fn sde_moments(alpha_bar: &[f64], kept: &[usize], with_history: bool) -> (f64, f64) {
    let point = |t: usize| Point::at(alpha_bar, t);
    let steps = kept.len() - 1;
    let lanes = steps + 2;
    let start = point(kept[steps]);
    let mut x = vec![(start.alpha * MU) as f32; lanes];
    x[1] += marginal_sd(start) as f32;
    let mut x = Tensor::from_vec(x, &[lanes]).unwrap();
    let mut previous: Option<(Point, Tensor)> = None;
    for (j, pair) in kept.windows(2).rev().enumerate() {
        let (from, to) = (point(pair[1]), point(pair[0]));
        let d = gaussian_denoiser(&x, from);
        let mut z = vec![0.0; lanes];
        z[2 + j] = 1.0;
        let z = Tensor::from_vec(z, &[lanes]).unwrap();
        let history = previous.as_ref().filter(|_| with_history).map(|(p, d)| (*p, d));
        x = dpm2m_sde(&x, from, to, &d, history, &z).unwrap();
        previous = Some((from, d));
    }
    let lanes = x.to_vec();
    let mean = lanes[0] as f64;
    let variance: f64 = lanes[1..].iter().map(|&v| (v as f64 - mean).powi(2)).sum();
    (mean, variance.sqrt())
}

/// The reverse SDE keeps the marginals, so the 2M SDE's samples must approach
/// `N(alpha_0 mu, alpha_0^2 s^2 + sigma_0^2)` at t = 0. Error: the larger of the
/// errors of the mean and the standard deviation. Measured ratios per doubling
/// (S = 10, 19, 37, 73, 145 on [`even_in_lambda`]):
///   without history (first order)  1.65 1.80 1.90 1.95
///   2M SDE                         0.16 2.92 3.80 3.95   (S = 10 pre-asymptotic)
/// and at S >= 37 the 2M SDE's error is 11x to 44x below the first-order one's.
#[test]
fn the_2m_sde_converges_in_distribution_at_second_order() {
    let alpha_bar = even_in_lambda();
    let errors = |with_history: bool| -> Vec<f64> {
        EVEN_COUNTS
            .iter()
            .map(|&s| {
                let kept = kept_steps(Spacing::Uniform, &alpha_bar, s);
                let (mean, sd) = sde_moments(&alpha_bar, &kept, with_history);
                let end = Point::at(&alpha_bar, 0);
                (mean - end.alpha * MU).abs().max((sd - marginal_sd(end)).abs())
            })
            .collect()
    };
    let ratios = |e: &[f64]| -> Vec<f64> { e.windows(2).map(|w| w[0] / w[1]).collect() };
    let (first, second) = (errors(false), errors(true));
    assert!(
        ratios(&first).iter().all(|r| (1.5..=2.6).contains(r)),
        "first-order SDE: {first:?} {:?}",
        ratios(&first)
    );
    assert!(
        ratios(&second)[1..].iter().all(|r| (2.5..=5.0).contains(r)),
        "2M SDE: {second:?} {:?}",
        ratios(&second)
    );
    for k in 2..EVEN_COUNTS.len() {
        assert!(
            second[k] < first[k] / 5.0,
            "S = {}: {second:?} vs {first:?}",
            EVEN_COUNTS[k]
        );
    }
}

/// Pairs of trained steps `(from, to)` of the linear T = 1000 schedule.
const PAIRS: [(usize, usize); 5] = [(999, 749), (600, 300), (250, 0), (100, 37), (5, 0)];

#[test]
fn on_a_point_mass_every_solver_is_exact_and_the_sde_step_is_the_posterior() {
    // Data x_0 = c: D = c wherever x is, and the flow keeps (x - alpha c) / sigma.
    let ab = linear(1000);
    let (n, c) = (12, 0.4f32);
    let x = normal(&[n], &mut rng(1));
    let z = normal(&[n], &mut rng(2));
    let d = Tensor::full(&[n], c);
    let mut constant = |_: &Tensor, _: usize| Ok(Tensor::full(&[n], c));
    for (from, to) in PAIRS {
        let (pf, pt) = (Point::at(&ab, from), Point::at(&ab, to));
        let prev = Point::at(&ab, (from + 100).min(999));
        let history = (from < 999).then_some((prev, &d));
        let flow =
            x.map(|v| (pt.alpha * c as f64 + pt.sigma / pf.sigma * (v as f64 - pf.alpha * c as f64)) as f32);
        let solved = [
            ("first order", first_order(&x, pf, pt, &d).unwrap()),
            ("2M", dpm2m(&x, pf, pt, &d, history).unwrap()),
            (
                "2S",
                dpm2s(&x, pf, pt, &d, midpoint(&ab, pf, pt), &mut constant).unwrap(),
            ),
            ("Heun", heun(&x, pf, pt, &d, &mut constant).unwrap()),
        ];
        for (name, got) in solved {
            assert!(max_diff(&got, &flow) < 2e-5, "{name} from {from} to {to}");
        }
        // q(x_to | x_from, x_0 = c) as a product of two Gaussians in x_to:
        // N(x_from; a x_to, sigma_from^2 - a^2 sigma_to^2) N(x_to; alpha_to c, sigma_to^2), a = alpha_from / alpha_to.
        let a = pf.alpha / pt.alpha;
        let b = pf.sigma.powi(2) - a * a * pt.sigma.powi(2);
        let precision = a * a / b + 1.0 / pt.sigma.powi(2);
        let posterior = x.zip_map(&z, "posterior", |v, z| {
            let mean = (a * v as f64 / b + pt.alpha * c as f64 / pt.sigma.powi(2)) / precision;
            (mean + z as f64 / precision.sqrt()) as f32
        });
        let sde = dpm2m_sde(&x, pf, pt, &d, history, &z).unwrap();
        assert!(
            max_diff(&sde, &posterior.unwrap()) < 2e-5,
            "2M SDE from {from} to {to}"
        );
    }
    // To clean data every solver returns D itself.
    let (pf, clean) = (Point::at(&ab, 40), Point::CLEAN);
    let other = normal(&[n], &mut rng(3));
    let mut never = |_: &Tensor, _: usize| -> autograd::Result<Tensor> { panic!("evaluated at clean data") };
    let history = Some((Point::at(&ab, 90), &other));
    for got in [
        first_order(&x, pf, clean, &d).unwrap(),
        dpm2m(&x, pf, clean, &d, history).unwrap(),
        dpm2m_sde(&x, pf, clean, &d, history, &z).unwrap(),
        dpm2s(&x, pf, clean, &d, midpoint(&ab, pf, clean), &mut never).unwrap(),
        heun(&x, pf, clean, &d, &mut never).unwrap(),
    ] {
        assert_eq!(got.to_vec(), d.to_vec());
    }
}

#[test]
fn first_order_is_the_ddim_update() {
    // The DDIM update of sample/mod.rs's doc, with ab = alpha_bar_from, ab' = alpha_bar_to:
    // eps' = (x - sqrt(ab) x0) / sqrt(1 - ab),  x <- sqrt(ab') x0 + sqrt(1 - ab') eps'.
    let ab = linear(1000);
    let x = normal(&[20], &mut rng(4));
    let d = normal(&[20], &mut rng(5)).clamp(-1.0, 1.0).unwrap();
    for (from, to) in PAIRS {
        let (a, a_to) = (ab[from], ab[to]);
        let want: Vec<f64> = x
            .to_vec()
            .iter()
            .zip(d.to_vec())
            .map(|(&x, x0)| {
                let eps = (x as f64 - a.sqrt() * x0 as f64) / (1.0 - a).sqrt();
                a_to.sqrt() * x0 as f64 + (1.0 - a_to).sqrt() * eps
            })
            .collect();
        let got = first_order(&x, Point::at(&ab, from), Point::at(&ab, to), &d).unwrap();
        for (g, w) in got.to_vec().iter().zip(&want) {
            assert!(
                (*g as f64 - w).abs() < 1e-5 * (1.0 + w.abs()),
                "{from} -> {to}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn the_midpoint_is_the_trained_step_nearest_the_middle_in_lambda() {
    let ab = linear(1000);
    for (from, to) in [(999, 749), (600, 300), (100, 37), (5, 0), (3, 1)] {
        let (pf, pt) = (Point::at(&ab, from), Point::at(&ab, to));
        let target = 0.5 * (pf.lambda() + pt.lambda());
        let mut best = to + 1;
        for t in to + 1..from {
            if (Point::at(&ab, t).lambda() - target).abs() < (Point::at(&ab, best).lambda() - target).abs() {
                best = t;
            }
        }
        assert_eq!(
            midpoint(&ab, pf, pt),
            Some(Point::at(&ab, best)),
            "{from} -> {to}"
        );
    }
    let (p4, p5) = (Point::at(&ab, 4), Point::at(&ab, 5));
    assert_eq!(
        midpoint(&ab, p5, p4),
        None,
        "no trained step between adjacent steps"
    );
    assert_eq!(midpoint(&ab, p5, Point::CLEAN), None);
}

// ---------------------------------------------------------------------------
// With a real U-Net.
// ---------------------------------------------------------------------------

/// mnist-tiny whose zero-initialised layers (`conv_out`, each residual block's
/// second conv, the attention outputs) are given weights, so that its output
/// depends on `x`, on `t` and on the label.
fn net(num_classes: Option<usize>, learn_sigma: bool) -> UNet {
    let mut cfg = UNetConfig::named("mnist-tiny").unwrap();
    cfg.num_classes = num_classes;
    if learn_sigma {
        cfg = cfg.with_learned_sigma();
    }
    let net = UNet::new(&cfg, &mut rng(10)).unwrap();
    for (name, p) in net.parameters() {
        if name.starts_with("conv_out") || name.contains("conv2") || name.contains("proj_out") {
            p.set_value(normal(&p.shape(), &mut rng(11)).mul_scalar(0.05))
                .unwrap();
        }
    }
    net
}

const DPM2M_5: Sampler = Sampler::DpmSolver {
    steps: 5,
    method: DpmMethod::Multistep,
};

/// Every sampler with `steps` steps, named, and whether it draws noise after `x_T`.
fn samplers(steps: usize) -> Vec<(&'static str, Sampler, bool)> {
    let dpm = |method| Sampler::DpmSolver { steps, method };
    vec![
        (
            "ancestral",
            Sampler::Ancestral {
                steps,
                variance: Variance::BetaTilde,
            },
            true,
        ),
        ("ddim eta 0", Sampler::Ddim { steps, eta: 0.0 }, false),
        ("ddim eta 1", Sampler::Ddim { steps, eta: 1.0 }, true),
        ("dpm++2m", dpm(DpmMethod::Multistep), false),
        ("dpm++2s", dpm(DpmMethod::Singlestep), false),
        ("dpm++2m-sde", dpm(DpmMethod::MultistepSde), true),
        ("heun", Sampler::Heun { steps }, false),
    ]
}

#[test]
fn one_step_of_every_ode_solver_is_one_step_of_ddim() {
    // T = 10 keeps alpha_bar_9 ~ 0.9, so that D(x_T) is mostly not clipped.
    let (model, s) = (net(None, false), NoiseSchedule::new(BetaSchedule::LINEAR, 10));
    let x_t = normal(&[2, 1, 28, 28], &mut rng(20));
    let once = |sampler| {
        sample_from(
            &model,
            Objective::Eps,
            &s,
            sampler,
            x_t.clone(),
            Condition::NONE,
            &mut rng(21),
            |_, _| {},
        )
        .unwrap()
    };
    let ddim = once(Sampler::Ddim { steps: 1, eta: 0.0 });
    let inside = ddim.to_vec().iter().filter(|v| v.abs() < 0.999).count();
    assert!(inside > ddim.numel() / 2, "only {inside} pixels are not clipped");
    assert!(max_diff(&ddim, &x_t) > 0.05, "the model changes nothing");
    for (name, sampler, _) in samplers(1) {
        if !matches!(sampler, Sampler::Ancestral { .. } | Sampler::Ddim { .. }) {
            assert!(max_diff(&once(sampler), &ddim) < 1e-5, "{name}");
        }
    }
}

#[test]
fn the_first_2m_step_is_the_ddim_step_and_later_ones_use_the_history() {
    let (model, s) = (net(None, false), NoiseSchedule::new(BetaSchedule::LINEAR, 1000));
    let chain = |sampler| {
        Chain::with_spacing(
            &model,
            Objective::Eps,
            &s,
            sampler,
            Spacing::Uniform,
            Condition::NONE,
        )
        .unwrap()
    };
    let (ddim, dpm) = (chain(Sampler::Ddim { steps: 5, eta: 0.0 }), chain(DPM2M_5));
    assert_eq!(ddim.len(), 5);
    assert_eq!(
        (0..5).map(|i| dpm.diffusion_step(i)).collect::<Vec<_>>(),
        [0, 250, 500, 749, 999]
    );
    let mut no_noise = |_: &[usize]| -> Tensor { panic!("a deterministic step drew noise") };
    let x_t = normal(&[2, 1, 28, 28], &mut rng(22));
    let mut history = History::default();
    let a = ddim
        .step(4, &x_t, &mut History::default(), &mut no_noise)
        .unwrap();
    let b = dpm.step(4, &x_t, &mut history, &mut no_noise).unwrap();
    let scale = max_abs(&a.x);
    assert!(max_diff(&a.x, &b.x) < 1e-5 * scale, "the first step");
    assert!(max_diff(&a.x0, &b.x0) < 1e-4, "the first prediction of x_0");
    // The second step: 2M corrects D with the first prediction; without history it is DDIM.
    let a2 = ddim
        .step(3, &a.x, &mut History::default(), &mut no_noise)
        .unwrap();
    let fresh = dpm.step(3, &a.x, &mut History::default(), &mut no_noise).unwrap();
    let b2 = dpm.step(3, &a.x, &mut history, &mut no_noise).unwrap();
    assert!(max_diff(&a2.x, &fresh.x) < 1e-5 * max_abs(&a2.x));
    assert!(max_diff(&a2.x, &b2.x) > 1e-3, "the history changes nothing");
    // Walking all of 2M's chain with a fresh history at every step is DDIM's chain.
    let mut x = x_t.clone();
    for i in (0..dpm.len()).rev() {
        x = dpm.step(i, &x, &mut History::default(), &mut no_noise).unwrap().x;
    }
    let whole = run_chain(&ddim, x_t, &mut rng(23), |_, _| {}).unwrap();
    assert!(max_diff(&x, &whole) < 1e-4, "{}", max_diff(&x, &whole));
}

/// The ODE and SDE solvers' chains are their step functions composed: D from
/// `predict_x0` on the model's noise estimate, clipped; 2M and 2M SDE given the
/// previous step's point and prediction; 2S the midpoint; the last step to clean
/// data; one noise draw per step for the SDE.
#[test]
fn a_solver_chain_is_its_step_functions_composed() {
    let (model, s) = (net(None, false), NoiseSchedule::new(BetaSchedule::LINEAR, 1000));
    let ab = &s.alpha_bar;
    let x_t = normal(&[2, 1, 28, 28], &mut rng(24));
    let dpm = |method| Sampler::DpmSolver { steps: 4, method };
    for sampler in [
        dpm(DpmMethod::Multistep),
        dpm(DpmMethod::Singlestep),
        dpm(DpmMethod::MultistepSde),
        Sampler::Heun { steps: 4 },
    ] {
        let chain = Chain::with_spacing(
            &model,
            Objective::Eps,
            &s,
            sampler,
            Spacing::Quadratic,
            Condition::NONE,
        )
        .unwrap();
        let got = run_chain(&chain, x_t.clone(), &mut rng(25), |_, _| {}).unwrap();
        let kept = kept_steps(Spacing::Quadratic, ab, 4);
        assert_eq!(kept, [0, 111, 444, 999]);
        let mut denoise = |x: &Tensor, t: usize| {
            let eps = predict(&model, x, &[t, t], None, 0.0)?.0;
            ddpm::diffusion::predict_x0(&s, x, &[t, t], &eps)?.clamp(-1.0, 1.0)
        };
        let (mut x, mut previous, mut noise) = (x_t.clone(), None::<(Point, Tensor)>, rng(25));
        for i in (0..kept.len()).rev() {
            let from = Point::at(ab, kept[i]);
            let to = if i == 0 {
                Point::CLEAN
            } else {
                Point::at(ab, kept[i - 1])
            };
            let d = denoise(&x, from.t).unwrap();
            let history = previous.as_ref().map(|(p, d)| (*p, d));
            x = match sampler {
                Sampler::DpmSolver {
                    method: DpmMethod::Multistep,
                    ..
                } => dpm2m(&x, from, to, &d, history),
                Sampler::DpmSolver {
                    method: DpmMethod::MultistepSde,
                    ..
                } => dpm2m_sde(&x, from, to, &d, history, &normal(x.shape(), &mut noise)),
                Sampler::DpmSolver { .. } => dpm2s(&x, from, to, &d, midpoint(ab, from, to), &mut denoise),
                _ => heun(&x, from, to, &d, &mut denoise),
            }
            .unwrap();
            previous = Some((from, d));
        }
        assert!(max_diff(&got, &x) < 1e-4, "{sampler:?}: {}", max_diff(&got, &x));
    }
}

#[test]
fn seeds_reproduce_every_sampler_and_only_the_stochastic_ones_read_the_rng() {
    let (model, s) = (net(None, false), NoiseSchedule::new(BetaSchedule::LINEAR, 1000));
    let x_t = normal(&[2, 1, 28, 28], &mut rng(30));
    for (name, sampler, stochastic) in samplers(3) {
        let draw = |seed| {
            sample_from(
                &model,
                Objective::Eps,
                &s,
                sampler,
                x_t.clone(),
                Condition::NONE,
                &mut rng(seed),
                |_, _| {},
            )
            .unwrap()
            .to_vec()
        };
        let first = draw(1);
        assert!(first == draw(1), "{name}: the same seed differs");
        assert!(first.iter().all(|v| v.is_finite() && v.abs() <= 1.0), "{name}");
        if stochastic {
            assert!(first != draw(2), "{name}: the seed changes nothing");
        } else {
            assert!(
                first == draw(2),
                "{name}: a deterministic sampler depends on the seed"
            );
        }
        // sample() draws x_T from the rng too: the same seed, the same images.
        let request = Request {
            sampler,
            spacing: None,
            n: 2,
            batch: 2,
            labels: None,
            guidance: 0.0,
            clip: true,
        };
        let images = |seed| {
            sample(&model, Objective::Eps, &s, request, &mut rng(seed), |_, _| {})
                .unwrap()
                .images
                .to_vec()
        };
        assert!(images(5) == images(5), "{name}: sample() with one seed differs");
    }
}

/// The evaluations a chain over `kept` makes per image, by the rule: one per
/// step, plus one for each 2S step that has a trained step strictly inside its
/// interval and for each Heun step that does not end at clean data.
fn expected_evaluations(sampler: Sampler, kept: &[usize]) -> usize {
    let extra = match sampler {
        Sampler::DpmSolver {
            method: DpmMethod::Singlestep,
            ..
        } => kept.windows(2).filter(|w| w[1] > w[0] + 1).count(),
        Sampler::Heun { .. } => kept.len() - 1,
        _ => 0,
    };
    kept.len() + extra
}

#[test]
fn the_chain_counts_its_network_evaluations() {
    let model = net(None, false);
    let evaluations = |s: &NoiseSchedule, sampler, spacing| {
        let chain =
            Chain::with_spacing(&model, Objective::Eps, s, sampler, spacing, Condition::NONE).unwrap();
        assert_eq!(chain.evaluations(), 0);
        let kept: Vec<usize> = (0..chain.len()).map(|i| chain.diffusion_step(i)).collect();
        let x_t = normal(&[1, 1, 28, 28], &mut rng(40));
        run_chain(&chain, x_t, &mut rng(41), |_, _| {}).unwrap();
        (chain.evaluations(), kept)
    };
    // T = 1000, 4 uniform steps 0, 333, 666, 999: room for a midpoint everywhere.
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    for (name, sampler, _) in samplers(4) {
        let (count, kept) = evaluations(&s, sampler, Spacing::Uniform);
        assert_eq!(kept, [0, 333, 666, 999]);
        let want = match sampler {
            Sampler::Heun { .. }
            | Sampler::DpmSolver {
                method: DpmMethod::Singlestep,
                ..
            } => 2 * 4 - 1,
            _ => 4,
        };
        assert_eq!(count, want, "{name}");
        assert_eq!(count, expected_evaluations(sampler, &kept), "{name}");
    }
    // T = 10, all 10 steps: adjacent, so 2S falls back to one evaluation a step;
    // T = 20, 12 steps round(19 i / 11): some adjacent, some not.
    let all = NoiseSchedule::new(BetaSchedule::LINEAR, 10);
    let some = NoiseSchedule::new(BetaSchedule::LINEAR, 20);
    let mixed: Vec<usize> = (0..12)
        .map(|i| (19.0 * i as f64 / 11.0).round() as usize)
        .collect();
    let gaps = mixed.windows(2).filter(|w| w[1] > w[0] + 1).count();
    assert!(gaps > 0 && gaps < 11, "{mixed:?}");
    let singlestep = |steps| Sampler::DpmSolver {
        steps,
        method: DpmMethod::Singlestep,
    };
    for (s, steps, kept, want_2s) in [(&all, 10, (0..10).collect(), 10), (&some, 12, mixed, 12 + gaps)] {
        let (count, got) = evaluations(s, singlestep(steps), Spacing::Uniform);
        assert_eq!((count, &got), (want_2s, &kept), "2S");
        let (count, _) = evaluations(s, Sampler::Heun { steps }, Spacing::Uniform);
        assert_eq!(count, 2 * steps - 1, "Heun");
    }
    // Karras steps on T = 1000 include adjacent ones near t = 0 at 40 steps.
    let (count, kept) = evaluations(&s, singlestep(40), Spacing::Karras);
    assert!(kept.windows(2).any(|w| w[1] == w[0] + 1), "{kept:?}");
    assert_eq!(count, expected_evaluations(singlestep(40), &kept));
    assert!(count < 2 * kept.len() - 1);
}

#[test]
fn guidance_counts_two_evaluations_and_sample_reports_them_per_image() {
    let (model, s) = (
        net(Some(10), false),
        NoiseSchedule::new(BetaSchedule::LINEAR, 1000),
    );
    let labels = [3, 7, 1];
    for (name, sampler, _) in samplers(3) {
        let kept = kept_steps(sampler.default_spacing(), &s.alpha_bar, 3);
        let plain = expected_evaluations(sampler, &kept);
        for (w, want) in [(0.0, plain), (2.0, 2 * plain)] {
            let condition = Condition {
                labels: Some(&labels[..2]),
                guidance: w,
            };
            let chain = Chain::new(&model, Objective::Eps, &s, sampler, condition).unwrap();
            run_chain(
                &chain,
                normal(&[2, 1, 28, 28], &mut rng(50)),
                &mut rng(51),
                |_, _| {},
            )
            .unwrap();
            assert_eq!(chain.evaluations(), want, "{name}, w = {w}");
        }
        // Three images in batches of two: still per image.
        let request = Request {
            sampler,
            spacing: None,
            n: 3,
            batch: 2,
            labels: Some(&labels),
            guidance: 2.0,
            clip: true,
        };
        let samples = sample(&model, Objective::Eps, &s, request, &mut rng(52), |_, _| {}).unwrap();
        assert_eq!(samples.images.shape(), &[3, 1, 28, 28]);
        assert_eq!(samples.evaluations, 2 * plain, "{name}");
        let unguided = Request {
            guidance: 0.0,
            ..request
        };
        let samples = sample(&model, Objective::Eps, &s, unguided, &mut rng(52), |_, _| {}).unwrap();
        assert_eq!(samples.evaluations, plain, "{name}, unguided");
    }
}

#[test]
fn the_doubled_guidance_batch_is_two_separate_passes() {
    let (x, t, labels) = (normal(&[2, 1, 28, 28], &mut rng(60)), [100, 700], [3, 7]);
    for learn_sigma in [false, true] {
        let model = net(Some(10), learn_sigma);
        let pass = |y: &[usize]| {
            autograd::no_grad(|| model.forward(&Var::constant(x.clone()), &t, Some(y)))
                .unwrap()
                .value()
                .clone()
        };
        let (cond, uncond) = (pass(&labels), pass(&[10, 10]));
        let eps = |out: &Tensor| out.narrow(1, 0, 1).unwrap();
        assert!(
            max_diff(&eps(&cond), &eps(&uncond)) > 1e-3,
            "the label changes nothing"
        );
        for w in [0.0, 0.5, 3.0] {
            let (got, o) = predict(&model, &x, &t, Some(&labels), w).unwrap();
            let want = guided_eps(&eps(&cond), &eps(&uncond), w).unwrap();
            let tol = 1e-5 * max_abs(&want).max(1.0);
            assert!(max_diff(&got, &want) < tol, "w = {w}: {}", max_diff(&got, &want));
            match o {
                Some(o) => {
                    assert!(learn_sigma);
                    let want_o = cond.narrow(1, 1, 1).unwrap();
                    assert!(
                        max_diff(&o, &want_o) < 1e-5 * max_abs(&want_o).max(1.0),
                        "w = {w}: o"
                    );
                }
                None => assert!(!learn_sigma, "the variance output is missing"),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Spacings.
// ---------------------------------------------------------------------------

/// Karras's sigma spacing mapped to the trained step nearest in log sigma,
/// computed by scanning every step.
fn karras_reference(alpha_bar: &[f64], count: usize) -> Vec<usize> {
    let sigma: Vec<f64> = alpha_bar.iter().map(|a| ((1.0 - a) / a).sqrt()).collect();
    let (lo, hi) = (sigma[0], sigma[sigma.len() - 1]);
    let mut kept: Vec<usize> = (0..count)
        .map(|i| {
            let f = i as f64 / (count - 1) as f64;
            let target = (hi.powf(1.0 / KARRAS_RHO)
                + f * (lo.powf(1.0 / KARRAS_RHO) - hi.powf(1.0 / KARRAS_RHO)))
            .powf(KARRAS_RHO);
            let distance = |t: usize| (sigma[t].ln() - target.ln()).abs();
            (0..sigma.len())
                .min_by(|&a, &b| distance(a).total_cmp(&distance(b)))
                .unwrap()
        })
        .collect();
    kept.sort_unstable();
    kept.dedup();
    kept
}

const SPACINGS: [Spacing; 4] = [
    Spacing::Uniform,
    Spacing::Trailing,
    Spacing::Quadratic,
    Spacing::Karras,
];

#[test]
fn spacings_match_their_formulas() {
    let ab = linear(1000);
    assert_eq!(kept_steps(Spacing::Uniform, &ab, 5), [0, 250, 500, 749, 999]);
    assert_eq!(kept_steps(Spacing::Trailing, &ab, 5), [199, 399, 599, 799, 999]);
    // 999 (i / 4)^2 = 0, 62.4, 249.75, 561.9, 999.
    assert_eq!(kept_steps(Spacing::Quadratic, &ab, 5), [0, 62, 250, 562, 999]);
    for count in [7, 20, 50] {
        let quadratic: Vec<usize> = (0..count)
            .map(|i| (999.0 * (i as f64 / (count - 1) as f64).powi(2)).round() as usize)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(kept_steps(Spacing::Quadratic, &ab, count), quadratic);
        let trailing: Vec<usize> = (0..count)
            .rev()
            .map(|i| (1000.0 - i as f64 * 1000.0 / count as f64).round() as usize - 1)
            .collect();
        assert_eq!(kept_steps(Spacing::Trailing, &ab, count), trailing);
    }
    let cosine = NoiseSchedule::new(BetaSchedule::COSINE, 1000).alpha_bar;
    for alpha_bar in [&ab, &cosine] {
        for count in [2, 5, 10, 20, 80] {
            assert_eq!(
                kept_steps(Spacing::Karras, alpha_bar, count),
                karras_reference(alpha_bar, count),
                "karras, {count} steps"
            );
        }
    }
    // Karras spends its steps near the data: the median kept step is low.
    let karras = kept_steps(Spacing::Karras, &ab, 10);
    assert_eq!((karras[0], karras[9]), (0, 999));
    assert!(karras[5] < 700, "{karras:?}");
}

#[test]
fn every_spacing_gives_increasing_distinct_steps_ending_at_the_last() {
    for t in [1, 2, 10, 1000] {
        let ab = linear(t);
        for spacing in SPACINGS {
            for count in [1, 2, 3, 7, 10, 50, 999, 1000, 5000] {
                let kept = kept_steps(spacing, &ab, count);
                assert!(
                    !kept.is_empty() && kept.len() <= count.min(t),
                    "{spacing:?} {t} {count}: {kept:?}"
                );
                assert!(
                    kept.windows(2).all(|w| w[0] < w[1]),
                    "{spacing:?} {t} {count}: {kept:?}"
                );
                assert_eq!(*kept.last().unwrap(), t - 1, "{spacing:?} {t} {count}");
                if count == 1 {
                    assert_eq!(kept, [t - 1]);
                }
            }
        }
        // Asking for T steps or more gives all T, evenly or trailing.
        for count in [t, t + 1, 5 * t] {
            assert_eq!(
                kept_steps(Spacing::Uniform, &ab, count),
                (0..t).collect::<Vec<_>>()
            );
            assert_eq!(
                kept_steps(Spacing::Trailing, &ab, count),
                (0..t).collect::<Vec<_>>()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Through the program.
// ---------------------------------------------------------------------------

const SAMPLER_NAMES: [&str; 6] = ["ddpm", "ddim", "dpm++2m", "dpm++2s", "dpm++2m-sde", "heun"];
const SPACING_NAMES: [&str; 4] = ["uniform", "trailing", "quadratic", "karras"];

/// The size of a grid of `n` images of 28 pixels in `cols` columns, padded by 2.
fn grid_size(n: usize, cols: usize) -> (u32, u32) {
    let rows = n.div_ceil(cols);
    ((2 + 30 * cols) as u32, (2 + 30 * rows) as u32)
}

fn image_size(path: &std::path::Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

#[test]
fn every_sampler_and_spacing_runs_through_the_program() {
    let plain = train_tiny("solvers-plain", 2, &[]);
    let ckpt = plain.join("checkpoint.safetensors");
    let c = ckpt.to_str().unwrap();
    let out = temp_dir("solvers-out");
    let o = out.to_str().unwrap();
    let mut grids = std::collections::BTreeMap::new();
    for sampler in SAMPLER_NAMES {
        for spacing in SPACING_NAMES {
            let grid = format!("{sampler}-{spacing}.png");
            run(&[
                "sample",
                "--checkpoint",
                c,
                "--sampler",
                sampler,
                "--spacing",
                spacing,
                "--steps",
                "3",
                "--n",
                "2",
                "--grid",
                &grid,
                "--out",
                o,
            ])
            .unwrap_or_else(|e| panic!("{sampler} {spacing}: {e}"));
            assert_eq!(image_size(&out.join(&grid)), grid_size(2, 2), "{grid}");
            let pixels = image::open(out.join(&grid)).unwrap().into_luma8().into_raw();
            grids.insert((sampler, spacing), pixels);
        }
    }
    // The flags reach the sampler. The deterministic samplers cannot show it: on
    // a model trained two steps, eps ~ 0 and every one of them draws the clipped
    // sign of x_T. The stochastic ones add noise at the kept steps, so with one
    // seed each spacing draws other images, and so does each of the two.
    for (a, pa) in &grids {
        for (b, pb) in &grids {
            let stochastic = |s: &str| s == "ddpm" || s == "dpm++2m-sde";
            if a < b && stochastic(a.0) && stochastic(b.0) {
                assert!(pa != pb, "{a:?} and {b:?} draw the same images");
            }
        }
    }
    run(&[
        "figure",
        "x0-chain",
        "--checkpoint",
        c,
        "--sampler",
        "dpm++2m",
        "--steps",
        "3",
        "--n",
        "2",
        "--columns",
        "3",
        "--out",
        o,
    ])
    .unwrap();
    assert_eq!(image_size(&out.join("x0-chain.png")), grid_size(6, 3));
    run(&[
        "eval",
        "--checkpoint",
        c,
        "--sampler",
        "heun",
        "--steps",
        "2",
        "--n",
        "2",
        "--out",
        o,
    ])
    .unwrap();
    assert_eq!(image_size(&out.join("eval-samples.png")), grid_size(2, 2));

    let conditional = train_tiny("solvers-cond", 2, &["--conditional"]);
    let cc = conditional.join("checkpoint.safetensors");
    for sampler in ["dpm++2s", "heun", "dpm++2m-sde"] {
        let grid = format!("cond-{sampler}.png");
        run(&[
            "sample",
            "--checkpoint",
            cc.to_str().unwrap(),
            "--sampler",
            sampler,
            "--steps",
            "3",
            "--n",
            "2",
            "--class",
            "4",
            "--guidance",
            "1.5",
            "--grid",
            &grid,
            "--out",
            o,
        ])
        .unwrap_or_else(|e| panic!("conditional {sampler}: {e}"));
        assert_eq!(image_size(&out.join(&grid)), grid_size(2, 2));
    }

    let learned = train_tiny("solvers-sigma", 2, &["--learn-sigma"]);
    let lc = learned.join("checkpoint.safetensors");
    for sampler in ["dpm++2m", "heun", "ddpm"] {
        let grid = format!("sigma-{sampler}.png");
        run(&[
            "sample",
            "--checkpoint",
            lc.to_str().unwrap(),
            "--sampler",
            sampler,
            "--steps",
            "3",
            "--n",
            "2",
            "--grid",
            &grid,
            "--out",
            o,
        ])
        .unwrap_or_else(|e| panic!("learned sigma {sampler}: {e}"));
        assert_eq!(image_size(&out.join(&grid)), grid_size(2, 2));
    }

    let err = |args: &[&str]| run(args).unwrap_err();
    let bad = err(&["sample", "--checkpoint", c, "--sampler", "euler"]);
    assert!(bad.contains("--sampler") && bad.contains("euler"), "{bad}");
    let bad = err(&[
        "sample",
        "--checkpoint",
        c,
        "--sampler",
        "heun",
        "--spacing",
        "cubic",
    ]);
    assert!(bad.contains("--spacing") && bad.contains("cubic"), "{bad}");
}

/// `--no-clip` / `Chain::with_clipping(false)`: the prediction of `x_0` is used as
/// the network gives it. With a network whose output is large, one DDIM step from
/// pure noise lands on `x_0 = (x - sigma eps) / alpha` exactly, outside [-1, 1];
/// clipped, it stays inside.
#[test]
fn the_prediction_of_x0_is_clipped_unless_told_not_to() {
    let net = UNet::new(&UNetConfig::named("mnist-tiny").unwrap(), &mut rng(61)).unwrap();
    for (name, p) in net.parameters() {
        if name.starts_with("conv_out") {
            p.set_value(normal(&p.shape(), &mut rng(62)).mul_scalar(0.5))
                .unwrap();
        }
    }
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let x = normal(&[2, 1, 28, 28], &mut rng(63));
    let one = Sampler::Ddim { steps: 1, eta: 0.0 };
    let run = |clip: bool| {
        let chain = Chain::new(&net, Objective::Eps, &s, one, Condition::NONE)
            .unwrap()
            .with_clipping(clip);
        run_chain(&chain, x.clone(), &mut rng(64), |_, _| {})
            .unwrap()
            .to_vec()
    };
    let (clipped, raw) = (run(true), run(false));
    assert!(clipped.iter().all(|v| v.abs() <= 1.0));
    assert!(
        raw.iter().any(|v| v.abs() > 1.0),
        "the output is large enough to need clipping"
    );
    // By hand: x_0 = (x - sqrt(1 - ab) eps) / sqrt(ab) at t = 999.
    let (eps, _) = predict(&net, &x, &[999, 999], None, 0.0).unwrap();
    let ab = s.alpha_bar[999];
    let want: Vec<f32> = x
        .to_vec()
        .iter()
        .zip(eps.to_vec())
        .map(|(x, e)| ((*x as f64 - (1.0 - ab).sqrt() * e as f64) / ab.sqrt()) as f32)
        .collect();
    let err = raw
        .iter()
        .zip(&want)
        .map(|(a, b)| ((a - b) / b.abs().max(1.0)).abs())
        .fold(0.0f32, f32::max);
    assert!(
        err < 1e-4,
        "unclipped DDIM-1 is the raw x0 prediction (relative error {err})"
    );
    for (c, r) in clipped.iter().zip(&raw) {
        assert_eq!(*c, r.clamp(-1.0, 1.0));
    }
}
