//! The schedule against closed forms, the forward process's statistics, and the
//! U-Net against the spec (parameter counts, names, zero output).

use autograd::Var;
use ddpm::config::UNetConfig;
use ddpm::diffusion::{normal, q_sample, Objective};
use ddpm::loss::{loss_at, LossOptions};
use ddpm::sample::{sample_from, Condition, Sampler, Variance};
use ddpm::schedule::{BetaSchedule, NoiseSchedule};
use ddpm::unet::{timestep_embedding, UNet};
use nn::optim::{Adam, Optimizer};
use nn::Module;
use rand::SeedableRng;
use tensor::Tensor;

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

#[test]
fn schedule_constants_match_their_closed_forms() {
    for kind in [BetaSchedule::LINEAR, BetaSchedule::COSINE] {
        let s = NoiseSchedule::new(kind, 1000);
        let mut prod = 1.0;
        for t in 0..1000 {
            prod *= 1.0 - s.beta[t];
            assert!(
                (s.alpha_bar[t] - prod).abs() < 1e-12,
                "alpha_bar as a product at {t}"
            );
            assert!((s.alpha[t] - (1.0 - s.beta[t])).abs() < 1e-15);
            assert!((s.sqrt_alpha_bar[t] - prod.sqrt()).abs() < 1e-12);
            assert!((s.sqrt_one_minus_alpha_bar[t] - (1.0 - prod).sqrt()).abs() < 1e-12);
            if t == 0 {
                // q(x_{-1} | x_0) is a point mass at x_0: the posterior mean is x_0.
                assert_eq!((s.beta_tilde[0], s.posterior_coef_xt[0]), (0.0, 0.0));
                assert!((s.posterior_coef_x0[0] - 1.0).abs() < 1e-12);
                assert!((s.log_beta_tilde_clipped[0] - s.beta_tilde[1].ln()).abs() < 1e-12);
                continue;
            }
            let prev = s.alpha_bar[t - 1];
            let bt = (1.0 - prev) / (1.0 - prod) * s.beta[t];
            assert!(
                (s.beta_tilde[t] - bt).abs() < 1e-12 * bt.max(1e-12),
                "beta_tilde at {t}"
            );
            // The posterior q(x_{t-1} | x_t, x_0) as a product of two Gaussians in
            // x_{t-1}: N(x_t; sqrt(a_t) x_{t-1}, b_t) N(x_{t-1}; sqrt(ab_{t-1}) x_0, 1 - ab_{t-1}).
            let a = 1.0 - s.beta[t];
            let precision = a / s.beta[t] + 1.0 / (1.0 - prev);
            let (x0, xt) = (0.3, -1.7);
            let mean = (a.sqrt() / s.beta[t] * xt + prev.sqrt() / (1.0 - prev) * x0) / precision;
            let got = s.posterior_coef_x0[t] * x0 + s.posterior_coef_xt[t] * xt;
            assert!(
                (got - mean).abs() < 1e-9,
                "posterior mean at {t}: {got} vs {mean}"
            );
            assert!((s.beta_tilde[t] - 1.0 / precision).abs() < 1e-9 * s.beta_tilde[t].max(1e-9));
        }
    }
    let lin = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    assert!((lin.beta[0] - 1e-4).abs() < 1e-15 && (lin.beta[999] - 0.02).abs() < 1e-15);
    // Cosine: alpha_bar(t) = f(t + 1) / f(0) wherever beta is not clipped.
    let cos = NoiseSchedule::new(BetaSchedule::COSINE, 1000);
    let f = |t: f64| {
        ((t / 1000.0 + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    for t in [0, 10, 500, 900] {
        assert!(
            (cos.alpha_bar[t] - f(t as f64 + 1.0) / f(0.0)).abs() < 1e-9,
            "cosine alpha_bar at {t}"
        );
    }
    assert!(cos.beta.iter().all(|&b| b <= 0.999) && cos.beta[999] == 0.999);
}

#[test]
fn respacing_keeps_alpha_bar_at_the_kept_steps() {
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let kept = [0, 99, 500, 999];
    let r = s.respaced(&kept);
    for (i, &t) in kept.iter().enumerate() {
        assert!((r.alpha_bar[i] - s.alpha_bar[t]).abs() < 1e-12);
    }
}

#[test]
fn q_sample_has_the_right_mean_and_variance() {
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let n = 200_000;
    for t in [0usize, 300, 999] {
        let x0 = Tensor::full(&[1, 1, 1, n], 0.8);
        let eps = normal(&[1, 1, 1, n], &mut rng(t as u64));
        let xt = q_sample(&s, &x0, &[t], &eps).unwrap().to_vec();
        let mean = xt.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = xt.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        let (want_mean, want_var) = (0.8 * s.alpha_bar[t].sqrt(), 1.0 - s.alpha_bar[t]);
        // Standard errors: sqrt(var / n) for the mean, var sqrt(2 / n) for the variance.
        assert!(
            (mean - want_mean).abs() < 5.0 * (want_var / n as f64).sqrt() + 1e-6,
            "mean at {t}"
        );
        assert!(
            (var - want_var).abs() < 5.0 * want_var * (2.0 / n as f64).sqrt() + 1e-9,
            "variance at {t}"
        );
    }
    let x0 = Tensor::zeros(&[2, 1, 2, 2]);
    assert!(q_sample(&s, &x0, &[0, 1000], &x0).is_err());
    assert!(q_sample(&s, &x0, &[0], &x0).is_err());
}

/// The spec's parameter count, layer by layer: conv = o i k^2 + o, dense = i o + o,
/// norm = 2 c; ResBlock(i, o) = norm(i) + conv3(i, o) + dense(4C, o) + norm(o) +
/// conv3(o, o) [+ nin(i, o)]; Attn(c) = norm(c) + 4 nin(c, c).
#[test]
fn parameter_counts_follow_the_spec() {
    let conv = |i: usize, o: usize, k: usize| o * i * k * k + o;
    let dense = |i: usize, o: usize| i * o + o;
    let norm = |c: usize| 2 * c;
    // mnist-tiny: C = 16, ch_mult (1, 2, 2), one block per level, attention at 7x7.
    let t = 64;
    let res = |i: usize, o: usize| {
        norm(i)
            + conv(i, o, 3)
            + dense(t, o)
            + norm(o)
            + conv(o, o, 3)
            + if i != o { conv(i, o, 1) } else { 0 }
    };
    let attn = |c: usize| norm(c) + 4 * conv(c, c, 1);
    let tiny = dense(16, 64) + dense(64, 64) + conv(1, 16, 3)
        // down: level 0 (28): Res(16,16), Down; level 1 (14): Res(16,32), Down; level 2 (7): Res(32,32)+Attn
        + res(16, 16) + conv(16, 16, 3) + res(16, 32) + conv(32, 32, 3) + res(32, 32) + attn(32)
        // mid
        + 2 * res(32, 32) + attn(32)
        // up (num_res_blocks + 1 = 2 blocks per level), popping hs = [16, 16, 16, 32, 32, 32]:
        // level 2 (7): skips 32, 32 -> (Res(64,32) + Attn) x2, Up; level 1 (14): skips 32, 16
        + 2 * (res(64, 32) + attn(32)) + conv(32, 32, 3)
        + res(64, 32) + res(48, 32) + conv(32, 32, 3)
        // level 0 (28): skips 16, 16 -> Res(48,16), Res(32,16)
        + res(48, 16) + res(32, 16)
        + norm(16) + conv(16, 1, 3);
    assert_eq!(tiny, 280_177);
    let count = |name: &str| {
        UNet::new(&UNetConfig::named(name).unwrap(), &mut rng(0))
            .unwrap()
            .num_parameters()
    };
    assert_eq!(count("mnist-tiny"), 280_177);
    assert_eq!(count("mnist-small"), 1_623_169);
    // The paper's CIFAR-10 model: 35.7 M parameters.
    assert_eq!(count("cifar10"), 35_746_307);
}

#[test]
fn parameter_names_follow_the_pytorch_port() {
    let net = UNet::new(&UNetConfig::named("mnist-small").unwrap(), &mut rng(0)).unwrap();
    let names: Vec<String> = net.parameters().into_iter().map(|(n, _)| n).collect();
    for want in [
        "temb.dense.0.weight",
        "temb.dense.1.bias",
        "conv_in.weight",
        "down.0.block.1.conv2.weight",
        "down.0.downsample.conv.weight",
        "down.1.block.0.nin_shortcut.weight",
        "down.2.attn.1.proj_out.bias",
        "mid.block_1.temb_proj.weight",
        "mid.attn_1.q.weight",
        "mid.block_2.norm2.bias",
        "up.2.block.2.nin_shortcut.weight",
        "up.2.attn.2.k.weight",
        "up.2.upsample.conv.weight",
        "up.0.block.2.conv1.weight",
        "norm_out.weight",
        "conv_out.bias",
    ] {
        assert!(names.iter().any(|n| n == want), "missing {want}");
    }
    for absent in [
        "down.2.downsample.conv.weight",
        "up.0.upsample.conv.weight",
        "down.0.block.0.nin_shortcut.weight",
    ] {
        assert!(!names.iter().any(|n| n == absent), "unexpected {absent}");
    }
    let unique: std::collections::BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len());
    let w: Vec<usize> = net
        .parameters()
        .iter()
        .find(|(n, _)| n == "down.0.block.0.conv1.weight")
        .unwrap()
        .1
        .shape();
    assert_eq!(w, [32, 32, 3, 3]);
}

#[test]
fn the_untrained_network_predicts_zero() {
    let net = UNet::new(&UNetConfig::named("mnist-tiny").unwrap(), &mut rng(1)).unwrap();
    let x = Var::constant(normal(&[2, 1, 28, 28], &mut rng(2)));
    let y = net.forward(&x, &[3, 900], None).unwrap();
    assert_eq!(y.shape(), &[2, 1, 28, 28]);
    assert!(y.value().to_vec().iter().all(|&v| v == 0.0));
    assert!(net.forward(&x, &[3], None).is_err());
}

#[test]
fn timestep_embedding_matches_the_formula() {
    let e = timestep_embedding(&[0, 7], 8).to_vec();
    for k in 0..4 {
        let f = (-(10000f64.ln()) * k as f64 / 3.0).exp();
        assert_eq!((e[k], e[4 + k]), (0.0, 1.0));
        assert!((e[8 + k] as f64 - (7.0 * f).sin()).abs() < 1e-6);
        assert!((e[12 + k] as f64 - (7.0 * f).cos()).abs() < 1e-6);
    }
}

#[test]
fn a_training_step_lowers_the_loss_on_a_fixed_batch() {
    let cfg = UNetConfig::named("mnist-tiny").unwrap();
    let net = UNet::new(&cfg, &mut rng(3)).unwrap();
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let x0 = normal(&[4, 1, 28, 28], &mut rng(4)).clamp(-1.0, 1.0).unwrap();
    let eps = normal(&[4, 1, 28, 28], &mut rng(5));
    let t = [10, 200, 500, 800];
    let params: Vec<_> = net.parameters().into_iter().map(|(_, p)| p).collect();
    let mut opt = Adam::new(params, 1e-3);
    let eps_loss = LossOptions::simple(Objective::Eps);
    let before = loss_at(&net, &s, eps_loss, &x0, &t, &eps, None).unwrap();
    let l0 = before.value().item().unwrap();
    before.backward().unwrap();
    opt.step().unwrap();
    let l1 = autograd::no_grad(|| loss_at(&net, &s, eps_loss, &x0, &t, &eps, None))
        .unwrap()
        .value()
        .item()
        .unwrap();
    assert!(l1 < l0, "loss {l0} -> {l1}");
}

#[test]
fn ddim_with_eta_zero_depends_only_on_the_starting_noise() {
    let cfg = UNetConfig::named("mnist-tiny").unwrap();
    let net = UNet::new(&cfg, &mut rng(6)).unwrap();
    // Give the output layer weights so the network is not identically zero.
    for (name, p) in net.parameters() {
        if name.starts_with("conv_out") {
            p.set_value(normal(&p.shape(), &mut rng(7)).mul_scalar(0.05))
                .unwrap();
        }
    }
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let x_t = normal(&[2, 1, 28, 28], &mut rng(8));
    let run = |sampler, seed| {
        sample_from(
            &net,
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
    let ddim = Sampler::Ddim { steps: 5, eta: 0.0 };
    assert_eq!(run(ddim, 1), run(ddim, 2));
    let noisy = Sampler::Ancestral {
        steps: 5,
        variance: Variance::Beta,
    };
    assert_ne!(run(noisy, 1), run(noisy, 2));
    assert_eq!(run(noisy, 3), run(noisy, 3));
    assert!(run(ddim, 1).iter().all(|v| v.abs() <= 1.0));
}
