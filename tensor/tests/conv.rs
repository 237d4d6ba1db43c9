//! Convolution and upsampling kernels against naive loops: forward, both
//! gradients, finite differences, adjoint identities, thread-count independence and
//! the errors for bad shapes.

use proptest::prelude::*;
use tensor::conv::{
    conv2d_backward, conv2d_backward_input, conv2d_backward_weight, Conv2dParams, PreparedWeights,
};
use tensor::{Tensor, TensorError};

mod naive;
use naive::conv::*;

fn small_case() -> impl Strategy<Value = Case> {
    (
        1..3usize,
        1..4usize,
        1..7usize,
        1..7usize,
        1..4usize,
        1..4usize,
        1..4usize,
        1..4usize,
        0..3usize,
    )
        .prop_filter(
            "kernel fits the padded input",
            |&(_, _, h, w, _, kh, kw, _, p)| kh <= h + 2 * p && kw <= w + 2 * p,
        )
        .prop_map(|(b, cin, h, w, cout, kh, kw, stride, pad)| Case {
            b,
            cin,
            h,
            w,
            cout,
            kh,
            kw,
            stride,
            pad,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn conv_matches_naive_loops(c in small_case(), seed in 0..1000u64, strided in any::<bool>(), bias in any::<bool>()) {
        check_case(&c, seed, strided, bias);
    }

    #[test]
    fn backward_input_is_the_adjoint(c in small_case(), seed in 0..1000u64) {
        let x = tensor(&c.x_shape(), seed);
        let w = tensor(&c.w_shape(), seed + 1);
        let g = tensor(&c.y_shape(), seed + 2);
        let lhs = dot(&x.conv2d(&w, None, c.params()).unwrap().to_vec(), &g.to_vec());
        let dx = conv2d_backward_input(&g, &w, &c.x_shape(), c.params()).unwrap();
        let rhs = dot(&x.to_vec(), &dx.to_vec());
        prop_assert!((lhs - rhs).abs() <= 1e-4 * (1.0 + lhs.abs()), "{} vs {}", lhs, rhs);
    }
}

/// 3x3 "same" convolutions with at least four channels each way: the shapes the
/// Winograd F(2x2, 3x3) path takes on AVX-512 CPUs. Odd sizes leave partial
/// 2x2 tiles at the right and bottom edges; widths past 32 put more than one
/// 16-tile vector in a tile row.
fn same_3x3_case() -> impl Strategy<Value = Case> {
    (1..4usize, 4..20usize, 1..40usize, 1..40usize, 4..20usize)
        .prop_map(|(b, cin, h, w, cout)| case([b, cin, h, w, cout, 3, 3, 1, 1]))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn same_3x3_conv_matches_naive_loops(c in same_3x3_case(), seed in 0..1000u64, strided in any::<bool>(), bias in any::<bool>()) {
        check_case(&c, seed, strided, bias);
    }
}

/// Layers of the U-Net's sizes and wider ones, for the Winograd path: a block of
/// tile rows covering part of one image (the first two), three 16-tile vectors per
/// tile row with an odd width (the fourth), channel counts that are not multiples
/// of 16. On a one-thread pool the whole batch is one group, so blocks also span
/// images; on the default pool the batch splits into several groups.
#[test]
fn unet_sized_3x3_convs_match_naive_loops() {
    let cases = [
        case([5, 64, 14, 14, 32, 3, 3, 1, 1]),
        case([2, 48, 40, 34, 16, 3, 3, 1, 1]),
        case([9, 32, 7, 7, 64, 3, 3, 1, 1]),
        case([2, 20, 9, 67, 20, 3, 3, 1, 1]),
    ];
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    for (i, c) in cases.iter().enumerate() {
        check_case(c, 30 + i as u64, i % 2 == 1, true);
        one_thread.install(|| check_case(c, 40 + i as u64, i % 2 == 0, true));
    }
}

/// Cases large enough to cut one image into several column blocks, and to put
/// several whole images in one block.
#[test]
fn larger_shapes_match_naive_loops() {
    let cases = [
        // 576 x 480 im2col floats per image: several blocks per image.
        case([2, 64, 24, 20, 3, 3, 3, 1, 1]),
        case([1, 64, 48, 40, 2, 3, 3, 2, 1]),
        case([3, 16, 24, 20, 5, 3, 3, 1, 1]),
        case([2, 12, 31, 29, 4, 3, 2, 2, 2]),
        // Tiny images: many images per block.
        case([9, 8, 4, 5, 6, 3, 3, 1, 1]),
        // "Same" 5x5 convolution: two padding columns per row edge.
        case([2, 3, 9, 8, 4, 5, 5, 1, 2]),
        // Pointwise fast path, several images.
        case([4, 7, 9, 11, 5, 1, 1, 1, 0]),
    ];
    for (i, c) in cases.iter().enumerate() {
        check_case(c, 10 + i as u64, i % 2 == 0, true);
    }
}

#[test]
fn pointwise_matches_naive_loops() {
    let c = case([3, 6, 5, 7, 4, 1, 1, 1, 0]);
    check_case(&c, 42, false, true);
    check_case(&c, 43, true, false);
}

/// Linear in every argument, so finite differences are exact up to rounding.
#[test]
fn gradients_match_finite_differences() {
    let c = case([2, 2, 4, 3, 2, 2, 3, 2, 1]);
    let (x, w, bias, g) = (
        tensor(&c.x_shape(), 1),
        tensor(&c.w_shape(), 2),
        tensor(&[c.cout], 3),
        tensor(&c.y_shape(), 4),
    );
    let loss = |x: &Tensor, w: &Tensor, b: &Tensor| {
        dot(&x.conv2d(w, Some(b), c.params()).unwrap().to_vec(), &g.to_vec())
    };
    let grads = conv2d_backward(&x, &w, &g, c.params(), true).unwrap();
    let eps = 0.5f32;
    let bump = |t: &Tensor, i: usize, d: f32| {
        let mut v = t.to_vec();
        v[i] += d;
        Tensor::from_vec(v, t.shape()).unwrap()
    };
    let fd = |f: &dyn Fn(f32) -> f64| (f(eps) - f(-eps)) / (2.0 * eps as f64);
    let dx = grads.input.unwrap().to_vec();
    for (i, &want) in dx.iter().enumerate() {
        let got = fd(&|d| loss(&bump(&x, i, d), &w, &bias));
        assert!((got - want as f64).abs() < 1e-4, "dx[{i}]: fd {got} vs {want}");
    }
    for (i, &want) in grads.weight.to_vec().iter().enumerate() {
        let got = fd(&|d| loss(&x, &bump(&w, i, d), &bias));
        assert!((got - want as f64).abs() < 1e-4, "dw[{i}]: fd {got} vs {want}");
    }
    for (i, &want) in grads.bias.to_vec().iter().enumerate() {
        let got = fd(&|d| loss(&x, &w, &bump(&bias, i, d)));
        assert!((got - want as f64).abs() < 1e-4, "db[{i}]: fd {got} vs {want}");
    }
}

/// Outputs and input gradients are bit-identical for any thread count; the weight
/// gradients, summed per group of images, agree to rounding; batches of one and
/// two images included.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let cases = [
        case([7, 5, 12, 10, 6, 3, 3, 1, 1]),
        case([5, 16, 24, 20, 3, 3, 3, 2, 1]),
        case([6, 4, 6, 6, 3, 1, 1, 1, 0]),
        case([1, 8, 28, 28, 16, 3, 3, 1, 1]),
        case([2, 6, 14, 14, 5, 3, 3, 1, 1]),
        case([1, 4, 7, 7, 4, 3, 3, 1, 1]),
        case([1, 5, 9, 8, 4, 3, 3, 1, 1]),
        case([1, 16, 10, 12, 24, 3, 3, 1, 1]),
        // Wide for its planes: the weight gradient's groups hold several images.
        case([6, 40, 4, 4, 40, 3, 3, 1, 1]),
    ];
    for (i, c) in cases.iter().enumerate() {
        let (x, w, b) = (
            tensor(&c.x_shape(), i as u64),
            tensor(&c.w_shape(), 7),
            tensor(&[c.cout], 8),
        );
        let dy = tensor(&c.y_shape(), 9);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let y = x.conv2d(&w, Some(&b), c.params()).unwrap();
                (y, conv2d_backward(&x, &w, &dy, c.params(), true).unwrap())
            })
        };
        let ((y1, g1), (y3, g3)) = (run(1), run(3));
        assert_eq!(y1.to_vec(), y3.to_vec(), "y, case {i}");
        assert_eq!(y3.to_vec(), run(16).0.to_vec(), "y on 16 threads, case {i}");
        assert_eq!(
            g1.input.unwrap().to_vec(),
            g3.input.unwrap().to_vec(),
            "dx, case {i}"
        );
        assert_close(&g1.weight.to_vec(), &g3.weight.to_vec(), "dw");
        assert_close(&g1.bias.to_vec(), &g3.bias.to_vec(), "db");
    }
}

