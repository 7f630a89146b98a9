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
//!
//! End-to-end encrypted workspaces (`EncryptionMode::ClientSide`) are
//! served blind: the service stores and relays identities, key chains and
//! each version's sealed record as opaque bytes (`keys.rs`), and keeps
//! what each encryption setting allows in one place
//! (`encryption_rules.rs`): there every proposal carries a sealed record
//! under its id as its name and no MIME type, elsewhere none carries a
//! record; the server restores nothing there and shares no folder into or
//! out of such a workspace it would have to move readable files for. A
//! user's private workspace becomes one (`EncryptWorkspace`) only while
//! nothing was ever written to it.
//!
//! The REST API v2's OAuth 1.0a provider keeps its state here (`oauth.rs`,
//! the pure protocol being `stacksync_oauth`'s): an app acts for a user
//! only with an access token the user approved with their password, through
//! the same throttled check as login.

mod accounts;
mod api;
mod auth;
mod broker;
mod chunks;
mod encryption_rules;
mod error;
mod gc;
mod keys;
mod links;
mod login_guard;
pub mod metrics;
mod oauth;
mod ops;
mod quota;
mod sharing;
mod web;
mod workers;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stacksync_blobstore::{BlobStore, ContainerName};
use stacksync_bus::{Bus, Topic};
use stacksync_metastore::{MetaStore, NewUser};
use stacksync_proto::{Account, EncryptionMode, Error, Millis, Notification, UserId, Workspace};

pub use accounts::{
    AclMismatch, MAX_PASSWORD_BYTES, StorageUserChange, UserRemoval, check_new_password,
};
pub use api::{
    ApiNode, ChildrenPage, Content, DeltaPage, MAX_DELTA_PAGE, MAX_LIST_PAGE, NewContent, Person,
    Placement, UploadTo,
};
/// Resumable upload sessions of the REST API (`api/upload_session.rs`).
pub use api::{
    FinishOptions, FinishedUpload, MAX_OPEN_UPLOAD_SESSIONS, MAX_UPLOAD_PIECE, MAX_UPLOAD_PIECES,
    STAGING_CONTAINER, SessionRefusal, UPLOAD_SESSION_TTL, UploadPiece, UploadSession,
    UploadSessionRequest,
};
pub use auth::{hash_password, token_hash, verify_password};
pub use broker::{BrokerAdmin, BrokerAdminConfig, BrokerCredentials, BrokerError};
pub use chunks::{ObjectUpload, StorageCredentials};
pub use error::ServiceError;
pub use gc::{GcReport, GcSettings};
/// The one refusal of a shared link that reaches nothing (unknown, ended,
/// wrong secret or session, or an item outside it).
pub use links::gone as link_gone;
pub use links::{
    CreatedLink, Crumb, LINK_DEVICE, LINK_SESSION_MS, Link, LinkGrant, LinkListing, LinkSession,
    MAX_PASSWORD_ATTEMPTS, NewLink, OpenedLink, PASSWORD_WINDOW_MS,
};
pub use login_guard::{LoginLimits, address_group};
pub use oauth::{ApiCaller, Approval, MAX_CONSUMER_NAME, NewConsumer, PendingApp};
/// Byte ranges of [`Service::get_chunk`], as the blob store speaks them.
pub use stacksync_blobstore::ByteRange;
/// What a shared link lets its holders do.
pub use stacksync_metastore::LinkAccess;
/// Which sessions [`Service::revoke_sessions`] ends.
pub use stacksync_metastore::Revocation;
/// What [`Service::remove_user`] does with the shared workspaces the user
/// owns.
pub use stacksync_metastore::SharedWorkspaces;
pub use stacksync_metastore::{AuthorizedApp, OAuthConsumer};
/// The OAuth provider's settings and what its endpoints take and give.
pub use stacksync_oauth;
pub use web::SessionView;
pub use workers::run_rpc_workers;

use crate::error::BlobContext;
use crate::login_guard::LoginGuard;

