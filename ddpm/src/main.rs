//! The `ddpm` program. `cargo run -p ddpm --release` trains on the embedded MNIST
//! subset and writes a grid of samples; `ddpm --help` lists the commands.

/// Keeps freed activation buffers in the process instead of returning them to
/// the kernel.
///
/// A training step allocates and frees hundreds of megabytes of tensors. glibc
/// serves each large allocation with a fresh `mmap` and unmaps it on free, so
/// every step faults in (and the kernel zeroes) every page again: about 150,000
/// page faults a step for `mnist-small`. Raising the mmap and trim thresholds
/// makes glibc reuse its heap instead, the poor man's version of the caching
/// allocators of PyTorch and friends. Peak memory is unchanged: it is the same
/// memory, kept rather than returned.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // SAFETY: `mallopt` is glibc's documented, thread-safe tuning call; it takes
    // two integers, touches no memory of ours, and the values are in range
    // (M_MMAP_THRESHOLD accepts up to HEAP_MAX_SIZE / 2 = 32 MiB on 64-bit).
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() {
    keep_freed_memory();
    ddpm::app::main()
}
