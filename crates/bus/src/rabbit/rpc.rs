//! Request/reply over the shared request queue.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Acker, BasicProperties, Channel, Consumer};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::link::{REPLY_TO, confirmed};

/// What every direct reply-to address starts with (the broker appends the
/// caller's channel).
const DIRECT_REPLY_PREFIX: &str = "amq.rabbitmq.reply-to.";
use super::{Link, Names, RabbitBus, next_link};
use crate::BusError;

impl RabbitBus {
    pub(crate) async fn call(&self, payload: Bytes, timeout: Duration) -> Result<Bytes, BusError> {
        let deadline = Instant::now() + timeout;
        let link = self.link_before(deadline).await?;
        let correlation_id = uuid::Uuid::new_v4().simple().to_string();
        let (_registered, reply) = link.expect_reply(correlation_id.clone());
        let mut properties = BasicProperties::default()
            .with_correlation_id(correlation_id.into())
            .with_reply_to(REPLY_TO.into())
            .with_delivery_mode(self.config.queue_kind.delivery_mode());
        if let Some(login) = &self.config.client {
            // The broker refuses a `user_id` that is not the connection's
            // user, so the service can trust it as the sender.
            properties = properties.with_user_id(login.user.as_str().into());
        }
        let exchange = async {
            let confirm = link
                .rpc
                .basic_publish(
                    self.names.request_exchange.as_str().into(),
                    "".into(),
                    // Mandatory: if the request queue vanished, say so now
                    // instead of timing out.
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &payload,
                    properties,
                )
                .await
                .map_err(|e| BusError::amqp("publish request", e))?;
            // The reply proves the request arrived, so the confirm only
            // matters if it is negative: wait for whichever comes first
            // rather than adding the (fsync-bound, on durable queues)
            // confirm latency to every call.
            let mut reply = std::pin::pin!(reply);
            tokio::select! {
                answer = &mut reply => {
                    return answer.map_err(|_| BusError::Disconnected { during: "call" });
                }
                confirm = confirm => confirmed(confirm, "request")?,
            }
            reply
                .await
                .map_err(|_| BusError::Disconnected { during: "call" })
        };
        tokio::time::timeout_at(deadline, exchange)
            .await
            .map_err(|_| BusError::Timeout { after: timeout })?
    }

    pub(crate) async fn serve(self: &Arc<Self>, prefetch: u16) -> Result<RabbitRequests, BusError> {
        let prefetch = prefetch.max(1);
        // The consumer never has more than `prefetch` unacknowledged
        // deliveries, so this buffer never makes the pump wait for long.
        let (requests, rx) = mpsc::channel(usize::from(prefetch));
        let (ready, started) = oneshot::channel();
        let active = ActiveConsumer::default();
        let task = tokio::spawn(pump_requests(
            self.links.clone(),
            Arc::clone(&self.names),
            prefetch,
            requests,
            ready,
            Arc::clone(&active),
        ));
        let requests = RabbitRequests {
            rx,
            task,
            active,
            _bus: Arc::clone(self),
        };
        match tokio::time::timeout(self.config.rpc_timeout, started).await {
            Ok(Ok(Ok(()))) => Ok(requests),
            Ok(Ok(Err(err))) => Err(err),
            Ok(Err(_)) => Err(BusError::Unavailable {
                reason: "bus is shutting down".into(),
            }),
            Err(_) => Err(BusError::Unavailable {
                reason: "could not start consuming in time".into(),
            }),
        }
    }
}

/// A request as it leaves the pump: payload, sender (the broker-checked
/// AMQP `user_id`, if the publisher set one), redelivered flag, settlement.
type Parts = (Bytes, Option<String>, bool, RabbitSettle);

/// One server's stream of requests; keeps consuming across reconnections.
pub(crate) struct RabbitRequests {
    rx: mpsc::Receiver<Parts>,
    task: JoinHandle<()>,
    active: ActiveConsumer,
    /// Keeps the connection supervisor alive while this server runs.
    _bus: Arc<RabbitBus>,
}

impl RabbitRequests {
    pub(crate) async fn next(&mut self) -> Option<Parts> {
        self.rx.recv().await
    }
}

impl Drop for RabbitRequests {
    fn drop(&mut self) {
        // Requests still buffered are dropped with the receiver, which nacks
        // them back to the queue; the channel closes with the last of them.
        self.task.abort();
        // Cancel the consumer now, so that the broker stops handing this
        // server new requests while its last replies are still going out.
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((channel, tag)) = active
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = channel
                    .basic_cancel(tag, BasicCancelOptions::default())
                    .await;
            });
        }
    }
}

/// The channel and tag of a server's current consumer, to cancel it when the
/// server stops.
type ActiveConsumer = Arc<std::sync::Mutex<Option<(Channel, ShortString)>>>;

/// A server channel that closes once the consumer and every request taken
/// from it are gone (closing it returns anything unacknowledged).
struct ServerChannel(Channel);

impl Drop for ServerChannel {
    fn drop(&mut self) {
        let channel = self.0.clone();
        if channel.status().connected()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = channel.close(200, "server stopped".into()).await;
            });
        }
    }
}

