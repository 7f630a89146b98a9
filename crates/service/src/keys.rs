//! The server's half of end-to-end encrypted workspaces: public identities
//! and each workspace's key chain, stored and relayed as opaque bytes.
//!
//! The server can neither verify nor make these (it never links the
//! client's vault); what it keeps is who may see and append them:
//!
//! * an identity is published by its own user only, and given only to
//!   users who share a workspace with them (or to themselves): anyone else
//!   is answered as if no identity existed, so asking enumerates nobody;
//! * a workspace's statements are read by its members only
//!   ([`Service::member_of`]), and appended only by members who may write
//!   ([`Service::writable_member_of`]), only to a workspace whose
//!   encryption is client-side, one epoch after the latest
//!   (`MetaStore::append_key_statement` settles races on the database);
//! * once a statement is durable every member's devices hear
//!   [`Notification::KeysChanged`] on the workspace's topic (again on a
//!   retry, in case the first attempt stopped before notifying);
//! * a user may keep their private identity, sealed under their
//!   passphrase, with their public one, for their own other devices: it
//!   is given back to that user only (`GetOwnIdentity`), never in
//!   `GetIdentities`, and goes when they publish another identity without
//!   it;
//! * a user makes their own private workspace end-to-end encrypted
//!   (`EncryptWorkspace`) only while nothing was ever written to it
//!   (`MetaStore::encrypt_private_workspace` checks and sets in one
//!   statement); the account's setting is its private workspace's, so
//!   every listing of it says client-side from then on, and the user's
//!   devices hear `WorkspaceUpdated`.

use stacksync_bus::Topic;
use stacksync_metastore::Appended;
use stacksync_proto::keys::{
    KEY_STATEMENTS_PAGE_BYTES, MAX_IDENTITY_BYTES, MAX_IDENTITY_USERS, MAX_KEY_STATEMENT_BYTES,
    MAX_KEY_STATEMENTS, MAX_SEALED_IDENTITY_BYTES,
};
use stacksync_proto::rpc::Reply;
use stacksync_proto::{
    EncryptionMode, Error, ErrorKind, Notification, UserId, Workspace, WorkspaceId,
};

use crate::Service;
use crate::error::ServiceError;

type Result<T, E = ServiceError> = std::result::Result<T, E>;

impl Service {
    /// `PublishIdentity`: the caller's own identity, nobody else's, and
    /// the sealed copy of its private half if given (`None` keeps the one
    /// stored if the identity did not change, and removes it otherwise).
    pub(crate) async fn publish_identity(
        &self,
        user: UserId,
        identity: &[u8],
        sealed: Option<&[u8]>,
    ) -> Result<Reply> {
        if identity.is_empty() {
            return Err(Error::bad_request("an identity cannot be empty").into());
        }
        if identity.len() > MAX_IDENTITY_BYTES {
            return Err(too_large("an identity", identity.len(), MAX_IDENTITY_BYTES).into());
        }
        if let Some(sealed) = sealed {
            if sealed.is_empty() {
                return Err(Error::bad_request("a sealed identity cannot be empty").into());
            }
            if sealed.len() > MAX_SEALED_IDENTITY_BYTES {
                return Err(too_large(
                    "a sealed identity",
                    sealed.len(),
                    MAX_SEALED_IDENTITY_BYTES,
                )
                .into());
            }
        }
        let changed_at = self
            .store()
            .publish_identity(user, identity, sealed)
            .await?;
        Ok(Reply::IdentityPublished { changed_at })
    }

    /// `GetOwnIdentity`: the caller's own, sealed copy included; there is
    /// no way to ask for anybody else's sealed copy.
    pub(crate) async fn get_own_identity(&self, user: UserId) -> Result<Reply> {
        let own = self.store().own_identity(user).await?;
        Ok(match own {
            Some(own) => Reply::OwnIdentity {
                identity: Some(own.identity),
                sealed: own.sealed,
            },
            None => Reply::OwnIdentity {
                identity: None,
                sealed: None,
            },
        })
    }

