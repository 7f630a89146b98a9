//! Per-file sync status — what a file manager's overlay icon shows — and
//! the local socket that serves it.
//!
//! A status is derived, never stored: from the engine's [`SyncState`] (the
//! remote tree and the last agreed state of each item), what the disk has
//! now (a stamp: size, mtime, inode), the ignore rules, and whether a sync
//! is running. A file is **synced** when the disk still holds exactly what
//! was last agreed with the server and the server has nothing newer;
//! anything else is **syncing** while the daemon works and **pending**
//! otherwise. A folder takes the worst status found beneath it.
//!
//! The socket (`status.sock` in the client's home, mode 0600) speaks JSON
//! lines. The original query is one line each way:
//! `{"path": "<absolute path or null>"}` in, a [`StatusReport`] out;
//! `stacksync status` uses it when the daemon runs and computes the same
//! answer from the state database when it does not. Version 1
//! ([`protocol`], `docs/desktop-integration.md`) keeps the connection open
//! for many requests (statuses of many paths, pause and resume, web pages,
//! links, versions) and pushes status changes to subscribers ([`feed`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stacksync_engine::FsErrorKind;
use stacksync_engine::io::{EntryKind, Fs};
use stacksync_engine::{IgnoreRules, RelPath, Stamp, SyncState};
use stacksync_proto::Millis;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

use crate::localfs::LocalFs;

pub mod actions;
pub mod feed;
pub mod protocol;
mod view;

pub use feed::StatusFeed;
pub use protocol::SocketContext;
pub use view::StatusView;

pub use stacksync_engine::ignore::IGNORE_FILE;
/// Marker in the name of every conflicted copy the engine makes.
pub const CONFLICT_MARKER: &str = " (conflicted copy from ";
/// Most entries a report lists, so a huge folder cannot flood the socket.
pub const MAX_LISTED: usize = 1000;

/// The status of one path, best first (a folder shows its worst child).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Excluded by the ignore rules, or a symlink or special file.
    Ignored,
    /// Disk and server agree.
    Synced,
    /// A conflicted copy (kept bytes of a losing edit), synced or not.
    Conflict,
    /// Differs from the server; the daemon is not running or is idle.
    Pending,
    /// Differs from the server and the daemon is working on it.
    Syncing,
    /// The server refused it (a name it does not accept) or it failed.
    Error,
}

impl FileStatus {
    /// The word shown to people and scripts.
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Ignored => "ignored",
            FileStatus::Synced => "synced",
            FileStatus::Conflict => "conflict",
            FileStatus::Pending => "pending",
            FileStatus::Syncing => "syncing",
            FileStatus::Error => "error",
        }
    }

    /// How bad, for folder aggregation: errors first, then work to do.
    fn severity(self) -> u8 {
        match self {
            FileStatus::Ignored => 0,
            FileStatus::Synced => 1,
            FileStatus::Conflict => 2,
            FileStatus::Pending => 3,
            FileStatus::Syncing => 4,
            FileStatus::Error => 5,
        }
    }
}

/// One path in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEntry {
    /// Path relative to the synced folder ("" for the folder itself).
    pub path: String,
    /// Its status.
    pub status: FileStatus,
    /// Folder or file.
    pub is_folder: bool,
    /// Why, for errors (and pending downloads: "to download").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What the daemon is doing as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonState {
    /// A sync round is running.
    pub busy: bool,
    /// The last sync failed with this (cleared by the next success).
    pub last_error: Option<String>,
    /// When the last sync finished without error (ms since the epoch).
    pub last_synced: Option<Millis>,
    /// Bytes uploaded and downloaded since the daemon started.
    pub bytes_up: u64,
    /// Bytes downloaded since the daemon started.
    pub bytes_down: u64,
    /// Syncing is paused (`stacksync pause`): nothing is uploaded or
    /// downloaded until it is resumed.
    #[serde(default)]
    pub paused: bool,
    /// When the pause ends on its own (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<Millis>,
}

