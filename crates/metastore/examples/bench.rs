//! `scripts/bench metastore`: commit throughput (batches of 100 items) and
//! the cost of reading the last 10 changes of a workspace of 1,000 items vs
//! one of 100,000, on SQLite and PostgreSQL. The ratio is the point: the
//! incremental feed must cost the same however large the workspace is. The
//! original's getChanges listed the whole workspace; that full listing is
//! timed too, as the baseline the feed replaces.

use std::time::{Duration, Instant};

use stacksync_metastore::testing::TestDb;
use stacksync_metastore::{MetaStore, NewUser};
use stacksync_proto::{
    ChunkId, ChunkRef, CommitRequest, ContentHash, DeviceId, EncryptionMode, ItemId, ItemName,
    ItemStatus, ProposedItem, WorkspaceId,
};

struct Figures {
    commits_per_s: f64,
    recent_1k: Duration,
    recent_100k: Duration,
    full_listing_100k: Duration,
}

fn proposal(i: u64, parent: Option<ItemId>) -> ProposedItem {
    let seed = blake3_like(i);
    ProposedItem {
        id: ItemId::new(),
        parent,
        name: ItemName::new(format!("file-{i:07}.dat")).expect("generated names are valid"),
        is_folder: false,
        mimetype: None,
        status: ItemStatus::New,
        version: 1,
        content_hash: Some(ContentHash(seed)),
        size: 4096,
        client_modified: 1_700_000_000_000,
        chunks: vec![ChunkRef::whole(ChunkId(seed), 4096)],
    }
}

/// A cheap, distinct 32-byte value per index (not a hash; ids only need to differ).
fn blake3_like(i: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (k, b) in out.iter_mut().enumerate() {
        *b = (i
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(k as u32 * 8)
            >> 56) as u8
            ^ k as u8;
    }
    out[..8].copy_from_slice(&i.to_le_bytes());
    out
}

async fn workspace(store: &MetaStore, tag: &str) -> (WorkspaceId, DeviceId) {
    let user = store
        .create_user(NewUser {
            email: format!("{tag}@bench.local"),
            name: tag.into(),
            password_hash: "-".into(),
            quota_limit: u64::MAX / 4,
            storage_user: None,
        })
        .await
        .expect("bench user");
    let dev = store
        .upsert_device(user.id, None, "bench", "", "", None)
        .await
        .expect("bench device");
    let ws = store
        .create_workspace(user.id, tag, false, EncryptionMode::Plain)
        .await
        .expect("bench workspace");
    (ws.id, dev.id)
}

async fn fill(store: &MetaStore, ws: WorkspaceId, dev: DeviceId, n: u64, batch: u64) -> Duration {
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let items = (i..(i + batch).min(n)).map(|k| proposal(k, None)).collect();
        store
            .commit(&CommitRequest {
                workspace: ws,
                device: dev,
                items,
            })
            .await
            .expect("bench commit");
        i += batch;
    }
    start.elapsed()
}

/// Median times of `get_changes(latest - 10)` on two workspaces, calls
/// interleaved so that background work of the database (autovacuum, a
/// checkpoint after the big fill) weighs on both alike.
async fn recent_changes(
    store: &MetaStore,
    small: (WorkspaceId, u64),
    large: (WorkspaceId, u64),
) -> (Duration, Duration) {
    let mut times = (Vec::new(), Vec::new());
    for _ in 0..400 {
        for ((ws, latest), out) in [(small, &mut times.0), (large, &mut times.1)] {
            let t = Instant::now();
            let page = store
                .get_changes(ws, latest - 10, 100)
                .await
                .expect("bench feed");
            out.push(t.elapsed());
            assert_eq!(page.items.len(), 10);
        }
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    (median(times.0), median(times.1))
}

async fn full_listing(store: &MetaStore, ws: WorkspaceId) -> Duration {
    let t = Instant::now();
    let mut since = 0;
    loop {
        let page = store
            .get_changes(ws, since, 1000)
            .await
            .expect("bench listing");
        since = page.cursor;
        if !page.has_more {
            break;
        }
    }
    t.elapsed()
}

async fn measure(label: &str, store: &MetaStore) -> Figures {
    let (ws, dev) = workspace(store, &format!("{label}-commits")).await;
    fill(store, ws, dev, 500, 100).await; // warm-up
    let n = 3000;
    let took = fill(store, ws, dev, n, 100).await;
    let commits_per_s = n as f64 / took.as_secs_f64();
    println!("{label:>8}: {commits_per_s:>9.0} committed items/s (batches of 100)");

    let (small, d1) = workspace(store, &format!("{label}-1k")).await;
    fill(store, small, d1, 1_000, 1000).await;
    let (large, d2) = workspace(store, &format!("{label}-100k")).await;
    let t = fill(store, large, d2, 100_000, 1000).await;
    println!(
        "{label:>8}: filled 100,000 items in {:.1} s",
        t.as_secs_f64()
    );
    let (recent_1k, recent_100k) = recent_changes(store, (small, 1_000), (large, 100_000)).await;
    let full_listing_100k = full_listing(store, large).await;
    println!(
        "{label:>8}: last 10 changes: {:.3} ms at 1k items, {:.3} ms at 100k items (ratio {:.2}); \
         full listing of 100k (the original's getChanges): {:.0} ms = {:.0}x the incremental read",
        ms(recent_1k),
        ms(recent_100k),
        ms(recent_100k) / ms(recent_1k),
        ms(full_listing_100k),
        ms(full_listing_100k) / ms(recent_100k)
    );
    Figures {
        commits_per_s,
        recent_1k,
        recent_100k,
        full_listing_100k,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sqlite_db = TestDb::sqlite().await;
    let sqlite = measure("sqlite", &sqlite_db.store).await;
    drop(sqlite_db);
    let pg_db = TestDb::postgres()
        .await
        .expect("scripts/bench sets STACKSYNC_TEST_POSTGRES");
    let postgres = measure("postgres", &pg_db.store).await;
    drop(pg_db);
    let ratio = |f: &Figures| (ms(f.recent_100k) / ms(f.recent_1k) * 100.0).round() / 100.0;
    let _ = (sqlite.full_listing_100k, postgres.full_listing_100k);
    println!(
        "{{\"bench\":\"metastore\",\"sqlite_commits_per_s\":{:.0},\"postgres_commits_per_s\":{:.0},\
         \"changes_ratio_100k_vs_1k_sqlite\":{},\"changes_ratio_100k_vs_1k_postgres\":{}}}",
        sqlite.commits_per_s,
        postgres.commits_per_s,
        ratio(&sqlite),
        ratio(&postgres)
    );
}
