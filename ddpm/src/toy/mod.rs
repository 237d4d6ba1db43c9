//! The 2-D picture of Sohl-Dickstein et al. (2015), figure 1, made with a DDPM: a
//! Swiss roll diffused into a Gaussian, and a small network that learns to run
//! the diffusion backwards.
//!
//! Everything is the image model's maths on points instead of pictures: a batch
//! of points `[B, 2]` is reshaped to `[B, 2, 1, 1]` so that [`q_sample`],
//! [`predict_x0`] and [`posterior_mean`] apply unchanged.
//!
//! ```text
//! data     p = (s cos s, s sin s) / c + N(0, noise^2 I),   s ~ U(1.5 pi, 4.5 pi)
//!          c = sqrt(E[s^2] / 2) = pi sqrt(39 / 8)          (unit mean square per coordinate)
//! forward  x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps                  (row 1 of the figure)
//! model    eps_theta(x, t) = W_out h_L,   h_l = silu(W_l h_{l-1} + b_l + V_l emb(t)),   h_0 = x
//! loss     L_simple = E || eps - eps_theta(x_t, t) ||^2
//! reverse  x_{t-1} = mu_theta(x_t, t) + sqrt(beta_tilde_t) z,
//!          mu_theta = coef_x0_t x0_hat + coef_xt_t x_t,   x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_bar_t)   (row 2)
//! drift    mu_theta(x, t) - x, on a grid of points x                                  (row 3)
//! ```
//! `T = 100` steps of a cosine schedule on a cubed clock ([`toy_schedule`]), so
//! that the figure's columns `t = 0, T/4, T/2, 3T/4, T` show the roll dissolving
//! gradually. Time: the paper's `t = 1..T` is step index `t - 1` of
//! [`NoiseSchedule`]; a chain of states is indexed by the paper's `t` (`chain[0]`
//! is `x_0`, `chain[T]` is `x_T`).
//!
//! The drift row reads like Sohl-Dickstein's: arrows converge on the data. At
//! `t = 1` the step is tiny near the roll (its noise level is tiny) and the arrows
//! away from it are the network's extrapolation, since training never puts `x_1`
//! there.
//!
//! The check printed beside the figure is the mean distance from each point to its
//! nearest neighbour in a fresh reference sample of the roll: near the roll's own
//! noise level for good samples, several times larger for the `N(0, I)` prior.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::time::Instant;

use autograd::{no_grad, Parameter, Result, Var};
use nn::init::Init;
use nn::layers::Linear;
use nn::module::join;
use nn::optim::{Adam, LrSchedule, Optimizer};
use nn::Module;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use tensor::{Tensor, TensorError};

use crate::diffusion::{normal, posterior_mean, predict_x0, q_sample};
use crate::plot::{colour, font, Canvas, Panel, PixelRect, Rgb};
use crate::schedule::NoiseSchedule;
use crate::unet::timestep_embedding;

/// A point of the plane.
pub type Point = [f32; 2];

/// Standard deviation of the Gaussian noise added to the roll, in the scaled units.
pub const ROLL_NOISE: f64 = 0.04;

/// Dimension of the sinusoidal time embedding.
const EMB_DIM: usize = 32;

/// The roll's scale `c = sqrt(E[s^2] / 2)`: for `s ~ U(a, b)`,
/// `E[s^2] = (a^2 + a b + b^2) / 3 = 9.75 pi^2` with `a = 1.5 pi`, `b = 4.5 pi`,
/// so `|p|^2 = s^2 / c^2` has mean 2: one per coordinate.
pub fn roll_scale() -> f64 {
    PI * (39.0f64 / 8.0).sqrt()
}

/// The offset `s` of the cosine schedule (Nichol and Dhariwal 2021).
const COSINE_OFFSET: f64 = 0.008;

