//! Trains the LeNet-style classifier (`nn::lenet`) on MNIST and reports test
//! accuracy; saves the weights (the DDPM evaluation reuses them).
//!
//! ```text
//! cargo run --release -p nn --example mnist -- <mnist-dir> [--epochs 3] [--batch 64]
//!     [--lr 2e-3] [--seed 0] [--out lenet.safetensors]
//! ```
//! `<mnist-dir>` holds the four standard IDX files, raw or `.gz` (gzip files are
//! read through the system's `gzip -dc`, to keep the engine free of dependencies).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use autograd::{no_grad, Var};
use nn::lenet::LeNet;
use nn::optim::{Adam, LrSchedule, Optimizer};
use nn::Module;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tensor::Tensor;

/// The bytes of `dir/name`, or of `dir/name.gz` decompressed.
fn read_maybe_gz(dir: &Path, name: &str) -> Result<Vec<u8>, String> {
    let raw = dir.join(name);
    if raw.exists() {
        return std::fs::read(&raw).map_err(|e| format!("{}: {e}", raw.display()));
    }
    let gz = dir.join(format!("{name}.gz"));
    let out = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&gz)
        .output()
        .map_err(|e| format!("{}: cannot run gzip: {e}", gz.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            gz.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

/// Parses an IDX file with `dims` dimensions and the given magic number.
fn parse_idx(bytes: &[u8], magic: u32, dims: usize, what: &str) -> Result<(Vec<usize>, Vec<u8>), String> {
    let word = |i: usize| -> Result<usize, String> {
        let b = bytes
            .get(4 * i..4 * i + 4)
            .ok_or(format!("{what}: truncated header"))?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    if word(0)? != magic as usize {
        return Err(format!(
            "{what}: bad magic number {:#010x}, expected {magic:#010x}",
            word(0)?
        ));
    }
    let shape: Vec<usize> = (1..=dims).map(word).collect::<Result<_, _>>()?;
    let (header, count) = (4 * (dims + 1), shape.iter().product::<usize>());
    if bytes.len() != header + count {
        return Err(format!(
            "{what}: expected {} bytes, found {}",
            header + count,
            bytes.len()
        ));
    }
    Ok((shape, bytes[header..].to_vec()))
}

/// Images (28x28, 0..255) and labels of one split.
fn load_split(dir: &Path, prefix: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let name = format!("{prefix}-images-idx3-ubyte");
    let (shape, images) = parse_idx(&read_maybe_gz(dir, &name)?, 0x803, 3, &name)?;
    let lname = format!("{prefix}-labels-idx1-ubyte");
    let (lshape, labels) = parse_idx(&read_maybe_gz(dir, &lname)?, 0x801, 1, &lname)?;
    if shape[1..] != [28, 28] || lshape[0] != shape[0] {
        return Err(format!(
            "{prefix}: images {shape:?} and labels {lshape:?} do not match 28x28 digits"
        ));
    }
    Ok((images, labels))
}

/// Images `indices` as a `[B, 1, 28, 28]` tensor scaled to `[-1, 1]`.
fn batch(images: &[u8], indices: &[usize]) -> Tensor {
    let data = indices
        .iter()
        .flat_map(|&i| {
            images[i * 784..(i + 1) * 784]
                .iter()
                .map(|&p| p as f32 / 127.5 - 1.0)
        })
        .collect();
    Tensor::from_vec(data, &[indices.len(), 1, 28, 28]).expect("784 pixels per image")
}

/// The fraction of test images classified correctly.
fn accuracy(model: &LeNet, images: &[u8], labels: &[u8]) -> Result<f64, String> {
    let all: Vec<usize> = (0..labels.len()).collect();
    let mut correct = 0;
    for chunk in all.chunks(500) {
        let logits =
            no_grad(|| model.forward(&Var::constant(batch(images, chunk)))).map_err(|e| e.to_string())?;
        let predicted = logits
            .value()
            .argmax(1, false)
            .map_err(|e| e.to_string())?
            .to_vec();
        correct += chunk
            .iter()
            .zip(&predicted)
            .filter(|(&i, &p)| labels[i] as f32 == p)
            .count();
    }
    Ok(correct as f64 / labels.len() as f64)
}

struct Args {
    dir: PathBuf,
    epochs: usize,
    batch: usize,
    lr: f32,
    seed: u64,
    out: PathBuf,
}

const USAGE: &str =
    "usage: mnist <mnist-dir> [--epochs N] [--batch N] [--lr X] [--seed N] [--out lenet.safetensors]";

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        dir: PathBuf::new(),
        epochs: 3,
        batch: 64,
        lr: 2e-3,
        seed: 0,
        out: PathBuf::from("lenet.safetensors"),
    };
    let mut dir = None;
    while let Some(a) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        let bad = |flag: &str, v: &str| format!("{flag}: cannot parse {v:?}");
        match a.as_str() {
            "--epochs" => {
                let v = value("--epochs")?;
                parsed.epochs = v.parse().map_err(|_| bad("--epochs", &v))?
            }
            "--batch" => {
                let v = value("--batch")?;
                parsed.batch = v.parse().ok().filter(|&b| b > 0).ok_or(bad("--batch", &v))?
            }
            "--lr" => {
                let v = value("--lr")?;
                parsed.lr = v.parse().ok().filter(|l: &f32| *l > 0.0).ok_or(bad("--lr", &v))?
            }
            "--seed" => {
                let v = value("--seed")?;
                parsed.seed = v.parse().map_err(|_| bad("--seed", &v))?
            }
            "--out" => parsed.out = PathBuf::from(value("--out")?),
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}")),
            path if dir.is_none() => dir = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra}")),
        }
    }
    parsed.dir = dir.ok_or("missing <mnist-dir>")?;
    Ok(parsed)
}

