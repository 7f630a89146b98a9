//! One workspace kept in step with one folder: the private workspace with
//! the synced folder, or a shared workspace with its mount point. It owns
//! that workspace's engine, content store, status board and stall
//! watchdog; the daemon ([`crate::app`]) decides when each one syncs.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use stacksync_content::ChunkCodec;
use stacksync_engine::io::{Clock, RandomIds, SystemClock};
use stacksync_engine::{Changed, Engine, EngineConfig, EngineError, EngineIo, RelPath, SyncReport};
use stacksync_proto::{EncryptionMode, Error, ErrorKind, Workspace};

use crate::app::{AppError, ClientOptions};
use crate::connection::{Connection, FeedGuard, WorkspaceRemote};
use crate::desktop::{DesktopNotifier, NoticeKind};
use crate::e2ee::{KeyFiles, SealedRemote};
use crate::localfs::LocalFs;
use crate::profile::Profile;
use crate::state::SqliteStateStore;
use crate::status::StatusBoard;
use crate::transfer::{
    Activity, BaseCache, ChunkedContentStore, TransferStats, UploadJournal, WatchedConnection,
    woken_is_progress,
};

/// What the workspaces of one client share.
#[derive(Clone)]
pub struct Shared {
    /// Desktop notifications.
    pub desktop: DesktopNotifier,
    /// Bytes and chunks moved, by all of them together.
    pub stats: Arc<TransferStats>,
    /// The status change feed (poked when a round starts or ends).
    pub feed: crate::status::StatusFeed,
}

/// One workspace and the folder it mirrors.
pub struct WorkspaceSync {
    workspace: Workspace,
    /// Where the folder is, relative to the synced folder (the root for
    /// the private workspace).
    path: RelPath,
    conn: Arc<dyn Connection>,
    fs: Arc<LocalFs>,
    engine: Engine,
    content: ChunkedContentStore,
    board: StatusBoard,
    desktop: DesktopNotifier,
    feed: crate::status::StatusFeed,
    stall: Duration,
    /// Progress of this workspace's RPCs, transfers and file-system calls,
    /// for the stall watchdog of [`WorkspaceSync::sync`].
    activity: Activity,
    /// The engine's remote, for an end-to-end encrypted workspace.
    sealed: Option<Arc<SealedRemote>>,
}

impl WorkspaceSync {
    /// Opens `workspace` at `path` in the profile's synced folder, its
    /// state from the profile's state database. `guard` looks at every
    /// change-feed page first (see [`FeedGuard`]).
    pub async fn open(
        profile: &Profile,
        conn: Arc<dyn Connection>,
        workspace: Workspace,
        path: RelPath,
        options: &ClientOptions,
        shared: Shared,
        guard: Option<Arc<dyn FeedGuard>>,
    ) -> Result<WorkspaceSync, AppError> {
        let Shared {
            desktop,
            stats,
            feed,
        } = shared;
        let activity = Activity::default();
        let conn: Arc<dyn Connection> = Arc::new(WatchedConnection::new(
            conn,
            activity.clone(),
            options.deadlines,
        ));
        let root = crate::mounts::absolute(&profile.config.folder, &path);
        let fs = Arc::new(LocalFs::open(&root)?.watched_by(activity.clone()));
        let keys = match workspace.encryption {
            EncryptionMode::Plain | EncryptionMode::ServerSide => None,
            EncryptionMode::ClientSide => Some(Arc::new(
                crate::e2ee::keys::open_workspace(
                    &KeyFiles::new(profile.home()),
                    conn.as_ref(),
                    &workspace,
                )
                .await
                .map_err(AppError::service("opening the workspace's keys"))?,
            )),
        };
        let codec = match &keys {
            None => ChunkCodec::compressed(),
            Some(k) => k
                .codec()
                .map_err(AppError::service("opening the workspace's keys"))?,
        };
        let transport = conn
            .chunks(&workspace)
            .await
            .map_err(AppError::service("opening the chunk store"))?;
        let journal = UploadJournal::open(&profile.uploads_db_path(), workspace.id).await?;
        let mut content = ChunkedContentStore::counting_into(
            codec,
            transport,
            options.transfer,
            Some(journal),
            stats,
        )?
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
        let mut remote =
            WorkspaceRemote::new(Arc::clone(&conn), workspace.id, profile.config.device_id);
        if keys.is_some() {
            remote = remote.sealed();
        }
        if let Some(guard) = guard {
            remote = remote.guarded_by(guard);
        }
        let remote: Arc<dyn stacksync_engine::Remote> = Arc::new(remote);
        let sealed = keys.map(|k| {
            Arc::new(
                SealedRemote::new(remote.clone(), k).checking_keys(Arc::clone(&conn), workspace.id),
            )
        });
        let remote = match &sealed {
            Some(s) => Arc::clone(s) as Arc<dyn stacksync_engine::Remote>,
            None => remote,
        };
        let io = EngineIo {
            fs: Arc::clone(&fs) as Arc<dyn stacksync_engine::Fs>,
            remote,
            content: Arc::new(content.clone()),
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
            store: Arc::new(state),
        };
        let config = EngineConfig {
            device_name: profile.config.device_name.clone(),
            // A read-only member's edits stay on this device (as conflicted
            // copies where they changed a shared file), never proposed.
            read_only: workspace.read_only,
            ..EngineConfig::default()
        };
        let engine = Engine::open(io, config).await?;
        if let Some(sealed) = &sealed {
            // What this device accepted before is the floor for rollbacks.
            sealed
                .seed(engine.state().remote.iter())
                .map_err(AppError::service("checking the workspace's versions"))?;
        }
        let board = StatusBoard::default();
        board.mark_stale();
        Ok(WorkspaceSync {
            workspace,
            path,
            conn,
            fs,
            engine,
            content,
            board,
            desktop,
            feed,
            stall: options.deadlines.stall,
            activity,
            sealed,
        })
    }

