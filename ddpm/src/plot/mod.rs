//! A tiny raster plotting library: enough to draw a training-loss curve and the
//! scatter plots of the 2-D toy, with no dependency beyond `image` (for the PNG).
//!
//! Three layers, each usable alone:
//!
//! - [`Canvas`]: an RGB pixel buffer with the drawing primitives (`set`, Bresenham
//!   `line`, `disc`, `arrow`, `rect`, `text` in an embedded 5x7 bitmap font) and an
//!   atomic `save_png`.
//! - [`Panel`]: axes. It maps data coordinates (linear x; linear or log y) into a
//!   pixel rectangle of a canvas and draws a frame, "nice" round ticks with labels,
//!   a title and axis labels.
//! - [`line_chart`] and [`loss_curve`]: whole figures. `loss_curve` reads the
//!   `loss.csv` that `ddpm train` writes and draws raw and smoothed loss on a log
//!   axis.
//!
//! Pixel coordinates: `x` grows rightwards, `y` downwards, `(0, 0)` is the top-left
//! pixel and pixel `(x, y)` covers the unit square centred on the integer point, so
//! continuous coordinates round to the nearest pixel.
//!
//! ```no_run
//! use ddpm::plot::{loss_curve, Canvas, colour};
//! let chart = loss_curve(std::path::Path::new("runs/default/loss.csv")).unwrap();
//! chart.save_png(std::path::Path::new("loss.png")).unwrap();
//! let mut c = Canvas::new(40, 20, colour::WHITE);
//! c.text(2, 2, "T = 10", colour::BLACK, 1);
//! ```

mod canvas;
mod chart;
pub mod font;
mod panel;

pub use canvas::{colour, Canvas, Rgb};
pub use chart::{
    line_chart, loss_curve, read_loss_csv, ChartOptions, LossLog, Series, LOSS_CURVE_HEIGHT, LOSS_CURVE_WIDTH,
};
pub use panel::{log_ticks, nice_ticks, tick_label, Panel, PixelRect};
