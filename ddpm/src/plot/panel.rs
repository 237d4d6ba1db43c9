//! Axes: a data rectangle mapped onto a pixel rectangle, with frame, ticks and labels.
//!
//! With data ranges `[x0, x1]`, `[y0, y1]` and a pixel rectangle whose top-left
//! pixel is `(left, top)`, `w x h` pixels, the first and last pixel columns and
//! rows are the range ends (y grows upwards in data, downwards in pixels):
//!
//! ```text
//! px = left + (x - x0) / (x1 - x0) * (w - 1)
//! py = top  + (1 - (Y(y) - Y(y0)) / (Y(y1) - Y(y0))) * (h - 1)      Y(y) = y, or log10 y on a log axis
//! ```
//! so on a log axis the geometric mean `sqrt(y0 y1)` lands half-way up.
//!
//! Ticks are "nice" numbers: the step is `{1, 2, 5} x 10^k`, the smallest such at
//! least `(x1 - x0) / count`, and the ticks are its multiples inside the range. On a
//! log axis the ticks are the powers of ten in range, or `{1, 2, 5} x 10^k` when
//! fewer than three powers fit, or linear nice ticks when the range is narrower still.

use super::canvas::{Canvas, Rgb};
use super::font;

/// Tick marks' length in pixels.
const TICK: i64 = 4;

/// A rectangle of pixels: top-left pixel and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelRect {
    /// Column of the leftmost pixel.
    pub left: i64,
    /// Row of the top pixel.
    pub top: i64,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

/// Axes: data ranges mapped onto a pixel rectangle of a canvas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Panel {
    rect: PixelRect,
    x: (f64, f64),
    y: (f64, f64),
    log_y: bool,
}

impl Panel {
    /// Axes over `rect` showing `x` and `y` (each `(low, high)`, `low < high`,
    /// finite; both positive when `log_y`). The rectangle needs at least 2 x 2 pixels.
    pub fn new(rect: PixelRect, x: (f64, f64), y: (f64, f64), log_y: bool) -> Result<Panel, String> {
        let ordered = |(lo, hi): (f64, f64)| lo.is_finite() && hi.is_finite() && lo < hi;
        if !ordered(x) || !ordered(y) {
            return Err(format!(
                "plot ranges must be finite with low < high, got x {x:?}, y {y:?}"
            ));
        }
        if log_y && y.0 <= 0.0 {
            return Err(format!("a log axis needs a positive range, got y {y:?}"));
        }
        if rect.width < 2 || rect.height < 2 {
            return Err(format!(
                "a panel needs at least 2 x 2 pixels, got {} x {}",
                rect.width, rect.height
            ));
        }
        Ok(Panel { rect, x, y, log_y })
    }

    /// The pixel rectangle.
    pub fn rect(&self) -> PixelRect {
        self.rect
    }

    /// The x range.
    pub fn x_range(&self) -> (f64, f64) {
        self.x
    }

    /// The y range.
    pub fn y_range(&self) -> (f64, f64) {
        self.y
    }

    /// `y` on the axis's own scale (`log10 y` on a log axis).
    fn scaled(&self, y: f64) -> f64 {
        if self.log_y {
            y.log10()
        } else {
            y
        }
    }

    /// The pixel position of data point `(x, y)` (continuous: round to draw).
    pub fn to_pixel(&self, x: f64, y: f64) -> (f64, f64) {
        let r = self.rect;
        let u = (x - self.x.0) / (self.x.1 - self.x.0);
        let v = (self.scaled(y) - self.scaled(self.y.0)) / (self.scaled(self.y.1) - self.scaled(self.y.0));
        (
            r.left as f64 + u * (r.width - 1) as f64,
            r.top as f64 + (1.0 - v) * (r.height - 1) as f64,
        )
    }

    /// True when `(x, y)` is inside the data ranges (ends included).
    pub fn contains(&self, x: f64, y: f64) -> bool {
        (self.x.0..=self.x.1).contains(&x) && (self.y.0..=self.y.1).contains(&y)
    }

    /// The one-pixel frame around the rectangle.
    pub fn frame(&self, canvas: &mut Canvas, colour: Rgb) {
        let r = self.rect;
        canvas.rect(r.left, r.top, r.width, r.height, colour);
    }

    /// Tick marks outside the frame with their labels: x below, y on the left.
    pub fn ticks(&self, canvas: &mut Canvas, colour: Rgb) {
        let r = self.rect;
        let bottom = r.top + r.height as i64 - 1;
        let x_ticks = nice_ticks(self.x.0, self.x.1, (r.width / 90).clamp(2, 10));
        for &v in &x_ticks {
            let px = self.to_pixel(v, self.y.0).0.round() as i64;
            canvas.line(px, bottom + 1, px, bottom + TICK, colour);
            let label = tick_label(v);
            let half = font::text_width(&label, 1) as i64 / 2;
            canvas.text(px - half, bottom + TICK + 3, &label, colour, 1);
        }
        let count = (r.height / 60).clamp(2, 8);
        let y_ticks = if self.log_y {
            log_ticks(self.y.0, self.y.1, count)
        } else {
            nice_ticks(self.y.0, self.y.1, count)
        };
        for &v in &y_ticks {
            let py = self.to_pixel(self.x.0, v).1.round() as i64;
            canvas.line(r.left - TICK, py, r.left - 1, py, colour);
            let label = tick_label(v);
            let w = font::text_width(&label, 1) as i64;
            canvas.text(r.left - TICK - 3 - w, py - 3, &label, colour, 1);
        }
    }

