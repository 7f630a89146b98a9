//! Notifications: publishing with confirms, and subscriptions that survive
//! reconnections.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Consumer};
use tokio::sync::{Mutex, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::link::confirmed;
use super::{Link, RabbitBus, next_link};
use crate::inbox::Inbox;
use crate::{BusError, Topic};

impl RabbitBus {
    /// Publishes and waits for the broker's confirm (so a returned `Ok`
    /// means the broker has routed it to every bound subscriber queue).
    pub(crate) async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), BusError> {
        let deadline = Instant::now() + self.config.rpc_timeout;
        let link = self.link_before(deadline).await?;
        let send = async {
            let confirm = link
                .publisher
                .basic_publish(
                    self.names.exchange.as_str().into(),
                    topic.routing_key().into(),
                    BasicPublishOptions::default(),
                    &payload,
                    BasicProperties::default(),
                )
                .await
                .map_err(|e| BusError::amqp("publish notification", e))?;
            confirmed(confirm.await, "notification")
        };
        tokio::time::timeout_at(deadline, send)
            .await
            .map_err(|_| BusError::Timeout {
                after: self.config.rpc_timeout,
            })?
    }

    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        topics: &[Topic],
    ) -> Result<(RabbitSubscription, Arc<Inbox>), BusError> {
        let inbox = Arc::new(Inbox::new(self.config.subscriber_buffer));
        let shared = Arc::new(SubscriptionState {
            exchange: self.names.exchange.as_str().into(),
            slot: self.next_subscription.fetch_add(1, Ordering::Relaxed),
            attached: Mutex::new(Attached {
                topics: topics.iter().copied().collect(),
                current: None,
            }),
        });
        let (ready, attached) = oneshot::channel();
        let task = tokio::spawn(follow_links(
            self.links.clone(),
            Arc::clone(&shared),
            Arc::clone(&inbox),
            ready,
        ));
        let subscription = RabbitSubscription {
            shared,
            task,
            _bus: Arc::clone(self),
        };
        match tokio::time::timeout(self.config.rpc_timeout, attached).await {
            Ok(Ok(Ok(()))) => Ok((subscription, inbox)),
            Ok(Ok(Err(err))) => Err(err),
            Ok(Err(_)) => Err(BusError::Unavailable {
                reason: "bus is shutting down".into(),
            }),
            Err(_) => Err(BusError::Unavailable {
                reason: "could not subscribe in time".into(),
            }),
        }
    }
}

/// What a subscription wants, and where it currently receives it.
struct Attached {
    topics: HashSet<Topic>,
    /// The link and the server-named queue, while attached.
    current: Option<(Arc<Link>, ShortString)>,
}

/// Shared by the subscription handle and its task. The async mutex is held
/// across bind/unbind so that a topic change and a re-attachment after a
/// reconnection cannot interleave and leave a stale binding.
struct SubscriptionState {
    exchange: ShortString,
    /// Which of the link's subscription channels this subscription uses.
    slot: usize,
    attached: Mutex<Attached>,
}

/// A subscriber queue that follows the bus across reconnections.
pub(crate) struct RabbitSubscription {
    shared: Arc<SubscriptionState>,
    task: JoinHandle<()>,
    /// Keeps the connection supervisor alive while subscribed.
    _bus: Arc<RabbitBus>,
}

