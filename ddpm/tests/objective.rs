//! Prediction targets: what the network is trained to output (`eps`, `x_0` or
//! `v`) and every consumer of its output honouring that.
//!
//! - The conversions against their closed forms, in f64, from `x_t` built out
//!   of a known `x_0` and `eps`, at the first, a middle and the last step.
//! - The training loss of each objective against a hand computation, and
//!   `L_hybrid`'s bound never training the mean, whatever the objective.
//! - min-SNR-gamma's weights against the formula for each objective, the
//!   weighted loss by hand, and the weighting recorded and kept on resume.
//! - Every sampler's data prediction is the objective's conversion of the raw
//!   output, and the bound's terms use it too.
//! - Through the program: a v-model and an x0-model train, resume only with
//!   their own objective, sample with every sampler and score with `eval --nll`,
//!   and the program's outputs are the library's on the recorded objective.

use autograd::Var;
use ddpm::checkpoint::{load_model, Weights};
use ddpm::config::UNetConfig;
use ddpm::diffusion::{normal, posterior_mean, q_sample, Objective};
use ddpm::likelihood::{dataset_bound, normal_kl, vlb_terms};
use ddpm::loss::{hybrid_loss, loss_at, min_snr_weights, LossOptions};
use ddpm::sample::{sample, Chain, Condition, DpmMethod, History, Request, Sampler, Variance};
use ddpm::schedule::{BetaSchedule, NoiseSchedule};
use ddpm::unet::UNet;
use nn::Module;
use rand::{Rng, SeedableRng};
use tensor::Tensor;

mod common;
use common::{grid_pixels, pixels, printed_nll, run, temp_dir, train_in, train_tiny, MNIST};

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// Values uniform in `[-1, 1]`, like images.
fn image_like(shape: &[usize], seed: u64) -> Tensor {
    let mut r = rng(seed);
    let n = shape.iter().product();
    Tensor::from_vec((0..n).map(|_| r.gen_range(-1.0..1.0)).collect(), shape).unwrap()
}

/// An untrained mnist-tiny whose output layer has weights, so that its output
/// is not identically zero.
fn tiny_net(learn_sigma: bool, seed: u64) -> UNet {
    let mut cfg = UNetConfig::named("mnist-tiny").unwrap();
    if learn_sigma {
        cfg = cfg.with_learned_sigma();
    }
    let net = UNet::new(&cfg, &mut rng(seed)).unwrap();
    for (name, p) in net.parameters() {
        if name.starts_with("conv_out") {
            p.set_value(normal(&p.shape(), &mut rng(seed + 1)).mul_scalar(0.05))
                .unwrap();
        }
    }
    net.set_training(false);
    net
}

/// The network's raw output at `x` and steps `t`, without a tape.
fn raw(net: &UNet, x: &Tensor, t: &[usize]) -> Tensor {
    autograd::no_grad(|| net.forward(&Var::constant(x.clone()), t, None))
        .unwrap()
        .value()
        .clone()
}

/// `alpha_t = sqrt(alpha_bar_t)` and `sigma_t = sqrt(1 - alpha_bar_t)`, in f64.
fn alpha_sigma(s: &NoiseSchedule, t: usize) -> (f64, f64) {
    (s.alpha_bar[t].sqrt(), (1.0 - s.alpha_bar[t]).sqrt())
}

/// Element `j` of image `i` of a `[B, ...]` tensor's values with `per` elements per image.
fn image_of(j: usize, per: usize) -> usize {
    j / per
}

/// Asserts `got` is `want(i, j)` (image `i`, element `j`) within `tol(i)`.
fn assert_close(
    got: &Tensor,
    per: usize,
    want: impl Fn(usize, usize) -> f64,
    tol: impl Fn(usize) -> f64,
    what: &str,
) {
    for (j, &g) in got.to_vec().iter().enumerate() {
        let i = image_of(j, per);
        let w = want(i, j);
        assert!(
            (g as f64 - w).abs() <= tol(i),
            "{what}: image {i}, element {j}: {g} vs {w}"
        );
    }
}

