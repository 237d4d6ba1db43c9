//! The benchmark table in seconds, for people who do not want criterion's full run.
//!
//! ```text
//! cargo run --release --bin quickbench                # matmul and conv tables
//! cargo run --release --bin quickbench -- conv --reps 9
//! cargo run --release --bin quickbench -- conv --no-short   # matrixmultiply for every product
//! cargo run --release --bin quickbench -- conv --no-winograd   # im2col for every convolution
//! cargo run --release --bin quickbench -- conv --simd avx2      # a lower SIMD level (or TENSOR_SIMD=avx2)
//! cargo run --release --bin quickbench -- step               # mnist-small training and sampling steps
//! cargo run --release --bin quickbench -- step --config cifar10 --batch 8 --threads 1
//! cargo run --release --bin quickbench -- cifar10            # cifar10's convolutions and attention products
//! cargo run --release --features mm-threading --bin quickbench -- raw-threaded
//! ```
//!
//! Every figure is GFLOP/s, the median of `--reps` timed runs after one warm-up,
//! at 1 thread and at all cores (rayon pools of that size). Matmul counts
//! `2 m k n` flops; a 3x3 convolution `2 B Cout H W Cin 9` forward and twice that
//! for the backward pair (input and weight gradients). A convolution on the
//! Winograd path does fewer multiplications than that count; its figure is the
//! effective rate, the direct convolution's flops over the time taken.
//!
//! `step` times whole U-Net steps (`benches/unet_step.rs`): a training step as
//! `ddpm train` runs it and a sampling step (one network evaluation under
//! `no_grad`), seconds and images per second, then one more run of each with the
//! per-op profiler on ([`autograd::profile`]) and its table: where the step's
//! time goes. It runs on one process-wide pool of `--threads` threads (default
//! all cores), since a model cannot move between threads.
//!
//! `raw-threaded` times bare `matrixmultiply::sgemm` with its own thread pool
//! (`MATMUL_NUM_THREADS`, default all cores, at most 4): it needs the
//! `mm-threading` feature, which turns that pool on for every sgemm call in the
//! process, so it runs alone, in a build of its own.

use std::time::{Duration, Instant};

use autograd::profile::Profile;

use tensor::conv::{conv2d_backward, Conv2dParams};

#[path = "common.rs"]
mod common;
use common::{random, raw_sgemm, MATMUL_SHAPES};
#[path = "unet_step.rs"]
mod unet_step;
use unet_step::{SampleBench, TrainBench};

/// Median seconds of `reps` runs of `f`, after one untimed warm-up run.
fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// GFLOP/s of `f` (which does `flops` floating-point operations) on `threads` threads.
fn gflops(threads: usize, reps: usize, flops: f64, f: impl FnMut() + Send) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    pool.install(|| flops / median_secs(reps, f) / 1e9)
}

/// The five batch-64 3x3 convolutions of the U-Net: `[B, Cin, H, W] -> Cout`.
const CONV_SHAPES: [([usize; 4], usize); 5] = [
    ([64, 32, 28, 28], 32),
    ([64, 64, 14, 14], 64),
    ([64, 64, 7, 7], 64),
    ([64, 96, 28, 28], 32),
    ([64, 32, 14, 14], 64),
];

fn matmul_table(all: usize, reps: usize) {
    println!("\n## matmul (GFLOP/s; ours = Tensor::matmul, raw = bare matrixmultiply::sgemm)\n");
    println!("| m x k x n | raw, 1 thread | ours, 1 thread | ours/raw | ours, {all} threads | scaling |");
    println!("|---|---|---|---|---|---|");
    for &(m, k, n) in &MATMUL_SHAPES {
        let flops = 2.0 * (m * k * n) as f64;
        let reps = if flops > 4e9 { reps.min(3) } else { reps };
        let (a, b) = (random(&[m, k], 1), random(&[k, n], 2));
        let (av, bv) = (a.to_vec(), b.to_vec());
        let mut c = vec![0.0; m * n];
        let raw = gflops(1, reps, flops, || raw_sgemm(&av, &bv, &mut c, m, k, n));
        let one = gflops(1, reps, flops, || drop(a.matmul(&b).expect("shapes agree")));
        let many = gflops(all, reps, flops, || drop(a.matmul(&b).expect("shapes agree")));
        println!(
            "| {m}x{k}x{n} | {raw:.1} | {one:.1} | {:.2} | {many:.1} | {:.2}x |",
            one / raw,
            many / one
        );
    }
}

/// The `cifar10` config's 3x3 convolutions at batch 8, one of each distinct
/// shape: the four levels (128 channels at 32x32, 256 below) and the widest
/// inputs of the up path (the concatenations: 384 -> 128 at 32x32, 512 -> 256
/// at 16x16).
const CIFAR_CONV_SHAPES: [([usize; 4], usize); 6] = [
    ([8, 128, 32, 32], 128),
    ([8, 256, 16, 16], 256),
    ([8, 256, 8, 8], 256),
    ([8, 256, 4, 4], 256),
    ([8, 384, 32, 32], 128),
    ([8, 512, 16, 16], 256),
];

