//! Commit rules (reference section 4), applied per batch in one transaction.
//!
//! For each proposed version `v` of an item, in request order:
//! - a new item must start at `v == 1`;
//! - `v == latest + 1` is accepted and becomes a new version row;
//! - `v <= latest` whose stored version is identical is an idempotent
//!   re-commit (a retried batch) and reports the stored version;
//! - anything else is a conflict carrying the server's current metadata.
//!
//! Accepted versions get consecutive workspace revisions (one per version,
//! so the change feed can page at any point). The whole batch, quota and
//! revision included, becomes durable together or not at all.

use std::collections::BTreeSet;

use sqlx::AnyConnection;
use stacksync_proto::{
    ChunkRef, CommitOutcome, CommitRequest, CommitResult, DeviceId, Error, ErrorKind,
    ItemCommitResult, ItemId, ItemMeta, ItemStatus, ProposedItem, UserId, WorkspaceId,
};

use crate::error::{DbContext, StoreError};
use crate::feed::{attach_chunks, load_item, load_version};
use crate::rows::dynamic;
use crate::rows::{flag, get, parent_to_db, parse_id, to_u64};
use crate::{MetaStore, now_ms};

/// Deepest folder nesting the store accepts; also bounds the cycle check.
pub const MAX_DEPTH: usize = 4096;

/// What a batch carries from one item to the next.
struct Batch {
    workspace: WorkspaceId,
    device: DeviceId,
    revision: u64,
    quota_limit: u64,
    quota_used: u64,
    now: i64,
}

impl MetaStore {
    /// Applies a batch of proposed versions; see the module docs for the rules.
    ///
    /// The caller (the sync service) has already checked that the device
    /// belongs to a member of the workspace.
    pub async fn commit(&self, req: &CommitRequest) -> Result<CommitResult, StoreError> {
        if req.items.len() > CommitRequest::MAX_ITEMS {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "a batch holds at most {} items, not {}",
                    CommitRequest::MAX_ITEMS,
                    req.items.len()
                ),
            )
            .into());
        }
        let ws = req.workspace.to_string();
        let mut tx = self.pool.begin().await.ctx("beginning a commit")?;
        // Write first: in PostgreSQL this locks the workspace row, so commits
        // to one workspace serialize; in SQLite it takes the write lock up
        // front instead of upgrading a read lock later (which can deadlock).
        let locked =
            sqlx::query("UPDATE workspaces SET latest_revision = latest_revision WHERE id = $1")
                .bind(&ws)
                .execute(&mut *tx)
                .await
                .ctx("locking the workspace")?;
        if locked.rows_affected() == 0 {
            return Err(Error::not_found(format!("no workspace {}", req.workspace)).into());
        }
        let row = sqlx::query(
            "SELECT w.latest_revision, w.owner_id, u.quota_limit, u.quota_used FROM workspaces w \
             JOIN users u ON u.id = w.owner_id WHERE w.id = $1",
        )
        .bind(&ws)
        .fetch_one(&mut *tx)
        .await
        .ctx("reading the workspace")?;
        let owner: UserId = parse_id("workspaces", &get::<String>(&row, "owner_id")?)?;
        let start = to_u64("workspaces", get(&row, "latest_revision")?)?;
        let mut batch = Batch {
            workspace: req.workspace,
            device: req.device,
            revision: start,
            quota_limit: to_u64("users", get(&row, "quota_limit")?)?,
            quota_used: to_u64("users", get(&row, "quota_used")?)?,
            now: now_ms(),
        };
        let quota_before = batch.quota_used;
        let mut results = Vec::with_capacity(req.items.len());
        for item in &req.items {
            let outcome = commit_one(&mut tx, &mut batch, item).await?;
            results.push(ItemCommitResult {
                id: item.id,
                version: item.version,
                outcome,
            });
        }
        if batch.revision != start {
            sqlx::query("UPDATE workspaces SET latest_revision = $1 WHERE id = $2")
                .bind(batch.revision as i64)
                .bind(&ws)
                .execute(&mut *tx)
                .await
                .ctx("advancing the workspace revision")?;
        }
        if batch.quota_used != quota_before {
            sqlx::query("UPDATE users SET quota_used = $1 WHERE id = $2")
                .bind(batch.quota_used as i64)
                .bind(owner.to_string())
                .execute(&mut *tx)
                .await
                .ctx("updating the quota")?;
        }
        tx.commit().await.ctx("committing a batch")?;
        Ok(CommitResult {
            workspace: req.workspace,
            device: req.device,
            results,
            revision: batch.revision,
        })
    }
}

