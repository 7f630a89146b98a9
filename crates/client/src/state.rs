//! The engine's [`StateStore`] in a SQLite file in the client's state folder.
//!
//! The [`SyncState`] of a workspace is stored as rows: one per remote item,
//! synced item, refused path and pending commit (in `sync_entry`, keyed by
//! workspace, kind and key, the value CBOR so that fields the engine adds
//! later with `#[serde(default)]` still load), plus the cursor in
//! `sync_cursor`, whose row is also what says a state was saved. Several
//! workspaces share one file.
//!
//! The engine saves after every batch of applied operations (and at once
//! after a commit). The state's maps record which keys changed since they
//! were last saved ([`stacksync_engine::tracked`]), so a save encodes and
//! writes exactly those rows: O(changes), with no pass over the rest and
//! no copy of the state in memory (a one-file edit in a tree of 100,000
//! files writes a handful of rows). The engine forgets the record only
//! after a save succeeded, so a failed save's changes are written by the
//! next one.
//!
//! The record is trusted only for the maps this store last loaded or
//! saved, which it knows by their [`Lineage`]: a state made otherwise (a
//! first run, a copy, a map replaced whole) is written whole, every row of
//! the workspace deleted first, as is the first save after
//! [`SqliteStateStore::open`] without a load.
//!
//! A save is one transaction (WAL, `synchronous=FULL`: a saved state survives
//! a power cut, which the engine's commit intents rely on), so a crash
//! leaves the previous save or the new one, never a mix. What the store
//! knows is dropped when a save starts and put back only once it
//! committed, and it belongs to this store (and its clones): one store per
//! workspace writes at a time.
//!
//! A database written by the previous layout (table `sync_state`, one CBOR
//! blob per workspace) is converted by the first load, in one transaction.

pub(crate) mod rows;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::sqlite::{SqlitePool, SqliteSynchronous};
use sqlx::{AssertSqlSafe, SqliteConnection};
use stacksync_engine::{Lineage, StateStore, SyncState};
use stacksync_proto::WorkspaceId;
use tokio::sync::Mutex;

use rows::{Changes, Kind, Loader, RowWrite};

use crate::sqlite;
use crate::transfer::Activity;

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
        /// What was unreadable, and the decoder's message.
        message: String,
    },
}

/// What one save wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaveStats {
    /// Rows inserted, updated or deleted, as SQLite counted them.
    pub rows_changed: u64,
    /// The save rewrote every row of the workspace, because what the
    /// database held was not known (first save after opening without a
    /// load, or after a save that did not finish).
    pub rewrote: bool,
}

/// The sync state of one workspace in a SQLite database (WAL mode, full
/// sync, so a saved state survives a power cut).
#[derive(Clone)]
pub struct SqliteStateStore {
    pool: SqlitePool,
    path: PathBuf,
    workspace: WorkspaceId,
    /// The workspace column's value.
    workspace_key: String,
    /// Whose state the database holds, when known. Locked for a whole
    /// save or load, which also keeps saves of clones in order.
    saved: Arc<Mutex<Option<Saved>>>,
    /// Where loads and saves are listed while in flight (for the stall
    /// watchdog).
    activity: Activity,
}

/// What the database holds: the state of this lineage as of its last
/// recorded changes, at this cursor.
#[derive(Debug, Clone, Copy)]
struct Saved {
    lineage: Lineage,
    cursor: u64,
}

impl fmt::Debug for SqliteStateStore {
    // Not derived: the saved copy can hold a hundred thousand items.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStateStore")
            .field("path", &self.path)
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS sync_cursor (
        workspace TEXT PRIMARY KEY NOT NULL,
        cursor INTEGER NOT NULL
    )",
    // kind: 1 remote item, 2 synced item, 3 refused path, 4 pending commit,
    // 5 download temporary (see `rows::Kind`); key: 16 id bytes, or the path as UTF-8.
    "CREATE TABLE IF NOT EXISTS sync_entry (
        workspace TEXT NOT NULL,
        kind INTEGER NOT NULL,
        key BLOB NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (workspace, kind, key)
    ) WITHOUT ROWID",
];

