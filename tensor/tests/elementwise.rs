//! Element-wise ops against naive `f64` references: every binary op over random
//! broadcast-compatible shape pairs (rank differences, size-1 axes) and
//! non-contiguous operands (permuted, narrowed, expanded), every unary and scalar
//! op, large tensors that take the parallel paths, NaN rules and shape errors.

mod naive;

use naive::{assert_close, case, case_of, view_of, Nd};
use proptest::prelude::*;
use tensor::{Result, Tensor};

/// A binary op of `Tensor`.
type Binary = fn(&Tensor, &Tensor) -> Result<Tensor>;

/// A named binary op and its `f64` reference.
type BinaryCase = (&'static str, Binary, fn(f64, f64) -> f64);

/// 1.0 for true, 0.0 for false.
fn b(c: bool) -> f64 {
    f64::from(u8::from(c))
}

/// Every binary op with its `f64` reference.
fn binary_ops() -> Vec<BinaryCase> {
    vec![
        ("add", Tensor::add, |x, y| x + y),
        ("sub", Tensor::sub, |x, y| x - y),
        ("mul", Tensor::mul, |x, y| x * y),
        ("div", Tensor::div, |x, y| x / y),
        ("pow", Tensor::pow, f64::powf),
        ("maximum", Tensor::maximum, f64::max),
        ("minimum", Tensor::minimum, f64::min),
        ("eq", Tensor::eq, |x, y| b(x == y)),
        ("ne", Tensor::ne, |x, y| b(x != y)),
        ("lt", Tensor::lt, |x, y| b(x < y)),
        ("le", Tensor::le, |x, y| b(x <= y)),
        ("gt", Tensor::gt, |x, y| b(x > y)),
        ("ge", Tensor::ge, |x, y| b(x >= y)),
    ]
}

/// An output shape and two operand shapes that broadcast to it: each operand
/// drops some leading axes and sets some others to 1.
fn broadcast_pair(
    max_rank: usize,
    max_dim: usize,
) -> impl Strategy<Value = (Vec<usize>, Vec<usize>, Vec<usize>)> {
    let shape = prop::collection::vec(1..=max_dim, 0..=max_rank);
    (shape, any::<(usize, u32)>(), any::<(usize, u32)>()).prop_map(|(s, a, b)| {
        let operand = |(drop, ones): (usize, u32)| -> Vec<usize> {
            let keep = s.len() - drop % (s.len() + 1);
            let lead = s.len() - keep;
            (lead..s.len())
                .map(|i| if (ones >> i) & 1 == 1 { 1 } else { s[i] })
                .collect()
        };
        let (sa, sb) = (operand(a), operand(b));
        // The output drops the leading axes both operands dropped, and has 1
        // where both chose 1.
        let rank = sa.len().max(sb.len());
        let out = (0..rank)
            .map(|i| {
                let dim = |o: &[usize]| (i + o.len()).checked_sub(rank).map_or(1, |j| o[j]);
                dim(&sa).max(dim(&sb))
            })
            .collect();
        (out, sa, sb)
    })
}

/// Values in quarter steps in `[-4, 4]`, so that equal pairs (for `eq`) and
/// zeros (for `div`, `pow`) occur.
fn quarters(n: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec((-16i32..=16).prop_map(|k| k as f32 / 4.0), n)
}

/// A (possibly non-contiguous) operand of `shape` with quarter-step values.
fn operand(shape: Vec<usize>) -> impl Strategy<Value = (Tensor, Nd)> {
    let n = shape.iter().product();
    (quarters(n), any::<u8>(), any::<usize>())
        .prop_map(move |(v, kind, pick)| view_of(&v, &shape, kind, pick))
}

/// Checks every binary op on `a`, `b` against the naive broadcast loop.
fn check_binary(out_shape: &[usize], (a, na): &(Tensor, Nd), (b, nb): &(Tensor, Nd)) {
    let (ea, eb) = (na.broadcast_to(out_shape), nb.broadcast_to(out_shape));
    for (name, op, reference) in binary_ops() {
        let got = op(a, b).unwrap();
        assert_eq!(got.shape(), out_shape, "{name}");
        assert!(got.is_contiguous(), "{name}");
        let want: Vec<f64> = ea
            .data
            .iter()
            .zip(&eb.data)
            .map(|(&x, &y)| reference(x, y))
            .collect();
        assert_close(&got.to_vec(), &want, 1e-6, name);
    }
}

/// A unary op of `Tensor`.
type Unary = Box<dyn Fn(&Tensor) -> Tensor>;

/// A named unary op and its `f64` reference.
type UnaryCase = (&'static str, Unary, Box<dyn Fn(f64) -> f64>);

/// Every unary and scalar op (with scalar `s`) and its `f64` reference.
fn unary_ops(s: f32) -> Vec<UnaryCase> {
    let sd = f64::from(s);
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    vec![
        ("neg", Box::new(|t: &Tensor| t.neg()), Box::new(|x: f64| -x)),
        ("exp", Box::new(|t: &Tensor| t.exp()), Box::new(f64::exp)),
        ("log", Box::new(|t: &Tensor| t.log()), Box::new(f64::ln)),
        ("sqrt", Box::new(|t: &Tensor| t.sqrt()), Box::new(f64::sqrt)),
        ("square", Box::new(|t: &Tensor| t.square()), Box::new(|x| x * x)),
        ("recip", Box::new(|t: &Tensor| t.recip()), Box::new(|x| 1.0 / x)),
        ("abs", Box::new(|t: &Tensor| t.abs()), Box::new(f64::abs)),
        ("tanh", Box::new(|t: &Tensor| t.tanh()), Box::new(f64::tanh)),
        ("sigmoid", Box::new(|t: &Tensor| t.sigmoid()), Box::new(sig)),
        (
            "silu",
            Box::new(|t: &Tensor| t.silu()),
            Box::new(move |x| x * sig(x)),
        ),
        (
            "relu",
            Box::new(|t: &Tensor| t.relu()),
            Box::new(|x: f64| x.max(0.0)),
        ),
        (
            "add_scalar",
            Box::new(move |t: &Tensor| t.add_scalar(s)),
            Box::new(move |x| x + sd),
        ),
        (
            "sub_scalar",
            Box::new(move |t: &Tensor| t.sub_scalar(s)),
            Box::new(move |x| x - sd),
        ),
        (
            "mul_scalar",
            Box::new(move |t: &Tensor| t.mul_scalar(s)),
            Box::new(move |x| x * sd),
        ),
        (
            "div_scalar",
            Box::new(move |t: &Tensor| t.div_scalar(s)),
            Box::new(move |x| x / sd),
        ),
        (
            "affine",
            Box::new(move |t: &Tensor| t.affine(s, 0.5)),
            Box::new(move |x| x * sd + 0.5),
        ),
        (
            "powf 2",
            Box::new(|t: &Tensor| t.powf(2.0)),
            Box::new(|x: f64| x * x),
        ),
        (
            "powf 3",
            Box::new(|t: &Tensor| t.powf(3.0)),
            Box::new(|x: f64| x.powi(3)),
        ),
        (
            "powf 0.5",
            Box::new(|t: &Tensor| t.powf(0.5)),
            Box::new(|x: f64| x.powf(0.5)),
        ),
        (
            "powf s",
            Box::new(move |t: &Tensor| t.powf(s)),
            Box::new(move |x: f64| x.powf(sd)),
        ),
        (
            "maximum_scalar",
            Box::new(move |t: &Tensor| t.maximum_scalar(s)),
            Box::new(move |x: f64| x.max(sd)),
        ),
        (
            "clamp",
            Box::new(move |t: &Tensor| t.clamp(-s.abs(), s.abs()).unwrap()),
            Box::new(move |x: f64| x.clamp(-sd.abs(), sd.abs())),
        ),
    ]
}

/// Checks every unary op on `t` against its reference on the naive values.
fn check_unary(t: &Tensor, nd: &Nd, s: f32) {
    for (name, op, reference) in unary_ops(s) {
        let got = op(t);
        assert_eq!(got.shape(), nd.shape.as_slice(), "{name}");
        let want: Vec<f64> = nd.data.iter().map(|&x| reference(x)).collect();
        assert_close(&got.to_vec(), &want, 2e-6, name);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn binary_ops_broadcast_like_a_naive_loop(
        (s, a, b) in broadcast_pair(4, 4)
            .prop_flat_map(|(s, sa, sb)| (Just(s), operand(sa), operand(sb)))
    ) {
        check_binary(&s, &a, &b);
        check_binary(&s, &b, &a);
    }

    #[test]
    fn unary_and_scalar_ops_match_f64_maths(
        (t, nd) in case(4, 5, 6.0),
        s in prop_oneof![-3.0f32..3.0, Just(0.0f32), Just(1.0f32)],
    ) {
        check_unary(&t, &nd, s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn large_tensors_take_the_parallel_path(
        a in case_of(vec![40, 33, 27], 4.0),
        b in case_of(vec![33, 1], 4.0),
        s in 0.5f32..2.0,
    ) {
        assert!(a.0.numel() > 1 << 15);
        check_binary(&[40, 33, 27], &a, &b);
        check_binary(&[40, 33, 27], &a, &a);
        check_unary(&a.0, &a.1, s);
    }
}

#[test]
fn nan_rules() {
    let nan = f32::NAN;
    let x = Tensor::from_vec(vec![nan, 1.0, -2.0], &[3]).unwrap();
    let y = Tensor::from_vec(vec![0.0, nan, 5.0], &[3]).unwrap();
    let all_nan_then = |t: Tensor, last: f32| {
        let v = t.to_vec();
        assert!(v[0].is_nan() && v[1].is_nan(), "{v:?}");
        assert_eq!(v[2], last);
    };
    all_nan_then(x.maximum(&y).unwrap(), 5.0);
    all_nan_then(x.minimum(&y).unwrap(), -2.0);
    assert!(x.maximum_scalar(0.0).to_vec()[0].is_nan());
    assert!(x.relu().to_vec()[0].is_nan());
    assert!(x.clamp(-1.0, 1.0).unwrap().to_vec()[0].is_nan());
    assert_eq!(x.eq(&x).unwrap().to_vec(), vec![0.0, 1.0, 1.0]);
}

#[test]
fn shape_errors_name_the_op() {
    let (a, b) = (Tensor::zeros(&[2, 3]), Tensor::zeros(&[3, 2]));
    for (name, op, _) in binary_ops() {
        let e = op(&a, &b).expect_err(name).to_string();
        assert!(
            e.starts_with(name) && e.contains("[2, 3]") && e.contains("[3, 2]"),
            "{e}"
        );
    }
    let e = a.clamp(1.0, -1.0).expect_err("clamp").to_string();
    assert!(e.starts_with("clamp"), "{e}");
}

/// `add_consuming` gives `add`'s values, writes over a buffer only when nothing
/// else holds it, and broadcasts like `add` when the shapes differ.
#[test]
fn add_consuming_reuses_only_unshared_buffers() {
    let make = |seed: u32| {
        let v: Vec<f32> = (0..40_000u32)
            .map(|i| ((i * 7 + seed) % 11) as f32 - 5.0)
            .collect();
        Tensor::from_vec(v, &[200, 200]).unwrap()
    };
    let (a, b) = (make(1), make(2));
    let want = a.add(&b).unwrap().to_vec();
    // Neither shared: the result lives in one of the two buffers.
    let (pa, pb) = (a.storage().as_ptr(), b.storage().as_ptr());
    let sum = Tensor::add_consuming(a.clone(), b.clone()).unwrap();
    assert_eq!(sum.to_vec(), want);
    assert!(
        sum.storage().as_ptr() != pa && sum.storage().as_ptr() != pb,
        "both were shared (we kept clones)"
    );
    assert_eq!(
        a.add(&b).unwrap().to_vec(),
        want,
        "the shared inputs are unchanged"
    );
    let sum = Tensor::add_consuming(make(1), make(2)).unwrap();
    assert_eq!(sum.to_vec(), want);
    // Only b is free: b's buffer takes the sum, a is untouched.
    let b2 = make(2);
    let pb2 = b2.storage().as_ptr();
    let sum = Tensor::add_consuming(a.clone(), b2).unwrap();
    assert_eq!((sum.to_vec(), sum.storage().as_ptr()), (want.clone(), pb2));
    assert_eq!(a.to_vec(), make(1).to_vec());
    // A strided view and a free contiguous tensor.
    let t = make(3).transpose(0, 1).unwrap();
    let want_t = t.add(&make(4)).unwrap().to_vec();
    assert_eq!(Tensor::add_consuming(t, make(4)).unwrap().to_vec(), want_t);
    // Different shapes broadcast, as add does.
    let row = Tensor::from_vec((0..200).map(|i| i as f32).collect(), &[200]).unwrap();
    let want_b = make(1).add(&row).unwrap().to_vec();
    assert_eq!(Tensor::add_consuming(make(1), row).unwrap().to_vec(), want_b);
}
