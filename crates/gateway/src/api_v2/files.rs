//! The REST API's files and folders (`/api/v2/file...`, `/api/v2/folder...`,
//! `/api/v2/delta`): each handler verifies the signed request first, then
//! reads its parameters and calls one `Service::api_*` operation, which
//! decides everything (who may see and change what, the commit rules,
//! storage). Uploads and downloads stream; nothing here holds a file.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use stacksync_proto::Error;
use stacksync_service::{
    ApiCaller, ApiNode, Content, MAX_LIST_PAGE, NewContent, Placement, UploadTo,
};
use uuid::Uuid;

use super::Signed;
use super::account::caller;
use super::answers::{
    Item, api_refusal, bad_request, etag, if_match, item_response, none_match_holds,
};
use super::openapi::{
    ApiError, Delta, FileBytes, Folder, MemberAnswer, NewFolder, Page, People, Person,
    PlacementBody, SharedTo, UnsharedTo,
};
use crate::AppState;
use crate::served::{disposition, served_type};

/// Answers the refusal of a step, or goes on with its value.
macro_rules! attempt {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(refusal) => return Refusal::answer(refusal),
        }
    };
}

/// What a step that fails answers.
trait Refusal {
    fn answer(self) -> Response;
}

impl Refusal for Response {
    fn answer(self) -> Response {
        self
    }
}

impl Refusal for Error {
    fn answer(self) -> Response {
        api_refusal(&self)
    }
}

/// The query of a request, decoded as `application/x-www-form-urlencoded`.
fn query(signed: &Signed) -> HashMap<String, String> {
    let raw = signed.query().unwrap_or("");
    form_urlencoded(raw)
}

fn form_urlencoded(raw: &str) -> HashMap<String, String> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode_component(k)?, decode_component(v)?))
        })
        .collect()
}

fn decode_component(s: &str) -> Option<String> {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// An id in a path or parameter: a UUID, or `root` (the top folder,
/// where `root_ok`).
fn parse_id(raw: &str, root_ok: bool) -> Result<Option<Uuid>, Error> {
    if root_ok && raw == "root" {
        return Ok(None);
    }
    raw.parse::<Uuid>()
        .map(Some)
        .map_err(|_| Error::bad_request(format!("{raw:?} is not an id")))
}

fn required_id(raw: &str) -> Result<Uuid, Error> {
    raw.parse::<Uuid>()
        .map_err(|_| Error::bad_request(format!("{raw:?} is not an id")))
}

fn version_number(raw: &str) -> Result<u64, Error> {
    raw.parse::<u64>()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| Error::bad_request(format!("{raw:?} is not a version number")))
}

/// A JSON body of a small request.
fn json_body<T: for<'de> Deserialize<'de>>(signed: &Signed) -> Result<T, Error> {
    serde_json::from_slice(signed.body())
        .map_err(|e| Error::bad_request(format!("the JSON body: {e}")))
}

async fn verified(state: &AppState, signed: &Signed) -> Result<ApiCaller, Response> {
    caller(state, signed).await
}

fn refused(e: Error) -> Response {
    api_refusal(&e)
}

/// A request whose body is a file's bytes: verified on its head alone (a
/// body that is not form-encoded takes no part in an OAuth signature),
/// the body left to stream.
pub(crate) struct Streamed {
    pub(super) signed: Signed,
    pub(super) body: Body,
}

impl FromRequest<AppState> for Streamed {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        if form {
            let mut refusal = api_refusal(&Error::new(
                stacksync_proto::ErrorKind::BadRequest,
                "send a file's bytes as application/octet-stream (or its own type), not as a form",
            ));
            // The body is left unread: the connection cannot carry another request.
            refusal
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Err(refusal);
        }
        let (parts, body) = req.into_parts();
        let signed = Signed::head_only(parts, state).await;
        Ok(Streamed { signed, body })
    }
}

