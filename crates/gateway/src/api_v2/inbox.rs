//! The trash (`GET /api/v2/trash`, `POST /api/v2/trash/{id}/restore`) and
//! the invitations waiting for the user (`GET /api/v2/invitations`,
//! `POST /api/v2/invitations/{id}/accept|decline`): what the website's
//! trash and sharing pages do, open to any app.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Signed;
use super::account::caller;
use super::answers::{Item, api_refusal, item_json, item_response};
use super::openapi::ApiError;
use crate::AppState;

/// The trash: deleted items whose folder still stands, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Trash {
    #[schema(value_type = Vec<Item>)]
    pub entries: Vec<serde_json::Value>,
}

/// An invitation to a shared folder.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InvitationAnswer {
    #[schema(format = Uuid)]
    pub id: String,
    /// The folder's name in its owner's tree.
    pub folder_name: String,
    /// Who invites.
    pub from: String,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// Whether accepting makes a read-only member.
    pub read_only: bool,
    /// Whether the folder is end-to-end encrypted (accepted on a device).
    pub encrypted: bool,
}

/// The invitations waiting for an answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Invitations {
    pub invitations: Vec<InvitationAnswer>,
}

/// An invitation answered.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Answered {
    #[schema(format = Uuid)]
    pub id: String,
    pub accepted: bool,
}

fn parse(id: &str) -> Result<Uuid, stacksync_proto::Error> {
    id.parse()
        .map_err(|_| stacksync_proto::Error::bad_request(format!("{id:?} is not an id")))
}

/// `GET /trash`.
#[utoipa::path(get, path = "/trash", tag = "trash",
    responses((status = 200, description = "Deleted items whose folder still stands, newest first (a deleted folder stands for what was deleted with it)", body = Trash),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError)))]
pub(crate) async fn trash(State(state): State<AppState>, signed: Signed) -> Response {
    let who = match caller(&state, &signed).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match state.service.api_trash(who.user).await {
        Ok(nodes) => Json(Trash {
            entries: nodes.iter().map(item_json).collect(),
        })
        .into_response(),
        Err(e) => api_refusal(&e),
    }
}

/// `POST /trash/{id}/restore`.
#[utoipa::path(post, path = "/trash/{id}/restore", tag = "trash",
    params(("id" = String, Path, description = "A deleted file or folder's id", format = Uuid)),
    responses((status = 200, description = "The item, back where it was (a folder with what was deleted with it)", body = Item),
        (status = 400, description = "A bad id", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 403, description = "A read-only member, or an end-to-end encrypted folder", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError),
        (status = 409, description = "Not deleted, its folder deleted too, or its name taken", body = ApiError)))]
pub(crate) async fn untrash(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: Signed,
) -> Response {
    let who = match caller(&state, &signed).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let id = match parse(&id) {
        Ok(id) => id,
        Err(e) => return api_refusal(&e),
    };
    match state.service.api_untrash(&who, id).await {
        Ok(node) => item_response(StatusCode::OK, &node),
        Err(e) => api_refusal(&e),
    }
}

/// `GET /invitations`.
#[utoipa::path(get, path = "/invitations", tag = "sharing",
    responses((status = 200, description = "Invitations waiting for an answer, oldest first", body = Invitations),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError)))]
pub(crate) async fn invitations(State(state): State<AppState>, signed: Signed) -> Response {
    let who = match caller(&state, &signed).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match state.service.api_invitations(who.user).await {
        Ok(list) => Json(Invitations {
            invitations: list
                .into_iter()
                .map(|i| InvitationAnswer {
                    id: i.proposal.to_string(),
                    folder_name: i.folder_name,
                    from: i.from,
                    created_at: i.created_at,
                    read_only: i.read_only,
                    encrypted: i.encryption == stacksync_proto::EncryptionMode::ClientSide,
                })
                .collect(),
        })
        .into_response(),
        Err(e) => api_refusal(&e),
    }
}

async fn answer(state: AppState, id: String, signed: Signed, accept: bool) -> Response {
    let who = match caller(&state, &signed).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let id = match parse(&id) {
        Ok(id) => id,
        Err(e) => return api_refusal(&e),
    };
    match state
        .service
        .api_answer_invitation(who.user, id, accept)
        .await
    {
        Ok(()) => Json(Answered {
            id: id.to_string(),
            accepted: accept,
        })
        .into_response(),
        Err(e) => api_refusal(&e),
    }
}

/// `POST /invitations/{id}/accept`.
#[utoipa::path(post, path = "/invitations/{id}/accept", tag = "sharing",
    params(("id" = String, Path, description = "The invitation's id", format = Uuid)),
    responses((status = 200, description = "Accepted: the folder is in the caller's tree", body = Answered),
        (status = 400, description = "A bad id", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 403, description = "An end-to-end encrypted folder (accepted on a device)", body = ApiError),
        (status = 404, description = "No such invitation for the caller", body = ApiError)))]
pub(crate) async fn accept(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: Signed,
) -> Response {
    answer(state, id, signed, true).await
}

/// `POST /invitations/{id}/decline`.
#[utoipa::path(post, path = "/invitations/{id}/decline", tag = "sharing",
    params(("id" = String, Path, description = "The invitation's id", format = Uuid)),
    responses((status = 200, description = "Declined", body = Answered),
        (status = 400, description = "A bad id", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such invitation for the caller", body = ApiError)))]
pub(crate) async fn decline(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: Signed,
) -> Response {
    answer(state, id, signed, false).await
}
