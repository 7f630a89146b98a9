//! Shared links through the REST API: `POST /api/v2/links` makes one (its
//! secret is in this answer only), `GET /api/v2/links` lists the caller's,
//! `DELETE /api/v2/links/{id}` revokes one. The service decides who may
//! link what ([`stacksync_service::Service::create_link`]); this reads the
//! request and writes the answer. The public side, `/s/...`, is
//! `crate::links_page`, which reaches the API's download and refusals
//! through the two wrappers at the end.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stacksync_proto::{Error, Millis};
use stacksync_service::{ApiNode, Link, LinkAccess, NewLink};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Signed;
use super::account::caller;
use super::answers::{Item, api_refusal, rfc3339};
use super::openapi::ApiError;
use crate::AppState;

/// What a link lets whoever holds it do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Access {
    /// Open the file, or list the folder and download what it holds.
    View,
    /// Upload files into the folder, and nothing else (a file request).
    Upload,
}

impl From<Access> for LinkAccess {
    fn from(a: Access) -> LinkAccess {
        match a {
            Access::View => LinkAccess::View,
            Access::Upload => LinkAccess::Upload,
        }
    }
}

impl From<LinkAccess> for Access {
    fn from(a: LinkAccess) -> Access {
        match a {
            LinkAccess::View => Access::View,
            LinkAccess::Upload => Access::Upload,
        }
    }
}

/// When a link stops working: an RFC 3339 time, or seconds since the
/// Unix epoch; in the future.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Expiry {
    /// RFC 3339, e.g. `2027-01-31T18:00:00Z`.
    #[schema(format = DateTime)]
    Time(String),
    /// Seconds since the Unix epoch.
    Seconds(i64),
}

/// A link to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewLinkBody {
    /// The file or folder (its id, or a shared folder's id; not the top
    /// folder).
    #[schema(format = Uuid)]
    pub id: String,
    /// A password to ask for (none, or empty: no password).
    #[serde(default)]
    pub password: Option<String>,
    /// When the link stops working (none: never).
    #[serde(default)]
    pub expires_at: Option<Expiry>,
    /// `view` (the default) or `upload` (folders only).
    #[serde(default)]
    pub access: Option<Access>,
}

/// A link as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LinkAnswer {
    #[schema(format = Uuid)]
    pub id: String,
    /// Its page: `/s/ID` (the answer that makes it adds `#SECRET`).
    pub url: String,
    /// The file or folder it was made for.
    #[schema(format = Uuid)]
    pub item_id: String,
    /// That item now; `null` once the link is dead (the item deleted, or
    /// no longer the owner's to see).
    pub item: Option<Item>,
    pub access: Access,
    /// When it stops working (`null`: never).
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Whether it has passed.
    pub expired: bool,
    pub has_password: bool,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

/// A new link, with its secret (shown this once; the server keeps only
/// its hash).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedLinkAnswer {
    #[serde(flatten)]
    pub link: LinkAnswer,
    /// The part of the URL after `#`: the page sends it in a POST body
    /// only, so it never reaches a server log.
    pub secret: String,
}

/// The caller's links, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Links {
    pub links: Vec<LinkAnswer>,
}

