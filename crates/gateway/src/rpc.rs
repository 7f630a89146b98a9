//! Login and the RPC endpoint: the same `RpcRequest`/`RpcResponse` messages
//! as on the bus, one per HTTP request.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use stacksync_proto::rpc::{Request, RpcRequest};
use stacksync_proto::{Millis, UserId, brief, wire};
use stacksync_service::Service;

use crate::auth::{PeerAddr, bearer};
use crate::error::GatewayError;
use crate::observe::RequestId;

/// `POST /api/v1/login` body.
#[derive(Deserialize)]
pub(crate) struct LoginBody {
    email: String,
    password: String,
}

/// `POST /api/v1/login` answer.
#[derive(Serialize)]
pub(crate) struct LoginReply {
    token: String,
    user: UserId,
    expires_at: Millis,
}

/// Turns a body-reading failure into our error, keeping "too large" apart
/// from "malformed" (axum reports both as rejections).
fn body_error(
    endpoint: &'static str,
    limit: usize,
    status: StatusCode,
    reason: String,
) -> GatewayError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        GatewayError::BodyTooLarge { endpoint, limit }
    } else {
        GatewayError::BadBody { endpoint, reason }
    }
}

pub(crate) fn bytes_error(
    endpoint: &'static str,
    limit: usize,
    rejection: BytesRejection,
) -> GatewayError {
    body_error(endpoint, limit, rejection.status(), rejection.body_text())
}

pub(crate) fn json_error(
    endpoint: &'static str,
    limit: usize,
    rejection: JsonRejection,
) -> GatewayError {
    body_error(endpoint, limit, rejection.status(), rejection.body_text())
}

/// `POST /api/v1/login`: email and password in, session out.
pub(crate) async fn login(
    State(service): State<Service>,
    PeerAddr(peer): PeerAddr,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> Result<Json<LoginReply>, GatewayError> {
    let Json(body) = body.map_err(|r| json_error("login", crate::MAX_LOGIN_BODY, r))?;
    let session = service
        .login_from(&body.email, &body.password, peer)
        .await?;
    Ok(Json(LoginReply {
        token: session.token,
        user: session.user,
        expires_at: session.expires_at,
    }))
}

/// `POST /api/v1/rpc`: a `wire`-encoded `RpcRequest` in, the `wire`-encoded
/// `RpcResponse` out with 200 even when the operation failed (the error is
/// in the response, as on the bus), in the most compact form the request
/// said its sender reads (`wire::Peer`). Only a message that cannot be read
/// at all gets an HTTP error.
///
/// Without an `X-Request-Id` of the caller's, the request's id is the
/// envelope's `request_id` (`observe.rs`), the one the service's span of it
/// carries.
pub(crate) async fn rpc(
    State(service): State<Service>,
    PeerAddr(addr): PeerAddr,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let body = body.map_err(|r| bytes_error("rpc", wire::MAX_MESSAGE_BYTES, r))?;
    let (mut request, peer): (RpcRequest, _) = wire::decode_from(&body)?;
    if let Some(Extension(id)) = &request_id {
        id.choose(|| request.request_id.to_string());
    }
    if let Some(token) = bearer(&headers)? {
        if request.token.is_empty() {
            request.token = token;
        } else if request.token != token {
            return Err(GatewayError::TokenMismatch);
        }
    }
    // Only a commit's reply can be brief, and shortening it needs the
    // proposals the service consumes.
    let commit = match &request.request {
        r @ Request::Commit(_) if peer.reads_compact() => Some(r.clone()),
        _ => None,
    };
    let response = service.handle(request, addr).await;
    let response = match &commit {
        Some(r) => brief::shorten_response(r, response, peer),
        None => response,
    };
    let bytes = wire::encode_for(&response, peer);
    // A peer that reads compact messages knows what the endpoint speaks;
    // the header would cost more than a small reply's body.
    if peer.reads_compact() {
        return Ok(Response::new(axum::body::Body::from(bytes)));
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}
