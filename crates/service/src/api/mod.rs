//! The REST API v2's files and folders: one tree per user made of their
//! private workspace, with each shared workspace they belong to as a folder
//! where they mounted it, and every operation on it expressed as the
//! desktop protocol's own operations (commits through [`Service::commit`],
//! restores, shares, the change feed), so the one set of commit rules and
//! authorization checks serves both and every device hears an API change
//! by push at once.
//!
//! Ids: a file or folder is named by its item id (item ids are unique
//! across workspaces), a shared folder by its workspace id, the top folder
//! by nothing. Anything the caller may not see answers "not found", never
//! "forbidden", so ids cannot be probed. A workspace encrypted on its
//! members' devices (`EncryptionMode::ClientSide`) is listed but its
//! contents are neither read nor written here: the server holds no key.
//!
//! New content is chunked, packed and stored here (`upload.rs`) and read
//! back (`download.rs`), streamed both ways.

mod download;
mod trash;
mod upload;
mod upload_session;

use std::collections::BTreeMap;

use stacksync_metastore::ShareTerms;
use stacksync_proto::rpc::Reply;
use stacksync_proto::{
    CommitOutcome, CommitRequest, DeviceId, EncryptionMode, Error, ErrorKind, ItemId, ItemMeta,
    ItemName, ItemStatus, Member, ProposedItem, UserId, Workspace, WorkspaceId, printable,
};
use uuid::Uuid;

pub use download::Content;
pub(crate) use download::plain_chunk;
pub use upload::{NewContent, UploadTo};
pub use upload_session::{
    FinishOptions, FinishedUpload, MAX_OPEN_UPLOAD_SESSIONS, MAX_UPLOAD_PIECE, MAX_UPLOAD_PIECES,
    STAGING_CONTAINER, SessionRefusal, UPLOAD_SESSION_TTL, UploadPiece, UploadSession,
    UploadSessionRequest,
};

use crate::auth::{derived_id, now_ms};
use crate::error::ServiceError;
use crate::{ApiCaller, Service};

type Result<T, E = Error> = std::result::Result<T, E>;

/// Most children in one page of a folder listing, and the default.
pub const MAX_LIST_PAGE: u32 = 1000;

/// Most entries in one page of the change feed (`/delta`).
pub const MAX_DELTA_PAGE: u32 = 1000;

/// What an API id names, as the caller sees it.
// Nearly every node is an item (listings hold pages of them): boxing the
// large variant would add an allocation to the common case.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum ApiNode {
    /// The caller's top folder: the top of their private workspace.
    Root {
        /// The private workspace.
        workspace: Workspace,
    },
    /// A shared folder, with the caller's own name and place for it.
    SharedRoot {
        /// The shared workspace as the caller sees it.
        workspace: Workspace,
    },
    /// A file or folder.
    Item {
        /// The workspace holding it, as the caller sees it.
        workspace: Workspace,
        /// Its latest version (or the version asked for).
        meta: ItemMeta,
    },
}

impl ApiNode {
    /// The node's API id (`None` for the top folder).
    pub fn id(&self) -> Option<Uuid> {
        match self {
            ApiNode::Root { .. } => None,
            ApiNode::SharedRoot { workspace } => Some(workspace.id.0),
            ApiNode::Item { meta, .. } => Some(meta.id.0),
        }
    }

    /// The API id of the folder holding the node (`None`: the top folder,
    /// or nothing for the top folder itself).
    pub fn parent_id(&self) -> Option<Uuid> {
        match self {
            ApiNode::Root { .. } => None,
            ApiNode::SharedRoot { workspace } => workspace.mount_parent.map(|p| p.0),
            ApiNode::Item { workspace, meta } => match meta.parent {
                Some(p) => Some(p.0),
                None if workspace.is_shared => Some(workspace.id.0),
                None => None,
            },
        }
    }

    /// Whether it is a folder (the top folder and shared folders are).
    pub fn is_folder(&self) -> bool {
        match self {
            ApiNode::Item { meta, .. } => meta.is_folder,
            _ => true,
        }
    }

    /// The workspace holding the node.
    pub fn workspace(&self) -> &Workspace {
        match self {
            ApiNode::Root { workspace }
            | ApiNode::SharedRoot { workspace }
            | ApiNode::Item { workspace, .. } => workspace,
        }
    }

