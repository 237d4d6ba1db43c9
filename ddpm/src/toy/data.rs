//! The Swiss roll: the toy's data distribution, its conversions between points
//! and tensors, and the nearest-neighbour distance that measures how close
//! samples come to it.
//!
//! ```text
//! p = (s cos s, s sin s) / c + N(0, noise^2 I),   s ~ U(1.5 pi, 4.5 pi)
//! c = sqrt(E[s^2] / 2) = pi sqrt(39 / 8)          (unit mean square per coordinate)
//! ```

use std::f64::consts::PI;

use autograd::Result;
use rand::Rng;
use rand_distr::StandardNormal;
use tensor::Tensor;

use crate::diffusion::normal;

/// A point of the plane.
pub type Point = [f32; 2];

/// Standard deviation of the Gaussian noise added to the roll, in the scaled units.
pub const ROLL_NOISE: f64 = 0.04;

/// The roll's scale `c = sqrt(E[s^2] / 2)`: for `s ~ U(a, b)`,
/// `E[s^2] = (a^2 + a b + b^2) / 3 = 9.75 pi^2` with `a = 1.5 pi`, `b = 4.5 pi`,
/// so `|p|^2 = s^2 / c^2` has mean 2: one per coordinate.
pub fn roll_scale() -> f64 {
    PI * (39.0f64 / 8.0).sqrt()
}

/// `n` points of the Swiss roll with Gaussian noise of standard deviation `noise`
/// (0 for points exactly on the spiral, where `|p| c = s` and `p` has angle `s`).
pub fn swiss_roll<R: Rng + ?Sized>(n: usize, noise: f64, rng: &mut R) -> Vec<Point> {
    let c = roll_scale();
    (0..n)
        .map(|_| {
            let s = rng.gen_range(1.5 * PI..4.5 * PI);
            let mut jitter = || noise * rng.sample::<f64, _>(StandardNormal);
            [
                (s * s.cos() / c + jitter()) as f32,
                (s * s.sin() / c + jitter()) as f32,
            ]
        })
        .collect()
}

/// `n` draws of the prior `N(0, I)`.
pub fn gaussian<R: Rng + ?Sized>(n: usize, rng: &mut R) -> Vec<Point> {
    to_points(&normal(&[n, 2], rng))
}

/// Points as a `[n, 2]` tensor.
pub fn to_tensor(points: &[Point]) -> Tensor {
    let data = points.iter().flatten().copied().collect();
    Tensor::from_vec(data, &[points.len(), 2]).expect("two values per point")
}

/// A `[n, 2]` (or `[n, 2, 1, 1]`) tensor as points.
pub fn to_points(x: &Tensor) -> Vec<Point> {
    x.to_vec().chunks_exact(2).map(|p| [p[0], p[1]]).collect()
}

/// `[B, 2]` as `[B, 2, 1, 1]`, the image shape the diffusion functions expect.
pub(super) fn as_images(x: &Tensor) -> Result<Tensor> {
    x.reshape(&[x.shape()[0], 2, 1, 1])
}

/// `[B, 2, 1, 1]` back to `[B, 2]`.
pub(super) fn as_points(x: &Tensor) -> Result<Tensor> {
    x.reshape(&[x.shape()[0], 2])
}

/// The mean over `points` of the Euclidean distance to the nearest point of
/// `reference` (brute force).
pub fn mean_nearest_distance(points: &[Point], reference: &[Point]) -> f64 {
    let nearest = |p: &Point| {
        reference
            .iter()
            .map(|q| (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2))
            .fold(f32::INFINITY, f32::min)
            .sqrt() as f64
    };
    points.iter().map(nearest).sum::<f64>() / points.len().max(1) as f64
}
