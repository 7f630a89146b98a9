//! Public identities and the key chains of end-to-end encrypted workspaces
//! (migration 0010): opaque bytes the server stores and relays, never
//! reads. What this module keeps is the shape of a chain: epochs 1, 2, 3,
//! ... with no gap and never rewritten, one writer winning each epoch.
//!
//! The append is one conditional `INSERT` (the epoch must be the latest + 1
//! when the statement runs) on the primary key (workspace, epoch): on
//! SQLite statements are serialized by its write lock, so the second of two
//! appends of one epoch finds the first and inserts nothing; on PostgreSQL
//! both may read the same latest epoch, and the primary key makes the
//! second wait for the first and fail as a duplicate. Either way the loser
//! reads what won and is answered as a retry (same bytes) or a conflict.
//! The caller checks membership and sizes; this module never trusts the
//! epoch it is handed.
//!
//! Next to each public identity its owner may keep the private half,
//! sealed under their passphrase (migration 0011), which is read back by
//! that user alone ([`MetaStore::own_identity`]). And a private workspace
//! becomes end-to-end encrypted here ([`MetaStore::encrypt_private_workspace`])
//! only while nothing was ever written to it: one conditional `UPDATE`,
//! so that no commit slips in between the check and the change (a commit
//! checked against the old setting is refused under the workspace's lock,
//! `MetaStore::commit_in_mode`).

use std::collections::HashMap;

use stacksync_proto::keys::{KeyStatement, PublishedIdentity, from_hex, to_hex};
use stacksync_proto::{EncryptionMode, Error, ErrorKind, Millis, UserId, Workspace, WorkspaceId};

use crate::error::{DbContext, StoreError};
use crate::rows::{corrupt, dynamic, get, lookup_db, parse_id, to_db, to_u64};
use crate::{MetaStore, now_ms};

/// What [`MetaStore::append_key_statement`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The statement is now the chain's latest.
    Stored,
    /// The same bytes were already stored at that epoch (a retry).
    AlreadyStored,
}

/// A page of a workspace's key chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChainPage {
    /// In increasing epoch order.
    pub statements: Vec<KeyStatement>,
    /// The chain's latest epoch (0 when it is empty).
    pub latest_epoch: u64,
}

/// A user's own identity as they published it, with the sealed copy of
/// its private half they keep on the server (theirs only to read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnIdentity {
    /// The public identity.
    pub identity: Vec<u8>,
    /// The private identity sealed under the user's passphrase, if kept.
    pub sealed: Option<Vec<u8>>,
    /// When the public identity last changed.
    pub changed_at: Millis,
}

impl MetaStore {
    /// Stores `user`'s public identity, replacing the previous one; when
    /// it last changed (publishing the same bytes again changes nothing).
    ///
    /// `sealed` (the private identity sealed for the user's own devices)
    /// replaces the stored copy; `None` keeps the stored copy if the
    /// identity is the one stored, and removes it otherwise (it sealed an
    /// identity that is no longer published). One statement either way.
    pub async fn publish_identity(
        &self,
        user: UserId,
        identity: &[u8],
        sealed: Option<&[u8]>,
    ) -> Result<Millis, StoreError> {
        let row = sqlx::query(
            "INSERT INTO user_identities (user_id, identity, changed_at, sealed) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id) DO UPDATE SET identity = excluded.identity, \
             changed_at = CASE WHEN user_identities.identity = excluded.identity \
                 THEN user_identities.changed_at ELSE excluded.changed_at END, \
             sealed = CASE WHEN excluded.sealed IS NOT NULL THEN excluded.sealed \
                 WHEN user_identities.identity = excluded.identity THEN user_identities.sealed \
                 ELSE NULL END \
             RETURNING changed_at",
        )
        .bind(user.to_string())
        .bind(to_hex(identity))
        .bind(now_ms())
        .bind(sealed.map(to_hex))
        .fetch_one(&self.pool)
        .await
        .ctx("publishing an identity")?;
        get(&row, "changed_at")
    }

