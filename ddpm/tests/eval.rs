//! The evaluation maths against independent references: closed-form Frechet
//! distances, a naive covariance, hand-made probabilities, and the shipped
//! classifier on real MNIST test images.

use std::time::Instant;

use ddpm::data::{load_mnist, Split};
use ddpm::eval::{
    classify, confident_fraction, embedded_classifier, fit_gaussian, frechet_distance, predicted_classes,
    symmetric_eigen, Gaussian, CLASSES,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tensor::Tensor;

const MNIST_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/mnist");

fn random_symmetric(rng: &mut StdRng, n: usize) -> Vec<f64> {
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let x: f64 = rng.gen_range(-1.0..1.0);
            a[i * n + j] = x;
            a[j * n + i] = x;
        }
    }
    a
}

/// A random SPD matrix `B B^T + 0.1 I`.
fn random_spd(rng: &mut StdRng, n: usize) -> Vec<f64> {
    let b: Vec<f64> = (0..n * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let mut s = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            s[i * n + j] = (0..n).map(|k| b[i * n + k] * b[j * n + k]).sum::<f64>();
        }
        s[i * n + i] += 0.1;
    }
    s
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            c[i * n + j] = (0..n).map(|k| a[i * n + k] * b[k * n + j]).sum();
        }
    }
    c
}

fn transpose(a: &[f64], n: usize) -> Vec<f64> {
    (0..n * n).map(|k| a[(k % n) * n + k / n]).collect()
}

/// A random orthogonal matrix: the eigenvectors of a random symmetric matrix.
fn random_orthogonal(rng: &mut StdRng, n: usize) -> Vec<f64> {
    symmetric_eigen(&random_symmetric(rng, n), n).1
}

fn gaussian(mean: Vec<f64>, cov: Vec<f64>) -> Gaussian {
    let dim = mean.len();
    Gaussian { mean, cov, dim }
}

fn diagonal(d: &[f64]) -> Vec<f64> {
    let n = d.len();
    (0..n * n)
        .map(|k| if k / n == k % n { d[k / n] } else { 0.0 })
        .collect()
}

#[test]
fn jacobi_reconstructs_random_symmetric_matrices() {
    let mut rng = StdRng::seed_from_u64(1);
    for n in 1..=20 {
        let a = random_symmetric(&mut rng, n);
        let (w, v) = symmetric_eigen(&a, n);
        let rebuilt = matmul(&matmul(&v, &diagonal(&w), n), &transpose(&v, n), n);
        let vtv = matmul(&transpose(&v, n), &v, n);
        for k in 0..n * n {
            assert!(
                (rebuilt[k] - a[k]).abs() < 1e-9,
                "n={n}: A[{k}] {} vs {}",
                rebuilt[k],
                a[k]
            );
            let id = if k / n == k % n { 1.0 } else { 0.0 };
            assert!((vtv[k] - id).abs() < 1e-9, "n={n}: V^T V[{k}] = {}", vtv[k]);
        }
    }
}

#[test]
fn jacobi_known_eigenvalues() {
    let (mut w, _) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
    w.sort_by(f64::total_cmp);
    assert!((w[0] - 1.0).abs() < 1e-12 && (w[1] - 3.0).abs() < 1e-12, "{w:?}");
    let (w, _) = symmetric_eigen(&diagonal(&[4.0, -1.0, 0.0, 7.5]), 4);
    assert_eq!(w, vec![4.0, -1.0, 0.0, 7.5]);
    // [[4, 1, 0], [1, 4, 1], [0, 1, 4]]: 4 - sqrt 2, 4, 4 + sqrt 2.
    let (mut w, _) = symmetric_eigen(&[4.0, 1.0, 0.0, 1.0, 4.0, 1.0, 0.0, 1.0, 4.0], 3);
    w.sort_by(f64::total_cmp);
    let r2 = 2f64.sqrt();
    for (got, want) in w.iter().zip([4.0 - r2, 4.0, 4.0 + r2]) {
        assert!((got - want).abs() < 1e-12, "{w:?}");
    }
}

