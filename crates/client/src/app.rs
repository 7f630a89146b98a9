//! The running client: one synced folder kept in step with every
//! workspace the account belongs to — the private workspace at the root
//! of the folder, each shared folder at its mount point ([`crate::mounts`])
//! — either until nothing is left to do ([`SyncClient::sync_until_done`],
//! `stacksync sync --once`) or for as long as it runs ([`SyncClient::run`],
//! the daemon).
//!
//! The daemon is a supervisor: it owns the status socket, the one folder
//! watcher (whose events it routes to the workspace holding each path),
//! the push-notification stream (commits wake the workspace they name;
//! proposals, joins and unshares re-read the account's workspaces and
//! mount or detach shared folders at run time) and a
//! [`Schedule`](crate::schedule::Schedule), the pure decision of which
//! workspace syncs next. Each workspace is a [`WorkspaceSync`] with its own
//! engine.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use stacksync_engine::{Changed, EngineError, RelPath, SyncReport};
use stacksync_gateway_client::{Delays, RetryPolicy};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{
    ChangesPage, EncryptionMode, Error, ErrorKind, ItemMeta, ItemStatus, Notification, UserId,
    Workspace, WorkspaceId,
};
use tokio::time::Instant;

use crate::connection::{Connection, FeedGuard, NotificationStream, unexpected, workspaces};
use crate::desktop::{DesktopNotifier, NoticeKind};
use crate::e2ee::{self, KeyFiles};
use crate::localfs::{LocalFs, OpenFolderError};
use crate::mounts::{self, DetachedRecord, MountRecord, MountTable};
use crate::pause::PauseSwitch;
use crate::profile::{Profile, ProfileError};
use crate::schedule::{Outcome, Schedule};
use crate::state::{SqliteStateStore, StateDbError};
use crate::status::{
    self, Folders, Route, SharedFolder, SocketContext, StatusBoard, StatusFeed, StatusRoutes,
};
use crate::transfer::{
    Activity, Deadlines, JournalError, TransferConfig, TransferError, TransferStats,
    WatchedConnection,
};
use crate::watcher::{WatchConfig, WatchError, WatchEvent, Watcher};
use crate::workspace_sync::{Shared, WorkspaceSync};

/// Name of the status socket in the client's home.
pub const STATUS_SOCKET: &str = "status.sock";

/// How the client runs.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Chunking, parallelism and bandwidth limits.
    pub transfer: TransferConfig,
    /// Watcher debounce and rescan period.
    pub watch: WatchConfig,
    /// Sync attempts (with backoff) before `sync_until_done` gives up.
    pub attempts: u32,
    /// First retry delay; grows up to `max_backoff` (see
    /// [`ClientOptions::retry`]).
    pub backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Shows desktop notifications when a desktop session exists.
    pub desktop: bool,
    /// Deadlines on RPCs and transfers, and when a round counts as stalled.
    pub deadlines: Deadlines,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            transfer: TransferConfig::default(),
            watch: WatchConfig {
                // Short: an editor's save is a burst of a few ms, and this
                // delay is paid on every edit before it reaches the others.
                quiet: Duration::from_millis(30),
                max_delay: Duration::from_secs(1),
                rescan_every: Duration::from_secs(120),
            },
            attempts: 8,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            desktop: true,
            deadlines: Deadlines::default(),
        }
    }
}

/// Why the client could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The profile is missing or broken.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The synced folder cannot be used. It is never recreated on its own:
    /// an unmounted disk must not look like "the user deleted everything".
    #[error("synced folder: {0}")]
    Folder(#[from] OpenFolderError),
    /// The local state database failed.
    #[error("state database: {0}")]
    State(#[from] StateDbError),
    /// The upload journal (next to the state database) failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The service refused or failed.
    #[error("{doing}: {source}")]
    Service {
        /// What the client was doing.
        doing: String,
        /// The service's error.
        #[source]
        source: Error,
    },
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The content pipeline could not be set up.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// Watching the folder failed.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// The account has no private workspace (an account problem).
    #[error("the account has no private workspace")]
    NoWorkspace,
    /// Retries ran out with work left.
    #[error("sync did not finish after {attempts} attempts: {left}")]
    Incomplete {
        /// Attempts made.
        attempts: u32,
        /// What was left, and why.
        left: String,
    },
    /// A path argument is unusable.
    #[error("{0}")]
    Path(String),
    /// Another daemon runs for this profile, or the socket failed.
    #[error("status socket: {0}")]
    Socket(std::io::Error),
}

impl ClientOptions {
    /// The one retry policy of the client's sync loops: `sync --once`
    /// makes `attempts`, the daemon retries for as long as it runs.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: self.attempts,
            initial_delay: self.backoff,
            max_delay: self.max_backoff,
        }
    }
}

impl AppError {
    pub(crate) fn service(doing: impl Into<String>) -> impl FnOnce(Error) -> AppError {
        let doing = doing.into();
        move |source| AppError::Service { doing, source }
    }

    /// Whether waiting and retrying may help.
    pub fn is_transient(&self) -> bool {
        match self {
            AppError::Engine(e) => e.is_transient(),
            AppError::Service { source, .. } => source.kind.is_transient(),
            AppError::Incomplete { .. } => true,
            _ => false,
        }
    }
}

/// The private workspace's [`FeedGuard`]: when the server moves a folder
/// into a shared workspace of its own (the first acceptance of a share),
/// the private workspace's feed deletes it. Before any deleted folder is
/// seen, the guard asks for the account's workspaces; a shared workspace
/// this client has not mounted yet stops the read, so that the daemon
/// mounts it first (the folder's place becomes a mount point the private
/// engine leaves out) and the owner's local copy is handed over to the
/// shared workspace instead of being deleted.
struct MountWatch {
    conn: Arc<dyn Connection>,
    known: Mutex<BTreeSet<WorkspaceId>>,
    tripped: AtomicBool,
}

impl MountWatch {
    fn set_known(&self, list: &[Workspace]) {
        let ids = list.iter().filter(|w| w.is_shared).map(|w| w.id).collect();
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) = ids;
    }

    /// Whether the guard stopped a read since the last call.
    fn take_tripped(&self) -> bool {
        self.tripped.swap(false, Ordering::SeqCst)
    }
}

#[async_trait]
impl FeedGuard for MountWatch {
    async fn check(&self, page: &ChangesPage) -> Result<(), Error> {
        let folder_deleted = page
            .items
            .iter()
            .any(|m| m.is_folder && m.status == ItemStatus::Deleted);
        if !folder_deleted {
            return Ok(());
        }
        let now = workspaces(self.conn.as_ref()).await?;
        let unknown = {
            let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            now.iter().any(|w| w.is_shared && !known.contains(&w.id))
        };
        if !unknown {
            return Ok(());
        }
        self.tripped.store(true, Ordering::SeqCst);
        Err(Error::new(
            ErrorKind::Unavailable,
            "a shared folder was added to this account; mounting it before reading on",
        ))
    }
}

/// The synced folder and every workspace synced in it.
pub struct SyncClient {
    profile: Profile,
    conn: Arc<dyn Connection>,
    me: UserId,
    options: ClientOptions,
    shared: Shared,
    private: WorkspaceSync,
    /// Mounted shared workspaces.
    mounts: BTreeMap<WorkspaceId, WorkspaceSync>,
    /// What `mounts.toml` holds.
    table: MountTable,
    /// Shared workspaces this client does not sync now, and why.
    paused: BTreeMap<WorkspaceId, String>,
    /// Shared workspaces that cannot be placed, and why.
    problems: Vec<String>,
    /// Mounts the user moved on this device into a place the server
    /// cannot be told of yet (a folder not synced yet): left out of the
    /// private workspace where they are now, not synced until then.
    moved_here: BTreeSet<WorkspaceId>,
    /// The account's workspaces as last read.
    list: Vec<Workspace>,
    watch: Arc<MountWatch>,
    routes: StatusRoutes,
    /// Whether syncing is paused (`paused.json` in the home).
    pause: PauseSwitch,
}

