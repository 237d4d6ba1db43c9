//! A finite-difference gradient checker, for testing backward rules.
//!
//! For a function `f` of some tensors, with a fixed random projection `r` of its
//! output (so any output shape works), compare the gradient of `L = <f(x), r>`
//! from `backward` with central differences, element by element:
//!
//! ```text
//! dL/dx_i  ~=  (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)      (error O(eps^2))
//! ```
//!
//! `L` is accumulated in f64 from the f32 outputs. In f32, `eps` around 1e-2 to
//! 1e-3 balances truncation error against rounding error.

use rand::{Rng, SeedableRng};
use tensor::{Result, Tensor};

use crate::{no_grad, Var};

/// How closely analytic and numeric gradients must agree: `|a - n| <= atol + rtol |n|`.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Finite-difference step.
    pub eps: f32,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance.
    pub rtol: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            eps: 1e-2,
            atol: 2e-3,
            rtol: 2e-2,
        }
    }
}

/// `<y, r>` in f64.
fn project(y: &Tensor, r: &[f32]) -> f64 {
    y.to_vec().iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Checks the gradients of `f` at `inputs` against central differences.
///
/// Returns `Ok(Err(message))` naming the first input and element that disagree,
/// `Ok(Ok(()))` when all agree, and `Err` when `f` itself fails.
pub fn check_gradients(
    f: impl Fn(&[Var]) -> Result<Var>,
    inputs: &[Tensor],
    tol: Tolerance,
) -> Result<std::result::Result<(), String>> {
    let leaves: Vec<Var> = inputs.iter().map(|t| Var::leaf(t.contiguous())).collect();
    let y = f(&leaves)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let r: Vec<f32> = (0..y.value().numel()).map(|_| rng.gen_range(-1.0..1.0)).collect();
    y.backward_with(Tensor::from_vec(r.clone(), y.shape())?)?;
    for (i, (leaf, x)) in leaves.iter().zip(inputs).enumerate() {
        let analytic = leaf.grad().unwrap_or_else(|| Tensor::zeros(x.shape())).to_vec();
        let base = x.to_vec();
        for j in 0..base.len() {
            let at = |delta: f32| -> Result<f64> {
                let mut v = base.clone();
                v[j] += delta;
                let moved = Tensor::from_vec(v, x.shape())?;
                let args: Vec<Var> = leaves
                    .iter()
                    .enumerate()
                    .map(|(k, l)| {
                        if k == i {
                            Var::constant(moved.clone())
                        } else {
                            l.detach()
                        }
                    })
                    .collect();
                Ok(project(no_grad(|| f(&args))?.value(), &r))
            };
            let numeric = (at(tol.eps)? - at(-tol.eps)?) / (2.0 * tol.eps as f64);
            let a = analytic[j] as f64;
            if (a - numeric).abs() > tol.atol + tol.rtol * numeric.abs() {
                return Ok(Err(format!(
                    "input {i} {:?}, element {j}: backward gives {a:.6}, finite differences {numeric:.6}",
                    x.shape()
                )));
            }
        }
    }
    Ok(Ok(()))
}
