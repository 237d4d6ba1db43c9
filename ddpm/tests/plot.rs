//! The raster plotter, pixel by pixel: each fact is checked against a count or a
//! formula computed here independently of the drawing code.

use std::path::PathBuf;

mod common;
use common::TempDir;
use ddpm::plot::{
    colour, log_ticks, loss_curve, nice_ticks, tick_label, Canvas, Panel, PixelRect, LOSS_CURVE_HEIGHT,
    LOSS_CURVE_WIDTH,
};

const INK: [u8; 3] = colour::BLACK;
const PAPER: [u8; 3] = colour::WHITE;

/// Every inked pixel of `c`.
fn inked(c: &Canvas) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for y in 0..c.height() as i64 {
        for x in 0..c.width() as i64 {
            if c.get(x, y) != Some(PAPER) {
                out.push((x, y));
            }
        }
    }
    out
}

#[test]
fn a_horizontal_line_sets_exactly_its_pixels() {
    let mut c = Canvas::new(20, 10, PAPER);
    c.line(9, 5, 2, 5, INK);
    let expected: Vec<(i64, i64)> = (2..=9).map(|x| (x, 5)).collect();
    assert_eq!(inked(&c), expected);
}

#[test]
fn a_steep_line_sets_one_pixel_per_row_nearest_the_ideal_line() {
    // From (1, 1) to (4, 10): dy = 9 > dx = 3, so 10 pixels, one per row, at the
    // column nearest x = 1 + 3 (y - 1) / 9 (never a tie: the fraction is k / 3).
    let mut c = Canvas::new(12, 12, PAPER);
    c.line(1, 1, 4, 10, INK);
    let mut expected: Vec<(i64, i64)> = (1..=10)
        .map(|y| ((1.0 + 3.0 * (y - 1) as f64 / 9.0).round() as i64, y))
        .collect();
    expected.sort_by_key(|&(x, y)| (y, x));
    assert_eq!(inked(&c), expected);
}

#[test]
fn drawing_off_the_canvas_is_clipped() {
    let mut c = Canvas::new(5, 5, PAPER);
    c.line(-10, 2, 20, 2, INK);
    c.set(-1, -1, INK);
    c.set(5, 0, INK);
    assert_eq!(inked(&c), (0..5).map(|x| (x, 2)).collect::<Vec<_>>());
}

#[test]
fn a_disc_covers_the_lattice_points_within_its_radius() {
    // Gauss's circle problem: 13 integer points have x^2 + y^2 <= 4.
    let mut c = Canvas::new(21, 21, PAPER);
    c.disc(10.0, 10.0, 2.0, INK);
    let got = inked(&c);
    assert_eq!(got.len(), 13);
    assert!(got.iter().all(|&(x, y)| (x - 10).pow(2) + (y - 10).pow(2) <= 4));
}

#[test]
fn a_rectangle_outline_has_its_perimeter_pixels() {
    let mut c = Canvas::new(10, 10, PAPER);
    c.rect(1, 2, 4, 3, INK);
    // 2 (w + h) - 4 pixels on the border of a 4 x 3 rectangle.
    let got = inked(&c);
    assert_eq!(got.len(), 2 * (4 + 3) - 4);
    assert!(got.iter().all(|&(x, y)| x == 1 || x == 4 || y == 2 || y == 4));
}

#[test]
fn an_arrow_reaches_its_tip_and_has_a_head() {
    let mut c = Canvas::new(40, 40, PAPER);
    c.arrow(5.0, 20.0, 30.0, 20.0, 6.0, INK);
    let got = inked(&c);
    assert!((5..=30).all(|x| got.contains(&(x, 20))), "the shaft");
    // The head strokes go back from the tip at 25 degrees: their far ends are at
    // x = 30 - 6 cos 25 = 24.6, y = 20 -+ 6 sin 25 = 20 -+ 2.5.
    assert!(got.contains(&(25, 17)) || got.contains(&(25, 18)));
    assert!(got.contains(&(25, 22)) || got.contains(&(25, 23)));
    assert!(got.iter().all(|&(x, _)| x <= 30), "nothing beyond the tip");
}

