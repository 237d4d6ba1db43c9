//! Single-head spatial self-attention over the `H * W` positions of a feature map
//! (the DDPM U-Net's `AttnBlock`):
//!
//! ```text
//! h = norm(x);  q, k, v = nin(h) each               (1x1 convolutions, [B, C, N], N = H W)
//! w[i, j] = softmax_j( q[:, i] . k[:, j] / sqrt(C) ) (position i attends to j)
//! out[:, i] = sum_j w[i, j] v[:, j]
//! return x + nin(out)                                (the last nin starts at zero)
//! ```
//! Both products are batched matmuls on transposed views; the backward comes
//! from the ops it is built of.

use autograd::{Parameter, Result, Var};
use rand::Rng;
use tensor::conv::Conv2dParams;
use tensor::TensorError;

use crate::init::Init;
use crate::layers::{Conv2d, GroupNorm};
use crate::module::{join, Module};

/// Spatial self-attention with a residual connection.
pub struct SelfAttention {
    /// Normalisation before the projections.
    pub norm: GroupNorm,
    /// Query projection (1x1).
    pub q: Conv2d,
    /// Key projection (1x1).
    pub k: Conv2d,
    /// Value projection (1x1).
    pub v: Conv2d,
    /// Output projection (1x1), zero at initialisation.
    pub proj_out: Conv2d,
}

impl SelfAttention {
    /// Attention over `channels` channels, with a `groups`-group norm.
    pub fn new<R: Rng + ?Sized>(channels: usize, groups: usize, init: Init, rng: &mut R) -> Result<Self> {
        let p = Conv2dParams {
            stride: 1,
            padding: 0,
        };
        let mut nin = |init: Init| Conv2d::new(channels, channels, 1, p, init, rng);
        Ok(SelfAttention {
            norm: GroupNorm::new(groups, channels)?,
            q: nin(init),
            k: nin(init),
            v: nin(init),
            proj_out: nin(Init::Zeros),
        })
    }

    /// `x + proj_out(attention(norm(x)))` for `x` `[B, C, H, W]`; other ranks are an
    /// error.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        let &[b, c, h, w] = x.shape() else {
            return Err(TensorError::InvalidArgument {
                op: "SelfAttention",
                msg: format!("needs [B, C, H, W], got {:?}", x.shape()),
            });
        };
        let n = h * w;
        let hn = self.norm.forward(x)?;
        let flat = |layer: &Conv2d| layer.forward(&hn)?.reshape(&[b, c, n]);
        let (q, k, v) = (flat(&self.q)?, flat(&self.k)?, flat(&self.v)?);
        // [B, N, C] x [B, C, N] -> [B, N(query), N(key)]
        let scores = q.transpose(1, 2)?.matmul(&k)?.mul_scalar(1.0 / (c as f32).sqrt());
        let weights = scores.softmax(2)?;
        // [B, C, N(key)] x [B, N(key), N(query)] -> [B, C, N(query)]
        let out = v.matmul(&weights.transpose(1, 2)?)?.reshape(&[b, c, h, w])?;
        x.add(&self.proj_out.forward(&out)?)
    }
}

impl Module for SelfAttention {
    fn collect_parameters(&self, prefix: &str, out: &mut Vec<(String, Parameter)>) {
        self.norm.collect_parameters(&join(prefix, "norm"), out);
        self.q.collect_parameters(&join(prefix, "q"), out);
        self.k.collect_parameters(&join(prefix, "k"), out);
        self.v.collect_parameters(&join(prefix, "v"), out);
        self.proj_out.collect_parameters(&join(prefix, "proj_out"), out);
    }
}
