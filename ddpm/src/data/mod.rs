//! Data sets: MNIST-style IDX files, folders of images, and a small embedded MNIST.
//!
//! Every loader returns a [`Dataset`]: the images as bytes (`N x C x H x W`,
//! row-major, 0..=255) plus optional labels. A training loop draws its own index
//! batches and turns them into `[B, C, H, W]` tensors scaled to [-1, 1] with
//! [`Dataset::batch`]. Samples go back to disk with [`save_grid`] and
//! [`save_png`].
//!
//! - [`load_mnist`] / [`load_idx_files`]: MNIST or Fashion-MNIST from a path the
//!   user gives (raw or gzip).
//! - [`load_folder`]: PNG/JPEG files, grey or RGB, centre-cropped to a square and
//!   resized, optionally labelled by class sub-folders.
//! - [`embedded_mnist`]: 10,000 MNIST training images shipped in the binary, so the
//!   program runs on a fresh machine with no download.

mod embedded;
mod error;
mod folder;
mod grid;
mod idx;

pub use embedded::{embedded_mnist, EMBEDDED_PER_CLASS};
pub use error::{DataError, Result};
pub use folder::{load_folder, IMAGE_EXTENSIONS, MAX_IMAGE_SIDE};
pub use grid::{save_grid, save_png, GRID_PADDING, GRID_PAD_VALUE};
pub use idx::{load_idx_files, load_mnist, Split, MAX_IDX_BYTES, MNIST_CLASSES};

use tensor::Tensor;

/// Images as bytes, with optional labels: what every loader returns.
///
/// Bytes rather than a float tensor: a quarter of the memory, and the scaling to
/// [-1, 1] happens per batch in [`Dataset::batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    images: Vec<u8>,
    labels: Option<Vec<u8>>,
    channels: usize,
    height: usize,
    width: usize,
    num_classes: usize,
}

impl Dataset {
    /// Wraps `images` (`N x channels x height x width` bytes, row-major, `N >= 1`)
    /// and optional `labels` (one per image, each below `num_classes`).
    /// `num_classes` must be 0 when there are no labels, and at most 256 otherwise.
    /// No data set is empty: the loaders report an empty source, naming it, before
    /// they get here.
    pub fn new(
        images: Vec<u8>,
        labels: Option<Vec<u8>>,
        channels: usize,
        height: usize,
        width: usize,
        num_classes: usize,
    ) -> Result<Self> {
        let per_image = channels
            .checked_mul(height)
            .and_then(|n| n.checked_mul(width))
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                DataError::argument(format!(
                    "image shape {channels}x{height}x{width} must be positive"
                ))
            })?;
        let count = images.len() / per_image;
        if count * per_image != images.len() {
            return Err(DataError::argument(format!(
                "{} bytes is not a whole number of {channels}x{height}x{width} images",
                images.len()
            )));
        }
        if count == 0 {
            // Training would have nothing to draw from, and every mean over the
            // data (evaluation, likelihood) would be 0 / 0.
            return Err(DataError::argument("a data set needs at least one image"));
        }
        match &labels {
            None if num_classes != 0 => {
                return Err(DataError::argument(format!(
                    "{num_classes} classes but no labels: num_classes must be 0"
                )))
            }
            None => {}
            Some(l) => {
                if num_classes == 0 || num_classes > 256 {
                    return Err(DataError::argument(format!(
                        "{num_classes} classes: must be between 1 and 256"
                    )));
                }
                if l.len() != count {
                    return Err(DataError::argument(format!(
                        "{} labels for {count} images",
                        l.len()
                    )));
                }
                if let Some(i) = l.iter().position(|&v| usize::from(v) >= num_classes) {
                    return Err(DataError::argument(format!(
                        "label {} at index {i} is not below {num_classes}",
                        l[i]
                    )));
                }
            }
        }
        Ok(Dataset {
            images,
            labels,
            channels,
            height,
            width,
            num_classes,
        })
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.images.len() / self.image_len()
    }

    /// True when there are no images: never, for [`Dataset::new`] rejects that
    /// (the method goes with [`Dataset::len`], as Rust's collections have it).
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Channels per image: 1 (grey) or 3 (RGB) for the loaders of this module.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Image height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Image width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The number of classes, 0 when the data set has no labels.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// All images, `N x C x H x W` bytes, row-major.
    pub fn images(&self) -> &[u8] {
        &self.images
    }

    /// Image `index` as `C x H x W` bytes, or `None` past the end.
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        let n = self.image_len();
        self.images.get(index * n..(index + 1) * n)
    }

    /// The labels, one per image, when the data set has them.
    pub fn labels(&self) -> Option<&[u8]> {
        self.labels.as_deref()
    }

    /// The images at `indices` as a `[B, C, H, W]` tensor scaled from 0..=255 to
    /// [-1, 1] (`x / 127.5 - 1`, so 0 and 255 map to -1 and 1 exactly), and their
    /// labels when the data set has them. An index out of range is an error.
    pub fn batch(&self, indices: &[usize]) -> Result<(Tensor, Option<Vec<usize>>)> {
        let n = self.image_len();
        let mut data = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            let image = self.image(i).ok_or_else(|| {
                DataError::argument(format!(
                    "image index {i} is out of range for a data set of {} images",
                    self.len()
                ))
            })?;
            data.extend(image.iter().map(|&x| f32::from(x) / 127.5 - 1.0));
        }
        let shape = [indices.len(), self.channels, self.height, self.width];
        let batch = Tensor::from_vec(data, &shape).map_err(|e| DataError::argument(e.to_string()))?;
        let labels = self
            .labels
            .as_ref()
            .map(|l| indices.iter().map(|&i| usize::from(l[i])).collect());
        Ok((batch, labels))
    }

    /// Bytes per image.
    fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
}
