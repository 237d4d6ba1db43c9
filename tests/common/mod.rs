//! What the cross-crate tests share: the golden fixture (`tests/fixtures/golden/`,
//! see its README) loaded into a `ddpm` U-Net, and a scratch directory. Each test
//! file is its own crate and uses a subset, hence the `allow`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use autograd::Var;
use ddpm::config::UNetConfig;
use ddpm::unet::UNet;
use nn::safetensors::{self, SafeTensors};
use nn::Module;
use rand::SeedableRng;
use tensor::Tensor;

/// The config the fixture's weights are for (the file has no metadata to say so).
pub const GOLDEN_CONFIG: &str = "mnist-tiny";

/// The steps the fixture's `t` holds, as its README states.
pub const GOLDEN_STEPS: [usize; 4] = [0, 999, 500, 37];

/// `tests/fixtures/golden/<name>.safetensors`, found from the package root so that
/// the tests run from a fresh clone, whatever the working directory.
pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden")
        .join(format!("{name}.safetensors"))
}

/// The fixture file `name`, read with nn's safetensors reader.
pub fn fixture(name: &str) -> SafeTensors {
    let path = fixture_path(name);
    safetensors::load(&path).unwrap_or_else(|e| panic!("golden fixture {}: {e}", path.display()))
}

/// The name and shape of every parameter of `model`.
pub fn parameter_shapes(model: &UNet) -> BTreeMap<String, Vec<usize>> {
    model
        .parameters()
        .into_iter()
        .map(|(n, p)| (n, p.shape()))
        .collect()
}

/// The name and shape of every tensor of `file` whose name starts with `prefix`,
/// with the prefix removed.
pub fn tensor_shapes(file: &SafeTensors, prefix: &str) -> BTreeMap<String, Vec<usize>> {
    file.tensors()
        .iter()
        .filter_map(|(n, t)| Some((n.strip_prefix(prefix)?.to_string(), t.shape().to_vec())))
        .collect()
}

/// Panics, listing every difference, unless `found` (described by `what`) has
/// exactly the model's parameter names with the same shapes.
pub fn assert_same_parameters(
    model: &BTreeMap<String, Vec<usize>>,
    found: &BTreeMap<String, Vec<usize>>,
    what: &str,
) {
    let mut problems = Vec::new();
    for (name, shape) in model {
        match found.get(name) {
            None => problems.push(format!("{name} {shape:?}: missing from {what}")),
            Some(s) if s != shape => {
                problems.push(format!("{name}: {s:?} in {what}, {shape:?} in the model"))
            }
            Some(_) => {}
        }
    }
    for (name, shape) in found {
        if !model.contains_key(name) {
            problems.push(format!(
                "{name} {shape:?}: in {what} but not a parameter of the model"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{what} does not match the {GOLDEN_CONFIG} U-Net's parameters:\n  {}",
        problems.join("\n  ")
    );
}

/// A `mnist-tiny` U-Net holding the fixture's weights, in evaluation mode. Its own
/// random initialisation is overwritten; the names and shapes must match exactly.
pub fn golden_model() -> UNet {
    let config = UNetConfig::named(GOLDEN_CONFIG).unwrap();
    let model = UNet::new(&config, &mut rand::rngs::StdRng::seed_from_u64(1)).unwrap();
    let weights = fixture("weights");
    assert!(
        weights.metadata().is_empty(),
        "the fixture was expected without metadata"
    );
    assert_same_parameters(
        &parameter_shapes(&model),
        &tensor_shapes(&weights, ""),
        "weights.safetensors",
    );
    for (name, p) in model.parameters() {
        p.set_value(weights.tensor(&name).unwrap().clone()).unwrap();
    }
    model.set_training(false);
    model
}

/// The fixture's inputs: `x`, the steps `t` (stored as floats, which must be
/// whole numbers) and the noise `eps`.
pub fn golden_inputs() -> (Tensor, Vec<usize>, Tensor) {
    let inputs = fixture("inputs");
    let t: Vec<usize> = inputs
        .tensor("t")
        .unwrap()
        .to_vec()
        .into_iter()
        .map(|s| {
            assert!(s >= 0.0 && s.fract() == 0.0, "step {s} is not a whole number");
            s as usize
        })
        .collect();
    assert_eq!(t, GOLDEN_STEPS);
    let x = inputs.tensor("x").unwrap().clone();
    let eps = inputs.tensor("eps").unwrap().clone();
    (x, t, eps)
}

/// The model's prediction for the fixture's inputs.
pub fn forward(model: &UNet, x: &Tensor, t: &[usize]) -> Var {
    model.forward(&Var::constant(x.clone()), t, None).unwrap()
}

/// A fresh, empty directory under the system's temporary directory, unique to
/// this process and name, removed with its contents when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("engine-suite-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
