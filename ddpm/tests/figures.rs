//! The paper's figures against what they claim to show: the last prediction of
//! `x_0` along a chain is the sample itself, samples sharing an `x_t` are made
//! from that very `x_t`, and interpolations decode every mix with the same noise.

use ddpm::config::UNetConfig;
use ddpm::diffusion::{normal, Objective};
use ddpm::figures::{interpolate, shared_latent, x0_chain};
use ddpm::sample::{sample_from, Chain, Condition, History, Sampler, Variance};
use ddpm::schedule::{BetaSchedule, NoiseSchedule};
use ddpm::unet::UNet;
use nn::Module;
use rand::SeedableRng;
use tensor::Tensor;

mod common;
use common::{run, train_tiny};

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// mnist-tiny with a non-zero output layer, so the chain depends on the model.
fn model() -> UNet {
    let net = UNet::new(&UNetConfig::named("mnist-tiny").unwrap(), &mut rng(1)).unwrap();
    for (name, p) in net.parameters() {
        if name.starts_with("conv_out") {
            p.set_value(normal(&p.shape(), &mut rng(2)).mul_scalar(0.05))
                .unwrap();
        }
    }
    net
}

const ANCESTRAL: Sampler = Sampler::Ancestral {
    steps: 6,
    variance: Variance::BetaTilde,
};

fn rows(images: &Tensor, per_row: usize) -> Vec<Vec<Vec<f32>>> {
    let n = images.shape()[0];
    (0..n / per_row)
        .map(|r| {
            (0..per_row)
                .map(|c| images.narrow(0, r * per_row + c, 1).unwrap().to_vec())
                .collect()
        })
        .collect()
}

#[test]
fn the_last_prediction_of_x0_is_the_sample() {
    let (net, s) = (model(), NoiseSchedule::new(BetaSchedule::LINEAR, 1000));
    let x_t = normal(&[2, 1, 28, 28], &mut rng(3));
    let chain = Chain::new(&net, Objective::Eps, &s, ANCESTRAL, Condition::NONE).unwrap();
    let grid = x0_chain(&chain, x_t.clone(), 3, &mut rng(4)).unwrap();
    assert_eq!(grid.shape(), &[6, 1, 28, 28]);
    let sample = sample_from(
        &net,
        Objective::Eps,
        &s,
        ANCESTRAL,
        x_t,
        Condition::NONE,
        &mut rng(4),
        |_, _| {},
    )
    .unwrap();
    let r = rows(&grid, 3);
    for (i, row) in r.iter().enumerate() {
        assert_eq!(row[2], sample.narrow(0, i, 1).unwrap().to_vec(), "row {i}");
        assert_ne!(row[0], row[2], "the first prediction is made from noise");
    }
}

