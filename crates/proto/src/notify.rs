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
    /// A statement was appended to an end-to-end encrypted workspace's key
    /// chain (sent to every member's devices): read the chain from the
    /// last epoch verified (`GetKeyStatements`).
    KeysChanged { workspace: WorkspaceId, epoch: u64 },
    /// Notifications may have been lost on the way to this device (the
    /// gateway's or the bus's buffer overflowed, or a connection was
    /// re-established): re-read the change feed of every workspace. Sent by
    /// transports, never published by the service.
    Resync,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_has_a_bare_tag() {
        let bytes = crate::wire::encode(&Notification::Resync);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"v": 1, "body": {"type": "resync"}})
        );
        let back: Notification = crate::wire::decode(&bytes).unwrap();
        assert_eq!(back, Notification::Resync);
    }
}
