//! The epsilon-predicting U-Net of Ho et al. (2020), appendix B, exactly as
//! `shared/spec/unet.md` writes it, with the PyTorch port's parameter names.
//!
//! ```text
//! temb = dense(4C, 4C)(act(dense(C, 4C)(timestep_embedding(t, C))))   (+ label_emb[y])
//! hs = [conv_in(x)]
//! down: per level, num_res_blocks x (ResBlock [+ Attn]), pushing each output; then Down
//! mid:  ResBlock, Attn, ResBlock
//! up:   per level (reversed), num_res_blocks + 1 x (ResBlock on concat(h, hs.pop()) [+ Attn]); then Up
//! out = conv_out(act(norm_out(h)))
//! ```
//! The second conv of each ResBlock, each attention's output projection and
//! `conv_out` start at zero, so the untrained network predicts zero noise.

use autograd::{Parameter, Result, Var};
use nn::init::Init;
use nn::layers::{Conv2d, Dropout, Embedding, GroupNorm, Linear, SelfAttention};
use nn::module::join;
use nn::Module;
use rand::Rng;
use tensor::conv::Conv2dParams;
use tensor::{Tensor, TensorError};

use crate::config::UNetConfig;

const SAME: Conv2dParams = Conv2dParams {
    stride: 1,
    padding: 1,
};
const HALF: Conv2dParams = Conv2dParams {
    stride: 2,
    padding: 1,
};
const NIN: Conv2dParams = Conv2dParams {
    stride: 1,
    padding: 0,
};

/// Default initialiser (the DDPM code's variance scaling, scale 1).
const INIT: Init = Init::VarianceScaling { scale: 1.0 };

/// The sinusoidal embedding of integer steps `t` in `dim` (even) dimensions:
/// `f_k = exp(-ln(10000) k / (half - 1))`, output `[sin(t f), cos(t f)]`, `[B, dim]`.
pub fn timestep_embedding(t: &[usize], dim: usize) -> Tensor {
    let half = dim / 2;
    let freq: Vec<f64> = (0..half)
        .map(|k| (-(10000f64.ln()) * k as f64 / (half.max(2) - 1) as f64).exp())
        .collect();
    let mut data = Vec::with_capacity(t.len() * dim);
    for &step in t {
        data.extend(freq.iter().map(|f| (step as f64 * f).sin() as f32));
        data.extend(freq.iter().map(|f| (step as f64 * f).cos() as f32));
    }
    Tensor::from_vec(data, &[t.len(), dim]).expect("dim = 2 * half")
}

/// A residual block with a time-embedding input.
pub struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    temb_proj: Linear,
    norm2: GroupNorm,
    dropout: Dropout,
    conv2: Conv2d,
    nin_shortcut: Option<Conv2d>,
}

impl ResBlock {
    fn new<R: Rng + ?Sized>(
        cin: usize,
        cout: usize,
        temb: usize,
        cfg: &UNetConfig,
        seed: u64,
        rng: &mut R,
    ) -> Result<Self> {
        Ok(ResBlock {
            norm1: GroupNorm::new(cfg.groups, cin)?,
            conv1: Conv2d::new(cin, cout, 3, SAME, INIT, rng),
            temb_proj: Linear::new(temb, cout, INIT, rng),
            norm2: GroupNorm::new(cfg.groups, cout)?,
            dropout: Dropout::new(cfg.dropout, seed)?,
            conv2: Conv2d::new(cout, cout, 3, SAME, Init::Zeros, rng),
            nin_shortcut: (cin != cout).then(|| Conv2d::new(cin, cout, 1, NIN, INIT, rng)),
        })
    }

    /// `skip(x) + conv2(dropout(act(norm2(conv1(act(norm1(x))) + temb_proj(act(temb))))))`.
    ///
    /// Both adds are fused into the convolution before them (`Conv2d::forward_add`,
    /// the same values as a separate add).
    fn forward(&self, x: &Var, temb_act: &Var) -> Result<Var> {
        let t = self.temb_proj.forward(temb_act)?;
        let (b, c) = (t.shape()[0], t.shape()[1]);
        let h = self
            .conv1
            .forward_add(&self.norm1.forward_silu(x)?, &t.reshape(&[b, c, 1, 1])?)?;
        let skip = match &self.nin_shortcut {
            Some(nin) => nin.forward(x)?,
            None => x.clone(),
        };
        self.conv2
            .forward_add(&self.norm2.forward_silu_dropout(&h, &self.dropout)?, &skip)
    }