    /// Where new children of this folder go: its workspace and their
    /// parent there; refused for a file or a deleted folder.
    fn as_parent(&self) -> Result<(&Workspace, Option<ItemId>)> {
        match self {
            ApiNode::Root { workspace } | ApiNode::SharedRoot { workspace } => {
                Ok((workspace, None))
            }
            ApiNode::Item { workspace, meta } => {
                if !meta.is_folder {
                    return Err(Error::bad_request(format!(
                        "{} is a file, not a folder",
                        meta.id
                    )));
                }
                if !meta.status.is_live() {
                    return Err(Error::not_found(format!("folder {} was deleted", meta.id)));
                }
                Ok((workspace, Some(meta.id)))
            }
        }
    }
}

/// A page of a folder's children.
#[derive(Debug, Clone)]
pub struct ChildrenPage {
    /// The children, shared folders mounted there first (on the first
    /// page), then items by name.
    pub children: Vec<ApiNode>,
    /// Where the next page starts, if there may be one.
    pub cursor: Option<String>,
}

/// A page of the caller's change feed across all their workspaces.
#[derive(Debug, Clone)]
pub struct DeltaPage {
    /// Latest state of each changed item (deleted ones included), and the
    /// shared folders the cursor did not know yet.
    pub entries: Vec<ApiNode>,
    /// The cursor to pass next time.
    pub cursor: String,
    /// Whether more changes wait beyond `cursor`.
    pub has_more: bool,
}

/// A rename or move.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// The new name, if it changes.
    pub name: Option<String>,
    /// The new parent folder (`Some(None)`: the top folder), if it changes.
    pub parent: Option<Option<Uuid>>,
}

/// A person a folder was shared with or unshared from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Their name, empty when the email has no account yet.
    pub name: String,
    /// Their email.
    pub email: String,
}

/// A name as the API takes it: composed (NFC) first, so that a browser or
/// phone sending decomposed text is not refused, then checked.
fn api_name(name: &str) -> Result<ItemName> {
    use unicode_normalization::UnicodeNormalization;
    let composed: String = name.nfc().collect();
    ItemName::new(composed).map_err(|why| Error::invalid_name(name, why))
}

/// Refuses an operation on contents the server cannot read or write.
fn readable_here(ws: &Workspace) -> Result<()> {
    if ws.encryption == EncryptionMode::ClientSide {
        return Err(Error::forbidden(format!(
            "'{}' is end-to-end encrypted: only its members' devices hold its key, so its files \
             cannot be read or written through the API",
            printable(&ws.name)
        )));
    }
    Ok(())
}

/// Refuses an update based on a version other than the current one.
fn check_if_match(meta: &ItemMeta, if_match: Option<u64>) -> Result<()> {
    match if_match {
        Some(v) if v != meta.version => Err(Error::conflict(meta.clone())),
        _ => Ok(()),
    }
}

fn to_proto(e: impl Into<ServiceError>) -> Error {
    e.into().to_proto()
}

impl Service {
    /// The device an app's changes are committed as: one per user and
    /// app, registered on first use (its name says which app).
    pub async fn api_device(&self, caller: &ApiCaller) -> Result<DeviceId> {
        let key = Uuid::from_slice(&blake3::hash(caller.consumer_key.as_bytes()).as_bytes()[..16])
            .map_err(|e| Error::internal(format!("deriving the app's device id: {e}")))?;
        let id = DeviceId(derived_id("api device", caller.user.0, key));
        let name = match self.store().oauth_consumer(&caller.consumer_key).await {
            Ok(Some(c)) => c.name,
            _ => caller.consumer_key.clone(),
        };
        self.store()
            .upsert_device(caller.user, Some(id), &name, "api", "rest-api-v2", None)
            .await
            .map_err(to_proto)?;
        Ok(id)
    }

    /// The user's workspaces and their private one.
    async fn api_workspaces(&self, user: UserId) -> Result<(Vec<Workspace>, Workspace)> {
        let all = self.store().workspaces_of(user).await.map_err(to_proto)?;
        let private = all
            .iter()
            .find(|w| !w.is_shared && w.owner == user)
            .cloned()
            .ok_or_else(|| Error::internal(format!("user {user} has no private workspace")))?;
        Ok((all, private))
    }

