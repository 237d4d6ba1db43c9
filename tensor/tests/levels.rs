//! Every kernel at every SIMD level the CPU has: the short GEMM, both convolution
//! paths (naive loops, finite differences, Winograd against im2col) and the
//! auto-vectorised loops (element-wise maps, reductions, group norm, dropout
//! masks), each run once per level of `tensor::simd::supported()`.
//!
//! A test binary of its own: the level is process-wide, so its tests take turns
//! (`LOCK`) and no other test shares the process. `cargo test` runs the other
//! kernel tests at the detected level; `TENSOR_SIMD=scalar cargo test` runs
//! them all at another.

use std::sync::Mutex;

use tensor::conv::{conv2d_backward, set_winograd_enabled, Conv2dParams};
use tensor::gemm::{gemm, MatMut, MatRef};
use tensor::group_norm::{
    group_norm_act_backward, group_norm_act_forward, group_norm_backward, group_norm_forward, Activation,
};
use tensor::simd::{self, Level};
use tensor::Tensor;

mod naive;
use naive::conv::{case, check_case, data, dot, tensor, Case};

static LOCK: Mutex<()> = Mutex::new(());

/// Runs `check(level)` at every level the CPU has, widest first, then restores
/// the widest; panics name the level.
fn at_every_level(check: impl Fn(Level)) {
    let _turn = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let levels = simd::supported();
    assert_eq!(
        levels.last(),
        Some(&Level::Scalar),
        "every CPU runs the portable level"
    );
    for &level in &levels {
        simd::set_level(level).unwrap();
        assert_eq!(simd::level(), level);
        check(level);
    }
    simd::set_level(levels[0]).unwrap();
}

fn small_ints(len: usize, seed: u64) -> Vec<f32> {
    data(len, seed).iter().map(|v| (v * 4.0).round()).collect()
}

/// Tiles of every row count (the rows are shared out evenly: 32 rows make
/// tiles of 5 and 6 at the 6-row levels) and partial column panels of each
/// level (8 x 32, 6 x 16 and 6 x 8 tiles), A read through a transposed view, C
/// with padded rows, beta 0 and 1: small integers, so every sum is exact.
#[test]
fn the_short_gemm_matches_a_naive_product_at_every_level() {
    at_every_level(|level| {
        for &(m, k, n) in &[
            (1, 1, 1),
            (8, 5, 32),
            (9, 13, 33),
            (7, 13, 50),
            (17, 40, 70),
            (3, 288, 15),
            (13, 7, 24),
            (2, 9, 40),
            (32, 11, 19),
            (20, 6, 17),
        ] {
            let (a, b) = (small_ints(m * k, 5), small_ints(k * n, 6));
            let at: Vec<f32> = (0..k * m).map(|x| a[(x % m) * k + x / m]).collect();
            let ld = n + 3;
            for beta in [0.0f32, 1.0] {
                let mut c = vec![if beta == 0.0 { f32::NAN } else { 2.0 }; m * ld];
                gemm(
                    1.0,
                    MatRef::row_major(&at, k, m).t(),
                    MatRef::row_major(&b, k, n),
                    beta,
                    MatMut::new(&mut c, m, n, ld, 1),
                );
                for i in 0..m {
                    for j in 0..n {
                        let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>() + 2.0 * beta;
                        assert_eq!(
                            c[i * ld + j],
                            want,
                            "{level}: {m}x{k}x{n} beta {beta} at ({i}, {j})"
                        );
                    }
                    let pad = if beta == 0.0 { f32::NAN } else { 2.0 };
                    assert!(
                        c[i * ld + n..i * ld + ld]
                            .iter()
                            .all(|v| v.to_bits() == pad.to_bits()),
                        "{level}: {m}x{k}x{n} wrote between rows"
                    );
                }
            }
        }
    });
}

