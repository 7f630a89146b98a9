//! The direct transport, the way the original StackSync client worked:
//! metadata RPCs and push notifications over RabbitMQ (the same request
//! queue and notification exchange the sync service serves), and chunks
//! straight to and from OpenStack Swift with the user's own storage
//! credentials, in the container the service names for each workspace (the
//! service grants the account's storage user an ACL on it).
//!
//! Nothing here trusts the broker more than the gateway would: every RPC
//! carries the session token and the service checks it, replies are
//! matched to their request id, and notifications are only hints (an
//! unreadable one, a lag or a reconnection becomes
//! [`Notification::Resync`]).

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use stacksync_blobstore::{BlobStore, ContainerName, SwiftAuth, SwiftConfig, SwiftStore};
use stacksync_bus::{Bus, BusConfig, BusError, Subscription, SubscriptionEvent, Topic};
use stacksync_gateway_client::RetryPolicy;
use stacksync_proto::rpc::{Reply, Request, RpcRequest, RpcResponse};
use stacksync_proto::{
    ChunkId, ChunkRef, Error, ErrorKind, Notification, UserId, Workspace, WorkspaceId, wire,
};
use uuid::Uuid;

use crate::connection::{Connection, NotificationStream, locate_chunks, unexpected};
use crate::transfer::{BlobTransport, ChunkTransport};

/// Everything the direct transport needs besides the session.
#[derive(Debug, Clone)]
pub struct DirectConfig {
    /// The broker, namespace and queue kind: they must match the server's
    /// `[bus]` settings (a different queue kind makes the broker refuse the
    /// request queue's declaration). `rpc_timeout` bounds one attempt.
    pub bus: BusConfig,
    /// The user's own Swift credentials; `account` is the installation's
    /// account (where the workspace containers live) when it is not the
    /// storage user's own.
    pub swift: SwiftConfig,
    /// How transient failures (bus timeouts, a lost broker connection, the
    /// service reporting `Unavailable`) are retried, under one request id.
    pub retry: RetryPolicy,
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
    store: Arc<SwiftStore>,
    storage_user: String,
    retry: RetryPolicy,
    timeout: Duration,
}

impl fmt::Debug for DirectConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a secret: never in logs.
        f.debug_struct("DirectConnection")
            .field("namespace", &self.inner.namespace)
            .field("user", &self.inner.user)
            .field("storage_user", &self.inner.storage_user)
            .finish_non_exhaustive()
    }
}

impl DirectConnection {
    /// Logs in with an email and password (the `Login` RPC over the bus)
    /// and connects to Swift. [`DirectConnection::token`] is the session
    /// token to keep for [`DirectConnection::connect`].
    pub async fn login(
        config: DirectConfig,
        email: &str,
        password: &str,
    ) -> Result<DirectConnection, Error> {
        let bus = open_bus(&config.bus).await?;
        let timeout = config.bus.rpc_timeout;
        let login = Request::Login {
            email: email.to_owned(),
            password: password.to_owned(),
        };
        let (token, user) = match call(&bus, "", login, config.retry, timeout).await? {
            Reply::Session { token, user, .. } => (token, user),
            other => return Err(unexpected("login", other)),
        };
        Self::finish(config, bus, token, user).await
    }

    /// Connects with a session token from an earlier login. The token is
    /// checked at once (a `GetAccount` RPC), so an expired session fails
    /// here as `Unauthenticated` rather than on the first sync.
    pub async fn connect(config: DirectConfig, token: &str) -> Result<DirectConnection, Error> {
        let bus = open_bus(&config.bus).await?;
        let timeout = config.bus.rpc_timeout;
        let user = match call(&bus, token, Request::GetAccount, config.retry, timeout).await? {
            Reply::Account(account) => account.id,
            other => return Err(unexpected("get_account", other)),
        };
        Self::finish(config, bus, token.to_owned(), user).await
    }

