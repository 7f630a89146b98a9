//! Dispatch of RPC requests and the operations on one workspace: the change
//! feed, commits, devices, mounts, members, versions and restore.
//!
//! Authorization happens here, before any effect: a workspace is reached
//! only through `MetaStore::workspace_as` (forbidden to non-members, whether
//! or not it exists), changed only through `Service::writable_member_of`
//! (forbidden to read-only members too), and a device id in a request must
//! belong to the caller. What each encryption setting allows of a
//! proposal, a restore or a share is `encryption_rules.rs`; identities,
//! key chains and making a private workspace end-to-end encrypted are
//! `keys.rs`.

use std::net::IpAddr;
use std::time::Instant;

use stacksync_bus::Topic;
use stacksync_metastore::ShareTerms;
use stacksync_proto::rpc::{Reply, Request, RpcRequest, RpcResponse};
use stacksync_proto::{
    CommitOutcome, CommitRequest, DeviceId, Error, ItemId, ItemMeta, ItemName, ItemStatus,
    Notification, ProposedItem, UserId, Workspace, WorkspaceId, printable, same_chunks,
};
use tracing::Instrument;
use uuid::Uuid;

use crate::Service;
use crate::auth::derived_id;
use crate::encryption_rules::{Screened, check_restore};
use crate::error::ServiceError;

type Result<T, E = ServiceError> = std::result::Result<T, E>;

impl Service {
    /// Serves one request: authenticates its token (except for `Login`),
    /// authorizes, executes, and publishes notifications once the change is
    /// durable. Never panics on input; every failure is an error reply.
    ///
    /// The one place every RPC passes, from the gateway and the bus alike:
    /// it runs in a span carrying the request's id and operation (so every
    /// log line of the request names them) and records the request's
    /// metrics (`metrics.rs`).
    pub async fn handle(&self, req: RpcRequest, peer: Option<IpAddr>) -> RpcResponse {
        let request_id = req.request_id;
        let operation = req.request.operation();
        let span = tracing::info_span!("rpc", %request_id, operation);
        async move {
            let started = Instant::now();
            let result = self.dispatch(req, peer).await.map_err(|e| e.to_proto());
            let took = started.elapsed();
            let error = result.as_ref().err().map(|e| e.kind);
            crate::metrics::rpc_served(operation, took, error);
            tracing::debug!(
                ok = error.is_none(),
                ?error,
                took_us = took.as_micros() as u64,
                "rpc served"
            );
            RpcResponse { request_id, result }
        }
        .instrument(span)
        .await
    }

    /// The account of `user` (`GetAccount`, and the REST API's
    /// `/account`).
    pub async fn account(&self, user: UserId) -> Result<stacksync_proto::Account, Error> {
        Ok(self
            .store()
            .user(user)
            .await
            .map_err(|e| ServiceError::from(e).to_proto())?
            .account)
    }

