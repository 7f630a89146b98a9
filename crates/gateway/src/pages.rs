//! The liveness check (readiness is `observe.rs`, the website `web/`).

use axum::Json;
use serde_json::{Value, json};

use crate::VERSION;

/// `GET /health`: the process serves HTTP. Always 200: whether what it
/// depends on answers is `/ready`'s question, so that a database outage
/// never gets a live server restarted.
pub(crate) async fn health() -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": VERSION,
    }))
}
