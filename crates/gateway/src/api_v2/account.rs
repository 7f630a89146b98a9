//! The first REST API v2 endpoints: `GET /api/v2/account` (the user the
//! signed request acts for: email, name, quota and usage) and the user's
//! authorised apps (`GET /api/v2/apps`, `DELETE /api/v2/apps/{key}`).
//! Every request is verified by the service before anything is read;
//! errors are JSON `{"error": CODE, "description": ...}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use stacksync_service::ApiCaller;

use super::Signed;
use super::answers::api_refusal;
use super::endpoints::json_refusal;
use super::openapi::{AccountAnswer, ApiError, AppAnswer, Apps, Revoked};
use crate::{AppState, web};
use axum::http::{HeaderName, Method};
use stacksync_proto::Error;

/// The app name under which a browser's changes are made (its device).
pub(crate) const WEB_APP: &str = "Website";

/// The app name under which a desktop client's requests are made (the
/// file manager's "Copy shared link", through the client's daemon).
pub(crate) const DESKTOP_APP: &str = "Desktop client";

/// The request's caller, or the refusal to send: an OAuth 1.0a signed
/// request, a desktop device's session token (`Authorization: Bearer`, as
/// its RPCs carry it: a browser never adds that header on its own, so it
/// needs no CSRF token), or a browser's session cookie (with the session's
/// CSRF token on anything but GET and HEAD).
pub(super) async fn caller(state: &AppState, signed: &Signed) -> Result<ApiCaller, Response> {
    if let Some(token) = signed
        .header(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        let user = state
            .service
            .authenticate(token.trim())
            .await
            .map_err(|e| api_refusal(&e))?;
        return Ok(ApiCaller {
            user,
            consumer_key: DESKTOP_APP.to_owned(),
        });
    }
    let oauth = signed
        .headers()
        .contains_key(axum::http::header::AUTHORIZATION)
        || signed.query().is_some_and(|q| q.contains("oauth_"));
    if !oauth && let Some(token) = web::cookie(signed.headers(), web::SESSION_COOKIE) {
        return browser_caller(state, signed, token).await;
    }
    let request = signed.http().map_err(|e| json_refusal(&e.into()))?;
    state
        .service
        .verify_api_request(&request, signed.origin.transport)
        .await
        .map_err(|e| json_refusal(&e))
}

/// A browser's session: its user, once the CSRF token of a change holds.
async fn browser_caller(
    state: &AppState,
    signed: &Signed,
    token: &str,
) -> Result<ApiCaller, Response> {
    let user = state
        .service
        .authenticate(token)
        .await
        .map_err(|e| api_refusal(&e))?;
    let safe = matches!(signed.method, Method::GET | Method::HEAD);
    if !safe
        && !web::csrf_holds(
            token,
            signed.header(HeaderName::from_static(web::CSRF_HEADER)),
        )
    {
        return Err(api_refusal(&Error::forbidden(
            "a change made with a browser session must carry the page's X-CSRF-Token",
        )));
    }
    Ok(ApiCaller {
        user,
        consumer_key: WEB_APP.to_owned(),
    })
}

/// `GET /api/v2/account`.
#[utoipa::path(get, path = "/account", tag = "account",
    responses((status = 200, description = "The account", body = AccountAnswer), (status = 400, description = "A malformed OAuth request (RFC 5849 section 3.2): a duplicated or unsupported parameter, or a signature method the server does not take", body = ApiError), (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError)))]
pub(crate) async fn account(State(state): State<AppState>, signed: Signed) -> Response {
    let caller = match caller(&state, &signed).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    match state.service.account(caller.user).await {
        Ok(account) => Json(AccountAnswer {
            user_id: account.id.to_string(),
            email: account.email,
            name: account.name,
            quota_limit: account.quota_limit,
            quota_used: account.quota_used,
        })
        .into_response(),
        Err(e) => api_refusal(&e),
    }
}

/// `GET /api/v2/apps`: the apps the user authorised.
#[utoipa::path(get, path = "/apps", tag = "account",
    responses((status = 200, description = "The apps the user authorised", body = Apps), (status = 400, description = "A malformed OAuth request (RFC 5849 section 3.2): a duplicated or unsupported parameter, or a signature method the server does not take", body = ApiError), (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError)))]
pub(crate) async fn apps(State(state): State<AppState>, signed: Signed) -> Response {
    let caller = match caller(&state, &signed).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    match state.service.authorized_apps(caller.user).await {
        Ok(apps) => {
            let apps = apps
                .into_iter()
                .map(|app| AppAnswer {
                    key: app.consumer_key,
                    name: app.name,
                    authorized_at: app.authorized_at,
                })
                .collect();
            Json(Apps { apps }).into_response()
        }
        Err(e) => api_refusal(&e),
    }
}

/// `DELETE /api/v2/apps/{key}`: ends the app's access to the user's
/// account (every access token it holds for them).
#[utoipa::path(delete, path = "/apps/{key}", tag = "account", params(("key" = String, Path, description = "The app's consumer key")),
    responses((status = 200, description = "The app's access ended", body = Revoked),
        (status = 404, description = "No such app authorised", body = ApiError), (status = 400, description = "A malformed OAuth request (RFC 5849 section 3.2): a duplicated or unsupported parameter, or a signature method the server does not take", body = ApiError), (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Path(key): Path<String>,
    signed: Signed,
) -> Response {
    let caller = match caller(&state, &signed).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    match state.service.revoke_app(caller.user, &key).await {
        Ok(()) => Json(Revoked { revoked: key }).into_response(),
        Err(e) => api_refusal(&e),
    }
}
