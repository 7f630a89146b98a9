//! One page of the change feed: the page's items and, in the same
//! statement, their chunk lists with locations (stored with each item).
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
use crate::packed_item::{packed_record, unpack_window};
use crate::page_budget::wire_bytes;
use crate::rows::{dynamic, get, lookup_db};
use crate::store::Backend;

/// The statement behind a page: the items of workspace `$1` changed in the
/// revision window `$2` (excluded) to `$3` (included), at most `$4` of
/// them, oldest change first, packed into one row of one value
/// (`packed_item.rs` says why and how) with the number of items.
///
/// The items come off `items_by_revision` (workspace, revision), each with
/// the chunk list stored in its row (`items.chunk_list`, written by the
/// commit with the locations it settled): one row per item and nothing
/// else, however many chunks. Reading the lists from `version_chunks` and
/// each chunk's location from `chunk_refs` took two index probes per chunk,
/// most of a listing's time on PostgreSQL.
///
/// The window bounds what the database may read whatever plan it picks:
/// with `revision > $2` alone, PostgreSQL planning from statistics taken
/// before a large commit may fetch every later item of the workspace and
/// sort them to keep the first page, so that a listing from 0 costs the
/// square of the workspace.
///
pub(crate) fn page_statement() -> String {
    format!(
        "SELECT string_agg(w.record, '/' ORDER BY w.revision) AS packed, COUNT(*) AS items \
         FROM (SELECT i.revision, {} AS record FROM items i \
               WHERE i.workspace_id = $1 AND i.revision > $2 AND i.revision <= $3 \
               ORDER BY i.revision LIMIT $4) w",
        packed_record()
    )
}

/// Revisions in the first window of a page: as many as the items it asks
/// for, so that a page of a workspace whose revisions are all still its
/// items' latest is one statement; each next window is twice as wide.
///
/// A window used to start at 256 revisions because PostgreSQL, estimating
/// rows from a wider window, hashed all of `version_chunks` instead of
/// probing its primary key per item. The statement now reads `items` alone.
fn first_window(wanted: usize) -> u64 {
    wanted as u64
}

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
///
/// The page also stops, with more waiting, before the item that would take
/// its estimated wire size past `budget` bytes (`page_budget.rs`); its
/// first item is always in it.
pub(crate) async fn read_page(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    since: u64,
    latest: u64,
    limit: u32,
    budget: usize,
) -> Result<(Vec<ItemMeta>, bool), StoreError> {
    let wanted = limit as usize + 1;
    let mut items: Vec<ItemMeta> = Vec::new();
    let mut bytes = 0usize;
    let (mut from, mut width) = (since, first_window(wanted));
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
        let before = items.len();
        add_items_of_rows(&rows, &mut items)?;
        // The item past `limit` only says that more are waiting: it is not
        // on the page, so it does not weigh on it.
        for k in before..items.len().min(limit as usize) {
            bytes = bytes.saturating_add(wire_bytes(&items[k]));
            if bytes > budget && k > 0 {
                items.truncate(k);
                return Ok((items, true));
            }
        }
        from = to;
        width = width.saturating_mul(2);
    }
    let has_more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Ok((items, has_more))
}

/// Unpacks a window's row (its items packed into one value, in revision
/// order) into items appended to `items`. The packed value is borrowed
/// from the row, not copied again.
fn add_items_of_rows(rows: &[AnyRow], items: &mut Vec<ItemMeta>) -> Result<(), StoreError> {
    for row in rows {
        items.extend(unpack_window(
            get::<Option<&str>>(row, "packed")?,
            get(row, "items")?,
        )?);
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
        .bind(lookup_db(
            since.saturating_add(first_window(limit as usize + 1)),
        ))
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