impl SyncClient {
    /// Opens the folder, the state database and every workspace of the
    /// account through `conn`: the private one at the root of the folder,
    /// shared ones at their mount points.
    pub async fn open(
        profile: Profile,
        conn: Arc<dyn Connection>,
        options: ClientOptions,
    ) -> Result<SyncClient, AppError> {
        // Checked before anything else: an unmounted disk must not look
        // like "the user deleted everything".
        LocalFs::open(&profile.config.folder)?;
        let watched: Arc<dyn Connection> = Arc::new(WatchedConnection::new(
            Arc::clone(&conn),
            Activity::default(),
            options.deadlines,
        ));
        let account = match watched
            .rpc(Request::GetAccount)
            .await
            .map_err(AppError::service("reading the account"))?
        {
            Reply::Account(a) => a,
            other => {
                return Err(AppError::Service {
                    doing: "reading the account".into(),
                    source: unexpected("get_account", other),
                });
            }
        };
        let list = workspaces(watched.as_ref())
            .await
            .map_err(AppError::service("listing workspaces"))?;
        let workspace = list
            .iter()
            .find(|w| !w.is_shared && w.owner == account.id)
            .cloned()
            .ok_or(AppError::NoWorkspace)?;
        let mut profile = profile;
        match profile.config.workspace {
            Some(known) if known != workspace.id => {
                return Err(AppError::Path(format!(
                    "this profile syncs workspace {known}, but the server now names {} as the account's private workspace; run `stacksync setup --force` to start over with this server",
                    workspace.id
                )));
            }
            Some(_) => {}
            None => {
                profile.config.workspace = Some(workspace.id);
                profile.save()?;
            }
        }
        let desktop = if options.desktop {
            DesktopNotifier::detect().with_settings_from(profile.home())
        } else {
            DesktopNotifier::disabled()
        };
        let shared = Shared {
            desktop,
            stats: Arc::new(TransferStats::default()),
            feed: StatusFeed::default(),
        };
        let watch = Arc::new(MountWatch {
            conn: watched,
            known: Mutex::default(),
            tripped: AtomicBool::new(false),
        });
        let table = MountTable::load(profile.home()).map_err(|e| {
            AppError::Profile(ProfileError::Invalid(format!("the mount table: {e}")))
        })?;
        let mut private = WorkspaceSync::open(
            &profile,
            Arc::clone(&conn),
            workspace,
            RelPath::root(),
            &options,
            shared.clone(),
            Some(Arc::clone(&watch) as Arc<dyn FeedGuard>),
        )
        .await?;
        // From the very first round: what was mounted is left out, even if
        // the server cannot be asked again.
        private.set_excluded(table.excluded());
        let pause = PauseSwitch::open(profile.home());
        let mut client = SyncClient {
            profile,
            conn,
            me: account.id,
            options,
            shared,
            private,
            mounts: BTreeMap::new(),
            table,
            paused: BTreeMap::new(),
            problems: Vec::new(),
            moved_here: BTreeSet::new(),
            list: Vec::new(),
            watch,
            routes: StatusRoutes::default(),
            pause,
        };
        client.apply_mounts(list).await?;
        Ok(client)
    }

    /// The private workspace.
    pub fn workspace(&self) -> &Workspace {
        self.private.workspace()
    }

    /// Bytes and chunks moved so far, by every workspace together.
    pub fn stats(&self) -> &TransferStats {
        &self.shared.stats
    }

    /// A handle on the transfer counters that outlives borrows of `self`
    /// (for a progress display on another task).
    pub fn counters(&self) -> Arc<TransferStats> {
        Arc::clone(&self.shared.stats)
    }

    /// The mounted shared folders: workspace and path in the folder.
    pub fn mounted(&self) -> Vec<(Workspace, RelPath)> {
        self.mounts
            .values()
            .map(|m| (m.workspace().clone(), m.path().clone()))
            .collect()
    }

    /// What the status socket answers from.
    pub fn routes(&self) -> StatusRoutes {
        self.routes.clone()
    }

    /// Reads the account's workspaces again and mounts, moves or detaches
    /// shared folders to match.
    pub async fn refresh_mounts(&mut self) -> Result<(), AppError> {
        self.follow_local_moves().await;
        let list = workspaces(self.private.conn().as_ref())
            .await
            .map_err(AppError::service("listing workspaces"))?;
        self.apply_mounts(list).await
    }

    /// Whether a mount point is not where the mount table has it.
    fn a_mount_moved(&self) -> bool {
        let folder = &self.profile.config.folder;
        self.table.mounts.iter().any(|m| {
            m.file_id.is_some()
                && RelPath::parse(&m.path)
                    .is_ok_and(|p| dir_inode(&mounts::absolute(folder, &p)) != m.file_id)
        })
    }

    /// Follows mount points the user moved or renamed on this device
    /// (found by their inode): the new place is left out of the private
    /// workspace at once (its files are the shared folder's, never new
    /// private files), and the member's own view on the server follows
    /// (`UpdateWorkspace`: it changes nobody else's) when the new parent is
    /// the top or a synced folder of theirs; until then the mount waits.
    async fn follow_local_moves(&mut self) {
        let folder = self.profile.config.folder.clone();
        let mut changed = false;
        for rec in self.table.mounts.clone() {
            let (Some(ino), Ok(at)) = (rec.file_id, RelPath::parse(&rec.path)) else {
                continue;
            };
            if dir_inode(&mounts::absolute(&folder, &at)) == Some(ino) {
                continue;
            }
            let root = folder.clone();
            let found = tokio::task::spawn_blocking(move || find_dir(&root, ino))
                .await
                .ok()
                .flatten();
            // Removed, not moved: `mount` and `mount_intact` say so.
            let Some(new) = found.and_then(|abs| status::relative_to_folder(&folder, &abs).ok())
            else {
                continue;
            };
            let (Some(parent), Some(name)) = (new.parent(), new.name().cloned()) else {
                continue;
            };
            tracing::info!(workspace = %rec.workspace, from = %at, to = %new, "shared folder moved on this device");
            if let Some(r) = self
                .table
                .mounts
                .iter_mut()
                .find(|m| m.workspace == rec.workspace)
            {
                r.path = new.to_string();
            }
            self.private.set_excluded(self.table.excluded());
            self.mounts.remove(&rec.workspace);
            changed = true;
            let mount_parent = if parent.is_root() {
                Some(None)
            } else if self.table.mount_of(&parent).is_some() {
                None
            } else {
                private_folder_at(self.private.state(), &parent).map(Some)
            };
            let told = match mount_parent {
                Some(mount_parent) => self
                    .private
                    .conn()
                    .rpc(Request::UpdateWorkspace {
                        workspace: rec.workspace,
                        name: name.to_string(),
                        mount_parent,
                    })
                    .await
                    .inspect_err(|e| tracing::warn!(%e, "moving a shared folder's mount"))
                    .is_ok(),
                None => false,
            };
            if told {
                self.moved_here.remove(&rec.workspace);
            } else {
                self.moved_here.insert(rec.workspace);
            }
        }
        if changed && let Err(e) = self.table.save(self.profile.home()) {
            tracing::warn!(%e, "saving the mount table");
        }
    }

