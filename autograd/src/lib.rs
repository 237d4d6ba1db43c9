//! Tape-based reverse-mode automatic differentiation over the `tensor` crate.
//!
//! - [`Var`]: a tensor that knows how it was made; [`Parameter`]: a trainable leaf.
//! - [`tape`]: the Wengert list the forward pass writes and `backward` reads in
//!   reverse. Start there: it is the whole algorithm.
//! - `ops`: every differentiable op, its backward rule beside its forward, with
//!   the maths in a comment.
//! - [`profile`]: an optional per-op stopwatch (forward and backward time per op kind).
//! - [`gradcheck`]: a finite-difference checker that the tests run on every op.
//!
//! ```
//! use autograd::Var;
//! use tensor::Tensor;
//!
//! let x = Var::leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3]).unwrap());
//! let y = x.mul(&x).unwrap().sum_all().unwrap(); // y = sum x^2
//! y.backward().unwrap();
//! assert_eq!(x.grad().unwrap().to_vec(), vec![2.0, 4.0, 6.0]); // dy/dx = 2x
//! ```

pub mod gradcheck;
mod ops;
pub mod profile;
pub mod tape;
mod var;

pub use tape::{clear_tape, is_recording, no_grad, tape_len};
pub use tensor::{Result, Tensor, TensorError};
pub use var::{Parameter, Var};