impl Streamed {
    /// The body for the service, and the MIME type the client gave it.
    fn content(self) -> NewContent {
        let mimetype = crate::served::given_type(self.signed.header(header::CONTENT_TYPE));
        NewContent::from_stream(self.body.into_data_stream(), mimetype)
    }
}

/// `POST /file?name=N&parent=ID`: a new file with the body as content.
#[utoipa::path(post, path = "/file", tag = "files",
    params(("name" = String, Query, description = "The file's name"),
           ("parent" = Option<String>, Query, description = "The folder's id (`root` or missing: the top folder)")),
    request_body(content = inline(FileBytes), content_type = "application/octet-stream", description = "The file's bytes"),
    responses((status = 201, description = "The new file", body = Item),
        (status = 403, description = "A read-only member writing, or an end-to-end encrypted folder's contents (the server holds no key)", body = ApiError),
        (status = 409, description = "The name is taken", body = ApiError),
        (status = 413, description = "Over the quota", body = ApiError),
        (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn create_file(State(state): State<AppState>, streamed: Streamed) -> Response {
    let caller = attempt!(verified(&state, &streamed.signed).await);
    let q = query(&streamed.signed);
    let Some(name) = q.get("name").cloned() else {
        return bad_request("say the file's name: ?name=");
    };
    let parent = match q.get("parent").map(String::as_str) {
        None | Some("") => None,
        Some(raw) => attempt!(parse_id(raw, true)),
    };
    let to = UploadTo::New { parent, name };
    match state
        .service
        .api_upload(&caller, to, streamed.content())
        .await
    {
        Ok(node) => item_response(StatusCode::CREATED, &node),
        Err(e) => refused(e),
    }
}

/// `PUT /file/{id}/data`: a new version with the body as content.
#[utoipa::path(put, path = "/file/{id}/data", tag = "files",
    params(("id" = String, Path, description = "The file or folder id", format = Uuid), ("If-Match" = Option<String>, Header, description = "The ETag of the version the change is based on: 409 if it is not the current one", nullable = false)),
    request_body(content = inline(FileBytes), content_type = "application/octet-stream", description = "The new content"),
    responses((status = 200, description = "The new version", body = Item),
        (status = 403, description = "A read-only member writing, or an end-to-end encrypted folder's contents (the server holds no key)", body = ApiError),
        (status = 409, description = "Stale If-Match", body = ApiError),
        (status = 413, description = "Over the quota", body = ApiError),
        (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    streamed: Streamed,
) -> Response {
    let caller = attempt!(verified(&state, &streamed.signed).await);
    let id = attempt!(required_id(&id));
    let if_match = if_match(streamed.signed.headers(), id);
    let to = UploadTo::Existing { id, if_match };
    match state
        .service
        .api_upload(&caller, to, streamed.content())
        .await
    {
        Ok(node) => item_response(StatusCode::OK, &node),
        Err(e) => refused(e),
    }
}

/// `GET /file/{id}`.
#[utoipa::path(get, path = "/file/{id}", tag = "files", params(("id" = String, Path, description = "The file or folder id", format = Uuid)),
    responses((status = 200, description = "The file's latest version", body = Item), (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn file(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    signed: Signed,
) -> Response {
    let caller = attempt!(verified(&state, &signed).await);
    let id = attempt!(required_id(&id));
    match state.service.api_node_of_kind(caller.user, id, false).await {
        Ok(node) => item_response(StatusCode::OK, &node),
        Err(e) => refused(e),
    }
}

/// `GET /file/{id}/data`.
#[utoipa::path(get, path = "/file/{id}/data", tag = "files",
    params(("id" = String, Path, description = "The file or folder id", format = Uuid), ("Range" = Option<String>, Header, description = "bytes=A-B, bytes=A- or bytes=-N", nullable = false),
           ("If-None-Match" = Option<String>, Header, description = "An ETag: 304 if it is the current version", nullable = false)),
    responses((status = 200, description = "The content, with the MIME type the uploader gave (application/octet-stream when none)", content_type = "*/*", body = inline(FileBytes)),
        (status = 403, description = "A file of an end-to-end encrypted folder (the server holds no key)", body = ApiError),
        (status = 206, description = "The range asked for (Content-Range), with the file's MIME type", content_type = "*/*", body = inline(FileBytes)),
        (status = 304, description = "Not modified"),
        (status = 416, description = "The range starts past the end", body = ApiError),
        (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn download(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    signed: Signed,
) -> Response {
    let caller = attempt!(verified(&state, &signed).await);
    let id = attempt!(required_id(&id));
    let node = match state.service.api_node_of_kind(caller.user, id, false).await {
        Ok(node) => node,
        Err(e) => return refused(e),
    };
    serve_content(&state, &node, signed.headers(), wants_attachment(&signed)).await
}

/// `GET /file/{id}/version/{n}/data`.
#[utoipa::path(get, path = "/file/{id}/version/{version}/data", tag = "versions",
    params(("id" = String, Path, description = "The file or folder id", format = Uuid), ("version" = u64, Path, description = "A version number, from 1", minimum = 1), ("Range" = Option<String>, Header, description = "bytes=A-B, bytes=A- or bytes=-N", nullable = false),
           ("If-None-Match" = Option<String>, Header, description = "An ETag: 304 if it is this version's", nullable = false)),
    responses((status = 200, description = "The version's content, with the MIME type the uploader gave (application/octet-stream when none)", content_type = "*/*", body = inline(FileBytes)),
        (status = 403, description = "A file of an end-to-end encrypted folder (the server holds no key)", body = ApiError),
        (status = 206, description = "The range asked for (Content-Range), with the file's MIME type", content_type = "*/*", body = inline(FileBytes)),
        (status = 304, description = "Not modified"),
        (status = 416, description = "The range starts past the end", body = ApiError),
        (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn version_download(
    State(state): State<AppState>,
    axum::extract::Path((id, version)): axum::extract::Path<(String, String)>,
    signed: Signed,
) -> Response {
    let caller = attempt!(verified(&state, &signed).await);
    let id = attempt!(required_id(&id));
    let version = attempt!(version_number(&version));
    let node = match state.service.api_version(caller.user, id, version).await {
        Ok(node) => node,
        Err(e) => return refused(e),
    };
    serve_content(&state, &node, signed.headers(), wants_attachment(&signed)).await
}

/// `?download=1`: the browser is to save the file, not show it.
fn wants_attachment(signed: &Signed) -> bool {
    query(signed)
        .get("download")
        .is_some_and(|v| v == "1" || v == "true")
}

/// A version's bytes: all of them (200), a range (206), not modified
/// (304) when `If-None-Match` holds its tag, 416 for a range outside it.
/// Shown in the browser only when harmless (and not asked as a download),
/// and then, except a PDF (whose viewer a sandbox stops), in a sandbox of
/// its own; anything else is an attachment, so a file can never run as a
/// page of this site.
pub(crate) async fn serve_content(
    state: &AppState,
    node: &ApiNode,
    headers: &HeaderMap,
    attachment: bool,
) -> Response {
    let ApiNode::Item { meta, .. } = node else {
        return bad_request("a folder has no content");
    };
    let tag = etag(meta.id.0, meta.version);
    if meta.status.is_live() && !meta.is_folder && none_match_holds(headers, &tag) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        insert(&mut r, header::ETAG, &tag);
        return r;
    }
    let range = match asked_range(headers, meta.size) {
        Ok(range) => range,
        Err(()) => {
            let mut r = api_refusal(&Error::bad_request(format!(
                "the range asked for is outside the file's {} bytes",
                meta.size
            )));
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            insert(
                &mut r,
                header::CONTENT_RANGE,
                &format!("bytes */{}", meta.size),
            );
            return r;
        }
    };
    let content: Content = match state.service.api_content(node, range).await {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let (start, end, size) = (content.start, content.end, content.size);
    let mut r = (status, Body::from_stream(content.body)).into_response();
    insert(&mut r, header::ETAG, &tag);
    insert(&mut r, header::ACCEPT_RANGES, "bytes");
    insert(&mut r, header::CONTENT_LENGTH, &(end - start).to_string());
    let (kind, harmless) = served_type(meta.mimetype.as_deref(), meta.name.as_str());
    let inline = !attachment && harmless;
    // Text is read as UTF-8 (a browser would guess otherwise).
    let shown_kind = if kind == "text/plain" {
        "text/plain; charset=utf-8"
    } else {
        kind.as_str()
    };
    insert(&mut r, header::CONTENT_TYPE, shown_kind);
    let how = if inline { "inline" } else { "attachment" };
    insert(
        &mut r,
        header::CONTENT_DISPOSITION,
        &disposition(how, meta.name.as_str()),
    );
    insert(&mut r, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if !(inline && kind == "application/pdf") {
        insert(
            &mut r,
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'",
        );
    }
    if range.is_some() {
        insert(
            &mut r,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{}/{size}", end.saturating_sub(1)),
        );
    }
    r
}

fn insert(r: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

/// The byte range a `Range` header asks of a file of `size` bytes
/// (`start..end`): `bytes=A-B`, `bytes=A-`, `bytes=-N`. `Ok(None)`: no
/// header, or one this server serves whole instead (several ranges, or
/// another unit; RFC 9110 lets a server ignore `Range`). `Err`: a range
/// that starts past the end (416).
fn asked_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let range = match (number(first), number(last)) {
        (Some(a), Some(b)) if a <= b => (a, b.saturating_add(1).min(size)),
        (Some(a), None) if last.trim().is_empty() => (a, size),
        (None, Some(n)) if first.trim().is_empty() => {
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size)
        }
        _ => return Ok(None),
    };
    if range.0 >= size {
        return Err(());
    }
    Ok(Some(range))
}

fn placement(body: PlacementBody) -> Result<Placement, Error> {
    let parent = match body.parent {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => Some(parse_id(&raw, true)?),
    };
    if body.name.is_none() && parent.is_none() {
        return Err(Error::bad_request(
            "say what changes: \"name\" and/or \"parent\"",
        ));
    }
    Ok(Placement {
        name: body.name,
        parent,
    })
}

/// `PUT /file/{id}` and `PUT /folder/{id}`: rename and/or move.
async fn place(state: AppState, id: String, signed: Signed, folder: bool) -> Response {
    let caller = attempt!(verified(&state, &signed).await);
    let id = attempt!(required_id(&id));
    if signed.body().trim_ascii_start().first() != Some(&b'{') {
        return bad_request("the body is a JSON object: {\"name\": ..., \"parent\": ...}");
    }
    let body: PlacementBody = attempt!(json_body(&signed));
    let placement = attempt!(placement(body));
    let if_match = if_match(signed.headers(), id);
    match state
        .service
        .api_place(&caller, id, folder, placement, if_match)
        .await
    {
        Ok(node) => item_response(StatusCode::OK, &node),
        Err(e) => refused(e),
    }
}

#[utoipa::path(put, path = "/file/{id}", tag = "files", params(("id" = String, Path, description = "The file or folder id", format = Uuid), ("If-Match" = Option<String>, Header, description = "The ETag of the version the change is based on: 409 if it is not the current one", nullable = false)),
    request_body = PlacementBody,
    responses((status = 200, description = "The renamed or moved file", body = Item),
        (status = 403, description = "A read-only member writing, or an end-to-end encrypted folder's contents (the server holds no key)", body = ApiError),
        (status = 409, description = "The name is taken, or a stale If-Match", body = ApiError), (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn place_file(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    signed: Signed,
) -> Response {
    place(state, id, signed, false).await
}

#[utoipa::path(put, path = "/folder/{id}", tag = "folders", params(("id" = String, Path, description = "The file or folder id", format = Uuid), ("If-Match" = Option<String>, Header, description = "The ETag of the version the change is based on: 409 if it is not the current one", nullable = false)),
    request_body = PlacementBody,
    responses((status = 200, description = "The renamed or moved folder", body = Item),
        (status = 403, description = "A read-only member writing, or an end-to-end encrypted folder's contents (the server holds no key)", body = ApiError),
        (status = 409, description = "The name is taken, or a stale If-Match", body = ApiError), (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn place_folder(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    signed: Signed,
) -> Response {
    place(state, id, signed, true).await
}

/// `DELETE /file/{id}` and `DELETE /folder/{id}`.
async fn delete(state: AppState, id: String, signed: Signed, folder: bool) -> Response {
    let caller = attempt!(verified(&state, &signed).await);
    let id = attempt!(required_id(&id));
    let if_match = if_match(signed.headers(), id);
    match state
        .service
        .api_delete(&caller, id, folder, if_match)
        .await
    {
        Ok(node) => item_response(StatusCode::OK, &node),
        Err(e) => refused(e),
    }
}

#[utoipa::path(delete, path = "/file/{id}", tag = "files", params(("id" = String, Path, description = "The file or folder id", format = Uuid), ("If-Match" = Option<String>, Header, description = "The ETag of the version the change is based on: 409 if it is not the current one", nullable = false)),
    responses((status = 200, description = "The deleted version", body = Item),
        (status = 403, description = "A read-only member writing, or an end-to-end encrypted folder's contents (the server holds no key)", body = ApiError),
        (status = 409, description = "A stale If-Match", body = ApiError), (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn delete_file(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    signed: Signed,
) -> Response {
    delete(state, id, signed, false).await
}

#[utoipa::path(delete, path = "/folder/{id}", tag = "folders", params(("id" = String, Path, description = "The file or folder id", format = Uuid), ("If-Match" = Option<String>, Header, description = "The ETag of the version the change is based on: 409 if it is not the current one", nullable = false)),
    responses((status = 200, description = "The deleted version (everything inside is deleted too)", body = Item),
        (status = 403, description = "A read-only member writing, or an end-to-end encrypted folder's contents (the server holds no key)", body = ApiError),
        (status = 409, description = "A stale If-Match, a shared folder's owner, or a shared folder inside", body = ApiError), (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn delete_folder(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    signed: Signed,
) -> Response {
    delete(state, id, signed, true).await
}

/// `GET /file/{id}/versions`.
#[utoipa::path(get, path = "/file/{id}/versions", tag = "versions", params(("id" = String, Path, description = "The file or folder id", format = Uuid)),
    responses((status = 200, description = "Every version, oldest first", body = Vec<Item>), (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn versions(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    signed: Signed,
) -> Response {
    let caller = attempt!(verified(&state, &signed).await);
    let id = attempt!(required_id(&id));
    match state.service.api_versions(caller.user, id, false).await {
        Ok(versions) => Json(versions.iter().map(Item::from).collect::<Vec<_>>()).into_response(),
        Err(e) => refused(e),
    }
}

/// `GET /file/{id}/version/{n}`.
#[utoipa::path(get, path = "/file/{id}/version/{version}", tag = "versions", params(("id" = String, Path, description = "The file or folder id", format = Uuid), ("version" = u64, Path, description = "A version number, from 1", minimum = 1)),
    responses((status = 200, description = "That version", body = Item), (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn version(
    State(state): State<AppState>,
    axum::extract::Path((id, version)): axum::extract::Path<(String, String)>,
    signed: Signed,
) -> Response {
    let caller = attempt!(verified(&state, &signed).await);
    let id = attempt!(required_id(&id));
    let version = attempt!(version_number(&version));
    match state.service.api_version(caller.user, id, version).await {
        Ok(node) => item_response(StatusCode::OK, &node),
        Err(e) => refused(e),
    }
}

/// `POST /file/{id}/version/{n}/restore`.
#[utoipa::path(post, path = "/file/{id}/version/{version}/restore", tag = "versions", params(("id" = String, Path, description = "The file or folder id", format = Uuid), ("version" = u64, Path, description = "A version number, from 1", minimum = 1)),
    responses((status = 200, description = "The new version, with that version's content", body = Item),
        (status = 403, description = "A read-only member writing, or an end-to-end encrypted folder's contents (the server holds no key)", body = ApiError),
        (status = 409, description = "The file changed meanwhile", body = ApiError), (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn restore(
    State(state): State<AppState>,
    axum::extract::Path((id, version)): axum::extract::Path<(String, String)>,
    signed: Signed,
) -> Response {
    let caller = attempt!(verified(&state, &signed).await);
    let id = attempt!(required_id(&id));
    let version = attempt!(version_number(&version));
    match state.service.api_restore(&caller, id, version).await {
        Ok(node) => item_response(StatusCode::OK, &node),
        Err(e) => refused(e),
    }
}

/// `POST /folder`.
#[utoipa::path(post, path = "/folder", tag = "folders", request_body = NewFolder,
    responses((status = 201, description = "The new folder", body = Item),
        (status = 403, description = "A read-only member writing, or an end-to-end encrypted folder's contents (the server holds no key)", body = ApiError),
        (status = 409, description = "The name is taken", body = ApiError), (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn create_folder(State(state): State<AppState>, signed: Signed) -> Response {
    let caller = attempt!(verified(&state, &signed).await);
    let body: NewFolder = attempt!(json_body(&signed));
    let parent = match body.parent.as_deref() {
        None => None,
        Some(raw) => attempt!(parse_id(raw, true)),
    };
    match state
        .service
        .api_create_folder(&caller, parent, &body.name)
        .await
    {
        Ok(node) => item_response(StatusCode::CREATED, &node),
        Err(e) => refused(e),
    }
}

/// The listing parameters of a folder read.
struct Listing {
    include_deleted: bool,
    limit: u32,
    cursor: Option<String>,
}

fn listing(signed: &Signed) -> Result<Listing, Error> {
    let q = query(signed);
    let include_deleted = match q.get("include_deleted").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(Error::bad_request(format!(
                "include_deleted is true or false, not {other:?}"
            )));
        }
    };
    let limit = match q.get("limit") {
        None => MAX_LIST_PAGE,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIST_PAGE).contains(n))
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "limit is a number from 1 to {MAX_LIST_PAGE}, not {raw:?}"
                ))
            })?,
    };
    Ok(Listing {
        include_deleted,
        limit,
        cursor: q.get("cursor").filter(|c| !c.is_empty()).cloned(),
    })
}

/// A folder's metadata with the first page of its contents (`contents`
/// false: the page alone, as `GET .../contents` answers).
async fn folder_answer(
    state: &AppState,
    signed: &Signed,
    id: Option<&str>,
    with_meta: bool,
) -> Response {
    let caller = attempt!(verified(state, signed).await);
    let id = match id {
        None => None,
        Some(raw) => attempt!(parse_id(raw, true)),
    };
    let listing = attempt!(listing(signed));
    let node = match id {
        None => state.service.api_node(caller.user, None).await,
        Some(id) => state.service.api_node_of_kind(caller.user, id, true).await,
    };
    let node = match node {
        Ok(node) => node,
        Err(e) => return refused(e),
    };
    let page = match state
        .service
        .api_children(
            caller.user,
            &node,
            listing.include_deleted,
            listing.limit,
            listing.cursor.as_deref(),
        )
        .await
    {
        Ok(page) => page,
        Err(e) => return refused(e),
    };
    let contents: Vec<Item> = page.children.iter().map(Item::from).collect();
    if with_meta {
        let mut r = item_response(StatusCode::OK, &node);
        let folder = Folder {
            item: Item::from(&node),
            contents,
            cursor: page.cursor,
        };
        *r.body_mut() = Body::from(serde_json::to_vec(&folder).unwrap_or_default());
        r
    } else {
        Json(Page {
            contents,
            cursor: page.cursor,
        })
        .into_response()
    }
}

/// `GET /folder`: the top folder.
#[utoipa::path(get, path = "/folder", tag = "folders",
    params(("include_deleted" = Option<bool>, Query, description = "List deleted children too"),
           ("limit" = Option<u32>, Query, description = "At most this many children (1-1000)", minimum = 1, maximum = 1000)),
    responses((status = 200, description = "The top folder with its first page of contents", body = Folder), (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn root_folder(State(state): State<AppState>, signed: Signed) -> Response {
    folder_answer(&state, &signed, None, true).await
}

/// `GET /folder/{id}`.
#[utoipa::path(get, path = "/folder/{id}", tag = "folders",
    params(("id" = String, Path, description = "The folder id (`root`: the top folder)", pattern = "^(root|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"), ("include_deleted" = Option<bool>, Query, description = "List deleted children too"),
           ("limit" = Option<u32>, Query, description = "At most this many children (1-1000)", minimum = 1, maximum = 1000)),
    responses((status = 200, description = "The folder with its first page of contents", body = Folder), (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn folder(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    signed: Signed,
) -> Response {
    folder_answer(&state, &signed, Some(&id), true).await
}

/// `GET /folder/{id}/contents` (`root` for the top folder).
#[utoipa::path(get, path = "/folder/{id}/contents", tag = "folders",
    params(("id" = String, Path, description = "The folder id (`root`: the top folder)", pattern = "^(root|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"), ("include_deleted" = Option<bool>, Query, description = "List deleted children too"),
           ("limit" = Option<u32>, Query, description = "At most this many children (1-1000)", minimum = 1, maximum = 1000),
           ("cursor" = Option<String>, Query, description = "The previous page's cursor")),
    responses((status = 200, description = "A page of the folder's contents", body = Page), (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn contents(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    signed: Signed,
) -> Response {
    folder_answer(&state, &signed, Some(&id), false).await
}

fn split(people: People) -> (Vec<String>, bool) {
    match people {
        People::List(emails) => (emails, false),
        People::Terms { emails, read_only } => (emails, read_only),
    }
}

fn persons(people: Vec<stacksync_service::Person>) -> Vec<Person> {
    people
        .into_iter()
        .map(|p| Person {
            name: p.name,
            email: p.email,
        })
        .collect()
}

/// `POST /folder/{id}/share`.
#[utoipa::path(post, path = "/folder/{id}/share", tag = "sharing", params(("id" = String, Path, description = "The file or folder id", format = Uuid)), request_body = People,
    responses((status = 200, description = "Who was invited", body = SharedTo),
        (status = 403, description = "Not the folder's owner", body = ApiError), (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn share(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    signed: Signed,
) -> Response {
    let caller = attempt!(verified(&state, &signed).await);
    let id = attempt!(required_id(&id));
    let body: People = attempt!(json_body(&signed));
    let (emails, read_only) = split(body);
    match state
        .service
        .api_share(&caller, id, &emails, read_only)
        .await
    {
        Ok(people) => Json(SharedTo {
            shared_to: persons(people),
        })
        .into_response(),
        Err(e) => refused(e),
    }
}

/// `POST /folder/{id}/unshare`.
#[utoipa::path(post, path = "/folder/{id}/unshare", tag = "sharing", params(("id" = String, Path, description = "The file or folder id", format = Uuid)), request_body = People,
    responses((status = 200, description = "Who was removed", body = UnsharedTo),
        (status = 403, description = "Not the folder's owner", body = ApiError), (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn unshare(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    signed: Signed,
) -> Response {
    let caller = attempt!(verified(&state, &signed).await);
    let id = attempt!(required_id(&id));
    let body: People = attempt!(json_body(&signed));
    let (emails, _) = split(body);
    match state.service.api_unshare(&caller, id, &emails).await {
        Ok(people) => Json(UnsharedTo {
            unshared_to: persons(people),
        })
        .into_response(),
        Err(e) => refused(e),
    }
}

/// `GET /folder/{id}/members`.
#[utoipa::path(get, path = "/folder/{id}/members", tag = "sharing", params(("id" = String, Path, description = "The file or folder id", format = Uuid)),
    responses((status = 200, description = "The shared folder's members", body = Vec<MemberAnswer>), (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn members(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    signed: Signed,
) -> Response {
    let caller = attempt!(verified(&state, &signed).await);
    let id = attempt!(required_id(&id));
    match state.service.api_members(caller.user, id).await {
        Ok(members) => Json(
            members
                .into_iter()
                .map(|m| MemberAnswer {
                    name: m.name,
                    email: m.email,
                    is_owner: m.is_owner,
                    read_only: m.read_only,
                    joined_at: match super::answers::rfc3339(m.joined_at) {
                        Value::String(t) => Some(t),
                        _ => None,
                    },
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => refused(e),
    }
}

/// `GET /delta?cursor=C&limit=L`.
#[utoipa::path(get, path = "/delta", tag = "changes",
    params(("cursor" = Option<String>, Query, description = "The previous answer's cursor (none: from the start)"),
           ("limit" = Option<u32>, Query, description = "At most this many entries (1-1000)", minimum = 1, maximum = 1000)),
    responses((status = 200, description = "Changes after the cursor", body = Delta), (status = 400, description = "A bad id, parameter, body or name", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn delta(State(state): State<AppState>, signed: Signed) -> Response {
    let caller = attempt!(verified(&state, &signed).await);
    let q = query(&signed);
    let limit = match q.get("limit") {
        None => stacksync_service::MAX_DELTA_PAGE,
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if (1..=stacksync_service::MAX_DELTA_PAGE).contains(&n) => n,
            _ => return bad_request(format!("limit is a number from 1 to 1000, not {raw:?}")),
        },
    };
    let cursor = q.get("cursor").filter(|c| !c.is_empty());
    match state
        .service
        .api_delta(caller.user, cursor.map(String::as_str), limit)
        .await
    {
        Ok(page) => Json(Delta {
            entries: page.entries.iter().map(Item::from).collect(),
            cursor: page.cursor,
            has_more: page.has_more,
        })
        .into_response(),
        Err(e) => refused(e),
    }
}

/// Any other method on an API route.
pub(crate) async fn method_not_allowed() -> Response {
    let body = ApiError {
        error: "method_not_allowed".to_owned(),
        description: "this method is not allowed here".to_owned(),
        current_version: None,
    };
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

/// Any other path under the API's prefix.
pub(crate) async fn no_such_endpoint() -> Response {
    api_refusal(&Error::not_found("no such API endpoint"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        asked_range(&h, size)
    }

    #[test]
    fn ranges_as_browsers_send_them() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some((0, 10))));
        assert_eq!(range("bytes=90-200", 100), Ok(Some((90, 100))));
        assert_eq!(range("bytes=10-", 100), Ok(Some((10, 100))));
        assert_eq!(range("bytes=-5", 100), Ok(Some((95, 100))));
        assert_eq!(range("bytes=-500", 100), Ok(Some((0, 100))));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=-0", 100), Err(()));
        assert_eq!(range("bytes=0-0", 0), Err(()));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(range("items=0-1", 100), Ok(None));
        assert_eq!(range("bytes=5-1", 100), Ok(None));
        assert_eq!(range("bytes=+1-2", 100), Ok(None));
    }

    #[test]
    fn queries_decode_like_forms() {
        let q = form_urlencoded("name=a%20b+c&parent=&x");
        assert_eq!(q["name"], "a b c");
        assert_eq!(q["parent"], "");
        assert_eq!(q["x"], "");
        assert!(!form_urlencoded("name=%FF").contains_key("name"));
    }
}
