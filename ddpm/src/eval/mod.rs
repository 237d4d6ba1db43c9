//! Evaluating generated digits with a trained classifier.
//!
//! Two numbers summarise a set of samples:
//!
//! - the *confident fraction*: the share of samples whose largest softmax
//!   probability exceeds a threshold (0.9), a proxy for "looks like some digit";
//! - a *Frechet distance on classifier features* ("FID" with the shipped LeNet in
//!   place of Inception): fit Gaussians `N(mu1, S1)`, `N(mu2, S2)` to the 128-d
//!   penultimate features of the samples and of real test images, then
//!
//!   `d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})`.
//!
//! `S1 S2` is not symmetric, so its square root is computed without complex
//! numbers: with `S1 = U diag(l) U^T` and `R = S1^{1/2} = U diag(sqrt(l)) U^T`,
//! `S1 S2 = R (R S2 R) R^{-1}` is similar to `M = R S2 R`, which is symmetric PSD;
//! hence `Tr((S1 S2)^{1/2}) = sum_k sqrt(eig_k(M))`. Both eigendecompositions use
//! the Jacobi solver of [`linalg`], in `f64`, clamping round-off negatives to 0.

pub mod linalg;

use std::fmt;
use std::path::Path;

use autograd::Var;
use nn::lenet::{LeNet, FEATURES};
use nn::module::Module;
use nn::safetensors::{self, CheckpointError};
use tensor::{Tensor, TensorError};

pub use linalg::symmetric_eigen;

/// The classifier shipped with the program (99.13% MNIST test accuracy).
const EMBEDDED_LENET: &[u8] = include_bytes!("../../assets/lenet.safetensors");
/// The number of digit classes.
pub const CLASSES: usize = 10;
/// Pixels per 28x28 grey image.
const PIXELS: usize = 28 * 28;

/// What can go wrong while evaluating.
#[derive(Debug)]
pub enum EvalError {
    /// A classifier checkpoint could not be read or does not fit [`LeNet`].
    Checkpoint {
        /// Where the weights came from.
        source_name: String,
        /// The underlying error.
        error: CheckpointError,
    },
    /// The images are not `[N, 1, 28, 28]`.
    ImageShape {
        /// The shape given.
        got: Vec<usize>,
    },
    /// A tensor operation failed.
    Tensor {
        /// What was being done.
        context: String,
        /// The underlying error.
        error: TensorError,
    },
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Checkpoint { source_name, error } => {
                write!(f, "loading classifier from {source_name}: {error}")
            }
            EvalError::ImageShape { got } => {
                write!(f, "classify: images must be [N, 1, 28, 28], got {got:?}")
            }
            EvalError::Tensor { context, error } => write!(f, "{context}: {error}"),
        }
    }
}

impl std::error::Error for EvalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EvalError::Checkpoint { error, .. } => Some(error),
            EvalError::Tensor { error, .. } => Some(error),
            EvalError::ImageShape { .. } => None,
        }
    }
}

fn tensor_err(context: &str) -> impl FnOnce(TensorError) -> EvalError + '_ {
    move |error| EvalError::Tensor {
        context: context.to_string(),
        error,
    }
}

/// The classifier shipped in the binary (`assets/lenet.safetensors`).
pub fn embedded_classifier() -> Result<LeNet, EvalError> {
    let wrap = |error| EvalError::Checkpoint {
        source_name: "the embedded lenet.safetensors".to_string(),
        error,
    };
    let model = untrained();
    let file = safetensors::deserialize(EMBEDDED_LENET).map_err(wrap)?;
    let params = model.parameters();
    let expected: Vec<(String, Vec<usize>)> = params.iter().map(|(n, p)| (n.clone(), p.shape())).collect();
    file.check_against(&expected).map_err(wrap)?;
    for (name, p) in &params {
        let value = file.tensor(name).map_err(wrap)?.clone();
        p.set_value(value)
            .map_err(tensor_err("setting a classifier parameter"))?;
    }
    Ok(model)
}

/// A classifier read from a safetensors file the user gives (names as in
/// `LeNet::parameters()`, as written by the `nn` crate's `mnist` example).
pub fn load_classifier(path: &Path) -> Result<LeNet, EvalError> {
    let model = untrained();
    nn::checkpoint::load_parameters(path, &model.parameters()).map_err(|error| EvalError::Checkpoint {
        source_name: path.display().to_string(),
        error,
    })?;
    Ok(model)
}

/// A LeNet with placeholder weights, to be overwritten by a checkpoint.
fn untrained() -> LeNet {
    use rand::SeedableRng;
    LeNet::new(&mut rand::rngs::StdRng::seed_from_u64(0))
}

/// The classifier's view of `n` images: features and class probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    /// Penultimate features, `n x 128` row-major (non-negative: after a ReLU).
    pub features: Vec<f32>,
    /// Softmax probabilities, `n x 10` row-major.
    pub probs: Vec<f32>,
    /// The number of images.
    pub n: usize,
}

