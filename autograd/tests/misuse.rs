//! Backward on a value whose graph is gone is an error that changes nothing, and
//! the right way to train on two losses (sum them, one backward) gives the sum of
//! their separate gradients.

use autograd::gradcheck::{check_gradients, Tolerance};
use autograd::{clear_tape, no_grad, tape_len, Parameter, Var};
use tensor::Tensor;

fn t(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(data.to_vec(), shape).unwrap()
}

/// Asserts `r` is the "already consumed" error and returns its message.
fn consumed(r: tensor::Result<()>) -> String {
    let err = r.unwrap_err().to_string();
    assert!(err.starts_with("backward: "), "{err}");
    assert!(
        err.contains("already consumed by an earlier backward() or clear_tape()"),
        "{err}"
    );
    assert!(err.contains("recompute the forward pass"), "{err}");
    err
}

#[test]
fn a_second_backward_on_the_same_loss_errs_and_keeps_the_first_gradients() {
    let p = Parameter::new(t(&[1.0, -2.0], &[2]));
    let loss = p.var().square().sum_all().unwrap();
    loss.backward().unwrap();
    let err = consumed(loss.backward());
    assert!(err.contains("the graph of this value"), "{err}");
    // d sum(p^2) / dp = 2p, once: the failed call added nothing.
    assert_eq!(p.grad().unwrap().to_vec(), vec![2.0, -4.0]);
}

#[test]
fn backward_after_clear_tape_errs_and_leaves_no_gradient() {
    let p = Parameter::new(t(&[0.5, 3.0], &[2]));
    let loss = p.var().exp().sum_all().unwrap();
    clear_tape();
    consumed(loss.backward());
    assert!(p.grad().is_none());
}

#[test]
fn backward_of_one_loss_after_another_consumed_the_shared_tape_errs() {
    let p = Parameter::new(t(&[1.0, 2.0, 3.0], &[3]));
    let a = p.var().mul_scalar(3.0).sum_all().unwrap();
    let b = p.var().square().sum_all().unwrap();
    b.backward().unwrap();
    assert_eq!(tape_len(), 0);
    consumed(a.backward());
    // Only b's gradient, 2p, reached the parameter.
    assert_eq!(p.grad().unwrap().to_vec(), vec![2.0, 4.0, 6.0]);
}

#[test]
fn a_value_built_from_an_intermediate_of_a_consumed_pass_errs_and_keeps_the_tape() {
    let p = Parameter::new(t(&[1.0, -1.0], &[2]));
    let h = p.var().mul_scalar(2.0);
    h.sum_all().unwrap().backward().unwrap();
    assert_eq!(p.grad().unwrap().to_vec(), vec![2.0, 2.0]);
    // Its own op (exp, sum) is on the tape, but h's (mul_scalar) is gone.
    let stale = h.exp().sum_all().unwrap();
    let ops = tape_len();
    assert_eq!(ops, 2);
    let err = consumed(stale.backward());
    assert!(err.contains("an intermediate it was computed from"), "{err}");
    assert_eq!(tape_len(), ops, "a failed backward leaves the tape alone");
    assert_eq!(p.grad().unwrap().to_vec(), vec![2.0, 2.0]);
    clear_tape();
}

#[test]
fn a_leaf_has_no_graph_to_consume_and_a_constant_has_nothing_to_differentiate() {
    let x = Var::leaf(t(&[1.0], &[1]));
    x.backward().unwrap();
    x.backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec(), vec![2.0]);

    let p = Parameter::new(t(&[1.0], &[1]));
    let loss = no_grad(|| p.var().exp().sum_all().unwrap());
    let err = loss.backward().unwrap_err().to_string();
    assert!(
        err.contains("does not depend on anything that needs a gradient"),
        "{err}"
    );
    assert!(err.contains("no_grad"), "{err}");
    assert!(p.grad().is_none());
}

/// The model `y = tanh(x w + b)` on a 2x2 batch `x`.
fn model(w: &Var, b: &Var, x: &[f32]) -> Var {
    Var::constant(t(x, &[2, 2]))
        .matmul(w)
        .unwrap()
        .add(b)
        .unwrap()
        .tanh()
}

/// Two losses on the model's two batches: `A = sum(y1^2)` and `B = sum(3 y2)`.
fn losses(w: &Var, b: &Var) -> (Var, Var) {
    let a = model(w, b, &[1.0, -0.5, 0.25, 2.0]).square().sum_all().unwrap();
    let b = model(w, b, &[-1.5, 0.5, 1.0, 0.75])
        .mul_scalar(3.0)
        .sum_all()
        .unwrap();
    (a, b)
}

/// Takes the parameters' gradients, zeroing them.
fn take_grads(params: &[&Parameter]) -> Vec<Vec<f32>> {
    let g = params.iter().map(|p| p.grad().unwrap().to_vec()).collect();
    params.iter().for_each(|p| p.zero_grad());
    g
}

#[test]
fn two_losses_summed_into_one_backward_get_the_sum_of_their_separate_gradients() {
    let w = Parameter::new(t(&[0.3, -0.7, 0.5, 0.2, 0.1, -0.4], &[2, 3]));
    let b = Parameter::new(t(&[0.05, -0.1, 0.2], &[3]));
    let params = [&w, &b];
    // Each loss alone, from its own forward pass.
    losses(&w.var(), &b.var()).0.backward().unwrap();
    let ga = take_grads(&params);
    losses(&w.var(), &b.var()).1.backward().unwrap();
    let gb = take_grads(&params);
    // Both from one forward pass: summed, one backward.
    let (la, lb) = losses(&w.var(), &b.var());
    la.add(&lb).unwrap().backward().unwrap();
    let both = take_grads(&params);
    for (i, name) in ["w", "b"].iter().enumerate() {
        for j in 0..both[i].len() {
            let want = ga[i][j] + gb[i][j];
            assert!(
                (both[i][j] - want).abs() < 1e-6,
                "{name}[{j}]: {} vs {want}",
                both[i][j]
            );
        }
    }
    // And that sum is the true gradient of A + B: central differences agree.
    let f = |v: &[Var]| {
        let (la, lb) = losses(&v[0], &v[1]);
        la.add(&lb)
    };
    check_gradients(f, &[w.value(), b.value()], Tolerance::default())
        .unwrap()
        .unwrap();
}
