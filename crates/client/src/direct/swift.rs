//! Chunks straight to and from Swift, as the account's storage user; in a
//! shared workspace (where that user may only read) written through the
//! server's write-once upload instead.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use stacksync_proto::{ChunkId, ChunkRef, Error, ErrorKind, WorkspaceId};

use super::Inner;
use crate::connection::{GatewayTransport, locate_chunks};
use crate::transfer::{BlobTransport, ChunkTransport};

/// Chunks and packs of one workspace in its Swift container, with errors
/// that say which container, workspace and storage user were refused; the
/// service's chunk index is asked over the bus.
pub(super) struct SwiftTransport {
    pub(super) blobs: BlobTransport,
    /// Where chunks and packs are written when not to Swift directly.
    pub(super) writes: Option<GatewayTransport>,
    pub(super) service: Arc<Inner>,
    pub(super) workspace: WorkspaceId,
    pub(super) context: String,
}

impl SwiftTransport {
    fn explain(&self, e: Error) -> Error {
        let why = match e.kind {
            ErrorKind::Forbidden => "Swift refused access to",
            ErrorKind::Unauthenticated => "Swift refused the credentials for",
            ErrorKind::NotFound => "not found in",
            _ => "storage failure on",
        };
        Error {
            message: format!("{why} {}: {}", self.context, e.message),
            ..e
        }
    }
}

#[async_trait]
impl ChunkTransport for SwiftTransport {
    async fn has_chunks(&self, ids: &[ChunkId]) -> Result<Vec<bool>, Error> {
        self.blobs
            .has_chunks(ids)
            .await
            .map_err(|e| self.explain(e))
    }

    async fn put_chunk(&self, id: &ChunkId, data: Bytes) -> Result<(), Error> {
        if let Some(writes) = &self.writes {
            return writes.put_chunk(id, data).await;
        }
        self.blobs
            .put_chunk(id, data)
            .await
            .map_err(|e| self.explain(e))
    }

    async fn get_chunk(&self, id: &ChunkId) -> Result<Bytes, Error> {
        self.blobs.get_chunk(id).await.map_err(|e| self.explain(e))
    }

    async fn get_range(&self, id: &ChunkId, offset: u64, len: u32) -> Result<Bytes, Error> {
        self.blobs
            .get_range(id, offset, len)
            .await
            .map_err(|e| self.explain(e))
    }

    async fn locate_chunks(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, Error> {
        locate_chunks(self.workspace, ids, false, |r| self.service.rpc(r)).await
    }

    async fn locate_bases(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, Error> {
        locate_chunks(self.workspace, ids, true, |r| self.service.rpc(r)).await
    }
}
