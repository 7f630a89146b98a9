//! Resumable upload sessions: a big file sent in pieces, each stored as it
//! arrives, so that a client whose connection dropped asks how much the
//! server has and goes on from there; once every byte is there, the
//! pieces are streamed in order through the one upload path
//! ([`Service::api_upload`]) and committed like any API upload.
//!
//! Everything a session is lives in the metadata store (`upload_sessions`,
//! `upload_pieces`) and the blob store, so any instance serves any request
//! of it. Each piece is a write-once object of its own in the staging
//! container [`STAGING_CONTAINER`], which belongs to no workspace: the
//! garbage collector, which walks workspace containers only, never sees a
//! staged piece, and staged bytes are not charged to the quota (a session
//! reserves its size against it instead, see
//! `MetaStore::create_upload_session`). A piece's object has a fresh
//! random name per attempt and counts only when it is whole and the
//! session still holds exactly the bytes before it (one conditional
//! update): an attempt cut off or beaten by another one at the same offset
//! is deleted and changes nothing. Staged objects are recorded before they
//! are written and deleted when their session is finished, cancelled or
//! expires (24 hours after its last piece), or, for a writer that died,
//! after its deadline; expired sessions and released objects are pruned
//! whenever a session is created ([`Service::prune_upload_sessions`]).
//!
//! A finish is safe to retry: the transaction that ends a session that
//! committed its file also remembers what it committed, for
//! [`FINISHED_REMEMBERED`], and a finish of that session answers that file
//! again, so a client whose answer was lost learns that its upload landed
//! instead of "no such session".

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use stacksync_blobstore::{BlobError, BlobErrorKind, ByteStream, ContainerName, MAX_OBJECT_SIZE};
use stacksync_metastore::{
    CommittedUpload, NewUploadSession, SessionEnd, SessionEndCause, StagedPiece, UploadSessionRow,
    UploadTarget,
};
use stacksync_proto::commit_rules::name_taken;
use stacksync_proto::{ChunkId, Error, ErrorKind, ItemId, ItemName, Millis, UserId, Workspace};
use uuid::Uuid;

use super::{ApiNode, NewContent, UploadTo, api_name, check_if_match, readable_here, to_proto};
use crate::auth::now_ms;
use crate::error::{BlobContext, ServiceError};
use crate::{ApiCaller, Service};

/// The container staged pieces are kept in (no workspace's).
pub const STAGING_CONTAINER: &str = "upload-sessions";

/// How long a session lives after its last piece (or its creation).
pub const UPLOAD_SESSION_TTL: Duration = Duration::from_secs(24 * 3600);

/// Most open sessions one user may have.
pub const MAX_OPEN_UPLOAD_SESSIONS: u64 = 32;

/// Largest piece: the largest object the blob store takes.
pub const MAX_UPLOAD_PIECE: u64 = MAX_OBJECT_SIZE;

/// Most pieces one session may hold (a 100 GiB file in 10 MiB pieces).
pub const MAX_UPLOAD_PIECES: u64 = 10_000;

/// Pieces of one session being written at once.
const MAX_WRITING: u64 = 4;

/// How long a piece may take to arrive; a writer past it is presumed
/// dead and its object released.
const PIECE_DEADLINE: Duration = Duration::from_secs(3600);

/// How long a finish holds its session between two pieces it reads.
const FINISH_CLAIM: Duration = Duration::from_secs(600);

/// How long a finished session's file is remembered for a retried finish.
pub const FINISHED_REMEMBERED: Duration = Duration::from_secs(24 * 3600);

/// Released objects deleted per prune.
const PRUNE_BATCH: u32 = 256;

/// Names tried by an autorename before it gives up ("name (1000).ext").
const MAX_AUTORENAME: u32 = 1000;

/// Commits tried by an autorename whose chosen name is taken meanwhile.
const AUTORENAME_COMMITS: u32 = 3;

fn ms(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// A new session, as the client asks for it.
#[derive(Debug, Clone)]
pub struct UploadSessionRequest {
    /// A new file (its folder and name) or a new version of a file.
    pub to: UploadTo,
    /// The file's size in bytes.
    pub size: u64,
    /// A new file whose name is taken becomes "name (1).ext" (the first
    /// free one) at finish instead of being refused.
    pub autorename: bool,
    /// The file's MIME type, if the client said it.
    pub mimetype: Option<String>,
}

/// Where a session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    /// Its id.
    pub id: Uuid,
    /// Bytes the server holds: where the next piece starts.
    pub offset: u64,
    /// The file's size.
    pub size: u64,
    /// When it expires unless a piece arrives (ms since the epoch).
    pub expires_at: Millis,
}

