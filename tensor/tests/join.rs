//! Concat, split, index-select and index-add against naive index loops, over
//! random shapes, axes and (non-contiguous) inputs; `index_add` is checked to be
//! the adjoint of `index_select`; large inputs take the parallel paths; errors.

mod naive;

use naive::{assert_close, case_of, indices, values, view_of, Nd};
use proptest::prelude::*;
use tensor::Tensor;

/// Pieces for a concat along `axis`: a base shape of rank `1..=4`, an axis, and
/// per piece a (possibly non-contiguous) tensor whose size along the axis is `0..=3`.
fn concat_case() -> impl Strategy<Value = (usize, Vec<(Tensor, Nd)>)> {
    (
        naive::shape(3, 3),
        any::<usize>(),
        prop::collection::vec(0usize..=3, 1..=4),
    )
        .prop_flat_map(|(mut shape, axis, sizes)| {
            let axis = axis % (shape.len() + 1);
            shape.insert(axis, 0);
            let pieces: Vec<_> = sizes
                .iter()
                .map(|&n| {
                    let mut s = shape.clone();
                    s[axis] = n;
                    case_of(s, 5.0)
                })
                .collect();
            (Just(axis), pieces)
        })
}

/// The naive concat of `pieces` along `axis`.
fn naive_concat(pieces: &[&Nd], axis: usize) -> Nd {
    let mut shape = pieces[0].shape.clone();
    shape[axis] = pieces.iter().map(|p| p.shape[axis]).sum();
    let data = indices(&shape)
        .iter()
        .map(|idx| {
            let mut i = idx.clone();
            for p in pieces {
                if i[axis] < p.shape[axis] {
                    return p.at(&i);
                }
                i[axis] -= p.shape[axis];
            }
            unreachable!("index {idx:?} is outside the concat")
        })
        .collect();
    Nd { shape, data }
}

/// The naive gather of `indices` along `axis`.
fn naive_select(nd: &Nd, axis: usize, picked: &[usize]) -> Nd {
    let mut shape = nd.shape.clone();
    shape[axis] = picked.len();
    nd.gather(&shape, |i| {
        let mut src = i.to_vec();
        src[axis] = picked[i[axis]];
        src
    })
}

/// The naive scatter-add of `g` into zeros of `shape` at `picked` along `axis`.
fn naive_index_add(g: &Nd, axis: usize, picked: &[usize], shape: &[usize]) -> Nd {
    let mut out = Nd {
        shape: shape.to_vec(),
        data: vec![0.0; shape.iter().product()],
    };
    for idx in indices(&g.shape) {
        let mut to = idx.clone();
        to[axis] = picked[idx[axis]];
        out.data[naive::ravel(&to, shape)] += g.at(&idx);
    }
    out
}

/// A tensor, an axis, and indices along it (repeats allowed, maybe none).
fn select_case(max_dim: usize) -> impl Strategy<Value = ((Tensor, Nd), usize, Vec<usize>)> {
    (prop::collection::vec(1..=max_dim, 1..=4), any::<usize>()).prop_flat_map(|(shape, axis)| {
        let axis = axis % shape.len();
        let picked = prop::collection::vec(0..shape[axis], 0..=6);
        (case_of(shape, 5.0), Just(axis), picked)
    })
}

