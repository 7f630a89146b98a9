//! Resumable upload sessions (`/api/v2/upload_session...`): a browser or
//! phone sends a big file in pieces and, after a dropped connection, asks
//! how much the server has and goes on from there. Each handler verifies
//! the signed request, reads its parameters and calls one
//! `Service::api_upload_session_*` operation, which keeps everything in
//! the metadata and blob stores (any server instance serves any request
//! of a session). A piece streams into storage; nothing here holds one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stacksync_proto::{Error, Millis};
use stacksync_service::{
    ApiCaller, FinishOptions, SessionRefusal, UploadPiece, UploadSession, UploadSessionRequest,
    UploadTo,
};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Signed;
use super::account::caller;
use super::answers::{Item, api_refusal, item_response, rfc3339};
use super::files::Streamed;
use super::openapi::{ApiError, FileBytes};
use crate::AppState;

/// A new upload session: a new file, or a new version of a file.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum NewSession {
    NewFile(NewFileSession),
    NewVersion(NewVersionSession),
}

/// A session for a new file.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewFileSession {
    /// The folder (`root`, `null` or missing: the top folder).
    #[serde(default)]
    pub parent: Option<String>,
    /// The file's name.
    pub name: String,
    /// The file's size in bytes.
    pub size: u64,
    /// A taken name becomes "name (1).ext", "name (2).ext"... at finish
    /// instead of being refused with 409.
    #[serde(default)]
    pub autorename: bool,
    /// The file's MIME type.
    #[serde(default)]
    #[schema(pattern = "^[!-~]+/[!-~]+$", max_length = 255)]
    pub mimetype: Option<String>,
}

/// A session for a new version of a file.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewVersionSession {
    /// The file.
    #[schema(format = Uuid)]
    pub id: String,
    /// The version the new one is based on (409 if it is not the current
    /// one, at creation and at finish).
    #[serde(default)]
    pub if_match: Option<u64>,
    /// The new content's size in bytes.
    pub size: u64,
}

/// What a finish may change (the body is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FinishSession {
    /// Another name for the new file (its name was taken meanwhile).
    #[serde(default)]
    pub name: Option<String>,
    /// Number a taken name instead of refusing it.
    #[serde(default)]
    pub autorename: Option<bool>,
}

/// Where an upload session stands.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionAnswer {
    /// The session's id.
    #[schema(format = Uuid)]
    pub id: String,
    /// Bytes the server holds: where the next piece starts.
    pub offset: u64,
    /// The file's size.
    pub size: u64,
    /// When the session expires unless a piece arrives (RFC 3339, UTC):
    /// 24 hours after its last piece.
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// A refused session request: the error, where the session stands (a
/// piece at another offset than the session's, a finish before every byte
/// is there), and the item in the way (the file holding the name, the
/// file's current version for a stale `if_match`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionRefused {
    pub error: String,
    pub description: String,
    /// A conflict with a newer version: the version the server has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
    /// The session's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Uuid)]
    pub id: Option<String>,
    /// Bytes the server holds: send the next piece from here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The file's size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// When the session expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// The item in the way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<Item>,
}

fn time_text(ms: Millis) -> String {
    match rfc3339(ms) {
        Value::String(s) => s,
        _ => String::new(),
    }
}

fn answer(status: StatusCode, session: &UploadSession) -> Response {
    let body = SessionAnswer {
        id: session.id.to_string(),
        offset: session.offset,
        size: session.size,
        expires_at: time_text(session.expires_at),
    };
    (status, Json(body)).into_response()
}

/// A refusal with what the client needs to go on.
fn refused(r: SessionRefusal) -> Response {
    let status = api_refusal(&r.error).status();
    let error = serde_json::to_value(r.error.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "internal".to_owned());
    let body = SessionRefused {
        error,
        description: r.error.message.clone(),
        current_version: r.error.current.as_ref().map(|c| c.version),
        id: r.session.as_ref().map(|s| s.id.to_string()),
        offset: r.session.as_ref().map(|s| s.offset),
        size: r.session.as_ref().map(|s| s.size),
        expires_at: r.session.as_ref().map(|s| time_text(s.expires_at)),
        item: r.existing.as_ref().map(Item::from),
    };
    let mut response = (status, Json(body)).into_response();
    if let Some(secs) = r.error.retry_after_secs
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

fn bad(message: impl Into<String>) -> Error {
    Error::bad_request(message)
}

/// Goes on with a step's value, or answers its refusal.
macro_rules! attempt {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return api_refusal(&e),
        }
    };
}

fn session_id(raw: &str) -> Result<Uuid, Error> {
    raw.parse::<Uuid>()
        .map_err(|_| bad(format!("{raw:?} is not an upload session id")))
}

