//! The backward rule of every op, each beside its forward, grouped by kind.

mod arith;
mod conv;
mod linalg;
mod loss;
mod norm;
mod reduce;
mod shape;
mod unary;

use tensor::{Result, Tensor};

use crate::Var;

/// What a gradient rule keeps of an operand: whether it wants a gradient and
/// its shape, not its value. Keeping the `Var` would keep its value alive until
/// backward; `x + y` needs neither value, and it is the U-Net's residual and
/// time-embedding add, whose operands (convolution outputs) nothing else keeps.
pub(crate) struct Operand {
    pub(crate) requires_grad: bool,
    shape: Vec<usize>,
}

impl Operand {
    pub(crate) fn of(v: &Var) -> Self {
        Operand {
            requires_grad: v.requires_grad(),
            shape: v.shape().to_vec(),
        }
    }

    /// `g()` summed back to the operand's shape if it needs a gradient (`g` is
    /// computed only then).
    pub(crate) fn unbroadcast(&self, g: impl FnOnce() -> Result<Tensor>) -> Result<Option<Tensor>> {
        self.requires_grad.then(|| self.sum_back(g()?)).transpose()
    }

    /// `g` summed back to the operand's shape (the axes it was broadcast along).
    pub(crate) fn sum_back(&self, g: Tensor) -> Result<Tensor> {
        if g.shape() == self.shape.as_slice() {
            Ok(g)
        } else {
            g.sum_to_shape(&self.shape)
        }
    }
}

/// `v`'s value if `needed`: what a rule keeps of an operand it reads only for
/// the other operand's gradient (kept exactly when that operand needs one).
pub(crate) fn value_if(needed: bool, v: &Var) -> Option<Tensor> {
    needed.then(|| v.value().clone())
}
