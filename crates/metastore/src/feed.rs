//! Reading items back: the incremental change feed, single items, versions.

use std::collections::{BTreeSet, HashMap};

use sqlx::AnyConnection;
use stacksync_proto::{ChangesPage, Error, ItemId, ItemMeta, WorkspaceId};

use crate::MetaStore;
use crate::change_page::{explain_page, read_page};
use crate::commit::ROWS;
use crate::error::{DbContext, StoreError};
use crate::page_budget::PAGE_BYTES;
use crate::rows::dynamic;
use crate::rows::{ITEM_COLS, VERSION_COLS, chunk_from_row, get, item_from_row, lookup_db, to_u64};

/// Largest page of the change feed.
pub const MAX_PAGE: u32 = 1000;

/// The latest state of an item, without its chunk list.
pub(crate) async fn load_item(
    conn: &mut AnyConnection,
    id: ItemId,
) -> Result<Option<ItemMeta>, StoreError> {
    let row = sqlx::query(dynamic(format!(
        "SELECT {ITEM_COLS} FROM items WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .ctx("reading an item")?;
    row.map(|r| item_from_row("items", &r)).transpose()
}

/// One stored version with its chunks.
pub(crate) async fn load_version(
    conn: &mut AnyConnection,
    id: ItemId,
    version: u64,
) -> Result<Option<ItemMeta>, StoreError> {
    let row = sqlx::query(dynamic(format!(
        "SELECT {VERSION_COLS} FROM item_versions WHERE item_id = $1 AND version = $2"
    )))
    .bind(id.to_string())
    .bind(lookup_db(version))
    .fetch_optional(&mut *conn)
    .await
    .ctx("reading a version")?;
    match row {
        Some(r) => Ok(Some(
            attach_chunks(conn, item_from_row("item_versions", &r)?).await?,
        )),
        None => Ok(None),
    }
}

/// A version's chunks with their locations: `version_chunks` rows (aliased
/// `vc`) and the chunk index entry of the workspace that holds the version.
/// A version's own location (its committer's upload, see `claims.rs`) comes
/// before the index's; the three columns are taken from one side only.
const CHUNKS_WITH_LOCATION: &str = "vc.chunk_id, vc.size, \
     CASE WHEN vc.pack_id IS NULL THEN cr.pack_id ELSE vc.pack_id END AS pack_id, \
     CASE WHEN vc.pack_id IS NULL THEN cr.pack_offset ELSE vc.pack_offset END AS pack_offset, \
     CASE WHEN vc.pack_id IS NULL THEN cr.pack_len ELSE vc.pack_len END AS pack_len, \
     CASE WHEN vc.pack_id IS NULL THEN cr.pack_base ELSE vc.pack_base END AS pack_base";

/// Joins each `vc` row to its chunk index entry, by primary keys only, so
/// reading a page costs the same per chunk however large the workspace. A
/// chunk's location lives in the index (one per chunk and workspace), not
/// in the version: it is where the workspace stores the chunk now. LEFT:
/// a chunk the index somehow lacks is still listed, as an object of its own.
const LOCATION_JOIN: &str = "JOIN item_versions iv ON iv.item_id = vc.item_id AND iv.version = vc.version \
     LEFT JOIN chunk_refs cr ON cr.workspace_id = iv.workspace_id AND cr.chunk_id = vc.chunk_id";

/// Fills in the chunk list of `meta`'s version, with locations.
pub(crate) async fn attach_chunks(
    conn: &mut AnyConnection,
    mut meta: ItemMeta,
) -> Result<ItemMeta, StoreError> {
    if meta.is_folder || meta.size == 0 {
        return Ok(meta);
    }
    let rows = sqlx::query(dynamic(format!(
        "SELECT {CHUNKS_WITH_LOCATION} FROM version_chunks vc {LOCATION_JOIN} \
         WHERE vc.item_id = $1 AND vc.version = $2 ORDER BY vc.seq"
    )))
    .bind(meta.id.to_string())
    .bind(meta.version as i64)
    .fetch_all(&mut *conn)
    .await
    .ctx("reading chunks")?;
    meta.chunks = rows.iter().map(chunk_from_row).collect::<Result<_, _>>()?;
    Ok(meta)
}

/// Fills in the chunk lists of many versions, with locations, in one query
/// per [`ROWS`] versions. Version chunk rows never change once written, so
/// this needs no snapshot shared with the query that found the versions.
/// The change feed does not come here: a page reads its chunk lists in its
/// own statement (`change_page.rs`).
///
/// The versions are asked for as two plain lists, item ids and version
/// numbers; rows of a listed item at another listed version are dropped
/// here. SQLite answers the lists with probes of the primary key (a list
/// of (item, version) pairs made it scan all of `version_chunks`), and
/// PostgreSQL plans them as two `= ANY` conditions (the pairs were one
/// `OR` branch each, about 95 ms of planning for 400).
async fn attach_chunks_many(
    conn: &mut AnyConnection,
    items: &mut [ItemMeta],
) -> Result<(), StoreError> {
    let wanted: Vec<usize> = (0..items.len())
        .filter(|&i| !items[i].is_folder && items[i].size > 0)
        .collect();
    for group in wanted.chunks(ROWS) {
        let ids: BTreeSet<String> = group.iter().map(|&i| items[i].id.to_string()).collect();
        let versions: BTreeSet<i64> = group.iter().map(|&i| lookup_db(items[i].version)).collect();
        let id_marks: Vec<String> = (1..=ids.len()).map(|k| format!("${k}")).collect();
        let version_marks: Vec<String> = (1..=versions.len())
            .map(|k| format!("${}", ids.len() + k))
            .collect();
        let sql = format!(
            "SELECT vc.item_id, vc.version, {CHUNKS_WITH_LOCATION} FROM version_chunks vc {LOCATION_JOIN} \
             WHERE vc.item_id IN ({}) AND vc.version IN ({}) ORDER BY vc.item_id, vc.version, vc.seq",
            id_marks.join(", "),
            version_marks.join(", ")
        );
        let mut q = sqlx::query(dynamic(sql));
        for id in &ids {
            q = q.bind(id.clone());
        }
        for v in &versions {
            q = q.bind(*v);
        }
        let by_key: HashMap<(String, i64), usize> = group
            .iter()
            .map(|&i| ((items[i].id.to_string(), lookup_db(items[i].version)), i))
            .collect();
        for row in q.fetch_all(&mut *conn).await.ctx("reading chunks")? {
            let key = (
                get::<String>(&row, "item_id")?,
                get::<i64>(&row, "version")?,
            );
            if let Some(&i) = by_key.get(&key) {
                items[i].chunks.push(chunk_from_row(&row)?);
            }
        }
    }
    Ok(())
}

impl MetaStore {
    /// Items of `ws` changed after revision `since`, oldest change first, at
    /// most `limit` (clamped to 1..=1000) per page. `since = 0` lists the
    /// whole workspace. A cursor past the workspace's revision (a client
    /// restored from an old backup of the server, or a bug) is refused so
    /// the client starts over from 0 instead of silently missing changes.
    /// A page also ends early, with `has_more`, when its items would fill
    /// more than half a wire message (a page of files of many chunks).
    pub async fn get_changes(
        &self,
        ws: WorkspaceId,
        since: u64,
        limit: u32,
    ) -> Result<ChangesPage, StoreError> {
        self.changes_within(ws, since, limit, PAGE_BYTES).await
    }

    /// [`MetaStore::get_changes`] with pages of at most `budget` bytes by
    /// the estimate of `page_budget.rs`.
    pub(crate) async fn changes_within(
        &self,
        ws: WorkspaceId,
        since: u64,
        limit: u32,
        budget: usize,
    ) -> Result<ChangesPage, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut conn = self.pool.acquire().await.ctx("acquiring a connection")?;
        let latest = sqlx::query("SELECT latest_revision FROM workspaces WHERE id = $1")
            .bind(ws.to_string())
            .fetch_optional(&mut *conn)
            .await
            .ctx("reading a workspace revision")?
            .ok_or_else(|| Error::not_found(format!("no workspace {ws}")))?;
        let latest = to_u64("workspaces", get(&latest, "latest_revision")?)?;
        if since > latest {
            return Err(Error::bad_request(format!(
                "cursor {since} is ahead of workspace revision {latest}; list again from 0"
            ))
            .into());
        }
        let (items, has_more) = read_page(&mut conn, ws, since, latest, limit, budget).await?;
        let cursor = items.last().map_or(since, |m| m.revision);
        Ok(ChangesPage {
            workspace: ws,
            items,
            cursor,
            has_more,
        })
    }

    /// How the database runs the statement behind one page of
    /// [`MetaStore::get_changes`], one line per plan node (PostgreSQL runs
    /// it under `EXPLAIN (ANALYZE, BUFFERS)`, SQLite shows its query plan).
    /// For benchmarks and diagnosis.
    #[doc(hidden)]
    pub async fn explain_changes(
        &self,
        ws: WorkspaceId,
        since: u64,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut conn = self.pool.acquire().await.ctx("acquiring a connection")?;
        explain_page(&mut conn, self.backend(), ws, since, limit).await
    }

    /// The latest state of an item of `ws`, with its chunks.
    pub async fn item(&self, ws: WorkspaceId, id: ItemId) -> Result<ItemMeta, StoreError> {
        let mut conn = self.pool.acquire().await.ctx("acquiring a connection")?;
        match load_item(&mut conn, id).await? {
            Some(m) if m.workspace == ws => attach_chunks(&mut conn, m).await,
            _ => Err(Error::not_found(format!("no item {id} in workspace {ws}")).into()),
        }
    }

    /// One version of an item of `ws`, with its chunks.
    pub async fn version(
        &self,
        ws: WorkspaceId,
        id: ItemId,
        version: u64,
    ) -> Result<ItemMeta, StoreError> {
        let mut conn = self.pool.acquire().await.ctx("acquiring a connection")?;
        match load_version(&mut conn, id, version).await? {
            Some(m) if m.workspace == ws => Ok(m),
            _ => Err(Error::not_found(format!(
                "no version {version} of item {id} in workspace {ws}"
            ))
            .into()),
        }
    }

    /// Every version of an item of `ws`, oldest first, with chunks.
    pub async fn versions(&self, ws: WorkspaceId, id: ItemId) -> Result<Vec<ItemMeta>, StoreError> {
        let mut conn = self.pool.acquire().await.ctx("acquiring a connection")?;
        let rows = sqlx::query(dynamic(format!(
            "SELECT {VERSION_COLS} FROM item_versions WHERE item_id = $1 AND workspace_id = $2 ORDER BY version"
        )))
        .bind(id.to_string())
        .bind(ws.to_string())
        .fetch_all(&mut *conn)
        .await
        .ctx("reading versions")?;
        if rows.is_empty() {
            return Err(Error::not_found(format!("no item {id} in workspace {ws}")).into());
        }
        let mut versions: Vec<ItemMeta> = rows
            .iter()
            .map(|r| item_from_row("item_versions", r))
            .collect::<Result<_, _>>()?;
        attach_chunks_many(&mut conn, &mut versions).await?;
        Ok(versions)
    }

    /// Live children of a folder (`None`: the top of the workspace), by name.
    pub async fn children(
        &self,
        ws: WorkspaceId,
        parent: Option<ItemId>,
    ) -> Result<Vec<ItemMeta>, StoreError> {
        let mut conn = self.pool.acquire().await.ctx("acquiring a connection")?;
        let rows = sqlx::query(dynamic(format!(
            "SELECT {ITEM_COLS} FROM items WHERE workspace_id = $1 AND parent_id = $2 AND status <> 'DELETED' ORDER BY name"
        )))
        .bind(ws.to_string())
        .bind(crate::rows::parent_to_db(parent))
        .fetch_all(&mut *conn)
        .await
        .ctx("listing a folder")?;
        let mut items: Vec<ItemMeta> = rows
            .iter()
            .map(|r| item_from_row("items", r))
            .collect::<Result<_, _>>()?;
        attach_chunks_many(&mut conn, &mut items).await?;
        Ok(items)
    }

    /// An item found by its id alone, in whichever workspace holds it
    /// (item ids are unique across workspaces), with its chunks; `None`
    /// if no workspace does. The caller checks that whoever asks may see
    /// that workspace.
    pub async fn item_by_id(&self, id: ItemId) -> Result<Option<ItemMeta>, StoreError> {
        let mut conn = self.pool.acquire().await.ctx("acquiring a connection")?;
        match load_item(&mut conn, id).await? {
            Some(m) => Ok(Some(attach_chunks(&mut conn, m).await?)),
            None => Ok(None),
        }
    }

    /// One page of a folder's children (`None`: the top of the workspace)
    /// in (name, id) order, after `after` (the last (name, id) of the
    /// previous page), at most `limit` (1 to [`MAX_PAGE`]); deleted
    /// children only when `include_deleted`. A page costs its own rows,
    /// whatever the folder's size.
    pub async fn children_page(
        &self,
        ws: WorkspaceId,
        parent: Option<ItemId>,
        include_deleted: bool,
        after: Option<(&str, ItemId)>,
        limit: u32,
    ) -> Result<Vec<ItemMeta>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let status = if include_deleted {
            ""
        } else {
            " AND status <> 'DELETED'"
        };
        let after_clause = if after.is_some() {
            " AND (name > $3 OR (name = $3 AND id > $4))"
        } else {
            ""
        };
        let mut conn = self.pool.acquire().await.ctx("acquiring a connection")?;
        let sql = format!(
            "SELECT {ITEM_COLS} FROM items WHERE workspace_id = $1 AND parent_id = $2{status}{after_clause} \
             ORDER BY name, id LIMIT {limit}"
        );
        let mut query = sqlx::query(dynamic(sql))
            .bind(ws.to_string())
            .bind(crate::rows::parent_to_db(parent));
        if let Some((name, id)) = after {
            query = query.bind(name.to_owned()).bind(id.to_string());
        }
        let rows = query
            .fetch_all(&mut *conn)
            .await
            .ctx("listing a page of a folder")?;
        let mut items: Vec<ItemMeta> = rows
            .iter()
            .map(|r| item_from_row("items", r))
            .collect::<Result<_, _>>()?;
        attach_chunks_many(&mut conn, &mut items).await?;
        Ok(items)
    }
}
