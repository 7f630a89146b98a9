//! A [`Connection`] that times every RPC and remembers every commit the
//! service said it took, for a load bench's figures and its lost check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use stacksync_client::{ChunkTransport, Connection, NotificationStream};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{CommitOutcome, DeviceId, Error, ItemMeta, Workspace, WorkspaceId};

/// One RPC as the caller saw it (after the transport's own retries).
#[derive(Clone, Copy)]
pub struct RpcSample {
    pub op: &'static str,
    pub started: Instant,
    pub took: Duration,
    pub ok: bool,
}

/// One version the service reported as committed, as it reported it.
#[derive(Clone)]
pub struct AckedCommit {
    pub device: String,
    pub meta: ItemMeta,
    /// When the reply arrived.
    pub at: Instant,
}

/// When a commit was sent and acknowledged.
#[derive(Clone, Copy)]
pub struct CommitTimes {
    pub device: DeviceId,
    pub sent: Instant,
    pub replied: Instant,
}

/// One push notification of a commit, as a device received it.
#[derive(Clone, Copy)]
pub struct Push {
    pub workspace: WorkspaceId,
    pub revision: u64,
    /// The device that committed.
    pub from: DeviceId,
    /// The device that received it.
    pub to: DeviceId,
    pub at: Instant,
}

/// What every device of a run records, shared.
#[derive(Default)]
pub struct Recorder {
    rpcs: Mutex<Vec<RpcSample>>,
    commits: Mutex<Vec<AckedCommit>>,
    /// The commit that made each revision: who sent it, when, and when
    /// its reply arrived.
    replies: Mutex<HashMap<(WorkspaceId, u64), CommitTimes>>,
    pushes: Mutex<Vec<Push>>,
    errors: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain records appended in one call: a panic elsewhere cannot leave
    // one half-written.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Recorder {
    pub fn rpcs(&self) -> Vec<RpcSample> {
        lock(&self.rpcs).clone()
    }

    pub fn commits(&self) -> Vec<AckedCommit> {
        lock(&self.commits).clone()
    }

    pub fn replies(&self) -> HashMap<(WorkspaceId, u64), CommitTimes> {
        lock(&self.replies).clone()
    }

    pub fn pushes(&self) -> Vec<Push> {
        lock(&self.pushes).clone()
    }

    /// Failures (RPCs and sync rounds), each with when and who.
    pub fn errors(&self) -> Vec<String> {
        lock(&self.errors).clone()
    }

    pub fn error(&self, what: String) {
        lock(&self.errors).push(what);
    }

    pub fn push(&self, push: Push) {
        lock(&self.pushes).push(push);
    }
}

/// `inner`, with every RPC recorded in `recorder` under `device`.
pub struct TimedConnection {
    inner: Arc<dyn Connection>,
    recorder: Arc<Recorder>,
    device: String,
    device_id: Mutex<Option<DeviceId>>,
}

impl TimedConnection {
    pub fn new(inner: Arc<dyn Connection>, recorder: Arc<Recorder>, device: String) -> Self {
        TimedConnection {
            inner,
            recorder,
            device,
            device_id: Mutex::new(None),
        }
    }

    /// The device id its commits carry, once registered.
    pub fn set_device_id(&self, id: DeviceId) {
        *lock(&self.device_id) = Some(id);
    }
}

/// A short name for a request's operation.
pub fn op_name(request: &Request) -> &'static str {
    match request {
        Request::GetChanges { .. } => "get_changes",
        Request::Commit(_) => "commit",
        Request::LocateChunks { .. } => "locate_chunks",
        Request::GetWorkspaces => "get_workspaces",
        Request::GetVersions { .. } => "get_versions",
        Request::GetAccount => "get_account",
        Request::UpdateDevice { .. } => "update_device",
        Request::BindNotifications => "bind_notifications",
        _ => "other",
    }
}

#[async_trait]
impl Connection for TimedConnection {
    async fn rpc(&self, request: Request) -> Result<Reply, Error> {
        let op = op_name(&request);
        let started = Instant::now();
        let result = self.inner.rpc(request).await;
        let took = started.elapsed();
        let arrived = Instant::now();
        lock(&self.recorder.rpcs).push(RpcSample {
            op,
            started,
            took,
            ok: result.is_ok(),
        });
        match &result {
            Err(e) => self.recorder.error(format!(
                "{}: {op} failed after {:.1} s: {e}",
                self.device,
                took.as_secs_f64()
            )),
            Ok(Reply::Commit(r)) => {
                let committed: Vec<AckedCommit> = r
                    .results
                    .iter()
                    .filter_map(|res| match &res.outcome {
                        CommitOutcome::Committed { meta } => Some(AckedCommit {
                            device: self.device.clone(),
                            meta: meta.clone(),
                            at: arrived,
                        }),
                        _ => None,
                    })
                    .collect();
                if !committed.is_empty() {
                    let device = lock(&self.device_id).unwrap_or(r.device);
                    lock(&self.recorder.replies)
                        .entry((r.workspace, r.revision))
                        .or_insert(CommitTimes {
                            device,
                            sent: started,
                            replied: arrived,
                        });
                    lock(&self.recorder.commits).extend(committed);
                }
            }
            Ok(_) => {}
        }
        result
    }

    async fn chunks(&self, workspace: &Workspace) -> Result<Arc<dyn ChunkTransport>, Error> {
        self.inner.chunks(workspace).await
    }

    async fn notifications(&self) -> Result<NotificationStream, Error> {
        self.inner.notifications().await
    }
}
