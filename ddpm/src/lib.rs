//! Denoising diffusion probabilistic models: data, the U-Net, training and sampling
//! (in progress: see the issues).

pub mod data;