    /// `text` centred above the frame, at `scale`.
    pub fn title(&self, canvas: &mut Canvas, text: &str, colour: Rgb, scale: usize) {
        let r = self.rect;
        let w = font::text_width(text, scale) as i64;
        let h = (font::HEIGHT * scale) as i64;
        canvas.text(
            r.left + (r.width as i64 - w) / 2,
            r.top - h - 6,
            text,
            colour,
            scale,
        );
    }

    /// The x label centred below the tick labels; the y label above the y axis
    /// (the font does not rotate), left-aligned with the tick labels.
    pub fn axis_labels(&self, canvas: &mut Canvas, x_label: &str, y_label: &str, colour: Rgb) {
        let r = self.rect;
        let w = font::text_width(x_label, 1) as i64;
        let below = r.top + r.height as i64 + TICK + 3 + font::HEIGHT as i64 + 6;
        canvas.text(r.left + (r.width as i64 - w) / 2, below, x_label, colour, 1);
        canvas.text(
            r.left - TICK - 3,
            r.top - font::HEIGHT as i64 - 6,
            y_label,
            colour,
            1,
        );
    }

    /// Straight segments joining consecutive points, `width` pixels thick; a
    /// segment with an end outside the ranges (or not finite) is skipped.
    pub fn polyline(&self, canvas: &mut Canvas, points: &[(f64, f64)], width: usize, colour: Rgb) {
        for pair in points.windows(2) {
            let [(xa, ya), (xb, yb)] = [pair[0], pair[1]];
            if !(self.contains(xa, ya) && self.contains(xb, yb)) {
                continue;
            }
            let (pa, pb) = (self.to_pixel(xa, ya), self.to_pixel(xb, yb));
            let round = |p: (f64, f64)| (p.0.round() as i64, p.1.round() as i64);
            let ((x0, y0), (x1, y1)) = (round(pa), round(pb));
            canvas.thick_line(x0, y0, x1, y1, width, colour);
        }
    }

    /// A disc of radius `r` pixels at each point inside the ranges.
    pub fn scatter(&self, canvas: &mut Canvas, points: &[(f64, f64)], r: f64, colour: Rgb) {
        for &(x, y) in points.iter().filter(|(x, y)| self.contains(*x, *y)) {
            let (px, py) = self.to_pixel(x, y);
            canvas.disc(px, py, r, colour);
        }
    }
}

/// Round ticks inside `[lo, hi]`: the multiples of the smallest step
/// `{1, 2, 5} x 10^k` that is at least `(hi - lo) / count`.
pub fn nice_ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Vec::new();
    }
    let step = nice_step((hi - lo) / count.max(1) as f64);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// The smallest `{1, 2, 5} x 10^k` at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.log10().floor());
    let frac = raw / mag;
    let nice = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|&m| frac <= m * (1.0 + 1e-9));
    nice.unwrap_or(10.0) * mag
}

/// Ticks for a log axis over `[lo, hi]` (`0 < lo < hi`): powers of ten when three
/// or more fit, else `{1, 2, 5} x 10^k` when two or more do, else linear
/// [`nice_ticks`] with `count` ticks.
pub fn log_ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if !(lo > 0.0 && lo < hi && hi.is_finite()) {
        return Vec::new();
    }
    let (k0, k1) = (lo.log10().floor() as i32 - 1, hi.log10().ceil() as i32 + 1);
    let inside = |mults: &[f64]| -> Vec<f64> {
        (k0..=k1)
            .flat_map(|k| mults.iter().map(move |m| m * 10f64.powi(k)))
            .filter(|v| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9))
            .collect()
    };
    let powers = inside(&[1.0]);
    if powers.len() >= 3 {
        return powers;
    }
    let one_two_five = inside(&[1.0, 2.0, 5.0]);
    if one_two_five.len() >= 2 {
        return one_two_five;
    }
    nice_ticks(lo, hi, count)
}

/// The label of tick `v`: the fewest decimals (at most 6) that write it exactly
/// (`0.2`, `1`, `0.05`), or `1E-5` style outside `1e-4..1e6`.
pub fn tick_label(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let mag = v.abs().log10();
    if !(-4.0..6.0).contains(&mag) {
        let k = mag.floor() as i32;
        let m = v / 10f64.powi(k);
        return if (m - m.round()).abs() < 1e-6 {
            format!("{}E{k}", m.round())
        } else {
            format!("{m:.1}E{k}")
        };
    }
    let exact = |d: &usize| {
        let p = 10f64.powi(*d as i32);
        ((v * p).round() / p - v).abs() <= 1e-9 * v.abs().max(1e-3)
    };
    let decimals = (0..=6).find(exact).unwrap_or(6);
    format!("{v:.decimals$}")
}
