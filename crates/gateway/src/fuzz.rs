//! Fuzzing entry points for what the gateway reads from a request before
//! the service sees it: `Range` and `Authorization` headers, the ids in a
//! path, the notification socket's query, and whole requests (method,
//! path, headers, body) driven through the router against a real service.
//! They must never panic; the `fuzz/` cargo-fuzz project and
//! `tests/fuzz.rs` both call them.

use std::str::FromStr;

use axum::Router;
use axum::body::Body;
use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use stacksync_proto::rpc::{Request as RpcOp, RpcRequest};
use stacksync_proto::{ChunkId, WorkspaceId, wire};
use stacksync_service::Service;

use crate::auth::bearer;
use crate::notify::TokenQuery;
use crate::range::requested;

/// Reads `data` as the value of a `Range` header. An accepted range is
/// `start..end` with `start < end`, and written back as
/// `bytes=FIRST-LAST` it reads the same; two headers are always refused.
pub fn range_header(data: &[u8]) -> Option<(u64, u64)> {
    let value = HeaderValue::from_bytes(data).ok()?;
    let mut headers = HeaderMap::new();
    headers.insert(header::RANGE, value.clone());
    let parsed = requested(&headers);
    headers.append(header::RANGE, value);
    assert!(requested(&headers).is_err(), "two Range headers accepted");
    let range = parsed.ok()??;
    let end = range.end.expect("a closed range");
    assert!(range.start < end, "an empty or reversed range accepted");
    let again = HeaderValue::from_str(&format!("bytes={}-{}", range.start, end - 1))
        .expect("digits are a header value");
    let mut headers = HeaderMap::new();
    headers.insert(header::RANGE, again);
    let back = requested(&headers).expect("our own range parses");
    assert_eq!(back, Some(range), "a range written back reads differently");
    Some((range.start, end))
}

/// Reads `data` as the value of an `Authorization` header; an accepted
/// token is non-empty, trimmed, and reads the same written back.
pub fn authorization(data: &[u8]) -> Option<String> {
    let value = HeaderValue::from_bytes(data).ok()?;
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value);
    let token = bearer(&headers).ok()??;
    assert!(
        !token.is_empty() && token.trim() == token,
        "token {token:?}"
    );
    let mut again = HeaderMap::new();
    let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("was a header value");
    again.insert(header::AUTHORIZATION, value);
    assert_eq!(bearer(&again).ok().flatten().as_ref(), Some(&token));
    Some(token)
}

/// Reads `data` as the path segments of a chunk URL (workspace id, `/`,
/// chunk id) and as a notification socket's query string. Ids accepted
/// read the same written back. Returns how many parts parsed.
pub fn path_and_query(data: &[u8]) -> usize {
    let text = String::from_utf8_lossy(data);
    let (ws, id) = text.split_once('/').unwrap_or((&text, ""));
    let mut parsed = 0;
    if let Ok(ws) = WorkspaceId::from_str(ws) {
        assert_eq!(WorkspaceId::from_str(&ws.to_string()).ok(), Some(ws));
        parsed += 1;
    }
    if let Ok(id) = ChunkId::from_hex(id) {
        assert_eq!(ChunkId::from_hex(&id.to_hex()).ok(), Some(id));
        parsed += 1;
    }
    let query = percent_encode_query(data);
    if let Ok(uri) = Uri::from_str(&format!("/api/v1/notifications?{query}"))
        && Query::<TokenQuery>::try_from_uri(&uri).is_ok()
    {
        parsed += 1;
    }
    parsed
}

/// What [`request`] sends its requests as, and to.
pub struct Fixture {
    /// The gateway.
    pub router: Router,
    /// A valid session token, put where a request says `TOKEN`.
    pub token: String,
    /// The user's private workspace, put where a request says `WS`.
    pub workspace: WorkspaceId,
    /// A chunk stored there, put where a request says `ID`.
    pub chunk: ChunkId,
}

/// The object the fixture stores.
const OBJECT: &[u8] = b"a pack of fuzz: 0123456789";

