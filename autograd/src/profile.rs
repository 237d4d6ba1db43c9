//! Where a step's time goes, per op kind: an optional, per-thread stopwatch that
//! the tape drives.
//!
//! Forward: the forward pass is a sequence of ops run one after the other on the
//! thread that builds it, and each op ends by calling [`crate::Var::from_op`]
//! (recording or not, `no_grad` included). So the time from the previous op's
//! end to this op's `from_op` is this op's forward: its kernels ran in between.
//! Backward: the tape times each rule's closure, and the adds that accumulate
//! gradients (a value read twice, a parameter used twice) as one more line.
//! Work that is not an op (drawing noise, the optimiser) is timed by the caller
//! with [`lap`], which also stops it from being charged to the next op.
//!
//! Switched off (the default), each op and each backward rule pays a
//! thread-local flag read.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The time one kind of op (or caller-named phase) took, summed over its calls.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OpTime {
    /// Forward calls (or laps).
    pub calls: u64,
    /// Time in forward (or in the phase).
    pub forward: Duration,
    /// Time in backward rules.
    pub backward: Duration,
}

impl OpTime {
    /// Forward plus backward.
    pub fn total(&self) -> Duration {
        self.forward + self.backward
    }
}

/// What a profile collected: one line per op name, sorted by name.
pub type Profile = BTreeMap<&'static str, OpTime>;

/// The line the tape charges gradient accumulation to.
pub const ACCUMULATE: &str = "(gradient accumulation)";

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static STATE: RefCell<(Profile, Option<Instant>)> = const { RefCell::new((Profile::new(), None)) };
}

/// Starts (or restarts, forgetting what was collected) profiling on this thread.
pub fn start() {
    ON.with(|on| on.set(true));
    STATE.with(|s| *s.borrow_mut() = (Profile::new(), Some(Instant::now())));
}

/// Stops profiling on this thread and returns what it collected.
pub fn finish() -> Profile {
    ON.with(|on| on.set(false));
    STATE.with(|s| std::mem::take(&mut s.borrow_mut().0))
}

/// True while this thread is profiling.
pub fn is_on() -> bool {
    ON.with(Cell::get)
}

/// Charges the time since the last op or lap to `name`'s forward line (a phase
/// that is not an op: data, noise, the optimiser). No-op when profiling is off.
pub fn lap(name: &'static str) {
    if is_on() {
        STATE.with(|s| {
            let (profile, last) = &mut *s.borrow_mut();
            let now = Instant::now();
            let line = profile.entry(name).or_default();
            line.calls += 1;
            line.forward += last.map_or(Duration::ZERO, |t| now - t);
            *last = Some(now);
        });
    }
}

/// A start time for [`add_backward`], taken only while profiling.
pub(crate) fn timer() -> Option<Instant> {
    is_on().then(Instant::now)
}

/// Adds the time since `started` (from [`timer`]) to `name`'s backward line.
/// No-op when profiling was off.
pub(crate) fn add_backward(name: &'static str, started: Option<Instant>) {
    if let Some(started) = started {
        let time = started.elapsed();
        STATE.with(|s| s.borrow_mut().0.entry(name).or_default().backward += time);
    }
}

/// Restarts the forward stopwatch without charging anyone (after a backward
/// pass, whose time the rules already hold).
pub(crate) fn reset_clock() {
    if is_on() {
        STATE.with(|s| s.borrow_mut().1 = Some(Instant::now()));
    }
}
