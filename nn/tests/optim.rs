//! Optimisers and training helpers against their closed forms.

use autograd::Parameter;
use nn::optim::{clip_grad_norm, Adam, Ema, LrSchedule, Optimizer, Sgd};
use tensor::Tensor;

fn param(values: &[f32]) -> Parameter {
    Parameter::new(Tensor::from_vec(values.to_vec(), &[values.len()]).unwrap())
}

fn set_grad(p: &Parameter, g: &[f32]) {
    p.set_grad(Some(Tensor::from_vec(g.to_vec(), &[g.len()]).unwrap()))
        .unwrap();
}

fn close(a: &[f32], b: &[f32]) {
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-6 * (1.0 + y.abs()), "{a:?} vs {b:?}");
    }
}

#[test]
fn sgd_momentum_two_steps() {
    let p = param(&[1.0, -1.0]);
    let mut opt = Sgd::new(vec![p.clone()], 0.1, 0.9);
    set_grad(&p, &[1.0, 2.0]);
    opt.step().unwrap(); // v = g; p -= 0.1 g
    close(&p.value().to_vec(), &[0.9, -1.2]);
    opt.step().unwrap(); // v = 0.9 g + g = 1.9 g
    close(&p.value().to_vec(), &[0.9 - 0.19, -1.2 - 0.38]);
}

#[test]
fn adam_first_step_moves_by_lr_times_the_sign() {
    // Step 1: m^ = g and v^ = g^2, so the update is lr g / (|g| + eps).
    let p = param(&[0.5, 0.5, 0.5]);
    let mut opt = Adam::new(vec![p.clone()], 0.01);
    set_grad(&p, &[3.0, -0.2, 0.0]);
    opt.step().unwrap();
    close(&p.value().to_vec(), &[0.49, 0.51, 0.5]);
    // Step 2 with the same gradient: m = (1-b1^2) g after correction = g again.
    opt.step().unwrap();
    close(&p.value().to_vec(), &[0.48, 0.52, 0.5]);
    assert_eq!(opt.steps(), 2);
}

#[test]
fn adamw_shrinks_the_weights_directly_and_adam_adds_l2_to_the_gradient() {
    let p = param(&[2.0]);
    let mut w = Adam::adamw(vec![p.clone()], 0.1, 0.5);
    set_grad(&p, &[1.0]);
    w.step().unwrap(); // p = 2 (1 - 0.05) - 0.1 = 1.8
    close(&p.value().to_vec(), &[1.8]);

    let q = param(&[2.0]);
    let mut l2 = Adam::new(vec![q.clone()], 0.1);
    l2.weight_decay = 0.5;
    set_grad(&q, &[-0.5]); // g + wd p = -0.5 + 1 = 0.5 > 0: moves down by lr
    l2.step().unwrap();
    close(&q.value().to_vec(), &[1.9]);
}

#[test]
fn adam_state_round_trips() {
    let p = param(&[1.0, 2.0]);
    let mut a = Adam::new(vec![p.clone()], 0.1);
    set_grad(&p, &[0.3, -0.7]);
    a.step().unwrap();
    let (t, moments) = a.state().unwrap();
    let q = param(&[1.0, 2.0]);
    let mut b = Adam::new(vec![q.clone()], 0.1);
    b.load_state(t, moments).unwrap();
    q.set_value(p.value()).unwrap();
    set_grad(&p, &[0.1, 0.1]);
    set_grad(&q, &[0.1, 0.1]);
    a.step().unwrap();
    b.step().unwrap();
    assert_eq!(p.value().to_vec(), q.value().to_vec());
    assert!(b.load_state(1, vec![]).is_err());
}

#[test]
fn clipping_scales_to_the_max_norm_and_reports_the_old_norm() {
    let (a, b) = (param(&[0.0; 2]), param(&[0.0]));
    set_grad(&a, &[3.0, 0.0]);
    set_grad(&b, &[4.0]);
    let norm = clip_grad_norm(&[a.clone(), b.clone()], 1.0).unwrap();
    assert!((norm - 5.0).abs() < 1e-6);
    close(&a.grad().unwrap().to_vec(), &[0.6, 0.0]);
    close(&b.grad().unwrap().to_vec(), &[0.8]);
    // Below the threshold nothing changes; NaN is reported and left alone.
    assert!((clip_grad_norm(std::slice::from_ref(&b), 10.0).unwrap() - 0.8).abs() < 1e-6);
    set_grad(&b, &[f32::NAN]);
    assert!(clip_grad_norm(std::slice::from_ref(&b), 1.0).unwrap().is_nan());
}

#[test]
fn warmup_then_cosine() {
    let s = LrSchedule {
        base: 1.0,
        warmup: 4,
        total: Some(14),
        min: 0.1,
    };
    close(&[s.at(0), s.at(1), s.at(3)], &[0.25, 0.5, 1.0]);
    close(&[s.at(4)], &[1.0]);
    close(&[s.at(9)], &[0.1 + 0.9 * 0.5]); // halfway: cos(pi/2) = 0
    close(&[s.at(14), s.at(100)], &[0.1, 0.1]);
    let constant = LrSchedule {
        base: 2e-4,
        warmup: 0,
        total: None,
        min: 0.0,
    };
    close(&[constant.at(0), constant.at(10_000)], &[2e-4, 2e-4]);
}

#[test]
fn ema_follows_the_spec_decay() {
    let p = param(&[0.0]);
    let mut ema = Ema::new(std::slice::from_ref(&p), 0.999);
    assert!((ema.decay() - 0.1).abs() < 1e-7); // (1 + 0) / (10 + 0)
    p.set_value(Tensor::from_vec(vec![10.0], &[1]).unwrap()).unwrap();
    ema.update(std::slice::from_ref(&p)).unwrap(); // 0.1 * 0 + 0.9 * 10
    close(&ema.shadow()[0].to_vec(), &[9.0]);
    assert!((ema.decay() - 2.0 / 11.0).abs() < 1e-7);
    assert_eq!(ema.updates(), 1);
    let mut late = Ema::new(std::slice::from_ref(&p), 0.999);
    late.load(vec![Tensor::zeros(&[1])], 1_000_000).unwrap();
    assert!((late.decay() - 0.999).abs() < 1e-7);
    let q = param(&[5.0]);
    ema.copy_to(std::slice::from_ref(&q)).unwrap();
    close(&q.value().to_vec(), &[9.0]);
    assert!(late.load(vec![], 0).is_err());
}