    /// Makes the mounts match `list` (the account's workspaces).
    async fn apply_mounts(&mut self, list: Vec<Workspace>) -> Result<(), AppError> {
        let saved = self.table.clone();
        if let Some(private) = list.iter().find(|w| w.id == self.private.workspace().id)
            && private.encryption != self.private.workspace().encryption
        {
            // Another device made the (empty) private workspace end-to-end
            // encrypted: its engine, codec and view of the server change
            // with it (this fails, and keeps failing, on a device that
            // holds no key for it).
            let mut reopened = WorkspaceSync::open(
                &self.profile,
                Arc::clone(&self.conn),
                private.clone(),
                RelPath::root(),
                &self.options,
                self.shared.clone(),
                Some(Arc::clone(&self.watch) as Arc<dyn FeedGuard>),
            )
            .await?;
            reopened.set_excluded(self.table.excluded());
            self.private = reopened;
        }
        self.watch.set_known(&list);
        // Mount points sit under private folders: the private tree must be
        // current to place them.
        self.private.engine().pull().await?;
        let (placed, problems) = mounts::place(&list, self.private.state());
        self.problems = problems;
        let by_id: BTreeMap<WorkspaceId, &Workspace> = list
            .iter()
            .filter(|w| w.is_shared)
            .map(|w| (w.id, w))
            .collect();
        let stale_keys = self.stale_keys(&by_id).await;
        // Gone or moved.
        let open: Vec<WorkspaceId> = self.mounts.keys().copied().collect();
        for id in open {
            let at = placed.get(&id);
            let current = self.mounts[&id].path().clone();
            // A changed role, or new keys, is a new engine (reopened below).
            let same_role = by_id
                .get(&id)
                .is_some_and(|ws| ws.read_only == self.mounts[&id].workspace().read_only)
                && !stale_keys.contains(&id);
            if at == Some(&current) && same_role {
                if let (Some(m), Some(ws)) = (self.mounts.get_mut(&id), by_id.get(&id)) {
                    m.set_workspace((*ws).clone());
                }
                continue;
            }
            let old = self.mounts.remove(&id).expect("listed just above");
            match at {
                None if !by_id.contains_key(&id) => self.detach(id, &current),
                None => {}
                // Renamed or moved: reopened below, where `mount` moves the
                // folder after it if the server moved it.
                Some(_) => {}
            }
            drop(old);
        }
        // Mounted when this client last ran, and left since.
        let left: Vec<(WorkspaceId, RelPath)> = self
            .table
            .mounts
            .iter()
            .filter(|m| !by_id.contains_key(&m.workspace))
            .filter_map(|m| Some((m.workspace, RelPath::parse(&m.path).ok()?)))
            .collect();
        for (id, path) in left {
            self.detach(id, &path);
        }
        // Paused mounts are tried again.
        self.paused.clear();
        self.table.waiting.clear();
        // New, moved and paused ones.
        for (id, path) in &placed {
            if self.mounts.contains_key(id) {
                continue;
            }
            let ws = (*by_id.get(id).expect("placed from the list")).clone();
            match self.mount(ws, path.clone()).await {
                Ok(sync) => {
                    self.mounts.insert(*id, sync);
                }
                Err(why) => {
                    tracing::warn!(workspace = %id, "shared folder not synced: {why}");
                    if !self.table.mounts.iter().any(|m| m.workspace == *id) {
                        self.table.waiting.push(mounts::WaitingRecord {
                            workspace: *id,
                            path: path.to_string(),
                            reason: why.clone(),
                        });
                    }
                    self.paused.insert(*id, why);
                }
            }
        }
        self.update_table(&by_id, &placed).await;
        self.table.private_encryption = self.private.workspace().encryption;
        // Written only when it changed (most refreshes change nothing).
        if self.table != saved
            && let Err(e) = self.table.save(self.profile.home())
        {
            tracing::warn!(%e, "saving the mount table");
        }
        self.list = list;
        self.private.set_excluded(self.table.excluded());
        self.publish_routes();
        Ok(())
    }