    /// `user`'s own published identity and sealed private identity, if
    /// they published one. For that user only: the caller checks who asks.
    pub async fn own_identity(&self, user: UserId) -> Result<Option<OwnIdentity>, StoreError> {
        let row = sqlx::query(
            "SELECT identity, sealed, changed_at FROM user_identities WHERE user_id = $1",
        )
        .bind(user.to_string())
        .fetch_optional(&self.pool)
        .await
        .ctx("reading an own identity")?;
        let Some(row) = row else {
            return Ok(None);
        };
        let hex = |col: &'static str, text: String| {
            from_hex(&text).ok_or_else(|| corrupt("user_identities", format!("{col} is not hex")))
        };
        let sealed: Option<String> = get(&row, "sealed")?;
        Ok(Some(OwnIdentity {
            identity: hex("identity", get(&row, "identity")?)?,
            sealed: sealed.map(|s| hex("sealed", s)).transpose()?,
            changed_at: get(&row, "changed_at")?,
        }))
    }

    /// Makes `owner`'s private workspace `ws` end-to-end encrypted
    /// (`EncryptionMode::ClientSide`), only while nothing was ever
    /// committed to it (revision 0, no item), nobody else is a member and
    /// it has no key statement; the workspace as `owner` sees it after. A
    /// workspace already client-side encrypted is answered as it is (a
    /// retry). Otherwise `Conflict` for a workspace with content (items,
    /// another member, a key statement), `BadRequest` for one that is not
    /// `owner`'s private workspace, and `Forbidden` for one `owner` is not
    /// a member of (the caller checks membership and ownership first).
    ///
    /// The conditions and the change are one `UPDATE`: a commit that
    /// holds the workspace's lock makes it wait and then find the
    /// revision moved (PostgreSQL checks the row again once the lock is
    /// released; SQLite runs one writer at a time).
    pub async fn encrypt_private_workspace(
        &self,
        owner: UserId,
        ws: WorkspaceId,
    ) -> Result<Workspace, StoreError> {
        let done = sqlx::query(
            "UPDATE workspaces SET encryption = $3 \
             WHERE id = $1 AND owner_id = $2 AND is_shared = 0 AND encryption <> $3 \
             AND latest_revision = 0 \
             AND NOT EXISTS (SELECT 1 FROM items WHERE workspace_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM key_statements WHERE workspace_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM workspace_members WHERE workspace_id = $1 AND user_id <> $2)",
        )
        .bind(ws.to_string())
        .bind(owner.to_string())
        .bind(EncryptionMode::ClientSide.as_str())
        .execute(&self.pool)
        .await
        .ctx("encrypting a workspace")?;
        let now = self.workspace_as(owner, ws).await?;
        if done.rows_affected() == 1 || now.encryption == EncryptionMode::ClientSide {
            return Ok(now);
        }
        // Why not: read after the fact, for the message only.
        if now.owner != owner || now.is_shared {
            return Err(Error::bad_request(format!(
                "workspace {ws} is not your private workspace: only that can be made end-to-end \
                 encrypted"
            ))
            .into());
        }
        let others = sqlx::query(
            "SELECT COUNT(*) AS n FROM workspace_members WHERE workspace_id = $1 AND user_id <> $2",
        )
        .bind(ws.to_string())
        .bind(owner.to_string())
        .fetch_one(&self.pool)
        .await
        .ctx("counting a workspace's members")?;
        let others = to_u64("workspace_members", get(&others, "n")?)?;
        let statements = self.latest_key_epoch(ws).await?;
        let why = if others > 0 {
            format!("{others} other member(s) use it")
        } else if statements > 0 {
            format!("it has {statements} key statement(s)")
        } else {
            format!(
                "files were committed to it (revision {})",
                now.latest_revision
            )
        };
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "workspace {ws} cannot become end-to-end encrypted: {why}; only a workspace \
                 nothing was ever written to can"
            ),
        )
        .into())
    }

    /// For each of `users`, in order: their published identity if they
    /// have one and share a workspace with `caller` (or are `caller`),
    /// else `None`, so that asking cannot tell who exists. The caller
    /// bounds the list.
    pub async fn identities_visible_to(
        &self,
        caller: UserId,
        users: &[UserId],
    ) -> Result<Vec<Option<PublishedIdentity>>, StoreError> {
        let mut wanted: Vec<UserId> = users.to_vec();
        wanted.sort();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let marks = (0..wanted.len())
            .map(|i| format!("${}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT i.user_id, i.identity, i.changed_at FROM user_identities i \
             WHERE i.user_id IN ({marks}) AND (i.user_id = $1 OR EXISTS ( \
                 SELECT 1 FROM workspace_members mine JOIN workspace_members theirs \
                 ON theirs.workspace_id = mine.workspace_id \
                 WHERE mine.user_id = $1 AND theirs.user_id = i.user_id))"
        );
        let mut query = sqlx::query(dynamic(sql)).bind(caller.to_string());
        for u in &wanted {
            query = query.bind(u.to_string());
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .ctx("reading identities")?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in &rows {
            let user: UserId = parse_id("user_identities", &get::<String>(row, "user_id")?)?;
            let text: String = get(row, "identity")?;
            let identity =
                from_hex(&text).ok_or_else(|| corrupt("user_identities", "identity is not hex"))?;
            let changed_at = get(row, "changed_at")?;
            found.insert(
                user,
                PublishedIdentity {
                    user,
                    identity,
                    changed_at,
                },
            );
        }
        Ok(users.iter().map(|u| found.get(u).cloned()).collect())
    }

    /// The chain's latest epoch, 0 when it has none.
    pub async fn latest_key_epoch(&self, ws: WorkspaceId) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(epoch), 0) AS latest FROM key_statements WHERE workspace_id = $1",
        )
        .bind(ws.to_string())
        .fetch_one(&self.pool)
        .await
        .ctx("reading a key chain's latest epoch")?;
        to_u64("key_statements", get(&row, "latest")?)
    }

    /// The statements of `ws` with an epoch above `after`, in order: at
    /// most `limit` (at least one), stopping after the one that takes the
    /// page past `byte_budget` bytes.
    pub async fn key_statements(
        &self,
        ws: WorkspaceId,
        after: u64,
        limit: u32,
        byte_budget: u64,
    ) -> Result<KeyChainPage, StoreError> {
        // Which rows fit is decided on their sizes alone, so that the
        // statements past the budget are never read.
        let rows = sqlx::query(
            "SELECT epoch, statement FROM key_statements WHERE workspace_id = $1 AND epoch IN ( \
                 SELECT epoch FROM ( \
                     SELECT epoch, SUM(size) OVER (ORDER BY epoch ROWS UNBOUNDED PRECEDING) - size AS before \
                     FROM key_statements WHERE workspace_id = $1 AND epoch > $2 \
                     ORDER BY epoch LIMIT $3) page \
                 WHERE before < $4) \
             ORDER BY epoch",
        )
        .bind(ws.to_string())
        .bind(lookup_db(after))
        .bind(i64::from(limit.max(1)))
        .bind(lookup_db(byte_budget))
        .fetch_all(&self.pool)
        .await
        .ctx("reading a key chain")?;
        let statements = rows
            .iter()
            .map(statement_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let latest_epoch = self.latest_key_epoch(ws).await?;
        Ok(KeyChainPage {
            statements,
            latest_epoch,
        })
    }

    /// Appends `statement` as epoch `epoch` of `ws`'s chain, by `author`:
    /// stored if `epoch` is the latest + 1 (1 for an empty chain); the
    /// same bytes already at `epoch` are a retry; anything else is a
    /// `Conflict` that says the latest epoch.
    pub async fn append_key_statement(
        &self,
        ws: WorkspaceId,
        author: UserId,
        epoch: u64,
        statement: &[u8],
    ) -> Result<Appended, StoreError> {
        if epoch == 0 {
            return Err(Error::bad_request("key statement epochs start at 1").into());
        }
        let db_epoch = to_db("epoch", epoch)?;
        let inserted = sqlx::query(
            "INSERT INTO key_statements (workspace_id, epoch, statement, size, author_id, stored_at) \
             SELECT $1, $2, $3, $4, $5, $6 \
             WHERE (SELECT COALESCE(MAX(epoch), 0) FROM key_statements WHERE workspace_id = $1) = $2 - 1",
        )
        .bind(ws.to_string())
        .bind(db_epoch)
        .bind(to_hex(statement))
        .bind(to_db("statement size", statement.len() as u64)?)
        .bind(author.to_string())
        .bind(now_ms())
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(done) if done.rows_affected() == 1 => return Ok(Appended::Stored),
            Ok(_) => {}
            // Another append of this epoch won the primary key meanwhile.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
            Err(e) => return Err(e).ctx("appending a key statement"),
        }
        let stored = sqlx::query(
            "SELECT epoch, statement FROM key_statements WHERE workspace_id = $1 AND epoch = $2",
        )
        .bind(ws.to_string())
        .bind(db_epoch)
        .fetch_optional(&self.pool)
        .await
        .ctx("reading a stored key statement")?;
        if let Some(row) = stored
            && statement_from_row(&row)?.statement == statement
        {
            return Ok(Appended::AlreadyStored);
        }
        let latest = self.latest_key_epoch(ws).await?;
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "key statement epoch {epoch} refused for workspace {ws}: the latest epoch is \
                 {latest}, so the next must be {}; read the chain and try again",
                latest + 1
            ),
        )
        .into())
    }
}

fn statement_from_row(row: &sqlx::any::AnyRow) -> Result<KeyStatement, StoreError> {
    let epoch = to_u64("key_statements", get(row, "epoch")?)?;
    let text: String = get(row, "statement")?;
    let statement =
        from_hex(&text).ok_or_else(|| corrupt("key_statements", "statement is not hex"))?;
    Ok(KeyStatement { epoch, statement })
}
