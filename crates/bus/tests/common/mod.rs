//! Fixtures shared by the bus integration tests.

#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use stacksync_bus::{
    Bus, BusConfig, MemoryConfig, QueueKind, ReconnectBackoff, Subscription, SubscriptionEvent,
};

/// How long any single wait in a test may take before the test fails. Only a
/// deadline, never a measurement.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The AMQP URL of the test broker, or `None` after printing why the test is
/// skipped. Panics when `CI=true`, so that CI never skips silently.
pub fn amqp_url() -> Option<String> {
    match std::env::var("STACKSYNC_TEST_AMQP") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("STACKSYNC_TEST_AMQP is not set but CI=true: RabbitMQ tests must run in CI");
            }
            eprintln!(
                "SKIP: STACKSYNC_TEST_AMQP is not set (e.g. amqp://guest:guest@127.0.0.1:5672/%2f)"
            );
            None
        }
    }
}

/// How to obtain bus handles for one test: in-process handles share one bus,
/// RabbitMQ handles are separate connections on one unique namespace (so
/// they behave like separate processes).
pub enum Fixture {
    Memory(Bus),
    Rabbit { config: BusConfig },
}

impl Fixture {
    pub fn memory(subscriber_buffer: usize) -> Fixture {
        Fixture::Memory(Bus::in_process(MemoryConfig {
            queue_capacity: 1024,
            subscriber_buffer,
        }))
    }

    /// `None` when the test is skipped.
    pub fn rabbit(kind: QueueKind, subscriber_buffer: usize) -> Option<Fixture> {
        let url = amqp_url()?;
        let namespace = format!("stacksync-test.{}", uuid::Uuid::new_v4().simple());
        let mut config = BusConfig::new(url, namespace);
        config.queue_kind = kind;
        config.rpc_timeout = Duration::from_secs(10);
        config.subscriber_buffer = subscriber_buffer;
        config.reconnect = ReconnectBackoff {
            min: Duration::from_millis(50),
            max: Duration::from_secs(1),
        };
        Some(Fixture::Rabbit { config })
    }

    pub fn namespace(&self) -> Option<&str> {
        match self {
            Fixture::Memory(_) => None,
            Fixture::Rabbit { config } => Some(&config.namespace),
        }
    }

    /// A handle, as a separate process would have it.
    pub async fn bus(&self) -> Bus {
        match self {
            Fixture::Memory(bus) => bus.clone(),
            Fixture::Rabbit { config } => Bus::rabbitmq(config.clone())
                .await
                .expect("test broker reachable"),
        }
    }

    /// Deletes the namespace's queue and exchange (they are deliberately not
    /// auto-deleted, so the test removes them itself).
    pub async fn cleanup(self) {
        let Fixture::Rabbit { config } = self else {
            return;
        };
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        let connection = lapin::Connection::connect(&config.url, Default::default())
            .await
            .expect("test broker reachable for cleanup");
        let channel = connection
            .create_channel()
            .await
            .expect("channel for cleanup");
        let ns = &config.namespace;
        channel
            .queue_delete(
                format!("{ns}.requests").into(),
                QueueDeleteOptions::default(),
            )
            .await
            .expect("delete test request queue");
        channel
            .exchange_delete(
                format!("{ns}.notify").into(),
                ExchangeDeleteOptions::default(),
            )
            .await
            .expect("delete test exchange");
        channel
            .exchange_delete(format!("{ns}.rpc").into(), ExchangeDeleteOptions::default())
            .await
            .expect("delete test request exchange");
        let _ = connection.close(200, "cleanup done".into()).await;
    }
}

/// Awaits `future` or fails the test after [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: nothing after {DEADLINE:?}"),
    }
}

/// The next notification message (gap signals are a test failure here).
pub async fn next_message(subscription: &mut Subscription) -> (stacksync_bus::Topic, Bytes) {
    match within("notification", subscription.recv()).await {
        Some(SubscriptionEvent::Message { topic, payload }) => (topic, payload),
        other => panic!("expected a notification, got {other:?}"),
    }
}
