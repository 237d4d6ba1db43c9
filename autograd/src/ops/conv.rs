//! Convolution and upsampling, on the tensor crate's kernels.
//!
//! A convolution is linear in its input and in its weight, so its backward pass
//! is two more convolution-shaped products (see `tensor::conv` for the kernels):
//!
//! ```text
//! y = conv(x, w) + b:   dx = conv_transpose(g, w)   dw = correlate(x, g)   db = sum of g over b, h, w
//! y = conv(x, w) + b + a (conv2d_add):   the same, and da = g summed to a's shape
//! y = upsample_s(x):    dx = each s x s block of g summed (the adjoint of copying)
//! ```

use std::rc::Rc;

use tensor::conv::{conv2d_backward, conv2d_backward_input, Conv2dParams, PreparedWeights};
use tensor::Result;

use super::Operand;
use crate::Var;

/// The profiler's name of a convolution, with or without a fused addend.
fn op_name(addend: Option<&Var>) -> &'static str {
    if addend.is_some() {
        "conv2d+add"
    } else {
        "conv2d"
    }
}

impl Var {
    /// 2-D convolution of `[B, Cin, H, W]` with `weight` `[Cout, Cin, KH, KW]` and an
    /// optional `bias` `[Cout]`.
    pub fn conv2d(&self, weight: &Var, bias: Option<&Var>, params: Conv2dParams) -> Result<Var> {
        self.conv2d_add_opt(weight, bias, None, params)
    }

    /// `self.conv2d(weight, bias, params) + addend` as one op, which adds the
    /// addend as the convolution writes its output (`Tensor::conv2d_add`: the
    /// same values): `addend` is `[B, Cout, Hout, Wout]` (a residual) or
    /// `[B, Cout, 1, 1]` (one value per image and channel). Its gradient is `g`
    /// summed to its shape, as for `add`.
    pub fn conv2d_add(
        &self,
        weight: &Var,
        bias: Option<&Var>,
        addend: &Var,
        params: Conv2dParams,
    ) -> Result<Var> {
        self.conv2d_add_opt(weight, bias, Some(addend), params)
    }

    fn conv2d_add_opt(
        &self,
        weight: &Var,
        bias: Option<&Var>,
        addend: Option<&Var>,
        params: Conv2dParams,
    ) -> Result<Var> {
        let (xv, wv, bv) = (self.value(), weight.value(), bias.map(|b| b.value()));
        let y = match addend {
            Some(a) => xv.conv2d_add(wv, bv, a.value(), params)?,
            None => xv.conv2d(wv, bv, params)?,
        };
        let (x, w) = (xv.clone(), wv.clone());
        let (need_dx, need_dw) = (self.requires_grad(), weight.requires_grad());
        let with_bias = bias.is_some();
        let added = addend.map(Operand::of);
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        inputs.extend(addend);
        Ok(Var::from_op(y, op_name(addend), &inputs, move |g| {
            let grads = conv2d_backward(&x, &w, g, params, need_dx)?;
            let mut out = vec![grads.input, need_dw.then_some(grads.weight)];
            if with_bias {
                out.push(Some(grads.bias));
            }
            if let Some(a) = added {
                out.push(a.unbroadcast(|| Ok(g.clone()))?);
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
        self.conv2d_prepared_add_opt(prepared, bias, None)
    }

    /// [`Var::conv2d_add`] with prepared weights: `conv2d_prepared(..) + addend`
    /// as one op.
    pub fn conv2d_prepared_add(
        &self,
        prepared: &Rc<PreparedWeights>,
        bias: Option<&Var>,
        addend: &Var,
    ) -> Result<Var> {
        self.conv2d_prepared_add_opt(prepared, bias, Some(addend))
    }

    fn conv2d_prepared_add_opt(
        &self,
        prepared: &Rc<PreparedWeights>,
        bias: Option<&Var>,
        addend: Option<&Var>,
    ) -> Result<Var> {
        let (xv, bv) = (self.value(), bias.map(|b| b.value()));
        let y = match addend {
            Some(a) => xv.conv2d_prepared_add(prepared, bv, a.value())?,
            None => xv.conv2d_prepared(prepared, bv)?,
        };
        let (prepared, x_shape) = (Rc::clone(prepared), self.shape().to_vec());
        let (need_dx, with_bias) = (self.requires_grad(), bias.is_some());
        let added = addend.map(Operand::of);
        let mut inputs = vec![self];
        inputs.extend(bias);
        inputs.extend(addend);
        Ok(Var::from_op(y, op_name(addend), &inputs, move |g| {
            let w = prepared.weight();
            let dx = need_dx
                .then(|| conv2d_backward_input(g, w, &x_shape, prepared.params()))
                .transpose()?;
            let mut out = vec![dx];
            if with_bias {
                out.push(Some(g.sum(&[0, 2, 3], false)?));
            }
            if let Some(a) = added {
                out.push(a.unbroadcast(|| Ok(g.clone()))?);
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
