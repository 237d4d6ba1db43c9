//! Naive references shared by the tensor crate's property tests.
//!
//! An [`Nd`] is a row-major `f64` array whose views (permute, narrow, broadcast)
//! are computed with plain multi-index loops, never with the code under test.
//! [`case`] builds a tensor, possibly a non-contiguous view (permuted, narrowed
//! with NaN padding around it, or expanded with stride 0), together with the
//! `Nd` of the values it must hold.
#![allow(dead_code)] // each test binary uses a different part of this module

use proptest::prelude::*;
use tensor::Tensor;

pub mod conv;

/// The row-major multi-index of flat position `i` in `shape`.
pub fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        idx[k] = i % d;
        i /= d;
    }
    idx
}

/// The flat row-major position of `idx` in `shape`.
pub fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// Every multi-index of `shape`, in row-major order.
pub fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let n: usize = shape.iter().product();
    (0..n).map(|i| unravel(i, shape)).collect()
}

/// A naive dense array.
#[derive(Debug, Clone, PartialEq)]
pub struct Nd {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Nd {
    /// Wraps row-major `f32` values.
    pub fn new(shape: &[usize], vals: &[f32]) -> Nd {
        assert_eq!(vals.len(), shape.iter().product::<usize>());
        Nd {
            shape: shape.to_vec(),
            data: vals.iter().map(|&v| f64::from(v)).collect(),
        }
    }

    /// The element at `idx`.
    pub fn at(&self, idx: &[usize]) -> f64 {
        self.data[ravel(idx, &self.shape)]
    }

    /// The array of `shape` whose element `i` is `self.at(src(i))`.
    pub fn gather(&self, shape: &[usize], src: impl Fn(&[usize]) -> Vec<usize>) -> Nd {
        Nd {
            shape: shape.to_vec(),
            data: indices(shape).iter().map(|i| self.at(&src(i))).collect(),
        }
    }

    /// Axis `k` of the result is axis `perm[k]` of `self`.
    pub fn permute(&self, perm: &[usize]) -> Nd {
        let shape: Vec<usize> = perm.iter().map(|&p| self.shape[p]).collect();
        self.gather(&shape, |i| {
            let mut src = vec![0; perm.len()];
            for (k, &p) in perm.iter().enumerate() {
                src[p] = i[k];
            }
            src
        })
    }

    /// Elements `start..start + len` of `axis`.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Nd {
        let mut shape = self.shape.clone();
        shape[axis] = len;
        self.gather(&shape, |i| {
            let mut src = i.to_vec();
            src[axis] += start;
            src
        })
    }

    /// NumPy broadcasting of `self` to `shape`.
    pub fn broadcast_to(&self, shape: &[usize]) -> Nd {
        let lead = shape.len() - self.shape.len();
        self.gather(shape, |i| {
            i[lead..]
                .iter()
                .zip(&self.shape)
                .map(|(&x, &d)| if d == 1 { 0 } else { x })
                .collect()
        })
    }

    /// The same data under another shape of equal size.
    pub fn reshape(&self, shape: &[usize]) -> Nd {
        assert_eq!(self.data.len(), shape.iter().product::<usize>());
        Nd {
            shape: shape.to_vec(),
            data: self.data.clone(),
        }
    }
}

/// A permutation of `0..n` chosen by `pick` (a rotation, reversed when `pick` is odd).
pub fn permutation(n: usize, pick: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).map(|k| (k + pick / 2) % n.max(1)).collect();
    if pick % 2 == 1 {
        p.reverse();
    }
    p
}

/// The inverse of a permutation.
pub fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (k, &p) in perm.iter().enumerate() {
        inv[p] = k;
    }
    inv
}

/// A tensor of logical `shape` built from `vals` in one of four ways (`kind % 4`):
/// contiguous, a permuted view, a narrowed view of a NaN-padded tensor, or (when
/// `shape` has an axis) a stride-0 expansion along one axis. Returns the tensor
/// and the naive array of the values it holds (for the expansion, `vals` with
/// one slice repeated along the expanded axis).
pub fn view_of(vals: &[f32], shape: &[usize], kind: u8, pick: usize) -> (Tensor, Nd) {
    let nd = Nd::new(shape, vals);
    let rank = shape.len();
    match (kind % 4, rank) {
        (1, 1..) => {
            let perm = permutation(rank, pick);
            let base = nd.permute(&inverse(&perm));
            let t = Tensor::from_vec(to_f32(&base.data), &base.shape).unwrap();
            (t.permute(&perm).unwrap(), nd)
        }
        (2, 1..) => {
            let axis = pick % rank;
            let (before, after) = (1 + pick % 2, 2);
            let mut padded_shape = shape.to_vec();
            padded_shape[axis] += before + after;
            let padded = Nd {
                shape: padded_shape.clone(),
                data: indices(&padded_shape)
                    .iter()
                    .map(|i| {
                        let j = i[axis];
                        if j < before || j >= before + shape[axis] {
                            f64::NAN
                        } else {
                            let mut src = i.clone();
                            src[axis] -= before;
                            nd.at(&src)
                        }
                    })
                    .collect(),
            };
            let t = Tensor::from_vec(to_f32(&padded.data), &padded_shape).unwrap();
            (t.narrow(axis, before, shape[axis]).unwrap(), nd)
        }
        (3, 1..) => {
            let axis = pick % rank;
            let small = nd.narrow(axis, 0, shape[axis].min(1));
            let t = Tensor::from_vec(to_f32(&small.data), &small.shape).unwrap();
            (t.broadcast_to(shape).unwrap(), small.broadcast_to(shape))
        }
        _ => (Tensor::from_vec(vals.to_vec(), shape).unwrap(), nd),
    }
}

/// `f64` values rounded to `f32`.
pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// A shape of rank `0..=max_rank` with every dimension in `1..=max_dim`.
pub fn shape(max_rank: usize, max_dim: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1..=max_dim, 0..=max_rank)
}

/// `n` values uniform in `[-range, range]`.
pub fn values(n: usize, range: f32) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-range..=range, n)
}

/// A (possibly non-contiguous) tensor of `shape` with values in `[-range, range]`,
/// and the naive array it must equal.
pub fn case_of(shape: Vec<usize>, range: f32) -> impl Strategy<Value = (Tensor, Nd)> {
    let n = shape.iter().product();
    (values(n, range), any::<u8>(), any::<usize>())
        .prop_map(move |(vals, kind, pick)| view_of(&vals, &shape, kind, pick))
}

/// A random-shape case: see [`shape`] and [`case_of`].
pub fn case(max_rank: usize, max_dim: usize, range: f32) -> impl Strategy<Value = (Tensor, Nd)> {
    shape(max_rank, max_dim).prop_flat_map(move |s| case_of(s, range))
}

/// Asserts `got` equals `want` within `tol * (1 + |want|)` per element, NaN
/// matching NaN; `what` names the check in the failure message.
pub fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan())
            || (f64::from(g) - w).abs() <= tol * (1.0 + w.abs())
            || f64::from(g) == w;
        assert!(ok, "{what}: element {k}: got {g}, want {w}");
    }
}
