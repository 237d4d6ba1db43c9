//! The backward rule of every op, each beside its forward, grouped by kind.

mod arith;
mod conv;
mod linalg;
mod loss;
mod norm;
mod reduce;
mod shape;
mod unary;
