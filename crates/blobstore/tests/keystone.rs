//! The Keystone v3 code path against a small fake Keystone and object store
//! served on loopback (no real Keystone runs here): password login, catalog
//! lookup, token renewal on 401, and the ETag check on GET.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use md5::{Digest, Md5};
use stacksync_blobstore::{
    BlobErrorKind, BlobStore, ContainerName, StoreConfig, SwiftAuth, SwiftConfig, SwiftStore,
};
use stacksync_proto::{ChunkId, WorkspaceId};

#[derive(Default)]
struct Fake {
    base: String,
    valid_tokens: HashSet<String>,
    issued: u32,
    objects: HashMap<String, Vec<u8>>,
    containers: HashSet<String>,
    corrupt_gets: bool,
    last_login: Option<serde_json::Value>,
}

type Shared = Arc<Mutex<Fake>>;

async fn login(State(fake): State<Shared>, body: Bytes) -> Response {
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let password = &body["auth"]["identity"]["password"]["user"]["password"];
    if password != "secret" {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut f = fake.lock().unwrap();
    f.issued += 1;
    let token = format!("tok-{}", f.issued);
    f.valid_tokens.insert(token.clone());
    f.last_login = Some(body);
    let catalog = serde_json::json!({"token": {"catalog": [
        {"type": "identity", "endpoints": [{"interface": "public", "region": "RegionOne", "url": "http://unused"}]},
        {"type": "object-store", "endpoints": [
            {"interface": "internal", "region": "RegionOne", "url": "http://127.0.0.1:9/v1/AUTH_proj"},
            {"interface": "public", "region": "RegionTwo", "url": "http://127.0.0.1:9/v1/AUTH_proj"},
            {"interface": "public", "region": "RegionOne", "url": format!("{}/v1/AUTH_proj", f.base)}
        ]}
    ]}});
    (
        StatusCode::CREATED,
        [("X-Subject-Token", token)],
        catalog.to_string(),
    )
        .into_response()
}

fn authorized(f: &Fake, headers: &HeaderMap) -> bool {
    headers
        .get("X-Auth-Token")
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| f.valid_tokens.contains(t))
}

async fn put_container(
    State(fake): State<Shared>,
    Path((_, c)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut f = fake.lock().unwrap();
    if !authorized(&f, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    f.containers.insert(c);
    StatusCode::CREATED.into_response()
}

async fn object(
    State(fake): State<Shared>,
    Path((_, c, o)): Path<(String, String, String)>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut f = fake.lock().unwrap();
    if !authorized(&f, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let key = format!("{c}/{o}");
    let etag = |b: &[u8]| hex::encode(Md5::digest(b));
    match method {
        axum::http::Method::PUT => {
            if !f.containers.contains(&c) {
                return StatusCode::NOT_FOUND.into_response();
            }
            let tag = etag(&body);
            f.objects.insert(key, body.to_vec());
            (StatusCode::CREATED, [("ETag", tag)]).into_response()
        }
        axum::http::Method::GET => match f.objects.get(&key) {
            Some(data) => {
                let mut out = data.clone();
                if f.corrupt_gets && !out.is_empty() {
                    out[0] ^= 1;
                }
                (
                    StatusCode::OK,
                    [("ETag", format!("\"{}\"", etag(data)))],
                    out,
                )
                    .into_response()
            }
            None => StatusCode::NOT_FOUND.into_response(),
        },
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

async fn serve() -> (Shared, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let fake: Shared = Arc::new(Mutex::new(Fake {
        base: base.clone(),
        ..Fake::default()
    }));
    let app = Router::new()
        .route("/v3/auth/tokens", post(login))
        .route("/v1/{account}/{container}", put(put_container))
        .route(
            "/v1/{account}/{container}/{object}",
            put(object).get(object),
        )
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, base)
}

fn keystone(base: &str, password: &str) -> SwiftConfig {
    SwiftConfig::new(SwiftAuth::KeystoneV3 {
        auth_url: format!("{base}/v3"),
        user: "alice".into(),
        password: password.into(),
        user_domain: "Default".into(),
        project: "stacksync".into(),
        project_domain: "Default".into(),
        region: Some("RegionOne".into()),
        interface: "public".into(),
    })
}

#[tokio::test]
async fn keystone_login_catalog_and_renewal() {
    let (fake, base) = serve().await;
    let store = SwiftStore::new(keystone(&base, "secret")).unwrap();
    assert_eq!(
        store.storage_url().await.unwrap(),
        format!("{base}/v1/AUTH_proj")
    );
    let login = fake.lock().unwrap().last_login.clone().unwrap();
    assert_eq!(login["auth"]["identity"]["methods"][0], "password");
    assert_eq!(
        login["auth"]["identity"]["password"]["user"]["name"],
        "alice"
    );
    assert_eq!(login["auth"]["scope"]["project"]["name"], "stacksync");

    let c = ContainerName::for_workspace(WorkspaceId::new());
    store.create_container(&c).await.unwrap();
    let body = Bytes::from_static(b"chunk bytes");
    let id = ChunkId(*blake3::hash(&body).as_bytes());
    store.put_bytes(&c, &id, body.clone()).await.unwrap();
    assert_eq!(store.get_bytes(&c, &id).await.unwrap(), body);
    assert_eq!(store.stats().logins, 1);

    // Keystone revokes every token: the next request is refused once, then
    // succeeds with a new token.
    fake.lock().unwrap().valid_tokens.clear();
    assert_eq!(store.get_bytes(&c, &id).await.unwrap(), body);
    assert_eq!(store.stats().logins, 2);
    assert_eq!(fake.lock().unwrap().issued, 2);
}

#[tokio::test]
async fn keystone_wrong_password_is_unauthenticated() {
    let (_fake, base) = serve().await;
    let err =
        stacksync_blobstore::open_store(&StoreConfig::Swift(Box::new(keystone(&base, "nope"))))
            .await
            .unwrap_err();
    assert_eq!(err.kind, BlobErrorKind::Unauthenticated, "{err}");
}

#[tokio::test]
async fn body_not_matching_etag_is_an_integrity_error() {
    let (fake, base) = serve().await;
    let store = SwiftStore::new(keystone(&base, "secret")).unwrap();
    let c = ContainerName::for_workspace(WorkspaceId::new());
    store.create_container(&c).await.unwrap();
    let body = Bytes::from_static(b"will be corrupted in transit");
    let id = ChunkId(*blake3::hash(&body).as_bytes());
    store.put_bytes(&c, &id, body).await.unwrap();
    fake.lock().unwrap().corrupt_gets = true;
    let err = store.get_bytes(&c, &id).await.unwrap_err();
    assert_eq!(err.kind, BlobErrorKind::Integrity, "{err}");
}
