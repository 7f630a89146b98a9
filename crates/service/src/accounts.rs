//! Account control: logout, logout everywhere, password changes and resets,
//! disabling and removing users.
//!
//! Every way a session ends goes through [`Service::sessions_ended`], so
//! that anything issued per session (e.g. broker credentials of the direct
//! transport) is revoked in one place. Sessions are checked against the
//! database on every request and never cached, so an ended session is
//! refused by the very next request.

use stacksync_blobstore::{Access, BlobErrorKind, StorageUser};
use stacksync_bus::Topic;
use stacksync_metastore::{RemovedUser, Revocation};
use stacksync_proto::{Error, Notification, UserId};

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
    /// storage grants are revoked). Refused while they own a workspace
    /// shared with others (see `MetaStore::remove_user`).
    pub async fn remove_user(&self, user: UserId) -> Result<UserRemoval, Error> {
        Ok(self.remove_user_inner(user).await?)
    }

    async fn remove_user_inner(&self, user: UserId) -> Result<UserRemoval> {
        let account = self.store().user(user).await?.account;
        let removed = self.store().remove_user(user).await?;
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
        for container in &removed.deleted_containers {
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