    async fn dispatch(&self, req: RpcRequest, peer: Option<IpAddr>) -> Result<Reply> {
        if let Request::Login { email, password } = &req.request {
            let s = self.login_from(email, password, peer).await?;
            return Ok(Reply::Session {
                token: s.token,
                user: s.user,
                expires_at: s.expires_at,
            });
        }
        let user = self.authenticate(&req.token).await?;
        let store = self.store();
        let token = req.token;
        Ok(match req.request {
            Request::IssueBrokerCredentials => {
                let c = self.issue_broker_credentials(&token).await?;
                Reply::BrokerCredentials {
                    user: c.user,
                    password: c.password,
                    queue: c.queue,
                }
            }
            Request::BindNotifications => Reply::NotificationsBound {
                queue: self.bind_notifications(user, &token).await?,
            },
            Request::Login { .. } => unreachable!("login is answered before authentication"),
            Request::GetAccount => Reply::Account(self.account(user).await?),
            Request::GetWorkspaces => Reply::Workspaces {
                workspaces: store.workspaces_of(user).await?,
            },
            Request::GetChanges {
                workspace,
                since,
                limit,
            } => {
                self.member_of(user, workspace).await?;
                Reply::Changes(store.get_changes(workspace, since, limit).await?)
            }
            Request::Commit(commit) => Reply::Commit(self.commit(user, commit).await?),
            Request::UpdateDevice {
                id,
                name,
                os,
                app_version,
            } => {
                // A new device's id comes from the request id, so that a
                // retry updates the device the first attempt registered.
                let id =
                    id.unwrap_or_else(|| DeviceId(derived_id("device", user.0, req.request_id)));
                let ip = peer.map(|p| p.to_string());
                let device = store
                    .upsert_device(user, Some(id), &name, &os, &app_version, ip.as_deref())
                    .await?;
                // The devices page signs a device out by ending its sessions.
                store
                    .bind_session_device(&crate::auth::token_hash(&token), device.id)
                    .await?;
                Reply::Device(device)
            }
            Request::UpdateWorkspace {
                workspace,
                name,
                mount_parent,
            } => Reply::Workspace(
                self.update_workspace(user, workspace, &name, mount_parent)
                    .await?,
            ),
            Request::CreateShareProposal {
                workspace,
                folder,
                emails,
                encryption,
                read_only,
            } => {
                let terms = ShareTerms {
                    encryption,
                    read_only,
                };
                self.create_share_proposal(user, req.request_id, workspace, folder, &emails, terms)
                    .await?
            }
            Request::AnswerShareProposal { proposal, accept } => {
                self.answer_share_proposal(user, proposal, accept).await?
            }
            Request::Unshare { workspace, emails } => {
                self.unshare(user, workspace, &emails).await?
            }
            Request::GetMembers { workspace } => {
                self.member_of(user, workspace).await?;
                Reply::Members {
                    members: store.members(workspace).await?,
                }
            }
            Request::GetInvitations => Reply::Invitations {
                invitations: store
                    .pending_invitations(user, Reply::MAX_INVITATIONS)
                    .await?,
            },
            Request::LeaveWorkspace { workspace } => self.leave_workspace(user, workspace).await?,
            Request::GetVersions { workspace, item } => {
                self.member_of(user, workspace).await?;
                Reply::Versions {
                    versions: store.versions(workspace, item).await?,
                }
            }
            Request::Restore {
                workspace,
                item,
                version,
                device,
            } => Reply::Restored {
                meta: self.restore(user, workspace, item, version, device).await?,
            },
            Request::LocateChunks {
                workspace,
                ids,
                bases,
            } => {
                self.member_of(user, workspace).await?;
                if ids.len() > Request::MAX_LOCATE_IDS {
                    return Err(Error::bad_request(format!(
                        "locate at most {} chunks per request, not {}",
                        Request::MAX_LOCATE_IDS,
                        ids.len()
                    ))
                    .into());
                }
                let chunks = if bases {
                    store.locate_bases(workspace, &ids).await?
                } else {
                    store.locate_chunks_for(workspace, user, &ids).await?
                };
                Reply::ChunkLocations { chunks }
            }
            Request::Logout { everywhere } => Reply::LoggedOut {
                sessions: self.logout_request(user, &token, everywhere).await?,
            },
            Request::ChangePassword {
                current_password,
                new_password,
            } => Reply::PasswordChanged {
                other_sessions: self
                    .change_password(user, &token, &current_password, &new_password)
                    .await?,
            },
            Request::PublishIdentity { identity, sealed } => {
                self.publish_identity(user, &identity, sealed.as_deref())
                    .await?
            }
            Request::GetOwnIdentity => self.get_own_identity(user).await?,
            Request::EncryptWorkspace { workspace } => {
                Reply::Workspace(self.encrypt_workspace(user, workspace).await?)
            }
            Request::GetIdentities { users } => self.get_identities(user, &users).await?,
            Request::GetKeyStatements {
                workspace,
                after_epoch,
                limit,
            } => {
                self.get_key_statements(user, workspace, after_epoch, limit)
                    .await?
            }
            Request::PutKeyStatement {
                workspace,
                epoch,
                statement,
            } => {
                self.put_key_statement(user, workspace, epoch, &statement)
                    .await?
            }
        })
    }

    /// The workspace as `user` sees it; forbidden unless a member. Enough
    /// to read it (the feed, versions, members, chunks); changing it needs
    /// [`Service::writable_member_of`].
    pub(crate) async fn member_of(&self, user: UserId, ws: WorkspaceId) -> Result<Workspace> {
        Ok(self.store().workspace_as(user, ws).await?)
    }

    /// The workspace as `user` sees it, if they may change its items or
    /// objects: forbidden unless a member, and forbidden to a read-only
    /// member. The one rule for every write (commits, restores, uploads);
    /// a member's own view of the workspace (its name and mount point) and
    /// leaving it are not writes to it.
    pub(crate) async fn writable_member_of(
        &self,
        user: UserId,
        ws: WorkspaceId,
    ) -> Result<Workspace> {
        let workspace = self.member_of(user, ws).await?;
        if workspace.read_only {
            return Err(Error::forbidden(format!(
                "you are a read-only member of the shared folder '{}' (workspace {ws}): \
                 you can read it but not change it",
                printable(&workspace.name)
            ))
            .into());
        }
        Ok(workspace)
    }

    /// Refuses a device that is not `user`'s.
    async fn own_device(&self, user: UserId, device: DeviceId) -> Result<()> {
        match self.store().device(device).await? {
            Some(d) if d.user == user => Ok(()),
            _ => Err(Error::forbidden(format!("device {device} is not one of yours")).into()),
        }
    }

    /// Checks each proposal against the workspace's encryption setting
    /// (`encryption_rules.rs`: a refused one is refused alone), then
    /// applies the rest under that very setting.
    pub(crate) async fn commit(
        &self,
        user: UserId,
        commit: CommitRequest,
    ) -> Result<stacksync_proto::CommitResult> {
        let workspace = self.writable_member_of(user, commit.workspace).await?;
        self.own_device(user, commit.device).await?;
        let screened = Screened::new(&workspace, commit);
        let commit = &screened.passed;
        self.record_named_objects(user, &workspace, commit).await?;
        let (stored, durable) = self.apply_commit(commit, workspace.encryption).await?;
        let (ws, device) = (commit.workspace, commit.device);
        let result = screened.merge(stored)?;
        let items: Vec<ItemMeta> = result
            .results
            .iter()
            .filter_map(|r| match &r.outcome {
                CommitOutcome::Committed { meta } => Some(meta.clone()),
                _ => None,
            })
            .collect();
        if !items.is_empty() {
            let n = Notification::Commit {
                workspace: ws,
                device,
                revision: result.revision,
                items,
            };
            self.announce_commit(ws, &n, durable).await;
        }
        Ok(result)
    }

