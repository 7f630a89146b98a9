//! The one place where gateway failures become HTTP responses: every error
//! body is `{"error": {"kind": ..., "message": ...}}` with the status that
//! [`ErrorKind::http_status`] gives the kind.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use stacksync_proto::{Error, ErrorKind, ParseIdError};
use stacksync_service::ServiceError;

/// Why a gateway request failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The service refused or failed the operation.
    #[error(transparent)]
    Service(#[from] Error),
    /// No credentials came with a request that needs them.
    #[error("missing credentials: send `Authorization: Bearer TOKEN`{also}")]
    MissingToken {
        /// Other accepted ways, if the endpoint has any.
        also: &'static str,
    },
    /// The `Authorization` header is not a bearer token.
    #[error("malformed Authorization header: expected `Bearer TOKEN`")]
    BadAuthorization,
    /// The header and the body carry different tokens.
    #[error("the Authorization header and the request carry different tokens")]
    TokenMismatch,
    /// An id in the path does not parse.
    #[error("bad {what} in path: {source}")]
    BadId {
        /// Which id.
        what: &'static str,
        /// Why it was refused.
        #[source]
        source: ParseIdError,
    },
    /// The request body is over the endpoint's limit.
    #[error("{endpoint}: request body over {limit} bytes")]
    BodyTooLarge {
        /// The endpoint.
        endpoint: &'static str,
        /// Its limit in bytes.
        limit: usize,
    },
    /// The request body is malformed or could not be read.
    #[error("{endpoint}: bad request body: {reason}")]
    BadBody {
        /// The endpoint.
        endpoint: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The `Range` header is not one the chunk endpoint serves.
    #[error("bad Range header: {reason}")]
    BadRange {
        /// What was wrong.
        reason: String,
    },
    /// The requested range reaches past the end of the object (HTTP 416).
    #[error("{message}")]
    RangeNotSatisfiable {
        /// What was asked of which object.
        message: String,
        /// The object's size, for `Content-Range: bytes */SIZE`.
        size: u64,
    },
    /// Too many chunk ids in one existence query.
    #[error("{count} chunk ids in one query; at most {limit}")]
    TooManyIds {
        /// How many were sent.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

impl GatewayError {
    /// The protocol error this failure is reported as.
    pub fn to_proto(&self) -> Error {
        let kind = match self {
            GatewayError::Service(err) => return err.clone(),
            GatewayError::MissingToken { .. } | GatewayError::BadAuthorization => {
                ErrorKind::Unauthenticated
            }
            GatewayError::TokenMismatch
            | GatewayError::BadId { .. }
            | GatewayError::BadBody { .. }
            | GatewayError::BadRange { .. }
            // The protocol has no kind of its own for it; HTTP says 416.
            | GatewayError::RangeNotSatisfiable { .. } => ErrorKind::BadRequest,
            GatewayError::BodyTooLarge { .. } | GatewayError::TooManyIds { .. } => {
                ErrorKind::TooLarge
            }
        };
        Error::new(kind, self.to_string())
    }
}

/// The JSON error body.
#[derive(serde::Serialize)]
struct ErrorBody {
    error: Error,
}

impl From<ServiceError> for GatewayError {
    fn from(e: ServiceError) -> GatewayError {
        match e {
            ServiceError::RangeNotSatisfiable { size, .. } => GatewayError::RangeNotSatisfiable {
                message: e.to_string(),
                size,
            },
            other => GatewayError::Service(other.to_proto()),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        if let GatewayError::RangeNotSatisfiable { size, .. } = &self {
            let content_range = format!("bytes */{size}");
            let error = self.to_proto();
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, content_range)],
                Json(ErrorBody { error }),
            )
                .into_response();
        }
        let error = self.to_proto();
        let status = StatusCode::from_u16(error.kind.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(%error, "gateway request failed");
        }
        let retry_after = error.retry_after_secs;
        let mut response = (status, Json(ErrorBody { error })).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_the_status_of_its_kind() {
        let cases = [
            (
                GatewayError::MissingToken { also: "" },
                StatusCode::UNAUTHORIZED,
            ),
            (GatewayError::TokenMismatch, StatusCode::BAD_REQUEST),
            (
                GatewayError::BodyTooLarge {
                    endpoint: "rpc",
                    limit: 1,
                },
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                GatewayError::Service(Error::new(ErrorKind::UnsupportedVersion, "v9")),
                StatusCode::UPGRADE_REQUIRED,
            ),
            (
                GatewayError::Service(Error::forbidden("not a member")),
                StatusCode::FORBIDDEN,
            ),
            (
                GatewayError::BadRange { reason: "x".into() },
                StatusCode::BAD_REQUEST,
            ),
            (
                GatewayError::RangeNotSatisfiable {
                    message: "x".into(),
                    size: 3,
                },
                StatusCode::RANGE_NOT_SATISFIABLE,
            ),
        ];
        for (err, status) in cases {
            assert_eq!(err.into_response().status(), status);
        }
    }

    #[test]
    fn a_refusal_for_now_says_when_to_come_back() {
        let err = GatewayError::Service(Error::too_many_requests("slow down", 42));
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
    }
}
