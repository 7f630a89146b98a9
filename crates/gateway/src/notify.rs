//! `GET /api/v1/notifications`: a user's push notifications over WebSocket.
//!
//! Each socket owns one bus subscription (the user's topic and one topic per
//! workspace, kept up to date as the user joins and leaves workspaces) and
//! forwards every payload as a text frame. Writing to the client happens in
//! its own task behind a small bounded outbox: when a client reads too
//! slowly the outbox fills, further notifications are dropped, and a
//! `Resync` goes out as soon as there is room, so that a slow client costs
//! only itself. A `Resync` also goes out once the subscription is live, so
//! a client knows from when on it may rely on the stream.
//!
//! A socket opened with `?hints=1` receives commit notifications without
//! their items: a device that re-reads the change feed on every hint (the
//! desktop client) would only download the metadata twice, and its own
//! commits' metadata once more.
//!
//! Clients only ever send control frames, so a client message or frame over
//! a few KiB closes the socket, and a user may hold only so many sockets at
//! once (one per device is the normal case): each costs a bus subscription.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use stacksync_bus::{Subscription, SubscriptionEvent, Topic};
use stacksync_proto::{Error, ErrorKind, Notification, UserId, wire};
use stacksync_service::Service;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::auth::bearer;
use crate::error::GatewayError;
use crate::{AppState, PING_INTERVAL};

/// Frames waiting for a slow client before notifications are dropped.
const OUTBOX: usize = 64;

/// How long a closing socket may take to flush before it is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// `?token=` for clients (browsers) that cannot set headers on a WebSocket.
#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    token: Option<String>,
    /// `1`: commit notifications without their items.
    hints: Option<u8>,
}

/// When a user at the socket cap is told to try again: a socket frees up
/// only when a device disconnects.
const SOCKET_CAP_RETRY_SECS: u64 = 30;

/// Open notification sockets per user.
#[derive(Debug, Default)]
pub(crate) struct UserSockets {
    counts: Mutex<HashMap<UserId, usize>>,
}

/// One open socket of a user; released when dropped.
pub(crate) struct SocketSlot {
    sockets: Arc<UserSockets>,
    user: UserId,
}

