//! State store benchmark: the cost of one save after one synced item
//! changed, through `SqliteStateStore` (per-item rows, only the changed row
//! written) and the previous way (the whole state encoded as one CBOR blob
//! and written as one row), on the same kind of SQLite file (WAL,
//! `synchronous=FULL`), for 1k and 20k items. Also prints the first save
//! (every row), a save with nothing changed (the in-memory diff alone) and
//! a load, for scale.
//!
//! `cargo run --release -p stacksync-client --example state_bench -- [--rounds N]`
//!
//! The last line of stdout is one JSON object.

use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use stacksync_client::SqliteStateStore;
use stacksync_engine::SyncState;
use stacksync_engine::tree::SyncedItem;
use stacksync_proto::{
    ChunkId, ChunkRef, ContentHash, DeviceId, ItemId, ItemMeta, ItemName, ItemStatus, WorkspaceId,
};

const SIZES: [usize; 2] = [1_000, 20_000];

/// A workspace of `n` files, each known remotely and synced, with two
/// chunks each (the chunk lists are what makes remote items heavy).
fn state(n: usize) -> SyncState {
    let mut state = SyncState {
        cursor: n as u64,
        ..SyncState::default()
    };
    for i in 0..n {
        let id = ItemId::new();
        let name = ItemName::new(format!("file-{i:06}.txt")).expect("a valid name");
        let hash = ContentHash(*blake3::hash(&i.to_le_bytes()).as_bytes());
        state.remote.apply(ItemMeta {
            id,
            workspace: WorkspaceId::NIL,
            parent: None,
            name: name.clone(),
            is_folder: false,
            mimetype: Some("text/plain".into()),
            status: ItemStatus::New,
            version: 1,
            content_hash: Some(hash),
            size: 3 << 20,
            client_modified: 1_700_000_000_000,
            server_modified: 1_700_000_000_000,
            device: DeviceId::NIL,
            revision: i as u64 + 1,
            chunks: vec![
                ChunkRef::whole(ChunkId(hash.0), 2 << 20),
                ChunkRef::whole(ChunkId([i as u8; 32]), 1 << 20),
            ],
            record: None,
        });
        state.synced.insert(
            id,
            SyncedItem {
                parent: None,
                name,
                is_folder: false,
                version: 1,
                content_hash: Some(hash),
                size: 3 << 20,
                stamp: None,
            },
        );
    }
    state
}

/// Changes one synced item, differently each round.
fn touch(state: &mut SyncState, round: usize) {
    let id = *state
        .synced
        .keys()
        .nth(round % state.synced.len())
        .expect("the state has items");
    if let Some(item) = state.synced.get_mut(&id) {
        item.version += 1;
    }
}

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

/// The previous store: one row per workspace holding the whole state.
async fn blob_store(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let pool = SqlitePool::connect_with(options).await?;
    sqlx::query(
        "CREATE TABLE sync_state (workspace TEXT PRIMARY KEY NOT NULL,
         cursor INTEGER NOT NULL, state BLOB NOT NULL)",
    )
    .execute(&pool)
    .await?;
    Ok(pool)
}

async fn blob_save(pool: &SqlitePool, state: &SyncState) -> Result<(), Box<dyn std::error::Error>> {
    let mut bytes = Vec::new();
    ciborium::into_writer(state, &mut bytes)?;
    sqlx::query(
        "INSERT INTO sync_state (workspace, cursor, state) VALUES ('ws', ?1, ?2)
         ON CONFLICT (workspace) DO UPDATE SET cursor = excluded.cursor, state = excluded.state",
    )
    .bind(state.cursor as i64)
    .bind(bytes)
    .execute(pool)
    .await?;
    Ok(())
}

/// Figures for one workspace size, in milliseconds.
struct Figures {
    items: usize,
    first_save: f64,
    load: f64,
    incremental: f64,
    diff: f64,
    blob: f64,
}

async fn measure(items: usize, rounds: usize) -> Result<Figures, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let state = state(items);

    let store = SqliteStateStore::open(&dir.path().join("rows.sqlite"), WorkspaceId::NIL).await?;
    let started = Instant::now();
    store.save_state(&state).await?;
    let first_save = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let loaded = store.load_state().await?;
    let load = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(
        loaded.as_ref(),
        Some(&state),
        "the store loads what it saved"
    );
    // The store knows the lineage it last loaded: go on with the loaded
    // state, as the client does after a start.
    let mut state = loaded.ok_or("the store lost the state")?;
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds {
        touch(&mut state, round);
        let started = Instant::now();
        let stats = store.save_state(&state).await?;
        samples.push(started.elapsed());
        // What the engine does after each save: the next one writes only
        // what changed after it.
        state.forget_changes();
        assert_eq!(stats.rows_changed, 1, "one item changed, one row written");
    }
    let incremental = median(samples);
    // Nothing changed: no row, no transaction, only the in-memory diff.
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let stats = store.save_state(&state).await?;
        samples.push(started.elapsed());
        assert_eq!(stats.rows_changed, 0, "nothing changed, nothing written");
    }
    let diff = median(samples);
    store.close().await;

    let pool = blob_store(&dir.path().join("blob.sqlite")).await?;
    blob_save(&pool, &state).await?;
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds {
        touch(&mut state, round);
        let started = Instant::now();
        blob_save(&pool, &state).await?;
        samples.push(started.elapsed());
    }
    let blob = median(samples);
    pool.close().await;
    Ok(Figures {
        items,
        first_save,
        load,
        incremental,
        diff,
        blob,
    })
}

fn rounds_from_args() -> Result<usize, String> {
    let mut args = std::env::args().skip(1);
    let mut rounds = 30;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--rounds needs a positive number")?;
            }
            other => return Err(format!("unknown argument {other:?} (try --rounds N)")),
        }
    }
    Ok(rounds)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds = rounds_from_args()?;
    let mut summary = serde_json::Map::new();
    summary.insert("bench".into(), "state".into());
    summary.insert("rounds".into(), rounds.into());
    println!(
        "One save after one synced item changed (median of {rounds}), WAL + synchronous=FULL:"
    );
    for items in SIZES {
        let f = measure(items, rounds).await?;
        let ratio = f.blob / f.incremental;
        println!(
            "  {:>6} items  rows {:>7.2} ms (diff alone {:>6.2} ms)  whole blob {:>7.2} ms  ({ratio:.1}x)  first save {:>7.1} ms  load {:>6.1} ms",
            f.items, f.incremental, f.diff, f.blob, f.first_save, f.load
        );
        let key = |what: &str| format!("items_{}_{what}", f.items);
        summary.insert(key("incremental_ms"), f.incremental.into());
        summary.insert(key("diff_only_ms"), f.diff.into());
        summary.insert(key("whole_blob_ms"), f.blob.into());
        summary.insert(key("ratio"), ratio.into());
        summary.insert(key("first_save_ms"), f.first_save.into());
        summary.insert(key("load_ms"), f.load.into());
    }
    println!("{}", serde_json::Value::Object(summary));
    Ok(())
}