/// Checks index_select and index_add against the naive loops, and their adjointness.
fn check_select((t, nd): &(Tensor, Nd), axis: usize, picked: &[usize], g_vals: &[f32], kind: u8) {
    let sel = t.index_select(axis, picked).unwrap();
    let want = naive_select(nd, axis, picked);
    assert_eq!(sel.shape(), want.shape.as_slice());
    assert_close(&sel.to_vec(), &want.data, 0.0, "index_select");
    let (g, ng) = view_of(g_vals, &want.shape, kind, picked.len());
    let added = g.index_add(axis, picked, t.shape()).unwrap();
    let want_add = naive_index_add(&ng, axis, picked, t.shape());
    assert_eq!(added.shape(), t.shape());
    assert_close(&added.to_vec(), &want_add.data, 1e-6, "index_add");
    // <index_select(x), g> == <x, index_add(g)>.
    let dot = |a: &[f32], b: &[f64]| a.iter().zip(b).map(|(&x, &y)| f64::from(x) * y).sum::<f64>();
    let lhs = dot(&sel.to_vec(), &ng.data);
    let rhs = dot(&added.to_vec(), &nd.data);
    assert!(
        (lhs - rhs).abs() <= 1e-4 * (1.0 + lhs.abs()),
        "adjoint: {lhs} vs {rhs}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn concat_matches_naive_and_split_undoes_it((axis, pieces) in concat_case()) {
        let tensors: Vec<&Tensor> = pieces.iter().map(|p| &p.0).collect();
        let nds: Vec<&Nd> = pieces.iter().map(|p| &p.1).collect();
        let joined = Tensor::concat(&tensors, axis).unwrap();
        let want = naive_concat(&nds, axis);
        prop_assert_eq!(joined.shape(), want.shape.as_slice());
        assert_close(&joined.to_vec(), &want.data, 0.0, "concat");
        let sizes: Vec<usize> = nds.iter().map(|p| p.shape[axis]).collect();
        let parts = joined.split(axis, &sizes).unwrap();
        prop_assert_eq!(parts.len(), pieces.len());
        for (part, nd) in parts.iter().zip(&nds) {
            prop_assert_eq!(part.shape(), nd.shape.as_slice());
            prop_assert_eq!(part.storage().as_ptr(), joined.storage().as_ptr());
            assert_close(&part.to_vec(), &nd.data, 0.0, "split");
        }
    }

    #[test]
    fn index_select_and_index_add_are_adjoint(
        (case, axis, picked) in select_case(4),
        g_vals in values(64 * 6, 3.0),
        kind in any::<u8>(),
    ) {
        let n: usize = case.0.shape().iter().enumerate()
            .map(|(a, &d)| if a == axis { picked.len() } else { d })
            .product();
        check_select(&case, axis, &picked, &g_vals[..n], kind);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    #[test]
    fn large_inputs_take_the_parallel_path(
        a in case_of(vec![40, 17, 30], 5.0),
        b in case_of(vec![40, 9, 30], 5.0),
        picked in prop::collection::vec(0usize..17, 30..40),
        g_vals in values(40 * 40 * 30, 3.0),
        kind in any::<u8>(),
    ) {
        let joined = Tensor::concat(&[&a.0, &b.0], 1).unwrap();
        assert_close(&joined.to_vec(), &naive_concat(&[&a.1, &b.1], 1).data, 0.0, "concat");
        let n = 40 * picked.len() * 30;
        check_select(&a, 1, &picked, &g_vals[..n], kind);
    }
}

#[test]
fn embedding_lookup_gathers_rows() {
    let table = Tensor::arange(12).reshape(&[4, 3]).unwrap();
    let rows = table.index_select(0, &[3, 0, 3]).unwrap();
    assert_eq!(rows.to_vec(), vec![9., 10., 11., 0., 1., 2., 9., 10., 11.]);
    let grad = Tensor::ones(&[3, 3]).index_add(0, &[3, 0, 3], &[4, 3]).unwrap();
    assert_eq!(
        grad.to_vec(),
        vec![1., 1., 1., 0., 0., 0., 0., 0., 0., 2., 2., 2.]
    );
}

/// Asserts that `r` is an error whose message names `op`.
fn assert_err<T: std::fmt::Debug>(r: tensor::Result<T>, op: &str) {
    let e = r.expect_err("expected an error").to_string();
    assert!(e.starts_with(op), "{e} should name {op}");
}

#[test]
fn bad_arguments_are_errors_that_name_the_op() {
    let (a, b) = (Tensor::zeros(&[2, 3]), Tensor::zeros(&[3, 3]));
    assert_err(Tensor::concat(&[], 0), "concat");
    assert_err(Tensor::concat(&[&a, &b], 1), "concat");
    assert_err(Tensor::concat(&[&a, &a], 2), "concat");
    assert_err(Tensor::concat(&[&a, &Tensor::zeros(&[2, 3, 1])], 0), "concat");
    assert_err(a.split(1, &[1, 1]), "split");
    assert_err(a.split(2, &[2]), "split");
    assert_err(a.index_select(2, &[0]), "index_select");
    assert_err(a.index_select(1, &[0, 3]), "index_select");
    assert_err(a.index_add(0, &[0], &[5, 3]), "index_add");
    assert_err(a.index_add(0, &[0, 5], &[5, 3]), "index_add");
    assert_err(a.index_add(2, &[0, 1], &[2, 3]), "index_add");
    assert_err(a.index_add(1, &[0, 1, 2], &[2, 3, 1]), "index_add");
}
