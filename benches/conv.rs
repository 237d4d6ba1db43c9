//! Criterion benchmarks of the 2-D convolution: forward, and forward + backward
//! (`conv2d` then `conv2d_backward` with the input gradient), on the five 3x3, stride 1,
//! padding 1 layers of the performance targets, at 1 thread and at all cores (one rayon pool
//! per thread count).
//!
//! Throughput is set to the flop count (`2 B Cout H W Cin 9` forward, three times
//! that forward + backward), so criterion's "elem/s" reads as flop/s.
//!
//! ```text
//! cargo bench --bench conv
//! cargo bench --bench conv -- conv_fwd/t1
//! ```

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tensor::conv::{conv2d_backward, Conv2dParams};
use tensor::Tensor;

/// `(B, Cin, H = W, Cout)` of each benchmarked layer.
const SHAPES: [(usize, usize, usize, usize); 5] = [
    (64, 32, 28, 32),
    (64, 64, 14, 64),
    (64, 64, 7, 64),
    (64, 96, 28, 32),
    (64, 32, 14, 64),
];

const PARAMS: Conv2dParams = Conv2dParams {
    stride: 1,
    padding: 1,
};

/// Thread counts to run at: 1 and all cores (once when there is one core).
fn thread_counts() -> Vec<usize> {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    if all > 1 {
        vec![1, all]
    } else {
        vec![1]
    }
}

/// A tensor of `shape` with deterministic pseudo-random values in `[-scale, scale)`.
fn filled(shape: &[usize], seed: u32, scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n as u32)
        .map(|i| {
            ((i.wrapping_mul(2654435761) ^ seed) >> 8) as f32 / (1u32 << 24) as f32 * 2.0 * scale - scale
        })
        .collect();
    Tensor::from_vec(data, shape).unwrap()
}

fn bench_conv(c: &mut Criterion) {
    for threads in thread_counts() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for &(b, cin, hw, cout) in &SHAPES {
            let x = filled(&[b, cin, hw, hw], 1, 1.0);
            let w = filled(&[cout, cin, 3, 3], 2, 0.1);
            let bias = Tensor::zeros(&[cout]);
            let flops = 2 * (b * cout * hw * hw * cin * 9) as u64;
            let name = format!("{b}x{cin}x{hw}x{hw}->{cout}");

            let mut fwd = c.benchmark_group("conv_fwd");
            fwd.sample_size(10)
                .measurement_time(Duration::from_secs(2))
                .warm_up_time(Duration::from_millis(500));
            fwd.throughput(Throughput::Elements(flops));
            fwd.bench_function(BenchmarkId::new(format!("t{threads}"), &name), |bn| {
                bn.iter(|| pool.install(|| x.conv2d(&w, Some(&bias), PARAMS).unwrap()))
            });
            fwd.finish();

            let mut fb = c.benchmark_group("conv_fwd_bwd");
            fb.sample_size(10)
                .measurement_time(Duration::from_secs(3))
                .warm_up_time(Duration::from_millis(500));
            fb.throughput(Throughput::Elements(3 * flops));
            fb.bench_function(BenchmarkId::new(format!("t{threads}"), &name), |bn| {
                bn.iter(|| {
                    pool.install(|| {
                        let y = x.conv2d(&w, Some(&bias), PARAMS).unwrap();
                        conv2d_backward(&x, &w, &y, PARAMS, true).unwrap()
                    })
                })
            });
            fb.finish();
        }
    }
}

criterion_group!(benches, bench_conv);
criterion_main!(benches);
