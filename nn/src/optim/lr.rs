//! The learning-rate schedule: a linear warm-up (full-size steps from random
//! weights are unstable), then an optional decay to a floor, cosine or linear.

/// Linear warm-up from 0 to `base` over `warmup` steps, then (when `total` is
/// set) a decay to `min` at step `total` and `min` after it: half a cosine with
/// [`LrSchedule::at`] (slow at both ends, Loshchilov and Hutter 2017), a straight
/// line with [`LrSchedule::at_linear`]. Without `total`, constant after the warm-up:
///
/// ```text
/// lr(s) = base (s + 1) / warmup                              s < warmup
/// lr(s) = min + (base - min) (1 + cos(pi q)) / 2             (at)          q = min(1, (s - warmup) / (total - warmup))
/// lr(s) = min + (base - min) (1 - q)                         (at_linear)
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// The peak learning rate.
    pub base: f32,
    /// Warm-up steps (0 for none).
    pub warmup: u64,
    /// The step at which the decay reaches `min`; `None` for no decay.
    pub total: Option<u64>,
    /// The final learning rate of the decay.
    pub min: f32,
}

impl LrSchedule {
    /// The learning rate at step `step` (counting from 0), with the cosine decay.
    pub fn at(&self, step: u64) -> f32 {
        self.decayed(step, |q| 0.5 * (1.0 + (std::f64::consts::PI * q).cos()))
    }

    /// The learning rate at step `step` (counting from 0), with the linear decay.
    pub fn at_linear(&self, step: u64) -> f32 {
        self.decayed(step, |q| 1.0 - q)
    }

    /// The warm-up, then `min + (base - min) left(q)` with `left` falling from 1
    /// at `q = 0` to 0 at `q = 1`.
    fn decayed(&self, step: u64, left: impl Fn(f64) -> f64) -> f32 {
        if step < self.warmup {
            return self.base * (step + 1) as f32 / self.warmup as f32;
        }
        match self.total {
            Some(total) if total > self.warmup => {
                let q = ((step - self.warmup) as f64 / (total - self.warmup) as f64).min(1.0);
                self.min + (self.base - self.min) * left(q) as f32
            }
            _ => self.base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LrSchedule;

    #[test]
    fn the_linear_decay_falls_in_a_straight_line_to_the_floor() {
        let s = LrSchedule {
            base: 1.0,
            warmup: 2,
            total: Some(12),
            min: 0.2,
        };
        let want = |step: u64| {
            let q = ((step as f64 - 2.0) / 10.0).clamp(0.0, 1.0);
            0.2 + 0.8 * (1.0 - q)
        };
        assert_eq!([s.at_linear(0), s.at_linear(1)], [0.5, 1.0]);
        for step in 2..20 {
            assert!((s.at_linear(step) as f64 - want(step)).abs() < 1e-6, "{step}");
        }
        assert!((s.at_linear(7) - 0.6).abs() < 1e-6); // halfway: halfway down
                                                      // The two shapes agree at the ends and where 1 - q = (1 + cos(pi q)) / 2: q = 1/2.
        for step in [0, 1, 2, 7, 12, 50] {
            assert!((s.at(step) - s.at_linear(step)).abs() < 1e-6, "{step}");
        }
        assert!(s.at(4) > s.at_linear(4), "the cosine starts slower");
        let constant = LrSchedule { total: None, ..s };
        assert_eq!([constant.at_linear(2), constant.at_linear(1000)], [1.0, 1.0]);
    }
}
