//! `SqliteStateStore`: round trip, replace, surviving a reopen; per-item
//! rows written incrementally; a round-trip property over random states
//! and edit sequences; interrupted saves (`interrupted`) and conversion of
//! the previous single-blob layout (`legacy`).

#[path = "state/interrupted.rs"]
mod interrupted;
#[path = "state/legacy.rs"]
mod legacy;
#[path = "state/strategy.rs"]
mod strategy;
#[path = "state/support.rs"]
mod support;

use proptest::prelude::*;
use sqlx::Connection;
use stacksync_client::SqliteStateStore;
use stacksync_engine::{StateStore, SyncState};
use stacksync_proto::WorkspaceId;

use support::*;

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
    assert_eq!(store2.cursor().await.unwrap(), None);
    store2.save(&sample_state(1)).await.unwrap();
    assert_eq!(load_fresh(&path, ws).await, Some(loaded));
}

#[tokio::test]
async fn unreadable_state_is_reported_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let ws = WorkspaceId::new();
    let store = SqliteStateStore::open(&path, ws).await.unwrap();
    store.save(&sample_state(1)).await.unwrap();
    store.close().await;
    // Damage the synced item's row behind the store's back.
    let mut conn = raw(&path).await;
    exec(
        &mut conn,
        "UPDATE sync_entry SET value = x'ff00' WHERE kind = 2",
    )
    .await;
    conn.close().await.unwrap();
    let store = SqliteStateStore::open(&path, ws).await.unwrap();
    let err = store.load().await.expect_err("damaged state");
    assert!(err.contains("unreadable"), "{err}");
    assert!(err.contains("synced item"), "says which row: {err}");
    assert!(err.contains(&ws.to_string()), "names the workspace: {err}");
}

#[tokio::test]
async fn saves_write_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let ws = WorkspaceId::new();
    let store = SqliteStateStore::open(&path, ws).await.unwrap();
    let mut state = large_state(5_000);
    let first = store.save_state(&state).await.unwrap();
    state.forget_changes();
    assert!(
        first.rewrote,
        "nothing loaded: the first save writes everything"
    );
    assert_eq!(
        first.rows_changed, 10_001,
        "5,000 remote + 5,000 synced + cursor"
    );

    let id = *state.synced.keys().nth(1234).unwrap();
    let name = state.synced[&id].name.clone();
    state.synced.insert(id, synced_item(name, 2));
    let one = store.save_state(&state).await.unwrap();
    state.forget_changes();
    assert_eq!(
        (one.rows_changed, one.rewrote),
        (1, false),
        "one synced item changed"
    );

    let unchanged = store.save_state(&state).await.unwrap();
    state.forget_changes();
    assert_eq!(
        unchanged.rows_changed, 0,
        "nothing changed, nothing written"
    );

    state.cursor += 1;
    state.synced.remove(&id);
    let two = store.save_state(&state).await.unwrap();
    state.forget_changes();
    assert_eq!(two.rows_changed, 2, "the cursor and one deleted row");
    assert_eq!(load_fresh(&path, ws).await.as_ref(), Some(&state));

    // A map replaced whole is not one whose changes were recorded: the
    // save writes everything.
    state.refused = state
        .refused
        .iter()
        .map(|(p, r)| (p.clone(), r.clone()))
        .collect();
    let whole = store.save_state(&state).await.unwrap();
    state.forget_changes();
    assert!(whole.rewrote, "a replaced map is written whole");
    assert_eq!(load_fresh(&path, ws).await.as_ref(), Some(&state));

    // After a load, saves are incremental too.
    let reopened = SqliteStateStore::open(&path, ws).await.unwrap();
    let mut loaded = reopened.load_state().await.unwrap().unwrap();
    loaded.pending.insert(id, pending_put(&loaded, id));
    let after_load = reopened.save_state(&loaded).await.unwrap();
    assert_eq!((after_load.rows_changed, after_load.rewrote), (1, false));
    assert_eq!(load_fresh(&path, ws).await, Some(loaded));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// After every save, a fresh store on the file loads exactly the saved
    /// state, whether the save was incremental or a rewrite.
    #[test]
    fn every_save_loads_back_exactly(
        initial in strategy::state(),
        edits in prop::collection::vec(strategy::edit(), 1..12),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(check_round_trips(initial, edits));
    }
}

async fn check_round_trips(mut state: SyncState, edits: Vec<strategy::Edit>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let ws = WorkspaceId::new();
    let mut writer = SqliteStateStore::open(&path, ws).await.unwrap();
    writer.save_state(&state).await.unwrap();
    state.forget_changes();
    assert_eq!(load_fresh(&path, ws).await.as_ref(), Some(&state));
    for (step, edit) in edits.iter().enumerate() {
        if let strategy::Edit::Reopen = edit {
            // Not saved now: the next save, through a writer that knows
            // nothing of the database, brings the next edit.
            writer.close().await;
            writer = SqliteStateStore::open(&path, ws).await.unwrap();
        } else {
            strategy::apply(&mut state, edit);
            writer.save_state(&state).await.unwrap();
            // The engine forgets its record after every save; a caller
            // that does not only makes the next save write more.
            if step % 3 != 2 {
                state.forget_changes();
            }
        }
        let fresh = SqliteStateStore::open(&path, ws).await.unwrap();
        assert_eq!(
            fresh.cursor().await.unwrap(),
            Some(state.cursor),
            "step {step}"
        );
        let loaded = fresh.load_state().await.unwrap();
        assert_eq!(loaded.as_ref(), Some(&state), "after step {step}: {edit:?}");
        fresh.close().await;
    }
    writer.close().await;
}

#[tokio::test]
async fn a_loaded_synced_name_shares_the_bytes_of_its_remote_twin() {
    use stacksync_engine::SyncedItem;
    use stacksync_proto::{ItemId, ItemName};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let ws = WorkspaceId::new();
    let mut state = SyncState::default();
    let name = |n: &str| ItemName::new(n).unwrap();
    let synced = |n: &str| SyncedItem {
        parent: None,
        name: name(n),
        is_folder: false,
        version: 1,
        content_hash: None,
        size: 0,
        stamp: None,
    };
    // The same name on both sides; renamed on the server; synced only.
    let (same, renamed, alone) = (ItemId::new(), ItemId::new(), ItemId::new());
    state.synced.insert(same, synced("same.txt"));
    state.remote.apply(sample_meta(same, name("same.txt")));
    state.synced.insert(renamed, synced("before.txt"));
    state.remote.apply(sample_meta(renamed, name("after.txt")));
    state.synced.insert(alone, synced("alone.txt"));
    let store = SqliteStateStore::open(&path, ws).await.unwrap();
    store.save(&state).await.unwrap();
    store.close().await;

    let loaded = load_fresh(&path, ws).await.expect("saved");
    assert_eq!(loaded, state);
    let bytes = |n: &ItemName| n.as_str().as_ptr();
    let remote = |id| &loaded.remote.latest(id).unwrap().name;
    assert_eq!(bytes(&loaded.synced[&same].name), bytes(remote(same)));
    assert_eq!(loaded.synced[&renamed].name, name("before.txt"));
    assert_eq!(remote(renamed), &name("after.txt"));
}
