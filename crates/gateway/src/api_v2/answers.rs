//! How the REST API answers: an item (file, folder, version) as the
//! original's JSON with our additions, its `ETag`, `If-Match` read back
//! into the version it names, and every refusal as JSON
//! `{"error": CODE, "description": ...}` with the API's status for it.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use stacksync_proto::{Error, ErrorKind, ItemStatus, Millis};
use utoipa::ToSchema;

use super::openapi::ApiError;
use stacksync_service::ApiNode;
use uuid::Uuid;

/// A refusal as the API sends it. The API answers quota exhaustion 413
/// (the desktop protocol's 507 says the same to sync clients).
pub(crate) fn api_refusal(e: &Error) -> Response {
    let status = match e.kind {
        ErrorKind::QuotaExceeded => StatusCode::PAYLOAD_TOO_LARGE,
        kind => {
            StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
    };
    if status.is_server_error() {
        tracing::warn!(error = %e, "API request failed");
    }
    let code = serde_json::to_value(e.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "internal".to_owned());
    let body = ApiError {
        error: code,
        description: e.message.clone(),
        // A conflict says what the server has now.
        current_version: e.current.as_ref().map(|c| c.version),
    };
    (status, Json(body)).into_response()
}

/// A refusal of the request itself (a bad id, query or body).
pub(crate) fn bad_request(message: impl Into<String>) -> Response {
    api_refusal(&Error::bad_request(message))
}

/// The `ETag` of a version of item `id`.
pub(crate) fn etag(id: Uuid, version: u64) -> String {
    format!("\"{id}.{version}\"")
}

/// The version an `If-Match` header names for item `id`: `None` without
/// one or for `*`; a tag of another item, or one this server never gave,
/// names version 0, which never matches.
pub(crate) fn if_match(headers: &HeaderMap, id: Uuid) -> Option<u64> {
    let value = headers.get(header::IF_MATCH)?.to_str().unwrap_or("").trim();
    if value == "*" {
        return None;
    }
    let tag = value.strip_prefix("W/").unwrap_or(value).trim_matches('"');
    Some(
        tag.split_once('.')
            .filter(|(tag_id, _)| tag_id.parse::<Uuid>().ok() == Some(id))
            .and_then(|(_, version)| version.parse().ok())
            .unwrap_or(0),
    )
}

/// Whether an `If-None-Match` header holds `tag`.
pub(crate) fn none_match_holds(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}

/// RFC 3339 (UTC, milliseconds) of a time in milliseconds since the epoch.
pub(crate) fn rfc3339(ms: Millis) -> Value {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::String)
}

/// What a version did to its item.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum Status {
    /// The first version.
    New,
    /// New content.
    Changed,
    /// A new name in the same folder.
    Renamed,
    /// Another folder (and maybe another name).
    Moved,
    /// Deleted (history is kept; it can be restored).
    Deleted,
}

impl From<ItemStatus> for Status {
    fn from(s: ItemStatus) -> Status {
        match s {
            ItemStatus::New => Status::New,
            ItemStatus::Changed => Status::Changed,
            ItemStatus::Renamed => Status::Renamed,
            ItemStatus::Moved => Status::Moved,
            ItemStatus::Deleted => Status::Deleted,
        }
    }
}

/// A file, a folder or one version of either. The top folder has no id;
/// a shared folder's id is its own (it has no versions).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Item {
    /// The id (`null` for the top folder).
    #[schema(format = Uuid)]
    pub id: Option<String>,
    /// The folder holding it (`null`: the top folder, or none).
    #[schema(format = Uuid)]
    pub parent_id: Option<String>,
    /// Its name (empty for the top folder).
    pub filename: String,
    /// Whether it is a folder.
    pub is_folder: bool,
    /// Present (true) on the top folder only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_root: Option<bool>,
    /// Present (true) on a shared folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_shared: Option<bool>,
    /// On a shared folder: whether the caller may only read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// What this version did (`null` for the top folder and shared folders).
    pub status: Option<Status>,
    /// The version number, from 1.
    pub version: Option<u64>,
    /// BLAKE3 of the content, hex (files only).
    pub checksum: Option<String>,
    /// Size in bytes (0 for folders).
    pub size: u64,
    /// The MIME type the uploader gave.
    pub mimetype: Option<String>,
    /// When the server took this version (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub modified_at: Option<String>,
    /// When the uploader says the content was last modified.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub client_modified_at: Option<String>,
    /// The content's chunk ids, in order.
    pub chunks: Vec<String>,
    /// This version's entity tag (for `If-Match` and `If-None-Match`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// RFC 3339 text of a time, for a typed answer.
