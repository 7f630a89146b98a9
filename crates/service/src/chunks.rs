//! Chunk data for clients whose data goes through the server (the local
//! directory store, or clients that may not reach Swift), and what a client
//! needs to reach Swift directly. Every call is authorized by membership of
//! the workspace whose container holds the chunks (an upload by a member
//! who may write it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use stacksync_blobstore::{
    BlobError, BlobErrorKind, BlobStore, ByteRange, ByteStream, ContainerName, collect,
    single_piece,
};
use stacksync_proto::{
    ChunkId, ChunkRef, EncryptionMode, Error, ErrorKind, MAX_ENCODED_CHUNK, PackSpan, UserId,
    Workspace, WorkspaceId,
};

use crate::error::{BlobContext, ServiceError};
use crate::{Service, container_name};

/// What a client needs to reach the object store directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageCredentials {
    /// The storage URL (Swift account URL), if clients may use it.
    pub storage_url: Option<String>,
    /// The storage user the account maps to, if any.
    pub storage_user: Option<String>,
    /// Every workspace the user belongs to, with its container.
    pub containers: Vec<(WorkspaceId, String)>,
}

/// The body of an object upload: its bytes as they arrive, and the length
/// the client declared (HTTP `Content-Length`), if it did. Nothing is read
/// from the stream before the caller is known to be a member and the
/// declared length is within the limit.
pub struct ObjectUpload {
    body: ByteStream,
    declared_len: Option<u64>,
}

impl ObjectUpload {
    /// An upload streamed from `body`, of `declared_len` bytes if known.
    pub fn stream(body: ByteStream, declared_len: Option<u64>) -> ObjectUpload {
        ObjectUpload { body, declared_len }
    }
}

impl ObjectUpload {
    /// An upload streamed from any byte stream (an HTTP body); a failure of
    /// the stream (the client went away) fails the upload and stores nothing.
    pub fn from_stream<S, E>(body: S, declared_len: Option<u64>) -> ObjectUpload
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let body = body.map_err(|e| {
            let message = format!("reading the upload: {e}");
            BlobError::with_source(BlobErrorKind::Io, message, e)
        });
        ObjectUpload::stream(Box::pin(body), declared_len)
    }
}

impl From<Bytes> for ObjectUpload {
    fn from(data: Bytes) -> ObjectUpload {
        let len = data.len() as u64;
        ObjectUpload::stream(single_piece(data), Some(len))
    }
}