/// Features `[N, 128]` and softmax probabilities `[N, 10]` of `images`
/// `[N, 1, 28, 28]` in `[-1, 1]`, `batch` images at a time (bounding memory),
/// without recording a tape.
pub fn classify(model: &LeNet, images: &Tensor, batch: usize) -> Result<Classified, EvalError> {
    let shape = images.shape().to_vec();
    let n = shape.first().copied().unwrap_or(0);
    if shape.len() != 4 || shape[1..] != [1, 28, 28] {
        return Err(EvalError::ImageShape { got: shape });
    }
    let pixels = images.to_vec();
    let mut out = Classified {
        features: Vec::with_capacity(n * FEATURES),
        probs: Vec::with_capacity(n * CLASSES),
        n,
    };
    for chunk in pixels.chunks(batch.max(1) * PIXELS) {
        let b = chunk.len() / PIXELS;
        let x = Tensor::from_vec(chunk.to_vec(), &[b, 1, 28, 28]).map_err(tensor_err("classify: batch"))?;
        let (features, logits) = autograd::no_grad(|| forward(model, &Var::constant(x)))?;
        out.features.extend(features);
        out.probs.extend(logits.chunks(CLASSES).flat_map(softmax));
    }
    Ok(out)
}

/// The features and logits of one batch, as flat vectors.
fn forward(model: &LeNet, x: &Var) -> Result<(Vec<f32>, Vec<f32>), EvalError> {
    let features = model.features(x).map_err(tensor_err("classify: features"))?;
    let logits = model
        .fc2
        .forward(&features)
        .map_err(tensor_err("classify: logits"))?;
    Ok((features.value().to_vec(), logits.value().to_vec()))
}

/// The softmax of one row of logits, shifted by its maximum for stability.
fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|&z| (z - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// The fraction of rows of `probs` (`classes` per row) whose largest probability
/// exceeds `threshold`; 0 for no rows.
pub fn confident_fraction(probs: &[f32], classes: usize, threshold: f32) -> f64 {
    let rows = probs.len() / classes.max(1);
    if rows == 0 {
        return 0.0;
    }
    let confident = probs
        .chunks(classes)
        .filter(|row| row.iter().copied().fold(f32::NEG_INFINITY, f32::max) > threshold)
        .count();
    confident as f64 / rows as f64
}

/// The most probable class of each row of `probs` (`classes` per row; the first on ties).
pub fn predicted_classes(probs: &[f32], classes: usize) -> Vec<usize> {
    probs
        .chunks(classes.max(1))
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |best, (i, &p)| if p > best.1 { (i, p) } else { best },
                )
                .0
        })
        .collect()
}

/// A multivariate Gaussian fitted to feature vectors, in `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gaussian {
    /// The mean, `dim` entries.
    pub mean: Vec<f64>,
    /// The covariance, `dim x dim` row-major.
    pub cov: Vec<f64>,
    /// The dimension.
    pub dim: usize,
}

/// The sample mean and unbiased covariance (divided by `n - 1`; by 1 when `n < 2`)
/// of `n` rows of `dim` features (`features.len() == n * dim`), accumulated in `f64`.
pub fn fit_gaussian(features: &[f32], n: usize, dim: usize) -> Gaussian {
    assert_eq!(
        features.len(),
        n * dim,
        "fit_gaussian: {} values for {n}x{dim}",
        features.len()
    );
    let mut mean = vec![0.0; dim];
    for row in features.chunks(dim.max(1)) {
        mean.iter_mut().zip(row).for_each(|(m, &x)| *m += f64::from(x));
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    let mut cov = vec![0.0; dim * dim];
    for row in features.chunks(dim.max(1)) {
        let d: Vec<f64> = row.iter().zip(&mean).map(|(&x, m)| f64::from(x) - m).collect();
        for (i, di) in d.iter().enumerate() {
            cov[i * dim..(i + 1) * dim]
                .iter_mut()
                .zip(&d)
                .for_each(|(c, dj)| *c += di * dj);
        }
    }
    let denom = n.saturating_sub(1).max(1) as f64;
    cov.iter_mut().for_each(|c| *c /= denom);
    Gaussian { mean, cov, dim }
}

/// The squared Frechet (2-Wasserstein) distance between two Gaussians of one
/// dimension: `||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})`, clamped at 0.
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> f64 {
    assert_eq!(a.dim, b.dim, "frechet_distance: dimensions differ");
    let n = a.dim;
    let mean_term: f64 = a.mean.iter().zip(&b.mean).map(|(x, y)| (x - y) * (x - y)).sum();
    let trace = |m: &[f64]| (0..n).map(|i| m[i * n + i]).sum::<f64>();
    let (l, u) = symmetric_eigen(&a.cov, n);
    let root = linalg::from_eigen(&l, &u, n, |x| x.max(0.0).sqrt());
    let m = linalg::matmul(&linalg::matmul(&root, &b.cov, n), &root, n);
    let cross: f64 = symmetric_eigen(&m, n).0.iter().map(|x| x.max(0.0).sqrt()).sum();
    (mean_term + trace(&a.cov) + trace(&b.cov) - 2.0 * cross).max(0.0)
}