/// The toy's diffusion: the cosine schedule run on a cubed clock,
/// `alpha_bar(t) = f(t) / f(0)` with `f(t) = cos(((t / T)^3 + s) / (1 + s) pi / 2)^2`
/// and `beta_t = 1 - alpha_bar(t + 1) / alpha_bar(t)` (clipped at 0.999). The plain
/// cosine schedule has already blurred the roll's arms (0.9 apart) into noise by
/// `T / 4` (noise `sqrt(1 - alpha_bar)` = 0.39); on the cubed clock the noise is
/// 0.04 at `T / 4`, 0.21 at `T / 2` and 0.62 at `3 T / 4`, so the figure's columns
/// show the roll dissolving.
pub fn toy_schedule(steps: usize) -> NoiseSchedule {
    let f = |t: usize| {
        let u = (t as f64 / steps as f64).powi(3);
        ((u + COSINE_OFFSET) / (1.0 + COSINE_OFFSET) * PI / 2.0)
            .cos()
            .powi(2)
    };
    NoiseSchedule::from_betas((0..steps).map(|t| (1.0 - f(t + 1) / f(t)).min(0.999)).collect())
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
fn as_images(x: &Tensor) -> Result<Tensor> {
    x.reshape(&[x.shape()[0], 2, 1, 1])
}

/// `[B, 2, 1, 1]` back to `[B, 2]`.
fn as_points(x: &Tensor) -> Result<Tensor> {
    x.reshape(&[x.shape()[0], 2])
}

/// The epsilon-predictor: an MLP on the point, with the time embedding projected
/// into and added to every hidden layer, and a zero-initialised output layer (the
/// untrained model predicts no noise, as the U-Net does).
pub struct ToyModel {
    layers: Vec<Linear>,
    time: Vec<Linear>,
    output: Linear,
}

impl ToyModel {
    /// `depth` hidden layers of `hidden` units.
    pub fn new<R: Rng + ?Sized>(hidden: usize, depth: usize, rng: &mut R) -> ToyModel {
        let depth = depth.max(1);
        let layers = (0..depth)
            .map(|l| Linear::new(if l == 0 { 2 } else { hidden }, hidden, Init::KaimingUniform, rng))
            .collect();
        let time = (0..depth)
            .map(|_| Linear::new(EMB_DIM, hidden, Init::KaimingUniform, rng))
            .collect();
        let output = Linear::new(hidden, 2, Init::Zeros, rng);
        ToyModel { layers, time, output }
    }

    /// `eps_theta(x, t)` for points `x` (`[B, 2]`) at step indices `t` (one each).
    pub fn forward(&self, x: &Var, t: &[usize]) -> Result<Var> {
        if x.shape().len() != 2 || x.shape()[1] != 2 || x.shape()[0] != t.len() {
            return Err(TensorError::InvalidArgument {
                op: "ToyModel",
                msg: format!(
                    "need [B, 2] points and B steps, got {:?} and {}",
                    x.shape(),
                    t.len()
                ),
            });
        }
        let emb = Var::constant(timestep_embedding(t, EMB_DIM));
        let mut h = x.clone();
        for (layer, time) in self.layers.iter().zip(&self.time) {
            h = layer.forward(&h)?.add(&time.forward(&emb)?)?.silu();
        }
        self.output.forward(&h)
    }

    /// `eps_theta(x, t)` with every point at step index `t`, without the tape.
    pub fn eps(&self, x: &Tensor, t: usize) -> Result<Tensor> {
        let steps = vec![t; x.shape()[0]];
        no_grad(|| Ok(self.forward(&Var::constant(x.clone()), &steps)?.value().clone()))
    }
}

impl Module for ToyModel {
    fn collect_parameters(&self, prefix: &str, out: &mut Vec<(String, Parameter)>) {
        for (i, (l, t)) in self.layers.iter().zip(&self.time).enumerate() {
            l.collect_parameters(&join(prefix, &format!("layers.{i}")), out);
            t.collect_parameters(&join(prefix, &format!("time.{i}")), out);
        }
        self.output.collect_parameters(&join(prefix, "output"), out);
    }
}

/// What to train.
#[derive(Debug, Clone, PartialEq)]
pub struct ToyOptions {
    /// Adam steps.
    pub steps: usize,
    /// Points per step (fresh from the roll every step).
    pub batch: usize,
    /// Peak learning rate (cosine-decayed to a tenth over the run).
    pub lr: f32,
    /// `T`.
    pub diffusion_steps: usize,
    /// Hidden units per layer.
    pub hidden: usize,
    /// Hidden layers.
    pub depth: usize,
    /// Seed of everything random.
    pub seed: u64,
}

impl Default for ToyOptions {
    fn default() -> ToyOptions {
        ToyOptions {
            steps: 4000,
            batch: 256,
            lr: 2e-3,
            diffusion_steps: 100,
            hidden: 128,
            depth: 3,
            seed: 0,
        }
    }
}

/// A trained toy model and how its training went.
pub struct Trained {
    /// The epsilon-predictor.
    pub model: ToyModel,
    /// The diffusion it was trained for.
    pub schedule: NoiseSchedule,
    /// `L_simple` of each step's batch.
    pub losses: Vec<f32>,
    /// Training time in seconds.
    pub seconds: f64,
}

/// `L_simple` for points `x0` (`[B, 2]`) at step indices `t` with noise `eps`
/// (`[B, 2]`): the mean of `(eps - eps_theta(q_sample(x0, t, eps), t))^2`.
pub fn loss_at(
    model: &ToyModel,
    schedule: &NoiseSchedule,
    x0: &Tensor,
    t: &[usize],
    eps: &Tensor,
) -> Result<Var> {
    let x_t = as_points(&q_sample(schedule, &as_images(x0)?, t, &as_images(eps)?)?)?;
    model
        .forward(&Var::constant(x_t), t)?
        .mse_loss(&Var::constant(eps.clone()))
}

/// Trains a fresh model on the Swiss roll with Adam on `L_simple`; `log` gets a
/// progress line now and then.
pub fn train(opts: &ToyOptions, mut log: impl FnMut(&str)) -> Result<Trained> {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let schedule = toy_schedule(opts.diffusion_steps);
    let model = ToyModel::new(opts.hidden, opts.depth, &mut rng);
    let params: Vec<Parameter> = model.parameters().into_iter().map(|(_, p)| p).collect();
    let mut adam = Adam::new(params, opts.lr);
    let lr = LrSchedule {
        base: opts.lr,
        warmup: 0,
        total: Some(opts.steps as u64),
        min: opts.lr / 10.0,
    };
    let (start, mut losses) = (Instant::now(), Vec::with_capacity(opts.steps));
    for step in 0..opts.steps {
        let x0 = to_tensor(&swiss_roll(opts.batch, ROLL_NOISE, &mut rng));
        let t: Vec<usize> = (0..opts.batch)
            .map(|_| rng.gen_range(0..schedule.steps()))
            .collect();
        let eps = normal(&[opts.batch, 2], &mut rng);
        adam.zero_grad();
        let loss = loss_at(&model, &schedule, &x0, &t, &eps)?;
        losses.push(loss.value().item()?);
        loss.backward()?;
        adam.set_lr(lr.at(step as u64));
        adam.step()?;
        if (step + 1) % 1000 == 0 {
            let recent = mean(&losses[losses.len().saturating_sub(200)..]);
            log(&format!("  step {:>5}  loss {recent:.4}", step + 1));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Trained {
        model,
        schedule,
        losses,
        seconds,
    })
}

/// The mean of `values` (0 when empty).
pub fn mean(values: &[f32]) -> f64 {
    values.iter().map(|&v| v as f64).sum::<f64>() / values.len().max(1) as f64
}

/// `mu_theta(x_t, t)` for points `x` (`[B, 2]`) at step index `t`: the posterior mean
/// with the model's `x0_hat` in place of `x_0`.
pub fn reverse_mean(model: &ToyModel, schedule: &NoiseSchedule, x: &Tensor, t: usize) -> Result<Tensor> {
    let steps = vec![t; x.shape()[0]];
    let (x4, eps) = (as_images(x)?, as_images(&model.eps(x, t)?)?);
    let x0 = predict_x0(schedule, &x4, &steps, &eps)?;
    as_points(&posterior_mean(schedule, &x0, &x4, &steps)?)
}

/// The drift `mu_theta(x, t) - x` at each point, step index `t`.
pub fn drift(model: &ToyModel, schedule: &NoiseSchedule, points: &[Point], t: usize) -> Result<Vec<Point>> {
    let x = to_tensor(points);
    Ok(to_points(&reverse_mean(model, schedule, &x, t)?.sub(&x)?))
}

/// The reverse chain from `n` prior draws: `chain[t]` is `x_t` for the paper's
/// `t = 0..=T` (`chain[T]` the noise, `chain[0]` the samples). Each step adds
/// `sqrt(beta_tilde) z`, except the last.
pub fn reverse_chain<R: Rng + ?Sized>(
    model: &ToyModel,
    schedule: &NoiseSchedule,
    n: usize,
    rng: &mut R,
) -> Result<Vec<Vec<Point>>> {
    let steps = schedule.steps();
    let mut x = normal(&[n, 2], rng);
    let mut chain = vec![Vec::new(); steps + 1];
    chain[steps] = to_points(&x);
    for t in (0..steps).rev() {
        let mu = reverse_mean(model, schedule, &x, t)?;
        x = if t > 0 {
            let z = normal(&[n, 2], rng);
            mu.add(&z.mul_scalar(schedule.beta_tilde[t].sqrt() as f32))?
        } else {
            mu
        };
        chain[t] = to_points(&x);
    }
    Ok(chain)
}

/// Draws of `q(x_t | x_0)` for each point of `x0`, at the paper's time `t`
/// (`t = 0` returns `x0`).
pub fn forward_marginal<R: Rng + ?Sized>(
    schedule: &NoiseSchedule,
    x0: &[Point],
    t: usize,
    rng: &mut R,
) -> Result<Vec<Point>> {
    if t == 0 {
        return Ok(x0.to_vec());
    }
    let eps = normal(&[x0.len(), 2, 1, 1], rng);
    let steps = vec![t - 1; x0.len()];
    Ok(to_points(&q_sample(
        schedule,
        &as_images(&to_tensor(x0))?,
        &steps,
        &eps,
    )?))
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

/// The figure's layout, in pixels.
const PANEL: usize = 190;
const GAP: usize = 14;
const LEFT: usize = 120;
const TOP: usize = 78;
const COLUMNS: usize = 5;
const ROWS: usize = 3;
/// Data range of every panel, `[-R, R]` on both axes.
const RANGE: f64 = 2.7;
/// Drift arrows per side of the grid.
const GRID: usize = 15;

/// The paper's times of the figure's columns: `0, T/4, T/2, 3T/4, T`.
pub fn column_times(steps: usize) -> [usize; COLUMNS] {
    [0, 1, 2, 3, 4].map(|k| (k * steps + 2) / 4)
}

/// The three rows of the figure, as points (rows 1 and 2) and arrows (row 3).
pub struct FigureData {
    /// `q(x_t)` samples at each column's time.
    pub forward: Vec<Vec<Point>>,
    /// Reverse-chain samples at each column's time.
    pub reverse: Vec<Vec<Point>>,
    /// `(grid point, drift)` at each column's time (`t = 1` in the first column).
    pub drift: Vec<Vec<(Point, Point)>>,
    /// The paper's time of each column.
    pub times: [usize; COLUMNS],
}

/// The points and arrows of the figure: `data` diffused forward, `chain` (from
/// [`reverse_chain`]) at the same times, and the drift on a grid.
pub fn figure_data<R: Rng + ?Sized>(
    trained: &Trained,
    data: &[Point],
    chain: &[Vec<Point>],
    rng: &mut R,
) -> Result<FigureData> {
    let times = column_times(trained.schedule.steps());
    let forward = times
        .iter()
        .map(|&t| forward_marginal(&trained.schedule, data, t, rng))
        .collect::<Result<Vec<_>>>()?;
    let reverse = times.iter().map(|&t| chain[t].clone()).collect();
    let side = |i: usize| (-RANGE + 2.0 * RANGE * (i as f64 + 0.5) / GRID as f64) as f32;
    let grid: Vec<Point> = (0..GRID * GRID)
        .map(|k| [side(k % GRID), side(k / GRID)])
        .collect();
    let drift = times
        .iter()
        .map(|&t| {
            let d = drift(&trained.model, &trained.schedule, &grid, t.max(1) - 1)?;
            Ok(grid.iter().copied().zip(d).collect())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(FigureData {
        forward,
        reverse,
        drift,
        times,
    })
}

/// The axes of the panel in `row`, `col`.
fn panel_at(row: usize, col: usize) -> Panel {
    let rect = PixelRect {
        left: (LEFT + col * (PANEL + GAP)) as i64,
        top: (TOP + row * (PANEL + GAP)) as i64,
        width: PANEL,
        height: PANEL,
    };
    Panel::new(rect, (-RANGE, RANGE), (-RANGE, RANGE), false).expect("a valid fixed range")
}

fn as_pairs(points: &[Point]) -> Vec<(f64, f64)> {
    points.iter().map(|p| (p[0] as f64, p[1] as f64)).collect()
}

/// `text` on a white box in the top-left corner inside a panel.
fn corner_label(canvas: &mut Canvas, panel: &Panel, text: &str) {
    let r = panel.rect();
    let w = font::text_width(text, 1);
    canvas.fill_rect(r.left + 1, r.top + 1, w + 8, font::HEIGHT + 8, colour::WHITE);
    canvas.text(r.left + 5, r.top + 5, text, colour::BLACK, 1);
}

/// Draws the figure: three rows of five panels, row labels on the left, times on
/// top.
pub fn draw_figure(fig: &FigureData, steps: usize) -> Canvas {
    let width = LEFT + COLUMNS * (PANEL + GAP);
    let height = TOP + ROWS * (PANEL + GAP);
    let mut canvas = Canvas::new(width, height, colour::WHITE);
    let title = format!("DDPM ON A SWISS ROLL (T = {steps})");
    let w = font::text_width(&title, 2) as i64;
    canvas.text((width as i64 - w) / 2, 12, &title, colour::BLACK, 2);
    for (col, &t) in fig.times.iter().enumerate() {
        let r = panel_at(0, col).rect();
        let label = format!("T = {t}");
        let lw = font::text_width(&label, 2) as i64;
        canvas.text(
            r.left + (PANEL as i64 - lw) / 2,
            r.top - 24,
            &label,
            colour::BLACK,
            2,
        );
        draw_points(&mut canvas, &panel_at(0, col), &fig.forward[col], POINTS);
        draw_points(&mut canvas, &panel_at(1, col), &fig.reverse[col], POINTS);
        draw_points(
            &mut canvas,
            &panel_at(2, col),
            &fig.reverse[col],
            colour::LIGHT_GREY,
        );
        draw_arrows(&mut canvas, &panel_at(2, col), &fig.drift[col]);
        corner_label(&mut canvas, &panel_at(2, col), &format!("T = {}", t.max(1)));
    }
    let rows: [&[&str]; ROWS] = [
        &["FORWARD", "Q(X_T)", "DATA TO NOISE"],
        &["REVERSE", "P(X_T)", "NOISE TO DATA"],
        &["DRIFT", "MU(X_T, T) - X_T", "(RESCALED)"],
    ];
    for (row, lines) in rows.iter().enumerate() {
        let top = panel_at(row, 0).rect().top + PANEL as i64 / 2 - 20;
        for (k, line) in lines.iter().enumerate() {
            let scale = if k == 0 { 2 } else { 1 };
            let y = top + if k == 0 { 0 } else { 8 + 12 * k as i64 };
            canvas.text(8, y, line, colour::BLACK, scale);
        }
    }
    canvas
}

/// Colour of the scatter points.
const POINTS: Rgb = [25, 45, 90];

fn draw_points(canvas: &mut Canvas, panel: &Panel, points: &[Point], colour: Rgb) {
    panel.scatter(canvas, &as_pairs(points), 0.9, colour);
    panel.frame(canvas, colour::GREY);
}

/// Arrows from each grid point along its drift. Lengths vary over orders of
/// magnitude (far from the data the drift is large), so an arrow of length `l` is
/// drawn `0.9 cell l / (l + m)` long, `m` the 20th percentile of the lengths:
/// proportional for short arrows, saturating at a grid cell for long ones.
fn draw_arrows(canvas: &mut Canvas, panel: &Panel, arrows: &[(Point, Point)]) {
    let mut lengths: Vec<f64> = arrows
        .iter()
        .map(|(_, d)| (d[0] as f64).hypot(d[1] as f64))
        .collect();
    lengths.sort_by(f64::total_cmp);
    let m = lengths.get(lengths.len() / 5).copied().unwrap_or(0.0);
    if m <= 0.0 || !m.is_finite() {
        return;
    }
    let cell = 2.0 * RANGE / GRID as f64;
    for (p, d) in arrows {
        let (x, y) = (p[0] as f64, p[1] as f64);
        let len = (d[0] as f64).hypot(d[1] as f64);
        let k = 0.9 * cell / (len + m);
        let (a, b) = (
            panel.to_pixel(x, y),
            panel.to_pixel(x + k * d[0] as f64, y + k * d[1] as f64),
        );
        canvas.arrow(a.0, a.1, b.0, b.1, 3.0, colour::RED);
    }
}

/// What `ddpm toy` did.
pub struct ToyReport {
    /// Training steps.
    pub steps: usize,
    /// Mean loss of the last 200 steps.
    pub final_loss: f64,
    /// Mean loss of the first 20 steps.
    pub initial_loss: f64,
    /// Training seconds.
    pub train_seconds: f64,
    /// Total seconds (training, sampling, drawing).
    pub total_seconds: f64,
    /// Mean nearest-reference distance of the generated samples.
    pub nn_samples: f64,
    /// The same for prior `N(0, I)` draws.
    pub nn_prior: f64,
    /// The same for fresh data (the floor).
    pub nn_data: f64,
    /// Where the PNG went.
    pub png: PathBuf,
}

/// Trains, samples `samples` points, measures them, draws the figure to `out`.
pub fn run(
    opts: &ToyOptions,
    samples: usize,
    out: &Path,
    log: impl FnMut(&str),
) -> std::result::Result<ToyReport, String> {
    let start = Instant::now();
    let trained = train(opts, log).map_err(|e| e.to_string())?;
    let mut rng = StdRng::seed_from_u64(opts.seed.wrapping_add(1));
    let chain =
        reverse_chain(&trained.model, &trained.schedule, samples, &mut rng).map_err(|e| e.to_string())?;
    let reference = swiss_roll(4000, ROLL_NOISE, &mut rng);
    let data = swiss_roll(samples, ROLL_NOISE, &mut rng);
    let prior = gaussian(samples, &mut rng);
    let fig = figure_data(&trained, &data, &chain, &mut rng).map_err(|e| e.to_string())?;
    draw_figure(&fig, trained.schedule.steps()).save_png(out)?;
    let losses = &trained.losses;
    Ok(ToyReport {
        steps: opts.steps,
        final_loss: mean(&losses[losses.len().saturating_sub(200)..]),
        initial_loss: mean(&losses[..losses.len().min(20)]),
        train_seconds: trained.seconds,
        total_seconds: start.elapsed().as_secs_f64(),
        nn_samples: mean_nearest_distance(&chain[0], &reference),
        nn_prior: mean_nearest_distance(&prior, &reference),
        nn_data: mean_nearest_distance(&data, &reference),
        png: out.to_path_buf(),
    })
}
