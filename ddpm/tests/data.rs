//! The data sets: IDX parsing (raw and gzip), bad files, image folders, the
//! embedded MNIST subset against the full set, batch scaling and PNG grids.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

mod common;
use common::TempDir;
use ddpm::data::{
    embedded_mnist, load_folder, load_idx_files, load_mnist, save_grid, save_png, DataError, Dataset, Split,
    EMBEDDED_PER_CLASS, GRID_PADDING, GRID_PAD_VALUE, MAX_IMAGE_SIDE, MNIST_CLASSES,
};
use flate2::write::GzEncoder;
use flate2::Compression;
use image::{GrayImage, Rgb, RgbImage};
use tensor::Tensor;

// ----- helpers ----------------------------------------------------------------

/// An IDX file: the magic number for `dims.len()` dimensions of unsigned bytes,
/// the dimensions, then `data`.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Three 2x3 images with distinct bytes, and their labels.
fn small_set() -> (Vec<u8>, Vec<u8>) {
    ((0..18u8).map(|i| i * 14).collect(), vec![7, 0, 9])
}

/// Asserts that the message of `err` names `path`.
fn names(err: &DataError, path: &Path) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "{msg:?} does not name {}",
        path.display()
    );
}

/// The full MNIST, which developers and CI have beside the workspace.
fn full_mnist_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mnist");
    assert!(dir.is_dir(), "the full MNIST is expected at {}", dir.display());
    dir
}

// ----- IDX: round trips -------------------------------------------------------

#[test]
fn idx_raw_and_gzip_round_trip() {
    let (images, labels) = small_set();
    let dir = TempDir::new("idx");
    // Raw images with gzip labels for the training split, the other way round for
    // the test split: the format is detected per file.
    dir.write("train-images-idx3-ubyte", &idx(&[3, 2, 3], &images));
    dir.write("train-labels-idx1-ubyte.gz", &gzip(&idx(&[3], &labels)));
    dir.write("t10k-images-idx3-ubyte.gz", &gzip(&idx(&[3, 2, 3], &images)));
    dir.write("t10k-labels-idx1-ubyte", &idx(&[3], &labels));
    for split in [Split::Train, Split::Test] {
        let set = load_mnist(dir.path(), split).unwrap();
        assert_eq!(
            (set.len(), set.channels(), set.height(), set.width()),
            (3, 1, 2, 3)
        );
        assert_eq!(set.num_classes(), MNIST_CLASSES);
        assert_eq!(set.images(), &images[..]);
        assert_eq!(set.labels(), Some(&labels[..]));
        assert_eq!(set.image(1), Some(&images[6..12]));
        assert_eq!(set.image(3), None);
    }
}

#[test]
fn gzip_is_detected_by_content_not_name() {
    let (images, labels) = small_set();
    let dir = TempDir::new("sniff");
    let i = dir.write("images.bin", &gzip(&idx(&[3, 2, 3], &images)));
    let l = dir.write("labels.gz", &idx(&[3], &labels)); // raw despite the name
    let set = load_idx_files(&i, &l).unwrap();
    assert_eq!(set.images(), &images[..]);
    assert_eq!(set.labels(), Some(&labels[..]));
}

#[test]
fn full_mnist_first_labels() {
    let dir = full_mnist_dir();
    let train = load_mnist(&dir, Split::Train).unwrap();
    assert_eq!((train.len(), train.height(), train.width()), (60_000, 28, 28));
    assert_eq!(
        &train.labels().unwrap()[..12],
        &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4, 3, 5]
    );
    let test = load_mnist(&dir, Split::Test).unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(
        &test.labels().unwrap()[..12],
        &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9, 0, 6]
    );
}

/// The embedded subset is exactly what `ddpm/assets/make_subset.py` documents: the
/// first 1,000 training images of each digit, in their original order.
#[test]
fn embedded_subset_is_the_first_thousand_of_each_digit() {
    let sub = embedded_mnist().unwrap();
    assert_eq!(
        (sub.len(), sub.channels(), sub.height(), sub.width()),
        (10_000, 1, 28, 28)
    );
    assert_eq!(
        &sub.labels().unwrap()[..12],
        &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4, 3, 5]
    );
    let mut per_class = [0usize; 10];
    for &l in sub.labels().unwrap() {
        per_class[usize::from(l)] += 1;
    }
    assert_eq!(per_class, [EMBEDDED_PER_CLASS; 10]);

    let full = load_mnist(full_mnist_dir(), Split::Train).unwrap();
    let mut kept = [0usize; 10];
    let chosen: Vec<usize> = (0..full.len())
        .filter(|&i| {
            let l = usize::from(full.labels().unwrap()[i]);
            kept[l] += 1;
            kept[l] <= EMBEDDED_PER_CLASS
        })
        .collect();
    assert_eq!(chosen.len(), sub.len());
    for (k, &i) in chosen.iter().enumerate() {
        assert_eq!(sub.labels().unwrap()[k], full.labels().unwrap()[i], "label {k}");
        assert_eq!(sub.image(k), full.image(i), "image {k} (source index {i})");
    }
}

