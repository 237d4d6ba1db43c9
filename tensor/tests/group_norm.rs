//! Group norm against a naive `f64` version: forward over random `[B, C, ...]`
//! shapes, group counts and (non-contiguous) inputs; backward against the naive
//! formula; and the naive formula and the kernel against central finite
//! differences of `L = sum(y * r)` on tiny cases. Plus large inputs and errors,
//! and the kernels fused with SiLU against the composition of group norm and
//! SiLU (naive `f64`, finite differences, and the unfused `f32` ops).

mod naive;

use naive::{assert_close, case_of, Nd};
use proptest::prelude::*;
use tensor::group_norm::{
    group_norm_act_backward, group_norm_act_forward, group_norm_backward, group_norm_forward, Activation,
    Dropout, GroupNormSaved,
};
use tensor::Tensor;

const EPS: f32 = 1e-5;

/// The sizes of a case: images, groups, channels per group, positions per channel.
#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    g: usize,
    cg: usize,
    hw: usize,
}

impl Dims {
    fn c(&self) -> usize {
        self.g * self.cg
    }
}

/// Element `(b, c, s)` of a row-major `[B, C, HW]` array.
fn at(d: Dims, b: usize, c: usize, s: usize) -> usize {
    (b * d.c() + c) * d.hw + s
}

/// Mean and `1 / sqrt(var + eps)` of group `(b, g)`.
fn stats(d: Dims, x: &[f64], b: usize, g: usize) -> (f64, f64) {
    let vals: Vec<f64> = (g * d.cg..(g + 1) * d.cg)
        .flat_map(|c| (0..d.hw).map(move |s| (c, s)))
        .map(|(c, s)| x[at(d, b, c, s)])
        .collect();
    let n = vals.len() as f64;
    let mean = vals.iter().sum::<f64>() / n;
    let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, 1.0 / (var + f64::from(EPS)).sqrt())
}

/// The statistics of every group, indexed `b * G + g`.
fn all_stats(d: Dims, x: &[f64]) -> Vec<(f64, f64)> {
    (0..d.b)
        .flat_map(|b| (0..d.g).map(move |g| (b, g)))
        .map(|(b, g)| stats(d, x, b, g))
        .collect()
}

/// Every `(b, g, c, s)` of the case.
fn positions(d: Dims) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    (0..d.b).flat_map(move |b| (0..d.c()).flat_map(move |c| (0..d.hw).map(move |s| (b, c / d.cg, c, s))))
}

/// The naive forward pass.
fn naive_forward(d: Dims, x: &[f64], gamma: &[f64], beta: &[f64]) -> Vec<f64> {
    let st = all_stats(d, x);
    let mut y = vec![0.0; x.len()];
    for (b, g, c, s) in positions(d) {
        let (mean, rstd) = st[b * d.g + g];
        let i = at(d, b, c, s);
        y[i] = (x[i] - mean) * rstd * gamma[c] + beta[c];
    }
    y
}

/// The naive backward pass, straight from the formula: `(dx, dgamma, dbeta)`.
fn naive_backward(d: Dims, dy: &[f64], x: &[f64], gamma: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut dx, mut dgamma, mut dbeta) = (vec![0.0; x.len()], vec![0.0; d.c()], vec![0.0; d.c()]);
    let n = (d.cg * d.hw) as f64;
    let st = all_stats(d, x);
    let xhat = |b: usize, g: usize, i: usize| {
        let (mean, rstd) = st[b * d.g + g];
        (x[i] - mean) * rstd
    };
    let (mut sum_dxhat, mut sum_dxhat_xhat) = (vec![0.0; d.b * d.g], vec![0.0; d.b * d.g]);
    for (b, g, c, s) in positions(d) {
        let i = at(d, b, c, s);
        let dxhat = dy[i] * gamma[c];
        sum_dxhat[b * d.g + g] += dxhat;
        sum_dxhat_xhat[b * d.g + g] += dxhat * xhat(b, g, i);
        dgamma[c] += dy[i] * xhat(b, g, i);
        dbeta[c] += dy[i];
    }
    for (b, g, c, s) in positions(d) {
        let i = at(d, b, c, s);
        let k = b * d.g + g;
        let rstd = st[k].1;
        dx[i] = rstd * (dy[i] * gamma[c] - sum_dxhat[k] / n - xhat(b, g, i) * sum_dxhat_xhat[k] / n);
    }
    (dx, dgamma, dbeta)
}

