//! Reductions, softmax and `sum_to_shape` against naive `f64` references over
//! random shapes, random axis sets (in any order), keepdim both ways and
//! non-contiguous inputs; large inputs for the parallel paths; error cases.

mod naive;

use naive::{assert_close, case, case_of, indices, ravel, view_of, Nd};
use proptest::prelude::*;
use tensor::Tensor;

/// The naive reduction of `nd` over `axes` with `f` applied to each group of
/// reduced values (in row-major order). Returns the output shape and values.
fn naive_reduce(nd: &Nd, axes: &[usize], keepdim: bool, f: impl Fn(&[f64]) -> f64) -> Nd {
    let rank = nd.shape.len();
    let keep_shape: Vec<usize> = (0..rank)
        .map(|a| if axes.contains(&a) { 1 } else { nd.shape[a] })
        .collect();
    let mut groups = vec![Vec::new(); keep_shape.iter().product()];
    for idx in indices(&nd.shape) {
        let out: Vec<usize> = (0..rank)
            .map(|a| if axes.contains(&a) { 0 } else { idx[a] })
            .collect();
        groups[ravel(&out, &keep_shape)].push(nd.at(&idx));
    }
    let shape = if keepdim {
        keep_shape
    } else {
        (0..rank)
            .filter(|a| !axes.contains(a))
            .map(|a| nd.shape[a])
            .collect()
    };
    Nd {
        shape,
        data: groups.iter().map(|g| f(g)).collect(),
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn var(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// The index of the first maximum.
fn argmax(v: &[f64]) -> f64 {
    let m = max(v);
    v.iter().position(|&x| x == m).unwrap() as f64
}

/// A distinct set of axes below `rank`, chosen by the bits of `mask`, in an order
/// chosen by `pick`.
fn axis_set(rank: usize, mask: u8, pick: usize) -> Vec<usize> {
    let mut axes: Vec<usize> = (0..rank).filter(|a| (mask >> a) & 1 == 1).collect();
    if !axes.is_empty() {
        let k = pick % axes.len();
        axes.rotate_left(k);
        if pick % 2 == 1 {
            axes.reverse();
        }
    }
    axes
}

/// Checks that `got` has the naive result's shape and values.
fn check(got: &Tensor, want: &Nd, tol: f64, what: &str) {
    assert_eq!(got.shape(), want.shape.as_slice(), "{what}");
    assert_close(&got.to_vec(), &want.data, tol, what);
}

/// A (possibly non-contiguous) tensor with half-step values in `[-4, 4]`, so that
/// ties occur for `max` and `argmax`.
fn halves_case(max_rank: usize, max_dim: usize) -> impl Strategy<Value = (Tensor, Nd)> {
    naive::shape(max_rank, max_dim).prop_flat_map(|s| {
        let n: usize = s.iter().product();
        let vals = prop::collection::vec((-8i32..=8).prop_map(|k| k as f32 / 2.0), n);
        (vals, any::<u8>(), any::<usize>()).prop_map(move |(v, kind, pick)| view_of(&v, &s, kind, pick))
    })
}

/// The naive softmax along `axis`, and its log.
fn naive_softmax(nd: &Nd, axis: usize) -> (Vec<f64>, Vec<f64>) {
    let sums = naive_reduce(nd, &[axis], true, |g| {
        let m = max(g);
        g.iter().map(|x| (x - m).exp()).sum::<f64>().ln() + m
    });
    let lse: Vec<f64> = indices(&nd.shape)
        .iter()
        .map(|idx| {
            let mut i = idx.clone();
            i[axis] = 0;
            sums.at(&i)
        })
        .collect();
    let log: Vec<f64> = nd.data.iter().zip(&lse).map(|(x, l)| x - l).collect();
    (log.iter().map(|l| l.exp()).collect(), log)
}

/// Checks every reduction of `t` over `axes` against the naive ones.
fn check_reductions(t: &Tensor, nd: &Nd, axes: &[usize], keepdim: bool) {
    check(
        &t.sum(axes, keepdim).unwrap(),
        &naive_reduce(nd, axes, keepdim, |g| g.iter().sum()),
        1e-4,
        "sum",
    );
    check(
        &t.mean(axes, keepdim).unwrap(),
        &naive_reduce(nd, axes, keepdim, mean),
        1e-5,
        "mean",
    );
    check(
        &t.var(axes, keepdim).unwrap(),
        &naive_reduce(nd, axes, keepdim, var),
        1e-5,
        "var",
    );
    check(
        &t.max(axes, keepdim).unwrap(),
        &naive_reduce(nd, axes, keepdim, max),
        0.0,
        "max",
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn reductions_match_naive_loops(
        (t, nd) in case(4, 4, 10.0),
        mask in any::<u8>(),
        pick in any::<usize>(),
        keepdim in any::<bool>(),
    ) {
        let axes = axis_set(t.rank(), mask, pick);
        check_reductions(&t, &nd, &axes, keepdim);
        let total: f64 = nd.data.iter().sum();
        let all = t.sum_all();
        prop_assert_eq!(all.rank(), 0);
        assert_close(&all.to_vec(), &[total], 1e-5, "sum_all");
    }

    #[test]
    fn max_and_argmax_pick_the_first_maximum(
        (t, nd) in halves_case(4, 4),
        axis in any::<usize>(),
        keepdim in any::<bool>(),
    ) {
        prop_assume!(t.rank() > 0);
        let axis = axis % t.rank();
        check(&t.argmax(axis, keepdim).unwrap(), &naive_reduce(&nd, &[axis], keepdim, argmax), 0.0, "argmax");
        check(&t.max(&[axis], keepdim).unwrap(), &naive_reduce(&nd, &[axis], keepdim, max), 0.0, "max");
    }

    #[test]
    fn softmax_and_log_softmax_match_naive_maths(
        (t, nd) in case(4, 5, 30.0),
        axis in any::<usize>(),
    ) {
        prop_assume!(t.rank() > 0);
        let axis = axis % t.rank();
        let (want_sm, want_lsm) = naive_softmax(&nd, axis);
        let sm = t.softmax(axis).unwrap();
        let lsm = t.log_softmax(axis).unwrap();
        prop_assert!(sm.is_contiguous() && lsm.is_contiguous());
        prop_assert_eq!(sm.shape(), t.shape());
        assert_close(&sm.to_vec(), &want_sm, 1e-6, "softmax");
        assert_close(&lsm.to_vec(), &want_lsm, 1e-5, "log_softmax");
        // Rows sum to 1, and log_softmax is the log of softmax.
        let rows = naive_reduce(&Nd::new(sm.shape(), &sm.to_vec()), &[axis], false, |g| g.iter().sum());
        assert_close(&naive::to_f32(&rows.data), &vec![1.0; rows.data.len()], 1e-5, "row sums");
        let log_of_sm: Vec<f64> = sm.to_vec().iter().map(|&p| f64::from(p).ln()).collect();
        for (k, (&l, &ls)) in lsm.to_vec().iter().zip(&log_of_sm).enumerate() {
            prop_assert!(ls < -80.0 || (f64::from(l) - ls).abs() < 1e-5 * (1.0 + ls.abs()), "element {}", k);
        }
    }

    #[test]
    fn sum_to_shape_undoes_broadcasting(
        (t, nd) in case(4, 4, 10.0),
        drop in any::<usize>(),
        ones in any::<u8>(),
    ) {
        let rank = t.rank();
        let lead = drop % (rank + 1);
        let target: Vec<usize> =
            (lead..rank).map(|a| if (ones >> a) & 1 == 1 { 1 } else { t.shape()[a] }).collect();
        let mut want = vec![0.0; target.iter().product()];
        for idx in indices(t.shape()) {
            let to: Vec<usize> = (lead..rank).map(|a| if target[a - lead] == 1 { 0 } else { idx[a] }).collect();
            want[ravel(&to, &target)] += nd.at(&idx);
        }
        let got = t.sum_to_shape(&target).unwrap();
        prop_assert_eq!(got.shape(), target.as_slice());
        assert_close(&got.to_vec(), &want, 1e-5, "sum_to_shape");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    #[test]
    fn large_inputs_take_the_parallel_path(
        (t, nd) in case_of(vec![40, 33, 27], 4.0),
        mask in any::<u8>(),
        pick in any::<usize>(),
        axis in 0usize..3,
    ) {
        let axes = axis_set(3, mask, pick);
        check_reductions(&t, &nd, &axes, false);
        let (want_sm, _) = naive_softmax(&nd, axis);
        assert_close(&t.softmax(axis).unwrap().to_vec(), &want_sm, 1e-6, "softmax");
    }
}

#[test]
fn empty_axes_copy_and_empty_reductions() {
    let x = Tensor::arange(6).reshape(&[2, 3]).unwrap().t().unwrap();
    assert_eq!(x.sum(&[], false).unwrap().to_vec(), x.to_vec());
    assert_eq!(x.var(&[], true).unwrap().to_vec(), vec![0.0; 6]);
    let e = Tensor::zeros(&[2, 0]);
    assert_eq!(e.sum(&[1], false).unwrap().to_vec(), vec![0.0, 0.0]);
    assert!(e.mean(&[1], false).unwrap().to_vec().iter().all(|v| v.is_nan()));
    assert_eq!(e.sum(&[0], true).unwrap().shape(), &[1, 0]);
    assert_eq!(e.sum_all().item().unwrap(), 0.0);
    assert_eq!(e.softmax(1).unwrap().shape(), &[2, 0]);
    assert_eq!(Tensor::scalar(3.0).sum(&[], false).unwrap().item().unwrap(), 3.0);
}

#[test]
fn softmax_is_stable_for_large_inputs() {
    let x = Tensor::from_vec(vec![1000.0, 1000.0, -1000.0, 0.0], &[4]).unwrap();
    assert_eq!(x.softmax(0).unwrap().to_vec(), vec![0.5, 0.5, 0.0, 0.0]);
    let l = x.log_softmax(0).unwrap().to_vec();
    let ln2 = std::f32::consts::LN_2;
    assert!(
        (l[0] + ln2).abs() < 1e-4 && (l[2] + 2000.0 + ln2).abs() < 1e-3,
        "{l:?}"
    );
}

/// Asserts that `r` is an error whose message names `op`.
fn assert_err(r: tensor::Result<Tensor>, op: &str) {
    let e = r.expect_err("expected an error").to_string();
    assert!(e.starts_with(op), "{e} should name {op}");
}

#[test]
fn bad_axes_are_errors_that_name_the_op() {
    let x = Tensor::zeros(&[2, 3]);
    assert_err(x.sum(&[0, 0], false), "sum");
    assert_err(x.mean(&[2], false), "mean");
    assert_err(x.var(&[1, 5], true), "var");
    assert_err(x.max(&[3], false), "max");
    assert_err(x.argmax(2, false), "argmax");
    assert_err(x.softmax(2), "softmax");
    assert_err(x.log_softmax(7), "log_softmax");
    assert_err(Tensor::zeros(&[2, 0]).max(&[1], false), "max");
    assert_err(Tensor::zeros(&[2, 0]).argmax(1, false), "argmax");
    assert_err(x.sum_to_shape(&[2]), "sum_to_shape");
    assert_err(x.sum_to_shape(&[4, 2, 3]), "sum_to_shape");
    assert_err(x.sum_to_shape(&[2, 2]), "sum_to_shape");
}

/// With nothing to sum, `sum_to_shape` returns the value itself (a view of the
/// same storage), not a copy: every matmul's backward asks for this.
#[test]
fn sum_to_shape_of_its_own_shape_is_a_view() {
    let t = Tensor::arange(24)
        .reshape(&[2, 3, 4])
        .unwrap()
        .transpose(1, 2)
        .unwrap();
    let same = t.sum_to_shape(&[2, 4, 3]).unwrap();
    assert_eq!(same.to_vec(), t.to_vec());
    assert_eq!(t.storage_share_count(), 2, "shares the storage");
}
