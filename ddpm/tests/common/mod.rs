//! Helpers the program-level test files share (each test file is its own crate
//! and uses a different subset, hence the `allow`).
#![allow(dead_code)]

use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh, empty directory under the system's temporary directory, unique to
/// this test process and call, removed with its contents when dropped (test runs
/// would otherwise leave their checkpoints behind).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ddpm-test-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `bytes` to `name` inside the directory (creating sub-directories).
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        path
    }
}

impl Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// [`TempDir::new`].
pub fn temp_dir(name: &str) -> TempDir {
    TempDir::new(name)
}

/// Runs the `ddpm` program on `args` (without the program name); `Err` holds
/// what `main` would print (the error and its causes).
pub fn run(args: &[&str]) -> Result<(), String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    ddpm::app::run(&args).map_err(|e| e.chain())
}

/// Trains mnist-tiny for `steps` steps (in total) of batch 2 through the
/// program into `out`, with `extra` flags (e.g. `--resume`).
pub fn train_in(out: &Path, steps: u64, extra: &[&str]) -> Result<(), String> {
    let steps = steps.to_string();
    let mut args = vec![
        "train",
        "--config",
        "mnist-tiny",
        "--steps",
        &steps,
        "--batch",
        "2",
    ];
    args.extend_from_slice(extra);
    args.extend(["--out", out.to_str().unwrap()]);
    run(&args)
}

/// [`train_in`] a fresh directory named after `name`; returns it.
pub fn train_tiny(name: &str, steps: u64, extra: &[&str]) -> TempDir {
    let out = temp_dir(name);
    train_in(&out, steps, extra).unwrap();
    out
}

/// The library's options for a short mnist-tiny run (batch 2, seed 7, a
/// checkpoint every step) into `out`.
pub fn tiny_options(out: &Path, steps: u64) -> ddpm::train::TrainOptions {
    ddpm::train::TrainOptions {
        contract: ddpm::contract::Contract::new(ddpm::config::UNetConfig::named("mnist-tiny").unwrap()),
        batch: 2,
        accumulate: 1,
        max_steps: Some(steps),
        time_budget: Some(std::time::Duration::from_secs(600)),
        lr: 1e-3,
        warmup: 2,
        lr_decay: ddpm::train::LrDecay::None,
        lr_min: 1e-4,
        clip: 1.0,
        min_snr: None,
        ema_decay: 0.999,
        seed: 7,
        out_dir: out.to_path_buf(),
        resume: false,
        overwrite: false,
        checkpoint_every: 1,
    }
}

/// The MNIST IDX files in the workspace's `shared/` folder.
pub const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/mnist");

/// Runs the `ddpm` binary; returns its exit code and standard output.
pub fn program(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .args(args)
        .output()
        .expect("the ddpm binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The PNG at `path` as raw (grey) pixels.
pub fn pixels(path: &Path) -> Vec<u8> {
    image::open(path).unwrap().into_luma8().into_raw()
}

/// `images` as the pixels of the grid the program writes (`cols` columns).
pub fn grid_pixels(images: &tensor::Tensor, cols: usize, dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    ddpm::data::save_grid(&path, images, cols).unwrap();
    pixels(&path)
}

/// The bound `ddpm eval --nll` prints for `checkpoint` on the first two MNIST
/// test images, as printed ("1.234" from "NLL bound on 2 MNIST test images:
/// 1.234 bits/dim (...)").
pub fn printed_nll(checkpoint: &str) -> String {
    let args = [
        "eval",
        "--nll",
        "--checkpoint",
        checkpoint,
        "--mnist",
        MNIST,
        "--nll-images",
        "2",
    ];
    let (code, stdout) = program(&args);
    assert_eq!(code, 0, "{stdout}");
    stdout
        .lines()
        .find(|l| l.starts_with("NLL bound"))
        .and_then(|l| l.split(": ").nth(1))
        .and_then(|r| r.split(' ').next())
        .expect("a bound line")
        .to_string()
}