    fn collect_parameters(&self, prefix: &str, out: &mut Vec<(String, Parameter)>) {
        self.norm1.collect_parameters(&join(prefix, "norm1"), out);
        self.conv1.collect_parameters(&join(prefix, "conv1"), out);
        self.temb_proj.collect_parameters(&join(prefix, "temb_proj"), out);
        self.norm2.collect_parameters(&join(prefix, "norm2"), out);
        self.conv2.collect_parameters(&join(prefix, "conv2"), out);
        if let Some(nin) = &self.nin_shortcut {
            nin.collect_parameters(&join(prefix, "nin_shortcut"), out);
        }
    }
}

/// One resolution level: its blocks, their attentions (where the resolution is
/// in `attn_resolutions`), and the resampling conv (`Down` or `Up`), if any.
struct Level {
    blocks: Vec<ResBlock>,
    attns: Vec<SelfAttention>,
    resample: Option<Conv2d>,
}

impl Level {
    fn collect_parameters(&self, prefix: &str, resample: &str, out: &mut Vec<(String, Parameter)>) {
        for (i, b) in self.blocks.iter().enumerate() {
            b.collect_parameters(&join(prefix, &format!("block.{i}")), out);
        }
        for (i, a) in self.attns.iter().enumerate() {
            a.collect_parameters(&join(prefix, &format!("attn.{i}")), out);
        }
        if let Some(conv) = &self.resample {
            conv.collect_parameters(&join(prefix, &format!("{resample}.conv")), out);
        }
    }
}

/// The U-Net.
pub struct UNet {
    /// The configuration it was built from.
    pub config: UNetConfig,
    temb_dense: [Linear; 2],
    conv_in: Conv2d,
    down: Vec<Level>,
    mid: (ResBlock, SelfAttention, ResBlock),
    /// Indexed by level, like `down` (built from the last level to the first).
    up: Vec<Level>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    label_emb: Option<Embedding>,
}

impl UNet {
    /// A freshly initialised network for `config`; `rng` draws the weights, and
    /// dropout layers are seeded from it too.
    pub fn new<R: Rng + ?Sized>(config: &UNetConfig, rng: &mut R) -> Result<UNet> {
        config.validate()?;
        let cfg = config;
        let c = cfg.ch;
        let temb = 4 * c;
        let mut res = cfg.image_size;
        let block = |cin: usize, cout: usize, rng: &mut R| {
            let seed = rng.gen();
            ResBlock::new(cin, cout, temb, cfg, seed, rng)
        };
        // Down path, tracking the channels of every pushed feature map.
        let mut hs = vec![c];
        let mut down = Vec::new();
        for (level, &mult) in cfg.ch_mult.iter().enumerate() {
            let (mut blocks, mut attns) = (Vec::new(), Vec::new());
            for _ in 0..cfg.num_res_blocks {
                blocks.push(block(*hs.last().expect("non-empty"), c * mult, rng)?);
                if cfg.attn_resolutions.contains(&res) {
                    attns.push(SelfAttention::new(c * mult, cfg.groups, INIT, rng)?);
                }
                hs.push(c * mult);
            }
            let resample = (level + 1 != cfg.ch_mult.len()).then(|| {
                hs.push(c * mult);
                res = res.div_ceil(2);
                Conv2d::new(c * mult, c * mult, 3, HALF, INIT, rng)
            });
            down.push(Level {
                blocks,
                attns,
                resample,
            });
        }
        let mid_c = *hs.last().expect("non-empty");
        let mid = (
            block(mid_c, mid_c, rng)?,
            SelfAttention::new(mid_c, cfg.groups, INIT, rng)?,
            block(mid_c, mid_c, rng)?,
        );
        // Up path, from the last level to the first.
        let mut h_c = mid_c;
        let mut up: Vec<Level> = Vec::new();
        for (level, &mult) in cfg.ch_mult.iter().enumerate().rev() {
            let (mut blocks, mut attns) = (Vec::new(), Vec::new());
            for _ in 0..=cfg.num_res_blocks {
                let skip = hs.pop().expect("one skip per up block");
                blocks.push(block(h_c + skip, c * mult, rng)?);
                h_c = c * mult;
                if cfg.attn_resolutions.contains(&res) {
                    attns.push(SelfAttention::new(h_c, cfg.groups, INIT, rng)?);
                }
            }
            let resample = (level != 0).then(|| {
                res *= 2;
                Conv2d::new(h_c, h_c, 3, SAME, INIT, rng)
            });
            up.insert(
                0,
                Level {
                    blocks,
                    attns,
                    resample,
                },
            );
        }
        Ok(UNet {
            temb_dense: [
                Linear::new(c, temb, INIT, rng),
                Linear::new(temb, temb, INIT, rng),
            ],
            conv_in: Conv2d::new(cfg.in_ch, c, 3, SAME, INIT, rng),
            down,
            mid,
            up,
            norm_out: GroupNorm::new(cfg.groups, c)?,
            conv_out: Conv2d::new(c, cfg.out_ch, 3, SAME, Init::Zeros, rng),
            label_emb: cfg.num_classes.map(|n| Embedding::new(n + 1, temb, rng)),
            config: config.clone(),
        })
    }