fn run(args: &Args) -> Result<(), String> {
    let (train_x, train_y) = load_split(&args.dir, "train")?;
    let (test_x, test_y) = load_split(&args.dir, "t10k")?;
    println!("MNIST: {} training, {} test images", train_y.len(), test_y.len());
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let model = LeNet::new(&mut rng);
    let params: Vec<_> = model.parameters().into_iter().map(|(_, p)| p).collect();
    let mut opt = Adam::new(params, args.lr);
    let steps_per_epoch = train_y.len() / args.batch;
    let schedule = LrSchedule {
        base: args.lr,
        warmup: 100,
        total: Some((steps_per_epoch * args.epochs) as u64),
        min: 0.0,
    };
    let mut order: Vec<usize> = (0..train_y.len()).collect();
    let start = Instant::now();
    let mut step = 0u64;
    let mut test_acc = 0.0;
    for epoch in 1..=args.epochs {
        order.shuffle(&mut rng);
        let (mut loss_sum, mut seen) = (0.0, 0);
        for idx in order.chunks_exact(args.batch) {
            let labels: Vec<usize> = idx.iter().map(|&i| train_y[i] as usize).collect();
            opt.set_lr(schedule.at(step));
            opt.zero_grad();
            let loss = model
                .forward(&Var::constant(batch(&train_x, idx)))
                .and_then(|logits| logits.cross_entropy(&labels))
                .map_err(|e| e.to_string())?;
            let value = loss.value().item().map_err(|e| e.to_string())?;
            if !value.is_finite() {
                return Err(format!("the loss became {value} at step {step}"));
            }
            loss.backward().map_err(|e| e.to_string())?;
            opt.step().map_err(|e| e.to_string())?;
            (loss_sum, seen, step) = (loss_sum + value as f64, seen + 1, step + 1);
        }
        test_acc = accuracy(&model, &test_x, &test_y)?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "epoch {epoch}: train loss {:.4}, test accuracy {:.2}%, {:.0} s, {:.0} images/s",
            loss_sum / seen as f64,
            100.0 * test_acc,
            secs,
            (step as usize * args.batch) as f64 / secs
        );
    }
    let meta = BTreeMap::from([("test_accuracy".to_string(), format!("{test_acc:.4}"))]);
    nn::checkpoint::save_parameters(&args.out, &model.parameters(), &meta).map_err(|e| e.to_string())?;
    println!("saved the classifier to {}", args.out.display());
    Ok(())
}

fn main() {
    let result = parse_args()
        .map_err(|e| format!("{e}\n{USAGE}"))
        .and_then(|a| run(&a));
    if let Err(e) = result {
        eprintln!("mnist: {e}");
        std::process::exit(1);
    }
}
