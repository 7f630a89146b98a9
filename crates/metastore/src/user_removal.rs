//! Removing a user and everything that is theirs alone.
//!
//! A workspace the user owns that other people are members of is never
//! deleted with them: removal is refused until it is unshared (its members
//! would otherwise lose files they see as their own), and nothing changes.
//! Shared workspaces of other owners survive; only the membership goes.

use sqlx::AnyConnection;
use stacksync_proto::{Error, ErrorKind, UserId, WorkspaceId};

use crate::MetaStore;
use crate::error::{DbContext, StoreError};
use crate::rows::{get, parse_id};

/// What [`MetaStore::remove_user`] took away, for the caller to finish in
/// the blob store and wherever sessions left credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovedUser {
    /// Containers of the workspaces deleted with the user, whose objects
    /// are no longer referenced by anything.
    pub deleted_containers: Vec<String>,
    /// Other owners' workspaces the user was a member of, with their
    /// containers (the user's storage grants there are to be revoked).
    pub left_workspaces: Vec<(WorkspaceId, String)>,
    /// Token hashes of the sessions that ended.
    pub ended_sessions: Vec<String>,
}

impl MetaStore {
    /// Removes `user` with their devices, sessions, OAuth tokens, share
    /// proposals and invitations, memberships, public identity, and every
    /// workspace they own (items, versions, chunk references, key
    /// statements), in one transaction. Refused
    /// with `Conflict`, changing nothing, while they own a workspace other
    /// users are members of.
    pub async fn remove_user(&self, user: UserId) -> Result<RemovedUser, StoreError> {
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

        let owned = sqlx::query("SELECT id, container FROM workspaces WHERE owner_id = $1")
            .bind(&uid)
            .fetch_all(&mut *conn)
            .await
            .ctx("listing a user's workspaces")?;
        let mut removed = RemovedUser::default();
        let mut owned_ids = Vec::with_capacity(owned.len());
        for row in &owned {
            let id: String = get(row, "id")?;
            let others = sqlx::query(
                "SELECT u.email FROM workspace_members m JOIN users u ON u.id = m.user_id \
                 WHERE m.workspace_id = $1 AND m.user_id <> $2 ORDER BY u.email",
            )
            .bind(&id)
            .bind(&uid)
            .fetch_all(&mut *conn)
            .await
            .ctx("listing a workspace's other members")?;
            if !others.is_empty() {
                let emails = others
                    .iter()
                    .map(|r| get::<String>(r, "email"))
                    .collect::<Result<Vec<_>, _>>()?;
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "{email} owns workspace {id}, shared with {}: it must be unshared before the user can be removed (disable the user meanwhile)",
                        emails.join(", ")
                    ),
                )
                .into());
            }
            removed.deleted_containers.push(get(row, "container")?);
            owned_ids.push(id);
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

        for ws in &owned_ids {
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

/// Deletes one workspace of a user being removed, with its items, their
/// versions and chunk lists, its chunk references, its object ledger (the
/// caller deletes the objects themselves), its key statements and the
/// share proposals made from it.
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
