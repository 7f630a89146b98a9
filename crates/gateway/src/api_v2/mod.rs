//! The REST API v2 and its OAuth 1.0a provider endpoints: the request as the
//! client signed it (scheme, `Host`, raw path and query, rebuilt from a
//! trusted proxy's `X-Forwarded-*` when one forwarded it), whether its
//! transport was secure, and the routes. The service verifies every
//! signature ([`stacksync_service::Service::verify_api_request`]); this
//! only finds what it needs.

mod account;
mod answers;
mod authorize;
mod endpoints;
mod files;
mod inbox;
pub(crate) mod links;
mod openapi;
pub(crate) mod page;
mod sessions;

use std::net::IpAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, delete, get, post};
use stacksync_proto::{Error, ErrorKind};
use stacksync_service::stacksync_oauth::{HttpRequest, Transport};

use crate::auth::PeerAddr;
use crate::{AddressSet, AppState};

/// Largest body of an OAuth endpoint or of a bodiless API request (a form
/// of a few OAuth parameters, or the authorization form).
pub const MAX_OAUTH_BODY: usize = 16 * 1024;

/// Largest body of an API request other than an upload (a rename, a new
/// folder, a list of emails to share with).
pub const MAX_API_BODY: usize = 64 * 1024;

/// How the API trusts what is in front of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiSettings {
    /// Addresses of proxies (the Swift proxy with the `stacksync_api`
    /// middleware, a TLS terminator) whose `X-Forwarded-Proto`,
    /// `X-Forwarded-Host`, `X-Forwarded-Uri` and `X-Forwarded-For` are
    /// believed; from anyone else they are ignored. Addresses or ranges.
    pub trusted_proxies: AddressSet,
}

/// The OAuth and REST API v2 routes.
pub(crate) fn routes() -> Router<AppState> {
    let limit = DefaultBodyLimit::max(MAX_OAUTH_BODY);
    Router::new()
        .route(
            "/oauth/request_token",
            post(endpoints::request_token).layer(limit),
        )
        .route(
            "/oauth/authorize",
            get(authorize::page_for)
                .post(authorize::answer)
                .layer(limit),
        )
        .route(
            "/oauth/access_token",
            post(endpoints::access_token).layer(limit),
        )
        .route("/api/v2/account", api(get(account::account)))
        .route("/api/v2/apps", api(get(account::apps)))
        .route("/api/v2/apps/{key}", api(delete(account::revoke)))
        // Uploads stream their bodies (no body limit: the quota bounds them).
        .route(
            "/api/v2/file",
            post(files::create_file).fallback(files::method_not_allowed),
        )
        .route(
            "/api/v2/file/{id}",
            api(get(files::file)
                .put(files::place_file)
                .delete(files::delete_file)),
        )
        .route(
            "/api/v2/file/{id}/data",
            get(files::download)
                .layer(limit)
                .put(files::upload)
                .fallback(files::method_not_allowed),
        )
        .route("/api/v2/file/{id}/versions", api(get(files::versions)))
        .route(
            "/api/v2/file/{id}/version/{version}",
            api(get(files::version)),
        )
        .route(
            "/api/v2/file/{id}/version/{version}/data",
            api(get(files::version_download)),
        )
        .route(
            "/api/v2/file/{id}/version/{version}/restore",
            api(post(files::restore)),
        )
        .route(
            "/api/v2/folder",
            api(get(files::root_folder).post(files::create_folder)),
        )
        .route(
            "/api/v2/folder/{id}",
            api(get(files::folder)
                .put(files::place_folder)
                .delete(files::delete_folder)),
        )
        .route("/api/v2/folder/{id}/contents", api(get(files::contents)))
        .route("/api/v2/folder/{id}/share", api(post(files::share)))
        .route("/api/v2/folder/{id}/unshare", api(post(files::unshare)))
        .route("/api/v2/folder/{id}/members", api(get(files::members)))
        .route("/api/v2/delta", api(get(files::delta)))
        .route("/api/v2/trash", api(get(inbox::trash)))
        .route("/api/v2/trash/{id}/restore", api(post(inbox::untrash)))
        .route("/api/v2/invitations", api(get(inbox::invitations)))
        .route("/api/v2/invitations/{id}/accept", api(post(inbox::accept)))
        .route(
            "/api/v2/invitations/{id}/decline",
            api(post(inbox::decline)),
        )
        .route("/api/v2/links", api(get(links::list).post(links::create)))
        .route("/api/v2/links/{id}", api(delete(links::revoke)))
        // A piece streams (no body limit: at most 64 MiB, checked as it comes).
        .route("/api/v2/upload_session", api(post(sessions::create)))
        .route(
            "/api/v2/upload_session/{id}",
            get(sessions::status)
                .delete(sessions::cancel)
                .layer(DefaultBodyLimit::max(MAX_API_BODY))
                .put(sessions::append)
                .fallback(files::method_not_allowed),
        )
        .route(
            "/api/v2/upload_session/{id}/finish",
            api(post(sessions::finish)),
        )
        .route("/api/v2/openapi.json", api(get(openapi::document)))
        .route("/api/v2/{*rest}", any(files::no_such_endpoint))
        .layer(axum::middleware::map_response(json_rejections))
}