/// On the im2col path (2 input channels) and the Winograd path (4 and 5).
#[test]
fn empty_batch_gives_empty_outputs() {
    for c in [
        case([0, 2, 4, 4, 3, 3, 3, 1, 1]),
        case([0, 4, 4, 4, 5, 3, 3, 1, 1]),
    ] {
        let (x, w) = (Tensor::zeros(&c.x_shape()), tensor(&c.w_shape(), 1));
        assert_eq!(x.conv2d(&w, None, c.params()).unwrap().shape(), &c.y_shape());
        let g = conv2d_backward(&x, &w, &Tensor::zeros(&c.y_shape()), c.params(), true).unwrap();
        assert_eq!(g.weight.to_vec(), vec![0.0; c.cout * c.cin * 9]);
        assert_eq!(g.bias.to_vec(), vec![0.0; c.cout]);
        assert_eq!(g.input.unwrap().shape(), &c.x_shape());
    }
}

fn p(stride: usize, padding: usize) -> Conv2dParams {
    Conv2dParams { stride, padding }
}

#[test]
fn bad_shapes_give_errors() {
    let x = Tensor::zeros(&[2, 3, 5, 5]);
    let w = Tensor::zeros(&[4, 3, 3, 3]);
    let invalid =
        |r: Result<Tensor, TensorError>| matches!(r, Err(TensorError::InvalidArgument { op: "conv2d", .. }));
    let mismatch =
        |r: Result<Tensor, TensorError>| matches!(r, Err(TensorError::ShapeMismatch { op: "conv2d", .. }));
    assert!(
        invalid(Tensor::zeros(&[3, 5, 5]).conv2d(&w, None, p(1, 0))),
        "rank of x"
    );
    assert!(
        invalid(x.conv2d(&Tensor::zeros(&[4, 3, 9]), None, p(1, 0))),
        "rank of w"
    );
    assert!(
        mismatch(x.conv2d(&Tensor::zeros(&[4, 2, 3, 3]), None, p(1, 0))),
        "channels"
    );
    assert!(
        invalid(x.conv2d(&Tensor::zeros(&[4, 3, 6, 3]), None, p(1, 0))),
        "kernel > input"
    );
    assert!(
        x.conv2d(&Tensor::zeros(&[4, 3, 6, 3]), None, p(1, 1)).is_ok(),
        "kernel fits the padding"
    );
    assert!(
        invalid(x.conv2d(&Tensor::zeros(&[4, 3, 0, 3]), None, p(1, 0))),
        "empty kernel"
    );
    assert!(invalid(x.conv2d(&w, None, p(0, 1))), "stride 0");
    assert!(
        mismatch(x.conv2d(&w, Some(&Tensor::zeros(&[3])), p(1, 1))),
        "bias length"
    );
    assert!(
        mismatch(x.conv2d(&w, Some(&Tensor::zeros(&[4, 1])), p(1, 1))),
        "bias rank"
    );
    let err = x
        .conv2d(&Tensor::zeros(&[4, 2, 3, 3]), None, p(1, 0))
        .unwrap_err();
    assert!(err.to_string().contains("[2, 3, 5, 5]"), "{err}");

    let dy = Tensor::zeros(&[2, 4, 3, 3]);
    assert!(conv2d_backward(&x, &w, &dy, p(1, 0), true).is_ok());
    assert!(matches!(
        conv2d_backward(&x, &w, &Tensor::zeros(&[2, 4, 5, 5]), p(1, 0), true),
        Err(TensorError::ShapeMismatch {
            op: "conv2d_backward",
            ..
        })
    ));
    assert!(matches!(
        conv2d_backward(&x, &w, &dy, p(0, 0), true),
        Err(TensorError::InvalidArgument {
            op: "conv2d_backward",
            ..
        })
    ));
    assert!(matches!(
        conv2d_backward_input(&dy, &w, &[2, 3, 5], p(1, 0)),
        Err(TensorError::InvalidArgument {
            op: "conv2d_backward_input",
            ..
        })
    ));
    assert!(matches!(
        conv2d_backward_input(&dy, &w, &[2, 3, 6, 5], p(1, 0)),
        Err(TensorError::ShapeMismatch {
            op: "conv2d_backward_input",
            ..
        })
    ));
    assert!(matches!(
        conv2d_backward_weight(&x, &dy, &[4, 2, 3, 3], p(1, 0)),
        Err(TensorError::ShapeMismatch {
            op: "conv2d_backward_weight",
            ..
        })
    ));
}