fn item_id(raw: &str, root_ok: bool) -> Result<Option<Uuid>, Error> {
    if raw.is_empty() || (root_ok && raw == "root") {
        return Ok(None);
    }
    raw.parse::<Uuid>()
        .map(Some)
        .map_err(|_| bad(format!("{raw:?} is not an id")))
}

/// A MIME type as a client may give it: `type/subtype` in visible ASCII.
fn mimetype(raw: Option<String>) -> Result<Option<String>, Error> {
    let Some(raw) = raw else { return Ok(None) };
    let t = raw.trim().to_ascii_lowercase();
    if t.is_empty() || t == "application/octet-stream" {
        return Ok(None);
    }
    let ok = t.len() <= 255 && t.contains('/') && t.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(bad(format!("{raw:?} is not a MIME type")));
    }
    Ok(Some(t))
}

fn request_of(body: NewSession) -> Result<UploadSessionRequest, Error> {
    Ok(match body {
        NewSession::NewFile(f) => UploadSessionRequest {
            to: UploadTo::New {
                parent: item_id(f.parent.as_deref().unwrap_or(""), true)?,
                name: f.name,
            },
            size: f.size,
            autorename: f.autorename,
            mimetype: mimetype(f.mimetype)?,
        },
        NewSession::NewVersion(v) => UploadSessionRequest {
            to: UploadTo::Existing {
                id: item_id(&v.id, false)?.ok_or_else(|| bad("\"id\" is empty"))?,
                if_match: v.if_match,
            },
            size: v.size,
            autorename: false,
            mimetype: None,
        },
    })
}

async fn verified(state: &AppState, signed: &Signed) -> Result<ApiCaller, Response> {
    caller(state, signed).await
}

/// `POST /upload_session`.
#[utoipa::path(post, path = "/upload_session", tag = "upload sessions", operation_id = "upload_session_create", request_body = NewSession,
    responses((status = 201, description = "The session, at offset 0", body = SessionAnswer, links(
            ("send" = (operation_id = "upload_session_append", parameters(("id" = "$response.body#/id"), ("offset" = "$response.body#/offset")))),
            ("status" = (operation_id = "upload_session_status", parameters(("id" = "$response.body#/id")))),
            ("finish" = (operation_id = "upload_session_finish", parameters(("id" = "$response.body#/id")))),
            ("cancel" = (operation_id = "upload_session_cancel", parameters(("id" = "$response.body#/id")))))),
        (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 403, description = "A read-only member writing, or an end-to-end encrypted folder's contents (the server holds no key)", body = ApiError),
        (status = 404, description = "No such folder or file, or not the caller's", body = ApiError),
        (status = 409, description = "The name is taken (`item`: the item holding it), or `if_match` is stale (`item`: the file as it is)", body = SessionRefused),
        (status = 413, description = "The size does not fit what is left of the quota once the other open sessions' sizes are reserved", body = ApiError),
        (status = 429, description = "32 sessions are open, the most a user may have (Retry-After: until the soonest expires)", body = ApiError)))]
pub(crate) async fn create(State(state): State<AppState>, signed: Signed) -> Response {
    let caller = match verified(&state, &signed).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let body: NewSession = attempt!(serde_json::from_slice(signed.body()).map_err(|_| bad(
        "the JSON body: say {\"name\", \"size\"} and maybe \"parent\", \"autorename\", \
         \"mimetype\" (a new file), or {\"id\", \"size\"} and maybe \"if_match\" (a new \
         version of a file), and nothing else"
    )));
    let request = attempt!(request_of(body));
    match state
        .service
        .api_upload_session_create(&caller, request)
        .await
    {
        Ok(session) => answer(StatusCode::CREATED, &session),
        Err(r) => refused(r),
    }
}

/// `GET /upload_session/{id}`.
#[utoipa::path(get, path = "/upload_session/{id}", tag = "upload sessions", operation_id = "upload_session_status",
    params(("id" = String, Path, description = "The upload session's id", format = Uuid)),
    responses((status = 200, description = "Where the session stands", body = SessionAnswer),
        (status = 400, description = "A bad id", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such open session of the caller's (finished, cancelled, expired, or another user's)", body = ApiError)))]
pub(crate) async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: Signed,
) -> Response {
    let caller = match verified(&state, &signed).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let id = attempt!(session_id(&id));
    match state.service.api_upload_session_status(&caller, id).await {
        Ok(session) => answer(StatusCode::OK, &session),
        Err(e) => api_refusal(&e),
    }
}

/// The `offset` the query names.
fn offset(signed: &Signed) -> Result<u64, Error> {
    let raw = signed
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("offset="))
        .ok_or_else(|| bad("say where the piece starts: ?offset="))?;
    let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| raw.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| bad(format!("{raw:?} is not an offset")))
}

