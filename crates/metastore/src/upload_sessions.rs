//! Resumable upload sessions of the REST API v2 (migration 0014): a session
//! row per file being sent in pieces, and a row per staged object (a
//! piece, whole or being written) in the server's staging container.
//!
//! Every rule that matters under concurrency is one conditional statement,
//! so any number of stateless service instances can serve one session:
//! - a session is created in a transaction that locks its user's and its
//!   quota owner's rows (in id order), so the cap on open sessions and the
//!   quota reservation hold however many creations race;
//! - a piece counts only if the session still holds exactly the bytes
//!   before the piece's offset (`received = offset`), checked and advanced
//!   by one update in the transaction that marks the piece whole: of two
//!   pieces racing at one offset, one counts and the other is released;
//! - a staged object is recorded before it is written and released (its
//!   `release_after` set) in the transaction that ends its session, so the
//!   object of every row is deleted eventually and no object is left
//!   without a row (short of a crash between a writer's failure and its
//!   own clean-up, which its deadline covers).
//!
//! Times are passed in (milliseconds since the epoch): the caller's clock
//! decides what expired, and tests can move it.

use sqlx::AnyConnection;
use stacksync_proto::{ChunkId, Error, ItemId, ItemMeta, ItemName, UserId, WorkspaceId};
use uuid::Uuid;

use crate::MetaStore;
use crate::error::{DbContext, StoreError};
use crate::feed::attach_chunks;
use crate::rows::{
    ITEM_COLS, corrupt, dynamic, flag, get, item_from_row, parent_to_db, parse_id, to_db, to_u64,
};

/// `release_after` of a whole piece of a live session: never.
const KEEP: i64 = i64::MAX;

/// Where a session's bytes go once they are all there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadTarget {
    /// A new file.
    NewFile {
        /// The folder's API id (`None`: the caller's top folder).
        parent: Option<Uuid>,
        /// The file's name (validated by the caller).
        name: String,
        /// Whether a taken name becomes "name (1).ext" at finish.
        autorename: bool,
    },
    /// A new version of a file.
    NewVersion {
        /// The file's id.
        file: Uuid,
        /// The version the caller based it on, if it said.
        if_match: Option<u64>,
    },
}

/// A session about to be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUploadSession {
    /// Its id.
    pub id: Uuid,
    /// Whose it is.
    pub user: UserId,
    /// The workspace the file goes to.
    pub workspace: WorkspaceId,
    /// That workspace's owner, whose quota the bytes are reserved against.
    pub quota_owner: UserId,
    /// Where the bytes go.
    pub target: UploadTarget,
    /// The file's MIME type, if the client said it.
    pub mimetype: Option<String>,
    /// The file's size in bytes.
    pub size: u64,
    /// When it expires unless a piece arrives.
    pub expires_at: i64,
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSessionRow {
    /// Its id.
    pub id: Uuid,
    /// Whose it is.
    pub user: UserId,
    /// The workspace the file goes to (as it was at creation).
    pub workspace: WorkspaceId,
    /// Whose quota its size is reserved against.
    pub quota_owner: UserId,
    /// Where the bytes go.
    pub target: UploadTarget,
    /// The file's MIME type, if the client said it.
    pub mimetype: Option<String>,
    /// The file's size in bytes.
    pub size: u64,
    /// Bytes held: the whole pieces, back to back from 0.
    pub received: u64,
    /// How many whole pieces hold them.
    pub pieces: u64,
    /// When it was created.
    pub created_at: i64,
    /// When it expires unless a piece arrives.
    pub expires_at: i64,
    /// Until when a finish holds it (`None`: nobody finishes it).
    pub finishing_until: Option<i64>,
}

/// A whole piece of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagedPiece {
    /// The staged object holding its bytes.
    pub object: ChunkId,
    /// Where it starts in the file.
    pub offset: u64,
    /// How many bytes it holds.
    pub size: u64,
}

/// Why a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEndCause {
    /// Its user cancelled it.
    Cancelled,
    /// A finish committed its file, remembered as this (migration 0016).
    Finished(CommittedUpload),
}

