//! The training loop and the program: exact resumption, stopping on a non-finite
//! loss without losing the last checkpoint, a tiny end-to-end run, bad flags.

use std::path::Path;

use ddpm::checkpoint::{checkpoint_path, TrainState};
use ddpm::data::embedded_mnist;
use ddpm::error::Error;
use ddpm::train::{train, TrainOptions};

mod common;
use common::{run, temp_dir, tiny_options, train_tiny};

fn options(out: &Path, steps: u64) -> TrainOptions {
    tiny_options(out, steps)
}

/// The `loss` column of a run's CSV.
fn losses(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out.join("loss.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect()
}

#[test]
fn a_resumed_run_computes_the_same_losses_as_an_uninterrupted_one() {
    let data = embedded_mnist().unwrap();
    let (a, b) = (temp_dir("straight"), temp_dir("resumed"));
    train(&data, &options(&a, 4), |_| {}).unwrap();
    train(&data, &options(&b, 2), |_| {}).unwrap();
    let resumed = TrainOptions {
        resume: true,
        ..options(&b, 4)
    };
    let (state, summary) = train(&data, &resumed, |_| {}).unwrap();
    assert_eq!((state.step, summary.steps_this_run), (4, 2));
    assert_eq!(
        losses(&a),
        losses(&b),
        "same seed, same losses, interrupted or not"
    );
    // Resuming with another seed or config is refused.
    let other = TrainOptions {
        resume: true,
        seed: 8,
        ..options(&b, 5)
    };
    let refused = train(&data, &other, |_| {})
        .err()
        .expect("another seed is refused");
    assert!(matches!(refused, Error::Contract { .. }), "{refused}");
    assert!(
        refused
            .to_string()
            .contains("seed: the checkpoint has 7, the flags ask for 8"),
        "{refused}"
    );
}

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint() {
    let data = embedded_mnist().unwrap();
    let out = temp_dir("nan");
    // An absurd learning rate sends the weights to ~1e38 after one step.
    let opts = TrainOptions {
        lr: 1e38,
        warmup: 0,
        ..options(&out, 10)
    };
    let err = match train(&data, &opts, |_| {}) {
        Err(e) => e,
        Ok(_) => panic!("training with lr 1e38 should blow up"),
    };
    let Error::NonFinite { step, .. } = err else {
        panic!("unexpected error {err}")
    };
    assert!(err.to_string().contains("not finite"), "{err}");
    // The checkpoint on disk is the last good step, and it loads.
    let mut state = TrainState::new(&opts.contract, opts.lr, opts.ema_decay, opts.seed).unwrap();
    state
        .load(&checkpoint_path(&out), &opts.contract, &opts.record())
        .unwrap();
    assert_eq!(state.step, step);
}

#[test]
fn a_tiny_end_to_end_train_and_sample() {
    let out = train_tiny("e2e", 2, &[]);
    for f in ["checkpoint.safetensors", "ema.safetensors", "loss.csv"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let ckpt = out.join("checkpoint.safetensors");
    let c = ckpt.to_str().unwrap();
    run(&[
        "sample",
        "--checkpoint",
        c,
        "--steps",
        "2",
        "--n",
        "3",
        "--individual",
        "--grid",
        "g.png",
    ])
    .unwrap();
    let grid = image::open(out.join("g.png")).unwrap();
    // 2 columns of 28 pixels with 2-pixel padding around and between.
    assert_eq!((grid.width(), grid.height()), (2 + 2 * 30, 2 + 2 * 30));
    assert!(out.join("samples/0002.png").exists());
    run(&[
        "sample",
        "--checkpoint",
        c,
        "--sampler",
        "ddpm",
        "--steps",
        "3",
        "--n",
        "2",
        "--weights",
        "model",
    ])
    .unwrap();
    run(&[
        "sample",
        "--checkpoint",
        c,
        "--sampler",
        "ddim",
        "--steps",
        "3",
        "--n",
        "2",
    ])
    .unwrap();
    // Score the individual PNGs against the MNIST test set; generate, then score;
    // and measure the likelihood bound on two test images.
    let mnist = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/mnist");
    let samples = out.join("samples");
    run(&["eval", "--images", samples.to_str().unwrap(), "--mnist", mnist]).unwrap();
    run(&["eval", "--checkpoint", c, "--steps", "2", "--n", "3"]).unwrap();
    assert!(out.join("eval-samples.png").exists());
    run(&[
        "eval",
        "--checkpoint",
        c,
        "--nll",
        "--nll-images",
        "2",
        "--mnist",
        mnist,
    ])
    .unwrap();
}

#[test]
fn a_conditional_model_samples_a_requested_class_with_guidance() {
    let out = train_tiny("cond", 2, &["--conditional"]);
    let c = out.join("checkpoint.safetensors");
    let c = c.to_str().unwrap();
    run(&[
        "sample",
        "--checkpoint",
        c,
        "--steps",
        "2",
        "--n",
        "2",
        "--class",
        "3",
        "--guidance",
        "2",
    ])
    .unwrap();
    run(&[
        "eval",
        "--checkpoint",
        c,
        "--steps",
        "2",
        "--n",
        "2",
        "--class",
        "3",
        "--guidance",
        "1",
    ])
    .unwrap();
    let e = out.join("ema.safetensors");
    run(&[
        "sample",
        "--checkpoint",
        e.to_str().unwrap(),
        "--steps",
        "2",
        "--n",
        "2",
        "--class",
        "9",
    ])
    .unwrap();
    assert!(
        run(&["sample", "--checkpoint", c, "--steps", "2", "--class", "10"])
            .unwrap_err()
            .contains("--class")
    );
}

#[test]
fn bad_flags_and_files_give_clear_errors() {
    let err = |args: &[&str]| run(args).unwrap_err();
    assert!(err(&["train", "--bogus"]).contains("unexpected argument '--bogus'"));
    assert!(err(&["train", "--batch", "0"]).contains("invalid value '0' for '--batch <BATCH>'"));
    assert!(err(&["train", "--lr", "fast"]).contains("invalid value 'fast' for '--lr <LR>'"));
    assert!(
        err(&["train", "--config", "imagenet"]).contains("invalid value 'imagenet' for '--config <CONFIG>'")
    );
    assert!(err(&["train", "--data", "/nonexistent/mnist", "--steps", "1"]).contains("/nonexistent/mnist"));
    assert!(err(&["sample", "--checkpoint", "/nonexistent.safetensors"]).contains("/nonexistent.safetensors"));
    assert!(err(&["sample", "--sampler", "euler"]).contains("--sampler"));
    assert!(err(&["frobnicate"]).contains("unrecognized subcommand 'frobnicate'"));
    assert!(err(&["eval", "--calibrate"]).contains("--mnist <DIR>"));
    assert!(err(&["eval", "--images", "/nonexistent/pngs"]).contains("/nonexistent/pngs"));
    assert!(err(&["eval", "--nll"]).contains("--mnist <DIR>"));
    let plain = train_tiny("plain", 1, &[]);
    let ckpt = plain.join("checkpoint.safetensors");
    let unconditional = err(&["sample", "--checkpoint", ckpt.to_str().unwrap(), "--class", "3"]);
    assert!(unconditional.contains("class-conditional"), "{unconditional}");
    assert!(run(&["train", "--help"]).is_ok());
}