/// A user, a session and a stored object on `service`, behind a router.
pub async fn fixture(service: Service) -> Fixture {
    let (email, password) = ("fuzz@example.org", "fuzz-password-1");
    let (_, private) = service
        .create_user(email, "fuzz", password, 1 << 30, None)
        .await
        .expect("the fuzz user is created");
    let session = service
        .login(email, password)
        .await
        .expect("the fuzz user logs in");
    let fixture = Fixture {
        router: crate::router(service),
        token: session.token,
        workspace: private.id,
        chunk: ChunkId([0x42; 32]),
    };
    let put = Request::put(format!(
        "/api/v1/workspaces/{}/chunks/{}",
        fixture.workspace,
        fixture.chunk.to_hex()
    ))
    .header(header::AUTHORIZATION, format!("Bearer {}", fixture.token))
    .header(header::CONTENT_LENGTH, OBJECT.len())
    .body(Body::from(OBJECT))
    .expect("a valid request");
    let status = send(&fixture.router, put).await.0;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "the fixture's object is stored"
    );
    fixture
}

/// Builds one request from `data` and sends it through the router:
///
/// * byte 0 picks the method, byte 1 the route;
/// * then, separated by newlines: two path parts, the `Authorization`,
///   `Range` and `Content-Length` values, the query string, and the body
///   (the rest, framed by the Content-Length as HTTP frames it).
///
/// `TOKEN`, `WS` and `ID` are replaced by the fixture's token, workspace
/// and chunk, so that a fuzzer gets past authentication. Logins (through
/// the login endpoint or an RPC) are not sent: they cost a password hash
/// each. The answer must never be a 500, and a partial answer carries
/// exactly the range asked for. Returns the status, if a request was sent.
pub async fn request(fx: &Fixture, data: &[u8]) -> Option<StatusCode> {
    let (head, rest) = data.split_at(data.len().min(2));
    let byte = |i: usize| head.get(i).copied().unwrap_or(0);
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::HEAD,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ];
    let method = methods[usize::from(byte(0)) % methods.len()].clone();
    let mut fields = rest.splitn(7, |b| *b == b'\n').map(|f| substitute(fx, f));
    let mut next = || fields.next().unwrap_or_default();
    let (a, b) = (next(), next());
    let (auth, range, length, query, mut body) = (next(), next(), next(), next(), next());
    // Framed as HTTP/1.1 frames it: a body is cut at its Content-Length,
    // and a request whose body is shorter than it says, or whose length
    // is not a number, never reaches the router (hyper refuses it, or
    // waits for the rest until the client goes away).
    if !length.is_empty() {
        let n: usize = std::str::from_utf8(&length).ok()?.trim().parse().ok()?;
        if body.len() < n {
            return None;
        }
        body.truncate(n);
    }
    let path = match byte(1) % 8 {
        0 => "/".to_owned(),
        1 => "/health".to_owned(),
        2 => "/api/v1/rpc".to_owned(),
        3 => "/api/v1/notifications".to_owned(),
        4 => format!("/api/v1/workspaces/{}/chunks/exists", percent_encode(&a)),
        5 | 6 => format!(
            "/api/v1/workspaces/{}/chunks/{}",
            percent_encode(&a),
            percent_encode(&b)
        ),
        _ => String::from_utf8_lossy(&a).into_owned(),
    };
    if path.starts_with("/api/v1/login") || is_login(&body) {
        return None;
    }
    let uri = if query.is_empty() {
        path
    } else {
        format!("{path}?{}", percent_encode_query(&query))
    };
    let uri = Uri::from_str(&uri).ok()?;
    let mut req = Request::builder().method(method).uri(uri);
    for (name, value) in [
        (header::AUTHORIZATION, &auth),
        (header::RANGE, &range),
        (header::CONTENT_LENGTH, &length),
    ] {
        if !value.is_empty()
            && let Ok(value) = HeaderValue::from_bytes(value)
        {
            req = req.header(name, value);
        }
    }
    let req = req.body(Body::from(body)).ok()?;
    let asked = requested(req.headers()).ok().flatten();
    let (status, headers, bytes) = send(&fx.router, req).await;
    assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "a request made the gateway fail: {}",
        String::from_utf8_lossy(&bytes)
    );
    if status == StatusCode::PARTIAL_CONTENT {
        let range = asked.expect("a partial answer to a request without a range");
        let end = range.end.expect("ranges are closed");
        assert_eq!(
            bytes.len() as u64,
            end - range.start,
            "not the range asked for"
        );
        assert!(headers.contains_key(header::CONTENT_RANGE));
    }
    Some(status)
}

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, axum::body::Bytes) {
    let mut router = router.clone();
    let response = tower_service::Service::call(&mut router, req)
        .await
        .unwrap_or_else(|never| match never {});
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    (parts.status, parts.headers, bytes)
}

