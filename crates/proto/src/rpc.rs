//! Sync-service operations as messages (reference section 2). The same
//! messages travel over RabbitMQ, the in-process bus and the HTTP gateway.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Millis;
use crate::account::{Account, Device, EncryptionMode, Invitation, Member, Workspace};
use crate::brief::BriefCommitResult;
use crate::error::Error;
use crate::ids::{ChunkId, DeviceId, ItemId, UserId, WorkspaceId};
use crate::item::{ChangesPage, ChunkRef, CommitRequest, CommitResult, ItemMeta};
use crate::keys::{KeyStatement, PublishedIdentity};

/// One operation of the sync service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Opens a session: the only request that needs no token. The password
    /// travels inside the request, so the transport must be trusted (the
    /// broker's network, or TLS in front of the gateway).
    Login {
        email: String,
        password: String,
    },
    GetAccount,
    GetWorkspaces,
    GetChanges {
        workspace: WorkspaceId,
        since: u64,
        limit: u32,
    },
    Commit(CommitRequest),
    /// Registers a device (`id: None`) or updates its description.
    UpdateDevice {
        id: Option<DeviceId>,
        name: String,
        #[serde(default)]
        os: String,
        #[serde(default)]
        app_version: String,
    },
    /// Renames or moves one member's mount of a shared workspace.
    UpdateWorkspace {
        workspace: WorkspaceId,
        name: String,
        mount_parent: Option<ItemId>,
    },
    CreateShareProposal {
        workspace: WorkspaceId,
        folder: ItemId,
        emails: Vec<String>,
        encryption: EncryptionMode,
        /// Whether those who accept may only read the shared folder (a
        /// request from an older client, which cannot say, offers
        /// read-write).
        #[serde(default)]
        read_only: bool,
    },
    AnswerShareProposal {
        proposal: Uuid,
        accept: bool,
    },
    Unshare {
        workspace: WorkspaceId,
        emails: Vec<String>,
    },
    GetMembers {
        workspace: WorkspaceId,
    },
    /// The share proposals addressed to the caller that wait for an answer.
    GetInvitations,
    /// Takes the caller out of a shared workspace they are a member of
    /// (not its owner, who unshares instead).
    LeaveWorkspace {
        workspace: WorkspaceId,
    },
    GetVersions {
        workspace: WorkspaceId,
        item: ItemId,
    },
    Restore {
        workspace: WorkspaceId,
        item: ItemId,
        version: u64,
        device: DeviceId,
    },
    /// Which of `ids` the workspace already stores, and where: asked before
    /// uploading, so that a chunk any version of the workspace uses is not
    /// sent again. At most [`Request::MAX_LOCATE_IDS`] ids.
    ///
    /// With `bases`, the question is where to read each chunk from as the
    /// base of a delta (`PackSpan::base`): the workspace's location of
    /// every chunk it uses and stores whole, whoever uploaded it.
    LocateChunks {
        workspace: WorkspaceId,
        ids: Vec<ChunkId>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        bases: bool,
    },
    /// Ends the caller's session, or with `everywhere` every session of
    /// the account (all devices, this one included).
    Logout {
        #[serde(default)]
        everywhere: bool,
    },
    /// Replaces the account's password after checking the current one, and
    /// ends every other session of the account (the caller's stays). The
    /// passwords travel inside the request, like [`Request::Login`]'s.
    ChangePassword {
        current_password: String,
        new_password: String,
    },
    /// Creates this session's own broker user for the direct transport (or
    /// gives it a new password). Refused on the bus: ask over HTTPS, so the
    /// password never travels through the broker.
    IssueBrokerCredentials,
    /// Binds this session's notification queue to the topics of the
    /// workspaces the user belongs to now (and unbinds the others); a
    /// direct client asks again whenever its workspace set changes.
    BindNotifications,
    /// Stores the caller's own public identity (opaque; non-empty, at most
    /// [`crate::keys::MAX_IDENTITY_BYTES`]), replacing the previous one.
    PublishIdentity {
        #[serde(with = "crate::keys::hex_bytes")]
        identity: Vec<u8>,
        /// The matching private identity sealed under the user's
        /// encryption passphrase (opaque; at most
        /// [`crate::keys::MAX_SEALED_IDENTITY_BYTES`]), kept for the
        /// user's other devices and given to nobody else. `None` keeps the
        /// sealed copy stored before, if the identity did not change, and
        /// removes it otherwise.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "crate::keys::hex_bytes_opt"
        )]
        sealed: Option<Vec<u8>>,
    },
    /// The caller's own published identity and the sealed copy of its
    /// private half, as [`Request::PublishIdentity`] stored them.
    GetOwnIdentity,
    /// Makes the caller's own private workspace end-to-end encrypted
    /// (`EncryptionMode::ClientSide`): only while nothing was ever
    /// committed to it and no key statement exists; the same request
    /// again is answered the same way. Used by `setup --encrypted`.
    EncryptWorkspace {
        workspace: WorkspaceId,
    },
    /// The public identities of `users` (at most
    /// [`crate::keys::MAX_IDENTITY_USERS`]): only of users who share a
    /// workspace with the caller (the caller included); any other is
    /// answered as one who published none.
    GetIdentities {
        users: Vec<UserId>,
    },
    /// The statements of the workspace's key chain with an epoch above
    /// `after_epoch`, in order (members only).
    GetKeyStatements {
        workspace: WorkspaceId,
        after_epoch: u64,
        limit: u32,
    },
    /// Appends the statement of `epoch` to an end-to-end encrypted
    /// workspace's key chain (members who may write only): accepted only
    /// as the latest epoch + 1 (1 for the first); the same bytes again at
    /// a stored epoch are a retry, answered as accepted; anything else is
    /// a `Conflict` that says the latest epoch.
    PutKeyStatement {
        workspace: WorkspaceId,
        epoch: u64,
        #[serde(with = "crate::keys::hex_bytes")]
        statement: Vec<u8>,
    },
}

