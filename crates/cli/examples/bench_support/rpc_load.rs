//! The elasticity bench's simulated devices: each one a sync client's
//! metadata traffic on the bus (RPC into the shared request queue, replies
//! by direct reply-to), as `tests/elasticity.rs` sends it. A device commits
//! the next version of its own item or reads its workspace's change feed
//! from its cursor, after an exponential think time, one request at a time
//! (a client waits for its commit before the next). A request is retried
//! with the same request id on every transient failure (a timeout, a lost
//! connection, an instance that stopped), as the real client does, so a
//! commit is never applied twice; it counts as answered once a reply comes.
//!
//! Whether a device acts is the load profile's business: it acts only
//! while its index is below [`Load::active`].

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stacksync_bus::Bus;
use stacksync_proto::rpc::{Reply, Request, RpcRequest, RpcResponse};
use stacksync_proto::{
    CommitOutcome, CommitRequest, ContentHash, DeviceId, ItemId, ItemName, ItemStatus,
    ProposedItem, WorkspaceId, wire,
};
use uuid::Uuid;

use super::data::Rng;

/// One attempt's timeout: a request still queued after this is sent again
/// (same id; the service recognises the repeat).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// A logical request not answered after this counts as unanswered.
pub const GIVE_UP: Duration = Duration::from_secs(180);
/// The change feed's page size (the client's own).
const PAGE_LIMIT: u32 = 500;

/// What every device shares: the profile's gate and the counters.
pub struct Load {
    /// Devices with an index below this act; the others wait.
    pub active: AtomicUsize,
    /// Devices stop after their current request once this is set.
    pub stop: AtomicBool,
    /// Mean think time between two requests of a device, in microseconds.
    pub think_us: AtomicU64,
    /// Share of requests that are commits, in percent (the rest read the feed).
    pub commit_pct: u64,
    /// Logical requests answered.
    pub completed: AtomicU64,
    /// Attempts sent again after a transient failure.
    pub retries: AtomicU64,
    /// Logical requests given up on (never answered).
    pub unanswered: AtomicU64,
    /// Requests answered with an error that is not transient, or a commit
    /// not committed.
    pub refused: AtomicU64,
    /// (seconds since `t0` when answered, latency in ms) of every answered
    /// logical request.
    pub answers: Mutex<Vec<(f64, f64)>>,
    pub t0: Instant,
}

impl Load {
    pub fn new(commit_pct: u64, think: Duration) -> Load {
        Load {
            active: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            think_us: AtomicU64::new(think.as_micros() as u64),
            commit_pct,
            completed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            unanswered: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            answers: Mutex::new(Vec::new()),
            t0: Instant::now(),
        }
    }

    /// The latencies (ms) of the requests answered between `from` and `to`
    /// seconds after `t0`.
    pub fn latencies_ms(&self, from: f64, to: f64) -> Vec<f64> {
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, ms)| *ms)
            .collect()
    }
}

/// One simulated device and what it was told.
pub struct SimDevice {
    pub index: usize,
    pub token: String,
    pub device: DeviceId,
    pub workspace: WorkspaceId,
    pub item: ItemId,
    /// The content hash of every version the service acknowledged, in
    /// order (version k + 1 at index k).
    pub acked: Vec<ContentHash>,
    pub cursor: u64,
    /// Set when a commit was never answered: the device stops committing
    /// (its next version would depend on the unknown outcome).
    pub broken: bool,
    pub rng: Rng,
}

/// The content hash of version `v` of device `index`'s item.
pub fn version_hash(index: usize, v: u64) -> ContentHash {
    ContentHash(*blake3::hash(format!("device {index} version {v}").as_bytes()).as_bytes())
}

