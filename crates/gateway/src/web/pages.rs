//! The website's pages and its few form posts (sign in, sign out, sign a
//! device out). Everything else the pages do goes through REST API v2.

use std::fmt::Write;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use stacksync_proto::{Account, EncryptionMode, Error, ErrorKind};
use stacksync_service::{ApiNode, MAX_LIST_PAGE, token_hash};
use uuid::Uuid;

use super::html::{Section, esc, human_size, time_tag, user_page, visitor_page};
use super::{
    Browser, PRESESSION_COOKIE, SESSION_COOKIE, cookie, csrf_holds, csrf_token, html_page,
    see_other, set_cookie,
};
use crate::AppState;
use crate::api_v2::Origin;
use crate::auth::PeerAddr;

/// Most entries one folder page shows.
const MAX_ENTRIES: usize = 100_000;

/// A page's answer: the page, or where to go instead.
type PageResult = Result<Response, Response>;

/// The signed-in browser, or the way to the sign-in page.
async fn browser(state: &AppState, headers: &HeaderMap) -> Result<Browser, Response> {
    Browser::of(state, headers)
        .await
        .ok_or_else(|| see_other("/", &[]))
}

/// A refusal shown as a page.
fn error_page(e: &Error) -> Response {
    let status = StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let title = match e.kind {
        ErrorKind::NotFound => "Not found",
        ErrorKind::Forbidden => "Not allowed",
        _ => "Something went wrong",
    };
    let body = format!(
        "<h1>{title}</h1><p role=\"alert\">{}</p><p><a href=\"/files\">Back to your files</a></p>",
        esc(&e.message)
    );
    html_page(status, visitor_page(title, &body))
}

async fn account(state: &AppState, b: &Browser) -> Result<Account, Response> {
    state
        .service
        .account(b.user)
        .await
        .map_err(|e| error_page(&e))
}

fn secure(state: &AppState, peer: Option<std::net::IpAddr>, headers: &HeaderMap) -> bool {
    let uri: axum::http::Uri = "/".parse().unwrap_or_default();
    Origin::of(&state.api, peer, &uri, headers).is_https()
}

// ---------------------------------------------------------------- sign in

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct SignIn {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

/// The sign-in page, with a fresh pre-session cookie unless one is there.
fn sign_in_page(
    status: StatusCode,
    headers: &HeaderMap,
    secure: bool,
    email: &str,
    error: Option<&str>,
) -> Response {
    let (pre, fresh) = match cookie(headers, PRESESSION_COOKIE) {
        Some(p) if p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()) => {
            (p.to_owned(), false)
        }
        _ => (random_hex(), true),
    };
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in</h1>{error}\
         <form id=\"signin\" method=\"post\" action=\"/signin\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"email\">Email</label>\
         <input id=\"email\" type=\"email\" name=\"email\" value=\"{email}\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input id=\"password\" type=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\" class=\"primary\">Sign in</button></form>",
        csrf = csrf_token(&pre),
        email = esc(email),
    );
    let mut r = html_page(status, visitor_page("Sign in", &body));
    if fresh {
        let c = set_cookie(PRESESSION_COOKIE, &pre, Some(3600), secure);
        if let Ok(v) = c.parse() {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// 64 hex characters from the OS's generator (two v4 UUIDs).
fn random_hex() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// `GET /` and `GET /signin`: the sign-in page, or the files when signed in.
pub(crate) async fn index(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
) -> Response {
    if Browser::of(&state, &headers).await.is_some() {
        return see_other("/files", &[]);
    }
    sign_in_page(
        StatusCode::OK,
        &headers,
        secure(&state, peer, &headers),
        "",
        None,
    )
}

/// `POST /signin`.
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    form: Result<Form<SignIn>, FormRejection>,
) -> Response {
    let secure = secure(&state, peer, &headers);
    let Ok(Form(form)) = form else {
        return sign_in_page(
            StatusCode::BAD_REQUEST,
            &headers,
            secure,
            "",
            Some("The form was not sent whole: try again."),
        );
    };
    let pre = cookie(&headers, PRESESSION_COOKIE);
    if !pre.is_some_and(|p| csrf_holds(p, Some(&form.csrf))) {
        return sign_in_page(
            StatusCode::FORBIDDEN,
            &headers,
            secure,
            &form.email,
            Some("This form has expired (or cookies are off): try again."),
        );
    }
    let client = Origin::of(
        &state.api,
        peer,
        &"/signin".parse().unwrap_or_default(),
        &headers,
    )
    .client;
    let label = browser_label(&headers);
    match state
        .service
        .web_sign_in(form.email.trim(), &form.password, client, &label)
        .await
    {
        Ok(session) => {
            let now = crate::web::now_ms();
            let age = (session.expires_at.saturating_sub(now) / 1000).max(0) as u64;
            see_other(
                "/files",
                &[
                    set_cookie(SESSION_COOKIE, &session.token, Some(age), secure),
                    set_cookie(PRESESSION_COOKIE, "", None, secure),
                ],
            )
        }
        Err(e) => {
            let status =
                StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
            sign_in_page(status, &headers, secure, &form.email, Some(&e.message))
        }
    }
}

/// A browser's name for the devices page, from its `User-Agent`.
fn browser_label(headers: &HeaderMap) -> String {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let browser = ["Edg/", "Firefox/", "Chrome/", "Safari/"]
        .iter()
        .find(|b| ua.contains(*b))
        .map(|b| match *b {
            "Edg/" => "Edge",
            "Firefox/" => "Firefox",
            "Chrome/" => "Chrome",
            _ => "Safari",
        })
        .unwrap_or("Browser");
    let system = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS", "macOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(k, _)| ua.contains(k))
    .map(|(_, v)| *v);
    match system {
        Some(s) => format!("{browser} on {s}"),
        None => browser.to_owned(),
    }
}

