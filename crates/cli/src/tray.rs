//! `stacksync tray` (cargo feature `tray`): the daemon's state as a
//! StatusNotifierItem on the session bus, the tray of KDE, of GNOME with
//! the AppIndicator extension and of most other desktops, through `ksni`
//! (its libdbus back end: no proc-macro stack in the build).
//!
//! It is a client of the daemon's status socket, like the file-manager
//! extensions (docs/desktop-integration.md): it subscribes to the state
//! events and shows synced, syncing (with the bytes moved), paused or
//! error; its menu has the recently synced files, pause or resume, the
//! synced folder and the website. It holds no sync logic; without a
//! daemon it says so and waits for one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ksni::menu::{StandardItem, SubMenu};
use ksni::{MenuItem, ToolTip};
use serde_json::{Value, json};
use stacksync_client::status::protocol;
use stacksync_client::{Profile, STATUS_SOCKET};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

/// How long the tray waits between attempts to reach an absent daemon.
const RECONNECT: Duration = Duration::from_secs(2);
/// At most one state request per this long while files change.
const STATE_EVERY: Duration = Duration::from_millis(500);

/// What the tray shows: the daemon's last state.
#[derive(Debug, Clone, Default, PartialEq)]
struct Shown {
    /// A daemon answers.
    connected: bool,
    /// `synced`, `syncing`, `paused` or `error`.
    status: String,
    paused_until: Option<i64>,
    last_error: Option<String>,
    bytes_up: u64,
    bytes_down: u64,
    /// Files waiting or being synced, when the daemon counted them.
    to_sync: Option<u64>,
    /// Newest first.
    recent: Vec<PathBuf>,
}

/// What a menu item asks the tray's task to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Pause,
    Resume,
    Open(String),
    Quit,
}

struct StackSyncTray {
    shown: Shown,
    folder: PathBuf,
    web: String,
    actions: mpsc::UnboundedSender<Action>,
}

impl StackSyncTray {
    fn send(&self, action: Action) {
        let _ = self.actions.send(action);
    }

    /// One line saying what the daemon does.
    fn summary(&self) -> String {
        let s = &self.shown;
        if !s.connected {
            return "StackSync is not running".into();
        }
        match s.status.as_str() {
            "paused" => match s.paused_until {
                Some(ms) => format!(
                    "Paused until {} UTC",
                    stacksync_engine::conflict::format_utc(ms)
                ),
                None => "Paused".into(),
            },
            "error" => format!(
                "Retrying: {}",
                s.last_error.as_deref().unwrap_or("a sync failed")
            ),
            "syncing" => {
                let files = match s.to_sync {
                    Some(1) => " 1 file".to_owned(),
                    Some(n) if n > 0 => format!(" {n} files"),
                    _ => String::new(),
                };
                format!(
                    "Syncing{files}\u{2026} \u{2191} {} \u{2193} {}",
                    crate::client::human(s.bytes_up),
                    crate::client::human(s.bytes_down)
                )
            }
            _ => "Up to date".into(),
        }
    }
}

/// The icon of a state (installed by `stacksync integrate install`).
fn icon_of(shown: &Shown) -> &'static str {
    if !shown.connected {
        return "emblem-stacksync-ignored";
    }
    match shown.status.as_str() {
        "paused" => "emblem-stacksync-paused",
        "error" => "emblem-stacksync-error",
        "syncing" => "emblem-stacksync-syncing",
        _ => "emblem-stacksync-synced",
    }
}

/// A menu item that sends `action`.
fn item(label: impl Into<String>, action: Action) -> MenuItem<StackSyncTray> {
    StandardItem {
        label: label.into(),
        activate: Box::new(move |t: &mut StackSyncTray| t.send(action.clone())),
        ..Default::default()
    }
    .into()
}

impl ksni::Tray for StackSyncTray {
    fn id(&self) -> String {
        "stacksync".into()
    }

    fn title(&self) -> String {
        "StackSync".into()
    }

    fn category(&self) -> ksni::Category {
        ksni::Category::ApplicationStatus
    }

