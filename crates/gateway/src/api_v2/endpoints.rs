//! The OAuth 1.0a credential endpoints (RFC 5849 2.1, 2.3) and how every
//! OAuth refusal is answered: on these endpoints form-encoded
//! (`oauth_problem` and a readable `oauth_problem_advice`), on the API as
//! JSON (`{"error": CODE, "description": ...}`), with the status
//! `OAuthError::http_status` gives and `WWW-Authenticate` on a 401.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use stacksync_service::stacksync_oauth::{IssuedCredentials, OAuthError, percent_encode};

use super::{Signed, Unsignable};
use crate::AppState;

impl From<Unsignable> for OAuthError {
    fn from(e: Unsignable) -> OAuthError {
        match e {
            Unsignable::NoHost => OAuthError::BadRequestUrl("no single Host header"),
            Unsignable::SeveralAuthorizations => {
                OAuthError::MalformedHeader("several Authorization header fields")
            }
        }
    }
}

fn status_of(e: &OAuthError) -> StatusCode {
    if e.http_status() >= 500 {
        tracing::warn!(error = %e, "OAuth endpoint failed");
    }
    StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Adds `WWW-Authenticate: OAuth realm=...` to a 401.
fn challenge(mut response: Response) -> Response {
    if response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("OAuth realm=\"StackSync\""),
        );
    }
    response
}

/// An OAuth endpoint's refusal, form-encoded (OAuth Problem Reporting).
pub(crate) fn form_refusal(e: &OAuthError) -> Response {
    let body = format!(
        "oauth_problem={}&oauth_problem_advice={}",
        e.problem(),
        percent_encode(&e.to_string())
    );
    challenge(
        (
            status_of(e),
            [(header::CONTENT_TYPE, "application/x-www-form-urlencoded")],
            body,
        )
            .into_response(),
    )
}

/// An API request's OAuth refusal, as JSON. A request with no OAuth
/// parameters at all is unauthenticated (401), not malformed.
pub(crate) fn json_refusal(e: &OAuthError) -> Response {
    if matches!(e, OAuthError::MissingParameter("oauth_consumer_key")) {
        let body = serde_json::json!({
            "error": "unsigned",
            "description": "the request is not signed: sign it with OAuth 1.0a (HMAC-SHA1) \
                            with the app's key and the user's access token",
        });
        return challenge((StatusCode::UNAUTHORIZED, axum::Json(body)).into_response());
    }
    let body = serde_json::json!({
        "error": e.problem(),
        "description": e.to_string(),
    });
    challenge((status_of(e), axum::Json(body)).into_response())
}

/// Issued credentials, form-encoded, never cached.
fn issued(body: String) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// `POST /oauth/request_token`.
pub(crate) async fn request_token(State(state): State<AppState>, signed: Signed) -> Response {
    let result = match signed.http() {
        Ok(request) => {
            state
                .service
                .oauth_request_token(&request, signed.origin.transport)
                .await
        }
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(credentials) => issued(IssuedCredentials::temporary_credentials_body(&credentials)),
        Err(e) => form_refusal(&e),
    }
}

/// `POST /oauth/access_token`.
pub(crate) async fn access_token(State(state): State<AppState>, signed: Signed) -> Response {
    let result = match signed.http() {
        Ok(request) => {
            state
                .service
                .oauth_access_token(&request, signed.origin.transport)
                .await
        }
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(credentials) => issued(credentials.token_credentials_body()),
        Err(e) => form_refusal(&e),
    }
}
