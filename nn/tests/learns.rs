//! Proof that the stack learns: an MLP separates two spirals, and a few Adam
//! steps lower the loss of a tiny conv net on a fixed batch.

use autograd::Var;
use nn::init::Init;
use nn::layers::{Conv2d, Linear};
use nn::optim::{Adam, Optimizer};
use nn::Module;
use rand::{Rng, SeedableRng};
use tensor::conv::Conv2dParams;
use tensor::Tensor;

/// Two interleaved spirals, `n` points each, labels 0 and 1.
fn spirals(n: usize, rng: &mut impl Rng) -> (Tensor, Vec<usize>) {
    let mut xy = Vec::with_capacity(4 * n);
    let mut labels = Vec::with_capacity(2 * n);
    for class in 0..2 {
        for i in 0..n {
            let r = i as f32 / n as f32;
            let t = 1.75 * r * 2.0 * std::f32::consts::PI + class as f32 * std::f32::consts::PI;
            xy.push(r * t.sin() + rng.gen_range(-0.02..0.02));
            xy.push(r * t.cos() + rng.gen_range(-0.02..0.02));
            labels.push(class);
        }
    }
    (Tensor::from_vec(xy, &[2 * n, 2]).unwrap(), labels)
}

#[test]
fn an_mlp_separates_two_spirals() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let (x, y) = spirals(100, &mut rng);
    let layers = [
        Linear::new(2, 64, Init::KaimingUniform, &mut rng),
        Linear::new(64, 64, Init::KaimingUniform, &mut rng),
        Linear::new(64, 2, Init::KaimingUniform, &mut rng),
    ];
    let forward = |x: &Var| -> autograd::Result<Var> {
        let h = layers[0].forward(x)?.tanh();
        let h = layers[1].forward(&h)?.tanh();
        layers[2].forward(&h)
    };
    let params: Vec<_> = layers
        .iter()
        .flat_map(|l| l.parameters())
        .map(|(_, p)| p)
        .collect();
    let mut opt = Adam::new(params, 0.01);
    let input = Var::constant(x);
    for _ in 0..600 {
        opt.zero_grad();
        forward(&input)
            .unwrap()
            .cross_entropy(&y)
            .unwrap()
            .backward()
            .unwrap();
        opt.step().unwrap();
    }
    let logits = autograd::no_grad(|| forward(&input)).unwrap();
    let predicted = logits.value().argmax(1, false).unwrap().to_vec();
    let correct = predicted
        .iter()
        .zip(&y)
        .filter(|(&p, &l)| p as usize == l)
        .count();
    let accuracy = correct as f32 / y.len() as f32;
    assert!(accuracy >= 0.97, "accuracy {accuracy}");
}

#[test]
fn adam_steps_lower_the_loss_of_a_tiny_conv_net() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let p = Conv2dParams {
        stride: 1,
        padding: 1,
    };
    let c1 = Conv2d::new(1, 4, 3, p, Init::KaimingUniform, &mut rng);
    let c2 = Conv2d::new(4, 1, 3, p, Init::KaimingUniform, &mut rng);
    let x = Var::constant(Tensor::rand_normal(&[4, 1, 6, 6], 0.0, 1.0, &mut rng).unwrap());
    // A learnable target: a fixed random "teacher" convolution of the input.
    let teacher = Conv2d::new(1, 1, 3, p, Init::KaimingUniform, &mut rng);
    let target = teacher.forward(&x).unwrap().detach();
    let loss = || {
        c2.forward(&c1.forward(&x).unwrap().silu())
            .unwrap()
            .mse_loss(&target)
            .unwrap()
    };
    let params: Vec<_> = c1
        .parameters()
        .into_iter()
        .chain(c2.parameters())
        .map(|(_, p)| p)
        .collect();
    let mut opt = Adam::new(params, 0.02);
    let first = loss();
    let start = first.value().item().unwrap();
    first.backward().unwrap();
    opt.step().unwrap();
    for _ in 0..30 {
        opt.zero_grad();
        loss().backward().unwrap();
        opt.step().unwrap();
    }
    let end = loss().value().item().unwrap();
    autograd::clear_tape();
    assert!(end < 0.3 * start, "loss went from {start} to {end}");
}
