//! The layers a U-Net and a small classifier need.

mod attention;
mod conv;
mod embedding;
mod linear;
mod norm;
mod simple;

pub use attention::SelfAttention;
pub use conv::Conv2d;
pub use embedding::Embedding;
pub use linear::Linear;
pub use norm::GroupNorm;
pub use simple::{Dropout, SiLU, Upsample};
