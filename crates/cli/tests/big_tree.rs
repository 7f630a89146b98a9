//! A first sync of a large tree (issue 18): 50,000 small files in 100
//! folders, uploaded by one device and downloaded by another, three times
//! over with a fresh server each time, on the embedded default with the
//! real binaries. Every sync must finish and the second device must hold
//! every file with its content.
//!
//! A first sync of this size used to stall part-way through on main (all
//! threads idle, no progress, for good). The client's stall watchdog now
//! turns a stall into a reported, retried round, which would hide one
//! here: the test also checks that no round was abandoned. A sync that
//! hangs anyway fails at a generous deadline with a diagnostic, instead of
//! hanging the suite.
//!
//! Cost: about 3-7 minutes per run in a debug build on a loaded two-core
//! machine (upload and download of 50,000 files measured by hand with the
//! same tree); three runs.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{BIN, Backend, Client, Cluster};

const FILES: usize = 50_000;
const FOLDERS: usize = 100;
const RUNS: usize = 3;
/// Far above what a first sync of this tree takes in a debug build on a
/// loaded two-core machine (a few minutes); only a hang reaches it.
const SYNC_DEADLINE: Duration = Duration::from_secs(15 * 60);

fn rel(i: usize) -> String {
    format!("d{:03}/f{i:06}.txt", i % FOLDERS)
}

/// Small, distinct contents of varied lengths (some empty).
fn content(i: usize, run: usize) -> Vec<u8> {
    let mut data = format!("run {run} file {i}\n").into_bytes();
    data.resize(data.len() + i % 300, b'a' + (i % 26) as u8);
    if i % 1000 == 7 {
        data.clear();
    }
    data
}

/// The clients' stall watchdog, in seconds (their default is 900 s).
const STALL_SECS: &str = "300";

/// `sync --once --json` of `client`, killed with a diagnostic at the
/// deadline. Returns what it logged.
async fn sync_with_deadline(client: &Client, what: &str) -> String {
    let child = tokio::process::Command::new(BIN)
        .args(["sync", "--once", "--json", "--quiet"])
        .env("STACKSYNC_HOME", &client.home)
        .env("STACKSYNC_NO_DESKTOP", "1")
        .env("RUST_LOG", "warn")
        // Well within the deadline, so that a stall ends as the watchdog's
        // report of what was in flight (asserted against below), not as a
        // kill without a word.
        .env("STACKSYNC_STALL_SECS", STALL_SECS)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the client starts");
    let pid = child.id().expect("running");
    match tokio::time::timeout(SYNC_DEADLINE, child.wait_with_output()).await {
        Ok(out) => {
            let out = out.expect("the client's output");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(
                out.status.success(),
                "{what}: sync --once failed ({}):\n{stderr}",
                out.status
            );
            stderr
        }
        Err(_) => {
            // The child is killed as its handle drops.
            let files = count_files(&client.folder);
            panic!(
                "{what}: sync --once (pid {pid}) did not finish within {SYNC_DEADLINE:?}; \
                 {files} files in its folder; take `gdb -p {pid} -batch -ex 'thread apply all bt'` \
                 when reproducing by hand"
            );
        }
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        // Engine files (download temporaries) are not user content.
        .filter(|e| !e.file_name().to_string_lossy().starts_with(".stacksync-"))
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}

// Part of scripts/test: the debug build takes a few minutes per run, which
// the suite's override for this test allows (`.config/nextest.toml`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_of_fifty_thousand_files_completes_three_times() {
    for run in 0..RUNS {
        let cluster = Cluster::start(&Backend::Embedded).await;
        let email = cluster.add_user("big@example.com", None);
        let a = cluster.client("a", &email);
        let b = cluster.client("b", &email);
        for i in 0..FILES {
            a.write(&rel(i), &content(i, run));
        }
        let up = sync_with_deadline(&a, &format!("run {run}: first sync of a (upload)")).await;
        let down = sync_with_deadline(&b, &format!("run {run}: first sync of b (download)")).await;
        for (who, log) in [("a", &up), ("b", &down)] {
            assert!(
                !log.contains("sync round abandoned"),
                "run {run}: {who} stalled and was rescued by the watchdog:\n{log}"
            );
        }
        let mut wrong = Vec::new();
        for i in 0..FILES {
            match std::fs::read(b.path(&rel(i))) {
                Ok(data) if data == content(i, run) => {}
                Ok(_) => wrong.push(format!("{}: wrong content", rel(i))),
                Err(e) => wrong.push(format!("{}: {e}", rel(i))),
            }
        }
        assert!(
            wrong.is_empty(),
            "run {run}: b lacks {} of {FILES} files, e.g. {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
        assert_eq!(
            count_files(&b.folder),
            FILES,
            "run {run}: b has files a never had"
        );
    }
}
