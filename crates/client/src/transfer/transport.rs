//! How encoded chunks and pack objects reach the store of one workspace: a
//! small trait with one implementation over a [`BlobStore`] container
//! (local store in tests, and under the direct transport's Swift one); the
//! gateway and direct connections provide the others.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use stacksync_blobstore::{BlobStore, ByteRange, ContainerName, collect};
use stacksync_proto::{ChunkId, ChunkRef, Error};

/// Moves objects (encoded chunks stored on their own, and pack objects
/// holding many) to and from the store of one workspace, and asks the
/// service where it already stores chunks. Errors are protocol errors, so
/// that a transport's `Unavailable` (retry later) is told apart from a
/// refusal.
#[async_trait]
pub trait ChunkTransport: Send + Sync {
    /// For each name, in order, whether the store has an object of that
    /// name (a chunk or a pack).
    async fn has_chunks(&self, ids: &[ChunkId]) -> Result<Vec<bool>, Error>;
    /// Stores one object: an encoded chunk named by its id, or a pack.
    async fn put_chunk(&self, id: &ChunkId, data: Bytes) -> Result<(), Error>;
    /// Fetches one whole object (the caller decodes and verifies it).
    async fn get_chunk(&self, id: &ChunkId) -> Result<Bytes, Error>;
    /// Fetches bytes `offset..offset + len` of one object (a chunk inside
    /// a pack); fails unless exactly `len` bytes come back.
    async fn get_range(&self, id: &ChunkId, offset: u64, len: u32) -> Result<Bytes, Error>;
    /// For each id, in order, the chunk as the service stores it (with its
    /// location) if any version of the workspace uses it, else `None`. Any
    /// number of ids (implementations split them into requests of at most
    /// [`stacksync_proto::rpc::Request::MAX_LOCATE_IDS`]). `None` is always
    /// a safe answer: it only costs sending the chunk again.
    async fn locate_chunks(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, Error>;
    /// For each id, in order, where to read the chunk as the base of a
    /// delta (`PackSpan::base`): the workspace's location of every chunk it
    /// uses and stores whole, whoever uploaded it; `None` if it has none.
    /// The caller checks what it reads against the id.
    async fn locate_bases(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, Error>;
}

/// A [`ChunkTransport`] straight to one container of a [`BlobStore`]. There
/// is no service behind it, so it locates nothing.
#[derive(Clone)]
pub struct BlobTransport {
    store: Arc<dyn BlobStore>,
    container: ContainerName,
}

impl BlobTransport {
    /// Objects of `container` in `store` (the container must exist).
    pub fn new(store: Arc<dyn BlobStore>, container: ContainerName) -> BlobTransport {
        BlobTransport { store, container }
    }
}

impl fmt::Debug for BlobTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobTransport")
            .field("container", &self.container.as_str())
            .finish()
    }
}

#[async_trait]
impl ChunkTransport for BlobTransport {
    async fn has_chunks(&self, ids: &[ChunkId]) -> Result<Vec<bool>, Error> {
        let present = self.store.existing(&self.container, ids).await?;
        Ok(ids.iter().map(|id| present.contains(id)).collect())
    }

    async fn put_chunk(&self, id: &ChunkId, data: Bytes) -> Result<(), Error> {
        self.store.put_bytes(&self.container, id, data).await?;
        Ok(())
    }

    async fn get_chunk(&self, id: &ChunkId) -> Result<Bytes, Error> {
        Ok(self.store.get_bytes(&self.container, id).await?)
    }

    async fn get_range(&self, id: &ChunkId, offset: u64, len: u32) -> Result<Bytes, Error> {
        let range = ByteRange {
            start: offset,
            end: Some(offset + u64::from(len)),
        };
        let bytes = collect(self.store.get(&self.container, id, Some(range)).await?).await?;
        if bytes.len() != len as usize {
            // The store clamps a range to the object: a short answer means
            // the span points past the end of the object.
            return Err(Error::not_found(format!(
                "object {id} has no bytes {offset}..{} (got {} bytes)",
                offset + u64::from(len),
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    async fn locate_chunks(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, Error> {
        Ok(vec![None; ids.len()])
    }

    /// Without a service there is no index: a base is the object named by
    /// its id, if the container has it (a delta's base is always stored
    /// whole).
    async fn locate_bases(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, Error> {
        let present = self.store.existing(&self.container, ids).await?;
        Ok(ids
            .iter()
            .map(|id| present.contains(id).then(|| ChunkRef::whole(*id, 0)))
            .collect())
    }
}