// ---------------------------------------------------------------------------
// The conversions.
// ---------------------------------------------------------------------------

#[test]
fn each_objective_names_itself_and_parses_back() {
    for o in Objective::ALL {
        assert_eq!(Objective::parse(o.name()), Some(o));
    }
    let names: Vec<&str> = Objective::ALL.iter().map(|o| o.name()).collect();
    assert_eq!(names, ["eps", "x0", "v"]);
    assert_eq!(Objective::parse("x_0"), None);
}

/// Each objective's target, and its conversions back to `eps` and `x_0`, at
/// steps 0, 1, T/2 and T-1 of the linear (T = 1000) and cosine (T = 50)
/// schedules. The tolerance of a conversion that divides by `alpha_t` or
/// `sigma_t` grows as that divisor shrinks (f32 rounding of `x_t`, amplified).
#[test]
fn targets_and_conversions_match_their_closed_forms_at_every_step() {
    for (s, name) in [
        (NoiseSchedule::new(BetaSchedule::LINEAR, 1000), "linear"),
        (NoiseSchedule::new(BetaSchedule::COSINE, 50), "cosine"),
    ] {
        let big_t = s.steps();
        let t = [0, 1, big_t / 2, big_t - 1];
        let shape = [4, 1, 3, 3];
        let per = 9;
        let x0 = image_like(&shape, 1);
        let eps = normal(&shape, &mut rng(2));
        let x_t = q_sample(&s, &x0, &t, &eps).unwrap();
        let (x0v, epsv, xtv) = (x0.to_vec(), eps.to_vec(), x_t.to_vec());
        let a_s = |i: usize| alpha_sigma(&s, t[i]);
        // x_t itself: alpha x_0 + sigma eps.
        assert_close(
            &x_t,
            per,
            |i, j| a_s(i).0 * x0v[j] as f64 + a_s(i).1 * epsv[j] as f64,
            |_| 1e-5,
            name,
        );
        for objective in Objective::ALL {
            let what = format!("{name}, {}", objective.name());
            let target = objective.target(&s, &x0, &t, &eps).unwrap();
            let want_target = |i: usize, j: usize| {
                let (a, sg) = a_s(i);
                match objective {
                    Objective::Eps => epsv[j] as f64,
                    Objective::X0 => x0v[j] as f64,
                    Objective::V => a * epsv[j] as f64 - sg * x0v[j] as f64,
                }
            };
            assert_close(&target, per, want_target, |_| 1e-6, &format!("{what}: target"));
            // Round trips: the target at x_t gives back the eps and x_0 that made x_t.
            let divisor = |i: usize, of_x0: bool| {
                let (a, sg) = a_s(i);
                match (objective, of_x0) {
                    (Objective::Eps, true) => a,
                    (Objective::X0, false) => sg,
                    _ => 1.0,
                }
            };
            let back_eps = objective.eps(&s, &x_t, &t, &target).unwrap();
            let back_x0 = objective.x0(&s, &x_t, &t, &target).unwrap();
            let tol = |i: usize, of_x0: bool| 3e-6 * 8.0 / divisor(i, of_x0);
            assert_close(
                &back_eps,
                per,
                |_, j| epsv[j] as f64,
                |i| tol(i, false),
                &format!("{what}: eps"),
            );
            assert_close(
                &back_x0,
                per,
                |_, j| x0v[j] as f64,
                |i| tol(i, true),
                &format!("{what}: x0"),
            );
            // And from an arbitrary output, the closed forms on x_t (not a round trip).
            let out = normal(&shape, &mut rng(3));
            let outv = out.to_vec();
            let conv_eps = objective.eps(&s, &x_t, &t, &out).unwrap();
            let conv_x0 = objective.x0(&s, &x_t, &t, &out).unwrap();
            let (want_eps, want_x0) = (
                |i: usize, j: usize| {
                    let (a, sg) = a_s(i);
                    let (x, o) = (xtv[j] as f64, outv[j] as f64);
                    match objective {
                        Objective::Eps => o,
                        Objective::X0 => (x - a * o) / sg,
                        Objective::V => sg * x + a * o,
                    }
                },
                |i: usize, j: usize| {
                    let (a, sg) = a_s(i);
                    let (x, o) = (xtv[j] as f64, outv[j] as f64);
                    match objective {
                        Objective::Eps => (x - sg * o) / a,
                        Objective::X0 => o,
                        Objective::V => a * x - sg * o,
                    }
                },
            );
            let rel = |i: usize, of_x0: bool, w: f64| 1e-6 * (1.0 + w.abs()) * 8.0 / divisor(i, of_x0);
            for (j, (&e, &x)) in conv_eps.to_vec().iter().zip(&conv_x0.to_vec()).enumerate() {
                let i = image_of(j, per);
                let (we, wx) = (want_eps(i, j), want_x0(i, j));
                assert!(
                    (e as f64 - we).abs() <= rel(i, false, we),
                    "{what}: eps of an output, {j}: {e} vs {we}"
                );
                assert!(
                    (x as f64 - wx).abs() <= rel(i, true, wx),
                    "{what}: x0 of an output, {j}: {x} vs {wx}"
                );
            }
        }
    }
}

