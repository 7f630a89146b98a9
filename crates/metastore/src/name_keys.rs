//! Folding keys for rows stored before migration 0005 (see its comment).

use sqlx::AnyPool;

use crate::error::{DbContext, StoreError};
use crate::rows::get;

/// Rows read per query while filling in keys.
const PAGE: i64 = 500;

/// Gives every item row without a folding key its key, except a live row
/// whose key a live sibling already holds (two names that differ only in
/// case, both stored before the rule): that one keeps no key, so both stay
/// readable, and the pair is logged. Returns how many rows got a key.
pub(crate) async fn fill_missing(pool: &AnyPool) -> Result<u64, StoreError> {
    let mut after = String::new();
    let mut filled = 0;
    loop {
        let rows = sqlx::query(
            "SELECT id, name FROM items WHERE name_key IS NULL AND id > $1 ORDER BY id LIMIT $2",
        )
        .bind(&after)
        .bind(PAGE)
        .fetch_all(pool)
        .await
        .ctx("reading items without a name key")?;
        let Some(last) = rows.last() else {
            return Ok(filled);
        };
        after = get(last, "id")?;
        for row in &rows {
            let id: String = get(row, "id")?;
            let name: String = get(row, "name")?;
            let key = stacksync_proto::fold_key(&name);
            let done = sqlx::query(
                "UPDATE items SET name_key = $1 WHERE id = $2 AND (status = 'DELETED' OR NOT EXISTS \
                 (SELECT 1 FROM items o WHERE o.workspace_id = items.workspace_id \
                  AND o.parent_id = items.parent_id AND o.name_key = $1 AND o.status <> 'DELETED'))",
            )
            .bind(&key)
            .bind(&id)
            .execute(pool)
            .await;
            match done {
                Ok(d) if d.rows_affected() == 1 => filled += 1,
                Ok(_) => tracing::warn!(
                    item = %id,
                    "an item's name differs only in case from a live sibling's; it keeps no \
                     name key until it is renamed or deleted"
                ),
                // Another server filling keys at the same time took it.
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
                Err(e) => return Err(e).ctx("storing a name key"),
            }
        }
    }
}