impl UploadSession {
    fn of(row: &UploadSessionRow) -> UploadSession {
        UploadSession {
            id: row.id,
            offset: row.received,
            size: row.size,
            expires_at: row.expires_at,
        }
    }
}

/// The bytes of one piece, streamed.
pub struct UploadPiece {
    body: ByteStream,
    declared_len: Option<u64>,
}

impl UploadPiece {
    /// A piece read from any byte stream (an HTTP body) that says it holds
    /// `declared_len` bytes, if it says (`Content-Length`); a failure of the
    /// stream (the client went away) means the piece was cut off.
    pub fn from_stream<S, E>(body: S, declared_len: Option<u64>) -> UploadPiece
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        UploadPiece {
            body: NewContent::from_stream(body, None).body,
            declared_len,
        }
    }
}

impl std::fmt::Debug for UploadPiece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadPiece")
            .field("declared_len", &self.declared_len)
            .finish_non_exhaustive()
    }
}

/// What a finish may change from what the session said.
#[derive(Debug, Clone, Default)]
pub struct FinishOptions {
    /// Another name for the new file.
    pub name: Option<String>,
    /// Whether a taken name is numbered instead of refused.
    pub autorename: Option<bool>,
}

/// A finished session's file.
#[derive(Debug, Clone)]
pub struct FinishedUpload {
    /// The file as committed.
    pub node: ApiNode,
    /// A new file (`true`) or a new version of one.
    pub created: bool,
}

/// A refused session request: the error, and what a client needs to go
/// on.
#[derive(Debug, Clone)]
pub struct SessionRefusal {
    /// Why.
    pub error: Error,
    /// Where the session stands (a piece at the wrong offset, a finish
    /// before every byte is there, a commit refused).
    pub session: Option<UploadSession>,
    /// The item in the way: the file holding the name, or the file's
    /// current version when the session's `if_match` is stale.
    pub existing: Option<ApiNode>,
}

impl From<Error> for SessionRefusal {
    fn from(error: Error) -> SessionRefusal {
        SessionRefusal {
            error,
            session: None,
            existing: None,
        }
    }
}

impl SessionRefusal {
    fn at(error: Error, session: UploadSession) -> SessionRefusal {
        SessionRefusal {
            error,
            session: Some(session),
            existing: None,
        }
    }
}

fn conflict(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Conflict, message)
}

fn staging() -> Result<ContainerName, Error> {
    crate::container_name(STAGING_CONTAINER).map_err(to_proto)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
    Ok(bytes)
}

/// What happened to a piece's body while it was stored.
#[derive(Debug, Default)]
struct PieceWatch {
    /// Bytes that came.
    received: AtomicU64,
    /// The body failed: the client went away.
    cut: AtomicBool,
    /// The body went past the room it had.
    overflow: AtomicBool,
}

/// `body`, counted into `watch` and stopped past `room` bytes.
fn watched(body: ByteStream, room: u64, watch: Arc<PieceWatch>) -> ByteStream {
    Box::pin(body.map(move |piece| match piece {
        Ok(bytes) => {
            let len = bytes.len() as u64;
            let total = watch.received.fetch_add(len, Ordering::Relaxed) + len;
            if total > room {
                watch.overflow.store(true, Ordering::Relaxed);
                return Err(BlobError::new(
                    BlobErrorKind::TooLarge,
                    format!("the piece is longer than the {room} bytes it may hold"),
                ));
            }
            Ok(bytes)
        }
        Err(e) => {
            watch.cut.store(true, Ordering::Relaxed);
            Err(e)
        }
    }))
}

