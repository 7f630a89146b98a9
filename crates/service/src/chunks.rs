//! Chunk data for clients whose data goes through the server (the local
//! directory store, or clients that may not reach Swift), and what a client
//! needs to reach Swift directly. Every call is authorized by membership of
//! the workspace whose container holds the chunks.

use bytes::Bytes;
use stacksync_blobstore::{BlobStore, ByteRange, ContainerName};
use stacksync_proto::{ChunkId, Error, ErrorKind, PackSpan, UserId, WorkspaceId};

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

impl Service {
    /// Stores one object in the workspace's container: an encoded chunk
    /// named by its id, or a pack of chunks (at most
    /// [`PackSpan::MAX_PACK_BYTES`]) named by the client's random id.
    pub async fn put_chunk(
        &self,
        user: UserId,
        ws: WorkspaceId,
        id: &ChunkId,
        data: Bytes,
    ) -> Result<(), Error> {
        let workspace = self.member_of(user, ws).await?;
        if data.len() as u64 > PackSpan::MAX_PACK_BYTES {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "object {id} has {} bytes; objects hold at most {}",
                    data.len(),
                    PackSpan::MAX_PACK_BYTES
                ),
            ));
        }
        // Charged before anything is stored: past the quota, nothing lands.
        self.record_upload(user, &workspace, id, data.len() as u64)
            .await?;
        let container = container_name(&workspace.container)?;
        self.blobs()
            .put_bytes(&container, id, data)
            .await
            .blob(|| format!("storing chunk {id} in {container}"))?;
        Ok(())
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
