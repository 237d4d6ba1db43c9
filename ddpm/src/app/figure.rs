//! `ddpm figure KIND`: the paper's figures from a checkpoint, each one PNG.
//!
//! `x0-chain`, `shared-xt` and `interpolate` run the reverse chain (see
//! [`crate::figures`]); `loss` draws the training loss from a run's CSV.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::SeedableRng;

use super::{checkpoint_flag, flag, model_and_sampler, out_dir_flag, parse, sample_labels, SAMPLING};
use crate::cli::{Flags, Spec};
use crate::data::{self, save_grid, Split};
use crate::diffusion::normal;
use crate::figures::{interpolate, shared_latent, x0_chain};
use crate::plot::loss_curve;
use crate::sample::{Chain, Condition, Sampler};
use crate::schedule::{BetaSchedule, NoiseSchedule};
use crate::train::clock;
use crate::unet::UNet;

const FIGURE: &[Spec] = &[
    flag(
        "n",
        "N",
        "rows: chains (x0-chain) or image pairs (interpolate); default 8 and 4",
    ),
    flag(
        "columns",
        "N",
        "x0-chain: predictions per row; interpolate: lambdas (default 10 and 11)",
    ),
    flag(
        "stops",
        "T,T,..",
        "shared-xt: the shared steps (default 999,750,500,250,100)",
    ),
    flag("copies", "N", "shared-xt: samples per shared x_t (default 8)"),
    flag("t", "T", "interpolate: the step of the latents (default 500)"),
    flag(
        "mnist",
        "DIR",
        "interpolate: MNIST test images from DIR (default: the embedded subset)",
    ),
    flag(
        "csv",
        "FILE",
        "loss: the loss CSV (default: loss.csv beside the checkpoint)",
    ),
    flag("grid", "FILE", "file name in DIR (default KIND.png)"),
];

const KINDS: [&str; 4] = ["x0-chain", "shared-xt", "interpolate", "loss"];

const USAGE: &str = "usage: ddpm figure x0-chain | shared-xt | interpolate | loss [flags]";

/// Runs `ddpm figure KIND [flags]`.
pub fn figure_command(args: &[String]) -> Result<(), String> {
    let (kind, rest) = match args.split_first() {
        Some((k, rest)) if KINDS.contains(&k.as_str()) => (k.as_str(), rest),
        Some((k, _)) if !k.starts_with('-') => return Err(format!("unknown figure {k:?}\n{USAGE}")),
        // No kind: `--help` shows the help, anything else is an error.
        _ => {
            return match parse(args, &[FIGURE, SAMPLING], USAGE)? {
                None => Ok(()),
                Some(_) => Err(format!("which figure?\n{USAGE}")),
            }
        }
    };
    let Some(f) = parse(rest, &[FIGURE, SAMPLING], USAGE)? else {
        return Ok(());
    };
    let ckpt = checkpoint_flag(&f);
    let out_dir = out_dir_flag(&f, &ckpt);
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let out = out_dir.join(f.text("grid").unwrap_or(&format!("{kind}.png")));
    if kind == "loss" {
        let dir = ckpt.parent().unwrap_or(Path::new("."));
        let csv = f.text("csv").map(PathBuf::from).unwrap_or(dir.join("loss.csv"));
        loss_curve(&csv)?.save_png(&out)?;
        println!("loss curve of {}: {}", csv.display(), out.display());
        return Ok(());
    }
    let (model, sampler) = model_and_sampler(&f, &ckpt)?;
    let start = Instant::now();
    let (images, columns) = draw(kind, &model, sampler, &f)?;
    save_grid(&out, &images, columns).map_err(|e| e.to_string())?;
    println!(
        "{kind} ({}): {}",
        clock(start.elapsed().as_secs_f64()),
        out.display()
    );
    Ok(())
}

/// Runs the chain for one figure; returns the images, row by row, and the row length.
fn draw(kind: &str, model: &UNet, sampler: Sampler, f: &Flags) -> Result<(tensor::Tensor, usize), String> {
    let c = &model.config;
    let schedule = NoiseSchedule::new(BetaSchedule::LINEAR, 1000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(f.get("seed", 0)?);
    let positive =
        |name: &str, default: usize| f.checked(name, default, "a positive integer", |v: usize| v > 0);
    let rows = positive("n", if kind == "interpolate" { 4 } else { 8 })?;
    let labels = sample_labels(model, f, rows)?;
    let guidance = f.checked("guidance", 0.0, "a finite number >= 0", |w: f64| {
        w.is_finite() && w >= 0.0
    })?;
    let condition = Condition {
        labels: labels.as_deref(),
        guidance,
    };
    let err = |e: tensor::TensorError| e.to_string();
    let noise =
        |n: usize, rng: &mut rand::rngs::StdRng| normal(&[n, c.in_ch, c.image_size, c.image_size], rng);
    match kind {
        "x0-chain" => {
            let chain = Chain::new(model, &schedule, sampler, condition).map_err(err)?;
            let columns = positive("columns", 10)?;
            let x_t = noise(rows, &mut rng);
            let images = x0_chain(&chain, x_t, columns, &mut rng).map_err(err)?;
            Ok((images, columns.min(chain.len())))
        }
        "shared-xt" => {
            let one = Condition {
                labels: labels.as_deref().map(|l| &l[..1]),
                guidance,
            };
            let chain = Chain::new(model, &schedule, sampler, one).map_err(err)?;
            let copies = positive("copies", 8)?;
            let stops = stops(f)?;
            let x_t = noise(1, &mut rng);
            let images = shared_latent(&chain, x_t, &stops, copies, &mut rng).map_err(err)?;
            Ok((images, copies + 1))
        }
        _ => {
            if labels.is_some() {
                return Err("interpolate decodes without labels: use an unconditional model".into());
            }
            let chain = Chain::new(model, &schedule, sampler, condition).map_err(err)?;
            let lambdas = f.checked("columns", 11, "an integer >= 2", |v: usize| v >= 2)?;
            let t = f.checked("t", 500, "a step below 1000", |v: usize| v < 1000)?;
            let set = match f.text("mnist") {
                Some(dir) => data::load_mnist(dir, Split::Test),
                None => data::embedded_mnist(),
            }
            .map_err(|e| e.to_string())?;
            if (set.channels(), set.height()) != (c.in_ch, c.image_size) {
                return Err(format!("interpolate: the images do not fit config {}", c.name));
            }
            // Pairs of consecutive images: (0, 1), (2, 3), ...
            let pick =
                |offset: usize| -> Vec<usize> { (0..rows).map(|r| (2 * r + offset) % set.len()).collect() };
            let a = set.batch(&pick(0)).map_err(|e| e.to_string())?.0;
            let b = set.batch(&pick(1)).map_err(|e| e.to_string())?.0;
            let images = interpolate(&chain, &schedule, &a, &b, t, lambdas, &mut rng).map_err(err)?;
            Ok((images, lambdas + 2))
        }
    }
}

/// `--stops 999,750,...`: the shared steps, each below `T = 1000`.
fn stops(f: &Flags) -> Result<Vec<usize>, String> {
    let text = f.text("stops").unwrap_or("999,750,500,250,100");
    text.split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|&t| t < 1000)
                .ok_or(format!("--stops: {s:?} is not a step below 1000"))
        })
        .collect()
}