    async fn finish(
        config: DirectConfig,
        bus: Bus,
        token: String,
        user: UserId,
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
        Ok(DirectConnection {
            inner: Arc::new(Inner {
                bus,
                namespace: config.bus.namespace,
                token,
                user,
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
        Ok(Arc::new(SwiftTransport {
            blobs: BlobTransport::new(store, container),
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

/// Connects to the broker; the URL is never echoed (it holds a password).
async fn open_bus(config: &BusConfig) -> Result<Bus, Error> {
    Bus::rabbitmq(config.clone()).await.map_err(|e| {
        let message = format!(
            "cannot connect to the message bus (namespace {:?}): {e}",
            config.namespace
        );
        if e.is_transient() {
            Error::unavailable(message)
        } else {
            Error::bad_request(message)
        }
    })
}

/// One logical request: one request id, retried on transient failures
/// (bus timeouts, a lost broker connection, the service's `Unavailable`),
/// so the service recognises a repeat of a request it already carried out.
async fn call(
    bus: &Bus,
    token: &str,
    request: Request,
    retry: RetryPolicy,
    timeout: Duration,
) -> Result<Reply, Error> {
    let message = RpcRequest {
        request_id: Uuid::now_v7(),
        token: token.to_owned(),
        request,
    };
    let payload = Bytes::from(wire::encode(&message));
    let mut attempt = 1;
    loop {
        let outcome = match bus.call(payload.clone(), timeout).await {
            Ok(bytes) => read_response(&bytes, message.request_id),
            Err(e) => Err(bus_error(e)),
        };
        match outcome {
            Err(e) if e.kind.is_transient() && attempt < retry.attempts => {
                tokio::time::sleep(backoff(&retry, attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn bus_error(e: BusError) -> Error {
    if e.is_transient() {
        Error::unavailable(format!("message bus: {e}"))
    } else {
        Error::internal(format!("message bus: {e}"))
    }
}

/// The service's answer to request `id`.
fn read_response(bytes: &[u8], id: Uuid) -> Result<Reply, Error> {
    let response: RpcResponse = wire::decode(bytes).map_err(|e| {
        Error::internal(format!(
            "unreadable reply on the message bus: {}",
            e.message
        ))
    })?;
    if response.request_id != id {
        return Err(Error::internal(format!(
            "the service answered request {id} with the reply to {}",
            response.request_id
        )));
    }
    response.result
}

/// The wait before retry number `retry` (1-based): exponential, capped,
/// with "equal jitter" so that clients cut off together do not return in
/// lockstep.
fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    let exp = policy
        .initial_delay
        .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
    let half = exp.min(policy.max_delay) / 2;
    // A v4 UUID is 122 random bits from the OS; 53 of them make the fraction.
    let fraction = (Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64;
    half + half.mul_f64(fraction)
}

/// Chunks and packs of one workspace in its Swift container, with errors
/// that say which container, workspace and storage user were refused; the
/// service's chunk index is asked over the bus.
struct SwiftTransport {
    blobs: BlobTransport,
    service: Arc<Inner>,
    workspace: WorkspaceId,
    context: String,
}

impl SwiftTransport {
    fn explain(&self, e: Error) -> Error {
        let why = match e.kind {
            ErrorKind::Forbidden => "Swift refused access to",
            ErrorKind::Unauthenticated => "Swift refused the credentials for",
            ErrorKind::NotFound => "not found in",
            _ => "storage failure on",
        };
        Error {
            message: format!("{why} {}: {}", self.context, e.message),
            ..e
        }
    }
}

#[async_trait]
impl ChunkTransport for SwiftTransport {
    async fn has_chunks(&self, ids: &[ChunkId]) -> Result<Vec<bool>, Error> {
        self.blobs
            .has_chunks(ids)
            .await
            .map_err(|e| self.explain(e))
    }

    async fn put_chunk(&self, id: &ChunkId, data: Bytes) -> Result<(), Error> {
        self.blobs
            .put_chunk(id, data)
            .await
            .map_err(|e| self.explain(e))
    }

    async fn get_chunk(&self, id: &ChunkId) -> Result<Bytes, Error> {
        self.blobs.get_chunk(id).await.map_err(|e| self.explain(e))
    }

    async fn get_range(&self, id: &ChunkId, offset: u64, len: u32) -> Result<Bytes, Error> {
        self.blobs
            .get_range(id, offset, len)
            .await
            .map_err(|e| self.explain(e))
    }

    async fn locate_chunks(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, Error> {
        locate_chunks(self.workspace, ids, |r| self.service.rpc(r)).await
    }
}

/// The state behind a direct notification stream: the bus subscription,
/// kept in step with the user's workspaces.
struct Listener {
    inner: Arc<Inner>,
    subscription: Subscription,
    /// Yielded before reading the subscription again.
    pending: VecDeque<Result<Notification, Error>>,
    /// Set once an error was yielded: the stream then ends.
    done: bool,
}

impl Listener {
    /// Subscribes to the user's topic first and only then lists the
    /// workspaces, so that a workspace joined in between is announced on
    /// the user topic rather than missed. Commits published before a
    /// workspace topic is bound are covered by the first `Resync`.
    async fn open(inner: Arc<Inner>) -> Result<Listener, Error> {
        let subscription = inner
            .bus
            .subscribe(&[Topic::User(inner.user)])
            .await
            .map_err(bus_error)?;
        let mut listener = Listener {
            inner,
            subscription,
            pending: VecDeque::new(),
            done: false,
        };
        listener.refresh_topics().await?;
        // As the gateway does: the first event says the stream is live and
        // anything before it must be read from the change feeds.
        listener.pending.push_back(Ok(Notification::Resync));
        Ok(listener)
    }

    /// Binds exactly the user's topic and those of their current workspaces.
    async fn refresh_topics(&mut self) -> Result<(), Error> {
        let workspaces = match self.inner.rpc(Request::GetWorkspaces).await? {
            Reply::Workspaces { workspaces } => workspaces,
            other => return Err(unexpected("get_workspaces", other)),
        };
        let mut wanted: HashSet<Topic> =
            workspaces.iter().map(|w| Topic::Workspace(w.id)).collect();
        wanted.insert(Topic::User(self.inner.user));
        let current: HashSet<Topic> = self.subscription.topics().await.into_iter().collect();
        for topic in wanted.difference(&current) {
            self.subscription.add(*topic).await.map_err(bus_error)?;
        }
        for topic in current.difference(&wanted) {
            self.subscription.remove(topic).await.map_err(bus_error)?;
        }
        Ok(())
    }

    /// Follows membership changes announced to this user.
    async fn follow(&self, notification: &Notification) -> Result<(), Error> {
        match notification {
            Notification::WorkspaceJoined { workspace } => self
                .subscription
                .add(Topic::Workspace(workspace.id))
                .await
                .map_err(bus_error),
            Notification::Unshared { workspace, user } if *user == self.inner.user => self
                .subscription
                .remove(&Topic::Workspace(*workspace))
                .await
                .map_err(bus_error),
            _ => Ok(()),
        }
    }

    async fn next(&mut self) -> Option<Result<Notification, Error>> {
        if let Some(item) = self.pending.pop_front() {
            return Some(item);
        }
        if self.done {
            return None;
        }
        let item = self.receive().await;
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }

    /// The next notification; an error only when the service refuses the
    /// session or the subscription cannot be kept.
    async fn receive(&mut self) -> Result<Notification, Error> {
        let Some(event) = self.subscription.recv().await else {
            return Err(Error::unavailable(
                "the message bus connection was shut down",
            ));
        };
        match event {
            SubscriptionEvent::Message { payload, .. } => {
                match wire::decode::<Notification>(&payload) {
                    Ok(notification) => {
                        self.follow(&notification).await?;
                        Ok(notification)
                    }
                    // A hint we cannot read is a lost hint.
                    Err(_) => Ok(Notification::Resync),
                }
            }
            SubscriptionEvent::Lagged { .. } | SubscriptionEvent::Reconnected => {
                // Membership notifications may be among those lost: list
                // the workspaces again. A transient failure keeps the old
                // topics (the next gap tries again); a refusal ends the
                // stream.
                match self.refresh_topics().await {
                    Err(e) if !e.kind.is_transient() => Err(e),
                    _ => Ok(Notification::Resync),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_capped() {
        let policy = RetryPolicy {
            attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for retry in 1..40 {
            let d = backoff(&policy, retry);
            let cap = (Duration::from_millis(100) * 2u32.pow((retry - 1).min(10)))
                .min(Duration::from_secs(1));
            assert!(d >= cap / 2 && d <= cap, "retry {retry}: {d:?} vs {cap:?}");
        }
    }

    fn quick_retry(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        }
    }

    /// Serves `answers.len()` requests on `bus`, answering each with the
    /// next result (`None`: keep the request unanswered until the next one
    /// arrives, so that the caller times out); returns the request ids seen.
    fn serve(
        bus: &Bus,
        answers: Vec<Option<Result<Reply, Error>>>,
    ) -> tokio::task::JoinHandle<Vec<Uuid>> {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut requests = bus.serve(4).await.expect("the in-process bus serves");
            let mut seen = Vec::new();
            let mut held = Vec::new();
            for answer in answers {
                let incoming = requests.next().await.expect("a request arrives");
                let req: RpcRequest = wire::decode(incoming.payload()).expect("a request decodes");
                seen.push(req.request_id);
                match answer {
                    Some(result) => {
                        let response = RpcResponse {
                            request_id: req.request_id,
                            result,
                        };
                        incoming
                            .reply(wire::encode(&response).into())
                            .await
                            .expect("the reply is sent");
                    }
                    None => held.push(incoming),
                }
            }
            seen
        })
    }

    #[tokio::test]
    async fn transient_failures_are_retried_under_one_request_id() {
        let bus = Bus::in_process(stacksync_bus::MemoryConfig::default());
        let done = Reply::Workspaces { workspaces: vec![] };
        let server = serve(
            &bus,
            vec![
                Some(Err(Error::unavailable("database restarting"))),
                // No answer: the caller's attempt times out on the bus.
                None,
                Some(Ok(done.clone())),
            ],
        );
        let reply = call(
            &bus,
            "token",
            Request::GetWorkspaces,
            quick_retry(5),
            Duration::from_millis(300),
        )
        .await
        .expect("the third attempt succeeds");
        assert_eq!(reply, done);
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|id| *id == seen[0]), "{seen:?}");
    }

    #[tokio::test]
    async fn refusals_are_not_retried_and_retries_end() {
        let bus = Bus::in_process(stacksync_bus::MemoryConfig::default());
        let server = serve(&bus, vec![Some(Err(Error::forbidden("not a member")))]);
        let err = call(
            &bus,
            "t",
            Request::GetAccount,
            quick_retry(5),
            Duration::from_secs(20),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Forbidden);
        assert_eq!(server.await.unwrap().len(), 1);

        let server = serve(
            &bus,
            vec![
                Some(Err(Error::unavailable("down"))),
                Some(Err(Error::unavailable("still down"))),
            ],
        );
        let err = call(
            &bus,
            "t",
            Request::GetAccount,
            quick_retry(2),
            Duration::from_secs(20),
        )
        .await
        .unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Unavailable, "still down")
        );
        assert_eq!(server.await.unwrap().len(), 2);
    }

    #[test]
    fn replies_to_other_requests_are_refused() {
        let id = Uuid::now_v7();
        let reply = RpcResponse {
            request_id: Uuid::now_v7(),
            result: Ok(Reply::Workspaces { workspaces: vec![] }),
        };
        let err = read_response(&wire::encode(&reply), id).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal);
        assert!(err.message.contains(&id.to_string()), "{err}");
        let err = read_response(b"not json", id).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal);
        let ok = RpcResponse {
            request_id: id,
            result: Err(Error::unauthenticated("expired")),
        };
        assert_eq!(
            read_response(&wire::encode(&ok), id).unwrap_err().kind,
            ErrorKind::Unauthenticated
        );
    }
}
