//! Push notifications: sent after the fact they describe is durable.

use serde::{Deserialize, Serialize};

use crate::Workspace;
use crate::ids::{DeviceId, UserId, WorkspaceId};
use crate::item::ItemMeta;

/// What the service pushes to devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Notification {
    /// New versions were committed in a workspace (sent to every member's
    /// devices). `revision` is the workspace revision after the commit.
    Commit {
        workspace: WorkspaceId,
        device: DeviceId,
        revision: u64,
        items: Vec<ItemMeta>,
    },
    /// A user was invited to a shared folder.
    ShareProposal {
        proposal: uuid::Uuid,
        from: UserId,
        folder_name: String,
    },
    /// A user now belongs to a workspace (proposal accepted).
    WorkspaceJoined { workspace: Workspace },
    /// A user was removed from a workspace.
    Unshared {
        workspace: WorkspaceId,
        user: UserId,
    },
    /// A member renamed or moved their mount of a shared workspace.
    WorkspaceUpdated { workspace: Workspace },
}
