//! The direct transport, the way the original StackSync client worked:
//! metadata RPCs and push notifications over RabbitMQ, and chunks straight
//! to and from OpenStack Swift with the user's own storage credentials, in
//! the container the service names for each workspace (the service grants
//! the account's storage user an ACL on it).
//!
//! The broker is shared with every other client, so nothing here holds
//! more than one session needs: the client logs in over HTTPS to the
//! server (never with its password on the bus) and gets a session token
//! plus a broker user of its own, which may only publish to the request
//! exchange and read its own replies (direct reply-to) and its own
//! notification queue, bound by the service to the topics of the user's
//! workspaces. The broker stamps each request with that user, and the
//! service checks it against the session token the request carries.
//! Replies are matched to their request id, and notifications are only
//! hints (an unreadable one, a lag or a reconnection becomes
//! [`Notification::Resync`]).
//!
//! TLS: an `amqps://` broker URL is used as given when the bus is built
//! with TLS support; the login and the credentials go over the server's
//! `https://` URL.

mod listener;
mod rpc;
mod swift;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use stacksync_blobstore::{BlobStore, ContainerName, SwiftAuth, SwiftConfig, SwiftStore};
use stacksync_bus::{Bus, BusConfig, ClientLogin};
use stacksync_gateway_client::{GatewayClient, RetryPolicy};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{Error, UserId, Workspace};

use crate::connection::{Connection, GatewayTransport, NotificationStream, unexpected};
use crate::transfer::{BlobTransport, ChunkTransport};
use listener::Listener;
use rpc::call;
use swift::SwiftTransport;

/// Everything the direct transport needs besides the session.
#[derive(Debug, Clone)]
pub struct DirectConfig {
    /// The broker (its URL without credentials: the session's own broker
    /// user is filled in) and the server's `[bus]` namespace.
    /// `rpc_timeout` bounds one attempt.
    pub bus: BusConfig,
    /// The user's own Swift credentials; `account` is the installation's
    /// account (where the workspace containers live) when it is not the
    /// storage user's own.
    pub swift: SwiftConfig,
    /// How transient failures (bus timeouts, a lost broker connection, the
    /// service reporting `Unavailable`) are retried, under one request id.
    pub retry: RetryPolicy,
    /// The server's http(s) URL. Shared workspaces grant members' storage
    /// users read access only (a Swift ACL cannot stop an overwrite, and
    /// the other members' files must not be at one member's mercy), so
    /// chunks written into a shared workspace go through the server's
    /// write-once upload; without a URL they are refused by Swift.
    pub server_url: Option<String>,
}

impl DirectConfig {
    /// A configuration with the bus's and the retry policy's defaults.
    pub fn new(
        amqp_url: impl Into<String>,
        namespace: impl Into<String>,
        swift: SwiftConfig,
    ) -> DirectConfig {
        DirectConfig {
            bus: BusConfig::new(amqp_url, namespace),
            swift,
            retry: RetryPolicy::default(),
            server_url: None,
        }
    }
}

/// A logged-in connection over RabbitMQ and Swift. Cheap to clone.
#[derive(Clone)]
pub struct DirectConnection {
    inner: Arc<Inner>,
}

struct Inner {
    bus: Bus,
    namespace: String,
    token: String,
    user: UserId,
    broker: ClientLogin,
    store: Arc<SwiftStore>,
    storage_user: String,
    retry: RetryPolicy,
    timeout: Duration,
    /// The same session over HTTP, for writes into shared workspaces.
    http: Option<GatewayClient>,
}

impl fmt::Debug for DirectConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token and the broker password are secrets: never in logs.
        f.debug_struct("DirectConnection")
            .field("namespace", &self.inner.namespace)
            .field("user", &self.inner.user)
            .field("broker_user", &self.inner.broker.user)
            .field("storage_user", &self.inner.storage_user)
            .finish_non_exhaustive()
    }
}

impl DirectConnection {
    /// Logs in over HTTP(S) to the server at `server_url` (its gateway's
    /// login endpoint: the password never goes through the broker), has
    /// the service issue this session's broker user, then connects to the
    /// broker as that user and to Swift. Keep [`DirectConnection::token`]
    /// and [`DirectConnection::broker_login`] for
    /// [`DirectConnection::connect`].
    pub async fn login(
        config: DirectConfig,
        server_url: &str,
        email: &str,
        password: &str,
    ) -> Result<DirectConnection, Error> {
        let mut config = config;
        config
            .server_url
            .get_or_insert_with(|| server_url.to_owned());
        let http = GatewayClient::login(server_url, email, password).await?;
        let broker = match http.rpc(Request::IssueBrokerCredentials).await? {
            Reply::BrokerCredentials { user, password, .. } => ClientLogin { user, password },
            other => return Err(unexpected("issue_broker_credentials", other)),
        };
        let session = http.session();
        let (token, user) = (session.token.clone(), session.user);
        let bus = open_bus(&config.bus, &broker).await?;
        Self::finish(config, bus, token, user, broker).await
    }

