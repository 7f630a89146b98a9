//! Desktop integration against real server and daemon processes: pause
//! and resume (from the command line and the socket, kept across a daemon
//! restart), the file-manager extensions' Python tests run against a real
//! daemon's socket (`integrations/tests`), and the status socket's
//! version-1 protocol (statuses, subscriptions, web pages, links).

#[macro_use]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Backend, Client, Cluster, eventually, random_bytes};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

/// A version-1 connection to a daemon's status socket.
struct Socket {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Socket {
    fn open(client: &Client) -> Socket {
        let stream =
            UnixStream::connect(client.home.join("status.sock")).expect("the daemon's socket");
        stream.set_read_timeout(Some(WAIT)).expect("a read timeout");
        Socket {
            reader: BufReader::new(stream.try_clone().expect("a second handle")),
            writer: stream,
        }
    }

    fn line(&mut self) -> Value {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .expect("a line from the daemon");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    /// Sends a request and returns its answer (events before it are skipped).
    fn ask(&mut self, request: Value) -> Value {
        let mut text = request.to_string();
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .expect("a request sent");
        loop {
            let answer = self.line();
            if answer.get("event").is_none() {
                return answer;
            }
        }
    }

    /// Waits for a `changed` event naming `path`.
    fn wait_changed(&mut self, path: &Path) {
        let end = Instant::now() + WAIT;
        loop {
            assert!(
                Instant::now() < end,
                "no change event for {}",
                path.display()
            );
            let event = self.line();
            if event["event"] == "changed"
                && (event["all"] == true
                    || event["paths"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|p| p == path.to_str().unwrap())))
            {
                return;
            }
        }
    }
}

fn ask_once(client: &Client, request: Value) -> Value {
    Socket::open(client).ask(request)
}

async fn wait_for_socket(client: &Client) {
    let sock = client.home.join("status.sock");
    eventually(WAIT, "the daemon's socket", || {
        UnixStream::connect(&sock).is_ok()
    })
    .await;
}

fn run_ok(client: &Client, args: &[&str]) -> String {
    let out = client.run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `python3`, or `None` (skipped) outside CI.
fn python() -> Option<&'static str> {
    let found = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("python3");
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "python3 is missing under CI=true"
    );
    eprintln!("SKIP: python3 is not installed");
    None
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_saved_while_paused_is_uploaded_only_on_resume() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let email = cluster.add_user("ana@example.org", None);
    let mut a = cluster.client("laptop", &email);
    let b = cluster.client("desktop", &email);
    a.start_daemon();
    wait_for_socket(&a).await;
    // The daemon uploads when not paused.
    a.write("before.txt", b"before the pause");
    eventually(WAIT, "before.txt reaching the other device", || {
        b.sync();
        b.path("before.txt").exists()
    })
    .await;

    let mut events = Socket::open(&a);
    assert_eq!(events.ask(json!({"v": 1, "op": "subscribe"}))["ok"], true);
    let out = run_ok(&a, &["pause"]);
    assert!(out.contains("syncing paused"), "{out}");
    let state = ask_once(&a, json!({"v": 1, "op": "state"}));
    assert_eq!(state["state"]["status"], "paused", "{state}");
    let status = a.status(None);
    assert_eq!(status["daemon"]["paused"], true, "{status}");

    a.write("while-paused.txt", b"saved while paused");
    // The daemon saw it (its status feed names it) and did not upload it.
    events.wait_changed(&a.path("while-paused.txt"));
    let s = a.status(Some("while-paused.txt"));
    assert_eq!(s["target"]["status"], "pending", "{s}");
    // A subscriber's state counts it among the files left to sync.
    let state = ask_once(&a, json!({"v": 1, "op": "state"}));
    assert_eq!(state["to_sync"], 1, "{state}");
    b.sync();
    assert!(
        !b.path("while-paused.txt").exists(),
        "uploaded while paused"
    );

