//! Conversion of a database written by the previous layout (one CBOR
//! blob per workspace in `sync_state`).

use std::path::Path;

use sqlx::{Connection, SqliteConnection};
use stacksync_client::SqliteStateStore;
use stacksync_engine::{StateStore, SyncState};
use stacksync_proto::WorkspaceId;

use crate::support::*;

/// Creates a database the way the previous version did: one CBOR blob per
/// workspace in `sync_state`.
async fn write_legacy(path: &Path, rows: &[(WorkspaceId, u64, Vec<u8>)]) {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    exec(
        &mut conn,
        "CREATE TABLE sync_state (
            workspace TEXT PRIMARY KEY NOT NULL,
            cursor INTEGER NOT NULL,
            state BLOB NOT NULL
        )",
    )
    .await;
    for (ws, cursor, blob) in rows {
        sqlx::query("INSERT INTO sync_state (workspace, cursor, state) VALUES (?1, ?2, ?3)")
            .bind(ws.to_string())
            .bind(*cursor as i64)
            .bind(blob)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
}

fn cbor<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = Vec::new();
    ciborium::into_writer(value, &mut bytes).unwrap();
    bytes
}

/// `state` as a version before pending commits existed wrote it.
fn cbor_without_pending(state: &SyncState) -> Vec<u8> {
    let value = ciborium::Value::serialized(state).unwrap();
    let ciborium::Value::Map(fields) = value else {
        panic!("a struct encodes as a map")
    };
    let fields = fields
        .into_iter()
        .filter(|(k, _)| k.as_text() != Some("pending"))
        .collect();
    cbor(&ciborium::Value::Map(fields))
}

#[tokio::test]
async fn a_previous_layout_database_is_converted_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let (ws, other) = (WorkspaceId::new(), WorkspaceId::new());
    let mut state = large_state(30);
    let id = *state.synced.keys().next().unwrap();
    state.pending.insert(id, pending_put(&state, id));
    let other_state = sample_state(11);
    write_legacy(
        &path,
        &[
            (ws, state.cursor, cbor(&state)),
            (other, 11, cbor_without_pending(&other_state)),
        ],
    )
    .await;

    let store = SqliteStateStore::open(&path, ws).await.unwrap();
    assert_eq!(
        store.cursor().await.unwrap(),
        Some(30),
        "read before conversion"
    );
    let mut loaded = store.load_state().await.unwrap().expect("converted");
    assert_eq!(loaded, state);
    let mut conn = raw(&path).await;
    let legacy = "SELECT count(*) FROM sync_state";
    assert_eq!(
        count(&mut conn, legacy).await,
        1,
        "only this workspace's blob is gone"
    );
    let entries = "SELECT count(*) FROM sync_entry";
    assert_eq!(
        count(&mut conn, entries).await,
        61,
        "30 remote, 30 synced, 1 pending"
    );
    // The converted state is what the next save writes changes of.
    loaded.cursor += 1;
    let next = store.save_state(&loaded).await.unwrap();
    assert_eq!((next.rows_changed, next.rewrote), (1, false));
    store.close().await;
    assert_eq!(load_fresh(&path, ws).await, Some(loaded));

    assert_eq!(load_fresh(&path, other).await, Some(other_state));
    assert_eq!(count(&mut conn, legacy).await, 0);
}

#[tokio::test]
async fn an_unreadable_previous_layout_is_reported_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let ws = WorkspaceId::new();
    write_legacy(&path, &[(ws, 4, vec![0xff, 0x00])]).await;
    let store = SqliteStateStore::open(&path, ws).await.unwrap();
    let err = store.load().await.expect_err("damaged blob");
    assert!(
        err.contains("unreadable") && err.contains("previous layout"),
        "{err}"
    );
    let mut conn = raw(&path).await;
    assert_eq!(count(&mut conn, "SELECT count(*) FROM sync_state").await, 1);
}

#[tokio::test]
async fn a_conversion_that_fails_leaves_the_previous_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let ws = WorkspaceId::new();
    let state = large_state(20);
    write_legacy(&path, &[(ws, state.cursor, cbor(&state))]).await;
    let store = SqliteStateStore::open(&path, ws).await.unwrap();
    // The cursor row is written last: the rows before it are rolled back.
    let mut conn = raw(&path).await;
    exec(
        &mut conn,
        "CREATE TRIGGER injected BEFORE INSERT ON sync_cursor
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .await;
    store.load().await.expect_err("injected failure");
    assert_eq!(count(&mut conn, "SELECT count(*) FROM sync_state").await, 1);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM sync_entry").await, 0);
    exec(&mut conn, "DROP TRIGGER injected").await;
    assert_eq!(store.load_state().await.unwrap(), Some(state));
}
