//! Sharing a folder (reference section 6): proposal, answer, unshare.
//!
//! On the first acceptance of a proposal the folder becomes a workspace of
//! its own: a new workspace and container, the folder's chunks copied into
//! the container, its items moved (the folder gets a DELETED version in the
//! owner's private workspace, and the owner mounts the shared workspace in
//! its place), then members are added and granted the container through the
//! storage ACLs. Every step is idempotent, so a retried or redelivered
//! answer (or a crash half-way) is finished by the next attempt.
//!
//! A proposal may make those who accept it read-only members
//! (`ShareTerms::read_only`): the role is recorded on their membership,
//! their storage user only ever reads the container, and every write they
//! send is refused by `Service::writable_member_of`.

use futures::{StreamExt, TryStreamExt};
use stacksync_blobstore::{Access, StorageUser};
use stacksync_bus::Topic;
use stacksync_metastore::{Charge, FolderBack, InviteeState, ShareProposal, ShareTerms};
use stacksync_proto::rpc::Reply;
use stacksync_proto::{
    ChunkId, ChunkRef, DeviceId, EncryptionMode, Error, ErrorKind, ItemId, ItemName, Notification,
    UserId, Workspace, WorkspaceId,
};
use uuid::Uuid;

use crate::api::plain_chunk;
use crate::chunks::read_stored;
use crate::encryption_rules::may_move_back;
use crate::error::{BlobContext, ServiceError};
use crate::ops::{share_proposal_id, shared_workspace_id};
use crate::{Service, container_name};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Chunks copied at once into a new shared container.
const COPY_CONCURRENCY: usize = 8;

/// Copies and moves tried while the owner keeps changing the folder being
/// shared, before the answer is left for the client to retry.
const MOVE_ATTEMPTS: u32 = 20;

impl Service {
    pub(crate) async fn create_share_proposal(
        &self,
        user: UserId,
        request_id: Uuid,
        ws: WorkspaceId,
        folder: ItemId,
        emails: &[String],
        terms: ShareTerms,
    ) -> Result<Reply> {
        let workspace = self.member_of(user, ws).await?;
        if workspace.owner != user {
            return Err(
                Error::forbidden("only the workspace's owner can share its folders").into(),
            );
        }
        let id = share_proposal_id(user, request_id);
        // A retry finishes what the first attempt began (an end-to-end
        // encrypted share has moved its folder away already).
        if let Ok(p) = self.store().share_proposal(id).await
            && p.owner == user
        {
            return self.proposed(p).await;
        }
        if workspace.is_shared {
            return Err(Error::bad_request(
                "a folder of a shared workspace cannot be shared again",
            )
            .into());
        }
        let item = self.store().item(ws, folder).await?;
        if !item.is_folder || !item.status.is_live() {
            return Err(Error::bad_request(format!("{folder} is not a live folder")).into());
        }
        let terms = ShareTerms {
            encryption: shared_encryption(workspace.encryption, terms.encryption),
            ..terms
        };
        if terms.encryption == EncryptionMode::ServerSide {
            self.require_at_rest()?;
        }
        self.check_share_encryption(&workspace, folder, terms.encryption)
            .await?;
        let me = self.store().user(user).await?.account;
        if emails
            .iter()
            .any(|e| e.trim().eq_ignore_ascii_case(&me.email))
        {
            return Err(Error::bad_request("you cannot invite yourself").into());
        }
        let proposal = self
            .store()
            .create_share_proposal_with_id(id, user, ws, folder, emails, terms)
            .await?;
        self.proposed(proposal).await
    }

