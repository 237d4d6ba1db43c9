//! The `ddpm` program: one file per command, the command line in [`args`], and
//! the progress display in [`progress`].
//!
//! [`run`] parses the arguments and dispatches; [`main`] is the binary's entry
//! point, which prints an error with its chain of causes and exits 1 for a
//! failure and 2 for a usage error.

use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};

use crate::error::{Error, Result};

pub mod args;
pub mod default_run;
mod eval;
mod figure;
pub mod progress;
mod sample;
mod toy;
mod train;

use args::{Cli, Command};

/// Where the default run and `ddpm train` write, and where the model commands
/// look for a checkpoint.
pub const DEFAULT_OUT: &str = "runs/default";

/// Runs the program on its arguments (without the program name). `--help` and
/// `--version` print and return `Ok`.
pub fn run(args: &[String]) -> Result<()> {
    let argv = std::iter::once("ddpm".to_string()).chain(args.iter().cloned());
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version: not an error.
            print!("{e}");
            return Ok(());
        }
        Err(e) => return Err(Error::Usage(e.render().to_string().trim_end().to_string())),
    };
    // A bad TENSOR_SIMD is a usage error here, before any work (the engine alone
    // would only warn and ignore it).
    tensor::simd::configure_from_env().map_err(|e| Error::usage(e.to_string()))?;
    if let Some(n) = cli.threads {
        // A second call in one process (tests) keeps the first pool; say so only
        // if it differs.
        if rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .is_err()
            && rayon::current_num_threads() != n
        {
            return Err(Error::usage(format!(
                "--threads {n}: the thread pool was already started with {} threads",
                rayon::current_num_threads()
            )));
        }
    }
    match cli.command {
        None => default_run::run(),
        Some(Command::Train(a)) => train::run(&a),
        Some(Command::Sample(a)) => sample::run(&a),
        Some(Command::Eval(a)) => eval::run(&a),
        Some(Command::Figure(a)) => figure::run(&a),
        Some(Command::Toy(a)) => toy::run(&a),
        Some(Command::Completions { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "ddpm", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// The binary's `main`: runs the program on the process's arguments and exits
/// with 0, 1 (a failure while running) or 2 (a usage error), printing the error
/// and its causes.
pub fn main() -> ! {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("ddpm: {}", e.chain());
            std::process::exit(if e.is_usage() { 2 } else { 1 });
        }
    }
}

/// `--checkpoint`, or the default run's checkpoint.
fn checkpoint_or_default(checkpoint: &Option<PathBuf>) -> PathBuf {
    checkpoint
        .clone()
        .unwrap_or_else(|| crate::checkpoint::checkpoint_path(Path::new(DEFAULT_OUT)))
}

/// Keeps freed activation buffers in the process instead of returning them to
/// the kernel. The `ddpm` binary calls it first thing; so do the whole-step
/// benchmarks, so that they time what the program runs.
///
/// A training step allocates and frees hundreds of megabytes of tensors. glibc
/// serves each large allocation with a fresh `mmap` and unmaps it on free, so
/// every step faults in (and the kernel zeroes) every page again: about 150,000
/// page faults a step for `mnist-small`. Raising the mmap and trim thresholds
/// makes glibc reuse its heap instead, the poor man's version of the caching
/// allocators of PyTorch and friends. Peak memory is unchanged: it is the same
/// memory, kept rather than returned.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() {
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // SAFETY: `mallopt` is glibc's documented, thread-safe tuning call; it takes
    // two integers, touches no memory of ours, and the values are in range
    // (M_MMAP_THRESHOLD accepts up to HEAP_MAX_SIZE / 2 = 32 MiB on 64-bit).
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}

/// `--out`, or the directory of the checkpoint `ckpt`.
fn out_or_beside(out: &Option<PathBuf>, ckpt: &Path) -> PathBuf {
    out.clone()
        .unwrap_or_else(|| ckpt.parent().unwrap_or(Path::new(".")).to_path_buf())
}

/// Creates the directory `dir` (and its parents).
fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}
