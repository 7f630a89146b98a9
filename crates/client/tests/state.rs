//! `SqliteStateStore`: round trip, replace, and surviving a reopen.

use stacksync_client::SqliteStateStore;
use stacksync_engine::tree::{Refusal, SyncedItem};
use stacksync_engine::{RelPath, StateStore, SyncState};
use stacksync_proto::{
    ChunkId, ChunkRef, ContentHash, DeviceId, ItemId, ItemMeta, ItemName, ItemStatus, WorkspaceId,
};

fn sample_state(cursor: u64) -> SyncState {
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
        },
    );
    state.remote.apply(sample_meta(id, name));
    state
}

fn sample_meta(id: ItemId, name: ItemName) -> ItemMeta {
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
    }
}

#[tokio::test]
async fn round_trip_replace_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    {
        let store = SqliteStateStore::open(&path, ws).await.unwrap();
        assert_eq!(store.load().await.unwrap(), None, "first run");
        let s1 = sample_state(5);
        store.save(&s1).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(s1));
        let s2 = sample_state(9);
        store.save(&s2).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(s2));
        assert_eq!(store.cursor().await.unwrap(), Some(9));
        store.close().await;
    }
    let store = SqliteStateStore::open(&path, ws).await.unwrap();
    let loaded = store.load().await.unwrap().expect("state survives reopen");
    assert_eq!(loaded.cursor, 9);
    assert_eq!(loaded.synced.len(), 1);
    assert_eq!(loaded.refused.len(), 1);
    assert_eq!(loaded.remote.iter().count(), 1);
    // Another workspace in the same file is separate.
    let store2 = SqliteStateStore::open(&path, other).await.unwrap();
    assert_eq!(store2.load().await.unwrap(), None);
}

#[tokio::test]
async fn unreadable_state_is_reported_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let ws = WorkspaceId::new();
    let store = SqliteStateStore::open(&path, ws).await.unwrap();
    store.save(&sample_state(1)).await.unwrap();
    store.close().await;
    // Damage the row behind the store's back.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE sync_state SET state = x'ff00'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let store = SqliteStateStore::open(&path, ws).await.unwrap();
    let err = store.load().await.expect_err("damaged state");
    assert!(err.contains("unreadable"), "{err}");
}