    /// The mounted end-to-end encrypted shared folders whose key list
    /// moved on since they were opened: a member joined or left (the
    /// owner's device updates the list here first, see
    /// [`e2ee::keys::share_keys`]), or another device appended. Their
    /// engines are opened again with the new keys (everything written
    /// after a rotation uses the new generation).
    async fn stale_keys(
        &self,
        listed: &BTreeMap<WorkspaceId, &Workspace>,
    ) -> BTreeSet<WorkspaceId> {
        let files = KeyFiles::new(self.profile.home());
        let mut stale = BTreeSet::new();
        for (id, sync) in &self.mounts {
            let (Some(held), Some(ws)) = (sync.keys_epoch(), listed.get(id)) else {
                continue;
            };
            let latest = if ws.owner == self.me {
                e2ee::keys::share_keys(&files, self.conn.as_ref(), ws)
                    .await
                    .map(|change| {
                        log_key_change(ws, &change);
                        change.epoch
                    })
            } else {
                e2ee::keys::latest_epoch(self.conn.as_ref(), *id).await
            };
            match latest {
                Ok(latest) if latest != held => {
                    stale.insert(*id);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(workspace = %id, %e, "the shared folder's keys"),
            }
        }
        stale
    }

    /// Opens the shared workspace `ws` at `path`, or says why not.
    async fn mount(&mut self, ws: Workspace, path: RelPath) -> Result<WorkspaceSync, String> {
        let folder = &self.profile.config.folder;
        let abs = mounts::absolute(folder, &path);
        let known = self
            .table
            .mounts
            .iter()
            .find(|m| m.workspace == ws.id)
            .cloned();
        let was_detached_here = self
            .table
            .detached
            .iter()
            .any(|d| d.workspace == ws.id && d.path == path.to_string());
        if self.moved_here.contains(&ws.id) {
            return Err(format!(
                "the shared folder {:?} was moved on this device into a folder that is not synced yet; it is synced again once that folder is",
                ws.name
            ));
        }
        let inode = |p: &Path| {
            use std::os::unix::fs::MetadataExt;
            std::fs::symlink_metadata(p)
                .ok()
                .filter(|m| m.is_dir())
                .map(|m| m.ino())
        };
        match (&known, std::fs::symlink_metadata(&abs)) {
            (_, Ok(m)) if !m.is_dir() => {
                return Err(format!(
                    "something that is not a folder is at {path}, where the shared folder {:?} goes; move it away",
                    ws.name
                ));
            }
            // A mount point this device synced before must be that folder:
            // never a new, empty one (its engine would take every file as
            // deleted here, and delete it for everyone).
            (Some(k), Ok(_)) => {
                if k.file_id.is_some_and(|id| Some(id) != inode(&abs)) {
                    return Err(format!(
                        "the folder at {path} is not the shared folder {:?} this device synced (it was replaced); move it away to get the shared folder back",
                        ws.name
                    ));
                }
            }
            (Some(k), Err(_)) => {
                // Renamed or moved on the server (by another device of this
                // account): the folder follows.
                let before = RelPath::parse(&k.path)
                    .ok()
                    .map(|p| mounts::absolute(folder, &p));
                let found = before.filter(|b| {
                    k.file_id.is_some() && inode(b) == k.file_id && k.path != path.to_string()
                });
                let followed = found.is_some_and(|from| {
                    abs.parent()
                        .is_some_and(|p| std::fs::create_dir_all(p).is_ok())
                        && std::fs::rename(&from, &abs).is_ok()
                });
                if !followed {
                    return Err(format!(
                        "the shared folder {:?} is not at {path} on this device (removed?); it is not synced, and nothing is deleted on the server. Restore the folder, or run `stacksync leave` on it",
                        ws.name
                    ));
                }
            }
            (None, Ok(_)) => {}
            (None, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                // The folders above are private folders (live on the server,
                // `mounts::place`): made here ahead of the private engine on
                // a new device, which then finds them in place.
                std::fs::create_dir_all(&abs)
                    .map_err(|e| format!("creating {path} for shared folder {:?}: {e}", ws.name))?;
            }
            (None, Err(e)) => return Err(format!("{path}: {e}")),
        }
        let owner = ws.owner == self.me;
        if owner && known.is_none() {
            seed_hand_over(&self.profile, self.private.state(), &path, ws.id)
                .await
                .map_err(|e| format!("handing {path} over to the shared folder: {e}"))?;
        }
        if owner && ws.encryption == EncryptionMode::ClientSide {
            // The owner's device writes the key list (the first statement
            // on the first mount) before the folder's engine needs it.
            let files = KeyFiles::new(self.profile.home());
            let change = e2ee::keys::share_keys(&files, self.conn.as_ref(), &ws)
                .await
                .map_err(|e| format!("the keys of shared folder {:?}: {e}", ws.name))?;
            log_key_change(&ws, &change);
        }
        let sync = WorkspaceSync::open(
            &self.profile,
            Arc::clone(&self.conn),
            ws.clone(),
            path.clone(),
            &self.options,
            self.shared.clone(),
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
        // A member's first mount must not take in a folder of their own
        // that happens to have the same name (it would be uploaded into
        // everyone's shared folder). The owner's first mount is their own
        // folder, handed over; a folder detached from this workspace
        // before merges back (same content settles, different content is
        // kept as conflicted copies).
        if sync.is_new() && !owner && known.is_none() && !was_detached_here && !is_empty_dir(&abs) {
            return Err(format!(
                "a folder of yours already exists at {path}, where the shared folder {:?} goes; rename it (or accept the invitation under another name with `--as`)",
                ws.name
            ));
        }
        tracing::info!(workspace = %ws.id, %path, "shared folder mounted");
        if known.is_none() && !owner {
            self.shared.desktop.notify(
                NoticeKind::Invitations,
                "StackSync: shared folder added",
                &format!("\u{201c}{}\u{201d} is now synced at {path}.", ws.name),
            );
        }
        Ok(sync)
    }

    /// Records that the shared folder at `path` left this account: kept
    /// here, not synced, unless it came back into the private workspace
    /// at the same place (its last member left the owner's shared folder),
    /// which the private engine then takes over.
    fn detach(&mut self, id: WorkspaceId, path: &RelPath) {
        if self
            .table
            .detached
            .iter()
            .any(|d| d.path == path.to_string())
        {
            return;
        }
        let tree = &self.private.state().remote;
        let came_back = tree.iter().any(|m| {
            m.is_folder && tree.live(m.id).is_some() && tree.path_of(m.id).as_ref() == Some(path)
        });
        if came_back {
            tracing::info!(workspace = %id, %path, "shared folder is a private folder again");
            self.shared.desktop.notify(
                NoticeKind::Invitations,
                "StackSync: a folder is no longer shared",
                &format!("{path} has no other members left: it is a folder of yours again."),
            );
            return;
        }
        self.table.detached.push(DetachedRecord {
            workspace: id,
            path: path.to_string(),
        });
        self.shared.desktop.notify(
            NoticeKind::Invitations,
            "StackSync: a folder is no longer shared with you",
            &format!("{path} is kept on this device but no longer synced."),
        );
    }

    /// Brings the mount table up to date with the mounts in force (members
    /// as the server lists them now, when it answers).
    async fn update_table(
        &mut self,
        by_id: &BTreeMap<WorkspaceId, &Workspace>,
        placed: &BTreeMap<WorkspaceId, RelPath>,
    ) {
        let folder = self.profile.config.folder.clone();
        let mut records = Vec::new();
        for (id, path) in placed {
            let Some(ws) = by_id.get(id) else { continue };
            let before = self.table.mounts.iter().find(|m| m.workspace == *id);
            if let Some(b) = before.filter(|_| self.moved_here.contains(id)) {
                records.push(b.clone());
                continue;
            }
            // Never mounted here (a folder of the member's own is in the
            // way): its place stays theirs, synced as private files.
            if before.is_none() && !self.mounts.contains_key(id) {
                continue;
            }
            let members = match self.members_of(*id).await {
                Ok(m) => m,
                Err(_) => before.map(|b| b.members.clone()).unwrap_or_default(),
            };
            let file_id = if self.mounts.contains_key(id) {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(mounts::absolute(&folder, path))
                    .ok()
                    .map(|m| m.ino())
            } else {
                before.and_then(|b| b.file_id)
            };
            records.push(MountRecord {
                workspace: *id,
                path: path.to_string(),
                owner: ws.owner == self.me,
                read_only: ws.read_only,
                members,
                file_id,
                encryption: ws.encryption,
            });
        }
        // A mount point that can no longer be placed stays left out of the
        // private workspace where it was, until it is placed again.
        for old in &self.table.mounts {
            if by_id.contains_key(&old.workspace) && !placed.contains_key(&old.workspace) {
                records.push(old.clone());
            }
        }
        self.table.mounts = records;
        // A detached copy the user moved or removed is theirs again; one
        // now mounted again is a mount.
        let mounted: BTreeSet<String> = self.table.mounts.iter().map(|m| m.path.clone()).collect();
        self.table.detached.retain(|d| {
            !mounted.contains(&d.path)
                && RelPath::parse(&d.path).is_ok_and(|p| mounts::absolute(&folder, &p).is_dir())
        });
    }

    /// The e-mails of the other members of `ws`.
    async fn members_of(&self, ws: WorkspaceId) -> Result<Vec<String>, Error> {
        match self
            .private
            .conn()
            .rpc(Request::GetMembers { workspace: ws })
            .await?
        {
            Reply::Members { members } => Ok(members
                .into_iter()
                .filter(|m| m.user != self.me)
                .map(|m| m.email)
                .collect()),
            other => Err(unexpected("get_members", other)),
        }
    }

    /// The shared folders as `status` shows them.
    fn shared_folders(&self) -> Vec<SharedFolder> {
        shared_folders(&self.table, &self.paused)
    }

    fn publish_routes(&self) {
        let routes = std::iter::once(&self.private)
            .chain(self.mounts.values())
            .map(|m| Route {
                path: m.path().clone(),
                fs: m.fs(),
                board: m.board(),
                workspace: Some(m.workspace().clone()),
                sealed: m.sealed().cloned(),
            })
            .collect();
        self.routes.set(Folders {
            folder: self.profile.config.folder.clone(),
            encryption: self.private.workspace().encryption,
            routes,
            excluded: self.table.excluded(),
            shared: self.shared_folders(),
            pause: Some(self.pause.clone()),
        });
        self.shared.feed.poke();
    }

    fn sync_of(&mut self, id: WorkspaceId) -> Option<&mut WorkspaceSync> {
        if id == self.private.workspace().id {
            Some(&mut self.private)
        } else {
            self.mounts.get_mut(&id)
        }
    }

    /// Whether the mount point of `id` is still its folder (not removed
    /// or replaced since it was mounted); pauses it otherwise.
    fn mount_intact(&mut self, id: WorkspaceId) -> bool {
        let Some(m) = self.mounts.get(&id) else {
            return true;
        };
        let record = self.table.mounts.iter().find(|r| r.workspace == id);
        let now = {
            use std::os::unix::fs::MetadataExt;
            std::fs::symlink_metadata(m.root())
                .ok()
                .filter(|md| md.is_dir())
                .map(|md| md.ino())
        };
        let intact = match (now, record.and_then(|r| r.file_id)) {
            (None, _) => false,
            (Some(a), Some(b)) => a == b,
            (Some(_), None) => true,
        };
        if !intact {
            let why = format!(
                "the shared folder {:?} was removed or replaced at {} on this device; it is not synced (nothing is deleted on the server). Restore it, or run `stacksync leave` on it",
                m.workspace().name,
                m.path()
            );
            tracing::warn!("{why}");
            self.shared
                .desktop
                .notify(NoticeKind::Errors, "StackSync: shared folder paused", &why);
            self.mounts.remove(&id);
            self.paused.insert(id, why);
            self.publish_routes();
        }
        intact
    }

    /// One sync of workspace `id`, after changes at `changed` (relative to
    /// its folder).
    async fn sync_one(
        &mut self,
        id: WorkspaceId,
        changed: Changed,
    ) -> Option<Result<SyncReport, EngineError>> {
        if id == self.private.workspace().id
            && self.a_mount_moved()
            && let Err(e) = self.refresh_mounts().await
        {
            tracing::warn!(%e, "following a moved shared folder");
        }
        if !self.mount_intact(id) {
            return None;
        }
        let sync = self.sync_of(id)?;
        Some(sync.sync(changed).await)
    }

    /// Syncs the one workspace `id` (the private one or a mounted shared
    /// folder) until its plan is empty, leaving the others as they are.
    pub async fn sync_workspace(&mut self, id: WorkspaceId) -> Result<SyncReport, AppError> {
        match self.sync_one(id, Changed::Anywhere).await {
            Some(report) => Ok(report?),
            None => Err(AppError::Path(format!(
                "workspace {id} is not synced on this device"
            ))),
        }
    }

    /// Syncs every workspace once (rounds until each plan is empty): the
    /// private one first, then each mount. Paths in the report are from
    /// the synced folder.
    pub async fn sync_round(&mut self) -> Result<SyncReport, EngineError> {
        let private = self.private.workspace().id;
        let mut total = SyncReport {
            converged: true,
            ..SyncReport::default()
        };
        if self.a_mount_moved() {
            self.remount().await?;
        }
        let mut report = self.private.sync(Changed::Anywhere).await;
        if self.watch.take_tripped() {
            self.remount().await?;
            report = self.private.sync(Changed::Anywhere).await;
        }
        absorb(&mut total, report?, &RelPath::root());
        // A round of the private workspace may have moved a mount's parent.
        if self.placement_changed() {
            self.remount().await?;
        }
        let ids: Vec<WorkspaceId> = self.mounts.keys().copied().collect();
        for id in ids {
            let Some(result) = self.sync_one(id, Changed::Anywhere).await else {
                continue;
            };
            let path = self.mounts.get(&id).map(|m| m.path().clone());
            absorb(&mut total, result?, &path.unwrap_or_default());
        }
        debug_assert!(self.sync_of(private).is_some());
        for (id, why) in &self.paused {
            total.not_synced.push(format!("shared folder {id}: {why}"));
        }
        total.not_synced.extend(self.problems.iter().cloned());
        Ok(total)
    }

    /// Re-reads the workspaces and mounts them (for a sync that found the
    /// list changed).
    async fn remount(&mut self) -> Result<(), EngineError> {
        self.refresh_mounts().await.map_err(|e| match e {
            AppError::Engine(e) => e,
            AppError::Service { doing, source } => EngineError::Remote { doing, source },
            other => EngineError::Remote {
                doing: "mounting shared folders".into(),
                source: Error::new(ErrorKind::Unavailable, other.to_string()),
            },
        })
    }

    /// Whether the private tree now places a mount elsewhere than it is.
    fn placement_changed(&self) -> bool {
        let (placed, _) = mounts::place(&self.list, self.private.state());
        self.mounts
            .iter()
            .any(|(id, m)| placed.get(id) != Some(m.path()))
    }

    /// Syncs until nothing is left to do: rounds are repeated (with
    /// backoff) while they make progress or fail transiently, up to
    /// `attempts`. Names the server refuses do not count as failure (they
    /// are in the report's `refused`).
    pub async fn sync_until_done(&mut self) -> Result<SyncReport, AppError> {
        let mut delays = self.options.retry().delays();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut failed = false;
            let why = match self.sync_round().await {
                Ok(report) if report.converged => return Ok(report),
                Ok(report) => {
                    let mut left = report.skipped.clone();
                    left.sort();
                    left.dedup();
                    left.join("; ")
                }
                Err(e) if e.is_transient() => {
                    failed = true;
                    e.to_string()
                }
                Err(e) => return Err(e.into()),
            };
            let Some(delay) = delays.next().filter(|_| attempt < self.options.attempts) else {
                return Err(AppError::Incomplete {
                    attempts: attempt,
                    left: why,
                });
            };
            tracing::info!(attempt, %why, "sync not finished; retrying");
            tokio::time::sleep(delay).await;
            // What failed may be a mount that must be opened again (new
            // keys of an end-to-end encrypted shared folder, say).
            if failed && let Err(e) = self.refresh_mounts().await {
                tracing::warn!(%e, "re-reading the shared folders");
            }
        }
    }

    /// Runs the daemon until `shutdown` completes: syncs every workspace
    /// at start (offline edits), then each on changes in its folder,
    /// notifications about it from other devices, every periodic rescan
    /// and every retry after a transient failure; mounts and detaches
    /// shared folders as the account joins and leaves them. Fails only on
    /// what retrying cannot fix (the session refused, the folder gone,
    /// another daemon running).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
        let socket_path = self.profile.home().join(STATUS_SOCKET);
        let ctx = SocketContext {
            routes: self.routes(),
            feed: self.shared.feed.clone(),
            pause: Some(self.pause.clone()),
            actions: Some(Arc::new(status::actions::Actions {
                server_url: self.profile.config.server_url.clone(),
                home: self.profile.home().to_path_buf(),
                user: self.me,
                conn: Arc::clone(self.private.conn()),
            })),
        };
        let server = status::serve(&socket_path, ctx)
            .await
            .map_err(AppError::Socket)?;
        let feed = tokio::spawn(self.shared.feed.clone().follow(self.routes()));
        let _cleanup = SocketGuard {
            path: socket_path,
            task: server,
            feed,
        };
        let mut pause = self.pause.watch();
        if self.pause.now().paused {
            tracing::info!("syncing is paused; `stacksync resume` syncs again");
        }
        let folder = self.profile.config.folder.clone();
        let mut watcher = Watcher::start(&folder, self.options.watch)?;
        let mut notes: Option<NotificationStream> = None;
        let mut reopen_notes = Some(Instant::now());
        let private = self.private.workspace().id;
        let mut schedule = Schedule::new(self.options.retry());
        schedule.add(private);
        for id in self.mounts.keys() {
            schedule.add(*id);
        }
        // When to read the account's workspaces again (after a
        // notification about them, or a failed attempt).
        let mut refresh_at: Option<Instant> = None;
        let mut refresh_delays: Option<Delays> = None;
        tokio::pin!(shutdown);
        loop {
            let now = Instant::now();
            if let Some(at) = reopen_notes
                && at <= now
            {
                reopen_notes = None;
                match self.conn.notifications().await {
                    Ok(stream) => {
                        notes = Some(stream);
                        // Whatever happened on the server while no stream
                        // was open.
                        schedule.note_all(&Changed::Paths(BTreeSet::new()));
                        refresh_at = Some(now);
                    }
                    Err(e) if e.kind == ErrorKind::Unauthenticated => {
                        return Err(AppError::Service {
                            doing: "opening push notifications".into(),
                            source: e,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(%e, "push notifications unavailable; retrying");
                        reopen_notes = Some(now + self.options.max_backoff);
                    }
                }
            }
            if refresh_at.is_some_and(|at| at <= now) {
                refresh_at = None;
                match self.refresh_mounts().await {
                    Ok(()) => {
                        refresh_delays = None;
                        self.follow_mounts(&mut schedule);
                    }
                    Err(e) if is_unauthenticated(&e) => return Err(e),
                    Err(e) => {
                        tracing::warn!(%e, "reading the account's shared folders; retrying");
                        let delay = refresh_delays
                            .get_or_insert_with(|| self.options.retry().delays())
                            .next()
                            .unwrap_or(self.options.max_backoff);
                        refresh_at = Some(now + delay);
                    }
                }
                continue;
            }
            // While paused nothing syncs; what the watcher and the server
            // note waits in the schedule until resumed.
            let paused = self.pause.now();
            let due = if paused.paused {
                None
            } else {
                schedule.next(now)
            };
            if let Some((id, changed)) = due {
                if !folder.is_dir() {
                    return Err(AppError::Path(format!(
                        "the synced folder {} is gone; stopping rather than deleting everything on the server",
                        folder.display()
                    )));
                }
                // Stopping mid-round is safe: the engine is crash-safe at
                // every step, and dropping its future is a gentler crash.
                let result = tokio::select! {
                    r = self.sync_one(id, changed.clone()) => r,
                    () = &mut shutdown => return Ok(()),
                    // Paused mid-round: the round stops (as safe as a
                    // crash), its changes wait for the resume.
                    _ = pause.wait_for(|p| p.paused) => {
                        tracing::info!("syncing paused");
                        if let Some(m) = self.sync_of(id) {
                            m.abandoned();
                        }
                        schedule.note(id, changed);
                        continue;
                    }
                };
                let Some(result) = result else {
                    // Paused or gone meanwhile.
                    schedule.remove(id);
                    continue;
                };
                let outcome = match &result {
                    Ok(report) if report.converged => Outcome::Done,
                    Ok(report) => {
                        tracing::info!(left = %report.skipped.join("; "), "sync round left work; retrying");
                        Outcome::Retry
                    }
                    Err(e) if e.is_transient() => {
                        tracing::warn!(%e, "sync failed; retrying");
                        Outcome::Retry
                    }
                    Err(e) => {
                        if matches!(e, EngineError::Remote { source, .. } if source.kind == ErrorKind::Unauthenticated)
                        {
                            self.shared.desktop.notify(
                                NoticeKind::Errors,
                                "StackSync stopped",
                                "The server no longer accepts this device's session. Run `stacksync login`.",
                            );
                            return Err(result.expect_err("matched an error").into());
                        }
                        // Not transient, but a daemon keeps going: the next
                        // change or rescan tries again, slowly.
                        tracing::error!(%e, "sync failed");
                        self.shared.desktop.notify(
                            NoticeKind::Errors,
                            "StackSync: sync failed",
                            &e.to_string(),
                        );
                        Outcome::Slow
                    }
                };
                schedule.finished(id, changed, outcome, Instant::now());
                if id == private {
                    if self.watch.take_tripped() {
                        // Mount first, then read the feed on at once.
                        refresh_at = Some(Instant::now());
                        schedule.hurry(private);
                    } else if self.placement_changed() {
                        refresh_at = Some(Instant::now());
                    }
                }
                continue;
            }
            let retry_at = if paused.paused {
                None
            } else {
                schedule.wake_at()
            };
            let pause_ends = paused.until.map(|until| {
                let left = until.saturating_sub(crate::pause::now_ms());
                Instant::now() + Duration::from_millis(u64::try_from(left).unwrap_or(0))
            });
            let wake = [retry_at, reopen_notes, refresh_at, pause_ends]
                .into_iter()
                .flatten()
                .min();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let next_note = async {
                match notes.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            };
            let boards: Vec<(WorkspaceId, StatusBoard)> = std::iter::once(&self.private)
                .chain(self.mounts.values())
                .map(|m| (m.workspace().id, m.board()))
                .collect();
            let copy_wanted = futures::future::select_all(boards.iter().map(|(id, b)| {
                Box::pin(async move {
                    b.copy_wanted().await;
                    *id
                })
            }));
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                changed = pause.changed() => {
                    if changed.is_ok() {
                        let now = *pause.borrow_and_update();
                        tracing::info!(paused = now.paused, until = ?now.until, "pause changed");
                        self.shared.feed.state_changed();
                    }
                }
                (id, _, _) = copy_wanted => {
                    if let Some(m) = self.sync_of(id) {
                        m.copy_state();
                    }
                }
                event = watcher.next() => match event {
                    Some(WatchEvent::Changed { paths: Some(paths), .. }) => {
                        for (id, changed) in self.route(&paths) {
                            schedule.note(id, changed);
                        }
                        self.shared.feed.poke();
                    }
                    Some(_) => {
                        schedule.note_all(&Changed::Anywhere);
                        self.shared.feed.poke();
                    }
                    None => return Err(AppError::Path("the folder watcher stopped".into())),
                },
                note = next_note => match note {
                    Some(Ok(n)) => self.on_notification(n, &mut schedule, &mut refresh_at),
                    Some(Err(e)) => {
                        if e.kind == ErrorKind::Unauthenticated {
                            return Err(AppError::Service { doing: "receiving push notifications".into(), source: e });
                        }
                        tracing::warn!(%e, "push notification stream failed; reopening");
                        notes = None;
                        reopen_notes = Some(Instant::now() + self.options.backoff);
                    }
                    None => {
                        notes = None;
                        reopen_notes = Some(Instant::now() + self.options.backoff);
                    }
                },
                () = sleep => {}
            }
        }
    }

    /// Makes the schedule keep exactly the mounted workspaces (new ones
    /// sync everything at once).
    fn follow_mounts(&self, schedule: &mut Schedule<WorkspaceId>) {
        let private = self.private.workspace().id;
        for id in self.mounts.keys() {
            if !schedule.contains(*id) {
                schedule.add(*id);
            }
        }
        // The private tree changes its exclusions: it looks again too.
        schedule.note(private, Changed::Paths(BTreeSet::new()));
        for id in self.list.iter().map(|w| w.id) {
            if id != private && !self.mounts.contains_key(&id) {
                schedule.remove(id);
            }
        }
        let gone: Vec<WorkspaceId> = self
            .table
            .detached
            .iter()
            .map(|d| d.workspace)
            .chain(self.paused.keys().copied())
            .collect();
        for id in gone {
            schedule.remove(id);
        }
    }

    /// Reacts to one push notification.
    fn on_notification(
        &self,
        note: Notification,
        schedule: &mut Schedule<WorkspaceId>,
        refresh_at: &mut Option<Instant>,
    ) {
        let now = Instant::now();
        match note {
            Notification::Commit {
                workspace, device, ..
            } => {
                let ours = workspace == self.private.workspace().id
                    || self.mounts.contains_key(&workspace);
                if ours && device != self.profile.config.device_id {
                    schedule.note(workspace, Changed::Paths(BTreeSet::new()));
                }
            }
            Notification::Resync => {
                schedule.note_all(&Changed::Paths(BTreeSet::new()));
                *refresh_at = Some(now);
            }
            Notification::ShareProposal { folder_name, .. } => {
                tracing::info!(folder = %folder_name, "a folder was shared with this account");
                self.shared.desktop.notify(
                    NoticeKind::Invitations,
                    "StackSync: a folder was shared with you",
                    &format!(
                        "\u{201c}{folder_name}\u{201d} is waiting for your answer (`stacksync invitations`)."
                    ),
                );
            }
            // A new key statement: a member waiting for the key mounts
            // the folder, a mounted one is reopened with the new keys
            // (`stale_keys`).
            Notification::WorkspaceJoined { .. }
            | Notification::Unshared { .. }
            | Notification::WorkspaceUpdated { .. }
            | Notification::KeysChanged { .. } => *refresh_at = Some(now),
        }
    }

    /// Which workspace each of the absolute `paths` the watcher named
    /// belongs to, relative to that workspace's folder. Paths in detached
    /// folders belong to none; a path that cannot be one (outside the
    /// folder, or a name StackSync does not take) is looked at through its
    /// folder.
    fn route(&self, paths: &BTreeSet<PathBuf>) -> BTreeMap<WorkspaceId, Changed> {
        let folder = &self.profile.config.folder;
        let private = self.private.workspace().id;
        let mut out: BTreeMap<WorkspaceId, Changed> = BTreeMap::new();
        for path in paths {
            let rel = status::relative_to_folder(folder, path).or_else(|_| {
                let parent = path.parent().ok_or(())?;
                status::relative_to_folder(folder, parent).map_err(|_| ())
            });
            let Ok(rel) = rel else {
                for id in std::iter::once(private).chain(self.mounts.keys().copied()) {
                    out.insert(id, Changed::Anywhere);
                }
                continue;
            };
            if self.table.detached_at(&rel).is_some() {
                continue;
            }
            let (id, rest) = match self.table.mount_of(&rel) {
                Some((m, rest)) if self.mounts.contains_key(&m.workspace) => (m.workspace, rest),
                Some(_) => continue,
                None => (private, rel),
            };
            let more = Changed::Paths(BTreeSet::from([rest]));
            let merged = crate::schedule::merge(out.remove(&id), more);
            out.insert(id, merged);
        }
        out
    }

    /// The workspace holding `path` (relative to the synced folder) and
    /// the path relative to its folder.
    fn holder(&mut self, path: &RelPath) -> Result<(&mut WorkspaceSync, RelPath), AppError> {
        if let Some(d) = self.table.detached_at(path) {
            return Err(AppError::Path(format!(
                "{path} is in {}, a folder that is no longer shared with you (kept here, not synced)",
                d.path
            )));
        }
        match self.table.mount_of(path) {
            Some((m, rest)) => {
                let id = m.workspace;
                let sync = self.mounts.get_mut(&id).ok_or_else(|| {
                    AppError::Path(format!(
                        "{path} is in a shared folder that is not synced now: {}",
                        self.paused
                            .get(&id)
                            .cloned()
                            .unwrap_or_else(|| "it could not be mounted".into())
                    ))
                })?;
                Ok((sync, rest))
            }
            None => Ok((&mut self.private, path.clone())),
        }
    }

    /// The workspace holding `path` (relative to the synced folder):
    /// its id, whether it is a mount, and the mount point.
    pub fn workspace_at(&self, path: &RelPath) -> Option<(Workspace, RelPath)> {
        match self.table.mount_of(path) {
            Some((m, _)) => self
                .mounts
                .get(&m.workspace)
                .map(|s| (s.workspace().clone(), s.path().clone())),
            None => Some((self.private.workspace().clone(), RelPath::root())),
        }
    }

    /// The private workspace's state (to find an item by path).
    pub fn private_state(&self) -> &stacksync_engine::SyncState {
        self.private.state()
    }

    /// The folder-relative path of a path given by the user.
    pub fn relative(&self, path: &Path) -> Result<RelPath, AppError> {
        status::relative_to_folder(&self.profile.config.folder, path)
            .map_err(|e| AppError::Path(e.to_string()))
    }

    /// The item at `path`: the live one, else the most recently deleted
    /// one that had this path; and its workspace.
    async fn item_at(&mut self, path: &RelPath) -> Result<(WorkspaceId, ItemMeta), AppError> {
        let (sync, rel) = self.holder(path)?;
        sync.engine().pull().await?;
        let ws = sync.workspace().id;
        let tree = &sync.state().remote;
        let mut best: Option<&ItemMeta> = None;
        for meta in tree.iter() {
            if tree.path_including_deleted(meta.id).as_ref() != Some(&rel) {
                continue;
            }
            let live = tree.live(meta.id).is_some();
            let better = match best {
                None => true,
                Some(b) => {
                    let b_live = tree.live(b.id).is_some();
                    (live && !b_live) || (live == b_live && meta.revision > b.revision)
                }
            };
            if better {
                best = Some(meta);
            }
        }
        best.cloned().map(|m| (ws, m)).ok_or_else(|| {
            AppError::Path(format!("{path} is not known to the server (never synced?)"))
        })
    }

    /// Every stored version of the item at `path`, oldest first.
    pub async fn versions(&mut self, path: &RelPath) -> Result<Vec<ItemMeta>, AppError> {
        let (workspace, item) = self.item_at(path).await?;
        let request = Request::GetVersions {
            workspace,
            item: item.id,
        };
        match self
            .conn
            .rpc(request)
            .await
            .map_err(AppError::service(format!("listing versions of {path}")))?
        {
            Reply::Versions { mut versions } => {
                if let Some(sealed) = self.holder(path)?.0.sealed() {
                    versions = sealed
                        .open_history(versions)
                        .map_err(AppError::service(format!("opening versions of {path}")))?;
                }
                versions.sort_by_key(|v| v.version);
                Ok(versions)
            }
            other => Err(AppError::Service {
                doing: "listing versions".into(),
                source: unexpected("get_versions", other),
            }),
        }
    }

    /// Makes version `version` of the item at `path` its latest again
    /// (also undeletes), then syncs so the folder has it.
    pub async fn restore(&mut self, path: &RelPath, version: u64) -> Result<ItemMeta, AppError> {
        let (workspace, item) = self.item_at(path).await?;
        if let Some(sealed) = self.holder(path)?.0.sealed().cloned() {
            // End to end encrypted: the server cannot write the record of
            // a restored version; this device seals it.
            let old = self
                .versions(path)
                .await?
                .into_iter()
                .find(|v| v.version == version)
                .ok_or_else(|| AppError::Path(format!("{path} has no version {version}")))?;
            let meta = sealed
                .restore(&item, &old)
                .await
                .map_err(AppError::service(format!(
                    "restoring {path} to version {version}"
                )))?;
            self.sync_until_done().await?;
            return Ok(meta);
        }
        let request = Request::Restore {
            workspace,
            item: item.id,
            version,
            device: self.profile.config.device_id,
        };
        let meta = match self
            .conn
            .rpc(request)
            .await
            .map_err(AppError::service(format!(
                "restoring {path} to version {version}"
            )))? {
            Reply::Restored { meta } => meta,
            other => {
                return Err(AppError::Service {
                    doing: "restoring".into(),
                    source: unexpected("restore", other),
                });
            }
        };
        self.sync_until_done().await?;
        Ok(meta)
    }

    /// The synced folder.
    pub fn folder(&self) -> &Path {
        &self.profile.config.folder
    }

    /// A status report computed here (no daemon involved).
    pub async fn status(&self, path: &RelPath) -> Result<status::StatusReport, AppError> {
        for m in std::iter::once(&self.private).chain(self.mounts.values()) {
            m.copy_state();
        }
        self.publish_routes();
        self.routes
            .get()
            .report(path, false, Duration::ZERO)
            .await
            .map_err(|e| AppError::Path(e.to_string()))
    }
}

/// The owner's side of a first acceptance: the server moved the folder at
/// `at` out of the private workspace into `ws` with its items' ids and
/// versions. The new workspace's engine starts from what the private one
/// agreed on for them (same ids, the folder's children at its top), so an
/// edit the owner made meanwhile is a new version of the same file, not a
/// conflict with it, and nothing is transferred for what did not change.
/// Only into a workspace this device never synced.
async fn seed_hand_over(
    profile: &Profile,
    private: &stacksync_engine::SyncState,
    at: &RelPath,
    ws: WorkspaceId,
) -> Result<(), StateDbError> {
    let Some(top) = private
        .synced
        .iter()
        .find(|(id, s)| s.is_folder && private.synced_path(**id).as_ref() == Some(at))
        .map(|(id, _)| *id)
    else {
        return Ok(());
    };
    let store = SqliteStateStore::open(&profile.state_db_path(), ws).await?;
    let before = store.load_state().await?;
    if before.is_some_and(|s| s.cursor > 0 || !s.synced.is_empty()) {
        store.close().await;
        return Ok(());
    }
    let mut state = stacksync_engine::SyncState::default();
    for (id, item) in private.synced.iter() {
        if *id == top || !private.synced_path(*id).is_some_and(|p| p.starts_with(at)) {
            continue;
        }
        let mut item = item.clone();
        if item.parent == Some(top) {
            item.parent = None;
        }
        state.synced.insert(*id, item);
    }
    let saved = store.save_state(&state).await.map(drop);
    store.close().await;
    saved
}

/// The inode of the folder at `path` (`None`: no folder there).
fn dir_inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| m.ino())
}

