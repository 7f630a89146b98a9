//! Resource Owner Authorization (RFC 5849 2.2): `GET /oauth/authorize?
//! oauth_token=` shows the app asking and a form (email, password, Allow /
//! Deny); `POST /oauth/authorize` answers it.
//!
//! Against a forged approval: approving needs the user's password, checked
//! by the service's one throttled password check, so a page elsewhere that
//! posts this form for the user (there is no cookie or session to ride on)
//! gets nothing without it; the request token in the form is itself an
//! unguessable secret of this flow, and the page may not be framed.
//! Denying needs no password: it only deletes a request token.

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use stacksync_proto::{Error, ErrorKind};

use super::Origin;
use super::page::{form, message, page};
use crate::AppState;
use crate::auth::PeerAddr;

/// The page's query.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenQuery {
    oauth_token: Option<String>,
}

/// The form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct Answer {
    oauth_token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    action: String,
}

fn status_of(e: &Error) -> StatusCode {
    StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A refusal that is not about the password.
fn refused(e: &Error) -> Response {
    if e.kind == ErrorKind::NotFound {
        return message(
            StatusCode::NOT_FOUND,
            "Request not found",
            "This authorization request is unknown, expired or already answered. \
             Go back to the app and start again.",
        );
    }
    message(status_of(e), "Something went wrong", &e.message)
}

/// `GET /oauth/authorize?oauth_token=...`.
pub(crate) async fn page_for(
    State(state): State<AppState>,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Response {
    let token = match query {
        Ok(Query(TokenQuery {
            oauth_token: Some(token),
        })) if !token.is_empty() => token,
        _ => {
            return message(
                StatusCode::BAD_REQUEST,
                "Missing request token",
                "This page needs the oauth_token the app was given.",
            );
        }
    };
    match state.service.oauth_pending(&token).await {
        Ok(app) => form(StatusCode::OK, &app.name, &token, "", None),
        Err(e) => refused(&e),
    }
}

/// `POST /oauth/authorize`.
pub(crate) async fn answer(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    uri: Uri,
    headers: HeaderMap,
    answer: Result<Form<Answer>, FormRejection>,
) -> Response {
    let Ok(Form(answer)) = answer else {
        return message(
            StatusCode::BAD_REQUEST,
            "Bad form",
            "The form was not sent whole; go back to the app and start again.",
        );
    };
    let origin = Origin::of(&state.api, peer, &uri, &headers);
    match answer.action.as_str() {
        "deny" => match state.service.oauth_deny(&answer.oauth_token).await {
            Ok(app) => message(
                StatusCode::OK,
                "Access denied",
                &format!("{app} was not given access to your account. You may close this page."),
            ),
            Err(e) => refused(&e),
        },
        "allow" => {
            let approved = state
                .service
                .oauth_approve(
                    &answer.oauth_token,
                    &answer.email,
                    &answer.password,
                    origin.client,
                )
                .await;
            match approved {
                Ok(approval) => match approval.redirect {
                    Some(url) => redirect(&url),
                    None => page(
                        StatusCode::OK,
                        "Access allowed",
                        &format!(
                            "<p>{app} may now use your account. Give it this code:</p>\
                             <p><code id=\"verifier\">{verifier}</code></p>",
                            app = super::page::escape(&approval.app),
                            verifier = super::page::escape(&approval.verifier),
                        ),
                    ),
                },
                Err(e)
                    if matches!(
                        e.kind,
                        ErrorKind::Unauthenticated
                            | ErrorKind::TooManyRequests
                            | ErrorKind::Unavailable
                    ) =>
                {
                    // The form again, for another try, if the token is
                    // still waiting.
                    let app = match state.service.oauth_pending(&answer.oauth_token).await {
                        Ok(app) => app.name,
                        Err(e) => return refused(&e),
                    };
                    let mut response = form(
                        status_of(&e),
                        &app,
                        &answer.oauth_token,
                        &answer.email,
                        Some(&e.message),
                    );
                    if let Some(secs) = e.retry_after_secs
                        && let Ok(value) = HeaderValue::from_str(&secs.to_string())
                    {
                        response.headers_mut().insert(header::RETRY_AFTER, value);
                    }
                    response
                }
                Err(e) => refused(&e),
            }
        }
        _ => message(StatusCode::BAD_REQUEST, "Bad form", "Choose Allow or Deny."),
    }
}

/// 302 to the app's callback with the token and verifier.
fn redirect(url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(location) => (
            StatusCode::FOUND,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ),
            ],
        )
            .into_response(),
        Err(_) => message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "The app's callback address cannot be used.",
        ),
    }
}