#[test]
fn frechet_identical_gaussians_is_zero() {
    let mut rng = StdRng::seed_from_u64(2);
    let n = 16;
    let g = gaussian(
        (0..n).map(|_| rng.gen_range(-2.0..2.0)).collect(),
        random_spd(&mut rng, n),
    );
    let scale: f64 = (0..n).map(|i| g.cov[i * n + i]).sum();
    assert!(
        frechet_distance(&g, &g) <= 1e-6 * scale,
        "{}",
        frechet_distance(&g, &g)
    );
}

#[test]
fn frechet_one_dimensional_closed_form() {
    for (m1, s1, m2, s2) in [(0.0, 1.0, 0.0, 1.0), (1.0, 2.0, -0.5, 0.5), (3.0, 0.1, 3.0, 4.0)] {
        let d = frechet_distance(
            &gaussian(vec![m1], vec![s1 * s1]),
            &gaussian(vec![m2], vec![s2 * s2]),
        );
        let want: f64 = (m1 - m2) * (m1 - m2) + s1 * s1 + s2 * s2 - 2.0 * s1 * s2;
        assert!((d - want).abs() < 1e-12 * (1.0 + want), "{d} vs {want}");
    }
}

#[test]
fn frechet_diagonal_is_sum_of_one_dimensional() {
    let mut rng = StdRng::seed_from_u64(3);
    let n = 8;
    let (m1, m2): (Vec<f64>, Vec<f64>) = (0..n)
        .map(|_| (rng.gen_range(-1.0..1.0), rng.gen_range(-1.0..1.0)))
        .unzip();
    let (s1, s2): (Vec<f64>, Vec<f64>) = (0..n)
        .map(|_| (rng.gen_range(0.1..2.0), rng.gen_range(0.1..2.0)))
        .unzip();
    let var = |s: &[f64]| diagonal(&s.iter().map(|x| x * x).collect::<Vec<_>>());
    let d = frechet_distance(&gaussian(m1.clone(), var(&s1)), &gaussian(m2.clone(), var(&s2)));
    let want: f64 = (0..n)
        .map(|i| (m1[i] - m2[i]).powi(2) + (s1[i] - s2[i]).powi(2))
        .sum();
    assert!((d - want).abs() < 1e-10 * (1.0 + want), "{d} vs {want}");
}

