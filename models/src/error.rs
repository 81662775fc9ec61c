//! The error type of `grlhf-models`.
//!
//! Every variant names what the user has to look at: the file, the tensor, the config field or
//! the offending token. Loading never falls back to a default or a zero tensor silently.

use std::path::PathBuf;

/// Errors raised while loading, validating or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The I/O error is part of the message (not a `source()`), so an error chain prints it once.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// `config.json` is not valid JSON or lacks a field; carries serde's line and column.
    #[error("{path}:{line}:{column}: {message}")]
    ConfigParse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// A field of `config.json` holds a value grlhf cannot run.
    #[error("{path}: field `{field}`: {message}")]
    ConfigValue {
        path: PathBuf,
        field: String,
        message: String,
    },

    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },

    #[error(
        "{path}: field `weight_map`: tensor `{tensor}` maps to `{shard}`, which does not exist"
    )]
    MissingShard {
        path: PathBuf,
        tensor: String,
        shard: String,
    },

    #[error("tensor `{tensor}` is missing from the checkpoint in {dir}")]
    MissingTensor { tensor: String, dir: PathBuf },

    #[error("{path}: unexpected tensor `{tensor}` (the model has no parameter of that name)")]
    UnexpectedTensor { path: PathBuf, tensor: String },

    #[error("{path}: tensor `{tensor}` has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        tensor: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },

    #[error("{path}: tensor `{tensor}` has dtype {dtype}, which grlhf cannot load")]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },

    #[error("{what}: token id {token} at position {position} is outside the vocabulary (vocab_size = {vocab_size})")]
    TokenOutOfRange {
        what: String,
        token: i64,
        position: usize,
        vocab_size: i64,
    },

    /// A caller passed an argument that cannot be honoured (empty prompt, top_p = 0, ...).
    #[error("invalid argument `{name}`: {message}")]
    InvalidArgument { name: String, message: String },

    #[error("image {path}: {message}")]
    Image { path: PathBuf, message: String },

    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },

    /// A checkpoint's chat template does not parse, or fails while rendering (including the
    /// template's own `raise_exception`).
    #[error("chat template {path}: {message}")]
    ChatTemplate { path: PathBuf, message: String },

    /// libtorch raised an error (out of memory, unsupported op on a device, ...).
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Result alias used throughout the crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            error: source,
        }
    }

    pub(crate) fn invalid(name: &str, message: impl Into<String>) -> Self {
        ModelError::InvalidArgument {
            name: name.to_string(),
            message: message.into(),
        }
    }
}
