//! The health check (the website is `web/`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use stacksync_service::Service;

use crate::VERSION;

/// `GET /health`: the process serves HTTP and its metadata database
/// answers (without it nothing works); 503 when the database does not.
pub(crate) async fn health(State(service): State<Service>) -> (StatusCode, Json<Value>) {
    let db_ok = service
        .store()
        .user_by_email("health@check.invalid")
        .await
        .is_ok();
    let status = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if db_ok { "ok" } else { "degraded" },
        "version": VERSION,
        "database": db_ok,
    });
    (status, Json(body))
}