/// The CSRF field of a form post.
#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

fn forbidden() -> Response {
    error_page(&Error::forbidden(
        "this request did not carry the page's security token: reload the page and try again",
    ))
}

/// `POST /signout`.
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let secure = secure(&state, peer, &headers);
    let Some(b) = Browser::of(&state, &headers).await else {
        return see_other("/", &[set_cookie(SESSION_COOKIE, "", None, secure)]);
    };
    if !csrf_holds(&b.token, form.as_ref().ok().map(|f| f.csrf.as_str())) {
        return forbidden();
    }
    if let Err(e) = state.service.logout(&b.token).await {
        return error_page(&e);
    }
    let mut r = see_other("/", &[set_cookie(SESSION_COOKIE, "", None, secure)]);
    // Nothing of the account stays in this browser: the service worker's
    // copies of listings go with the session.
    r.headers_mut().insert(
        "clear-site-data",
        axum::http::HeaderValue::from_static("\"cache\", \"storage\""),
    );
    r
}

// ---------------------------------------------------------------- folders

/// A folder page's query: its sort order.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SortQuery {
    sort: Option<String>,
    order: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortKey {
    Name,
    Size,
    Modified,
}

/// An entry of a listing, as shown.
struct Entry {
    id: Uuid,
    name: String,
    folder: bool,
    size: u64,
    modified: i64,
    shared: bool,
}

fn entry(node: &ApiNode) -> Option<Entry> {
    match node {
        ApiNode::Root { .. } => None,
        ApiNode::SharedRoot { workspace } => Some(Entry {
            id: workspace.id.0,
            name: workspace.name.clone(),
            folder: true,
            size: 0,
            modified: 0,
            shared: true,
        }),
        ApiNode::Item { meta, .. } => Some(Entry {
            id: meta.id.0,
            name: meta.name.as_str().to_owned(),
            folder: meta.is_folder,
            size: meta.size,
            modified: meta.server_modified,
            shared: false,
        }),
    }
}

/// The folders from the top down to `node` (each id and name).
async fn trail(
    state: &AppState,
    user: stacksync_proto::UserId,
    node: &ApiNode,
) -> Vec<(Uuid, String)> {
    let mut out = Vec::new();
    let mut at = Some(node.clone());
    // Bounded: a folder tree deeper than this shows its last levels.
    for _ in 0..64 {
        let Some(here) = at.take() else { break };
        let Some(e) = entry(&here) else { break };
        out.push((e.id, e.name));
        at = match here.parent_id() {
            Some(p) => state.service.api_node(user, Some(p)).await.ok(),
            None => None,
        };
    }
    out.reverse();
    out
}

/// `GET /files`.
pub(crate) async fn root_folder(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<SortQuery>,
) -> Response {
    folder_page(&state, &headers, None, q)
        .await
        .unwrap_or_else(|r| r)
}

/// `GET /files/{id}`.
pub(crate) async fn folder(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<SortQuery>,
) -> Response {
    let Ok(id) = id.parse::<Uuid>() else {
        return error_page(&Error::not_found("no such folder"));
    };
    folder_page(&state, &headers, Some(id), q)
        .await
        .unwrap_or_else(|r| r)
}

