//! Convolution and upsampling, on the tensor crate's kernels.
//!
//! A convolution is linear in its input and in its weight, so its backward pass
//! is two more convolution-shaped products (see `tensor::conv` for the kernels):
//!
//! ```text
//! y = conv(x, w) + b:   dx = conv_transpose(g, w)   dw = correlate(x, g)   db = sum of g over b, h, w
//! y = upsample_s(x):    dx = each s x s block of g summed (the adjoint of copying)
//! ```

use std::rc::Rc;

use tensor::conv::{conv2d_backward, conv2d_backward_input, Conv2dParams, PreparedWeights};
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

    /// [`Var::conv2d`] with weights prepared once (`tensor::conv::PreparedWeights`):
    /// for inference, where the weights are constants. Gradients flow to `self`
    /// and `bias` only:
    ///
    /// ```text
    /// dx = conv_transpose(g, w)   db = sum of g over b, h, w   (w: no gradient)
    /// ```
    pub fn conv2d_prepared(&self, prepared: &Rc<PreparedWeights>, bias: Option<&Var>) -> Result<Var> {
        let y = self.value().conv2d_prepared(prepared, bias.map(|b| b.value()))?;
        let (prepared, x_shape) = (Rc::clone(prepared), self.shape().to_vec());
        let (need_dx, with_bias) = (self.requires_grad(), bias.is_some());
        let mut inputs = vec![self];
        inputs.extend(bias);
        Ok(Var::from_op(y, "conv2d", &inputs, move |g| {
            let w = prepared.weight();
            let dx = need_dx
                .then(|| conv2d_backward_input(g, w, &x_shape, prepared.params()))
                .transpose()?;
            let mut out = vec![dx];
            if with_bias {
                out.push(Some(g.sum(&[0, 2, 3], false)?));
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
