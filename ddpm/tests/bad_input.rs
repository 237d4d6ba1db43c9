//! Bad input gets a clear error and nothing is lost: hostile checkpoint
//! metadata and tensors, every numeric flag out of range, a run directory that
//! already holds a run, a kill between checkpoints, and an update that blows the
//! weights up.

use std::collections::BTreeMap;
use std::path::Path;

use ddpm::app::default_run::fresh_out_dir;
use ddpm::checkpoint::{checkpoint_path, load_model, Weights};
use ddpm::data::embedded_mnist;
use ddpm::error::Error;
use ddpm::train::{train, TrainOptions};
use nn::safetensors;
use tensor::Tensor;

mod common;
use common::{run, temp_dir, tiny_options, train_in, train_tiny};

/// Rewrites the weight file `path` with `edit` applied to its tensors and metadata.
fn edit_file(path: &Path, edit: impl FnOnce(&mut BTreeMap<String, Tensor>, &mut BTreeMap<String, String>)) {
    let file = safetensors::load(path).unwrap();
    let (mut tensors, mut meta) = (file.tensors().clone(), file.metadata().clone());
    edit(&mut tensors, &mut meta);
    safetensors::save(path, tensors.iter(), &meta).unwrap();
}

/// A copy of `src` at `dst` with `edit` applied.
fn edited(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut BTreeMap<String, Tensor>, &mut BTreeMap<String, String>),
) {
    std::fs::copy(src, dst).unwrap();
    edit_file(dst, edit);
}

#[test]
fn hostile_metadata_is_refused_naming_the_field() {
    let out = train_tiny("meta", 1, &[]);
    let ckpt = checkpoint_path(&out);
    let bad = out.join("bad.safetensors");
    let set = |key: &'static str, value: &'static str| {
        move |_: &mut BTreeMap<String, Tensor>, m: &mut BTreeMap<String, String>| {
            m.insert(key.to_string(), value.to_string());
        }
    };
    // Loading for sampling: classes and schedule values.
    for (key, value, message) in [
        ("num_classes", "0", "num_classes \"0\""),
        ("num_classes", "100000000", "num_classes \"100000000\""),
        ("num_classes", "18446744073709551615", "num_classes"),
        ("diffusion_steps", "0", "diffusion_steps \"0\""),
        ("diffusion_steps", "18446744073709551615", "diffusion_steps"),
        ("schedule", "quadratic", "schedule \"quadratic\""),
        ("beta_end", "NaN", "beta_end \"NaN\""),
        ("beta_end", "1.5", "outside (0, 1)"),
        ("objective", "score", "objective \"score\""),
        ("variance", "wide", "variance \"wide\""),
    ] {
        edited(&ckpt, &bad, set(key, value));
        let err = load_model(&bad, None, Weights::Ema).err().unwrap().to_string();
        assert!(
            err.contains(message) && err.contains("bad.safetensors"),
            "{key}={value}: {err}"
        );
        let err = run(&[
            "sample",
            "--checkpoint",
            bad.to_str().unwrap(),
            "--steps",
            "1",
            "--n",
            "1",
        ])
        .unwrap_err();
        assert!(err.contains(message), "{key}={value}: {err}");
    }
    // Resuming: counters at u64::MAX would overflow on the next step.
    for key in ["step", "adam_steps", "ema_updates"] {
        edit_file(&ckpt, set(key, "18446744073709551615"));
        let err = train_in(&out, 3, &["--resume"]).unwrap_err();
        assert!(
            err.contains(key) && err.contains("is not an integer in 0..="),
            "{key}: {err}"
        );
        edit_file(&ckpt, set(key, "1"));
    }
}