/// Most rows one statement inserts (four parameters each, far below
/// SQLite's limit of 32766).
const PUT_BATCH: usize = 128;

/// The previous layout's table, read only to convert it.
const LEGACY_TABLE: &str = "sync_state";

impl SqliteStateStore {
    /// Opens (creating if needed) the database at `path` and selects the
    /// rows of `workspace`.
    pub async fn open(path: &Path, workspace: WorkspaceId) -> Result<Self, StateDbError> {
        let pool = sqlite::open(path, SqliteSynchronous::Full)
            .await
            .map_err(|source| StateDbError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let store = SqliteStateStore {
            pool,
            path: path.to_path_buf(),
            workspace,
            workspace_key: workspace.to_string(),
            saved: Arc::default(),
            activity: Activity::default(),
        };
        sqlite::create_schema(&store.pool, &SCHEMA)
            .await
            .map_err(|e| store.query_error("creating the schema", e))?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lists this store's loads and saves in `activity` while they are in
    /// flight (for the stall watchdog).
    pub fn watched_by(mut self, activity: Activity) -> SqliteStateStore {
        self.activity = activity;
        self
    }

    /// The saved change-feed cursor, from its own row without reading the
    /// state (for `stacksync status`).
    pub async fn cursor(&self) -> Result<Option<u64>, StateDbError> {
        let doing = "reading the cursor";
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.query_error(doing, e))?;
        if let Some(cursor) = self
            .saved_cursor(&mut conn)
            .await
            .map_err(|e| self.query_error(doing, e))?
        {
            return Ok(Some(cursor));
        }
        // Not converted yet: the previous layout kept the cursor in a column.
        if !legacy_table_exists(&mut conn)
            .await
            .map_err(|e| self.query_error(doing, e))?
        {
            return Ok(None);
        }
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT cursor FROM sync_state WHERE workspace = ?1")
                .bind(&self.workspace_key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| self.query_error(doing, e))?;
        Ok(row.map(|(c,)| c as u64))
    }

    /// The saved state, or `None` on first run. A state in the previous
    /// layout is converted to rows here, in one transaction.
    pub async fn load_state(&self) -> Result<Option<SyncState>, StateDbError> {
        let _in_flight = self.activity.begin("loading the sync state");
        let mut saved = self.saved.lock().await;
        *saved = None;
        let doing = "loading the state";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.query_error(doing, e))?;
        let head = self
            .saved_cursor(&mut tx)
            .await
            .map_err(|e| self.query_error(doing, e))?;
        if let Some(cursor) = head {
            let mut loader = Loader::with_cursor(cursor);
            let mut rows = sqlx::query_as::<_, (i64, Vec<u8>, Vec<u8>)>(
                "SELECT kind, key, value FROM sync_entry WHERE workspace = ?1",
            )
            .bind(&self.workspace_key)
            .fetch(&mut *tx);
            while let Some((kind, key, value)) = rows
                .try_next()
                .await
                .map_err(|e| self.query_error(doing, e))?
            {
                loader
                    .insert_row(kind, &key, &value)
                    .map_err(|m| self.corrupt(m))?;
            }
            drop(rows);
            tx.commit().await.map_err(|e| self.query_error(doing, e))?;
            let state = loader.finish().map_err(|m| self.corrupt(m))?;
            *saved = Some(Saved {
                lineage: state.lineage(),
                cursor,
            });
            return Ok(Some(state));
        }
        let Some(mut state) = self.read_legacy(&mut tx).await? else {
            // First run. The rows stay unknown: should any be left without a
            // cursor row, the first save deletes them.
            return Ok(None);
        };
        let doing = "converting the state to rows";
        let changes = Changes::everything(&state);
        self.write(&mut tx, &changes, true).await?;
        tx.commit().await.map_err(|e| self.query_error(doing, e))?;
        drop(changes);
        state.forget_changes();
        *saved = Some(Saved {
            lineage: state.lineage(),
            cursor: state.cursor,
        });
        tracing::info!(workspace = %self.workspace, "state database converted to per-item rows");
        Ok(Some(state))
    }

