//! Errors that many domains share. A leaf: it imports nothing else of the crate, so any
//! domain can use it without a circle.

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
