//! One simulated device: the real engine on an in-memory disk, with the
//! client's own remote and content store over the in-process service.
//!
//! What survives a crash is what a real device keeps on disk: the files
//! ([`MemFs`]) and the engine's state store. The engine, the connection's
//! memory of its own commits and the content store's unwritten packs are
//! rebuilt, as a restarted process rebuilds them.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::FutureExt;
use stacksync_bus::{Subscription, SubscriptionEvent};
use stacksync_client::{ChunkedContentStore, Connection, TransferConfig, WorkspaceRemote};
use stacksync_content::ChunkCodec;
use stacksync_engine::ignore::DOWNLOAD_TEMP_PREFIX;
use stacksync_engine::io::MemStateStore;
use stacksync_engine::sim::{FakeClock, MemFs, SeqIds};
use stacksync_engine::{Changed, Engine, EngineConfig, EngineError, EngineIo, SyncReport};
use stacksync_proto::{ContentHash, DeviceId, Error, Notification, UserId, Workspace, wire};
use stacksync_service::Service;

use crate::link::{Faults, SimConnection};

/// How a device is reached and who it belongs to.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: UserId,
    pub token: String,
    pub device: DeviceId,
    pub workspace: Workspace,
}

/// A device: its disk, its saved state, its engine when running.
pub struct SimDevice {
    pub name: String,
    pub session: Session,
    pub fs: MemFs,
    pub faults: Arc<Faults>,
    state: Arc<MemStateStore>,
    clock: Arc<FakeClock>,
    ids: Arc<SeqIds>,
    service: Service,
    /// Seeds the request ids of each incarnation (a restart gets new ones).
    id_seed: u64,
    incarnation: u64,
    engine: Option<Engine>,
    /// Push notifications for the device's workspace.
    notifications: Subscription,
    /// Notifications delivered and not acted on yet.
    pub pushes: u32,
}

impl SimDevice {
    /// A device of `session` with an empty disk and no saved state.
    pub fn new(
        name: String,
        service: Service,
        session: Session,
        id_seed: u64,
        notifications: Subscription,
    ) -> SimDevice {
        SimDevice {
            name,
            session,
            fs: MemFs::new(),
            faults: Arc::default(),
            state: Arc::new(MemStateStore::new()),
            clock: Arc::new(FakeClock::default()),
            ids: Arc::new(SeqIds::new(id_seed)),
            service,
            id_seed,
            incarnation: 0,
            engine: None,
            notifications,
            pushes: 0,
        }
    }

    fn io(&self) -> Result<EngineIo, Error> {
        let conn = Arc::new(SimConnection::new(
            self.service.clone(),
            self.session.user,
            self.session.token.clone(),
            self.id_seed << 16 | self.incarnation,
            Arc::clone(&self.faults),
        ));
        let transport = conn
            .chunks(&self.session.workspace)
            .now_or_never()
            .expect("the simulated connection answers at once")?;
        let content =
            ChunkedContentStore::new(ChunkCodec::compressed(), transport, transfer_config())
                .map_err(|e| Error::internal(format!("content store: {e}")))?;
        Ok(EngineIo {
            fs: Arc::new(self.fs.clone()),
            remote: Arc::new(WorkspaceRemote::new(
                conn,
                self.session.workspace.id,
                self.session.device,
            )),
            content: Arc::new(content),
            clock: self.clock.clone(),
            ids: self.ids.clone(),
            store: self.state.clone(),
        })
    }

    /// One sync call, opening the engine first if it is not running; an
    /// engine whose call fails is dropped like a crashed process.
    pub async fn sync(&mut self, changed: Changed) -> Result<SyncReport, EngineError> {
        if self.engine.is_none() {
            self.incarnation += 1;
            let io = self.io().map_err(|source| EngineError::Remote {
                doing: "connecting".into(),
                source,
            })?;
            let config = EngineConfig {
                device_name: self.name.clone(),
                page_limit: 5,
                max_rounds: 12,
                ..EngineConfig::default()
            };
            self.engine = Some(Engine::open(io, config).await?);
        }
        let engine = self.engine.as_mut().expect("opened just above");
        let report = engine.sync_changed(changed).await;
        if report.is_err() {
            self.engine = None;
        }
        report
    }

    /// The process dies between two steps: only the disk and the saved
    /// state remain.
    pub fn crash(&mut self) {
        self.engine = None;
    }

    /// Notifications the bus has delivered to this device so far, decoded.
    pub fn take_notifications(&mut self) -> Vec<Notification> {
        let mut out = Vec::new();
        while let Some(Some(event)) = self.notifications.recv().now_or_never() {
            match event {
                SubscriptionEvent::Message { payload, .. } => {
                    if let Ok(n) = wire::decode::<Notification>(&payload) {
                        out.push(n);
                    }
                }
                // A lagging subscriber re-reads the feed: a push.
                _ => self.pushes += 1,
            }
        }
        out
    }

    /// Every file on the disk by content hash, without download
    /// temporaries.
    pub fn contents(&self) -> BTreeMap<ContentHash, String> {
        self.files()
            .into_iter()
            .map(|(path, data)| (hash(&data), path))
            .collect()
    }

    /// Every file (path, bytes), without download temporaries.
    pub fn files(&self) -> Vec<(String, Vec<u8>)> {
        files_on(&self.fs)
    }
}

/// Every file on `fs` (path, bytes), without download temporaries.
pub fn files_on(fs: &MemFs) -> Vec<(String, Vec<u8>)> {
    fs.snapshot()
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

/// Plain BLAKE3, as the content hash of a plain workspace.
pub fn hash(data: &[u8]) -> ContentHash {
    ContentHash(*blake3::hash(data).as_bytes())
}

/// Small packs and windows, so that a run of small files still exercises
/// several packs and range reads.
fn transfer_config() -> TransferConfig {
    TransferConfig {
        pack_bytes: 64 * 1024,
        max_uploads: 2,
        max_downloads: 2,
        ..TransferConfig::default()
    }
}
