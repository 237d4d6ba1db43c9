//! A folder of PNG or JPEG images, grey or RGB, brought to one square size.
//!
//! Each image is converted to the requested channels, its short side resized to
//! `size` (triangle filter: smooth, no ringing, so a flat area keeps its exact
//! value) and the long side centre-cropped. Files are taken in file-name order so
//! that a data set loads identically on every machine.
//!
//! Labels: when the folder holds no images itself but has sub-folders, each
//! sub-folder is a class (class `k` is the `k`-th folder in name order, e.g.
//! `0/`..`9/`) and the images inside it are labelled with `k`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, ImageReader};

use super::error::{DataError, Result};
use super::Dataset;

/// File extensions (compared case-insensitively) taken as images; other files are
/// skipped.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Loads every image of `dir` as `channels` (1: grey, 3: RGB) x `size` x `size`.
///
/// Files whose extension is not in [`IMAGE_EXTENSIONS`], and names starting with
/// `.`, are skipped. If `dir` holds images, they form an unlabelled data set (its
/// sub-folders are ignored); otherwise each sub-folder is a class, as the module
/// documentation says. An alpha channel is dropped. A file that cannot be decoded
/// is an error that names it.
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
                "holds no image ({}), neither itself nor in a sub-folder",
                IMAGE_EXTENSIONS.join(", ")
            ),
        });
    }
    let num_classes = if labels.is_some() { folders.len() } else { 0 };
    Dataset::new(images, labels, channels, size, size, num_classes)
}

/// The image files and the sub-folders of `dir`, each sorted by name.
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
        if path.is_dir() {
            folders.push(path);
        } else if is_image(&path) {
            files.push(path);
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
    let image_error = |source| DataError::Image {
        path: path.to_path_buf(),
        source,
    };
    let image = ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .decode()
        .map_err(image_error)?;
    let image = if channels == 1 {
        DynamicImage::ImageLuma8(image.to_luma8())
    } else {
        DynamicImage::ImageRgb8(image.to_rgb8())
    };
    let interleaved = resize_crop(image, side).into_bytes();
    // Interleaved (H, W, C) to planar (C, H, W).
    let pixels = (side * side) as usize;
    Ok((0..channels)
        .flat_map(|c| interleaved.iter().skip(c).step_by(channels).take(pixels).copied())
        .collect())
}

/// Resizes the short side of `image` to `side` (keeping the aspect ratio) and crops
/// the centre `side x side` square.
fn resize_crop(image: DynamicImage, side: u32) -> DynamicImage {
    let (w, h) = (image.width(), image.height());
    // The long side scaled like the short one, rounded, never below `side`.
    let scale = |long: u32, short: u32| {
        let scaled = (u64::from(long) * u64::from(side) + u64::from(short) / 2) / u64::from(short);
        u32::try_from(scaled).unwrap_or(u32::MAX).max(side)
    };
    let (nw, nh) = if w <= h {
        (side, scale(h, w))
    } else {
        (scale(w, h), side)
    };
    let resized = if (nw, nh) == (w, h) {
        image
    } else {
        image.resize_exact(nw, nh, FilterType::Triangle)
    };
    resized.crop_imm((nw - side) / 2, (nh - side) / 2, side, side)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_crop_keeps_the_centre_of_the_long_side() {
        // 2 wide, 6 high: rows 0..6 have values 0, 10, ..., 50. Already 2 wide, so
        // only the crop applies: rows 2 and 3.
        let rows: Vec<u8> = (0..6).flat_map(|r| [r * 10; 2]).collect();
        let image = DynamicImage::ImageLuma8(image::GrayImage::from_raw(2, 6, rows).unwrap());
        let out = resize_crop(image, 2);
        assert_eq!(out.into_bytes(), vec![20, 20, 30, 30]);
    }

    #[test]
    fn extensions_are_case_insensitive() {
        assert!(is_image(Path::new("a/B.PNG")));
        assert!(is_image(Path::new("c.Jpeg")));
        assert!(!is_image(Path::new("notes.txt")));
        assert!(!is_image(Path::new("png")));
    }
}
