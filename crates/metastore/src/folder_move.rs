//! Turning a folder of one workspace into a workspace of its own, as sharing
//! does (reference section 6): the folder's subtree moves, with its history
//! and chunk references, and the folder itself gets a DELETED version in the
//! source workspace so that the owner's other devices see it leave the
//! private tree (the shared workspace is mounted in its place).
//!
//! Item ids are global, so moved items keep their ids; each gets a fresh
//! revision in the target workspace so the target's change feed lists it.
//! The folder's direct children become top-level items of the target, in
//! their whole history (the folder does not exist there). Rows move as
//! they are, so every version keeps its sealed record (migration 0011);
//! the folder's own versions that a move writes are the server's and
//! carry none (a record is sealed by the client that wrote the version).
//! Which moves may happen between workspaces of different encryption
//! settings is the service's rule.

use std::collections::BTreeMap;

use sqlx::AnyConnection;
use stacksync_proto::{
    ChunkId, ChunkRef, DeviceId, Error, ItemId, ItemMeta, ItemName, ItemStatus, WorkspaceId,
};

use crate::chunk_index::{drop_unused_entries, stored_chunks};
use crate::commit::{free_name, write_version};
use crate::error::{DbContext, StoreError};
use crate::feed::{attach_chunks, load_item};
use crate::packed_item::chunk_list_from_tables;
use crate::rows::{get, to_u64};
use crate::sharing::InviteeState;
use crate::{MetaStore, now_ms};

/// Most ids bound in one `IN (...)` list.
const GROUP: usize = 400;

/// What [`MetaStore::move_folder_to_workspace`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderMove {
    /// The folder's DELETED version in the source workspace; `None` when an
    /// earlier call already moved the folder (the call is idempotent).
    pub folder: Option<ItemMeta>,
    /// Every moved item's latest state in the target workspace, parents
    /// before children.
    pub moved: Vec<ItemMeta>,
    /// The source workspace's revision afterwards.
    pub source_revision: u64,
    /// The target workspace's revision afterwards.
    pub target_revision: u64,
}

/// Where a workspace moving back into its owner's workspace goes: the
/// `folder` it was shared from, revived under `parent` as `name`.
#[derive(Debug, Clone, Copy)]
pub struct FolderBack<'a> {
    /// The folder that was shared (deleted in the owner's workspace since).
    pub folder: ItemId,
    /// Where the owner had it mounted.
    pub parent: Option<ItemId>,
    /// Its name there.
    pub name: &'a ItemName,
}

/// Ids of every item under `folder` in `ws` (deleted ones too: their
/// history moves with them), parents before children.
async fn subtree(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    folder: ItemId,
) -> Result<Vec<ItemId>, StoreError> {
    under(conn, ws, folder.to_string()).await
}

/// Every item of `ws` (deleted ones too), parents before children.
async fn whole(conn: &mut AnyConnection, ws: WorkspaceId) -> Result<Vec<ItemId>, StoreError> {
    // Top-level items have the empty parent.
    under(conn, ws, String::new()).await
}

/// Ids of every item of `ws` below the parent id `top`, parents first.
async fn under(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    top: String,
) -> Result<Vec<ItemId>, StoreError> {
    let folder = top.clone();
    let mut out = Vec::new();
    let mut frontier: Vec<String> = vec![top];
    // Bounded by the store's nesting limit: a cycle cannot exist (commit
    // refuses it), but a bound keeps a corrupt database from looping.
    for _ in 0..crate::commit::MAX_DEPTH {
        if frontier.is_empty() {
            return Ok(out);
        }
        let mut next = Vec::new();
        for group in frontier.chunks(GROUP) {
            let marks: Vec<String> = (0..group.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT id FROM items WHERE workspace_id = $1 AND parent_id IN ({}) ORDER BY revision",
                marks.join(", ")
            );
            let mut q = sqlx::query(crate::rows::dynamic(sql)).bind(ws.to_string());
            for id in group {
                q = q.bind(id.clone());
            }
            for row in q.fetch_all(&mut *conn).await.ctx("listing a subtree")? {
                next.push(crate::rows::parse_id("items", &get::<String>(&row, "id")?)?);
            }
        }
        out.extend_from_slice(&next);
        frontier = next.iter().map(ItemId::to_string).collect();
    }
    Err(crate::rows::corrupt(
        "items",
        format!("folder {folder} is nested deeper than the store allows"),
    ))
}