/// The input shape `[B, C, spatial...]`.
fn shape_of(d: Dims, spatial: &[usize]) -> Vec<usize> {
    let mut s = vec![d.b, d.c()];
    s.extend_from_slice(spatial);
    s
}

/// A case: sizes, spatial shape, and (non-contiguous) x, gamma, beta, dy.
type Case = (Dims, Vec<usize>, [(Tensor, Nd); 4]);

fn gn_case(max_b: usize, max_g: usize, max_cg: usize, max_spatial: usize) -> impl Strategy<Value = Case> {
    (
        1..=max_b,
        1..=max_g,
        1..=max_cg,
        prop::collection::vec(1..=max_spatial, 0..=2),
    )
        .prop_flat_map(|(b, g, cg, spatial)| {
            let d = Dims {
                b,
                g,
                cg,
                hw: spatial.iter().product(),
            };
            let shape = shape_of(d, &spatial);
            let tensors = [
                case_of(shape.clone(), 3.0),
                case_of(vec![d.c()], 2.0),
                case_of(vec![d.c()], 2.0),
                case_of(shape, 1.0),
            ];
            (Just(d), Just(spatial), tensors)
        })
}

/// Checks the kernels on a case against the naive forward and backward.
fn check_against_naive((d, _, [(x, nx), (gamma, ng), (beta, nb), (dy, ndy)]): &Case) {
    let (y, saved) = group_norm_forward(x, d.g, gamma, beta, EPS).unwrap();
    assert_eq!(y.shape(), x.shape());
    let want_y = naive_forward(*d, &nx.data, &ng.data, &nb.data);
    let (want_mean, want_rstd): (Vec<f64>, Vec<f64>) = all_stats(*d, &nx.data).into_iter().unzip();
    // xhat = (x - mean) rstd carries the rounding of x - mean scaled by rstd,
    // which is up to 1 / sqrt(eps) for a group of equal values (variance 0):
    // y, dx and dgamma inherit it.
    let scale = want_rstd.iter().fold(1.0f64, |m, &r| m.max(r));
    assert_close(&y.to_vec(), &want_y, 1e-4 * scale, "forward");
    assert_close(&saved.mean, &want_mean, 1e-5, "saved mean");
    assert_close(&saved.rstd, &want_rstd, 1e-4, "saved rstd");
    let (dx, dgamma, dbeta) = group_norm_backward(dy, x, &saved, d.g, gamma).unwrap();
    let (want_dx, want_dgamma, want_dbeta) = naive_backward(*d, &ndy.data, &nx.data, &ng.data);
    assert_eq!(
        (dx.shape(), dgamma.shape(), dbeta.shape()),
        (x.shape(), &[d.c()][..], &[d.c()][..])
    );
    assert_close(&dx.to_vec(), &want_dx, 1e-4 * scale, "dx");
    // dgamma's terms hold xhat, whose rounding (that of x - mean) is scaled by
    // rstd like dx's: a group of equal values (variance 0, rstd 1 / sqrt(eps))
    // has xhat exactly 0 in f64 and about 1e-4 in f32.
    let sum_tol = sum_tolerance(*d);
    assert_close(
        &dgamma.to_vec(),
        &want_dgamma,
        f64::max(1e-4, 4.0 * sum_tol) * scale,
        "dgamma",
    );
    assert_close(&dbeta.to_vec(), &want_dbeta, f64::max(1e-5, sum_tol), "dbeta");
}

/// The rounding of `dgamma` and `dbeta`, sums of `b * hw` terms per channel: an
/// f32 sum of `n` terms can be off by about `n * eps` times the terms' size
/// (`|dy| <= 1`, `|xhat| <~ 4`).
fn sum_tolerance(d: Dims) -> f64 {
    2.0 * f64::from(f32::EPSILON) * (d.b * d.hw) as f64
}

fn silu(z: f64) -> f64 {
    z / (1.0 + (-z).exp())
}

fn silu_grad(z: f64) -> f64 {
    let s = 1.0 / (1.0 + (-z).exp());
    s * (1.0 + z * (1.0 - s))
}