/// Settings of the service that do not come from its handles.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// How long a session token stays valid after login (default 30 days).
    pub session_ttl: Duration,
    /// The storage URL clients use to reach Swift directly, if they may.
    pub storage_url: Option<String>,
    /// Login throttling and the password hashing pool.
    pub login: LoginLimits,
    /// The OAuth 1.0a provider of the REST API v2 (timestamp window,
    /// PLAINTEXT, request tokens' lifetime).
    pub oauth: stacksync_oauth::Config,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            storage_url: None,
            login: LoginLimits::default(),
            oauth: stacksync_oauth::Config::default(),
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
    /// Shared by every copy of the service (see `with_broker_admin`), so
    /// that one throttle and one hashing pool guard every login path.
    login_guard: Arc<LoginGuard>,
    /// Set when direct clients get their own broker users.
    broker: Option<BrokerAdmin>,
    /// When this process last pruned OAuth nonces and request tokens
    /// (seconds since the epoch).
    oauth_pruned: AtomicU64,
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
    /// A service over these handles. Starts the password hashing threads
    /// (`config.login.hash_workers`).
    ///
    /// # Panics
    ///
    /// If the operating system refuses to start a thread, as
    /// `std::thread::spawn` does.
    pub fn new(
        store: MetaStore,
        blobs: Arc<dyn BlobStore>,
        bus: Bus,
        config: ServiceConfig,
    ) -> Service {
        let login_guard = Arc::new(
            LoginGuard::new(&config.login)
                .unwrap_or_else(|e| panic!("cannot start the password hashing threads: {e}")),
        );
        Service {
            inner: Arc::new(Inner {
                store,
                blobs,
                bus,
                config,
                login_guard,
                broker: None,
                oauth_pruned: AtomicU64::new(0),
            }),
        }
    }

    /// This service, issuing per-session broker users to direct clients
    /// through `broker` (and requiring, on the bus, that each request comes
    /// from its session's own broker user).
    pub fn with_broker_admin(self, broker: BrokerAdmin) -> Service {
        let inner = &self.inner;
        Service {
            inner: Arc::new(Inner {
                store: inner.store.clone(),
                blobs: Arc::clone(&inner.blobs),
                bus: inner.bus.clone(),
                config: inner.config.clone(),
                login_guard: Arc::clone(&inner.login_guard),
                broker: Some(broker),
                oauth_pruned: AtomicU64::new(inner.oauth_pruned.load(Ordering::Relaxed)),
            }),
        }
    }

    /// The broker administration, when direct clients get their own users.
    pub fn broker(&self) -> Option<&BrokerAdmin> {
        self.inner.broker.as_ref()
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

    /// Password verifications run so far, for known and unknown accounts
    /// alike (a wrong email costs what a wrong password does); for
    /// monitoring and tests.
    pub fn password_checks(&self) -> u64 {
        self.inner.login_guard.verifications()
    }

    pub(crate) fn login_guard(&self) -> &LoginGuard {
        &self.inner.login_guard
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
        self.create_user_with_encryption(
            email,
            name,
            password,
            quota_limit,
            storage_user,
            EncryptionMode::Plain,
        )
        .await
    }

    /// [`Service::create_user`] with the encryption setting of the user's
    /// private workspace (`stacksync admin user add --encryption`).
    /// Server-side encryption needs a blob store that encrypts at rest;
    /// client-side is chosen by the client (`stacksync setup --encrypted`),
    /// whose keys the server never holds, so it cannot be given here.
    pub async fn create_user_with_encryption(
        &self,
        email: &str,
        name: &str,
        password: &str,
        quota_limit: u64,
        storage_user: Option<String>,
        encryption: EncryptionMode,
    ) -> Result<(Account, Workspace), Error> {
        check_new_password(password)?;
        match encryption {
            EncryptionMode::Plain => {}
            EncryptionMode::ServerSide => self.require_at_rest()?,
            EncryptionMode::ClientSide => {
                return Err(Error::bad_request(
                    "client-side encryption is chosen by the account's own client, \
                     which alone holds its keys",
                ));
            }
        }
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
            .create_workspace(account.id, "private", false, encryption)
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

    /// Refuses server-side encryption on a blob store that does not
    /// encrypt at rest.
    pub(crate) fn require_at_rest(&self) -> Result<(), Error> {
        if self.blobs().encrypts_at_rest() {
            Ok(())
        } else {
            Err(Error::bad_request(
                "server-side encryption needs storage that encrypts at rest: an at-rest key \
                 for the local store, or Swift's encryption middleware (encrypted_at_rest)",
            ))
        }
    }

    /// Checks, at startup, that the storage can keep the promise made to
    /// every workspace with server-side encryption: with such workspaces
    /// and a store that does not encrypt at rest (an operator turned it off,
    /// or pointed the server at other storage), the server must not start.
    pub async fn check_at_rest_promise(&self) -> Result<(), Error> {
        if self.blobs().encrypts_at_rest() {
            return Ok(());
        }
        let promised = self
            .store()
            .count_workspaces_with(EncryptionMode::ServerSide)
            .await
            .map_err(ServiceError::from)?;
        if promised == 0 {
            return Ok(());
        }
        Err(Error::internal(format!(
            "{promised} workspace(s) have server-side encryption, but the configured storage \
             does not encrypt at rest; configure its at-rest encryption before starting"
        )))
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
