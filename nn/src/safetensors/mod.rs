//! Safetensors checkpoints, read and written by our own small code.
//!
//! # The format
//!
//! A [safetensors](https://github.com/huggingface/safetensors) file is three parts:
//!
//! ```text
//! +--------------+---------------------------------+------------------------------+
//! | N: u64, LE   | header: N bytes of UTF-8 JSON,  | data: every tensor's bytes,  |
//! |              | padded with spaces to 8k bytes  | little-endian, back to back  |
//! +--------------+---------------------------------+------------------------------+
//! ^ byte 0       ^ byte 8                          ^ byte 8 + N = data offset 0
//! ```
//!
//! The header is one JSON object. Each key is a tensor name, mapped to
//! `{"dtype":"F32","shape":[2,3],"data_offsets":[begin,end]}` where `begin..end` is
//! the tensor's byte range in the data part (`end - begin = 4 * numel` for `F32`).
//! The optional key `"__metadata__"` maps to an object of string -> string. The
//! tensors cover the data part exactly: no gaps, no overlaps, nothing after the last.
//!
//! We write like the reference implementation: tensors sorted by name (for one dtype
//! the reference's order too), compact JSON with `__metadata__` first and the tensors
//! in data order, header padded with spaces. So a file written here opens in any
//! safetensors reader, and one written by PyTorch or NumPy loads here. Only `F32` is
//! supported; another dtype is a clear error.
//!
//! # Reading untrusted bytes
//!
//! [`deserialize`] checks everything before it allocates tensors: the header length
//! against the file size and a 100 MB cap, the JSON grammar, the dtype, that each byte
//! range matches its shape (with overflow-checked products) and lies inside the data,
//! and that the ranges tile the data exactly. A bad file is a [`CheckpointError`] that
//! names the problem, never a panic, and memory stays proportional to the file's size.
//!
//! # Saving is atomic
//!
//! [`save`] writes `<path>.tmp` in the same directory, flushes it to the disk
//! (`fsync`), then renames it over `path`. A rename within one file system is atomic,
//! so a crash, a full disk or a killed job in the middle of a save leaves either the
//! old checkpoint or the new one, never a truncated file: training can overwrite its
//! checkpoint every few minutes without risking the last good one.

mod error;
mod json;
mod read;
mod write;

use error::format_error;
pub use error::CheckpointError;
use read::{check_layout, parse_header, split_header};
use write::{header_json, sorted_by_name};

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use tensor::Tensor;

/// The header key that holds the string -> string metadata, not a tensor.
pub const METADATA_KEY: &str = "__metadata__";

/// Longest header accepted, in bytes (the reference implementation's limit).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// Bytes per element of `F32`, the one dtype we read and write.
const F32_BYTES: usize = 4;

/// The contents of a checkpoint: named tensors and string metadata.
#[derive(Debug, Clone)]
pub struct SafeTensors {
    tensors: BTreeMap<String, Tensor>,
    metadata: BTreeMap<String, String>,
}

impl SafeTensors {
    /// Every tensor, by name.
    pub fn tensors(&self) -> &BTreeMap<String, Tensor> {
        &self.tensors
    }

    /// The `__metadata__` map (empty when the file has none).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The tensor called `name`, or [`CheckpointError::MissingTensor`].
    pub fn tensor(&self, name: &str) -> Result<&Tensor, CheckpointError> {
        self.tensors
            .get(name)
            .ok_or_else(|| CheckpointError::MissingTensor(name.to_string()))
    }

    /// Checks that the checkpoint holds exactly the `expected` names with those
    /// shapes: the first name missing, then the first wrong shape (in `expected`
    /// order), then the first name the model does not know is the error.
    pub fn check_against(&self, expected: &[(String, Vec<usize>)]) -> Result<(), CheckpointError> {
        for (name, shape) in expected {
            let found = self.tensor(name)?.shape();
            if found != shape.as_slice() {
                return Err(CheckpointError::ShapeMismatch {
                    name: name.clone(),
                    expected: shape.clone(),
                    found: found.to_vec(),
                });
            }
        }
        let known: BTreeSet<&str> = expected.iter().map(|(name, _)| name.as_str()).collect();
        match self.tensors.keys().find(|name| !known.contains(name.as_str())) {
            Some(name) => Err(CheckpointError::UnexpectedTensor(name.clone())),
            None => Ok(()),
        }
    }
}

/// Encodes named tensors (any layout: views are written in row-major order) and
/// metadata as the bytes of a safetensors file. Names must be distinct and not
/// [`METADATA_KEY`]. Accepts `&BTreeMap<String, Tensor>`, `[("w", &t)]`, ...
pub fn serialize<'a, N: AsRef<str>>(
    tensors: impl IntoIterator<Item = (N, &'a Tensor)>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, CheckpointError> {
    let tensors = sorted_by_name(tensors)?;
    let header = header_json(&tensors, metadata);
    let data_len: usize = tensors.iter().map(|(_, t)| t.numel() * F32_BYTES).sum();
    let mut out = Vec::with_capacity(8 + header.len() + data_len);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for (_, t) in &tensors {
        let values: Cow<[f32]> = t.as_slice().map_or_else(|| Cow::Owned(t.to_vec()), Cow::Borrowed);
        out.extend(values.iter().flat_map(|x| x.to_le_bytes()));
    }
    Ok(out)
}

/// Writes a checkpoint atomically (see the module doc): `<path>.tmp`, fsync, rename.
/// On failure an existing file at `path` is left as it was.
pub fn save<'a, N: AsRef<str>>(
    path: &Path,
    tensors: impl IntoIterator<Item = (N, &'a Tensor)>,
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let bytes = serialize(tensors, metadata)?;
    crate::fs::write_atomic(path, &bytes).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Decodes the bytes of a safetensors file, checking everything (see the module doc).
pub fn deserialize(bytes: &[u8]) -> Result<SafeTensors, CheckpointError> {
    let (header, data) = split_header(bytes)?;
    let (mut entries, metadata) = parse_header(header)?;
    check_layout(&mut entries, data.len())?;
    let tensors = entries
        .into_iter()
        .map(|e| {
            let tensor = e.read(data)?;
            Ok((e.name, tensor))
        })
        .collect::<Result<_, CheckpointError>>()?;
    Ok(SafeTensors { tensors, metadata })
}

/// Reads and decodes a checkpoint file; format errors are prefixed with the path.
pub fn load(path: &Path) -> Result<SafeTensors, CheckpointError> {
    let bytes = fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    deserialize(&bytes).map_err(|e| match e {
        CheckpointError::Format { msg } => format_error(format!("{}: {msg}", path.display())),
        other => other,
    })
}