// ----- IDX: bad files ---------------------------------------------------------

/// A directory holding the training split's two files with the given contents.
fn split_dir(images: &[u8], labels: &[u8]) -> (TempDir, PathBuf, PathBuf) {
    let dir = TempDir::new("bad");
    let i = dir.write("train-images-idx3-ubyte", images);
    let l = dir.write("train-labels-idx1-ubyte", labels);
    (dir, i, l)
}

#[test]
fn truncated_images_and_labels() {
    let (images, labels) = small_set();
    let (dir, i, _) = split_dir(&idx(&[3, 2, 3], &images[..17]), &idx(&[3], &labels));
    let err = load_mnist(dir.path(), Split::Train).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                expected: 34,
                got: 33,
                ..
            }
        ),
        "{err:?}"
    );
    names(&err, &i);
    assert!(err.to_string().contains("expected 34 bytes, got 33"), "{err}");

    // Gzip labels cut short inside the IDX data (a valid gzip stream).
    let dir = TempDir::new("bad");
    dir.write("train-images-idx3-ubyte", &idx(&[3, 2, 3], &images));
    let l = dir.write("train-labels-idx1-ubyte.gz", &gzip(&idx(&[3], &labels[..2])));
    let err = load_mnist(dir.path(), Split::Train).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                expected: 11,
                got: 10,
                ..
            }
        ),
        "{err:?}"
    );
    names(&err, &l);

    // Shorter than the header.
    let (dir, i, _) = split_dir(&[0, 0, 8], &idx(&[3], &labels));
    let err = load_mnist(dir.path(), Split::Train).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                expected: 16,
                got: 3,
                ..
            }
        ),
        "{err:?}"
    );
    names(&err, &i);
}

#[test]
fn wrong_magic_and_trailing_bytes() {
    let (images, labels) = small_set();
    // A label file where the images should be.
    let (dir, i, _) = split_dir(&idx(&[3], &labels), &idx(&[3], &labels));
    let err = load_mnist(dir.path(), Split::Train).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    names(&err, &i);
    assert!(
        err.to_string()
            .contains("magic number 0x00000801 is not 0x00000803"),
        "{err}"
    );

    let mut long = idx(&[3, 2, 3], &images);
    long.push(0);
    let (dir, i, _) = split_dir(&long, &idx(&[3], &labels));
    let err = load_mnist(dir.path(), Split::Train).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    names(&err, &i);
}

#[test]
fn huge_headers_are_rejected_without_allocating() {
    let (images, labels) = small_set();
    // 2^31 images of 2x3: beyond the size cap, rejected from the header alone.
    let (dir, i, _) = split_dir(&idx(&[1 << 31, 2, 3], &images), &idx(&[3], &labels));
    let err = load_mnist(dir.path(), Split::Train).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    names(&err, &i);
    assert!(err.to_string().contains("2147483648"), "{err}");

    // 2^31 labels (exactly the cap): read only as far as the data goes.
    let (dir, _, l) = split_dir(&idx(&[3, 2, 3], &images), &gzip(&idx(&[1 << 31], &labels)));
    let err = load_mnist(dir.path(), Split::Train).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                expected: 2_147_483_656,
                got: 11,
                ..
            }
        ),
        "{err:?}"
    );
    names(&err, &l);
}

#[test]
fn count_mismatch_and_bad_labels() {
    let (images, labels) = small_set();
    let (dir, i, l) = split_dir(&idx(&[3, 2, 3], &images), &idx(&[2], &labels[..2]));
    let err = load_mnist(dir.path(), Split::Train).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    names(&err, &l);
    names(&err, &i);
    assert!(err.to_string().contains("holds 2 labels"), "{err}");

    let (dir, _, l) = split_dir(&idx(&[3, 2, 3], &images), &idx(&[3], &[1, 10, 2]));
    let err = load_mnist(dir.path(), Split::Train).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    names(&err, &l);
    assert!(err.to_string().contains("label 10 at index 1"), "{err}");
}

