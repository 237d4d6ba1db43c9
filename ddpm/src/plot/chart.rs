//! Whole figures: a line chart of several series, and the training-loss curve.
//!
//! `loss_curve` reads the CSV that `ddpm train` appends to (`<out>/loss.csv`,
//! header `step,loss,smoothed_loss,grad_norm,lr,images_per_sec,elapsed_s`) and
//! draws the raw per-step loss in a light colour under the smoothed loss (the
//! exponential moving average `s <- 0.98 s + 0.02 loss` the trainer logs) in a
//! strong one, against the step, on a log y axis: the DDPM loss falls by orders of
//! magnitude early and then creeps, which a linear axis would flatten.

use std::path::Path;

use super::canvas::{colour, Canvas, Rgb};
use super::font;
use super::panel::{Panel, PixelRect};

/// Width of the [`loss_curve`] figure, in pixels.
pub const LOSS_CURVE_WIDTH: usize = 800;
/// Height of the [`loss_curve`] figure, in pixels.
pub const LOSS_CURVE_HEIGHT: usize = 500;

/// Space around the axes: left (y tick labels), right, top (title), bottom.
const MARGIN: (usize, usize, usize, usize) = (80, 24, 56, 52);

/// One line of a chart.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// The `(x, y)` points, joined in order.
    pub points: &'a [(f64, f64)],
    /// Line colour.
    pub colour: Rgb,
    /// Line width in pixels.
    pub width: usize,
    /// Legend text (empty: not in the legend).
    pub label: &'a str,
}

/// A chart's size and words.
#[derive(Debug, Clone, Copy)]
pub struct ChartOptions<'a> {
    /// Figure width in pixels.
    pub width: usize,
    /// Figure height in pixels.
    pub height: usize,
    /// Title, above the axes.
    pub title: &'a str,
    /// Label under the x axis.
    pub x_label: &'a str,
    /// Label above the y axis.
    pub y_label: &'a str,
    /// A log-scale y axis (points with `y <= 0` are left out).
    pub log_y: bool,
}

/// Draws `series` on one set of axes fitted to their points (on a log axis, to
/// their positive `y`), with ticks, title, axis labels and a legend. An error when
/// no series has a drawable point or the figure is too small for its margins.
pub fn line_chart(series: &[Series], options: &ChartOptions) -> Result<Canvas, String> {
    let (left, right, top, bottom) = MARGIN;
    if options.width < left + right + 2 || options.height < top + bottom + 2 {
        return Err(format!(
            "a chart needs at least {} x {} pixels, got {} x {}",
            left + right + 2,
            top + bottom + 2,
            options.width,
            options.height
        ));
    }
    let usable = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!options.log_y || y > 0.0);
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(usable)
        .collect();
    if points.is_empty() {
        return Err(format!("{:?}: no points to plot", options.title));
    }
    let rect = PixelRect {
        left: left as i64,
        top: top as i64,
        width: options.width - left - right,
        height: options.height - top - bottom,
    };
    let x = padded(points.iter().map(|p| p.0), false, 0.0);
    let y = padded(points.iter().map(|p| p.1), options.log_y, 0.05);
    let panel = Panel::new(rect, x, y, options.log_y)?;
    let mut canvas = Canvas::new(options.width, options.height, colour::WHITE);
    for s in series {
        let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(usable).collect();
        panel.polyline(&mut canvas, &pts, s.width, s.colour);
    }
    panel.frame(&mut canvas, colour::GREY);
    panel.ticks(&mut canvas, colour::BLACK);
    panel.title(&mut canvas, options.title, colour::BLACK, 2);
    panel.axis_labels(&mut canvas, options.x_label, options.y_label, colour::BLACK);
    legend(&mut canvas, &panel, series);
    Ok(canvas)
}

