//! Version 1 of the status socket's protocol (`docs/desktop-integration.md`):
//! what file-manager extensions and the tray speak. One JSON object per
//! line each way on a connection that stays open: requests carry
//! `"v": 1`, an `"op"` and an optional `"id"` echoed in the answer;
//! answers carry `"ok"`. After `subscribe`, the daemon also pushes event
//! lines (`"event": "changed"` with the paths whose status changed, or
//! `"state"`) on the same connection.
//!
//! A first line without `"v"` is the original one-shot query
//! (`{"path": ...}`, see [`super::StatusQuery`]), still answered as before.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stacksync_engine::RelPath;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{broadcast, mpsc};

use super::actions::Actions;
use super::feed::{FeedEvent, StatusFeed};
use super::{DaemonState, FRESH_COPY_WAIT, FileStatus, Folders, StatusRoutes, relative_to_folder};
use crate::pause::{PauseSwitch, now_ms};

/// The protocol version this daemon speaks.
pub const VERSION: u32 = 1;

/// Longest request line (a `statuses` of many long paths).
pub const MAX_LINE: usize = 4 * 1024 * 1024;

/// Most paths one `statuses` or `children` answers.
pub const MAX_PATHS: usize = 10_000;

/// How long `subscribe` waits for the feed's first map.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(10);

/// Every operation, in `hello`'s answer.
const OPS: [&str; 11] = [
    "hello",
    "status",
    "statuses",
    "children",
    "subscribe",
    "state",
    "pause",
    "resume",
    "web_url",
    "share_url",
    "versions",
];

/// What the socket answers from and acts on.
#[derive(Clone, Default)]
pub struct SocketContext {
    /// The folders statuses are computed for.
    pub routes: StatusRoutes,
    /// The change feed of `subscribe`.
    pub feed: StatusFeed,
    /// The daemon's pause (`None`: pausing is not offered).
    pub pause: Option<PauseSwitch>,
    /// Web pages, links and versions (`None`: not offered).
    pub actions: Option<Arc<Actions>>,
}

/// A request line of version 1.
#[derive(Debug, Deserialize)]
struct Envelope {
    v: u32,
    #[serde(default)]
    id: Option<Value>,
    #[serde(flatten)]
    op: Op,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Hello,
    Status {
        path: PathBuf,
    },
    Statuses {
        paths: Vec<PathBuf>,
    },
    Children {
        path: PathBuf,
    },
    Subscribe,
    State,
    Pause {
        /// Seconds; none: until resumed.
        #[serde(default)]
        for_secs: Option<u64>,
    },
    Resume,
    WebUrl {
        path: PathBuf,
    },
    ShareUrl {
        path: PathBuf,
    },
    Versions {
        path: PathBuf,
    },
}

/// One path's status in an answer.
#[derive(Debug, Clone, Serialize)]
struct PathStatus {
    path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<FileStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_folder: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Whether a first line is a version-1 request (it has `"v"`).
pub fn is_versioned(line: &str) -> bool {
    serde_json::from_str::<Value>(line).is_ok_and(|v| v.get("v").is_some())
}

/// Serves a version-1 connection whose first line is `first`, until the
/// peer closes it.
pub async fn serve_connection(
    first: String,
    mut reader: impl AsyncBufRead + Unpin,
    writer: OwnedWriteHalf,
    ctx: SocketContext,
) -> std::io::Result<()> {
    let (tx, rx) = mpsc::channel::<Value>(64);
    let writing = tokio::spawn(write_lines(writer, rx));
    let mut forwarder: Option<tokio::task::JoinHandle<()>> = None;
    let mut line = first;
    loop {
        let answer = answer_line(&line, &ctx, &tx, &mut forwarder).await;
        if tx.send(answer).await.is_err() {
            break;
        }
        match read_line_capped(&mut reader, MAX_LINE).await {
            Ok(Some(next)) => line = next,
            Ok(None) => break,
            Err(e) => {
                let _ = tx
                    .send(json!({"v": VERSION, "ok": false, "error": e.to_string()}))
                    .await;
                break;
            }
        }
    }
    if let Some(f) = forwarder {
        f.abort();
    }
    drop(tx);
    writing.await.map_err(std::io::Error::other)?
}

async fn write_lines(
    mut writer: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Value>,
) -> std::io::Result<()> {
    while let Some(value) = rx.recv().await {
        let mut out = serde_json::to_vec(&value).map_err(std::io::Error::other)?;
        out.push(b'\n');
        writer.write_all(&out).await?;
    }
    writer.shutdown().await
}

/// One line, without its newline, of at most `max` bytes; `None` at the end.
pub async fn read_line_capped(
    reader: &mut (impl AsyncBufRead + Unpin),
    max: usize,
) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return if line.is_empty() {
                Ok(None)
            } else {
                Ok(Some(String::from_utf8_lossy(&line).into_owned()))
            };
        }
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max + 1 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("request line longer than {max} bytes"),
            ));
        }
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if done {
            line.pop();
            return String::from_utf8(line)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        }
    }
}

