//! Dropout masks against the probabilities they promise: the dropped fraction,
//! pairs of neighbours dropped together as often as independence says, the kept
//! value, determinism in the seed and at any thread count, and every element
//! against its definition from the exported `splitmix64`.

use tensor::Tensor;

const N: usize = 200_000;

fn dropped(mask: &[f32]) -> Vec<bool> {
    mask.iter().map(|&v| v == 0.0).collect()
}

#[test]
fn the_dropped_fraction_and_the_kept_value_match_p() {
    for p in [0.1f32, 0.25, 0.5] {
        let m = Tensor::dropout_mask(&[N], p, 42).unwrap().to_vec();
        let frac = dropped(&m).iter().filter(|&&d| d).count() as f64 / N as f64;
        // Four standard deviations of a binomial fraction.
        let tol = 4.0 * (p as f64 * (1.0 - p as f64) / N as f64).sqrt();
        assert!((frac - p as f64).abs() < tol, "p {p}: dropped {frac}");
        assert!(m.iter().all(|&v| v == 0.0 || v == 1.0 / (1.0 - p)));
    }
    assert!(Tensor::dropout_mask(&[N], 0.0, 1)
        .unwrap()
        .to_vec()
        .iter()
        .all(|&v| v == 1.0));
    assert!(Tensor::dropout_mask(&[4], 1.0, 1).is_err());
    assert!(Tensor::dropout_mask(&[4], -0.1, 1).is_err());
}

#[test]
fn neighbours_are_dropped_independently() {
    let p = 0.3;
    let d = dropped(&Tensor::dropout_mask(&[N], p as f32, 7).unwrap().to_vec());
    for lag in [1, 2, 16, 16384] {
        let both = d.iter().zip(&d[lag..]).filter(|(a, b)| **a && **b).count() as f64;
        let frac = both / (N - lag) as f64;
        let tol = 4.0 * (p * p * (1.0 - p * p) / N as f64).sqrt();
        assert!((frac - p * p).abs() < tol, "lag {lag}: {frac} vs {}", p * p);
    }
}

#[test]
fn masks_depend_on_the_seed_only() {
    let shape = [3, 50_000];
    let a = Tensor::dropout_mask(&shape, 0.5, 9).unwrap().to_vec();
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    assert_eq!(
        one.install(|| Tensor::dropout_mask(&shape, 0.5, 9).unwrap().to_vec()),
        a
    );
    assert_eq!(
        three.install(|| Tensor::dropout_mask(&shape, 0.5, 9).unwrap().to_vec()),
        a
    );
    let b = Tensor::dropout_mask(&shape, 0.5, 10).unwrap().to_vec();
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64;
    assert!(
        (same - 0.5).abs() < 0.01,
        "seeds 9 and 10 agree on {same} of the elements"
    );
}

#[test]
fn masks_are_built_from_the_exported_splitmix64() {
    // Element i from its definition (see `mask.rs`): SplitMix64's output for
    // counter i of the stream `seed`, its top 24 bits compared with p * 2^24.
    let (p, seed) = (0.3f32, 987_654_321u64);
    let threshold = (f64::from(p) * f64::from(1u32 << 24)).ceil() as u64;
    let want: Vec<f32> = (0..40_000u64)
        .map(|i| {
            let z = tensor::splitmix64(seed.wrapping_add((i + 1).wrapping_mul(tensor::rng::GOLDEN_GAMMA)));
            if (z >> 40) < threshold {
                0.0
            } else {
                1.0 / (1.0 - p)
            }
        })
        .collect();
    let got = Tensor::dropout_mask(&[200, 200], p, seed).unwrap().to_vec();
    assert_eq!(got.len(), want.len());
    assert!(got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()));
}

/// Fused dropout is `x * mask` exactly, on a strided view as on a contiguous
/// tensor, below and above the parallel threshold, and refuses what the mask does.
#[test]
fn fused_dropout_is_the_product_with_the_mask() {
    for (shape, seed) in [(vec![5, 7], 3u64), (vec![3, 40_000], 11)] {
        let n: usize = shape.iter().product();
        let x = Tensor::from_vec((0..n).map(|i| (i % 13) as f32 - 6.5).collect(), &shape).unwrap();
        let mask = Tensor::dropout_mask(&shape, 0.25, seed).unwrap();
        let want = x.mul(&mask).unwrap().to_vec();
        assert_eq!(x.dropout(0.25, seed).unwrap().to_vec(), want);
        // The transpose's elements are numbered in its own (row-major) order.
        let t = x.transpose(0, 1).unwrap();
        let tmask = Tensor::dropout_mask(t.shape(), 0.25, seed).unwrap();
        assert_eq!(
            t.dropout(0.25, seed).unwrap().to_vec(),
            t.mul(&tmask).unwrap().to_vec()
        );
        assert_eq!(x.dropout(0.0, seed).unwrap().to_vec(), x.to_vec());
    }
    let x = Tensor::ones(&[4]);
    assert!(x.dropout(1.0, 1).is_err());
    assert!(x.dropout(f32::NAN, 1).is_err());
}
