//! A small world of devices around one fake server, for scenario tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use stacksync_engine::ignore::DOWNLOAD_TEMP_PREFIX;
use stacksync_engine::io::{ContentStore, MemStateStore, StateStore};
use stacksync_engine::sim::{DeviceLink, FakeClock, FakeServer, MemFs, SeqIds};
use stacksync_engine::{
    Changed, Engine, EngineConfig, EngineError, EngineIo, Remote, SyncReport, SyncState,
};
use stacksync_proto::{
    ChangesPage, CommitOutcome, CommitResult, ContentHash, DeviceId, Error, ItemCommitResult,
    ProposedItem, WorkspaceId,
};

pub struct Device {
    pub name: String,
    pub fs: MemFs,
    pub store: Arc<MemStateStore>,
    pub link: DeviceLink,
    pub clock: Arc<FakeClock>,
    pub ids: Arc<SeqIds>,
    /// Transfers at a time and items per commit call for this device's
    /// engine (taken when it is next opened).
    pub transfers: usize,
    pub commit_batch: usize,
    /// Whether this device's engine runs read-only (taken when it is next
    /// opened).
    pub read_only: bool,
    /// Replaces the content store the engine uses (to observe it).
    pub content: Option<Arc<dyn ContentStore>>,
    /// Replaces the server connection the engine uses (to observe it).
    pub remote: Option<Arc<dyn Remote>>,
    /// Paths left out as mounts of other workspaces (given to the engine
    /// before every sync call).
    pub excluded: std::collections::BTreeSet<stacksync_engine::RelPath>,
    engine: Option<Engine>,
}

impl Device {
    fn io(&self) -> EngineIo {
        EngineIo {
            fs: Arc::new(self.fs.clone()),
            remote: self
                .remote
                .clone()
                .unwrap_or_else(|| Arc::new(self.link.clone())),
            content: self
                .content
                .clone()
                .unwrap_or_else(|| Arc::new(self.link.clone())),
            clock: self.clock.clone(),
            ids: self.ids.clone(),
            store: Arc::new(DurableFirst {
                fs: self.fs.clone(),
                inner: self.store.clone(),
            }),
        }
    }

    /// One sync call, opening the engine if it is not running (a restart).
    pub async fn try_sync(&mut self) -> Result<SyncReport, EngineError> {
        // A full sync looks everywhere: what a watcher saw is covered.
        self.fs.take_watched();
        self.try_sync_changed(Changed::Anywhere).await
    }

    /// One sync call the way the daemon makes it after a watcher event:
    /// told the paths the user changed since the last call (so that it
    /// rescans and, once settled, plans only there).
    pub async fn try_sync_watched(&mut self) -> Result<SyncReport, EngineError> {
        let paths = self.fs.take_watched();
        self.try_sync_changed(Changed::Paths(paths)).await
    }

    async fn try_sync_changed(&mut self, changed: Changed) -> Result<SyncReport, EngineError> {
        if self.engine.is_none() {
            let config = EngineConfig {
                device_name: self.name.clone(),
                page_limit: 7,
                max_rounds: 12,
                transfers: self.transfers,
                commit_batch: self.commit_batch,
                read_only: self.read_only,
            };
            self.engine = Some(Engine::open(self.io(), config).await?);
        }
        let engine = self.engine.as_mut().expect("engine opened just above");
        engine.set_excluded(self.excluded.clone());
        let r = engine.sync_changed(changed).await;
        if r.is_err() {
            // An engine that failed mid-round is dropped, like a crashed
            // process; the next call restarts from the saved state.
            self.engine = None;
        }
        r
    }

    pub async fn sync(&mut self) -> SyncReport {
        match self.try_sync().await {
            Ok(r) => r,
            Err(e) => panic!("{}: sync failed: {e}", self.name),
        }
    }

    /// Drops the running engine (process exit or crash).
    pub fn stop(&mut self) {
        self.engine = None;
    }