impl std::fmt::Debug for ObjectUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectUpload")
            .field("declared_len", &self.declared_len)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Stores one object in the workspace's container: an encoded chunk
    /// named by its id, or a pack of chunks (at most
    /// [`PackSpan::MAX_PACK_BYTES`]) named by the client's random id.
    ///
    /// Membership (one that may write: not a read-only member) is checked,
    /// and a declared length over the limit refused, before any byte is
    /// read; the upload is charged to the workspace owner's quota; the body then streams to the store, which
    /// refuses it as soon as it passes the limit. Objects are written once:
    /// the same bytes again succeed (a retry), other bytes under an existing
    /// name are a `Conflict` and the stored object is kept. In a plain
    /// workspace a name the chunk index knows as a chunk id must carry that
    /// chunk: it is decoded and checked against its id and size first.
    pub async fn put_chunk(
        &self,
        user: UserId,
        ws: WorkspaceId,
        id: &ChunkId,
        upload: impl Into<ObjectUpload>,
    ) -> Result<(), Error> {
        let upload = upload.into();
        let workspace = self.writable_member_of(user, ws).await?;
        // The quota is charged before anything is stored, so the size must
        // be known first; the body is then held to exactly that size.
        let Some(len) = upload.declared_len else {
            return Err(Error::bad_request(format!(
                "an upload of object {id} must declare its length (Content-Length)"
            )));
        };
        if len > PackSpan::MAX_PACK_BYTES {
            return Err(too_large(id, len));
        }
        // Past the quota, nothing lands.
        self.record_upload(user, &workspace, id, len).await?;
        let container = container_name(&workspace.container)?;
        let body = exactly(upload.body, *id, len);
        let body = self.checked_body(&workspace, id, body).await?;
        self.blobs()
            .put(&container, id, body)
            .await
            .blob(|| format!("storing object {id} in {container}"))?;
        Ok(())
    }

    /// The upload's stream, capped at the object limit; for a name the
    /// plain workspace's chunk index knows as a chunk, the whole chunk,
    /// checked (see [`Service::put_chunk`]).
    async fn checked_body(
        &self,
        workspace: &Workspace,
        id: &ChunkId,
        body: ByteStream,
    ) -> Result<ByteStream, ServiceError> {
        let body = capped(body, *id, PackSpan::MAX_PACK_BYTES);
        if workspace.encryption == EncryptionMode::ClientSide {
            // The server holds no key: ids are keyed hashes it cannot check.
            // (Server-side encryption happens below, in the blob store: the
            // client's chunks are plain ones, checked like any other.)
            return Ok(body);
        }
        let known = self.store().locate_chunks(workspace.id, &[*id]).await?;
        let Some(Some(chunk)) = known.first().copied() else {
            // A pack, or a chunk the workspace does not reference yet.
            return Ok(body);
        };
        let data = collect(capped(body, *id, u64::from(MAX_ENCODED_CHUNK)))
            .await
            .blob(|| format!("receiving chunk {id}"))?;
        check_chunk(chunk, data.clone()).await?;
        Ok(single_piece(data))
    }
    /// Reads one object of the workspace's container: all of it (checked
    /// by the store), or `range` of it, which must be bounded, non-empty
    /// and inside the object (a chunk inside a pack; its bytes are checked
    /// by the client's decoder against the chunk id). A range reaching
    /// past the end is [`ServiceError::RangeNotSatisfiable`], never
    /// silently short data.
    pub async fn get_chunk(
        &self,
        user: UserId,
        ws: WorkspaceId,
        id: &ChunkId,
        range: Option<ByteRange>,
    ) -> Result<Bytes, ServiceError> {
        let workspace = self.member_of(user, ws).await?;
        let container = container_name(&workspace.container)?;
        read_object(self.blobs().as_ref(), &container, id, range).await
    }

    /// Which of `ids` the workspace's container holds, in order.
    pub async fn has_chunks(
        &self,
        user: UserId,
        ws: WorkspaceId,
        ids: &[ChunkId],
    ) -> Result<Vec<bool>, Error> {
        let workspace = self.member_of(user, ws).await?;
        let container = container_name(&workspace.container)?;
        let present = self
            .blobs()
            .existing(&container, ids)
            .await
            .blob(|| format!("checking chunks in {container}"))?;
        Ok(ids.iter().map(|id| present.contains(id)).collect())
    }

    /// The storage URL, storage user and containers of a user.
    pub async fn storage_credentials(&self, user: UserId) -> Result<StorageCredentials, Error> {
        let account = self
            .store()
            .user(user)
            .await
            .map_err(ServiceError::from)?
            .account;
        let workspaces = self
            .store()
            .workspaces_of(user)
            .await
            .map_err(ServiceError::from)?;
        Ok(StorageCredentials {
            storage_url: self.config().storage_url.clone(),
            storage_user: account.storage_user,
            containers: workspaces
                .into_iter()
                .map(|w| (w.id, w.container))
                .collect(),
        })
    }
}

/// The error for an object of `len` bytes.
fn too_large(id: &ChunkId, len: u64) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        format!(
            "object {id} has {len} bytes; objects hold at most {}",
            PackSpan::MAX_PACK_BYTES
        ),
    )
}

/// `body`, ending in a `TooLarge` error as soon as it passes `limit` bytes.
fn capped(body: ByteStream, id: ChunkId, limit: u64) -> ByteStream {
    capped_counting(body, id, limit, Arc::default())
}