    /// What `id` names for `user` (`None`: their top folder); not found
    /// unless they may see it.
    pub async fn api_node(&self, user: UserId, id: Option<Uuid>) -> Result<ApiNode> {
        let (all, private) = self.api_workspaces(user).await?;
        let Some(id) = id else {
            return Ok(ApiNode::Root { workspace: private });
        };
        if let Some(ws) = all.iter().find(|w| w.is_shared && w.id.0 == id) {
            return Ok(ApiNode::SharedRoot {
                workspace: ws.clone(),
            });
        }
        let not_found = || Error::not_found(format!("no file or folder {id}"));
        let meta = self
            .store()
            .item_by_id(ItemId(id))
            .await
            .map_err(to_proto)?
            .ok_or_else(not_found)?;
        let workspace = all
            .into_iter()
            .find(|w| w.id == meta.workspace)
            .ok_or_else(not_found)?;
        Ok(ApiNode::Item { workspace, meta })
    }

    /// [`Service::api_node`], which must be a file (`folder` false) or a
    /// folder (`folder` true): the other kind is not found at that path.
    pub async fn api_node_of_kind(&self, user: UserId, id: Uuid, folder: bool) -> Result<ApiNode> {
        let node = self.api_node(user, Some(id)).await?;
        if node.is_folder() != folder {
            return Err(Error::not_found(format!(
                "{id} is a {}, not a {}",
                if folder { "file" } else { "folder" },
                if folder { "folder" } else { "file" }
            )));
        }
        Ok(node)
    }