    /// The rest of making proposal `p`: an end-to-end encrypted share
    /// becomes its own workspace at once, its owner's alone until someone
    /// accepts, so that the owner's devices write its keys and can move
    /// files into it encrypted right away (nothing plain ever enters it);
    /// then the invitees hear of it.
    async fn proposed(&self, p: ShareProposal) -> Result<Reply> {
        if p.encryption == EncryptionMode::ClientSide {
            self.ensure_shared_workspace(&p).await?;
        }
        let folder = self.store().item(p.workspace, p.folder).await?;
        let n = Notification::ShareProposal {
            proposal: p.id,
            from: p.owner,
            folder_name: folder.name.to_string(),
        };
        for (email, _) in &p.invitees {
            if let Some(invitee) = self.store().user_by_email(email).await? {
                self.notify(Topic::User(invitee.account.id), &n).await;
            }
        }
        Ok(Reply::ShareProposal {
            proposal: p.id,
            shared_to: p.invitees.into_iter().map(|(e, _)| e).collect(),
        })
    }

    pub(crate) async fn answer_share_proposal(
        &self,
        user: UserId,
        id: Uuid,
        accept: bool,
    ) -> Result<Reply> {
        // Not being invited and the proposal not existing look the same, so
        // that proposal ids cannot be probed.
        let not_invited = || Error::forbidden(format!("no invitation for you in proposal {id}"));
        let proposal = match self.store().share_proposal(id).await {
            Ok(p) => p,
            Err(e) if e.to_proto().kind == ErrorKind::NotFound => {
                return Err(not_invited().into());
            }
            Err(e) => return Err(e.into()),
        };
        let me = self.store().user(user).await?.account;
        let state = proposal
            .invitees
            .iter()
            .find(|(e, _)| e.eq_ignore_ascii_case(&me.email))
            .map(|(_, s)| *s)
            .ok_or_else(not_invited)?;
        match (state, accept) {
            (InviteeState::Pending, _) => {
                self.store()
                    .answer_share_proposal(id, &me.email, accept)
                    .await?;
            }
            // A retry of the same answer finishes what the first began.
            (InviteeState::Accepted, true) | (InviteeState::Declined, false) => {}
            _ => {
                return Err(Error::forbidden(format!("proposal {id} was answered already")).into());
            }
        }
        if !accept {
            return Ok(Reply::ShareAnswered { workspace: None });
        }
        let shared = self.ensure_shared_workspace(&proposal).await?;
        let folder_name = self
            .store()
            .workspace_as(proposal.owner, shared)
            .await?
            .name;
        // The role is the proposal's; a retried answer keeps the one the
        // first recorded.
        self.store()
            .add_member(shared, user, &folder_name, None, None, proposal.read_only)
            .await?;
        let workspace = self.store().workspace_as(user, shared).await?;
        self.grant(&workspace, me.storage_user.as_deref()).await?;
        let n = Notification::WorkspaceJoined {
            workspace: workspace.clone(),
        };
        self.notify(Topic::User(user), &n).await;
        // The other members' devices show who is in it: each hears of the
        // change on their own topic, with their own view of the workspace.
        for member in self.store().members(shared).await? {
            if member.user == user {
                continue;
            }
            let view = self.store().workspace_as(member.user, shared).await?;
            let n = Notification::WorkspaceUpdated { workspace: view };
            self.notify(Topic::User(member.user), &n).await;
        }
        Ok(Reply::ShareAnswered {
            workspace: Some(workspace),
        })
    }

