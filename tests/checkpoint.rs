//! Checkpoints across crates: a `ddpm` U-Net saved with `nn`'s safetensors writer
//! reloads bit for bit into a freshly initialised network, which then computes
//! bit for bit the same output. The weights are the golden fixture's (see
//! `tests/fixtures/golden/README.md`), so every parameter is non-trivial.

mod common;

use common::{forward, golden_inputs, golden_model, TempDir, GOLDEN_CONFIG};
use ddpm::contract::Contract;
use ddpm::unet::UNet;
use nn::checkpoint::{load_parameters, save_parameters};
use nn::Module;
use rand::SeedableRng;

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// The output's values, computed without recording a tape.
fn output(model: &UNet, x: &tensor::Tensor, t: &[usize]) -> Vec<f32> {
    autograd::no_grad(|| forward(model, x, t).value().to_vec())
}

#[test]
fn a_saved_unet_reloads_bit_identically_and_computes_the_same_output() {
    let model = golden_model();
    let config = &model.config;
    let dir = TempDir::new("checkpoint");
    let path = dir.path().join("model.safetensors");
    let contract = Contract::new(config.clone());
    save_parameters(&path, &model.parameters(), &contract.metadata()).unwrap();

    // A network with different random weights, built from the file's metadata.
    let meta = nn::safetensors::load(&path).unwrap().metadata().clone();
    assert_eq!(meta.get("config").map(String::as_str), Some(GOLDEN_CONFIG));
    let config = Contract::from_metadata(&meta, None).unwrap().config;
    let fresh = UNet::new(&config, &mut rand::rngs::StdRng::seed_from_u64(99)).unwrap();
    let (x, t, _) = golden_inputs();
    let before = output(&fresh, &x, &t);
    assert_eq!(load_parameters(&path, &fresh.parameters()).unwrap(), meta);
    fresh.set_training(false);

    for ((name, a), (name_b, b)) in model.parameters().iter().zip(&fresh.parameters()) {
        assert_eq!(name, name_b);
        assert_eq!(a.shape(), b.shape(), "{name}");
        assert!(
            bits(&a.value().to_vec()) == bits(&b.value().to_vec()),
            "{name} differs after reloading"
        );
    }
    let expected = output(&model, &x, &t);
    let reloaded = output(&fresh, &x, &t);
    assert!(
        bits(&reloaded) == bits(&expected),
        "the reloaded network computes something else"
    );
    // The test has teeth: the network before loading computed something else.
    assert!(bits(&before) != bits(&expected));
    // Only the checkpoint is left in the directory: the temporary file is gone.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["model.safetensors"]);
}