impl Service {
    /// Opens an upload session after checking everything a finish will:
    /// the folder (a folder the caller may write, not end-to-end
    /// encrypted) and the name (valid, and free unless `autorename`), or
    /// the file (live, `if_match` current); the size against what is left
    /// of the quota; at most [`MAX_OPEN_UPLOAD_SESSIONS`] open sessions.
    pub async fn api_upload_session_create(
        &self,
        caller: &ApiCaller,
        request: UploadSessionRequest,
    ) -> Result<UploadSession, SessionRefusal> {
        self.prune_upload_sessions_quietly().await;
        let now = now_ms();
        let (ws, target) = match request.to {
            UploadTo::New { parent, name } => {
                let node = self.api_node(caller.user, parent).await?;
                let (ws, parent_item) = node.as_parent()?;
                let ws = self.session_writable_workspace(caller.user, ws).await?;
                let name = api_name(&name)?;
                if !request.autorename {
                    self.session_refuse_taken_name(&ws, parent_item, &name)
                        .await?;
                }
                let target = UploadTarget::NewFile {
                    parent,
                    name: name.to_string(),
                    autorename: request.autorename,
                };
                (ws, target)
            }
            UploadTo::Existing { id, if_match } => {
                let node = self.api_node_of_kind(caller.user, id, false).await?;
                let ApiNode::Item { workspace, meta } = &node else {
                    return Err(Error::not_found(format!("no file {id}")).into());
                };
                if !meta.status.is_live() {
                    return Err(Error::not_found(format!("file {id} was deleted")).into());
                }
                let ws = self
                    .session_writable_workspace(caller.user, workspace)
                    .await?;
                if let Err(error) = check_if_match(meta, if_match) {
                    return Err(SessionRefusal {
                        error,
                        session: None,
                        existing: Some(node.clone()),
                    });
                }
                (ws, UploadTarget::NewVersion { file: id, if_match })
            }
        };
        self.blobs()
            .create_container(&staging()?)
            .await
            .blob(|| format!("creating container {STAGING_CONTAINER}"))
            .map_err(to_proto)?;
        let new = NewUploadSession {
            id: Uuid::new_v4(),
            user: caller.user,
            workspace: ws.id,
            quota_owner: ws.owner,
            target,
            mimetype: request.mimetype,
            size: request.size,
            expires_at: now.saturating_add(ms(UPLOAD_SESSION_TTL)),
        };
        let row = self
            .store()
            .create_upload_session(&new, MAX_OPEN_UPLOAD_SESSIONS, now)
            .await
            .map_err(to_proto)?;
        Ok(UploadSession::of(&row))
    }

    /// Where the caller's session `id` stands.
    pub async fn api_upload_session_status(
        &self,
        caller: &ApiCaller,
        id: Uuid,
    ) -> Result<UploadSession, Error> {
        Ok(UploadSession::of(
            &self.own_upload_session(caller.user, id, now_ms()).await?,
        ))
    }