    /// Saves `state` in one transaction: the changes it recorded since
    /// its last save, or all of it when the database holds another
    /// lineage (see the module documentation). The caller then calls
    /// [`SyncState::forget_changes`] (the engine does).
    pub async fn save_state(&self, state: &SyncState) -> Result<SaveStats, StateDbError> {
        let _in_flight = self.activity.begin("saving the sync state");
        let mut saved = self.saved.lock().await;
        // Unknown until this save commits: a save that fails or is dropped
        // half-way leaves what the database holds unknown to this store
        // (it was rolled back, but knowing that is not worth the risk).
        let previous = saved.take().filter(|s| s.lineage == state.lineage());
        let rewrote = previous.is_none();
        let changes = match &previous {
            Some(s) => Changes::recorded(state, s.cursor),
            None => Changes::everything(state),
        };
        let now = Saved {
            lineage: state.lineage(),
            cursor: state.cursor,
        };
        if changes.is_empty() {
            *saved = Some(now);
            return Ok(SaveStats::default());
        }
        let doing = "saving the state";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.query_error(doing, e))?;
        let rows_changed = self.write(&mut tx, &changes, rewrote).await?;
        tx.commit().await.map_err(|e| self.query_error(doing, e))?;
        *saved = Some(now);
        Ok(SaveStats {
            rows_changed,
            rewrote,
        })
    }

    /// Closes the database, checkpointing the WAL.
    pub async fn close(self) {
        self.pool.close().await;
    }

    /// Writes `changes` inside the caller's transaction; with `rewrite`,
    /// first deletes every row the workspace had, in either layout.
    /// Returns the number of rows SQLite changed.
    async fn write(
        &self,
        conn: &mut SqliteConnection,
        changes: &Changes<'_>,
        rewrite: bool,
    ) -> Result<u64, StateDbError> {
        let rows = changes
            .rows()
            .map_err(|m| self.corrupt(format!("cannot be saved: {m}")))?;
        let doing = "saving the state";
        let err = |e: sqlx::Error| self.query_error(doing, e);
        let mut changed = 0;
        if rewrite {
            changed += sqlx::query("DELETE FROM sync_entry WHERE workspace = ?1")
                .bind(&self.workspace_key)
                .execute(&mut *conn)
                .await
                .map_err(err)?
                .rows_affected();
            if legacy_table_exists(conn).await.map_err(err)? {
                changed += sqlx::query("DELETE FROM sync_state WHERE workspace = ?1")
                    .bind(&self.workspace_key)
                    .execute(&mut *conn)
                    .await
                    .map_err(err)?
                    .rows_affected();
            }
        }
        let mut puts = Vec::new();
        for row in rows {
            match row {
                RowWrite::Put { kind, key, value } => {
                    puts.push((kind, key, value));
                    if puts.len() == PUT_BATCH {
                        changed += self.put_rows(conn, &mut puts).await.map_err(err)?;
                    }
                }
                RowWrite::Delete { kind, key } => {
                    changed += sqlx::query(
                        "DELETE FROM sync_entry WHERE workspace = ?1 AND kind = ?2 AND key = ?3",
                    )
                    .bind(&self.workspace_key)
                    .bind(kind.code())
                    .bind(key)
                    .execute(&mut *conn)
                    .await
                    .map_err(err)?
                    .rows_affected();
                }
            }
        }
        if !puts.is_empty() {
            changed += self.put_rows(conn, &mut puts).await.map_err(err)?;
        }
        if let Some(cursor) = changes.cursor() {
            // SQLite stores INTEGER as i64; a cursor past i64::MAX would be
            // a server bug, kept as its bit pattern rather than refused.
            changed += sqlx::query(
                "INSERT INTO sync_cursor (workspace, cursor) VALUES (?1, ?2)
                 ON CONFLICT (workspace) DO UPDATE SET cursor = excluded.cursor",
            )
            .bind(&self.workspace_key)
            .bind(cursor as i64)
            .execute(&mut *conn)
            .await
            .map_err(err)?
            .rows_affected();
        }
        Ok(changed)
    }

    /// Inserts or replaces `rows` (emptying it) in one statement: a
    /// statement costs a round trip to SQLite's worker thread, which is
    /// what a rewrite of many rows would otherwise spend its time on.
    async fn put_rows(
        &self,
        conn: &mut SqliteConnection,
        rows: &mut Vec<(Kind, Vec<u8>, Vec<u8>)>,
    ) -> Result<u64, sqlx::Error> {
        let mut sql = String::from("INSERT INTO sync_entry (workspace, kind, key, value) VALUES ");
        for i in 0..rows.len() {
            sql.push_str(if i == 0 {
                "(?, ?, ?, ?)"
            } else {
                ", (?, ?, ?, ?)"
            });
        }
        sql.push_str(" ON CONFLICT (workspace, kind, key) DO UPDATE SET value = excluded.value");
        // Built from constant pieces only; every value is a bound parameter.
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (kind, key, value) in rows.drain(..) {
            query = query
                .bind(&self.workspace_key)
                .bind(kind.code())
                .bind(key)
                .bind(value);
        }
        Ok(query.execute(conn).await?.rows_affected())
    }

    /// The cursor row of the workspace: present once a state was saved in
    /// this layout.
    async fn saved_cursor(&self, conn: &mut SqliteConnection) -> Result<Option<u64>, sqlx::Error> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT cursor FROM sync_cursor WHERE workspace = ?1")
                .bind(&self.workspace_key)
                .fetch_optional(conn)
                .await?;
        Ok(row.map(|(cursor,)| cursor as u64))
    }

    /// The workspace's state in the previous layout, if there is one.
    async fn read_legacy(
        &self,
        conn: &mut SqliteConnection,
    ) -> Result<Option<SyncState>, StateDbError> {
        let doing = "reading the state of the previous layout";
        if !legacy_table_exists(conn)
            .await
            .map_err(|e| self.query_error(doing, e))?
        {
            return Ok(None);
        }
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT state FROM sync_state WHERE workspace = ?1")
                .bind(&self.workspace_key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| self.query_error(doing, e))?;
        let Some((bytes,)) = row else {
            return Ok(None);
        };
        ciborium::from_reader(bytes.as_slice())
            .map(Some)
            .map_err(|e| self.corrupt(format!("state blob of the previous layout: {e}")))
    }

    fn query_error(&self, doing: &'static str, source: sqlx::Error) -> StateDbError {
        StateDbError::Query {
            path: self.path.clone(),
            doing,
            source,
        }
    }

    fn corrupt(&self, message: String) -> StateDbError {
        StateDbError::Corrupt {
            path: self.path.clone(),
            workspace: self.workspace,
            message,
        }
    }
}

/// Whether the file still has the previous layout's table (it is never
/// created any more, and left in place once converted because other
/// workspaces of the same file may still have rows in it).
async fn legacy_table_exists(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")
            .bind(LEGACY_TABLE)
            .fetch_optional(conn)
            .await?;
    Ok(row.is_some())
}

#[async_trait]
impl StateStore for SqliteStateStore {
    async fn load(&self) -> Result<Option<SyncState>, String> {
        self.load_state().await.map_err(|e| e.to_string())
    }

    async fn save(&self, state: &SyncState) -> Result<(), String> {
        self.save_state(state)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}
