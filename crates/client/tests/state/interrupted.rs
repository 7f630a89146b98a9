//! Saves that fail or are dropped half-way leave the previous state, and
//! the store recovers from them.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use sqlx::SqliteConnection;
use stacksync_client::SqliteStateStore;
use stacksync_proto::WorkspaceId;

use crate::support::*;

/// Makes the `k`-th row write from now on (0 for the first; inserts and
/// deletes of entries, writes of the cursor) and every later one fail.
async fn fail_row_write(conn: &mut SqliteConnection, k: i64) {
    exec(conn, "CREATE TABLE countdown (n INTEGER NOT NULL)").await;
    sqlx::query("INSERT INTO countdown (n) VALUES (?1)")
        .bind(k)
        .execute(&mut *conn)
        .await
        .unwrap();
    for trigger in [
        "CREATE TRIGGER fail_entry_insert BEFORE INSERT ON sync_entry BEGIN
            UPDATE countdown SET n = n - 1;
            SELECT RAISE(ABORT, 'injected failure') FROM countdown WHERE n < 0;
        END",
        "CREATE TRIGGER fail_entry_delete BEFORE DELETE ON sync_entry BEGIN
            UPDATE countdown SET n = n - 1;
            SELECT RAISE(ABORT, 'injected failure') FROM countdown WHERE n < 0;
        END",
        "CREATE TRIGGER fail_cursor_insert BEFORE INSERT ON sync_cursor BEGIN
            UPDATE countdown SET n = n - 1;
            SELECT RAISE(ABORT, 'injected failure') FROM countdown WHERE n < 0;
        END",
    ] {
        exec(conn, trigger).await;
    }
}

async fn stop_failing(conn: &mut SqliteConnection) {
    for drop in [
        "DROP TRIGGER fail_entry_insert",
        "DROP TRIGGER fail_entry_delete",
        "DROP TRIGGER fail_cursor_insert",
        "DROP TABLE countdown",
    ] {
        exec(conn, drop).await;
    }
}

#[tokio::test]
async fn a_save_failing_at_any_statement_leaves_the_previous_state() {
    let before = large_state(12);
    let next = half_way(&before, &edited(&before));
    // Incremental saves, and rewrites (a store opened without a load).
    for rewrite in [false, true] {
        for k in 0.. {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.sqlite");
            let ws = WorkspaceId::new();
            let mut store = SqliteStateStore::open(&path, ws).await.unwrap();
            // `after` is `before` edited in place, as the engine does.
            let mut after = before.clone();
            store.save_state(&after).await.unwrap();
            after.forget_changes();
            edit_in_place(&mut after);
            if rewrite {
                store.close().await;
                store = SqliteStateStore::open(&path, ws).await.unwrap();
            }
            let mut conn = raw(&path).await;
            fail_row_write(&mut conn, k).await;
            let err = match store.save_state(&after).await {
                Ok(stats) => {
                    assert_eq!(stats.rewrote, rewrite);
                    assert!(
                        k > 10,
                        "the save wrote several rows before it could succeed"
                    );
                    assert_eq!(load_fresh(&path, ws).await, Some(after.clone()));
                    break;
                }
                Err(err) => err,
            };
            assert!(err.to_string().contains("injected failure"), "{err}");
            let context = format!("rewrite {rewrite}, failed at row write {k}");
            assert_eq!(
                load_fresh(&path, ws).await.as_ref(),
                Some(&before),
                "{context}"
            );
            stop_failing(&mut conn).await;
            let retried = store.save_state(&next).await.unwrap();
            assert!(
                retried.rewrote,
                "after a failed save the store rewrites ({context})"
            );
            assert_eq!(
                load_fresh(&path, ws).await.as_ref(),
                Some(&next),
                "{context}"
            );
        }
    }
}

/// Wakes the test when the save it drives can make progress.
struct WakeFlag(tokio::sync::Notify);

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        // A permit is stored if nobody waits yet: no wake-up is lost.
        self.0.notify_one();
    }
}

#[tokio::test]
async fn a_save_dropped_mid_way_leaves_the_previous_state() {
    let before = large_state(40);
    let next = half_way(&before, &edited(&before));
    // Drops the save after its 1st, 2nd, ... wake-up until one run
    // finishes. How far a step gets depends on the SQLite worker thread
    // (one poll may find several statements already answered), so the
    // sweep is repeated to land on more drop points; the assertions hold
    // wherever it lands.
    for sweep in 0..4 {
        for steps in 1.. {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.sqlite");
            let ws = WorkspaceId::new();
            let store = SqliteStateStore::open(&path, ws).await.unwrap();
            let mut after = before.clone();
            store.save_state(&after).await.unwrap();
            after.forget_changes();
            edit_in_place(&mut after);

            let flag = Arc::new(WakeFlag(tokio::sync::Notify::new()));
            let waker = Waker::from(Arc::clone(&flag));
            let mut cx = Context::from_waker(&waker);
            let mut finished = false;
            {
                let mut save = pin!(store.save_state(&after));
                for _ in 0..steps {
                    if let Poll::Ready(result) = save.as_mut().poll(&mut cx) {
                        result.unwrap();
                        finished = true;
                        break;
                    }
                    flag.0.notified().await;
                }
            }
            let loaded = load_fresh(&path, ws).await.unwrap();
            assert!(
                loaded == before || loaded == after,
                "dropped after {steps} steps: the database holds a mix"
            );
            // The store must know it no longer knows what is stored.
            store.save_state(&next).await.unwrap();
            assert_eq!(
                load_fresh(&path, ws).await.as_ref(),
                Some(&next),
                "save after a save dropped after {steps} steps"
            );
            if finished {
                assert!(steps > 1, "the save took several steps (sweep {sweep})");
                break;
            }
        }
    }
}