async fn folder_page(
    state: &AppState,
    headers: &HeaderMap,
    id: Option<Uuid>,
    q: SortQuery,
) -> PageResult {
    let b = browser(state, headers).await?;
    let account = account(state, &b).await?;
    let node = state
        .service
        .api_node(b.user, id)
        .await
        .map_err(|e| error_page(&e))?;
    if !node.is_folder() {
        return Err(see_other(
            &format!("/preview/{}", id.unwrap_or_default()),
            &[],
        ));
    }
    let e2ee = node.workspace().encryption == EncryptionMode::ClientSide;
    let read_only = node.workspace().read_only;
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    if !e2ee {
        loop {
            let page = state
                .service
                .api_children(b.user, &node, false, MAX_LIST_PAGE, cursor.as_deref())
                .await
                .map_err(|e| error_page(&e))?;
            entries.extend(page.children.iter().filter_map(entry));
            cursor = page.cursor;
            if cursor.is_none() || entries.len() >= MAX_ENTRIES {
                break;
            }
        }
    }
    let key = match q.sort.as_deref() {
        Some("size") => SortKey::Size,
        Some("modified") => SortKey::Modified,
        _ => SortKey::Name,
    };
    let descending = q.order.as_deref() == Some("desc");
    entries.sort_by(|a, b| {
        let by = match key {
            SortKey::Name => natural(&a.name, &b.name),
            SortKey::Size => a.size.cmp(&b.size).then_with(|| natural(&a.name, &b.name)),
            SortKey::Modified => a
                .modified
                .cmp(&b.modified)
                .then_with(|| natural(&a.name, &b.name)),
        };
        // Folders first, whichever the order.
        b.folder
            .cmp(&a.folder)
            .then(if descending { by.reverse() } else { by })
    });
    let crumbs = trail(state, b.user, &node).await;
    let title = crumbs
        .last()
        .map(|(_, n)| n.clone())
        .unwrap_or_else(|| "Files".to_owned());
    let folder_id = id
        .map(|i| i.to_string())
        .unwrap_or_else(|| "root".to_owned());
    let here = match id {
        Some(i) => format!("/files/{i}"),
        None => "/files".to_owned(),
    };

    let mut body = String::with_capacity(entries.len() * 900 + 8192);
    body.push_str("<nav class=\"breadcrumbs\" aria-label=\"Folder path\"><ol><li><a href=\"/files\">Files</a></li>");
    for (cid, name) in &crumbs {
        let _ = write!(body, "<li><a href=\"/files/{cid}\">{}</a></li>", esc(name));
    }
    body.push_str("</ol></nav>");
    let _ = write!(
        body,
        "<div class=\"folder\" id=\"folder\" data-id=\"{folder_id}\" data-read-only=\"{read_only}\">\
         <h1>{}</h1>",
        esc(&title)
    );
    if e2ee {
        body.push_str(
            "<p class=\"notice\">This folder is end-to-end encrypted: only your devices hold \
             its key, so its files are shown on your desktop, not here.</p></div>",
        );
        return Ok(html_page(
            StatusCode::OK,
            user_page(&title, Section::Files, &account, &b.csrf(), &body),
        ));
    }
    if !read_only {
        body.push_str(
            "<div class=\"toolbar\" role=\"toolbar\" aria-label=\"Folder actions\">\
             <button type=\"button\" id=\"new-folder\">New folder</button>\
             <label class=\"button\" for=\"upload-files\">Upload files</label>\
             <input type=\"file\" id=\"upload-files\" multiple class=\"visually-hidden\">\
             <label class=\"button\" for=\"upload-folder\">Upload folder</label>\
             <input type=\"file\" id=\"upload-folder\" webkitdirectory multiple class=\"visually-hidden\">\
             <label class=\"button camera\" for=\"camera\">Take photo</label>\
             <input type=\"file\" id=\"camera\" accept=\"image/*\" capture=\"environment\" class=\"visually-hidden\">\
             <a class=\"button\" href=\"/zip/",
        );
        let _ = write!(body, "{folder_id}\" download>Download as zip</a></div>");
    } else {
        let _ = write!(
            body,
            "<p class=\"notice\">You may only read this shared folder.</p>\
             <div class=\"toolbar\"><a class=\"button\" href=\"/zip/{folder_id}\" download>Download as zip</a></div>"
        );
    }
    body.push_str(
        "<div class=\"filter\"><label for=\"filter\">Filter by name</label>\
         <input type=\"search\" id=\"filter\" placeholder=\"Filter by name\" autocomplete=\"off\"></div>\
         <section id=\"uploads\" aria-label=\"Uploads\" hidden><h2>Uploads</h2>\
         <progress id=\"upload-total\" max=\"1\" value=\"0\"></progress><ul></ul></section>",
    );
    let sort_link = |k: SortKey, label: &str| {
        let name = match k {
            SortKey::Name => "name",
            SortKey::Size => "size",
            SortKey::Modified => "modified",
        };
        let (order, aria) = if key == k {
            if descending {
                ("asc", " aria-sort=\"descending\"")
            } else {
                ("desc", " aria-sort=\"ascending\"")
            }
        } else {
            ("asc", "")
        };
        format!(
            "<th scope=\"col\" class=\"col-{name}\"{aria}><a data-sort=\"{name}\" href=\"{here}?sort={name}&amp;order={order}\">{label}</a></th>"
        )
    };
    // Phones show no table head: the same orders as links.
    body.push_str("<nav class=\"phone-sort\" aria-label=\"Sort\">Sort by");
    for (name, label) in [("name", "name"), ("size", "size"), ("modified", "date")] {
        let current = q.sort.as_deref().unwrap_or("name") == name;
        let order = if current && !descending {
            "desc"
        } else {
            "asc"
        };
        let _ = write!(
            body,
            " <a href=\"{here}?sort={name}&amp;order={order}\"{}>{label}</a>",
            if current {
                " aria-current=\"true\""
            } else {
                ""
            }
        );
    }
    body.push_str("</nav>");
    let _ = write!(
        body,
        "<table id=\"listing\"><caption class=\"visually-hidden\">Contents of {}</caption><thead><tr>{}{}{}<th scope=\"col\" class=\"col-actions\"><span class=\"visually-hidden\">Actions</span></th></tr></thead><tbody>",
        esc(&title),
        sort_link(SortKey::Name, "Name"),
        sort_link(SortKey::Size, "Size"),
        sort_link(SortKey::Modified, "Modified"),
    );
    for e in &entries {
        row(&mut body, e, read_only);
    }
    body.push_str("</tbody></table>");
    if entries.is_empty() {
        body.push_str(
            "<p class=\"empty\">This folder is empty. Drop files here to upload them.</p>",
        );
    }
    body.push_str("</div>");
    body.push_str(DIALOGS);
    Ok(html_page(
        StatusCode::OK,
        user_page(&title, Section::Files, &account, &b.csrf(), &body),
    ))
}

