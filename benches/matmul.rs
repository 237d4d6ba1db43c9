//! Criterion bench: `Tensor::matmul` throughput in GFLOP/s (criterion's
//! "elements" are flops), at 1 thread and at all cores, beside bare
//! `matrixmultiply::sgemm` on one thread. Shapes: squares 128..2048 and the
//! U-Net's three im2col products. `cargo bench --bench matmul`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::SeedableRng;
use std::time::Duration;
use tensor::Tensor;

const SHAPES: [(usize, usize, usize); 8] = [
    (128, 128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (32, 288, 50176),
    (64, 576, 12544),
    (64, 576, 3136),
];

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Tensor::rand_uniform(shape, -1.0, 1.0, &mut rng).expect("valid interval")
}

fn raw_sgemm(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n);
    // SAFETY: the assert shows the dense row-major A (m x k), B (k x n) and
    // C (m x n) lie inside their slices; C is a unique borrow.
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

fn bench(c: &mut Criterion) {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut group = c.benchmark_group("matmul");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for &(m, k, n) in &SHAPES {
        let id = format!("{m}x{k}x{n}");
        group.throughput(Throughput::Elements(2 * (m * k * n) as u64));
        let (a, b) = (random(&[m, k], 1), random(&[k, n], 2));
        let (av, bv) = (a.to_vec(), b.to_vec());
        let mut out = vec![0.0; m * n];
        group.bench_function(BenchmarkId::new("raw_sgemm/t1", &id), |bench| {
            bench.iter(|| raw_sgemm(&av, &bv, &mut out, m, k, n))
        });
        for threads in [1, all] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            group.bench_function(BenchmarkId::new(format!("ours/t{threads}"), &id), |bench| {
                pool.install(|| bench.iter(|| a.matmul(&b).expect("shapes agree")))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
