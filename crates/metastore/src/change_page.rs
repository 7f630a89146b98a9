//! One page of the change feed: the page's items and, joined to them in
//! the same statement, their chunk lists with locations.
//!
//! Listing a workspace from 0 reads every item once, so a page must cost
//! the same per item however far into the workspace it starts. Reading the
//! chunk lists with a second query keyed by the page's (item, version)
//! pairs made that query a long `IN` list of pairs, which SQLite answered
//! by scanning all of `version_chunks` and PostgreSQL by planning a
//! 400-way `OR` for every group; and `revision > cursor ORDER BY revision
//! LIMIT n` let PostgreSQL, planning from statistics older than a large
//! commit, read and sort every later item for each page. Both made a
//! listing cost grow with the square of the workspace. Here the items are
//! read in bounded windows of revisions and each chunk row is found by
//! primary key from its item's row.

use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use stacksync_proto::{ItemMeta, WorkspaceId};

use crate::error::{DbContext, StoreError};
use crate::rows::{ITEM_COLS, chunk_from_columns, dynamic, get, item_from_row, lookup_db};
use crate::store::Backend;

/// The statement behind a page: the items of workspace `$1` changed in the
/// revision window `$2` (excluded) to `$3` (included), at most `$4` of
/// them, oldest change first, one row per chunk.
///
/// The subquery takes the items off `items_by_revision` (workspace,
/// revision); each item's chunks come from `version_chunks` by primary key
/// (item, version, seq), each chunk's location from the workspace's chunk
/// index by primary key (workspace, chunk). Folders and empty files have no
/// chunk list, so they join to nothing and come back as one row with NULL
/// chunk columns. The chunk's size is `chunk_size`: `size` is the item's.
///
/// The window bounds what the database may read whatever plan it picks:
/// with `revision > $2` alone, PostgreSQL planning from statistics taken
/// before a large commit may fetch every later item of the workspace and
/// sort them to keep the first page, so that a listing from 0 costs the
/// square of the workspace.
///
/// A version's own location (its committer's upload, see `claims.rs`)
/// comes before the index's; the three location columns are taken from one
/// side only. The index consulted is that of `$1`, the items' workspace,
/// which is also the workspace of all their versions (a folder move
/// rewrites both).
pub(crate) fn page_statement() -> String {
    format!(
        "SELECT i.*, vc.chunk_id, vc.size AS chunk_size, \
         CASE WHEN vc.pack_id IS NULL THEN cr.pack_id ELSE vc.pack_id END AS pack_id, \
         CASE WHEN vc.pack_id IS NULL THEN cr.pack_offset ELSE vc.pack_offset END AS pack_offset, \
         CASE WHEN vc.pack_id IS NULL THEN cr.pack_len ELSE vc.pack_len END AS pack_len \
         FROM (SELECT {ITEM_COLS} FROM items \
               WHERE workspace_id = $1 AND revision > $2 AND revision <= $3 \
               ORDER BY revision LIMIT $4) i \
         LEFT JOIN version_chunks vc ON vc.item_id = i.id AND vc.version = i.version \
              AND i.is_folder = 0 AND i.size > 0 \
         LEFT JOIN chunk_refs cr ON cr.workspace_id = $1 AND cr.chunk_id = vc.chunk_id \
         ORDER BY i.revision, vc.seq"
    )
}

/// Revisions in the first window of a page; each next window is twice as
/// wide. PostgreSQL estimates a window's rows from its width, and for much
/// wider windows over a `version_chunks` not much larger than the workspace
/// it may prefer hashing all of `version_chunks` to probing its primary key
/// once per item (measured: 1,000 rows over 100,000 did, 512 did not).
const FIRST_WINDOW: u64 = 256;

/// At most `limit` items of `ws` changed after `since` (up to the
/// workspace's revision `latest`), oldest change first, each with its chunk
/// list; and whether more are waiting.
///
/// The page is read window by window of revisions, each asking only for
/// the items still missing, until one item more than the page is found
/// (which says more are waiting) or `latest` is reached: a few statements
/// per page, however many of the revisions were superseded.
///
/// Each window is one statement, so each item comes with the chunk list of
/// the version listed. An item changed while the page is read moves past
/// `latest`, so it is listed at most once here and comes again after the
/// cursor.
pub(crate) async fn read_page(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    since: u64,
    latest: u64,
    limit: u32,
) -> Result<(Vec<ItemMeta>, bool), StoreError> {
    let wanted = limit as usize + 1;
    let mut items: Vec<ItemMeta> = Vec::new();
    let (mut from, mut width) = (since, FIRST_WINDOW);
    while items.len() < wanted && from < latest {
        let to = from.saturating_add(width).min(latest);
        let missing = (wanted - items.len()) as i64;
        let rows = sqlx::query(dynamic(page_statement()))
            .bind(ws.to_string())
            .bind(lookup_db(from))
            .bind(lookup_db(to))
            .bind(missing)
            .fetch_all(&mut *conn)
            .await
            .ctx("reading changes")?;
        add_items_of_rows(&rows, &mut items)?;
        from = to;
        width = width.saturating_mul(2);
    }
    let has_more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Ok((items, has_more))
}

/// Folds a window's rows (one per chunk, in revision and chunk order) into
/// items appended to `items`; each item's own columns are read once, from
/// its first row.
fn add_items_of_rows(rows: &[AnyRow], items: &mut Vec<ItemMeta>) -> Result<(), StoreError> {
    let mut current: Option<i64> = None;
    for row in rows {
        let revision: i64 = get(row, "revision")?;
        if current != Some(revision) {
            items.push(item_from_row("items", row)?);
            current = Some(revision);
        }
        if get::<Option<String>>(row, "chunk_id")?.is_some()
            && let Some(item) = items.last_mut()
        {
            item.chunks.push(chunk_from_columns(row, "chunk_size")?);
        }
    }
    Ok(())
}

/// How the database runs [`page_statement`] for the first window of a
/// page: PostgreSQL's `EXPLAIN (ANALYZE, BUFFERS)` (the statement is run),
/// SQLite's `EXPLAIN QUERY PLAN`, one line per plan node. For benchmarks
/// and diagnosis only.
pub(crate) async fn explain_page(
    conn: &mut AnyConnection,
    backend: Backend,
    ws: WorkspaceId,
    since: u64,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let prefix = match backend {
        Backend::Postgres => "EXPLAIN (ANALYZE, BUFFERS) ",
        Backend::Sqlite => "EXPLAIN QUERY PLAN ",
    };
    let rows = sqlx::query(dynamic(format!("{prefix}{}", page_statement())))
        .bind(ws.to_string())
        .bind(lookup_db(since))
        .bind(lookup_db(since.saturating_add(FIRST_WINDOW)))
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut *conn)
        .await
        .ctx("explaining a page of changes")?;
    rows.iter()
        .map(|row| match backend {
            Backend::Postgres => get::<String>(row, "QUERY PLAN"),
            Backend::Sqlite => get::<String>(row, "detail").map(|d| format!("- {d}")),
        })
        .collect()
}
