//! Matrix products. With `C = A B` (batched over leading axes, which broadcast):
//!
//! ```text
//! dA = dC B^T    dB = A^T dC
//! ```
//! each summed over the batch axes the operand was broadcast along. Transposes
//! are views, so neither product copies an operand.

use tensor::Result;

use super::{value_if, Operand};
use crate::Var;

impl Var {
    /// The matrix product of the last two axes, batch axes broadcasting. Operands
    /// must have rank >= 2 (a vector is a `[1, n]` or `[n, 1]` matrix: `unsqueeze`).
    pub fn matmul(&self, other: &Var) -> Result<Var> {
        if self.rank() < 2 || other.rank() < 2 {
            return Err(tensor::TensorError::ShapeMismatch {
                op: "matmul",
                lhs: self.shape().to_vec(),
                rhs: other.shape().to_vec(),
            });
        }
        let c = self.value().matmul(other.value())?;
        let (a, b) = (Operand::of(self), Operand::of(other));
        let (a_value, b_value) = (value_if(b.requires_grad, self), value_if(a.requires_grad, other));
        Ok(Var::from_op(c, "matmul", &[self, other], move |g| {
            let da = b_value.map(|b| a.sum_back(g.matmul(&b.t()?)?)).transpose()?;
            let db = a_value.map(|a| b.sum_back(a.t()?.matmul(g)?)).transpose()?;
            Ok(vec![da, db])
        }))
    }
}