/// The fused SiLU kernels on a case against the naive composition: `silu` of the
/// naive forward, and the naive backward of `dz = dy silu'(z)`.
fn check_silu_against_naive((d, _, [(x, nx), (gamma, ng), (beta, nb), (dy, ndy)]): &Case) {
    let (y, saved) = group_norm_act_forward(x, d.g, gamma, beta, EPS, Activation::Silu, None).unwrap();
    let z = naive_forward(*d, &nx.data, &ng.data, &nb.data);
    let want_y: Vec<f64> = z.iter().map(|&z| silu(z)).collect();
    let scale = max_rstd(&saved);
    assert_close(&y.to_vec(), &want_y, 1e-4 * scale, "silu forward");
    let dz: Vec<f64> = ndy.data.iter().zip(&z).map(|(g, &z)| g * silu_grad(z)).collect();
    let (dx, dgamma, dbeta) =
        group_norm_act_backward(dy, x, &saved, d.g, (gamma, beta), Activation::Silu, None).unwrap();
    let (want_dx, want_dgamma, want_dbeta) = naive_backward(*d, &dz, &nx.data, &ng.data);
    assert_close(&dx.to_vec(), &want_dx, 2e-4 * scale, "silu dx");
    // Here dbeta's terms hold silu'(z) too, and z = gamma xhat + beta carries
    // xhat's rounding, scaled by rstd (see check_against_naive): both sums'
    // tolerances scale with it.
    let sum_tol = sum_tolerance(*d);
    assert_close(
        &dgamma.to_vec(),
        &want_dgamma,
        f64::max(2e-4, 8.0 * sum_tol) * scale,
        "silu dgamma",
    );
    assert_close(
        &dbeta.to_vec(),
        &want_dbeta,
        f64::max(2e-5, 2.0 * sum_tol) * scale,
        "silu dbeta",
    );
}

/// The gradients `(dx, dgamma, dbeta)` of a fused kernel against those of the
/// unfused ops, to rounding (`dx` relative to the largest `rstd`, `scale`).
fn assert_grads_close(fused: &Grads, unfused: &Grads, scale: f64) {
    for (name, a, b, tol) in [
        ("dx", &fused.0, &unfused.0, 1e-5 * scale),
        ("dgamma", &fused.1, &unfused.1, 1e-4),
        ("dbeta", &fused.2, &unfused.2, 1e-4),
    ] {
        let want: Vec<f64> = b.to_vec().iter().map(|&v| f64::from(v)).collect();
        assert_close(&a.to_vec(), &want, tol, name);
    }
}

/// `(dx, dgamma, dbeta)`.
type Grads = (Tensor, Tensor, Tensor);

/// The largest `rstd` of a forward pass (at least 1): gradients scale with it.
fn max_rstd(saved: &GroupNormSaved) -> f64 {
    saved.rstd.iter().fold(1.0f32, |m, &r| m.max(r)) as f64
}

/// The fused kernels against the unfused `f32` ops: forward bit for bit (the
/// same arithmetic in the same order), backward to rounding.
fn check_silu_against_unfused((d, _, [(x, _), (gamma, _), (beta, _), (dy, _)]): &Case) {
    let (z, saved) = group_norm_forward(x, d.g, gamma, beta, EPS).unwrap();
    let (y, fused_saved) = group_norm_act_forward(x, d.g, gamma, beta, EPS, Activation::Silu, None).unwrap();
    assert_eq!(
        y.to_vec(),
        z.silu().to_vec(),
        "fused forward is silu(group_norm(x)) exactly"
    );
    assert_eq!(fused_saved, saved);
    let dz = dy
        .zip_map(&z, "silu backward", |g, z| g * tensor::math::silu_grad(z))
        .unwrap();
    let unfused = group_norm_backward(&dz, x, &saved, d.g, gamma).unwrap();
    let fused = group_norm_act_backward(dy, x, &saved, d.g, (gamma, beta), Activation::Silu, None).unwrap();
    let scale = max_rstd(&saved);
    assert_grads_close(&fused, &unfused, scale);
}

