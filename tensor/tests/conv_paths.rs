//! The Winograd path of 3x3 convolutions against im2col, on the same layer.
//!
//! A test binary of its own: it flips the process-wide switch between the two
//! paths, and the tests of one binary run in parallel, so in `tests/conv.rs` it would
//! change which path other tests take halfway through them.

use rand::SeedableRng;
use tensor::conv::{conv2d_backward, set_winograd_enabled, winograd_available, Conv2dParams};
use tensor::Tensor;

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Tensor::rand_uniform(shape, -1.0, 1.0, &mut rng).unwrap()
}

/// The two paths compute the same convolution by different arithmetic: they agree
/// to rounding, and they are not bit-identical, which shows that the Winograd path ran.
#[test]
fn winograd_and_im2col_agree() {
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
