//! Chunk transfer for devices whose blob store is the server's own (the
//! embedded default keeps chunks in a local directory that devices cannot
//! reach). Membership is checked by the service on every call.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use stacksync_proto::{ChunkId, UserId, WorkspaceId};
use stacksync_service::{ObjectUpload, Service};

use crate::auth::required_bearer;
use crate::error::GatewayError;
use crate::range;
use crate::rpc::json_error;
use crate::{MAX_CHUNK_BYTES, MAX_EXISTS_IDS};

fn workspace_id(raw: &str) -> Result<WorkspaceId, GatewayError> {
    raw.parse().map_err(|source| GatewayError::BadId {
        what: "workspace id",
        source,
    })
}

fn chunk_id(raw: &str) -> Result<ChunkId, GatewayError> {
    ChunkId::from_hex(raw).map_err(|source| GatewayError::BadId {
        what: "chunk id",
        source,
    })
}

async fn caller(service: &Service, headers: &HeaderMap) -> Result<UserId, GatewayError> {
    let token = required_bearer(headers)?;
    Ok(service.authenticate(&token).await?)
}

/// `PUT /api/v1/workspaces/{ws}/chunks/{id}`: stores an encoded chunk or a
/// pack, 204. Objects are written once: the same bytes again (a retry) are
/// 204 too, other bytes under an existing name 409.
///
/// The body is not touched until the token, the membership and a declared
/// `Content-Length` have been checked (a stranger's upload costs no
/// memory, and an oversized one is refused before it is sent); it then
/// streams to the store piece by piece, refused as soon as it passes
/// [`MAX_CHUNK_BYTES`].
pub(crate) async fn put(
    State(service): State<Service>,
    Path((ws, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, GatewayError> {
    let (ws, id) = (workspace_id(&ws)?, chunk_id(&id)?);
    let user = caller(&service, &headers).await?;
    let declared = declared_length(&headers)?;
    if declared.is_some_and(|n| n > MAX_CHUNK_BYTES as u64) {
        return Err(GatewayError::BodyTooLarge {
            endpoint: "chunk upload",
            limit: MAX_CHUNK_BYTES,
        });
    }
    let upload = ObjectUpload::from_stream(body.into_data_stream(), declared);
    service.put_chunk(user, ws, &id, upload).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The request's `Content-Length`, if it has one.
fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, GatewayError> {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| GatewayError::BadBody {
            endpoint: "chunk upload",
            reason: "Content-Length is not a number".into(),
        })
}

/// `GET /api/v1/workspaces/{ws}/chunks/{id}`: the object (an encoded chunk
/// or a pack), or 404. With `Range: bytes=FIRST-LAST` (one chunk of a
/// pack): 206 and exactly those bytes, 416 if the object is shorter, 400
/// for any other form of range.
pub(crate) async fn get(
    State(service): State<Service>,
    Path((ws, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, GatewayError> {
    let (ws, id) = (workspace_id(&ws)?, chunk_id(&id)?);
    let user = caller(&service, &headers).await?;
    let range = range::requested(&headers)?;
    let data = service.get_chunk(user, ws, &id, range).await?;
    let octets = (header::CONTENT_TYPE, "application/octet-stream".to_owned());
    let ranges = (header::ACCEPT_RANGES, "bytes".to_owned());
    Ok(match range {
        // The service returned exactly the range, so its ends are known;
        // the object's size is not (finding it would cost a request), and
        // HTTP lets it be `*`.
        Some(r) => {
            let last = r.start + data.len() as u64 - 1;
            let span = (header::CONTENT_RANGE, format!("bytes {}-{last}/*", r.start));
            (StatusCode::PARTIAL_CONTENT, [octets, ranges, span], data).into_response()
        }
        None => ([octets, ranges], data).into_response(),
    })
}

/// `POST /api/v1/workspaces/{ws}/chunks/exists`: a JSON list of hex ids in,
/// a JSON list of booleans (same order) out.
pub(crate) async fn exists(
    State(service): State<Service>,
    Path(ws): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Vec<String>>, JsonRejection>,
) -> Result<Json<Vec<bool>>, GatewayError> {
    let ws = workspace_id(&ws)?;
    let user = caller(&service, &headers).await?;
    let Json(raw) = body.map_err(|r| json_error("chunk existence", MAX_EXISTS_IDS * 70, r))?;
    if raw.len() > MAX_EXISTS_IDS {
        return Err(GatewayError::TooManyIds {
            count: raw.len(),
            limit: MAX_EXISTS_IDS,
        });
    }
    let ids = raw
        .iter()
        .map(|id| chunk_id(id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(service.has_chunks(user, ws, &ids).await?))
}
