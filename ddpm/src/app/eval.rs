//! `ddpm eval`: scores samples (generated, or read from a folder) with the
//! classifier: the fraction classified with confidence > 0.9, the predicted-digit
//! histogram, with `--mnist` the Frechet distance of classifier features to the
//! test set; or, with `--nll`, the variational bound in bits per dimension.

use std::path::Path;
use std::time::Instant;

use nn::lenet::{LeNet, FEATURES};
use rand::SeedableRng;

use super::args::EvalArgs;
use super::sample::{labels, load, variance, write_samples};
use crate::checkpoint::load_model;
use crate::data::{self, Split};
use crate::error::{Context, Error, Result};
use crate::eval;
use crate::likelihood::dataset_bound;
use crate::train::clock;

/// `ddpm eval`.
pub fn run(a: &EvalArgs) -> Result<()> {
    if a.nll {
        return nll(a);
    }
    let classifier = match &a.classifier {
        Some(p) => eval::load_classifier(p)?,
        None => eval::embedded_classifier()?,
    };
    let (samples, wanted) = match &a.images {
        Some(dir) => {
            let d = data::load_folder(dir, 1, 28)?;
            let all: Vec<usize> = (0..d.len()).collect();
            (d.batch(&all)?.0, None)
        }
        None => {
            let loaded = load(&a.sampling)?;
            let (images, _) = write_samples(&loaded, &a.sampling, a.n, &a.grid, a.individual)?;
            (images, labels(&a.sampling, &loaded.model, a.n))
        }
    };
    let scored = eval::classify(&classifier, &samples, 256)?;
    report_scores(&scored);
    if let Some(wanted) = wanted {
        let predicted = eval::predicted_classes(&scored.probs, eval::CLASSES);
        let agree = predicted.iter().zip(&wanted).filter(|(p, w)| p == w).count();
        println!(
            "classified as the requested class: {:.1}%",
            100.0 * agree as f64 / scored.n as f64
        );
    }
    if let Some(dir) = &a.mnist {
        let reference = gaussian(&classify_split(&classifier, dir, Split::Test, 10_000)?);
        let fid = eval::frechet_distance(&gaussian(&scored), &reference);
        println!(
            "classifier FID vs the MNIST test set ({} samples): {fid:.2}",
            scored.n
        );
        if a.calibrate {
            let train = gaussian(&classify_split(&classifier, dir, Split::Train, 10_000)?);
            println!(
                "calibration: 10,000 MNIST training images vs the test set: {:.2}",
                eval::frechet_distance(&train, &reference)
            );
        }
    }
    Ok(())
}

/// `ddpm eval --nll`: the bound on the first `--nll-images` MNIST test images.
fn nll(a: &EvalArgs) -> Result<()> {
    let dir = a
        .mnist
        .as_ref()
        .ok_or_else(|| Error::usage("--nll needs --mnist DIR"))?;
    let s = &a.sampling;
    let ckpt = super::checkpoint_or_default(&s.checkpoint);
    let (model, contract) = load_model(&ckpt, s.config.as_deref(), s.weights)?;
    let variance = variance(s.variance, contract.config.learn_sigma)?;
    let test = data::load_mnist(dir, Split::Test)?;
    let schedule = contract.noise_schedule();
    let mut rng = rand::rngs::StdRng::seed_from_u64(s.seed);
    let indices: Vec<usize> = (0..a.nll_images.min(test.len())).collect();
    let batches = indices
        .chunks(s.batch)
        .map(|c| Ok(test.batch(c)?.0))
        .collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    let bound = dataset_bound(
        &model,
        contract.objective,
        &schedule,
        variance,
        &batches,
        &mut rng,
        |done, total| {
            println!(
                "  {done}/{total} images, {}",
                clock(start.elapsed().as_secs_f64())
            )
        },
    )
    .context("the variational bound")?;
    println!(
        "NLL bound on {} MNIST test images: {:.3} bits/dim (L_T {:.2e}, L_0 {:.3}, sum of L_1..L_{} {:.3})",
        bound.images,
        bound.total(),
        bound.prior,
        bound.terms[0],
        bound.terms.len() - 1,
        bound.terms[1..].iter().sum::<f64>()
    );
    Ok(())
}

/// Prints the confident fraction and the predicted-digit histogram.
pub fn report_scores(scored: &eval::Classified) {
    let confident = eval::confident_fraction(&scored.probs, eval::CLASSES, 0.9);
    let mut histogram = [0usize; eval::CLASSES];
    for c in eval::predicted_classes(&scored.probs, eval::CLASSES) {
        histogram[c] += 1;
    }
    println!(
        "classified with confidence > 0.9: {:.1}% of {} samples",
        100.0 * confident,
        scored.n
    );
    println!("predicted digits 0..9: {histogram:?}");
}

fn gaussian(c: &eval::Classified) -> eval::Gaussian {
    eval::fit_gaussian(&c.features, c.n, FEATURES)
}

/// The classifier's outputs on the first `count` images of a split.
fn classify_split(classifier: &LeNet, dir: &Path, split: Split, count: usize) -> Result<eval::Classified> {
    let d = data::load_mnist(dir, split)?;
    let idx: Vec<usize> = (0..d.len().min(count)).collect();
    let images = d.batch(&idx)?.0;
    Ok(eval::classify(classifier, &images, 256)?)
}
