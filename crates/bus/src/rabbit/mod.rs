//! The RabbitMQ backend.
//!
//! Topology, all names prefixed by the configured namespace:
//! - `<ns>.requests`: one request queue shared by every sync-service
//!   instance (fair dispatch through `basic.qos(prefetch)`, manual acks after
//!   the reply is published, so a dead instance's requests are redelivered).
//! - `<ns>.rpc`: the fanout exchange requests are published to, bound to
//!   the request queue by the server. Clients publish here and never to the
//!   default exchange, so that a client's broker user can be allowed to
//!   write to this one exchange and nowhere else (the default exchange
//!   would let it publish into any queue, including another client's
//!   notification queue).
//! - `<ns>.notify`: one direct exchange for all notifications, routing key
//!   `ws.<workspace>` or `user.<user>`; each subscriber owns an exclusive,
//!   auto-delete, server-named queue bound to its keys. This gives the same
//!   delivery as the original's one fanout exchange per workspace, with a
//!   single exchange to declare instead of one per workspace, and joining a
//!   workspace is one `queue.bind`.
//! - replies use direct reply-to (`amq.rabbitmq.reply-to`): no reply queue
//!   to declare or clean up per client, and a reply to a client that went
//!   away is dropped by the broker, which is what we want (the caller
//!   already got a transient error and retries with the same request id).
//!
//! A client (a [`BusConfig`] with [`ClientLogin`]) declares nothing: its
//! broker user may not. It publishes requests with the AMQP `user_id`
//! property set to its broker user (which the broker checks), and reads
//! notifications from a queue the service declared and bound for it
//! ([`crate::Mailbox`]).
//!
//! One [`Link`] is one connection with its channels. A supervisor task
//! replaces it with a fresh one (exponential backoff with jitter) whenever
//! it is lost; serving and subscription tasks watch for the new link and
//! re-attach, and calls in flight on the old link fail as `Disconnected`.

mod link;
mod mailbox;
mod notify;
mod rpc;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::BusError;
pub(crate) use link::Link;
pub(crate) use mailbox::RabbitMailbox;
pub(crate) use notify::RabbitSubscription;
pub(crate) use rpc::{RabbitRequests, RabbitSettle};

/// How the request queue (and the notification exchange) survive a broker
/// restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueKind {
    /// Non-durable classic queue and exchange: fastest, lost on broker
    /// restart (along with queued requests, which callers then retry).
    Classic,
    /// Durable classic queue, persistent requests.
    #[default]
    Durable,
    /// Quorum queue (replicated over a RabbitMQ cluster), persistent
    /// requests.
    Quorum,
}

impl QueueKind {
    fn durable(self) -> bool {
        !matches!(self, QueueKind::Classic)
    }

    /// AMQP delivery mode for requests: 2 (persistent) on durable queues.
    fn delivery_mode(self) -> u8 {
        if self.durable() { 2 } else { 1 }
    }
}

/// Delays between reconnection attempts: exponential from `min` to `max`,
/// with jitter so that many instances do not reconnect in lockstep after a
/// broker restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectBackoff {
    /// The first delay.
    pub min: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for ReconnectBackoff {
    fn default() -> Self {
        ReconnectBackoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

/// Configuration of the RabbitMQ backend.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// AMQP URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: String,
    /// Prefix of every exchange and queue name, so that several deployments
    /// (or tests) share one broker without seeing each other. Letters,
    /// digits, `.`, `-` and `_` only.
    pub namespace: String,
    /// Durability of the request queue.
    pub queue_kind: QueueKind,
    /// Default timeout of a call, and the longest a publish, subscribe or
    /// serve waits for the broker to be reachable.
    pub rpc_timeout: Duration,
    /// Delays between reconnection attempts.
    pub reconnect: ReconnectBackoff,
    /// How many notifications a subscriber may have unread before further
    /// ones are dropped (and it is told it lagged).
    pub subscriber_buffer: usize,
    /// Set on a client: the broker user the service issued to its session.
    /// The bus then logs in as this user (whatever the URL says), declares
    /// nothing, and stamps every request with the user as AMQP `user_id`.
    /// `None` on a server, which declares the topology.
    pub client: Option<ClientLogin>,
}

/// A client's own broker user, issued by the service for one session.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientLogin {
    /// The broker user name.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for ClientLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password is a secret: never in logs.
        f.debug_struct("ClientLogin")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The names of a namespace's exchanges and queue, for whoever grants
/// broker permissions on them (the service's broker administration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The shared request queue (`<ns>.requests`).
    pub requests: String,
    /// The exchange requests are published to (`<ns>.rpc`, fanout).
    pub request_exchange: String,
    /// The notification exchange (`<ns>.notify`, direct).
    pub notify_exchange: String,
}