    fn status(&self) -> ksni::Status {
        match (self.shown.connected, self.shown.status.as_str()) {
            (false, _) | (_, "error") => ksni::Status::NeedsAttention,
            _ => ksni::Status::Active,
        }
    }

    fn icon_name(&self) -> String {
        icon_of(&self.shown).into()
    }

    fn tool_tip(&self) -> ToolTip {
        ToolTip {
            icon_name: icon_of(&self.shown).into(),
            icon_pixmap: Vec::new(),
            title: "StackSync".into(),
            description: self.summary(),
        }
    }

    /// A click on the icon opens the synced folder.
    fn activate(&mut self, _x: i32, _y: i32) {
        self.send(Action::Open(self.folder.display().to_string()));
    }

    fn menu(&self) -> Vec<MenuItem<Self>> {
        let mut items: Vec<MenuItem<Self>> = vec![
            StandardItem {
                label: self.summary(),
                enabled: false,
                ..Default::default()
            }
            .into(),
            MenuItem::Separator,
        ];
        let recent: Vec<MenuItem<Self>> = self
            .shown
            .recent
            .iter()
            .map(|p| {
                // A menu label's `_` marks its access key: doubled, shown.
                let label = p
                    .strip_prefix(&self.folder)
                    .unwrap_or(p)
                    .display()
                    .to_string()
                    .replace('_', "__");
                item(label, Action::Open(p.display().to_string()))
            })
            .collect();
        items.push(
            SubMenu {
                label: "Recent files".into(),
                enabled: !recent.is_empty(),
                submenu: recent,
                ..Default::default()
            }
            .into(),
        );
        if self.shown.connected {
            items.push(if self.shown.status == "paused" {
                item("Resume syncing", Action::Resume)
            } else {
                item("Pause syncing", Action::Pause)
            });
        }
        items.push(item(
            "Open the synced folder",
            Action::Open(self.folder.display().to_string()),
        ));
        items.push(item(
            "Open the website",
            Action::Open(format!("{}/files", self.web.trim_end_matches('/'))),
        ));
        items.push(MenuItem::Separator);
        items.push(item("Quit the tray", Action::Quit));
        items
    }
}

/// What to show for the daemon's `state` (and `recent` and `to_sync`,
/// the answer's other fields, when given: the state events carry neither,
/// and the last ones stay).
fn shown_from(state: &Value, answer: Option<&Value>, before: &Shown) -> Shown {
    let recent = answer.and_then(|a| a.get("recent"));
    Shown {
        connected: true,
        status: state["status"].as_str().unwrap_or("synced").to_owned(),
        paused_until: state["paused_until"].as_i64(),
        last_error: state["last_error"].as_str().map(str::to_owned),
        bytes_up: state["bytes_up"].as_u64().unwrap_or(0),
        bytes_down: state["bytes_down"].as_u64().unwrap_or(0),
        to_sync: match answer {
            Some(a) => a["to_sync"].as_u64(),
            None => before.to_sync,
        },
        recent: match recent.and_then(Value::as_array) {
            Some(r) => r
                .iter()
                .filter_map(|p| p.as_str().map(PathBuf::from))
                .collect(),
            None => before.recent.clone(),
        },
    }
}

