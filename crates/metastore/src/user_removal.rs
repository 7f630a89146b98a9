//! Removing a user and everything that is theirs alone.
//!
//! A workspace the user owns that other people are members of (a shared
//! folder) goes with them only when the caller says so
//! ([`SharedWorkspaces::Delete`]): it is then deleted for every member,
//! who are listed so that they can be told. Otherwise removal is refused
//! while there is one, naming each, and nothing changes. Shared
//! workspaces of other owners survive; only the membership goes.

use sqlx::AnyConnection;
use stacksync_proto::{Error, ErrorKind, UserId, WorkspaceId};

use crate::MetaStore;
use crate::error::{DbContext, StoreError};
use crate::rows::{get, parse_id};

/// What [`MetaStore::remove_user`] does with the workspaces the user owns
/// that other users are members of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedWorkspaces {
    /// Refuses the removal (`Conflict`, naming each such workspace and its
    /// members) while there is one.
    Refuse,
    /// Deletes them like the user's private workspaces, for every member.
    Delete,
}

/// What [`MetaStore::remove_user`] took away, for the caller to finish in
/// the blob store and wherever sessions left credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovedUser {
    /// Containers of the workspaces deleted with the user that nobody else
    /// was a member of, whose objects are no longer referenced by anything.
    pub deleted_containers: Vec<String>,
    /// Workspaces the user owned that other users were members of, deleted
    /// with them ([`SharedWorkspaces::Delete`]), ordered by id.
    pub dissolved_shared: Vec<DissolvedWorkspace>,
    /// Other owners' workspaces the user was a member of, with their
    /// containers (the user's storage grants there are to be revoked).
    pub left_workspaces: Vec<(WorkspaceId, String)>,
    /// Token hashes of the sessions that ended.
    pub ended_sessions: Vec<String>,
}

/// A shared workspace deleted with its owner: its members lost it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DissolvedWorkspace {
    /// The workspace.
    pub workspace: WorkspaceId,
    /// Its container, whose objects are no longer referenced by anything.
    pub container: String,
    /// The members other than the owner, ordered by email.
    pub members: Vec<FormerMember>,
}

/// A member of a workspace that was deleted with its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormerMember {
    /// The member.
    pub user: UserId,
    /// Their email, as it was at the removal.
    pub email: String,
}

impl MetaStore {
    /// Removes `user` with their devices, sessions, OAuth tokens, share
    /// proposals and invitations, memberships, public identity, and every
    /// workspace they own (items, versions, chunk references, key
    /// statements), in one transaction. A workspace they own that other
    /// users are members of is deleted too with [`SharedWorkspaces::Delete`]
    /// (listed in [`RemovedUser::dissolved_shared`]); with
    /// [`SharedWorkspaces::Refuse`] the removal is refused with `Conflict`,
    /// naming each such workspace and its members, and nothing changes.
    pub async fn remove_user(
        &self,
        user: UserId,
        shared: SharedWorkspaces,
    ) -> Result<RemovedUser, StoreError> {
        let mut tx = self.pool.begin().await.ctx("beginning a transaction")?;
        let conn: &mut AnyConnection = &mut tx;
        let uid = user.to_string();
        let email: String = sqlx::query("SELECT email FROM users WHERE id = $1")
            .bind(&uid)
            .fetch_optional(&mut *conn)
            .await
            .ctx("reading a user to remove")?
            .map(|r| get(&r, "email"))
            .transpose()?
            .ok_or_else(|| Error::not_found(format!("no user {user}")))?;

        let owned =
            sqlx::query("SELECT id, container FROM workspaces WHERE owner_id = $1 ORDER BY id")
                .bind(&uid)
                .fetch_all(&mut *conn)
                .await
                .ctx("listing a user's workspaces")?;
        let mut removed = RemovedUser::default();
        let mut owned_ids = Vec::with_capacity(owned.len());
        for row in &owned {
            let id: String = get(row, "id")?;
            let container: String = get(row, "container")?;
            let members = other_members(conn, &id, &uid).await?;
            owned_ids.push((id.clone(), members.len()));
            if members.is_empty() {
                removed.deleted_containers.push(container);
            } else {
                removed.dissolved_shared.push(DissolvedWorkspace {
                    workspace: parse_id("workspaces", &id)?,
                    container,
                    members,
                });
            }
        }
        if shared == SharedWorkspaces::Refuse && !removed.dissolved_shared.is_empty() {
            return Err(Error::new(ErrorKind::Conflict, refusal(&email, &removed)).into());
        }

        let left = sqlx::query(
            "SELECT w.id, w.container FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.user_id = $1 AND w.owner_id <> $1 ORDER BY w.id",
        )
        .bind(&uid)
        .fetch_all(&mut *conn)
        .await
        .ctx("listing a user's memberships")?;
        for row in &left {
            let id: WorkspaceId = parse_id("workspaces", &get::<String>(row, "id")?)?;
            removed.left_workspaces.push((id, get(row, "container")?));
        }

        for (ws, expected) in &owned_ids {
            // The members are those found above, or the removal is
            // refused: one who joined since would lose the folder without
            // being told.
            let gone = sqlx::query(
                "DELETE FROM workspace_members WHERE workspace_id = $1 AND user_id <> $2",
            )
            .bind(ws)
            .bind(&uid)
            .execute(&mut *conn)
            .await
            .ctx("deleting a workspace's other members")?
            .rows_affected();
            if gone != *expected as u64 {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("the members of workspace {ws} changed while {email} was being removed: try again"),
                )
                .into());
            }
            delete_workspace(conn, ws).await?;
        }
        // Whatever refers to the user, children before parents.
        let by_user: [(&str, &'static str); 8] = [
            (
                "DELETE FROM user_identities WHERE user_id = $1",
                "deleting a user's public identity",
            ),
            (
                "DELETE FROM share_invitees WHERE proposal_id IN (SELECT id FROM share_proposals WHERE owner_id = $1)",
                "deleting a user's proposals' invitees",
            ),
            (
                "DELETE FROM share_proposals WHERE owner_id = $1",
                "deleting a user's share proposals",
            ),
            (
                "DELETE FROM workspace_members WHERE user_id = $1",
                "deleting a user's memberships",
            ),
            (
                "DELETE FROM share_invitees WHERE user_id = $1",
                "deleting a user's invitations",
            ),
            (
                "DELETE FROM oauth_access_tokens WHERE user_id = $1",
                "deleting a user's OAuth access tokens",
            ),
            (
                "DELETE FROM oauth_request_tokens WHERE user_id = $1",
                "deleting a user's OAuth request tokens",
            ),
            (
                "DELETE FROM devices WHERE user_id = $1",
                "deleting a user's devices",
            ),
        ];
        for (sql, context) in by_user {
            sqlx::query(sql)
                .bind(&uid)
                .execute(&mut *conn)
                .await
                .ctx(context)?;
        }
        // Invitations to the address not yet linked to the account.
        sqlx::query("DELETE FROM share_invitees WHERE email = $1")
            .bind(&email)
            .execute(&mut *conn)
            .await
            .ctx("deleting invitations to a removed user's address")?;
        let sessions = sqlx::query("DELETE FROM sessions WHERE user_id = $1 RETURNING token_hash")
            .bind(&uid)
            .fetch_all(&mut *conn)
            .await
            .ctx("ending a removed user's sessions")?;
        for row in &sessions {
            removed.ended_sessions.push(get(row, "token_hash")?);
        }
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(&uid)
            .execute(&mut *conn)
            .await
            .ctx("deleting a user")?;
        tx.commit().await.ctx("committing a user's removal")?;
        Ok(removed)
    }
}

