//! The web UI (docs/web-ui.md) in a real browser: headless Debian Chromium
//! (`/usr/bin/chromium`, never a browser Playwright downloads) driven by
//! Python Playwright (`web_ui.py` beside this file) against the real
//! `stacksync server` on loopback, on the embedded default (the web layer
//! does not depend on the backends).
//!
//! - `flows_at_desktop_size` (1280 x 800) and `flows_at_phone_size`
//!   (390 x 844, touch): sign in, drop a folder (a real drag and drop of a
//!   folder on disk through the DevTools protocol), browse, sort, filter,
//!   download a file and a folder's zip, rename, move, delete and restore
//!   from the trash, a name conflict and an older version restored, a
//!   folder shared with a second user who accepts in their own session, a
//!   password-protected shared link opened in a fresh session, an upload
//!   whose connection is cut in the middle (resumed, then compared byte
//!   for byte), devices, sign out. Screenshots of the main pages go to
//!   `target/web-screenshots/{desktop,phone}/`, and axe-core (from the npm
//!   registry) checks each page: no serious or critical violation.
//! - `a_desktop_client_beside_the_browser`: a running `stacksync sync`
//!   daemon of the same user; a file written in its folder appears in the
//!   open listing, a file uploaded in the browser appears in its folder
//!   (the delays are printed; arrival within a generous bound asserted).
//! - `a_folder_of_10000_entries`: 10,000 files synced by the desktop client
//!   (`sync --once`), listed through the API with the session cookie and
//!   rendered by the browser; prints `web-listing-10000: X ms`.
//!
//! The tools come from `ensure_browser` in `scripts/lib.sh`
//! (`STACKSYNC_TEST_BROWSER_PY`, `STACKSYNC_TEST_CHROMIUM`,
//! `STACKSYNC_TEST_AXE`); without them the tests are skipped, except under
//! `CI=true`, where they fail.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::py_oauth::interpreter;
use common::{Backend, Cluster, eventually};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/web_ui.py");
const PASSWORD: &str = "secret-pw";
/// How long a change may take to reach the other side before the test
/// fails: generous (the issue wants a second; the figure is printed).
const ARRIVAL_SECS: &str = "10";
const LARGE: usize = 10_000;

/// The browser tests' tools from `ensure_browser`.
struct Tools {
    python: PathBuf,
    chromium: PathBuf,
    axe: PathBuf,
}

impl Tools {
    /// The tools, or `None` after saying the tests are skipped (a failure
    /// under `CI=true`).
    fn get() -> Option<Tools> {
        let what = "the web UI's browser tests";
        let python = interpreter("STACKSYNC_TEST_BROWSER_PY", "ensure_browser", what)?;
        let chromium = interpreter("STACKSYNC_TEST_CHROMIUM", "ensure_browser", what)?;
        let axe = interpreter("STACKSYNC_TEST_AXE", "ensure_browser", what)?;
        Some(Tools {
            python,
            chromium,
            axe,
        })
    }

    /// Runs `web_ui.py COMMAND BASE ARGS...` (with the tools), printing
    /// what it said; whether it succeeded and said `OK` (every step passed).
    async fn run(&self, command: &str, base: &str, args: &[&str]) -> (bool, String) {
        let started = Instant::now();
        let out = tokio::process::Command::new(&self.python)
            .arg(SCRIPT)
            .args([command, base])
            .arg("--chromium")
            .arg(&self.chromium)
            .arg("--axe")
            .arg(&self.axe)
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .expect("python runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!(
            "---- web_ui.py {command} {} ({:.0?})\n{stdout}",
            args.join(" "),
            started.elapsed()
        );
        if !stderr.trim().is_empty() {
            println!("---- web_ui.py {command} (stderr)\n{stderr}");
        }
        (
            out.status.success() && stdout.lines().any(|l| l == "OK"),
            stdout,
        )
    }
}

/// `target/` of this build (the test binary is `target/<profile>/deps/..`),
/// where the screenshots are kept as artifacts.
fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")))
}

