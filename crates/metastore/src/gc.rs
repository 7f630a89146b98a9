//! Garbage collection of a workspace's storage, the metadata half: history
//! retention, and deciding (marking) which objects nobody uses any more.
//! The service deletes the marked objects from the blob store and then
//! calls [`MetaStore::forget_objects`].
//!
//! Rules:
//! - **Retention.** A version that is not its item's latest is kept while
//!   it was replaced less than `retention` ago (its successor's server time
//!   is newer than the cutoff); after that its rows and its chunk
//!   references go. Every item's latest version row is kept for ever, so
//!   the change feed is whole and a recent delete can be restored (the
//!   content before a delete is kept for `retention` after the delete).
//! - **Referenced.** An object is in use while the chunk index places a
//!   chunk some version uses in it (`chunk_refs.refs > 0`), or a version
//!   reads a chunk from it (its own location, `version_chunks.pack_id`).
//! - **Grace.** An object recorded less than `grace` ago is never marked, so
//!   chunks uploaded but not committed yet survive.
//! - **Mark, then delete.** Marking happens in a transaction that locks
//!   the workspace row like every commit does, and commits refuse objects
//!   that are marked, so a commit naming an object and a collection of it
//!   cannot both succeed: whichever takes the lock second sees the other.
//!   Uploads of a marked name are refused until its row is forgotten.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::AnyConnection;
use stacksync_proto::{ChunkId, Error, ItemId, WorkspaceId};

use crate::MetaStore;
use crate::chunk_index::drop_unused_entries;
use crate::commit::ROWS;
use crate::error::{DbContext, StoreError};
use crate::objects::{OBJECT_COLS, charge_owner, ledger_rows, object_from_row};
use crate::rows::{dynamic, get, parse_id, to_u64};

use crate::objects::StoredObject;

/// What one collection of a workspace found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPlan {
    /// Versions dropped from history by the retention rule.
    pub pruned_versions: u64,
    /// Objects to delete (marked, unless a dry run): unreferenced and
    /// older than the grace period, or marked by an earlier collection
    /// that did not finish.
    pub objects: Vec<StoredObject>,
}

/// Unreferenced ledger rows older than the cutoff, not marked yet.
const UNREFERENCED: &str = "FROM objects o WHERE o.workspace_id = $1 AND o.marked_at IS NULL \
     AND o.created_at <= $2 \
     AND NOT EXISTS (SELECT 1 FROM chunk_refs cr WHERE cr.workspace_id = o.workspace_id \
         AND cr.pack_id = o.object_id AND cr.refs > 0) \
     AND NOT EXISTS (SELECT 1 FROM chunk_refs cr WHERE cr.workspace_id = o.workspace_id \
         AND cr.chunk_id = o.object_id AND cr.pack_id IS NULL AND cr.refs > 0) \
     AND NOT EXISTS (SELECT 1 FROM version_chunks vc JOIN item_versions iv \
         ON iv.item_id = vc.item_id AND iv.version = vc.version \
         WHERE vc.pack_id = o.object_id AND iv.workspace_id = o.workspace_id)";

