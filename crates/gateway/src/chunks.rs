//! Chunk transfer for devices whose blob store is the server's own (the
//! embedded default keeps chunks in a local directory that devices cannot
//! reach). Membership is checked by the service on every call.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use stacksync_proto::{ChunkId, UserId, WorkspaceId};
use stacksync_service::Service;

use crate::auth::required_bearer;
use crate::error::GatewayError;
use crate::range;
use crate::rpc::{bytes_error, json_error};
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

/// `PUT /api/v1/workspaces/{ws}/chunks/{id}`: stores an encoded chunk.
/// Chunks are content-addressed, so a repeat is harmless: always 204.
pub(crate) async fn put(
    State(service): State<Service>,
    Path((ws, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, GatewayError> {
    let (ws, id) = (workspace_id(&ws)?, chunk_id(&id)?);
    let user = caller(&service, &headers).await?;
    let data = body.map_err(|r| bytes_error("chunk upload", MAX_CHUNK_BYTES, r))?;
    service.put_chunk(user, ws, &id, data).await?;
    Ok(StatusCode::NO_CONTENT)
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
