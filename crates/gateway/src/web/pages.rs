//! The website's frame of every page (who is signed in, error pages), its
//! few form posts (sign in, sign out, sign a device out) and the devices
//! page. The folder page is `folder.rs`, the others `views.rs`; everything
//! the pages change goes through REST API v2.

use std::fmt::Write;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use stacksync_proto::{Account, Error, ErrorKind};
use stacksync_service::token_hash;
use uuid::Uuid;

use super::html::{Section, esc, time_tag, user_page, visitor_page};
use super::{
    Browser, PRESESSION_COOKIE, SESSION_COOKIE, cookie, csrf_holds, csrf_token, html_page,
    see_other, set_cookie,
};
use crate::AppState;
use crate::api_v2::Origin;
use crate::auth::PeerAddr;

/// A page's answer: the page, or where to go instead.
pub(super) type PageResult = Result<Response, Response>;

/// The signed-in browser, or the way to the sign-in page.
pub(super) async fn browser(state: &AppState, headers: &HeaderMap) -> Result<Browser, Response> {
    Browser::of(state, headers)
        .await
        .ok_or_else(|| see_other("/", &[]))
}

/// A refusal shown as a page.
pub(super) fn error_page(e: &Error) -> Response {
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

pub(super) async fn account(state: &AppState, b: &Browser) -> Result<Account, Response> {
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
