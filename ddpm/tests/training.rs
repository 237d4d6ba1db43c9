//! The optimiser's side of training: the learning rate's decay and its
//! horizon, and gradient accumulation.
//!
//! - The logged rates against the closed form over `--steps`, for both shapes;
//!   the horizon of a time-budgeted run estimated, recorded and reused.
//! - `--accumulate K`: one step over K micro-batches is the step of one batch of
//!   their images (gradients, loss and the update), and the effective batch is
//!   reported and recorded.
//! - A run killed and resumed computes the uninterrupted run's losses and rates
//!   with all of it on (cosine decay, accumulation, a v objective, min-SNR).

use std::path::Path;
use std::time::Duration;

use ddpm::checkpoint::TrainState;
use ddpm::contract::{Contract, Objective};
use ddpm::data::embedded_mnist;
use ddpm::loss::loss_at;
use ddpm::train::{
    estimate_horizon, micro_batch, train, train_step, Event, LrDecay, TrainOptions, HORIZON_AFTER_STEPS,
};
use nn::optim::Optimizer;
use tensor::Tensor;

mod common;
use common::{program, run, temp_dir, tiny_options, train_in};

/// The rows of a run's `loss.csv`: (step, loss, lr), as written.
fn log_rows(out: &Path) -> Vec<(u64, String, f32)> {
    std::fs::read_to_string(out.join("loss.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[1].to_string(), f[4].parse().unwrap())
        })
        .collect()
}

/// The closed form: warm-up `base (s + 1) / warmup`, then `min + (base - min)
/// left(q)` with `q = min(1, (s - warmup) / (horizon - warmup))`.
fn closed_form(decay: LrDecay, base: f64, min: f64, warmup: u64, horizon: u64, s: u64) -> f64 {
    if s < warmup {
        return base * (s + 1) as f64 / warmup as f64;
    }
    let q = ((s - warmup) as f64 / (horizon - warmup) as f64).min(1.0);
    let left = match decay {
        LrDecay::None => 1.0,
        LrDecay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * q).cos()),
        LrDecay::Linear => 1.0 - q,
    };
    min + (base - min) * left
}

#[test]
fn the_horizon_estimate_is_the_step_reached_at_the_measured_pace() {
    // 500 steps in 95 s (0.19 s/step) with 505 s of a 600 s budget left: 2,657 more.
    assert_eq!(estimate_horizon(500, 500, 95.0, 600.0), 500 + 2657);
    // A resumed run at step 1,000 that timed 20 steps in 4 s of a 60 s budget.
    assert_eq!(estimate_horizon(1000, 20, 4.0, 60.0), 1000 + 280);
    // Out of time: the horizon is now.
    assert_eq!(estimate_horizon(7, 7, 61.0, 60.0), 7);
}

/// With `--steps N` the decay ends at N: the logged rates against the closed
/// form, for both shapes, and `--lr-min` defaulting to a tenth of `--lr`.
#[test]
fn the_logged_learning_rates_follow_the_closed_form_to_the_last_step() {
    for (decay, name, floor) in [
        (LrDecay::Cosine, "cosine", Some("2e-4")),
        (LrDecay::Linear, "linear", None),
    ] {
        let out = temp_dir(&format!("lr-{name}"));
        let mut flags = vec!["--lr", "1e-3", "--warmup", "2", "--lr-decay", name];
        if let Some(f) = floor {
            flags.extend(["--lr-min", f]);
        }
        train_in(&out, 7, &flags).unwrap();
        let min = floor.map_or(1e-4, |f| f.parse().unwrap());
        let rows = log_rows(&out);
        assert_eq!(rows.len(), 7);
        for (step, _, lr) in rows {
            let want = closed_form(decay, 1e-3, min, 2, 7, step - 1);
            assert!(
                (lr as f64 - want).abs() < 1e-9,
                "{name}, step {step}: {lr} vs {want}"
            );
        }
        let meta = nn::safetensors::load(&out.join("checkpoint.safetensors"))
            .unwrap()
            .metadata()
            .clone();
        assert_eq!(meta["lr_horizon"], "7", "{name}");
    }
    let err = |flags: &[&str]| run(&[&["train", "--steps", "1"], flags].concat()).unwrap_err();
    assert!(err(&["--lr-min", "1e-5"]).contains("--lr-min needs --lr-decay"));
    assert!(err(&["--lr-decay", "cosine", "--lr-min", "0.5"]).contains("--lr-min 0.5 is above --lr"));
    assert!(err(&["--lr-decay", "step"]).contains("--lr-decay"));
}

