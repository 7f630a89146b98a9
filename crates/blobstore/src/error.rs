//! The store's own error enum, with the container/object it concerns, and
//! its single mapping to the protocol's [`stacksync_proto::Error`].

use stacksync_proto::{Error as ProtoError, ErrorKind};

/// What went wrong in a storage operation, coarsely: decides retries and the
/// protocol error kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobErrorKind {
    /// The container or object does not exist.
    NotFound,
    /// The storage user may not do this (Swift 403, or a local ACL refusal).
    Forbidden,
    /// The credentials were refused, even after re-authenticating.
    Unauthenticated,
    /// The operation conflicts with the current state: writing other bytes
    /// under an existing object's name (objects are written once), or
    /// deleting a container that still holds objects.
    Conflict,
    /// Stored or received bytes do not match their checksum or ETag.
    Integrity,
    /// The backend could not be reached or kept failing after retries.
    Unavailable,
    /// A local file-system error.
    Io,
    /// The backend answered something this client does not understand.
    Protocol,
    /// A container, object or user name was refused before any I/O.
    InvalidName,
    /// An object is larger than the store accepts.
    TooLarge,
}

/// A storage error: its kind and a message naming what was being done to
/// which container or object.
#[derive(Debug, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct BlobError {
    /// The coarse kind, for callers that branch on it.
    pub kind: BlobErrorKind,
    /// Human-readable context (operation, container, object, cause).
    pub message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl BlobError {
    /// An error of `kind` with a context message.
    pub fn new(kind: BlobErrorKind, message: impl Into<String>) -> BlobError {
        BlobError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Same, keeping the underlying cause for `source()` chains.
    pub fn with_source(
        kind: BlobErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> BlobError {
        BlobError {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// A local I/O failure while doing `what`.
    pub fn io(what: impl std::fmt::Display, err: std::io::Error) -> BlobError {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => BlobErrorKind::NotFound,
            _ => BlobErrorKind::Io,
        };
        BlobError::with_source(kind, format!("{what}: {err}"), err)
    }

    /// Whether this is [`BlobErrorKind::NotFound`].
    pub fn is_not_found(&self) -> bool {
        self.kind == BlobErrorKind::NotFound
    }
}

impl From<BlobError> for ProtoError {
    fn from(e: BlobError) -> ProtoError {
        let kind = match e.kind {
            BlobErrorKind::NotFound => ErrorKind::NotFound,
            BlobErrorKind::Forbidden => ErrorKind::Forbidden,
            BlobErrorKind::Unauthenticated => ErrorKind::Unauthenticated,
            // The state does not allow the request: an object that exists
            // with other bytes (objects are written once), or a container
            // that still holds objects. HTTP's 409; unlike an item-version
            // conflict it carries no server metadata.
            BlobErrorKind::Conflict => ErrorKind::Conflict,
            BlobErrorKind::InvalidName => ErrorKind::BadRequest,
            BlobErrorKind::TooLarge => ErrorKind::TooLarge,
            BlobErrorKind::Unavailable => ErrorKind::Unavailable,
            // Corrupt data, a failing disk or a misbehaving backend: the
            // caller cannot fix these by changing its request.
            BlobErrorKind::Integrity | BlobErrorKind::Io | BlobErrorKind::Protocol => {
                ErrorKind::Internal
            }
        };
        ProtoError::new(kind, format!("storage: {}", e.message))
    }
}

/// Shorthand for results of storage operations.
pub type Result<T, E = BlobError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_protocol_kinds() {
        let cases = [
            (BlobErrorKind::NotFound, ErrorKind::NotFound),
            (BlobErrorKind::Forbidden, ErrorKind::Forbidden),
            (BlobErrorKind::Unauthenticated, ErrorKind::Unauthenticated),
            (BlobErrorKind::Unavailable, ErrorKind::Unavailable),
            (BlobErrorKind::TooLarge, ErrorKind::TooLarge),
            (BlobErrorKind::Integrity, ErrorKind::Internal),
            (BlobErrorKind::InvalidName, ErrorKind::BadRequest),
            (BlobErrorKind::Conflict, ErrorKind::Conflict),
        ];
        for (ours, theirs) in cases {
            let e: ProtoError = BlobError::new(ours, "ctx").into();
            assert_eq!(e.kind, theirs, "{ours:?}");
            assert!(e.message.contains("ctx"));
        }
    }

    #[test]
    fn io_not_found_becomes_not_found() {
        let e = BlobError::io("open x", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(e.is_not_found());
        let e = BlobError::io("open x", std::io::Error::other("disk"));
        assert_eq!(e.kind, BlobErrorKind::Io);
    }
}
