//! The engine's [`StateStore`] in a SQLite file in the client's state folder.
//!
//! For now the whole [`SyncState`] of a workspace is one row, replaced in
//! a single statement (so a crash leaves the old row or the new, never a
//! mix). It is encoded as CBOR: self-describing like JSON, so fields the
//! engine adds later with `#[serde(default)]` still load, but it also
//! allows the non-string map keys `SyncState` has. Rewriting the whole
//! state after every operation costs O(items) per operation; the next step
//! is a per-item delta store (one row per synced item, updated in place).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use stacksync_engine::{StateStore, SyncState};
use stacksync_proto::WorkspaceId;

/// Why the state database failed.
#[derive(Debug, thiserror::Error)]
pub enum StateDbError {
    /// Opening or creating the database file failed.
    #[error("cannot open state database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A query failed.
    #[error("state database {path}, while {doing}: {source}")]
    Query {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        doing: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The stored state could not be decoded (written by an incompatible
    /// version, or damaged).
    #[error("state of workspace {workspace} in {path} is unreadable: {message}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Whose state.
        workspace: WorkspaceId,
        /// The decoder's message.
        message: String,
    },
}

/// The sync state of one workspace in a SQLite database (WAL mode, full
/// sync, so a saved state survives a power cut).
#[derive(Debug, Clone)]
pub struct SqliteStateStore {
    pool: SqlitePool,
    path: PathBuf,
    workspace: WorkspaceId,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS sync_state (
    workspace TEXT PRIMARY KEY NOT NULL,
    cursor INTEGER NOT NULL,
    state BLOB NOT NULL
)";

impl SqliteStateStore {
    /// Opens (creating if needed) the database at `path` and selects the
    /// row of `workspace`.
    pub async fn open(path: &Path, workspace: WorkspaceId) -> Result<Self, StateDbError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        // One connection: the engine saves sequentially, and a single
        // writer never sees SQLITE_BUSY from itself.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|source| StateDbError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let store = SqliteStateStore {
            pool,
            path: path.to_path_buf(),
            workspace,
        };
        sqlx::query(SCHEMA)
            .execute(&store.pool)
            .await
            .map_err(|e| store.query_error("creating the schema", e))?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved change-feed cursor, without decoding the whole state (for
    /// `stacksync status`).
    pub async fn cursor(&self) -> Result<Option<u64>, StateDbError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT cursor FROM sync_state WHERE workspace = ?1")
                .bind(self.workspace.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.query_error("reading the cursor", e))?;
        Ok(row.map(|(c,)| c as u64))
    }

    /// The saved state, or `None` on first run.
    pub async fn load_state(&self) -> Result<Option<SyncState>, StateDbError> {
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT state FROM sync_state WHERE workspace = ?1")
                .bind(self.workspace.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.query_error("loading the state", e))?;
        let Some((bytes,)) = row else {
            return Ok(None);
        };
        ciborium::from_reader(bytes.as_slice())
            .map(Some)
            .map_err(|e| StateDbError::Corrupt {
                path: self.path.clone(),
                workspace: self.workspace,
                message: e.to_string(),
            })
    }

    /// Replaces the saved state in one statement.
    pub async fn save_state(&self, state: &SyncState) -> Result<(), StateDbError> {
        let mut bytes = Vec::new();
        ciborium::into_writer(state, &mut bytes).map_err(|e| StateDbError::Corrupt {
            path: self.path.clone(),
            workspace: self.workspace,
            message: format!("encoding: {e}"),
        })?;
        // SQLite stores INTEGER as i64; a cursor past i64::MAX would be a
        // server bug, kept as its bit pattern rather than refused.
        sqlx::query(
            "INSERT INTO sync_state (workspace, cursor, state) VALUES (?1, ?2, ?3)
             ON CONFLICT (workspace) DO UPDATE SET cursor = excluded.cursor, state = excluded.state",
        )
        .bind(self.workspace.to_string())
        .bind(state.cursor as i64)
        .bind(bytes)
        .execute(&self.pool)
        .await
        .map_err(|e| self.query_error("saving the state", e))?;
        Ok(())
    }

    /// Closes the database, checkpointing the WAL.
    pub async fn close(self) {
        self.pool.close().await;
    }

    fn query_error(&self, doing: &'static str, source: sqlx::Error) -> StateDbError {
        StateDbError::Query {
            path: self.path.clone(),
            doing,
            source,
        }
    }
}

#[async_trait]
impl StateStore for SqliteStateStore {
    async fn load(&self) -> Result<Option<SyncState>, String> {
        self.load_state().await.map_err(|e| e.to_string())
    }

    async fn save(&self, state: &SyncState) -> Result<(), String> {
        self.save_state(state).await.map_err(|e| e.to_string())
    }
}
