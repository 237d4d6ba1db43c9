//! Group normalisation (Wu and He 2018), on the tensor crate's kernels.
//!
//! Per image and group of channels, with `N` elements, `xhat = (x - mean) * rstd`
//! and `y = xhat * gamma[c] + beta[c]`. Backward (`g = dL/dy`, `dxhat = g gamma`):
//!
//! ```text
//! dx     = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))   (means over the group)
//! dgamma = sum over images and pixels of g * xhat
//! dbeta  = sum over images and pixels of g
//! ```
//!
//! Fused with SiLU (`y = silu(z)`, `z = xhat * gamma + beta`), the rule first
//! turns `g` into `g_z = g * silu'(z)` (`silu'(z) = s (1 + z (1 - s))`, `s =
//! sigmoid(z)`, `z` recomputed from `x` and the saved statistics) and then is the
//! rule above with `g_z` for `g`. The tape keeps `x`, the parameters and the
//! statistics: not the normalised tensor an unfused SiLU would keep. With dropout
//! after the SiLU (`y = silu(z) * m`, `m` the mask), `g` is first `g * m`, the
//! mask computed again from its seed.

use tensor::group_norm::{
    group_norm_act_backward, group_norm_act_forward, group_norm_backward, group_norm_forward, Activation,
    Dropout,
};
use tensor::Result;

use crate::Var;

impl Var {
    /// Group norm of `[B, C, ...]` with `groups` groups and per-channel `gamma`, `beta`.
    pub fn group_norm(&self, groups: usize, gamma: &Var, beta: &Var, eps: f32) -> Result<Var> {
        let (y, saved) = group_norm_forward(self.value(), groups, gamma.value(), beta.value(), eps)?;
        let (x, gm) = (self.value().clone(), gamma.value().clone());
        Ok(Var::from_op(y, "group_norm", &[self, gamma, beta], move |g| {
            let (dx, dgamma, dbeta) = group_norm_backward(g, &x, &saved, groups, &gm)?;
            Ok(vec![Some(dx), Some(dgamma), Some(dbeta)])
        }))
    }

    /// `silu(group_norm(self))` as one op: one pass forward, one rule backward.
    pub fn group_norm_silu(&self, groups: usize, gamma: &Var, beta: &Var, eps: f32) -> Result<Var> {
        self.group_norm_silu_dropout(groups, gamma, beta, eps, None)
    }

    /// `dropout(silu(group_norm(self)))` as one op, the mask of `dropout` computed
    /// from its seed in both passes (the values of `Tensor::dropout`'s mask).
    pub fn group_norm_silu_dropout(
        &self,
        groups: usize,
        gamma: &Var,
        beta: &Var,
        eps: f32,
        dropout: Option<Dropout>,
    ) -> Result<Var> {
        let act = Activation::Silu;
        let (x, gm, bt) = (self.value().clone(), gamma.value().clone(), beta.value().clone());
        let (y, saved) = group_norm_act_forward(&x, groups, &gm, &bt, eps, act, dropout)?;
        let op = if dropout.is_some() {
            "group_norm_silu_dropout"
        } else {
            "group_norm_silu"
        };
        Ok(Var::from_op(y, op, &[self, gamma, beta], move |g| {
            let (dx, dgamma, dbeta) =
                group_norm_act_backward(g, &x, &saved, groups, (&gm, &bt), act, dropout)?;
            Ok(vec![Some(dx), Some(dgamma), Some(dbeta)])
        }))
    }
}
