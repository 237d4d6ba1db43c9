//! Writing: the header of a set of tensors, as the reference implementation
//! writes it (sorted by name, `__metadata__` first, compact, padded to 8 bytes).

use std::collections::BTreeMap;

use tensor::Tensor;

use super::error::format_error;
use super::json;
use super::{CheckpointError, F32_BYTES, METADATA_KEY};

/// The tensors sorted by name, or an error for a duplicate or reserved name.
pub(super) fn sorted_by_name<'a, N: AsRef<str>>(
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
pub(super) fn header_json<N: AsRef<str>>(
    tensors: &[(N, &Tensor)],
    metadata: &BTreeMap<String, String>,
) -> String {
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
pub(super) fn metadata_json(metadata: &BTreeMap<String, String>) -> String {
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
pub(super) fn tensor_json(name: &str, shape: &[usize], begin: usize, end: usize) -> String {
    let mut out = String::new();
    json::write_string(&mut out, name);
    out.push_str(":{\"dtype\":\"F32\",\"shape\":");
    json::write_array(&mut out, shape);
    out.push_str(",\"data_offsets\":");
    json::write_array(&mut out, &[begin, end]);
    out.push('}');
    out
}