/// How many versions of `items` use each chunk: one use per version,
/// however often the chunk repeats in it, as commits and collection count
/// references. (Counting rows took a repeated chunk's extra rows off the
/// source's count: its index entry could go while other versions there
/// still used it, and with it their location.)
async fn chunk_uses(
    conn: &mut AnyConnection,
    items: &[ItemId],
) -> Result<BTreeMap<(String, i64), i64>, StoreError> {
    let mut uses = BTreeMap::new();
    for group in items.chunks(GROUP) {
        let marks: Vec<String> = (0..group.len()).map(|i| format!("${}", i + 1)).collect();
        let sql = format!(
            "SELECT chunk_id, size, COUNT(*) AS n FROM (SELECT DISTINCT item_id, version, chunk_id, size \
             FROM version_chunks WHERE item_id IN ({})) uses GROUP BY chunk_id, size",
            marks.join(", ")
        );
        let mut q = sqlx::query(crate::rows::dynamic(sql));
        for id in group {
            q = q.bind(id.to_string());
        }
        for row in q.fetch_all(&mut *conn).await.ctx("counting chunk uses")? {
            let key = (get::<String>(&row, "chunk_id")?, get::<i64>(&row, "size")?);
            *uses.entry(key).or_insert(0) += get::<i64>(&row, "n")?;
        }
    }
    Ok(uses)
}

/// Packs the stored chunk list of each of `items` again from the chunk
/// tables, for when the locations its chunks are read from changed.
async fn refresh_chunk_lists(conn: &mut AnyConnection, items: &[ItemId]) -> Result<(), StoreError> {
    for group in items.chunks(GROUP) {
        let marks: Vec<String> = (0..group.len()).map(|i| format!("${}", i + 1)).collect();
        let sql = format!(
            "UPDATE items SET chunk_list = CASE WHEN is_folder = 0 AND size > 0 THEN {} END \
             WHERE id IN ({})",
            chunk_list_from_tables(),
            marks.join(", ")
        );
        let mut q = sqlx::query(crate::rows::dynamic(sql));
        for id in group {
            q = q.bind(id.to_string());
        }
        q.execute(&mut *conn)
            .await
            .ctx("packing moved items' chunk lists")?;
    }
    Ok(())
}

