//! Errors of the metadata store and their mapping to protocol errors.

use stacksync_proto::{Error, ErrorKind};

/// What can go wrong inside the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement.
    #[error("database error during {context}: {source}")]
    Db {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be read back (a bug or a hand-edited database).
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    /// The request itself was refused (not found, forbidden, ...).
    #[error(transparent)]
    Refused(#[from] Error),
}

impl StoreError {
    /// The protocol error a caller should see. Database details stay in the
    /// server's log; the client learns only whether to retry.
    pub fn to_proto(&self) -> Error {
        match self {
            StoreError::Refused(e) => e.clone(),
            StoreError::Db { source, context } => {
                if is_transient(source) {
                    Error::unavailable(format!("metadata database unavailable during {context}"))
                } else {
                    Error::internal(format!("metadata database error during {context}"))
                }
            }
            StoreError::Migrate(_) | StoreError::Corrupt { .. } => {
                Error::new(ErrorKind::Internal, self.to_string())
            }
        }
    }

    /// Whether a retry of the same call may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db { source, .. } => is_transient(source),
            _ => false,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        e.to_proto()
    }
}

fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => {
            // SQLite: BUSY / LOCKED. PostgreSQL: serialization failure,
            // deadlock, too many connections, admin shutdown.
            matches!(
                db.code().as_deref(),
                Some("5")
                    | Some("6")
                    | Some("40001")
                    | Some("40P01")
                    | Some("53300")
                    | Some("57P01")
            )
        }
        _ => false,
    }
}

/// Attaches a context to a sqlx result.
pub(crate) trait DbContext<T> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> DbContext<T> for Result<T, sqlx::Error> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Db { context, source })
    }
}
