//! The REST API v2 against its own OpenAPI 3.1 document
//! (`GET /api/v2/openapi.json`): schemathesis (from PyPI, in a virtual
//! environment `scripts/test` makes with `ensure_py_schemathesis`) generates
//! requests for every operation of the document, valid and invalid ones,
//! signs each with OAuth 1.0a (`schemathesis_hooks.py` beside this file)
//! and checks every answer of the real `stacksync server` on loopback: no
//! 5xx (`not_a_server_error`), only documented status codes
//! (`status_code_conformance`), the documented content type
//! (`content_type_conformance`) and a body that matches the document
//! (`response_schema_conformance`).
//!
//! The fixture: two users with content made by the desktop client (folders,
//! files, a file with three versions), each sharing a folder with the other
//! (the one the first user joins read-only, so that her writes there meet
//! 403), an app registered with `stacksync admin oauth add`, access tokens
//! through the three-legged flow (`oauth_client.py token`). The fuzzer acts
//! for the first user; the hooks add a file with a MIME type of its own and
//! offer the fuzzer her ids, now and then the other user's (404). Nothing
//! is excluded: operations that delete or move the fixture's items run like
//! any other (later requests meet deleted items, part of the API too), and
//! when the fuzzer revokes the app with `DELETE /apps/{key}` (it reads the
//! key from `GET /apps`), the hooks approve it again and sign on with the
//! new token.
//!
//! The number of examples is bounded and the generation deterministic
//! (schemathesis' deterministic mode: no random seed, no example database),
//! so that a run takes about a minute and says the same thing every time;
//! `STACKSYNC_SCHEMA_EXAMPLES=N` and `STACKSYNC_SCHEMA_SEED=S` make deeper
//! or other runs by hand, `STACKSYNC_SCHEMA_TRACE=1` prints every request
//! and answer. The interpreter is `STACKSYNC_TEST_SCHEMATHESIS` (the virtual
//! environment's python, with schemathesis and requests-oauthlib); without
//! it the test is skipped, except under `CI=true`, where it fails (as in
//! `oauth.rs`).

#[macro_use]
mod common;

use std::path::Path;
use std::time::Instant;

use common::py_oauth::{admin, interpreter, registered};
use common::{Backend, Client, Cluster, random_bytes};

const HOOKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis_hooks.py");
const OAUTH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oauth_client.py");
/// Examples per operation in the fuzzing phase (the coverage and stateful
/// phases add their own).
const MAX_EXAMPLES: &str = "100";
/// The checks of every answer.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance";

/// An access token of `email` for the app, through the three-legged flow:
/// `"TOKEN SECRET"`.
async fn token(python: &Path, base: &str, app: &(String, String), email: &str) -> String {
    let out = tokio::process::Command::new(python)
        .arg(OAUTH)
        .args(["token", base, &app.0, &app.1, email, "secret-pw"])
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "oauth_client.py token failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let access = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ACCESS "))
        .unwrap_or_else(|| panic!("no access token in {stdout:?}"))
        .trim()
        .to_owned();
    assert_eq!(access.split(' ').count(), 2, "{stdout}");
    access
}