#[test]
fn corrupt_gzip() {
    let (images, labels) = small_set();
    // The gzip magic followed by garbage.
    let (dir, i, _) = split_dir(&[0x1f, 0x8b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], &idx(&[3], &labels));
    let err = load_mnist(dir.path(), Split::Train).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    names(&err, &i);
    assert!(err.to_string().contains("corrupt gzip"), "{err}");

    // A valid stream cut in half.
    let whole = gzip(&idx(&[3, 2, 3], &images));
    let (dir, i, _) = split_dir(&whole[..whole.len() / 2], &idx(&[3], &labels));
    let err = load_mnist(dir.path(), Split::Train).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    names(&err, &i);
}

#[test]
fn missing_directory_and_files() {
    let dir = TempDir::new("missing");
    let nowhere = dir.path().join("no-such-dir");
    let err = load_mnist(&nowhere, Split::Train).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    names(&err, &nowhere);

    dir.write("train-images-idx3-ubyte.gz", &gzip(&idx(&[0, 28, 28], &[])));
    let err = load_mnist(dir.path(), Split::Train).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    names(&err, dir.path());
    assert!(err.to_string().contains("train-labels-idx1-ubyte.gz"), "{err}");

    let err = load_idx_files(nowhere.join("a"), nowhere.join("b")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    names(&err, &nowhere.join("a"));
}

// ----- image folders ----------------------------------------------------------

fn png_grey(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> Vec<u8> {
    encode(image::DynamicImage::ImageLuma8(GrayImage::from_fn(
        w,
        h,
        |x, y| image::Luma([f(x, y)]),
    )))
}

fn encode(image: image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

const RGB: [u8; 3] = [10, 200, 30];

/// a.png: grey 77, 40x30; b.png: RGB constant, 20x50; c.png: a grey gradient,
/// 17x23; notes.txt: not an image.
fn image_folder() -> TempDir {
    let dir = TempDir::new("folder");
    dir.write("c.png", &png_grey(17, 23, |x, y| (x * 7 + y * 3) as u8));
    dir.write(
        "b.png",
        &encode(image::DynamicImage::ImageRgb8(RgbImage::from_pixel(
            20,
            50,
            Rgb(RGB),
        ))),
    );
    dir.write("a.png", &png_grey(40, 30, |_, _| 77));
    dir.write("notes.txt", b"not an image");
    dir
}

#[test]
fn folder_grey_and_rgb() {
    let dir = image_folder();
    let grey = load_folder(dir.path(), 1, 16).unwrap();
    assert_eq!(
        (grey.len(), grey.channels(), grey.height(), grey.width()),
        (3, 1, 16, 16)
    );
    assert_eq!((grey.labels(), grey.num_classes()), (None, 0));
    // Sorted by name: a (constant 77) first, b (constant colour) second.
    assert!(grey.image(0).unwrap().iter().all(|&v| v == 77));
    let luma = image::DynamicImage::ImageRgb8(RgbImage::from_pixel(1, 1, Rgb(RGB))).to_luma8()[(0, 0)][0];
    assert!(grey.image(1).unwrap().iter().all(|&v| v == luma));
    // The gradient keeps its direction: brighter to the right and down.
    let c = grey.image(2).unwrap();
    assert!(c[0] < c[15] && c[0] < c[15 * 16] && c[15] < c[255]);

    let rgb = load_folder(dir.path(), 3, 8).unwrap();
    assert_eq!(
        (rgb.len(), rgb.channels(), rgb.height(), rgb.width()),
        (3, 3, 8, 8)
    );
    assert!(rgb.image(0).unwrap().iter().all(|&v| v == 77));
    for (ch, plane) in rgb.image(1).unwrap().chunks(64).enumerate() {
        assert!(plane.iter().all(|&v| v == RGB[ch]), "channel {ch}: {plane:?}");
    }
    let (batch, labels) = rgb.batch(&[2, 0]).unwrap();
    assert_eq!(batch.shape(), &[2, 3, 8, 8]);
    assert!(labels.is_none());
    assert!(batch.to_vec().iter().all(|v| (-1.0..=1.0).contains(v)));
}

#[test]
fn folder_jpeg_and_class_folders() {
    let dir = TempDir::new("classes");
    let mut jpeg = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(GrayImage::from_pixel(12, 12, image::Luma([100])))
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .unwrap();
    dir.write("1/x.JPG", jpeg.get_ref());
    dir.write("1/a.png", &png_grey(5, 5, |_, _| 200));
    dir.write("0/z.png", &png_grey(9, 6, |_, _| 50));
    dir.write("0/readme.md", b"skipped");
    let set = load_folder(dir.path(), 1, 4).unwrap();
    assert_eq!(set.len(), 3);
    assert_eq!(set.num_classes(), 2);
    assert_eq!(set.labels(), Some(&[0, 1, 1][..]));
    assert!(set.image(0).unwrap().iter().all(|&v| v == 50));
    assert!(set.image(1).unwrap().iter().all(|&v| v == 200));
    assert!(set.image(2).unwrap().iter().all(|&v| v.abs_diff(100) <= 2));
    let (_, labels) = set.batch(&[2, 0]).unwrap();
    assert_eq!(labels, Some(vec![1, 0]));
}

#[test]
fn folder_errors() {
    let dir = image_folder();
    let bad = dir.write("b2.png", b"\x89PNG\r\n\x1a\n this is not a PNG");
    let err = load_folder(dir.path(), 1, 8).unwrap_err();
    assert!(matches!(err, DataError::Image { .. }), "{err:?}");
    names(&err, &bad);

    let err = load_folder(dir.path(), 2, 8).unwrap_err();
    assert!(matches!(err, DataError::Argument { .. }), "{err:?}");
    let err = load_folder(dir.path(), 1, 0).unwrap_err();
    assert!(matches!(err, DataError::Argument { .. }), "{err:?}");

    let empty = TempDir::new("empty");
    empty.write("notes.txt", b"nothing here");
    let err = load_folder(empty.path(), 1, 8).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    names(&err, empty.path());

    let nowhere = empty.path().join("nope");
    let err = load_folder(&nowhere, 1, 8).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    names(&err, &nowhere);
}

// ----- image folders: bad files -----------------------------------------------

/// A PNG chunk: big-endian length, type, data, CRC-32 of type and data.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend(kind);
    out.extend(data);
    out.extend(crc.sum().to_be_bytes());
    out
}

/// A PNG written chunk by chunk: the signature, IHDR for a `w x h` image of 8-bit
/// samples of colour type `colour` (0 grey, 3 paletted), the `extra` chunks, an
/// IDAT holding `rows` (already filtered scanlines) zlib-compressed, and IEND.
fn png_by_hand(w: u32, h: u32, colour: u8, extra: &[Vec<u8>], rows: &[u8]) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, colour, 0, 0, 0]); // bit depth, colour type, deflate, filter, no interlace
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
    z.write_all(rows).unwrap();
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(png_chunk(b"IHDR", &ihdr));
    extra.iter().for_each(|c| out.extend(c));
    out.extend(png_chunk(b"IDAT", &z.finish().unwrap()));
    out.extend(png_chunk(b"IEND", &[]));
    out
}