fn time_text(ms: Millis) -> Option<String> {
    match rfc3339(ms) {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn answer(link: &Link, now: Millis) -> LinkAnswer {
    LinkAnswer {
        id: link.id.to_string(),
        url: format!("/s/{}", link.id),
        item_id: link.item_id.to_string(),
        item: link.item.as_ref().map(Item::from),
        access: link.access.into(),
        expires_at: link.expires_at.and_then(time_text),
        expired: link.expired_at(now),
        has_password: link.has_password,
        created_at: time_text(link.created_at),
    }
}

fn now_ms() -> Millis {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// `expires_at` as the body gives it: RFC 3339 text or Unix seconds.
fn expiry(value: Option<&Expiry>) -> Result<Option<Millis>, Error> {
    let bad = || {
        Error::bad_request(
            "expires_at is an RFC 3339 time (2027-01-31T18:00:00Z) or seconds since the Unix epoch",
        )
    };
    match value {
        None => Ok(None),
        Some(Expiry::Seconds(s)) => s.checked_mul(1000).map(Some).ok_or_else(bad),
        Some(Expiry::Time(t)) => parse_rfc3339(t).map(Some).ok_or_else(bad),
    }
}

/// Milliseconds since the epoch of an RFC 3339 time
/// (`YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`).
fn parse_rfc3339(s: &str) -> Option<Millis> {
    let b = s.as_bytes();
    let digits = |from: usize, n: usize| -> Option<u32> {
        let part = b.get(from..from + n)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| std::str::from_utf8(part).ok()?.parse().ok())
            .flatten()
    };
    let at = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let year = i32::try_from(digits(0, 4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(digits(5, 2)?).ok()?).ok()?;
    let day = u8::try_from(digits(8, 2)?).ok()?;
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let mut i = 19;
    let mut nanos = 0u32;
    if at(i, b".") {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        nanos *= 10u32.pow(9u32.saturating_sub((i - start) as u32).min(9));
    }
    let offset_secs: i32 = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && at(i + 3, b":") => {
            let (h, m) = (digits(i + 1, 2)?, digits(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = i32::try_from(h * 3600 + m * 60).ok()?;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let clock = time::Time::from_hms_nano(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
        nanos,
    )
    .ok()?;
    let offset = time::UtcOffset::from_whole_seconds(offset_secs).ok()?;
    let t = time::PrimitiveDateTime::new(date, clock).assume_offset(offset);
    Millis::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// `POST /api/v2/links`.
#[utoipa::path(post, path = "/links", tag = "links", operation_id = "create_link", request_body = NewLinkBody,
    responses((status = 201, description = "The new link, with its secret (shown this once)", body = CreatedLinkAnswer),
        (status = 400, description = "A bad id (the top folder cannot be linked), password, expiry (must be in the future) or access (upload links are for folders)", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 403, description = "An end-to-end encrypted folder (the server cannot read it), or an upload link by a read-only member", body = ApiError),
        (status = 404, description = "No such item, or not the caller's", body = ApiError)))]
pub(crate) async fn create(State(state): State<AppState>, signed: Signed) -> Response {
    let caller = match caller(&state, &signed).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    let body: NewLinkBody = match serde_json::from_slice(signed.body()) {
        Ok(body) => body,
        Err(e) => {
            return api_refusal(&Error::bad_request(format!("the JSON body: {e}")));
        }
    };
    if body.id == "root" {
        return api_refusal(&Error::bad_request(
            "the top folder cannot be shared by a link: link a file or folder in it",
        ));
    }
    let Ok(item) = body.id.parse::<Uuid>() else {
        return api_refusal(&Error::bad_request(format!("{:?} is not an id", body.id)));
    };
    let expires_at = match expiry(body.expires_at.as_ref()) {
        Ok(t) => t,
        Err(e) => return api_refusal(&e),
    };
    let new = NewLink {
        item,
        password: body.password,
        expires_at,
        access: body.access.unwrap_or(Access::View).into(),
    };
    match state.service.create_link(caller.user, new).await {
        Ok(created) => {
            let mut link = answer(&created.link, now_ms());
            link.url = format!("{}#{}", link.url, created.secret);
            let body = CreatedLinkAnswer {
                link,
                secret: created.secret,
            };
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(e) => api_refusal(&e),
    }
}

/// `GET /api/v2/links`.
#[utoipa::path(get, path = "/links", tag = "links", operation_id = "list_links",
    responses((status = 200, description = "The caller's links, newest first (never their secrets)", body = Links),
        (status = 400, description = "A malformed OAuth request (RFC 5849 section 3.2)", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError)))]
pub(crate) async fn list(State(state): State<AppState>, signed: Signed) -> Response {
    let caller = match caller(&state, &signed).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    match state.service.links_of(caller.user).await {
        Ok(links) => {
            let now = now_ms();
            let links = links.iter().map(|l| answer(l, now)).collect();
            Json(Links { links }).into_response()
        }
        Err(e) => api_refusal(&e),
    }
}

/// `DELETE /api/v2/links/{id}`: the link stops working at once, and so
/// does every browser session of it.
#[utoipa::path(delete, path = "/links/{id}", tag = "links", operation_id = "revoke_link",
    params(("id" = String, Path, description = "The link's id", format = Uuid)),
    responses((status = 204, description = "Revoked"),
        (status = 400, description = "Not an id", body = ApiError),
        (status = 401, description = "Unsigned, badly signed, expired or replayed", body = ApiError),
        (status = 404, description = "No such link of the caller's", body = ApiError)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: Signed,
) -> Response {
    let caller = match caller(&state, &signed).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    let Ok(id) = id.parse::<Uuid>() else {
        return api_refusal(&Error::bad_request(format!("{id:?} is not a link id")));
    };
    match state.service.revoke_link(caller.user, id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => api_refusal(&e),
    }
}

/// A refusal as the API writes it (JSON, the API's status), for the
/// public link pages.
pub(crate) fn refusal(e: &Error) -> Response {
    api_refusal(e)
}

/// A file's bytes as the API's download serves them (`Range`,
/// `If-None-Match`), for the public link pages.
pub(crate) async fn content(
    state: &AppState,
    node: &ApiNode,
    headers: &HeaderMap,
    attachment: bool,
) -> Response {
    super::files::serve_content(state, node, headers, attachment).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expiry_of(v: Value) -> Result<Option<Millis>, ()> {
        let parsed: Option<Expiry> = serde_json::from_value(v).map_err(|_| ())?;
        expiry(parsed.as_ref()).map_err(|_| ())
    }

    #[test]
    fn expiries_are_rfc3339_or_unix_seconds() {
        assert_eq!(expiry(None), Ok(None));
        assert_eq!(expiry_of(json!(null)), Ok(None));
        assert_eq!(expiry_of(json!(1_700_000_000)), Ok(Some(1_700_000_000_000)));
        assert_eq!(
            expiry_of(json!("2023-11-14T22:13:20.123Z")),
            Ok(Some(1_700_000_000_123))
        );
        assert_eq!(
            expiry_of(json!("2023-11-15T00:13:20+02:00")),
            Ok(Some(1_700_000_000_000))
        );
        assert_eq!(
            expiry_of(json!("2023-11-14 22:13:20.5z")),
            Ok(Some(1_700_000_000_500))
        );
        for bad in [
            json!("tomorrow"),
            json!("2023-02-30T00:00:00Z"),
            json!("2023-11-14T22:13:20"),
            json!("2023-11-14T25:13:20Z"),
            json!("2023-11-14T22:13:20+2:00"),
            json!("2023-11-14T22:13:20.Z"),
            json!("\u{ff12}\u{ff10}\u{ff12}\u{ff13}-11-14T22:13:20Z"),
            json!(1.5),
            json!(i64::MAX),
            json!(u64::MAX),
            json!([1]),
            json!({"Seconds": 1}),
        ] {
            assert!(expiry_of(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_document_says_what_links_take() {
        use utoipa::OpenApi;
        let doc = serde_json::to_value(super::super::openapi::ApiDoc::openapi()).unwrap();
        let expiry = &doc["components"]["schemas"]["Expiry"]["oneOf"];
        assert_eq!(expiry[0]["type"], "string", "{expiry}");
        assert_eq!(expiry[1]["type"], "integer", "{expiry}");
        let mut ids: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|p| p.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        let all = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all, "operation ids are unique");
        assert!(ids.contains(&"create_link") && ids.contains(&"revoke_link"));
    }
}
