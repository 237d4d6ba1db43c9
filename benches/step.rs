//! Criterion benchmarks of one whole `mnist-small` training step (batch 64: the
//! batch, the loss, backward, clip, Adam, EMA) and one sampling step (a batch-64
//! network evaluation under `no_grad`), on the default rayon pool (all cores; set
//! `RAYON_NUM_THREADS` for fewer). Throughput is in images.
//!
//! ```text
//! cargo bench --bench step
//! RAYON_NUM_THREADS=1 cargo bench --bench step -- train_step
//! ```
//!
//! (Not one pool per thread count as the conv bench does: a model's parameters
//! live on the thread that builds its forward pass, so the step cannot be moved
//! into a pool; the process-wide pool is the one the `ddpm` program uses.)

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "unet_step.rs"]
mod unet_step;
use unet_step::{SampleBench, TrainBench};

const CONFIG: &str = "mnist-small";
const BATCH: usize = 64;

fn bench_steps(c: &mut Criterion) {
    ddpm::app::keep_freed_memory();
    let mut group = c.benchmark_group("unet");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(BATCH as u64));
    let mut train = TrainBench::new(CONFIG, BATCH);
    group.bench_function(format!("train_step/{CONFIG}/b{BATCH}"), |b| {
        b.iter(|| train.step())
    });
    let sample = SampleBench::new(CONFIG, BATCH);
    group.bench_function(format!("sample_step/{CONFIG}/b{BATCH}"), |b| {
        b.iter(|| sample.step())
    });
    group.finish();
}

criterion_group!(benches, bench_steps);
criterion_main!(benches);
