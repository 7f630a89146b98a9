//! The public side of shared links, for anyone without an account:
//! `GET /s/{link}` is one self-contained page (the same bytes for every
//! link, so it tells nothing) whose script, `/s/link.js`, reads the secret
//! from the URL's fragment and sends it in the body of
//! `POST /s/{link}/open`, never in a URL, so it never lands in an access
//! log. Opening sets a cookie (`HttpOnly`, `SameSite=Strict`, its path the
//! link's) holding a link session, with which the script lists a folder
//! (`GET /s/{link}/list`), downloads (`GET /s/{link}/file/{item}`) or
//! uploads (`POST /s/{link}/upload?name=`).
//!
//! The service decides everything ([`stacksync_service::Service::open_link`]
//! and the operations taking its [`LinkGrant`]); this reads requests and
//! writes answers. A file is served inline only when a browser cannot run
//! it (images but SVG, PDF, plain text, audio, video), always under
//! `Content-Security-Policy: sandbox` and `nosniff`; anything else is an
//! attachment.

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use stacksync_proto::{Error, Millis};
use stacksync_service::{ApiNode, LinkAccess, LinkGrant, NewContent};

use crate::AppState;
use crate::api_v2::links::{content, refusal};
use crate::auth::PeerAddr;

/// The cookie holding a browser's link session.
pub(crate) const COOKIE: &str = "stacksync_link";

/// Largest body of `POST /s/{link}/open` (a secret and a password).
const MAX_OPEN_BODY: usize = 8 * 1024;

const PAGE: &str = include_str!("../links/link.html");
const SCRIPT: &str = include_str!("../links/link.js");
const STYLE: &str = include_str!("../links/link.css");
const ICON: &str = include_str!("../links/icon.svg");

/// The page's policy: its own script and style sheet only, talking to
/// this server only, in no frame.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'none'; base-uri 'none'; \
     frame-ancestors 'none'";

/// The routes under `/s/`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/s/link.js", get(script))
        .route("/s/link.css", get(style))
        .route("/s/icon.svg", get(icon))
        .route("/s/{link}", get(page))
        .route(
            "/s/{link}/open",
            post(open).layer(DefaultBodyLimit::max(MAX_OPEN_BODY)),
        )
        .route("/s/{link}/list", get(list))
        .route("/s/{link}/file/{item}", get(file))
        // Uploads stream (no body limit: the owner's quota bounds them).
        .route("/s/{link}/upload", post(upload))
}

/// Headers every answer under `/s/` carries.
fn guard(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    guard(r)
}

async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

async fn icon() -> Response {
    asset(ICON, "image/svg+xml")
}

/// `GET /s/{link}`: the page, the same for every link.
async fn page() -> Response {
    let mut r = PAGE.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_POLICY),
    );
    guard(r)
}

/// A refusal under `/s/`, with `Retry-After` when there is a wait.
fn refused(e: &Error) -> Response {
    let mut r = refusal(e);
    if let Some(secs) = e.retry_after_secs
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    guard(r)
}

/// The link session cookie's value, if the request has one.
fn session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim_matches('"').to_owned())
}