/// The answer to a status query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The synced folder.
    pub folder: PathBuf,
    /// Whether a daemon answered (false: computed from the state database).
    pub daemon_running: bool,
    /// The daemon's state (default when none runs).
    pub daemon: DaemonState,
    /// The queried path itself.
    pub target: StatusEntry,
    /// Its children (for a folder), or for the whole folder every path
    /// that is not synced; at most [`MAX_LISTED`].
    pub entries: Vec<StatusEntry>,
    /// Counts of files by status under the target.
    pub counts: BTreeMap<String, u64>,
    /// The shared folders in the synced folder (for the whole folder), or
    /// the one holding the target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<SharedFolder>,
    /// The encryption setting of the workspace synced at the root of the
    /// folder (`plain`, `client_side`, `server_side`); each shared folder
    /// says its own.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub encryption: String,
}

/// What a status is computed from.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// What the engine's state says about paths (as of the daemon's last
    /// copy).
    pub view: Arc<StatusView>,
    /// The daemon's activity.
    pub daemon: DaemonState,
}

/// How long a query waits for the daemon to copy its state when the copy
/// it has is stale; a daemon busy with a round answers with its last copy
/// after that (marked busy, so what is not agreed shows as syncing).
const FRESH_COPY_WAIT: Duration = Duration::from_millis(300);

/// What the daemon's status socket answers from: the daemon's activity,
/// and a [`StatusView`] of the engine's state built **when a query wants
/// it** rather than after every round (for a tree of 100,000 files a view
/// takes some tens of milliseconds to build and about 7 MB, where a copy
/// of the state would take 50 MB or more: paid per query burst, not per
/// edit). A view is freed once it is replaced and no query holds it.
/// Clones share one board.
#[derive(Clone, Default)]
pub struct StatusBoard(Arc<Board>);

struct Board {
    daemon: Mutex<DaemonState>,
    /// `None` while a copy is built after the last one was freed: queries
    /// wait for the new one.
    view: Mutex<Option<Arc<StatusView>>>,
    /// The engine's state changed since `view` was built.
    stale: AtomicBool,
    /// A query waits for a fresh copy (the permit is kept until the daemon
    /// takes it, between rounds).
    wanted: Notify,
    /// Bumped by every copy.
    copies: AtomicU64,
    copied: Notify,
}

impl Default for Board {
    fn default() -> Board {
        Board {
            daemon: Mutex::default(),
            view: Mutex::new(Some(Arc::default())),
            stale: AtomicBool::default(),
            wanted: Notify::new(),
            copies: AtomicU64::default(),
            copied: Notify::new(),
        }
    }
}

impl StatusBoard {
    /// Changes the daemon's activity.
    pub fn update_daemon(&self, change: impl FnOnce(&mut DaemonState)) {
        if let Ok(mut d) = self.0.daemon.lock() {
            change(&mut d);
        }
    }

    /// The engine's state changed: the next query asks for a copy.
    pub fn mark_stale(&self) {
        self.0.stale.store(true, Ordering::SeqCst);
    }

    /// Completes when a query waits for a copy of the state; the daemon
    /// then calls [`StatusBoard::copy_state`].
    pub async fn copy_wanted(&self) {
        self.0.wanted.notified().await;
    }

    /// Builds the view of `state` the queries answer from. The old view
    /// is freed first unless a query still holds it: two views at once
    /// would add a whole view to the daemon's peak memory (queries that
    /// come meanwhile wait for the new one).
    pub fn copy_state(&self, state: &SyncState) {
        if let Ok(mut v) = self.0.view.lock()
            && v.as_ref().is_some_and(|v| Arc::strong_count(v) == 1)
        {
            *v = None;
        }
        let view = Arc::new(StatusView::of(state));
        self.0.stale.store(false, Ordering::SeqCst);
        if let Ok(mut v) = self.0.view.lock() {
            *v = Some(view);
        }
        self.0.copies.fetch_add(1, Ordering::SeqCst);
        self.0.copied.notify_waiters();
    }

    /// What the board holds now.
    pub fn snapshot_now(&self) -> Snapshot {
        Snapshot {
            view: self.view_now().unwrap_or_default(),
            daemon: self.daemon_now(),
        }
    }