/// One listing row.
fn row(body: &mut String, e: &Entry, read_only: bool) {
    let name = esc(&e.name);
    let (kind, href) = if e.folder {
        ("folder", format!("/files/{}", e.id))
    } else {
        ("file", format!("/preview/{}", e.id))
    };
    let (modified_iso, _) = super::html::time(e.modified);
    let _ = write!(
        body,
        "<tr class=\"entry\" data-id=\"{id}\" data-name=\"{name}\" data-kind=\"{kind}\" data-size=\"{size}\" data-modified=\"{modified_iso}\"{shared}>\
         <td class=\"col-name\"><a class=\"name {kind}\" href=\"{href}\">{name}</a></td>\
         <td class=\"col-size\">{shown_size}</td><td class=\"col-modified\">{modified}</td><td class=\"col-actions\">",
        id = e.id,
        size = e.size,
        shared = if e.shared {
            " data-shared=\"true\""
        } else {
            ""
        },
        shown_size = if e.folder {
            String::new()
        } else {
            human_size(e.size)
        },
        modified = if e.modified > 0 {
            time_tag(e.modified)
        } else {
            String::new()
        },
    );
    let mut action = |a: &str, label: &str| {
        let _ = write!(
            body,
            "<button type=\"button\" data-action=\"{a}\" title=\"{label}\" aria-label=\"{label} {name}\"></button>"
        );
    };
    action("download", "Download");
    if !read_only {
        action("rename", "Rename");
        action("move", "Move");
        action("delete", "Delete");
    }
    if !e.folder {
        action("versions", "Versions");
    }
    if e.folder && !e.shared && !read_only {
        action("share", "Share");
    }
    action("link", "Link");
    body.push_str("</td></tr>");
}

/// Compares names as people expect: case-insensitively, numbers by value.
fn natural(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| -> Vec<(u8, String, u128)> {
        let mut parts = Vec::new();
        let mut chars = s.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_digit() {
                let mut n = String::new();
                while let Some(&d) = chars.peek() {
                    if !d.is_ascii_digit() {
                        break;
                    }
                    n.push(d);
                    chars.next();
                }
                parts.push((0, String::new(), n.parse().unwrap_or(u128::MAX)));
            } else {
                let mut t = String::new();
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_digit() {
                        break;
                    }
                    t.extend(d.to_lowercase());
                    chars.next();
                }
                parts.push((1, t, 0));
            }
        }
        parts
    };
    key(a).cmp(&key(b)).then_with(|| a.cmp(b))
}

/// The dialogs the script opens (one of each per page).
const DIALOGS: &str = "\
<dialog id=\"name-dialog\" aria-labelledby=\"name-title\"><form method=\"dialog\">\
<h2 id=\"name-title\">Name</h2><label for=\"name-input\">Name</label>\
<input id=\"name-input\" name=\"name\" required autocomplete=\"off\">\
<div class=\"buttons\"><button value=\"cancel\" formnovalidate>Cancel</button><button value=\"ok\" class=\"primary\">OK</button></div></form></dialog>\
<dialog id=\"move-dialog\" aria-labelledby=\"move-title\"><form method=\"dialog\">\
<h2 id=\"move-title\">Move to</h2><label for=\"move-target\">Folder</label><select id=\"move-target\" name=\"target\"></select>\
<div class=\"buttons\"><button value=\"cancel\">Cancel</button><button value=\"ok\" class=\"primary\">Move</button></div></form></dialog>\
<dialog id=\"confirm-dialog\" aria-labelledby=\"confirm-title\"><form method=\"dialog\">\
<h2 id=\"confirm-title\">Are you sure?</h2><p class=\"text\"></p>\
<div class=\"buttons\"><button value=\"cancel\">Cancel</button><button value=\"ok\" class=\"primary danger\">Delete</button></div></form></dialog>\
<dialog id=\"share-dialog\" aria-labelledby=\"share-title\"><form method=\"dialog\">\
<h2 id=\"share-title\">Share</h2><label for=\"share-email\">Email of the person</label>\
<input id=\"share-email\" type=\"email\" name=\"email\" autocomplete=\"off\">\
<label for=\"share-access\">They may</label><select id=\"share-access\" name=\"access\">\
<option value=\"read-write\">Read and change</option><option value=\"read-only\">Only read</option></select>\
<h3>Members</h3><ul class=\"members\"></ul>\
<div class=\"buttons\"><button value=\"cancel\" formnovalidate>Close</button><button value=\"ok\" class=\"primary\">Share</button></div></form></dialog>\
<dialog id=\"link-dialog\" aria-labelledby=\"link-title\"><form method=\"dialog\">\
<h2 id=\"link-title\">Shared link</h2>\
<input type=\"text\" name=\"username\" autocomplete=\"username\" hidden aria-hidden=\"true\" tabindex=\"-1\">\
<label for=\"link-password\">Password (optional)</label><input id=\"link-password\" type=\"password\" name=\"password\" autocomplete=\"new-password\">\
<label for=\"link-expires\">Expires (optional)</label><input id=\"link-expires\" type=\"date\" name=\"expires\">\
<label class=\"check\"><input type=\"checkbox\" name=\"upload_only\" id=\"link-upload\"> Upload only (a file request)</label>\
<div class=\"made\" hidden><label for=\"link-url\">Link</label><input id=\"link-url\" readonly></div>\
<div class=\"buttons\"><button value=\"cancel\" formnovalidate>Close</button><button value=\"ok\" class=\"primary\">Create link</button></div></form></dialog>";

