//! The REST API v2 (docs/api-v2.md, "Endpoints") against an independent
//! OAuth 1.0a client: Python's `requests-oauthlib` (`api_client.py` beside
//! this file) driving the real `stacksync server` on loopback, on the
//! embedded default and on PostgreSQL + RabbitMQ + Swift.
//!
//! - `the_endpoints_and_their_refusals`: two users (the second with a small
//!   quota), an app registered with `stacksync admin oauth add`, access
//!   tokens through the three-legged flow (`oauth_client.py token`), then
//!   `api_client.py suite`: every endpoint and every documented refusal,
//!   large streamed uploads, the change feed, quota, another user's items,
//!   and a share; the second user accepts the invitations with the
//!   `stacksync` CLI (acceptance is not an API endpoint) and
//!   `api_client.py shared` checks the shared folders from both sides.
//! - `a_desktop_client_beside_the_api`: a file made through the API reaches
//!   a running `stacksync sync` daemon's folder, and files written in that
//!   folder are read back through the API (the measured delays are printed;
//!   only arrival within a generous deadline is asserted).
//!
//! The interpreter is `STACKSYNC_TEST_PY_OAUTH`; without it the tests are
//! skipped, except under `CI=true`, where they fail (as in `oauth.rs`).

#[macro_use]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::py_oauth::{admin, python, registered};
use common::swift_api_proxy::SwiftApiProxy;
use common::{Backend, Client, Cluster, eventually, random_bytes};

const SUITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api_client.py");
const OAUTH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oauth_client.py");
const PREFIX: &str = "/api/v2";
/// The second user's quota: small, so that the suite can exceed it.
const SMALL_QUOTA: u64 = 4 * 1024 * 1024;
/// How long a change may take to reach the other side before the test
/// fails (generous: arrival is asserted, the delay only printed).
const ARRIVAL: Duration = Duration::from_secs(20);

