//! The error every layer maps to. Storage, database and bus errors are
//! translated into one of these kinds at the layer boundary, and HTTP/RPC
//! status codes are derived from the kind in exactly one place.

use serde::{Deserialize, Serialize};

use crate::item::{ItemMeta, NameError};

/// What went wrong, coarsely: decides the HTTP status and whether a client
/// should retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The entity does not exist (or the caller may not know that it does).
    NotFound,
    /// The caller is known but may not do this.
    Forbidden,
    /// The caller is not authenticated, or its credentials expired.
    Unauthenticated,
    /// The server has a newer version; see [`Error::current`].
    Conflict,
    /// The owner's quota would be exceeded.
    QuotaExceeded,
    /// A file or folder name was refused.
    InvalidName,
    /// The request is malformed or inconsistent.
    BadRequest,
    /// The peer speaks a protocol version this side cannot serve.
    UnsupportedVersion,
    /// A payload is larger than the server accepts.
    TooLarge,
    /// Too many attempts (failed logins, sockets): wait
    /// [`Error::retry_after_secs`] before trying again. Not retried
    /// automatically: a retry would only prolong the wait.
    TooManyRequests,
    /// A dependency (database, storage, bus) is unavailable; retry later.
    Unavailable,
    /// A bug or an unexpected state on the server.
    Internal,
}

impl ErrorKind {
    /// The HTTP status for this kind (the single mapping every HTTP surface uses).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::BadRequest | ErrorKind::InvalidName => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::TooLarge => 413,
            ErrorKind::UnsupportedVersion => 426,
            ErrorKind::TooManyRequests => 429,
            ErrorKind::QuotaExceeded => 507,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// Whether the same request may succeed if simply retried later.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Unavailable)
    }
}

/// An error with its kind, a human-readable message, and for conflicts the
/// server's current metadata of the item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Box<ItemMeta>>,
    /// How long to wait before trying again, in whole seconds (sent with
    /// [`ErrorKind::TooManyRequests`] and with overload refusals; HTTP
    /// shows it as `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            current: None,
            retry_after_secs: None,
        }
    }
    /// Refused for now: the caller should wait `retry_after_secs` (at
    /// least one second is announced, so that a client never spins).
    pub fn too_many_requests(message: impl Into<String>, retry_after_secs: u64) -> Error {
        Error {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Error::new(ErrorKind::TooManyRequests, message)
        }
    }
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Forbidden, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unauthenticated, message)
    }
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadRequest, message)
    }
    pub fn quota_exceeded(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::QuotaExceeded, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, message)
    }
    /// A version conflict carrying what the server has now.
    pub fn conflict(current: ItemMeta) -> Error {
        Error {
            kind: ErrorKind::Conflict,
            message: format!(
                "item {} is at version {} on the server",
                current.id, current.version
            ),
            current: Some(Box::new(current)),
            retry_after_secs: None,
        }
    }
    /// A refused name, saying which name and why.
    pub fn invalid_name(name: &str, why: NameError) -> Error {
        let shown: String = name.chars().take(64).collect();
        Error::new(
            ErrorKind::InvalidName,
            format!("invalid name {shown:?}: {why}"),
        )
    }
}

/// Shorthand for results that carry a protocol [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