async fn answer_line(
    line: &str,
    ctx: &SocketContext,
    tx: &mpsc::Sender<Value>,
    forwarder: &mut Option<tokio::task::JoinHandle<()>>,
) -> Value {
    let envelope = match serde_json::from_str::<Envelope>(line) {
        Ok(e) => e,
        Err(e) => return json!({"v": VERSION, "ok": false, "error": format!("bad request: {e}")}),
    };
    let mut answer = if envelope.v != VERSION {
        json!({"ok": false, "error": format!("protocol version {} is not spoken here (this daemon speaks {VERSION})", envelope.v)})
    } else {
        match answer_op(envelope.op, ctx, tx, forwarder).await {
            Ok(Value::Object(mut fields)) => {
                fields.insert("ok".into(), Value::Bool(true));
                Value::Object(fields)
            }
            Ok(other) => json!({"ok": true, "value": other}),
            Err(e) => json!({"ok": false, "error": e}),
        }
    };
    answer["v"] = json!(VERSION);
    if let Some(id) = envelope.id {
        answer["id"] = id;
    }
    answer
}

async fn answer_op(
    op: Op,
    ctx: &SocketContext,
    tx: &mpsc::Sender<Value>,
    forwarder: &mut Option<tokio::task::JoinHandle<()>>,
) -> Result<Value, String> {
    let folders = ctx.routes.get();
    match op {
        Op::Hello => Ok(json!({
            "protocol": VERSION,
            "folder": folders.folder,
            "web": ctx.actions.as_ref().map(|a| a.server_url.clone()),
            "ops": OPS,
        })),
        Op::Status { path } => {
            let s = path_status(&folders, path).await;
            match s.error {
                Some(e) => Err(e),
                None => serde_json::to_value(s).map_err(|e| e.to_string()),
            }
        }
        Op::Statuses { paths } => {
            if paths.len() > MAX_PATHS {
                return Err(format!("at most {MAX_PATHS} paths per request"));
            }
            let mut entries = Vec::with_capacity(paths.len());
            for path in paths {
                entries.push(path_status(&folders, path).await);
            }
            Ok(json!({ "entries": entries }))
        }
        Op::Children { path } => {
            let names = children_of(&folders, &path).await?;
            let mut entries = Vec::with_capacity(names.len());
            for child in names.into_iter().take(MAX_PATHS) {
                entries.push(path_status(&folders, child).await);
            }
            Ok(json!({ "path": path, "entries": entries }))
        }
        Op::Subscribe => {
            if forwarder.is_none() {
                let events = ctx.feed.subscribe(SUBSCRIBE_WAIT).await;
                *forwarder = Some(tokio::spawn(forward(
                    events,
                    tx.clone(),
                    ctx.routes.clone(),
                )));
            }
            Ok(json!({}))
        }
        Op::State => Ok(json!({
            "state": state_of(&folders),
            "recent": ctx.feed.recent(),
            "to_sync": ctx.feed.to_sync(),
        })),
        Op::Pause { for_secs } => {
            let pause = ctx.pause.as_ref().ok_or("this daemon cannot be paused")?;
            let until = for_secs.map(|s| {
                now_ms().saturating_add(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
            });
            pause.pause(until).map_err(|e| e.to_string())?;
            ctx.feed.state_changed();
            Ok(json!({ "state": state_of(&ctx.routes.get()) }))
        }
        Op::Resume => {
            let pause = ctx.pause.as_ref().ok_or("this daemon cannot be paused")?;
            pause.resume().map_err(|e| e.to_string())?;
            ctx.feed.state_changed();
            Ok(json!({ "state": state_of(&ctx.routes.get()) }))
        }
        Op::WebUrl { path } => {
            let actions = ctx.actions.as_ref().ok_or("no website known")?;
            let (url, versions_url) = actions.web_url(&folders, &path).await?;
            Ok(json!({ "path": path, "url": url, "versions_url": versions_url }))
        }
        Op::ShareUrl { path } => {
            let actions = ctx.actions.as_ref().ok_or("no server to make links")?;
            let url = actions.share_url(&folders, &path).await?;
            Ok(json!({ "path": path, "url": url }))
        }
        Op::Versions { path } => {
            let actions = ctx.actions.as_ref().ok_or("no server to ask")?;
            let versions = actions.versions(&folders, &path).await?;
            let url = actions
                .web_url(&folders, &path)
                .await
                .ok()
                .and_then(|(_, v)| v);
            Ok(json!({ "path": path, "versions": versions, "url": url }))
        }
    }
}

/// The daemon's state as the socket shows it, with one word for it.
pub fn state_of(folders: &Folders) -> Value {
    let d: DaemonState = folders.daemon_state();
    let word = if d.paused {
        "paused"
    } else if d.last_error.is_some() {
        "error"
    } else if d.busy {
        "syncing"
    } else {
        "synced"
    };
    let mut v = serde_json::to_value(&d).unwrap_or_else(|_| json!({}));
    v["status"] = json!(word);
    v
}

/// The status of the absolute `path`, or why not.
async fn path_status(folders: &Folders, path: PathBuf) -> PathStatus {
    let failed = |path: PathBuf, e: String| PathStatus {
        path,
        status: None,
        is_folder: None,
        detail: None,
        error: Some(e),
    };
    if !path.is_absolute() {
        return failed(path, "the socket takes absolute paths".into());
    }
    let rel: RelPath = match relative_to_folder(&folders.folder, &path) {
        Ok(r) => r,
        Err(e) => return failed(path, e.to_string()),
    };
    match folders.report(&rel, true, FRESH_COPY_WAIT).await {
        Ok(r) => PathStatus {
            path,
            status: Some(r.target.status),
            is_folder: Some(r.target.is_folder),
            detail: r.target.detail,
            error: None,
        },
        Err(e) => failed(path, e.to_string()),
    }
}

/// The absolute paths of what the folder at `path` holds (on disk), in
/// name order.
async fn children_of(folders: &Folders, path: &std::path::Path) -> Result<Vec<PathBuf>, String> {
    if !path.is_absolute() {
        return Err("the socket takes absolute paths".into());
    }
    relative_to_folder(&folders.folder, path).map_err(|e| e.to_string())?;
    let dir = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                !p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(".stacksync-"))
            })
            .collect();
        out.sort();
        Ok(out)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Sends a subscriber what the feed says, as event lines.