#[test]
fn conversions_refuse_steps_outside_the_schedule() {
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 10);
    let x = normal(&[2, 1, 2, 2], &mut rng(4));
    for objective in Objective::ALL {
        assert!(objective.x0(&s, &x, &[0, 10], &x).is_err(), "{objective:?}");
        assert!(objective.eps(&s, &x, &[0], &x).is_err(), "{objective:?}");
    }
    assert!(Objective::V.target(&s, &x, &[3, 10], &x).is_err());
}

// ---------------------------------------------------------------------------
// The loss.
// ---------------------------------------------------------------------------

/// `L_simple` for each objective, from the network's output and the target's
/// closed form, in f64: the mean squared error over the batch.
#[test]
fn the_loss_of_each_objective_is_the_mse_against_its_target() {
    let net = tiny_net(false, 10);
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let shape = [3, 1, 28, 28];
    let per = 28 * 28;
    let x0 = image_like(&shape, 11);
    let eps = normal(&shape, &mut rng(12));
    let t = [0, 400, 999];
    let x_t = q_sample(&s, &x0, &t, &eps).unwrap();
    let out = raw(&net, &x_t, &t).to_vec();
    let (x0v, epsv) = (x0.to_vec(), eps.to_vec());
    for objective in Objective::ALL {
        let got = autograd::no_grad(|| loss_at(&net, &s, LossOptions::simple(objective), &x0, &t, &eps, None))
            .unwrap()
            .value()
            .item()
            .unwrap() as f64;
        let mut sum = 0.0;
        for j in 0..out.len() {
            let (a, sg) = alpha_sigma(&s, t[image_of(j, per)]);
            let target = match objective {
                Objective::Eps => epsv[j] as f64,
                Objective::X0 => x0v[j] as f64,
                Objective::V => a * epsv[j] as f64 - sg * x0v[j] as f64,
            };
            sum += (out[j] as f64 - target).powi(2);
        }
        let want = sum / out.len() as f64;
        assert!((got - want).abs() < 1e-5 * want, "{objective:?}: {got} vs {want}");
    }
}

