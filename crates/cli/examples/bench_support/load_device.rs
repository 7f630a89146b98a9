//! One simulated device of the load bench: the real sync engine on an
//! in-memory disk ([`MemFs`], [`MemStateStore`]), the client's own
//! [`WorkspaceRemote`] and [`ChunkedContentStore`], over a real direct
//! connection (login over HTTP to a server, RPC and push over RabbitMQ,
//! chunks to and from Swift) wrapped in a [`TimedConnection`]. The same
//! assembly as the whole-system simulation's devices (crates/sim), with
//! the real transport instead of the in-process one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use stacksync_client::connection::workspaces;
use stacksync_client::{
    ChunkedContentStore, Connection, DirectConfig, DirectConnection, TransferConfig,
    WorkspaceRemote,
};
use stacksync_content::ChunkCodec;
use stacksync_engine::ignore::DOWNLOAD_TEMP_PREFIX;
use stacksync_engine::io::{EntryKind, MemStateStore, RandomIds, SystemClock};
use stacksync_engine::sim::{MemFs, SimRng};
use stacksync_engine::{Changed, Engine, EngineConfig, EngineIo, Fs, RelPath, SyncReport};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{ContentHash, DeviceId, Notification, Workspace};
use tokio::sync::Notify;

use super::server::PASSWORD;
use super::timed::{Push, Recorder, TimedConnection};

/// The trace's operations (Ubuntu One, IMC 2015), in percent: content
/// updates, creates, reads, deletes, moves.
pub const MIX: [(Action, u64); 5] = [
    (Action::Update, 59),
    (Action::Create, 20),
    (Action::Read, 8),
    (Action::Delete, 8),
    (Action::Move, 5),
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    Update,
    Create,
    Read,
    Delete,
    Move,
}

impl Action {
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        ["update", "create", "read", "delete", "move"][self.index()]
    }
}

