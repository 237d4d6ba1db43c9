//! The MNIST subset shipped inside the crate: 10,000 training images, 1,000 per
//! digit, so that the program trains out of the box with no download.
//!
//! The subset is the first [`EMBEDDED_PER_CLASS`] images of each digit of the
//! MNIST training set, in their original order, stored as gzip IDX files; how it
//! was made (`ddpm/assets/make_subset.py`) and its licence (CC BY-SA 3.0, credit to
//! LeCun, Cortes and Burges) are in `ddpm/assets/README.md`.

use std::path::Path;

use super::error::Result;
use super::idx::{dataset_from_idx, parse_idx};
use super::Dataset;

/// Images per digit in the embedded subset.
pub const EMBEDDED_PER_CLASS: usize = 1000;

const IMAGES: &[u8] = include_bytes!("../../assets/mnist-subset/train-images-idx3-ubyte.gz");
const LABELS: &[u8] = include_bytes!("../../assets/mnist-subset/train-labels-idx1-ubyte.gz");

/// The embedded MNIST subset: 10,000 images of 1 x 28 x 28 with labels 0..9.
pub fn embedded_mnist() -> Result<Dataset> {
    let images_path = Path::new("<embedded>/train-images-idx3-ubyte.gz");
    let labels_path = Path::new("<embedded>/train-labels-idx1-ubyte.gz");
    let images = parse_idx(IMAGES, images_path, 3)?;
    let labels = parse_idx(LABELS, labels_path, 1)?;
    dataset_from_idx(images, images_path, labels, labels_path)
}
