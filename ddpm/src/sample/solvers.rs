//! Fast ODE solvers for the reverse process, as small step functions on the
//! network's prediction of `x_0` (its "data prediction" `D`).
//!
//! The probability-flow ODE of the forward process `x_t = alpha_t x_0 + sigma_t
//! eps` (here `alpha_t = sqrt(alpha_bar_t)`, `sigma_t = sqrt(1 - alpha_bar_t)`) is
//! solved exactly in its linear part when written in the half log-SNR
//! `lambda_t = log(alpha_t / sigma_t)`. With `h = lambda_to - lambda_from`
//! (Lu et al. 2022, "DPM-Solver++"):
//!
//! ```text
//! first order (= DDIM, eta 0)  x_to = (sigma_to / sigma_from) x + alpha_to (1 - e^-h) D
//! 2M (multistep)               D' = (1 + 1/(2r)) D - 1/(2r) D_prev,   r = h_prev / h,  then first order with D'
//! 2S (singlestep)              u = first order to a trained step s with lambda_s ~ lambda_from + h/2,
//!                              D' = (1 - 1/(2 r1)) D + 1/(2 r1) D(u, s),  r1 = (lambda_s - lambda_from) / h
//! 2M SDE                       x_to = (sigma_to / sigma_from) e^-h x + alpha_to (1 - e^-2h) (D + (D - D_prev) / (2r))
//!                                     + sigma_to sqrt(1 - e^-2h) z
//! ```
//!
//! Heun's method (Karras et al. 2022, "EDM") integrates the same ODE in
//! `sigma_e = sigma / alpha` and `x~ = x / alpha`, where it reads
//! `dx~/dsigma_e = (x~ - D) / sigma_e`: an Euler step (which is the first-order
//! step above), then the slope at its end averaged with the slope at its start.
//!
//! The step to clean data (`sigma_to = 0`, `h = inf`) is first order for every
//! solver and returns `D` itself. Points are trained steps only: the network
//! never sees a step it was not trained on.

use autograd::Result;
use tensor::Tensor;

/// A point of the reverse chain: a trained step and its `alpha_t`, `sigma_t`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// The trained step (meaningless for [`Point::CLEAN`]).
    pub t: usize,
    /// `sqrt(alpha_bar_t)`.
    pub alpha: f64,
    /// `sqrt(1 - alpha_bar_t)`.
    pub sigma: f64,
}

impl Point {
    /// Clean data: `alpha = 1`, `sigma = 0`.
    pub const CLEAN: Point = Point {
        t: 0,
        alpha: 1.0,
        sigma: 0.0,
    };

    /// The trained step `t` of a schedule with cumulative products `alpha_bar`.
    pub fn at(alpha_bar: &[f64], t: usize) -> Point {
        Point {
            t,
            alpha: alpha_bar[t].sqrt(),
            sigma: (1.0 - alpha_bar[t]).sqrt(),
        }
    }

    /// `lambda = log(alpha / sigma)` (infinite for clean data).
    pub fn lambda(self) -> f64 {
        (self.alpha / self.sigma).ln()
    }

    /// Whether this is clean data.
    pub fn is_clean(self) -> bool {
        self.sigma == 0.0
    }
}

/// The network's data prediction at a point: `D(x, t)`.
pub type Denoise<'a> = dyn FnMut(&Tensor, usize) -> Result<Tensor> + 'a;

/// The first-order step (DDIM with `eta = 0`, DPM-Solver++ 1) from `from` to `to`
/// with data prediction `d`.
pub fn first_order(x: &Tensor, from: Point, to: Point, d: &Tensor) -> Result<Tensor> {
    if to.is_clean() {
        return Ok(d.clone());
    }
    // alpha_to (1 - e^-h) with e^-h = (sigma_to / alpha_to) / (sigma_from / alpha_from).
    let ratio = to.sigma / from.sigma;
    let coef = to.alpha - ratio * from.alpha;
    x.mul_scalar(ratio as f32).add(&d.mul_scalar(coef as f32))
}