    /// Predicts the noise in `x` (`[B, in_ch, H, W]`) at steps `t` (one per image),
    /// optionally conditioned on class `labels` (`num_classes` means "no label").
    pub fn forward(&self, x: &Var, t: &[usize], labels: Option<&[usize]>) -> Result<Var> {
        let cfg = &self.config;
        let expected = [t.len(), cfg.in_ch, cfg.image_size, cfg.image_size];
        if x.shape() != expected {
            return Err(TensorError::ShapeMismatch {
                op: "UNet::forward",
                lhs: expected.to_vec(),
                rhs: x.shape().to_vec(),
            });
        }
        let emb = Var::constant(timestep_embedding(t, cfg.ch));
        let mut temb = self.temb_dense[1].forward(&self.temb_dense[0].forward(&emb)?.silu())?;
        match (&self.label_emb, labels) {
            (Some(table), Some(y)) => temb = temb.add(&table.forward(y)?)?,
            (None, None) => {}
            (Some(_), None) => {
                let none = vec![cfg.num_classes.unwrap_or(0); t.len()];
                temb = temb.add(&self.label_emb.as_ref().expect("checked").forward(&none)?)?;
            }
            (None, Some(_)) => {
                return Err(TensorError::InvalidArgument {
                    op: "UNet::forward",
                    msg: "labels given to a model without classes".into(),
                })
            }
        }
        let temb = temb.silu(); // every ResBlock applies act(temb) first
        self.forward_with_temb(x, &temb)
    }

    fn forward_with_temb(&self, x: &Var, temb: &Var) -> Result<Var> {
        let mut hs = vec![self.conv_in.forward(x)?];
        for level in &self.down {
            for (i, block) in level.blocks.iter().enumerate() {
                let mut h = block.forward(hs.last().expect("non-empty"), temb)?;
                if let Some(attn) = level.attns.get(i) {
                    h = attn.forward(&h)?;
                }
                hs.push(h);
            }
            if let Some(conv) = &level.resample {
                hs.push(conv.forward(hs.last().expect("non-empty"))?);
            }
        }
        let (b1, attn, b2) = &self.mid;
        let mut h = b2.forward(
            &attn.forward(&b1.forward(hs.last().expect("non-empty"), temb)?)?,
            temb,
        )?;
        for level in self.up.iter().rev() {
            for (i, block) in level.blocks.iter().enumerate() {
                let skip = hs.pop().expect("one skip per up block");
                h = block.forward(&Var::concat(&[&h, &skip], 1)?, temb)?;
                if let Some(attn) = level.attns.get(i) {
                    h = attn.forward(&h)?;
                }
            }
            if let Some(conv) = &level.resample {
                h = conv.forward(&h.upsample_nearest2d(2)?)?;
            }
        }
        self.conv_out.forward(&self.norm_out.forward_silu(&h)?)
    }

    /// Every dropout layer, in a fixed order (to reseed them each step).
    pub fn dropouts(&self) -> Vec<&Dropout> {
        let levels = self.down.iter().chain(&self.up);
        let mut blocks: Vec<&ResBlock> = levels.flat_map(|l| &l.blocks).collect();
        blocks.push(&self.mid.0);
        blocks.push(&self.mid.2);
        blocks.into_iter().map(|b| &b.dropout).collect()
    }
}

impl Module for UNet {
    fn collect_parameters(&self, prefix: &str, out: &mut Vec<(String, Parameter)>) {
        for (i, d) in self.temb_dense.iter().enumerate() {
            d.collect_parameters(&join(prefix, &format!("temb.dense.{i}")), out);
        }
        self.conv_in.collect_parameters(&join(prefix, "conv_in"), out);
        for (l, level) in self.down.iter().enumerate() {
            level.collect_parameters(&join(prefix, &format!("down.{l}")), "downsample", out);
        }
        self.mid.0.collect_parameters(&join(prefix, "mid.block_1"), out);
        self.mid.1.collect_parameters(&join(prefix, "mid.attn_1"), out);
        self.mid.2.collect_parameters(&join(prefix, "mid.block_2"), out);
        for (l, level) in self.up.iter().enumerate() {
            level.collect_parameters(&join(prefix, &format!("up.{l}")), "upsample", out);
        }
        self.norm_out.collect_parameters(&join(prefix, "norm_out"), out);
        self.conv_out.collect_parameters(&join(prefix, "conv_out"), out);
        if let Some(e) = &self.label_emb {
            e.collect_parameters(&join(prefix, "label_emb"), out);
        }
    }

    fn set_training(&self, training: bool) {
        self.dropouts().iter().for_each(|d| d.set_training(training));
    }
}