/// `cifar10`'s attention products at 16x16 (256 positions, 256 channels, one
/// head) for a batch of 8: `q k^T` and `softmax(.) v`, as batched
/// `[8, 256, 256] x [8, 256, 256]` matmuls, and the q/k/v projection of all
/// positions, `[2048, 256] x [256, 256]`.
const CIFAR_MATMUL_SHAPES: [(usize, usize, usize, usize); 2] = [(8, 256, 256, 256), (1, 2048, 256, 256)];

/// The `cifar10` section: its convolutions and attention products.
fn cifar_tables(all: usize, reps: usize) {
    conv_table("conv2d 3x3 of cifar10, batch 8", &CIFAR_CONV_SHAPES, all, reps);
    println!("\n## cifar10 attention matmuls (GFLOP/s, Tensor::matmul)\n");
    println!("| batch x m x k x n | 1 thread | {all} threads | scaling |");
    println!("|---|---|---|---|");
    for &(batch, m, k, n) in &CIFAR_MATMUL_SHAPES {
        let flops = 2.0 * (batch * m * k * n) as f64;
        let (a, b) = (random(&[batch, m, k], 1), random(&[batch, k, n], 2));
        let product = || drop(a.matmul(&b).expect("shapes agree"));
        let (one, many) = (gflops(1, reps, flops, product), gflops(all, reps, flops, product));
        println!(
            "| {batch}x{m}x{k}x{n} | {one:.1} | {many:.1} | {:.2}x |",
            many / one
        );
    }
}

fn conv_table(title: &str, shapes: &[([usize; 4], usize)], all: usize, reps: usize) {
    println!("\n## {title}, stride 1, padding 1 (GFLOP/s)\n");
    println!("| input -> Cout | fwd, 1 thread | fwd, {all} | fwd+bwd, 1 thread | fwd+bwd, {all} | scaling (fwd+bwd) |");
    println!("|---|---|---|---|---|---|");
    let params = Conv2dParams {
        stride: 1,
        padding: 1,
    };
    for &(shape, cout) in shapes {
        let [b, cin, h, w] = shape;
        let x = random(&shape, 3);
        let wt = random(&[cout, cin, 3, 3], 4);
        let bias = random(&[cout], 5);
        let fwd_flops = 2.0 * (b * cout * h * w * cin * 9) as f64;
        let forward = || drop(x.conv2d(&wt, Some(&bias), params).expect("valid conv"));
        let both = || {
            let y = x.conv2d(&wt, Some(&bias), params).expect("valid conv");
            drop(conv2d_backward(&x, &wt, &y, params, true).expect("valid conv"));
        };
        let f1 = gflops(1, reps, fwd_flops, forward);
        let fa = gflops(all, reps, fwd_flops, forward);
        let b1 = gflops(1, reps, 3.0 * fwd_flops, both);
        let ba = gflops(all, reps, 3.0 * fwd_flops, both);
        println!(
            "| {shape:?} -> {cout} | {f1:.1} | {fa:.1} | {b1:.1} | {ba:.1} | {:.2}x |",
            ba / b1
        );
    }
}

/// `profile` (collected over `steps` steps) as a markdown table, one row per op
/// kind with its calls, forward and backward milliseconds per step and its share
/// of the profiled time, largest first, then the total.
pub fn profile_table(profile: &Profile, steps: usize) -> String {
    let per_step = |d: Duration| d.as_secs_f64() * 1e3 / steps as f64;
    let total: Duration = profile.values().map(|l| l.total()).sum();
    let mut lines: Vec<_> = profile.iter().collect();
    lines.sort_by_key(|l| std::cmp::Reverse(l.1.total()));
    let mut out =
        String::from("| op | calls/step | forward ms | backward ms | share |\n|---|---|---|---|---|\n");
    for (name, line) in lines {
        out += &format!(
            "| {name} | {} | {:.1} | {:.1} | {:.1}% |\n",
            if line.calls == 0 {
                "-".to_string()
            } else {
                (line.calls / steps as u64).to_string()
            },
            per_step(line.forward),
            per_step(line.backward),
            100.0 * line.total().as_secs_f64() / total.as_secs_f64().max(1e-12)
        );
    }
    out += &format!("| total | | | | {:.1} ms/step |\n", per_step(total));
    out
}

/// Seconds per step of `step` (median of `reps` after one warm-up), then its
/// profile over `reps` more steps.
fn timed_and_profiled(reps: usize, mut step: impl FnMut()) -> (f64, String) {
    let secs = median_secs(reps, &mut step);
    autograd::profile::start();
    for _ in 0..reps {
        step();
    }
    (secs, profile_table(&autograd::profile::finish(), reps))
}

