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

use tensor::{Result, Tensor};

use crate::Var;

/// `g` summed back to `shape` when it needs a gradient.
fn unbroadcast(g: Tensor, v: &Var) -> Result<Option<Tensor>> {
    if !v.requires_grad() {
        return Ok(None);
    }
    if g.shape() == v.shape() {
        return Ok(Some(g));
    }
    g.sum_to_shape(v.shape()).map(Some)
}

impl Var {
    /// `self + other`, broadcasting.
    pub fn add(&self, other: &Var) -> Result<Var> {
        let z = self.value().add(other.value())?;
        let (a, b) = (self.clone(), other.clone());
        Ok(Var::from_op(z, "add", &[self, other], move |g| {
            Ok(vec![unbroadcast(g.clone(), &a)?, unbroadcast(g.clone(), &b)?])
        }))
    }

    /// `self - other`, broadcasting.
    pub fn sub(&self, other: &Var) -> Result<Var> {
        let z = self.value().sub(other.value())?;
        let (a, b) = (self.clone(), other.clone());
        Ok(Var::from_op(z, "sub", &[self, other], move |g| {
            Ok(vec![unbroadcast(g.clone(), &a)?, unbroadcast(g.neg(), &b)?])
        }))
    }

    /// `self * other`, broadcasting.
    pub fn mul(&self, other: &Var) -> Result<Var> {
        let z = self.value().mul(other.value())?;
        let (a, b) = (self.clone(), other.clone());
        Ok(Var::from_op(z, "mul", &[self, other], move |g| {
            let da = if a.requires_grad() {
                unbroadcast(g.mul(b.value())?, &a)?
            } else {
                None
            };
            let db = if b.requires_grad() {
                unbroadcast(g.mul(a.value())?, &b)?
            } else {
                None
            };
            Ok(vec![da, db])
        }))
    }

    /// `self / other`, broadcasting.
    pub fn div(&self, other: &Var) -> Result<Var> {
        let z = self.value().div(other.value())?;
        let (a, b, zc) = (self.clone(), other.clone(), z.clone());
        Ok(Var::from_op(z, "div", &[self, other], move |g| {
            let da = if a.requires_grad() {
                unbroadcast(g.div(b.value())?, &a)?
            } else {
                None
            };
            let db = if b.requires_grad() {
                unbroadcast(g.mul(&zc)?.div(b.value())?.neg(), &b)?
            } else {
                None
            };
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
