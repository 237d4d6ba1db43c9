//! Reductions and softmax.
//!
//! ```text
//! y = sum over axes of x:   dx = g, broadcast back over the summed axes
//! y = mean over axes:       dx = g / N, broadcast back (N = elements per mean)
//! y = softmax(x) on axis:   dx = y * (g - sum(g * y, axis))
//! y = log_softmax(x):       dx = g - softmax(x) * sum(g, axis)
//! ```
//! The softmax rule is the Jacobian `diag(y) - y y^T` applied to `g`.

use tensor::{Result, Tensor};

use crate::Var;

/// `g` (reduced over `axes`, with or without kept axes) broadcast back to `shape`.
fn expand_back(g: &Tensor, shape: &[usize], axes: &[usize], keepdim: bool) -> Result<Tensor> {
    let g = if keepdim {
        g.clone()
    } else {
        let mut kept = shape.to_vec();
        for &a in axes {
            kept[a] = 1;
        }
        g.reshape(&kept)?
    };
    g.broadcast_to(shape)
}

impl Var {
    /// The sum over `axes`.
    pub fn sum(&self, axes: &[usize], keepdim: bool) -> Result<Var> {
        let y = self.value().sum(axes, keepdim)?;
        let (shape, axes) = (self.shape().to_vec(), axes.to_vec());
        Ok(Var::from_op(y, "sum", &[self], move |g| {
            Ok(vec![Some(expand_back(g, &shape, &axes, keepdim)?)])
        }))
    }

    /// The sum of all elements, as a rank-0 value.
    pub fn sum_all(&self) -> Result<Var> {
        let axes: Vec<usize> = (0..self.rank()).collect();
        self.sum(&axes, false)
    }

    /// The mean over `axes`.
    pub fn mean(&self, axes: &[usize], keepdim: bool) -> Result<Var> {
        let y = self.value().mean(axes, keepdim)?;
        let n: usize = axes.iter().map(|&a| self.shape()[a]).product();
        let (shape, axes) = (self.shape().to_vec(), axes.to_vec());
        Ok(Var::from_op(y, "mean", &[self], move |g| {
            let g = g.mul_scalar(1.0 / n as f32);
            Ok(vec![Some(expand_back(&g, &shape, &axes, keepdim)?)])
        }))
    }

    /// The mean of all elements, as a rank-0 value.
    pub fn mean_all(&self) -> Result<Var> {
        let axes: Vec<usize> = (0..self.rank()).collect();
        self.mean(&axes, false)
    }

    /// Softmax along `axis`.
    pub fn softmax(&self, axis: usize) -> Result<Var> {
        let y = self.value().softmax(axis)?;
        let yc = y.clone();
        Ok(Var::from_op(y, "softmax", &[self], move |g| {
            let dot = g.mul(&yc)?.sum(&[axis], true)?;
            Ok(vec![Some(yc.mul(&g.sub(&dot)?)?)])
        }))
    }

    /// Log-softmax along `axis`.
    pub fn log_softmax(&self, axis: usize) -> Result<Var> {
        let y = self.value().log_softmax(axis)?;
        let yc = y.clone();
        Ok(Var::from_op(y, "log_softmax", &[self], move |g| {
            let total = g.sum(&[axis], true)?;
            Ok(vec![Some(g.sub(&yc.exp().mul(&total)?)?)])
        }))
    }
}