    /// What a query answers from: a fresh copy when the daemon can take
    /// one within `wait`, else the last one.
    pub async fn snapshot(&self, wait: Duration) -> Snapshot {
        if self.0.stale.load(Ordering::SeqCst) {
            let before = self.0.copies.load(Ordering::SeqCst);
            let copied = self.0.copied.notified();
            tokio::pin!(copied);
            copied.as_mut().enable();
            self.0.wanted.notify_one();
            if self.0.copies.load(Ordering::SeqCst) == before {
                let _ = tokio::time::timeout(wait, copied).await;
            }
        }
        // A copy under way may have freed the last one: wait for it.
        loop {
            let copied = self.0.copied.notified();
            tokio::pin!(copied);
            copied.as_mut().enable();
            if let Some(view) = self.view_now() {
                return Snapshot {
                    view,
                    daemon: self.daemon_now(),
                };
            }
            copied.await;
        }
    }

    /// The view held now; `None` while one is built.
    fn view_now(&self) -> Option<Arc<StatusView>> {
        match self.0.view.lock() {
            Ok(v) => v.clone(),
            Err(_) => Some(Arc::default()),
        }
    }

    fn daemon_now(&self) -> DaemonState {
        self.0.daemon.lock().map(|d| d.clone()).unwrap_or_default()
    }
}

/// Why a status could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The path is not inside the synced folder.
    #[error("{0} is not inside the synced folder {1}")]
    Outside(PathBuf, PathBuf),
    /// A component of the path is not a name the service can hold.
    #[error("{}: {}", stacksync_proto::printable(&.0.display().to_string()), .1)]
    BadPath(PathBuf, String),
    /// The disk could not be read.
    #[error("reading {0}: {1}")]
    Io(String, String),
}

/// Resolves a user-given path (absolute, or relative to the current
/// folder) to a path inside `folder`. Symlinks are not resolved: the
/// folder's own entries are what is asked about.
pub fn relative_to_folder(folder: &Path, path: &Path) -> Result<RelPath, StatusError> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| StatusError::Io(".".into(), e.to_string()))?
            .join(path)
    };
    // Lexical normalization: `.` and `..` are folded, nothing is followed.
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(s) => parts.push(s),
            _ => {}
        }
    }
    let norm: PathBuf = std::iter::once(std::ffi::OsStr::new("/"))
        .chain(parts)
        .collect();
    let rest = norm
        .strip_prefix(folder)
        .map_err(|_| StatusError::Outside(norm.clone(), folder.to_path_buf()))?;
    let text = rest
        .to_str()
        .ok_or_else(|| StatusError::BadPath(norm.clone(), "not valid UTF-8".into()))?;
    if text.is_empty() {
        return Ok(RelPath::root());
    }
    RelPath::parse(text).map_err(|e| StatusError::BadPath(norm.clone(), e.to_string()))
}

/// Reads the ignore rules the engine uses for this folder.
async fn ignore_rules(fs: &LocalFs) -> IgnoreRules {
    match tokio::fs::read_to_string(fs.root().join(IGNORE_FILE)).await {
        Ok(text) => IgnoreRules::with_file(&text).0,
        Err(_) => IgnoreRules::defaults(),
    }
}

struct Ctx<'a> {
    fs: &'a LocalFs,
    view: &'a StatusView,
    ignore: IgnoreRules,
    busy: bool,
    counts: BTreeMap<String, u64>,
    listed: Vec<StatusEntry>,
    list_all_unsynced: bool,
    /// Every path's status, when the whole map is asked for
    /// ([`status_map`]).
    all: Option<BTreeMap<RelPath, FileStatus>>,
}

