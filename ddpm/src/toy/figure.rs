//! The figure: three rows of five panels, the roll diffused forward, the learned
//! reverse chain, and the reverse step's drift on a grid, at `t = 0, T/4, T/2,
//! 3T/4, T` (Sohl-Dickstein et al. 2015, figure 1).

use autograd::Result;
use rand::Rng;

use super::data::Point;
use super::diffusion::{drift, forward_marginal, Trained};
use crate::plot::{colour, font, Canvas, Panel, PixelRect, Rgb};

/// The figure's layout, in pixels.
const PANEL: usize = 190;
const GAP: usize = 14;
const LEFT: usize = 120;
const TOP: usize = 78;
const COLUMNS: usize = 5;
const ROWS: usize = 3;
/// Data range of every panel, `[-R, R]` on both axes.
const RANGE: f64 = 2.7;
/// Drift arrows per side of the grid.
const GRID: usize = 15;

/// The paper's times of the figure's columns: `0, T/4, T/2, 3T/4, T`.
pub fn column_times(steps: usize) -> [usize; COLUMNS] {
    [0, 1, 2, 3, 4].map(|k| (k * steps + 2) / 4)
}

/// The three rows of the figure, as points (rows 1 and 2) and arrows (row 3).
pub struct FigureData {
    /// `q(x_t)` samples at each column's time.
    pub forward: Vec<Vec<Point>>,
    /// Reverse-chain samples at each column's time.
    pub reverse: Vec<Vec<Point>>,
    /// `(grid point, drift)` at each column's time (`t = 1` in the first column).
    pub drift: Vec<Vec<(Point, Point)>>,
    /// The paper's time of each column.
    pub times: [usize; COLUMNS],
}