    /// One page of a folder's children: shared folders mounted there
    /// first (first page only), then its items by name. `cursor` is what
    /// the previous page returned.
    pub async fn api_children(
        &self,
        user: UserId,
        folder: &ApiNode,
        include_deleted: bool,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<ChildrenPage> {
        let limit = limit.clamp(1, MAX_LIST_PAGE);
        let (ws, parent) = folder.as_parent()?;
        let after = cursor.map(decode_list_cursor).transpose()?;
        let mut children = Vec::new();
        if after.is_none() && !ws.is_shared {
            let (all, _) = self.api_workspaces(user).await?;
            children.extend(
                all.into_iter()
                    .filter(|w| w.is_shared && w.mount_parent == parent)
                    .map(|workspace| ApiNode::SharedRoot { workspace }),
            );
        }
        let items = self
            .store()
            .children_page(
                ws.id,
                parent,
                include_deleted,
                after.as_ref().map(|(n, id)| (n.as_str(), *id)),
                limit,
            )
            .await
            .map_err(to_proto)?;
        let cursor = (items.len() == limit as usize)
            .then(|| {
                items
                    .last()
                    .map(|m| encode_list_cursor(m.name.as_str(), m.id))
            })
            .flatten();
        children.extend(items.into_iter().map(|meta| ApiNode::Item {
            workspace: ws.clone(),
            meta,
        }));
        Ok(ChildrenPage { children, cursor })
    }

    /// Commits one proposal as `device` into `ws` (authorized, screened
    /// and announced like any commit) and answers its stored version.
    async fn api_commit(
        &self,
        user: UserId,
        ws: &Workspace,
        device: DeviceId,
        proposals: Vec<ProposedItem>,
    ) -> Result<Vec<ItemMeta>> {
        let request = CommitRequest {
            workspace: ws.id,
            device,
            items: proposals,
        };
        let result = self.commit(user, request).await.map_err(to_proto)?;
        result
            .results
            .into_iter()
            .map(|r| match r.outcome {
                CommitOutcome::Committed { meta } => Ok(meta),
                CommitOutcome::Conflict { current } => Err(Error::conflict(current)),
                CommitOutcome::Refused { error } => Err(error),
            })
            .collect()
    }

    async fn api_commit_one(
        &self,
        user: UserId,
        ws: &Workspace,
        device: DeviceId,
        proposal: ProposedItem,
    ) -> Result<ApiNode> {
        let meta = self
            .api_commit(user, ws, device, vec![proposal])
            .await?
            .pop()
            .ok_or_else(|| Error::internal("a one-item commit returned no result"))?;
        Ok(ApiNode::Item {
            workspace: ws.clone(),
            meta,
        })
    }

    /// Creates a folder named `name` in `parent` (`None`: the top folder).
    pub async fn api_create_folder(
        &self,
        caller: &ApiCaller,
        parent: Option<Uuid>,
        name: &str,
    ) -> Result<ApiNode> {
        let node = self.api_node(caller.user, parent).await?;
        let (ws, parent) = node.as_parent()?;
        let ws = self
            .writable_member_of(caller.user, ws.id)
            .await
            .map_err(to_proto)?;
        readable_here(&ws)?;
        let name = api_name(name)?;
        let device = self.api_device(caller).await?;
        let proposal = ProposedItem {
            id: ItemId::new(),
            parent,
            name,
            is_folder: true,
            mimetype: None,
            status: ItemStatus::New,
            version: 1,
            content_hash: None,
            size: 0,
            client_modified: now_ms(),
            chunks: Vec::new(),
            record: None,
        };
        self.api_commit_one(caller.user, &ws, device, proposal)
            .await
    }

    /// Renames or moves a file or folder (`folder` says which the path
    /// named), or renames or moves the caller's own mount of a shared
    /// folder. Moving between a shared folder and the rest of the tree is
    /// refused: items belong to one workspace.
    pub async fn api_place(
        &self,
        caller: &ApiCaller,
        id: Uuid,
        folder: bool,
        placement: Placement,
        if_match: Option<u64>,
    ) -> Result<ApiNode> {
        let node = self.api_node_of_kind(caller.user, id, folder).await?;
        let new_parent = match placement.parent {
            Some(p) => Some(self.api_node(caller.user, p).await?),
            None => None,
        };
        match node {
            ApiNode::Root { .. } => Err(Error::bad_request("the top folder cannot be moved")),
            ApiNode::SharedRoot { workspace } => {
                let mount = match &new_parent {
                    None => workspace.mount_parent,
                    Some(ApiNode::Root { .. }) => None,
                    Some(p @ ApiNode::Item { workspace: pw, .. }) if !pw.is_shared => {
                        p.as_parent()?.1
                    }
                    Some(_) => {
                        return Err(Error::bad_request(
                            "a shared folder can only be placed in your own folders",
                        ));
                    }
                };
                let name = match placement.name {
                    Some(n) => api_name(&n)?.to_string(),
                    None => workspace.name.clone(),
                };
                let updated = self
                    .update_workspace(caller.user, workspace.id, &name, mount)
                    .await
                    .map_err(to_proto)?;
                Ok(ApiNode::SharedRoot { workspace: updated })
            }
            ApiNode::Item { workspace, meta } => {
                if !meta.status.is_live() {
                    return Err(Error::not_found(format!("{id} was deleted")));
                }
                check_if_match(&meta, if_match)?;
                let parent = match &new_parent {
                    None => meta.parent,
                    Some(p) => {
                        let (pw, parent) = p.as_parent()?;
                        if pw.id != workspace.id {
                            return Err(Error::bad_request(
                                "moving between a shared folder and the rest of your files is \
                                 not supported: copy the file there and delete it here",
                            ));
                        }
                        parent
                    }
                };
                let name = match placement.name {
                    Some(n) => api_name(&n)?,
                    None => meta.name.clone(),
                };
                self.writable_member_of(caller.user, workspace.id)
                    .await
                    .map_err(to_proto)?;
                readable_here(&workspace)?;
                let device = self.api_device(caller).await?;
                let proposal = ProposedItem {
                    id: meta.id,
                    parent,
                    name,
                    is_folder: meta.is_folder,
                    mimetype: meta.mimetype.clone(),
                    // The store says renamed or moved itself.
                    status: ItemStatus::Changed,
                    version: meta.version + 1,
                    content_hash: meta.content_hash,
                    size: meta.size,
                    client_modified: meta.client_modified,
                    chunks: meta.chunks.clone(),
                    record: None,
                };
                self.api_commit_one(caller.user, &workspace, device, proposal)
                    .await
            }
        }
    }

    /// Deletes a file, or a folder with everything in it (each a new,
    /// deleted version: history is kept); a member deleting a shared
    /// folder leaves it, its owner must unshare it first.
    pub async fn api_delete(
        &self,
        caller: &ApiCaller,
        id: Uuid,
        folder: bool,
        if_match: Option<u64>,
    ) -> Result<ApiNode> {
        let node = self.api_node_of_kind(caller.user, id, folder).await?;
        let (workspace, meta) = match node {
            ApiNode::Root { .. } => {
                return Err(Error::bad_request("the top folder cannot be deleted"));
            }
            ApiNode::SharedRoot { workspace } => {
                if workspace.owner == caller.user {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "'{}' is shared: unshare it from its members first",
                            printable(&workspace.name)
                        ),
                    ));
                }
                self.leave_workspace(caller.user, workspace.id)
                    .await
                    .map_err(to_proto)?;
                return Ok(ApiNode::SharedRoot { workspace });
            }
            ApiNode::Item { workspace, meta } => (workspace, meta),
        };
        if !meta.status.is_live() {
            return Err(Error::not_found(format!("{id} was deleted already")));
        }
        check_if_match(&meta, if_match)?;
        self.writable_member_of(caller.user, workspace.id)
            .await
            .map_err(to_proto)?;
        readable_here(&workspace)?;
        let mut doomed = vec![meta.clone()];
        if meta.is_folder {
            self.refuse_mounts_inside(caller.user, &workspace, meta.id)
                .await?;
            doomed = self.live_subtree(&workspace, meta.clone()).await?;
        }
        let device = self.api_device(caller).await?;
        // Deepest first: a folder is deleted after everything in it, batch
        // after batch, so a failure half way leaves a consistent tree that
        // a retry finishes.
        let proposals: Vec<ProposedItem> = doomed.into_iter().rev().map(deleted).collect();
        let mut last = None;
        for batch in proposals.chunks(CommitRequest::MAX_ITEMS) {
            last = self
                .api_commit(caller.user, &workspace, device, batch.to_vec())
                .await?
                .pop();
        }
        let meta = last.ok_or_else(|| Error::internal("a delete committed nothing"))?;
        Ok(ApiNode::Item { workspace, meta })
    }

    /// `root` and every live item under it, each folder before what it
    /// holds.
    async fn live_subtree(&self, ws: &Workspace, root: ItemMeta) -> Result<Vec<ItemMeta>> {
        let mut all = vec![root];
        let mut next = 0;
        while next < all.len() {
            if all[next].is_folder {
                let children = self
                    .store()
                    .children(ws.id, Some(all[next].id))
                    .await
                    .map_err(to_proto)?;
                all.extend(children);
            }
            next += 1;
        }
        Ok(all)
    }

    /// Refuses to delete a folder of the private workspace that holds the
    /// caller's mount of a shared folder.
    async fn refuse_mounts_inside(
        &self,
        user: UserId,
        ws: &Workspace,
        folder: ItemId,
    ) -> Result<()> {
        if ws.is_shared {
            return Ok(());
        }
        let (all, _) = self.api_workspaces(user).await?;
        for shared in all.iter().filter(|w| w.is_shared) {
            let mut at = shared.mount_parent;
            // Walk up from the mount to the top (bounded by the depth).
            for _ in 0..256 {
                let Some(here) = at else { break };
                if here == folder {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "the folder holds the shared folder '{}': move it out or leave it first",
                            printable(&shared.name)
                        ),
                    ));
                }
                at = match self.store().item(ws.id, here).await {
                    Ok(m) => m.parent,
                    Err(_) => None,
                };
            }
        }
        Ok(())
    }

    /// Every version of a file or folder, oldest first.
    pub async fn api_versions(&self, user: UserId, id: Uuid, folder: bool) -> Result<Vec<ApiNode>> {
        let node = self.api_node_of_kind(user, id, folder).await?;
        let ApiNode::Item { workspace, meta } = node else {
            return Err(Error::bad_request(
                "a shared folder has no versions of its own",
            ));
        };
        let versions = self
            .store()
            .versions(workspace.id, meta.id)
            .await
            .map_err(to_proto)?;
        Ok(versions
            .into_iter()
            .map(|meta| ApiNode::Item {
                workspace: workspace.clone(),
                meta,
            })
            .collect())
    }

    /// Version `version` of a file.
    pub async fn api_version(&self, user: UserId, id: Uuid, version: u64) -> Result<ApiNode> {
        let node = self.api_node_of_kind(user, id, false).await?;
        let ApiNode::Item { workspace, meta } = node else {
            return Err(Error::not_found(format!("no file {id}")));
        };
        let meta = self
            .store()
            .version(workspace.id, meta.id, version)
            .await
            .map_err(to_proto)?;
        Ok(ApiNode::Item { workspace, meta })
    }

    /// Makes `version` of a file its content again, as a new version.
    pub async fn api_restore(&self, caller: &ApiCaller, id: Uuid, version: u64) -> Result<ApiNode> {
        let node = self.api_node_of_kind(caller.user, id, false).await?;
        let ApiNode::Item { workspace, meta } = node else {
            return Err(Error::not_found(format!("no file {id}")));
        };
        readable_here(&workspace)?;
        let device = self.api_device(caller).await?;
        let meta = self
            .restore(caller.user, workspace.id, meta.id, version, device)
            .await
            .map_err(to_proto)?;
        Ok(ApiNode::Item { workspace, meta })
    }

    /// Invites `emails` to a folder of the caller's own (they answer the
    /// invitation on their devices or the website).
    pub async fn api_share(
        &self,
        caller: &ApiCaller,
        id: Uuid,
        emails: &[String],
        read_only: bool,
    ) -> Result<Vec<Person>> {
        if emails.is_empty() {
            return Err(Error::bad_request(
                "say whom to share with: a list of emails",
            ));
        }
        let node = self.api_node_of_kind(caller.user, id, true).await?;
        let (workspace, meta) = match node {
            ApiNode::Item { workspace, meta } => (workspace, meta),
            ApiNode::SharedRoot { workspace } if workspace.owner != caller.user => {
                return Err(Error::forbidden(format!(
                    "only the owner of '{}' can invite people to it",
                    printable(&workspace.name)
                )));
            }
            _ => {
                return Err(Error::bad_request(
                    "this folder is shared already; a shared folder cannot be shared again",
                ));
            }
        };
        let terms = ShareTerms {
            encryption: EncryptionMode::Plain,
            read_only,
        };
        let reply = self
            .create_share_proposal(
                caller.user,
                Uuid::new_v4(),
                workspace.id,
                meta.id,
                emails,
                terms,
            )
            .await
            .map_err(to_proto)?;
        let Reply::ShareProposal { shared_to, .. } = reply else {
            return Err(Error::internal("a share answered something else"));
        };
        self.people(shared_to).await
    }

    /// Removes `emails` from a shared folder the caller owns.
    pub async fn api_unshare(
        &self,
        caller: &ApiCaller,
        id: Uuid,
        emails: &[String],
    ) -> Result<Vec<Person>> {
        if emails.is_empty() {
            return Err(Error::bad_request("say whom to unshare: a list of emails"));
        }
        let node = self.api_node_of_kind(caller.user, id, true).await?;
        let ApiNode::SharedRoot { workspace } = node else {
            return Err(Error::bad_request(format!("folder {id} is not shared")));
        };
        let reply = self
            .unshare(caller.user, workspace.id, emails)
            .await
            .map_err(to_proto)?;
        let Reply::Unshared { removed } = reply else {
            return Err(Error::internal("an unshare answered something else"));
        };
        self.people(removed).await
    }

    /// The members of a shared folder.
    pub async fn api_members(&self, user: UserId, id: Uuid) -> Result<Vec<Member>> {
        let node = self.api_node_of_kind(user, id, true).await?;
        let ApiNode::SharedRoot { workspace } = node else {
            return Err(Error::not_found(format!("folder {id} is not shared")));
        };
        self.store().members(workspace.id).await.map_err(to_proto)
    }

    async fn people(&self, emails: Vec<String>) -> Result<Vec<Person>> {
        let mut people = Vec::with_capacity(emails.len());
        for email in emails {
            let name = match self.store().user_by_email(&email).await.map_err(to_proto)? {
                Some(u) => u.account.name,
                None => String::new(),
            };
            people.push(Person { name, email });
        }
        Ok(people)
    }

    /// The caller's changes after `cursor` (`None`: from the start) across
    /// every workspace they belong to, at most `limit` entries.
    pub async fn api_delta(
        &self,
        user: UserId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<DeltaPage> {
        let mut budget = limit.clamp(1, MAX_DELTA_PAGE);
        let known = match cursor {
            Some(c) => decode_delta_cursor(c)?,
            None => BTreeMap::new(),
        };
        let (all, _) = self.api_workspaces(user).await?;
        let mut next = BTreeMap::new();
        let mut entries = Vec::new();
        let mut has_more = false;
        for ws in all {
            let since = known.get(&ws.id).copied();
            if since.is_none() && ws.is_shared {
                entries.push(ApiNode::SharedRoot {
                    workspace: ws.clone(),
                });
            }
            let since = since.unwrap_or(0);
            if budget == 0 {
                has_more |= ws.latest_revision > since;
                next.insert(ws.id, since);
                continue;
            }
            let page = self
                .store()
                .get_changes(ws.id, since, budget)
                .await
                .map_err(to_proto)?;
            budget = budget.saturating_sub(page.items.len() as u32);
            has_more |= page.has_more;
            next.insert(ws.id, page.cursor);
            entries.extend(page.items.into_iter().map(|meta| ApiNode::Item {
                workspace: ws.clone(),
                meta,
            }));
        }
        Ok(DeltaPage {
            entries,
            cursor: encode_delta_cursor(&next),
            has_more,
        })
    }
}

