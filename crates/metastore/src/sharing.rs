//! Workspaces, their members, and share proposals.

use sqlx::any::AnyRow;
use stacksync_proto::{
    EncryptionMode, Error, Invitation, ItemId, Member, UserId, Workspace, WorkspaceId,
};
use uuid::Uuid;

use crate::error::{DbContext, StoreError};
use crate::rows::dynamic;
use crate::rows::{corrupt, flag, get, parse_id, to_u64};
use crate::users::normalize_email;
use crate::{MetaStore, now_ms};

/// A share proposal: an owner offers a folder to people by email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareProposal {
    pub id: Uuid,
    pub owner: UserId,
    pub workspace: WorkspaceId,
    pub folder: ItemId,
    pub encryption: EncryptionMode,
    /// Whether those who accept become read-only members.
    pub read_only: bool,
    /// The shared workspace, once it has been created.
    pub shared_workspace: Option<WorkspaceId>,
    pub invitees: Vec<(String, InviteeState)>,
}

/// What a share proposal offers besides the folder: how its chunks are
/// protected, and whether those who accept may change it. The default is
/// what a proposal always offered: plain, read-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShareTerms {
    pub encryption: EncryptionMode,
    /// Those who accept become read-only members (see
    /// [`Workspace::read_only`]).
    pub read_only: bool,
}

/// Where one invitee stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteeState {
    Pending,
    Accepted,
    Declined,
    /// Accepted, then removed from the shared folder (unshared, or left):
    /// the invitation is used up and cannot be answered again.
    Removed,
}

impl InviteeState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            InviteeState::Pending => "pending",
            InviteeState::Accepted => "accepted",
            InviteeState::Declined => "declined",
            InviteeState::Removed => "removed",
        }
    }
    fn parse(s: &str) -> Option<InviteeState> {
        Some(match s {
            "pending" => InviteeState::Pending,
            "accepted" => InviteeState::Accepted,
            "declined" => InviteeState::Declined,
            "removed" => InviteeState::Removed,
            _ => return None,
        })
    }
}

const WS_COLS: &str = "w.id, w.owner_id, w.is_shared, w.encryption, w.container, w.latest_revision, \
     m.name, m.mount_parent, m.read_only";

fn workspace_from_row(row: &AnyRow) -> Result<Workspace, StoreError> {
    let enc: String = get(row, "encryption")?;
    let mount: Option<String> = get(row, "mount_parent")?;
    Ok(Workspace {
        id: parse_id("workspaces", &get::<String>(row, "id")?)?,
        owner: parse_id("workspaces", &get::<String>(row, "owner_id")?)?,
        name: get(row, "name")?,
        is_shared: flag(row, "is_shared")?,
        encryption: EncryptionMode::parse(&enc)
            .ok_or_else(|| corrupt("workspaces", enc.clone()))?,
        container: get(row, "container")?,
        latest_revision: to_u64("workspaces", get(row, "latest_revision")?)?,
        mount_parent: mount
            .map(|m| parse_id("workspace_members", &m))
            .transpose()?,
        read_only: flag(row, "read_only")?,
    })
}

impl MetaStore {
    /// Creates a workspace owned by `owner`, who becomes its first member
    /// under `name`. Its storage container is `ws-<id>`.
    pub async fn create_workspace(
        &self,
        owner: UserId,
        name: &str,
        is_shared: bool,
        encryption: EncryptionMode,
    ) -> Result<Workspace, StoreError> {
        self.create_workspace_with_id(WorkspaceId::new(), owner, name, is_shared, encryption)
            .await
    }

