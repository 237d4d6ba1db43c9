//! Layers against naive references, their names, their initialisers, and their
//! gradients against finite differences.

use autograd::gradcheck::{check_gradients, Tolerance};
use autograd::{Parameter, Result, Var};
use nn::init::Init;
use nn::layers::{Conv2d, Dropout, Embedding, GroupNorm, Linear, SelfAttention, SiLU, Upsample};
use nn::Module;
use rand::SeedableRng;
use tensor::conv::Conv2dParams;
use tensor::Tensor;

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

fn random(shape: &[usize], seed: u64) -> Tensor {
    Tensor::rand_uniform(shape, -1.0, 1.0, &mut rng(seed)).unwrap()
}

fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "element {i}: {x} vs {y}");
    }
}

#[test]
fn linear_is_x_w_transpose_plus_b() {
    let layer = Linear::new(3, 2, Init::KaimingUniform, &mut rng(1));
    let x = random(&[4, 3], 2);
    let y = layer.forward(&Var::constant(x.clone())).unwrap().value().to_vec();
    let (w, b, xv) = (
        layer.weight.value().to_vec(),
        layer.bias.value().to_vec(),
        x.to_vec(),
    );
    let mut want = vec![0.0; 8];
    for i in 0..4 {
        for o in 0..2 {
            want[i * 2 + o] = b[o] + (0..3).map(|k| xv[i * 3 + k] * w[o * 3 + k]).sum::<f32>();
        }
    }
    close(&y, &want, 1e-6);
}

#[test]
fn self_attention_matches_a_naive_loop() {
    let (c, h, w) = (4, 2, 3);
    let attn = SelfAttention::new(c, 2, Init::KaimingUniform, &mut rng(3)).unwrap();
    // Give proj_out a non-zero weight, so the attention path is visible in the output.
    attn.proj_out.weight.set_value(random(&[c, c, 1, 1], 4)).unwrap();
    let x = random(&[1, c, h, w], 5);
    let got = attn.forward(&Var::constant(x.clone())).unwrap().value().to_vec();

    let n = h * w;
    let hn = attn
        .norm
        .forward(&Var::constant(x.clone()))
        .unwrap()
        .value()
        .to_vec();
    let nin = |layer: &Conv2d, input: &[f32]| -> Vec<f32> {
        let (wt, b) = (layer.weight.value().to_vec(), layer.bias.value().to_vec());
        let mut out = vec![0.0; c * n];
        for o in 0..c {
            for p in 0..n {
                out[o * n + p] = b[o] + (0..c).map(|i| wt[o * c + i] * input[i * n + p]).sum::<f32>();
            }
        }
        out
    };
    let (q, k, v) = (nin(&attn.q, &hn), nin(&attn.k, &hn), nin(&attn.v, &hn));
    let mut out = vec![0.0; c * n];
    for i in 0..n {
        let s: Vec<f64> = (0..n)
            .map(|j| {
                (0..c)
                    .map(|ch| (q[ch * n + i] * k[ch * n + j]) as f64)
                    .sum::<f64>()
                    / (c as f64).sqrt()
            })
            .collect();
        let max = s.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = s.iter().map(|x| (x - max).exp()).sum();
        for ch in 0..c {
            out[ch * n + i] = (0..n)
                .map(|j| ((s[j] - max).exp() / z) as f32 * v[ch * n + j])
                .sum();
        }
    }
    let proj = nin(&attn.proj_out, &out);
    let want: Vec<f32> = x.to_vec().iter().zip(&proj).map(|(a, b)| a + b).collect();
    close(&got, &want, 1e-5);
}

#[test]
fn layer_gradients_match_finite_differences() {
    let attn = SelfAttention::new(4, 2, Init::KaimingUniform, &mut rng(6)).unwrap();
    attn.proj_out.weight.set_value(random(&[4, 4, 1, 1], 7)).unwrap();
    let f = |v: &[Var]| -> Result<Var> { attn.forward(&v[0]) };
    assert_eq!(
        check_gradients(f, &[random(&[2, 4, 2, 2], 8)], Tolerance::default()).unwrap(),
        Ok(())
    );

    let conv = Conv2d::new(
        2,
        3,
        3,
        Conv2dParams {
            stride: 2,
            padding: 1,
        },
        Init::KaimingUniform,
        &mut rng(9),
    );
    let gn = GroupNorm::new(1, 3).unwrap();
    let f = |v: &[Var]| -> Result<Var> { SiLU.forward(&gn.forward(&conv.forward(&v[0])?)?) };
    assert_eq!(
        check_gradients(f, &[random(&[2, 2, 5, 4], 10)], Tolerance::default()).unwrap(),
        Ok(())
    );
}

