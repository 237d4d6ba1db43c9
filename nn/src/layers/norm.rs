//! `GroupNorm`: normalise each group of channels of each image, then scale and
//! shift per channel (Wu and He 2018). Independent of the batch size, which is
//! why the DDPM U-Net uses it instead of batch norm.

use autograd::{Parameter, Result, Var};
use tensor::{Tensor, TensorError};

use crate::layers::Dropout;
use crate::module::{join, Module};

/// Group norm over `[B, C, ...]` with `groups` groups; `weight` (scale, init 1)
/// and `bias` (shift, init 0) are per channel.
pub struct GroupNorm {
    /// The number of groups; must divide the channel count.
    pub groups: usize,
    /// Added to the variance before the square root.
    pub eps: f32,
    /// Per-channel scale `[C]`.
    pub weight: Parameter,
    /// Per-channel shift `[C]`.
    pub bias: Parameter,
}

impl GroupNorm {
    /// Group norm of `channels` channels in `groups` groups, eps 1e-5.
    pub fn new(groups: usize, channels: usize) -> Result<GroupNorm> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            return Err(TensorError::InvalidArgument {
                op: "GroupNorm::new",
                msg: format!("{channels} channels do not split into {groups} groups"),
            });
        }
        Ok(GroupNorm {
            groups,
            eps: 1e-5,
            weight: Parameter::new(Tensor::ones(&[channels])),
            bias: Parameter::new(Tensor::zeros(&[channels])),
        })
    }

    /// The normalised, scaled and shifted `x`, same shape.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        x.group_norm(self.groups, &self.weight.var(), &self.bias.var(), self.eps)
    }

    /// `silu(self.forward(x))`, fused into one op (one pass over memory each way,
    /// and nothing extra kept for backward).
    pub fn forward_silu(&self, x: &Var) -> Result<Var> {
        x.group_norm_silu(self.groups, &self.weight.var(), &self.bias.var(), self.eps)
    }

    /// `dropout.forward(self.forward_silu(x))` fused into one op (the same values:
    /// the mask is the one `dropout` would draw).
    pub fn forward_silu_dropout(&self, x: &Var, dropout: &Dropout) -> Result<Var> {
        let (gamma, beta) = (self.weight.var(), self.bias.var());
        x.group_norm_silu_dropout(self.groups, &gamma, &beta, self.eps, dropout.draw())
    }
}

impl Module for GroupNorm {
    fn collect_parameters(&self, prefix: &str, out: &mut Vec<(String, Parameter)>) {
        out.push((join(prefix, "weight"), self.weight.clone()));
        out.push((join(prefix, "bias"), self.bias.clone()));
    }
}
