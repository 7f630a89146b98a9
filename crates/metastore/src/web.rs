//! What the website reads beyond the API: a user's sessions with what
//! they are (a browser, a desktop device), and the trash (a workspace's
//! deleted items, newest first).

use sqlx::any::AnyRow;
use stacksync_proto::{Device, DeviceId, ItemId, ItemMeta, UserId, WorkspaceId};

use crate::error::{DbContext, StoreError};
use crate::rows::{ITEM_COLS, dynamic, get, item_from_row, parse_id};
use crate::users::device_from_row;
use crate::{MetaStore, now_ms};

/// Most deleted items one trash page reads per workspace.
pub const MAX_TRASH_PAGE: u32 = 1000;

/// What a session was opened by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// A desktop client (or any RPC login).
    Client,
    /// A browser, signed in on the website.
    Web,
}

impl SessionKind {
    fn as_db(self) -> &'static str {
        match self {
            SessionKind::Client => "client",
            SessionKind::Web => "web",
        }
    }
}

/// A live session of a user, as the devices page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    /// The hash of its token (the token itself is never stored).
    pub token_hash: String,
    /// What opened it.
    pub kind: SessionKind,
    /// A browser's description (from its `User-Agent`), or empty.
    pub label: String,
    /// The device a desktop session registered, if it did.
    pub device: Option<DeviceId>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
}

fn session_from_row(row: &AnyRow) -> Result<LiveSession, StoreError> {
    let kind: String = get(row, "kind")?;
    let device: Option<String> = get(row, "device_id")?;
    Ok(LiveSession {
        token_hash: get(row, "token_hash")?,
        kind: if kind == "web" {
            SessionKind::Web
        } else {
            SessionKind::Client
        },
        label: get(row, "label")?,
        device: device.map(|d| parse_id("sessions", &d)).transpose()?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
    })
}

impl MetaStore {
    /// Records a login session of `kind` under the hash of its token.
    pub async fn create_session_of(
        &self,
        user: UserId,
        token_hash: &str,
        expires_at: i64,
        kind: SessionKind,
        label: &str,
    ) -> Result<(), StoreError> {
        let label: String = label.chars().take(200).collect();
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, kind, label) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash)
        .bind(user.to_string())
        .bind(now_ms())
        .bind(expires_at)
        .bind(kind.as_db())
        .bind(label)
        .execute(&self.pool)
        .await
        .ctx("creating a session")?;
        Ok(())
    }

    /// Notes that the session with this token hash registered `device`.
    pub async fn bind_session_device(
        &self,
        token_hash: &str,
        device: DeviceId,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET device_id = $1 WHERE token_hash = $2")
            .bind(device.to_string())
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .ctx("binding a session to its device")?;
        Ok(())
    }

    /// `user`'s unexpired sessions, newest first.
    pub async fn live_sessions(&self, user: UserId) -> Result<Vec<LiveSession>, StoreError> {
        let rows = sqlx::query(
            "SELECT token_hash, kind, label, device_id, created_at, expires_at FROM sessions \
             WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC",
        )
        .bind(user.to_string())
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await
        .ctx("listing a user's sessions")?;
        rows.iter().map(session_from_row).collect()
    }

    /// `user`'s devices, most recently seen first.
    pub async fn devices_of(&self, user: UserId) -> Result<Vec<Device>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id, name, os, app_version, last_ip, last_access FROM devices \
             WHERE user_id = $1 ORDER BY last_access DESC",
        )
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await
        .ctx("listing a user's devices")?;
        rows.iter().map(device_from_row).collect()
    }

    /// A workspace's deleted items (their deleting version), most recently
    /// deleted first, at most `limit` (1 to [`MAX_TRASH_PAGE`]), without
    /// chunk lists.
    pub async fn deleted_items(
        &self,
        ws: WorkspaceId,
        limit: u32,
    ) -> Result<Vec<ItemMeta>, StoreError> {
        let limit = limit.clamp(1, MAX_TRASH_PAGE);
        let rows = sqlx::query(dynamic(format!(
            "SELECT {ITEM_COLS} FROM items WHERE workspace_id = $1 AND status = 'DELETED' \
             ORDER BY server_modified DESC, id LIMIT {limit}"
        )))
        .bind(ws.to_string())
        .fetch_all(&self.pool)
        .await
        .ctx("listing deleted items")?;
        rows.iter().map(|r| item_from_row("items", r)).collect()
    }

    /// Every child of a folder, deleted ones too, without chunk lists.
    pub async fn all_children(
        &self,
        ws: WorkspaceId,
        parent: ItemId,
    ) -> Result<Vec<ItemMeta>, StoreError> {
        let rows = sqlx::query(dynamic(format!(
            "SELECT {ITEM_COLS} FROM items WHERE workspace_id = $1 AND parent_id = $2 ORDER BY name, id"
        )))
        .bind(ws.to_string())
        .bind(parent.to_string())
        .fetch_all(&self.pool)
        .await
        .ctx("listing a folder")?;
        rows.iter().map(|r| item_from_row("items", r)).collect()
    }
}
