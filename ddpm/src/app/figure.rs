//! `ddpm figure KIND`: the paper's figures from a checkpoint, each one PNG.
//!
//! `x0-chain`, `shared-xt` and `interpolate` run the reverse chain (see
//! [`crate::figures`]) on the diffusion the checkpoint records; `loss` draws the
//! training loss from a run's CSV.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tensor::Tensor;

use super::args::{FigureArgs, FigureKind};
use super::sample::{labels, load, Loaded};
use super::{checkpoint_or_default, create_dir, out_or_beside};
use crate::data::{self, save_grid, Split};
use crate::diffusion::normal;
use crate::error::{Context, Error, Result};
use crate::figures::{interpolate, shared_latent, x0_chain};
use crate::losslog::LOSS_FILE;
use crate::plot::loss_curve;
use crate::sample::{Chain, Condition};
use crate::train::clock;

/// `ddpm figure KIND`.
pub fn run(a: &FigureArgs) -> Result<()> {
    let kind = a.kind.name();
    let grid = a
        .grid
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{kind}.png")));
    if a.kind == FigureKind::Loss {
        let ckpt = checkpoint_or_default(&a.sampling.checkpoint);
        let dir = ckpt.parent().unwrap_or(Path::new("."));
        let csv = a.csv.clone().unwrap_or(dir.join(LOSS_FILE));
        let out_dir = out_or_beside(&a.sampling.out, &ckpt);
        create_dir(&out_dir)?;
        let out = out_dir.join(&grid);
        loss_curve(&csv)
            .and_then(|c| c.save_png(&out))
            .map_err(Error::Plot)?;
        println!("loss curve of {}: {}", csv.display(), out.display());
        return Ok(());
    }
    let loaded = load(&a.sampling)?;
    let start = Instant::now();
    let (images, columns) = draw(a, &loaded)?;
    create_dir(&loaded.out)?;
    let out = loaded.out.join(&grid);
    save_grid(&out, &images, columns)?;
    println!(
        "{kind} ({}): {}",
        clock(start.elapsed().as_secs_f64()),
        out.display()
    );
    Ok(())
}

/// Runs the chain for one figure; returns the images, row by row, and the row length.
fn draw(a: &FigureArgs, loaded: &Loaded) -> Result<(Tensor, usize)> {
    let (model, c) = (&loaded.model, &loaded.model.config);
    let schedule = loaded.contract.noise_schedule();
    let t_max = schedule.steps();
    let mut rng = StdRng::seed_from_u64(a.sampling.seed);
    let rows =
        a.n.unwrap_or(if a.kind == FigureKind::Interpolate { 4 } else { 8 });
    let labels = labels(&a.sampling, model, rows);
    let guidance = a.sampling.guidance.unwrap_or(0.0);
    let condition = Condition {
        labels: labels.as_deref(),
        guidance,
    };
    let noise = |n: usize, rng: &mut StdRng| normal(&[n, c.in_ch, c.image_size, c.image_size], rng);
    let chain = |condition| {
        Chain::with_spacing(
            model,
            loaded.contract.objective,
            &schedule,
            loaded.sampler,
            loaded.spacing,
            condition,
        )
        .map(|c| c.with_clipping(!a.sampling.no_clip))
        .context("the sampler")
    };
    match a.kind {
        FigureKind::X0Chain => {
            let chain = chain(condition)?;
            let columns = a.columns.unwrap_or(10);
            let x_t = noise(rows, &mut rng);
            let images = x0_chain(&chain, x_t, columns, &mut rng).context("x0-chain")?;
            Ok((images, columns.min(chain.len())))
        }
        FigureKind::SharedXt => {
            if let Some(bad) = a.stops.iter().find(|&&t| t >= t_max) {
                return Err(Error::usage(format!(
                    "--stops: {bad} is not a step below T = {t_max}"
                )));
            }
            let one = Condition {
                labels: labels.as_deref().map(|l| &l[..1]),
                guidance,
            };
            let chain = chain(one)?;
            let x_t = noise(1, &mut rng);
            let images = shared_latent(&chain, x_t, &a.stops, a.copies, &mut rng).context("shared-xt")?;
            Ok((images, a.copies + 1))
        }
        FigureKind::Interpolate => {
            if labels.is_some() {
                return Err(Error::usage(
                    "interpolate decodes without labels: use an unconditional model",
                ));
            }
            let lambdas = a.columns.unwrap_or(11);
            if lambdas < 2 {
                return Err(Error::usage("--columns: interpolate needs at least 2 lambdas"));
            }
            if a.t >= t_max {
                return Err(Error::usage(format!("--t {}: not a step below T = {t_max}", a.t)));
            }
            let chain = chain(condition)?;
            let set = match &a.mnist {
                Some(dir) => data::load_mnist(dir, Split::Test)?,
                None => data::embedded_mnist()?,
            };
            if (set.channels(), set.height()) != (c.in_ch, c.image_size) {
                return Err(Error::usage(format!(
                    "interpolate: the images do not fit config {}",
                    c.name
                )));
            }
            // Pairs of consecutive images: (0, 1), (2, 3), ...
            let pick =
                |offset: usize| -> Vec<usize> { (0..rows).map(|r| (2 * r + offset) % set.len()).collect() };
            let x_a = set.batch(&pick(0))?.0;
            let x_b = set.batch(&pick(1))?.0;
            let images =
                interpolate(&chain, &schedule, &x_a, &x_b, a.t, lambdas, &mut rng).context("interpolate")?;
            Ok((images, lambdas + 2))
        }
        FigureKind::Loss => unreachable!("drawn by run"),
    }
}