impl Ctx<'_> {
    fn not_synced(&self) -> FileStatus {
        if self.busy {
            FileStatus::Syncing
        } else {
            FileStatus::Pending
        }
    }

    fn count(&mut self, status: FileStatus) {
        *self.counts.entry(status.as_str().to_owned()).or_default() += 1;
    }

    /// Status of one local file (not a folder).
    fn file_status(&self, path: &RelPath, stamp: Stamp) -> (FileStatus, Option<String>) {
        if let Some(reason) = self.view.refusal(path) {
            return (FileStatus::Error, Some(reason.to_owned()));
        }
        let is_copy = path
            .name()
            .is_some_and(|n| n.as_str().contains(CONFLICT_MARKER));
        match self.view.agrees(path, stamp) {
            true if is_copy => (FileStatus::Conflict, None),
            true => (FileStatus::Synced, None),
            false => (self.not_synced(), None),
        }
    }

    /// Counts and lists (when asked to) an entry of `dir` whose raw name
    /// `raw` is not a name StackSync accepts.
    fn refused_name(
        &mut self,
        dir: &RelPath,
        raw: &str,
        kind: EntryKind,
        why: &stacksync_proto::NameError,
        list_children: bool,
    ) {
        self.count(FileStatus::Error);
        if (list_children || self.list_all_unsynced) && self.listed.len() < MAX_LISTED {
            let sep = if dir.is_root() { "" } else { "/" };
            self.listed.push(StatusEntry {
                path: format!("{dir}{sep}{}", stacksync_proto::printable(raw)),
                status: FileStatus::Error,
                is_folder: kind == EntryKind::Folder,
                detail: Some(format!("not synced: {why}")),
            });
        }
    }

    /// Status of a path and (for folders) everything beneath it. Lists
    /// children when `list_children`; notes each path's status in `all`
    /// when it is kept.
    async fn walk(
        &mut self,
        path: &RelPath,
        kind: EntryKind,
        stamp: Stamp,
        list_children: bool,
    ) -> Result<FileStatus, StatusError> {
        let status = self.walk_one(path, kind, stamp, list_children).await?;
        if let Some(all) = &mut self.all {
            all.insert(path.clone(), status);
        }
        Ok(status)
    }

    async fn walk_one(
        &mut self,
        path: &RelPath,
        kind: EntryKind,
        stamp: Stamp,
        list_children: bool,
    ) -> Result<FileStatus, StatusError> {
        let ignored = !path.is_root()
            && (matches!(kind, EntryKind::Symlink | EntryKind::Special)
                || self.ignore.is_ignored_path(path, kind == EntryKind::Folder));
        if ignored {
            return Ok(FileStatus::Ignored);
        }
        if kind == EntryKind::File {
            let (status, detail) = self.file_status(path, stamp);
            self.count(status);
            if self.list_all_unsynced
                && status != FileStatus::Synced
                && self.listed.len() < MAX_LISTED
            {
                self.listed.push(StatusEntry {
                    path: path.to_string(),
                    status,
                    is_folder: false,
                    detail,
                });
            }
            return Ok(status);
        }
        let mut worst = if path.is_root() || self.view.is_synced(path) {
            FileStatus::Synced
        } else if self.view.refusal(path).is_some() {
            FileStatus::Error
        } else {
            self.not_synced()
        };
        let entries = match self.fs.list_dir(path).await {
            Ok(entries) => entries,
            // Renamed, removed or replaced while it was looked at (a sync
            // or the user at work): it is changing, not an error.
            Err(e)
                if !path.is_root()
                    && matches!(e.kind, FsErrorKind::NotFound | FsErrorKind::WrongKind) =>
            {
                let status = self.not_synced();
                self.count(status);
                return Ok(status);
            }
            Err(e) => return Err(StatusError::Io(path.to_string(), e.to_string())),
        };
        let mut local_names = std::collections::HashSet::new();
        for e in entries {
            let name = match stacksync_proto::ItemName::new(&e.name) {
                Ok(name) => name,
                Err(why) => {
                    // A name StackSync refuses is the user's to fix: an
                    // error, shown escaped (it may hold control or
                    // bidirectional characters that would rewrite the
                    // terminal). A symlink or special file is ignored anyway.
                    if matches!(e.kind, EntryKind::File | EntryKind::Folder) {
                        self.refused_name(path, &e.name, e.kind, &why, list_children);
                        worst = FileStatus::Error;
                    }
                    continue;
                }
            };
            local_names.insert(e.name.clone());
            let child = path.join(&name);
            let status = Box::pin(self.walk(&child, e.kind, e.stamp, false)).await?;
            if list_children && self.listed.len() < MAX_LISTED {
                let detail = self.view.refusal(&child).map(str::to_owned);
                self.listed.push(StatusEntry {
                    path: child.to_string(),
                    status,
                    is_folder: e.kind == EntryKind::Folder,
                    detail,
                });
            }
            if status.severity() > worst.severity() {
                worst = status;
            }
        }
        // Items the server has here that the disk does not: downloads to come.
        let Some(remote) = self.view.remote_children(path) else {
            return Ok(worst);
        };
        let missing: Vec<(String, bool)> = remote
            .into_iter()
            .filter(|(name, _)| !local_names.contains(name.as_str()))
            .filter(|(name, is_folder)| !self.ignore.is_ignored_path(&path.join(name), *is_folder))
            .map(|(name, is_folder)| (name.as_str().to_owned(), is_folder))
            .collect();
        for (name, is_folder) in missing {
            let status = self.not_synced();
            self.count(status);
            let child = format!("{}{}{}", path, if path.is_root() { "" } else { "/" }, name);
            if let (Some(all), Ok(at)) = (&mut self.all, RelPath::parse(&child)) {
                all.insert(at, status);
            }
            if (list_children || self.list_all_unsynced) && self.listed.len() < MAX_LISTED {
                self.listed.push(StatusEntry {
                    path: child,
                    status,
                    is_folder,
                    detail: Some("to download".into()),
                });
            }
            if status.severity() > worst.severity() {
                worst = status;
            }
        }
        Ok(worst)
    }
}

