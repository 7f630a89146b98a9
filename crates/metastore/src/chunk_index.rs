//! The chunk index of each workspace (`chunk_refs`): every chunk some
//! version uses, with its size, how many versions use it, and where it is
//! stored. One location per chunk and workspace: the first version that
//! brings a chunk in decides it, and everything the store sends afterwards
//! carries that location, whatever later proposals claim.

use std::collections::HashMap;

use sqlx::AnyConnection;
use stacksync_proto::{ChunkId, ChunkRef, Error, WorkspaceId};

use crate::MetaStore;
use crate::chunk_id_lists::rows_for_chunk_ids;
use crate::error::{DbContext, StoreError};
use crate::rows::{CHUNK_COLS, chunk_from_row};

/// The index entries of `ids` in `ws` (each id once, whatever its
/// repetitions). `in_use_only` leaves out entries no version references
/// any more.
pub(crate) async fn stored_chunks(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    ids: &[ChunkId],
    in_use_only: bool,
) -> Result<HashMap<ChunkId, ChunkRef>, StoreError> {
    let filter = if in_use_only { " AND refs > 0" } else { "" };
    let rows = rows_for_chunk_ids(
        conn,
        ws,
        ids.iter().copied(),
        |marks| {
            format!(
                "SELECT {CHUNK_COLS} FROM chunk_refs WHERE workspace_id = $1 AND chunk_id IN ({marks}){filter}"
            )
        },
        "reading the chunk index",
    )
    .await?;
    rows.iter()
        .map(|row| chunk_from_row(row).map(|c| (c.id, c)))
        .collect()
}

/// A chunk id names one content, so it has one size: a version that claims
/// another size for a chunk `index` (or the version itself) already has is
/// lying or broken.
pub(crate) fn check_chunk_sizes(
    index: &HashMap<ChunkId, ChunkRef>,
    chunks: &[ChunkRef],
) -> Option<Error> {
    let mut seen: HashMap<ChunkId, u32> = HashMap::new();
    for c in chunks {
        let known = seen
            .get(&c.id)
            .or_else(|| index.get(&c.id).map(|k| &k.size));
        if let Some(size) = known
            && *size != c.size
        {
            return Some(Error::bad_request(format!(
                "chunk {} has {size} bytes, not {}",
                c.id, c.size
            )));
        }
        seen.insert(c.id, c.size);
    }
    None
}

/// The chunks of a version as the workspace will store them: a chunk
/// `index` has keeps its stored location; a new one takes the location
/// proposed at its first mention in the version.
pub(crate) fn locate(index: &HashMap<ChunkId, ChunkRef>, proposed: &[ChunkRef]) -> Vec<ChunkRef> {
    let mut claimed: HashMap<ChunkId, ChunkRef> = HashMap::new();
    proposed
        .iter()
        .map(|c| {
            let stored = index.get(&c.id).or_else(|| claimed.get(&c.id)).copied();
            stored.unwrap_or_else(|| *claimed.entry(c.id).or_insert(*c))
        })
        .collect()
}

/// Deletes the index entries of `ws` no version uses any more, first
/// releasing the reference each one that is a delta holds on its base
/// (migration 0007), so a base no longer needed goes in the same call
/// (bases are stored whole: one round settles everything).
pub(crate) async fn drop_unused_entries(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE chunk_refs SET refs = refs - (SELECT COUNT(*) FROM chunk_refs d \
             WHERE d.workspace_id = chunk_refs.workspace_id AND d.pack_base = chunk_refs.chunk_id \
             AND d.refs <= 0) \
         WHERE workspace_id = $1 AND chunk_id IN (SELECT pack_base FROM chunk_refs \
             WHERE workspace_id = $1 AND refs <= 0 AND pack_base IS NOT NULL)",
    )
    .bind(ws.to_string())
    .execute(&mut *conn)
    .await
    .ctx("releasing delta bases")?;
    sqlx::query("DELETE FROM chunk_refs WHERE workspace_id = $1 AND refs <= 0")
        .bind(ws.to_string())
        .execute(&mut *conn)
        .await
        .ctx("dropping unused chunk index entries")?;
    Ok(())
}

impl MetaStore {
    /// For each of `ids`, in order: the chunk as `ws` stores it (size and
    /// location) if any version of the workspace uses it, else `None`.
    /// Clients ask before uploading, so a chunk the workspace has is not
    /// sent again. The caller checks membership and bounds the list.
    pub async fn locate_chunks(
        &self,
        ws: WorkspaceId,
        ids: &[ChunkId],
    ) -> Result<Vec<Option<ChunkRef>>, StoreError> {
        let mut conn = self.pool.acquire().await.ctx("acquiring a connection")?;
        let found = stored_chunks(&mut conn, ws, ids, true).await?;
        Ok(ids.iter().map(|id| found.get(id).copied()).collect())
    }

    /// For each of `ids`, in order: where a reader takes it from as the
    /// base of a delta (`PackSpan::base`), if the workspace uses it and
    /// stores it whole, else `None`. Unlike
    /// [`MetaStore::locate_chunks_for`], any member gets the index's
    /// location whoever uploaded it: a reader checks a base against its
    /// id before applying a delta to it, so a planted location makes a
    /// read fail, never a wrong file, and the change feed gives members
    /// these locations anyway. The caller checks membership and bounds the
    /// list.
    pub async fn locate_bases(
        &self,
        ws: WorkspaceId,
        ids: &[ChunkId],
    ) -> Result<Vec<Option<ChunkRef>>, StoreError> {
        let found = self.locate_chunks(ws, ids).await?;
        Ok(found
            .into_iter()
            .map(|c| c.filter(|c| c.span.is_none_or(|s| s.base.is_none())))
            .collect())
    }
}