/// Whether the browser reached the server over TLS, as far as the server
/// may believe: a trusted proxy said so (this server speaks plain HTTP).
fn over_tls(state: &AppState, peer: Option<std::net::IpAddr>, headers: &HeaderMap) -> bool {
    peer.is_some_and(|ip| state.api.trusted_proxies.contains(ip))
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// A file or folder as the public pages show it.
#[derive(Debug, Serialize)]
struct Entry {
    id: Option<String>,
    name: String,
    kind: &'static str,
    size: u64,
    mimetype: Option<String>,
    modified_at: Option<String>,
}

fn time_text(ms: Millis) -> Option<String> {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn entry(node: &ApiNode, name: String) -> Entry {
    match node {
        ApiNode::Item { meta, .. } => Entry {
            id: Some(meta.id.to_string()),
            name,
            kind: if meta.is_folder { "folder" } else { "file" },
            size: meta.size,
            mimetype: (!meta.is_folder).then(|| {
                crate::served::served_type(meta.mimetype.as_deref(), meta.name.as_str()).0
            }),
            modified_at: time_text(meta.server_modified),
        },
        other => Entry {
            id: other.id().map(|id| id.to_string()),
            name,
            kind: "folder",
            size: 0,
            mimetype: None,
            modified_at: None,
        },
    }
}

/// What `open` answers: the link and what it reaches.
#[derive(Debug, Serialize)]
struct Opened {
    access: &'static str,
    expires_at: Option<String>,
    has_password: bool,
    item: Entry,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenBody {
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// `POST /s/{link}/open` with `{"secret", "password"?}`.
async fn open(
    State(state): State<AppState>,
    Path(link): Path<String>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: OpenBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(_) => {
            return refused(&Error::bad_request(
                "send JSON: {\"secret\": ..., \"password\": ...}",
            ));
        }
    };
    let cookie = session(&headers);
    let opened = match state
        .service
        .open_link(
            &link,
            body.secret.as_deref(),
            body.password.as_deref(),
            cookie.as_deref(),
        )
        .await
    {
        Ok(opened) => opened,
        Err(e) => return refused(&e),
    };
    let grant = &opened.grant;
    let answer = Opened {
        access: grant.access().as_str(),
        expires_at: grant.expires_at().and_then(time_text),
        has_password: grant.has_password(),
        item: entry(grant.root(), grant.root_name()),
    };
    let mut r = Json(answer).into_response();
    if let Some(s) = &opened.session {
        let max_age = (s.expires_at - now_ms()).max(0) / 1000;
        let secure = if over_tls(&state, peer, &headers) {
            "; Secure"
        } else {
            ""
        };
        let cookie = format!(
            "{COOKIE}={}; Path=/s/{}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}",
            s.token,
            grant.link_id()
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    guard(r)
}

fn now_ms() -> Millis {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// The grant of the request's link session, or the refusal to send.
async fn granted(state: &AppState, link: &str, headers: &HeaderMap) -> Result<LinkGrant, Response> {
    state
        .service
        .link_grant(link, session(headers).as_deref())
        .await
        .map_err(|e| refused(&e))
}

/// A query's parameters (`application/x-www-form-urlencoded`).
fn query_params(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8()
                    .ok()
                    .map(|c| c.into_owned())
            };
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

fn param<'q>(params: &'q [(String, String)], name: &str) -> Option<&'q str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// An item id of a public URL; anything else reaches nothing.
fn item_id(raw: &str) -> Result<uuid::Uuid, Error> {
    raw.parse().map_err(|_| stacksync_service::link_gone())
}

#[derive(Debug, Serialize)]
struct Listing {
    path: Vec<Crumb>,
    entries: Vec<Entry>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize)]
struct Crumb {
    id: String,
    name: String,
}

/// `GET /s/{link}/list?folder=ID&cursor=C`.
async fn list(
    State(state): State<AppState>,
    Path(link): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let grant = match granted(&state, &link, &headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let params = query_params(query.as_deref());
    let folder = match param(&params, "folder").map(item_id).transpose() {
        Ok(f) => f,
        Err(e) => return refused(&e),
    };
    let listing = match state
        .service
        .link_listing(&grant, folder, param(&params, "cursor"))
        .await
    {
        Ok(l) => l,
        Err(e) => return refused(&e),
    };
    let answer = Listing {
        path: listing
            .path
            .into_iter()
            .map(|c| Crumb {
                id: c.id.to_string(),
                name: c.name,
            })
            .collect(),
        entries: listing
            .entries
            .iter()
            .map(|n| {
                let name = match n {
                    ApiNode::Item { meta, .. } => meta.name.to_string(),
                    _ => String::new(),
                };
                entry(n, name)
            })
            .collect(),
        cursor: listing.cursor,
    };
    guard(Json(answer).into_response())
}

/// `GET /s/{link}/file/{item}` (`?download=1`: always as an attachment).
async fn file(
    State(state): State<AppState>,
    Path((link, item)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let grant = match granted(&state, &link, &headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let item = match item_id(&item) {
        Ok(id) => id,
        Err(e) => return refused(&e),
    };
    let node = match state.service.link_file(&grant, item).await {
        Ok(n) => n,
        Err(e) => return refused(&e),
    };
    if !matches!(node, ApiNode::Item { .. }) {
        return refused(&stacksync_service::link_gone());
    }
    let forced = param(&query_params(query.as_deref()), "download").is_some();
    let mut r = content(&state, &node, &headers, forced).await;
    let status = r.status();
    if !(status.is_success() || status == StatusCode::NOT_MODIFIED) {
        return guard(r);
    }
    let h = r.headers_mut();
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    guard(r)
}

#[derive(Debug, Serialize)]
struct Uploaded {
    id: Option<String>,
    name: String,
    size: u64,
}

/// `POST /s/{link}/upload?name=NAME` with the file's bytes as the body.
async fn upload(
    State(state): State<AppState>,
    Path(link): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let grant = match granted(&state, &link, &headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    if grant.access() != LinkAccess::Upload {
        return refused(&stacksync_service::link_gone());
    }
    let params = query_params(query.as_deref());
    let Some(name) = param(&params, "name") else {
        return refused(&Error::bad_request("say the file's name: ?name="));
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mimetype = crate::served::given_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let content = NewContent::from_stream(body.into_data_stream(), mimetype);
    match state
        .service
        .link_upload(&grant, name, content, declared)
        .await
    {
        Ok(node) => {
            let (name, size) = match &node {
                ApiNode::Item { meta, .. } => (meta.name.to_string(), meta.size),
                _ => (String::new(), 0),
            };
            let answer = Uploaded {
                id: node.id().map(|id| id.to_string()),
                name,
                size,
            };
            guard((StatusCode::CREATED, Json(answer)).into_response())
        }
        Err(e) => refused(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        assert_eq!(session(&h), None);
        h.append(
            header::COOKIE,
            HeaderValue::from_static("x=y; stacksync_link=abc ; z=1"),
        );
        assert_eq!(session(&h).as_deref(), Some("abc"));
    }
}
