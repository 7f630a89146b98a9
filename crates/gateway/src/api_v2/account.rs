//! The first REST API v2 endpoints: `GET /api/v2/account` (the user the
//! signed request acts for: email, name, quota and usage) and the user's
//! authorised apps (`GET /api/v2/apps`, `DELETE /api/v2/apps/{key}`).
//! Every request is verified by the service before anything is read;
//! errors are JSON `{"error": CODE, "description": ...}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use stacksync_proto::Error;
use stacksync_service::ApiCaller;

use super::Signed;
use super::endpoints::json_refusal;
use crate::AppState;

/// A service error as the API answers it.
fn service_refusal(e: &Error) -> Response {
    let status =
        StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = serde_json::to_value(e.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "internal".to_owned());
    (
        status,
        Json(json!({"error": code, "description": e.message})),
    )
        .into_response()
}

/// The signed request's caller, or the refusal to send.
async fn caller(state: &AppState, signed: &Signed) -> Result<ApiCaller, Response> {
    let request = signed.http().map_err(|e| json_refusal(&e.into()))?;
    state
        .service
        .verify_api_request(&request, signed.origin.transport)
        .await
        .map_err(|e| json_refusal(&e))
}

/// `GET /api/v2/account`.
pub(crate) async fn account(State(state): State<AppState>, signed: Signed) -> Response {
    let caller = match caller(&state, &signed).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    match state.service.account(caller.user).await {
        Ok(account) => Json(json!({
            "user_id": account.id.to_string(),
            "email": account.email,
            "name": account.name,
            "quota_limit": account.quota_limit,
            "quota_used": account.quota_used,
        }))
        .into_response(),
        Err(e) => service_refusal(&e),
    }
}

/// `GET /api/v2/apps`: the apps the user authorised.
pub(crate) async fn apps(State(state): State<AppState>, signed: Signed) -> Response {
    let caller = match caller(&state, &signed).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    match state.service.authorized_apps(caller.user).await {
        Ok(apps) => {
            let apps: Vec<_> = apps
                .into_iter()
                .map(|app| {
                    json!({
                        "key": app.consumer_key,
                        "name": app.name,
                        "authorized_at": app.authorized_at,
                    })
                })
                .collect();
            Json(json!({ "apps": apps })).into_response()
        }
        Err(e) => service_refusal(&e),
    }
}

/// `DELETE /api/v2/apps/{key}`: ends the app's access to the user's
/// account (every access token it holds for them).
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
        Ok(()) => Json(json!({ "revoked": key })).into_response(),
        Err(e) => service_refusal(&e),
    }
}