    /// Makes this device a read-only member's from its next start: its
    /// engine runs read-only, behind a connection that refuses (and
    /// counts) every proposal.
    pub fn make_read_only(&mut self) -> Arc<ReadOnlyLink> {
        let link = Arc::new(ReadOnlyLink {
            inner: self.link.clone(),
            proposals: AtomicUsize::new(0),
        });
        self.read_only = true;
        self.remote = Some(link.clone());
        self.stop();
        link
    }

    pub fn write(&self, path: &str, data: &[u8]) {
        self.fs.user_write(path, data);
    }

    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.fs.user_read(path)
    }

    /// The content of every file on this device by hash, except files
    /// about to be changed by an injected fault.
    pub fn contents(&self) -> BTreeMap<ContentHash, String> {
        let pending = self.fs.pending_changes_on_read();
        self.fs
            .snapshot()
            .into_iter()
            .filter(|(p, _)| !pending.contains(p))
            // The engine's download temporaries are not user content.
            .filter(|(p, _)| {
                !p.rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .starts_with(DOWNLOAD_TEMP_PREFIX)
            })
            .filter_map(|(_, d)| d)
            .map(|d| {
                (
                    ContentHash(*blake3::hash(&d).as_bytes()),
                    String::from_utf8_lossy(&d).into_owned(),
                )
            })
            .collect()
    }
}

/// A read-only member's connection: reads pass, every proposal is refused
/// as the service refuses it (`Forbidden`), and counted, so a test can
/// hold a read-only engine to sending none.
pub struct ReadOnlyLink {
    inner: DeviceLink,
    proposals: AtomicUsize,
}

