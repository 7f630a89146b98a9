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

use std::collections::HashMap;

use stacksync_proto::keys::{KeyStatement, PublishedIdentity, from_hex, to_hex};
use stacksync_proto::{Error, ErrorKind, Millis, UserId, WorkspaceId};

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

impl MetaStore {
    /// Stores `user`'s public identity, replacing the previous one; when
    /// it last changed (publishing the same bytes again changes nothing).
    pub async fn publish_identity(
        &self,
        user: UserId,
        identity: &[u8],
    ) -> Result<Millis, StoreError> {
        let row = sqlx::query(
            "INSERT INTO user_identities (user_id, identity, changed_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET identity = excluded.identity, \
             changed_at = CASE WHEN user_identities.identity = excluded.identity \
                 THEN user_identities.changed_at ELSE excluded.changed_at END \
             RETURNING changed_at",
        )
        .bind(user.to_string())
        .bind(to_hex(identity))
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .ctx("publishing an identity")?;
        get(&row, "changed_at")
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