impl Topology {
    /// The names used under `namespace`.
    pub fn for_namespace(namespace: &str) -> Topology {
        Topology {
            requests: format!("{namespace}.requests"),
            request_exchange: format!("{namespace}.rpc"),
            notify_exchange: format!("{namespace}.notify"),
        }
    }
}

impl BusConfig {
    /// A configuration with defaults: durable queue, 30 s timeout, 256
    /// buffered notifications per subscriber.
    pub fn new(url: impl Into<String>, namespace: impl Into<String>) -> BusConfig {
        BusConfig {
            url: url.into(),
            namespace: namespace.into(),
            queue_kind: QueueKind::default(),
            rpc_timeout: Duration::from_secs(30),
            reconnect: ReconnectBackoff::default(),
            subscriber_buffer: 256,
            client: None,
        }
    }

    fn validate(&self) -> Result<(), BusError> {
        let ns = &self.namespace;
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if ns.is_empty() || ns.len() > 200 || !ns.chars().all(allowed) {
            return Err(BusError::InvalidConfig(format!(
                "namespace {ns:?} must be 1-200 characters of [A-Za-z0-9._-]"
            )));
        }
        if self.rpc_timeout.is_zero() {
            return Err(BusError::InvalidConfig(
                "rpc_timeout must not be zero".into(),
            ));
        }
        Ok(())
    }
}

/// Names derived from the namespace.
#[derive(Debug)]
pub(crate) struct Names {
    exchange: String,
    requests: String,
    request_exchange: String,
}

/// A connected RabbitMQ bus. Dropping the last handle stops the supervisor,
/// which closes the connection.
pub(crate) struct RabbitBus {
    config: Arc<BusConfig>,
    names: Arc<Names>,
    links: watch::Receiver<Option<Arc<Link>>>,
    /// Spreads subscriptions over the link's subscription channels.
    next_subscription: AtomicUsize,
    /// Dropped with the bus; the supervisor takes that as the order to stop.
    _shutdown: oneshot::Sender<()>,
}

impl RabbitBus {
    /// Connects once (so that a wrong URL or credentials fail here, loudly)
    /// and starts the supervisor that keeps the connection up afterwards.
    pub(crate) async fn connect(config: BusConfig) -> Result<RabbitBus, BusError> {
        config.validate()?;
        let config = Arc::new(config);
        let topology = Topology::for_namespace(&config.namespace);
        let names = Arc::new(Names {
            exchange: topology.notify_exchange,
            requests: topology.requests,
            request_exchange: topology.request_exchange,
        });
        let first = Link::establish(&config, &names, 1).await?;
        let (links_tx, links) = watch::channel(Some(first));
        let (shutdown, stop) = oneshot::channel();
        tokio::spawn(link::supervise(
            Arc::clone(&config),
            Arc::clone(&names),
            links_tx,
            stop,
        ));
        Ok(RabbitBus {
            config,
            names,
            links,
            next_subscription: AtomicUsize::new(0),
            _shutdown: shutdown,
        })
    }

    pub(crate) fn config(&self) -> &BusConfig {
        &self.config
    }

    /// The shared request queue's depth and consumers, now: without a
    /// connection at this moment, unavailable (no waiting for one).
    pub(crate) async fn request_queue(&self) -> Result<crate::QueueStats, BusError> {
        let link = self.link_before(Instant::now()).await?;
        link.queue_stats(&self.names.requests).await
    }

    /// The current link, waiting for a reconnection until `deadline`.
    async fn link_before(&self, deadline: Instant) -> Result<Arc<Link>, BusError> {
        let mut links = self.links.clone();
        let wait = links.wait_for(Option::is_some);
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(Ok(link)) => link.clone().ok_or(BusError::Unavailable {
                reason: "no connection to the broker".into(),
            }),
            Ok(Err(_)) => Err(BusError::Unavailable {
                reason: "bus is shutting down".into(),
            }),
            Err(_) => Err(BusError::Unavailable {
                reason: "not reconnected to the broker in time".into(),
            }),
        }
    }
}

/// Waits for a link newer than `after` (any link if `None`); `None` when the
/// bus has shut down.
async fn next_link(
    links: &mut watch::Receiver<Option<Arc<Link>>>,
    after: Option<u64>,
) -> Option<Arc<Link>> {
    let newer = |link: &Option<Arc<Link>>| {
        link.as_ref()
            .is_some_and(|l| after.is_none_or(|generation| l.generation > generation))
    };
    let current = links.wait_for(newer).await.ok()?;
    current.clone()
}