#[test]
fn non_finite_or_negative_tensors_are_refused_naming_the_tensor() {
    let out = train_tiny("tensors", 1, &[]);
    let ckpt = checkpoint_path(&out);
    let resume = || train_in(&out, 2, &["--resume"]);
    let poison = |name: &'static str, value: f32| {
        move |t: &mut BTreeMap<String, Tensor>, _: &mut BTreeMap<String, String>| {
            let shape = t[name].shape().to_vec();
            let mut v = t[name].to_vec();
            v[0] = value;
            t.insert(name.to_string(), Tensor::from_vec(v, &shape).unwrap());
        }
    };
    let original = std::fs::read(&ckpt).unwrap();
    for (name, value) in [
        ("adam.v.conv_in.weight", f32::NAN),
        ("adam.v.conv_in.weight", -1.0),
        ("adam.m.conv_in.weight", f32::INFINITY),
        ("model.conv_out.bias", f32::NAN),
        ("ema.conv_out.bias", f32::NEG_INFINITY),
    ] {
        std::fs::write(&ckpt, &original).unwrap();
        edit_file(&ckpt, poison(name, value));
        let err = resume().unwrap_err();
        assert!(
            err.contains(name) && err.contains("corrupt"),
            "{name}={value}: {err}"
        );
    }
    // A plain weight file that is all NaN: sample refuses it instead of drawing a black grid.
    let ema = out.join("ema.safetensors");
    edit_file(&ema, |t, _| {
        for v in t.values_mut() {
            *v = Tensor::full(v.shape(), f32::NAN);
        }
    });
    let err = run(&[
        "sample",
        "--checkpoint",
        ema.to_str().unwrap(),
        "--steps",
        "1",
        "--n",
        "1",
    ])
    .unwrap_err();
    assert!(
        err.contains("holds NaN") && err.contains("ema.safetensors"),
        "{err}"
    );
    assert!(!out.join("samples.png").exists(), "nothing was drawn");
}

#[test]
fn every_numeric_flag_out_of_range_is_a_usage_error_naming_it() {
    let nonsense = ["NaN", "inf", "-inf", "-1", "1e300", "1000000000000000000000"];
    // (command, flag, whether 0 is also out of range)
    let flags: [(&[&str], &str, bool); 31] = [
        (&["train"], "--batch", true),
        (&["train"], "--steps", true),
        (&["train"], "--minutes", true),
        (&["train"], "--lr", true),
        (&["train"], "--warmup", false),
        (&["train"], "--clip", true),
        (&["train"], "--ema", false),
        (&["train"], "--seed", false),
        (&["train"], "--diffusion-steps", true),
        (&["train"], "--checkpoint-every", true),
        (&["train"], "--log-every", true),
        (&["train"], "--threads", true),
        (&["train"], "--min-snr", true),
        (&["train"], "--accumulate", true),
        (&["train"], "--lr-min", false),
        (&["sample"], "--n", true),
        (&["sample"], "--batch", true),
        (&["sample"], "--steps", true),
        (&["sample"], "--eta", false),
        (&["sample"], "--guidance", false),
        (&["sample"], "--class", false),
        (&["sample"], "--seed", false),
        (&["eval"], "--n", true),
        (&["eval"], "--nll-images", true),
        (&["figure", "x0-chain"], "--n", true),
        (&["figure", "x0-chain"], "--columns", true),
        (&["figure", "shared-xt"], "--copies", true),
        (&["figure", "shared-xt"], "--stops", false),
        (&["figure", "interpolate"], "--t", false),
        (&["toy"], "--steps", true),
        (&["toy"], "--samples", true),
    ];
    for (command, flag, zero_bad) in flags {
        let zero = zero_bad.then_some("0");
        for value in nonsense.iter().copied().chain(zero) {
            // `--flag=-inf`: clap reads a separate "-inf" as a flag of its own.
            let joined = format!("{flag}={value}");
            let mut args = command.to_vec();
            args.push(&joined);
            let err = run(&args).unwrap_err();
            assert!(err.contains(flag) && err.contains(value), "{args:?}: {err}");
        }
    }
    // A separate negative number is read as the flag's value, and refused.
    for (flag, value) in [("--lr", "-1"), ("--batch", "-3")] {
        let err = run(&["train", flag, value]).unwrap_err();
        assert!(err.contains(flag) && err.contains(value), "{err}");
    }
    // The ones the issue found: a time budget that overflowed a Duration, a
    // batch that aborted on allocation.
    for (flag, value) in [
        ("--minutes", "inf"),
        ("--minutes", "1e300"),
        ("--batch", "1000000000000"),
    ] {
        let err = run(&["train", flag, value]).unwrap_err();
        assert!(err.contains("invalid value"), "{err}");
    }
}

