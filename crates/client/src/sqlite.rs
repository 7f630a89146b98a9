//! The client's local SQLite files (the state database, the upload
//! journal): opened the same way, with one connection each.

use std::path::Path;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// Opens (creating if needed) the database at `path` in WAL mode with the
/// given durability, as a pool of one connection: each file has a single
/// writer, which never sees SQLITE_BUSY from itself. The file (and its
/// `-wal`/`-shm`, which SQLite creates with the database's mode) is
/// private: it lists the user's file names and hashes.
pub(crate) async fn open(
    path: &Path,
    synchronous: SqliteSynchronous,
) -> Result<SqlitePool, sqlx::Error> {
    crate::private::sqlite_file(path)?;
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous);
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
}

/// Runs each statement of `schema` (idempotent `CREATE ... IF NOT EXISTS`).
pub(crate) async fn create_schema(
    pool: &SqlitePool,
    schema: &[&'static str],
) -> Result<(), sqlx::Error> {
    for statement in schema {
        sqlx::query(*statement).execute(pool).await?;
    }
    Ok(())
}
