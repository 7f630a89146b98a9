//! One broker connection with its channels, and the supervisor that
//! replaces it when it is lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::{AMQPUri, AMQPUserInfo};
use lapin::{Channel, Confirmation, Connection, ConnectionProperties, Consumer, ExchangeKind};
use tokio::sync::{Notify, oneshot, watch};

use super::{BusConfig, Names, QueueKind};
use crate::BusError;

/// The pseudo-queue of RabbitMQ's direct reply-to.
pub(super) const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// How often the supervisor double-checks the connection state, in case a
/// loss was signalled by none of the channels.
const HEALTH_CHECK: Duration = Duration::from_millis(500);

/// How many channels carry subscriptions (at least one).
const SUBSCRIPTION_CHANNELS: usize = 8;

/// Callers waiting for a reply, by correlation id.
type Pending = HashMap<String, oneshot::Sender<Bytes>>;

/// One connection and the channels every part of the bus shares.
pub(crate) struct Link {
    /// Increases with every reconnection; tasks re-attach when it changes.
    pub(crate) generation: u64,
    connection: Connection,
    /// Publishes notifications, in confirm mode.
    pub(super) publisher: Channel,
    /// Publishes requests and consumes their replies (direct reply-to needs
    /// both on one channel), in confirm mode.
    pub(super) rpc: Channel,
    pending: Mutex<Pending>,
    /// Declare, bind and consume subscriber queues. Several, because the
    /// broker delivers through one process per channel: spreading many
    /// subscribers over a few channels lets a large fan-out use more than
    /// one broker core (no gain was measurable on the 2-core dev machine).
    subscriptions: Vec<Channel>,
    /// Poked by any task that sees a channel of this link die.
    broken: Notify,
}

fn amqp(during: &'static str) -> impl FnOnce(lapin::Error) -> BusError {
    move |source| BusError::amqp(during, source)
}

impl Link {
    /// Connects, declares the topology and starts routing replies.
    pub(super) async fn establish(
        config: &BusConfig,
        names: &Names,
        generation: u64,
    ) -> Result<Arc<Link>, BusError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("stacksync-bus {}", config.namespace).into());
        let uri = broker_uri(config)?;
        let connect = Connection::connect_uri(uri, properties);
        // The URL may carry a password: never echo it.
        let connection = match tokio::time::timeout(config.rpc_timeout, connect).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(err)) => {
                return Err(BusError::Unavailable {
                    reason: format!("connecting: {err}"),
                });
            }
            Err(_) => {
                return Err(BusError::Unavailable {
                    reason: "connecting timed out".into(),
                });
            }
        };

        let channels = match open_channels(&connection, config, names).await {
            Ok(channels) => channels,
            Err(err) => {
                // Do not leave a half-set-up connection behind.
                let _ = connection.close(200, "setup failed".into()).await;
                return Err(err);
            }
        };
        let (publisher, rpc, replies, subscriptions) = channels;
        let link = Arc::new(Link {
            generation,
            connection,
            publisher,
            rpc,
            pending: Mutex::default(),
            subscriptions,
            broken: Notify::new(),
        });
        tokio::spawn(route_replies(Arc::downgrade(&link), replies));
        Ok(link)
    }

    /// The depth and consumers of `queue`, by a passive declare on a
    /// channel of its own (a failed one closes its channel, which must not
    /// be one the bus relies on).
    pub(super) async fn queue_stats(&self, queue: &str) -> Result<crate::QueueStats, BusError> {
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(amqp("open a channel to inspect a queue"))?;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        if declared.is_ok() {
            let _ = channel.close(200, "inspected".into()).await;
        }
        let declared = declared.map_err(amqp("inspect the request queue"))?;
        Ok(crate::QueueStats {
            messages: declared.message_count(),
            consumers: declared.consumer_count(),
        })
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        // Every critical section is a single map operation: a poisoned lock
        // still holds a consistent map.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a caller; the guard unregisters it if the call gives up.
    pub(super) fn expect_reply(
        &self,
        correlation_id: String,
    ) -> (PendingReply<'_>, oneshot::Receiver<Bytes>) {
        let (tx, rx) = oneshot::channel();
        self.pending().insert(correlation_id.clone(), tx);
        (
            PendingReply {
                link: self,
                correlation_id,
            },
            rx,
        )
    }

    /// The channel for the subscription in `slot` (any number; spread
    /// round-robin).
    pub(super) fn subscription_channel(&self, slot: usize) -> &Channel {
        &self.subscriptions[slot % self.subscriptions.len()]
    }

    /// A fresh channel on this connection (for a server, which needs its
    /// own prefetch window).
    pub(super) async fn open_channel(&self) -> Result<Channel, BusError> {
        self.connection
            .create_channel()
            .await
            .map_err(amqp("open channel"))
    }

    /// Whether the connection is still up.
    pub(super) fn is_connected(&self) -> bool {
        self.connection.status().connected()
    }

    /// Reports that a channel of this link died, so that the supervisor
    /// reconnects even if the connection itself looks alive.
    pub(super) fn mark_broken(&self) {
        self.broken.notify_one();
    }

    /// Resolves when this link is no longer usable.
    async fn lost(&self) {
        let mut check = tokio::time::interval(HEALTH_CHECK);
        loop {
            tokio::select! {
                _ = self.broken.notified() => return,
                _ = check.tick() => {
                    if !self.connection.status().connected() {
                        return;
                    }
                }
            }
        }
    }
}

/// Removes a caller's entry when its call ends in any way.
pub(super) struct PendingReply<'a> {
    link: &'a Link,
    correlation_id: String,
}

