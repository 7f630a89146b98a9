//! Where the RabbitMQ backend sends replies, and who it says sent a request
//! (RabbitMQ only: the in-process bus has neither reply addresses nor
//! broker users).

mod common;

use bytes::Bytes;
use common::{Fixture, within};
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Connection};
use stacksync_bus::{QueueKind, Topology};

/// A caller may name any queue as its reply-to; the service's reply would
/// then land in someone else's queue (another client's notifications).
/// Only direct reply-to addresses get replies. The broker-checked
/// `user_id` of a request is reported as its sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_go_only_to_direct_reply_to_and_senders_are_reported() {
    let Some(fixture) = Fixture::rabbit(QueueKind::Classic, 16) else {
        return;
    };
    let Fixture::Rabbit { config } = &fixture else {
        unreachable!("a RabbitMQ fixture");
    };
    let topology = Topology::for_namespace(&config.namespace);
    let server = fixture.bus().await;
    // One at a time, so the first request is settled before the second.
    let mut requests = server.serve(1).await.expect("the server consumes");

    let uri: AMQPUri = config.url.parse().expect("an AMQP URL");
    let me = uri.authority.userinfo.username.clone();
    let caller = Connection::connect(&config.url, Default::default())
        .await
        .expect("the broker is reachable");
    let channel = caller.create_channel().await.expect("a channel");
    let victim = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("a queue to aim replies at");
    let mut replies = channel
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("direct reply-to");
    let publish = |payload: &'static [u8], properties: BasicProperties| {
        let channel = channel.clone();
        let exchange = topology.request_exchange.clone();
        async move {
            channel
                .basic_publish(
                    exchange.as_str().into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    payload,
                    properties,
                )
                .await
                .expect("published")
                .await
                .expect("no publishing error");
        }
    };
    publish(
        b"aimed",
        BasicProperties::default()
            .with_reply_to(victim.name().clone())
            .with_correlation_id("1".into()),
    )
    .await;
    publish(
        b"honest",
        BasicProperties::default()
            .with_reply_to("amq.rabbitmq.reply-to".into())
            .with_correlation_id("2".into())
            .with_user_id(me.as_str().into()),
    )
    .await;

    let aimed = within("the first request", requests.next())
        .await
        .expect("a request");
    assert_eq!(aimed.payload(), &Bytes::from_static(b"aimed"));
    assert_eq!(aimed.sender(), None);
    // Returns once the broker confirmed whatever was published.
    aimed
        .reply(Bytes::from_static(b"reply to aimed"))
        .await
        .expect("settled");
    let honest = within("the second request", requests.next())
        .await
        .expect("a request");
    assert_eq!(honest.sender(), Some(me.as_str()));
    honest
        .reply(Bytes::from_static(b"reply to honest"))
        .await
        .expect("replied");
    let reply = within("the honest reply", replies.next())
        .await
        .expect("the consumer is open")
        .expect("a reply");
    assert_eq!(reply.data, b"reply to honest");

    let victim = channel
        .queue_declare(
            victim.name().clone(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the queue is still there");
    assert_eq!(
        victim.message_count(),
        0,
        "a reply was aimed at a foreign queue"
    );
    let _ = caller.close(200, "done".into()).await;
    drop(requests);
    fixture.cleanup().await;
}
