//! `scripts/bench metastore`: commit throughput (batches of 100 items) and
//! the cost of reading the last 10 changes of a workspace of 1,000 items vs
//! one of 100,000, on SQLite and PostgreSQL. The ratio is the point: the
//! incremental feed must cost the same however large the workspace is. The
//! original's getChanges listed the whole workspace; that full listing is
//! timed too, as the baseline the feed replaces.
//!
//! A device that starts from nothing lists the whole workspace through the
//! feed, page after page, so that listing is timed as well (100,000 items in
//! pages of 1,000) against two baselines of the same run: the 1,000-item
//! workspace listed 100 times (the same number of items and pages: a ratio
//! near 1 means a page costs the same however far into a large workspace it
//! starts) and one raw `SELECT` of the same rows (what the database alone
//! needs). The plan of a page's statement is printed for both databases.
//! PostgreSQL is analyzed after the fill, as autovacuum would soon do (one
//! listing from before is printed too).

use std::time::{Duration, Instant};

use stacksync_metastore::testing::TestDb;
use stacksync_metastore::{Backend, MetaStore, NewUser};
use stacksync_proto::{
    ChunkId, ChunkRef, CommitRequest, ContentHash, DeviceId, EncryptionMode, ItemId, ItemName,
    ItemStatus, ProposedItem, WorkspaceId,
};

struct Figures {
    commits_per_s: f64,
    recent_1k: Duration,
    recent_100k: Duration,
    full_listing_100k: Duration,
    listing_1k_x100: Duration,
    raw_select_100k: Duration,
    /// PostgreSQL only: one listing before the tables were analyzed.
    unanalyzed_listing_100k: Option<Duration>,
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
        record: None,
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

/// The time to list `ws` from 0 through the feed, in pages of 1,000.
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

/// The baseline for a full listing: the same rows (every item of `ws` with
/// its chunks and their index entries) in one raw statement, neither paged
/// nor decoded.
async fn raw_select(store: &MetaStore, ws: WorkspaceId) -> Duration {
    let t = Instant::now();
    let rows = sqlx::query(
        "SELECT i.*, vc.chunk_id, vc.size AS chunk_size, vc.pack_id AS own_pack, \
         cr.pack_id, cr.pack_offset, cr.pack_len FROM items i \
         LEFT JOIN version_chunks vc ON vc.item_id = i.id AND vc.version = i.latest_version \
         LEFT JOIN chunk_refs cr ON cr.workspace_id = i.workspace_id AND cr.chunk_id = vc.chunk_id \
         WHERE i.workspace_id = $1",
    )
    .bind(ws.to_string())
    .fetch_all(store.raw_pool())
    .await
    .expect("bench raw select");
    assert!(!rows.is_empty());
    t.elapsed()
}

/// The median of three runs of `run`.
async fn median_of_3<F: std::future::Future<Output = Duration>>(
    mut run: impl FnMut() -> F,
) -> Duration {
    let mut times = [run().await, run().await, run().await];
    times.sort();
    times[1]
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
    // Statistics as autovacuum keeps them on a running server: right after
    // a bulk load PostgreSQL estimates from an empty table and probes the
    // chunk tables with bitmap scans, which cost a listing about half as
    // much again as the index scans it picks once it knows their sizes.
    // One listing before is printed to show the difference.
    let unanalyzed_listing_100k = if store.backend() == Backend::Postgres {
        let before = full_listing(store, large).await;
        sqlx::query("ANALYZE")
            .execute(store.raw_pool())
            .await
            .expect("bench analyze");
        println!(
            "{label:>8}: full listing of 100k items before ANALYZE: {:.0} ms",
            ms(before)
        );
        Some(before)
    } else {
        None
    };
    let (recent_1k, recent_100k) = recent_changes(store, (small, 1_000), (large, 100_000)).await;
    println!(
        "{label:>8}: last 10 changes: {:.3} ms at 1k items, {:.3} ms at 100k items (ratio {:.2})",
        ms(recent_1k),
        ms(recent_100k),
        ms(recent_100k) / ms(recent_1k),
    );

    let full_listing_100k = median_of_3(|| full_listing(store, large)).await;
    let listing_1k_x100 = median_of_3(|| async {
        let mut total = Duration::ZERO;
        for _ in 0..100 {
            total += full_listing(store, small).await;
        }
        total
    })
    .await;
    let raw_select_100k = median_of_3(|| raw_select(store, large)).await;
    println!(
        "{label:>8}: full listing of 100k items through the feed (pages of 1,000): {:.0} ms \
         = {:.2}x listing the 1k workspace 100 times ({:.0} ms), \
         {:.2}x one raw SELECT of the same rows ({:.0} ms), \
         {:.0}x the incremental read of the last 10 changes",
        ms(full_listing_100k),
        ms(full_listing_100k) / ms(listing_1k_x100),
        ms(listing_1k_x100),
        ms(full_listing_100k) / ms(raw_select_100k),
        ms(raw_select_100k),
        ms(full_listing_100k) / ms(recent_100k)
    );
    let plan = store
        .explain_changes(large, 50_000, 1000)
        .await
        .expect("bench explain");
    println!("{label:>8}: plan of a listing page (100k items, from revision 50,000, 1,000 items):");
    for line in plan {
        println!("{label:>8}:   {line}");
    }
    Figures {
        commits_per_s,
        recent_1k,
        recent_100k,
        full_listing_100k,
        listing_1k_x100,
        raw_select_100k,
        unanalyzed_listing_100k,
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
    let vs_1k =
        |f: &Figures| (ms(f.full_listing_100k) / ms(f.listing_1k_x100) * 100.0).round() / 100.0;
    let vs_raw =
        |f: &Figures| (ms(f.full_listing_100k) / ms(f.raw_select_100k) * 100.0).round() / 100.0;
    println!(
        "{{\"bench\":\"metastore\",\"sqlite_commits_per_s\":{:.0},\"postgres_commits_per_s\":{:.0},\
         \"changes_ratio_100k_vs_1k_sqlite\":{},\"changes_ratio_100k_vs_1k_postgres\":{},\
         \"full_listing_100k_ms_sqlite\":{:.0},\"full_listing_100k_ms_postgres\":{:.0},\
         \"full_listing_100k_ms_postgres_before_analyze\":{:.0},\
         \"full_listing_ratio_vs_1k_x100_sqlite\":{},\"full_listing_ratio_vs_1k_x100_postgres\":{},\
         \"full_listing_ratio_vs_raw_select_sqlite\":{},\"full_listing_ratio_vs_raw_select_postgres\":{}}}",
        sqlite.commits_per_s,
        postgres.commits_per_s,
        ratio(&sqlite),
        ratio(&postgres),
        ms(sqlite.full_listing_100k),
        ms(postgres.full_listing_100k),
        ms(postgres
            .unanalyzed_listing_100k
            .expect("the PostgreSQL figures have a listing before ANALYZE")),
        vs_1k(&sqlite),
        vs_1k(&postgres),
        vs_raw(&sqlite),
        vs_raw(&postgres),
    );
}