#[test]
fn parameter_names_are_hierarchical() {
    let attn = SelfAttention::new(4, 2, Init::KaimingUniform, &mut rng(1)).unwrap();
    let mut named = Vec::new();
    attn.collect_parameters("mid.attn_1", &mut named);
    let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "mid.attn_1.norm.weight",
            "mid.attn_1.norm.bias",
            "mid.attn_1.q.weight",
            "mid.attn_1.q.bias",
            "mid.attn_1.k.weight",
            "mid.attn_1.k.bias",
            "mid.attn_1.v.weight",
            "mid.attn_1.v.bias",
            "mid.attn_1.proj_out.weight",
            "mid.attn_1.proj_out.bias",
        ]
    );
    // 4 GroupNorm scalars x 2 + 4 nin layers of 4x4 + 4.
    assert_eq!(attn.num_parameters(), 8 + 4 * 20);
    assert_eq!(attn.proj_out.weight.value().to_vec(), vec![0.0; 16]);
}

#[test]
fn initialisers_have_the_stated_bounds_and_variance() {
    let fan_in = 64 * 9;
    let t = Init::KaimingUniform
        .tensor(&[64, 64, 3, 3], fan_in, 64 * 9, &mut rng(2))
        .to_vec();
    let bound = 1.0 / (fan_in as f32).sqrt();
    assert!(t.iter().all(|x| x.abs() <= bound));
    let var = t.iter().map(|x| (x * x) as f64).sum::<f64>() / t.len() as f64;
    let want = (bound * bound / 3.0) as f64; // variance of U(-b, b)
    assert!((var / want - 1.0).abs() < 0.05, "variance {var} vs {want}");
    let vs = Init::VarianceScaling { scale: 1.0 }
        .tensor(&[32, 16], 16, 32, &mut rng(3))
        .to_vec();
    let b = (3.0f32 / 24.0).sqrt();
    assert!(vs.iter().all(|x| x.abs() <= b) && vs.iter().any(|x| x.abs() > 0.9 * b));
    assert!(Init::Zeros
        .tensor(&[3], 1, 1, &mut rng(4))
        .to_vec()
        .iter()
        .all(|&x| x == 0.0));
}

#[test]
fn dropout_is_the_identity_in_evaluation_mode() {
    let d = Dropout::new(0.5, 1).unwrap();
    let x = Var::constant(Tensor::ones(&[100]));
    let train = d.forward(&x).unwrap().value().to_vec();
    assert!(train.contains(&0.0) && train.contains(&2.0));
    d.set_training(false);
    assert_eq!(d.forward(&x).unwrap().value().to_vec(), vec![1.0; 100]);
    assert!(Dropout::new(1.0, 1).is_err());
}

#[test]
fn embedding_and_upsample() {
    let e = Embedding::new(5, 3, &mut rng(1));
    let rows = e.forward(&[4, 0, 4]).unwrap().value().to_vec();
    let table = e.weight.value().to_vec();
    assert_eq!(rows, [&table[12..15], &table[0..3], &table[12..15]].concat());
    assert!(e.forward(&[5]).is_err());
    // A Module now that the trait has no single-input forward to refuse.
    let names: Vec<String> = e.parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight"]);
    assert_eq!(e.num_parameters(), 15);
    let up = Upsample { scale: 2 }
        .forward(&Var::constant(random(&[1, 1, 2, 2], 1)))
        .unwrap();
    assert_eq!(up.shape(), &[1, 1, 4, 4]);
    let p: Vec<(String, Parameter)> = Upsample { scale: 2 }.parameters();
    assert!(p.is_empty());
}

#[test]
fn bad_layer_arguments_are_errors() {
    assert!(GroupNorm::new(3, 8).is_err());
    assert!(GroupNorm::new(0, 8).is_err());
    let attn = SelfAttention::new(4, 2, Init::KaimingUniform, &mut rng(1)).unwrap();
    assert!(attn.forward(&Var::constant(Tensor::zeros(&[4, 4]))).is_err());
    let lin = Linear::new(3, 2, Init::KaimingUniform, &mut rng(1));
    let err = lin
        .forward(&Var::constant(Tensor::zeros(&[2, 4])))
        .unwrap_err()
        .to_string();
    assert!(err.contains("matmul"), "{err}");
}

