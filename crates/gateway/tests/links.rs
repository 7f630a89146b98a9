//! Shared links over HTTP against a real service: the secret reaches the
//! server only in the body of `POST /s/{link}/open` (every byte a client
//! sends is recorded by a proxy in front of the server, and a real
//! headless Chromium runs the page's script when one is installed), the
//! link session cookie's flags, the pages' and files' security headers,
//! one identical 404 for every dead end, passwords (401, 429), uploads,
//! and the API that makes, lists and revokes links (signed with OAuth
//! PLAINTEXT over loopback).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use stacksync_blobstore::{BlobStore, LocalStore};
use stacksync_bus::{Bus, MemoryConfig};
use stacksync_gateway::{ApiSettings, GatewayLimits};
use stacksync_metastore::testing::TestDb;
use stacksync_metastore::{AccessToken, RequestToken};
use stacksync_proto::UserId;
use stacksync_service::{
    ApiCaller, ApiNode, LinkAccess, NewContent, NewLink, Service, ServiceConfig, UploadTo,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(60);

/// A gateway whose service accepts OAuth PLAINTEXT on loopback and which
/// trusts `X-Forwarded-Proto` from 127.0.0.1 (as from a TLS terminator).
struct Server {
    url: String,
    addr: SocketAddr,
    service: Service,
    _db: TestDb,
    _blobs: tempfile::TempDir,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start() -> Server {
        let db = TestDb::sqlite().await;
        let dir = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn BlobStore> =
            Arc::new(LocalStore::open(dir.path().to_path_buf()).await.unwrap());
        let mut config = ServiceConfig::default();
        config.oauth.allow_plaintext = true;
        let service = Service::new(
            db.store.clone(),
            blobs,
            Bus::in_process(MemoryConfig::default()),
            config,
        );
        let api = ApiSettings {
            trusted_proxies: [IpAddr::from([127, 0, 0, 1])].into_iter().collect(),
        };
        let app =
            stacksync_gateway::router_with_api(service.clone(), &GatewayLimits::default(), api)
                .into_make_service_with_connect_info::<SocketAddr>();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server {
            url: format!("http://{addr}"),
            addr,
            service,
            _db: db,
            _blobs: dir,
            task,
        }
    }

    async fn user(&self, email: &str, quota: u64) -> UserId {
        let (account, _) = self
            .service
            .create_user(email, "someone", "pw-123456", quota, None)
            .await
            .unwrap();
        account.id
    }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn app(user: UserId) -> ApiCaller {
    ApiCaller {
        user,
        consumer_key: "test".into(),
    }
}

async fn folder(s: &Server, user: UserId, parent: Option<Uuid>, name: &str) -> Uuid {
    s.service
        .api_create_folder(&app(user), parent, name)
        .await
        .unwrap()
        .id()
        .unwrap()
}

async fn file(s: &Server, user: UserId, parent: Option<Uuid>, name: &str, data: &[u8]) -> Uuid {
    let piece: Result<bytes::Bytes, std::io::Error> = Ok(bytes::Bytes::copy_from_slice(data));
    let content = NewContent::from_stream(futures::stream::iter([piece]), None);
    let to = UploadTo::New {
        parent,
        name: name.into(),
    };
    s.service
        .api_upload(&app(user), to, content)
        .await
        .unwrap()
        .id()
        .unwrap()
}

/// A link's id and secret.
async fn link(s: &Server, user: UserId, new: NewLink) -> (Uuid, String) {
    let made = s.service.create_link(user, new).await.unwrap();
    (made.link.id, made.secret)
}

fn view(item: Uuid) -> NewLink {
    NewLink {
        item,
        password: None,
        expires_at: None,
        access: LinkAccess::View,
    }
}

/// `POST /s/{id}/open`; the answer and the cookie it set, if any.
async fn open(base: &str, id: &str, body: Value) -> (reqwest::Response, Option<String>) {
    let r = client()
        .post(format!("{base}/s/{id}/open"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned());
    (r, cookie)
}

/// The `name=value` part of a `Set-Cookie`.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_owned()
}

async fn get_with(url: String, cookie: Option<&str>) -> reqwest::Response {
    let mut req = client().get(url);
    if let Some(c) = cookie {
        req = req.header(reqwest::header::COOKIE, c);
    }
    req.send().await.unwrap()
}

fn header<'h>(h: &'h HeaderMap, name: &str) -> &'h str {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// What clients sent through a [`Recorder`]: each connection's bytes.
type Log = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// A TCP proxy in front of the server that records every byte clients send.
struct Recorder {
    url: String,
    log: Log,
    task: JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    async fn to(target: SocketAddr) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log: Log = Arc::default();
        let connections = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let sent = Arc::new(Mutex::new(Vec::new()));
                connections.lock().unwrap().push(sent.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut in_read, mut in_write) = inbound.into_split();
                    let (mut out_read, mut out_write) = outbound.into_split();
                    let upstream = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match in_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            sent.lock().unwrap().extend_from_slice(&buf[..n]);
                            if out_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = out_write.shutdown().await;
                    };
                    let downstream = async {
                        let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
                        let _ = in_write.shutdown().await;
                    };
                    tokio::join!(upstream, downstream);
                });
            }
        });
        Recorder { url, log, task }
    }

    /// Every request sent so far: its head (request line and headers) and
    /// its body.
    fn requests(&self) -> Vec<(String, Vec<u8>)> {
        let mut all = Vec::new();
        for conn in self.log.lock().unwrap().iter() {
            let bytes = conn.lock().unwrap().clone();
            let mut rest = &bytes[..];
            while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&rest[..end]).into_owned();
                let length = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                let body_end = (end + 4 + length).min(rest.len());
                all.push((head, rest[end + 4..body_end].to_vec()));
                rest = &rest[body_end..];
            }
        }
        all
    }
}

