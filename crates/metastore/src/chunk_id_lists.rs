//! Rows of one workspace looked up by a list of chunk ids (the chunk index,
//! the object ledger): the one place that turns a list of any length into
//! `IN (...)` statements.
//!
//! Each id is asked once, whatever its repetitions, and each statement binds
//! at most [`ROWS`] ids, so a long list never goes past a database's limit on
//! bound parameters.

use std::collections::BTreeSet;

use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use stacksync_proto::{ChunkId, WorkspaceId};

use crate::commit::ROWS;
use crate::error::{DbContext, StoreError};
use crate::rows::dynamic;

/// The rows that `statement` selects for `ids` in `ws`. `statement` is
/// handed the placeholder list (`$2, $3, ...`) to put inside `IN (...)`;
/// `$1` is the workspace. `context` names the read in errors.
pub(crate) async fn rows_for_chunk_ids(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    ids: impl IntoIterator<Item = ChunkId>,
    statement: impl Fn(&str) -> String,
    context: &'static str,
) -> Result<Vec<AnyRow>, StoreError> {
    let ids: Vec<ChunkId> = ids
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rows = Vec::new();
    for group in ids.chunks(ROWS) {
        let marks: Vec<String> = (0..group.len()).map(|i| format!("${}", i + 2)).collect();
        let mut q = sqlx::query(dynamic(statement(&marks.join(", ")))).bind(ws.to_string());
        for id in group {
            q = q.bind(id.to_hex());
        }
        rows.extend(q.fetch_all(&mut *conn).await.ctx(context)?);
    }
    Ok(rows)
}
