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

mod json;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tensor::Tensor;

use json::{JsonError, Parser};

/// The header key that holds the string -> string metadata, not a tensor.
pub const METADATA_KEY: &str = "__metadata__";

/// Longest header accepted, in bytes (the reference implementation's limit).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// Bytes per element of `F32`, the one dtype we read and write.
const F32_BYTES: usize = 4;

/// Why a checkpoint could not be written, read or matched to a model.
#[derive(Debug)]
pub enum CheckpointError {
    /// Reading or writing the checkpoint file failed.
    Io {
        /// The checkpoint's path (for a save, the destination, not the temporary file).
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The bytes are not a valid safetensors file, or the tensors given cannot be
    /// written as one (a duplicate or reserved name).
    Format {
        /// A sentence that names the problem (and the tensor, where there is one).
        msg: String,
    },
    /// A tensor that the model needs is not in the checkpoint.
    MissingTensor(String),
    /// The checkpoint holds a tensor that the model does not have.
    UnexpectedTensor(String),
    /// A tensor's shape in the checkpoint differs from the model's.
    ShapeMismatch {
        /// The tensor's name.
        name: String,
        /// The shape the model expects.
        expected: Vec<usize>,
        /// The shape in the checkpoint.
        found: Vec<usize>,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Io { path, source } => write!(f, "checkpoint {}: {source}", path.display()),
            CheckpointError::Format { msg } => write!(f, "invalid safetensors checkpoint: {msg}"),
            CheckpointError::MissingTensor(name) => write!(f, "checkpoint has no tensor {name:?}"),
            CheckpointError::UnexpectedTensor(name) => {
                write!(f, "checkpoint has a tensor {name:?} that the model does not have")
            }
            CheckpointError::ShapeMismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor {name:?} has shape {found:?} in the checkpoint but the model expects {expected:?}"
            ),
        }
    }
}

impl std::error::Error for CheckpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckpointError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<JsonError> for CheckpointError {
    fn from(e: JsonError) -> Self {
        format_error(format!(
            "bad JSON in the header (byte {} of the header): {}",
            e.pos, e.msg
        ))
    }
}

/// Shorthand for a [`CheckpointError::Format`].
fn format_error(msg: impl Into<String>) -> CheckpointError {
    CheckpointError::Format { msg: msg.into() }
}

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

// ----- writing --------------------------------------------------------------------

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

/// The tensors sorted by name, or an error for a duplicate or reserved name.
fn sorted_by_name<'a, N: AsRef<str>>(
    tensors: impl IntoIterator<Item = (N, &'a Tensor)>,
) -> Result<Vec<(N, &'a Tensor)>, CheckpointError> {
    let mut tensors: Vec<_> = tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    if let Some(pair) = tensors.windows(2).find(|p| p[0].0.as_ref() == p[1].0.as_ref()) {
        return Err(format_error(format!(
            "duplicate tensor name {:?}",
            pair[0].0.as_ref()
        )));
    }
    if tensors.iter().any(|(name, _)| name.as_ref() == METADATA_KEY) {
        return Err(format_error(format!(
            "{METADATA_KEY:?} is reserved and cannot name a tensor"
        )));
    }
    Ok(tensors)
}

/// The header text for tensors laid out in the given order, padded with spaces
/// to a multiple of 8 bytes.
fn header_json<N: AsRef<str>>(tensors: &[(N, &Tensor)], metadata: &BTreeMap<String, String>) -> String {
    let mut fields = Vec::with_capacity(tensors.len() + 1);
    if !metadata.is_empty() {
        fields.push(metadata_json(metadata));
    }
    let mut begin = 0;
    for (name, t) in tensors {
        let end = begin + t.numel() * F32_BYTES;
        fields.push(tensor_json(name.as_ref(), t.shape(), begin, end));
        begin = end;
    }
    let mut header = format!("{{{}}}", fields.join(","));
    let padded_len = header.len().next_multiple_of(8);
    header.push_str(&" ".repeat(padded_len - header.len()));
    header
}