fn ok(client: &Client, args: &[&str]) -> String {
    let out = client.run(args);
    assert!(
        out.status.success(),
        "{}: {args:?} failed: {}",
        client.name,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `to` accepts every invitation waiting for it.
fn accept_all(to: &Client) {
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&ok(to, &["invitations", "--json"])).expect("invitations --json");
    assert!(!listed.is_empty(), "{} has an invitation", to.name);
    for invitation in listed {
        let id = invitation["proposal"].as_str().expect("a proposal id");
        ok(to, &["accept", id]);
    }
}

/// Two users' folders, files and versions, and a shared folder each way.
fn fixture(cluster: &Cluster, ann: &str, bob: &str) {
    let a = cluster.client("ann-pc", ann);
    let b = cluster.client("bob-pc", bob);
    a.write("docs/report.txt", b"the report\n");
    a.write("docs/sub/deep.bin", &random_bytes(300 * 1024 + 7, 1));
    a.write("docs/empty.txt", b"");
    a.write("notes.txt", b"version 1\n");
    a.write("project/plan.txt", b"the plan\n");
    a.write("project/spec.md", b"# spec\n");
    for n in 0..5 {
        a.write(
            &format!("photos/{n}.jpg"),
            &random_bytes(40 * 1024 + n, n as u64 + 2),
        );
    }
    a.sync();
    for version in 2..=3 {
        a.write("notes.txt", format!("version {version}\n").as_bytes());
        a.sync();
    }
    b.write("bob.txt", b"bob's own\n");
    b.write("bob-ro/readme.txt", b"read me, do not write\n");
    b.sync();

    ok(
        &a,
        &["share", a.path("project").to_str().unwrap(), "--with", bob],
    );
    accept_all(&b);
    ok(
        &b,
        &[
            "share",
            b.path("bob-ro").to_str().unwrap(),
            "--with",
            ann,
            "--read-only",
        ],
    );
    accept_all(&a);
    a.sync();
    b.sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_as_its_document_says() {
    let Some(python) = interpreter(
        "STACKSYNC_TEST_SCHEMATHESIS",
        "ensure_py_schemathesis",
        "the schemathesis run against the OpenAPI document",
    ) else {
        return;
    };
    let cluster = Cluster::start(&Backend::Embedded).await;
    let ann = cluster.add_user("ann@example.org", None);
    let bob = cluster.add_user("bob@example.org", None);
    fixture(&cluster, &ann, &bob);

    let app = registered(&admin(&cluster.config, &["oauth", "add", "Schema fuzzer"]));
    let ann_token = token(&python, &cluster.url, &app, &ann).await;
    let bob_token = token(&python, &cluster.url, &app, &bob).await;

    // Deeper runs by hand: STACKSYNC_SCHEMA_EXAMPLES=N examples per
    // operation, STACKSYNC_SCHEMA_SEED=S random generation from seed S
    // instead of the deterministic mode.
    let examples =
        std::env::var("STACKSYNC_SCHEMA_EXAMPLES").unwrap_or_else(|_| MAX_EXAMPLES.to_owned());
    let generation = match std::env::var("STACKSYNC_SCHEMA_SEED") {
        Ok(seed) if !seed.is_empty() => vec!["--seed".to_owned(), seed],
        _ => vec!["--generation-deterministic".to_owned()],
    };
    let work = cluster.dir.path().join("schemathesis");
    std::fs::create_dir_all(&work).expect("a scratch folder");
    let document = format!("{}/api/v2/openapi.json", cluster.url);
    let started = Instant::now();
    let out = tokio::process::Command::new(&python)
        .args(["-m", "schemathesis.cli", "run", &document])
        .args(["--checks", CHECKS])
        .args(["--max-examples", &examples])
        .args(&generation)
        .args(["--generation-with-security-parameters", "false"])
        .args(["--workers", "1", "--request-timeout", "60"])
        .args(["--no-color", "--output-truncate", "false"])
        .current_dir(&work)
        .env("SCHEMATHESIS_HOOKS", HOOKS)
        .env("STACKSYNC_SCHEMA_SERVER", &cluster.url)
        .env("STACKSYNC_SCHEMA_APP", format!("{} {}", app.0, app.1))
        .env("STACKSYNC_SCHEMA_LOGIN", format!("{ann} secret-pw"))
        .env("STACKSYNC_SCHEMA_TOKEN", &ann_token)
        .env("STACKSYNC_SCHEMA_OTHER", &bob_token)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "120")
        .output()
        .await
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("---- schemathesis ({:?})\n{stdout}", started.elapsed());
    if !stderr.trim().is_empty() {
        eprintln!("---- schemathesis (stderr)\n{stderr}");
    }
    let log = std::fs::read_to_string(cluster.dir.path().join("server.log")).unwrap_or_default();
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
    assert!(
        panics.is_empty(),
        "the server panicked during the run:\n{}",
        panics.join("\n")
    );
    if !out.status.success() {
        // What the server said of its own errors explains a 5xx.
        let errors: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains(" WARN "))
            .take(40)
            .collect();
        eprintln!(
            "---- the server's errors and warnings\n{}",
            errors.join("\n")
        );
    }
    assert!(
        out.status.success(),
        "schemathesis found answers that break the document or server errors ({}); its report \
         is above",
        out.status
    );
}