impl ReadOnlyLink {
    /// Items proposed so far.
    pub fn proposals(&self) -> usize {
        self.proposals.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Remote for ReadOnlyLink {
    async fn get_changes(&self, since: u64, limit: u32) -> Result<ChangesPage, Error> {
        self.inner.get_changes(since, limit).await
    }

    async fn commit(&self, items: Vec<ProposedItem>) -> Result<CommitResult, Error> {
        self.proposals.fetch_add(items.len(), Ordering::SeqCst);
        let results = items
            .iter()
            .map(|i| ItemCommitResult {
                id: i.id,
                version: i.version,
                outcome: CommitOutcome::Refused {
                    error: Error::forbidden("this member may only read the workspace"),
                },
            })
            .collect();
        Ok(CommitResult {
            workspace: WorkspaceId::NIL,
            device: DeviceId::NIL,
            results,
            revision: 0,
        })
    }
}

/// The device's state store, refusing any save while folder entries the
/// engine changed are not durable yet (`Fs::sync_dirs`): the state must
/// never record as done what a power cut could undo.
struct DurableFirst {
    fs: MemFs,
    inner: Arc<MemStateStore>,
}

#[async_trait::async_trait]
impl StateStore for DurableFirst {
    async fn load(&self) -> Result<Option<SyncState>, String> {
        self.inner.load().await
    }
    async fn save(&self, state: &SyncState) -> Result<(), String> {
        let unsynced = self.fs.unsynced_entries();
        assert_eq!(
            unsynced, 0,
            "the state was saved with {unsynced} folder change(s) not yet durable"
        );
        self.inner.save(state).await
    }
}

pub struct World {
    pub server: FakeServer,
    pub devices: Vec<Device>,
    /// Every content a user had on disk when an engine looked.
    pub saved: BTreeMap<ContentHash, String>,
}

impl World {
    pub fn new(n: usize) -> World {
        World::with_chunk_size(n, 64)
    }

    pub fn with_chunk_size(n: usize, chunk: usize) -> World {
        let server = FakeServer::new(chunk);
        let devices = (0..n)
            .map(|i| {
                let name = format!("dev{i}");
                Device {
                    name,
                    fs: MemFs::new(),
                    store: Arc::new(MemStateStore::new()),
                    link: server.device(DeviceId(uuid::Uuid::from_u64_pair(1, i as u64 + 1))),
                    clock: Arc::new(FakeClock::default()),
                    ids: Arc::new(SeqIds::new(i as u64 + 1)),
                    transfers: EngineConfig::default().transfers,
                    commit_batch: EngineConfig::default().commit_batch,
                    read_only: false,
                    content: None,
                    remote: None,
                    excluded: Default::default(),
                    engine: None,
                }
            })
            .collect();
        World {
            server,
            devices,
            saved: BTreeMap::new(),
        }
    }

    pub fn dev(&mut self, i: usize) -> &mut Device {
        &mut self.devices[i]
    }

    /// Syncs device `i`, recording what the user had saved first.
    pub async fn sync(&mut self, i: usize) -> SyncReport {
        self.saved.extend(self.devices[i].contents());
        self.devices[i].sync().await
    }

    /// [`World::sync`] the way the daemon syncs after a watcher event.
    pub async fn sync_watched(&mut self, i: usize) -> SyncReport {
        self.saved.extend(self.devices[i].contents());
        let d = &mut self.devices[i];
        match d.try_sync_watched().await {
            Ok(r) => r,
            Err(e) => panic!("{}: sync failed: {e}", d.name),
        }
    }

    /// Syncs every device in turn until a whole pass changes nothing, then
    /// checks that all devices hold the same tree and nothing was lost.
    pub async fn converge(&mut self) {
        for _pass in 0..8 {
            let mut quiet = true;
            for i in 0..self.devices.len() {
                let r = self.sync(i).await;
                if std::env::var("STACKSYNC_TRACE").is_ok() {
                    eprintln!("converge {}: {r:#?}", self.devices[i].name);
                }
                assert!(
                    r.converged,
                    "{} did not converge in one sync: {r:#?}",
                    self.devices[i].name
                );
                if r.applied > 0 || r.rounds > 1 {
                    quiet = false;
                }
            }
            if quiet {
                self.assert_same();
                self.assert_nothing_lost();
                return;
            }
        }
        panic!("devices did not settle after 8 passes");
    }

    pub fn assert_same(&self) {
        let first = self.devices[0].fs.snapshot();
        for d in &self.devices[1..] {
            let snap = d.fs.snapshot();
            if snap != first {
                let show = |m: &BTreeMap<String, Option<Vec<u8>>>| -> Vec<String> {
                    m.iter()
                        .map(|(k, v)| {
                            format!(
                                "{k} {:?}",
                                v.as_ref().map(|d| String::from_utf8_lossy(d).into_owned())
                            )
                        })
                        .collect()
                };
                panic!(
                    "{} and {} differ:\n{:#?}\nvs\n{:#?}",
                    self.devices[0].name,
                    d.name,
                    show(&first),
                    show(&snap)
                );
            }
        }
    }

    /// Every content saved is on some device or in the server's history.
    pub fn assert_nothing_lost(&self) {
        let mut kept = self.server.all_contents();
        for d in &self.devices {
            kept.extend(d.contents().into_keys());
            // Overwritten by the simulated user during a read: gone by the
            // user's own hand.
            kept.extend(
                d.fs.overwritten_by_fault()
                    .iter()
                    .map(|c| ContentHash(*blake3::hash(c).as_bytes())),
            );
        }
        let lost: Vec<&String> = self
            .saved
            .iter()
            .filter(|(h, _)| !kept.contains(h))
            .map(|(_, c)| c)
            .collect();
        assert!(lost.is_empty(), "contents lost: {lost:?}");
    }

    /// Paths that are conflicted copies on device `i`.
    pub fn conflicted_copies(&self, i: usize) -> Vec<String> {
        self.devices[i]
            .fs
            .snapshot()
            .into_keys()
            .filter(|k| k.contains("(conflicted copy from"))
            .collect()
    }
}
