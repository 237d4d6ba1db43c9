//! `Var`, a tensor that remembers how it was made, and `Parameter`, a leaf that
//! lives across training steps.

use std::cell::RefCell;
use std::rc::Rc;

use tensor::{Result, Tensor, TensorError};

use crate::tape::{self, GradCell, Input, NodeId};

/// A tensor value plus, when a gradient can flow to it, its node on the tape.
///
/// Cloning is cheap (the tensor's storage is shared). A `Var` without a node is a
/// constant: data, or anything computed under [`crate::no_grad`].
#[derive(Clone)]
pub struct Var {
    value: Tensor,
    node: Option<Input>,
}

impl std::fmt::Debug for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Var({:?}, requires_grad: {})",
            self.value,
            self.requires_grad()
        )
    }
}

impl From<Tensor> for Var {
    fn from(t: Tensor) -> Self {
        Var::constant(t)
    }
}

impl Var {
    /// A value no gradient flows to (input data, targets, noise).
    pub fn constant(value: Tensor) -> Var {
        Var { value, node: None }
    }

    /// A fresh leaf that collects a gradient, readable with [`Var::grad`] after
    /// `backward`. Parameters of a model use [`Parameter`] instead.
    pub fn leaf(value: Tensor) -> Var {
        let cell: GradCell = Rc::new(RefCell::new(None));
        Var::leaf_with(value, tape::next_id(), cell)
    }

    fn leaf_with(value: Tensor, id: NodeId, cell: GradCell) -> Var {
        let node = Input {
            id,
            shape: value.shape().to_vec(),
            leaf: Some(cell),
        };
        Var {
            value,
            node: Some(node),
        }
    }

    /// The result of an op: `value`, computed from `inputs`, whose gradients the
    /// closure `backward` gives from the gradient of `value`. Records the op on
    /// the tape when recording is on and some input needs a gradient; otherwise
    /// the closure (and all it saved) is dropped at once.
    pub fn from_op(
        value: Tensor,
        op: &'static str,
        inputs: &[&Var],
        backward: impl FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + 'static,
    ) -> Var {
        crate::profile::lap(op);
        if !tape::is_recording() || !inputs.iter().any(|v| v.requires_grad()) {
            return Var::constant(value);
        }
        let id = tape::next_id();
        let recorded = inputs.iter().map(|v| v.node.clone()).collect();
        tape::record(op, id, recorded, Box::new(backward));
        let node = Input {
            id,
            shape: value.shape().to_vec(),
            leaf: None,
        };
        Var {
            value,
            node: Some(node),
        }
    }

    /// The value.
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    /// The value's shape.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    /// The value's rank.
    pub fn rank(&self) -> usize {
        self.value.rank()
    }

    /// True when a gradient can flow to this value.
    pub fn requires_grad(&self) -> bool {
        self.node.is_some()
    }

    /// The same value, cut off from the tape: no gradient flows through it.
    pub fn detach(&self) -> Var {
        Var::constant(self.value.clone())
    }

    /// The gradient accumulated so far, for a leaf; `None` for other values (their
    /// gradients are freed during backward) or before any backward.
    pub fn grad(&self) -> Option<Tensor> {
        self.node.as_ref()?.leaf.as_ref()?.borrow().clone()
    }

    /// Back-propagates from this scalar (one-element) value: every leaf it depends
    /// on gets `d self / d leaf` added to its gradient. Empties the tape.
    ///
    /// # Errors
    ///
    /// Fails, and changes nothing, when the value is not a scalar, when it is a
    /// constant (nothing needs a gradient), or when its graph was already consumed
    /// by an earlier `backward` or [`crate::clear_tape`] (see [`crate::tape`]). On
    /// a leaf it succeeds every time, adding 1 to the leaf's gradient.
    pub fn backward(&self) -> Result<()> {
        if self.value.numel() != 1 {
            return Err(TensorError::InvalidArgument {
                op: "backward",
                msg: format!(
                    "needs a scalar (one-element) value, shape is {:?}; use backward_with",
                    self.shape()
                ),
            });
        }
        self.backward_with(Tensor::ones(self.shape()))
    }