    /// Stores `piece` as the bytes of session `id` from `offset`, which
    /// must be what the session holds (else a conflict that says it). A
    /// piece holds at most [`MAX_UPLOAD_PIECE`] bytes and never goes past
    /// the file's size; a piece cut off is not kept.
    pub async fn api_upload_session_append(
        &self,
        caller: &ApiCaller,
        id: Uuid,
        offset: u64,
        piece: UploadPiece,
    ) -> Result<UploadSession, SessionRefusal> {
        let now = now_ms();
        let row = self.own_upload_session(caller.user, id, now).await?;
        let here = UploadSession::of(&row);
        if offset != row.received {
            let e = conflict(format!(
                "upload session {id} holds {} bytes: send the piece at offset {}",
                row.received, row.received
            ));
            return Err(SessionRefusal::at(e, here));
        }
        if row.finishing_until.is_some_and(|t| t > now) {
            let e = conflict(format!("upload session {id} is being finished"));
            return Err(SessionRefusal::at(e, here));
        }
        let left = row.size - row.received;
        let room = left.min(MAX_UPLOAD_PIECE);
        if let Some(n) = piece.declared_len.filter(|n| *n > room) {
            return Err(SessionRefusal::at(too_long(n, left), here));
        }
        if row.pieces >= MAX_UPLOAD_PIECES {
            let e = Error::bad_request(format!(
                "upload session {id} holds {MAX_UPLOAD_PIECES} pieces, the most one may: \
                 cancel it and send larger pieces"
            ));
            return Err(SessionRefusal::at(e, here));
        }
        let object = ChunkId(random_bytes()?);
        let deadline = now.saturating_add(ms(PIECE_DEADLINE));
        self.store()
            .stage_upload_piece(id, caller.user, object, deadline, MAX_WRITING, now)
            .await
            .map_err(to_proto)?;
        let watch = Arc::new(PieceWatch::default());
        let body = watched(piece.body, room, watch.clone());
        let stored = self.blobs().put(&staging()?, &object, body).await;
        let len = watch.received.load(Ordering::Relaxed);
        let recorded = match stored {
            Err(e) => Err(piece_refusal(e, &watch, left)),
            // Shorter than it said: cut off on the way (a proxy may end a
            // body it lost early as if it were whole).
            Ok(_) if piece.declared_len.is_some_and(|n| n != len) => Err(cut_off(len)),
            Ok(_) if len == 0 => Ok(None),
            Ok(_) => {
                let now = now_ms();
                let expires_at = now.saturating_add(ms(UPLOAD_SESSION_TTL));
                self.store()
                    .record_upload_piece(
                        id,
                        caller.user,
                        object,
                        offset,
                        len,
                        MAX_UPLOAD_PIECES,
                        expires_at,
                        now,
                    )
                    .await
                    .map_err(to_proto)
            }
        };
        if let Ok(Some(after)) = &recorded {
            return Ok(UploadSession::of(after));
        }
        self.discard_staged_piece(object).await;
        let current = self
            .store()
            .upload_session(id, caller.user, now_ms())
            .await
            .map_err(to_proto)?;
        match (recorded, current) {
            (Err(e), Some(current)) => Err(SessionRefusal::at(e, UploadSession::of(&current))),
            (Err(e), None) => Err(e.into()),
            (_, None) => Err(Error::not_found(format!("no upload session {id}")).into()),
            (_, Some(current)) if len == 0 => Ok(UploadSession::of(&current)),
            // Another piece counted first, or the session is being finished.
            (_, Some(current)) => {
                let e = conflict(format!(
                    "upload session {id} holds {} bytes now: send the piece at offset {}",
                    current.received, current.received
                ));
                Err(SessionRefusal::at(e, UploadSession::of(&current)))
            }
        }
    }

    /// Commits session `id` once it holds every byte: its pieces, in
    /// order, through [`Service::api_upload`]. The session ends with the
    /// commit; a refused commit (the name taken meanwhile, a stale
    /// `if_match`) keeps it, so the client can finish again (`options`:
    /// another name, or autorename). Runs to its end even if the caller
    /// goes away, so the session is never left claimed by a dead request.
    pub async fn api_upload_session_finish(
        &self,
        caller: &ApiCaller,
        id: Uuid,
        options: FinishOptions,
    ) -> Result<FinishedUpload, SessionRefusal> {
        let (service, caller) = (self.clone(), caller.clone());
        tokio::spawn(async move { service.finish_upload_session(&caller, id, options).await })
            .await
            .map_err(|e| Error::internal(format!("finishing upload session {id}: {e}")))?
    }

    /// Cancels the caller's session `id` and deletes what it staged.
    pub async fn api_upload_session_cancel(
        &self,
        caller: &ApiCaller,
        id: Uuid,
    ) -> Result<(), Error> {
        let pieces = self.store().upload_pieces(id).await.map_err(to_proto)?;
        let now = now_ms();
        match self
            .store()
            .end_upload_session(id, caller.user, SessionEndCause::Cancelled, now)
            .await
            .map_err(to_proto)?
        {
            SessionEnd::Ended => {
                self.delete_staged_pieces(pieces.iter().map(|p| p.object).collect(), now)
                    .await;
                Ok(())
            }
            SessionEnd::Missing => Err(Error::not_found(format!("no upload session {id}"))),
            SessionEnd::Finishing => {
                Err(conflict(format!("upload session {id} is being finished")))
            }
        }
    }

    /// Ends expired sessions (and those of removed users) and deletes the
    /// staged objects released by ended sessions and dead writers, up to a
    /// batch. Returns how many objects it deleted.
    pub async fn prune_upload_sessions(&self) -> Result<u64, Error> {
        let now = now_ms();
        self.store()
            .expire_upload_sessions(now)
            .await
            .map_err(to_proto)?;
        let released = self
            .store()
            .released_upload_pieces(now, PRUNE_BATCH)
            .await
            .map_err(to_proto)?;
        Ok(self.delete_staged_pieces(released, now).await)
    }