#[test]
fn hand_made_pngs_decode() {
    // The helper itself, on valid files: a 2x2 grey image (each row starts with
    // filter type 0), and a 1x1 paletted one whose palette (one whole entry, 3
    // bytes) maps index 0 to (10, 20, 30).
    let dir = TempDir::new("by-hand");
    dir.write("grey.png", &png_by_hand(2, 2, 0, &[], &[0, 40, 90, 0, 7, 8]));
    let grey = load_folder(dir.path(), 1, 2).unwrap();
    assert_eq!(grey.image(0), Some(&[40, 90, 7, 8][..]));
    let dir = TempDir::new("by-hand");
    let plte = png_chunk(b"PLTE", &[10, 20, 30]);
    dir.write("p.png", &png_by_hand(1, 1, 3, &[plte], &[0, 0]));
    let rgb = load_folder(dir.path(), 3, 1).unwrap();
    assert_eq!(rgb.image(0), Some(&[10, 20, 30][..]));
}

/// An 83-byte paletted PNG whose PLTE chunk is 4 bytes long (one entry and a
/// third) makes the `png` decoder (0.18.1, the newest) index past the palette and
/// panic; the loader turns the panic into an error that names the file.
#[test]
fn a_decoder_panic_is_an_error_naming_the_file() {
    let dir = image_folder();
    let plte = png_chunk(b"PLTE", &[10, 20, 30, 40]);
    let bytes = png_by_hand(1, 1, 3, &[plte], &[0, 0]);
    assert_eq!(bytes.len(), 83);
    let bad = dir.write("b2.png", &bytes);
    for channels in [1, 3] {
        let err = load_folder(dir.path(), channels, 8).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{err:?}");
        names(&err, &bad);
        assert!(
            err.to_string()
                .contains("could not be decoded (the decoder panicked: "),
            "{err}"
        );
    }
}

