//! The running client: one synced folder kept in step with the account's
//! private workspace, either until nothing is left to do
//! ([`SyncClient::sync_until_done`], `stacksync sync --once`) or for as long
//! as it runs ([`SyncClient::run`], the daemon): the folder watcher, push
//! notifications and a periodic rescan each start a sync round; failures
//! back off and retry; the status socket answers per-file questions.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use stacksync_content::ChunkCodec;
use stacksync_engine::io::{Clock, RandomIds, SystemClock};
use stacksync_engine::{Changed, Engine, EngineConfig, EngineError, EngineIo, RelPath, SyncReport};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{
    DeviceId, EncryptionMode, Error, ErrorKind, ItemMeta, Notification, Workspace,
};
use tokio::time::Instant;

use crate::connection::{Connection, NotificationStream, WorkspaceRemote, unexpected, workspaces};
use crate::desktop::{DesktopNotifier, Urgency};
use crate::localfs::{LocalFs, OpenFolderError};
use crate::profile::{Profile, ProfileError};
use crate::state::{SqliteStateStore, StateDbError};
use crate::status::{self, DaemonState, Snapshot, StatusBoard, StatusView};
use crate::transfer::{
    Activity, BaseCache, ChunkedContentStore, Deadlines, JournalError, TransferConfig,
    TransferError, TransferStats, UploadJournal, WatchedConnection, woken_is_progress,
};
use crate::watcher::{WatchConfig, WatchError, WatchEvent, Watcher};

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
    /// First retry delay; doubles up to `max_backoff`.
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
    /// The workspace is end-to-end encrypted, which this client version does
    /// not sync yet.
    #[error("workspace {0} is client-side encrypted; this client cannot sync it yet")]
    Encrypted(String),
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