fn screenshots() -> PathBuf {
    let dir = target_dir().join("web-screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshots' folder");
    dir
}

async fn flows(size: &str) {
    let Some(tools) = Tools::get() else {
        return;
    };
    let cluster = Cluster::start(&Backend::Embedded).await;
    let alice = cluster.add_user("alice@example.org", None);
    let bob = cluster.add_user("bob@example.org", None);
    let scratch = cluster.dir.path().join("browser-scratch");
    let shots = screenshots();
    let (ok, _) = tools
        .run(
            "flows",
            &cluster.url,
            &[
                "--size",
                size,
                "--alice",
                &alice,
                "--bob",
                &bob,
                "--password",
                PASSWORD,
                "--shots",
                shots.to_str().expect("utf-8"),
                "--scratch",
                scratch.to_str().expect("utf-8"),
            ],
        )
        .await;
    println!("screenshots: {}/{size}/", shots.display());
    assert!(
        ok,
        "web_ui.py flows ({size}) failed; its steps are above, screenshots of failures in {}/failures/{size}",
        shots.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_at_desktop_size() {
    flows("desktop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_at_phone_size() {
    flows("phone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desktop_client_beside_the_browser() {
    let Some(tools) = Tools::get() else {
        return;
    };
    let cluster = Cluster::start(&Backend::Embedded).await;
    let alice = cluster.add_user("alice@example.org", None);
    let mut laptop = cluster.client("alice-laptop", &alice);
    laptop.start_daemon();
    eventually(Duration::from_secs(60), "the daemon is up", || {
        laptop.status(None)["daemon_running"] == true
    })
    .await;
    let scratch = cluster.dir.path().join("browser-scratch");
    let shots = screenshots();
    let mut all = true;
    for size in ["desktop", "phone"] {
        let (ok, _) = tools
            .run(
                "interop",
                &cluster.url,
                &[
                    "--size",
                    size,
                    "--alice",
                    &alice,
                    "--password",
                    PASSWORD,
                    "--folder",
                    laptop.folder.to_str().expect("utf-8"),
                    "--scratch",
                    scratch.to_str().expect("utf-8"),
                    "--shots",
                    shots.to_str().expect("utf-8"),
                    "--limit",
                    ARRIVAL_SECS,
                ],
            )
            .await;
        all &= ok;
    }
    if !all {
        println!("---- the daemon's log\n{}", laptop.daemon_log());
    }
    laptop.stop_daemon().await;
    assert!(all, "web_ui.py interop failed; its output is above");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_of_10000_entries() {
    let Some(tools) = Tools::get() else {
        return;
    };
    let cluster = Cluster::start(&Backend::Embedded).await;
    let alice = cluster.add_user("alice@example.org", None);
    let laptop = cluster.client("alice-laptop", &alice);
    let started = Instant::now();
    let big = laptop.path("big");
    std::fs::create_dir_all(&big).expect("the folder");
    for i in 0..LARGE {
        std::fs::write(big.join(format!("f{i:05}.txt")), format!("file {i}\n"))
            .expect("a small file");
    }
    let summary = laptop.sync();
    assert!(
        summary.applied as usize >= LARGE,
        "the first sync uploaded the folder: {summary:?}"
    );
    println!(
        "{LARGE} files synced by the desktop client in {:.1?}",
        started.elapsed()
    );
    let shots = screenshots();
    let count = LARGE.to_string();
    let mut all = true;
    for size in ["desktop", "phone"] {
        let (ok, stdout) = tools
            .run(
                "listing",
                &cluster.url,
                &[
                    "--size",
                    size,
                    "--alice",
                    &alice,
                    "--password",
                    PASSWORD,
                    "--name",
                    "big",
                    "--count",
                    &count,
                    "--shots",
                    shots.to_str().expect("utf-8"),
                ],
            )
            .await;
        all &= ok && stdout.contains(&format!("web-listing-{LARGE}: "));
    }
    assert!(all, "web_ui.py listing failed; its output is above");
}