/// `"__metadata__":{"key":"value",...}`.
fn metadata_json(metadata: &BTreeMap<String, String>) -> String {
    let mut out = format!("\"{METADATA_KEY}\":{{");
    for (i, (key, value)) in metadata.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::write_string(&mut out, key);
        out.push(':');
        json::write_string(&mut out, value);
    }
    out.push('}');
    out
}

/// `"name":{"dtype":"F32","shape":[..],"data_offsets":[begin,end]}`.
fn tensor_json(name: &str, shape: &[usize], begin: usize, end: usize) -> String {
    let mut out = String::new();
    json::write_string(&mut out, name);
    out.push_str(":{\"dtype\":\"F32\",\"shape\":");
    json::write_array(&mut out, shape);
    out.push_str(",\"data_offsets\":");
    json::write_array(&mut out, &[begin, end]);
    out.push('}');
    out
}

// ----- reading --------------------------------------------------------------------

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

/// One tensor's header entry: a name, a shape and a byte range of matching size.
struct Entry {
    name: String,
    shape: Vec<usize>,
    begin: usize,
    end: usize,
}

impl Entry {
    /// Checks the dtype, and that `data_offsets` is a range of `4 * numel` bytes.
    fn new(name: String, dtype: &str, shape: &[u64], offsets: &[u64]) -> Result<Self, CheckpointError> {
        if dtype != "F32" {
            return Err(format_error(format!(
                "unsupported dtype {dtype} for tensor {name:?} (only F32 is supported)"
            )));
        }
        let (shape, bytes) = checked_shape(&name, shape)?;
        let (begin, end) = byte_range(&name, offsets)?;
        if end - begin != bytes {
            return Err(format_error(format!(
                "tensor {name:?}: shape {shape:?} needs {bytes} bytes but data_offsets are [{begin}, {end}]"
            )));
        }
        Ok(Entry {
            name,
            shape,
            begin,
            end,
        })
    }

    /// The tensor, from a data part that [`check_layout`] has checked it fits in.
    fn read(&self, data: &[u8]) -> Result<Tensor, CheckpointError> {
        let values = data[self.begin..self.end]
            .chunks_exact(F32_BYTES)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Tensor::from_vec(values, &self.shape)
            .map_err(|e| format_error(format!("tensor {:?}: {e}", self.name)))
    }
}

/// The shape as `usize`s and its size in bytes, or an error when that overflows.
fn checked_shape(name: &str, dims: &[u64]) -> Result<(Vec<usize>, usize), CheckpointError> {
    let too_large = || format_error(format!("tensor {name:?}: shape {dims:?} is too large"));
    let shape: Vec<usize> = dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| too_large()))
        .collect::<Result<_, _>>()?;
    let bytes = shape
        .iter()
        .try_fold(F32_BYTES, |n, &d| n.checked_mul(d))
        .ok_or_else(too_large)?;
    Ok((shape, bytes))
}

/// `data_offsets` as a byte range `begin <= end`.
fn byte_range(name: &str, offsets: &[u64]) -> Result<(usize, usize), CheckpointError> {
    let bad = || {
        format_error(format!(
            "tensor {name:?}: data_offsets {offsets:?} are not a range [begin, end]"
        ))
    };
    let &[begin, end] = offsets else {
        return Err(bad());
    };
    match (usize::try_from(begin), usize::try_from(end)) {
        (Ok(begin), Ok(end)) if begin <= end => Ok((begin, end)),
        _ => Err(bad()),
    }
}

