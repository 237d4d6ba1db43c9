//! Denoising diffusion probabilistic models (Ho, Jain and Abbeel 2020) on the
//! engine's own tensors, autograd and layers.
//!
//! - [`config`]: the spec's named U-Net configs.
//! - [`unet`]: the U-Net; it predicts the noise `eps`, `x_0` or `v`, as its
//!   objective says.
//! - [`schedule`]: beta, alpha, alpha-bar and every derived constant, computed once.
//! - [`diffusion`]: the forward process `q_sample`, its posterior, and the
//!   objectives: each one's target, and the network's output read as `eps` and
//!   `x_0`.
//! - [`likelihood`]: the variational bound in bits per dimension.
//! - [`variance`]: learned reverse-step variances and the bound's terms.
//! - [`sample`]: ancestral (DDPM) and DDIM samplers, DPM-Solver++ and Heun, on any
//!   spacing of the steps.
//! - [`figures`]: the paper's pictures: `x_0` along the chain, shared latents,
//!   interpolation.
//! - [`eval`]: the classifier's confident fraction and a Frechet distance on its
//!   features ("FID" with the shipped LeNet in place of Inception).
//! - [`contract`]: what a weight file records about its model and diffusion.
//! - [`loss`]: the training loss (`L_simple`, min-SNR weighted or not, or
//!   `L_hybrid`).
//! - [`train`]: the training loop; [`losslog`]: its `loss.csv`.
//! - [`checkpoint`]: saving, resuming and loading weight files, checked.
//! - [`error`]: the crate's one error type.
//! - [`app`]: the `ddpm` program, one file per command, its command line in
//!   [`app::args`].
//! - [`data`]: IDX files, image folders, the embedded MNIST subset, PNG grids.
//! - [`plot`]: a tiny raster plotter (lines, points, arrows, a bitmap font) for
//!   the loss curve and the 2-D toy.
//! - [`toy`]: Sohl-Dickstein et al.'s figure 1 with a DDPM: a 2-D Swiss roll
//!   diffused to a Gaussian and learned back (`ddpm toy`).

pub mod app;
pub mod checkpoint;
pub mod config;
pub mod contract;
pub mod data;
pub mod diffusion;
pub mod error;
pub mod eval;
pub mod figures;
pub mod likelihood;
pub mod loss;
pub mod losslog;
pub mod plot;
pub mod sample;
pub mod schedule;
pub mod toy;
pub mod train;
pub mod unet;
pub mod variance;
