//! `stacksync tray` (feature `tray`) on a real session bus: a private
//! `dbus-daemon`, a server, a daemon, and a StatusNotifierWatcher
//! stand-in (`sni_watcher.py`) for the desktop's tray host. The item must
//! be exported (its StatusNotifierItem and DBusMenu interfaces, as
//! `gdbus introspect` sees them), register with the watcher when one
//! appears, show the daemon's state and recent files, and pause and
//! resume the daemon from its menu (the DBusMenu `Event` call a tray host
//! makes on a click): a file saved while paused from the tray reaches the
//! other device only after "Resume syncing".
//!
//! Needs `dbus-daemon`, `gdbus` and python3-gi (`scripts/lib.sh`:
//! `ensure_desktop_test_tools`): without them the test fails under
//! CI=true and is skipped otherwise.

#![cfg(feature = "tray")]

#[macro_use]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Client, Cluster, eventually};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const WATCHER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sni_watcher.py");
/// Debian's own Python, which python3-gi is for (another `python3` may
/// come first on the PATH).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn have_gi() -> bool {
    Command::new(SYSTEM_PYTHON)
        .args(["-c", "from gi.repository import Gio"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A child process killed when the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private session bus, and its address.
fn session_bus() -> (Killed, String) {
    let mut child = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("its stdout"))
        .read_line(&mut line)
        .expect("the bus's address");
    (Killed(child), line.trim().to_owned())
}

fn gdbus(bus: &str, args: &[&str]) -> Output {
    Command::new("gdbus")
        .args(args)
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .output()
        .expect("gdbus runs")
}

fn gdbus_ok(bus: &str, args: &[&str]) -> String {
    let out = gdbus(bus, args);
    assert!(
        out.status.success(),
        "gdbus {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `gdbus call` of `method` on the tray's `path`.
fn call(bus: &str, name: &str, path: &str, method: &str, args: &[&str]) -> String {
    let mut all = vec![
        "call",
        "--session",
        "--dest",
        name,
        "--object-path",
        path,
        "--method",
        method,
    ];
    all.extend_from_slice(args);
    gdbus_ok(bus, &all)
}

fn daemon_state(client: &Client) -> Value {
    let mut stream = std::os::unix::net::UnixStream::connect(client.home.join("status.sock"))
        .expect("the socket");
    writeln!(stream, "{}", json!({"v": 1, "op": "state"})).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    serde_json::from_str::<Value>(&line).unwrap()["state"].clone()
}

/// The tray's whole menu, as gdbus prints it.
fn layout(bus: &str, name: &str) -> String {
    call(
        bus,
        name,
        "/MenuBar",
        "com.canonical.dbusmenu.GetLayout",
        &["0", "int32 -1", "[]"],
    )
}

/// The DBusMenu id of the item labelled `label`, if the menu has one.
fn menu_id(bus: &str, name: &str, label: &str) -> Option<String> {
    let layout = layout(bus, name);
    // gdbus prints an item as `<(ID, {'label': <'LABEL'>, ...}, [...])>`.
    let at = layout.find(&format!("'label': <'{label}'>"))?;
    let open = layout[..at].rfind("<(")?;
    let id: String = layout[open + 2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!id.is_empty()).then_some(id)
}

/// Clicks the item labelled `label`, as a tray host does.
fn click(bus: &str, name: &str, label: &str) {
    let id = menu_id(bus, name, label)
        .unwrap_or_else(|| panic!("no item {label:?} in {}", layout(bus, name)));
    call(
        bus,
        name,
        "/MenuBar",
        "com.canonical.dbusmenu.Event",
        &[&id, "clicked", "<int32 0>", "0"],
    );
}

fn property(bus: &str, name: &str, prop: &str) -> String {
    call(
        bus,
        name,
        "/StatusNotifierItem",
        "org.freedesktop.DBus.Properties.Get",
        &["org.kde.StatusNotifierItem", prop],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tray_item_is_exported_and_pauses_and_resumes_the_daemon() {
    if !(have("dbus-daemon") && have("gdbus") && have_gi()) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "dbus-daemon, gdbus and python3-gi are needed under CI=true \
             (scripts/lib.sh ensure_desktop_test_tools)"
        );
        eprintln!("SKIP: dbus-daemon, gdbus or python3-gi missing");
        return;
    }
    let cluster = Cluster::start(&Backend::Embedded).await;
    let email = cluster.add_user("ana@example.org", None);
    let mut a = cluster.client("laptop", &email);
    let b = cluster.client("desktop", &email);
    a.write("notes.txt", b"hello");
    a.start_daemon();
    let sock = a.home.join("status.sock");
    eventually(WAIT, "the daemon's socket", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    })
    .await;

    // Without a session bus the tray says why, and ends.
    let out = a
        .command(&["tray"])
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("session bus"),
        "{err}"
    );

    // The tray starts before any tray host (watcher) is on the bus.
    let (_bus, address) = session_bus();
    let log = cluster.dir.path().join("tray.log");
    let mut tray = Killed(
        a.command(&["tray"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the tray starts"),
    );
    let tray_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let name = format!("org.kde.StatusNotifierItem-{}-1", tray.0.id());
    eventually(WAIT, "the tray's name on the bus", || {
        call(
            &address,
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.ListNames",
            &[],
        )
        .contains(&name)
    })
    .await;
    let item = gdbus_ok(
        &address,
        &[
            "introspect",
            "--session",
            "--dest",
            &name,
            "--object-path",
            "/StatusNotifierItem",
        ],
    );
    assert!(
        item.contains("interface org.kde.StatusNotifierItem"),
        "{item}"
    );
    for prop in ["IconName", "Status", "ToolTip", "Menu"] {
        assert!(item.contains(prop), "{prop} in {item}");
    }
    let menu = gdbus_ok(
        &address,
        &[
            "introspect",
            "--session",
            "--dest",
            &name,
            "--object-path",
            "/MenuBar",
        ],
    );
    assert!(menu.contains("interface com.canonical.dbusmenu"), "{menu}");

    // A tray host appears: the item registers with it.
    let mut watcher = Killed(
        Command::new(SYSTEM_PYTHON)
            .arg(WATCHER)
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the watcher stand-in starts"),
    );
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let out = watcher.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let end = Instant::now() + WAIT;
    loop {
        let line = lines
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("the tray never registered; its log:\n{}", tray_log()));
        if line == format!("registered {name}") {
            break;
        }
    }

    eventually(WAIT, "the tray showing the synced state", || {
        property(&address, &name, "IconName").contains("emblem-stacksync-synced")
            && layout(&address, &name).contains("'label': <'Up to date'>")
    })
    .await;
    // A file synced while the tray listens is among its recent files.
    a.write("recent-one.txt", b"fresh");
    eventually(WAIT, "the new file among the tray's recent files", || {
        layout(&address, &name).contains("'label': <'recent-one.txt'>")
    })
    .await;

    // Pause from the menu: the daemon is paused, the tray says so, and a
    // file saved meanwhile stays on this device.
    click(&address, &name, "Pause syncing");
    eventually(WAIT, "the daemon paused from the tray", || {
        daemon_state(&a)["paused"] == true
    })
    .await;
    eventually(WAIT, "the tray showing the pause", || {
        property(&address, &name, "IconName").contains("emblem-stacksync-paused")
            && menu_id(&address, &name, "Resume syncing").is_some()
    })
    .await;
    a.write("while-paused.txt", b"saved while paused from the tray");
    eventually(WAIT, "the daemon noting the file as pending", || {
        a.status(Some("while-paused.txt"))["target"]["status"] == "pending"
    })
    .await;
    b.sync();
    assert!(b.path("recent-one.txt").exists(), "synced before the pause");
    assert!(
        !b.path("while-paused.txt").exists(),
        "uploaded while paused"
    );

    // Resume from the menu: the file goes up.
    click(&address, &name, "Resume syncing");
    eventually(WAIT, "the daemon resumed from the tray", || {
        daemon_state(&a)["paused"] == false
    })
    .await;
    eventually(
        WAIT,
        "the file saved while paused reaching the other device",
        || {
            b.sync();
            b.path("while-paused.txt").exists()
        },
    )
    .await;
    assert_eq!(
        b.read("while-paused.txt"),
        b"saved while paused from the tray"
    );
    eventually(WAIT, "the tray showing the daemon at work again", || {
        !property(&address, &name, "IconName").contains("emblem-stacksync-paused")
            && menu_id(&address, &name, "Pause syncing").is_some()
    })
    .await;

    // A pause from the command line shows in the tray too.
    let out = a.run(&["pause"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(WAIT, "the tray showing a pause made elsewhere", || {
        property(&address, &name, "IconName").contains("emblem-stacksync-paused")
    })
    .await;
    let out = a.run(&["resume"]);
    assert!(out.status.success());

    // The daemon stops: the tray says so, and stays for its return.
    a.stop_daemon().await;
    eventually(WAIT, "the tray saying the daemon is away", || {
        layout(&address, &name).contains("'label': <'StackSync is not running'>")
    })
    .await;
    assert!(tray.0.try_wait().unwrap().is_none(), "the tray stays");

    // Quit from the menu.
    click(&address, &name, "Quit the tray");
    let end = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = tray.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < end,
            "the tray did not quit; its log:\n{}",
            tray_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}: {}", tray_log());
}
