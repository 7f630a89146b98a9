//! StackSync's REST API v2 through an OpenStack Swift proxy: the real
//! `stacksync server` (embedded default, `[api] trusted_proxies =
//! ["127.0.0.0/8"]`, a range) behind a real `swift-proxy-server` whose pipeline holds
//! the `stacksync_api` filter of `swift-middleware/` (`scripts/swift
//! api-proxy`, see `common::swift_api_proxy`).
//!
//! Through a proxy serving HTTPS (as a production Swift endpoint does; the
//! server issues OAuth credentials only over TLS or loopback, and through a
//! proxy the client's hop is what counts): the OAuth 1.0a flow of
//! `oauth.rs` with the independent Python client (`oauth_client.py ...
//! --prefix /v1 --header 'StackSync-API: v2' --proxied`: every API request
//! is `/v1/...` with the header, the server checks the signature over the
//! URL the client used, which the filter passes on in `X-Forwarded-*`, and a
//! client's own `X-Forwarded-*` are dropped). Through it and through a
//! plain-HTTP one: requests without the header (TempAuth, a container and an
//! object) still reach Swift, and requests with the header are answered by
//! StackSync, never by Swift; over plain HTTP the server issues no
//! credentials. Requests are made with curl (which `scripts/swift`
//! installs with Swift).
//!
//! Needs Swift (`STACKSYNC_TEST_SWIFT`, from `scripts/swift env`) and the
//! Python client (`STACKSYNC_TEST_PY_OAUTH`, from `ensure_py_oauth` in
//! `scripts/lib.sh`); without either the test is skipped, except under
//! `CI=true`, where it fails.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use common::py_oauth::{admin, python, registered};
use common::swift_api_proxy::SwiftApiProxy;
use common::{Backend, Cluster};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oauth_client.py");

fn run_client(python: &Path, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "oauth_client.py {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.trim_end().ends_with("OK"), "{stdout}");
    stdout
}

