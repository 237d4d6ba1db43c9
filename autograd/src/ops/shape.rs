//! Views and re-arrangements. None of these changes a value, they only move
//! values around, so each backward moves the gradient back:
//!
//! ```text
//! reshape / squeeze / unsqueeze:  dx = reshape(g, shape(x))
//! permute(p):                     dx = permute(g, p^-1)
//! narrow(axis, start, len):       dx = zeros, with g written at start..start+len
//! broadcast_to(shape):            dx = sum_to_shape(g, shape(x))
//! concat(xs, axis):               dx_i = the i-th slice of g along axis
//! index_select(axis, idx):        dx = index_add(g): rows of g added at idx
//! ```

use tensor::{Result, Tensor};

use crate::Var;

impl Var {
    /// The same elements under a new shape.
    pub fn reshape(&self, shape: &[usize]) -> Result<Var> {
        let y = self.value().reshape(shape)?;
        let in_shape = self.shape().to_vec();
        Ok(Var::from_op(y, "reshape", &[self], move |g| {
            Ok(vec![Some(g.reshape(&in_shape)?)])
        }))
    }

    /// Reorders the axes: axis `i` of the result is axis `perm[i]` of `self`.
    pub fn permute(&self, perm: &[usize]) -> Result<Var> {
        let y = self.value().permute(perm)?;
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        Ok(Var::from_op(y, "permute", &[self], move |g| {
            Ok(vec![Some(g.permute(&inverse)?)])
        }))
    }

    /// Swaps two axes.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Var> {
        let y = self.value().transpose(a, b)?;
        Ok(Var::from_op(y, "transpose", &[self], move |g| {
            Ok(vec![Some(g.transpose(a, b)?)])
        }))
    }

    /// Removes an axis of size 1.
    pub fn squeeze(&self, axis: usize) -> Result<Var> {
        let y = self.value().squeeze(axis)?;
        Ok(Var::from_op(y, "squeeze", &[self], move |g| {
            Ok(vec![Some(g.unsqueeze(axis)?)])
        }))
    }

    /// Inserts an axis of size 1.
    pub fn unsqueeze(&self, axis: usize) -> Result<Var> {
        let y = self.value().unsqueeze(axis)?;
        Ok(Var::from_op(y, "unsqueeze", &[self], move |g| {
            Ok(vec![Some(g.squeeze(axis)?)])
        }))
    }

    /// Repeats axes of size 1 to reach `shape`.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Var> {
        let y = self.value().broadcast_to(shape)?;
        let in_shape = self.shape().to_vec();
        Ok(Var::from_op(y, "broadcast_to", &[self], move |g| {
            Ok(vec![Some(g.sum_to_shape(&in_shape)?)])
        }))
    }

    /// Keeps `len` elements of `axis` from `start`.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Var> {
        let y = self.value().narrow(axis, start, len)?;
        let in_shape = self.shape().to_vec();
        Ok(Var::from_op(y, "narrow", &[self], move |g| {
            // Pad g with zeros before and after, along `axis`.
            let mut before = in_shape.clone();
            before[axis] = start;
            let mut after = in_shape.clone();
            after[axis] = in_shape[axis] - start - len;
            let (zb, za) = (Tensor::zeros(&before), Tensor::zeros(&after));
            Ok(vec![Some(Tensor::concat(&[&zb, g, &za], axis)?)])
        }))
    }

    /// Joins `vars` along `axis` (all other axes equal).
    pub fn concat(vars: &[&Var], axis: usize) -> Result<Var> {
        let values: Vec<&Tensor> = vars.iter().map(|v| v.value()).collect();
        let y = Tensor::concat(&values, axis)?;
        let sizes: Vec<usize> = vars.iter().map(|v| v.shape()[axis]).collect();
        Ok(Var::from_op(y, "concat", vars, move |g| {
            Ok(g.split(axis, &sizes)?.into_iter().map(Some).collect())
        }))
    }

    /// Cuts `self` along `axis` into pieces of the given sizes (each a `narrow`).
    pub fn split(&self, axis: usize, sizes: &[usize]) -> Result<Vec<Var>> {
        let mut start = 0;
        let mut pieces = Vec::with_capacity(sizes.len());
        for &len in sizes {
            pieces.push(self.narrow(axis, start, len)?);
            start += len;
        }
        if start != self.value().dim(axis)? {
            return Err(tensor::TensorError::InvalidArgument {
                op: "split",
                msg: format!(
                    "sizes {sizes:?} do not add up to axis {axis} of shape {:?}",
                    self.shape()
                ),
            });
        }
        Ok(pieces)
    }

    /// Gathers the slices `indices` along `axis` (an embedding lookup on axis 0).
    pub fn index_select(&self, axis: usize, indices: &[usize]) -> Result<Var> {
        let y = self.value().index_select(axis, indices)?;
        let (idx, in_shape) = (indices.to_vec(), self.shape().to_vec());
        Ok(Var::from_op(y, "index_select", &[self], move |g| {
            Ok(vec![Some(g.index_add(axis, &idx, &in_shape)?)])
        }))
    }
}
