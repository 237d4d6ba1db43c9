//! The learning-rate schedule: a linear warm-up (full-size steps from random
//! weights are unstable), then an optional cosine decay to a floor.

/// Linear warm-up from 0 to `base` over `warmup` steps, then (when `total` is
/// set) cosine decay to `min` at step `total`, else constant:
///
/// ```text
/// lr(s) = base (s + 1) / warmup                                  s < warmup
/// lr(s) = min + (base - min) (1 + cos(pi q)) / 2,  q = (s - warmup) / (total - warmup)
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// The peak learning rate.
    pub base: f32,
    /// Warm-up steps (0 for none).
    pub warmup: u64,
    /// The step at which the cosine reaches `min`; `None` for no decay.
    pub total: Option<u64>,
    /// The final learning rate of the cosine.
    pub min: f32,
}

impl LrSchedule {
    /// The learning rate at step `step` (counting from 0).
    pub fn at(&self, step: u64) -> f32 {
        if step < self.warmup {
            return self.base * (step + 1) as f32 / self.warmup as f32;
        }
        match self.total {
            Some(total) if total > self.warmup => {
                let q = ((step - self.warmup) as f64 / (total - self.warmup) as f64).min(1.0);
                let cos = 0.5 * (1.0 + (std::f64::consts::PI * q).cos());
                self.min + (self.base - self.min) * cos as f32
            }
            _ => self.base,
        }
    }
}