/// Splits a file into its header text and its data part.
fn split_header(bytes: &[u8]) -> Result<(&str, &[u8]), CheckpointError> {
    let Some((len, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(format_error(format!(
            "truncated file: {} bytes, shorter than the 8-byte header length",
            bytes.len()
        )));
    };
    let len = u64::from_le_bytes(*len);
    if len > MAX_HEADER_LEN {
        return Err(format_error(format!(
            "header length {len} exceeds the limit of {MAX_HEADER_LEN} bytes"
        )));
    }
    if len > rest.len() as u64 {
        return Err(format_error(format!(
            "truncated file: header length {len} runs past the end of the file ({} bytes after the length)",
            rest.len()
        )));
    }
    let (header, data) = rest.split_at(len as usize);
    let header = std::str::from_utf8(header).map_err(|e| {
        format_error(format!(
            "the header is not UTF-8 (byte {} of the header)",
            e.valid_up_to()
        ))
    })?;
    Ok((header, data))
}

/// The tensor entries (in header order) and the metadata of a header.
fn parse_header(text: &str) -> Result<(Vec<Entry>, BTreeMap<String, String>), CheckpointError> {
    let mut parser = Parser::new(text);
    let mut entries = Vec::new();
    let mut metadata = BTreeMap::new();
    parser.object(|p, key| {
        if key == METADATA_KEY {
            metadata = parse_metadata(p)?;
        } else {
            entries.push(parse_entry(p, key)?);
        }
        Ok::<(), CheckpointError>(())
    })?;
    parser.finish()?;
    Ok((entries, metadata))
}

/// The `__metadata__` object: string keys to string values.
fn parse_metadata(p: &mut Parser) -> Result<BTreeMap<String, String>, JsonError> {
    let mut metadata = BTreeMap::new();
    p.object(|p, key| {
        metadata.insert(key, p.string()?);
        Ok::<(), JsonError>(())
    })?;
    Ok(metadata)
}

/// One tensor's `{"dtype", "shape", "data_offsets"}` object; other keys are skipped.
fn parse_entry(p: &mut Parser, name: String) -> Result<Entry, CheckpointError> {
    let (mut dtype, mut shape, mut offsets) = (None, None, None);
    p.object(|p, key| {
        match key.as_str() {
            "dtype" => dtype = Some(p.string()?),
            "shape" => shape = Some(p.u64_array()?),
            "data_offsets" => offsets = Some(p.u64_array()?),
            _ => p.skip_value()?,
        }
        Ok::<(), JsonError>(())
    })?;
    let missing = |field: &str| format_error(format!("tensor {name:?} has no \"{field}\""));
    let dtype = dtype.ok_or_else(|| missing("dtype"))?;
    let shape = shape.ok_or_else(|| missing("shape"))?;
    let offsets = offsets.ok_or_else(|| missing("data_offsets"))?;
    Entry::new(name, &dtype, &shape, &offsets)
}

/// Checks that the entries' byte ranges lie inside the data part and tile it
/// exactly, and sorts the entries by range.
fn check_layout(entries: &mut [Entry], data_len: usize) -> Result<(), CheckpointError> {
    if let Some(e) = entries.iter().find(|e| e.end > data_len) {
        return Err(format_error(format!(
            "tensor {:?}: data_offsets [{}, {}] run past the end of the {data_len}-byte data (truncated file?)",
            e.name, e.begin, e.end
        )));
    }
    entries.sort_by_key(|e| (e.begin, e.end));
    let (mut covered, mut previous) = (0, "");
    for e in entries.iter() {
        if e.begin < covered {
            return Err(format_error(format!(
                "tensor {:?} (data bytes {}..{}) overlaps tensor {previous:?} (ending at byte {covered})",
                e.name, e.begin, e.end
            )));
        }
        if e.begin > covered {
            return Err(gap(covered, e.begin));
        }
        (covered, previous) = (e.end, e.name.as_str());
    }
    if covered < data_len {
        return Err(gap(covered, data_len));
    }
    Ok(())
}

fn gap(begin: usize, end: usize) -> CheckpointError {
    format_error(format!(
        "gap in the data: bytes {begin}..{end} belong to no tensor"
    ))
}
