//! The canvas: an RGB pixel buffer and the primitives everything else is drawn with.
//!
//! Drawing outside the canvas is clipped silently (each primitive only ever calls
//! [`Canvas::set`], which ignores pixels off the canvas), so callers need not clip.
//!
//! Lines use Bresenham's algorithm: for a line whose major axis is `x` (`|dx| >=
//! |dy|`), step `x` one pixel at a time and keep the error `e = 2 (dy x - dx y) +
//! const` of the ideal line; when it crosses zero, step `y` too. Only integer
//! additions, and every pixel is the one nearest the ideal line in its column, so
//! a line from `a` to `b` sets exactly `max(|dx|, |dy|) + 1` pixels including both
//! ends.

use std::fs;
use std::path::Path;

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use nn::fs::write_atomic;

use super::font;

/// A colour: red, green, blue, 0..=255.
pub type Rgb = [u8; 3];

/// A few named colours.
pub mod colour {
    use super::Rgb;
    /// `#000000`.
    pub const BLACK: Rgb = [0, 0, 0];
    /// `#ffffff`.
    pub const WHITE: Rgb = [255, 255, 255];
    /// Mid grey, for frames and ticks.
    pub const GREY: Rgb = [128, 128, 128];
    /// Light grey, for grids and background points.
    pub const LIGHT_GREY: Rgb = [205, 205, 205];
    /// A strong blue.
    pub const BLUE: Rgb = [31, 90, 180];
    /// A pale blue (a light version of [`BLUE`]).
    pub const LIGHT_BLUE: Rgb = [165, 195, 235];
    /// A strong red.
    pub const RED: Rgb = [200, 40, 40];
    /// A strong orange.
    pub const ORANGE: Rgb = [230, 120, 20];
}