    /// Connects with a session token and its broker user from an earlier
    /// login. The token is checked at once (a `GetAccount` RPC), so an
    /// ended session fails here as `Unauthenticated` (or, once its broker
    /// user is withdrawn, the broker refuses the login) rather than on the
    /// first sync.
    pub async fn connect(
        config: DirectConfig,
        token: &str,
        broker: ClientLogin,
    ) -> Result<DirectConnection, Error> {
        let bus = open_bus(&config.bus, &broker).await?;
        let timeout = config.bus.rpc_timeout;
        let user = match call(&bus, token, Request::GetAccount, config.retry, timeout).await? {
            Reply::Account(account) => account.id,
            other => return Err(unexpected("get_account", other)),
        };
        Self::finish(config, bus, token.to_owned(), user, broker).await
    }

    async fn finish(
        config: DirectConfig,
        bus: Bus,
        token: String,
        user: UserId,
        broker: ClientLogin,
    ) -> Result<DirectConnection, Error> {
        let storage_user = match &config.swift.auth {
            SwiftAuth::V1 { user, .. } | SwiftAuth::KeystoneV3 { user, .. } => user.clone(),
        };
        let store = SwiftStore::new(config.swift).map_err(|e| {
            Error::bad_request(format!("Swift configuration of {storage_user}: {e}"))
        })?;
        // Log in to Swift now, so that wrong storage credentials show at
        // start-up and not on the first upload.
        store.connect().await.map_err(|e| {
            let e = Error::from(e);
            Error::new(
                e.kind,
                format!(
                    "Swift login as storage user {storage_user} failed: {}",
                    e.message
                ),
            )
        })?;
        let http = match &config.server_url {
            Some(url) => Some(
                GatewayClient::with_session(
                    url,
                    stacksync_gateway_client::Session {
                        token: token.clone(),
                        user,
                        expires_at: i64::MAX,
                    },
                )
                .map_err(|e| Error::bad_request(format!("the server URL {url}: {e}")))?
                .with_retry(config.retry),
            ),
            None => None,
        };
        Ok(DirectConnection {
            inner: Arc::new(Inner {
                http,
                bus,
                namespace: config.bus.namespace,
                token,
                user,
                broker,
                store: Arc::new(store),
                storage_user,
                retry: config.retry,
                timeout: config.bus.rpc_timeout,
            }),
        })
    }

    /// The session token (store it, owner-readable only, to reconnect).
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// The session's broker user (store it, owner-readable only, to
    /// reconnect; it stops working when the session ends).
    pub fn broker_login(&self) -> &ClientLogin {
        &self.inner.broker
    }

    /// The logged-in user.
    pub fn user(&self) -> UserId {
        self.inner.user
    }

    /// The Swift user chunks are moved as.
    pub fn storage_user(&self) -> &str {
        &self.inner.storage_user
    }
}

impl Inner {
    async fn rpc(&self, request: Request) -> Result<Reply, Error> {
        call(&self.bus, &self.token, request, self.retry, self.timeout).await
    }
}

#[async_trait]
impl Connection for DirectConnection {
    async fn rpc(&self, request: Request) -> Result<Reply, Error> {
        self.inner.rpc(request).await
    }

    async fn chunks(&self, workspace: &Workspace) -> Result<Arc<dyn ChunkTransport>, Error> {
        let container = ContainerName::new(&workspace.container).map_err(|e| {
            Error::bad_request(format!(
                "workspace {} names an invalid storage container: {e}",
                workspace.id
            ))
        })?;
        let store: Arc<dyn BlobStore> = self.inner.store.clone();
        let writes = match &self.inner.http {
            Some(http) if workspace.is_shared => {
                Some(GatewayTransport::new(http.clone(), workspace.id))
            }
            _ => None,
        };
        Ok(Arc::new(SwiftTransport {
            blobs: BlobTransport::new(store, container),
            writes,
            service: Arc::clone(&self.inner),
            workspace: workspace.id,
            context: format!(
                "container {} of workspace {:?} ({}) as storage user {}",
                workspace.container, workspace.name, workspace.id, self.inner.storage_user
            ),
        }))
    }

    async fn notifications(&self) -> Result<NotificationStream, Error> {
        let listener = Listener::open(self.inner.clone()).await?;
        Ok(
            futures::stream::unfold(listener, |mut listener| async move {
                let item = listener.next().await?;
                Some((item, listener))
            })
            .boxed(),
        )
    }
}

/// Connects to the broker as the session's own user; the URL is never
/// echoed (it may hold a password).
async fn open_bus(config: &BusConfig, broker: &ClientLogin) -> Result<Bus, Error> {
    let mut config = config.clone();
    config.client = Some(broker.clone());
    Bus::rabbitmq(config.clone()).await.map_err(|e| {
        let message = format!(
            "cannot connect to the message bus as {} (namespace {:?}): {e}",
            broker.user, config.namespace
        );
        if e.is_transient() {
            Error::unavailable(message)
        } else {
            Error::bad_request(message)
        }
    })
}
