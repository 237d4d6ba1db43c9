//! Views against naive index maps: random chains of permute, transpose, narrow,
//! broadcast, squeeze, unsqueeze and reshape, applied to a `Tensor` and to a naive
//! array; after every step each element (via `get` and `to_vec`) and
//! `contiguous()` must agree. Plus view-versus-copy and error cases.

mod naive;

use naive::{assert_close, case, indices, inverse, permutation, Nd};
use proptest::prelude::*;
use tensor::{Tensor, TensorError};

/// One random view step; the numbers pick axes and sizes.
type Step = (u8, usize, usize, usize);

/// Applies `step` to both the tensor and the naive array, when it applies.
fn apply(t: &Tensor, nd: &Nd, (op, p, q, r): Step) -> (Tensor, Nd) {
    let rank = nd.shape.len();
    let shape = nd.shape.clone();
    match (op % 7, rank) {
        (0, 1..) => {
            let perm = permutation(rank, p);
            (t.permute(&perm).unwrap(), nd.permute(&perm))
        }
        (1, 1..) => {
            let (a, b) = (p % rank, q % rank);
            let mut perm: Vec<usize> = (0..rank).collect();
            perm.swap(a, b);
            (t.transpose(a, b).unwrap(), nd.permute(&perm))
        }
        (2, 1..) => {
            let axis = p % rank;
            let start = q % (shape[axis] + 1);
            let len = r % (shape[axis] - start + 1);
            (t.narrow(axis, start, len).unwrap(), nd.narrow(axis, start, len))
        }
        (3, _) => {
            let axis = p % (rank + 1);
            let mut s = shape.clone();
            s.insert(axis, 1);
            (t.unsqueeze(axis).unwrap(), nd.reshape(&s))
        }
        (4, 1..) if shape.contains(&1) => {
            let axis = (0..rank).cycle().skip(p % rank).find(|&a| shape[a] == 1).unwrap();
            let mut s = shape.clone();
            s.remove(axis);
            (t.squeeze(axis).unwrap(), nd.reshape(&s))
        }
        (5, _) => {
            // Expand every size-1 axis to 1 + q % 3 and maybe add a leading axis.
            let mut s: Vec<usize> = shape
                .iter()
                .map(|&d| if d == 1 { 1 + q % 3 } else { d })
                .collect();
            if p % 2 == 0 {
                s.insert(0, 2);
            }
            (t.broadcast_to(&s).unwrap(), nd.broadcast_to(&s))
        }
        (6, _) => {
            let s = reshape_target(&shape, p, q);
            (t.reshape(&s).unwrap(), nd.reshape(&s))
        }
        _ => (t.clone(), nd.clone()),
    }
}

/// A new shape with the same number of elements: merge two neighbouring axes,
/// split one axis into two factors, or flatten.
fn reshape_target(shape: &[usize], p: usize, q: usize) -> Vec<usize> {
    let rank = shape.len();
    match p % 3 {
        0 if rank >= 2 => {
            let a = q % (rank - 1);
            let mut s = shape.to_vec();
            let merged = s[a] * s[a + 1];
            s.splice(a..a + 2, [merged]);
            s
        }
        1 if rank >= 1 => {
            let a = q % rank;
            let d = shape[a];
            let f = (2..=d).find(|f| (d / f) * f == d).unwrap_or(1);
            let mut s = shape.to_vec();
            s.splice(a..a + 1, [f, d / f]);
            s
        }
        _ => vec![shape.iter().product()],
    }
}

/// Checks every element of `t` against `nd`, by `get`, `to_vec` and `contiguous`.
fn check(t: &Tensor, nd: &Nd) {
    assert_eq!(t.shape(), nd.shape.as_slice());
    assert_eq!(t.numel(), nd.data.len());
    for idx in indices(&nd.shape) {
        let (g, w) = (t.get(&idx).unwrap(), nd.at(&idx));
        assert!(
            g == w as f32 || (g.is_nan() && w.is_nan()),
            "at {idx:?}: {g} vs {w}"
        );
    }
    assert_close(&t.to_vec(), &nd.data, 0.0, "to_vec");
    let c = t.contiguous();
    assert!(c.is_contiguous());
    assert_close(c.as_slice().unwrap(), &nd.data, 0.0, "contiguous");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn view_chains_match_naive_index_maps(
        (t, nd) in case(4, 4, 10.0),
        steps in prop::collection::vec(any::<Step>(), 1..6),
    ) {
        let (mut t, mut nd) = (t, nd);
        check(&t, &nd);
        for step in steps {
            (t, nd) = apply(&t, &nd, step);
            check(&t, &nd);
        }
    }

    #[test]
    fn reshape_of_a_permuted_tensor_is_row_major_of_the_view(
        (t, nd) in case(4, 4, 10.0),
        pick in any::<usize>(),
        p in any::<usize>(),
        q in any::<usize>(),
    ) {
        let perm = permutation(t.rank(), pick);
        let (v, nv) = (t.permute(&perm).unwrap(), nd.permute(&perm));
        let s = reshape_target(&nv.shape, p, q);
        let r = v.reshape(&s).unwrap();
        check(&r, &nv.reshape(&s));
        // Back to the original order: the same values as the source.
        let back = r.reshape(&nv.shape).unwrap().permute(&inverse(&perm)).unwrap();
        check(&back, &nd);
    }
}