/// A deleted version of `meta`, proposed.
fn deleted(meta: ItemMeta) -> ProposedItem {
    ProposedItem {
        id: meta.id,
        parent: meta.parent,
        name: meta.name,
        is_folder: meta.is_folder,
        mimetype: meta.mimetype,
        status: ItemStatus::Deleted,
        version: meta.version + 1,
        content_hash: None,
        size: 0,
        client_modified: meta.client_modified,
        chunks: Vec::new(),
        record: None,
    }
}

/// A listing cursor: the last (name, id) of a page, as hex of the name, a
/// dot and the id (opaque to clients).
fn encode_list_cursor(name: &str, id: ItemId) -> String {
    format!("{}.{id}", hex::encode(name.as_bytes()))
}

fn decode_list_cursor(cursor: &str) -> Result<(String, ItemId)> {
    let bad = || Error::bad_request(format!("{cursor:?} is not a cursor this listing gave"));
    let (name, id) = cursor.split_once('.').ok_or_else(bad)?;
    let name = hex::decode(name).map_err(|_| bad())?;
    let name = String::from_utf8(name).map_err(|_| bad())?;
    let id = id.parse().map_err(|_| bad())?;
    Ok((name, id))
}

/// A change-feed cursor: each workspace's revision, `ws:rev` joined by
/// `~` (opaque to clients).
fn encode_delta_cursor(revisions: &BTreeMap<WorkspaceId, u64>) -> String {
    let parts: Vec<String> = revisions
        .iter()
        .map(|(ws, rev)| format!("{ws}:{rev}"))
        .collect();
    if parts.is_empty() {
        // A user with no workspace cannot exist; keep the cursor non-empty.
        return "~".to_owned();
    }
    parts.join("~")
}