impl MetaStore {
    /// Every workspace with its container, for a collection of them all.
    pub async fn workspace_containers(&self) -> Result<Vec<(WorkspaceId, String)>, StoreError> {
        let rows = sqlx::query("SELECT id, container FROM workspaces ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .ctx("listing workspaces")?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse_id("workspaces", &get::<String>(r, "id")?)?,
                    get::<String>(r, "container")?,
                ))
            })
            .collect()
    }

    /// Applies the retention rule to `ws` (versions replaced before
    /// `retention_cutoff`, milliseconds since the epoch) and marks every
    /// object recorded at or before `grace_cutoff` that nothing references; see
    /// the module docs. A `dry_run` computes the same plan and changes
    /// nothing. The plan also lists objects an earlier, interrupted
    /// collection marked.
    pub async fn mark_garbage(
        &self,
        ws: WorkspaceId,
        grace_cutoff: i64,
        retention_cutoff: i64,
        dry_run: bool,
    ) -> Result<GcPlan, StoreError> {
        let mut tx = self.pool.begin().await.ctx("beginning a collection")?;
        // The same lock a commit takes first: commits and marking serialize.
        let locked =
            sqlx::query("UPDATE workspaces SET latest_revision = latest_revision WHERE id = $1")
                .bind(ws.to_string())
                .execute(&mut *tx)
                .await
                .ctx("locking the workspace")?;
        if locked.rows_affected() == 0 {
            return Err(Error::not_found(format!("no workspace {ws}")).into());
        }
        let pruned_versions = prune_history(&mut tx, ws, retention_cutoff).await?;
        let rows = sqlx::query(dynamic(format!(
            "SELECT {OBJECT_COLS} {UNREFERENCED} ORDER BY o.object_id"
        )))
        .bind(ws.to_string())
        .bind(grace_cutoff)
        .fetch_all(&mut *tx)
        .await
        .ctx("finding unreferenced objects")?;
        let mut objects = rows
            .iter()
            .map(object_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let earlier = sqlx::query(dynamic(format!(
            "SELECT {OBJECT_COLS} FROM objects WHERE workspace_id = $1 AND marked_at IS NOT NULL"
        )))
        .bind(ws.to_string())
        .fetch_all(&mut *tx)
        .await
        .ctx("reading marked objects")?;
        for row in &earlier {
            objects.push(object_from_row(row)?);
        }
        if dry_run {
            tx.rollback().await.ctx("ending a dry run")?;
        } else {
            sqlx::query(dynamic(format!(
                "UPDATE objects SET marked_at = $3 WHERE workspace_id = $1 AND object_id IN \
                 (SELECT o.object_id {UNREFERENCED})"
            )))
            .bind(ws.to_string())
            .bind(grace_cutoff)
            .bind(crate::now_ms())
            .execute(&mut *tx)
            .await
            .ctx("marking unreferenced objects")?;
            for o in &mut objects {
                o.marked = true;
            }
            tx.commit().await.ctx("committing a collection's marks")?;
        }
        Ok(GcPlan {
            pruned_versions,
            objects,
        })
    }

    /// Drops the ledger rows of `ids` in `ws` that are marked (their objects
    /// are gone from the blob store) and refunds their bytes to the owner.
    /// Returns the bytes freed. Unmarked rows are left alone.
    pub async fn forget_objects(
        &self,
        ws: WorkspaceId,
        ids: &[ChunkId],
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.ctx("beginning to forget objects")?;
        let marked: Vec<StoredObject> = ledger_rows(&mut tx, ws, ids.iter().copied())
            .await?
            .into_values()
            .filter(|o| o.marked)
            .collect();
        let mut freed = 0u64;
        for group in marked.chunks(ROWS) {
            let marks: Vec<String> = (0..group.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "DELETE FROM objects WHERE workspace_id = $1 AND marked_at IS NOT NULL \
                 AND object_id IN ({})",
                marks.join(", ")
            );
            let mut q = sqlx::query(dynamic(sql)).bind(ws.to_string());
            for o in group {
                q = q.bind(o.id.to_hex());
            }
            q.execute(&mut *tx).await.ctx("forgetting objects")?;
            freed += group.iter().map(|o| o.size).sum::<u64>();
        }
        let refund = i64::try_from(freed).unwrap_or(i64::MAX);
        if refund > 0 {
            charge_owner(&mut tx, ws, -refund, false).await?;
        }
        tx.commit().await.ctx("committing forgotten objects")?;
        Ok(freed)
    }
}

/// Deletes the versions of `ws` whose successor was committed before
/// `cutoff`, with their chunk lists and chunk references; index entries
/// no version uses any more go too (their location must not be handed
/// out again once the object may be collected). Returns how many.
async fn prune_history(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    cutoff: i64,
) -> Result<u64, StoreError> {
    let rows = sqlx::query(
        "SELECT iv.item_id, iv.version FROM item_versions iv JOIN item_versions nx \
         ON nx.item_id = iv.item_id AND nx.version = iv.version + 1 \
         WHERE iv.workspace_id = $1 AND nx.server_modified <= $2",
    )
    .bind(ws.to_string())
    .bind(cutoff)
    .fetch_all(&mut *conn)
    .await
    .ctx("finding expired versions")?;
    let mut expired = Vec::with_capacity(rows.len());
    for r in &rows {
        let item: ItemId = parse_id("item_versions", &get::<String>(r, "item_id")?)?;
        expired.push((item, to_u64("item_versions", get(r, "version")?)?));
    }
    // One reference per version that uses a chunk (as commits count them).
    let mut uses: BTreeMap<String, i64> = BTreeMap::new();
    for (item, version) in &expired {
        let chunks = sqlx::query(
            "SELECT DISTINCT chunk_id FROM version_chunks WHERE item_id = $1 AND version = $2",
        )
        .bind(item.to_string())
        .bind(*version as i64)
        .fetch_all(&mut *conn)
        .await
        .ctx("reading an expired version's chunks")?;
        let distinct: BTreeSet<String> = chunks
            .iter()
            .map(|r| get::<String>(r, "chunk_id"))
            .collect::<Result<_, _>>()?;
        for c in distinct {
            *uses.entry(c).or_insert(0) += 1;
        }
        for table in ["version_chunks", "item_versions"] {
            sqlx::query(dynamic(format!(
                "DELETE FROM {table} WHERE item_id = $1 AND version = $2"
            )))
            .bind(item.to_string())
            .bind(*version as i64)
            .execute(&mut *conn)
            .await
            .ctx("deleting an expired version")?;
        }
    }
    for (chunk, n) in &uses {
        sqlx::query(
            "UPDATE chunk_refs SET refs = refs - $1 WHERE workspace_id = $2 AND chunk_id = $3",
        )
        .bind(*n)
        .bind(ws.to_string())
        .bind(chunk)
        .execute(&mut *conn)
        .await
        .ctx("releasing chunk references")?;
    }
    drop_unused_entries(conn, ws).await?;
    Ok(expired.len() as u64)
}
