//! Chunk data for clients whose data goes through the server (the local
//! directory store, or clients that may not reach Swift), and what a client
//! needs to reach Swift directly. Every call is authorized by membership of
//! the workspace whose container holds the chunks.

use bytes::Bytes;
use stacksync_proto::{ChunkId, Error, UserId, WorkspaceId};

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
    /// Stores one encoded chunk in the workspace's container.
    pub async fn put_chunk(
        &self,
        user: UserId,
        ws: WorkspaceId,
        id: &ChunkId,
        data: Bytes,
    ) -> Result<(), Error> {
        let workspace = self.member_of(user, ws).await?;
        let container = container_name(&workspace.container)?;
        self.blobs()
            .put_bytes(&container, id, data)
            .await
            .blob(|| format!("storing chunk {id} in {container}"))?;
        Ok(())
    }

    /// Reads one encoded chunk from the workspace's container.
    pub async fn get_chunk(
        &self,
        user: UserId,
        ws: WorkspaceId,
        id: &ChunkId,
    ) -> Result<Bytes, Error> {
        let workspace = self.member_of(user, ws).await?;
        let container = container_name(&workspace.container)?;
        Ok(self
            .blobs()
            .get_bytes(&container, id)
            .await
            .blob(|| format!("reading chunk {id} from {container}"))?)
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