/// DPM-Solver++(2M): the first-order step with `D` corrected by the previous
/// point's prediction `prev` (first order without one).
pub fn dpm2m(
    x: &Tensor,
    from: Point,
    to: Point,
    d: &Tensor,
    prev: Option<(Point, &Tensor)>,
) -> Result<Tensor> {
    match prev {
        Some((p, d_prev)) if !to.is_clean() => {
            let r = (from.lambda() - p.lambda()) / (to.lambda() - from.lambda());
            let k = 1.0 / (2.0 * r);
            let corrected = d.mul_scalar((1.0 + k) as f32).sub(&d_prev.mul_scalar(k as f32))?;
            first_order(x, from, to, &corrected)
        }
        _ => first_order(x, from, to, d),
    }
}

/// DPM-Solver++(2M) SDE: the stochastic multistep update with noise `z` (first
/// order without a previous prediction).
pub fn dpm2m_sde(
    x: &Tensor,
    from: Point,
    to: Point,
    d: &Tensor,
    prev: Option<(Point, &Tensor)>,
    z: &Tensor,
) -> Result<Tensor> {
    if to.is_clean() {
        return Ok(d.clone());
    }
    let h = to.lambda() - from.lambda();
    let (e1, e2) = ((-h).exp(), (-2.0 * h).exp());
    let mut data = d.clone();
    if let Some((p, d_prev)) = prev {
        let r = (from.lambda() - p.lambda()) / h;
        data = data.add(&d.sub(d_prev)?.mul_scalar((0.5 / r) as f32))?;
    }
    x.mul_scalar((to.sigma / from.sigma * e1) as f32)
        .add(&data.mul_scalar((to.alpha * (1.0 - e2)) as f32))?
        .add(&z.mul_scalar((to.sigma * (1.0 - e2).sqrt()) as f32))
}

/// DPM-Solver++(2S): one step through the intermediate trained step `mid`
/// (first order when there is none strictly between `from` and `to`).
pub fn dpm2s(
    x: &Tensor,
    from: Point,
    to: Point,
    d: &Tensor,
    mid: Option<Point>,
    denoise: &mut Denoise<'_>,
) -> Result<Tensor> {
    match mid {
        Some(s) if !to.is_clean() => {
            let u = first_order(x, from, s, d)?;
            let d_s = denoise(&u, s.t)?;
            let k = 1.0 / (2.0 * (s.lambda() - from.lambda()) / (to.lambda() - from.lambda()));
            let corrected = d.mul_scalar((1.0 - k) as f32).add(&d_s.mul_scalar(k as f32))?;
            first_order(x, from, to, &corrected)
        }
        _ => first_order(x, from, to, d),
    }
}

/// Heun's step in EDM's coordinates (Euler to clean data).
pub fn heun(x: &Tensor, from: Point, to: Point, d: &Tensor, denoise: &mut Denoise<'_>) -> Result<Tensor> {
    let euler = first_order(x, from, to, d)?;
    if to.is_clean() {
        return Ok(euler);
    }
    let d_to = denoise(&euler, to.t)?;
    let (se_from, se_to) = (from.sigma / from.alpha, to.sigma / to.alpha);
    let x_from = x.mul_scalar((1.0 / from.alpha) as f32);
    let x_euler = euler.mul_scalar((1.0 / to.alpha) as f32);
    // slopes (x~ - D) / sigma_e at both ends, averaged over the step.
    let slope_from = x_from.sub(d)?.mul_scalar((1.0 / se_from) as f32);
    let slope_to = x_euler.sub(&d_to)?.mul_scalar((1.0 / se_to) as f32);
    let step = slope_from
        .add(&slope_to)?
        .mul_scalar((0.5 * (se_to - se_from)) as f32);
    Ok(x_from.add(&step)?.mul_scalar(to.alpha as f32))
}

/// The trained step strictly between `to.t` and `from.t` whose `lambda` is
/// nearest to the middle of the two, for [`dpm2s`].
pub fn midpoint(alpha_bar: &[f64], from: Point, to: Point) -> Option<Point> {
    if to.is_clean() || from.t <= to.t + 1 {
        return None;
    }
    let target = 0.5 * (from.lambda() + to.lambda());
    (to.t + 1..from.t)
        .map(|t| Point::at(alpha_bar, t))
        .min_by(|a, b| {
            (a.lambda() - target)
                .abs()
                .total_cmp(&(b.lambda() - target).abs())
        })
}