/// Winograd cases whose tile rows are narrower than a vector at each level (7,
/// 14 and 5 pixels wide: the spilling stores), wider with a partial last
/// vector (17, 34 and 9 tiles: the last chunk moved left), odd sizes, blocks
/// spanning images; and im2col cases (5x5, stride 2, pointwise, 2 channels).
const CASES: [[usize; 9]; 10] = [
    [3, 8, 7, 7, 16, 3, 3, 1, 1],
    [2, 16, 14, 14, 8, 3, 3, 1, 1],
    [4, 5, 5, 5, 6, 3, 3, 1, 1],
    [1, 6, 9, 34, 5, 3, 3, 1, 1],
    [2, 4, 11, 67, 4, 3, 3, 1, 1],
    [2, 9, 13, 18, 7, 3, 3, 1, 1],
    [2, 3, 9, 8, 4, 5, 5, 1, 2],
    [2, 6, 12, 11, 4, 3, 3, 2, 1],
    [3, 7, 6, 9, 5, 1, 1, 1, 0],
    [2, 2, 6, 7, 3, 3, 3, 1, 1],
];

#[test]
fn convolutions_match_naive_loops_at_every_level() {
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    at_every_level(|_| {
        for (i, c) in CASES.iter().enumerate() {
            let c = case(*c);
            check_case(&c, 50 + i as u64, i % 2 == 0, i % 3 != 0);
            one_thread.install(|| check_case(&c, 70 + i as u64, i % 2 == 1, true));
        }
    });
}

/// The convolution is linear in each argument, so central differences are exact
/// up to rounding: checked on a Winograd case and an im2col case.
#[test]
fn convolution_gradients_match_finite_differences_at_every_level() {
    at_every_level(|level| {
        for c in [
            case([1, 4, 5, 6, 4, 3, 3, 1, 1]),
            case([1, 2, 4, 5, 3, 3, 2, 2, 1]),
        ] {
            check_finite_differences(&c, level);
        }
    });
}

/// The loss with element `i` of one argument moved by `d`.
type Bumped<'a> = dyn Fn(usize, f32) -> f64 + 'a;

fn check_finite_differences(c: &Case, level: Level) {
    let (x, w, bias, r) = (
        tensor(&c.x_shape(), 1),
        tensor(&c.w_shape(), 2),
        tensor(&[c.cout], 3),
        tensor(&c.y_shape(), 4),
    );
    let loss = |x: &Tensor, w: &Tensor, b: &Tensor| {
        dot(&x.conv2d(w, Some(b), c.params()).unwrap().to_vec(), &r.to_vec())
    };
    let grads = conv2d_backward(&x, &w, &r, c.params(), true).unwrap();
    let bump = |t: &Tensor, i: usize, d: f32| {
        let mut v = t.to_vec();
        v[i] += d;
        Tensor::from_vec(v, t.shape()).unwrap()
    };
    let eps = 0.5f32;
    let fd = |f: &dyn Fn(f32) -> f64| (f(eps) - f(-eps)) / (2.0 * eps as f64);
    let checks: [(&str, Vec<f32>, &Bumped); 3] = [
        ("dx", grads.input.unwrap().to_vec(), &|i, d| {
            loss(&bump(&x, i, d), &w, &bias)
        }),
        ("dw", grads.weight.to_vec(), &|i, d| {
            loss(&x, &bump(&w, i, d), &bias)
        }),
        ("db", grads.bias.to_vec(), &|i, d| {
            loss(&x, &w, &bump(&bias, i, d))
        }),
    ];
    for (what, got, f) in checks {
        for (i, &g) in got.iter().enumerate() {
            let want = fd(&|d| f(i, d));
            assert!(
                (want - g as f64).abs() < 1e-3,
                "{level}: {what}[{i}]: fd {want} vs {g}"
            );
        }
    }
}

/// Both paths at every level compute the same convolution to rounding; with
/// Winograd on they are not bit-identical, which shows that it ran. The second
/// layer is wide (288 + 280 channels): its Winograd blocks are sized to fill one
/// GEMM panel rather than by the cache budget, spanning both images at AVX-512.
/// The third is wide for its 4x4 planes: its weight gradient takes groups of
/// several images (three of six on two threads).
#[test]
fn winograd_and_im2col_agree_at_every_level() {
    let params = Conv2dParams {
        stride: 1,
        padding: 1,
    };
    let cases = [([3, 16, 13, 18], 8), ([2, 288, 6, 10], 280), ([6, 40, 4, 4], 40)];
    for (case, ([b, cin, h, w], cout)) in cases.into_iter().enumerate() {
        let seed = 10 * case as u64;
        let (x, wt, bias, dy) = (
            tensor(&[b, cin, h, w], seed + 1),
            tensor(&[cout, cin, 3, 3], seed + 2),
            tensor(&[cout], seed + 3),
            tensor(&[b, cout, h, w], seed + 4),
        );
        let run = |winograd: bool| {
            set_winograd_enabled(winograd);
            let y = x.conv2d(&wt, Some(&bias), params).unwrap();
            let g = conv2d_backward(&x, &wt, &dy, params, true).unwrap();
            set_winograd_enabled(true);
            [y.to_vec(), g.input.unwrap().to_vec(), g.weight.to_vec()]
        };
        at_every_level(|level| {
            let (plain, fast) = (run(false), run(true));
            for (what, (f, p)) in ["y", "dx", "dw"].iter().zip(fast.iter().zip(&plain)) {
                for (i, (&f, &p)) in f.iter().zip(p).enumerate() {
                    assert!(
                        (f - p).abs() <= 1e-4 * (1.0 + p.abs()),
                        "{level}, case {case}: {what}[{i}]: winograd {f}, im2col {p}"
                    );
                }
                assert_ne!(
                    f, p,
                    "{level}, case {case}: {what}: the Winograd path did not run"
                );
            }
        });
    }
}

