//! `ddpm toy`: trains the 2-D Swiss-roll model, draws the figure of forward,
//! reverse and drift (Sohl-Dickstein et al. 2015, figure 1) and checks the samples.

use super::args::ToyArgs;
use crate::error::{Error, Result};
use crate::toy;

/// `ddpm toy`.
pub fn run(a: &ToyArgs) -> Result<()> {
    let opts = toy::ToyOptions {
        steps: a.steps,
        seed: a.seed,
        ..toy::ToyOptions::default()
    };
    println!(
        "training a {}x{} MLP on the Swiss roll: {} steps of {} points, T = {}",
        opts.depth, opts.hidden, opts.steps, opts.batch, opts.diffusion_steps
    );
    let r = toy::run(&opts, a.samples, &a.out, |line| println!("{line}")).map_err(Error::Plot)?;
    println!(
        "trained {} steps in {:.1} s; loss {:.4} -> {:.4} (first 20 -> last 200 steps)",
        r.steps, r.train_seconds, r.initial_loss, r.final_loss
    );
    println!(
        "mean distance to the nearest data point: samples {:.4}, fresh data {:.4}, N(0, I) prior {:.4}",
        r.nn_samples, r.nn_data, r.nn_prior
    );
    println!("figure: {} ({:.1} s in all)", r.png.display(), r.total_seconds);
    Ok(())
}