    /// Creates (or finds) the proposal's shared workspace, with the folder
    /// moved into it and its container filled and granted to the owner.
    async fn ensure_shared_workspace(&self, p: &ShareProposal) -> Result<WorkspaceId> {
        let id = p
            .shared_workspace
            .unwrap_or_else(|| shared_workspace_id(p.id));
        let folder = self.store().item(p.workspace, p.folder).await?;
        // The owner may have put files into the folder since proposing,
        // or the proposal is older than the rule: checked before anything
        // is made, and again below for each attempt of the move.
        let source = self.store().workspace_as(p.owner, p.workspace).await?;
        self.check_share_encryption(&source, p.folder, p.encryption)
            .await?;
        let ws = self
            .store()
            .create_workspace_with_id(id, p.owner, folder.name.as_str(), true, p.encryption)
            .await?;
        self.ensure_container(&ws.container).await?;
        // Chunks first, items second: when clients learn of the moved items
        // their chunks are already in the new container. The owner may be
        // committing into the folder meanwhile: the move happens only if
        // nothing in it changed since the revision the copy started from,
        // else what changed is copied too and the move tried again.
        let mut attempts = 0;
        let moved = loop {
            let source = self.store().workspace_as(p.owner, p.workspace).await?;
            // What is under the folder as of `source.latest_revision`: the
            // move below happens only if nothing there changed after it.
            self.check_share_encryption(&source, p.folder, p.encryption)
                .await?;
            self.copy_chunks(&source, &ws, Some(p.folder)).await?;
            let unchanged = self
                .store()
                .move_folder_to_workspace_if_unchanged(
                    p.workspace,
                    p.folder,
                    id,
                    DeviceId::NIL,
                    source.latest_revision,
                )
                .await?;
            match unchanged {
                Some(moved) => break moved,
                None => another_attempt(&mut attempts, "it was being shared")?,
            }
        };
        let owner_view = self
            .store()
            .update_membership(id, p.owner, folder.name.as_str(), folder.parent)
            .await?;
        self.store().set_proposal_workspace(p.id, id).await?;
        let owner = self.store().user(p.owner).await?.account;
        self.grant(&owner_view, owner.storage_user.as_deref())
            .await?;
        if let Some(deleted) = moved.folder {
            let gone = Notification::Commit {
                workspace: p.workspace,
                device: DeviceId::NIL,
                revision: moved.source_revision,
                items: vec![deleted],
            };
            self.notify(Topic::Workspace(p.workspace), &gone).await;
            let joined = Notification::WorkspaceJoined {
                workspace: owner_view,
            };
            self.notify(Topic::User(p.owner), &joined).await;
        }
        Ok(id)
    }