/// `stacksync tray`: runs until "Quit the tray", Ctrl-C or SIGTERM.
pub async fn run(home: &Path) -> anyhow::Result<()> {
    let profile = Profile::load(home)?;
    let socket = home.join(STATUS_SOCKET);
    let (tx, mut actions) = mpsc::unbounded_channel();
    let service = ksni::TrayService::new(StackSyncTray {
        shown: Shown::default(),
        // The daemon names files by their canonical paths.
        folder: std::fs::canonicalize(&profile.config.folder)
            .unwrap_or_else(|_| profile.config.folder.clone()),
        web: profile.config.server_url.clone(),
        actions: tx,
    });
    let handle = service.handle();
    // The item is exported (and registered with the desktop's
    // StatusNotifierWatcher once one appears) by ksni's own thread.
    let (ended_tx, mut ended) = oneshot::channel();
    std::thread::Builder::new()
        .name("tray-dbus".into())
        .spawn(move || {
            let _ = ended_tx.send(service.run());
        })?;
    let (events_tx, mut events) = mpsc::unbounded_channel::<Shown>();
    let follower = tokio::spawn(follow(socket.clone(), events_tx));
    let shutdown = crate::client::shutdown_signal();
    tokio::pin!(shutdown);
    let mut service_ended = false;
    let outcome = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            ran = &mut ended => {
                service_ended = true;
                break match ran {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(anyhow::anyhow!(
                        "the tray item could not be exported on the session bus ({e}); \
                         is a desktop session running (DBUS_SESSION_BUS_ADDRESS)?"
                    )),
                    Err(_) => Err(anyhow::anyhow!("the tray's D-Bus thread ended unexpectedly")),
                };
            }
            shown = events.recv() => {
                let Some(shown) = shown else { break Ok(()) };
                handle.update(|t| {
                    let recent = if shown.connected { shown.recent } else { t.shown.recent.clone() };
                    t.shown = Shown { recent, ..shown };
                });
            }
            action = actions.recv() => match action {
                None | Some(Action::Quit) => break Ok(()),
                Some(Action::Pause) => request(&socket, "pause").await,
                Some(Action::Resume) => request(&socket, "resume").await,
                Some(Action::Open(target)) => open(&target),
            }
        }
    };
    follower.abort();
    handle.shutdown();
    // ksni's thread stops at its next turn, once the call being handled
    // (the menu click that asked to quit) has its reply.
    if !service_ended {
        let _ = tokio::time::timeout(Duration::from_secs(2), ended).await;
    }
    outcome
}

/// Asks the daemon to `op` (pause, resume); its next state event shows.
async fn request(socket: &Path, op: &str) {
    match protocol::request(socket, json!({"v": protocol::VERSION, "op": op})).await {
        Ok(Some(_)) => tracing::info!("asked the daemon to {op}"),
        Ok(None) => tracing::warn!("{op}: no daemon is running"),
        Err(e) => tracing::warn!("{op}: {e}"),
    }
}

/// Opens a file, folder or URL with the desktop's handler.
fn open(target: &str) {
    match std::process::Command::new("xdg-open")
        .arg(target)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => tracing::warn!("opening {target}: {e}"),
    }
}