// ----- upsampling -------------------------------------------------------------

fn naive_upsample(x: &[f32], [b, c, h, w]: [usize; 4], s: usize) -> Vec<f32> {
    let (oh, ow) = (h * s, w * s);
    (0..b * c * oh * ow)
        .map(|i| {
            let (plane, r, col) = (i / (oh * ow), (i / ow) % oh, i % ow);
            x[(plane * h + r / s) * w + col / s]
        })
        .collect()
}

fn naive_upsample_backward(g: &[f32], [b, c, h, w]: [usize; 4], s: usize) -> Vec<f32> {
    let (oh, ow) = (h / s, w / s);
    let mut out = vec![0.0f64; b * c * oh * ow];
    for (i, &v) in g.iter().enumerate() {
        let (plane, r, col) = (i / (h * w), (i / w) % h, i % w);
        out[(plane * oh + r / s) * ow + col / s] += v as f64;
    }
    out.into_iter().map(|v| v as f32).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn upsample_matches_naive_loops(b in 1..3usize, c in 1..4usize, h in 1..6usize, w in 1..6usize, s in 1..4usize, seed in 0..100u64) {
        let shape = [b, c, h, w];
        let x = permuted(shape, seed);
        let y = x.upsample_nearest2d(s).unwrap();
        prop_assert_eq!(y.shape(), &[b, c, h * s, w * s]);
        prop_assert_eq!(y.to_vec(), naive_upsample(&x.to_vec(), shape, s));

        let big = [b, c, h * s, w * s];
        let g = narrowed(big, seed + 1);
        let dx = g.upsample_nearest2d_backward(s).unwrap();
        prop_assert_eq!(dx.shape(), &shape);
        assert_close(&dx.to_vec(), &naive_upsample_backward(&g.to_vec(), big, s), "upsample dx");
        // Adjoint identity: <up(x), g> == <x, up^T(g)>.
        let (lhs, rhs) = (dot(&y.to_vec(), &g.to_vec()), dot(&x.to_vec(), &dx.to_vec()));
        prop_assert!((lhs - rhs).abs() <= 1e-4 * (1.0 + lhs.abs()));
    }
}

