//! A subscriber's bounded buffer of notifications, shared by both backends.
//!
//! Publishers never wait on it: when it is full the notification is dropped
//! and counted, and the subscriber is told [`SubscriptionEvent::Lagged`] so
//! that it re-reads the change feed (the feed, not the notification stream,
//! is the source of truth; notifications are only hints that it moved).

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::Topic;

/// What a [`crate::Subscription`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionEvent {
    /// A notification published on one of the subscribed topics.
    Message {
        /// The topic it was published on.
        topic: Topic,
        /// The opaque payload (an encoded `Notification` in StackSync).
        payload: Bytes,
    },
    /// The subscriber fell behind and `missed` notifications were dropped;
    /// re-read the change feed.
    Lagged {
        /// How many notifications were dropped.
        missed: u64,
    },
    /// The broker connection was lost and re-established; notifications
    /// published in between are lost, so re-read the change feed.
    Reconnected,
}

#[derive(Debug, Default)]
struct InboxState {
    queue: VecDeque<(Topic, Bytes)>,
    missed: u64,
    reconnected: bool,
    closed: bool,
}

/// Single-consumer, many-producer bounded buffer. Gap signals are flags
/// rather than queue entries so that they can never be dropped for lack of
/// room.
#[derive(Debug)]
pub(crate) struct Inbox {
    capacity: usize,
    state: Mutex<InboxState>,
    wake: Notify,
}

impl Inbox {
    pub(crate) fn new(capacity: usize) -> Inbox {
        Inbox {
            capacity: capacity.max(1),
            state: Mutex::default(),
            wake: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, InboxState> {
        // A panic while holding this lock cannot leave the queue half-updated
        // (every critical section is a single push/pop), so poison is ignored.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a notification, or drops and counts it when full. Never blocks.
    pub(crate) fn push(&self, topic: Topic, payload: Bytes) {
        {
            let mut state = self.state();
            if state.queue.len() >= self.capacity {
                state.missed += 1;
            } else {
                state.queue.push_back((topic, payload));
            }
        }
        self.wake.notify_one();
    }

    /// Signals that notifications may have been lost to a reconnection.
    pub(crate) fn signal_reconnected(&self) {
        self.state().reconnected = true;
        self.wake.notify_one();
    }

    /// Ends the stream: `recv` returns `None` once the queue is drained.
    pub(crate) fn close(&self) {
        self.state().closed = true;
        self.wake.notify_one();
    }

    /// The next event; gap signals first, because they make whatever is
    /// still queued redundant.
    pub(crate) async fn recv(&self) -> Option<SubscriptionEvent> {
        loop {
            {
                let mut state = self.state();
                if std::mem::take(&mut state.reconnected) {
                    return Some(SubscriptionEvent::Reconnected);
                }
                let missed = std::mem::take(&mut state.missed);
                if missed > 0 {
                    return Some(SubscriptionEvent::Lagged { missed });
                }
                if let Some((topic, payload)) = state.queue.pop_front() {
                    return Some(SubscriptionEvent::Message { topic, payload });
                }
                if state.closed {
                    return None;
                }
            }
            // There is one consumer, and `notify_one` stores a permit when
            // nobody waits, so a push between the check and here is not lost.
            self.wake.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stacksync_proto::UserId;

    #[tokio::test]
    async fn full_inbox_drops_and_reports_lag_first() {
        let inbox = Inbox::new(2);
        let topic = Topic::User(UserId::new());
        for i in 0..5u8 {
            inbox.push(topic, Bytes::from(vec![i]));
        }
        assert_eq!(
            inbox.recv().await,
            Some(SubscriptionEvent::Lagged { missed: 3 })
        );
        let payloads = [inbox.recv().await, inbox.recv().await];
        assert_eq!(
            payloads,
            [0u8, 1].map(|i| Some(SubscriptionEvent::Message {
                topic,
                payload: Bytes::from(vec![i])
            }))
        );
        inbox.close();
        assert_eq!(inbox.recv().await, None);
    }

    #[tokio::test]
    async fn reconnect_signal_survives_a_full_inbox() {
        let inbox = Inbox::new(1);
        let topic = Topic::User(UserId::new());
        inbox.push(topic, Bytes::new());
        inbox.signal_reconnected();
        assert_eq!(inbox.recv().await, Some(SubscriptionEvent::Reconnected));
    }
}
