//! The trash: what a user deleted, and restoring it. A deleted item is
//! shown when the folder it was in still stands (a deleted folder stands
//! for everything deleted with it); restoring a folder brings back what
//! was deleted with it: the descendants deleted by the same device in the
//! hour up to the folder's own deletion (a folder's delete removes its
//! contents first, deepest first, then the folder).

use stacksync_metastore::MAX_TRASH_PAGE;
use stacksync_proto::{Error, ErrorKind, ItemMeta, ItemStatus, ProposedItem, UserId, Workspace};
use uuid::Uuid;

use super::{ApiNode, readable_here, to_proto};
use crate::{ApiCaller, Service};

type Result<T, E = Error> = std::result::Result<T, E>;

/// How long before a folder's deletion the deletion of something inside
/// it counts as part of it.
const DELETED_WITH_WINDOW_MS: i64 = 60 * 60 * 1000;

/// The live version a deleted item had before its deletion, as a proposal
/// to commit it again on top of `deleted`.
fn undeleted(before: ItemMeta, deleted: &ItemMeta) -> ProposedItem {
    ProposedItem {
        id: deleted.id,
        parent: before.parent,
        name: before.name,
        is_folder: before.is_folder,
        mimetype: before.mimetype,
        status: ItemStatus::Changed,
        version: deleted.version + 1,
        content_hash: before.content_hash,
        size: before.size,
        client_modified: before.client_modified,
        chunks: before.chunks,
        record: None,
    }
}

impl Service {
    /// Deleted items of every workspace of `user` whose contents the
    /// server may read, whose folder still stands, most recently deleted
    /// first (at most [`MAX_TRASH_PAGE`] per workspace).
    pub async fn api_trash(&self, user: UserId) -> Result<Vec<ApiNode>> {
        let (all, _) = self.api_workspaces(user).await?;
        let mut trash = Vec::new();
        for ws in all.into_iter().filter(|w| readable_here(w).is_ok()) {
            let deleted = self
                .store()
                .deleted_items(ws.id, MAX_TRASH_PAGE)
                .await
                .map_err(to_proto)?;
            for meta in deleted {
                let parent_stands = match meta.parent {
                    None => true,
                    Some(p) => self
                        .store()
                        .item(ws.id, p)
                        .await
                        .is_ok_and(|parent| parent.status.is_live()),
                };
                if parent_stands {
                    trash.push(ApiNode::Item {
                        workspace: ws.clone(),
                        meta,
                    });
                }
            }
        }
        trash.sort_by_key(|n| match n {
            ApiNode::Item { meta, .. } => std::cmp::Reverse(meta.server_modified),
            _ => std::cmp::Reverse(0),
        });
        Ok(trash)
    }

    /// Brings a deleted file or folder back where it was (a folder with
    /// what was deleted with it), as new versions committed by the
    /// caller's device; answers the restored item.
    pub async fn api_untrash(&self, caller: &ApiCaller, id: Uuid) -> Result<ApiNode> {
        let node = self.api_node(caller.user, Some(id)).await?;
        let ApiNode::Item { workspace, meta } = node else {
            return Err(Error::bad_request(
                "only files and folders are in the trash",
            ));
        };
        readable_here(&workspace)?;
        if meta.status.is_live() {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("'{}' is not deleted", meta.name),
            ));
        }
        if let Some(p) = meta.parent {
            let parent = self.store().item(workspace.id, p).await.map_err(to_proto)?;
            if !parent.status.is_live() {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "the folder '{}' was deleted too: restore it first",
                        parent.name
                    ),
                ));
            }
        }
        self.writable_member_of(caller.user, workspace.id)
            .await
            .map_err(to_proto)?;
        let device = self.api_device(caller).await?;
        let restored = self
            .api_commit(
                caller.user,
                &workspace,
                device,
                vec![self.undeletion(&workspace, &meta).await?],
            )
            .await?
            .pop()
            .ok_or_else(|| Error::internal("a restore committed nothing"))?;
        if meta.is_folder {
            self.untrash_contents(caller.user, &workspace, device, &meta)
                .await?;
        }
        Ok(ApiNode::Item {
            workspace,
            meta: restored,
        })
    }

    async fn undeletion(&self, ws: &Workspace, deleted: &ItemMeta) -> Result<ProposedItem> {
        let before = deleted
            .version
            .checked_sub(1)
            .filter(|v| *v >= 1)
            .ok_or_else(|| {
                Error::internal(format!("{} was deleted at its first version", deleted.id))
            })?;
        let before = self
            .store()
            .version(ws.id, deleted.id, before)
            .await
            .map_err(to_proto)?;
        Ok(undeleted(before, deleted))
    }

    /// Restores, folder by folder, the descendants of `folder` (just
    /// restored) that were deleted with it.
    async fn untrash_contents(
        &self,
        user: UserId,
        ws: &Workspace,
        device: stacksync_proto::DeviceId,
        folder: &ItemMeta,
    ) -> Result<()> {
        let until = folder.server_modified;
        let since = until.saturating_sub(DELETED_WITH_WINDOW_MS);
        let mut folders = vec![folder.id];
        while let Some(at) = folders.pop() {
            let children = self
                .store()
                .all_children(ws.id, at)
                .await
                .map_err(to_proto)?;
            let mut proposals = Vec::new();
            for child in children {
                let with_it = !child.status.is_live()
                    && child.device == folder.device
                    && (since..=until).contains(&child.server_modified);
                if with_it {
                    if child.is_folder {
                        folders.push(child.id);
                    }
                    proposals.push(self.undeletion(ws, &child).await?);
                }
            }
            for batch in proposals.chunks(stacksync_proto::CommitRequest::MAX_ITEMS) {
                self.api_commit(user, ws, device, batch.to_vec()).await?;
            }
        }
        Ok(())
    }
}