#[test]
fn large_upsample_runs_in_parallel_and_matches() {
    let shape = [2, 8, 48, 40];
    let x = tensor(&shape, 5);
    let y = x.upsample_nearest2d(2).unwrap();
    assert_eq!(y.to_vec(), naive_upsample(&x.to_vec(), shape, 2));
    let back = y.upsample_nearest2d_backward(2).unwrap();
    assert_close(&back.to_vec(), &x.map(|v| 4.0 * v).to_vec(), "sum of 4 copies");
}

#[test]
fn upsample_bad_inputs_give_errors() {
    let x = Tensor::zeros(&[1, 2, 4, 6]);
    let invalid = |r: Result<Tensor, TensorError>, name: &str| matches!(r, Err(TensorError::InvalidArgument { op, .. }) if op == name);
    assert!(invalid(x.upsample_nearest2d(0), "upsample_nearest2d"));
    assert!(invalid(
        Tensor::zeros(&[2, 4, 6]).upsample_nearest2d(2),
        "upsample_nearest2d"
    ));
    assert!(invalid(
        x.upsample_nearest2d_backward(0),
        "upsample_nearest2d_backward"
    ));
    assert!(invalid(
        x.upsample_nearest2d_backward(4),
        "upsample_nearest2d_backward"
    ));
    assert!(invalid(
        Tensor::zeros(&[4, 6]).upsample_nearest2d_backward(2),
        "upsample_nearest2d_backward"
    ));
    assert_eq!(x.upsample_nearest2d_backward(2).unwrap().shape(), &[1, 2, 2, 3]);
}