/// The folder under `root` whose inode is `ino` (symbolic links are not
/// followed).
fn find_dir(root: &Path, ino: u64) -> Option<PathBuf> {
    use std::os::unix::fs::DirEntryExt;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.ino() == ino {
                return Some(entry.path());
            }
            stack.push(entry.path());
        }
    }
    None
}

/// The id of the private folder synced at `path`.
fn private_folder_at(
    state: &stacksync_engine::SyncState,
    path: &RelPath,
) -> Option<stacksync_proto::ItemId> {
    state
        .synced
        .iter()
        .find(|(id, s)| s.is_folder && state.synced_path(**id).as_ref() == Some(path))
        .map(|(id, _)| *id)
}

fn is_unauthenticated(e: &AppError) -> bool {
    match e {
        AppError::Service { source, .. } => source.kind == ErrorKind::Unauthenticated,
        AppError::Engine(EngineError::Remote { source, .. }) => {
            source.kind == ErrorKind::Unauthenticated
        }
        _ => false,
    }
}

/// Whether `dir` is a folder with nothing in it (or cannot be listed).
fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

/// Adds the report of the workspace at `at` to `total`.
fn absorb(total: &mut SyncReport, report: SyncReport, at: &RelPath) {
    let prefix = |line: String| {
        if at.is_root() {
            line
        } else {
            format!("{at}/{line}")
        }
    };
    total.rounds += report.rounds;
    total.converged &= report.converged;
    total.applied += report.applied;
    total.conflicts += report.conflicts;
    total.skipped.extend(report.skipped.into_iter().map(prefix));
    total
        .not_synced
        .extend(report.not_synced.into_iter().map(prefix));
    total.refused.extend(
        report
            .refused
            .into_iter()
            .map(|(p, why)| (mounts::under(at, &p), why)),
    );
    total.composed.extend(
        report
            .composed
            .into_iter()
            .map(|(p, raw)| (mounts::under(at, &p), raw)),
    );
}