/// The fused `GroupNorm::forward_silu_dropout` is `Dropout::forward` of
/// `forward_silu`: the same mask (drawn from the layer's generator the same
/// way), the same values, the same gradients; and the identity-dropout in
/// evaluation mode.
#[test]
fn fused_norm_silu_dropout_matches_the_layers_in_sequence() {
    let norm = GroupNorm::new(2, 4).unwrap();
    let x = Tensor::from_vec(
        (0..2 * 4 * 25)
            .map(|i| ((i * 37) % 17) as f32 * 0.3 - 2.0)
            .collect(),
        &[2, 4, 5, 5],
    )
    .unwrap();
    let run = |fused: bool, training: bool| {
        let dropout = Dropout::new(0.4, 9).unwrap();
        dropout.set_training(training);
        let xv = Var::leaf(x.clone());
        let y = if fused {
            norm.forward_silu_dropout(&xv, &dropout).unwrap()
        } else {
            dropout.forward(&norm.forward_silu(&xv).unwrap()).unwrap()
        };
        let r = Tensor::from_vec(
            (0..y.value().numel()).map(|i| (i % 5) as f32 - 2.0).collect(),
            y.shape(),
        )
        .unwrap();
        y.mul(&Var::constant(r))
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        (y.value().to_vec(), xv.grad().unwrap().to_vec())
    };
    for training in [true, false] {
        let (fy, fg) = run(true, training);
        let (uy, ug) = run(false, training);
        assert_eq!(fy, uy, "values, training {training}");
        let dropped = fy.iter().filter(|&&v| v == 0.0).count();
        assert_eq!(dropped > 0, training, "{dropped} dropped, training {training}");
        for (a, b) in fg.iter().zip(&ug) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "gradient {a} vs {b}");
        }
    }
}

/// Under `no_grad` a convolution reuses its prepared weight while the weight is
/// unchanged, and prepares again when the parameter is replaced: its output is
/// always that of the recording forward pass, bit for bit.
#[test]
fn an_inference_convolution_follows_its_weight() {
    let conv = Conv2d::new(
        4,
        5,
        3,
        Conv2dParams {
            stride: 1,
            padding: 1,
        },
        Init::KaimingUniform,
        &mut rng(11),
    );
    let x = Var::constant(random(&[2, 4, 6, 6], 12));
    let recorded = |conv: &Conv2d| conv.forward(&x).unwrap().value().to_vec();
    let inferred = |conv: &Conv2d| autograd::no_grad(|| conv.forward(&x).unwrap().value().to_vec());
    let before = recorded(&conv);
    assert_eq!(inferred(&conv), before);
    assert_eq!(inferred(&conv), before, "from the cached preparation");
    conv.weight.set_value(random(&[5, 4, 3, 3], 13)).unwrap();
    let after = recorded(&conv);
    assert_ne!(after, before);
    assert_eq!(inferred(&conv), after, "the replaced weight is prepared anew");
    conv.bias.set_value(random(&[5], 14)).unwrap();
    assert_eq!(inferred(&conv), recorded(&conv), "the bias is read each time");
}

/// `forward_add` is `forward` plus the addend, bit for bit, recording (with the
/// gradients of `forward(x).add(addend)`) and under `no_grad` (prepared weights),
/// for a residual and a per-channel addend.
#[test]
fn a_convolution_adds_its_addend_as_a_separate_add_would() {
    let conv = Conv2d::new(
        4,
        5,
        3,
        Conv2dParams {
            stride: 1,
            padding: 1,
        },
        Init::KaimingUniform,
        &mut rng(21),
    );
    let xp = Parameter::new(random(&[2, 4, 6, 6], 22));
    let x = xp.var();
    for (i, shape) in [[2, 5, 6, 6], [2, 5, 1, 1]].into_iter().enumerate() {
        let ap = Parameter::new(random(&shape, 23 + i as u64));
        let a = ap.var();
        let want = conv.forward(&x).unwrap().add(&a).unwrap();
        let got = conv.forward_add(&x, &a).unwrap();
        assert_eq!(got.value().to_vec(), want.value().to_vec(), "addend {shape:?}");
        let inferred = autograd::no_grad(|| conv.forward_add(&x, &a).unwrap().value().to_vec());
        assert_eq!(inferred, want.value().to_vec(), "addend {shape:?}, no_grad");
        let grads = |forward: &dyn Fn() -> Var| -> Vec<Vec<f32>> {
            let params = [&xp, &ap, &conv.weight, &conv.bias];
            params.iter().for_each(|p| p.zero_grad());
            let y = forward();
            y.mul(&y).unwrap().sum_all().unwrap().backward().unwrap();
            params.map(|p| p.grad()).map(|g| g.unwrap().to_vec()).to_vec()
        };
        autograd::clear_tape(); // the two graphs above are not differentiated
        assert_eq!(
            grads(&|| conv.forward_add(&x, &a).unwrap()),
            grads(&|| conv.forward(&x).unwrap().add(&a).unwrap()),
            "addend {shape:?}: gradients"
        );
    }
}
