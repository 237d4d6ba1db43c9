//! The network's output at a step, with classifier-free guidance (Ho and
//! Salimans 2022): one network estimate per image, or the guided combination of
//! a conditional and an unconditional one, computed as one doubled batch.

use autograd::{no_grad, Result, Var};
use tensor::Tensor;

use super::Labels;
use crate::unet::UNet;
use crate::variance::split_output;

/// Classifier-free guidance (Ho and Salimans 2022): with `w` the guidance scale,
/// `eps = (1 + w) eps(x, t, y) - w eps(x, t, none)`. `w = 0` is plain conditional
/// sampling; larger `w` trades diversity for samples that look more like their class.
/// It applies to the network's output whatever its objective: every conversion
/// to `eps` is affine in the output with coefficients fixed by `t`, so guiding the
/// output guides `eps` (and `x_0`) by the same formula.
pub fn guided_eps(conditional: &Tensor, unconditional: &Tensor, w: f64) -> Result<Tensor> {
    conditional.zip_map(unconditional, "guidance", |c, u| {
        ((1.0 + w) * c as f64 - w * u as f64) as f32
    })
}

/// The model's outputs at steps `t`: its prediction (of its objective's quantity;
/// conditional, and guided when `w != 0`) and, for learned variances, the
/// variance output `o` (from the conditional pass).
pub fn predict(
    model: &UNet,
    x: &Tensor,
    t: &[usize],
    labels: Labels<'_>,
    w: f64,
) -> Result<(Tensor, Option<Tensor>)> {
    let outputs = |y: Labels<'_>| -> Result<(Tensor, Option<Tensor>)> {
        let out = no_grad(|| model.forward(&Var::constant(x.clone()), t, y))?;
        let (prediction, o) = split_output(&out, model.config.learn_sigma)?;
        Ok((prediction.value().clone(), o.map(|o| o.value().clone())))
    };
    match (labels, model.config.num_classes) {
        (Some(y), Some(none)) if w != 0.0 => {
            // One pass on [x; x] with [y; none]: both estimates for one call.
            let b = t.len();
            let doubled = Tensor::concat(&[x, x], 0)?;
            let (t2, y2) = ([t, t].concat(), [y, &vec![none; b]].concat());
            let out = no_grad(|| model.forward(&Var::constant(doubled), &t2, Some(&y2)))?;
            let (prediction, o) = split_output(&out, model.config.learn_sigma)?;
            let prediction = prediction.value();
            let (cond, uncond) = (prediction.narrow(0, 0, b)?, prediction.narrow(0, b, b)?);
            let o = o.map(|o| o.value().narrow(0, 0, b)).transpose()?;
            Ok((guided_eps(&cond, &uncond, w)?, o))
        }
        _ => outputs(labels),
    }
}
