//! Shapes too large to lay out, against the rule in `checked_numel`: the product
//! of the non-zero sizes must fit in `usize` and, in `f32`s, in `isize::MAX`
//! bytes. Every constructor that takes a shape must refuse such a shape with a
//! `ShapeTooLarge` error naming it, zero-size or not (`[0, 1 << 62, 8]` holds no
//! element but its strides overflow), while ordinary zero-size shapes keep
//! working.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::SeedableRng;
use tensor::conv::{conv2d_backward_input, conv2d_backward_weight, Conv2dParams};
use tensor::{broadcast_shapes, checked_numel, contiguous_strides, Layout, Tensor, TensorError};

/// `isize::MAX` bytes of `f32`s: the most elements a shape may count.
const MAX_ELEMENTS: usize = (isize::MAX as usize) / 4;

/// Shapes to refuse: zero-size ones whose other sizes overflow (in the strides,
/// in the product, in bytes), and a non-empty one whose product wraps to 0.
fn bad_shapes() -> Vec<Vec<usize>> {
    vec![
        vec![0, 1 << 62, 8],
        vec![1 << 62, 8, 0],
        vec![0, MAX_ELEMENTS + 1],
        vec![usize::MAX, 2, 0],
        vec![1 << 32, 1 << 32],
        vec![1 << 32, 0, 1 << 32],
    ]
}

/// Asserts that `r` is the `ShapeTooLarge` error of `op` for `shape`, and that
/// its message names both.
fn assert_too_large<T: std::fmt::Debug>(r: tensor::Result<T>, op: &'static str, shape: &[usize]) {
    let e = r.expect_err(&format!("{op} accepted {shape:?}"));
    let want = TensorError::ShapeTooLarge {
        op,
        shape: shape.to_vec(),
    };
    assert_eq!(e, want);
    let msg = e.to_string();
    assert!(
        msg.starts_with(op) && msg.contains(&format!("{shape:?}")) && msg.contains("too large"),
        "{msg}"
    );
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast_ref::<&str>()
            .map_or_else(String::new, |s| s.to_string()),
    }
}

#[test]
fn checked_numel_counts_elements_and_refuses_what_cannot_be_laid_out() {
    assert_eq!(checked_numel("t", &[]), Ok(1));
    assert_eq!(checked_numel("t", &[2, 3, 4]), Ok(24));
    assert_eq!(checked_numel("t", &[0, 3]), Ok(0));
    assert_eq!(checked_numel("t", &[7, 0, 1 << 40]), Ok(0));
    // The boundary: `isize::MAX` bytes of floats is allowed, one float more is not.
    assert_eq!(checked_numel("t", &[MAX_ELEMENTS]), Ok(MAX_ELEMENTS));
    assert_eq!(checked_numel("t", &[0, MAX_ELEMENTS]), Ok(0));
    assert_too_large(checked_numel("t", &[MAX_ELEMENTS + 1]), "t", &[MAX_ELEMENTS + 1]);
    for shape in bad_shapes() {
        assert_too_large(checked_numel("t", &shape), "t", &shape);
    }
}

#[test]
fn constructors_refuse_shapes_too_large_to_lay_out() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for shape in bad_shapes() {
        let s = &shape[..];
        assert_too_large(Tensor::from_vec(Vec::new(), s), "from_vec", s);
        assert_too_large(Tensor::try_full(s, 1.0), "full", s);
        assert_too_large(Tensor::rand_uniform(s, 0.0, 1.0, &mut rng), "rand_uniform", s);
        assert_too_large(Tensor::rand_normal(s, 0.0, 1.0, &mut rng), "rand_normal", s);
        assert_too_large(Tensor::dropout_mask(s, 0.5, 7), "dropout_mask", s);
        assert_too_large(Tensor::zeros(&[0]).reshape(s), "reshape", s);
        assert_too_large(Tensor::scalar(1.0).broadcast_to(s), "broadcast_to", s);
        assert_too_large(Tensor::scalar(1.0).layout().broadcast_to(s), "broadcast_to", s);
        assert_eq!(Layout::contiguous(&[0]).reshape(s), None, "{s:?}");
        assert_too_large(Tensor::zeros(&[0]).index_add(0, &[], s), "index_add", s);
        // The infallible constructors panic with the same message, as `vec!`
        // panics on a capacity overflow.
        let want = TensorError::ShapeTooLarge {
            op: "full",
            shape: shape.clone(),
        }
        .to_string();
        assert_eq!(panic_message(|| drop(Tensor::zeros(s))), want);
        assert_eq!(panic_message(|| drop(Tensor::ones(s))), want);
        assert_eq!(panic_message(|| drop(Tensor::full(s, 2.0))), want);
    }
}

#[test]
fn contiguous_strides_panic_rather_than_wrap() {
    let msg = panic_message(|| drop(contiguous_strides(&[0, 1 << 62, 8])));
    assert!(
        msg.contains("[0, 4611686018427387904, 8]") && msg.contains("overflows"),
        "{msg}"
    );
    // The product past the outermost stride is never needed, so it may overflow.
    assert_eq!(contiguous_strides(&[1 << 63, 2]), vec![2, 1]);
}