/// The shared folders of `table` as `status` shows them.
fn shared_folders(table: &MountTable, paused: &BTreeMap<WorkspaceId, String>) -> Vec<SharedFolder> {
    let mut out: Vec<SharedFolder> = table
        .mounts
        .iter()
        .map(|m| SharedFolder {
            path: m.path.clone(),
            encryption: m.encryption.as_str().into(),
            owner: m.owner,
            read_only: m.read_only,
            members: m.members.clone(),
            state: if paused.contains_key(&m.workspace) {
                "paused".into()
            } else {
                "shared".into()
            },
            detail: paused.get(&m.workspace).cloned(),
        })
        .collect();
    out.extend(table.waiting.iter().map(|w| SharedFolder {
        path: w.path.clone(),
        encryption: String::new(),
        owner: false,
        read_only: false,
        members: Vec::new(),
        state: "paused".into(),
        detail: Some(w.reason.clone()),
    }));
    out.extend(table.detached.iter().map(|d| SharedFolder {
        path: d.path.clone(),
        encryption: String::new(),
        owner: false,
        read_only: false,
        members: Vec::new(),
        state: "detached".into(),
        detail: Some(
            "no longer shared with you: kept on this device, not synced. Move it elsewhere in the synced folder to keep it as your own files, or delete it"
                .into(),
        ),
    }));
    out
}