#[test]
fn reshape_is_a_view_when_strides_allow_and_a_copy_otherwise() {
    let x = Tensor::arange(24).reshape(&[2, 3, 4]).unwrap();
    let same_storage = |a: &Tensor, b: &Tensor| a.storage().as_ptr() == b.storage().as_ptr();
    assert!(same_storage(&x, &x.reshape(&[6, 4]).unwrap()));
    // Narrowing the last axis keeps axes 0 and 1 mergeable.
    let n = x.narrow(2, 1, 2).unwrap();
    assert!(!n.is_contiguous());
    let merged = n.reshape(&[6, 2]).unwrap();
    assert!(same_storage(&x, &merged));
    assert_eq!(
        merged.to_vec(),
        vec![1., 2., 5., 6., 9., 10., 13., 14., 17., 18., 21., 22.]
    );
    // A transposed matrix cannot be flattened without a copy.
    let m = Tensor::arange(6).reshape(&[2, 3]).unwrap().t().unwrap();
    let flat = m.reshape(&[6]).unwrap();
    assert!(!same_storage(&m, &flat));
    assert!(flat.is_contiguous());
    assert_eq!(flat.to_vec(), vec![0., 3., 1., 4., 2., 5.]);
    // Views share storage; contiguous() of a contiguous tensor does not copy.
    assert!(same_storage(&x, &x.permute(&[2, 0, 1]).unwrap()));
    assert!(same_storage(&x, &x.contiguous()));
    assert!(same_storage(
        &x,
        &x.unsqueeze(3).unwrap().broadcast_to(&[2, 3, 4, 5]).unwrap()
    ));
}

#[test]
fn scalars_and_empty_tensors() {
    let s = Tensor::scalar(2.5);
    assert_eq!((s.rank(), s.numel(), s.item().unwrap()), (0, 1, 2.5));
    assert_eq!(s.get(&[]).unwrap(), 2.5);
    assert_eq!(
        s.unsqueeze(0).unwrap().broadcast_to(&[3]).unwrap().to_vec(),
        vec![2.5; 3]
    );
    let e = Tensor::zeros(&[2, 0, 3]);
    assert_eq!(e.numel(), 0);
    assert!(e.permute(&[2, 1, 0]).unwrap().to_vec().is_empty());
    assert_eq!(e.reshape(&[0, 6]).unwrap().shape(), &[0, 6]);
    assert!(Tensor::arange(4).narrow(0, 4, 0).unwrap().to_vec().is_empty());
}

/// Asserts that `r` is an error whose message names `op`.
fn assert_err<T: std::fmt::Debug>(r: Result<T, TensorError>, op: &str) {
    let e = r.expect_err("expected an error");
    assert!(e.to_string().starts_with(op), "{e} should name {op}");
}

#[test]
fn bad_views_are_errors_that_name_the_op() {
    let x = Tensor::zeros(&[2, 3, 4]);
    assert_err(x.permute(&[0, 0, 1]), "permute");
    assert_err(x.permute(&[0, 1]), "permute");
    assert_err(x.permute(&[0, 1, 3]), "permute");
    assert_err(x.transpose(0, 3), "transpose");
    assert_err(x.narrow(1, 2, 2), "narrow");
    assert_err(x.narrow(3, 0, 1), "narrow");
    assert_err(x.broadcast_to(&[3, 3, 4]), "broadcast_to");
    assert_err(x.broadcast_to(&[3, 4]), "broadcast_to");
    assert_err(x.squeeze(1), "squeeze");
    assert_err(x.squeeze(3), "squeeze");
    assert_err(x.unsqueeze(4), "unsqueeze");
    assert_err(x.reshape(&[5, 5]), "reshape");
    assert_err(x.get(&[0, 3, 0]), "get");
    assert_err(x.get(&[0, 0]), "get");
    assert_err(x.item(), "item");
    assert_err(x.dim(3), "dim");
    assert_err(Tensor::scalar(1.0).t(), "t");
    assert_err(Tensor::from_vec(vec![1.0; 5], &[2, 3]), "from_vec");
}
