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
//! - [`figures`]: the paper's pictures: `x_0` along the chain, shared latents,
//!   interpolation.
//! - [`eval`]: the classifier's confident fraction and a Frechet distance on its
//!   features ("FID" with the shipped LeNet in place of Inception).
//! - [`train`]: the training loop, checkpoints and resumption.
//! - [`app`], [`cli`]: the `ddpm` program and its flag parser.
//! - [`data`]: IDX files, image folders, the embedded MNIST subset, PNG grids.
//! - [`plot`]: a tiny raster plotter (lines, points, arrows, a bitmap font) for
//!   the loss curve and the 2-D toy.
//! - [`toy`]: Sohl-Dickstein et al.'s figure 1 with a DDPM: a 2-D Swiss roll
//!   diffused to a Gaussian and learned back (`ddpm toy`).

pub mod app;
pub mod cli;
pub mod config;
pub mod data;
pub mod diffusion;
pub mod eval;
pub mod figures;
pub mod likelihood;
pub mod plot;
pub mod sample;
pub mod schedule;
pub mod toy;
pub mod train;
pub mod unet;
pub mod variance;
