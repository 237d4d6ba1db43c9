//! The per-op profiler: what it counts, and that it counts nothing when off.

use std::time::Duration;

use autograd::profile::{self, ACCUMULATE};
use autograd::{no_grad, Var};
use tensor::Tensor;

fn square(n: usize) -> Tensor {
    Tensor::from_vec((0..n * n).map(|i| (i % 7) as f32 * 0.1).collect(), &[n, n]).unwrap()
}

#[test]
fn each_op_kind_gets_its_calls_its_forward_and_its_backward() {
    let w = Var::leaf(square(32));
    let x = Var::constant(square(32));
    profile::start();
    // w is read twice, so its gradient is accumulated from two rules.
    let h = x.matmul(&w).unwrap().matmul(&w).unwrap();
    let loss = h.add(&h).unwrap().sum_all().unwrap();
    profile::lap("(between)");
    loss.backward().unwrap();
    let p = profile::finish();
    assert_eq!(p["matmul"].calls, 2);
    assert_eq!(p["add"].calls, 1);
    assert_eq!(p["sum"].calls, 1);
    assert_eq!(p["(between)"].calls, 1);
    for op in ["matmul", "add", "sum"] {
        assert!(p[op].forward > Duration::ZERO, "{op} forward timed");
        assert!(p[op].backward > Duration::ZERO, "{op} backward timed");
    }
    assert_eq!(p["(between)"].backward, Duration::ZERO, "a lap has no backward");
    assert!(
        p[ACCUMULATE].backward > Duration::ZERO,
        "w's two gradients were added"
    );
    assert!(!profile::is_on());
}

#[test]
fn no_grad_ops_are_timed_too_and_nothing_is_collected_when_off() {
    let x = Var::constant(square(16));
    x.matmul(&x).unwrap(); // profiling is off: not counted
    profile::start();
    no_grad(|| x.matmul(&x).unwrap());
    let p = profile::finish();
    assert_eq!(p["matmul"].calls, 1);
    assert_eq!(p["matmul"].backward, Duration::ZERO);
    assert_eq!(p.len(), 1, "{p:?}");
    x.matmul(&x).unwrap();
    profile::lap("(off)");
    assert!(profile::finish().is_empty(), "finish after finish holds nothing");
}