    // Kept across a restart of the daemon.
    a.stop_daemon().await;
    assert!(a.home.join("paused.json").exists());
    a.start_daemon();
    wait_for_socket(&a).await;
    let state = ask_once(&a, json!({"v": 1, "op": "state"}));
    assert_eq!(state["state"]["paused"], true, "{state}");
    let mut events = Socket::open(&a);
    events.ask(json!({"v": 1, "op": "subscribe"}));
    a.write("after-restart.txt", b"saved while paused, after a restart");
    events.wait_changed(&a.path("after-restart.txt"));
    b.sync();
    assert!(!b.path("while-paused.txt").exists());
    assert!(!b.path("after-restart.txt").exists());

    let out = run_ok(&a, &["resume"]);
    assert!(out.contains("syncing resumed"), "{out}");
    assert!(!a.home.join("paused.json").exists());
    let start = Instant::now();
    loop {
        b.sync();
        if b.path("while-paused.txt").exists() && b.path("after-restart.txt").exists() {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "the files saved while paused never reached the other device; daemon log:\n{}",
            a.daemon_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        b.read("after-restart.txt"),
        b"saved while paused, after a restart"
    );
    // A subscriber sees them among the recently synced files.
    let uploaded = a.folder.canonicalize().unwrap().join("after-restart.txt");
    eventually(WAIT, "the upload among the recent files", || {
        ask_once(&a, json!({"v": 1, "op": "state"}))["recent"]
            .as_array()
            .is_some_and(|r| r.iter().any(|p| p == uploaded.to_str().unwrap()))
    })
    .await;

    // A pause for a while says until when; one asked for with no daemon
    // running holds from the daemon's start.
    run_ok(&a, &["pause", "--for", "2h"]);
    let state = ask_once(&a, json!({"v": 1, "op": "state"}));
    let until = state["state"]["paused_until"].as_i64().expect("an end");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (now + 7_000_000..=now + 7_300_000).contains(&until),
        "{until} vs {now}"
    );
    a.stop_daemon().await;
    run_ok(&a, &["resume"]);
    let out = run_ok(&a, &["pause"]);
    assert!(out.contains("no daemon is running"), "{out}");
    let s = a.status(None);
    assert_eq!(
        s["daemon"]["paused"], true,
        "offline status shows the pause: {s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_answers_many_paths_web_pages_links_and_versions() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let email = cluster.add_user("ana@example.org", None);
    let mut a = cluster.client("laptop", &email);
    a.write("notes.txt", b"one");
    a.write("docs/a.txt", b"a");
    a.sync();
    a.write("notes.txt", b"two");
    a.sync();
    a.start_daemon();
    wait_for_socket(&a).await;
    let mut s = Socket::open(&a);
    let hello = s.ask(json!({"v": 1, "op": "hello", "id": 7}));
    assert_eq!(hello["id"], 7, "{hello}");
    assert_eq!(hello["protocol"], 1);
    assert_eq!(
        hello["folder"],
        a.folder.canonicalize().unwrap().to_str().unwrap()
    );
    let folder = PathBuf::from(hello["folder"].as_str().unwrap());
    // The original one-shot query still works.
    let legacy = {
        let mut stream = UnixStream::connect(a.home.join("status.sock")).unwrap();
        writeln!(stream, "{}", json!({"path": folder.join("notes.txt")})).unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap()
    };
    assert_eq!(legacy["ok"]["target"]["status"], "synced", "{legacy}");

    let many = s.ask(json!({"v": 1, "op": "statuses", "paths": [
        folder.join("notes.txt"), folder.join("docs"), folder.join("missing.txt"), "/etc/hostname"
    ]}));
    let entries = many["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 4, "{many}");
    assert_eq!(entries[0]["status"], "synced");
    assert_eq!(entries[1]["status"], "synced");
    assert_eq!(entries[1]["is_folder"], true);
    assert!(
        entries[2]["error"].is_string() && entries[3]["error"].is_string(),
        "{many}"
    );
    let children = s.ask(json!({"v": 1, "op": "children", "path": folder}));
    let names: Vec<&str> = children["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            folder.join("docs").to_str().unwrap(),
            folder.join("notes.txt").to_str().unwrap()
        ]
    );

    let web = s.ask(json!({"v": 1, "op": "web_url", "path": folder.join("notes.txt")}));
    let url = web["url"].as_str().expect("a URL");
    assert!(url.starts_with(&format!("{}/files/", cluster.url)), "{web}");
    let id = url.rsplit('/').next().unwrap();
    assert_eq!(
        web["versions_url"],
        format!("{}/versions/{id}", cluster.url)
    );
    let top = s.ask(json!({"v": 1, "op": "web_url", "path": folder}));
    assert_eq!(top["url"], format!("{}/files", cluster.url));
    let versions = s.ask(json!({"v": 1, "op": "versions", "path": folder.join("notes.txt")}));
    let list = versions["versions"].as_array().expect("versions");
    assert_eq!(list.len(), 2, "{versions}");
    assert_eq!(list[0]["version"], 1);
    assert_eq!(list[1]["size"], 3);

    // A real shared link: its page opens without an account.
    let link = s.ask(json!({"v": 1, "op": "share_url", "path": folder.join("notes.txt")}));
    let link_url = link["url"].as_str().unwrap_or_else(|| panic!("{link}"));
    let (page, secret) = link_url.split_once('#').expect("the secret after #");
    assert!(page.starts_with(&format!("{}/s/", cluster.url)), "{link}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let opened = reqwest::Client::new()
        .post(format!("{page}/open"))
        .json(&json!({"secret": secret}))
        .send()
        .await
        .expect("the link page answers");
    assert_eq!(opened.status(), 200);
    let opened: Value = opened.json().await.unwrap();
    assert_eq!(opened["item"]["name"], "notes.txt", "{opened}");

    // Notifications silenced per kind, kept in the profile.
    let out = run_ok(
        &a,
        &["notifications", "--conflicts", "off", "--errors", "off"],
    );
    assert!(
        out.contains("conflicts    off")
            && out.contains("invitations  on")
            && out.contains("errors       off"),
        "{out}"
    );
    let profile = std::fs::read_to_string(a.home.join("profile.toml")).unwrap();
    assert!(
        profile.contains("[notifications]") && profile.contains("conflicts = false"),
        "{profile}"
    );
    let out = run_ok(
        &a,
        &["notifications", "--conflicts", "on", "--errors", "on"],
    );
    assert!(!out.contains("off"), "{out}");

    // Not uploaded yet: no page, no link.
    run_ok(&a, &["pause"]);
    a.write("new.txt", b"not uploaded");
    let none = s.ask(json!({"v": 1, "op": "share_url", "path": folder.join("new.txt")}));
    assert_eq!(none["ok"], false, "{none}");
    let bad = s.ask(json!({"v": 2, "op": "hello"}));
    assert_eq!(bad["ok"], false, "{bad}");
    let bad = s.ask(json!({"v": 1, "op": "no_such_op"}));
    assert_eq!(bad["ok"], false, "{bad}");
}

/// The extensions' Python tests (`integrations/tests`) against the
/// socket of a daemon whose folder shows every status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_manager_extensions_against_a_real_daemon() {
    let Some(python) = python() else { return };
    let cluster = Cluster::start(&Backend::Embedded).await;
    let email = cluster.add_user("ana@example.org", None);
    let mut a = cluster.client("laptop", &email);
    let b = cluster.client("desktop", &email);
    a.write("synced.txt", b"agreed on");
    a.write("docs/inside.txt", b"in a folder");
    a.write("shared.txt", b"first");
    a.write("draft.swp", b"an editor's swap file: ignored");
    a.sync();
    b.sync();
    // A conflict: both edit shared.txt, the other device first.
    b.write("shared.txt", b"from the desktop");
    b.sync();
    a.write("shared.txt", b"from the laptop");
    let report = a.sync();
    assert_eq!(report.conflicts, 1);
    let copy = std::fs::read_dir(&a.folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.contains(" (conflicted copy from "))
        .expect("a conflicted copy");
    // A name StackSync refuses (a control character): an error, and its
    // folder shows it.
    a.write("odd/tab\there.txt", b"x");
    a.start_daemon();
    wait_for_socket(&a).await;
    run_ok(&a, &["pause"]);
    a.write("pending.txt", b"saved while paused");
    let folder = a.folder.canonicalize().unwrap();
    let at = |rel: &str| folder.join(rel).to_str().unwrap().to_owned();
    let expect = json!({
        at("synced.txt"): "synced",
        at("docs"): "synced",
        at(&copy): "conflict",
        at("odd"): "error",
        at("odd/tab\there.txt"): "error",
        at("pending.txt"): "pending",
        at("draft.swp"): "ignored",
    });
    // Another device of the account, uploading slowly: syncing.
    let mut c = cluster.client("slow", &email);
    c.write("big.bin", &random_bytes(4 << 20, 9));
    c.start_daemon_with(&["--upload-limit", "1"]);
    wait_for_socket(&c).await;
    eventually(WAIT, "the slow upload under way", || {
        c.status(Some("big.bin"))["target"]["status"] == "syncing"
    })
    .await;
    let slow_folder = c.folder.canonicalize().unwrap();
    let slow_expect = json!({ slow_folder.join("big.bin").to_str().unwrap(): "syncing" });

    // Installed as a user would, into a scratch data folder.
    let data = cluster.dir.path().join("xdg-data");
    let config = cluster.dir.path().join("xdg-config");
    let out = a
        .command(&["integrate", "install"])
        .env("XDG_DATA_HOME", &data)
        .env("XDG_CONFIG_HOME", &config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for installed in [
        "nautilus-python/extensions/stacksync_nautilus.py",
        "nautilus-python/extensions/stacksync_common.py",
        "nemo-python/extensions/stacksync_nemo.py",
        "caja-python/extensions/stacksync_caja.py",
        "icons/hicolor/scalable/emblems/emblem-stacksync-conflict.svg",
    ] {
        assert!(data.join(installed).is_file(), "{installed}");
    }
    // With the tray built in, it starts with the session, for this client.
    let autostart = config.join("autostart/stacksync-tray.desktop");
    if cfg!(feature = "tray") {
        let entry = std::fs::read_to_string(&autostart).expect("the tray's autostart entry");
        let home = format!("STACKSYNC_HOME={}", a.home.display());
        assert!(
            entry.contains("[Desktop Entry]") && entry.contains(&home) && entry.contains(" tray\n"),
            "{entry}"
        );
    } else {
        assert!(!autostart.exists());
    }
    let status = a
        .command(&["integrate", "status"])
        .env("XDG_DATA_HOME", &data)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("extension: installed"), "{status}");

    let out = std::process::Command::new(python)
        .arg(repo_root().join("integrations/tests/test_extensions.py"))
        .arg("-v")
        .env("STACKSYNC_SOCKET", a.home.join("status.sock"))
        .env("STACKSYNC_TEST_EXTENSIONS", &data)
        .env("STACKSYNC_TEST_EXPECT", expect.to_string())
        .env("STACKSYNC_TEST_SLOW_SOCKET", c.home.join("status.sock"))
        .env("STACKSYNC_TEST_SLOW_EXPECT", slow_expect.to_string())
        .env(
            "STACKSYNC_FM_DEBUG",
            cluster.dir.path().join("fm-debug.log"),
        )
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "the extensions' tests failed:\n{stderr}\ndaemon log:\n{}",
        a.daemon_log()
    );
    assert!(!stderr.contains("skipped"), "{stderr}");

    let out = a
        .command(&["integrate", "remove"])
        .env("XDG_DATA_HOME", &data)
        .env("XDG_CONFIG_HOME", &config)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!autostart.exists(), "the tray's autostart entry is removed");
    assert!(
        !data
            .join("nautilus-python/extensions/stacksync_nautilus.py")
            .exists()
    );
}
