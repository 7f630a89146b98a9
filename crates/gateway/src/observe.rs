//! What the gateway tells its operator: every HTTP request gets an id
//! (`X-Request-Id`, taken from the request or made here, echoed in the
//! response), a span carrying it, and its metrics (requests by route,
//! method and status, latency, bytes in and out), all in [`track`], the
//! one middleware around every route. `/metrics` (Prometheus text, served
//! only to listed addresses or with a token) and `/ready` (the database,
//! the bus and the storage each answer within a timeout) are here too.
//!
//! An RPC's id is its envelope's `request_id` (which a retry reuses)
//! unless the caller sent `X-Request-Id`: the service's span of the
//! request (`Service::handle`) carries the same id, so one id follows an
//! RPC from the gateway into the service, as it does over the bus.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use stacksync_service::Service;
use tracing::Instrument;

use crate::auth::PeerAddr;
use crate::leftover::{Declared, Slot, settle};
use crate::{AddressSet, AppState};

/// The header carrying a request's id, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route label of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// How long live session and device counts are reused between scrapes.
const COUNTS_TTL: Duration = Duration::from_secs(10);

/// Who may read `/metrics`, and how long each check of `/ready` (and each
/// scrape-time sample of `/metrics`) may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserveSettings {
    /// Whether `/metrics` is served at all. Default true.
    pub metrics: bool,
    /// A token that opens `/metrics` from any address
    /// (`Authorization: Bearer TOKEN`). Default none.
    pub metrics_token: Option<String>,
    /// Addresses served `/metrics` without the token. Default loopback
    /// (`127.0.0.1`, `::1`). A request that came through a proxy (from one
    /// of the REST API's trusted proxies, or carrying `X-Forwarded-For` or
    /// `Forwarded`) is never taken as coming from its proxy's address.
    /// Addresses or ranges.
    pub metrics_allow: AddressSet,
    /// Bound of each check of `/ready` and each sample taken at scrape
    /// time. Default 2 s.
    pub check_timeout: Duration,
}

