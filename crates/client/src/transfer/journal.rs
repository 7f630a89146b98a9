//! The upload journal: which chunks this client put into which pack, in a
//! small SQLite database next to the state database, so that an upload
//! interrupted by a crash resumes without sending again what already
//! reached the store.
//!
//! It is written *ahead*: a pack's chunks are recorded before the pack is
//! PUT. A record made after the PUT would be lost by a kill between the two,
//! and the resumed upload would send the pack again. A record for a pack
//! whose PUT never completed is harmless: before a journaled location is
//! used, the pack's existence is checked once (per pack and process), and
//! the rows of a missing pack are deleted. Rows older than
//! [`UploadJournal::MAX_AGE`] are pruned when the journal is opened: by
//! then the chunks were committed (the service knows where they are) or
//! abandoned.
//!
//! Durability: WAL with `synchronous = NORMAL`. A row survives the process
//! being killed (what resuming is about); a power cut may lose the last
//! rows, which only costs sending those chunks again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{SqlitePool, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite};
use stacksync_engine::io::{Clock, SystemClock};
use stacksync_proto::{ChunkId, ChunkRef, PackSpan, WorkspaceId};

use crate::sqlite;

/// Why the upload journal failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Opening or creating the database file failed.
    #[error("cannot open upload journal {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A query failed.
    #[error("upload journal {path}, while {doing}: {source}")]
    Query {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        doing: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

/// One chunk placed in a pack: what the journal records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalEntry {
    /// The chunk.
    pub id: ChunkId,
    /// Its plaintext size.
    pub size: u32,
    /// Where it is in its pack.
    pub span: PackSpan,
}

/// The journal of one workspace in a SQLite database (several workspaces
/// may share the file). Cheap to clone.
#[derive(Debug, Clone)]
pub struct UploadJournal {
    pool: SqlitePool,
    path: PathBuf,
    workspace: String,
}

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS packed_chunks (
        workspace TEXT NOT NULL,
        chunk BLOB NOT NULL,
        size INTEGER NOT NULL,
        pack BLOB NOT NULL,
        offset INTEGER NOT NULL,
        len INTEGER NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (workspace, chunk)
    )",
    "CREATE INDEX IF NOT EXISTS packed_chunks_pack ON packed_chunks (workspace, pack)",
];

/// Most ids in one lookup statement (SQLite limits bound parameters).
const LOOKUP_BATCH: usize = 500;

/// Most rows in one insert statement (seven parameters each).
const RECORD_BATCH: usize = 1000;

impl UploadJournal {
    /// Rows older than this are pruned at open.
    pub const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

