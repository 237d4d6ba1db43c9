//! The loss log, `loss.csv`: one row per training step, appended as the run goes.
//!
//! Each row is written with a single `write` of the whole line, so a kill leaves
//! at most one partial last row. A resumed run first cuts the log back to the
//! checkpoint's step ([`truncate`]): the rows between that checkpoint and the
//! kill are recomputed (identically, see [`crate::train`]) and would otherwise
//! appear twice. `ddpm figure loss` reads the log back ([`crate::plot`]).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// The log's file name inside a run's directory.
pub const LOSS_FILE: &str = "loss.csv";

/// The first line of the log.
pub const HEADER: &str = "step,loss,smoothed_loss,grad_norm,lr,images_per_sec,elapsed_s";

/// One row of the log.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Steps done after this one.
    pub step: u64,
    /// This step's loss.
    pub loss: f32,
    /// The exponentially smoothed loss (factor 0.98).
    pub smoothed_loss: f64,
    /// The gradient norm before clipping.
    pub grad_norm: f32,
    /// The learning rate of this step.
    pub lr: f32,
    /// Images per second over this run so far.
    pub images_per_sec: f64,
    /// Seconds since this run started.
    pub elapsed: f64,
}

impl Row {
    fn line(&self) -> String {
        format!(
            "{},{},{},{},{},{:.2},{:.2}\n",
            self.step,
            self.loss,
            self.smoothed_loss,
            self.grad_norm,
            self.lr,
            self.images_per_sec,
            self.elapsed
        )
    }
}

/// Appends `row` to the log at `path`, creating it with its header.
pub fn append(path: &Path, row: &Row) -> Result<()> {
    let fresh = !path.exists();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let text = if fresh {
        format!("{HEADER}\n{}", row.line())
    } else {
        row.line()
    };
    f.write_all(text.as_bytes()).map_err(|e| Error::io(path, e))
}

/// Cuts the log at `path` back to its rows up to step `step` (dropping a
/// partial last row); a missing log stays missing.
pub fn truncate(path: &Path, step: u64) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut kept = format!("{HEADER}\n");
    for line in text.split_inclusive('\n').skip(1) {
        let whole = line.ends_with('\n') && line.split(',').count() == HEADER.split(',').count();
        let row_step = line.split(',').next().and_then(|s| s.parse::<u64>().ok());
        if whole && row_step.is_some_and(|s| s <= step) {
            kept.push_str(line);
        }
    }
    nn::fs::write_atomic(path, kept.as_bytes()).map_err(|e| Error::io(path, e))
}
