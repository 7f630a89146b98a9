//! The website and mobile web app (issue 23; design and the contract of
//! its pages in `docs/web-ui.md`): pages rendered here with every value
//! escaped, one script and one style sheet compiled into the binary, and
//! every action of the script taken through REST API v2 with the browser's
//! session cookie (`api_v2::account::caller` accepts it, with the CSRF
//! token on anything but GET and HEAD).
//!
//! Sessions are the service's login sessions (of kind "web"): the cookie
//! holds the token, signing in always makes a new one, signing out ends it.
//! The CSRF token is derived from the session token, so nothing more is
//! kept; the sign-in form has its own, derived from a pre-session cookie.

mod assets;
mod folder;
mod html;
mod pages;
mod views;
mod zip;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header::{COOKIE, HeaderName, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use stacksync_proto::UserId;

use crate::AppState;

/// The session cookie: the service's session token.
pub(crate) const SESSION_COOKIE: &str = "stacksync_session";

/// The sign-in form's pre-session cookie (a random value whose derived
/// token the form must carry).
const PRESESSION_COOKIE: &str = "stacksync_presession";

/// Where state-changing requests of the script carry the CSRF token.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// Largest form the website posts (sign-in, sign-out, a session's id).
const MAX_FORM: usize = 16 * 1024;

/// The website's routes.
pub(crate) fn routes() -> Router<AppState> {
    let limit = DefaultBodyLimit::max(MAX_FORM);
    Router::new()
        .route("/", get(pages::index))
        .route(
            "/signin",
            get(pages::index).post(pages::sign_in).layer(limit),
        )
        .route("/signout", post(pages::sign_out).layer(limit))
        .route("/files", get(folder::root_folder))
        .route("/files/{id}", get(folder::folder))
        .route("/trash", get(views::trash))
        .route("/versions/{id}", get(views::versions))
        .route("/preview/{id}", get(views::preview))
        .route("/shared", get(views::shared))
        .route("/links", get(views::links))
        .route("/devices", get(pages::devices))
        .route(
            "/devices/{id}/sign-out",
            post(pages::sign_out_device).layer(limit),
        )
        .route("/assets/{name}", get(assets::asset))
        .route("/manifest.webmanifest", get(assets::manifest))
        .route("/sw.js", get(assets::service_worker))
        // Pages and assets are text that compresses tenfold; zips are not.
        .layer(tower_http::compression::CompressionLayer::new())
        .route("/zip/{id}", get(zip::folder_zip))
}

/// A cookie's value from the request's `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The CSRF token of a session (or pre-session) secret.
pub(crate) fn csrf_token(secret: &str) -> String {
    blake3::derive_key("StackSync web 2026-12 CSRF token", secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `presented` is the CSRF token of `secret` (in constant time).
pub(crate) fn csrf_holds(secret: &str, presented: Option<&str>) -> bool {
    let Some(presented) = presented.and_then(|p| blake3::Hash::from_hex(p.trim()).ok()) else {
        return false;
    };
    let expected = blake3::Hash::from(blake3::derive_key(
        "StackSync web 2026-12 CSRF token",
        secret.as_bytes(),
    ));
    // blake3::Hash compares in constant time.
    expected == presented
}

/// A signed-in browser: the session's user and token.
#[derive(Debug, Clone)]
pub(crate) struct Browser {
    pub user: UserId,
    pub token: String,
}

impl Browser {
    /// The browser of a request with a live session cookie, if any.
    pub(crate) async fn of(state: &AppState, headers: &HeaderMap) -> Option<Browser> {
        let token = cookie(headers, SESSION_COOKIE)?;
        let user = state.service.authenticate(token).await.ok()?;
        Some(Browser {
            user,
            token: token.to_owned(),
        })
    }

    /// The session's CSRF token.
    pub(crate) fn csrf(&self) -> String {
        csrf_token(&self.token)
    }
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, `Path=/`, `Secure`
/// when the browser reached us over TLS; `max_age` `None` deletes it.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: Option<u64>, secure: bool) -> String {
    let age = max_age.unwrap_or(0);
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={age}{secure}")
}

/// The headers of every page: a strict content security policy, no
/// framing, no referrer, no sniffing, not cached.
pub(crate) fn harden(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         media-src 'self' blob:; frame-src 'self'; object-src 'none'; connect-src 'self'; \
         worker-src 'self'; manifest-src 'self'; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'none'",
    );
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    response
}

/// An HTML page answer.
pub(crate) fn html_page(status: StatusCode, html: String) -> Response {
    let mut r = (status, html).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    harden(r)
}

/// `303 See Other` to `to`, with these cookies set.
pub(crate) fn see_other(to: &str, cookies: &[String]) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(SET_COOKIE, v);
        }
    }
    harden(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_hold_only_for_their_secret() {
        let t = csrf_token("secret-a");
        assert!(csrf_holds("secret-a", Some(&t)));
        assert!(!csrf_holds("secret-b", Some(&t)));
        assert!(!csrf_holds("secret-a", None));
        assert!(!csrf_holds("secret-a", Some("not hex")));
        assert!(!csrf_holds("secret-a", Some(&t[..32])));
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; stacksync_session=abc"),
        );
        h.append(COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
