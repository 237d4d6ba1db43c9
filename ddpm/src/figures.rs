//! The pictures of Ho et al. (2020), section 4.3 and its appendix, made from a
//! trained model: each function returns a batch of images laid out row by row
//! for [`crate::data::save_grid`].
//!
//! - [`x0_chain`] (figure 6): the model's prediction of `x_0` at evenly spaced
//!   points of the reverse chain. Large-scale features appear first and details
//!   last: the chain is a coarse-to-fine decoder.
//! - [`shared_latent`] (figure 7): samples that share one `x_t` and differ only in
//!   the noise after it. Sharing `x_T` shares nothing; sharing a late `x_t` fixes
//!   almost everything, so the rows show which attributes are decided when.
//! - [`interpolate`] (figure 8): two images diffused to `x_t` and `x'_t` with
//!   `q_sample`, the latents mixed linearly, `(1 - lambda) x_t + lambda x'_t`, and
//!   each mix decoded by the reverse chain with the same noise for every lambda.

use autograd::Result;
use rand::Rng;
use tensor::{Tensor, TensorError};

use crate::diffusion::{normal, q_sample};
use crate::sample::{Chain, History};
use crate::schedule::{spaced_steps, NoiseSchedule};

/// Each image of the batch `copies` times: `[n * copies, ...]`, image `r`'s copies
/// together.
fn repeat_rows(x: &Tensor, copies: usize) -> Result<Tensor> {
    let order: Vec<usize> = (0..x.shape()[0])
        .flat_map(|r| std::iter::repeat_n(r, copies))
        .collect();
    x.index_select(0, &order)
}

/// Interleaves `columns` (each `[rows, C, H, W]`) into row-major order:
/// `[rows * columns.len(), C, H, W]`, row `r` holding every column's image `r`.
fn rows_of(columns: &[Tensor]) -> Result<Tensor> {
    let refs: Vec<&Tensor> = columns.iter().collect();
    let stacked = Tensor::concat(&refs, 0)?; // column-major
    let rows = columns[0].shape()[0];
    let order: Vec<usize> = (0..rows)
        .flat_map(|r| (0..columns.len()).map(move |c| c * rows + r))
        .collect();
    stacked.index_select(0, &order)
}

/// Figure 6: one row per image of `x_t` (`[n, C, H, W]` noise), `columns` predictions
/// of `x_0` along the whole chain, the last being the sample itself.
pub fn x0_chain<R: Rng + ?Sized>(chain: &Chain, x_t: Tensor, columns: usize, rng: &mut R) -> Result<Tensor> {
    let wanted = spaced_steps(chain.len(), columns); // indices, evenly spaced
    let mut x = x_t;
    let mut shots = Vec::new();
    let mut history = History::default();
    for i in (0..chain.len()).rev() {
        let step = chain.step(i, &x, &mut history, &mut |shape| normal(shape, rng))?;
        if wanted.contains(&i) {
            shots.push(step.x0);
        }
        x = step.x;
    }
    rows_of(&shots)
}

/// Runs the chain from index `from` down to the end.
fn finish<R: Rng + ?Sized>(
    chain: &Chain,
    from: usize,
    mut x: Tensor,
    mut history: History,
    rng: &mut R,
) -> Result<Tensor> {
    for i in (0..=from).rev() {
        x = chain
            .step(i, &x, &mut history, &mut |shape| normal(shape, rng))?
            .x;
    }
    Ok(x)
}

/// Figure 7: one chain from `x_t` (`[1, C, H, W]` noise); at each diffusion step of
/// `stops` it keeps the current `x_t` and finishes `copies` chains from it with
/// their own noise. Row `k` is `[x_t at stops[k], copies samples]`.
pub fn shared_latent<R: Rng + ?Sized>(
    chain: &Chain,
    x_t: Tensor,
    stops: &[usize],
    copies: usize,
    rng: &mut R,
) -> Result<Tensor> {
    if x_t.shape()[0] != 1 {
        return Err(TensorError::InvalidArgument {
            op: "shared_latent",
            msg: format!("starts from one image, got a batch of {}", x_t.shape()[0]),
        });
    }
    let entries: Vec<usize> = stops.iter().map(|&t| chain.index_at_or_below(t)).collect();
    let mut x = x_t;
    let mut rows = Vec::new();
    let mut history = History::default();
    for i in (0..chain.len()).rev() {
        if entries.contains(&i) {
            let copied = history.map(|d| repeat_rows(d, copies))?;
            let samples = finish(chain, i, repeat_rows(&x, copies)?, copied, rng)?;
            rows.push(Tensor::concat(&[&x, &samples], 0)?);
        }
        x = chain
            .step(i, &x, &mut history, &mut |shape| normal(shape, rng))?
            .x;
    }
    let refs: Vec<&Tensor> = rows.iter().collect();
    Tensor::concat(&refs, 0)
}

/// Figure 8: for each pair `(a[r], b[r])` of images (`[n, C, H, W]` in `[-1, 1]`),
/// `x_t = q_sample(a, t)`, `x'_t = q_sample(b, t)` with independent noise, and the
/// decoded mixes for `lambdas` evenly spaced `lambda` in `[0, 1]`, every mix of a
/// row decoded with the same noise. Row `r` is `[a[r], lambdas decodes, b[r]]`.
/// `t` is rounded down to a step the chain keeps.
pub fn interpolate<R: Rng + ?Sized>(
    chain: &Chain,
    schedule: &NoiseSchedule,
    a: &Tensor,
    b: &Tensor,
    t: usize,
    lambdas: usize,
    rng: &mut R,
) -> Result<Tensor> {
    if a.shape() != b.shape() || lambdas < 2 {
        return Err(TensorError::InvalidArgument {
            op: "interpolate",
            msg: format!(
                "needs two batches of one shape and at least 2 lambdas, got {:?}, {:?} and {lambdas}",
                a.shape(),
                b.shape()
            ),
        });
    }
    let n = a.shape()[0];
    let entry = chain.index_at_or_below(t);
    let steps = vec![chain.diffusion_step(entry); n];
    let x_a = q_sample(schedule, a, &steps, &normal(a.shape(), rng))?;
    let x_b = q_sample(schedule, b, &steps, &normal(b.shape(), rng))?;
    let mixes: Vec<Tensor> = (0..lambdas)
        .map(|k| {
            let l = k as f32 / (lambdas - 1) as f32;
            x_a.mul_scalar(1.0 - l).add(&x_b.mul_scalar(l))
        })
        .collect::<Result<_>>()?;
    // Row-major [n * lambdas]: every lambda of a row shares the row's noise.
    let mut x = rows_of(&mixes)?;
    let mut history = History::default();
    for i in (0..=entry).rev() {
        let mut shared = |shape: &[usize]| {
            let per_row = normal(&[n, shape[1], shape[2], shape[3]], rng);
            repeat_rows(&per_row, lambdas).expect("rows below n")
        };
        x = chain.step(i, &x, &mut history, &mut shared)?.x;
    }
    let mut rows = Vec::new();
    for r in 0..n {
        rows.extend([
            a.narrow(0, r, 1)?,
            x.narrow(0, r * lambdas, lambdas)?,
            b.narrow(0, r, 1)?,
        ]);
    }
    let refs: Vec<&Tensor> = rows.iter().collect();
    Tensor::concat(&refs, 0)
}