impl AppError {
    fn service(doing: impl Into<String>) -> impl FnOnce(Error) -> AppError {
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

/// One synced folder and the private workspace it mirrors.
pub struct SyncClient {
    profile: Profile,
    conn: Arc<dyn Connection>,
    workspace: Workspace,
    fs: Arc<LocalFs>,
    engine: Engine,
    content: ChunkedContentStore,
    board: StatusBoard,
    desktop: DesktopNotifier,
    options: ClientOptions,
    /// Progress of RPCs, transfers and file-system calls, for the stall
    /// watchdog of [`SyncClient::sync_round`].
    activity: Activity,
}

impl SyncClient {
    /// Opens the folder, the state database and the account's private
    /// workspace through `conn`.
    pub async fn open(
        profile: Profile,
        conn: Arc<dyn Connection>,
        options: ClientOptions,
    ) -> Result<SyncClient, AppError> {
        let activity = Activity::default();
        let conn: Arc<dyn Connection> = Arc::new(WatchedConnection::new(
            conn,
            activity.clone(),
            options.deadlines,
        ));
        let fs = Arc::new(LocalFs::open(&profile.config.folder)?.watched_by(activity.clone()));
        let account = match conn
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
        let workspace = workspaces(conn.as_ref())
            .await
            .map_err(AppError::service("listing workspaces"))?
            .into_iter()
            .find(|w| !w.is_shared && w.owner == account.id)
            .ok_or(AppError::NoWorkspace)?;
        match profile.config.workspace {
            Some(known) if known != workspace.id => {
                return Err(AppError::Path(format!(
                    "this profile syncs workspace {known}, but the server now names {} as the account's private workspace; run `stacksync setup --force` to start over with this server",
                    workspace.id
                )));
            }
            Some(_) => {}
            None => {
                let mut profile = profile.clone();
                profile.config.workspace = Some(workspace.id);
                profile.save()?;
            }
        }
        let mut profile = profile;
        profile.config.workspace = Some(workspace.id);
        let codec = match workspace.encryption {
            EncryptionMode::Plain | EncryptionMode::ServerSide => ChunkCodec::compressed(),
            EncryptionMode::ClientSide => return Err(AppError::Encrypted(workspace.name.clone())),
        };
        let transport = conn
            .chunks(&workspace)
            .await
            .map_err(AppError::service("opening the chunk store"))?;
        let journal = UploadJournal::open(&profile.uploads_db_path(), workspace.id).await?;
        let mut content =
            ChunkedContentStore::with_journal(codec, transport, options.transfer, Some(journal))?
                .watched_by(activity.clone());
        if options.transfer.base_cache_bytes > 0 {
            let (dir, budget) = (
                profile.bases_dir(workspace.id),
                options.transfer.base_cache_bytes,
            );
            match tokio::task::spawn_blocking(move || BaseCache::open(&dir, budget)).await {
                Ok(Ok(cache)) => content = content.with_base_cache(Arc::new(cache)),
                // Only a saving is lost: every chunk is sent whole.
                Ok(Err(e)) => tracing::warn!("base cache not opened: {e}"),
                Err(e) => tracing::warn!("base cache not opened: {e}"),
            }
        }
        let state = SqliteStateStore::open(&profile.state_db_path(), workspace.id)
            .await?
            .watched_by(activity.clone());
        let device = profile.config.device_id;
        let io = EngineIo {
            fs: Arc::clone(&fs) as Arc<dyn stacksync_engine::Fs>,
            remote: Arc::new(WorkspaceRemote::new(
                Arc::clone(&conn),
                workspace.id,
                device,
            )),
            content: Arc::new(content.clone()),
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
            store: Arc::new(state),
        };
        let config = EngineConfig {
            device_name: profile.config.device_name.clone(),
            ..EngineConfig::default()
        };
        let engine = Engine::open(io, config).await?;
        let board = StatusBoard::default();
        board.mark_stale();
        let desktop = if options.desktop {
            DesktopNotifier::detect()
        } else {
            DesktopNotifier::disabled()
        };
        Ok(SyncClient {
            profile,
            conn,
            workspace,
            fs,
            engine,
            content,
            board,
            desktop,
            options,
            activity,
        })
    }

    /// The workspace this folder mirrors.
    pub fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    /// Bytes and chunks moved so far.
    pub fn stats(&self) -> &TransferStats {
        self.content.stats()
    }

    /// A handle on the transfer counters that outlives borrows of `self`
    /// (for a progress display on another task).
    pub fn content(&self) -> ChunkedContentStore {
        self.content.clone()
    }

    /// The status board the socket serves from.
    pub fn board(&self) -> StatusBoard {
        self.board.clone()
    }

    fn device(&self) -> DeviceId {
        self.profile.config.device_id
    }

    fn publish(&self, busy: bool, result: Option<&Result<SyncReport, EngineError>>) {
        // The state changes only in rounds; the board copies it when a
        // query wants it (see `StatusBoard`).
        if result.is_some() {
            self.board.mark_stale();
        }
        let (up, down) = (
            self.stats().bytes_uploaded.load(Ordering::Relaxed),
            self.stats().bytes_downloaded.load(Ordering::Relaxed),
        );
        self.board.update_daemon(|d| {
            d.busy = busy;
            d.bytes_up = up;
            d.bytes_down = down;
            match result {
                Some(Ok(r)) if r.converged => {
                    d.last_error = None;
                    d.last_synced = Some(SystemClock.now_millis());
                }
                Some(Ok(r)) => d.last_error = Some(r.skipped.join("; ")),
                Some(Err(e)) => d.last_error = Some(e.to_string()),
                None => {}
            }
        });
    }

    /// One engine sync (rounds until its plan is empty), with the status
    /// board and desktop notifications kept up to date.
    pub async fn sync_round(&mut self) -> Result<SyncReport, EngineError> {
        self.sync_round_changed(Changed::Anywhere).await
    }

    /// [`SyncClient::sync_round`] after changes at known places (see
    /// [`Changed`]).
    pub async fn sync_round_changed(
        &mut self,
        changed: Changed,
    ) -> Result<SyncReport, EngineError> {
        let refused_before = self.engine.state().refused.len();
        self.publish(true, None);
        let result = self.watched_sync(changed).await;
        self.publish(false, Some(&result));
        if let Ok(report) = &result {
            if report.conflicts > 0 {
                self.desktop.notify(
                    Urgency::Critical,
                    "StackSync: conflicting edits",
                    &format!(
                        "{} file(s) were changed on two devices at once; your version is kept as a conflicted copy.",
                        report.conflicts
                    ),
                );
            }
            if report.refused.len() > refused_before {
                let names: Vec<String> =
                    report.refused.iter().map(|(p, _)| p.to_string()).collect();
                self.desktop.notify(
                    Urgency::Critical,
                    "StackSync: some names cannot be synced",
                    &names.join(", "),
                );
            }
        }
        result
    }

    /// One engine sync under the stall watchdog: a round during which
    /// nothing progressed (no RPC answered, no transfer or file-system call
    /// finished) for [`Deadlines::stall`] is reported (a warning naming
    /// what it waits on, and the status's error) and abandoned with a
    /// transient error, so the caller's retry starts afresh. Dropping the
    /// engine's future mid-round is safe: it is crash-safe at every step.
    async fn watched_sync(&mut self, changed: Changed) -> Result<SyncReport, EngineError> {
        let stall = self.options.deadlines.stall;
        let activity = self.activity.clone();
        activity.touch();
        let watchdog = async {
            // Checked a few times per period, so a stall is reported at
            // most a quarter of a period late.
            let mut tick = tokio::time::interval((stall / 4).max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Some(why) = activity.stalled(stall) {
                    return why;
                }
            }
        };
        // A round that nothing wakes is waiting on something that will never
        // come: its wake-ups (and long polls, pure computation such as
        // planning) count as progress.
        let sync = woken_is_progress(&activity, self.engine.sync_changed(changed));
        tokio::select! {
            biased;
            result = sync => result,
            why = watchdog => {
                tracing::warn!("sync round abandoned: {why}");
                Err(EngineError::Remote {
                    doing: "syncing".into(),
                    source: Error::new(ErrorKind::Unavailable, why),
                })
            }
        }
    }

    /// Syncs until nothing is left to do: rounds are repeated (with
    /// backoff) while they make progress or fail transiently, up to
    /// `attempts`. Names the server refuses do not count as failure (they
    /// are in the report's `refused`).
    pub async fn sync_until_done(&mut self) -> Result<SyncReport, AppError> {
        let mut delay = self.options.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let why = match self.sync_round().await {
                Ok(report) if report.converged => return Ok(report),
                Ok(report) => {
                    let mut left = report.skipped.clone();
                    left.sort();
                    left.dedup();
                    left.join("; ")
                }
                Err(e) if e.is_transient() => e.to_string(),
                Err(e) => return Err(e.into()),
            };
            if attempt >= self.options.attempts {
                return Err(AppError::Incomplete {
                    attempts: attempt,
                    left: why,
                });
            }
            tracing::info!(attempt, %why, "sync not finished; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.options.max_backoff);
        }
    }

    /// Runs the daemon until `shutdown` completes: syncs at start (offline
    /// edits), then on every folder change, every notification about this
    /// workspace from another device, every periodic rescan and every
    /// retry after a transient failure. Fails only on what retrying cannot
    /// fix (the session refused, the folder gone, another daemon running).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
        let socket_path = self.profile.home().join(STATUS_SOCKET);
        let server = status::serve(&socket_path, Arc::clone(&self.fs), self.board())
            .await
            .map_err(AppError::Socket)?;
        let _cleanup = SocketGuard {
            path: socket_path,
            task: server,
        };
        let mut watcher = Watcher::start(&self.profile.config.folder, self.options.watch)?;
        let mut notes: Option<NotificationStream> = None;
        let mut reopen_notes = Some(Instant::now());
        // What the next round looks at: everything at start (offline
        // edits), then what the watcher names; `None` when nothing is due.
        let mut pending: Option<Changed> = Some(Changed::Anywhere);
        let mut retry_at: Option<Instant> = None;
        let mut delay = self.options.backoff;
        tokio::pin!(shutdown);
        loop {
            if let Some(at) = reopen_notes
                && at <= Instant::now()
            {
                reopen_notes = None;
                match self.conn.notifications().await {
                    Ok(stream) => {
                        notes = Some(stream);
                        // Whatever happened on the server while no stream
                        // was open.
                        merge(&mut pending, Changed::Paths(BTreeSet::new()));
                    }
                    Err(e) if e.kind == ErrorKind::Unauthenticated => {
                        return Err(AppError::Service {
                            doing: "opening push notifications".into(),
                            source: e,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(%e, "push notifications unavailable; retrying");
                        reopen_notes = Some(Instant::now() + self.options.max_backoff);
                    }
                }
            }
            if pending.is_some() && retry_at.is_none_or(|at| at <= Instant::now()) {
                let changed = pending.take().expect("checked just above");
                retry_at = None;
                if !self.profile.config.folder.is_dir() {
                    return Err(AppError::Path(format!(
                        "the synced folder {} is gone; stopping rather than deleting everything on the server",
                        self.profile.config.folder.display()
                    )));
                }
                // Stopping mid-round is safe: the engine is crash-safe at
                // every step, and dropping its future is a gentler crash.
                let result = tokio::select! {
                    r = self.sync_round_changed(changed.clone()) => r,
                    () = &mut shutdown => return Ok(()),
                };
                if !matches!(&result, Ok(r) if r.converged) {
                    // What the round was to look at is still to be looked at.
                    merge(&mut pending, changed);
                }
                match result {
                    Ok(report) if report.converged => delay = self.options.backoff,
                    Ok(report) => {
                        tracing::info!(left = %report.skipped.join("; "), "sync round left work; retrying");
                        retry_at = Some(Instant::now() + delay);
                        delay = (delay * 2).min(self.options.max_backoff);
                    }
                    Err(e) if e.is_transient() => {
                        tracing::warn!(%e, "sync failed; retrying");
                        retry_at = Some(Instant::now() + delay);
                        delay = (delay * 2).min(self.options.max_backoff);
                    }
                    Err(e) => {
                        if matches!(&e, EngineError::Remote { source, .. } if source.kind == ErrorKind::Unauthenticated)
                        {
                            self.desktop.notify(
                                Urgency::Critical,
                                "StackSync stopped",
                                "The server no longer accepts this device's session. Run `stacksync login`.",
                            );
                            return Err(e.into());
                        }
                        // Not transient, but a daemon keeps going: the next
                        // change or rescan tries again, slowly.
                        tracing::error!(%e, "sync failed");
                        self.desktop.notify(
                            Urgency::Critical,
                            "StackSync: sync failed",
                            &e.to_string(),
                        );
                        retry_at = Some(Instant::now() + self.options.max_backoff);
                    }
                }
                continue;
            }
            let retry_sleep = async {
                match (retry_at, reopen_notes) {
                    (Some(a), Some(b)) => tokio::time::sleep_until(a.min(b)).await,
                    (Some(a), None) | (None, Some(a)) => tokio::time::sleep_until(a).await,
                    (None, None) => std::future::pending().await,
                }
            };
            let next_note = async {
                match notes.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            };
            let board = self.board.clone();
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = board.copy_wanted() => self.board.copy_state(self.engine.state()),
                event = watcher.next() => match event {
                    Some(WatchEvent::Changed { paths: Some(paths), .. }) => {
                        let changed = changed_at(&self.profile.config.folder, &paths);
                        merge(&mut pending, changed);
                    }
                    Some(_) => merge(&mut pending, Changed::Anywhere),
                    None => return Err(AppError::Path("the folder watcher stopped".into())),
                },
                note = next_note => match note {
                    Some(Ok(n)) => {
                        if self.on_notification(n) {
                            merge(&mut pending, Changed::Paths(BTreeSet::new()));
                        }
                    }
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
                () = retry_sleep => {}
            }
        }
    }

    /// Reacts to one push notification; true if a sync is needed.
    fn on_notification(&self, note: Notification) -> bool {
        match note {
            Notification::Commit {
                workspace, device, ..
            } => workspace == self.workspace.id && device != self.device(),
            Notification::Resync => true,
            Notification::ShareProposal { folder_name, .. } => {
                self.desktop.notify(
                    Urgency::Normal,
                    "StackSync: a folder was shared with you",
                    &format!("\u{201c}{folder_name}\u{201d} is waiting for your answer."),
                );
                false
            }
            Notification::WorkspaceJoined { workspace } => {
                self.desktop.notify(
                    Urgency::Normal,
                    "StackSync: shared folder joined",
                    &workspace.name,
                );
                false
            }
            Notification::Unshared { workspace, .. }
            | Notification::WorkspaceUpdated {
                workspace: Workspace { id: workspace, .. },
            } => workspace == self.workspace.id,
        }
    }

    /// The folder-relative path of a path given by the user.
    pub fn relative(&self, path: &Path) -> Result<RelPath, AppError> {
        status::relative_to_folder(&self.profile.config.folder, path)
            .map_err(|e| AppError::Path(e.to_string()))
    }

    /// The item at `path`: the live one, else the most recently deleted
    /// one that had this path.
    async fn item_at(&mut self, path: &RelPath) -> Result<ItemMeta, AppError> {
        self.engine.pull().await?;
        let tree = &self.engine.state().remote;
        let mut best: Option<&ItemMeta> = None;
        for meta in tree.iter() {
            if tree.path_including_deleted(meta.id).as_ref() != Some(path) {
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
        best.cloned().ok_or_else(|| {
            AppError::Path(format!("{path} is not known to the server (never synced?)"))
        })
    }

    /// Every stored version of the item at `path`, oldest first.
    pub async fn versions(&mut self, path: &RelPath) -> Result<Vec<ItemMeta>, AppError> {
        let item = self.item_at(path).await?;
        let request = Request::GetVersions {
            workspace: self.workspace.id,
            item: item.id,
        };
        match self
            .conn
            .rpc(request)
            .await
            .map_err(AppError::service(format!("listing versions of {path}")))?
        {
            Reply::Versions { mut versions } => {
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
        let item = self.item_at(path).await?;
        let request = Request::Restore {
            workspace: self.workspace.id,
            item: item.id,
            version,
            device: self.device(),
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
        let snapshot = Snapshot {
            view: Arc::new(StatusView::of(self.engine.state())),
            daemon: self.board.snapshot_now().daemon,
        };
        status::compute(&self.fs, &snapshot, path, false)
            .await
            .map_err(|e| AppError::Path(e.to_string()))
    }
}

/// Computes a status without any connection: from the state database, for
/// when no daemon runs and the server may be unreachable.
pub async fn offline_status(
    profile: &Profile,
    path: &Path,
) -> Result<status::StatusReport, AppError> {
    let fs = LocalFs::open(&profile.config.folder)?;
    let rel = status::relative_to_folder(&profile.config.folder, path)
        .map_err(|e| AppError::Path(e.to_string()))?;
    let state = match profile.config.workspace {
        Some(ws) if profile.state_db_path().exists() => {
            let store = SqliteStateStore::open(&profile.state_db_path(), ws).await?;
            let state = store.load_state().await?;
            store.close().await;
            state
        }
        _ => None,
    };
    let snapshot = Snapshot {
        view: Arc::new(StatusView::of(&state.unwrap_or_default())),
        daemon: DaemonState::default(),
    };
    status::compute(&fs, &snapshot, &rel, false)
        .await
        .map_err(|e| AppError::Path(e.to_string()))
}

/// Adds `more` to what the next round looks at.
fn merge(pending: &mut Option<Changed>, more: Changed) {
    *pending = Some(match (pending.take(), more) {
        (None, more) => more,
        (Some(Changed::Paths(mut a)), Changed::Paths(b)) => {
            a.extend(b);
            Changed::Paths(a)
        }
        _ => Changed::Anywhere,
    });
}

/// The folder-relative form of the absolute `paths` the watcher named; a
/// path that cannot be one (outside the folder, or a name StackSync does
/// not take) is looked at through its folder.
fn changed_at(folder: &Path, paths: &BTreeSet<PathBuf>) -> Changed {
    let mut out = BTreeSet::new();
    for path in paths {
        let rel = status::relative_to_folder(folder, path).or_else(|_| {
            let parent = path.parent().ok_or(())?;
            status::relative_to_folder(folder, parent).map_err(|_| ())
        });
        match rel {
            Ok(rel) => {
                out.insert(rel);
            }
            Err(_) => return Changed::Anywhere,
        }
    }
    Changed::Paths(out)
}

/// Removes the socket file and stops its server when the daemon ends.
struct SocketGuard {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}