async fn forward(
    mut events: broadcast::Receiver<FeedEvent>,
    tx: mpsc::Sender<Value>,
    routes: StatusRoutes,
) {
    loop {
        let line = match events.recv().await {
            Ok(FeedEvent::Changed(paths)) => {
                json!({"v": VERSION, "event": "changed", "paths": paths})
            }
            // Too many, or some were missed: ask again about everything.
            Ok(FeedEvent::All) | Err(broadcast::error::RecvError::Lagged(_)) => {
                json!({"v": VERSION, "event": "changed", "paths": [], "all": true})
            }
            Ok(FeedEvent::State) => {
                json!({"v": VERSION, "event": "state", "state": state_of(&routes.get())})
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if tx.send(line).await.is_err() {
            return;
        }
    }
}

/// Sends one version-1 request to the daemon on `socket` and returns its
/// answer; `Ok(None)` when no daemon answers there.
pub async fn request(socket: &std::path::Path, request: Value) -> Result<Option<Value>, String> {
    let Ok(stream) = tokio::net::UnixStream::connect(socket).await else {
        return Ok(None);
    };
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    write.write_all(&line).await.map_err(|e| e.to_string())?;
    let mut reader = tokio::io::BufReader::new(read);
    let reply = read_line_capped(&mut reader, MAX_LINE)
        .await
        .map_err(|e| format!("reading the daemon's answer: {e}"))?
        .ok_or("the daemon closed the connection without answering")?;
    let value: Value = serde_json::from_str(&reply)
        .map_err(|e| format!("the daemon's answer does not parse: {e}"))?;
    if value["ok"] == Value::Bool(true) {
        Ok(Some(value))
    } else {
        Err(value["error"]
            .as_str()
            .unwrap_or("the daemon refused the request")
            .to_owned())
    }
}
