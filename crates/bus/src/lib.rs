//! The StackSync message bus: how clients reach the sync service and how the
//! service pushes changes to devices. Requests go into one queue shared by
//! any number of identical, stateless service instances (fair dispatch,
//! acknowledged only after the reply is published, so a request whose
//! server dies is redelivered to another); notifications are multicast per
//! workspace and per user. Two backends sit behind one [`Bus`]: in-process
//! (the embedded default, also used by tests and simulations) and RabbitMQ.
//!
//! Payloads are opaque bytes: this crate must never know about sync
//! operations, decode payloads, or deduplicate requests (a caller retries a
//! transient failure with the same request id, and the service recognises
//! the repeat). Notifications are hints, not a log: a subscriber that lags
//! or lives through a reconnection is told so and re-reads the change feed.

#![warn(missing_docs)]

mod error;
mod inbox;
mod memory;
mod rabbit;
mod topic;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use error::BusError;
pub use inbox::SubscriptionEvent;
pub use memory::MemoryConfig;
pub use rabbit::{BusConfig, ClientLogin, QueueKind, ReconnectBackoff, Topology};
pub use topic::{ParseTopicError, Topic};

use inbox::Inbox;
use memory::{MemoryBus, MemoryRequests, MemorySettle, MemorySubscription};
use rabbit::{RabbitBus, RabbitMailbox, RabbitRequests, RabbitSettle, RabbitSubscription};

/// The shared request queue, as [`Bus::request_queue`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Requests waiting (ready, not yet handed to a consumer).
    pub messages: u32,
    /// Consumers taking requests (service instances' workers).
    pub consumers: u32,
}

/// Default call timeout of the in-process bus.
const IN_PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

/// A handle on the bus; cheap to clone, shared by callers, servers and
/// subscribers of one process.
///
/// The two backends are an enum rather than a trait object: there are
/// exactly two, the in-process one doubles as the simulation bus, and the
/// callers keep one concrete type.
#[derive(Clone)]
pub struct Bus {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Memory(Arc<MemoryBus>),
    Rabbit(Arc<RabbitBus>),
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Memory(_) => f.write_str("Bus(in-process)"),
            Backend::Rabbit(bus) => {
                write!(f, "Bus(rabbitmq, namespace {:?})", bus.config().namespace)
            }
        }
    }
}

impl Bus {
    /// An in-process bus: everything stays in this process.
    pub fn in_process(config: MemoryConfig) -> Bus {
        Bus {
            backend: Backend::Memory(Arc::new(MemoryBus::new(config))),
        }
    }

    /// Connects to RabbitMQ and declares the namespace's topology. Fails if
    /// the first connection fails; after that, the bus reconnects on its own.
    pub async fn rabbitmq(config: BusConfig) -> Result<Bus, BusError> {
        let bus = RabbitBus::connect(config).await?;
        Ok(Bus {
            backend: Backend::Rabbit(Arc::new(bus)),
        })
    }

    /// The configured default timeout for [`Bus::call`].
    pub fn default_timeout(&self) -> Duration {
        match &self.backend {
            Backend::Memory(_) => IN_PROCESS_TIMEOUT,
            Backend::Rabbit(bus) => bus.config().rpc_timeout,
        }
    }

    /// The shared request queue as the broker reports it (one passive
    /// `queue.declare`, a round trip to the broker): `None` in process,
    /// where there is no broker. For monitoring (queue depth, consumers)
    /// and readiness (the broker answers).
    pub async fn request_queue(&self) -> Result<Option<QueueStats>, BusError> {
        match &self.backend {
            Backend::Memory(_) => Ok(None),
            Backend::Rabbit(bus) => bus.request_queue().await.map(Some),
        }
    }

