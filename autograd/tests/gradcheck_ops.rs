//! Every backward rule against central finite differences, over random shapes,
//! broadcasting, and non-contiguous (permuted, narrowed, broadcast) inputs.

use autograd::gradcheck::{check_gradients, Tolerance};
use autograd::{Result, Var};
use proptest::prelude::*;
use rand::SeedableRng;
use tensor::conv::{Conv2dParams, PreparedWeights};
use tensor::Tensor;

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Tensor::rand_uniform(shape, -1.0, 1.0, &mut rng).unwrap()
}

/// Values bounded away from 0, for log, sqrt, div and pow.
fn positive(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Tensor::rand_uniform(shape, 0.5, 2.0, &mut rng).unwrap()
}

fn check(f: impl Fn(&[Var]) -> Result<Var>, inputs: &[Tensor]) {
    check_tol(f, inputs, Tolerance::default())
}

fn check_tol(f: impl Fn(&[Var]) -> Result<Var>, inputs: &[Tensor], tol: Tolerance) {
    if let Err(msg) = check_gradients(f, inputs, tol).expect("the function runs") {
        panic!("{msg}");
    }
}

/// A shape of rank 1..=3 with sizes 1..=4, and a broadcast partner: each axis
/// either kept or set to 1, with leading axes possibly dropped.
fn shape_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    prop::collection::vec(1usize..5, 1..4)
        .prop_flat_map(|shape| {
            let r = shape.len();
            (Just(shape), prop::collection::vec(any::<bool>(), r), 0..r)
        })
        .prop_map(|(shape, ones, drop)| {
            let other: Vec<usize> = shape
                .iter()
                .zip(&ones)
                .map(|(&d, &o)| if o { 1 } else { d })
                .collect();
            (shape, other[drop..].to_vec())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn binary_ops_with_broadcasting((a, b) in shape_pair(), seed in 0u64..1000, swap: bool) {
        let (sa, sb) = if swap { (b, a) } else { (a, b) };
        let x = random(&sa, seed);
        let y = positive(&sb, seed + 1);
        check(|v| v[0].add(&v[1]), &[x.clone(), y.clone()]);
        check(|v| v[0].sub(&v[1]), &[x.clone(), y.clone()]);
        check(|v| v[0].mul(&v[1]), &[x.clone(), y.clone()]);
        check(|v| v[0].div(&v[1]), &[x, y]);
    }

    #[test]
    fn unary_ops(shape in prop::collection::vec(1usize..5, 1..4), seed in 0u64..1000) {
        let x = random(&shape, seed);
        let p = positive(&shape, seed);
        check(|v| Ok(v[0].exp()), std::slice::from_ref(&x));
        check(|v| Ok(v[0].log()), std::slice::from_ref(&p));
        check(|v| Ok(v[0].sqrt()), std::slice::from_ref(&p));
        check(|v| Ok(v[0].powf(1.7)), &[p]);
        check(|v| Ok(v[0].square()), std::slice::from_ref(&x));
        check(|v| Ok(v[0].tanh()), std::slice::from_ref(&x));
        check(|v| Ok(v[0].sigmoid()), std::slice::from_ref(&x));
        check(|v| Ok(v[0].silu()), std::slice::from_ref(&x));
        check(|v| Ok(v[0].neg().add_scalar(0.5).mul_scalar(-3.0)), &[x]);
    }

    #[test]
    fn kinks_away_from_zero(shape in prop::collection::vec(1usize..5, 1..3), seed in 0u64..1000) {
        // relu and abs have a kink at 0: keep the inputs at least 0.1 away.
        let x = random(&shape, seed).map(|v| if v.abs() < 0.1 { v.signum() * 0.1 + v } else { v });
        check(|v| Ok(v[0].relu()), std::slice::from_ref(&x));
        check(|v| Ok(v[0].abs()), &[x]);
    }

    #[test]
    fn views_of_non_contiguous_inputs(d0 in 1usize..4, d1 in 2usize..5, d2 in 1usize..4, seed in 0u64..1000) {
        let x = random(&[d0, d1, d2], seed);
        // permute, then an op that needs the values in permuted order
        let w = random(&[d2, d0, d1], seed + 1);
        check(|v| v[0].permute(&[2, 0, 1])?.mul(&v[1]), &[x.clone(), w]);
        check(|v| v[0].transpose(0, 2)?.reshape(&[d2 * d1 * d0])?.square().sum_all(), std::slice::from_ref(&x));
        check(|v| v[0].narrow(1, 1, d1 - 1)?.exp().sum(&[1], false), std::slice::from_ref(&x));
        check(|v| Ok(v[0].unsqueeze(1)?.broadcast_to(&[d0, 3, d1, d2])?.tanh()), std::slice::from_ref(&x));
        check(|v| v[0].reshape(&[d0 * d1, d2])?.unsqueeze(0)?.squeeze(0), std::slice::from_ref(&x));
        let split = |v: &[Var]| -> Result<Var> {
            let parts = v[0].split(1, &[1, d1 - 1])?;
            Var::concat(&[&parts[1].square(), &parts[0]], 1)
        };
        check(split, &[x]);
    }

    #[test]
    fn reductions_and_softmax(shape in prop::collection::vec(1usize..5, 2..4), seed in 0u64..1000, keep: bool) {
        let x = random(&shape, seed);
        let last = shape.len() - 1;
        check(|v| v[0].sum(&[0, last], keep), std::slice::from_ref(&x));
        check(|v| v[0].mean(&[last], keep), std::slice::from_ref(&x));
        check(|v| v[0].mean_all(), std::slice::from_ref(&x));
        check(|v| v[0].softmax(last), std::slice::from_ref(&x));
        check(|v| v[0].softmax(0), std::slice::from_ref(&x));
        check(|v| v[0].log_softmax(last), std::slice::from_ref(&x));
        check(|v| v[0].permute(&(0..=last).rev().collect::<Vec<_>>())?.log_softmax(0), &[x]);
    }

    #[test]
    fn batched_matmul(b in 1usize..3, m in 1usize..5, k in 1usize..5, n in 1usize..5, seed in 0u64..1000) {
        let a = random(&[b, m, k], seed);
        let w = random(&[k, n], seed + 1);
        check(|v| v[0].matmul(&v[1]), &[a.clone(), w.clone()]);
        // transposed view on the right, broadcast batch on the left
        let wt = random(&[b, n, k], seed + 2);
        check(|v| v[1].matmul(&v[0].transpose(1, 2)?), &[wt, random(&[m, k], seed + 3)]);
    }

    #[test]
    fn conv2d_and_upsample(cin in 1usize..3, cout in 1usize..3, h in 3usize..6, k in 1usize..4,
                           stride in 1usize..3, pad in 0usize..2, seed in 0u64..1000) {
        let x = random(&[2, cin, h, h + 1], seed);
        let w = random(&[cout, cin, k, k], seed + 1);
        let b = random(&[cout], seed + 2);
        let p = Conv2dParams { stride, padding: pad };
        check(|v| v[0].conv2d(&v[1], Some(&v[2]), p), &[x.clone(), w.clone(), b]);
        check(|v| v[0].conv2d(&v[1], None, p), &[x.clone(), w.clone()]);
        // Prepared (constant) weights: gradients to the input and the bias.
        let prepared = std::rc::Rc::new(PreparedWeights::new(&w, p).unwrap());
        check(|v| v[0].conv2d_prepared(&prepared, Some(&v[1])), &[x.clone(), random(&[cout], seed + 3)]);
        check(|v| v[0].conv2d_prepared(&prepared, None), std::slice::from_ref(&x));
        // A fused addend: a residual of the output's shape, or one value per image and channel.
        let out = x.conv2d(&w, None, p).unwrap().shape().to_vec();
        let (res, per) = (random(&out, seed + 4), random(&[2, cout, 1, 1], seed + 5));
        check(|v| v[0].conv2d_add(&v[1], Some(&v[2]), &v[3], p), &[x.clone(), w.clone(), random(&[cout], seed + 6), res.clone()]);
        check(|v| v[0].conv2d_add(&v[1], None, &v[2], p), &[x.clone(), w.clone(), per.clone()]);
        check(|v| v[0].conv2d_prepared_add(&prepared, Some(&v[1]), &v[2]), &[x.clone(), random(&[cout], seed + 7), res]);
        check(|v| v[0].conv2d_prepared_add(&prepared, None, &v[1]), &[x.clone(), per]);
        check(|v| v[0].upsample_nearest2d(2), &[x]);
    }

    #[test]
    fn group_norm(b in 1usize..3, groups in 1usize..3, cpg in 1usize..3, hw in 2usize..4, seed in 0u64..1000) {
        let c = groups * cpg;
        let x = random(&[b, c, hw, hw], seed).mul_scalar(3.0);
        let gamma = random(&[c], seed + 1);
        let beta = random(&[c], seed + 2);
        check(|v| v[0].group_norm(groups, &v[1], &v[2], 1e-5), &[x.clone(), gamma.clone(), beta.clone()]);
        check(|v| v[0].group_norm_silu(groups, &v[1], &v[2], 1e-5), &[x.clone(), gamma.clone(), beta.clone()]);
        // A fixed mask (p, seed): the function is smooth in x, gamma and beta.
        let drop = Some(tensor::group_norm::Dropout { p: 0.3, seed });
        check(|v| v[0].group_norm_silu_dropout(groups, &v[1], &v[2], 1e-5, drop), &[x, gamma, beta]);
    }

    #[test]
    fn embedding_and_losses(rows in 1usize..6, dim in 1usize..4, seed in 0u64..1000) {
        let table = random(&[rows, dim], seed);
        let idx: Vec<usize> = (0..5).map(|i| (i * 7 + seed as usize) % rows).collect();
        check(|v| v[0].index_select(0, &idx), std::slice::from_ref(&table));
        let target = random(&[rows, dim], seed + 1);
        check(|v| v[0].mse_loss(&v[1]), &[table.clone(), target]);
        let labels: Vec<usize> = (0..rows).map(|i| (i * 3 + seed as usize) % dim).collect();
        check(|v| v[0].mul_scalar(3.0).cross_entropy(&labels), &[table]);
    }
}

#[test]
fn cross_entropy_matches_its_closed_form_and_rejects_bad_labels() {
    // Uniform logits over 4 classes: the loss is ln 4 whatever the labels.
    let z = Var::leaf(Tensor::zeros(&[3, 4]));
    let loss = z.cross_entropy(&[0, 3, 1]).unwrap();
    assert!((loss.value().item().unwrap() - 4f32.ln()).abs() < 1e-6);
    assert!(z.cross_entropy(&[0, 4, 1]).is_err());
    assert!(z.cross_entropy(&[0, 1]).is_err());
}

#[test]
fn dropout_backward_uses_the_forward_mask() {
    let x = Var::leaf(Tensor::ones(&[1000]));
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let y = x.dropout(0.25, &mut rng).unwrap();
    let kept = y.value().to_vec();
    y.sum_all().unwrap().backward().unwrap();
    // d sum(y) / dx = the mask itself: 0 where dropped, 1 / (1 - p) where kept.
    assert_eq!(x.grad().unwrap().to_vec(), kept);
    let dropped = kept.iter().filter(|&&v| v == 0.0).count();
    assert!(
        (200..300).contains(&dropped),
        "{dropped} of 1000 dropped at p = 0.25"
    );
    assert!(kept.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    assert!(x.dropout(1.0, &mut rng).is_err());
}

#[test]
fn composite_conv_net() {
    // conv -> group norm -> silu -> conv (stride 2) -> fused group norm + silu -> mean:
    // a small block of the U-Net.
    let p1 = Conv2dParams {
        stride: 1,
        padding: 1,
    };
    let p2 = Conv2dParams {
        stride: 2,
        padding: 1,
    };
    let net = |v: &[Var]| -> Result<Var> {
        let h = v[0].conv2d(&v[1], Some(&v[2]), p1)?;
        let h = h.group_norm(2, &v[3], &v[4], 1e-5)?.silu();
        let h = h.conv2d(&v[5], None, p2)?;
        h.group_norm_silu(1, &v[6], &v[7], 1e-5)?.mean(&[2, 3], false)
    };
    let inputs = [
        random(&[2, 2, 5, 5], 1),
        random(&[4, 2, 3, 3], 2),
        random(&[4], 3),
        random(&[4], 4),
        random(&[4], 5),
        random(&[3, 4, 3, 3], 6),
        random(&[3], 7),
        random(&[3], 8),
    ];
    check(net, &inputs);
}

#[test]
fn conv2d_add_on_the_winograd_path() {
    // 4 channels in and out, 3x3, stride 1, padding 1: the Winograd output
    // transform adds the residual or the per-channel addend.
    let p = Conv2dParams {
        stride: 1,
        padding: 1,
    };
    let (x, w, b) = (
        random(&[2, 4, 5, 6], 1),
        random(&[4, 4, 3, 3], 2),
        random(&[4], 3),
    );
    check(
        |v| v[0].conv2d_add(&v[1], Some(&v[2]), &v[3], p),
        &[x.clone(), w.clone(), b.clone(), random(&[2, 4, 5, 6], 4)],
    );
    check(
        |v| v[0].conv2d_add(&v[1], Some(&v[2]), &v[3], p),
        &[x.clone(), w.clone(), b.clone(), random(&[2, 4, 1, 1], 5)],
    );
    let prepared = std::rc::Rc::new(PreparedWeights::new(&w, p).unwrap());
    check(
        |v| v[0].conv2d_prepared_add(&prepared, Some(&v[1]), &v[2]),
        &[x, b, random(&[2, 4, 5, 6], 6)],
    );
}

#[test]
fn composite_attention_block() {
    // Single-head attention over 4 positions of 3 channels: softmax(q k^T / sqrt(c)) v.
    let attn = |v: &[Var]| -> Result<Var> {
        let x = &v[0]; // [B, N, C]
        let (q, k, val) = (x.matmul(&v[1])?, x.matmul(&v[2])?, x.matmul(&v[3])?);
        let w = q
            .matmul(&k.transpose(1, 2)?)?
            .mul_scalar(1.0 / 3f32.sqrt())
            .softmax(2)?;
        x.add(&w.matmul(&val)?)
    };
    let inputs = [
        random(&[2, 4, 3], 1),
        random(&[3, 3], 2),
        random(&[3, 3], 3),
        random(&[3, 3], 4),
    ];
    check(attn, &inputs);
}

#[test]
fn the_checker_catches_a_wrong_rule() {
    // A deliberately wrong backward (claims d(x^2)/dx = x) must be reported.
    let wrong = |v: &[Var]| -> Result<Var> {
        let x = v[0].clone();
        let y = x.value().square();
        let xv = x.value().clone();
        Ok(Var::from_op(y, "wrong_square", &[&x], move |g| {
            Ok(vec![Some(g.mul(&xv)?)])
        }))
    };
    let verdict = check_gradients(wrong, &[random(&[4], 9)], Tolerance::default()).unwrap();
    assert!(verdict.is_err());
}