/// With dropout fused after the activation (SiLU or none): forward bit for bit
/// `act(group_norm(x)).dropout(p, seed)`, backward the composition's to rounding.
fn check_dropout_against_unfused((d, _, [(x, _), (gamma, _), (beta, _), (dy, _)]): &Case, seed: u64) {
    let drop = Dropout { p: 0.3, seed };
    let (z, saved) = group_norm_forward(x, d.g, gamma, beta, EPS).unwrap();
    let scale = max_rstd(&saved);
    for act in [Activation::Identity, Activation::Silu] {
        let a = if act == Activation::Silu {
            z.silu()
        } else {
            z.clone()
        };
        let (y, _) = group_norm_act_forward(x, d.g, gamma, beta, EPS, act, Some(drop)).unwrap();
        assert_eq!(
            y.to_vec(),
            a.dropout(0.3, seed).unwrap().to_vec(),
            "{act:?} forward"
        );
        let da = dy.dropout(0.3, seed).unwrap();
        let dz = match act {
            Activation::Silu => da
                .zip_map(&z, "silu", |g, z| g * tensor::math::silu_grad(z))
                .unwrap(),
            Activation::Identity => da,
        };
        let unfused = group_norm_backward(&dz, x, &saved, d.g, gamma).unwrap();
        let fused = group_norm_act_backward(dy, x, &saved, d.g, (gamma, beta), act, Some(drop)).unwrap();
        assert_grads_close(&fused, &unfused, scale);
    }
}

/// `L = sum(y * r)` of the naive forward.
fn loss(d: Dims, x: &[f64], gamma: &[f64], beta: &[f64], r: &[f64]) -> f64 {
    naive_forward(d, x, gamma, beta)
        .iter()
        .zip(r)
        .map(|(y, r)| y * r)
        .sum()
}

/// Central differences of `loss` with respect to each element of `which`
/// (0: x, 1: gamma, 2: beta).
fn finite_differences(d: Dims, p: &[Vec<f64>; 3], r: &[f64], which: usize) -> Vec<f64> {
    let h = 1e-5;
    (0..p[which].len())
        .map(|i| {
            let shifted = |delta: f64| {
                let mut q = p.clone();
                q[which][i] += delta;
                loss(d, &q[0], &q[1], &q[2], r)
            };
            (shifted(h) - shifted(-h)) / (2.0 * h)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn kernels_match_the_naive_f64_version(case in gn_case(3, 3, 3, 4)) {
        check_against_naive(&case);
    }

    #[test]
    fn gradients_match_finite_differences(case in gn_case(2, 2, 2, 3)) {
        let (d, _, [(x, nx), (gamma, ng), (beta, nb), (r, nr)]) = &case;
        let p = [nx.data.clone(), ng.data.clone(), nb.data.clone()];
        let numeric: Vec<Vec<f64>> = (0..3).map(|w| finite_differences(*d, &p, &nr.data, w)).collect();
        // The naive formula is the true gradient...
        let (fdx, fdgamma, fdbeta) = naive_backward(*d, &nr.data, &nx.data, &ng.data);
        for (name, formula, fd) in [("dx", &fdx, &numeric[0]), ("dgamma", &fdgamma, &numeric[1]), ("dbeta", &fdbeta, &numeric[2])] {
            for (a, b) in formula.iter().zip(fd) {
                prop_assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()) * (1.0 + b.abs()), "{}: {} vs {}", name, a, b);
            }
        }
        // ...and the kernel computes it (dy = r for L = sum(y * r)).
        let (_, saved) = group_norm_forward(x, d.g, gamma, beta, EPS).unwrap();
        let (dx, dgamma, dbeta) = group_norm_backward(r, x, &saved, d.g, gamma).unwrap();
        let scale = max_rstd(&saved);
        assert_close(&dx.to_vec(), &numeric[0], 1e-3 * scale, "dx vs finite differences");
        assert_close(&dgamma.to_vec(), &numeric[1], 1e-3, "dgamma vs finite differences");
        assert_close(&dbeta.to_vec(), &numeric[2], 1e-3, "dbeta vs finite differences");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn silu_kernels_match_the_naive_composition(case in gn_case(3, 3, 3, 4), seed in 0u64..1000) {
        check_silu_against_naive(&case);
        check_silu_against_unfused(&case);
        check_dropout_against_unfused(&case, seed);
    }

    #[test]
    fn silu_gradients_match_finite_differences(case in gn_case(2, 2, 2, 3)) {
        let (d, _, [(x, nx), (gamma, ng), (beta, nb), (r, nr)]) = &case;
        let p = [nx.data.clone(), ng.data.clone(), nb.data.clone()];
        let h = 1e-5;
        let loss = |q: &[Vec<f64>; 3]| -> f64 {
            let z = naive_forward(*d, &q[0], &q[1], &q[2]);
            z.iter().zip(&nr.data).map(|(&z, r)| silu(z) * r).sum()
        };
        let numeric: Vec<Vec<f64>> = (0..3)
            .map(|w| {
                (0..p[w].len())
                    .map(|i| {
                        let mut q = p.clone();
                        q[w][i] += h;
                        let up = loss(&q);
                        q[w][i] -= 2.0 * h;
                        (up - loss(&q)) / (2.0 * h)
                    })
                    .collect()
            })
            .collect();
        let (_, saved) = group_norm_act_forward(x, d.g, gamma, beta, EPS, Activation::Silu, None).unwrap();
        let (dx, dgamma, dbeta) =
            group_norm_act_backward(r, x, &saved, d.g, (gamma, beta), Activation::Silu, None).unwrap();
        let scale = max_rstd(&saved);
        assert_close(&dx.to_vec(), &numeric[0], 1e-3 * scale, "silu dx vs finite differences");
        assert_close(&dgamma.to_vec(), &numeric[1], 1e-3, "silu dgamma vs finite differences");
        assert_close(&dbeta.to_vec(), &numeric[2], 1e-3, "silu dbeta vs finite differences");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2))]

    #[test]
    fn large_inputs_take_the_parallel_path(
        x in case_of(vec![6, 16, 24, 24], 3.0),
        gamma in case_of(vec![16], 2.0),
        beta in case_of(vec![16], 2.0),
        dy in case_of(vec![6, 16, 24, 24], 1.0),
    ) {
        let d = Dims { b: 6, g: 4, cg: 4, hw: 576 };
        let case = (d, vec![24, 24], [x, gamma, beta, dy]);
        check_against_naive(&case);
        check_silu_against_naive(&case);
        check_dropout_against_unfused(&case, 5);
    }
}