#[test]
fn a_directory_that_holds_a_run_is_not_overwritten_without_being_asked() {
    let out = train_tiny("twice", 1, &[]);
    let csv = std::fs::read(out.join("loss.csv")).unwrap();
    let ckpt = std::fs::read(checkpoint_path(&out)).unwrap();
    let again = |extra: &[&str]| train_in(&out, 1, extra);
    let err = again(&[]).unwrap_err();
    assert!(
        err.contains("already holds a training run")
            && err.contains("--resume")
            && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(out.join("loss.csv")).unwrap(),
        csv,
        "the log is untouched"
    );
    assert_eq!(
        std::fs::read(checkpoint_path(&out)).unwrap(),
        ckpt,
        "the checkpoint is untouched"
    );
    assert!(again(&["--resume", "--overwrite"])
        .unwrap_err()
        .contains("cannot be used with"));
    again(&["--overwrite", "--seed", "5"]).unwrap();
    assert_ne!(
        std::fs::read(checkpoint_path(&out)).unwrap(),
        ckpt,
        "started over"
    );
    let rows = std::fs::read_to_string(out.join("loss.csv"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(rows, 2, "a fresh log: header and one row");
    // --resume with nothing to resume says so.
    let empty = temp_dir("nothing");
    let err = train_in(&empty, 1, &["--resume"]).unwrap_err();
    assert!(
        err.contains("no") && err.contains("checkpoint.safetensors"),
        "{err}"
    );
    // The default run picks the next free directory instead of replacing one.
    let base = empty.join("default");
    assert_eq!(fresh_out_dir(&base), base);
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("loss.csv"), "x").unwrap();
    assert_eq!(fresh_out_dir(&base), empty.join("default-2"));
}

fn options(out: &Path, steps: u64) -> TrainOptions {
    TrainOptions {
        checkpoint_every: 2,
        ..tiny_options(out, steps)
    }
}

#[test]
fn after_a_kill_the_resumed_log_holds_each_step_once() {
    let data = embedded_mnist().unwrap();
    let (straight, killed) = (temp_dir("straight"), temp_dir("killed"));
    train(&data, &options(&straight, 4), |_| {}).unwrap();
    // A run killed after step 3, with its last checkpoint at step 2: the log
    // holds step 3 and a partial row of step 4.
    train(&data, &options(&killed, 2), |_| {}).unwrap();
    let log = killed.join("loss.csv");
    let three = std::fs::read_to_string(straight.join("loss.csv"))
        .unwrap()
        .lines()
        .nth(3)
        .unwrap()
        .to_string();
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str(&format!("{three}\n4,0.12"));
    std::fs::write(&log, text).unwrap();
    let resumed = TrainOptions {
        resume: true,
        ..options(&killed, 4)
    };
    train(&data, &resumed, |_| {}).unwrap();
    let steps = |p: &Path| -> Vec<(String, String)> {
        std::fs::read_to_string(p.join("loss.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[0].to_string(), f[1].to_string())
            })
            .collect()
    };
    assert_eq!(
        steps(&killed),
        steps(&straight),
        "steps 1..4 once each, with the same losses"
    );
}

#[test]
fn an_update_that_makes_a_weight_non_finite_stops_before_it_is_saved() {
    let data = embedded_mnist().unwrap();
    let out = temp_dir("inf-update");
    // Adam's first step moves every weight by exactly lr: lr = inf makes them
    // infinite while the loss and gradient of that step are finite.
    let opts = TrainOptions {
        lr: f32::INFINITY,
        warmup: 0,
        checkpoint_every: 1,
        ..options(&out, 3)
    };
    let err = train(&data, &opts, |_| {}).err().expect("the run must stop");
    let Error::NonFinite { step, what } = &err else {
        panic!("unexpected error {err}")
    };
    assert_eq!(*step, 0);
    assert!(what.starts_with("weight"), "{err}");
    assert!(!checkpoint_path(&out).exists(), "nothing non-finite was saved");
}
