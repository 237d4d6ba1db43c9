//! The named U-Net configurations of `shared/spec/unet.md`.

use tensor::{Result, TensorError};

/// The shape of a U-Net (see the spec's table).
#[derive(Debug, Clone, PartialEq)]
pub struct UNetConfig {
    /// The config's name, e.g. `mnist-small`.
    pub name: String,
    /// Images are `image_size x image_size`.
    pub image_size: usize,
    /// Input channels.
    pub in_ch: usize,
    /// Output channels: the predicted noise has the input's channels, and a model
    /// with learned variances outputs as many again (see [`UNetConfig::learn_sigma`]).
    pub out_ch: usize,
    /// The base channel count `C`.
    pub ch: usize,
    /// Channel multipliers, one per resolution level.
    pub ch_mult: Vec<usize>,
    /// Residual blocks per level on the way down (one more on the way up).
    pub num_res_blocks: usize,
    /// Resolutions (side lengths) at which blocks are followed by attention.
    pub attn_resolutions: Vec<usize>,
    /// Group-norm groups.
    pub groups: usize,
    /// Dropout probability inside residual blocks.
    pub dropout: f32,
    /// `Some(n)` for a class-conditional model with `n` classes.
    pub num_classes: Option<usize>,
    /// Whether the network also outputs the interpolation `v` of its reverse-step
    /// variance (Nichol and Dhariwal 2021; see [`crate::variance`]). Set it with
    /// [`UNetConfig::with_learned_sigma`], which doubles `out_ch`.
    pub learn_sigma: bool,
}

/// The names [`UNetConfig::named`] knows.
pub const CONFIG_NAMES: [&str; 3] = ["mnist-tiny", "mnist-small", "cifar10"];

impl UNetConfig {
    /// A named config from the spec: `mnist-tiny`, `mnist-small` or `cifar10`;
    /// `Err` names the unknown name and the known ones.
    pub fn named(name: &str) -> std::result::Result<UNetConfig, String> {
        let (image_size, in_ch, ch, ch_mult, blocks, attn, groups, dropout) = match name {
            "mnist-small" => (28, 1, 32, vec![1, 2, 2], 2, vec![7], 8, 0.1),
            "mnist-tiny" => (28, 1, 16, vec![1, 2, 2], 1, vec![7], 8, 0.0),
            "cifar10" => (32, 3, 128, vec![1, 2, 2, 2], 2, vec![16], 32, 0.1),
            _ => {
                return Err(format!(
                    "unknown config {name:?}; known: {}",
                    CONFIG_NAMES.join(", ")
                ))
            }
        };
        Ok(UNetConfig {
            name: name.to_string(),
            image_size,
            in_ch,
            out_ch: in_ch,
            ch,
            ch_mult,
            num_res_blocks: blocks,
            attn_resolutions: attn,
            groups,
            dropout,
            num_classes: None,
            learn_sigma: false,
        })
    }

    /// The same network with learned variances: `in_ch` more output channels.
    pub fn with_learned_sigma(mut self) -> UNetConfig {
        self.learn_sigma = true;
        self.out_ch = 2 * self.in_ch;
        self
    }

    /// Checks that the channel counts split into the groups and the sizes halve.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(TensorError::InvalidArgument { op: "config", msg });
        if self.ch == 0
            || !self.ch.is_multiple_of(2)
            || self.ch_mult.is_empty()
            || self.in_ch == 0
            || self.image_size == 0
        {
            return bad(format!(
                "{}: needs an even ch, a non-empty ch_mult and non-zero sizes",
                self.name
            ));
        }
        if let Some(m) = self
            .ch_mult
            .iter()
            .find(|&&m| m == 0 || !(self.ch * m).is_multiple_of(self.groups))
        {
            return bad(format!(
                "{}: {} channels do not split into {} groups",
                self.name,
                self.ch * m,
                self.groups
            ));
        }
        if !self.ch.is_multiple_of(self.groups) {
            return bad(format!(
                "{}: {} channels do not split into {} groups",
                self.name, self.ch, self.groups
            ));
        }
        let levels = self.ch_mult.len() as u32;
        if !self.image_size.is_multiple_of(2usize.pow(levels - 1)) {
            return bad(format!(
                "{}: size {} does not halve {} times",
                self.name,
                self.image_size,
                levels - 1
            ));
        }
        if self.out_ch != self.in_ch * (1 + usize::from(self.learn_sigma)) {
            return bad(format!(
                "{}: {} output channels for {} input channels (learned variances: {})",
                self.name, self.out_ch, self.in_ch, self.learn_sigma
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!(
                "{}: dropout {} is not in [0, 1)",
                self.name, self.dropout
            ));
        }
        Ok(())
    }
}