    /// `EncryptWorkspace`: the caller's own private workspace only, while
    /// nothing was ever written to it; the same request again, once it is
    /// end-to-end encrypted, is answered the same way.
    pub(crate) async fn encrypt_workspace(
        &self,
        user: UserId,
        ws: WorkspaceId,
    ) -> Result<Workspace> {
        // Authorize first: a non-member learns nothing of the workspace.
        let workspace = self.member_of(user, ws).await?;
        if workspace.owner != user {
            return Err(Error::forbidden(
                "only the workspace's owner can make it end-to-end encrypted",
            )
            .into());
        }
        if workspace.is_shared {
            return Err(Error::bad_request(format!(
                "workspace {ws} is a shared folder: only your private workspace can be made \
                 end-to-end encrypted (encrypted sharing is done by the clients, and is not \
                 built yet)"
            ))
            .into());
        }
        let encrypted = if workspace.encryption == EncryptionMode::ClientSide {
            workspace
        } else {
            self.store().encrypt_private_workspace(user, ws).await?
        };
        // Again on a retry, in case the first attempt stopped before it.
        let n = Notification::WorkspaceUpdated {
            workspace: encrypted.clone(),
        };
        self.notify(Topic::User(user), &n).await;
        Ok(encrypted)
    }

    /// `GetIdentities`: only of people the caller shares a workspace with.
    pub(crate) async fn get_identities(&self, user: UserId, users: &[UserId]) -> Result<Reply> {
        if users.len() > MAX_IDENTITY_USERS {
            return Err(Error::bad_request(format!(
                "ask for at most {MAX_IDENTITY_USERS} identities per request, not {}",
                users.len()
            ))
            .into());
        }
        Ok(Reply::Identities {
            identities: self.store().identities_visible_to(user, users).await?,
        })
    }

    /// `GetKeyStatements`: members only.
    pub(crate) async fn get_key_statements(
        &self,
        user: UserId,
        ws: WorkspaceId,
        after_epoch: u64,
        limit: u32,
    ) -> Result<Reply> {
        self.member_of(user, ws).await?;
        let page = self
            .store()
            .key_statements(
                ws,
                after_epoch,
                limit.clamp(1, MAX_KEY_STATEMENTS),
                KEY_STATEMENTS_PAGE_BYTES,
            )
            .await?;
        Ok(Reply::KeyStatements {
            workspace: ws,
            statements: page.statements,
            latest_epoch: page.latest_epoch,
        })
    }

    /// `PutKeyStatement`: members who may write, client-side encrypted
    /// workspaces only, the next epoch only.
    pub(crate) async fn put_key_statement(
        &self,
        user: UserId,
        ws: WorkspaceId,
        epoch: u64,
        statement: &[u8],
    ) -> Result<Reply> {
        // Authorize first, so that a non-member learns nothing about the
        // workspace from the other refusals.
        let workspace = self.writable_member_of(user, ws).await?;
        if workspace.encryption != EncryptionMode::ClientSide {
            return Err(Error::bad_request(format!(
                "workspace {ws} is not end-to-end encrypted: it has no key statements"
            ))
            .into());
        }
        // The genesis statement names the workspace's owner and first key:
        // only the owner's device writes it, so a member who joined first
        // cannot take a shared folder's keys over.
        if epoch == 1 && workspace.owner != user {
            return Err(Error::forbidden(format!(
                "only the owner of workspace {ws} writes its first key statement"
            ))
            .into());
        }
        if statement.is_empty() {
            return Err(Error::bad_request("a key statement cannot be empty").into());
        }
        if statement.len() > MAX_KEY_STATEMENT_BYTES {
            return Err(
                too_large("a key statement", statement.len(), MAX_KEY_STATEMENT_BYTES).into(),
            );
        }
        // Stored now or by an earlier attempt: the same answer either way.
        let _: Appended = self
            .store()
            .append_key_statement(ws, user, epoch, statement)
            .await?;
        let n = Notification::KeysChanged {
            workspace: ws,
            epoch,
        };
        self.notify(Topic::Workspace(ws), &n).await;
        Ok(Reply::KeyStatementStored {
            workspace: ws,
            epoch,
        })
    }
}

fn too_large(what: &str, len: usize, max: usize) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        format!("{what} of {len} bytes is larger than the {max} bytes the server stores"),
    )
}
