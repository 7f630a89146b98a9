//! The object ledger (`objects`): every object the server knows is stored
//! in a workspace's container, with its size and uploader, and the quota
//! that follows from it.
//!
//! Quota is charged for bytes stored, never for sizes a client declares:
//! a row is written (and its size charged to the workspace owner) before
//! the server stores an upload, in one transaction that refuses to go past
//! the owner's limit; the garbage collector deletes rows (and refunds
//! them) only after it deleted their objects. An object marked by the
//! collector cannot be uploaded again until it is gone (see `gc.rs`).

use std::collections::HashMap;

use sqlx::AnyConnection;
use stacksync_proto::{ChunkId, Error, ErrorKind, UserId, WorkspaceId};

use crate::MetaStore;
use crate::chunk_id_lists::rows_for_chunk_ids;
use crate::error::{DbContext, StoreError};
use crate::now_ms;
use crate::rows::{corrupt, dynamic, get, parse_id, to_u64};

/// One row of the object ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// The workspace whose container holds it.
    pub workspace: WorkspaceId,
    /// The object's name: a chunk id or a pack id.
    pub id: ChunkId,
    /// Bytes it occupies.
    pub size: u64,
    /// Who stored it (`None`: found in the container by the collector).
    pub uploader: Option<UserId>,
    /// When the row was written (milliseconds since the epoch).
    pub created_at: i64,
    /// Whether the garbage collector has decided to delete it.
    pub marked: bool,
}

/// Whether a new ledger row must fit the owner's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Refuse the row (`QuotaExceeded`) if the owner's stored bytes would
    /// go past their limit: uploads and commits.
    WithinQuota,
    /// Record it whatever the quota: bytes already stored that the ledger
    /// did not know (found by the collector), which must be counted.
    Always,
}

pub(crate) const OBJECT_COLS: &str =
    "workspace_id, object_id, size, uploader_id, created_at, marked_at";

pub(crate) fn object_from_row(row: &sqlx::any::AnyRow) -> Result<StoredObject, StoreError> {
    let id: String = get(row, "object_id")?;
    let uploader: Option<String> = get(row, "uploader_id")?;
    let marked: Option<i64> = get(row, "marked_at")?;
    Ok(StoredObject {
        workspace: parse_id("objects", &get::<String>(row, "workspace_id")?)?,
        id: ChunkId::from_hex(&id).map_err(|e| corrupt("objects", e.to_string()))?,
        size: to_u64("objects", get(row, "size")?)?,
        uploader: uploader.map(|u| parse_id("objects", &u)).transpose()?,
        created_at: get(row, "created_at")?,
        marked: marked.is_some(),
    })
}

/// The ledger rows of `ids` in `ws` (each id once).
pub(crate) async fn ledger_rows(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    ids: impl IntoIterator<Item = ChunkId>,
) -> Result<HashMap<ChunkId, StoredObject>, StoreError> {
    let rows = rows_for_chunk_ids(
        conn,
        ws,
        ids,
        |marks| {
            format!(
                "SELECT {OBJECT_COLS} FROM objects WHERE workspace_id = $1 AND object_id IN ({marks})"
            )
        },
        "reading the object ledger",
    )
    .await?;
    rows.iter()
        .map(|row| object_from_row(row).map(|o| (o.id, o)))
        .collect()
}

/// Adds `delta` (negative: a refund) to the stored bytes of `ws`'s owner.
/// With `limit_checked`, nothing changes and `false` is returned when the
/// result would exceed the owner's limit.
pub(crate) async fn charge_owner(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    delta: i64,
    limit_checked: bool,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE users SET quota_used = CASE WHEN quota_used + $1 < 0 THEN 0 ELSE quota_used + $1 END \
         WHERE id = (SELECT owner_id FROM workspaces WHERE id = $2) \
         AND ($3 = 0 OR quota_used + $1 <= quota_limit)",
    )
    .bind(delta)
    .bind(ws.to_string())
    .bind(i64::from(limit_checked))
    .execute(&mut *conn)
    .await
    .ctx("charging the quota")?;
    Ok(done.rows_affected() == 1)
}

