//! The crate's one error type.
//!
//! Every failure of training, sampling, evaluation or the program reaches the user
//! as an [`Error`]. The engine's own typed errors ([`TensorError`],
//! [`CheckpointError`], [`DataError`], [`EvalError`]) travel inside it as
//! *sources*, not as flattened strings, so `main` can print the whole chain
//! ("cannot load runs/x/checkpoint.safetensors" / "caused by: tensor ... has shape
//! ..."), and a caller can still match on what went wrong.
//!
//! [`Error::is_usage`] separates a user's mistake on the command line (exit code 2)
//! from a failure while running (exit code 1).

use std::path::{Path, PathBuf};

use nn::safetensors::CheckpointError;
use tensor::TensorError;

use crate::data::DataError;
use crate::eval::EvalError;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line asks for something impossible (a flag combination, a value
    /// out of range for the model it names). Exit code 2.
    #[error("{0}")]
    Usage(String),
    /// A tensor operation failed while doing `context`.
    #[error("{context}")]
    Tensor {
        /// What was being done.
        context: String,
        /// The engine's error.
        #[source]
        source: TensorError,
    },
    /// A weight file could not be read, written or matched to the model.
    #[error("{}", path.display())]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        #[source]
        source: CheckpointError,
    },
    /// A weight file reads, but what it records cannot be used: bad metadata, a
    /// non-finite tensor, a model that contradicts the flags of a resumed run.
    #[error("{}: {msg}", path.display())]
    Contract {
        /// The file.
        path: PathBuf,
        /// A sentence naming the field or tensor and the problem.
        msg: String,
    },
    /// A data set or image could not be read or written.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The classifier could not be loaded or run.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// The operating system could not read or write `path`.
    #[error("{}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The loss, the gradient or the weights became NaN or infinite.
    #[error(
        "the {what} at step {step} is not finite; stopped before saving it. The last checkpoint \
         (before this step) is intact: lower --lr or check the data, then --resume"
    )]
    NonFinite {
        /// The step at which it happened.
        step: u64,
        /// What was not finite.
        what: String,
    },
    /// A figure or plot could not be drawn.
    #[error("{0}")]
    Plot(String),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Whether this is a usage error (exit code 2) rather than a failure (1).
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Usage(_))
    }

    /// Shorthand for [`Error::Usage`].
    pub fn usage(msg: impl Into<String>) -> Error {
        Error::Usage(msg.into())
    }

    /// Shorthand for [`Error::Contract`].
    pub fn contract(path: &Path, msg: impl Into<String>) -> Error {
        Error::Contract {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Shorthand for [`Error::Checkpoint`].
    pub fn checkpoint(path: &Path, source: CheckpointError) -> Error {
        Error::Checkpoint {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The message and every source below it, one `caused by:` line each (a
    /// source whose text the message already shows is not repeated).
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            let text = s.to_string();
            if !out.contains(&text) {
                out.push_str(&format!("\n  caused by: {text}"));
            }
            source = s.source();
        }
        out
    }
}

/// Gives a [`TensorError`] the context of what was being done.
pub trait Context<T> {
    /// Wraps the error as [`Error::Tensor`] with `context`.
    fn context(self, context: &str) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, TensorError> {
    fn context(self, context: &str) -> Result<T> {
        self.map_err(|source| Error::Tensor {
            context: context.to_string(),
            source,
        })
    }
}
