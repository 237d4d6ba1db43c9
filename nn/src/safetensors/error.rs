//! Why a checkpoint could not be written, read or matched to a model.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::json::JsonError;

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
pub(super) fn format_error(msg: impl Into<String>) -> CheckpointError {
    CheckpointError::Format { msg: msg.into() }
}