/// `(min, max)` of `values` widened by `pad` of the span on each side (in log10
/// on a log axis); a single value gets a span of 1 (a factor of 10 on log).
fn padded(values: impl Iterator<Item = f64>, log: bool, pad: f64) -> (f64, f64) {
    let scaled = values.map(|v| if log { v.log10() } else { v });
    let (lo, hi) = scaled.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let (lo, hi) = if hi > lo {
        (lo - pad * span, hi + pad * span)
    } else {
        (lo - 0.5, hi + 0.5)
    };
    if log {
        (10f64.powf(lo), 10f64.powf(hi))
    } else {
        (lo, hi)
    }
}

/// A short line of each labelled series' colour and its label, top right inside
/// the axes.
fn legend(canvas: &mut Canvas, panel: &Panel, series: &[Series]) {
    let r = panel.rect();
    let labelled: Vec<&Series> = series.iter().filter(|s| !s.label.is_empty()).collect();
    let widest = labelled
        .iter()
        .map(|s| font::text_width(s.label, 1))
        .max()
        .unwrap_or(0) as i64;
    let x = r.left + r.width as i64 - widest - 40;
    for (k, s) in labelled.iter().enumerate() {
        let y = r.top + 10 + 14 * k as i64;
        canvas.thick_line(x, y + 3, x + 20, y + 3, s.width.max(2), s.colour);
        canvas.text(x + 28, y, s.label, colour::BLACK, 1);
    }
}

/// The columns of a training loss log that the curve needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossLog {
    /// The step of each row.
    pub step: Vec<f64>,
    /// The step's loss.
    pub loss: Vec<f64>,
    /// The smoothed loss after the step.
    pub smoothed: Vec<f64>,
}

/// Reads `step`, `loss` and `smoothed_loss` from a `loss.csv` of `ddpm train`.
/// Errors name the file and the line: a missing file, a wrong header, a row with
/// too few fields or a field that is not a number, no rows at all. Blank lines are
/// skipped.
pub fn read_loss_csv(path: &Path) -> Result<LossLog, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, l)| l.trim()).unwrap_or("");
    if header != crate::losslog::HEADER {
        return Err(format!(
            "{}: line 1: expected the header {}, got {header:?}",
            path.display(),
            crate::losslog::HEADER
        ));
    }
    let mut log = LossLog::default();
    for (i, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let at = |what: String| format!("{}: line {}: {what}", path.display(), i + 1);
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() < 3 {
            return Err(at(format!("expected at least 3 fields, got {line:?}")));
        }
        let number = |k: usize, name: &str| {
            fields[k]
                .parse::<f64>()
                .map_err(|_| at(format!("cannot read {name} {:?}", fields[k])))
        };
        log.step.push(number(0, "step")?);
        log.loss.push(number(1, "loss")?);
        log.smoothed.push(number(2, "smoothed_loss")?);
    }
    if log.step.is_empty() {
        return Err(format!("{}: no data rows after the header", path.display()));
    }
    Ok(log)
}

/// The training loss curve of a `loss.csv`: raw loss (light blue) and smoothed
/// loss (blue) against step, log y, titled "training loss";
/// [`LOSS_CURVE_WIDTH`] x [`LOSS_CURVE_HEIGHT`] pixels.
pub fn loss_curve(csv: &Path) -> Result<Canvas, String> {
    let log = read_loss_csv(csv)?;
    let zip = |ys: &[f64]| -> Vec<(f64, f64)> { log.step.iter().copied().zip(ys.iter().copied()).collect() };
    let (raw, smoothed) = (zip(&log.loss), zip(&log.smoothed));
    let series = [
        Series {
            points: &raw,
            colour: colour::LIGHT_BLUE,
            width: 1,
            label: "loss",
        },
        Series {
            points: &smoothed,
            colour: colour::BLUE,
            width: 2,
            label: "smoothed",
        },
    ];
    let options = ChartOptions {
        width: LOSS_CURVE_WIDTH,
        height: LOSS_CURVE_HEIGHT,
        title: "training loss",
        x_label: "step",
        y_label: "loss (log scale)",
        log_y: true,
    };
    line_chart(&series, &options).map_err(|e| format!("{}: {e}", csv.display()))
}
