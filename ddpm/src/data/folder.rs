//! A folder of PNG or JPEG images, grey or RGB, brought to one square size.
//!
//! Each image's centre square (the long side cropped to the short one) is
//! converted to the requested channels and resized to `size` (triangle filter:
//! smooth, no ringing, so a flat area keeps its exact value). Files are taken in
//! file-name order so that a data set loads identically on every machine.
//!
//! Labels: when the folder holds no images itself but has sub-folders, each
//! sub-folder is a class (class `k` is the `k`-th folder in name order, e.g.
//! `0/`..`9/`) and the images inside it are labelled with `k`.
//!
//! # Untrusted files
//!
//! A folder of images is user input, so every bad entry is an error that names it:
//!
//! - Only regular files are opened (a symlink is followed): a FIFO named `x.png`
//!   would block the loader forever, and a directory named `x.png` is no image.
//! - Memory is bounded per image. The size is read from the header first, and a
//!   side above [`MAX_IMAGE_SIDE`] is rejected before anything is decoded (a
//!   100-byte PNG can declare 60000 x 60000 pixels); the decode itself stays
//!   under the `image` crate's default 512 MiB allocation limit. Cropping before
//!   resizing keeps the resize at `size x size`, whatever the aspect ratio (resizing
//!   a 1 x 5000 strip's short side to 256 first would mean 256 x 1,280,000 pixels).
//! - A panic inside a decoder (the `png` crate, 0.18.1, indexes past a 4-byte
//!   palette) is caught and becomes an error. The default panic hook still prints
//!   the panic's message to stderr before the error is returned: replacing the
//!   process-wide hook around each decode would also silence unrelated panics in
//!   other threads, so the message is accepted as a harmless extra line.
//!   Catching needs unwinding panics (the default; not `panic = "abort"`).

use std::any::Any;
use std::fs;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader};

use super::error::{DataError, Result};
use super::Dataset;

/// File extensions (compared case-insensitively) taken as images; other files are
/// skipped.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The longest side, in pixels, of an image the loader decodes (64 megapixels
/// for a square: far above any training image, and rejected from the header).
pub const MAX_IMAGE_SIDE: u32 = 8192;

/// Loads every image of `dir` as `channels` (1: grey, 3: RGB) x `size` x `size`.
///
/// Files whose extension is not in [`IMAGE_EXTENSIONS`], and names starting with
/// `.`, are skipped. If `dir` holds images, they form an unlabelled data set (its
/// sub-folders are ignored); otherwise each sub-folder is a class, as the module
/// documentation says. An alpha channel is dropped. An entry with an image's
/// extension that is not a regular file, a file that cannot be decoded, and an
/// image larger than [`MAX_IMAGE_SIDE`] are errors that name the file; so is a
/// folder that holds no images at all.
pub fn load_folder(dir: impl AsRef<Path>, channels: usize, size: usize) -> Result<Dataset> {
    let dir = dir.as_ref();
    if channels != 1 && channels != 3 {
        return Err(DataError::argument(format!(
            "channels must be 1 or 3, not {channels}"
        )));
    }
    let side = u32::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| DataError::argument(format!("image size {size} must be in 1..=u32::MAX")))?;
    let (files, folders) = list(dir)?;
    let mut images = Vec::new();
    let labels = if !files.is_empty() {
        for file in &files {
            images.extend(load_image(file, channels, side)?);
        }
        None
    } else {
        if folders.len() > 256 {
            return Err(DataError::format(
                dir,
                format!("{} class folders: at most 256 are supported", folders.len()),
            ));
        }
        let mut labels = Vec::new();
        for (class, folder) in folders.iter().enumerate() {
            for file in list(folder)?.0 {
                images.extend(load_image(&file, channels, side)?);
                labels.push(class as u8);
            }
        }
        Some(labels)
    };
    if images.is_empty() {
        return Err(DataError::NotFound {
            path: dir.to_path_buf(),
            msg: format!(
                "holds no images ({}), neither itself nor in a sub-folder",
                IMAGE_EXTENSIONS.join(", ")
            ),
        });
    }
    let num_classes = if labels.is_some() { folders.len() } else { 0 };
    Dataset::new(images, labels, channels, size, size, num_classes)
}

