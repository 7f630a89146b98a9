//! Account control: logout, logout everywhere, password changes and resets,
//! signing a device out, disabling and removing users, and the storage user
//! an account reaches Swift as (its container grants, and an audit of every
//! container's ACL against them).
//!
//! Every way a session ends goes through [`Service::sessions_ended`], so
//! that anything issued per session (e.g. broker credentials of the direct
//! transport) is revoked in one place. Sessions are checked against the
//! database on every request and never cached, so an ended session is
//! refused by the very next request.

use std::collections::BTreeMap;

use stacksync_blobstore::{Access, BlobErrorKind, StorageUser};
use stacksync_bus::Topic;
use stacksync_metastore::{DissolvedWorkspace, RemovedUser, Revocation, SharedWorkspaces};
use stacksync_proto::{DeviceId, Error, Notification, UserId, WorkspaceId};

use crate::auth::{hash_password, token_hash, verify_password};
use crate::error::{BlobContext, ServiceError};
use crate::{Service, container_name};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Longest password accepted (login refuses longer ones unverified, so a
/// longer one could never be used).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Refuses a password that could not be used to log in.
pub fn check_new_password(password: &str) -> Result<(), Error> {
    if password.is_empty() {
        return Err(Error::bad_request("the password is empty"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::bad_request(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// What removing a user did: the database part always completes first;
/// storage clean-up that failed is listed, not hidden.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserRemoval {
    /// What the metadata store removed.
    pub removed: RemovedUser,
    /// Storage clean-up steps that failed (the objects left are garbage:
    /// nothing refers to them any more).
    pub storage_errors: Vec<String>,
}

/// A container whose ACL is not what its members' places call for (see
/// [`Service::audit_storage_acls`]). Storage users are named as in the ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclMismatch {
    /// The workspace.
    pub workspace: WorkspaceId,
    /// Its container.
    pub container: String,
    /// Members' storage users who should read and may not.
    pub missing_read: Vec<String>,
    /// Storage users who should write and may not.
    pub missing_write: Vec<String>,
    /// Storage users who may read though no member's place allows it.
    pub unexpected_read: Vec<String>,
    /// Storage users who may write though no member's place allows it.
    pub unexpected_write: Vec<String>,
}

impl AclMismatch {
    /// Whether someone may do more than their place allows (a leak), not
    /// only less (a member falling back to the server).
    pub fn grants_too_much(&self) -> bool {
        !self.unexpected_read.is_empty() || !self.unexpected_write.is_empty()
    }
}

/// What changing a user's storage user did: the database part always
/// completes; grants that failed are listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageUserChange {
    /// The storage user before.
    pub previous: Option<String>,
    /// Containers whose grants were moved.
    pub containers: usize,
    /// Grant or revocation steps that failed (run the command again).
    pub storage_errors: Vec<String>,
}

impl Service {
    /// Ends every session of `user`'s desktop device `device` (the website's
    /// "sign this device out" and `stacksync admin device revoke`). Returns
    /// how many ended; `NotFound` if the device is not theirs.
    pub async fn sign_out_device(&self, user: UserId, device: DeviceId) -> Result<u64, Error> {
        match self.store().device(device).await {
            Ok(Some(d)) if d.user == user => {}
            Ok(_) => return Err(Error::not_found("no such device")),
            Err(e) => return Err(ServiceError::from(e).to_proto()),
        }
        let sessions = self
            .store()
            .live_sessions(user)
            .await
            .map_err(|e| ServiceError::from(e).to_proto())?;
        let mut ended = 0;
        // A desktop device may have logged in more than once: all go.
        for s in sessions.iter().filter(|s| s.device == Some(device)) {
            ended += self
                .revoke_sessions(user, Revocation::Only(&s.token_hash))
                .await?;
        }
        Ok(ended)
    }

    /// Sets (or with `None` clears) the Swift user `user`'s clients reach
    /// storage as, and moves the grants of every workspace they are a
    /// member of from the old storage user to the new one (as each place
    /// allows, see `Service::grant`).
    pub async fn set_storage_user(
        &self,
        user: UserId,
        storage_user: Option<&str>,
    ) -> Result<StorageUserChange, Error> {
        Ok(self.set_storage_user_inner(user, storage_user).await?)
    }

    async fn set_storage_user_inner(
        &self,
        user: UserId,
        storage_user: Option<&str>,
    ) -> Result<StorageUserChange> {
        if let Some(name) = storage_user {
            StorageUser::new(name).blob(|| format!("naming storage user {name:?}"))?;
        }
        let previous = self.store().set_storage_user(user, storage_user).await?;
        let workspaces = self.store().workspaces_of(user).await?;
        let mut storage_errors = Vec::new();
        for ws in &workspaces {
            if let Some(old) = previous.as_deref().filter(|old| Some(*old) != storage_user)
                && let Err(e) = self.revoke_grant(&ws.container, old).await
            {
                storage_errors.push(e.to_string());
            }
            if let Err(e) = self.grant(ws, storage_user).await {
                storage_errors.push(e.to_string());
            }
        }
        Ok(StorageUserChange {
            previous,
            containers: workspaces.len(),
            storage_errors,
        })
    }

    /// Compares every workspace container's ACL with what its members'
    /// storage users should have (`Service::grant`'s rule): the containers
    /// whose ACL differs.
    pub async fn audit_storage_acls(&self) -> Result<Vec<AclMismatch>, Error> {
        Ok(self.audit_storage_acls_inner().await?)
    }

    async fn audit_storage_acls_inner(&self) -> Result<Vec<AclMismatch>> {
        // container -> (read, write) expected.
        let mut expected: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
        for g in self.store().storage_grants().await? {
            let access = crate::sharing::member_access(&g.workspace);
            let entry = expected.entry(g.workspace.container.clone()).or_default();
            let user = StorageUser::new(&g.storage_user)
                .blob(|| format!("naming storage user {:?}", g.storage_user))?
                .to_string();
            if access.reads() {
                entry.0.push(user.clone());
            }
            if access.writes() {
                entry.1.push(user);
            }
        }
        let mut found = Vec::new();
        for (workspace, container) in self.store().containers().await? {
            let name = container_name(&container)?;
            let acl = self
                .blobs()
                .acl(&name)
                .await
                .blob(|| format!("reading the ACL of {container}"))?;
            let (read, write) = expected.remove(&container).unwrap_or_default();
            let names = |l: &[StorageUser]| l.iter().map(|u| u.to_string()).collect::<Vec<_>>();
            let (has_read, has_write) = (names(&acl.read), names(&acl.write));
            let missing = |want: &[String], has: &[String]| {
                want.iter()
                    .filter(|u| !has.contains(u))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            let m = AclMismatch {
                workspace,
                missing_read: missing(&read, &has_read),
                missing_write: missing(&write, &has_write),
                unexpected_read: missing(&has_read, &read),
                unexpected_write: missing(&has_write, &write),
                container,
            };
            let clean =
                m.missing_read.is_empty() && m.missing_write.is_empty() && !m.grants_too_much();
            if !clean {
                found.push(m);
            }
        }
        Ok(found)
    }
}

impl Service {
    /// Ends `which` of `user`'s sessions; returns how many ended. The one
    /// entry point for revoking sessions (see [`Service::sessions_ended`]).
    pub async fn revoke_sessions(&self, user: UserId, which: Revocation<'_>) -> Result<u64, Error> {
        let ended = self
            .store()
            .revoke_sessions(user, which)
            .await
            .map_err(ServiceError::from)?;
        self.sessions_ended(user, &ended).await;
        Ok(ended.len() as u64)
    }

    /// Called after sessions of `user` ended (by logout, password change or
    /// reset, disabling or removal) with their token hashes: the hook for
    /// revoking whatever was issued per session.
    pub(crate) async fn sessions_ended(&self, user: UserId, token_hashes: &[String]) {
        if !token_hashes.is_empty() {
            tracing::info!(%user, sessions = token_hashes.len(), "sessions ended");
        }
        // Each session's broker user goes with it; if the broker cannot be
        // reached now, the periodic sweep withdraws it later.
        for hash in token_hashes {
            if let Err(e) = self.revoke_broker_session(hash).await {
                tracing::warn!(%user, error = %e, "broker user of an ended session not withdrawn yet");
            }
        }
    }

    /// `Logout`: ends the caller's session, or every session of the account.
    pub(crate) async fn logout_request(
        &self,
        user: UserId,
        token: &str,
        everywhere: bool,
    ) -> Result<u64> {
        let hash = token_hash(token);
        let which = if everywhere {
            Revocation::All
        } else {
            Revocation::Only(&hash)
        };
        Ok(self.revoke_sessions(user, which).await?)
    }

    /// `ChangePassword`: checks the current password, stores the new one and
    /// ends every other session of the account. Returns how many ended.
    pub(crate) async fn change_password(
        &self,
        user: UserId,
        token: &str,
        current: &str,
        new: &str,
    ) -> Result<u64> {
        check_new_password(new)?;
        let record = self.store().user(user).await?;
        let wrong = || Error::forbidden("the current password is wrong");
        if current.len() > MAX_PASSWORD_BYTES {
            return Err(wrong().into());
        }
        let (current, stored) = (current.to_owned(), record.password_hash);
        if !tokio::task::spawn_blocking(move || verify_password(&current, &stored)).await?? {
            return Err(wrong().into());
        }
        self.store_password(user, new).await?;
        let hash = token_hash(token);
        Ok(self
            .revoke_sessions(user, Revocation::AllExcept(&hash))
            .await?)
    }

    /// Sets a user's password without knowing the old one (administration)
    /// and ends every session of theirs. Returns how many ended.
    pub async fn reset_password(&self, user: UserId, new: &str) -> Result<u64, Error> {
        check_new_password(new)?;
        self.store_password(user, new).await?;
        self.revoke_sessions(user, Revocation::All).await
    }

    async fn store_password(&self, user: UserId, new: &str) -> Result<()> {
        let new = new.to_owned();
        let hash = tokio::task::spawn_blocking(move || hash_password(&new)).await??;
        Ok(self.store().set_password_hash(user, &hash).await?)
    }

    /// Disables a user (refused at login; every session ends at once) or
    /// enables them again. Returns how many sessions ended.
    pub async fn set_user_disabled(&self, user: UserId, disabled: bool) -> Result<u64, Error> {
        let ended = self
            .store()
            .set_disabled(user, disabled)
            .await
            .map_err(ServiceError::from)?;
        self.sessions_ended(user, &ended).await;
        Ok(ended.len() as u64)
    }

    /// The id of the user with this email; `NotFound` if none.
    pub async fn user_id(&self, email: &str) -> Result<UserId, Error> {
        match self.store().user_by_email(email).await {
            Ok(Some(u)) => Ok(u.account.id),
            Ok(None) => Err(Error::not_found(format!("no user with email {email:?}"))),
            Err(e) => Err(ServiceError::from(e).to_proto()),
        }
    }

    /// Removes a user: their account, devices and sessions, every workspace
    /// they own with its items and its container's objects, and their
    /// memberships of other owners' workspaces (which survive; their
    /// storage grants are revoked). A workspace they own that is shared
    /// with others is deleted too with [`SharedWorkspaces::Delete`]: each
    /// other member hears it as being unshared from it (their devices stop
    /// syncing it and keep their copy) and loses their storage grant.
    /// With [`SharedWorkspaces::Refuse`] the removal is refused while
    /// there is one (see `MetaStore::remove_user`).
    pub async fn remove_user(
        &self,
        user: UserId,
        shared: SharedWorkspaces,
    ) -> Result<UserRemoval, Error> {
        Ok(self.remove_user_inner(user, shared).await?)
    }

    async fn remove_user_inner(
        &self,
        user: UserId,
        shared: SharedWorkspaces,
    ) -> Result<UserRemoval> {
        let account = self.store().user(user).await?.account;
        let removed = self.store().remove_user(user, shared).await?;
        self.sessions_ended(user, &removed.ended_sessions).await;
        // Their upload sessions ended with them: the staged pieces go now.
        if let Err(e) = self.prune_upload_sessions().await {
            tracing::warn!(%user, error = %e, "a removed user's upload pieces were not pruned");
        }
        let mut storage_errors = Vec::new();
        for (ws, container) in &removed.left_workspaces {
            let n = Notification::Unshared {
                workspace: *ws,
                user,
            };
            self.notify(Topic::Workspace(*ws), &n).await;
            if let Some(name) = &account.storage_user
                && let Err(e) = self.revoke_grant(container, name).await
            {
                storage_errors.push(e.to_string());
            }
        }
        for dissolved in &removed.dissolved_shared {
            self.dissolved_with_owner(dissolved, &mut storage_errors)
                .await;
        }
        let containers = removed
            .deleted_containers
            .iter()
            .chain(removed.dissolved_shared.iter().map(|d| &d.container));
        for container in containers {
            if let Err(e) = self.delete_container_and_objects(container).await {
                storage_errors.push(e.to_string());
            }
        }
        for e in &storage_errors {
            tracing::warn!(%user, error = %e, "storage left behind by a removed user");
        }
        Ok(UserRemoval {
            removed,
            storage_errors,
        })
    }

    /// Tells each other member of a shared workspace deleted with its owner
    /// that they were taken out of it, as unsharing does (their devices
    /// stop syncing it and keep their copy), and revokes their storage
    /// grant on its container. Failed revocations go to `storage_errors`.
    async fn dissolved_with_owner(
        &self,
        dissolved: &DissolvedWorkspace,
        storage_errors: &mut Vec<String>,
    ) {
        let ws = dissolved.workspace;
        for member in &dissolved.members {
            let storage_user = match self.store().user(member.user).await {
                Ok(record) => record.account.storage_user,
                Err(e) => {
                    storage_errors.push(format!(
                        "reading the storage user of {} (member of {ws}): {e}",
                        member.email
                    ));
                    None
                }
            };
            if let Some(name) = &storage_user
                && let Err(e) = self.revoke_grant(&dissolved.container, name).await
            {
                storage_errors.push(e.to_string());
            }
            let n = Notification::Unshared {
                workspace: ws,
                user: member.user,
            };
            self.notify(Topic::User(member.user), &n).await;
            self.notify(Topic::Workspace(ws), &n).await;
            self.rebind_sessions_of(member.user).await;
        }
    }

    async fn revoke_grant(&self, container: &str, storage_user: &str) -> Result<()> {
        let name = container_name(container)?;
        let su = StorageUser::new(storage_user)
            .blob(|| format!("naming storage user {storage_user:?}"))?;
        self.blobs()
            .revoke(&name, &su, Access::ReadWrite)
            .await
            .blob(|| format!("revoking {storage_user} on {container}"))
    }

    /// Deletes every object of a container, then the container.
    async fn delete_container_and_objects(&self, container: &str) -> Result<()> {
        let name = container_name(container)?;
        let objects = match self.blobs().list(&name).await {
            Ok(o) => o,
            Err(e) if e.kind == BlobErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).blob(|| format!("listing {container}")),
        };
        for id in objects {
            match self.blobs().delete(&name, &id).await {
                Err(e) if e.kind != BlobErrorKind::NotFound => {
                    return Err(e).blob(|| format!("deleting object {id} of {container}"));
                }
                _ => {}
            }
        }
        match self.blobs().delete_container(&name).await {
            Err(e) if e.kind != BlobErrorKind::NotFound => {
                Err(e).blob(|| format!("deleting container {container}"))
            }
            _ => Ok(()),
        }
    }
}