/// The points and arrows of the figure: `data` diffused forward, `chain` (from
/// [`reverse_chain`](super::reverse_chain)) at the same times, and the drift on a grid.
pub fn figure_data<R: Rng + ?Sized>(
    trained: &Trained,
    data: &[Point],
    chain: &[Vec<Point>],
    rng: &mut R,
) -> Result<FigureData> {
    let times = column_times(trained.schedule.steps());
    let forward = times
        .iter()
        .map(|&t| forward_marginal(&trained.schedule, data, t, rng))
        .collect::<Result<Vec<_>>>()?;
    let reverse = times.iter().map(|&t| chain[t].clone()).collect();
    let side = |i: usize| (-RANGE + 2.0 * RANGE * (i as f64 + 0.5) / GRID as f64) as f32;
    let grid: Vec<Point> = (0..GRID * GRID)
        .map(|k| [side(k % GRID), side(k / GRID)])
        .collect();
    let drift = times
        .iter()
        .map(|&t| {
            let d = drift(&trained.model, &trained.schedule, &grid, t.max(1) - 1)?;
            Ok(grid.iter().copied().zip(d).collect())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(FigureData {
        forward,
        reverse,
        drift,
        times,
    })
}

/// The axes of the panel in `row`, `col`.
fn panel_at(row: usize, col: usize) -> Panel {
    let rect = PixelRect {
        left: (LEFT + col * (PANEL + GAP)) as i64,
        top: (TOP + row * (PANEL + GAP)) as i64,
        width: PANEL,
        height: PANEL,
    };
    Panel::new(rect, (-RANGE, RANGE), (-RANGE, RANGE), false).expect("a valid fixed range")
}

fn as_pairs(points: &[Point]) -> Vec<(f64, f64)> {
    points.iter().map(|p| (p[0] as f64, p[1] as f64)).collect()
}

/// `text` on a white box in the top-left corner inside a panel.
fn corner_label(canvas: &mut Canvas, panel: &Panel, text: &str) {
    let r = panel.rect();
    let w = font::text_width(text, 1);
    canvas.fill_rect(r.left + 1, r.top + 1, w + 8, font::HEIGHT + 8, colour::WHITE);
    canvas.text(r.left + 5, r.top + 5, text, colour::BLACK, 1);
}

/// Draws the figure: three rows of five panels, row labels on the left, times on
/// top.
pub fn draw_figure(fig: &FigureData, steps: usize) -> Canvas {
    let width = LEFT + COLUMNS * (PANEL + GAP);
    let height = TOP + ROWS * (PANEL + GAP);
    let mut canvas = Canvas::new(width, height, colour::WHITE);
    let title = format!("DDPM ON A SWISS ROLL (T = {steps})");
    let w = font::text_width(&title, 2) as i64;
    canvas.text((width as i64 - w) / 2, 12, &title, colour::BLACK, 2);
    for (col, &t) in fig.times.iter().enumerate() {
        let r = panel_at(0, col).rect();
        let label = format!("T = {t}");
        let lw = font::text_width(&label, 2) as i64;
        canvas.text(
            r.left + (PANEL as i64 - lw) / 2,
            r.top - 24,
            &label,
            colour::BLACK,
            2,
        );
        draw_points(&mut canvas, &panel_at(0, col), &fig.forward[col], POINTS);
        draw_points(&mut canvas, &panel_at(1, col), &fig.reverse[col], POINTS);
        draw_points(
            &mut canvas,
            &panel_at(2, col),
            &fig.reverse[col],
            colour::LIGHT_GREY,
        );
        draw_arrows(&mut canvas, &panel_at(2, col), &fig.drift[col]);
        corner_label(&mut canvas, &panel_at(2, col), &format!("T = {}", t.max(1)));
    }
    let rows: [&[&str]; ROWS] = [
        &["FORWARD", "Q(X_T)", "DATA TO NOISE"],
        &["REVERSE", "P(X_T)", "NOISE TO DATA"],
        &["DRIFT", "MU(X_T, T) - X_T", "(RESCALED)"],
    ];
    for (row, lines) in rows.iter().enumerate() {
        let top = panel_at(row, 0).rect().top + PANEL as i64 / 2 - 20;
        for (k, line) in lines.iter().enumerate() {
            let scale = if k == 0 { 2 } else { 1 };
            let y = top + if k == 0 { 0 } else { 8 + 12 * k as i64 };
            canvas.text(8, y, line, colour::BLACK, scale);
        }
    }
    canvas
}

/// Colour of the scatter points.
const POINTS: Rgb = [25, 45, 90];

fn draw_points(canvas: &mut Canvas, panel: &Panel, points: &[Point], colour: Rgb) {
    panel.scatter(canvas, &as_pairs(points), 0.9, colour);
    panel.frame(canvas, colour::GREY);
}

/// Arrows from each grid point along its drift. Lengths vary over orders of
/// magnitude (far from the data the drift is large), so an arrow of length `l` is
/// drawn `0.9 cell l / (l + m)` long, `m` the 20th percentile of the lengths:
/// proportional for short arrows, saturating at a grid cell for long ones.
fn draw_arrows(canvas: &mut Canvas, panel: &Panel, arrows: &[(Point, Point)]) {
    let mut lengths: Vec<f64> = arrows
        .iter()
        .map(|(_, d)| (d[0] as f64).hypot(d[1] as f64))
        .collect();
    lengths.sort_by(f64::total_cmp);
    let m = lengths.get(lengths.len() / 5).copied().unwrap_or(0.0);
    if m <= 0.0 || !m.is_finite() {
        return;
    }
    let cell = 2.0 * RANGE / GRID as f64;
    for (p, d) in arrows {
        let (x, y) = (p[0] as f64, p[1] as f64);
        let len = (d[0] as f64).hypot(d[1] as f64);
        let k = 0.9 * cell / (len + m);
        let (a, b) = (
            panel.to_pixel(x, y),
            panel.to_pixel(x + k * d[0] as f64, y + k * d[1] as f64),
        );
        canvas.arrow(a.0, a.1, b.0, b.1, 3.0, colour::RED);
    }
}