#[test]
fn frechet_rotation_invariant_symmetric_non_negative() {
    let mut rng = StdRng::seed_from_u64(4);
    let n = 12;
    let a = gaussian(
        (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        random_spd(&mut rng, n),
    );
    let b = gaussian(
        (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        random_spd(&mut rng, n),
    );
    let q = random_orthogonal(&mut rng, n);
    let rotate = |g: &Gaussian| {
        let mean = (0..n)
            .map(|i| (0..n).map(|k| q[i * n + k] * g.mean[k]).sum())
            .collect();
        gaussian(mean, matmul(&matmul(&q, &g.cov, n), &transpose(&q, n), n))
    };
    let d = frechet_distance(&a, &b);
    let rotated = frechet_distance(&rotate(&a), &rotate(&b));
    assert!(d > 0.0);
    assert!((d - rotated).abs() < 1e-9 * d, "{d} vs rotated {rotated}");
    assert!((d - frechet_distance(&b, &a)).abs() < 1e-9 * d, "not symmetric");
}

#[test]
fn fit_gaussian_matches_naive_two_loop() {
    let mut rng = StdRng::seed_from_u64(5);
    let (n, dim) = (37, 5);
    let x: Vec<f32> = (0..n * dim).map(|_| rng.gen_range(-3.0..3.0)).collect();
    let g = fit_gaussian(&x, n, dim);
    for i in 0..dim {
        let mi: f64 = (0..n).map(|r| f64::from(x[r * dim + i])).sum::<f64>() / n as f64;
        assert!((g.mean[i] - mi).abs() < 1e-12);
        for j in 0..dim {
            let mj: f64 = (0..n).map(|r| f64::from(x[r * dim + j])).sum::<f64>() / n as f64;
            let c: f64 = (0..n)
                .map(|r| (f64::from(x[r * dim + i]) - mi) * (f64::from(x[r * dim + j]) - mj))
                .sum::<f64>()
                / (n - 1) as f64;
            assert!((g.cov[i * dim + j] - c).abs() < 1e-12, "cov[{i}][{j}]");
        }
    }
}

#[test]
fn confident_fraction_on_hand_made_rows() {
    let probs = [
        0.95, 0.05, 0.0, // confident
        0.5, 0.5, 0.0, // not
        0.0, 0.0, 1.0, // confident
        0.9, 0.1, 0.0, // exactly the threshold: not
    ];
    assert_eq!(confident_fraction(&probs, 3, 0.9), 0.5);
    assert_eq!(confident_fraction(&[], 3, 0.9), 0.0);
    assert_eq!(predicted_classes(&probs, 3), vec![0, 0, 2, 0]);
}

#[test]
fn frechet_128_is_fast() {
    let mut rng = StdRng::seed_from_u64(6);
    let n = 128;
    let a = gaussian(vec![0.0; n], random_spd(&mut rng, n));
    let b = gaussian(vec![0.5; n], random_spd(&mut rng, n));
    let start = Instant::now();
    let d = frechet_distance(&a, &b);
    let elapsed = start.elapsed();
    println!("128x128 Frechet distance {d:.4} in {elapsed:?}");
    assert!(elapsed.as_secs_f64() < 1.0, "{elapsed:?}");
}

/// The first `n` MNIST test images from `start` as a `[n, 1, 28, 28]` tensor, and labels.
fn test_images(start: usize, n: usize) -> (Tensor, Vec<usize>) {
    let data =
        load_mnist(MNIST_DIR, Split::Test).unwrap_or_else(|e| panic!("MNIST test set at {MNIST_DIR}: {e}"));
    let indices: Vec<usize> = (start..start + n).collect();
    let (x, labels) = data.batch(&indices).unwrap();
    (x, labels.expect("MNIST has labels"))
}

#[test]
fn embedded_classifier_on_mnist_test() {
    let model = embedded_classifier().unwrap();
    let (x, labels) = test_images(0, 2000);
    let out = classify(&model, &x, 250).unwrap();
    assert_eq!(
        (out.n, out.features.len(), out.probs.len()),
        (2000, 2000 * 128, 2000 * CLASSES)
    );
    assert!(out.features.iter().all(|&f| f >= 0.0), "features after a ReLU");
    let predicted = predicted_classes(&out.probs, CLASSES);
    let correct = predicted.iter().zip(&labels).filter(|(p, l)| p == l).count();
    let accuracy = correct as f64 / 2000.0;
    let confident = confident_fraction(&out.probs, CLASSES, 0.9);
    println!("accuracy {accuracy:.4}, confident fraction {confident:.4}");
    assert!(accuracy >= 0.98, "accuracy {accuracy}");
    assert!(confident >= 0.95, "confident fraction {confident}");
}

#[test]
fn frechet_calibration_real_versus_noise() {
    let model = embedded_classifier().unwrap();
    let features = |x: &Tensor| {
        let c = classify(&model, x, 250).unwrap();
        fit_gaussian(&c.features, c.n, 128)
    };
    let real_a = features(&test_images(0, 1000).0);
    let real_b = features(&test_images(1000, 1000).0);
    let mut rng = StdRng::seed_from_u64(7);
    let noise: Vec<f32> = (0..1000 * 784).map(|_| rng.gen_range(-1.0..=1.0)).collect();
    let noise = features(&Tensor::from_vec(noise, &[1000, 1, 28, 28]).unwrap());
    let real_real = frechet_distance(&real_a, &real_b);
    let real_noise = frechet_distance(&real_a, &noise);
    println!("Frechet distance: test vs test {real_real:.4}, test vs noise {real_noise:.4}");
    assert!(real_real * 10.0 < real_noise, "{real_real} vs {real_noise}");
}