/// The image files and the sub-folders of `dir`, each sorted by name. An entry
/// with an image's extension must be a regular file (after following symlinks).
fn list(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let entries = fs::read_dir(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => DataError::NotFound {
            path: dir.to_path_buf(),
            msg: "no such directory".into(),
        },
        _ => DataError::io(dir, e),
    })?;
    let mut files = Vec::new();
    let mut folders = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        // `metadata` follows symlinks (`symlink_metadata` would not): a link to an
        // image is an image, a dangling one is an error if it has an image's name.
        let meta = fs::metadata(&path);
        if is_image(&path) {
            let kind = meta.map_err(|e| DataError::io(&path, e))?.file_type();
            if !kind.is_file() {
                let what = if kind.is_dir() {
                    "is a directory"
                } else {
                    "is not a regular file (a FIFO, socket or device?)"
                };
                return Err(DataError::format(
                    &path,
                    format!("{what}, but has an image's extension: only regular files are read as images"),
                ));
            }
            files.push(path);
        } else if meta.is_ok_and(|m| m.is_dir()) {
            folders.push(path);
        }
    }
    files.sort();
    folders.sort();
    Ok((files, folders))
}

/// True when the extension of `path` is one of [`IMAGE_EXTENSIONS`].
fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Decodes `path` (format guessed from the content) and returns its pixels as
/// `channels x side x side` bytes, planar.
fn load_image(path: &Path, channels: usize, side: u32) -> Result<Vec<u8>> {
    let image = decode(path)?;
    let (x, y, s) = centre_square(image.width(), image.height());
    let square = image.crop_imm(x, y, s, s);
    let square = if channels == 1 {
        DynamicImage::ImageLuma8(square.to_luma8())
    } else {
        DynamicImage::ImageRgb8(square.to_rgb8())
    };
    let resized = if s == side {
        square
    } else {
        square.resize_exact(side, side, FilterType::Triangle)
    };
    let interleaved = resized.into_bytes();
    // Interleaved (H, W, C) to planar (C, H, W).
    let pixels = (side * side) as usize;
    Ok((0..channels)
        .flat_map(|c| interleaved.iter().skip(c).step_by(channels).take(pixels).copied())
        .collect())
}

/// Reads the header of `path`, checks the image's size against
/// [`MAX_IMAGE_SIDE`], then decodes it; a panic inside the decoder is an error.
fn decode(path: &Path) -> Result<DynamicImage> {
    let image_error = |source| DataError::Image {
        path: path.to_path_buf(),
        source,
    };
    let reader = ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    // The decoders index with data from the file; an unwinding panic leaves no
    // shared state behind (the reader and decoder are dropped with it).
    let decoded = panic::catch_unwind(AssertUnwindSafe(|| {
        let decoder = reader.into_decoder().map_err(image_error)?;
        let (w, h) = decoder.dimensions();
        if w == 0 || h == 0 || w.max(h) > MAX_IMAGE_SIDE {
            return Err(DataError::format(
                path,
                format!(
                    "is {w}x{h} pixels: only images of 1 to {MAX_IMAGE_SIDE} pixels on a side are loaded"
                ),
            ));
        }
        DynamicImage::from_decoder(decoder).map_err(image_error)
    }));
    decoded.unwrap_or_else(|payload| {
        Err(DataError::format(
            path,
            format!(
                "could not be decoded (the decoder panicked: {})",
                panic_message(payload.as_ref())
            ),
        ))
    })
}

/// The text of a panic's payload (a `&str` or a `String` for `panic!` messages).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// The largest centred square of a `w x h` image: its left, top and side (the
/// long side's excess split evenly, rounding the offset down).
fn centre_square(w: u32, h: u32) -> (u32, u32, u32) {
    let s = w.min(h);
    ((w - s) / 2, (h - s) / 2, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_centre_square_of_the_long_side_is_kept() {
        assert_eq!(centre_square(2, 6), (0, 2, 2));
        assert_eq!(centre_square(7, 4), (1, 0, 4));
        assert_eq!(centre_square(5, 5), (0, 0, 5));
        // A 1 x 5000 strip keeps one pixel, the centre one (rounded down): the
        // resize then works on 1 pixel, not on 5000 scaled up.
        assert_eq!(centre_square(1, 5000), (0, 2499, 1));
        assert_eq!(centre_square(u32::MAX, 1), (u32::MAX / 2, 0, 1));
    }

    #[test]
    fn panic_messages_are_read_from_both_payload_types() {
        let text = panic::catch_unwind(|| panic!("static text")).unwrap_err();
        assert_eq!(panic_message(text.as_ref()), "static text");
        let n = 3;
        let formatted = panic::catch_unwind(|| panic!("index {n}")).unwrap_err();
        assert_eq!(panic_message(formatted.as_ref()), "index 3");
        let other = panic::catch_unwind(|| panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(other.as_ref()), "no message");
    }

    #[test]
    fn extensions_are_case_insensitive() {
        assert!(is_image(Path::new("a/B.PNG")));
        assert!(is_image(Path::new("c.Jpeg")));
        assert!(!is_image(Path::new("notes.txt")));
        assert!(!is_image(Path::new("png")));
    }
}