impl Request {
    /// Most ids in one [`Request::LocateChunks`].
    pub const MAX_LOCATE_IDS: usize = 1000;

    /// The operation's name as it travels (the `op` tag), for logs and
    /// metrics: one of a fixed set, whatever the request carries.
    pub fn operation(&self) -> &'static str {
        match self {
            Request::Login { .. } => "login",
            Request::GetAccount => "get_account",
            Request::GetWorkspaces => "get_workspaces",
            Request::GetChanges { .. } => "get_changes",
            Request::Commit(_) => "commit",
            Request::UpdateDevice { .. } => "update_device",
            Request::UpdateWorkspace { .. } => "update_workspace",
            Request::CreateShareProposal { .. } => "create_share_proposal",
            Request::AnswerShareProposal { .. } => "answer_share_proposal",
            Request::Unshare { .. } => "unshare",
            Request::GetMembers { .. } => "get_members",
            Request::GetInvitations => "get_invitations",
            Request::LeaveWorkspace { .. } => "leave_workspace",
            Request::GetVersions { .. } => "get_versions",
            Request::Restore { .. } => "restore",
            Request::LocateChunks { .. } => "locate_chunks",
            Request::Logout { .. } => "logout",
            Request::ChangePassword { .. } => "change_password",
            Request::IssueBrokerCredentials => "issue_broker_credentials",
            Request::BindNotifications => "bind_notifications",
            Request::PublishIdentity { .. } => "publish_identity",
            Request::GetOwnIdentity => "get_own_identity",
            Request::EncryptWorkspace { .. } => "encrypt_workspace",
            Request::GetIdentities { .. } => "get_identities",
            Request::GetKeyStatements { .. } => "get_key_statements",
            Request::PutKeyStatement { .. } => "put_key_statement",
        }
    }
}

impl Reply {
    /// Most invitations one [`Reply::Invitations`] lists (the oldest).
    pub const MAX_INVITATIONS: usize = 500;
}