impl UserSockets {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, usize>> {
        // Counters only: a panic elsewhere cannot leave them inconsistent.
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for one more socket of `user`, unless they hold `max` already.
    fn take(self: &Arc<Self>, user: UserId, max: usize) -> Option<SocketSlot> {
        let mut counts = self.counts();
        let n = counts.entry(user).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SocketSlot {
            sockets: Arc::clone(self),
            user,
        })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut counts = self.sockets.counts();
        if let Some(n) = counts.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

/// Whether a browser's request comes from a page of this site: its
/// `Origin` names the host it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let value = |name: axum::http::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(origin), Some(host)) = (
        value(axum::http::header::ORIGIN),
        value(axum::http::header::HOST),
    ) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

/// Authenticates, subscribes, then upgrades. Subscribing before the
/// upgrade lets a client see a bus failure as an HTTP error it can retry.
pub(crate) async fn notifications(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, GatewayError> {
    let token = match bearer(&headers)? {
        Some(token) => token,
        None => match query.token.filter(|t| !t.is_empty()) {
            Some(token) => token,
            // A browser of the website: its session cookie, only from a
            // page of this very site (a socket opened by another site's
            // page carries the cookie too, and its `Origin`).
            None => crate::web::cookie(&headers, crate::web::SESSION_COOKIE)
                .filter(|_| same_origin(&headers))
                .map(str::to_owned)
                .ok_or(GatewayError::MissingToken {
                    also: " or `?token=TOKEN`",
                })?,
        },
    };
    let service = state.service.clone();
    let user = service.authenticate(&token).await?;
    let hints = query.hints == Some(1);
    let upgrade = upgrade.map_err(|r| GatewayError::BadBody {
        endpoint: "notifications",
        reason: r.body_text(),
    })?;
    let max = state.limits.max_sockets_per_user;
    let slot = state.sockets.take(user, max).ok_or_else(|| {
        Error::too_many_requests(
            format!("{max} notification sockets are open for this user already"),
            SOCKET_CAP_RETRY_SECS,
        )
    })?;
    // The user's own topic first: a workspace joined between reading the
    // list and subscribing is then announced on it and followed below.
    let subscription = service
        .bus()
        .subscribe(&[Topic::User(user)])
        .await
        .map_err(Error::from)?;
    for topic in service.topics_for(user).await? {
        if topic != Topic::User(user) {
            subscription.add(topic).await.map_err(Error::from)?;
        }
    }
    let max_message = state.limits.max_client_message;
    Ok(upgrade
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| async move {
            let session = Session {
                service,
                token,
                user,
                hints,
            };
            forward(socket, subscription, session).await;
            drop(slot);
        }))
}

fn resync() -> Message {
    Message::Text(Utf8Bytes::from(
        String::from_utf8(wire::encode(&Notification::Resync))
            .unwrap_or_else(|_| unreachable!("JSON is UTF-8")),
    ))
}

/// The sending half as the forwarding loop sees it: never blocks.
struct Outbox {
    tx: mpsc::Sender<Message>,
    /// Notifications were dropped and the client has not been told yet.
    owes_resync: bool,
}

impl Outbox {
    /// Queues `message`, or drops it when the client is behind. `false`
    /// when the writer is gone (the client went away).
    fn offer(&mut self, message: Message) -> bool {
        if self.owes_resync {
            match self.tx.try_send(resync()) {
                Ok(()) => self.owes_resync = false,
                Err(mpsc::error::TrySendError::Full(_)) => return true,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        let is_ping = matches!(message, Message::Ping(_));
        match self.tx.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                // A dropped ping loses nothing; a dropped notification
                // must be made up for.
                self.owes_resync |= !is_ping;
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Follows the user into and out of workspaces. Only notifications on the
/// user's own topic are trusted for this: a workspace topic carries other
/// members' news.
async fn follow_membership(
    subscription: &Subscription,
    user: UserId,
    topic: Topic,
    payload: &[u8],
) {
    if topic != Topic::User(user) {
        return;
    }
    let change = match wire::decode::<Notification>(payload) {
        Ok(Notification::WorkspaceJoined { workspace }) => Ok(Topic::Workspace(workspace.id)),
        Ok(Notification::Unshared {
            workspace,
            user: who,
        }) if who == user => Err(Topic::Workspace(workspace)),
        _ => return,
    };
    let result = match change {
        Ok(topic) => subscription.add(topic).await,
        Err(topic) => subscription.remove(&topic).await,
    };
    if let Err(err) = result {
        // The client re-reads its workspace list on the notification it is
        // about to receive; at worst it misses this workspace's hints.
        tracing::warn!(%user, %err, "could not follow a membership change");
    }
}

/// Whose socket it is: the session is checked again at every ping, so a
/// socket of a session that ended (logout, revocation, a disabled account)
/// stops receiving notifications within one ping interval.
struct Session {
    service: Service,
    token: String,
    user: UserId,
    /// The client asked for commit notifications without their items.
    hints: bool,
}

impl Session {
    /// Whether the session still exists; a failure to find out (the
    /// database away) keeps the socket, as the client would only reconnect.
    async fn ended(&self) -> bool {
        match self.service.authenticate(&self.token).await {
            Ok(_) => false,
            Err(e) => e.kind == ErrorKind::Unauthenticated,
        }
    }
}

async fn forward(socket: WebSocket, mut subscription: Subscription, session: Session) {
    let user = session.user;
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(OUTBOX);
    // The only task that waits on the client.
    let mut writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let mut outbox = Outbox {
        tx,
        owes_resync: false,
    };
    let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    let mut last_heard = Instant::now();
    let mut open = outbox.offer(resync());
    while open {
        tokio::select! {
            event = subscription.recv() => match event {
                Some(SubscriptionEvent::Message { topic, payload }) => {
                    follow_membership(&subscription, user, topic, &payload).await;
                    let payload = if session.hints {
                        as_hint(&payload)
                    } else {
                        payload.to_vec()
                    };
                    match String::from_utf8(payload) {
                        Ok(text) => open = outbox.offer(Message::Text(text.into())),
                        Err(_) => tracing::warn!(%topic, "dropping a non-UTF-8 notification"),
                    }
                }
                Some(SubscriptionEvent::Lagged { .. } | SubscriptionEvent::Reconnected) => {
                    open = outbox.offer(resync());
                }
                // The bus shut down: the server is stopping.
                None => break,
            },
            frame = stream.next() => match frame {
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(err)) => {
                    // Also what an oversized client message ends in.
                    tracing::debug!(%user, %err, "notification socket failed");
                    break;
                }
                // Pongs, and anything else the client sends, prove it alive.
                Some(Ok(_)) => last_heard = Instant::now(),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > PING_INTERVAL * 3 {
                    tracing::debug!(%user, "notification client stopped answering");
                    break;
                }
                if session.ended().await {
                    tracing::debug!(%user, "notification socket of an ended session closed");
                    break;
                }
                open = outbox.offer(Message::Ping(Default::default()));
            }
        }
    }
    drop(outbox);
    // A client that stopped reading would keep the writer blocked forever.
    if tokio::time::timeout(CLOSE_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// A commit notification without its items (anything else unchanged).
fn as_hint(payload: &[u8]) -> Vec<u8> {
    match wire::decode::<Notification>(payload) {
        Ok(Notification::Commit {
            workspace,
            device,
            revision,
            items,
        }) if !items.is_empty() => wire::encode(&Notification::Commit {
            workspace,
            device,
            revision,
            items: Vec::new(),
        }),
        _ => payload.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_drop_the_items_of_commits_only() {
        let meta: stacksync_proto::ItemMeta = serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::nil(), "workspace": uuid::Uuid::nil(), "parent": null,
            "name": "a", "is_folder": true, "status": "NEW", "version": 1, "size": 0,
            "client_modified": 0, "server_modified": 0, "device": uuid::Uuid::nil(),
            "revision": 3
        }))
        .unwrap();
        let commit = |items| Notification::Commit {
            workspace: stacksync_proto::WorkspaceId::NIL,
            device: stacksync_proto::DeviceId::NIL,
            revision: 3,
            items,
        };
        let hint = as_hint(&wire::encode(&commit(vec![meta])));
        assert_eq!(
            wire::decode::<Notification>(&hint).unwrap(),
            commit(Vec::new())
        );
        let other = wire::encode(&Notification::Resync);
        assert_eq!(as_hint(&other), other);
    }

    #[tokio::test]
    async fn a_full_outbox_drops_and_then_owes_a_resync() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut outbox = Outbox {
            tx,
            owes_resync: false,
        };
        assert!(outbox.offer(Message::Text("a".into())));
        assert!(outbox.offer(Message::Text("b".into())));
        assert!(outbox.offer(Message::Text("c".into())));
        assert!(outbox.owes_resync);
        assert_eq!(rx.recv().await, Some(Message::Text("a".into())));
        assert_eq!(rx.recv().await, Some(Message::Text("b".into())));
        assert!(outbox.offer(Message::Text("d".into())));
        assert_eq!(rx.recv().await, Some(resync()));
        assert_eq!(rx.recv().await, Some(Message::Text("d".into())));
        drop(rx);
        assert!(!outbox.offer(Message::Text("e".into())));
    }
}