/// [`capped`], adding the bytes that pass to `seen`.
fn capped_counting(body: ByteStream, id: ChunkId, limit: u64, seen: Arc<AtomicU64>) -> ByteStream {
    Box::pin(body.and_then(move |piece| {
        let n = piece.len() as u64;
        let total = seen.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        let result = if total > limit {
            Err(BlobError::new(
                BlobErrorKind::TooLarge,
                format!("object {id} is larger than {limit} bytes"),
            ))
        } else {
            Ok(piece)
        };
        futures::future::ready(result)
    }))
}

/// `body`, which must be exactly `len` bytes: more is refused as soon as it
/// arrives, fewer when the body ends (the store then keeps nothing).
fn exactly(body: ByteStream, id: ChunkId, len: u64) -> ByteStream {
    let seen = Arc::new(AtomicU64::new(0));
    let counted = capped_counting(body, id, len, Arc::clone(&seen));
    let end = futures::stream::once(async move {
        let got = seen.load(Ordering::Relaxed);
        (got != len).then(|| {
            Err(BlobError::new(
                BlobErrorKind::Io,
                format!("the upload of object {id} ended after {got} of its {len} bytes"),
            ))
        })
    })
    .filter_map(futures::future::ready);
    Box::pin(counted.chain(end))
}

/// Decodes `data` as the plain chunk `chunk` names, off the runtime: it
/// must hash to its id and have the size the index records.
async fn check_chunk(chunk: ChunkRef, data: Bytes) -> Result<(), ServiceError> {
    let decoded = tokio::task::spawn_blocking(move || {
        stacksync_content::ChunkCodec::plain().decode(&chunk.id, &data)
    })
    .await?;
    match decoded {
        Ok(plain) if plain.len() == chunk.size as usize => Ok(()),
        Ok(plain) => Err(Error::bad_request(format!(
            "chunk {} decodes to {} bytes, not {}",
            chunk.id,
            plain.len(),
            chunk.size
        ))
        .into()),
        Err(e) => Err(Error::bad_request(format!(
            "object {} is not the chunk its name says: {e}",
            chunk.id
        ))
        .into()),
    }
}

/// The stored (encoded) bytes of `chunk` in `container`: its span of a
/// pack, or the object named by its id.
pub(crate) async fn read_stored(
    blobs: &dyn BlobStore,
    container: &ContainerName,
    chunk: &ChunkRef,
) -> Result<Bytes, ServiceError> {
    let (object, range) = match chunk.span {
        Some(span) => (
            span.pack,
            Some(ByteRange {
                start: span.offset,
                end: Some(span.end()),
            }),
        ),
        None => (chunk.id, None),
    };
    read_object(blobs, container, &object, range).await
}

/// Reads a whole object, or exactly the bytes of `range` (see
/// [`Service::get_chunk`]).
pub(crate) async fn read_object(
    blobs: &dyn BlobStore,
    container: &ContainerName,
    id: &ChunkId,
    range: Option<ByteRange>,
) -> Result<Bytes, ServiceError> {
    let Some(range) = range else {
        return blobs
            .get_bytes(container, id)
            .await
            .blob(|| format!("reading object {id} from {container}"));
    };
    let Some(end) = range.end.filter(|&end| end > range.start) else {
        return Err(Error::bad_request(format!(
            "a read of object {id} names a non-empty range with both ends, not {range:?}"
        ))
        .into());
    };
    let what = || {
        format!(
            "reading bytes {}..{end} of {id} from {container}",
            range.start
        )
    };
    let stream = blobs.get(container, id, Some(range)).await.blob(what)?;
    let data = stacksync_blobstore::collect(stream).await.blob(what)?;
    if data.len() as u64 == end - range.start {
        return Ok(data);
    }
    // Stores answer a range past the end with what there is (or nothing);
    // only the object's size tells a short object from a bad read.
    let size = blobs.head(container, id).await.blob(what)?.size;
    if end <= size {
        return Err(Error::internal(format!(
            "storage returned {} bytes for bytes {}..{end} of {id} ({size} bytes) in {container}",
            data.len(),
            range.start
        ))
        .into());
    }
    Err(ServiceError::RangeNotSatisfiable {
        object: *id,
        start: range.start,
        end,
        size,
    })
}