    /// The epoch of the key statement an end-to-end encrypted workspace
    /// was opened with (its codec and records use that statement's keys).
    pub fn keys_epoch(&self) -> Option<u64> {
        self.sealed.as_ref().map(|s| s.keys().epoch())
    }

    /// How versions of an end-to-end encrypted workspace are opened and
    /// sealed (`None` for the others).
    pub fn sealed(&self) -> Option<&Arc<SealedRemote>> {
        self.sealed.as_ref()
    }

    /// The workspace.
    pub fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    /// Takes the server's newer description of the workspace (its name,
    /// mount or role changed; its id is the same).
    pub fn set_workspace(&mut self, workspace: Workspace) {
        debug_assert_eq!(workspace.id, self.workspace.id);
        self.workspace = workspace;
    }

    /// Where its folder is, relative to the synced folder.
    pub fn path(&self) -> &RelPath {
        &self.path
    }

    /// Its folder on disk.
    pub fn root(&self) -> &Path {
        self.fs.root()
    }

    /// The folder on disk as a shared handle (for the status socket).
    pub fn fs(&self) -> Arc<LocalFs> {
        Arc::clone(&self.fs)
    }

    /// The connection, under this workspace's deadlines.
    pub fn conn(&self) -> &Arc<dyn Connection> {
        &self.conn
    }

    /// The engine (its state, and reads of the change feed).
    pub fn engine(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The engine's state.
    pub fn state(&self) -> &stacksync_engine::SyncState {
        self.engine.state()
    }

    /// Whether this device never synced the workspace (a first mount).
    pub fn is_new(&self) -> bool {
        let s = self.engine.state();
        s.cursor == 0 && s.synced.is_empty()
    }

    /// Leaves `excluded` (paths relative to this folder) out of sync.
    pub fn set_excluded(&mut self, excluded: std::collections::BTreeSet<RelPath>) {
        self.engine.set_excluded(excluded);
    }

    /// Bytes and chunks moved so far.
    pub fn stats(&self) -> &TransferStats {
        self.content.stats()
    }

    /// The content store (shares its counters).
    pub fn content(&self) -> ChunkedContentStore {
        self.content.clone()
    }

    /// The status board its socket answers from.
    pub fn board(&self) -> StatusBoard {
        self.board.clone()
    }

    /// Builds the status board's view when a query waits for one.
    pub fn copy_state(&self) {
        self.board.copy_state(self.engine.state());
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
        // Subscribers learn of the round's start and end (statuses go from
        // pending to syncing and on).
        self.feed.state_changed();
    }

    /// A round stopped before its end (the daemon was paused): the status
    /// no longer shows it as running.
    pub fn abandoned(&self) {
        self.publish(false, None);
    }

    /// One engine sync (rounds until its plan is empty) after changes at
    /// `changed` (paths relative to this folder), with the status board
    /// and desktop notifications kept up to date.
    pub async fn sync(&mut self, changed: Changed) -> Result<SyncReport, EngineError> {
        let refused_before = self.engine.state().refused.len();
        self.publish(true, None);
        let result = self.watched_sync(changed).await;
        self.publish(false, Some(&result));
        if let Ok(report) = &result {
            if report.conflicts > 0 {
                self.desktop.notify(
                    NoticeKind::Conflicts,
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
                    NoticeKind::Errors,
                    "StackSync: some names cannot be synced",
                    &names.join(", "),
                );
            }
        }
        result
    }

    /// One engine sync under the stall watchdog: a round during which
    /// nothing progressed (no RPC answered, no transfer or file-system call
    /// finished) for [`crate::transfer::Deadlines::stall`] is reported (a
    /// warning naming what it waits on, and the status's error) and
    /// abandoned with a transient error, so the caller's retry starts
    /// afresh. Dropping the engine's future mid-round is safe: it is
    /// crash-safe at every step.
    async fn watched_sync(&mut self, changed: Changed) -> Result<SyncReport, EngineError> {
        let stall = self.stall;
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
}
