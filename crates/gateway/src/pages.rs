//! The human-facing endpoints: a landing page and a health check.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Html;
use serde_json::{Value, json};
use stacksync_service::Service;

use crate::VERSION;

/// `GET /`: says what this server is and where its API lives.
pub(crate) async fn index() -> Html<String> {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
         <title>StackSync server</title></head>\n<body>\n\
         <h1>StackSync server</h1>\n<p>Version {VERSION}.</p>\n<ul>\n\
         <li><a href=\"/health\">Health</a></li>\n\
         <li>Client gateway: <code>/api/v1/login</code>, <code>/api/v1/rpc</code>, \
         <code>/api/v1/notifications</code> (WebSocket), \
         <code>/api/v1/workspaces/{{ws}}/chunks/{{id}}</code></li>\n\
         </ul>\n</body>\n</html>\n"
    ))
}

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