/// Computes the status of `path` (the whole folder when it is the root).
pub async fn compute(
    fs: &LocalFs,
    snapshot: &Snapshot,
    path: &RelPath,
    daemon_running: bool,
) -> Result<StatusReport, StatusError> {
    compute_excluding(fs, snapshot, path, daemon_running, &BTreeSet::new()).await
}

/// [`compute`] with `excluded` paths (other workspaces' mount points)
/// shown as left out.
pub async fn compute_excluding(
    fs: &LocalFs,
    snapshot: &Snapshot,
    path: &RelPath,
    daemon_running: bool,
    excluded: &BTreeSet<RelPath>,
) -> Result<StatusReport, StatusError> {
    let mut ctx = Ctx {
        fs,
        view: &snapshot.view,
        ignore: ignore_rules(fs).await.excluding(excluded),
        busy: snapshot.daemon.busy,
        counts: BTreeMap::new(),
        listed: Vec::new(),
        list_all_unsynced: path.is_root(),
        all: None,
    };
    let meta = fs
        .stat(path)
        .await
        .map_err(|e| StatusError::Io(path.to_string(), e.to_string()))?;
    let (status, is_folder, detail) = match meta {
        Some(m) => {
            let is_folder = m.kind == EntryKind::Folder;
            let status = ctx
                .walk(path, m.kind, m.stamp, is_folder && !path.is_root())
                .await?;
            let detail = ctx.view.refusal(path).map(str::to_owned);
            (status, is_folder, detail)
        }
        None => {
            // Not on disk: known to the server (a download to come) or not at all.
            match ctx.view.on_server(path) {
                Some(is_folder) => (ctx.not_synced(), is_folder, Some("to download".into())),
                None => {
                    return Err(StatusError::Io(
                        path.to_string(),
                        "no such file or folder, here or on the server".into(),
                    ));
                }
            }
        }
    };
    Ok(StatusReport {
        folder: fs.root().to_path_buf(),
        daemon_running,
        daemon: snapshot.daemon.clone(),
        target: StatusEntry {
            path: path.to_string(),
            status,
            is_folder,
            detail,
        },
        entries: ctx.listed,
        counts: ctx.counts,
        shared: Vec::new(),
        encryption: String::new(),
    })
}

/// One folder the status answers for: the private workspace's (at the
/// root) or a shared folder's mount point, with its engine's board.
#[derive(Clone)]
pub struct Route {
    /// Where it is in the synced folder.
    pub path: RelPath,
    /// Its folder on disk.
    pub fs: Arc<LocalFs>,
    /// What its engine last published.
    pub board: StatusBoard,
    /// The workspace synced there (`None` when computed without a
    /// connection, offline).
    pub workspace: Option<stacksync_proto::Workspace>,
    /// How versions of an end-to-end encrypted workspace are opened.
    pub sealed: Option<Arc<crate::e2ee::SealedRemote>>,
}

