//! Errors that many domains share. A leaf: it imports nothing else of the crate, so any
//! domain can use it without a circle.

use std::path::PathBuf;

/// A refused operator action (the transaction goes on; nothing of the action is written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    NotFound(String),
    /// 409: the action conflicts with the current state (illegal transition, step done).
    #[error("{0}")]
    Conflict(String),
    /// 422: the request is well-formed but not acceptable (a reason missing, too long a shelve).
    #[error("{0}")]
    Unprocessable(String),
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid configuration: {key}: {message}")]
    Invalid { key: String, message: String },
}