/// With learned variances the bound still trains only the variance: the
/// prediction's gradient is `L_simple`'s alone, `2 (pred - target) / n`, for
/// every objective, and the bound's mean comes through the conversion (a wrong
/// conversion changes the bound's value).
#[test]
fn the_hybrid_loss_trains_the_prediction_only_through_l_simple_for_every_objective() {
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let shape = [2, 1, 3, 3];
    let x0 = image_like(&shape, 15);
    let eps = normal(&shape, &mut rng(16));
    let t = [4, 600];
    let x_t = q_sample(&s, &x0, &t, &eps).unwrap();
    let mut bounds = Vec::new();
    for objective in Objective::ALL {
        let pred = Var::leaf(normal(&shape, &mut rng(17)));
        let o = Var::leaf(image_like(&shape, 18).mul_scalar(0.5));
        let loss = LossOptions::simple(objective);
        let total = hybrid_loss(&s, loss, &x0, &x_t, &t, &eps, (&pred, &o)).unwrap();
        total.backward().unwrap();
        let target = objective.target(&s, &x0, &t, &eps).unwrap();
        let n = target.numel() as f32;
        let want = pred.value().sub(&target).unwrap().mul_scalar(2.0 / n).to_vec();
        let got = pred.grad().unwrap().to_vec();
        assert!(
            got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{objective:?}: {got:?} vs {want:?}"
        );
        assert!(o.grad().unwrap().to_vec().iter().any(|&g| g != 0.0));
        let simple = pred
            .value()
            .sub(&target)
            .unwrap()
            .square()
            .sum_all()
            .item()
            .unwrap()
            / target.numel() as f32;
        bounds.push(total.value().item().unwrap() - simple);
    }
    // One output read as eps, x0 or v means three different model means.
    assert!(
        (bounds[0] - bounds[1]).abs() > 1e-6 && (bounds[1] - bounds[2]).abs() > 1e-6,
        "{bounds:?}"
    );
}

// ---------------------------------------------------------------------------
// min-SNR-gamma weighting.
// ---------------------------------------------------------------------------

/// `SNR_t = alpha_bar_t / (1 - alpha_bar_t)`, in f64.
fn snr(s: &NoiseSchedule, t: usize) -> f64 {
    s.alpha_bar[t] / (1.0 - s.alpha_bar[t])
}

/// The weights against the paper's formula on each objective's error, and the
/// facts it stands for: each objective's weighted error is the same
/// `min(SNR, gamma) |x_0 error|^2`, and every weight is at most 1 where the
/// weighting clips (eps) or nowhere above `gamma` (x0).
#[test]
fn min_snr_weights_follow_the_formula_for_each_objective() {
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let t = [0, 10, 50, 100, 300, 500, 999];
    let gamma = 5.0;
    for objective in Objective::ALL {
        let got = min_snr_weights(&s, objective, gamma, &t);
        for (&w, &step) in got.iter().zip(&t) {
            let r = snr(&s, step);
            let want = match objective {
                Objective::Eps => r.min(gamma) / r,
                Objective::X0 => r.min(gamma),
                Objective::V => r.min(gamma) / (r + 1.0),
            };
            assert!(
                (w - want).abs() <= 1e-12 * want.max(1.0),
                "{objective:?}, t = {step}: {w} vs {want}"
            );
            // |eps err|^2 = SNR |x0 err|^2 and |v err|^2 = (SNR + 1) |x0 err|^2: the
            // weight times that factor is min(SNR, gamma) for every objective.
            let factor = match objective {
                Objective::Eps => r,
                Objective::X0 => 1.0,
                Objective::V => r + 1.0,
            };
            assert!((w * factor - r.min(gamma)).abs() < 1e-9 * r.min(gamma).max(1.0));
        }
    }
    // The low-noise end is where the clipping bites: at t = 0 the SNR is ~1e4.
    let eps = min_snr_weights(&s, Objective::Eps, gamma, &[0, 999]);
    assert!(eps[0] < 1e-3 && (eps[1] - 1.0).abs() < 1e-12, "{eps:?}");
}

