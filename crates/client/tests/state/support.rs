//! Sample states and raw access to the database file, shared by the
//! state store's tests.

use std::path::Path;

use sqlx::{Connection, SqliteConnection};
use stacksync_client::SqliteStateStore;
use stacksync_engine::tree::{PendingCommit, Refusal, SyncedItem};
use stacksync_engine::{RelPath, SyncState};
use stacksync_proto::{
    ChunkId, ChunkRef, ContentHash, DeviceId, ItemId, ItemMeta, ItemName, ItemStatus, WorkspaceId,
};

pub fn sample_state(cursor: u64) -> SyncState {
    let mut state = SyncState {
        cursor,
        ..SyncState::default()
    };
    let id = ItemId::new();
    let name = ItemName::new("report.txt").unwrap();
    state.synced.insert(
        id,
        SyncedItem {
            parent: None,
            name: name.clone(),
            is_folder: false,
            version: 3,
            content_hash: None,
            size: 12,
            stamp: None,
        },
    );
    // A map keyed by path: what JSON could not encode.
    state.refused.insert(
        RelPath::parse("bad/na:me").unwrap(),
        Refusal {
            reason: "refused".into(),
            stamp: None,
            clash: false,
        },
    );
    state.remote.apply(sample_meta(id, name));
    state
}

pub fn sample_meta(id: ItemId, name: ItemName) -> ItemMeta {
    ItemMeta {
        id,
        name,
        workspace: WorkspaceId::NIL,
        parent: None,
        is_folder: false,
        mimetype: None,
        status: ItemStatus::New,
        version: 3,
        content_hash: Some(ContentHash([7; 32])),
        size: 12,
        client_modified: 1,
        server_modified: 2,
        device: DeviceId::NIL,
        revision: 4,
        chunks: vec![ChunkRef::whole(ChunkId([1; 32]), 12)],
        record: None,
    }
}

/// A state of `n` files, each remote and synced.
pub fn large_state(n: usize) -> SyncState {
    let mut state = SyncState {
        cursor: n as u64,
        ..SyncState::default()
    };
    for i in 0..n {
        let id = ItemId::new();
        let name = ItemName::new(format!("file-{i}.txt")).unwrap();
        state.remote.apply(sample_meta(id, name.clone()));
        state.synced.insert(id, synced_item(name, 1));
    }
    state
}

pub fn synced_item(name: ItemName, version: u64) -> SyncedItem {
    SyncedItem {
        parent: None,
        name,
        is_folder: false,
        version,
        content_hash: Some(ContentHash([7; 32])),
        size: 12,
        stamp: None,
    }
}

/// A connection to the file behind the store's back.
pub async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

pub async fn exec(conn: &mut SqliteConnection, sql: &'static str) {
    sqlx::query(sql).execute(&mut *conn).await.unwrap();
}

pub async fn count(conn: &mut SqliteConnection, sql: &'static str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&mut *conn).await.unwrap();
    n
}

/// What a fresh store on the file loads.
pub async fn load_fresh(path: &Path, ws: WorkspaceId) -> Option<SyncState> {
    let store = SqliteStateStore::open(path, ws).await.unwrap();
    let state = store.load_state().await.unwrap();
    store.close().await;
    state
}

pub fn pending_put(state: &SyncState, id: ItemId) -> PendingCommit {
    let meta = state.remote.latest(id).unwrap();
    PendingCommit {
        version: meta.version + 1,
        parent: meta.parent,
        name: meta.name.clone(),
        is_folder: false,
        content_hash: Some(ContentHash([9; 32])),
        size: 3,
        deleted: false,
        stamp: None,
    }
}

/// A state that differs from `before` in every map.
pub fn edited(before: &SyncState) -> SyncState {
    let mut after = before.clone();
    edit_in_place(&mut after);
    after
}

/// Changes `after` in every map (recorded, as the engine's changes are).
pub fn edit_in_place(after: &mut SyncState) {
    after.cursor += 7;
    let ids: Vec<ItemId> = after.synced.keys().copied().take(10).collect();
    for (i, id) in ids.iter().enumerate() {
        let name = ItemName::new(format!("renamed-{i}")).unwrap();
        after.synced.insert(*id, synced_item(name, 5));
    }
    let extra = ItemId::new();
    after
        .remote
        .apply(sample_meta(extra, ItemName::new("new.txt").unwrap()));
    after.pending.insert(ids[0], pending_put(after, ids[0]));
    let gone = *after.synced.keys().last().unwrap();
    after.synced.remove(&gone);
}

/// `after` with half of its synced changes: agrees with `before` on some
/// rows where `after` differs and with `after` on others, so a save of it
/// goes wrong whichever of the two the store wrongly believes is stored.
pub fn half_way(before: &SyncState, after: &SyncState) -> SyncState {
    let mut mixed = before.clone();
    mixed.cursor = before.cursor.max(after.cursor) + 100;
    let changed: Vec<ItemId> = after
        .synced
        .iter()
        .filter(|(id, item)| before.synced.get(id) != Some(item))
        .map(|(id, _)| *id)
        .collect();
    assert!(changed.len() >= 2, "the edit changes several synced items");
    for id in &changed[..changed.len() / 2] {
        mixed.synced.insert(*id, after.synced[id].clone());
    }
    mixed
}