/// An RGB image being drawn on: `width x height` pixels, row-major, 3 bytes each.
#[derive(Debug, Clone, PartialEq)]
pub struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A canvas of `width x height` pixels, all `background`.
    pub fn new(width: usize, height: usize, background: Rgb) -> Canvas {
        let pixels = background
            .iter()
            .copied()
            .cycle()
            .take(width * height * 3)
            .collect();
        Canvas {
            width,
            height,
            pixels,
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The raw pixels: row-major, `[r, g, b]` per pixel.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The colour at `(x, y)`, or `None` off the canvas.
    pub fn get(&self, x: i64, y: i64) -> Option<Rgb> {
        let i = self.index(x, y)?;
        Some([self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]])
    }

    /// Byte offset of pixel `(x, y)`, if on the canvas.
    fn index(&self, x: i64, y: i64) -> Option<usize> {
        let (x, y) = (usize::try_from(x).ok()?, usize::try_from(y).ok()?);
        (x < self.width && y < self.height).then(|| (y * self.width + x) * 3)
    }

    /// Sets pixel `(x, y)`; pixels off the canvas are ignored.
    pub fn set(&mut self, x: i64, y: i64, colour: Rgb) {
        if let Some(i) = self.index(x, y) {
            self.pixels[i..i + 3].copy_from_slice(&colour);
        }
    }

    /// A one-pixel line from `(x0, y0)` to `(x1, y1)`, both ends included
    /// (Bresenham, in all octants).
    pub fn line(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, colour: Rgb) {
        bresenham(x0, y0, x1, y1, |x, y| self.set(x, y, colour));
    }

    /// A line `width` pixels thick: the Bresenham line stamped with a
    /// `width x width` square centred on each of its pixels.
    pub fn thick_line(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, width: usize, colour: Rgb) {
        let w = width.max(1) as i64;
        let lo = -(w - 1) / 2;
        bresenham(x0, y0, x1, y1, |x, y| {
            for dy in lo..lo + w {
                for dx in lo..lo + w {
                    self.set(x + dx, y + dy, colour);
                }
            }
        });
    }

    /// A filled disc: every pixel whose centre `(x, y)` has
    /// `(x - cx)^2 + (y - cy)^2 <= r^2` (a scatter-plot point).
    pub fn disc(&mut self, cx: f64, cy: f64, r: f64, colour: Rgb) {
        if !(cx.is_finite() && cy.is_finite() && r >= 0.0) {
            return;
        }
        let (x_lo, x_hi) = ((cx - r).ceil() as i64, (cx + r).floor() as i64);
        let (y_lo, y_hi) = ((cy - r).ceil() as i64, (cy + r).floor() as i64);
        for y in y_lo..=y_hi {
            for x in x_lo..=x_hi {
                let (dx, dy) = (x as f64 - cx, y as f64 - cy);
                if dx * dx + dy * dy <= r * r {
                    self.set(x, y, colour);
                }
            }
        }
    }

    /// An arrow from `(x0, y0)` to `(x1, y1)`: the shaft, and a head of two strokes
    /// `head` pixels long (at most half the shaft) at 25 degrees either side of it.
    pub fn arrow(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, head: f64, colour: Rgb) {
        if ![x0, y0, x1, y1].iter().all(|v| v.is_finite()) {
            return;
        }
        let (tip_x, tip_y) = (x1.round() as i64, y1.round() as i64);
        self.line(x0.round() as i64, y0.round() as i64, tip_x, tip_y, colour);
        let (dx, dy) = (x1 - x0, y1 - y0);
        let len = (dx * dx + dy * dy).sqrt();
        if len < 1.0 {
            return;
        }
        let h = head.min(len / 2.0);
        // The unit vector pointing back from the tip, rotated by +-25 degrees.
        let (ux, uy) = (-dx / len, -dy / len);
        let (s, c) = 25f64.to_radians().sin_cos();
        for sign in [-1.0, 1.0] {
            let (rx, ry) = (ux * c - sign * uy * s, sign * ux * s + uy * c);
            let (ex, ey) = ((x1 + h * rx).round() as i64, (y1 + h * ry).round() as i64);
            self.line(tip_x, tip_y, ex, ey, colour);
        }
    }

    /// The one-pixel outline of the `width x height` rectangle with top-left
    /// pixel `(x, y)`.
    pub fn rect(&mut self, x: i64, y: i64, width: usize, height: usize, colour: Rgb) {
        if width == 0 || height == 0 {
            return;
        }
        let (x1, y1) = (x + width as i64 - 1, y + height as i64 - 1);
        self.line(x, y, x1, y, colour);
        self.line(x, y1, x1, y1, colour);
        self.line(x, y, x, y1, colour);
        self.line(x1, y, x1, y1, colour);
    }

    /// The filled `width x height` rectangle with top-left pixel `(x, y)`.
    pub fn fill_rect(&mut self, x: i64, y: i64, width: usize, height: usize, colour: Rgb) {
        for dy in 0..height as i64 {
            for dx in 0..width as i64 {
                self.set(x + dx, y + dy, colour);
            }
        }
    }

    /// Writes `text` in the 5x7 font with its top-left corner at `(x, y)`, each font
    /// pixel a `scale x scale` block; returns the width drawn
    /// ([`font::text_width`]).
    pub fn text(&mut self, x: i64, y: i64, text: &str, colour: Rgb, scale: usize) -> usize {
        let s = scale.max(1);
        for (k, c) in text.chars().enumerate() {
            let left = x + (k * font::ADVANCE * s) as i64;
            for row in 0..font::HEIGHT {
                for col in (0..font::WIDTH).filter(|&col| font::ink(c, col, row)) {
                    let (px, py) = (left + (col * s) as i64, y + (row * s) as i64);
                    self.fill_rect(px, py, s, s, colour);
                }
            }
        }
        font::text_width(text, s)
    }

    /// Copies `other` onto this canvas with its top-left pixel at `(x, y)`.
    pub fn blit(&mut self, other: &Canvas, x: i64, y: i64) {
        for oy in 0..other.height as i64 {
            for ox in 0..other.width as i64 {
                if let Some(c) = other.get(ox, oy) {
                    self.set(x + ox, y + oy, c);
                }
            }
        }
    }

    /// Writes the canvas as an RGB PNG with [`write_atomic`] (a temporary file
    /// beside `path`, fsync, rename), so no reader ever sees half a file. Creates
    /// the parent directory if needed.
    pub fn save_png(&self, path: &Path) -> Result<(), String> {
        let fail =
            |what: &str, e: &dyn std::fmt::Display| format!("cannot write PNG {}: {what}{e}", path.display());
        let (w, h) = (u32::try_from(self.width), u32::try_from(self.height));
        let (Ok(w), Ok(h)) = (w, h) else {
            return Err(fail("", &"the canvas is too large for PNG"));
        };
        if w == 0 || h == 0 {
            return Err(fail("", &"the canvas is empty"));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| fail("creating its directory: ", &e))?;
        }
        let mut png = Vec::new();
        PngEncoder::new(&mut png)
            .write_image(&self.pixels, w, h, ExtendedColorType::Rgb8)
            .map_err(|e| fail("", &e))?;
        write_atomic(path, &png).map_err(|e| fail("", &e))
    }
}

/// Calls `plot(x, y)` for each pixel of the Bresenham line from `(x0, y0)` to
/// `(x1, y1)`, in order from the first end.
fn bresenham(x0: i64, y0: i64, x1: i64, y1: i64, mut plot: impl FnMut(i64, i64)) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = ((x1 - x0).signum(), (y1 - y0).signum());
    // e = dx + dy tracks, doubled, how far the next candidate pixels sit on either
    // side of the ideal line; the sign of 2e against dy and dx picks the step.
    let (mut x, mut y, mut err) = (x0, y0, dx + dy);
    loop {
        plot(x, y);
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}
