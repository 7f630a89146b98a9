//! A client's notification queue, declared and bound by the service: the
//! client only consumes it (its broker user may read that one queue and
//! declare or bind nothing).

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::{Link, RabbitBus, next_link};
use crate::inbox::Inbox;
use crate::{BusError, Topic};

impl RabbitBus {
    pub(crate) async fn mailbox(
        self: &Arc<Self>,
        queue: &str,
    ) -> Result<(RabbitMailbox, Arc<Inbox>), BusError> {
        let inbox = Arc::new(Inbox::new(self.config.subscriber_buffer));
        let (ready, started) = oneshot::channel();
        let task = tokio::spawn(follow_links(
            self.links.clone(),
            queue.to_owned(),
            Arc::clone(&inbox),
            ready,
        ));
        let mailbox = RabbitMailbox {
            task,
            _bus: Arc::clone(self),
        };
        match tokio::time::timeout(self.config.rpc_timeout, started).await {
            Ok(Ok(Ok(()))) => Ok((mailbox, inbox)),
            Ok(Ok(Err(err))) => Err(err),
            Ok(Err(_)) => Err(BusError::Unavailable {
                reason: "bus is shutting down".into(),
            }),
            Err(_) => Err(BusError::Unavailable {
                reason: "could not start consuming the notification queue in time".into(),
            }),
        }
    }
}

/// The consuming task of a mailbox; stops with it.
pub(crate) struct RabbitMailbox {
    task: JoinHandle<()>,
    /// Keeps the connection supervisor alive while consuming.
    _bus: Arc<RabbitBus>,
}

impl Drop for RabbitMailbox {
    fn drop(&mut self) {
        // Dropping the consumer's channel with the task cancels the
        // consumer; the queue itself belongs to the service.
        self.task.abort();
    }
}

/// Consumes `queue` on every new link. Ends (closing the inbox) when the
/// queue cannot be consumed on a live connection: it was deleted, or the
/// session's broker user lost its permissions.
async fn follow_links(
    mut links: watch::Receiver<Option<Arc<Link>>>,
    queue: String,
    inbox: Arc<Inbox>,
    ready: oneshot::Sender<Result<(), BusError>>,
) {
    let mut ready = Some(ready);
    let mut seen = None;
    while let Some(link) = next_link(&mut links, seen).await {
        seen = Some(link.generation);
        let (channel, consumer) = match consume(&link, &queue).await {
            Ok(started) => started,
            Err(err) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(err));
                } else {
                    tracing::warn!(%err, "could not resume consuming the notification queue");
                }
                break;
            }
        };
        match ready.take() {
            Some(ready) => {
                let _ = ready.send(Ok(()));
            }
            None => inbox.signal_reconnected(),
        }
        forward(consumer, &inbox).await;
        let _ = channel.close(200, "mailbox consumer ended".into()).await;
        if link.is_connected() {
            // The broker cancelled the consumer on a live connection: the
            // queue is gone. Nothing will come back; say so.
            break;
        }
    }
    inbox.close();
}

/// Its own channel: a refused consume closes the channel, which must not
/// take other subscriptions down with it.
async fn consume(link: &Link, queue: &str) -> Result<(Channel, Consumer), BusError> {
    let channel = link.open_channel().await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            // No acks: a notification is a hint; losses are repaired by
            // re-reading the change feed.
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| BusError::amqp("consume notification queue", e))?;
    Ok((channel, consumer))
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