fn step_table(config: &str, batch: usize, reps: usize) {
    let threads = rayon::current_num_threads();
    let mut train = TrainBench::new(config, batch);
    let (train_secs, train_profile) = timed_and_profiled(reps, || {
        train.step();
    });
    let sample = SampleBench::new(config, batch);
    let (sample_secs, sample_profile) = timed_and_profiled(reps, || sample.step());
    println!("\n## {config}, batch {batch}, {threads} threads\n");
    println!("| step | s/step | images/s |\n|---|---|---|");
    for (name, secs) in [
        ("training", train_secs),
        ("sampling (one network evaluation)", sample_secs),
    ] {
        println!("| {name} | {secs:.3} | {:.1} |", batch as f64 / secs);
    }
    println!("\n### where a training step's time goes ({reps} profiled steps)\n\n{train_profile}");
    println!("### where a sampling step's time goes ({reps} profiled steps)\n\n{sample_profile}");
}

fn raw_threaded_table(reps: usize) {
    let threads = std::env::var("MATMUL_NUM_THREADS").unwrap_or_else(|_| "all cores (max 4)".into());
    println!("\n## raw matrixmultiply::sgemm with its own pool (MATMUL_NUM_THREADS = {threads})\n");
    println!("| m x k x n | GFLOP/s |");
    println!("|---|---|");
    for &(m, k, n) in &MATMUL_SHAPES {
        let flops = 2.0 * (m * k * n) as f64;
        let reps = if flops > 4e9 { reps.min(3) } else { reps };
        let (av, bv) = (random(&[m, k], 1).to_vec(), random(&[k, n], 2).to_vec());
        let mut c = vec![0.0; m * n];
        let g = flops / median_secs(reps, || raw_sgemm(&av, &bv, &mut c, m, k, n)) / 1e9;
        println!("| {m}x{k}x{n} | {g:.1} |");
    }
}

const USAGE: &str = "usage: quickbench [matmul|conv|all|step|cifar10|raw-threaded] [--reps N] [--threads N] \
                     [--simd avx512|avx2|scalar] [--no-short] [--no-winograd] [--config NAME] [--batch N]";

/// Exits with status 2 and the usage after `msg`.
fn usage_error(msg: &str) -> ! {
    eprintln!("quickbench: {msg}\n{USAGE}");
    std::process::exit(2)
}

fn main() {
    let mut what = "all".to_string();
    let mut reps = 5;
    let mut all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (mut config, mut batch) = ("mnist-small".to_string(), 64);
    // TENSOR_SIMD first, so that a bad value is an error here; --simd overrides it.
    if let Err(e) = tensor::simd::configure_from_env() {
        usage_error(&e.to_string());
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> usize {
            match args.next().map(|v| v.parse::<usize>()) {
                Some(Ok(v)) if v > 0 => v,
                _ => usage_error(&format!("{name} needs a positive integer")),
            }
        };
        match arg.as_str() {
            "--reps" => reps = number("--reps"),
            "--threads" => all = number("--threads"),
            "--simd" => {
                let level = args.next().unwrap_or_default();
                if let Err(e) = tensor::simd::Level::parse(&level).and_then(tensor::simd::set_level) {
                    usage_error(&e.to_string());
                }
            }
            "--batch" => batch = number("--batch"),
            "--config" => {
                config = args.next().unwrap_or_default();
                if let Err(e) = ddpm::config::UNetConfig::named(&config) {
                    usage_error(&e);
                }
            }
            "--no-short" => tensor::gemm::short::set_enabled(false),
            "--no-winograd" => tensor::conv::set_winograd_enabled(false),
            "matmul" | "conv" | "all" | "step" | "cifar10" | "raw-threaded" => what = arg,
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            _ => usage_error(&format!("unknown argument {arg:?}")),
        }
    }
    let kernel = if tensor::gemm::short::available() {
        "short products on our own kernel"
    } else {
        "matrixmultiply only"
    };
    let conv = if tensor::conv::winograd_available() {
        "3x3 convolutions by Winograd F(2x2, 3x3)"
    } else {
        "3x3 convolutions by im2col"
    };
    let simd = tensor::simd::level();
    println!(
        "# quickbench: SIMD level {simd}, {all} threads available, median of {reps} runs, {kernel}, {conv}"
    );
    if what == "raw-threaded" {
        if !cfg!(feature = "mm-threading") {
            eprintln!("quickbench: raw-threaded needs `--features mm-threading`");
            std::process::exit(2);
        }
        raw_threaded_table(reps);
        return;
    }
    if cfg!(feature = "mm-threading") {
        eprintln!(
            "quickbench: built with mm-threading, our own sgemm calls would nest pools; run raw-threaded"
        );
        std::process::exit(2);
    }
    if what == "matmul" || what == "all" {
        matmul_table(all, reps);
    }
    if what == "conv" || what == "all" {
        conv_table("conv2d 3x3", &CONV_SHAPES, all, reps);
    }
    if what == "cifar10" {
        cifar_tables(all, reps);
    }
    if what == "step" {
        ddpm::app::keep_freed_memory();
        if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(all).build_global() {
            usage_error(&format!("cannot start {all} threads: {e}"));
        }
        step_table(&config, batch, reps);
    }
}