    /// Back-propagates with `seed` as the gradient of this value (a vector-Jacobian
    /// product). Empties the tape. Fails as [`Var::backward`] does, or when the
    /// seed's shape is not the value's.
    pub fn backward_with(&self, seed: Tensor) -> Result<()> {
        let Some(node) = &self.node else {
            return Err(TensorError::InvalidArgument {
                op: "backward",
                msg: "the value does not depend on anything that needs a gradient (it is a \
                      constant, a detached value, or was computed under no_grad); build the loss \
                      from Parameter::var() or Var::leaf() outside no_grad"
                    .into(),
            });
        };
        if seed.shape() != self.shape() {
            return Err(TensorError::ShapeMismatch {
                op: "backward",
                lhs: self.shape().to_vec(),
                rhs: seed.shape().to_vec(),
            });
        }
        tape::backward_from(node.id, node.leaf.as_ref(), seed)
    }
}

/// A trainable tensor: a leaf whose value the optimiser updates between steps and
/// whose gradient accumulates over backward passes until [`Parameter::zero_grad`].
///
/// Cloning shares the parameter (it is reference-counted), so a layer and an
/// optimiser can both hold it.
#[derive(Clone)]
pub struct Parameter {
    inner: Rc<ParamInner>,
}

struct ParamInner {
    id: NodeId,
    value: RefCell<Tensor>,
    grad: GradCell,
}

impl std::fmt::Debug for Parameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Parameter({:?})", self.inner.value.borrow())
    }
}

impl Parameter {
    /// A parameter starting at `value`.
    pub fn new(value: Tensor) -> Parameter {
        Parameter {
            inner: Rc::new(ParamInner {
                id: tape::next_id(),
                value: RefCell::new(value.contiguous()),
                grad: Rc::new(RefCell::new(None)),
            }),
        }
    }

    /// The current value as a leaf `Var`, for use in a forward pass.
    pub fn var(&self) -> Var {
        Var::leaf_with(self.value(), self.inner.id, Rc::clone(&self.inner.grad))
    }

    /// The current value.
    pub fn value(&self) -> Tensor {
        self.inner.value.borrow().clone()
    }

    /// The value's shape.
    pub fn shape(&self) -> Vec<usize> {
        self.inner.value.borrow().shape().to_vec()
    }

    /// Replaces the value (an optimiser step, or loading a checkpoint). The shape
    /// must stay the same.
    pub fn set_value(&self, value: Tensor) -> Result<()> {
        let old = self.shape();
        if value.shape() != old {
            return Err(TensorError::ShapeMismatch {
                op: "Parameter::set_value",
                lhs: old,
                rhs: value.shape().to_vec(),
            });
        }
        *self.inner.value.borrow_mut() = value.contiguous();
        Ok(())
    }

    /// The accumulated gradient, if any backward reached this parameter.
    pub fn grad(&self) -> Option<Tensor> {
        self.inner.grad.borrow().clone()
    }

    /// Replaces the accumulated gradient (gradient clipping, tests). The shape
    /// must be the parameter's.
    pub fn set_grad(&self, grad: Option<Tensor>) -> Result<()> {
        if let Some(g) = &grad {
            let shape = self.shape();
            if g.shape() != shape {
                return Err(TensorError::ShapeMismatch {
                    op: "Parameter::set_grad",
                    lhs: shape,
                    rhs: g.shape().to_vec(),
                });
            }
        }
        *self.inner.grad.borrow_mut() = grad;
        Ok(())
    }

    /// Forgets the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.inner.grad.borrow_mut() = None;
    }

    /// True when `self` and `other` are the same parameter (not just equal values).
    pub fn same_as(&self, other: &Parameter) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}