/// Every folder a status may be asked about: the synced folder, split
/// into the folders of the workspaces synced there.
#[derive(Clone, Default)]
pub struct Folders {
    /// The synced folder.
    pub folder: PathBuf,
    /// The private workspace's encryption setting.
    pub encryption: stacksync_proto::EncryptionMode,
    /// The private workspace's route first, then each mount's.
    pub routes: Vec<Route>,
    /// What the private workspace leaves out (mounts, detached folders).
    pub excluded: BTreeSet<RelPath>,
    /// The shared folders, as `status` shows them.
    pub shared: Vec<SharedFolder>,
    /// Whether syncing is paused (`None`: not known, no daemon).
    pub pause: Option<crate::pause::PauseSwitch>,
}

impl Folders {
    /// The report for `path` (relative to the synced folder): computed by
    /// the folder holding it, its paths given from the synced folder. The
    /// whole folder's report also takes in every mount's.
    pub async fn report(
        &self,
        path: &RelPath,
        daemon_running: bool,
        wait: Duration,
    ) -> Result<StatusReport, StatusError> {
        let route = self
            .routes
            .iter()
            .filter(|r| path.starts_with(&r.path))
            .max_by_key(|r| r.path.depth())
            .ok_or_else(|| StatusError::Io(path.to_string(), "no folder syncs it".into()))?;
        let rest = crate::mounts::strip_prefix(path, &route.path).unwrap_or_default();
        let none = BTreeSet::new();
        let excluded = if route.path.is_root() {
            &self.excluded
        } else {
            &none
        };
        let snapshot = route.board.snapshot(wait).await;
        let mut report =
            compute_excluding(&route.fs, &snapshot, &rest, daemon_running, excluded).await?;
        rebase(&mut report, &route.path);
        report.folder = self.folder.clone();
        report.encryption = self.encryption.as_str().into();
        if let Some(pause) = &self.pause {
            let now = pause.now();
            report.daemon.paused = now.paused;
            report.daemon.paused_until = now.until;
        }
        if path.is_root() {
            for mount in self.routes.iter().filter(|r| !r.path.is_root()) {
                let snapshot = mount.board.snapshot(wait).await;
                let Ok(mut more) =
                    compute(&mount.fs, &snapshot, &RelPath::root(), daemon_running).await
                else {
                    continue;
                };
                rebase(&mut more, &mount.path);
                absorb(&mut report, more, &mount.path);
            }
        }
        report.shared = self
            .shared
            .iter()
            .filter(|f| {
                path.is_root()
                    || RelPath::parse(&f.path)
                        .is_ok_and(|at| path.starts_with(&at) || at.starts_with(path))
            })
            .cloned()
            .collect();
        Ok(report)
    }
}

impl Folders {
    /// The folder that syncs `path` (relative to the synced folder) and
    /// the path relative to it.
    pub fn route_of(&self, path: &RelPath) -> Option<(&Route, RelPath)> {
        let route = self
            .routes
            .iter()
            .filter(|r| path.starts_with(&r.path))
            .max_by_key(|r| r.path.depth())?;
        let rest = crate::mounts::strip_prefix(path, &route.path).unwrap_or_default();
        Some((route, rest))
    }

    /// The daemon's activity across every folder, the pause included.
    pub fn daemon_state(&self) -> DaemonState {
        let mut state = DaemonState::default();
        for (i, r) in self.routes.iter().enumerate() {
            let d = r.board.snapshot_now().daemon;
            if i == 0 {
                state = d;
                continue;
            }
            state.busy |= d.busy;
            state.bytes_up = state.bytes_up.max(d.bytes_up);
            state.bytes_down = state.bytes_down.max(d.bytes_down);
            if state.last_error.is_none()
                && let Some(e) = d.last_error
            {
                state.last_error = Some(format!("{}: {e}", r.path));
            }
            state.last_synced = match (state.last_synced, d.last_synced) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            };
        }
        if let Some(pause) = &self.pause {
            let now = pause.now();
            state.paused = now.paused;
            state.paused_until = now.until;
        }
        state
    }
}

