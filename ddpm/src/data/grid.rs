//! Writing images in [-1, 1] as PNG files: one image, or a grid of samples.
//!
//! Values are clamped to [-1, 1] and mapped back to 0..=255 (the inverse of
//! [`Dataset::batch`](super::Dataset::batch)'s scaling). Files are written with
//! [`nn::fs::write_atomic`] (a temporary file beside the target, fsync, rename), so
//! a reader (or a crash) never sees half a PNG.

use std::path::Path;

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use tensor::Tensor;

use super::error::{DataError, Result};

/// Pixels of padding around and between the cells of [`save_grid`].
pub const GRID_PADDING: usize = 2;

/// The value of the padding pixels: white, which separates dark-background
/// samples such as MNIST digits.
pub const GRID_PAD_VALUE: u8 = 255;

/// Writes `images` (`[N, C, H, W]`, C = 1 or 3, values in [-1, 1]) to `path` as one
/// PNG: a grid of `ncols` columns (fewer when N is smaller) in row-major order, with
/// [`GRID_PADDING`] pixels of [`GRID_PAD_VALUE`] around every cell. Empty cells of
/// the last row stay padding colour. NaN is written as 0.
pub fn save_grid(path: impl AsRef<Path>, images: &Tensor, ncols: usize) -> Result<()> {
    let shape = images.shape();
    if shape.len() != 4 {
        return Err(DataError::argument(format!(
            "save_grid needs an [N, C, H, W] tensor, got shape {shape:?}"
        )));
    }
    if ncols == 0 {
        return Err(DataError::argument("save_grid needs at least one column"));
    }
    write_grid(path.as_ref(), images, ncols, GRID_PADDING)
}

/// Writes one image (`[C, H, W]`, C = 1 or 3, values in [-1, 1]) to `path` as a PNG
/// of `W x H` pixels, grey or RGB.
pub fn save_png(path: impl AsRef<Path>, image: &Tensor) -> Result<()> {
    let shape = image.shape();
    if shape.len() != 3 {
        return Err(DataError::argument(format!(
            "save_png needs a [C, H, W] tensor, got shape {shape:?}"
        )));
    }
    let batch = image
        .unsqueeze(0)
        .map_err(|e| DataError::argument(e.to_string()))?;
    write_grid(path.as_ref(), &batch, 1, 0)
}

/// Lays out a rank-4 tensor as a grid with `pad` pixels of padding and writes it.
fn write_grid(path: &Path, images: &Tensor, ncols: usize, pad: usize) -> Result<()> {
    let [n, c, h, w] = [0, 1, 2, 3].map(|i| images.shape()[i]);
    if n == 0 || h == 0 || w == 0 || (c != 1 && c != 3) {
        return Err(DataError::argument(format!(
            "cannot write images of shape {:?} as PNG: needs N, H, W > 0 and C = 1 or 3",
            images.shape()
        )));
    }
    let cols = ncols.min(n);
    let rows = n.div_ceil(cols);
    let grid_w = cols * (w + pad) + pad;
    let grid_h = rows * (h + pad) + pad;
    let too_big = || DataError::argument(format!("a {grid_w}x{grid_h} image is too large for PNG"));
    let (png_w, png_h) = (
        u32::try_from(grid_w).map_err(|_| too_big())?,
        u32::try_from(grid_h).map_err(|_| too_big())?,
    );
    let values = images.to_vec();
    let mut pixels = vec![GRID_PAD_VALUE; grid_w * grid_h * c];
    for k in 0..n {
        let (x0, y0) = (pad + (k % cols) * (w + pad), pad + (k / cols) * (h + pad));
        for ch in 0..c {
            for y in 0..h {
                let src = &values[((k * c + ch) * h + y) * w..][..w];
                for (x, &v) in src.iter().enumerate() {
                    pixels[((y0 + y) * grid_w + x0 + x) * c + ch] = to_u8(v);
                }
            }
        }
    }
    let color = if c == 1 {
        ExtendedColorType::L8
    } else {
        ExtendedColorType::Rgb8
    };
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(&pixels, png_w, png_h, color)
        .map_err(|source| DataError::Image {
            path: path.to_path_buf(),
            source,
        })?;
    nn::fs::write_atomic(path, &png).map_err(|e| DataError::io(path, e))
}

/// Maps [-1, 1] to 0..=255, clamping; NaN becomes 0.
fn to_u8(v: f32) -> u8 {
    // `as` saturates and sends NaN to 0.
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_u8_inverts_the_batch_scaling_and_clamps() {
        for x in 0..=255u8 {
            assert_eq!(to_u8(f32::from(x) / 127.5 - 1.0), x);
        }
        assert_eq!(to_u8(-7.0), 0);
        assert_eq!(to_u8(3.0), 255);
        assert_eq!(to_u8(f32::NAN), 0);
    }
}
