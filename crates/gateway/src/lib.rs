//! The StackSync client gateway: the sync service's RPCs, chunk transfer
//! and push notifications over HTTP and WebSocket, for devices that cannot
//! or should not reach RabbitMQ (and for the embedded default server).
//! [`router`] builds the whole HTTP surface; the `stacksync server` binary
//! mounts it on its listen address.
//!
//! The gateway is a thin adapter: it must never decide who may do what (the
//! [`Service`] authenticates every token and checks every membership), never
//! interpret an RPC beyond framing it, and never let one slow WebSocket
//! client hold up notifications for the others.

#![warn(missing_docs)]

mod addresses;
pub(crate) mod api_v2;
mod auth;
mod chunks;
mod error;
#[doc(hidden)]
pub mod fuzz;
mod idle;
mod leftover;
mod links_page;
mod notify;
mod observe;
mod pages;
mod range;
mod rpc;
mod serve;
mod served;
mod web;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::routing::{get, post, put};
use stacksync_service::Service;

pub use addresses::AddressSet;
pub use api_v2::{ApiSettings, MAX_OAUTH_BODY};
pub use error::GatewayError;
pub use observe::{ObserveSettings, REQUEST_ID};
pub use serve::serve;

/// Largest body accepted by `PUT .../chunks/{id}`: a pack of encoded
/// chunks, the largest object a client writes (an encoded chunk alone is
/// at most [`stacksync_proto::MAX_ENCODED_CHUNK`], which is smaller).
pub const MAX_CHUNK_BYTES: usize = stacksync_proto::PackSpan::MAX_PACK_BYTES as usize;

/// Most chunk ids in one `POST .../chunks/exists`.
pub const MAX_EXISTS_IDS: usize = 10_000;

/// How often the gateway pings a notification socket; a client that has not
/// answered anything for three intervals is disconnected.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// Largest login body (an email and a password; both are short).
pub const MAX_LOGIN_BODY: usize = 16 * 1024;

/// Limits that keep connections from exhausting the server: timeouts and
/// caps of the HTTP server ([`serve`]) and of the notification sockets
/// ([`router_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayLimits {
    /// Time a client has to send a whole request head; also how long a
    /// keep-alive connection may wait idle for its next request. Default 15 s.
    pub header_timeout: Duration,
    /// Longest silence (no byte in either direction) while a request body
    /// is read, a response written or a WebSocket open; must exceed
    /// [`PING_INTERVAL`], which keeps healthy sockets talking. Default 90 s.
    pub idle_timeout: Duration,
    /// Open connections in all. Default 4096.
    pub max_connections: usize,
    /// Open connections from one address (an IPv6 /64). Default 64.
    pub max_connections_per_address: usize,
    /// Open notification sockets of one user. Default 16.
    pub max_sockets_per_user: usize,
    /// Largest message (and frame) a notification client may send; clients
    /// only ever send control frames. Default 4 KiB.
    pub max_client_message: usize,
}

impl Default for GatewayLimits {
    fn default() -> GatewayLimits {
        GatewayLimits {
            header_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(90),
            max_connections: 4096,
            max_connections_per_address: 64,
            max_sockets_per_user: 16,
            max_client_message: 4096,
        }
    }
}

/// What every handler may reach: the service, and the gateway's own
/// bookkeeping of notification sockets.
#[derive(Clone)]
pub(crate) struct AppState {
    service: Service,
    sockets: Arc<notify::UserSockets>,
    limits: Arc<GatewayLimits>,
    api: Arc<ApiSettings>,
    observer: Arc<observe::Observer>,
}

impl FromRef<AppState> for Service {
    fn from_ref(state: &AppState) -> Service {
        state.service.clone()
    }
}

/// The version reported by `/` and `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The whole gateway. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so that the
/// service learns each device's address (it is recorded as the device's
/// last IP); without it the address is simply unknown. [`serve`] does.
pub fn router(service: Service) -> Router {
    router_with(service, &GatewayLimits::default())
}

/// [`router`] with these limits on notification sockets.
pub fn router_with(service: Service, limits: &GatewayLimits) -> Router {
    router_with_api(service, limits, ApiSettings::default())
}

/// [`router_with`], with the REST API's trust in proxies (`api`).
pub fn router_with_api(service: Service, limits: &GatewayLimits, api: ApiSettings) -> Router {
    router_observed(service, limits, api, ObserveSettings::default())
}

/// [`router_with_api`], with who may read `/metrics` (`observe`).
pub fn router_observed(
    service: Service,
    limits: &GatewayLimits,
    api: ApiSettings,
    observe: ObserveSettings,
) -> Router {
    let observer = Arc::new(observe::Observer::new(observe));
    let state = AppState {
        service,
        sockets: Arc::default(),
        limits: Arc::new(limits.clone()),
        api: Arc::new(api),
        observer: Arc::clone(&observer),
    };
    // A chunk-id list is 65 bytes per id in JSON; this bounds the body
    // before the id count is checked.
    let exists_limit = MAX_EXISTS_IDS * 70 + 1024;
    Router::new()
        .route("/health", get(pages::health))
        .route("/ready", get(observe::ready))
        .route("/metrics", get(observe::metrics))
        .route(
            "/api/v1/login",
            post(rpc::login).layer(DefaultBodyLimit::max(MAX_LOGIN_BODY)),
        )
        .route(
            "/api/v1/rpc",
            post(rpc::rpc).layer(DefaultBodyLimit::max(
                stacksync_proto::wire::MAX_MESSAGE_BYTES,
            )),
        )
        .route("/api/v1/notifications", get(notify::notifications))
        .route(
            "/api/v1/workspaces/{ws}/chunks/exists",
            post(chunks::exists).layer(DefaultBodyLimit::max(exists_limit)),
        )
        .route(
            "/api/v1/workspaces/{ws}/chunks/{id}",
            // The upload streams its body and enforces MAX_CHUNK_BYTES
            // itself, after authentication (no body-limit layer: that only
            // applies to extractors that buffer the body first).
            put(chunks::put).get(chunks::get),
        )
        .merge(api_v2::routes())
        .merge(web::routes())
        .merge(links_page::routes())
        .with_state(state)
        // Outermost, after routing: sees every route's template.
        .layer(axum::middleware::from_fn_with_state(
            observer,
            observe::track,
        ))
}
