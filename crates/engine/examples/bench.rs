//! Engine benchmark on the in-memory doubles (so it measures the engine,
//! not a disk or a network): initial sync of a tree from one device to
//! another, then a no-change resync and a rename of the whole tree, each
//! compared with the initial sync measured in the same run; and the pure
//! planner on a large tree.
//!
//! `cargo run --release -p stacksync-engine --example bench -- [--files N] [--size BYTES]
//! [--large N] [--latency-ms MS]`
//!
//! `--large N` adds N files of 16 MiB; `--latency-ms MS` makes every
//! server round trip (one change-feed page, one commit batch, one upload or
//! download call) wait MS milliseconds, the way a network does, so that
//! what parallel transfers and batched commits save shows up.
//! The last line of stdout is one JSON object.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use stacksync_engine::io::{ByteReader, ByteWriter, ContentStore, Remote, Uploaded};

use stacksync_engine::io::MemStateStore;
use stacksync_engine::sim::{FakeClock, FakeServer, MemFs, SeqIds, SimRng};
use stacksync_engine::{
    Engine, EngineConfig, EngineIo, IgnoreRules, LocalEntry, LocalTree, PlanInput, RelPath, Stamp,
    SyncState, plan,
};
use stacksync_proto::{
    ChangesPage, ChunkRef, CommitResult, ContentHash, DeviceId, Error, ProposedItem,
};

struct Args {
    files: usize,
    size: usize,
    large: usize,
    latency_ms: u64,
}

/// A server link that waits one round trip before every call.
struct Latent {
    inner: stacksync_engine::sim::DeviceLink,
    rtt: Duration,
}

impl Latent {
    async fn round_trip(&self) {
        if !self.rtt.is_zero() {
            tokio::time::sleep(self.rtt).await;
        }
    }
}

#[async_trait]
impl Remote for Latent {
    async fn get_changes(&self, since: u64, limit: u32) -> Result<ChangesPage, Error> {
        self.round_trip().await;
        self.inner.get_changes(since, limit).await
    }
    async fn commit(&self, items: Vec<ProposedItem>) -> Result<CommitResult, Error> {
        self.round_trip().await;
        self.inner.commit(items).await
    }
}

#[async_trait]
impl ContentStore for Latent {
    async fn upload(&self, content: ByteReader) -> Result<Uploaded, Error> {
        self.round_trip().await;
        self.inner.upload(content).await
    }
    async fn flush(&self) -> Result<(), Error> {
        self.round_trip().await;
        self.inner.flush().await
    }
    async fn download(&self, chunks: &[ChunkRef], dest: &mut ByteWriter) -> Result<(), Error> {
        self.round_trip().await;
        self.inner.download(chunks, dest).await
    }
}

fn args() -> Args {
    let mut a = Args {
        files: 1000,
        size: 32 * 1024,
        large: 0,
        latency_ms: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse().ok());
        match (flag.as_str(), value) {
            ("--files", Some(v)) => a.files = v,
            ("--size", Some(v)) => a.size = v,
            ("--large", Some(v)) => a.large = v,
            ("--latency-ms", Some(v)) => a.latency_ms = v as u64,
            _ => {
                eprintln!("usage: bench [--files N] [--size BYTES] [--large N] [--latency-ms MS]");
                std::process::exit(2);
            }
        }
    }
    a
}

async fn engine(server: &FakeServer, fs: &MemFs, n: u64, rtt: Duration) -> Engine {
    let link = Arc::new(Latent {
        inner: server.device(DeviceId(uuid::Uuid::from_u64_pair(9, n))),
        rtt,
    });
    let io = EngineIo {
        fs: Arc::new(fs.clone()),
        remote: link.clone(),
        content: link,
        clock: Arc::new(FakeClock::default()),
        ids: Arc::new(SeqIds::new(n)),
        store: Arc::new(MemStateStore::new()),
    };
    let config = EngineConfig {
        device_name: format!("bench{n}"),
        page_limit: 1000,
        max_rounds: 12,
        ..EngineConfig::default()
    };
    Engine::open(io, config)
        .await
        .expect("in-memory state store cannot fail to load")
}

async fn timed_sync(e: &mut Engine) -> f64 {
    let t = Instant::now();
    let r = e.sync().await.expect("in-memory sync cannot fail");
    assert!(r.converged, "bench sync did not converge: {r:?}");
    t.elapsed().as_secs_f64() * 1000.0
}

