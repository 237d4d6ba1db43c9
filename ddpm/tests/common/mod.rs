//! Helpers the program-level test files share (each test file is its own crate
//! and uses a different subset, hence the `allow`).
#![allow(dead_code)]

use std::path::PathBuf;

/// A fresh, empty directory under the system's temporary directory, unique to
/// this test process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the `ddpm` program on `args` (without the program name).
pub fn run(args: &[&str]) -> Result<(), String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    ddpm::app::run(&args)
}

/// Trains mnist-tiny for `steps` steps of batch 2 through the program, with
/// `extra` flags, into a fresh directory named after `name`; returns it.
pub fn train_tiny(name: &str, steps: u64, extra: &[&str]) -> PathBuf {
    let out = temp_dir(name);
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
    run(&args).unwrap();
    out
}