#[test]
fn ops_refuse_results_too_large_to_lay_out() {
    // Broadcasting two valid shapes to one too large.
    assert_too_large(
        broadcast_shapes("add", &[0, 1, 1 << 30], &[1 << 33, 1]),
        "add",
        &[0, 1 << 33, 1 << 30],
    );
    let a = Tensor::zeros(&[0, 1, 1 << 30]);
    let b = Tensor::scalar(1.0).broadcast_to(&[1 << 33, 1]).unwrap();
    assert_too_large(a.add(&b), "add", &[0, 1 << 33, 1 << 30]);
    // Empty operands (k = 0) whose product would have 2^80 elements.
    let (a, b) = (Tensor::zeros(&[1 << 40, 0]), Tensor::zeros(&[0, 1 << 40]));
    assert_too_large(a.matmul(&b), "matmul", &[1 << 40, 1 << 40]);
    // Views of 2^60 floats (nothing allocated) that would be copied into more.
    let big = Tensor::scalar(1.0).broadcast_to(&[1 << 60]).unwrap();
    assert_too_large(Tensor::concat(&[&big, &big, &big], 0), "concat", &[3 << 60]);
    let plane = Tensor::scalar(1.0)
        .broadcast_to(&[1, 1, 1 << 30, 1 << 30])
        .unwrap();
    assert_too_large(
        plane.upsample_nearest2d(2),
        "upsample_nearest2d",
        &[1, 1, 1 << 31, 1 << 31],
    );
    let e = plane.upsample_nearest2d(1 << 40).unwrap_err().to_string();
    assert!(e.contains("overflows usize"), "{e}");
}

#[test]
fn convolutions_refuse_shapes_and_padding_too_large() {
    let p = |padding| Conv2dParams { stride: 1, padding };
    let w = Tensor::zeros(&[1, 1, 1, 1]);
    let dy = Tensor::zeros(&[0, 1, 8, 8]);
    let bad_input = [0, 1 << 62, 8, 8];
    assert_too_large(
        conv2d_backward_input(&dy, &w, &bad_input, p(0)),
        "conv2d_backward_input",
        &bad_input,
    );
    let x = Tensor::zeros(&[0, 1, 8, 8]);
    let bad_weight = [1 << 62, 1, 8, 0];
    assert_too_large(
        conv2d_backward_weight(&x, &dy, &bad_weight, p(0)),
        "conv2d_backward_weight",
        &bad_weight,
    );
    // A padding that makes the output too large, and one that overflows itself.
    let x = Tensor::zeros(&[1, 1, 1, 1]);
    let side = (1 << 41) + 1;
    assert_too_large(x.conv2d(&w, None, p(1 << 40)), "conv2d", &[1, 1, side, side]);
    let e = x.conv2d(&w, None, p(usize::MAX / 2 + 1)).unwrap_err().to_string();
    assert!(
        e.starts_with("conv2d") && e.contains("padding") && e.contains("overflows"),
        "{e}"
    );
}

#[test]
fn ordinary_zero_size_shapes_still_work() {
    let z = Tensor::zeros(&[0, 3]);
    assert_eq!((z.shape(), z.numel(), z.strides()), (&[0, 3][..], 0, &[3, 1][..]));
    assert_eq!(Tensor::from_vec(Vec::new(), &[0, 3]).unwrap().shape(), &[0, 3]);
    assert_eq!(Tensor::try_full(&[2, 0], 1.0).unwrap().shape(), &[2, 0]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    assert_eq!(
        Tensor::rand_uniform(&[0, 3], 0.0, 1.0, &mut rng).unwrap().numel(),
        0
    );
    assert_eq!(
        Tensor::rand_normal(&[3, 0], 0.0, 1.0, &mut rng).unwrap().numel(),
        0
    );
    assert_eq!(Tensor::dropout_mask(&[0, 3], 0.5, 1).unwrap().shape(), &[0, 3]);
    assert_eq!(z.reshape(&[3, 0, 5]).unwrap().shape(), &[3, 0, 5]);
    let row = Tensor::ones(&[1, 3]);
    assert_eq!(row.broadcast_to(&[0, 3]).unwrap().shape(), &[0, 3]);
    assert_eq!(z.add(&row).unwrap().shape(), &[0, 3]);
    // Empty inner dimension: a product of zeros, not an empty one.
    let c = Tensor::zeros(&[2, 0]).matmul(&Tensor::zeros(&[0, 3])).unwrap();
    assert_eq!((c.shape(), c.to_vec()), (&[2, 3][..], vec![0.0; 6]));
    let e = Tensor::zeros(&[4, 0, 2]).matmul(&Tensor::zeros(&[2, 5])).unwrap();
    assert_eq!(e.shape(), &[4, 0, 5]);
    let two = Tensor::ones(&[2, 3]);
    assert_eq!(Tensor::concat(&[&z, &two], 0).unwrap().to_vec(), vec![1.0; 6]);
    assert_eq!(z.index_add(0, &[], &[0, 3]).unwrap().shape(), &[0, 3]);
}