#[test]
fn the_text_1_sets_the_pixels_of_its_glyph() {
    let glyph = [
        "..#..", //
        ".##..", //
        "..#..", //
        "..#..", //
        "..#..", //
        "..#..", //
        ".###.",
    ];
    for scale in [1usize, 2] {
        let mut c = Canvas::new(20, 20, PAPER);
        let width = c.text(3, 4, "1", INK, scale);
        assert_eq!(width, 5 * scale);
        let mut expected = Vec::new();
        for (row, line) in glyph.iter().enumerate() {
            for (col, ch) in line.chars().enumerate() {
                if ch == '#' {
                    for (dx, dy) in (0..scale).flat_map(|a| (0..scale).map(move |b| (a, b))) {
                        expected.push((3 + (col * scale + dx) as i64, 4 + (row * scale + dy) as i64));
                    }
                }
            }
        }
        expected.sort_by_key(|&(x, y)| (y, x));
        assert_eq!(inked(&c), expected, "scale {scale}");
    }
}

#[test]
fn lower_case_text_is_drawn_as_upper_case() {
    let (mut a, mut b) = (Canvas::new(40, 10, PAPER), Canvas::new(40, 10, PAPER));
    a.text(0, 0, "loss", INK, 1);
    b.text(0, 0, "LOSS", INK, 1);
    assert_eq!(a, b);
    assert!(!inked(&a).is_empty());
}

fn rect() -> PixelRect {
    PixelRect {
        left: 10,
        top: 20,
        width: 101,
        height: 51,
    }
}

#[test]
fn a_linear_panel_maps_corners_and_midpoint() {
    let p = Panel::new(rect(), (-1.0, 3.0), (0.0, 10.0), false).unwrap();
    // Range ends land on the first and last pixel columns and rows.
    assert_eq!(p.to_pixel(-1.0, 0.0), (10.0, 70.0));
    assert_eq!(p.to_pixel(3.0, 10.0), (110.0, 20.0));
    assert_eq!(p.to_pixel(-1.0, 10.0), (10.0, 20.0));
    assert_eq!(p.to_pixel(1.0, 5.0), (60.0, 45.0));
}

#[test]
fn a_log_panel_puts_the_geometric_mean_half_way() {
    let p = Panel::new(rect(), (0.0, 100.0), (0.01, 1.0), true).unwrap();
    let close = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9;
    assert!(close(p.to_pixel(0.0, 0.01), (10.0, 70.0)));
    assert!(close(p.to_pixel(100.0, 1.0), (110.0, 20.0)));
    // sqrt(0.01 * 1) = 0.1 is half-way up; 10^(-1.5) a quarter.
    assert!(close(p.to_pixel(50.0, 0.1), (60.0, 45.0)));
    assert!(close(p.to_pixel(25.0, 10f64.powf(-1.5)), (35.0, 57.5)));
}

#[test]
fn panels_reject_bad_ranges() {
    assert!(Panel::new(rect(), (1.0, 1.0), (0.0, 1.0), false).is_err());
    assert!(Panel::new(rect(), (0.0, f64::NAN), (0.0, 1.0), false).is_err());
    let err = Panel::new(rect(), (0.0, 1.0), (0.0, 1.0), true).unwrap_err();
    assert!(err.contains("log"), "{err}");
}