/// The status of every path in the synced folder (each workspace's folder
/// walked once; a folder has the worst status beneath it, the top the
/// worst of all), for the change feed's diffs.
pub async fn status_map(
    folders: &Folders,
    wait: Duration,
) -> Result<BTreeMap<RelPath, FileStatus>, StatusError> {
    let mut total: BTreeMap<RelPath, FileStatus> = BTreeMap::new();
    let none = BTreeSet::new();
    for route in &folders.routes {
        let excluded = if route.path.is_root() {
            &folders.excluded
        } else {
            &none
        };
        let snapshot = route.board.snapshot(wait).await;
        let mut ctx = Ctx {
            fs: &route.fs,
            view: &snapshot.view,
            ignore: ignore_rules(&route.fs).await.excluding(excluded),
            busy: snapshot.daemon.busy,
            counts: BTreeMap::new(),
            listed: Vec::new(),
            list_all_unsynced: false,
            all: Some(BTreeMap::new()),
        };
        let root = RelPath::root();
        let Some(meta) = route
            .fs
            .stat(&root)
            .await
            .map_err(|e| StatusError::Io(route.path.to_string(), e.to_string()))?
        else {
            continue;
        };
        ctx.walk(&root, meta.kind, meta.stamp, false).await?;
        for (path, status) in ctx.all.take().unwrap_or_default() {
            total.insert(crate::mounts::under(&route.path, &path), status);
        }
    }
    let worst = total.values().copied().max_by_key(|s| s.severity());
    if let Some(worst) = worst {
        total.insert(RelPath::root(), worst);
    }
    Ok(total)
}

/// Paths of `report` (relative to a folder at `at`) made relative to the
/// synced folder.
fn rebase(report: &mut StatusReport, at: &RelPath) {
    if at.is_root() {
        return;
    }
    let fix = |p: &mut String| {
        *p = if p.is_empty() {
            at.to_string()
        } else {
            format!("{at}/{p}")
        };
    };
    fix(&mut report.target.path);
    for e in &mut report.entries {
        fix(&mut e.path);
    }
}

/// Adds the report of the mount at `at` to the whole folder's.
fn absorb(report: &mut StatusReport, more: StatusReport, at: &RelPath) {
    for (k, n) in more.counts {
        *report.counts.entry(k).or_default() += n;
    }
    let room = MAX_LISTED.saturating_sub(report.entries.len());
    report.entries.extend(more.entries.into_iter().take(room));
    if more.target.status.severity() > report.target.status.severity() {
        report.target.status = more.target.status;
    }
    report.daemon.busy |= more.daemon.busy;
    if report.daemon.last_error.is_none()
        && let Some(e) = more.daemon.last_error
    {
        report.daemon.last_error = Some(format!("{at}: {e}"));
    }
    report.daemon.last_synced = match (report.daemon.last_synced, more.daemon.last_synced) {
        (Some(a), Some(b)) => Some(a.min(b)),
        _ => None,
    };
}

/// A shared folder, as `stacksync status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedFolder {
    /// Where it is, relative to the synced folder.
    pub path: String,
    /// Its encryption setting (`plain`, `client_side`, `server_side`;
    /// empty when not synced).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub encryption: String,
    /// Whether this account owns it.
    pub owner: bool,
    /// Whether this account may only read it.
    pub read_only: bool,
    /// The other members, by e-mail.
    pub members: Vec<String>,
    /// `shared`, or `detached` (no longer shared with this account: the
    /// local copy is kept, not synced), or `paused` (see `detail`).
    pub state: String,
    /// Why it is paused, or what to do with a detached copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What the status socket answers from; the daemon replaces it when its
/// mounts change. Clones share one.
#[derive(Clone, Default)]
pub struct StatusRoutes(Arc<Mutex<Arc<Folders>>>);

impl StatusRoutes {
    /// Answers from `folders` from now on.
    pub fn set(&self, folders: Folders) {
        if let Ok(mut f) = self.0.lock() {
            *f = Arc::new(folders);
        }
    }

    /// What is answered from now.
    pub fn get(&self) -> Arc<Folders> {
        self.0.lock().map(|f| Arc::clone(&f)).unwrap_or_default()
    }
}

/// A status query on the socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusQuery {
    /// Absolute path to ask about; `None` for the whole folder.
    pub path: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StatusAnswer {
    Ok(Box<StatusReport>),
    Error(String),
}

/// Longest query line accepted (a path, with room to spare).
const MAX_QUERY: usize = 64 * 1024;

