//! Arithmetic with broadcasting: `+ - * /` and their scalar forms.
//!
//! Broadcasting copies an operand along some axes, so its gradient is the sum
//! of the output gradient over those axes: `sum_to_shape` "un-broadcasts".
//! With `z = f(x, y)` element-wise and `g = dL/dz`:
//!
//! ```text
//! z = x + y:  dx = g                 dy = g
//! z = x - y:  dx = g                 dy = -g
//! z = x * y:  dx = g * y             dy = g * x
//! z = x / y:  dx = g / y             dy = -g * x / y^2 = -g * z / y
//! ```
//! each then summed back to the operand's shape.

use tensor::Result;

use super::{value_if, Operand};
use crate::Var;

impl Var {
    /// `self + other`, broadcasting.
    pub fn add(&self, other: &Var) -> Result<Var> {
        let z = self.value().add(other.value())?;
        let (a, b) = (Operand::of(self), Operand::of(other));
        Ok(Var::from_op(z, "add", &[self, other], move |g| {
            Ok(vec![
                a.unbroadcast(|| Ok(g.clone()))?,
                b.unbroadcast(|| Ok(g.clone()))?,
            ])
        }))
    }

    /// `self - other`, broadcasting.
    pub fn sub(&self, other: &Var) -> Result<Var> {
        let z = self.value().sub(other.value())?;
        let (a, b) = (Operand::of(self), Operand::of(other));
        Ok(Var::from_op(z, "sub", &[self, other], move |g| {
            Ok(vec![
                a.unbroadcast(|| Ok(g.clone()))?,
                b.unbroadcast(|| Ok(g.neg()))?,
            ])
        }))
    }

    /// `self * other`, broadcasting. Each value is kept only if the other
    /// operand's gradient needs it.
    pub fn mul(&self, other: &Var) -> Result<Var> {
        let z = self.value().mul(other.value())?;
        let (a, b) = (Operand::of(self), Operand::of(other));
        let (a_value, b_value) = (value_if(b.requires_grad, self), value_if(a.requires_grad, other));
        Ok(Var::from_op(z, "mul", &[self, other], move |g| {
            let da = b_value.map(|y| a.sum_back(g.mul(&y)?)).transpose()?;
            let db = a_value.map(|x| b.sum_back(g.mul(&x)?)).transpose()?;
            Ok(vec![da, db])
        }))
    }

    /// `self / other`, broadcasting. Keeps `y` (both gradients divide by it) and
    /// `z` only if `y` needs a gradient.
    pub fn div(&self, other: &Var) -> Result<Var> {
        let z = self.value().div(other.value())?;
        let (a, b) = (Operand::of(self), Operand::of(other));
        let (b_value, z_value) = (other.value().clone(), b.requires_grad.then(|| z.clone()));
        Ok(Var::from_op(z, "div", &[self, other], move |g| {
            let da = a.unbroadcast(|| g.div(&b_value))?;
            let db = z_value
                .map(|z| b.sum_back(g.mul(&z)?.div(&b_value)?.neg()))
                .transpose()?;
            Ok(vec![da, db])
        }))
    }

    /// `self + s`: `dx = g`.
    pub fn add_scalar(&self, s: f32) -> Var {
        Var::from_op(self.value().add_scalar(s), "add_scalar", &[self], |g| {
            Ok(vec![Some(g.clone())])
        })
    }

    /// `self * s`: `dx = s g`.
    pub fn mul_scalar(&self, s: f32) -> Var {
        Var::from_op(self.value().mul_scalar(s), "mul_scalar", &[self], move |g| {
            Ok(vec![Some(g.mul_scalar(s))])
        })
    }

    /// `-self`: `dx = -g`.
    pub fn neg(&self) -> Var {
        Var::from_op(self.value().neg(), "neg", &[self], |g| Ok(vec![Some(g.neg())]))
    }
}
