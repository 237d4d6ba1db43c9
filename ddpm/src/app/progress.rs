//! How the program shows progress: a live bar (indicatif) when standard error is
//! a terminal, plain lines on standard output otherwise (logs, CI, pipes), so a
//! log file reads the same as it always did.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::train::{clock, Event, Progress};

/// Whether to draw bars: standard error is a terminal.
fn interactive() -> bool {
    std::io::stderr().is_terminal()
}

/// A bar of `len` steps (or a spinner when `len` is unknown) with a message.
fn bar(len: Option<u64>) -> ProgressBar {
    let (bar, template) = match len {
        Some(n) => (ProgressBar::new(n), "{bar:30.cyan/blue} {pos}/{len} {msg}"),
        None => (ProgressBar::new_spinner(), "{spinner} step {pos} {msg}"),
    };
    bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Shows a training run's [`Event`]s.
pub enum TrainDisplay {
    /// A live bar: step, smoothed loss, images/s and the time left.
    Bar(ProgressBar),
    /// A line every `every` steps (and after the first).
    Lines {
        /// Steps between lines.
        every: u64,
    },
}

impl TrainDisplay {
    /// A bar on a terminal, else lines every `log_every` steps.
    pub fn new(max_steps: Option<u64>, log_every: u64) -> TrainDisplay {
        if interactive() {
            TrainDisplay::Bar(bar(max_steps))
        } else {
            TrainDisplay::Lines { every: log_every }
        }
    }

    /// Shows one event.
    pub fn show(&mut self, event: Event) {
        match (self, event) {
            (TrainDisplay::Bar(b), Event::Line(line)) => b.println(line),
            (TrainDisplay::Lines { .. }, Event::Line(line)) => println!("{line}"),
            (TrainDisplay::Bar(b), Event::Step(p)) => {
                b.set_position(p.step);
                b.set_message(format!(
                    "loss {:.4}  {:.1} images/s  eta {}",
                    p.smoothed_loss,
                    p.images_per_sec,
                    clock(p.eta)
                ));
            }
            (TrainDisplay::Lines { every }, Event::Step(p)) => {
                if p.step.is_multiple_of(*every) || p.step == p.first + 1 {
                    println!("{}", line(&p));
                }
            }
        }
    }

    /// Removes the bar (if any) before the summary is printed.
    pub fn finish(&self) {
        if let TrainDisplay::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

/// The plain progress line of a training step.
fn line(p: &Progress) -> String {
    format!(
        "step {:>6}  loss {:.4}  {:6.1} images/s  elapsed {}  eta {}",
        p.step,
        p.smoothed_loss,
        p.images_per_sec,
        clock(p.elapsed),
        clock(p.eta)
    )
}

/// Shows the denoising steps of a sampling run.
pub struct SampleDisplay {
    bar: Option<ProgressBar>,
    start: Instant,
    steps: usize,
}

impl SampleDisplay {
    /// A display for `total` denoising steps (over all batches).
    pub fn new(total: usize) -> SampleDisplay {
        SampleDisplay {
            bar: interactive().then(|| bar(Some(total as u64))),
            start: Instant::now(),
            steps: 0,
        }
    }

    /// Step `i` of `total` in the current batch is done.
    pub fn step(&mut self, i: usize, total: usize) {
        self.steps += 1;
        let per_step = self.seconds_per_step();
        match &self.bar {
            Some(b) => {
                b.set_position(self.steps as u64);
                b.set_message(format!("{per_step:.3} s per step"));
            }
            None if i == total || i.is_multiple_of(10) => {
                println!("  step {i}/{total}  {per_step:.3} s per step")
            }
            None => {}
        }
    }

    /// Seconds per denoising step so far.
    pub fn seconds_per_step(&self) -> f64 {
        self.start.elapsed().as_secs_f64() / self.steps.max(1) as f64
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Removes the bar (if any).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
