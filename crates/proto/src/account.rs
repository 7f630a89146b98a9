//! Accounts, devices, workspaces and memberships.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::ids::{DeviceId, ItemId, UserId, WorkspaceId};

/// How a workspace's chunks are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EncryptionMode {
    /// Chunks are stored as they are (possibly compressed).
    #[default]
    Plain,
    /// Only members' clients hold the key; the server sees ciphertext and
    /// keyed chunk ids.
    ClientSide,
    /// The service encrypts chunks at rest with a key it holds.
    ServerSide,
}

impl EncryptionMode {
    /// The spelling used in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionMode::Plain => "plain",
            EncryptionMode::ClientSide => "client_side",
            EncryptionMode::ServerSide => "server_side",
        }
    }
    /// Inverse of [`EncryptionMode::as_str`].
    pub fn parse(s: &str) -> Option<EncryptionMode> {
        Some(match s {
            "plain" => EncryptionMode::Plain,
            "client_side" => EncryptionMode::ClientSide,
            "server_side" => EncryptionMode::ServerSide,
            _ => return None,
        })
    }
}

/// What getAccount answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: UserId,
    pub name: String,
    pub email: String,
    /// Bytes the user may store (logical, before dedup).
    pub quota_limit: u64,
    /// Logical bytes of the live versions of the user's files.
    pub quota_used: u64,
    /// The storage user that this account maps to (Swift user), if any.
    #[serde(default)]
    pub storage_user: Option<String>,
}

/// A registered client installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    pub user: UserId,
    pub name: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub app_version: String,
    #[serde(default)]
    pub last_ip: Option<String>,
    pub last_access: Millis,
}

/// A workspace as one member sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub owner: UserId,
    /// The name this member gives the workspace (for a shared folder, the
    /// folder name in that member's tree).
    pub name: String,
    pub is_shared: bool,
    pub encryption: EncryptionMode,
    /// Storage container holding the workspace's chunks.
    pub container: String,
    /// Latest change-feed revision.
    pub latest_revision: u64,
    /// Where this member mounts a shared workspace in their own tree.
    #[serde(default)]
    pub mount_parent: Option<ItemId>,
    /// Whether this member may only read the workspace (a read-only member
    /// of a shared folder): the service refuses every change they send.
    /// Never true for the owner.
    #[serde(default)]
    pub read_only: bool,
}

/// A share proposal waiting for its addressee's answer, as the addressee
/// sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// The id to accept or decline it with.
    pub proposal: uuid::Uuid,
    /// The shared folder's name (as it is now in its owner's tree).
    pub folder_name: String,
    /// Who shares it.
    pub from: String,
    /// When it was proposed.
    pub created_at: Millis,
    pub encryption: EncryptionMode,
    /// Whether accepting makes the addressee a read-only member.
    #[serde(default)]
    pub read_only: bool,
}

/// A member of a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub user: UserId,
    pub name: String,
    pub email: String,
    pub is_owner: bool,
    pub joined_at: Millis,
    /// Whether this member may only read the workspace (never the owner).
    #[serde(default)]
    pub read_only: bool,
}