/// The weighted `L_simple` by hand: the mean over images of each image's
/// weight times its mean squared error.
#[test]
fn the_min_snr_loss_weights_each_image_by_hand() {
    let net = tiny_net(false, 40);
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let shape = [3, 1, 28, 28];
    let per = 28 * 28;
    let x0 = image_like(&shape, 41);
    let eps = normal(&shape, &mut rng(42));
    let t = [2, 300, 900];
    let x_t = q_sample(&s, &x0, &t, &eps).unwrap();
    let out = raw(&net, &x_t, &t).to_vec();
    let (x0v, epsv) = (x0.to_vec(), eps.to_vec());
    for objective in Objective::ALL {
        let loss = LossOptions {
            objective,
            min_snr: Some(5.0),
        };
        let got = autograd::no_grad(|| loss_at(&net, &s, loss, &x0, &t, &eps, None))
            .unwrap()
            .value()
            .item()
            .unwrap() as f64;
        let mut want = 0.0;
        for (i, &step) in t.iter().enumerate() {
            let (a, sg) = alpha_sigma(&s, step);
            let r = snr(&s, step);
            let w = match objective {
                Objective::Eps => r.min(5.0) / r,
                Objective::X0 => r.min(5.0),
                Objective::V => r.min(5.0) / (r + 1.0),
            };
            let mse: f64 = (i * per..(i + 1) * per)
                .map(|j| {
                    let target = match objective {
                        Objective::Eps => epsv[j] as f64,
                        Objective::X0 => x0v[j] as f64,
                        Objective::V => a * epsv[j] as f64 - sg * x0v[j] as f64,
                    };
                    (out[j] as f64 - target).powi(2)
                })
                .sum::<f64>()
                / per as f64;
            want += w * mse / t.len() as f64;
        }
        assert!((got - want).abs() < 1e-5 * want, "{objective:?}: {got} vs {want}");
        let unweighted =
            autograd::no_grad(|| loss_at(&net, &s, LossOptions::simple(objective), &x0, &t, &eps, None))
                .unwrap()
                .value()
                .item()
                .unwrap() as f64;
        assert!(
            (got - unweighted).abs() > 1e-3 * unweighted,
            "{objective:?}: the weights change nothing"
        );
    }
}

/// With learned variances the weighting scales `L_simple` only: the
/// prediction's gradient is `2 w_i (pred - target) / n` on image `i`.
#[test]
fn the_weighted_hybrid_loss_scales_each_images_gradient_by_its_weight() {
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let shape = [2, 1, 3, 3];
    let x0 = image_like(&shape, 45);
    let eps = normal(&shape, &mut rng(46));
    let t = [3, 700];
    let x_t = q_sample(&s, &x0, &t, &eps).unwrap();
    for objective in Objective::ALL {
        let pred = Var::leaf(normal(&shape, &mut rng(47)));
        let o = Var::leaf(image_like(&shape, 48).mul_scalar(0.5));
        let loss = LossOptions {
            objective,
            min_snr: Some(5.0),
        };
        hybrid_loss(&s, loss, &x0, &x_t, &t, &eps, (&pred, &o))
            .unwrap()
            .backward()
            .unwrap();
        let target = objective.target(&s, &x0, &t, &eps).unwrap().to_vec();
        let w = min_snr_weights(&s, objective, 5.0, &t);
        let n = target.len() as f64;
        let (p, got) = (pred.value().to_vec(), pred.grad().unwrap().to_vec());
        for j in 0..p.len() {
            let want = 2.0 * w[j / 9] * (p[j] as f64 - target[j] as f64) / n;
            assert!(
                (got[j] as f64 - want).abs() < 1e-6,
                "{objective:?}, {j}: {} vs {want}",
                got[j]
            );
        }
    }
}