fn refused(error: Error) -> Result<CommitOutcome, StoreError> {
    Ok(CommitOutcome::Refused { error })
}

async fn commit_one(
    conn: &mut AnyConnection,
    batch: &mut Batch,
    p: &ProposedItem,
) -> Result<CommitOutcome, StoreError> {
    if let Err(error) = p.check_shape() {
        return refused(error);
    }
    let current = load_item(conn, p.id).await?;
    if let Some(cur) = &current {
        if cur.workspace != batch.workspace {
            // Do not reveal anything about an item of another workspace.
            return refused(Error::forbidden(format!(
                "item {} is not in workspace {}",
                p.id, batch.workspace
            )));
        }
        if p.version <= cur.version {
            let stored = load_version(conn, p.id, p.version).await?;
            return Ok(match stored {
                Some(stored) if same_version(&stored, p, batch.device) => {
                    CommitOutcome::Committed { meta: stored }
                }
                _ => CommitOutcome::Conflict {
                    current: attach_chunks(conn, cur.clone()).await?,
                },
            });
        }
        if p.version > cur.version + 1 {
            return Ok(CommitOutcome::Conflict {
                current: attach_chunks(conn, cur.clone()).await?,
            });
        }
        if cur.is_folder != p.is_folder {
            return refused(Error::bad_request(format!(
                "item {} cannot change between file and folder",
                p.id
            )));
        }
    } else if p.version != 1 {
        return refused(Error::not_found(format!(
            "item {} does not exist on the server; a new item starts at version 1",
            p.id
        )));
    }

    let status = normalized_status(current.as_ref(), p);
    // A delete keeps the item where it was; only live versions place it.
    let (parent, name) = match (&current, status) {
        (Some(cur), ItemStatus::Deleted) => (cur.parent, cur.name.clone()),
        _ => (p.parent, p.name.clone()),
    };
    if status.is_live() {
        if let Some(error) = check_placement(conn, batch.workspace, p, parent).await? {
            return refused(error);
        }
    } else if p.is_folder && has_live_children(conn, batch.workspace, p.id).await? {
        return refused(Error::bad_request(format!(
            "folder {} is not empty; delete its contents first",
            p.id
        )));
    }
    if let Some(error) = check_chunk_sizes(conn, batch.workspace, &p.chunks).await? {
        return refused(error);
    }

    let old_size = current
        .as_ref()
        .filter(|c| c.status.is_live())
        .map_or(0, |c| c.size);
    let new_size = if status.is_live() { p.size } else { 0 };
    let used = batch
        .quota_used
        .saturating_sub(old_size)
        .saturating_add(new_size);
    if new_size > old_size && used > batch.quota_limit {
        return refused(Error::quota_exceeded(format!(
            "storing {} bytes for item {} would exceed the quota of {} bytes",
            new_size, p.id, batch.quota_limit
        )));
    }
    batch.quota_used = used;
    batch.revision += 1;

    let meta = ItemMeta {
        id: p.id,
        workspace: batch.workspace,
        parent,
        name,
        is_folder: p.is_folder,
        mimetype: p.mimetype.clone(),
        status,
        version: p.version,
        content_hash: if status.is_live() {
            p.content_hash
        } else {
            None
        },
        size: new_size,
        client_modified: p.client_modified,
        server_modified: batch.now,
        device: batch.device,
        revision: batch.revision,
        chunks: p.chunks.clone(),
    };
    write_version(conn, &meta, current.is_some()).await?;
    Ok(CommitOutcome::Committed { meta })
}

/// The server decides what a version did; the client's claim is not trusted.
fn normalized_status(current: Option<&ItemMeta>, p: &ProposedItem) -> ItemStatus {
    match current {
        None => ItemStatus::New,
        Some(_) if p.status == ItemStatus::Deleted => ItemStatus::Deleted,
        Some(cur) if cur.parent != p.parent => ItemStatus::Moved,
        Some(cur) if cur.name != p.name => ItemStatus::Renamed,
        Some(_) => ItemStatus::Changed,
    }
}