// ---------------------------------------------------------------- trash

/// `GET /trash`.
pub(crate) async fn trash(State(state): State<AppState>, headers: HeaderMap) -> Response {
    trash_page(&state, &headers).await.unwrap_or_else(|r| r)
}

async fn trash_page(state: &AppState, headers: &HeaderMap) -> PageResult {
    let b = browser(state, headers).await?;
    let account = account(state, &b).await?;
    let items = state
        .service
        .api_trash(b.user)
        .await
        .map_err(|e| error_page(&e))?;
    let mut body = String::from(
        "<h1>Trash</h1><p class=\"hint\">Deleted files and folders, newest first. \
         Restoring a folder brings back what was deleted with it.</p>",
    );
    if items.is_empty() {
        body.push_str("<p class=\"empty\">The trash is empty.</p>");
    }
    body.push_str("<table id=\"trash\"><thead><tr><th scope=\"col\">Name</th><th scope=\"col\" class=\"col-size\">Size</th><th scope=\"col\" class=\"col-modified\">Deleted</th><th scope=\"col\"><span class=\"visually-hidden\">Actions</span></th></tr></thead><tbody>");
    for node in &items {
        let ApiNode::Item { meta, workspace } = node else {
            continue;
        };
        let name = esc(meta.name.as_str());
        let kind = if meta.is_folder { "folder" } else { "file" };
        let place = if workspace.is_shared {
            format!(" <span class=\"where\">in {}</span>", esc(&workspace.name))
        } else {
            String::new()
        };
        let _ = write!(
            body,
            "<tr class=\"entry\" data-id=\"{id}\" data-name=\"{name}\" data-kind=\"{kind}\">\
             <td><span class=\"name {kind}\">{name}</span>{place}</td><td class=\"col-size\">{size}</td><td class=\"col-modified\">{when}</td>\
             <td class=\"col-actions\"><button type=\"button\" class=\"text\" data-action=\"restore\" aria-label=\"Restore {name}\">Restore</button></td></tr>",
            id = meta.id,
            size = if meta.is_folder {
                String::new()
            } else {
                human_size(previous_size(state, b.user, meta).await)
            },
            when = time_tag(meta.server_modified),
        );
    }
    body.push_str("</tbody></table>");
    Ok(html_page(
        StatusCode::OK,
        user_page("Trash", Section::Trash, &account, &b.csrf(), &body),
    ))
}

/// The size a deleted file had (its deletion records 0).
async fn previous_size(
    state: &AppState,
    user: stacksync_proto::UserId,
    meta: &stacksync_proto::ItemMeta,
) -> u64 {
    if meta.version < 2 {
        return 0;
    }
    match state
        .service
        .api_version(user, meta.id.0, meta.version - 1)
        .await
    {
        Ok(ApiNode::Item { meta, .. }) => meta.size,
        _ => 0,
    }
}

// ---------------------------------------------------------------- versions

/// `GET /versions/{id}`.
pub(crate) async fn versions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    versions_page(&state, &headers, &id)
        .await
        .unwrap_or_else(|r| r)
}

