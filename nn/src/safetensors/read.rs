//! Reading untrusted bytes: the header split off and parsed, each entry checked
//! against its dtype and shape, and the byte ranges checked to tile the data.

use std::collections::BTreeMap;

use tensor::Tensor;

use super::error::format_error;
use super::json::{JsonError, Parser};
use super::{CheckpointError, F32_BYTES, MAX_HEADER_LEN, METADATA_KEY};

/// One tensor's header entry: a name, a shape and a byte range of matching size.
pub(super) struct Entry {
    pub(super) name: String,
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
    pub(super) fn read(&self, data: &[u8]) -> Result<Tensor, CheckpointError> {
        let values = data[self.begin..self.end]
            .chunks_exact(F32_BYTES)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Tensor::from_vec(values, &self.shape)
            .map_err(|e| format_error(format!("tensor {:?}: {e}", self.name)))
    }
}

/// The shape as `usize`s and its size in bytes, or an error when that overflows.
pub(super) fn checked_shape(name: &str, dims: &[u64]) -> Result<(Vec<usize>, usize), CheckpointError> {
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
pub(super) fn byte_range(name: &str, offsets: &[u64]) -> Result<(usize, usize), CheckpointError> {
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
pub(super) fn split_header(bytes: &[u8]) -> Result<(&str, &[u8]), CheckpointError> {
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
pub(super) fn parse_header(text: &str) -> Result<(Vec<Entry>, BTreeMap<String, String>), CheckpointError> {
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
pub(super) fn parse_metadata(p: &mut Parser) -> Result<BTreeMap<String, String>, JsonError> {
    let mut metadata = BTreeMap::new();
    p.object(|p, key| {
        metadata.insert(key, p.string()?);
        Ok::<(), JsonError>(())
    })?;
    Ok(metadata)
}

/// One tensor's `{"dtype", "shape", "data_offsets"}` object; other keys are skipped.
pub(super) fn parse_entry(p: &mut Parser, name: String) -> Result<Entry, CheckpointError> {
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
pub(super) fn check_layout(entries: &mut [Entry], data_len: usize) -> Result<(), CheckpointError> {
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

pub(super) fn gap(begin: usize, end: usize) -> CheckpointError {
    format_error(format!(
        "gap in the data: bytes {begin}..{end} belong to no tensor"
    ))
}
