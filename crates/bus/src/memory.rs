//! The in-process backend: the same semantics as RabbitMQ without a broker,
//! for the embedded single-process deployment and for tests.
//!
//! Requests go into one bounded queue shared by every [`MemoryRequests`]
//! (like the shared RabbitMQ queue); each server takes at most `prefetch`
//! requests at a time, and a request dropped without a reply goes back to
//! the front of the queue marked as redelivered. Notifications go straight
//! into each subscriber's bounded [`Inbox`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};

use crate::inbox::Inbox;
use crate::{BusError, Topic};

/// Sizes of the in-process backend's buffers.
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    /// How many requests may wait for a server before callers wait too.
    pub queue_capacity: usize,
    /// How many notifications a subscriber may have unread before further
    /// ones are dropped (and it is told it lagged).
    pub subscriber_buffer: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            queue_capacity: 1024,
            subscriber_buffer: 256,
        }
    }
}

/// Locks a mutex whose critical sections never leave state half-updated,
/// so a poisoned lock is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A request waiting in the queue, with the way back to its caller.
struct Envelope {
    payload: Bytes,
    reply: oneshot::Sender<Bytes>,
    redelivered: bool,
}

/// The shared request queue. Producers are bounded by `space`; requeued
/// requests bypass the bound (they were already admitted, and at most
/// servers x prefetch of them exist).
struct RequestQueue {
    items: Mutex<VecDeque<Envelope>>,
    available: Notify,
    space: Semaphore,
}

impl RequestQueue {
    async fn push(&self, envelope: Envelope) {
        // The permit is given back when a server takes the request. The
        // semaphore is never closed, so `acquire` cannot fail.
        if let Ok(permit) = self.space.acquire().await {
            permit.forget();
        }
        lock(&self.items).push_back(envelope);
        self.available.notify_one();
    }

    fn requeue(&self, mut envelope: Envelope) {
        envelope.redelivered = true;
        lock(&self.items).push_front(envelope);
        self.available.notify_one();
    }

    async fn pop(&self) -> Envelope {
        loop {
            let notified = self.available.notified();
            tokio::pin!(notified);
            // Register before looking, so a push after the look wakes us.
            notified.as_mut().enable();
            if let Some(envelope) = lock(&self.items).pop_front() {
                self.space.add_permits(1);
                return envelope;
            }
            notified.await;
        }
    }
}

/// Subscribers per topic; a subscriber is keyed by a process-unique number
/// so that it can leave every topic when dropped.
type TopicTable = HashMap<Topic, HashMap<u64, Arc<Inbox>>>;

/// The in-process bus. Cheap to share behind an `Arc`.
pub(crate) struct MemoryBus {
    config: MemoryConfig,
    requests: Arc<RequestQueue>,
    topics: Arc<Mutex<TopicTable>>,
    next_subscriber: AtomicU64,
}

impl MemoryBus {
    pub(crate) fn new(config: MemoryConfig) -> MemoryBus {
        let requests = RequestQueue {
            items: Mutex::default(),
            available: Notify::new(),
            space: Semaphore::new(config.queue_capacity.max(1)),
        };
        MemoryBus {
            config,
            requests: Arc::new(requests),
            topics: Arc::default(),
            next_subscriber: AtomicU64::new(0),
        }
    }

    pub(crate) async fn call(&self, payload: Bytes, timeout: Duration) -> Result<Bytes, BusError> {
        let (reply, answer) = oneshot::channel();
        let envelope = Envelope {
            payload,
            reply,
            redelivered: false,
        };
        let exchange = async {
            self.requests.push(envelope).await;
            answer.await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(bytes)) => Ok(bytes),
            // The reply sender only disappears without a reply when the
            // request itself is dropped, which the queue never does; report
            // it as a transient failure all the same.
            Ok(Err(_)) => Err(BusError::Disconnected { during: "call" }),
            Err(_) => Err(BusError::Timeout { after: timeout }),
        }
    }

    pub(crate) fn serve(&self, prefetch: u16) -> MemoryRequests {
        MemoryRequests {
            queue: Arc::clone(&self.requests),
            permits: Arc::new(Semaphore::new(usize::from(prefetch.max(1)))),
        }
    }

    pub(crate) fn publish(&self, topic: &Topic, payload: Bytes) {
        let table = lock(&self.topics);
        if let Some(subscribers) = table.get(topic) {
            for inbox in subscribers.values() {
                inbox.push(*topic, payload.clone());
            }
        }
    }

    pub(crate) fn subscribe(&self, topics: &[Topic]) -> (MemorySubscription, Arc<Inbox>) {
        let inbox = Arc::new(Inbox::new(self.config.subscriber_buffer));
        let subscription = MemorySubscription {
            id: self.next_subscriber.fetch_add(1, Ordering::Relaxed),
            inbox: Arc::clone(&inbox),
            table: Arc::clone(&self.topics),
            topics: Mutex::default(),
        };
        for topic in topics {
            subscription.add(*topic);
        }
        (subscription, inbox)
    }
}

/// One server's view of the shared request queue.
pub(crate) struct MemoryRequests {
    queue: Arc<RequestQueue>,
    permits: Arc<Semaphore>,
}

impl MemoryRequests {
    /// Waits for a free prefetch slot, then for a request. Cancel-safe: a
    /// request is only taken from the queue in the final, synchronous step.
    pub(crate) async fn next(&mut self) -> Option<(Bytes, bool, MemorySettle)> {
        let permit = Arc::clone(&self.permits).acquire_owned().await.ok()?;
        let envelope = self.queue.pop().await;
        let head = (envelope.payload.clone(), envelope.redelivered);
        let settle = MemorySettle {
            envelope,
            queue: Arc::clone(&self.queue),
            _slot: permit,
        };
        Some((head.0, head.1, settle))
    }
}

/// An unanswered in-process request: answer it or put it back.
pub(crate) struct MemorySettle {
    envelope: Envelope,
    queue: Arc<RequestQueue>,
    /// Held until the request is settled: this is what limits a server to
    /// `prefetch` requests at a time.
    _slot: OwnedSemaphorePermit,
}

impl MemorySettle {
    pub(crate) fn reply(self, payload: Bytes) {
        // A caller that gave up (timed out) no longer listens; like a reply
        // to a vanished RabbitMQ reply queue, the answer is dropped.
        let _ = self.envelope.reply.send(payload);
    }

    pub(crate) fn requeue(self) {
        self.queue.requeue(self.envelope);
    }
}

/// A subscriber's membership in the topic table.
pub(crate) struct MemorySubscription {
    id: u64,
    inbox: Arc<Inbox>,
    table: Arc<Mutex<TopicTable>>,
    topics: Mutex<HashSet<Topic>>,
}

impl MemorySubscription {
    pub(crate) fn add(&self, topic: Topic) {
        let mut table = lock(&self.table);
        table
            .entry(topic)
            .or_default()
            .insert(self.id, Arc::clone(&self.inbox));
        lock(&self.topics).insert(topic);
    }

    pub(crate) fn remove(&self, topic: &Topic) {
        let mut table = lock(&self.table);
        if let Some(subscribers) = table.get_mut(topic) {
            subscribers.remove(&self.id);
            if subscribers.is_empty() {
                table.remove(topic);
            }
        }
        lock(&self.topics).remove(topic);
    }

    pub(crate) fn topics(&self) -> Vec<Topic> {
        lock(&self.topics).iter().copied().collect()
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        for topic in self.topics() {
            self.remove(&topic);
        }
    }
}