/// An HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request through `proxy` (trusting its certificate), by curl.
fn http(
    proxy: &SwiftApiProxy,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut cmd = Command::new("curl");
    // -i: the head, then the body (de-chunked); no 100-continue.
    cmd.args([
        "-sS",
        "-i",
        "--http1.1",
        "-m",
        "30",
        "-X",
        method,
        "-H",
        "Expect:",
    ]);
    if let Some(ca) = proxy.ca_file() {
        cmd.arg("--cacert").arg(ca);
    }
    for (name, value) in headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    if !body.is_empty() {
        cmd.args([
            "--data-binary",
            "@-",
            "-H",
            "Content-Type: application/octet-stream",
        ]);
    }
    cmd.arg(format!("{}{path}", proxy.url()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("curl runs");
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(body).expect("the body");
    drop(stdin);
    let out = child.wait_with_output().expect("curl ends");
    assert!(
        out.status.success(),
        "curl {method} {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// Without the StackSync-API header, `proxy` is Swift: TempAuth, a
/// container, an object written and read back, the listing. With it,
/// StackSync answers, never Swift: not the listing of a container the token
/// may read, no object written, StackSync's OAuth challenge rather than
/// TempAuth's, another API version refused by the filter.
fn swift_and_not_swift(proxy: &SwiftApiProxy) {
    let auth = http(
        proxy,
        "GET",
        "/auth/v1.0",
        &[("X-Auth-User", "test:tester"), ("X-Auth-Key", "testing")],
        b"",
    );
    assert_eq!(auth.status, 200, "TempAuth through the proxy: {auth:?}");
    let token = auth.header("X-Auth-Token").expect("a token").to_owned();
    let storage = auth.header("X-Storage-Url").expect("a storage URL");
    let account = storage
        .strip_prefix(proxy.url())
        .unwrap_or_else(|| panic!("the storage URL {storage} is the proxy's ({})", proxy.url()))
        .to_owned();
    assert_eq!(account, "/v1/AUTH_test");
    let container = format!("{account}/api-proxy-{}", uuid::Uuid::new_v4().simple());
    let object = format!("{container}/hello.txt");
    let swift = [("X-Auth-Token", token.as_str())];
    let made = http(proxy, "PUT", &container, &swift, b"");
    assert!(made.status == 201 || made.status == 202, "{made:?}");
    let put = http(proxy, "PUT", &object, &swift, b"hello from Swift");
    assert_eq!(put.status, 201, "{put:?}");
    let got = http(proxy, "GET", &object, &swift, b"");
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.body, b"hello from Swift");
    let listing = http(proxy, "GET", &container, &swift, b"");
    assert_eq!(listing.status, 200, "{listing:?}");
    assert_eq!(listing.text().trim(), "hello.txt");

    let api = [("X-Auth-Token", token.as_str()), ("StackSync-API", "v2")];
    let as_api = http(proxy, "GET", &container, &api, b"");
    assert!(
        as_api.status >= 400 && !as_api.text().contains("hello.txt"),
        "a StackSync-API request is not Swift's listing: {as_api:?}"
    );
    assert!(
        as_api.header("X-Container-Object-Count").is_none(),
        "{as_api:?}"
    );
    let sneaked = format!("{container}/sneaked.txt");
    let put_api = http(proxy, "PUT", &sneaked, &api, b"not for Swift");
    assert!(put_api.status >= 400, "{put_api:?}");
    let absent = http(proxy, "GET", &sneaked, &swift, b"");
    assert_eq!(absent.status, 404, "nothing reached Swift: {absent:?}");
    let unsigned = http(proxy, "GET", "/v1/account", &api, b"");
    assert_eq!(unsigned.status, 401, "{unsigned:?}");
    assert!(
        unsigned
            .header("WWW-Authenticate")
            .is_some_and(|v| v.starts_with("OAuth")),
        "StackSync's challenge, not TempAuth's: {unsigned:?}"
    );
    assert!(unsigned.text().contains("\"unsigned\""), "{unsigned:?}");
    let other_version = http(proxy, "GET", "/v1/account", &[("StackSync-API", "v1")], b"");
    assert_eq!(other_version.status, 400, "{other_version:?}");
    assert!(
        other_version.text().contains("unsupported_api_version"),
        "{other_version:?}"
    );

    // Swift again, cleaning up.
    assert_eq!(http(proxy, "DELETE", &object, &swift, b"").status, 204);
    assert_eq!(http(proxy, "DELETE", &container, &swift, b"").status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_through_a_swift_proxy() {
    let Some(python) = python("the OAuth client through the Swift proxy") else {
        return;
    };
    if !SwiftApiProxy::available() {
        return;
    }
    let cluster = Cluster::start_with(
        &Backend::Embedded,
        "\n[api]\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
    )
    .await;
    let email = cluster.add_user("ann@example.org", None);
    let proxy = SwiftApiProxy::start_tls(&cluster.url);
    let ca = proxy.ca_file().expect("a TLS proxy's certificate");

    // The OAuth flow and the signed API requests, all through the proxy:
    // /oauth/* as they are, the API as /v1/... with StackSync-API: v2.
    let (key, secret) = registered(&admin(&cluster.config, &["oauth", "add", "Test <App>"]));
    run_client(
        &python,
        &[
            "flow",
            proxy.url(),
            &key,
            &secret,
            &email,
            "secret-pw",
            "strict",
            "--prefix",
            "/v1",
            "--header",
            "StackSync-API: v2",
            "--proxied",
            "--ca",
            ca.to_str().expect("a UTF-8 path"),
        ],
    );
    swift_and_not_swift(&proxy);

    // A plain-HTTP proxy: Swift and the API's routing the same, but the
    // client's hop is not TLS, so the server issues no credentials.
    let plain = SwiftApiProxy::start(&cluster.url);
    swift_and_not_swift(&plain);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let oauth = format!(
        "OAuth oauth_consumer_key=\"{key}\", oauth_signature_method=\"HMAC-SHA1\", \
         oauth_timestamp=\"{now}\", oauth_nonce=\"{}\", oauth_version=\"1.0\", \
         oauth_callback=\"oob\", oauth_signature=\"AAAA\"",
        uuid::Uuid::new_v4().simple()
    );
    let over_http = http(
        &plain,
        "POST",
        "/oauth/request_token",
        &[("Authorization", &oauth)],
        b"",
    );
    assert_eq!(over_http.status, 400, "{over_http:?}");
    assert!(
        over_http
            .text()
            .contains("oauth_problem=parameter_rejected")
            && over_http.text().contains("TLS"),
        "{over_http:?}"
    );
}