/// `PUT /upload_session/{id}?offset=K`.
#[utoipa::path(put, path = "/upload_session/{id}", tag = "upload sessions", operation_id = "upload_session_append",
    params(("id" = String, Path, description = "The upload session's id", format = Uuid),
           ("offset" = u64, Query, description = "Where the piece starts: the session's offset")),
    request_body(content = inline(FileBytes), content_type = "application/octet-stream", description = "The next piece of the file: at most 64 MiB, never past its size"),
    responses((status = 200, description = "The piece is stored; where the session stands now", body = SessionAnswer, links(
            ("send" = (operation_id = "upload_session_append", parameters(("id" = "$response.body#/id"), ("offset" = "$response.body#/offset")))),
            ("finish" = (operation_id = "upload_session_finish", parameters(("id" = "$response.body#/id")))))),
        (status = 400, description = "A bad id or offset, a piece past the file's size, or a piece cut off (nothing of it is kept; `offset` says where to go on)", body = SessionRefused),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such open session of the caller's", body = ApiError),
        (status = 409, description = "The session holds another number of bytes than `offset` (`offset`: where to send the next piece from), or it is being finished", body = SessionRefused),
        (status = 413, description = "A piece over 64 MiB", body = SessionRefused),
        (status = 429, description = "Too many pieces of the session are being sent at once", body = ApiError)))]
pub(crate) async fn append(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Streamed,
) -> Response {
    let mut response = store_piece(state, id, request).await;
    if !response.status().is_success() {
        // The piece may be unread (refused on its head) or half read: the
        // connection cannot carry another request, and a client must not
        // send one on it.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn store_piece(state: AppState, id: String, request: Streamed) -> Response {
    let caller = match verified(&state, &request.signed).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let id = attempt!(session_id(&id));
    let offset = attempt!(offset(&request.signed));
    let declared = request
        .signed
        .header(header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<u64>().ok());
    let piece = UploadPiece::from_stream(request.body.into_data_stream(), declared);
    match state
        .service
        .api_upload_session_append(&caller, id, offset, piece)
        .await
    {
        Ok(session) => answer(StatusCode::OK, &session),
        Err(r) => refused(r),
    }
}

/// `POST /upload_session/{id}/finish`.
#[utoipa::path(post, path = "/upload_session/{id}/finish", tag = "upload sessions", operation_id = "upload_session_finish",
    params(("id" = String, Path, description = "The upload session's id", format = Uuid)),
    request_body(content = Option<FinishSession>, description = "Optional: another name, or autorename"),
    responses((status = 201, description = "The new file. A finish is safe to retry: for 24 hours, a finish of a session that already committed its file answers that file again (the version it committed)", body = Item),
        (status = 200, description = "The file's new version (answered again to a retried finish, as for 201)", body = Item),
        (status = 400, description = "A bad id, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 403, description = "The caller may no longer write there", body = SessionRefused),
        (status = 404, description = "No such session of the caller's (cancelled, expired, finished more than 24 hours ago, or another user's), or its folder or file is gone", body = SessionRefused),
        (status = 409, description = "Not every byte is there yet (`offset`), another request is finishing it, the name was taken meanwhile or `if_match` is stale (`item`); the session is kept: finish again, maybe with another name or autorename", body = SessionRefused),
        (status = 413, description = "Over the quota", body = SessionRefused)))]
pub(crate) async fn finish(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: Signed,
) -> Response {
    let caller = match verified(&state, &signed).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let id = attempt!(session_id(&id));
    let body = signed.body();
    // No body, or `null`: the session's own name and autorename.
    let options: FinishSession = if body.iter().all(u8::is_ascii_whitespace) {
        FinishSession::default()
    } else {
        let parsed: Option<FinishSession> =
            attempt!(serde_json::from_slice(body).map_err(|e| bad(format!("the JSON body: {e}"))));
        parsed.unwrap_or_default()
    };
    let options = FinishOptions {
        name: options.name,
        autorename: options.autorename,
    };
    match state
        .service
        .api_upload_session_finish(&caller, id, options)
        .await
    {
        Ok(done) => {
            let status = if done.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            item_response(status, &done.node)
        }
        Err(r) => refused(r),
    }
}

/// `DELETE /upload_session/{id}`.
#[utoipa::path(delete, path = "/upload_session/{id}", tag = "upload sessions", operation_id = "upload_session_cancel",
    params(("id" = String, Path, description = "The upload session's id", format = Uuid)),
    responses((status = 204, description = "Cancelled: what it staged is deleted"),
        (status = 400, description = "A bad id", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such open session of the caller's", body = ApiError),
        (status = 409, description = "It is being finished", body = ApiError)))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: Signed,
) -> Response {
    let caller = match verified(&state, &signed).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let id = attempt!(session_id(&id));
    match state.service.api_upload_session_cancel(&caller, id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => api_refusal(&e),
    }
}