/// Asserts that `secret` was sent in request bodies only, and in at least
/// one `POST .../open`.
fn check_secret_in_bodies_only(requests: &[(String, Vec<u8>)], secret: &str) {
    assert!(!requests.is_empty());
    for (head, _) in requests {
        assert!(
            !head.contains(secret),
            "the secret is in a request line or header:\n{head}"
        );
    }
    let carried: Vec<&String> = requests
        .iter()
        .filter(|(_, body)| String::from_utf8_lossy(body).contains(secret))
        .map(|(head, _)| head)
        .collect();
    assert!(!carried.is_empty(), "no body carried the secret");
    for head in carried {
        let line = head.lines().next().unwrap();
        assert!(
            line.starts_with("POST /s/") && line.contains("/open "),
            "the secret went to {line}"
        );
    }
}

/// The headless browser, if one is installed; a missing one fails under
/// `CI=true` (`scripts/test` installs it), and is skipped elsewhere.
fn chromium() -> Option<String> {
    match std::env::var("STACKSYNC_TEST_CHROMIUM") {
        Ok(path) if !path.is_empty() => Some(path),
        _ if std::path::Path::new("/usr/bin/chromium").exists() => Some("/usr/bin/chromium".into()),
        _ => missing(
            "STACKSYNC_TEST_CHROMIUM",
            "the link page's script is not run in a browser",
        ),
    }
}

/// `None` after saying what is skipped; under `CI=true`, a failure.
fn missing<T>(variable: &str, what: &str) -> Option<T> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{variable} is not set under CI=true: {what} (scripts/test sets it)");
    }
    eprintln!("SKIP: {variable} is not set: {what} (scripts/test sets it)");
    None
}