#[test]
fn ticks_are_round_numbers_inside_the_range() {
    let close =
        |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
    assert!(close(&nice_ticks(0.0, 1.0, 5), &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]));
    assert!(close(&nice_ticks(3.0, 1234.0, 4), &[500.0, 1000.0]));
    assert!(close(&nice_ticks(-1.3, 1.3, 6), &[-1.0, -0.5, 0.0, 0.5, 1.0]));
    assert!(close(&log_ticks(0.005, 20.0, 4), &[0.01, 0.1, 1.0, 10.0]));
    assert!(close(&log_ticks(0.03, 0.3, 4), &[0.05, 0.1, 0.2]));
    // Only two powers of ten in range: 1-2-5 ticks instead.
    assert!(close(
        &log_ticks(0.015, 1.5, 4),
        &[0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    ));
    assert_eq!(tick_label(0.30000000000000004), "0.3");
    assert_eq!(tick_label(1000.0), "1000");
    assert_eq!(tick_label(1e-5), "1E-5");
}

/// Writes `text` as a loss CSV in a fresh directory (removed when the returned
/// guard drops).
fn csv(name: &str, text: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(name);
    let path = dir.write("loss.csv", text.as_bytes());
    (dir, path)
}

const HEADER: &str = "step,loss,smoothed_loss,grad_norm,lr,images_per_sec,elapsed_s\n";

#[test]
fn the_loss_curve_has_its_documented_size_and_both_series() {
    let rows: String = (1..=50)
        .map(|s| {
            let loss = 1.0 / s as f64 + if s % 2 == 0 { 0.05 } else { 0.0 };
            format!("{s},{loss},{},0.5,0.001,10.0,{s}.0\n", 1.0 / s as f64)
        })
        .collect();
    let (_dir, path) = csv("curve", &format!("{HEADER}{rows}"));
    let canvas = loss_curve(&path).unwrap();
    assert_eq!(
        (canvas.width(), canvas.height()),
        (LOSS_CURVE_WIDTH, LOSS_CURVE_HEIGHT)
    );
    let count = |c: [u8; 3]| canvas.pixels().chunks(3).filter(|p| *p == c).count();
    assert!(count(colour::BLUE) > 100, "the smoothed loss is drawn");
    assert!(count(colour::LIGHT_BLUE) > 100, "the raw loss is drawn");
}

#[test]
fn a_malformed_loss_csv_is_an_error_naming_file_and_line() {
    let (_bad, path) = csv("bad", &format!("{HEADER}1,0.5,0.5,1,1,1,1\n2,zero,0.5,1,1,1,1\n"));
    let err = loss_curve(&path).unwrap_err();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("line 3"),
        "{err}"
    );
    assert!(err.contains("zero"), "{err}");

    let (_short, short) = csv("short", &format!("{HEADER}1,0.5\n"));
    assert!(loss_curve(&short).unwrap_err().contains("line 2"));

    let (_empty, header_only) = csv("empty", HEADER);
    assert!(loss_curve(&header_only).unwrap_err().contains("no data rows"));

    let (_noheader, no_header) = csv("noheader", "1,0.5,0.5\n");
    assert!(loss_curve(&no_header).unwrap_err().contains("line 1"));

    let missing_dir = TempDir::new("missing");
    let missing = missing_dir.join("loss.csv");
    let err = loss_curve(&missing).unwrap_err();
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

#[test]
fn a_png_round_trips_through_image_open() {
    let mut c = Canvas::new(17, 9, [10, 20, 30]);
    c.line(0, 0, 16, 8, colour::RED);
    c.text(1, 1, "T=1", colour::BLUE, 1);
    let dir = TempDir::new("png");
    let path = dir.join("sub").join("figure.png");
    c.save_png(&path).unwrap();
    let back = image::open(&path).unwrap().to_rgb8();
    assert_eq!((back.width(), back.height()), (17, 9));
    assert_eq!(back.as_raw().as_slice(), c.pixels());
    let leftovers = std::fs::read_dir(dir.join("sub")).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary file is left behind");
}

#[test]
fn saving_into_an_unwritable_place_is_a_clear_error() {
    let dir = TempDir::new("blocked");
    let file = dir.join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let err = Canvas::new(2, 2, PAPER)
        .save_png(&file.join("a.png"))
        .unwrap_err();
    assert!(err.contains("cannot write PNG") && err.contains("a.png"), "{err}");
}
