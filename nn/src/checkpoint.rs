//! Saving and loading a model's named parameters as a safetensors file.

use std::collections::BTreeMap;
use std::path::Path;

use autograd::Parameter;

use crate::safetensors::{self, CheckpointError};

/// Writes `params` (name, parameter) and `metadata` to `path`, atomically.
pub fn save_parameters(
    path: &Path,
    params: &[(String, Parameter)],
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let values: Vec<(String, tensor::Tensor)> = params.iter().map(|(n, p)| (n.clone(), p.value())).collect();
    safetensors::save(path, values.iter().map(|(n, t)| (n, t)), metadata)
}

/// Loads `path` into `params`. The file must hold exactly these names with these
/// shapes (a missing, unexpected or mis-shaped tensor is an error, and then no
/// parameter is changed). Returns the file's metadata.
pub fn load_parameters(
    path: &Path,
    params: &[(String, Parameter)],
) -> Result<BTreeMap<String, String>, CheckpointError> {
    let file = safetensors::load(path)?;
    let expected: Vec<(String, Vec<usize>)> = params.iter().map(|(n, p)| (n.clone(), p.shape())).collect();
    file.check_against(&expected)?;
    for (name, p) in params {
        p.set_value(file.tensor(name)?.clone())
            .map_err(|e| CheckpointError::Format { msg: e.to_string() })?;
    }
    Ok(file.metadata().clone())
}