    /// [`Service::prune_upload_sessions`], its failure logged: a prune
    /// never fails the request it rides on.
    async fn prune_upload_sessions_quietly(&self) {
        if let Err(e) = self.prune_upload_sessions().await {
            tracing::warn!(error = %e, "upload sessions not pruned");
        }
    }

    /// The workspace `ws` as `user` writes to it: refused to read-only
    /// members and for end-to-end encrypted contents.
    async fn session_writable_workspace(
        &self,
        user: UserId,
        ws: &Workspace,
    ) -> Result<Workspace, Error> {
        let ws = self
            .writable_member_of(user, ws.id)
            .await
            .map_err(to_proto)?;
        readable_here(&ws)?;
        Ok(ws)
    }

    /// Refuses `name` in folder `parent` of `ws` while a live item holds
    /// it, naming that item.
    async fn session_refuse_taken_name(
        &self,
        ws: &Workspace,
        parent: Option<ItemId>,
        name: &ItemName,
    ) -> Result<(), SessionRefusal> {
        let holder = self
            .store()
            .live_child_named(ws.id, parent, name)
            .await
            .map_err(to_proto)?;
        match holder {
            None => Ok(()),
            Some(meta) => Err(SessionRefusal {
                error: name_taken(name, meta.clone()),
                session: None,
                existing: Some(ApiNode::Item {
                    workspace: ws.clone(),
                    meta,
                }),
            }),
        }
    }

    async fn own_upload_session(
        &self,
        user: UserId,
        id: Uuid,
        now: Millis,
    ) -> Result<UploadSessionRow, Error> {
        self.store()
            .upload_session(id, user, now)
            .await
            .map_err(to_proto)?
            .ok_or_else(|| Error::not_found(format!("no upload session {id}")))
    }

    /// Deletes a piece that did not count, and its row.
    async fn discard_staged_piece(&self, object: ChunkId) {
        let deleted = match staging() {
            Ok(container) => match self.blobs().delete(&container, &object).await {
                Err(e) if !e.is_not_found() => Err(e.to_string()),
                _ => Ok(()),
            },
            Err(e) => Err(e.to_string()),
        };
        let forgotten = match deleted {
            Ok(()) => self.store().drop_upload_piece(object).await,
            // Left for its deadline: the prune deletes it then.
            Err(e) => {
                tracing::warn!(%object, error = %e, "staged piece not deleted");
                return;
            }
        };
        if let Err(e) = forgotten {
            tracing::warn!(%object, error = %e, "staged piece not forgotten");
        }
    }

    /// Deletes released staged objects, then their rows; a failure is
    /// logged and left for the next prune. Returns how many went.
    async fn delete_staged_pieces(&self, objects: Vec<ChunkId>, now: Millis) -> u64 {
        let Ok(container) = staging() else {
            return 0;
        };
        let mut deleted = 0;
        for object in objects {
            match self.blobs().delete(&container, &object).await {
                Err(e) if !e.is_not_found() => {
                    tracing::warn!(%object, error = %e, "staged piece not deleted");
                    continue;
                }
                _ => {}
            }
            match self.store().forget_upload_piece(object, now).await {
                Ok(()) => deleted += 1,
                Err(e) => tracing::warn!(%object, error = %e, "staged piece not forgotten"),
            }
        }
        deleted
    }