/// Moves `items` of `from` into `to` with their whole history, each with
/// the next revision of `to` (starting after `to_rev`, which is returned
/// advanced); an item whose parent is `old_top` gets `new_top` as its
/// parent in every version. Chunk references move with them: the target
/// indexes the moved chunks without a location (the service copies each
/// into the target's container as an object of its own; a chunk the target
/// indexed already keeps its entry), and the moved items' stored chunk
/// lists are packed again from the target's index.
async fn move_items(
    tx: &mut AnyConnection,
    items: &[ItemId],
    from: WorkspaceId,
    to: WorkspaceId,
    mut to_rev: u64,
    old_top: &str,
    new_top: &str,
) -> Result<u64, StoreError> {
    for id in items {
        to_rev += 1;
        let top = sqlx::query("SELECT parent_id FROM items WHERE id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await
            .ctx("reading a parent")?;
        let direct = get::<String>(&top, "parent_id")? == old_top;
        let parent_sql = if direct { "$4" } else { "parent_id" };
        let mut q = sqlx::query(crate::rows::dynamic(format!(
            "UPDATE items SET workspace_id = $1, revision = $2, parent_id = {parent_sql} WHERE id = $3"
        )))
        .bind(to.to_string())
        .bind(to_rev as i64)
        .bind(id.to_string());
        if direct {
            q = q.bind(new_top);
        }
        q.execute(&mut *tx).await.ctx("moving an item")?;
        let parent_sql = if direct { "$3" } else { "parent_id" };
        let mut q = sqlx::query(crate::rows::dynamic(format!(
            "UPDATE item_versions SET workspace_id = $1, parent_id = {parent_sql} WHERE item_id = $2"
        )))
        .bind(to.to_string())
        .bind(id.to_string());
        if direct {
            q = q.bind(new_top);
        }
        q.execute(&mut *tx).await.ctx("moving an item's history")?;
        // Own locations name packs of the old container.
        sqlx::query(
            "UPDATE version_chunks SET pack_id = NULL, pack_offset = NULL, pack_len = NULL, pack_base = NULL \
             WHERE item_id = $1",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .ctx("moving an item's chunk locations")?;
    }
    for ((chunk, size), n) in chunk_uses(&mut *tx, items).await? {
        sqlx::query(
            "INSERT INTO chunk_refs (workspace_id, chunk_id, size, refs) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (workspace_id, chunk_id) DO UPDATE SET refs = chunk_refs.refs + excluded.refs",
        )
        .bind(to.to_string())
        .bind(&chunk)
        .bind(size)
        .bind(n)
        .execute(&mut *tx)
        .await
        .ctx("moving chunk references")?;
        sqlx::query(
            "UPDATE chunk_refs SET refs = refs - $1 WHERE workspace_id = $2 AND chunk_id = $3",
        )
        .bind(n)
        .bind(from.to_string())
        .bind(&chunk)
        .execute(&mut *tx)
        .await
        .ctx("moving chunk references")?;
    }
    drop_unused_entries(&mut *tx, from).await?;
    refresh_chunk_lists(&mut *tx, items).await?;
    Ok(to_rev)
}

/// The newest revision any of `items` was changed at (0 for none).
async fn newest_revision(conn: &mut AnyConnection, items: &[ItemId]) -> Result<u64, StoreError> {
    let mut newest = 0u64;
    for group in items.chunks(GROUP) {
        let marks: Vec<String> = (0..group.len()).map(|i| format!("${}", i + 1)).collect();
        let sql = format!(
            "SELECT MAX(revision) AS r FROM items WHERE id IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(crate::rows::dynamic(sql));
        for id in group {
            q = q.bind(id.to_string());
        }
        let row = q.fetch_one(&mut *conn).await.ctx("reading revisions")?;
        let r: Option<i64> = get(&row, "r")?;
        newest = newest.max(r.and_then(|r| u64::try_from(r).ok()).unwrap_or(0));
    }
    Ok(newest)
}

async fn lock_revision(conn: &mut AnyConnection, ws: WorkspaceId) -> Result<u64, StoreError> {
    let locked =
        sqlx::query("UPDATE workspaces SET latest_revision = latest_revision WHERE id = $1")
            .bind(ws.to_string())
            .execute(&mut *conn)
            .await
            .ctx("locking a workspace")?;
    if locked.rows_affected() == 0 {
        return Err(Error::not_found(format!("no workspace {ws}")).into());
    }
    let row = sqlx::query("SELECT latest_revision FROM workspaces WHERE id = $1")
        .bind(ws.to_string())
        .fetch_one(&mut *conn)
        .await
        .ctx("reading a workspace revision")?;
    to_u64("workspaces", get(&row, "latest_revision")?)
}

async fn set_revision(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    revision: u64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE workspaces SET latest_revision = $1 WHERE id = $2")
        .bind(revision as i64)
        .bind(ws.to_string())
        .execute(&mut *conn)
        .await
        .ctx("advancing a workspace revision")?;
    Ok(())
}

impl MetaStore {
    /// Whether anything, live or deleted, is under `folder` in `ws`: what
    /// would move with it to another workspace (a deleted item moves too,
    /// with its history).
    pub async fn folder_has_items(
        &self,
        ws: WorkspaceId,
        folder: ItemId,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM items WHERE workspace_id = $1 AND parent_id = $2 LIMIT 1",
        )
        .bind(ws.to_string())
        .bind(folder.to_string())
        .fetch_optional(&self.pool)
        .await
        .ctx("looking into a folder")?;
        Ok(row.is_some())
    }

    /// Every chunk referenced by any version of any item under `folder` in
    /// `ws`, with where `ws` stores it, by id: what must be copied to the
    /// container of a workspace the folder moves to. (The target indexes
    /// each as an object of its own, so a copy never carries the pack it
    /// sits in: a pack also holds chunks of files that stay private.)
    pub async fn subtree_chunks(
        &self,
        ws: WorkspaceId,
        folder: Option<ItemId>,
    ) -> Result<Vec<ChunkRef>, StoreError> {
        let mut conn = self.pool.acquire().await.ctx("acquiring a connection")?;
        let items = match folder {
            Some(folder) => subtree(&mut conn, ws, folder).await?,
            None => whole(&mut conn, ws).await?,
        };
        let used = chunk_uses(&mut conn, &items)
            .await?
            .into_keys()
            .map(|(id, size)| {
                let id = ChunkId::from_hex(&id)
                    .map_err(|_| crate::rows::corrupt("version_chunks", id))?;
                let size = u32::try_from(size)
                    .map_err(|_| crate::rows::corrupt("version_chunks", format!("size {size}")))?;
                Ok(ChunkRef::whole(id, size))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let ids: Vec<ChunkId> = used.iter().map(|c| c.id).collect();
        let index = stored_chunks(&mut conn, ws, &ids, false).await?;
        // A chunk the index lacks (it should not happen) is looked for
        // where chunks were always stored: as an object named by its id.
        Ok(used
            .into_iter()
            .map(|c| index.get(&c.id).copied().unwrap_or(c))
            .collect())
    }

    /// Moves everything under `folder` (a folder of `from`) into the empty
    /// or partly filled workspace `to`, and deletes the folder in `from`
    /// with a version attributed to `device` (the nil device when the
    /// server does it on its own). One transaction; idempotent: a repeat
    /// finds nothing left to move and reports `folder: None`.
    pub async fn move_folder_to_workspace(
        &self,
        from: WorkspaceId,
        folder: ItemId,
        to: WorkspaceId,
        device: DeviceId,
    ) -> Result<FolderMove, StoreError> {
        let moved = self
            .move_folder_inner(from, folder, to, device, None)
            .await?;
        Ok(moved.expect("a move without a condition always happens"))
    }

    /// [`MetaStore::move_folder_to_workspace`] only if nothing under
    /// `folder` (nor the folder) changed after revision `since` of `from`;
    /// `None`, and nothing moved, otherwise. The service copies a folder's
    /// chunks into the target's container before the move, as of a
    /// revision it read first: a version committed in between would move
    /// with chunks the copy never saw (and whose locations in `from`'s
    /// packs the move forgets), so it copies again and retries instead.
    pub async fn move_folder_to_workspace_if_unchanged(
        &self,
        from: WorkspaceId,
        folder: ItemId,
        to: WorkspaceId,
        device: DeviceId,
        since: u64,
    ) -> Result<Option<FolderMove>, StoreError> {
        self.move_folder_inner(from, folder, to, device, Some(since))
            .await
    }

    async fn move_folder_inner(
        &self,
        from: WorkspaceId,
        folder: ItemId,
        to: WorkspaceId,
        device: DeviceId,
        unchanged_since: Option<u64>,
    ) -> Result<Option<FolderMove>, StoreError> {
        if from == to {
            return Err(Error::bad_request("a folder cannot move into its own workspace").into());
        }
        let mut tx = self.pool.begin().await.ctx("beginning a folder move")?;
        // Lock in id order so that two moves between the same workspaces
        // cannot deadlock.
        let (first, second) = if from < to { (from, to) } else { (to, from) };
        let r1 = lock_revision(&mut tx, first).await?;
        let r2 = lock_revision(&mut tx, second).await?;
        let (mut from_rev, mut to_rev) = if first == from { (r1, r2) } else { (r2, r1) };
        let current = match load_item(&mut tx, folder).await? {
            Some(m) if m.workspace == from && m.is_folder => m,
            _ => {
                return Err(
                    Error::not_found(format!("no folder {folder} in workspace {from}")).into(),
                );
            }
        };
        let items = subtree(&mut tx, from, folder).await?;
        if let Some(since) = unchanged_since
            && (current.revision > since || newest_revision(&mut tx, &items).await? > since)
        {
            // Dropping the transaction rolls it back: nothing moved.
            return Ok(None);
        }
        to_rev = move_items(&mut tx, &items, from, to, to_rev, &folder.to_string(), "").await?;
        let deleted = if current.status.is_live() {
            from_rev += 1;
            let meta = ItemMeta {
                status: ItemStatus::Deleted,
                version: current.version + 1,
                revision: from_rev,
                server_modified: now_ms(),
                device,
                record: None,
                ..current
            };
            write_version(&mut tx, &meta, true).await?;
            Some(meta)
        } else {
            None
        };
        let revisions = [(from, from_rev), (to, to_rev)];
        self.finish_move(tx, revisions, &items, deleted)
            .await
            .map(Some)
    }

    /// The reverse of [`MetaStore::move_folder_to_workspace`], for a shared
    /// folder whose last member left: `folder` (the folder of `to` that was
    /// shared, deleted there since) lives again under `parent` as `name`,
    /// everything in the shared workspace `from` moves back under it with
    /// its history, and `from` loses its members (the owner's included),
    /// so it is no one's workspace any more; invitations to it are used up.
    /// `folder` in the result is the folder's new version in `to`.
    pub async fn move_workspace_into_folder(
        &self,
        from: WorkspaceId,
        to: WorkspaceId,
        folder: ItemId,
        parent: Option<ItemId>,
        name: &ItemName,
        device: DeviceId,
    ) -> Result<FolderMove, StoreError> {
        let back = FolderBack {
            folder,
            parent,
            name,
        };
        let moved = self
            .move_workspace_inner(from, to, back, device, None)
            .await?;
        Ok(moved.expect("a move without a condition always happens"))
    }

    /// [`MetaStore::move_workspace_into_folder`] only if `from` has not
    /// changed after its revision `since` (see
    /// [`MetaStore::move_folder_to_workspace_if_unchanged`]); `None`, and
    /// nothing moved, otherwise.
    pub async fn move_workspace_into_folder_if_unchanged(
        &self,
        from: WorkspaceId,
        to: WorkspaceId,
        back: FolderBack<'_>,
        device: DeviceId,
        since: u64,
    ) -> Result<Option<FolderMove>, StoreError> {
        self.move_workspace_inner(from, to, back, device, Some(since))
            .await
    }

    async fn move_workspace_inner(
        &self,
        from: WorkspaceId,
        to: WorkspaceId,
        back: FolderBack<'_>,
        device: DeviceId,
        unchanged_since: Option<u64>,
    ) -> Result<Option<FolderMove>, StoreError> {
        let FolderBack {
            folder,
            parent,
            name,
        } = back;
        if from == to {
            return Err(Error::bad_request("a workspace cannot move into itself").into());
        }
        let mut tx = self.pool.begin().await.ctx("beginning a folder move")?;
        let (first, second) = if from < to { (from, to) } else { (to, from) };
        let r1 = lock_revision(&mut tx, first).await?;
        let r2 = lock_revision(&mut tx, second).await?;
        let (from_rev, mut to_rev) = if first == from { (r1, r2) } else { (r2, r1) };
        if unchanged_since.is_some_and(|since| from_rev > since) {
            return Ok(None);
        }
        let current = match load_item(&mut tx, folder).await? {
            Some(m) if m.workspace == to && m.is_folder => m,
            _ => {
                return Err(
                    Error::not_found(format!("no folder {folder} in workspace {to}")).into(),
                );
            }
        };
        // The folder first, so that its items never arrive before it.
        let revived = if current.status.is_live() {
            None
        } else {
            // Its old place may be gone: the top then.
            let parent = match parent {
                Some(p) => match load_item(&mut tx, p).await? {
                    Some(m) if m.workspace == to && m.is_folder && m.status.is_live() => Some(p),
                    _ => None,
                },
                None => None,
            };
            // Its name there may have been taken meanwhile: the next free one.
            let name = free_name(&mut tx, to, parent, name, folder).await?;
            to_rev += 1;
            let meta = ItemMeta {
                parent,
                name,
                status: ItemStatus::Changed,
                version: current.version + 1,
                revision: to_rev,
                server_modified: now_ms(),
                device,
                record: None,
                ..current
            };
            write_version(&mut tx, &meta, true).await?;
            Some(meta)
        };
        let items = whole(&mut tx, from).await?;
        to_rev = move_items(&mut tx, &items, from, to, to_rev, "", &folder.to_string()).await?;
        sqlx::query("DELETE FROM workspace_members WHERE workspace_id = $1")
            .bind(from.to_string())
            .execute(&mut *tx)
            .await
            .ctx("dissolving a shared workspace")?;
        sqlx::query(
            "UPDATE share_invitees SET state = $1 WHERE state IN ($2, $3) \
             AND proposal_id IN (SELECT id FROM share_proposals WHERE shared_workspace_id = $4)",
        )
        .bind(InviteeState::Removed.as_str())
        .bind(InviteeState::Pending.as_str())
        .bind(InviteeState::Accepted.as_str())
        .bind(from.to_string())
        .execute(&mut *tx)
        .await
        .ctx("closing a dissolved workspace's invitations")?;
        let revisions = [(from, from_rev), (to, to_rev)];
        self.finish_move(tx, revisions, &items, revived)
            .await
            .map(Some)
    }

    /// Ends a move between workspaces: records both workspaces' new
    /// revisions, commits, and reads the moved items as they are now.
    async fn finish_move(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Any>,
        [(from, from_rev), (to, to_rev)]: [(WorkspaceId, u64); 2],
        items: &[ItemId],
        folder: Option<ItemMeta>,
    ) -> Result<FolderMove, StoreError> {
        set_revision(&mut tx, from, from_rev).await?;
        set_revision(&mut tx, to, to_rev).await?;
        tx.commit().await.ctx("committing a folder move")?;
        let mut conn = self.pool.acquire().await.ctx("acquiring a connection")?;
        let mut moved = Vec::with_capacity(items.len());
        for id in items {
            if let Some(m) = load_item(&mut conn, *id).await? {
                moved.push(attach_chunks(&mut conn, m).await?);
            }
        }
        Ok(FolderMove {
            folder,
            moved,
            source_revision: from_rev,
            target_revision: to_rev,
        })
    }
}