/// Computes a status without any connection: from the state database and
/// the mount table, for when no daemon runs and the server may be
/// unreachable.
pub async fn offline_status(
    profile: &Profile,
    path: &Path,
) -> Result<status::StatusReport, AppError> {
    let folder = &profile.config.folder;
    let fs = Arc::new(LocalFs::open(folder)?);
    let rel =
        status::relative_to_folder(folder, path).map_err(|e| AppError::Path(e.to_string()))?;
    let table = MountTable::load(profile.home())
        .map_err(|e| AppError::Profile(ProfileError::Invalid(format!("the mount table: {e}"))))?;
    let mut routes = vec![Route {
        path: RelPath::root(),
        fs,
        board: offline_board(profile, profile.config.workspace).await?,
        workspace: None,
        sealed: None,
    }];
    for m in &table.mounts {
        let Ok(at) = RelPath::parse(&m.path) else {
            continue;
        };
        let Ok(fs) = LocalFs::open(mounts::absolute(folder, &at)) else {
            continue;
        };
        routes.push(Route {
            path: at,
            fs: Arc::new(fs),
            board: offline_board(profile, Some(m.workspace)).await?,
            workspace: None,
            sealed: None,
        });
    }
    let folders = Folders {
        folder: folder.clone(),
        encryption: table.private_encryption,
        routes,
        excluded: table.excluded(),
        shared: shared_folders(&table, &BTreeMap::new()),
        pause: Some(PauseSwitch::open(profile.home())),
    };
    folders
        .report(&rel, false, Duration::ZERO)
        .await
        .map_err(|e| AppError::Path(e.to_string()))
}

