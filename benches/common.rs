//! What the benchmarks share: the shapes they time, seeded random inputs, and
//! bare `matrixmultiply::sgemm` as the reference.

use rand::SeedableRng;
use tensor::Tensor;

/// The products timed: squares, then the U-Net's three im2col shapes.
pub const MATMUL_SHAPES: [(usize, usize, usize); 8] = [
    (128, 128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (32, 288, 50176),
    (64, 576, 12544),
    (64, 576, 3136),
];

/// A tensor of `shape` with elements uniform in `[-1, 1)`, seeded.
pub fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Tensor::rand_uniform(shape, -1.0, 1.0, &mut rng).expect("valid interval")
}

/// Bare `matrixmultiply::sgemm` on dense row-major operands: the reference.
pub fn raw_sgemm(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n);
    // SAFETY: the assert above shows that A (m x k, strides (k, 1)), B (k x n,
    // strides (n, 1)) and C (m x n, strides (n, 1)) lie inside their slices;
    // C is a unique borrow, so it aliases neither A nor B nor itself.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}