#[test]
fn min_snr_is_recorded_and_a_resume_that_changes_it_is_refused() {
    let out = train_tiny("min-snr", 1, &["--min-snr", "5", "--objective", "v"]);
    let meta = nn::safetensors::load(&out.join("checkpoint.safetensors"))
        .unwrap()
        .metadata()
        .clone();
    assert_eq!(meta["min_snr"], "5");
    let v = ["--objective", "v"];
    let err = train_in(&out, 2, &[&["--resume"], &v[..]].concat()).unwrap_err();
    assert!(
        err.contains("min_snr: the checkpoint has 5, the flags ask for none"),
        "{err}"
    );
    let err = train_in(&out, 2, &[&["--resume", "--min-snr", "4"], &v[..]].concat()).unwrap_err();
    assert!(
        err.contains("min_snr: the checkpoint has 5, the flags ask for 4"),
        "{err}"
    );
    train_in(&out, 2, &[&["--resume", "--min-snr", "5"], &v[..]].concat()).unwrap();
    // A checkpoint from before the key resumes as unweighted; a corrupt value is refused.
    let plain = train_tiny("min-snr-old", 1, &[]);
    let ckpt = plain.join("checkpoint.safetensors");
    let rewrite = |value: Option<&str>| {
        let file = nn::safetensors::load(&ckpt).unwrap();
        let mut meta = file.metadata().clone();
        assert!(meta.remove("min_snr").is_some());
        if let Some(v) = value {
            meta.insert("min_snr".into(), v.into());
        }
        nn::safetensors::save(&ckpt, file.tensors().iter(), &meta).unwrap();
    };
    rewrite(None);
    train_in(&plain, 2, &["--resume"]).unwrap();
    rewrite(Some("-1"));
    let err = train_in(&plain, 3, &["--resume"]).unwrap_err();
    assert!(
        err.contains("min_snr \"-1\" is not \"none\" or a positive number"),
        "{err}"
    );
    assert!(run(&["train", "--min-snr", "0"])
        .unwrap_err()
        .contains("--min-snr"));
}

// ---------------------------------------------------------------------------
// The samplers and the bound.
// ---------------------------------------------------------------------------

fn every_sampler(steps: usize) -> Vec<Sampler> {
    let dpm = |method| Sampler::DpmSolver { steps, method };
    vec![
        Sampler::Ancestral {
            steps,
            variance: Variance::Beta,
        },
        Sampler::Ddim { steps, eta: 0.0 },
        dpm(DpmMethod::Multistep),
        dpm(DpmMethod::Singlestep),
        dpm(DpmMethod::MultistepSde),
        Sampler::Heun { steps },
    ]
}

/// The first step of every sampler predicts `x_0` as the objective's closed
/// form of the network's raw output, clipped; so the three objectives give
/// three different chains from one network.
#[test]
fn every_sampler_reads_the_output_through_the_objective() {
    let net = tiny_net(false, 20);
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let x = normal(&[2, 1, 28, 28], &mut rng(21));
    let xv = x.to_vec();
    let per = 28 * 28;
    for sampler in every_sampler(3) {
        let mut firsts = Vec::new();
        for objective in Objective::ALL {
            let chain = Chain::new(&net, objective, &s, sampler, Condition::NONE).unwrap();
            let i = chain.len() - 1;
            let t = chain.diffusion_step(i);
            let out = raw(&net, &x, &[t, t]).to_vec();
            let (a, sg) = alpha_sigma(&s, t);
            let mut noise = |shape: &[usize]| normal(shape, &mut rng(22));
            let step = chain.step(i, &x, &mut History::default(), &mut noise).unwrap();
            let want = |_: usize, j: usize| {
                let (xj, o) = (xv[j] as f64, out[j] as f64);
                let x0 = match objective {
                    Objective::Eps => (xj - sg * o) / a,
                    Objective::X0 => o,
                    Objective::V => a * xj - sg * o,
                };
                x0.clamp(-1.0, 1.0)
            };
            assert_close(
                &step.x0,
                per,
                want,
                |_| 1e-4,
                &format!("{sampler:?}, {objective:?}"),
            );
            firsts.push(step.x.to_vec());
        }
        assert!(firsts[0] != firsts[1] && firsts[1] != firsts[2], "{sampler:?}");
    }
}

