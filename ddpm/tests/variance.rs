//! Learned variances against independent references: the interpolation's end
//! points, the autograd KL and decoder against the scalar formulas of the
//! likelihood module, the loss's scale against a per-image sum, its gradient
//! against finite differences, the stopped gradient on the mean, and a tiny
//! learned-variance model that trains, samples and reloads through the program.

use autograd::gradcheck::{check_gradients, Tolerance};
use autograd::Var;
use ddpm::config::UNetConfig;
use ddpm::diffusion::{normal, posterior_mean, predict_x0, q_sample, Objective};
use ddpm::likelihood::{discretized_gaussian_log_likelihood, normal_kl, vlb_terms};
use ddpm::loss::{hybrid_loss, LossOptions};
use ddpm::sample::{sample_from, step_log_variance, Condition, Sampler, Variance};
use ddpm::schedule::{BetaSchedule, NoiseSchedule};
use ddpm::unet::UNet;
use ddpm::variance::{decoder_nll, log_variance, posterior_kl, split_output, vlb_loss};
use rand::{Rng, SeedableRng};
use tensor::Tensor;

mod common;
use common::{run, temp_dir, train_in, train_tiny};

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

fn uniform(shape: &[usize], lo: f32, hi: f32, seed: u64) -> Tensor {
    Tensor::rand_uniform(shape, lo, hi, &mut rng(seed)).unwrap()
}

/// Pixel values on the 256-level grid in [-1, 1], including both ends.
fn pixels(shape: &[usize], seed: u64) -> Tensor {
    let mut r = rng(seed);
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|_| r.gen_range(0..256) as f32 / 127.5 - 1.0).collect();
    v[0] = -1.0;
    v[n - 1] = 1.0;
    Tensor::from_vec(v, shape).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

#[test]
fn the_log_variance_runs_from_beta_tilde_to_beta() {
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let t = [0, 1, 500, 999];
    for (o, v) in [(-1.0, 0.0), (0.0, 0.5), (1.0, 1.0)] {
        let lv = log_variance(&s, &t, &Var::constant(Tensor::full(&[4, 1, 2, 2], o))).unwrap();
        for (i, &step) in t.iter().enumerate() {
            let want = (1.0 - v) * s.log_beta_tilde_clipped[step] + v * s.beta[step].ln();
            let got = lv.value().get(&[i, 0, 1, 1]).unwrap() as f64;
            assert!(close(got, want, 1e-6), "o {o} t {step}: {got} vs {want}");
        }
    }
    // The sampler's learned variance is the same map; its fixed ones are the ends.
    let o = Tensor::full(&[4, 1, 2, 2], -1.0);
    let learned = step_log_variance(&s, Variance::Learned, &t, Some(&o)).unwrap();
    let tilde = step_log_variance(&s, Variance::BetaTilde, &t, None).unwrap();
    let diff = learned.sub(&tilde).unwrap().abs().to_vec();
    assert!(diff.iter().all(|&d| d < 1e-5), "{diff:?}");
    assert!(step_log_variance(&s, Variance::Learned, &t, None).is_err());
}

#[test]
fn split_output_halves_the_channels() {
    let out = Var::constant(Tensor::arange(2 * 4 * 3).reshape(&[2, 4, 3, 1]).unwrap());
    let (eps, o) = split_output(&out, true).unwrap();
    let o = o.unwrap();
    assert_eq!((eps.shape(), o.shape()), (&[2, 2, 3, 1][..], &[2, 2, 3, 1][..]));
    assert_eq!(eps.value().get(&[1, 1, 2, 0]).unwrap(), (12 + 3 + 2) as f32);
    assert_eq!(o.value().get(&[1, 0, 0, 0]).unwrap(), (12 + 6) as f32);
    assert!(split_output(&Var::constant(Tensor::zeros(&[1, 3, 1, 1])), true).is_err());
    let (whole, none) = split_output(&out, false).unwrap();
    assert_eq!((whole.shape(), none.is_none()), (&[2, 4, 3, 1][..], true));
}