/// The successful answer to a [`Request`], one variant per operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Reply {
    /// A new session: pass `token` in every later [`RpcRequest`].
    Session {
        token: String,
        user: UserId,
        /// When the token stops working (milliseconds since the epoch).
        expires_at: Millis,
    },
    Account(Account),
    Workspaces {
        workspaces: Vec<Workspace>,
    },
    Changes(ChangesPage),
    Commit(CommitResult),
    /// A commit's result with the proposals it accepted as they were left
    /// out; only for peers that read compact messages, and expanded by the
    /// transport before anyone else sees it ([`crate::brief`]).
    CommitBrief(BriefCommitResult),
    Device(Device),
    Workspace(Workspace),
    ShareProposal {
        proposal: Uuid,
        shared_to: Vec<String>,
    },
    ShareAnswered {
        workspace: Option<Workspace>,
    },
    Unshared {
        removed: Vec<String>,
    },
    Members {
        members: Vec<Member>,
    },
    /// Oldest first; at most [`Reply::MAX_INVITATIONS`].
    Invitations {
        invitations: Vec<Invitation>,
    },
    Left {
        workspace: WorkspaceId,
    },
    Versions {
        versions: Vec<ItemMeta>,
    },
    Restored {
        meta: ItemMeta,
    },
    /// For each id asked about, in order: the stored chunk (with its
    /// location), or `None` if the workspace does not have it.
    ChunkLocations {
        chunks: Vec<Option<ChunkRef>>,
    },
    /// How many sessions [`Request::Logout`] ended.
    LoggedOut {
        sessions: u64,
    },
    /// The password was changed; `other_sessions` sessions were ended.
    PasswordChanged {
        other_sessions: u64,
    },
    /// This session's broker user, and the queue its notifications arrive
    /// in (the only queue it may read).
    BrokerCredentials {
        user: String,
        password: String,
        queue: String,
    },
    /// The session's notification queue, bound to its current topics.
    NotificationsBound {
        queue: String,
    },
    /// The caller's identity is stored; `changed_at` is when it last
    /// changed (earlier than now when the same bytes were published).
    IdentityPublished {
        changed_at: Millis,
    },
    /// The caller's own identity and sealed private identity, if published.
    OwnIdentity {
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "crate::keys::hex_bytes_opt"
        )]
        identity: Option<Vec<u8>>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "crate::keys::hex_bytes_opt"
        )]
        sealed: Option<Vec<u8>>,
    },
    /// For each user asked about, in order: their identity, or `None`.
    Identities {
        identities: Vec<Option<PublishedIdentity>>,
    },
    /// Statements in increasing epoch order; `latest_epoch` is the
    /// chain's latest (0 when empty), so more are to be read while the
    /// last one returned is below it.
    KeyStatements {
        workspace: WorkspaceId,
        statements: Vec<KeyStatement>,
        latest_epoch: u64,
    },
    /// The statement of `epoch` is stored (now, or by an earlier attempt).
    KeyStatementStored {
        workspace: WorkspaceId,
        epoch: u64,
    },
}

/// A request as it travels: who asks (a session token the service checks on
/// every call), an id that makes retries recognisable, and the operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcRequest {
    /// Unique per logical request; a retry reuses it.
    pub request_id: Uuid,
    /// Session token from login; never trusted without a lookup.
    pub token: String,
    pub request: Request,
}

/// The answer to an [`RpcRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcResponse {
    pub request_id: Uuid,
    pub result: Result<Reply, Error>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_are_the_wire_tags() {
        let ws = WorkspaceId(Uuid::nil());
        for request in [
            Request::GetAccount,
            Request::GetChanges {
                workspace: ws,
                since: 0,
                limit: 1,
            },
            Request::LocateChunks {
                workspace: ws,
                ids: Vec::new(),
                bases: false,
            },
            Request::IssueBrokerCredentials,
            Request::PutKeyStatement {
                workspace: ws,
                epoch: 1,
                statement: vec![1],
            },
        ] {
            let json = serde_json::to_value(&request).unwrap();
            assert_eq!(json["op"], request.operation(), "{json}");
        }
    }
}
