//! Safetensors checkpoints: bit-exact round trips, the byte layout checked by hand,
//! files laid out as the reference implementation writes them, every kind of bad
//! file, and atomic saves.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use nn::safetensors::{deserialize, load, save, serialize, CheckpointError, SafeTensors, MAX_HEADER_LEN};
use proptest::prelude::*;
use tensor::Tensor;

// ----- helpers -------------------------------------------------------------------------

fn tensor(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(data.to_vec(), shape).unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec().iter().map(|x| x.to_bits()).collect()
}

fn no_metadata() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn metadata(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A file assembled by hand: the header's length (LE u64), the header, the data.
fn file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// The message of the `Format` error that `bytes` must give.
fn format_error(bytes: &[u8]) -> String {
    match deserialize(bytes) {
        Err(CheckpointError::Format { msg }) => msg,
        other => panic!("expected a Format error, got {other:?}"),
    }
}

fn assert_format_error(bytes: &[u8], expected: &str) {
    let msg = format_error(bytes);
    assert!(
        msg.contains(expected),
        "message {msg:?} should contain {expected:?}"
    );
}

fn assert_same(loaded: &SafeTensors, expected: &[(&str, &Tensor)]) {
    let names: Vec<&str> = loaded.tensors().keys().map(String::as_str).collect();
    let mut expected_names: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    expected_names.sort();
    assert_eq!(names, expected_names);
    for (name, t) in expected {
        let got = loaded.tensor(name).unwrap();
        assert_eq!(got.shape(), t.shape(), "{name}");
        assert_eq!(bits(got), bits(t), "{name}");
    }
}

/// A fresh, empty directory for one test (removed by the test when it passes).
fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nn-safetensors-{}-{test}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn tmp_of(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// The header of the reference implementation's file for {"a": F32 [2] = [1, 2]},
/// padded with spaces to a multiple of 8 bytes.
const REFERENCE_A: &str = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  "#;

fn reference_a() -> Vec<u8> {
    file(REFERENCE_A, &le_bytes(&[1.0, 2.0]))
}

// ----- round trips ---------------------------------------------------------------------

#[test]
fn round_trip_is_bit_exact_for_special_values() {
    let specials: Vec<f32> = [
        0x7fc0_0000, // quiet NaN
        0x7fc1_2345, // quiet NaN with a payload
        0xffa0_0001, // negative signalling NaN with a payload
        0x7f80_0001, // signalling NaN, lowest payload
        0x8000_0000, // -0.0
        0x0000_0001, // smallest subnormal
        0x807f_ffff, // largest negative subnormal
        0x7f80_0000, // +inf
        0xff80_0000, // -inf
        0x7f7f_ffff, // f32::MAX
    ]
    .iter()
    .map(|&b| f32::from_bits(b))
    .collect();
    let special = tensor(&specials, &[2, 5]);
    let scalar = Tensor::scalar(-0.0);
    let empty = Tensor::zeros(&[0]);
    let empty_3d = Tensor::zeros(&[3, 0, 2]);
    let tensors = [
        ("special", &special),
        ("scalar", &scalar),
        ("empty", &empty),
        ("empty_3d", &empty_3d),
    ];
    let meta = metadata(&[
        ("format", "pt"),
        ("step", "1200"),
        ("odd \"key\"\n", "caf\u{e9} \u{1f600} \\ \u{1}"),
    ]);

    let loaded = deserialize(&serialize(tensors, &meta).unwrap()).unwrap();

    assert_same(&loaded, &tensors);
    assert_eq!(loaded.tensor("scalar").unwrap().shape(), &[] as &[usize]);
    assert_eq!(loaded.metadata(), &meta);
}

#[test]
fn views_are_written_in_row_major_order() {
    let base = tensor(&(0..24).map(|i| i as f32).collect::<Vec<_>>(), &[2, 3, 4]);
    let permuted = base.permute(&[2, 0, 1]).unwrap();
    let narrowed = base.narrow(2, 1, 2).unwrap();
    let broadcast = tensor(&[7.0, 8.0], &[2, 1]).broadcast_to(&[2, 3]).unwrap();
    assert!(!permuted.is_contiguous() && !narrowed.is_contiguous() && !broadcast.is_contiguous());

    let bytes = serialize(
        [("p", &permuted), ("n", &narrowed), ("b", &broadcast)],
        &no_metadata(),
    )
    .unwrap();
    let loaded = deserialize(&bytes).unwrap();

    for (name, view) in [("p", &permuted), ("n", &narrowed), ("b", &broadcast)] {
        let got = loaded.tensor(name).unwrap();
        assert_eq!(got.shape(), view.shape());
        assert_eq!(got.to_vec(), view.to_vec(), "{name}");
        assert!(got.is_contiguous());
    }
}

#[test]
fn a_loaded_checkpoint_serializes_to_the_same_bytes() {
    let w = tensor(&[1.0, -2.0, 3.5, 4.25], &[2, 2]);
    let b = tensor(&[0.5, 0.25], &[2]);
    let meta = metadata(&[("epoch", "3")]);
    let bytes = serialize([("w", &w), ("b", &b)], &meta).unwrap();
    let loaded = deserialize(&bytes).unwrap();
    assert_eq!(serialize(loaded.tensors(), loaded.metadata()).unwrap(), bytes);
}

#[test]
fn an_empty_checkpoint_round_trips() {
    let bytes = serialize(Vec::<(&str, &Tensor)>::new(), &no_metadata()).unwrap();
    assert_eq!(bytes, file("{}      ", &[]));
    let loaded = deserialize(&bytes).unwrap();
    assert!(loaded.tensors().is_empty() && loaded.metadata().is_empty());
}

// ----- the byte layout, checked by hand ----------------------------------------------------

#[test]
fn byte_layout_matches_the_format_definition() {
    let a = Tensor::scalar(0.5);
    let b = tensor(&[1.0, -2.5], &[2]);
    // Given out of order: the writer sorts by name.
    let bytes = serialize([("b", &b), ("a", &a)], &metadata(&[("format", "pt")])).unwrap();

    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(header_len % 8, 0, "the header is padded to a multiple of 8 bytes");
    let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
    let expected = concat!(
        r#"{"__metadata__":{"format":"pt"},"#,
        r#""a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"#,
        r#""b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
    );
    assert_eq!(header.trim_end_matches(' '), expected);
    assert_eq!(header_len, 144);
    assert_eq!(&header[expected.len()..], "      ", "padding is spaces only");

    let data = &bytes[8 + header_len..];
    let expected_data: Vec<u8> = [0x3f00_0000u32, 0x3f80_0000, 0xc020_0000]
        .iter()
        .flat_map(|b| b.to_le_bytes())
        .collect();
    assert_eq!(
        data,
        expected_data.as_slice(),
        "0.5, 1.0, -2.5 as little-endian f32"
    );
}

#[test]
fn names_with_special_characters_are_escaped_like_serde_json() {
    let x = Tensor::scalar(1.0);
    let bytes = serialize([("q\"\\\n\u{1}\u{e9}", &x)], &no_metadata()).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
    let expected = "{\"q\\\"\\\\\\n\\u0001\u{e9}\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}";
    assert_eq!(header.trim_end_matches(' '), expected);
}

// ----- files as the reference implementation writes them ------------------------------------

#[test]
fn loads_a_reference_file_and_writes_the_same_bytes() {
    assert_eq!(REFERENCE_A.len(), 56);
    let bytes = reference_a();
    let loaded = deserialize(&bytes).unwrap();
    assert_eq!(loaded.tensor("a").unwrap().to_vec(), vec![1.0, 2.0]);
    assert_eq!(loaded.tensor("a").unwrap().shape(), &[2]);
    assert!(loaded.metadata().is_empty());
    assert_eq!(serialize(loaded.tensors(), loaded.metadata()).unwrap(), bytes);
}

#[test]
fn loads_a_reference_file_with_metadata_and_an_empty_tensor() {
    // safetensors.torch.save_file({"weight": 2x2, "bias": [2], "empty": 0x3}, metadata={"format": "pt"})
    let header = concat!(
        r#"{"__metadata__":{"format":"pt"},"#,
        r#""bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#,
        r#""empty":{"dtype":"F32","shape":[0,3],"data_offsets":[8,8]},"#,
        r#""weight":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]}}"#,
    );
    assert_eq!(header.len() % 8, 0, "this header needs no padding");
    let bytes = file(header, &le_bytes(&[0.1, 0.2, 1.0, 2.0, 3.0, 4.0]));

    let loaded = deserialize(&bytes).unwrap();
    assert_eq!(loaded.tensor("bias").unwrap().to_vec(), vec![0.1, 0.2]);
    assert_eq!(loaded.tensor("empty").unwrap().shape(), &[0, 3]);
    assert_eq!(
        loaded.tensor("weight").unwrap().to_vec(),
        vec![1.0, 2.0, 3.0, 4.0]
    );
    assert_eq!(loaded.metadata(), &metadata(&[("format", "pt")]));
    assert_eq!(serialize(loaded.tensors(), loaded.metadata()).unwrap(), bytes);
}

#[test]
fn accepts_whitespace_unknown_keys_and_any_entry_order() {
    // Other writers may pretty-print, add keys, and order entries differently.
    let header = r#" { "b" : { "data_offsets" : [4, 8], "shape": [1], "dtype": "F32", "note": [null, {"x": 1.5e3}] },
        "a": {"shape": [1], "dtype": "F32", "data_offsets": [0, 4]} }
    "#;
    let loaded = deserialize(&file(header, &le_bytes(&[1.0, 2.0]))).unwrap();
    assert_eq!(loaded.tensor("a").unwrap().to_vec(), vec![1.0]);
    assert_eq!(loaded.tensor("b").unwrap().to_vec(), vec![2.0]);
}

// ----- bad files ---------------------------------------------------------------------------

#[test]
fn truncated_files_are_errors() {
    let good = reference_a();
    assert_format_error(
        &[],
        "truncated file: 0 bytes, shorter than the 8-byte header length",
    );
    assert_format_error(&good[..7], "truncated file: 7 bytes");
    // Header cut: the header length runs past the end.
    assert_format_error(
        &good[..8 + 20],
        "truncated file: header length 56 runs past the end of the file",
    );
    // Data cut: the header is whole, the last tensor is not.
    assert_format_error(
        &good[..good.len() - 1],
        "tensor \"a\": data_offsets [0, 8] run past the end of the 7-byte data",
    );
}

#[test]
fn header_lengths_past_the_end_or_huge_are_errors() {
    let mut bytes = reference_a();
    let one_past_the_end = bytes.len() as u64 - 7;
    bytes[..8].copy_from_slice(&one_past_the_end.to_le_bytes());
    assert_format_error(&bytes, "runs past the end of the file");
    for huge in [1u64 << 63, u64::MAX, MAX_HEADER_LEN + 1] {
        let mut bytes = huge.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        assert_format_error(
            &bytes,
            &format!("header length {huge} exceeds the limit of 100000000 bytes"),
        );
    }
}

#[test]
fn malformed_headers_are_errors_with_a_position() {
    assert_format_error(
        &file(r#"{"a":{"dtype":"F32",}}"#, &[]),
        "bad JSON in the header (byte 20 of the header): expected a string, found '}'",
    );
    assert_format_error(
        &file(r#"{"a":{"dtype":"F32""#, &[]),
        "expected ',' or '}', found the end of the text",
    );
    assert_format_error(
        &file("[1, 2]", &[]),
        "(byte 0 of the header): expected an object, found '['",
    );
    assert_format_error(&file("", &[]), "expected an object, found the end of the text");
    assert_format_error(&file("{} {}", &[]), "unexpected '{' after the JSON value");
    assert_format_error(
        &file("{}\0\0\0\0\0\0", &[]),
        "unexpected '\\0' after the JSON value",
    );
    let mut not_utf8 = file("{\"a\":1}", &[]);
    not_utf8[10] = 0xff;
    assert_format_error(&not_utf8, "the header is not UTF-8 (byte 2 of the header)");
}

#[test]
fn missing_fields_are_errors() {
    for (header, field) in [
        (r#"{"a":{"shape":[1],"data_offsets":[0,4]}}"#, "dtype"),
        (r#"{"a":{"dtype":"F32","data_offsets":[0,4]}}"#, "shape"),
        (r#"{"a":{"dtype":"F32","shape":[1]}}"#, "data_offsets"),
    ] {
        assert_format_error(
            &file(header, &[0; 4]),
            &format!("tensor \"a\" has no \"{field}\""),
        );
    }
    assert_format_error(&file(r#"{"a":7}"#, &[]), "expected an object, found '7'");
}

#[test]
fn other_dtypes_are_errors_naming_the_tensor() {
    let bytes = file(
        r#"{"x":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    assert_format_error(
        &bytes,
        "unsupported dtype F16 for tensor \"x\" (only F32 is supported)",
    );
    let bytes = file(r#"{"x":{"dtype":32,"shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]);
    assert_format_error(&bytes, "expected a string, found '3'");
}

#[test]
fn bad_shapes_and_offsets_are_errors() {
    let entry = |shape: &str, offsets: &str| {
        format!(r#"{{"a":{{"dtype":"F32","shape":{shape},"data_offsets":{offsets}}}}}"#)
    };
    // Shape and byte count disagree.
    assert_format_error(
        &file(&entry("[3]", "[0,8]"), &[0; 8]),
        "shape [3] needs 12 bytes but data_offsets are [0, 8]",
    );
    assert_format_error(&file(&entry("[]", "[0,0]"), &[]), "shape [] needs 4 bytes");
    // End before begin.
    assert_format_error(
        &file(&entry("[1]", "[8,4]"), &[0; 8]),
        "tensor \"a\": data_offsets [8, 4] are not a range [begin, end]",
    );
    // A shape whose byte count overflows is an error, not a panic or a huge allocation.
    let huge = format!("[{},{}]", 1u64 << 40, 1u64 << 40);
    assert_format_error(
        &file(&entry(&huge, "[0,4]"), &[0; 4]),
        "tensor \"a\": shape [1099511627776, 1099511627776] is too large",
    );
    // A shape that claims 8 GiB in a small file is rejected before anything is allocated.
    assert_format_error(
        &file(&entry("[2147483648]", "[0,8589934592]"), &[0; 4]),
        "data_offsets [0, 8589934592] run past the end of the 4-byte data",
    );
    assert_format_error(
        &file(&entry("[18446744073709551615]", "[0,4]"), &[0; 4]),
        "is too large",
    );
    // Malformed arrays.
    assert_format_error(
        &file(&entry("[1]", "[0,4,8]"), &[0; 4]),
        "data_offsets [0, 4, 8] are not a range [begin, end]",
    );
    assert_format_error(
        &file(&entry("[1]", "[0]"), &[0; 4]),
        "data_offsets [0] are not a range [begin, end]",
    );
    assert_format_error(
        &file(&entry("[-1]", "[0,4]"), &[0; 4]),
        "expected a non-negative integer, found -1",
    );
    assert_format_error(&file(&entry("[1]", "[0,4.0]"), &[0; 4]), "found 4.0");
    assert_format_error(
        &file(&entry("[1]", "[0,18446744073709551616]"), &[0; 4]),
        "does not fit in 64 bits",
    );
    assert_format_error(
        &file(&entry("2", "[0,4]"), &[0; 4]),
        "expected an array, found '2'",
    );
}

#[test]
fn offsets_must_tile_the_data_exactly() {
    let two = |a: &str, b: &str| {
        format!(
            r#"{{"a":{{"dtype":"F32","shape":[2],"data_offsets":{a}}},"b":{{"dtype":"F32","shape":[2],"data_offsets":{b}}}}}"#
        )
    };
    assert_format_error(
        &file(&two("[0,8]", "[4,12]"), &[0; 12]),
        "tensor \"b\" (data bytes 4..12) overlaps tensor \"a\" (ending at byte 8)",
    );
    assert_format_error(&file(&two("[0,8]", "[0,8]"), &[0; 16]), "overlaps");
    assert_format_error(
        &file(&two("[0,8]", "[8,16]"), &[0; 12]),
        "tensor \"b\": data_offsets [8, 16] run past the end of the 12-byte data",
    );
    assert_format_error(
        &file(&two("[0,8]", "[12,20]"), &[0; 20]),
        "gap in the data: bytes 8..12 belong to no tensor",
    );
    assert_format_error(
        &file(&two("[4,12]", "[12,20]"), &[0; 20]),
        "gap in the data: bytes 0..4",
    );
    assert_format_error(
        &file(&two("[0,8]", "[8,16]"), &[0; 20]),
        "gap in the data: bytes 16..20",
    );
    // Order in the header does not matter, only the ranges do.
    assert!(deserialize(&file(&two("[8,16]", "[0,8]"), &[0; 16])).is_ok());
    // Trailing bytes without any tensor.
    assert_format_error(&file("{}", &[0; 3]), "gap in the data: bytes 0..3");
}

#[test]
fn duplicate_names_and_bad_metadata_are_errors() {
    let entry = r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#;
    assert_format_error(
        &file(&format!(r#"{{"a":{entry},"a":{entry}}}"#), &[0; 4]),
        "duplicate key \"a\"",
    );
    let meta = r#"{"__metadata__":{"k":"v"},"__metadata__":{}}"#;
    assert_format_error(&file(meta, &[]), "duplicate key \"__metadata__\"");
    assert_format_error(
        &file(r#"{"__metadata__":{"k":1}}"#, &[]),
        "expected a string, found '1'",
    );
    assert_format_error(&file(r#"{"__metadata__":["k"]}"#, &[]), "expected an object");
    assert_format_error(&file(r#"{"a\ud800":1}"#, &[]), "unpaired surrogate");
}

#[test]
fn error_messages_read_well() {
    let err = deserialize(&[1, 2]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid safetensors checkpoint: truncated file: 2 bytes, shorter than the 8-byte header length"
    );
    assert!(std::error::Error::source(&err).is_none());
}

// ----- writing errors and check_against ------------------------------------------------------

#[test]
fn serialize_rejects_duplicate_and_reserved_names() {
    let x = Tensor::scalar(1.0);
    match serialize([("w", &x), ("b", &x), ("w", &x)], &no_metadata()) {
        Err(CheckpointError::Format { msg }) => assert_eq!(msg, "duplicate tensor name \"w\""),
        other => panic!("expected a Format error, got {other:?}"),
    }
    match serialize([("__metadata__", &x)], &no_metadata()) {
        Err(CheckpointError::Format { msg }) => assert!(msg.contains("reserved"), "{msg}"),
        other => panic!("expected a Format error, got {other:?}"),
    }
}

fn two_tensor_checkpoint() -> SafeTensors {
    let w = Tensor::zeros(&[4, 3]);
    let b = Tensor::zeros(&[4]);
    deserialize(&serialize([("w", &w), ("b", &b)], &no_metadata()).unwrap()).unwrap()
}

fn spec(entries: &[(&str, &[usize])]) -> Vec<(String, Vec<usize>)> {
    entries.iter().map(|(n, s)| (n.to_string(), s.to_vec())).collect()
}

#[test]
fn check_against_accepts_exactly_the_expected_names_and_shapes() {
    let ckpt = two_tensor_checkpoint();
    ckpt.check_against(&spec(&[("b", &[4]), ("w", &[4, 3])])).unwrap();
    ckpt.check_against(&spec(&[("w", &[4, 3]), ("b", &[4])])).unwrap();
}

#[test]
fn check_against_names_the_missing_unexpected_or_misshapen_tensor() {
    let ckpt = two_tensor_checkpoint();
    match ckpt.check_against(&spec(&[("w", &[4, 3]), ("b", &[4]), ("c", &[1])])) {
        Err(CheckpointError::MissingTensor(name)) => assert_eq!(name, "c"),
        other => panic!("expected MissingTensor, got {other:?}"),
    }
    match ckpt.check_against(&spec(&[("w", &[4, 3])])) {
        Err(CheckpointError::UnexpectedTensor(name)) => assert_eq!(name, "b"),
        other => panic!("expected UnexpectedTensor, got {other:?}"),
    }
    let err = ckpt
        .check_against(&spec(&[("w", &[3, 4]), ("b", &[4])]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "tensor \"w\" has shape [4, 3] in the checkpoint but the model expects [3, 4]"
    );
    match err {
        CheckpointError::ShapeMismatch {
            name,
            expected,
            found,
        } => {
            assert_eq!((name.as_str(), expected, found), ("w", vec![3, 4], vec![4, 3]));
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    match ckpt.tensor("nope") {
        Err(CheckpointError::MissingTensor(name)) => assert_eq!(name, "nope"),
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

// ----- save and load ---------------------------------------------------------------------------

#[test]
fn save_then_load_round_trips_and_leaves_no_temp_file() {
    let dir = scratch_dir("roundtrip");
    let path = dir.join("model.safetensors");
    let w = tensor(&[1.0, 2.0, 3.0], &[3]);
    save(&path, [("w", &w)], &metadata(&[("step", "7")])).unwrap();

    assert!(!tmp_of(&path).exists(), "the temporary file is renamed away");
    assert_eq!(
        fs::read(&path).unwrap(),
        serialize([("w", &w)], &metadata(&[("step", "7")])).unwrap()
    );
    let loaded = load(&path).unwrap();
    assert_same(&loaded, &[("w", &w)]);
    assert_eq!(loaded.metadata(), &metadata(&[("step", "7")]));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_replaces_an_existing_file() {
    let dir = scratch_dir("replace");
    let path = dir.join("model.safetensors");
    fs::write(&path, b"an older, longer file that is not a checkpoint at all").unwrap();
    save(&path, [("old", &Tensor::zeros(&[100]))], &no_metadata()).unwrap();
    let new = tensor(&[5.0], &[1]);
    save(&path, [("new", &new)], &no_metadata()).unwrap();

    assert_same(&load(&path).unwrap(), &[("new", &new)]);
    assert!(!tmp_of(&path).exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_save_names_the_path_and_keeps_the_old_file() {
    let dir = scratch_dir("failed");
    let missing_dir = dir.join("no-such-dir").join("model.safetensors");
    let err = save(&missing_dir, [("w", &Tensor::scalar(1.0))], &no_metadata()).unwrap_err();
    assert!(err.to_string().contains("no-such-dir/model.safetensors"), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    match err {
        CheckpointError::Io { path, .. } => assert_eq!(path, missing_dir),
        other => panic!("expected an Io error, got {other:?}"),
    }
    assert!(!dir.join("no-such-dir").exists());

    // An existing checkpoint survives a save that fails half-way (here the
    // temporary file cannot be created because a directory has its name).
    let path = dir.join("model.safetensors");
    let old = tensor(&[1.0, 2.0], &[2]);
    save(&path, [("w", &old)], &no_metadata()).unwrap();
    let before = fs::read(&path).unwrap();
    fs::create_dir(tmp_of(&path)).unwrap();
    let err = save(&path, [("w", &Tensor::zeros(&[1000]))], &no_metadata()).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::Io { path: p, .. } if p == &path),
        "{err:?}"
    );
    assert_eq!(fs::read(&path).unwrap(), before);
    fs::remove_dir(tmp_of(&path)).unwrap();

    // A save that cannot serialize writes nothing at all.
    let x = Tensor::scalar(3.0);
    assert!(matches!(
        save(&path, [("a", &x), ("a", &x)], &no_metadata()),
        Err(CheckpointError::Format { .. })
    ));
    assert_eq!(fs::read(&path).unwrap(), before);
    assert!(!tmp_of(&path).exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_errors_name_the_path() {
    let dir = scratch_dir("load");
    let missing = dir.join("missing.safetensors");
    match load(&missing) {
        Err(CheckpointError::Io { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected an Io error, got {other:?}"),
    }
    let bad = dir.join("bad.safetensors");
    fs::write(&bad, [1, 2, 3]).unwrap();
    match load(&bad) {
        Err(CheckpointError::Format { msg }) => {
            assert_eq!(
                msg,
                format!(
                    "{}: truncated file: 3 bytes, shorter than the 8-byte header length",
                    bad.display()
                )
            );
        }
        other => panic!("expected a Format error, got {other:?}"),
    }
    fs::remove_dir_all(&dir).unwrap();
}

// ----- properties ----------------------------------------------------------------------------

/// A shape of rank 0 to 4 with small dims (zeros included), and enough element bits.
fn shaped_bits() -> impl Strategy<Value = (Vec<usize>, Vec<u32>)> {
    proptest::collection::vec(0usize..4, 0..=4).prop_flat_map(|shape| {
        let numel = shape.iter().product::<usize>();
        (Just(shape), proptest::collection::vec(any::<u32>(), numel))
    })
}

fn a_valid_file() -> Vec<u8> {
    let w = tensor(&[1.0, -2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = tensor(&[0.5, 0.25], &[2]);
    serialize([("w", &w), ("bias", &b)], &metadata(&[("format", "pt")])).unwrap()
}

proptest! {
    #[test]
    fn random_checkpoints_round_trip_bit_exactly(
        entries in proptest::collection::btree_map("\\PC{0,12}|[a-z.0-9_]{1,20}", shaped_bits(), 0..6),
        meta in proptest::collection::btree_map(any::<String>(), any::<String>(), 0..4),
    ) {
        let tensors: BTreeMap<String, Tensor> = entries
            .into_iter()
            .filter(|(name, _)| name != "__metadata__")
            .map(|(name, (shape, bits))| {
                let data = bits.into_iter().map(f32::from_bits).collect();
                (name, Tensor::from_vec(data, &shape).unwrap())
            })
            .collect();
        let bytes = serialize(&tensors, &meta).unwrap();
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        prop_assert_eq!(header_len % 8, 0);

        let loaded = deserialize(&bytes).unwrap();
        prop_assert_eq!(loaded.metadata(), &meta);
        prop_assert_eq!(loaded.tensors().len(), tensors.len());
        for (name, t) in &tensors {
            let got = loaded.tensor(name).unwrap();
            prop_assert_eq!(got.shape(), t.shape());
            prop_assert_eq!(bits(got), bits(t));
        }
    }

    #[test]
    fn mutated_files_never_panic(
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<proptest::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = a_valid_file();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        if let Ok(loaded) = deserialize(&bytes) {
            // Whatever loads must be self-consistent.
            for t in loaded.tensors().values() {
                prop_assert_eq!(t.to_vec().len(), t.shape().iter().product::<usize>());
            }
        }
    }

    #[test]
    fn header_text_mutations_never_panic(
        header in "[\\[\\]{}\",:0-9a-zA-Z_ .eE+-]{0,80}",
        data in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let _ = deserialize(&file(&header, &data));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = deserialize(&bytes);
    }
}