#[test]
fn samples_sharing_x_t_continue_from_it() {
    let (net, s) = (model(), NoiseSchedule::new(BetaSchedule::LINEAR, 1000));
    let x_t = normal(&[1, 1, 28, 28], &mut rng(5));
    let ddim = Sampler::Ddim { steps: 6, eta: 0.0 };
    let chain = Chain::new(&net, Objective::Eps, &s, ddim, Condition::NONE).unwrap();
    // Kept steps are 0, 200, 400, 599, 799, 999 (indices 0..5); 500 enters at 400.
    let grid = shared_latent(&chain, x_t.clone(), &[999, 500], 3, &mut rng(6)).unwrap();
    let r = rows(&grid, 4);
    assert_eq!(r.len(), 2);
    // Row 0 shares x_T itself; deterministic DDIM makes every copy the same sample.
    assert_eq!(r[0][0], x_t.to_vec());
    assert!(r[0][1..].iter().all(|c| *c == r[0][1]));
    let sample = sample_from(
        &net,
        Objective::Eps,
        &s,
        ddim,
        x_t.clone(),
        Condition::NONE,
        &mut rng(7),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(
        r[1][3],
        sample.to_vec(),
        "continuing from x_400 ends at the same sample"
    );
    // Row 1's x_t is x_400: three steps down the chain from x_999.
    let mut x = x_t;
    let mut history = History::default();
    for i in [5, 4, 3] {
        x = chain
            .step(i, &x, &mut history, &mut |sh| normal(sh, &mut rng(0)))
            .unwrap()
            .x;
    }
    assert_eq!(r[1][0], x.to_vec());
    // With ancestral steps the copies differ.
    let chain = Chain::new(&net, Objective::Eps, &s, ANCESTRAL, Condition::NONE).unwrap();
    let r = rows(
        &shared_latent(
            &chain,
            normal(&[1, 1, 28, 28], &mut rng(8)),
            &[500],
            2,
            &mut rng(9),
        )
        .unwrap(),
        3,
    );
    assert_ne!(r[0][1], r[0][2]);
}

#[test]
fn interpolations_decode_every_mix_with_the_same_noise() {
    // The untrained network predicts eps = 0, and near t = 0 nothing is clipped, so
    // each step is affine in x: decode((1 - l) a + l b) = (1 - l) decode(a) + l decode(b)
    // exactly when every mix sees the same noise.
    let net = UNet::new(&UNetConfig::named("mnist-tiny").unwrap(), &mut rng(10)).unwrap();
    let s = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let sampler = Sampler::Ancestral {
        steps: 1000,
        variance: Variance::Beta,
    };
    let chain = Chain::new(&net, Objective::Eps, &s, sampler, Condition::NONE).unwrap();
    let a = Tensor::rand_uniform(&[2, 1, 28, 28], -0.5, 0.5, &mut rng(11)).unwrap();
    let b = Tensor::rand_uniform(&[2, 1, 28, 28], -0.5, 0.5, &mut rng(12)).unwrap();
    let grid = interpolate(&chain, &s, &a, &b, 4, 5, &mut rng(13)).unwrap();
    assert_eq!(grid.shape(), &[14, 1, 28, 28]);
    let r = rows(&grid, 7);
    for (i, row) in r.iter().enumerate() {
        assert_eq!(row[0], a.narrow(0, i, 1).unwrap().to_vec());
        assert_eq!(row[6], b.narrow(0, i, 1).unwrap().to_vec());
        for (k, mid) in row[1..6].iter().enumerate() {
            let l = k as f32 / 4.0;
            let worst = mid
                .iter()
                .zip(row[1].iter().zip(&row[5]))
                .map(|(m, (d0, d1))| (m - ((1.0 - l) * d0 + l * d1)).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-4, "row {i} lambda {l}: off by {worst}");
        }
        // The decodes are noisy versions of the sources, not copies of them.
        assert_ne!(row[1], row[0]);
    }
}

#[test]
fn each_figure_is_one_command_writing_one_png() {
    let out = train_tiny("figures", 2, &[]);
    let c = out.join("checkpoint.safetensors");
    let c = c.to_str().unwrap();
    let figure = |kind: &str, extra: &[&str]| {
        let mut args = vec!["figure", kind, "--checkpoint", c, "--steps", "3"];
        args.extend_from_slice(extra);
        run(&args)
    };
    figure("x0-chain", &["--n", "2", "--columns", "3"]).unwrap();
    figure("shared-xt", &["--stops", "999,400", "--copies", "2"]).unwrap();
    figure("interpolate", &["--n", "1", "--columns", "3"]).unwrap();
    figure("loss", &[]).unwrap();
    // Grids of 28-pixel cells with 2 pixels of padding: columns x rows.
    let cell = |n: u32| 2 + 30 * n;
    for (name, cols, rows) in [("x0-chain", 3, 2), ("shared-xt", 3, 2), ("interpolate", 5, 1)] {
        let png = image::open(out.join(format!("{name}.png"))).unwrap();
        assert_eq!((png.width(), png.height()), (cell(cols), cell(rows)), "{name}");
    }
    assert!(image::open(out.join("loss.png")).is_ok());
    assert!(run(&["figure", "mandala"])
        .unwrap_err()
        .contains("invalid value 'mandala' for '<KIND>'"));
    assert!(run(&["figure"]).unwrap_err().contains("<KIND>"));
    assert!(figure("shared-xt", &["--stops", "5,1000"])
        .unwrap_err()
        .contains("--stops"));
    let missing = out.join("nothing.csv");
    assert!(figure("loss", &["--csv", missing.to_str().unwrap()])
        .unwrap_err()
        .contains("nothing.csv"));
}