    /// Applies a batch in one transaction (the one way commits and
    /// restores reach `commit_in_mode`) and counts the versions it made
    /// durable; returns when they became so.
    async fn apply_commit(
        &self,
        request: &CommitRequest,
        mode: stacksync_proto::EncryptionMode,
    ) -> Result<(stacksync_proto::CommitResult, Instant)> {
        let result = self.store().commit_in_mode(request, mode).await?;
        let durable = Instant::now();
        let committed = result
            .results
            .iter()
            .filter(|r| matches!(r.outcome, CommitOutcome::Committed { .. }))
            .count();
        crate::metrics::versions_committed(committed);
        Ok((result, durable))
    }

    /// Publishes a commit's notification to its workspace, recording the
    /// fan-out latency from `durable` (when the commit became durable).
    async fn announce_commit(&self, ws: WorkspaceId, n: &Notification, durable: Instant) {
        self.notify(Topic::Workspace(ws), n).await;
        crate::metrics::notification_fanout(durable.elapsed());
    }

    pub(crate) async fn update_workspace(
        &self,
        user: UserId,
        ws: WorkspaceId,
        name: &str,
        mount_parent: Option<ItemId>,
    ) -> Result<Workspace> {
        // Authorize first, so that a bad name from a non-member is still
        // reported as forbidden.
        self.member_of(user, ws).await?;
        ItemName::new(name).map_err(|why| Error::invalid_name(name, why))?;
        let updated = self
            .store()
            .update_membership(ws, user, name, mount_parent)
            .await?;
        let n = Notification::WorkspaceUpdated {
            workspace: updated.clone(),
        };
        self.notify(Topic::User(user), &n).await;
        Ok(updated)
    }

    /// Commits a new version whose content is that of `version` (history
    /// is kept). If the item already looks like that version (a retried
    /// restore, or nothing to undo), the current version is the answer.
    /// Refused in an end-to-end encrypted workspace (`check_restore`).
    pub(crate) async fn restore(
        &self,
        user: UserId,
        ws: WorkspaceId,
        item: ItemId,
        version: u64,
        device: DeviceId,
    ) -> Result<ItemMeta> {
        let workspace = self.writable_member_of(user, ws).await?;
        self.own_device(user, device).await?;
        check_restore(&workspace)?;
        let old = self.store().version(ws, item, version).await?;
        let current = self.store().item(ws, item).await?;
        if same_content(&old, &current) {
            return Ok(current);
        }
        let live = old.status.is_live();
        let proposed = ProposedItem {
            id: item,
            parent: old.parent,
            name: old.name.clone(),
            is_folder: old.is_folder,
            mimetype: old.mimetype.clone(),
            // The store normalizes the status (moved, renamed) itself.
            status: if live {
                ItemStatus::Changed
            } else {
                ItemStatus::Deleted
            },
            version: current.version + 1,
            content_hash: if live { old.content_hash } else { None },
            size: if live { old.size } else { 0 },
            client_modified: old.client_modified,
            chunks: if live { old.chunks.clone() } else { Vec::new() },
            record: None,
        };
        let request = CommitRequest {
            workspace: ws,
            device,
            items: vec![proposed],
        };
        let (result, durable) = self.apply_commit(&request, workspace.encryption).await?;
        let outcome = result
            .results
            .into_iter()
            .next()
            .map(|r| r.outcome)
            .ok_or_else(|| Error::internal("a one-item commit returned no result"))?;
        match outcome {
            CommitOutcome::Committed { meta } => {
                let n = Notification::Commit {
                    workspace: ws,
                    device,
                    revision: result.revision,
                    items: vec![meta.clone()],
                };
                self.announce_commit(ws, &n, durable).await;
                Ok(meta)
            }
            CommitOutcome::Conflict { current } => Err(Error::conflict(current).into()),
            CommitOutcome::Refused { error } => Err(error.into()),
        }
    }
}

/// Whether two versions have the same place, kind and content.
fn same_content(a: &ItemMeta, b: &ItemMeta) -> bool {
    a.status.is_live() == b.status.is_live()
        && a.parent == b.parent
        && a.name == b.name
        && a.is_folder == b.is_folder
        && (!a.status.is_live()
            || (a.content_hash == b.content_hash
                && a.size == b.size
                && same_chunks(&a.chunks, &b.chunks)))
}

/// The request id as a scope for derived ids (kept here so that every
/// derived id of the service names its purpose in one place).
pub(crate) fn share_proposal_id(owner: UserId, request: Uuid) -> Uuid {
    derived_id("share proposal", owner.0, request)
}

pub(crate) use stacksync_proto::ids::shared_workspace_id;