/// Runs a Python script; its output, whether it succeeded.
async fn python_run(python: &Path, script: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .await
        .expect("python runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The app and one user's access token, as the suite's arguments want them.
struct Credentials {
    base: String,
    key: String,
    secret: String,
}

impl Credentials {
    /// Registers an app on `cluster`'s server.
    fn register(cluster: &Cluster) -> Credentials {
        let (key, secret) = registered(&admin(&cluster.config, &["oauth", "add", "API v2 suite"]));
        Credentials {
            base: cluster.url.clone(),
            key,
            secret,
        }
    }

    /// An access token for `email` through the three-legged flow.
    async fn token(&self, python: &Path, email: &str) -> (String, String) {
        let (ok, stdout, stderr) = python_run(
            python,
            OAUTH,
            &[
                "token",
                &self.base,
                &self.key,
                &self.secret,
                email,
                "secret-pw",
            ],
        )
        .await;
        assert!(ok, "oauth_client.py token failed:\n{stdout}\n{stderr}");
        let parts: Vec<String> = stdout
            .lines()
            .find_map(|l| l.strip_prefix("ACCESS "))
            .unwrap_or_else(|| panic!("no access token in {stdout:?}"))
            .split(' ')
            .map(str::to_owned)
            .collect();
        assert_eq!(parts.len(), 2, "{stdout}");
        (parts[0].clone(), parts[1].clone())
    }

    /// `BASE PREFIX KEY SECRET TOKEN TOKEN_SECRET`.
    fn args<'a>(&'a self, token: &'a (String, String)) -> Vec<&'a str> {
        vec![
            self.base.as_str(),
            PREFIX,
            self.key.as_str(),
            self.secret.as_str(),
            token.0.as_str(),
            token.1.as_str(),
        ]
    }
}

/// Runs `api_client.py COMMAND ...`, printing what it said; whether it
/// ended with `OK`.
async fn suite(python: &Path, command: &str, args: &[&str]) -> bool {
    let mut all = vec![command];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = python_run(python, SUITE, &all).await;
    println!("---- api_client.py {command}\n{stdout}");
    if !stderr.is_empty() {
        eprintln!("---- api_client.py {command} (stderr)\n{stderr}");
    }
    ok && stdout.trim_end().ends_with("OK")
}

/// Bob accepts every invitation waiting for him; returns the folders' names.
fn accept_all(bob: &Client) -> Vec<String> {
    let out = bob.run(&["invitations", "--json"]);
    assert!(
        out.status.success(),
        "invitations: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("invitations --json prints JSON");
    let mut names = Vec::new();
    for invitation in listed {
        let id = invitation["proposal"].as_str().expect("a proposal id");
        let out = bob.run(&["accept", id]);
        assert!(
            out.status.success(),
            "accept {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        names.push(invitation["folder_name"].as_str().unwrap_or("?").to_owned());
    }
    names
}

async fn the_endpoints_and_their_refusals(backend: Backend) {
    let Some(python) = python("the REST API v2 tests with the Python client") else {
        return;
    };
    let cluster = Cluster::start(&backend).await;
    every_endpoint(&python, &cluster, None).await;
}

on_both_backends!(the_endpoints_and_their_refusals);

/// The same suite through an OpenStack Swift proxy whose pipeline holds the
/// `stacksync_api` middleware: `/v1` and the `StackSync-API: v2` header,
/// the server trusting the proxy's `X-Forwarded-*` (the URL the client
/// signed), on PostgreSQL + RabbitMQ + Swift.
#[tokio::test(flavor = "multi_thread")]
async fn the_endpoints_through_the_swift_proxy() {
    let Some(python) = python("the REST API v2 tests with the Python client") else {
        return;
    };
    let Some(backend) = Backend::full() else {
        return;
    };
    if !SwiftApiProxy::available() {
        return;
    }
    let cluster =
        Cluster::start_with(&backend, "\n[api]\ntrusted_proxies = [\"127.0.0.1\"]\n").await;
    let proxy = SwiftApiProxy::start(&cluster.url);
    every_endpoint(&python, &cluster, Some(proxy.url())).await;
}

/// Runs `api_client.py suite` for alice and bob on `cluster`'s server
/// (through `proxy`, a Swift proxy's URL, when given), bob accepts the
/// suite's shares with the CLI, and `api_client.py shared` checks them.
async fn every_endpoint(python: &Path, cluster: &Cluster, proxy: Option<&str>) {
    let alice = cluster.add_user("alice@example.org", None);
    let bob = cluster.add_user("bob@example.org", Some(SMALL_QUOTA));
    let app = Credentials::register(cluster);
    // Tokens come from the server itself (loopback), then serve through the
    // proxy as any client's would.
    let alice_token = app.token(python, &alice).await;
    let bob_token = app.token(python, &bob).await;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    let mut args = app.args(&alice_token);
    if let Some(proxy) = proxy {
        args[0] = proxy;
        args[1] = "/v1";
    }
    args.extend([bob_token.0.as_str(), bob_token.1.as_str(), "--tag", &tag]);
    if proxy.is_some() {
        args.extend(["--header", "StackSync-API:v2"]);
    }
    let suite_ok = suite(python, "suite", &args).await;

    // Bob accepts the two shares with the CLI, then the shared folders are
    // checked from both sides (also when the suite failed elsewhere, so that
    // a run reports everything).
    let bob_laptop = cluster.client("bob-laptop", &bob);
    let mut accepted = accept_all(&bob_laptop);
    accepted.sort();
    let invited = accepted == [format!("ro-{tag}"), format!("share-{tag}")];
    if !invited {
        println!("bob was invited to {accepted:?}, not to the suite's two folders");
    }
    let shared_ok = invited && suite(python, "shared", &args).await;
    assert!(
        suite_ok && invited && shared_ok,
        "api_client.py failed (suite: {suite_ok}, invitations: {invited}, shared: {shared_ok}); \
         its output is above"
    );
}

/// The small commands of `api_client.py` for one user.
struct ApiUser<'a> {
    python: &'a Path,
    args: Vec<String>,
}

impl ApiUser<'_> {
    async fn json(&self, command: &str, extra: &[&str]) -> serde_json::Value {
        let mut all: Vec<&str> = self.args.iter().map(String::as_str).collect();
        all.extend_from_slice(extra);
        let mut with_command = vec![command];
        with_command.extend(all);
        let (ok, stdout, stderr) = python_run(self.python, SUITE, &with_command).await;
        assert!(ok, "api_client.py {command} failed:\n{stdout}\n{stderr}");
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{command}: {e}: {stdout}"))
    }

    /// Uploads `data` as `name` (in `parent`); the item.
    async fn put(
        &self,
        dir: &Path,
        name: &str,
        data: &[u8],
        parent: Option<&str>,
    ) -> serde_json::Value {
        let file = dir.join(format!("upload-{}", uuid::Uuid::new_v4()));
        std::fs::write(&file, data).expect("a scratch file");
        let file = file.to_str().expect("utf-8");
        let mut extra = vec![name, file];
        if let Some(parent) = parent {
            extra.extend(["--parent", parent]);
        }
        self.json("put", &extra).await
    }

    /// Replaces a file's content; the item.
    async fn write(&self, dir: &Path, id: &str, data: &[u8]) -> serde_json::Value {
        let file = dir.join(format!("upload-{}", uuid::Uuid::new_v4()));
        std::fs::write(&file, data).expect("a scratch file");
        self.json("write", &[id, file.to_str().expect("utf-8")])
            .await
    }

    /// The children of a folder (the top one without an id).
    async fn ls(&self, folder: Option<&str>) -> Vec<serde_json::Value> {
        let extra: Vec<&str> = folder.map(|f| vec!["--folder", f]).unwrap_or_default();
        match self.json("ls", &extra).await {
            serde_json::Value::Array(items) => items,
            other => panic!("ls printed {other}"),
        }
    }

    /// A file's bytes.
    async fn get(&self, dir: &Path, id: &str) -> Vec<u8> {
        let out = dir.join(format!("download-{}", uuid::Uuid::new_v4()));
        self.json("get", &[id, out.to_str().expect("utf-8")]).await;
        std::fs::read(&out).expect("the download was written")
    }

    /// Polls until a live file named `name` in `folder` has `data` (at most
    /// [`ARRIVAL`]); its id and the time it took.
    async fn wait_for(
        &self,
        dir: &Path,
        folder: Option<&str>,
        name: &str,
        data: &[u8],
    ) -> (String, Duration) {
        let start = Instant::now();
        loop {
            let found = self.ls(folder).await.into_iter().find(|i| {
                i["filename"] == name && i["status"] != "DELETED" && i["size"] == data.len()
            });
            if let Some(item) = found {
                let id = item["id"].as_str().expect("an id").to_owned();
                if self.get(dir, &id).await == data {
                    return (id, start.elapsed());
                }
            }
            assert!(
                start.elapsed() < ARRIVAL,
                "{name} with the desktop's bytes did not appear through the API within {ARRIVAL:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until `rel` in the client's folder holds `data`; the time since
/// `start` (taken before the API request that made the change, so it
/// includes starting the Python client).
async fn arrives(client: &Client, rel: &str, data: &[u8], start: Instant) -> Duration {
    eventually(
        ARRIVAL,
        &format!("{rel} in {}'s folder", client.name),
        || std::fs::read(client.path(rel)).ok().as_deref() == Some(data),
    )
    .await;
    start.elapsed()
}

async fn a_desktop_client_beside_the_api(backend: Backend) {
    let Some(python) = python("the REST API v2 tests with the Python client") else {
        return;
    };
    let cluster = Cluster::start(&backend).await;
    let alice = cluster.add_user("alice@example.org", None);
    let app = Credentials::register(&cluster);
    let token = app.token(&python, &alice).await;
    let api = ApiUser {
        python: &python,
        args: app.args(&token).into_iter().map(str::to_owned).collect(),
    };
    let scratch = cluster.dir.path().join("api-scratch");
    std::fs::create_dir_all(&scratch).expect("a scratch folder");

    let mut laptop = cluster.client("alice-laptop", &alice);
    laptop.start_daemon();
    eventually(Duration::from_secs(60), "the daemon is up", || {
        laptop.status(None)["daemon_running"] == true
    })
    .await;

    // API -> desktop: a file at the top, a folder with a file inside, an update.
    let text = b"written through the API\n".to_vec();
    let start = Instant::now();
    let item = api.put(&scratch, "from-api.txt", &text, None).await;
    let delay = arrives(&laptop, "from-api.txt", &text, start).await;
    println!("a file created through the API reached the desktop folder within {delay:?}");
    let folder = api.json("mkdir", &["api-folder"]).await;
    let folder_id = folder["id"].as_str().expect("the folder's id");
    let inner = random_bytes(300 * 1024 + 5, 7);
    let start = Instant::now();
    api.put(&scratch, "inner.bin", &inner, Some(folder_id))
        .await;
    let delay = arrives(&laptop, "api-folder/inner.bin", &inner, start).await;
    println!("a file in a new folder reached the desktop folder within {delay:?}");
    let updated = b"updated through the API\n".to_vec();
    let start = Instant::now();
    api.write(&scratch, item["id"].as_str().expect("an id"), &updated)
        .await;
    let delay = arrives(&laptop, "from-api.txt", &updated, start).await;
    println!("an update through the API reached the desktop folder within {delay:?}");

    // Desktop -> API: a new file at the top, one in the API's folder, an edit.
    let desktop = random_bytes(200 * 1024 + 3, 11);
    laptop.write("from-desktop.bin", &desktop);
    let (desktop_id, delay) = api
        .wait_for(&scratch, None, "from-desktop.bin", &desktop)
        .await;
    println!("a file written in the desktop folder was read through the API after {delay:?}");
    laptop.write("api-folder/notes.txt", b"desktop notes");
    let (_, delay) = api
        .wait_for(&scratch, Some(folder_id), "notes.txt", b"desktop notes")
        .await;
    println!("a file in the API's folder was read through the API after {delay:?}");
    let edited = random_bytes(50 * 1024, 13);
    laptop.write("from-desktop.bin", &edited);
    let (edited_id, delay) = api
        .wait_for(&scratch, None, "from-desktop.bin", &edited)
        .await;
    assert_eq!(edited_id, desktop_id, "an edit keeps the item");
    println!("an edit in the desktop folder was read through the API after {delay:?}");

    laptop.stop_daemon().await;
}

on_both_backends!(a_desktop_client_beside_the_api);
