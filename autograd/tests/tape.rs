//! The tape's behaviour: accumulation, freeing, no-grad scopes, detach, errors.

use autograd::{clear_tape, no_grad, tape_len, Parameter, Var};
use tensor::Tensor;

fn vec3(a: f32, b: f32, c: f32) -> Tensor {
    Tensor::from_vec(vec![a, b, c], &[3]).unwrap()
}

#[test]
fn a_value_used_twice_gets_the_sum_of_both_gradients() {
    // y = sum(x * x + 3 x): dy/dx = 2x + 3, reached along two paths.
    let x = Var::leaf(vec3(1.0, -2.0, 0.5));
    let y = x
        .mul(&x)
        .unwrap()
        .add(&x.mul_scalar(3.0))
        .unwrap()
        .sum_all()
        .unwrap();
    y.backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec(), vec![5.0, -1.0, 4.0]);
}

#[test]
fn backward_empties_the_tape_and_parameters_accumulate_until_zeroed() {
    let p = Parameter::new(vec3(1.0, 2.0, 3.0));
    for step in 1..=2 {
        let loss = p.var().mul_scalar(2.0).sum_all().unwrap();
        assert_eq!(tape_len(), 2);
        loss.backward().unwrap();
        assert_eq!(tape_len(), 0);
        assert_eq!(p.grad().unwrap().to_vec(), vec![2.0 * step as f32; 3]);
    }
    p.zero_grad();
    assert!(p.grad().is_none());
}

#[test]
fn no_grad_records_nothing_and_detach_cuts_the_graph() {
    let x = Var::leaf(vec3(1.0, 2.0, 3.0));
    let y = no_grad(|| x.exp().sum_all().unwrap());
    assert_eq!(tape_len(), 0);
    assert!(!y.requires_grad());
    assert!(y.backward().is_err());

    // z = sum(detach(x) * x): only the second factor carries a gradient, dz/dx = x.
    let z = x.detach().mul(&x).unwrap().sum_all().unwrap();
    z.backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec(), vec![1.0, 2.0, 3.0]);
}

#[test]
fn constants_do_not_touch_the_tape() {
    let a = Var::constant(vec3(1.0, 2.0, 3.0));
    let b = a.mul(&a).unwrap().exp();
    assert_eq!(tape_len(), 0);
    assert!(!b.requires_grad());
}

#[test]
fn saved_tensors_are_freed_by_backward_and_by_clear_tape() {
    // mul saves both inputs on the tape; after backward only our own handles remain.
    let x = Var::leaf(vec3(1.0, 2.0, 3.0));
    let before = x.value().storage_share_count();
    let y = x.mul(&x).unwrap().sum_all().unwrap();
    assert!(x.value().storage_share_count() > before);
    y.backward().unwrap();
    assert_eq!(x.value().storage_share_count(), before);

    let abandoned = x.exp().mul(&x).unwrap();
    assert!(tape_len() > 0 && x.value().storage_share_count() > before);
    clear_tape();
    assert_eq!(tape_len(), 0);
    assert_eq!(x.value().storage_share_count(), before);
    drop(abandoned);
}

#[test]
fn rules_keep_only_the_operand_values_their_gradients_read() {
    // A value is kept by a rule only while it is on the tape: the handle count
    // of its storage goes up by the rule's copy. `x + y` and `x - y` read neither
    // value; `x * c`, `x / c` and `x @ c` with a constant `c` read `c` only.
    // Each value below starts with one handle, its own `Var`'s.
    let kept = |v: &Var| v.value().storage_share_count() > 1;
    let x = Var::leaf(vec3(1.0, 2.0, 3.0));
    let y = Var::leaf(vec3(4.0, 5.0, 6.0));
    let c = Var::constant(vec3(0.5, 2.0, 4.0));
    assert!(!kept(&x) && !kept(&y) && !kept(&c));
    type Op = fn(&Var, &Var) -> tensor::Result<Var>;
    for (name, op) in [("add", Var::add as Op), ("sub", Var::sub)] {
        let z = op(&x, &y).unwrap();
        assert!(!kept(&x) && !kept(&y), "{name} kept an operand");
        z.sum_all().unwrap().backward().unwrap();
    }
    for (name, op) in [("mul", Var::mul as Op), ("div", Var::div)] {
        let z = op(&x, &c).unwrap();
        assert!(!kept(&x), "{name} kept x, which no gradient reads");
        assert!(kept(&c), "{name} dropped c, which dx reads");
        z.sum_all().unwrap().backward().unwrap();
        assert!(!kept(&c), "{name}: backward did not free c");
    }
    let (a, m) = (
        Var::leaf(Tensor::from_vec(vec![1.0, 2.0], &[1, 2]).unwrap()),
        Var::constant(Tensor::from_vec(vec![3.0, 4.0], &[2, 1]).unwrap()),
    );
    let z = a.matmul(&m).unwrap();
    assert!(!kept(&a) && kept(&m), "matmul keeps exactly the constant");
    z.sum_all().unwrap().backward().unwrap();
    // And the gradients are still right: d(a m)/da = m^T.
    assert_eq!(a.grad().unwrap().to_vec(), vec![3.0, 4.0]);
}

#[test]
fn backward_needs_a_scalar_or_a_seed_of_the_right_shape() {
    let x = Var::leaf(vec3(1.0, 2.0, 3.0));
    let y = x.mul_scalar(2.0);
    let err = y.backward().unwrap_err().to_string();
    assert!(err.contains("scalar"), "{err}");
    assert!(y.backward_with(Tensor::ones(&[2])).is_err());
    y.backward_with(vec3(1.0, 0.0, -1.0)).unwrap();
    assert_eq!(x.grad().unwrap().to_vec(), vec![2.0, 0.0, -2.0]);
}

#[test]
fn parameter_values_keep_their_shape() {
    let p = Parameter::new(Tensor::zeros(&[2, 2]));
    assert!(p.set_value(Tensor::zeros(&[4])).is_err());
    p.set_value(Tensor::ones(&[2, 2])).unwrap();
    assert_eq!(p.value().to_vec(), vec![1.0; 4]);
    assert!(p.same_as(&p.clone()));
    assert!(!p.same_as(&Parameter::new(Tensor::zeros(&[2, 2]))));
}