impl Default for ObserveSettings {
    fn default() -> Self {
        ObserveSettings {
            metrics: true,
            metrics_token: None,
            metrics_allow: AddressSet::loopback(),
            check_timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabel {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: &'static str,
}

/// The gateway's own metrics and those sampled when scraped.
#[derive(Debug)]
struct Metrics {
    requests: Family<RequestLabel, Counter>,
    duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
    received: Family<RouteLabel, Counter>,
    sent: Family<RouteLabel, Counter>,
    pool_size: Gauge,
    pool_idle: Gauge,
    pool_max: Gauge,
    queue_messages: Family<QueueLabel, Gauge>,
    queue_consumers: Family<QueueLabel, Gauge>,
    sessions: Gauge,
    devices: Gauge,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Everything `/metrics`, `/ready` and [`track`] share.
pub(crate) struct Observer {
    settings: ObserveSettings,
    metrics: Metrics,
    registry: Registry,
    /// The last live sessions and devices, and when they were read.
    counts: Mutex<Option<(Instant, u64, u64)>>,
}

impl Observer {
    pub(crate) fn new(settings: ObserveSettings) -> Observer {
        let metrics = Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            received: Family::default(),
            sent: Family::default(),
            pool_size: Gauge::default(),
            pool_idle: Gauge::default(),
            pool_max: Gauge::default(),
            queue_messages: Family::default(),
            queue_consumers: Family::default(),
            sessions: Gauge::default(),
            devices: Gauge::default(),
        };
        let mut registry = Registry::default();
        let m = &metrics;
        let r = &mut registry;
        r.register(
            "stacksync_http_requests",
            "HTTP requests answered, by method, route (the REST API's and the website's included) and status",
            m.requests.clone(),
        );
        r.register(
            "stacksync_http_request_duration_seconds",
            "Seconds until an HTTP response's head, by route",
            m.duration.clone(),
        );
        r.register(
            "stacksync_http_received_bytes",
            "Bytes of HTTP request bodies read (uploads), by route",
            m.received.clone(),
        );
        r.register(
            "stacksync_http_sent_bytes",
            "Bytes of HTTP response bodies sent (downloads), by route",
            m.sent.clone(),
        );
        r.register(
            "stacksync_db_pool_connections",
            "Open connections of the metadata database's pool",
            m.pool_size.clone(),
        );
        r.register(
            "stacksync_db_pool_idle_connections",
            "Idle connections of the metadata database's pool",
            m.pool_idle.clone(),
        );
        r.register(
            "stacksync_db_pool_max_connections",
            "Most connections the metadata database's pool opens",
            m.pool_max.clone(),
        );
        r.register(
            "stacksync_rpc_queue_messages",
            "Requests waiting in the shared RPC queue (RabbitMQ only)",
            m.queue_messages.clone(),
        );
        r.register(
            "stacksync_rpc_queue_consumers",
            "Consumers of the shared RPC queue (RabbitMQ only)",
            m.queue_consumers.clone(),
        );
        r.register(
            "stacksync_sessions_active",
            "Unexpired sessions (read at most every 10 s)",
            m.sessions.clone(),
        );
        r.register(
            "stacksync_devices_active",
            "Devices with an unexpired session (read at most every 10 s)",
            m.devices.clone(),
        );
        stacksync_service::metrics::register(r);
        Observer {
            settings,
            metrics,
            registry,
            counts: Mutex::default(),
        }
    }

    /// Whether a request from `peer` with `headers` may read `/metrics`.
    fn may_scrape(&self, peer: Option<IpAddr>, headers: &HeaderMap, proxies: &AddressSet) -> bool {
        if let Some(token) = &self.settings.metrics_token
            && let Some(given) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())
            && let Some((scheme, given)) = given.split_once(' ')
            && scheme.eq_ignore_ascii_case("bearer")
            && constant_time_eq(given.trim().as_bytes(), token.as_bytes())
        {
            return true;
        }
        let proxied = headers.contains_key("x-forwarded-for") || headers.contains_key("forwarded");
        match peer {
            Some(ip) if !proxied && !proxies.contains(ip) => {
                self.settings.metrics_allow.contains(ip)
            }
            _ => false,
        }
    }

    /// Samples what is read at scrape time: the pool (no I/O), the request
    /// queue (one broker round trip), live sessions and devices (one
    /// query, reused for [`COUNTS_TTL`]); each bounded by the timeout.
    async fn sample(&self, service: &Service) {
        let m = &self.metrics;
        let timeout = self.settings.check_timeout;
        let pool = service.store().pool_use();
        m.pool_size.set(i64::from(pool.size));
        m.pool_idle.set(i64::from(pool.idle));
        m.pool_max.set(i64::from(pool.max));
        let label = QueueLabel { queue: "requests" };
        match tokio::time::timeout(timeout, service.bus().request_queue()).await {
            Ok(Ok(Some(q))) => {
                m.queue_messages
                    .get_or_create(&label)
                    .set(i64::from(q.messages));
                m.queue_consumers
                    .get_or_create(&label)
                    .set(i64::from(q.consumers));
            }
            Ok(Ok(None)) => {}
            failed => {
                // No value rather than a stale one.
                m.queue_messages.remove(&label);
                m.queue_consumers.remove(&label);
                tracing::warn!(?failed, "the request queue could not be inspected");
            }
        }
        let cached = *lock(&self.counts);
        let fresh = match cached {
            Some((at, sessions, devices)) if at.elapsed() < COUNTS_TTL => Some((sessions, devices)),
            _ => match tokio::time::timeout(timeout, service.store().live_counts()).await {
                Ok(Ok(c)) => {
                    *lock(&self.counts) = Some((Instant::now(), c.sessions, c.devices));
                    Some((c.sessions, c.devices))
                }
                failed => {
                    tracing::warn!(?failed, "live sessions could not be counted");
                    None
                }
            },
        };
        if let Some((sessions, devices)) = fresh {
            m.sessions.set(i64::try_from(sessions).unwrap_or(i64::MAX));
            m.devices.set(i64::try_from(devices).unwrap_or(i64::MAX));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A cache only: a panic elsewhere cannot leave it inconsistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An IPv4 address as an IPv6-mapped one arrives (`::ffff:127.0.0.1` on a
/// dual-stack listener) is its IPv4 address.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A request's id, chosen once: by the caller's `X-Request-Id`, by the
/// RPC handler (the envelope's id), or made up when the response leaves.
/// Recorded in the request's span when chosen.
#[derive(Clone, Default)]
pub(crate) struct RequestId(Arc<OnceLock<String>>);

impl RequestId {
    /// The id, choosing `make()` if none is chosen yet (in the current
    /// span, which must be the request's).
    pub(crate) fn choose(&self, make: impl FnOnce() -> String) -> &str {
        let mut chosen = false;
        let id = self.0.get_or_init(|| {
            chosen = true;
            make()
        });
        if chosen {
            tracing::Span::current().record("request_id", id.as_str());
        }
        id
    }
}

/// An `X-Request-Id` worth keeping: short, and nothing a log line would
/// have to escape.
fn acceptable_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        // Any other name would be a label value chosen by the client.
        _ => "other",
    }
}

/// The middleware around every route: the request's id and span, its
/// metrics, and the id echoed in the response.
pub(crate) async fn track(
    State(observer): State<Arc<Observer>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let method = method_label(request.method());
    let span = tracing::info_span!(
        "http",
        request_id = tracing::field::Empty,
        method,
        route = route.as_str()
    );
    let id = RequestId::default();
    let given = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable_id(v))
        .map(str::to_owned);
    // An RPC without one takes its envelope's id (`rpc::rpc`).
    let is_rpc = route == "/api/v1/rpc";
    match given {
        Some(given) => {
            span.in_scope(|| id.choose(|| given));
        }
        None if !is_rpc => {
            span.in_scope(|| id.choose(|| uuid::Uuid::now_v7().to_string()));
        }
        None => {}
    }
    request.extensions_mut().insert(id.clone());
    let m = &observer.metrics;
    let label = RouteLabel { route };
    let received = m.received.get_or_create_owned(&label);
    let version = request.version();
    let declared = Declared::of(request.headers());
    let unread = Slot::default();
    let request =
        request.map(|body| Body::new(Counted::new(body, received.clone(), unread.clone())));
    let mut response = next.run(request).instrument(span.clone()).await;
    let drained = settle(&unread, version, declared, &mut response)
        .instrument(span.clone())
        .await;
    received.inc_by(drained);
    let status = response.status();
    let took = started.elapsed();
    m.duration.get_or_create(&label).observe(took.as_secs_f64());
    m.requests
        .get_or_create(&RequestLabel {
            method,
            route: label.route.clone(),
            status: status.as_u16(),
        })
        .inc();
    let sent = m.sent.get_or_create_owned(&label);
    let mut response = response.map(|body| Body::new(Counted::new(body, sent, Slot::default())));
    let id = span.in_scope(|| id.choose(|| uuid::Uuid::now_v7().to_string()).to_owned());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    span.in_scope(|| {
        tracing::debug!(
            status = status.as_u16(),
            took_us = took.as_micros() as u64,
            "http served"
        );
    });
    response
}

/// A body whose data bytes are counted as they pass; dropped before its
/// end, it puts the rest of itself in `unread` (see [`crate::leftover`]).
struct Counted {
    inner: Option<Body>,
    bytes: Counter,
    ended: bool,
    unread: Slot,
}

impl Counted {
    fn new(inner: Body, bytes: Counter, unread: Slot) -> Counted {
        Counted {
            inner: Some(inner),
            bytes,
            ended: false,
            unread,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && !self.ended
            && !inner.is_end_stream()
        {
            self.unread.put(inner);
        }
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes.inc_by(data.len() as u64);
                }
            }
            // An error ends the body too: nothing more to read.
            Poll::Ready(None | Some(Err(_))) => self.ended = true,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

/// `GET /metrics`: every metric in the Prometheus text format (0.0.4),
/// to listed addresses or with the token; 404 when turned off.
pub(crate) async fn metrics(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
) -> Response {
    let observer = &state.observer;
    if !observer.settings.metrics {
        return StatusCode::NOT_FOUND.into_response();
    }
    if !observer.may_scrape(peer, &headers, &state.api.trusted_proxies) {
        let status = if observer.settings.metrics_token.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::FORBIDDEN
        };
        return (
            status,
            "metrics are served to listed addresses or with the metrics token\n",
        )
            .into_response();
    }
    observer.sample(&state.service).await;
    let mut text = String::new();
    if let Err(e) =
        prometheus_client::encoding::prometheus_text::encode(&mut text, &observer.registry)
    {
        tracing::error!(error = %e, "metrics could not be encoded");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// `GET /ready`: 200 when the metadata database, the bus and the storage
/// each answer within the timeout, 503 naming those that did not. The
/// body names each check; why one failed goes to the log only.
pub(crate) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let service = &state.service;
    let timeout = state.observer.settings.check_timeout;
    let (database, bus, storage) = tokio::join!(
        check("database", timeout, async { service.store().ping().await }),
        check("bus", timeout, async {
            service.bus().request_queue().await
        }),
        check("storage", timeout, async { service.blobs().ready().await }),
    );
    let checks = [("database", database), ("bus", bus), ("storage", storage)];
    let failed: Vec<&str> = checks.iter().filter(|c| !c.1).map(|c| c.0).collect();
    let mut named = serde_json::Map::new();
    for (name, ok) in checks {
        named.insert(name.into(), Value::from(if ok { "ok" } else { "failed" }));
    }
    let status = if failed.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if failed.is_empty() { "ready" } else { "unready" },
        "checks": named,
        "failed": failed,
    });
    (status, Json(body))
}

/// Whether `probe` succeeded within `timeout`; a failure is logged.
async fn check<T, E: std::fmt::Display>(
    name: &str,
    timeout: Duration,
    probe: impl Future<Output = Result<T, E>>,
) -> bool {
    match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::warn!(check = name, error = %e, "readiness check failed");
            false
        }
        Err(_) => {
            tracing::warn!(check = name, ?timeout, "readiness check timed out");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_harmless() {
        assert!(acceptable_id("0190b6c2-7c1e-7a3b-9f00-000000000001"));
        assert!(acceptable_id("trace:abc/def+1="));
        assert!(!acceptable_id(""));
        assert!(!acceptable_id("has space"));
        assert!(!acceptable_id("quote\"d"));
        assert!(!acceptable_id(&"x".repeat(129)));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn metrics_are_served_to_listed_addresses_unproxied_or_with_the_token() {
        let local = IpAddr::from([127, 0, 0, 1]);
        let loopback = Some(local);
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let other = Some(IpAddr::from([192, 0, 2, 7]));
        let none = AddressSet::none();
        let open = Observer::new(ObserveSettings::default());
        assert!(open.may_scrape(loopback, &headers(&[]), &none));
        assert!(open.may_scrape(Some(mapped), &headers(&[]), &none));
        assert!(!open.may_scrape(other, &headers(&[]), &none));
        assert!(!open.may_scrape(None, &headers(&[]), &none));
        // Through a proxy on loopback, the request is someone else's.
        assert!(!open.may_scrape(
            loopback,
            &headers(&[("x-forwarded-for", "192.0.2.7")]),
            &none
        ));
        assert!(!open.may_scrape(loopback, &headers(&[]), &[local].into_iter().collect()));
        let ranges = AddressSet::parse(["127.0.0.0/8"]).unwrap();
        assert!(!open.may_scrape(loopback, &headers(&[]), &ranges));
        let pods = Observer::new(ObserveSettings {
            metrics_allow: AddressSet::parse(["10.42.0.0/16"]).unwrap(),
            ..ObserveSettings::default()
        });
        assert!(pods.may_scrape(Some(IpAddr::from([10, 42, 3, 4])), &headers(&[]), &none));
        assert!(!pods.may_scrape(loopback, &headers(&[]), &none));
        let tokened = Observer::new(ObserveSettings {
            metrics_token: Some("s3cret".into()),
            metrics_allow: AddressSet::none(),
            ..ObserveSettings::default()
        });
        assert!(!tokened.may_scrape(loopback, &headers(&[]), &none));
        assert!(tokened.may_scrape(
            other,
            &headers(&[("authorization", "Bearer s3cret")]),
            &none
        ));
        assert!(!tokened.may_scrape(other, &headers(&[("authorization", "Bearer s3cre")]), &none));
        assert!(!tokened.may_scrape(other, &headers(&[("authorization", "Basic s3cret")]), &none));
    }
}
