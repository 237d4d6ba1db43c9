//! `matmul` against a naive triple loop (f64 accumulation), over random shapes,
//! transposed and sliced views, broadcast batch axes, vectors, and thread counts.

use proptest::prelude::*;
use tensor::Tensor;

/// Element `index` of `t` read through its multi-index (independent of the kernels).
fn at(t: &Tensor, index: &[usize]) -> f64 {
    t.get(index).unwrap() as f64
}

/// The naive batched product of `a: [batch.., m, k]` and `b: [batch.., k, n]`
/// (batch axes already equal), returned row-major.
fn naive(a: &Tensor, b: &Tensor) -> Vec<f32> {
    let r = a.rank();
    let (m, k, n) = (a.shape()[r - 2], a.shape()[r - 1], b.shape()[r - 1]);
    let batch: Vec<usize> = a.shape()[..r - 2].to_vec();
    let count: usize = batch.iter().product();
    let mut out = Vec::new();
    for bi in 0..count {
        let mut idx = vec![0; r - 2];
        let mut rem = bi;
        for (d, &s) in idx.iter_mut().zip(&batch).rev() {
            *d = rem % s;
            rem /= s;
        }
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0;
                for p in 0..k {
                    let ia: Vec<usize> = idx.iter().copied().chain([i, p]).collect();
                    let ib: Vec<usize> = idx.iter().copied().chain([p, j]).collect();
                    acc += at(a, &ia) * at(b, &ib);
                }
                out.push(acc as f32);
            }
        }
    }
    out
}

fn close(got: &[f32], want: &[f32], k: usize) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-5 * (k as f32 + 1.0) * (1.0 + w.abs());
        assert!((g - w).abs() <= tol, "element {i}: got {g}, want {w}");
    }
}

fn random(shape: &[usize], seed: u64) -> Tensor {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Tensor::rand_uniform(shape, -1.0, 1.0, &mut rng).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn plain_and_transposed_operands(m in 1usize..40, k in 1usize..40, n in 1usize..40,
                                     ta: bool, tb: bool, seed in 0u64..1000) {
        // Build A (and B) either directly or as the transpose view of a stored transpose.
        let a = if ta { random(&[k, m], seed).t().unwrap() } else { random(&[m, k], seed) };
        let b = if tb { random(&[n, k], seed + 1).t().unwrap() } else { random(&[k, n], seed + 1) };
        let c = a.matmul(&b).unwrap();
        prop_assert_eq!(c.shape(), &[m, n]);
        close(&c.to_vec(), &naive(&a, &b), k);
    }

    #[test]
    fn broadcast_batches_and_sliced_views(b1 in 1usize..4, b2 in 1usize..4, m in 1usize..9,
                                          k in 1usize..9, n in 1usize..9, seed in 0u64..1000) {
        // A: [b1, 1, m, k] sliced out of a wider tensor; B: [b2, k, n] broadcast over b1.
        let wide = random(&[b1, 1, m, k + 3], seed);
        let a = wide.narrow(3, 2, k).unwrap();
        let b = random(&[b2, k, n], seed + 7);
        let c = a.matmul(&b).unwrap();
        prop_assert_eq!(c.shape(), &[b1, b2, m, n]);
        let ae = a.broadcast_to(&[b1, b2, m, k]).unwrap();
        let be = b.broadcast_to(&[b1, b2, k, n]).unwrap();
        close(&c.to_vec(), &naive(&ae, &be), k);
    }
}

#[test]
fn vectors_drop_their_axis() {
    let a = random(&[5], 1);
    let b = random(&[5, 3], 2);
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.shape(), &[3]);
    close(&c.to_vec(), &naive(&a.unsqueeze(0).unwrap(), &b), 5);
    let v = random(&[3], 3);
    let d = b.matmul(&v).unwrap();
    assert_eq!(d.shape(), &[5]);
    close(&d.to_vec(), &naive(&b, &v.unsqueeze(1).unwrap()), 3);
    assert_eq!(a.matmul(&random(&[5], 4)).unwrap().shape(), &[] as &[usize]);
}

#[test]
fn large_products_split_over_threads_give_the_same_result() {
    // Big enough for the parallel block split, in both directions (m >= n and m < n).
    for &(m, k, n) in &[(260, 70, 130), (70, 90, 333)] {
        let a = random(&[m, k], 11);
        let b = random(&[n, k], 12).t().unwrap();
        let want = naive(&a, &b);
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let c = pool.install(|| a.matmul(&b).unwrap());
            close(&c.to_vec(), &want, k);
        }
    }
}

#[test]
fn shape_errors_name_the_op_and_shapes() {
    let err = random(&[2, 3], 0).matmul(&random(&[4, 5], 0)).unwrap_err();
    assert_eq!(err.to_string(), "matmul: shapes do not match: [2, 3] vs [4, 5]");
    assert!(random(&[2, 2, 3], 0).matmul(&random(&[3, 3, 1], 0)).is_err());
    assert!(Tensor::scalar(1.0).matmul(&random(&[1], 0)).is_err());
}

#[test]
fn empty_dimensions() {
    let c = Tensor::zeros(&[0, 3]).matmul(&Tensor::zeros(&[3, 4])).unwrap();
    assert_eq!(c.shape(), &[0, 4]);
    let d = Tensor::ones(&[2, 0]).matmul(&Tensor::ones(&[0, 4])).unwrap();
    assert_eq!(d.to_vec(), vec![0.0; 8]);
}
