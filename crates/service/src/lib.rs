//! The StackSync sync service: every operation of reference section 2
//! (accounts, workspaces, the change feed, commits, devices, sharing,
//! members, versions, restore), each one authenticated by a session token
//! and authorized against workspace membership and device ownership, with
//! push notifications published after the facts they announce are durable.
//!
//! A [`Service`] is stateless apart from its handles (metadata store, blob
//! store, bus), so any number of instances can serve one request queue
//! ([`run_rpc_workers`]); every creating operation is idempotent under a
//! retry with the same request id. The HTTP gateway calls [`Service`]
//! directly. This crate must never trust a client's claim of who it is or
//! which device it uses without checking it, never publish a notification
//! before the change is committed, and never let a failed notification
//! fail the operation it announces (notifications are hints; clients re-read
//! the change feed).

mod auth;
mod chunks;
mod error;
mod ops;
mod sharing;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use stacksync_blobstore::{BlobStore, ContainerName};
use stacksync_bus::{Bus, Topic};
use stacksync_metastore::{MetaStore, NewUser};
use stacksync_proto::{Account, EncryptionMode, Error, Millis, Notification, UserId, Workspace};

pub use auth::{hash_password, token_hash, verify_password};
pub use chunks::{ObjectUpload, StorageCredentials};
pub use error::ServiceError;
/// Byte ranges of [`Service::get_chunk`], as the blob store speaks them.
pub use stacksync_blobstore::ByteRange;
pub use workers::run_rpc_workers;

use crate::error::BlobContext;

/// Settings of the service that do not come from its handles.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// How long a session token stays valid after login (default 30 days).
    pub session_ttl: Duration,
    /// The storage URL clients use to reach Swift directly, if they may.
    pub storage_url: Option<String>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            storage_url: None,
        }
    }
}

/// A login session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The bearer token (64 hex characters); only its hash is stored.
    pub token: String,
    /// Whose session it is.
    pub user: UserId,
    /// When the token stops working (milliseconds since the epoch).
    pub expires_at: Millis,
}

/// The sync service. Cheap to clone; every clone shares the same handles.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    store: MetaStore,
    blobs: Arc<dyn BlobStore>,
    bus: Bus,
    config: ServiceConfig,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("store", &self.inner.store.backend())
            .field("blobs", &self.inner.blobs)
            .field("bus", &self.inner.bus)
            .finish()
    }
}

impl Service {
    /// A service over these handles.
    pub fn new(
        store: MetaStore,
        blobs: Arc<dyn BlobStore>,
        bus: Bus,
        config: ServiceConfig,
    ) -> Service {
        Service {
            inner: Arc::new(Inner {
                store,
                blobs,
                bus,
                config,
            }),
        }
    }

    /// The metadata store.
    pub fn store(&self) -> &MetaStore {
        &self.inner.store
    }

    /// The blob store.
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.inner.blobs
    }

    /// The bus notifications go out on.
    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    /// The service's settings.
    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    /// Creates a user with a hashed password, their private workspace and
    /// its storage container (what `stacksync admin user add` does).
    pub async fn create_user(
        &self,
        email: &str,
        name: &str,
        password: &str,
        quota_limit: u64,
        storage_user: Option<String>,
    ) -> Result<(Account, Workspace), Error> {
        let password = password.to_owned();
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(ServiceError::from)??;
        let account = self
            .store()
            .create_user(NewUser {
                email: email.to_owned(),
                name: name.to_owned(),
                password_hash,
                quota_limit,
                storage_user,
            })
            .await
            .map_err(ServiceError::from)?;
        let ws = self
            .store()
            .create_workspace(account.id, "private", false, EncryptionMode::Plain)
            .await
            .map_err(ServiceError::from)?;
        self.ensure_container(&ws.container).await?;
        // A client that reaches Swift directly does so as the account's
        // storage user, which needs the container's ACL like a member of a
        // shared workspace.
        self.grant(&ws, account.storage_user.as_deref())
            .await
            .map_err(Error::from)?;
        Ok((account, ws))
    }

    /// The topics a user's devices follow: their own, and every workspace
    /// they belong to.
    pub async fn topics_for(&self, user: UserId) -> Result<Vec<Topic>, Error> {
        let mut topics = vec![Topic::User(user)];
        let workspaces = self
            .store()
            .workspaces_of(user)
            .await
            .map_err(ServiceError::from)?;
        topics.extend(workspaces.iter().map(|w| Topic::Workspace(w.id)));
        Ok(topics)
    }

    /// Creates a workspace's container if it does not exist yet.
    pub(crate) async fn ensure_container(&self, container: &str) -> Result<(), ServiceError> {
        let name = container_name(container)?;
        self.blobs()
            .create_container(&name)
            .await
            .blob(|| format!("creating container {container}"))
    }

    /// Publishes a notification; a failure is logged, never returned,
    /// because the change it announces is already durable and clients
    /// re-read the change feed after any gap.
    pub(crate) async fn notify(&self, topic: Topic, notification: &Notification) {
        let payload = stacksync_proto::wire::encode(notification);
        if let Err(e) = self.bus().publish(&topic, payload.into()).await {
            tracing::warn!(%topic, error = %e, "notification not published");
        }
    }
}

/// A workspace's container name as the blob store wants it.
pub(crate) fn container_name(container: &str) -> Result<ContainerName, ServiceError> {
    ContainerName::new(container).map_err(|source| ServiceError::Blob {
        context: format!("naming container {container:?}"),
        source,
    })
}