impl Drop for PendingReply<'_> {
    fn drop(&mut self) {
        self.link.pending().remove(&self.correlation_id);
    }
}

/// The link's channels: notification publisher, RPC (with its reply
/// consumer) and subscriptions; declares the topology on the way.
async fn open_channels(
    connection: &Connection,
    config: &BusConfig,
    names: &Names,
) -> Result<(Channel, Channel, Consumer, Vec<Channel>), BusError> {
    let publisher = connection
        .create_channel()
        .await
        .map_err(amqp("open channel"))?;
    // A client's broker user may not declare anything; the server did.
    if config.client.is_none() {
        declare_topology(&publisher, config.queue_kind, names).await?;
    }
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(amqp("confirm.select"))?;

    let rpc = connection
        .create_channel()
        .await
        .map_err(amqp("open channel"))?;
    rpc.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(amqp("confirm.select"))?;
    let replies = rpc
        .basic_consume(
            REPLY_TO.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(amqp("consume replies"))?;

    let mut subscriptions = Vec::with_capacity(SUBSCRIPTION_CHANNELS);
    for _ in 0..SUBSCRIPTION_CHANNELS {
        subscriptions.push(
            connection
                .create_channel()
                .await
                .map_err(amqp("open channel"))?,
        );
    }
    Ok((publisher, rpc, replies, subscriptions))
}

async fn declare_topology(
    channel: &Channel,
    kind: QueueKind,
    names: &Names,
) -> Result<(), BusError> {
    channel
        .exchange_declare(
            names.exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: kind.durable(),
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(amqp("declare notification exchange"))?;
    let mut arguments = FieldTable::default();
    if kind == QueueKind::Quorum {
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    // Never auto-delete or exclusive: requests must wait in the queue while
    // no server runs (a restart, or all instances busy).
    channel
        .queue_declare(
            names.requests.as_str().into(),
            QueueDeclareOptions {
                durable: kind.durable(),
                ..Default::default()
            },
            arguments,
        )
        .await
        .map_err(amqp("declare request queue"))?;
    channel
        .exchange_declare(
            names.request_exchange.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: kind.durable(),
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(amqp("declare request exchange"))?;
    channel
        .queue_bind(
            names.requests.as_str().into(),
            names.request_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(amqp("bind request queue"))?;
    Ok(())
}

/// The broker address with a client's own credentials in place of any the
/// URL carries. Errors never echo the URL (it may hold a password).
fn broker_uri(config: &BusConfig) -> Result<AMQPUri, BusError> {
    let mut uri: AMQPUri = config.url.parse().map_err(|_| {
        BusError::InvalidConfig("the broker URL is not an amqp:// or amqps:// URL".into())
    })?;
    if let Some(login) = &config.client {
        uri.authority.userinfo = AMQPUserInfo {
            username: login.user.clone(),
            password: login.password.clone(),
        };
    }
    Ok(uri)
}

/// Hands each reply to the caller waiting under its correlation id.
async fn route_replies(link: Weak<Link>, mut replies: Consumer) {
    while let Some(Ok(delivery)) = replies.next().await {
        let Some(link) = link.upgrade() else { return };
        let Some(id) = delivery.properties.correlation_id() else {
            tracing::warn!("reply without correlation id dropped");
            continue;
        };
        // A missing entry is a caller that already timed out.
        if let Some(caller) = link.pending().remove(id.as_str()) {
            let _ = caller.send(Bytes::from(delivery.data));
        }
    }
    if let Some(link) = link.upgrade() {
        link.mark_broken();
    }
}

/// Turns a publisher confirm into a result; `mandatory` publishes that came
/// back unroutable are reported as `Unavailable`.
pub(super) fn confirmed(
    result: lapin::Result<Confirmation>,
    what: &'static str,
) -> Result<(), BusError> {
    match result.map_err(amqp(what))? {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_)) => Err(BusError::Unavailable {
            reason: format!("{what}: no queue to route it to"),
        }),
        Confirmation::Nack(_) => Err(BusError::Refused { what }),
    }
}

/// Keeps the bus connected: waits for the current link to be lost, then
/// reconnects with backoff and publishes the new link. Stops when `stop`
/// fires or its sender (owned by the bus) is dropped.
pub(super) async fn supervise(
    config: Arc<BusConfig>,
    names: Arc<Names>,
    links: watch::Sender<Option<Arc<Link>>>,
    mut stop: oneshot::Receiver<()>,
) {
    let Some(mut link) = links.borrow().clone() else {
        return;
    };
    loop {
        tokio::select! {
            _ = link.lost() => {}
            _ = &mut stop => {
                let _ = link.connection.close(200, "bus dropped".into()).await;
                links.send_replace(None);
                return;
            }
        }
        tracing::warn!(namespace = %config.namespace, generation = link.generation, "broker connection lost; reconnecting");
        links.send_replace(None);
        // Callers in flight on the old link get `Disconnected` now rather
        // than waiting for their timeout.
        link.pending().clear();
        let _ = link
            .connection
            .close(320, "replaced after failure".into())
            .await;
        let generation = link.generation + 1;
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(config.reconnect.min)
            .with_max_delay(config.reconnect.max)
            .with_jitter()
            .without_max_times()
            .build();
        link = loop {
            let delay = delays.next().unwrap_or(config.reconnect.max);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = &mut stop => return,
            }
            match Link::establish(&config, &names, generation).await {
                Ok(link) => break link,
                Err(err) => tracing::warn!(%err, ?delay, "reconnection attempt failed"),
            }
        };
        tracing::info!(namespace = %config.namespace, generation, "reconnected to broker");
        links.send_replace(Some(Arc::clone(&link)));
    }
}