    /// Opens (creating if needed) the journal at `path` for `workspace`,
    /// pruning rows older than [`UploadJournal::MAX_AGE`].
    pub async fn open(path: &Path, workspace: WorkspaceId) -> Result<Self, JournalError> {
        let pool = sqlite::open(path, SqliteSynchronous::Normal)
            .await
            .map_err(|source| JournalError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let journal = UploadJournal {
            pool,
            path: path.to_path_buf(),
            workspace: workspace.to_string(),
        };
        sqlite::create_schema(&journal.pool, &SCHEMA)
            .await
            .map_err(|e| journal.query_error("creating the schema", e))?;
        let oldest = SystemClock.now_millis() - Self::MAX_AGE.as_millis() as i64;
        sqlx::query("DELETE FROM packed_chunks WHERE at < ?1")
            .bind(oldest)
            .execute(&journal.pool)
            .await
            .map_err(|e| journal.query_error("pruning old rows", e))?;
        Ok(journal)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records the chunks of one pack, in one transaction (before the pack
    /// is written: see the module documentation).
    pub async fn record(&self, entries: &[JournalEntry]) -> Result<(), JournalError> {
        let at = SystemClock.now_millis();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.query_error("starting a transaction", e))?;
        // A delta is not journaled: the journal offers a chunk's place for
        // reuse as its whole encoding, which a delta is not. A chunk has
        // one journaled place: the latest pack it went into. One statement
        // per batch of rows: the connection is held for a pack's rows, not
        // for a round trip per row, while lookups wait for it.
        let whole: Vec<&JournalEntry> = entries.iter().filter(|e| e.span.base.is_none()).collect();
        for batch in whole.chunks(RECORD_BATCH) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO packed_chunks (workspace, chunk, size, pack, offset, len, at) ",
            );
            q.push_values(batch, |mut row, e| {
                row.push_bind(&self.workspace)
                    .push_bind(e.id.0.to_vec())
                    .push_bind(i64::from(e.size))
                    .push_bind(e.span.pack.0.to_vec())
                    .push_bind(e.span.offset as i64)
                    .push_bind(i64::from(e.span.len))
                    .push_bind(at);
            });
            q.push(
                " ON CONFLICT (workspace, chunk) DO UPDATE SET size = excluded.size,
                 pack = excluded.pack, offset = excluded.offset, len = excluded.len,
                 at = excluded.at",
            );
            q.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| self.query_error("recording a pack", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| self.query_error("recording a pack", e))
    }

    /// The journaled location of each of `ids` that has one. Rows that do
    /// not describe a possible span (a damaged file) are left out.
    pub async fn lookup(
        &self,
        ids: &[ChunkId],
    ) -> Result<HashMap<ChunkId, ChunkRef>, JournalError> {
        let mut found = HashMap::new();
        for batch in ids.chunks(LOOKUP_BATCH) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "SELECT chunk, size, pack, offset, len FROM packed_chunks WHERE workspace = ",
            );
            q.push_bind(self.workspace.clone());
            q.push(" AND chunk IN (");
            let mut list = q.separated(", ");
            for id in batch {
                list.push_bind(id.0.to_vec());
            }
            q.push(")");
            let rows: Vec<Row> = q
                .build_query_as()
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.query_error("looking up chunks", e))?;
            found.extend(rows.into_iter().filter_map(row_to_ref).map(|r| (r.id, r)));
        }
        Ok(found)
    }

    /// Deletes the rows of a pack that turned out not to exist; returns how
    /// many there were.
    pub async fn forget_pack(&self, pack: &ChunkId) -> Result<u64, JournalError> {
        let done = sqlx::query("DELETE FROM packed_chunks WHERE workspace = ?1 AND pack = ?2")
            .bind(&self.workspace)
            .bind(pack.0.to_vec())
            .execute(&self.pool)
            .await
            .map_err(|e| self.query_error("forgetting a pack", e))?;
        Ok(done.rows_affected())
    }

    /// Every pack the journal names, in name order.
    pub async fn packs(&self) -> Result<Vec<ChunkId>, JournalError> {
        let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
            "SELECT DISTINCT pack FROM packed_chunks WHERE workspace = ?1 ORDER BY pack",
        )
        .bind(&self.workspace)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.query_error("listing packs", e))?;
        Ok(rows.into_iter().filter_map(|(p,)| chunk_id(&p)).collect())
    }

    /// Closes the database, checkpointing the WAL.
    pub async fn close(self) {
        self.pool.close().await;
    }

    fn query_error(&self, doing: &'static str, source: sqlx::Error) -> JournalError {
        JournalError::Query {
            path: self.path.clone(),
            doing,
            source,
        }
    }
}

/// A row of `packed_chunks` as read: chunk, size, pack, offset, len.
pub(crate) type Row = (Vec<u8>, i64, Vec<u8>, i64, i64);

fn chunk_id(bytes: &[u8]) -> Option<ChunkId> {
    Some(ChunkId(bytes.try_into().ok()?))
}

