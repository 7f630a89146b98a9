//! What a file manager's menu does with an item, through the daemon: its
//! page on the website (`/files/{id}`, `/versions/{id}`), a shared link
//! made through the REST API (`POST /api/v2/links` with this device's
//! session), and its stored versions.
//!
//! Items are named by their absolute path; the daemon knows their ids from
//! its engines' state. A path the server has never seen (a new file not
//! uploaded yet) has no page, link or versions, and says so.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use stacksync_engine::RelPath;
use stacksync_gateway_client::{GatewayClient, Session};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{EncryptionMode, ItemId, ItemStatus, Millis, UserId};
use uuid::Uuid;

use super::{FRESH_COPY_WAIT, Folders, relative_to_folder};
use crate::connection::{Connection, unexpected};
use crate::profile::Profile;

/// What the daemon needs to act on items: the server's address, this
/// device's session and the connection.
#[derive(Clone)]
pub struct Actions {
    /// The server's base URL (the website is served there).
    pub server_url: String,
    /// The client's home (the session token is read from it when needed:
    /// a `stacksync login` meanwhile is followed).
    pub home: std::path::PathBuf,
    /// The account.
    pub user: UserId,
    /// The daemon's connection (versions are read through it).
    pub conn: Arc<dyn Connection>,
}

/// An item as the website and the REST API name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebItem {
    /// The top of the synced folder (`/files`).
    Top,
    /// A file or folder (an item id, or a shared folder's workspace id).
    Item {
        /// Its id.
        id: Uuid,
        /// Whether it is a folder.
        is_folder: bool,
        /// Whether it is in an end-to-end encrypted workspace (the website
        /// cannot show it; no links).
        sealed: bool,
    },
}

/// One stored version, as the socket lists it.
#[derive(Debug, Clone, Serialize)]
pub struct VersionEntry {
    /// Its number (1 is the first).
    pub version: u64,
    /// Whether this version is a deletion.
    pub deleted: bool,
    /// Size in bytes.
    pub size: u64,
    /// When it was saved on its device (ms since the epoch).
    pub modified: Millis,
    /// BLAKE3 of its content, hex (none for folders and deletions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl Actions {
    /// The item at the absolute `path`, as the website names it.
    pub async fn web_item(&self, folders: &Folders, path: &Path) -> Result<WebItem, String> {
        let rel = relative_to_folder(&folders.folder, path).map_err(|e| e.to_string())?;
        web_item(folders, &rel).await
    }

    /// The website's URL of the item at `path`, and of its versions (files).
    pub async fn web_url(
        &self,
        folders: &Folders,
        path: &Path,
    ) -> Result<(String, Option<String>), String> {
        let base = self.server_url.trim_end_matches('/');
        match self.web_item(folders, path).await? {
            WebItem::Top => Ok((format!("{base}/files"), None)),
            WebItem::Item { sealed: true, .. } => Err(
                "this item is end-to-end encrypted: the website cannot show it (only your devices can read it)"
                    .into(),
            ),
            WebItem::Item { id, is_folder, .. } => Ok((
                format!("{base}/files/{id}"),
                (!is_folder).then(|| format!("{base}/versions/{id}")),
            )),
        }
    }

    /// Makes a view link to the item at `path` and returns its URL (with
    /// its secret).
    pub async fn share_url(&self, folders: &Folders, path: &Path) -> Result<String, String> {
        let id = match self.web_item(folders, path).await? {
            WebItem::Top => return Err("the top of the synced folder cannot be linked".into()),
            WebItem::Item { sealed: true, .. } => {
                return Err(
                    "this item is end-to-end encrypted: the server cannot serve it to a link"
                        .into(),
                );
            }
            WebItem::Item { id, .. } => id,
        };
        let profile = Profile::load(&self.home).map_err(|e| e.to_string())?;
        let token = profile
            .load_token()
            .map_err(|e| e.to_string())?
            .ok_or("this device is not logged in: run `stacksync login`")?;
        let session = Session {
            token,
            user: self.user,
            expires_at: 0,
        };
        let client =
            GatewayClient::with_session(&self.server_url, session).map_err(|e| e.to_string())?;
        client.create_link(id).await.map_err(|e| e.to_string())
    }

    /// The stored versions of the file at `path`, oldest first.
    pub async fn versions(
        &self,
        folders: &Folders,
        path: &Path,
    ) -> Result<Vec<VersionEntry>, String> {
        let rel = relative_to_folder(&folders.folder, path).map_err(|e| e.to_string())?;
        let (route, rest) = folders
            .route_of(&rel)
            .ok_or_else(|| format!("{rel}: no folder syncs it"))?;
        let workspace = route
            .workspace
            .as_ref()
            .ok_or("the daemon does not know this folder's workspace")?;
        if rest.is_root() {
            return Err("a folder has no versions of its own".into());
        }
        let view = route.board.snapshot(FRESH_COPY_WAIT).await.view;
        let item = view
            .item_id(&rest)
            .ok_or_else(|| format!("{rel} is not on the server yet"))?;
        let mut versions = match self
            .conn
            .rpc(Request::GetVersions {
                workspace: workspace.id,
                item,
            })
            .await
            .map_err(|e| format!("listing the versions of {rel}: {e}"))?
        {
            Reply::Versions { versions } => versions,
            other => return Err(unexpected("get_versions", other).to_string()),
        };
        if let Some(sealed) = &route.sealed {
            versions = sealed
                .open_history(versions)
                .map_err(|e| format!("opening the versions of {rel}: {e}"))?;
        }
        versions.sort_by_key(|v| v.version);
        Ok(versions
            .into_iter()
            .map(|v| VersionEntry {
                version: v.version,
                deleted: v.status == ItemStatus::Deleted,
                size: v.size,
                modified: v.client_modified,
                hash: v.content_hash.map(|h| h.to_hex().to_string()),
            })
            .collect())
    }
}

/// The item at `rel` (relative to the synced folder) as the website names
/// it: a shared folder's top by its workspace's id, anything else by its
/// item id.
pub async fn web_item(folders: &Folders, rel: &RelPath) -> Result<WebItem, String> {
    let (route, rest) = folders
        .route_of(rel)
        .ok_or_else(|| format!("{rel}: no folder syncs it"))?;
    let sealed = route
        .workspace
        .as_ref()
        .is_some_and(|w| w.encryption == EncryptionMode::ClientSide);
    if rest.is_root() {
        return match &route.workspace {
            _ if route.path.is_root() => Ok(WebItem::Top),
            Some(ws) => Ok(WebItem::Item {
                id: ws.id.0,
                is_folder: true,
                sealed,
            }),
            None => Err("the daemon does not know this shared folder's workspace".into()),
        };
    }
    let view = route.board.snapshot(FRESH_COPY_WAIT).await.view;
    let ItemId(id) = view
        .item_id(&rest)
        .ok_or_else(|| format!("{rel} is not on the server yet (it has not been uploaded)"))?;
    let is_folder = view.on_server(&rest).unwrap_or(false);
    Ok(WebItem::Item {
        id,
        is_folder,
        sealed,
    })
}