    /// Sends a request to whichever server takes it and waits for the reply.
    ///
    /// [`BusError::Timeout`] (and the other transient errors) mean the
    /// request may or may not have been processed: retry it with the same
    /// request id inside the payload.
    pub async fn call(&self, payload: Bytes, timeout: Duration) -> Result<Bytes, BusError> {
        match &self.backend {
            Backend::Memory(bus) => bus.call(payload, timeout).await,
            Backend::Rabbit(bus) => bus.call(payload, timeout).await,
        }
    }

    /// Starts taking requests from the shared queue, at most `prefetch` at a
    /// time (unreplied ones count), so that idle servers get the rest. A
    /// `prefetch` of 0 is taken as 1.
    pub async fn serve(&self, prefetch: u16) -> Result<RequestStream, BusError> {
        let inner = match &self.backend {
            Backend::Memory(bus) => Requests::Memory(bus.serve(prefetch)),
            Backend::Rabbit(bus) => Requests::Rabbit(bus.serve(prefetch).await?),
        };
        Ok(RequestStream { inner })
    }

    /// Publishes a notification to every current subscriber of `topic`.
    /// Never waits for subscribers; on RabbitMQ it waits for the broker's
    /// publisher confirm.
    pub async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), BusError> {
        match &self.backend {
            Backend::Memory(bus) => {
                bus.publish(topic, payload);
                Ok(())
            }
            Backend::Rabbit(bus) => bus.publish(topic, payload).await,
        }
    }

    /// Subscribes to `topics`; notifications published after this returns
    /// are delivered.
    pub async fn subscribe(&self, topics: &[Topic]) -> Result<Subscription, BusError> {
        let (control, inbox) = match &self.backend {
            Backend::Memory(bus) => {
                let (subscription, inbox) = bus.subscribe(topics);
                (Control::Memory(subscription), inbox)
            }
            Backend::Rabbit(bus) => {
                let (subscription, inbox) = bus.subscribe(topics).await?;
                (Control::Rabbit(subscription), inbox)
            }
        };
        Ok(Subscription { inbox, control })
    }
}

impl Bus {
    /// Reads notifications from `queue`, a queue the service declared and
    /// bound for this client (RabbitMQ only: the in-process bus has no
    /// client that cannot bind its own topics). Follows reconnections; the
    /// queue keeps what arrives meanwhile, yet a reconnection is still
    /// reported, as a hint to re-read the change feed.
    pub async fn mailbox(&self, queue: &str) -> Result<Mailbox, BusError> {
        match &self.backend {
            Backend::Memory(_) => Err(BusError::InvalidConfig(
                "a mailbox needs the RabbitMQ bus".into(),
            )),
            Backend::Rabbit(bus) => {
                let (mailbox, inbox) = bus.mailbox(queue).await?;
                Ok(Mailbox {
                    inbox,
                    _consumer: mailbox,
                })
            }
        }
    }
}

/// Notifications from a queue bound by someone else (the service binds a
/// client's queue to the topics it may hear).
pub struct Mailbox {
    inbox: Arc<Inbox>,
    _consumer: RabbitMailbox,
}

impl Mailbox {
    /// The next notification or gap signal; `None` when the bus shut down
    /// or the queue was deleted.
    pub async fn recv(&mut self) -> Option<SubscriptionEvent> {
        self.inbox.recv().await
    }
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mailbox")
    }
}

/// One server's share of the request queue.
pub struct RequestStream {
    inner: Requests,
}

enum Requests {
    Memory(MemoryRequests),
    Rabbit(RabbitRequests),
}

impl RequestStream {
    /// The next request, once this server has a free prefetch slot. `None`
    /// when the bus has shut down. Cancel-safe.
    pub async fn next(&mut self) -> Option<IncomingRequest> {
        let (payload, sender, redelivered, settle) = match &mut self.inner {
            Requests::Memory(requests) => {
                let (payload, redelivered, settle) = requests.next().await?;
                (payload, None, redelivered, Settle::Memory(settle))
            }
            Requests::Rabbit(requests) => {
                let (payload, sender, redelivered, settle) = requests.next().await?;
                (payload, sender, redelivered, Settle::Rabbit(settle))
            }
        };
        Some(IncomingRequest {
            payload,
            sender,
            redelivered,
            settle: Some(settle),
        })
    }
}