/// A row as a chunk reference, if it describes one a pack can hold.
pub(crate) fn row_to_ref((chunk, size, pack, offset, len): Row) -> Option<ChunkRef> {
    let span = PackSpan {
        pack: chunk_id(&pack)?,
        offset: u64::try_from(offset).ok()?,
        len: u32::try_from(len).ok()?,
        base: None,
    };
    let size = u32::try_from(size).ok()?;
    let possible = size > 0
        && size <= stacksync_proto::MAX_CHUNK_SIZE
        && span.len > 0
        && span.len <= stacksync_proto::MAX_ENCODED_CHUNK
        && span.end() <= PackSpan::MAX_PACK_BYTES;
    let id = chunk_id(&chunk)?;
    possible.then_some(ChunkRef {
        id,
        size,
        span: Some(span),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, pack: u8, offset: u64) -> JournalEntry {
        JournalEntry {
            id: ChunkId([n; 32]),
            size: 100,
            span: PackSpan {
                pack: ChunkId([pack; 32]),
                offset,
                len: 50,
                base: None,
            },
        }
    }

    #[tokio::test]
    async fn records_are_found_forgotten_by_pack_and_pruned_when_old() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uploads.sqlite");
        let ws = WorkspaceId::NIL;
        let journal = UploadJournal::open(&path, ws).await.unwrap();
        journal
            .record(&[entry(1, 9, 0), entry(2, 9, 50)])
            .await
            .unwrap();
        journal.record(&[entry(3, 8, 0)]).await.unwrap();
        // A chunk written again lives where it was written last.
        journal.record(&[entry(1, 7, 0)]).await.unwrap();
        let ids = [ChunkId([1; 32]), ChunkId([2; 32]), ChunkId([4; 32])];
        let found = journal.lookup(&ids).await.unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[&ids[0]].span.unwrap().pack, ChunkId([7; 32]));
        assert_eq!(found[&ids[1]].span.unwrap().offset, 50);
        // Another workspace sharing the file sees none of it.
        let other = WorkspaceId(uuid::Uuid::from_u64_pair(1, 2));
        let theirs = UploadJournal::open(&path, other).await.unwrap();
        assert!(theirs.lookup(&ids).await.unwrap().is_empty());
        assert_eq!(journal.forget_pack(&ChunkId([9; 32])).await.unwrap(), 1);
        assert_eq!(
            journal.packs().await.unwrap(),
            vec![ChunkId([7; 32]), ChunkId([8; 32])]
        );
        // Rows older than the limit go at the next open.
        let old = SystemClock.now_millis() - UploadJournal::MAX_AGE.as_millis() as i64 - 1000;
        sqlx::query("UPDATE packed_chunks SET at = ?1 WHERE pack = ?2")
            .bind(old)
            .bind(vec![8u8; 32])
            .execute(&journal.pool)
            .await
            .unwrap();
        journal.close().await;
        let reopened = UploadJournal::open(&path, ws).await.unwrap();
        assert_eq!(reopened.packs().await.unwrap(), vec![ChunkId([7; 32])]);
    }

    #[tokio::test]
    async fn a_pack_of_many_chunks_is_recorded_whole() {
        let dir = tempfile::tempdir().unwrap();
        let journal = UploadJournal::open(&dir.path().join("j.sqlite"), WorkspaceId::NIL)
            .await
            .unwrap();
        let n = RECORD_BATCH * 2 + 7;
        let id = |i: usize| {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            ChunkId(b)
        };
        let entries: Vec<JournalEntry> = (0..n)
            .map(|i| JournalEntry {
                id: id(i),
                size: 100,
                span: PackSpan {
                    pack: ChunkId([5; 32]),
                    offset: 50 * i as u64,
                    len: 50,
                    base: None,
                },
            })
            .collect();
        journal.record(&entries).await.unwrap();
        let ids: Vec<ChunkId> = (0..n).map(id).collect();
        let found = journal.lookup(&ids).await.unwrap();
        assert_eq!(found.len(), n);
        assert_eq!(found[&id(n - 1)].span.unwrap().offset, 50 * (n as u64 - 1));
    }

    #[test]
    fn impossible_rows_are_ignored() {
        let row =
            |size: i64, offset: i64, len: i64| (vec![1u8; 32], size, vec![2u8; 32], offset, len);
        assert!(row_to_ref(row(10, 0, 20)).is_some());
        assert!(row_to_ref(row(0, 0, 20)).is_none());
        assert!(row_to_ref(row(10, -1, 20)).is_none());
        assert!(row_to_ref(row(10, 0, 0)).is_none());
        let past_the_end = PackSpan::MAX_PACK_BYTES as i64;
        assert!(row_to_ref(row(10, past_the_end, 20)).is_none());
        assert!(row_to_ref((vec![1u8; 31], 10, vec![2u8; 32], 0, 20)).is_none());
    }
}