/// A run killed after step 3 (its last checkpoint at step 2) and resumed computes
/// the uninterrupted run's losses and rates, with the cosine decay over
/// `--steps`, two micro-batches a step, a v objective and min-SNR weighting.
#[test]
fn a_resumed_run_with_a_decaying_rate_and_accumulation_computes_the_same_losses() {
    let data = embedded_mnist().unwrap();
    let (straight, killed) = (temp_dir("lr-straight"), temp_dir("lr-killed"));
    let options = |out: &Path| TrainOptions {
        lr_decay: LrDecay::Cosine,
        warmup: 1,
        min_snr: Some(5.0),
        accumulate: 2,
        contract: Contract {
            objective: Objective::V,
            ..tiny_options(out, 5).contract
        },
        ..tiny_options(out, 5)
    };
    // The straight run; at step 3 the files on disk are those of a run killed
    // then (the checkpoint of step 2, the log up to step 3): copy them.
    train(&data, &options(&straight), |event| {
        if let Event::Step(p) = event {
            if p.step == 3 {
                for f in ["checkpoint.safetensors", "loss.csv"] {
                    std::fs::copy(straight.join(f), killed.join(f)).unwrap();
                }
            }
        }
    })
    .unwrap();
    let copied = log_rows(&killed);
    assert_eq!(copied.len(), 3, "the copy holds the log up to step 3");
    let resumed = TrainOptions {
        resume: true,
        ..options(&killed)
    };
    let (state, summary) = train(&data, &resumed, |_| {}).unwrap();
    assert_eq!((state.step, summary.steps_this_run), (5, 3));
    let (a, b) = (log_rows(&straight), log_rows(&killed));
    assert_eq!(a, b, "the same losses and rates, interrupted or not");
    // The rates decay to the floor over the 5 steps.
    for (step, _, lr) in a {
        let want = closed_form(LrDecay::Cosine, 1e-3, 1e-4, 1, 5, step - 1);
        assert!((lr as f64 - want).abs() < 1e-9, "step {step}: {lr} vs {want}");
    }
}

/// Without `--steps` the horizon is estimated after the warm-up, said in a line,
/// recorded in the checkpoint, and reused by a resumed run; the rates are the
/// peak one until it is fixed, then the closed form with it.
#[test]
fn a_time_budgeted_run_estimates_records_and_reuses_its_horizon() {
    let data = embedded_mnist().unwrap();
    let out = temp_dir("lr-budget");
    let options = |seconds: f64| TrainOptions {
        max_steps: None,
        time_budget: Some(Duration::from_secs_f64(seconds)),
        lr_decay: LrDecay::Linear,
        warmup: 0,
        checkpoint_every: 1_000_000,
        ..tiny_options(&out, 1)
    };
    let mut lines = Vec::new();
    train(&data, &options(1.5), |event| {
        if let Event::Line(l) = event {
            lines.push(l)
        }
    })
    .unwrap();
    let estimate = lines
        .iter()
        .find(|l| l.starts_with("lr horizon ~"))
        .unwrap_or_else(|| panic!("no horizon line in {lines:?}"));
    // "lr horizon ~1,234 steps (estimated at step 5 from 0.012 s/step and the time left)"
    let number = |after: &str| -> u64 {
        let rest = &estimate[estimate.find(after).unwrap() + after.len()..];
        rest.split(' ').next().unwrap().replace(',', "").parse().unwrap()
    };
    let (horizon, fixed_at) = (number("~"), number("at step "));
    let meta = nn::safetensors::load(&out.join("checkpoint.safetensors"))
        .unwrap()
        .metadata()
        .clone();
    assert_eq!(meta["lr_horizon"], horizon.to_string());
    let rows = log_rows(&out);
    assert!(
        (1..=HORIZON_AFTER_STEPS).contains(&fixed_at) && fixed_at < rows.len() as u64,
        "{estimate}"
    );
    let check = |rows: &[(u64, String, f32)]| {
        for (step, _, lr) in rows {
            let s = step - 1;
            let want = if s < fixed_at {
                1e-3
            } else {
                closed_form(LrDecay::Linear, 1e-3, 1e-4, 0, horizon, s)
            };
            assert!((*lr as f64 - want).abs() < 1e-9, "step {step}: {lr} vs {want}");
        }
    };
    check(&rows);
    let done = rows.len();
    let mut lines = Vec::new();
    let resumed = TrainOptions {
        resume: true,
        ..options(0.5)
    };
    train(&data, &resumed, |event| {
        if let Event::Line(l) = event {
            lines.push(l)
        }
    })
    .unwrap();
    assert!(
        lines.iter().any(|l| l.contains("the checkpoint's horizon")),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("lr horizon ~")), "{lines:?}");
    let rows = log_rows(&out);
    assert!(rows.len() > done, "the resumed run trained");
    check(&rows);
}

/// The largest absolute difference of two tensors' values.
fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.to_vec()
        .iter()
        .zip(b.to_vec())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The largest absolute value of a tensor.
