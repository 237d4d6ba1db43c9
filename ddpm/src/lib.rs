//! Denoising diffusion probabilistic models (Ho, Jain and Abbeel 2020) on the
//! engine's own tensors, autograd and layers.
//!
//! - [`config`]: the spec's named U-Net configs.
//! - [`unet`]: the epsilon-predicting U-Net.
//! - [`schedule`]: beta, alpha, alpha-bar and every derived constant, computed once.
//! - [`diffusion`]: `q_sample` and the `L_simple` training loss.
//! - [`likelihood`]: the variational bound in bits per dimension.
//! - [`variance`]: learned reverse-step variances and the hybrid loss.
//! - [`sample`]: ancestral (DDPM), strided and DDIM samplers.
//! - [`eval`]: the classifier's confident fraction and a Frechet distance on its
//!   features ("FID" with the shipped LeNet in place of Inception).
//! - [`train`]: the training loop, checkpoints and resumption.
//! - [`app`], [`cli`]: the `ddpm` program and its flag parser.
//! - [`data`]: IDX files, image folders, the embedded MNIST subset, PNG grids.

pub mod app;
pub mod cli;
pub mod config;
pub mod data;
pub mod diffusion;
pub mod eval;
pub mod likelihood;
pub mod sample;
pub mod schedule;
pub mod train;
pub mod unet;
pub mod variance;