    async fn finish_upload_session(
        &self,
        caller: &ApiCaller,
        id: Uuid,
        options: FinishOptions,
    ) -> Result<FinishedUpload, SessionRefusal> {
        let now = now_ms();
        let open = self
            .store()
            .upload_session(id, caller.user, now)
            .await
            .map_err(to_proto)?;
        let Some(row) = open else {
            return Ok(self.finished_before(caller.user, id, now).await?);
        };
        let here = UploadSession::of(&row);
        if row.received < row.size {
            let e = conflict(format!(
                "upload session {id} holds {} of {} bytes: send the rest from offset {} first",
                row.received, row.size, row.received
            ));
            return Err(SessionRefusal::at(e, here));
        }
        let token = hex::encode(random_bytes::<16>()?);
        let until = now.saturating_add(ms(FINISH_CLAIM));
        let claimed = self
            .store()
            .claim_upload_finish(id, caller.user, &token, until, now)
            .await
            .map_err(to_proto)?;
        if !claimed {
            let e = conflict(format!(
                "upload session {id} is being finished by another request"
            ));
            return Err(SessionRefusal::at(e, here));
        }
        let committed = async {
            let pieces = self.store().upload_pieces(id).await.map_err(to_proto)?;
            check_layout(&row, &pieces)?;
            let staged = Staged {
                row: &row,
                token: &token,
                pieces: &pieces,
            };
            let done = self.commit_staged(caller, staged, options).await?;
            Ok::<_, SessionRefusal>((done, pieces))
        }
        .await;
        match committed {
            Ok((done, pieces)) => {
                let now = now_ms();
                let cause = SessionEndCause::Finished(
                    done.committed(now.saturating_add(ms(FINISHED_REMEMBERED))),
                );
                match self
                    .store()
                    .end_upload_session(id, caller.user, cause, now)
                    .await
                {
                    Ok(_) => {
                        self.delete_staged_pieces(pieces.iter().map(|p| p.object).collect(), now)
                            .await;
                    }
                    // Committed all the same: the session expires.
                    Err(e) => {
                        tracing::warn!(session = %id, error = %e, "finished session not ended")
                    }
                }
                Ok(done)
            }
            Err(mut refusal) => {
                if let Err(e) = self.store().release_upload_finish(id, &token).await {
                    tracing::warn!(session = %id, error = %e, "finish claim not released");
                }
                refusal.session.get_or_insert(here);
                Err(refusal)
            }
        }
    }
}

impl FinishedUpload {
    /// What is remembered of it for a retried finish, until `until`.
    fn committed(&self, until: Millis) -> CommittedUpload {
        let (item, version) = match &self.node {
            ApiNode::Item { meta, .. } => (meta.id.0, meta.version),
            // A finish commits a file: never a top folder.
            ApiNode::Root { workspace } | ApiNode::SharedRoot { workspace } => (workspace.id.0, 0),
        };
        CommittedUpload {
            item,
            version,
            created: self.created,
            remembered_until: until,
        }
    }
}

impl Service {
    /// The answer to a finish of `user`'s session `id` that is no longer
    /// open: the file it committed, if it finished (a retry after a lost
    /// answer), as `user` may see it now (the version it committed); not
    /// found otherwise.
    async fn finished_before(
        &self,
        user: UserId,
        id: Uuid,
        now: Millis,
    ) -> Result<FinishedUpload, Error> {
        let finished = self
            .store()
            .finished_upload_session(id, user, now)
            .await
            .map_err(to_proto)?;
        let Some(committed) = finished else {
            return Err(Error::not_found(format!("no upload session {id}")));
        };
        let node = self
            .api_version(user, committed.item, committed.version)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::NotFound => Error::not_found(format!(
                    "upload session {id} committed version {} of file {}, which is gone now",
                    committed.version, committed.item
                )),
                _ => e,
            })?;
        Ok(FinishedUpload {
            node,
            created: committed.created,
        })
    }
}

/// The pieces of a session being finished.
#[derive(Clone, Copy)]
struct Staged<'a> {
    row: &'a UploadSessionRow,
    token: &'a str,
    pieces: &'a [StagedPiece],
}

/// Refuses pieces that do not hold the file's bytes back to back.
fn check_layout(row: &UploadSessionRow, pieces: &[StagedPiece]) -> Result<(), Error> {
    let mut at = 0;
    for p in pieces {
        if p.offset != at {
            return Err(Error::internal(format!(
                "upload session {}: a piece starts at {} where {at} was expected",
                row.id, p.offset
            )));
        }
        at += p.size;
    }
    if at != row.size {
        return Err(Error::internal(format!(
            "upload session {}: its pieces hold {at} of {} bytes",
            row.id, row.size
        )));
    }
    Ok(())
}

/// Why a piece's body was not stored.
fn piece_refusal(e: BlobError, watch: &PieceWatch, left: u64) -> Error {
    let received = watch.received.load(Ordering::Relaxed);
    if watch.overflow.load(Ordering::Relaxed) {
        return too_long(received, left);
    }
    if watch.cut.load(Ordering::Relaxed) {
        return cut_off(received);
    }
    to_proto(ServiceError::Blob {
        context: format!("staging a piece in {STAGING_CONTAINER}"),
        source: e,
    })
}

