//! Neural-network building blocks on top of `autograd`.
//!
//! - [`Module`]: hierarchically named parameters and a training switch (each
//!   layer's forward pass is its own inherent method).
//! - [`layers`]: `Linear`, `Conv2d`, `GroupNorm`, `SiLU`, `Dropout`,
//!   `SelfAttention`, `Upsample`, `Embedding`.
//! - [`init`]: Kaiming-uniform, variance-scaling and zero initialisers.
//! - [`optim`]: SGD with momentum, Adam and AdamW, gradient-norm clipping,
//!   warm-up + cosine learning rates, and an EMA of the weights.
//! - [`checkpoint`]: a model's named parameters to and from a file.
//! - [`safetensors`]: checkpoints in the safetensors format, atomic saves.
//! - [`fs`]: atomic file writes (temporary file, fsync, rename), for every file
//!   the workspace writes.
//! - [`lenet`]: a small digit classifier (the MNIST example trains it; the DDPM
//!   evaluation uses its features).

pub mod checkpoint;
pub mod fs;
pub mod init;
pub mod layers;
pub mod lenet;
pub mod module;
pub mod optim;
pub mod safetensors;

pub use module::Module;
