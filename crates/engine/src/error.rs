//! The engine's errors.

use stacksync_proto::ErrorKind;

use crate::path::RelPath;

/// What kind of file-system failure happened; decides whether the engine
/// retries, skips or gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsErrorKind {
    /// The entry does not exist.
    NotFound,
    /// The target of a create or no-clobber rename exists.
    AlreadyExists,
    /// A folder to remove still has entries.
    NotEmpty,
    /// The entry is not of the expected kind (a file where a folder was
    /// expected, a symlink, ...).
    WrongKind,
    /// Anything else (permissions, disk full, I/O errors, a simulated crash).
    Other,
}

/// A failed file-system call, with the path it concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?} on {path}: {message}")]
pub struct FsError {
    /// What kind of failure.
    pub kind: FsErrorKind,
    /// The path the call was about.
    pub path: RelPath,
    /// The platform's message.
    pub message: String,
}

impl FsError {
    /// An error of `kind` on `path`.
    pub fn new(kind: FsErrorKind, path: &RelPath, message: impl Into<String>) -> FsError {
        FsError {
            kind,
            path: path.clone(),
            message: message.into(),
        }
    }
}

/// Why a sync round stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The local file system failed in a way that is not about one item
    /// (an item-level failure is skipped and retried instead).
    #[error("file system: {0}")]
    Fs(#[from] FsError),
    /// The server or transport failed while `doing`.
    #[error("server, while {doing}: {source}")]
    Remote {
        /// What the engine was doing.
        doing: String,
        /// The protocol error.
        #[source]
        source: stacksync_proto::Error,
    },
    /// Loading or saving the sync state failed.
    #[error("state store: {0}")]
    Store(String),
    /// The server sent something the engine cannot use (a bad page, a
    /// reply for another item).
    #[error("protocol: {0}")]
    Protocol(String),
}

impl EngineError {
    /// Whether retrying the round later may help (transport down, disk
    /// busy) as opposed to a bug or a refused account.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Remote { source, .. } => source.kind == ErrorKind::Unavailable,
            EngineError::Fs(_) | EngineError::Store(_) => true,
            EngineError::Protocol(_) => false,
        }
    }

    /// Maps to the protocol error for status reporting over the wire.
    pub fn to_proto(&self) -> stacksync_proto::Error {
        match self {
            EngineError::Remote { source, .. } => source.clone(),
            other => stacksync_proto::Error::internal(other.to_string()),
        }
    }
}