#[test]
fn the_autograd_decoder_matches_the_scalar_one() {
    let shape = [2, 1, 4, 4];
    let x = pixels(&shape, 1);
    let mean = uniform(&shape, -1.2, 1.2, 2);
    let lv = uniform(&shape, -9.0, -3.0, 3);
    let nll = decoder_nll(&x, &mean, &Var::constant(lv.clone())).unwrap();
    let (x, mean, lv, nll) = (x.to_vec(), mean.to_vec(), lv.to_vec(), nll.value().to_vec());
    for i in 0..x.len() {
        let want = -discretized_gaussian_log_likelihood(x[i] as f64, mean[i] as f64, 0.5 * lv[i] as f64);
        assert!(close(nll[i] as f64, want, 2e-3), "{i}: {} vs {want}", nll[i]);
    }
}

#[test]
fn the_autograd_kl_matches_the_closed_form_and_is_least_at_the_matched_variance() {
    let shape = [2, 1, 3, 3];
    let (mu_q, mu) = (uniform(&shape, -1.0, 1.0, 4), uniform(&shape, -1.0, 1.0, 5));
    let beta_tilde = Tensor::from_vec(vec![0.01, 0.002], &[2, 1, 1, 1]).unwrap();
    let lv = uniform(&shape, -7.0, -2.0, 6);
    let kl = posterior_kl(&mu_q, &beta_tilde, &mu, &Var::constant(lv.clone())).unwrap();
    let (mq, m, l, k) = (mu_q.to_vec(), mu.to_vec(), lv.to_vec(), kl.value().to_vec());
    for i in 0..k.len() {
        let bt = [0.01f64, 0.002][i / 9];
        let want = normal_kl(mq[i] as f64, bt.ln(), m[i] as f64, l[i] as f64);
        assert!(close(k[i] as f64, want, 1e-4), "{i}: {} vs {want}", k[i]);
    }
    // d KL / d lv = (1 - (bt + (mu_q - mu)^2) e^-lv) / 2 vanishes at lv = ln(bt + d^2).
    let best = mu_q.sub(&mu).unwrap().square().add(&beta_tilde).unwrap().log();
    let leaf = Var::leaf(best.clone());
    posterior_kl(&mu_q, &beta_tilde, &mu, &leaf)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = leaf.grad().unwrap().to_vec();
    assert!(g.iter().all(|v| v.abs() < 1e-5), "{g:?}");
}

#[test]
fn the_bound_term_is_t_times_the_mean_of_the_per_image_terms() {
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 20);
    let shape = [3, 1, 2, 2];
    let x0 = pixels(&shape, 7);
    let eps = normal(&shape, &mut rng(8));
    let t = [0, 7, 19];
    let x_t = q_sample(&s, &x0, &t, &normal(&shape, &mut rng(9))).unwrap();
    let o = uniform(&shape, -1.0, 1.0, 10);
    let got = vlb_loss(&s, &x0, &x_t, &t, &eps, &Var::constant(o.clone())).unwrap();
    // The same sum from the scalar formulas, image by image.
    let mu = posterior_mean(&s, &predict_x0(&s, &x_t, &t, &eps).unwrap(), &x_t, &t).unwrap();
    let mu_q = posterior_mean(&s, &x0, &x_t, &t).unwrap();
    let lv = log_variance(&s, &t, &Var::constant(o)).unwrap().value().to_vec();
    let (x0v, mu, mu_q) = (x0.to_vec(), mu.to_vec(), mu_q.to_vec());
    let mut bits = 0.0;
    for (img, &step) in t.iter().enumerate() {
        for j in img * 4..img * 4 + 4 {
            bits += if step == 0 {
                -discretized_gaussian_log_likelihood(x0v[j] as f64, mu[j] as f64, 0.5 * lv[j] as f64)
            } else {
                let lbt = s.beta_tilde[step].ln();
                normal_kl(mu_q[j] as f64, lbt, mu[j] as f64, lv[j] as f64)
            } / 4.0
                / std::f64::consts::LN_2;
        }
    }
    let want = 20.0 * bits / 3.0;
    let got = got.value().item().unwrap() as f64;
    assert!(close(got, want, 2e-3), "{got} vs {want}");
}

