//! The website's static files, compiled into the binary: served under a
//! name that holds a hash of their bytes (`/assets/app.1a2b3c4d.js`), so
//! they may be cached for a year and a new server never meets a stale copy.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

struct Asset {
    name: &'static str,
    kind: &'static str,
    bytes: &'static [u8],
}

const FILES: [Asset; 4] = [
    Asset {
        name: "app.js",
        kind: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/app.js"),
    },
    Asset {
        name: "app.css",
        kind: "text/css; charset=utf-8",
        bytes: include_bytes!("../../web/app.css"),
    },
    Asset {
        name: "icon.svg",
        kind: "image/svg+xml",
        bytes: include_bytes!("../../web/icon.svg"),
    },
    Asset {
        name: "icon-192.png",
        kind: "image/png",
        bytes: include_bytes!("../../web/icon-192.png"),
    },
];

/// Each file's served name (`stem.HASH.ext`).
static HASHED: LazyLock<Vec<String>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|a| {
            let hash = blake3::hash(a.bytes).to_hex();
            let (stem, ext) = a.name.rsplit_once('.').unwrap_or((a.name, ""));
            format!("{stem}.{}.{ext}", &hash[..12])
        })
        .collect()
});

/// The URL of a file by its plain name.
pub(crate) fn url(name: &str) -> String {
    FILES
        .iter()
        .zip(HASHED.iter())
        .find(|(a, _)| a.name == name)
        .map(|(_, h)| format!("/assets/{h}"))
        .unwrap_or_default()
}

/// `GET /assets/{name}`.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    let Some((a, _)) = FILES.iter().zip(HASHED.iter()).find(|(_, h)| **h == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let mut r = a.bytes.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// `GET /manifest.webmanifest`: installs the site as an app.
pub(crate) async fn manifest() -> Response {
    let body = serde_json::json!({
        "name": "StackSync",
        "short_name": "StackSync",
        "description": "Your files, on every device.",
        "start_url": "/files",
        "scope": "/",
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": "#1f5fa8",
        "icons": [
            {"src": url("icon.svg"), "sizes": "any", "type": "image/svg+xml"},
            {"src": url("icon-192.png"), "sizes": "192x192", "type": "image/png"},
        ],
    });
    let mut r = body.to_string().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/manifest+json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `GET /sw.js`: the service worker (at the top so that its scope is the
/// whole site), told the current asset names.
pub(crate) async fn service_worker() -> Response {
    let assets: Vec<String> = FILES.iter().map(|a| url(a.name)).collect();
    let script = format!(
        "const ASSETS = {};\n{}",
        serde_json::to_string(&assets).unwrap_or_else(|_| "[]".to_owned()),
        include_str!("../../web/sw.js")
    );
    let mut r = script.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_hashed_url() {
        for a in &FILES {
            let u = url(a.name);
            assert!(
                u.starts_with("/assets/") && u.len() > a.name.len() + 9,
                "{u}"
            );
        }
        assert_eq!(url("nothing.js"), "");
    }
}