/// Loads `url` in a fresh headless Chromium and returns the page's DOM
/// once its script settled.
async fn browse(chromium: &str, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(DEADLINE, run)
        .await
        .expect("Chromium finishes")
        .expect("Chromium runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_travels_in_a_post_body_only() {
    let s = Server::start().await;
    let alice = s.user("alice@example.com", 1 << 30).await;
    let photos = folder(&s, alice, None, "Photos").await;
    let sub = folder(&s, alice, Some(photos), "Trip").await;
    let pic = file(&s, alice, Some(photos), "pic.png", b"\x89PNG not really").await;
    file(&s, alice, Some(sub), "deep.txt", b"deep").await;
    let (id, secret) = link(&s, alice, view(photos)).await;
    let proxy = Recorder::to(s.addr).await;

    // As the page's script does it: the page, its script, then the secret
    // in a POST body, then the cookie.
    let page = client()
        .get(format!("{}/s/{id}", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let script = get_with(format!("{}/s/link.js", proxy.url), None).await;
    assert_eq!(script.status(), StatusCode::OK);
    let script = script.text().await.unwrap();
    assert!(script.contains("location.hash") && script.contains("/open"));
    let (opened, cookie) = open(&proxy.url, &id.to_string(), json!({ "secret": secret })).await;
    assert_eq!(opened.status(), StatusCode::OK);
    let body: Value = opened.json().await.unwrap();
    assert_eq!(body["item"]["name"], "Photos");
    assert_eq!(body["item"]["kind"], "folder");
    assert_eq!(body["access"], "view");
    let cookie = pair(&cookie.expect("a session cookie"));
    let list = get_with(format!("{}/s/{id}/list", proxy.url), Some(&cookie)).await;
    assert_eq!(list.status(), StatusCode::OK);
    let list: Value = list.json().await.unwrap();
    let names: Vec<&str> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Trip", "pic.png"]);
    let sub_list = get_with(
        format!("{}/s/{id}/list?folder={sub}", proxy.url),
        Some(&cookie),
    )
    .await;
    let sub_list: Value = sub_list.json().await.unwrap();
    assert_eq!(sub_list["entries"][0]["name"], "deep.txt");
    assert_eq!(sub_list["path"][0]["name"], "Photos");
    assert_eq!(sub_list["path"][1]["name"], "Trip");
    let got = get_with(format!("{}/s/{id}/file/{pic}", proxy.url), Some(&cookie)).await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(&got.bytes().await.unwrap()[..], b"\x89PNG not really");
    check_secret_in_bodies_only(&proxy.requests(), &secret);

    // The page's own script, in a real browser, through the recorder.
    let Some(chromium) = chromium() else { return };
    let browser_proxy = Recorder::to(s.addr).await;
    let dom = browse(&chromium, &format!("{}/s/{id}#{secret}", browser_proxy.url)).await;
    let requests = browser_proxy.requests();
    let lines: Vec<&str> = requests
        .iter()
        .map(|(h, _)| h.lines().next().unwrap_or(""))
        .collect();
    assert!(
        dom.contains("data-name=\"pic.png\"") && dom.contains("data-name=\"Trip\""),
        "the browser shows the listing; requests {lines:?}; DOM:\n{dom}"
    );
    assert!(dom.contains("tr class=\"entry kind-folder\""), "{dom}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("GET /s/{id}/list"))),
        "{lines:?}"
    );
    check_secret_in_bodies_only(&requests, &secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_and_headers_keep_each_link_to_itself() {
    let s = Server::start().await;
    let alice = s.user("alice@example.com", 1 << 30).await;
    let shared = folder(&s, alice, None, "Shared").await;
    let png = file(&s, alice, Some(shared), "a.png", b"pixels").await;
    let html = file(
        &s,
        alice,
        Some(shared),
        "page.html",
        b"<script>alert(1)</script>",
    )
    .await;
    let svg = file(&s, alice, Some(shared), "logo.svg", b"<svg/>").await;
    let (id, secret) = link(&s, alice, view(shared)).await;

    // The page: the same for every link, under a strict policy.
    let page = get_with(format!("{}/s/{id}", s.url), None).await;
    let h = page.headers().clone();
    let csp = header(&h, "content-security-policy");
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(header(&h, "referrer-policy"), "no-referrer");
    assert_eq!(header(&h, "x-content-type-options"), "nosniff");
    assert_eq!(header(&h, "x-frame-options"), "DENY");
    assert!(header(&h, "content-type").starts_with("text/html"));
    let html_text = page.text().await.unwrap();
    let other = get_with(format!("{}/s/{}", s.url, Uuid::new_v4()), None).await;
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(
        other.text().await.unwrap(),
        html_text,
        "no oracle in the page"
    );
    for tag in html_text.split("<script").skip(1) {
        assert!(
            tag.trim_start().starts_with("src="),
            "an inline script: {tag}"
        );
    }
    assert!(!html_text.contains("style=") && !html_text.contains("<style"));
    assert!(!html_text.contains("http://") && !html_text.contains("https://"));
    for (asset, kind) in [("link.js", "text/javascript"), ("link.css", "text/css")] {
        let r = get_with(format!("{}/s/{asset}", s.url), None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(header(r.headers(), "content-type").starts_with(kind));
    }

    // The cookie: HttpOnly, SameSite=Strict, this link's path only.
    let (r, cookie) = open(&s.url, &id.to_string(), json!({ "secret": secret })).await;
    assert_eq!(r.status(), StatusCode::OK);
    let set = cookie.expect("a cookie");
    let attrs: Vec<String> = set
        .split(';')
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    assert!(set.starts_with("stacksync_link="), "{set}");
    assert!(attrs.contains(&"httponly".into()), "{set}");
    assert!(attrs.contains(&"samesite=strict".into()), "{set}");
    assert!(attrs.contains(&format!("path=/s/{id}")), "{set}");
    assert!(attrs.iter().any(|a| a.starts_with("max-age=")), "{set}");
    assert!(!attrs.contains(&"secure".into()), "plain HTTP: {set}");
    let token = pair(&set).split_once('=').unwrap().1.to_owned();
    assert!(!token.contains(&secret) && token.len() == 64);
    // Behind a TLS terminator the server trusts: Secure too.
    let r = client()
        .post(format!("{}/s/{id}/open", s.url))
        .header("x-forwarded-proto", "https")
        .json(&json!({ "secret": secret }))
        .send()
        .await
        .unwrap();
    let set = header(r.headers(), "set-cookie").to_ascii_lowercase();
    assert!(set.split(';').any(|a| a.trim() == "secure"), "{set}");
    let cookie = pair(&format!("stacksync_link={token}"));

    // Files: sandboxed and not sniffed; inline only what cannot run.
    for (item, inline) in [(png, true), (html, false), (svg, false)] {
        let r = get_with(format!("{}/s/{id}/file/{item}", s.url), Some(&cookie)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers();
        assert!(
            header(h, "content-security-policy").starts_with("sandbox;"),
            "{item}: the file is sandboxed"
        );
        assert_eq!(header(h, "x-content-type-options"), "nosniff");
        let disposition = header(h, "content-disposition");
        assert_eq!(
            disposition.starts_with("inline"),
            inline,
            "{item}: {disposition}"
        );
        assert!(disposition.contains("filename="), "{disposition}");
    }
    let r = get_with(format!("{}/s/{id}/file/{png}", s.url), Some(&cookie)).await;
    assert_eq!(header(r.headers(), "content-type"), "image/png");
    let r = get_with(
        format!("{}/s/{id}/file/{png}?download=1", s.url),
        Some(&cookie),
    )
    .await;
    assert!(header(r.headers(), "content-disposition").starts_with("attachment"));
    let r = client()
        .get(format!("{}/s/{id}/file/{html}", s.url))
        .header(reqwest::header::COOKIE, &cookie)
        .header(reqwest::header::RANGE, "bytes=1-6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(r.headers(), "content-range"), "bytes 1-6/25");
    assert_eq!(&r.bytes().await.unwrap()[..], b"script");

    // Another link's cookie opens nothing here.
    let notes = file(&s, alice, None, "notes.txt", b"notes").await;
    let (other_id, other_secret) = link(&s, alice, view(notes)).await;
    let (_, other_cookie) = open(
        &s.url,
        &other_id.to_string(),
        json!({ "secret": other_secret }),
    )
    .await;
    let other_cookie = pair(&other_cookie.unwrap());
    let r = get_with(format!("{}/s/{id}/list", s.url), Some(&other_cookie)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dead_end_answers_the_same_404() {
    let s = Server::start().await;
    let alice = s.user("alice@example.com", 1 << 30).await;
    let doc = file(&s, alice, None, "doc.txt", b"text").await;
    let kept = file(&s, alice, None, "kept.txt", b"kept").await;
    let (live, secret) = link(&s, alice, view(kept)).await;
    let (revoked, revoked_secret) = link(&s, alice, view(kept)).await;
    s.service.revoke_link(alice, revoked).await.unwrap();
    let (expired, expired_secret) = link(
        &s,
        alice,
        NewLink {
            expires_at: Some(now_ms() + 1_000),
            ..view(kept)
        },
    )
    .await;
    let (deleted, deleted_secret) = link(&s, alice, view(doc)).await;
    s.service
        .api_delete(&app(alice), doc, false, None)
        .await
        .unwrap();
    let (_, cookie) = open(&s.url, &live.to_string(), json!({ "secret": secret })).await;
    let cookie = pair(&cookie.unwrap());

    let mut answers = Vec::new();
    let mut check = |what: &'static str, r: reqwest::Response| {
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{what}");
        answers.push((what, r));
    };
    check(
        "an expired link",
        once_expired(&s, expired, &expired_secret).await,
    );
    for (what, id, body) in [
        (
            "a wrong secret",
            live.to_string(),
            json!({ "secret": "0".repeat(40) }),
        ),
        ("no secret", live.to_string(), json!({})),
        (
            "an unknown link",
            Uuid::new_v4().to_string(),
            json!({ "secret": secret }),
        ),
        (
            "not a link id",
            "nonsense".to_owned(),
            json!({ "secret": secret }),
        ),
        (
            "a revoked link",
            revoked.to_string(),
            json!({ "secret": revoked_secret }),
        ),
        (
            "a deleted item",
            deleted.to_string(),
            json!({ "secret": deleted_secret }),
        ),
    ] {
        check(what, open(&s.url, &id, body).await.0);
    }
    check(
        "a listing without a session",
        get_with(format!("{}/s/{live}/list", s.url), None).await,
    );
    check(
        "a file without a session",
        get_with(format!("{}/s/{live}/file/{kept}", s.url), None).await,
    );
    check(
        "a file link's listing",
        get_with(format!("{}/s/{live}/list", s.url), Some(&cookie)).await,
    );
    check(
        "an item outside the link",
        get_with(format!("{}/s/{live}/file/{doc}", s.url), Some(&cookie)).await,
    );
    check(
        "not an item id",
        get_with(format!("{}/s/{live}/file/x", s.url), Some(&cookie)).await,
    );
    check(
        "a made-up session",
        get_with(
            format!("{}/s/{live}/file/{kept}", s.url),
            Some(&format!("stacksync_link={}", "a".repeat(64))),
        )
        .await,
    );
    check(
        "an upload to a view link",
        client()
            .post(format!("{}/s/{live}/upload?name=x.txt", s.url))
            .header(reqwest::header::COOKIE, &cookie)
            .body("x")
            .send()
            .await
            .unwrap(),
    );
    let mut bodies = Vec::new();
    for (what, r) in answers {
        bodies.push((what, r.bytes().await.unwrap()));
    }
    for (what, body) in &bodies {
        assert_eq!(body, &bodies[0].1, "{what} answers like {}", bodies[0].0);
    }
    let first: Value = serde_json::from_slice(&bodies[0].1).unwrap();
    assert_eq!(first["error"], "not_found");
}

/// Milliseconds since the epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The answer to opening link `id` once it has expired (polled until it
/// does, within the deadline).
async fn once_expired(s: &Server, id: Uuid, secret: &str) -> reqwest::Response {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (r, _) = open(&s.url, &id.to_string(), json!({ "secret": secret })).await;
        if r.status() != StatusCode::OK {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the link never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_answer_401_then_429() {
    let s = Server::start().await;
    let alice = s.user("alice@example.com", 1 << 30).await;
    let doc = file(&s, alice, None, "doc.txt", b"text").await;
    let (id, secret) = link(
        &s,
        alice,
        NewLink {
            password: Some("hunter22".into()),
            ..view(doc)
        },
    )
    .await;
    let id = id.to_string();
    let (r, cookie) = open(&s.url, &id, json!({ "secret": secret })).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(cookie.is_none());
    let body: Value = r.json().await.unwrap();
    assert!(body["description"].as_str().unwrap().contains("password"));
    let (r, _) = open(&s.url, &id, json!({ "secret": secret, "password": "x" })).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("wrong password"),
        "{body}"
    );
    let (r, cookie) = open(
        &s.url,
        &id,
        json!({ "secret": secret, "password": "hunter22" }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["has_password"], true);
    let cookie = pair(&cookie.unwrap());
    for _ in 1..10 {
        let (r, _) = open(&s.url, &id, json!({ "secret": secret, "password": "x" })).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let (r, _) = open(&s.url, &id, json!({ "secret": secret, "password": "x" })).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = header(r.headers(), "retry-after").parse().unwrap();
    assert!((1..=60).contains(&wait));
    // A browser that got in keeps going.
    let r = get_with(format!("{}/s/{id}/file/{doc}", s.url), Some(&cookie)).await;
    assert_eq!(r.status(), StatusCode::OK);
    // A body that is not the page's.
    let r = client()
        .post(format!("{}/s/{id}/open", s.url))
        .body("secret=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_links_take_files_without_overwriting() {
    let s = Server::start().await;
    let bob = s.user("bob@example.com", 100_000).await;
    let inbox = folder(&s, bob, None, "Inbox").await;
    let (id, secret) = link(
        &s,
        bob,
        NewLink {
            access: LinkAccess::Upload,
            ..view(inbox)
        },
    )
    .await;
    let (r, cookie) = open(&s.url, &id.to_string(), json!({ "secret": secret })).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["access"], "upload");
    assert_eq!(body["item"]["name"], "Inbox");
    let cookie = pair(&cookie.unwrap());
    let send = |name: &str, data: Vec<u8>| {
        client()
            .post(format!("{}/s/{id}/upload?name={name}", s.url))
            .header(reqwest::header::COOKIE, &cookie)
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(data)
            .send()
    };
    let mut names = Vec::new();
    for data in [b"first".to_vec(), b"second".to_vec()] {
        let r = send("r%C3%A9sum%C3%A9.txt", data).await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: Value = r.json().await.unwrap();
        names.push(body["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(names, ["résumé.txt", "résumé (1).txt"]);
    let r = get_with(format!("{}/s/{id}/list", s.url), Some(&cookie)).await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "an upload link lists nothing"
    );
    let r = send("big.bin", vec![7u8; 200_000]).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = send("a%2Fb", b"x".to_vec()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = send("empty.txt", Vec::new()).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "an empty file too");
    let inbox_node = s.service.api_node(bob, Some(inbox)).await.unwrap();
    let page = s
        .service
        .api_children(bob, &inbox_node, false, 10, None)
        .await
        .unwrap();
    let stored: Vec<String> = page
        .children
        .iter()
        .map(|n| match n {
            ApiNode::Item { meta, .. } => {
                assert_eq!(meta.mimetype.as_deref(), Some("text/plain"));
                meta.name.to_string()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(stored, ["empty.txt", "résumé (1).txt", "résumé.txt"]);
}

/// OAuth 1.0a PLAINTEXT credentials of one user (the service allows
/// PLAINTEXT on loopback in this suite).
struct Signer {
    consumer: (String, String),
    token: (String, String),
}

impl Signer {
    async fn for_user(s: &Server, user: UserId) -> Signer {
        let consumer = s
            .service
            .add_oauth_consumer("Links test", None)
            .await
            .unwrap();
        let store = s.service.store();
        let now = 1_000 * time_now();
        let request = format!("rt-{}", Uuid::new_v4().simple());
        store
            .create_request_token(&RequestToken {
                token: request.clone(),
                secret: "rs".into(),
                consumer_key: consumer.key.clone(),
                callback: Some("oob".into()),
                verifier: None,
                user: None,
                created_at: now,
                expires_at: now + 600_000,
            })
            .await
            .unwrap();
        store
            .authorize_request_token(&request, user, "verifier")
            .await
            .unwrap();
        let token = (
            format!("at-{}", Uuid::new_v4().simple()),
            format!("as-{}", Uuid::new_v4().simple()),
        );
        store
            .exchange_request_token(
                &request,
                "verifier",
                &AccessToken {
                    token: token.0.clone(),
                    secret: token.1.clone(),
                    consumer_key: consumer.key.clone(),
                    user,
                },
            )
            .await
            .unwrap();
        Signer {
            consumer: (consumer.key, consumer.secret),
            token,
        }
    }

    fn authorization(&self) -> String {
        let enc = stacksync_service::stacksync_oauth::percent_encode;
        let signature = format!("{}&{}", enc(&self.consumer.1), enc(&self.token.1));
        format!(
            "OAuth oauth_consumer_key=\"{}\", oauth_token=\"{}\", oauth_signature_method=\"PLAINTEXT\", \
             oauth_signature=\"{}\", oauth_timestamp=\"{}\", oauth_nonce=\"{}\", oauth_version=\"1.0\"",
            enc(&self.consumer.0),
            enc(&self.token.0),
            enc(&signature),
            time_now(),
            Uuid::new_v4().simple(),
        )
    }

    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        client()
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, self.authorization())
    }
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_makes_lists_and_revokes_links() {
    use reqwest::Method;
    let s = Server::start().await;
    let alice = s.user("alice@example.com", 1 << 30).await;
    let bob = s.user("bob@example.com", 1 << 30).await;
    let docs = folder(&s, alice, None, "Docs").await;
    let doc = file(&s, alice, Some(docs), "doc.txt", b"text").await;
    let a = Signer::for_user(&s, alice).await;
    let b = Signer::for_user(&s, bob).await;
    let links = format!("{}/api/v2/links", s.url);

    let r = client().get(&links).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "unsigned");

    let r = a
        .request(Method::POST, links.clone())
        .json(&json!({
            "id": docs.to_string(),
            "password": "pw",
            "expires_at": "2999-01-01T00:00:00Z",
            "access": "upload",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let made: Value = r.json().await.unwrap();
    let id = made["id"].as_str().unwrap().to_owned();
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert_eq!(made["url"], format!("/s/{id}#{secret}"));
    assert_eq!(made["access"], "upload");
    assert_eq!(made["has_password"], true);
    assert_eq!(made["expires_at"], "2999-01-01T00:00:00Z");
    assert_eq!(made["item"]["filename"], "Docs");
    assert_eq!(made["expired"], false);

    let r = a
        .request(Method::POST, links.clone())
        .json(&json!({ "id": doc.to_string(), "expires_at": 4_102_444_800i64 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let second: Value = r.json().await.unwrap();
    assert_eq!(second["access"], "view");
    assert_eq!(second["expires_at"], "2100-01-01T00:00:00Z");

    for (body, status) in [
        (json!({ "id": "root" }), StatusCode::BAD_REQUEST),
        (json!({ "id": "nope" }), StatusCode::BAD_REQUEST),
        (
            json!({ "id": docs.to_string(), "expires_at": 1 }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "id": docs.to_string(), "expires_at": "soon" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "id": docs.to_string(), "access": "edit" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "id": docs.to_string(), "extra": 1 }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "id": doc.to_string(), "access": "upload" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "id": Uuid::new_v4().to_string() }),
            StatusCode::NOT_FOUND,
        ),
        (json!([]), StatusCode::BAD_REQUEST),
    ] {
        let r = a
            .request(Method::POST, links.clone())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{body}");
        let e: Value = r.json().await.unwrap();
        assert!(e["error"].is_string(), "{e}");
    }
    let r = b
        .request(Method::POST, links.clone())
        .json(&json!({ "id": docs.to_string() }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "bob cannot see alice's folder"
    );

    let r = a.request(Method::GET, links.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(!text.contains(&secret), "a listing never holds a secret");
    let listed: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<&str> = listed["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second["id"].as_str().unwrap(), id.as_str()]);
    assert_eq!(listed["links"][1]["url"], format!("/s/{id}"));
    let r = b.request(Method::GET, links.clone()).send().await.unwrap();
    let theirs: Value = r.json().await.unwrap();
    assert_eq!(theirs["links"], json!([]));

    let one = format!("{links}/{id}");
    let r = b.request(Method::DELETE, one.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "another user's link");
    let r = a
        .request(Method::DELETE, format!("{links}/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = a.request(Method::DELETE, one.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = a.request(Method::DELETE, one.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (r, _) = open(&s.url, &id, json!({ "secret": secret, "password": "pw" })).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "revoked");

    let doc: Value = client()
        .get(format!("{}/api/v2/openapi.json", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in ["/links", "/links/{id}"] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
}

/// Python with Playwright, for the page's browser suite (`ensure_browser`
/// in `scripts/lib.sh`), or `None` after saying the suite is skipped.
fn browser_python() -> Option<String> {
    match std::env::var("STACKSYNC_TEST_BROWSER_PY") {
        Ok(path) if !path.is_empty() => Some(path),
        _ => missing(
            "STACKSYNC_TEST_BROWSER_PY",
            "the link page's browser suite is skipped",
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_uses_the_page_in_a_browser() {
    let (Some(python), Some(chromium)) = (browser_python(), chromium()) else {
        return;
    };
    let s = Server::start().await;
    let alice = s.user("alice@example.com", 1 << 30).await;
    let album = folder(&s, alice, None, "Album").await;
    let sub = folder(&s, alice, Some(album), "Day one").await;
    file(
        &s,
        alice,
        Some(album),
        "notes.txt",
        b"remember the sunscreen",
    )
    .await;
    file(&s, alice, Some(album), "caf\u{e9} menu.txt", b"coffee").await;
    file(&s, alice, Some(sub), "deep.txt", b"deep").await;
    let (folder_id, folder_secret) = link(&s, alice, view(album)).await;
    let report = file(&s, alice, None, "report.txt", b"quarterly figures").await;
    let (report_id, report_secret) = link(
        &s,
        alice,
        NewLink {
            password: Some("open sesame".into()),
            ..view(report)
        },
    )
    .await;
    let inbox = folder(&s, alice, None, "Inbox").await;
    file(&s, alice, Some(inbox), "answers.txt", b"alice's own").await;
    let (inbox_id, inbox_secret) = link(
        &s,
        alice,
        NewLink {
            access: LinkAccess::Upload,
            ..view(inbox)
        },
    )
    .await;
    let config = json!({
        "chromium": chromium,
        "axe": std::env::var("STACKSYNC_TEST_AXE").ok().filter(|a| !a.is_empty()),
        "folder": {
            "url": format!("{}/s/{folder_id}#{folder_secret}", s.url),
            "secret": folder_secret,
            "files": {"notes.txt": "remember the sunscreen", "caf\u{e9} menu.txt": "coffee"},
            "sub": "Day one",
            "deep": {"deep.txt": "deep"},
        },
        "password": {
            "url": format!("{}/s/{report_id}#{report_secret}", s.url),
            "secret": report_secret,
            "password": "open sesame",
            "name": "report.txt",
            "text": "quarterly figures",
        },
        "upload": {
            "url": format!("{}/s/{inbox_id}#{inbox_secret}", s.url),
            "secret": inbox_secret,
            "existing": "answers.txt",
        },
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/links_browser.py");
    let run = tokio::process::Command::new(&python)
        .arg(script)
        .arg(&path)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the browser suite finishes")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "the browser suite failed:\n{stdout}"
    );
    // What the visitor sent is there, and nothing was replaced.
    let node = s.service.api_node(alice, Some(inbox)).await.unwrap();
    let page = s
        .service
        .api_children(alice, &node, false, 100, None)
        .await
        .unwrap();
    let mut names: Vec<String> = page
        .children
        .iter()
        .map(|n| match n {
            ApiNode::Item { meta, .. } => meta.name.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["answers (1).txt", "answers.txt", "new (1).txt", "new.txt"]
    );
}
