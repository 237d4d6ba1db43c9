//! The 2-D Swiss-roll toy: the data generator's geometry, the schedule against its
//! formula, the reverse mean against its epsilon form, and a short training run
//! that must learn the roll.

use std::f64::consts::PI;

use autograd::Var;
use ddpm::toy::{
    drift, gaussian, loss_at, mean_nearest_distance, reverse_chain, roll_scale, swiss_roll, to_tensor,
    toy_schedule, train, Point, ToyModel, ToyOptions, ROLL_NOISE,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

#[test]
fn noise_free_roll_points_have_angle_equal_to_scaled_radius() {
    // p = (s cos s, s sin s) / c: the radius is s / c and the angle is s (mod 2 pi).
    let c = roll_scale();
    let points = swiss_roll(500, 0.0, &mut StdRng::seed_from_u64(1));
    for p in &points {
        let (x, y) = (p[0] as f64, p[1] as f64);
        let s = x.hypot(y) * c;
        assert!((1.5 * PI - 1e-4..=4.5 * PI + 1e-4).contains(&s), "s = {s}");
        let gap = (y.atan2(x) - s).rem_euclid(2.0 * PI);
        assert!(gap.min(2.0 * PI - gap) < 1e-4, "angle off by {gap} at s = {s}");
    }
}

#[test]
fn the_roll_has_unit_mean_square_per_coordinate() {
    // E|p|^2 = E[s^2] / c^2 = 2 by the choice of c; 20,000 draws give it to ~1%.
    let points = swiss_roll(20_000, 0.0, &mut StdRng::seed_from_u64(2));
    let ms = points
        .iter()
        .map(|p| (p[0] * p[0] + p[1] * p[1]) as f64)
        .sum::<f64>()
        / 20_000.0;
    assert!((ms - 2.0).abs() < 0.05, "mean |p|^2 = {ms}");
}

#[test]
fn the_schedule_follows_the_cubed_cosine_formula() {
    let t_max = 100;
    let s = toy_schedule(t_max);
    let f = |t: usize| {
        let u = (t as f64 / t_max as f64).powi(3);
        ((u + 0.008) / 1.008 * PI / 2.0).cos().powi(2)
    };
    // alpha_bar at the paper's t (index t - 1) is f(t) / f(0), up to the last step's clip.
    for t in 1..t_max {
        let want = f(t) / f(0);
        assert!(
            (s.alpha_bar[t - 1] - want).abs() < 1e-12 * want.max(1e-3),
            "t = {t}"
        );
    }
    // The noise levels the documentation quotes for the figure's columns.
    let noise = |t: usize| (1.0 - s.alpha_bar[t - 1]).sqrt();
    for (t, want) in [(25, 0.04), (50, 0.21), (75, 0.62)] {
        assert!((noise(t) - want).abs() < 0.01, "noise at t = {t}: {}", noise(t));
    }
    // sqrt(alpha_bar_T) < 0.3%: x_T is noise.
    assert!(
        s.alpha_bar[t_max - 1] < 1e-5,
        "alpha_bar_T = {}",
        s.alpha_bar[t_max - 1]
    );
}

#[test]
fn with_zero_noise_prediction_the_reverse_mean_is_x_over_sqrt_alpha() {
    // mu = coef_x0 x0_hat + coef_xt x with x0_hat = x / sqrt(alpha_bar) when eps = 0;
    // coef_x0 / sqrt(alpha_bar) + coef_xt = (beta + alpha - alpha alpha_bar_prev) /
    // ((1 - alpha_bar) sqrt(alpha)) = 1 / sqrt(alpha): the epsilon form of the mean.
    let schedule = toy_schedule(100);
    let model = ToyModel::new(16, 2, &mut StdRng::seed_from_u64(3)); // zero output layer
    let points: Vec<Point> = vec![[0.5, -1.0], [2.0, 0.25], [-0.1, 0.0]];
    for t in [0, 10, 50, 98, 99] {
        let d = drift(&model, &schedule, &points, t).unwrap();
        let k = 1.0 / schedule.alpha[t].sqrt() - 1.0;
        for (p, d) in points.iter().zip(&d) {
            for i in 0..2 {
                let want = k * p[i] as f64;
                assert!(
                    (d[i] as f64 - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "t = {t}: {d:?}"
                );
            }
        }
    }
}

#[test]
fn the_model_rejects_mismatched_inputs_with_a_message() {
    let model = ToyModel::new(8, 1, &mut StdRng::seed_from_u64(4));
    let x = Var::constant(to_tensor(&[[0.0, 0.0], [1.0, 1.0]]));
    let err = model.forward(&x, &[0]).expect_err("two points, one step");
    assert!(err.to_string().contains("[B, 2]"), "{err}");
}

#[test]
fn nearest_distances_match_a_hand_computation() {
    // (0, 0) is in the reference; (3, 4) is sqrt(18) from (0, 1) and 5 from (0, 0).
    let d = mean_nearest_distance(&[[0.0, 0.0], [3.0, 4.0]], &[[0.0, 1.0], [0.0, 0.0]]);
    assert!((d - 18f64.sqrt() / 2.0).abs() < 1e-6, "{d}");
}

/// `L_simple` of a fixed held-out batch, and `mean(eps^2)`: the loss of a model
/// that predicts zero, as the untrained one does.
fn held_out_loss(model: &ToyModel) -> (f64, f64) {
    let mut rng = StdRng::seed_from_u64(99);
    let schedule = toy_schedule(100);
    let x0 = to_tensor(&swiss_roll(2048, ROLL_NOISE, &mut rng));
    let t: Vec<usize> = (0..2048).map(|i| i % 100).collect();
    let eps = gaussian(2048, &mut rng);
    let zero = eps
        .iter()
        .map(|e| (e[0] * e[0] + e[1] * e[1]) as f64)
        .sum::<f64>()
        / 4096.0;
    let loss = loss_at(model, &schedule, &x0, &t, &to_tensor(&eps)).unwrap();
    (loss.value().item().unwrap() as f64, zero)
}

#[test]
fn a_short_training_run_lowers_the_held_out_loss() {
    let untrained = ToyModel::new(128, 3, &mut StdRng::seed_from_u64(5));
    let (before, zero) = held_out_loss(&untrained);
    assert!(
        (before - zero).abs() < 1e-5,
        "the untrained model predicts zero noise"
    );
    let opts = ToyOptions {
        steps: 300,
        ..ToyOptions::default()
    };
    let trained = train(&opts, |_| {}).unwrap();
    let (after, _) = held_out_loss(&trained.model);
    assert!(after < 0.85 * before, "held-out loss {before:.4} -> {after:.4}");
}

#[test]
fn a_trained_model_samples_the_roll_and_drifts_towards_it() {
    let opts = ToyOptions {
        steps: 1500,
        ..ToyOptions::default()
    };
    let trained = train(&opts, |_| {}).unwrap();
    let mut rng = StdRng::seed_from_u64(6);
    let chain = reverse_chain(&trained.model, &trained.schedule, 500, &mut rng).unwrap();
    let reference = swiss_roll(4000, ROLL_NOISE, &mut rng);
    let samples = mean_nearest_distance(&chain[0], &reference);
    let prior = mean_nearest_distance(&chain[100], &reference);
    let data = mean_nearest_distance(&swiss_roll(500, ROLL_NOISE, &mut rng), &reference);
    assert!(
        samples < 3.0 * data && samples < prior / 5.0,
        "nearest-data distance: samples {samples:.4}, data {data:.4}, prior {prior:.4}"
    );
    // Outside the roll (radius <= 2.04), at t = T/2 (noise 0.21), every reverse
    // step must move points inwards.
    let ring: Vec<Point> = (0..16)
        .map(|k| {
            let a = 2.0 * PI * k as f64 / 16.0;
            [(2.6 * a.cos()) as f32, (2.6 * a.sin()) as f32]
        })
        .collect();
    let d = drift(&trained.model, &trained.schedule, &ring, 49).unwrap();
    for (p, d) in ring.iter().zip(&d) {
        let radial = (p[0] * d[0] + p[1] * d[1]) / 2.6;
        assert!(radial < 0.0, "drift {d:?} at {p:?} points outwards");
    }
}