/// What a finished session committed, remembered until `remembered_until`
/// so that a retried finish can answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommittedUpload {
    /// The file's API id.
    pub item: Uuid,
    /// The version the finish committed.
    pub version: u64,
    /// A new file (`true`) or a new version of one.
    pub created: bool,
    /// Until when it is remembered (milliseconds since the epoch).
    pub remembered_until: i64,
}

/// Whether a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// It ended; its pieces are released.
    Ended,
    /// The caller has no such open session.
    Missing,
    /// A finish holds it.
    Finishing,
}

const SESSION_COLS: &str = "id, user_id, workspace_id, quota_owner_id, parent_id, name, autorename, \
     file_id, if_match, mimetype, size, received, pieces, created_at, expires_at, finishing_until";

fn session_from_row(row: &sqlx::any::AnyRow) -> Result<UploadSessionRow, StoreError> {
    const T: &str = "upload_sessions";
    let name: Option<String> = get(row, "name")?;
    let file: Option<String> = get(row, "file_id")?;
    let target = match (name, file) {
        (Some(name), None) => {
            let parent: Option<String> = get(row, "parent_id")?;
            UploadTarget::NewFile {
                parent: parent.map(|p| parse_id(T, &p)).transpose()?,
                name,
                autorename: flag(row, "autorename")?,
            }
        }
        (None, Some(file)) => UploadTarget::NewVersion {
            file: parse_id(T, &file)?,
            if_match: get::<Option<i64>>(row, "if_match")?
                .map(|v| to_u64(T, v))
                .transpose()?,
        },
        _ => return Err(corrupt(T, "a session names a new file and a file both")),
    };
    Ok(UploadSessionRow {
        id: parse_id(T, &get::<String>(row, "id")?)?,
        user: parse_id(T, &get::<String>(row, "user_id")?)?,
        workspace: parse_id(T, &get::<String>(row, "workspace_id")?)?,
        quota_owner: parse_id(T, &get::<String>(row, "quota_owner_id")?)?,
        target,
        mimetype: get(row, "mimetype")?,
        size: to_u64(T, get(row, "size")?)?,
        received: to_u64(T, get(row, "received")?)?,
        pieces: to_u64(T, get(row, "pieces")?)?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
        finishing_until: get(row, "finishing_until")?,
    })
}

fn signed(what: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| Error::bad_request(format!("{what} {v} is too large")).into())
}

/// Locks the rows of `users` (in id order, so that two transactions never
/// wait for each other) until the transaction ends.
async fn lock_users(conn: &mut AnyConnection, users: &[UserId]) -> Result<(), StoreError> {
    let mut ids: Vec<String> = users.iter().map(|u| u.to_string()).collect();
    ids.sort();
    ids.dedup();
    for id in ids {
        let locked = sqlx::query("UPDATE users SET quota_used = quota_used WHERE id = $1")
            .bind(&id)
            .execute(&mut *conn)
            .await
            .ctx("locking a user")?;
        if locked.rows_affected() == 0 {
            return Err(Error::not_found(format!("no user {id}")).into());
        }
    }
    Ok(())
}

/// Releases the whole pieces of session `id` (just ended) at `now`.
async fn release_pieces(conn: &mut AnyConnection, id: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE upload_pieces SET release_after = $1 \
         WHERE session_id = $2 AND start_offset IS NOT NULL AND release_after = $3",
    )
    .bind(now)
    .bind(id)
    .bind(KEEP)
    .execute(&mut *conn)
    .await
    .ctx("releasing a session's pieces")?;
    Ok(())
}