/// Whether `body` is an RPC that would hash a password.
fn is_login(body: &[u8]) -> bool {
    matches!(
        wire::decode::<RpcRequest>(body).map(|r| r.request),
        Ok(RpcOp::Login { .. } | RpcOp::ChangePassword { .. })
    )
}

fn substitute(fx: &Fixture, field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let rest = &field[i..];
        let (with, skip) = if rest.starts_with(b"TOKEN") {
            (fx.token.clone(), 5)
        } else if rest.starts_with(b"WS") {
            (fx.workspace.to_string(), 2)
        } else if rest.starts_with(b"ID") {
            (fx.chunk.to_hex(), 2)
        } else {
            out.push(rest[0]);
            i += 1;
            continue;
        };
        out.extend_from_slice(with.as_bytes());
        i += skip;
    }
    out
}

/// Everything but unreserved characters escaped: any bytes reach the
/// path extractor as one segment.
fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// [`percent_encode`], keeping the query's own `=` and `&`.
fn percent_encode_query(bytes: &[u8]) -> String {
    bytes
        .split(|b| *b == b'&')
        .map(|pair| {
            pair.splitn(2, |b| *b == b'=')
                .map(percent_encode)
                .collect::<Vec<_>>()
                .join("=")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Valid header values, path parts and queries for the parser targets.
pub fn header_seeds() -> Vec<Vec<u8>> {
    [
        "bytes=0-0",
        "bytes=10-19",
        " bytes=5 - 9 ",
        "bytes=0-18446744073709551614",
        "Bearer abc",
        "bearer  0123456789abcdef ",
        "01234567-89ab-cdef-0123-456789abcdef/4242424242424242424242424242424242424242424242424242424242424242",
        "token=abc&hints=1",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// Valid requests for [`request`]: every route, authenticated.
pub fn request_seeds() -> Vec<Vec<u8>> {
    let rpc = |op: RpcOp| {
        wire::encode(&RpcRequest {
            request_id: WorkspaceId::NIL.0,
            token: String::new(),
            request: op,
        })
    };
    let ws = WorkspaceId::NIL;
    // Two bytes (method, route), then the fields, newline-separated.
    let field = |head: [u8; 2], parts: &[&[u8]]| [&head[..], &parts.join(&b'\n')].concat();
    let auth: &[u8] = b"Bearer TOKEN";
    let compressed = wire::encode_for(
        &RpcRequest {
            request_id: WorkspaceId::NIL.0,
            token: String::new(),
            request: RpcOp::GetChanges {
                workspace: ws,
                since: 0,
                limit: 100,
            },
        },
        wire::Peer::CURRENT,
    );
    vec![
        field([0, 0], &[]),
        field([0, 1], &[]),
        field(
            [1, 2],
            &[b"", b"", auth, b"", b"", b"", &rpc(RpcOp::GetWorkspaces)],
        ),
        field([0, 3], &[b"", b"", auth, b"", b"", b"hints=1"]),
        field(
            [1, 4],
            &[b"WS", b"", auth, b"", b"", b"", br#"["ID","00"]"#],
        ),
        field([0, 5], &[b"WS", b"ID", auth, b"bytes=2-9"]),
        field([2, 6], &[b"WS", b"ID", auth, b"", b"5", b"", b"hello"]),
        field([0, 7], &[b"/api/v1/workspaces/WS/chunks/ID?x=1", b"", auth]),
        field([1, 2], &[b"", b"", auth, b"", b"", b"", &compressed]),
    ]
}
