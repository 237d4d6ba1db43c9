//! A small LeNet-style digit classifier for 28x28 grey images.
//!
//! Strided convolutions stand in for LeNet's pooling (an "all-convolutional"
//! net): `[B, 1, 28, 28]` -> conv 3x3 (16) -> conv 3x3 stride 2 (32, 14x14) ->
//! conv 3x3 stride 2 (64, 7x7) -> dense 128 -> dense 10, ReLU between.
//! The 128 features before the last layer are what the DDPM evaluation compares
//! (a Frechet distance on classifier features), so [`LeNet::features`] exposes them.

use autograd::{Parameter, Result, Var};
use rand::Rng;
use tensor::conv::Conv2dParams;

use crate::init::Init;
use crate::layers::{Conv2d, Linear};
use crate::module::{join, Module};

/// The width of the penultimate feature vector.
pub const FEATURES: usize = 128;

/// The classifier.
pub struct LeNet {
    /// 1 -> 16 channels, 28x28.
    pub conv1: Conv2d,
    /// 16 -> 32 channels, to 14x14.
    pub conv2: Conv2d,
    /// 32 -> 64 channels, to 7x7.
    pub conv3: Conv2d,
    /// 64 * 7 * 7 -> 128 features.
    pub fc1: Linear,
    /// 128 features -> 10 logits.
    pub fc2: Linear,
}

impl LeNet {
    /// A freshly initialised classifier (Kaiming-uniform).
    pub fn new<R: Rng + ?Sized>(rng: &mut R) -> LeNet {
        let same = Conv2dParams {
            stride: 1,
            padding: 1,
        };
        let half = Conv2dParams {
            stride: 2,
            padding: 1,
        };
        let init = Init::KaimingUniform;
        LeNet {
            conv1: Conv2d::new(1, 16, 3, same, init, rng),
            conv2: Conv2d::new(16, 32, 3, half, init, rng),
            conv3: Conv2d::new(32, 64, 3, half, init, rng),
            fc1: Linear::new(64 * 7 * 7, FEATURES, init, rng),
            fc2: Linear::new(FEATURES, 10, init, rng),
        }
    }

    /// The `[B, 128]` penultimate features of images `[B, 1, 28, 28]` in `[-1, 1]`.
    pub fn features(&self, x: &Var) -> Result<Var> {
        let h = self.conv1.forward(x)?.relu();
        let h = self.conv2.forward(&h)?.relu();
        let h = self.conv3.forward(&h)?.relu();
        let b = h.shape()[0];
        Ok(self.fc1.forward(&h.reshape(&[b, 64 * 7 * 7])?)?.relu())
    }

    /// The `[B, 10]` logits.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        self.fc2.forward(&self.features(x)?)
    }
}

impl Module for LeNet {
    fn collect_parameters(&self, prefix: &str, out: &mut Vec<(String, Parameter)>) {
        self.conv1.collect_parameters(&join(prefix, "conv1"), out);
        self.conv2.collect_parameters(&join(prefix, "conv2"), out);
        self.conv3.collect_parameters(&join(prefix, "conv3"), out);
        self.fc1.collect_parameters(&join(prefix, "fc1"), out);
        self.fc2.collect_parameters(&join(prefix, "fc2"), out);
    }
}
