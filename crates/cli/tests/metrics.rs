//! Observability of a real server (issue 24): `GET /metrics` moves with a
//! client's sync (commits, RPCs by operation and their latency, bytes in,
//! login failures, live sessions; on RabbitMQ the request queue's
//! consumers; on Swift its request latency), is served only to loopback
//! or with the token; `/health` is live, `/ready` names the check that
//! fails when the storage folder is gone; and one request id follows a
//! request through the gateway's and the service's JSON log lines.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Backend, Cluster, random_bytes};
use serde_json::{Value, json};

const TOKEN: &str = "scrape-secret";

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().expect("an HTTP client")
}

/// Every sample of a Prometheus text page, by series (`name{labels}`).
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The value of `series` (0 when absent: a counter nobody moved yet).
fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

async fn scrape(cluster: &Cluster) -> BTreeMap<String, f64> {
    let resp = http()
        .get(format!("{}/metrics", cluster.url))
        .send()
        .await
        .expect("/metrics answers");
    assert_eq!(resp.status(), 200, "loopback may read /metrics");
    let kind = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    parse(&resp.text().await.unwrap())
}

/// The JSON log lines of the server so far.
fn log_lines(cluster: &Cluster) -> Vec<Value> {
    std::fs::read_to_string(cluster.dir.path().join("server.log"))
        .expect("the server log")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The request ids of the spans a log line happened in.
fn request_ids(line: &Value) -> Vec<String> {
    line["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["request_id"].as_str().map(str::to_owned))
        .collect()
}

/// Whether a line of `target`'s crate was logged inside a span carrying
/// `id` (named `span`).
fn logged(lines: &[Value], target: &str, span: &str, id: &str) -> bool {
    lines.iter().any(|l| {
        l["target"].as_str().is_some_and(|t| t.starts_with(target))
            && l["spans"].as_array().is_some_and(|spans| {
                spans
                    .iter()
                    .any(|s| s["name"] == span && s["request_id"] == id)
            })
    })
}

async fn metrics_follow_a_sync(backend: Backend) {
    let extra = format!("\n[observability]\nlog_format = \"json\"\nmetrics_token = {TOKEN:?}\n");
    let cluster = Cluster::start_logging(
        &backend,
        &extra,
        "info,stacksync_gateway=debug,stacksync_service=debug",
    )
    .await;
    let email = cluster.add_gateway_user("mia@example.org");
    let laptop = cluster.client("laptop", &email);
    let big = random_bytes(300_000, 7);
    laptop.write("a.txt", b"first");
    laptop.write("docs/b.md", b"# second");
    laptop.write("photos/c.bin", &big);
    laptop.sync();

    // A wrong password, refused.
    let refused = http()
        .post(format!("{}/api/v1/login", cluster.url))
        .json(&json!({"email": email, "password": "not-the-password"}))
        .send()
        .await
        .unwrap();
    assert!(refused.status().is_client_error(), "{}", refused.status());

    // A new server: every counter started at zero. (The first scrape is
    // this one: live sessions are counted once per 10 s.)
    let after = scrape(&cluster).await;
    let moved = |series: &str| value(&after, series);
    assert!(
        moved("stacksync_commits_total") >= 3.0,
        "three files, three versions at least: {after:?}"
    );
    let commit = r#"{operation="commit"}"#;
    let commits = moved(&format!("stacksync_rpc_requests_total{commit}"));
    assert!(commits >= 1.0, "{after:?}");
    assert_eq!(
        moved(&format!("stacksync_rpc_duration_seconds_count{commit}")),
        commits,
        "every commit's latency is recorded"
    );
    assert!(moved(r#"stacksync_rpc_requests_total{operation="get_changes"}"#) >= 1.0);
    assert!(
        moved(r#"stacksync_http_requests_total{method="POST",route="/api/v1/rpc",status="200"}"#)
            >= commits
    );
    let chunks = r#"{route="/api/v1/workspaces/{ws}/chunks/{id}"}"#;
    assert!(
        moved(&format!("stacksync_http_received_bytes_total{chunks}")) >= big.len() as f64,
        "the random file's bytes came in as chunks: {after:?}"
    );
    assert!(moved(r#"stacksync_login_failures_total{reason="password"}"#) >= 1.0);
    assert!(
        value(&after, "stacksync_sessions_active") >= 1.0,
        "{after:?}"
    );
    assert!(
        value(&after, "stacksync_devices_active") >= 1.0,
        "{after:?}"
    );
    assert!(value(&after, "stacksync_db_pool_max_connections") >= 1.0);
    assert!(value(&after, "stacksync_notification_fanout_seconds_count") >= 1.0);
    let queue = r#"stacksync_rpc_queue_consumers{queue="requests"}"#;
    match backend {
        Backend::Embedded => assert!(!after.contains_key(queue), "no broker, no queue"),
        Backend::Full { .. } => {
            assert!(
                value(&after, queue) >= 1.0,
                "the server consumes: {after:?}"
            );
            assert!(
                after.contains_key(r#"stacksync_rpc_queue_messages{queue="requests"}"#),
                "{after:?}"
            );
            assert!(
                moved(r#"stacksync_swift_request_duration_seconds_count{method="PUT"}"#) >= 1.0,
                "{after:?}"
            );
        }
    }

    // Through a proxy, loopback is someone else: the token is needed.
    let proxied = |auth: Option<&str>| {
        let mut req = http()
            .get(format!("{}/metrics", cluster.url))
            .header("X-Forwarded-For", "192.0.2.7");
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.send()
    };
    assert_eq!(proxied(None).await.unwrap().status(), 401);
    assert_eq!(proxied(Some("Bearer wrong")).await.unwrap().status(), 401);
    assert_eq!(
        proxied(Some(&format!("Bearer {TOKEN}")))
            .await
            .unwrap()
            .status(),
        200
    );

    // One id from the gateway into the service: an RPC's is its
    // envelope's, echoed; any other request's is the caller's or made up.
    let login: Value = http()
        .post(format!("{}/api/v1/login", cluster.url))
        .json(&json!({"email": email, "password": "secret-pw"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let rpc = http()
        .post(format!("{}/api/v1/rpc", cluster.url))
        .bearer_auth(login["token"].as_str().unwrap())
        .json(&json!({"v": 1, "body": {"request_id": id, "token": "", "request": {"op": "get_account"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(rpc.status(), 200);
    assert_eq!(rpc.headers()["x-request-id"], id.as_str());
    let health = http()
        .get(format!("{}/health", cluster.url))
        .header("X-Request-Id", "probe-42")
        .send()
        .await
        .unwrap();
    assert_eq!(health.headers()["x-request-id"], "probe-42");
    let made_up = http()
        .get(format!("{}/health", cluster.url))
        .send()
        .await
        .unwrap();
    assert!(!made_up.headers()["x-request-id"].is_empty());
    common::eventually(
        Duration::from_secs(30),
        "the request's log lines are written",
        || {
            let lines = log_lines(&cluster);
            logged(&lines, "stacksync_gateway", "http", &id)
                && logged(&lines, "stacksync_service", "rpc", &id)
                && logged(&lines, "stacksync_gateway", "http", "probe-42")
        },
    )
    .await;
    // The client's own RPCs too: some id is in lines of both crates.
    let lines = log_lines(&cluster);
    let gateway_ids: Vec<String> = lines
        .iter()
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("stacksync_gateway"))
        })
        .flat_map(request_ids)
        .collect();
    let followed = lines
        .iter()
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("stacksync_service"))
        })
        .flat_map(request_ids)
        .filter(|i| gateway_ids.contains(i) && *i != id)
        .count();
    assert!(
        followed > 0,
        "the sync's requests are followed into the service"
    );
}

async fn health_and_readiness(backend: Backend) {
    let cluster = Cluster::start(&backend).await;
    let get = |path: &'static str| http().get(format!("{}{path}", cluster.url)).send();
    let health = get("/health").await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    let ready = get("/ready").await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "ready", "checks": {"database": "ok", "bus": "ok", "storage": "ok"}, "failed": []})
    );
    let Backend::Embedded = backend else {
        return;
    };
    // The storage folder gone: not ready, and says why; alive all along.
    let blobs = cluster.dir.path().join("server").join("blobs");
    let moved = cluster.dir.path().join("blobs-away");
    std::fs::rename(&blobs, &moved).unwrap();
    let unready = get("/ready").await.unwrap();
    assert_eq!(unready.status(), 503);
    let body: Value = unready.json().await.unwrap();
    assert_eq!(body["failed"], json!(["storage"]), "{body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    assert_eq!(get("/health").await.unwrap().status(), 200);
    std::fs::rename(&moved, &blobs).unwrap();
    assert_eq!(get("/ready").await.unwrap().status(), 200);
}

on_both_backends!(metrics_follow_a_sync);
on_both_backends!(health_and_readiness);