fn rfc3339_text(ms: Millis) -> Option<String> {
    match rfc3339(ms) {
        Value::String(s) => Some(s),
        _ => None,
    }
}

impl From<&ApiNode> for Item {
    fn from(node: &ApiNode) -> Item {
        let parent_id = node.parent_id().map(|p| p.to_string());
        let folder = |id: Option<String>, filename: String| Item {
            id,
            parent_id: parent_id.clone(),
            filename,
            is_folder: true,
            is_root: None,
            is_shared: None,
            read_only: None,
            status: None,
            version: None,
            checksum: None,
            size: 0,
            mimetype: None,
            modified_at: None,
            client_modified_at: None,
            chunks: Vec::new(),
            etag: None,
        };
        match node {
            ApiNode::Root { .. } => Item {
                is_root: Some(true),
                ..folder(None, String::new())
            },
            ApiNode::SharedRoot { workspace } => Item {
                is_shared: Some(true),
                read_only: Some(workspace.read_only),
                ..folder(Some(workspace.id.to_string()), workspace.name.clone())
            },
            ApiNode::Item { meta, .. } => Item {
                id: Some(meta.id.to_string()),
                parent_id,
                filename: meta.name.to_string(),
                is_folder: meta.is_folder,
                is_root: None,
                is_shared: None,
                read_only: None,
                status: Some(meta.status.into()),
                version: Some(meta.version),
                checksum: meta.content_hash.map(|h| h.to_string()),
                size: meta.size,
                mimetype: meta.mimetype.clone(),
                modified_at: rfc3339_text(meta.server_modified),
                client_modified_at: rfc3339_text(meta.client_modified),
                chunks: meta.chunks.iter().map(|c| c.id.to_string()).collect(),
                etag: Some(etag(meta.id.0, meta.version)),
            },
        }
    }
}

/// An item's JSON (without a folder's `contents`).
pub(crate) fn item_json(node: &ApiNode) -> Value {
    serde_json::to_value(Item::from(node)).unwrap_or(Value::Null)
}

/// An item with `status` and its `ETag` header (items only).
pub(crate) fn item_response(status: StatusCode, node: &ApiNode) -> Response {
    let mut response = (status, Json(item_json(node))).into_response();
    if let ApiNode::Item { meta, .. } = node
        && let Ok(tag) = HeaderValue::from_str(&etag(meta.id.0, meta.version))
    {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn if_match_names_a_version_of_this_item_only() {
        let id = Uuid::new_v4();
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_MATCH, HeaderValue::from_str(v).unwrap());
            h
        };
        assert_eq!(if_match(&HeaderMap::new(), id), None);
        assert_eq!(if_match(&headers("*"), id), None);
        assert_eq!(if_match(&headers(&etag(id, 7)), id), Some(7));
        assert_eq!(
            if_match(&headers(&format!("W/{}", etag(id, 7))), id),
            Some(7)
        );
        assert_eq!(if_match(&headers(&etag(Uuid::new_v4(), 7)), id), Some(0));
        assert_eq!(if_match(&headers("\"garbage\""), id), Some(0));
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), json!("1970-01-01T00:00:00Z"));
        assert_eq!(
            rfc3339(1_700_000_000_123),
            json!("2023-11-14T22:13:20.123Z")
        );
    }

    #[test]
    fn quota_is_413_with_a_json_code() {
        let r = api_refusal(&Error::new(ErrorKind::QuotaExceeded, "full"));
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let r = api_refusal(&Error::not_found("nothing"));
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
}
