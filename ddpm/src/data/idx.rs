//! IDX files: the format of MNIST and Fashion-MNIST, raw or gzip-compressed.
//!
//! An IDX file is a big-endian `u32` magic number (`0x0000_08_nd`: unsigned bytes,
//! `nd` dimensions), one big-endian `u32` per dimension, then the bytes row-major.
//! Images are `0x00000803` (count, rows, cols) and labels `0x00000801` (count).
//!
//! Gzip is detected by its magic bytes `1f 8b`, not by the file name. The header is
//! checked against [`MAX_IDX_BYTES`] and the data is read through a reader capped at
//! the declared size, so a corrupt header cannot make the loader allocate more than
//! the file actually holds.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

use super::error::{DataError, Result};
use super::Dataset;

/// The largest data section (in bytes, after decompression) an IDX file may declare:
/// 2 GiB, far above any MNIST-like set (MNIST's training images are 47 MB), and low
/// enough that a corrupt header is rejected before anything is read.
pub const MAX_IDX_BYTES: u64 = 1 << 31;

/// The number of classes of MNIST and Fashion-MNIST: labels must be below it.
pub const MNIST_CLASSES: usize = 10;

/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The IDX type code of unsigned bytes, the third byte of the magic number.
const IDX_UBYTE: u8 = 0x08;

/// Which half of an MNIST-style data set to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The training set: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`.
    Train,
    /// The test set: `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`.
    Test,
}

impl Split {
    /// The standard file names of this split's images and labels, without `.gz`.
    pub fn file_names(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        }
    }
}

/// The dimensions and bytes of one IDX file.
pub(crate) struct IdxArray {
    /// The size of each dimension, from the header.
    pub(crate) dims: Vec<usize>,
    /// The bytes, row-major; exactly the product of `dims`.
    pub(crate) data: Vec<u8>,
}

/// Loads one split of an MNIST-style data set from `dir`, which holds the standard
/// file names of [`Split::file_names`], each raw or with a `.gz` suffix (the raw
/// file wins when both exist). The images are 1 channel; the labels must be below
/// [`MNIST_CLASSES`].
pub fn load_mnist(dir: impl AsRef<Path>, split: Split) -> Result<Dataset> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(DataError::NotFound {
            path: dir.to_path_buf(),
            msg: "no such directory".into(),
        });
    }
    let (images, labels) = split.file_names();
    load_idx_files(find(dir, images)?, find(dir, labels)?)
}

/// Loads an image file (`0x00000803`) and its label file (`0x00000801`) under any
/// names, for copies of MNIST or Fashion-MNIST that were renamed.
pub fn load_idx_files(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Dataset> {
    let (images, labels) = (images.as_ref(), labels.as_ref());
    let image_array = read_idx(images, 3)?;
    let label_array = read_idx(labels, 1)?;
    dataset_from_idx(image_array, images, label_array, labels)
}

/// Builds the data set of an image array and a label array, checking that there
/// is at least one image and that they agree; the paths only name the sources in
/// errors.
pub(crate) fn dataset_from_idx(
    images: IdxArray,
    images_path: &Path,
    labels: IdxArray,
    labels_path: &Path,
) -> Result<Dataset> {
    let (count, rows, cols) = (images.dims[0], images.dims[1], images.dims[2]);
    if rows == 0 || cols == 0 {
        return Err(DataError::format(
            images_path,
            format!("images of {rows}x{cols} pixels: both sides must be positive"),
        ));
    }
    if count == 0 {
        return Err(DataError::format(
            images_path,
            "holds no images (its header declares a count of 0)",
        ));
    }
    if labels.dims[0] != count {
        return Err(DataError::format(
            labels_path,
            format!(
                "holds {} labels but {} holds {count} images",
                labels.dims[0],
                images_path.display()
            ),
        ));
    }
    if let Some(i) = labels.data.iter().position(|&l| usize::from(l) >= MNIST_CLASSES) {
        return Err(DataError::format(
            labels_path,
            format!(
                "label {} at index {i} is not below {MNIST_CLASSES}",
                labels.data[i]
            ),
        ));
    }
    Dataset::new(images.data, Some(labels.data), 1, rows, cols, MNIST_CLASSES)
}

/// `dir/name` if it exists, else `dir/name.gz`, else a [`DataError::NotFound`].
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Ok(raw);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(DataError::NotFound {
        path: dir.to_path_buf(),
        msg: format!("has neither {name} nor {name}.gz"),
    })
}