#[test]
fn the_bound_term_gradient_matches_finite_differences() {
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 20);
    let shape = [3, 1, 2, 2];
    let x0 = pixels(&shape, 11);
    let eps = normal(&shape, &mut rng(12)).mul_scalar(0.3);
    let t = [0, 3, 12];
    let x_t = q_sample(&s, &x0, &t, &normal(&shape, &mut rng(13))).unwrap();
    let o = uniform(&shape, -0.9, 0.9, 14);
    let tol = Tolerance {
        eps: 1e-2,
        atol: 1e-2,
        rtol: 3e-2,
    };
    let verdict = check_gradients(|v| vlb_loss(&s, &x0, &x_t, &t, &eps, &v[0]), &[o], tol).unwrap();
    assert_eq!(verdict, Ok(()));
}

#[test]
fn the_bound_trains_the_variance_but_not_the_mean() {
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let shape = [2, 1, 3, 3];
    let x0 = pixels(&shape, 15);
    let eps = normal(&shape, &mut rng(16));
    let t = [4, 600];
    let x_t = q_sample(&s, &x0, &t, &eps).unwrap();
    let pred = Var::leaf(normal(&shape, &mut rng(17)));
    let o = Var::leaf(uniform(&shape, -0.5, 0.5, 18));
    hybrid_loss(
        &s,
        LossOptions::simple(Objective::Eps),
        &x0,
        &x_t,
        &t,
        &eps,
        (&pred, &o),
    )
    .unwrap()
    .backward()
    .unwrap();
    // d L_simple / d pred = 2 (pred - eps) / n, and nothing from the bound.
    let n = eps.numel() as f32;
    let want = pred.value().sub(&eps).unwrap().mul_scalar(2.0 / n).to_vec();
    let got = pred.grad().unwrap().to_vec();
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6));
    assert!(o.grad().unwrap().to_vec().iter().any(|&g| g != 0.0));
}

fn learned_tiny() -> UNet {
    let cfg = UNetConfig::named("mnist-tiny").unwrap().with_learned_sigma();
    UNet::new(&cfg, &mut rng(19)).unwrap()
}