/// The error for an upload of `size` bytes (object `id`) into `ws` by
/// `uploader` that the workspace owner's quota refused. A member who is not
/// the owner is told whose quota it is (a shared folder is charged to its
/// owner, not to whoever uploads into it), without the owner's figures.
async fn quota_full(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    id: ChunkId,
    size: u64,
    uploader: Option<UserId>,
) -> Result<Error, StoreError> {
    let quota = sqlx::query(
        "SELECT u.id, u.quota_used, u.quota_limit FROM users u \
         JOIN workspaces w ON w.owner_id = u.id WHERE w.id = $1",
    )
    .bind(ws.to_string())
    .fetch_optional(&mut *conn)
    .await
    .ctx("reading the quota")?;
    let Some(row) = quota else {
        return Ok(Error::not_found(format!("no workspace {ws}")));
    };
    let owner: UserId = parse_id("users", &get::<String>(&row, "id")?)?;
    if uploader.is_some_and(|u| u != owner) {
        return Ok(Error::quota_exceeded(format!(
            "the shared folder's owner's storage quota is full: storing {size} bytes \
             (object {id}) would exceed it; the owner must free space or get a larger quota"
        )));
    }
    Ok(Error::quota_exceeded(format!(
        "storing {size} bytes (object {id}) would exceed the quota: {} of {} bytes used",
        get::<i64>(&row, "quota_used")?,
        get::<i64>(&row, "quota_limit")?
    )))
}

impl MetaStore {
    /// Records that `id` (`size` bytes, uploaded by `uploader`) is being
    /// stored in `ws`'s container, charging its size to the workspace
    /// owner, whoever uploads it (a member's upload into a shared folder
    /// counts against its owner's quota, not the member's). Call it
    /// *before* storing the bytes: an upload past the quota
    /// is refused here and nothing is written. Returns `true` for a new
    /// row, `false` when the ledger already had the object (a retried
    /// upload; nothing is charged twice).
    ///
    /// Refused with `Unavailable` while the garbage collector is deleting
    /// an object of that name (retry once it is gone), and with
    /// `QuotaExceeded` under [`Charge::WithinQuota`] past the limit.
    pub async fn record_object(
        &self,
        ws: WorkspaceId,
        id: ChunkId,
        size: u64,
        uploader: Option<UserId>,
        charge: Charge,
    ) -> Result<bool, StoreError> {
        let signed = i64::try_from(size)
            .map_err(|_| Error::new(ErrorKind::TooLarge, format!("object {id}: {size} bytes")))?;
        let mut tx = self.pool.begin().await.ctx("beginning an object record")?;
        let inserted = sqlx::query(
            "INSERT INTO objects (workspace_id, object_id, size, uploader_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(ws.to_string())
        .bind(id.to_hex())
        .bind(signed)
        .bind(uploader.map(|u| u.to_string()))
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .ctx("recording an object")?;
        if inserted.rows_affected() == 0 {
            let known = ledger_rows(&mut tx, ws, [id]).await?;
            if known.get(&id).is_some_and(|o| o.marked) {
                return Err(Error::unavailable(format!(
                    "object {id} is being garbage collected; upload it again shortly"
                ))
                .into());
            }
            return Ok(false);
        }
        if !charge_owner(&mut tx, ws, signed, charge == Charge::WithinQuota).await? {
            return Err(quota_full(&mut tx, ws, id, size, uploader).await?.into());
        }
        tx.commit().await.ctx("committing an object record")?;
        Ok(true)
    }

    /// The ledger rows of `ids` in `ws`, in no particular order; ids the
    /// ledger does not know are left out.
    pub async fn objects(
        &self,
        ws: WorkspaceId,
        ids: &[ChunkId],
    ) -> Result<Vec<StoredObject>, StoreError> {
        let mut conn = self.pool.acquire().await.ctx("acquiring a connection")?;
        Ok(ledger_rows(&mut conn, ws, ids.iter().copied())
            .await?
            .into_values()
            .collect())
    }

    /// Every ledger row of `ws`, by object name.
    pub async fn objects_of(&self, ws: WorkspaceId) -> Result<Vec<StoredObject>, StoreError> {
        let rows = sqlx::query(dynamic(format!(
            "SELECT {OBJECT_COLS} FROM objects WHERE workspace_id = $1 ORDER BY object_id"
        )))
        .bind(ws.to_string())
        .fetch_all(&self.pool)
        .await
        .ctx("listing the object ledger")?;
        rows.iter().map(object_from_row).collect()
    }
}
