//! The device side of the StackSync gateway: the same RPCs, chunk transfer
//! and push notifications as over RabbitMQ, but over HTTP and WebSocket, for
//! devices that cannot or should not reach the broker (and for the embedded
//! default server).
//!
//! This crate must never depend on the server crates (`service`,
//! `metastore`, `gateway`): the desktop client links it, and the client
//! never links the server. It speaks only `stacksync-proto` messages.

#![warn(missing_docs)]

mod error;
#[doc(hidden)]
pub mod fuzz;
mod notifications;
mod retry;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use stacksync_proto::rpc::{Reply, Request, RpcRequest, RpcResponse};
use stacksync_proto::{ChunkId, Error, Millis, UserId, WorkspaceId, brief, wire};

pub use error::ClientError;
pub use notifications::Notifications;
pub use retry::{Delays, RetryPolicy};

/// A session opened by [`GatewayClient::login`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Session {
    /// Bearer token for every later call.
    pub token: String,
    /// Who logged in.
    pub user: UserId,
    /// When the token stops working (milliseconds since the epoch).
    pub expires_at: Millis,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Error,
}

/// A logged-in connection to one gateway. Cheap to clone (the HTTP
/// connection pool is shared).
#[derive(Debug, Clone)]
pub struct GatewayClient {
    http: reqwest::Client,
    base: Url,
    session: Session,
    retry: RetryPolicy,
    /// The gateway's compact level, learned from its last RPC reply (0
    /// until then, and for gateways older than compact messages): requests
    /// are compressed only for a gateway that reads them.
    peer: Arc<AtomicU16>,
}

/// Per-request timeout: generous because chunk bodies may be large and slow
/// links are common; a hung connection still surfaces as a transient error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Largest login answer (a token, an id and a time) read.
const MAX_LOGIN_REPLY: usize = 64 * 1024;

/// Largest error body read; longer error answers are cut to this.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Largest answer to an upload (the server sends none to speak of).
const MAX_PUT_REPLY: usize = 64 * 1024;

/// Largest whole-object read: a pack, the largest object a client writes.
const MAX_OBJECT: usize = stacksync_proto::PackSpan::MAX_PACK_BYTES as usize;

/// RPC messages and chunk uploads carry no `Content-Type`: the gateway
/// knows what each endpoint takes, and on small messages the header would
/// cost as much as the body.
const UNLABELLED: &str = "";

const JSON: &str = "application/json";

fn install_tls_provider() {
    // reqwest is built without a default crypto provider (aws-lc-rs needs
    // cmake); `ring` is installed once per process. A second install (by
    // another crate) fails harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn parse_base(url: &str) -> Result<Url, ClientError> {
    let bad = |reason: &str| ClientError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let mut base = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(bad("scheme must be http or https"));
    }
    // `join` replaces the last path segment unless the path ends in '/'.
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok(base)
}

fn http_client() -> Result<reqwest::Client, ClientError> {
    install_tls_provider();
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ClientError::BadUrl {
            url: String::new(),
            reason: format!("cannot build the HTTP client: {e}"),
        })
}