    /// How many workspaces have the encryption setting `mode` (the server
    /// checks at startup that its storage can keep what it promised them).
    pub async fn count_workspaces_with(&self, mode: EncryptionMode) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM workspaces WHERE encryption = $1")
            .bind(mode.as_str())
            .fetch_one(&self.pool)
            .await
            .ctx("counting workspaces by encryption")?;
        let n: i64 = get(&row, "n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// [`MetaStore::create_workspace`] with an id chosen by the caller (the
    /// service derives it from a request, so that a retried request finds
    /// the workspace its first attempt created). Idempotent for the same
    /// owner; an id taken by another owner's workspace is forbidden.
    pub async fn create_workspace_with_id(
        &self,
        id: WorkspaceId,
        owner: UserId,
        name: &str,
        is_shared: bool,
        encryption: EncryptionMode,
    ) -> Result<Workspace, StoreError> {
        let existing = sqlx::query("SELECT owner_id FROM workspaces WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .ctx("looking up a workspace id")?;
        if let Some(row) = existing {
            if get::<String>(&row, "owner_id")? != owner.to_string() {
                return Err(Error::forbidden(format!("workspace {id} exists already")).into());
            }
            return self.workspace_as(owner, id).await;
        }
        let now = now_ms();
        let mut tx = self.pool.begin().await.ctx("beginning a transaction")?;
        // No conflict target: two requests inserting the same workspace at
        // once may collide on its container's unique index before its id's
        // (PostgreSQL raises a conflict on an index that is not the target).
        sqlx::query(
            "INSERT INTO workspaces (id, owner_id, is_shared, encryption, container, latest_revision, created_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $6) ON CONFLICT DO NOTHING",
        )
        .bind(id.to_string())
        .bind(owner.to_string())
        .bind(i64::from(is_shared))
        .bind(encryption.as_str())
        .bind(format!("ws-{id}"))
        .bind(now)
        .execute(&mut *tx)
        .await
        .ctx("creating a workspace")?;
        sqlx::query(
            "INSERT INTO workspace_members (workspace_id, user_id, name, mount_parent, is_owner, joined_at) \
             VALUES ($1, $2, $3, NULL, $4, $5) ON CONFLICT (workspace_id, user_id) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(owner.to_string())
        .bind(name)
        .bind(1i64)
        .bind(now)
        .execute(&mut *tx)
        .await
        .ctx("adding the owner to a workspace")?;
        tx.commit().await.ctx("committing a new workspace")?;
        // Two requests creating it at once (two devices accepting the same
        // share): the one that lost the race finds the winner's.
        self.workspace_as(owner, id)
            .await
            .map_err(|e| match e.to_proto().kind {
                stacksync_proto::ErrorKind::Forbidden => {
                    Error::forbidden(format!("workspace {id} exists already")).into()
                }
                _ => e,
            })
    }

    /// Every workspace `user` belongs to, own and shared.
    pub async fn workspaces_of(&self, user: UserId) -> Result<Vec<Workspace>, StoreError> {
        let rows = sqlx::query(dynamic(format!(
            "SELECT {WS_COLS} FROM workspaces w JOIN workspace_members m ON m.workspace_id = w.id \
             WHERE m.user_id = $1 ORDER BY w.created_at, w.id"
        )))
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await
        .ctx("listing workspaces")?;
        rows.iter().map(workspace_from_row).collect()
    }

    /// The workspace as `user` sees it. Not being a member is forbidden,
    /// whether or not the workspace exists (so ids cannot be probed).
    pub async fn workspace_as(
        &self,
        user: UserId,
        ws: WorkspaceId,
    ) -> Result<Workspace, StoreError> {
        let row = sqlx::query(dynamic(format!(
            "SELECT {WS_COLS} FROM workspaces w JOIN workspace_members m ON m.workspace_id = w.id \
             WHERE w.id = $1 AND m.user_id = $2"
        )))
        .bind(ws.to_string())
        .bind(user.to_string())
        .fetch_optional(&self.pool)
        .await
        .ctx("reading a workspace")?
        .ok_or_else(|| Error::forbidden(format!("not a member of workspace {ws}")))?;
        workspace_from_row(&row)
    }

    /// Adds `user` to `ws` as a member who is not its owner, read-only or
    /// not (idempotent: an existing member is left as is, role included).
    pub async fn add_member(
        &self,
        ws: WorkspaceId,
        user: UserId,
        name: &str,
        mount_parent: Option<ItemId>,
        wrapped_key: Option<&str>,
        read_only: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO workspace_members (workspace_id, user_id, name, mount_parent, is_owner, joined_at, wrapped_key, read_only) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (workspace_id, user_id) DO NOTHING",
        )
        .bind(ws.to_string())
        .bind(user.to_string())
        .bind(name)
        .bind(mount_parent.map(|p| p.to_string()))
        .bind(0i64)
        .bind(now_ms())
        .bind(wrapped_key)
        .bind(i64::from(read_only))
        .execute(&self.pool)
        .await
        .ctx("adding a member")?;
        Ok(())
    }

    /// Whether `user` is a member of `ws` who is not its owner (one
    /// [`MetaStore::remove_member`] would remove).
    pub async fn is_non_owner_member(
        &self,
        ws: WorkspaceId,
        user: UserId,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM workspace_members WHERE workspace_id = $1 AND user_id = $2 AND is_owner = $3",
        )
        .bind(ws.to_string())
        .bind(user.to_string())
        .bind(0i64)
        .fetch_optional(&self.pool)
        .await
        .ctx("looking up a membership")?;
        Ok(row.is_some())
    }

    /// Removes a member who is not the owner. Returns whether one was removed.
    pub async fn remove_member(&self, ws: WorkspaceId, user: UserId) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.ctx("removing a member")?;
        let done = sqlx::query("DELETE FROM workspace_members WHERE workspace_id = $1 AND user_id = $2 AND is_owner = $3")
            .bind(ws.to_string())
            .bind(user.to_string())
            .bind(0i64)
            .execute(&mut *tx)
            .await
            .ctx("removing a member")?;
        // The invitation that let them in is used up: answering it again
        // (which a retry of a half-done acceptance may) must not bring a
        // removed member back.
        sqlx::query(
            "UPDATE share_invitees SET state = $1 WHERE state = $2 \
             AND email = (SELECT email FROM users WHERE id = $3) \
             AND proposal_id IN (SELECT id FROM share_proposals WHERE shared_workspace_id = $4)",
        )
        .bind(InviteeState::Removed.as_str())
        .bind(InviteeState::Accepted.as_str())
        .bind(user.to_string())
        .bind(ws.to_string())
        .execute(&mut *tx)
        .await
        .ctx("closing a removed member's invitation")?;
        tx.commit().await.ctx("removing a member")?;
        Ok(done.rows_affected() > 0)
    }

