//! One whole training step and one sampling step of a named U-Net config, shared
//! by `quickbench step` and the criterion bench `step`.
//!
//! The training step is the one `ddpm train` runs ([`ddpm::train::train_step`]:
//! the batch drawn from the embedded MNIST subset, the loss, its backward pass,
//! the clip, Adam, the weight check and the EMA), at the `train` defaults;
//! a config of another image shape draws random images of its shape. The
//! sampling step is one network evaluation of a batch under `no_grad`, the
//! denoising step every sampler repeats (a sampler's own update is a few
//! element-wise operations on the batch).

use autograd::Var;
use ddpm::checkpoint::TrainState;
use ddpm::config::UNetConfig;
use ddpm::contract::Contract;
use ddpm::data::{embedded_mnist, Dataset};
use ddpm::schedule::NoiseSchedule;
use ddpm::train::{train_step, LrDecay, TrainOptions};
use ddpm::unet::UNet;
use nn::Module;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// A model being trained, step after step, on the embedded subset.
pub struct TrainBench {
    state: TrainState,
    data: Dataset,
    schedule: NoiseSchedule,
    opts: TrainOptions,
}

impl TrainBench {
    /// `config` (one of the spec's names) at batch `batch`, seed 0.
    pub fn new(config: &str, batch: usize) -> TrainBench {
        let config = UNetConfig::named(config).expect("a config the spec names");
        let contract = Contract::new(config);
        let opts = TrainOptions {
            contract,
            batch,
            accumulate: 1,
            max_steps: None,
            time_budget: None,
            lr: 2e-4,
            warmup: 500,
            lr_decay: LrDecay::None,
            lr_min: 2e-5,
            clip: 1.0,
            min_snr: None,
            ema_decay: 0.9999,
            seed: 0,
            out_dir: std::env::temp_dir(),
            resume: false,
            overwrite: false,
            checkpoint_every: u64::MAX,
        };
        let state =
            TrainState::new(&opts.contract, opts.lr, opts.ema_decay, opts.seed).expect("a valid config");
        state.model.set_training(true);
        let c = &opts.contract.config;
        let data = if (c.in_ch, c.image_size) == (1, 28) {
            embedded_mnist().expect("the embedded subset decodes")
        } else {
            // Another config's shape (cifar10's 3x32x32): 256 random images.
            let bytes = (0..256 * c.in_ch * c.image_size * c.image_size)
                .map(|i| (tensor::splitmix64(i as u64) >> 56) as u8)
                .collect();
            Dataset::new(bytes, None, c.in_ch, c.image_size, c.image_size, 0).expect("a valid shape")
        };
        TrainBench {
            state,
            data,
            schedule: opts.contract.noise_schedule(),
            opts,
        }
    }

    /// One optimisation step; returns its loss.
    pub fn step(&mut self) -> f32 {
        let lr = self.opts.learning_rate(None, self.state.step);
        train_step(&mut self.state, &self.data, &self.schedule, lr, &self.opts)
            .expect("a finite step")
            .0
    }
}

/// A model and a batch of noise to denoise, one network evaluation at a time.
pub struct SampleBench {
    model: UNet,
    x: Var,
    t: Vec<usize>,
}

impl SampleBench {
    /// `config` at batch `batch`, seed 0, evaluated at step `T / 2`.
    pub fn new(config: &str, batch: usize) -> SampleBench {
        let config = UNetConfig::named(config).expect("a config the spec names");
        let contract = Contract::new(config);
        let model = UNet::new(&contract.config, &mut StdRng::seed_from_u64(0)).expect("a valid config");
        model.set_training(false);
        let c = &contract.config;
        let shape = [batch, c.in_ch, c.image_size, c.image_size];
        let x = ddpm::diffusion::normal(&shape, &mut StdRng::seed_from_u64(1));
        SampleBench {
            model,
            x: Var::constant(x),
            t: vec![contract.diffusion_steps / 2; batch],
        }
    }

    /// One forward pass under `no_grad`.
    pub fn step(&self) {
        autograd::no_grad(|| drop(self.model.forward(&self.x, &self.t, None).expect("valid shapes")));
    }
}