#[test]
fn a_learned_variance_model_has_two_outputs_per_channel_and_samples() {
    let fixed = UNet::new(&UNetConfig::named("mnist-tiny").unwrap(), &mut rng(19)).unwrap();
    let net = learned_tiny();
    let count = |m: &UNet| -> usize {
        use nn::Module;
        m.parameters().iter().map(|(_, p)| p.value().numel()).sum()
    };
    // Only conv_out grows: one more 3x3 filter over C = 16 channels and a bias.
    assert_eq!(count(&net) - count(&fixed), 16 * 9 + 1);
    let x = normal(&[2, 1, 28, 28], &mut rng(20));
    let y = net.forward(&Var::constant(x.clone()), &[5, 50], None).unwrap();
    assert_eq!(y.shape(), &[2, 2, 28, 28]);
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let sampler = Sampler::Ancestral {
        steps: 4,
        variance: Variance::Learned,
    };
    let out = sample_from(
        &net,
        Objective::Eps,
        &s,
        sampler,
        x.clone(),
        Condition::NONE,
        &mut rng(21),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(out.shape(), &[2, 1, 28, 28]);
    assert!(out.to_vec().iter().all(|v| v.is_finite()));
    assert!(sample_from(
        &fixed,
        Objective::Eps,
        &s,
        sampler,
        x,
        Condition::NONE,
        &mut rng(21),
        |_, _| {}
    )
    .is_err());
    // The bound of the untrained model (eps = 0, o = 0): its variance is the
    // geometric midpoint of beta and beta_tilde. Step 1's term, recomputed by hand
    // with the same noise (vlb_terms draws one noise tensor per step, in order).
    let x0 = pixels(&[1, 1, 28, 28], 22);
    let s4 = NoiseSchedule::new(BetaSchedule::LINEAR, 4);
    let (_, terms) = vlb_terms(&net, Objective::Eps, &s4, Variance::Learned, &x0, &mut rng(23)).unwrap();
    let mut r = rng(23);
    let _step0_noise = normal(x0.shape(), &mut r);
    let x_1 = q_sample(&s4, &x0, &[1], &normal(x0.shape(), &mut r)).unwrap();
    let x0_hat = x_1
        .div_scalar(s4.sqrt_alpha_bar[1] as f32)
        .clamp(-1.0, 1.0)
        .unwrap();
    let mu = posterior_mean(&s4, &x0_hat, &x_1, &[1]).unwrap().to_vec();
    let mu_q = posterior_mean(&s4, &x0, &x_1, &[1]).unwrap().to_vec();
    let lv = 0.5 * (s4.log_beta_tilde_clipped[1] + s4.beta[1].ln());
    let lbt = s4.log_beta_tilde_clipped[1];
    let nats: f64 = mu_q
        .iter()
        .zip(&mu)
        .map(|(&q, &m)| normal_kl(q as f64, lbt, m as f64, lv))
        .sum();
    let want = nats / mu.len() as f64 / std::f64::consts::LN_2;
    assert!(close(terms[1], want, 1e-3), "{} vs {want}", terms[1]);
}

#[test]
fn checkpoints_from_before_the_variance_key_still_resume() {
    let out = temp_dir("old-ckpt");
    let o = out.to_str().unwrap();
    let train = ["train", "--config", "mnist-tiny", "--batch", "2", "--out", o];
    run(&[&train[..], &["--steps", "1"]].concat()).unwrap();
    // Rewrite the checkpoint as an older version wrote it: no "variance" key.
    let ckpt = out.join("checkpoint.safetensors");
    let file = nn::safetensors::load(&ckpt).unwrap();
    let mut meta = file.metadata().clone();
    assert_eq!(meta.remove("variance").as_deref(), Some("fixed"));
    nn::safetensors::save(&ckpt, file.tensors().iter(), &meta).unwrap();
    run(&[&train[..], &["--steps", "2", "--resume"]].concat()).unwrap();
    // A learned-variance run cannot resume it.
    let err = run(&[&train[..], &["--steps", "3", "--resume", "--learn-sigma"]].concat()).unwrap_err();
    assert!(err.contains("variance"), "{err}");
}

#[test]
fn the_program_trains_resumes_and_samples_with_learned_variances() {
    let out = temp_dir("sigma");
    let o = out.to_str().unwrap();
    let train = [
        "train",
        "--config",
        "mnist-tiny",
        "--batch",
        "2",
        "--learn-sigma",
        "--out",
        o,
    ];
    run(&[&train[..], &["--steps", "1"]].concat()).unwrap();
    // Resuming must keep the variance output; without --learn-sigma it is refused.
    run(&[&train[..], &["--steps", "2", "--resume"]].concat()).unwrap();
    let err = train_in(&out, 3, &["--resume"]).unwrap_err();
    assert!(err.contains("variance"), "{err}");
    let c = out.join("checkpoint.safetensors");
    let c = c.to_str().unwrap();
    run(&["sample", "--checkpoint", c, "--steps", "2", "--n", "2"]).unwrap();
    run(&[
        "sample",
        "--checkpoint",
        c,
        "--steps",
        "2",
        "--n",
        "2",
        "--variance",
        "beta-tilde",
    ])
    .unwrap();
    assert!(out.join("samples.png").exists());
    // A fixed-variance model has no variance to use.
    let fixed = train_tiny("sigma-fixed", 1, &[]);
    let fc = fixed.join("checkpoint.safetensors");
    let err = run(&[
        "sample",
        "--checkpoint",
        fc.to_str().unwrap(),
        "--variance",
        "learned",
    ])
    .unwrap_err();
    assert!(err.contains("--learn-sigma"), "{err}");
}