/// `vlb_terms` of a v-model: step 1's term recomputed by hand, with the model's
/// mean from `x_0 = alpha x_1 - sigma v` (the noise is drawn one tensor per
/// step, in order).
#[test]
fn the_bound_reads_the_output_through_the_objective() {
    let net = tiny_net(false, 30);
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 4);
    let x0 = image_like(&[1, 1, 28, 28], 31);
    let (_, terms) = vlb_terms(&net, Objective::V, &s, Variance::BetaTilde, &x0, &mut rng(32)).unwrap();
    let (_, eps_terms) = vlb_terms(&net, Objective::Eps, &s, Variance::BetaTilde, &x0, &mut rng(32)).unwrap();
    let mut r = rng(32);
    let _step0_noise = normal(x0.shape(), &mut r);
    let x_1 = q_sample(&s, &x0, &[1], &normal(x0.shape(), &mut r)).unwrap();
    let out = raw(&net, &x_1, &[1]);
    let (a, sg) = alpha_sigma(&s, 1);
    let x0_hat = x_1
        .mul_scalar(a as f32)
        .sub(&out.mul_scalar(sg as f32))
        .unwrap()
        .clamp(-1.0, 1.0)
        .unwrap();
    let mu = posterior_mean(&s, &x0_hat, &x_1, &[1]).unwrap().to_vec();
    let mu_q = posterior_mean(&s, &x0, &x_1, &[1]).unwrap().to_vec();
    let lv = s.log_beta_tilde_clipped[1];
    let nats: f64 = mu_q
        .iter()
        .zip(&mu)
        .map(|(&q, &m)| normal_kl(q as f64, lv, m as f64, lv))
        .sum();
    let want = nats / mu.len() as f64 / std::f64::consts::LN_2;
    assert!(
        (terms[1] - want).abs() < 1e-3 * want.max(1e-3),
        "{} vs {want}",
        terms[1]
    );
    assert!(
        (terms[1] - eps_terms[1]).abs() > 1e-3 * want,
        "the objective changes nothing"
    );
}

// ---------------------------------------------------------------------------
// Through the program.
// ---------------------------------------------------------------------------

/// A run of `objective` on mnist-tiny, T = 50 (so that `eval --nll` is quick).
fn objective_run(name: &str, objective: &str) -> common::TempDir {
    train_tiny(name, 2, &["--objective", objective, "--diffusion-steps", "50"])
}

#[test]
fn v_and_x0_models_train_sample_with_every_sampler_and_score_their_bound() {
    for objective in [Objective::V, Objective::X0] {
        let out = objective_run(&format!("objective-{}", objective.name()), objective.name());
        let ckpt = out.join("checkpoint.safetensors");
        let c = ckpt.to_str().unwrap();
        for file in ["checkpoint.safetensors", "ema.safetensors"] {
            let meta = nn::safetensors::load(&out.join(file)).unwrap().metadata().clone();
            assert_eq!(meta["objective"], objective.name(), "{file}");
        }
        for sampler in ["ddpm", "ddim", "dpm++2m", "heun"] {
            run(&[
                "sample",
                "--checkpoint",
                c,
                "--sampler",
                sampler,
                "--steps",
                "3",
                "--n",
                "2",
                "--grid",
                &format!("{sampler}.png"),
            ])
            .unwrap();
            let grid = image::open(out.join(format!("{sampler}.png"))).unwrap();
            assert_eq!((grid.width(), grid.height()), (2 + 2 * 30, 2 + 30), "{sampler}");
        }
        run(&[
            "eval",
            "--checkpoint",
            c,
            "--nll",
            "--nll-images",
            "2",
            "--mnist",
            MNIST,
        ])
        .unwrap();
        run(&[
            "figure",
            "x0-chain",
            "--checkpoint",
            c,
            "--steps",
            "3",
            "--n",
            "1",
            "--columns",
            "2",
        ])
        .unwrap();
        assert!(out.join("x0-chain.png").exists());
    }
}