/// Whether `p` is a retry of the stored version: same device, same content,
/// same place. Fields the server normalizes (status, server time) are
/// compared by meaning, not by spelling.
fn same_version(stored: &ItemMeta, p: &ProposedItem, device: DeviceId) -> bool {
    if stored.device != device || stored.status.is_live() != p.status.is_live() {
        return false;
    }
    if !stored.status.is_live() {
        return true;
    }
    stored.parent == p.parent
        && stored.name == p.name
        && stored.is_folder == p.is_folder
        && stored.content_hash == p.content_hash
        && stored.size == p.size
        && stored.chunks == p.chunks
        && stored.mimetype == p.mimetype
        && stored.client_modified == p.client_modified
}

/// Checks the parent (a live folder of the same workspace, not inside the
/// item itself) and that the name is free among live siblings.
async fn check_placement(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    p: &ProposedItem,
    parent: Option<ItemId>,
) -> Result<Option<Error>, StoreError> {
    let mut cursor = parent;
    let mut depth = 0;
    while let Some(id) = cursor {
        depth += 1;
        if id == p.id {
            return Ok(Some(Error::bad_request(format!(
                "folder {} cannot move into itself",
                p.id
            ))));
        }
        if depth > MAX_DEPTH {
            return Ok(Some(Error::bad_request(format!(
                "folders nest deeper than {MAX_DEPTH}"
            ))));
        }
        let row = sqlx::query(
            "SELECT workspace_id, parent_id, is_folder, status FROM items WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .ctx("reading a parent")?;
        let Some(row) = row else {
            return Ok(Some(Error::not_found(format!(
                "parent folder {id} does not exist"
            ))));
        };
        let live = get::<String>(&row, "status")? != ItemStatus::Deleted.as_str();
        if get::<String>(&row, "workspace_id")? != ws.to_string()
            || !flag(&row, "is_folder")?
            || !live
        {
            return Ok(Some(Error::not_found(format!(
                "parent folder {id} does not exist"
            ))));
        }
        // Only a folder that moves can create a cycle; a file stops here.
        if !p.is_folder {
            break;
        }
        let up: String = get(&row, "parent_id")?;
        cursor = if up.is_empty() {
            None
        } else {
            Some(parse_id("items", &up)?)
        };
    }
    let clash = sqlx::query(dynamic(format!(
        "SELECT {} FROM items WHERE workspace_id = $1 AND parent_id = $2 AND name = $3 AND status <> 'DELETED' AND id <> $4",
        crate::rows::ITEM_COLS
    )))
    .bind(ws.to_string())
    .bind(parent_to_db(parent))
    .bind(p.name.as_str())
    .bind(p.id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .ctx("checking a name")?;
    if let Some(row) = clash {
        let other = crate::rows::item_from_row("items", &row)?;
        let mut error = Error::new(
            ErrorKind::Conflict,
            format!(
                "the name {:?} is taken in that folder by item {}",
                p.name.as_str(),
                other.id
            ),
        );
        error.current = Some(Box::new(other));
        return Ok(Some(error));
    }
    Ok(None)
}

async fn has_live_children(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    folder: ItemId,
) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT 1 AS one FROM items WHERE workspace_id = $1 AND parent_id = $2 AND status <> 'DELETED' LIMIT 1")
        .bind(ws.to_string())
        .bind(folder.to_string())
        .fetch_optional(&mut *conn)
        .await
        .ctx("checking a folder's children")?;
    Ok(row.is_some())
}

/// A chunk id names one content, so it has one size: a version that claims
/// another size for a known chunk is lying or broken.
async fn check_chunk_sizes(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    chunks: &[ChunkRef],
) -> Result<Option<Error>, StoreError> {
    let distinct: BTreeSet<_> = chunks.iter().map(|c| (c.id, c.size)).collect();
    let ids: BTreeSet<_> = distinct.iter().map(|(id, _)| *id).collect();
    if ids.len() != distinct.len() {
        return Ok(Some(Error::bad_request("one chunk id is given two sizes")));
    }
    for group in distinct.iter().collect::<Vec<_>>().chunks(500) {
        let marks: Vec<String> = (0..group.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT chunk_id, size FROM chunk_refs WHERE workspace_id = $1 AND chunk_id IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(dynamic(sql)).bind(ws.to_string());
        for (id, _) in group {
            q = q.bind(id.to_hex());
        }
        for row in q.fetch_all(&mut *conn).await.ctx("checking chunk sizes")? {
            let id: String = get(&row, "chunk_id")?;
            let size: i64 = get(&row, "size")?;
            if let Some((_, claimed)) = group.iter().find(|(c, _)| c.to_hex() == id)
                && i64::from(*claimed) != size
            {
                return Ok(Some(Error::bad_request(format!(
                    "chunk {id} has {size} bytes on the server, not {claimed}"
                ))));
            }
        }
    }
    Ok(None)
}

async fn write_version(
    conn: &mut AnyConnection,
    m: &ItemMeta,
    exists: bool,
) -> Result<(), StoreError> {
    let id = m.id.to_string();
    let parent = parent_to_db(m.parent);
    let hash = m.content_hash.map(|h| h.to_hex());
    let sql = if exists {
        "UPDATE items SET parent_id = $2, name = $3, mimetype = $4, status = $5, latest_version = $6, \
         revision = $7, content_hash = $8, size = $9, client_modified = $10, server_modified = $11, \
         device_id = $12, is_folder = $13, workspace_id = $14 WHERE id = $1"
    } else {
        "INSERT INTO items (id, parent_id, name, mimetype, status, latest_version, revision, content_hash, \
         size, client_modified, server_modified, device_id, is_folder, workspace_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    };
    sqlx::query(sql)
        .bind(&id)
        .bind(&parent)
        .bind(m.name.as_str())
        .bind(&m.mimetype)
        .bind(m.status.as_str())
        .bind(m.version as i64)
        .bind(m.revision as i64)
        .bind(&hash)
        .bind(m.size as i64)
        .bind(m.client_modified)
        .bind(m.server_modified)
        .bind(m.device.to_string())
        .bind(i64::from(m.is_folder))
        .bind(m.workspace.to_string())
        .execute(&mut *conn)
        .await
        .ctx("writing an item")?;
    sqlx::query(
        "INSERT INTO item_versions (item_id, version, workspace_id, parent_id, name, is_folder, mimetype, status, \
         revision, content_hash, size, client_modified, server_modified, device_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&id)
    .bind(m.version as i64)
    .bind(m.workspace.to_string())
    .bind(&parent)
    .bind(m.name.as_str())
    .bind(i64::from(m.is_folder))
    .bind(&m.mimetype)
    .bind(m.status.as_str())
    .bind(m.revision as i64)
    .bind(&hash)
    .bind(m.size as i64)
    .bind(m.client_modified)
    .bind(m.server_modified)
    .bind(m.device.to_string())
    .execute(&mut *conn)
    .await
    .ctx("writing a version")?;
    write_chunks(conn, m).await
}

/// Version chunk rows and reference counts, in multi-row statements (a
/// large file has thousands of chunks).
async fn write_chunks(conn: &mut AnyConnection, m: &ItemMeta) -> Result<(), StoreError> {
    const ROWS: usize = 400;
    let id = m.id.to_string();
    for (g, group) in m.chunks.chunks(ROWS).enumerate() {
        let marks: Vec<String> = (0..group.len())
            .map(|i| format!("($1, $2, ${}, ${}, ${})", 3 * i + 3, 3 * i + 4, 3 * i + 5))
            .collect();
        let sql = format!(
            "INSERT INTO version_chunks (item_id, version, seq, chunk_id, size) VALUES {}",
            marks.join(", ")
        );
        let mut q = sqlx::query(dynamic(sql)).bind(&id).bind(m.version as i64);
        for (i, c) in group.iter().enumerate() {
            q = q
                .bind((g * ROWS + i) as i64)
                .bind(c.id.to_hex())
                .bind(i64::from(c.size));
        }
        q.execute(&mut *conn).await.ctx("writing version chunks")?;
    }
    // One reference per version that uses a chunk, however often it repeats.
    let distinct: BTreeSet<_> = m.chunks.iter().map(|c| (c.id, c.size)).collect();
    let distinct: Vec<_> = distinct.into_iter().collect();
    for group in distinct.chunks(ROWS) {
        let marks: Vec<String> = (0..group.len())
            .map(|i| format!("($1, ${}, ${}, 1)", 2 * i + 2, 2 * i + 3))
            .collect();
        let sql = format!(
            "INSERT INTO chunk_refs (workspace_id, chunk_id, size, refs) VALUES {} \
             ON CONFLICT (workspace_id, chunk_id) DO UPDATE SET refs = chunk_refs.refs + 1",
            marks.join(", ")
        );
        let mut q = sqlx::query(dynamic(sql)).bind(m.workspace.to_string());
        for (cid, size) in group {
            q = q.bind(cid.to_hex()).bind(i64::from(*size));
        }
        q.execute(&mut *conn)
            .await
            .ctx("counting chunk references")?;
    }
    Ok(())
}