/// The members of workspace `ws` other than `owner`, ordered by email.
async fn other_members(
    conn: &mut AnyConnection,
    ws: &str,
    owner: &str,
) -> Result<Vec<FormerMember>, StoreError> {
    let rows = sqlx::query(
        "SELECT u.id, u.email FROM workspace_members m JOIN users u ON u.id = m.user_id \
         WHERE m.workspace_id = $1 AND m.user_id <> $2 ORDER BY u.email",
    )
    .bind(ws)
    .bind(owner)
    .fetch_all(&mut *conn)
    .await
    .ctx("listing a workspace's other members")?;
    rows.iter()
        .map(|r| {
            Ok(FormerMember {
                user: parse_id("users", &get::<String>(r, "id")?)?,
                email: get(r, "email")?,
            })
        })
        .collect()
}

/// Why the removal of `email` is refused: every shared workspace they own,
/// with its other members.
fn refusal(email: &str, removed: &RemovedUser) -> String {
    let folders = removed
        .dissolved_shared
        .iter()
        .map(|d| {
            let members: Vec<&str> = d.members.iter().map(|m| m.email.as_str()).collect();
            format!("{} (shared with {})", d.workspace, members.join(", "))
        })
        .collect::<Vec<_>>();
    format!(
        "{email} owns {} workspace(s) shared with other users: {}; they must be unshared, \
         or deleted with the user for every member, before the user can be removed",
        folders.len(),
        folders.join("; ")
    )
}

/// Deletes one workspace of a user being removed (shared or not), with
/// its items, their versions and chunk lists, its chunk references, its
/// object ledger (the caller deletes the objects themselves), its key
/// statements, its members and the share proposals made from it.
async fn delete_workspace(conn: &mut AnyConnection, ws: &str) -> Result<(), StoreError> {
    let statements: [(&str, &'static str); 10] = [
        (
            "DELETE FROM key_statements WHERE workspace_id = $1",
            "deleting a workspace's key statements",
        ),
        (
            "DELETE FROM version_chunks WHERE item_id IN (SELECT id FROM items WHERE workspace_id = $1)",
            "deleting a workspace's chunk lists",
        ),
        (
            "DELETE FROM item_versions WHERE item_id IN (SELECT id FROM items WHERE workspace_id = $1)",
            "deleting a workspace's versions",
        ),
        (
            "DELETE FROM items WHERE workspace_id = $1",
            "deleting a workspace's items",
        ),
        (
            "DELETE FROM chunk_refs WHERE workspace_id = $1",
            "deleting a workspace's chunk references",
        ),
        (
            "DELETE FROM objects WHERE workspace_id = $1",
            "deleting a workspace's object ledger",
        ),
        (
            "DELETE FROM share_invitees WHERE proposal_id IN (SELECT id FROM share_proposals WHERE workspace_id = $1)",
            "deleting a workspace's invitees",
        ),
        (
            "DELETE FROM share_proposals WHERE workspace_id = $1",
            "deleting a workspace's share proposals",
        ),
        (
            "DELETE FROM workspace_members WHERE workspace_id = $1",
            "deleting a workspace's members",
        ),
        (
            "DELETE FROM workspaces WHERE id = $1",
            "deleting a workspace",
        ),
    ];
    for (sql, context) in statements {
        sqlx::query(sql)
            .bind(ws)
            .execute(&mut *conn)
            .await
            .ctx(context)?;
    }
    Ok(())
}
