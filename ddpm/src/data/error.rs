//! The one error type of the data sets.
//!
//! Every error that comes from a file names that file, so that a user who points
//! the loader at the wrong folder reads `/data/mnist/train-images-idx3-ubyte.gz: the
//! file holds 1000 bytes but its header declares 47040016` rather than a panic.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong while reading or writing a data set or an image.
#[derive(Debug)]
pub enum DataError {
    /// The operating system could not read or write `path`.
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A directory or a file that the loader needs does not exist.
    NotFound {
        /// The path that was looked for (for a missing IDX file, its directory).
        path: PathBuf,
        /// A sentence that says what is missing.
        msg: String,
    },
    /// A file holds fewer bytes than its header declares.
    Truncated {
        /// The file.
        path: PathBuf,
        /// The bytes the header (or the format) needs.
        expected: u64,
        /// The bytes that are there.
        got: u64,
    },
    /// A file is readable but is not what the loader expects (bad magic number,
    /// bad dimensions, trailing bytes, label out of range, corrupt gzip...).
    Format {
        /// The file.
        path: PathBuf,
        /// A sentence that says what is wrong.
        msg: String,
    },
    /// The `image` crate could not decode or encode an image file.
    Image {
        /// The image file.
        path: PathBuf,
        /// The underlying error.
        source: image::ImageError,
    },
    /// The caller passed an invalid argument (channels other than 1 or 3, an index
    /// out of range, a tensor of the wrong shape...).
    Argument {
        /// A sentence that says what is wrong.
        msg: String,
    },
}

impl DataError {
    /// Shorthand for [`DataError::Io`].
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Shorthand for [`DataError::Format`].
    pub(crate) fn format(path: &Path, msg: impl Into<String>) -> Self {
        DataError::Format {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }

    /// Shorthand for [`DataError::Argument`].
    pub(crate) fn argument(msg: impl Into<String>) -> Self {
        DataError::Argument { msg: msg.into() }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            DataError::NotFound { path, msg } => write!(f, "{}: {msg}", path.display()),
            DataError::Truncated { path, expected, got } => write!(
                f,
                "{}: truncated: expected {expected} bytes, got {got}",
                path.display()
            ),
            DataError::Format { path, msg } => write!(f, "{}: {msg}", path.display()),
            DataError::Image { path, source } => write!(f, "{}: {source}", path.display()),
            DataError::Argument { msg } => write!(f, "invalid argument: {msg}"),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataError::Io { source, .. } => Some(source),
            DataError::Image { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The data module's result type.
pub type Result<T> = std::result::Result<T, DataError>;