#[test]
fn corrupt_and_truncated_pngs_are_errors_naming_the_file() {
    let whole = png_grey(10, 10, |x, y| (x * 20 + y) as u8);
    for (name, bytes) in [
        ("cut.png", &whole[..whole.len() / 2]),
        ("no-end.png", &whole[..whole.len() - 12]), // IEND missing
        (
            "garbage.png",
            &b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDRxxxxxxxxxxxxx"[..],
        ),
        ("text.png", &b"just some text"[..]),
        ("empty.png", &[][..]),
    ] {
        let dir = image_folder();
        let bad = dir.write(name, bytes);
        let err = load_folder(dir.path(), 1, 8).unwrap_err();
        assert!(matches!(err, DataError::Image { .. }), "{name}: {err:?}");
        names(&err, &bad);
    }
}

/// A 1 x 5000 strip: only its centre square (one pixel) is resized, so memory is
/// bounded by the output, not by the long side scaled up (28 x 140,000 before).
#[test]
fn a_long_thin_image_is_cropped_to_its_centre_before_resizing() {
    let dir = TempDir::new("strip");
    dir.write("strip.png", &png_grey(1, 5000, |_, y| (y / 20) as u8));
    dir.write("wide.png", &png_grey(5000, 1, |x, _| 255 - (x / 20) as u8));
    let set = load_folder(dir.path(), 1, 28).unwrap();
    // Sorted by name: strip (centre row (5000 - 1) / 2 = 2499 -> 124), then wide
    // (centre column 2499 -> 255 - 124).
    assert_eq!(set.image(0).unwrap(), &[124; 28 * 28][..]);
    assert_eq!(set.image(1).unwrap(), &[131; 28 * 28][..]);
}

/// Sides above the loader's limit are rejected from the header, before anything
/// is decoded: here a 60000 x 60000 grey PNG (3.6 GB of pixels) of 100 bytes.
#[test]
fn oversized_images_are_rejected_from_the_header() {
    for (w, h) in [(60_000, 60_000), (1, MAX_IMAGE_SIDE + 1), (MAX_IMAGE_SIDE + 1, 2)] {
        let dir = image_folder();
        let bad = dir.write("huge.png", &png_by_hand(w, h, 0, &[], &[0, 0]));
        let err = load_folder(dir.path(), 1, 8).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{err:?}");
        names(&err, &bad);
        assert!(err.to_string().contains(&format!("{w}x{h} pixels")), "{err}");
    }
    // The limit itself is accepted.
    let dir = TempDir::new("edge");
    dir.write("edge.png", &png_grey(1, MAX_IMAGE_SIDE, |_, _| 9));
    assert!(load_folder(dir.path(), 1, 4)
        .unwrap()
        .images()
        .iter()
        .all(|&v| v == 9));
}