async fn versions_page(state: &AppState, headers: &HeaderMap, id: &str) -> PageResult {
    let b = browser(state, headers).await?;
    let account = account(state, &b).await?;
    let id: Uuid = id
        .parse()
        .map_err(|_| error_page(&Error::not_found("no such file")))?;
    let versions = state
        .service
        .api_versions(b.user, id, false)
        .await
        .map_err(|e| error_page(&e))?;
    let latest = versions.last().and_then(|n| match n {
        ApiNode::Item { meta, .. } => Some(meta.clone()),
        _ => None,
    });
    let Some(latest) = latest else {
        return Err(error_page(&Error::not_found("no such file")));
    };
    let name = esc(latest.name.as_str());
    let parent = match latest.parent {
        Some(p) => format!("/files/{p}"),
        None => "/files".to_owned(),
    };
    let mut body = format!(
        "<nav class=\"breadcrumbs\" aria-label=\"Back\"><ol><li><a href=\"{parent}\">Back to the folder</a></li></ol></nav>\
         <h1>Versions of {name}</h1><div id=\"file\" data-id=\"{id}\"></div>\
         <table id=\"versions\"><thead><tr><th scope=\"col\">Version</th><th scope=\"col\">Saved</th><th scope=\"col\" class=\"col-size\">Size</th><th scope=\"col\"><span class=\"visually-hidden\">Actions</span></th></tr></thead><tbody>"
    );
    for node in versions.iter().rev() {
        let ApiNode::Item { meta, .. } = node else {
            continue;
        };
        let v = meta.version;
        let live = meta.status.is_live();
        let _ = write!(
            body,
            "<tr class=\"version\" data-version=\"{v}\"><td>{v}{note}</td><td>{when}</td><td class=\"col-size\">{size}</td><td class=\"col-actions\">",
            note = if !live {
                " <span class=\"tag\">deleted</span>"
            } else if v == latest.version {
                " <span class=\"tag\">current</span>"
            } else {
                ""
            },
            when = time_tag(meta.server_modified),
            size = if live {
                human_size(meta.size)
            } else {
                String::new()
            },
        );
        if live {
            let _ = write!(
                body,
                "<a class=\"download button\" href=\"/api/v2/file/{id}/version/{v}/data?download=1\" download>Download</a>"
            );
            if v != latest.version {
                let _ = write!(
                    body,
                    "<button type=\"button\" data-action=\"restore\" data-version=\"{v}\" aria-label=\"Restore version {v}\">Restore</button>"
                );
            }
        }
        body.push_str("</td></tr>");
    }
    body.push_str("</tbody></table>");
    Ok(html_page(
        StatusCode::OK,
        user_page(
            &format!("Versions of {}", latest.name.as_str()),
            Section::Files,
            &account,
            &b.csrf(),
            &body,
        ),
    ))
}

// ---------------------------------------------------------------- preview

/// What the browser can show of a file, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    Image,
    Pdf,
    Text,
    Audio,
    Video,
    Nothing,
}

/// How the preview page shows a file of this name (what it is served as
/// is `served.rs`'s to say; text is fetched and shown as text).
pub(crate) fn shown_as(name: &str) -> Shown {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" | "jpg" | "jpeg" | "gif" | "webp" | "avif" | "bmp" => Shown::Image,
        "pdf" => Shown::Pdf,
        "txt" | "md" | "csv" | "log" | "json" | "toml" | "yaml" | "yml" | "rs" | "py" | "c"
        | "h" | "js" | "css" | "sh" | "ini" | "conf" | "xml" | "html" | "htm" | "svg" => {
            Shown::Text
        }
        "mp3" | "ogg" | "oga" | "wav" | "flac" | "m4a" => Shown::Audio,
        "mp4" | "m4v" | "webm" | "ogv" => Shown::Video,
        _ => Shown::Nothing,
    }
}

/// `GET /preview/{id}`.
pub(crate) async fn preview(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    preview_page(&state, &headers, &id)
        .await
        .unwrap_or_else(|r| r)
}

async fn preview_page(state: &AppState, headers: &HeaderMap, id: &str) -> PageResult {
    let b = browser(state, headers).await?;
    let account = account(state, &b).await?;
    let id: Uuid = id
        .parse()
        .map_err(|_| error_page(&Error::not_found("no such file")))?;
    let node = state
        .service
        .api_node(b.user, Some(id))
        .await
        .map_err(|e| error_page(&e))?;
    let ApiNode::Item { meta, workspace } = &node else {
        return Err(see_other(&format!("/files/{id}"), &[]));
    };
    if meta.is_folder {
        return Err(see_other(&format!("/files/{id}"), &[]));
    }
    if !meta.status.is_live() {
        return Err(error_page(&Error::not_found("this file was deleted")));
    }
    let name = esc(meta.name.as_str());
    let data = format!("/api/v2/file/{id}/data");
    let parent = match node.parent_id() {
        Some(p) => format!("/files/{p}"),
        None => "/files".to_owned(),
    };
    let shown = shown_as(meta.name.as_str());
    let view = if workspace.encryption == EncryptionMode::ClientSide {
        String::new()
    } else {
        match shown {
            Shown::Image => format!("<img src=\"{data}\" alt=\"{name}\">"),
            Shown::Pdf => {
                format!("<iframe src=\"{data}\" title=\"{name}\" class=\"pdf\"></iframe>")
            }
            Shown::Text if meta.size <= 2_000_000 => format!(
                "<pre id=\"text-preview\" data-src=\"{data}\" tabindex=\"0\">Loading…</pre>"
            ),
            Shown::Audio => format!("<audio controls src=\"{data}\"></audio>"),
            Shown::Video => format!("<video controls src=\"{data}\"></video>"),
            _ => "<p class=\"empty\">No preview for this kind of file.</p>".to_owned(),
        }
    };
    let body = format!(
        "<nav class=\"breadcrumbs\" aria-label=\"Back\"><ol><li><a href=\"{parent}\">Back to the folder</a></li></ol></nav>\
         <h1>{name}</h1><p class=\"meta\">{size}, saved {when} (version {v})</p>\
         <div class=\"toolbar\"><a id=\"download\" class=\"button primary\" href=\"{data}?download=1\" download=\"{name}\">Download</a>\
         <a class=\"button\" href=\"/versions/{id}\">Versions</a></div>\
         <div class=\"preview\">{view}</div>",
        size = human_size(meta.size),
        when = time_tag(meta.server_modified),
        v = meta.version,
    );
    Ok(html_page(
        StatusCode::OK,
        user_page(
            meta.name.as_str(),
            Section::Files,
            &account,
            &b.csrf(),
            &body,
        ),
    ))
}