/// Serves status queries on `socket` until the task is dropped. A stale
/// socket file (left by a crashed daemon) is replaced; a live one (another
/// daemon on the same profile) is an error.
pub async fn serve(
    socket: &Path,
    ctx: SocketContext,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    if socket.exists() {
        if UnixStream::connect(socket).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "another stacksync daemon already runs for this profile ({} answers)",
                    socket.display()
                ),
            ));
        }
        std::fs::remove_file(socket)?;
    }
    let listener = UnixListener::bind(socket)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let _ = answer(stream, ctx).await;
            });
        }
    }))
}

async fn answer(stream: UnixStream, ctx: SocketContext) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let Some(line) = protocol::read_line_capped(&mut reader, protocol::MAX_LINE).await? else {
        return Ok(());
    };
    if protocol::is_versioned(&line) {
        return protocol::serve_connection(line, reader, write, ctx).await;
    }
    if line.len() > MAX_QUERY {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "query too long",
        ));
    }
    let folders = ctx.routes.get();
    let answer = match serde_json::from_str::<StatusQuery>(&line) {
        Err(e) => StatusAnswer::Error(format!("bad query: {e}")),
        Ok(q) => {
            let path = match &q.path {
                None => Ok(RelPath::root()),
                Some(p) if !p.is_absolute() => Err(StatusError::BadPath(
                    p.clone(),
                    "the socket takes absolute paths".into(),
                )),
                Some(p) => relative_to_folder(&folders.folder, p),
            };
            match path {
                Err(e) => StatusAnswer::Error(e.to_string()),
                Ok(rel) => match folders.report(&rel, true, FRESH_COPY_WAIT).await {
                    Ok(r) => StatusAnswer::Ok(Box::new(r)),
                    Err(e) => StatusAnswer::Error(e.to_string()),
                },
            }
        }
    };
    let mut out = serde_json::to_vec(&answer).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

/// Asks a running daemon; `Ok(None)` when none answers on `socket`.
pub async fn query(socket: &Path, path: Option<PathBuf>) -> Result<Option<StatusReport>, String> {
    let Ok(stream) = UnixStream::connect(socket).await else {
        return Ok(None);
    };
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(&StatusQuery { path }).map_err(|e| e.to_string())?;
    line.push(b'\n');
    write.write_all(&line).await.map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(read);
    let mut reply = String::new();
    reader
        .read_line(&mut reply)
        .await
        .map_err(|e| format!("reading the daemon's answer: {e}"))?;
    match serde_json::from_str::<StatusAnswer>(&reply)
        .map_err(|e| format!("the daemon's answer does not parse: {e}"))?
    {
        StatusAnswer::Ok(r) => Ok(Some(*r)),
        StatusAnswer::Error(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use stacksync_engine::SyncedItem;
    use stacksync_proto::{ItemId, ItemName};
    use uuid::Uuid;

    use super::*;

    fn state_with(name: &str) -> SyncState {
        let mut state = SyncState::default();
        state.synced.insert(
            ItemId(Uuid::from_u64_pair(0, 1)),
            SyncedItem {
                parent: None,
                name: ItemName::new(name).expect("a valid name"),
                is_folder: true,
                version: 1,
                content_hash: None,
                size: 0,
                stamp: None,
            },
        );
        state
    }

    #[tokio::test]
    async fn a_query_while_a_copy_is_built_waits_for_it() {
        let board = StatusBoard::default();
        board.copy_state(&state_with("old"));
        let at = |name: &str| RelPath::parse(name).expect("a valid path");
        assert!(
            board
                .snapshot(Duration::ZERO)
                .await
                .view
                .is_synced(&at("old"))
        );
        // As `copy_state` leaves the board between freeing the old copy and
        // putting in the new one.
        *board.0.view.lock().expect("not poisoned") = None;
        let query = tokio::spawn({
            let board = board.clone();
            async move { board.snapshot(Duration::ZERO).await }
        });
        tokio::task::yield_now().await;
        assert!(!query.is_finished(), "a query answered from no copy");
        board.copy_state(&state_with("new"));
        let snapshot = query.await.expect("the query ends");
        assert!(snapshot.view.is_synced(&at("new")));
        // A query holding a copy keeps it whole while a new one is built.
        let held = board.snapshot_now();
        board.copy_state(&state_with("newer"));
        assert!(held.view.is_synced(&at("new")));
        assert!(board.snapshot_now().view.is_synced(&at("newer")));
    }
}
