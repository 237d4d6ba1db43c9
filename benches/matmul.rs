//! Criterion bench: `Tensor::matmul` throughput in GFLOP/s (criterion's
//! "elements" are flops), at 1 thread and at all cores, beside bare
//! `matrixmultiply::sgemm` on one thread. Shapes: squares 128..2048 and the
//! U-Net's three im2col products. `cargo bench --bench matmul`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

#[path = "common.rs"]
mod common;
use common::{random, raw_sgemm, MATMUL_SHAPES};

fn bench(c: &mut Criterion) {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut group = c.benchmark_group("matmul");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for &(m, k, n) in &MATMUL_SHAPES {
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