/// The refusal of a piece that ended after `received` bytes.
fn cut_off(received: u64) -> Error {
    Error::bad_request(format!(
        "the piece was cut off after {received} bytes: nothing of it was kept; send it again"
    ))
}

/// The refusal of a piece of (at least) `len` bytes where `left` bytes of
/// the file are still to come.
fn too_long(len: u64, left: u64) -> Error {
    if left < MAX_UPLOAD_PIECE {
        return Error::bad_request(format!(
            "a piece of {len} bytes goes past the file's size: {left} bytes are left to send"
        ));
    }
    Error::new(
        ErrorKind::TooLarge,
        format!("a piece of {len} bytes is too large: at most {MAX_UPLOAD_PIECE} bytes"),
    )
}

impl Service {
    /// Commits what `staged` holds as the session's target says, with the
    /// name and autorename `options` may override.
    async fn commit_staged(
        &self,
        caller: &ApiCaller,
        staged: Staged<'_>,
        options: FinishOptions,
    ) -> Result<FinishedUpload, SessionRefusal> {
        let (parent, name, autorename) = match &staged.row.target {
            UploadTarget::NewVersion { file, if_match } => {
                if options.name.is_some() {
                    return Err(Error::bad_request(
                        "a new version keeps its file's name: rename the file afterwards",
                    )
                    .into());
                }
                let to = UploadTo::Existing {
                    id: *file,
                    if_match: *if_match,
                };
                let node = self.upload_staged(caller, staged, to).await?;
                return Ok(FinishedUpload {
                    node,
                    created: false,
                });
            }
            UploadTarget::NewFile {
                parent,
                name,
                autorename,
            } => (
                *parent,
                api_name(options.name.as_deref().unwrap_or(name))?,
                options.autorename.unwrap_or(*autorename),
            ),
        };
        for attempt in 1..=AUTORENAME_COMMITS {
            // Checked before any byte is read: a taken name is refused at
            // once (the commit checks it again).
            let node = self.api_node(caller.user, parent).await?;
            let (ws, parent_item) = node.as_parent()?;
            let chosen = if autorename {
                self.session_free_name(ws, parent_item, &name).await?
            } else {
                self.session_refuse_taken_name(ws, parent_item, &name)
                    .await?;
                name.clone()
            };
            let to = UploadTo::New {
                parent,
                name: chosen.to_string(),
            };
            match self.upload_staged(caller, staged, to).await {
                Ok(node) => {
                    return Ok(FinishedUpload {
                        node,
                        created: true,
                    });
                }
                // Taken meanwhile: the next free name.
                Err(r)
                    if autorename
                        && attempt < AUTORENAME_COMMITS
                        && r.error.kind == ErrorKind::Conflict
                        && r.existing.is_some() => {}
                Err(r) => return Err(r),
            }
        }
        Err(conflict("no free name was found for the file").into())
    }

    /// The staged pieces through [`Service::api_upload`] to `to`.
    async fn upload_staged(
        &self,
        caller: &ApiCaller,
        staged: Staged<'_>,
        to: UploadTo,
    ) -> Result<ApiNode, SessionRefusal> {
        let failure = Arc::new(Mutex::new(None));
        let content = NewContent {
            body: self.staged_stream(caller.user, staged, failure.clone()),
            mimetype: staged.row.mimetype.clone(),
        };
        let error = match self.api_upload(caller, to, content).await {
            Ok(node) => return Ok(node),
            Err(e) => e,
        };
        // What failed reading the pieces says more than the upload's
        // "reading the upload" does.
        let error = failure
            .lock()
            .ok()
            .and_then(|mut f| f.take())
            .unwrap_or(error);
        let existing = match &error.current {
            Some(meta) if error.kind == ErrorKind::Conflict => {
                self.api_node(caller.user, Some(meta.id.0)).await.ok()
            }
            _ => None,
        };
        Err(SessionRefusal {
            error,
            session: Some(UploadSession::of(staged.row)),
            existing,
        })
    }

