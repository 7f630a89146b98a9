//! How encoded chunks reach the chunk store: a small trait with one
//! implementation over a [`BlobStore`] container (direct Swift access, or a
//! local store in tests); the gateway client provides the other.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use stacksync_blobstore::{BlobStore, ContainerName};
use stacksync_proto::{ChunkId, Error};

/// Moves encoded chunks to and from the store of one workspace. Errors are
/// protocol errors, so that a transport's `Unavailable` (retry later) is
/// told apart from a refusal.
#[async_trait]
pub trait ChunkTransport: Send + Sync {
    /// For each id, in order, whether the store already has that chunk.
    async fn has_chunks(&self, ids: &[ChunkId]) -> Result<Vec<bool>, Error>;
    /// Stores one encoded chunk.
    async fn put_chunk(&self, id: &ChunkId, data: Bytes) -> Result<(), Error>;
    /// Fetches one encoded chunk (the caller decodes and verifies it).
    async fn get_chunk(&self, id: &ChunkId) -> Result<Bytes, Error>;
}

/// A [`ChunkTransport`] straight to one container of a [`BlobStore`].
#[derive(Clone)]
pub struct BlobTransport {
    store: Arc<dyn BlobStore>,
    container: ContainerName,
}

impl BlobTransport {
    /// Chunks of `container` in `store` (the container must exist).
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
}
