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
mod range;
mod rpc;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use stacksync_service::Service;

pub use error::GatewayError;

/// Largest body accepted by `PUT .../chunks/{id}`: a pack of encoded
/// chunks, the largest object a client writes (an encoded chunk alone is
/// at most [`stacksync_proto::MAX_ENCODED_CHUNK`], which is smaller).
pub const MAX_CHUNK_BYTES: usize = stacksync_proto::PackSpan::MAX_PACK_BYTES as usize;

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
            // The upload streams its body and enforces MAX_CHUNK_BYTES
            // itself, after authentication (no body-limit layer: that only
            // applies to extractors that buffer the body first).
            put(chunks::put).get(chunks::get),
        )
        .with_state(service)
}