impl MetaStore {
    /// Creates an upload session, unless its user has `max_open` open
    /// sessions already (`TooManyRequests`, to retry when the soonest of
    /// them expires) or its size does not fit what is left of the quota
    /// owner's quota once the other open sessions into their storage are
    /// reserved (`QuotaExceeded`).
    pub async fn create_upload_session(
        &self,
        new: &NewUploadSession,
        max_open: u64,
        now: i64,
    ) -> Result<UploadSessionRow, StoreError> {
        let size = signed("a size of", new.size)?;
        let mut tx = self.pool.begin().await.ctx("beginning a session")?;
        lock_users(&mut tx, &[new.user, new.quota_owner]).await?;
        let open = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(expires_at) AS soonest FROM upload_sessions \
             WHERE user_id = $1 AND expires_at > $2",
        )
        .bind(new.user.to_string())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .ctx("counting open sessions")?;
        let count: i64 = get(&open, "n")?;
        if u64::try_from(count).unwrap_or(0) >= max_open {
            let soonest: Option<i64> = get(&open, "soonest")?;
            let wait = soonest.map_or(1, |t| (t - now).max(0) / 1000 + 1);
            return Err(Error::too_many_requests(
                format!(
                    "{count} upload sessions are open, the most one may have: finish or cancel \
                     one, or wait until one expires"
                ),
                u64::try_from(wait).unwrap_or(1),
            )
            .into());
        }
        let reserved = sqlx::query(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS reserved FROM upload_sessions \
             WHERE quota_owner_id = $1 AND expires_at > $2",
        )
        .bind(new.quota_owner.to_string())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .ctx("reading reserved bytes")?;
        let reserved: i64 = get(&reserved, "reserved")?;
        let quota = sqlx::query("SELECT quota_limit, quota_used FROM users WHERE id = $1")
            .bind(new.quota_owner.to_string())
            .fetch_one(&mut *tx)
            .await
            .ctx("reading a quota")?;
        let (limit, used): (i64, i64) = (get(&quota, "quota_limit")?, get(&quota, "quota_used")?);
        let free = limit.saturating_sub(used).saturating_sub(reserved);
        if size > free {
            let message = if new.quota_owner != new.user {
                format!(
                    "the shared folder's owner's storage quota has no room for {size} more bytes; \
                     the owner must free space or get a larger quota"
                )
            } else {
                format!(
                    "{size} bytes would exceed the quota: {used} of {limit} bytes used, {reserved} \
                     reserved by open upload sessions"
                )
            };
            return Err(Error::quota_exceeded(message).into());
        }
        let (parent, name, autorename, file, if_match) = match &new.target {
            UploadTarget::NewFile {
                parent,
                name,
                autorename,
            } => (
                parent.map(|p| p.to_string()),
                Some(name.clone()),
                i64::from(*autorename),
                None,
                None,
            ),
            UploadTarget::NewVersion { file, if_match } => (
                None,
                None,
                0,
                Some(file.to_string()),
                if_match.map(|v| signed("a version", v)).transpose()?,
            ),
        };
        let row = sqlx::query(dynamic(format!(
            "INSERT INTO upload_sessions (id, user_id, workspace_id, quota_owner_id, parent_id, \
             name, autorename, file_id, if_match, mimetype, size, received, pieces, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, 0, $12, $13) \
             RETURNING {SESSION_COLS}"
        )))
        .bind(new.id.to_string())
        .bind(new.user.to_string())
        .bind(new.workspace.to_string())
        .bind(new.quota_owner.to_string())
        .bind(parent)
        .bind(name)
        .bind(autorename)
        .bind(file)
        .bind(if_match)
        .bind(new.mimetype.clone())
        .bind(size)
        .bind(now)
        .bind(new.expires_at)
        .fetch_one(&mut *tx)
        .await
        .ctx("creating an upload session")?;
        let created = session_from_row(&row)?;
        tx.commit().await.ctx("committing an upload session")?;
        Ok(created)
    }

    /// `user`'s session `id`, unless it expired (`None` also for another
    /// user's session: it is none of theirs).
    pub async fn upload_session(
        &self,
        id: Uuid,
        user: UserId,
        now: i64,
    ) -> Result<Option<UploadSessionRow>, StoreError> {
        let row = sqlx::query(dynamic(format!(
            "SELECT {SESSION_COLS} FROM upload_sessions \
             WHERE id = $1 AND user_id = $2 AND expires_at > $3"
        )))
        .bind(id.to_string())
        .bind(user.to_string())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .ctx("reading an upload session")?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Records that `object` is about to be written as a piece of `user`'s
    /// session `id`, to be whole by `deadline` (else it is released).
    /// Refused (`NotFound`) for a session that is not open, and
    /// (`TooManyRequests`) while `max_writing` pieces of it are being
    /// written.
    pub async fn stage_upload_piece(
        &self,
        id: Uuid,
        user: UserId,
        object: ChunkId,
        deadline: i64,
        max_writing: u64,
        now: i64,
    ) -> Result<(), StoreError> {
        let max_writing = signed("a count of", max_writing)?;
        let staged = sqlx::query(
            "INSERT INTO upload_pieces (object_id, session_id, created_at, release_after) \
             SELECT $1, s.id, $2, $3 FROM upload_sessions s \
             WHERE s.id = $4 AND s.user_id = $5 AND s.expires_at > $2 \
             AND (SELECT COUNT(*) FROM upload_pieces p WHERE p.session_id = $4 \
                  AND p.start_offset IS NULL AND p.release_after > $2) < $6",
        )
        .bind(object.to_hex())
        .bind(now)
        .bind(deadline)
        .bind(id.to_string())
        .bind(user.to_string())
        .bind(max_writing)
        .execute(&self.pool)
        .await
        .ctx("staging a piece")?;
        if staged.rows_affected() == 1 {
            return Ok(());
        }
        if self.upload_session(id, user, now).await?.is_none() {
            return Err(Error::not_found(format!("no upload session {id}")).into());
        }
        Err(Error::too_many_requests(
            format!("{max_writing} pieces of upload session {id} are being sent already"),
            5,
        )
        .into())
    }

    /// Makes staged `object` the piece of `user`'s session `id` at
    /// `offset` (`size` bytes) and moves the session's expiry to
    /// `expires_at`, if the session holds exactly `offset` bytes, has room
    /// for them, fewer than `max_pieces` pieces, nobody finishing it, and
    /// the object was not released meanwhile. `None`: refused, nothing
    /// changed (the caller releases the object).
    #[allow(clippy::too_many_arguments)]
    pub async fn record_upload_piece(
        &self,
        id: Uuid,
        user: UserId,
        object: ChunkId,
        offset: u64,
        size: u64,
        max_pieces: u64,
        expires_at: i64,
        now: i64,
    ) -> Result<Option<UploadSessionRow>, StoreError> {
        let (offset, size) = (signed("an offset of", offset)?, signed("a size of", size)?);
        let max_pieces = signed("a count of", max_pieces)?;
        let mut tx = self.pool.begin().await.ctx("beginning a piece")?;
        let moved = sqlx::query(dynamic(format!(
            "UPDATE upload_sessions SET received = received + $1, pieces = pieces + 1, \
             expires_at = $2 WHERE id = $3 AND user_id = $4 AND received = $5 \
             AND received + $1 <= size AND pieces < $6 AND expires_at > $7 \
             AND (finishing_until IS NULL OR finishing_until <= $7) RETURNING {SESSION_COLS}"
        )))
        .bind(size)
        .bind(expires_at)
        .bind(id.to_string())
        .bind(user.to_string())
        .bind(offset)
        .bind(max_pieces)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .ctx("advancing an upload session")?;
        let Some(moved) = moved else {
            return Ok(None);
        };
        let whole = sqlx::query(
            "UPDATE upload_pieces SET start_offset = $1, size = $2, release_after = $3 \
             WHERE object_id = $4 AND session_id = $5 AND start_offset IS NULL \
             AND release_after > $6",
        )
        .bind(offset)
        .bind(size)
        .bind(KEEP)
        .bind(object.to_hex())
        .bind(id.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .ctx("recording a piece")?;
        if whole.rows_affected() != 1 {
            tx.rollback().await.ctx("refusing a piece")?;
            return Ok(None);
        }
        let session = session_from_row(&moved)?;
        tx.commit().await.ctx("committing a piece")?;
        Ok(Some(session))
    }

    /// Forgets a staged object that never became a whole piece (its writer
    /// deleted it, or never wrote it).
    pub async fn drop_upload_piece(&self, object: ChunkId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM upload_pieces WHERE object_id = $1 AND start_offset IS NULL")
            .bind(object.to_hex())
            .execute(&self.pool)
            .await
            .ctx("dropping a staged piece")?;
        Ok(())
    }

    /// The whole pieces of session `id`, in file order.
    pub async fn upload_pieces(&self, id: Uuid) -> Result<Vec<StagedPiece>, StoreError> {
        const T: &str = "upload_pieces";
        let rows = sqlx::query(
            "SELECT object_id, start_offset, size FROM upload_pieces \
             WHERE session_id = $1 AND start_offset IS NOT NULL AND release_after = $2 \
             ORDER BY start_offset",
        )
        .bind(id.to_string())
        .bind(KEEP)
        .fetch_all(&self.pool)
        .await
        .ctx("listing a session's pieces")?;
        rows.iter()
            .map(|r| {
                let object: String = get(r, "object_id")?;
                Ok(StagedPiece {
                    object: ChunkId::from_hex(&object).map_err(|e| corrupt(T, e.to_string()))?,
                    offset: to_u64(T, get(r, "start_offset")?)?,
                    size: to_u64(T, get(r, "size")?)?,
                })
            })
            .collect()
    }

    /// Claims `user`'s complete session `id` for the finish named `token`
    /// until `until` (renews it when `token` holds it already), keeping the
    /// session from expiring meanwhile. `false`: not claimed (another
    /// finish holds it, or the session is not open and complete).
    pub async fn claim_upload_finish(
        &self,
        id: Uuid,
        user: UserId,
        token: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let claimed = sqlx::query(
            "UPDATE upload_sessions SET finisher = $1, finishing_until = $2, \
             expires_at = CASE WHEN expires_at < $2 THEN $2 ELSE expires_at END \
             WHERE id = $3 AND user_id = $4 AND expires_at > $5 AND received = size \
             AND (finisher IS NULL OR finishing_until <= $5 OR finisher = $1)",
        )
        .bind(token)
        .bind(until)
        .bind(id.to_string())
        .bind(user.to_string())
        .bind(now)
        .execute(&self.pool)
        .await
        .ctx("claiming a session's finish")?;
        Ok(claimed.rows_affected() == 1)
    }

    /// Gives up the claim `token` holds on session `id`.
    pub async fn release_upload_finish(&self, id: Uuid, token: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE upload_sessions SET finisher = NULL, finishing_until = NULL \
             WHERE id = $1 AND finisher = $2",
        )
        .bind(id.to_string())
        .bind(token)
        .execute(&self.pool)
        .await
        .ctx("releasing a session's finish")?;
        Ok(())
    }

    /// Ends `user`'s session `id` and releases its pieces, for `cause`: a
    /// cancel is refused while a finish holds the session; a finish that
    /// committed the file ends it whoever claims it now (another finish
    /// that took over a lapsed claim then fails to read the pieces, rather
    /// than commit the file twice).
    pub async fn end_upload_session(
        &self,
        id: Uuid,
        user: UserId,
        cause: SessionEndCause,
        now: i64,
    ) -> Result<SessionEnd, StoreError> {
        let mut tx = self.pool.begin().await.ctx("beginning to end a session")?;
        let ended = match cause {
            SessionEndCause::Cancelled => sqlx::query(
                "DELETE FROM upload_sessions WHERE id = $1 AND user_id = $2 AND expires_at > $3 \
                 AND (finishing_until IS NULL OR finishing_until <= $3)",
            )
            .bind(id.to_string())
            .bind(user.to_string())
            .bind(now),
            SessionEndCause::Finished(_) => {
                sqlx::query("DELETE FROM upload_sessions WHERE id = $1 AND user_id = $2")
                    .bind(id.to_string())
                    .bind(user.to_string())
            }
        }
        .execute(&mut *tx)
        .await
        .ctx("ending a session")?;
        if ended.rows_affected() == 0 {
            tx.rollback().await.ctx("leaving a session")?;
            return Ok(match self.upload_session(id, user, now).await? {
                Some(_) => SessionEnd::Finishing,
                None => SessionEnd::Missing,
            });
        }
        if let SessionEndCause::Finished(committed) = cause {
            sqlx::query(
                "INSERT INTO finished_upload_sessions \
                 (id, user_id, item_id, version, created, remembered_until) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id.to_string())
            .bind(user.to_string())
            .bind(committed.item.to_string())
            .bind(to_db("a version", committed.version)?)
            .bind(i64::from(committed.created))
            .bind(committed.remembered_until)
            .execute(&mut *tx)
            .await
            .ctx("remembering a finished session")?;
        }
        release_pieces(&mut tx, &id.to_string(), now).await?;
        tx.commit().await.ctx("committing a session's end")?;
        Ok(SessionEnd::Ended)
    }

    /// What `user`'s session `id` committed, if it finished and is still
    /// remembered at `now` (`None` also for another user's session).
    pub async fn finished_upload_session(
        &self,
        id: Uuid,
        user: UserId,
        now: i64,
    ) -> Result<Option<CommittedUpload>, StoreError> {
        const T: &str = "finished_upload_sessions";
        let row = sqlx::query(
            "SELECT item_id, version, created, remembered_until FROM finished_upload_sessions \
             WHERE id = $1 AND user_id = $2 AND remembered_until > $3",
        )
        .bind(id.to_string())
        .bind(user.to_string())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .ctx("reading a finished session")?;
        row.map(|row| {
            Ok(CommittedUpload {
                item: parse_id(T, &get::<String>(&row, "item_id")?)?,
                version: to_u64(T, get(&row, "version")?)?,
                created: flag(&row, "created")?,
                remembered_until: get(&row, "remembered_until")?,
            })
        })
        .transpose()
    }

    /// Ends the sessions that expired at `now` and those of users who no
    /// longer exist, releasing their pieces, and forgets the finished
    /// sessions remembered until `now` or of users who no longer exist.
    /// Returns how many sessions ended.
    pub async fn expire_upload_sessions(&self, now: i64) -> Result<u64, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .ctx("beginning to expire sessions")?;
        let ended = sqlx::query(
            "DELETE FROM upload_sessions WHERE expires_at <= $1 \
             OR NOT EXISTS (SELECT 1 FROM users u WHERE u.id = upload_sessions.user_id) \
             RETURNING id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .ctx("expiring sessions")?;
        for row in &ended {
            release_pieces(&mut tx, &get::<String>(row, "id")?, now).await?;
        }
        sqlx::query(
            "DELETE FROM finished_upload_sessions WHERE remembered_until <= $1 \
             OR NOT EXISTS (SELECT 1 FROM users u WHERE u.id = finished_upload_sessions.user_id)",
        )
        .bind(now)
        .execute(&mut *tx)
        .await
        .ctx("forgetting finished sessions")?;
        tx.commit().await.ctx("committing expired sessions")?;
        Ok(ended.len() as u64)
    }

    /// Staged objects that may be deleted at `now` (released pieces, and
    /// pieces whose writer missed its deadline), at most `limit`, those
    /// released longest ago first.
    pub async fn released_upload_pieces(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<ChunkId>, StoreError> {
        let rows = sqlx::query(
            "SELECT object_id FROM upload_pieces WHERE release_after <= $1 \
             ORDER BY release_after, object_id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .ctx("finding released pieces")?;
        rows.iter()
            .map(|r| {
                let object: String = get(r, "object_id")?;
                ChunkId::from_hex(&object).map_err(|e| corrupt("upload_pieces", e.to_string()))
            })
            .collect()
    }

    /// Forgets a released staged object whose object is gone.
    pub async fn forget_upload_piece(&self, object: ChunkId, now: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM upload_pieces WHERE object_id = $1 AND release_after <= $2")
            .bind(object.to_hex())
            .bind(now)
            .execute(&self.pool)
            .await
            .ctx("forgetting a staged piece")?;
        Ok(())
    }

    /// The live item of folder `parent` of `ws` (`None`: its top) whose
    /// name is `name` up to case and Unicode form, as the commit rules
    /// would find it.
    pub async fn live_child_named(
        &self,
        ws: WorkspaceId,
        parent: Option<ItemId>,
        name: &ItemName,
    ) -> Result<Option<ItemMeta>, StoreError> {
        let mut conn = self.pool.acquire().await.ctx("acquiring a connection")?;
        let row = sqlx::query(dynamic(format!(
            "SELECT {ITEM_COLS} FROM items WHERE workspace_id = $1 AND parent_id = $2 \
             AND (name_key = $3 OR name = $4) AND status <> 'DELETED' LIMIT 1"
        )))
        .bind(ws.to_string())
        .bind(parent_to_db(parent))
        .bind(name.fold_key())
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await
        .ctx("looking a name up")?;
        match row {
            Some(row) => Ok(Some(
                attach_chunks(&mut conn, item_from_row("items", &row)?).await?,
            )),
            None => Ok(None),
        }
    }
}
