//! Direct push notifications: the session's own queue, which the service
//! declares and binds to the topics of the user's workspaces. The client
//! cannot bind anything itself; it asks the service to re-bind whenever
//! its workspace set may have changed.

use std::collections::VecDeque;
use std::sync::Arc;

use stacksync_bus::{Mailbox, SubscriptionEvent};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{Error, Notification, wire};

use super::Inner;
use super::rpc::bus_error;
use crate::connection::unexpected;

/// The state behind a direct notification stream.
pub(super) struct Listener {
    inner: Arc<Inner>,
    mailbox: Mailbox,
    /// Yielded before reading the mailbox again.
    pending: VecDeque<Result<Notification, Error>>,
    /// Set once an error was yielded: the stream then ends.
    done: bool,
}

impl Listener {
    /// Has the service bind the session's queue, then consumes it. The
    /// queue is durable, so nothing published after the binding is lost
    /// before consuming starts; what came before is covered by the first
    /// `Resync`.
    pub(super) async fn open(inner: Arc<Inner>) -> Result<Listener, Error> {
        let queue = bind(&inner).await?;
        let mailbox = inner.bus.mailbox(&queue).await.map_err(bus_error)?;
        let mut pending = VecDeque::new();
        // As the gateway does: the first event says the stream is live and
        // anything before it must be read from the change feeds.
        pending.push_back(Ok(Notification::Resync));
        Ok(Listener {
            inner,
            mailbox,
            pending,
            done: false,
        })
    }

    pub(super) async fn next(&mut self) -> Option<Result<Notification, Error>> {
        if let Some(item) = self.pending.pop_front() {
            return Some(item);
        }
        if self.done {
            return None;
        }
        let item = self.receive().await;
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }

    /// The next notification; an error only when the service refuses the
    /// session or the queue cannot be read any more.
    async fn receive(&mut self) -> Result<Notification, Error> {
        let Some(event) = self.mailbox.recv().await else {
            return Err(Error::unavailable(
                "the notification queue was closed (connection shut down or session ended)",
            ));
        };
        match event {
            SubscriptionEvent::Message { payload, .. } => {
                match wire::decode::<Notification>(&payload) {
                    Ok(notification) => {
                        if changes_workspaces(&notification, &self.inner) {
                            self.rebind().await?;
                        }
                        Ok(notification)
                    }
                    // A hint we cannot read is a lost hint.
                    Err(_) => Ok(Notification::Resync),
                }
            }
            SubscriptionEvent::Lagged { .. } | SubscriptionEvent::Reconnected => {
                // Membership notifications may be among those lost.
                self.rebind().await?;
                Ok(Notification::Resync)
            }
        }
    }

    /// Asks the service to bind the queue to the current workspace set. A
    /// transient failure keeps the old bindings (the next gap tries again);
    /// a refusal ends the stream.
    async fn rebind(&self) -> Result<(), Error> {
        match bind(&self.inner).await {
            Err(e) if !e.kind.is_transient() => Err(e),
            _ => Ok(()),
        }
    }
}

/// Whether the user's workspace set changed (joined, or left one).
fn changes_workspaces(notification: &Notification, inner: &Inner) -> bool {
    match notification {
        Notification::WorkspaceJoined { .. } => true,
        Notification::Unshared { user, .. } => *user == inner.user,
        _ => false,
    }
}

/// The `BindNotifications` RPC; returns the session's queue.
async fn bind(inner: &Inner) -> Result<String, Error> {
    match inner.rpc(Request::BindNotifications).await? {
        Reply::NotificationsBound { queue } => Ok(queue),
        other => Err(unexpected("bind_notifications", other)),
    }
}
