//! The variational bound's pieces against independent references: the decoder's
//! probabilities sum to 1, each Gaussian KL and the prior term match Monte-Carlo
//! estimates, and the bound of a small model is finite and made of positive terms.

use ddpm::config::UNetConfig;
use ddpm::diffusion::Objective;
use ddpm::likelihood::{
    approx_std_normal_cdf, discretized_gaussian_log_likelihood, normal_kl, prior_bpd, total_bpd, vlb_terms,
};
use ddpm::sample::Variance;
use ddpm::schedule::{BetaSchedule, NoiseSchedule};
use ddpm::unet::UNet;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use tensor::Tensor;

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// A Monte-Carlo estimate of `KL(N(m1, s1^2) || N(m2, s2^2))` with its standard error.
fn kl_monte_carlo(m1: f64, s1: f64, m2: f64, s2: f64, n: usize, seed: u64) -> (f64, f64) {
    let q = Normal::new(m1, s1).unwrap();
    let log_pdf = |x: f64, m: f64, s: f64| {
        -0.5 * ((x - m) / s).powi(2) - s.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
    };
    let mut r = rng(seed);
    let draws: Vec<f64> = (0..n)
        .map(|_| {
            let x = q.sample(&mut r);
            log_pdf(x, m1, s1) - log_pdf(x, m2, s2)
        })
        .collect();
    let mean = draws.iter().sum::<f64>() / n as f64;
    let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n as f64;
    (mean, (var / n as f64).sqrt())
}

#[test]
fn the_decoder_probabilities_sum_to_one() {
    for mean in [-1.2, -1.0, -0.3, 0.0, 0.5, 1.0, 1.3] {
        for log_scale in [-5.0, -3.0, -1.0, 0.5] {
            let total: f64 = (0..256)
                .map(|k| discretized_gaussian_log_likelihood(k as f64 / 127.5 - 1.0, mean, log_scale).exp())
                .sum();
            assert!(
                (total - 1.0).abs() < 1e-8,
                "mean {mean}, log scale {log_scale}: {total}"
            );
        }
    }
    // A narrow Gaussian centred on a pixel value puts almost all its mass there.
    let x = 100.0 / 127.5 - 1.0;
    assert!(discretized_gaussian_log_likelihood(x, x, -8.0) > -1e-6);
    assert!(
        (approx_std_normal_cdf(0.0) - 0.5).abs() < 1e-12
            && (approx_std_normal_cdf(1.0) - 0.8413).abs() < 5e-4
    );
}

#[test]
fn gaussian_kl_matches_a_monte_carlo_estimate() {
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    // Includes an L_{t-1}-shaped case: the true posterior vs the model at t = 500.
    let t = 500;
    let cases = [
        (0.3, 1.0, -0.2, 1.5),
        (1.0, 0.2, 0.0, 1.0),
        (0.1, s.beta_tilde[t].sqrt(), 0.13, s.beta[t].sqrt()),
    ];
    for (i, &(m1, s1, m2, s2)) in cases.iter().enumerate() {
        let closed = normal_kl(m1, 2.0 * f64::ln(s1), m2, 2.0 * f64::ln(s2));
        let (mc, se) = kl_monte_carlo(m1, s1, m2, s2, 400_000, i as u64);
        assert!(
            (closed - mc).abs() < 5.0 * se + 1e-4,
            "case {i}: closed {closed}, Monte Carlo {mc} +- {se}"
        );
    }
    assert!(normal_kl(0.4, -1.0, 0.4, -1.0).abs() < 1e-15);
}

#[test]
fn the_prior_term_matches_a_monte_carlo_estimate() {
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let x0 = Tensor::from_vec(vec![-1.0, 0.0, 0.7], &[1, 1, 1, 3]).unwrap();
    let t = 999;
    let sd = (1.0 - s.alpha_bar[t]).sqrt();
    let mut mc = 0.0;
    for (i, &v) in [-1.0f64, 0.0, 0.7].iter().enumerate() {
        mc += kl_monte_carlo(s.sqrt_alpha_bar[t] * v, sd, 0.0, 1.0, 200_000, 10 + i as u64).0;
    }
    let mc_bits = mc / 3.0 / std::f64::consts::LN_2;
    let closed = prior_bpd(&s, &x0);
    // L_T is tiny for the linear schedule (alpha_bar_T ~ 4e-5): ~1e-5 bits/dim.
    assert!(closed > 0.0 && closed < 1e-4, "{closed}");
    assert!(
        (closed - mc_bits).abs() < 2e-5,
        "closed {closed}, Monte Carlo {mc_bits}"
    );
}

#[test]
fn the_bound_of_a_small_model_is_finite_and_its_terms_positive() {
    let net = UNet::new(&UNetConfig::named("mnist-tiny").unwrap(), &mut rng(1)).unwrap();
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 8);
    let pixels: Vec<f32> = (0..2 * 784)
        .map(|i| ((i * 37) % 256) as f32 / 127.5 - 1.0)
        .collect();
    let x0 = Tensor::from_vec(pixels, &[2, 1, 28, 28]).unwrap();
    for variance in [Variance::Beta, Variance::BetaTilde] {
        let (prior, terms) = vlb_terms(&net, Objective::Eps, &s, variance, &x0, &mut rng(2)).unwrap();
        assert_eq!(terms.len(), 8);
        assert!(terms.iter().all(|t| t.is_finite() && *t >= 0.0), "{terms:?}");
        assert!(prior > 0.0 && total_bpd(prior, &terms).is_finite());
    }
}
