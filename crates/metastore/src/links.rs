//! Shared links (migration 0015): a file or folder a user opened to anyone
//! holding a URL, the browser sessions of those who opened one, and the
//! per-link count of password attempts.
//!
//! The store keeps hashes only (the secret's, the password's, each
//! session token's) and decides nothing about who may see what: the
//! service checks the owner's access to the item on every request. What
//! must hold under concurrency holds in one statement: a password attempt
//! is admitted by one conditional update of the link's window, a revoke
//! deletes the link and its sessions in one transaction.

use sqlx::any::AnyRow;
use stacksync_proto::{Error, ItemId, UserId, WorkspaceId};
use uuid::Uuid;

use crate::MetaStore;
use crate::error::{DbContext, StoreError};
use crate::rows::{corrupt, dynamic, get, parent_to_db, parse_id};

/// Most ancestors walked from an item up to a link's folder.
const MAX_DEPTH: i64 = 4096;

/// Most name keys looked up at once by [`MetaStore::taken_name_keys`].
const MAX_KEYS: usize = 400;

/// What a link lets its holders do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkAccess {
    /// Read: open the file, or list the folder and download what it holds.
    View,
    /// Upload into the folder, and nothing else (a file request).
    Upload,
}

impl LinkAccess {
    /// The stored (and API) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkAccess::View => "view",
            LinkAccess::Upload => "upload",
        }
    }

    /// The access a spelling names.
    pub fn parse(s: &str) -> Option<LinkAccess> {
        match s {
            "view" => Some(LinkAccess::View),
            "upload" => Some(LinkAccess::Upload),
            _ => None,
        }
    }
}

/// A stored link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRecord {
    /// The link's id (in its URL).
    pub id: Uuid,
    /// Who made it; the link acts as them.
    pub owner: UserId,
    /// The API id it was made for: an item id or a shared folder's
    /// workspace id.
    pub item: Uuid,
    pub access: LinkAccess,
    /// BLAKE3 of the secret, hex.
    pub secret_hash: String,
    /// Argon2id PHC string of the password, if it has one.
    pub password_hash: Option<String>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// When it stops working (milliseconds), if ever.
    pub expires_at: Option<i64>,
}

impl LinkRecord {
    /// Whether it has expired at `now` (milliseconds).
    pub fn expired_at(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// One folder on the way from an item up to a link's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStep {
    pub id: ItemId,
    pub name: String,
}

/// What a password attempt on a link may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Counted; go on and check the password.
    Admitted,
    /// The window is full until this time (milliseconds); nothing counted.
    Refused { until: i64 },
    /// No such link.
    NoLink,
}

const LINK_COLS: &str =
    "id, owner_id, item_id, access, secret_hash, password_hash, created_at, expires_at";

fn link_from_row(row: &AnyRow) -> Result<LinkRecord, StoreError> {
    let access: String = get(row, "access")?;
    Ok(LinkRecord {
        id: parse_id("shared_links", &get::<String>(row, "id")?)?,
        owner: parse_id("shared_links", &get::<String>(row, "owner_id")?)?,
        item: parse_id("shared_links", &get::<String>(row, "item_id")?)?,
        access: LinkAccess::parse(&access)
            .ok_or_else(|| corrupt("shared_links", format!("access {access:?}")))?,
        secret_hash: get(row, "secret_hash")?,
        password_hash: get(row, "password_hash")?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
    })
}