fn decode_delta_cursor(cursor: &str) -> Result<BTreeMap<WorkspaceId, u64>> {
    let bad = || Error::bad_request(format!("{cursor:?} is not a cursor /delta gave"));
    if cursor.len() > 64 * 1024 {
        return Err(bad());
    }
    let mut revisions = BTreeMap::new();
    for part in cursor.split('~').filter(|p| !p.is_empty()) {
        let (ws, rev) = part.split_once(':').ok_or_else(bad)?;
        revisions.insert(
            ws.parse().map_err(|_| bad())?,
            rev.parse().map_err(|_| bad())?,
        );
    }
    Ok(revisions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let id = ItemId::new();
        let c = encode_list_cursor("a.b ~ é", id);
        assert_eq!(decode_list_cursor(&c).unwrap(), ("a.b ~ é".to_owned(), id));
        for bad in [
            "",
            "zz.",
            "61",
            "61.not-an-id",
            "ff.00000000-0000-0000-0000-000000000000",
        ] {
            assert!(decode_list_cursor(bad).is_err(), "{bad}");
        }
        let mut revs = BTreeMap::new();
        revs.insert(WorkspaceId::new(), 7);
        revs.insert(WorkspaceId::new(), 0);
        assert_eq!(
            decode_delta_cursor(&encode_delta_cursor(&revs)).unwrap(),
            revs
        );
        assert!(decode_delta_cursor("x:1").is_err());
        assert!(decode_delta_cursor(&format!("{}:-1", WorkspaceId::new())).is_err());
        assert!(decode_delta_cursor("~").unwrap().is_empty());
    }

    #[test]
    fn api_names_are_composed_then_checked() {
        assert_eq!(api_name("Cafe\u{301}").unwrap().as_str(), "Caf\u{e9}");
        for bad in ["", ".", "..", "a/b", "a\0b", "bell\u{7}"] {
            let e = api_name(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidName, "{bad:?}");
        }
    }
}
