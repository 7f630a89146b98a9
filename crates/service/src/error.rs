//! The service's own errors and their single mapping to protocol errors.

use stacksync_blobstore::BlobError;
use stacksync_bus::BusError;
use stacksync_metastore::StoreError;
use stacksync_proto::{ChunkId, Error, ErrorKind};

/// What can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request was refused (not found, forbidden, conflict, ...).
    #[error(transparent)]
    Refused(#[from] Error),
    /// The metadata store failed or refused.
    #[error("metadata store: {0}")]
    Store(#[from] StoreError),
    /// The blob store failed while doing `context`.
    #[error("blob store while {context}: {source}")]
    Blob {
        /// What the service was doing (which container, which chunk).
        context: String,
        /// The store's error.
        #[source]
        source: BlobError,
    },
    /// A read of bytes `start..end` of an object that has only `size`
    /// bytes (HTTP answers it with 416 and the size).
    #[error("object {object} has {size} bytes; bytes {start}..{end} are not all there")]
    RangeNotSatisfiable {
        /// The object read.
        object: ChunkId,
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The object's size.
        size: u64,
    },
    /// The bus failed (serving requests; publishing is never fatal).
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// The broker's management API failed (issuing or withdrawing a
    /// session's broker user).
    #[error("broker administration: {0}")]
    Broker(#[from] crate::broker::BrokerError),
    /// Hashing or verifying a password failed for a reason other than a
    /// wrong password (a malformed stored hash, a broken RNG).
    #[error("password hashing: {0}")]
    Password(String),
    /// A blocking task (password hashing) panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ServiceError {
    /// The protocol error the caller sees. Internal details stay in the log.
    pub fn to_proto(&self) -> Error {
        let e = match self {
            ServiceError::Refused(e) => return e.clone(),
            ServiceError::Store(e) => e.to_proto(),
            ServiceError::Blob { context, source } => {
                let mut e = Error::from(BlobError::new(source.kind, source.message.clone()));
                e.message = format!("{} while {context}", e.message);
                e
            }
            ServiceError::RangeNotSatisfiable { .. } => Error::bad_request(self.to_string()),
            ServiceError::Bus(e) if e.is_transient() => {
                Error::unavailable("message bus unavailable")
            }
            ServiceError::Bus(_) => Error::internal("message bus error"),
            ServiceError::Broker(_) => Error::unavailable("broker administration unavailable"),
            ServiceError::Password(_) | ServiceError::Task(_) => Error::internal("internal error"),
        };
        if matches!(e.kind, ErrorKind::Internal | ErrorKind::Unavailable) {
            tracing::warn!(error = %self, "request failed");
        }
        e
    }
}

impl From<ServiceError> for Error {
    fn from(e: ServiceError) -> Error {
        e.to_proto()
    }
}

/// Attaches a context to a blob-store result.
pub(crate) trait BlobContext<T> {
    fn blob(self, context: impl FnOnce() -> String) -> Result<T, ServiceError>;
}

impl<T> BlobContext<T> for Result<T, BlobError> {
    fn blob(self, context: impl FnOnce() -> String) -> Result<T, ServiceError> {
        self.map_err(|source| ServiceError::Blob {
            context: context(),
            source,
        })
    }
}
