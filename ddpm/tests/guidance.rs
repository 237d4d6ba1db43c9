//! Class-conditional models and classifier-free guidance.

use autograd::Var;
use ddpm::config::UNetConfig;
use ddpm::diffusion::{normal, Objective};
use ddpm::sample::{guided_eps, sample_from, Condition, Sampler};
use ddpm::schedule::{BetaSchedule, NoiseSchedule};
use ddpm::train::{drop_labels, LABEL_DROP};
use ddpm::unet::UNet;
use nn::Module;
use rand::SeedableRng;
use tensor::Tensor;

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// A conditional mnist-tiny whose zero-initialised layers (the second conv of each
/// residual block, attention outputs, `conv_out`) are given weights: at
/// initialisation they hide the time embedding, and with it the label.
fn conditional_net() -> UNet {
    let mut cfg = UNetConfig::named("mnist-tiny").unwrap();
    cfg.num_classes = Some(10);
    let net = UNet::new(&cfg, &mut rng(1)).unwrap();
    for (name, p) in net.parameters() {
        if name.starts_with("conv_out") || name.contains("conv2") || name.contains("proj_out") {
            p.set_value(normal(&p.shape(), &mut rng(2)).mul_scalar(0.05))
                .unwrap();
        }
    }
    net
}

#[test]
fn guidance_is_one_plus_w_times_conditional_minus_w_times_unconditional() {
    let c = Tensor::from_vec(vec![1.0, -2.0, 0.5], &[3]).unwrap();
    let u = Tensor::from_vec(vec![0.0, 1.0, 0.5], &[3]).unwrap();
    assert_eq!(guided_eps(&c, &u, 2.0).unwrap().to_vec(), vec![3.0, -8.0, 0.5]);
    assert_eq!(guided_eps(&c, &u, 0.0).unwrap().to_vec(), c.to_vec());
}

#[test]
fn labels_are_dropped_at_the_stated_rate() {
    let n = 100_000;
    let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let dropped = drop_labels(labels.clone(), 10, &mut rng(3));
    let none = dropped.iter().filter(|&&y| y == 10).count();
    // Binomial(n, 0.1): standard deviation sqrt(n p (1 - p)) ~ 95.
    let expected = n as f32 * LABEL_DROP;
    assert!((none as f32 - expected).abs() < 5.0 * 95.0, "{none} dropped");
    assert!(dropped.iter().zip(&labels).all(|(&d, &l)| d == l || d == 10));
}

#[test]
fn a_conditional_network_depends_on_its_label() {
    let net = conditional_net();
    // The label table adds (10 + 1) rows of 4C = 64 to mnist-tiny's 280,177.
    assert_eq!(net.num_parameters(), 280_177 + 11 * 64);
    let x = Var::constant(normal(&[2, 1, 28, 28], &mut rng(4)));
    let out = |y: Option<&[usize]>| net.forward(&x, &[100, 100], y).unwrap().value().to_vec();
    assert!(
        out(Some(&[3, 3])) != out(Some(&[5, 5])),
        "the label changes nothing"
    );
    // No labels means the "no label" row.
    assert!(
        out(None) == out(Some(&[10, 10])),
        "no labels differ from the no-label row"
    );
}

#[test]
fn guidance_changes_the_samples_and_zero_guidance_is_plain_conditioning() {
    let net = conditional_net();
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let x_t = normal(&[2, 1, 28, 28], &mut rng(5));
    let ddim = Sampler::Ddim { steps: 4, eta: 0.0 };
    let labels = [3, 7];
    let run = |w: f64| {
        let c = Condition {
            labels: Some(&labels),
            guidance: w,
        };
        sample_from(
            &net,
            Objective::Eps,
            &s,
            ddim,
            x_t.clone(),
            c,
            &mut rng(6),
            |_, _| {},
        )
        .unwrap()
        .to_vec()
    };
    assert!(run(0.0) == run(0.0), "DDIM with eta = 0 is deterministic");
    assert!(run(0.0) != run(2.0), "guidance changes nothing");
}
