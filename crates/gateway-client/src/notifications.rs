//! The push-notification stream over WebSocket, kept open across failures.
//!
//! Notifications are hints that a change feed moved, never the data itself,
//! so losing some is acceptable as long as the device is told: the gateway
//! sends `Resync` when its subscription is live (on every connection, the
//! first included) and whenever it had to drop notifications, and the
//! device then re-reads its change feeds.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::Url;
use stacksync_proto::{Error, Notification, wire};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::{ClientError, ErrorBody, RetryPolicy};

/// The gateway pings every 20 s; three missed pings mean the connection is
/// dead even if TCP has not noticed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest notification (message or frame) accepted: a notification is a
/// wire message, so the wire maximum bounds it; a longer one breaks the
/// connection instead of being buffered.
const MAX_NOTIFICATION: usize = wire::MAX_MESSAGE_BYTES;

/// Notifications buffered for a slow consumer before the socket stops being
/// read (the gateway then drops and later sends `Resync`).
const BUFFER: usize = 256;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The stream of notifications for the logged-in user's devices. Yields an
/// `Err` and ends only when the gateway refuses the session (for example,
/// it expired); transport failures are retried for as long as this lives.
pub struct Notifications {
    rx: mpsc::Receiver<Result<Notification, Error>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifications")
    }
}

impl Notifications {
    pub(crate) fn open(url: Url, token: String, retry: RetryPolicy) -> Notifications {
        let (tx, rx) = mpsc::channel(BUFFER);
        let task = tokio::spawn(run(url, token, retry, tx));
        Notifications { rx, task }
    }

    /// The next notification; `None` after the stream ended.
    pub async fn next(&mut self) -> Option<Result<Notification, Error>> {
        self.rx.recv().await
    }
}

impl Stream for Notifications {
    type Item = Result<Notification, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why one connection ended.
enum Ended {
    /// Nobody listens any more: stop for good.
    ConsumerGone,
    /// The connection broke or the server closed it: reconnect.
    Broken,
}

async fn run(
    url: Url,
    token: String,
    retry: RetryPolicy,
    tx: mpsc::Sender<Result<Notification, Error>>,
) {
    // The stream lives as long as its consumer wants it, whatever the
    // policy's attempts: only the waits are taken from it.
    let reconnect = RetryPolicy::forever(retry.initial_delay, retry.max_delay);
    let mut delays = reconnect.delays();
    let mut failures: u32 = 0;
    loop {
        match connect(&url, &token).await {
            Ok(socket) => {
                failures = 0;
                delays = reconnect.delays();
                match pump(socket, &tx).await {
                    Ended::ConsumerGone => return,
                    Ended::Broken => {
                        tracing::debug!(%url, "notification socket closed; reconnecting")
                    }
                }
            }
            // The user has as many sockets open as the gateway allows:
            // one may close; come back when told to.
            Err(ClientError::Server { error, .. })
                if error.kind == stacksync_proto::ErrorKind::TooManyRequests =>
            {
                let wait = Duration::from_secs(error.retry_after_secs.unwrap_or(30));
                tracing::warn!(%error, "notification socket refused for now");
                tokio::time::sleep(wait).await;
            }
            Err(err) if !err.is_transient() => {
                let _ = tx.send(Err(err.into())).await;
                return;
            }
            Err(err) => {
                failures = failures.saturating_add(1);
                // `forever` runs out only after about four billion
                // failures; then the longest wait it gives stands in.
                let delay = delays
                    .next()
                    .unwrap_or(reconnect.max_delay.saturating_mul(2));
                tracing::debug!(%err, failures, ?delay, "notification socket failed to open");
                tokio::time::sleep(delay).await;
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

async fn connect(url: &Url, token: &str) -> Result<Socket, ClientError> {
    let mut request = url.as_str().into_client_request().map_err(Box::new)?;
    let bearer =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| ClientError::BadUrl {
            url: url.to_string(),
            reason: format!("token cannot travel in a header: {e}"),
        })?;
    request.headers_mut().insert("authorization", bearer);
    match tokio_tungstenite::connect_async_with_config(request, Some(socket_config()), false).await
    {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.body().as_deref().unwrap_or_default();
            let endpoint = "api/v1/notifications".to_owned();
            Err(match serde_json::from_slice::<ErrorBody>(body) {
                Ok(ErrorBody { error }) => ClientError::Server { endpoint, error },
                Err(_) => ClientError::BadResponse {
                    endpoint,
                    status,
                    reason: String::from_utf8_lossy(body).chars().take(200).collect(),
                },
            })
        }
        Err(err) => Err(ClientError::WebSocket(Box::new(err))),
    }
}

async fn pump(mut socket: Socket, tx: &mpsc::Sender<Result<Notification, Error>>) -> Ended {
    loop {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            () = tx.closed() => {
                let _ = socket.close(None).await;
                return Ended::ConsumerGone;
            }
            () = tokio::time::sleep(IDLE_TIMEOUT) => return Ended::Broken,
        };
        let notification = match read_frame(frame) {
            Frame::Notification(notification) => notification,
            Frame::Skip => continue,
            Frame::Ended => return Ended::Broken,
        };
        if tx.send(Ok(notification)).await.is_err() {
            let _ = socket.close(None).await;
            return Ended::ConsumerGone;
        }
    }
}

/// The limits the client reads the socket with: no message or frame over
/// [`MAX_NOTIFICATION`].
pub(crate) fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_NOTIFICATION))
        .max_frame_size(Some(MAX_NOTIFICATION))
}

/// What one read of the socket means for the stream.
pub(crate) enum Frame {
    /// A notification to pass on.
    Notification(Notification),
    /// Nothing for the consumer (a control or binary frame).
    Skip,
    /// The connection is over: reconnect.
    Ended,
}

/// Reads one result of the socket's stream (`None`: it ended).
pub(crate) fn read_frame(
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Frame {
    match frame {
        Some(Ok(Message::Text(text))) => match wire::decode::<Notification>(text.as_bytes()) {
            Ok(notification) => Frame::Notification(notification),
            // A newer gateway may send kinds this build does not know;
            // something changed, so the safe answer is to re-read.
            Err(err) => {
                tracing::debug!(%err, "unknown notification; asking for a resync");
                Frame::Notification(Notification::Resync)
            }
        },
        // tungstenite answers pings itself while the stream is read.
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_))) => {
            Frame::Skip
        }
        Some(Ok(Message::Close(_))) | None => Frame::Ended,
        Some(Err(err)) => {
            tracing::debug!(%err, "notification socket failed");
            Frame::Ended
        }
    }
}
