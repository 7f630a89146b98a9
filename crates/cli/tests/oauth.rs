//! The OAuth 1.0a provider and the first REST API v2 endpoints against an
//! independent client: Python's `requests-oauthlib` / `oauthlib` (from
//! PyPI, in a virtual environment `scripts/test` makes with
//! `ensure_py_oauth`), driving the real `stacksync server` on loopback
//! (`oauth_client.py` beside this file). The app is registered with
//! `stacksync admin oauth add`, the user approves on the HTML form as a
//! browser posts it, and the signed requests, their refusals, PLAINTEXT
//! (refused, then allowed by configuration), a trusted proxy's
//! `X-Forwarded-*`, revocation and the app's removal are checked.
//!
//! The interpreter is `STACKSYNC_TEST_PY_OAUTH`; without it the test is
//! skipped, except under `CI=true`, where it fails.

#[macro_use]
mod common;

use std::path::Path;
use std::process::Command;

use common::py_oauth::{admin, python, registered};
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
        "oauth_client.py {:?} failed:\n{stdout}\n{}",
        &args[..1],
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.trim_end().ends_with("OK"), "{stdout}");
    stdout
}

async fn independent_client(backend: Backend) {
    let Some(python) = python("the Python OAuth client test") else {
        return;
    };
    let mut cluster = Cluster::start(&backend).await;
    let email = cluster.add_user("ann@example.org", None);

    // Default server: PLAINTEXT refused, no trusted proxy; the run ends by
    // revoking the app.
    let (key, secret) = registered(&admin(&cluster.config, &["oauth", "add", "Test <App>"]));
    let listed = admin(&cluster.config, &["oauth", "list"]);
    assert!(
        listed.contains(&key) && listed.contains("Test <App>"),
        "{listed}"
    );
    assert!(!listed.contains(&secret), "the secret is never listed");
    run_client(
        &python,
        &[
            "flow",
            &cluster.url,
            &key,
            &secret,
            &email,
            "secret-pw",
            "strict",
        ],
    );

    // PLAINTEXT allowed and 127.0.0.1 a trusted proxy.
    let lenient = cluster.dir.path().join("lenient.toml");
    let mut text = std::fs::read_to_string(&cluster.config).expect("the config");
    text.push_str("\n[api]\nallow_plaintext = true\ntrusted_proxies = [\"127.0.0.1\"]\n");
    std::fs::write(&lenient, text).expect("a config variant");
    cluster.restart_with_config(&lenient).await;
    let (key, secret) = registered(&admin(
        &lenient,
        &[
            "oauth",
            "add",
            "Test <App>",
            "--callback",
            "http://127.0.0.1:9/callback",
        ],
    ));
    let out = run_client(
        &python,
        &[
            "flow",
            &cluster.url,
            &key,
            &secret,
            &email,
            "secret-pw",
            "lenient",
        ],
    );
    let access: Vec<&str> = out
        .lines()
        .find_map(|l| l.strip_prefix("ACCESS "))
        .expect("the access token is printed")
        .split(' ')
        .collect();

    // Removing the app ends its tokens.
    admin(&lenient, &["oauth", "remove", &key]);
    assert!(!admin(&lenient, &["oauth", "list"]).contains(&key));
    run_client(
        &python,
        &["refused", &cluster.url, &key, &secret, access[0], access[1]],
    );
}

on_both_backends!(independent_client);