fn max_abs(a: &Tensor) -> f32 {
    a.to_vec().iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// One step over 3 micro-batches of 2 images is one step on the batch of their 6
/// images (the same images, steps and noise, drawn by `micro_batch`): the same
/// loss (the mean of the micro-batches'), gradients and updated weights, to
/// float rounding. (mnist-tiny has no dropout, so nothing else is random.)
#[test]
fn accumulated_micro_batches_make_the_step_of_one_big_batch() {
    let data = embedded_mnist().unwrap();
    let out = temp_dir("accumulate");
    let opts = TrainOptions {
        accumulate: 3,
        clip: 1e6,
        min_snr: Some(5.0),
        ..tiny_options(&out, 1)
    };
    let schedule = opts.contract.noise_schedule();
    let fresh = || TrainState::new(&opts.contract, opts.lr, opts.ema_decay, opts.seed).unwrap();
    let mut accumulated = fresh();
    let (loss, norm) = train_step(&mut accumulated, &data, &schedule, 1e-3, &opts).unwrap();
    // One optimiser step, one EMA update, for three micro-batches.
    assert_eq!(accumulated.step, 1);
    assert_eq!(accumulated.optimizer.state().unwrap().0, 1);
    assert_eq!(accumulated.ema.updates(), 1);

    let parts: Vec<_> = (0..3)
        .map(|m| micro_batch(&data, &schedule, &opts, 0, m).unwrap())
        .collect();
    assert!(
        parts[0].t != parts[1].t && parts[1].t != parts[2].t,
        "the micro-batches draw anew"
    );
    let cat = |f: &dyn Fn(usize) -> Tensor| {
        let ts: Vec<Tensor> = (0..3).map(f).collect();
        Tensor::concat(&ts.iter().collect::<Vec<_>>(), 0).unwrap()
    };
    let x0 = cat(&|m| parts[m].x0.clone());
    let eps = cat(&|m| parts[m].eps.clone());
    let t: Vec<usize> = parts.iter().flat_map(|p| p.t.clone()).collect();
    let mut big = fresh();
    big.optimizer.zero_grad();
    let whole = loss_at(&big.model, &schedule, opts.loss(), &x0, &t, &eps, None).unwrap();
    let whole_loss = whole.value().item().unwrap();
    whole.backward().unwrap();
    assert!(
        (loss - whole_loss).abs() < 1e-5 * whole_loss,
        "the logged loss {loss} is the big batch's {whole_loss}"
    );
    let mut sq = 0.0f64;
    for (a, b) in accumulated.params().iter().zip(big.params()) {
        let (ga, gb) = (a.grad().unwrap(), b.grad().unwrap());
        let tol = 1e-5 * max_abs(&gb) + 1e-9;
        assert!(max_diff(&ga, &gb) <= tol, "{}", max_diff(&ga, &gb));
        sq += gb.to_vec().iter().map(|g| (*g as f64).powi(2)).sum::<f64>();
    }
    assert!(
        (norm as f64 - sq.sqrt()).abs() < 1e-4 * sq.sqrt(),
        "{norm} vs {}",
        sq.sqrt()
    );
    big.optimizer.set_lr(1e-3);
    big.optimizer.step().unwrap();
    for (a, b) in accumulated.params().iter().zip(big.params()) {
        assert!(max_diff(&a.value(), &b.value()) < 1e-7, "the updates differ");
    }
    // One micro-batch of 6 images is another run: its step differs.
    let six = TrainOptions {
        batch: 6,
        accumulate: 1,
        ..opts.clone()
    };
    let mut other = fresh();
    let (six_loss, _) = train_step(&mut other, &data, &schedule, 1e-3, &six).unwrap();
    assert_ne!(six_loss, loss);
}

#[test]
fn the_effective_batch_is_reported_and_recorded() {
    let out = temp_dir("accumulate-program");
    let o = out.to_str().unwrap();
    let (code, stdout) = program(&[
        "train",
        "--config",
        "mnist-tiny",
        "--batch",
        "2",
        "--accumulate",
        "3",
        "--steps",
        "2",
        "--out",
        o,
    ]);
    assert_eq!(code, 0, "{stdout}");
    let first = stdout.lines().next().unwrap();
    assert!(first.contains("batch 6 (3 micro-batches of 2)"), "{first}");
    let meta = nn::safetensors::load(&out.join("checkpoint.safetensors"))
        .unwrap()
        .metadata()
        .clone();
    let keys = ["batch", "accumulate", "effective_batch"].map(|k| meta[k].as_str());
    assert_eq!(keys, ["2", "3", "6"]);
    // The batch may change on resume; the loss log goes on.
    train_in(&out, 3, &["--resume", "--accumulate", "2"]).unwrap();
    assert_eq!(log_rows(&out).len(), 3);
    assert!(run(&["train", "--accumulate", "0"])
        .unwrap_err()
        .contains("--accumulate"));
}