/// A FIFO with an image's name would block the loader forever, and a directory
/// named like an image is not one: both are errors naming the entry. A symlink
/// to an image is followed.
#[cfg(unix)]
#[test]
fn only_regular_files_are_read_as_images() {
    use std::sync::mpsc;
    use std::time::Duration;

    let dir = image_folder();
    std::os::unix::fs::symlink(dir.path().join("a.png"), dir.path().join("link.png")).unwrap();
    assert_eq!(load_folder(dir.path(), 1, 4).unwrap().len(), 4);

    let fifo = dir.path().join("pipe.png");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo {} failed", fifo.display());
    let (tx, rx) = mpsc::channel();
    let folder = dir.path().to_path_buf();
    std::thread::spawn(move || tx.send(load_folder(folder, 1, 4)).unwrap());
    let Ok(result) = rx.recv_timeout(Duration::from_secs(20)) else {
        // Unblock the reader (opening the write end completes its open) and fail.
        let _ = fs::OpenOptions::new().write(true).open(&fifo);
        panic!("load_folder blocked on the FIFO {}", fifo.display());
    };
    let err = result.unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    names(&err, &fifo);
    assert!(err.to_string().contains("not a regular file"), "{err}");
    fs::remove_file(&fifo).unwrap();

    let folder = dir.path().join("x.png");
    fs::create_dir(&folder).unwrap();
    let err = load_folder(dir.path(), 1, 4).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    names(&err, &folder);
    assert!(err.to_string().contains("is a directory"), "{err}");

    // The same in a class folder, and for a dangling link.
    let classes = TempDir::new("classes");
    classes.write("0/a.png", &png_grey(3, 3, |_, _| 1));
    fs::create_dir(classes.path().join("1")).unwrap();
    let folder = classes.path().join("1/y.jpg");
    fs::create_dir(&folder).unwrap();
    let err = load_folder(classes.path(), 1, 4).unwrap_err();
    names(&err, &folder);
    fs::remove_dir(&folder).unwrap();
    let dangling = classes.path().join("1/gone.png");
    std::os::unix::fs::symlink(classes.path().join("nowhere.png"), &dangling).unwrap();
    let err = load_folder(classes.path(), 1, 4).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    names(&err, &dangling);
}

#[test]
fn empty_data_sets_are_errors_naming_the_source() {
    // An IDX pair that declares zero images (and zero labels), raw and gzip.
    for gz in [false, true] {
        let pack = |b: Vec<u8>| if gz { gzip(&b) } else { b };
        let (dir, i, _) = split_dir(&pack(idx(&[0, 28, 28], &[])), &pack(idx(&[0], &[])));
        let err = load_mnist(dir.path(), Split::Train).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{err:?}");
        names(&err, &i);
        assert!(err.to_string().contains("holds no images"), "{err}");
    }
    // Class folders without a single image between them.
    let dir = TempDir::new("no-images");
    fs::create_dir_all(dir.path().join("0")).unwrap();
    dir.write("1/readme.txt", b"no images here");
    let err = load_folder(dir.path(), 1, 8).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    names(&err, dir.path());
    assert!(err.to_string().contains("holds no images"), "{err}");
    // And no way round the loaders: an empty Dataset cannot be built.
    let err = Dataset::new(vec![], None, 1, 2, 2, 0).unwrap_err();
    assert!(matches!(err, DataError::Argument { .. }), "{err:?}");
    assert!(Dataset::new(vec![], Some(vec![]), 1, 2, 2, 10).is_err());
}

// ----- batches and PNG output -------------------------------------------------

#[test]
fn batch_scaling_is_exact_at_the_ends() {
    let images = vec![0, 255, 128, 1, 255, 0, 254, 0];
    let set = Dataset::new(images, Some(vec![3, 9]), 1, 2, 2, 10).unwrap();
    let (x, labels) = set.batch(&[1, 0, 1]).unwrap();
    assert_eq!(x.shape(), &[3, 1, 2, 2]);
    let v = x.to_vec();
    assert_eq!(&v[..2], &[1.0, -1.0]);
    assert_eq!(&v[4..6], &[-1.0, 1.0]);
    assert_eq!(v[6], 128.0 / 127.5 - 1.0);
    assert_eq!(&v[8..], &v[..4]);
    assert_eq!(labels, Some(vec![9, 3, 9]));
    let err = set.batch(&[2]).unwrap_err();
    assert!(matches!(err, DataError::Argument { .. }), "{err:?}");
}

#[test]
fn dataset_new_validates() {
    assert!(Dataset::new(vec![0; 7], None, 1, 2, 2, 0).is_err()); // not whole images
    assert!(Dataset::new(vec![0; 8], Some(vec![0]), 1, 2, 2, 10).is_err()); // 1 label, 2 images
    assert!(Dataset::new(vec![0; 8], Some(vec![0, 10]), 1, 2, 2, 10).is_err()); // label >= classes
    assert!(Dataset::new(vec![0; 8], None, 1, 2, 2, 10).is_err()); // classes without labels
    assert!(Dataset::new(vec![0; 8], None, 0, 2, 2, 0).is_err()); // empty shape
    assert_eq!(Dataset::new(vec![0; 8], None, 1, 2, 2, 0).unwrap().len(), 2);
}