    /// Renames or re-mounts a workspace for one member.
    pub async fn update_membership(
        &self,
        ws: WorkspaceId,
        user: UserId,
        name: &str,
        mount_parent: Option<ItemId>,
    ) -> Result<Workspace, StoreError> {
        let done = sqlx::query("UPDATE workspace_members SET name = $1, mount_parent = $2 WHERE workspace_id = $3 AND user_id = $4")
            .bind(name)
            .bind(mount_parent.map(|p| p.to_string()))
            .bind(ws.to_string())
            .bind(user.to_string())
            .execute(&self.pool)
            .await
            .ctx("updating a membership")?;
        if done.rows_affected() == 0 {
            return Err(Error::forbidden(format!("not a member of workspace {ws}")).into());
        }
        self.workspace_as(user, ws).await
    }

    /// The members of a workspace, owner first.
    pub async fn members(&self, ws: WorkspaceId) -> Result<Vec<Member>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.user_id, u.name, u.email, m.is_owner, m.joined_at, m.read_only FROM workspace_members m \
             JOIN users u ON u.id = m.user_id WHERE m.workspace_id = $1 ORDER BY m.is_owner DESC, m.joined_at, u.email",
        )
        .bind(ws.to_string())
        .fetch_all(&self.pool)
        .await
        .ctx("listing members")?;
        rows.iter()
            .map(|r| {
                Ok(Member {
                    user: parse_id("workspace_members", &get::<String>(r, "user_id")?)?,
                    name: get(r, "name")?,
                    email: get(r, "email")?,
                    is_owner: flag(r, "is_owner")?,
                    joined_at: get(r, "joined_at")?,
                    read_only: flag(r, "read_only")?,
                })
            })
            .collect()
    }

    /// Records a share proposal for `folder` of `ws` to `emails`, on
    /// `terms`.
    pub async fn create_share_proposal(
        &self,
        owner: UserId,
        ws: WorkspaceId,
        folder: ItemId,
        emails: &[String],
        terms: ShareTerms,
    ) -> Result<ShareProposal, StoreError> {
        self.create_share_proposal_with_id(Uuid::now_v7(), owner, ws, folder, emails, terms)
            .await
    }

    /// [`MetaStore::create_share_proposal`] with an id chosen by the caller,
    /// so that a retried request finds the proposal its first attempt made.
    /// Idempotent for the same owner; an id of another owner's proposal is
    /// forbidden.
    pub async fn create_share_proposal_with_id(
        &self,
        id: Uuid,
        owner: UserId,
        ws: WorkspaceId,
        folder: ItemId,
        emails: &[String],
        terms: ShareTerms,
    ) -> Result<ShareProposal, StoreError> {
        match self.share_proposal(id).await {
            Ok(p) if p.owner == owner => return Ok(p),
            Ok(_) => {
                return Err(Error::forbidden(format!("share proposal {id} exists already")).into());
            }
            Err(StoreError::Refused(e)) if e.kind == stacksync_proto::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if emails.is_empty() || emails.len() > 100 {
            return Err(Error::bad_request("a share proposal names 1 to 100 people").into());
        }
        let emails: Vec<String> = emails
            .iter()
            .map(|e| normalize_email(e))
            .collect::<Result<_, _>>()?;
        let mut tx = self.pool.begin().await.ctx("beginning a transaction")?;
        sqlx::query(
            "INSERT INTO share_proposals (id, owner_id, workspace_id, folder_id, encryption, created_at, read_only) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.to_string())
        .bind(owner.to_string())
        .bind(ws.to_string())
        .bind(folder.to_string())
        .bind(terms.encryption.as_str())
        .bind(now_ms())
        .bind(i64::from(terms.read_only))
        .execute(&mut *tx)
        .await
        .ctx("creating a share proposal")?;
        for email in &emails {
            sqlx::query(
                "INSERT INTO share_invitees (proposal_id, email, user_id, state) \
                 VALUES ($1, $2, (SELECT id FROM users WHERE email = $3), $4) ON CONFLICT DO NOTHING",
            )
            .bind(id.to_string())
            .bind(email)
            .bind(email)
            .bind(InviteeState::Pending.as_str())
            .execute(&mut *tx)
            .await
            .ctx("inviting to a share proposal")?;
        }
        tx.commit().await.ctx("committing a share proposal")?;
        self.share_proposal(id).await
    }

    /// A share proposal with its invitees.
    /// The proposal that created the shared workspace `ws` (the first, if
    /// several name it), if any.
    pub async fn proposal_of_workspace(
        &self,
        ws: WorkspaceId,
    ) -> Result<Option<ShareProposal>, StoreError> {
        let row = sqlx::query(
            "SELECT id FROM share_proposals WHERE shared_workspace_id = $1 ORDER BY created_at, id LIMIT 1",
        )
        .bind(ws.to_string())
        .fetch_optional(&self.pool)
        .await
        .ctx("finding a workspace's share proposal")?;
        match row {
            Some(row) => {
                let id: Uuid = parse_id("share_proposals", &get::<String>(&row, "id")?)?;
                Ok(Some(self.share_proposal(id).await?))
            }
            None => Ok(None),
        }
    }

    pub async fn share_proposal(&self, id: Uuid) -> Result<ShareProposal, StoreError> {
        let row = sqlx::query(
            "SELECT owner_id, workspace_id, folder_id, encryption, read_only, shared_workspace_id \
             FROM share_proposals WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .ctx("reading a share proposal")?
        .ok_or_else(|| Error::not_found(format!("no share proposal {id}")))?;
        let invitees = sqlx::query(
            "SELECT email, state FROM share_invitees WHERE proposal_id = $1 ORDER BY email",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .ctx("reading share invitees")?
        .iter()
        .map(|r| {
            let state: String = get(r, "state")?;
            Ok((
                get::<String>(r, "email")?,
                InviteeState::parse(&state)
                    .ok_or_else(|| corrupt("share_invitees", state.clone()))?,
            ))
        })
        .collect::<Result<_, StoreError>>()?;
        let enc: String = get(&row, "encryption")?;
        let shared: Option<String> = get(&row, "shared_workspace_id")?;
        Ok(ShareProposal {
            id,
            owner: parse_id("share_proposals", &get::<String>(&row, "owner_id")?)?,
            workspace: parse_id("share_proposals", &get::<String>(&row, "workspace_id")?)?,
            folder: parse_id("share_proposals", &get::<String>(&row, "folder_id")?)?,
            encryption: EncryptionMode::parse(&enc)
                .ok_or_else(|| corrupt("share_proposals", enc.clone()))?,
            read_only: flag(&row, "read_only")?,
            shared_workspace: shared
                .map(|s| parse_id("share_proposals", &s))
                .transpose()?,
            invitees,
        })
    }

    /// Records an invitee's answer. Only a pending invitation can be answered,
    /// or answered again the same way (a retry, or two devices at once).
    pub async fn answer_share_proposal(
        &self,
        id: Uuid,
        email: &str,
        accept: bool,
    ) -> Result<(), StoreError> {
        let email = normalize_email(email)?;
        let state = if accept {
            InviteeState::Accepted
        } else {
            InviteeState::Declined
        };
        let done = sqlx::query(
            "UPDATE share_invitees SET state = $1, answered_at = $2 WHERE proposal_id = $3 AND email = $4 AND state IN ($5, $1)",
        )
        .bind(state.as_str())
        .bind(now_ms())
        .bind(id.to_string())
        .bind(&email)
        .bind(InviteeState::Pending.as_str())
        .execute(&self.pool)
        .await
        .ctx("answering a share proposal")?;
        if done.rows_affected() == 0 {
            return Err(Error::forbidden(format!(
                "no pending invitation for {email} in proposal {id}"
            ))
            .into());
        }
        Ok(())
    }

    /// The proposals addressed to `user` (by their email) that wait for
    /// their answer, oldest first, at most `limit`.
    pub async fn pending_invitations(
        &self,
        user: UserId,
        limit: usize,
    ) -> Result<Vec<Invitation>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.id, p.encryption, p.read_only, p.created_at, o.email AS owner_email, \
             f.name AS folder_name \
             FROM share_invitees i \
             JOIN share_proposals p ON p.id = i.proposal_id \
             JOIN users o ON o.id = p.owner_id \
             LEFT JOIN items f ON f.id = p.folder_id \
             WHERE i.email = (SELECT email FROM users WHERE id = $1) AND i.state = $2 \
             ORDER BY p.created_at, p.id LIMIT $3",
        )
        .bind(user.to_string())
        .bind(InviteeState::Pending.as_str())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .ctx("listing invitations")?;
        rows.iter()
            .map(|r| {
                let enc: String = get(r, "encryption")?;
                let id: String = get(r, "id")?;
                Ok(Invitation {
                    proposal: Uuid::parse_str(&id).map_err(|_| corrupt("share_proposals", id))?,
                    folder_name: get::<Option<String>>(r, "folder_name")?.unwrap_or_default(),
                    from: get(r, "owner_email")?,
                    created_at: get(r, "created_at")?,
                    encryption: EncryptionMode::parse(&enc)
                        .ok_or_else(|| corrupt("share_proposals", enc.clone()))?,
                    read_only: flag(r, "read_only")?,
                })
            })
            .collect()
    }

    /// Whether `user` accepted a proposal whose shared workspace is `ws`
    /// (whether or not they are still a member).
    pub async fn accepted_share_of(
        &self,
        user: UserId,
        ws: WorkspaceId,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM share_invitees i \
             JOIN share_proposals p ON p.id = i.proposal_id \
             WHERE i.email = (SELECT email FROM users WHERE id = $1) \
             AND p.shared_workspace_id = $2 AND i.state IN ($3, $4) LIMIT 1",
        )
        .bind(user.to_string())
        .bind(ws.to_string())
        .bind(InviteeState::Accepted.as_str())
        .bind(InviteeState::Removed.as_str())
        .fetch_optional(&self.pool)
        .await
        .ctx("looking up an accepted share")?;
        Ok(row.is_some())
    }

    /// Links a proposal to the shared workspace made for it.
    pub async fn set_proposal_workspace(
        &self,
        id: Uuid,
        shared: WorkspaceId,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE share_proposals SET shared_workspace_id = $1 WHERE id = $2")
            .bind(shared.to_string())
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .ctx("linking a share proposal")?;
        Ok(())
    }
}
