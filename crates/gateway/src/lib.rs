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

mod auth;
mod chunks;
mod error;
mod notify;
mod pages;
mod rpc;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use stacksync_service::Service;

pub use error::GatewayError;

/// Largest chunk body accepted by `PUT .../chunks/{id}`: an encoded chunk
/// is at most a few MiB; this leaves room for any chunker setting.
pub const MAX_CHUNK_BYTES: usize = 32 * 1024 * 1024;

/// Most chunk ids in one `POST .../chunks/exists`.
pub const MAX_EXISTS_IDS: usize = 10_000;

/// How often the gateway pings a notification socket; a client that has not
/// answered anything for three intervals is disconnected.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// The version reported by `/` and `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The whole gateway. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so that the
/// service learns each device's address (it is recorded as the device's
/// last IP); without it the address is simply unknown.
pub fn router(service: Service) -> Router {
    // A chunk-id list is 65 bytes per id in JSON; this bounds the body
    // before the id count is checked.
    let exists_limit = MAX_EXISTS_IDS * 70 + 1024;
    Router::new()
        .route("/", get(pages::index))
        .route("/health", get(pages::health))
        .route("/api/v1/login", post(rpc::login))
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
            put(chunks::put)
                .layer(DefaultBodyLimit::max(MAX_CHUNK_BYTES))
                .get(chunks::get),
        )
        .with_state(service)
}