/// The API answers every refusal in JSON, also those axum's extractors
/// make before a handler runs (a path that is not UTF-8, a body over its
/// limit), which come as plain text.
async fn json_rejections(response: Response) -> Response {
    let plain = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    let status = response.status();
    if !plain || !status.is_client_error() {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 16 * 1024)
        .await
        .unwrap_or_default();
    let kind = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::TooLarge,
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        _ => ErrorKind::BadRequest,
    };
    let mut answer = answers::api_refusal(&Error::new(
        kind,
        String::from_utf8_lossy(&text).into_owned(),
    ));
    *answer.status_mut() = status;
    answer
}

/// An API route whose requests are small (their bodies, if any, are
/// buffered for the signature check and JSON), answering any other method
/// with a JSON 405.
fn api(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route
        .layer(DefaultBodyLimit::max(MAX_API_BODY))
        .fallback(files::method_not_allowed)
}

/// Where a request came from and how, as far as the server may believe.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    /// `http` or `https`, as the client reached the first trusted hop.
    scheme: String,
    /// The `Host` the client sent.
    authority: Option<String>,
    /// The raw path and query the client sent (percent-encoded as is).
    path_and_query: String,
    /// Whether nobody but the client and the server saw the bytes.
    pub transport: Transport,
    /// The client's address (the browser's, for login throttling).
    pub client: Option<IpAddr>,
}

/// What a header says, if it is there once and readable.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok().map(str::trim)
}