/// The program's samples and bound are the library's on the recorded
/// objective, and not those of the same weights read as eps.
#[test]
fn sample_and_eval_nll_use_the_recorded_objective() {
    let out = objective_run("objective-use", "v");
    let ema = out.join("ema.safetensors");
    let e = ema.to_str().unwrap();
    let (model, contract) = load_model(&ema, None, Weights::Ema).unwrap();
    assert_eq!(contract.objective, Objective::V);
    let schedule = contract.noise_schedule();
    let scratch = temp_dir("objective-ref");
    run(&[
        "sample",
        "--checkpoint",
        e,
        "--sampler",
        "ddim",
        "--steps",
        "2",
        "--n",
        "4",
        "--seed",
        "3",
    ])
    .unwrap();
    let draw = |objective| {
        let request = Request {
            sampler: Sampler::Ddim { steps: 2, eta: 0.0 },
            spacing: None,
            n: 4,
            batch: 64,
            labels: None,
            guidance: 0.0,
            clip: true,
        };
        let images = sample(&model, objective, &schedule, request, &mut rng(3), |_, _| {})
            .unwrap()
            .images;
        grid_pixels(&images, 2, &scratch, &format!("{}.png", objective.name()))
    };
    let got = pixels(&out.join("samples.png"));
    assert_eq!(
        got,
        draw(Objective::V),
        "sample read the output as another objective"
    );
    assert_ne!(got, draw(Objective::Eps));

    let printed = printed_nll(e);
    let bound = |objective| {
        let x0 = ddpm::data::load_mnist(MNIST, ddpm::data::Split::Test)
            .unwrap()
            .batch(&[0, 1])
            .unwrap()
            .0;
        let b = dataset_bound(
            &model,
            objective,
            &schedule,
            Variance::Beta,
            &[x0],
            &mut rng(0),
            |_, _| {},
        )
        .unwrap();
        format!("{:.3}", b.total())
    };
    assert_eq!(printed, bound(Objective::V));
    assert_ne!(printed, bound(Objective::Eps));
}

#[test]
fn resuming_with_another_objective_is_refused_naming_both_values() {
    let out = train_tiny("objective-resume", 1, &["--objective", "v"]);
    let err = train_in(&out, 2, &["--resume", "--objective", "x0"]).unwrap_err();
    assert!(
        err.contains("objective: the checkpoint has v, the flags ask for x0"),
        "{err}"
    );
    // Without the flag the run asks for eps, which the checkpoint contradicts too.
    let err = train_in(&out, 2, &["--resume"]).unwrap_err();
    assert!(
        err.contains("objective: the checkpoint has v, the flags ask for eps"),
        "{err}"
    );
    train_in(&out, 2, &["--resume", "--objective", "v"]).unwrap();
    // A bad value is a usage error naming the flag and the choices.
    let bad = run(&["train", "--objective", "score"]).unwrap_err();
    assert!(bad.contains("--objective") && bad.contains("x0"), "{bad}");
}

#[test]
fn a_file_with_an_unknown_objective_is_refused_naming_the_field() {
    let out = train_tiny("objective-bad", 1, &[]);
    let ema = out.join("ema.safetensors");
    let file = nn::safetensors::load(&ema).unwrap();
    let mut meta = file.metadata().clone();
    meta.insert("objective".into(), "score".into());
    nn::safetensors::save(&ema, file.tensors().iter(), &meta).unwrap();
    let err = run(&[
        "sample",
        "--checkpoint",
        ema.to_str().unwrap(),
        "--steps",
        "2",
        "--n",
        "1",
    ])
    .unwrap_err();
    assert!(err.contains("objective \"score\" is not eps, x0 or v"), "{err}");
}