    /// The staged pieces' bytes in order, each opened when the previous
    /// one ends, renewing the finish's claim as it goes; the first failure
    /// is kept in `failure`.
    fn staged_stream(
        &self,
        user: UserId,
        staged: Staged<'_>,
        failure: Arc<Mutex<Option<Error>>>,
    ) -> ByteStream {
        let (store, blobs) = (self.store().clone(), self.blobs().clone());
        let (id, token) = (staged.row.id, staged.token.to_owned());
        let keep = failure.clone();
        let record = move |e: Error| {
            if let Ok(mut slot) = failure.lock() {
                slot.get_or_insert(e);
            }
        };
        let record_too = record.clone();
        let pieces = staged.pieces.to_vec();
        let stream = futures::stream::iter(pieces)
            .then(move |piece| {
                let (store, blobs, token, record) =
                    (store.clone(), blobs.clone(), token.clone(), record.clone());
                async move {
                    let now = now_ms();
                    let until = now.saturating_add(ms(FINISH_CLAIM));
                    let held = match store
                        .claim_upload_finish(id, user, &token, until, now)
                        .await
                    {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(conflict(format!(
                            "upload session {id} was taken over while it was being finished"
                        ))),
                        Err(e) => Err(to_proto(e)),
                    };
                    let container = staging();
                    match (held, container) {
                        (Ok(()), Ok(container)) => blobs.get(&container, &piece.object, None).await,
                        (Err(e), _) | (_, Err(e)) => {
                            let message = e.message.clone();
                            record(e);
                            Err(BlobError::new(BlobErrorKind::Io, message))
                        }
                    }
                }
            })
            .try_flatten()
            .map_err(move |e| {
                record_too(Error::from(BlobError::new(e.kind, e.message.clone())));
                e
            });
        drop(keep);
        Box::pin(stream)
    }

    /// `name` if folder `parent` of `ws` has no live item holding it, else
    /// the first free "stem (N).ext".
    async fn session_free_name(
        &self,
        ws: &Workspace,
        parent: Option<ItemId>,
        name: &ItemName,
    ) -> Result<ItemName, Error> {
        let free = |candidate: ItemName| async move {
            let holder = self
                .store()
                .live_child_named(ws.id, parent, &candidate)
                .await
                .map_err(to_proto)?;
            Ok::<_, Error>(holder.is_none().then_some(candidate))
        };
        if let Some(name) = free(name.clone()).await? {
            return Ok(name);
        }
        for n in 1..=MAX_AUTORENAME {
            if let Some(name) = free(numbered(name, n)?).await? {
                return Ok(name);
            }
        }
        Err(conflict(format!(
            "{MAX_AUTORENAME} numbered names of {:?} are taken in that folder",
            name.as_str()
        )))
    }
}

/// `name` numbered `n`: "stem (n).ext" ("a (1).jpg" numbered 2 is
/// "a (2).jpg"), the stem shortened if the result would be too long.
fn numbered(name: &ItemName, n: u32) -> Result<ItemName, Error> {
    let name = name.as_str();
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, Some(ext)),
        _ => (name, None),
    };
    let stem = match stem.rsplit_once(" (") {
        Some((base, count))
            if !base.is_empty()
                && count.ends_with(')')
                && count[..count.len() - 1].bytes().all(|b| b.is_ascii_digit())
                && count.len() > 1 =>
        {
            base
        }
        _ => stem,
    };
    let tail = match ext {
        Some(ext) => format!(" ({n}).{ext}"),
        None => format!(" ({n})"),
    };
    let mut stem = stem.to_owned();
    while !stem.is_empty() && stem.len() + tail.len() > ItemName::MAX_BYTES {
        stem.pop();
    }
    api_name(&format!("{}{tail}", stem.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_numbered_before_their_extension() {
        let n = |name: &str, k: u32| numbered(&ItemName::new(name).unwrap(), k).unwrap();
        assert_eq!(n("photo.jpg", 1).as_str(), "photo (1).jpg");
        assert_eq!(n("photo (1).jpg", 2).as_str(), "photo (2).jpg");
        assert_eq!(n("notes", 3).as_str(), "notes (3)");
        assert_eq!(n(".bashrc", 1).as_str(), ".bashrc (1)");
        assert_eq!(n("a.tar.gz", 1).as_str(), "a.tar (1).gz");
        assert_eq!(n("x (a).txt", 1).as_str(), "x (a) (1).txt");
        let long = format!("{}.txt", "é".repeat(125));
        let numbered = n(&long, 12);
        assert!(numbered.as_str().len() <= ItemName::MAX_BYTES);
        assert!(numbered.as_str().ends_with(" (12).txt"));
    }
}
