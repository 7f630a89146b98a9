//! Quota for bytes stored: every object the server stores, or that a commit
//! names after a client wrote it to Swift directly, is recorded in the
//! metadata store's object ledger and charged to the workspace owner
//! before it counts (see `stacksync_metastore::StoredObject`).

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt};
use stacksync_metastore::Charge;
use stacksync_proto::{ChunkId, CommitRequest, UserId, Workspace};

use crate::error::{BlobContext, ServiceError};
use crate::{Service, container_name};

/// HEAD requests in flight while a commit's unknown objects are looked up.
const HEAD_CONCURRENCY: usize = 16;

impl Service {
    /// Records an upload of `size` bytes named `id` into `ws` by `user`,
    /// charging it to the workspace owner; call it before storing the
    /// bytes, so an upload past the quota (`QuotaExceeded`) stores nothing.
    /// A repeat of a recorded object is charged once.
    pub(crate) async fn record_upload(
        &self,
        user: UserId,
        ws: &Workspace,
        id: &ChunkId,
        size: u64,
    ) -> Result<(), ServiceError> {
        self.store()
            .record_object(ws.id, *id, size, Some(user), Charge::WithinQuota)
            .await?;
        Ok(())
    }

    /// Records the objects `commit` names that the ledger does not know
    /// yet and the container holds (written directly to Swift by the
    /// committer), charging them within the quota. Objects the container
    /// lacks are left for the commit to refuse (a pack) or to take as it
    /// always did (a chunk object of its own).
    pub(crate) async fn record_named_objects(
        &self,
        user: UserId,
        ws: &Workspace,
        commit: &CommitRequest,
    ) -> Result<(), ServiceError> {
        let named: BTreeSet<ChunkId> = commit
            .items
            .iter()
            .flat_map(|p| p.chunks.iter().map(|c| c.span.map_or(c.id, |s| s.pack)))
            .collect();
        if named.is_empty() {
            return Ok(());
        }
        let named: Vec<ChunkId> = named.into_iter().collect();
        let known: BTreeSet<ChunkId> = self
            .store()
            .objects(ws.id, &named)
            .await?
            .into_iter()
            .map(|o| o.id)
            .collect();
        let unknown: Vec<ChunkId> = named.into_iter().filter(|id| !known.contains(id)).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let container = container_name(&ws.container)?;
        let blobs = self.blobs().clone();
        let found: Vec<(ChunkId, u64)> = futures::stream::iter(unknown)
            .map(|id| {
                let (blobs, container) = (blobs.clone(), container.clone());
                async move {
                    match blobs.head(&container, &id).await {
                        Ok(info) => Ok(Some((id, info.size))),
                        Err(e) if e.is_not_found() => Ok(None),
                        Err(e) => Err(e).blob(|| format!("looking up object {id} in {container}")),
                    }
                }
            })
            .buffer_unordered(HEAD_CONCURRENCY)
            .try_filter_map(|found| async move { Ok(found) })
            .try_collect()
            .await?;
        for (id, size) in found {
            self.store()
                .record_object(ws.id, id, size, Some(user), Charge::WithinQuota)
                .await?;
        }
        Ok(())
    }
}