    /// Copies every chunk the folder's versions reference from the source
    /// container into the shared one, each as an object of its own named
    /// by its id (as the shared workspace indexes them), skipping those
    /// already there. A chunk stored in a pack is copied as its range of
    /// the pack: the rest of the pack may be other, private files' chunks,
    /// which must never reach a container other people read. A chunk
    /// stored as a delta (`PackSpan::base`) is copied whole: it is applied
    /// to its base here and encoded again (`materialize`), since the shared
    /// workspace indexes every copied chunk as an object of its own.
    async fn copy_chunks(
        &self,
        from: &Workspace,
        to: &Workspace,
        folder: Option<ItemId>,
    ) -> Result<()> {
        let chunks = self.store().subtree_chunks(from.id, folder).await?;
        if chunks.is_empty() {
            return Ok(());
        }
        let (src, dst) = (
            container_name(&from.container)?,
            container_name(&to.container)?,
        );
        let blobs = self.blobs().clone();
        let ids: Vec<ChunkId> = chunks.iter().map(|c| c.id).collect();
        let present = blobs
            .existing(&dst, &ids)
            .await
            .blob(|| format!("listing chunks of {dst}"))?;
        let missing: Vec<ChunkRef> = chunks
            .into_iter()
            .filter(|c| !present.contains(&c.id))
            .collect();
        futures::stream::iter(missing)
            .map(|chunk| {
                // Owned handles: a future borrowing from this function trips
                // the compiler's Send check of the whole request future.
                let (blobs, src, dst) = (blobs.clone(), src.clone(), dst.clone());
                let (store, target) = (self.store().clone(), to.id);
                let source = from.clone();
                async move {
                    let data = if chunk.span.and_then(|s| s.base).is_some() {
                        materialize(blobs.as_ref(), &store, &source, &src, &chunk).await?
                    } else {
                        read_stored(blobs.as_ref(), &src, &chunk).await?
                    };
                    // The copy occupies the target's storage: its owner
                    // pays for it, whatever the quota (the share is made).
                    store
                        .record_object(target, chunk.id, data.len() as u64, None, Charge::Always)
                        .await?;
                    blobs
                        .put_bytes(&dst, &chunk.id, data)
                        .await
                        .blob(|| format!("copying chunk {} into {dst}", chunk.id))?;
                    Ok::<_, ServiceError>(())
                }
            })
            .buffer_unordered(COPY_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Gives a member's storage user the ACL its place in the workspace
    /// allows (members without a storage user go through the service):
    ///
    /// * its own private workspace: read and write, since nobody else's
    ///   data is in that container;
    /// * a shared workspace, owner included: read only. Swift's write ACL
    ///   also allows replacing and deleting any object, which would let one
    ///   member destroy what the others stored; writes to shared
    ///   workspaces go through the service instead, which stores objects
    ///   write-once and checks chunk ids where it can.
    ///
    /// A read-only member never gets more than read, wherever they are.
    /// A write grant left on a shared container by an older server is
    /// taken back here, so re-granting (every answer to a proposal does)
    /// repairs it.
    pub(crate) async fn grant(&self, ws: &Workspace, storage_user: Option<&str>) -> Result<()> {
        let Some(name) = storage_user else {
            return Ok(());
        };
        let user = StorageUser::new(name).blob(|| format!("naming storage user {name:?}"))?;
        let container = container_name(&ws.container)?;
        let access = member_access(ws);
        self.blobs()
            .grant(&container, &user, access)
            .await
            .blob(|| format!("granting {name} on {container}"))?;
        if !access.writes() {
            self.blobs()
                .revoke(&container, &user, Access::Write)
                .await
                .blob(|| format!("taking write access of {name} on {container} back"))?;
        }
        Ok(())
    }

    pub(crate) async fn unshare(
        &self,
        user: UserId,
        ws: WorkspaceId,
        emails: &[String],
    ) -> Result<Reply> {
        let workspace = match self.member_of(user, ws).await {
            Ok(w) => w,
            // A retried unshare whose first attempt took the last member
            // out: the folder is the owner's own again.
            Err(e)
                if e.to_proto().kind == ErrorKind::Forbidden
                    && self
                        .store()
                        .proposal_of_workspace(ws)
                        .await?
                        .is_some_and(|p| p.owner == user) =>
            {
                let removed = emails.iter().map(|e| e.trim().to_lowercase()).collect();
                return Ok(Reply::Unshared { removed });
            }
            Err(e) => return Err(e),
        };
        if workspace.owner != user {
            return Err(Error::forbidden("only the workspace's owner can unshare it").into());
        }
        if !workspace.is_shared {
            return Err(Error::bad_request(format!("workspace {ws} is not shared")).into());
        }
        let mut removed = Vec::with_capacity(emails.len());
        for email in emails {
            let Some(member) = self.store().user_by_email(email).await? else {
                removed.push(email.trim().to_lowercase());
                continue;
            };
            let account = member.account;
            if account.id == workspace.owner {
                return Err(
                    Error::bad_request("the owner cannot be removed from a workspace").into(),
                );
            }
            self.remove_member(&workspace, account.id, account.storage_user.as_deref())
                .await?;
            removed.push(account.email);
        }
        self.dissolve_if_alone(&workspace).await?;
        Ok(Reply::Unshared { removed })
    }

    /// A shared folder whose last member left becomes a plain folder of its
    /// owner again: its chunks are copied back into the owner's container,
    /// the folder lives again where the owner had it mounted, with
    /// everything in it (ids and history kept), and the shared workspace
    /// is dissolved (no members; invitations to it used up). The owner's
    /// devices hear it as a commit in their private workspace and the
    /// shared one leaving. Idempotent: a shared workspace with other
    /// members, or already dissolved, is left alone; so is one whose items
    /// the server cannot move back (`encryption_rules::may_move_back`),
    /// which stays its owner's alone.
    async fn dissolve_if_alone(&self, workspace: &Workspace) -> Result<()> {
        let ws = workspace.id;
        let members = self.store().members(ws).await?;
        if !matches!(members.as_slice(), [only] if only.is_owner) {
            return Ok(());
        }
        let Some(p) = self.store().proposal_of_workspace(ws).await? else {
            return Ok(());
        };
        let owner = p.owner;
        let private = self.store().workspace_as(owner, p.workspace).await?;
        if !may_move_back(workspace, &private) {
            return Ok(());
        }
        // Chunks first, items second, as when it was shared; and, as then,
        // again if the owner committed into it between the two.
        let mut attempts = 0;
        let moved = loop {
            let view = self.store().workspace_as(owner, ws).await?;
            self.copy_chunks(&view, &private, None).await?;
            let name =
                ItemName::new(&view.name).map_err(|why| Error::invalid_name(&view.name, why))?;
            let back = FolderBack {
                folder: p.folder,
                parent: view.mount_parent,
                name: &name,
            };
            let unchanged = self
                .store()
                .move_workspace_into_folder_if_unchanged(
                    ws,
                    p.workspace,
                    back,
                    DeviceId::NIL,
                    view.latest_revision,
                )
                .await?;
            match unchanged {
                Some(moved) => break moved,
                None => another_attempt(&mut attempts, "it went back to its owner")?,
            }
        };
        if let Some(folder) = moved.folder {
            let back = Notification::Commit {
                workspace: p.workspace,
                device: DeviceId::NIL,
                revision: moved.target_revision,
                items: vec![folder],
            };
            self.notify(Topic::Workspace(p.workspace), &back).await;
        }
        let gone = Notification::Unshared {
            workspace: ws,
            user: owner,
        };
        self.notify(Topic::User(owner), &gone).await;
        self.rebind_sessions_of(owner).await;
        Ok(())
    }

    /// Takes `user` out of a shared workspace they are a member of but do
    /// not own (the owner unshares instead). Leaving twice is answered as
    /// leaving once.
    pub(crate) async fn leave_workspace(&self, user: UserId, ws: WorkspaceId) -> Result<Reply> {
        let workspace = match self.member_of(user, ws).await {
            Ok(w) => w,
            // A retried leave whose first attempt went through.
            Err(e)
                if e.to_proto().kind == ErrorKind::Forbidden
                    && self.store().accepted_share_of(user, ws).await? =>
            {
                return Ok(Reply::Left { workspace: ws });
            }
            Err(e) => return Err(e),
        };
        if workspace.owner == user {
            return Err(Error::bad_request(
                "the owner cannot leave a workspace: unshare it from its members instead",
            )
            .into());
        }
        if !workspace.is_shared {
            return Err(Error::bad_request(format!("workspace {ws} is not shared")).into());
        }
        let account = self.store().user(user).await?.account;
        self.remove_member(&workspace, user, account.storage_user.as_deref())
            .await?;
        self.dissolve_if_alone(&workspace).await?;
        Ok(Reply::Left { workspace: ws })
    }

    /// Removes a member who is not the owner, from the storage ACLs and then
    /// from the database, and tells them and the other members. Removing
    /// someone who is no longer a member does nothing.
    ///
    /// The ACL goes first: while the membership row stays, a failed revoke
    /// is retried by the next attempt (the other way round, that attempt
    /// would find no member and leave the grant in place). Nobody else's
    /// grant is revoked: several accounts may map to one storage user, so
    /// only a membership says that this one was granted here.
    async fn remove_member(
        &self,
        workspace: &Workspace,
        user: UserId,
        storage_user: Option<&str>,
    ) -> Result<()> {
        let ws = workspace.id;
        if !self.store().is_non_owner_member(ws, user).await? {
            return Ok(());
        }
        if let Some(name) = storage_user {
            let container = container_name(&workspace.container)?;
            let su = StorageUser::new(name).blob(|| format!("naming storage user {name:?}"))?;
            self.blobs()
                .revoke(&container, &su, Access::ReadWrite)
                .await
                .blob(|| format!("revoking {name} on {container}"))?;
        }
        if !self.store().remove_member(ws, user).await? {
            // A concurrent removal got there first and tells everyone.
            return Ok(());
        }
        let n = Notification::Unshared {
            workspace: ws,
            user,
        };
        self.notify(Topic::User(user), &n).await;
        self.notify(Topic::Workspace(ws), &n).await;
        // Their direct clients stop hearing the workspace now, not when (or
        // if) they ask to be re-bound.
        self.rebind_sessions_of(user).await;
        Ok(())
    }
}

/// What a member's own storage credentials may do in a workspace's
/// container (see [`Service::grant`]); `ws` as that member sees it.
pub(crate) fn member_access(ws: &Workspace) -> Access {
    if ws.is_shared || ws.read_only {
        Access::Read
    } else {
        Access::ReadWrite
    }
}

/// Counts one more copy-and-move attempt of a folder that changed meanwhile
/// (`while_` says during what), or gives up with a retryable error after
/// [`MOVE_ATTEMPTS`].
fn another_attempt(attempts: &mut u32, while_: &str) -> Result<()> {
    if *attempts < MOVE_ATTEMPTS {
        *attempts += 1;
        Ok(())
    } else {
        Err(Error::unavailable(format!(
            "the folder kept changing while {while_}; try again"
        ))
        .into())
    }
}

/// The setting of a folder shared out of a workspace with setting `source`
/// when the owner asked for `asked`: never weaker than where the files come
/// from (a folder of a workspace with server-side encryption stays
/// encrypted at rest when shared; a plain request from it is raised).
fn shared_encryption(source: EncryptionMode, asked: EncryptionMode) -> EncryptionMode {
    match (source, asked) {
        (EncryptionMode::ServerSide, EncryptionMode::Plain) => EncryptionMode::ServerSide,
        _ => asked,
    }
}

/// A chunk stored as a delta, encoded whole as a plain workspace's client
/// encodes a chunk: its plaintext (`api::plain_chunk`: the delta applied to
/// its base, both checked against their ids) encoded again. Chunks of a
/// workspace encrypted on the client cannot be read here: such a delta
/// stays with the workspace's members, and the share is refused.
async fn materialize(
    blobs: &dyn stacksync_blobstore::BlobStore,
    store: &stacksync_metastore::MetaStore,
    ws: &Workspace,
    container: &stacksync_blobstore::ContainerName,
    chunk: &ChunkRef,
) -> Result<bytes::Bytes> {
    let plain = plain_chunk(blobs, store, ws, container, chunk).await?;
    let id = chunk.id;
    let encoded = tokio::task::spawn_blocking(move || {
        stacksync_content::ChunkCodec::compressed().encode(&plain)
    })
    .await
    .map_err(|e| Error::internal(format!("encoding chunk {id}: {e}")))?
    .map_err(|e| Error::internal(format!("encoding chunk {id}: {e}")))?;
    Ok(bytes::Bytes::from(encoded.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace(is_shared: bool, read_only: bool) -> Workspace {
        Workspace {
            id: WorkspaceId::new(),
            owner: UserId::new(),
            name: "w".into(),
            is_shared,
            encryption: EncryptionMode::Plain,
            container: "ws-w".into(),
            latest_revision: 0,
            mount_parent: None,
            read_only,
        }
    }

    #[test]
    fn only_a_private_workspace_is_written_directly() {
        assert_eq!(member_access(&workspace(false, false)), Access::ReadWrite);
        assert_eq!(member_access(&workspace(true, false)), Access::Read);
        assert_eq!(member_access(&workspace(true, true)), Access::Read);
        // A read-only member never gets write, even where members would.
        assert_eq!(member_access(&workspace(false, true)), Access::Read);
    }
}
