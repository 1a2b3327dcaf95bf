//! The one error type of lumen-core.

use std::path::PathBuf;

/// Every fallible call in lumen returns this error. Variants carry the context a user
/// needs to fix the problem without reading the source.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown {kind} '{name}' (known: {})", known.join(", "))]
    Unknown { kind: &'static str, name: String, known: Vec<String> },

    #[error("{method}: unknown parameter '{name}' (known: {})", known.join(", "))]
    UnknownParameter { method: String, name: String, known: Vec<String> },

    #[error("{method}: bad parameter '{name}': {reason}")]
    BadParameter { method: String, name: String, reason: String },

    #[error("shape mismatch: expected {expected}, got {got}")]
    ShapeMismatch { expected: String, got: String },

    #[error("{method} cannot explain this model: {reason}")]
    UnsupportedModel { method: String, reason: String },

    #[error("bad target: {0}")]
    BadTarget(String),

    #[error("incompatible plugin {path}: expected fingerprint '{expected}', found '{found}'")]
    IncompatiblePlugin { path: PathBuf, expected: String, found: String },

    #[error("plugin '{plugin}' panicked: {message}")]
    PluginPanicked { plugin: String, message: String },

    #[error("model card {card} panicked: {message}")]
    CardPanicked { card: PathBuf, message: String },

    #[error("plugin error ({path}): {message}")]
    Plugin { path: PathBuf, message: String },

    #[error("{kind} '{name}' is registered twice: by {first} and by {second}")]
    Duplicate { kind: &'static str, name: String, first: String, second: String },

    #[error("weights {path}: {reason}")]
    Weights { path: PathBuf, reason: String },

    #[error("model card {path}: {reason}")]
    Card { path: PathBuf, reason: String },

    #[error("image {path}: {reason}")]
    Image { path: PathBuf, reason: String },

    /// A path from a script or a parameter that the run's file policy does not allow.
    #[error("refused to {access} '{}': {reason}", path.display())]
    PathRefused { access: &'static str, path: PathBuf, reason: String },

    #[error("{path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },

    #[error("data: {0}")]
    Data(String),

    #[error("device: {0}")]
    Device(String),

    #[error("solver: {0}")]
    Solver(String),

    #[error("script: {0}")]
    Script(String),

    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),

    #[error("{0}")]
    Msg(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub fn bad_param(method: impl Into<String>, name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::BadParameter { method: method.into(), name: name.into(), reason: reason.into() }
    }
    pub fn unsupported(method: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::UnsupportedModel { method: method.into(), reason: reason.into() }
    }
    pub fn shape(expected: impl Into<String>, got: impl Into<String>) -> Self {
        Error::ShapeMismatch { expected: expected.into(), got: got.into() }
    }
    pub fn msg(m: impl Into<String>) -> Self {
        Error::Msg(m.into())
    }
}
