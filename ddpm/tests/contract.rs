//! The model's contract travels with its weights: a model trained on the cosine
//! schedule with `T = 50` is sampled, scored and drawn on that diffusion by every
//! command, and a resume that contradicts it is refused.
//!
//! Each check runs the program and recomputes its output with the library on
//! the right schedule (equal) and on the linear `T = 1000` one that the program
//! used to assume (different), so it fails if a command ignores the file.

use ddpm::checkpoint::{load_model, Weights};
use ddpm::contract::{Contract, Objective};
use ddpm::data::{load_mnist, Split};
use ddpm::diffusion::normal;
use ddpm::figures::x0_chain;
use ddpm::likelihood::dataset_bound;
use ddpm::sample::{sample, Chain, Condition, Request, Sampler, Variance};
use ddpm::schedule::{BetaSchedule, NoiseSchedule};
use ddpm::unet::UNet;
use rand::rngs::StdRng;
use rand::SeedableRng;

mod common;
use common::{
    grid_pixels, pixels, printed_nll, program, run, temp_dir, train_in, train_tiny, TempDir, MNIST,
};

fn cosine_run(name: &str) -> TempDir {
    train_tiny(name, 2, &["--schedule", "cosine", "--diffusion-steps", "50"])
}

#[test]
fn both_weight_files_record_the_whole_contract() {
    let out = cosine_run("contract-files");
    let want = Contract {
        schedule: BetaSchedule::COSINE,
        diffusion_steps: 50,
        ..Contract::new(ddpm::config::UNetConfig::named("mnist-tiny").unwrap())
    };
    for file in ["checkpoint.safetensors", "ema.safetensors"] {
        let (_, contract) = load_model(&out.join(file), None, Weights::Ema).unwrap();
        assert_eq!(contract, want, "{file}");
        let meta = nn::safetensors::load(&out.join(file)).unwrap().metadata().clone();
        for key in [
            "config",
            "num_classes",
            "variance",
            "schedule",
            "cosine_s",
            "diffusion_steps",
            "objective",
        ] {
            assert!(meta.contains_key(key), "{file} lacks {key}");
        }
        assert_eq!(meta["objective"], Objective::Eps.name());
    }
    // A file without the new keys reads as linear, T = 1000, eps.
    let old = std::collections::BTreeMap::from([("config".to_string(), "mnist-tiny".to_string())]);
    let c = Contract::from_metadata(&old, None).unwrap();
    assert_eq!(
        (c.schedule, c.diffusion_steps, c.objective),
        (BetaSchedule::LINEAR, 1000, Objective::Eps)
    );
}

#[test]
fn sample_eval_nll_and_figures_use_the_recorded_schedule() {
    let out = cosine_run("contract-use");
    let ema = out.join("ema.safetensors");
    let e = ema.to_str().unwrap();
    let (model, _) = load_model(&ema, None, Weights::Ema).unwrap();
    let cosine = NoiseSchedule::new(BetaSchedule::COSINE, 50);
    let linear = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let scratch = temp_dir("contract-ref");

    // sample: DDIM, 2 steps, seed 3.
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
    let draw = |s: &NoiseSchedule| {
        let request = Request {
            sampler: Sampler::Ddim { steps: 2, eta: 0.0 },
            spacing: None,
            n: 4,
            batch: 64,
            labels: None,
            guidance: 0.0,
            clip: true,
        };
        sample(
            &model,
            Objective::Eps,
            s,
            request,
            &mut StdRng::seed_from_u64(3),
            |_, _| {},
        )
        .unwrap()
        .images
    };
    let got = pixels(&out.join("samples.png"));
    assert_eq!(
        got,
        grid_pixels(&draw(&cosine), 2, &scratch, "c.png"),
        "sample used another schedule"
    );
    assert_ne!(got, grid_pixels(&draw(&linear), 2, &scratch, "l.png"));

    // figure x0-chain: the same chain, recorded along the way.
    run(&[
        "figure",
        "x0-chain",
        "--checkpoint",
        e,
        "--steps",
        "3",
        "--n",
        "2",
        "--columns",
        "3",
    ])
    .unwrap();
    let chain_of = |s: &NoiseSchedule| {
        let sampler = Sampler::Ancestral {
            steps: 3,
            variance: Variance::Beta,
        };
        let chain = Chain::new(&model, Objective::Eps, s, sampler, Condition::NONE).unwrap();
        let mut rng = StdRng::seed_from_u64(0);
        let x_t = normal(&[2, 1, 28, 28], &mut rng);
        x0_chain(&chain, x_t, 3, &mut rng).unwrap()
    };
    let got = pixels(&out.join("x0-chain.png"));
    assert_eq!(got, grid_pixels(&chain_of(&cosine), 3, &scratch, "xc.png"));
    assert_ne!(got, grid_pixels(&chain_of(&linear), 3, &scratch, "xl.png"));

    // eval --nll on two test images: the printed bound is the cosine one.
    let printed = printed_nll(e);
    let bound = |m: &UNet, s: &NoiseSchedule| {
        let x0 = load_mnist(MNIST, Split::Test).unwrap().batch(&[0, 1]).unwrap().0;
        let b = dataset_bound(
            m,
            Objective::Eps,
            s,
            Variance::Beta,
            &[x0],
            &mut StdRng::seed_from_u64(0),
            |_, _| {},
        )
        .unwrap();
        format!("{:.3}", b.total())
    };
    assert_eq!(printed, bound(&model, &cosine));
    assert_ne!(printed, bound(&model, &linear));
}

#[test]
fn resuming_with_contradicting_flags_is_refused_naming_both_values() {
    let out = train_tiny("contract-resume", 1, &[]);
    let resume = |extra: &[&str]| train_in(&out, 2, &[&["--resume"], extra].concat());
    let cases: [(&[&str], &str); 5] = [
        (
            &["--schedule", "cosine"],
            "schedule: the checkpoint has linear, the flags ask for cosine",
        ),
        (
            &["--diffusion-steps", "500"],
            "diffusion_steps: the checkpoint has 1000, the flags ask for 500",
        ),
        (
            &["--learn-sigma"],
            "variance: the checkpoint has fixed, the flags ask for learned",
        ),
        (
            &["--conditional"],
            "num_classes: the checkpoint has none, the flags ask for 10",
        ),
        (
            &["--seed", "4"],
            "seed: the checkpoint has 0, the flags ask for 4",
        ),
    ];
    for (flags, message) in cases {
        let err = resume(flags).unwrap_err();
        assert!(err.contains(message), "{flags:?}: {err}");
    }
    let o = out.to_str().unwrap();
    let err = run(&[
        "train",
        "--config",
        "mnist-small",
        "--steps",
        "2",
        "--resume",
        "--out",
        o,
    ])
    .unwrap_err();
    assert!(
        err.contains("config: the checkpoint has mnist-tiny, the flags ask for mnist-small"),
        "{err}"
    );
    // The flags of the run itself resume it.
    resume(&[]).unwrap();
}

#[test]
fn usage_errors_exit_2_and_failures_exit_1() {
    let (code, _) = program(&["train", "--batch", "0"]);
    assert_eq!(code, 2);
    let (code, _) = program(&["sample", "--checkpoint", "/nonexistent/checkpoint.safetensors"]);
    assert_eq!(code, 1);
    let (code, help) = program(&["sample", "--help"]);
    assert_eq!(code, 0);
    assert!(
        help.contains("--steps <N>") && help.contains("[default: ema]"),
        "{help}"
    );
}