/// File sizes: log-normal with a median of 8 KiB and 90% under 1 MiB
/// (sigma = ln(128) / z(0.9)), capped.
pub const MEDIAN_BYTES: f64 = 8.0 * 1024.0;
pub const P90_BYTES: f64 = 1024.0 * 1024.0;
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Above this size an update changes a few KiB in place (as editors of
/// large files do) rather than writing the file anew.
const PARTIAL_UPDATE_ABOVE: usize = 64 * 1024;

/// Folder names: a few, so that a user's devices share their folders.
const FOLDERS: [&str; 5] = ["docs", "photos", "music", "work", "projects"];

/// What a device did.
#[derive(Default, Clone, Copy)]
pub struct DeviceStats {
    pub actions: [u64; 5],
    pub syncs: u64,
    pub push_syncs: u64,
    pub failed_syncs: u64,
    pub conflicts: u64,
    pub bytes_written: u64,
}

impl DeviceStats {
    /// Adds another device's figures to these.
    pub fn add(&mut self, other: &DeviceStats) {
        for (a, b) in self.actions.iter_mut().zip(other.actions) {
            *a += b;
        }
        self.syncs += other.syncs;
        self.push_syncs += other.push_syncs;
        self.failed_syncs += other.failed_syncs;
        self.conflicts += other.conflicts;
        self.bytes_written += other.bytes_written;
    }
}

pub struct Device {
    pub name: String,
    /// Index of its user.
    pub user: usize,
    pub id: DeviceId,
    pub workspace: Workspace,
    pub fs: MemFs,
    conn: Arc<TimedConnection>,
    state: Arc<MemStateStore>,
    engine: Option<Engine>,
    recorder: Arc<Recorder>,
    /// Woken by every push for another device's commit (and by a resync).
    pub push: Arc<Notify>,
    pub stats: DeviceStats,
    /// Contents the user wrote that no completed sync has seen yet, by path.
    pending: BTreeMap<String, ContentHash>,
    /// Every content a sync that skipped nothing found on this disk (or
    /// quiescence found there): what must never be lost.
    pub saved: BTreeMap<ContentHash, String>,
    rng: SimRng,
    written: u64,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Device {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Plain BLAKE3: a plain workspace's content hash.
pub fn hash(data: &[u8]) -> ContentHash {
    ContentHash(*blake3::hash(data).as_bytes())
}

impl Device {
    /// Logs in to the server at `url` as `email` (direct transport),
    /// registers a device and opens its push stream.
    pub async fn connect(
        name: String,
        user: usize,
        email: &str,
        url: &str,
        config: DirectConfig,
        recorder: Arc<Recorder>,
        seed: u64,
    ) -> anyhow::Result<Device> {
        let direct = DirectConnection::login(config, url, email, PASSWORD)
            .await
            .with_context(|| format!("{name}: logging in to {url} as {email}"))?;
        let conn = Arc::new(TimedConnection::new(
            Arc::new(direct),
            recorder.clone(),
            name.clone(),
        ));
        let device = match conn
            .rpc(Request::UpdateDevice {
                id: None,
                name: name.clone(),
                os: std::env::consts::OS.to_owned(),
                app_version: "bench-load".to_owned(),
            })
            .await
            .with_context(|| format!("{name}: registering the device"))?
        {
            Reply::Device(d) => d,
            other => bail!("{name}: the device registration was answered with {other:?}"),
        };
        conn.set_device_id(device.id);
        let workspace = workspaces(conn.as_ref())
            .await
            .with_context(|| format!("{name}: listing workspaces"))?
            .into_iter()
            .find(|w| !w.is_shared)
            .with_context(|| format!("{name}: no private workspace"))?;
        let mut stream = conn
            .notifications()
            .await
            .with_context(|| format!("{name}: opening the push stream"))?;
        let push = Arc::new(Notify::new());
        let listener = {
            let (push, recorder, me, name) =
                (push.clone(), recorder.clone(), device.id, name.clone());
            tokio::spawn(async move {
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(Notification::Commit {
                            workspace,
                            device,
                            revision,
                            ..
                        }) => {
                            if device != me {
                                recorder.push(Push {
                                    workspace,
                                    revision,
                                    from: device,
                                    to: me,
                                    at: Instant::now(),
                                });
                                push.notify_one();
                            }
                        }
                        Ok(Notification::Resync) => push.notify_one(),
                        Ok(_) => {}
                        Err(e) => {
                            recorder.error(format!("{name}: push stream ended: {e}"));
                            break;
                        }
                    }
                }
            })
        };
        Ok(Device {
            name,
            user,
            id: device.id,
            workspace,
            fs: MemFs::new(),
            conn,
            state: Arc::new(MemStateStore::new()),
            engine: None,
            recorder,
            push,
            stats: DeviceStats::default(),
            pending: BTreeMap::new(),
            saved: BTreeMap::new(),
            rng: SimRng::new(seed),
            written: 0,
            listener,
        })
    }

    /// The device's connection (for the checks' reads).
    pub fn conn(&self) -> &dyn Connection {
        self.conn.as_ref()
    }

    async fn io(&self) -> anyhow::Result<EngineIo> {
        let transport = self.conn.chunks(&self.workspace).await?;
        let content = ChunkedContentStore::new(
            ChunkCodec::compressed(),
            transport,
            TransferConfig::default(),
        )?;
        let conn: Arc<dyn Connection> = self.conn.clone();
        Ok(EngineIo {
            fs: Arc::new(self.fs.clone()),
            remote: Arc::new(WorkspaceRemote::new(conn, self.workspace.id, self.id)),
            content: Arc::new(content),
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
            store: self.state.clone(),
        })
    }

    /// One sync, as the daemon runs it after a watcher event or a push (or
    /// `Changed::Anywhere`, as after a start). A failed sync drops the
    /// engine, as a daemon restarts a workspace after an error; the next
    /// one reopens it from the saved state.
    pub async fn sync(&mut self, changed: Changed) -> Result<SyncReport, String> {
        let seen = self.pending.clone();
        let result = self.sync_inner(changed).await;
        self.stats.syncs += 1;
        match &result {
            Ok(r) => {
                self.stats.conflicts += r.conflicts as u64;
                if r.skipped.is_empty() {
                    for (path, h) in seen {
                        self.saved
                            .insert(h, format!("{path} written on {}", self.name));
                    }
                    self.pending.clear();
                }
            }
            Err(e) => {
                self.stats.failed_syncs += 1;
                self.engine = None;
                self.recorder
                    .error(format!("{}: sync failed: {e}", self.name));
            }
        }
        result
    }

    async fn sync_inner(&mut self, changed: Changed) -> Result<SyncReport, String> {
        if self.engine.is_none() {
            let io = self.io().await.map_err(|e| format!("opening: {e:#}"))?;
            let config = EngineConfig {
                device_name: self.name.clone(),
                ..EngineConfig::default()
            };
            let engine = Engine::open(io, config)
                .await
                .map_err(|e| format!("opening the engine: {e}"))?;
            self.engine = Some(engine);
        }
        let engine = self.engine.as_mut().expect("opened just above");
        engine
            .sync_changed(changed)
            .await
            .map_err(|e| e.to_string())
    }

    /// A sync of what the user changed since the last one.
    pub async fn sync_watched(&mut self) -> Result<SyncReport, String> {
        let paths = self.fs.take_watched();
        self.sync(Changed::Paths(paths)).await
    }

    /// Every file on the disk (path, bytes), download temporaries left out.
    pub fn files(&self) -> Vec<(String, Vec<u8>)> {
        self.fs
            .snapshot()
            .into_iter()
            .filter(|(p, _)| {
                !p.rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .starts_with(DOWNLOAD_TEMP_PREFIX)
            })
            .filter_map(|(p, d)| Some((p, d?)))
            .collect()
    }

    /// Path -> content hash (None for a folder): what the server's tree
    /// must equal.
    pub fn tree(&self) -> BTreeMap<String, Option<ContentHash>> {
        self.fs
            .snapshot()
            .into_iter()
            .filter(|(p, _)| {
                !p.rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .starts_with(DOWNLOAD_TEMP_PREFIX)
            })
            .map(|(p, d)| (p, d.map(|d| hash(&d))))
            .collect()
    }

    /// Takes every content on the disk as saved (quiescence: the user
    /// stopped, and all of it must reach the server).
    pub fn save_all(&mut self) {
        for (path, data) in self.files() {
            self.saved
                .insert(hash(&data), format!("{path} on {} at the end", self.name));
        }
        self.pending.clear();
    }

    /// Writes `n` new files (the user's starting tree).
    pub fn write_initial(&mut self, n: usize) {
        for _ in 0..n {
            self.create_file();
        }
    }

    /// The paths of every file on the disk, from folder listings (no
    /// content is copied), download temporaries left out.
    pub async fn file_paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut folders = vec![String::new()];
        while let Some(dir) = folders.pop() {
            let Ok(rel) = (if dir.is_empty() {
                Ok(RelPath::root())
            } else {
                RelPath::parse(&dir)
            }) else {
                continue;
            };
            let Ok(entries) = self.fs.list_dir(&rel).await else {
                continue;
            };
            for e in entries {
                if e.name.starts_with(DOWNLOAD_TEMP_PREFIX) {
                    continue;
                }
                let path = if dir.is_empty() {
                    e.name
                } else {
                    format!("{dir}/{}", e.name)
                };
                match e.kind {
                    EntryKind::File => out.push(path),
                    EntryKind::Folder => folders.push(path),
                    _ => {}
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// One user action drawn from the trace's mix; returns it.
    pub async fn act(&mut self) -> Action {
        let roll = self.rng.below(100) as u64;
        let mut acc = 0;
        let mut action = Action::Update;
        for (a, pct) in MIX {
            acc += pct;
            if roll < acc {
                action = a;
                break;
            }
        }
        let files = self.file_paths().await;
        if files.is_empty() && action != Action::Create {
            action = Action::Create;
        }
        self.stats.actions[action.index()] += 1;
        match action {
            Action::Update => {
                let path = files[self.rng.below(files.len())].clone();
                let old = self.fs.user_read(&path).unwrap_or_default();
                let data = if old.len() > PARTIAL_UPDATE_ABOVE {
                    self.edit_in_place(old)
                } else {
                    self.content()
                };
                self.write(&path, data);
            }
            Action::Create => {
                if self.rng.chance(8) {
                    let path = self.folder_path();
                    self.fs.user_mkdir_p(&path);
                } else {
                    self.create_file();
                }
            }
            Action::Read => {
                let path = &files[self.rng.below(files.len())];
                let _ = self.fs.user_read(path);
            }
            Action::Delete => {
                let path = files[self.rng.below(files.len())].clone();
                if self.rng.chance(5)
                    && let Some((folder, _)) = path.rsplit_once('/')
                {
                    // Now and then a whole folder goes.
                    let folder = folder.to_owned();
                    self.fs.user_remove(&folder);
                    self.pending
                        .retain(|p, _| !p.starts_with(&format!("{folder}/")));
                } else {
                    self.fs.user_remove(&path);
                    self.pending.remove(&path);
                }
            }
            Action::Move => {
                let from = files[self.rng.below(files.len())].clone();
                let to = self.new_file_path();
                if let Some((parent, _)) = to.rsplit_once('/') {
                    self.fs.user_mkdir_p(parent);
                }
                if self.fs.user_rename(&from, &to)
                    && let Some(h) = self.pending.remove(&from)
                {
                    self.pending.insert(to, h);
                }
            }
        }
        action
    }

    fn create_file(&mut self) {
        let path = self.new_file_path();
        let data = self.content();
        self.write(&path, data);
    }

    /// Writes `data` at `path`; what was there and never synced is gone
    /// by the user's own hand.
    fn write(&mut self, path: &str, data: Vec<u8>) {
        self.stats.bytes_written += data.len() as u64;
        self.pending.insert(path.to_owned(), hash(&data));
        self.fs.user_write(path, &data);
    }

    /// "docs/", "docs/work/" or "" (the top).
    fn place(&mut self) -> String {
        match self.rng.below(4) {
            0 => String::new(),
            1 | 2 => format!("{}/", FOLDERS[self.rng.below(FOLDERS.len())]),
            _ => format!(
                "{}/{}/",
                FOLDERS[self.rng.below(FOLDERS.len())],
                FOLDERS[self.rng.below(FOLDERS.len())]
            ),
        }
    }

    fn folder_path(&mut self) -> String {
        let place = self.place();
        format!("{place}{}", FOLDERS[self.rng.below(FOLDERS.len())])
    }

    /// A new file's path: its name is this device's own, so that devices
    /// collide on edits of shared files, not on creates.
    fn new_file_path(&mut self) -> String {
        self.written += 1;
        let place = self.place();
        format!("{place}{}-{}.bin", self.name, self.written)
    }

    /// A log-normal size (median 8 KiB, 90% under 1 MiB), at most
    /// [`MAX_BYTES`].
    pub fn size(rng: &mut SimRng) -> usize {
        let sigma = (P90_BYTES / MEDIAN_BYTES).ln() / 1.281_551_565_5;
        let u1 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        ((MEDIAN_BYTES.ln() + sigma * z).exp() as usize).clamp(1, MAX_BYTES)
    }

    /// New bytes no one wrote before (random, so incompressible like most
    /// large files).
    fn content(&mut self) -> Vec<u8> {
        let size = Self::size(&mut self.rng);
        self.random_bytes(size)
    }

    fn random_bytes(&mut self, len: usize) -> Vec<u8> {
        let mut data = Vec::with_capacity(len + 8);
        while data.len() < len {
            data.extend_from_slice(&self.rng.next_u64().to_le_bytes());
        }
        data.truncate(len);
        data
    }

    /// `old` with 1-4 KiB at a random place replaced by new bytes.
    fn edit_in_place(&mut self, mut old: Vec<u8>) -> Vec<u8> {
        let len = (1024 + self.rng.below(3 * 1024)).min(old.len());
        let at = self.rng.below(old.len() - len + 1);
        let patch = self.random_bytes(len);
        old[at..at + len].copy_from_slice(&patch);
        old
    }

    /// Think time: exponential with mean `mean`, capped at 5x.
    pub fn think(&mut self, mean: Duration) -> Duration {
        let u = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let factor = (-(1.0 - u).ln()).min(5.0);
        mean.mul_f64(factor)
    }
}