/// Follows the daemon's state through its socket, reconnecting while it
/// is away; sends what to show.
async fn follow(socket: PathBuf, out: mpsc::UnboundedSender<Shown>) {
    loop {
        if let Err(e) = follow_once(&socket, &out).await {
            tracing::debug!("daemon connection: {e}");
        }
        if out.send(Shown::default()).is_err() {
            return;
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// One connection to the daemon: subscribes, asks the state (again when
/// files changed, at most every [`STATE_EVERY`], as the recent files are
/// only in its answer), and sends each state until the daemon goes.
async fn follow_once(socket: &Path, out: &mpsc::UnboundedSender<Shown>) -> anyhow::Result<()> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let ask = |op: &str| format!("{}\n", json!({"v": protocol::VERSION, "op": op}));
    write.write_all(ask("subscribe").as_bytes()).await?;
    write.write_all(ask("state").as_bytes()).await?;
    let mut shown = Shown::default();
    let mut stale = false;
    let mut next_ask = tokio::time::Instant::now();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { return Ok(()) };
                let v: Value = serde_json::from_str(&line)?;
                if v["ok"] == false {
                    anyhow::bail!("the daemon refused: {}", v["error"]);
                }
                match v["event"].as_str() {
                    Some("changed") => stale = true,
                    Some("state") => shown = shown_from(&v["state"], None, &shown),
                    _ if v.get("state").is_some() => {
                        shown = shown_from(&v["state"], Some(&v), &shown);
                    }
                    _ => continue,
                }
                if v.get("state").is_some() && out.send(shown.clone()).is_err() {
                    return Ok(());
                }
            }
            () = tokio::time::sleep_until(next_ask), if stale => {
                stale = false;
                next_ask = tokio::time::Instant::now() + STATE_EVERY;
                write.write_all(ask("state").as_bytes()).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ksni::Tray;

    fn tray() -> (StackSyncTray, mpsc::UnboundedReceiver<Action>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let tray = StackSyncTray {
            shown: Shown::default(),
            folder: "/home/ana/StackSync".into(),
            web: "https://cloud.example.org/".into(),
            actions: tx,
        };
        (tray, rx)
    }

    fn labels(items: &[MenuItem<StackSyncTray>]) -> Vec<String> {
        items
            .iter()
            .filter_map(|i| match i {
                MenuItem::Standard(s) => Some(s.label.clone()),
                MenuItem::SubMenu(s) => Some(s.label.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn each_state_has_its_icon_and_words() {
        let (mut tray, _rx) = tray();
        assert_eq!(icon_of(&tray.shown), "emblem-stacksync-ignored");
        assert!(tray.summary().contains("not running"));
        assert_eq!(tray.status(), ksni::Status::NeedsAttention);
        for (status, icon, words) in [
            ("synced", "emblem-stacksync-synced", "Up to date"),
            ("syncing", "emblem-stacksync-syncing", "Syncing"),
            ("paused", "emblem-stacksync-paused", "Paused"),
            ("error", "emblem-stacksync-error", "Retrying"),
        ] {
            tray.shown = shown_from(&json!({"status": status}), None, &Shown::default());
            assert_eq!(icon_of(&tray.shown), icon, "{status}");
            assert!(
                tray.summary().starts_with(words),
                "{status}: {}",
                tray.summary()
            );
        }
        let answer = json!({
            "state": {"status": "syncing", "bytes_up": 3_500_000, "bytes_down": 0},
            "to_sync": 12,
        });
        tray.shown = shown_from(&answer["state"], Some(&answer), &Shown::default());
        assert_eq!(
            tray.summary(),
            "Syncing 12 files\u{2026} \u{2191} 3.3 MiB \u{2193} 0 B"
        );
        // A state event keeps the count of the last answer.
        tray.shown = shown_from(&json!({"status": "syncing"}), None, &tray.shown);
        assert!(
            tray.summary().starts_with("Syncing 12 files"),
            "{}",
            tray.summary()
        );
    }

    #[test]
    fn the_menu_follows_the_state_and_sends_its_actions() {
        let (mut tray, mut rx) = tray();
        // No daemon: nothing to pause.
        let menu = tray.menu();
        assert!(
            !labels(&menu).iter().any(|l| l.contains("syncing")),
            "{:?}",
            labels(&menu)
        );
        tray.shown = shown_from(
            &json!({"status": "synced"}),
            Some(&json!({"recent": ["/home/ana/StackSync/a_b.txt", "/elsewhere/c.txt"]})),
            &Shown::default(),
        );
        let menu = tray.menu();
        assert_eq!(
            labels(&menu),
            [
                "Up to date",
                "Recent files",
                "Pause syncing",
                "Open the synced folder",
                "Open the website",
                "Quit the tray"
            ]
        );
        let MenuItem::SubMenu(recent) = &menu[2] else {
            panic!("the recent files' submenu")
        };
        assert_eq!(labels(&recent.submenu), ["a__b.txt", "/elsewhere/c.txt"]);
        for i in &menu {
            if let MenuItem::Standard(s) = i {
                (s.activate)(&mut tray);
            }
        }
        let mut got = Vec::new();
        while let Ok(a) = rx.try_recv() {
            got.push(a);
        }
        assert_eq!(
            got,
            [
                Action::Pause,
                Action::Open("/home/ana/StackSync".into()),
                Action::Open("https://cloud.example.org/files".into()),
                Action::Quit,
            ]
        );
        // Paused: resume instead; a state event keeps the recent files.
        tray.shown = shown_from(&json!({"status": "paused"}), None, &tray.shown);
        assert!(labels(&tray.menu()).contains(&"Resume syncing".to_owned()));
        assert_eq!(tray.shown.recent.len(), 2);
    }
}
