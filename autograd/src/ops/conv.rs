//! Convolution and upsampling, on the tensor crate's kernels.
//!
//! A convolution is linear in its input and in its weight, so its backward pass
//! is two more convolution-shaped products (see `tensor::conv` for the kernels):
//!
//! ```text
//! y = conv(x, w) + b:   dx = conv_transpose(g, w)   dw = correlate(x, g)   db = sum of g over b, h, w
//! y = upsample_s(x):    dx = each s x s block of g summed (the adjoint of copying)
//! ```

use tensor::conv::{conv2d_backward, Conv2dParams};
use tensor::Result;

use crate::Var;

impl Var {
    /// 2-D convolution of `[B, Cin, H, W]` with `weight` `[Cout, Cin, KH, KW]` and an
    /// optional `bias` `[Cout]`.
    pub fn conv2d(&self, weight: &Var, bias: Option<&Var>, params: Conv2dParams) -> Result<Var> {
        let y = self
            .value()
            .conv2d(weight.value(), bias.map(|b| b.value()), params)?;
        let (x, w) = (self.clone(), weight.clone());
        let with_bias = bias.is_some();
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        Ok(Var::from_op(y, "conv2d", &inputs, move |g| {
            let grads = conv2d_backward(x.value(), w.value(), g, params, x.requires_grad())?;
            let mut out = vec![grads.input, w.requires_grad().then_some(grads.weight)];
            if with_bias {
                out.push(Some(grads.bias));
            }
            Ok(out)
        }))
    }

    /// Nearest-neighbour upsampling of `[B, C, H, W]` by `scale`.
    pub fn upsample_nearest2d(&self, scale: usize) -> Result<Var> {
        let y = self.value().upsample_nearest2d(scale)?;
        Ok(Var::from_op(y, "upsample_nearest2d", &[self], move |g| {
            Ok(vec![Some(g.upsample_nearest2d_backward(scale)?)])
        }))
    }
}