impl MetaStore {
    /// Stores a new link.
    pub async fn create_link(&self, link: &LinkRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO shared_links (id, owner_id, item_id, access, secret_hash, password_hash, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(link.id.to_string())
        .bind(link.owner.to_string())
        .bind(link.item.to_string())
        .bind(link.access.as_str())
        .bind(&link.secret_hash)
        .bind(&link.password_hash)
        .bind(link.created_at)
        .bind(link.expires_at)
        .execute(&self.pool)
        .await
        .ctx("creating a shared link")?;
        Ok(())
    }

    /// A link by id, expired or not.
    pub async fn link(&self, id: Uuid) -> Result<Option<LinkRecord>, StoreError> {
        let row = sqlx::query(dynamic(format!(
            "SELECT {LINK_COLS} FROM shared_links WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .ctx("reading a shared link")?;
        row.as_ref().map(link_from_row).transpose()
    }

    /// A user's links, newest first.
    pub async fn links_of(&self, owner: UserId) -> Result<Vec<LinkRecord>, StoreError> {
        let rows = sqlx::query(dynamic(format!(
            "SELECT {LINK_COLS} FROM shared_links WHERE owner_id = $1 ORDER BY created_at DESC, id DESC"
        )))
        .bind(owner.to_string())
        .fetch_all(&self.pool)
        .await
        .ctx("listing a user's shared links")?;
        rows.iter().map(link_from_row).collect()
    }

    /// Deletes `owner`'s link `id` with its sessions; false when they have
    /// no such link.
    pub async fn delete_link(&self, owner: UserId, id: Uuid) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.ctx("beginning a transaction")?;
        let owned = sqlx::query("SELECT id FROM shared_links WHERE id = $1 AND owner_id = $2")
            .bind(id.to_string())
            .bind(owner.to_string())
            .fetch_optional(&mut *tx)
            .await
            .ctx("finding a shared link to revoke")?;
        if owned.is_none() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM link_sessions WHERE link_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .ctx("ending a shared link's sessions")?;
        sqlx::query("DELETE FROM shared_links WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .ctx("deleting a shared link")?;
        tx.commit().await.ctx("committing a link's revocation")?;
        Ok(true)
    }

    /// Counts a password attempt on link `id` at `now` if its window has
    /// room: at most `max` attempts per `window_ms`. One conditional
    /// update, so concurrent attempts (on any server) never exceed it.
    pub async fn admit_link_attempt(
        &self,
        id: Uuid,
        now: i64,
        window_ms: i64,
        max: u32,
    ) -> Result<Attempt, StoreError> {
        let window_start = now.saturating_sub(window_ms);
        // SET expressions read the row as it was before the update.
        let done = sqlx::query(
            "UPDATE shared_links SET \
             attempts = CASE WHEN attempts_since <= $2 THEN 1 ELSE attempts + 1 END, \
             attempts_since = CASE WHEN attempts_since <= $2 THEN $3 ELSE attempts_since END \
             WHERE id = $1 AND (attempts_since <= $2 OR attempts < $4)",
        )
        .bind(id.to_string())
        .bind(window_start)
        .bind(now)
        .bind(i64::from(max))
        .execute(&self.pool)
        .await
        .ctx("counting a link password attempt")?;
        if done.rows_affected() == 1 {
            return Ok(Attempt::Admitted);
        }
        let row = sqlx::query("SELECT attempts_since FROM shared_links WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .ctx("reading a link's password window")?;
        Ok(match row {
            Some(row) => Attempt::Refused {
                until: get::<i64>(&row, "attempts_since")?.saturating_add(window_ms),
            },
            None => Attempt::NoLink,
        })
    }

    /// Gives back an attempt [`MetaStore::admit_link_attempt`] counted (the
    /// password was right: only failures fill the window).
    pub async fn forgive_link_attempt(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE shared_links SET attempts = attempts - 1 WHERE id = $1 AND attempts > 0",
        )
        .bind(id.to_string())
        .execute(&self.pool)
        .await
        .ctx("forgiving a link password attempt")?;
        Ok(())
    }

    /// Stores a browser's session of link `link` (the token's hash).
    pub async fn create_link_session(
        &self,
        link: Uuid,
        token_hash: &str,
        created_at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO link_sessions (token_hash, link_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(link.to_string())
        .bind(created_at)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .ctx("creating a link session")?;
        Ok(())
    }

    /// The link a live session of link `link` opens at `now`: `None` when
    /// the token is unknown, of another link, or expired, or the link
    /// expired or was revoked.
    pub async fn link_of_session(
        &self,
        link: Uuid,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<LinkRecord>, StoreError> {
        let cols = LINK_COLS
            .split(", ")
            .map(|c| format!("l.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let row = sqlx::query(dynamic(format!(
            "SELECT {cols} FROM link_sessions s JOIN shared_links l ON l.id = s.link_id \
             WHERE s.token_hash = $1 AND s.link_id = $2 AND s.expires_at > $3 \
             AND (l.expires_at IS NULL OR l.expires_at > $3)"
        )))
        .bind(token_hash)
        .bind(link.to_string())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .ctx("reading a link session")?;
        row.as_ref().map(link_from_row).transpose()
    }

    /// Deletes link sessions that expired before `before`; how many.
    pub async fn prune_link_sessions(&self, before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM link_sessions WHERE expires_at <= $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .ctx("pruning link sessions")?;
        Ok(done.rows_affected())
    }

    /// The live folders from `item` (included) up to `root` (included;
    /// `None`: the top of workspace `ws`, which is not a step), nearest
    /// first, if `item` is live in `ws` and inside `root`; `None`
    /// otherwise (elsewhere, deleted, or under a deleted folder). One
    /// statement, however deep.
    pub async fn path_within(
        &self,
        ws: WorkspaceId,
        item: ItemId,
        root: Option<ItemId>,
    ) -> Result<Option<Vec<PathStep>>, StoreError> {
        let rows = sqlx::query(
            "WITH RECURSIVE up (id, parent_id, name, depth) AS ( \
               SELECT id, parent_id, name, 0 FROM items \
                 WHERE id = $1 AND workspace_id = $2 AND status <> 'DELETED' \
               UNION ALL \
               SELECT i.id, i.parent_id, i.name, up.depth + 1 FROM items i JOIN up ON i.id = up.parent_id \
                 WHERE i.workspace_id = $2 AND i.status <> 'DELETED' AND up.depth < $3 AND up.id <> $4 \
             ) SELECT id, parent_id, name FROM up ORDER BY depth",
        )
        .bind(item.to_string())
        .bind(ws.to_string())
        .bind(MAX_DEPTH)
        .bind(root.map(|r| r.to_string()).unwrap_or_default())
        .fetch_all(&self.pool)
        .await
        .ctx("walking up from an item")?;
        let mut path = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: ItemId = parse_id("items", &get::<String>(row, "id")?)?;
            let parent: String = get(row, "parent_id")?;
            path.push(PathStep {
                id,
                name: get(row, "name")?,
            });
            let arrived = match root {
                Some(root) => id == root,
                None => parent == parent_to_db(None),
            };
            if arrived {
                return Ok(Some(path));
            }
        }
        Ok(None)
    }

    /// The shared workspace folder `folder` became when it was shared, if
    /// `user` is a member of it now (a folder that is shared leaves its
    /// owner's tree as a deleted version, and comes back, ids kept, when
    /// its last member leaves).
    pub async fn workspace_shared_from(
        &self,
        folder: ItemId,
        user: UserId,
    ) -> Result<Option<WorkspaceId>, StoreError> {
        let row = sqlx::query(
            "SELECT p.shared_workspace_id FROM share_proposals p \
             JOIN workspace_members m ON m.workspace_id = p.shared_workspace_id \
             WHERE p.folder_id = $1 AND m.user_id = $2 \
             ORDER BY p.created_at DESC LIMIT 1",
        )
        .bind(folder.to_string())
        .bind(user.to_string())
        .fetch_optional(&self.pool)
        .await
        .ctx("finding what a folder was shared as")?;
        row.map(|r| {
            parse_id(
                "share_proposals",
                &get::<String>(&r, "shared_workspace_id")?,
            )
        })
        .transpose()
    }

    /// The folder shared workspace `ws` was made from, if it was one.
    pub async fn folder_shared_as(&self, ws: Uuid) -> Result<Option<ItemId>, StoreError> {
        let row = sqlx::query(
            "SELECT folder_id FROM share_proposals WHERE shared_workspace_id = $1 LIMIT 1",
        )
        .bind(ws.to_string())
        .fetch_optional(&self.pool)
        .await
        .ctx("finding the folder a workspace was shared from")?;
        row.map(|r| parse_id("share_proposals", &get::<String>(&r, "folder_id")?))
            .transpose()
    }

    /// Which of `keys` (folded names, `stacksync_proto::fold_key`) live
    /// children of `parent` in `ws` hold.
    pub async fn taken_name_keys(
        &self,
        ws: WorkspaceId,
        parent: Option<ItemId>,
        keys: &[String],
    ) -> Result<Vec<String>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if keys.len() > MAX_KEYS {
            return Err(Error::bad_request(format!(
                "at most {MAX_KEYS} names are looked up at once"
            ))
            .into());
        }
        let list = (0..keys.len())
            .map(|i| format!("${}", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let mut query = sqlx::query(dynamic(format!(
            "SELECT name_key FROM items WHERE workspace_id = $1 AND parent_id = $2 \
             AND status <> 'DELETED' AND name_key IN ({list})"
        )))
        .bind(ws.to_string())
        .bind(parent_to_db(parent));
        for key in keys {
            query = query.bind(key.clone());
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .ctx("looking up names in a folder")?;
        rows.iter().map(|r| get(r, "name_key")).collect()
    }
}