impl Origin {
    /// Whether the client reached the first trusted hop over TLS.
    pub(crate) fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    /// Reads the origin of a request received from `peer` with these
    /// `headers` at `uri`.
    pub(crate) fn of(
        settings: &ApiSettings,
        peer: Option<IpAddr>,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Origin {
        let direct_path = uri
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_else(|| uri.path().to_owned());
        let host = single(headers, HOST.as_str()).map(str::to_owned);
        let loopback = peer.is_some_and(|ip| ip.is_loopback());
        let trusted = peer.is_some_and(|ip| settings.trusted_proxies.contains(ip));
        let forwarded_proto = single(headers, "x-forwarded-proto").map(str::to_ascii_lowercase);
        if trusted && let Some(proto) = forwarded_proto {
            let https = proto == "https";
            let client = single(headers, "x-forwarded-for")
                .and_then(|list| forwarded_client(list, &settings.trusted_proxies))
                .or(peer);
            return Origin {
                scheme: if https { "https" } else { "http" }.to_owned(),
                authority: single(headers, "x-forwarded-host")
                    .map(str::to_owned)
                    .or(host),
                path_and_query: single(headers, "x-forwarded-uri")
                    .filter(|u| u.starts_with('/'))
                    .map(str::to_owned)
                    .unwrap_or(direct_path),
                transport: if https {
                    Transport::Secure
                } else {
                    Transport::Insecure
                },
                client,
            };
        }
        Origin {
            // This server speaks plain HTTP; TLS terminates in front of it.
            scheme: "http".to_owned(),
            authority: host,
            path_and_query: direct_path,
            transport: if loopback {
                Transport::Secure
            } else {
                Transport::Insecure
            },
            client: peer,
        }
    }
}

/// The client's address in a trusted proxy's `X-Forwarded-For`: walking
/// from the right (the hop nearest this server), the first address that
/// is not itself a trusted proxy; the farthest one if all are. A malformed
/// entry ends the walk: what lies left of it is not believed.
fn forwarded_client(list: &str, trusted: &AddressSet) -> Option<IpAddr> {
    let mut farthest = None;
    for entry in list.rsplit(',') {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            break;
        };
        if !trusted.contains(ip) {
            return Some(ip);
        }
        farthest = Some(ip);
    }
    farthest
}

/// A request as the OAuth verifier reads it: where it came from, its
/// method, headers and body (capped by the routes' body limit), taken
/// whole by every signed endpoint.
pub(crate) struct Signed {
    pub origin: Origin,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
}

impl FromRequest<AppState> for Signed {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let Ok(PeerAddr(peer)) = PeerAddr::from_request_parts(&mut parts, state).await;
        let origin = Origin::of(&state.api, peer, &parts.uri, &parts.headers);
        let (method, headers) = (parts.method.clone(), parts.headers.clone());
        let api = parts.uri.path().starts_with("/api/");
        let body = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|rejection| {
                if api {
                    // The API answers in JSON, a body over its limit too.
                    let kind = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ErrorKind::TooLarge
                    } else {
                        ErrorKind::BadRequest
                    };
                    answers::api_refusal(&Error::new(kind, rejection.body_text()))
                } else {
                    rejection.into_response()
                }
            })?;
        Ok(Signed {
            origin,
            method,
            headers,
            body,
        })
    }
}

impl Signed {
    /// A request whose body is not read here (an upload, which streams):
    /// signed on its head alone, as a body that is not form-encoded takes
    /// no part in an OAuth signature.
    pub(crate) async fn head_only(
        mut parts: axum::http::request::Parts,
        state: &AppState,
    ) -> Signed {
        let Ok(PeerAddr(peer)) = PeerAddr::from_request_parts(&mut parts, state).await;
        Signed {
            origin: Origin::of(&state.api, peer, &parts.uri, &parts.headers),
            method: parts.method,
            headers: parts.headers,
            body: Bytes::new(),
        }
    }

    /// The query string as the client sent it (percent-encoded).
    pub(crate) fn query(&self) -> Option<&str> {
        self.origin.path_and_query.split_once('?').map(|(_, q)| q)
    }

    /// The request's headers.
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// A header's value, if it is there once and readable.
    pub(crate) fn header(&self, name: axum::http::header::HeaderName) -> Option<&str> {
        single(&self.headers, name.as_str())
    }

    /// The buffered body.
    pub(crate) fn body(&self) -> &[u8] {
        &self.body
    }
}

/// Why a request cannot even be presented to the verifier.
#[derive(Debug)]
pub(crate) enum Unsignable {
    /// No (single, readable) `Host`.
    NoHost,
    /// Several `Authorization` fields.
    SeveralAuthorizations,
}