/// A prepared weight knows the tensor it came from: the same tensor or a clone
/// of it (shared storage), not an equal copy, another view, or other params.
#[test]
fn prepared_weights_recognise_their_tensor_only() {
    let params = Conv2dParams {
        stride: 1,
        padding: 1,
    };
    let w = tensor(&[4, 4, 3, 3], 3);
    let prepared = PreparedWeights::new(&w, params).unwrap();
    assert!(prepared.is_for(&w, params));
    assert!(prepared.is_for(&w.clone(), params), "a clone shares the storage");
    let copy = Tensor::from_vec(w.to_vec(), w.shape()).unwrap();
    assert!(!prepared.is_for(&copy, params), "equal values, another tensor");
    let view = w.reshape(&[4, 36]).unwrap().reshape(&[4, 4, 3, 3]).unwrap();
    assert!(prepared.is_for(&view, params), "the same storage and layout");
    let narrowed = w.narrow(0, 0, 2).unwrap();
    assert!(!prepared.is_for(&narrowed, params), "another view");
    let strided = Conv2dParams { stride: 2, ..params };
    assert!(!prepared.is_for(&w, strided), "other params");
    assert_eq!(prepared.params(), params);
    assert_eq!(prepared.weight().to_vec(), w.to_vec());
}

/// Bad weights are refused when prepared, bad inputs and biases when used.
#[test]
fn prepared_weights_refuse_bad_shapes() {
    let params = Conv2dParams {
        stride: 1,
        padding: 1,
    };
    let err = PreparedWeights::new(&tensor(&[4, 4, 3], 1), params).unwrap_err();
    assert!(
        err.to_string()
            .contains("weight [Cout, Cin, KH, KW] must have rank 4"),
        "{err}"
    );
    let zero_stride = Conv2dParams {
        stride: 0,
        padding: 1,
    };
    assert!(PreparedWeights::new(&tensor(&[4, 4, 3, 3], 1), zero_stride).is_err());
    let prepared = PreparedWeights::new(&tensor(&[4, 4, 3, 3], 1), params).unwrap();
    let wrong_channels = tensor(&[1, 5, 6, 6], 2).conv2d_prepared(&prepared, None);
    assert!(
        matches!(wrong_channels, Err(TensorError::ShapeMismatch { .. })),
        "{wrong_channels:?}"
    );
    let x = tensor(&[1, 4, 6, 6], 2);
    let bad_bias = x.conv2d_prepared(&prepared, Some(&tensor(&[3], 4)));
    assert!(
        matches!(bad_bias, Err(TensorError::ShapeMismatch { .. })),
        "{bad_bias:?}"
    );
}