/// A board holding the saved state of workspace `ws`.
async fn offline_board(
    profile: &Profile,
    ws: Option<WorkspaceId>,
) -> Result<StatusBoard, AppError> {
    let state = match ws {
        Some(ws) if profile.state_db_path().exists() => {
            let store = SqliteStateStore::open(&profile.state_db_path(), ws).await?;
            let state = store.load_state().await?;
            store.close().await;
            state
        }
        _ => None,
    };
    let board = StatusBoard::default();
    board.copy_state(&state.unwrap_or_default());
    Ok(board)
}

/// Removes the socket file and stops its server when the daemon ends.
struct SocketGuard {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
    feed: tokio::task::JoinHandle<()>,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.task.abort();
        self.feed.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Says what the owner's device changed in a shared folder's key list,
/// and who still waits for the key.
fn log_key_change(ws: &Workspace, change: &e2ee::keys::KeyListChange) {
    if !change.added.is_empty() || !change.removed.is_empty() {
        tracing::info!(
            workspace = %ws.id,
            epoch = change.epoch,
            added = ?change.added,
            removed = ?change.removed,
            "key list of the shared folder updated"
        );
    }
    for (email, why) in &change.waiting {
        tracing::warn!(workspace = %ws.id, %email, "not given the shared folder's key: {why}");
    }
}