impl Signed {
    /// The request for `stacksync_oauth`.
    pub(crate) fn http(&self) -> Result<HttpRequest<'_>, Unsignable> {
        let authority = self.origin.authority.as_deref().ok_or(Unsignable::NoHost)?;
        let mut authorizations = self.headers.get_all(AUTHORIZATION).iter();
        let authorization = authorizations.next().map(|v| v.as_bytes());
        if authorizations.next().is_some() {
            return Err(Unsignable::SeveralAuthorizations);
        }
        let (path, query) = match self.origin.path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (self.origin.path_and_query.as_str(), None),
        };
        Ok(HttpRequest {
            method: self.method.as_str(),
            scheme: &self.origin.scheme,
            authority,
            path,
            query,
            authorization,
            content_type: self.headers.get(CONTENT_TYPE).map(|v| v.as_bytes()),
            body: &self.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let settings = ApiSettings {
            trusted_proxies: [proxy].into_iter().collect(),
        };
        let uri: Uri = "/api/v2/account?a=%20b".parse().unwrap();
        let h = headers(&[
            ("host", "backend:8080"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "swift.example"),
            ("x-forwarded-uri", "/v1/account?a=%20b"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        let via_proxy = Origin::of(&settings, Some(proxy), &uri, &h);
        assert_eq!(via_proxy.scheme, "https");
        assert_eq!(via_proxy.authority.as_deref(), Some("swift.example"));
        assert_eq!(via_proxy.path_and_query, "/v1/account?a=%20b");
        assert_eq!(via_proxy.transport, Transport::Secure);
        assert_eq!(via_proxy.client, Some("203.0.113.9".parse().unwrap()));

        let stranger: IpAddr = "10.0.0.6".parse().unwrap();
        let direct = Origin::of(&settings, Some(stranger), &uri, &h);
        assert_eq!(direct.scheme, "http");
        assert_eq!(direct.authority.as_deref(), Some("backend:8080"));
        assert_eq!(direct.path_and_query, "/api/v2/account?a=%20b");
        assert_eq!(direct.transport, Transport::Insecure);
        assert_eq!(direct.client, Some(stranger));

        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let local = Origin::of(&settings, Some(loopback), &uri, &h);
        assert_eq!(local.transport, Transport::Secure);
        assert_eq!(local.authority.as_deref(), Some("backend:8080"));

        // A chain of proxies: the client is the nearest address that is
        // not a trusted proxy; a forged entry left of it changes nothing.
        let ranges = ApiSettings {
            trusted_proxies: AddressSet::parse(["10.244.0.0/16"]).unwrap(),
        };
        let pod: IpAddr = "10.244.7.3".parse().unwrap();
        let chain = |list: &str| {
            let h = headers(&[
                ("host", "b"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-for", list),
            ]);
            Origin::of(&ranges, Some(pod), &uri, &h)
        };
        let client = |list: &str| chain(list).client.unwrap().to_string();
        assert_eq!(chain("198.51.100.1").transport, Transport::Secure);
        assert_eq!(client("198.51.100.1"), "198.51.100.1");
        assert_eq!(client("6.6.6.6, 198.51.100.1, 10.244.1.1"), "198.51.100.1");
        assert_eq!(client("10.244.2.2, 10.244.1.1"), "10.244.2.2");
        assert_eq!(client("6.6.6.6, junk, 10.244.1.1"), "10.244.1.1");
        assert_eq!(client("junk"), pod.to_string());
        let outside: IpAddr = "10.245.0.1".parse().unwrap();
        let h = headers(&[("host", "b"), ("x-forwarded-proto", "https")]);
        assert_eq!(
            Origin::of(&ranges, Some(outside), &uri, &h).transport,
            Transport::Insecure,
            "outside the range, the header is not believed"
        );

        // A trusted proxy on loopback that says the client used plain HTTP.
        let settings = ApiSettings {
            trusted_proxies: [loopback].into_iter().collect(),
        };
        let h = headers(&[("host", "b"), ("x-forwarded-proto", "http")]);
        let plain = Origin::of(&settings, Some(loopback), &uri, &h);
        assert_eq!(plain.transport, Transport::Insecure);
        assert_eq!(
            Origin::of(&settings, None, &uri, &h).transport,
            Transport::Insecure
        );
    }
}