impl GatewayClient {
    /// Logs in with an email and password and keeps the session.
    pub async fn login(url: &str, email: &str, password: &str) -> Result<GatewayClient, Error> {
        let base = parse_base(url)?;
        let http = http_client()?;
        let endpoint = "api/v1/login";
        let target = join(&base, endpoint)?;
        let body = serde_json::json!({ "email": email, "password": password });
        let response = http
            .post(target)
            .json(&body)
            .send()
            .await
            .map_err(|source| transport(endpoint, source))?;
        let bytes = read_ok(endpoint, response, MAX_LOGIN_REPLY).await?;
        let session: Session =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse {
                endpoint: endpoint.to_owned(),
                status: 200,
                reason: e.to_string(),
            })?;
        Ok(GatewayClient::with_session(url, session)?)
    }

    /// A client for a session obtained earlier (for example, stored on disk).
    pub fn with_session(url: &str, session: Session) -> Result<GatewayClient, ClientError> {
        Ok(GatewayClient {
            http: http_client()?,
            base: parse_base(url)?,
            session,
            retry: RetryPolicy::default(),
            peer: Arc::default(),
        })
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> GatewayClient {
        self.retry = retry;
        self
    }

    /// The session this client uses.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Sends one sync-service operation. Transient failures are retried
    /// with the same request id, so the service recognises a repeat of a
    /// request it already carried out. The message is as compact as the
    /// gateway reads, and says this side reads compact replies (`wire`).
    pub async fn rpc(&self, request: Request) -> Result<Reply, Error> {
        let message = RpcRequest {
            request_id: uuid::Uuid::now_v7(),
            // The token travels once, in the Authorization header.
            token: String::new(),
            request,
        };
        let peer = wire::Peer {
            compact: self.peer.load(Ordering::Relaxed),
        };
        let body = Bytes::from(wire::encode_for(&message, peer));
        let endpoint = "api/v1/rpc";
        let mut delays = self.retry.delays();
        let mut attempt = 1;
        loop {
            let bytes = self
                .send_retrying(
                    Method::POST,
                    endpoint,
                    Some((body.clone(), UNLABELLED)),
                    wire::MAX_MESSAGE_BYTES,
                )
                .await?;
            let (response, peer): (RpcResponse, _) =
                wire::decode_from(&bytes).map_err(|e| ClientError::BadResponse {
                    endpoint: endpoint.to_owned(),
                    status: 200,
                    reason: e.message,
                })?;
            self.peer.store(peer.compact, Ordering::Relaxed);
            if response.request_id != message.request_id {
                return Err(Error::internal(format!(
                    "gateway answered request {} with the reply to {}",
                    message.request_id, response.request_id
                )));
            }
            // The service's own errors come back inside a 200; a transient
            // one is retried too, still with the same id.
            match response.result {
                Err(err) if err.kind.is_transient() => {
                    let Some(delay) = delays.next() else {
                        return Err(err);
                    };
                    tracing::debug!(%err, attempt, ?delay, "service unavailable; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => {
                    return other.and_then(|reply| brief::expand_reply(&message.request, reply));
                }
            }
        }
    }

    /// Stores one encoded chunk in a workspace (idempotent).
    pub async fn put_chunk(
        &self,
        workspace: WorkspaceId,
        id: &ChunkId,
        data: Bytes,
    ) -> Result<(), Error> {
        let endpoint = format!("api/v1/workspaces/{workspace}/chunks/{}", id.to_hex());
        self.send_retrying(
            Method::PUT,
            &endpoint,
            Some((data, UNLABELLED)),
            MAX_PUT_REPLY,
        )
        .await?;
        Ok(())
    }

    /// Reads one encoded chunk of a workspace.
    pub async fn get_chunk(&self, workspace: WorkspaceId, id: &ChunkId) -> Result<Bytes, Error> {
        let endpoint = format!("api/v1/workspaces/{workspace}/chunks/{}", id.to_hex());
        Ok(self
            .send_retrying(Method::GET, &endpoint, None, MAX_OBJECT)
            .await?)
    }

    /// Reads bytes `offset..offset + len` of an object of a workspace (a
    /// chunk inside a pack), with an HTTP range request. Fails unless
    /// exactly `len` bytes come back.
    pub async fn get_chunk_range(
        &self,
        workspace: WorkspaceId,
        id: &ChunkId,
        offset: u64,
        len: u32,
    ) -> Result<Bytes, Error> {
        let endpoint = format!("api/v1/workspaces/{workspace}/chunks/{}", id.to_hex());
        if len == 0 {
            return Ok(Bytes::new());
        }
        let last = offset + u64::from(len) - 1;
        let range = format!("bytes={offset}-{last}");
        // Exactly `len` bytes are expected: a longer answer is refused while
        // it streams in, not after it has been read.
        let bytes = self
            .send_retrying_with(Method::GET, &endpoint, None, Some(range), len as usize)
            .await?;
        if bytes.len() != len as usize {
            return Err(ClientError::BadResponse {
                endpoint,
                status: 206,
                reason: format!(
                    "asked for {len} bytes at offset {offset}, got {}",
                    bytes.len()
                ),
            }
            .into());
        }
        Ok(bytes)
    }

    /// Which of `ids` the workspace already stores, in the same order.
    pub async fn has_chunks(
        &self,
        workspace: WorkspaceId,
        ids: &[ChunkId],
    ) -> Result<Vec<bool>, Error> {
        let endpoint = format!("api/v1/workspaces/{workspace}/chunks/exists");
        let hex: Vec<String> = ids.iter().map(ChunkId::to_hex).collect();
        let body =
            Bytes::from(serde_json::to_vec(&hex).map_err(|e| Error::internal(e.to_string()))?);
        // `false,` per id, with room for whitespace.
        let limit = ids.len().saturating_mul(8).saturating_add(1024);
        let bytes = self
            .send_retrying(Method::POST, &endpoint, Some((body, JSON)), limit)
            .await?;
        let present: Vec<bool> =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse {
                endpoint: endpoint.clone(),
                status: 200,
                reason: e.to_string(),
            })?;
        if present.len() != ids.len() {
            return Err(Error::internal(format!(
                "{endpoint}: asked about {} chunks, got {} answers",
                ids.len(),
                present.len()
            )));
        }
        Ok(present)
    }

    /// Opens the push-notification stream. The connection is re-established
    /// on its own after a failure, and a [`stacksync_proto::Notification::Resync`]
    /// is yielded whenever notifications may have been lost.
    pub fn notifications(&self) -> Result<Notifications, Error> {
        self.open_notifications("api/v1/notifications")
    }

    /// [`GatewayClient::notifications`] with commit notifications as bare
    /// hints (no items), for a device that re-reads the change feed anyway.
    pub fn notification_hints(&self) -> Result<Notifications, Error> {
        self.open_notifications("api/v1/notifications?hints=1")
    }

    /// Makes a view link to the item `item` (a file or folder id, or a
    /// shared folder's id) through the REST API (`POST /api/v2/links`,
    /// `docs/api-v2.md`) with this device's session, and returns its full
    /// URL, secret included (shown only now). Not retried: a retry after a
    /// lost answer would make a second link.
    pub async fn create_link(&self, item: uuid::Uuid) -> Result<String, Error> {
        let endpoint = "api/v2/links";
        let target = join(&self.base, endpoint)?;
        let response = self
            .http
            .post(target)
            .bearer_auth(&self.session.token)
            .json(&serde_json::json!({ "id": item.to_string() }))
            .send()
            .await
            .map_err(|source| transport(endpoint, source))?;
        let status = response.status();
        let bytes = read_capped(endpoint, response, MAX_LOGIN_REPLY, !status.is_success()).await?;
        let bad = |reason: String| ClientError::BadResponse {
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            reason,
        };
        if !status.is_success() {
            // The REST API's errors: `{"error": CODE, "description": ...}`.
            #[derive(Deserialize)]
            struct ApiError {
                description: String,
            }
            let why = serde_json::from_slice::<ApiError>(&bytes)
                .map(|e| e.description)
                .unwrap_or_else(|_| describe_status(status, &bytes));
            let kind = match status {
                StatusCode::UNAUTHORIZED => stacksync_proto::ErrorKind::Unauthenticated,
                StatusCode::FORBIDDEN => stacksync_proto::ErrorKind::Forbidden,
                StatusCode::NOT_FOUND => stacksync_proto::ErrorKind::NotFound,
                StatusCode::BAD_REQUEST => stacksync_proto::ErrorKind::BadRequest,
                _ => return Err(bad(why).into()),
            };
            return Err(Error::new(kind, why));
        }
        #[derive(Deserialize)]
        struct Link {
            url: String,
        }
        let link: Link = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        let url = self
            .base
            .join(link.url.trim_start_matches('/'))
            .map_err(|e| ClientError::BadUrl {
                url: link.url.clone(),
                reason: e.to_string(),
            })?;
        Ok(url.to_string())
    }

    fn open_notifications(&self, endpoint: &str) -> Result<Notifications, Error> {
        let mut url = join(&self.base, endpoint)?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme).map_err(|()| ClientError::BadUrl {
            url: url.to_string(),
            reason: "cannot switch to a websocket scheme".into(),
        })?;
        Ok(Notifications::open(
            url,
            self.session.token.clone(),
            self.retry,
        ))
    }

    /// One HTTP exchange, repeated on transient failures; the body of a
    /// successful (2xx) response, which may be at most `limit` bytes.
    async fn send_retrying(
        &self,
        method: Method,
        endpoint: &str,
        body: Option<(Bytes, &'static str)>,
        limit: usize,
    ) -> Result<Bytes, ClientError> {
        self.send_retrying_with(method, endpoint, body, None, limit)
            .await
    }

    /// [`GatewayClient::send_retrying`] with an optional `Range` header.
    async fn send_retrying_with(
        &self,
        method: Method,
        endpoint: &str,
        body: Option<(Bytes, &'static str)>,
        range: Option<String>,
        limit: usize,
    ) -> Result<Bytes, ClientError> {
        let target = join(&self.base, endpoint)?;
        let mut delays = self.retry.delays();
        let mut attempt = 1;
        loop {
            let mut request = self
                .http
                .request(method.clone(), target.clone())
                .bearer_auth(&self.session.token);
            if let Some(range) = &range {
                request = request.header(reqwest::header::RANGE, range.as_str());
            }
            if let Some((body, content_type)) = &body {
                // `Bytes` clones share the buffer; no copy per attempt.
                if !content_type.is_empty() {
                    request = request.header(reqwest::header::CONTENT_TYPE, *content_type);
                }
                request = request.body(body.clone());
            }
            let outcome = match request.send().await {
                Ok(response) => read_ok(endpoint, response, limit).await,
                Err(source) => Err(transport(endpoint, source)),
            };
            match outcome {
                Err(err) if err.is_transient() => {
                    let Some(delay) = delays.next() else {
                        return Err(err);
                    };
                    tracing::debug!(%err, attempt, ?delay, "gateway call failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

fn join(base: &Url, endpoint: &str) -> Result<Url, ClientError> {
    base.join(endpoint).map_err(|e| ClientError::BadUrl {
        url: format!("{base}{endpoint}"),
        reason: e.to_string(),
    })
}

fn transport(endpoint: &str, source: reqwest::Error) -> ClientError {
    ClientError::Transport {
        endpoint: endpoint.to_owned(),
        source,
    }
}

/// The body of a 2xx response (at most `limit` bytes), or the server's
/// JSON error.
async fn read_ok(
    endpoint: &str,
    response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, ClientError> {
    let status = response.status();
    if status.is_success() {
        return read_capped(endpoint, response, limit, false).await;
    }
    let bytes = read_capped(endpoint, response, MAX_ERROR_BODY, true).await?;
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(ErrorBody { error }) => Err(ClientError::Server {
            endpoint: endpoint.to_owned(),
            error,
        }),
        Err(_) => Err(ClientError::BadResponse {
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            reason: describe_status(status, &bytes),
        }),
    }
}

/// Reads a body as it streams in, refusing it as soon as it passes
/// `limit` (or announces a length over it), so that a hostile or broken
/// server cannot make the client hold more than it expects. With
/// `truncate`, the first `limit` bytes are returned instead (error bodies
/// are only shown).
async fn read_capped(
    endpoint: &str,
    mut response: reqwest::Response,
    limit: usize,
    truncate: bool,
) -> Result<Bytes, ClientError> {
    let too_large = || ClientError::ResponseTooLarge {
        endpoint: endpoint.to_owned(),
        limit,
    };
    let announced = response.content_length();
    if !truncate && announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let expected = announced.map_or(0, |n| n.min(limit as u64) as usize);
    let mut body = bytes::BytesMut::with_capacity(expected);
    while let Some(piece) = response
        .chunk()
        .await
        .map_err(|source| transport(endpoint, source))?
    {
        let room = limit - body.len();
        if piece.len() > room {
            if truncate {
                body.extend_from_slice(&piece[..room]);
                break;
            }
            return Err(too_large());
        }
        body.extend_from_slice(&piece);
    }
    Ok(body.freeze())
}

fn describe_status(status: StatusCode, body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
    format!("{status}: {text}")
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn base_urls_gain_a_trailing_slash() {
        let base = parse_base("http://127.0.0.1:8080/prefix").unwrap();
        assert_eq!(
            join(&base, "api/v1/rpc").unwrap().as_str(),
            "http://127.0.0.1:8080/prefix/api/v1/rpc"
        );
        assert!(parse_base("ftp://x").is_err());
        assert!(parse_base("not a url").is_err());
    }

    #[test]
    fn retry_delays_grow_and_stay_capped() {
        let policy = RetryPolicy {
            attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let delays: Vec<Duration> = policy.delays().collect();
        assert_eq!(delays.len(), 9, "one wait per retry: {delays:?}");
        for (i, &d) in delays.iter().enumerate() {
            let base =
                (Duration::from_millis(100) * 2u32.pow(i as u32)).min(Duration::from_secs(1));
            // backon doubles in f32: allow a microsecond of rounding.
            let slack = Duration::from_micros(1);
            assert!(
                d + slack >= base && d < base * 2 + slack,
                "retry {}: {d:?} vs base {base:?}",
                i + 1
            );
            assert!(d <= Duration::from_secs(2), "retry {}: {d:?}", i + 1);
        }
    }

    /// A gateway stand-in on a local port: answers every request with
    /// `answer(body)` (a whole HTTP response) and records each body.
    async fn stub_gateway(answer: fn(&[u8]) -> String) -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port");
        let url = format!("http://{}/", listener.local_addr().expect("an address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let Some(body) = read_request(&mut stream).await else {
                    continue;
                };
                let reply = answer(&body);
                log.lock().unwrap().push(body);
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        (url, seen)
    }

    /// The body of one HTTP/1.1 request (sized by `Content-Length`).
    async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap_or(0));
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.ok()?;
        Some(body)
    }

    fn http(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn client(url: &str, attempts: u32) -> GatewayClient {
        let session = Session {
            token: "ab".repeat(32),
            user: UserId::new(),
            expires_at: i64::MAX,
        };
        GatewayClient::with_session(url, session)
            .expect("a client")
            .with_retry(RetryPolicy {
                attempts,
                initial_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(4),
            })
    }

    #[tokio::test]
    async fn http_failures_are_tried_attempts_times_in_total() {
        let (url, seen) = stub_gateway(|_| http("503 Service Unavailable", "")).await;
        let chunk = ChunkId([7; 32]);
        for (attempts, tries) in [(0, 1), (1, 1), (2, 2), (4, 4)] {
            seen.lock().unwrap().clear();
            let err = client(&url, attempts)
                .get_chunk(WorkspaceId::new(), &chunk)
                .await
                .expect_err("the stub always fails");
            assert_eq!(err.kind, stacksync_proto::ErrorKind::Unavailable, "{err}");
            assert_eq!(seen.lock().unwrap().len(), tries, "attempts {attempts}");
        }
    }

    #[tokio::test]
    async fn refusals_are_not_retried() {
        let (url, seen) = stub_gateway(|_| {
            let body = serde_json::json!({ "error": Error::forbidden("not yours") });
            http("403 Forbidden", &body.to_string())
        })
        .await;
        let err = client(&url, 5)
            .get_chunk(WorkspaceId::new(), &ChunkId([7; 32]))
            .await
            .expect_err("the stub refuses");
        assert_eq!(err.kind, stacksync_proto::ErrorKind::Forbidden, "{err}");
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn unavailable_services_are_retried_under_one_request_id() {
        // Every answer is a 200 carrying the service's `Unavailable`: the
        // HTTP exchange succeeds, the RPC loop retries.
        let (url, seen) = stub_gateway(|body| {
            let (request, _): (RpcRequest, _) = wire::decode_from(body).expect("a request");
            let response = RpcResponse {
                request_id: request.request_id,
                result: Err(Error::unavailable("database restarting")),
            };
            let json = String::from_utf8(wire::encode(&response)).expect("plain JSON");
            http("200 OK", &json)
        })
        .await;
        let err = client(&url, 3)
            .rpc(Request::GetAccount)
            .await
            .expect_err("the service stays unavailable");
        assert_eq!(
            (err.kind, err.message.as_str()),
            (
                stacksync_proto::ErrorKind::Unavailable,
                "database restarting"
            )
        );
        let ids: Vec<uuid::Uuid> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|body| wire::decode_from::<RpcRequest>(body).unwrap().0.request_id)
            .collect();
        assert_eq!(ids.len(), 3, "three attempts in total");
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    }
}