/// Plans a synced tree of `n` files with one local edit.
fn plan_large(n: usize) -> (f64, usize) {
    let mut state = SyncState::default();
    let mut local = LocalTree::new();
    let mut metas = Vec::new();
    for i in 0..n {
        let path = RelPath::parse(&format!("f{i}")).expect("generated names are valid");
        let hash = ContentHash(*blake3::hash(&i.to_le_bytes()).as_bytes());
        let id = stacksync_proto::ItemId(uuid::Uuid::from_u64_pair(3, i as u64));
        let name = path.name().expect("not the root").clone();
        let stamp = Stamp {
            size: 8,
            mtime: 1,
            file_id: Some(i as u64),
        };
        state.synced.insert(
            id,
            stacksync_engine::SyncedItem {
                parent: None,
                name: name.clone(),
                is_folder: false,
                version: 1,
                content_hash: Some(hash),
                size: 8,
                stamp: Some(stamp),
            },
        );
        let edited = if i == n / 2 {
            ContentHash([7; 32])
        } else {
            hash
        };
        local.insert(
            path,
            LocalEntry {
                is_folder: false,
                stamp,
                hash: Some(edited),
            },
        );
        metas.push(stacksync_proto::ItemMeta {
            id,
            workspace: stacksync_proto::WorkspaceId::NIL,
            parent: None,
            name,
            is_folder: false,
            mimetype: None,
            status: stacksync_proto::ItemStatus::New,
            version: 1,
            content_hash: Some(hash),
            size: 8,
            client_modified: 0,
            server_modified: 0,
            device: DeviceId::NIL,
            revision: i as u64,
            chunks: Vec::new(),
            record: None,
        });
    }
    for m in metas {
        state.remote.apply(m);
    }
    let ignore = IgnoreRules::defaults();
    let input = PlanInput {
        state: &state,
        local: &local,
        ignore: &ignore,
        unsynced: &Default::default(),
        device_name: "bench",
        now: 0,
        read_only: false,
    };
    let t = Instant::now();
    let p = plan(&input);
    (t.elapsed().as_secs_f64() * 1000.0, p.ops.len())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    let server = FakeServer::new(16 * 1024);
    let (fs_a, fs_b) = (MemFs::new(), MemFs::new());
    let mut rng = SimRng::new(1);
    for i in 0..a.files {
        let data: Vec<u8> = (0..a.size).map(|_| rng.next_u64() as u8).collect();
        fs_a.user_write(&format!("tree/d{}/f{i}.bin", i % 20), &data);
    }
    const LARGE: usize = 16 * 1024 * 1024;
    for i in 0..a.large {
        let data: Vec<u8> = (0..LARGE).map(|_| rng.next_u64() as u8).collect();
        fs_a.user_write(&format!("tree/large/l{i}.bin"), &data);
    }
    let mib = (a.files * a.size + a.large * LARGE) as f64 / (1024.0 * 1024.0);
    let rtt = Duration::from_millis(a.latency_ms);
    let (mut ea, mut eb) = (
        engine(&server, &fs_a, 1, rtt).await,
        engine(&server, &fs_b, 2, rtt).await,
    );

    let up_ms = timed_sync(&mut ea).await;
    let down_ms = timed_sync(&mut eb).await;
    let initial_ms = up_ms + down_ms;
    let chunks = server.chunk_uploads();
    assert_eq!(
        fs_a.snapshot(),
        fs_b.snapshot(),
        "devices differ after the initial sync"
    );
    println!(
        "engine bench: {} files x {} KiB + {} x 16 MiB = {mib:.1} MiB, 16 KiB chunks (in-memory fs and server, {} ms per round trip)",
        a.files,
        a.size / 1024,
        a.large,
        a.latency_ms
    );
    println!(
        "  initial sync (baseline): upload {up_ms:.0} ms + download {down_ms:.0} ms = {initial_ms:.0} ms, {:.0} MiB/s, {chunks} chunks",
        2.0 * mib / (initial_ms / 1000.0)
    );

    let noop_ms = timed_sync(&mut ea).await + timed_sync(&mut eb).await;
    println!(
        "  resync, nothing changed: {noop_ms:.1} ms ({:.3}x the initial sync; hashes come from the stamp cache)",
        noop_ms / initial_ms
    );

    assert!(
        fs_a.user_rename("tree", "renamed"),
        "rename in the bench tree"
    );
    let rename_ms = timed_sync(&mut ea).await + timed_sync(&mut eb).await;
    let resent = server.chunk_uploads() - chunks;
    assert_eq!(
        fs_a.snapshot(),
        fs_b.snapshot(),
        "devices differ after the rename"
    );
    println!(
        "  rename of the whole tree: {rename_ms:.1} ms ({:.3}x the initial sync), {resent} chunks re-uploaded (delete + re-upload would send {chunks})",
        rename_ms / initial_ms
    );

    let (plan_ms, ops) = plan_large(10_000);
    println!("  planner, 10,000 synced files with one edit: {plan_ms:.1} ms for {ops} op(s)");

    println!(
        "{{\"bench\":\"engine\",\"files\":{},\"large\":{},\"latency_ms\":{},\"mib\":{mib:.1},\"initial_sync_ms\":{initial_ms:.0},\"initial_mib_per_s\":{:.1},\"noop_resync_ms\":{noop_ms:.1},\"ratio_noop_to_initial\":{:.4},\"rename_tree_ms\":{rename_ms:.1},\"ratio_rename_to_initial\":{:.4},\"rename_chunks_reuploaded\":{resent},\"plan_10k_ms\":{plan_ms:.1}}}",
        a.files,
        a.large,
        a.latency_ms,
        2.0 * mib / (initial_ms / 1000.0),
        noop_ms / initial_ms,
        rename_ms / initial_ms
    );
}