impl RabbitSubscription {
    /// Binds `topic`; when disconnected, it is bound on re-attachment.
    pub(crate) async fn add(&self, topic: Topic) -> Result<(), BusError> {
        let mut attached = self.shared.attached.lock().await;
        attached.topics.insert(topic);
        if let Some((link, queue)) = &attached.current {
            let bound = link
                .subscription_channel(self.shared.slot)
                .queue_bind(
                    queue.clone(),
                    self.shared.exchange.clone(),
                    topic.routing_key().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await;
            tolerate_disconnect(bound, "bind topic")?;
        }
        Ok(())
    }

    /// Unbinds `topic`.
    pub(crate) async fn remove(&self, topic: &Topic) -> Result<(), BusError> {
        let mut attached = self.shared.attached.lock().await;
        attached.topics.remove(topic);
        if let Some((link, queue)) = &attached.current {
            let unbound = link
                .subscription_channel(self.shared.slot)
                .queue_unbind(
                    queue.clone(),
                    self.shared.exchange.clone(),
                    topic.routing_key().into(),
                    FieldTable::default(),
                )
                .await;
            tolerate_disconnect(unbound, "unbind topic")?;
        }
        Ok(())
    }

    pub(crate) async fn topics(&self) -> Vec<Topic> {
        self.shared
            .attached
            .lock()
            .await
            .topics
            .iter()
            .copied()
            .collect()
    }
}

/// A topic change that fails because the connection dropped is not an
/// error: the topic set is re-applied when the subscription re-attaches.
fn tolerate_disconnect(result: lapin::Result<()>, during: &'static str) -> Result<(), BusError> {
    match result.map_err(|e| BusError::amqp(during, e)) {
        Err(BusError::Disconnected { .. }) | Ok(()) => Ok(()),
        Err(err) => Err(err),
    }
}

impl Drop for RabbitSubscription {
    fn drop(&mut self) {
        self.task.abort();
        // The queue is exclusive to the connection, so it would go when the
        // connection does; delete it now so the broker stops routing to it.
        let shared = Arc::clone(&self.shared);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let current = shared.attached.lock().await.current.take();
                if let Some((link, queue)) = current {
                    let _ = link
                        .subscription_channel(shared.slot)
                        .queue_delete(queue, QueueDeleteOptions::default())
                        .await;
                }
            });
        }
    }
}

/// Attaches to every new link and forwards deliveries into the inbox.
async fn follow_links(
    mut links: watch::Receiver<Option<Arc<Link>>>,
    shared: Arc<SubscriptionState>,
    inbox: Arc<Inbox>,
    ready: oneshot::Sender<Result<(), BusError>>,
) {
    let mut ready = Some(ready);
    let mut seen = None;
    while let Some(link) = next_link(&mut links, seen).await {
        seen = Some(link.generation);
        let consumer = match attach(&shared, &link).await {
            Ok(consumer) => consumer,
            Err(err) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(err));
                    return;
                }
                tracing::warn!(%err, "could not re-attach subscription; forcing a reconnection");
                link.mark_broken();
                continue;
            }
        };
        match ready.take() {
            Some(ready) => {
                let _ = ready.send(Ok(()));
            }
            // Whatever was published while detached is lost: tell the
            // subscriber to re-read its change feed.
            None => inbox.signal_reconnected(),
        }
        forward(consumer, &inbox).await;
        shared.attached.lock().await.current = None;
        link.mark_broken();
    }
    inbox.close();
}

async fn attach(shared: &SubscriptionState, link: &Arc<Link>) -> Result<Consumer, BusError> {
    let amqp = |during| move |e| BusError::amqp(during, e);
    let mut attached = shared.attached.lock().await;
    let channel = link.subscription_channel(shared.slot);
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(amqp("declare subscriber queue"))?;
    let name = queue.name().clone();
    for topic in &attached.topics {
        channel
            .queue_bind(
                name.clone(),
                shared.exchange.clone(),
                topic.routing_key().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp("bind topic"))?;
    }
    // No acks: a notification is a hint; losses are reported as gaps and
    // repaired by re-reading the change feed.
    let consumer = channel
        .basic_consume(
            name.clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(amqp("consume subscriber queue"))?;
    attached.current = Some((Arc::clone(link), name));
    Ok(consumer)
}

async fn forward(mut consumer: Consumer, inbox: &Inbox) {
    while let Some(Ok(delivery)) = consumer.next().await {
        match Topic::from_routing_key(delivery.routing_key.as_str()) {
            Some(topic) => inbox.push(topic, Bytes::from(delivery.data)),
            None => {
                tracing::warn!(key = %delivery.routing_key, "notification with foreign routing key dropped")
            }
        }
    }
}