/// Asserts that `r` is an error whose message names `op`.
fn assert_err<T>(r: tensor::Result<T>, op: &str) {
    match r {
        Ok(_) => panic!("expected an error from {op}"),
        Err(e) => assert!(e.to_string().starts_with(op), "{e} should name {op}"),
    }
}

#[test]
fn bad_arguments_are_errors_that_name_the_op() {
    const F: &str = "group_norm_forward";
    const B: &str = "group_norm_backward";
    let x = Tensor::zeros(&[2, 6, 3, 3]);
    let (g6, g4) = (Tensor::ones(&[6]), Tensor::ones(&[4]));
    assert_err(group_norm_forward(&x, 4, &g6, &g6, EPS), F);
    assert_err(group_norm_forward(&x, 0, &g6, &g6, EPS), F);
    assert_err(group_norm_forward(&x, 3, &g4, &g6, EPS), F);
    assert_err(group_norm_forward(&x, 3, &g6, &g4, EPS), F);
    assert_err(group_norm_forward(&Tensor::zeros(&[6]), 3, &g6, &g6, EPS), F);
    assert_err(
        group_norm_forward(&Tensor::zeros(&[2, 6, 0]), 3, &g6, &g6, EPS),
        F,
    );
    let (_, saved) = group_norm_forward(&x, 3, &g6, &g6, EPS).unwrap();
    assert_err(
        group_norm_backward(&Tensor::zeros(&[2, 6, 9]), &x, &saved, 3, &g6),
        B,
    );
    assert_err(group_norm_backward(&x, &x, &saved, 2, &g6), B);
    assert_err(group_norm_backward(&x, &x, &saved, 3, &g4), B);
    let silu = Activation::Silu;
    assert_err(group_norm_act_forward(&x, 4, &g6, &g6, EPS, silu, None), F);
    assert_err(
        group_norm_act_backward(&x, &x, &saved, 3, (&g6, &g4), silu, None),
        B,
    );
}

#[test]
fn output_is_normalised_per_group() {
    let x = Tensor::arange(2 * 4 * 5)
        .reshape(&[2, 4, 5])
        .unwrap()
        .mul_scalar(0.37);
    let (y, saved) = group_norm_forward(&x, 2, &Tensor::ones(&[4]), &Tensor::zeros(&[4]), EPS).unwrap();
    for group in y.to_vec().chunks(10) {
        let mean = group.iter().map(|&v| f64::from(v)).sum::<f64>() / 10.0;
        let var = group.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / 10.0;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
            "mean {mean} var {var}"
        );
    }
    assert_eq!(saved.mean.len(), 4);
}