/// Feeds deliveries from the request queue into `requests`, re-attaching to
/// every new link, until the receiving side is dropped or the bus stops.
async fn pump_requests(
    mut links: watch::Receiver<Option<Arc<Link>>>,
    names: Arc<Names>,
    prefetch: u16,
    requests: mpsc::Sender<Parts>,
    ready: oneshot::Sender<Result<(), BusError>>,
    active: ActiveConsumer,
) {
    let mut ready = Some(ready);
    let mut seen = None;
    while let Some(link) = next_link(&mut links, seen).await {
        seen = Some(link.generation);
        let (channel, consumer) = match start_consuming(&link, &names, prefetch).await {
            Ok(started) => started,
            Err(err) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(err));
                    return;
                }
                tracing::warn!(%err, "could not resume serving; forcing a reconnection");
                link.mark_broken();
                continue;
            }
        };
        *active.lock().unwrap_or_else(|p| p.into_inner()) = Some((channel.clone(), consumer.tag()));
        if let Some(ready) = ready.take() {
            let _ = ready.send(Ok(()));
        }
        if forward(consumer, Arc::new(ServerChannel(channel)), &requests)
            .await
            .is_err()
        {
            return;
        }
        // The consumer ended: the channel or the connection died.
        link.mark_broken();
    }
}

async fn start_consuming(
    link: &Link,
    names: &Names,
    prefetch: u16,
) -> Result<(Channel, Consumer), BusError> {
    let amqp = |during| move |e| BusError::amqp(during, e);
    let channel = link.open_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(amqp("basic.qos"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(amqp("confirm.select"))?;
    let consumer = channel
        .basic_consume(
            names.requests.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(amqp("consume requests"))?;
    Ok((channel, consumer))
}

/// Err when the server side dropped its stream.
async fn forward(
    mut consumer: Consumer,
    channel: Arc<ServerChannel>,
    requests: &mpsc::Sender<Parts>,
) -> Result<(), ()> {
    let runtime = tokio::runtime::Handle::current();
    while let Some(Ok(delivery)) = consumer.next().await {
        let settle = RabbitSettle {
            channel: Arc::clone(&channel),
            acker: delivery.acker,
            reply_to: delivery.properties.reply_to().clone(),
            correlation_id: delivery.properties.correlation_id().clone(),
            runtime: runtime.clone(),
        };
        let sender = delivery
            .properties
            .user_id()
            .as_ref()
            .map(|u| u.to_string());
        let parts = (
            Bytes::from(delivery.data),
            sender,
            delivery.redelivered,
            settle,
        );
        requests.send(parts).await.map_err(|_| ())?;
    }
    Ok(())
}

/// An unacknowledged delivery and where its reply goes.
pub(crate) struct RabbitSettle {
    channel: Arc<ServerChannel>,
    acker: Acker,
    reply_to: Option<ShortString>,
    correlation_id: Option<ShortString>,
    /// For the nack sent from `Drop`, which may run outside async context.
    runtime: tokio::runtime::Handle,
}

impl RabbitSettle {
    /// Publishes the reply and waits for the broker's confirm, and only then
    /// acknowledges the request: a crash in between means redelivery, never
    /// a lost request.
    pub(crate) async fn reply(self, payload: Bytes) -> Result<(), BusError> {
        // Replies go out on the default exchange with the reply-to as
        // routing key: anything but a direct reply-to address would let a
        // caller aim the service's reply at any queue (another client's
        // notification queue, the request queue itself).
        let reply_to = self
            .reply_to
            .clone()
            .filter(|to| to.as_str().starts_with(DIRECT_REPLY_PREFIX));
        if self.reply_to.is_some() && reply_to.is_none() {
            tracing::warn!(
                "request with a reply-to that is not a direct reply-to address; acknowledged without a reply"
            );
        }
        if let Some(reply_to) = reply_to {
            let mut properties = BasicProperties::default();
            if let Some(id) = self.correlation_id.clone() {
                properties = properties.with_correlation_id(id);
            }
            let channel = &self.channel.0;
            let published = async {
                let confirm = channel
                    .basic_publish(
                        "".into(),
                        reply_to,
                        BasicPublishOptions::default(),
                        &payload,
                        properties,
                    )
                    .await
                    .map_err(|e| BusError::amqp("publish reply", e))?;
                confirmed(confirm.await, "reply")
            };
            if let Err(err) = published.await {
                self.requeue();
                return Err(err);
            }
        } else {
            tracing::warn!("request without reply-to address; acknowledging without a reply");
        }
        self.acker
            .ack(Default::default())
            .await
            .map_err(|e| BusError::amqp("acknowledge request", e))?;
        Ok(())
    }

    /// Returns the request to the queue for any server (redelivered).
    pub(crate) fn requeue(self) {
        let acker = self.acker;
        let _channel = self.channel;
        self.runtime.spawn(async move {
            let requeue = BasicNackOptions {
                requeue: true,
                multiple: false,
            };
            // A dead channel already returned the request to the queue.
            let _ = acker.nack(requeue).await;
            drop(_channel);
        });
    }
}