/// Maps, broadcasting zips, reductions and softmax against `f64` loops, on a
/// length that leaves a tail at every vector width.
#[test]
fn element_wise_loops_and_reductions_match_naive_loops_at_every_level() {
    let n = 40_000 + 13; // above the parallel threshold, not a multiple of any width
    let v: Vec<f32> = data(n, 9).iter().map(|x| 6.0 * x).collect();
    let t = Tensor::from_vec(v.clone(), &[n]).unwrap();
    let row = Tensor::from_vec(data(7, 10), &[1, 7]).unwrap();
    let m = Tensor::from_vec(data(63, 11), &[9, 7]).unwrap();
    at_every_level(|level| {
        let close = |got: f32, want: f64, what: &str, i: usize| {
            assert!(
                (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{level}: {what}[{i}]: {got} vs {want}"
            );
        };
        for (i, (&g, &x)) in t.silu().to_vec().iter().zip(&v).enumerate() {
            let x = x as f64;
            close(g, x / (1.0 + (-x).exp()), "silu", i);
        }
        for (i, (&g, &x)) in t.exp().to_vec().iter().zip(&v).enumerate() {
            close(g, (x as f64).exp(), "exp", i);
        }
        let sum: f64 = v.iter().map(|&x| x as f64).sum();
        let got = t.sum_all().to_vec()[0] as f64;
        assert!(
            (got - sum).abs() < 1e-3 * (1.0 + sum.abs()),
            "{level}: sum {got} vs {sum}"
        );
        let squares: f64 = v.iter().map(|&x| x as f64 * x as f64).sum();
        let got = t.sum_squares();
        assert!(
            (got - squares).abs() < 1e-6 * squares,
            "{level}: sum of squares {got} vs {squares}"
        );
        // A transposed (non-contiguous) view has the same squares.
        let m_squares: f64 = m.to_vec().iter().map(|&x| x as f64 * x as f64).sum();
        let got = m.t().unwrap().sum_squares();
        assert!(
            (got - m_squares).abs() < 1e-6 * m_squares,
            "{level}: transposed sum of squares {got} vs {m_squares}"
        );
        let added = m.add(&row).unwrap().to_vec();
        for (i, &g) in added.iter().enumerate() {
            close(g, m.to_vec()[i] as f64 + row.to_vec()[i % 7] as f64, "add", i);
        }
        let soft = m.softmax(1).unwrap().to_vec();
        for r in 0..9 {
            let xs = &m.to_vec()[r * 7..][..7];
            let z: f64 = xs.iter().map(|&x| (x as f64).exp()).sum();
            for (j, &x) in xs.iter().enumerate() {
                close(soft[r * 7 + j], (x as f64).exp() / z, "softmax", r * 7 + j);
            }
        }
    });
}

/// Group norm's forward and backward at every level against `f64` loops; the
/// gradient as the adjoint identity `<dx, r> = d/dt loss(x + t r)`, by
/// central differences in `f64` of the naive forward.
#[test]
fn group_norm_matches_naive_loops_at_every_level() {
    let (b, c, hw, groups) = (2, 6, 37, 3);
    let x = tensor(&[b, c, hw], 12);
    let gamma = tensor(&[c], 13);
    let beta = tensor(&[c], 14);
    let dy = tensor(&[b, c, hw], 15);
    let (xv, gv, bv, dyv) = (x.to_vec(), gamma.to_vec(), beta.to_vec(), dy.to_vec());
    let naive = |xv: &[f64]| -> Vec<f64> {
        let cg = c / groups;
        let mut out = vec![0.0; xv.len()];
        for i in 0..b {
            for g in 0..groups {
                let range = (i * c + g * cg) * hw..(i * c + (g + 1) * cg) * hw;
                let vals = &xv[range.clone()];
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
                for (k, idx) in range.enumerate() {
                    let ch = g * cg + k / hw;
                    out[idx] = (xv[idx] - mean) / (var + 1e-5).sqrt() * gv[ch] as f64 + bv[ch] as f64;
                }
            }
        }
        out
    };
    let x64: Vec<f64> = xv.iter().map(|&v| v as f64).collect();
    let want = naive(&x64);
    let r: Vec<f64> = data(xv.len(), 16).iter().map(|&v| v as f64).collect();
    let h = 1e-4;
    let shifted = |t: f64| -> f64 {
        let xs: Vec<f64> = x64.iter().zip(&r).map(|(a, d)| a + t * d).collect();
        naive(&xs).iter().zip(&dyv).map(|(y, &g)| y * g as f64).sum()
    };
    let directional = (shifted(h) - shifted(-h)) / (2.0 * h);
    at_every_level(|level| {
        let (y, saved) = group_norm_forward(&x, groups, &gamma, &beta, 1e-5).unwrap();
        for (i, (&g, &w)) in y.to_vec().iter().zip(&want).enumerate() {
            assert!((g as f64 - w).abs() < 1e-4, "{level}: y[{i}]: {g} vs {w}");
        }
        let (dx, _, _) = group_norm_backward(&dy, &x, &saved, groups, &gamma).unwrap();
        let got: f64 = dx.to_vec().iter().zip(&r).map(|(&a, b)| a as f64 * b).sum();
        assert!(
            (got - directional).abs() < 1e-3 * (1.0 + directional.abs()),
            "{level}: <dx, r> {got} vs {directional}"
        );
        // Fused with SiLU: the forward is the composition exactly, the backward the
        // composition's to rounding.
        let silu = Activation::Silu;
        let (fused, _) = group_norm_act_forward(&x, groups, &gamma, &beta, 1e-5, silu, None).unwrap();
        assert_eq!(fused.to_vec(), y.silu().to_vec(), "{level}: fused forward");
        let dz = dy
            .zip_map(&y, "silu", |g, z| g * tensor::math::silu_grad(z))
            .unwrap();
        let (want_dx, _, _) = group_norm_backward(&dz, &x, &saved, groups, &gamma).unwrap();
        let (dx, _, _) =
            group_norm_act_backward(&dy, &x, &saved, groups, (&gamma, &beta), silu, None).unwrap();
        for (i, (&a, &w)) in dx.to_vec().iter().zip(&want_dx.to_vec()).enumerate() {
            assert!(
                (a - w).abs() < 1e-5 * (1.0 + w.abs()),
                "{level}: fused dx[{i}]: {a} vs {w}"
            );
        }
    });
}

/// A dropout mask is the same at every level (integer hashing, no rounding).
#[test]
fn dropout_masks_do_not_depend_on_the_level() {
    let masks = std::sync::Mutex::new(Vec::new());
    at_every_level(|_| {
        masks
            .lock()
            .unwrap()
            .push(Tensor::dropout_mask(&[3, 50_001], 0.3, 7).unwrap().to_vec())
    });
    let masks = masks.into_inner().unwrap();
    assert!(masks.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn levels_parse_and_name_themselves() {
    for l in Level::ALL {
        assert_eq!(Level::parse(l.name()).unwrap(), l);
    }
    assert_eq!(Level::parse(" AVX2 ").unwrap(), Level::Avx2);
    let err = Level::parse("avx9").unwrap_err().to_string();
    assert!(err.contains("`avx9` is not a SIMD level"), "{err}");
    assert!(Level::Scalar < Level::Avx2 && Level::Avx2 < Level::Avx512);
    assert!(Level::Scalar.is_supported());
    assert_eq!(simd::detected(), simd::supported()[0]);
    for l in Level::ALL.into_iter().filter(|l| !l.is_supported()) {
        let err = simd::set_level(l).unwrap_err().to_string();
        assert!(err.contains("this CPU cannot run"), "{err}");
    }
}