/// A `[n, c, h, w]` tensor whose pixel bytes are distinct-ish, and those bytes.
fn test_images(n: usize, c: usize, h: usize, w: usize) -> (Tensor, Vec<u8>) {
    let bytes: Vec<u8> = (0..n * c * h * w).map(|i| (i * 37 % 256) as u8).collect();
    let set = Dataset::new(bytes.clone(), None, c, h, w, 0).unwrap();
    let (x, _) = set.batch(&(0..n).collect::<Vec<_>>()).unwrap();
    (x, bytes)
}

#[test]
fn save_grid_lays_out_cells_with_padding() {
    let dir = TempDir::new("grid");
    let p = GRID_PADDING;
    for c in [1usize, 3] {
        let (n, h, w, ncols) = (5, 3, 4, 2);
        let (x, bytes) = test_images(n, c, h, w);
        let path = dir.path().join(format!("grid{c}.png"));
        save_grid(&path, &x, ncols).unwrap();
        save_grid(&path, &x, ncols).unwrap(); // overwriting works
        let png = image::open(&path).unwrap();
        let (gw, gh) = (ncols * (w + p) + p, 3 * (h + p) + p);
        assert_eq!((png.width() as usize, png.height() as usize), (gw, gh));
        let pixels = if c == 1 {
            png.to_luma8().into_raw()
        } else {
            png.to_rgb8().into_raw()
        };
        let at = |x: usize, y: usize, ch: usize| pixels[(y * gw + x) * c + ch];
        for k in 0..n {
            let (x0, y0) = (p + (k % ncols) * (w + p), p + (k / ncols) * (h + p));
            for ch in 0..c {
                for y in 0..h {
                    for xx in 0..w {
                        assert_eq!(at(x0 + xx, y0 + y, ch), bytes[((k * c + ch) * h + y) * w + xx]);
                    }
                }
            }
        }
        assert_eq!(at(0, 0, 0), GRID_PAD_VALUE);
        assert_eq!(at(gw - 1, gh - 1, c - 1), GRID_PAD_VALUE); // the empty sixth cell
    }
    // Only the PNGs are left: the temporary files were renamed.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn save_grid_clamps_and_save_png_writes_one_image() {
    let dir = TempDir::new("png");
    let x = Tensor::from_vec(vec![-3.0, -1.0, 0.0, 1.0, 2.5, f32::NAN], &[1, 2, 3]).unwrap();
    let path = dir.path().join("one.png");
    save_png(&path, &x).unwrap();
    let png = image::open(&path).unwrap().to_luma8();
    assert_eq!(png.dimensions(), (3, 2));
    assert_eq!(png.into_raw(), vec![0, 0, 128, 255, 255, 0]);

    let (x, bytes) = test_images(1, 3, 2, 5);
    let path = dir.path().join("rgb.png");
    save_png(&path, &x.squeeze(0).unwrap()).unwrap();
    let png = image::open(&path).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (5, 2));
    assert_eq!(png[(4, 1)].0, [bytes[9], bytes[19], bytes[29]]);

    let err = save_grid(&path, &Tensor::zeros(&[2, 2, 4, 4]), 2).unwrap_err();
    assert!(matches!(err, DataError::Argument { .. }), "{err:?}");
    let err = save_grid(&path, &Tensor::zeros(&[1, 4, 4]), 2).unwrap_err();
    assert!(matches!(err, DataError::Argument { .. }), "{err:?}");
    let err = save_png(dir.path().join("no/such/dir/x.png"), &Tensor::zeros(&[1, 4, 4])).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// PNGs go through `nn::fs::write_atomic`: a failed save names the target and
/// leaves no temporary file, and a stale one from a killed process is replaced.
#[test]
fn png_writes_are_atomic_and_leave_no_temporary_file() {
    let dir = TempDir::new("atomic");
    let (x, _) = test_images(2, 1, 3, 3);
    let taken = dir.path().join("grid.png");
    fs::create_dir(&taken).unwrap();
    let err = save_grid(&taken, &x, 2).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    names(&err, &taken);
    assert_eq!(entries(dir.path()), ["grid.png"]);

    let path = dir.path().join("one.png");
    fs::write(nn::fs::temp_path(&path), b"half a PNG from a killed process").unwrap();
    save_png(&path, &x.narrow(0, 0, 1).unwrap().squeeze(0).unwrap()).unwrap();
    assert_eq!(image::open(&path).unwrap().to_luma8().dimensions(), (3, 3));
    assert_eq!(entries(dir.path()), ["grid.png", "one.png"]);
}
