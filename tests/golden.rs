//! The golden test: the engine's `mnist-tiny` U-Net against an independent PyTorch
//! float64 implementation of `shared/spec/unet.md` (the fixture in
//! `tests/fixtures/golden/`; its README says where it comes from).
//!
//! Same weights, same inputs: the output, the loss and the gradient of every one of
//! the 182 parameters must agree to float32 rounding. So a drift anywhere in the
//! stack (a layer of `nn`, an op or a backward rule of `autograd`, a kernel of
//! `tensor`, the wiring of `ddpm::unet`) fails here, and the message names every
//! tensor that is off, by how much and where.

mod common;

use std::collections::BTreeMap;

use autograd::Var;
use common::{
    assert_same_parameters, fixture, forward, golden_inputs, golden_model, parameter_shapes, tensor_shapes,
};
use nn::Module;
use tensor::Tensor;

/// `y` must be within this fraction of the largest |y| of the reference.
const Y_TOL: f64 = 1e-5;
/// The loss must be within this fraction of the reference loss.
const LOSS_TOL: f64 = 1e-5;
/// Each gradient must be within this fraction of its own largest |entry| (the
/// attention key biases: of the largest gradient entry of the whole model).
const GRAD_TOL: f64 = 1e-4;

/// How many of the tensors that differ the failure message lists.
const SHOWN: usize = 20;

/// The largest |entry| of `t`.
fn max_abs(t: &Tensor) -> f64 {
    t.to_vec().iter().fold(0.0, |m, &v| m.max(f64::from(v).abs()))
}

/// A tensor that is further from its reference than allowed.
struct Miss {
    /// How many times the allowed error it is off (infinite for NaN or a shape
    /// mismatch), for sorting the worst first.
    ratio: f64,
    message: String,
}

/// Compares `got` with `want` element by element: every |difference| must be at
/// most `rel * scale`. Returns the miss, if any, naming `name`.
fn compare(name: &str, got: &Tensor, want: &Tensor, rel: f64, scale: f64) -> Option<Miss> {
    if got.shape() != want.shape() {
        return Some(Miss {
            ratio: f64::INFINITY,
            message: format!("{name}: shape {:?}, expected {:?}", got.shape(), want.shape()),
        });
    }
    let (got, want) = (got.to_vec(), want.to_vec());
    let (mut worst, mut at) = (0.0f64, 0);
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        // NaN counts as infinitely wrong (it would compare as "not larger").
        let err = (f64::from(g) - f64::from(w)).abs();
        let err = if err.is_nan() { f64::INFINITY } else { err };
        if err > worst {
            (worst, at) = (err, i);
        }
    }
    let allowed = rel * scale;
    (worst > allowed).then(|| Miss {
        ratio: worst / allowed,
        message: format!(
            "{name}: max |error| {worst:.3e} at flat index {at} (got {:.6e}, expected {:.6e}); \
             allowed {rel:.0e} x {scale:.3e} = {allowed:.3e}, {:.1}x over",
            got[at],
            want[at],
            worst / allowed
        ),
    })
}

#[test]
fn the_fixture_covers_exactly_the_models_parameters() {
    // golden_model checks weights.safetensors name by name and shape by shape.
    let model = golden_model();
    let params = parameter_shapes(&model);
    assert_eq!(params.len(), 182, "mnist-tiny has 182 parameter tensors");
    let reference = fixture("reference");
    assert_same_parameters(
        &params,
        &tensor_shapes(&reference, "grad."),
        "reference.safetensors (grad.*)",
    );
    let others: BTreeMap<_, _> = tensor_shapes(&reference, "")
        .into_iter()
        .filter(|(n, _)| !n.starts_with("grad."))
        .collect();
    assert_eq!(
        others,
        BTreeMap::from([("loss".into(), vec![]), ("y".into(), vec![4, 1, 28, 28])])
    );
}

#[test]
fn output_loss_and_every_gradient_match_pytorch() {
    let model = golden_model();
    let (x, t, eps) = golden_inputs();
    let reference = fixture("reference");

    // Evaluation mode (dropout off), with gradients recorded.
    let y = forward(&model, &x, &t);
    let loss = y.mse_loss(&Var::constant(eps)).unwrap();
    loss.backward().unwrap();

    let mut misses = Vec::new();
    let y_ref = reference.tensor("y").unwrap();
    misses.extend(compare("y", y.value(), y_ref, Y_TOL, max_abs(y_ref)));
    let loss_ref = reference.tensor("loss").unwrap();
    misses.extend(compare(
        "loss",
        loss.value(),
        loss_ref,
        LOSS_TOL,
        max_abs(loss_ref),
    ));

    let grads_ref: BTreeMap<String, &Tensor> = model
        .parameters()
        .iter()
        .map(|(n, _)| (n.clone(), reference.tensor(&format!("grad.{n}")).unwrap()))
        .collect();
    let largest = grads_ref.values().map(|g| max_abs(g)).fold(0.0, f64::max);
    for (name, p) in model.parameters() {
        let want = grads_ref[&name];
        let Some(got) = p.grad() else {
            misses.push(Miss {
                ratio: f64::INFINITY,
                message: format!("grad.{name}: no gradient reached the parameter"),
            });
            continue;
        };
        // The key bias's gradient is zero in exact arithmetic (adding a constant
        // to every logit of a row leaves its softmax unchanged): only rounding
        // noise is left, so it is measured against the whole model's scale.
        let scale = if name.ends_with(".k.bias") {
            largest
        } else {
            max_abs(want)
        };
        misses.extend(compare(&format!("grad.{name}"), &got, want, GRAD_TOL, scale));
    }

    misses.sort_by(|a, b| b.ratio.total_cmp(&a.ratio));
    let shown: Vec<&str> = misses.iter().take(SHOWN).map(|m| m.message.as_str()).collect();
    let more = misses.len().saturating_sub(SHOWN);
    assert!(
        misses.is_empty(),
        "{} of {} tensors differ from the PyTorch reference (worst first):\n  {}{}",
        misses.len(),
        grads_ref.len() + 2,
        shown.join("\n  "),
        if more > 0 {
            format!("\n  ... and {more} more")
        } else {
            String::new()
        }
    );
}