impl std::fmt::Debug for RequestStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestStream")
    }
}

/// A request taken from the queue. Reply with [`IncomingRequest::reply`];
/// dropping it unanswered puts it back in the queue for any server.
pub struct IncomingRequest {
    payload: Bytes,
    sender: Option<String>,
    redelivered: bool,
    /// `None` once settled, so that `Drop` knows not to requeue.
    settle: Option<Settle>,
}

enum Settle {
    Memory(MemorySettle),
    Rabbit(RabbitSettle),
}

impl IncomingRequest {
    /// The request as the caller sent it.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The broker user that published the request, when it said so: on
    /// RabbitMQ the AMQP `user_id` property, which the broker refuses unless
    /// it names the publishing connection's user. `None` on the in-process
    /// bus and for publishers that set none.
    pub fn sender(&self) -> Option<&str> {
        self.sender.as_deref()
    }

    /// Whether this request was handed out before (to a server that died or
    /// dropped it): it may have been processed already.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// Sends the reply, then acknowledges the request. An error means the
    /// reply may not have reached the caller; the request will then be
    /// redelivered (RabbitMQ) or the caller's retry will come back.
    pub async fn reply(mut self, payload: Bytes) -> Result<(), BusError> {
        match self.settle.take() {
            Some(Settle::Memory(settle)) => {
                settle.reply(payload);
                Ok(())
            }
            Some(Settle::Rabbit(settle)) => settle.reply(payload).await,
            // `settle` is only taken here and in `Drop`, both consuming self.
            None => Ok(()),
        }
    }

    /// Puts the request back for any server without answering it (same as
    /// dropping it; this says so at the call site).
    pub fn requeue(self) {
        drop(self);
    }
}

impl Drop for IncomingRequest {
    fn drop(&mut self) {
        match self.settle.take() {
            Some(Settle::Memory(settle)) => settle.requeue(),
            Some(Settle::Rabbit(settle)) => settle.requeue(),
            None => {}
        }
    }
}

impl std::fmt::Debug for IncomingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingRequest")
            .field("bytes", &self.payload.len())
            .field("sender", &self.sender)
            .field("redelivered", &self.redelivered)
            .finish()
    }
}

/// A device's (or any listener's) subscription to a set of topics, which can
/// change while it lives (a device joins or leaves a shared workspace).
pub struct Subscription {
    inbox: Arc<Inbox>,
    control: Control,
}

enum Control {
    Memory(MemorySubscription),
    Rabbit(RabbitSubscription),
}

impl Subscription {
    /// The next notification or gap signal; `None` when the bus shut down.
    pub async fn recv(&mut self) -> Option<SubscriptionEvent> {
        self.inbox.recv().await
    }

    /// Starts receiving `topic` too; effective when this returns (or, while
    /// the broker is unreachable, on reconnection).
    pub async fn add(&self, topic: Topic) -> Result<(), BusError> {
        match &self.control {
            Control::Memory(subscription) => {
                subscription.add(topic);
                Ok(())
            }
            Control::Rabbit(subscription) => subscription.add(topic).await,
        }
    }

    /// Stops receiving `topic`. Notifications already queued stay queued.
    pub async fn remove(&self, topic: &Topic) -> Result<(), BusError> {
        match &self.control {
            Control::Memory(subscription) => {
                subscription.remove(topic);
                Ok(())
            }
            Control::Rabbit(subscription) => subscription.remove(topic).await,
        }
    }

    /// The topics currently subscribed to, in no particular order.
    pub async fn topics(&self) -> Vec<Topic> {
        match &self.control {
            Control::Memory(subscription) => subscription.topics(),
            Control::Rabbit(subscription) => subscription.topics().await,
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscription")
    }
}