// ---------------------------------------------------------------- sharing

/// `GET /shared`.
pub(crate) async fn shared(State(state): State<AppState>, headers: HeaderMap) -> Response {
    shared_page(&state, &headers).await.unwrap_or_else(|r| r)
}

async fn shared_page(state: &AppState, headers: &HeaderMap) -> PageResult {
    let b = browser(state, headers).await?;
    let account = account(state, &b).await?;
    let invitations = state
        .service
        .api_invitations(b.user)
        .await
        .map_err(|e| error_page(&e))?;
    let folders = state
        .service
        .api_shared_folders(b.user)
        .await
        .map_err(|e| error_page(&e))?;
    let mut body = String::from("<h1>Sharing</h1><h2>Invitations</h2>");
    if invitations.is_empty() {
        body.push_str("<p class=\"empty\">No invitation is waiting for you.</p>");
    } else {
        body.push_str("<table id=\"invitations\"><thead><tr><th scope=\"col\">Folder</th><th scope=\"col\">From</th><th scope=\"col\">Access</th><th scope=\"col\"><span class=\"visually-hidden\">Actions</span></th></tr></thead><tbody>");
        for i in &invitations {
            let _ = write!(
                body,
                "<tr class=\"invitation\" data-id=\"{id}\"><td>{name}</td><td>{from}</td><td>{access}</td>\
                 <td class=\"col-actions\"><button type=\"button\" class=\"primary\" data-action=\"accept\">Accept</button>\
                 <button type=\"button\" data-action=\"decline\">Decline</button></td></tr>",
                id = i.proposal,
                name = esc(&i.folder_name),
                from = esc(&i.from),
                access = if i.read_only {
                    "read only"
                } else {
                    "read and change"
                },
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("<h2>Shared folders</h2>");
    if folders.is_empty() {
        body.push_str(
            "<p class=\"empty\">Nothing is shared yet. Share a folder from its row in your files.</p>",
        );
    }
    body.push_str("<table id=\"shares\"><tbody>");
    for (ws, members) in &folders {
        let owner = ws.owner == b.user;
        let _ = write!(
            body,
            "<tr class=\"share\" data-id=\"{id}\"><td><a class=\"name folder\" href=\"/files/{id}\">{name}</a>{note}</td><td><ul class=\"members\">",
            id = ws.id,
            name = esc(&ws.name),
            note = if ws.read_only {
                " <span class=\"tag\">read only</span>"
            } else {
                ""
            },
        );
        for m in members {
            let _ = write!(
                body,
                "<li data-email=\"{email}\">{who}{role}{unshare}</li>",
                email = esc(&m.email),
                who = if m.name.is_empty() {
                    esc(&m.email)
                } else {
                    format!("{} &lt;{}&gt;", esc(&m.name), esc(&m.email))
                },
                role = if m.user == ws.owner {
                    " <span class=\"tag\">owner</span>"
                } else if m.read_only {
                    " <span class=\"tag\">read only</span>"
                } else {
                    ""
                },
                unshare = if owner && m.user != ws.owner {
                    format!(
                        " <button type=\"button\" data-action=\"unshare\" data-email=\"{e}\" aria-label=\"Remove {e}\">Remove</button>",
                        e = esc(&m.email)
                    )
                } else {
                    String::new()
                },
            );
        }
        body.push_str("</ul></td></tr>");
    }
    body.push_str("</tbody></table>");
    Ok(html_page(
        StatusCode::OK,
        user_page("Sharing", Section::Shared, &account, &b.csrf(), &body),
    ))
}

// ---------------------------------------------------------------- links

/// `GET /links`: the script fills the table from `GET /api/v2/links`.
pub(crate) async fn links(State(state): State<AppState>, headers: HeaderMap) -> Response {
    links_page(&state, &headers).await.unwrap_or_else(|r| r)
}

async fn links_page(state: &AppState, headers: &HeaderMap) -> PageResult {
    let b = browser(state, headers).await?;
    let account = account(state, &b).await?;
    let body = "<h1>Shared links</h1><p class=\"hint\">Anyone with a link can open what it \
                points to (or, for a file request, upload into it). Make links from the rows of \
                your files.</p><table id=\"links\"><thead><tr><th scope=\"col\">Item</th><th scope=\"col\">Access</th><th scope=\"col\">Expires</th><th scope=\"col\"><span class=\"visually-hidden\">Actions</span></th></tr></thead><tbody></tbody></table>\
                <p class=\"empty\" hidden>You have no shared links.</p>";
    Ok(html_page(
        StatusCode::OK,
        user_page("Links", Section::Links, &account, &b.csrf(), body),
    ))
}

// ---------------------------------------------------------------- devices

/// `GET /devices`.
pub(crate) async fn devices(State(state): State<AppState>, headers: HeaderMap) -> Response {
    devices_page(&state, &headers).await.unwrap_or_else(|r| r)
}

async fn devices_page(state: &AppState, headers: &HeaderMap) -> PageResult {
    let b = browser(state, headers).await?;
    let account = account(state, &b).await?;
    let sessions = state
        .service
        .web_sessions(b.user, &token_hash(&b.token))
        .await
        .map_err(|e| error_page(&e))?;
    let apps = state
        .service
        .authorized_apps(b.user)
        .await
        .map_err(|e| error_page(&e))?;
    let csrf = b.csrf();
    let mut body = String::from(
        "<h1>Devices</h1><p class=\"hint\">Where you are signed in. Signing a device out ends its \
         access at once; it must sign in again to sync.</p>\
         <table id=\"devices\"><thead><tr><th scope=\"col\">Device</th><th scope=\"col\">Signed in</th><th scope=\"col\">Last seen</th><th scope=\"col\"><span class=\"visually-hidden\">Actions</span></th></tr></thead><tbody>",
    );
    for s in &sessions {
        let (name, seen) = match &s.device {
            Some(d) => (
                format!(
                    "{} <span class=\"where\">{}</span>",
                    esc(&d.name),
                    esc(&d.os)
                ),
                time_tag(d.last_access),
            ),
            None if s.web => (esc(&s.label), String::new()),
            None => ("Desktop client".to_owned(), String::new()),
        };
        let _ = write!(
            body,
            "<tr class=\"device{current}\" data-id=\"{id}\"><td>{kind} {name}{this}</td><td>{since}</td><td>{seen}</td>\
             <td class=\"col-actions\"><form method=\"post\" action=\"/devices/{id}/sign-out\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" data-action=\"sign-out\">Sign out</button></form></td></tr>",
            current = if s.current { " current" } else { "" },
            id = esc(&s.id),
            kind = if s.web {
                "<span class=\"tag\">browser</span>"
            } else {
                "<span class=\"tag\">desktop</span>"
            },
            this = if s.current {
                " <strong>(this browser)</strong>"
            } else {
                ""
            },
            since = time_tag(s.created_at),
        );
    }
    body.push_str("</tbody></table><h2>Apps</h2>");
    if apps.is_empty() {
        body.push_str("<p class=\"empty\">No app has access to your account.</p>");
    } else {
        body.push_str("<table id=\"apps\"><tbody>");
        for a in &apps {
            let _ = write!(
                body,
                "<tr class=\"app\" data-id=\"{key}\"><td>{name}</td><td>{since}</td>\
                 <td class=\"col-actions\"><button type=\"button\" data-action=\"revoke-app\">Remove access</button></td></tr>",
                key = esc(&a.consumer_key),
                name = esc(&a.name),
                since = time_tag(a.authorized_at),
            );
        }
        body.push_str("</tbody></table>");
    }
    Ok(html_page(
        StatusCode::OK,
        user_page("Devices", Section::Devices, &account, &csrf, &body),
    ))
}

/// `POST /devices/{id}/sign-out`.
pub(crate) async fn sign_out_device(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let b = match browser(&state, &headers).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if !csrf_holds(&b.token, form.as_ref().ok().map(|f| f.csrf.as_str())) {
        return forbidden();
    }
    let current = token_hash(&b.token).starts_with(&id);
    match state.service.web_sign_out_session(b.user, &id).await {
        Ok(_) if current => see_other(
            "/",
            &[set_cookie(
                SESSION_COOKIE,
                "",
                None,
                secure(&state, peer, &headers),
            )],
        ),
        Ok(_) => see_other("/devices", &[]),
        Err(e) => error_page(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_naturally() {
        let mut names = vec!["file10", "File2", "file1", "a"];
        names.sort_by(|a, b| natural(a, b));
        assert_eq!(names, ["a", "file1", "File2", "file10"]);
    }

    #[test]
    fn only_harmless_types_are_shown() {
        assert_eq!(shown_as("a.PNG"), Shown::Image);
        assert_eq!(shown_as("page.html"), Shown::Text);
        assert_eq!(shown_as("x.svg"), Shown::Text);
        assert_eq!(shown_as("x.exe"), Shown::Nothing);
    }
}