/// One attempt-and-retry loop: the reply, or None once [`GIVE_UP`] passed.
pub async fn call(bus: &Bus, load: &Load, req: &RpcRequest) -> Option<RpcResponse> {
    let payload = bytes::Bytes::from(wire::encode(req));
    let started = Instant::now();
    loop {
        let outcome = bus.call(payload.clone(), ATTEMPT_TIMEOUT).await;
        match outcome {
            Ok(reply) => match wire::decode::<RpcResponse>(&reply) {
                Ok(resp) => match &resp.result {
                    Err(e) if e.kind.is_transient() => {}
                    _ => return Some(resp),
                },
                Err(_) => return None,
            },
            Err(e) if e.is_transient() => {}
            Err(_) => return None,
        }
        if started.elapsed() > GIVE_UP {
            return None;
        }
        load.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A request that must succeed (setup): its reply, or an error.
pub async fn rpc(bus: &Bus, load: &Load, token: &str, request: Request) -> anyhow::Result<Reply> {
    let req = RpcRequest {
        request_id: Uuid::new_v4(),
        token: token.into(),
        request,
    };
    let resp = call(bus, load, &req)
        .await
        .ok_or_else(|| anyhow::anyhow!("no answer to a setup request"))?;
    resp.result
        .map_err(|e| anyhow::anyhow!("setup request refused: {e}"))
}

fn proposed(d: &SimDevice, v: u64) -> ProposedItem {
    ProposedItem {
        id: d.item,
        parent: None,
        name: ItemName::new(format!("device-{}.txt", d.index)).expect("a plain file name is valid"),
        is_folder: false,
        mimetype: None,
        status: if v == 1 {
            ItemStatus::New
        } else {
            ItemStatus::Changed
        },
        version: v,
        content_hash: Some(version_hash(d.index, v)),
        size: 0,
        client_modified: v as i64,
        chunks: vec![],
        record: None,
    }
}

/// An exponential think time of mean `mean_us`.
fn think(rng: &mut Rng, mean_us: u64) -> Duration {
    let u = ((rng.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    Duration::from_micros((-u.ln() * mean_us as f64).min(60e6) as u64)
}

/// Runs a device until [`Load::stop`]; returns it with what it learnt.
pub async fn run_device(mut d: SimDevice, bus: Bus, load: Arc<Load>) -> SimDevice {
    loop {
        if load.stop.load(Ordering::Relaxed) {
            break;
        }
        if d.index >= load.active.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let pause = think(&mut d.rng, load.think_us.load(Ordering::Relaxed));
        tokio::time::sleep(pause).await;
        if load.stop.load(Ordering::Relaxed) {
            break;
        }
        let commit = !d.broken && d.rng.below(100) < load.commit_pct;
        let v = d.acked.len() as u64 + 1;
        let request = if commit {
            Request::Commit(CommitRequest {
                workspace: d.workspace,
                device: d.device,
                items: vec![proposed(&d, v)],
            })
        } else {
            Request::GetChanges {
                workspace: d.workspace,
                since: d.cursor,
                limit: PAGE_LIMIT,
            }
        };
        let req = RpcRequest {
            request_id: Uuid::new_v4(),
            token: d.token.clone(),
            request,
        };
        let started = Instant::now();
        let Some(resp) = call(&bus, &load, &req).await else {
            load.unanswered.fetch_add(1, Ordering::Relaxed);
            d.broken |= commit;
            continue;
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        load.completed.fetch_add(1, Ordering::Relaxed);
        load.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((load.t0.elapsed().as_secs_f64(), ms));
        match resp.result {
            Ok(Reply::Commit(result)) if commit => match result.results.first().map(|r| &r.outcome)
            {
                Some(CommitOutcome::Committed { meta })
                    if meta.version == v && meta.content_hash == Some(version_hash(d.index, v)) =>
                {
                    d.acked.push(version_hash(d.index, v));
                }
                _ => {
                    load.refused.fetch_add(1, Ordering::Relaxed);
                    d.broken = true;
                }
            },
            Ok(Reply::Changes(page)) if !commit => d.cursor = page.cursor,
            _ => {
                load.refused.fetch_add(1, Ordering::Relaxed);
                d.broken |= commit;
            }
        }
    }
    d
}
