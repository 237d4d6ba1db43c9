//! The Winograd path of 3x3 convolutions against im2col, on the same layer.
//!
//! A test binary of its own: it flips the process-wide switch between the two
//! paths, and the tests of one binary run in parallel, so in `tests/conv.rs` it would
//! change which path other tests take halfway through them.

use std::sync::Mutex;

use rand::SeedableRng;
use tensor::conv::{
    conv2d_backward, set_winograd_enabled, winograd_available, Conv2dParams, PreparedWeights,
};
use tensor::Tensor;

/// The tests take turns with the switch.
static SWITCH: Mutex<()> = Mutex::new(());

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Tensor::rand_uniform(shape, -1.0, 1.0, &mut rng).unwrap()
}

/// The two paths compute the same convolution by different arithmetic: they agree
/// to rounding, and they are not bit-identical, which shows that the Winograd path ran.
#[test]
fn winograd_and_im2col_agree() {
    let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let params = Conv2dParams {
        stride: 1,
        padding: 1,
    };
    let (x, w, b) = (
        random(&[3, 16, 13, 18], 1),
        random(&[8, 16, 3, 3], 2),
        random(&[8], 3),
    );
    let dy = random(&[3, 8, 13, 18], 4);
    let run = |winograd: bool| {
        set_winograd_enabled(winograd);
        let y = x.conv2d(&w, Some(&b), params).unwrap();
        let g = conv2d_backward(&x, &w, &dy, params, true).unwrap();
        [
            y.to_vec(),
            g.input.unwrap().to_vec(),
            g.weight.to_vec(),
            g.bias.to_vec(),
        ]
    };
    let plain = run(false);
    assert!(!winograd_available(), "the switch turns the path off");
    let fast = run(true);
    for (what, (f, p)) in ["y", "dx", "dw", "db"].iter().zip(fast.iter().zip(&plain)) {
        assert_eq!(f.len(), p.len(), "{what}: length");
        for (i, (&f, &p)) in f.iter().zip(p).enumerate() {
            assert!(
                (f - p).abs() <= 1e-4 * (1.0 + p.abs()),
                "{what}[{i}]: winograd {f}, im2col {p}"
            );
        }
    }
    assert!(winograd_available(), "on by default");
    assert_ne!(fast[..3], plain[..3], "the Winograd path did not run");
}

/// Prepared weights give `conv2d`'s values bit for bit: on the Winograd path (3x3,
/// stride 1, padding 1), on im2col (1x1, stride 2, 5x5, 3 input channels), with
/// and without a bias, at batch 1 and more; and still when the Winograd switch
/// flips after the weights were prepared (then from the weight itself).
#[test]
fn prepared_weights_give_the_plain_convolution_on_both_paths() {
    let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let p = |stride, padding| Conv2dParams { stride, padding };
    let layers = [
        ([2, 8, 9, 12], [6, 8, 3, 3], p(1, 1)),
        ([1, 16, 7, 7], [16, 16, 3, 3], p(1, 1)),
        ([2, 8, 9, 12], [5, 8, 1, 1], p(1, 0)),
        ([2, 8, 9, 12], [4, 8, 3, 3], p(2, 1)),
        ([1, 3, 10, 10], [4, 3, 5, 5], p(1, 2)),
        ([1, 3, 6, 6], [4, 3, 3, 3], p(1, 1)),
    ];
    for (i, (xs, ws, params)) in layers.into_iter().enumerate() {
        let seed = 10 * i as u64;
        let (x, w, b) = (
            random(&xs, seed),
            random(&ws, seed + 1),
            random(&ws[..1], seed + 2),
        );
        for winograd_when_prepared in [true, false] {
            set_winograd_enabled(winograd_when_prepared);
            let prepared = PreparedWeights::new(&w, params).unwrap();
            for winograd_now in [true, false] {
                set_winograd_enabled(winograd_now);
                for bias in [Some(&b), None] {
                    let want = x.conv2d(&w, bias, params).unwrap();
                    let got = x.conv2d_prepared(&prepared, bias).unwrap();
                    assert_eq!(got.shape(), want.shape());
                    assert_eq!(
                        got.to_vec(),
                        want.to_vec(),
                        "layer {i}, Winograd {winograd_when_prepared} -> {winograd_now}, bias {}",
                        bias.is_some()
                    );
                }
            }
        }
    }
    set_winograd_enabled(true);
}

/// `conv2d_add` and `conv2d_prepared_add` give `conv2d(..) + addend` bit for
/// bit, for a residual (the output's shape) and a `[B, Cout, 1, 1]` addend, with
/// and without a bias, on the Winograd path (rows narrower than a vector, and
/// wider with a partial last vector) and on im2col (stride 2, 1x1), with groups
/// of one image and of several (batch 17: at most 8 groups a thread), at every SIMD
/// level the CPU has (the Winograd output transform adds it; im2col adds it
/// after its products).
#[test]
fn the_fused_addend_gives_conv2d_plus_the_addend() {
    let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let p = |stride, padding| Conv2dParams { stride, padding };
    let layers = [
        ([3, 8, 7, 7], [6, 8, 3, 3], p(1, 1)),
        ([17, 4, 13, 18], [8, 4, 3, 3], p(1, 1)),
        ([17, 8, 9, 12], [4, 8, 3, 3], p(2, 1)),
        ([2, 8, 9, 12], [5, 8, 1, 1], p(1, 0)),
    ];
    for level in tensor::simd::supported() {
        tensor::simd::set_level(level).unwrap();
        for (i, (xs, ws, params)) in layers.into_iter().enumerate() {
            let seed = 100 + 10 * i as u64;
            let (x, w, b) = (
                random(&xs, seed),
                random(&ws, seed + 1),
                random(&ws[..1], seed + 2),
            );
            let plain = x.conv2d(&w, None, params).unwrap();
            let out = plain.shape().to_vec();
            let prepared = PreparedWeights::new(&w, params).unwrap();
            for addend in [random(&out, seed + 3), random(&[out[0], out[1], 1, 1], seed + 4)] {
                for bias in [Some(&b), None] {
                    let want = x.conv2d(&w, bias, params).unwrap().add(&addend).unwrap().to_vec();
                    let fused = x.conv2d_add(&w, bias, &addend, params).unwrap();
                    let from_prepared = x.conv2d_prepared_add(&prepared, bias, &addend).unwrap();
                    let what = format!(
                        "{level}, layer {i}, addend {:?}, bias {}",
                        addend.shape(),
                        bias.is_some()
                    );
                    assert_eq!(fused.shape(), &out[..], "{what}");
                    assert_eq!(fused.to_vec(), want, "{what}");
                    assert_eq!(from_prepared.to_vec(), want, "{what}, prepared");
                }
            }
            // Any other addend shape is an error that names it.
            let bad = random(&[out[0], out[1], out[2], 1], seed + 5);
            let err = x.conv2d_add(&w, None, &bad, params).unwrap_err().to_string();
            assert!(
                err.contains("addend") && err.contains(&format!("{:?}", bad.shape())),
                "{err}"
            );
        }
    }
    tensor::simd::set_level(tensor::simd::detected()).unwrap();
}