/// Reads the IDX file at `path`, which must hold unsigned bytes in `ndims` dimensions.
pub(crate) fn read_idx(path: &Path, ndims: u8) -> Result<IdxArray> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    parse_idx(BufReader::new(file), path, ndims)
}

/// Parses an IDX stream (raw or gzip) of unsigned bytes in `ndims` dimensions;
/// `path` only names the source in errors.
pub(crate) fn parse_idx(mut reader: impl BufRead, path: &Path, ndims: u8) -> Result<IdxArray> {
    let head = reader.fill_buf().map_err(|e| DataError::io(path, e))?;
    if head.starts_with(&GZIP_MAGIC) {
        parse_raw(BufReader::new(MultiGzDecoder::new(reader)), path, ndims, true)
    } else {
        parse_raw(reader, path, ndims, false)
    }
}

/// Parses an uncompressed IDX stream; `gzip` says whether it comes out of a gzip
/// decoder, whose decoding errors are reported as a corrupt file.
fn parse_raw(mut reader: impl Read, path: &Path, ndims: u8, gzip: bool) -> Result<IdxArray> {
    let header_len = 4 + 4 * u64::from(ndims);
    let header = read_up_to(&mut reader, header_len, path, gzip)?;
    if header.len() < 4 {
        return Err(truncated(path, header_len, header.len()));
    }
    let magic = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let expected_magic = u32::from_be_bytes([0, 0, IDX_UBYTE, ndims]);
    if magic != expected_magic {
        return Err(DataError::format(
            path,
            format!(
                "magic number {magic:#010x} is not {expected_magic:#010x} \
                 (an IDX file of unsigned bytes in {ndims} dimension(s))"
            ),
        ));
    }
    if (header.len() as u64) < header_len {
        return Err(truncated(path, header_len, header.len()));
    }
    let dims: Vec<usize> = header[4..]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let declared = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&n| n <= MAX_IDX_BYTES)
        .ok_or_else(|| {
            DataError::format(
                path,
                format!(
                    "the header declares dimensions {dims:?}, more than the {MAX_IDX_BYTES} bytes \
                     this loader accepts: a corrupt header?"
                ),
            )
        })?;
    // One byte more than declared, to detect trailing data without reading it all.
    let data = read_up_to(&mut reader, declared + 1, path, gzip)?;
    let got = data.len() as u64;
    if got < declared {
        return Err(truncated(
            path,
            header_len + declared,
            header_len as usize + data.len(),
        ));
    }
    if got > declared {
        return Err(DataError::format(
            path,
            format!(
                "holds more than the {} bytes its header declares (dimensions {dims:?})",
                header_len + declared
            ),
        ));
    }
    Ok(IdxArray { dims, data })
}

/// Reads at most `limit` bytes (fewer at the end of the stream), growing the buffer
/// only as bytes arrive.
fn read_up_to(reader: &mut impl Read, limit: u64, path: &Path, gzip: bool) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    reader.take(limit).read_to_end(&mut buf).map_err(|e| {
        let decoding = matches!(
            e.kind(),
            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof
        );
        if gzip && decoding {
            DataError::format(path, format!("corrupt gzip stream: {e}"))
        } else {
            DataError::io(path, e)
        }
    })?;
    Ok(buf)
}

/// A [`DataError::Truncated`]; the counts are of the uncompressed IDX stream.
fn truncated(path: &Path, expected: u64, got: usize) -> DataError {
    DataError::Truncated {
        path: path.to_path_buf(),
        expected,
        got: got as u64,
    }
}
